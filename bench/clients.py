"""The benchmark's plaintext mail clients (and a direct TLS client).

Each function connects to a proxy's loopback port the way a mail client
does and times what the brief asks for; none of them starts a process.
"""

import socket
import ssl
import threading
import time

BULK = 1 << 20
PAYLOAD = bytes(range(256)) * (BULK // 256)


class BenchError(Exception):
    """A session did not go as an IMAP client expects."""


class Lines:
    """Line reading with a buffer, over a plain or TLS socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def readline(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            data = self.sock.recv(65536)
            if not data:
                raise BenchError("connection closed; last bytes %r" %
                                 bytes(self.buf[-80:]))
            self.buf += data

    def expect(self, prefix):
        """Read lines until the one starting with prefix (a tag or "* OK")."""
        while True:
            line = self.readline()
            if line.startswith(prefix):
                return line
            if line.startswith(b"* BYE") or not line.startswith(b"* "):
                raise BenchError("unexpected line %r" % line[:120])

    def command(self, tag, text):
        self.sock.sendall(b"%s %s\r\n" % (tag, text))
        line = self.expect(tag + b" ")
        if not line.startswith(tag + b" OK"):
            raise BenchError("%s failed: %r" % (text, line[:120]))
        return line


def connect(port, timeout=30):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def greeted(port, tls_ctx=None):
    """A logged-in session: plain to a proxy, or TLS straight to a server."""
    s = connect(port)
    if tls_ctx is not None:
        s = tls_ctx.wrap_socket(s, server_hostname="mail.test")
    c = Lines(s)
    c.expect(b"* OK")
    c.command(b"a0", b"LOGIN bench bench")
    return c


def download(c, nbytes, tag=b"a1"):
    """Have the server send nbytes; returns the seconds it took."""
    sock = c.sock
    t0 = time.perf_counter()
    sock.sendall(b"%s XDOWNLOAD %d\r\n" % (tag, nbytes))
    header = c.expect(b"* XDATA")
    if (b"{%d}" % nbytes) not in header:
        raise BenchError("bad XDATA header %r" % header)
    left = nbytes - len(c.buf)
    if left < 0:
        del c.buf[:nbytes]
    else:
        c.buf.clear()
        chunk = bytearray(BULK)
        while left > 0:
            n = sock.recv_into(chunk)
            if n == 0:
                raise BenchError("connection closed during the download")
            left -= n
        if left < 0:
            c.buf += chunk[n + left:n]
    if c.readline() != b"\r\n":             # the end of the literal's line
        raise BenchError("no line end after the XDATA literal")
    c.expect(tag + b" OK")
    return time.perf_counter() - t0


def upload(c, nbytes, tag=b"a2"):
    """Send nbytes to the server; returns the seconds until it confirmed."""
    sock = c.sock
    view = memoryview(PAYLOAD)
    t0 = time.perf_counter()
    sock.sendall(b"%s XUPLOAD {%d+}\r\n" % (tag, nbytes))
    left = nbytes
    while left > 0:
        n = min(left, BULK)
        sock.sendall(view[:n])
        left -= n
    sock.sendall(b"\r\n")
    c.expect(tag + b" OK")
    return time.perf_counter() - t0


def direct_tls_context(ca):
    from mailserver import max_tls_version
    ctx = ssl.create_default_context(cafile=ca)
    ctx.maximum_version = max_tls_version()
    return ctx


def first_command(port):
    """One session: seconds from connect to the greeting and to NOOP's OK."""
    t0 = time.perf_counter()
    s = connect(port)
    try:
        c = Lines(s)
        c.expect(b"* OK")
        t_greeting = time.perf_counter() - t0
        c.command(b"a1", b"NOOP")
        t_answer = time.perf_counter() - t0
    finally:
        s.close()
    return t_greeting, t_answer


def session_rate(port, clients=8, seconds=10.0):
    """clients threads doing connect, greeting, NOOP, close for seconds.

    Returns (sessions completed, errors, first error text, elapsed)."""
    deadline = time.perf_counter() + seconds
    lock = threading.Lock()
    counts = {"ok": 0, "errors": 0, "first": ""}

    def worker():
        ok = errors = 0
        first = ""
        while time.perf_counter() < deadline:
            try:
                s = connect(port, timeout=10)
                try:
                    c = Lines(s)
                    c.expect(b"* OK")
                    c.command(b"a1", b"NOOP")
                finally:
                    s.close()
                ok += 1
            except (OSError, BenchError) as e:
                errors += 1
                first = first or str(e)
        with lock:
            counts["ok"] += ok
            counts["errors"] += errors
            counts["first"] = counts["first"] or first

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts["ok"], counts["errors"], counts["first"], \
        time.perf_counter() - t0
