#!/usr/bin/env python3
"""Integration test runner for mailtlsd.

    MAILTLSD=/abs/build/mailtlsd python3 tests/integration/run.py [-k PAT] [-v]

Generates the throwaway PKI once, then runs every test in its own child
process (its own process group, temp dir and port block) so a hard timeout
can kill the test together with the daemons it started.  Light tests run in
parallel; heavy ones (bulk transfers, memory bound, many sessions) run
alone afterwards.  Prints one line per test and ends with
"N passed, N failed[, N skipped]"; exits 0 only if nothing failed.
"""

import argparse
import concurrent.futures
import faulthandler
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from certs import Certs, generate  # noqa: E402

TEST_MODULES = ["test_relay", "test_tls", "test_upstream", "test_limits",
                "test_signals", "test_config", "test_starttls",
                "test_service", "test_install", "test_pool", "test_resume",
                "test_faults", "test_soak_short", "test_local_tls",
                "test_tls13", "test_probe", "test_hostile"]


def load_tests():
    for m in TEST_MODULES:
        __import__(m)
    return harness.TESTS


# ------------------------------------------------------------ child side

def child_main(args):
    """Run one test in this process; write its result as JSON."""
    tests = {c.name: c for c in load_tests()}
    case = tests[args.child]
    certs = Certs.load(os.path.join(args.session, "certs.json"))
    tmp = os.path.join(args.session, "t", "%03d" % args.index)
    os.makedirs(tmp)
    binary = os.environ["MAILTLSD"]
    faulthandler.dump_traceback_later(max(1, case.timeout - 2), exit=False)
    t = harness.Ctx(case.name, tmp, certs, binary, args.port_base)
    result = {"status": "PASS", "reason": ""}
    try:
        case.func(t, **case.kwargs)
    except harness.Skip as e:
        result = {"status": "SKIP", "reason": str(e)}
    except BaseException as e:
        traceback.print_exc()
        result = {"status": "FAIL", "reason": _reason(e)}
    errors = t.teardown()
    if errors and result["status"] != "FAIL":
        result = {"status": "FAIL", "reason": "; ".join(errors)}
    elif errors:
        result["reason"] += " (also: %s)" % "; ".join(errors)
    _dump_daemon_logs(t, result["status"])
    with open(args.result, "w") as f:
        json.dump(result, f)
    return 0


def _reason(e):
    text = str(e) or type(e).__name__
    if not isinstance(e, AssertionError):
        text = "%s: %s" % (type(e).__name__, text)
    first = text.strip().splitlines()[0] if text.strip() else text
    return first[:400]


def _dump_daemon_logs(t, status):
    if status != "FAIL":
        return
    for d in t.daemons:
        print("---- %s log (last 40 lines) ----" % d.name)
        print(d.tail(40))


# ----------------------------------------------------------- parent side

class Runner:
    def __init__(self, args, binary, session):
        self.args = args
        self.binary = binary
        self.session = session
        self.running = {}               # pid -> Popen
        self.stopping = False           # set on Ctrl-C: start nothing new
        # Each test gets its own block of ports; a per-run offset keeps two
        # suites running at once (plain and ASan builds) apart.
        self.nblocks = (32768 - harness.PORT_LOW) // harness.PORT_BLOCK
        self.offset = random.randrange(self.nblocks)

    def port_base(self, index):
        block = (self.offset + index) % self.nblocks
        return harness.PORT_LOW + block * harness.PORT_BLOCK

    def run_case(self, index, case):
        """Run one test in a child; return (status, reason, secs, output)."""
        result = os.path.join(self.session, "r%03d.json" % index)
        out = os.path.join(self.session, "o%03d.txt" % index)
        cmd = [sys.executable, os.path.abspath(__file__), "--child", case.name,
               "--index", str(index), "--session", self.session,
               "--result", result,
               "--port-base", str(self.port_base(index))]
        env = dict(os.environ, MAILTLSD=self.binary, PYTHONUNBUFFERED="1")
        t0 = time.monotonic()
        if self.stopping:
            return "FAIL", "interrupted", 0.0, ""
        with open(out, "w") as outf:
            p = subprocess.Popen(cmd, stdout=outf, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=env, cwd=HERE,
                                 start_new_session=True)
            self.running[p.pid] = p
            if self.stopping:
                kill_group(p.pid)
            status, reason = self._wait_child(p, case, result)
            del self.running[p.pid]
        with open(out) as f:
            output = f.read()
        return status, reason, time.monotonic() - t0, output

    def _wait_child(self, p, case, result):
        try:
            p.wait(case.timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        kill_group(p.pid)               # the test's daemons too, if any left
        p.wait()
        if timed_out:
            return "FAIL", "hard timeout: killed after %ss" % case.timeout
        try:
            with open(result) as f:
                r = json.load(f)
            return r["status"], r["reason"]
        except (OSError, ValueError):
            return "FAIL", "test process died (status %s)" % p.returncode

    def kill_all(self):
        self.stopping = True
        for pid in list(self.running):
            kill_group(pid)


def kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def select(tests, patterns):
    if not patterns:
        return list(tests)
    pats = [p.lower() for p in patterns]
    return [c for c in tests if any(p in c.name.lower() for p in pats)]


def report(index_case, res, verbose):
    _, case = index_case
    status, reason, secs, output = res
    line = "%-4s %s (%.1fs)" % (status, case.name, secs)
    if status != "PASS" and reason:
        line += ": " + reason.replace("\n", " ")
    print(line, flush=True)
    if verbose and (status == "FAIL" or verbose > 1) and output.strip():
        print("    " + output.rstrip().replace("\n", "\n    "), flush=True)


def run_all(runner, plan, jobs, verbose):
    """Light tests in parallel, then heavy ones alone; report in plan order."""
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    light = [ic for ic in plan if not ic[1].heavy]
    heavy = [ic for ic in plan if ic[1].heavy]
    pool = concurrent.futures.ThreadPoolExecutor(max(1, jobs))
    try:
        futures = [pool.submit(runner.run_case, *ic) for ic in light]
        for ic, fut in zip(light, futures):
            res = fut.result()
            counts[res[0]] += 1
            report(ic, res, verbose)
    except BaseException:
        runner.kill_all()               # Ctrl-C: stop children, start none
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    for ic in heavy:
        res = runner.run_case(*ic)
        counts[res[0]] += 1
        report(ic, res, verbose)
    return counts


def parent_main(args):
    binary = os.environ.get("MAILTLSD") or os.path.join(
        HERE, "..", "..", "build", "mailtlsd")
    binary = os.path.abspath(binary)
    if not os.access(binary, os.X_OK):
        print("run.py: no executable daemon at %s (set MAILTLSD)" % binary)
        print("0 passed, 1 failed")
        return 1
    tests = load_tests()
    chosen = select(tests, args.k)
    if args.list:
        print("\n".join(c.name for c in chosen))
        return 0
    if not chosen:
        print("run.py: no test matches %s" % args.k)
        print("0 passed, 0 failed")
        return 1
    plan = [(tests.index(c), c) for c in chosen]
    session = tempfile.mkdtemp(prefix="mailtlsd-it-")
    runner = Runner(args, binary, session)
    t0 = time.monotonic()
    try:
        generate(os.path.join(session, "certs")).save(
            os.path.join(session, "certs.json"))
        counts = run_all(runner, plan, args.jobs, args.verbose)
    except KeyboardInterrupt:
        runner.kill_all()
        print("interrupted")
        print("0 passed, 1 failed")
        return 130
    except Exception as e:              # e.g. openssl missing
        print("run.py: %s: %s" % (type(e).__name__, e))
        print("0 passed, 1 failed")
        return 1
    finally:
        runner.kill_all()
        if args.keep:
            print("kept test files in %s" % session)
        else:
            shutil.rmtree(session, ignore_errors=True)
    print("suite took %.1fs" % (time.monotonic() - t0))
    summary = "%d passed, %d failed" % (counts["PASS"], counts["FAIL"])
    if counts["SKIP"]:
        summary += ", %d skipped" % counts["SKIP"]
    print(summary)
    return 1 if counts["FAIL"] else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", action="append", metavar="PATTERN",
                    help="run tests whose name contains PATTERN (repeatable)")
    ap.add_argument("-v", "--verbose", action="count", default=0,
                    help="show output of failed tests (-vv: of all)")
    ap.add_argument("-j", "--jobs", type=int, default=4,
                    help="light tests run in parallel (default 4)")
    ap.add_argument("--list", action="store_true", help="list tests")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temp dir (certs, configs, logs)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--index", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--session", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--port-base", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    return child_main(args) if args.child else parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
