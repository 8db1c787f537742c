/*
 * check_proto.c - unit tests of the protocol refusal lines.
 */
#include <string.h>

#include <event2/buffer.h>

#include "proto.h"
#include "unit.h"

START_TEST(test_unavailable_lines)
{
	char	line[128];

	ck_assert_int_gt(proto_format_unavailable(line, sizeof(line),
	    MAIL_PROTO_IMAP, "down"), 0);
	ck_assert_str_eq(line, "* BYE [UNAVAILABLE] down\r\n");
	ck_assert_int_gt(proto_format_unavailable(line, sizeof(line),
	    MAIL_PROTO_POP3, "down"), 0);
	ck_assert_str_eq(line, "-ERR [SYS/TEMP] down\r\n");
	ck_assert_int_gt(proto_format_unavailable(line, sizeof(line),
	    MAIL_PROTO_SMTP, "down"), 0);
	ck_assert_str_eq(line, "421 4.7.0 down\r\n");
}
END_TEST

START_TEST(test_unavailable_truncation_refused)
{
	char	line[16];

	/* A line that would not fit is refused, never cut without CRLF. */
	ck_assert_int_eq(proto_format_unavailable(line, sizeof(line),
	    MAIL_PROTO_IMAP, "a long reason that does not fit"), -1);
}
END_TEST

START_TEST(test_unavailable_evbuffer)
{
	struct evbuffer	*buf = evbuffer_new();
	char		 out[64];
	size_t		 len;

	ck_assert_int_eq(proto_write_unavailable(buf, MAIL_PROTO_SMTP, "x"), 0);
	len = evbuffer_get_length(buf);
	ck_assert_uint_eq(len, strlen("421 4.7.0 x\r\n"));
	evbuffer_remove(buf, out, len);
	ck_assert_int_eq(memcmp(out, "421 4.7.0 x\r\n", len), 0);
	evbuffer_free(buf);
}
END_TEST

Suite *
proto_suite(void)
{
	Suite	*s = suite_create("proto");
	TCase	*tc = tcase_create("unavailable");

	tcase_add_test(tc, test_unavailable_lines);
	tcase_add_test(tc, test_unavailable_truncation_refused);
	tcase_add_test(tc, test_unavailable_evbuffer);
	suite_add_tcase(s, tc);
	return s;
}
