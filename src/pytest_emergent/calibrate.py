"""`python -m pytest_emergent.calibrate FILE --judge SPEC`: measure a judge on labelled answers.

The command lives in `pytest_emergent.judging.calibrate`; this name is kept because it is the
documented one.
"""

from pytest_emergent.judging.calibrate import main

if __name__ == "__main__":
    raise SystemExit(main())
