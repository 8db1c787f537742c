"""A scripted STARTTLS mail server for the STARTTLS tests: IMAP, POP3, SMTP.

StarttlsServer plays, per connection, a correct server of its protocol:
a plaintext greeting and dialogue up to the STARTTLS go-ahead (IMAP
`tag STARTTLS`, POP3 `STLS`, SMTP `EHLO` then `STARTTLS`), the TLS
handshake (over memory BIOs, see servers.Stream), then a small but real
post-TLS server: capabilities, LOGIN/USER+PASS/AUTH PLAIN (and LOGIN),
IMAP SELECT/FETCH, POP3 STAT/LIST/RETR, SMTP MAIL/RCPT/DATA.  The pre-TLS
and post-TLS capability lists differ (markers X-PRETLS / X-POSTTLS), so a
test can tell which one a client saw.

Every line received is recorded per connection, split into `rec.pre`
(plaintext, before TLS) and `rec.post` (inside TLS); IMAP literal bytes are
recorded as one entry of their own.  Raw bytes received after the go-ahead
outside TLS (the ClientHello awaited before a late injection; everything
when the server stays silent) go to `rec.after_go_ahead`.

Misbehaviour is asked for with keyword arguments, one per attack:

    greeting=b"..."          replaces the plaintext greeting (b"": silence);
                             a list of pieces is sent piece by piece, each
                             once the peer has read the one before
    dribble=b"..."           after the greeting, send these bytes every
                             DRIBBLE_SECS until the peer goes (slowloris)
    ehlo_reply=b"..."        SMTP: replaces the reply to EHLO
    starttls_reply=b"..."    replaces the go-ahead by this reply (a refusal);
                             "{tag}" stands for the IMAP tag; HANGUP closes
    before_go_ahead=b"..."   sent in the same write just before the go-ahead
    go_ahead=b"..."          replaces the go-ahead line itself
    inject=b"..."            sent after the go-ahead (then TLS as usual) ...
    inject_when="same"       ... in the same write as the go-ahead, or
                "client_hello" once the client's first TLS bytes arrived
    after_go_ahead="silent"  neither TLS nor anything else: read until EOF
    tls=SSLContext           the context of the handshake (a bad certificate)
    hold_greeting=Event      greet only once the test sets this event
    implicit=True            implicit TLS instead: the handshake first, then
                             `greeting` inside TLS, then the post-TLS server
"""

import base64
import hashlib
import re
import socket
import threading
import time

from servers import ConnRecord, Stream, ThreadedServer

HANGUP = b"<hang up>"           # starttls_reply: close instead of answering
DRIBBLE_SECS = 0.2

USERS = {b"alice": {b"secret", b"pass STARTTLS\r\na9 STARTTLS"}}

# A message whose lines look like protocol lines: a relay that parses them
# (or forgets dot-stuffing) changes them.
MESSAGE = (
    b"From: alice@mail.test\r\n"
    b"To: bob@mail.test\r\n"
    b"Subject: STARTTLS test message\r\n"
    b"\r\n"
    b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n"
    b"* OK [CAPABILITY IMAP4rev1 STARTTLS] looks like a response\r\n"
    b"a1 OK [CAPABILITY IMAP4rev1 STARTTLS] LOGIN completed\r\n"
    b"a2 STARTTLS\r\n"
    b"+OK\r\n"
    b"STLS\r\n"
    b".\r\n"
    b"..two dots\r\n"
    b".STLS\r\n"
    b"250-STARTTLS\r\n"
    b"250 STARTTLS\r\n"
    b"220 2.0.0 Ready to start TLS\r\n"
    b"{12}\r\n"
    b"\x00\x01 binary \xff\xfe bytes\r\n"
    b"last line\r\n"
)

# ------------------------------------------------------ what the server says
# Plaintext (pre-TLS) texts carry the marker PRETLS: a client must never see
# them.  Post-TLS lists carry X-POSTTLS.

PRE_GREETING = {
    "imap": b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED X-PRETLS "
            b"AUTH=X-PRETLS-MECH] PRETLS-GREETING imap server ready\r\n",
    "pop3": b"+OK PRETLS-GREETING pop3 server ready "
            b"<1896.697170952@mail.test>\r\n",
    "smtp": b"220-mail.test ESMTP PRETLS-GREETING\r\n"
            b"220 mail.test PRETLS-GREETING second line\r\n",
}

IMAP_PRE_CAPS = b"IMAP4rev1 STARTTLS LOGINDISABLED X-PRETLS AUTH=X-PRETLS-MECH"
POP3_PRE_CAPA = (b"+OK\r\nSTLS\r\nUSER\r\nX-PRETLS\r\nSASL X-PRETLS-MECH\r\n"
                 b".\r\n")
SMTP_PRE_EHLO = (b"250-mail.test PRETLS-EHLO hello\r\n"
                 b"250-X-PRETLS\r\n"
                 b"250-AUTH X-PRETLS-MECH\r\n"
                 b"250-STARTTLS\r\n"
                 b"250 SIZE 1000\r\n")

GO_AHEAD = {
    "imap": b"{tag} OK Begin TLS negotiation now\r\n",
    "pop3": b"+OK Begin TLS negotiation\r\n",
    "smtp": b"220 2.0.0 Ready to start TLS\r\n",
}

# After TLS: STARTTLS/STLS/LOGINDISABLED are still listed (some servers do),
# so that the tests see the daemon's filter remove them before login and
# leave them alone after it.
IMAP_POST_CAPS = (b"IMAP4rev1 STARTTLS AUTH=PLAIN AUTH=LOGIN LOGINDISABLED "
                  b"IDLE X-POSTTLS")
IMAP_NOOP_CODE = b"IMAP4rev1 AUTH=PLAIN STARTTLS X-POSTTLS LOGINDISABLED"
POP3_POST_CAPA = (b"+OK Capability list follows\r\n"
                  b"TOP\r\n"
                  b"STLS\r\n"
                  b"USER\r\n"
                  b"SASL PLAIN LOGIN\r\n"
                  b"X-POSTTLS\r\n"
                  b".\r\n")
SMTP_POST_EHLO = (b"250-mail.test Hello {name}\r\n"
                  b"250-PIPELINING\r\n"
                  b"250-AUTH PLAIN LOGIN\r\n"
                  b"250-X-POSTTLS\r\n"
                  b"250-8BITMIME\r\n"
                  b"250 STARTTLS\r\n")

LITERAL_RX = re.compile(rb"\{(\d+)(\+?)\}$")
TOKEN_RX = re.compile(rb'"((?:[^"\\]|\\.)*)"|(\S+)')


def dot_stuff(data):
    """POP3/SMTP transparency: a line starting with "." gets one more."""
    lines = data.split(b"\r\n")
    return b"\r\n".join(b"." + l if l.startswith(b".") else l for l in lines)


def imap_tokens(text):
    """Atoms and quoted strings of an IMAP command line (no literals)."""
    out = []
    for m in TOKEN_RX.finditer(text):
        if m.group(1) is not None:
            out.append(re.sub(rb"\\(.)", rb"\1", m.group(1)))
        else:
            out.append(m.group(2))
    return out


class StarttlsRecord(ConnRecord):
    """ConnRecord plus the lines received before and after TLS."""

    def __init__(self, cid):
        super().__init__(cid)
        self.pre = []                   # lines received in plaintext
        self.post = []                  # lines (and literals) inside TLS
        self.after_go_ahead = bytearray()   # raw bytes outside TLS
        self.go_ahead_sent = threading.Event()
        self.tls_started = False        # the server began its handshake
        self.logged_in_as = None


class RecordingStream(Stream):
    """A Stream that records every line it returns, pre-TLS or post-TLS."""

    def readline(self, limit=65536):
        line = super().readline(limit)
        if line:
            (self.rec.post if self.tls else self.rec.pre).append(line)
        return line

    def read_exact(self, n):
        """Exactly n application bytes (recorded as one entry); None at EOF."""
        data = bytearray()
        while len(data) < n:
            piece = self.recv(n - len(data))
            if not piece:
                return None
            data += piece
        (self.rec.post if self.tls else self.rec.pre).append(bytes(data))
        return bytes(data)

    def raw_recv(self):
        """Raw bytes from the socket, bypassing TLS; b"" at EOF."""
        if self.buf:
            data = bytes(self.buf)
            self.buf.clear()
            return data
        return self._raw_recv()


def _proc_tcp_queues(local, remote):
    """(tx_queue, rx_queue) of the IPv4 TCP socket local -> remote, or None."""
    def hexaddr(addr):
        ip = socket.inet_aton(addr[0])[::-1].hex().upper()
        return "%s:%04X" % (ip, addr[1])
    want = (hexaddr(local), hexaddr(remote))
    with open("/proc/net/tcp") as f:
        next(f)
        for row in f:
            cols = row.split()
            if (cols[1], cols[2]) == want:
                tx, rx = cols[4].split(":")
                return int(tx, 16), int(rx, 16)
    return None


def wait_peer_read(sock, timeout=5):
    """Wait until everything sent on sock was read by the peer process.

    Both ends are on this host, so the kernel's queues say it: our send
    queue and the peer's receive queue are empty.  No event tells this, so
    it is polled, bounded by timeout."""
    me, peer = sock.getsockname(), sock.getpeername()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ours, theirs = _proc_tcp_queues(me, peer), _proc_tcp_queues(peer, me)
        if ours is None or theirs is None:
            raise AssertionError("no /proc/net/tcp entry for %s <-> %s"
                                 % (me, peer))
        if ours[0] == 0 and theirs[1] == 0:
            return
        time.sleep(0.005)
    raise AssertionError("the peer did not read within %ss" % timeout)


def _sasl_plain(blob):
    """(user, password) from an AUTH PLAIN response, or None."""
    try:
        parts = base64.b64decode(blob, validate=True).split(b"\0")
    except ValueError:
        return None
    return (parts[1], parts[2]) if len(parts) == 3 else None


def _b64(blob):
    try:
        return base64.b64decode(blob, validate=True)
    except ValueError:
        return None


class StarttlsServer(ThreadedServer):
    """The STARTTLS tests' mail server (see the module's docstring): per
    connection the plaintext dialogue, the handshake and the post-TLS server
    of its protocol, recording lines in a StarttlsRecord."""

    record_class = StarttlsRecord

    def __init__(self, protocol, tls, host="127.0.0.1", greeting=None,
                 ehlo_reply=None, starttls_reply=None, before_go_ahead=b"",
                 go_ahead=None, inject=None, inject_when="same",
                 after_go_ahead="tls", hold_greeting=None, dribble=None,
                 implicit=False):
        assert protocol in ("imap", "pop3", "smtp")
        assert inject_when in ("same", "client_hello")
        assert after_go_ahead in ("tls", "silent")
        self.protocol = protocol
        self.tls = tls
        self.greeting = PRE_GREETING[protocol] if greeting is None \
            else greeting
        self.ehlo_reply = SMTP_PRE_EHLO if ehlo_reply is None else ehlo_reply
        self.starttls_reply = starttls_reply
        self.before_go_ahead = before_go_ahead
        self.go_ahead = GO_AHEAD[protocol] if go_ahead is None else go_ahead
        self.inject = inject
        self.inject_when = inject_when
        self.after_go_ahead = after_go_ahead
        self.hold_greeting = hold_greeting
        self.dribble = dribble
        self.implicit = implicit
        super().__init__(host)

    def _handle(self, sock, rec):
        st = RecordingStream(sock, rec)
        if self.implicit or self._dialogue(st, rec):
            rec.tls_started = True
            st.start_tls(self.tls)
            if self.implicit:
                st.sendall(self.greeting)
            getattr(self, "_serve_" + self.protocol)(st, rec)

    # ------------------------------------------------- plaintext dialogue
    def _dialogue(self, st, rec):
        """Plaintext part; True when TLS is to start now."""
        if self.hold_greeting is not None and \
                not self.hold_greeting.wait(10):
            raise AssertionError("the test never released the greeting")
        pieces = self.greeting if isinstance(self.greeting, (list, tuple)) \
            else [self.greeting]
        for i, piece in enumerate(pieces):
            if i:
                wait_peer_read(st.sock)
            if piece:
                st.sendall(piece, count=False)
        if self.dribble is not None:
            self._dribble(st)
            return False
        while True:
            line = st.readline()
            if not line:
                return False            # the peer gave up: nothing more
            reply, starttls = self._pre_reply(line)
            if not starttls:
                st.sendall(reply, count=False)
                continue
            if self.starttls_reply is None:
                return self._go_ahead(st, rec, reply)
            if self.starttls_reply == HANGUP:
                return False
            st.sendall(self.starttls_reply.replace(b"{tag}", reply),
                       count=False)

    def _dribble(self, st):
        """Keep the line alive with a line now and then, until the peer
        goes; record what it sends."""
        st.sock.settimeout(DRIBBLE_SECS)
        while True:
            try:
                data = st.raw_recv()
                if not data:
                    return
                st.rec.pre += data.splitlines(True)
            except socket.timeout:
                pass
            try:
                st.sendall(self.dribble, count=False)
            except OSError:
                return

    def _pre_reply(self, line):
        """(reply, False) for a plaintext command; (tag, True) for STARTTLS."""
        words = line.split()
        verb = lambda i: words[i].upper() if len(words) > i else b""
        if self.protocol == "imap":
            tag = words[0] if words else b"*"
            if verb(1) == b"STARTTLS":
                return tag, True
            if verb(1) == b"CAPABILITY":
                return (b"* CAPABILITY " + IMAP_PRE_CAPS + b"\r\n" + tag +
                        b" OK CAPABILITY completed\r\n"), False
            if verb(1) == b"NOOP":
                return tag + b" OK NOOP completed\r\n", False
            if verb(1) == b"LOGOUT":
                return (b"* BYE PRETLS logging out\r\n" + tag +
                        b" OK LOGOUT completed\r\n"), False
            if verb(1) in (b"LOGIN", b"AUTHENTICATE"):
                return tag + b" NO [PRIVACYREQUIRED] use STARTTLS\r\n", False
            return tag + b" BAD unknown command before STARTTLS\r\n", False
        if self.protocol == "pop3":
            if verb(0) == b"STLS":
                return b"", True
            if verb(0) == b"CAPA":
                return POP3_PRE_CAPA, False
            if verb(0) == b"QUIT":
                return b"+OK PRETLS bye\r\n", False
            return b"-ERR [AUTH] use STLS first\r\n", False
        if verb(0) == b"STARTTLS":
            return b"", True
        if verb(0) == b"EHLO":
            return self.ehlo_reply, False
        if verb(0) == b"HELO":
            return b"250 mail.test PRETLS-HELO\r\n", False
        if verb(0) == b"QUIT":
            return b"221 2.0.0 PRETLS bye\r\n", False
        return b"530 5.7.0 Must issue a STARTTLS command first\r\n", False

    def _go_ahead(self, st, rec, tag):
        """Say go ahead; True when a TLS handshake follows."""
        data = self.before_go_ahead + self.go_ahead.replace(b"{tag}", tag)
        if self.inject is not None and self.inject_when == "same":
            data += self.inject
        st.sendall(data, count=False)
        rec.go_ahead_sent.set()
        if self.inject is not None and self.inject_when == "client_hello":
            # The event: the client's first TLS bytes (its ClientHello) are
            # here, so the injection arrives in a later read for certain.
            first = st.raw_recv()
            rec.after_go_ahead += first
            if not first:
                return False
            st.sock.sendall(self.inject)
            st.buf += first             # the handshake goes on with it
        if self.inject is not None or self.after_go_ahead == "tls":
            # After an injection the real server goes on with TLS, as it
            # would behind a man in the middle.
            return True
        while True:                     # no TLS: take all until the peer ends
            data = st.raw_recv()
            if not data:
                return False
            rec.after_go_ahead += data

    # --------------------------------------------------- post-TLS servers
    def _authenticate(self, st, mech, initial, challenge, fmt):
        """A SASL exchange: (user, password), "cancel" or None (bad)."""
        mech = mech.upper()

        def ask(prompt):
            st.sendall(fmt % prompt)
            line = st.readline()
            if not line:
                raise ConnectionError("EOF during SASL")
            line = line.rstrip(b"\r\n")
            return None if line == b"*" else line

        if mech == b"PLAIN":
            blob = initial if initial is not None else ask(b"")
            if blob is None:
                return "cancel"
            return _sasl_plain(blob)
        if mech == b"LOGIN":
            user = _b64(initial) if initial is not None else None
            if user is None:
                got = ask(base64.b64encode(b"Username:"))
                if got is None:
                    return "cancel"
                user = _b64(got)
            got = ask(base64.b64encode(b"Password:"))
            if got is None:
                return "cancel"
            password = _b64(got)
            if user is None or password is None:
                return None
            return user, password
        return None

    @staticmethod
    def _check_user(creds):
        return (isinstance(creds, tuple) and
                creds[1] in USERS.get(creds[0], ()))

    # -- IMAP --
    def _imap_command(self, st):
        """One command's tokens, literals read (and recorded); None at EOF."""
        tokens = []
        while True:
            line = st.readline()
            if not line:
                return None
            body = line.rstrip(b"\r\n")
            m = LITERAL_RX.search(body)
            tokens += imap_tokens(body[:m.start()] if m else body)
            if not m:
                return tokens
            if not m.group(2):
                st.sendall(b"+ Ready for literal data\r\n")
            data = st.read_exact(int(m.group(1)))
            if data is None:
                return None
            tokens.append(data)

    def _serve_imap(self, st, rec):
        """IMAP after STARTTLS (no greeting: RFC 3501 6.2.1)."""
        authed = False
        while True:
            words = self._imap_command(st)
            if words is None:
                break
            if not words:
                continue
            tag = words[0]
            verb = words[1].upper() if len(words) > 1 else b""
            args = words[2:]
            ok = tag + b" OK %s completed\r\n" % verb
            if verb == b"CAPABILITY":
                st.sendall(b"* CAPABILITY " + IMAP_POST_CAPS + b"\r\n" + ok)
            elif verb == b"NOOP":
                st.sendall(ok if authed else tag + b" OK [CAPABILITY " +
                           IMAP_NOOP_CODE + b"] NOOP completed\r\n")
            elif verb == b"STARTTLS":
                st.sendall(tag + b" BAD TLS is already active\r\n")
            elif verb in (b"LOGIN", b"AUTHENTICATE"):
                if authed:
                    st.sendall(tag + b" BAD already authenticated\r\n")
                    continue
                if verb == b"LOGIN":
                    creds = tuple(args[:2]) if len(args) == 2 else None
                else:
                    creds = self._authenticate(
                        st, args[0] if args else b"",
                        args[1] if len(args) > 1 else None, b"+ ",
                        b"+ %s\r\n")
                if creds == "cancel":
                    st.sendall(tag + b" BAD AUTHENTICATE cancelled\r\n")
                elif self._check_user(creds):
                    authed = True
                    rec.logged_in_as = creds[0]
                    rec.logged_in.set()
                    st.sendall(ok)
                else:
                    st.sendall(tag + b" NO [AUTHENTICATIONFAILED] "
                               b"invalid credentials\r\n")
            elif verb in (b"SELECT", b"EXAMINE") and authed:
                st.sendall(b"* FLAGS (\\Answered \\Flagged \\Deleted "
                           b"\\Seen \\Draft)\r\n"
                           b"* 1 EXISTS\r\n* 0 RECENT\r\n"
                           b"* OK [UIDVALIDITY 1] UIDs valid\r\n"
                           b"* OK [UIDNEXT 2] predicted next UID\r\n" +
                           tag + b" OK [READ-WRITE] SELECT completed\r\n")
            elif verb == b"FETCH" and authed:
                item = b"RFC822" if b"RFC822" in b" ".join(args).upper() \
                    else b"BODY[]"
                st.sendall(b"* 1 FETCH (%s {%d}\r\n" % (item, len(MESSAGE)) +
                           MESSAGE + b")\r\n" + ok)
            elif verb == b"LOGOUT":
                st.sendall(b"* BYE logging out\r\n" + ok)
                break
            else:
                st.sendall(tag + b" BAD unknown command or wrong state\r\n")
        st.close()

    # -- POP3 --
    def _serve_pop3(self, st, rec):
        """POP3 after STLS (no greeting: RFC 2595 4)."""
        authed, user = False, None
        stuffed = dot_stuff(MESSAGE)
        while True:
            line = st.readline()
            if not line:
                break
            words = line.split()
            verb = words[0].upper() if words else b""
            arg = words[1] if len(words) > 1 else None
            if verb == b"CAPA":
                st.sendall(POP3_POST_CAPA)
            elif verb == b"STLS":
                st.sendall(b"-ERR TLS is already active\r\n")
            elif verb == b"USER" and not authed:
                user = arg
                st.sendall(b"+OK send PASS\r\n")
            elif verb in (b"PASS", b"AUTH") and not authed:
                if verb == b"PASS":
                    creds = (user, line[5:].rstrip(b"\r\n"))
                elif arg is None:
                    st.sendall(b"+OK SASL mechanisms\r\nPLAIN\r\nLOGIN\r\n"
                               b".\r\n")
                    continue
                else:
                    creds = self._authenticate(
                        st, arg, words[2] if len(words) > 2 else None,
                        b"+ ", b"+ %s\r\n")
                if self._check_user(creds):
                    authed = True
                    rec.logged_in_as = creds[0]
                    rec.logged_in.set()
                    st.sendall(b"+OK logged in\r\n")
                else:
                    st.sendall(b"-ERR [AUTH] invalid credentials\r\n")
            elif verb == b"STAT" and authed:
                st.sendall(b"+OK 1 %d\r\n" % len(MESSAGE))
            elif verb == b"LIST" and authed:
                st.sendall(b"+OK 1 messages\r\n1 %d\r\n.\r\n" % len(MESSAGE))
            elif verb == b"RETR" and authed and arg == b"1":
                st.sendall(b"+OK %d octets\r\n" % len(MESSAGE) + stuffed +
                           b".\r\n")
            elif verb == b"NOOP":
                st.sendall(b"+OK\r\n")
            elif verb == b"QUIT":
                st.sendall(b"+OK bye\r\n")
                break
            else:
                st.sendall(b"-ERR unknown command or wrong state\r\n")
        st.close()

    # -- SMTP --
    def _serve_smtp(self, st, rec):
        """SMTP after STARTTLS (the client starts again with EHLO)."""
        authed, mail, rcpts = False, None, []
        while True:
            line = st.readline()
            if not line:
                break
            words = line.split()
            verb = words[0].upper() if words else b""
            if verb in (b"EHLO", b"HELO"):
                name = words[1] if len(words) > 1 else b"unknown"
                mail, rcpts = None, []
                st.sendall(SMTP_POST_EHLO.replace(b"{name}", name)
                           if verb == b"EHLO" else b"250 mail.test\r\n")
            elif verb == b"STARTTLS":
                st.sendall(b"503 5.5.1 TLS is already active\r\n")
            elif verb == b"AUTH" and not authed and len(words) > 1:
                creds = self._authenticate(
                    st, words[1], words[2] if len(words) > 2 else None,
                    b"334 ", b"334 %s\r\n")
                if creds == "cancel":
                    st.sendall(b"501 5.0.0 AUTH cancelled\r\n")
                elif self._check_user(creds):
                    authed = True
                    rec.logged_in_as = creds[0]
                    rec.logged_in.set()
                    st.sendall(b"235 2.7.0 Authentication successful\r\n")
                else:
                    st.sendall(b"535 5.7.8 invalid credentials\r\n")
            elif verb == b"MAIL":
                if not authed:
                    st.sendall(b"530 5.7.0 Authentication required\r\n")
                else:
                    mail, rcpts = line, []
                    st.sendall(b"250 2.1.0 Ok\r\n")
            elif verb == b"RCPT" and mail:
                rcpts.append(line)
                st.sendall(b"250 2.1.5 Ok\r\n")
            elif verb == b"DATA" and mail and rcpts:
                st.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                body = self._smtp_body(st)
                if body is None:
                    break
                rec.result["body"] = body
                rec.result["body_ok"] = body == MESSAGE
                mail, rcpts = None, []
                if body == MESSAGE:
                    st.sendall(b"250 2.0.0 Ok: body sha256 %s\r\n" %
                               hashlib.sha256(body).hexdigest().encode())
                else:
                    st.sendall(b"554 5.6.0 body differs from MESSAGE\r\n")
            elif verb in (b"NOOP", b"RSET"):
                if verb == b"RSET":
                    mail, rcpts = None, []
                st.sendall(b"250 2.0.0 Ok\r\n")
            elif verb == b"QUIT":
                st.sendall(b"221 2.0.0 Bye\r\n")
                break
            else:
                st.sendall(b"503 5.5.1 unknown command or wrong state\r\n")
        st.close()

    @staticmethod
    def _smtp_body(st):
        """The message after 354, dot-unstuffed; None at EOF."""
        lines = []
        while True:
            line = st.readline()
            if not line:
                return None
            if line == b".\r\n":
                return b"".join(lines)
            lines.append(line[1:] if line.startswith(b".") else line)
