#!/usr/bin/env bash
# Every GPU measurement the engine and scale issues ask for, in ONE device call of at most 9.5 minutes
# (the device tool allows 600 s per command; run it with timeout_s=600):
#   run:  bash benchmarks/gpu_session.sh        (on the device machine; results under $OUT)
# The device image carries JAX with CUDA, optax, typer, rich and matplotlib; gradscope is pure Python,
# so it runs from the checkout without an install. Each part has a hard timeout and writes its
# results.json as it goes, so a part cut short still leaves what it measured.
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false
PY=${PY:-python3}
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  $PY -c "import jax, jaxlib; print('jax', jax.__version__, jaxlib.__version__, jax.devices())"
} 2>&1 | tee "$OUT/env.txt"
# engine targets, float64 references and the peers at the same sizes (~5–7 min)
timeout 400 $PY benchmarks/bench_targets.py --out "$OUT/targets" --peers jax,torch --device cuda 2>&1 \
  | tee "$OUT/targets.log"
# sweep throughput against stack size, the large sweep, the largest (d, T) (~3 min)
timeout 160 $PY benchmarks/bench_sweep.py --out "$OUT/sweep" --sweep-budget-s 45 --size-budget-s 25 2>&1 \
  | tee "$OUT/sweep.log"
echo "done: $(date -u)"
