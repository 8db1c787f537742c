"""The short soak: load with churn, then no fd or memory left behind, and an
idle daemon that uses no CPU.

The same code as `make soak` (tests/soak/soak.py), shorter: 500 sessions
kept open for 15 s after a 4 s warm-up, each logging in and moving data
checked by SHA-256, a share of them slow readers or resetting their
connection at a chosen point; afterwards the daemon's fd count is back to
its start and its RSS within max(10%, 4 MiB) of its post-warm-up value
(not checked on sanitizer builds).  The second test holds 1,000 idle
relayed sessions and measures the daemon's CPU time over 5 s.  Both are
skipped under valgrind, where the load would only measure valgrind.
"""

import os
import sys

from harness import Skip, case, check

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "soak"))
import soak  # noqa: E402


def soak_daemon(t, sessions):
    """Soak servers and a daemon relaying to them; (daemon, service)."""
    procs, port = soak.start_servers(t.certs.good, t.certs.key, 2)
    t.stack.callback(soak.stop_procs, procs)
    svc = t.service("127.0.0.1:%d" % port, protocol="imap",
                    connect_timeout=10, handshake_timeout=30)
    d = t.daemon(svc, log_level="info", max_sessions=2 * sessions + 64,
                 max_sessions_per_client=0)
    exe = os.readlink("/proc/%d/exe" % d.pid)
    if "valgrind" in exe or "memcheck" in exe:
        raise Skip("under valgrind")
    return d, svc


@case(timeout=150, heavy=True)
def test_load_and_churn(t):
    d, svc = soak_daemon(t, 500)
    rep = soak.soak(d.pid, svc.port, seconds=15, sessions=500, warmup=4,
                    idle_sessions=0, log=lambda *_: None)
    text = soak.report_text(rep)
    print(text)
    bad = soak.failures(rep)
    check(not bad, "%s", "; ".join(bad))


@case(timeout=90, heavy=True)
def test_idle_sessions_use_no_cpu(t):
    d, svc = soak_daemon(t, 1000)
    start = soak.fd_count(d.pid)
    idle = soak.idle_cpu(d.pid, svc.port, 1000)
    print("%d idle relayed sessions: %.2f s CPU in %.1f s" % (
        idle["sessions"], idle["cpu"], idle["seconds"]))
    check(idle["sessions"] == 1000 and not idle["errors"],
          "only %d of 1000 idle sessions opened: %s", idle["sessions"],
          idle["errors"])
    check(idle["fds"] >= start + 2000, "%d daemon fds with 1000 sessions",
          idle["fds"])
    check(idle["cpu"] < soak.IDLE_CPU_MAX, "the daemon used %.2f s CPU in "
          "%.1f s with 1000 idle sessions", idle["cpu"], idle["seconds"])
    n = soak.wait_fds(d.pid, start)
    check(n == start, "%d daemon fds after the idle sessions closed, %d at "
          "start", n, start)
