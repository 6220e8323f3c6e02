"""Cold starts with due work of every built-in task: a new worker process must not lose a
single attempt to an import error (its task threads importing billing, sqlalchemy and stripe at
the same moment once met their import cycles half-way: `cannot import name … from partially
initialized module …`). On SQLite and PostgreSQL."""

import datetime
import typing

from pydantic import BaseModel

from flowjobs.core.client import TriggerItem
from tests.acceptance.faults import invariants
from tests.cli_helpers import cli_env, flowjobs

COLD_STARTS = 2
COPIES = 3  # runs of each task per cold start: several threads import the same modules at once


def sample(model: type[BaseModel]) -> dict:
    """A payload the model accepts: every required field filled with a plausible value (the
    objects named do not exist, so billing tasks end `failed` as not found: after their imports)."""
    out = {}
    for name, field in model.model_fields.items():
        if not field.is_required():
            continue
        kind = field.annotation
        if typing.get_origin(kind) in (typing.Union, __import__("types").UnionType):
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            value = sample(kind)
        elif kind in (datetime.datetime, datetime.date):
            value = "2027-01-15T08:00:00Z"
        elif kind is int:
            value = 1
        elif kind is dict or typing.get_origin(kind) is dict:
            value = {}
        else:
            value = "cold_start_missing"
        out[field.alias or name] = value
    return out


def builtin_tasks(rt):
    return [t for t in rt.registry.all() if t.module.startswith("flowjobs.tasks.")]


def test_cold_starts_lose_no_attempt_to_import_errors(make_runtime, tmp_path):
    rt = make_runtime(pinned=False)
    tasks = builtin_tasks(rt)
    assert len(tasks) >= 40
    env = cli_env(rt.db.url, FLOWJOBS_STRIPE_API_BASE="http://127.0.0.1:9")  # never reached
    for start in range(COLD_STARTS):
        rt.client.batch_trigger(
            [
                TriggerItem(t.id, sample(t.payload), priority=-1)
                for t in tasks
                for _ in range(COPIES)
            ]
        )
        done = flowjobs(
            "--log-level",
            "error",
            "run-worker",
            "--burst",
            "--no-scheduler",
            "--concurrency",
            "12",
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr

    lost = invariants.rows(
        rt.db,
        "SELECT run_id, error FROM flowjobs_attempts WHERE error LIKE :a "
        "OR error LIKE :b OR outcome = 'crashed'",
        {"a": "%ImportError%", "b": "%partially initialized%"},
    )
    crashed = invariants.rows(rt.db, "SELECT count(*) FROM flowjobs_runs WHERE crashes > 0")[0][0]
    assert lost == [] and crashed == 0
    counts = invariants.check(rt.db)
    assert counts["runs"] >= COLD_STARTS * COPIES * len(tasks)
    assert set(counts["by_status"]) <= {
        "completed",
        "failed",
    }  # every run ran (missing objects fail)
