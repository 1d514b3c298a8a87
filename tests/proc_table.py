"""proc_table: what the process table holds, for the tests that check that
no process is left behind (cos_tool_test.py, mpi/mpi_job_test.py)."""

import os
import time


def processes_with(marker):
    """The live (not zombie) pids whose command line holds `marker`, with it."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append((int(pid), cmdline))
    return found


def left_after(marker, within):
    """The processes with `marker` still alive after up to `within` seconds
    (empty as soon as none is)."""
    deadline = time.monotonic() + within
    while True:
        left = processes_with(marker)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)
