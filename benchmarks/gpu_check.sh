#!/usr/bin/env bash
# The GPU check in one call (issue 21, point 6), for whoever is lent a GPU machine (device tool):
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl", ".gpu"], timeout_s=560)
# .whl: Python 3.12 wheels the machine lacks (open_clip_torch, facenet-pytorch, ftfy, wcwidth, SQLAlchemy, Alembic,
# Mako, greenlet, and PyAV for benchmarks/gpu_ffprobe.py where the machine has no FFmpeg); .gpu/media: a copy of
# ../shared/media, which does not travel. Prints the device, the model and pipeline benchmarks on cuda, the training
# benchmark, then the suite's non-web tests under the machine's Python 3.12 (the web tests need Gradio and Chromium,
# too large to carry). Each step has its own time limit so one failure cannot eat the others' time.
set -u
OUT="${OUT:-/tmp/gpu_check}"; mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PWD" || exit 1
fi
[ -d ../shared/media ] || { mkdir -p ../shared && cp -r .gpu/media ../shared/media; }
if ! command -v ffprobe >/dev/null; then
  mkdir -p /tmp/bin && printf '#!/bin/sh\nexec python3 %s/benchmarks/gpu_ffprobe.py "$@"\n' "$PWD" >/tmp/bin/ffprobe
  chmod +x /tmp/bin/ffprobe && export PATH="/tmp/bin:$PATH" && echo "ffprobe: PyAV stand-in (no FFmpeg here)"
fi
step() { local name=$1 limit=$2; shift 2; echo "== $name (limit ${limit}s, load $(cut -d' ' -f1-3 /proc/loadavg))";
         timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"; echo "== $name exit ${PIPESTATUS[0]}"; }
step device 30 bash -c 'nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; python3 -V;
  python3 -c "import torch, torchvision, open_clip, facenet_pytorch; print(torch.__version__, torchvision.__version__, torch.cuda.get_device_name())"'
step models 100 python3 -m benchmarks.models --device cuda --seconds 2
step pipeline 170 python3 -m benchmarks.pipeline --device cuda --skip-long
step training 80 python3 -m benchmarks.training --device cuda --seconds 2
step tests 150 python3 -m pytest -q -p no:cacheprovider -x --timeout 60 tests \
  --ignore-glob 'tests/test_webapp_*' --ignore tests/test_space.py --ignore tests/test_default_clip.py \
  --ignore tests/test_db_engine.py --ignore tests/test_training_jobs.py
