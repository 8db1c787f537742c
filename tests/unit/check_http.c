/*
 * check_http.c - unit tests of http.c against a real HTTPS server on
 * loopback (fake_provider.py): the form and headers sent, certificate and
 * host name verification, the body bound, the timeout, no redirects, no
 * plain http, cancellation, and percent-encoding.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "http.h"
#include "provider.h"
#include "unit.h"

static struct provider	 prov;
static struct event_base *base;
static struct http	*client;

/* One answer from http.c. */
struct answer {
	int	 done;
	int	 calls;
	int	 status;
	char	*body;
	size_t	 len;
	char	*error;
};

static void
setup(void)
{
	char	err[256];

	ck_assert_int_eq(http_global_init(), 0);
	provider_start(&prov);
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	client = http_new(base, err, sizeof(err));
	ck_assert_msg(client != NULL, "%s", err);
}

static void
teardown(void)
{
	http_free(client);
	event_base_free(base);
	provider_stop(&prov);
	http_global_cleanup();
}

static void
answer_cb(int status, const char *body, size_t len, const char *error,
    void *arg)
{
	struct answer	*a = arg;

	a->done = 1;
	a->calls++;
	a->status = status;
	a->body = strdup(body);
	a->len = len;
	a->error = error != NULL ? strdup(error) : NULL;
	ck_assert_uint_eq(strlen(body), len);
}

static void
answer_clear(struct answer *a)
{
	free(a->body);
	free(a->error);
}

/* POST to url with ca_file and timeout; wait for the answer. */
static void
post(struct answer *a, const char *url, const char *ca, unsigned timeout,
    const char *const *fields)
{
	static const char *const	none[] = { NULL };

	memset(a, 0, sizeof(*a));
	ck_assert_ptr_nonnull(http_post_form(client, url,
	    fields != NULL ? fields : none, ca, timeout, answer_cb, a));
	ck_assert_msg(provider_run(base, &a->done, 20), "no answer");
	ck_assert_int_eq(a->calls, 1);
}

/* The answer failed with an error starting with want. */
static void
expect_error(const struct answer *a, const char *want)
{
	ck_assert_int_eq(a->status, 0);
	ck_assert_ptr_nonnull(a->error);
	ck_assert_msg(strncmp(a->error, want, strlen(want)) == 0,
	    "error \"%s\", want \"%s...\"", a->error, want);
}

/* The form arrives escaped, with the headers a token endpoint expects. */
START_TEST(test_post_form)
{
	const char *const	 fields[] = { "grant_type", "refresh_token",
				    "odd", "a b&c=d+e/\xc3\xa9~-._",
				    "empty", "", NULL };
	struct answer		 a;
	json_t			*j;
	json_error_t		 jerr;

	post(&a, provider_url(&prov, "/echo"), prov.ca, 10, fields);
	ck_assert_ptr_null(a.error);
	ck_assert_int_eq(a.status, 200);
	j = json_loads(a.body, 0, &jerr);
	ck_assert_ptr_nonnull(j);
	ck_assert_str_eq(json_string_value(json_object_get(j, "form")),
	    "grant_type=refresh_token&odd=a%20b%26c%3Dd%2Be%2F%C3%A9~-._"
	    "&empty=");
	ck_assert_str_eq(json_string_value(json_object_get(j, "ua")),
	    "mailtlsd/" MAILTLSD_VERSION);
	ck_assert_str_eq(json_string_value(json_object_get(j, "accept")),
	    "application/json");
	ck_assert_str_eq(json_string_value(json_object_get(j, "ctype")),
	    "application/x-www-form-urlencoded");
	json_decref(j);
	answer_clear(&a);
}
END_TEST

/* An error status comes back with its body, not as a failure. */
START_TEST(test_error_status)
{
	struct answer	a;

	post(&a, provider_url(&prov, "/status/400"), prov.ca, 10, NULL);
	ck_assert_ptr_null(a.error);
	ck_assert_int_eq(a.status, 400);
	ck_assert_ptr_nonnull(strstr(a.body, "scripted"));
	answer_clear(&a);
}
END_TEST

/* A certificate that ca_file does not sign is refused. */
START_TEST(test_wrong_ca)
{
	struct answer	a;

	post(&a, provider_url(&prov, "/echo"), prov.other_ca, 10, NULL);
	expect_error(&a, "TLS verification failed: ");
	ck_assert_str_eq(a.body, "");
	answer_clear(&a);
}
END_TEST

/* The system's bundle does not trust the throwaway certificate either. */
START_TEST(test_default_ca)
{
	struct answer	a;

	post(&a, provider_url(&prov, "/echo"), "", 10, NULL);
	expect_error(&a, "TLS verification failed: ");
	answer_clear(&a);
}
END_TEST

/* The right CA but another name: the certificate names 127.0.0.1 only. */
START_TEST(test_name_mismatch)
{
	struct answer	a;
	char		url[128];

	snprintf(url, sizeof(url), "https://localhost:%u/echo", prov.port);
	post(&a, url, prov.ca, 10, NULL);
	expect_error(&a, "TLS verification failed: ");
	answer_clear(&a);
}
END_TEST

/* A body over 64 KiB fails, announced by Content-Length or not. */
START_TEST(test_too_large)
{
	struct answer	a;

	post(&a, provider_url(&prov, "/big"), prov.ca, 10, NULL);
	expect_error(&a, "response over 64 KiB");
	answer_clear(&a);
	post(&a, provider_url(&prov, "/big-chunked"), prov.ca, 10, NULL);
	expect_error(&a, "response over 64 KiB");
	answer_clear(&a);
}
END_TEST

/* A server that does not answer in time: the request ends on time. */
START_TEST(test_timeout)
{
	struct answer	a;
	time_t		start = time(NULL);

	post(&a, provider_url(&prov, "/slow"), prov.ca, 1, NULL);
	expect_error(&a, "timed out after 1 s");
	ck_assert_int_le(time(NULL) - start, 3);
	answer_clear(&a);
}
END_TEST

/* A redirect is an answer, never followed. */
START_TEST(test_no_redirect)
{
	struct answer	a;

	post(&a, provider_url(&prov, "/redirect"), prov.ca, 10, NULL);
	ck_assert_ptr_null(a.error);
	ck_assert_int_eq(a.status, 302);
	answer_clear(&a);
}
END_TEST

/* Plain http is refused before anything is sent. */
START_TEST(test_plain_http)
{
	struct answer	a;
	char		url[128];

	snprintf(url, sizeof(url), "http://127.0.0.1:%u/echo", prov.port);
	post(&a, url, prov.ca, 10, NULL);
	expect_error(&a, "not an https URL");
	answer_clear(&a);
}
END_TEST

/* A cancelled request never calls back; the others still do. */
START_TEST(test_cancel)
{
	struct answer		 slow = { 0 }, a;
	struct http_request	*req;

	req = http_post_form(client, provider_url(&prov, "/slow"),
	    (const char *const []){ NULL }, prov.ca, 10, answer_cb, &slow);
	ck_assert_ptr_nonnull(req);
	http_cancel(req);
	post(&a, provider_url(&prov, "/echo"), prov.ca, 10, NULL);
	ck_assert_int_eq(a.status, 200);
	answer_clear(&a);
	ck_assert_int_eq(slow.calls, 0);
}
END_TEST

/* Freeing the client with requests under way calls none of them. */
static void
free_inside_cb(int status, const char *body, size_t len, const char *error,
    void *arg)
{
	struct answer	*a = arg;

	answer_cb(status, body, len, error, arg);
	http_free(client);
	client = NULL;
	(void)a;
}

START_TEST(test_free_pending)
{
	struct answer	slow = { 0 }, a = { 0 };

	ck_assert_ptr_nonnull(http_post_form(client,
	    provider_url(&prov, "/slow"), (const char *const []){ NULL },
	    prov.ca, 10, answer_cb, &slow));
	/* The echo's callback frees the client, the slow request with it. */
	ck_assert_ptr_nonnull(http_post_form(client,
	    provider_url(&prov, "/echo"), (const char *const []){ NULL },
	    prov.ca, 10, free_inside_cb, &a));
	ck_assert(provider_run(base, &a.done, 10));
	ck_assert_ptr_null(client);
	ck_assert_int_eq(a.status, 200);
	answer_clear(&a);
	/* Nothing is left to run; the slow answer never comes. */
	ck_assert_int_eq(event_base_loop(base, EVLOOP_NONBLOCK), 1);
	ck_assert_int_eq(slow.calls, 0);
}
END_TEST

/* Percent-encoding keeps the unreserved bytes and fits or fails. */
START_TEST(test_escape)
{
	char	out[16];

	ck_assert_int_eq(http_escape("aZ09-._~", out, sizeof(out)), 8);
	ck_assert_str_eq(out, "aZ09-._~");
	ck_assert_int_eq(http_escape(" /+", out, sizeof(out)), 9);
	ck_assert_str_eq(out, "%20%2F%2B");
	ck_assert_int_eq(http_escape("", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "");
	/* 5 bytes need 6 with the NUL; "%20" needs 4. */
	ck_assert_int_eq(http_escape("abcde", out, 5), -1);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(http_escape("abcde", out, 6), 5);
	ck_assert_int_eq(http_escape(" ", out, 3), -1);
	ck_assert_int_eq(http_escape(" ", out, 4), 3);
}
END_TEST

Suite *
http_suite(void)
{
	Suite	*s = suite_create("http");
	TCase	*tc = tcase_create("https");
	TCase	*pure = tcase_create("escape");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_post_form);
	tcase_add_test(tc, test_error_status);
	tcase_add_test(tc, test_wrong_ca);
	tcase_add_test(tc, test_default_ca);
	tcase_add_test(tc, test_name_mismatch);
	tcase_add_test(tc, test_too_large);
	tcase_add_test(tc, test_timeout);
	tcase_add_test(tc, test_no_redirect);
	tcase_add_test(tc, test_plain_http);
	tcase_add_test(tc, test_cancel);
	tcase_add_test(tc, test_free_pending);
	suite_add_tcase(s, tc);
	tcase_add_test(pure, test_escape);
	suite_add_tcase(s, pure);
	return s;
}
