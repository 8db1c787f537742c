"""Hostile and careless clients: what a client can make the daemon do.

1. A client that sends its own STARTTLS/STLS in a loop and never reads:
   the daemon answers each one itself, so it must stop taking input while
   the answers wait for the client (bounded memory), and go on once the
   client reads (every command answered, in order).
2. login_timeout: a session that has not logged in within N seconds of the
   client's connect is ended with the protocol's line; a client that logged
   in (or, SMTP, that sends mail without AUTH and got 354) is not; a pooled
   connection's clock starts at the client's connect.
3. max_sessions_per_client: concurrent sessions per client address, across
   services.
4. Cross-protocol requests: an HTTP request line or request header before
   login ends the session at once and never reaches the server.
5. Logs and small items: the client's refused STARTTLS logged once, the
   client's close logged as the client's doing, IMAP COMPRESS before login
   answered locally.
"""

import os
import re
import select
import socket
import ssl
import threading
import time

from client import Client, login, noop
from daemon import check_config
from expectations import ERROR_PREFIX, GREETING, echo_reply
from faults import is_asan_build
from harness import case, check, expect_error_line, wait_until
from servers import TestServer, serve_login
from test_config import error_lines
from test_local_tls import state_dir, trust
from test_pool import ConnectingClient, pool_setup, pooled_client
from test_relay import quarantine_env
from test_starttls import CLIENT_STARTTLS_REFUSAL, DAEMON_GREETING

MIB = 1024 * 1024
PROTOCOLS = ("imap", "pop3", "smtp")
PER_PROTOCOL = {p: {"protocol": p} for p in PROTOCOLS}

EHLO = b"EHLO client.test\r\n"

# ------------------------------------------------------------ expectations
# The daemon's log (case-insensitive regexes).
STARTTLS_REFUSED_LOG = r"client STARTTLS refused"
LOGIN_TIMEOUT_LOG = r"no login within login_timeout"
PER_CLIENT_LOG = r"max_sessions_per_client \(%d\) reached"
HTTP_LOG = r"HTTP request"
CLIENT_ENDED_LOG = r"closed: client ended the session"


def login_timeout_line(protocol, n):
    """The line a client gets when login_timeout = n runs out."""
    text = b"mailtlsd: no login within %d seconds\r\n" % n
    return {"imap": b"* BYE ", "pop3": b"-ERR ",
            "smtp": b"421 4.4.2 "}[protocol] + text


PER_CLIENT_LINE = {
    "imap": b"* BYE [UNAVAILABLE] mailtlsd: too many connections from your "
            b"address\r\n",
    "pop3": b"-ERR [SYS/TEMP] mailtlsd: too many connections from your "
            b"address\r\n",
    "smtp": b"421 4.7.0 mailtlsd: too many connections from your "
            b"address\r\n",
}

COMPRESS_REFUSAL = b"c1 BAD COMPRESS is only available after login\r\n"

# The client's own STARTTLS command, per protocol (the daemon answers it).
CLIENT_STARTTLS = {"imap": b"a STARTTLS\r\n", "pop3": b"STLS\r\n",
                   "smtp": b"STARTTLS\r\n"}


# ------------------------------------------------------------ the servers

def behave_login_echo(srv, st, rec):
    """Greet, answer the minimal login (SMTP: 235), then echo."""
    st.sendall(srv.greeting)
    if not serve_login(srv, st, rec):
        return
    while True:
        line = st.readline()
        if not line:
            break
        st.sendall(echo_reply(srv.protocol, line))
    st.close()


def behave_mta(srv, st, rec):
    """SMTP without AUTH (port 25): echo, but DATA gets 354 and the body
    is taken up to "." and answered "250 2.0.0 queued"."""
    st.sendall(srv.greeting)
    while True:
        line = st.readline()
        if not line:
            break
        if line.strip().upper() != b"DATA":
            st.sendall(echo_reply(srv.protocol, line))
            continue
        st.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        while True:
            body = st.readline()
            if not body:
                st.close()
                return
            if body == b".\r\n":
                break
        rec.result["mail"] = True
        st.sendall(b"250 2.0.0 queued\r\n")
    st.close()


class BehaviourServer(TestServer):
    """A TLS TestServer with a behaviour of this module."""

    def __init__(self, t, behaviour, protocol):
        super().__init__("echo", tls=t.tls_context(), protocol=protocol)
        self.behaviour = behaviour      # before any connection: none yet
        t.stack.callback(self.stop)


# ---------------------------------------------------------------- helpers

def greet(c, protocol, greeting=None):
    """Read the greeting; SMTP also says EHLO (echo server: one line)."""
    c.expect_line(greeting or GREETING[protocol])
    if protocol == "smtp":
        c.send(EHLO)
        c.expect_line(echo_reply("smtp", EHLO))


def served(svc, protocol, host="127.0.0.1", source=None):
    """A new client gets the greeting and a round trip (echo server);
    False if it is turned away with a "try later" line instead."""
    c = client_from(svc.port, host, source)
    try:
        first = c.line()
        if first.startswith(ERROR_PREFIX[protocol]):
            return False
        c.buf[:0] = first
        greet(c, protocol)
        noop(c, protocol, b"served")
        return True
    finally:
        c.close()


def client_from(port, host="127.0.0.1", source=None, timeout=10):
    """A Client to host:port whose socket is bound to source first."""
    if source is None:
        return Client(port, host, timeout)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.settimeout(timeout)
    s.connect((host, port))
    return ConnectingClient(s, timeout)


def count_log(d, pattern, since=0):
    rx = re.compile(pattern, re.I)
    return sum(1 for line in d.log(since) if rx.search(line))


def sleep_until(when):
    """Let time pass (a deadline is the point of the test)."""
    left = when - time.monotonic()
    if left > 0:
        time.sleep(left)


# ------------------------------------ 1. STARTTLS flood, client never reads

# The session's answers wait in at most 64 KiB plus a TLS record: it grows
# by 130-310 KiB.  1 MiB (well under the 16 MiB asked of it) also catches
# answers that cost far more than their bytes, such as a buffer chain per
# short line (about 1 MiB for IMAP).
RSS_BOUND_KIB = 1024
FLOOD_SECS = 15
STALL_SECS = 1.5
# What the flood sends at most: 40 MiB, less for IMAP, whose refusals are
# long: a daemon without the bound grows ~80 times what IMAP sends (40 MiB
# gave more than 3 GiB), and 8 MiB make the failure plain enough.
FLOOD_CAP = {"imap": 8 * MIB, "pop3": 40 * MIB, "smtp": 40 * MIB}
# The client's send buffer, fixed (no autotuning to 4 MiB): what waits in
# it once the daemon stops taking input is answered when the client reads,
# and a TLS client decrypts one record per answer.
FLOOD_SNDBUF = 65536


class RawSender:
    """Sends a stream of whole commands on a non-blocking socket, never
    reading; encrypt (optional) turns plaintext blocks into wire bytes."""

    def __init__(self, sock, command, encrypt=None):
        self.sock = sock
        self.block = command * (65536 // len(command))
        self.per_block = 65536 // len(command)
        self.encrypt = encrypt or (lambda data: data)
        self.pending = b""              # wire bytes not yet sent
        self.commands = 0               # whole commands put on the wire
        self.sent = 0                   # wire bytes sent

    def pump(self, limit=MIB):
        """Send what the socket takes now, up to about limit bytes; True if
        anything went out."""
        moved = 0
        while moved < limit:
            if not self.pending:
                self.pending = self.encrypt(self.block)
                self.commands += self.per_block
            try:
                n = self.sock.send(self.pending)
            except BlockingIOError:
                break
            self.pending = self.pending[n:]
            self.sent += n
            moved += n
        return moved > 0


def flood(d, sender, cap):
    """Send until cap bytes, FLOOD_SECS, or STALL_SECS without progress.

    Returns (peak RSS KiB, seconds, stalled).  Progress has no event to
    wait on: this polls the socket's writability, bounded in time."""
    sender.sock.setblocking(False)
    start = time.monotonic()
    last_progress = start
    peak = d.rss_kib()
    last_rss = 0.0
    while True:
        now = time.monotonic()
        if sender.pump():
            last_progress = now
        if now - last_rss >= 0.05:
            peak = max(peak, d.rss_kib())
            last_rss = now
        if sender.sent >= cap or now - start >= FLOOD_SECS:
            return max(peak, d.rss_kib()), now - start, False
        if now - last_progress >= STALL_SECS:
            return max(peak, d.rss_kib()), now - start, True
        select.select([], [sender.sock], [], 0.05)


def check_rss(t, base, peak, sender, secs):
    """Growth within the bound; skipped for an ASan build (quarantine)."""
    if is_asan_build(t.binary):
        return
    check(peak - base <= RSS_BOUND_KIB, "daemon RSS grew by %d KiB (from %d "
          "KiB) while a client sent %d STARTTLS commands (%.1f MiB in "
          "%.1fs) without reading", peak - base, base, sender.commands,
          sender.sent / MIB, secs)


def read_answers(reader, n, refusal, final, timeout=60):
    """Read lines until the final one: exactly n refusals before it.

    reader() returns bytes (b"" at EOF)."""
    buf = bytearray()
    count = 0
    deadline = time.monotonic() + timeout
    while True:
        check(time.monotonic() < deadline, "only %d of %d refusals within "
              "%ss", count, n, timeout)
        data = reader()
        check(data, "closed after %d of %d refusals; have %r", count, n,
              bytes(buf[:200]))
        buf += data
        end = buf.rfind(b"\n") + 1
        if not end:
            continue
        lines = bytes(buf[:end]).split(b"\r\n")[:-1]
        del buf[:end]
        for line in lines:
            if line + b"\r\n" == final:
                check(count == n, "%d refusals for %d commands", count, n)
                check(not buf, "more after the last answer: %r",
                      bytes(buf[:200]))
                return
            check(line + b"\r\n" == refusal, "expected the refusal %r, got "
                  "%r (after %d)", refusal, line, count)
            count += 1


def refusal_prefix(protocol):
    """How the daemon's answer to CLIENT_STARTTLS[protocol] starts."""
    return (b"a" if protocol == "imap" else b"") + \
        CLIENT_STARTTLS_REFUSAL[protocol]


def first_refusal(c, protocol):
    """Send one STARTTLS and learn the daemon's whole refusal line."""
    c.send(CLIENT_STARTTLS[protocol])
    line = c.line()
    check(line.startswith(refusal_prefix(protocol)), "expected the daemon's "
          "refusal, got %r", line)
    return line


@case(timeout=120, heavy=True, params=PER_PROTOCOL)
def test_starttls_flood_is_bounded(t, protocol):
    """A client (receive buffer 4 KiB) sends its STARTTLS again and again
    and never reads: the daemon's RSS grows at most 16 MiB; then the
    client reads and gets exactly one refusal per command, in order, and
    its NOOP's answer; a new client is served meanwhile."""
    srv = t.server("echo", protocol=protocol)
    svc = t.service(srv, protocol, idle_timeout=120)
    d = t.daemon(svc, env=quarantine_env())
    c = t.connect(svc, timeout=30, rcvbuf=4096)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, FLOOD_SNDBUF)
    greet(c, protocol)
    refusal = first_refusal(c, protocol)
    base = d.rss_kib()
    sender = RawSender(c.sock, CLIENT_STARTTLS[protocol])
    peak, secs, stalled = flood(d, sender, FLOOD_CAP[protocol])
    check_rss(t, base, peak, sender, secs)
    check(stalled, "the daemon took %.1f MiB of STARTTLS commands in %.1fs "
          "from a client that reads nothing", sender.sent / MIB, secs)
    check(served(svc, protocol), "a new client was not served")
    # Now the client reads: every command gets its refusal, then the NOOP.
    final = b"z NOOP end\r\n" if protocol == "imap" else b"NOOP end\r\n"
    tail = sender.pending + final
    writer = threading.Thread(target=blocking_send, args=(c.sock, tail),
                              daemon=True)
    c.sock.setblocking(True)
    c.sock.settimeout(30)
    writer.start()
    read_answers(lambda: c.read_some(262144, timeout=30), sender.commands,
                 refusal, echo_reply(protocol, final))
    writer.join(30)
    noop(c, protocol, b"after-the-flood")


def blocking_send(sock, data):
    try:
        sock.sendall(data)
    except OSError:
        pass


@case(timeout=120, heavy=True)
def test_starttls_flood_local_tls_is_bounded(t):
    """The same over local_tls = implicit (IMAP): the client's commands
    arrive in TLS records, the daemon's answers leave in TLS records."""
    srv = t.server("echo", protocol="imap")
    svc = t.service(srv, "imap", idle_timeout=120, local_tls="implicit")
    d = t.daemon(svc, env=quarantine_env(), state_dir=state_dir(t))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.stack.callback(sock.close)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, FLOOD_SNDBUF)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", svc.port))
    tls = TlsBio(sock, trust(t), "127.0.0.1")
    check(tls.line() == GREETING["imap"], "no server greeting over TLS")
    tls.write_all(CLIENT_STARTTLS["imap"])
    refusal = tls.line()
    check(refusal.startswith(refusal_prefix("imap")), "expected the daemon's "
          "refusal, got %r", refusal)
    base = d.rss_kib()
    sender = RawSender(sock, CLIENT_STARTTLS["imap"], tls.encrypt)
    peak, secs, stalled = flood(d, sender, FLOOD_CAP["imap"])
    check_rss(t, base, peak, sender, secs)
    check(stalled, "the daemon took %.1f MiB of TLS records from a client "
          "that reads nothing", sender.sent / MIB, secs)
    check(served_tls(t, svc), "a new client was not served")
    final = b"z NOOP end\r\n"
    tail = sender.pending + tls.encrypt(final)
    sock.setblocking(True)
    sock.settimeout(30)
    writer = threading.Thread(target=blocking_send, args=(sock, tail),
                              daemon=True)
    writer.start()
    read_answers(tls.read_some, sender.commands, refusal,
                 echo_reply("imap", final))
    writer.join(30)


def served_tls(t, svc):
    """A new local_tls = implicit client gets the greeting, a round trip."""
    with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as s:
        tls = TlsBio(s, trust(t), "127.0.0.1")
        check(tls.line() == GREETING["imap"], "no greeting over TLS")
        line = b"a1 NOOP served\r\n"
        tls.write_all(line)
        got = tls.line()
        check(got == echo_reply("imap", line), "NOOP answered %r", got)
    return True


class TlsBio:
    """A TLS client over memory BIOs on a blocking socket: the test decides
    when bytes go out and never reads unless it asks to."""

    def __init__(self, sock, ctx, hostname):
        self.sock = sock
        self.inb, self.outb = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inb, self.outb,
                                server_hostname=hostname)
        self.buf = bytearray()
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._feed()
        self._flush()

    def _flush(self):
        data = self.outb.read()
        if data:
            self.sock.sendall(data)

    def _feed(self):
        data = self.sock.recv(65536)
        if not data:
            self.inb.write_eof()
        else:
            self.inb.write(data)
        return data

    def encrypt(self, data):
        self.obj.write(data)
        return self.outb.read()

    def write_all(self, data):
        self.sock.sendall(self.encrypt(data))

    def read_some(self):
        """Decrypted bytes (b"" at EOF)."""
        while True:
            try:
                return self.obj.read(262144)
            except ssl.SSLWantReadError:
                if not self._feed():
                    return b""
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def line(self):
        while b"\n" not in self.buf:
            data = self.read_some()
            check(data, "closed; have %r", bytes(self.buf))
            self.buf += data
        i = self.buf.index(b"\n") + 1
        out = bytes(self.buf[:i])
        del self.buf[:i]
        return out


# ------------------------------------------------------- 2. login_timeout

LOGIN_TIMEOUT = 2
NOOP_EVERY = 0.5


def noop_line(protocol, token):
    return (b"n1 NOOP " if protocol == "imap" else b"NOOP ") + token + b"\r\n"


def noop_until_cut_off(c, protocol, started, limit=6.0):
    """Send a NOOP every NOOP_EVERY s (never idle) until the daemon's
    login_timeout line arrives instead of an answer; then the close.

    Returns the seconds from started (the client's connect) to the line."""
    want = login_timeout_line(protocol, LOGIN_TIMEOUT)
    k = 0
    while True:
        check(time.monotonic() - started < limit, "no login_timeout line "
              "within %ss of the connect (login_timeout = %d)", limit,
              LOGIN_TIMEOUT)
        line = noop_line(protocol, b"%d" % k)
        c.send(line)
        got = c.line(timeout=5)
        if got != echo_reply(protocol, line):
            break
        k += 1
        # The pause is the pacing: a line arriving meanwhile is the cut-off.
        try:
            got = c.line(timeout=NOOP_EVERY)
            break
        except AssertionError:
            if c.closed_how:
                raise
    secs = time.monotonic() - started
    check(got == want, "expected %r, got %r", want, got)
    rest = c.read_to_eof(5)
    check(rest == b"", "more after the login_timeout line: %r", rest[:200])
    return secs


@case(timeout=30, params=PER_PROTOCOL)
def test_login_timeout_ends_busy_session(t, protocol):
    """login_timeout = 2, idle_timeout large: a client that greets and
    sends a NOOP every 0.5 s (never idle) but does not log in gets the
    protocol's "no login within 2 seconds" line about 2 s after its
    connect, then the close; the log says why."""
    srv = t.server("echo", protocol=protocol)
    svc = t.service(srv, protocol, login_timeout=LOGIN_TIMEOUT,
                    idle_timeout=600)
    d = t.daemon(svc)
    started = time.monotonic()
    c = t.connect(svc)
    greet(c, protocol)
    secs = noop_until_cut_off(c, protocol, started)
    check(1.5 <= secs <= 4.5, "cut off %.1fs after the connect "
          "(login_timeout = %d)", secs, LOGIN_TIMEOUT)
    d.wait_log(LOGIN_TIMEOUT_LOG, what="the login_timeout log line")
    srv.conn(0).wait_done(10)


@case(timeout=30, params=PER_PROTOCOL)
def test_login_timeout_while_reaching(t, protocol):
    """The deadline runs from the client's connect also while mailtlsd is
    still reaching the server: behind a connect that hangs (connect_timeout
    20 s), a client that waits gets the login_timeout line about 2 s after
    its connect, not the connect failure 20 s later."""
    bh = t.blackhole()
    svc = t.service(bh, protocol, login_timeout=LOGIN_TIMEOUT,
                    connect_timeout=20, handshake_timeout=20)
    d = t.daemon(svc)
    started = time.monotonic()
    c = t.connect(svc)
    line = c.line()
    secs = time.monotonic() - started
    check(line == login_timeout_line(protocol, LOGIN_TIMEOUT),
          "got %r", line)
    check(1.5 <= secs <= 6, "cut off %.1fs after the connect "
          "(login_timeout = %d)", secs, LOGIN_TIMEOUT)
    d.wait_log(LOGIN_TIMEOUT_LOG, what="the login_timeout log line")


@case(timeout=30, params=PER_PROTOCOL)
def test_login_timeout_spares_logged_in(t, protocol):
    """A client that logs in within login_timeout is not cut off once the
    deadline has passed: a round trip at 3 s works, nothing logged."""
    srv = BehaviourServer(t, behave_login_echo, protocol)
    svc = t.service(srv, protocol, login_timeout=LOGIN_TIMEOUT,
                    idle_timeout=600)
    d = t.daemon(svc)
    started = time.monotonic()
    c = t.connect(svc)
    c.expect_line(GREETING[protocol])
    login(c, protocol)
    check(time.monotonic() - started < LOGIN_TIMEOUT - 0.5,
          "the login took too long for the test")
    sleep_until(started + LOGIN_TIMEOUT + 1)
    noop(c, protocol, b"after-the-deadline")
    check(c.is_open(), "the session was closed after the login")
    check(d.find_log(LOGIN_TIMEOUT_LOG) is None, "logged %r",
          d.find_log(LOGIN_TIMEOUT_LOG))
    check_login_timeout_works(t, svc, protocol)


def check_login_timeout_works(t, svc, protocol):
    """login_timeout is in force on this service: a client that does not
    log in is cut off (so the test above did not pass by accident)."""
    started = time.monotonic()
    c = t.connect(svc)
    c.expect_line(GREETING[protocol])
    got = c.line(timeout=LOGIN_TIMEOUT + 3)
    check(got == login_timeout_line(protocol, LOGIN_TIMEOUT),
          "a client that did not log in got %r", got)
    check(time.monotonic() - started >= LOGIN_TIMEOUT - 0.5,
          "cut off too early")


@case(timeout=30)
def test_login_timeout_spares_smtp_mail_without_auth(t):
    """SMTP without AUTH (as on port 25): once the server answered 354 to
    DATA (before the deadline), the session is not cut off: the message
    ends after the deadline and is accepted; a round trip still works."""
    srv = BehaviourServer(t, behave_mta, "smtp")
    svc = t.service(srv, "smtp", login_timeout=LOGIN_TIMEOUT,
                    idle_timeout=600)
    d = t.daemon(svc)
    started = time.monotonic()
    c = t.connect(svc)
    greet(c, "smtp")
    for line in (b"MAIL FROM:<alice@client.test>\r\n",
                 b"RCPT TO:<bob@mail.test>\r\n"):
        c.send(line)
        c.expect_line(echo_reply("smtp", line))
    c.send(b"DATA\r\n")
    got = c.line()
    check(got.startswith(b"354 "), "DATA answered %r", got)
    check(time.monotonic() - started < LOGIN_TIMEOUT - 0.5,
          "DATA took too long for the test")
    c.send(b"Subject: sent without AUTH\r\n\r\nfirst line\r\n")
    sleep_until(started + LOGIN_TIMEOUT + 1)
    c.send(b"last line\r\n.\r\n")
    c.expect_line(b"250 2.0.0 queued\r\n")
    noop(c, "smtp", b"after-the-deadline")
    check(srv.conn(0).result.get("mail"), "the server got no message")
    check(d.find_log(LOGIN_TIMEOUT_LOG) is None, "logged %r",
          d.find_log(LOGIN_TIMEOUT_LOG))
    check_login_timeout_works(t, svc, "smtp")


@case(timeout=40)
def test_login_timeout_pooled_clock_starts_at_connect(t):
    """pool_size = 1: the pooled connection waits in the pool longer than
    login_timeout; a client that takes it is not cut off at once (a round
    trip works), but is about login_timeout after its connect."""
    srv, svc, d = pool_setup(t, 1, "imap", service_opts={
        "login_timeout": LOGIN_TIMEOUT, "idle_timeout": 600})
    sleep_until(srv.ctl(0).accepted_at + LOGIN_TIMEOUT + 1.5)
    started = time.monotonic()
    c, n = pooled_client(t, svc)
    check(n == 0, "the client got connection %d, not the pooled one", n)
    secs = noop_until_cut_off(c, "imap", started)
    check(1.5 <= secs <= 4.5, "cut off %.1fs after the connect "
          "(login_timeout = %d; the connection was pooled %.1fs before)",
          secs, LOGIN_TIMEOUT, started - srv.ctl(0).accepted_at)
    d.wait_log(LOGIN_TIMEOUT_LOG, what="the login_timeout log line")


# ----------------------------------------------------------- configuration

CONF_HEAD = """\
[global]
log_level = info
max_sessions = 10
"""
CONF_SERVICE = """\
[imap]
listen = 127.0.0.1:10143
remote = mail.test:993
server_name = mail.test
ca_file = {ca}
"""

# name -> (a config that must be accepted, one that must be rejected with
# FILE:LINE: at the line marked "# <-", or None).  The good one comes
# first: the key must exist, not merely be refused.
CONFIGS = {
    "login_timeout": (
        CONF_HEAD + "login_timeout = 0\n" + CONF_SERVICE +
        "login_timeout = 0\n",
        CONF_HEAD + CONF_SERVICE + "login_timeout = abc  # <-\n"),
    "login_timeout_global": (
        CONF_HEAD + "login_timeout = 30\n" + CONF_SERVICE,
        CONF_HEAD + "login_timeout = abc  # <-\n" + CONF_SERVICE),
    "max_sessions_per_client_negative": (
        CONF_HEAD + "max_sessions_per_client = 0\n" + CONF_SERVICE,
        CONF_HEAD + "max_sessions_per_client = -1  # <-\n" + CONF_SERVICE),
    "max_sessions_per_client_range": (
        CONF_HEAD + "max_sessions_per_client = 1000000\n" + CONF_SERVICE,
        CONF_HEAD + "max_sessions_per_client = 1000001  # <-\n" +
        CONF_SERVICE),
    "max_sessions_per_client_in_service": (
        CONF_HEAD + "max_sessions_per_client = 2\n" + CONF_SERVICE,
        CONF_HEAD + CONF_SERVICE + "max_sessions_per_client = 2  # <-\n"),
}


def write_config(t, name, text):
    """Fill in {ca}, strip the "# <-" marker: (path, marked line)."""
    text = text.format(ca=t.certs.ca)
    lines = text.splitlines()
    marked = [i + 1 for i, l in enumerate(lines) if "# <-" in l]
    path = os.path.join(t.tmp, name + ".conf")
    with open(path, "w") as f:
        f.write("\n".join(l.split("  # <-")[0] for l in lines) + "\n")
    return path, (marked[0] if marked else None)


@case(params={k: {"name": k} for k in CONFIGS})
def test_config_keys(t, name):
    """mailtlsd -t accepts the new keys' good values and rejects bad ones
    (and max_sessions_per_client outside [global]) with FILE:LINE:."""
    good, bad = CONFIGS[name]
    path, _ = write_config(t, name + "-good", good)
    rc, out, err = check_config(t.binary, path)
    check(rc == 0 and "configuration OK" in out + err, "exit %s for a good "
          "config; output: %s", rc, (out + err).strip())
    path, line = write_config(t, name + "-bad", bad)
    rc, out, err = check_config(t.binary, path)
    check(rc == 1, "exit %s for a bad config (want 1); output: %s", rc,
          (out + err).strip())
    found = error_lines(path, err)
    check(line in found, "no %s:%d: error; stderr: %r", path, line, err)


# --------------------------------------------- 3. max_sessions_per_client

def held_session(t, svc, protocol, token, source=None):
    """A session from source (default 127.0.0.1), greeted, one round trip,
    kept open until teardown."""
    c = client_from(svc.port, source=source)
    t.stack.callback(c.close)
    greet(c, protocol)
    noop(c, protocol, token)
    return c


def refused_per_client(t, svc, protocol):
    """A client from 127.0.0.1 gets the per-client line, then the close."""
    c = t.connect(svc)
    got = c.line()
    check(got == PER_CLIENT_LINE[protocol], "expected %r, got %r",
          PER_CLIENT_LINE[protocol], got)
    rest = c.read_to_eof(5)
    check(rest == b"", "more after the refusal: %r", rest[:200])


@case(timeout=40, valgrind=True)
def test_max_sessions_per_client(t):
    """max_sessions_per_client = 2 over three services: an IMAP and a POP3
    session held from 127.0.0.1 use it up (services count together); a
    third session from 127.0.0.1, on any service, gets the protocol's line
    and the log names the limit and the address; a client from 127.0.0.2
    is served; once a held session ends 127.0.0.1 is served again."""
    svcs = {}
    srvs = {}
    for p in PROTOCOLS:
        srvs[p] = t.server("echo", protocol=p)
        svcs[p] = t.service(srvs[p], p, name=p, idle_timeout=600)
    d = t.daemon(*svcs.values(), max_sessions_per_client=2)
    held = [held_session(t, svcs["imap"], "imap", b"held-imap"),
            held_session(t, svcs["pop3"], "pop3", b"held-pop3")]
    for p in PROTOCOLS:
        mark = d.mark()
        refused_per_client(t, svcs[p], p)
        line = d.wait_log(PER_CLIENT_LOG % 2, since=mark,
                          what="the max_sessions_per_client log line")
        check("127.0.0.1" in line, "the log line does not name the address: "
              "%r", line)
    # Another address has its own count.
    other = [held_session(t, svcs[p], p, b"other-%s" % p.encode(),
                          source="127.0.0.2") for p in ("imap", "smtp")]
    for c, p in zip(held + other, ("imap", "pop3", "imap", "smtp")):
        noop(c, p, b"still-here")
    # One held session ends: 127.0.0.1 has room again.
    held[0].close()
    srvs["imap"].conn(0).wait_done(10)
    wait_until(lambda: served(svcs["smtp"], "smtp"), 5,
               "127.0.0.1 to be served again")
    noop(held[1], "pop3", b"still-here-2")


# ------------------------------------------- 4. cross-protocol (HTTP) requests

# What a web page can make a browser send to a mail port: a form POST whose
# body holds mail commands.
HTTP_BODY = {
    "imap": b"a1 LOGIN alice secret\r\na2 SELECT INBOX\r\n"
            b"a3 STORE 1:* +FLAGS (\\Deleted)\r\na4 EXPUNGE\r\n",
    "pop3": b"USER alice\r\nPASS secret\r\nDELE 1\r\nQUIT\r\n",
    "smtp": b"EHLO evil.test\r\nMAIL FROM:<x@evil.test>\r\n"
            b"RCPT TO:<victim@mail.test>\r\nDATA\r\nSubject: spam\r\n\r\n"
            b"spam\r\n.\r\nQUIT\r\n",
}


def browser_post(port, body):
    return (b"POST / HTTP/1.1\r\n"
            b"Host: 127.0.0.1:%d\r\n"
            b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) "
            b"Gecko/20100101 Firefox/128.0\r\n"
            b"Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\n"
            b"Content-Type: text/plain\r\n"
            b"Content-Length: %d\r\n"
            b"Origin: http://attacker.test\r\n"
            b"Connection: keep-alive\r\n"
            b"\r\n" % (port, len(body))) + body


def http_setup(t, protocol, mode):
    """An echo server (implicit TLS, or behind STARTTLS), the daemon, and
    a client that has read its greeting: (server, service, daemon, client)."""
    starttls = mode == "starttls"
    srv = t.server("echo", protocol=protocol, starttls=starttls)
    svc = t.service(srv, protocol, idle_timeout=600,
                    **({"tls": "starttls"} if starttls else {}))
    d = t.daemon(svc)
    c = t.connect(svc)
    c.expect_line(DAEMON_GREETING[protocol] if starttls
                  else GREETING[protocol])
    return srv, svc, d, c


def expect_http_refused(d, c, protocol, rec, mark, before=b""):
    """The client gets the error line and the close, the log says HTTP, the
    server received nothing inside TLS (but before, the earlier lines)."""
    expect_error_line(c, protocol)
    d.wait_log(HTTP_LOG, since=mark, what="the HTTP request log line")
    rec.wait_done(10)
    check(rec.tls_ok, "no TLS to the server")
    with rec.lock:
        app = bytes(rec.app)
    check(app == before, "the server received %r inside TLS (want %r)",
          app[:300], before)


@case(params={"%s-%s" % (p, m): {"protocol": p, "mode": m}
              for p in PROTOCOLS for m in ("implicit", "starttls")},
      valgrind=True)
def test_http_request_ends_session(t, protocol, mode):
    """A browser-like POST (mail commands in its body) as a client's first
    bytes: the error line, the close, "HTTP request" in the log, and not
    a byte of it reaches the server inside TLS."""
    srv, svc, d, c = http_setup(t, protocol, mode)
    mark = d.mark()
    c.send(browser_post(svc.port, HTTP_BODY[protocol]))
    expect_http_refused(d, c, protocol, srv.conn(0), mark)


# A session going on normally, then a line that is an HTTP request header.
HEADER_FIRST = {
    "imap": b"GET NOOP /index.html\r\n",     # a tag that is a method: fine
    "pop3": b"NOOP\r\n",
    "smtp": EHLO,
}


@case(params={"%s-%s" % (p, h): {"protocol": p, "header": h}
              for p in PROTOCOLS for h in ("host", "user-agent")},
      valgrind=True)
def test_http_header_ends_session(t, protocol, header):
    """Before login a line that is a common HTTP request header (without
    a request line before it) ends the session like a request line; the
    command before it (an IMAP tag that is an HTTP method, too) was
    relayed normally."""
    srv = t.server("echo", protocol=protocol)
    svc = t.service(srv, protocol, idle_timeout=600)
    d = t.daemon(svc)
    c = t.connect(svc)
    c.expect_line(GREETING[protocol])
    first = HEADER_FIRST[protocol]
    c.send(first)
    c.expect_line(echo_reply(protocol, first))
    mark = d.mark()
    c.send(b"Host: 127.0.0.1:%d\r\n" % svc.port if header == "host" else
           b"User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64)\r\n")
    expect_http_refused(d, c, protocol, srv.conn(0), mark, before=first)


# --------------------------------------------------- 5. logs, small items

@case(params=PER_PROTOCOL, valgrind=True)
def test_client_starttls_refusal_logged_once(t, protocol):
    """The client's own STARTTLS/STLS, refused by the daemon three times:
    one info line "client STARTTLS refused" for the session."""
    srv = t.server("echo", protocol=protocol)
    svc = t.service(srv, protocol)
    d = t.daemon(svc)
    c = t.connect(svc)
    greet(c, protocol)
    mark = d.mark()
    for _ in range(3):
        first_refusal(c, protocol)
    noop(c, protocol, b"after-the-refusals")
    d.wait_log(STARTTLS_REFUSED_LOG, since=mark,
               what="the client STARTTLS log line")
    n = count_log(d, STARTTLS_REFUSED_LOG, since=mark)
    check(n == 1, "%d log lines for three refusals in one session", n)


@case(params=PER_PROTOCOL, valgrind=True)
def test_client_close_logged_as_client(t, protocol):
    """A client that reads the greeting and closes: the session's closed:
    line says the client ended it."""
    srv = t.server("echo", protocol=protocol)
    svc = t.service(srv, protocol)
    d = t.daemon(svc)
    c = t.connect(svc)
    c.expect_line(GREETING[protocol])
    c.close()
    line = d.wait_log(r"\] closed: ", what="the session's closed: line")
    check(re.search(CLIENT_ENDED_LOG, line), "closed: line %r does not say "
          "the client ended the session", line)


@case(valgrind=True)
def test_imap_compress_before_login(t):
    """IMAP COMPRESS DEFLATE before login is answered by the daemon (BAD)
    and never reaches the server; the session goes on."""
    srv = t.server("echo", protocol="imap")
    svc = t.service(srv, "imap")
    t.daemon(svc)
    c = t.connect(svc)
    c.expect_line(GREETING["imap"])
    c.send(b"c1 COMPRESS DEFLATE\r\n")
    c.expect_line(COMPRESS_REFUSAL)
    line = noop_line("imap", b"next")
    c.send(line)
    c.expect_line(echo_reply("imap", line))
    rec = srv.conn(0)
    with rec.lock:
        app = bytes(rec.app)
    check(app == line, "the server received %r, want only %r", app, line)
