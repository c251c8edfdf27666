"""`python -m bench [--quick] [--out DIR] [--env KEY=VALUE ...]`: run the benchmark, write latest.md/json.

Needs the local stack (`make stack-up`): KAFKA_BOOTSTRAP_SERVERS, MONGODB_URI and POSTGRES_DSN say where it
is (default 127.0.0.1:9092, mongodb://127.0.0.1:27017 and postgresql://activity@127.0.0.1:5432/
activity_service: a role that may CREATE DATABASE). `make bench` and `make bench-quick` set all three.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import tempfile
from pathlib import Path

from bench.errors import BenchError
from bench.plan import FULL, QUICK
from bench.procs import ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny counts and durations (under a minute): proves the harness works, measures nothing",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="directory for latest.md and latest.json (default: bench/results for a full run, "
        "a temporary directory for --quick, so a quick run never overwrites real results)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra setting for the service processes (and the bench's own clients), recorded "
        "in the results; e.g. --env LOG_LEVEL=WARNING",
    )
    parser.add_argument(
        "--only",
        metavar="N,N,...",
        help="run only these scenarios (numbers, e.g. 9,10,11, or S for the SDK) and what they need; "
        "for experiments",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="change one count or duration of the plan (bench/plan.py), e.g. --set pg_drain_events=200000; "
        "recorded in the results",
    )
    parser.add_argument(
        "--no-profile",
        action="store_true",
        help="skip the py-spy profiles (extra unmeasured runs that explain the missed targets)",
    )
    args = parser.parse_args(argv)
    extra = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--env wants KEY=VALUE, not {item!r}")
        extra[key] = value
    plan = QUICK if args.quick else FULL
    changes = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or key not in plan.as_dict() or key == "name":
            parser.error(f"--set wants FIELD=VALUE with a field of bench/plan.py's Plan, not {item!r}")
        kind = type(plan.as_dict()[key])
        changes[key] = kind(value)
    if changes:
        plan = dataclasses.replace(plan, **changes)
    out = args.out or (
        Path(tempfile.gettempdir()) / "activity-service-bench-quick"
        if args.quick
        else ROOT / "bench" / "results"
    )
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    mongo = os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017")
    postgres = os.environ.get("POSTGRES_DSN", "postgresql://activity@127.0.0.1:5432/activity_service")
    command = "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    from bench.run import run  # after argument parsing, so --help works without the service installed

    try:
        return run(
            plan,
            out.resolve(),
            kafka,
            mongo,
            postgres,
            extra,
            command.strip(),
            profile=not args.no_profile,
            only={n.strip() for n in args.only.split(",") if n.strip()} if args.only else None,
        )
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; the processes it started are stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
