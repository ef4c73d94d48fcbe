#!/usr/bin/env bash
# WordNet benchmark (large pools): GloVe-50 mean <-> all-MiniLM-L6-v2 on ~116k WordNet glosses
# (5k test, pairs from a 10k pool, two disjoint ~50k unpaired pools). One process per seed for
# 200 and 1,000 pairs, one for the SAIL/closed-form baselines at 4,000 pairs (the "N vs 4N pairs"
# comparison), one for the cheap baselines at 200 and 1,000 pairs (the per-seed processes
# reach them last), one torch thread each; then one merge (--render-only, no fitting) renders the
# tables. Re-running resumes; './run_wordnet.sh merge' only re-renders.
# Needs the cache of scripts/build_wordnet.py in ~/.cache/sotalign/wordnet.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
R=benchmarks/results
COMMON=(--dataset wordnet
  --set steps=300 --set dim=512 --set batch_unpaired=1024 --set optimizer=adamw --set lr=0.001
  --method-set 'sotalign:alpha_grid=[1.0]' --threads 1 --resume)
M=sotalign,sail,cca,procrustes,csa,asif
if [ "${1:-}" != "merge" ]; then
  .venv/bin/sotalign bench "${COMMON[@]}" --methods $M --pairs 200,1000 --seeds 0 \
    --out $R/wordnet_bench_s0 --batch-sizes 512,2048 --sweep-pairs 200 \
    > $R/wordnet_bench_s0.log 2>&1 &
  .venv/bin/sotalign bench "${COMMON[@]}" --methods $M --pairs 200,1000 --seeds 1 \
    --out $R/wordnet_bench_s1 --unpaired-sizes 5000 --sweep-methods sotalign --sweep-pairs 200 \
    > $R/wordnet_bench_s1.log 2>&1 &
  .venv/bin/sotalign bench "${COMMON[@]}" --methods $M --pairs 200,1000 --seeds 2 \
    --out $R/wordnet_bench_s2 > $R/wordnet_bench_s2.log 2>&1 &
  .venv/bin/sotalign bench "${COMMON[@]}" --methods cca,procrustes,csa,asif,sail --pairs 200,1000 \
    --seeds 0,1,2 --out $R/wordnet_bench_baselines > $R/wordnet_bench_baselines.log 2>&1 &
  .venv/bin/sotalign bench "${COMMON[@]}" --methods sail,cca,procrustes,csa,asif --pairs 4000 \
    --seeds 0,1,2 --out $R/wordnet_bench_p4000 > $R/wordnet_bench_p4000.log 2>&1 &
  wait
fi
NOTES=()
[ -f $R/wordnet_notes.md ] && NOTES=(--notes $R/wordnet_notes.md)
.venv/bin/sotalign bench "${COMMON[@]}" --methods $M --pairs 200,1000,4000 --seeds 0,1,2 \
  --out $R/wordnet_bench --render-only --include $R/wordnet_bench_s0 \
  --include $R/wordnet_bench_s1 --include $R/wordnet_bench_s2 --include $R/wordnet_bench_p4000 \
  --include $R/wordnet_bench_baselines "${NOTES[@]}"
