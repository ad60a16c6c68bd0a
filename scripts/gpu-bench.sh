#!/usr/bin/env bash
# GPU decode figures for random-initialised models with the shapes of real checkpoints (speed does
# not depend on weight values): `specsweep bench --device cuda` per preset, with the HBM roofline
# from the tool's own bandwidth probe (a device tensor's sum through burn), plus PyTorch's read
# bandwidth on the same GPU as a second opinion when python3 has torch.
#
#   scripts/gpu-bench.sh SPECSWEEP_BINARY OUT_DIR [PRESET...]
#
# Build the binary with `cargo build --release -p specsweep --features cuda`; CUDA's driver and
# NVRTC are loaded at run time (cudarc), so the build machine needs no CUDA toolkit.
set -uo pipefail
bin=${1:?usage: gpu-bench.sh SPECSWEEP_BINARY OUT_DIR [PRESET...]}
out=${2:?usage: gpu-bench.sh SPECSWEEP_BINARY OUT_DIR [PRESET...]}
shift 2
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(qwen3-1.7b llama3-8b)
mkdir -p "$out"

# NVRTC may live in the CUDA toolkit or in the nvidia-cuda-nvrtc Python package.
nvrtc=$(python3 -c 'import nvidia.cuda_nvrtc as m, os; print(os.path.join(list(m.__path__)[0], "lib"))' 2>/dev/null || true)
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:${nvrtc}:${LD_LIBRARY_PATH:-}"

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv \
    | tee "$out/gpu.csv"
"$bin" --version || true

if python3 -c 'import torch' 2>/dev/null; then
    python3 - <<'EOF' | tee "$out/torch-bandwidth.txt"
import torch, time
x = torch.rand(1 << 30, device="cuda")  # 4 GiB f32
x.sum(); torch.cuda.synchronize()
times = []
for _ in range(10):
    torch.cuda.synchronize()
    t = time.perf_counter()
    x.sum().item()
    times.append(time.perf_counter() - t)
best = min(times)
print(f"torch read bandwidth (sum of 4 GiB f32): {x.numel() * 4 / best / 1e9:.0f} GB/s")
EOF
fi

status=0
for p in "${presets[@]}"; do
    for dtype in bf16; do
        echo "== $p $dtype"
        timeout "${GPU_BENCH_TIMEOUT:-240}" "$bin" bench --device cuda --random "$p" --dtype "$dtype" -p 128 -n 64 -d 0,1024 \
            -v 1,2,4,8 -r 3 --bandwidth-mib 4096 -o json >"$out/$p-$dtype.json" 2>"$out/$p-$dtype.err"
        rc=$?
        tail -5 "$out/$p-$dtype.err"
        [ $rc -eq 0 ] || { echo "$p $dtype: exit $rc"; status=1; continue; }
        python3 - "$out/$p-$dtype.json" <<'EOF'
import json, sys
for r in json.load(open(sys.argv[1])):
    extra = ""
    if r.get("roofline_fraction") is not None:
        extra = f"  roofline {r['roofline_ts']:.0f} t/s ({100 * r['roofline_fraction']:.1f} %), {r['bandwidth_gbs']:.0f} GB/s"
    if r.get("verify_cost") is not None:
        extra = f"  {r['avg_ms']:.2f} ms  T(k+1)/T(1) {r['verify_cost']:.2f}"
    print(f"{r['model']:<18} {r['test']:<8} d{r['n_depth']:<5} {r['avg_ts']:9.1f} ± {r['stddev_ts']:.1f} t/s{extra}")
EOF
    done
done
exit $status
