#!/usr/bin/env python3
"""Why automatic targets score the simulated screen a little worse than the true ones.

Given a simulated screen (PREFIX.h5ad, PREFIX.effects.tsv from `pertscore simulate`) and
a results file of a run with automatic targets, writes three target files that separate
"which genes" from "how many genes" (docs/method.md, "Automatic targets on the simulated
screen"):

  true_plus_extras.gmt   the true downstream genes + every selected gene that is not one
  true_plus_random.gmt   the true downstream genes + as many expressed genes (top half by
                         mean) that no perturbation changes and nothing selected
  selected_true.gmt      the selected targets that are true downstream genes

The regression genes of a run are the union of all targets, so the extra genes are listed
under the first perturbation; the per-cell scores do not depend on where they are listed.

usage: extra_targets.py PREFIX RESULTS.h5ad OUTDIR [--seed S]
"""
import argparse
import os

import anndata
import h5py
import numpy as np
import pandas as pd


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prefix")
    ap.add_argument("results")
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    effects = pd.read_csv(a.prefix + ".effects.tsv", sep="\t")
    perts = sorted(set(effects.perturbation))
    true = {k: list(effects[(effects.perturbation == k) & (effects.role == "downstream")].gene) for k in perts}
    with h5py.File(a.results, "r") as f:
        tp = f["uns/pertscore/targets/perturbation"].asstr()[:]
        tg = f["uns/pertscore/targets/gene"].asstr()[:]
    true_union = {g for v in true.values() for g in v}
    selected = set(tg)
    extras = sorted(selected - true_union)
    changed = set(effects.gene)  # downstream and knocked-down genes of every perturbation

    screen = anndata.read_h5ad(a.prefix + ".h5ad")
    mean = np.asarray(screen.X.mean(axis=0)).ravel()
    genes = np.asarray(screen.var_names)
    top_half = genes[np.argsort(-mean)[: len(genes) // 2]]
    pool = [g for g in top_half if g not in selected and g not in changed]
    if len(pool) < len(extras):
        raise SystemExit(f"only {len(pool)} unchanged expressed genes for {len(extras)} extras")
    random_genes = list(np.random.default_rng(a.seed).choice(pool, len(extras), replace=False))

    def write(name, targets):
        with open(os.path.join(a.outdir, name), "w") as out:
            for k in perts:
                out.write(k + "\tpertscore diagnostics\t" + "\t".join(targets[k]) + "\n")

    os.makedirs(a.outdir, exist_ok=True)
    write("true_plus_extras.gmt", {k: true[k] + (extras if k == perts[0] else []) for k in perts})
    write("true_plus_random.gmt", {k: true[k] + (random_genes if k == perts[0] else []) for k in perts})
    write("selected_true.gmt", {k: [g for g in tg[tp == k] if g in set(true[k])] for k in perts})
    print(f"true union {len(true_union)}, selected union {len(selected)}, extras {len(extras)}")


if __name__ == "__main__":
    main()
