/*
 * fuzz_config.c - libFuzzer target: arbitrary bytes as a configuration
 * file for config_load().  The bytes go into a memory file (memfd) that
 * config_load() opens by its /proc/self/fd path, as it would open any file.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"

/* One input; a broken check aborts, which libFuzzer reports as a crash. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int	fd = -1;
	static char	path[64];
	char		why[512];

	if (fd == -1) {
		if ((fd = memfd_create("mailtlsd.conf", 0)) == -1) {
			perror("fuzz_config: memfd_create");
			abort();
		}
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) != 0 ||
	    (size > 0 && pwrite(fd, data, size, 0) != (ssize_t)size)) {
		perror("fuzz_config: writing the memory file");
		abort();
	}
	if (fuzz_config_run(path, why, sizeof(why)) != 0) {
		fprintf(stderr, "fuzz_config: %s\n", why);
		abort();
	}
	return 0;
}
