"""`make bench`: one JSON line per case, on SQLite and PostgreSQL.

Cases: trigger throughput (one by one, batch); drain of N `noop` runs with 1 and 4 worker
processes; the storage's own limit (a minimal loop that claims and completes rows one
statement each, same database and durability settings) and flowjobs' drain as a ratio of
it; trigger->start latency at a steady rate; an idle worker's CPU and memory; CLI start-up;
billing throughput (the hourly cron over 2,000 due subscriptions, 4 worker processes, localstripe);
invoice PDFs per second and emails per second over SMTP.
Not a test: nothing here passes or fails. BENCH_RUNS (default 20000) sets N.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from datetime import UTC

from pgtmp import pg_server

from flowjobs.config import Settings
from flowjobs.core.client import TriggerItem
from flowjobs.runtime import Runtime

N = int(os.environ.get("BENCH_RUNS", "20000"))
FLOWJOBS = [sys.executable, "-m", "flowjobs", "--log-level", "warning"]


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def runtime(url: str) -> Runtime:
    return Runtime(Settings.model_validate({"database": {"url": url}}))


def fresh(backend: str, pg_url: str | None, tag: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tempfile.mkdtemp(prefix='flowjobs-bench-')}/{tag}.db"
    import psycopg

    with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {tag}")
        conn.execute(f"CREATE DATABASE {tag}")
    return pg_url.rsplit("/", 1)[0] + "/" + tag


def env_for(url: str) -> dict:
    return {**os.environ, "FLOWJOBS_DATABASE_URL": url}


def bench_trigger(backend, url):
    rt = runtime(url)
    count = 2000
    start = time.perf_counter()
    for _ in range(count):
        rt.trigger("noop")
    one = count / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(N // 500):
        rt.client.batch_trigger([TriggerItem("noop") for _ in range(500)])
    batch = (N // 500 * 500) / (time.perf_counter() - start)
    emit(backend=backend, case="trigger", one_by_one_per_s=round(one), batch_per_s=round(batch))
    rt.close()


def drain(backend, url, processes):
    rt = runtime(url)
    for _ in range(N // 500):
        rt.client.batch_trigger([TriggerItem("noop") for _ in range(500)])
    start = time.perf_counter()
    subprocess.run(FLOWJOBS + ["run-worker", "--burst", "--processes", str(processes), "--concurrency", "10"],
                   env=env_for(url), check=True)
    wall = time.perf_counter() - start
    with rt.db.borrow() as conn:
        row = conn.execute("SELECT min(started_at), max(finished_at), count(*) FROM flowjobs_runs "
                           "WHERE status = 'completed'").fetchone()
    rt.close()
    rate = row[2] / ((row[1] - row[0]) / 1000)
    emit(backend=backend, case="drain", processes=processes, runs=row[2], runs_per_s=round(rate),
         wall_s_including_startup=round(wall, 2))
    return rate


def raw_limit(backend, url):
    """Claim and complete rows one statement each, autocommitted, on the bare driver."""
    rt = runtime(url)
    conn = rt.db.connect()
    conn.execute("CREATE TABLE raw_jobs (id BIGINT PRIMARY KEY, status TEXT NOT NULL)")
    conn.execute("CREATE INDEX raw_jobs_q ON raw_jobs (id) WHERE status = 'queued'")
    q = "?" if backend == "sqlite" else "%s"
    if backend == "sqlite":
        conn.executemany("INSERT INTO raw_jobs VALUES (?, 'queued')", [(i,) for i in range(N)])
        claim = ("UPDATE raw_jobs SET status = 'running' WHERE id = (SELECT id FROM raw_jobs "
                 "WHERE status = 'queued' ORDER BY id LIMIT 1) RETURNING id")
    else:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO raw_jobs VALUES (%s, 'queued')", [(i,) for i in range(N)])
        claim = ("UPDATE raw_jobs SET status = 'running' WHERE id = (SELECT id FROM raw_jobs "
                 "WHERE status = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id")
    done = f"UPDATE raw_jobs SET status = 'done' WHERE id = {q}"
    start = time.perf_counter()
    while True:
        row = conn.execute(claim).fetchone()
        if row is None:
            break
        conn.execute(done, (row[0],))
    rate = N / (time.perf_counter() - start)
    conn.close()
    rt.close()
    emit(backend=backend, case="storage_limit", runs_per_s=round(rate),
         note="one claim + one complete statement per row, autocommit, one connection")
    return rate


def latency(backend, url, rate=200, seconds=5):
    rt = runtime(url)
    rt.store
    worker = subprocess.Popen(FLOWJOBS + ["run-worker", "--concurrency", "10"], env=env_for(url))
    time.sleep(1.5)  # let it start before measuring
    start = time.perf_counter()
    for i in range(rate * seconds):
        target = start + i / rate
        pause = target - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        rt.trigger("noop")
    deadline = time.monotonic() + 60
    while rt.store.count_by_status().get("completed", 0) < rate * seconds and time.monotonic() < deadline:
        time.sleep(0.1)
    with rt.db.borrow() as conn:
        lat = [r[0] - r[1] for r in conn.execute(
            "SELECT started_at, created_at FROM flowjobs_runs WHERE started_at IS NOT NULL").fetchall()]
    worker.terminate()
    worker.wait(30)
    rt.close()
    lat.sort()
    emit(backend=backend, case="latency", rate_per_s=rate, runs=len(lat), p50_ms=lat[len(lat) // 2],
         p99_ms=lat[int(len(lat) * 0.99)])


def idle(backend, url, seconds=5):
    runtime(url).store
    worker = subprocess.Popen(FLOWJOBS + ["run-worker"], env=env_for(url))
    time.sleep(2)

    def cpu():
        fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    before = cpu()
    time.sleep(seconds)
    used = cpu() - before
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{worker.pid}/status").read_text().splitlines()
               if line.startswith("VmRSS"))
    worker.terminate()
    worker.wait(30)
    emit(backend=backend, case="idle_worker", cpu_percent_of_core=round(100 * used / seconds, 2),
         rss_mb=round(rss / 1024, 1))


BILLING_SUBSCRIPTIONS = int(os.environ.get("BENCH_SUBSCRIPTIONS", "2000"))


def stripe_limit(stripe_url: str, count: int = 300) -> float:
    """localstripe's own pace: sequential off-session PaymentIntent create+confirm calls per second."""
    from flowjobs.adapters.stripe_gateway import StripeGateway
    from flowjobs.config import StripeSettings

    gateway = StripeGateway(StripeSettings(test_api_key="sk_test_bench", api_base=stripe_url, max_retries=0))
    customer = gateway.create_customer(False, email="limit@bench.example", name="Limit")
    method, _, _ = gateway.attach_card(False, customer=customer, number="4242424242424242")
    start = time.perf_counter()
    for i in range(count):
        gateway.charge_off_session(livemode=False, amount=1000, currency="USD", customer=customer,
                                   payment_method=method, metadata={}, idempotency_key=f"limit-{i}-{start}")
    return count / (time.perf_counter() - start)


def billing(backend, url, processes=4):
    """The hourly cron over BENCH_SUBSCRIPTIONS due subscriptions, 4 worker processes, localstripe.

    Customers share 50 Stripe customers/cards so that seeding stays quick; every billing run is
    its own PaymentIntent. Reported: billing runs per second from the first claim to the last
    settlement, the time until all are settled, and localstripe's own sequential limit.
    """
    from stripe_server import localstripe

    from flowjobs.billing import setup
    from flowjobs.core.clock import iso

    with localstripe() as stripe_url:
        settings = {"database": {"url": url},
                    "stripe": {"test_api_key": "sk_test_bench", "api_base": stripe_url, "max_retries": 2}}
        rt = Runtime(Settings.model_validate(settings))
        b = rt.billing
        cards = []
        for i in range(50):
            customer = b.gateway.create_customer(False, email=f"c{i}@bench.example", name=f"Customer {i}")
            cards.append((customer, b.gateway.attach_card(False, customer=customer, number="4242424242424242")[0]))
        with b.unit() as s:
            org = setup.organization(s, "Bench Co")
            price = setup.plan(s, org, "Pro", 4900)
            for i in range(BILLING_SUBSCRIPTIONS):
                customer, method = cards[i % len(cards)]
                cust = setup.customer(s, org, email=f"s{i}@bench.example", name=f"Sub {i}", stripe_customer_id=customer)
                pm = setup.card(s, cust, stripe_payment_method_id=method)
                setup.subscription(s, cust, price, pm, start=b.now())
        rt.trigger("hourly-cron", {"timestamp": iso(rt.clock.now_ms()), "scheduleId": "hourly-cron"})
        env = {**env_for(url), "FLOWJOBS_STRIPE_TEST_API_KEY": "sk_test_bench", "FLOWJOBS_STRIPE_API_BASE": stripe_url}
        start = time.perf_counter()
        quiet = [a if a != "warning" else "error" for a in FLOWJOBS]  # the pending-#6 notices, 8000 lines
        subprocess.run(quiet + ["run-worker", "--burst", "--no-scheduler", "--processes", str(processes),
                                   "--concurrency", "10"], env=env, check=True)
        wall = time.perf_counter() - start
        with rt.db.borrow() as conn:
            first, last, settled = conn.execute(
                "SELECT min(started_at), max(finished_at), count(*) FROM flowjobs_runs "
                "WHERE task = 'attempt-billing-run' AND status = 'completed'").fetchone()
        summary = __import__("flowjobs.billing.views", fromlist=["summary"]).summary(b)
        limit = stripe_limit(stripe_url)
        rt.close()
    rate = settled / ((last - first) / 1000)
    emit(backend=backend, case="billing", subscriptions=BILLING_SUBSCRIPTIONS, processes=processes,
         billing_runs_settled=summary["billingRuns"].get("succeeded", 0), billing_runs_per_s=round(rate, 1),
         seconds_until_all_settled=round(wall, 1), localstripe_sequential_charges_per_s=round(limit, 1))


def pdfs(seconds: float = 5.0):
    """Invoice PDFs per second on one core: a typical three-line invoice with discount and tax."""
    from datetime import datetime

    from flowjobs.documents.document import Document, Line, Party
    from flowjobs.documents.layout import render

    doc = Document("invoice", "C0FFEE1-00042", "USD", datetime(2027, 1, 15, tzinfo=UTC),
                   Party("Acme Analytics", ["1 Main St", "94110 San Francisco", "US"], "billing@acme.example"),
                   [Line("Pro plan", 1, 4900), Line("Extra seats", 3, 1000), Line("Priority support", 1, 2500)],
                   bill_to=Party("Ada Lovelace", ["2 Side St", "London"], "ada@example.com"),
                   discount=500, discount_code="WELCOME", tax=1584)
    render(doc)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        render(doc)
        count += 1
    cpu = time.process_time()
    emit(case="pdf", invoices_per_s=round(count / (time.perf_counter() - start), 1), bytes=len(render(doc)),
         note="one process, one core")
    return cpu


def emails(count: int = 500):
    """Receipt-sized emails per second over SMTP to a local aiosmtpd server (one connection each)."""
    import socket

    from aiosmtpd.controller import Controller

    from flowjobs.adapters.mailer import SmtpMailer, build
    from flowjobs.config import MailSettings
    from flowjobs.notifications.render import Email, Message, MessageLine, bodies

    class Sink:
        received = 0

        async def handle_DATA(self, server, session, envelope):
            Sink.received += 1
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        mailer = SmtpMailer(MailSettings(transport="smtp", host="127.0.0.1", port=port, retries=0))
        message = Message("Your Order is Confirmed", ["Thank you for your payment."],
                          [("Invoice #", "C0FFEE1-00042"), ("Payment total", "$90.74")],
                          [MessageLine("Pro plan", 1, "$49.00", "$49.00")], [("Total", "$90.74")])
        start = time.perf_counter()
        for i in range(count):
            email = Email("bench", [f"customer{i}@example.com"], "Acme Order Receipt: #C0FFEE1-00042", message,
                          "Acme Billing <acme-billing@flowglad.com>")
            mailer.send(build(email, *bodies(email.message)))
        rate = count / (time.perf_counter() - start)
    finally:
        controller.stop()
    emit(case="email", emails_per_s=round(rate, 1), delivered=Sink.received, note="rendered + sent, one SMTP session each")


def startup():
    """Start-up of `flowjobs --help` and `flowjobs trigger noop` (15 starts each: min and
    median, as this VM's timings wander), beside the floor any command that validates with
    pydantic pays: Python starting, importing pydantic and building one model."""
    floor = [sys.executable, "-c", "from pydantic import BaseModel\nclass A(BaseModel):\n    x: int = 1"]
    with tempfile.TemporaryDirectory() as tmp:
        env = env_for(f"sqlite:///{tmp}/s.db")
        subprocess.run(FLOWJOBS + ["db", "upgrade"], env=env, capture_output=True, check=True)
        command = [str(Path(sys.executable).with_name("flowjobs"))]  # the console script users run
        for name, argv in (("flowjobs --help", command + ["--help"]),
                           ("flowjobs trigger noop", command + ["trigger", "noop"]),
                           ("python + import pydantic + one model", floor)):
            times = []
            for _ in range(15):
                t = time.perf_counter()
                subprocess.run(argv, env=env, capture_output=True, cwd=tmp, check=True)
                times.append(time.perf_counter() - t)
            emit(case="startup", command=name, min_ms=round(min(times) * 1000),
                 median_ms=round(statistics.median(times) * 1000))


def main() -> None:
    only = os.environ.get("BENCH_ONLY")  # "<backend>:<case>,…" (latency, idle, raw_limit, bench_trigger, billing), or pdfs, emails, startup
    if only in ("pdfs", "emails", "startup"):
        globals()[only]()
        return
    if only:
        backend, _, cases = only.partition(":")
        with pg_server() as pg:
            for case in cases.split(","):
                globals()[case](backend, fresh(backend, pg, f"bench_{case}"))
        return
    from flowjobs.cli.output import progress

    with progress(3 + 2 * 7, "benchmarks") as advance:  # a bar on a terminal; JSON lines on stdout
        for case in (startup, pdfs, emails):
            case()
            advance()
        with pg_server() as pg:
            for backend in ("sqlite", "postgresql"):
                bench_trigger(backend, fresh(backend, pg, "bench_trigger"))
                limit = raw_limit(backend, fresh(backend, pg, "bench_raw"))
                advance(2)
                for processes in (1, 4):
                    rate = drain(backend, fresh(backend, pg, f"bench_drain{processes}"), processes)
                    emit(backend=backend, case="drain_vs_storage_limit", processes=processes,
                         ratio=round(rate / limit, 2))
                    advance()
                latency(backend, fresh(backend, pg, "bench_latency"))
                idle(backend, fresh(backend, pg, "bench_idle"))
                billing(backend, fresh(backend, pg, "bench_billing"))
                advance(3)


if __name__ == "__main__":
    main()
