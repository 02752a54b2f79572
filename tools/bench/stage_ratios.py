#!/usr/bin/env python3
"""Issue 17 ratios, all measured in one invocation (the machine may be shared: only the
ratios of timings taken side by side mean something).

  tools/bench/stage_ratios.py --work /tmp/ratios [--np 1] [--repeat 3] [--build build]

1. target selection: `pertscore run` on a simulated 18,800-cell x 1,500-gene x
   8-perturbation screen with the one-ranking path and with the per-test path
   (PERTSCORE_DE_PER_TEST=1), alternating; the tests' seconds (de.test_seconds) against
   the sort ceiling (ceilings --sort-values: qsort and the stage's radix sort of the
   same number of values, in the same chunks: de.sorted_values / de.sorts);
2. the read stage: read.matrix_seconds (H5Dread of X and the per-rank block) and
   read.normalize_seconds against the file read by pread and X/data + X/indices by
   H5Dread (ceilings --file, --h5);
3. fixed costs: the bundled example's `run` (examples/run-example.sh: 6,000 x 1,000 x 12,
   given targets) against `mpirun -n NP true`, and run.digest_seconds (input digests).
Prints one JSON object; medians over --repeat runs."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def sh(cmd, env=None, check=True):
    t = time.monotonic()
    out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dt = time.monotonic() - t
    if check and out.returncode != 0:
        sys.exit("stage_ratios: %s failed: %s" % (" ".join(cmd), out.stderr[-2000:]))
    return dt, out.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--np", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cells", type=int, default=18800)
    ap.add_argument("--genes", type=int, default=1500)
    ap.add_argument("--perturbations", type=int, default=8)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    pertscore = os.path.join(args.build, "pertscore")
    ceilings = os.path.join(args.build, "tools", "bench", "ceilings")
    mpirun = ["mpirun", "--oversubscribe", "-n", str(args.np)]
    w = args.work

    screen = os.path.join(w, "screen.h5ad")
    if not os.path.exists(screen):
        sh(mpirun + [pertscore, "simulate", "--cells", str(args.cells), "--genes", str(args.genes), "--perturbations",
                     str(args.perturbations), "--seed", "1", "--out", screen, "--quiet"], env)
    example = os.path.join(w, "example.h5ad")
    if not os.path.exists(example):  # examples/run-example.sh's screen
        sh(mpirun + [pertscore, "simulate", "--cells", "6000", "--genes", "1000", "--perturbations", "12", "--moi", "1",
                     "--seed", "42", "--output", example, "--quiet"], env)

    def stats_of(prefix):
        ranks = []
        for r in range(args.np):
            with open("%s.rank%d.json" % (prefix, r)) as f:
                ranks.append(json.load(f))
        return {k: max(s.get(k, 0) for s in ranks) for k in ranks[0]}

    runs = {"ranked": [], "per_test": []}
    true_s, example_s = [], []
    for rep in range(args.repeat):
        dt, _ = sh(mpirun + ["true"], env)
        true_s.append(dt)
        dt, _ = sh(mpirun + [pertscore, "run", "--input", example, "--guides", example[:-5] + ".guides.tsv",
                             "--control", "NonTargeting", "--targets", example[:-5] + ".targets.gmt", "--output",
                             os.path.join(w, "example.out.h5ad"), "--cells-table", os.path.join(w, "cells.tsv"),
                             "--json", "--force"], env)
        example_s.append(dt)
        for path in ("ranked", "per_test"):
            prefix = os.path.join(w, "stats-%s-%d" % (path, rep))
            e = dict(env, PERTSCORE_STATS=prefix, PERTSCORE_DE_PER_TEST="1" if path == "per_test" else "0")
            dt, _ = sh(mpirun + [pertscore, "run", "--input", screen, "--guides", screen[:-5] + ".guides.tsv",
                                 "--control", "NonTargeting", "--output", os.path.join(w, "out-%s.h5ad" % path),
                                 "--permutations", "0", "--quiet", "--force"], e)
            s = stats_of(prefix)
            s["wall"] = dt
            runs[path].append(s)
    ranked = runs["ranked"]
    sorted_values = ranked[0]["de.sorted_values"]
    sorts = max(ranked[0]["de.sorts"], 1)
    _, out = sh(mpirun + [ceilings, "--dgemm-n", "200", "--repeat", "1", "--file", screen, "--h5", screen,
                          "--sort-values", str(int(sorted_values)), "--sort-chunk",
                          str(max(1, int(sorted_values / sorts)))], env)
    ceil = json.loads(out)

    def med(path, key):
        return statistics.median(s.get(key, 0) for s in runs[path])

    res = {"np": args.np, "repeat": args.repeat, "screen": [args.cells, args.genes, args.perturbations]}
    for path in runs:
        res[path] = {k: med(path, k) for k in ("de.test_seconds", "de.transpose_seconds", "de.seconds",
                                               "de.cpu_seconds", "read.seconds", "read.matrix_seconds",
                                               "read.normalize_seconds", "run.digest_seconds", "wall")}
    res["ceilings"] = ceil
    srt = ceil["sort"]
    res["ratios"] = {
        "targets_tests_speedup": res["per_test"]["de.test_seconds"] / res["ranked"]["de.test_seconds"],
        "targets_stage_speedup": res["per_test"]["de.seconds"] / res["ranked"]["de.seconds"],
        "tests_vs_radix_sort": res["ranked"]["de.test_seconds"] / srt["radix_index_seconds"],
        "tests_vs_qsort": res["ranked"]["de.test_seconds"] / srt["qsort_seconds"],
        "per_test_tests_vs_radix_sort": res["per_test"]["de.test_seconds"] / srt["radix_index_seconds"],
        "matrix_read_vs_h5dread": ceil["h5"]["seconds"] / res["ranked"]["read.matrix_seconds"],
        "matrix_read_vs_pread": ceil["read"]["seconds"] / res["ranked"]["read.matrix_seconds"],
        "matrix_read_plus_normalize_vs_h5dread": ceil["h5"]["seconds"] / (
            res["ranked"]["read.matrix_seconds"] + res["ranked"]["read.normalize_seconds"]),
        "example_run_vs_mpirun_true": statistics.median(example_s) / statistics.median(true_s),
        "mpirun_true_seconds": statistics.median(true_s),
        "example_run_seconds": statistics.median(example_s),
    }
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
