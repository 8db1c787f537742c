"""The mail clients of the interop suite, and what each one saw.

Every client talks plaintext to mailtlsd on 127.0.0.1. Each function here
drives one client for one service and returns what the checks need: a
Transcript of the protocol lines (server to client '<', client to server
'>') as the client itself reports them (curl -v, swaks, fetchmail -v -v,
NeoMutt's debug log, or recording subclasses of Python's imaplib, poplib and
smtplib), and the messages it read, by token.
"""

import email.utils
import hashlib
import imaplib
import os
import poplib
import pty
import re
import select
import signal
import smtplib
import struct
import subprocess
import sys
import time

from stack import ADDRESS, CLIENT_ADDR, MAIL_DOMAIN, PASSWORD, USER

HERE = os.path.dirname(os.path.abspath(__file__))
MDA = os.path.join(HERE, "mda.sh")
TIMEOUT = 90                      # any one client run
TOKEN_RE = re.compile(rb"^X-Interop-Token: (\S+)\r?$", re.M | re.I)


class CheckFailed(Exception):
    pass


# -- transcripts ------------------------------------------------------------

class Transcript:
    """Protocol lines in order: ('<', line) from the server (through
    mailtlsd), ('>', line) from the client."""

    def __init__(self):
        self.lines = []

    def server(self, line):
        self.lines.append(("<", _text(line)))

    def client(self, line):
        self.lines.append((">", _text(line)))

    def extend(self, other):
        self.lines.extend(other.lines)

    def dump(self, path):
        with open(path, "w") as f:
            for d, line in self.lines:
                f.write("%s %s\n" % (d, line))


def _text(line):
    if isinstance(line, bytes):
        line = line.decode("latin-1")
    return line.rstrip("\r\n")


def parse_curl(stderr):
    t = Transcript()
    for line in stderr.splitlines():
        if line.startswith("< "):
            t.server(line[2:])
        elif line.startswith("> "):
            t.client(line[2:])
    return t


def parse_swaks(out):
    t = Transcript()
    for line in out.splitlines():
        m = re.match(r"^(<-|<~|<\*\*) ?(.*)$", line)
        if m:
            t.server(m.group(2).lstrip())
            continue
        m = re.match(r"^ (->|~>|\*\*) ?(.*)$", line)
        if m:
            t.client(m.group(2).lstrip())
    return t


def parse_fetchmail(out):
    t = Transcript()
    for line in out.splitlines():
        m = re.match(r"^fetchmail: (?:IMAP|POP3)([<>]) (.*)$", line)
        if m:
            (t.server if m.group(1) == "<" else t.client)(m.group(2))
    return t


def parse_neomutt(log):
    t = Transcript()
    for line in log.splitlines():
        m = re.search(r"mutt_socket_\w*(?:readln|write)_d\(\) \d+([<>]) (.*)$",
                      line)
        if m:
            (t.server if m.group(1) == "<" else t.client)(m.group(2))
    return t


# -- what the checks look at --------------------------------------------------

FORBIDDEN = re.compile(r"(?<![A-Z0-9=_-])(STARTTLS|STLS|LOGINDISABLED)"
                       r"(?![A-Z0-9_-])", re.I)


def capability_lines(proto, t):
    """The lines in which the server told the client its capabilities:
    IMAP CAPABILITY responses and [CAPABILITY] codes, the POP3 CAPA
    response, the SMTP EHLO reply."""
    out = []
    if proto == "imap":
        return [ln for d, ln in t.lines if d == "<" and
                re.search(r"\bCAPABILITY\b", ln, re.I)]
    collecting = False
    for d, ln in t.lines:
        if d == ">":
            word = ln.split(" ", 1)[0].upper()
            collecting = (word == "CAPA" if proto == "pop3" else
                          word in ("EHLO", "LHLO"))
            continue
        if not collecting:
            continue
        if proto == "pop3":
            if ln == "." or ln.startswith("-ERR"):
                collecting = False
            elif not ln.startswith("+OK"):
                out.append(ln)
        else:
            if ln.startswith("250"):
                out.append(ln[4:])
                if ln.startswith("250 "):
                    collecting = False
            else:
                collecting = False
    return out


def check_capabilities(proto, t):
    """The checks every client row makes on what the client saw; returns a
    short description."""
    caps = capability_lines(proto, t)
    if not caps:
        raise CheckFailed("the client saw no capability list")
    bad = sorted({m.group(1).upper() for ln in caps
                  for m in FORBIDDEN.finditer(ln)})
    if bad:
        raise CheckFailed("the capabilities the client saw contain %s: %s"
                          % ("/".join(bad),
                             [ln for ln in caps if FORBIDDEN.search(ln)]))
    blob = " ".join(caps).upper()
    if proto == "imap":
        need = "AUTH=PLAIN" in blob
    elif proto == "pop3":
        need = ("USER" in caps or "USER" in blob.split()) and \
            re.search(r"\bSASL\b.*\bPLAIN\b", blob)
    else:
        need = re.search(r"\bAUTH\b.*\bPLAIN\b", blob)
    if not need:
        raise CheckFailed("the capabilities lack the post-TLS login "
                          "mechanisms (AUTH=PLAIN / USER, SASL PLAIN / "
                          "AUTH PLAIN): %s" % caps)
    asked = [ln for d, ln in t.lines if d == ">" and
             re.match(r"^(\S+ )?(STARTTLS|STLS)\b", ln, re.I)]
    if asked:
        raise CheckFailed("the client sent %s" % asked)
    return "no STARTTLS/STLS/LOGINDISABLED in %d capability line(s)" % len(
        caps)


# -- messages -----------------------------------------------------------------

def make_message(token, subject):
    """A small test message, CRLF line ends, with lines that need SMTP
    dot-stuffing and POP3 un-stuffing."""
    lines = [
        "From: Interop Sender <%s>" % ADDRESS,
        "To: Interop Recipient <%s>" % ADDRESS,
        "Subject: %s" % subject,
        "Date: %s" % email.utils.formatdate(localtime=False),
        "Message-ID: <%s@%s>" % (token, MAIL_DOMAIN),
        "X-Interop-Token: %s" % token,
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Transfer-Encoding: 7bit",
        "",
        "Token %s." % token,
        ".A line that starts with a dot",
        "..and one that starts with two",
        ".",
        "The line above is a single dot; this one ends in spaces   ",
        "Tab\there, and a very long line follows.",
        "x" * 900,
        "",
    ]
    h = hashlib.sha256(token.encode()).hexdigest()
    for i in range(120):
        lines.append("%03d %s" % (i, (h * 4)[: (i * 7) % 200]))
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def make_big_message(token, size):
    """About `size` bytes: headers and base64-looking lines of 76
    characters, deterministic from the token."""
    head = ("From: %s\r\nTo: %s\r\nSubject: big %s\r\nDate: %s\r\n"
            "Message-ID: <%s@%s>\r\nX-Interop-Token: %s\r\nMIME-Version: 1.0\r\n"
            "Content-Type: application/octet-stream\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n"
            % (ADDRESS, ADDRESS, token, email.utils.formatdate(),
               token, MAIL_DOMAIN, token)).encode()
    import base64
    block = base64.b64encode(hashlib.sha512(token.encode()).digest() * 64)
    # 76-character lines from a rotating block
    line_count = (size - len(head)) // 78
    out = [head]
    blen = len(block)
    for i in range(line_count):
        s = (i * 13) % (blen - 76)
        out.append(block[s:s + 76] + b"\r\n")
    return b"".join(out)


def token_of(msg):
    m = TOKEN_RE.search(msg)
    return m.group(1).decode() if m else None


def by_token(messages):
    out = {}
    for msg in messages:
        tok = token_of(msg)
        if tok:
            out[tok] = msg
    return out


# -- running programs ---------------------------------------------------------

def client_env(st):
    env = {k: v for k, v in os.environ.items()
           if not k.lower().endswith("_proxy")}
    env.update(HOME=st.path("home"), LC_ALL="C.UTF-8", LANG="C.UTF-8")
    return env


def run_program(cmd, st, logname, timeout=TIMEOUT, stdin_data=None,
                env=None):
    """Runs a client program in its own process group; returns (rc, stdout,
    stderr) as text, both also kept in clients/<logname>.out/.err."""
    base = st.path("clients", logname)
    with open(base + ".out", "wb") as out, open(base + ".err", "wb") as err:
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin_data
                             is not None else subprocess.DEVNULL,
                             stdout=out, stderr=err, env=env or client_env(st),
                             start_new_session=True)
        try:
            p.communicate(stdin_data, timeout=timeout)
        except subprocess.TimeoutExpired:
            _killpg(p)
            raise CheckFailed("%s did not finish within %d s (see %s.*)"
                              % (cmd[0], timeout, base))
    with open(base + ".out", "rb") as f:
        o = f.read().decode("utf-8", "replace")
    with open(base + ".err", "rb") as f:
        e = f.read().decode("utf-8", "replace")
    return p.returncode, o, e


def _killpg(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass
    p.wait()


def run_in_pty(cmd, st, logname, timeout=TIMEOUT):
    """Runs a full-screen program (NeoMutt) on a pseudo-terminal of 120x40,
    the way a person would in a terminal; returns its exit status. The
    screen output is kept in clients/<logname>.screen."""
    import fcntl
    import termios
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = client_env(st)
    env["TERM"] = "vt100"
    p = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave,
                         env=env, start_new_session=True)
    os.close(slave)
    screen = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                _killpg(p)
                raise CheckFailed("%s did not finish within %d s (screen in "
                                  "clients/%s.screen)" % (cmd[0], timeout,
                                                          logname))
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                screen.append(data)
            elif p.poll() is not None:
                break
        return p.wait()
    finally:
        os.close(master)
        with open(st.path("clients", logname + ".screen"), "wb") as f:
            f.write(b"".join(screen))


def read_dir(d):
    out = []
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            out.append(f.read())
    return out


def fresh_dir(st, name):
    d = st.path("clients", name)
    os.makedirs(d)
    return d


# -- curl -----------------------------------------------------------------------

def curl_base(st):
    return ["curl", "-sS", "-v", "--noproxy", "*", "--max-time", "60",
            "--user", "%s:%s" % (USER, PASSWORD)]


def curl_smtp_send(st, port, msg, logname):
    f = st.path("clients", logname + ".eml")
    with open(f, "wb") as fh:
        fh.write(msg)
    rc, out, err = run_program(
        curl_base(st) + ["smtp://%s:%d" % (CLIENT_ADDR, port),
                         "--mail-from", ADDRESS, "--mail-rcpt", ADDRESS,
                         "--upload-file", f], st, logname)
    if rc != 0:
        raise CheckFailed("curl exited %d: %s" % (rc, err.strip()[-400:]))
    return parse_curl(err)


def curl_imap_read(st, port, logname, mailbox="INBOX"):
    url = "imap://%s:%d/%s" % (CLIENT_ADDR, port, mailbox)
    rc, out, err = run_program(curl_base(st) + [url, "-X", "UID SEARCH ALL"],
                               st, logname + "-search")
    if rc != 0:
        raise CheckFailed("curl (UID SEARCH) exited %d: %s"
                          % (rc, err.strip()[-400:]))
    t = parse_curl(err)
    m = re.search(r"^\* SEARCH([ 0-9]*)\r?$", out, re.M)
    if not m:
        raise CheckFailed("curl: no SEARCH response in %r" % out[:200])
    uids = m.group(1).split()
    d = fresh_dir(st, logname)
    if uids:
        # one curl, one connection, every message
        args = []
        for uid in uids:
            args += ["%s/;UID=%s" % (url, uid),
                     "-o", os.path.join(d, "uid-%06d" % int(uid))]
        rc, out, err = run_program(curl_base(st) + args, st, logname)
        if rc != 0:
            raise CheckFailed("curl (FETCH) exited %d: %s"
                              % (rc, err.strip()[-400:]))
        t.extend(parse_curl(err))
    return t, read_dir(d)


def curl_pop3_read(st, port, logname):
    url = "pop3://%s:%d/" % (CLIENT_ADDR, port)
    rc, out, err = run_program(curl_base(st) + [url], st, logname + "-list")
    if rc != 0:
        raise CheckFailed("curl (LIST) exited %d: %s"
                          % (rc, err.strip()[-400:]))
    t = parse_curl(err)
    nums = [ln.split()[0] for ln in out.splitlines() if ln.strip()]
    d = fresh_dir(st, logname)
    if nums:
        args = []
        for n in nums:
            args += [url + n, "-o", os.path.join(d, "msg-%06d" % int(n))]
        rc, out, err = run_program(curl_base(st) + args, st, logname)
        if rc != 0:
            raise CheckFailed("curl (RETR) exited %d: %s"
                              % (rc, err.strip()[-400:]))
        t.extend(parse_curl(err))
    return t, read_dir(d)


def curl_imap_append_fetch(st, port, mailbox, msg, logname):
    """APPEND msg to mailbox with curl -T, find it by its token, fetch it
    back with curl; returns (transcript, fetched bytes)."""
    f = st.path("clients", logname + ".eml")
    with open(f, "wb") as fh:
        fh.write(msg)
    url = "imap://%s:%d/%s" % (CLIENT_ADDR, port, mailbox)
    rc, out, err = run_program(curl_base(st) + ["-T", f, url], st,
                               logname + "-append", timeout=180)
    if rc != 0:
        raise CheckFailed("curl (APPEND) exited %d: %s"
                          % (rc, err.strip()[-400:]))
    t = parse_curl(err)
    tok = token_of(msg)
    rc, out, err = run_program(
        curl_base(st) + [url, "-X", "UID SEARCH HEADER X-Interop-Token %s"
                         % tok], st, logname + "-search")
    if rc != 0:
        raise CheckFailed("curl (UID SEARCH) exited %d: %s"
                          % (rc, err.strip()[-400:]))
    t.extend(parse_curl(err))
    m = re.search(r"^\* SEARCH ([0-9]+)\r?$", out, re.M)
    if not m:
        raise CheckFailed("curl: the appended message is not found: %r"
                          % out[:200])
    dest = st.path("clients", logname + ".fetched")
    rc, out, err = run_program(
        curl_base(st) + ["%s/;UID=%s" % (url, m.group(1)), "-o", dest], st,
        logname + "-fetch", timeout=180)
    if rc != 0:
        raise CheckFailed("curl (FETCH) exited %d: %s"
                          % (rc, err.strip()[-400:]))
    t.extend(parse_curl(err))
    with open(dest, "rb") as fh:
        data = fh.read()
    os.unlink(dest)
    os.unlink(f)
    return t, data


# -- swaks --------------------------------------------------------------------

def swaks_send(st, port, msg, logname):
    # swaks sends --data as the DATA content and ends it with CRLF.CRLF of
    # its own unless the content already ends with a line holding a single
    # dot, which it then takes as the end: hand it the message with that
    # line, so that exactly the message is sent.
    f = st.path("clients", logname + ".eml")
    with open(f, "wb") as fh:
        fh.write(msg + b".\r\n")
    rc, out, err = run_program(
        ["swaks", "--server", CLIENT_ADDR, "--port", str(port),
         "--auth", "--auth-user", USER, "--auth-password", PASSWORD,
         "--from", ADDRESS, "--to", ADDRESS, "--data", "@" + f,
         "--timeout", "60"], st, logname)
    if rc != 0:
        raise CheckFailed("swaks exited %d: %s" % (rc, (out + err)[-600:]))
    return parse_swaks(out + "\n" + err)


# -- fetchmail --------------------------------------------------------------

def fetchmail_read(st, proto, port, logname):
    d = fresh_dir(st, logname)
    home = fresh_dir(st, logname + ".home")
    rc_path = os.path.join(home, "fetchmailrc")
    st.vars.update(PORT=str(port), PROTOCOL=proto.upper(),
                   PASSWORD=PASSWORD, MDA="%s %s" % (MDA, d))
    st.render("fetchmailrc.in", rc_path, mode=0o600)
    env = client_env(st)
    env["FETCHMAILHOME"] = home
    rc, out, err = run_program(
        ["fetchmail", "-f", rc_path, "-v", "-v", "--nodetach",
         "--invisible"], st, logname, env=env)
    # 0: mail fetched; 1: no mail
    if rc not in (0, 1):
        raise CheckFailed("fetchmail exited %d: %s" % (rc, (out + err)[-600:]))
    return parse_fetchmail(out + "\n" + err), read_dir(d)


# -- NeoMutt --------------------------------------------------------------------

def neomutt_muttrc(st):
    path = st.path("clients", "muttrc")
    if not os.path.exists(path):
        # An interactive NeoMutt asks whether to create a missing $folder,
        # and would take the pushed keys as the answer.
        os.makedirs(st.path("home", "Mail"), mode=0o700, exist_ok=True)
        st.vars.update(PASSWORD=PASSWORD, HOME=st.path("home"))
        st.render("muttrc.in", path, mode=0o600)
    return path


def neomutt_read(st, url, logname):
    """Opens the mailbox in NeoMutt on a terminal, tags every message and
    pipes each one, raw, to the mda; then quits."""
    d = fresh_dir(st, logname)
    log = st.path("clients", logname + ".debug")
    push = ('push "<tag-pattern>~A<enter><tag-prefix><pipe-message>%s %s'
            '<enter><quit>"' % (MDA, d))
    rc = run_in_pty(["neomutt", "-n", "-F", neomutt_muttrc(st), "-d", "5",
                     "-l", log, "-f", url, "-e", push], st, logname)
    if rc != 0:
        raise CheckFailed("neomutt exited %d (screen in clients/%s.screen)"
                          % (rc, logname))
    return parse_neomutt(_read_log(log)), read_dir(d)


def neomutt_send(st, port, token, body, logname):
    """NeoMutt in batch mode (no terminal): neomutt -s ... ADDRESS < body."""
    log = st.path("clients", logname + ".debug")
    rc, out, err = run_program(
        ["neomutt", "-n", "-F", neomutt_muttrc(st), "-d", "5", "-l", log,
         "-e", "set smtp_url=smtp://%s@%s:%d/" % (USER, CLIENT_ADDR, port),
         "-e", "my_hdr X-Interop-Token: %s" % token,
         "-s", "neomutt %s" % token, "--", ADDRESS], st, logname,
        stdin_data=body)
    if rc != 0:
        raise CheckFailed("neomutt exited %d: %s" % (rc, (out + err)[-600:]))
    return parse_neomutt(_read_log(log))


def _read_log(path):
    # NeoMutt appends a digit to the -l name (log rotation)
    text = ""
    for cand in (path + "0", path):
        if os.path.exists(cand):
            with open(cand, "rb") as f:
                text += f.read().decode("latin-1")
    return text


# -- msmtp, mpop, mbsync (isync) -------------------------------------------------
#
# Each gets a configuration file of the kind docs/clients.md shows, by mode:
# plain (toward mailtlsd; "implicit" and "starttls" name the server side),
# local-starttls and local-implicit (the local_tls services, with the
# certificate mailtlsd generated as the only trusted one). trust=False leaves
# the trust setting out: the client must then refuse mailtlsd's certificate.

def _write_rc(st, name, text):
    path = st.path("clients", name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def _gnutls_tls(st, mode, trust):
    """The TLS lines of msmtp and mpop (both GnuTLS, same keywords)."""
    if mode not in ("local-starttls", "local-implicit"):
        return "tls off\n"
    text = "tls on\ntls_starttls %s\n" % (
        "on" if mode == "local-starttls" else "off")
    if trust:
        text += "tls_trust_file %s\n" % st.local_cert
    return text


def parse_msmtp(out):
    """msmtp --debug and mpop --debug: '<-- ' from the server, '--> ' to
    it."""
    t = Transcript()
    for line in out.splitlines():
        if line.startswith("<-- "):
            t.server(line[4:])
        elif line.startswith("--> "):
            t.client(line[4:])
    return t


def msmtp_send(st, port, mode, msg, logname, trust=True):
    rc_path = _write_rc(st, logname + ".msmtprc", (
        "defaults\n" + _gnutls_tls(st, mode, trust) +
        "account default\nhost %s\nport %d\nfrom %s\n"
        "auth %s\nuser %s\npassword %s\n" % (
            CLIENT_ADDR, port, ADDRESS,
            "plain" if mode in ("implicit", "starttls") else "on",
            USER, PASSWORD)))
    rc, out, err = run_program(["msmtp", "--debug", "-C", rc_path, "-f",
                                ADDRESS, "--", ADDRESS], st, logname,
                               stdin_data=msg)
    return rc, out + "\n" + err, parse_msmtp(out + "\n" + err)


def mpop_read(st, port, mode, logname, trust=True):
    d = fresh_dir(st, logname)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(d, sub))
    rc_path = _write_rc(st, logname + ".mpoprc", (
        "defaults\n" + _gnutls_tls(st, mode, trust) +
        "account default\nhost %s\nport %d\nauth %s\nuser %s\n"
        "password %s\nkeep on\nonly_new off\nreceived_header off\n"
        "uidls_file %s\ndelivery maildir %s\n" % (
            CLIENT_ADDR, port,
            "user" if mode in ("implicit", "starttls") else "on",
            USER, PASSWORD, st.path("clients", logname + ".uidls"), d)))
    rc, out, err = run_program(["mpop", "--debug", "-C", rc_path], st,
                               logname)
    msgs = read_dir(os.path.join(d, "new")) if rc == 0 else []
    return rc, out + "\n" + err, parse_msmtp(out + "\n" + err), msgs


def parse_mbsync(out):
    """mbsync -Dn: '>>> ' before what it sends; the server's lines as they
    are (untagged '* ', tagged 'N OK|NO|BAD', '+')."""
    t = Transcript()
    for line in out.splitlines():
        if line.startswith(">>> "):
            t.client(line[4:])
        elif re.match(r"^(\* |\d+ (OK|NO|BAD)\b|\+ )", line):
            t.server(line)
    return t


def mbsync_read(st, port, mode, logname, trust=True):
    d = fresh_dir(st, logname)
    ssl = {"local-starttls": "STARTTLS",
           "local-implicit": "IMAPS"}.get(mode, "None")
    cert = ("CertificateFile %s\n" % st.local_cert
            if trust and ssl != "None" else "")
    rc_path = _write_rc(st, logname + ".mbsyncrc", (
        "IMAPAccount interop\nHost %s\nPort %d\nUser %s\nPass %s\n"
        "SSLType %s\n%s\n"
        "IMAPStore remote\nAccount interop\n\n"
        "MaildirStore local\nPath %s/\nInbox %s/INBOX\n\n"
        "Channel inbox\nFar :remote:INBOX\nNear :local:INBOX\n"
        "Create Near\nSync Pull\nSyncState *\n" % (
            CLIENT_ADDR, port, USER, PASSWORD, ssl, cert, d, d)))
    rc, out, err = run_program(["mbsync", "-Dn", "-c", rc_path, "inbox"],
                               st, logname)
    msgs = []
    if rc == 0:
        for sub in ("cur", "new"):
            msgs += read_dir(os.path.join(d, "INBOX", sub))
    # mbsync adds its own header, X-TUID, to the end of the header of every
    # message it stores: the only change it makes
    msgs = [re.sub(rb"^X-TUID: [^\n]*\n(?=.*?^\n)", b"", m, count=1,
                   flags=re.M | re.S) for m in msgs]
    return rc, out + "\n" + err, parse_mbsync(out + "\n" + err), msgs


# -- Node.js: nodemailer and imapflow ----------------------------------------------

NODE_CLIENT = os.path.join(HERE, "node-client.js")


def node_dir():
    root = os.path.dirname(os.path.dirname(HERE))
    return os.environ.get("INTEROP_NODE_DIR",
                          os.path.join(root, "build", "interop-node"))


def parse_node(path):
    t = Transcript()
    try:
        with open(path, "rb") as f:
            for line in f.read().decode("utf-8", "replace").splitlines():
                if line.startswith("< "):
                    t.server(line[2:])
                elif line.startswith("> "):
                    t.client(line[2:])
    except OSError:
        pass
    return t


def node_run(st, args, logname, trust=True):
    mods = os.path.join(node_dir(), "node_modules")
    if not os.path.isdir(mods):
        raise CheckFailed("%s is missing: run tests/interop/setup.sh" % mods)
    tr = st.path("clients", logname + ".node-transcript")
    args = dict(args, user=USER, transcript=tr,
                **{"pass": PASSWORD})
    if trust:
        args["ca"] = st.local_cert
    env = client_env(st)
    env["NODE_PATH"] = mods
    import json
    rc, out, err = run_program(["node", NODE_CLIENT, json.dumps(args)], st,
                               logname, env=env)
    return rc, out + "\n" + err, parse_node(tr)


def nodemailer_send(st, port, mode, msg, logname, trust=True):
    f = st.path("clients", logname + ".eml")
    with open(f, "wb") as fh:
        fh.write(msg)
    return node_run(st, {"op": "send", "port": port, "mode": mode,
                         "from": ADDRESS, "to": ADDRESS, "message": f},
                    logname, trust)


def imapflow_read(st, port, mode, logname, trust=True):
    d = fresh_dir(st, logname)
    rc, out, t = node_run(st, {"op": "read", "port": port, "mode": mode,
                               "outdir": d}, logname, trust)
    return rc, out, t, read_dir(d) if rc == 0 else []


def after_starttls(t):
    """The part of a transcript after the client's STARTTLS (STLS) and the
    answer to it: what the client saw over its TLS to mailtlsd."""
    out = Transcript()
    state = 0
    for d, ln in t.lines:
        if state == 0:
            if d == ">" and re.match(r"^(\S+ )?(STARTTLS|STLS)\s*$", ln, re.I):
                state = 1
            continue
        if state == 1:
            if d == "<" and re.match(r"^(\S+ OK|\+OK|220)", ln, re.I):
                state = 2
            continue
        out.lines.append((d, ln))
    return out


# -- Python's imaplib, poplib, smtplib -------------------------------------------

class RecIMAP(imaplib.IMAP4):
    """imaplib.IMAP4 that records the protocol lines."""

    def __init__(self, host, port, transcript, timeout=60):
        self.transcript = transcript
        super().__init__(host, port, timeout=timeout)

    def _get_line(self):
        line = super()._get_line()
        self.transcript.server(line)
        return line

    def send(self, data):
        if len(data) < 8192:          # commands, not APPEND's big literal
            for ln in data.split(b"\r\n"):
                if ln:
                    self.transcript.client(ln)
        super().send(data)


class RecPOP3(poplib.POP3):
    def __init__(self, host, port, transcript, timeout=60):
        self.transcript = transcript
        super().__init__(host, port, timeout=timeout)

    def _getline(self):
        line, octets = super()._getline()
        self.transcript.server(line)
        return line, octets

    def _putline(self, line):
        self.transcript.client(line)
        super()._putline(line)


class RecSMTP(smtplib.SMTP):
    def __init__(self, host, port, transcript, timeout=60):
        self.transcript = transcript
        super().__init__(host, port, timeout=timeout)

    def getreply(self):
        code, msg = super().getreply()
        lines = msg.split(b"\n") if msg else [b""]
        for i, ln in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            self.transcript.server("%d%s%s" % (code, sep, _text(ln)))
        return code, msg

    def putcmd(self, cmd, args=""):
        self.transcript.client(("%s %s" % (cmd, args)).strip())
        super().putcmd(cmd, args)


def imaplib_login(port, t):
    m = RecIMAP(CLIENT_ADDR, port, t)
    m.capability()
    m.login(USER, PASSWORD)
    return m


def imaplib_read(port, mailbox="INBOX"):
    t = Transcript()
    m = imaplib_login(port, t)
    try:
        typ, _ = m.select(mailbox, readonly=True)
        if typ != "OK":
            raise CheckFailed("SELECT %s: %s" % (mailbox, typ))
        typ, data = m.uid("SEARCH", "ALL")
        msgs = []
        for uid in data[0].split():
            typ, data = m.uid("FETCH", uid, "(BODY.PEEK[])")
            if typ != "OK":
                raise CheckFailed("UID FETCH %s: %s" % (uid, typ))
            msgs.append(data[0][1])
        m.close()
    finally:
        m.logout()
    return t, msgs


def imaplib_append_fetch(port, mailbox, msg):
    t = Transcript()
    m = imaplib_login(port, t)
    try:
        t0 = time.monotonic()
        typ, data = m.append(mailbox, None, None, msg)
        if typ != "OK":
            raise CheckFailed("APPEND: %s %s" % (typ, data))
        t1 = time.monotonic()
        m.select(mailbox, readonly=True)
        typ, data = m.uid("SEARCH", "HEADER", "X-Interop-Token",
                          token_of(msg))
        uids = data[0].split()
        if typ != "OK" or len(uids) != 1:
            raise CheckFailed("the appended message is not found: %s %s"
                              % (typ, data))
        typ, data = m.uid("FETCH", uids[0], "(BODY.PEEK[])")
        if typ != "OK":
            raise CheckFailed("UID FETCH: %s" % typ)
        t2 = time.monotonic()
        m.close()
    finally:
        m.logout()
    return t, data[0][1], t1 - t0, t2 - t1


def poplib_read(port):
    t = Transcript()
    p = RecPOP3(CLIENT_ADDR, port, t)
    try:
        p.capa()
        p.user(USER)
        p.pass_(PASSWORD)
        count, _ = p.stat()
        msgs = []
        for i in range(1, count + 1):
            resp, lines, octets = p.retr(i)
            msgs.append(b"".join(ln + b"\r\n" for ln in lines))
    finally:
        p.quit()
    return t, msgs


def smtplib_send(port, msg, rcpt=ADDRESS, t=None):
    t = t or Transcript()
    s = RecSMTP(CLIENT_ADDR, port, t)
    try:
        s.ehlo("interop-client.%s" % MAIL_DOMAIN)
        s.login(USER, PASSWORD)
        refused = s.sendmail(ADDRESS, [rcpt], msg)
        if refused:
            raise CheckFailed("recipients refused: %s" % refused)
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            pass
    return t


def versions():
    """The versions of the servers and clients, for the report."""
    def first(cmd, pat=None):
        try:
            out = subprocess.run(cmd, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True,
                                 timeout=20).stdout
        except (OSError, subprocess.TimeoutExpired):
            return "not found"
        if pat:
            m = re.search(pat, out, re.M)
            return m.group(1) if m else "?"
        return out.strip().splitlines()[0] if out.strip() else "?"

    def deb(pkg):
        return first(["dpkg-query", "-W", "-f", "${Version}", pkg])

    return [
        ("Dovecot", "%s (dovecot-imapd %s)" % (
            first(["dovecot", "--version"]), deb("dovecot-imapd"))),
        ("Postfix", "%s (postfix %s)" % (
            first(["postconf", "-d", "-h", "mail_version"]), deb("postfix"))),
        ("curl", first(["curl", "--version"], r"^curl (\S+)")),
        ("swaks", first(["swaks", "--version"], r"swaks version (\S+)")),
        ("fetchmail", first(["fetchmail", "-V"],
                            r"fetchmail release ([^+\s]+)")),
        ("NeoMutt", first(["neomutt", "-v"], r"^NeoMutt (\S+)")),
        ("msmtp", "%s (msmtp %s)" % (first(["msmtp", "--version"],
                                           r"^msmtp version (\S+)"),
                                     deb("msmtp"))),
        ("mpop", "%s (mpop %s)" % (first(["mpop", "--version"],
                                         r"^mpop version (\S+)"),
                                   deb("mpop"))),
        ("mbsync", "%s (isync %s)" % (first(["mbsync", "--version"],
                                            r"^isync (\S+)"),
                                      deb("isync"))),
        ("Node.js", "%s, nodemailer %s, imapflow %s, oauth2-mock-server "
         "%s" % (first(["node", "--version"]), _npm_version("nodemailer"),
                 _npm_version("imapflow"),
                 _npm_version("oauth2-mock-server"))),
        ("Python", sys.version.split()[0] +
         " (imaplib, poplib, smtplib)"),
        ("OpenSSL", first(["openssl", "version"], r"^OpenSSL (\S+)")),
    ]


def _npm_version(name):
    import json
    try:
        with open(os.path.join(node_dir(), "node_modules", name,
                               "package.json")) as f:
            return json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        return "not installed"
