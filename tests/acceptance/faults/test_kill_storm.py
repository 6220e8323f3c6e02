"""SIGKILL storms with real worker processes, on SQLite and PostgreSQL (issue 12).

Worker processes are SIGKILLed at seeded random moments (ordinary runs: 3 workers living
0.25–1.25 s once up, a kill every ~0.5–1 s, start-ups permitting; billing: 2 workers, each
killed 0–0.15 s after its 1st to 3rd charge, so the kills land in the charging however fast
the machine) and replaced at once, with a 1 s lease and a 100 ms rescue interval, until all the work is done
or the storm's 20 s are up; the last workers are killed too and a final burst worker
finishes whatever the storm left. Then the counts:

- ordinary runs: none lost, every one `completed` with the default 2 attempts (crashes have
  their own budget), exactly one succeeded attempt per run and it is an execution that really
  ran to its end in the worker the run row names;
- billing runs against localstripe: at most one successful charge per billing run at Stripe,
  every billing run terminal;
- and the database-level invariants (tests/acceptance/faults/invariants.py).

The seed is printed (and `FLOWJOBS_STORM_SEED` replays it).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

from flowjobs.billing.enums import RUN_FINAL
from flowjobs.billing.models import BillingRun
from flowjobs.core.client import TriggerItem
from tests.acceptance.faults import invariants
from tests.billing_helpers import get, seed, stripe_sections
from tests.cli_helpers import cli_env, flowjobs, start_worker, wait_until

STORM_ENV = {"FLOWJOBS_WORKER_LEASE": "1s", "FLOWJOBS_WORKER_RESCUE_INTERVAL": "100ms"}


def storm_seed() -> int:
    value = int(os.environ.get("FLOWJOBS_STORM_SEED") or random.randrange(1 << 30))
    print(f"storm seed {value} (FLOWJOBS_STORM_SEED={value} replays it)")
    return value


class Storm:
    """`workers` worker processes, each SIGKILLed at a random moment of its life and replaced at
    once. A worker's life is counted from when it is up (it logged its ": concurrency N"): its
    start-up takes 0.5–2 s on a busy 2-core machine (imports), and killing workers that never
    claimed anything would test nothing. Lives are drawn (seeded) from `life`; with 3 workers
    and lives of 0.25–1.25 s a worker is killed about every 0.5–0.8 s.

    With `progress=(line, (low, high))` a life is counted from the moment the worker's log shows
    `line` the n-th time (n drawn from low..high) instead: the kills then land in the work
    however fast the machine does it, not after the work is done."""

    def __init__(
        self,
        env: dict,
        logs: Path,
        seed: int,
        workers: int = 3,
        life: tuple[float, float] = (0.25, 1.25),
        args: tuple = (),
        progress: tuple[str, tuple[int, int]] | None = None,
    ):
        self.env, self.logs, self.args, self.workers, self.life = env, logs, args, workers, life
        self.progress = progress
        self.rng = random.Random(seed)
        self.kills = 0  # SIGKILLs of a worker that was up, during the storm
        self.last_kills = 0  # ... and of the workers left at its end
        self.started = 0
        logs.mkdir(exist_ok=True)

    def _start(self) -> dict:
        self.started += 1
        log = self.logs / f"worker-{self.started}.log"
        proc = start_worker("--no-scheduler", *self.args, env=self.env, stderr_path=log)
        marks = self.rng.randint(*self.progress[1]) if self.progress else 1
        life = self.rng.uniform(*self.life)
        return {"proc": proc, "log": log, "up": None, "life": life, "marks": marks}

    def _up(self, w: dict) -> float | None:
        """When the worker's life began: it is up, or it made its n-th step of progress."""
        line = self.progress[0] if self.progress else ": concurrency "
        if w["up"] is None and w["log"].read_text().count(line) >= w["marks"]:
            w["up"] = time.monotonic()
        return w["up"]

    def run(self, done, duration: float) -> float:
        """Storm until `done()` or `duration` seconds; returns the seconds it lasted."""
        workers = [self._start() for _ in range(self.workers)]
        began = time.monotonic()
        next_look = began
        try:
            while time.monotonic() - began < duration:
                time.sleep(0.02)  # the storm's clock: each worker dies when its life is up
                now = time.monotonic()
                if now >= next_look:  # done() is a query: four looks a second are enough
                    if done():
                        break
                    next_look = now + 0.25
                for i, w in enumerate(workers):
                    assert w["proc"].poll() is None, (
                        f"{w['log'].name} exited {w['proc'].returncode} by itself:\n{w['log'].read_text()}"
                    )
                    up = self._up(w)
                    if up is not None and now - up >= w["life"]:
                        w["proc"].send_signal(signal.SIGKILL)
                        assert w["proc"].wait(10) == -signal.SIGKILL
                        self.kills += 1
                        workers[i] = self._start()
        finally:
            for w in workers:  # the storm ends as it went: killed
                if w["proc"].poll() is None:
                    w["proc"].send_signal(signal.SIGKILL)
                    self.last_kills += 1
                w["proc"].wait(10)
        return time.monotonic() - began


def wait_for_leases_to_expire(rt) -> None:
    """A burst worker exits when nothing is claimable: first let every killed worker's lease lapse."""

    def lapsed():
        now = int(time.time() * 1000)
        with rt.db.borrow() as conn:
            return not conn.execute(
                "SELECT 1 FROM flowjobs_runs WHERE status = 'executing' "
                f"AND lease_expires_at >= {now}"
            ).fetchall()

    wait_until(lapsed, timeout=30, message="the killed workers' leases to expire")


def final_burst(rt, env: dict) -> None:
    wait_for_leases_to_expire(rt)
    burst = flowjobs(
        "run-worker", "--burst", "--no-scheduler", "--concurrency", "8", env=env, timeout=180
    )
    assert burst.returncode == 0, burst.stderr


def rows(rt, sql: str) -> list[tuple]:
    with rt.db.borrow() as conn:
        return conn.execute(sql).fetchall()


# -- ordinary runs -------------------------------------------------------------------------
RUNS = 400


def test_kill_storm_ordinary_runs(make_runtime, tmp_path):
    rt = make_runtime(pinned=False)
    work = tmp_path / "work"
    work.mkdir()
    runs = rt.client.batch_trigger(
        [TriggerItem("test-record", {"dir": str(work), "seconds": 0.1}) for _ in range(RUNS)]
    )
    ids = {r.id for r in runs}
    assert len(ids) == RUNS
    env = cli_env(rt.db.url, **STORM_ENV)
    # 400 × 0.1 s over 3 × 2 slots: about 7 s of work however fast the machine, so the storm
    # spans a dozen kills or more (a busy machine's slower start-ups make it longer, up to 20 s).
    storm = Storm(env, tmp_path / "logs", storm_seed(), workers=3, args=("--concurrency", "2"))
    completed = lambda: rt.store.count_by_status().get("completed", 0) == RUNS  # noqa: E731
    lasted = storm.run(completed, duration=20)
    in_storm = rt.store.count_by_status().get("completed", 0)
    final_burst(rt, env)

    # 0 lost, all completed (default 2 attempts: a crash must not fail a healthy run)
    assert rt.store.count_by_status() == {"completed": RUNS}
    assert {r[0] for r in rows(rt, "SELECT id FROM flowjobs_runs")} == ids
    # no run completed twice: the run row is its one succeeded attempt; every other attempt crashed
    outcomes = Counter(r[0] for r in rows(rt, "SELECT outcome FROM flowjobs_attempts"))
    assert set(outcomes) <= {"crashed"}, outcomes
    final = {
        r[0]: (r[1], r[2], r[3])
        for r in rows(rt, "SELECT id, attempt, worker, crashes FROM flowjobs_runs")
    }
    assert all(attempt - crashes == 1 for attempt, _, crashes in final.values()), (
        "a run used more than one of its attempts"
    )
    # ... and that succeeded attempt is an execution that ran to its end, in the worker named
    lines = [line.split() for line in (work / "executions.log").read_text().splitlines()]
    ends = Counter((run, int(attempt), pid) for kind, run, attempt, pid in lines if kind == "end")
    starts = Counter(run for kind, run, *_ in lines if kind == "start")
    for run_id, (attempt, worker, _) in final.items():
        assert ends[(run_id, attempt, worker.split(":")[1])] == 1, (
            f"run {run_id}: no end of attempt {attempt}"
        )
    assert set(starts) == ids
    counts = invariants.check(rt.db)
    assert counts["by_status"] == {"completed": RUNS}

    crashed = outcomes["crashed"]
    reexecuted = sum(n - 1 for n in starts.values())
    finished_unrecorded = sum(ends.values()) - RUNS  # ran to the end, killed before the write
    print(
        f"{rt.db.dialect}: {RUNS} runs, {storm.kills} kills in {lasted:.1f}s (+{storm.last_kills} at its end), "
        f"{in_storm} completed in the storm, {crashed} attempts crashed, {reexecuted} re-executions "
        f"({finished_unrecorded} had finished unrecorded), max crashes of one run "
        f"{max(c for *_, c in final.values())}"
    )
    assert storm.kills >= 5 and crashed > 0, "the storm did not hit any work"


# -- billing runs against localstripe ------------------------------------------------------
BILLING_RUNS = 32


def payment_intents_by_billing_run(rt, billing_run_ids: set[str]) -> dict[str, Counter]:
    """Every PaymentIntent at localstripe for these billing runs (by metadata), by status."""
    client = rt.billing.gateway.client(False)
    found: dict[str, Counter] = {}
    for pi in client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter():
        billing_run = (pi.metadata.to_dict() if pi.metadata else {}).get("billingRunId")
        if billing_run in billing_run_ids:
            found.setdefault(billing_run, Counter())[pi.status] += 1
    return found


def test_kill_storm_billing_runs(make_runtime, localstripe_url, tmp_path):
    rt = make_runtime(pinned=False, **stripe_sections(localstripe_url))
    seeded = [seed(rt) for _ in range(BILLING_RUNS)]
    billing_ids = {s.billing_run_id for s in seeded}
    assert None not in billing_ids and len(billing_ids) == BILLING_RUNS
    jobs = rt.client.batch_trigger(
        [
            TriggerItem(
                "attempt-billing-run",
                {"billingRunId": b},
                idempotency_key=f"attempt-billing-run:{b}",
            )
            for b in sorted(billing_ids)
        ]
    )
    env = cli_env(
        rt.db.url,
        FLOWJOBS_STRIPE_TEST_API_KEY="sk_test_flowjobs",
        FLOWJOBS_STRIPE_API_BASE=localstripe_url,
        **STORM_ENV,
    )
    seed_value = storm_seed()
    # Each worker dies 0–0.15 s after its 1st to 3rd charge: mid-charge, between a charge and its
    # record, or in the invoice PDFs and notifications that follow. Lives counted in seconds from
    # start-up missed the work on fast machines: lives of 2–8 s once let two workers on
    # PostgreSQL finish it all in 5–7 s, and of 0.75–4 s two on SQLite in 3 s, before either died.
    storm = Storm(
        env,
        tmp_path / "logs",
        seed_value,
        workers=2,
        life=(0.0, 0.15),
        args=("--concurrency", "2"),
        progress=("] charged: ", (1, 3)),
    )

    def terminal():  # a plain read: a unit of work would queue behind the workers' writes
        ids, final = (", ".join(f"'{v}'" for v in values) for values in (billing_ids, RUN_FINAL))
        sql = f"SELECT count(*) FROM billing_runs WHERE id IN ({ids}) AND status IN ({final})"
        return rows(rt, sql)[0][0] == len(billing_ids)

    lasted = storm.run(terminal, duration=20)
    with rt.billing.unit() as s:
        in_storm = sum(s.get(BillingRun, b).status in RUN_FINAL for b in billing_ids)
    final_burst(rt, env)

    where = f"seed {seed_value}, {rt.db.dialect}"
    statuses = {b: get(rt, BillingRun, b).status for b in billing_ids}
    stuck = {b: s for b, s in statuses.items() if s not in RUN_FINAL}
    job_rows = [rt.store.get_run(j.id) for j in jobs]
    jobs_state = {r["id"]: r["status"] for r in job_rows}
    actions = Counter(json.loads(r["result"])["action"] for r in job_rows if r["result"])
    assert not stuck, (
        f"{where}: billing runs not terminal: {stuck}; jobs {Counter(jobs_state.values())}"
    )
    intents = payment_intents_by_billing_run(rt, billing_ids)
    charged_twice = {b: c for b, c in intents.items() if c["succeeded"] > 1}
    assert not charged_twice, f"{where}: billing runs charged twice at Stripe: {charged_twice}"
    for s in seeded:  # the customer's charges at Stripe, too (one customer per billing run)
        charges = rt.billing.gateway.count_charges(False, s.stripe_customer)
        assert charges.get("succeeded", 0) <= 1, (
            f"{where}: billing run {s.billing_run_id} charges {charges}"
        )
        if statuses[s.billing_run_id] == "succeeded":
            assert charges.get("succeeded", 0) == 1 and intents[s.billing_run_id]["succeeded"] == 1
    invariants.check(rt.db)

    crashed = rows(rt, "SELECT count(*) FROM flowjobs_attempts WHERE outcome = 'crashed'")[0][0]
    charging = [log.read_text().count("] charged: ") for log in (tmp_path / "logs").glob("*.log")]
    print(
        f"{where}: {BILLING_RUNS} billing runs, {storm.kills} kills in {lasted:.1f}s "
        f"(+{storm.last_kills} at its end), {sum(charging)} charges by {sum(map(bool, charging))} of the "
        f"{storm.started} storm workers, {in_storm} terminal in the storm, billing runs "
        f"{Counter(statuses.values())}, jobs {Counter(jobs_state.values())}, their last attempts {dict(actions)} "
        f"('skipped': an earlier attempt charged and recorded it, then lost its lease), {crashed} attempts crashed, "
        f"PaymentIntents {sum(intents.values(), Counter())}"
    )
    assert storm.kills >= 1 and crashed > 0, "the storm did not hit any work"
