# Check 4 of the dosage issue: tools/pertscore-plot on small results files writes
# non-empty PNGs: Hill curves and PS distributions of a run, the FPR curve of a
# lambda results file, the summary of pertscore cv (skipped figures are reported,
# not errors).
set -euo pipefail
rm -rf "$WORK_DIR" && mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
run() { "$MPIEXEC" --oversubscribe -n "$1" "$PERTSCORE" "${@:2}"; }
PLOT="$TESTS_DIR/../tools/pertscore-plot"
run 2 simulate --cells 3000 --genes 500 --perturbations 8 --moi 1 --dosage-design --library-size 20000 \
  --knockdown 0.95 --seed 5 --out plot.h5ad --quiet
run 2 run --input plot.h5ad --guides plot.guides.tsv --control NonTargeting --targets plot.targets.gmt \
  --permutations 0 --output plot.res.h5ad --quiet
"$PYTHON" "$PLOT" plot.res.h5ad --out run_plots | tee run_plots.txt
run 2 lambda --input plot.h5ad --guides plot.guides.tsv --control NonTargeting --targets plot.targets.gmt \
  --pseudo-cells 150 --lambda-steps 12 --output plot.lambda.h5ad --quiet > /dev/null
"$PYTHON" "$PLOT" plot.lambda.h5ad --out lambda_plots | tee lambda_plots.txt
run 2 cv --scheme perturbations --input plot.h5ad --guides plot.guides.tsv --control NonTargeting \
  --targets plot.targets.gmt --folds 4 --output plot.cv.h5ad --quiet > /dev/null
"$PYTHON" "$PLOT" plot.res.h5ad --cv plot.cv.h5ad --out cv_plots | tee cv_plots.txt
for f in run_plots/hill_curves.png run_plots/ps_distributions.png lambda_plots/lambda_fpr.png \
         lambda_plots/ps_distributions.png cv_plots/cv_summary.png; do
  test -s "$f" || { echo "FAIL: $f missing or empty"; exit 1; }
  head -c 8 "$f" | od -An -c | grep -q "P   N   G" || { echo "FAIL: $f is not a PNG"; exit 1; }
  echo "$f: $(stat -c %s "$f") bytes"
done
