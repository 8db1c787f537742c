"""Session limits: max_sessions turns extra clients away politely.

With max_sessions = 2 and two sessions held open, a third client gets the
protocol's "try later" line and is closed; once a session ends there is room
again.
"""

from client import Client, noop
from expectations import ERROR_PREFIX, GREETING
from harness import case, check, expect_error_line, expect_log, wait_until


def open_session(t, svc, token):
    c = t.connect(svc)
    c.expect_line(GREETING["imap"])
    noop(c, "imap", token)
    return c


def try_session(svc):
    """True when a new client is relayed (greeting + round trip)."""
    c = Client(svc.port, timeout=10)
    try:
        first = c.line()
        if first.startswith(ERROR_PREFIX["imap"]):
            return False
        check(first == GREETING["imap"], "unexpected first line %r", first)
        noop(c, "imap", b"after-room")
        return True
    finally:
        c.close()


@case()
def test_max_sessions(t):
    srv = t.server()
    svc = t.service(srv)
    d = t.daemon(svc, max_sessions=2)
    held = [open_session(t, svc, b"held-%d" % i) for i in range(2)]
    mark = d.mark()
    third = t.connect(svc)
    expect_error_line(third, "imap")
    expect_log(d, "max_sessions", since=mark)
    for c in held:                      # the held sessions are unaffected
        noop(c, "imap", b"still-here")
    held[0].close()
    srv.conn(0).wait_done(10)           # the daemon has torn it down
    # Teardown may finish a moment after the upstream close: poll, bounded.
    wait_until(lambda: try_session(svc), 5, "a free session slot")
    noop(held[1], "imap", b"still-here-2")
