"""Automatically selected targets against the simulator's truth (SPEC.md section 1).

usage: target_recovery.py RESULTS.h5ad PREFIX.truth.tsv PREFIX.effects.tsv MIN_PEARSON MIN_RECOVERY MIN_CELLS
Prints Pearson(PS, true efficiency) (truth_check.py) and, per perturbation, how
many selected targets (uns/pertscore/targets) there are and what fraction of its
true downstream genes (effects rows with role 'downstream') they recover.
Exits 1 if Pearson < MIN_PEARSON or a perturbation carried by >= MIN_CELLS cells
recovers less than MIN_RECOVERY of its downstream genes.
"""
import os
import sys

import h5py
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import truth_check  # noqa: E402


def main():
    results, truth, effects = sys.argv[1:4]
    min_pearson, min_recovery, min_cells = sys.argv[4], float(sys.argv[5]), int(sys.argv[6])
    status = truth_check.check(results, truth, min_pearson)
    with h5py.File(results, "r") as f:
        selected = pd.DataFrame({"perturbation": f["uns/pertscore/targets/perturbation"].asstr()[:],
                                 "gene": f["uns/pertscore/targets/gene"].asstr()[:]})
        n_cells = dict(zip(f["var/_index"].asstr()[:], f["var/n_cells"][:]))
        n_regression = len(f["uns/pertscore/regression_genes"])
    fx = pd.read_csv(effects, sep="\t")
    downstream = fx[fx.role == "downstream"]
    print(f"selected pairs: {len(selected)}, regression genes: {n_regression}")
    print("perturbation  cells  selected  downstream  recovered  own gene selected")
    worst = 1.0
    for k, truth_rows in downstream.groupby("perturbation"):
        chosen = set(selected.gene[selected.perturbation == k])
        true = set(truth_rows.gene)
        recovery = len(chosen & true) / len(true)
        cells = int(n_cells.get(k, 0))
        print(f"{k:12s}  {cells:5d}  {len(chosen):8d}  {len(true):10d}  {recovery:9.3f}  {k in chosen}")
        if cells >= min_cells:
            worst = min(worst, recovery)
            if recovery < min_recovery:
                print(f"FAIL: {k} recovers {recovery:.3f} of its downstream genes (< {min_recovery})")
                status = 1
    print(f"worst recovery over perturbations with >= {min_cells} cells: {worst:.3f}")
    print("OK" if status == 0 else "FAIL")
    return status


if __name__ == "__main__":
    sys.exit(main())
