/*
 * proto.h - what each mail protocol says when mailtlsd must refuse a client.
 */
#ifndef MAILTLSD_PROTO_H
#define MAILTLSD_PROTO_H

#include "config.h"

struct evbuffer;

/*
 * Append the protocol's one-line "service unavailable" answer carrying text:
 * IMAP "* BYE [UNAVAILABLE]", POP3 "-ERR [SYS/TEMP]", SMTP "421 4.7.0".
 */
int	proto_write_unavailable(struct evbuffer *, enum mail_protocol,
	    const char *text);

/* The same line into buf, for callers without an evbuffer. */
int	proto_format_unavailable(char *buf, size_t len, enum mail_protocol,
	    const char *text);

#endif /* MAILTLSD_PROTO_H */
