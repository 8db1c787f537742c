"""The benchmark's IMAP server: TLS (OpenSSL via Python's ssl), one thread
per connection, on loopback.

    mailserver.py --chain PEM --key PEM --listen PORT:TLS:RESUME ...

TLS is "implicit" (TLS at once, then the greeting) or "starttls" (a
plaintext greeting offering STARTTLS, then TLS after "tag STARTTLS").
RESUME is "resume" (one context for the port: session IDs and tickets are
honoured) or "cold" (a fresh context per connection and no tickets: every
handshake is a full one).  TLS 1.3 and 1.2 (BENCH_TLS=1.2: 1.2 at most),
so that both proxies negotiate the same protocol, and AES-128-GCM
preferred (for TLS 1.3 through the OpenSSL configuration that run.py gives
the server, OPENSSL_CONF: Python cannot set TLS 1.3 suites).

Commands: NOOP, CAPABILITY, LOGIN, LOGOUT, and for the throughput test
"tag XDOWNLOAD n" (answered with "* XDATA {n}", n bytes, the tagged OK)
and "tag XUPLOAD {n+}" followed by n bytes (answered once all arrived).
The bulk paths send and receive 1 MiB at a time, so that the server is not
what limits the throughput; the benchmark checks that it is not.

Prints "ready" once listening, then one line per completed handshake:
    hs PORT REUSED VERSION CIPHER
"""

import argparse
import os
import re
import socket
import ssl
import sys
import threading

BULK = 1 << 20
GREETING = b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] bench server ready\r\n"
PLAIN_GREETING = (b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] "
                  b"bench server ready\r\n")
CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
           "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
           "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")
UPLOAD_RE = re.compile(rb"^(\S+) XUPLOAD \{(\d+)\+?\}$", re.I)

out_lock = threading.Lock()
payload = bytes(range(256)) * (BULK // 256)


def say(text):
    with out_lock:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def max_tls_version():
    """TLS 1.3 unless BENCH_TLS=1.2."""
    if os.environ.get("BENCH_TLS", "1.3") == "1.2":
        return ssl.TLSVersion.TLSv1_2
    return ssl.TLSVersion.TLSv1_3


def make_context(chain, key, tickets=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.maximum_version = max_tls_version()
    ctx.set_ciphers(CIPHERS)
    ctx.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
    ctx.load_cert_chain(chain, key)
    return ctx


class Conn:
    """Line-oriented reading over a plain or TLS socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.chunk = bytearray(65536)

    def readline(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line.rstrip(b"\r\n")
            n = self.sock.recv_into(self.chunk)
            if n == 0:
                return None
            self.buf += self.chunk[:n]

    def skip(self, count):
        """Read and drop count bytes; False on EOF."""
        take = min(count, len(self.buf))
        del self.buf[:take]
        count -= take
        view = memoryview(bytearray(BULK))
        while count > 0:
            n = self.sock.recv_into(view, min(count, BULK))
            if n == 0:
                return False
            count -= n
        return True


def starttls_dialogue(conn):
    """The plaintext part; True when the client asked for STARTTLS."""
    conn.sock.sendall(PLAIN_GREETING)
    while True:
        line = conn.readline()
        if line is None:
            return False
        tag, _, rest = line.partition(b" ")
        cmd = rest.split(b" ")[0].upper()
        if cmd == b"STARTTLS":
            conn.sock.sendall(tag + b" OK Begin TLS negotiation now\r\n")
            return True
        if cmd == b"CAPABILITY":
            conn.sock.sendall(b"* CAPABILITY IMAP4rev1 STARTTLS "
                              b"LOGINDISABLED\r\n" + tag +
                              b" OK CAPABILITY completed\r\n")
        elif cmd == b"NOOP":
            conn.sock.sendall(tag + b" OK NOOP completed\r\n")
        else:
            conn.sock.sendall(tag + b" BAD only STARTTLS here\r\n")


def download(sock, tag, count):
    sock.sendall(b"* XDATA {%d}\r\n" % count)
    view = memoryview(payload)
    while count > 0:
        n = min(count, BULK)
        sock.sendall(view[:n])
        count -= n
    sock.sendall(b"\r\n" + tag + b" OK XDOWNLOAD completed\r\n")


def commands(conn):
    """The authenticated-or-not IMAP loop after TLS."""
    sock = conn.sock
    while True:
        line = conn.readline()
        if line is None:
            return
        m = UPLOAD_RE.match(line)
        if m:
            if not conn.skip(int(m.group(2))) or conn.readline() is None:
                return
            sock.sendall(m.group(1) + b" OK XUPLOAD %s\r\n" % m.group(2))
            continue
        tag, _, rest = line.partition(b" ")
        words = rest.split(b" ")
        cmd = words[0].upper()
        if cmd == b"NOOP":
            sock.sendall(tag + b" OK NOOP completed\r\n")
        elif cmd == b"CAPABILITY":
            sock.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag +
                         b" OK CAPABILITY completed\r\n")
        elif cmd == b"LOGIN":
            sock.sendall(tag + b" OK LOGIN completed\r\n")
        elif cmd == b"XDOWNLOAD" and len(words) == 2:
            download(sock, tag, int(words[1]))
        elif cmd == b"LOGOUT":
            sock.sendall(b"* BYE logging out\r\n" + tag +
                         b" OK LOGOUT completed\r\n")
            return
        else:
            sock.sendall(tag + b" BAD unknown command\r\n")


def serve(sock, port, mode, resume, args):
    """One client connection, from accept to close."""
    tls = None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if mode == "starttls" and not starttls_dialogue(Conn(sock)):
            return
        ctx = args.contexts[port] if resume == "resume" else \
            make_context(args.chain, args.key, tickets=False)
        tls = ctx.wrap_socket(sock, server_side=True)
        say("hs %d %d %s %s" % (port, int(tls.session_reused),
                                tls.version(), tls.cipher()[0]))
        if mode == "implicit":
            tls.sendall(GREETING)
        commands(Conn(tls))
    except (OSError, ssl.SSLError, ValueError):
        pass
    finally:
        (tls or sock).close()


def accept_loop(lsock, port, mode, resume, args):
    while True:
        sock, _ = lsock.accept()
        threading.Thread(target=serve, args=(sock, port, mode, resume, args),
                         daemon=True).start()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chain", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--listen", action="append", required=True,
                    help="PORT:implicit|starttls:resume|cold")
    args = ap.parse_args()
    threading.stack_size(256 * 1024)
    args.contexts = {}
    threads = []
    for spec in args.listen:
        port, mode, resume = spec.split(":")
        port = int(port)
        if mode not in ("implicit", "starttls") or \
                resume not in ("resume", "cold"):
            ap.error("bad --listen " + spec)
        args.contexts[port] = make_context(args.chain, args.key)
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("127.0.0.1", port))
        lsock.listen(1024)
        threads.append(threading.Thread(
            target=accept_loop, args=(lsock, port, mode, resume, args),
            daemon=True))
    for t in threads:
        t.start()
    say("ready")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
