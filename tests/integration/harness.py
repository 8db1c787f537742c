"""The test harness: test options, per-test context, common assertions.

Tests are functions `test_x(t)` decorated with @case, which conftest.py
turns into pytest marks and parameters; t is a Ctx (the `t` fixture) that
owns a temp dir, a block of ports, and everything the test starts (servers,
daemons, clients), torn down in reverse order.  Tearing a daemon down checks
that it is still alive, exits 0 on SIGTERM and printed no sanitizer report.
"""

import contextlib
import os
import shutil
import socket
import tempfile
import time
import unittest
from dataclasses import dataclass

from client import Client
from daemon import Daemon, config_text
from expectations import ERROR_PREFIX, LOG_REASONS, SECRET
from servers import BlackholeListener, TestServer, make_server_context

PORT_BLOCK = 40                 # ports reserved per test
PORT_LOW = 20000                # below Linux's ephemeral range (32768-)


class Skip(unittest.SkipTest):
    """Raised by a test that cannot run here (e.g. no IPv6 loopback);
    pytest reports a unittest.SkipTest as a skip."""


@dataclass
class Case:
    timeout: float = 30         # seconds, for setup, test and teardown
    heavy: bool = False         # run alone: CPU/memory heavy or timing-bound
    params: dict = None         # {label: kwargs}: one test per label
    valgrind: bool = False      # one of make valgrind-check's tests


def case(timeout=30, heavy=False, params=None, valgrind=False):
    """A test's options; conftest.py makes them pytest marks (timeout,
    heavy, valgrind) and parameters: params {label: kwargs} makes one test
    per label, with the label as its id."""
    def deco(fn):
        fn.case = Case(timeout, heavy, params, valgrind)
        return fn
    return deco


@dataclass
class Service:
    """One [service] section under test: its name, local port and keys."""
    name: str
    port: int
    opts: dict
    host: str = "127.0.0.1"


class PortBlock:
    """Ports reserved for one test, outside the kernel's ephemeral range."""

    def __init__(self, base):
        self.next = base
        self.end = base + PORT_BLOCK

    def take(self, host="127.0.0.1"):
        while self.next < self.end:
            port = self.next
            self.next += 1
            if port_is_free(host, port):
                return port
        raise RuntimeError("port block exhausted")


def port_is_free(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Ctx:
    """Everything one test owns; teardown() releases it all."""

    def __init__(self, name, tmp, certs, binary, port_base):
        self.name = name
        self.tmp = tmp
        self.certs = certs
        self.binary = binary
        self.ports = PortBlock(port_base)
        self.stack = contextlib.ExitStack()
        self.errors = []                # teardown failures
        self.daemons = []

    # -- servers --
    def tls_context(self, cert="good", profile="modern", client_ca=None):
        key = (self.certs.other_key if cert in ("self_signed", "unknown_ca")
               else self.certs.weak_key if cert == "weak_rsa"
               else self.certs.key)
        return make_server_context(getattr(self.certs, cert), key, profile,
                                   client_ca)

    def server(self, behaviour="echo", cert="good", profile="modern",
               tls=True, client_ca=None, **kw):
        """Start a TestServer (TLS unless tls=False) stopped at teardown."""
        ctx = self.tls_context(cert, profile, client_ca) if tls else None
        srv = TestServer(behaviour, tls=ctx, **kw)
        self.stack.callback(srv.stop)
        return srv

    def blackhole(self):
        bh = BlackholeListener()
        self.stack.callback(bh.stop)
        return bh

    # -- daemon --
    def service(self, remote, protocol="imap", name="svc", host="127.0.0.1",
                **opts):
        """A service section relaying a new local port to remote."""
        port = self.ports.take(host)
        listen = ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)
        remote = getattr(remote, "address", remote)
        keys = {"listen": listen, "remote": remote, "protocol": protocol,
                "tls": "implicit", "server_name": "mail.test",
                "ca_file": self.certs.ca, "connect_timeout": 2,
                "handshake_timeout": 5, "shutdown_timeout": 5}
        keys.update(opts)
        return Service(name, port, keys, host)

    def control_path(self, index=0):
        """The control socket of the test's daemon number index: in the
        test's dir, or a short one when that path is too long for a
        socket."""
        path = os.path.join(self.tmp, "control%d" % index)
        if len(path) > 100:
            if not hasattr(self, "_short_dir"):
                self._short_dir = tempfile.mkdtemp(prefix="mtd-")
                self.stack.callback(shutil.rmtree, self._short_dir, True)
            path = os.path.join(self._short_dir, "control%d" % index)
        return path

    def config(self, services, **global_opts):
        """Configuration text for services with the test defaults (the
        control socket in the test's dir, never the system's)."""
        g = {"log_level": "debug", "max_sessions": 1024,
             "control_socket": self.control_path()}
        g.update(global_opts)
        return config_text(g, [(s.name, s.opts) for s in services])

    def daemon(self, *services, start=True, env=None, name=None,
               **global_opts):
        """Write a config for services and (by default) start the daemon."""
        d = Daemon(self.binary, self.tmp,
                   name or "mailtlsd%d" % len(self.daemons), env)
        if self.daemons:        # two daemons at once: a socket each
            global_opts.setdefault("control_socket",
                                   self.control_path(len(self.daemons)))
        self.daemons.append(d)
        d.write_config(self.config(services, **global_opts))
        self.stack.callback(self._finish_daemon, d)
        if start:
            d.start()
        return d

    def _finish_daemon(self, d):
        """Teardown check: alive until now, exit 0 on SIGTERM, no sanitizer."""
        if d.proc is None:
            return
        if not d.stopped_by_test:
            if not d.alive():
                self.errors.append("daemon died during the test (status %s)"
                                   % d.proc.returncode)
            else:
                rc = d.stop(timeout=15)
                if rc is None:
                    d.kill()
                    self.errors.append("daemon did not exit within 15s of "
                                       "SIGTERM")
                elif rc != 0:
                    self.errors.append("daemon exited %s on SIGTERM" % rc)
        else:
            d.kill()
        bad = d.sanitizer_report()
        if bad:
            self.errors.append("sanitizer report: " + " | ".join(bad[:3]))

    # -- clients --
    def connect(self, port, host="127.0.0.1", timeout=10, rcvbuf=None):
        """A Client to port (a Service or a number), closed at teardown."""
        if isinstance(port, Service):
            host, port = port.host, port.port
        c = Client(port, host, timeout, rcvbuf)
        self.stack.callback(c.close)
        return c

    def teardown(self):
        try:
            self.stack.close()
        except Exception as e:
            self.errors.append("teardown: %s: %s" % (type(e).__name__, e))
        return self.errors


# ----------------------------------------------------------- assertions

def expect_error_line(c, protocol, timeout=15):
    """The client gets exactly one protocol error line, then the close."""
    prefix = ERROR_PREFIX[protocol]
    line = c.line(timeout)
    if not line.startswith(prefix):
        raise AssertionError("expected a line starting %r, got %r"
                             % (prefix, line[:200]))
    if not line.endswith(b"\r\n"):
        raise AssertionError("error line does not end in CRLF: %r" % line)
    rest = c.read_to_eof(5)
    if rest:
        raise AssertionError("more than one line before the close: %r"
                             % (line + rest)[:300])
    return line


def expect_nothing_forwarded(rec, timeout=10):
    """The server connection ended without any application data arriving."""
    rec.wait_done(timeout)
    if rec.tls_ok and rec.app_count:
        raise AssertionError("server received %d application bytes: %r"
                             % (rec.app_count, bytes(rec.app[:100])))
    if SECRET in rec.raw:
        raise AssertionError("the client's bytes reached the server "
                             "unencrypted")


def expect_log(d, reason, since=0, timeout=5):
    """The daemon log (after mark since) gives the reason from the table."""
    return d.wait_log(LOG_REASONS[reason], since=since, timeout=timeout,
                      what="log reason %r" % reason)


def wait_until(pred, timeout, what, interval=0.02):
    """Poll a condition that has no event to wait on; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s"
                                 % (timeout, what))
        time.sleep(interval)


def connect_refused(port, host="127.0.0.1"):
    """True if a connection to port is refused right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect((host, port))
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        s.close()


def check(cond, message, *args):
    """assert that survives python -O and explains itself."""
    if not cond:
        raise AssertionError(message % args if args else message)

