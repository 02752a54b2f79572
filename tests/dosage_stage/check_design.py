"""Check 2 of the dosage issue: on a simulated screen with designed ED50s
(pertscore simulate --dosage-design), the fitted classes and ED50s of a
results file against PREFIX.dosage.tsv.

usage: check_design.py RESULTS.h5ad PREFIX.dosage.tsv MIN_FITTED MIN_CLASS_ACCURACY MIN_SPEARMAN
Prints the number fitted, the class accuracy over fitted perturbations and
Spearman(fitted ED50, designed ED50); exits 1 if any is below its minimum."""
import sys

import h5py
import numpy as np
import pandas as pd
from scipy.stats import spearmanr


def categorical(group):
    cats = [c.decode() if isinstance(c, bytes) else str(c) for c in group["categories"][()]]
    return np.array([cats[c] if c >= 0 else "" for c in group["codes"][()]])


def strings(ds):
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in ds[()]])


def main():
    results, truth_path, min_fitted, min_acc, min_rho = sys.argv[1:6]
    with h5py.File(results, "r") as f:
        var = f["var"]
        names = strings(var["_index"])
        status = categorical(var["dosage_status"])
        cls = categorical(var["dosage_class"])
        ed50 = var["ed50"][()]
    truth = pd.read_csv(truth_path, sep="\t").set_index("perturbation")
    fitted = status == "fitted"
    names_f = names[fitted]
    design_cls = truth.loc[names_f, "class"].to_numpy()
    design_ed50 = truth.loc[names_f, "ed50"].to_numpy()
    n = int(fitted.sum())
    acc = float(np.mean(cls[fitted] == design_cls)) if n else 0.0
    rho = float(spearmanr(ed50[fitted], design_ed50).correlation) if n > 2 else float("nan")
    print(f"perturbations: {len(names)}, fitted: {n}, class accuracy over fitted: {acc:.3f}, "
          f"Spearman(fitted ED50, designed ED50): {rho:.3f}")
    others = {s: int(np.sum(status == s)) for s in sorted(set(status)) if s != "fitted"}
    if others:
        print("not fitted:", others)
    for name, c, e, dc, de in zip(names_f, cls[fitted], ed50[fitted], design_cls, design_ed50):
        flag = "" if c == dc else "   <- wrong class"
        print(f"  {name}: fitted {c:9s} ED50 {e:.3f}   designed {dc:9s} ED50 {de:.3f}{flag}")
    ok = n >= int(min_fitted) and acc >= float(min_acc) and rho >= float(min_rho)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
