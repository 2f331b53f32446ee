"""Drives the published Python agent-dispatch's job store (black box, public API only) for
transports/tests/python_jobs.rs.

    jobs_compat.py read DIR            list + get every record, print them as JSON
    jobs_compat.py mutate DIR P R D    mark_running(P); update_progress(R) when the version has
                                       it; finish(R); cancel(D) (a finished job); print outcomes
    jobs_compat.py write DIR           create one job per lifecycle state, print label -> id
    jobs_compat.py lock DIR            time one create() (the test holds .jobs.lock meanwhile)

Everything printed is one JSON object on stdout.
"""

import importlib.metadata
import json
import sys
import time
from pathlib import Path

from agent_dispatch.jobs import Job, JobStore
from agent_dispatch.models import DispatchResult

VERSION = importlib.metadata.version("agent-dispatch")


def dump(job):
    return None if job is None else job.model_dump(mode="json", exclude_none=True)


def result(**fields):
    """A DispatchResult with only the fields this version knows."""
    known = DispatchResult.model_fields
    return DispatchResult(**{k: v for k, v in fields.items() if k in known})


def read(store, _args):
    listed = store.list()
    by_status = {s: [j.id for j in store.list(s)] for s in ("pending", "running", "done", "failed", "cancelled")}
    return {
        "list": [j.id for j in listed],
        "by_status": by_status,
        "records": {j.id: dump(store.get(j.id)) for j in listed},
        "job_fields": list(Job.model_fields),
        "result_fields": list(DispatchResult.model_fields),
    }


def mutate(store, args):
    pending, running, done = args
    out = {"mark_running": dump(store.mark_running(pending))}
    if hasattr(store, "update_progress"):
        out["update_progress"] = dump(store.update_progress(running, ["from python", "last line"]))
    out["finish"] = dump(store.finish(running, result(agent="backend", success=True, result="finished by python", cost_usd=0.5, outcome="done")))
    job, outcome = store.cancel(done)
    out["cancel_done"] = outcome
    return out


def write(store, _args):
    ids = {}
    j = store.create("backend", "still pending — naïve 🦀", context="ctx", caller="frontend", goal="ship it")
    ids["pending"] = j.id
    j = store.create("backend", "running")
    store.mark_running(j.id)
    if hasattr(store, "update_progress"):
        store.update_progress(j.id, ["Using tool: Read", "Checking…"])
    ids["running"] = j.id
    j = store.create("backend", "done", caller="me")
    store.mark_running(j.id)
    store.finish(j.id, result(agent="backend", success=True, result="Found 3 errors", session_id="sess-abc",
                              cost_usd=0.02, duration_ms=5000, num_turns=2, parsed_result={"count": 3, "errors": ["a", None]},
                              outcome="done"))
    ids["done"] = j.id
    j = store.create("backend", "failed")
    store.mark_running(j.id)
    store.finish(j.id, result(agent="backend", success=False, result="", error="timed out", error_type="timeout",
                              session_id="sess-t", denied_tools=["Bash"], hint="raise the timeout"))
    ids["failed"] = j.id
    j = store.create("backend", "crashed")
    store.fail(j.id, "Worker crashed: kaboom")
    ids["crashed"] = j.id
    j = store.create("backend", "cancelled")
    store.cancel(j.id)
    ids["cancelled"] = j.id
    j = store.create_completed("backend", "ref mode", result(agent="backend", success=True, result="x" * 1000))
    ids["completed"] = j.id
    return {"ids": ids}


def lock(store, _args):
    start = time.monotonic()
    job = store.create("backend", "after the lock")
    return {"elapsed": time.monotonic() - start, "id": job.id}


def main():
    mode, directory, *args = sys.argv[1:]
    store = JobStore(Path(directory))
    out = {"read": read, "mutate": mutate, "write": write, "lock": lock}[mode](store, args)
    out["version"] = VERSION
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
