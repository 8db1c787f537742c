/*
 * localcert.h - the self-signed certificate mailtlsd presents to mail
 * clients (local_tls) when no local_cert is configured.
 *
 * Made on first start (an EC P-256 key, SHA-256, valid from yesterday for
 * ten years, names localhost, 127.0.0.1, ::1 and every listen address of
 * the services that use it), stored as state_dir/local.crt and
 * state_dir/local.key (0600, owned by the configured user) and reused on
 * later starts; made again when it expires within LOCALCERT_RENEW_DAYS or
 * no longer covers a configured listen address.  Its SHA-256 fingerprint
 * is logged, for clients that pin it.
 */
#ifndef MAILTLSD_LOCALCERT_H
#define MAILTLSD_LOCALCERT_H

#include <stddef.h>
#include <time.h>
#include <sys/types.h>

#include "config.h"

struct sockaddr;

#define LOCALCERT_CERT_FILE	"local.crt"
#define LOCALCERT_KEY_FILE	"local.key"
#define LOCALCERT_NAMES_MAX	64	/* distinct names in one certificate */
#define LOCALCERT_VALID_YEARS	10
#define LOCALCERT_RENEW_DAYS	30	/* made again this close to expiry */
#define LOCALCERT_FINGERPRINT_LEN 96	/* "AB:CD:...:EF" and NUL */

/* One subjectAltName: a DNS name, or an IPv4/IPv6 address (4/16 bytes). */
struct localcert_name {
	int		is_ip;
	size_t		len;
	unsigned char	value[CONFIG_HOST_MAX];
};

/* The names a certificate must cover. */
struct localcert_names {
	struct localcert_name	name[LOCALCERT_NAMES_MAX];
	int			n;
};

/* Start a list with localhost, 127.0.0.1 and ::1. */
void	localcert_names_init(struct localcert_names *);

/* Add a DNS name or an IP address literal (once); 0, or -1 when full/bad. */
int	localcert_names_add(struct localcert_names *, const char *text);

/* Add the address of a listen socket; wildcards add nothing.  0 or -1. */
int	localcert_names_add_addr(struct localcert_names *,
	    const struct sockaddr *);

/*
 * Whether dir holds a certificate and matching key that cover names and
 * stay valid for LOCALCERT_RENEW_DAYS after now: 1, or 0 with why.
 */
int	localcert_check(const char *dir, const struct localcert_names *,
	    time_t now, char *why, size_t whylen);

/*
 * Write a new key and certificate for names into dir, valid from a day
 * before now for LOCALCERT_VALID_YEARS, each file replaced atomically with
 * mode 0600 and, unless uid is (uid_t)-1, owned by uid:gid.  0, or -1
 * with err.
 */
int	localcert_generate(const char *dir, const struct localcert_names *,
	    time_t now, uid_t uid, gid_t gid, char *err, size_t errlen);

/* The SHA-256 fingerprint of a PEM certificate file; 0 or -1. */
int	localcert_fingerprint(const char *cert_path,
	    char out[LOCALCERT_FINGERPRINT_LEN]);

/*
 * Make sure dir (created 0700 if missing) holds a certificate for names,
 * generating one if needed, and log which and its fingerprint.  0, or -1
 * with err.
 */
int	localcert_ensure(const char *dir, const struct localcert_names *,
	    uid_t uid, gid_t gid, char *err, size_t errlen);

/*
 * For every service with local_tls and no local_cert: ensure the
 * certificate under cfg->state_dir covers its listen addresses and set
 * its local_cert/local_key to it.  Files and directory go to the
 * configured user when running as root.  0, or -1 with err.
 */
int	localcert_prepare(struct config *, char *err, size_t errlen);

#endif /* MAILTLSD_LOCALCERT_H */
