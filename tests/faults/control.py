"""Crashes and network cuts of the local stack's processes, through its control script (STACK_CONTROL,
scripts/stack.sh): what the polite stop/start of ``Stack`` cannot do. The script acts on the stack its
environment names (STACK_DIR, the ports, a running cluster), which is the one the tests talk to."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StackControl:
    script: str

    def run(self, *args: str) -> float:
        """Runs ``stack.sh args``; returns when it is done (monotonic time)."""
        done = subprocess.run(
            ["bash", self.script, *args], capture_output=True, text=True, timeout=240, check=False
        )
        if done.returncode != 0:
            raise AssertionError(f"stack.sh {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return time.monotonic()

    def kill(self, service: str, node: int | None = None) -> float:
        """SIGKILL (the whole process tree for PostgreSQL), as a crash would; returns once it is dead."""
        return self.run("kill", service, *_node(node))

    def up(self, service: str, node: int | None = None) -> float:
        """Starts it again; returns once it answers (a Kafka node: once registered and unfenced)."""
        return self.run("up", service, *_node(node))

    def cut(self, node: int, *, peers_only: bool = False) -> float:
        """Drops every packet of Kafka node ``node`` (or only those to and from the other nodes)."""
        return self.run("cut", "kafka", str(node), *(["peers"] if peers_only else []))

    def heal(self, node: int | None = None) -> float:
        return self.run("heal", *(["kafka", str(node)] if node is not None else []))

    def node_log(self, node: int) -> Path:
        """The broker log of Kafka node ``node`` of the cluster (as scripts/stack.sh lays it out)."""
        cache = Path(os.environ.get("ACTIVITY_CACHE") or Path.home() / ".cache/activity-service")
        stack_dir = Path(os.environ.get("STACK_DIR") or cache / "stack")
        return stack_dir / "kafka-cluster" / f"node-{node}" / "server.log"


def _node(node: int | None) -> list[str]:
    return [] if node is None else [str(node)]
