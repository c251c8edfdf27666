"""The entry points take SIGTERM before anything slow: an orchestrator may stop a pod it just made."""

from __future__ import annotations

import ast
import subprocess
import sys

# What importing the CLI module may load: the console script imports it before main() takes the signals.
PROBE = """
import sys
before = set(sys.modules)
import activity_service.interfaces.cli
print(sorted(set(sys.modules) - before))
"""


def test_importing_the_cli_loads_nothing_slow_before_main_takes_the_signals() -> None:
    loaded = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    modules = {name.split(".")[0] for name in ast.literal_eval(loaded)}
    # signal, typing and what they need (a few ms); not asyncio, argparse, pydantic or the service.
    assert modules <= {"signal", "typing", "__future__", "activity_service"} | SMALL, sorted(modules)
    assert not any(name.startswith("activity_service.infrastructure") for name in ast.literal_eval(loaded))


# Loaded by signal and typing themselves.
SMALL = {"_collections", "_functools", "_operator", "_sre", "_typing", "collections", "contextlib"}
SMALL |= {"copyreg", "enum", "functools", "itertools", "keyword", "operator", "re", "reprlib", "types"}
SMALL |= {"warnings"}
