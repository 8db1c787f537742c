"""Thousands of idle IMAP sessions: a cheap TLS server and their clients.

    idle.py server --chain PEM --key PEM --port PORT
    idle.py clients --port PORT

The server is one thread with a selector and non-blocking TLS sockets: it
does the handshake (resumption allowed), sends the greeting and then holds
the connection, reading and dropping whatever comes, until the peer closes.
Prints "ready" once listening.

The clients process reads commands on stdin and answers each on stdout:
    open N     open N more plaintext connections to PORT and wait until each
               has its greeting ("* OK"); at most 64 are waiting at a time;
               answers "opened OK ERRORS SECONDS [first error]"
    close      close every connection; answers "closed"
End of input closes everything and exits.
"""

import argparse
import errno
import selectors
import socket
import ssl
import sys
import time

GREETING = b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] bench server ready\r\n"
IN_FLIGHT = 64
OPEN_TIMEOUT = 300


def serve(args):
    from mailserver import make_context
    ctx = make_context(args.chain, args.key)
    sel = selectors.DefaultSelector()
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", args.port))
    lsock.listen(4096)
    lsock.setblocking(False)
    sel.register(lsock, selectors.EVENT_READ, None)
    print("ready", flush=True)

    def close(tls):
        sel.unregister(tls)
        tls.close()

    def step(tls, state):
        """Advance one connection; returns its next state or None."""
        try:
            if state == "hs":
                tls.do_handshake()
                state = "greet"
            if state == "greet":
                tls.send(GREETING)
                state = "idle"
            while tls.recv(4096):
                pass
            return None                 # EOF
        except ssl.SSLWantReadError:
            sel.modify(tls, selectors.EVENT_READ, state)
            return state
        except ssl.SSLWantWriteError:
            sel.modify(tls, selectors.EVENT_WRITE, state)
            return state
        except (OSError, ssl.SSLError):
            return None

    while True:
        for key, _ in sel.select():
            if key.data is None:
                while True:
                    try:
                        sock, _ = lsock.accept()
                    except BlockingIOError:
                        break
                    sock.setblocking(False)
                    tls = ctx.wrap_socket(sock, server_side=True,
                                          do_handshake_on_connect=False)
                    sel.register(tls, selectors.EVENT_READ, "hs")
                    if step(tls, "hs") is None:
                        close(tls)
                continue
            if step(key.fileobj, key.data) is None:
                close(key.fileobj)


class Clients:
    """Plaintext connections that stay open once greeted."""

    def __init__(self, port):
        self.port = port
        self.sel = selectors.DefaultSelector()
        self.open = []

    def open_more(self, count):
        start = time.monotonic()
        ok = errors = 0
        first_error = ""
        pending = {}                    # socket -> bytes received
        todo = count
        while todo or pending:
            while todo and len(pending) < IN_FLIGHT:
                todo -= 1
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                rc = s.connect_ex(("127.0.0.1", self.port))
                if rc not in (0, errno.EINPROGRESS):
                    errors += 1
                    first_error = first_error or os_error(rc)
                    s.close()
                    continue
                pending[s] = b""
                self.sel.register(s, selectors.EVENT_READ)
            if time.monotonic() - start > OPEN_TIMEOUT:
                errors += len(pending) + todo
                first_error = first_error or "timeout"
                for s in pending:
                    self.sel.unregister(s)
                    s.close()
                break
            for key, _ in self.sel.select(timeout=1.0):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except OSError as e:
                    data, err = b"", str(e)
                else:
                    err = "closed before the greeting"
                buf = pending[s] + data
                if data and b"\n" not in buf:
                    pending[s] = buf
                    continue
                self.sel.unregister(s)
                del pending[s]
                if data and buf.startswith(b"* OK"):
                    ok += 1
                    self.open.append(s)
                else:
                    errors += 1
                    first_error = first_error or (
                        buf.strip().decode(errors="replace")[:100] or err)
                    s.close()
        return ok, errors, time.monotonic() - start, first_error

    def close_all(self):
        for s in self.open:
            s.close()
        self.open = []


def os_error(rc):
    return "connect: " + (errno.errorcode.get(rc, str(rc)))


def clients(args):
    c = Clients(args.port)
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["open"]:
            ok, errors, secs, first = c.open_more(int(words[1]))
            print("opened %d %d %.2f %s" % (ok, errors, secs, first),
                  flush=True)
        elif words[:1] == ["close"]:
            c.close_all()
            print("closed", flush=True)
    c.close_all()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("server")
    s.add_argument("--chain", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--port", type=int, required=True)
    c = sub.add_parser("clients")
    c.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    try:
        serve(args) if args.what == "server" else clients(args)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
