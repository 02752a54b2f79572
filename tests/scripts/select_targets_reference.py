"""Target selection re-implemented with numpy/scipy, to check pertscore's (SPEC.md section 1).

usage: select_targets_reference.py DATA.h5ad GUIDES.tsv CONTROL RESULTS.h5ad [--others] [--strict]
                                   [--exclude] [--max-targets N]
Rebuilds the groups from the scMAGeCK guide table (low MOI: a cell's DE group is
its largest-UMI guide, ties to the first label; the reference quirk unless
--strict; C = control cells, or with --others every cell not carrying X), tests
densely, selects, and compares each perturbation's target set with RESULTS.
Defaults of the other options (min pct 0.1, logfc 0.1, min targets 10).
Exits 1 if any perturbation's set differs.
"""
import math
import sys

import anndata
import h5py
import numpy as np
import pandas as pd
import scipy.stats


def round3(x):
    """R >= 4.0 round(x, 3): the nearer 3-decimal neighbour, ties to even."""
    x10 = x * 1000.0
    i10 = math.floor(x10)
    down, up = i10 / 1000.0, math.ceil(x10) / 1000.0
    return up if (up - x < x - down or (i10 % 2 == 1 and up - x == x - down)) else down


def lognorm(adata):
    x = adata.X.tocsr().astype(np.float64)
    total = np.asarray(x.sum(1)).ravel()
    x = x.multiply(1e4 / total[:, None]).tocsr()
    x.data = np.log1p(x.data)
    return x


def select(a, b, genes, excluded, cap):
    pct1 = np.array([round3(v) for v in (a > 0).mean(0)])
    pct2 = np.array([round3(v) for v in (b > 0).mean(0)])
    fc = np.log2(np.expm1(a).mean(0) + 1) - np.log2(np.expm1(b).mean(0) + 1)
    tested = (np.maximum(pct1, pct2) >= 0.1) & (genes != excluded)
    t = 0.1
    for rounds in range(3):
        keep = np.where(tested & (np.abs(fc) >= t))[0]
        if len(keep) >= 10 or rounds == 2:
            break
        t *= 0.8
    if len(keep) > cap:
        p = [scipy.stats.mannwhitneyu(a[:, j], b[:, j], method="asymptotic").pvalue for j in keep]
        order = sorted(range(len(keep)), key=lambda i: (p[i], -abs(fc[keep[i]]), keep[i]))
        keep = keep[order[:cap]]
    return set(genes[keep])


def main():
    data, guides, control, results = sys.argv[1:5]
    others, strict, exclude = "--others" in sys.argv, "--strict" in sys.argv, "--exclude" in sys.argv
    cap = int(sys.argv[sys.argv.index("--max-targets") + 1]) if "--max-targets" in sys.argv else 500
    adata = anndata.read_h5ad(data)
    x = lognorm(adata)
    table = pd.read_csv(guides, sep="\t")
    row_of = {c: i for i, c in enumerate(adata.obs_names)}
    calls = {}
    for cell, unit, umi in zip(table.cell, table.gene, table.umi_count):
        if cell in row_of:
            calls.setdefault(cell, []).append((unit, umi))
    cells = sorted(calls, key=row_of.get)
    carried = {c: {u for u, _ in calls[c] if u != control} for c in cells}
    has_control = {c: any(u == control for u, _ in calls[c]) for c in cells}
    perturbed = [c for c in cells if carried[c]]
    low_moi = 2 * sum(len(calls[c]) == 1 for c in perturbed) > len(perturbed)
    top = {c: min(calls[c], key=lambda call: (-call[1], call[0]))[0] for c in cells}
    dense = x[[row_of[c] for c in cells]].toarray()
    position = {c: i for i, c in enumerate(cells)}
    genes = np.array(adata.var_names)
    with h5py.File(results, "r") as f:
        got = pd.DataFrame({"perturbation": f["uns/pertscore/targets/perturbation"].asstr()[:],
                            "gene": f["uns/pertscore/targets/gene"].asstr()[:]})
    differ = 0
    for k in sorted({u for c in cells for u in carried[c]}):
        quirk = {c for c in cells if k in carried[c] and has_control[c] and not strict}
        p = [c for c in cells if k in carried[c] and c not in quirk and (not low_moi or top[c] == k)]
        if others:
            ctrl = [c for c in cells if k not in carried[c] or c in quirk]
        else:
            ctrl = [c for c in cells if not carried[c] or c in quirk]
        expected = set()
        if p and ctrl:
            expected = select(dense[[position[c] for c in p]], dense[[position[c] for c in ctrl]], genes,
                              k if exclude else None, cap)
        mine = set(got.gene[got.perturbation == k])
        if mine != expected:
            differ += 1
            print(f"{k}: pertscore {len(mine)} targets, reference {len(expected)}; only pertscore "
                  f"{sorted(mine - expected)[:5]}, only reference {sorted(expected - mine)[:5]}")
    print(f"{'low' if low_moi else 'high'} MOI: {len(got)} pairs; perturbations whose targets differ: {differ}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
