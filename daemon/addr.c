/*
 * addr.c - socket addresses as text: formatting for logs, and the
 * "ADDR:PORT", "[V6]:PORT" and "HOST:PORT" syntax of the configuration file.
 */
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "addr.h"

/* Format an IPv4 or IPv6 address with its port. */
void
addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
	char	host[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)sa;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host,
		    (unsigned)ntohs(sin6->sin6_port));
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)sa;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host,
		    (unsigned)ntohs(sin->sin_port));
	} else
		snprintf(buf, len, "(unknown address family %d)",
		    sa->sa_family);
}

/* Parse a decimal number in [min, max]; returns 0 or -1. */
int
addr_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
	unsigned long	v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > max)
			return -1;
	}
	if (v < min)
		return -1;
	*out = (unsigned)v;
	return 0;
}

/* Parse a decimal port number 1..65535; returns 0 or -1. */
static int
parse_port(const char *s, uint16_t *port)
{
	unsigned	v;

	if (addr_parse_uint(s, 1, 65535, &v) == -1)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/* Whether s is a numeric IPv4 (af AF_INET) or IPv6 address. */
static int
is_ip(int af, const char *s)
{
	struct in6_addr	a;

	return inet_pton(af, s, &a) == 1;
}

/* Whether one DNS label (len bytes) is well formed. */
static int
valid_label(const char *s, size_t len)
{
	size_t	i;

	if (len == 0 || len > 63 || s[0] == '-' || s[len - 1] == '-')
		return 0;
	for (i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
			return 0;
	return 1;
}

/* Whether s is a DNS host name (and not something that looks numeric). */
static int
valid_hostname(const char *s)
{
	const char	*dot, *last = s;
	size_t		 len;

	if (strlen(s) > 253)
		return 0;
	for (;;) {
		dot = strchr(s, '.');
		len = dot != NULL ? (size_t)(dot - s) : strlen(s);
		if (!valid_label(s, len))
			return 0;
		last = s;
		if (dot == NULL)
			break;
		s = dot + 1;
	}
	/* No top-level domain is all digits: "1.2.3" is a bad address. */
	return strspn(last, "0123456789") != strlen(last);
}

/* Whether s is a numeric IPv4 or IPv6 address. */
int
addr_is_numeric(const char *s)
{
	return is_ip(AF_INET, s) || is_ip(AF_INET6, s);
}

/* Whether s is a host name or a numeric IPv4 or IPv6 address. */
int
addr_is_host(const char *s)
{
	return addr_is_numeric(s) || valid_hostname(s);
}

/*
 * Split "HOST:PORT" or "[HOST]:PORT".  Returns 0, or -1 with a reason in err.
 */
static int
split_host_port(const char *text, char *host, size_t hostlen, uint16_t *port,
    int *bracketed, char *err, size_t errlen)
{
	const char	*end, *colon;
	size_t		 len;

	*bracketed = text[0] == '[';
	if (*bracketed) {
		if ((end = strchr(text, ']')) == NULL) {
			snprintf(err, errlen, "missing ']' after IPv6 address");
			return -1;
		}
		text++;
		colon = end + 1;
		if (*colon != ':') {
			snprintf(err, errlen, "expected ':PORT' after ']'");
			return -1;
		}
	} else {
		if ((colon = strrchr(text, ':')) == NULL) {
			snprintf(err, errlen, "missing ':PORT'");
			return -1;
		}
		end = colon;
		if (memchr(text, ':', (size_t)(colon - text)) != NULL) {
			snprintf(err, errlen, "write IPv6 addresses in "
			    "brackets, as [ADDR]:PORT");
			return -1;
		}
	}
	len = (size_t)(end - text);
	if (len == 0) {
		snprintf(err, errlen, "missing address before ':PORT'");
		return -1;
	}
	if (len >= hostlen) {
		snprintf(err, errlen, "address or host name too long");
		return -1;
	}
	if (colon[1] == '\0') {
		snprintf(err, errlen, "missing port after ':'");
		return -1;
	}
	if (parse_port(colon + 1, port) == -1) {
		snprintf(err, errlen, "port must be a number from 1 to 65535");
		return -1;
	}
	memcpy(host, text, len);
	host[len] = '\0';
	return 0;
}

/* Whether a socket address is a loopback address (IPv4-mapped included). */
int
addr_is_loopback(const struct sockaddr *sa)
{
	const struct sockaddr_in	*sin = (const void *)sa;
	const struct sockaddr_in6	*sin6 = (const void *)sa;
	const uint8_t			*b;

	if (sa->sa_family == AF_INET)
		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family != AF_INET6)
		return 0;
	if (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr))
		return 1;
	b = sin6->sin6_addr.s6_addr;
	return IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) && b[12] == 127;
}

/*
 * Parse "ADDR:PORT" / "[V6]:PORT" (numeric addresses only) into ss.
 * Returns 0, or -1 with a reason in err.
 */
int
addr_parse_numeric(const char *text, struct sockaddr_storage *ss,
    socklen_t *len, char *err, size_t errlen)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	char			 host[INET6_ADDRSTRLEN + 1];
	uint16_t		 port;
	int			 v6;

	memset(ss, 0, sizeof(*ss));
	*len = 0;
	if (split_host_port(text, host, sizeof(host), &port, &v6, err,
	    errlen) == -1)
		return -1;
	if (v6 && inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*len = sizeof(*sin6);
	} else if (!v6 && inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*len = sizeof(*sin);
	} else {
		snprintf(err, errlen, "'%s' is not a numeric %s address "
		    "(e.g. 127.0.0.1:1143 or [::1]:1143)", host,
		    v6 ? "IPv6" : "IPv4");
		return -1;
	}
	return 0;
}

/*
 * Parse "HOST:PORT" / "[V6]:PORT", HOST a host name or a numeric address.
 * Returns 0, or -1 with a reason in err.
 */
int
addr_parse_host_port(const char *text, char *host, size_t hostlen,
    uint16_t *port, char *err, size_t errlen)
{
	char		buf[ADDR_HOST_MAX];
	uint16_t	p;
	int		v6;

	if (split_host_port(text, buf, sizeof(buf), &p, &v6, err,
	    errlen) == -1)
		return -1;
	if (v6 && !is_ip(AF_INET6, buf)) {
		snprintf(err, errlen, "'%s' is not an IPv6 address (only "
		    "IPv6 addresses go in brackets)", buf);
		return -1;
	}
	if (!v6 && !is_ip(AF_INET, buf) && !valid_hostname(buf)) {
		snprintf(err, errlen, "'%s' is not a valid host name or IPv4 "
		    "address", buf);
		return -1;
	}
	if (strlen(buf) >= hostlen) {
		snprintf(err, errlen, "host name too long");
		return -1;
	}
	memcpy(host, buf, strlen(buf) + 1);
	*port = p;
	return 0;
}
