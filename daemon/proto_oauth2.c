/*
 * proto_oauth2.c - the login a pre-login filter takes itself for a service
 * that logs in with OAuth2 (oauth2 = NAME).  The client's user name and
 * password never go to the server: the session turns them into an access
 * token, and the filter logs in with that, by XOAUTH2 or, where the
 * server offers only that, OAUTHBEARER (RFC 7628).
 *
 * proto_imap.c, proto_pop3.c and proto_smtp.c parse the commands and
 * responses of their protocol and call in here; this file holds what the
 * three share -- the credentials and their bounds, strict base64, SASL
 * PLAIN (RFC 4616), the SASL messages with the token, the error challenge,
 * the server's failure text -- and the proto_filter_login*() functions of
 * proto.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <mbedtls/platform_util.h>

#include "proto.h"
#include "proto_impl.h"

/* What a refusal says when the caller gave no text. */
#define OAUTH2_REFUSAL_DEFAULT	"mailtlsd: login failed"

/* Wipe memory that held a secret, in a way the compiler keeps. */
void
proto_wipe(void *p, size_t len)
{
	if (p != NULL && len > 0)
		mbedtls_platform_zeroize(p, len);
}

/* Wipe and free a heap copy of a secret. */
static void
oauth2_free_secret(char **p, size_t *len)
{
	if (*p != NULL) {
		proto_wipe(*p, *len);
		free(*p);
	}
	*p = NULL;
	*len = 0;
}

/* Wipe what the client and the provider gave: the login is over. */
static void
oauth2_wipe_secrets(struct proto_oauth2 *o)
{
	proto_wipe(o->user, sizeof(o->user));
	proto_wipe(o->password, sizeof(o->password));
	o->user_len = 0;
	o->password_len = 0;
	oauth2_free_secret(&o->token, &o->token_len);
	oauth2_free_secret(&o->response, &o->response_len);
}

/* The value of a base64 digit, or -1. */
static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Decode strict base64 (RFC 4648 section 4): groups of four digits, "="
 * padding only at the end, unused bits zero, nothing else -- what SASL
 * asks for (RFC 4422 section 3.1 leaves no room for spaces or line
 * ends).  0 with *outlen, or -1 when in is not such base64 or the result
 * would not fit in outmax bytes.
 */
int
proto_base64_decode(const char *in, size_t len, unsigned char *out,
    size_t outmax, size_t *outlen)
{
	size_t	i, n = 0;
	int	v[4], j, pad;

	if (len % 4 != 0)
		return -1;
	for (i = 0; i < len; i += 4) {
		pad = 0;
		for (j = 0; j < 4; j++) {
			if (in[i + j] == '=' && i + 4 == len && j >= 2) {
				v[j] = 0;
				pad++;
			} else if (pad > 0 ||
			    (v[j] = b64_value((unsigned char)in[i + j])) < 0)
				return -1;
		}
		if ((pad == 2 && (v[1] & 0x0f) != 0) ||
		    (pad == 1 && (v[2] & 0x03) != 0) ||
		    n + 3 - (size_t)pad > outmax)
			return -1;
		out[n++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (pad < 2)
			out[n++] = (unsigned char)((v[1] & 0x0f) << 4 |
			    v[2] >> 2);
		if (pad < 1)
			out[n++] = (unsigned char)((v[2] & 0x03) << 6 | v[3]);
	}
	*outlen = n;
	return 0;
}

/* Encode len bytes as base64 into a new string (to free); 0 or -1. */
int
proto_base64_encode(const unsigned char *in, size_t len, char **out,
    size_t *outlen)
{
	static const char	digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				    "abcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t			i, n = 0;
	uint32_t		v;
	char			*p;

	if ((p = malloc(4 * ((len + 2) / 3) + 1)) == NULL)
		return -1;
	for (i = 0; i < len; i += 3) {
		v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		p[n++] = digits[v >> 18 & 0x3f];
		p[n++] = digits[v >> 12 & 0x3f];
		p[n++] = i + 1 < len ? digits[v >> 6 & 0x3f] : '=';
		p[n++] = i + 2 < len ? digits[v & 0x3f] : '=';
	}
	p[n] = '\0';
	*out = p;
	*outlen = n;
	return 0;
}

/* Whether a login is under way: the filter takes no client bytes. */
int
proto_oauth2_busy(const struct proto_filter *f)
{
	return f->oauth2 != NULL && f->oauth2->phase != OA_IDLE;
}

/* Whether the login's next server response belongs to the filter. */
int
proto_oauth2_awaits_server(const struct proto_filter *f)
{
	if (f->oauth2 == NULL)
		return 0;
	switch (f->oauth2->phase) {
	case OA_CAPS_SENT:
	case OA_AUTH_SENT:
	case OA_RESPONSE_SENT:
	case OA_ERROR_ANSWERED:
		return 1;
	case OA_IDLE:
	case OA_WANTED:
	case OA_CAPS_WAIT:
	case OA_REJECTED:
	case OA_REFUSING:
		break;
	}
	return 0;
}

/*
 * Take the user name: 1 to PROTO_USER_MAX bytes, none of them a control
 * byte (it goes into SASL messages whose separators are control bytes,
 * and into the log).
 */
enum proto_cred
proto_oauth2_user(struct proto_filter *f, const char *p, size_t len)
{
	struct proto_oauth2	*o = f->oauth2;
	size_t			 i;

	if (len > PROTO_USER_MAX)
		return PROTO_CRED_TOO_LONG;
	if (len == 0)
		return PROTO_CRED_BAD_USER;
	for (i = 0; i < len; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			return PROTO_CRED_BAD_USER;
	/* p may be o->user itself (IMAP reads LOGIN into it). */
	memmove(o->user, p, len);
	proto_wipe(o->user + len, sizeof(o->user) - len);
	o->user_len = len;
	return PROTO_CRED_OK;
}

/* Take the password: at most PROTO_PASSWORD_MAX bytes of anything. */
enum proto_cred
proto_oauth2_password(struct proto_filter *f, const char *p, size_t len)
{
	struct proto_oauth2	*o = f->oauth2;

	if (len > PROTO_PASSWORD_MAX)
		return PROTO_CRED_TOO_LONG;
	memmove(o->password, p, len);
	proto_wipe(o->password + len, sizeof(o->password) - len);
	o->password_len = len;
	return PROTO_CRED_OK;
}

/* Decode base64 of at most max bytes into buf (max + 3 bytes). */
static enum proto_cred
oauth2_decode(const char *b64, size_t len, unsigned char *buf, size_t max,
    size_t *n)
{
	if (len > 4 * ((max + 2) / 3))
		return PROTO_CRED_TOO_LONG;
	if (proto_base64_decode(b64, len, buf, max + 2, n) != 0)
		return PROTO_CRED_BAD_BASE64;
	return *n > max ? PROTO_CRED_TOO_LONG : PROTO_CRED_OK;
}

/* Take the user name in base64 (SMTP AUTH LOGIN). */
enum proto_cred
proto_oauth2_user_b64(struct proto_filter *f, const char *b64, size_t len)
{
	unsigned char	buf[PROTO_USER_MAX + 3];
	size_t		n = 0;
	enum proto_cred	r;

	if ((r = oauth2_decode(b64, len, buf, PROTO_USER_MAX, &n)) ==
	    PROTO_CRED_OK)
		r = proto_oauth2_user(f, (const char *)buf, n);
	proto_wipe(buf, sizeof(buf));
	return r;
}

/* Take the password in base64 (SMTP AUTH LOGIN). */
enum proto_cred
proto_oauth2_password_b64(struct proto_filter *f, const char *b64,
    size_t len)
{
	unsigned char	buf[PROTO_PASSWORD_MAX + 3];
	size_t		n = 0;
	enum proto_cred	r;

	if ((r = oauth2_decode(b64, len, buf, PROTO_PASSWORD_MAX, &n)) ==
	    PROTO_CRED_OK)
		r = proto_oauth2_password(f, (const char *)buf, n);
	proto_wipe(buf, sizeof(buf));
	return r;
}

/*
 * Take a SASL PLAIN message in base64 (RFC 4616: authzid NUL authcid NUL
 * passwd): the user is authcid; an authzid is refused unless it names
 * the same user, since the token logs in only as the user it belongs to.
 */
enum proto_cred
proto_oauth2_plain(struct proto_filter *f, const char *b64, size_t len)
{
	unsigned char	 buf[PROTO_PLAIN_MAX + 3];
	const char	*authzid = (const char *)buf, *authcid, *passwd, *nul;
	size_t		 n = 0, zlen, clen;
	enum proto_cred	 r;

	if ((r = oauth2_decode(b64, len, buf, PROTO_PLAIN_MAX, &n)) !=
	    PROTO_CRED_OK)
		goto done;
	r = PROTO_CRED_MALFORMED;
	if ((nul = memchr(buf, '\0', n)) == NULL)
		goto done;
	zlen = (size_t)(nul - authzid);
	authcid = nul + 1;
	if ((nul = memchr(authcid, '\0', n - zlen - 1)) == NULL)
		goto done;
	clen = (size_t)(nul - authcid);
	passwd = nul + 1;
	if (memchr(passwd, '\0', n - zlen - clen - 2) != NULL)
		goto done;
	r = PROTO_CRED_AUTHZID;
	if (zlen > 0 && (zlen != clen || memcmp(authzid, authcid, clen) != 0))
		goto done;
	if ((r = proto_oauth2_user(f, authcid, clen)) == PROTO_CRED_OK)
		r = proto_oauth2_password(f, passwd, n - zlen - clen - 2);
done:
	proto_wipe(buf, sizeof(buf));
	return r;
}

/* Whether the user name of a POP3 USER waits for its PASS. */
int
proto_oauth2_user_ok(const struct proto_filter *f)
{
	return f->oauth2 != NULL && f->oauth2->user_len > 0;
}

/* The client's credentials are complete: the session wants a token. */
void
proto_oauth2_wanted(struct proto_filter *f)
{
	f->oauth2->phase = OA_WANTED;
	f->oauth2->error[0] = '\0';
	f->oauth2->status[0] = '\0';
}

/* The login ended (or never started): wipe it, take commands again. */
void
proto_oauth2_forget(struct proto_filter *f)
{
	struct proto_oauth2	*o = f->oauth2;

	if (o == NULL)
		return;
	oauth2_wipe_secrets(o);
	o->phase = OA_IDLE;
	o->bearer = 0;
	o->to_server = NULL;
	o->status[0] = '\0';
	o->error[0] = '\0';
	o->refusal[0] = '\0';
}

/* The server's capability list offers these mechanisms (PROTO_MECH_*). */
void
proto_oauth2_caps(struct proto_filter *f, unsigned mechs)
{
	if (f->oauth2 == NULL)
		return;
	f->oauth2->mechs = mechs;
	f->oauth2->mechs_known = 1;
}

/* The PROTO_MECH_* a SASL mechanism name stands for, or 0. */
unsigned
proto_oauth2_mech(const char *p, size_t len)
{
	if (proto_word_is(p, len, "XOAUTH2"))
		return PROTO_MECH_XOAUTH2;
	if (proto_word_is(p, len, "OAUTHBEARER"))
		return PROTO_MECH_OAUTHBEARER;
	return 0;
}

/* The PROTO_MECH_* of a space-separated list of mechanism names. */
unsigned
proto_oauth2_mechs(const char *p, size_t len)
{
	unsigned	 mechs = 0;
	const char	*w;
	size_t		 n;

	while ((n = proto_next_word(&p, &len, &w)) > 0)
		mechs |= proto_oauth2_mech(w, n);
	return mechs;
}

/*
 * The SASL message that carries the token: XOAUTH2 ("user=U^Aauth=Bearer
 * T^A^A") or OAUTHBEARER (RFC 7628: a GS2 header naming the user, where
 * "," and "=" are escaped, then "^Aauth=Bearer T^A^A"; host and port are
 * optional and left out).  A new string (to wipe and free), or NULL.
 */
static char *
oauth2_message(const struct proto_oauth2 *o, size_t *len)
{
	size_t	 max = 3 * o->user_len + o->token_len + 32, n = 0, i;
	char	*m;

	if ((m = malloc(max)) == NULL)
		return NULL;
	if (o->bearer) {
		memcpy(m, "n,a=", 4);
		n = 4;
		for (i = 0; i < o->user_len; i++) {
			if (o->user[i] == ',' || o->user[i] == '=') {
				memcpy(m + n, o->user[i] == ',' ? "=2C" : "=3D",
				    3);
				n += 3;
			} else
				m[n++] = o->user[i];
		}
		m[n++] = ',';
	} else {
		memcpy(m, "user=", 5);
		n = 5;
		memcpy(m + n, o->user, o->user_len);
		n += o->user_len;
	}
	memcpy(m + n, "\001auth=Bearer ", 13);
	n += 13;
	memcpy(m + n, o->token, o->token_len);
	n += o->token_len;
	memcpy(m + n, "\001\001", 2);
	n += 2;
	*len = n;
	return m;
}

/* Send the AUTH command: the mechanism chosen, the token in base64. */
static int
oauth2_send_auth(struct proto_filter *f)
{
	struct proto_oauth2	*o = f->oauth2;
	char			*m;
	size_t			 mlen = 0;
	int			 r;

	o->bearer = !(o->mechs & PROTO_MECH_XOAUTH2) &&
	    (o->mechs & PROTO_MECH_OAUTHBEARER);
	if ((m = oauth2_message(o, &mlen)) == NULL)
		return proto_filter_fail(f, "out of memory");
	r = proto_base64_encode((const unsigned char *)m, mlen, &o->response,
	    &o->response_len);
	oauth2_free_secret(&m, &mlen);
	oauth2_free_secret(&o->token, &o->token_len);
	if (r != 0)
		return proto_filter_fail(f, "out of memory");
	if ((r = f->ops->oauth2_auth(f, o->to_server, o->bearer ?
	    "OAUTHBEARER" : "XOAUTH2", o->response, o->response_len)) < 0)
		return proto_filter_fail(f, "out of memory");
	if (r > 0) {
		oauth2_free_secret(&o->response, &o->response_len);
		o->phase = OA_RESPONSE_SENT;
	} else
		o->phase = OA_AUTH_SENT;
	return 0;
}

/*
 * A token waits for the server's mechanisms: go on once they are known,
 * or ask for them when nobody has, or (SMTP, where only EHLO can, which is
 * the client's) try XOAUTH2.  0 or -1 (the filter failed).
 */
int
proto_oauth2_proceed(struct proto_filter *f)
{
	struct proto_oauth2	*o = f->oauth2;
	int			 r;

	if (o == NULL || o->phase != OA_CAPS_WAIT || f->reason[0] != '\0')
		return 0;
	if (!o->mechs_known) {
		if (f->ops->oauth2_caps_due(f))
			return 0;
		if ((r = f->ops->oauth2_ask_caps(f, o->to_server)) < 0)
			return proto_filter_fail(f, "out of memory");
		if (r > 0) {
			o->phase = OA_CAPS_SENT;
			return 0;
		}
	}
	return oauth2_send_auth(f);
}

/*
 * The answer to the filter's own capability request is over: whatever it
 * said, the mechanisms count as known (none offered: XOAUTH2 is tried).
 */
int
proto_oauth2_caps_answered(struct proto_filter *f)
{
	struct proto_oauth2	*o = f->oauth2;

	if (o == NULL || o->phase != OA_CAPS_SENT)
		return 0;
	o->mechs_known = 1;
	o->phase = OA_CAPS_WAIT;
	return proto_oauth2_proceed(f);
}

/* Whether c may appear in a status value copied from the server. */
static int
oauth2_status_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

/*
 * The "status" of an error challenge's JSON ({"status":"401",...} from
 * XOAUTH2, {"status":"invalid_token",...} from OAUTHBEARER), read without
 * a JSON parser: only the value's safe characters are kept.
 */
static void
oauth2_json_status(const unsigned char *j, size_t n, char *out,
    size_t outlen)
{
	static const char	key[] = "\"status\"";
	size_t			i, k = 0;

	out[0] = '\0';
	for (i = 0; i + sizeof(key) - 1 <= n; i++)
		if (memcmp(j + i, key, sizeof(key) - 1) == 0)
			break;
	if (i + sizeof(key) - 1 > n)
		return;
	for (i += sizeof(key) - 1; i < n && j[i] == ' '; i++)
		;
	if (i == n || j[i++] != ':')
		return;
	while (i < n && (j[i] == ' ' || j[i] == '"'))
		i++;
	while (i < n && k + 1 < outlen && oauth2_status_char(j[i]))
		out[k++] = (char)j[i++];
	out[k] = '\0';
}

/*
 * A challenge ("+" / "334") during the exchange: the go-ahead for the
 * response that waited, or the server's error (RFC 7628 3.2.2; XOAUTH2
 * does the same), answered as the mechanism requires (an empty response,
 * or %x01 for OAUTHBEARER) so that the server sends its final failure.
 * 0 or -1 (the filter failed).
 */
int
proto_oauth2_challenge(struct proto_filter *f, const char *b64, size_t len)
{
	struct proto_oauth2	*o = f->oauth2;
	unsigned char		*json;
	size_t			 n = 0;
	const char		*answer;

	switch (o->phase) {
	case OA_AUTH_SENT:
		if (evbuffer_add(o->to_server, o->response,
		    o->response_len) != 0 ||
		    evbuffer_add(o->to_server, "\r\n", 2) != 0)
			return proto_filter_fail(f, "out of memory");
		oauth2_free_secret(&o->response, &o->response_len);
		o->phase = OA_RESPONSE_SENT;
		return 0;
	case OA_RESPONSE_SENT:
		if ((json = malloc(len / 4 * 3 + 1)) == NULL)
			return proto_filter_fail(f, "out of memory");
		if (proto_base64_decode(b64, len, json, len / 4 * 3 + 1,
		    &n) == 0)
			oauth2_json_status(json, n, o->status,
			    sizeof(o->status));
		free(json);
		answer = o->bearer ? "AQ==\r\n" : "\r\n";
		if (evbuffer_add(o->to_server, answer, strlen(answer)) != 0)
			return proto_filter_fail(f, "out of memory");
		o->phase = OA_ERROR_ANSWERED;
		return 0;
	default:
		return proto_filter_fail(f, "server sent a second challenge "
		    "in the OAuth2 login");
	}
}

/*
 * Append a line of the server's failure to the error text, which keeps
 * its words, codes included ("535 5.7.139 Authentication unsuccessful,
 * ..."), every control or non-ASCII byte replaced by '?'.
 */
void
proto_oauth2_error_text(struct proto_filter *f, const char *text,
    size_t len)
{
	proto_text_append(f->oauth2->error, sizeof(f->oauth2->error), text,
	    len);
}

/* The server refused the token: the session retries or refuses. */
void
proto_oauth2_rejected(struct proto_filter *f)
{
	struct proto_oauth2	*o = f->oauth2;
	size_t			 n = strlen(o->error);

	if (o->status[0] != '\0')
		snprintf(o->error + n, sizeof(o->error) - n, "%s(status %s)",
		    n > 0 ? " " : "", o->status);
	if (o->error[0] == '\0')
		snprintf(o->error, sizeof(o->error), "the server refused the "
		    "login without a reason");
	oauth2_free_secret(&o->token, &o->token_len);
	oauth2_free_secret(&o->response, &o->response_len);
	o->phase = OA_REJECTED;
}

/* The server took the token: the client is logged in. */
void
proto_oauth2_succeeded(struct proto_filter *f)
{
	proto_oauth2_forget(f);
}

/*
 * Log in with OAuth2 instead of passing the client's login on.  Without
 * memory the filter fails, so that a caller that does not look cannot
 * pass a password on.
 */
int
proto_filter_use_oauth2(struct proto_filter *f)
{
	if (f->oauth2 == NULL && (f->oauth2 = calloc(1,
	    sizeof(*f->oauth2))) == NULL)
		return proto_filter_fail(f, "out of memory");
	return 0;
}

/* Wipe and free the login of a filter that goes away. */
void
proto_oauth2_free(struct proto_filter *f)
{
	if (f->oauth2 == NULL)
		return;
	oauth2_wipe_secrets(f->oauth2);
	proto_wipe(f->oauth2, sizeof(*f->oauth2));
	free(f->oauth2);
	f->oauth2 = NULL;
}

/* Where the login is, as the session sees it. */
enum proto_login
proto_filter_login(const struct proto_filter *f)
{
	if (f->oauth2 == NULL)
		return PROTO_LOGIN_NONE;
	switch (f->oauth2->phase) {
	case OA_WANTED:
		return PROTO_LOGIN_WANTED;
	case OA_CAPS_WAIT:
	case OA_CAPS_SENT:
	case OA_AUTH_SENT:
	case OA_RESPONSE_SENT:
	case OA_ERROR_ANSWERED:
		return PROTO_LOGIN_SENT;
	case OA_REJECTED:
		return PROTO_LOGIN_REJECTED;
	case OA_IDLE:
	case OA_REFUSING:
		break;
	}
	return PROTO_LOGIN_NONE;
}

/* The credentials of the login under way ("" when there is none). */
void
proto_filter_login_credentials(const struct proto_filter *f,
    const char **user, const char **password, size_t *pwlen)
{
	const struct proto_oauth2	*o = f->oauth2;

	*user = "";
	*password = "";
	*pwlen = 0;
	if (proto_filter_login(f) == PROTO_LOGIN_NONE)
		return;
	*user = o->user;
	*password = o->password;
	*pwlen = o->password_len;
}

/* Whether a token can go into a SASL message as it is. */
static int
oauth2_token_ok(const char *token, size_t len)
{
	size_t	i;

	if (len == 0 || len > PROTO_TOKEN_MAX)
		return 0;
	/* RFC 6750 b64token is narrower; any visible ASCII is safe here. */
	for (i = 0; i < len; i++)
		if ((unsigned char)token[i] <= ' ' ||
		    (unsigned char)token[i] >= 0x7f)
			return 0;
	return 1;
}

/* Log in to the server with an access token. */
int
proto_filter_login_token(struct proto_filter *f, const char *token,
    struct evbuffer *to_server)
{
	struct proto_oauth2	*o = f->oauth2;
	size_t			 len;

	if (o == NULL || f->reason[0] != '\0' || f->done ||
	    (o->phase != OA_WANTED && o->phase != OA_REJECTED))
		return -1;
	len = strnlen(token, PROTO_TOKEN_MAX + 1);
	if (!oauth2_token_ok(token, len))
		return -1;
	oauth2_free_secret(&o->token, &o->token_len);
	if ((o->token = malloc(len + 1)) == NULL)
		return -1;
	memcpy(o->token, token, len + 1);
	o->token_len = len;
	o->to_server = to_server;
	o->status[0] = '\0';
	o->error[0] = '\0';
	o->phase = OA_CAPS_WAIT;
	return proto_oauth2_proceed(f);
}

/* End the login under way without success. */
int
proto_filter_login_refuse(struct proto_filter *f, int temporary, int alert,
    const char *text, struct evbuffer *to_client)
{
	struct proto_oauth2	*o = f->oauth2;
	char			 safe[PROTO_REFUSAL_MAX + 1];

	if (o == NULL || f->reason[0] != '\0' || f->done ||
	    (o->phase != OA_WANTED && o->phase != OA_REJECTED))
		return -1;
	proto_one_line(safe, sizeof(safe), text == NULL || text[0] == '\0' ?
	    OAUTH2_REFUSAL_DEFAULT : text);
	oauth2_wipe_secrets(o);
	return f->ops->oauth2_refuse(f, temporary, alert, safe, to_client);
}

/* What the server said when it refused the token. */
const char *
proto_filter_login_error(const struct proto_filter *f)
{
	if (f->oauth2 == NULL || f->oauth2->phase != OA_REJECTED)
		return "";
	return f->oauth2->error;
}
