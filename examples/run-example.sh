#!/usr/bin/env bash
# The bundled example: a simulated CRISPRi screen (6,000 cells, 1,000 genes,
# 12 perturbations, MOI 1, seed 42) made by `pertscore simulate`, scored with the
# simulator's true downstream genes as targets. Results land in examples/out/.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p out
NP=${NP:-2}
PERTSCORE=${PERTSCORE:-pertscore}
mpirun --oversubscribe -n "$NP" "$PERTSCORE" simulate --cells 6000 --genes 1000 --perturbations 12 \
  --moi 1 --seed 42 --output out/screen.h5ad
mpirun --oversubscribe -n "$NP" "$PERTSCORE" run --input out/screen.h5ad --guides out/screen.guides.tsv \
  --control NonTargeting --targets out/screen.targets.gmt --output out/results.h5ad \
  --cells-table out/cells.tsv --json
"$PERTSCORE" inspect out/results.h5ad
