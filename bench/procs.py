"""The processes under test: start them like an orchestrator would, watch their CPU and memory, stop them.

Every run has its own names (topic, consumer group, database) per phase, so nothing a previous run or a
test left behind is measured.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.errors import BenchError

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).with_name("activity-service"))
API_KEY = "bench-full-access-key-0123456789"
AUTH_HEADERS = {"Authorization": f"Bearer {API_KEY}"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Names:
    """Topic, consumer group and database of one phase of one run."""

    topic: str
    group: str
    database: str

    @classmethod
    def of(cls, run_id: str, phase: str) -> Names:
        name = f"bench_{run_id}_{phase}"
        return cls(topic=name, group=f"{name}-group", database=name)


def service_env(
    stack: Mapping[str, str], names: Names, partitions: int, extra: Mapping[str, str]
) -> dict[str, str]:
    """The environment of an API or consumer process, with the production defaults: auth on with one
    bench key, the rate limiter on (in memory, as shipped) with its limits raised so that the bench, one
    client sending far more than a client may, is never refused: every request pays the limiter's cost
    and none gets a 429. Access log and metrics as shipped."""
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=stack["kafka"],
        MONGODB_URI=stack["mongo"],
        KAFKA_TOPIC=names.topic,
        KAFKA_CONSUMER_GROUP=names.group,
        KAFKA_TOPIC_PARTITIONS=str(partitions),
        MONGODB_DATABASE=names.database,
        LOG_LEVEL="INFO",
        AUTH_ENABLED="true",
        AUTH_API_KEYS=json.dumps(
            [{"name": "bench", "key": API_KEY, "scopes": ["activities:write", "activities:read"]}]
        ),
        RATE_LIMIT_ENABLED="true",
        RATE_LIMIT_EVENTS_PER_SECOND="100000000",
        RATE_LIMIT_BURST="100000000",
        # The consumer serves its metrics on a port of its own: a free one, so that a consumer of a test
        # running on this machine at the same time cannot take it.
        CONSUMER_METRICS_HOST="127.0.0.1",
        CONSUMER_METRICS_PORT=str(free_port()),
        # Tracing is off unless asked for (--env, or scenario 8), whatever this shell exports.
        OTEL_EXPORTER_OTLP_ENDPOINT="",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="",
    )
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    base_url: str = ""
    metrics_url: str = ""
    """Where a consumer serves its Prometheus metrics (when the service has them)."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class Processes:
    """Every process the run started, so that all of them are stopped whatever happens."""

    logs: Path
    started: list[Service] = field(default_factory=list)

    def spawn(self, name: str, args: list[str], env: Mapping[str, str]) -> Service:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(args, env=dict(env), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        service = Service(name, process, log)
        self.started.append(service)
        return service

    def start_api(self, name: str, env: Mapping[str, str], *, kind: str = "service") -> Service:
        """``kind``: "service" (`activity-service api`), "noop" (the service publishing to nothing,
        bench/ceiling_server.py), "validate" or "asgi" (bench/bare_server.py)."""
        port = free_port()
        if kind == "noop":
            args = [sys.executable, "-m", "bench.ceiling_server", "--port", str(port)]
        elif kind in ("validate", "asgi"):
            args = [sys.executable, "-m", "bench.bare_server", kind, "--port", str(port)]
        else:
            args = [CLI, "api", "--port", str(port)]
        service = self.spawn(name, args, env)
        service.base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                break
            try:
                if httpx.get(f"{service.base_url}/health/ready", timeout=2).status_code == 200:
                    return service
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop(service)
        raise BenchError(
            f"the {name} process did not become ready on {service.base_url} (exit code "
            f"{service.process.returncode}). Its log ({service.log}) ends with:\n{service.log_tail()}\n"
            "Check that the stack answers (bash scripts/stack.sh status) and that the service starts "
            "(make run)."
        )

    def start_consumer(self, name: str, env: Mapping[str, str]) -> Service:
        service = self.spawn(name, [CLI, "consumer"], env)
        if env.get("CONSUMER_METRICS_PORT"):
            service.metrics_url = f"http://127.0.0.1:{env['CONSUMER_METRICS_PORT']}/metrics"
        return service

    def stop(self, service: Service, timeout: float = 30) -> None:
        if service.process.poll() is None:
            service.process.send_signal(signal.SIGTERM)
            try:
                service.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()
        if service in self.started:
            self.started.remove(service)

    def stop_all(self) -> None:
        for service in list(self.started):
            self.stop(service)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except OSError:
        return 0


def _reset_peak(pid: int) -> bool:
    """Linux resets VmHWM (peak RSS) when 5 is written to clear_refs; False where that is not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _vm_hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").replace("\0", " ").split()
    except OSError:
        return []


def postgres_cpu(postmaster: int, database: str | None) -> dict[int, float]:
    """CPU seconds so far of each process of the PostgreSQL server that works for ``database``: the
    backends connected to it and the server's own background processes (WAL writer, checkpointer,
    background writer, autovacuum), by pid. Backends of other databases (other sessions sharing the
    server) are left out; None counts every process of the server. A backend's title is
    ``postgres: <role> <database> <client> <state>``."""
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is None or int(fields[1]) != postmaster and int(entry.name) != postmaster:
            continue
        title = _cmdline(int(entry.name))
        is_backend = len(title) >= 4 and title[0] == "postgres:" and "(" in title[3]
        if database is not None and is_backend and title[2] != database:
            continue
        found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return found


@dataclass
class Usage:
    cpu_percent: float | None
    """Of one core, averaged over the window; None when the process ended (or was restarted) meanwhile."""
    peak_rss_mb: float | None


@contextmanager
def watch(
    pids: Mapping[str, int], interval: float = 0.2, *, database: str | None = None
) -> Iterator[dict[str, Usage]]:
    """CPU (% of one core) and peak RSS of each process over the ``with`` block. Peak RSS is the kernel's
    VmHWM after resetting it at the start (exact), or the highest sampled RSS where it cannot be reset.

    ``postgres`` (the postmaster's pid) is a server of many processes: its CPU is that of the processes
    working for ``database`` (see ``postgres_cpu``), sampled every second so that a backend that ends
    within the block keeps all but its last second, and it has no peak RSS."""
    result: dict[str, Usage] = {}
    pids = dict(pids)
    postmaster = pids.pop("postgres", None)
    server_start = postgres_cpu(postmaster, database) if postmaster else {}
    exact = {name: _reset_peak(pid) for name, pid in pids.items()}
    start_cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
    sampled = {name: rss_bytes(pid) for name, pid in pids.items()}
    stop = threading.Event()

    server_seen = dict(server_start)

    def sample() -> None:
        ticks = 0
        while not stop.wait(interval):
            for name, pid in pids.items():
                sampled[name] = max(sampled[name], rss_bytes(pid))
            ticks += 1
            if postmaster and ticks % max(1, round(1 / interval)) == 0:
                server_seen.update(postgres_cpu(postmaster, database))

    sampler = threading.Thread(target=sample, daemon=True)
    started = time.monotonic()
    sampler.start()
    try:
        yield result
    finally:
        stop.set()
        sampler.join()
        elapsed = max(time.monotonic() - started, 1e-9)
        if postmaster:
            server_end = {**server_seen, **postgres_cpu(postmaster, database)}
            spent = sum(max(0.0, cpu - server_start.get(pid, 0.0)) for pid, cpu in server_end.items())
            result["postgres"] = Usage(
                cpu_percent=round(100 * spent / elapsed, 1) if server_end else None, peak_rss_mb=None
            )
        for name, pid in pids.items():
            end_cpu = cpu_seconds(pid)
            if end_cpu <= 0 or end_cpu < start_cpu[name]:  # gone: another session restarted it
                result[name] = Usage(cpu_percent=None, peak_rss_mb=None)
                continue
            peak = max(sampled[name], _vm_hwm(pid) if exact[name] else 0)
            result[name] = Usage(
                cpu_percent=round(100 * (end_cpu - start_cpu[name]) / elapsed, 1),
                peak_rss_mb=round(peak / 1_048_576, 1),
            )
