"""Compare two pertscore results files: same cells, perturbations, PS, beta and
permutation p-values.

usage: compare_results.py A.h5ad B.h5ad TOLERANCE
Prints the largest absolute differences; exits 1 if any of PS / beta / basal exceeds
TOLERANCE, or if any permutation p-value differs (the permutations are drawn the same
on any number of ranks, so only a |B_r| within rounding of |B| could flip a count:
none may).
"""
import sys

import h5py
import numpy as np


def load(path):
    with h5py.File(path, "r") as f:
        x = f["X"]
        return {
            "cells": f["obs/_index"].asstr()[:],
            "perturbations": f["var/_index"].asstr()[:],
            "indptr": x["indptr"][:],
            "indices": x["indices"][:],
            "ps": x["data"][:],
            "beta": f["varm/beta"][:],
            "basal": f["uns/pertscore/basal"][:],
            "pvalue": f["varm/pvalue"][:] if "varm/pvalue" in f else None,
        }


def main():
    a, b, tol = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
    for key in ("cells", "perturbations", "indptr", "indices"):
        if not np.array_equal(a[key], b[key]):
            print(f"FAIL: {key} differ")
            return 1
    worst = 0.0
    for key in ("ps", "beta", "basal"):
        diff = float(np.max(np.abs(a[key] - b[key]))) if a[key].size else 0.0
        print(f"max |{key} difference| = {diff:.3e}")
        worst = max(worst, diff)
    if (a["pvalue"] is None) != (b["pvalue"] is None):
        print("FAIL: only one file has permutation p-values (varm/pvalue)")
        return 1
    if a["pvalue"] is not None:
        differ = int(np.sum(a["pvalue"] != b["pvalue"]))
        print(f"permutation p-values: {differ} of {a['pvalue'].size} differ, "
              f"max |difference| = {float(np.max(np.abs(a['pvalue'] - b['pvalue']))) if a['pvalue'].size else 0.0:.3e}")
        if differ:
            print("FAIL: permutation p-values differ")
            return 1
    if worst > tol:
        print(f"FAIL: difference {worst:.3e} above tolerance {tol:.1e}")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
