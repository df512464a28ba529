"""`python -m pytest_emergent.serve`."""

from pytest_emergent.serve.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
