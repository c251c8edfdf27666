"""Profile evidence for the results: py-spy samples a service process while the bench loads it.

Profiles are taken in extra runs after the measured ones (same load), never during a measurement, so
the sampler's own cost (it pauses the process for each native stack) does not leak into the figures.
py-spy samples only on-CPU stacks here, so a function's share of the samples is its share of the
process's CPU time. With --native the stacks also show C frames: the tables attribute each sample to
its innermost Python frame, and the share of samples inside the cyclic garbage collector is reported on
its own (it is invisible without --native: its time lands on whatever Python frame allocated). The raw
collapsed stacks are kept next to the results (flamegraph.pl or speedscope read them).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

PY_SPY_RATE = 100
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+)(?::\d+)?\)$")
_NATIVE = re.compile(r"\.(c|h|cc|cpp|pyx|pxd)$|\.so\b")


def ensure_py_spy(say: Any) -> str | None:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if found:
        return found
    say("py-spy is missing: installing it into the virtualenv (pip install py-spy), for the profiles")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "py-spy"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        say(f"could not install py-spy ({done.stderr.strip()[-300:]}); the results will have no profiles")
        return None
    return shutil.which("py-spy", path=str(Path(sys.executable).parent))


class Sampler:
    """``py-spy record --native`` attached to one process for ``seconds``."""

    def __init__(self, py_spy: str, pid: int, output: Path, seconds: float) -> None:
        self.output = output
        self._process = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(PY_SPY_RATE),
                "--duration",
                str(max(1, round(seconds))),
                "--format",
                "raw",
                "--native",
                "--output",
                str(output),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def finish(self, top: int = 25) -> dict[str, Any]:
        try:
            out, _ = self._process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            out, _ = self._process.communicate()
        if self._process.returncode != 0 or not self.output.exists():
            return {"error": f"py-spy failed ({self._process.returncode}): {out.strip()[-300:]}"}
        return summarize(self.output, top)


def _frame(raw: str) -> tuple[str, str]:
    match = _FRAME.match(raw.strip())
    if not match:
        return raw.strip(), ""
    return match["func"], match["file"]


def package(path: str) -> str:
    """The top-level package of a source file as py-spy prints it (site-packages paths are relative)."""
    for marker in ("site-packages/", "/src/", "/lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/lib/python3.":
                path = path.split("/", 1)[1] if "/" in path else path
    head = path.strip("/").split("/", 1)[0]
    return head[:-3] if head.endswith(".py") else head or "?"


ASLEEP = ("time_sleep (",)
"""Native frames of a thread that is not on the CPU though py-spy reports it: the log flusher asleep in
time.sleep (clock_nanosleep), which py-spy does not count as idle. Such samples are left out."""


def asleep(stack: str) -> bool:
    return any(frame in stack for frame in ASLEEP)


def summarize(path: Path, top: int = 25) -> dict[str, Any]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = collecting = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit() or asleep(stack):
            continue
        count = int(count_text)
        total += count
        every = [_frame(f) for f in stack.split(";")]
        in_gc = any(func.startswith("gc_collect") for func, _ in every)
        collecting += count if in_gc else 0
        frames = [(func, file) for func, file in every if file and not _NATIVE.search(file)] or [("?", "?")]
        seen = set()
        for func, file in frames:
            name = f"{func} ({file})"
            # Inclusive shares only for the service's own functions (where its code sits in the stacks),
            # less the CLI's entry frames, which are under every stack that has a root at all.
            if package(file) == "activity_service" and not file.endswith("cli.py") and name not in seen:
                seen.add(name)
                inclusive[name] += count
        func, file = frames[-1]
        if in_gc:  # the collector's time, whichever allocation happened to trigger it
            func, file = "(cyclic garbage collector)", "gc"
        own[f"{func} ({file})"] += count
        packages[package(file)] += count

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)] if total else []

    return {
        "samples": total,
        "seconds_of_cpu": round(total / PY_SPY_RATE, 2),
        "gc_percent": round(100 * collecting / total, 1) if total else 0.0,
        "self_percent_by_package": share(packages),
        "self_percent_by_function": share(own),
        "inclusive_percent_by_service_function": share(inclusive),
        "raw_stacks": str(path),
    }
