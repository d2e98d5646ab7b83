#!/usr/bin/env bash
# The benchmarks on one CUDA GPU: training step per strategy (fp32 and bf16 autocast, SDPA attention in
# the packed forward, fused AdamW, model FLOPs and MFU against the GPU's own measured GEMM rate),
# inference (merged and unmerged LoRA against the base, bf16) and peak memory per strategy (bf16).
# Writes benchmarks/results/{training,inference,memory}-gpu.json and .md, as the CPU runs do.
# Sized to finish in well under 8 minutes on one GPU with MiniLM (each script is also capped by `timeout`).
#
#   bash benchmarks/gpu.sh             # on a machine with CUDA
#   bash benchmarks/gpu.sh --dry-run   # on CPU, tiny sizes, results in a temporary folder: the suite runs this
#
# PYTHON picks the interpreter (default: python); RESULTS the output folder; extra arguments go to every script.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-python}
mode=gpu
if [[ "${1:-}" == "--dry-run" ]]; then
    mode=dry-run
    shift
fi

if [[ $mode == dry-run ]]; then
    device=cpu
    results=${RESULTS:-$(mktemp -d)}
    sizes=(--batch-size 2 --batches 2 --rounds 1 --max-length 32 --threads 1)
    epoch=4
    limit=600
else
    if ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "gpu.sh: no CUDA device here; 'bash benchmarks/gpu.sh --dry-run' checks the script on CPU" >&2
        exit 2
    fi
    device=cuda
    results=${RESULTS:-$here/results}
    sizes=(--batch-size 16 --batches 8 --rounds 3 --max-length 256)
    epoch=256
    limit=180
fi

strategies=full,attention,qv,lora,subspace-fastfood-10000,peft-lora
bf16=full-bf16,attention-bf16,qv-bf16,lora-bf16,subspace-fastfood-10000-bf16,peft-lora-bf16
start=$SECONDS
run() {  # name, script, arguments...
    local name=$1 script=$2
    shift 2
    echo "gpu.sh: $name" >&2
    timeout "$limit" "$python" "$here/$script" --device "$device" "${sizes[@]}" --results "$results" \
        --name "$name-$mode" "$@" > /dev/null
}
run training training.py --variants "$strategies,$bf16" --epoch-questions "$epoch" "$@"
run inference inference.py --precision bf16 "$@"
run memory memory.py --precision bf16 "$@"
echo "gpu.sh: $mode done in $((SECONDS - start)) s; results in $results" >&2
