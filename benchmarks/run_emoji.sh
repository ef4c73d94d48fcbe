#!/usr/bin/env bash
# Emoji benchmark (small pools): 10 methods x {100, 300} pairs x 3 seeds, plus an unpaired-pool
# sweep of SOTAlign at 100 pairs, in one process with one torch thread (about 15 min on an idle
# core). Re-running resumes (runs already in results.json are kept, not refitted);
# './run_emoji.sh merge' only re-renders the tables, plots and notes.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
R=benchmarks/results
COMMON=(--dataset emoji
  --methods sotalign,sail,semisup_sail,cca,procrustes,asif,csa,structure,nnclr,sclip
  --set steps=300 --set dim=512
  --method-set sotalign:head=teacher --method-set 'sotalign:alpha_grid=[0.1,0.01]'
  --seeds 0,1,2 --pairs 100,300 --unpaired-sizes 50 --sweep-methods sotalign --sweep-pairs 100
  --threads 1 --resume --out $R/emoji_bench)
NOTES=()
[ -f $R/emoji_notes.md ] && NOTES=(--notes $R/emoji_notes.md)
if [ "${1:-}" = "merge" ]; then
  .venv/bin/sotalign bench "${COMMON[@]}" --render-only "${NOTES[@]}"
else
  .venv/bin/sotalign bench "${COMMON[@]}" "${NOTES[@]}" 2>&1 | tee $R/emoji_bench.log
fi
