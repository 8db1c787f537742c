"""Fault-injection helpers: scripted servers, resets, process probes, a DNS
server and the allocation-failure shim (test_faults.py uses them).

ScriptServer runs a test's own function per connection (TLS first if asked,
over servers.Stream), so a test can reset, stall or trickle at any point.
reset() ends a socket with an RST (SO_LINGER 0, then close).  fd_count() and
cpu_seconds() read /proc.  DnsServer answers A/AAAA queries over UDP from a
table (addresses, NXDOMAIN, SERVFAIL, silence, delay) for a daemon started
with MAILTLSD_RESOLV_CONF.  FailAlloc drives tests/faults/failalloc.c, the
LD_PRELOAD shim that makes the daemon's allocations fail on request.
"""

import os
import re
import signal
import socket
import struct
import subprocess
import threading

from harness import Skip, check, wait_until
from servers import Stream, ThreadedServer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


# ---------------------------------------------------------------- sockets

def reset(sock):
    """Close sock with an RST instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


class Conn:
    """One accepted connection of a ScriptServer, handed to the script."""

    def __init__(self, server, sock, rec):
        self.server = server
        self.sock = sock
        self.rec = rec
        self.st = Stream(sock, rec)

    def reset(self):
        reset(self.sock)

    def read_until_closed(self):
        """Read (and record) until the peer closes or resets."""
        self.sock.settimeout(None)
        while self.st.recv():
            pass


class ScriptServer(ThreadedServer):
    """The fault tests' server: runs the test's script(conn) per connection.

    tls: an SSLContext, or a function returning a new one per connection
    (which defeats session resumption): the handshake runs first
    (plaintext scripts use conn.st as is, and may call conn.st.start_tls()
    themselves).  A script's exception is recorded in rec.error; the socket
    is closed afterwards unless the script already reset it."""

    def __init__(self, script, tls=None, host="127.0.0.1", port=0):
        self.script = script
        self.tls = tls
        super().__init__(host, port)

    def _handle(self, sock, rec):
        conn = Conn(self, sock, rec)
        if self.tls:
            conn.st.start_tls(self.tls() if callable(self.tls)
                              else self.tls)
        self.script(conn)


def script_server(t, script, tls=True, host="127.0.0.1", port=0):
    """A ScriptServer (TLS with the good certificate unless tls=False;
    tls="fresh": a new context per connection, so no session resumes)."""
    if tls == "fresh":
        ctx = t.tls_context
    else:
        ctx = (t.tls_context() if tls is True else tls) if tls else None
    srv = ScriptServer(script, ctx, host, port)
    t.stack.callback(srv.stop)
    return srv


# ----------------------------------------------------------------- probes

def fd_count(pid):
    """Open file descriptors of process pid."""
    return len(os.listdir("/proc/%d/fd" % pid))


def wait_fds(d, want, timeout=10, what="the daemon's fds to return to "
             "their baseline"):
    """Wait until the daemon holds want fds (no event says so: polled)."""
    try:
        wait_until(lambda: fd_count(d.pid) == want, timeout, what)
    except AssertionError:
        raise AssertionError("%s: %d fds, baseline %d; log tail:\n%s"
                             % (what, fd_count(d.pid), want, d.tail(10)))


def cpu_seconds(pid):
    """User + system CPU time of process pid so far, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])      # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------- DNS server

QTYPES = {1: "A", 28: "AAAA"}
RCODE = {"ok": 0, "servfail": 2, "nxdomain": 3, "refused": 5}


class DnsServer:
    """A UDP DNS server on 127.0.0.1 answering from a table.

    table: name -> {"A": [...], "AAAA": [...], "rcode": "ok"|"servfail"|
    "nxdomain", "drop": True (never answer), "delay": seconds}.  A name not
    in the table, nor under one of its names (search-list suffixes), gets
    NXDOMAIN.  Names compare case-insensitively (evdns randomizes the case
    and checks that the answer echoes it).  queries holds (name, type) for
    each query received."""

    def __init__(self, table):
        self.table = {k.lower().rstrip("."): v for k, v in table.items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries = []
        self.cond = threading.Condition()
        self.timers = []
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def resolv_conf(self, path):
        """Write a resolv.conf naming this server; returns path."""
        with open(path, "w") as f:
            f.write("# written by test_faults\n"
                    "nameserver 127.0.0.1:%d\n" % self.port)
        return path

    def _entry(self, name):
        name = name.lower()
        for key, spec in self.table.items():
            if name == key or name.startswith(key + "."):
                return spec
        return {"rcode": "nxdomain"}

    def _loop(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            if self.stopping:
                return
            try:
                self._handle(data, peer)
            except (ValueError, IndexError, struct.error):
                pass                    # not a query we understand

    def _handle(self, data, peer):
        qid, flags, qdcount = struct.unpack("!HHH", data[:6])
        if flags & 0x8000 or qdcount != 1:
            return
        pos, labels = 12, []
        while data[pos]:
            n = data[pos]
            labels.append(data[pos + 1:pos + 1 + n].decode("ascii"))
            pos += 1 + n
        qtype, _ = struct.unpack("!HH", data[pos + 1:pos + 5])
        question = data[12:pos + 5]
        name = ".".join(labels)
        with self.cond:
            self.queries.append((name.lower(), QTYPES.get(qtype, qtype)))
            self.cond.notify_all()
        spec = self._entry(name)
        if spec.get("drop"):
            return
        answers = []
        if spec.get("rcode", "ok") == "ok":
            for addr in spec.get(QTYPES.get(qtype), []):
                fam = socket.AF_INET6 if qtype == 28 else socket.AF_INET
                rdata = socket.inet_pton(fam, addr)
                answers.append(struct.pack("!HHHIH", 0xC00C, qtype, 1, 60,
                                           len(rdata)) + rdata)
        rcode = RCODE[spec.get("rcode", "ok")]
        reply = (struct.pack("!HHHHHH", qid, 0x8180 | (flags & 0x0100) |
                             rcode, 1, len(answers), 0, 0) + question +
                 b"".join(answers))
        delay = spec.get("delay", 0)
        if delay:
            timer = threading.Timer(delay, self._send, (reply, peer))
            timer.daemon = True
            self.timers.append(timer)
            timer.start()
        else:
            self._send(reply, peer)

    def _send(self, reply, peer):
        try:
            self.sock.sendto(reply, peer)
        except OSError:
            pass

    def wait_query(self, name, timeout=10):
        """Wait until a query for name (any type) arrived."""
        name = name.lower()
        with self.cond:
            if not self.cond.wait_for(lambda: any(
                    q[0] == name for q in self.queries), timeout):
                raise AssertionError("no DNS query for %s within %ss (got %s)"
                                     % (name, timeout, self.queries))

    def stop(self):
        for timer in self.timers:
            timer.cancel()
        self.stopping = True
        # close() does not wake a thread blocked in recvfrom(): a datagram
        # does.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"", ("127.0.0.1", self.port))
        self.thread.join(5)
        self.sock.close()


def dns_server(t, table):
    """A DnsServer stopped at teardown and the resolv.conf naming it."""
    dns = DnsServer(table)
    t.stack.callback(dns.stop)
    return dns, dns.resolv_conf(os.path.join(t.tmp, "resolv-%d.conf"
                                             % dns.port))


# ------------------------------------------------------ allocation failures

def shim_paths(name):
    """The source of a preloadable shim and where "make" builds it."""
    return (os.path.join(ROOT, "tests", "faults", name + ".c"),
            os.path.join(ROOT, "build", "tests", name + ".so"))


def is_asan_build(binary):
    """Whether binary links AddressSanitizer (it replaces malloc itself)."""
    if "%ssan%s" % (os.sep, os.sep) in binary:
        return True
    try:
        out = subprocess.run(["ldd", binary], capture_output=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return b"libasan" in out


def shim_so(t, name):
    """A shim (tests/faults/NAME.c): $NAME_SO, build/tests/NAME.so ("make"
    builds it), or compiled here when that one is missing or older than
    its source."""
    src, built = shim_paths(name)
    path = os.environ.get(name.upper() + "_SO")
    if path:
        return path
    if (os.path.exists(built) and
            os.path.getmtime(built) >= os.path.getmtime(src)):
        return built
    path = os.path.join(t.tmp, name + ".so")
    p = subprocess.run([os.environ.get("CC", "cc"), "-std=c11", "-O2",
                        "-shared", "-fPIC", "-o", path, src, "-ldl"],
                       capture_output=True, timeout=60)
    if p.returncode != 0:
        raise Skip("cannot build the %s shim: %s"
                   % (name, p.stderr.decode(errors="replace")[:200]))
    return path


def failalloc_so(t):
    """The allocation-failure shim (tests/faults/failalloc.c)."""
    return shim_so(t, "failalloc")


FAILALLOC_RX = (r"failalloc: (armed|disarmed: (\d+) calls, (\d+) failed) "
                r"\(live (-?\d+)\)")


# Allocations never failed: where libevent 2.1 ignores the failure itself
# (bufferevent_socket_new: a bufferevent that never writes;
# bufferevent_setwatermark: a NULL dereference), which no caller can handle.
LIBRARY_BUGS = "evbuffer_add_cb"


class FailAlloc:
    """The daemon's allocation-failure switch (see tests/faults/failalloc.c).

    arm(**opts) writes the options (after, every, limit, min, max) to the
    control file and sends SIGRTMIN+2; disarm() sends SIGRTMIN+3 (SIGUSR1
    is the daemon's own).  Both wait for the shim's line in the log, so allocations fail from the moment arm()
    returns until disarm() returns."""

    def __init__(self, t):
        if is_asan_build(t.binary):
            raise Skip("the daemon is the ASan build: ASan replaces malloc, "
                       "so the failalloc shim cannot interpose it")
        self.so = failalloc_so(t)
        self.control = os.path.join(t.tmp, "failalloc-%d.ctl" % id(self))
        self.d = None

    def env(self):
        """The environment for t.daemon(env=...)."""
        return {"LD_PRELOAD": self.so, "FAILALLOC_CONTROL": self.control}

    def _signal(self, sig):
        mark = self.d.mark()
        self.d.signal(sig)
        line = self.d.wait_log(FAILALLOC_RX, since=mark, timeout=5,
                               what="the failalloc shim to answer")
        m = re.search(FAILALLOC_RX, line)
        return m

    def arm(self, after=1, every=1, limit=0, min=0, max=0, trace=False,
            spare=LIBRARY_BUGS, within=""):
        """Fail allocations from now on; returns the live block count.

        trace: the shim logs a backtrace of each failure; within: only
        allocations made under these functions (comma-separated) count."""
        words = ["after=%d" % after, "every=%d" % every,
                 "limit=%d" % (limit or (1 << 62)), "min=%d" % min,
                 "max=%d" % (max or (1 << 62)), "trace=%d" % bool(trace),
                 "spare=%s" % spare, "within=%s" % within]
        with open(self.control, "w") as f:
            f.write(" ".join(words) + "\n")
        m = self._signal(signal.SIGRTMIN + 2)
        check(m.group(1) == "armed", "shim said %r", m.group(0))
        return int(m.group(4))

    def disarm(self):
        """Stop failing; returns (calls, failed, live) since arming."""
        m = self._signal(signal.SIGRTMIN + 3)
        check(m.group(1).startswith("disarmed"), "shim said %r", m.group(0))
        return int(m.group(2)), int(m.group(3)), int(m.group(4))

    def live(self):
        """Live blocks now (a disarm that changes nothing)."""
        return self.disarm()[2]

