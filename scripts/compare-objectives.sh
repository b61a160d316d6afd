#!/usr/bin/env bash
# The paper's central comparison on our system: ELECTRA vs masked-LM pre-training of the
# same encoder on the same data for the same training compute, then fine-tuning both on
# the downstream tasks with several seeds. Prints one table.
#
#   scripts/compare-objectives.sh [--config FILE] [--steps N] [--device cpu|cuda]
#                                 [--seeds S] [--out DIR] [--tasks DIR] [--quick]
#
# --steps is ELECTRA's step count; MLM gets the steps that spend the same FLOPs (counted by
# `electra flops`: matrix products, 3x forward, the generator included). Defaults: the tiny
# config on CPU, 400 ELECTRA steps, 3 seeds, every task folder in data/tasks (the in-repo
# WordNet supersense task; --tasks DIR takes a folder of task folders), with CPU-sized
# fine-tuning subsets (--quick: shorter still, for a smoke run). On a GPU:
#   scripts/compare-objectives.sh --config configs/electra-small.toml --device cuda --steps 20000
# Needs `make build` first.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=configs/tiny.toml
STEPS=400
DEVICE=cpu
SEEDS=3
OUT=runs/compare-objectives
TASKS=data/tasks
QUICK=0
while [ $# -gt 0 ]; do
    case "$1" in
        --config) CONFIG=$2; shift 2 ;;
        --steps) STEPS=$2; shift 2 ;;
        --device) DEVICE=$2; shift 2 ;;
        --seeds) SEEDS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --tasks) TASKS=$2; shift 2 ;;
        --quick) QUICK=1; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
B=./target/release/electra
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
[ -x "$B" ] || { echo "build first: make build" >&2; exit 1; }
mkdir -p "$OUT"

MLM_SET=(--set 'model.objective="mlm"' --set 'data.mask_strategy="bert"')
total() { "$PY" -c 'import json,sys; print(json.load(sys.stdin)["total"])'; }
F_ELECTRA=$("$B" flops --config "$CONFIG" | total)
F_MLM=$("$B" flops --config "$CONFIG" "${MLM_SET[@]}" | total)
MLM_STEPS=$("$PY" -c "print(round($F_ELECTRA * $STEPS / $F_MLM))")
echo "FLOPs per step: electra $F_ELECTRA, mlm $F_MLM; steps: electra $STEPS, mlm $MLM_STEPS"

# Fine-tuning sizes: every task's full training set on a GPU; subsets on a CPU.
finetune_args() {
    local task=$1
    if [ "$DEVICE" = cpu ]; then
        case "$(basename "$task")" in
            wordnet_supersense) echo "--max-seq-len 32 --max-train-examples $((QUICK ? 1000 : 6000)) --max-eval-examples 2000" ;;
            *) echo "--max-seq-len 128 --max-train-examples $((QUICK ? 300 : 1696)) --max-eval-examples 431" ;;
        esac
    fi
}

for objective in electra mlm; do
    run="$OUT/$objective"
    if [ "$objective" = electra ]; then
        steps=$STEPS; extra=()
    else
        steps=$MLM_STEPS; extra=("${MLM_SET[@]}")
    fi
    if [ ! -f "$run/final/model.safetensors" ]; then
        start=$(date +%s.%N)
        "$B" pretrain --config "$CONFIG" --run-dir "$run" --device "$DEVICE" --no-progress \
            --set "train.total_steps=$steps" --set "checkpoint.every_steps=0" "${extra[@]}" \
            > "$run.pretrain.log" 2>&1 || { tail -20 "$run.pretrain.log"; exit 1; }
        end=$(date +%s.%N)
        "$PY" -c "print($end - $start)" > "$run.seconds"
    fi
    for task in "$TASKS"/*/; do
        name=$(basename "$task")
        out="$OUT/$objective-$name"
        if [ ! -f "$out/results.json" ]; then
            # shellcheck disable=SC2046
            "$B" finetune --model "$run" --task "$task" --out "$out" --device "$DEVICE" \
                --seeds "$SEEDS" --lr 1e-3 --no-progress $(finetune_args "$task") \
                > "$out.log" 2>&1 || { tail -20 "$out.log"; exit 1; }
        fi
    done
done

"$PY" - "$OUT" "$CONFIG" "$F_ELECTRA" "$STEPS" "$F_MLM" "$MLM_STEPS" "$SEEDS" <<'EOF'
import json, os, sys, glob
out, config, fe, se, fm, sm, seeds = sys.argv[1:]
flops = {"electra": float(fe) * int(se), "mlm": float(fm) * int(sm)}
steps = {"electra": int(se), "mlm": int(sm)}
tasks = sorted({os.path.basename(p)[len("electra-"):] for p in glob.glob(f"{out}/electra-*") if os.path.isdir(p)})
head = ["objective", "steps", "pre-training FLOPs", "pre-training s"]
for t in tasks:
    head += [f"{t} acc", f"{t} macro-F1"]
rows = []
for obj in ["electra", "mlm"]:
    secs = float(open(f"{out}/{obj}.seconds").read())
    row = [obj, str(steps[obj]), f"{flops[obj]:.3e}", f"{secs:.0f}"]
    for t in tasks:
        r = json.load(open(f"{out}/{obj}-{t}/results.json"))
        d = r["median"]["dev"]
        row += [f"{d['accuracy']:.3f}", f"{d.get('macro_f1', float('nan')):.3f}"]
    rows.append(row)
print(f"\nconfig {config}; dev scores: median over {seeds} seeds")
widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for r in rows:
    print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
EOF
