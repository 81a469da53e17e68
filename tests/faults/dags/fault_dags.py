"""DAGs for the fault-injection tests; every task writes a ledger line when it starts and when it ends.

The tests read the ledger to prove how often a task really ran: a task that was
killed and run again leaves two ``start`` lines.

* ``fault_held``: one task that runs until the test creates its release file, so
  a fault lands exactly in the middle of the task.
* ``fault_fanout``: twenty short tasks at once (one mapped task).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from airflow.sdk import dag, get_current_context, task


def record(ledger: Path, what: str) -> None:
    """Append ``{"what", dag_id, run_id, task_id, map_index, try_number, pid, at}`` as one line.

    One ``write`` on an ``O_APPEND`` file: lines of concurrent task processes never interleave.
    """
    ti = get_current_context()["ti"]
    line = json.dumps(
        {
            "what": what,
            "dag_id": ti.dag_id,
            "run_id": ti.run_id,
            "task_id": ti.task_id,
            "map_index": ti.map_index,
            "try_number": ti.try_number,
            "pid": os.getpid(),
            "at": time.time(),
        }
    )
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@dag(
    dag_id="fault_held",
    schedule=None,
    catchup=False,
    params={"ledger": "", "release": "", "max_wait": 600},
    default_args={"retries": 2},
)
def fault_held() -> None:
    @task
    def held() -> str:
        params = get_current_context()["params"]
        ledger, release = Path(params["ledger"]), Path(params["release"])
        record(ledger, "start")
        deadline = time.monotonic() + float(params["max_wait"])
        while not release.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"never released: {release} did not appear")
            time.sleep(0.2)
        record(ledger, "end")
        return "released"

    held()


@dag(
    dag_id="fault_fanout",
    schedule=None,
    catchup=False,
    params={"ledger": "", "width": 20, "seconds": 2.0},
    default_args={"retries": 2},
)
def fault_fanout() -> None:
    @task
    def indexes() -> list[int]:
        return list(range(int(get_current_context()["params"]["width"])))

    @task
    def work(index: int) -> int:
        params = get_current_context()["params"]
        ledger = Path(params["ledger"])
        record(ledger, "start")
        time.sleep(float(params["seconds"]))
        record(ledger, "end")
        return index

    work.expand(index=indexes())


fault_held()
fault_fanout()
