/*
 * addr.c - socket addresses as text.
 */
#include <stdio.h>
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
