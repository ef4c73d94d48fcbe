#!/usr/bin/env bash
# Emoji benchmark (small pools): 10 methods x {100, 300} pairs x 3 seeds, plus an unpaired-pool
# sweep of SOTAlign at 100 pairs. One torch thread per process (fastest on a shared machine); the
# runs are split over seven processes (one per number of pairs and seed, one for the unpaired
# sweep) in separate folders, then one merge (--render-only, no
# fitting) renders the tables; './run_emoji.sh merge' only re-renders.
# Re-running resumes (runs already in a results.json are kept, not refitted).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
R=benchmarks/results
COMMON=(--dataset emoji
  --methods sotalign,sail,semisup_sail,cca,procrustes,asif,csa,structure,nnclr,sclip
  --set steps=300 --set dim=512
  --method-set sotalign:head=teacher --method-set 'sotalign:alpha_grid=[0.1,0.01]'
  --threads 1 --resume)
if [ "${1:-}" != "merge" ]; then
  for s in 0 1 2; do
    .venv/bin/sotalign bench "${COMMON[@]}" --seeds $s --pairs 100 --out $R/emoji_bench_p100_s$s \
      > $R/emoji_bench_p100_s$s.log 2>&1 &
    .venv/bin/sotalign bench "${COMMON[@]}" --seeds $s --pairs 300 --out $R/emoji_bench_p300_s$s \
      > $R/emoji_bench_p300_s$s.log 2>&1 &
  done
  .venv/bin/sotalign bench "${COMMON[@]}" --seeds 0,1,2 --pairs 100 --out $R/emoji_bench_unpaired \
    --no-pairs-sweep --unpaired-sizes 50 --sweep-methods sotalign > $R/emoji_bench_unpaired.log 2>&1 &
  wait
fi
NOTES=()
[ -f $R/emoji_notes.md ] && NOTES=(--notes $R/emoji_notes.md)
.venv/bin/sotalign bench "${COMMON[@]}" --seeds 0,1,2 --pairs 100,300 --out $R/emoji_bench \
  --render-only $(for d in $R/emoji_bench_p*_s*/ $R/emoji_bench_unpaired/; do
    echo --include "${d%/}"; done) "${NOTES[@]}"
