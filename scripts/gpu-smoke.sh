#!/usr/bin/env bash
# GPU smoke test: the tiny config on CUDA, once, with a table of what was seen.
#
#   scripts/gpu-smoke.sh prepare    # here: build the release binary, copy it to .gpu/
#   scripts/gpu-smoke.sh run        # on the GPU machine (with .gpu/ carried along)
#
# On the GPU machine libtorch comes from its own torch install (same version, 2.11.0),
# found through LD_LIBRARY_PATH.
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
    OUT=${OUT:-/tmp/electra-gpu}
    mkdir -p "$OUT"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt" || true
    STEPS=${STEPS:-300}
    set +e
    .gpu/electra pretrain --config configs/tiny.toml --device cuda --max-steps "$STEPS" \
        --set train.log_every=50 --run-dir "$OUT/tiny" --no-progress 2>&1 | tee "$OUT/tiny.log"
    rc=${PIPESTATUS[0]}
    set -e
    cuda_seen=no
    grep -q 'Cuda' "$OUT/tiny.log" && cuda_seen=yes
    tps=$(grep -E '^ +tokens/s' "$OUT/tiny.log" | awk '{print $2}')
    printf '\n| check | value |\n|---|---|\n'
    printf '| exit code | %s |\n' "$rc"
    printf '| CUDA device used | %s |\n' "$cuda_seen"
    printf '| tiny config tokens/s (%s steps) | %s |\n' "$STEPS" "${tps:-n/a}"
    exit "$rc"
    ;;
*)
    echo "usage: $0 prepare|run" >&2
    exit 2
    ;;
esac
