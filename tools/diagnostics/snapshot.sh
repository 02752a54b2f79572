#!/usr/bin/env bash
# Behaviour snapshot for refactors (issue #14): the results files of a fixed set of runs
# (paper preset, accurate preset, --group-by, --control-by, high MOI, lambda, cv both
# schemes, dosage recompute), written with one binary into OUTDIR. Compare two snapshots with
#   /usr/bin/python3 tools/diagnostics/compare_snapshot.py OLD_DIR NEW_DIR
# Usage: tools/diagnostics/snapshot.sh PERTSCORE OUTDIR [NP]
set -euo pipefail
PERTSCORE=$(realpath "$1"); OUT=$2; NP=${3:-2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$OUT" && cd "$OUT"
run() { mpirun --oversubscribe -n "$NP" "$PERTSCORE" "$@" --quiet; }
run simulate --cells 3000 --genes 300 --perturbations 8 --control-fraction 0.3 --seed 11 --out low.h5ad
run simulate --cells 3000 --genes 300 --perturbations 10 --moi 3 --poisson-moi --seed 12 --out high.h5ad
run simulate --cells 3000 --genes 300 --perturbations 6 --cell-types 2 --seed 13 --out typed.h5ad
run simulate --cells 3000 --genes 300 --perturbations 6 --dosage-design --seed 14 --out dose.h5ad
common="--guides low.guides.tsv --control NonTargeting --input low.h5ad"
run run $common --permutations 20 --output paper.h5ad
run run $common --permutations 20 --preset accurate --output accurate.h5ad
run run $common --targets low.targets.gmt --output given.h5ad
run run --input high.h5ad --guides high.guides.tsv --control NonTargeting --permutations 20 \
  --de-background others --output high.h5ad.out.h5ad
run run --input typed.h5ad --guides typed.guides.tsv --control NonTargeting --group-by cell_type --output groupby.h5ad
run run --input typed.h5ad --guides typed.guides.tsv --control NonTargeting --control-by cell_type --output controlby.h5ad
run run --input dose.h5ad --guides dose.guides.tsv --control NonTargeting --output dose.out.h5ad
run dosage --results dose.out.h5ad --output dose.recomputed.h5ad --table dose.recomputed.tsv
run lambda $common --output lambda.h5ad --curve lambda.tsv
run cv $common --scheme cells --folds 3 --output cv_cells.h5ad
run cv $common --scheme perturbations --folds 3 --output cv_perts.h5ad
ls -1 "$OUT"/*.h5ad "$OUT"/*.tsv | wc -l
