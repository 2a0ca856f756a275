#!/usr/bin/env bash
# make gpu-check: the CUDA kernels on this machine's GPU, no TensorRT needed. Builds them for the local GPU, runs
# each against its CPU twin on the seeded cases of tests/kernel_emulation/drive_kernels.cpp (the ones CI runs
# emulated, FP32 and FP16, plus the full-size shapes), under compute-sanitizer memcheck and racecheck where it is
# installed, and prints the kernels' timings at the full-size shapes. Ends with one line; non-zero exit on failure
# or where there is no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "gpu-check: $*" >&2
  exit 2
}

CUDA=${CUDA_HOME:-/usr/local/cuda}
NVCC=${NVCC:-$CUDA/bin/nvcc}
if ! command -v nvidia-smi > /dev/null 2>&1 || ! nvidia-smi -L > /dev/null 2>&1; then
  fail "no NVIDIA GPU on this machine (nvidia-smi finds none): nothing checked; the emulated kernels run in 'make test'"
fi
[ -x "$NVCC" ] || fail "no nvcc at $NVCC (set CUDA_HOME or NVCC)"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
OUT=${GPU_CHECK_DIR:-build/gpu-check}
mkdir -p "$OUT"

echo "gpu-check: building the kernels for the local GPU ($GPU)"
"$NVCC" -O2 -std=c++17 -arch=native -c plugins/matrixNMS/matrixNmsKernel.cu -o "$OUT/matrixNmsKernel.o" &
"$NVCC" -O2 -std=c++17 -arch=native -c plugins/multilevelRoIAlign/multilevelRoIAlignKernel.cu -o "$OUT/multilevelRoIAlignKernel.o" &
g++ -O2 -std=c++17 -c plugins/cpu/segtrtCpuOps.cpp -o "$OUT/segtrtCpuOps.o" &
g++ -O2 -std=c++17 -DSEGTRT_REAL_GPU -I"$CUDA/include" -c tests/kernel_emulation/drive_kernels.cpp -o "$OUT/drive_kernels.o" &
wait %1 %2 %3 %4 || fail "build failed"
"$NVCC" -arch=native "$OUT"/*.o -o "$OUT/drive_kernels"

echo "gpu-check: kernels against the CPU twins"
"$OUT/drive_kernels" kernels empty-batch pending-error
if SANITIZER=$(command -v compute-sanitizer || ls "$CUDA/bin/compute-sanitizer" 2> /dev/null); then
  for tool in memcheck racecheck; do
    echo "gpu-check: compute-sanitizer --tool $tool"
    "$SANITIZER" --tool "$tool" --error-exitcode 3 "$OUT/drive_kernels" kernels
  done
else
  echo "gpu-check: compute-sanitizer not found: memcheck and racecheck skipped"
fi
echo "gpu-check: full-size shapes against the twins, and timings"
"$OUT/drive_kernels" full-size
echo "gpu-check: passed on $GPU"
