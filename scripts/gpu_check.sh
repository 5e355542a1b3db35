#!/usr/bin/env bash
# One pass over what a CUDA GPU adds, in about 6 minutes on one H200 (measured; 4.5 of them training):
#   1. benchmarks/bench_model.py --device cuda (fp32 vs fp16 AMP training steps of tiny/small/paper);
#   2. `usdiff train --config paper --steps 200` (the study's 92 M model, fp16 AMP) on the built-in data;
#   3. the `fast` recipe of the shipped checkpoint for the steps its CPU budget gives (8,800; fp32,
#      the same t/noise stream as on a CPU) and, beside it, the `small` preset for a few minutes;
#   4. scripts/diffae_goals.py on both.
# Usage: OUT=runs/gpu_check bash scripts/gpu_check.sh   (python3 must hold torch with CUDA)
set -u
OUT=${OUT:-runs/gpu_check}
RUN=${RUN:-/tmp/usdiff_gpu}
PY=${PY:-python3}
FAST_STEPS=${FAST_STEPS:-8800}
MINUTES=${MINUTES:-4.5}
mkdir -p "$OUT" "$RUN"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi -L || true
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 1

echo "== 1. benchmark"; t0=$(date +%s)
$PY benchmarks/bench_model.py --device cuda > "$OUT/bench.md" 2>&1; echo "bench rc $? in $(( $(date +%s) - t0 )) s"
cat "$OUT/bench.md"

echo "== data and training"
$PY -c "from usdiff.data.generate import ensure_dataset; ensure_dataset('data/builtin', workers=8, progress=False)" \
    > "$RUN/data.log" 2>&1 &
data=$!
$PY scripts/train_pretrained.py --recipe fast --steps "$FAST_STEPS" --minutes "$MINUTES" --threads 2 --out "$RUN/fast" \
    --export "$OUT/diffae_tiny_fast.pt" --eval-n 0 > "$OUT/fast.log" 2>&1 &
fast=$!
$PY scripts/train_pretrained.py --config small --recipe fast --lr 2e-4 --steps 100000 --minutes "$MINUTES" --threads 2 \
    --out "$RUN/small" --export "$RUN/diffae_small_fast.pt" --eval-n 0 > "$OUT/small.log" 2>&1 &
small=$!
wait $data; echo "data rc $?"
t0=$(date +%s)
$PY -m usdiff train --config paper --data data/builtin --out "$RUN/paper" --steps 200 > "$OUT/paper.log" 2>&1
echo "paper rc $? in $(( $(date +%s) - t0 )) s (beside the two trainings)"
$PY - "$RUN/paper/ckpt.pt" >> "$OUT/paper.log" 2>&1 <<'PYEOF'
import sys, torch
c = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
h = c["history"]
print(f"paper: step {c['step']}, amp {c['train_config']['amp']}, loss first 20 {sum(h[:20]) / 20:.4f}, "
      f"last 20 {sum(h[-20:]) / 20:.4f}, finite {all(v == v for v in h)}, grad scale {c['scaler'].get('scale')}")
PYEOF
wait $fast; echo "fast rc $?"; wait $small; echo "small rc $?"
tail -3 "$OUT/fast.log" "$OUT/small.log"
# the full run state of the fast recipe (to resume elsewhere), in parts that fit a 16 MiB transfer
[ -f "$RUN/fast/ckpt.pt" ] && split -b 15M -d "$RUN/fast/ckpt.pt" "$OUT/fast_ckpt.part"
echo "== goals"
for ck in "$OUT/diffae_tiny_fast.pt" "$RUN/diffae_small_fast.pt"; do
    [ -f "$ck" ] && $PY scripts/diffae_goals.py --ckpt "$ck" --n 400 >> "$OUT/goals.log" 2>&1
done
cat "$OUT/goals.log"
