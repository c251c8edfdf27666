"""One bench run: the phases in order, each on fresh names, results written whatever fails."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    budget,
    cluster,
    counts,
    ferretdb_pg,
    ingest,
    observability,
    persistence,
    pg_queries,
    pipeline,
    queries,
    report,
    sdk_track,
    tail,
    wrk,
)
from bench.broker import delete_topics
from bench.context import Context, eprint
from bench.data import now_millis
from bench.errors import BenchError
from bench.machine import describe, stack_pids
from bench.plan import Plan
from bench.procs import Processes
from bench.profiling import ensure_py_spy
from bench.stack import preflight, problem, wait_until_up
from bench.store import drop_databases
from bench.targets import drop_pg_databases, pg_problem, pg_version

NOTES = [
    "All processes share this machine's cores (the broker and the database too), so the ingest "
    "scenarios (1, 2, 3, 8) run with the consumer stopped (API + broker only) and the persistence "
    "scenarios (4, 9 and 13's drain) run with no API process (consumer + broker + database only); "
    "scenarios 6, 10, 11 and 12 run the API with the consumer stopped; scenarios 5 and 7 run both, as "
    "they measure the pipeline.",
    "Each phase uses its own fresh topic, consumer group and database (bench_<run>_<phase>, on FerretDB "
    "or on PostgreSQL); all are deleted at the end of the run.",
    "The PostgreSQL server is the local stack's, shared with other sessions' tests: its CPU figures count "
    "only the processes working for the phase's database (its backends) and the server's background "
    "processes (WAL writer, checkpointer, background writer, autovacuum).",
    "Load comes from wrk (one thread, fixed connections, pre-built requests cycled from a Lua script; "
    "closed loop unless said 'paced'), with a warm-up run before every measured run. Latency "
    "percentiles are wrk's, from request sent to response received.",
    "The API runs as `activity-service api` (one uvicorn worker, the service's own server settings) "
    "with the production defaults: authentication on (one bench key, `Authorization: Bearer`), the rate "
    "limiter on (memory://, as shipped; its limits raised to 1e8 so the bench's one key is never refused, "
    "so every request pays the limiter's work and none is answered 429), access log on, metrics on.",
    "CPU figures are % of one core over the measured window (so 100 = one core busy); peak RSS is "
    "the kernel's VmHWM after resetting it at the start of the window.",
]


def _settings_table(plan: Plan, extra: dict[str, str]) -> dict[str, str]:
    from activity_service.infrastructure.settings import Settings

    s = Settings()
    table = {
        "KAFKA_TOPIC_PARTITIONS": str(plan.partitions),
        "KAFKA_PRODUCER_LINGER_MS": str(s.kafka.producer_linger_ms),
        "KAFKA_PRODUCER_MAX_BATCH_BYTES": str(s.kafka.producer_max_batch_bytes),
        "producer": "acks=all, enable_idempotence=True (bootstrap._producer)",
        "CONSUMER_MAX_BATCH_RECORDS": str(s.consumer.max_batch_records),
        "CONSUMER_FETCH_TIMEOUT_MS": str(s.consumer.fetch_timeout_ms),
        "CONSUMER_FETCH_MAX_WAIT_MS": str(s.consumer.fetch_max_wait_ms),
        "INGEST_MAX_IN_FLIGHT_EVENTS": str(s.ingest.max_in_flight_events),
        "INGEST_MAX_CONCURRENT_REQUESTS": str(getattr(s.ingest, "max_concurrent_requests", "n/a")),
        "INGEST_MAX_LOOP_LAG_SECONDS": str(getattr(s.ingest, "max_loop_lag_seconds", "n/a")),
        "INGEST_PUBLISH_TIMEOUT_SECONDS": str(s.ingest.publish_timeout_seconds),
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": str(getattr(s, "log_format", "n/a")),
        "METRICS_ENABLED": str(getattr(s, "metrics_enabled", "n/a (no such setting)")),
        "tracing": "off (no OTLP endpoint) except in scenario 8",
        "AUTH_ENABLED": "true (one bench key)",
        "RATE_LIMIT_ENABLED": "true (RATE_LIMIT_EVENTS_PER_SECOND and RATE_LIMIT_BURST 1e8)",
        "API_ACCESS_LOG": str(s.api.access_log),
        "wrk": f"{plan.wrk_threads} thread; single POST {plan.single_connections} connections; batch POST "
        f"{plan.batch_connections} connections x {plan.batch_size} events; overload "
        f"{plan.single_connections * plan.overload_factor} connections",
    }
    table.update(extra)
    return table


def _phase(ctx: Context, keys: list[str], body: Callable[[], Any]) -> Any:
    """Run one phase; a failure is recorded against its scenarios and the run goes on. When the broker or
    the database was restarted under the phase (another session's fault test: the stack is shared), the
    phase runs again on fresh names (up to three attempts); one that succeeded across a restart is marked."""
    attempts = 3
    for attempt in range(1, attempts + 1):
        before = stack_pids()
        try:
            result = body()
        except Exception as exc:  # one broken phase must not lose the other minutes of measurements
            ctx.procs.stop_all()
            message = str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
            ctx.say(f"FAILED {', '.join(keys)}: {(message.splitlines() or [type(exc).__name__])[0]}")
            restarted = (
                stack_pids() != before
                or problem(ctx.kafka, ctx.mongo) is not None
                or asyncio.run(pg_problem(ctx.postgres)) is not None
            )
            if attempt < attempts and restarted:
                ctx.say(
                    "the broker or the database went down during this phase (the stack is shared); "
                    "waiting for it, then running the phase again on fresh names"
                )
                if wait_until_up(ctx.kafka, ctx.mongo) is None and _postgres_up(ctx):
                    ctx.generation += 1
                    ctx.results["meta"]["notes"].append(
                        f"Scenario(s) {', '.join(report.number(k) for k in keys)} ran again "
                        f"(attempt {attempt + 1}): "
                        f"the broker or the database went down under attempt {attempt} "
                        f"({(message.splitlines() or [''])[0][:200]}), "
                        "restarted by another session sharing the stack. Only the last attempt is reported."
                    )
                    continue
            if not isinstance(exc, BenchError):
                traceback.print_exc()
            for key in keys:
                ctx.results["scenarios"].setdefault(key, {"title": key, "status": "failed", "error": message})
            return None
        if stack_pids() != before:
            ctx.say(
                f"note: the broker or the database was restarted during {', '.join(keys)}: figures disturbed"
            )
            ctx.disturbed.update(keys)
        return result
    return None


def _postgres_up(ctx: Context, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while asyncio.run(pg_problem(ctx.postgres)) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(2)
    return True


def _scenarios(ctx: Context, scenarios: dict[str, Any], only: set[str] | None) -> None:
    """Every phase in order (or those of the scenarios in ``only``, and what they need: 5, 7 and 12 take
    their load from scenario 2, S compares with scenario 3)."""
    plan = ctx.plan
    if only is not None and only & {"5", "7", "12", "14"}:
        only = only | {"2"}
    if only is not None and "S" in only:
        only = only | {"3"}

    def wanted(*numbers: str) -> bool:
        return only is None or bool(only & set(numbers))

    one = None
    if wanted("1"):
        one = _phase(ctx, ["1_http_ceiling"], lambda: ingest.http_ceiling(ctx))
        if one:
            scenarios["1_http_ceiling"] = one
    single_eps = None
    pair = None
    if wanted("2", "3"):
        pair = _phase(ctx, ["2_single_post", "3_batch_post"], lambda: ingest.single_and_batch(ctx, one))
        if pair:
            scenarios["2_single_post"], scenarios["3_batch_post"] = pair
            single_eps = pair[0]["figures"]["events_per_second"]
    if wanted("14"):
        fourteen = _phase(ctx, [cluster.KEY], lambda: cluster.run(ctx, pair))
        if fourteen:
            scenarios[cluster.KEY] = fourteen
    if wanted("8"):
        eight = _phase(ctx, ["8_observability"], lambda: observability.run(ctx))
        if eight:
            scenarios["8_observability"] = eight
    if wanted("5", "7"):
        live = _phase(ctx, ["7_memory", "5_freshness"], lambda: pipeline.run(ctx, single_eps))
        if live:
            scenarios["7_memory"], scenarios["5_freshness"] = live
    if wanted("12"):
        twelve = _phase(ctx, ["12_live_tail"], lambda: tail.run(ctx, single_eps))
        if twelve:
            scenarios["12_live_tail"] = twelve
    if wanted("4"):
        drained = _phase(ctx, ["4_consumer"], lambda: persistence.drain(ctx))
        if drained:
            scenarios["4_consumer"] = drained
            four = _phase(ctx, ["4_consumer"], lambda: persistence.with_ceiling(ctx, drained))
            scenarios["4_consumer"] = four or {
                **drained,
                "status": "failed",
                "error": "the raw insert_many ceiling failed; see the run's output and logs",
            }
    if wanted("9"):
        drained = _phase(
            ctx,
            ["9_postgres_drain"],
            lambda: persistence.drain(
                ctx, ctx.postgresql, phase="pgdrain", events=plan.pg_drain_events, number="9"
            ),
        )
        if drained:
            scenarios["9_postgres_drain"] = drained
            nine = _phase(ctx, ["9_postgres_drain"], lambda: persistence.with_pg_ceiling(ctx, drained))
            scenarios["9_postgres_drain"] = nine or {
                **drained,
                "status": "failed",
                "error": "the asyncpg bulk insert ceiling failed; see the run's output and logs",
            }
    if wanted("6"):
        six = _phase(ctx, ["6_queries"], lambda: queries.run(ctx))
        if six:
            scenarios["6_queries"] = six
    if wanted("S"):  # the Python SDK: track() latency, and one client's throughput against scenario 3
        sdk = _phase(ctx, ["S_sdk_track"], lambda: sdk_track.run(ctx, scenarios.get("3_batch_post")))
        if sdk:
            scenarios["S_sdk_track"] = sdk
    stats_pg = stats_mongo = None
    if wanted("10", "11"):
        pair = _phase(ctx, ["10_postgres_queries", "11_stats"], lambda: pg_queries.run(ctx))
        if pair:
            scenarios["10_postgres_queries"], stats_pg = pair
    if wanted("11"):
        stats_mongo = _phase(ctx, ["11_stats"], lambda: counts.mongo(ctx))
    if stats_pg or stats_mongo:
        scenarios["11_stats"] = counts.combine(ctx, stats_pg, stats_mongo)
    if wanted("13"):
        thirteen = _phase(ctx, ["13_ferretdb_postgresql"], lambda: ferretdb_pg.run(ctx, scenarios))
        if thirteen:
            scenarios["13_ferretdb_postgresql"] = thirteen


def run(
    plan: Plan,
    out: Path,
    kafka: str,
    mongo: str,
    postgres: str,
    extra_env: dict[str, str],
    command: str,
    profile: bool,
    only: set[str] | None = None,
) -> int:
    preflight(kafka, mongo)
    found = asyncio.run(pg_problem(postgres))
    if found:
        raise BenchError(found)
    run_id = f"{datetime.now(UTC):%m%d%H%M}{uuid.uuid4().hex[:4]}"
    logs = Path(tempfile.mkdtemp(prefix=f"bench-{run_id}-"))
    os.environ.update(extra_env)  # the bench's own producer and clients see what the services see
    started_at = datetime.now(UTC)
    ctx = Context(
        plan=plan,
        kafka=kafka,
        mongo=mongo,
        run_id=run_id,
        procs=Processes(logs),
        wrk="",
        extra_env=extra_env,
        postgres=postgres,
    )
    ctx.say(f"run {run_id} ({plan.name}): logs in {logs}; results to {out}")
    ctx.wrk = wrk.ensure_wrk(ctx.say)
    if profile:
        ctx.py_spy = ensure_py_spy(ctx.say)
        ctx.profile_dir = out / "profiles"
    results: dict[str, Any] = {
        "meta": {
            "run_id": run_id,
            "plan": plan.as_dict(),
            "started_at": started_at.isoformat(timespec="seconds"),
            "command": command,
            "timestamp_of_events": now_millis().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "notes": list(NOTES),
            "settings": _settings_table(plan, extra_env),
            "logs": str(logs),
        },
        "machine": {**describe(mongo, wrk.version(ctx.wrk)), "postgresql": asyncio.run(pg_version(postgres))},
        "scenarios": {},
    }
    ctx.results = results
    scenarios = results["scenarios"]
    if only is not None:
        results["meta"]["notes"].append(
            f"PARTIAL RUN: only scenarios {', '.join(sorted(only, key=_scenario_order))} (and what they "
            "need) ran."
        )
    try:
        _scenarios(ctx, scenarios, only)
    finally:
        ctx.procs.stop_all()
        _clean_up(ctx)
    finished = datetime.now(UTC)
    meta = results["meta"]
    meta["finished_at"] = finished.isoformat(timespec="seconds")
    meta["duration_seconds"] = round((finished - started_at).total_seconds(), 1)
    _reductions(ctx)
    for key in sorted(ctx.disturbed & scenarios.keys()):
        scenarios[key]["disturbed"] = (
            "the broker or the database was restarted during this scenario by another session sharing the "
            "stack: its figures are disturbed; run the bench again when the stack is quiet"
        )
    rows = report.summary_rows(results)
    failed = [k for k, s in scenarios.items() if s.get("status") == "failed"]
    verdicts = [r["verdict"] for r in rows]
    meta["one_line"] = (
        f"{plan.name} run {run_id} in {meta['duration_seconds']:.0f}s: {verdicts.count('PASS')} targets met, "
        f"{verdicts.count('MISS')} missed, {len(failed)} scenarios failed"
        + (f" ({', '.join(failed)})" if failed else "")
    )
    md, js = report.write(results, out)
    ctx.say(f"wrote {md} and {js}")
    for row in rows:
        if row["verdict"] != "—":
            ratio = f" (ratio {report.fmt(row['ratio'])})" if row["ratio"] is not None else ""
            ctx.say(
                f"  {row['verdict']}  {report.number(row['scenario'])}. {row['figure']}: "
                f"{report.fmt(row['value'])} {row['unit']}{ratio}"
            )
    for line in budget.markdown(results, out)[2:]:  # the table, without its prose
        ctx.say(line)
    print(meta["one_line"], flush=True)
    if failed:
        eprint(f"bench: {len(failed)} scenario(s) failed; their errors are in {md}. Logs: {ctx.procs.logs}")
        return 1
    shutil.rmtree(logs, ignore_errors=True)
    return 0


def _scenario_order(number: str) -> tuple[int, str]:
    """Numbered scenarios by number, then the lettered ones (S)."""
    return (int(number), "") if number.isdigit() else (1_000, number)


def _reductions(ctx: Context) -> None:
    plan, notes = ctx.plan, ctx.results["meta"]["notes"]
    if plan.name == "quick":
        notes.append(
            "QUICK RUN: tiny counts and seconds-long runs, only to prove the harness works; its "
            "numbers are not measurements."
        )
        return
    if plan.drain_events < 1_000_000:
        notes.append(
            f"Scenario 4 drains {plan.drain_events:,} events, not 1M: on FerretDB inserts slow down as the "
            "collection grows, and a 1M drain plus its 1M raw-insert ceiling took 7 minutes on this machine "
            "(run 112605121dd1: 236 s draining at 4,226 events/s, 190 s inserting at 5,268 events/s), which "
            "with the other scenarios overruns the ~10-minute budget. The ceiling inserts as many documents, "
            "so both see the same collection sizes."
        )
    if plan.drain_ceiling_events != plan.drain_events:
        notes.append(
            f"Scenario 4's ceiling inserts {plan.drain_ceiling_events:,} documents, not "
            f"{plan.drain_events:,}, to keep the run within ~10 minutes."
        )
    if plan.pg_drain_events < 1_000_000:
        notes.append(
            f"Scenario 9 drains {plan.pg_drain_events:,} events into PostgreSQL, not 1M: its ceiling writes "
            f"the same rows four times over ({plan.pg_ceiling_events:,} a variant), and 1M meant 5M rows "
            "written, over ten minutes for this scenario alone. Scenario 10 reads "
            f"{plan.pg_query_events:,} rows."
        )
    notes.append(
        f"Scenario 6 queries {plan.query_events:,} stored events, not 1M: on FerretDB every list query is a "
        "full scan (see scenario 6), so a single first page over 1M would take over a minute and p50/p99 "
        "over 1M would not fit the run's budget. The per-1,000-events cost it reports extrapolates linearly."
    )


def _clean_up(ctx: Context) -> None:
    prefix = f"bench_{ctx.run_id}_"

    def bounded(step: Any) -> Any:  # a broker that never answers must not hold the results back
        return asyncio.run(asyncio.wait_for(step, timeout=120))

    try:
        topics = bounded(delete_topics(ctx.kafka, prefix))
        databases = bounded(drop_databases(ctx.mongo, prefix))
        databases += bounded(drop_pg_databases(ctx.postgres, prefix))
        ctx.say(f"cleaned up {len(topics)} topics and {len(databases)} databases of this run")
    except (Exception, TimeoutError) as exc:  # the results matter more than the clean-up: say what is left
        ctx.say(
            f"could not clean up ({type(exc).__name__}: {exc}); topics and databases named {prefix}* remain"
        )
