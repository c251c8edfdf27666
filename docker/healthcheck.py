"""Container health check for both processes of the image, with the standard library only (no curl).

    python /opt/healthcheck.py [api|consumer]

api: GET /health on API_PORT (default 8000). consumer: GET /metrics on CONSUMER_METRICS_PORT (default
9100), the consumer's only HTTP port. Without an argument the role is read from PID 1's command line, so
the image's one HEALTHCHECK serves `activity-service api` and `activity-service consumer` alike.
Exit status 0 when the endpoint answers 2xx within the timeout, 1 otherwise.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

TIMEOUT_SECONDS = 4.0


def role_from_cmdline(cmdline: bytes) -> str:
    """`consumer` when the process was started as `activity-service consumer`, else `api`."""
    args = [part.decode(errors="replace") for part in cmdline.split(b"\0") if part]
    return "consumer" if "consumer" in args[1:] else "api"


def target(role: str, env: Mapping[str, str]) -> str:
    if role == "consumer":
        return f"http://127.0.0.1:{env.get('CONSUMER_METRICS_PORT', '9100')}/metrics"
    return f"http://127.0.0.1:{env.get('API_PORT', '8000')}/health"


def healthy(url: str, timeout: float = TIMEOUT_SECONDS) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status: int = response.status
            return 200 <= status < 300
    except (urllib.error.URLError, OSError):
        return False


def main(argv: Sequence[str]) -> int:
    if argv:
        role = argv[0]
    else:
        with open("/proc/1/cmdline", "rb") as f:
            role = role_from_cmdline(f.read())
    if role not in ("api", "consumer"):
        print(f"healthcheck: unknown role {role!r} (api or consumer)", file=sys.stderr)
        return 2
    url = target(role, os.environ)
    if healthy(url):
        return 0
    print(f"healthcheck: {url} did not answer 2xx", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
