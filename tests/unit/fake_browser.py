#!/usr/bin/python3
"""A browser for the unit tests: follow URL's redirects and print the page.

    fake_browser.py URL CAFILE

Trusts CAFILE for https (the fake provider's certificate).  Prints the
final status on the first line, then the body; exits 0 however the page
ends (the test reads the status).
"""

import ssl
import sys
import urllib.error
import urllib.request


def main():
    url, cafile = sys.argv[1], sys.argv[2]
    ctx = ssl.create_default_context(cafile=cafile)
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=ctx))
    try:
        with opener.open(url, timeout=20) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    sys.stdout.write("%d\n%s" % (status, body.decode("utf-8", "replace")))


if __name__ == "__main__":
    main()
