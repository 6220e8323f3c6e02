"""Database-level invariants checked after every fault test (both backends).

- no run `executing` without a live lease (while workers run) — or at all, once they stopped
- every attempt number of a run recorded exactly once, none skipped (an attempt row, or the
  completed run row for its succeeded attempt; the attempt in flight has none yet)
- live idempotency keys unique per task
- one run per scheduler slot (keys `<schedule>:<slot>`), failed ones aside
- billing: at most one succeeded payment per billing run, and every `succeeded` billing run has one
- crash budget and bookkeeping (`bookkeeping`): a run's `crashes` is the number of its attempts
  recorded `crashed`, its other attempts stay within `max_attempts`; only an executing run holds
  a lease; a run has `finished_at` exactly when it is terminal; a failed run holds no live key;
  billing: a succeeded billing run's payment carries the billing run's PaymentIntent, and no
  PaymentIntent is recorded as two succeeded payments
"""

from __future__ import annotations

from collections import Counter


def rows(db, sql: str, params: dict | None = None) -> list[tuple]:
    """`:name` parameters on both backends (no literal `%` in `sql`: pass patterns as parameters)."""
    from flowjobs.store.queries import to_pyformat

    with db.borrow() as conn:
        return conn.execute(
            to_pyformat(sql) if db.dialect == "postgresql" else sql, params or {}
        ).fetchall()


def _table_exists(db, name: str) -> bool:
    if db.dialect == "sqlite":
        return bool(
            rows(db, "SELECT 1 FROM sqlite_master WHERE type='table' AND name=:n", {"n": name})
        )
    return rows(db, f"SELECT to_regclass('{name}')")[0][0] is not None


def check(db, now_ms: int | None = None, workers_stopped: bool = True) -> dict:
    """Assert every invariant; returns counts for the test's own checks."""
    executing = rows(
        db, "SELECT id, lease_expires_at FROM flowjobs_runs WHERE status = 'executing'"
    )
    if workers_stopped:
        assert executing == [], f"runs left executing after the workers stopped: {executing}"
    else:
        stale = [r for r in executing if r[1] is None or (now_ms is not None and r[1] < now_ms)]
        assert not stale, f"executing runs without a live lease: {stale}"

    recorded = Counter(rows(db, "SELECT run_id, number FROM flowjobs_attempts"))
    twice = [k for k, n in recorded.items() if n > 1]
    assert not twice, f"attempts recorded twice: {twice[:5]}"
    by_run: dict[str, set[int]] = {}
    for run_id, number in recorded:
        by_run.setdefault(run_id, set()).add(number)
    runs = rows(db, "SELECT id, status, attempt FROM flowjobs_runs")
    for run_id, status, attempt in runs:
        numbers = set(by_run.get(run_id, ()))
        if status == "completed":
            assert attempt not in numbers, (
                f"run {run_id}: its succeeded attempt {attempt} also has an attempt row"
            )
            numbers.add(attempt)
        expected = set(range(1, attempt + (0 if status == "executing" else 1)))
        assert numbers == expected, (
            f"run {run_id} ({status}, attempt {attempt}): attempts recorded {sorted(numbers)}"
        )

    keys = Counter(
        rows(db, "SELECT task, dedup_key FROM flowjobs_runs WHERE dedup_key IS NOT NULL")
    )
    assert all(n == 1 for n in keys.values()), "a live idempotency key is held twice"
    slots = Counter(
        rows(
            db,
            "SELECT task, idempotency_key FROM flowjobs_runs "
            "WHERE idempotency_key LIKE :slot AND status <> 'failed'",
            {"slot": "%:%T%Z"},
        )
    )
    assert all(n == 1 for n in slots.values()), (
        f"a scheduler slot ran twice: {[k for k, n in slots.items() if n > 1]}"
    )

    if _table_exists(db, "billing_runs"):
        charged = Counter(
            r[0]
            for r in rows(
                db,
                "SELECT billing_run_id FROM payments "
                "WHERE status = 'succeeded' AND billing_run_id IS NOT NULL",
            )
        )
        assert all(n == 1 for n in charged.values()), (
            f"billing runs paid twice: {[k for k, n in charged.items() if n > 1]}"
        )
        succeeded = {
            r[0] for r in rows(db, "SELECT id FROM billing_runs WHERE status = 'succeeded'")
        }
        unpaid = succeeded - set(charged)
        assert not unpaid, (
            f"succeeded billing runs without a succeeded payment: {sorted(unpaid)[:5]}"
        )
    bookkeeping(db)
    return {"runs": len(runs), "by_status": Counter(r[1] for r in runs)}


TERMINAL = ("completed", "failed", "canceled", "expired")


def bookkeeping(db) -> None:
    """The columns that a crash, a rescue or a fenced write must keep consistent with each other.
    (`crashes` = crashed attempt rows holds for databases created at migration 0005 or later:
    an upgraded database's older crashed attempts were never counted.)"""
    crashed = Counter(
        r[0] for r in rows(db, "SELECT run_id FROM flowjobs_attempts WHERE outcome = 'crashed'")
    )
    runs = rows(
        db,
        "SELECT id, status, attempt, max_attempts, crashes, lease_expires_at, finished_at, "
        "dedup_key FROM flowjobs_runs",
    )
    for run_id, status, attempt, max_attempts, crashes, lease, finished_at, dedup_key in runs:
        where = f"run {run_id} ({status}, attempt {attempt}, crashes {crashes})"
        assert crashes == crashed[run_id], f"{where}: {crashed[run_id]} attempts recorded crashed"
        assert attempt - crashes <= max_attempts, (
            f"{where}: more than its {max_attempts} attempts used"
        )
        assert status == "executing" or lease is None, f"{where}: holds a lease"
        assert (finished_at is not None) == (status in TERMINAL), (
            f"{where}: finished_at {finished_at}"
        )
        assert status != "failed" or dedup_key is None, (
            f"{where}: failed but holds its idempotency key"
        )

    if _table_exists(db, "billing_runs"):
        mismatched = rows(
            db,
            "SELECT r.id, r.stripe_payment_intent_id, p.stripe_payment_intent_id "
            "FROM billing_runs r JOIN payments p ON p.billing_run_id = r.id "
            "WHERE r.status = 'succeeded' AND p.status = 'succeeded' "
            "AND (r.stripe_payment_intent_id IS NULL "
            "     OR r.stripe_payment_intent_id <> p.stripe_payment_intent_id)",
        )
        assert not mismatched, (
            f"succeeded billing runs whose payment has another PaymentIntent: {mismatched[:5]}"
        )
        intents = Counter(
            r[0]
            for r in rows(
                db,
                "SELECT stripe_payment_intent_id FROM payments "
                "WHERE status = 'succeeded' AND stripe_payment_intent_id IS NOT NULL",
            )
        )
        twice = [pi for pi, n in intents.items() if n > 1]
        assert not twice, f"PaymentIntents recorded as two succeeded payments: {twice[:5]}"
