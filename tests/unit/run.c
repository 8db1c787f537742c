/*
 * run.c - run every unit test suite; exits non-zero when any test fails.
 *
 * Tests fork by default (CK_FORK=no runs them in-process, e.g. under
 * valgrind) and are run from the top of the source tree.
 */
#define _XOPEN_SOURCE 700	/* nftw() */

#include <stdio.h>
#include <stdlib.h>
#include <ftw.h>

#include "unit.h"

/* Remove one entry, for nftw(). */
static int
unit_remove_entry(const char *path, const struct stat *st, int flag,
    struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/* Remove a test's temporary tree: files, links, FIFOs and directories. */
void
unit_remove_tree(const char *top)
{
	nftw(top, unit_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Every suite, in the order they run. */
static Suite *(*const suites[])(void) = {
	config_suite,
	proto_suite,
	proto_imap_suite,
	proto_pop3_suite,
	proto_smtp_suite,
	proto_oauth2_suite,
	proto_local_suite,
	tls_suite,
	localcert_suite,
	safefile_suite,
	status_suite,
	tokenstore_suite,
	fuzz_suite,
	http_suite,
	oauth2_suite,
};

/* Run all suites and report. */
int
main(void)
{
	SRunner	*sr;
	size_t	 i;
	int	 failed;

	sr = srunner_create(NULL);
	for (i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
		srunner_add_suite(sr, suites[i]());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
