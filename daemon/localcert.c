/*
 * localcert.c - the self-signed certificate for local_tls: make it once,
 * keep it in state_dir, check it on every start and reload, make it again
 * when it no longer fits.
 *
 * mbedTLS 2.28 has no writer for subjectAltName or extendedKeyUsage, so
 * both extensions are DER-encoded here with mbedtls_asn1_write_*, which
 * write backwards from the end of a buffer.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <dirent.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/ecp.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#include "localcert.h"
#include "log.h"
#include "safefile.h"
#include "tls.h"

#define LOCALCERT_SUBJECT	"CN=localhost,O=mailtlsd self-signed"
#define LOCALCERT_PEM_MAX	4096
#define LOCALCERT_EXT_MAX	(LOCALCERT_NAMES_MAX * (CONFIG_HOST_MAX + 4))
#define LOCALCERT_SERIAL_LEN	16
#define DAY			86400

/* ---- Names --------------------------------------------------------------- */

/* Whether two names are the same (DNS names ignoring case). */
static int
localcert_name_eq(const struct localcert_name *a,
    const struct localcert_name *b)
{
	if (a->is_ip != b->is_ip || a->len != b->len)
		return 0;
	if (a->is_ip)
		return memcmp(a->value, b->value, a->len) == 0;
	return strncasecmp((const char *)a->value, (const char *)b->value,
	    a->len) == 0;
}

/* Add one name unless it is there. */
static int
localcert_names_put(struct localcert_names *names,
    const struct localcert_name *nm)
{
	int	i;

	for (i = 0; i < names->n; i++)
		if (localcert_name_eq(&names->name[i], nm))
			return 0;
	if (names->n == LOCALCERT_NAMES_MAX)
		return -1;
	names->name[names->n++] = *nm;
	return 0;
}

/* Start with the loopback names. */
void
localcert_names_init(struct localcert_names *names)
{
	memset(names, 0, sizeof(*names));
	(void)localcert_names_add(names, "localhost");
	(void)localcert_names_add(names, "127.0.0.1");
	(void)localcert_names_add(names, "::1");
}

/* Add a DNS name or an address literal. */
int
localcert_names_add(struct localcert_names *names, const char *text)
{
	struct localcert_name	nm;
	size_t			len = strlen(text);

	memset(&nm, 0, sizeof(nm));
	if (inet_pton(AF_INET, text, nm.value) == 1) {
		nm.is_ip = 1;
		nm.len = 4;
	} else if (inet_pton(AF_INET6, text, nm.value) == 1) {
		nm.is_ip = 1;
		nm.len = 16;
	} else {
		if (len == 0 || len >= sizeof(nm.value) ||
		    strspn(text, "abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != len)
			return -1;
		memcpy(nm.value, text, len);
		nm.len = len;
	}
	return localcert_names_put(names, &nm);
}

/* Add a listen socket's address; 0.0.0.0 and :: add nothing. */
int
localcert_names_add_addr(struct localcert_names *names,
    const struct sockaddr *sa)
{
	struct localcert_name		 nm;
	const struct sockaddr_in	*sin = (const void *)sa;
	const struct sockaddr_in6	*sin6 = (const void *)sa;

	memset(&nm, 0, sizeof(nm));
	nm.is_ip = 1;
	if (sa->sa_family == AF_INET) {
		if (sin->sin_addr.s_addr == htonl(INADDR_ANY))
			return 0;
		nm.len = 4;
		memcpy(nm.value, &sin->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		if (IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr))
			return 0;
		nm.len = 16;
		memcpy(nm.value, &sin6->sin6_addr, 16);
	} else
		return -1;
	return localcert_names_put(names, &nm);
}

/* A name as text, for log lines. */
static void
localcert_name_text(const struct localcert_name *nm, char *buf, size_t len)
{
	if (!nm->is_ip)
		snprintf(buf, len, "%.*s", (int)nm->len,
		    (const char *)nm->value);
	else if (inet_ntop(nm->len == 4 ? AF_INET : AF_INET6, nm->value, buf,
	    (socklen_t)len) == NULL)
		snprintf(buf, len, "?");
}

/* ---- Files --------------------------------------------------------------- */

/* dir/file into buf; -1 when it does not fit. */
static int
localcert_path(char *buf, size_t len, const char *dir, const char *file)
{
	int	n = snprintf(buf, len, "%s/%s", dir, file);

	return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* Replace dir/file with data: a 0600 temporary file, then rename(). */
static int
localcert_write_file(const char *dir, const char *file,
    const unsigned char *data, size_t len, uid_t uid, gid_t gid, char *err,
    size_t errlen)
{
	char	tmp[CONFIG_PATH_MAX + 16], path[CONFIG_PATH_MAX + 16];
	int	fd;

	if (localcert_path(path, sizeof(path), dir, file) != 0 ||
	    snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, file) >=
	    (int)sizeof(tmp)) {
		snprintf(err, errlen, "state_dir %s: path too long", dir);
		return -1;
	}
	if ((fd = mkstemp(tmp)) < 0) {
		snprintf(err, errlen, "cannot create a file in %s: %s", dir,
		    strerror(errno));
		return -1;
	}
	if (fchmod(fd, 0600) != 0 || safefile_write_all(fd, data, len) != 0 ||
	    (uid != (uid_t)-1 && fchown(fd, uid, gid) != 0) ||
	    fsync(fd) != 0) {
		snprintf(err, errlen, "cannot write %s: %s", tmp,
		    strerror(errno));
		close(fd);
		unlink(tmp);
		return -1;
	}
	if (close(fd) != 0 || rename(tmp, path) != 0) {
		snprintf(err, errlen, "cannot write %s: %s", path,
		    strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Make the renames durable; a failure only costs a regeneration later. */
static void
localcert_sync_dir(const char *dir)
{
	int	fd;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY)) < 0)
		return;
	(void)fsync(fd);
	close(fd);
}

/* ---- Trusting state_dir -------------------------------------------------- */

/*
 * Anything in state_dir was put there by root or by the user the daemon
 * runs as, or it is not used: another local user must not be able to
 * plant a key mailtlsd then presents to clients.
 */

#define LOCALCERT_OPEN	(O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | \
			    O_NOCTTY)

/* The user who reads the files while the daemon runs: uid, or this one. */
static uid_t
localcert_reader(uid_t uid)
{
	return uid != (uid_t)-1 ? uid : geteuid();
}

/* Whether only root or reader can have written st; why (what path ...). */
static int
localcert_trusted(const struct stat *st, const char *what, const char *path,
    uid_t reader, char *why, size_t whylen)
{
	if (st->st_uid != 0 && st->st_uid != reader) {
		snprintf(why, whylen, "%s%s is owned by uid %lu, not by root "
		    "or the user mailtlsd runs as", what, path,
		    (unsigned long)st->st_uid);
		return 0;
	}
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0) {
		snprintf(why, whylen, "%s%s is writable by group or others",
		    what, path);
		return 0;
	}
	return 1;
}

/*
 * Whether reader, not this process, can read a file, going by its owner
 * and mode: a root-owned 0600 file that root could use at start would
 * fail every reload after the privilege drop.
 */
static int
localcert_readable(const struct stat *st, uid_t reader)
{
	if (reader == 0 || reader == geteuid())
		return 1;	/* root can; this process just opened it */
	if (st->st_uid == reader)
		return (st->st_mode & S_IRUSR) != 0;
	return (st->st_mode & S_IROTH) != 0;
}

/* Whether an open file may be used as local.crt (or, secret, local.key). */
static int
localcert_file_ok(const struct stat *st, const char *path, int secret,
    uid_t reader, char *why, size_t whylen)
{
	if (!S_ISREG(st->st_mode))
		snprintf(why, whylen, "%s is not a regular file", path);
	else if (st->st_nlink != 1)
		snprintf(why, whylen, "%s has other hard links", path);
	else if (!localcert_trusted(st, "", path, reader, why, whylen))
		return 0;
	else if (secret && (st->st_mode & (S_IRGRP | S_IROTH)) != 0)
		snprintf(why, whylen, "%s is readable by group or others",
		    path);
	else if (!localcert_readable(st, reader))
		snprintf(why, whylen, "%s cannot be read by the user mailtlsd "
		    "runs as", path);
	else if (st->st_size > LOCALCERT_FILE_MAX)
		snprintf(why, whylen, "%s is larger than %d bytes", path,
		    LOCALCERT_FILE_MAX);
	else
		return 1;
	return 0;
}

/* Why path could not be opened. */
static void
localcert_open_why(const char *path, int error, char *why, size_t whylen)
{
	if (error == ENOENT)
		snprintf(why, whylen, "there is no usable %s", path);
	else if (error == ELOOP)
		snprintf(why, whylen, "%s is a symbolic link", path);
	else if (error == EINVAL)
		snprintf(why, whylen, "%s is not a regular file", path);
	else
		snprintf(why, whylen, "cannot open %s: %s", path,
		    strerror(error));
}

/*
 * The contents of name (relative to dirfd; path for messages) into *buf,
 * *len bytes and a NUL, to free with safefile_free().  Opened without
 * following a symbolic link or waiting for a FIFO's writer, and read,
 * through the same descriptor, only when localcert_file_ok().  0, or -1
 * with why.
 */
static int
localcert_read(int dirfd, const char *name, const char *path, int secret,
    uid_t reader, unsigned char **buf, size_t *len, char *why,
    size_t whylen)
{
	struct stat	st;
	char		reason[128];
	int		fd, ret = -1;

	*buf = NULL;
	*len = 0;
	if ((fd = safefile_open(dirfd, name, SAFEFILE_NOFOLLOW, &st, reason,
	    sizeof(reason))) < 0) {
		localcert_open_why(path, errno, why, whylen);
		return -1;
	}
	if (localcert_file_ok(&st, path, secret, reader, why, whylen) &&
	    (ret = safefile_read_fd(fd, LOCALCERT_FILE_MAX, buf, len, reason,
	    sizeof(reason))) != 0)
		snprintf(why, whylen, "%s: %s", path, reason);
	close(fd);
	return ret;
}

/* Open dir without following a symbolic link; -1 with why. */
static int
localcert_open_dir(const char *dir, char *why, size_t whylen)
{
	char	path[CONFIG_PATH_MAX + 16];
	int	fd;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) >= 0)
		return fd;
	if (errno == ENOENT && localcert_path(path, sizeof(path), dir,
	    LOCALCERT_CERT_FILE) == 0)
		snprintf(why, whylen, "there is no usable %s", path);
	else
		snprintf(why, whylen, "cannot open state_dir %s: %s", dir,
		    strerror(errno));
	return -1;
}

/* Whether name is one of the files mailtlsd keeps in state_dir. */
static int
localcert_own_name(const char *name)
{
	size_t	n;

	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
	    strcmp(name, LOCALCERT_CERT_FILE) == 0 ||
	    strcmp(name, LOCALCERT_KEY_FILE) == 0)
		return 1;
	/* A temporary file left by a write that was cut short. */
	for (n = 0; n < 2; n++) {
		const char	*file = n == 0 ? LOCALCERT_CERT_FILE :
				    LOCALCERT_KEY_FILE;
		size_t		 len = strlen(file);

		if (name[0] == '.' && strncmp(name + 1, file, len) == 0 &&
		    name[len + 1] == '.')
			return 1;
	}
	return 0;
}

/*
 * Whether the directory open on fd holds nothing but mailtlsd's own files:
 * only such a directory is given to the user.  A state_dir pointed at a
 * shared directory (say /var/lib) must never become the user's.
 */
static int
localcert_dir_is_ours(int fd, const char *dir, char *err, size_t errlen)
{
	DIR		*d;
	struct dirent	*e;
	int		 dup_fd, ours = 1;

	if ((dup_fd = dup(fd)) < 0 || (d = fdopendir(dup_fd)) == NULL) {
		if (dup_fd >= 0)
			close(dup_fd);
		snprintf(err, errlen, "cannot read state_dir %s: %s", dir,
		    strerror(errno));
		return 0;
	}
	while (ours && (e = readdir(d)) != NULL)
		if (!localcert_own_name(e->d_name)) {
			snprintf(err, errlen, "state_dir %s belongs to another "
			    "user than the one mailtlsd runs as and holds other "
			    "files (%s): use a directory of its own", dir,
			    e->d_name);
			ours = 0;
		}
	closedir(d);
	return ours;
}

/*
 * Check an existing state_dir: a directory (opened without following a
 * symbolic link) of root or the reader, writable by nobody else.  Give it
 * to uid:gid when root has it, so that the daemon can still renew the
 * certificate after the privilege drop.
 */
static int
localcert_use_dir(const char *dir, uid_t uid, gid_t gid, char *err,
    size_t errlen)
{
	struct stat	st;
	int		fd, status = -1;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) < 0) {
		if (errno == ENOTDIR)
			snprintf(err, errlen, "state_dir %s is not a "
			    "directory", dir);
		else
			snprintf(err, errlen, "cannot open state_dir %s: %s",
			    dir, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0)
		snprintf(err, errlen, "cannot open state_dir %s: %s", dir,
		    strerror(errno));
	else if (localcert_trusted(&st, "state_dir ", dir,
	    localcert_reader(uid), err, errlen)) {
		if (uid == (uid_t)-1 || st.st_uid == uid)
			status = 0;
		else if (!localcert_dir_is_ours(fd, dir, err, errlen))
			status = -1;
		else if (fchown(fd, uid, gid) == 0) {
			log_info("gave state_dir %s to uid %lu, the "
			    "user mailtlsd runs as", dir, (unsigned long)uid);
			status = 0;
		} else
			snprintf(err, errlen, "cannot give state_dir %s to the "
			    "user mailtlsd runs as: %s", dir, strerror(errno));
	}
	close(fd);
	return status;
}

/* Create dir 0700 when it does not exist; refuse a symbolic link. */
static int
localcert_make_dir(const char *dir, char *err, size_t errlen)
{
	struct stat	st;

	if (lstat(dir, &st) != 0) {
		if (errno != ENOENT || mkdir(dir, 0700) != 0) {
			snprintf(err, errlen, "cannot create state_dir %s: %s",
			    dir, strerror(errno));
			return -1;
		}
		log_info("created state_dir %s", dir);
	} else if (S_ISLNK(st.st_mode)) {
		snprintf(err, errlen, "state_dir %s is a symbolic link", dir);
		return -1;
	}
	return 0;
}

/*
 * Give name in dirfd to uid:gid when root owns it, as a start without
 * user = left it.  Only a regular file with one link, opened without
 * following a symbolic link, is given: anything else is left for the
 * check to refuse, never a way to hand the user some other root file.
 */
static int
localcert_adopt(int dirfd, const char *dir, const char *name, uid_t uid,
    gid_t gid, char *err, size_t errlen)
{
	struct stat	st;
	int		fd, status = 0;

	if ((fd = openat(dirfd, name, LOCALCERT_OPEN)) < 0)
		return 0;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
	    st.st_uid == 0 && uid != 0) {
		if (fchown(fd, uid, gid) == 0)
			log_info("local_tls: gave %s/%s to uid %lu, the user "
			    "mailtlsd runs as", dir, name, (unsigned long)uid);
		else {
			snprintf(err, errlen, "cannot give %s/%s to the user "
			    "mailtlsd runs as: %s", dir, name, strerror(errno));
			status = -1;
		}
	}
	close(fd);
	return status;
}

/* Give both files of dir to uid:gid where root owns them. */
static int
localcert_adopt_files(const char *dir, uid_t uid, gid_t gid, char *err,
    size_t errlen)
{
	int	fd, status;

	if ((fd = localcert_open_dir(dir, err, errlen)) < 0)
		return -1;
	status = localcert_adopt(fd, dir, LOCALCERT_KEY_FILE, uid, gid, err,
	    errlen) == 0 && localcert_adopt(fd, dir, LOCALCERT_CERT_FILE, uid,
	    gid, err, errlen) == 0 ? 0 : -1;
	close(fd);
	return status;
}

/* ---- Extensions ---------------------------------------------------------- */

/*
 * Set extension oid to a SEQUENCE of the len bytes written backwards into
 * buf, which start at p.
 */
static int
localcert_set_sequence(mbedtls_x509write_cert *crt, const char *oid,
    size_t oid_len, unsigned char *buf, unsigned char *p, size_t len)
{
	int	ret;

	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, len));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&p, buf,
	    MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
	return mbedtls_x509write_crt_set_extension(crt, oid, oid_len, 0, p,
	    len);
}

/* subjectAltName: GeneralNames of dNSName [2] and iPAddress [7]. */
static int
localcert_set_san(mbedtls_x509write_cert *crt,
    const struct localcert_names *names)
{
	static unsigned char	 buf[LOCALCERT_EXT_MAX];
	unsigned char		*p = buf + sizeof(buf);
	const struct localcert_name *nm;
	size_t			 len = 0;
	int			 i, ret;

	for (i = names->n - 1; i >= 0; i--) {
		nm = &names->name[i];
		MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_raw_buffer(&p,
		    buf, nm->value, nm->len));
		MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf,
		    nm->len));
		MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&p, buf,
		    MBEDTLS_ASN1_CONTEXT_SPECIFIC | (nm->is_ip ? 7 : 2)));
	}
	return localcert_set_sequence(crt, MBEDTLS_OID_SUBJECT_ALT_NAME,
	    MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), buf, p, len);
}

/* extendedKeyUsage: serverAuth. */
static int
localcert_set_eku(mbedtls_x509write_cert *crt)
{
	unsigned char	 buf[32];
	unsigned char	*p = buf + sizeof(buf);
	size_t		 len = 0;
	int		 ret;

	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_oid(&p, buf,
	    MBEDTLS_OID_SERVER_AUTH,
	    MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH)));
	return localcert_set_sequence(crt, MBEDTLS_OID_EXTENDED_KEY_USAGE,
	    MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE), buf, p, len);
}

/* A random positive serial number of LOCALCERT_SERIAL_LEN bytes. */
static int
localcert_set_serial(mbedtls_x509write_cert *crt)
{
	unsigned char	serial[LOCALCERT_SERIAL_LEN];
	int		ret;

	if ((ret = tls_random(NULL, serial, sizeof(serial))) != 0)
		return ret;
	serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x40);
#if MBEDTLS_VERSION_NUMBER >= 0x03040000
	return mbedtls_x509write_crt_set_serial_raw(crt, serial,
	    sizeof(serial));
#else
	{
		mbedtls_mpi	mpi;

		mbedtls_mpi_init(&mpi);
		ret = mbedtls_mpi_read_binary(&mpi, serial, sizeof(serial));
		if (ret == 0)
			ret = mbedtls_x509write_crt_set_serial(crt, &mpi);
		mbedtls_mpi_free(&mpi);
		return ret;
	}
#endif
}

/* t as an X.509 time string (YYYYMMDDhhmmss, UTC) into buf[16]. */
static int
localcert_time_text(time_t t, char buf[16])
{
	struct tm	tm;

	if (gmtime_r(&t, &tm) == NULL)
		return -1;
	strftime(buf, 16, "%Y%m%d%H%M%S", &tm);
	return 0;
}

/* Validity from a day before now for LOCALCERT_VALID_DAYS. */
static int
localcert_set_validity(mbedtls_x509write_cert *crt, time_t now)
{
	time_t	from = now - DAY;
	char	not_before[16], not_after[16];

	if (localcert_time_text(from, not_before) != 0 ||
	    localcert_time_text(from + (time_t)LOCALCERT_VALID_DAYS * DAY,
	    not_after) != 0)
		return -1;
	return mbedtls_x509write_crt_set_validity(crt, not_before, not_after);
}

/* ---- Generating ---------------------------------------------------------- */

/* A new EC P-256 key. */
static int
localcert_new_key(mbedtls_pk_context *key)
{
	int	ret;

	if ((ret = mbedtls_pk_setup(key,
	    mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY))) != 0)
		return ret;
	return mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1,
	    mbedtls_pk_ec(*key), tls_random, NULL);
}

/* The certificate for key and names, as PEM into buf. */
static int
localcert_write_cert(mbedtls_pk_context *key,
    const struct localcert_names *names, time_t now, unsigned char *buf,
    size_t len)
{
	mbedtls_x509write_cert	crt;
	int			ret;

	mbedtls_x509write_crt_init(&crt);
	mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
	mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
	mbedtls_x509write_crt_set_subject_key(&crt, key);
	mbedtls_x509write_crt_set_issuer_key(&crt, key);
	if ((ret = mbedtls_x509write_crt_set_subject_name(&crt,
	    LOCALCERT_SUBJECT)) != 0 ||
	    (ret = mbedtls_x509write_crt_set_issuer_name(&crt,
	    LOCALCERT_SUBJECT)) != 0 ||
	    (ret = localcert_set_serial(&crt)) != 0 ||
	    (ret = localcert_set_validity(&crt, now)) != 0 ||
	    (ret = mbedtls_x509write_crt_set_basic_constraints(&crt, 0,
	    -1)) != 0 ||
	    (ret = mbedtls_x509write_crt_set_key_usage(&crt,
	    MBEDTLS_X509_KU_DIGITAL_SIGNATURE)) != 0 ||
	    (ret = localcert_set_eku(&crt)) != 0 ||
	    (ret = localcert_set_san(&crt, names)) != 0)
		goto out;
	ret = mbedtls_x509write_crt_pem(&crt, buf, len, tls_random, NULL);
out:
	mbedtls_x509write_crt_free(&crt);
	return ret;
}

/* Format an mbedTLS error into err after what. */
static void
localcert_error(char *err, size_t errlen, const char *what, int ret)
{
	char	text[160];

	mbedtls_strerror(ret, text, sizeof(text));
	snprintf(err, errlen, "%s: %s (-0x%04x)", what, text, (unsigned)-ret);
}

/* Write a new key and certificate into dir. */
int
localcert_generate(const char *dir, const struct localcert_names *names,
    time_t now, uid_t uid, gid_t gid, char *err, size_t errlen)
{
	mbedtls_pk_context	key;
	unsigned char		key_pem[LOCALCERT_PEM_MAX];
	unsigned char		crt_pem[LOCALCERT_PEM_MAX];
	int			ret, status = -1;

	mbedtls_pk_init(&key);
	if ((ret = localcert_new_key(&key)) != 0) {
		localcert_error(err, errlen, "cannot make a key", ret);
		goto out;
	}
	if ((ret = mbedtls_pk_write_key_pem(&key, key_pem,
	    sizeof(key_pem))) != 0) {
		localcert_error(err, errlen, "cannot encode the key", ret);
		goto out;
	}
	if ((ret = localcert_write_cert(&key, names, now, crt_pem,
	    sizeof(crt_pem))) != 0) {
		localcert_error(err, errlen, "cannot make the certificate",
		    ret);
		goto out;
	}
	/* Key first: a key without its certificate fails the next check. */
	if (localcert_write_file(dir, LOCALCERT_KEY_FILE, key_pem,
	    strlen((const char *)key_pem), uid, gid, err, errlen) != 0 ||
	    localcert_write_file(dir, LOCALCERT_CERT_FILE, crt_pem,
	    strlen((const char *)crt_pem), uid, gid, err, errlen) != 0)
		goto out;
	localcert_sync_dir(dir);
	status = 0;
out:
	mbedtls_platform_zeroize(key_pem, sizeof(key_pem));
	mbedtls_pk_free(&key);
	return status;
}

/* ---- Checking ------------------------------------------------------------ */

/* Whether the certificate lists nm among its subjectAltNames. */
static int
localcert_covers(const mbedtls_x509_crt *crt, const struct localcert_name *nm)
{
	const mbedtls_x509_sequence	*cur;
	struct localcert_name		 have;
	int				 tag;

	for (cur = &crt->subject_alt_names; cur != NULL; cur = cur->next) {
		tag = cur->buf.tag & ~MBEDTLS_ASN1_CONSTRUCTED;
		if (cur->buf.p == NULL || cur->buf.len > sizeof(have.value) ||
		    (tag != (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 2) &&
		    tag != (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7)))
			continue;
		have.is_ip = tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7);
		have.len = cur->buf.len;
		memcpy(have.value, cur->buf.p, cur->buf.len);
		if (localcert_name_eq(&have, nm))
			return 1;
	}
	return 0;
}

/* When a certificate that expires at not_after is made again. */
time_t
localcert_renew_time(time_t not_after)
{
	return not_after - (time_t)LOCALCERT_RENEW_DAYS * DAY;
}

/* Whether renew_at has come; the check and the daily look agree on it. */
int
localcert_renew_due(time_t renew_at, time_t now)
{
	return now >= renew_at;
}

/* Seconds until the running daemon looks again. */
long
localcert_next_check(time_t renew_at, time_t now)
{
	if (localcert_renew_due(renew_at, now) ||
	    renew_at - now > LOCALCERT_CHECK_SECS)
		return LOCALCERT_CHECK_SECS;
	return (long)(renew_at - now);
}

/* Whether the key is the private half of the certificate's public key. */
static int
localcert_pair_ok(mbedtls_x509_crt *crt, mbedtls_pk_context *key)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	return mbedtls_pk_check_pair(&crt->pk, key, tls_random, NULL) == 0;
#else
	return mbedtls_pk_check_pair(&crt->pk, key) == 0;
#endif
}

/* Parse a key from a NUL-terminated buffer. */
static int
localcert_parse_key(mbedtls_pk_context *key, const unsigned char *buf,
    size_t len)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	return mbedtls_pk_parse_key(key, buf, len, NULL, 0, tls_random, NULL);
#else
	return mbedtls_pk_parse_key(key, buf, len, NULL, 0);
#endif
}

/*
 * Both files of a state_dir as read, each once through the descriptor it
 * was checked on, and as parsed from those bytes.
 */
struct localcert_files {
	unsigned char		*cert;		/* NUL after cert_len bytes */
	size_t			 cert_len;
	unsigned char		*key;		/* NUL after key_len bytes */
	size_t			 key_len;
	mbedtls_x509_crt	 crt;
	mbedtls_pk_context	 pk;
};

static void
localcert_files_init(struct localcert_files *f)
{
	memset(f, 0, sizeof(*f));
	mbedtls_x509_crt_init(&f->crt);
	mbedtls_pk_init(&f->pk);
}

/* Free what localcert_files_load() read and parsed; the key is zeroed. */
static void
localcert_files_free(struct localcert_files *f)
{
	safefile_free(f->cert, f->cert_len);
	safefile_free(f->key, f->key_len);
	mbedtls_x509_crt_free(&f->crt);
	mbedtls_pk_free(&f->pk);
	localcert_files_init(f);
}

/*
 * Read one file of dir (open as dirfd) into *buf, *len and parse it: the
 * certificate into crt, or, with crt NULL, the key into key.  0, or -1
 * with why.
 */
static int
localcert_load(int dirfd, const char *dir, uid_t reader,
    mbedtls_x509_crt *crt, mbedtls_pk_context *key, unsigned char **buf,
    size_t *len, char *why, size_t whylen)
{
	const char	*name = crt != NULL ? LOCALCERT_CERT_FILE :
			    LOCALCERT_KEY_FILE;
	char		 path[CONFIG_PATH_MAX + 16];
	int		 ret;

	if (localcert_path(path, sizeof(path), dir, name) != 0) {
		snprintf(why, whylen, "state_dir %s: path too long", dir);
		return -1;
	}
	if (localcert_read(dirfd, name, path, crt == NULL, reader, buf, len,
	    why, whylen) != 0)
		return -1;
	/* The mbedTLS PEM parsers want the NUL counted. */
	ret = crt != NULL ? mbedtls_x509_crt_parse(crt, *buf, *len + 1) :
	    localcert_parse_key(key, *buf, *len + 1);
	if (ret != 0) {
		snprintf(why, whylen, "there is no usable %s", path);
		return -1;
	}
	return 0;
}

/*
 * Read and parse the certificate and key of dir into f (free it with
 * localcert_files_free() either way) and check that they belong
 * together.  0, or -1 with why.
 */
static int
localcert_files_load(const char *dir, uid_t reader, struct localcert_files *f,
    char *why, size_t whylen)
{
	int	fd, ret = -1;

	if ((fd = localcert_open_dir(dir, why, whylen)) < 0)
		return -1;
	if (localcert_load(fd, dir, reader, &f->crt, NULL, &f->cert,
	    &f->cert_len, why, whylen) != 0 || localcert_load(fd, dir,
	    reader, NULL, &f->pk, &f->key, &f->key_len, why, whylen) != 0)
		goto out;
	if (!localcert_pair_ok(&f->crt, &f->pk)) {
		snprintf(why, whylen, "its key does not match it");
		goto out;
	}
	ret = 0;
out:
	close(fd);
	return ret;
}

/* Whether crt still fits names and the clock; why when not. */
static int
localcert_fits(const mbedtls_x509_crt *crt,
    const struct localcert_names *names, time_t now, char *why,
    size_t whylen)
{
	time_t	from = tls_x509_time(&crt->valid_from);
	time_t	to = tls_x509_time(&crt->valid_to);
	char	text[64];
	int	i;

	if (localcert_renew_due(localcert_renew_time(to), now)) {
		snprintf(why, whylen, "it expires within %d days",
		    LOCALCERT_RENEW_DAYS);
		return 0;
	}
	if (from == (time_t)-1 || from >= now) {
		snprintf(why, whylen, "it is not valid yet");
		return 0;
	}
	/* Made by an older mailtlsd: Apple Mail refuses such a certificate. */
	if (to - from > (time_t)LOCALCERT_APPLE_MAX_DAYS * DAY) {
		snprintf(why, whylen, "it is valid for more than %d days, "
		    "which Apple platforms refuse", LOCALCERT_APPLE_MAX_DAYS);
		return 0;
	}
	for (i = 0; i < names->n; i++) {
		if (!localcert_covers(crt, &names->name[i])) {
			localcert_name_text(&names->name[i], text,
			    sizeof(text));
			snprintf(why, whylen, "it does not cover %s", text);
			return 0;
		}
	}
	return 1;
}

/* Check the certificate and key of dir against names and the clock. */
int
localcert_check(const char *dir, const struct localcert_names *names,
    time_t now, uid_t uid, char *why, size_t whylen)
{
	struct localcert_files	f;
	int			ok;

	localcert_files_init(&f);
	ok = localcert_files_load(dir, localcert_reader(uid), &f, why,
	    whylen) == 0 && localcert_fits(&f.crt, names, now, why, whylen);
	localcert_files_free(&f);
	return ok;
}

/* The SHA-256 fingerprint of a parsed certificate. */
static int
localcert_crt_fingerprint(const mbedtls_x509_crt *crt,
    char out[LOCALCERT_FINGERPRINT_LEN])
{
	unsigned char	digest[32];
	int		i;

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	if (mbedtls_sha256(crt->raw.p, crt->raw.len, digest, 0) != 0)
#else
	if (mbedtls_sha256_ret(crt->raw.p, crt->raw.len, digest, 0) != 0)
#endif
		return -1;
	for (i = 0; i < 32; i++)
		snprintf(out + i * 3, LOCALCERT_FINGERPRINT_LEN - (size_t)i * 3,
		    "%02X%s", digest[i], i < 31 ? ":" : "");
	return 0;
}

/* The SHA-256 fingerprint of the first certificate of a PEM file. */
int
localcert_fingerprint(const char *cert_path,
    char out[LOCALCERT_FINGERPRINT_LEN])
{
	mbedtls_x509_crt	 crt;
	unsigned char		*buf;
	size_t			 len;
	char			 why[CONFIG_PATH_MAX + 64];
	int			 ret = -1;

	if (localcert_read(AT_FDCWD, cert_path, cert_path, 0, geteuid(), &buf,
	    &len, why, sizeof(why)) != 0)
		return -1;
	mbedtls_x509_crt_init(&crt);
	if (mbedtls_x509_crt_parse(&crt, buf, len + 1) == 0)
		ret = localcert_crt_fingerprint(&crt, out);
	mbedtls_x509_crt_free(&crt);
	safefile_free(buf, len);
	return ret;
}

/* ---- The pair services present ------------------------------------------ */

/*
 * The bytes of the certificate and key that localcert_ensure() last read,
 * checked and logged: services present these, never the files read again
 * by path (which could have been replaced since).
 */
static struct {
	char			cert_path[CONFIG_PATH_MAX];
	char			key_path[CONFIG_PATH_MAX];
	unsigned char		*cert;
	size_t			cert_len;
	unsigned char		*key;
	size_t			key_len;
	struct tls_keypair	pair;
} localcert_held;

/* Forget the pair held; the key's bytes are zeroed. */
void
localcert_release(void)
{
	safefile_free(localcert_held.cert, localcert_held.cert_len);
	safefile_free(localcert_held.key, localcert_held.key_len);
	memset(&localcert_held, 0, sizeof(localcert_held));
}

/* Hold the bytes of f (taken from it) as the pair of dir. */
static void
localcert_hold(const char *dir, struct localcert_files *f)
{
	localcert_release();
	if (localcert_path(localcert_held.cert_path,
	    sizeof(localcert_held.cert_path), dir, LOCALCERT_CERT_FILE) != 0 ||
	    localcert_path(localcert_held.key_path,
	    sizeof(localcert_held.key_path), dir, LOCALCERT_KEY_FILE) != 0)
		return;		/* localcert_ensure() checked the length */
	localcert_held.cert = f->cert;
	localcert_held.cert_len = f->cert_len;
	localcert_held.key = f->key;
	localcert_held.key_len = f->key_len;
	f->cert = f->key = NULL;
	f->cert_len = f->key_len = 0;
	localcert_held.pair.cert = localcert_held.cert;
	localcert_held.pair.cert_len = localcert_held.cert_len;
	localcert_held.pair.key = localcert_held.key;
	localcert_held.pair.key_len = localcert_held.key_len;
}

/* The pair held for a service that presents the generated certificate. */
const struct tls_keypair *
localcert_pair(const struct service_config *sc)
{
	if (localcert_held.cert == NULL ||
	    strcmp(sc->local_cert, localcert_held.cert_path) != 0 ||
	    strcmp(sc->local_key, localcert_held.key_path) != 0)
		return NULL;
	return &localcert_held.pair;
}

/* ---- Start-up ------------------------------------------------------------ */

/* The names, comma-separated, for the log. */
static void
localcert_names_text(const struct localcert_names *names, char *buf,
    size_t len)
{
	char	text[64];
	size_t	n = 0;
	int	i;

	buf[0] = '\0';
	for (i = 0; i < names->n && n < len; i++) {
		localcert_name_text(&names->name[i], text, sizeof(text));
		n += (size_t)snprintf(buf + n, len - n, "%s%s", i > 0 ? ", " :
		    "", text);
	}
}

/* Generate a certificate for names in dir, saying why. */
static int
localcert_renew(const char *dir, const struct localcert_names *names,
    time_t now, uid_t uid, gid_t gid, const char *why, char *err,
    size_t errlen)
{
	char	list[1024];

	localcert_names_text(names, list, sizeof(list));
	log_info("local_tls: generating a self-signed certificate for %s (%s)",
	    list, why);
	return localcert_generate(dir, names, now, uid, gid, err, errlen);
}

/*
 * Make sure dir holds a certificate for names; hold and log it.  The files
 * are read once (again only after making new ones): what is checked, held
 * for the services and fingerprinted is the same bytes.
 */
int
localcert_ensure(const char *dir, const struct localcert_names *names,
    uid_t uid, gid_t gid, time_t *renew_at, char *err, size_t errlen)
{
	struct localcert_files	f;
	char			path[CONFIG_PATH_MAX + 16];
	char			why[CONFIG_PATH_MAX + 128];
	char			fp[LOCALCERT_FINGERPRINT_LEN];
	time_t			now = time(NULL);
	uid_t			reader = localcert_reader(uid);
	int			made = 0, status = -1;

	localcert_release();
	localcert_files_init(&f);
	if (localcert_path(path, sizeof(path), dir, LOCALCERT_CERT_FILE) != 0 ||
	    strlen(path) + 1 >= CONFIG_PATH_MAX) {
		snprintf(err, errlen, "state_dir %s: path too long", dir);
		return -1;
	}
	/* Files root made at a start without user = go to the user too. */
	if (localcert_make_dir(dir, err, errlen) != 0 ||
	    localcert_use_dir(dir, uid, gid, err, errlen) != 0 ||
	    (uid != (uid_t)-1 && localcert_adopt_files(dir, uid, gid, err,
	    errlen) != 0))
		return -1;
	if (localcert_files_load(dir, reader, &f, why, sizeof(why)) != 0 ||
	    !localcert_fits(&f.crt, names, now, why, sizeof(why))) {
		localcert_files_free(&f);
		if (localcert_renew(dir, names, now, uid, gid, why, err,
		    errlen) != 0)
			goto out;
		made = 1;
		if (localcert_files_load(dir, reader, &f, why,
		    sizeof(why)) != 0) {
			snprintf(err, errlen, "cannot read the certificate "
			    "back: %s", why);
			goto out;
		}
	}
	if (localcert_crt_fingerprint(&f.crt, fp) != 0) {
		snprintf(err, errlen, "cannot hash the certificate %s", path);
		goto out;
	}
	if (renew_at != NULL)
		*renew_at = localcert_renew_time(tls_x509_time(
		    &f.crt.valid_to));
	localcert_hold(dir, &f);
	log_info("local_tls: %s self-signed certificate %s, SHA-256 "
	    "fingerprint %s", made ? "generated" : "using the", path, fp);
	status = 0;
out:
	localcert_files_free(&f);
	return status;
}

/* Whether a service presents the generated certificate. */
static int
localcert_wanted(const struct service_config *sc)
{
	return sc->local_tls != LOCAL_TLS_NONE && sc->local_cert[0] == '\0';
}

/* The owner of generated files: the configured user when root. */
static int
localcert_owner(const struct config *cfg, uid_t *uid, gid_t *gid, char *err,
    size_t errlen)
{
	struct passwd	*pw;

	*uid = (uid_t)-1;
	*gid = (gid_t)-1;
	if (cfg->user[0] == '\0' || geteuid() != 0)
		return 0;
	if ((pw = getpwnam(cfg->user)) == NULL) {
		snprintf(err, errlen, "user %s: no such user", cfg->user);
		return -1;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	return 0;
}

/*
 * Create state_dir when missing and give it to the configured user when
 * started as root: where OAuth2 token files go, before the privilege drop.
 */
int
localcert_state_dir(const struct config *cfg, char *err, size_t errlen)
{
	uid_t	uid;
	gid_t	gid;

	if (localcert_owner(cfg, &uid, &gid, err, errlen) != 0 ||
	    localcert_make_dir(cfg->state_dir, err, errlen) != 0)
		return -1;
	return localcert_use_dir(cfg->state_dir, uid, gid, err, errlen);
}

/* Give every service that needs it the generated certificate. */
int
localcert_prepare(struct config *cfg, time_t *renew_at, char *err,
    size_t errlen)
{
	struct localcert_names	*names;
	struct service_config	*sc;
	char			 crt[CONFIG_PATH_MAX];
	char			 key[CONFIG_PATH_MAX];
	uid_t			 uid;
	gid_t			 gid;
	int			 i, j, used = 0, status = -1;

	*renew_at = 0;
	localcert_release();
	if ((names = malloc(sizeof(*names))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	localcert_names_init(names);
	for (i = 0; i < cfg->n_services; i++) {
		sc = &cfg->services[i];
		if (!localcert_wanted(sc))
			continue;
		used = 1;
		for (j = 0; j < sc->n_listen; j++)
			if (localcert_names_add_addr(names, (const struct
			    sockaddr *)&sc->listen[j].addr) != 0) {
				snprintf(err, errlen, "more than %d listen "
				    "addresses use the generated certificate; "
				    "set local_cert", LOCALCERT_NAMES_MAX);
				goto out;
			}
	}
	if (!used) {
		status = 0;
		goto out;
	}
	if (localcert_path(crt, sizeof(crt), cfg->state_dir,
	    LOCALCERT_CERT_FILE) != 0 || localcert_path(key, sizeof(key),
	    cfg->state_dir, LOCALCERT_KEY_FILE) != 0) {
		snprintf(err, errlen, "state_dir %s: path too long",
		    cfg->state_dir);
		goto out;
	}
	if (localcert_owner(cfg, &uid, &gid, err, errlen) != 0 ||
	    localcert_ensure(cfg->state_dir, names, uid, gid, renew_at, err,
	    errlen) != 0)
		goto out;
	for (i = 0; i < cfg->n_services; i++) {
		sc = &cfg->services[i];
		if (!localcert_wanted(sc))
			continue;
		snprintf(sc->local_cert, sizeof(sc->local_cert), "%s", crt);
		snprintf(sc->local_key, sizeof(sc->local_key), "%s", key);
	}
	status = 0;
out:
	free(names);
	return status;
}
