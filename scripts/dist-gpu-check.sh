#!/usr/bin/env bash
# GPU check of the distributed collectives (docs/architecture.md): NCCL through c10d's ProcessGroupNCCL.
#
#   scripts/dist-gpu-check.sh prepare    # here: build the release binary, copy it to .gpu/
#   scripts/dist-gpu-check.sh run        # on the GPU machine (with .gpu/ carried along)
#
# Runs `electra bench collective` (each rank checks all-reduce, broadcast, barrier, gather and
# gradient buckets, then times all-reduce): NCCL with world size 1 on a 500 MB buffer; NCCL
# on every GPU under torchrun when there are several; the Store backend with CUDA tensors,
# two ranks on GPU 0 (the host-copy path). On the GPU machine libtorch comes from its own
# torch install (same version, 2.11.0), found through LD_LIBRARY_PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-run}" in
prepare)
    make build
    mkdir -p .gpu
    cp target/release/electra .gpu/electra
    echo "copied target/release/electra to .gpu/ (git-ignored): carry .gpu"
    ;;
run)
    PY=${PYTHON:-python3}
    [ -x /opt/torch/.venv/bin/python3 ] && PY=/opt/torch/.venv/bin/python3
    LIB="$("$PY" -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib"
    export LD_LIBRARY_PATH="$LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    OUT=${OUT:-/tmp/electra-dist-gpu}
    SIZE_MB=${SIZE_MB:-500}
    mkdir -p "$OUT"
    B=.gpu/electra
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt" || true
    GPUS=$(nvidia-smi -L 2>/dev/null | wc -l)
    status=0
    run() { # name, command...
        local name=$1; shift
        echo "== $name: $*"
        if timeout 300 "$@" >"$OUT/$name.json" 2>"$OUT/$name.err"; then
            cat "$OUT/$name.json"
        else
            status=1; echo "FAILED ($name)"; tail -20 "$OUT/$name.err"
        fi
    }
    run nccl-1 env -u RANK -u WORLD_SIZE $B bench collective --backend nccl --device cuda \
        --size-mb "$SIZE_MB" --iters 20 --warmup 3 --timeout-seconds 120 --json
    if [ "$GPUS" -gt 1 ] && "$PY" -c 'import torch.distributed.run' 2>/dev/null; then
        run "nccl-$GPUS" "$PY" -m torch.distributed.run --standalone --nproc-per-node "$GPUS" \
            --no-python $B bench collective --backend nccl --device cuda --size-mb "$SIZE_MB" \
            --iters 20 --warmup 3 --timeout-seconds 120 --json
    fi
    PORT=$((20000 + RANDOM % 10000))
    for r in 0 1; do
        RANK=$r WORLD_SIZE=2 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$PORT \
            timeout 300 $B bench collective --backend store --device cuda --size-mb 8 --iters 3 \
            --json >"$OUT/store-cuda-$r.json" 2>"$OUT/store-cuda-$r.err" &
    done
    for r in 0 1; do
        if ! wait -n; then status=1; fi
    done
    echo "== store-cuda (2 ranks on GPU 0)"; cat "$OUT/store-cuda-0.json"
    [ -s "$OUT/store-cuda-0.json" ] || { status=1; tail -20 "$OUT"/store-cuda-*.err; }
    exit "$status"
    ;;
*)
    echo "usage: $0 prepare|run" >&2
    exit 2
    ;;
esac
