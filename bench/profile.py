"""Profile dandiget on one benchmark scenario with py-spy and summarise where the time goes.

    python bench/profile.py [--scenario zarr] [--profile loopback] [--smoke] [--out DIR]

Starts nginx and the archive exactly as ``run.py`` does, runs
``py-spy record --format raw --subprocesses`` around ``dandiget download``, checks the tree,
and prints the top frames by own time and by total time (``--rate`` samples/s; py-spy is
installed into this interpreter's environment with pip when missing).
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus
import tools as T
from servers import REGISTRY, archive_python, start_archive, start_nginx
from verify import verify_tree

SCEN_DATASET = {"big": "big", "files": "files", "zarr": "zarr", "plan": "plan"}


def py_spy() -> str:
    exe = Path(sys.executable).parent / "py-spy"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    return str(exe)


def summarise(raw: Path, top: int) -> str:
    """Top frames of a py-spy ``raw`` (collapsed stacks) file, by own and by total samples."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    n = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        n += c
        frames = stack.split(";")
        threads[frames[0]] += c
        own[frames[-1]] += c
        for f in set(frames[1:]):
            total[f] += c
    out = [f"{n} samples", "", "by thread:"]
    out += [f"  {100 * c / n:5.1f}%  {f}" for f, c in threads.most_common(8)]
    out += ["", "own time (innermost frame):"]
    out += [f"  {100 * c / n:5.1f}%  {f}" for f, c in own.most_common(top)]
    out += ["", "total time (frame anywhere on the stack):"]
    out += [f"  {100 * c / n:5.1f}%  {f}" for f, c in total.most_common(top)]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", choices=sorted(SCEN_DATASET), default="zarr")
    ap.add_argument("--profile", choices=("loopback", "s3like"), default="loopback")
    ap.add_argument("--smoke", action="store_true", help="the tiny corpus")
    ap.add_argument("--tmpfs", action="store_true", help="the output on /dev/shm")
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--idle", action="store_true", help="count idle (waiting) samples too")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "dandiget-bench")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results"
                    / "profile")
    args = ap.parse_args()
    kind = "smoke" if args.smoke else "full"
    args.out.mkdir(parents=True, exist_ok=True)
    spy = py_spy()
    try:
        prep = subprocess.run([archive_python(), str(Path(__file__).parent / "archive_server.py"),
                               "--kind", kind, "--cache", str(args.cache), "--prepare-only"],
                              stdout=subprocess.PIPE, check=True)
        prepared = json.loads(prep.stdout.decode().strip().splitlines()[-1])
        expected = json.loads(Path(prepared["expected"]).read_text())
        nginx = start_nginx(Path(prepared["corpus"]), args.profile)
        archive = start_archive(kind, args.cache, nginx.url, args.out / "archive.log",
                                api_cost="s3like" if args.profile == "s3like" else "none")
        did = corpus.DANDISETS[SCEN_DATASET[args.scenario]]
        work = REGISTRY.tempdir("dandiget-bench-profile-",
                                Path("/dev/shm") if args.tmpfs else None)
        dl = T.Dandiget(T.dandiget_binary())
        ctx = T.Ctx(archive.api_url, nginx.url, did, args.scenario, expected[did]["files"],
                    work / "out", work, "plan" if args.scenario == "plan" else "download")
        ctx.out.mkdir()
        raw = args.out / f"dandiget-{args.scenario}-{args.profile}.txt"
        cmd = [spy, "record", "--format", "raw", "--rate", str(args.rate), "--subprocesses",
               "--output", str(raw), *(["--idle"] if args.idle else []), "--",
               *dl.command(ctx)]
        print(" ".join(cmd), flush=True)
        with open(args.out / "dandiget.out", "wb") as so:
            subprocess.run(cmd, check=True, stdout=so, env=dl.env(ctx), cwd=work)
        if args.scenario != "plan":
            v = verify_tree(ctx.root, expected[did]["files"])
            print(f"tree: {v.ok}/{v.expected} files verified {v.problems()}")
        text = summarise(raw, args.top)
        (args.out / f"summary-{args.scenario}-{args.profile}.txt").write_text(text + "\n")
        print(text)
    finally:
        REGISTRY.cleanup()
        shutil.rmtree(args.out / "tmp", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
