#!/bin/bash
# On a GPU machine with PyTorch (CUDA build) and no .NET: unpacks .devrun/bench.tar.xz (tools/Benchmark/gpu-bundle.sh)
# inside the repository (the benchmark finds the fixtures from there), points TorchSharp's bridge at the wheel's
# libtorch, and runs cuda-check, offload-sd14, then train-sd14 per recipe (the 8GB recipe first: its gradient offload is
# the newest thing to measure), each stage under a time limit so the whole run ends
# within BUDGET seconds. RECIPES, NOPRIOR_RECIPES, SELECTIVE_RECIPES (memory profiles with selective checkpointing), DETERMINISTIC_RECIPES (with --deterministic) and CHECKS choose what
# runs; AB_ROUNDS=N adds checkpoint-ab-sd14 on the GPU; GENERATE=0 leaves text-to-image out, OFFLOAD=0 offload-sd14. Logs go to $OUT (default ./gpu-out). The eighth pass in docs/benchmarks.md ran this.
set -u
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
start=$(date +%s); DEADLINE=$((start + ${BUDGET:-440}))
el() { echo "[$(( $(date +%s) - start )) s] $*"; }
stage() { # stage MAXSECONDS LOGNAME command...
  local max=$1 log=$2; shift 2; local left=$(( DEADLINE - $(date +%s) )); local t=$(( left < max ? left : max ))
  if [ $t -lt 15 ]; then el "SKIPPED (no time): $*"; return; fi
  el "start ($t s max): $*"; timeout -k 5 $t "$@" > >(tee -a "$OUT/$log") 2>&1; el "exit $? : $*"; }
R=$PWD; B=$R/.devrun/bench; mkdir -p "$B" && tar -C "$B" -xJf "$R/.devrun/bench.tar.xz" || exit 1
SITE=$(python3 -c 'import importlib.util as u;print(u.find_spec("torch").submodule_search_locations[0])')
export LD_LIBRARY_PATH=${TORCH_LIB:-$SITE/lib} DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/env.txt"
cd "$B"
stage 150 cuda-check.txt ./DreamBooth.Benchmark cuda-check cuda /tmp/cc ${CHECKS:-offload,8GB,resume,validation,fp32,checkpointing,selective,8bit,cache-latents,text-encoder,set-grads-to-none,fp16,bf16,lora,16GB,12GB}
# The first stage on the full-size model also writes its random weights (about 4 GB) to /tmp/sd14.
[ "${OFFLOAD:-1}" = 1 ] && stage 120 offload-sd14.txt ./DreamBooth.Benchmark offload-sd14 /tmp/sd14 --device cuda
for r in ${RECIPES:-8GB 12GB fp32 checkpointing 8bit bf16 fp16 16GB}; do
  stage 60 train-sd14.txt ./DreamBooth.Benchmark train-sd14 $r 6 /tmp/sd14 --device cuda
done
for r in ${SELECTIVE_RECIPES:-}; do
  stage 60 train-sd14-selective.txt ./DreamBooth.Benchmark train-sd14 $r 6 /tmp/sd14 --device cuda --selective
done
for r in ${DETERMINISTIC_RECIPES:-}; do
  stage 60 train-sd14-deterministic.txt ./DreamBooth.Benchmark train-sd14 $r 6 /tmp/sd14 --device cuda --deterministic
done
for r in ${NOPRIOR_RECIPES:-fp32 checkpointing}; do
  stage 45 train-sd14-noprior.txt ./DreamBooth.Benchmark train-sd14 $r 6 /tmp/sd14 --device cuda --no-prior
done
[ "${AB_ROUNDS:-0}" -gt 0 ] && stage 60 checkpoint-ab.txt ./DreamBooth.Benchmark checkpoint-ab-sd14 $AB_ROUNDS /tmp/sd14 --device cuda
[ "${AB_ROUNDS:-0}" -gt 0 ] && stage 60 checkpoint-ab-prior.txt ./DreamBooth.Benchmark checkpoint-ab-sd14 $AB_ROUNDS /tmp/sd14 --prior --device cuda
[ "${GENERATE:-1}" = 1 ] && stage 60 generate.txt ./DreamBooth.Benchmark generate-sd14 25 /tmp/sd14 --device cuda --dtype fp16
el done
