#!/usr/bin/env bash
# `make run`: the API and one consumer in the foreground, against the local stack. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin

# A local API key with every scope, made once and kept in a git-ignored file. A key already given in the
# environment or in .env wins.
key_file=.dev-api-key
dev_key=""
if [[ -z "${AUTH_API_KEYS:-}" ]] && ! grep -qs '^AUTH_API_KEYS=' .env; then
  if [[ ! -s "$key_file" ]]; then
    (umask 077 && "$bin/python" -c 'import secrets; print("dev-" + secrets.token_urlsafe(32))' > "$key_file")
  fi
  dev_key=$(<"$key_file")
  export AUTH_API_KEYS="[{\"name\": \"local-dev\", \"key\": \"$dev_key\", \"scopes\": [\"activities:write\", \"activities:read\"]}]"
fi

"$bin/activity-service" consumer &
consumer=$!
"$bin/activity-service" api &
api=$!

stopped=0
stop() {
  [ "$stopped" = 1 ] && return 0  # once: from the Ctrl-C trap, or after either process ended
  stopped=1
  trap - INT TERM
  kill -TERM "$api" "$consumer" 2>/dev/null || true
  wait "$api" "$consumer" 2>/dev/null || true
  echo "[run] API and consumer stopped. The local stack keeps running: make stack-down stops it."
}
trap stop INT TERM

base_url="http://${API_HOST:-127.0.0.1}:${API_PORT:-8000}"
echo "[run] API on $base_url (docs at /docs, explorer at /explorer), consumer pid $consumer. Ctrl-C stops both."
if [[ -n "$dev_key" ]]; then
  echo "[run] local API key (in $key_file; every scope): $dev_key"
  echo "[run] try: curl -i -H 'Authorization: Bearer $dev_key' -H 'Content-Type: application/json'" \
    "-d '{\"userId\": \"user-42\", \"action\": \"page_view\"}' $base_url/api/activities"
fi
# If either process dies, stop the other too rather than serve half a pipeline.
status=0
wait -n "$api" "$consumer" || status=$?
stop
exit "$status"
