/*
 * service.h - one configured service at run time: its settings and its TLS
 * contexts (toward the server; toward mail clients with local_tls), shared
 * by its listeners and sessions and freed with the last.
 */
#ifndef MAILTLSD_SERVICE_H
#define MAILTLSD_SERVICE_H

#include <stddef.h>

#include "config.h"

struct pool;
struct stats;
struct tls_ctx;

struct service {
	struct service_config	 cfg;
	struct tls_ctx		*tls;		/* toward the mail server */
	struct tls_ctx		*local_tls_ctx;	/* toward clients, or NULL */
	struct pool		*pool;		/* NULL when pool_size = 0 */
	struct stats		*stats;		/* NULL: not counted (-t) */
	unsigned		 refs;
};

/*
 * Build a service (parses its CA chain and keys, and with local_tls its
 * local_cert/local_key, which must be set by then); NULL with err set.
 */
struct service	*service_new(const struct service_config *, char *err,
		    size_t errlen);
struct service	*service_ref(struct service *);
void		 service_unref(struct service *);

#endif /* MAILTLSD_SERVICE_H */
