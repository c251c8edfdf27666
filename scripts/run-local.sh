#!/usr/bin/env bash
# `make run`: the API and one consumer in the foreground, against the local stack. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin

"$bin/activity-service" consumer &
consumer=$!
"$bin/activity-service" api &
api=$!

stop() {
  trap - INT TERM
  kill -TERM "$api" "$consumer" 2>/dev/null || true
  wait "$api" "$consumer" 2>/dev/null || true
  echo "[run] API and consumer stopped. The local stack keeps running: make stack-down stops it."
}
trap stop INT TERM

echo "[run] API on http://${API_HOST:-127.0.0.1}:${API_PORT:-8000} (docs at /docs), consumer pid $consumer. Ctrl-C stops both."
# If either process dies, stop the other too rather than serve half a pipeline.
status=0
wait -n "$api" "$consumer" || status=$?
stop
exit "$status"
