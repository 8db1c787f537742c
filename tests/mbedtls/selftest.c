/*
 * selftest.c - mbedTLS's own self-tests of the library mailtlsd is linked
 * with (make check runs it as make mbedtls-selftest): every module that the
 * library's configuration has and that ships a self-test, then every
 * certificate of the system's CA bundle, which must all parse (a hash or key
 * type missing from the configuration would drop trust anchors silently).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/version.h>
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#include <mbedtls/build_info.h>
#else
#include <mbedtls/config.h>
#endif
#include <mbedtls/aes.h>
#include <mbedtls/base64.h>
#include <mbedtls/bignum.h>
#include <mbedtls/chacha20.h>
#include <mbedtls/chachapoly.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/gcm.h>
#include <mbedtls/hmac_drbg.h>
#include <mbedtls/poly1305.h>
#include <mbedtls/rsa.h>
#include <mbedtls/sha1.h>
#include <mbedtls/sha256.h>
#include <mbedtls/sha512.h>
#include <mbedtls/x509_crt.h>

#define CA_BUNDLE	"/etc/ssl/certs/ca-certificates.crt"

struct selftest {
	const char	*name;
	int		(*run)(int verbose);
};

static const struct selftest tests[] = {
#if defined(MBEDTLS_SELF_TEST)
#if defined(MBEDTLS_AES_C)
	{ "aes", mbedtls_aes_self_test },
#endif
#if defined(MBEDTLS_GCM_C)
	{ "gcm", mbedtls_gcm_self_test },
#endif
#if defined(MBEDTLS_CHACHA20_C)
	{ "chacha20", mbedtls_chacha20_self_test },
#endif
#if defined(MBEDTLS_POLY1305_C)
	{ "poly1305", mbedtls_poly1305_self_test },
#endif
#if defined(MBEDTLS_CHACHAPOLY_C)
	{ "chachapoly", mbedtls_chachapoly_self_test },
#endif
#if defined(MBEDTLS_SHA1_C)
	{ "sha1", mbedtls_sha1_self_test },
#endif
#if defined(MBEDTLS_SHA256_C)
	{ "sha256", mbedtls_sha256_self_test },
#endif
#if MBEDTLS_VERSION_NUMBER >= 0x03000000 && defined(MBEDTLS_SHA384_C)
	{ "sha384", mbedtls_sha384_self_test },
#endif
#if defined(MBEDTLS_SHA512_C)
	{ "sha512", mbedtls_sha512_self_test },
#endif
#if defined(MBEDTLS_BASE64_C)
	{ "base64", mbedtls_base64_self_test },
#endif
#if defined(MBEDTLS_BIGNUM_C)
	{ "bignum", mbedtls_mpi_self_test },
#endif
#if defined(MBEDTLS_RSA_C)
	{ "rsa", mbedtls_rsa_self_test },
#endif
#if defined(MBEDTLS_ECP_C)
	{ "ecp", mbedtls_ecp_self_test },
#endif
#if defined(MBEDTLS_CTR_DRBG_C)
	{ "ctr_drbg", mbedtls_ctr_drbg_self_test },
#endif
#if defined(MBEDTLS_HMAC_DRBG_C)
	{ "hmac_drbg", mbedtls_hmac_drbg_self_test },
#endif
#if defined(MBEDTLS_ENTROPY_C)
	{ "entropy", mbedtls_entropy_self_test },
#endif
#endif /* MBEDTLS_SELF_TEST */
	{ NULL, NULL }
};

/* Every certificate of the bundle parses: 0, or the number that failed. */
static int
check_ca_bundle(const char *path)
{
	mbedtls_x509_crt	chain;
	const mbedtls_x509_crt	*c;
	int			ret, n = 0;

	mbedtls_x509_crt_init(&chain);
	ret = mbedtls_x509_crt_parse_file(&chain, path);
	for (c = &chain; c != NULL && c->version != 0; c = c->next)
		n++;
	mbedtls_x509_crt_free(&chain);
	if (ret < 0) {
		printf("  %s: cannot read it (-0x%04x)\n", path,
		    (unsigned)-ret);
		return 1;
	}
	printf("  %s: %d certificates parsed, %d failed\n", path, n, ret);
	return ret;
}

int
main(void)
{
	char		 version[32];
	const struct selftest *t;
	int		 passed = 0, failed = 0;

	mbedtls_version_get_string(version);
	printf("mbedTLS %s self-tests\n", version);
	for (t = tests; t->name != NULL; t++) {
		if (t->run(0) == 0) {
			passed++;
			printf("  %-12s passed\n", t->name);
		} else {
			failed++;
			printf("  %-12s FAILED\n", t->name);
		}
	}
	if (passed + failed == 0) {
		printf("  the library has no self-tests (MBEDTLS_SELF_TEST)\n");
		failed++;
	}
	if (access(CA_BUNDLE, R_OK) == 0) {
		if (check_ca_bundle(CA_BUNDLE) != 0)
			failed++;
		else
			passed++;
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
