"""What every scenario needs: the plan, the stack, this run's names, the processes, wrk and the results."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activity_service.infrastructure.settings import KafkaSettings, Settings
from bench.machine import stack_pids
from bench.plan import Plan
from bench.procs import Names, Processes, service_env
from bench.profiling import Sampler
from bench.targets import Target


@dataclass
class Context:
    plan: Plan
    kafka: str
    mongo: str
    run_id: str
    procs: Processes
    wrk: str
    extra_env: dict[str, str]
    postgres: str = ""
    """The DSN of a PostgreSQL database the bench's role can connect to (it creates its own beside it)."""
    py_spy: str | None = None
    """Set when the run takes profiles (default); None with --no-profile or without py-spy."""
    profile_dir: Path | None = None
    results: dict[str, Any] = field(default_factory=dict)
    generation: int = 0
    disturbed: set[str] = field(default_factory=set)
    """Scenarios during which the broker or the database was restarted by someone else."""
    started: float = field(default_factory=time.monotonic)

    def say(self, message: str) -> None:
        print(f"[bench {time.monotonic() - self.started:6.1f}s] {message}", flush=True)

    @property
    def stack_pids(self) -> dict[str, int]:
        """The broker's and database's processes, read afresh: tests sharing the stack restart them."""
        return stack_pids()

    def names(self, phase: str) -> Names:
        """A phase's names; a phase run again after the stack went down gets new ones."""
        return Names.of(self.run_id, phase + (f"r{self.generation}" if self.generation else ""))

    @property
    def ferretdb(self) -> Target:
        """The local stack's MongoDB: FerretDB on SQLite (or whatever MONGODB_URI names)."""
        return Target("mongodb", "FerretDB (SQLite)", self.mongo)

    @property
    def postgresql(self) -> Target:
        return Target("postgresql", "PostgreSQL", self.postgres)

    def env(self, names: Names, target: Target | None = None, **overrides: str) -> dict[str, str]:
        """A service process's environment for this phase, storing into ``target`` (default: FerretDB)."""
        return service_env(
            {"kafka": self.kafka, "mongo": self.mongo},
            names,
            self.plan.partitions,
            {**(target or self.ferretdb).env(names.database), **self.extra_env, **overrides},
        )

    def settings(self, names: Names, target: Target | None = None) -> Settings:
        """Settings as the service processes of this phase see them (same environment, same names)."""
        settings = Settings(
            kafka=KafkaSettings(
                bootstrap_servers=self.kafka,
                topic=names.topic,
                consumer_group=names.group,
                topic_partitions=self.plan.partitions,
            ),
        )
        return (target or self.ferretdb).apply(settings, names.database)

    def sampler(self, pid: int, name: str, seconds: float) -> Sampler | None:
        """py-spy on ``pid`` for ``seconds``, when this run takes profiles."""
        if self.py_spy is None or self.profile_dir is None:
            return None
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        return Sampler(self.py_spy, pid, self.profile_dir / f"{name}.txt", seconds)

    @property
    def timestamp(self) -> str:
        """The `timestamp` of every generated activity: the start of the run (never in the future)."""
        return self.results["meta"]["timestamp_of_events"]  # type: ignore[no-any-return]


def eprint(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
