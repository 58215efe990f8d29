"""What the live display costs: the same Zarr download with ``-f pyout`` in a pseudo-terminal
and with ``-f json`` (piped), alternating runs, medians compared.

    python bench/display_cost.py [--entries 20000] [--repeat 3]

Target (issue "Progress, output formats"): the live table costs less than 10% more wall
time than JSON lines. Run it on a quiet machine: background load swamps the difference.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DANDIGET = [sys.executable, "-m", "dandiget.cli"]


def start_archive(entries: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "dandiget.testing", "serve", "--scale-zarr",
                             str(entries), "--zarr-entry-size", "16384"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("READY "):
            return proc, json.loads(line[6:])["api_url"]
    raise RuntimeError("test archive did not start")


def run_json(url: str, out: Path) -> float:
    t = time.perf_counter()
    r = subprocess.run([*DANDIGET, "download", url, "-o", str(out), "-f", "json"],
                       capture_output=True)
    assert r.returncode == 0, r.stderr[-500:]
    return time.perf_counter() - t


def run_pyout_in_pty(url: str, out: Path) -> float:
    t = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(DANDIGET[0], [*DANDIGET, "download", url, "-o", str(out), "-f", "pyout"],
                   {**os.environ, "COLUMNS": "160"})
    while True:
        try:
            if not os.read(fd, 65536):
                break
        except OSError:
            break
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entries", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    server, api = start_archive(args.entries)
    url = f"{api}/dandisets/000101/"
    times: dict[str, list[float]] = {"pyout (pty)": [], "json": []}
    try:
        for _ in range(args.repeat):
            for name, fn in (("pyout (pty)", run_pyout_in_pty), ("json", run_json)):
                out = Path(tempfile.mkdtemp(prefix="dandiget-display-"))
                try:
                    times[name].append(fn(url, out))
                finally:
                    shutil.rmtree(out, ignore_errors=True)
    finally:
        server.terminate()
        server.wait()
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["pyout (pty)"] / med["json"]
    print(f"Zarr of {args.entries} entries x 16 KiB, {args.repeat} runs each, alternating")
    for k, v in times.items():
        print(f"  {k:12} median {med[k]:.2f} s  runs {', '.join(f'{x:.2f}' for x in v)}")
    verdict = "met" if ratio < 1.10 else "MISSED"
    print(f"  pyout / json = {ratio:.3f} ({verdict}: the live table may cost at most 10% more)")


if __name__ == "__main__":
    main()
