"""--group-by against the simulator's per-cell-type truth (issue 3 check 7, SPEC section 6).

usage: groups_check.py GROUPED.h5ad POOLED.h5ad PREFIX MIN_PEARSON MIN_RECOVERY MIN_CELLS
GROUPED: `run --group-by cell_type` (perturbations "P@typeN"); POOLED: the same
screen without --group-by (perturbations "P"). PREFIX: the simulation (truth.tsv
with a cell_type column, effects.tsv with "P@typeN" rows).
Checks, per cell type: Pearson(PS, true efficiency) >= MIN_PEARSON for GROUPED;
each (P, type) with >= MIN_CELLS cells recovers >= MIN_RECOVERY of its true
downstream genes, and of those specific to its type (not downstream of P in the
other types, or with the other sign there). The file's group columns (obs
cell_type, var perturbation / group, basal rows per group) must be consistent.
Prints the POOLED Pearson per type for comparison (not asserted).
"""
import sys

import anndata
import h5py
import numpy as np
import pandas as pd


def pearson_by_type(results, truth, grouped):
    """Pearson(PS, efficiency) per cell type over perturbed cells."""
    names = truth.perturbation + "@" + truth.cell_type if grouped else truth.perturbation
    rows = pd.Index(results.obs_names).get_indexer(truth.cell)
    cols = pd.Index(results.var_names).get_indexer(names)
    if (rows < 0).any() or (cols < 0).any():
        raise SystemExit("FAIL: truth names cells or perturbations missing from the results")
    ps = np.asarray(results.X.tocsr()[rows, cols]).ravel()
    out = {}
    for t in sorted(truth.cell_type.unique()):
        sel = (truth.cell_type == t).to_numpy()
        out[t] = (float(np.corrcoef(ps[sel], truth.efficiency.to_numpy()[sel])[0, 1]), int(sel.sum()))
    return out


def check_layout(path, results, truth):
    """Group columns and basal rows as documented (docs/user-guide.md)."""
    status = 0
    types = sorted(truth.cell_type.unique())
    obs_type = results.obs["cell_type"].astype(str)
    expected = truth.drop_duplicates("cell").set_index("cell").cell_type.reindex(results.obs_names)
    controls = results.obs.role.astype(str) == "control"
    if not (obs_type[~controls] == expected[~controls]).all():
        print("FAIL: obs cell_type disagrees with the truth")
        status = 1
    var = results.var
    if not (var.perturbation.astype(str) + "@" + var.group.astype(str) == var.index).all():
        print("FAIL: var perturbation/group do not make up the var names")
        status = 1
    with h5py.File(path, "r") as f:
        groups = list(f["uns/pertscore/groups"].asstr()[:])
        basal = f["uns/pertscore/basal"][:]
        caps = f["uns/pertscore/winsor_cap"][:]
        mode = f["uns/pertscore/group_mode"].asstr()[()]
    n_genes = len(results.uns["pertscore"]["regression_genes"]) if "pertscore" in results.uns else basal.shape[1]
    if groups != types or basal.shape != (len(types), n_genes) or caps.shape != (len(types), n_genes) \
            or mode != "group-by":
        print(f"FAIL: groups {groups}, basal {basal.shape}, winsor_cap {caps.shape}, mode {mode}")
        status = 1
    print(f"groups {groups}: basal {basal.shape}, winsor caps {caps.shape}, mode {mode}")
    if "own_control_median" in var:  # dosage: P@type has P's own gene, its control median over all controls
        medians = var.groupby(var.perturbation.astype(str)).own_control_median.nunique()
        fitted = int((var.dosage_status.astype(str) == "fitted").sum())
        print(f"dosage: {fitted} of {len(var)} (perturbation, type) pairs fitted")
        if (medians != 1).any() or var.own_control_median.isna().any():
            print("FAIL: a perturbation's control median of its own gene differs between groups or is missing")
            status = 1
    return status


def main():
    grouped_path, pooled_path, prefix = sys.argv[1:4]
    min_pearson, min_recovery, min_cells = float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
    truth = pd.read_csv(prefix + ".truth.tsv", sep="\t")
    truth = truth[truth.perturbation != "NonTargeting"]
    grouped = anndata.read_h5ad(grouped_path)
    pooled = anndata.read_h5ad(pooled_path)
    status = check_layout(grouped_path, grouped, truth)

    with_groups = pearson_by_type(grouped, truth, True)
    without = pearson_by_type(pooled, truth, False)
    print("cell type  cells  Pearson --group-by  Pearson pooled")
    for t, (r, n) in with_groups.items():
        print(f"{t:9s}  {n:5d}  {r:18.4f}  {without[t][0]:14.4f}")
        if r < min_pearson:
            print(f"FAIL: {t}: Pearson {r:.4f} < {min_pearson}")
            status = 1

    fx = pd.read_csv(prefix + ".effects.tsv", sep="\t")
    down = fx[fx.role == "downstream"].copy()
    down["base"] = down.perturbation.str.rsplit("@", n=1).str[0]
    down["signed"] = down.gene + np.where(down.log_fold_change > 0, "+", "-")
    with h5py.File(grouped_path, "r") as f:
        selected = pd.DataFrame({"perturbation": f["uns/pertscore/targets/perturbation"].asstr()[:],
                                 "gene": f["uns/pertscore/targets/gene"].asstr()[:]})
    n_cells = dict(zip(grouped.var_names, grouped.var.n_cells))
    print("perturbation@type   cells  selected  true  recovered  type-specific  recovered")
    for k, rows in down.groupby("perturbation"):
        others = down[(down.base == rows.base.iloc[0]) & (down.perturbation != k)]
        specific = set(rows.signed) - set(others.signed)
        specific_genes = {s[:-1] for s in specific}
        chosen = set(selected.gene[selected.perturbation == k])
        true = set(rows.gene)
        rec = len(chosen & true) / len(true)
        rec_specific = len(chosen & specific_genes) / max(1, len(specific_genes))
        cells = int(n_cells.get(k, 0))
        print(f"{k:18s}  {cells:5d}  {len(chosen):8d}  {len(true):4d}  {rec:9.3f}  {len(specific_genes):13d}  "
              f"{rec_specific:9.3f}")
        if cells >= min_cells and (rec < min_recovery or rec_specific < min_recovery or not specific_genes):
            print(f"FAIL: {k} recovers {rec:.3f} of its downstream genes, {rec_specific:.3f} of its type-specific "
                  f"ones (< {min_recovery})")
            status = 1
    print("OK" if status == 0 else "FAIL")
    return status


if __name__ == "__main__":
    sys.exit(main())
