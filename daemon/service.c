/*
 * service.c - reference-counted run-time services.
 *
 * A reload builds new services; sessions still running keep the old one
 * (and its TLS settings) alive until they end.
 */
#include <stdlib.h>
#include <stdio.h>

#include "localcert.h"
#include "service.h"
#include "stats.h"
#include "tls.h"

/* Build a service from its configuration. */
struct service *
service_new(const struct service_config *sc, char *err, size_t errlen)
{
	struct service	*svc;

	if ((svc = calloc(1, sizeof(*svc))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	svc->cfg = *sc;
	svc->refs = 1;
	if ((svc->tls = tls_ctx_new_uplink(sc, err, errlen)) == NULL) {
		free(svc);
		return NULL;
	}
	if (sc->local_tls != LOCAL_TLS_NONE &&
	    (svc->local_tls_ctx = tls_ctx_new_local(sc, localcert_pair(sc),
	    err, errlen)) == NULL) {
		service_unref(svc);
		return NULL;
	}
	return svc;
}

/* Take one more reference. */
struct service *
service_ref(struct service *svc)
{
	svc->refs++;
	return svc;
}

/* Drop a reference, freeing the service with the last; NULL is fine. */
void
service_unref(struct service *svc)
{
	if (svc == NULL || --svc->refs > 0)
		return;
	tls_ctx_free(svc->tls);
	tls_ctx_free(svc->local_tls_ctx);
	stats_unref(svc->stats);
	free(svc);
}
