"""Compare pertscore's TP53 results on the scMAGeCK demo with the reference's.

usage: check_demo.py DEMO_DIR GIVEN_TARGETS.h5ad AUTO_TARGETS.h5ad
"""
import sys

import anndata
import numpy as np
import pandas as pd

# Agreement bounds with the reference R implementation (measured: PS 3.5e-8, beta 2.5e-9).
# The reference optimizes with L-BFGS-B to a tolerance, so PS agree to ~1e-8, not to
# the last digit; beta is a closed-form solve on both sides.
MAX_PS_DIFFERENCE = 1e-7
MAX_BETA_DIFFERENCE = 1e-8


def check(path, demo, ref_ps, ref_beta, ref_targets, want_same_targets):
    a = anndata.read_h5ad(path)
    ok = True
    ps = pd.Series(np.asarray(a[:, "TP53"].X.todense()).ravel(), index=a.obs_names)
    missing = ref_ps.index.difference(ps.index)
    if len(missing) or a.n_obs != len(ref_ps):
        print(f"FAIL: {path}: {a.n_obs} analysed cells, reference {len(ref_ps)}; {len(missing)} reference cells missing")
        return False
    pearson = float(np.corrcoef(ps[ref_ps.index], ref_ps)[0, 1])
    ps_difference = float(np.max(np.abs(ps[ref_ps.index] - ref_ps)))
    print(f"{path}: {a.n_obs} cells, PS Pearson vs reference = {pearson:.10f}, "
          f"max |PS - reference| = {ps_difference:.3g}")
    ok &= pearson >= 0.99
    if not ps_difference <= MAX_PS_DIFFERENCE:
        print(f"FAIL: {path}: max |PS - reference| {ps_difference:.3g} > {MAX_PS_DIFFERENCE:g}")
        ok = False
    targets = list(a.uns["pertscore"]["targets"]["gene"])
    print(f"  targets: {targets}")
    if want_same_targets and sorted(targets) != sorted(ref_targets):
        print(f"FAIL: targets differ from the reference's {ref_targets}")
        ok = False
    genes = list(a.uns["pertscore"]["regression_genes"])
    beta = pd.Series(a.varm["beta"][0], index=genes)
    basal = pd.Series(a.uns["pertscore"]["basal"][0], index=genes)
    common = [g for g in ref_beta.columns if g in genes]
    if len(common) != len(ref_beta.columns):
        print(f"FAIL: {path}: regression genes lack {sorted(set(ref_beta.columns) - set(genes))} of beta_ref.tsv")
        ok = False
    beta_difference = float(np.max(np.abs(beta[common] - ref_beta.loc["TP53", common])))
    basal_difference = float(np.max(np.abs(basal[common] - ref_beta.loc["NegCtrl", common])))
    print(f"  beta max |difference| vs beta_ref.tsv: TP53 {beta_difference:.3g}, intercept {basal_difference:.3g}")
    if not max(beta_difference, basal_difference) <= MAX_BETA_DIFFERENCE:
        print(f"FAIL: {path}: beta differs from the reference by more than {MAX_BETA_DIFFERENCE:g}")
        ok = False
    pvalue = a.varm["pvalue"][0]
    print(f"  permutation p-values of TP53's beta: {np.round(pvalue, 2).tolist()}")
    ok &= bool(np.all((pvalue >= 0) & (pvalue <= 1)))
    return ok


def main():
    demo = sys.argv[1]
    ref_ps = pd.read_csv(f"{demo}/ps_tp53_ref.tsv", sep="\t", index_col=0)["TP53"]
    ref_beta = pd.read_csv(f"{demo}/beta_ref.tsv", sep="\t", index_col=0)
    ref_targets = open(f"{demo}/tp53_targets.txt").read().split()
    ok = check(sys.argv[2], demo, ref_ps, ref_beta, ref_targets, False)
    ok &= check(sys.argv[3], demo, ref_ps, ref_beta, ref_targets, True)
    print("OK" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
