#!/usr/bin/python3
"""pertscore benchmarks (issue #8, docs/performance.md).

Generates each named screen once with `pertscore simulate` (cached under WORK/screens,
never in the repository), runs the full pipeline with mpirun, and reports per stage
the wall time, peak RSS per rank and bytes communicated (from the PERTSCORE_STATS
files every rank writes), next to ceilings measured in the same run on the same ranks
(tools/bench/ceilings: OpenBLAS dgemm GFLOP/s, read bandwidth of the input file, MPI
bandwidth), the ratios to them, and the checks of issue #8.

  tools/bench/bench.py --work /scratch/bench --screens quick,mid --np 2
  tools/bench/bench.py --work W --mode scaling --screens mid --np 1,2,4,8,16
  tools/bench/bench.py --work W --mode speedup --screens mid --repeat 3
  tools/bench/bench.py --work W --screens jurkat-genome,k562-essential --np 2 --timeout 1200
  tools/bench/bench.py --work W --screens mid --np 2 --presets paper,accurate   (SPEC section 9, side by side)

Output: a table on stdout and WORK/results/<mode>-<time>.json (or --json FILE).
Use /usr/bin/python3. mpirun runs with OPENBLAS_NUM_THREADS=1 and --oversubscribe.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

GIB = 1024.0 ** 3

# Named screens: the simulator's options, the pipeline's extra options, and the model's
# shape (M cells, G genes, K perturbations, MOI). Controls are guides with label NonTargeting.
SCREENS = {
    "quick": {
        "sim": ["--cells", "4000", "--genes", "500", "--perturbations", "20", "--seed", "1"],
        "run": ["--permutations", "100"],
    },
    "mid": {
        "sim": ["--cells", "40000", "--genes", "1000", "--perturbations", "200", "--moi", "2", "--poisson-moi",
                "--seed", "1"],
        "run": ["--permutations", "100"],
    },
    "jurkat-genome": {
        # TAP-seq panel of 374 genes: 30 perturbations target panel genes, 18,565 do not.
        "sim": ["--cells", "586000", "--genes", "374", "--perturbations", "18595", "--unmeasured-targets", "18565",
                "--moi", "13", "--poisson-moi", "--seed", "1"],
        "run": ["--de-background", "others", "--permutations", "100"],
    },
    "k562-essential": {
        "sim": ["--cells", "310000", "--genes", "8563", "--perturbations", "2057", "--seed", "1"],
        "run": ["--permutations", "100"],
        "cv": "cells",  # plus 5-fold cells cross-validation
    },
}

# Targets of issue #8 (checks), used only to print pass / fail next to the numbers.
ISSUE_WALL_S = 600.0
ISSUE_RSS_SUM_GIB = 12.0
ISSUE_SOLVE_VS_DGEMM = 0.5
ISSUE_QP_CELLS_PER_S_RANK = 100000.0
ISSUE_SPEEDUP_NP2 = 1.7


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def cpu_has_avx512():
    try:
        with open("/proc/cpuinfo") as f:
            return " avx512f" in f.read()
    except OSError:
        return False


def mpi_env():
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OPENBLAS_NUM_THREADS="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    # Debian's OpenBLAS 0.3.21 does not recognise newer AVX-512 CPUs (Zen 4/5) and falls
    # back to its Haswell kernels at about half the dgemm rate; the ceilings and the run
    # use the same kernels either way (docs/performance.md).
    if "OPENBLAS_CORETYPE" not in env and cpu_has_avx512():
        env["OPENBLAS_CORETYPE"] = "SkylakeX"
    return env


def mpirun(args, np):
    return [args.mpiexec, "--oversubscribe", "-n", str(np)]


# ---------------------------------------------------------------- process watching

def children_of(root):
    """PIDs of every descendant of root (from /proc/*/stat)."""
    parent = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                text = f.read()
            ppid = int(text[text.rindex(")") + 2:].split()[1])
            parent[int(d)] = ppid
        except (OSError, ValueError):
            continue
    out, frontier = [], {root}
    while frontier:
        nxt = {p for p, pp in parent.items() if pp in frontier}
        out.extend(nxt)
        frontier = nxt
    return out


def rss_bytes(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    return 0.0


def rank_name(args):
    """The ranks' process name as /proc/PID/comm shows it (at most 15 characters)."""
    return os.path.basename(args.pertscore)[:15]


def is_rank(pid, name):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip() == name
    except OSError:
        return False


def run_watched(cmd, env, log_path, timeout, max_total_gib, rank_name):
    """Run cmd in its own process group; sample the ranks' RSS every 0.5 s; stop it after
    timeout seconds or when the ranks together hold more than max_total_gib. Returns a dict."""
    t0 = time.time()
    with open(log_path, "w") as logf:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True)
        peak_sum, peak_rank, stopped = 0.0, {}, None
        while proc.poll() is None:
            total = 0.0
            for pid in children_of(proc.pid):
                if is_rank(pid, rank_name):
                    r = rss_bytes(pid)
                    total += r
                    peak_rank[pid] = max(peak_rank.get(pid, 0.0), r)
            peak_sum = max(peak_sum, total)
            elapsed = time.time() - t0
            if elapsed > timeout:
                stopped = "timeout after %.0f s" % elapsed
            elif total > max_total_gib * GIB:
                stopped = "memory guard: ranks hold %.1f GiB > %.1f GiB" % (total / GIB, max_total_gib)
            if stopped:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                break
            time.sleep(0.5)
    return {"returncode": proc.returncode, "wall_seconds": time.time() - t0, "stopped": stopped,
            "sampled_peak_rss_sum_bytes": peak_sum, "sampled_peak_rss_per_rank_bytes": sorted(peak_rank.values())}


# ---------------------------------------------------------------- screens

def screen_paths(args, name):
    folder = os.path.join(args.work, "screens", name)
    return folder, os.path.join(folder, name + ".h5ad")


def generate(args, name):
    """Simulate the screen once; a stamp file records the options it was made with."""
    folder, h5ad = screen_paths(args, name)
    stamp = os.path.join(folder, name + ".sim.json")
    want = {"simulate": SCREENS[name]["sim"]}
    if os.path.exists(h5ad) and os.path.exists(stamp):
        with open(stamp) as f:
            if json.load(f) == want:
                return h5ad
    os.makedirs(folder, exist_ok=True)
    cmd = mpirun(args, args.sim_np) + [args.pertscore, "simulate"] + SCREENS[name]["sim"] + ["--out", h5ad, "--quiet"]
    log("bench: generating %s: %s" % (name, " ".join(cmd)))
    res = run_watched(cmd, mpi_env(), os.path.join(folder, "simulate.log"), 3600, args.max_total_gib, rank_name(args))
    if res["returncode"] != 0:
        sys.exit("bench: simulate failed for %s (see %s/simulate.log)" % (name, folder))
    with open(stamp, "w") as f:
        json.dump(want, f)
    log("bench: %s generated in %.0f s" % (name, res["wall_seconds"]))
    return h5ad


def has_run_cv(args):
    out = subprocess.run([args.pertscore, "run", "--help"], capture_output=True, text=True, env=mpi_env())
    return "--cv SCHEME" in out.stdout + out.stderr


# ---------------------------------------------------------------- one benchmark run

def ceilings(args, np, h5ad):
    cmd = mpirun(args, np) + [args.ceilings, "--dgemm-n", args.dgemm_n, "--repeat", "3", "--file", h5ad]
    out = subprocess.run(cmd, capture_output=True, text=True, env=mpi_env(), stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        sys.exit("bench: ceilings failed: %s" % out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


PROGRESS = re.compile(r"pertscore: (\S+)\s+(\d+)%\s+elapsed\s+([\d.]+)s(?:\s+eta\s+([\d.]+)s)?")


def progress_trace(log_path):
    """Stages reached, from the rank-0 progress lines: [(stage, percent, elapsed, eta)]."""
    trace = []
    try:
        with open(log_path, errors="replace") as f:
            for line in f:
                m = PROGRESS.search(line)
                if m:
                    trace.append((m.group(1), int(m.group(2)), float(m.group(3)),
                                  float(m.group(4)) if m.group(4) else None))
    except OSError:
        pass
    return trace


def read_stats(prefix, np):
    ranks = []
    for r in range(np):
        path = "%s.rank%d.json" % (prefix, r)
        if os.path.exists(path):
            with open(path) as f:
                ranks.append(json.load(f))
    return ranks


STAGE_SUFFIXES = ("seconds", "cpu_seconds", "peak_rss_bytes", "mpi_bytes", "mpi_calls", "mpi_p2p_bytes")


def stage_table(ranks, trace):
    """Per stage: seconds (max over ranks), peak RSS (max and per rank), MB sent (sum)."""
    names = []
    for stage, *_ in trace:
        if stage not in names:
            names.append(stage)
    for s in ranks:
        for k in s:
            base, _, suffix = k.rpartition(".")
            if suffix == "peak_rss_bytes" and base not in names and base != "process":
                names.append(base)
    rows = []
    for n in names:
        row = {"stage": n}
        for suffix in STAGE_SUFFIXES:
            vals = [s.get("%s.%s" % (n, suffix)) for s in ranks]
            vals = [v for v in vals if v is not None]
            if not vals:
                continue
            if suffix in ("seconds", "cpu_seconds"):  # the slowest rank; CPU < wall on a busy machine
                row[suffix] = max(vals)
            elif suffix == "peak_rss_bytes":
                row["peak_rss_per_rank_bytes"] = vals
            else:
                row[suffix + "_sum"] = sum(vals)
        rows.append(row)
    return rows


def agg(ranks, key, how=max):
    vals = [s[key] for s in ranks if key in s]
    return how(vals) if vals else None


def derived(ranks, ceil, h5ad, np):
    """Rates and their ratios to the ceilings of the same run."""
    d = {}
    dgemm = [x["gflops_per_rank_mean"] for x in ceil.get("dgemm", [])]
    dgemm_rate = max(dgemm) if dgemm else None
    d["dgemm_gflops_per_rank"] = dgemm_rate
    # ridge.factor_flops / perm.solve_flops count the whole (distributed) operation once.
    for what, flops_key, sec_key in (("factor", "ridge.factor_flops", "ridge.factor_seconds"),
                                     ("perm_solve", "perm.solve_flops", "perm.solve_seconds"),
                                     ("solve", "ridge.solve_flops", "ridge.solve_seconds")):
        flops, sec = agg(ranks, flops_key), agg(ranks, sec_key)
        if flops and sec:
            rate = flops / sec / 1e9 / np
            d[what + "_gflops_per_rank"] = rate
            if dgemm_rate:
                d[what + "_vs_dgemm"] = rate / dgemm_rate
    cells = [s.get("qp.cells", 0) / s["qp.seconds"] for s in ranks if s.get("qp.seconds")]
    if cells:
        d["qp_cells_per_s_per_rank_min"] = min(cells)
    read_s = agg(ranks, "read.seconds")
    io_s = agg(ranks, "io.read_seconds") or agg(ranks, "read.x_seconds")
    size = os.path.getsize(h5ad)
    if read_s:
        d["read_stage_mb_per_s"] = size / 1e6 / read_s
    if io_s:
        d["matrix_read_mb_per_s"] = size / 1e6 / io_s
    if "read" in ceil:
        d["file_mb_per_s"] = ceil["read"]["mb_per_s"]
        if io_s:
            d["matrix_read_vs_file"] = d["matrix_read_mb_per_s"] / ceil["read"]["mb_per_s"]
        if read_s:
            d["read_stage_vs_file"] = d["read_stage_mb_per_s"] / ceil["read"]["mb_per_s"]
    return d


def run_pipeline(args, name, np, tag=""):
    h5ad = generate(args, name)
    folder, _ = screen_paths(args, name)
    prefix_sim = h5ad[:-5]
    run_dir = os.path.join(args.work, "runs", "%s-np%d%s" % (name, np, tag))
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    stats_prefix = os.path.join(run_dir, "stats")
    cmd = mpirun(args, np) + [args.pertscore, "run", "--input", h5ad, "--control", "NonTargeting",
                              "--output", os.path.join(run_dir, "results.h5ad"), "--force"]
    cmd += ["--guides", prefix_sim + ".guides.tsv"] if args.guides == "table" else ["--guide-column", "guide"]
    cmd += SCREENS[name]["run"] + args.extra.split()
    if getattr(args, "preset", None):
        cmd += ["--preset", args.preset]
    cv = SCREENS[name].get("cv")
    cv_cmd = None
    if cv and not args.no_cv:
        if has_run_cv(args):
            cmd += ["--cv", cv]
        else:  # before `run --cv`: a separate `pertscore cv` run, timed on its own
            cv_cmd = mpirun(args, np) + [args.pertscore, "cv", "--scheme", cv, "--folds", "5", "--input", h5ad,
                                         "--control", "NonTargeting", "--guide-column", "guide",
                                         "--output", os.path.join(run_dir, "cv.h5ad")]
    ceil_before = ceilings(args, np, h5ad)
    env = mpi_env()
    env["PERTSCORE_STATS"] = stats_prefix
    log("bench: %s np %d: %s" % (name, np, " ".join(cmd)))
    res = run_watched(cmd, env, os.path.join(run_dir, "run.log"), args.timeout, args.max_total_gib, rank_name(args))
    ranks = read_stats(stats_prefix, np)
    trace = progress_trace(os.path.join(run_dir, "run.log"))
    out = {"screen": name, "np": np, "command": " ".join(cmd), "run": res, "stats": ranks,
           "stages": stage_table(ranks, trace), "progress": trace}
    if cv_cmd and res["returncode"] == 0:
        env["PERTSCORE_STATS"] = stats_prefix + "-cv"
        log("bench: %s np %d cv: %s" % (name, np, " ".join(cv_cmd)))
        remaining = max(60.0, args.timeout - res["wall_seconds"])
        cres = run_watched(cv_cmd, env, os.path.join(run_dir, "cv.log"), remaining, args.max_total_gib,
                           rank_name(args))
        cranks = read_stats(stats_prefix + "-cv", np)
        out["cv"] = {"command": " ".join(cv_cmd), "run": cres, "stats": cranks,
                     "stages": stage_table(cranks, progress_trace(os.path.join(run_dir, "cv.log")))}
    ceil_after = ceilings(args, np, h5ad)
    out["ceilings"] = {"before": ceil_before, "after": ceil_after}
    out["openblas_coretype"] = mpi_env().get("OPENBLAS_CORETYPE", "default")
    out["derived"] = derived(ranks, ceil_before, h5ad, np)
    d_after = derived(ranks, ceil_after, h5ad, np)
    out["derived"]["dgemm_gflops_per_rank_after"] = d_after.get("dgemm_gflops_per_rank")
    out["shape"] = shape_of(name)
    out["extra"] = args.extra
    out["input_nnz"] = input_nnz(h5ad)
    out["model"] = memory_model(out)
    out["wall_total_seconds"] = res["wall_seconds"] + (out["cv"]["run"]["wall_seconds"] if "cv" in out else 0)
    rss = [s.get("process.peak_rss_bytes", 0) for s in ranks]
    out["peak_rss_sum_bytes"] = sum(rss) if rss else None
    if "cv" in out:
        crss = [s.get("process.peak_rss_bytes", 0) for s in out["cv"]["stats"]]
        out["peak_rss_sum_bytes_cv"] = sum(crss) if crss else None
    if res["returncode"] != 0 or res["stopped"]:
        out["failure"] = res["stopped"] or "exit status %s (see %s)" % (res["returncode"], run_dir)
        out["last_progress"] = trace[-1] if trace else None
    return out


def shape_of(name):
    sim = SCREENS[name]["sim"]
    opt = {sim[i]: sim[i + 1] for i in range(len(sim) - 1) if sim[i].startswith("--")}
    return {"M": int(opt["--cells"]), "G": int(opt["--genes"]), "K": int(opt["--perturbations"]),
            "MOI": float(opt.get("--moi", 1)), "R": int(SCREENS[name]["run"][SCREENS[name]["run"].index("--permutations") + 1])}


# ---------------------------------------------------------------- printing

def gib(x):
    return "-" if x is None else "%.2f" % (x / GIB)


def print_run(r):
    res = r["run"]
    status = "ok" if not r.get("failure") else "FAILED: " + r["failure"]
    print("\n== %s  np %d  wall %.1f s  %s" % (r["screen"], r["np"], r["wall_total_seconds"], status))
    print("   %s" % r["command"])
    if r.get("failure") and r.get("last_progress"):
        st, percent, el, eta = r["last_progress"]
        print("   last progress: stage %s %d%% at %.0f s%s" % (st, percent, el, "" if eta is None else ", eta %.0f s" % eta))
    model = (r.get("model") or {}).get("stages", {})
    print("   %-14s %9s %8s %22s %10s %12s %10s %12s" % ("stage", "seconds", "cpu s", "peak RSS/rank GiB",
                                                          "model GiB", "MB sent", "MPI calls", "p2p MB"))
    for row in r["stages"] + [dict(s, stage="cv:" + s["stage"]) for s in r.get("cv", {}).get("stages", [])]:
        peaks = row.get("peak_rss_per_rank_bytes", [])
        print("   %-14s %9s %8s %22s %10s %12s %10s %12s" % (
            row["stage"], "%.2f" % row["seconds"] if "seconds" in row else "-",
            "%.2f" % row["cpu_seconds"] if "cpu_seconds" in row else "-",
            ",".join("%.2f" % (p / GIB) for p in peaks) or "-", gib(model.get(row["stage"])),
            "%.1f" % (row["mpi_bytes_sum"] / 1e6) if "mpi_bytes_sum" in row else "-",
            "%d" % row["mpi_calls_sum"] if "mpi_calls_sum" in row else "-",
            "%.1f" % (row["mpi_p2p_bytes_sum"] / 1e6) if "mpi_p2p_bytes_sum" in row else "-"))
    print("   peak RSS summed over ranks: %s GiB (stats), %s GiB (sampled)%s" % (
        gib(r.get("peak_rss_sum_bytes")), gib(res["sampled_peak_rss_sum_bytes"]),
        "; cv %s GiB" % gib(r.get("peak_rss_sum_bytes_cv")) if "peak_rss_sum_bytes_cv" in r else ""))
    d, c = r["derived"], r["ceilings"]["before"]
    print("   ceilings: dgemm %s GFLOP/s/rank (after the run %s), file read %s MB/s, MPI %s MB/s/rank" % (
        fmt(d.get("dgemm_gflops_per_rank")), fmt(d.get("dgemm_gflops_per_rank_after")),
        fmt(c.get("read", {}).get("mb_per_s")), fmt(c.get("mpi", {}).get("mb_per_s_per_rank"))))
    for key, label in (("factor", "Cholesky"), ("perm_solve", "permutation solves"), ("solve", "beta solve")):
        if key + "_gflops_per_rank" in d:
            print("   %-19s %7s GFLOP/s/rank = %s of dgemm" % (label, fmt(d[key + "_gflops_per_rank"]),
                                                             pct(d.get(key + "_vs_dgemm"))))
    if "qp_cells_per_s_per_rank_min" in d:
        print("   QP stage           %7.0f cells/s/rank (slowest rank)" % d["qp_cells_per_s_per_rank_min"])
    if "read_stage_mb_per_s" in d:
        print("   read stage         %7s MB/s of input file = %s of the file bandwidth%s" % (
            fmt(d["read_stage_mb_per_s"]), pct(d.get("read_stage_vs_file")),
            "" if "matrix_read_mb_per_s" not in d else "; matrix read alone %s MB/s = %s" % (
                fmt(d["matrix_read_mb_per_s"]), pct(d.get("matrix_read_vs_file")))))
    checks(r)


def checks(r):
    name, d = r["screen"], r["derived"]
    out = []
    if name in ("jurkat-genome", "k562-essential") and r["np"] == 2:
        out.append(("wall <= 10 min", r["wall_total_seconds"] <= ISSUE_WALL_S and not r.get("failure")))
        rss = max(r.get("peak_rss_sum_bytes") or 0, r.get("peak_rss_sum_bytes_cv") or 0,
                  r["run"]["sampled_peak_rss_sum_bytes"])
        if rss > 0:  # unknown when the run died before any stage ended and nothing was sampled
            out.append(("peak RSS sum <= 12 GiB", rss <= ISSUE_RSS_SUM_GIB * GIB and not r.get("failure")))
    for key, label in (("factor_vs_dgemm", "Cholesky >= 50% dgemm"), ("perm_solve_vs_dgemm", "perm >= 50% dgemm")):
        if key in d and name in ("jurkat-genome", "k562-essential"):  # too small to rate elsewhere
            out.append((label, d[key] >= ISSUE_SOLVE_VS_DGEMM))
    if name == "jurkat-genome" and "qp_cells_per_s_per_rank_min" in d:
        out.append(("QP >= 100k cells/s/rank", d["qp_cells_per_s_per_rank_min"] >= ISSUE_QP_CELLS_PER_S_RANK))
    if out:
        note = " (with --extra %s: not the issue's configuration)" % r["extra"] if r.get("extra") else ""
        print("   checks%s: " % note + "; ".join("%s %s" % (label, "PASS" if ok else "FAIL") for label, ok in out))
    r["checks"] = {label: ok for label, ok in out}


def fmt(x):
    return "-" if x is None else ("%.1f" % x if x >= 10 else "%.2f" % x)


def pct(x):
    return "-" if x is None else "%.0f%%" % (100 * x)


# ---------------------------------------------------------------- modes

def mode_scaling(args, name, nps):
    runs = [run_pipeline(args, name, np) for np in nps]
    for r in runs:
        print_run(r)
    print("\n== memory per rank vs np (%s): max over ranks of the process peak RSS; model from docs/performance.md"
          % name)
    print("   %4s %9s %16s %16s %10s %s" % ("np", "wall s", "peak/rank GiB", "model GiB", "meas/model",
                                           "peak by stage (max over ranks, GiB)"))
    base = None
    for r in runs:
        peak = agg(r["stats"], "process.peak_rss_bytes")
        m = r.get("model")
        model = m["peak"] if m else None
        stages = ", ".join("%s %.2f" % (row["stage"], max(row["peak_rss_per_rank_bytes"]) / GIB)
                           for row in r["stages"] if row.get("peak_rss_per_rank_bytes"))
        print("   %4d %9.1f %16s %16s %10s %s" % (r["np"], r["wall_total_seconds"], gib(peak), gib(model),
                                                 "%.2f" % (peak / model) if peak and model else "-", stages))
        base = base or peak
    return runs


def mode_speedup(args, name):
    walls = {1: [], 2: []}
    runs = []
    for i in range(args.repeat):
        for np in (1, 2):
            r = run_pipeline(args, name, np, tag="-rep%d" % i)
            runs.append(r)
            walls[np].append(r["wall_total_seconds"])
            print_run(r)
    med = {np: statistics.median(v) for np, v in walls.items()}
    sp = med[1] / med[2]
    print("\n== speedup np 1 -> 2 (%s), %d repeats: np1 %s s, np2 %s s; median speedup %.2fx (%s >= %.1fx)" % (
        name, args.repeat, ",".join("%.1f" % w for w in walls[1]), ",".join("%.1f" % w for w in walls[2]), sp,
        "PASS" if sp >= ISSUE_SPEEDUP_NP2 else "FAIL", ISSUE_SPEEDUP_NP2))
    # CPU seconds of the slowest rank: on a shared machine the wall-clock speedup mostly
    # measures the other load; the CPU split shows whether the work itself divides.
    per_stage, cpu_total = {}, {1: [], 2: []}
    for r in runs:
        total = 0.0
        for row in r["stages"]:
            v = per_stage.setdefault(row["stage"], {1: [], 2: [], "cpu1": [], "cpu2": []})
            v[r["np"]].append(row.get("seconds", 0))
            v["cpu%d" % r["np"]].append(row.get("cpu_seconds", 0))
            total += row.get("cpu_seconds", 0)
        cpu_total[r["np"]].append(total)
    for stage, v in per_stage.items():
        if v[1] and v[2] and statistics.median(v[2]) > 0:
            c1, c2 = statistics.median(v["cpu1"]), statistics.median(v["cpu2"])
            print("   %-10s np1 %8.2f s  np2 %8.2f s  speedup %.2fx   CPU np1 %7.2f s  np2 %7.2f s  %s" % (
                stage, statistics.median(v[1]), statistics.median(v[2]),
                statistics.median(v[1]) / statistics.median(v[2]), c1, c2,
                "CPU split %.2fx" % (c1 / c2) if c2 > 0 else ""))
    cpu_sp = statistics.median(cpu_total[1]) / statistics.median(cpu_total[2]) if statistics.median(cpu_total[2]) else 0
    print("   CPU seconds of the slowest rank, all stages: np1 %.1f, np2 %.1f: split %.2fx" % (
        statistics.median(cpu_total[1]), statistics.median(cpu_total[2]), cpu_sp))
    return {"runs": runs, "speedup_median": sp, "walls": walls, "cpu_split": cpu_sp}


# Per-rank memory model: src/cost (include/pertscore/cost.h) records its estimate in the stats of
# every `run` ("memory.estimate_bytes": runtime + resident + the largest stage from ridge on, and
# "memory.estimate.STAGE_bytes"); the read and target stages need nnz, which `run` does not pass,
# so they are computed here with the same formulas (src/cost/cost.c header) from the file's nnz.
def memory_model(r):
    """Per-rank bytes predicted at each pipeline stage (max over ranks), and the process peak."""
    est = {}
    for s in r["stats"]:
        for k, v in s.items():
            if k.startswith("memory.estimate"):
                est[k] = max(est.get(k, 0.0), v)
    if "memory.estimate_bytes" not in est:
        return None
    P, sh = r["np"], r["shape"]
    nnz = r.get("input_nnz") or 0
    M, G, moi = sh["M"], sh["G"], sh["MOI"]
    base = est["memory.estimate.runtime_bytes"]
    if "memory.estimate.read_bytes" in est:  # the run's own estimate of its read stage (src/cost)
        read_stage = base + max(est.get("memory.estimate." + part + "_bytes", 0)
                                for part in ("read", "targets", "regression"))
    else:  # older binaries: the read formulas of docs/performance.md with the file's nnz
        read = base + 12 * nnz / P + 40 * M / P + 40 * G
        read_stage = max(read, read + 32 * nnz / P + 24 * M + 8 * M * moi)
    res = base + est["memory.estimate.resident_bytes"]
    stage = {"read": read_stage,
             "ridge": res + max(est.get("memory.estimate.ridge_bytes", 0), est.get("memory.estimate.permutations_bytes", 0)),
             "score": res + est.get("memory.estimate.score_bytes", 0),
             "dosage": res + est.get("memory.estimate.dosage_bytes", 0),
             "write": res + est.get("memory.estimate.write_bytes", 0)}
    if est.get("memory.estimate.cv_bytes", 0) > 0:  # run --cv
        stage["cv"] = res + est["memory.estimate.cv_bytes"]
    return {"stages": stage, "peak": max(stage.values()), "guard_peak": est["memory.estimate_bytes"]}


def input_nnz(h5ad):
    try:
        import h5py
        with h5py.File(h5ad, "r") as f:
            return int(f["X/data"].shape[0])
    except Exception:  # the model then leaves the read stage out
        return None


# ---------------------------------------------------------------- projection (docs/performance.md)

def project(M, G, K, moi, N, R, nodes, ranks_per_node, density=0.27, dgemm_gflops=30.0, sparse_gops=1.0,
            nic_gbs=12.5, fs_gbs=20.0, mem_gbs=200.0, batch=1, targets_per_k=100, cores_per_node=64):
    """Seconds and bytes per rank of each stage from the cost model, for a machine described by its
    per-core dgemm rate, sparse op rate, NIC, file-system and node memory bandwidth (GB/s). Ranks
    use cores_per_node / ranks_per_node OpenBLAS threads for the dense products; our own loops
    (sparse sums, shuffles) run on one core per rank."""
    P = nodes * ranks_per_node
    dgemm_gflops *= cores_per_node / ranks_per_node
    n, z, D = K + 1, M * G * density, M * moi
    Y = min(z * N / G, M * N)
    T = K * targets_per_k
    t, mem = {}, {}
    t["read"] = 12 * z / (fs_gbs * 1e9)
    mem["read"] = 12 * z / P + 40 * M / P + 40 * G
    t["targets"] = (12 * z / nodes) / (nic_gbs * 1e9) + (z * 20 + G * D) / P / (sparse_gops * 1e9)
    mem["targets"] = 32 * z / P + 24 * M + 8 * D + 40 * T
    nb = max(1, min(128, n // P))
    eff = min(1.0, nb / 128.0)  # a P x 1 grid with small blocks runs far below the dgemm rate
    t["ridge"] = (n ** 3 / 3 + (2 * n ** 3 / 3 if R else 0)) / (P * dgemm_gflops * 1e9 * max(eff, 0.05)) + \
        2 * (moi + 1) * Y / P / (sparse_gops * 1e9)
    rP = -(-n // P)
    mem["ridge"] = 8 * rP * n + 16 * n * N + 8 * rP * N
    per_perm_allreduce = 2 * 8 * n * N / (nic_gbs * 1e9) + ranks_per_node * 8 * n * N / (mem_gbs * 1e9)
    t["permutations"] = R * (2 * n * n * N / (P * dgemm_gflops * 1e9) + 2 * (moi + 1) * Y / P / (sparse_gops * 1e9)
                             + M * 7e-9 + per_perm_allreduce)
    mem["permutations"] = 8 * rP * n + 16 * M + 4 * D + 12 * (M + D) / P + 13 * Y / P + 12 * n * N + \
        8 * (n + rP) * N * batch
    t["score"] = D * (moi * N * 0.05 + moi ** 2) / P / 1e9
    mem["score"] = 8 * n * N + 8 * D / P
    t["write"] = (8 * D + 24 * n * N) / (fs_gbs * 1e9)
    mem["write"] = 8 * n * N + 8 * D / P + (16 * moi + 40) * M / P
    resident = 48 * 2 ** 20 + 12 * Y / P + 12 * D / P + 45 * M / P + 40 * G + 8 * n * N
    return {"P": P, "seconds": t, "stage_bytes": mem, "resident_bytes": resident,
            "peak_bytes_per_rank": resident + max(mem.values()),
            "peak_bytes_per_node": ranks_per_node * (resident + max(mem.values()))}


def print_projection(args):
    M, G, K, moi, N, R, nodes = (float(x) for x in args.project.split(","))
    print("== projection: M %.3g cells, G %d genes, K %d perturbations, MOI %g, N %d regression genes, R %d, "
          "%d nodes (docs/performance.md)" % (M, G, K, moi, N, R, nodes))
    for rpn in (64, 16, 4):
        p = project(M, int(G), int(K), moi, int(N), int(R), int(nodes), rpn)
        t = p["seconds"]
        print("   %3d ranks/node (P %5d, %2d BLAS threads): %s; total %.0f s; peak %.2f GiB/rank, %.0f GiB/node" % (
            rpn, p["P"], 64 // rpn, ", ".join("%s %.1f s" % (k, v) for k, v in t.items()), sum(t.values()),
            p["peak_bytes_per_rank"] / GIB, p["peak_bytes_per_node"] / GIB))
    return {"projection": args.project}


def print_presets(runs, presets):
    """Stage seconds (slowest rank) of each preset side by side, ratio to the first preset."""
    print("\n== presets side by side (seconds, slowest rank; ratio to %s)" % presets[0])
    for key in sorted({(r["screen"], r["np"]) for r in runs}):
        mine = [r for r in runs if (r["screen"], r["np"]) == key]
        by = {p: [r for r in mine if r.get("preset") == p] for p in presets}
        if not all(by.values()):
            continue
        stages = []
        for r in mine:
            for row in r["stages"]:
                if row["stage"] not in stages and "seconds" in row:
                    stages.append(row["stage"])
        print("   %s np %d" % key)
        print("   %-12s" % "stage" + "".join("%14s" % p for p in presets) + "".join("%12s" % ("x " + p) for p in presets[1:]))
        for stage in stages + ["total"]:
            vals = []
            for p in presets:
                if stage == "total":
                    vals.append(min(r["wall_total_seconds"] for r in by[p]))
                else:
                    v = [row.get("seconds") for r in by[p] for row in r["stages"] if row["stage"] == stage]
                    v = [x for x in v if x is not None]
                    vals.append(min(v) if v else None)
            line = "   %-12s" % stage + "".join("%14s" % ("%.2f" % v if v is not None else "-") for v in vals)
            line += "".join("%12s" % ("%.2f" % (v / vals[0]) if v is not None and vals[0] else "-") for v in vals[1:])
            print(line)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, help="work folder: screens, runs and results (not in the repository)")
    p.add_argument("--screens", default="quick", help="comma-separated: " + ", ".join(SCREENS))
    p.add_argument("--mode", default="run", choices=("run", "scaling", "speedup", "generate"))
    p.add_argument("--np", default="2", help="ranks (run: list; scaling: 1,2,4,8,16)")
    p.add_argument("--repeat", type=int, default=1, help="repeats (run, speedup): spread of the wall time")
    p.add_argument("--pertscore", default=os.path.join(repo, "build", "pertscore"))
    p.add_argument("--ceilings", default=os.path.join(repo, "build", "tools", "bench", "ceilings"))
    p.add_argument("--mpiexec", default="mpirun")
    p.add_argument("--sim-np", type=int, default=2, help="ranks for generating screens")
    p.add_argument("--guides", default="table", choices=("table", "column"),
                   help="guide input: the scMAGeCK table PREFIX.guides.tsv (default) or obs column 'guide'")
    p.add_argument("--no-cv", action="store_true", help="skip the cells CV of k562-essential")
    p.add_argument("--extra", default="", help="options appended to `pertscore run` (they win), e.g. "
                   "'--permutations 10' to time a few permutations of a big screen and extrapolate")
    p.add_argument("--presets", default="", help="run mode: each screen once per preset (e.g. paper,accurate; "
                   "SPEC section 9) and a table of stage seconds side by side, with ratios")
    p.add_argument("--dgemm-n", default="1000,2000", help="dgemm sizes of the ceilings")
    p.add_argument("--timeout", type=float, default=1200.0, help="stop a run after this many seconds")
    p.add_argument("--max-total-gib", type=float, default=18.0, help="stop a run whose ranks hold more")
    p.add_argument("--json", help="results file (default WORK/results/<mode>-<time>.json)")
    p.add_argument("--project", metavar="M,G,K,MOI,N,R,NODES",
                   help="print the cost model's projection for this shape and exit (e.g. 1e7,8563,20000,1,8000,100,64)")
    args = p.parse_args()
    if args.project:
        print_projection(args)
        return
    args.work = os.path.abspath(args.work)
    if os.path.commonpath([args.work, repo]) == repo and subprocess.run(
            ["git", "-C", repo, "check-ignore", "-q", args.work]).returncode != 0:
        sys.exit("bench: --work must be outside the repository or in an ignored folder such as build/ (%s)" % repo)
    names = [n for n in args.screens.split(",") if n]
    for n in names:
        if n not in SCREENS:
            sys.exit("bench: unknown screen '%s' (known: %s)" % (n, ", ".join(SCREENS)))
    for path in (args.pertscore, args.ceilings):
        if not os.access(path, os.X_OK):
            sys.exit("bench: %s is not built (cmake --build build --target pertscore ceilings)" % path)
    nps = [int(x) for x in args.np.split(",")]
    started = datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ")
    result = {"mode": args.mode, "started": started, "argv": sys.argv, "host": os.uname().nodename,
              "pertscore": args.pertscore, "runs": []}
    if args.mode == "generate":
        for n in names:
            generate(args, n)
    elif args.mode == "run":
        presets = [x for x in args.presets.split(",") if x] or [None]
        for n in names:
            for np in nps:
                for i in range(args.repeat):
                    for preset in presets:
                        args.preset = preset
                        tag = ("-rep%d" % i if args.repeat > 1 else "") + ("-" + preset if preset else "")
                        r = run_pipeline(args, n, np, tag=tag)
                        r["preset"] = preset
                        print_run(r)
                        result["runs"].append(r)
        if len(presets) > 1:
            print_presets(result["runs"], presets)
        if args.repeat > 1:
            print("\n== spread over %d repeats" % args.repeat)
            for n in names:
                for np in nps:
                    w = [r["wall_total_seconds"] for r in result["runs"] if r["screen"] == n and r["np"] == np]
                    print("   %s np %d: wall min %.1f median %.1f max %.1f s" % (n, np, min(w), statistics.median(w),
                                                                            max(w)))
    elif args.mode == "scaling":
        for n in names:
            result["runs"] += mode_scaling(args, n, nps)
    elif args.mode == "speedup":
        for n in names:
            sp = mode_speedup(args, n)
            result["runs"] += sp["runs"]
            result.setdefault("speedup", {})[n] = {"median": sp["speedup_median"], "walls": sp["walls"],
                                                   "cpu_split": sp["cpu_split"]}
    out = args.json or os.path.join(args.work, "results", "%s-%s.json" % (args.mode, started))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print("\nbench: results in %s" % out)


if __name__ == "__main__":
    main()
