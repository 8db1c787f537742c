"""mailtlsd -p NAME | all: the probe's report, verdicts and exit status.

The probe reaches a service's server as a session would and prints a
report ending in "VERDICT name: OK|FAIL - reason".  Good services (implicit
TLS and STARTTLS, each protocol) must give exit 0 and a full report: TLS
version and suite, the chain (subject, issuer, SANs, days left), "verified",
the pin_sha256 line (equal to the certificate's real pin), the capabilities
a client will see (without STARTTLS, STLS, LOGINDISABLED), VERDICT OK.
The servers record every line they receive: the probe sends only the
STARTTLS dialogue, one capability request and LOGOUT/QUIT, and a server
that fails verification gets nothing at all inside TLS.  Each failure class
gives exit 1 and its reason in the VERDICT line.
"""

import re
import subprocess
import time

from daemon import assert_no_sanitizer_report
from harness import case, check
from starttls_server import StarttlsServer

PROTOCOLS = ("imap", "pop3", "smtp")
PER_PROTOCOL = {p: {"protocol": p} for p in PROTOCOLS}
HIDDEN = ("STARTTLS", "STLS", "LOGINDISABLED")
VERDICT_RX = re.compile(r"^VERDICT (\S+): (OK|FAIL) \u2014 (.+)$", re.M)

# Greetings of the implicit-TLS servers: the IMAP one lists capabilities,
# hidden ones included, so the filter's work on the greeting shows.
IMPLICIT_GREETING = {
    "imap": b"* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN LOGINDISABLED "
            b"X-POSTTLS] implicit server ready\r\n",
    "pop3": b"+OK implicit server ready\r\n",
    "smtp": b"220 mail.test ESMTP implicit server ready\r\n",
}

# Everything the probe may send inside TLS, in order.
PROBE_POST_TLS = {
    "imap": [b"P1 CAPABILITY\r\n", b"P2 LOGOUT\r\n"],
    "pop3": [b"CAPA\r\n", b"QUIT\r\n"],
    "smtp": [b"EHLO localhost\r\n", b"QUIT\r\n"],
}

# ... and before TLS (tls = starttls): the session's own dialogue.
PROBE_PRE_TLS = {
    "imap": [b"M1 STARTTLS\r\n"],
    "pop3": [b"STLS\r\n"],
    "smtp": [b"EHLO localhost\r\n", b"STARTTLS\r\n"],
}


# ----------------------------------------------------------------- helpers

def server(t, protocol="imap", mode="implicit", cert="good", **kw):
    """A recording server: implicit TLS or STARTTLS, stopped at teardown."""
    if mode == "implicit":
        kw.setdefault("greeting", IMPLICIT_GREETING[protocol])
    srv = StarttlsServer(protocol, t.tls_context(cert),
                         implicit=mode == "implicit", **kw)
    t.stack.callback(srv.stop)
    return srv


def run_probe(t, services, name, timeout=60):
    """Write a config for services, run mailtlsd -p name: (rc, out, err)."""
    path = "%s/probe-%s.conf" % (t.tmp, name)
    with open(path, "w") as f:
        f.write(t.config(services))
    p = subprocess.run([t.binary, "-c", path, "-p", name],
                       capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    out = p.stdout.decode("utf-8", errors="replace")
    err = p.stderr.decode("utf-8", errors="replace")
    assert_no_sanitizer_report(out + err)
    return p.returncode, out, err


def verdicts(out):
    """{service: (OK|FAIL, text)} from the VERDICT lines."""
    found = VERDICT_RX.findall(out)
    names = [n for n, _, _ in found]
    check(len(names) == len(set(names)), "a service has two verdicts: %s",
          names)
    return {n: (v, text) for n, v, text in found}


def expect_fail(t, svc, reason_rx, out_too=()):
    """-p svc exits 1 with one VERDICT FAIL matching reason_rx."""
    rc, out, err = run_probe(t, [svc], svc.name)
    v = verdicts(out)
    check(rc == 1, "exit %s (want 1); output:\n%s%s", rc, out, err)
    check(list(v) == [svc.name], "verdicts %s, want one for %s:\n%s", v,
          svc.name, out)
    check(v[svc.name][0] == "FAIL", "verdict %s, want FAIL:\n%s",
          v[svc.name], out)
    check(re.search(reason_rx, v[svc.name][1]), "verdict reason %r does "
          "not match /%s/", v[svc.name][1], reason_rx)
    for rx in out_too:
        check(re.search(rx, out, re.M), "no /%s/ in the report:\n%s", rx,
              out)
    return out


def section(out, start_rx, end_rx=r"^\S"):
    """The report's lines after the header matching start_rx, to the next
    header."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if re.search(start_rx, line, re.I):
            body = []
            for l in lines[i + 1:]:
                if re.search(end_rx, l):
                    break
                body.append(l)
            return body
    raise AssertionError("no section /%s/ in the report:\n%s"
                         % (start_rx, out))


def pasted_pin(out):
    m = re.search(r"^  pin_sha256 = (\S+)$", out, re.M)
    check(m, "no 'pin_sha256 = ...' line in the report:\n%s", out)
    return m.group(1)


def expect_good_report(t, out, svc, protocol, mode):
    """Everything a good service's report must say."""
    for rx in (r"^  version:\s+TLSv1\.[23]$",
               r"^  cipher suite:\s+TLS\S+",
               r"^  resumed:\s+no",
               r"^  \[0\] subject:\s+CN=mail\.test$",
               r"^      issuer:\s+CN=mailtlsd test CA$",
               r"^      SANs:\s+DNS:mail\.test$",
               r"^Verification: verified"):
        check(re.search(rx, out, re.M), "no /%s/ in the report:\n%s", rx,
              out)
    m = re.search(r"^      not after:\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC "
                  r"\((\d+) days left\)$", out, re.M)
    check(m and 800 <= int(m.group(1)) <= 825, "no not-after line with "
          "~825 days left:\n%s", out)
    check(pasted_pin(out) == t.certs.pin_good, "pin %s, want %s",
          pasted_pin(out), t.certs.pin_good)
    caps = [l for l in section(out, r"capabilities a mail client will see")
            if l.startswith("  < ")]
    check(caps, "no capability lines in the report:\n%s", out)
    text = "\n".join(caps)
    check("X-POSTTLS" in text, "the capabilities after TLS are missing:\n%s",
          text)
    for word in HIDDEN:
        check(not re.search(r"\b%s\b" % word, text), "a client would see "
              "%s:\n%s", word, text)
    if mode == "implicit" and protocol == "imap":
        check(caps[0].startswith("  < * OK [CAPABILITY IMAP4rev1 "
                                 "AUTH=PLAIN X-POSTTLS]"),
              "greeting not shown filtered: %r", caps[0])
    v = verdicts(out)
    check(v.get(svc.name) == ("OK", "clients will reach 127.0.0.1:%d "
                              "securely" % svc.opts_port),
          "verdict %s:\n%s", v, out)


def expect_only_probe_lines(srv, protocol, mode):
    """The server received the dialogue, CAPA/EHLO and LOGOUT/QUIT only."""
    rec = srv.conn(0).wait_done(10)
    check(rec.pre == (PROBE_PRE_TLS[protocol] if mode == "starttls" else []),
          "before TLS the server received %r", rec.pre)
    check(not rec.after_go_ahead, "bytes outside TLS after the go-ahead: %r",
          bytes(rec.after_go_ahead))
    check(rec.post == PROBE_POST_TLS[protocol], "inside TLS the server "
          "received %r, want %r", rec.post, PROBE_POST_TLS[protocol])
    check(rec.logged_in_as is None, "the probe logged in")
    if mode == "implicit":
        check(bytes(rec.raw[:1]) == b"\x16", "the first bytes were not a "
              "TLS handshake record: %r", bytes(rec.raw[:16]))


def service(t, remote, protocol="imap", name="svc", **opts):
    svc = t.service(remote, protocol, name=name, **opts)
    svc.opts_port = int(svc.opts["remote"].rsplit(":", 1)[1])
    return svc


# ------------------------------------------------------------ good services

@case(params=PER_PROTOCOL, valgrind=True)
def test_good_implicit(t, protocol):
    """Implicit TLS: exit 0, full report, only the probe's lines sent."""
    srv = server(t, protocol)
    svc = service(t, srv, protocol)
    rc, out, err = run_probe(t, [svc], "svc")
    check(rc == 0, "exit %s; output:\n%s%s", rc, out, err)
    expect_good_report(t, out, svc, protocol, "implicit")
    expect_only_probe_lines(srv, protocol, "implicit")


@case(params=PER_PROTOCOL, valgrind=True)
def test_good_starttls(t, protocol):
    """STARTTLS: the same, plus the plaintext transcript."""
    srv = server(t, protocol, "starttls")
    svc = service(t, srv, protocol, tls="starttls")
    rc, out, err = run_probe(t, [svc], "svc")
    check(rc == 0, "exit %s; output:\n%s%s", rc, out, err)
    expect_good_report(t, out, svc, protocol, "starttls")
    dialogue = section(out, r"^STARTTLS dialogue")
    sent = [l[4:] for l in dialogue if l.startswith("  > ")]
    check(sent == [c.decode().rstrip("\r\n") for c in PROBE_PRE_TLS[protocol]],
          "the transcript shows %r as sent", sent)
    check(any("PRETLS" in l for l in dialogue if l.startswith("  < ")),
          "the server's plaintext lines are not in the transcript:\n%s",
          "\n".join(dialogue))
    expect_only_probe_lines(srv, protocol, "starttls")


@case()
def test_pin_match_and_verify_no(t):
    """A matching pin says so; verify = no is OK but says NOT checked."""
    srv = server(t)
    pinned = service(t, srv, name="pinned", pin_sha256=[t.certs.pin_other,
                                                       t.certs.pin_good])
    unchecked = service(t, server(t, cert="self_signed"), name="unchecked",
                        verify="no")
    rc, out, err = run_probe(t, [pinned, unchecked], "all")
    check(rc == 0, "exit %s; output:\n%s%s", rc, out, err)
    check(re.search(r"^Pins: matched \(a key of the chain matches one of "
                    r"2 pin_sha256\)$", out, re.M),
          "pin match not reported:\n%s", out)
    check(re.search(r"^Verification: NOT checked \(verify = no\)", out,
                    re.M), "verify = no not reported:\n%s", out)
    v = verdicts(out)
    check(v["pinned"][0] == "OK" and v["unchecked"][0] == "OK" and
          "NOT verified" in v["unchecked"][1], "verdicts %s", v)


@case()
def test_transcript_is_escaped_and_cut(t):
    """Server lines: control bytes shown as \\xNN, cut at ~200 chars."""
    greeting = (b"* OK [CAPABILITY IMAP4rev1 STARTTLS] \x1b[31mred\x07 " +
                b"x" * 400 + b"\r\n")
    srv = server(t, "imap", "starttls", greeting=greeting)
    svc = service(t, srv, tls="starttls")
    rc, out, err = run_probe(t, [svc], "svc")
    check(rc == 0, "exit %s; output:\n%s%s", rc, out, err)
    check("\x1b" not in out and "\x07" not in out, "raw control bytes in "
          "the report")
    line = [l for l in section(out, r"^STARTTLS dialogue")
            if l.startswith("  < ")][0]
    check("\\x1b[31mred\\x07" in line, "control bytes not escaped: %r",
          line)
    check(line.endswith("...") and len(line) < 260, "long line not cut: "
          "%d chars", len(line))


# --------------------------------------------------------------- failures

@case()
def test_refused(t):
    svc = service(t, "127.0.0.1:%d" % t.ports.take())
    expect_fail(t, svc, r"connection refused",
                [r"^  trying 127\.0\.0\.1:\d+$"])


@case()
def test_connect_timeout(t):
    bh = t.blackhole()
    svc = service(t, bh.address, connect_timeout=1)
    t0 = time.monotonic()
    expect_fail(t, svc, r"connect timed out")
    secs = time.monotonic() - t0
    check(secs < 6, "connect timeout took %.1fs (connect_timeout = 1)", secs)


@case()
def test_handshake_timeout(t):
    srv = t.server("silent", tls=False)
    svc = service(t, srv, handshake_timeout=1)
    t0 = time.monotonic()
    expect_fail(t, svc, r"TLS handshake timed out")
    secs = time.monotonic() - t0
    check(secs < 6, "handshake timeout took %.1fs (handshake_timeout = 1)",
          secs)


@case()
def test_dialogue_timeout(t):
    """STARTTLS: a server that never greets; handshake_timeout bounds it."""
    srv = server(t, "imap", "starttls", greeting=b"")
    svc = service(t, srv, tls="starttls", handshake_timeout=1)
    expect_fail(t, svc, r"STARTTLS dialogue timed out")


# name -> (cert, reason in the VERDICT line, lines the report must have)
CERT_FAILURES = {
    "wrong_name": ("wrong_name",
                   r"^certificate name mismatch, expected mail\.test$",
                   [r"^  \[0\] subject:\s+CN=other\.test$",
                    r"^      SANs:\s+DNS:other\.test$"]),
    "expired": ("expired", r"^certificate expired$",
                [r"^      not after:\s+2021-01-01 00:00:00 UTC \(EXPIRED "
                 r"\d+ days ago\)$"]),
    "self_signed": ("self_signed",
                    r"^certificate not trusted \(self-signed or unknown "
                    r"CA\)$",
                    [r"^      issuer:\s+CN=mail\.test$"]),
}


@case(params={k: {"kind": k} for k in CERT_FAILURES})
def test_certificate_failure(t, kind):
    """The chain is still shown; the server gets nothing inside TLS."""
    cert, reason, lines = CERT_FAILURES[kind]
    srv = server(t, cert=cert)
    svc = service(t, srv)
    out = expect_fail(t, svc, reason,
                      lines + [r"^Verification: FAILED: "])
    rec = srv.conn(0).wait_done(10)
    check(rec.post == [], "a server that failed verification received %r",
          rec.post)
    check(re.search(r"^  pin_sha256 = \S+$", out, re.M), "no pin line")


@case()
def test_pin_mismatch(t):
    """The pin that would match is printed, ready to paste."""
    srv = server(t)
    svc = service(t, srv, pin_sha256=t.certs.pin_other)
    out = expect_fail(t, svc, r"no key in the server's certificate chain "
                      r"matches pin_sha256",
                      [r"^Verification: verified", r"^Pins: FAILED"])
    check(pasted_pin(out) == t.certs.pin_good, "pin %s, want %s",
          pasted_pin(out), t.certs.pin_good)
    check(srv.conn(0).wait_done(10).post == [], "the server received data")


@case(params=PER_PROTOCOL)
def test_starttls_not_offered(t, protocol):
    """IMAP: not in the greeting's capabilities; SMTP: not in EHLO; POP3:
    STLS refused."""
    kw = {"imap": {"greeting": b"* OK [CAPABILITY IMAP4rev1] ready\r\n"},
          "smtp": {"ehlo_reply": b"250-mail.test\r\n250 SIZE 1000\r\n"},
          "pop3": {"starttls_reply": b"-ERR STLS not available\r\n"}}
    reason = {"imap": r"server did not offer STARTTLS",
              "smtp": r"server did not offer STARTTLS",
              "pop3": r"server refused STLS"}
    srv = server(t, protocol, "starttls", **kw[protocol])
    svc = service(t, srv, protocol, tls="starttls")
    expect_fail(t, svc, reason[protocol], [r"^STARTTLS dialogue"])


@case()
def test_plaintext_on_tls_port(t):
    srv = t.server("plaintext", tls=False)
    svc = service(t, srv)
    expect_fail(t, svc, r"plaintext on a TLS port")


@case()
def test_greeting_refused_after_tls(t):
    """Implicit TLS, a good certificate, then * BYE: the service fails."""
    srv = server(t, greeting=b"* BYE [UNAVAILABLE] maintenance\r\n")
    svc = service(t, srv)
    expect_fail(t, svc, r"server refused the connection after TLS: \* BYE",
                [r"^Verification: verified"])


# ---------------------------------------------------------- several, names

@case()
def test_all_one_good_one_bad(t):
    """-p all: a verdict per service, exit 1 when one fails."""
    good = service(t, server(t), name="good")
    bad = service(t, server(t, cert="wrong_name"), name="bad")
    rc, out, err = run_probe(t, [good, bad], "all")
    v = verdicts(out)
    check(rc == 1, "exit %s (want 1):\n%s%s", rc, out, err)
    check(sorted(v) == ["bad", "good"], "verdicts %s:\n%s", v, out)
    check(v["good"][0] == "OK" and v["bad"][0] == "FAIL" and
          "name mismatch" in v["bad"][1], "verdicts %s", v)
    check(out.index("VERDICT good") < out.index("VERDICT bad"),
          "services not reported in the order of the file")


@case()
def test_one_of_several(t):
    """-p NAME probes that service only."""
    good = service(t, server(t), name="good")
    bad = service(t, "127.0.0.1:%d" % t.ports.take(), name="bad")
    rc, out, err = run_probe(t, [good, bad], "good")
    check(rc == 0, "exit %s:\n%s%s", rc, out, err)
    check(list(verdicts(out)) == ["good"], "verdicts %s", verdicts(out))


@case()
def test_unknown_service(t):
    svc = service(t, server(t))
    rc, out, err = run_probe(t, [svc], "nosuch")
    check(rc == 1, "exit %s (want 1)", rc)
    check("nosuch" in err and "svc" in err, "no useful error on stderr: %r",
          err)
    check("VERDICT" not in out, "a verdict for an unknown service:\n%s", out)
