/*
 * addr.h - socket addresses as text for logs.
 */
#ifndef MAILTLSD_ADDR_H
#define MAILTLSD_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

#define ADDR_TEXT_MAX	64	/* "[IPv6]:port" with room to spare */

/* Format sa as "1.2.3.4:993" or "[::1]:993" into buf. */
void	addr_format(const struct sockaddr *sa, char *buf, size_t len);

#endif /* MAILTLSD_ADDR_H */
