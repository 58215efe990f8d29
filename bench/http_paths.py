"""Candidate HTTP paths for many small objects, side by side (issue 15: "compare candidate
HTTP paths ... and choose by the numbers").

    python bench/http_paths.py [--dataset files|zarr] [--out-dir /dev/shm] [--repeat 3]

Every candidate downloads the same objects from the same nginx (the benchmark corpus, the
``loopback`` profile) into a temporary name, hashes every byte with md5, checks the digest
against the corpus and renames to the final path, which is what dandiget must do per object.
``curl --parallel`` writes without hashing (the machine's limit, as in ``run.py``). Prints
wall and CPU seconds (user + system, children included) per candidate and run, in an order
shuffled per round.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus
from servers import REGISTRY, start_nginx

DATASET = {"files": "000002", "zarr": "000003"}
Job = tuple[str, str, str]  # url, final path, md5 hex or one-part dandi-etag


def matches(h: Any, want: str) -> bool:
    if want.endswith("-1"):
        return hashlib.md5(h.digest()).hexdigest() + "-1" == want
    return bool(h.hexdigest() == want)


def jobs_for(root: Path, expected: dict[str, Any], did: str, base: str, out: Path) -> list[Job]:
    files = expected[did]["files"]
    jobs = []
    for rel, (_size, kind, digest, key) in files.items():
        if kind == "md5" or digest.endswith("-1"):  # one part: the etag is md5(md5)-1
            jobs.append((f"{base}/{key}", str(out / rel), digest))
    return jobs


def make_dirs(jobs: list[Job]) -> None:
    for d in {os.path.dirname(p) for _u, p, _m in jobs}:
        os.makedirs(d, exist_ok=True)


# --------------------------------------------------------------------------- candidates


def run_curl_cli(jobs: list[Job], conc: int) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".curlrc", delete=False) as f:
        for url, path, _m in jobs:
            f.write(f'url = "{url}"\noutput = "{path}"\n')
    subprocess.run(["curl", "--parallel", "--parallel-max", str(conc), "--create-dirs",
                    "--fail", "--silent", "--show-error", "--config", f.name], check=True)
    os.unlink(f.name)


def run_aiohttp(jobs: list[Job], conc: int) -> None:
    import aiohttp

    async def main() -> None:
        conn = aiohttp.TCPConnector(limit=conc)
        async with aiohttp.ClientSession(connector=conn, auto_decompress=False) as s:
            it = iter(jobs)

            async def worker() -> None:
                for url, path, md5 in it:
                    tmp = path + ".part"
                    h = hashlib.md5()
                    async with s.get(url) as r:
                        r.raise_for_status()
                        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                        try:
                            async for chunk in r.content.iter_chunked(1 << 20):
                                h.update(chunk)
                                os.write(fd, chunk)
                        finally:
                            os.close(fd)
                    if not matches(h, md5):
                        raise RuntimeError(f"md5 mismatch {url}")
                    os.rename(tmp, path)

            await asyncio.gather(*(worker() for _ in range(conc)))

    make_dirs(jobs)
    asyncio.run(main())


def run_pycurl(jobs: list[Job], conc: int) -> None:
    import pycurl

    make_dirs(jobs)
    multi = pycurl.CurlMulti()
    free = []
    for _ in range(conc):
        c = pycurl.Curl()
        c.setopt(pycurl.NOSIGNAL, 1)
        c.setopt(pycurl.FAILONERROR, 1)
        free.append(c)
    pending = iter(jobs)
    active = 0

    def start(c: Any, job: Job) -> None:
        url, path, _md5 = job
        tmp = path + ".part"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        h = hashlib.md5()

        def write(data: bytes) -> None:
            h.update(data)
            os.write(fd, data)

        c.job = (job, fd, h, tmp)
        c.setopt(pycurl.URL, url)
        c.setopt(pycurl.WRITEFUNCTION, write)
        multi.add_handle(c)

    def finish(c: Any, err: str | None) -> None:
        (url, path, md5), fd, h, tmp = c.job
        os.close(fd)
        if err or not matches(h, md5):
            raise RuntimeError(f"{url}: {err or 'md5 mismatch'}")
        os.rename(tmp, path)

    while free:
        job = next(pending, None)
        if job is None:
            break
        start(free.pop(), job)
        active += 1
    while active:
        while True:
            ret, _n = multi.perform()
            if ret != pycurl.E_CALL_MULTI_PERFORM:
                break
        while True:
            queued, ok, failed = multi.info_read()
            for c in ok:
                multi.remove_handle(c)
                finish(c, None)
                active -= 1
                job = next(pending, None)
                if job is not None:
                    start(c, job)
                    active += 1
            for c, _errno, msg in failed:
                multi.remove_handle(c)
                finish(c, msg)
            if not queued:
                break
        if active:
            multi.select(1.0)


def in_processes(fn: Any, n: int) -> Any:
    def run(jobs: list[Job], conc: int) -> None:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(n) as ex:
            list(ex.map(fn, [jobs[i::n] for i in range(n)], [conc // n] * n))
    return run


CANDIDATES = {
    "curl --parallel (no hash)": run_curl_cli,
    "aiohttp, 1 process": run_aiohttp,
    "aiohttp, 2 processes": in_processes(run_aiohttp, 2),
    "pycurl multi, 1 process": run_pycurl,
    "pycurl multi, 2 processes": in_processes(run_pycurl, 2),
}


def cpu() -> float:
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=sorted(DATASET), default="files")
    ap.add_argument("--out-dir", default=None, help="where to write (default: a temp dir)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--only", default="", help="comma-separated candidate name prefixes")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.randrange(1_000_000)
    print(f"seed {seed}")
    rng = random.Random(seed)
    root = Path.home() / ".cache/dandiget-bench" / f"corpus-full-{corpus.spec_hash('full')}"
    if not (root / "expected.json").exists():
        sys.exit(f"no corpus at {root}: run bench/run.py once first")
    expected = json.loads((root / "expected.json").read_text())
    nginx = start_nginx(root, "loopback")
    names = [n for n in CANDIDATES if not a.only or any(
        n.startswith(p) for p in a.only.split(","))]
    times: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    try:
        for rnd in range(a.repeat):
            order = names[:]
            rng.shuffle(order)
            for name in order:
                out = Path(tempfile.mkdtemp(prefix="http-paths-", dir=a.out_dir))
                jobs = jobs_for(root, expected, DATASET[a.dataset], nginx.url, out)
                c0, t0 = cpu(), time.perf_counter()
                CANDIDATES[name](jobs, a.concurrency)
                wall, used = time.perf_counter() - t0, cpu() - c0
                n_ok = sum(1 for _u, p, _m in jobs if os.path.getsize(p) >= 0)
                shutil.rmtree(out)
                times[name].append((wall, used))
                print(f"round {rnd + 1}: {name:28s} {wall:6.2f} s wall {used:6.2f} s CPU "
                      f"({n_ok} objects)", flush=True)
    finally:
        REGISTRY.cleanup()
    print("\nmedian wall s (spread), median CPU s")
    for name in names:
        w = [t for t, _c in times[name]]
        c = [c for _t, c in times[name]]
        print(f"  {name:28s} {statistics.median(w):6.2f} ({min(w):.2f}-{max(w):.2f})  "
              f"{statistics.median(c):6.2f}")


if __name__ == "__main__":
    main()
