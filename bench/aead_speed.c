/*
 * aead_speed.c - the raw AEAD speed of the linked mbedTLS on this machine.
 *
 * Seals and opens 16 KiB records (the largest TLS record) with a 13-byte
 * additional data block and a 16-byte tag, the way the TLS 1.2 record
 * layer calls mbedtls_cipher_auth_{en,de}crypt_ext(), for AES-128-GCM,
 * AES-256-GCM and ChaCha20-Poly1305, on one core.  No program that uses
 * this mbedTLS for its records can move data faster than this.  Speeds
 * are per second of this process's CPU time, so that other load on the
 * machine does not lower the ceiling; the wall-clock speed follows.
 *
 *   aead_speed [SECONDS]      default 1 second per cipher and direction
 *
 * One line per measurement on stdout:
 *   AES-128-GCM encrypt 1234.5 MB/s (wall 1200.3)     (MB = 10^6 bytes)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/cipher.h>
#include <mbedtls/version.h>

#define RECORD_LEN	16384
#define AD_LEN		13
#define IV_LEN		12
#define TAG_LEN		16
#define BATCH		64	/* records between clock readings */

struct aead {
	const char		*name;
	mbedtls_cipher_type_t	 type;
	unsigned int		 key_bits;
};

static const struct aead aeads[] = {
	{ "AES-128-GCM", MBEDTLS_CIPHER_AES_128_GCM, 128 },
	{ "AES-256-GCM", MBEDTLS_CIPHER_AES_256_GCM, 256 },
	{ "ChaCha20-Poly1305", MBEDTLS_CIPHER_CHACHA20_POLY1305, 256 },
};

/* Seconds of a clock: CLOCK_MONOTONIC or CLOCK_PROCESS_CPUTIME_ID. */
static double
now(clockid_t clock)
{
	struct timespec	ts;

	clock_gettime(clock, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Fill buf with bytes that are not all zero. */
static void
fill(unsigned char *buf, size_t len)
{
	size_t	i;

	for (i = 0; i < len; i++)
		buf[i] = (unsigned char)(i * 131 + 7);
}

/*
 * Seal (or, with decrypt, open) records for about secs of CPU time; return
 * MB per CPU second and MB per wall-clock second.
 */
static int
measure(const struct aead *a, int decrypt, double secs, double *mbps,
    double *wall_mbps)
{
	mbedtls_cipher_context_t	 ctx;
	const mbedtls_cipher_info_t	*info;
	static unsigned char		 plain[RECORD_LEN];
	static unsigned char		 sealed[RECORD_LEN + TAG_LEN];
	static unsigned char		 out[RECORD_LEN + TAG_LEN];
	unsigned char			 key[32], iv[IV_LEN], ad[AD_LEN];
	unsigned long long		 records = 0;
	double				 start, wall_start, elapsed;
	size_t				 olen;
	int				 i, ret = -1;

	mbedtls_cipher_init(&ctx);
	fill(key, sizeof(key));
	fill(iv, sizeof(iv));
	fill(ad, sizeof(ad));
	fill(plain, sizeof(plain));
	if ((info = mbedtls_cipher_info_from_type(a->type)) == NULL ||
	    mbedtls_cipher_setup(&ctx, info) != 0 ||
	    mbedtls_cipher_setkey(&ctx, key, (int)a->key_bits,
	    decrypt ? MBEDTLS_DECRYPT : MBEDTLS_ENCRYPT) != 0)
		goto out;
	if (decrypt) {
		/* One valid record to open again and again. */
		mbedtls_cipher_context_t	enc;

		mbedtls_cipher_init(&enc);
		ret = mbedtls_cipher_setup(&enc, info) != 0 ||
		    mbedtls_cipher_setkey(&enc, key, (int)a->key_bits,
		    MBEDTLS_ENCRYPT) != 0 ||
		    mbedtls_cipher_auth_encrypt_ext(&enc, iv, IV_LEN, ad,
		    AD_LEN, plain, RECORD_LEN, sealed, sizeof(sealed), &olen,
		    TAG_LEN) != 0 ? -1 : 0;
		mbedtls_cipher_free(&enc);
		if (ret != 0)
			goto out;
		ret = -1;
	}
	start = now(CLOCK_PROCESS_CPUTIME_ID);
	wall_start = now(CLOCK_MONOTONIC);
	do {
		for (i = 0; i < BATCH; i++) {
			if (decrypt) {
				if (mbedtls_cipher_auth_decrypt_ext(&ctx, iv,
				    IV_LEN, ad, AD_LEN, sealed, sizeof(sealed),
				    out, sizeof(out), &olen, TAG_LEN) != 0)
					goto out;
			} else {
				/* A new nonce per record, as TLS does. */
				iv[IV_LEN - 1] = (unsigned char)records;
				if (mbedtls_cipher_auth_encrypt_ext(&ctx, iv,
				    IV_LEN, ad, AD_LEN, plain, RECORD_LEN, out,
				    sizeof(out), &olen, TAG_LEN) != 0)
					goto out;
			}
			records++;
		}
		elapsed = now(CLOCK_PROCESS_CPUTIME_ID) - start;
	} while (elapsed < secs);
	*mbps = (double)records * RECORD_LEN / elapsed / 1e6;
	*wall_mbps = (double)records * RECORD_LEN /
	    (now(CLOCK_MONOTONIC) - wall_start) / 1e6;
	ret = 0;
out:
	mbedtls_cipher_free(&ctx);
	return ret;
}

int
main(int argc, char *argv[])
{
	char	version[32];
	double	secs = 1.0, mbps, wall_mbps;
	size_t	i;
	int	decrypt;

	if (argc > 2 || (argc == 2 && (secs = atof(argv[1])) <= 0)) {
		fprintf(stderr, "usage: aead_speed [SECONDS]\n");
		return 2;
	}
	mbedtls_version_get_string(version);
	printf("mbedTLS %s, %d-byte records\n", version, RECORD_LEN);
	for (i = 0; i < sizeof(aeads) / sizeof(aeads[0]); i++)
		for (decrypt = 0; decrypt <= 1; decrypt++) {
			if (measure(&aeads[i], decrypt, secs, &mbps,
			    &wall_mbps) != 0) {
				printf("%s %s unavailable\n", aeads[i].name,
				    decrypt ? "decrypt" : "encrypt");
				continue;
			}
			printf("%s %s %.1f MB/s (wall %.1f)\n",
			    aeads[i].name, decrypt ? "decrypt" : "encrypt",
			    mbps, wall_mbps);
			fflush(stdout);
		}
	return 0;
}
