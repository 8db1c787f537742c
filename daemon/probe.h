/*
 * probe.h - mailtlsd -p NAME | all: reach a service's mail server exactly
 * as a session would (resolve, connect, STARTTLS dialogue, TLS handshake
 * with the service's own settings), then ask for the capabilities a mail
 * client would see, say goodbye, and print a readable report on stdout
 * ending in one "VERDICT name: OK|FAIL - ..." line per service.  No mail
 * data and no credentials are ever sent.
 */
#ifndef MAILTLSD_PROBE_H
#define MAILTLSD_PROBE_H

struct config;

/*
 * Probe the service called name, or every service for "all": 0 when each
 * would work, 1 otherwise (also for a name no service has, with a message
 * on stderr).
 */
int	probe_run(const struct config *, const char *name);

#endif /* MAILTLSD_PROBE_H */
