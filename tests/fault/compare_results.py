"""Compare two pertscore results files: a resumed run against an uninterrupted one.

Usage: compare_results.py EXPECTED ACTUAL

Every dataset of EXPECTED must be in ACTUAL with the same values, exactly, except:
- uns/pertscore/parameters/* (command line, ranks, timings, 'resumed') and any
  '*seconds*' entry: they describe the run, not its results;
- the var columns that are sums over cells (cumulative_score, mean_ps): each rank
  sums its own cells and the partial sums are added in rank order, so a resume on
  another number of ranks rounds differently; relative tolerance 1e-12.
X (the PS), varm/beta, varm/pvalue, the basal row, obs/var names and the dosage
results are compared exactly: beta and p-values come from the checkpoint's bytes,
and each cell's QP and each perturbation's dosage fit do not depend on the ranks.
Exit 1 and a list of differences when anything else differs.
"""
import sys

import h5py
import numpy as np

SUMS = {"var/cumulative_score", "var/mean_ps"}


def main():
    expected, actual = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
    problems, checked = [], []

    def visit(name, obj):
        if not isinstance(obj, h5py.Dataset):
            return
        if name.startswith("uns/pertscore/parameters/") or "seconds" in name:
            return
        if name not in actual:
            problems.append(f"{name}: missing")
            return
        x, y = obj[()], actual[name][()]
        checked.append(name)
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape:
            problems.append(f"{name}: shape {x.shape} vs {y.shape}")
        elif name in SUMS:
            if not np.allclose(x, y, rtol=1e-12, atol=0, equal_nan=True):
                problems.append(f"{name}: max relative difference {np.nanmax(np.abs(x - y) / np.abs(x))}")
        elif x.dtype.kind == "f":
            if not np.array_equal(x, y, equal_nan=True):
                problems.append(f"{name}: max difference {np.nanmax(np.abs(x - y))}")
        elif not np.array_equal(x, y):
            problems.append(f"{name}: values differ")

    expected.visititems(visit)
    for must in ("X/data", "X/indptr", "varm/beta", "varm/pvalue", "obs/_index", "var/_index"):
        if must not in checked:
            problems.append(f"{must}: not in {sys.argv[1]}")
    for p in problems:
        print("   differs:", p)
    print(f"   compared {len(checked)} datasets of {sys.argv[2]} with {sys.argv[1]}: {len(problems)} difference(s)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
