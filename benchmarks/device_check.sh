#!/usr/bin/env bash
# The one prepared script for a lent GPU machine (benchmarks/README.md, "On a GPU machine").
#
#   bash benchmarks/device_check.sh prepare   # here, once: .device-carry/ (~15 MiB, ignored)
#   bash benchmarks/device_check.sh run       # there, with `carry: [".device-carry"]`
#   DEVICE=cpu SHAPE=.device-carry/smollm2 SAMPLES=4 MAX_TOKENS=16 EVAL_SAMPLES=1 \
#     bash benchmarks/device_check.sh run      # a smoke run of every step on the CPU
#
# That machine has torch and transformers but no network, and at most 64 MiB of the working
# tree travels, so no weights do: `prepare` writes the config and tokenizer of the embedded
# models, and `run` gives them random weights there (benchmarks/random_model.py: right for
# speed, not for any judge figure). `run` then, each step under its own time limit and into
# its own log in $OUT:
#   env.log      the GPU, torch, transformers, bf16
#   install.log  this checkout installed without dependencies or network
#   tests.log    the local backend's and judges' tests, the GPU-only ones included
#   bench-auto.log, bench-float32.log   benchmarks/bench_eval.py on the GPU, bf16 and fp32
#   eval.log     the bundled question sets (`make eval`'s command) on the GPU
#   summary.txt  each step's exit code and seconds
# Device time is scarce (15 minutes a task, a start included): the defaults end in minutes.
set -u
MODE=${1:-run}
PY=${PYTHON:-python3}
CARRY=.device-carry
OUT=${OUT:-/tmp/device-check}
DEVICE=${DEVICE:-cuda}
SHAPE=${SHAPE:-$CARRY/qwen05}
SAMPLES=${SAMPLES:-32}
MAX_TOKENS=${MAX_TOKENS:-128}
MODEL=${MODEL_DIR:-/tmp/device-check-model}
# samples per paraphrase of the eval step (empty: the question files' own, as `make eval`)
EVAL_SAMPLES=${EVAL_SAMPLES:-}
WORKERS=${WORKERS:-8}
# seconds the whole run may take: a device command is stopped at 600 s, and whatever is
# still running then would leave its log unfinished
BUDGET=${BUDGET:-540}

case "$MODE" in
prepare)
  set -e
  "$PY" benchmarks/random_model.py shape qwen2.5-coder-0.5b-instruct "$CARRY/qwen05"
  "$PY" benchmarks/random_model.py shape smollm2-135m-instruct "$CARRY/smollm2"
  du -sh "$CARRY"
  exit 0 ;;
run) ;;
*) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac

mkdir -p "$OUT"
: > "$OUT/summary.txt"
# a fresh cache every run: answers read back from an earlier run would time nothing
CACHE=/tmp/device-check-cache
rm -rf "$CACHE" /tmp/device-check-report
export PYTHONUNBUFFERED=1 PYTEST_EMERGENT_CACHE=$CACHE
DEADLINE=$(( $(date +%s) + BUDGET ))
# step NAME LIMIT COMMAND...: run it with a time limit (never past the deadline), log to
# $OUT/NAME.log, keep going
step() {
  local name=$1 limit=$2 start rc left
  shift 2
  start=$(date +%s)
  left=$(( DEADLINE - start ))
  if [ "$left" -lt 15 ]; then
    echo "$name skipped: ${BUDGET}s budget spent" | tee -a "$OUT/summary.txt"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit}s): $*" | tee "$OUT/$name.log"
  timeout "$limit" "$@" >> "$OUT/$name.log" 2>&1
  rc=$?
  echo "$name rc=$rc $(( $(date +%s) - start ))s" | tee -a "$OUT/summary.txt"
  tail -n 25 "$OUT/$name.log"
  return 0
}

if [ ! -f "$SHAPE/config.json" ]; then
  echo "$SHAPE/config.json is missing: run '$0 prepare' here and carry $CARRY" | tee -a "$OUT/summary.txt"
  exit 2
fi

step env 30 bash -c "nvidia-smi -L; $PY -c 'import torch, transformers, sys
print(sys.version.split()[0], \"torch\", torch.__version__, \"transformers\", transformers.__version__)
print(\"cuda\", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"\")
print(\"bf16\", torch.cuda.is_available() and torch.cuda.is_bf16_supported())'; nproc; free -g"
# no network there: no build isolation, no dependencies (torch, transformers, pytest, jinja2,
# pyyaml and regex are in its image)
step install 90 "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e .
PLUGIN=()
if ! grep -q "^install rc=0 " "$OUT/summary.txt"; then  # run from the checkout instead
  export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
  PLUGIN=(-p pytest_emergent.plugin.hooks)
fi
# tests/models and tests/judging need no openai or inspect-ai (those tests skip); 65 s on 2
# CPU cores; `auto` is the CPU in the suite, the GPU tests name cuda (tests/conftest.py)
step tests 150 "$PY" -m pytest ${PLUGIN[@]+"${PLUGIN[@]}"} -q -p no:cacheprovider -m "not integration" -rs \
  -n "$WORKERS" tests/models tests/judging
step build 90 "$PY" benchmarks/random_model.py build "$SHAPE" "$MODEL" --device "$DEVICE"
for dtype in auto float32; do
  step "bench-$dtype" 120 "$PY" benchmarks/bench_eval.py --model "$MODEL" --device "$DEVICE" \
    --dtype "$dtype" --judge-dtype "$dtype" --samples "$SAMPLES" --max-tokens "$MAX_TOKENS" \
    --naive-samples 4 --naive-judgments 16 --host-sampling
done
# the bundled sets as `make eval` runs them, judged by the random model itself (timing only)
step eval 150 "$PY" -m pytest ${PLUGIN[@]+"${PLUGIN[@]}"} evals/ --model "$MODEL" --judge "$MODEL" --em-device "$DEVICE" \
  --em-dtype auto --em-judge-dtype auto --em-report /tmp/device-check-report --em-cache-dir "$CACHE/records" -q \
  -p no:cacheprovider --durations 5 \
  ${EVAL_SAMPLES:+--em-samples "$EVAL_SAMPLES"}
cp /tmp/device-check-report/summary.json "$OUT/eval-summary.json" 2>/dev/null || true
cat "$OUT/summary.txt"
