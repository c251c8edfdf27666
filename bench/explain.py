"""The prose of the results, derived from the measurements of the same run: what the database can index,
why each missed target is missed (with the profile evidence), and the profiles themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _num(value: Any, digits: int = 0) -> str:
    return "?" if value is None else f"{value:,.{digits}f}"


def _share(profile: dict[str, Any] | None, key: str, name: str) -> float:
    """A package's self share, or the summed inclusive share of the service functions matching ``name``."""
    if not profile or "error" in profile:
        return 0.0
    rows = profile.get(key, [])
    return round(max((share for label, share in rows if label.startswith(name)), default=0.0), 1)


def _gc(profile: dict[str, Any] | None) -> float | None:
    return None if not profile or "error" in profile else profile.get("gc_percent")


def _top(profile: dict[str, Any] | None, count: int = 5) -> str:
    if not profile or "error" in profile:
        return "no profile was taken (--no-profile, or py-spy unavailable)"
    rows = profile["self_percent_by_function"][:count]
    if not rows:
        return "no samples (the process was idle, waiting)"
    return "; ".join(f"`{label.split(' (')[0]}` {share}%" for label, share in rows)


def capabilities(queries: dict[str, Any], prose: bool = True) -> list[str]:
    """The explain table of scenario 6 (or 13's queries), and, for FerretDB on SQLite, what it implies."""
    plans: dict[str, Any] = queries["details"]["explain"]
    figures = queries["figures"]
    lines = ["What the database did with each query shape (its own `explain`):", ""]
    lines += ["| shape | filter pushdown | sort pushdown | limit pushdown | plan |", "|---|---|---|---|---|"]
    for shape, plan in plans.items():
        planner = plan.get("queryPlanner", {})
        steps = (
            "; ".join(planner["Plan"])
            if isinstance(planner, dict) and "Plan" in planner
            else str(planner)[:80]
        )
        lines.append(
            f"| {shape} | {plan.get('filterPushdown', '?')} | {plan.get('sortPushdown', '?')} | "
            f"{plan.get('limitPushdown', '?')} | {steps} |"
        )
    if not prose or not any("filterPushdown" in p for p in plans.values()):
        return lines
    per_1000 = figures["first_page_ms_per_1000_docs"]
    lines += [
        "",
        "What FerretDB 1.24 on SQLite can and cannot index: it creates the service's three compound "
        "indexes as SQLite expression indexes (so every insert maintains them), but the SQL it generates "
        "uses none of them. It pushes down only an `_id` equality filter (and even that runs as a table "
        "SCAN: the plan above), never a sort, and a limit only when there is neither a filter nor a sort. "
        "So every list request reads and decodes every stored document, filters and sorts them in Go, then "
        "skips and limits; page mode's `total` is one more full scan; a get by id scans the table in SQLite.",
        "",
        "How that bounds the numbers: a page costs time proportional to the collection, whatever the filter "
        f"or the depth. Here a first page (page mode) cost {per_1000} ms per 1,000 stored events; linearly, "
        f"about {_num(per_1000, 1)} s a page at 1M events, which is why this scenario stores "
        f"{figures['stored_events']:,} events and not 1M (p50/p99 over 1M would take most of an hour). For "
        "the same reason the deep cursor page cannot be cheaper than the first page here: both read "
        "everything, and the cursor's keyset condition is evaluated on every row. On MongoDB the same "
        "requests are index range scans (each index ends in the sort keys), so these numbers bound "
        "FerretDB, not the query design.",
    ]
    return lines


def pg_plans(scenario: dict[str, Any]) -> list[str]:
    """Scenarios 10 and 11 on PostgreSQL: EXPLAIN (ANALYZE, BUFFERS) of the statements behind each shape."""
    plans: dict[str, list[dict[str, Any]]] = scenario["details"].get("explain", {})
    if not plans:
        return []
    lines = [
        "What PostgreSQL did with the statements the adapters send for each shape (EXPLAIN (ANALYZE, "
        "BUFFERS), run after the measured requests, warm cache):",
        "",
        "| shape | statement | server ms | index scans | Sort node | buffers |",
        "|---|---|---|---|---|---|",
    ]
    for shape, statements in plans.items():
        for n, plan in enumerate(statements, start=1):
            sql = plan["sql"]
            kind = "count" if "count(*)" in sql else ("counts" if "activity_counts" in sql else "rows")
            indexes = ", ".join(plan["index_scans"]) or "—"
            lines.append(
                f"| {shape} | {n} ({kind}) | {plan['execution_ms']} | {indexes} | "
                f"{'yes' if plan['has_sort_node'] else 'no'} | {plan['shared_buffers_hit_read'] or '—'} |"
            )
    lines.append("")
    for shape, statements in plans.items():
        for n, plan in enumerate(statements, start=1):
            lines += [
                f"<details><summary>{shape}, statement {n}</summary>",
                "",
                "```sql",
                plan["sql"],
                "-- parameters: " + ", ".join(plan["parameters"]),
                "```",
                "```",
                *plan["plan"],
                "```",
                "</details>",
                "",
            ]
    return lines


def _single(results: dict[str, Any]) -> str:
    two = results["scenarios"]["2_single_post"]
    f = two["figures"]
    one = results["scenarios"].get("1_http_ceiling", {}).get("figures", {})
    profile = two["details"].get("profile")
    api_us, ceiling_us = f.get("api_cpu_us_per_event"), one.get("server_cpu_us_per_request")
    senders = results["meta"]["plan"]["single_connections"]
    raw_rate = _num(f["raw_producer_single_sends_events_per_second"])
    broker = (
        f"It is not the broker: the raw producer with the same {senders} concurrent senders, one event "
        f"each, reached {raw_rate} events/s (ack p50 {f['raw_producer_single_send_p50_ms']} ms). "
    )
    package = "self_percent_by_package"
    ceiling_profile = results["scenarios"].get("1_http_ceiling", {}).get("details", {}).get("profile")
    evidence = (
        f"In the API's profile under this load ({profile['samples'] if profile else 0} samples): aiokafka "
        f"{_share(profile, package, 'aiokafka')}% of its CPU, asyncio (wait/timeout/futures) "
        f"{_share(profile, package, 'asyncio')}%; top self: {_top(profile)}. "
    )
    gc_api, gc_ceiling = _gc(profile), _gc(ceiling_profile)
    if gc_api is not None and gc_ceiling is not None and api_us and ceiling_us:
        evidence += (
            f"The cyclic garbage collector alone takes {gc_api}% of the API's CPU (about "
            f"{_num(gc_api * api_us / 100)} µs a request) against {gc_ceiling}% in the ceiling server (about "
            f"{_num(gc_ceiling * ceiling_us / 100)} µs): requests that wait milliseconds for the broker keep "
            "their objects alive across collections, so they reach the older generations, whose collections "
            "walk every long-lived object of the process (the frameworks' included)."
        )
    if (f.get("api_cpu_percent") or 0) >= 80 and api_us and ceiling_us:
        extra = api_us - ceiling_us
        return (
            f"The API is CPU-bound ({f['api_cpu_percent']}% of a core): a single POST costs {api_us} µs of "
            f"API CPU against {ceiling_us} µs in the ceiling server, so publishing and awaiting the "
            f"acknowledgment adds {_num(extra)} µs per event ({_num(100 * extra / ceiling_us)}% more), which "
            f"puts the ratio near {ceiling_us / api_us:.2f}. " + broker + evidence
        )
    return (
        f"The API is not CPU-bound ({f.get('api_cpu_percent')}% of a core): each request holds its "
        f"connection until the broker acknowledges (p50 {f['latency_p50_ms']} ms against "
        f"{one.get('latency_p50_ms')} ms without Kafka), and aiokafka keeps one produce request in flight "
        "per broker, so throughput is about connections / latency. " + broker + evidence
    )


def _batch(results: dict[str, Any]) -> str:
    three = results["scenarios"]["3_batch_post"]
    f = three["figures"]
    profile = three["details"].get("profile")
    api_us, raw_us = f.get("api_cpu_us_per_event"), f.get("raw_producer_cpu_us_per_event")
    cap = 1e6 / api_us if api_us else None
    inclusive = "inclusive_percent_by_service_function"
    return (
        f"The API is CPU-bound ({f['api_cpu_percent']}% of one core): {api_us} µs of CPU per event, "
        f"so one worker tops out near {_num(cap)} events/s; the raw producer alone spends {raw_us} µs per "
        f"event. 50,000 events/s on one worker needs at most 20 µs per event, end to end. Where the "
        f"API's CPU goes ({profile['samples'] if profile else 0} samples): aiokafka "
        f"{_share(profile, 'self_percent_by_package', 'aiokafka')}% (appending each record to its "
        "partition's shared record batch, and the produce requests), domain validation "
        "(`ActivityDraft.to_activity`) at least "
        f"{_share(profile, inclusive, 'ActivityDraft.to_activity')}% inclusive, "
        f"schema validation (`parse_item`) at least {_share(profile, inclusive, 'parse_item')}%, the "
        f"publisher at least {_share(profile, inclusive, 'KafkaEventPublisher.publish')}%, the cyclic "
        f"garbage collector {_gc(profile)}%; "
        f"top self: {_top(profile)}."
    )


def _consumer(results: dict[str, Any]) -> str:
    four = results["scenarios"]["4_consumer"]
    f = four["figures"]
    batch = int(results["meta"]["settings"].get("CONSUMER_MAX_BATCH_RECORDS", "500"))
    per_batch = 1000 * batch / f["events_per_second"] if f["events_per_second"] else None
    own = ""
    if f.get("consumer_mean_write_ms") is not None:
        own = (
            f"By its own metrics the consumer wrote {f['consumer_batches']:,.0f} batches of "
            f"{f['consumer_mean_batch_events']} events on average, each write taking "
            f"{f['consumer_mean_write_ms']} ms of its {f['consumer_mean_batch_wall_ms']} ms per batch: "
            f"{100 * f['consumer_share_of_time_in_writes']:.0f}% of its time was the insert. "
        )
    return own + (
        f"A batch of {batch} took the consumer {_num(per_batch)} ms end to end against "
        f"{_num(1000 * batch / f['raw_insert_events_per_second'])} ms on average (p50 "
        f"{f['raw_insert_batch_p50_ms']} ms) for the bare insert_many: the difference is what its loop "
        "does not overlap with the insert (the first decode after an empty fetch, waiting for the previous "
        "batch's commit and progress record when they outlast the insert, dead-lettering) plus its writes "
        "taking longer than the bare ones while the broker fetches and the progress records share the "
        "database. "
        f"The consumer used {f['consumer_cpu_percent']}% of a core and the database "
        f"{f.get('database_cpu_percent')}% while draining, against "
        f"{f.get('database_cpu_percent_during_raw_insert')}% "
        "during the raw inserts. Rates as the collection grew: "
        f"drain {_num(f['drain_first_tenth_events_per_second'])} -> "
        f"{_num(f['drain_last_tenth_events_per_second'])} events/s, raw insert "
        f"{_num(f['raw_insert_first_tenth_events_per_second'])} -> "
        f"{_num(f['raw_insert_last_tenth_events_per_second'])} events/s (first -> last tenth). Top self in "
        f"the consumer's profile: {_top(four['details'].get('profile'))}."
    )


def _cursor(results: dict[str, Any]) -> str:
    six = results["scenarios"]["6_queries"]
    plans = six["details"]["explain"].values()
    if any("sortPushdown" in p for p in plans) and not any(p.get("sortPushdown") for p in plans):
        return (
            "No index serves these queries on FerretDB (see the explain table): the first page and the deep "
            "cursor page both scan and sort the whole collection, and the cursor page also evaluates its "
            "keyset condition (`timestamp <= t` and an `$or` on `timestamp`/`_id`) in FerretDB for every "
            "row, which the first page does not. The service's query is a single index range on MongoDB; the "
            "miss is the database's, and it cannot be closed from the service while FerretDB runs the query."
        )
    return "the database does not serve the keyset condition from the index; see the explain table."


def _sdk(results: dict[str, Any]) -> str:
    f = results["scenarios"]["S_sdk_track"]["figures"]
    parts = []
    if f["memory_p99_us"] > 20:
        parts.append(
            f"track() p99 {f['memory_p99_us']} µs with the memory queue against {f['ceiling_p99_us']} µs for "
            "json.dumps + list.append timed the same way (this machine's floor at that percentile); "
            "clients/python/README.md (its bench_sdk.py, against a fake API) puts the rest on the SDK's "
            "sender threads taking the GIL between two calls."
        )
    ceiling, eps = f.get("batch_post_events_per_second"), f["throughput_events_per_second"]
    if eps < 50_000 and ceiling:
        sdk_us, wrk_us = f.get("throughput_api_cpu_us_per_event"), f.get("batch_post_api_cpu_us_per_event")
        api_cpu, sdk_cpu = f["throughput_api_cpu_percent"] or 0, f["throughput_sdk_cpu_percent"] or 0
        busiest = (
            "the API is the bottleneck" if api_cpu >= 80 and api_cpu > sdk_cpu else "neither is saturated"
        )
        parts.append(
            f"Throughput is bounded by the server: scenario 3, the API's own batch path under wrk, reached "
            f"{_num(ceiling)} events/s in this run, so 50,000 is out of any one client's reach here. The "
            f"SDK reached {_num(eps)} events/s with its defaults (batches of 100, gzip), "
            f"{_num(f['throughput_no_gzip_events_per_second'])} uncompressed and "
            f"{_num(f['throughput_batch500_events_per_second'])} with batches of 500; with the "
            f"defaults its process used {sdk_cpu}% of a core and the API {api_cpu}%: {busiest}. The API "
            f"spent {sdk_us} µs of CPU per SDK event (defaults) against {wrk_us} µs per scenario-3 event: "
            "the SDK's events carry a client-chosen id, which the API fingerprints (canonical JSON and "
            "SHA-256) to refuse a conflicting resend, and a sentAt; and at 100 events a request each event "
            "bears five times the per-request cost it bears at 500 (batches of 500: "
            f"{f.get('throughput_batch500_api_cpu_us_per_event')} µs per event)."
        )
    return " ".join(parts) or "see the scenario's figures above."


_GAPS = {
    "2_single_post": _single,
    "3_batch_post": _batch,
    "4_consumer": _consumer,
    "6_queries": _cursor,
    "S_sdk_track": _sdk,
}


def gaps(results: dict[str, Any]) -> list[str]:
    """One paragraph per scenario with a missed target, saying where the remaining gap goes."""
    lines: list[str] = []
    for key, scenario in results["scenarios"].items():
        missed = [row for row in scenario.get("checks", []) if row["verdict"] == "MISS"]
        if not missed:
            continue
        targets = "; ".join(f"{row['figure']} ({row['target']})" for row in missed)
        explain = _GAPS.get(key)
        try:
            why = explain(results) if explain else "see the scenario's figures above."
        except (KeyError, TypeError, ZeroDivisionError) as exc:  # a partial run: say what is missing
            why = f"(no explanation: figure {exc} missing from this run)"
        lines += [f"- **{key.split('_', 1)[0]}. {targets}**: {why}", ""]
    return lines


def profiles(results: dict[str, Any], out: Path) -> list[str]:
    lines: list[str] = []
    for key, scenario in results["scenarios"].items():
        profile = scenario.get("details", {}).get("profile") if scenario.get("status") == "measured" else None
        if not profile:
            continue
        if "error" in profile:
            lines += [f"### {key.split('_', 1)[0]}. {profile['error']}", ""]
            continue
        raw = Path(profile["raw_stacks"])
        where = raw.relative_to(out) if raw.is_relative_to(out) else raw
        lines += [
            f"### {key.split('_', 1)[0]}. {scenario['title']}",
            "",
            f"{profile['samples']} samples ({profile['seconds_of_cpu']} s of CPU), "
            f"{profile.get('gc_percent', '?')}% of them in the cyclic garbage collector; raw stacks: "
            f"`{where}` (flamegraph.pl or speedscope.app read them).",
            "",
            "Self time by package: "
            + ", ".join(f"{name} {share}%" for name, share in profile["self_percent_by_package"][:8]),
            "",
            "| self % | function |",
            "|---|---|",
        ]
        lines += [f"| {share} | `{label}` |" for label, share in profile["self_percent_by_function"][:10]]
        lines += ["", "| inclusive % (service code) | function |", "|---|---|"]
        lines += [
            f"| {share} | `{label}` |"
            for label, share in profile["inclusive_percent_by_service_function"][:8]
        ]
        lines.append("")
    return lines
