"""Whether a command line is one the installed `activity-service` console script accepts.

The real script parses the arguments, then reads the settings; an invalid LOG_LEVEL makes it stop there
(exit 2, before any connection). argparse rejects bad arguments with its usage line instead. So a run
that exits 2 without printing a usage line has accepted the arguments, and nothing was started."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

CONSOLE_SCRIPT = "activity-service"


def console_script() -> Path:
    return Path(sys.executable).with_name(CONSOLE_SCRIPT)


def accepts(args: list[str]) -> bool:
    env = dict(os.environ, LOG_LEVEL="not-a-level")
    with tempfile.TemporaryDirectory() as cwd:  # no .env of the working tree is read
        done = subprocess.run(
            [str(console_script()), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
        )
    return done.returncode == 2 and "usage:" not in done.stderr
