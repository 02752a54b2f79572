"""Two pertscore results files selected the same targets (SPEC.md section 1).

usage: compare_targets.py A.h5ad B.h5ad
The (perturbation, gene) lists of uns/pertscore/targets must be identical, in
order, and so must var/target_threshold. Exits 1 otherwise.
"""
import sys

import h5py
import numpy as np


def load(path):
    with h5py.File(path, "r") as f:
        return (f["uns/pertscore/targets/perturbation"].asstr()[:], f["uns/pertscore/targets/gene"].asstr()[:],
                f["var/target_threshold"][:])


def main():
    (pa, ga, ta), (pb, gb, tb) = load(sys.argv[1]), load(sys.argv[2])
    print(f"targets: {len(ga)} vs {len(gb)} pairs")
    if not (np.array_equal(pa, pb) and np.array_equal(ga, gb)):
        print("FAIL: the target lists differ")
        return 1
    if not np.array_equal(ta, tb):
        print("FAIL: the thresholds differ")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
