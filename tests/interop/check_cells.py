"""The per-cell columns of a results file and the --cells-table TSV, against the
guide table and X (read with h5py and numpy, not with pertscore).

usage: check_cells.py RESULTS.h5ad GUIDES.tsv CELLS.tsv CONTROL [OTHER_CELLS.tsv]

obs.perturbation = the cell's non-control genes of the guide table, sorted,
'+'-joined (control cells: CONTROL); obs.guide = its guides '+'-joined in table
order; n_guides = its rows; ps = the largest stored X entry among its carried
perturbations and ps_perturbation that perturbation (NaN for control cells).
The TSV has the header cell, perturbation, guide, ps, ps_pvalue, one row per
carried perturbation with ps = X[cell, perturbation] (%.6g) and one per control
cell (ps NA). ps_pvalue = layers/ps_pvalue at that entry (%.6g; NA without
calibration, i.e. without layers/ps_pvalue, and for control cells); obs.ps_pvalue =
layers/ps_pvalue of the cell's ps_perturbation entry. OTHER_CELLS.tsv (another rank
count) must be byte-identical.
"""
import collections
import math
import sys

import anndata as ad
import h5py
import numpy as np


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


res, guides_path, cells_path, control = sys.argv[1:5]
genes, guides = collections.defaultdict(list), collections.defaultdict(list)
with open(guides_path) as f:
    header = f.readline().rstrip("\n").split("\t")
    ci, gi, ui = header.index("cell"), header.index("barcode"), header.index("gene")
    for line in f:
        row = line.rstrip("\n").split("\t")
        genes[row[ci]].append(row[ui])
        guides[row[ci]].append(row[gi])

with h5py.File(res, "r") as f:
    cells = f["obs/_index"].asstr()[:]
    perts = list(f["var/_index"].asstr()[:])
    indptr, indices, data = f["X/indptr"][:], f["X/indices"][:], f["X/data"][:]
    calibrated = "layers/ps_pvalue" in f
    if calibrated:
        pv = f["layers/ps_pvalue"]
        if not (np.array_equal(pv["indptr"][:], indptr) and np.array_equal(pv["indices"][:], indices)):
            fail("layers/ps_pvalue does not have X's pattern")
        pdata = pv["data"][:]
a = ad.read_h5ad(res)
obs = a.obs
col = {p: k for k, p in enumerate(perts)}
n_checked = n_multi = 0
expected_rows = []
for j, cell in enumerate(cells):
    carried = sorted({g for g in genes[cell] if g != control})
    stored = dict(zip(indices[indptr[j]:indptr[j + 1]], data[indptr[j]:indptr[j + 1]]))
    pvalues = dict(zip(indices[indptr[j]:indptr[j + 1]], pdata[indptr[j]:indptr[j + 1]])) if calibrated else {}
    want_label = "+".join(carried) if carried else control
    if obs["perturbation"].iloc[j] != want_label:
        fail(f"{cell}: obs.perturbation {obs['perturbation'].iloc[j]!r}, expected {want_label!r}")
    if obs["guide"].iloc[j] != "+".join(guides[cell]):
        fail(f"{cell}: obs.guide {obs['guide'].iloc[j]!r}, expected {'+'.join(guides[cell])!r}")
    if obs["n_guides"].iloc[j] != len(guides[cell]):
        fail(f"{cell}: obs.n_guides {obs['n_guides'].iloc[j]}, expected {len(guides[cell])}")
    ps, who = obs["ps"].iloc[j], obs["ps_perturbation"].iloc[j]
    if not carried:
        if not math.isnan(ps) or isinstance(who, str):
            fail(f"{cell}: a control cell with ps {ps} / ps_perturbation {who!r}, expected NaN")
        expected_rows.append((cell, control, "+".join(guides[cell]), "NA", "NA"))
        continue
    values = {p: stored[col[p]] for p in carried}
    best = max(values.values())
    if not abs(ps - best) <= 1e-12 or values[who] != best:
        fail(f"{cell}: ps {ps} ({who}), expected the largest of {values}")
    if calibrated:
        got, want = obs["ps_pvalue"].iloc[j], pvalues[col[who]]
        if not (got == want or (math.isnan(got) and math.isnan(want))):
            fail(f"{cell}: obs.ps_pvalue {got}, expected layers/ps_pvalue[{who}] = {want}")
    n_checked += 1
    n_multi += len(carried) > 1
    for p in carried:
        mine = [g for g, u in zip(guides[cell], genes[cell]) if u == p]
        want_pv = pvalues[col[p]] if calibrated else float("nan")
        expected_rows.append((cell, p, "+".join(mine), f"{values[p]:.6g}",
                              "NA" if math.isnan(want_pv) else f"{want_pv:.6g}"))

lines = open(cells_path).read().splitlines()
if lines[0].split("\t") != ["cell", "perturbation", "guide", "ps", "ps_pvalue"]:
    fail(f"{cells_path}: header {lines[0]!r}")
rows = [tuple(line.split("\t")) for line in lines[1:]]
if len(rows) != len(expected_rows):
    fail(f"{cells_path}: {len(rows)} rows, expected {len(expected_rows)} (one per carried perturbation "
         "and per control cell)")
for got, want in zip(rows, expected_rows):
    if got != want:
        fail(f"{cells_path}: row {got}, expected {want}")
if n_multi == 0:
    fail("no cell carries two perturbations: the MOI > 1 case is not exercised")
if len(sys.argv) > 5 and open(sys.argv[5], "rb").read() != open(cells_path, "rb").read():
    fail(f"{sys.argv[5]} differs from {cells_path} (another rank count)")
print(f"  per-cell obs and {cells_path}: {len(cells)} cells ({n_checked} perturbed, {n_multi} with several "
      f"perturbations), {len(rows)} table rows match the guide table, X"
      f"{' and layers/ps_pvalue' if calibrated else ' (no calibration: ps_pvalue NA)'}")
