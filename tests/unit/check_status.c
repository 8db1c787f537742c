/*
 * check_status.c - the counters (stats.c) and the three renderings of a
 * status picture (status.c): text, JSON and the Prometheus format.
 */
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <event2/buffer.h>
#include <jansson.h>

#include "config.h"
#include "oauth2.h"
#include "stats.h"
#include "status.h"
#include "unit.h"

#define NOW	((time_t)1800000000)	/* 2027-01-15 08:00:00 UTC */

/* The rendering as a NUL-terminated string (caller frees). */
static char *
render(int (*fn)(const struct status *, struct evbuffer *),
    const struct status *st)
{
	struct evbuffer	*out = evbuffer_new();
	size_t		 len;
	char		*text;

	ck_assert_ptr_nonnull(out);
	ck_assert_int_eq(fn(st, out), 0);
	len = evbuffer_get_length(out);
	text = malloc(len + 1);
	ck_assert_ptr_nonnull(text);
	evbuffer_remove(out, text, len);
	text[len] = '\0';
	evbuffer_free(out);
	return text;
}

/* A picture of one service "box" with a few counts. */
struct fixture {
	struct service_config	sc;
	struct stats_counters	c;
	struct status_service	svc;
	struct status		st;
};

static void
fixture_init(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->sc.name, sizeof(f->sc.name), "box");
	f->sc.n_listen = 2;
	snprintf(f->sc.listen[0].text, sizeof(f->sc.listen[0].text),
	    "127.0.0.1:1143");
	snprintf(f->sc.listen[1].text, sizeof(f->sc.listen[1].text),
	    "[::1]:1143");
	snprintf(f->sc.remote_host, sizeof(f->sc.remote_host),
	    "mail.example.com");
	f->sc.remote_port = 993;
	f->sc.protocol = MAIL_PROTO_IMAP;
	f->sc.tls = TLS_MODE_IMPLICIT;
	f->c.sessions_ok = 7;
	f->c.sessions_failed = 2;
	f->c.failures[STATS_REASON_TLS_VERIFY] = 1;
	f->c.failures[STATS_REASON_CLIENT] = 1;
	f->c.bytes_up = 1000;
	f->c.bytes_down = 3 * 1024 * 1024;
	f->c.handshakes = 4;
	f->c.resumed = 1;
	f->c.buckets[0] = 1;		/* <= 0.005 */
	f->c.buckets[4] = 2;		/* <= 0.1 */
	f->c.buckets[10] = 1;		/* <= 10 */
	f->c.handshake_seconds = 5.25;
	f->c.last_reason = STATS_REASON_TLS_VERIFY;
	f->c.last_failure = NOW - 90;
	snprintf(f->c.last_text, sizeof(f->c.last_text),
	    "certificate name mismatch\n\x1b[31m\"x\"");
	f->c.streak = 1;
	f->c.last_handshake = NOW - 5;
	snprintf(f->c.tls_version, sizeof(f->c.tls_version), "TLSv1.3");
	snprintf(f->c.tls_suite, sizeof(f->c.tls_suite),
	    "TLS1-3-AES-256-GCM-SHA384");
	f->c.cert_expires = NOW + 3 * 86400;
	f->svc.cfg = &f->sc;
	f->svc.c = &f->c;
	f->svc.active[STATS_PHASE_REACHING] = 1;
	f->svc.active[STATS_PHASE_LOGIN] = 2;
	f->svc.active[STATS_PHASE_RELAYING] = 3;
	f->svc.pool_size = 2;
	f->svc.pool_ready = 1;
	f->svc.pool_failures = 3;
	f->svc.pool_backing_off = 1;
	f->st.version = "9.9.9";
	f->st.pid = 42;
	f->st.now = NOW;
	f->st.started = NOW - 3700;
	f->st.sessions = 6;
	f->st.max_sessions = 1024;
	f->st.services = &f->svc;
	f->st.n_services = 1;
}

/* Add the account alice with a quote and a backslash in her name. */
static void
fixture_account(struct fixture *f)
{
	struct oauth2_account_status	a = {
		.section = "ms",
		.user = "al\"ice\\@example.com",
		.authorised = 1,
		.access_expires = NOW + 600,
		.last_refresh = NOW - 60,
		.last_error = "invalid_grant",
	};

	status_add_oauth2_account(&a, &f->st);
}

/* Drop the services' array the fixture owns before status_clear(). */
static void
fixture_clear(struct fixture *f)
{
	f->st.services = NULL;
	f->st.n_services = 0;
	status_clear(&f->st);
}

START_TEST(test_prometheus_samples)
{
	struct fixture	f;
	char		*text;

	fixture_init(&f);
	fixture_account(&f);
	text = render(status_prometheus, &f.st);
	ck_assert_ptr_nonnull(strstr(text, "mailtlsd_info{version=\"9.9.9\"} "
	    "1\n"));
	ck_assert_ptr_nonnull(strstr(text, "\nmailtlsd_sessions_open 6\n"));
	ck_assert_ptr_nonnull(strstr(text, "# TYPE mailtlsd_sessions_total "
	    "counter\nmailtlsd_sessions_total{service=\"box\",result=\"ok\"} "
	    "7\nmailtlsd_sessions_total{service=\"box\",result=\"failed\"} "
	    "2\n"));
	ck_assert_ptr_nonnull(strstr(text, "mailtlsd_failures_total{service="
	    "\"box\",reason=\"tls_verify\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(text, "mailtlsd_failures_total{service="
	    "\"box\",reason=\"dns\"} 0\n"));
	ck_assert_ptr_nonnull(strstr(text, "mailtlsd_relayed_bytes_total{"
	    "service=\"box\",direction=\"to_client\"} 3145728\n"));
	ck_assert_ptr_nonnull(strstr(text, "mailtlsd_sessions_active{service="
	    "\"box\",phase=\"login\"} 2\n"));
	ck_assert_ptr_nonnull(strstr(text, "mailtlsd_pool_backing_off{service="
	    "\"box\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(text, "mailtlsd_server_certificate_expiry"
	    "_timestamp_seconds{service=\"box\"} 1800259200\n"));
	ck_assert_ptr_nonnull(strstr(text, "mailtlsd_oauth2_authorised{section"
	    "=\"ms\",user=\"al\\\"ice\\\\@example.com\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(text, "mailtlsd_oauth2_access_token_"
	    "expiry_timestamp_seconds{section=\"ms\",user=\"al\\\"ice\\\\@"
	    "example.com\"} 1800000600\n"));
	/* No free text: the failure's words are not in the metrics. */
	ck_assert_ptr_null(strstr(text, "mismatch"));
	ck_assert_ptr_null(strstr(text, "invalid_grant"));
	free(text);
	fixture_clear(&f);
}
END_TEST

START_TEST(test_prometheus_histogram_is_cumulative)
{
	struct fixture	f;
	char		*text;

	fixture_init(&f);
	text = render(status_prometheus, &f.st);
	ck_assert_ptr_nonnull(strstr(text, "# TYPE mailtlsd_handshake_duration"
	    "_seconds histogram\n"
	    "mailtlsd_handshake_duration_seconds_bucket{service=\"box\","
	    "le=\"0.005\"} 1\n"
	    "mailtlsd_handshake_duration_seconds_bucket{service=\"box\","
	    "le=\"0.01\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(text, "le=\"0.05\"} 1\n"
	    "mailtlsd_handshake_duration_seconds_bucket{service=\"box\","
	    "le=\"0.1\"} 3\n"));
	ck_assert_ptr_nonnull(strstr(text, "le=\"10\"} 4\n"
	    "mailtlsd_handshake_duration_seconds_bucket{service=\"box\","
	    "le=\"+Inf\"} 4\n"
	    "mailtlsd_handshake_duration_seconds_sum{service=\"box\"} "
	    "5.250000\n"
	    "mailtlsd_handshake_duration_seconds_count{service=\"box\"} 4\n"));
	free(text);
	fixture_clear(&f);
}
END_TEST

/* Every sample line names a family announced by # TYPE before it. */
START_TEST(test_prometheus_every_sample_typed)
{
	struct fixture	 f;
	char		*text, *line, *save = NULL, family[128];
	char		 typed[64][128];
	int		 n = 0, i, found;
	size_t		 len;

	fixture_init(&f);
	fixture_account(&f);
	text = render(status_prometheus, &f.st);
	for (line = strtok_r(text, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "# TYPE ", 7) == 0) {
			ck_assert_int_lt(n, 64);
			sscanf(line + 7, "%127s", typed[n++]);
			continue;
		}
		if (line[0] == '#')
			continue;
		len = strcspn(line, "{ ");
		ck_assert_uint_lt(len, sizeof(family));
		memcpy(family, line, len);
		family[len] = '\0';
		for (found = 0, i = 0; i < n && !found; i++)
			found = strcmp(family, typed[i]) == 0 ||
			    (strncmp(family, typed[i], strlen(typed[i])) == 0 &&
			    (strcmp(family + strlen(typed[i]), "_bucket") == 0 ||
			    strcmp(family + strlen(typed[i]), "_sum") == 0 ||
			    strcmp(family + strlen(typed[i]), "_count") == 0));
		ck_assert_msg(found, "sample of an untyped family: %s", line);
	}
	free(text);
	fixture_clear(&f);
}
END_TEST

START_TEST(test_json_round_trip)
{
	struct fixture	 f;
	json_error_t	 jerr;
	json_t		*doc, *svc, *acc;
	char		*text;

	fixture_init(&f);
	fixture_account(&f);
	text = render(status_json, &f.st);
	doc = json_loads(text, 0, &jerr);
	ck_assert_msg(doc != NULL, "not JSON: %s", jerr.text);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "version")),
	    "9.9.9");
	ck_assert_int_eq(json_integer_value(json_object_get(doc,
	    "uptime_seconds")), 3700);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "now")),
	    "2027-01-15T08:00:00Z");
	svc = json_array_get(json_object_get(doc, "services"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(svc, "remote")),
	    "mail.example.com:993");
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(svc,
	    "listen"), 1)), "[::1]:1143");
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(
	    json_object_get(svc, "totals"), "failures"), "client")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(
	    svc, "sessions_now"), "relaying")), 3);
	ck_assert(json_is_true(json_object_get(json_object_get(svc, "pool"),
	    "backing_off")));
	/* The server's words come back exactly, escaped on the way. */
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(svc,
	    "last_failure"), "text")), f.c.last_text);
	ck_assert(json_real_value(json_object_get(json_object_get(svc, "tls"),
	    "resumption_rate")) == 0.25);
	ck_assert(json_is_true(json_object_get(json_object_get(svc,
	    "server_certificate"), "expiring_soon")));
	acc = json_array_get(json_object_get(doc, "oauth2_accounts"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(acc, "user")),
	    "al\"ice\\@example.com");
	ck_assert_str_eq(json_string_value(json_object_get(acc,
	    "access_token_expires")), "2027-01-15T08:10:00Z");
	json_decref(doc);
	free(text);
	fixture_clear(&f);
}
END_TEST

START_TEST(test_text_lines)
{
	struct fixture	f;
	char		*text;

	fixture_init(&f);
	fixture_account(&f);
	text = render(status_text, &f.st);
	ck_assert_ptr_nonnull(strstr(text, "mailtlsd 9.9.9, pid 42, up 1h 01m "
	    "(since 2027-01-15 06:58:20 UTC)\nsessions: 6 (max_sessions "
	    "1024)\n"));
	ck_assert_ptr_nonnull(strstr(text, "\n[box] imap, implicit TLS: "
	    "127.0.0.1:1143, [::1]:1143 -> mail.example.com:993\n"));
	ck_assert_ptr_nonnull(strstr(text, "  sessions now:  6 (1 reaching the "
	    "server, 2 before login, 3 relaying, 0 closing)\n"));
	ck_assert_ptr_nonnull(strstr(text, "  pool:          1 ready of 2, "
	    "backing off after 3 failure(s) in a row\n"));
	ck_assert_ptr_nonnull(strstr(text, "  since start:   9 sessions (7 ok, "
	    "2 failed), 1000 B to the server, 3.0 MiB to clients\n"));
	ck_assert_ptr_nonnull(strstr(text, "  failures:      tls_verify 1, "
	    "client 1\n"));
	/* Control characters of the server's words are made harmless. */
	ck_assert_ptr_nonnull(strstr(text, "  last failure:  2027-01-15 "
	    "07:58:30 UTC (1m 30s ago), tls_verify: certificate name "
	    "mismatch??[31m\"x\"\n"));
	ck_assert_ptr_null(strchr(text, '\x1b'));
	ck_assert_ptr_nonnull(strstr(text, "25% resumed"));
	ck_assert_ptr_nonnull(strstr(text, "(in 3d 00h); WARNING: within 14 "
	    "days"));
	ck_assert_ptr_nonnull(strstr(text, "\nOAuth2 accounts:\n  [ms] "
	    "al\"ice\\@example.com: authorised, access token expires "
	    "2027-01-15 08:10:00 UTC (in 10m 00s), last refresh 2027-01-15 "
	    "07:59:00 UTC, last error: invalid_grant\n"));
	free(text);
	fixture_clear(&f);
}
END_TEST

START_TEST(test_status_line_counts)
{
	struct fixture	f;
	char		line[128];

	fixture_init(&f);
	status_line(&f.st, line, sizeof(line));
	ck_assert_str_eq(line, "serving 1 service, 6 sessions, 1 failing");
	f.c.streak = 0;
	f.st.sessions = 1;
	status_line(&f.st, line, sizeof(line));
	ck_assert_str_eq(line, "serving 1 service, 1 session, 0 failing");
	fixture_clear(&f);
}
END_TEST

/* ---- stats.c ------------------------------------------------------------- */

static int	observed;

static void
observe(void *arg)
{
	(void)arg;
	observed++;
}

START_TEST(test_stats_streak_and_classes)
{
	struct stats_registry		*reg = stats_registry_new();
	struct stats			*st;
	const struct stats_counters	*c;
	struct stats_tls		 tls = { 0.02, "TLSv1.3", "X", 1, 0 };
	int				 i;

	ck_assert_ptr_nonnull(reg);
	stats_registry_observe(reg, observe, NULL);
	st = stats_attach(reg, "box", "a:993");
	c = stats_counters(st);
	observed = 0;
	/* The client's failures say nothing about the server. */
	stats_failure(st, STATS_REASON_CLIENT, "client left", NOW);
	ck_assert_uint_eq(c->streak, 0);
	for (i = 0; i < 6; i++)
		stats_failure(st, STATS_REASON_CONNECT, "refused", NOW);
	ck_assert_uint_eq(c->streak, 6);
	ck_assert_int_eq(observed, 1);		/* it started failing */
	ck_assert_uint_eq(c->failures[STATS_REASON_CONNECT], 6);
	ck_assert_uint_eq(c->failures[STATS_REASON_CLIENT], 1);
	ck_assert_int_eq(c->last_reason, STATS_REASON_CONNECT);
	/* An out-of-range class counts as other. */
	stats_failure(st, (enum stats_reason)99, "?", NOW);
	ck_assert_uint_eq(c->failures[STATS_REASON_OTHER], 1);
	stats_handshake(st, &tls, NOW);
	ck_assert_uint_eq(c->streak, 0);
	ck_assert_int_eq(observed, 2);		/* it stopped failing */
	ck_assert_uint_eq(c->handshakes, 1);
	ck_assert_uint_eq(c->resumed, 1);
	ck_assert_uint_eq(c->buckets[2], 1);	/* 0.02 <= 0.025 */
	ck_assert_str_eq(c->tls_version, "TLSv1.3");
	stats_session_ended(st, 1);
	stats_session_ended(st, 0);
	stats_bytes(st, 3, 4);
	ck_assert_uint_eq(c->sessions_failed, 1);
	ck_assert_uint_eq(c->sessions_ok, 1);
	ck_assert_uint_eq(c->bytes_up + c->bytes_down, 7);
	stats_unref(st);
	stats_registry_free(reg);
	/* NULL is accepted everywhere (-t builds services without stats). */
	stats_failure(NULL, STATS_REASON_DNS, "x", NOW);
	stats_handshake(NULL, &tls, NOW);
	stats_bytes(NULL, 1, 1);
	stats_unref(NULL);
}
END_TEST

START_TEST(test_stats_kept_across_reload)
{
	struct stats_registry		*reg = stats_registry_new();
	struct stats			*a, *b, *c2;
	struct stats_tls		 tls = { 0.5, "TLSv1.2", "Y", 0,
					    NOW + 86400 };

	a = stats_attach(reg, "box", "a:993");
	stats_handshake(a, &tls, NOW);
	stats_failure(a, STATS_REASON_DNS, "no such host", NOW);
	/* The same name again (a reload): the same counters. */
	b = stats_attach(reg, "box", "a:993");
	ck_assert_ptr_eq(a, b);
	ck_assert_uint_eq(stats_counters(b)->failures[STATS_REASON_DNS], 1);
	ck_assert(stats_expiring(stats_counters(b), NOW));
	ck_assert(!stats_expiring(stats_counters(b), NOW - 14 * 86400));
	/* Another server: its certificate is not known yet. */
	c2 = stats_attach(reg, "box", "b:993");
	ck_assert_ptr_eq(a, c2);
	ck_assert_int_eq(stats_counters(c2)->cert_expires, 0);
	ck_assert_uint_eq(stats_counters(c2)->handshakes, 1);
	stats_unref(a);
	stats_unref(b);
	stats_unref(c2);
	/* The last reference gone, the name starts from zero. */
	a = stats_attach(reg, "box", "b:993");
	ck_assert_uint_eq(stats_counters(a)->handshakes, 0);
	ck_assert_str_eq(stats_name(a), "box");
	stats_unref(a);
	stats_registry_free(reg);
}
END_TEST

START_TEST(test_stats_expiry_warns_daily)
{
	struct stats_registry	*reg = stats_registry_new();
	struct stats		*st = stats_attach(reg, "box", "a:993");
	struct stats_tls	 tls = { 0.1, "TLSv1.3", "X", 0,
				    NOW + 2 * 86400 };

	stats_handshake(st, &tls, NOW);		/* warns */
	ck_assert_int_eq(stats_check_expiry(st, NOW + 3600), 1);
	ck_assert_int_eq(stats_check_expiry(st, NOW + 86400), 1);
	tls.chain_expires = NOW + 100 * 86400;	/* renewed */
	stats_handshake(st, &tls, NOW + 86400);
	ck_assert_int_eq(stats_check_expiry(st, NOW + 86400), 0);
	stats_unref(st);
	stats_registry_free(reg);
}
END_TEST

START_TEST(test_reason_names)
{
	ck_assert_str_eq(stats_reason_name(STATS_REASON_TLS_VERIFY),
	    "tls_verify");
	ck_assert_str_eq(stats_reason_name(STATS_REASON_INJECTION),
	    "injection");
	ck_assert_str_eq(stats_reason_name((enum stats_reason)99), "other");
	ck_assert_ptr_nonnull(strstr(stats_reason_advice(STATS_REASON_DNS),
	    "resolv.conf"));
	ck_assert_str_eq(stats_phase_name(STATS_PHASE_LOGIN), "login");
}
END_TEST

Suite *
status_suite(void)
{
	Suite	*s = suite_create("status");
	TCase	*tc = tcase_create("render");
	TCase	*ts = tcase_create("stats");

	tcase_add_test(tc, test_prometheus_samples);
	tcase_add_test(tc, test_prometheus_histogram_is_cumulative);
	tcase_add_test(tc, test_prometheus_every_sample_typed);
	tcase_add_test(tc, test_json_round_trip);
	tcase_add_test(tc, test_text_lines);
	tcase_add_test(tc, test_status_line_counts);
	tcase_add_test(ts, test_stats_streak_and_classes);
	tcase_add_test(ts, test_stats_kept_across_reload);
	tcase_add_test(ts, test_stats_expiry_warns_daily);
	tcase_add_test(ts, test_reason_names);
	suite_add_tcase(s, tc);
	suite_add_tcase(s, ts);
	return s;
}
