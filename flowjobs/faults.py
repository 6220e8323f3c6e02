"""Named fault-injection points for crash tests.

`checkpoint("billing-run.after-charge")` does nothing unless the environment says
`FLOWJOBS_FAULT=billing-run.after-charge`: then it appends the point's name to the file
`$FLOWJOBS_FAULT_FILE` and blocks the calling thread forever, so a test can SIGKILL the
process at exactly that moment (after Stripe charged, before the outcome is written) and
check that a new worker finishes the job without charging again.
"""

from __future__ import annotations

import os
import threading


def checkpoint(name: str) -> None:
    if os.environ.get("FLOWJOBS_FAULT") != name:
        return
    path = os.environ.get("FLOWJOBS_FAULT_FILE")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(name + "\n")
    threading.Event().wait()
