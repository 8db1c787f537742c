/*
 * fuzz_smtp.c - libFuzzer target: arbitrary SMTP server and client bytes, in
 * both directions and at arbitrary split points, through the plaintext
 * STARTTLS dialogue, mailtlsd's own STARTTLS opening toward the client and
 * the pre-login filter (format and checks: fuzz.h).
 */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"

/* One input; a broken check aborts, which libFuzzer reports as a crash. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	why[512];

	if (fuzz_proto_run(MAIL_PROTO_SMTP, data, size, why,
	    sizeof(why)) != 0) {
		fprintf(stderr, "fuzz_smtp: %s\n", why);
		abort();
	}
	return 0;
}
