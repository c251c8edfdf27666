"""Run by test_spool: tracks 10,000 events with a spool, writing each seq to stdout once track() returned,
then waits on stdin to be killed."""

from __future__ import annotations

import os
import sys

from activity_client import Client

url, key, spool = sys.argv[1:4]
client = Client(
    url, key, spool_dir=spool, flush_interval=0.02, concurrency=2, backoff_base=0.01, max_backoff=0.05
)
for seq in range(10_000):
    client.track(f"u{seq % 7}", "click", {"seq": seq})
    os.write(1, b"%d\n" % seq)
os.write(1, b"done\n")
sys.stdin.read()
