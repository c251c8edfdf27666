"""The load generator: wrk (C, epoll) with bench/lua/load.lua, installed from the distribution when missing.

Each run reports what wrk's Lua done() prints (counts, errors, latency percentiles) plus wrk's own CPU
time (from wait4's rusage), so the results can show that the generator is not the bottleneck.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from typing import Any

from bench.errors import BenchError
from bench.procs import API_KEY, ROOT

SCRIPT = ROOT / "bench" / "lua" / "load.lua"
MARKER = "BENCH_JSON "


@dataclass(frozen=True)
class WrkRun:
    connections: int
    threads: int
    seconds: float
    requests: int
    requests_per_second: float
    errors: dict[str, int]
    latency_ms: dict[str, float]
    statuses: dict[str, int]
    """How many answers had each HTTP status (202 accepted, 503 shed by the API's overload guard, ...)."""
    cpu_seconds: float
    cpu_percent: float
    """wrk's own CPU use, % of one core, over the run."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def answered(self, status: int) -> int:
        return self.statuses.get(str(status), 0)


def ensure_wrk(say: Any) -> str:
    path = shutil.which("wrk")
    if path:
        return path
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise BenchError(
            "wrk is not installed and this harness cannot install it (needs root and apt-get). "
            "Install it with your package manager (Debian/Ubuntu: sudo apt-get install wrk) and run again."
        )
    say("wrk is missing: installing it with apt-get (once)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "wrk"]):
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise BenchError(
                f"`{' '.join(args)}` failed ({done.returncode}): {done.stderr[-1500:]}\n"
                "Install wrk by hand (apt-get install wrk) and run again."
            )
    path = shutil.which("wrk")
    if not path:
        raise BenchError("apt-get installed wrk but it is not on PATH; check `command -v wrk`.")
    return path


def version(wrk: str) -> str:
    done = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
    return (done.stdout + done.stderr).splitlines()[0].strip() if (done.stdout or done.stderr) else "unknown"


def run(
    wrk: str,
    url: str,
    *,
    mode: str,
    connections: int,
    seconds: float,
    threads: int = 1,
    batch_size: int = 1,
    users: int = 1000,
    timestamp: str = "",
    rate_per_second: float = 0.0,
    timeout_seconds: int = 30,
) -> WrkRun:
    """Run wrk once. ``rate_per_second`` > 0 paces the load (open loop) to that many requests per second
    in all; 0 is a closed loop at ``connections`` concurrent requests."""
    threads = max(1, min(threads, connections))
    args = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout_seconds}s",
        "-s",
        str(SCRIPT),
        url,
        "--",
        mode,
        API_KEY,
        str(batch_size),
        str(users),
        timestamp or "2026-01-01T00:00:00.000Z",
        f"{rate_per_second / threads:.3f}",
    ]
    started = time.monotonic()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    # wait4 gives wrk's own rusage: its CPU time, separate from the processes it loads.
    _, status, rusage = os.wait4(process.pid, 0)
    elapsed = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    stdout = process.stdout.read().decode(errors="replace") if process.stdout else ""
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    lines = [line for line in stdout.splitlines() if line.startswith(MARKER)]
    if process.returncode != 0 or not lines:
        raise BenchError(
            f"wrk failed against {url} (exit {process.returncode}).\nstdout: {stdout[-1500:]}\n"
            f"stderr: {stderr[-1500:]}\nIs the server up? Run `wrk -t1 -c1 -d1s {url}` by hand to see."
        )
    report = json.loads(lines[-1][len(MARKER) :])
    duration = report["duration_us"] / 1e6
    cpu = rusage.ru_utime + rusage.ru_stime
    latency = {k: round(v / 1000, 3) for k, v in report["latency_us"].items()}
    return WrkRun(
        connections=connections,
        threads=threads,
        seconds=round(duration, 3),
        requests=report["requests"],
        requests_per_second=round(report["requests"] / duration, 1) if duration else 0.0,
        errors={k: int(v) for k, v in report["errors"].items()},
        latency_ms=latency,
        statuses={str(k): int(v) for k, v in report.get("statuses", {}).items()},
        cpu_seconds=round(cpu, 3),
        cpu_percent=round(100 * cpu / elapsed, 1),
    )
