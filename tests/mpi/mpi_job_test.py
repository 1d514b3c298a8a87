#!/usr/bin/env python3
"""mpi_job_test.py: whole MPI jobs: rank 0 killed or interrupted leaves no
process behind and mpirun returns; `cos sweep` under mpirun.

Usage: mpi_job_test.py --hang PATH [--cos PATH] CASE...
       mpi_job_test.py --hang PATH --registered "CASE;CASE;..."

Each CASE is one CTest test (tests/mpi/CMakeLists.txt). PATH of --hang is
the mpi_hang program (hang_main.cpp): every process of its job, and the
`sleep MARKER` its tasks start, has a marker on its command line, so a case
finds what is left in /proc.
"""

import argparse
import csv
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness import Failure, check, left_after, processes_with, run_case  # noqa: E402

HANG = None
COS = None
CASES = {}
MPIRUN = ["mpirun", "--oversubscribe"]


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def env():
    e = dict(os.environ)
    e["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    e["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    return e


def marker():
    """A sleep duration no other process uses, to find processes by it."""
    return f"{300 + random.randint(1, 999999) / 1e6:.6f}"


def check_no_processes(marker, within=5.0):
    """Fails when a process with `marker` is still alive after `within` seconds."""
    left = left_after(marker, within)
    check(not left, f"processes left behind: {left}")


def rank0_of(mpirun_pid, timeout=10):
    """The pid of rank 0 of the job that mpirun `mpirun_pid` started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                if ppid != mpirun_pid:
                    continue
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if b"OMPI_COMM_WORLD_RANK=0\0" in f.read():
                        return int(pid)
            except (OSError, ValueError, IndexError):
                continue
        time.sleep(0.05)
    raise Failure("rank 0 of the job never showed up")


def start_hang(*args, n=4):
    mark = marker()
    p = subprocess.Popen(MPIRUN + ["-n", str(n), HANG, mark] + list(args), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env())
    line = p.stdout.readline()
    m = re.match(r"ready (\d+)", line)
    if not m:
        p.kill()
        raise Failure(f"mpi_hang did not get ready: {line!r} {p.stderr.read()}")
    deadline = time.monotonic() + 10
    while True:
        sleeps = [c for _, c in processes_with("sleep " + mark) if c.startswith("sleep ")]
        if len(sleeps) >= n - 1 or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if len(sleeps) != n - 1:
        p.terminate()
        p.wait()
        raise Failure(f"not one sleep per worker rank: {processes_with(mark)}")
    return p, int(m.group(1)), mark


def wait_for(p, timeout=30):
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        raise Failure(f"mpirun did not return within {timeout} s")


# --- shutdown -------------------------------------------------------------------

@case
def end_leaves_nothing():
    """A job whose rank 0 ends normally: mpirun returns 0, no rank or worker is left."""
    mark = marker()
    p = subprocess.run(MPIRUN + ["-n", "4", HANG, mark, "quick"], capture_output=True, text=True, env=env(),
                       timeout=60)
    check(p.returncode == 0, f"mpirun returned {p.returncode}", p.stdout, p.stderr)
    check("done 0" in p.stdout, "every task ran", p.stdout)
    check_no_processes(mark, within=2)


def kill_rank0(sig, *args):
    p, rank0, mark = start_hang(*args)
    os.kill(rank0, sig)
    rc = wait_for(p)
    check(rc != 0, "mpirun reports the job's failure", rc)
    check_no_processes(mark)


@case
def kill_rank0_sigkill():
    """kill -9 of rank 0 (isolate): mpirun returns; no rank, fork server, worker or task program is left."""
    kill_rank0(signal.SIGKILL)


@case
def kill_rank0_sigterm():
    """SIGTERM to rank 0 (isolate): the same."""
    kill_rank0(signal.SIGTERM)


@case
def kill_rank0_inline():
    """kill -9 of rank 0 without isolate: tasks run in the ranks, which mpirun ends."""
    kill_rank0(signal.SIGKILL, "inline")


@case
def interrupt_mpirun():
    """Ctrl-C (SIGINT) to mpirun: it ends the job; nothing is left."""
    p, _, mark = start_hang()
    p.send_signal(signal.SIGINT)
    wait_for(p)
    check_no_processes(mark)


# --- cos sweep under mpirun -----------------------------------------------------

def sweep_job(args, n=3, expect=0, timeout=60):
    p = subprocess.run(MPIRUN + ["-n", str(n), COS, "sweep"] + args, capture_output=True, text=True, env=env(),
                       timeout=timeout)
    check(p.returncode == expect, f"mpirun cos sweep {' '.join(args)}: exit status {p.returncode}, expected {expect}",
          "stdout: " + p.stdout, "stderr: " + p.stderr)
    return p.stdout, p.stderr


def rows_of(text):
    return list(csv.DictReader(io.StringIO(text)))


@case
def sweep():
    """mpirun -n 3 cos sweep: the points run on the two worker ranks, rank 0 writes the rows."""
    out, err = sweep_job(["--param", "i=1:8:1", "--", "sh", "-c", "echo {i}-$OMPI_COMM_WORLD_RANK"])
    rows = rows_of(out)
    check(len(rows) == 8, "eight rows", out)
    host = os.uname().nodename
    for r in rows:
        check(r["status"] == "ok", "status ok", r)
        # The command runs in a worker of a rank, which is no MPI rank: it sees no rank variable.
        check(r["output"] == r["i"] + "-", "the command saw its parameter and no rank", r)
        check(r["host"] == host, "the host is the rank's machine", r)
    check(re.search(r"8 points: 8 done, 0 failed; .* on 2 slots", err), "summary line", err)


@case
def sweep_timeout_trace():
    """Under mpirun a point past --timeout is a timeout row (its rank's worker is killed); --trace and progress work."""
    mark = marker()
    args = ["--param", "x=1:4:1", "--timeout", "500ms", "--trace", "t.json", "--progress", "--out", "r.csv", "--",
            "sh", "-c", f"if [ {{x}} = 2 ]; then sleep {mark}; fi; echo {{x}}"]
    out, err = sweep_job(args, expect=1)
    rows = {r["x"]: r for r in rows_of(open("r.csv").read())}
    check(rows["2"]["status"] == "timeout", "timeout row", rows["2"])
    check(all(rows[x]["status"] == "ok" for x in "134"), "the others ran", rows)
    events = [e for e in json.load(open("t.json"))["traceEvents"] if e["ph"] == "X"]
    check(len(events) == 4, "four trace events", events)
    check_no_processes(mark)


@case
def sweep_kill_resume():
    """kill -9 of rank 0 in the middle of a sweep leaves whole rows and no process; --resume under mpirun completes them."""
    mark = marker()[4:]
    args = ["--param", "i=0:29:1", "--out", "r.csv", "--", "sh", "-c", f"sleep 0.05{mark}; echo {{i}}"]
    p = subprocess.Popen(MPIRUN + ["-n", "3", COS, "sweep"] + args, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=env())
    rank0 = rank0_of(p.pid)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if os.path.exists("r.csv") and open("r.csv").read().count("\n") >= 8:
            break
        time.sleep(0.01)
    os.kill(rank0, signal.SIGKILL)
    wait_for(p)
    check_no_processes("0.05" + mark)
    check_no_processes(COS + " sweep --param i=0:29:1")
    before = rows_of(open("r.csv").read())
    check(0 < len(before) < 30, "killed in the middle", len(before))
    _, err = sweep_job(["--resume"] + args)
    rows = rows_of(open("r.csv").read())
    points = sorted(int(r["i"]) for r in rows)
    check(points == list(range(30)), "each point once", points)
    check(all(r["status"] == "ok" for r in rows), "all done", rows)
    check(f"({len(before)} done before)" in err, "the summary counts the rows kept", err)


@case
def sweep_interrupt_rank0():
    """SIGINT to rank 0 of a sweep: it stops the running points, keeps the finished rows, exits 130; nothing is left."""
    mark = marker()
    args = ["--param", "i=0:9:1", "--out", "r.csv", "--", "sh", "-c",
            f"if [ {{i}} -ge 2 ]; then sleep {mark}; fi; echo {{i}}"]
    p = subprocess.Popen(MPIRUN + ["-n", "3", COS, "sweep"] + args, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=env())
    rank0 = rank0_of(p.pid)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len([c for _, c in processes_with("sleep " + mark)
                                               if c.startswith("sleep ")]) < 2:
        time.sleep(0.05)
    os.kill(rank0, signal.SIGINT)
    rc = wait_for(p)
    err = p.stderr.read()
    check(rc == 130, f"exit status {rc}", err)
    check_no_processes(mark)
    rows = rows_of(open("r.csv").read())
    check(sorted(r["i"] for r in rows) == ["0", "1"], "the finished rows are kept", rows)
    check("interrupted" in err, "summary", err)


@case
def sweep_hosts_is_an_error():
    """--hosts (and --slots) under mpirun are errors that say why: the ranks are the slots."""
    _, err = sweep_job(["--hosts", "a=1", "--param", "i=1,2", "--", "echo", "{i}"], expect=2)
    check("--hosts cannot be used under mpirun" in err, "the message", err)
    _, err = sweep_job(["--slots", "2", "--param", "i=1,2", "--", "echo", "{i}"], expect=2)
    check("--slots cannot be used under mpirun" in err, "the message", err)


def main():
    global HANG, COS
    ap = argparse.ArgumentParser()
    ap.add_argument("--hang", required=True)
    ap.add_argument("--cos")
    ap.add_argument("--registered")
    ap.add_argument("cases", nargs="*")
    a = ap.parse_args()
    HANG = os.path.abspath(a.hang)
    COS = a.cos and os.path.abspath(a.cos)
    if a.registered is not None:
        missing = sorted(set(CASES) - set(a.registered.split(";")))
        unknown = sorted(set(a.registered.split(";")) - set(CASES))
        if missing or unknown:
            print(f"FAILED: not registered in tests/mpi/CMakeLists.txt: {missing}; unknown: {unknown}",
                  file=sys.stderr)
            return 1
        print(f"ok: all {len(CASES)} cases are registered")
        return 0
    failed = 0
    for name in a.cases or list(CASES):
        if name not in CASES:
            print(f"unknown case {name}", file=sys.stderr)
            return 2
        if name.startswith("sweep") and not COS:
            print(f"FAILED: {name} needs --cos (the cos tool was not built)", file=sys.stderr)
            failed += 1
            continue
        if not run_case(name, CASES[name], "cos-mpi-test-"):
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
