/*
 * addr.h - socket addresses as text: for logs, and the "HOST:PORT" syntax of
 * the configuration file.
 */
#ifndef MAILTLSD_ADDR_H
#define MAILTLSD_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define ADDR_TEXT_MAX	64	/* "[IPv6]:port" with room to spare */
#define ADDR_HOST_MAX	256	/* host name length + NUL */

/* Format sa as "1.2.3.4:993" or "[::1]:993" into buf. */
void	addr_format(const struct sockaddr *sa, char *buf, size_t len);

/*
 * Parse "ADDR:PORT" / "[V6]:PORT" (numeric addresses only) into ss and len.
 * Returns 0, or -1 with a reason in err.
 */
int	addr_parse_numeric(const char *text, struct sockaddr_storage *ss,
	    socklen_t *len, char *err, size_t errlen);

/*
 * Parse "HOST:PORT" / "[V6]:PORT", HOST a host name or a numeric address.
 * Returns 0, or -1 with a reason in err.
 */
int	addr_parse_host_port(const char *text, char *host, size_t hostlen,
	    uint16_t *port, char *err, size_t errlen);

/*
 * Parse a decimal number in [min, max]: a port, or a number of the
 * configuration file.  0 or -1.
 */
int	addr_parse_uint(const char *s, unsigned min, unsigned max,
	    unsigned *out);

/* Whether sa is a loopback address (IPv4-mapped included). */
int	addr_is_loopback(const struct sockaddr *sa);

/* Whether s is a numeric IPv4 or IPv6 address. */
int	addr_is_numeric(const char *s);

/* Whether s is a DNS host name or a numeric IPv4 or IPv6 address. */
int	addr_is_host(const char *s);

#endif /* MAILTLSD_ADDR_H */
