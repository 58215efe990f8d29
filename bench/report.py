"""Aggregate runs into medians and spreads, compare tools, judge the targets, write markdown."""

from __future__ import annotations

import statistics
from typing import Any

MB = 1e6

#: (scenario, profile or None for every profile run, reference kind, minimum ratio)
TARGETS: list[tuple[str, str | None, str, float]] = [
    ("big", "s3like", "dandi-cli", 10.0),
    ("big", "s3like", "aria2c", 0.8),
    ("big", "loopback", "dandi-cli", 1.5),
    ("files", None, "dandi-cli", 5.0),
    ("zarr", None, "dandi-cli", 10.0),
    ("zarr", None, "curl", 0.5),
    ("noop-files-refresh", None, "dandi-cli", 20.0),
    ("noop-files-overwrite-different", None, "dandi-cli", 20.0),
    ("noop-zarr-refresh", None, "dandi-cli", 20.0),
    ("noop-zarr-overwrite-different", None, "dandi-cli", 20.0),
]
RSS_LIMIT = 200 * MB
GE = "\u2265"
DASH = "\u2013"


def _tool_kind(meta: dict, tool: str) -> str:
    return str(meta["tools"].get(tool, {}).get("kind", "?"))


def _ref_matches(meta: dict, tool: str, ref: str) -> bool:
    if ref == "dandi-cli":
        return _tool_kind(meta, tool) == "dandi-cli"
    return tool.split()[0] == ref


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
        walls = [r["wall"] for r in basis]
        row["wall_median"] = statistics.median(walls)
        row["wall_min"], row["wall_max"] = min(walls), max(walls)
        row["cpu_median"] = statistics.median(r["cpu"] for r in basis)
        row["peak_rss_max"] = max(r["peak_rss"] for r in basis)
        if failed:
            row["status"] = "FAILED"
        elif ok:
            row["status"] = "ok"
        else:
            row["status"] = "timeout"
        row["lower_bound"] = False
        if row["status"] == "timeout" and mode != "download":
            # A no-op or a listing stopped at the cap: its time is only a lower bound.
            row["effective_wall"] = row["wall_median"]
            row["lower_bound"] = True
        elif row["status"] == "timeout":
            # Extrapolate from the verified part of a run stopped at the time cap.
            r = timeouts[0]
            by_files = scen != "big"
            done, total = ((r["ok_files"], r["expected_files"]) if by_files
                           else (r["ok_bytes"], r["expected_bytes"]))
            row["partial_fraction"] = done / total if total else 0.0
            row["effective_wall"] = (r["wall"] * total / done) if done else None
        else:
            row["effective_wall"] = row["wall_median"] if row["status"] == "ok" else None
        ew = row["effective_wall"]
        row["mb_s"] = row["expected_bytes"] / MB / ew if ew else None
        row["files_s"] = row["expected_files"] / ew if ew else None
        rows.append(row)

    # dandiget x faster than each tool, same profile and scenario (this tool's wall / dandiget's)
    by_key = {(r["profile"], r["scenario"], r["tool"]): r for r in rows}
    for r in rows:
        dg = by_key.get((r["profile"], r["scenario"], "dandiget"))
        r["dandiget_speedup"] = (r["effective_wall"] / dg["effective_wall"]
                                 if dg and dg["effective_wall"] and r["effective_wall"] else None)

    targets = []
    for scen, prof, ref, threshold in TARGETS:
        profiles = [prof] if prof else meta["profiles"] + [meta.get("noop_profile")]
        seen = set()
        for p in profiles:
            if p in seen:
                continue
            seen.add(p)
            dg = by_key.get((p, scen, "dandiget"))
            refs = [r for r in rows if r["profile"] == p and r["scenario"] == scen
                    and _ref_matches(meta, r["tool"], ref) and r["effective_wall"]]
            if dg is None and not refs:
                continue
            t: dict[str, Any] = {"scenario": scen, "profile": p, "reference": ref,
                                 "threshold": threshold}
            best = min(refs, key=lambda r: r["effective_wall"]) if refs else None
            t["reference_tool"] = best["tool"] if best else None
            t["reference_partial"] = bool(best and best["status"] == "timeout")
            t["lower_bound"] = bool(best and best["lower_bound"])
            if dg is None or dg["status"] != "ok":
                t["verdict"] = "FAILED" if dg else "not run"
                t["ratio"] = None
            elif best is None:
                t["verdict"] = "no reference"
                t["ratio"] = None
            else:
                t["ratio"] = best["effective_wall"] / dg["effective_wall"]
                t["verdict"] = "met" if t["ratio"] >= threshold else "missed"
                t["margin"] = t["ratio"] / threshold - 1
            targets.append(t)
    dg_rows = [r for r in rows if r["tool"] == "dandiget"]
    if dg_rows:
        worst = max(dg_rows, key=lambda r: r["peak_rss_max"])
        targets.append({"scenario": "every scenario", "profile": "all", "reference": "rss",
                        "threshold": RSS_LIMIT, "reference_tool": None,
                        "ratio": worst["peak_rss_max"],
                        "where": f"{worst['scenario']} ({worst['profile']})",
                        "verdict": "met" if worst["peak_rss_max"] < RSS_LIMIT else "missed",
                        "margin": 1 - worst["peak_rss_max"] / RSS_LIMIT})
    return {"rows": rows, "targets": targets}


# --------------------------------------------------------------------------- markdown


def _fmt_s(x: float | None) -> str:
    if x is None:
        return "\u2013"
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}"


def _throughput(r: dict) -> str:
    if r["mb_s"] is None:
        return "\u2013"
    est = "\u2264" if r["lower_bound"] else "~" if r["status"] == "timeout" else ""
    if r["mode"] == "plan":
        return f"{est}{r['files_s']:,.0f} assets/s"
    if r["scenario"] == "big":
        return f"{est}{r['mb_s']:,.1f} MB/s"
    if r["mode"] == "download":
        return f"{est}{r['files_s']:,.0f} files/s, {r['mb_s']:,.1f} MB/s"
    return f"{est}{r['files_s']:,.0f} files/s"


def _status(r: dict) -> str:
    if r["status"] == "ok":
        return "ok"
    if r["status"] == "timeout" and r["lower_bound"]:
        return "TIMEOUT (stopped at the cap)"
    if r["status"] == "timeout":
        return f"TIMEOUT ({100 * r.get('partial_fraction', 0):.0f}% done)"
    return f"**FAILED** ({r['runs'] - r['ok_runs']}/{r['runs']})"


def _ratio(x: float | None) -> str:
    return "\u2013" if x is None else f"{x:.2f}x" if x < 10 else f"{x:.1f}x"


def markdown(meta: dict, summary: dict) -> str:
    m = meta["machine"]
    out = ["# dandiget benchmark results", ""]
    out.append(f"- date: {meta['date']} ({meta['status']}, {meta['elapsed_s'] / 60:.1f} min)")
    out.append(f"- command: `{meta['command']}`")
    out.append(f"- machine: {m.get('nproc')} cores ({m.get('cpu', '?')}), "
               f"{m.get('ram_gib', '?')} GiB RAM, {m.get('os', '?')}, "
               f"kernel {m.get('kernel')}, Python {m.get('python')}")
    out.append("- versions: " + "; ".join(f"{k}: {v}" for k, v in meta["versions"].items()))
    out.append(f"- corpus ({meta['kind']}): " + "; ".join(
        f"{name} = dandiset {c['dandiset']}, {c['files']:,} files, {c['bytes'] / MB:,.1f} MB"
        for name, c in meta["corpus"].items()))
    out.append(f"- {meta['repeat']} run(s) per tool (a run longer than {meta['slow_s']:.0f} s is "
               f"not repeated; a run is stopped after {meta['timeout_s']:.0f} s, a no-op re-run "
               f"after {meta.get('noop_timeout_s', meta['timeout_s']):.0f} s); no-op and "
               f"plan scenarios on the {meta['noop_profile']} profile only")
    out.append("- `dandiget \u00d7`: how many times faster dandiget was than that tool "
               "(that tool's median wall time / dandiget's); below 1 means slower. "
               "Spread is min\u2013max over the runs.")
    out.append("")
    rows = summary["rows"]
    for profile in dict.fromkeys(r["profile"] for r in rows):
        out += [f"## Profile `{profile}`", "",
                "| scenario | tool | status | runs | median wall s | spread s | throughput "
                "| peak RSS MB | CPU s | dandiget \u00d7 |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if r["profile"] != profile:
                continue
            scen = meta["scenarios"][r["scenario"]]
            wall = _fmt_s(r["wall_median"])
            if r["status"] == "timeout" and r["effective_wall"] and not r["lower_bound"]:
                wall = f"{wall} (est. full: {_fmt_s(r['effective_wall'])})"
            out.append(
                f"| {r['scenario']} ({scen['title']}) | {r['tool']} | {_status(r)} | "
                f"{r['ok_runs']}/{r['runs']} | {wall} | "
                f"{_fmt_s(r['wall_min'])}\u2013{_fmt_s(r['wall_max'])} | {_throughput(r)} | "
                f"{r['peak_rss_max'] / MB:.0f} | "
                f"{_fmt_s(r['cpu_median']) if r['status'] != 'timeout' else DASH} | "
                f"{GE if r['lower_bound'] else ''}{_ratio(r['dandiget_speedup'])} |")
        out.append("")
    out += ["## Targets (medians, same run)", ""]
    if meta["kind"] != "full":
        out += [f"(corpus `{meta['kind']}`: far smaller than the targets assume; "
                "the verdicts below are not meaningful)", ""]
    out += ["| target | profile | dandiget vs | measured | verdict |", "|---|---|---|---|---|"]
    for t in summary["targets"]:
        if t["reference"] == "rss":
            out.append(f"| dandiget peak RSS < 200 MB | all | \u2013 | max {t['ratio'] / MB:.0f} MB "
                       f"in {t['where']} | {t['verdict']} ({100 * t['margin']:+.0f}% headroom) |")
            continue
        ref = t["reference_tool"] or t["reference"]
        if t["lower_bound"]:
            ref += " (stopped at the time cap: ratio is a lower bound)"
        elif t["reference_partial"]:
            ref += " (extrapolated from a partial run)"
        verdict = t["verdict"]
        if "margin" in t:
            verdict += f" by {100 * t['margin']:+.0f}%"
        out.append(f"| {t['scenario']} ≥{t['threshold']:g}x {t['reference']} | {t['profile']} "
                   f"| {ref} | {GE if t['lower_bound'] else ''}{_ratio(t['ratio'])} "
                   f"| {verdict} |")
    out.append("")
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
    """Re-render ``results.md`` from a ``results.json`` (after changing this module)."""
    import argparse
    import json
    from pathlib import Path

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("results_json", type=Path)
    args = ap.parse_args(argv)
    data = json.loads(args.results_json.read_text())
    summary = summarize(data["meta"], data["runs"])
    md = markdown(data["meta"], summary)
    (args.results_json.parent / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
