#!/usr/bin/env bash
# The demo: a fresh SQLite database in demo/, a local Stripe test server (localstripe on a free
# loopback port, stopped at the end), demo customers whose first billing runs are due, the
# hourly cron fired once, a burst worker until nothing is due, one-time checkout purchases paid
# at Stripe and recorded from their payment_intent.succeeded events (`events fetch`), and a summary.
#
# Every command reads demo/flowjobs.toml (database, PDFs, emails — paths relative to demo/):
# the closing hints print FLOWJOBS_CONFIG=demo/flowjobs.toml so they read the same database.
set -euo pipefail
flowjobs="${1:-flowjobs}"
python="$(dirname "$flowjobs")/python"
cd "$(dirname "$0")/.."
rm -rf demo && mkdir demo
cat > demo/flowjobs.toml <<'TOML'
# Written by `make demo` (scripts/demo.sh): the demo's database, PDFs and emails, relative to
# this folder. Use it with FLOWJOBS_CONFIG=demo/flowjobs.toml (or --config demo/flowjobs.toml).
[database]
url = "sqlite:///flowjobs.db"

[documents]
dir = "documents"

[mail]
transport = "file"
dir = "mail"

[stripe]
test_api_key = "sk_test_flowjobs_demo"   # localstripe's: the demo's Stripe stops with the demo
TOML
export FLOWJOBS_CONFIG="demo/flowjobs.toml"

"$python" scripts/localstripe_server.py --port 0 > demo/localstripe.out 2> demo/localstripe.log &
stripe_pid=$!
trap 'kill $stripe_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q listening demo/localstripe.out 2>/dev/null && break; sleep 0.1; done
export FLOWJOBS_STRIPE_API_BASE="$(awk '{print $3}' demo/localstripe.out)"
[ -n "$FLOWJOBS_STRIPE_API_BASE" ] || { echo "localstripe did not start:" >&2; cat demo/localstripe.log >&2; exit 1; }
# the config names it too: a worker later started with this file (the closing hints) reaches the
# demo's stopped Stripe and says so, and never sends the demo's retries to api.stripe.com
cat >> demo/flowjobs.toml <<TOML
# The demo's local Stripe test server (localstripe), stopped when the demo ended, and with it the
# customers and cards it held (in memory). Named here on purpose: a command that calls Stripe with
# this file (a worker charging the declined renewals' retries, billing adjust, events fetch,
# doctor) says it cannot reach Stripe at this address, instead of sending the demo's ids and key
# to api.stripe.com. \`make demo\` again makes a new database and a new server.
api_base = "$FLOWJOBS_STRIPE_API_BASE"
TOML
echo "== local Stripe test server: $FLOWJOBS_STRIPE_API_BASE =="

"$flowjobs" db upgrade
"$flowjobs" demo seed --customers 12 --declining 3 --purchases 3
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
echo "== one-time purchases: paid at checkout (Stripe); their payment_intent.succeeded events fetched =="
# no webhook endpoint in the demo: the events are read back from Stripe's Events API, as an
# operator recovers events an endpoint missed (events already handled are duplicates)
"$flowjobs" events fetch --type payment_intent.succeeded --since 1h
"$flowjobs" --log-level error run-worker --burst
"$python" - <<'PY'
import sqlite3
from flowjobs.billing.money import format_money
db = sqlite3.connect("demo/flowjobs.db")
for name, customer, purchase, invoice, number, status, amount, currency, payment, receipt in db.execute(
    "select p.name, c.name, p.status, i.id, i.invoice_number, i.status, y.amount, y.currency, y.status,"
    " y.receipt_url from purchases p join customers c on c.id = p.customer_id"
    " join invoices i on i.purchase_id = p.id join payments y on y.invoice_id = i.id order by c.name"):
    print(f"{customer}: {name} — purchase {purchase}, invoice {number} {status}, "
          f"{format_money(amount, currency)} {payment}")
    print(f"    receipt: {(receipt or 'not rendered').removeprefix('file://')}")
PY
echo
echo "== what the billing jobs did =="
"$flowjobs" billing summary
echo
echo "== runs =="
"$flowjobs" runs list --limit 15
echo
read -r invoice run < <("$python" -c 'import sqlite3; db = sqlite3.connect("demo/flowjobs.db"); print(
  db.execute("select id from invoices where type = ? order by invoice_number limit 1", ("purchase",)).fetchone()[0],
  db.execute("select id from flowjobs_runs where task = ? order by created_at desc limit 1", ("attempt-billing-run",)).fetchone()[0])')
echo "Invoices and receipts: demo/documents/   emails (.eml): demo/mail/"
echo "Look closer (demo/flowjobs.toml names the demo's database):"
echo "  FLOWJOBS_CONFIG=demo/flowjobs.toml $flowjobs billing show subscription $sub"
echo "  FLOWJOBS_CONFIG=demo/flowjobs.toml $flowjobs billing show invoice $invoice"
echo "  FLOWJOBS_CONFIG=demo/flowjobs.toml $flowjobs runs show $run"
echo "(database: demo/flowjobs.db. The renewals on card 4000000000000341 were declined: their"
echo " subscriptions are past_due with a retry billing run in 3 days — see docs/billing.md)"
echo "Stripe: the demo's local test server at $FLOWJOBS_STRIPE_API_BASE stops with the demo, and"
echo "  the customers and cards it held with it. demo/flowjobs.toml still names it, so nothing of the"
echo "  demo's goes to api.stripe.com: commands that call Stripe with that file (run-worker charging"
echo "  the retries, billing adjust, events fetch, doctor) say it cannot be reached. \`make demo\` again"
echo "  starts afresh."
