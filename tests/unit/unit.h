/*
 * unit.h - the check suites of the unit tests, one per module; run.c runs
 * every suite listed here.
 */
#ifndef MAILTLSD_UNIT_H
#define MAILTLSD_UNIT_H

#include <check.h>

Suite	*config_suite(void);
Suite	*proto_suite(void);
Suite	*proto_imap_suite(void);
Suite	*proto_pop3_suite(void);
Suite	*proto_smtp_suite(void);
Suite	*proto_oauth2_suite(void);
Suite	*proto_local_suite(void);
Suite	*tls_suite(void);
Suite	*localcert_suite(void);
Suite	*safefile_suite(void);
Suite	*status_suite(void);
Suite	*tokenstore_suite(void);
Suite	*fuzz_suite(void);
Suite	*http_suite(void);
Suite	*oauth2_suite(void);

/* Remove a test's temporary tree (run.c). */
void	 unit_remove_tree(const char *top);

#endif /* MAILTLSD_UNIT_H */
