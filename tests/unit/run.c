/*
 * run.c - run every unit test suite; exits non-zero when any test fails.
 *
 * Tests fork by default (CK_FORK=no runs them in-process, e.g. under
 * valgrind) and are run from the top of the source tree.
 */
#include <stdlib.h>

#include "unit.h"

/* Every suite, in the order they run. */
static Suite *(*const suites[])(void) = {
	config_suite,
	proto_suite,
	proto_imap_suite,
	proto_pop3_suite,
	proto_smtp_suite,
	proto_local_suite,
	tls_suite,
	localcert_suite,
	safefile_suite,
	fuzz_suite,
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
