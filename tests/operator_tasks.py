"""Tasks for tests/test_operator_day.py (listed with tests.tasks_for_tests in [tasks] modules)."""

from flowjobs import RetryPolicy, task


@task("test-log-then-fail", retry=RetryPolicy(max_attempts=1))
def log_then_fail(payload, ctx):
    ctx.log.info("charging card of %s", "cust_1")
    ctx.log.warning("the card was declined")
    raise ValueError("card_declined")


@task("test-answer")
def answer(payload, ctx):
    return {"answer": 42}
