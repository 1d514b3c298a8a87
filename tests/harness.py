"""harness: what the Python test scripts (cos_tool_test.py,
mpi/mpi_job_test.py) share: running a case in a fresh directory, and what
the process table holds, for the checks that no process is left behind."""

import os
import sys
import tempfile
import time


class Failure(Exception):
    """A check of a case that did not hold."""


def check(cond, what, *context):
    """Fails the case with `what` (and each of `context` on a line) unless `cond`."""
    if not cond:
        raise Failure(what + "".join("\n  " + str(c) for c in context))


def run_case(name, case, prefix):
    """Runs `case` in a fresh temporary directory; True when it passed (a
    line says so on stdout, or why not on stderr)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        os.chdir(tmp)
        try:
            case()
            print(f"ok: {name}")
            return True
        except Exception as e:  # noqa: BLE001 - any error fails the case, with its message
            print(f"FAILED: {name}: {e}", file=sys.stderr)
            return False
        finally:
            os.chdir("/")


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
