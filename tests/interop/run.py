#!/usr/bin/env python3
"""mailtlsd interoperability suite: real servers behind mailtlsd, real mail
clients in front of it.

    make interop
    MAILTLSD=build/mailtlsd python3 tests/interop/run.py [--keep] [-v]

Starts, in a temporary directory and on loopback high ports, Dovecot (IMAP
with STARTTLS and IMAPS, POP3 with STLS and POP3S, LMTP), Postfix
(submission with STARTTLS and implicit-TLS submissions, SMTP AUTH through
Dovecot, delivery to Dovecot over LMTP) and mailtlsd in front of all six,
then drives curl, swaks, fetchmail, NeoMutt and Python's imaplib, poplib and
smtplib through mailtlsd, and msmtp, mpop, mbsync, nodemailer and imapflow
also through six more services with local_tls. Prints one line per client x protocol x mode x
check and `N passed, N failed`; exits 1 when anything failed.

Needs root and Debian's packages (tests/interop/setup.sh installs them).
Environment: MAILTLSD (the binary), INTEROP_IDLE_SECONDS (how long IMAP IDLE
must survive before the notification, default 60), INTEROP_PORT_BASE
(default 19100: servers on 127.0.0.2:BASE..BASE+5, mailtlsd on
127.0.0.1:BASE+10..BASE+21), INTEROP_MAIL_USER (default mailtlsd-interop),
INTEROP_KEEP=1 (same as --keep: keep the run directory),
INTEROP_MAILTLSD_GLOBAL (extra `key = value` settings for mailtlsd's
[global] section, separated by `;`, e.g. "pool_size = 2").
"""

import argparse
import os
import re
import select
import signal
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import clients as C  # noqa: E402
import oauth2 as O2   # noqa: E402
import stack as S    # noqa: E402

MODES = ("implicit", "starttls")
# the clients added for docs/clients.md also go through local_tls services
ALL_MODES = MODES + ("local-starttls", "local-implicit")
BIG_SIZE = 25 * 1024 * 1024
DELIVERY_TIMEOUT = 60


class Aborted(BaseException):
    """A signal: not an Exception, so that no check takes it for its own
    failure (the OAuth2 part's rows catch every Exception)."""


def _abort(signum, frame):
    raise Aborted("interrupted by signal %d" % signum)


class LogMark:
    """Where Dovecot's and Postfix's logs were when a row began."""

    def __init__(self, st):
        self.st = st
        self.offsets = {p: _size(p) for p in (st.dovecot_log, st.postfix_log)}

    def new_lines(self, path):
        try:
            with open(path, "rb") as f:
                f.seek(self.offsets[path])
                return f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


LOGIN_RE = re.compile(r"(imap|pop3)-login: Info: Login: user=<([^>]*)>, "
                      r"method=([^,]+), rip=([^,]+), lip=([^,]+), "
                      r"mpid=\d+, (.*)$")
SASL_RE = re.compile(r"postfix/(submissions?)/smtpd\[\d+\]: \w+: "
                     r"client=\S+, sasl_method=([^,]+), sasl_username=(\S+)")
TLS_RE = re.compile(r"postfix/(submissions?)/smtpd\[\d+\]: \w+ TLS "
                    r"connection established from \S+: (TLSv[\d.]+) with "
                    r"cipher (\S+)")
POST_TLS_MECHS = {"PLAIN", "LOGIN"}


class Suite:
    def __init__(self, st, idle_seconds, verbose):
        self.st = st
        self.idle_seconds = idle_seconds
        self.verbose = verbose
        self.lock = threading.Lock()      # one row (or IDLE send) at a time
        self.out_lock = threading.Lock()
        self.passed = 0
        self.failed = 0
        self.sent = {}        # token -> (bytes sent or None, who sent it)
        self.refs = {}        # token -> (first copy read with CRLF, reader)
        self.open_sessions = []

    # -- reporting ------------------------------------------------------------
    def report(self, ok, client, proto, mode, what, detail, elapsed):
        with self.out_lock:
            if ok:
                self.passed += 1
            else:
                self.failed += 1
            print("%s  %-14s %-5s %-14s %s: %s (%.1f s)" % (
                "PASS" if ok else "FAIL", client, proto, mode, what, detail,
                elapsed), flush=True)

    def row(self, client, proto, mode, what, fn):
        with self.lock:
            mark = LogMark(self.st)
            t0 = time.monotonic()
            try:
                detail, ok = fn(mark), True
            except C.CheckFailed as e:
                detail, ok = str(e), False
            except Aborted:
                raise
            except Exception as e:     # a client library's error
                detail, ok = "%s: %s" % (type(e).__name__, e), False
                if self.verbose:
                    traceback.print_exc()
            elapsed = time.monotonic() - t0
        self.report(ok, client, proto, mode, what, detail, elapsed)
        return ok

    # -- server-side evidence ---------------------------------------------------
    def logins(self, mark, proto, mode, want=1):
        """The logins the servers logged since mark: every one over TLS with a
        mechanism that is offered only after TLS."""
        deadline = time.monotonic() + 5
        while True:
            if proto == "smtp":
                lines = mark.new_lines(self.st.postfix_log)
                svc = "submission" if mode == "starttls" else "submissions"
                found = [m for m in map(SASL_RE.search, lines) if m and
                         m.group(1) == svc]
                tls = [m for m in map(TLS_RE.search, lines) if m and
                       m.group(1) == svc]
            else:
                lines = mark.new_lines(self.st.dovecot_log)
                found = [m for m in map(LOGIN_RE.search, lines) if m and
                         m.group(1) == proto]
                tls = [m for m in found if re.match(r"TLS\b", m.group(6))]
            if len(found) >= want or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if len(found) < want:
            raise C.CheckFailed("the server logged %d login(s), expected %d"
                                % (len(found), want))
        if proto == "smtp":
            mechs = {m.group(2).upper() for m in found}
            if len(tls) < len(found):
                raise C.CheckFailed("Postfix logged %d TLS session(s) for %d "
                                    "login(s)" % (len(tls), len(found)))
            how = "%s, %s" % (tls[0].group(2), tls[0].group(3))
        else:
            mechs = {m.group(3).upper() for m in found}
            if len(tls) < len(found):
                raise C.CheckFailed("Dovecot logged a login without TLS: %s"
                                    % [m.group(0) for m in found])
            how = "TLS"
        if not mechs <= POST_TLS_MECHS:
            raise C.CheckFailed("login with %s, not a post-TLS mechanism"
                                % sorted(mechs))
        return "login %s over %s" % ("/".join(sorted(mechs)), how)

    def wait_delivered(self, token, mailbox="INBOX"):
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while time.monotonic() < deadline:
            if self.st.mailbox_count(mailbox, ("header", "X-Interop-Token",
                                               token)) >= 1:
                return
            time.sleep(0.2)
        raise C.CheckFailed("the message %s did not arrive in %s within %d s"
                            % (token, mailbox, DELIVERY_TIMEOUT))

    # -- rows -------------------------------------------------------------------
    def smtp_row(self, client, mode):
        port = self.st.port("smtp", mode)
        token = "%s-smtp-%s-%d" % (client, mode, os.getpid())
        logname = "%s-smtp-%s" % (client, mode)

        def fn(mark):
            if client == "neomutt":
                body = ("Sent by NeoMutt in batch mode, token %s.\n"
                        ".a line with a leading dot\n" % token).encode()
                t = C.neomutt_send(self.st, port, token, body, logname)
                sent = None
            else:
                sent = C.make_message(token, "%s via mailtlsd %s"
                                      % (client, mode))
                if client == "curl":
                    t = C.curl_smtp_send(self.st, port, sent, logname)
                elif client == "swaks":
                    t = C.swaks_send(self.st, port, sent, logname)
                else:
                    t = C.smtplib_send(port, sent)
            t.dump(self.st.path("clients", logname + ".transcript"))
            caps = C.check_capabilities("smtp", t)
            login = self.logins(mark, "smtp", mode)
            self.wait_delivered(token)
            self.sent[token] = (sent, "%s %s" % (client, mode))
            return "%s; %s; delivered to INBOX" % (login, caps)
        self.row(client, "SMTP", mode, "send", fn)

    def read_row(self, client, proto, mode):
        port = self.st.port(proto, mode)
        logname = "%s-%s-%s" % (client, proto, mode)
        lf = client in ("fetchmail", "neomutt")

        def fn(mark):
            if client == "python-imaplib":
                t, msgs = C.imaplib_read(port)
            elif client == "python-poplib":
                t, msgs = C.poplib_read(port)
            elif client == "curl" and proto == "imap":
                t, msgs = C.curl_imap_read(self.st, port, logname)
            elif client == "curl":
                t, msgs = C.curl_pop3_read(self.st, port, logname)
            elif client == "fetchmail":
                t, msgs = C.fetchmail_read(self.st, proto, port, logname)
            else:
                scheme = "imap" if proto == "imap" else "pop"
                url = "%s://%s@%s:%d/%s" % (scheme, S.USER, S.CLIENT_ADDR,
                                            port, "INBOX" if proto == "imap"
                                            else "")
                t, msgs = C.neomutt_read(self.st, url, logname)
            t.dump(self.st.path("clients", logname + ".transcript"))
            caps = C.check_capabilities(proto, t)
            login = self.logins(mark, proto, mode)
            same = self.compare(msgs, "%s %s %s" % (client, proto, mode), lf)
            return "%s; %s; %s" % (login, same, caps)
        self.row(client, proto.upper(), mode, "read", fn)

    # -- msmtp, mpop, mbsync, nodemailer, imapflow ------------------------------
    # Modes: implicit and starttls (toward the server; plaintext toward
    # mailtlsd, as a user sets up a client by the README) and local-starttls,
    # local-implicit (local_tls services; the client trusts only the
    # certificate mailtlsd generated, through its own trust setting, and must
    # refuse the connection without that setting).

    UNTRUSTED = re.compile(r"certificate (verification failed|is NOT "
                           r"trusted)|self-signed certificate|issuer is "
                           r"unknown", re.I)

    def caps_seen(self, proto, mode, t):
        if mode == "local-starttls":
            sent = [ln for d, ln in t.lines if d == ">" and
                    re.match(r"^(\S+ )?(STARTTLS|STLS)\s*$", ln, re.I)]
            if not sent:
                raise C.CheckFailed("the client did not send STARTTLS/STLS")
            return "STARTTLS to mailtlsd, then " + C.check_capabilities(
                proto, C.after_starttls(t))
        return C.check_capabilities(proto, t)

    def refuses_untrusted(self, run, mode):
        """Runs the client again without its trust setting: it must refuse
        mailtlsd's certificate."""
        if not mode.startswith("local-"):
            return ""
        rc, out, _t = run(False)[:3]
        if rc == 0:
            raise C.CheckFailed("the client accepted mailtlsd's certificate "
                                "without being told to trust it")
        m = self.UNTRUSTED.search(out)
        if not m:
            raise C.CheckFailed("without the trust setting the client failed "
                                "for another reason: %s" % out.strip()[-300:])
        return "; without the trust setting refused (%s)" % m.group(0)

    def client_send_row(self, client, mode):
        port = self.st.port("smtp", mode)
        token = "%s-smtp-%s-%d" % (client, mode, os.getpid())
        logname = "%s-smtp-%s" % (client, mode)
        send = C.msmtp_send if client == "msmtp" else C.nodemailer_send

        def fn(mark):
            sent = C.make_message(token, "%s via mailtlsd %s" % (client, mode))
            rc, out, t = send(self.st, port, mode, sent, logname)
            t.dump(self.st.path("clients", logname + ".transcript"))
            if rc != 0:
                raise C.CheckFailed("%s exited %d: %s" % (
                    client, rc, out.strip()[-400:]))
            caps = self.caps_seen("smtp", mode, t)
            login = self.logins(mark, "smtp", mode.split("-")[-1])
            self.wait_delivered(token)
            self.sent[token] = (sent, "%s %s" % (client, mode))
            refused = self.refuses_untrusted(
                lambda trust: send(self.st, port, mode, sent,
                                   logname + "-untrusted", trust), mode)
            return "%s; %s; delivered to INBOX%s" % (login, caps, refused)
        self.row(client, "SMTP", mode, "send", fn)

    def client_read_row(self, client, proto, mode):
        port = self.st.port(proto, mode)
        logname = "%s-%s-%s" % (client, proto, mode)
        read = {"mpop": C.mpop_read, "mbsync": C.mbsync_read,
                "imapflow": C.imapflow_read}[client]
        lf = client in ("mpop", "mbsync")

        def fn(mark):
            rc, out, t, msgs = read(self.st, port, mode, logname)
            t.dump(self.st.path("clients", logname + ".transcript"))
            if rc != 0:
                raise C.CheckFailed("%s exited %d: %s" % (
                    client, rc, out.strip()[-400:]))
            caps = self.caps_seen(proto, mode, t)
            login = self.logins(mark, proto, mode.split("-")[-1])
            same = self.compare(msgs, "%s %s %s" % (client, proto, mode), lf)
            refused = self.refuses_untrusted(
                lambda trust: read(self.st, port, mode,
                                   logname + "-untrusted", trust), mode)
            return "%s; %s; %s%s" % (login, same, caps, refused)
        self.row(client, proto.upper(), mode, "read", fn)

    def compare(self, msgs, reader, lf):
        """Every message the SMTP rows sent must be among msgs, end with the
        exact bytes sent and equal the copy the other readers got. With lf,
        the client stores messages with LF line ends (fetchmail's mda,
        NeoMutt's pipe): compared after CRLF -> LF."""
        got = C.by_token(msgs)
        if not self.sent:
            raise C.CheckFailed("no message was sent (every SMTP row failed)")

        def norm(b):
            return b.replace(b"\r\n", b"\n") if lf else b
        missing = [tok for tok in self.sent if tok not in got]
        if missing:
            raise C.CheckFailed("%d of %d messages not read: %s (read %d)"
                                % (len(missing), len(self.sent), missing,
                                   len(msgs)))
        refs_from = set()
        for tok, (sent, sender) in self.sent.items():
            data = got[tok]
            if sent is not None and not data.endswith(norm(sent)):
                raise C.CheckFailed(
                    "the message sent by %s does not end with the bytes sent "
                    "(%s)" % (sender, _first_diff_tail(data, norm(sent))))
            if sent is None and tok.encode() not in data:
                raise C.CheckFailed("the message sent by %s lost its body"
                                    % sender)
            ref = self.refs.get(tok)
            if ref is None:
                if not lf:
                    self.refs[tok] = (data, reader)
                continue
            if data != norm(ref[0]):
                raise C.CheckFailed(
                    "the message sent by %s differs from the copy %s read "
                    "(%s)" % (sender, ref[1], _first_diff(data, norm(ref[0]))))
            refs_from.add(ref[1])
        what = "%d messages read back" % len(self.sent)
        if lf:
            what += " (LF line ends)"
        what += ", the sent bytes intact"
        if refs_from:
            what += ", identical to %s" % ", ".join(sorted(refs_from))
        return what

    def big_row(self, client, mode):
        port = self.st.port("imap", mode)
        token = "big-%s-%s-%d" % (client, mode, os.getpid())
        logname = "%s-big-%s" % (client, mode)

        def fn(mark):
            import hashlib
            msg = C.make_big_message(token, BIG_SIZE)
            want = hashlib.sha256(msg).hexdigest()
            if client == "curl":
                t0 = time.monotonic()
                t, data = C.curl_imap_append_fetch(self.st, port, "Big", msg,
                                                   logname)
                timing = "%.1f s in all" % (time.monotonic() - t0)
                logins = 3
            else:
                t, data, up, down = C.imaplib_append_fetch(port, "Big", msg)
                timing = "APPEND %.1f s, FETCH %.1f s" % (up, down)
                logins = 1
            t.dump(self.st.path("clients", logname + ".transcript"))
            got = hashlib.sha256(data).hexdigest()
            if got != want:
                raise C.CheckFailed("sha256 %s of %d bytes fetched != %s of %d "
                                    "bytes appended" % (got[:16], len(data),
                                                        want[:16], len(msg)))
            caps = C.check_capabilities("imap", t)
            login = self.logins(mark, "imap", mode, want=logins)
            return "%s; %.1f MiB, sha256 %s... equal (%s); %s" % (
                login, len(msg) / 1048576, want[:12], timing, caps)
        self.row(client, "IMAP", mode, "25 MiB APPEND+FETCH", fn)


class IdleCheck(threading.Thread):
    """IMAP IDLE through mailtlsd with Python's imaplib: IDLE in the folder
    idle-MODE, nothing for idle_seconds, then a message to
    interop+idle-MODE@ (Dovecot files it in that folder) sent through the
    SMTP service of the same mode; the idling session must see EXISTS."""

    def __init__(self, suite, mode):
        super().__init__(daemon=True, name="idle-" + mode)
        self.suite = suite
        self.mode = mode
        self.idling = threading.Event()
        self.ok = False
        self.detail = "not run"
        self.elapsed = 0.0
        self.mark = None

    def run(self):
        t0 = time.monotonic()
        try:
            self.detail = self.check()
            self.ok = True
        except Exception as e:
            self.detail = "%s%s" % ("" if isinstance(e, C.CheckFailed) else
                                    type(e).__name__ + ": ", e)
        finally:
            self.elapsed = time.monotonic() - t0
            self.idling.set()

    def check(self):
        st, mode = self.suite.st, self.mode
        folder = "idle-" + mode
        t = C.Transcript()
        self.mark = LogMark(st)
        m = C.RecIMAP(S.CLIENT_ADDR, st.port("imap", mode), t)
        self.suite.open_sessions.append(m)
        m.capability()
        m.login(S.USER, S.PASSWORD)
        # now, while no other row logs in yet
        login = self.suite.logins(self.mark, "imap", mode)
        typ, _ = m.select(folder)
        if typ != "OK":
            raise C.CheckFailed("SELECT %s: %s" % (folder, typ))
        m.send(b"I1 IDLE\r\n")
        line = m.readline()
        t.server(line)
        if not line.startswith(b"+"):
            raise C.CheckFailed("IDLE refused: %r" % line)
        self.idling.set()
        start = time.monotonic()
        keepalives = 0
        while True:
            left = start + self.suite.idle_seconds - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([m.sock], [], [], left)
            if not r:
                continue
            line = m.readline()
            t.server(line)
            if not line:
                raise C.CheckFailed("the session was closed after %.0f s of "
                                    "IDLE" % (time.monotonic() - start))
            if line.startswith(b"* OK"):
                keepalives += 1
                continue
            raise C.CheckFailed("unexpected during IDLE after %.0f s: %r"
                                % (time.monotonic() - start, line))
        token = "idle-%s-%d" % (mode, os.getpid())
        msg = C.make_message(token, "IDLE notification %s" % mode)
        rcpt = "%s+%s@%s" % (S.USER, folder, S.MAIL_DOMAIN)
        with self.suite.lock:
            idled = time.monotonic() - start
            C.smtplib_send(st.port("smtp", mode), msg, rcpt=rcpt)
            sent_at = time.monotonic()
        deadline = sent_at + 30
        exists = None
        while exists is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise C.CheckFailed("no EXISTS within 30 s of the message "
                                    "being sent, after %.0f s of IDLE"
                                    % idled)
            r, _, _ = select.select([m.sock], [], [], left)
            if not r:
                continue
            line = m.readline()
            t.server(line)
            if not line:
                raise C.CheckFailed("the session was closed while waiting "
                                    "for EXISTS")
            mm = re.match(rb"^\* (\d+) EXISTS", line)
            if mm:
                exists = (int(mm.group(1)), time.monotonic() - sent_at)
        m.send(b"DONE\r\n")
        t.client(b"DONE")
        while True:
            line = m.readline()
            t.server(line)
            if not line:
                raise C.CheckFailed("the session was closed after DONE")
            if line.startswith(b"I1 "):
                if not line.startswith(b"I1 OK"):
                    raise C.CheckFailed("IDLE ended with %r" % line)
                break
        m.logout()
        self.suite.open_sessions.remove(m)
        t.dump(st.path("clients", "python-imaplib-idle-%s.transcript" % mode))
        caps = C.check_capabilities("imap", t)
        return ("%s; IDLE %.0f s%s, then * %d EXISTS %.1f s after the "
                "message was sent; %s" % (
                    login, idled, " (%d keepalive(s))" % keepalives
                    if keepalives else "", exists[0], exists[1], caps))


def _first_diff(a, b):
    n = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]),
             min(len(a), len(b)))
    return "%d vs %d bytes, first difference at %d: %r vs %r" % (
        len(a), len(b), n, a[max(0, n - 20):n + 20], b[max(0, n - 20):n + 20])


def _first_diff_tail(data, sent):
    i = len(data) - 1
    j = len(sent) - 1
    while i >= 0 and j >= 0 and data[i] == sent[j]:
        i -= 1
        j -= 1
    return "%d bytes read, %d sent; they differ %d bytes before the end: " \
        "%r vs %r" % (len(data), len(sent), len(sent) - j - 1,
                      data[max(0, i - 20):i + 20], sent[max(0, j - 20):j + 20])


def run_clients(mailtlsd, port_base, mail_user, idle_seconds, extra, args):
    """The mail clients through mailtlsd in front of Dovecot and Postfix:
    (the suite with its counts, whether a signal ended it)."""
    aborted = False
    st = S.Stack(mailtlsd, port_base, mail_user, keep=args.keep,
                 extra_global=extra)
    suite = Suite(st, idle_seconds, args.verbose)
    idlers = []
    try:
        try:
            st.start()
            st.doveadm("mailbox", "create", "-u", S.USER, "Big",
                       "idle-implicit", "idle-starttls")
        except S.StackError as e:
            suite.report(False, "setup", "-", "-", "servers", str(e), 0)
            raise Aborted("setup failed")
        print("servers up in %s (Dovecot and Postfix on %s, mailtlsd on %s)"
              % (st.rundir, S.SERVER_ADDR, S.CLIENT_ADDR), flush=True)

        for mode in MODES:
            idler = IdleCheck(suite, mode)
            idler.start()
            idlers.append(idler)
        for idler in idlers:
            idler.idling.wait(60)

        for client in ("curl", "python-smtplib", "swaks", "neomutt"):
            for mode in MODES:
                suite.smtp_row(client, mode)
        for client in ("msmtp", "nodemailer"):
            for mode in ALL_MODES:
                suite.client_send_row(client, mode)
        for proto, readers in (
                ("imap", ("python-imaplib", "curl", "fetchmail", "neomutt")),
                ("pop3", ("python-poplib", "curl", "fetchmail", "neomutt"))):
            for client in readers:
                for mode in MODES:
                    suite.read_row(client, proto, mode)
        for client, proto in (("mbsync", "imap"), ("imapflow", "imap"),
                              ("mpop", "pop3")):
            for mode in ALL_MODES:
                suite.client_read_row(client, proto, mode)
        for client in ("python-imaplib", "curl"):
            for mode in MODES:
                suite.big_row(client, mode)

        for idler in idlers:
            idler.join(idle_seconds + 120)
            suite.report(idler.ok, "python-imaplib", "IMAP", idler.mode,
                         "IDLE", idler.detail if not idler.is_alive() else
                         "still running", idler.elapsed)
    except Aborted as e:
        print("aborted: %s" % e, flush=True)
        suite.failed += 0 if suite.failed else 1
        # a signal ends the whole run; the OAuth2 part has its own servers
        aborted = str(e) != "setup failed"
    finally:
        for m in list(suite.open_sessions):
            try:
                m.shutdown()
            except Exception:
                pass
        st.stop()
        if st.mailtlsd_proc is not None:
            log = S.tail(st.mailtlsd_log, 100000)
            bad = [ln for ln in log.splitlines() if "cannot reach" in ln
                   or "AddressSanitizer" in ln or "runtime error:" in ln]
            problems = st.teardown_problems + bad[:10]
            suite.report(not problems, "mailtlsd", "-", "-", "daemon",
                         "; ".join(problems) if problems else
                         "exit 0 on SIGTERM, every session reached its "
                         "server securely", 0)
        if suite.failed and st.rundir:
            for name, path in (("mailtlsd", st.mailtlsd_log),
                               ("Dovecot", st.dovecot_log),
                               ("Postfix", st.postfix_log)):
                if path:
                    print("--- last lines of the %s log (%s)" % (name, path))
                    print(S.tail(path, 25))
            if args.keep:
                print("kept %s (transcripts in clients/)" % st.rundir)
            else:
                print("(INTEROP_KEEP=1 or --keep keeps the run directory "
                      "with every transcript)")
        st.remove()
    return suite, aborted


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", action="store_true",
                    default=os.environ.get("INTEROP_KEEP") == "1",
                    help="keep the run directory (logs, transcripts)")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--part", choices=("all", "clients", "oauth2"),
                    default=os.environ.get("INTEROP_PART", "all"),
                    help="the mail clients, the OAuth2 part, or both")
    args = ap.parse_args()
    mailtlsd = os.path.abspath(os.environ.get(
        "MAILTLSD", os.path.join(ROOT, "build", "mailtlsd")))
    idle_seconds = float(os.environ.get("INTEROP_IDLE_SECONDS", "60"))
    port_base = int(os.environ.get("INTEROP_PORT_BASE", "19100"))
    mail_user = os.environ.get("INTEROP_MAIL_USER", "mailtlsd-interop")

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _abort)
    started = time.monotonic()
    print("mailtlsd interop suite: %s" % mailtlsd)
    for name, ver in C.versions():
        print("  %-10s %s" % (name, ver))
    print("  IMAP IDLE must survive %g s (INTEROP_IDLE_SECONDS)"
          % idle_seconds, flush=True)

    extra = [kv.strip() for kv in
             os.environ.get("INTEROP_MAILTLSD_GLOBAL", "").split(";")
             if kv.strip()]
    for kv in extra:
        print("  mailtlsd [global] %s (INTEROP_MAILTLSD_GLOBAL)" % kv)
    passed = failed = 0
    aborted = False
    if args.part in ("all", "clients"):
        suite, aborted = run_clients(mailtlsd, port_base, mail_user,
                                     idle_seconds, extra, args)
        passed, failed = suite.passed, suite.failed
    if args.part in ("all", "oauth2") and not aborted:
        rep = O2.Reporter()
        try:
            O2.run_part(mailtlsd, port_base, mail_user, rep, args.keep,
                        args.verbose, extra)
        except Aborted as e:
            print("aborted: %s" % e, flush=True)
            rep.failed += 1
        passed += rep.passed
        failed += rep.failed
    print("interop: %.0f s" % (time.monotonic() - started))
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
