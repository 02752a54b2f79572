# Issue check 8 (full method): the real CROP-seq screen of ../shared/data/scmageck-demo
# against the reference R implementation's results (read from ../shared, never copied).
# --perturbations TP53 --control NonTargetingControlGuideForHuman --lambda 0 --score-all-cells:
#  1. with the reference's targets: PS Pearson >= 0.99 against ps_tp53_ref.tsv;
#  2. with automatic targets: the same 10 targets and PS Pearson >= 0.99.
# Both also: max |PS - reference| <= 1e-7 and max |beta - reference| <= 1e-8 (check_demo.py).
set -euo pipefail
demo="$SHARED_DATA/scmageck-demo"
[[ -f $demo/scmageck_demo.h5ad ]] || { echo "FAIL: $demo not found (../shared/data must sit beside the project)"; exit 1; }
mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
awk '{print "TP53\t" $1}' "$demo/tp53_targets.txt" > tp53_targets.tsv
common=(--input "$demo/scmageck_demo.h5ad" --guides "$demo/barcode_rec.txt" --perturbations TP53
        --control NonTargetingControlGuideForHuman --lambda 0 --score-all-cells --quiet)
timeout 120 "$MPIEXEC" --oversubscribe -n 2 "$PERTSCORE" run "${common[@]}" --targets tp53_targets.tsv --output given.h5ad
timeout 120 "$MPIEXEC" --oversubscribe -n 3 "$PERTSCORE" run "${common[@]}" --output auto.h5ad
"$PYTHON" "$TESTS_DIR/realdata/check_demo.py" "$demo" given.h5ad auto.h5ad
