#!/bin/bash
# tools/pertscore-plot, a smoke test per plot kind and format: Hill curves and PS
# distributions of a run, the PS-on-embedding panels (--expression with
# obsm["X_umap"]), the FPR curve of pertscore lambda, the cv summaries of both
# schemes; each as PNG, PDF and SVG (checked by their magic bytes), and the SVG's
# text (kept as text) holding the legends and the "lower / higher is better" notes.
set -euo pipefail
: "${PERTSCORE:?}" "${MPIEXEC:?}" "${PYTHON:?}" "${TESTS_DIR:?}" "${WORK_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
rm -rf "$WORK_DIR" && mkdir -p "$WORK_DIR" && cd "$WORK_DIR"
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { timeout 300 "$MPIEXEC" --oversubscribe -n "$1" "$PERTSCORE" "${@:2}"; }
PLOT="$TESTS_DIR/../tools/pertscore-plot"
common=(--input p.h5ad --guides p.guides.tsv --control NonTargeting --targets p.targets.gmt --quiet)
run 2 simulate --cells 2000 --genes 300 --perturbations 6 --moi 1 --dosage-design --library-size 20000 \
  --knockdown 0.95 --seed 5 --out p.h5ad --quiet
run 2 run "${common[@]}" --permutations 0 --output res.h5ad
run 2 lambda "${common[@]}" --pseudo-cells 100 --lambda-steps 8 --output lam.h5ad >/dev/null
run 2 cv --scheme perturbations "${common[@]}" --folds 3 --output cvp.h5ad >/dev/null
run 2 cv --scheme cells "${common[@]}" --folds 3 --output cvc.h5ad >/dev/null
# an embedding: the first two principal components of log-normalized X, stored as obsm["X_umap"]
"$PYTHON" - <<'PY'
import anndata as ad, numpy as np
a = ad.read_h5ad("p.h5ad")
x = a.X.toarray()
x = np.log1p(x / x.sum(1, keepdims=True) * 1e4)
u, s, _ = np.linalg.svd(x - x.mean(0), full_matrices=False)
a.obsm["X_umap"] = u[:, :2] * s[:2]
a.write_h5ad("emb.h5ad")
PY

magic() {  # FILE FORMAT
  case $2 in
    png) head -c 4 "$1" | od -An -c | grep -q "P   N   G" ;;
    pdf) head -c 5 "$1" | grep -q "%PDF-" ;;
    svg) grep -q "<svg" "$1" ;;
  esac || fail "$1 is not a $2 file"
}
has() {  # SVG TEXT...
  local f=$1; shift
  for t in "$@"; do grep -qF "$t" "$f" || fail "$f: no text '$t'"; done
}
for fmt in png pdf svg; do
  "$PYTHON" "$PLOT" res.h5ad --expression emb.h5ad --format $fmt --out run_$fmt >/dev/null
  "$PYTHON" "$PLOT" lam.h5ad --format $fmt --out lam_$fmt >/dev/null 2>&1
  "$PYTHON" "$PLOT" res.h5ad --cv cvp.h5ad --format $fmt --out cvp_$fmt >/dev/null 2>&1
  "$PYTHON" "$PLOT" res.h5ad --cv cvc.h5ad --format $fmt --out cvc_$fmt >/dev/null 2>&1
  for f in run_$fmt/hill_curves run_$fmt/ps_distributions run_$fmt/ps_embedding lam_$fmt/lambda_fpr \
           lam_$fmt/ps_distributions cvp_$fmt/cv_summary cvc_$fmt/cv_summary; do
    [[ -s $f.$fmt ]] || fail "$f.$fmt not written"
    magic "$f.$fmt" $fmt
  done
  echo "PASS: every plot kind as $fmt"
done
perts=$("$PYTHON" -c "import h5py; print(' '.join(v.decode() for v in h5py.File('res.h5ad')['var/_index'][()]))")
has run_svg/hill_curves.svg "buffered (ED50 &lt;= 0.5)" "sensitive (ED50 &gt; 0.5)" "LL.4 fit" "ED50" "bin of" \
  "mean PS of the bin"
has run_svg/ps_distributions.svg "control cells" "whiskers: 1.5 IQR" "perturbation score (PS)"
has run_svg/ps_embedding.svg "X_umap" "other cells of the expression data" $perts
has lam_svg/lambda_fpr.svg "target FPR" "chosen lambda" "lower is better"
has lam_svg/ps_distributions.svg "pseudo perturbation"
has cvp_svg/cv_summary.svg "mse (lower is better)" "pearson (higher is better)" "mean +- sd" "held-out perturbations"
has cvc_svg/cv_summary.svg "held-out MSE (lower is better)" "each fold" "all folds pooled" "chosen ridge lambda"
echo "PASS: legends and notes in the SVG text"

# --expression without the embedding: reported, the others still drawn, exit 0
"$PYTHON" "$PLOT" res.h5ad --expression p.h5ad --out noemb >noemb.out 2>noemb.err || fail "no X_umap: non-zero exit"
grep -q "no obsm/X_umap" noemb.err || fail "no X_umap: not reported ($(cat noemb.err))"
[[ ! -e noemb/ps_embedding.png && -s noemb/hill_curves.png ]] || fail "no X_umap: wrong files"
# a bad format is refused
if "$PYTHON" "$PLOT" res.h5ad --format jpg --out bad 2>bad.err; then fail "--format jpg accepted"; fi
grep -q "invalid choice" bad.err || fail "--format jpg: $(cat bad.err)"
echo "PASS: plots"
