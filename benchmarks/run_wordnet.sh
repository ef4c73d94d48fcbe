#!/usr/bin/env bash
# WordNet benchmark (large pools): GloVe-50 mean <-> all-MiniLM-L6-v2 on ~116k WordNet glosses
# (5k test, pairs from a 10k pool, two disjoint ~50k unpaired pools). Two processes with one
# torch thread each (one per core): SOTAlign with its sweeps, and the baselines (trained ones at
# 200 and 1,000 pairs, SAIL and the closed forms also at 4,000), and a third for the baselines
# whose weight or lr is selected on validation (its runs replace the untuned ones in the merge); then one merge
# (--render-only, no fitting) renders the tables and plots. Re-running resumes;
# './run_wordnet.sh merge' only re-renders. Needs the cache of scripts/build_wordnet.py in
# ~/.cache/sotalign/wordnet (about 10 min of CPU to build).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
R=benchmarks/results
COMMON=(--dataset wordnet
  --set steps=300 --set dim=512 --set batch_unpaired=1024 --set optimizer=adamw --set lr=0.001
  --method-set sotalign:head=teacher --method-set 'sotalign:alpha_grid=[1.0]'
  --seeds 0,1,2 --threads 1 --resume)
ALL=sotalign,sail,semisup_sail,cca,procrustes,csa,asif,structure,structure_semisup,nnclr,sclip
# baselines whose weight (or lr) is selected per setting on the pairs' validation split
GRIDS=(--grid 'sail:lr=0.0003|0.001|0.003' --grid 'structure:method_params.lam=0.001|0.01|0.1|1'
  --grid 'structure_semisup:method_params.lam=0.001|0.01|0.1|1' --grid 'nnclr:method_params.w=0.25|1')
B=.venv/bin/sotalign
if [ "${1:-}" != "merge" ]; then
  {
    $B bench "${COMMON[@]}" --methods sotalign --pairs 200,1000 \
      --unpaired-sizes 5000 --batch-sizes 512 --sweep-pairs 200 \
      --out $R/wordnet_bench_sotalign
    $B bench "${COMMON[@]}" --methods sotalign --pairs 4000 --seeds 0 --out $R/wordnet_bench_p4000
  } > $R/wordnet_bench_sotalign.log 2>&1 &
  {
    $B bench "${COMMON[@]}" --methods ${ALL#sotalign,} --pairs 200,1000 \
      --out $R/wordnet_bench_baselines
    $B bench "${COMMON[@]}" --methods sail,cca,procrustes,csa,asif --pairs 4000 \
      --out $R/wordnet_bench_p4000_baselines
    $B bench "${COMMON[@]}" --methods sotalign --pairs 4000 --seeds 1 \
      --out $R/wordnet_bench_p4000_s1
  } > $R/wordnet_bench_baselines.log 2>&1 &
  {  # semi-supervised STRUCTURE costs ~9 min per 200-pair setting here: 200 pairs only
    $B bench "${COMMON[@]}" "${GRIDS[@]}" --methods sail,structure,structure_semisup,nnclr \
      --pairs 200 --out $R/wordnet_bench_tuned200
    $B bench "${COMMON[@]}" "${GRIDS[@]}" --methods sail,structure,nnclr \
      --grid 'structure:method_params.lam=0.001|0.01|0.1' --pairs 1000 \
      --out $R/wordnet_bench_tuned
    $B bench "${COMMON[@]}" --methods sotalign --pairs 4000 --seeds 2 \
      --out $R/wordnet_bench_p4000_s2
  } > $R/wordnet_bench_tuned.log 2>&1 &
  wait
fi
NOTES=()
[ -f $R/wordnet_notes.md ] && NOTES=(--notes $R/wordnet_notes.md)
.venv/bin/sotalign bench "${COMMON[@]}" "${GRIDS[@]}" --methods $ALL --pairs 200,1000,4000 \
  --unpaired-sizes 5000 --batch-sizes 512 --sweep-pairs 200 --sweep-methods sotalign \
  --out $R/wordnet_bench --render-only --include $R/wordnet_bench_sotalign \
  --include $R/wordnet_bench_baselines --include $R/wordnet_bench_p4000 \
  --include $R/wordnet_bench_p4000_baselines --include $R/wordnet_bench_tuned \
  --include $R/wordnet_bench_tuned200 --include $R/wordnet_bench_p4000_s1 \
  --include $R/wordnet_bench_p4000_s2 "${NOTES[@]}"
