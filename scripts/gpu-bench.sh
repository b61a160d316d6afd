#!/usr/bin/env bash
# The GPU performance figures (docs/performance.md) from a lent GPU (an H200) in one run of
# a few minutes, one table.
#
#   scripts/gpu-bench.sh prepare              # here: copy target/release/electra, stripped, to
#                                             # .gpu/electra (git-ignored; carry .gpu). No build.
#   scripts/gpu-bench.sh [PATH/TO/electra]    # on the GPU machine (default: $ELECTRA, else
#                                             # .gpu/electra, else gpu-bin/electra)
#   scripts/gpu-bench.sh --smoke [electra]    # on a CPU: the same plumbing at toy sizes
#
# Parts, each under its own `timeout` and guarded so that one failure leaves the others:
#   a. measured bf16 matmul peak (torch, 8192^3, TFLOP/s);
#   b. ours: electra bench train --precision bf16 on ELECTRA-Small (seq 128, batch 128 and
#      1024) and ELECTRA-Base (seq 512, batch 32);
#   c. the reference, bench/hf_reference_train.py --device cuda --bf16 --sdpa, same settings;
#   d. MFU = flops_per_step / step time / the measured peak, for both. FLOP convention:
#      `electra flops` (what `bench train` reports as flops_per_step): 2 FLOPs per
#      multiply-add of the matrix products, forward x 3 for forward + backward, generator
#      and heads included, generator logits only at the masked positions (the reference
#      computes them at every position: that extra work earns it no MFU);
#   e. NCCL at world size 1 under torchrun: electra bench collective (500 MB, 20 iters), and
#      electra pretrain for a few steps plain vs under torchrun, final losses compared.
# Environment: OUT (raw outputs and table.md; default /tmp/electra-gpu-bench), PYTHON,
# STEPS_SMALL / STEPS_BIG / STEPS_BASE (timed steps), BUDGET_S (total seconds, default 480:
# a part that would start past it is skipped), REF_COMPILE=1 (reference with torch.compile).
# Torch comes from /opt/torch/.venv when present; libtorch is found through LD_LIBRARY_PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
case "${1:-}" in
prepare)
    src=${ELECTRA:-./target/release/electra}
    [ -x "$src" ] || { echo "no binary at $src: make build first (or ELECTRA=...)" >&2; exit 1; }
    mkdir -p .gpu
    cp "$src" .gpu/electra
    strip .gpu/electra 2>/dev/null || echo "strip failed: .gpu/electra keeps its debug info (may exceed the 64 MiB carry)" >&2
    ls -la .gpu/electra
    echo "carry .gpu, then run: scripts/gpu-bench.sh .gpu/electra"
    exit 0
    ;;
--smoke) SMOKE=1; shift ;;
-h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

ELECTRA=${1:-${ELECTRA:-}}
if [ -z "$ELECTRA" ]; then
    for c in .gpu/electra gpu-bin/electra ./target/release/electra; do
        [ -x "$c" ] && { ELECTRA=$c; break; }
    done
fi
if [ -z "$ELECTRA" ] || [ ! -x "$ELECTRA" ]; then
    echo "no electra binary${ELECTRA:+ at $ELECTRA} (pass its path, set ELECTRA, or run scripts/gpu-bench.sh prepare here first)" >&2
    exit 1
fi
ELECTRA=$(readlink -f "$ELECTRA")

PY=${PYTHON:-python3}
[ -z "${PYTHON:-}" ] && [ -x /opt/torch/.venv/bin/python3 ] && PY=/opt/torch/.venv/bin/python3
[ -z "${PYTHON:-}" ] && [ ! -x /opt/torch/.venv/bin/python3 ] && [ -x .venv/bin/python ] && PY=.venv/bin/python
TORCH_LIB="$("$PY" -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib" \
    || { echo "$PY cannot import torch" >&2; exit 1; }
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1

OUT=${OUT:-/tmp/electra-gpu-bench}
mkdir -p "$OUT"
BUDGET_S=${BUDGET_S:-480}
T0=$(date +%s)

if [ "$SMOKE" = 1 ]; then
    DEVICE=cpu; PREC=(); REF_PREC=(); N=256  # fp32: the default of both
    SMALL=configs/tiny.toml; BASE=configs/tiny.toml
    B_SMALL=4; B_BIG=8; B_BASE=2; L_BASE=128
    STEPS_SMALL=${STEPS_SMALL:-1}; STEPS_BIG=${STEPS_BIG:-1}; STEPS_BASE=${STEPS_BASE:-1}; WARM=1
    PT_STEPS=2
else
    DEVICE=cuda; PREC=(--precision bf16); REF_PREC=(--bf16); N=8192
    SMALL=configs/electra-small.toml; BASE=configs/electra-base.toml
    B_SMALL=128; B_BIG=1024; B_BASE=32; L_BASE=512
    STEPS_SMALL=${STEPS_SMALL:-50}; STEPS_BIG=${STEPS_BIG:-20}; STEPS_BASE=${STEPS_BASE:-20}; WARM=5
    PT_STEPS=40
fi
REF_EXTRA=(--sdpa)
[ "${REF_COMPILE:-0}" = 1 ] && REF_EXTRA+=(--compile)

{
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: none"
    "$PY" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)' 2>&1 || true
    echo "electra: $ELECTRA"
} | tee "$OUT/machine.txt"

# part NAME TIMEOUT CMD...: stdout to $OUT/NAME.out, stderr to $OUT/NAME.log; never fails.
part() {
    local name=$1 limit=$2; shift 2
    local now left
    now=$(date +%s); left=$((BUDGET_S - (now - T0)))
    if [ "$left" -lt 20 ]; then
        echo "== $name: SKIPPED (time budget of ${BUDGET_S}s spent)" | tee "$OUT/$name.log"
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (timeout ${limit}s): $*"
    local rc=0
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.out" 2> "$OUT/$name.log" || rc=$?
    now=$(date +%s)
    if [ "$rc" = 0 ]; then
        echo "   ok, $((now - T0)) s since start"
    else
        [ "$rc" = 124 ] && echo "   TIMED OUT" || echo "   FAILED (exit $rc)"
        tail -4 "$OUT/$name.log" | sed 's/^/   | /'
    fi
    echo "$rc" > "$OUT/$name.rc"
}

# a. bf16 matmul peak
part matmul 90 "$PY" - "$DEVICE" "$N" <<'EOF'
import json, sys, time, torch
device, n = sys.argv[1], int(sys.argv[2])
dtype = torch.bfloat16 if device == "cuda" else torch.float32
a = torch.randn(n, n, device=device, dtype=dtype)
b = torch.randn(n, n, device=device, dtype=dtype)
def sync():
    if device == "cuda":
        torch.cuda.synchronize()
for _ in range(5):
    a @ b
sync()
best = 0.0
for _ in range(3):  # best of three windows of ~1 s
    iters, t = 0, time.perf_counter()
    while True:
        c = a @ b
        iters += 1
        if iters % 10 == 0:
            sync()
            dt = time.perf_counter() - t
            if dt > 1.0 or device != "cuda":
                break
    best = max(best, 2 * n**3 * iters / dt / 1e12)
print(json.dumps({"n": n, "dtype": str(dtype), "device": device, "tflops": best,
                  "name": torch.cuda.get_device_name() if device == "cuda" else "cpu"}))
EOF

# b, c. ours and the reference on the same settings
SETTINGS=("small-b$B_SMALL $SMALL $B_SMALL 128 $STEPS_SMALL"
          "small-b$B_BIG $SMALL $B_BIG 128 $STEPS_BIG"
          "base-s$L_BASE-b$B_BASE $BASE $B_BASE $L_BASE $STEPS_BASE")
: > "$OUT/settings.txt"
for s in "${SETTINGS[@]}"; do
    read -r name cfg batch seq steps <<< "$s"
    echo "$name $cfg $batch $seq $steps" >> "$OUT/settings.txt"
    part "ours-$name" 150 "$ELECTRA" bench train --config "$cfg" --device "$DEVICE" --batch-size "$batch" \
        --seq-len "$seq" --steps "$steps" --warmup "$WARM" "${PREC[@]}" --json
    part "flops-$name" 30 "$ELECTRA" flops --config "$cfg" --set "data.batch_size=$batch" --set "data.max_seq_len=$seq"
    part "ref-$name" 180 "$PY" bench/hf_reference_train.py --config "$cfg" --device "$DEVICE" --batch-size "$batch" \
        --seq-len "$seq" --steps "$steps" --warmup "$WARM" "${REF_PREC[@]}" "${REF_EXTRA[@]}" --json
done

# e. NCCL at world size 1
TORCHRUN=("$PY" -m torch.distributed.run --standalone --nproc_per_node 1 --no-python)
part collective 90 "${TORCHRUN[@]}" "$ELECTRA" bench collective --size-mb 500 --iters 20 --json
PT=(pretrain --config configs/tiny.toml --device "$DEVICE" --max-steps "$PT_STEPS" --no-progress
    --set train.log_every=10 --set checkpoint.every_steps=0)
rm -rf "$OUT/pretrain-plain" "$OUT/pretrain-torchrun"
part pretrain-plain 150 "$ELECTRA" "${PT[@]}" --run-dir "$OUT/pretrain-plain"
part pretrain-torchrun 150 "${TORCHRUN[@]}" "$ELECTRA" "${PT[@]}" --run-dir "$OUT/pretrain-torchrun"

echo
"$PY" - "$OUT" "$SMOKE" <<'EOF' | tee "$OUT/table.md"
import json, os, sys
out, smoke = sys.argv[1], sys.argv[2] == "1"

def js(name):
    """The last JSON object printed by a part, or None."""
    try:
        with open(os.path.join(out, name + ".out")) as f:
            lines = [l for l in f.read().splitlines() if l.strip().startswith("{")]
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None

def f(x, d=0, scale=1.0):
    return "n/a" if x is None else f"{x * scale:,.{d}f}"

def g(j, *keys):
    for k in keys:
        if j and j.get(k) is not None:
            return j[k]
    return None

mm = js("matmul")
peak = g(mm, "tflops")
print(f"measured matmul peak: {f(peak, 3 if smoke else 1)} TFLOP/s ({g(mm, 'dtype') or 'n/a'} {g(mm, 'n') or ''}^3 on {g(mm, 'name') or 'n/a'})")
print()
print("| setting | ours tokens/s | ref tokens/s | ours/ref (>= 1.5) | ours step ms | data wait % (< 2) | fwd / bwd / opt ms | FLOPs/step | ours MFU | ref MFU | ours peak GB | ref peak GB |")
print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
with open(os.path.join(out, "settings.txt")) as fh:
    settings = [line.split() for line in fh if line.strip()]
for name, cfg, batch, seq, steps in settings:
    o, r, fl = js("ours-" + name), js("ref-" + name), js("flops-" + name)
    flops = g(o, "flops_per_step") or g(fl, "total")
    to, tr = g(o, "tokens_per_sec"), g(r, "tokens_per_sec")
    so, sr = g(o, "step_ms"), g(r, "step_ms")
    ratio = to / tr if to and tr else None
    wait = g(o, "data_wait_ms")
    wait_pct = 100.0 * wait / so if wait is not None and so else None
    mfu = lambda ms: (flops / (ms / 1e3) / (peak * 1e12) * 100.0) if flops and ms and peak else None
    phases = " / ".join(f(g(o, k), 1) for k in ("forward_ms", "backward_ms", "optimizer_ms"))
    ratio_s = "n/a" if ratio is None else f"{ratio:.2f} ({'yes' if ratio >= 1.5 else 'NO'})"
    wait_s = "n/a" if wait_pct is None else f"{wait_pct:.2f} ({'yes' if wait_pct < 2 else 'NO'})"
    mo = mfu(so)
    mo_s = "n/a" if mo is None else f"{mo:.1f}%" + (f" ({'yes' if mo >= 45 else 'NO'} >= 45%)" if name.startswith("base") else "")
    mr = mfu(sr)
    print(f"| {name} ({os.path.basename(cfg)}, {batch} x {seq}) | {f(to)} | {f(tr)} | {ratio_s} | {f(so, 1)} | {wait_s} | {phases} | "
          f"{f(flops, 2, 1e-12)} T | {mo_s} | {'n/a' if mr is None else f'{mr:.1f}%'} | {f(g(o, 'peak_memory_bytes'), 2, 1e-9)} | {f(g(r, 'peak_memory_bytes'), 2, 1e-9)} |")
print()
print("MFU: flops_per_step (electra flops convention: 2 x multiply-adds of the matrix products, x3 for")
print("forward + backward, generator and heads included, generator logits at masked positions only)")
print("/ step time / measured matmul peak; the reference gets the same FLOPs per step (useful work).")
print("Reference: transformers ELECTRA, bf16 autocast, SDPA attention, synthetic batches on the device.")
print()
c = js("collective")
if c:
    nums = ", ".join(f"{k} {v:,.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in c.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool))
    print(f"NCCL world 1, bench collective 500 MB x 20: {nums}")
else:
    print("NCCL world 1, bench collective: n/a (see collective.log)")

def last_loss(run):
    try:
        with open(os.path.join(out, run, "metrics.jsonl")) as fh:
            rows = [json.loads(l) for l in fh if l.strip()]
        return rows[-1]["loss"], rows[-1]["step"]
    except (OSError, ValueError, IndexError, KeyError):
        return None, None

(lp, sp), (lt, st) = last_loss("pretrain-plain"), last_loss("pretrain-torchrun")
if lp is not None and lt is not None:
    rel = abs(lp - lt) / max(abs(lp), 1e-12)
    print(f"pretrain tiny, final loss: plain {lp:.5f} (step {sp}), torchrun world 1 {lt:.5f} (step {st}); "
          f"relative difference {rel:.2e} ({'match' if rel < 1e-2 else 'DIFFER'})")
else:
    print(f"pretrain tiny, final loss: plain {f(lp, 5)}, torchrun world 1 {f(lt, 5)} (see pretrain-*.log)")
if smoke:
    print("\n(--smoke: toy sizes on the CPU; figures mean nothing)")
EOF
echo "raw outputs: $OUT"
