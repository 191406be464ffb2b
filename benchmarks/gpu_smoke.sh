#!/usr/bin/env bash
# One-GPU smoke check of sumcircuit's CUDA path: at most 8 minutes, every figure in ONE file.
#
#   bash benchmarks/gpu_smoke.sh [OUT_FILE]            # on a machine with a GPU
#   bash benchmarks/gpu_smoke.sh --dry-run [OUT_FILE]  # the same steps on the CPU, tiny sizes (CI)
#
# Options: --model NAME (default smollm2-135m, which must be in the model cache: the GPU machine
# has no network; --tiny uses a tiny random Llama instead), --data NAME (default xsum), --keep
# (keep the work folder). OUT_FILE defaults to $OUT/gpu_smoke.txt when $OUT is set, else
# ./gpu_smoke.txt. PYTHON (default python3) runs everything; run it from the repository root
# with sumcircuit importable (installed, or PYTHONPATH=src).
#
# Steps, each with its own time limit, each run even when an earlier one failed:
#   device    nvidia-smi and what torch sees
#   tests     the device tests (tests/integration/test_on_device.py, SUMCIRCUIT_TEST_DEVICE)
#   study     sumcircuit run --preset quick with --set limits that keep it short
#   roofline  benchmarks/roofline.py on that run: GFLOP/s per stage, % of the measured peak
#   generate  benchmarks/generate_bench.py --loglik, small
#   train     benchmarks/train_bench.py step, small
# --dry-run hides the GPU (CUDA_VISIBLE_DEVICES=), builds a tiny model, reads the XSum sample
# of the tests and runs every step at toy size, so the script cannot rot unnoticed.
# The output format is described in benchmarks/RESULTS.md ("GPU smoke").
set -u

DRY=0
KEEP=0
TINY=0
MODEL=smollm2-135m
DATA=xsum
OUT_FILE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --tiny) TINY=1 ;;
        --keep) KEEP=1 ;;
        --model) MODEL="$2"; shift ;;
        --data) DATA="$2"; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        -*) echo "gpu_smoke.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) OUT_FILE="$1" ;;
    esac
    shift
done
if [ -z "$OUT_FILE" ]; then
    OUT_FILE="${OUT:-.}/gpu_smoke.txt"
fi
PY="${PYTHON:-python3}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_smoke.XXXXXX")"
mkdir -p "$(dirname "$OUT_FILE")"
: > "$OUT_FILE" || { echo "gpu_smoke.sh: cannot write $OUT_FILE" >&2; exit 2; }
cleanup() { [ "$KEEP" = 1 ] || rm -rf "$WORK"; }
trap cleanup EXIT

SUMCIRCUIT=("$PY" -c 'import sys; from sumcircuit.cli import main; sys.exit(main(sys.argv[1:]))')
if [ "$DRY" = 1 ]; then
    export CUDA_VISIBLE_DEVICES=""  # torch sees no GPU: every stage's device auto-detects the CPU
    export OMP_NUM_THREADS=1        # tiny matrices: one thread is fastest
    DEVICE=cpu
    TINY=1
    DATA="$ROOT/tests/fixtures/xsum_sample.jsonl"
    MODE="dry-run (cpu, tiny model)"
else
    DEVICE=cuda
    MODE="gpu"
fi
export SUMCIRCUIT_TEST_DEVICE="$DEVICE"
export TQDM_DISABLE=1  # progress bars would fill the file with carriage returns
if [ "$TINY" = 1 ]; then
    MODEL="$WORK/tiny-llama"
    "$PY" -c 'import sys; from sumcircuit.models.tiny import save_tiny; save_tiny("llama", sys.argv[1])' \
        "$MODEL" > /dev/null 2>&1 || echo "could not build the tiny model in $MODEL" >> "$OUT_FILE"
    # a 4-layer model: circuits of 2 layers, faithfulness sizes that fit it
    MAXLEN=128
    SETS=(finetune.limit=8 diff.limit=4 locate.k=2 faithfulness.split=test faithfulness.controls=3
          'faithfulness.sizes=[1,2]' 'faithfulness.control_sizes=[]' validate.limit=4
          validate.controls=3 'lora.arms=[standard,targeted]' lora.limit=8 lora.val_limit=2
          lora.rouge_val_limit=2 evaluate.limit=3 evaluate.max_new_tokens=6
          # the fixture's 8 test documents serve faithfulness and validate alike: validate
          # scores on the documents that chose the circuit, knowingly (never in the real presets)
          validate.allow_overlap=true)
    GEN_ARGS=(--docs 4 --batch-size 4 --max-new-tokens 6 --max-length 64 --threads 1)
    TRAIN_ARGS=(--batch-size 2 --max-length 64 --steps 2 --targeted 2,3)
    REPEATS=1
else
    MAXLEN=256
    SETS=(finetune.limit=32 diff.limit=16 faithfulness.limit=20 validate.limit=4
          validate.controls=5 lora.limit=16 lora.val_limit=8 lora.rouge_val_limit=4
          evaluate.limit=8)
    GEN_ARGS=(--docs 16 --batch-size 16 --max-new-tokens 32 --max-length 512)
    TRAIN_ARGS=(--batch-size 4 --max-length 256 --steps 4)
    REPEATS=5
fi
for key in diff attribute faithfulness validate evaluate; do SETS+=("$key.n_boot=200"); done
SET_ARGS=()
for s in "${SETS[@]}"; do SET_ARGS+=(--set "$s"); done

{
    echo "# sumcircuit GPU smoke"
    echo "mode: $MODE"
    echo "started: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "model: $MODEL"
    echo "data: $DATA"
} >> "$OUT_FILE"

NAMES=()
STATUS=()
SECONDS_TAKEN=()
# step NAME LIMIT_S COMMAND...: run it under a time limit, its output into the file
step() {
    local name="$1" limit="$2"
    shift 2
    echo "== step $name (limit ${limit} s)" >> "$OUT_FILE"
    local start rc
    start=$(date +%s)
    if declare -F "$1" > /dev/null; then  # a function of this script: quick, no limit needed
        (cd "$ROOT" && "$@") >> "$OUT_FILE" 2>&1
    else
        (cd "$ROOT" && timeout "$limit" "$@") >> "$OUT_FILE" 2>&1
    fi
    rc=$?
    local took=$(( $(date +%s) - start ))
    [ "$rc" = 124 ] && echo "(stopped at the ${limit} s limit)" >> "$OUT_FILE"
    echo "== end $name: exit $rc, ${took} s" >> "$OUT_FILE"
    NAMES+=("$name")
    STATUS+=("$rc")
    SECONDS_TAKEN+=("$took")
}

device_info() {
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    else
        echo "nvidia-smi: not found"
    fi
    "$PY" - "$DEVICE" <<'EOF'
import sys

import torch

want = sys.argv[1]
print(f"torch {torch.__version__}, cuda build {torch.version.cuda}")
print(f"torch.cuda.is_available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        print(f"cuda:{i} {props.name}, {props.total_memory / 2**30:.1f} GiB, "
              f"capability {props.major}.{props.minor}, bf16 {torch.cuda.is_bf16_supported()}")
print(f"cpu threads: {torch.get_num_threads()}, onednn bf16: "
      f"{torch.ops.mkldnn._is_mkldnn_bf16_supported()}")
if want == "cuda" and not torch.cuda.is_available():
    sys.exit("no CUDA device: run with --dry-run for the CPU check")
EOF
}

step device 60 device_info
step tests 120 "$PY" -m pytest tests/integration/test_on_device.py -q -p no:cacheprovider
step study 300 "${SUMCIRCUIT[@]}" run --preset quick --out "$WORK/run" --model "$MODEL" \
    --data "$DATA" --max-length "$MAXLEN" "${SET_ARGS[@]}"
step roofline 90 "$PY" benchmarks/roofline.py --run "$WORK/run" --out "$WORK/roofline.json" \
    --device "$DEVICE" --repeats "$REPEATS"
step generate 90 "$PY" benchmarks/generate_bench.py --model "$MODEL" --data "$DATA" --loglik \
    --device "$DEVICE" "${GEN_ARGS[@]}"
step train 90 "$PY" benchmarks/train_bench.py step --model "$MODEL" --data "$DATA" \
    --device "$DEVICE" "${TRAIN_ARGS[@]}"

passed=0
{
    echo "== summary"
    for i in "${!NAMES[@]}"; do
        verdict=fail
        [ "${STATUS[$i]}" = 0 ] && verdict=pass && passed=$((passed + 1))
        echo "step ${NAMES[$i]}: $verdict (exit ${STATUS[$i]}, ${SECONDS_TAKEN[$i]} s)"
    done
    echo "passed: $passed of ${#NAMES[@]}"
    echo "finished: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >> "$OUT_FILE"
echo "gpu_smoke: $passed of ${#NAMES[@]} steps passed; everything is in $OUT_FILE"
[ "$passed" = "${#NAMES[@]}" ]
