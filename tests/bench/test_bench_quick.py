"""The benchmark harness runs end to end and writes results that parse (`make bench-quick`'s run).

No timing assertions: on a shared machine the numbers of a seconds-long run mean nothing. What must hold
is that every scenario ran (or says why not) and reports numbers, so a full `make bench` can be trusted to.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Stack

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = [
    "1_http_ceiling",
    "2_single_post",
    "3_batch_post",
    "4_consumer",
    "5_freshness",
    "6_queries",
    "7_memory",
    "8_observability",
    "9_postgres_drain",
    "10_postgres_queries",
    "11_stats",
    "12_live_tail",
    "13_ferretdb_postgresql",
    "S_sdk_track",
]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@pytest.mark.e2e
def test_quick_bench_reports_every_scenario_with_numbers(stack: Stack, tmp_path: Path) -> None:
    env = dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS=stack.kafka_bootstrap,
        MONGODB_URI=stack.mongo_uri,
        POSTGRES_DSN=stack.postgres_dsn,
    )
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = f"stdout:\n{done.stdout[-6000:]}\nstderr:\n{done.stderr[-6000:]}"
    assert done.returncode == 0, output
    assert "quick run" in done.stdout.strip().splitlines()[-1], output  # the one-line summary comes last

    results = json.loads((tmp_path / "latest.json").read_text())
    assert results["machine"]["cpu_cores"] >= 1
    assert results["meta"]["plan"]["name"] == "quick"
    for key in SCENARIOS:
        scenario = results["scenarios"].get(key)
        assert scenario is not None, f"{key} missing from the results"
        if scenario["status"] == "not measured":
            assert scenario["reason"].startswith("not measured: "), scenario
            continue
        assert scenario["status"] == "measured", f"{key}: {scenario}"
        numbers = [v for v in scenario["figures"].values() if _is_number(v)]
        assert numbers, f"{key} has no numeric figure: {scenario['figures']}"
        assert scenario["checks"], f"{key} has no summary rows"
        for row in scenario["checks"]:
            assert _is_number(row["value"]), row
            assert row["verdict"] in ("PASS", "MISS", "—"), row
            if row["ceiling"] is not None:
                assert _is_number(row["ratio"]), row

    markdown = (tmp_path / "latest.md").read_text()
    assert "## Summary" in markdown and "## Machine" in markdown
    for key in SCENARIOS:
        assert f"## {key.split('_', 1)[0]}. " in markdown, f"no section for {key}"
