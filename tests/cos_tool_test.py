#!/usr/bin/env python3
"""cos_tool_test.py: tests of the `cos` command-line tool, run against the built binary.

Usage: cos_tool_test.py --cos PATH [--oscillator PATH] CASE...
       cos_tool_test.py --cos PATH --list
       cos_tool_test.py --cos PATH --registered "CASE;CASE;..."   (fails when a case is missing)

Each CASE is one CTest test (tests/CMakeLists.txt registers them, each with a
TIMEOUT). A case runs `cos sweep` in a fresh temporary directory and checks
its exit status, its rows, its messages, and that no process of a point is
left behind.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Failure, check, left_after, processes_with, run_case  # noqa: E402

COS = None
OSCILLATOR = None
CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def run(args, timeout=30, **kw):
    """Runs cos with args; returns (exit status, stdout, stderr, seconds)."""
    start = time.monotonic()
    p = subprocess.run([COS] + args, capture_output=True, text=True, timeout=timeout, **kw)
    return p.returncode, p.stdout, p.stderr, time.monotonic() - start


def sweep(args, expect=0, **kw):
    rc, out, err, secs = run(["sweep"] + args, **kw)
    check(rc == expect, f"cos sweep {' '.join(args)}: exit status {rc}, expected {expect}",
          "stdout: " + out, "stderr: " + err)
    return out, err, secs


def rows_of(text):
    return list(csv.DictReader(io.StringIO(text)))


def jsonl_of(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def column(rows, name):
    return [r[name] for r in sorted(rows, key=lambda r: int(r["point"]))]


def check_no_processes(marker, within=0.0):
    """Fails when a process with `marker` is still alive after `within` seconds."""
    left = left_after(marker, within)
    check(not left, f"processes left behind: {left}")


def unique_sleep():
    """A sleep duration no other process uses, to find its processes by name."""
    return f"{30 + random.randint(1, 999999) / 1e6:.6f}"


# --- points ----------------------------------------------------------------

@case
def grid():
    """A grid: every combination, the first parameter varying slowest."""
    out, err, _ = sweep(["--param", "a=1,2", "--param", "b=x,y,z", "--slots", "2", "--", "echo", "{a}-{b}"])
    rows = rows_of(out)
    check(len(rows) == 6, "six rows", out)
    pairs = [(r["a"], r["b"]) for r in sorted(rows, key=lambda r: int(r["point"]))]
    check(pairs == [(a, b) for a in "12" for b in "xyz"], "grid order", pairs)
    for r in rows:
        check(r["status"] == "ok" and r["exit"] == "0", "status ok", r)
        check(r["output"] == f"{r['a']}-{r['b']}", "the command saw its parameters", r)
        check(r["attempts"] == "1" and r["host"], "attempts and host", r)
    check(re.search(r"6 points: 6 done, 0 failed; wall .*, serial .*, speedup [0-9.]+ on 2 slots", err),
          "summary line", err)


@case
def integer_ranges():
    """Integer ranges include STOP when it falls on a step, and may go down."""
    for spec, expected in [("1:10:3", ["1", "4", "7", "10"]), ("1:9:3", ["1", "4", "7"]),
                           ("5:1:-2", ["5", "3", "1"]), ("3:3:1", ["3"])]:
        out, _, _ = sweep(["--param", "n=" + spec, "--slots", "1", "--", "echo", "{n}"])
        check(column(rows_of(out), "n") == expected, f"range {spec}", column(rows_of(out), "n"))
        check(column(rows_of(out), "value") == expected, f"the command got the values of {spec}")


@case
def integer_ranges_near_limits():
    """Integer ranges near the 64-bit limits are computed exactly."""
    big = 9000000000000000000
    for spec, expected in [(f"-{big}:{big}:{big}", [-big, 0, big]),
                           ("-9223372036854775808:9223372036854775807:9223372036854775807",
                            [-9223372036854775808, -1, 9223372036854775806]),
                           (f"{big}:-{big}:-{big}", [big, 0, -big])]:
        out, _, _ = sweep(["--param", "n=" + spec, "--slots", "1", "--", "echo", "{n}"])
        check([int(v) for v in column(rows_of(out), "n")] == expected, f"range {spec}", out)
    bad(["--param", f"n={big}:-{big}:{big}", "--", "echo", "{n}"], r"the step goes away from STOP")


@case
def float_ranges():
    """Decimal ranges keep their decimals and include STOP despite rounding."""
    for spec, expected in [("0:1:0.1", ["0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1"]),
                           ("0:1:0.3", ["0", "0.3", "0.6", "0.9"]),
                           ("1:0:-0.25", ["1", "0.75", "0.5", "0.25", "0"]),
                           ("1e-3:3e-3:1e-3", ["0.001", "0.002", "0.003"])]:
        out, _, _ = sweep(["--param", "x=" + spec, "--slots", "2", "--", "echo", "{x}"])
        check(column(rows_of(out), "x") == expected, f"range {spec}", column(rows_of(out), "x"))


@case
def zip_pairs():
    """--zip pairs the lists element-wise."""
    out, _, _ = sweep(["--zip", "--param", "a=1,2,3", "--param", "b=x,y,z", "--param", "c=0:1:0.5",
                       "--", "echo", "{a}{b}{c}"])
    rows = rows_of(out)
    check(column(rows, "output") == ["1x0", "2y0.5", "3z1"], "zipped points", out)


@case
def points_file():
    """A points file: header = names, a row per point, quoted fields; crossed with --param."""
    with open("points.csv", "w") as f:
        f.write('alpha,label\n1,"a, b"\n2.5,plain\n')
    out, _, _ = sweep(["--points", "points.csv", "--", "echo", "{alpha}|{label}"])
    check(column(rows_of(out), "output") == ["1|a, b", "2.5|plain"], "points of the file", out)
    out, _, _ = sweep(["--points", "points.csv", "--param", "k=7,8", "--", "echo", "{alpha}_{k}"])
    check(column(rows_of(out), "output") == ["1_7", "1_8", "2.5_7", "2.5_8"], "file rows crossed with --param", out)


@case
def big_grid_small_memory():
    """A grid of 9 million points starts at once and the tool's memory does not grow with it."""
    p = subprocess.Popen([COS, "sweep", "--param", "a=1:3000:1", "--param", "b=0:1:0.0003333333",
                          "--slots", "2", "--out", "r.csv", "--", "true"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_rows("r.csv", 20)
        hwm = peak_rss_kib(p.pid)
    finally:
        p.kill()
        p.wait()
    check(hwm < 200 * 1024, f"peak RSS {hwm} kB")
    rows = {r["point"]: r for r in rows_of(open("r.csv").read())}
    check(rows["0"]["a"] == "1" and rows["0"]["b"] == "0" and rows["1"]["b"] == "0.0003333333", "the first points",
          rows.get("0"), rows.get("1"))


@case
def resume_big_file_small_memory():
    """--resume reads a results file of two million rows without holding it in memory."""
    n = 2_000_000
    with open("r.csv", "w") as f:
        f.write("point,a,b,status,exit,signal,duration,host,attempts,error\n")
        f.writelines(f"{p},{p // 1000 + 1},{p % 1000},ok,0,,0.001,vm,1,\n" for p in range(n))
    size = os.path.getsize("r.csv")
    p = subprocess.Popen([COS, "sweep", "--resume", "--param", "a=1:3000:1", "--param", "b=0:999:1",
                          "--slots", "1", "--out", "r.csv", "--", "true"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while os.path.getsize("r.csv") <= size and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        check(os.path.getsize("r.csv") > size, "new rows after the kept ones")
        hwm = peak_rss_kib(p.pid)
    finally:
        p.kill()
        p.wait()
    check(hwm < 200 * 1024, f"peak RSS {hwm} kB")
    with open("r.csv") as f:
        f.seek(size)
        first_new = f.readline()
    check(first_new.startswith(f"{n},{n // 1000 + 1},0,ok"), "the first point not done is the next", first_new)


# --- output ----------------------------------------------------------------

@case
def csv_output():
    """CSV: a JSON object's fields become columns, set by the first successful point."""
    script = ('case {i} in 1) echo "bad" >&2; exit 1;; '
              '*) echo progress; echo \'{"energy": {i}.5, "name": "p{i}", "ok": true}\';; esac')
    _, err, _ = sweep(["--param", "i=1:3:1", "--slots", "1", "--out", "r.csv", "--", "sh", "-c", script], expect=1)
    with open("r.csv") as f:
        text = f.read()
    header = text.splitlines()[0].split(",")
    check(header == ["point", "i", "status", "exit", "signal", "duration", "host", "attempts",
                     "energy", "name", "ok", "error"], "header", header)
    rows = rows_of(text)
    check(len(rows) == 3, "three rows", text)
    by_i = {r["i"]: r for r in rows}
    check(by_i["1"]["status"] == "failed" and by_i["1"]["exit"] == "1" and "bad" in by_i["1"]["error"],
          "the failed row says why", by_i["1"])
    check(by_i["2"]["energy"] == "2.5" and by_i["2"]["name"] == "p2" and by_i["2"]["ok"] == "true",
          "result columns", by_i["2"])
    check(float(by_i["3"]["duration"]) >= 0, "a duration")
    check("1 failed" in err, "summary counts the failure", err)


@case
def csv_extra_field():
    """CSV: a result field the header lacks is left out, with a warning."""
    script = 'if [ {i} = 1 ]; then echo \'{"a": 1}\'; else echo \'{"a": 2, "b": 3}\'; fi'
    _, err, _ = sweep(["--param", "i=1,2", "--slots", "1", "--out", "r.csv", "--", "sh", "-c", script])
    rows = rows_of(open("r.csv").read())
    check("b" not in rows[0], "no column b", rows)
    check(re.search(r"result field 'b' of point 1 is not a column", err), "a warning", err)


@case
def jsonl_output():
    """JSON lines: every field, numbers as numbers, failures with null exit and a reason."""
    script = ('case {x} in a) echo \'{"y": [1, 2], "z": 0.25}\';; b) echo 42;; '
              'c) echo text out;; d) exit 4;; esac')
    sweep(["--param", "x=a,b,c,d", "--param", "n=1", "--out", "r.jsonl", "--", "sh", "-c", script], expect=1)
    rows = {r["x"]: r for r in jsonl_of(open("r.jsonl").read())}
    check(set(rows) == set("abcd"), "a row per point", rows)
    check(list(rows["a"])[:4] == ["point", "x", "n", "status"], "field order", list(rows["a"]))
    check(rows["a"]["y"] == [1, 2] and rows["a"]["z"] == 0.25 and rows["a"]["n"] == 1, "typed fields", rows["a"])
    check(rows["b"]["value"] == 42, "a number is a value", rows["b"])
    check(rows["c"]["output"] == "text out", "text is an output", rows["c"])
    check(rows["d"]["status"] == "failed" and rows["d"]["exit"] == 4 and rows["d"]["error"].startswith("exit status 4"),
          "a failure", rows["d"])
    check(rows["a"]["error"] is None and rows["a"]["signal"] is None, "nulls when ok", rows["a"])


@case
def jsonl_exact_values():
    """JSON lines keep a value's exact text: a number only where it reads back as that text."""
    values = ["1.10", "1e3", "1", "2.5", "-0", "007", "-3"]
    sweep(["--param", "v=" + ",".join(values), "--out", "r.jsonl", "--", "echo", "{v}"])
    rows = sorted(jsonl_of(open("r.jsonl").read()), key=lambda r: r["point"])
    check([r["v"] for r in rows] == ["1.10", "1e3", 1, 2.5, "-0", "007", -3], "exact values", rows)
    _, err, _ = sweep(["--resume", "--param", "v=" + ",".join(values), "--out", "r.jsonl", "--", "echo", "{v}"])
    check("7 points: 7 done" in err and "(7 done before)" in err, "every point found done on resume", err)


@case
def trace_file():
    """--trace writes Chrome trace JSON: an X event per attempt, pid/tid = host/slot."""
    sweep(["--param", "i=1:6:1", "--slots", "2", "--trace", "t.json", "--", "sleep", "0.0{i}"])
    trace = json.load(open("t.json"))
    events = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    check(len(events) == 6, "six events", events)
    for e in events:
        check(isinstance(e["ts"], (int, float)) and e["dur"] >= 0 and e["pid"] == 1 and e["tid"] in (1, 2),
              "event fields", e)
    meta = {e["name"] for e in trace["traceEvents"] if e["ph"] == "M"}
    check(meta == {"process_name", "thread_name"}, "names of hosts and slots", meta)
    for tid in (1, 2):
        lane = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e["tid"] == tid)
        check(all(a[1] <= b[0] + 1 for a, b in zip(lane, lane[1:])), "no overlap on a slot", lane)


@case
def hosts():
    """--hosts runs on named hosts; the host column says which."""
    out, err, _ = sweep(["--hosts", "alpha=1,beta=2", "--param", "i=1:6:1", "--", "sleep", "0.05"])
    check({r["host"] for r in rows_of(out)} <= {"alpha", "beta"}, "host names", out)
    check("on 3 slots" in err, "three slots", err)


# --- failures --------------------------------------------------------------

@case
def failing_command():
    """A command that exits with 3 is a failed row; the sweep exits with 1."""
    out, err, _ = sweep(["--param", "x=1,2", "--", "sh", "-c", "if [ {x} = 2 ]; then echo nope >&2; exit 3; fi; echo {x}"],
                        expect=1)
    rows = {r["x"]: r for r in rows_of(out)}
    check(rows["1"]["status"] == "ok", "the other point is fine", rows)
    check(rows["2"]["status"] == "failed" and rows["2"]["exit"] == "3", "exit status 3", rows["2"])
    check(rows["2"]["error"] == "exit status 3: nope", "the reason, with stderr", rows["2"])
    check("1 done, 1 failed" in err, "summary", err)


@case
def crashing_command():
    """A command killed by SIGSEGV is a crashed row; the others go on."""
    out, _, _ = sweep(["--param", "x=1,2,3", "--", "sh", "-c", "if [ {x} = 2 ]; then kill -SEGV $$; fi; echo {x}"],
                      expect=1)
    rows = {r["x"]: r for r in rows_of(out)}
    check(rows["2"]["status"] == "crashed" and rows["2"]["signal"] == "SIGSEGV" and rows["2"]["exit"] == "",
          "crashed by SIGSEGV", rows["2"])
    check("signal 11" in rows["2"]["error"], "the reason", rows["2"])
    check(rows["1"]["status"] == rows["3"]["status"] == "ok", "the others succeeded", rows)


@case
def hanging_command():
    """A command past its timeout is stopped with its whole process group."""
    marker = unique_sleep()
    out, _, secs = sweep(["--param", "x=1,2", "--timeout", "500ms", "--", "sh", "-c",
                          f"if [ {{x}} = 1 ]; then sleep {marker} & sleep {marker}; wait; fi; echo {{x}}"],
                         expect=1)
    rows = {r["x"]: r for r in rows_of(out)}
    check(rows["1"]["status"] == "timeout" and "timed out after 500ms" in rows["1"]["error"], "timeout row", rows["1"])
    check(0.4 <= float(rows["1"]["duration"]) < 3, "its duration is the timeout", rows["1"])
    check(rows["2"]["status"] == "ok", "the other point", rows["2"])
    check(secs < 5, f"the sweep took {secs:.1f} s")
    check_no_processes(marker)


@case
def retries():
    """--retries runs a failed point again; attempts counts the runs."""
    script = 'n=$(cat count.{x} 2>/dev/null || echo 0); n=$((n+1)); echo $n > count.{x}; [ $n -ge {x} ] && echo $n'
    out, _, _ = sweep(["--param", "x=1,2,3", "--retries", "2", "--", "sh", "-c", script])
    rows = {r["x"]: r for r in rows_of(out)}
    check([rows[x]["attempts"] for x in "123"] == ["1", "2", "3"], "attempts", rows)
    check(all(r["status"] == "ok" for r in rows.values()), "all ok in the end", rows)
    out, _, _ = sweep(["--param", "x=1", "--retries", "1", "--", "sh", "-c", "exit 5"], expect=1)
    r = rows_of(out)[0]
    check(r["attempts"] == "2" and r["status"] == "failed", "gave up after 2 attempts", r)


@case
def lost_worker():
    """A worker process that dies mid-point is a lost row (after its retries); nothing is left."""
    marker = unique_sleep()
    # The command's parent is its guard, whose parent is the worker: kill that.
    script = (f'if [ {{x}} = 1 ]; then sleep {marker} & kill -9 $(cut -d" " -f4 /proc/$PPID/stat); sleep 5; fi; '
              'echo {x}')
    out, _, secs = sweep(["--param", "x=1,2", "--retries", "1", "--", "sh", "-c", script], expect=1)
    rows = {r["x"]: r for r in rows_of(out)}
    check(rows["1"]["status"] == "lost" and rows["1"]["attempts"] == "2", "lost after two attempts", rows["1"])
    check("lost its worker" in rows["1"]["error"], "the reason", rows["1"])
    check(rows["2"]["status"] == "ok", "the other point", rows["2"])
    check(secs < 4, f"the sweep took {secs:.1f} s")
    check_no_processes(marker)


# --- resume and interruption -------------------------------------------------

def peak_rss_kib(pid):
    """The peak resident memory of a running process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))


def wait_for_rows(path, n, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and open(path).read().count("\n") >= n:
            return
        time.sleep(0.01)
    raise Failure(f"{path} never had {n} lines")


@case
def resume_after_kill():
    """kill -9 in the middle leaves whole rows; --resume completes them, none twice, none missing."""
    marker = unique_sleep()[3:]  # a fraction no other process sleeps for
    args = ["sweep", "--param", "i=0:29:1", "--slots", "2", "--out", "r.csv", "--",
            "sh", "-c", f"sleep 0.05{marker}; echo {{i}}"]
    p = subprocess.Popen([COS] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_rows("r.csv", 8)
    p.kill()
    p.wait()
    check_no_processes("0.05" + marker, within=3)
    before = rows_of(open("r.csv").read())
    check(0 < len(before) < 30, "killed in the middle", len(before))
    with open("r.csv", "a") as f:
        f.write("29,29,o")  # as if the kill had cut a row short
    _, err, _ = sweep(["--resume"] + args[1:])
    rows = rows_of(open("r.csv").read())
    points = sorted(int(r["i"]) for r in rows)
    check(points == list(range(30)), "each point once", points)
    check(all(r["status"] == "ok" and r["value"] == r["i"] for r in rows), "all done", rows)
    check(f"({len(before)} done before)" in err, "summary counts the rows kept", err)
    check("a row cut short" in err, "says it dropped the partial row", err)


@case
def resume_reruns_failed():
    """--resume keeps successful rows and runs the failed points again."""
    sweep(["--param", "x=1:4:1", "--out", "r.jsonl", "--", "sh", "-c", "[ {x} != 3 ] && echo {x}"], expect=1)
    first = jsonl_of(open("r.jsonl").read())
    check(sorted(r["status"] for r in first) == ["failed", "ok", "ok", "ok"], "one failed", first)
    _, err, _ = sweep(["--resume", "--param", "x=1:4:1", "--out", "r.jsonl", "--", "sh", "-c", "echo {x}"])
    rows = jsonl_of(open("r.jsonl").read())
    check(sorted(r["x"] for r in rows) == [1, 2, 3, 4], "one row per point", rows)
    check(all(r["status"] == "ok" for r in rows), "all ok", rows)
    check("3 done before" in err, "three kept", err)
    _, err, secs = sweep(["--resume", "--param", "x=1:4:1", "--out", "r.jsonl", "--", "sh", "-c", "echo {x}"])
    check("4 points: 4 done" in err, "nothing left to run", err)


@case
def interrupt():
    """Ctrl-C stops the running points (no process left), keeps finished rows, exits 130."""
    marker = unique_sleep()
    p = subprocess.Popen([COS, "sweep", "--param", "i=0:9:1", "--slots", "2", "--out", "r.csv", "--",
                          "sh", "-c", f"if [ {{i}} -ge 2 ]; then sleep {marker} & sleep {marker}; fi; echo {{i}}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_rows("r.csv", 3)
    time.sleep(0.2)  # points 2 and 3 are sleeping
    p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        raise Failure("cos did not stop after SIGINT")
    check(p.returncode == 130, f"exit status {p.returncode}", err)
    check_no_processes(marker)
    rows = rows_of(open("r.csv").read())
    check(sorted(r["i"] for r in rows) == ["0", "1"], "the finished rows are kept", rows)
    check("interrupted" in err and "8 not run" in err, "summary", err)


@case
def resume_exact_values():
    """--resume tells points by their exact text and place: 1.10 and 1.1 are two points, each run once."""
    # Point 1 (1.1) done, point 0 (1.10) not: a canonical 1.1 would take point 0 for done.
    args = ["--param", "ver=1.10,1.1", "--slots", "1", "--out", "r.csv", "--",
            "sh", "-c", "[ {ver} = 1.1 ] && echo {ver}"]
    sweep(args, expect=1)
    first = rows_of(open("r.csv").read())
    check(sorted((r["ver"], r["status"]) for r in first) == [("1.1", "ok"), ("1.10", "failed")], "first run", first)
    _, err, _ = sweep(["--resume"] + args[:-1] + ["echo {ver}"])
    rows = rows_of(open("r.csv").read())
    check(sorted((r["point"], r["ver"], r["status"]) for r in rows) == [("0", "1.10", "ok"), ("1", "1.1", "ok")],
          "each point once, both ok", rows)
    check("(1 done before)" in err, "one kept", err)


@case
def resume_other_grid():
    """--resume over the results of another grid with the same names is exit 2, saying what differs."""
    sweep(["--param", "x=1,2", "--out", "r.csv", "--", "echo", "{x}"])
    before = open("r.csv").read()
    bad(["--resume", "--param", "x=3,4", "--out", "r.csv", "--", "echo", "{x}"],
        r"r.csv holds the results of another sweep: --param x=1,2 is now --param x=3,4")
    bad(["--resume", "--param", "x=1,2", "--param", "y=1", "--out", "r.csv", "--", "echo", "{x}{y}"],
        r"other parameters \(x\), not of this one \(x, y\)")
    check(open("r.csv").read() == before, "the results are left alone")
    # Another command is how failed points are fixed: a warning, not a refusal.
    _, err, _ = sweep(["--resume", "--param", "x=1,2", "--out", "r.csv", "--", "echo", "v{x}"])
    check("its command was 'echo {x}', now 'echo v{x}'" in err, "says the command changed", err)
    sweep(["--param", "x=1,2", "--out", "r.jsonl", "--", "echo", "{x}"])
    bad(["--resume", "--param", "x=2,1", "--out", "r.jsonl", "--", "echo", "{x}"],
        r"r.jsonl holds the results of another sweep: --param x=1,2 is now --param x=2,1")
    _, err, _ = sweep(["--resume", "--param", "x=1:2:1", "--out", "r.jsonl", "--", "echo", "{x}"])
    check("2 done before" in err, "the same grid written another way resumes", err)


@case
def one_sweep_per_out():
    """A second sweep on the --out of a running one refuses at once, naming the file and the other's pid."""
    marker = unique_sleep()[3:]
    p = subprocess.Popen([COS, "sweep", "--param", "i=0:7:1", "--slots", "1", "--out", "r.csv", "--",
                          "sh", "-c", f"sleep 0.3{marker}; echo {{i}}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_rows("r.csv", 2)
        for args in (["--param", "i=0:7:1"], ["--resume", "--param", "i=0:7:1"]):
            rc, out, err, secs = run(["sweep"] + args + ["--out", "r.csv", "--", "echo", "{i}"])
            check(rc == 2, f"exit status {rc}", err)
            check("r.csv" in err and f"pid {p.pid}" in err, "names the file and the other sweep", err)
            check(secs < 2, f"refused at once, not after {secs:.1f} s")
        check(p.poll() is None, "the first sweep is still running")
    finally:
        p.wait(timeout=20)
    check(p.returncode == 0, "the first sweep ended well")
    rows = rows_of(open("r.csv").read())
    check(sorted(int(r["i"]) for r in rows) == list(range(8)), "only the first sweep wrote r.csv", rows)
    sweep(["--resume", "--param", "i=0:7:1", "--out", "r.csv", "--", "sh", "-c", "echo {i}"])


@case
def csv_failed_rows_at_once():
    """CSV: a failed row is in the file when its point ends, before any success; a success adds its columns."""
    marker = unique_sleep()[3:]
    script = f'if [ {{i}} -le 2 ]; then echo no >&2; exit 1; fi; sleep 0.3{marker}; echo \'{{"e": {{i}}}}\''
    p = subprocess.Popen([COS, "sweep", "--param", "i=1:4:1", "--slots", "1", "--out", "r.csv", "--",
                          "sh", "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_rows("r.csv", 3)
    p.kill()
    p.wait()
    check_no_processes("0.3" + marker, within=3)
    rows = rows_of(open("r.csv").read())
    check([(r["i"], r["status"]) for r in rows] == [("1", "failed"), ("2", "failed")], "the failed rows", rows)
    sweep(["--resume", "--param", "i=1:4:1", "--slots", "1", "--out", "r.csv", "--", "sh", "-c", script], expect=1)
    text = open("r.csv").read()
    check(text.splitlines()[0].endswith("attempts,e,error"), "the result column came with the success", text)
    rows = rows_of(text)
    check(sorted((r["i"], r["status"], r["e"]) for r in rows) ==
          [("1", "failed", ""), ("2", "failed", ""), ("3", "ok", "3"), ("4", "ok", "4")], "every row", rows)


# --- bad input -------------------------------------------------------------

def bad(args, pattern):
    rc, out, err, _ = run(["sweep"] + args)
    check(rc == 2, f"cos sweep {' '.join(args)}: exit status {rc}, expected 2", err)
    check(re.search(pattern, err), f"message matching {pattern!r}", err)
    check(out == "", "nothing on stdout", out)


@case
def bad_unknown_placeholder():
    bad(["--param", "x=1", "--", "echo", "{x}", "{y}"], r"unknown placeholder \{y\}.*the parameters are x")


@case
def bad_parameter_without_values():
    bad(["--param", "x=", "--", "echo", "{x}"], r"the parameter x has no values")
    bad(["--param", "x", "--", "echo", "{x}"], r"expected NAME=V1,V2")
    bad(["--param", "x=1,,2", "--", "echo", "{x}"], r"empty value")


@case
def bad_malformed_range():
    bad(["--param", "x=1:2", "--", "echo", "{x}"], r"malformed range '1:2'.*START:STOP:STEP")
    bad(["--param", "x=1:b:1", "--", "echo", "{x}"], r"malformed range: STOP 'b' is not a number")
    bad(["--param", "x=0:1:0", "--", "echo", "{x}"], r"malformed range: the step must not be zero")
    bad(["--param", "x=0:1:-1", "--", "echo", "{x}"], r"malformed range: the step goes away from STOP")


@case
def bad_points_file():
    bad(["--points", "missing.csv", "--", "echo", "{x}"], r"--points missing.csv: cannot read the points file")
    with open("ragged.csv", "w") as f:
        f.write("a,b\n1,2\n3\n")
    bad(["--points", "ragged.csv", "--", "echo", "{a}"], r"line 3 has 1 values, the header names 2")
    with open("empty.csv", "w") as f:
        f.write("a\n")
    bad(["--points", "empty.csv", "--", "echo", "{a}"], r"a header but no points")


@case
def bad_file_is_directory():
    """--points DIR and --out DIR are exit 2 with a message naming the file; a points file may start with a BOM."""
    os.mkdir("d.csv")
    bad(["--points", "d.csv", "--", "echo", "{x}"], r"--points d.csv: cannot read the points file: d.csv is a directory")
    bad(["--resume", "--param", "x=1", "--out", "d.csv", "--", "echo", "{x}"], r"--out d.csv: it is a directory")
    bad(["--param", "x=1", "--out", "d.csv", "--", "echo", "{x}"], r"--out d.csv: it is a directory")
    check(os.listdir(".") == ["d.csv"], "nothing written beside it", os.listdir("."))
    with open("bom.csv", "wb") as f:
        f.write(b"\xef\xbb\xbfa,b\r\n1,x\r\n")
    out, _, _ = sweep(["--points", "bom.csv", "--", "echo", "{a}{b}"])
    check(column(rows_of(out), "output") == ["1x"], "the BOM is not part of the first name", out)
    out, _, _ = sweep(["--points", "/dev/stdin", "--", "echo", "{a}"], input="a\n7\n")
    check(column(rows_of(out), "value") == ["7"], "a pipe is a points file too", out)


@case
def scratch_placeholder():
    """{scratch} is a fresh empty directory per point on the slot's disk, removed when the point ends."""
    os.mkdir("scratch")
    env = dict(os.environ, COS_SCRATCH=os.path.abspath("scratch"))
    out, err, _ = sweep(["--param", "i=1:6:1", "--", "sh", "-c",
                         'test -d "$0" && test -z "$(ls -A "$0")" && touch "$0/f{i}" && echo "{\\"dir\\": \\"$0\\"}"',
                         "{scratch}"], env=env)
    dirs = column(rows_of(out), "dir")
    check(len(set(dirs)) == 6, "a directory of its own per point", dirs)
    check(all(os.path.dirname(d) == os.path.abspath("scratch") for d in dirs), "under COS_SCRATCH", dirs)
    check(os.listdir("scratch") == [], "every one removed", os.listdir("scratch"))


@case
def scratch_of_a_failed_point_is_removed():
    """A command that fails is the point's result, not a failed task: its scratch goes even with COS_KEEP_SCRATCH=1."""
    os.mkdir("scratch")
    env = dict(os.environ, COS_SCRATCH=os.path.abspath("scratch"), COS_KEEP_SCRATCH="1")
    sweep(["--param", "i=1,2", "--", "sh", "-c", 'touch "$0/f"; exit {i}', "{scratch}"], expect=1, env=env)
    check(os.listdir("scratch") == [], "a failed command's scratch is the point's, removed with it", os.listdir("scratch"))


@case
def mirror_per_host():
    """--mirror DIR copies DIR once per host; arguments under DIR run on that host's copy."""
    os.makedirs("data/sub")
    with open("data/sub/in.txt", "w") as f:
        f.write("hello\n")
    os.mkdir("scratch")
    env = dict(os.environ, COS_SCRATCH=os.path.abspath("scratch"))
    out, err, _ = sweep(["--hosts", "a=2,b=1", "--mirror", "data", "--param", "i=1:9:1", "--", "sh", "-c",
                         'echo "{\\"path\\": \\"$0\\", \\"opt\\": \\"$1\\", \\"lines\\": $(wc -l < "$0"), \\"first\\": \\"$(head -n 1 "$0")\\"}"; echo {i} >> "$0"',
                         "data/sub/in.txt", "--in=data/sub/in.txt"], env=env)
    rows = rows_of(out)
    for r in rows:
        copy = os.path.join(os.path.abspath("scratch"), f"cos-sweep-")
        check(r["path"].startswith(copy) and r["path"].endswith(f"-{r['host']}/0/sub/in.txt"),
              "the host's own copy", r)
        check(r["opt"] == "--in=" + r["path"], "a path after = too", r)
        check(r["first"] == "hello", "the copied contents", r)
    # Copied once per host: each point appends a line to the copy it read, so
    # host b's points (one slot) saw 1, 2, 3, ... lines; host a's (two slots,
    # so one other point may be between its read and its append) at least k.
    seen = {}
    for r in rows:
        seen.setdefault(r["host"], []).append(int(r["lines"]))
    b, a = sorted(seen["b"]), sorted(seen["a"])
    check(b == list(range(1, len(b) + 1)), "one copy on b, appended to by each point", seen)
    check(all(n >= max(1, k) for k, n in enumerate(a)) and a[-1] <= len(a), "one copy on a", seen)
    with open("data/sub/in.txt") as f:
        check(f.read() == "hello\n", "the original is untouched")
    check(os.listdir("scratch") == [], "the copies are removed at the end", os.listdir("scratch"))


@case
def bad_mirror_not_directory():
    bad(["--mirror", "missing", "--param", "x=1", "--", "echo", "{x}"], r"--mirror missing: not a directory")


@case
def bad_slot_count():
    bad(["--slots", "0", "--param", "x=1", "--", "echo", "{x}"], r"--slots 0: the number of worker processes must be positive")
    bad(["--slots", "-2", "--param", "x=1", "--", "echo", "{x}"], r"must be positive")
    bad(["--hosts", "a=0", "--param", "x=1", "--", "echo", "{x}"], r"host 'a' has 0 slots")


@case
def bad_resume_other_parameters():
    sweep(["--param", "x=1", "--out", "r.csv", "--", "echo", "{x}"])
    bad(["--resume", "--param", "y=1", "--out", "r.csv", "--", "echo", "{y}"],
        r"r.csv holds the results of a sweep over other parameters \(x\), not of this one \(y\)")
    with open("other.csv", "w") as f:
        f.write("name,size\nfoo,1\n")
    bad(["--resume", "--param", "x=1", "--out", "other.csv", "--", "echo", "{x}"], r"not a results file of cos sweep")
    check(open("other.csv").read() == "name,size\nfoo,1\n", "the file is left alone")


@case
def bad_no_command():
    bad(["--param", "x=1"], r"no COMMAND: put the command to run after --")
    bad(["--param", "x=1", "--"], r"no COMMAND")
    bad(["--param", "x=1", "--", "no-such-program-cos-test", "{x}"], r"cannot run 'no-such-program-cos-test'")


@case
def bad_other_options():
    bad(["--param", "x=1", "--timeout", "soon", "--", "echo", "{x}"], r"--timeout: 'soon' is not a duration")
    bad(["--param", "x=1", "--out", "r.txt", "--", "echo", "{x}"], r"use FILE.csv or FILE.jsonl")
    bad(["--zip", "--param", "x=1,2", "--param", "y=1", "--", "echo", "{x}"], r"x has 2, y has 1")
    bad(["--param", "x=1", "--resume", "--", "echo", "{x}"], r"--resume needs --out FILE")
    bad(["--param", "status=1", "--", "echo", "{status}"], r"'status' is a column of the results")
    bad(["--no-such-option", "--", "echo"], r"no-such-option")
    rc, _, err, _ = run([])
    check(rc == 2 and "subcommand is required" in err, "cos without a command", err)


@case
def bad_command_line_names_it():
    """An unknown command or option is named in the message, with the commands there are."""
    for args, pattern in [(["swep", "--param", "x=1"], r"^cos: unknown command 'swep' \(commands: sweep, bench\)"),
                          (["sweep", "--bogus", "--param", "x=1", "--", "echo"], r"^cos sweep: unknown option '--bogus'"),
                          (["sweep", "--param", "x=1", "--slot=2", "--", "echo"], r"^cos sweep: unknown option '--slot'"),
                          (["--bogus", "sweep"], r"^cos: unknown option '--bogus'"),
                          (["bench", "-r", "2", "--nope"], r"^cos bench: unknown option '--nope'")]:
        rc, out, err, _ = run(args)
        check(rc == 2 and re.search(pattern, err), f"cos {' '.join(args)}: exit status {rc}", err)
        check(out == "", "nothing on stdout", out)
    out, _, _ = sweep(["--param", "x=1", "--timeout", "5", "--progress", "--", "echo", "--bogus", "{x}"])
    check(column(rows_of(out), "output") == ["--bogus 1"], "options of COMMAND are its own", out)


@case
def help_text():
    """--help explains everything with examples, and exits with 0."""
    rc, out, _, _ = run(["--help"])
    check(rc == 0 and "sweep" in out, "cos --help", out)
    rc, out, _, _ = run(["sweep", "--help"])
    for word in ["--param", "--points", "--zip", "--out", "--slots", "--hosts", "--timeout", "--retries",
                 "--resume", "--trace", "--progress", "Examples:", "Exit status"]:
        check(word in out, f"cos sweep --help mentions {word}", out)
    check(rc == 0, "exit status 0")


@case
def bench_command():
    """cos bench explains itself, and a bad repetition count is exit 2."""
    rc, out, _, _ = run(["--help"])
    check(rc == 0 and "bench" in out, "cos --help lists bench", out)
    rc, out, _, _ = run(["bench", "--help"])
    check(rc == 0 and "--repetitions" in out and "baseline" in out, "cos bench --help", out)
    rc, _, err, _ = run(["bench", "-r", "0"])
    check(rc == 2 and "repetitions" in err, "cos bench -r 0 is exit 2", err)


@case
def bench_installed():
    """An installed cos bench (no build tree around it) says how to run the benchmarks from a build tree."""
    import shutil
    os.makedirs("prefix/bin")
    shutil.copy(COS, "prefix/bin/cos")
    p = subprocess.run(["prefix/bin/cos", "bench"], capture_output=True, text=True, timeout=30)
    check(p.returncode == 2, f"exit status {p.returncode}", p.stderr)
    for words in ["run from a build tree", "make bench", "-DCOS_BUILD_BENCH=ON", "build/cos/cos bench"]:
        check(words in p.stderr, f"the message says {words!r}", p.stderr)


@case
def progress_bar():
    """--progress draws done/failed/running and ETA on stderr even when it is not a terminal."""
    _, err, _ = sweep(["--progress", "--param", "i=1:4:1", "--", "sleep", "0.1"])
    check(re.search(r"4/4 +ok 4 +failed 0 +running 0", err) or "ETA" in err, "a progress line", err)
    _, err, _ = sweep(["--param", "i=1:2:1", "--", "true"])
    check("ETA" not in err, "no progress line off a terminal by default", err)


@case
def oscillator_demo():
    """The demo: the oscillator example over a grid, its JSON fields as columns."""
    check(OSCILLATOR and os.path.exists(OSCILLATOR), "the oscillator example is built")
    out, err, _ = sweep(["--param", "omega=0.5:1.5:0.5", "--param", "c=0.1,0.5", "--",
                         OSCILLATOR, "--omega", "{omega}", "--c", "{c}"])
    rows = rows_of(out)
    check(len(rows) == 6 and all(r["status"] == "ok" for r in rows), "six points", out)
    check(all(float(r["peak"]) > 0 and float(r["energy"]) > 0 for r in rows), "peak and energy columns", out)
    peak = {(r["omega"], r["c"]): float(r["peak"]) for r in rows}
    check(peak[("1", "0.1")] > peak[("0.5", "0.1")], "resonance at omega = 1", peak)


def main():
    global COS, OSCILLATOR
    ap = argparse.ArgumentParser()
    ap.add_argument("--cos", required=True)
    ap.add_argument("--oscillator")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--registered", help="the cases CTest registers, ';'-separated: fail unless all are")
    ap.add_argument("cases", nargs="*")
    a = ap.parse_args()
    COS = os.path.abspath(a.cos)
    OSCILLATOR = a.oscillator and os.path.abspath(a.oscillator)
    if a.list:
        print("\n".join(CASES))
        return 0
    if a.registered is not None:
        missing = sorted(set(CASES) - set(a.registered.split(";")))
        unknown = sorted(set(a.registered.split(";")) - set(CASES))
        if missing or unknown:
            print(f"FAILED: not registered in tests/CMakeLists.txt: {missing}; unknown: {unknown}", file=sys.stderr)
            return 1
        print(f"ok: all {len(CASES)} cases are registered")
        return 0
    failed = 0
    for name in a.cases or list(CASES):
        if name not in CASES:
            print(f"unknown case {name}", file=sys.stderr)
            return 2
        if not run_case(name, CASES[name], "cos-tool-test-"):
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
