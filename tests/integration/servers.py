"""Mail servers for the integration tests: threaded, on loopback, scriptable.

ThreadedServer is the common accept/thread/record machinery of the test
servers (this TestServer, starttls_server.StarttlsServer and
faults.ScriptServer).  A TestServer runs, per connection, a transport
step (TLS with a selectable profile, or plaintext) and then a behaviour
(echo, refuse, source, sink, close-first, silent).  TLS runs over memory
BIOs so every raw byte received is recorded, and so a later STARTTLS
variant only needs a plaintext dialogue (the pre_tls hook) before
Stream.start_tls().

Each connection gets a ConnRecord; tests wait on its events instead of
sleeping.
"""

import hashlib
import random
import socket
import ssl
import threading
import time

from expectations import GREETING, PLAINTEXT_GREETING, echo_reply

RAW_KEEP = 256 * 1024       # raw bytes kept per connection
APP_KEEP = 1024 * 1024      # decrypted bytes kept per connection
CHUNK = 16384               # TLS plaintext record size


# TLS profiles: name -> function(ctx) that restricts an SSLContext.
def _profile_modern(ctx):
    pass


def _profile_tls10_11(ctx):
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1


def _profile_cbc(ctx):
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES128-SHA:"
                    "ECDHE-RSA-AES256-SHA384:ECDHE-RSA-AES256-SHA")


def _profile_static_rsa(ctx):
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("AES128-GCM-SHA256:AES256-GCM-SHA384")


def _profile_tls12(ctx):
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2


def _profile_legacy(ctx):
    # Lets OpenSSL serve SHA-1 signed certificates and 1024-bit RSA keys.
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")


PROFILES = {
    "modern": _profile_modern,
    "tls12": _profile_tls12,
    "tls10_11": _profile_tls10_11,
    "cbc": _profile_cbc,
    "static_rsa": _profile_static_rsa,
    "legacy": _profile_legacy,
}


def make_server_context(cert, key, profile="modern", client_ca=None):
    """A server SSLContext; client_ca makes a client certificate required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # A client's EOF without close_notify still lets us answer (half-close).
    ctx.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    PROFILES[profile](ctx)
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
    return ctx


class ConnRecord:
    """What the server saw and did on one connection."""

    def __init__(self, cid):
        self.id = cid
        self.lock = threading.Lock()
        self.raw = bytearray()          # first RAW_KEEP raw bytes received
        self.raw_count = 0
        self.app = bytearray()          # first APP_KEEP decrypted bytes
        self.app_count = 0
        self.plain_app = b""            # app bytes before STARTTLS, if any
        self.sent = 0                   # app bytes handed to the kernel
        self.tls_ok = False             # handshake completed
        self.tls_version = None
        self.cipher = None
        self.client_cert = None         # peer certificate, if one was sent
        self.error = None               # exception text that ended the conn
        self.eof = None                 # how input ended: "tls" | "tcp"
        self.result = {}                # behaviour output (hashes, counts)
        self.logged_in = threading.Event()
        self.finished_sending = threading.Event()
        self.done = threading.Event()

    def add_raw(self, data):
        with self.lock:
            self.raw_count += len(data)
            room = RAW_KEEP - len(self.raw)
            if room > 0:
                self.raw += data[:room]

    def start_tls(self):
        """From now on app/app_count count only bytes received inside TLS."""
        with self.lock:
            self.plain_app = bytes(self.app)
            self.app = bytearray()
            self.app_count = 0

    def add_app(self, data):
        with self.lock:
            self.app_count += len(data)
            room = APP_KEEP - len(self.app)
            if room > 0:
                self.app += data[:room]

    def wait_done(self, timeout=10):
        if not self.done.wait(timeout):
            raise AssertionError("server connection %d did not end within "
                                 "%ss" % (self.id, timeout))
        return self


class Stream:
    """A blocking byte stream over a socket: plaintext until start_tls()."""

    def __init__(self, sock, rec):
        self.sock = sock
        self.rec = rec
        self.buf = bytearray()
        self.tls = None                 # ssl.SSLObject once TLS is on
        self.bio_in = self.bio_out = None

    # -- raw socket side --
    def _raw_recv(self):
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if data:
            self.rec.add_raw(data)
        return data

    def _flush(self):
        data = self.bio_out.read()
        if data:
            self.sock.sendall(data)

    # -- TLS --
    def start_tls(self, ctx):
        """Run the server side of a TLS handshake (raises on failure)."""
        self.bio_in, self.bio_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.rec.start_tls()
        if self.buf:                    # bytes read ahead in plaintext
            self.bio_in.write(bytes(self.buf))
            self.buf.clear()
        self.tls = ctx.wrap_bio(self.bio_in, self.bio_out, server_side=True)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                data = self._raw_recv()
                if not data:
                    raise ConnectionError("EOF during TLS handshake")
                self.bio_in.write(data)
            except ssl.SSLError:
                self._flush_quietly()   # let the alert reach the peer
                raise
        self._flush()
        self.rec.tls_ok = True
        self.rec.tls_version = self.tls.version()
        self.rec.cipher = self.tls.cipher()
        self.rec.client_cert = self.tls.getpeercert()

    def _flush_quietly(self):
        try:
            self._flush()
        except OSError:
            pass

    def _tls_recv(self, n):
        while True:
            try:
                data = self.tls.read(n)
                self._flush()
                if not data:
                    self.rec.eof = "tls"
                return data
            except ssl.SSLWantReadError:
                self._flush()
                data = self._raw_recv()
                if data:
                    self.bio_in.write(data)
                else:
                    self.bio_in.write_eof()
            except ssl.SSLZeroReturnError:
                self.rec.eof = "tls"
                return b""
            except ssl.SSLEOFError:
                self.rec.eof = "tcp"
                return b""

    # -- application side --
    def _read_app(self, n=65536):
        """Up to n bytes from the transport (not the buffer); b"" at EOF."""
        if self.tls:
            data = self._tls_recv(n)
        else:
            data = self._raw_recv()
            if not data:
                self.rec.eof = "tcp"
        if data:
            self.rec.add_app(data)
        return data

    def recv(self, n=65536):
        """Up to n application bytes, b"" at EOF."""
        if self.buf:
            data = bytes(self.buf[:n])
            del self.buf[:n]
            return data
        return self._read_app(n)

    def readline(self, limit=65536):
        """One line including its LF, or what is left at EOF."""
        while b"\n" not in self.buf and len(self.buf) < limit:
            data = self._read_app()
            if not data:
                break
            self.buf += data
        i = self.buf.find(b"\n")
        end = i + 1 if i >= 0 else len(self.buf)
        line = bytes(self.buf[:end])
        del self.buf[:end]
        return line

    def sendall(self, data, count=True):
        """Send application bytes; rec.sent follows what the kernel took."""
        view = memoryview(data)
        for off in range(0, len(view), CHUNK):
            piece = view[off:off + CHUNK]
            if self.tls:
                self.tls.write(piece)
                self._flush()
            else:
                self.sock.sendall(piece)
            if count:
                self.rec.sent += len(piece)

    def close(self, linger=5.0):
        """Orderly close: close_notify, FIN, then briefly await the peer's."""
        try:
            if self.tls:
                try:
                    self.tls.unwrap()
                except ssl.SSLError:
                    pass
                self._flush()
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.rec.finished_sending.set()
        self._drain(linger)

    def _drain(self, linger):
        deadline = time.monotonic() + linger
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                if not self._raw_recv():
                    break
        except OSError:
            pass


# ---------------------------------------------------------------- behaviours
# Each is function(server, stream, rec), run after the transport step.

def behave_echo(srv, st, rec):
    """Greet, then answer each line with echo_reply() until EOF, then close."""
    st.sendall(srv.greeting)
    while True:
        line = st.readline()
        if not line:
            break
        st.sendall(echo_reply(srv.protocol, line))
    st.close()


def serve_login(srv, st, rec):
    """Answer a minimal login dialogue for srv.protocol; True once in."""
    while True:
        line = st.readline()
        if not line:
            return False
        words = line.split()
        reply, done = _login_reply(srv.protocol, words)
        st.sendall(reply)
        if done:
            rec.logged_in.set()
            return True


def _login_reply(protocol, words):
    cmd = lambda i: words[i].upper() if len(words) > i else b""
    if protocol == "imap":
        tag = words[0] if words else b"*"
        if cmd(1) == b"LOGIN":
            return tag + b" OK LOGIN completed\r\n", True
        return tag + b" BAD expected LOGIN\r\n", False
    if protocol == "pop3":
        if cmd(0) == b"USER":
            return b"+OK send PASS\r\n", False
        if cmd(0) == b"PASS":
            return b"+OK logged in\r\n", True
        return b"-ERR expected USER/PASS\r\n", False
    if cmd(0) == b"EHLO":
        return b"250-mail.test hello\r\n250 AUTH PLAIN\r\n", False
    if cmd(0) == b"AUTH":
        return b"235 2.7.0 Authentication successful\r\n", True
    return b"503 5.5.1 expected EHLO/AUTH\r\n", False


def behave_refuse(srv, st, rec):
    """Greet, then answer every login (IMAP LOGIN, POP3 PASS, SMTP AUTH)
    with srv.refusal -- in IMAP after the command's tag -- and other
    commands as serve_login does, until EOF; rec.result["refused"] counts
    the logins refused."""
    st.sendall(srv.greeting)
    while True:
        line = st.readline()
        if not line:
            break
        words = line.split()
        reply, login = _login_reply(srv.protocol, words)
        if login:
            reply = srv.refusal
            if srv.protocol == "imap":
                reply = (words[0] if words else b"*") + b" " + reply
            rec.result["refused"] = rec.result.get("refused", 0) + 1
        st.sendall(reply)
    st.close()


def random_chunks(total, seed):
    """Yield total pseudo-random bytes in 64 KiB pieces."""
    rng = random.Random(seed)
    left = total
    while left > 0:
        n = min(65536, left)
        yield rng.randbytes(n)
        left -= n


def behave_source(srv, st, rec):
    """Greet, log in, send srv.size random bytes (sha256 in result), close."""
    st.sendall(srv.greeting)
    if not serve_login(srv, st, rec):
        return
    h = hashlib.sha256()
    for chunk in random_chunks(srv.size, rec.id):
        h.update(chunk)
        st.sendall(chunk)
    rec.result.update(sha256=h.hexdigest(), count=srv.size)
    st.close()


def behave_sink(srv, st, rec):
    """Greet, log in, hash all input to EOF, answer one line, close."""
    st.sendall(srv.greeting)
    if not serve_login(srv, st, rec):
        return
    h, count = hashlib.sha256(), 0
    while True:
        data = st.recv()
        if not data:
            break
        h.update(data)
        count += len(data)
    rec.result.update(sha256=h.hexdigest(), count=count)
    st.sendall(b"SINK %d %s\r\n" % (count, h.hexdigest().encode()))
    st.close()


def behave_close_first(srv, st, rec):
    """Greet, log in, send a last chunk and a final line, close at once."""
    st.sendall(srv.greeting)
    if not serve_login(srv, st, rec):
        return
    payload = b"".join(random_chunks(srv.size, rec.id)) + b"LAST LINE\r\n"
    rec.result.update(sha256=hashlib.sha256(payload).hexdigest(),
                      count=len(payload))
    st.sendall(payload)
    st.close()


def behave_silent(srv, st, rec):
    """Say nothing; read (and record) until the peer goes away."""
    while st.recv():
        pass


def behave_plaintext(srv, st, rec):
    """Speak plaintext IMAP on what should be a TLS port."""
    st.sendall(PLAINTEXT_GREETING)
    while st.recv():
        pass


def behave_unterminated(srv, st, rec):
    """Greet, then send a last line without its line end and close."""
    st.sendall(srv.greeting + UNTERMINATED_LAST)
    st.close()


UNTERMINATED_LAST = b"* BYE going away without a line end"


BEHAVIOURS = {
    "echo": behave_echo,
    "refuse": behave_refuse,
    "unterminated": behave_unterminated,
    "source": behave_source,
    "sink": behave_sink,
    "close_first": behave_close_first,
    "silent": behave_silent,
    "plaintext": behave_plaintext,
}


# ------------------------------------------------------- STARTTLS dialogues
# A pre_tls hook: the plaintext part of a STARTTLS session, ending when the
# server has said "go ahead".  (Ready for the STARTTLS tests; unused while
# the daemon supports implicit TLS only.)

STARTTLS_GREETING = {
    "imap": b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] "
            b"test server ready\r\n",
    "pop3": b"+OK test server ready\r\n",
    "smtp": b"220 mail.test ESMTP test server ready\r\n",
}


def starttls_dialogue(srv, st, rec):
    """Greet in plaintext, answer capability queries, accept STARTTLS."""
    st.sendall(STARTTLS_GREETING[srv.protocol], count=False)
    while True:
        line = st.readline()
        if not line:
            raise ConnectionError("EOF before STARTTLS")
        reply, go_ahead = _starttls_reply(srv.protocol, line.split())
        st.sendall(reply, count=False)
        if go_ahead:
            return


def _starttls_reply(protocol, words):
    cmd = lambda i: words[i].upper() if len(words) > i else b""
    if protocol == "imap":
        tag = words[0] if words else b"*"
        if cmd(1) == b"CAPABILITY":
            return (b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n" +
                    tag + b" OK CAPABILITY completed\r\n"), False
        if cmd(1) == b"STARTTLS":
            return tag + b" OK Begin TLS negotiation now\r\n", True
        return tag + b" BAD expected STARTTLS\r\n", False
    if protocol == "pop3":
        if cmd(0) == b"CAPA":
            return b"+OK\r\nSTLS\r\nUSER\r\n.\r\n", False
        if cmd(0) == b"STLS":
            return b"+OK Begin TLS negotiation\r\n", True
        return b"-ERR expected STLS\r\n", False
    if cmd(0) == b"EHLO":
        return (b"250-mail.test hello\r\n250-STARTTLS\r\n"
                b"250 8BITMIME\r\n"), False
    if cmd(0) == b"STARTTLS":
        return b"220 2.0.0 Ready to start TLS\r\n", True
    return b"503 5.5.1 expected EHLO/STARTTLS\r\n", False


class ThreadedServer:
    """The common part of the test servers: a listening socket on host
    (IPv6 when host has a colon), an acceptor thread and one thread per
    connection, each with a record in conns (appended under cond, which is
    notified on every accept and every end of a connection).

    A subclass sets the class attributes it needs (record_class,
    conn_timeout, backlog) and implements _handle(sock, rec), the
    connection's whole life; an exception it raises is the peer's doing and
    is recorded in rec.error.  Afterwards the socket is closed and
    rec.finished_sending and rec.done are set.  A subclass sets its own
    attributes before calling ThreadedServer.__init__, which starts serving.
    """

    record_class = ConnRecord       # the class of conns' entries
    conn_timeout = 30               # per-connection socket timeout, seconds
    backlog = 128

    def __init__(self, host="127.0.0.1", port=0):
        self.host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.lsock = socket.socket(family, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, port))
        self.lsock.listen(self.backlog)
        self.port = self.lsock.getsockname()[1]
        self.conns = []
        self.cond = threading.Condition()
        self.socks = []
        self.threads = []
        self.stopping = False
        self.acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self.acceptor.start()

    @property
    def address(self):
        """remote = value for the daemon's configuration."""
        if ":" in self.host:
            return "[%s]:%d" % (self.host, self.port)
        return "%s:%d" % (self.host, self.port)

    def _accept_loop(self):
        while True:
            try:
                sock, _ = self.lsock.accept()
            except OSError:
                return
            with self.cond:
                if self.stopping:
                    sock.close()
                    return
                rec = self.record_class(len(self.conns))
                self.conns.append(rec)
                self.socks.append(sock)
                t = threading.Thread(target=self._serve, args=(sock, rec),
                                     daemon=True)
                self.threads.append(t)
                self.cond.notify_all()
                t.start()      # under the lock: stop() joins only started

    def _serve(self, sock, rec):
        """A connection's thread: _handle(), then the common ending."""
        sock.settimeout(self.conn_timeout)
        try:
            self._handle(sock, rec)
        except Exception as e:          # the peer's doing: record, not raise
            rec.error = "%s: %s" % (type(e).__name__, e)
        finally:
            try:
                sock.close()
            except OSError:
                pass
            rec.finished_sending.set()
            rec.done.set()
            with self.cond:
                self.cond.notify_all()

    def _handle(self, sock, rec):
        """Serve one connection (the subclass's part)."""
        raise NotImplementedError

    def wait_conns(self, n=1, timeout=10):
        """Wait until at least n connections were accepted; return them."""
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.conns) >= n, timeout)
            if not ok:
                raise AssertionError("server %s: %d connection(s) after %ss, "
                                     "expected %d" % (self.address,
                                                      len(self.conns),
                                                      timeout, n))
            return list(self.conns)

    def conn(self, i=0, timeout=10):
        """The record of connection i, once it was accepted."""
        return self.wait_conns(i + 1, timeout)[i]

    def count(self):
        """How many connections were accepted so far."""
        with self.cond:
            return len(self.conns)

    def stop(self):
        """Stop accepting, shut down every connection, join the threads."""
        with self.cond:
            self.stopping = True
            socks = list(self.socks)
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self.threads + [self.acceptor]:
            t.join(5)


class TestServer(ThreadedServer):
    """The relay tests' mail server: per connection a transport step (TLS,
    or plaintext) and then a behaviour from BEHAVIOURS.

    tls: an SSLContext, or None for plaintext.  pre_tls: optional
    function(server, stream, rec) run in plaintext before the handshake;
    starttls=True uses starttls_dialogue() for the protocol.  refusal: the
    answer of behaviour "refuse" to a login (bytes, whole lines, without
    the IMAP tag).
    """

    __test__ = False            # not a pytest test class
    conn_timeout = 60
    backlog = 1024

    def __init__(self, behaviour="echo", tls=None, protocol="imap",
                 greeting=None, size=0, host="127.0.0.1", pre_tls=None,
                 starttls=False, refusal=None):
        self.behaviour = BEHAVIOURS[behaviour]
        self.tls = tls
        self.protocol = protocol
        self.refusal = refusal
        if greeting is None:            # after STARTTLS nobody greets again
            greeting = b"" if starttls else GREETING[protocol]
        self.greeting = greeting
        self.size = size
        self.pre_tls = starttls_dialogue if starttls else pre_tls
        super().__init__(host)

    def _handle(self, sock, rec):
        st = Stream(sock, rec)
        if self.pre_tls:
            self.pre_tls(self, st, rec)
        if self.tls:
            st.start_tls(self.tls)
        self.behaviour(self, st, rec)


class BlackholeListener:
    """A port whose connect() hangs: backlog 0, accept queue kept full.

    Linux drops SYNs to a listener whose accept queue is full, so once one
    connection sits unaccepted in the queue every further connect() waits.
    The constructor checks that this really happens.
    """

    def __init__(self, host="127.0.0.1"):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind((host, 0))
        self.lsock.listen(0)
        self.port = self.lsock.getsockname()[1]
        self.address = "%s:%d" % (host, self.port)
        self.fillers = []
        self._fill(host)
        self._verify(host)

    def _fill(self, host):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        s.connect((host, self.port))    # completes, then waits unaccepted
        self.fillers.append(s)

    def _verify(self, host):
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(0.3)
        try:
            probe.connect((host, self.port))
        except socket.timeout:
            return                              # hangs, as wanted
        finally:
            probe.close()
        raise RuntimeError("BlackholeListener: connect() did not hang")

    def stop(self):
        for s in self.fillers:
            s.close()
        self.lsock.close()

