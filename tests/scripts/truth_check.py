"""PS against the simulator's true per-cell efficiency (issue check 4).

usage: truth_check.py RESULTS.h5ad PREFIX.truth.tsv MIN_PEARSON
Over perturbed cells (one row per cell and perturbation in the truth table),
prints Pearson(PS, efficiency) and median |PS - efficiency|; exits 1 if the
Pearson correlation is below MIN_PEARSON.
"""
import sys

import anndata
import numpy as np
import pandas as pd


def check(results_path, truth_path, min_pearson):
    """Print the figures; return 0 if Pearson >= min_pearson, else 1."""
    results = anndata.read_h5ad(results_path)
    truth = pd.read_csv(truth_path, sep="\t")
    truth = truth[truth.perturbation != "NonTargeting"]
    rows = pd.Index(results.obs_names).get_indexer(truth.cell)
    cols = pd.Index(results.var_names).get_indexer(truth.perturbation)
    if (rows < 0).any() or (cols < 0).any():
        print("FAIL: truth names cells or perturbations missing from the results")
        return 1
    ps = np.asarray(results.X.tocsr()[rows, cols]).ravel()
    eff = truth.efficiency.to_numpy()
    pearson = float(np.corrcoef(ps, eff)[0, 1])
    median_abs = float(np.median(np.abs(ps - eff)))
    print(f"perturbed cell-perturbation pairs: {len(ps)}")
    print(f"Pearson(PS, true efficiency) = {pearson:.4f}")
    print(f"median |PS - efficiency| = {median_abs:.4f}")
    for level in sorted(set(eff)):
        sel = eff == level
        print(f"  efficiency {level:.2f}: n = {sel.sum()}, mean PS = {ps[sel].mean():.3f}")
    if pearson < float(min_pearson):
        print(f"FAIL: Pearson below {min_pearson}")
        return 1
    print("OK")
    return 0


def main():
    return check(sys.argv[1], sys.argv[2], sys.argv[3])


if __name__ == "__main__":
    sys.exit(main())
