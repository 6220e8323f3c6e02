"""`noop`: payload `{}`, does nothing. Used by the benchmarks."""

from flowjobs.core.registry import task


@task("noop")
def noop(payload, ctx):
    """Do nothing (benchmarks)."""
    return None
