"""`make bench`: one JSON line per case, on SQLite and PostgreSQL.

Cases: trigger throughput (one by one, batch); drain of N `noop` runs with 1 and 4 worker
processes; the bare driver's own limits (enqueue one row per transaction; drain by claiming one
row and completing the previous one per transaction, on one connection and on one connection
in each of 4 processes; same database and durability settings) and flowjobs' figures as a ratio
of them; trigger->start latency at a steady rate; an idle worker's CPU and memory; CLI start-up;
billing throughput (the hourly cron over 2,000 due subscriptions, 4 worker processes, localstripe);
invoice PDFs per second and emails per second over SMTP.

PostgreSQL runs with its stock durability (fsync, synchronous_commit, full_page_writes on),
and its cases run a second time as `postgresql/synchronous_commit=off` (a database setting:
commits return before their WAL reaches the disk). SQLite runs as flowjobs configures it: WAL,
synchronous=NORMAL. `scripts/bench_peers.py` (`make bench-peers`) imports the pieces here.
Not a test: nothing here passes or fails. BENCH_RUNS (default 20000) sets N; BENCH_BACKENDS
(comma-separated names of BACKENDS) runs some backends only.
"""

from __future__ import annotations

import atexit
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from datetime import UTC

from pgtmp import pg_server

from flowjobs.config import Settings
from flowjobs.core.client import TriggerItem
from flowjobs.runtime import Runtime
from flowjobs.store.db import Database

N = int(os.environ.get("BENCH_RUNS", "20000"))
FLOWJOBS = [sys.executable, "-m", "flowjobs", "--log-level", "warning"]
# backend name -> database settings (ALTER DATABASE ... SET) for a fresh PostgreSQL database
BACKENDS: dict[str, dict[str, str]] = {
    "sqlite": {},
    "postgresql": {},
    "postgresql/synchronous_commit=off": {"synchronous_commit": "off"},
}


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def dialect(backend: str) -> str:
    return "sqlite" if backend == "sqlite" else "postgresql"


@contextmanager
def bench_server():
    """The PostgreSQL server benchmarks use: stock durability (the tests' server has fsync off).
    Prints its durability settings, and stops if they are not PostgreSQL's defaults."""
    import psycopg

    with pg_server(durable=True) as url:
        names = (
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "wal_sync_method",
            "server_version",
        )
        with psycopg.connect(url.replace("+psycopg", "")) as conn:
            settings = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in names}
        emit(case="postgresql_server", **settings)
        if (settings["fsync"], settings["synchronous_commit"], settings["full_page_writes"]) != (
            "on",
        ) * 3:
            raise SystemExit(f"error: the benchmark server is not at stock durability: {settings}")
        yield url


def runtime(url: str) -> Runtime:
    return Runtime(Settings.model_validate({"database": {"url": url}}))


def fresh(backend: str, pg_url: str | None, tag: str) -> str:
    """A new empty database for one case: a SQLite file in a new temp dir, or a new PostgreSQL
    database with the backend's settings."""
    if dialect(backend) == "sqlite":
        where = tempfile.mkdtemp(prefix="flowjobs-bench-")
        atexit.register(shutil.rmtree, where, True)
        return f"sqlite:///{where}/{tag}.db"
    import psycopg

    with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {tag}")
        conn.execute(f"CREATE DATABASE {tag}")
        for name, value in BACKENDS[backend].items():
            conn.execute(f"ALTER DATABASE {tag} SET {name} = {value}")
    return pg_url.rsplit("/", 1)[0] + "/" + tag


def env_for(url: str) -> dict:
    return {**os.environ, "FLOWJOBS_DATABASE_URL": url}


def fill(url: str, runs: int, one_by_one: bool) -> float:
    """Trigger `runs` noop runs (one per call, or in batches of 500); returns runs per second."""
    rt = runtime(url)
    _ = rt.store  # migrate before the clock starts
    start = time.perf_counter()
    if one_by_one:
        for _ in range(runs):
            rt.trigger("noop")
    else:
        for at in range(0, runs, 500):
            rt.client.batch_trigger([TriggerItem("noop") for _ in range(min(500, runs - at))])
    rate = runs / (time.perf_counter() - start)
    rt.close()
    return rate


def bench_trigger(backend, url):
    """Triggers per second: one by one (2,000, one transaction each) and in batches of 500."""
    one = fill(url, 2000, one_by_one=True)
    batch = fill(url, N // 500 * 500, one_by_one=False)
    emit(backend=backend, case="trigger", one_by_one_per_s=round(one), batch_per_s=round(batch))
    return one


def burst_worker(url: str, processes: int, concurrency: int, env: dict | None = None) -> None:
    """`flowjobs run-worker --burst` on `url` until nothing is left to run."""
    subprocess.run(
        FLOWJOBS
        + ["run-worker", "--burst", "--processes", str(processes)]
        + ["--concurrency", str(concurrency)],
        env={**env_for(url), **(env or {})},
        check=True,
    )


def drain(backend, url, processes, concurrency=10, runs=None, fill_first=True, quiet=False):
    """`run-worker --burst` over `runs` queued noop runs (filled here in batches unless
    fill_first is False); runs per second from the first claim to the last finish."""
    runs = N if runs is None else runs
    if fill_first:
        fill(url, runs, one_by_one=False)
    start = time.perf_counter()
    burst_worker(url, processes, concurrency)
    wall = time.perf_counter() - start
    rt = runtime(url)
    with rt.db.borrow() as conn:
        row = conn.execute(
            "SELECT min(started_at), max(finished_at), count(*) FROM flowjobs_runs "
            "WHERE status = 'completed' AND task = 'noop'"
        ).fetchone()
    rt.close()
    rate = row[2] / ((row[1] - row[0]) / 1000)
    if not quiet:
        emit(
            backend=backend,
            case="drain",
            processes=processes,
            concurrency=concurrency,
            runs=row[2],
            runs_per_s=round(rate),
            wall_s_including_startup=round(wall, 2),
        )
    return rate


# -- the bare driver's limits ---------------------------------------------------------------
# The best shape the driver allows, at the database's own durability: on SQLite every write
# transaction is an explicit `BEGIN IMMEDIATE` (as flowjobs does); on PostgreSQL one statement
# (autocommit) is one transaction and one round trip. Connections come from flowjobs'
# Database.connect, so the pragmas (WAL, synchronous=NORMAL) are flowjobs' own.

BARE_TABLE = (
    "CREATE TABLE raw_jobs (id {pk}, task TEXT NOT NULL, payload TEXT NOT NULL, "
    "status TEXT NOT NULL)"
)
BARE_CLAIM = (
    "UPDATE raw_jobs SET status = 'running' WHERE id = (SELECT id FROM raw_jobs "
    "WHERE status = 'queued' ORDER BY id LIMIT 1{lock}) RETURNING id"
)


def bare_table(url: str, rows: int = 0) -> None:
    """(Re)create the bare queue table, with `rows` queued rows inserted in one transaction."""
    db = Database(url)
    conn = db.connect()
    sqlite = db.dialect == "sqlite"
    conn.execute("DROP TABLE IF EXISTS raw_jobs")
    conn.execute(BARE_TABLE.format(pk="INTEGER PRIMARY KEY" if sqlite else "BIGSERIAL PRIMARY KEY"))
    conn.execute("CREATE INDEX raw_jobs_q ON raw_jobs (id) WHERE status = 'queued'")
    if rows:
        insert = "INSERT INTO raw_jobs (task, payload, status) VALUES ('noop', '{}', 'queued')"
        conn.execute("BEGIN IMMEDIATE" if sqlite else "BEGIN")
        if sqlite:
            conn.executemany(insert, [() for _ in range(rows)])
        else:
            with conn.cursor() as cur:
                cur.executemany(insert, [() for _ in range(rows)])
        conn.execute("COMMIT")
    conn.close()


def bare_enqueue(url: str, runs: int) -> float:
    """Insert `runs` rows, one per transaction, on one connection; rows per second."""
    bare_table(url)
    db = Database(url)
    conn = db.connect()
    insert = "INSERT INTO raw_jobs (task, payload, status) VALUES ('noop', '{}', 'queued')"
    start = time.perf_counter()
    if db.dialect == "sqlite":
        for _ in range(runs):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(insert)
            conn.execute("COMMIT")
    else:
        for _ in range(runs):
            conn.execute(insert)
    rate = runs / (time.perf_counter() - start)
    conn.close()
    return rate


def _bare_drain_loop(url: str, barrier, results) -> None:
    """One worker: each transaction completes the previous row and claims the next."""
    db = Database(url)
    conn = db.connect()
    done, prev = 0, None
    barrier.wait()
    start = time.time()
    if db.dialect == "sqlite":
        claim = BARE_CLAIM.format(lock="")
        while True:
            conn.execute("BEGIN IMMEDIATE")
            if prev is not None:
                conn.execute("UPDATE raw_jobs SET status = 'done' WHERE id = ?", (prev,))
                done += 1
            row = conn.execute(claim).fetchone()
            conn.execute("COMMIT")
            if row is None:
                break
            prev = row[0]
    else:
        both = (
            "WITH done AS (UPDATE raw_jobs SET status = 'done' WHERE id = %s::bigint) "
            + BARE_CLAIM.format(lock=" FOR UPDATE SKIP LOCKED")
        )
        import psycopg

        while True:
            try:
                row = conn.execute(both, (prev,)).fetchone()
            except psycopg.errors.DeadlockDetected:
                # two loops' statements can lock each other's rows (the claim re-locks the
                # row it picked, after SKIP LOCKED let it by): the statement rolled back
                continue
            if prev is not None:
                done += 1
            if row is None:
                break
            prev = row[0]
    results.put((start, time.time(), done))
    conn.close()


def bare_drain(url: str, runs: int, processes: int) -> float:
    """Drain `runs` queued rows with one connection in each of `processes` processes; rows
    per second from the common start to the last process's end."""
    bare_table(url, runs)
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    workers = [
        ctx.Process(target=_bare_drain_loop, args=(url, barrier, results)) for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    spans = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join(60)
    total = sum(done for _, _, done in spans)
    if total != runs:
        raise RuntimeError(f"bare drain completed {total} rows of {runs}")
    return total / (max(end for _, end, _ in spans) - min(start for start, _, _ in spans))


def own_enqueue(url: str, runs: int) -> float:
    """flowjobs' own insert statement (the one a trigger sends), one run per statement on one
    connection, ids and rows made before the clock starts: what the run table and its indexes
    cost, without the engine around them. Runs per second."""
    from flowjobs.store import queries

    rt = runtime(url)
    _ = rt.store  # the schema
    rt.close()
    db = Database(url)
    conn = db.connect()
    sql = queries.insert_counted_runs(1)  # what a trigger sends: no RETURNING
    if db.dialect == "postgresql":
        sql = queries.insert_runs_notifying(1)
    now = int(time.time() * 1000)
    from flowjobs import ids

    rows = [
        (ids.new_sortable_id("run"), "noop", "default", "queued", "{}", 0, 0, 3, now, now, now)
        + (None, None, None, "h", None, None)
        for _ in range(runs)
    ]
    start = time.perf_counter()
    for row in rows:
        conn.execute(sql, row).fetchall()
    rate = runs / (time.perf_counter() - start)
    conn.close()
    return rate


def _own_drain_loop(url: str, barrier, results) -> None:
    """One worker on flowjobs' own statements: each transaction finishes the previous run (the
    worker's fenced finish) and claims the next (its claim), nothing else; on PostgreSQL the
    worker's one-statement turn (`queries.turn_postgresql`), as flowjobs sends it."""
    from flowjobs.store import queries
    from flowjobs.store.jobs import TURN_SESSION

    db = Database(url)
    conn = db.connect()
    sqlite = db.dialect == "sqlite"
    claim = queries.claim(db.dialect, False, False, one=True)
    finish = queries.finish_one(True)  # SQLite: one lean finish, a plain fenced UPDATE
    done, prev = 0, None
    if not sqlite:  # flowjobs' PostgreSQL turn: one statement, the session a worker's has
        for setting in TURN_SESSION:
            conn.execute(setting)
    barrier.wait()
    start = time.time()
    while not sqlite:
        now = int(time.time() * 1000)
        params = {"worker": "own", "limit": 1, "now": now, "lease_until": now + 60_000}
        if prev is not None:
            params |= {"id_0": prev[0], "epoch_0": prev[6], "status_0": "completed"}
            params |= {"result_0": None, "error_0": None, "run_at_0": None, "crashed_0": 0}
            params |= {"finished_at_0": now, "finish_now": now}
        rows = conn.execute(queries.turn_postgresql(int(prev is not None), False), params)
        row = rows.fetchone()
        done += prev is not None
        prev = row[1:] if row[1] is not None else None
        if prev is None:
            break
    while sqlite:
        now = int(time.time() * 1000)
        conn.execute("BEGIN IMMEDIATE")
        if prev is not None:
            fenced = {"id_0": prev[0], "epoch_0": prev[6], "status_0": "completed", "now": now}
            fenced |= {"result_0": None, "error_0": None, "run_at_0": None, "crashed_0": 0}
            conn.execute(finish, fenced | {"finished_at_0": now})
            done += 1
        params = {"worker": "own", "limit": 1, "now": now, "lease_until": now + 60_000}
        prev = conn.execute(claim, params).fetchone()
        conn.execute("COMMIT")
        if prev is None:
            break
    results.put((start, time.time(), done))
    conn.close()


def own_drain(url: str, runs: int) -> float:
    """`_own_drain_loop` over `runs` queued noop runs, one process; runs per second."""
    fill(url, runs, one_by_one=False)
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(1), ctx.Queue()
    worker = ctx.Process(target=_own_drain_loop, args=(url, barrier, results))
    worker.start()
    start, end, done = results.get(timeout=600)
    worker.join(60)
    return done / (end - start)


def raw_limit(backend, url):
    """The bare driver's limits for `make bench`: enqueue, drain on 1 and on 4 processes; and
    the same loops on flowjobs' own table and statements (what the schema costs)."""
    limits = {"enqueue": bare_enqueue(url, min(N, 5000))}
    for processes in (1, 4):
        limits[f"drain_{processes}"] = bare_drain(url, N, processes)
    limits["own_enqueue"] = own_enqueue(url, min(N, 5000))
    limits["own_drain_1"] = own_drain(url, N)
    emit(
        backend=backend,
        case="own_statements_limit",
        enqueue_per_s=round(limits["own_enqueue"]),
        drain_1_process_per_s=round(limits["own_drain_1"]),
        note="flowjobs' own insert, claim and finish statements on its own table, one run per "
        "transaction, no engine: the schema's cost beside the bare two-column table",
    )
    emit(
        backend=backend,
        case="storage_limit",
        enqueue_per_s=round(limits["enqueue"]),
        drain_1_process_per_s=round(limits["drain_1"]),
        drain_4_processes_per_s=round(limits["drain_4"]),
        note="bare driver: one INSERT per transaction; one transaction completes one row and claims the next, "
        "one connection per process",
    )
    return limits


def latency(backend, url, rate=200, seconds=5):
    rt = runtime(url)
    _ = rt.store  # migrate before the worker starts
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
    while (
        rt.store.count_by_status().get("completed", 0) < rate * seconds
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    with rt.db.borrow() as conn:
        lat = [
            r[0] - r[1]
            for r in conn.execute(
                "SELECT started_at, created_at FROM flowjobs_runs WHERE started_at IS NOT NULL AND task = 'noop'"
            ).fetchall()
        ]
    worker.terminate()
    worker.wait(30)
    rt.close()
    lat.sort()
    p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99)]
    emit(backend=backend, case="latency", rate_per_s=rate, runs=len(lat), p50_ms=p50, p99_ms=p99)
    return p50, p99


def idle(backend, url, seconds=5):
    _ = runtime(url).store  # migrate before the worker starts
    worker = subprocess.Popen(FLOWJOBS + ["run-worker"], env=env_for(url))
    time.sleep(2)

    def cpu():
        fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    before = cpu()
    time.sleep(seconds)
    used = cpu() - before
    rss = next(
        int(line.split()[1])
        for line in Path(f"/proc/{worker.pid}/status").read_text().splitlines()
        if line.startswith("VmRSS")
    )
    worker.terminate()
    worker.wait(30)
    emit(
        backend=backend,
        case="idle_worker",
        cpu_percent_of_core=round(100 * used / seconds, 2),
        rss_mb=round(rss / 1024, 1),
    )


BILLING_SUBSCRIPTIONS = int(os.environ.get("BENCH_SUBSCRIPTIONS", "2000"))


def stripe_limit(stripe_url: str, count: int = 300) -> float:
    """localstripe's own pace: sequential off-session PaymentIntent create+confirm calls per second."""
    from flowjobs.adapters.stripe_gateway import StripeGateway
    from flowjobs.config import StripeSettings

    gateway = StripeGateway(
        StripeSettings(test_api_key="sk_test_bench", api_base=stripe_url, max_retries=0)
    )
    customer = gateway.create_customer(False, email="limit@bench.example", name="Limit")
    method, _, _ = gateway.attach_card(False, customer=customer, number="4242424242424242")
    start = time.perf_counter()
    for i in range(count):
        gateway.charge_off_session(
            livemode=False,
            amount=1000,
            currency="USD",
            customer=customer,
            payment_method=method,
            metadata={},
            idempotency_key=f"limit-{i}-{start}",
        )
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
        settings = {
            "database": {"url": url},
            "stripe": {"test_api_key": "sk_test_bench", "api_base": stripe_url, "max_retries": 2},
        }
        rt = Runtime(Settings.model_validate(settings))
        b = rt.billing
        cards = []
        for i in range(50):
            customer = b.gateway.create_customer(
                False, email=f"c{i}@bench.example", name=f"Customer {i}"
            )
            cards.append(
                (
                    customer,
                    b.gateway.attach_card(False, customer=customer, number="4242424242424242")[0],
                )
            )
        with b.unit() as s:
            org = setup.organization(s, "Bench Co")
            price = setup.plan(s, org, "Pro", 4900)
            for i in range(BILLING_SUBSCRIPTIONS):
                customer, method = cards[i % len(cards)]
                cust = setup.customer(
                    s,
                    org,
                    email=f"s{i}@bench.example",
                    name=f"Sub {i}",
                    stripe_customer_id=customer,
                )
                pm = setup.card(s, cust, stripe_payment_method_id=method)
                setup.subscription(s, cust, price, pm, start=b.now())
        rt.trigger(
            "hourly-cron", {"timestamp": iso(rt.clock.now_ms()), "scheduleId": "hourly-cron"}
        )
        env = {
            **env_for(url),
            "FLOWJOBS_STRIPE_TEST_API_KEY": "sk_test_bench",
            "FLOWJOBS_STRIPE_API_BASE": stripe_url,
        }
        start = time.perf_counter()
        quiet = [
            a if a != "warning" else "error" for a in FLOWJOBS
        ]  # the pending-#6 notices, 8000 lines
        subprocess.run(
            quiet
            + [
                "run-worker",
                "--burst",
                "--no-scheduler",
                "--processes",
                str(processes),
                "--concurrency",
                "10",
            ],
            env=env,
            check=True,
        )
        wall = time.perf_counter() - start
        with rt.db.borrow() as conn:
            first, last, settled = conn.execute(
                "SELECT min(started_at), max(finished_at), count(*) FROM flowjobs_runs "
                "WHERE task = 'attempt-billing-run' AND status = 'completed'"
            ).fetchone()
        summary = __import__("flowjobs.billing.views", fromlist=["summary"]).summary(b)
        limit = stripe_limit(stripe_url)
        rt.close()
    rate = settled / ((last - first) / 1000)
    emit(
        backend=backend,
        case="billing",
        subscriptions=BILLING_SUBSCRIPTIONS,
        processes=processes,
        billing_runs_settled=summary["billingRuns"].get("succeeded", 0),
        billing_runs_per_s=round(rate, 1),
        seconds_until_all_settled=round(wall, 1),
        localstripe_sequential_charges_per_s=round(limit, 1),
    )


def pdfs(seconds: float = 5.0):
    """Invoice PDFs per second on one core: a typical three-line invoice with discount and tax."""
    from datetime import datetime

    from flowjobs.documents.document import Document, Line, Party
    from flowjobs.documents.layout import render

    doc = Document(
        "invoice",
        "C0FFEE1-00042",
        "USD",
        datetime(2027, 1, 15, tzinfo=UTC),
        Party("Acme Analytics", ["1 Main St", "94110 San Francisco", "US"], "billing@acme.example"),
        [
            Line("Pro plan", 1, 4900),
            Line("Extra seats", 3, 1000),
            Line("Priority support", 1, 2500),
        ],
        bill_to=Party("Ada Lovelace", ["2 Side St", "London"], "ada@example.com"),
        discount=500,
        discount_code="WELCOME",
        tax=1584,
    )
    render(doc)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        render(doc)
        count += 1
    cpu = time.process_time()
    emit(
        case="pdf",
        invoices_per_s=round(count / (time.perf_counter() - start), 1),
        bytes=len(render(doc)),
        note="one process, one core",
    )
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
        message = Message(
            "Your Order is Confirmed",
            ["Thank you for your payment."],
            [("Invoice #", "C0FFEE1-00042"), ("Payment total", "$90.74")],
            [MessageLine("Pro plan", 1, "$49.00", "$49.00")],
            [("Total", "$90.74")],
        )
        start = time.perf_counter()
        for i in range(count):
            email = Email(
                "bench",
                [f"customer{i}@example.com"],
                "Acme Order Receipt: #C0FFEE1-00042",
                message,
                "Acme Billing <acme-billing@flowglad.com>",
            )
            mailer.send(build(email, *bodies(email.message)))
        rate = count / (time.perf_counter() - start)
    finally:
        controller.stop()
    emit(
        case="email",
        emails_per_s=round(rate, 1),
        delivered=Sink.received,
        note="rendered + sent, one SMTP session each",
    )


def startup():
    """Start-up of `flowjobs --help` and `flowjobs trigger noop` (15 starts each: min and
    median, as this VM's timings wander), beside the floor any command that validates with
    pydantic pays: Python starting, importing pydantic and building one model."""
    floor = [
        sys.executable,
        "-c",
        "from pydantic import BaseModel\nclass A(BaseModel):\n    x: int = 1",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        env = env_for(f"sqlite:///{tmp}/s.db")
        subprocess.run(FLOWJOBS + ["db", "upgrade"], env=env, capture_output=True, check=True)
        command = [str(Path(sys.executable).with_name("flowjobs"))]  # the console script users run
        for name, argv in (
            ("flowjobs --help", command + ["--help"]),
            ("flowjobs trigger noop", command + ["trigger", "noop"]),
            ("python + import pydantic + one model", floor),
        ):
            times = []
            for _ in range(15):
                t = time.perf_counter()
                subprocess.run(argv, env=env, capture_output=True, cwd=tmp, check=True)
                times.append(time.perf_counter() - t)
            emit(
                case="startup",
                command=name,
                min_ms=round(min(times) * 1000),
                median_ms=round(statistics.median(times) * 1000),
            )


def main() -> None:
    # "<backend>:<case>,…" (latency, idle, raw_limit, bench_trigger, billing), or pdfs, emails, startup
    only = os.environ.get("BENCH_ONLY")
    if only in ("pdfs", "emails", "startup"):
        globals()[only]()
        return
    if only:
        backend, _, cases = only.partition(":")
        with bench_server() as pg:
            for case in cases.split(","):
                globals()[case](backend, fresh(backend, pg, f"bench_{case}"))
        return
    from flowjobs.cli.output import progress

    billed = ("sqlite", "postgresql")  # billing is bound by localstripe: once per database
    # BENCH_BACKENDS: some of BACKENDS' names, comma-separated (default: all)
    chosen = [b for b in os.environ.get("BENCH_BACKENDS", ",".join(BACKENDS)).split(",") if b]
    unknown = [b for b in chosen if b not in BACKENDS]
    if unknown:
        raise SystemExit(f"error: BENCH_BACKENDS names {unknown}; known: {list(BACKENDS)}")
    steps = 3 + 7 * len(chosen) + len([b for b in billed if b in chosen])
    with progress(steps, "benchmarks") as advance:  # a bar on a terminal; JSON lines on stdout
        for case in (startup, pdfs, emails):
            case()
            advance()
        with bench_server() as pg:
            for backend in chosen:
                one = bench_trigger(backend, fresh(backend, pg, "bench_trigger"))
                limits = raw_limit(backend, fresh(backend, pg, "bench_raw"))
                emit(
                    backend=backend,
                    case="trigger_vs_storage_limit",
                    one_by_one_ratio=round(one / limits["enqueue"], 2),
                    own_statements_ratio=round(one / limits["own_enqueue"], 2),
                )
                advance(2)
                single = drain(backend, fresh(backend, pg, "bench_drain_c1"), 1, concurrency=1)
                emit(
                    backend=backend,
                    case="drain_vs_storage_limit",
                    processes=1,
                    concurrency=1,
                    ratio=round(single / limits["drain_1"], 2),
                    own_statements_ratio=round(single / limits["own_drain_1"], 2),
                )
                advance()
                for processes in (1, 4):
                    rate = drain(backend, fresh(backend, pg, f"bench_drain{processes}"), processes)
                    emit(
                        backend=backend,
                        case="drain_vs_storage_limit",
                        processes=processes,
                        ratio=round(rate / limits[f"drain_{processes}"], 2),
                        **(
                            {"own_statements_ratio": round(rate / limits["own_drain_1"], 2)}
                            if processes == 1
                            else {}
                        ),
                    )
                    advance()
                latency(backend, fresh(backend, pg, "bench_latency"))
                idle(backend, fresh(backend, pg, "bench_idle"))
                advance(2)
                if backend in billed:
                    billing(backend, fresh(backend, pg, "bench_billing"))
                    advance()


if __name__ == "__main__":
    main()
