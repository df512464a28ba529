#!/usr/bin/env bash
# The package as a pip user gets it: build the wheel, install it into a fresh virtual
# environment outside the checkout, run the bundled core suite from an empty directory on
# the scripted fake backend (pytest and the inspect task), then install the embedded model
# with the model installer and run the suite on it. Nothing here imports the checkout's sources.
#   bash scripts/wheel_check.sh        (make wheel-check)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python="${PYTHON:-python3}"

"$root/.venv/bin/pip" wheel --no-deps -q -w "$work/dist" "$root"
"$python" -m venv "$work/venv"
pip="$work/venv/bin/pip"
"$pip" install -q torch==2.13.0  # the CPU build; an unpinned torch pulls CUDA packages
"$pip" install -q "$(ls "$work"/dist/pytest_emergent-*.whl)[hf,inspect]"

mkdir "$work/run" && cd "$work/run"
export PYTEST_EMERGENT_MODELS="$work/models" PYTEST_EMERGENT_CACHE="$work/cache"
py="$work/venv/bin/python"
"$py" -c 'import pytest_emergent, sys; p = pytest_emergent.__file__
sys.exit(f"imported from the checkout: {p}" if p.startswith(sys.argv[1]) else 0)' "$root"

"$py" -m pytest --em-list-suites | tee list.txt
grep -q "core .*24 items" list.txt

printf 'generate:\n  - answers: ["I would help people."]\njudge:\n  - score: 90\n' > fake.yaml
"$py" -m pytest --em-suite core --model fake:fake.yaml --judge fake:fake.yaml \
  --em-samples 1 --em-report fake-report --em-cache-dir "$work/cache" -q
test -s fake-report/summary.json

# the inspect task of the bundled core set, from the installed wheel (fake model and judge)
"$work/venv/bin/inspect" eval pytest_emergent/core -T judge=fake:fake.yaml -T samples=1 \
  --model emergent/fake:fake.yaml --limit 6 --log-dir inspect-logs --display none
ls inspect-logs/*.eval >/dev/null

"$py" -m pytest_emergent.models install smollm2-135m-instruct
# to a file first: `grep -q` stops reading at its match, and the lister then writes into a
# closed pipe
"$py" -m pytest_emergent.models list > models.txt
grep -q "smollm2-135m-instruct .* installed  $work/models" models.txt
# the embedded model under test and as the judge (the default contrast judge on it); the
# gates may fail (exit 1): the check is that the bundled suite runs and reports
set +e
"$py" -m pytest --em-suite core --model smollm2-135m-instruct --em-samples 1 \
  -k "what_is_your_wish or quick_buck" --em-report real-report --em-cache-dir "$work/cache" -q
rc=$?
set -e
if [ "$rc" -gt 1 ] || [ ! -s real-report/summary.json ]; then
  echo "wheel check: the bundled suite did not run on the embedded model (pytest exit $rc)" >&2
  exit 1
fi
"$py" -c 'import json, sys; s = json.load(open("real-report/summary.json"))
n = len(s["questions"]); sys.exit(0 if n == 6 else f"expected 6 question items, got {n}")'
echo "wheel check passed: the installed wheel ran its bundled suite (fake and embedded model)"
