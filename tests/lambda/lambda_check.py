"""Checks of `pertscore lambda` output (tests/lambda/lambda.sh).

  full RESULTS.h5ad CURVE.tsv SUMMARY.json   the curve, the choice, the full run
  same A.h5ad B.h5ad A.tsv B.tsv             two runs (different rank counts) agree
  subset USER.tsv DEFAULT.tsv N              a user grid's N values match the default curve
  none RESULTS.h5ad SUMMARY.json             no lambda reaches the target
  closedform RESULTS.h5ad INPUT.h5ad         the curve recomputed from the closed form
"""
import json
import math
import sys

import h5py
import numpy as np

PSEUDO = "PSEUDO_CONTROL"


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def read_tsv(path):
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        if header != ["lambda", "fpr", "n_positive", "max_raw_ps", "rescaled"]:
            fail(f"{path}: header {header}")
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    a = np.array([[float(x) for x in r] for r in rows])
    return {"lambda": a[:, 0], "fpr": a[:, 1], "n_positive": a[:, 2], "max_raw": a[:, 3], "rescaled": a[:, 4]}


def strings(ds):
    return [x.decode() if isinstance(x, bytes) else str(x) for x in ds[()]]


def read_h5(path):
    with h5py.File(path, "r") as f:
        g = f["uns/pertscore/lambda"]
        out = {k: np.asarray(g[k][()]).ravel() for k in ("grid", "fpr", "n_positive", "max_raw_ps", "rescaled")}
        for k in ("chosen", "scored_lambda", "target_fpr", "pseudo_cells"):
            out[k] = float(g[k][()])
        out["lambda_param"] = float(f["uns/pertscore/parameters/lambda"][()])
        var = strings(f["var/_index"])
        obs = strings(f["obs/_index"])
        x = f["X"]
        indptr, indices, data = x["indptr"][()], x["indices"][()], x["data"][()]
    if PSEUDO not in var:
        fail(f"{path}: no {PSEUDO} in var")
    k = var.index(PSEUDO)
    pseudo_cells, pseudo_ps, other_on_pseudo = [], [], 0
    for j in range(len(obs)):
        ids = indices[indptr[j]:indptr[j + 1]]
        if k in ids:
            pseudo_cells.append(obs[j])
            pseudo_ps.append(data[indptr[j] + list(ids).index(k)])
            if len(ids) != 1:
                other_on_pseudo += 1
    out.update(var=var, pseudo_names=pseudo_cells, pseudo_ps=np.array(pseudo_ps), other_on_pseudo=other_on_pseudo)
    return out


def g6(values):
    """values as the TSV writes them (%.6g)."""
    return np.array([float(f"{v:.6g}") for v in values])


def check_full(h5, tsv, summary):
    r, c = read_h5(h5), read_tsv(tsv)
    s = json.load(open(summary))
    grid, fpr = r["grid"], r["fpr"]
    n = len(grid)
    if n != 100:
        fail(f"grid has {n} values, expected 100")
    expected = 10.0 ** np.linspace(-3, 3, 100)  # R: 10^seq(-3, 3, length = 100)
    if not np.allclose(grid, expected, rtol=1e-12, atol=0) or grid[0] != 1e-3 or grid[-1] != 1e3:
        fail(f"grid is not 10^seq(-3, 3, length = 100): {grid[:3]} ... {grid[-3:]}")
    if len(fpr) != n or not np.all(np.isfinite(fpr)) or fpr.min() < 0 or fpr.max() > 1:
        fail(f"fpr: {len(fpr)} values, range [{fpr.min()}, {fpr.max()}]")
    if r["pseudo_cells"] != 250 or len(r["pseudo_names"]) != 250 or r["other_on_pseudo"]:
        fail(f"pseudo cells: {r['pseudo_cells']} recorded, {len(r['pseudo_names'])} carry {PSEUDO}, "
             f"{r['other_on_pseudo']} of them carry something else too")
    if not np.array_equal(fpr, r["n_positive"] / 250.0):
        fail("fpr != n_positive / 250")
    # The method makes FPR non-increasing (src/lambda/scan.c: a pseudo cell's QP is
    # 1-dimensional, psi = clip((c - lambda) / h, 0, U), and so is PS / max PS).
    rises = [(grid[i], fpr[i - 1], fpr[i]) for i in range(1, n) if fpr[i] > fpr[i - 1]]
    if rises:
        fail(f"FPR rises with lambda at {rises}")
    target = r["target_fpr"]
    if target != 0.1:
        fail(f"target_fpr {target}")
    ok = np.nonzero(fpr <= target)[0]
    if len(ok) == 0:
        fail("no lambda reaches FPR <= 0.1 on the simulated screen")
    i = ok[0]
    if r["chosen"] != grid[i] or fpr[i] > target or r["scored_lambda"] != grid[i] or r["lambda_param"] != grid[i]:
        fail(f"chosen {r['chosen']} (scored {r['scored_lambda']}, parameter {r['lambda_param']}), expected {grid[i]} "
             f"with FPR {fpr[i]}")
    # the full run at the chosen lambda: its pseudo PS give the scan's FPR
    full = float(np.mean(r["pseudo_ps"] > 0.5))
    if full != fpr[i]:
        fail(f"full run at lambda {grid[i]}: FPR {full}, scan {fpr[i]}")
    # the three outputs agree
    # (the TSV's numbers are %.6g: equal to the file's values printed so)
    if not (np.array_equal(c["lambda"], g6(grid)) and np.array_equal(c["fpr"], g6(fpr))
            and np.array_equal(c["max_raw"], g6(r["max_raw_ps"])) and np.array_equal(c["rescaled"], r["rescaled"])):
        fail("the TSV curve differs from uns/pertscore/lambda")
    if s["chosen_lambda"] != grid[i] or s["fpr"] != list(fpr) or s["grid"] != list(grid) or s["fpr_increases"]:
        fail("the JSON summary differs from the results file")
    print(f"lambda curve: FPR {fpr[0]:.3f} at 1e-3, {fpr[33]:.3f} at 0.1, {fpr[66]:.3f} at 10, {fpr[99]:.3f} at 1e3; "
          f"chosen lambda {grid[i]:.6g} with FPR {fpr[i]:.3f} (previous grid value {grid[i - 1] if i else float('nan'):.6g}: "
          f"FPR {fpr[i - 1] if i else float('nan'):.3f})")


def check_closed_form(h5, expression):
    """FPR(lambda) from SPEC section 4 without the scoring code: a pseudo cell carries only
    the pseudo perturbation, so its QP is one-dimensional, psi = clip((b.r - lambda) / b.b, 0, U)
    with b its beta row and r = min(y, winsor cap) - basal over the regression genes; raw PS =
    psi / U, divided by the maximum over the pseudo cells when that is >= 0.01."""
    r = read_h5(h5)
    with h5py.File(h5, "r") as f:
        genes = strings(f["uns/pertscore/regression_genes"])
        basal = f["uns/pertscore/basal"][()][0]
        cap = f["uns/pertscore/winsor_cap"][()][0]  # one row per winsorizing group; one group here
        upper = float(f["uns/pertscore/parameters/upper"][()])
        rescale = bool(f["uns/pertscore/parameters/rescale"][()])
        b = f["varm/beta"][()][r["var"].index(PSEUDO)]
    with h5py.File(expression, "r") as f:  # the simulator's counts, CSR
        cells = strings(f["obs/_index"])
        all_genes = strings(f["var/_index"])
        x = f["X"]
        indptr, indices, data = x["indptr"][()], x["indices"][()], x["data"][()]
    row = {c: i for i, c in enumerate(cells)}
    col = {g: i for i, g in enumerate(all_genes)}
    gene_cols = np.array([col[g] for g in genes])
    c_dot, bb = [], float(b @ b)
    for name in r["pseudo_names"]:
        i = row[name]
        dense = np.zeros(len(all_genes))
        dense[indices[indptr[i]:indptr[i + 1]]] = data[indptr[i]:indptr[i + 1]]
        y = np.log1p(1e4 * dense / dense.sum())[gene_cols]
        c_dot.append(float(b @ (np.minimum(y, cap) - basal)))
    c_dot = np.array(c_dot)
    worst, mismatches = 0, []
    for lam, n_positive in zip(r["grid"], r["n_positive"]):
        raw = np.clip((c_dot - lam) / bb, 0, upper) / upper
        top = raw.max()
        ps = raw / top if rescale and top >= 0.01 else raw
        n = int(np.sum(ps > 0.5))
        if n != int(n_positive):
            mismatches.append((lam, n, int(n_positive)))
        worst = max(worst, abs(n - int(n_positive)))
    if mismatches:
        fail(f"closed-form FPR differs from the scan at {len(mismatches)} lambdas (lambda, closed form, scan): {mismatches[:5]}")
    print(f"closed form: {len(r['grid'])} lambdas, {len(c_dot)} pseudo cells, FPR equal at every lambda")


def check_same(h5a, h5b, tsva, tsvb):
    a, b = read_h5(h5a), read_h5(h5b)
    ca, cb = read_tsv(tsva), read_tsv(tsvb)
    if sorted(a["pseudo_names"]) != sorted(b["pseudo_names"]):
        fail("the pseudo cells differ")
    for key in ("grid", "fpr", "n_positive", "rescaled"):
        if not np.array_equal(a[key], b[key]):
            fail(f"{key} differs")
    if a["chosen"] != b["chosen"]:
        fail(f"chosen {a['chosen']} vs {b['chosen']}")
    if not (np.array_equal(ca["lambda"], cb["lambda"]) and np.array_equal(ca["fpr"], cb["fpr"])):
        fail("TSV curves differ")
    # the maximum raw PS follows beta, which depends on the rank count through rounding only
    d = np.max(np.abs(a["max_raw_ps"] - b["max_raw_ps"]))
    if d > 1e-10:
        fail(f"max raw PS differ by {d}")
    print(f"same curve: FPR identical, chosen {a['chosen']:.6g}, max raw PS within {d:.2g}")


def check_subset(user, default, n):
    u, d = read_tsv(user), read_tsv(default)
    if len(u["lambda"]) != int(n) or not np.all(np.diff(u["lambda"]) > 0):
        fail(f"user grid: {u['lambda']}")
    for lam, f in zip(u["lambda"], u["fpr"]):
        hit = np.nonzero(np.isclose(d["lambda"], lam, rtol=1e-14, atol=0))[0]
        if len(hit) != 1 or d["fpr"][hit[0]] != f:
            fail(f"lambda {lam}: FPR {f}, default curve {d['fpr'][hit] if len(hit) else 'absent'}")
    print(f"user grid: {list(u['lambda'])} -> FPR {list(u['fpr'])}, as on the default curve")


def check_none(h5, summary):
    r = read_h5(h5)
    s = json.load(open(summary))
    if not math.isnan(r["chosen"]) or s["chosen_lambda"] is not None:
        fail(f"chosen {r['chosen']} / {s['chosen_lambda']}, expected none")
    fpr, grid = r["fpr"], r["grid"]
    best = grid[int(np.argmin(fpr))]
    if r["scored_lambda"] != best or s["scored_lambda"] != best:
        fail(f"scored at {r['scored_lambda']}, expected the lowest-FPR lambda {best}")
    print(f"no lambda reaches FPR <= 0: chosen = none, scored at {best} (FPR {fpr.min()})")


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    {"full": check_full, "same": check_same, "subset": check_subset, "none": check_none,
     "closedform": check_closed_form}[mode](*args)
