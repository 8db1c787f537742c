/*
 * localcert.h - the self-signed certificate mailtlsd presents to mail
 * clients (local_tls) when no local_cert is configured.
 *
 * Made on first start (an EC P-256 key, SHA-256, valid from yesterday for
 * LOCALCERT_VALID_DAYS, names localhost, 127.0.0.1, ::1 and every listen
 * address of the services that use it), stored as state_dir/local.crt and
 * state_dir/local.key (0600, owned by the configured user) and reused on
 * later starts; made again when it expires within LOCALCERT_RENEW_DAYS or
 * no longer covers a configured listen address.  Its SHA-256 fingerprint
 * is logged, for clients that pin it.
 *
 * state_dir and both files are trusted only when nobody but root and the
 * user the daemon runs as could have put them there: a symbolic link, a
 * FIFO, a file of another user or a key others may read is not used.
 */
#ifndef MAILTLSD_LOCALCERT_H
#define MAILTLSD_LOCALCERT_H

#include <stddef.h>
#include <time.h>
#include <sys/types.h>

#include "config.h"

struct sockaddr;
struct tls_keypair;

#define LOCALCERT_CERT_FILE	"local.crt"
#define LOCALCERT_KEY_FILE	"local.key"
#define LOCALCERT_NAMES_MAX	64	/* distinct names in one certificate */
/* Apple platforms refuse server certificates valid for over 825 days. */
#define LOCALCERT_VALID_DAYS	820
#define LOCALCERT_APPLE_MAX_DAYS 825	/* an older, longer one is replaced */
#define LOCALCERT_RENEW_DAYS	30	/* made again this close to expiry */
#define LOCALCERT_CHECK_SECS	86400	/* the running daemon looks daily */
#define LOCALCERT_FILE_MAX	65536	/* a larger file is not one of ours */
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
 * stay valid for LOCALCERT_RENEW_DAYS after now, in files the user uid
 * (this process's user when (uid_t)-1) can read and may trust: 1, or 0
 * with why.
 */
int	localcert_check(const char *dir, const struct localcert_names *,
	    time_t now, uid_t uid, char *why, size_t whylen);

/*
 * Write a new key and certificate for names into dir, valid from a day
 * before now for LOCALCERT_VALID_DAYS, each file replaced atomically with
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
 * generating one if needed, hold it for localcert_pair() and log which and
 * its fingerprint.  Both files are read once, through descriptors that do
 * not follow symbolic links: the bytes checked, held and fingerprinted
 * are the same.  Unless
 * uid is (uid_t)-1, dir and the files in it that root owns are given to
 * uid:gid first.  dir must not be a symbolic link, writable by group or
 * others, or owned by anyone but root and the user.  *renew_at (unless
 * NULL) is when the certificate is to be made again.  0, or -1 with err.
 */
int	localcert_ensure(const char *dir, const struct localcert_names *,
	    uid_t uid, gid_t gid, time_t *renew_at, char *err, size_t errlen);

/*
 * For every service with local_tls and no local_cert: ensure the
 * certificate under cfg->state_dir covers its listen addresses and set
 * its local_cert/local_key to it.  Files and directory go to the
 * configured user when running as root.  *renew_at is when the
 * certificate is to be made again, 0 when no service uses it.  0, or -1
 * with err.
 */
int	localcert_prepare(struct config *, time_t *renew_at, char *err,
	    size_t errlen);

/*
 * Create state_dir (0700) when missing and, started as root with user =,
 * give it to that user; for OAuth2 token files.  0, or -1 with err set.
 */
int	localcert_state_dir(const struct config *, char *err, size_t errlen);

/*
 * The certificate and key read by the last localcert_ensure(), when sc
 * presents them (its local_cert and local_key are their paths), else
 * NULL: a TLS context is to be built from these bytes, not by reading the
 * files again.  Valid until the next localcert_ensure(),
 * localcert_prepare() or localcert_release().
 */
const struct tls_keypair *localcert_pair(const struct service_config *sc);

/* Forget (and zero) what localcert_pair() gives. */
void	localcert_release(void);

/* When a certificate that expires at not_after is to be made again. */
time_t	localcert_renew_time(time_t not_after);

/* Whether renew_at has come at now. */
int	localcert_renew_due(time_t renew_at, time_t now);

/*
 * Seconds from now until the running daemon looks again whether renew_at
 * has come: at most LOCALCERT_CHECK_SECS, since the clock may be set or
 * the machine suspended meanwhile, and a full LOCALCERT_CHECK_SECS once
 * it is past (a renewal that failed is tried again the next day).
 */
long	localcert_next_check(time_t renew_at, time_t now);

#endif /* MAILTLSD_LOCALCERT_H */
