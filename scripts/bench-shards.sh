#!/usr/bin/env bash
# Offline preprocessing and training-from-shards figures (docs/performance.md).
#
#   scripts/bench-shards.sh [CORPUS_GLOB]     # default: the embedded corpus, data/corpus/*.zst
#
# Prints: preprocessing throughput (text MB/s and tokens/s, 1 and 2 threads), the
# read + pack + mask throughput from the shards (1 and 2 threads), peak RSS of each, and
# shard size versus the raw zstd size. Needs `make build` first.
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${1:-data/corpus/*.zst}
B=./target/release/electra
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "corpus:  $CORPUS ($(du -cb $CORPUS | tail -1 | cut -f1) bytes zstd)"
for t in 1 2; do
    echo; echo "== preprocess, $t thread(s)"
    rm -rf "$OUT/shards"
    $B preprocess --config configs/tiny.toml --input $CORPUS --out "$OUT/shards" --threads "$t"
done
echo; echo "== shard folder"
$B inspect "$OUT/shards" --samples 0 --max-shards 1 | sed -n '1,10p'
for t in 1 2; do
    echo; echo "== read + pack + mask from shards, $t thread(s), batch 128 x 128"
    $B bench pipeline --data "$OUT/shards" --threads "$t" --seconds 30
done
