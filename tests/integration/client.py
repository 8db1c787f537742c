"""A plaintext mail client for the tests: what a real client does to mailtlsd.

Client wraps a TCP socket with a read buffer and bounded timeouts on every
call; login() performs the minimal per-protocol login the test servers
understand (after it, the daemon's capability filter steps aside and the
relay is a plain byte copy).
"""

import base64
import hashlib
import socket
import time

from expectations import echo_reply


class Client:
    """A blocking client connection; every read is bounded by a timeout."""

    def __init__(self, port, host="127.0.0.1", timeout=10, rcvbuf=None):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if rcvbuf:          # a small window makes the daemon hold the data
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.sock.connect((host, port))
        self.buf = bytearray()
        self.rbuf = memoryview(bytearray(262144))
        self.closed_how = None          # "eof" | "reset" once the peer closed

    def _recv(self, n=262144, timeout=None):
        """Raw recv; b"" at EOF or reset (recorded in closed_how)."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        view = self.rbuf[:min(n, len(self.rbuf))]
        try:
            k = self.sock.recv_into(view)
        except ConnectionResetError:
            k = 0
            self.closed_how = "reset"
        if not k and not self.closed_how:
            self.closed_how = "eof"
        return bytes(view[:k])

    def read_some(self, n=65536, timeout=None):
        """Up to n bytes (buffered ones first); b"" once the peer closed."""
        if self.buf:
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out
        return self._recv(n, timeout)

    def send(self, data):
        self.sock.sendall(data)

    def line(self, timeout=None):
        """One line including CRLF; AssertionError on EOF or timeout."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no complete line within %ss (have %r)"
                                     % (timeout or self.timeout,
                                        bytes(self.buf[:200])))
            try:
                data = self._recv(timeout=left)
            except socket.timeout:
                continue
            if not data:
                raise AssertionError("connection closed (%s) while waiting "
                                     "for a line; have %r" %
                                     (self.closed_how, bytes(self.buf[:200])))
            self.buf += data
        i = self.buf.index(b"\n") + 1
        out = bytes(self.buf[:i])
        del self.buf[:i]
        return out

    def expect_line(self, want, timeout=None):
        got = self.line(timeout)
        if got != want:
            raise AssertionError("expected %r, got %r" % (want, got))
        return got

    def recv_exact(self, n, timeout=None):
        """Exactly n bytes (AssertionError on EOF / timeout)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out with %d of %d bytes"
                                     % (len(self.buf), n))
            try:
                data = self._recv(max(65536, n - len(self.buf)), timeout=left)
            except socket.timeout:
                continue
            if not data:
                raise AssertionError("closed (%s) after %d of %d bytes"
                                     % (self.closed_how, len(self.buf), n))
            self.buf += data
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_to_eof(self, timeout=None, limit=1 << 20):
        """Everything until the peer closes (bounded by timeout and limit)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while self.closed_how is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("connection not closed within %ss; got "
                                     "%r" % (timeout or self.timeout,
                                             bytes(self.buf[:300])))
            if len(self.buf) > limit:
                raise AssertionError("more than %d bytes before close" % limit)
            try:
                self.buf += self._recv(timeout=left)
            except socket.timeout:
                continue
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def hash_to_eof(self, timeout=60, h=None, count=0):
        """(count, sha256 hex) of everything until EOF, without keeping it.

        h and count continue a hash the caller started."""
        h = h or hashlib.sha256()
        h.update(self.buf)
        count += len(self.buf)
        self.buf.clear()
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() > deadline:
                raise AssertionError("no EOF within %ss (%d bytes read)"
                                     % (timeout, count))
            try:
                data = self._recv(timeout=max(0.01,
                                              deadline - time.monotonic()))
            except socket.timeout:
                continue
            if not data:
                return count, h.hexdigest()
            h.update(data)
            count += len(data)

    def is_open(self, wait=0.0):
        """True if the peer has not closed (waits up to `wait` for a close)."""
        if self.closed_how:
            return False
        try:
            data = self._recv(timeout=wait) if wait else self._peek_now()
        except (socket.timeout, BlockingIOError):
            return True
        if data:
            self.buf += data
            return True
        return False

    def _peek_now(self):
        self.sock.setblocking(False)
        try:
            return self.sock.recv(65536)
        finally:
            self.sock.setblocking(True)

    def half_close(self):
        self.sock.shutdown(socket.SHUT_WR)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# Client side of the minimal login each test server understands.
LOGIN_SCRIPT = {
    "imap": [(b"a1 LOGIN alice secret\r\n", b"a1 OK")],
    "pop3": [(b"USER alice\r\n", b"+OK"), (b"PASS secret\r\n", b"+OK")],
    "smtp": [(b"EHLO client.test\r\n", b"250 "),
             (b"AUTH PLAIN " + base64.b64encode(b"\0alice\0secret") + b"\r\n",
              b"235 ")],
}


def login(c, protocol):
    """Log in through the daemon; each reply is awaited line by line."""
    for command, want in LOGIN_SCRIPT[protocol]:
        c.send(command)
        while True:
            got = c.line()
            if got.startswith(want):
                break
            if not got[:4].startswith(b"250-"):
                raise AssertionError("login: sent %r, expected %r, got %r"
                                     % (command, want, got))


def noop(c, protocol, token=b"x"):
    """One command/reply round trip through the echo server."""
    line = (b"a1 NOOP " if protocol == "imap" else b"NOOP ") + token + b"\r\n"
    c.send(line)
    return c.expect_line(echo_reply(protocol, line))
