"""A same-machine A/B of two source trees of the service, in one run: `python -m bench.ab BEFORE AFTER`.

BEFORE and AFTER are checkouts (e.g. `git worktree add --detach /tmp/before <commit>`); each API process
imports the service from its tree's src/ (PYTHONPATH, ahead of this virtualenv's editable install) and
runs with the bench's production defaults (bench.procs.service_env: auth on, rate limiter on, access log
and metrics on), the consumer stopped. Rounds alternate the order (ABBA...), so a machine that gets
busier or quieter during the run weighs on both sides alike. Each round measures single POST and batch
POST with wrk as scenarios 2 and 3 do; the figure that decides is the API's CPU per request (its CPU
time over requests answered), which a shared machine disturbs less than throughput. Prints a table and
writes it as JSON with --out. With --in-process, the sides run ``bench.parsing --production`` instead
(the app's CPU time in-process: no server, no broker).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench import wrk
from bench.broker import delete_topics
from bench.data import now_millis
from bench.drive import API_PATH, us_per_event
from bench.procs import Names, Processes, service_env, watch

TIMESTAMP = now_millis().isoformat(timespec="milliseconds").replace("+00:00", "Z")
LOADS = {"single": (API_PATH, 32, 1), "batch": (API_PATH + "/batch", 16, 100)}


def _round(procs: Processes, wrk_bin: str, tree: Path, names: Names, seconds: float) -> dict[str, Any]:
    stack = {"kafka": os.environ["KAFKA_BOOTSTRAP_SERVERS"], "mongo": os.environ["MONGODB_URI"]}
    env = service_env(stack, names, 6, {"PYTHONPATH": str(tree / "src")})
    api = procs.start_api(names.topic, env)
    out: dict[str, Any] = {}
    try:
        for mode, (path, connections, size) in LOADS.items():
            options: dict[str, Any] = {
                "mode": mode,
                "connections": connections,
                "batch_size": size,
                "timestamp": TIMESTAMP,
            }
            url = api.base_url + path
            wrk.run(wrk_bin, url, seconds=2, **options)  # warm-up
            with watch({"server": api.pid}) as usage:
                run = wrk.run(wrk_bin, url, seconds=seconds, **options)
            cpu = vars(usage["server"])["cpu_percent"]
            answered = run.answered(202)
            out[mode] = {
                "requests_per_second": run.requests_per_second,
                "events_per_second": round(run.requests_per_second * size, 1),
                "p99_ms": run.latency_ms["p99"],
                "cpu_percent": cpu,
                "cpu_us_per_event": us_per_event(cpu, run.requests_per_second * size),
                "non_202": run.requests - answered,
            }
    finally:
        procs.stop(api)
    return out


def in_process(sides: dict[str, Path], rounds: int, out: Path | None) -> int:
    """bench.parsing --production (the app through its ASGI callable, CPU time, no server, no broker) from
    each tree, alternating; the best of each side's runs."""
    runs: list[dict[str, Any]] = []
    for r in range(rounds):
        for side in ["before", "after"] if r % 2 == 0 else ["after", "before"]:
            env = {**os.environ, "PYTHONPATH": str(sides[side] / "src")}
            done = subprocess.run(
                [sys.executable, "-m", "bench.parsing", "--production", "--json", "--rounds", "3"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            )
            runs.append({"round": r, "side": side, **json.loads(done.stdout.strip().splitlines()[-1])})
            print(f"round {r} {side}: {runs[-1]}", flush=True)
    summary: dict[str, Any] = {"trees": {k: str(v) for k, v in sides.items()}, "runs": runs, "best": {}}
    print("| request | before, best µs of CPU | after, best µs of CPU | after / before |")
    print("|---|---|---|---|")
    for name in ("single", "batch of 100"):
        best = {side: min(x[name] for x in runs if x["side"] == side) for side in sides}
        ratio = round(best["after"] / best["before"], 3)
        summary["best"][name] = {**{k: round(v, 1) for k, v in best.items()}, "ratio": ratio}
        print(f"| {name} | {best['before']:.1f} | {best['after']:.1f} | {ratio} |")
    if out:
        out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.ab")
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="compare bench.parsing --production (CPU time in-process) instead of the served API",
    )
    args = parser.parse_args(argv)
    if args.in_process:
        return in_process(
            {"before": args.before.resolve(), "after": args.after.resolve()}, args.rounds, args.out
        )
    run_id = f"ab{uuid.uuid4().hex[:6]}"
    procs = Processes(Path(tempfile.mkdtemp(prefix=f"bench-{run_id}-")))
    wrk_bin = wrk.ensure_wrk(print)
    sides = {"before": args.before.resolve(), "after": args.after.resolve()}
    rounds: list[dict[str, Any]] = []
    try:
        for r in range(args.rounds):
            order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
            for side in order:
                names = Names.of(run_id, f"{side}{r}")
                rounds.append(
                    {"round": r, "side": side, **_round(procs, wrk_bin, sides[side], names, args.seconds)}
                )
                print(f"round {r} {side}: " + json.dumps({k: v for k, v in rounds[-1].items() if k in LOADS}))
    finally:
        procs.stop_all()
        asyncio.run(delete_topics(os.environ["KAFKA_BOOTSTRAP_SERVERS"], f"bench_{run_id}_"))
    summary: dict[str, Any] = {"trees": {k: str(v) for k, v in sides.items()}, "rounds": rounds, "modes": {}}
    print("| load | figure | before (median) | after (median) | after / before |")
    print("|---|---|---|---|---|")
    for mode in LOADS:
        for figure in ("cpu_us_per_event", "events_per_second", "p99_ms"):
            medians = {
                side: statistics.median(
                    x[mode][figure] for x in rounds if x["side"] == side and x[mode][figure]
                )
                for side in sides
            }
            ratio = round(medians["after"] / medians["before"], 3) if medians["before"] else None
            summary["modes"].setdefault(mode, {})[figure] = {**medians, "ratio": ratio}
            print(f"| {mode} | {figure} | {medians['before']:g} | {medians['after']:g} | {ratio} |")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
