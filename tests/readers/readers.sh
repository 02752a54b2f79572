#!/bin/bash
# The results readers (python/pertscore, R/read_pertscore.R) on simulated runs, each
# value checked against the raw HDF5 read independently with h5py (check_readers.py):
# a Poisson-MOI screen (controls, cells without guides, cells with several
# perturbations), the same with --group-by (labels P@group), and the module as
# `cmake --install` puts it (imported from another directory). R: read_pertscore's
# tables written to TSV and compared with h5py; the Seurat recipe (AddMetaData)
# with Debian's SeuratObject.
set -euo pipefail

: "${PERTSCORE:?}" "${MPIEXEC:?}" "${PYTHON:?}" "${TESTS_DIR:?}" "${WORK_DIR:?}" "${BUILD_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
SRC=$(cd "$TESTS_DIR/.." && pwd)
rm -rf "$WORK_DIR"
mkdir -p "$WORK_DIR"
cd "$WORK_DIR"
fail() { echo "FAIL: $*" >&2; exit 1; }
mpi() { local np=$1; shift; timeout 120 "$MPIEXEC" --oversubscribe -n "$np" "$@"; }

echo "== simulate (1500 cells, 200 genes, 4 perturbations, Poisson MOI 1, two cell types) and run"
mpi 2 "$PERTSCORE" simulate --cells 1500 --genes 200 --perturbations 4 --moi 1 --poisson-moi \
  --cell-types 2 --seed 11 --out sim.h5ad --quiet
# automatic targets: the simulator's GMT names per-type perturbations (P@type), which only a
# --group-by run has (a run without it refuses such a file: none of its names is analysed)
mpi 2 "$PERTSCORE" run --input sim.h5ad --guides sim.guides.tsv --control NonTargeting \
  --output res.h5ad --quiet
mpi 2 "$PERTSCORE" run --input sim.h5ad --guides sim.guides.tsv --control NonTargeting \
  --group-by cell_type --output res_group.h5ad --quiet --no-dosage

echo "== install into a prefix and import from another directory"
cmake --install "$BUILD_DIR" --prefix "$WORK_DIR/prefix" >install.log
SITE=$("$PYTHON" -c "import sys; print('lib/python%d.%d/dist-packages' % sys.version_info[:2])")
[[ -f prefix/$SITE/pertscore/__init__.py ]] || fail "cmake --install did not put pertscore in prefix/$SITE"
[[ -f prefix/share/pertscore/R/read_pertscore.R ]] || fail "cmake --install did not put read_pertscore.R"
mkdir -p elsewhere
(cd elsewhere && PYTHONPATH="$WORK_DIR/prefix/$SITE" "$PYTHON" -c \
  "import pertscore, sys; assert pertscore.__file__.startswith('$WORK_DIR/prefix'), pertscore.__file__") \
  || fail "import pertscore from the installed prefix"
export PYTHONPATH="$WORK_DIR/prefix/$SITE"

echo "== python: pertscore.read / cells / beta against h5py"
"$PYTHON" "$TESTS_DIR/readers/check_readers.py" python res.h5ad sim.h5ad
"$PYTHON" "$TESTS_DIR/readers/check_readers.py" python res_group.h5ad sim.h5ad

echo "== a results file with the columns a newer pertscore stores (obs guide, n_guides, layers ps_pvalue)"
"$PYTHON" "$TESTS_DIR/readers/check_readers.py" future res.h5ad sim.guides.tsv res_future.h5ad

echo "== the example of docs/python.md, on res.h5ad and sim.h5ad"
"$PYTHON" - "$SRC/docs/python.md" <<'PY'
import sys, warnings
text = open(sys.argv[1]).read()
code = text.split("```python\n", 1)[1].split("```", 1)[0]
code = code.replace('"results.h5ad"', '"res.h5ad"').replace('"screen.h5ad"', '"sim.h5ad"')
warnings.simplefilter("ignore")  # the 'guide' column name clash of sim.h5ad
exec(compile(code, "docs/python.md", "exec"))
assert len(carriers) > 0 and B.shape[0] == len(res.var_names) and len(long) > 0
print("PASS: docs/python.md example")
PY

echo "== R: read_pertscore against h5py"
for r in res res_group res_future; do
  Rscript --vanilla - "$WORK_DIR/prefix/share/pertscore/R/read_pertscore.R" "$r.h5ad" "$r.R" <<'REOF'
a <- commandArgs(trailingOnly = TRUE)
source(a[1])
r <- read_pertscore(a[2])
w <- function(df, name, rn) write.table(df, paste0(a[3], ".", name, ".tsv"), sep = "\t", quote = FALSE,
                                         row.names = rn, col.names = if (rn) NA else TRUE, na = "NA")
w(r$cells[, c("perturbation", "n_guides", "ps", "ps_perturbation")], "cells", TRUE)
w(r$long, "long", FALSE)
w(r$perturbations[, c("n_cells", "mean_ps")], "perturbations", TRUE)
w(format(r$beta, digits = 17), "beta", TRUE)
REOF
  "$PYTHON" "$TESTS_DIR/readers/check_readers.py" r "$r.h5ad" "$r.R"
done

echo "== not a results file: a clear error naming it"
"$PYTHON" - <<'PY'
import pertscore
for fn in (pertscore.read, pertscore.cells, pertscore.beta):
    try:
        fn("sim.h5ad")
    except ValueError as e:
        assert "sim.h5ad" in str(e) and "not a pertscore results file" in str(e), str(e)
    else:
        raise SystemExit(f"FAIL: {fn.__name__}('sim.h5ad') did not raise")
try:
    pertscore.read("sim.guides.tsv")
except OSError as e:
    assert "sim.guides.tsv" in str(e), str(e)
else:
    raise SystemExit("FAIL: read of a TSV did not raise")
print("PASS: python readers refuse an input file and a TSV, naming them")
PY
if Rscript --vanilla -e "source('$WORK_DIR/prefix/share/pertscore/R/read_pertscore.R'); read_pertscore('sim.h5ad')" \
    2>r_err.txt; then fail "read_pertscore('sim.h5ad') did not fail"; fi
grep -q "sim.h5ad: not a pertscore results file" r_err.txt || fail "R error: $(cat r_err.txt)"

echo "== pertscore-plot on a results file written back by anndata (categorical obs columns)"
"$PYTHON" "$SRC/tools/pertscore-plot" readback.h5ad --out readback_plots >/dev/null 2>&1 \
  || fail "pertscore-plot on readback.h5ad"
[[ -s readback_plots/ps_distributions.png ]] || fail "no ps_distributions.png from readback.h5ad"

echo "== R: the Seurat recipe (docs/user-guide.md)"
Rscript --vanilla - "$WORK_DIR/prefix/share/pertscore/R/read_pertscore.R" res.h5ad sim.h5ad <<'REOF'
a <- commandArgs(trailingOnly = TRUE)
suppressMessages({ library(SeuratObject); library(Matrix); library(hdf5r) })
source(a[1])
r <- read_pertscore(a[2])
# a Seurat object of the expression: the input CSR X (cells x genes) read as CSC genes x cells
h <- H5File$new(a[3], "r")
cells <- h[["obs/_index"]]$read(); genes <- h[["var/_index"]]$read()
m <- sparseMatrix(i = as.numeric(h[["X/indices"]]$read()) + 1, p = as.numeric(h[["X/indptr"]]$read()),
                  x = as.numeric(h[["X/data"]]$read()), dims = c(length(genes), length(cells)),
                  dimnames = list(genes, cells))
h$close_all()
so <- CreateSeuratObject(counts = m)
so <- AddMetaData(so, metadata = r$cells[, c("perturbation", "ps", "ps_perturbation", "n_guides")])
md <- so[[]]
stopifnot(nrow(md) == length(cells))
hit <- match(rownames(r$cells), rownames(md))
stopifnot(!anyNA(hit))
stopifnot(isTRUE(all.equal(md$ps[hit], r$cells$ps)))
stopifnot(all(as.character(md$perturbation[hit]) == as.character(r$cells$perturbation)))
miss <- setdiff(rownames(md), rownames(r$cells))
stopifnot(length(miss) > 0, all(is.na(md[miss, "ps"])), all(is.na(md[miss, "perturbation"])))
cat(sprintf("PASS: Seurat AddMetaData: %d cells, %d analysed, %d without results (NA)\n",
            nrow(md), nrow(r$cells), length(miss)))
REOF
echo "PASS: readers"
