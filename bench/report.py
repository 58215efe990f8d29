"""Aggregate runs into medians and spreads, compare tools, judge the targets, write markdown.

A verdict is given only when dandiget and the reference tool each have at least
``meta["min_runs"]`` (3) verified runs in that scenario and profile, on the full corpus; a
run stopped at the time cap counts as no run (nothing is extrapolated).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

MB = 1e6
GiB = float(1 << 30)
GE = "\u2265"
DASH = "\u2013"


@dataclass(frozen=True)
class Target:
    label: str
    scenario: str
    profile: str | None  # None: wherever the scenario ran
    reference: str | None  # first word of a tool's name, "dandi-cli" (any -J); None: absolute
    threshold: float  # minimum ratio (reference's time / dandiget's), or maximum seconds


#: The targets of issue 15, in its order.
TARGETS: list[Target] = [
    Target("1,000 x 1 MiB, loopback: \u22650.8x curl --parallel", "files", "loopback", "curl",
           0.8),
    Target("1,000 x 1 MiB, s3like, dandiget without -J: \u22650.8x curl --parallel", "files",
           "s3like", "curl", 0.8),
    Target("Zarr 50,000 x 16 KiB, output on disk: \u22650.9x curl --parallel", "zarr",
           "loopback", "curl", 0.9),
    Target("Zarr 50,000 x 16 KiB, output on tmpfs: \u22650.9x curl --parallel", "zarr-tmpfs",
           "loopback", "curl", 0.9),
    Target("2 GiB, s3like: \u22651.0x aria2c -x16", "big", "s3like", "aria2c", 1.0),
    Target("2 GiB, loopback: \u22651.0x aria2c -x16", "big", "loopback", "aria2c", 1.0),
    Target("2 GiB, one connection in 16 crawling (issue 13): \u22651.0x aria2c -x16",
           "slow-connection", "loopback", "aria2c", 1.0),
    Target("plan of 100,000 assets, API with latency: \u22652x dandi ls -r", "plan", "s3like",
           "dandi-cli", 2.0),
    Target("migration no-op (-e refresh), 1,000 x 1 MiB: \u22651.8x dandi-cli",
           "migration-files-refresh", None, "dandi-cli", 1.8),
    Target("migration no-op (-e overwrite-different), 1,000 x 1 MiB: \u22651.8x dandi-cli",
           "migration-files-overwrite-different", None, "dandi-cli", 1.8),
    Target("time to first file written, 100,000 assets, API with latency: < 2 s",
           "first-file", "s3like", None, 2.0),
]
RSS_LIMIT = 150 * MB


def _tool_kind(meta: dict, tool: str) -> str:
    return str(meta["tools"].get(tool, {}).get("kind", "?"))


def _ref_matches(meta: dict, tool: str, ref: str) -> bool:
    if ref == "dandi-cli":
        return _tool_kind(meta, tool) == "dandi-cli"
    return tool.split()[0] == ref


def run_value(r: dict, mode: str) -> float:
    """What a run measures: seconds to the first file (first-file), else wall seconds."""
    if mode == "first-file":
        return float(r["first_file"]) if r.get("first_file") is not None else float(r["wall"])
    return float(r["wall"])


def summarize(meta: dict, runs: list[dict]) -> dict[str, Any]:
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in runs:
        if r["prime"]:
            continue
        groups.setdefault((r["profile"], r["scenario"], r["tool"]), []).append(r)
    rows = []
    for (profile, scen, tool), rs in groups.items():
        mode = meta["scenarios"][scen]["mode"]
        ok = [r for r in rs if r["status"] == "ok"]
        failed = [r for r in rs if r["status"] in ("FAILED", "error")]
        timeouts = [r for r in rs if r["status"] == "timeout"]
        row: dict[str, Any] = {
            "profile": profile, "scenario": scen, "tool": tool, "mode": mode,
            "kind": _tool_kind(meta, tool), "runs": len(rs), "ok_runs": len(ok),
            "expected_files": rs[0]["expected_files"], "expected_bytes": rs[0]["expected_bytes"],
            "notes": sorted({r["note"] for r in rs if r["note"]}),
            "problems": sorted({r["problems"] for r in failed + timeouts if r["problems"]}),
        }
        basis = ok or timeouts or failed
        values = [run_value(r, mode) for r in basis]
        row["values"] = [run_value(r, mode) for r in ok]
        row["wall_median"] = statistics.median(values)
        row["wall_min"], row["wall_max"] = min(values), max(values)
        row["cpu_median"] = statistics.median(r["cpu"] for r in basis)
        row["peak_rss_max"] = max(r["peak_rss"] for r in basis)
        row["status"] = "FAILED" if failed else "ok" if ok and not timeouts else (
            "timeout" if not ok else "partial")
        # Only verified runs count; a run stopped at the cap is not extrapolated.
        ew = statistics.median(row["values"]) if ok else None
        row["effective_wall"] = ew
        row["mb_s"] = row["expected_bytes"] / MB / ew if ew and mode != "first-file" else None
        row["files_s"] = row["expected_files"] / ew if ew and mode != "first-file" else None
        row["cpu_per_gib"] = (statistics.median(r["cpu"] for r in ok)
                              / (row["expected_bytes"] / GiB)
                              if ok and row["expected_bytes"] and mode != "first-file" else None)
        rows.append(row)

    # dandiget x faster than each tool, same profile and scenario (this tool's time / dandiget's)
    by_key = {(r["profile"], r["scenario"], r["tool"]): r for r in rows}
    for r in rows:
        dg = by_key.get((r["profile"], r["scenario"], "dandiget"))
        r["dandiget_speedup"] = (r["effective_wall"] / dg["effective_wall"]
                                 if dg and dg["effective_wall"] and r["effective_wall"] else None)
    return {"rows": rows, "targets": judge(meta, rows)}


def judge(meta: dict, rows: list[dict]) -> list[dict]:
    min_runs = int(meta.get("min_runs", 3))
    smoke = meta["kind"] != "full"
    out: list[dict] = []
    for tg in TARGETS:
        ran = [r for r in rows if r["scenario"] == tg.scenario
               and (tg.profile is None or r["profile"] == tg.profile)]
        profile = tg.profile or (ran[0]["profile"] if ran else "\u2013")
        t: dict[str, Any] = {"label": tg.label, "scenario": tg.scenario, "profile": profile,
                             "reference": tg.reference, "threshold": tg.threshold,
                             "ratio": None, "reference_tool": None, "measured": None}
        dg = next((r for r in ran if r["tool"] == "dandiget" and r["profile"] == profile), None)
        refs = [r for r in ran if r["profile"] == profile and tg.reference
                and _ref_matches(meta, r["tool"], tg.reference)]
        best = min((r for r in refs if r["effective_wall"]), default=None,
                   key=lambda r: r["effective_wall"])
        if dg is None:
            t["verdict"] = "not run"
        elif dg["status"] == "FAILED":
            t["verdict"] = "FAILED"
        elif tg.reference is None:
            if dg["effective_wall"] is not None:
                t["measured"] = dg["effective_wall"]
                t["verdict"] = "met" if dg["effective_wall"] < tg.threshold else "missed"
        elif best is None:
            t["verdict"] = "no reference run"
        else:
            t["reference_tool"] = best["tool"]
            if dg["effective_wall"]:
                t["ratio"] = best["effective_wall"] / dg["effective_wall"]
                t["verdict"] = "met" if t["ratio"] >= tg.threshold else "missed"
        if "verdict" not in t:
            t["verdict"] = "no verified run"
        short = [r for r in [dg, best] if r is not None and r["ok_runs"] < min_runs]
        if t["verdict"] in ("met", "missed") and (smoke or short):
            why = "smoke corpus" if smoke else ", ".join(
                f"{r['tool']}: {r['ok_runs']} verified run(s)" for r in short)
            t["verdict"] = f"not judged ({why}; would be {t['verdict']})"
        out.append(t)
    dg_rows = [r for r in rows if r["tool"] == "dandiget"]
    if dg_rows:
        worst = max(dg_rows, key=lambda r: r["peak_rss_max"])
        verdict = "met" if worst["peak_rss_max"] < RSS_LIMIT else "missed"
        if smoke:
            verdict = f"not judged (smoke corpus; would be {verdict})"
        out.append({"label": "dandiget peak RSS, every scenario: < 150 MB",
                    "scenario": "every scenario", "profile": "all", "reference": "rss",
                    "threshold": RSS_LIMIT, "reference_tool": None, "ratio": None,
                    "measured": worst["peak_rss_max"],
                    "where": f"{worst['scenario']} ({worst['profile']})", "verdict": verdict})
    return out


# --------------------------------------------------------------------------- markdown


def _fmt_s(x: float | None) -> str:
    if x is None:
        return DASH
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}"


def _throughput(r: dict) -> str:
    if r["mode"] == "first-file":
        return f"first file after {_fmt_s(r['effective_wall'])} s" if r["effective_wall"] else DASH
    if r["mb_s"] is None:
        return DASH
    if r["mode"] == "plan":
        return f"{r['files_s']:,.0f} assets/s"
    if r["scenario"] in ("big", "slow-connection"):
        return f"{r['mb_s']:,.1f} MB/s"
    if r["mode"] == "download":
        return f"{r['files_s']:,.0f} files/s, {r['mb_s']:,.1f} MB/s"
    return f"{r['files_s']:,.0f} files/s"


def _status(r: dict) -> str:
    if r["status"] == "ok":
        return "ok"
    if r["status"] == "timeout":
        return "TIMEOUT (stopped at the cap)"
    if r["status"] == "partial":
        return f"ok in {r['ok_runs']}/{r['runs']} (others stopped at the cap)"
    return f"**FAILED** ({r['runs'] - r['ok_runs']}/{r['runs']})"


def _ratio(x: float | None) -> str:
    return DASH if x is None else f"{x:.2f}x" if x < 10 else f"{x:.1f}x"


def _corpus(meta: dict, dataset: str) -> str:
    c = meta["corpus"][dataset]
    return f"dandiset {c['dandiset']}: {c['files']:,} files, {c['bytes'] / MB:,.1f} MB"


def markdown(meta: dict, summary: dict, charts: list[str] | None = None) -> str:
    m = meta["machine"]
    out = ["# dandiget benchmark results", ""]
    out.append(f"- date: {meta['date']} ({meta['status']}, {meta['elapsed_s'] / 60:.1f} min)")
    out.append(f"- command: `{meta['command']}`")
    out.append(f"- machine: {m.get('nproc')} cores ({m.get('cpu', '?')}), "
               f"{m.get('ram_gib', '?')} GiB RAM, {m.get('os', '?')}, "
               f"kernel {m.get('kernel')}, Python {m.get('python')}")
    out.append("- versions: " + "; ".join(f"{k}: {v}" for k, v in meta["versions"].items()))
    out.append(f"- {meta['repeat']} round(s): every tool runs once per round, in an order "
               f"shuffled per round (seed {meta.get('seed')}, orders below); a run is stopped "
               f"after {meta['timeout_s']:.0f} s and then counts as no run; verdicts need "
               f"{meta.get('min_runs', 3)} verified runs of each tool compared"
               + "".join(f"; {name}: after {sc['cap_s']:.0f} s"
                         for name, sc in meta["scenarios"].items() if sc.get("cap_s")))
    out.append(f"- API latency on `s3like`: {meta.get('api_cost', {}).get('s3like', '?')}")
    out.append("- `dandiget \u00d7`: how many times faster dandiget was than that tool "
               "(that tool's median time / dandiget's); below 1 means slower. Spread is "
               "min\u2013max over the runs. CPU s/GiB: median CPU seconds (user + system, "
               "the tool and its children) per GiB of the scenario's content.")
    out.append("")
    out += ["## Scenarios and corpora", "",
            "| scenario | what | profiles | corpus |", "|---|---|---|---|"]
    for name, s in meta["scenarios"].items():
        what = s["title"] + (" (output on tmpfs)" if s.get("tmpfs") and "tmpfs" not in
                             s["title"] else "")
        out.append(f"| {name} | {what} | {', '.join(s.get('profiles', []))} | "
                   f"{_corpus(meta, s['dataset'])} |")
    out.append("")
    rows = summary["rows"]
    for profile in dict.fromkeys(r["profile"] for r in rows):
        out += [f"## Profile `{profile}`", "",
                "| scenario | tool | status | runs | median s | spread s | throughput "
                "| peak RSS MB | CPU s | CPU s/GiB | dandiget \u00d7 |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if r["profile"] != profile:
                continue
            out.append(
                f"| {r['scenario']} | {r['tool']} | {_status(r)} | "
                f"{r['ok_runs']}/{r['runs']} | {_fmt_s(r['effective_wall'])} | "
                f"{_fmt_s(r['wall_min'])}\u2013{_fmt_s(r['wall_max'])} | {_throughput(r)} | "
                f"{r['peak_rss_max'] / MB:.0f} | "
                f"{_fmt_s(r['cpu_median']) if r['ok_runs'] and r['cpu_per_gib'] else DASH} | "
                f"{_fmt_s(r['cpu_per_gib'])} | {_ratio(r['dandiget_speedup'])} |")
        out.append("")
    out += ["## Targets (medians, same run)", ""]
    if meta["kind"] != "full":
        out += [f"(corpus `{meta['kind']}`: far smaller than the targets assume; "
                "no verdict is given)", ""]
    out += ["| target | profile | dandiget vs | measured | verdict |", "|---|---|---|---|---|"]
    for t in summary["targets"]:
        if t["reference"] == "rss":
            measured = f"max {t['measured'] / MB:.0f} MB in {t['where']}"
        elif t["reference"] is None:
            measured = f"{_fmt_s(t['measured'])} s" if t["measured"] is not None else DASH
        else:
            measured = _ratio(t["ratio"])
        ref = t["reference_tool"] or (t["reference"] if t["reference"] not in (None, "rss")
                                      else DASH)
        out.append(f"| {t['label']} | {t['profile']} | {ref} | {measured} | {t['verdict']} |")
    out.append("")
    if charts:
        out += ["## Charts", ""] + [f"![{c}]({c})" for c in charts] + [""]
    if meta.get("orders"):
        out += ["## Run order", "",
                f"Seed {meta.get('seed')} (`--seed {meta.get('seed')}` repeats the order).", ""]
        per: dict[tuple[str, str], list[str]] = {}
        for o in meta["orders"]:
            per.setdefault((o["profile"], o["scenario"]), []).append(
                f"{o['round']}: " + ", ".join(o["order"]))
        out += [f"- [{p}] {s}: " + "; ".join(v) for (p, s), v in per.items()] + [""]
    notes = list(meta["notes"])
    for r in rows:
        for n in r["notes"]:
            notes.append(f"[{r['profile']}] {r['scenario']} {r['tool']}: {n}")
        for p in r["problems"]:
            notes.append(f"[{r['profile']}] {r['scenario']} {r['tool']} ({r['status']}): {p}")
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Re-render ``results.md`` (and the charts) from a ``results.json``."""
    import argparse
    import json
    import sys
    from pathlib import Path

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("results_json", type=Path)
    args = ap.parse_args(argv)
    data = json.loads(args.results_json.read_text())
    summary = summarize(data["meta"], data["runs"])
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import charts

    names: list[str] = []
    if charts.ensure_matplotlib(install=False):
        names = [p.name for p in charts.draw(data["meta"], data["runs"], summary["rows"],
                                             args.results_json.parent)]
    md = markdown(data["meta"], summary, names)
    (args.results_json.parent / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
