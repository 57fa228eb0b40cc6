#!/usr/bin/env bash
# One chunk of training of the committed run (checkpoints/train/) on a lent GPU machine, then the learned
# backend's GPU latency. Run THERE, from the repository root, through the device tool:
#   carry: [".whl", ".gl"]   command: bash tools/gpu_train_chunk.sh 8     (8 = minutes of training)
# (prepare .whl/.gl here first: bash tools/gpu_prepare_carry.sh). What comes back in $OUT:
#   run.tar            the run directory after the chunk: tar -xf <files_at>/run.tar -C checkpoints/train
#   bench_one2any.json one2any bench --device cuda on the bundled sample with the new weights
#   chunk.log          this script's output
# Extra arguments go to the trainer, e.g. --set data.sampler.max_rotation_deg=180 for the next curriculum stage.
# ONE2ANY_CHUNK_DRYRUN=1 tries the same steps on this CPU machine (no packages unpacked, --device cpu).
set -euo pipefail
MINUTES=${1:-8}
shift || true
OUT=${OUT:-/tmp/one2any_chunk_out}
mkdir -p "$OUT"
exec > >(tee "$OUT/chunk.log") 2>&1
cd "$(dirname "$0")/.."
DEVICE=cuda
if [ "${ONE2ANY_CHUNK_DRYRUN:-0}" = 1 ]; then
  DEVICE=cpu
  PY=${PYTHON:-.venv/bin/python}
else
  PY=python3
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
  export __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json}
  [ -f "$__EGL_VENDOR_LIBRARY_FILENAMES" ] || unset __EGL_VENDOR_LIBRARY_FILENAMES
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 ONE2ANY_GL_BACKEND=egl
date -u
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
"$PY" - <<'PY'
import torch
from one2any_ros.data.render_gl import GlRenderer
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
r = GlRenderer(seed=0)
print("OpenGL:", r.info)
PY
start=$(date +%s)
set +e
"$PY" -m one2any_ros train --config config/train_gpu.yaml --resume --device "$DEVICE" \
  --set train.max_minutes="$MINUTES" "$@" 2>&1 | tr '\r' '\n' | grep -vE '^train: +[0-9]+%' | grep -v '^$'
rc=${PIPESTATUS[0]}
set -e
echo "training exited with $rc after $(( $(date +%s) - start )) s"
tar -cf "$OUT/run.tar" -C checkpoints/train --exclude='best.*' --exclude='*.tmp' .
"$PY" -m one2any_ros.apps.cli bench --backend one2any --device "$DEVICE" --checkpoint checkpoints/train/checkpoint \
  --out "$OUT" --repeats 3 || echo "bench failed"
grep -h '"kind": "val"' checkpoints/train/metrics.jsonl | tail -3
ls -la "$OUT"
exit "$rc"
