"""Compare the dosage fields (SPEC.md section 5) of two results files.

usage: compare_dosage.py A.h5ad B.h5ad TOLERANCE
Statuses and classes must be equal; numbers (var columns and the bin arrays of
uns/pertscore/dosage) must agree within TOLERANCE relative to max(1, |value|),
NaN matching NaN (TOLERANCE 0: bit-for-bit). Exits 1 otherwise."""
import sys

import h5py
import numpy as np

NUMERIC = ["ed50", "hill_b", "hill_c", "hill_d", "hill_e", "hill_0", "hill_1", "pcc", "pcc_p", "scc", "scc_p",
           "crispri_efficient", "own_min", "own_control_median"]
CATEGORICAL = ["dosage_status", "dosage_class"]
BINS = ["bin_x", "bin_ps", "bin_count"]


def categorical(group):
    cats = group["categories"].asstr()[:]
    return np.array([cats[c] if c >= 0 else "" for c in group["codes"][:]])


def main():
    a_path, b_path, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
    with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
        if not np.array_equal(a["var/_index"].asstr()[:], b["var/_index"].asstr()[:]):
            print("FAIL: perturbations differ")
            return 1
        bad = 0
        for c in CATEGORICAL:
            x, y = categorical(a["var"][c]), categorical(b["var"][c])
            n = int(np.sum(x != y))
            print(f"{c}: {n} differ")
            bad += n
        worst = 0.0
        pairs = [(f"var/{c}", a["var"][c][:], b["var"][c][:]) for c in NUMERIC]
        pairs += [(f"uns/pertscore/dosage/{c}", a["uns/pertscore/dosage"][c][:], b["uns/pertscore/dosage"][c][:])
                  for c in BINS]
        for name, x, y in pairs:
            x = np.asarray(x, dtype=float)
            y = np.asarray(y, dtype=float)
            if x.shape != y.shape or not np.array_equal(np.isnan(x), np.isnan(y)):
                print(f"FAIL: {name}: shapes or NaN positions differ")
                return 1
            m = ~np.isnan(x)
            d = float(np.max(np.abs(x[m] - y[m]) / np.maximum(1.0, np.abs(x[m])))) if m.any() else 0.0
            worst = max(worst, d)
            if d > tol:
                print(f"{name}: max relative difference {d:.3e}")
        print(f"largest relative difference: {worst:.3e} (tolerance {tol:.1e})")
        if bad or worst > tol:
            print("FAIL")
            return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
