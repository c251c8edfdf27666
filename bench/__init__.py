"""The activity-service benchmark harness: `python -m bench` (make bench) and `python -m bench --quick`.

It starts its own API and consumer processes against the local stack, each run with fresh topics and
databases, drives them with wrk (and a raw producer / raw insert_many for the ceilings), and writes
``latest.md`` and ``latest.json``. See bench/README.md.
"""
