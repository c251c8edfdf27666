"""What the numbers were measured on: the machine, the software, the commit, and the stack's processes."""

from __future__ import annotations

import asyncio
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from bench.procs import ROOT
from bench.store import server_version


def stack_dir() -> Path:
    cache = Path(os.environ.get("ACTIVITY_CACHE", Path.home() / ".cache" / "activity-service"))
    return Path(os.environ.get("STACK_DIR", cache / "stack"))


def stack_pids() -> dict[str, int]:
    """The local stack's broker and database processes (to report their CPU), where this machine runs them."""
    pids = {}
    for name, pidfile in (
        ("kafka", "kafka/kafka.pid"),
        ("ferretdb", "ferretdb/ferretdb.pid"),
        ("postgres", "postgres/postgres.pid"),
    ):
        try:
            pid = int((stack_dir() / pidfile).read_text().split()[0])
        except (OSError, ValueError):
            continue
        if Path(f"/proc/{pid}").exists():
            pids[name] = pid
    return pids


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1_048_576, 1)
    except OSError:
        pass
    return 0.0


def _git(*args: str) -> str:
    # Read-only: GIT_OPTIONAL_LOCKS=0 keeps `git status` from refreshing (writing) the index.
    done = subprocess.run(
        ["git", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def _kafka_version(pids: dict[str, int]) -> str:
    pid = pids.get("kafka")
    if pid:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            cmdline = ""
        found = re.search(r"kafka[-_](?:2\.\d+-)?(\d+\.\d+\.\d+)", cmdline)
        if found:
            return f"Apache Kafka {found.group(1)}"
    return "unknown (not the local stack's broker)"


def _package(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


async def _database_version(uri: str) -> str:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        return await server_version(client["admin"])
    finally:
        await client.close()


def describe(mongo_uri: str, wrk_version: str) -> dict[str, Any]:
    pids = stack_pids()
    status = _git("status", "--porcelain")
    return {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "kafka": _kafka_version(pids),
        "database": asyncio.run(_database_version(mongo_uri)),
        "git_commit": _git("rev-parse", "HEAD") or "unknown",
        "git_worktree": f"{len(status.splitlines())} changed/untracked files" if status else "clean",
        "load_average_at_start": Path("/proc/loadavg").read_text().split()[:3]
        if Path("/proc/loadavg").exists()
        else [],
        "packages": {
            p: _package(p)
            for p in (
                "fastapi",
                "uvicorn",
                "aiokafka",
                "pymongo",
                "pydantic",
                "orjson",
                "uvloop",
                "httptools",
            )
        },
        "wrk": wrk_version,
    }
