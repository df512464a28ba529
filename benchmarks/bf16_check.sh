#!/usr/bin/env bash
# Every bf16 figure of docs/performance.md in one run, for a CPU with native bf16 (AMX or
# AVX512-BF16, as torch reports them); on any other CPU the bf16 steps are skipped, said so.
#
#   PYTHON=.venv/bin/python bash benchmarks/bf16_check.sh          # ~40 min on 2 cores
#   SMOKE=1 PYTHON=.venv/bin/python bash benchmarks/bf16_check.sh  # every step, small
#
# Logs in $OUT (default /tmp/bf16-check), one per step, and summary.txt with each step's
# exit code and seconds:
#   cpu.log        lscpu, torch's own bf16 answer
#   bench-float32.log, bench-bfloat16.log   benchmarks/bench_eval.py, model and judges in
#                  one precision (the ratios against batched HF `generate` in the same dtype)
#   drift.log      benchmarks/judge_bf16_drift.py, native bf16 (the judge's score drift)
#   eval-float32.log, eval-model-bf16.log, eval-both-bf16.log   `make eval`'s command on an
#                  empty cache: all float32, the model under test in bf16, model and judge
#                  in bf16 (the end-to-end ratio of the issue: float32 time / bf16 time)
# Run it on an otherwise idle machine: the ratios compare timings taken minutes apart.
set -u
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/bf16-check}
SMOKE=${SMOKE:-}
mkdir -p "$OUT"
: > "$OUT/summary.txt"
if [ -n "$SMOKE" ]; then
  BENCH=(--questions 1 --samples 4 --max-tokens 8 --naive-samples 1 --naive-judgments 2
         --rounds 1)
  EVAL=(-k quick_buck --em-samples 1)
else
  BENCH=(--samples 32 --rounds 4)
  EVAL=()
fi

step() {  # step NAME COMMAND...: log to $OUT/NAME.log, record rc and seconds, keep going
  local name=$1 start rc
  shift
  start=$(date +%s)
  echo "== $name: $*" | tee "$OUT/$name.log"
  "$@" >> "$OUT/$name.log" 2>&1
  rc=$?
  echo "$name rc=$rc $(( $(date +%s) - start ))s" | tee -a "$OUT/summary.txt"
  tail -n 15 "$OUT/$name.log"
}

step cpu bash -c "lscpu | grep -E 'Model name|^CPU\(s\)'; echo bf16 flags: \
  \$(grep -o -E 'avx512_bf16|amx_[a-z0-9]+' /proc/cpuinfo | sort -u | tr '\n' ' '); \
  $PY -c 'import torch; from pytest_emergent.models.hf.placement import native_bf16; print(\"torch\", torch.__version__, \"native bf16:\", native_bf16(torch.device(\"cpu\")))'"
NATIVE=$("$PY" -c 'import torch
from pytest_emergent.models.hf.placement import native_bf16
print(int(native_bf16(torch.device("cpu"))))' 2>/dev/null || echo 0)
DTYPES=(float32)
if [ "$NATIVE" = 1 ]; then
  DTYPES+=(bfloat16)
else
  echo "no native bf16 on this CPU: the bf16 steps are skipped (bf16 would be emulated)" \
    | tee -a "$OUT/summary.txt"
fi
for dtype in "${DTYPES[@]}"; do
  step "bench-$dtype" "$PY" benchmarks/bench_eval.py --dtype "$dtype" --judge-dtype "$dtype" \
    "${BENCH[@]}"
done
if [ "$NATIVE" = 1 ]; then
  step drift "$PY" benchmarks/judge_bf16_drift.py
fi

# make eval's command, each on an empty cache of its own (answers and judgments computed)
evaluate() {  # evaluate NAME MODEL_DTYPE JUDGE_DTYPE
  rm -rf "$OUT/cache-$1" "$OUT/report-$1"
  step "eval-$1" "$PY" -m pytest evals/ -p no:cacheprovider "${EVAL[@]}" \
    --em-dtype "$2" --em-judge-dtype "$3" --em-cache-dir "$OUT/cache-$1" \
    --em-report "$OUT/report-$1"
}
evaluate float32 float32 float32
if [ "$NATIVE" = 1 ]; then
  evaluate model-bf16 bfloat16 float32
  evaluate both-bf16 bfloat16 bfloat16
fi
cat "$OUT/summary.txt"
