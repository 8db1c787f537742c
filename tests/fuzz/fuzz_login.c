/*
 * fuzz_login.c - libFuzzer target: arbitrary IMAP, POP3 or SMTP server and
 * client bytes through a pre-login filter that logs in with OAuth2, with
 * the session's token and refusal calls at arbitrary points (format and
 * checks: fuzz.h).
 */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"

/* One input; a broken check aborts, which libFuzzer reports as a crash. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	why[512];

	if (fuzz_login_run(data, size, why, sizeof(why)) != 0) {
		fprintf(stderr, "fuzz_login: %s\n", why);
		abort();
	}
	return 0;
}
