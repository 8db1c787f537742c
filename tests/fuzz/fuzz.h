/*
 * fuzz.h - the drivers behind the libFuzzer targets (fuzz_*.c), shared
 * with the unit test that replays the seed corpus and every input a fuzzer
 * ever found (tests/unit/check_fuzz.c).
 *
 * A protocol input is one flags byte, one split byte, then a transcript:
 *
 *   byte 0   bit 0: STARTTLS: the server's bytes go through the plaintext
 *                   dialogue line by line first, the filter starts after
 *                   the go-ahead (the client's bytes wait until then);
 *            bit 1: implicit TLS: the filter expects the server's greeting
 *                   (ignored with bit 0);
 *            bit 2: an ehlo_name that is not usable (the default is used);
 *            bit 3: the filter drops the server's greeting, as with local
 *                   STARTTLS (proto_filter_drop_greeting(); not with bit 0);
 *            bit 4: the client's waiting bytes go through after each piece
 *                   of a server delivery, not after the whole delivery;
 *            bit 5: local STARTTLS: the client's bytes go through
 *                   mailtlsd's own opening (proto_local.h) first; after its
 *                   go-ahead the filter starts and drops the server's
 *                   greeting, which waited (not with bit 0)
 *   byte 1   0, or the size of the pieces every delivery is cut into
 *            (at least size / FUZZ_PIECES_MAX, so long inputs run fast)
 *   rest     bytes from the server, with 0xfe as an escape:
 *              fe 'S'  what follows comes from the server (the default)
 *              fe 'C'  what follows comes from the client
 *              fe fe   one 0xfe byte
 *              fe any  other: a split point (deliver what came so far)
 *            every change of direction is a split point too.
 *
 * Each delivery runs as a session would run it (session.c): server bytes
 * through proto_filter_server() and then, while the client has bytes
 * waiting, proto_filter_client(); client bytes through
 * proto_filter_client(); once the filter is done, a plain copy.  The
 * driver checks, besides what the sanitizers see: that cutting deliveries
 * into pieces changes nothing (bits 0, 4 and 5 clear); return values in
 * range; a failed filter, dialogue or opening has a printable reason and
 * stays failed; no partial line over the limit waits in an input; the
 * client gets no more than the server's bytes plus the filter's own
 * refusals and the words it adds to a server's refusal of a login (at
 * most 16 bytes per client byte); the server gets only the
 * client's bytes, in their order; the dialogue sends at most one command
 * per line.
 */
#ifndef MAILTLSD_FUZZ_H
#define MAILTLSD_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define FUZZ_STARTTLS		0x01
#define FUZZ_IMPLICIT		0x02
#define FUZZ_BAD_EHLO		0x04
#define FUZZ_DROP_GREETING	0x08
#define FUZZ_EAGER		0x10
#define FUZZ_LOCAL		0x20

/*
 * fuzz_login: the flags byte chooses the protocol (bits 6 and 7: IMAP,
 * POP3, SMTP, IMAP) and keeps bits 1, 3 and 4; bit 0 makes the session's
 * calls come by themselves (a token when the login wants one; after a
 * rejection a second token, then a refusal).  Besides S and C, 0xfe
 * followed by T (a token), L (a token of 8192 bytes), t (a token that
 * cannot be sent), R, r, A (a refusal: for good, temporary, an alert)
 * makes that call.
 */
#define FUZZ_LOGIN_AUTO		0x01
#define FUZZ_LOGIN_PROTOCOL(flags)	(((flags) >> 6) & 3)

#define FUZZ_ESCAPE		0xfe
#define FUZZ_PIECES_MAX		256	/* the split grows for long inputs */

/*
 * Run one protocol input; 0 when every check held, -1 with what broke in
 * why (a crash or a sanitizer report ends the process instead).
 */
int	fuzz_proto_run(enum mail_protocol, const uint8_t *data, size_t size,
	    char *why, size_t whylen);

/*
 * Run one input through a filter that logs in with OAuth2 (login.c).  It
 * checks, besides the above: that the client's bytes the filter sends on
 * are the client's, in order, and never hold a password the client gave
 * (once, of 8 bytes or more); that every other line the filter writes to
 * the server is its own (a capability request, AUTHENTICATE or AUTH with
 * XOAUTH2 or OAUTHBEARER, a base64 message carrying the token, an answer
 * to an error challenge); that the calls succeed exactly in the states
 * that allow them and that the login's state, credentials and error hold
 * together.
 */
int	fuzz_login_run(const uint8_t *data, size_t size, char *why,
	    size_t whylen);

/* Load the configuration file at path and check the result; 0 or -1. */
int	fuzz_config_run(const char *path, char *why, size_t whylen);

/* What each fuzz_*.c defines for libFuzzer. */
int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif /* MAILTLSD_FUZZ_H */
