/*
 * proto.c - protocol-correct refusal lines for mail clients.
 */
#include <stdio.h>

#include <event2/buffer.h>

#include "proto.h"

/* The prefix that makes a line a temporary, connection-ending failure. */
static const char *
proto_unavailable_prefix(enum mail_protocol protocol)
{
	switch (protocol) {
	case MAIL_PROTO_IMAP:
		return "* BYE [UNAVAILABLE]";	/* RFC 5530 */
	case MAIL_PROTO_POP3:
		return "-ERR [SYS/TEMP]";	/* RFC 3206 */
	case MAIL_PROTO_SMTP:
		return "421 4.7.0";		/* RFC 5321, 3463 */
	case MAIL_PROTO_NONE:
		break;
	}
	return "-ERR";
}

/* Format the refusal line, CRLF-terminated; its length or -1. */
int
proto_format_unavailable(char *buf, size_t len, enum mail_protocol protocol,
    const char *text)
{
	int	n;

	n = snprintf(buf, len, "%s %s\r\n", proto_unavailable_prefix(protocol),
	    text);
	return n < 0 || (size_t)n >= len ? -1 : n;
}

/* Append the refusal line to out. */
int
proto_write_unavailable(struct evbuffer *out, enum mail_protocol protocol,
    const char *text)
{
	char	line[256];
	int	n;

	if ((n = proto_format_unavailable(line, sizeof(line), protocol,
	    text)) < 0)
		return -1;
	return evbuffer_add(out, line, n);
}
