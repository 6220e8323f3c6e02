"""`hello-world`: accepts any JSON object and returns it as its result (the seed's example task)."""

from flowjobs.core.registry import AnyObject, task


@task("hello-world", payload=AnyObject)
def hello_world(payload: AnyObject, ctx):
    """Echo the payload back as the run's result."""
    ctx.log.info("hello from run %s", ctx.run_id)
    return payload.model_dump(mode="json")
