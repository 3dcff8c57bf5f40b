#!/usr/bin/env bash
# Issue 19, item 5: the checks to run when a GPU is lent, as one command that ends inside a
# 10-minute device call (90 + 150 + 2 x 170 s at most; TOKENS=512 or LIMIT=120 for a shorter
# one): the CUDA tests (which skip without a device), the products' benchmark
# (reports/benchmark_gpu.md's rows on the device), and a 1-layer GPT-2 at 1024 tokens verified
# with its oracle's products and bound on the device, then on numpy, the JSON of both kept.
#
#   OUT=/tmp/gpu bash scripts/gpu_checks.sh               # on the GPU machine (OUT: its files)
#   DEVICE=cpu QUICK=1 OUT=/tmp/g bash scripts/gpu_checks.sh   # the same steps on torch's CPU
set -o pipefail
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/gpu_checks}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-$PWD}
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
fi
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

timeout 90 python -m pytest -p no:cacheprovider -q -m "gpu or not slow" \
    tests/test_ozaki_torch.py tests/test_verify.py -k "cuda or ozaki or device" 2>&1 |
    tee "$OUT/pytest.txt" | tail -n 5

quick=${QUICK:+--quick}
timeout 150 python scripts/benchmark_gpu.py --device "$DEVICE" --repeat 1 $quick \
    --out "$OUT/benchmark_gpu.md" 2>"$OUT/benchmark_gpu.err" | tail -n 12

model=gpt2 config='{"n_layers": 1}' tokens=${TOKENS:-1024} limit=${LIMIT:-170}
if [ -n "$QUICK" ]; then  # a 1-layer width-64 GPT: what a loaded 2-core machine runs in time
    model=tiny_gpt tokens=32 limit=600
    config='{"vocab_size": 1024, "context_length": 32, "emb_dim": 64, "n_heads": 4, "n_layers": 1}'
fi
for products in "$DEVICE" numpy; do
    timeout $limit /usr/bin/time -f "%e s wall, %U+%S CPU s, %M KB max RSS" \
        python -m symgrad verify $model --config "$config" --tokens $tokens --samples 1 \
        --device "$DEVICE" --oracle-device "$products" --json \
        >"$OUT/${model}_1layer_${tokens}_$products.json" 2>"$OUT/${model}_1layer_${tokens}_$products.err"
    echo "$model 1 layer, $tokens tokens, products on $products: exit $?;" \
        "$(tail -n 1 "$OUT/${model}_1layer_${tokens}_$products.err")"
done
python - "$OUT" "$DEVICE" "$model" "$tokens" <<'EOF'
import json, sys
out, device, model, tokens = sys.argv[1:]
runs = {}
for p in (device, "numpy"):
    try:
        with open(f"{out}/{model}_1layer_{tokens}_{p}.json") as f:
            runs[p] = json.load(f)
    except (OSError, ValueError) as e:
        print(p, "no JSON:", e)
if len(runs) == 2:
    def flat(x, out):
        if isinstance(x, dict):
            for k in sorted(x):
                flat(x[k], out)
        elif isinstance(x, list):
            for v in x:
                flat(v, out)
        else:
            out.append(x)
        return out
    a, b = (flat(runs[p], []) for p in (device, "numpy"))
    floats = [abs(x - y) / abs(y) for x, y in zip(a, b) if isinstance(x, float)
              and isinstance(y, float) and x != y and y]
    print("verdicts:", runs[device]["verdict"], runs["numpy"]["verdict"],
          "| byte-identical:", runs[device] == runs["numpy"], "| fields:", len(a), len(b),
          "| other than floats differ:", sum(x != y for x, y in zip(a, b)
                                             if not isinstance(x, float)),
          "| floats differ:", len(floats), "largest relative:", max(floats, default=0.0))
EOF
