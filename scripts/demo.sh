#!/usr/bin/env bash
# The demo: a fresh SQLite database in demo/, a local Stripe test server (localstripe on a free
# loopback port, stopped at the end), demo customers whose first billing runs are due, the
# hourly cron fired once, a burst worker until nothing is due, and a summary of what happened.
set -euo pipefail
flowjobs="${1:-flowjobs}"
python="$(dirname "$flowjobs")/python"
cd "$(dirname "$0")/.."
rm -rf demo && mkdir demo
export FLOWJOBS_DATABASE_URL="sqlite:///demo/flowjobs.db"
export FLOWJOBS_DOCUMENTS_DIR="demo/documents" FLOWJOBS_MAIL_DIR="demo/mail"   # PDFs and .eml files

"$python" scripts/localstripe_server.py --port 0 > demo/localstripe.out 2> demo/localstripe.log &
stripe_pid=$!
trap 'kill $stripe_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q listening demo/localstripe.out 2>/dev/null && break; sleep 0.1; done
export FLOWJOBS_STRIPE_API_BASE="$(awk '{print $3}' demo/localstripe.out)"
export FLOWJOBS_STRIPE_TEST_API_KEY="sk_test_flowjobs_demo"
[ -n "$FLOWJOBS_STRIPE_API_BASE" ] || { echo "localstripe did not start:" >&2; cat demo/localstripe.log >&2; exit 1; }
echo "== local Stripe test server: $FLOWJOBS_STRIPE_API_BASE =="

"$flowjobs" db upgrade
"$flowjobs" demo seed --customers 12 --declining 3
echo "== firing the hourly cron and running the worker until no run is due =="
# the window reaches back 4 days: the renewals' periods ended minutes (or, after a short month,
# days) before now — the default window starts at the top of the current hour and can miss them
since="$("$python" -c 'import datetime as d; print((d.datetime.now(d.timezone.utc) - d.timedelta(days=4)).strftime("%Y-%m-%dT%H:%M:%SZ"))')"
"$flowjobs" schedules trigger hourly-cron --since "$since" >/dev/null
"$flowjobs" --log-level error run-worker --burst
echo "== a plan change: a Starter customer moves to Team (prorated; charged before the switch) =="
read -r sub team < <("$python" -c 'import sqlite3; db = sqlite3.connect("demo/flowjobs.db"); print(
  db.execute("select id from subscriptions where name = ? and status = ? order by id limit 1", ("Starter", "active")).fetchone()[0],
  db.execute("select id from prices where name = ?", ("Team",)).fetchone()[0])')
"$flowjobs" billing adjust "$sub" --price "$team" --dry-run
"$flowjobs" billing adjust "$sub" --price "$team"
"$flowjobs" --log-level error run-worker --burst
"$flowjobs" billing show subscription "$sub" --json | "$python" -c 'import json, sys
from flowjobs.billing.money import format_money
d = json.load(sys.stdin)
runs = ", ".join(("adjustment " if r["is_adjustment"] else "") + r["status"] for r in d["billingRuns"])
pays = ", ".join(format_money(p["amount"], p["currency"]) + " " + p["status"] for p in d["payments"])
print("now on " + d["subscription"]["name"] + "; billing runs: " + runs + "; payments: " + pays)'
echo
echo "== what the billing jobs did =="
"$flowjobs" billing summary
echo
echo "== runs =="
"$flowjobs" runs list --limit 15
echo
echo "Invoices and receipts: demo/documents/   emails (.eml): demo/mail/"
echo "Look closer: $flowjobs billing show subscription <id>   $flowjobs runs show <run id>"
echo "(database: demo/flowjobs.db. The renewals on card 4000000000000341 were declined: their"
echo " subscriptions are past_due with a retry billing run in 3 days — see docs/billing.md)"
