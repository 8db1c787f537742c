/*
 * service.h - one configured service at run time: its settings and its TLS
 * context, shared by its listeners and sessions and freed with the last.
 */
#ifndef MAILTLSD_SERVICE_H
#define MAILTLSD_SERVICE_H

#include <stddef.h>

#include "config.h"

struct pool;
struct tls_ctx;

struct service {
	struct service_config	 cfg;
	struct tls_ctx		*tls;
	struct pool		*pool;		/* NULL when pool_size = 0 */
	unsigned		 refs;
};

/* Build a service (parses its CA chain and keys); NULL with err set. */
struct service	*service_new(const struct service_config *, char *err,
		    size_t errlen);
struct service	*service_ref(struct service *);
void		 service_unref(struct service *);

#endif /* MAILTLSD_SERVICE_H */
