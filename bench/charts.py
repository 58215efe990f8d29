"""Charts of a benchmark run: throughput and CPU seconds per GiB, per tool and scenario.

    python bench/charts.py RESULTS_DIR/results.json

One panel per scenario and profile, one bar per tool: the bar is the median of the
verified runs, the whisker spans their minimum to maximum. Writes ``throughput.png`` and
``cpu_per_gib.png`` next to ``results.json`` (matplotlib: ``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import importlib.util
import math
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

GiB = float(1 << 30)
COLOURS = {"dandiget": "#1f77b4", "dandi-cli": "#ff7f0e", "curl": "#7f7f7f",
           "aria2c": "#2ca02c"}


def ensure_matplotlib(install: bool) -> bool:
    """True when matplotlib can be imported, installing it with pip when ``install``."""
    if importlib.util.find_spec("matplotlib") is not None:
        return True
    if not install:
        return False
    print("installing matplotlib (the bench extra) with pip ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib>=3.7"],
                       check=True, timeout=900)
    except (OSError, subprocess.SubprocessError):
        return False
    importlib.invalidate_caches()
    return importlib.util.find_spec("matplotlib") is not None


def _unit(meta: dict, scenario: str) -> tuple[str, bool]:
    """What a panel plots per run, and whether higher is better."""
    s = meta["scenarios"][scenario]
    if s["mode"] == "first-file":
        return "seconds to the first file (lower is better)", False
    if s["mode"] == "plan":
        return "assets/s", True
    if s["dataset"] == "big":
        return "MB/s", True
    return "files/s", True


def _per_run(meta: dict, scenario: str, r: dict) -> float | None:
    s = meta["scenarios"][scenario]
    if s["mode"] == "first-file":
        return r.get("first_file")
    if not r["wall"]:
        return None
    if s["dataset"] == "big":
        return float(r["expected_bytes"]) / 1e6 / r["wall"]
    return float(r["expected_files"]) / r["wall"]


def _panels(runs: list[dict]) -> dict[tuple[str, str], dict[str, list[dict]]]:
    panels: dict[tuple[str, str], dict[str, list[dict]]] = {}
    for r in runs:
        if r["prime"] or r["status"] != "ok":
            continue
        panels.setdefault((r["profile"], r["scenario"]), {}).setdefault(r["tool"], []).append(r)
    return panels


def _family(meta: dict, tool: str) -> str:
    kind = meta["tools"].get(tool, {}).get("kind")
    return "dandi-cli" if kind == "dandi-cli" else tool.split()[0]


def _colour(meta: dict, tool: str) -> str:
    return COLOURS.get(_family(meta, tool), "#9467bd")


def _rank(meta: dict, tool: str) -> int:
    order = list(COLOURS)
    fam = _family(meta, tool)
    return order.index(fam) if fam in order else len(order)


def _figure(meta: dict, panels: dict[tuple[str, str], dict[str, list[dict]]], value: Any,
            unit: Any, title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(panels)
    cols = min(3, max(1, len(keys)))
    rows = max(1, math.ceil(len(keys) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 0.6 + 2.1 * rows),
                             squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        profile, scenario = key
        tools = sorted(panels[key], key=lambda t: (_rank(meta, t), t))
        meds, lo, hi = [], [], []
        for tool in tools:
            vals = [v for r in panels[key][tool] if (v := value(scenario, r)) is not None]
            med = statistics.median(vals) if vals else 0.0
            meds.append(med)
            lo.append(med - min(vals) if vals else 0.0)
            hi.append(max(vals) - med if vals else 0.0)
        y = range(len(tools))
        ax.barh(list(y), meds, xerr=[lo, hi], capsize=3,
                color=[_colour(meta, t) for t in tools], alpha=0.9)
        ax.set_yticks(list(y), [f"{t} ({len(panels[key][t])})" for t in tools], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{scenario} [{profile}]", fontsize=9)
        ax.set_xlabel(unit(scenario), fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(f"{title}: bar = median, whisker = min\u2013max, (n) = verified runs; "
                 f"{meta['kind']} corpus, {meta['date']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw(meta: dict, runs: list[dict], rows: list[dict], out: Path) -> list[Path]:
    """Write the charts of one run into ``out``; returns their paths."""
    panels = _panels(runs)
    if not panels:
        return []
    paths = [_figure(meta, panels, lambda s, r: _per_run(meta, s, r),
                     lambda s: _unit(meta, s)[0], "Throughput per tool and scenario",
                     out / "throughput.png")]
    cpu_panels = {k: v for k, v in panels.items()
                  if meta["scenarios"][k[1]]["mode"] != "first-file"}
    if cpu_panels:
        paths.append(_figure(
            meta, cpu_panels,
            lambda s, r: r["cpu"] / (r["expected_bytes"] / GiB) if r["expected_bytes"] else None,
            lambda s: "CPU seconds per GiB (lower is better)",
            "CPU seconds per GiB of content", out / "cpu_per_gib.png"))
    return paths


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results_json", type=Path)
    args = ap.parse_args(argv)
    if not ensure_matplotlib(install=False):
        print("matplotlib is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 1
    data = json.loads(args.results_json.read_text())
    for p in draw(data["meta"], data["runs"], data.get("summary", []),
                  args.results_json.parent):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
