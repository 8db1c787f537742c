"""Signals: SIGHUP reloads without dropping sessions, SIGTERM drains.

Reload tests rewrite the config file, send SIGHUP and wait for the daemon to
log the reload (or the config error) before checking behaviour; open
sessions must keep working throughout.
"""

import os
import re
import signal
import time

from client import noop
from expectations import GREETING
from harness import case, check, connect_refused, expect_log, wait_until

GREETING_A = b"* OK server A ready\r\n"
GREETING_B = b"* OK server B ready\r\n"


def session(t, svc, greeting=GREETING["imap"], port=None):
    """A relayed IMAP session, checked with one round trip."""
    c = t.connect(port or svc)
    c.expect_line(greeting)
    noop(c, "imap", b"hello")
    return c


def wait_reloaded(d, mark):
    expect_log(d, "reloaded", since=mark, timeout=10)


@case(valgrind=True)
def test_sighup_new_remote(t):
    """A valid new config: new sessions use it, an open one keeps working."""
    a = t.server(greeting=GREETING_A)
    b = t.server(greeting=GREETING_B)
    svc = t.service(a)
    d = t.daemon(svc)
    old = session(t, svc, GREETING_A)
    svc.opts["remote"] = b.address
    wait_reloaded(d, d.reload(t.config([svc])))
    session(t, svc, GREETING_B)
    noop(old, "imap", b"old-session")
    check(a.count() == 1, "server A got %d connections", a.count())


@case(valgrind=True)
def test_sighup_invalid_config(t):
    """An invalid new config is logged and the old one kept."""
    a = t.server(greeting=GREETING_A)
    svc = t.service(a)
    d = t.daemon(svc)
    old = session(t, svc, GREETING_A)
    text = t.config([svc])
    lines = text.splitlines()
    bad_line = len(lines) + 1
    mark = d.reload(text + "no_such_key = 1\n")
    d.wait_log(re.escape(d.conf_path) + r":%d:" % bad_line, since=mark,
               timeout=10, what="the config error as FILE:LINE")
    check(d.alive(), "daemon exited on an invalid reload")
    session(t, svc, GREETING_A)
    noop(old, "imap", b"old-session")


@case(valgrind=True)
def test_sighup_start_settings_named(t):
    """user and pid_file act at start only: a reload that changes them says
    so in the log (not silently ignored) and the daemon goes on serving."""
    a = t.server(greeting=GREETING_A)
    svc = t.service(a)
    d = t.daemon(svc)
    pid_file = os.path.join(t.tmp, "other.pid")
    mark = d.reload(t.config([svc], user="nobody", pid_file=pid_file))
    wait_reloaded(d, mark)
    d.wait_log(r'user changed from "" to "nobody": this takes effect '
               r'only when mailtlsd is restarted', since=mark)
    d.wait_log(r'pid_file changed from "" to "%s": this takes effect '
               r'only when mailtlsd is restarted' % re.escape(pid_file),
               since=mark)
    session(t, svc, GREETING_A)
    check(not os.path.exists(pid_file), "the reload wrote %s", pid_file)


@case(valgrind=True)
def test_sighup_listen_added_and_removed(t):
    """listen P1,P2 -> P2,P3: P3 opens, P1 closes, P2 and sessions stay."""
    a = t.server()
    svc = t.service(a)
    p1, p2, p3 = svc.port, t.ports.take(), t.ports.take()
    svc.opts["listen"] = ["127.0.0.1:%d" % p for p in (p1, p2)]
    d = t.daemon(svc)
    on_p1 = session(t, svc, port=p1)
    on_p2 = session(t, svc, port=p2)
    svc.opts["listen"] = ["127.0.0.1:%d" % p for p in (p2, p3)]
    wait_reloaded(d, d.reload(t.config([svc])))
    wait_until(lambda: not connect_refused(p3), 5, "port %d to open" % p3)
    session(t, svc, port=p3)
    session(t, svc, port=p2)
    wait_until(lambda: connect_refused(p1), 5, "port %d to close" % p1)
    noop(on_p1, "imap", b"p1-session")
    noop(on_p2, "imap", b"p2-session")


@case()
def test_sigterm_drains(t):
    """SIGTERM: no new clients, the open session works, exit 0 when it ends."""
    srv = t.server()
    svc = t.service(srv)
    d = t.daemon(svc)
    c = session(t, svc)
    d.stopped_by_test = True
    d.signal(signal.SIGTERM)
    wait_until(lambda: connect_refused(svc.port), 5, "the listener to close")
    noop(c, "imap", b"draining")
    check(d.alive(), "daemon exited with a session open")
    c.close()
    rc = d.wait_exit(10)
    check(rc == 0, "exit status %s after the last session closed", rc)


@case()
def test_sigterm_shutdown_timeout(t):
    """shutdown_timeout = 1: a session that never ends is closed, exit 0."""
    srv = t.server()
    svc = t.service(srv, shutdown_timeout=1)
    d = t.daemon(svc)
    c = session(t, svc)
    d.stopped_by_test = True
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    rc = d.wait_exit(10)
    secs = time.monotonic() - t0
    check(rc == 0, "exit status %s", rc)
    check(0.8 <= secs <= 6, "exited %.1fs after SIGTERM (want ~1s)", secs)
    c.read_to_eof(5)


@case()
def test_sigint_exits_cleanly(t):
    """SIGINT with no sessions: exit 0 promptly."""
    d = t.daemon(t.service(t.server()))
    d.stopped_by_test = True
    d.signal(signal.SIGINT)
    rc = d.wait_exit(10)
    check(rc == 0, "exit status %s after SIGINT", rc)
