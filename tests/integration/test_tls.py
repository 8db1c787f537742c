"""TLS verification tests: bad certificates, weak servers, pins, client certs.

A failure case must give the client exactly one protocol error line and a
close, the server must receive no application data (the client sends a
secret first: it must never arrive), and the log must give the reason from
expectations.LOG_REASONS.
"""

import os

from client import noop
from expectations import GREETING, SECRET
from harness import (case, check, expect_error_line, expect_log,
                     expect_nothing_forwarded)
from servers import TestServer, make_server_context


def send_quietly(c, data):
    """Send, ignoring a connection the daemon already closed."""
    try:
        c.send(data)
    except OSError:
        pass


def assert_refused_secure(t, protocol, reason, server_kw, service_opts=None):
    """Run one failing connection end to end and check all three outcomes."""
    srv = t.server(protocol=protocol, **server_kw)
    svc = t.service(srv, protocol, **(service_opts or {}))
    d = t.daemon(svc)
    mark = d.mark()
    c = t.connect(svc)
    send_quietly(c, b"a1 LOGIN alice " + SECRET + b"\r\n")
    expect_error_line(c, protocol)
    expect_nothing_forwarded(srv.conn(0))
    if reason:
        expect_log(d, reason, since=mark)
    return srv, d


# name -> (server keywords, log reason)
CERT_FAILURES = {
    "wrong_name": ({"cert": "wrong_name"}, "name_mismatch"),
    "expired": ({"cert": "expired"}, "expired"),
    "not_yet_valid": ({"cert": "not_yet_valid"}, "not_yet_valid"),
    "self_signed": ({"cert": "self_signed"}, "not_trusted"),
    "unknown_ca": ({"cert": "unknown_ca"}, "not_trusted"),
    "tls10_11_only": ({"profile": "tls10_11"}, "version"),
    "cbc_only": ({"profile": "cbc"}, "cipher"),
    "static_rsa_only": ({"profile": "static_rsa"}, "cipher"),
    "plaintext": ({"behaviour": "plaintext", "tls": False}, "plaintext"),
    "sha1_signed": ({"cert": "sha1_signed", "profile": "legacy"}, "weak"),
    "rsa_1024": ({"cert": "weak_rsa", "profile": "legacy"}, "weak"),
}


@case(params={k: {"kind": k} for k in CERT_FAILURES}, valgrind=True)
def test_refused_server(t, kind):
    """IMAP: each insecure server gives * BYE, forwards nothing, logs why."""
    server_kw, reason = CERT_FAILURES[kind]
    assert_refused_secure(t, "imap", reason, server_kw)


@case(params={"%s-%s" % (p, k): {"protocol": p, "kind": k}
              for p in ("pop3", "smtp")
              for k in ("wrong_name", "self_signed", "plaintext")},
      valgrind=True)
def test_refused_server_other_protocols(t, protocol, kind):
    """POP3 and SMTP get their own error line (-ERR [SYS/TEMP], 421 4.7.0)."""
    server_kw, reason = CERT_FAILURES[kind]
    assert_refused_secure(t, protocol, reason, server_kw)


def assert_relays(t, srv, svc, protocol="imap", **daemon_opts):
    d = t.daemon(svc, **daemon_opts)
    c = t.connect(svc)
    c.expect_line(GREETING[protocol])
    noop(c, protocol, b"relayed")
    return d


@case(valgrind=True)
def test_tls12_server_works(t):
    """A good TLS 1.2-only server (ECDHE, AES-GCM) is accepted."""
    srv = t.server(profile="tls12")
    assert_relays(t, srv, t.service(srv))
    check(srv.conn(0).tls_version == "TLSv1.2", "negotiated %s",
          srv.conn(0).tls_version)


@case(valgrind=True)
def test_pin_match(t):
    """pin_sha256 of the server's key: the relay works."""
    srv = t.server()
    assert_relays(t, srv, t.service(srv, pin_sha256=t.certs.pin_good))


@case(valgrind=True)
def test_pin_one_of_several(t):
    """Repeated pin_sha256: one matching pin is enough."""
    srv = t.server()
    pins = [t.certs.pin_other, t.certs.pin_good]
    assert_relays(t, srv, t.service(srv, pin_sha256=pins))


@case(valgrind=True)
def test_pin_mismatch(t):
    """A valid chain whose key matches no pin is refused."""
    assert_refused_secure(t, "imap", "pin", {},
                          {"pin_sha256": t.certs.pin_other})


def chain_with_real_cert_appended(t, leaf):
    """A certificate file: leaf (the key other_key), then the real server's
    certificate, which the impostor can copy but not use."""
    path = os.path.join(t.tmp, "appended_chain.pem")
    with open(path, "w") as out:
        for part in (leaf, t.certs.good):
            with open(part) as f:
                out.write(f.read())
    return path


def assert_pin_not_fooled(t, leaf, service_opts):
    """An impostor's chain carrying the pinned certificate after its own."""
    chain = chain_with_real_cert_appended(t, leaf)
    srv = TestServer("echo", tls=make_server_context(chain,
                                                     t.certs.other_key))
    t.stack.callback(srv.stop)
    svc = t.service(srv, pin_sha256=t.certs.pin_good, **service_opts)
    d = t.daemon(svc)
    mark = d.mark()
    c = t.connect(svc)
    send_quietly(c, b"a1 LOGIN alice " + SECRET + b"\r\n")
    expect_error_line(c, "imap")
    expect_nothing_forwarded(srv.conn(0))
    expect_log(d, "pin", since=mark)


@case(valgrind=True)
def test_pin_verify_no_only_own_key(t):
    """verify = no: a pin matches only the key the server proved it holds,
    not a certificate it merely sent after its own."""
    assert_pin_not_fooled(t, t.certs.self_signed, {"verify": "no"})


@case(valgrind=True)
def test_pin_outside_verified_chain(t):
    """A chain that verifies (here through a second trusted CA) with a key
    that is not pinned fails, even with the pinned certificate sent beside
    it: pins count only on the verified chain."""
    both_cas = os.path.join(t.tmp, "two_cas.pem")
    with open(both_cas, "w") as out:
        for ca in (t.certs.ca, os.path.join(t.certs.dir, "ca2", "ca.crt")):
            with open(ca) as f:
                out.write(f.read())
    assert_pin_not_fooled(t, t.certs.unknown_ca, {"ca_file": both_cas})


@case(valgrind=True)
def test_pin_verify_no_match(t):
    """verify = no with the pin of the server's own key relays."""
    srv = t.server(cert="self_signed")
    assert_relays(t, srv, t.service(srv, verify="no",
                                    pin_sha256=t.certs.pin_other))


@case(valgrind=True)
def test_verify_no_accepts_self_signed(t):
    """verify = no: a self-signed server works, with a warning at start."""
    srv = t.server(cert="self_signed")
    svc = t.service(srv, verify="no")
    d = assert_relays(t, srv, svc, log_level="info")
    expect_log(d, "verify_off")


@case(valgrind=True)
def test_client_cert_presented(t):
    """client_cert/client_key: a server requiring a client cert accepts us."""
    srv = t.server(client_ca=t.certs.ca)
    svc = t.service(srv, client_cert=t.certs.client,
                    client_key=t.certs.client_key)
    assert_relays(t, srv, svc)
    check(srv.conn(0).client_cert, "server saw no client certificate")


@case(valgrind=True)
def test_client_cert_missing(t):
    """Without client_cert the same server refuses the handshake."""
    assert_refused_secure(t, "imap", None, {"client_ca": t.certs.ca})
