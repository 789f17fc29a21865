#!/usr/bin/env bash
# Run the official Durable Streams conformance suite against a chanctl server.
#
#   tests/conformance/run.sh [--port PORT] [-- SERVER COMMAND...] [-- VITEST ARGS...]
#
# The server command may contain {port}, replaced by the port; it must serve plain HTTP on
# 127.0.0.1:PORT with /v1/health, and should use a long-poll timeout of about 0.5 s (the suite
# waits for long-poll timeouts). Default server: the in-memory dev server. The real daemon:
#
#   tests/conformance/run.sh -- chanctl daemon start --foreground --listen 127.0.0.1:{port} \
#       --no-auth --data-dir "$(mktemp -d)" --long-poll-timeout 0.5
#
# The dev server over the local-disk engine: -- python tests/conformance/devserver.py
#   --port {port} --store local
# Extra vitest arguments go after a second "--", e.g. `-- ... -- -t "Stream Closure"`.
# Environment: PYTHON (default: the venv's python, else python3), CONFORMANCE_REPEAT=N to run the
# suite N times against one server (flaky tests count as failures).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
port=4437
if [[ "${1:-}" == "--port" ]]; then port="$2"; shift 2; fi
if [[ "${1:-}" == "--" ]]; then shift; fi

server=()
while [[ $# -gt 0 && "$1" != "--" ]]; do server+=("${1//\{port\}/$port}"); shift; done
if [[ "${1:-}" == "--" ]]; then shift; fi
vitest_args=("$@")

python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$repo/../venv/bin/python" ]]; then python="$repo/../venv/bin/python"; else python=python3; fi
fi
if [[ ${#server[@]} -eq 0 ]]; then
  server=("$python" "$here/devserver.py" --port "$port" --long-poll-timeout 0.5)
fi

(cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

# The server starts from the caller's directory, so relative paths in its command work.
log="$(mktemp -t chanctl-conformance-server.XXXXXX.log)"
"${server[@]}" >"$log" 2>&1 &
server_pid=$!
cleanup() {
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  wait "$server_pid" 2>/dev/null || true
}
trap cleanup EXIT

base="http://127.0.0.1:$port"
for _ in $(seq 150); do
  if curl -fsS "$base/v1/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "server exited before becoming ready; its output:" >&2; cat "$log" >&2; exit 1
  fi
  sleep 0.1
done
curl -fsS "$base/v1/health" >/dev/null || { echo "server not ready at $base" >&2; cat "$log" >&2; exit 1; }

cd "$here"
status=0
for _ in $(seq "${CONFORMANCE_REPEAT:-1}"); do
  CONFORMANCE_TEST_URL="$base" npx vitest run "${vitest_args[@]}" || status=$?
  [[ $status -eq 0 ]] || break
done
if [[ $status -ne 0 ]]; then echo "server log: $log" >&2; else rm -f "$log"; fi
exit "$status"
