"""SPEC.md section 9 (--preset accurate) re-implemented with numpy/scipy, to check pertscore run's PS.

usage: accurate_reference.py DATA.h5ad GUIDES.tsv CONTROL RESULTS.h5ad TOLERANCE [--fdr Q] [--scale 1e4]
                             [--winsorize] [--qp-genes union] [--gene-weights none]
The options turn the parts of the preset back to the paper's one at a time (--fdr 0: no
FDR cut; --scale 1e4; --winsorize: each gene clipped at its 95th percentile, numpy's
linear = R type 7; union: every regression gene in every QP; none: w = 1), so that
each flag of pertscore run can be checked alone.
Independent of pertscore's code: from the counts and the scMAGeCK guide table,
  - y = ln(1 + s count / total), s = median total count of the analysed cells (cells with a guide);
  - groups as SPEC section 1 (low MOI: the DE group of a cell is its largest-UMI guide; the
    control-guide quirk), Wilcoxon p (scipy mannwhitneyu, asymptotic, continuity and tie
    corrected), the adaptive |log2FC| threshold, Benjamini-Hochberg over the genes that passed
    min-pct, keep |log2FC| >= t and q <= Q, cap 500 (p, then larger |log2FC|, then gene order);
  - regression genes: the union of targets expressed in >= 1% of analysed cells; no winsorizing;
  - ridge B = (X'X + 0.01 I)^-1 X'Y with X = [1 | D];
  - w_g from the residuals Y - XB: v = mean of squares, floored at 0.1 median(v), w = (1/v) / mean(1/v);
  - per cell the weighted box QP over G_j (the targets of its scored perturbations), solved
    exactly by enumerating every face (each variable at 0, free, or at U) and keeping the
    KKT point (brute force: the cells carry at most a few perturbations);
  - PS = psi / U divided by each perturbation's maximum (if >= 0.01); perturbations left
    without targets are absent (NaN).
Compares every stored PS of RESULTS (and NaN positions) and exits 1 if any differs by
more than TOLERANCE. Defaults as SPEC (lambda 0.01, U 3, min pct 0.1, logfc 0.1, min targets 10).
"""
import itertools
import math
import sys

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
import scipy.stats

LAMBDA, UPPER, RIDGE = 0.01, 3.0, 0.01


def round3(x):
    """R >= 4.0 round(x, 3): the nearer 3-decimal neighbour, ties to even."""
    x10 = x * 1000.0
    i10 = math.floor(x10)
    down, up = i10 / 1000.0, math.ceil(x10) / 1000.0
    return up if (up - x < x - down or (i10 % 2 == 1 and up - x == x - down)) else down


def bh(p):
    p = np.where(np.isnan(p), 1.0, p)
    m = len(p)
    order = np.argsort(p, kind="stable")
    q = np.empty(m)
    running = np.inf
    for h in range(m, 0, -1):
        running = min(running, p[order[h - 1]] * m / h)
        q[order[h - 1]] = min(running, 1.0)
    return q


def select(a, b, fdr):
    pct1 = np.array([round3(v) for v in (a > 0).mean(0)])
    pct2 = np.array([round3(v) for v in (b > 0).mean(0)])
    fc = np.log2(np.expm1(a).mean(0) + 1) - np.log2(np.expm1(b).mean(0) + 1)
    tested = np.where(np.maximum(pct1, pct2) >= 0.1)[0]
    t = 0.1
    for rounds in range(3):
        n_pass = int((np.abs(fc[tested]) >= t).sum())
        if n_pass >= 10 or rounds == 2:
            break
        t *= 0.8
    p = np.array([scipy.stats.mannwhitneyu(a[:, j], b[:, j], method="asymptotic").pvalue for j in tested])
    q = bh(p)
    keep = [i for i in range(len(tested)) if abs(fc[tested[i]]) >= t and (fdr <= 0 or q[i] <= fdr)]
    keep.sort(key=lambda i: (np.nan_to_num(p[i], nan=2.0), -abs(fc[tested[i]]), tested[i]))
    return [int(tested[i]) for i in keep[:500]]


def box_qp(h, c):
    """min 1/2 x'Hx - c'x + LAMBDA 1'x on [0, UPPER]^d by enumerating faces."""
    d = len(c)
    best, best_f = None, np.inf
    for face in itertools.product((0, 1, 2), repeat=d):  # 0: at 0, 1: free, 2: at U
        x = np.array([0.0 if s == 0 else UPPER if s == 2 else 0.0 for s in face])
        free = [i for i in range(d) if face[i] == 1]
        if free:
            fixed = [i for i in range(d) if face[i] != 1]
            rhs = c[free] - LAMBDA - h[np.ix_(free, fixed)] @ x[fixed]
            try:
                x[free] = np.linalg.solve(h[np.ix_(free, free)], rhs)
            except np.linalg.LinAlgError:
                continue
        if (x < -1e-12).any() or (x > UPPER + 1e-12).any():
            continue
        x = np.clip(x, 0, UPPER)
        g = h @ x - c + LAMBDA
        scale = np.abs(c).max() + LAMBDA
        ok = all((g[i] >= -1e-9 * scale) if face[i] == 0 else (g[i] <= 1e-9 * scale) if face[i] == 2 else True
                 for i in range(d))
        f = 0.5 * x @ h @ x - c @ x + LAMBDA * x.sum()
        if ok and f < best_f:
            best, best_f = x, f
    return best


def main():
    data, guides, control, results, tolerance = sys.argv[1:6]
    tolerance = float(tolerance)
    def option(name, default):
        return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default
    fdr = float(option("--fdr", "0.05"))
    scale_median = option("--scale", "median") == "median"
    winsorize = "--winsorize" in sys.argv
    own_genes = option("--qp-genes", "own") == "own"
    weighted = option("--gene-weights", "residual") == "residual"
    with h5py.File(data, "r") as f:
        x = f["X"]
        counts = sp.csr_matrix((x["data"][:], x["indices"][:], x["indptr"][:]), shape=tuple(x.attrs["shape"]))
        cell_names = f["obs/_index"].asstr()[:]
        genes = f["var/_index"].asstr()[:]
    table = pd.read_csv(guides, sep="\t")
    row_of = {c: i for i, c in enumerate(cell_names)}
    calls = {}
    for cell, unit, umi in zip(table.cell, table.gene, table.umi_count):
        if cell in row_of:
            calls.setdefault(cell, []).append((unit, umi))
    cells = sorted(calls, key=row_of.get)
    counts = counts[[row_of[c] for c in cells]].astype(np.float64).toarray()
    total = counts.sum(1)
    s = float(np.median(total)) if scale_median else 1e4
    y = np.log1p(s * counts / total[:, None])
    carried = [{u for u, _ in calls[c] if u != control} for c in cells]
    has_control = [any(u == control for u, _ in calls[c]) for c in cells]
    perturbed = [i for i in range(len(cells)) if carried[i]]
    low_moi = 2 * sum(len(calls[cells[i]]) == 1 for i in perturbed) > len(perturbed)
    top = [min(calls[c], key=lambda call: (-call[1], call[0]))[0] for c in cells]
    names = sorted({u for cs in carried for u in cs})
    K, M = len(names), len(cells)
    targets = {}
    for k in names:
        quirk = {i for i in range(M) if k in carried[i] and has_control[i]}
        p = [i for i in range(M) if k in carried[i] and i not in quirk and (not low_moi or top[i] == k)]
        ctrl = [i for i in range(M) if not carried[i] or i in quirk]
        targets[k] = select(y[p], y[ctrl], fdr) if p and ctrl else []
    union = sorted({g for t in targets.values() for g in t})
    regression = [g for g in union if (y[:, g] > 0).mean() >= 0.01]
    col = {g: n for n, g in enumerate(regression)}
    Y = y[:, regression]
    if winsorize:
        Y = np.minimum(Y, np.quantile(Y, 0.95, axis=0))
    X = np.zeros((M, K + 1))
    X[:, 0] = 1
    for i in range(M):
        for k in carried[i]:
            X[i, names.index(k) + 1] = 1
    B = np.linalg.solve(X.T @ X + RIDGE * np.eye(K + 1), X.T @ Y)
    v = ((Y - X @ B) ** 2).mean(0)
    v = np.maximum(v, 0.1 * np.median(v))
    w = (1 / v) / (1 / v).mean() if weighted else np.ones(len(regression))
    own = {k: sorted(col[g] for g in targets[k] if g in col) for k in names}
    skip = own_genes or fdr > 0  # perturbations without targets are not scored
    if not skip:
        own = {k: own[k] or [None] for k in names}  # scored over the union whatever its targets
    raw = {}
    for i in range(M):
        scored = [k for k in sorted(carried[i]) if own[k]]
        for k in carried[i]:
            if not own[k]:
                raw[(i, k)] = np.nan
        if not scored:
            continue
        G = sorted({g for k in scored for g in own[k]}) if own_genes else list(range(len(regression)))
        Bs = np.array([B[names.index(k) + 1, G] for k in scored])
        r = Y[i, G] - B[0, G]
        h = (Bs * w[G]) @ Bs.T
        c = (Bs * w[G]) @ r
        psi = box_qp(h, c)
        for a, k in enumerate(scored):
            raw[(i, k)] = psi[a] / UPPER
    maxima = {k: max([v for (i, kk), v in raw.items() if kk == k and not np.isnan(v)], default=np.nan) for k in names}
    with h5py.File(results, "r") as f:
        xr = f["X"]
        got = sp.csr_matrix((xr["data"][:], xr["indices"][:], xr["indptr"][:]), shape=tuple(xr.attrs["shape"]))
        rcells = list(f["obs/_index"].asstr()[:])
        rnames = list(f["var/_index"].asstr()[:])
    if rnames != names:
        print(f"FAIL: perturbations differ: {rnames[:5]} vs {names[:5]}")
        return 1
    rrow = {c: j for j, c in enumerate(rcells)}
    worst, n, nan_mismatch = 0.0, 0, 0
    for (i, k), value in raw.items():
        if not np.isnan(value) and maxima[k] >= 0.01:
            value /= maxima[k]
        j = rrow[cells[i]]
        kk = names.index(k)
        row = got[j]
        hit = np.where(row.indices == kk)[0]
        mine = row.data[hit[0]] if len(hit) else 0.0
        if np.isnan(value) or np.isnan(mine):
            nan_mismatch += np.isnan(value) != np.isnan(mine)
            continue
        worst = max(worst, abs(mine - value))
        n += 1
    n_unscored = sum(1 for k in names if not own[k])
    print(f"{'low' if low_moi else 'high'} MOI: s = {s:g}, {K} perturbations ({n_unscored} without targets), "
          f"{len(regression)} regression genes, {sum(len(t) for t in targets.values())} target pairs; "
          f"{n} PS compared, max |difference| {worst:.3g}, NaN mismatches {nan_mismatch}")
    if worst > tolerance or nan_mismatch:
        print("FAIL")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
