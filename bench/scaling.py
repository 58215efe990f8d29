"""Multi-node scaling of ``dandiget download --dask``, simulated on one machine.

    sudo python bench/scaling.py [--workers 1,2,4] [--corpora large,zarr] [--repeat 3]
                                 [--seed N] [--rate 200mbit] [--smoke] [--out DIR]

Every Dask worker runs in its own network namespace with its own bandwidth cap
(``netns.py``: a veth pair and a ``tc tbf`` on both ends, 200 Mbit/s = 25 MB/s by default),
as if it were a node with a slow NIC. nginx (the content host), the test archive's API and
the Dask scheduler run in the root namespace on the address every node reaches
(``netns.SERVICE_ADDR``); ``dandiget download --dask tcp://...`` (the coordinator) runs in
the root namespace too and lists and plans through the API; the workers fetch the bytes and
write them into the output folder, which every namespace shares (one filesystem).

Configurations: ``dask-N`` for each N of ``--workers`` (a fresh scheduler and N workers per
run, started and registered before the clock starts, stopped after), and ``local``: plain
``dandiget download`` without Dask, in the root namespace, **with no cap** (the local
executor's own speed on the same corpus, to show it did not get slower; not comparable
with the capped runs). ``--local-dandiget LABEL=PATH`` adds another plain run with another
dandiget (e.g. one installed from the commit before the Dask executor).

Protocol as in ``run.py``: ``--repeat`` rounds, each running every configuration once in an
order shuffled by a seeded generator (``--seed``, printed and recorded); every output tree
is verified against the archive's digests (``verify.py``); a wrong tree is a FAILED run.
Writes ``results.json``, ``results.md`` and ``scaling.png`` to ``--out``.

Needs root (``ip netns``, ``tc``) and the ``distributed`` package (``pip install -e
'.[bench]' distributed``). Everything it makes (namespaces, veth pairs, qdiscs, processes) is
removed at the end, on failure and on Ctrl-C; a run killed with SIGKILL is cleaned up by
the next one. Traffic never leaves the machine: the namespaces have no default route.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import charts as charts_mod
import corpus
import netns
from measure import run_measured
from servers import (
    REGISTRY,
    archive_python,
    ensure_packages,
    free_port,
    nginx_binary,
    start_archive,
    start_nginx,
    wait_port,
)
from verify import verify_tree

BENCH = Path(__file__).resolve().parent
TARGET_SPEEDUP = 3.3  # with 4 workers, against 1 (issue 12)
CORPORA = {"large": "large files", "zarr": "one Zarr"}


@dataclass
class Run:
    corpus: str
    config: str  # "local", "local[LABEL]", "dask-N"
    workers: int  # 0 for local runs
    round: int
    position: int
    status: str  # ok | FAILED | timeout | error
    wall: float = 0.0
    cpu: float = 0.0  # the coordinator's (dandiget's) CPU seconds; workers not counted
    peak_rss: int = 0
    files: int = 0
    bytes: int = 0
    problems: str = ""
    log: str = ""


def dandiget_binary() -> str:
    here = Path(sys.executable).parent / "dandiget"
    return str(here) if here.exists() else "dandiget"


def dask_support(binary: str) -> str | None:
    """None when ``dandiget download`` has ``--dask``, else why the Dask runs cannot run."""
    try:
        out = subprocess.run([binary, "download", "--help"], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot run {binary}: {e}"
    if "--dask" not in out:
        return f"{binary} download has no --dask option"
    try:
        import distributed  # noqa: F401
    except ImportError:
        return "the distributed package is not installed"
    return None


# --------------------------------------------------------------------------- the cluster


# Run by a child of start_cluster: waits until N workers registered, prints how many there are.
REGISTERED = """\
import sys
from distributed import Client
address, n, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
with Client(address, timeout=timeout, set_as_default=False) as client:
    client.wait_for_workers(n, timeout=timeout)
    print(len(client.scheduler_info()["workers"]))
"""


@dataclass
class Cluster:
    address: str
    procs: list[subprocess.Popen]


def start_cluster(nodes: netns.Nodes, n: int, work: Path, threads: int,
                  timeout: float = 90) -> Cluster:
    """A scheduler in the root namespace and one worker in each of nodes 0..n-1, all
    registered before this returns."""
    py = sys.executable
    port = free_port(netns.SERVICE_ADDR)
    logs = work / "cluster-logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    with open(logs / "scheduler.log", "ab") as log:
        sched = REGISTRY.popen(
            [py, "-m", "distributed.cli.dask_scheduler", "--host", netns.SERVICE_ADDR,
             "--port", str(port), "--dashboard-address", ":0", "--no-show"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    procs.append(sched)
    address = f"tcp://{netns.SERVICE_ADDR}:{port}"
    try:
        wait_port(port, sched, timeout=timeout, host=netns.SERVICE_ADDR)
        for i in range(n):
            local = work / f"worker-{i}"
            local.mkdir(parents=True, exist_ok=True)
            with open(logs / f"worker-{i}.log", "ab") as log:
                procs.append(REGISTRY.popen(
                    [*nodes.exec_prefix(i), py, "-m", "distributed.cli.dask_worker", address,
                     "--host", netns.node_addr(i), "--nthreads", str(threads),
                     "--nworkers", "1", "--no-nanny", "--memory-limit", "0",
                     "--dashboard-address", ":0", "--local-directory", str(local),
                     "--name", f"node{i}"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log))
        # Asked from a child, not with a Client in this process: a SIGTERM (KeyboardInterrupt)
        # while such a Client started or closed left it half closed, and its __del__ at the
        # interpreter's exit waited 2 x timeout for an IO loop thread that no longer ran.
        with open(logs / "registered.log", "ab") as log:
            ask = REGISTRY.popen([py, "-c", REGISTERED, address, str(n), str(timeout)],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        try:
            answer, _ = ask.communicate(timeout=timeout + 60)
        finally:
            REGISTRY.stop(ask)
        if ask.returncode != 0:
            raise RuntimeError(f"the workers did not register (exit code {ask.returncode}; "
                               f"see {logs / 'registered.log'})")
        got = int(answer)
        if got != n:
            raise RuntimeError(f"{got} workers registered, {n} expected")
    except BaseException:
        stop_cluster(Cluster(address, procs))
        raise
    return Cluster(address, procs)


def stop_cluster(cluster: Cluster) -> None:
    for p in reversed(cluster.procs):  # workers first, then the scheduler
        REGISTRY.stop(p)


# --------------------------------------------------------------------------- runs


@dataclass
class Ctx:
    args: argparse.Namespace
    nodes: netns.Nodes | None
    api_url: str
    expected: dict
    work: Path
    out: Path


def one_run(ctx: Ctx, corpus_name: str, config: str, rnd: int, pos: int) -> Run:
    args = ctx.args
    did = corpus.SCALING_DANDISETS[corpus_name]
    exp = ctx.expected[did]
    workers = int(config.split("-")[1]) if config.startswith("dask-") else 0
    run = Run(corpus_name, config, workers, rnd, pos, "ok", files=len(exp["files"]),
              bytes=exp["bytes"])
    binary = args.dandiget
    if config.startswith("local["):
        binary = args.local_extra[config[len("local["):-1]]
    out_dir = ctx.work / "out"
    home = ctx.work / "home"
    for d in (out_dir, home):
        subprocess.run(["rm", "-rf", str(d)], check=False)
        d.mkdir(parents=True)
    cmd = [binary, "download", f"{ctx.api_url}/dandisets/{did}/", "-o", str(out_dir),
           "-f", "json"]
    cluster = None
    label = f"{corpus_name} {config} (round {rnd})"
    print(f"{label} ...", end=" ", flush=True)
    logs = ctx.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    base = logs / f"{corpus_name}-{config.replace('[', '-').rstrip(']')}-r{rnd}"
    run.log = str(base.relative_to(ctx.out)) + ".err"
    try:
        if workers:
            assert ctx.nodes is not None
            cluster = start_cluster(ctx.nodes, workers, ctx.work / "cluster",
                                    args.worker_threads)
            cmd += ["--dask", cluster.address]
        (base.with_suffix(".cmd")).write_text(" ".join(cmd) + "\n")
        env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
               "XDG_CONFIG_HOME": str(home / ".config"), "PYTHONDONTWRITEBYTECODE": "1"}
        m = run_measured(cmd, env=env, cwd=home, stdout=base.with_suffix(".out"),
                         stderr=base.with_suffix(".err"), timeout=args.timeout)
    except Exception as e:  # the cluster did not come up: a failed run, not a crash
        run.status, run.problems = "error", f"{type(e).__name__}: {e}"
        print(f"error ({run.problems})", flush=True)
        return run
    finally:
        if cluster is not None:
            stop_cluster(cluster)
    run.wall, run.cpu, run.peak_rss = m.wall, m.cpu, m.peak_rss
    v = verify_tree(out_dir / did, exp["files"])
    run.problems = v.problems()
    if m.timed_out:
        run.status = "timeout"
    elif m.returncode != 0:
        run.status = "FAILED"
        run.problems = f"exit code {m.returncode}; {run.problems}"
    elif not v.complete:
        run.status = "FAILED"
    print(f"{run.status} {run.wall:.2f}s {run.bytes / 1e6 / run.wall:.1f} MB/s"
          + (f" ({run.problems})" if run.problems else ""), flush=True)
    subprocess.run(["rm", "-rf", str(out_dir)], check=False)
    return run


# --------------------------------------------------------------------------- results


def summarize(runs: list[Run]) -> list[dict]:
    """One row per corpus and configuration: medians and spreads of the verified runs."""
    rows = []
    keys = sorted({(r.corpus, r.config, r.workers) for r in runs},
                  key=lambda k: (k[0], k[2] == 0, k[2], k[1]))
    for c, config, workers in keys:
        rs = [r for r in runs if (r.corpus, r.config) == (c, config)]
        ok = [r for r in rs if r.status == "ok"]
        mbs = [r.bytes / 1e6 / r.wall for r in ok]
        fps = [r.files / r.wall for r in ok]
        rows.append({
            "corpus": c, "config": config, "workers": workers, "runs": len(ok),
            "attempts": len(rs),
            "wall_median": statistics.median([r.wall for r in ok]) if ok else None,
            "wall_min": min((r.wall for r in ok), default=None),
            "wall_max": max((r.wall for r in ok), default=None),
            "mbs_median": statistics.median(mbs) if mbs else None,
            "mbs_min": min(mbs, default=None), "mbs_max": max(mbs, default=None),
            "fps_median": statistics.median(fps) if fps else None,
            "coordinator_cpu_median": statistics.median([r.cpu for r in ok]) if ok else None,
        })
    for row in rows:
        one = next((r for r in rows if r["corpus"] == row["corpus"] and r["workers"] == 1
                    and r["mbs_median"]), None)
        row["speedup"] = (row["mbs_median"] / one["mbs_median"]
                          if row["workers"] and row["mbs_median"] and one else None)
    return rows


def targets(rows: list[dict], min_runs: int) -> list[dict]:
    out = []
    for c in sorted({r["corpus"] for r in rows}):
        four = next((r for r in rows if r["corpus"] == c and r["workers"] == 4), None)
        one = next((r for r in rows if r["corpus"] == c and r["workers"] == 1), None)
        if four is None or one is None:
            continue
        if min(four["runs"], one["runs"]) < min_runs:
            verdict = f"not judged (fewer than {min_runs} verified runs)"
        else:
            verdict = "met" if (four["speedup"] or 0) >= TARGET_SPEEDUP else "MISSED"
        out.append({"corpus": c, "speedup": four["speedup"], "verdict": verdict})
    return out


def fmt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def markdown(meta: dict, rows: list[dict], tgts: list[dict], chart: str | None) -> str:
    lines = [f"# Scaling of `dandiget download --dask` ({meta['kind']} corpus)", "",
             f"`{meta['command']}` — {meta['date']}, {meta['elapsed_s']:.0f} s, "
             f"seed {meta['seed']}, {meta['repeat']} round(s), status {meta['status']}.", "",
             f"Each worker in its own network namespace, capped at {meta['rate']} each way "
             f"(`tc tbf`); {meta['worker_threads']} thread(s) per worker; scheduler, API, "
             "content host (nginx) and coordinator in the root namespace. `local`: plain "
             "`dandiget download` (no Dask) in the root namespace, **no cap**.", ""]
    for c, info in meta["corpus"].items():
        lines.append(f"- `{c}`: {info['files']:,} files, {info['bytes'] / 1e6:,.0f} MB "
                     f"({CORPORA.get(c, c)})")
    lines += ["", "| corpus | configuration | verified runs | median wall s | spread s | "
              "median MB/s | MB/s min-max | files/s | speedup vs 1 worker | coordinator CPU s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['corpus']} | {r['config']} | {r['runs']}/{r['attempts']} | "
            f"{fmt(r['wall_median'], '.2f')} | {fmt(r['wall_min'], '.2f')}-"
            f"{fmt(r['wall_max'], '.2f')} | {fmt(r['mbs_median'])} | {fmt(r['mbs_min'])}-"
            f"{fmt(r['mbs_max'])} | {fmt(r['fps_median'], ',.0f')} | "
            f"{fmt(r['speedup'], '.2f') + 'x' if r['speedup'] else '-'} | "
            f"{fmt(r['coordinator_cpu_median'], '.1f')} |")
    if tgts:
        lines += ["", f"Target: 4 workers ≥ {TARGET_SPEEDUP}x the throughput of 1 worker.", "",
                  "| corpus | speedup, 4 workers | verdict |", "|---|---|---|"]
        lines += [f"| {t['corpus']} | {fmt(t['speedup'], '.2f')}x | {t['verdict']} |"
                  for t in tgts]
    if meta["notes"]:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in meta["notes"]]
    lines += ["", "Order of each round: " + "; ".join(
        f"{o['corpus']} r{o['round']}: {', '.join(o['order'])}" for o in meta["orders"])]
    if chart:
        lines += ["", f"![scaling]({chart})"]
    return "\n".join(lines) + "\n"


def rate_mbs(rate: str | None) -> float | None:
    """``tc`` rate (``200mbit``, ``1gbit``, ``25mbps``) in MB/s; None when not understood."""
    import re

    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg])(bit|bps)", (rate or "").lower())
    if not m:
        return None
    value = float(m.group(1)) * {"k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)]
    return value / (8 if m.group(3) == "bit" else 1) / 1e6


def draw_chart(meta: dict, runs: list[Run], rows: list[dict], path: Path) -> Path | None:
    """Throughput against workers, median with min-max whiskers, one line per corpus, and
    the ideal line (1 worker's median times N) of each."""
    if not charts_mod.ensure_matplotlib(install=False):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colours = {"large": "#1f77b4", "zarr": "#ff7f0e"}
    top = 0.0
    for c in sorted({r["corpus"] for r in rows}):
        pts = sorted((r for r in rows if r["corpus"] == c and r["workers"] and r["mbs_median"]),
                     key=lambda r: r["workers"])
        if not pts:
            continue
        xs = [r["workers"] for r in pts]
        med = [r["mbs_median"] for r in pts]
        err = [[m - r["mbs_min"] for m, r in zip(med, pts, strict=True)],
               [r["mbs_max"] - m for m, r in zip(med, pts, strict=True)]]
        col = colours.get(c, "#2ca02c")
        ax.errorbar(xs, med, yerr=err, marker="o", capsize=4, color=col,
                    label=f"{c}: {CORPORA.get(c, c)} (median, min-max)")
        one = next((r["mbs_median"] for r in pts if r["workers"] == 1), None)
        if one:
            ax.plot(xs, [one * x for x in xs], linestyle="--", color=col, alpha=0.5,
                    label=f"{c}: ideal (1 worker x N)")
            top = max(top, one * max(xs))
        top = max(top, max(r["mbs_max"] for r in pts))
    cap = rate_mbs(meta["rate"])
    xs_all = sorted({r["workers"] for r in rows if r["workers"]})
    if cap and xs_all:
        ax.plot(xs_all, [cap * x for x in xs_all], linestyle=":", color="#7f7f7f",
                label=f"the caps: N x {cap:g} MB/s")
        top = max(top, cap * max(xs_all))
    ax.set_xlabel("Dask workers (one network namespace each)")
    ax.set_ylabel("throughput, MB/s")
    ax.set_xticks(sorted({r["workers"] for r in rows if r["workers"]}))
    ax.set_ylim(0, top * 1.1 if top else 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"dandiget --dask, each worker capped at {meta['rate']}\n"
                 f"{meta['kind']} corpus, {meta['date'][:10]}, "
                 f"{meta['repeat']} round(s) per point", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default=None, help="worker counts (default 1,2,4; smoke 1,2)")
    ap.add_argument("--corpora", default="large,zarr", help="large,zarr")
    ap.add_argument("--repeat", type=int, default=None, help="rounds (default 3; smoke 1)")
    ap.add_argument("--seed", type=int, default=None,
                    help="seed of the shuffled order (default: random, printed)")
    ap.add_argument("--rate", default="200mbit",
                    help="cap of each worker's namespace, each way (tc rate; default "
                         "200mbit = 25 MB/s)")
    ap.add_argument("--worker-threads", type=int, default=1,
                    help="threads of each Dask worker (default 1, as --dask local:N)")
    ap.add_argument("--no-local", action="store_true", help="no plain local runs")
    ap.add_argument("--no-dask", action="store_true",
                    help="plain local runs only (e.g. with --local-dandiget: is the local "
                         "executor as fast as before?); no namespaces")
    ap.add_argument("--local-dandiget", action="append", default=[], metavar="LABEL=PATH",
                    help="another dandiget to run plainly (e.g. before the Dask executor)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny corpus, 1 round, 1 and 2 workers (CI; under 2 minutes)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds before a run is stopped (default 600; smoke 60)")
    ap.add_argument("--out", type=Path, default=None,
                    help="results directory (default bench/results/scaling-<timestamp>)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="corpus cache (default $DANDIGET_BENCH_CACHE or "
                         "~/.cache/dandiget-bench)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where the output folder goes (default $TMPDIR)")
    ap.add_argument("--no-install", action="store_true",
                    help="do not apt-get install nginx when it is missing")
    args = ap.parse_args(argv)
    args.kind = "scaling-smoke" if args.smoke else "scaling"
    args.workers = args.workers or ("1,2" if args.smoke else "1,2,4")
    args.worker_list = sorted({int(w) for w in args.workers.split(",") if w})
    if not args.worker_list or min(args.worker_list) < 1 or max(args.worker_list) > 16:
        ap.error("--workers: counts from 1 to 16")
    args.corpus_list = [c for c in args.corpora.split(",") if c]
    for c in args.corpus_list:
        if c not in corpus.SCALING_DANDISETS:
            ap.error(f"unknown corpus {c!r}")
    args.repeat = args.repeat or (1 if args.smoke else 3)
    args.timeout = args.timeout or (60 if args.smoke else 600)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1_000_000)
    args.local_extra = {}
    for item in args.local_dandiget:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            ap.error("--local-dandiget LABEL=PATH")
        args.local_extra[label] = path
    args.cache = (args.cache or Path(os.environ.get("DANDIGET_BENCH_CACHE")
                                     or Path.home() / ".cache" / "dandiget-bench")).resolve()
    if args.out is None:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        args.out = BENCH / "results" / f"scaling-{stamp}"
    args.out = args.out.resolve()
    args.dandiget = dandiget_binary()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    why = None if args.no_dask else netns.available()
    if why:
        print(f"cannot simulate nodes: {why}", file=sys.stderr)
        return 2
    no_dask = "--no-dask given" if args.no_dask else dask_support(args.dandiget)
    notes: list[str] = []
    configs = [] if args.no_local else ["local", *(f"local[{k}]" for k in args.local_extra)]
    if no_dask:
        notes.append(f"no Dask runs: {no_dask}")
        print(f"NOTE: no Dask runs: {no_dask}", file=sys.stderr, flush=True)
    else:
        configs += [f"dask-{n}" for n in args.worker_list]
    if not configs:
        print("nothing to run", file=sys.stderr)
        return 2
    if not args.no_install:
        ensure_packages({"nginx": "nginx"})
    if nginx_binary() is None:
        print("nginx is not installed (apt-get install nginx)", file=sys.stderr)
        return 2
    (args.out / "logs").mkdir(parents=True, exist_ok=True)

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    nodes = netns.Nodes(max(args.worker_list), args.rate or None)
    atexit.register(nodes.teardown)
    atexit.register(REGISTRY.cleanup)  # runs first (atexit is last in, first out)
    runs: list[Run] = []
    orders: list[dict] = []
    status = "complete"
    qdiscs: list[str] = []
    expected: dict = {}
    print(f"seed of the run order: {args.seed} (--seed {args.seed} repeats it)", flush=True)
    try:
        print(f"preparing the {args.kind} corpus in {args.cache} ...", flush=True)
        prep = subprocess.run(
            [archive_python(), str(BENCH / "archive_server.py"), "--kind", args.kind,
             "--cache", str(args.cache), "--prepare-only"],
            stdout=subprocess.PIPE, check=True, timeout=7200)
        prepared = json.loads(prep.stdout.decode().strip().splitlines()[-1])
        expected = json.loads(Path(prepared["expected"]).read_text())
        if not no_dask:
            nodes.setup()
            qdiscs = nodes.qdiscs()
        host = netns.SERVICE_ADDR if not no_dask else "127.0.0.1"
        nginx = start_nginx(Path(prepared["corpus"]), "loopback", host=host)
        archive = start_archive(args.kind, args.cache, nginx.url, args.out / "logs" / "archive.log",
                                host=host)
        print(f"API {archive.api_url}, content {nginx.url}", flush=True)
        work = REGISTRY.tempdir("dandiget-scaling-", args.workdir)
        ctx = Ctx(args, nodes if not no_dask else None, archive.api_url, expected, work,
                  args.out)
        rng = random.Random(args.seed)
        for c in args.corpus_list:
            for rnd in range(1, args.repeat + 1):
                order = list(configs)
                rng.shuffle(order)
                orders.append({"corpus": c, "round": rnd, "order": order})
                print(f"{c} round {rnd}/{args.repeat}: {', '.join(order)}", flush=True)
                for pos, config in enumerate(order, 1):
                    runs.append(one_run(ctx, c, config, rnd, pos))
    except KeyboardInterrupt:
        status = "interrupted"
        print("\ninterrupted: stopping every process, removing the namespaces", flush=True)
    finally:
        REGISTRY.cleanup()
        nodes.teardown()
    left = netns.our_namespaces()
    if left:
        notes.append(f"namespaces left after teardown: {left}")
    meta = {
        "command": "python bench/scaling.py " + " ".join(sys.argv[1:] if argv is None
                                                          else argv),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "status": status, "elapsed_s": round(time.monotonic() - t0, 1),
        "kind": args.kind, "rate": args.rate, "worker_threads": args.worker_threads,
        "repeat": args.repeat, "seed": args.seed, "orders": orders, "qdiscs": qdiscs,
        "machine": {"nproc": os.cpu_count()}, "local_extra": args.local_extra,
        "corpus": {c: {"dandiset": did, "files": len(expected[did]["files"]),
                       "bytes": expected[did]["bytes"]}
                   for c in args.corpus_list
                   if (did := corpus.SCALING_DANDISETS[c]) in expected},
        "notes": notes,
    }
    with_machine(meta)
    rows = summarize(runs)
    tgts = targets(rows, 3)
    chart = (draw_chart(meta, runs, rows, args.out / "scaling.png")
             if any(r["workers"] and r["runs"] for r in rows) else None)
    (args.out / "results.json").write_text(json.dumps(
        {"meta": meta, "summary": rows, "targets": tgts, "runs": [asdict(r) for r in runs]},
        indent=1))
    md = markdown(meta, rows, tgts, chart.name if chart else None)
    (args.out / "results.md").write_text(md)
    print("\n" + md)
    print(f"results: {args.out / 'results.md'}")
    if status == "interrupted":
        return 130
    if any(r.status != "ok" for r in runs):
        return 1
    return 3 if no_dask and not args.no_dask else 0


def with_machine(meta: dict) -> None:
    """CPU model, RAM, kernel (``run.py``'s description of the machine)."""
    try:
        import run as run_mod

        meta["machine"] = run_mod.machine_info()
    except Exception:  # the description is a courtesy; the numbers stand without it
        pass


if __name__ == "__main__":
    sys.exit(main())
