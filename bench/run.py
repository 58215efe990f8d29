"""dandiget benchmark: same data, same server, same machine, several tools in one run.

    python bench/run.py [--profiles loopback,s3like] [--scenarios big,files,zarr,...]
                        [--tools dandiget,dandi-cli,curl,aria2c] [--repeat 3] [--seed N]
                        [--smoke] [--out DIR]

Generates (once, cached) the corpus, serves it with nginx under a network profile and the
test archive's API in its own process (on ``s3like`` with the real API's latency,
``api_latency.py``), and runs every scenario in ``--repeat`` rounds: every tool once per
round, in an order shuffled per round from ``--seed`` (printed, and recorded with every
order). Re-run scenarios start from a tree made by an untimed download with the HOME the
re-runs keep (dandi-cli's digest cache included); the migration scenarios start every run
from dandi-cli's tree as it made it. Every output tree is verified against the archive's
digests (a wrong or incomplete tree marks that run FAILED). Writes ``results.md``,
``results.json`` and the charts (``charts.py``) to ``--out``. Exits 1 when any run FAILED.
See BENCHMARKS.md ("Protocol").
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import charts as charts_mod
import corpus
import crawl as crawl_mod
import report
import tools as T
from api_latency import S3LIKE as S3LIKE_API
from measure import run_measured
from servers import (
    ECHO_MODULE,
    REGISTRY,
    Archive,
    Nginx,
    archive_python,
    ensure_packages,
    nginx_binary,
    start_archive,
    start_nginx,
)
from verify import first_expected_file, verify_tree

PROFILES = ("loopback", "s3like")
RERUN_MODES = ("refresh", "overwrite-different")
MIN_RUNS = 3  # runs of every tool before report.py gives a verdict


@dataclass(frozen=True)
class Scenario:
    name: str
    dataset: str
    mode: str  # download | refresh | overwrite-different | plan | first-file
    title: str
    profiles: tuple[str, ...]  # where it runs (else on the first profile of the run)
    tree: str = ""  # re-runs: "own" (each tool over its own download) | "dandi-cli" (migration)
    tmpfs: bool = False  # the output on /dev/shm
    crawl: bool = False  # nginx restarted before every run, one connection in 16 crawls
    tools: tuple[str, ...] = ()  # only these tools (first word of the name); empty: all
    cap: float = 0.0  # a time cap of its own (seconds; the smaller of it and --timeout)


BOTH = PROFILES
SCENARIOS = {s.name: s for s in [
    Scenario("big", "big", "download", "one large file", BOTH),
    Scenario("files", "files", "download", "many files, nested folders", BOTH),
    Scenario("zarr", "zarr", "download", "one Zarr, output on disk", BOTH),
    Scenario("zarr-tmpfs", "zarr", "download", "one Zarr, output on tmpfs", ("loopback",),
             tmpfs=True),
    Scenario("zarr-small", "zarr-small", "download", "a smaller Zarr, with dandi-cli",
             ("loopback",)),
    Scenario("noop-files-refresh", "files", "refresh", "no-op re-run, -e refresh",
             ("loopback",), tree="own"),
    Scenario("noop-files-overwrite-different", "files", "overwrite-different",
             "no-op re-run, -e overwrite-different", ("loopback",), tree="own"),
    Scenario("noop-zarr-refresh", "zarr-small", "refresh", "no-op re-run, -e refresh",
             ("loopback",), tree="own"),
    Scenario("noop-zarr-overwrite-different", "zarr-small", "overwrite-different",
             "no-op re-run, -e overwrite-different", ("loopback",), tree="own"),
    Scenario("migration-files-refresh", "files", "refresh",
             "migration: -e refresh over dandi-cli's tree", ("loopback",), tree="dandi-cli"),
    Scenario("migration-files-overwrite-different", "files", "overwrite-different",
             "migration: -e overwrite-different over dandi-cli's tree", ("loopback",),
             tree="dandi-cli"),
    Scenario("slow-connection", "big", "download",
             "one large file, one connection in 16 crawls at 256 KiB/s", ("loopback",),
             crawl=True, tools=("dandiget", "aria2c"), cap=300),
    Scenario("plan", "plan", "plan", "listing/plan only", ("s3like",)),
    Scenario("first-file", "plan", "first-file", "time to the first file written",
             ("s3like",)),
]}
SMOKE_SCENARIOS = ("files", "zarr", "zarr-tmpfs", "noop-files-refresh",
                   "migration-files-refresh", "migration-files-overwrite-different", "plan",
                   "first-file")


@dataclass
class RunRecord:
    profile: str
    scenario: str
    tool: str
    rep: int
    status: str  # ok | FAILED | timeout | error
    returncode: int | None = None
    wall: float = 0.0
    cpu: float = 0.0
    peak_rss: int = 0
    expected_files: int = 0
    expected_bytes: int = 0
    ok_files: int = 0
    ok_bytes: int = 0
    problems: str = ""
    note: str = ""
    stdout: str = ""
    stderr: str = ""
    prime: bool = False  # an untimed setup run (the tree a re-run scenario starts from)
    round: int = 0  # 1-based round; tools run in a shuffled order within each round
    position: int = 0  # 1-based place of this run in its round's order
    first_file: float | None = None  # first-file: seconds until the first file was complete


@dataclass
class Tree:
    """A complete tree a re-run scenario starts from, and the HOME that made it."""

    out: Path  # the -o directory
    home: Path
    pristine: Path | None = None  # migration: dandi-cli's tree as made, copied for dandiget
    home_snapshot: Path | None = None  # migration: dandi-cli's HOME (cache) as made


@dataclass
class State:
    args: argparse.Namespace
    out: Path
    work: Path
    expected: dict
    rng: random.Random
    records: list[RunRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    trees: dict[tuple[str, str, str], Tree | None] = field(default_factory=dict)
    orders: list[dict] = field(default_factory=list)
    warmed: set[tuple[str, str, str, str]] = field(default_factory=set)
    tmpfs: Path | None = None
    nginx: Nginx | None = None  # the content host of the current profile
    corpus_root: Path | None = None

    def note(self, msg: str) -> None:
        if msg not in self.notes:
            self.notes.append(msg)
        print(f"NOTE: {msg}", flush=True)


def slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-").lower()


# --------------------------------------------------------------------------- running tools


def run_tool(st: State, tool: T.Tool, scen: Scenario, profile: str, archive: Archive,
             content_url: str, rep: int, out_dir: Path, home: Path, *,
             prime: bool = False, warmup: bool = False) -> RunRecord:
    """One run, measured and verified. ``prime``: the untimed download that makes a tree;
    ``warmup``: an untimed re-run of the scenario over it (``prime`` is set for both)."""
    did = corpus.DANDISETS[scen.dataset]
    exp = st.expected[did]
    prime = prime or warmup
    mode = scen.mode if warmup or not prime else "download"
    ctx = T.Ctx(api_url=archive.api_url, content_url=content_url, did=did,
                dataset=scen.dataset, files=exp["files"], out=out_dir, home=home, mode=mode)
    logs = st.out / "logs" / profile / scen.name
    logs.mkdir(parents=True, exist_ok=True)
    tag = f"warmup-{slug(scen.mode)}" if warmup else "prime" if prime else str(rep)
    base = f"{slug(tool.name)}-{tag}"
    rec = RunRecord(profile, scen.name, tool.name, rep, "ok", prime=prime,
                    expected_files=len(exp["files"]), expected_bytes=exp["bytes"],
                    stdout=str(logs / f"{base}.out"), stderr=str(logs / f"{base}.err"))
    cmd = tool.command(ctx)
    (logs / f"{base}.cmd").write_text(" ".join(cmd) + "\n")
    label = f"[{profile}] {scen.name} {tool.name}" + (f" ({tag})" if prime else f" #{rep + 1}")
    print(f"{label} ...", end=" ", flush=True)
    found: list[str] = []

    def first_file() -> bool:
        rel = first_expected_file(ctx.root, exp["files"])
        if rel is not None:
            found.append(rel)
        return rel is not None

    m = run_measured(cmd, env=tool.env(ctx), cwd=home, stdout=Path(rec.stdout),
                     stderr=Path(rec.stderr),
                     timeout=min(st.args.timeout, scen.cap) if scen.cap else st.args.timeout,
                     interval=0.02 if mode == "first-file" else 0.05,
                     stop_when=first_file if mode == "first-file" else None)
    rec.returncode, rec.wall, rec.cpu, rec.peak_rss = m.returncode, m.wall, m.cpu, m.peak_rss
    if mode == "plan":
        if m.timed_out:
            rec.status = "timeout"
        elif m.returncode != 0:
            rec.status = "FAILED"
            rec.problems = f"exit code {m.returncode}"
        rec.ok_files = count_listed(tool, Path(rec.stdout), rec.expected_files)
        if rec.status == "ok" and rec.ok_files < rec.expected_files:
            rec.status = "FAILED"
            rec.problems = f"listed {rec.ok_files} of {rec.expected_files} assets"
    elif mode == "first-file":
        if m.event is not None:
            rel = found[-1]
            v = verify_tree(ctx.root, {rel: exp["files"][rel]}, check_extra=False)
            rec.first_file, rec.ok_files, rec.ok_bytes = m.event, v.ok, v.ok_bytes
            if not v.complete:
                rec.status = "FAILED"
                rec.problems = f"first file {rel}: {v.problems()}"
        elif m.timed_out:
            rec.status = "timeout"
        else:
            rec.status = "FAILED"
            rec.problems = f"exited ({m.returncode}) before any file was complete"
    else:
        v = verify_tree(ctx.root, exp["files"])
        rec.ok_files, rec.ok_bytes = v.ok, v.ok_bytes
        rec.problems = v.problems()
        if m.timed_out:
            rec.status = "timeout"
        elif m.returncode != 0:
            rec.status = "FAILED"
            rec.problems = f"exit code {m.returncode}; " + rec.problems
        elif not v.complete:
            rec.status = "FAILED"
    shown = f"first file {rec.first_file:.2f}s" if rec.first_file is not None else \
        f"{rec.wall:.2f}s"
    print(f"{rec.status} {shown} cpu {rec.cpu:.1f}s rss {rec.peak_rss / 1e6:.0f}MB"
          + (f" ({rec.problems})" if rec.problems else ""), flush=True)
    return rec


def count_listed(tool: T.Tool, stdout: Path, expected: int) -> int:
    """How many assets a plan/listing run reported (dry-run ``planned`` events, ls records)."""
    n = 0
    try:
        with open(stdout, "rb") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(rec, dict):
                    continue
                if tool.kind == "dandi-cli":
                    n += "asset_id" in rec
                else:
                    n += (rec.get("event") == "planned"
                          and not str(rec.get("path", "")).endswith("dandiset.yaml"))
    except OSError:
        return 0
    return n


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def copy_tree(src: Path, dst: Path) -> None:
    """A copy with the same content and mtimes (``copy2``), nothing of dandiget's state."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns(".dandiget"))


def default_dandi_cli(tool_list: list[T.Tool]) -> T.Tool | None:
    for t in tool_list:
        if t.kind == "dandi-cli" and t.available and getattr(t, "jobs", None) is None:
            return t
    return None


def make_tree(st: State, maker: T.Tool, scen: Scenario, profile: str, archive: Archive,
              content_url: str) -> Tree | None:
    """A complete tree of ``scen.dataset`` downloaded by ``maker`` where the re-runs happen.

    Made by an untimed download ("prime") with a HOME that the re-runs keep: dandi-cli's
    digest cache stays where it would be for a user, and the tree is not moved (dandi-cli
    keys its cache by path). Migration trees also keep a pristine copy (for dandiget,
    which must find the tree as dandi-cli left it every time) and a snapshot of dandi-cli's
    HOME as the download left it (restored before each of its runs).
    """
    key = (profile, f"{scen.tree}:{maker.name}", scen.dataset)
    if key in st.trees:
        return st.trees[key]
    base = st.work / "trees" / slug(profile) / scen.tree / slug(maker.name) / scen.dataset
    out, home = fresh_dir(base / "out"), fresh_dir(base / "home")
    rec = run_tool(st, maker, scen, profile, archive, content_url, 0, out, home, prime=True)
    st.records.append(rec)
    tree: Tree | None = None
    if rec.status == "ok":
        tree = Tree(out, home)
        if scen.tree == "dandi-cli":
            tree.pristine = base / "pristine"
            copy_tree(out, tree.pristine)
            tree.home_snapshot = base / "home-snapshot"
            shutil.rmtree(tree.home_snapshot, ignore_errors=True)
            shutil.copytree(home, tree.home_snapshot, symlinks=True)
    else:
        st.note(f"[{profile}] {maker.name} could not make the {scen.dataset} tree for "
                f"{scen.name} ({rec.status}): {maker.name if scen.tree == 'own' else 'every tool'}"
                " skipped there")
    st.trees[key] = tree
    return tree


def prepare_run(st: State, tool: T.Tool, scen: Scenario, profile: str, archive: Archive,
                content_url: str, tool_list: list[T.Tool]) -> tuple[Path, Path] | None:
    """The -o directory and HOME of one timed run (made ready; None: cannot run)."""
    if scen.mode not in RERUN_MODES:
        base = st.tmpfs if scen.tmpfs and st.tmpfs else st.work
        return (fresh_dir(base / "out" / slug(tool.name)),
                fresh_dir(st.work / "home" / slug(tool.name)))
    if scen.tree == "own":
        tree = make_tree(st, tool, scen, profile, archive, content_url)
        return (tree.out, tree.home) if tree else None
    return migration_run(st, tool, scen, profile, archive, content_url, tool_list)


def warm_up(st: State, tool: T.Tool, scen: Scenario, profile: str, archive: Archive,
            content_url: str) -> None:
    """One untimed re-run of ``scen`` over ``tool``'s own tree before the timed ones.

    dandi-cli's download does not fill its digest cache; its first ``-e
    overwrite-different`` re-run hashes every file and caches the digests. dandiget's
    download records its state as it goes. The warm-up gives both what a user has on the
    second re-run: cache against cache.
    """
    key = (profile, tool.name, scen.dataset, scen.mode)
    tree = make_tree(st, tool, scen, profile, archive, content_url)
    if tree is None or key in st.warmed:
        return
    st.warmed.add(key)
    st.records.append(run_tool(st, tool, scen, profile, archive, content_url, 0, tree.out,
                               tree.home, warmup=True))


def migration_run(st: State, tool: T.Tool, scen: Scenario, profile: str, archive: Archive,
                  content_url: str, tool_list: list[T.Tool]) -> tuple[Path, Path] | None:
    """dandi-cli's tree as it made it, for one timed migration run of ``tool``."""
    maker = default_dandi_cli(tool_list)
    tree = make_tree(st, maker, scen, profile, archive, content_url) if maker else None
    if tree is None:
        return None
    assert tree.pristine is not None and tree.home_snapshot is not None
    if tool.kind == "dandi-cli":
        # Its tree in place, its cache as the download left it: what a user would have.
        shutil.rmtree(tree.home, ignore_errors=True)
        shutil.copytree(tree.home_snapshot, tree.home, symlinks=True)
        return tree.out, tree.home
    # A tree dandiget has never seen: dandi-cli's, as made, without any .dandiget/.
    out = st.work / "migration" / slug(profile) / slug(tool.name)
    copy_tree(tree.pristine, out)
    return out, fresh_dir(st.work / "home" / slug(tool.name))


def run_scenario(st: State, scen: Scenario, profile: str, archive: Archive,
                 content_url: str, tool_list: list[T.Tool]) -> None:
    applicable = [t for t in tool_list if t.available and t.applies(scen.dataset, scen.mode)
                  and (not scen.tools or t.name.split()[0] in scen.tools)]
    if scen.crawl and st.nginx is None:
        st.note(f"{scen.name}: needs nginx (the crawl is an nginx rule): not run")
        return
    if scen.tree == "dandi-cli" and default_dandi_cli(tool_list) is None:
        st.note(f"{scen.name}: no dandi-cli to make the tree: not run")
        return
    if scen.tmpfs and st.tmpfs is None:
        st.note(f"{scen.name}: /dev/shm is not available: not run")
        return
    if scen.tree == "own":  # trees and warm-ups first, so that no round waits on them
        for tool in applicable:
            warm_up(st, tool, scen, profile, archive, content_url)
    elif scen.tree == "dandi-cli":
        maker = default_dandi_cli(tool_list)
        if maker is not None:
            make_tree(st, maker, scen, profile, archive, content_url)
    for rnd in range(st.args.repeat):
        order = list(applicable)
        st.rng.shuffle(order)
        st.orders.append({"profile": profile, "scenario": scen.name, "round": rnd + 1,
                          "order": [t.name for t in order]})
        print(f"[{profile}] {scen.name} round {rnd + 1}/{st.args.repeat}: "
              + ", ".join(t.name for t in order), flush=True)
        for pos, tool in enumerate(order):
            if scen.crawl:  # a fresh connection counter: every run meets the same rule
                restart_nginx(st, crawl=True)
            where = prepare_run(st, tool, scen, profile, archive, content_url, tool_list)
            if where is None:
                st.note(f"[{profile}] {tool.name}: no complete tree for {scen.name}; skipped")
                continue
            out_dir, home = where
            rec = run_tool(st, tool, scen, profile, archive, content_url, rnd, out_dir, home)
            rec.round, rec.position = rnd + 1, pos + 1
            st.records.append(rec)
            if scen.crawl and st.nginx is not None:  # who crawled: nginx's access log
                with contextlib.suppress(OSError):
                    shutil.copy(st.nginx.tmp / crawl_mod.ACCESS_LOG, Path(rec.stderr).with_suffix(
                        ".access.log"))
            if scen.mode not in RERUN_MODES:
                shutil.rmtree(out_dir, ignore_errors=True)
                shutil.rmtree(home, ignore_errors=True)
    if scen.crawl:
        restart_nginx(st, crawl=False)


def restart_nginx(st: State, crawl: bool) -> None:
    """The profile's nginx again on the same port: with the crawl rule (``crawl.py``,
    which restarts its connection counter) or without it (the profile's own)."""
    assert st.nginx is not None and st.corpus_root is not None
    st.nginx = crawl_mod.restart(st.nginx, st.corpus_root, crawl)


def scenario_profiles(scen: Scenario, profiles: list[str]) -> list[str]:
    """Where ``scen`` runs in this run: its own profiles, else the run's first one."""
    return [p for p in scen.profiles if p in profiles] or profiles[:1]


# --------------------------------------------------------------------------- setup


def machine_info() -> dict:
    info: dict = {"nproc": os.cpu_count(), "python": platform.python_version(),
                  "kernel": platform.release()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["ram_gib"] = round(int(line.split()[1]) / 2**20, 1)
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                info["os"] = line.split("=", 1)[1].strip('"')
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Benchmark dandiget against dandi-cli, curl and aria2c (see BENCHMARKS.md)")
    ap.add_argument("--profiles", default=None,
                    help=f"comma-separated network profiles: {','.join(PROFILES)} "
                         "(default: both; --smoke: loopback); each scenario runs on its own "
                         "profiles among these, else on the first of these")
    ap.add_argument("--scenarios", default=None,
                    help=f"comma-separated: {','.join(SCENARIOS)} (default: all; --smoke: "
                         f"{','.join(SMOKE_SCENARIOS)})")
    ap.add_argument("--tools", default=None,
                    help="comma-separated: dandiget,dandi-cli,curl,aria2c (default: all; "
                         "--smoke: dandiget,dandi-cli,curl)")
    ap.add_argument("--repeat", type=int, default=None,
                    help=f"rounds: runs of every tool in every scenario (default {MIN_RUNS}, "
                         f"--smoke 2; verdicts need {MIN_RUNS})")
    ap.add_argument("--seed", type=int, default=None,
                    help="seed of the shuffled order of the tools in each round "
                         "(default: a random one, printed and recorded)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny corpus, two rounds, loopback only: a quick correctness check of "
                         "the harness (CI)")
    ap.add_argument("--out", type=Path, default=None,
                    help="results directory (default bench/results/<timestamp>)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="corpus cache (default $DANDIGET_BENCH_CACHE or "
                         "~/.cache/dandiget-bench)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where tools write (a temporary directory inside it; default $TMPDIR)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds before a tool run is stopped; a stopped run counts as no "
                         "run (default 1200; smoke 60)")
    ap.add_argument("--dandi-jobs", default="16:16",
                    help="the generous -J of the second dandi-cli configuration "
                         "(default 16:16; empty: only the default -J 6)")
    ap.add_argument("--content-server", choices=("nginx", "builtin"), default="nginx",
                    help="serve content with nginx (default) or the test archive's own "
                         "content host (loopback profile only; the fallback without nginx)")
    ap.add_argument("--no-install", action="store_true",
                    help="do not apt-get/pip install missing tools")
    args = ap.parse_args(argv)
    if args.smoke:
        args.kind = "smoke"
        args.profiles = args.profiles or "loopback"
        args.repeat = args.repeat or 2
        args.timeout = args.timeout or 60
    else:
        args.kind = "full"
        args.profiles = args.profiles or ",".join(PROFILES)
        args.repeat = args.repeat or MIN_RUNS
        args.timeout = args.timeout or 1200
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1_000_000)
    args.profile_list = [p for p in args.profiles.split(",") if p]
    for p in args.profile_list:
        if p not in PROFILES:
            ap.error(f"unknown profile {p!r}")
    names = (args.scenarios.split(",") if args.scenarios else
             list(SMOKE_SCENARIOS) if args.smoke else list(SCENARIOS))
    for n in names:
        if n not in SCENARIOS:
            ap.error(f"unknown scenario {n!r}")
    args.scenario_list = [SCENARIOS[n] for n in names]
    known = {"dandiget", "dandi-cli", "curl", "aria2c"}
    if args.tools:
        args.tool_set = set(args.tools.split(","))
        if args.tool_set - known:
            ap.error(f"unknown tools {sorted(args.tool_set - known)}")
    else:
        args.tool_set = {"dandiget", "dandi-cli", "curl"} if args.smoke else set(known)
    args.cache = args.cache or Path(os.environ.get("DANDIGET_BENCH_CACHE")
                                    or Path.home() / ".cache" / "dandiget-bench")
    if args.out is None:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        args.out = Path(__file__).resolve().parent / "results" / stamp
    # Absolute: tools run in their own working directory.
    args.out, args.cache = args.out.resolve(), args.cache.resolve()
    args.workdir = args.workdir.resolve() if args.workdir else None
    return args


def build_tools(args: argparse.Namespace, st_notes: list[str]) -> list[T.Tool]:
    tl: list[T.Tool] = [T.Dandiget(T.dandiget_binary())]
    if "dandi-cli" in args.tool_set:
        binary, why = T.dandi_binary(create=not args.no_install)
        tl.append(T.DandiCli(binary, None, why))
        if args.dandi_jobs and not args.smoke:
            tl.append(T.DandiCli(binary, args.dandi_jobs, why))
    if "curl" in args.tool_set:
        tl.append(T.Curl(shutil.which("curl")))
    if "aria2c" in args.tool_set:
        tl.append(T.Aria2c(shutil.which("aria2c")))
    for t in tl:
        if not t.available:
            st_notes.append(f"{t.name} not run: {t.why_unavailable}")
    return tl


def tool_versions(tool_list: list[T.Tool]) -> dict:
    v: dict = {}
    for t in tool_list:
        if not t.available:
            continue
        if isinstance(t, T.Dandiget):
            v["dandiget"] = T.tool_version([t.binary, "--version"])
        elif isinstance(t, T.DandiCli):
            v["dandi-cli"] = T.dandi_version(t.binary)
        elif isinstance(t, T.Curl):
            v["curl"] = T.tool_version([t.binary, "--version"])
        elif isinstance(t, T.Aria2c):
            v["aria2c"] = T.tool_version([t.binary, "--version"])
    nginx = nginx_binary()
    if nginx:
        v["nginx"] = T.tool_version([nginx, "-v"])
    return v


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "logs").mkdir(exist_ok=True)

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    notes: list[str] = []
    status = "complete"
    st: State | None = None
    try:
        need = {"nginx": "nginx"} if args.content_server == "nginx" else {}
        need["/usr/bin/time"] = "time"
        if "s3like" in args.profile_list:
            need[str(ECHO_MODULE)] = "libnginx-mod-http-echo"
        if "curl" in args.tool_set:
            need["curl"] = "curl"
        if "aria2c" in args.tool_set:
            need["aria2c"] = "aria2"
        have = (ensure_packages(need) if not args.no_install else
                {b: (Path(b).exists() if b.startswith("/") else bool(shutil.which(b)))
                 for b in need})
        use_nginx = have.get("nginx", False) and nginx_binary() is not None
        if args.content_server == "builtin":
            notes.append("--content-server builtin: content is served by the test archive's "
                         "own content host (aiohttp), loopback profile only")
        elif not use_nginx:
            notes.append("nginx could not be installed: content is served by the test "
                         "archive's own content host (aiohttp) instead, loopback profile only")
        if "s3like" in args.profile_list and not have.get(str(ECHO_MODULE), False):
            notes.append("the nginx echo module is missing: s3like has the 25 MB/s cap and the "
                         "API latency but no latency on the content host")
        tool_list = build_tools(args, notes)

        print(f"preparing the {args.kind} corpus in {args.cache} ...", flush=True)
        import subprocess

        prep = subprocess.run(
            [archive_python(), str(Path(__file__).resolve().parent / "archive_server.py"),
             "--kind", args.kind, "--cache", str(args.cache), "--prepare-only"],
            stdout=subprocess.PIPE, check=True, timeout=7200)
        prepared = json.loads(prep.stdout.decode().strip().splitlines()[-1])
        corpus_root = Path(prepared["corpus"])
        expected = json.loads(Path(prepared["expected"]).read_text())

        base = args.workdir or None
        if base:
            base.mkdir(parents=True, exist_ok=True)
        work = REGISTRY.tempdir("dandiget-bench-work-", base)
        print(f"seed of the run order: {args.seed} (--seed {args.seed} repeats it)", flush=True)
        st = State(args, args.out, work, expected, random.Random(args.seed), notes=notes)
        shm = Path("/dev/shm")
        if shm.is_dir() and os.access(shm, os.W_OK):
            st.tmpfs = REGISTRY.tempdir("dandiget-bench-tmpfs-", shm)
        profiles = args.profile_list if use_nginx else ["loopback"]
        args.profile_list = profiles
        for profile in profiles:
            scens = [s for s in args.scenario_list if profile in scenario_profiles(s, profiles)]
            if not scens:
                continue
            nginx = start_nginx(corpus_root, profile) if use_nginx else None
            st.nginx, st.corpus_root = nginx, corpus_root
            archive = start_archive(args.kind, args.cache, nginx.url if nginx else None,
                                    args.out / "logs" / f"archive-{profile}.log",
                                    api_cost="s3like" if profile == "s3like" else "none")
            content_url = nginx.url if nginx else archive.info["builtin_content_url"]
            print(f"== profile {profile}: API {archive.api_url}, content {content_url}",
                  flush=True)
            try:
                for scen in scens:
                    run_scenario(st, scen, profile, archive, content_url, tool_list)
            finally:
                REGISTRY.stop(archive.proc)
                if st.nginx:  # restart_nginx may have replaced the first one
                    REGISTRY.stop(st.nginx.proc)
    except KeyboardInterrupt:
        status = "interrupted"
        print("\ninterrupted: stopping every process and writing partial results", flush=True)
    finally:
        REGISTRY.cleanup()
    if st is None:
        return 130 if status == "interrupted" else 1
    elapsed = time.monotonic() - t_start
    meta = {
        "command": "python bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "status": status,
        "elapsed_s": round(elapsed, 1),
        "machine": machine_info(),
        "versions": tool_versions(tool_list),
        "kind": args.kind,
        "profiles": args.profile_list,
        "repeat": args.repeat,
        "min_runs": MIN_RUNS,
        "seed": args.seed,
        "orders": st.orders,
        "timeout_s": args.timeout,
        "api_cost": {"s3like": S3LIKE_API.describe(), "loopback": "none"},
        "corpus": {name: {"dandiset": did, "files": len(expected[did]["files"]),
                          "bytes": expected[did]["bytes"]}
                   for name, did in corpus.DANDISETS.items()},
        "scenarios": {s.name: {"dataset": s.dataset, "mode": s.mode, "title": s.title,
                               "tree": s.tree, "tmpfs": s.tmpfs, "crawl": s.crawl,
                               "cap_s": s.cap or None,
                               "profiles": scenario_profiles(s, args.profile_list)}
                      for s in args.scenario_list},
        "tools": {t.name: {"kind": t.kind, "available": t.available, **t.meta}
                  for t in tool_list},
        "notes": st.notes,
    }
    for r in st.records:
        if r.prime and r.status != "ok":
            st.notes.append(f"[{r.profile}] {r.scenario} {r.tool}: the untimed run that makes "
                            f"the tree ended {r.status}: {r.problems}")
    runs = [asdict(r) for r in st.records]
    summary = report.summarize(meta, runs)
    (args.out / "results.json").write_text(json.dumps(
        {"meta": meta, "summary": summary["rows"], "targets": summary["targets"],
         "runs": runs}, indent=1))
    charts = draw_charts(args, meta, runs, summary)
    md = report.markdown(meta, summary, charts)
    (args.out / "results.md").write_text(md)
    print("\n" + md)
    print(f"results: {args.out / 'results.md'} and results.json ({elapsed:.0f} s)")
    failed = [r for r in st.records if r.status in ("FAILED", "error") or (
        r.tool == "dandiget" and r.status == "timeout")]
    if failed:
        print(f"{len(failed)} run(s) FAILED:", file=sys.stderr)
        for r in failed:
            print(f"  [{r.profile}] {r.scenario} {r.tool}: {r.status} {r.problems}",
                  file=sys.stderr)
        return 1
    return 130 if status == "interrupted" else 0


def draw_charts(args: argparse.Namespace, meta: dict, runs: list[dict],
                summary: dict) -> list[str]:
    """PNG charts next to the results (matplotlib, installed on demand: the bench extra)."""
    if not charts_mod.ensure_matplotlib(install=not args.no_install):
        meta["notes"].append("matplotlib is not installed (pip install -e '.[bench]'): "
                             "no charts")
        return []
    paths = charts_mod.draw(meta, runs, summary["rows"], args.out)
    print("charts: " + ", ".join(str(p) for p in paths), flush=True)
    return [p.name for p in paths]


if __name__ == "__main__":
    sys.exit(main())
