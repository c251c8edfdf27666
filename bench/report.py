"""latest.md and its JSON twin latest.json: machine, settings, every figure, every ratio, every verdict."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bench import budget
from bench.explain import capabilities, gaps, pg_plans, profiles

ORDER = [
    "1_http_ceiling",
    "2_single_post",
    "3_batch_post",
    "4_consumer",
    "5_freshness",
    "6_queries",
    "7_memory",
    "8_observability",
    "9_postgres_drain",
    "10_postgres_queries",
    "11_stats",
    "12_live_tail",
    "13_ferretdb_postgresql",
    "S_sdk_track",  # the Python SDK (bench/sdk_track.py)
    "14_cluster_ingest",
]


def number(key: str) -> str:
    """A scenario's number, from its key (``10_postgres_queries`` is 10)."""
    return key.split("_", 1)[0]


def write(results: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out / "latest.md", out / "latest.json"
    for path, text in (
        (json_path, json.dumps(results, indent=2, default=str) + "\n"),
        (md_path, markdown(results, out)),
    ):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return md_path, json_path


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:,.3g}" if abs(value) < 1 else f"{value:,.2f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def summary_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key in ORDER:
        scenario = results["scenarios"].get(key, {})
        for c in scenario.get("checks", []):
            rows.append({"scenario": key, **c})
    return rows


def markdown(results: dict[str, Any], out: Path) -> str:
    meta, machine = results["meta"], results["machine"]
    lines = [
        f"# activity-service benchmark ({meta['plan']['name']} run)",
        "",
        f"Run `{meta['run_id']}`, {meta['started_at']} to {meta['finished_at']} "
        f"({meta['duration_seconds']:.0f} s), commit `{machine['git_commit'][:12]}` "
        f"({machine['git_worktree']}).",
        f"Command: `{meta['command']}`.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    for key in ("cpu_model", "cpu_cores", "memory_gib", "kernel", "os", "python", "kafka", "database", "wrk"):
        lines.append(f"| {key.replace('_', ' ')} | {fmt(machine[key])} |")
    lines.append(f"| load average at start | {' '.join(machine['load_average_at_start'])} |")
    lines.append("| packages | " + ", ".join(f"{k} {v}" for k, v in machine["packages"].items()) + " |")
    lines += ["", "## How it was measured", ""]
    lines += [f"- {note}" for note in meta["notes"]]
    lines += ["", "## Settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| `{k}` | `{v}` |" for k, v in meta["settings"].items()]
    lines += ["", "Plan: " + ", ".join(f"{k}={fmt(v)}" for k, v in meta["plan"].items()) + ".", ""]
    lines += [
        "## Summary",
        "",
        "| # | figure | value | ceiling | ratio | target | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary_rows(results):
        ceiling = f"{fmt(row['ceiling'])} ({row['ceiling_label']})" if row["ceiling"] is not None else "—"
        mark = " (disturbed)" if results["scenarios"][row["scenario"]].get("disturbed") else ""
        lines.append(
            f"| {number(row['scenario'])} | {row['figure']}{mark} | {fmt(row['value'])} {row['unit']} | "
            f"{ceiling} | {fmt(row['ratio'])} | {row['target'] or '—'} | {row['verdict']} |"
        )
    noted = [row for row in summary_rows(results) if row.get("note")]
    if noted:
        lines += ["", "Notes:", ""]
        lines += [f"- {number(row['scenario'])}. {row['figure']}: {row['note']}." for row in noted]
    for key in ORDER:
        scenario = results["scenarios"].get(key)
        lines += ["", f"## {number(key)}. {scenario['title'] if scenario else key}", ""]
        if scenario is None:
            lines.append("not run")
            continue
        if scenario["status"] != "measured":
            lines.append(scenario.get("reason") or f"{scenario['status']}: {scenario.get('error', '')}")
            continue
        lines.append(f"Conditions: {scenario['conditions']}.")
        if scenario.get("disturbed"):
            lines += ["", f"**Warning**: {scenario['disturbed']}."]
        lines += ["", "| figure | value |", "|---|---|"]
        lines += [f"| {k.replace('_', ' ')} | {fmt(v)} |" for k, v in scenario["figures"].items()]
        if key == "6_queries":
            lines += ["", *capabilities(scenario)]
        if key == "13_ferretdb_postgresql":
            read = {"details": scenario["details"]["queries"], "figures": {}}
            lines += ["", *capabilities(read, prose=False)]
        if key in ("10_postgres_queries", "11_stats"):
            lines += ["", *pg_plans(scenario)]
    misses = gaps(results)
    if misses:
        lines += ["", "## Why the missed targets are missed", ""]
        lines += misses
    staged = budget.markdown(results, out)
    if staged:
        lines += ["", "## API CPU budget by stage", "", *staged]
    profiled = profiles(results, out)
    if profiled:
        lines += ["", "## Profiles", ""]
        lines += [
            "py-spy (--native) sampled the process in an extra run under the same load right after the "
            "measured one (never during a measurement), 100 samples a second of on-CPU stacks: a share of "
            "samples is a share of the process's CPU time. Each sample is attributed to its innermost Python "
            "frame, except samples inside the cyclic garbage collector, shown as such (without native "
            "frames their time lands on whatever Python frame allocated).",
            "",
        ]
        lines += profiled
    lines += ["", f"Summary: {meta['one_line']}", ""]
    return "\n".join(lines)
