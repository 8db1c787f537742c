"""What the tests expect from mailtlsd, in one place so it is easy to adjust.

LOG_REASONS holds the (case-insensitive) regexes the daemon's log must match
for each failure; ERROR_PREFIX the exact start of the one line a mail client
gets when the secure connection cannot be made; GREETING what the test
servers say first.
"""

# Failure or event -> regex searched (case-insensitively) in the daemon log.
LOG_REASONS = {
    "ready":             r"ready",
    "name_mismatch":     r"name mismatch",
    "expired":           r"expired",
    "not_yet_valid":     r"not yet valid",
    "not_trusted":       r"not trusted",
    # A TLS 1.0/1.1-only server finds no suite it can use among the daemon's
    # TLS 1.2 AEAD suites, so it answers "handshake failure", not
    # "protocol version": the daemon cannot always tell the two apart.
    "version":           r"version|handshake failure",
    "cipher":            r"cipher|handshake failure",
    "plaintext":         r"not tls|plaintext|invalid record|unexpected",
    "refused":           r"refused",
    "connect_timeout":   r"connect timed out",
    "handshake_timeout": r"handshake timed out",
    "pin":               r"pin",
    "weak":              r"weak signature hash or key",
    "max_sessions":      r"max_sessions|too many",
    "verify_off":        r"verify",
    "reloaded":          r"reloaded",
}

# Exact prefix of the single error line, per protocol; the line ends in CRLF.
ERROR_PREFIX = {
    "imap": b"* BYE [UNAVAILABLE] ",
    "pop3": b"-ERR [SYS/TEMP] ",
    "smtp": b"421 4.7.0 ",
}

# What a test server sends first (implicit TLS: the client must see it as is).
GREETING = {
    "imap": b"* OK test server ready\r\n",
    "pop3": b"+OK test server ready\r\n",
    "smtp": b"220 mail.test ESMTP test server ready\r\n",
}

PLAINTEXT_GREETING = b"* OK plain\r\n"

# Daemon output that fails any test (the suite also runs on ASan/UBSan builds).
SANITIZER = r"AddressSanitizer|LeakSanitizer|runtime error:"

# A line a client sends before the secure connection is up: the server must
# never see it (nothing is forwarded before TLS is verified).
SECRET = b"s3cret-PASSWORD-never-forwarded"


def echo_reply(protocol, line):
    """The echo server's answer to one client line: a valid server reply."""
    body = line.rstrip(b"\r\n")
    if protocol == "imap":
        tag, _, rest = body.partition(b" ")
        return tag + b" OK " + rest + b"\r\n"
    if protocol == "pop3":
        return b"+OK " + body + b"\r\n"
    return b"250 " + body + b"\r\n"
