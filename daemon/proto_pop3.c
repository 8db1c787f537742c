/*
 * proto_pop3.c - POP3 for mailtlsd: the plaintext STLS dialogue (RFC 2595
 * section 4), the greeting written for the client, and the pre-login
 * filter.
 *
 * POP3 answers commands in order, so the filter keeps a FIFO of the
 * response each forwarded command expects: one line, a multi-line response
 * when +OK (CAPA, AUTH without a mechanism, LIST, UIDL, RETR, TOP), an AUTH
 * exchange ("+ " challenges, then +OK or -ERR).  It drops the STLS line
 * from the CAPA response, answers a client's own STLS itself in its place
 * in the FIFO, and is done after +OK to PASS, APOP or AUTH.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "log.h"
#include "proto.h"
#include "proto_impl.h"

#define POP3_STLS_REFUSAL	"-ERR STLS not available: mailtlsd already " \
				"uses TLS to the server\r\n"

/* The response a forwarded command expects. */
enum pop3_expect {
	POP3_EXP_SINGLE = 0,	/* one line */
	POP3_EXP_MULTI,		/* multi-line when +OK */
	POP3_EXP_CAPA,		/* multi-line when +OK, STLS hidden */
	POP3_EXP_LOGIN,		/* one line; +OK logs in (PASS, APOP) */
	POP3_EXP_SASL,		/* AUTH exchange until +OK or -ERR */
	POP3_EXP_LOCAL		/* the daemon's own answer to STLS */
};

/* Where the client's stream is. */
enum pop3_client_state {
	POP3_CLI_COMMAND = 0,	/* a command */
	POP3_CLI_WAIT,		/* AUTH waits for a challenge or its result */
	POP3_CLI_SASL		/* one line of SASL data */
};

/* The filter's view of both streams. */
struct pop3_filter {
	struct proto_fifo	fifo;
	int			srv_body;	/* in a multi-line response */
	int			srv_capa;	/* ... to CAPA */
	int			authed;		/* login succeeded */
	enum pop3_client_state	cli;
};

/* Whether line is a status line with this indicator. */
static int
pop3_status(const char *line, size_t len, const char *indicator)
{
	return proto_skip_word(line, len, indicator) != 0;
}

/* The greeting: +OK goes on with STLS, anything else aborts. */
static enum proto_verdict
pop3_dialogue_greeting(struct proto_dialogue *d, const char *line,
    size_t len, struct evbuffer *to_server)
{
	if (pop3_status(line, len, "+OK"))
		return proto_dialogue_send(d, to_server, DLG_STLS_SENT,
		    "STLS\r\n");
	if (pop3_status(line, len, "-ERR"))
		return proto_dialogue_fail(d, "server refused the connection",
		    line, len);
	return proto_dialogue_fail(d, "malformed POP3 greeting", line, len);
}

/* The answer to STLS: +OK goes ahead. */
static enum proto_verdict
pop3_dialogue_reply(struct proto_dialogue *d, const char *line, size_t len)
{
	if (pop3_status(line, len, "+OK")) {
		d->state = DLG_UPGRADED;
		return PROTO_UPGRADE;
	}
	if (pop3_status(line, len, "-ERR"))
		return proto_dialogue_fail(d, "server refused STLS", line, len);
	return proto_dialogue_fail(d, "unexpected response to STLS", line,
	    len);
}

/* One server line of the POP3 dialogue. */
static enum proto_verdict
pop3_dialogue_line(struct proto_dialogue *d, const char *line, size_t len,
    struct evbuffer *to_server)
{
	switch (d->state) {
	case DLG_GREETING:
		return pop3_dialogue_greeting(d, line, len, to_server);
	case DLG_STLS_SENT:
		return pop3_dialogue_reply(d, line, len);
	case DLG_EHLO_SENT:
	case DLG_STARTTLS_SENT:
	case DLG_UPGRADED:
	case DLG_FAILED:
		break;
	}
	fatalx("pop3: dialogue line in state %s", proto_dialogue_state(d));
}

/* The greeting for the client, without an APOP timestamp. */
static int
pop3_write_greeting(struct evbuffer *out, const struct service_config *sc)
{
	return evbuffer_add_printf(out, "+OK mailtlsd: POP3 service ready "
	    "via TLS to %s\r\n", sc->server_name) < 0 ? -1 : 0;
}

/* A new filter. */
static void *
pop3_filter_new(void)
{
	return calloc(1, sizeof(struct pop3_filter));
}

/* Free a filter. */
static void
pop3_filter_free(void *arg)
{
	free(arg);
}

/* The server's greeting comes first: one line. */
static void
pop3_filter_expect_greeting(struct proto_filter *f)
{
	struct pop3_filter	*pf = f->impl;

	proto_fifo_push(&pf->fifo, POP3_EXP_SINGLE);
}

/* Between two responses: proto_fifo_settle(), not inside a multi-line one. */
static int
pop3_settle(struct proto_filter *f, struct evbuffer *to_client)
{
	struct pop3_filter	*pf = f->impl;

	if (pf->srv_body)
		return 0;
	return proto_fifo_settle(f, &pf->fifo, POP3_EXP_LOCAL,
	    POP3_STLS_REFUSAL, pf->authed, to_client);
}

/* Whether a server line is a SASL challenge ("+ ..."), not +OK. */
static int
pop3_challenge(const char *line, size_t len)
{
	return len >= 1 && line[0] == '+' && (len == 1 || line[1] == ' ');
}

/*
 * The first line of a response: what it means for the streams; -1 when it
 * is no response at all, which means the filter lost track of the server's
 * responses (a multi-line answer it took for one line) and must not go on.
 */
static int
pop3_server_status(struct proto_filter *f, struct pop3_filter *pf,
    const char *line, size_t len)
{
	int	ok = pop3_status(line, len, "+OK");

	if (proto_fifo_head(&pf->fifo) >= 0 && !ok &&
	    !pop3_status(line, len, "-ERR") && !pop3_challenge(line, len))
		return proto_filter_fail(f, "POP3 server line that is neither "
		    "+OK nor -ERR where a response was due");
	switch (proto_fifo_head(&pf->fifo)) {
	case POP3_EXP_SINGLE:
		break;
	case POP3_EXP_MULTI:
	case POP3_EXP_CAPA:
		pf->srv_body = ok;
		pf->srv_capa = proto_fifo_head(&pf->fifo) == POP3_EXP_CAPA;
		break;
	case POP3_EXP_LOGIN:
		pf->authed = ok;
		break;
	case POP3_EXP_SASL:
		if (pop3_challenge(line, len)) {
			if (pf->cli == POP3_CLI_WAIT)
				pf->cli = POP3_CLI_SASL;
			return 0;	/* the exchange goes on */
		}
		pf->authed = ok;
		pf->cli = POP3_CLI_COMMAND;
		break;
	default:
		return 0;	/* unsolicited: nothing was asked */
	}
	proto_fifo_pop(&pf->fifo);
	return 0;
}

/* One line of a multi-line body: 1 when it ended the response. */
static int
pop3_server_body(struct pop3_filter *pf, struct evbuffer *in,
    struct evbuffer *out, const char *line, size_t len, size_t eol)
{
	if (len == 1 && line[0] == '.') {
		pf->srv_body = 0;
		return proto_move(in, out, len + eol) == 0 ? 1 : -1;
	}
	/* A CAPA line is a keyword and arguments; dot-stuffed lines pass. */
	if (pf->srv_capa && proto_token_hidden(line, proto_word_len(line,
	    len)))
		return evbuffer_drain(in, len + eol);
	return proto_move(in, out, len + eol);
}

/* One line from the server: of a multi-line body, or a response's first. */
static int
pop3_server_line(struct proto_filter *f, struct evbuffer *in,
    struct evbuffer *out, const char *line, size_t len, size_t eol)
{
	struct pop3_filter	*pf = f->impl;

	if (pf->srv_body) {
		if (pop3_server_body(pf, in, out, line, len, eol) < 0)
			return proto_filter_fail(f, "out of memory");
		return 0;
	}
	if (pop3_server_status(f, pf, line, len) != 0)
		return -1;
	if (proto_move(in, out, len + eol) != 0)
		return proto_filter_fail(f, "out of memory");
	return 0;
}

/* Move server bytes to the client. */
static int
pop3_filter_server(struct proto_filter *f, struct evbuffer *in,
    struct evbuffer *out)
{
	return proto_fifo_server(f, in, out, pop3_settle, pop3_server_line);
}

/* What a client command expects from the server. */
static enum pop3_expect
pop3_client_expect(const char *line, size_t len, int *sasl)
{
	size_t	verb = proto_word_len(line, len);
	int	arg = verb + 1 < len;

	*sasl = 0;
	if (proto_word_is(line, verb, "STLS"))
		return POP3_EXP_LOCAL;
	if (proto_word_is(line, verb, "CAPA"))
		return POP3_EXP_CAPA;
	if (proto_word_is(line, verb, "AUTH")) {
		*sasl = arg;
		return arg ? POP3_EXP_SASL : POP3_EXP_MULTI;
	}
	if (proto_word_is(line, verb, "PASS") ||
	    proto_word_is(line, verb, "APOP"))
		return POP3_EXP_LOGIN;
	if (proto_word_is(line, verb, "RETR") ||
	    proto_word_is(line, verb, "TOP") ||
	    (!arg && (proto_word_is(line, verb, "LIST") ||
	    proto_word_is(line, verb, "LANG") ||	/* RFC 6856 */
	    proto_word_is(line, verb, "UIDL"))))
		return POP3_EXP_MULTI;
	return POP3_EXP_SINGLE;
}

/* One client command: forwarded, or STLS answered here. */
static int
pop3_client_command(struct proto_filter *f, struct pop3_filter *pf,
    struct evbuffer *in, struct evbuffer *out, struct evbuffer *to_client)
{
	const char		*line;
	size_t			 len, eol;
	enum pop3_expect	 expect;
	int			 r, sasl;

	if ((r = proto_fifo_command(f, &pf->fifo, in, &line, &len, &eol)) <= 0)
		return r;
	expect = pop3_client_expect(line, len, &sasl);
	if (proto_fifo_push(&pf->fifo, expect) != 0)
		return proto_filter_fail(f, "out of memory");
	if (expect == POP3_EXP_LOCAL) {
		if (proto_fifo_refuse(f, in, len + eol) != 0)
			return -1;
		return pop3_settle(f, to_client) == 0 ? 1 : -1;
	}
	if (proto_move(in, out, len + eol) != 0)
		return proto_filter_fail(f, "out of memory");
	if (sasl)
		pf->cli = POP3_CLI_WAIT;
	return 1;
}

/* Take client bytes while their meaning is known: 1 to go on, 0, -1. */
static int
pop3_client_step(struct proto_filter *f, struct evbuffer *in,
    struct evbuffer *out, struct evbuffer *to_client)
{
	struct pop3_filter	*pf = f->impl;
	int			 r;

	switch (pf->cli) {
	case POP3_CLI_WAIT:
		return 0;	/* until the server has answered */
	case POP3_CLI_SASL:
		if ((r = proto_sasl_line(f, in, out)) == 1)
			pf->cli = POP3_CLI_WAIT;
		return r;
	case POP3_CLI_COMMAND:
		return pop3_client_command(f, pf, in, out, to_client);
	}
	fatalx("pop3: bad client state %d", (int)pf->cli);
}

const struct proto_ops proto_pop3_ops = {
	.name = "pop3",
	.dialogue_line = pop3_dialogue_line,
	.write_greeting = pop3_write_greeting,
	.filter_new = pop3_filter_new,
	.filter_free = pop3_filter_free,
	.filter_expect_greeting = pop3_filter_expect_greeting,
	.filter_server = pop3_filter_server,
	.client_step = pop3_client_step,
};
