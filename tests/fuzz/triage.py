#!/usr/bin/env python3
"""Say whose bug a fuzzer finding is: ours, already known, or libhdf5's.

usage: triage.py HARNESS ARTIFACT... (environment as for the fuzz run; extra
       libFuzzer flags such as -rss_limit_mb in PS_FUZZ_FLAGS)

Each ARTIFACT (crash-*, oom-*, timeout-*, leak-* written by libFuzzer) is run once
more through HARNESS and its report classified:
  known:TAG  matches an open signature in tests/fuzz/known/signatures.tsv (a bug in
             our code that is reported but not fixed yet)
  regression:TAG  matches a fixed signature there: a fixed bug is back (a failure)
  ours       the fault is in pertscore: a sanitizer report or a failed invariant
             whose first frame is in src/ or tests/fuzz/, an overflow of a buffer
             that our code allocated or holds on its stack, or any UBSan report
             (libhdf5 is not instrumented, so UBSan only fires in our code)
  libhdf5    the fault is inside libhdf5 on memory it owns (hostile bytes reach
             libhdf5's own decoder; see docs/reliability.md)
Prints one line per artifact and exits 1 if any is "ours" (new) or a regression, else 0.
"""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FRAME = re.compile(r"^\s*#(\d+) 0x[0-9a-f]+ (?:in (\S+))?(.*)$")
SKIP = re.compile(r"__interceptor_|__asan|__sanitizer|__ubsan|fuzzer::|^(memcpy|memmove|memset|strlen|calloc|malloc|realloc|free|strdup)$")


def load_signatures():
    sigs = []
    path = os.environ.get("PS_FUZZ_SIGNATURES") or os.path.join(HERE, "known", "signatures.tsv")
    if os.path.exists(path):
        for line in open(path):
            line = line.rstrip("\n")
            if line and not line.startswith("#"):
                tag, status, regex = line.split("\t", 2)
                if status not in ("open", "fixed"):
                    sys.exit(f"{path}: signature {tag}: status '{status}' is neither open nor fixed")
                sigs.append((tag, status, re.compile(regex, re.S)))
    return sigs


def first_frame(lines, start):
    """(owner, function, where) of the first frame after line start that is not a
    sanitizer or libFuzzer frame; owner is 'ours', 'libhdf5' or 'other'."""
    seen = False
    for line in lines[start:]:
        m = FRAME.match(line)
        if not m:
            if seen:
                break  # end of this stack
            continue
        seen = True
        func, rest = m.group(2) or "?", m.group(3)
        if SKIP.search(func) or "/libc.so" in rest or "sysdeps/" in rest:  # sanitizer, libFuzzer, libc
            continue
        owner = "ours" if ("/src/" in rest or "/tests/fuzz/" in rest) else "libhdf5" if "libhdf5" in rest else "other"
        if func == "?":  # no symbol: name the first caller that has one
            named = next((FRAME.match(l).group(2) for l in lines[lines.index(line) + 1:]
                          if FRAME.match(l) and FRAME.match(l).group(2)), "?")
            func = f"{named} (callee)"
        return owner, func, rest.strip()
    return "other", "?", ""


def classify(report):
    lines = report.splitlines()
    summary = next((l for l in lines if l.startswith("SUMMARY:")), "")
    if "fuzz invariant violated" in report:
        line = next(l for l in lines if "fuzz invariant violated" in l)
        return "ours", line.strip()
    ub = next((l for l in lines if "runtime error:" in l), None)
    if ub:
        return "ours", ub.strip()
    start = next((i for i, l in enumerate(lines) if re.search(r"ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)", l)), None)
    if start is None:
        return "ours", "no sanitizer report (did the harness exit?): " + (lines[-1] if lines else "")
    owner, func, where = first_frame(lines, start)
    # memory our code owns (its stack or its allocation) overflowed inside libhdf5:
    # we handed libhdf5 a buffer that is too small
    for i, l in enumerate(lines):
        if re.search(r"is located in stack of thread|allocated by thread|freed by thread", l):
            o, f, w = first_frame(lines, i + 1 if "allocated" in l or "freed" in l else i)
            if "located in stack" in l:
                m = re.search(r"#0 0x[0-9a-f]+ in (\S+) (\S+)", " ".join(lines[i:i + 3]))
                if m and ("/src/" in m.group(2) or "/tests/fuzz/" in m.group(2)):
                    o, f = "ours", m.group(1)
            if o == "ours":
                return "ours", f"{summary or lines[start].strip()} (memory of {f})"
            break
    if owner == "libhdf5":
        return "libhdf5", f"{summary or lines[start].strip()} in {func}"
    if owner == "ours":
        return "ours", f"{summary or lines[start].strip()} in {func} {where}"
    return "ours", f"{summary or lines[start].strip()} in {func} {where} (not in libhdf5: counted as ours)"


def main():
    harness, artifacts = sys.argv[1], sys.argv[2:]
    sigs = load_signatures()
    new = 0
    for art in artifacts:
        flags = os.environ.get("PS_FUZZ_FLAGS", "").split()
        run = subprocess.run([harness, "-timeout=25", *flags, "-runs=1", art], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             timeout=600)
        report = run.stdout.decode("utf-8", "replace")
        if run.returncode == 0:
            print(f"{art}: does not reproduce (exit 0); flaky or needs the fuzzer's state")
            continue
        owner, what = classify(report)
        match = next(((t, st) for t, st, rx in sigs if rx.search(report)), None)
        if owner == "ours" and match:
            owner = ("known:" if match[1] == "open" else "regression:") + match[0]
        if owner == "ours" or owner.startswith("regression:"):
            new += 1
        print(f"{art}: {owner}: {what}")
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
