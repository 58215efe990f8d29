"""dandiget benchmark: same data, same server, same machine, several tools in one run.

    python bench/run.py [--profiles loopback,s3like] [--scenarios big,files,zarr,...]
                        [--tools dandiget,dandi-cli,curl,aria2c] [--repeat 3]
                        [--smoke] [--out DIR]

Generates (once, cached) the corpus, serves it with nginx under a network profile and the
test archive's API in its own process, runs every tool on every scenario ``--repeat``
times, verifies every file of every output tree against the archive's digests (a wrong or
incomplete tree marks that run FAILED), and writes ``results.md`` and ``results.json``
to ``--out``. Exits 1 when any run FAILED. See BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus
import report
import tools as T
from measure import run_measured
from servers import (
    ECHO_MODULE,
    REGISTRY,
    Archive,
    archive_python,
    ensure_packages,
    nginx_binary,
    start_archive,
    start_nginx,
)
from verify import verify_tree

PROFILES = ("loopback", "s3like")


@dataclass(frozen=True)
class Scenario:
    name: str
    dataset: str
    mode: str  # download | refresh | overwrite-different | plan
    title: str
    all_profiles: bool  # False: run on one profile only (no content transfer expected)


SCENARIOS = {s.name: s for s in [
    Scenario("big", "big", "download", "one large file", True),
    Scenario("files", "files", "download", "many files, nested folders", True),
    Scenario("zarr", "zarr", "download", "one Zarr", True),
    Scenario("noop-files-refresh", "files", "refresh", "no-op re-run, -e refresh", False),
    Scenario("noop-files-overwrite-different", "files", "overwrite-different",
             "no-op re-run, -e overwrite-different", False),
    Scenario("noop-zarr-refresh", "zarr", "refresh", "no-op re-run, -e refresh", False),
    Scenario("noop-zarr-overwrite-different", "zarr", "overwrite-different",
             "no-op re-run, -e overwrite-different", False),
    Scenario("plan", "plan", "plan", "listing/plan only", False),
]}


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
    prime: bool = False  # an untimed setup run (a complete copy for a no-op scenario)


@dataclass
class State:
    args: argparse.Namespace
    out: Path
    work: Path
    expected: dict
    records: list[RunRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    copies: dict[tuple[str, str], Path] = field(default_factory=dict)
    copy_notes: dict[tuple[str, str], str] = field(default_factory=dict)
    skip_repeats: set[tuple[str, str, str]] = field(default_factory=set)

    def note(self, msg: str) -> None:
        if msg not in self.notes:
            self.notes.append(msg)
        print(f"NOTE: {msg}", flush=True)


def slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-").lower()


# --------------------------------------------------------------------------- running tools


def run_tool(st: State, tool: T.Tool, scen: Scenario, profile: str, archive: Archive,
             content_url: str, rep: int, out_dir: Path, *, prime: bool = False) -> RunRecord:
    did = corpus.DANDISETS[scen.dataset]
    exp = st.expected[did]
    mode = "download" if prime else scen.mode
    home = st.work / "home" / slug(tool.name)
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    ctx = T.Ctx(api_url=archive.api_url, content_url=content_url, did=did,
                dataset=scen.dataset, files=exp["files"], out=out_dir, home=home, mode=mode)
    logs = st.out / "logs" / profile / scen.name
    logs.mkdir(parents=True, exist_ok=True)
    base = f"{slug(tool.name)}-{'prime' if prime else rep}"
    rec = RunRecord(profile, scen.name, tool.name, rep, "ok", prime=prime,
                    expected_files=len(exp["files"]), expected_bytes=exp["bytes"],
                    stdout=str(logs / f"{base}.out"), stderr=str(logs / f"{base}.err"))
    timeout = st.args.noop_timeout if mode in ("refresh", "overwrite-different") else \
        st.args.timeout
    cmd = tool.command(ctx)
    (logs / f"{base}.cmd").write_text(" ".join(cmd) + "\n")
    label = f"[{profile}] {scen.name} {tool.name}" + (" (prime)" if prime else f" #{rep + 1}")
    print(f"{label} ...", end=" ", flush=True)
    m = run_measured(cmd, env=tool.env(ctx), cwd=home, stdout=Path(rec.stdout),
                     stderr=Path(rec.stderr), timeout=timeout)
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
    print(f"{rec.status} {rec.wall:.2f}s cpu {rec.cpu:.1f}s rss {rec.peak_rss / 1e6:.0f}MB"
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


def copy_tree_without_state(src: Path, dst: Path) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns(".dandiget"))


def ensure_copy(st: State, tool: T.Tool, scen: Scenario, profile: str, archive: Archive,
                content_url: str) -> Path | None:
    """A complete local copy of the scenario's dandiset as ``tool`` itself produced it.

    Taken from the tool's last verified download in this run, else made by an untimed
    "prime" run of the tool; when the tool cannot produce one (timeout, failure), a copy of
    dandiget's tree without its state directory is used, and the table says so.
    """
    key = (tool.name, scen.dataset)
    if key in st.copies:
        return st.copies[key]
    dest = st.work / "copies" / slug(tool.name) / scen.dataset
    # A download of this dataset that already failed or hit the cap in this run would do
    # the same again: go straight to the fallback.
    tried = [r for r in st.records if r.tool == tool.name and r.profile == profile
             and not r.prime and SCENARIOS[r.scenario].dataset == scen.dataset
             and SCENARIOS[r.scenario].mode == "download"]
    if not tried:
        fresh_dir(dest)
        rec = run_tool(st, tool, scen, profile, archive, content_url, 0, dest, prime=True)
        st.records.append(rec)
        if rec.status == "ok":
            st.copies[key] = dest
            return dest
    shutil.rmtree(dest, ignore_errors=True)
    base = st.copies.get(("dandiget", scen.dataset))
    if tool.kind == "dandiget" or base is None:
        return None
    copy_tree_without_state(base, dest)
    st.copies[key] = dest
    st.copy_notes[key] = ("its own download did not complete, so it re-ran over a copy of "
                          "dandiget's verified tree (without dandiget's state directory)")
    return dest


def run_scenario(st: State, scen: Scenario, profile: str, archive: Archive,
                 content_url: str, tool_list: list[T.Tool]) -> None:
    applicable = [t for t in tool_list if t.available and t.applies(scen.dataset, scen.mode)]
    keep_copies = scen.mode == "download" and profile == st.args.noop_profile and any(
        s.dataset == scen.dataset and s.mode in ("refresh", "overwrite-different")
        for s in st.args.scenario_list)
    for rep in range(st.args.repeat):
        for tool in applicable:
            key = (profile, scen.name, tool.name)
            if key in st.skip_repeats:
                continue
            if scen.mode in ("refresh", "overwrite-different"):
                out_dir = ensure_copy(st, tool, scen, profile, archive, content_url)
                if out_dir is None:
                    st.note(f"{tool.name}: no complete copy for {scen.name}; skipped")
                    st.skip_repeats.add(key)
                    continue
            else:
                out_dir = fresh_dir(st.work / "out" / slug(tool.name))
            rec = run_tool(st, tool, scen, profile, archive, content_url, rep, out_dir)
            note = st.copy_notes.get((tool.name, scen.dataset))
            if scen.mode in ("refresh", "overwrite-different") and note:
                rec.note = note
            st.records.append(rec)
            if rec.status == "timeout" or rec.wall > st.args.slow:
                st.skip_repeats.add(key)  # bounded run time: slow runs are not repeated
            if scen.mode == "download":
                if keep_copies and rec.status == "ok":
                    dest = st.work / "copies" / slug(tool.name) / scen.dataset
                    shutil.rmtree(dest, ignore_errors=True)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    out_dir.rename(dest)
                    st.copies[(tool.name, scen.dataset)] = dest
                else:
                    shutil.rmtree(out_dir, ignore_errors=True)


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
                         "(default: both; --smoke: loopback)")
    ap.add_argument("--scenarios", default=None,
                    help=f"comma-separated: {','.join(SCENARIOS)} (default: all)")
    ap.add_argument("--tools", default=None,
                    help="comma-separated: dandiget,dandi-cli,curl,aria2c (default: all; "
                         "--smoke: dandiget,curl)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per tool (default 3)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny corpus, one repeat, loopback only: a quick correctness check")
    ap.add_argument("--out", type=Path, default=None,
                    help="results directory (default bench/results/<timestamp>)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="corpus cache (default $DANDIGET_BENCH_CACHE or "
                         "~/.cache/dandiget-bench)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="where tools write (a temporary directory inside it; default $TMPDIR)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds before a tool run is stopped (default 1200; smoke 60)")
    ap.add_argument("--noop-timeout", type=float, default=None,
                    help="the same for no-op re-runs (default: --timeout); a re-run stopped "
                         "there still gives a lower bound of dandiget's advantage")
    ap.add_argument("--slow", type=float, default=300,
                    help="a run longer than this many seconds is not repeated (default 300)")
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
        args.repeat = args.repeat or 1
        args.timeout = args.timeout or 60
    else:
        args.kind = "full"
        args.profiles = args.profiles or ",".join(PROFILES)
        args.repeat = args.repeat or 3
        args.timeout = args.timeout or 1200
    args.noop_timeout = args.noop_timeout or args.timeout
    args.profile_list = [p for p in args.profiles.split(",") if p]
    for p in args.profile_list:
        if p not in PROFILES:
            ap.error(f"unknown profile {p!r}")
    names = args.scenarios.split(",") if args.scenarios else list(SCENARIOS)
    for n in names:
        if n not in SCENARIOS:
            ap.error(f"unknown scenario {n!r}")
    args.scenario_list = [SCENARIOS[n] for n in names]
    args.noop_profile = "loopback" if "loopback" in args.profile_list else args.profile_list[0]
    known = {"dandiget", "dandi-cli", "curl", "aria2c"}
    if args.tools:
        args.tool_set = set(args.tools.split(","))
        if args.tool_set - known:
            ap.error(f"unknown tools {sorted(args.tool_set - known)}")
    else:
        args.tool_set = {"dandiget", "curl"} if args.smoke else set(known)
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
            notes.append("the nginx echo module is missing: s3like has the 25 MB/s cap but no "
                         "added latency")
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
        st = State(args, args.out, work, expected, notes=notes)
        profiles = args.profile_list if use_nginx else ["loopback"]
        if args.noop_profile not in profiles:
            args.noop_profile = profiles[0]
        for profile in profiles:
            scens = [s for s in args.scenario_list
                     if s.all_profiles or profile == args.noop_profile]
            if not scens:
                continue
            nginx = start_nginx(corpus_root, profile) if use_nginx else None
            archive = start_archive(args.kind, args.cache, nginx.url if nginx else None,
                                    args.out / "logs" / "archive.log")
            content_url = nginx.url if nginx else archive.info["builtin_content_url"]
            print(f"== profile {profile}: API {archive.api_url}, content {content_url}",
                  flush=True)
            try:
                for scen in scens:
                    run_scenario(st, scen, profile, archive, content_url, tool_list)
            finally:
                REGISTRY.stop(archive.proc)
                if nginx:
                    REGISTRY.stop(nginx.proc)
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
        "noop_profile": args.noop_profile,
        "repeat": args.repeat,
        "timeout_s": args.timeout,
        "noop_timeout_s": args.noop_timeout,
        "slow_s": args.slow,
        "corpus": {name: {"dandiset": did, "files": len(expected[did]["files"]),
                          "bytes": expected[did]["bytes"]}
                   for name, did in corpus.DANDISETS.items()},
        "scenarios": {s.name: {"dataset": s.dataset, "mode": s.mode, "title": s.title}
                      for s in args.scenario_list},
        "tools": {t.name: {"kind": t.kind, "available": t.available, **t.meta}
                  for t in tool_list},
        "notes": st.notes,
    }
    for r in st.records:
        if r.prime and r.status != "ok":
            st.notes.append(f"[{r.profile}] {r.scenario} {r.tool}: the untimed run that makes "
                            f"its complete copy ended {r.status}: {r.problems}")
    runs = [asdict(r) for r in st.records]
    summary = report.summarize(meta, runs)
    (args.out / "results.json").write_text(json.dumps(
        {"meta": meta, "summary": summary["rows"], "targets": summary["targets"],
         "runs": runs}, indent=1))
    md = report.markdown(meta, summary)
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


if __name__ == "__main__":
    sys.exit(main())
