"""--control-by against a simulated batch shift (SPEC.md section 2, last bullet).

usage: control_by_check.py WITH.h5ad WITHOUT.h5ad PREFIX MIN_SHIFT_PEARSON
WITH: `run --control-by cell_type`; WITHOUT: the same run with one intercept.
PREFIX.basal.tsv holds each type's true natural-log basal shift. Checks that the
per-group basal rows (uns/pertscore/basal, rows in uns/pertscore/groups order)
recover the shift: over the regression genes, Pearson(basal[type2] - basal[type1],
true shift) >= MIN_SHIFT_PEARSON; and that Pearson(PS, true efficiency) with
--control-by is not below the one without (0.005 slack), both printed.
"""
import sys

import anndata
import h5py
import numpy as np
import pandas as pd


def ps_pearson(path, truth):
    results = anndata.read_h5ad(path)
    rows = pd.Index(results.obs_names).get_indexer(truth.cell)
    cols = pd.Index(results.var_names).get_indexer(truth.perturbation)
    ps = np.asarray(results.X.tocsr()[rows, cols]).ravel()
    return float(np.corrcoef(ps, truth.efficiency)[0, 1])


def main():
    with_path, without_path, prefix, min_shift = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    status = 0
    with h5py.File(with_path, "r") as f:
        groups = list(f["uns/pertscore/groups"].asstr()[:])
        genes = list(f["uns/pertscore/regression_genes"].asstr()[:])
        basal = f["uns/pertscore/basal"][:]
        mode = f["uns/pertscore/group_mode"].asstr()[()]
        caps = f["uns/pertscore/winsor_cap"][:]
    with h5py.File(without_path, "r") as f:
        basal_one = f["uns/pertscore/basal"][:]
    if groups != ["type1", "type2"] or basal.shape != (2, len(genes)) or mode != "control-by" \
            or caps.shape != (1, len(genes)) or basal_one.shape != (1, len(genes)):
        print(f"FAIL: groups {groups}, basal {basal.shape} (one intercept: {basal_one.shape}), mode {mode}, "
              f"winsor caps {caps.shape}")
        return 1
    shift = pd.read_csv(prefix + ".basal.tsv", sep="\t")
    true = shift[shift.cell_type == "type2"].set_index("gene").log_shift.reindex(genes).fillna(0).to_numpy()
    estimated = basal[1] - basal[0]
    r = float(np.corrcoef(estimated, true)[0, 1])
    shifted = true != 0
    print(f"regression genes: {len(genes)}, of them shifted in type2: {int(shifted.sum())}")
    print(f"Pearson(basal[type2] - basal[type1], true log shift) = {r:.4f}")
    print(f"mean |estimate - truth|: shifted genes {np.mean(np.abs(estimated - true)[shifted]):.3f}, "
          f"others {np.mean(np.abs(estimated[~shifted])):.3f}")
    if not (r >= min_shift):
        print(f"FAIL: shift recovery {r:.4f} < {min_shift}")
        status = 1
    truth = pd.read_csv(prefix + ".truth.tsv", sep="\t")
    truth = truth[truth.perturbation != "NonTargeting"]
    with_r, without_r = ps_pearson(with_path, truth), ps_pearson(without_path, truth)
    print(f"Pearson(PS, true efficiency): --control-by {with_r:.4f}, one intercept {without_r:.4f}")
    if with_r < without_r - 0.005:
        print("FAIL: --control-by scores worse than one intercept")
        status = 1
    print("OK" if status == 0 else "FAIL")
    return status


if __name__ == "__main__":
    sys.exit(main())
