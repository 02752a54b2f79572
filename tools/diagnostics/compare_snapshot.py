"""Compare two behaviour snapshots (tools/diagnostics/snapshot.sh): every .h5ad and .tsv
of OLD must be in NEW with identical content, bitwise, except what describes the run
rather than its results: uns/pertscore/parameters/{command,argv,ranks,seconds,...},
any entry or TSV column whose name contains 'seconds', the provenance of paths.
Usage: compare_snapshot.py OLD_DIR NEW_DIR   (exit 1 and a list of differences)
"""
import glob
import os
import sys

import h5py
import numpy as np

RUN_FACTS = ("seconds", "command", "argv", "ranks", "started", "finished", "host", "version",
             "peak_rss", "wall", "build", "resumed", "stats")


def describes_run(name):
    low = name.lower()
    return any(word in low for word in RUN_FACTS)


def compare_h5(old, new, problems):
    a, b = h5py.File(old, "r"), h5py.File(new, "r")
    names_a, names_b = set(), set()

    def collect(f, names):
        def visit(name, obj):
            names.add(name)
            for key in obj.attrs:
                names.add(name + "@" + key)
        f.visititems(visit)
        for key in f.attrs:
            names.add("@" + key)
    collect(a, names_a)
    collect(b, names_b)
    for name in sorted(names_a | names_b):
        if describes_run(name):
            continue
        where = f"{os.path.basename(old)}:{name}"
        if name not in names_a or name not in names_b:
            problems.append(f"{where}: only in {'old' if name in names_a else 'new'}")
            continue
        if "@" in name:
            path, key = name.split("@", 1)
            x, y = (a[path] if path else a).attrs[key], (b[path] if path else b).attrs[key]
        else:
            if not isinstance(a[name], h5py.Dataset):
                continue
            x, y = a[name][()], b[name][()]
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape or x.dtype != y.dtype:
            problems.append(f"{where}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}")
        elif x.dtype == object:  # strings: h5py gives Python objects
            if [str(v) for v in x.ravel()] != [str(v) for v in y.ravel()]:
                problems.append(f"{where}: strings differ")
        elif x.tobytes() != y.tobytes():
            problems.append(f"{where}: values differ")


def compare_tsv(old, new, problems):
    def rows(path):
        lines = open(path).read().splitlines()
        header = lines[0].split("\t") if lines else []
        keep = [i for i, h in enumerate(header) if not describes_run(h)]
        return [[r.split("\t")[i] for i in keep if i < len(r.split("\t"))] for r in lines]
    if rows(old) != rows(new):
        problems.append(f"{os.path.basename(old)}: differs")


def main():
    old_dir, new_dir = sys.argv[1], sys.argv[2]
    problems, n = [], 0
    for old in sorted(glob.glob(os.path.join(old_dir, "*"))):
        base = os.path.basename(old)
        if not (base.endswith(".h5ad") or base.endswith(".tsv")) or base.endswith(".partial"):
            continue
        new = os.path.join(new_dir, base)
        n += 1
        if not os.path.exists(new):
            problems.append(f"{base}: missing in {new_dir}")
        elif base.endswith(".h5ad"):
            compare_h5(old, new, problems)
        else:
            compare_tsv(old, new, problems)
    for p in problems:
        print(p)
    print(f"compared {n} files: {'identical' if not problems else f'{len(problems)} differences'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
