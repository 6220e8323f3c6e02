"""`python -m flowjobs` in a process that flowjobs.pyz starts (the workers of `run-worker
--processes N`): the pyz sets PYTHONPATH to `shim/` inside itself, where this file is
`flowjobs.py`, so the child starts through the pyz's `__main__.py` like its parent."""

import runpy

runpy.run_path(__loader__.archive, run_name="__main__")  # type: ignore[name-defined]
