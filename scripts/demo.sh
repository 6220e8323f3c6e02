#!/usr/bin/env bash
# The demo: a fresh SQLite database in demo/, some work triggered, a burst worker, what ran.
set -euo pipefail
flowjobs="${1:-flowjobs}"
cd "$(dirname "$0")/.."
rm -rf demo && mkdir demo
export FLOWJOBS_DATABASE_URL="sqlite:///demo/flowjobs.db"
"$flowjobs" db upgrade
for name in Ada Grace Edsger; do
  "$flowjobs" trigger hello-world --payload "{\"customer\": \"$name\"}" >/dev/null
done
"$flowjobs" trigger hello-world --payload '{"customer": "Ada"}' --idempotency-key welcome-ada >/dev/null
"$flowjobs" trigger hello-world --payload '{"customer": "Ada"}' --idempotency-key welcome-ada >/dev/null  # deduplicated
"$flowjobs" trigger noop --delay 1s >/dev/null
echo "== running the worker until no run is due =="
"$flowjobs" --log-level warning run-worker --burst
sleep 1.1   # the delayed run becomes due
"$flowjobs" --log-level warning run-worker --burst
echo "== what ran =="
"$flowjobs" runs list
echo
echo "Inspect one: $flowjobs runs show <run id>   (database: demo/flowjobs.db)"
