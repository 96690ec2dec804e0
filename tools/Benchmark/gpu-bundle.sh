#!/bin/bash
# Builds .devrun/bench.tar.xz: the benchmark as a trimmed self-contained linux-x64 program without libtorch, to carry
# to a GPU machine that has PyTorch (its CUDA libtorch) but neither .NET nor TorchSharp's CUDA package. Run from the
# repository root; then on the GPU machine, from a copy of the repository with that file: tools/Benchmark/gpu-run.sh.
set -euo pipefail
out=$(mktemp -d)
dotnet publish tools/Benchmark/DreamBooth.Benchmark.csproj -c Debug -r linux-x64 --self-contained \
  -p:PublishTrimmed=true -p:TrimMode=partial -p:SuppressTrimAnalysisWarnings=true \
  -p:JsonSerializerIsReflectionEnabledByDefault=true -o "$out"
# libtorch comes from the GPU machine's PyTorch; debugger and tracing support are not needed.
rm -f "$out"/libtorch*.so "$out"/libc10.so "$out"/libgomp* "$out"/libshm.so "$out"/libnnapi_backend.so \
  "$out"/libaoti_custom_ops.so "$out"/libbackend_with_compiler.so "$out"/libjitbackend_test.so \
  "$out"/libmscordaccore.so "$out"/libmscordbi.so "$out"/createdump "$out"/libclrgc*.so "$out"/libcoreclrtraceptprovider.so
# The build's copy of the bridge (GLIBCXX_3.4.32 marked weak where this system lacks it) runs on older systems too.
cp tools/Benchmark/bin/Debug/net10.0/runtimes/linux-x64/native/libLibTorchSharp.so "$out"/ 2>/dev/null || true
mkdir -p .devrun && tar -C "$out" -cJf .devrun/bench.tar.xz . && rm -rf "$out"
ls -la .devrun/bench.tar.xz
