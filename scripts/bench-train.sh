#!/usr/bin/env bash
# Trainer speed on this CPU machine: `electra bench train` against the transformers reference
# (bench/hf_reference_train.py) on the same config, batch and sequence length
# (docs/performance.md). Prints one table; the target is ours >= 2x the reference.
#
#   scripts/bench-train.sh [--steps N] [--warmup W] [--batch-size B] [--seq-len L]
#                          [--threads T] [--save] [CONFIG...]
#
# Defaults: configs/tiny.toml and configs/electra-small.toml, batch 32, seq 128, 10 timed
# steps after 3 warm-up steps, both sides on all cores (torch threads = nproc; ours: libtorch's
# default). --save tees the output to bench/results/bench-train.txt.
# ELECTRA=path/to/electra overrides the binary (default ./target/release/electra).
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=10
WARMUP=3
BATCH=32
SEQ=128
THREADS=$(nproc)
SAVE=0
CONFIGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --steps) STEPS=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --batch-size) BATCH=$2; shift 2 ;;
        --seq-len) SEQ=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --save) SAVE=1; shift ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --*) echo "unknown option: $1" >&2; exit 2 ;;
        *) CONFIGS+=("$1"); shift ;;
    esac
done
[ ${#CONFIGS[@]} -gt 0 ] || CONFIGS=(configs/tiny.toml configs/electra-small.toml)
for c in "${CONFIGS[@]}"; do [ -f "$c" ] || { echo "no such config: $c" >&2; exit 1; }; done

ELECTRA=${ELECTRA:-./target/release/electra}
[ -x "$ELECTRA" ] || { echo "no electra binary at $ELECTRA: run make build (or set ELECTRA=...)" >&2; exit 1; }
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
"$PY" -c 'import transformers, torch' 2>/dev/null \
    || { echo "$PY lacks transformers/torch: run make build (installs PY_DEPS into .venv)" >&2; exit 1; }

if [ "$SAVE" = 1 ]; then
    mkdir -p bench/results
    exec > >(tee bench/results/bench-train.txt) 2>&1
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "batch $BATCH x seq $SEQ, $WARMUP warm-up + $STEPS timed steps, $THREADS threads; binary $ELECTRA"
echo

run() {
    local name=$1; shift
    echo "== $name: $*"
    local start end
    start=$(date +%s)
    if "$@" > "$TMP/$name.json" 2> "$TMP/$name.log"; then
        end=$(date +%s)
        echo "   done in $((end - start)) s"
    else
        echo "   FAILED (exit $?); last lines of its log:"
        tail -5 "$TMP/$name.log" | sed 's/^/   | /'
        rm -f "$TMP/$name.json"
    fi
}

names=()
for c in "${CONFIGS[@]}"; do
    n=$(basename "$c" .toml)
    names+=("$n")
    run "ours-$n" "$ELECTRA" bench train --config "$c" --device cpu --batch-size "$BATCH" --seq-len "$SEQ" \
        --steps "$STEPS" --warmup "$WARMUP" --json
    run "ref-$n" "$PY" bench/hf_reference_train.py --config "$c" --device cpu --batch-size "$BATCH" --seq-len "$SEQ" \
        --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS" --json
done

echo
"$PY" - "$TMP" "${names[@]}" <<'EOF'
import json, os, sys
tmp, names = sys.argv[1], sys.argv[2:]

def load(name):
    try:
        with open(os.path.join(tmp, name + ".json")) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None

def f(x, d=0):
    return "n/a" if x is None else f"{x:,.{d}f}"

def g(j, k):
    return None if not j else j.get(k)

print("| config | ours tokens/s | reference tokens/s | ours / reference | target | ours step ms (data wait / fwd / bwd / opt) | reference step ms | ours peak MB | reference peak MB |")
print("|---|---:|---:|---:|---|---|---:|---:|---:|")
for n in names:
    o, r = load("ours-" + n), load("ref-" + n)
    to, tr = g(o, "tokens_per_sec"), g(r, "tokens_per_sec")
    ratio = to / tr if to and tr else None
    met = "n/a" if ratio is None else ("yes" if ratio >= 2 else "NO")
    parts = " / ".join(f(g(o, k), 1) for k in ("data_wait_ms", "forward_ms", "backward_ms", "optimizer_ms"))
    peak_o = g(o, "peak_memory_bytes"); peak_r = g(r, "peak_memory_bytes")
    print(f"| {n} | {f(to)} | {f(tr)} | {f(ratio, 2)} | >= 2 ({met}) | {f(g(o, 'step_ms'), 1)} ({parts}) | "
          f"{f(g(r, 'step_ms'), 1)} | {f(peak_o and peak_o / 1e6)} | {f(peak_r and peak_r / 1e6)} |")
print()
print("Reference: transformers ElectraForMaskedLM + ElectraForPreTraining, fp32, eager attention,")
print("synthetic masked batches already in memory (no data cost); ours: real batches from its")
print("pipeline (data wait included in step time). CPU peak memory is the process's max RSS.")
EOF
