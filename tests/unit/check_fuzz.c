/*
 * check_fuzz.c - replay the fuzz seed corpus (tests/fuzz/corpus/) and every
 * input a fuzzer found (tests/fuzz/regress/) through the fuzz drivers, so
 * what was once found stays fixed under make check, sanitizers included.
 *
 * A file under regress/<target>/ is named after what it found; adding one
 * is all a new regression test takes.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "../fuzz/fuzz.h"
#include "proto.h"
#include "unit.h"

/* The targets, in the order of the loop test. */
static const struct {
	const char		*name;
	enum mail_protocol	 protocol;	/* NONE: the configuration */
	int			 login;		/* fuzz_login_run() */
	int			 min_seeds;	/* corpus sanity */
} targets[] = {
	{ "config", MAIL_PROTO_NONE, 0, 20 },
	{ "imap", MAIL_PROTO_IMAP, 0, 20 },
	{ "pop3", MAIL_PROTO_POP3, 0, 20 },
	{ "smtp", MAIL_PROTO_SMTP, 0, 20 },
	{ "login", MAIL_PROTO_NONE, 1, 20 },
};

/* Read a whole file; NULL if it cannot be read. */
static uint8_t *
read_file(const char *path, size_t *len)
{
	FILE	*f;
	uint8_t	*buf = NULL, *nb;
	size_t	 cap = 0, n;

	if ((f = fopen(path, "rb")) == NULL)
		return NULL;
	*len = 0;
	for (;;) {
		if (*len == cap) {
			cap = cap == 0 ? 65536 : cap * 2;
			if ((nb = realloc(buf, cap)) == NULL) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
		}
		if ((n = fread(buf + *len, 1, cap - *len, f)) == 0)
			break;
		*len += n;
	}
	fclose(f);
	return buf;
}

/* Replay every file of one directory; the number replayed. */
static int
replay_dir(int t, const char *dir)
{
	DIR		*d;
	struct dirent	*e;
	char		 path[1024], why[512];
	uint8_t		*data;
	size_t		 len;
	int		 n = 0, r;

	if ((d = opendir(dir)) == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (targets[t].protocol == MAIL_PROTO_NONE &&
		    !targets[t].login)
			r = fuzz_config_run(path, why, sizeof(why));
		else {
			data = read_file(path, &len);
			ck_assert_msg(data != NULL, "cannot read %s", path);
			r = targets[t].login ? fuzz_login_run(data, len, why,
			    sizeof(why)) : fuzz_proto_run(targets[t].protocol,
			    data, len, why, sizeof(why));
			free(data);
		}
		ck_assert_msg(r == 0, "%s: %s", path, why);
		n++;
	}
	closedir(d);
	return n;
}

/* One target: its seeds and its regressions. */
START_TEST(test_fuzz_replay)
{
	char	dir[256];
	int	n;

	snprintf(dir, sizeof(dir), "tests/fuzz/corpus/%s", targets[_i].name);
	n = replay_dir(_i, dir);
	ck_assert_msg(n >= targets[_i].min_seeds, "%s: %d seeds (run from "
	    "the top of the source tree)", dir, n);
	snprintf(dir, sizeof(dir), "tests/fuzz/regress/%s", targets[_i].name);
	replay_dir(_i, dir);
}
END_TEST

/* The driver itself notices a broken check. */
START_TEST(test_fuzz_driver_checks)
{
	static const uint8_t	ok[] = "\x02\x00* OK hi\r\n\xfe" "Ca1 LOGIN "
				    "u p\r\n\xfeSa1 OK\r\n";
	char			why[512];

	ck_assert_int_eq(fuzz_proto_run(MAIL_PROTO_IMAP, ok, sizeof(ok) - 1,
	    why, sizeof(why)), 0);
	ck_assert_str_eq(why, "");
	ck_assert_int_eq(fuzz_config_run("/nonexistent/mailtlsd.conf", why,
	    sizeof(why)), 0);
}
END_TEST

/*
 * Found by fuzz_pop3 (cutting the same bytes differently changed what the
 * server got), then the same in IMAP and SMTP: the server ends a SASL
 * exchange while only the start of the client's next line has arrived.
 * The filter streams that start as SASL data, then takes the rest of the
 * line for a command of its own, so a STARTTLS (STLS) cut in two reaches
 * the server, which reads the whole line.  Whatever the cut, the client's
 * STARTTLS must never reach the server.
 */
static const struct {
	const char		*name;
	enum mail_protocol	 protocol;
	const char		*auth;		/* client */
	const char		*challenge;	/* server */
	const char		*head;		/* client: the line's start */
	const char		*end;		/* server ends the exchange */
	const char		*tail;		/* client: the rest */
	const char		*to_server;	/* all the server may get */
} sasl_cut[] = {
	{ "pop3", MAIL_PROTO_POP3, "AUTH PLAIN\r\n", "+ \r\n", "ST",
	    "-ERR [AUTH] cancelled\r\n", "LS\r\n", "AUTH PLAIN\r\n" },
	{ "smtp", MAIL_PROTO_SMTP, "AUTH PLAIN\r\n", "334 \r\n", "STAR",
	    "501 5.5.2 cancelled\r\n", "TTLS\r\n", "AUTH PLAIN\r\n" },
	{ "imap", MAIL_PROTO_IMAP, "a1 AUTHENTICATE PLAIN\r\n", "+ \r\n",
	    "a2 STA", "a1 NO cancelled\r\n", "RTTLS\r\n",
	    "a1 AUTHENTICATE PLAIN\r\n" },
};

/* Add text to a buffer and run the filter as a session would. */
static void
sasl_step(struct proto_filter *f, struct evbuffer *add, const char *text,
    struct evbuffer *from_server, struct evbuffer *from_client,
    struct evbuffer *to_server, struct evbuffer *to_client)
{
	evbuffer_add(add, text, strlen(text));
	if (proto_filter_server(f, from_server, to_client) != 0)
		return;
	if (!proto_filter_done(f) && evbuffer_get_length(from_client) > 0)
		proto_filter_client(f, from_client, to_server, to_client);
}

START_TEST(test_fuzz_sasl_cut_starttls)
{
	struct proto_filter	*f = proto_filter_new(sasl_cut[_i].protocol);
	struct evbuffer		*fs = evbuffer_new(), *fc = evbuffer_new();
	struct evbuffer		*ts = evbuffer_new(), *tc = evbuffer_new();
	size_t			 n;

	sasl_step(f, fc, sasl_cut[_i].auth, fs, fc, ts, tc);
	sasl_step(f, fs, sasl_cut[_i].challenge, fs, fc, ts, tc);
	sasl_step(f, fc, sasl_cut[_i].head, fs, fc, ts, tc);
	sasl_step(f, fs, sasl_cut[_i].end, fs, fc, ts, tc);
	sasl_step(f, fc, sasl_cut[_i].tail, fs, fc, ts, tc);
	n = evbuffer_get_length(ts);
	ck_assert_msg(n == strlen(sasl_cut[_i].to_server) &&
	    memcmp(evbuffer_pullup(ts, -1), sasl_cut[_i].to_server, n) == 0,
	    "%s: the server got \"%.*s\"", sasl_cut[_i].name, (int)n,
	    (const char *)evbuffer_pullup(ts, -1));
	proto_filter_free(f);
	evbuffer_free(fs);
	evbuffer_free(fc);
	evbuffer_free(ts);
	evbuffer_free(tc);
}
END_TEST

/* The fuzz corpus and regressions. */
Suite *
fuzz_suite(void)
{
	Suite	*s = suite_create("fuzz");
	TCase	*tc = tcase_create("replay");

	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_fuzz_replay, 0,
	    (int)(sizeof(targets) / sizeof(targets[0])));
	tcase_add_test(tc, test_fuzz_driver_checks);
	suite_add_tcase(s, tc);

	tc = tcase_create("found");
	tcase_add_loop_test(tc, test_fuzz_sasl_cut_starttls, 0,
	    (int)(sizeof(sasl_cut) / sizeof(sasl_cut[0])));
	suite_add_tcase(s, tc);
	return s;
}
