#!/usr/bin/env bash
# Every GPU check in one run, within a time budget, results in OUTDIR:
#   BUDGET=555 bash benchmarks/gpu_suite.sh OUTDIR
# speed (sd15, then sdxl), every sampler in fp16 (gpu_check.py samplers), the cuda-marked tests, then the
# full-size flow families (gpu_check.py flow) with whatever time is left. Wheels in ./.whl, if any, are
# installed first (for machines without the project's packages).
set -u
OUTDIR=${1:?usage: gpu_suite.sh OUTDIR}; mkdir -p "$OUTDIR"
START=$SECONDS; BUDGET=${BUDGET:-555}
left() { echo $(( BUDGET - (SECONDS - START) )); }
step() {  # step NAME MAX_SECONDS CMD...
  local name=$1 max=$2; shift 2
  local l; l=$(left); local t=$(( max < l ? max : l ))
  if (( t < 20 )); then echo "== $name: skipped, ${l}s left" | tee -a "$OUTDIR"/log.txt; return; fi
  echo "== $name (limit ${t}s) at $((SECONDS-START))s" | tee -a "$OUTDIR"/log.txt
  timeout -k 5 $t "$@" >> "$OUTDIR"/log.txt 2>&1; echo "== $name rc=$? at $((SECONDS-START))s" | tee -a "$OUTDIR"/log.txt
}
[ -d .whl ] && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export DARKROOM_HOME=/tmp/drhome DARKROOM_COMPILE_CACHE=/tmp/drhome/cc
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUTDIR"/log.txt 2>&1
python3 -c "import torch,diffusers,transformers;print(torch.__version__,diffusers.__version__,transformers.__version__)" >> "$OUTDIR"/log.txt 2>&1
step sd15 230 python3 benchmarks/speed.py --cases sd15 --compile-cache /tmp/drhome/cc --out "$OUTDIR"/sd15.json
step samplers 100 python3 benchmarks/gpu_check.py samplers --out "$OUTDIR"/samplers.json
step sdxl 200 python3 benchmarks/speed.py --cases sdxl --no-relaunch --compile-cache /tmp/drhome/cc-xl --out "$OUTDIR"/sdxl.json
rm -rf /tmp/drhome/cache/bench-models/sdxl-float16
step tests 90 python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py -o addopts="" 
step flow 400 python3 benchmarks/gpu_check.py flow --models flux-schnell,sd35-medium --out "$OUTDIR"/flow.json
df -h /tmp | tail -1 >> "$OUTDIR"/log.txt
