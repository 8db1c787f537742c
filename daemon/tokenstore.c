/*
 * tokenstore.c - OAuth2 tokens at rest, sealed with a key derived from the
 * mail client's password: see tokenstore.h.
 *
 * Files.  DIR/SECTION/USER, where DIR is state_dir/oauth2 and SECTION and
 * USER are tokenstore_file_name() encodings (bytes other than
 * [A-Za-z0-9@._+-], and a leading '.', as %XX), so no name can climb out
 * of its directory or hide as a dot file; temporary files are ".tmp."
 * and 16 hex digits, names no account can have.  DIR and each SECTION
 * directory are made 0700 and trusted only when they are directories (no
 * symbolic link), owned by the user mailtlsd runs as and not writable by
 * group or others; a token file only when it is a regular file (opened
 * with O_NOFOLLOW), owned by that user, with no permission for group or
 * others, one link and at most TOKENSTORE_FILE_MAX bytes.
 *
 * Format (version 1), integers big-endian:
 *
 *	offset	size	field
 *	0	8	magic "MTLSDTOK"
 *	8	1	version: 1
 *	9	1	key derivation: 2 (crypto_pwhash_ALG_ARGON2ID13)
 *	10	2	zero
 *	12	4	Argon2id opslimit (passes), 1..10
 *	16	8	Argon2id memlimit in bytes, 8 KiB..1 GiB
 *	24	16	salt
 *	40	24	nonce
 *	64	n+16	crypto_aead_xchacha20poly1305_ietf ciphertext and tag
 *
 * The key is crypto_pwhash(password, salt, opslimit, memlimit, Argon2id
 * 1.3), 32 bytes.  The additional data is the 64-byte header, SECTION, a
 * NUL and USER as the client sent it (not encoded): a changed header, or
 * a file copied to another account's name, fails to open like a wrong
 * password.  The plaintext is one JSON object: "access_token",
 * "refresh_token", "scope" (strings), "access_expires", "updated" (Unix
 * times, 0 = unknown); other members are ignored.  Every save writes a new
 * nonce; a save keeps the file's salt and parameters (the key the password
 * opened it with), so only a new account gets the parameters configured
 * now.
 *
 * Threads.  One worker thread runs every key derivation, file read and
 * write, in the order asked (FIFO, at most TOKENSTORE_QUEUE_MAX waiting).
 * A finished job goes to the done list, and one byte down a pipe wakes
 * the event loop, which updates the cache and calls the callback there.
 * The cache is the event loop's alone: a job carries copies of what the
 * worker needs and brings back what it found.
 *
 * Cache.  After an open or save succeeds the account keeps, until
 * tokenstore_free(): the key, salt and parameters (in sodium_malloc()
 * memory), the tokens, the identity of the file (device, inode, size,
 * mtime, ctime as of the read or write) and a verifier of the password, a
 * BLAKE2b hash keyed with a random key of this process.  An open whose
 * password gives the same verifier (sodium_memcmp) while the file still
 * has that identity (one fstatat() in the event loop, a metadata look-up)
 * and no job of the account waits, is answered from memory.  When the
 * file changed, the worker reads it again, with the cached key when its
 * salt and parameters are the same.  Any other password takes the cold
 * path, a full derivation on the worker: a wrong password costs as much
 * with a warm cache as with a cold one, so the cache does not speed up
 * guessing, and only the right password is fast.  An absent account is
 * answered without a derivation: the login that follows says anyway that
 * the account must be authorised.
 */
#define _GNU_SOURCE		/* renameat2() */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/queue.h>
#include <sys/stat.h>

#include <event2/event.h>
#include <jansson.h>
#include <sodium.h>

#include "safefile.h"
#include "tokenstore.h"

#define TS_MAGIC		"MTLSDTOK"
#define TS_MAGIC_LEN		8
#define TS_VERSION		1
#define TS_ALG			2
#define TS_SALT_LEN		16
#define TS_NONCE_LEN		24
#define TS_KEY_LEN		32
#define TS_TAG_LEN		16
#define TS_HEADER_LEN		64
#define TS_OFF_VERSION		8
#define TS_OFF_ALG		9
#define TS_OFF_ZERO		10
#define TS_OFF_OPSLIMIT		12
#define TS_OFF_MEMLIMIT		16
#define TS_OFF_SALT		24
#define TS_OFF_NONCE		40
#define TS_VERIFIER_LEN		32
#define TS_PLAIN_MAX		(TOKENSTORE_FILE_MAX - TS_HEADER_LEN - TS_TAG_LEN)
#define TS_AD_MAX		(TS_HEADER_LEN + 2 * TOKENSTORE_NAME_MAX + 1)
#define TS_TMP_PREFIX		".tmp."
#define TS_REASON_MAX		512

_Static_assert(crypto_pwhash_ALG_ARGON2ID13 == TS_ALG, "Argon2id id");
_Static_assert(crypto_pwhash_SALTBYTES == TS_SALT_LEN, "salt size");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == TS_NONCE_LEN,
    "nonce size");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == TS_KEY_LEN,
    "key size");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES == TS_TAG_LEN,
    "tag size");
_Static_assert(TS_OFF_NONCE + TS_NONCE_LEN == TS_HEADER_LEN, "header");

/* Argon2id parameters as libsodium takes them. */
struct ts_kdf {
	unsigned long long	opslimit;
	size_t			memlimit;	/* bytes */
};

/* A key and what it was derived with. */
struct ts_keyinfo {
	unsigned char	key[TS_KEY_LEN];
	unsigned char	salt[TS_SALT_LEN];
	struct ts_kdf	kdf;
};

/* The secrets of a cached account (sodium_malloc). */
struct ts_secret {
	unsigned char		verifier[TS_VERIFIER_LEN];
	struct ts_keyinfo	ki;
};

/*
 * The secrets of a job (one sodium_malloc, the password right after the
 * struct): what it brings to the worker and what the worker found.
 */
struct ts_jobsecret {
	unsigned char		verifier[TS_VERIFIER_LEN];
	struct ts_keyinfo	cached;		/* valid when has_cached */
	struct ts_keyinfo	found;		/* valid when has_found */
	int			has_cached;
	int			has_found;
	size_t			pwlen;
	size_t			alloc;		/* bytes sodium_malloc'd */
};

/* What identifies a version of a file without reading it. */
struct ts_ident {
	dev_t		dev;
	ino_t		ino;
	off_t		size;
	struct timespec	mtime;
	struct timespec	ctime;
	int		valid;
};

enum ts_kind {
	TS_OPEN,
	TS_SAVE
};

struct tokenstore_job {
	TAILQ_ENTRY(tokenstore_job) entry;	/* queue or done list */
	struct tokenstore	*ts;
	enum ts_kind		 kind;
	tokenstore_cb		*cb;		/* NULL: cancelled */
	void			*arg;
	char			*section;
	char			*user;
	char			 dname[TOKENSTORE_NAME_MAX + 1];
	char			 fname[TOKENSTORE_NAME_MAX + 1];
	char			*shown;		/* the file's path, for reasons */
	struct ts_jobsecret	*sec;
	struct ts_kdf		 new_kdf;	/* for an absent account */
	struct token_set	 in;		/* save: what to write */
	int			 counted;	/* in its account's pending */

	/* Results. */
	enum tokenstore_result	 result;
	char			 reason[TS_REASON_MAX];
	struct token_set	 out;		/* open: what the file holds */
	struct ts_ident		 ident;		/* the file read or written */
	int			 from_cache;
	unsigned		 kdf_runs;
	unsigned		 reads;
	unsigned		 writes;
};

TAILQ_HEAD(ts_jobs, tokenstore_job);

/* An account the cache knows: unlocked, or with jobs under way. */
struct ts_account {
	TAILQ_ENTRY(ts_account)	 entry;		/* most recent use first */
	char			*section;
	char			*user;
	unsigned		 pending;	/* its jobs on the worker */
	struct ts_secret	*secret;	/* NULL: not unlocked */
	struct token_set	 tokens;
	struct ts_ident		 ident;
};

TAILQ_HEAD(ts_accounts, ts_account);

/* Argon2id parameters of one section for new files. */
struct ts_section_kdf {
	char		name[TOKENSTORE_NAME_MAX + 1];
	struct ts_kdf	kdf;
};

#define TS_SECTIONS_MAX	64

struct tokenstore {
	struct event_base	*base;
	char			*dir;
	int			 dirfd;
	struct ts_kdf		 kdf;		/* default for new files */
	struct ts_section_kdf	 sections[TS_SECTIONS_MAX];
	int			 n_sections;
	unsigned char		*vkey;		/* verifier key (sodium) */

	/* The event loop's. */
	struct ts_accounts	 accounts;
	unsigned		 n_unlocked;
	struct tokenstore_stats	 stats;
	struct event		*done_ev;
	int			 delivering;
	int			 free_requested;

	/* Shared with the worker, under lock. */
	pthread_mutex_t		 lock;
	pthread_cond_t		 wake;
	pthread_t		 thread;
	int			 thread_started;
	struct ts_jobs		 queue;
	unsigned		 queued;
	struct ts_jobs		 done;
	int			 notified;
	int			 held;		/* tokenstore_hold() */
	int			 stopping;
	int			 pipe_r;
	int			 pipe_w;
};

static void	ts_job_free(struct tokenstore_job *);

/* ---- Names --------------------------------------------------------------- */

/* Whether byte c stays itself in a file name. */
static int
ts_name_plain(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '@' || c == '.' || c == '_' ||
	    c == '+' || c == '-';
}

/* Encode name for a file name. */
int
tokenstore_file_name(char *buf, size_t len, const char *name)
{
	static const char	 hex[] = "0123456789ABCDEF";
	const unsigned char	*p = (const unsigned char *)name;
	size_t			 n = 0, need;

	if (*p == '\0')
		return -1;
	for (; *p != '\0'; p++) {
		need = ts_name_plain(*p) && !(n == 0 && *p == '.') ? 1 : 3;
		if (n + need > TOKENSTORE_NAME_MAX || n + need >= len)
			return -1;
		if (need == 1)
			buf[n++] = (char)*p;
		else {
			buf[n++] = '%';
			buf[n++] = hex[*p >> 4];
			buf[n++] = hex[*p & 0x0f];
		}
	}
	buf[n] = '\0';
	return 0;
}

/* ---- Token sets ---------------------------------------------------------- */

/* Wipe and free one string. */
static void
ts_str_free(char *s)
{
	if (s != NULL) {
		sodium_memzero(s, strlen(s));
		free(s);
	}
}

/* Wipe and free the strings of set. */
void
token_set_clear(struct token_set *set)
{
	ts_str_free(set->access_token);
	ts_str_free(set->refresh_token);
	ts_str_free(set->scope);
	memset(set, 0, sizeof(*set));
}

/* A copy of s, "" for NULL. */
static char *
ts_str_dup(const char *s)
{
	return strdup(s != NULL ? s : "");
}

/* Copy src into dst (whose strings are not freed first). */
int
token_set_copy(struct token_set *dst, const struct token_set *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->access_token = ts_str_dup(src->access_token);
	dst->refresh_token = ts_str_dup(src->refresh_token);
	dst->scope = ts_str_dup(src->scope);
	dst->access_expires = src->access_expires;
	dst->updated = src->updated;
	if (dst->access_token == NULL || dst->refresh_token == NULL ||
	    dst->scope == NULL) {
		token_set_clear(dst);
		return -1;
	}
	return 0;
}

/* Move src into dst (cleared first); src is left empty. */
static void
ts_set_move(struct token_set *dst, struct token_set *src)
{
	token_set_clear(dst);
	*dst = *src;
	memset(src, 0, sizeof(*src));
}

/* ---- Key derivation and the format --------------------------------------- */

/* Whether kdf is within libsodium's bounds and ours; why if not. */
static int
ts_kdf_ok(const struct ts_kdf *kdf, char *why, size_t whylen)
{
	if (kdf->opslimit < crypto_pwhash_argon2id_OPSLIMIT_MIN ||
	    kdf->opslimit > crypto_pwhash_argon2id_OPSLIMIT_MAX ||
	    kdf->opslimit > TOKENSTORE_KDF_PASSES_MAX) {
		snprintf(why, whylen, "Argon2id passes %llu out of bounds "
		    "(%llu..%d)", kdf->opslimit,
		    (unsigned long long)crypto_pwhash_argon2id_OPSLIMIT_MIN,
		    TOKENSTORE_KDF_PASSES_MAX);
		return 0;
	}
	if (kdf->memlimit < crypto_pwhash_argon2id_MEMLIMIT_MIN ||
	    kdf->memlimit > crypto_pwhash_argon2id_MEMLIMIT_MAX ||
	    kdf->memlimit / 1024 > TOKENSTORE_KDF_MEMORY_MAX) {
		snprintf(why, whylen, "Argon2id memory %zu KiB out of bounds "
		    "(%zu..%d KiB)", kdf->memlimit / 1024,
		    (size_t)crypto_pwhash_argon2id_MEMLIMIT_MIN / 1024,
		    TOKENSTORE_KDF_MEMORY_MAX);
		return 0;
	}
	return 1;
}

/* kdf_memory KiB and kdf_passes as libsodium takes them; 0 or -1. */
static int
ts_kdf_from_config(struct ts_kdf *kdf, unsigned kdf_memory,
    unsigned kdf_passes, char *err, size_t errlen)
{
	kdf->opslimit = kdf_passes;
	kdf->memlimit = (size_t)kdf_memory * 1024;
	return ts_kdf_ok(kdf, err, errlen) ? 0 : -1;
}

/* Derive the key for password and ki's salt and parameters; 0 or -1. */
static int
ts_derive(struct tokenstore_job *job, struct ts_keyinfo *ki)
{
	const char	*pw = (const char *)(job->sec + 1);

	job->kdf_runs++;
	return crypto_pwhash(ki->key, sizeof(ki->key), pw, job->sec->pwlen,
	    ki->salt, ki->kdf.opslimit, ki->kdf.memlimit,
	    crypto_pwhash_ALG_ARGON2ID13);
}

/* Store v big-endian in n bytes at p. */
static void
ts_put_be(unsigned char *p, size_t n, unsigned long long v)
{
	while (n-- > 0) {
		p[n] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

/* The big-endian number of n bytes at p. */
static unsigned long long
ts_get_be(const unsigned char *p, size_t n)
{
	unsigned long long	v = 0;

	while (n-- > 0)
		v = (v << 8) | *p++;
	return v;
}

/* Write the header for ki and a new nonce into h. */
static void
ts_header_make(unsigned char h[TS_HEADER_LEN], const struct ts_keyinfo *ki)
{
	memset(h, 0, TS_HEADER_LEN);
	memcpy(h, TS_MAGIC, TS_MAGIC_LEN);
	h[TS_OFF_VERSION] = TS_VERSION;
	h[TS_OFF_ALG] = TS_ALG;
	ts_put_be(h + TS_OFF_OPSLIMIT, 4, ki->kdf.opslimit);
	ts_put_be(h + TS_OFF_MEMLIMIT, 8, ki->kdf.memlimit);
	memcpy(h + TS_OFF_SALT, ki->salt, TS_SALT_LEN);
	randombytes_buf(h + TS_OFF_NONCE, TS_NONCE_LEN);
}

/* Check a file's header and take its salt and parameters; 0 or -1. */
static int
ts_header_parse(const unsigned char *buf, size_t len, struct ts_keyinfo *ki,
    char *why, size_t whylen)
{
	unsigned long long	mem;

	if (len < TS_HEADER_LEN + TS_TAG_LEN ||
	    memcmp(buf, TS_MAGIC, TS_MAGIC_LEN) != 0) {
		snprintf(why, whylen, "not a mailtlsd token file");
		return -1;
	}
	if (buf[TS_OFF_VERSION] != TS_VERSION) {
		snprintf(why, whylen, "token file format %u, not %u",
		    buf[TS_OFF_VERSION], TS_VERSION);
		return -1;
	}
	if (buf[TS_OFF_ALG] != TS_ALG || buf[TS_OFF_ZERO] != 0 ||
	    buf[TS_OFF_ZERO + 1] != 0) {
		snprintf(why, whylen, "unknown key derivation %u",
		    buf[TS_OFF_ALG]);
		return -1;
	}
	ki->kdf.opslimit = ts_get_be(buf + TS_OFF_OPSLIMIT, 4);
	mem = ts_get_be(buf + TS_OFF_MEMLIMIT, 8);
	if (mem > SIZE_MAX)
		mem = SIZE_MAX;
	ki->kdf.memlimit = (size_t)mem;
	if (!ts_kdf_ok(&ki->kdf, why, whylen))
		return -1;
	memcpy(ki->salt, buf + TS_OFF_SALT, TS_SALT_LEN);
	return 0;
}

/* The additional data: header, section, NUL, user; its length. */
static size_t
ts_ad_make(unsigned char ad[TS_AD_MAX], const unsigned char *header,
    const struct tokenstore_job *job)
{
	size_t	sl = strlen(job->section), ul = strlen(job->user);

	/* Both fit: their encodings are at most TOKENSTORE_NAME_MAX. */
	memcpy(ad, header, TS_HEADER_LEN);
	memcpy(ad + TS_HEADER_LEN, job->section, sl);
	ad[TS_HEADER_LEN + sl] = '\0';
	memcpy(ad + TS_HEADER_LEN + sl + 1, job->user, ul);
	return TS_HEADER_LEN + sl + 1 + ul;
}

/* The tokens of set as JSON text (free with ts_json_free); NULL. */
static char *
ts_json_encode(const struct token_set *set)
{
	json_t	*root;
	char	*text;

	root = json_pack("{s:s, s:I, s:s, s:s, s:I}",
	    "access_token", set->access_token,
	    "access_expires", (json_int_t)set->access_expires,
	    "refresh_token", set->refresh_token,
	    "scope", set->scope,
	    "updated", (json_int_t)set->updated);
	if (root == NULL)
		return NULL;
	text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return text;
}

/* Wipe and free text from json_dumps(). */
static void
ts_json_free(char *text)
{
	json_free_t	free_fn;

	if (text == NULL)
		return;
	sodium_memzero(text, strlen(text));
	json_get_alloc_funcs(NULL, &free_fn);
	free_fn(text);
}

/* A string member of root ("" when absent) into *dst; 0 or -1. */
static int
ts_json_string(json_t *root, const char *name, char **dst)
{
	json_t	*v = json_object_get(root, name);

	if (v != NULL && !json_is_string(v))
		return -1;
	*dst = strdup(v != NULL ? json_string_value(v) : "");
	return *dst == NULL ? -1 : 0;
}

/* A time member of root (0 when absent) into *dst; 0 or -1. */
static int
ts_json_time(json_t *root, const char *name, time_t *dst)
{
	json_t	*v = json_object_get(root, name);

	*dst = 0;
	if (v == NULL)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	*dst = (time_t)json_integer_value(v);
	return 0;
}

/* Parse decrypted JSON into set; 0 or -1. */
static int
ts_json_decode(const unsigned char *plain, size_t len, struct token_set *set)
{
	json_error_t	 jerr;
	json_t		*root;
	int		 ret = -1;

	memset(set, 0, sizeof(*set));
	root = json_loadb((const char *)plain, len, JSON_REJECT_DUPLICATES,
	    &jerr);
	sodium_memzero(&jerr, sizeof(jerr));	/* may quote the text */
	if (root == NULL)
		return -1;
	if (json_is_object(root) &&
	    ts_json_string(root, "access_token", &set->access_token) == 0 &&
	    ts_json_string(root, "refresh_token", &set->refresh_token) == 0 &&
	    ts_json_string(root, "scope", &set->scope) == 0 &&
	    ts_json_time(root, "access_expires", &set->access_expires) == 0 &&
	    ts_json_time(root, "updated", &set->updated) == 0)
		ret = 0;
	json_decref(root);
	if (ret != 0)
		token_set_clear(set);
	return ret;
}

/* ---- Files (worker) ------------------------------------------------------ */

/* Set a job's result and reason. */
static enum tokenstore_result
ts_fail(struct tokenstore_job *job, enum tokenstore_result result,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static enum tokenstore_result
ts_fail(struct tokenstore_job *job, enum tokenstore_result result,
    const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(job->reason, sizeof(job->reason), fmt, ap);
	va_end(ap);
	job->result = result;
	return result;
}

/* The identity of a file from its stat. */
static void
ts_ident_set(struct ts_ident *id, const struct stat *st)
{
	memset(id, 0, sizeof(*id));
	id->dev = st->st_dev;
	id->ino = st->st_ino;
	id->size = st->st_size;
	id->mtime = st->st_mtim;
	id->ctime = st->st_ctim;
	id->valid = 1;
}

/* Whether two identities are the same version of the same file. */
static int
ts_ident_eq(const struct ts_ident *a, const struct ts_ident *b)
{
	return a->valid && b->valid && a->dev == b->dev && a->ino == b->ino &&
	    a->size == b->size &&
	    a->mtime.tv_sec == b->mtime.tv_sec &&
	    a->mtime.tv_nsec == b->mtime.tv_nsec &&
	    a->ctime.tv_sec == b->ctime.tv_sec &&
	    a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* Whether directory st may hold token files; why (after path) if not. */
static int
ts_dir_trusted(const struct stat *st, const char *path, char *why,
    size_t whylen)
{
	if (!S_ISDIR(st->st_mode))
		snprintf(why, whylen, "%s is not a directory", path);
	else if (st->st_uid != geteuid())
		snprintf(why, whylen, "%s is owned by uid %lu, not by uid %lu "
		    "that mailtlsd runs as", path, (unsigned long)st->st_uid,
		    (unsigned long)geteuid());
	else if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0)
		snprintf(why, whylen, "%s is writable by group or others "
		    "(mode %04o)", path, (unsigned)(st->st_mode & 07777));
	else
		return 1;
	return 0;
}

/*
 * Open directory name under dirfd (path for reasons), made 0700 first
 * when create: the descriptor, -2 when absent (and not create), or -1
 * with why.
 */
static int
ts_dir_open(int dirfd, const char *name, const char *path, int create,
    char *why, size_t whylen)
{
	struct stat	st;
	int		fd, made = 0;

	if (create) {
		if (mkdirat(dirfd, name, 0700) == 0)
			made = 1;
		else if (errno != EEXIST) {
			snprintf(why, whylen, "cannot make %s: %s", path,
			    strerror(errno));
			return -1;
		}
	}
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT && !create)
			return -2;
		/* Linux says ENOTDIR for a link with O_DIRECTORY. */
		if ((errno == ELOOP || errno == ENOTDIR) &&
		    fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISLNK(st.st_mode))
			snprintf(why, whylen, "%s is a symbolic link", path);
		else
			snprintf(why, whylen, "cannot open %s: %s", path,
			    strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0) {
		snprintf(why, whylen, "cannot open %s: %s", path,
		    strerror(errno));
		close(fd);
		return -1;
	}
	if (!ts_dir_trusted(&st, path, why, whylen)) {
		close(fd);
		return -1;
	}
	if (made)
		(void)fsync(dirfd);	/* the new directory's entry */
	return fd;
}

/* Whether the store's directory is still trusted; why if not. */
static int
ts_top_trusted(struct tokenstore *ts, char *why, size_t whylen)
{
	struct stat	st;

	if (fstat(ts->dirfd, &st) != 0) {
		snprintf(why, whylen, "%s: %s", ts->dir, strerror(errno));
		return 0;
	}
	return ts_dir_trusted(&st, ts->dir, why, whylen);
}

/* Whether an open token file may be used; sets the reason if not. */
static int
ts_file_trusted(struct tokenstore_job *job, const struct stat *st)
{
	if (st->st_uid != geteuid())
		ts_fail(job, TOKENSTORE_ERROR, "%s is owned by uid %lu, not by "
		    "uid %lu that mailtlsd runs as", job->shown,
		    (unsigned long)st->st_uid, (unsigned long)geteuid());
	else if ((st->st_mode & (S_IRWXG | S_IRWXO)) != 0)
		ts_fail(job, TOKENSTORE_ERROR, "%s has mode %04o: group or "
		    "others may use it", job->shown,
		    (unsigned)(st->st_mode & 07777));
	else if (st->st_nlink != 1)
		ts_fail(job, TOKENSTORE_ERROR, "%s has other hard links",
		    job->shown);
	else if (st->st_size > TOKENSTORE_FILE_MAX)
		ts_fail(job, TOKENSTORE_ERROR, "%s is larger than %d bytes",
		    job->shown, TOKENSTORE_FILE_MAX);
	else
		return 1;
	return 0;
}

/*
 * Read the account's file from its section directory: 0 with *buf (free
 * with safefile_free) and job->ident, 1 when there is none, or -1 with the
 * job's reason set.
 */
static int
ts_file_read(struct tokenstore_job *job, int dirfd, unsigned char **buf,
    size_t *len)
{
	struct stat	st;
	char		why[128];
	int		fd, ret;

	*buf = NULL;
	*len = 0;
	fd = safefile_open(dirfd, job->fname, SAFEFILE_NOFOLLOW, &st, why,
	    sizeof(why));
	if (fd < 0) {
		if (errno == ENOENT)
			return 1;
		if (errno == ELOOP)
			ts_fail(job, TOKENSTORE_ERROR, "%s is a symbolic link",
			    job->shown);
		else if (errno == EINVAL)
			ts_fail(job, TOKENSTORE_ERROR, "%s is not a regular "
			    "file", job->shown);
		else
			ts_fail(job, TOKENSTORE_ERROR, "%s: %s", job->shown,
			    why);
		return -1;
	}
	if (!ts_file_trusted(job, &st)) {
		close(fd);
		return -1;
	}
	ret = safefile_read_fd(fd, TOKENSTORE_FILE_MAX, buf, len, why,
	    sizeof(why));
	close(fd);
	if (ret != 0) {
		ts_fail(job, TOKENSTORE_ERROR, "%s: %s", job->shown, why);
		return -1;
	}
	job->reads++;
	ts_ident_set(&job->ident, &st);
	return 0;
}

/*
 * Open the file bytes with the job's password: OK with the key in
 * sec->found and the tokens in *set, WRONG or ERROR.  The cached key is
 * used when the file has its salt and parameters, else one derivation.
 */
static enum tokenstore_result
ts_unseal(struct tokenstore_job *job, const unsigned char *buf, size_t len,
    struct token_set *set)
{
	struct ts_jobsecret	*sec = job->sec;
	struct ts_keyinfo	*ki = &sec->found;
	unsigned char		 ad[TS_AD_MAX], *plain;
	unsigned long long	 plen;
	char			 why[128];
	size_t			 adlen, clen;
	int			 ret;

	if (ts_header_parse(buf, len, ki, why, sizeof(why)) != 0)
		return ts_fail(job, TOKENSTORE_ERROR, "%s: %s", job->shown,
		    why);
	clen = len - TS_HEADER_LEN;
	if (sec->has_cached && sec->cached.kdf.opslimit == ki->kdf.opslimit &&
	    sec->cached.kdf.memlimit == ki->kdf.memlimit &&
	    sodium_memcmp(sec->cached.salt, ki->salt, TS_SALT_LEN) == 0)
		memcpy(ki->key, sec->cached.key, TS_KEY_LEN);
	else if (ts_derive(job, ki) != 0)
		return ts_fail(job, TOKENSTORE_ERROR, "%s: the key derivation "
		    "failed (%zu KiB of memory)", job->shown,
		    ki->kdf.memlimit / 1024);
	if ((plain = malloc(clen)) == NULL)
		return ts_fail(job, TOKENSTORE_ERROR, "out of memory");
	adlen = ts_ad_make(ad, buf, job);
	ret = crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plen, NULL,
	    buf + TS_HEADER_LEN, clen, ad, adlen, buf + TS_OFF_NONCE, ki->key);
	if (ret != 0) {
		free(plain);
		return ts_fail(job, TOKENSTORE_WRONG, "%s is not sealed with "
		    "this password (or was altered)", job->shown);
	}
	ret = ts_json_decode(plain, (size_t)plen, set);
	sodium_memzero(plain, (size_t)plen);
	free(plain);
	if (ret != 0)
		return ts_fail(job, TOKENSTORE_ERROR, "%s: the sealed contents "
		    "are not the tokens of format %u", job->shown, TS_VERSION);
	sec->has_found = 1;
	job->result = TOKENSTORE_OK;
	return TOKENSTORE_OK;
}

/* Give tmp the account's name; replace an existing file only if asked. */
static int
ts_file_rename(int dirfd, const char *tmp, const char *name, int replace)
{
	if (replace)
		return renameat(dirfd, tmp, dirfd, name);
#ifdef RENAME_NOREPLACE
	if (renameat2(dirfd, tmp, dirfd, name, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
#endif
	/* A link never replaces a file either. */
	if (linkat(dirfd, tmp, dirfd, name, 0) != 0)
		return -1;
	(void)unlinkat(dirfd, tmp, 0);
	return 0;
}

/*
 * Seal data into a new file of the account: a 0600 temporary file written
 * and synced, then renamed (over the old file when replace, else only
 * when there is none), then the directory synced.  OK or ERROR.
 */
static enum tokenstore_result
ts_file_write(struct tokenstore_job *job, int dirfd, const unsigned char *data,
    size_t len, int replace)
{
	char		tmp[sizeof(TS_TMP_PREFIX) + 16];
	unsigned char	rnd[8];
	struct stat	st;
	size_t		i;
	int		fd, error;

	randombytes_buf(rnd, sizeof(rnd));
	memcpy(tmp, TS_TMP_PREFIX, sizeof(TS_TMP_PREFIX) - 1);
	for (i = 0; i < sizeof(rnd); i++)
		snprintf(tmp + sizeof(TS_TMP_PREFIX) - 1 + 2 * i, 3, "%02x",
		    rnd[i]);
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600);
	if (fd < 0)
		return ts_fail(job, TOKENSTORE_ERROR, "cannot make a file "
		    "beside %s: %s", job->shown, strerror(errno));
	if (fchmod(fd, 0600) != 0 || safefile_write_all(fd, data, len) != 0 ||
	    fsync(fd) != 0 || ts_file_rename(dirfd, tmp, job->fname,
	    replace) != 0) {
		error = errno;
		close(fd);
		(void)unlinkat(dirfd, tmp, 0);
		if (error == EEXIST)
			return ts_fail(job, TOKENSTORE_ERROR, "%s appeared "
			    "meanwhile: not replaced", job->shown);
		return ts_fail(job, TOKENSTORE_ERROR, "cannot write %s: %s",
		    job->shown, strerror(error));
	}
	/* After the rename, which may change the ctime. */
	if (fstat(fd, &st) == 0)
		ts_ident_set(&job->ident, &st);
	else
		memset(&job->ident, 0, sizeof(job->ident));
	close(fd);
	if (fsync(dirfd) != 0)
		return ts_fail(job, TOKENSTORE_ERROR, "cannot sync the "
		    "directory of %s: %s", job->shown, strerror(errno));
	job->writes++;
	job->result = TOKENSTORE_OK;
	return TOKENSTORE_OK;
}

/* Seal job->in with the key in sec->found and write it.  OK or ERROR. */
static enum tokenstore_result
ts_seal_write(struct tokenstore_job *job, int dirfd, int replace)
{
	unsigned char		*file, ad[TS_AD_MAX];
	unsigned long long	 clen;
	char			*text;
	size_t			 tlen, adlen, flen;
	enum tokenstore_result	 r;

	if ((text = ts_json_encode(&job->in)) == NULL)
		return ts_fail(job, TOKENSTORE_ERROR, "%s: the tokens cannot "
		    "be written as JSON (not UTF-8, or out of memory)",
		    job->shown);
	tlen = strlen(text);
	if (tlen > TS_PLAIN_MAX) {
		ts_json_free(text);
		return ts_fail(job, TOKENSTORE_ERROR, "%s: the tokens take "
		    "over %d bytes", job->shown, TS_PLAIN_MAX);
	}
	flen = TS_HEADER_LEN + tlen + TS_TAG_LEN;
	if ((file = malloc(flen)) == NULL) {
		ts_json_free(text);
		return ts_fail(job, TOKENSTORE_ERROR, "out of memory");
	}
	ts_header_make(file, &job->sec->found);
	adlen = ts_ad_make(ad, file, job);
	crypto_aead_xchacha20poly1305_ietf_encrypt(file + TS_HEADER_LEN, &clen,
	    (const unsigned char *)text, tlen, ad, adlen, NULL,
	    file + TS_OFF_NONCE, job->sec->found.key);
	ts_json_free(text);
	r = ts_file_write(job, dirfd, file, flen, replace);
	free(file);
	return r;
}

/* A new account: its key from the cache, or a new salt and derivation. */
static enum tokenstore_result
ts_new_key(struct tokenstore_job *job)
{
	struct ts_jobsecret	*sec = job->sec;

	if (sec->has_cached)
		sec->found = sec->cached;
	else {
		sec->found.kdf = job->new_kdf;
		randombytes_buf(sec->found.salt, TS_SALT_LEN);
		if (ts_derive(job, &sec->found) != 0)
			return ts_fail(job, TOKENSTORE_ERROR, "%s: the key "
			    "derivation failed (%zu KiB of memory)",
			    job->shown, sec->found.kdf.memlimit / 1024);
	}
	sec->has_found = 1;
	return TOKENSTORE_OK;
}

/* Run a save in the section's directory. */
static void
ts_run_save(struct tokenstore_job *job, int dirfd)
{
	struct token_set	 old;
	unsigned char		*buf;
	size_t			 len;
	int			 r;

	if ((r = ts_file_read(job, dirfd, &buf, &len)) < 0)
		return;
	if (r == 0) {
		/* On disk: written only when this password opens it. */
		memset(&old, 0, sizeof(old));
		ts_unseal(job, buf, len, &old);
		token_set_clear(&old);
		safefile_free(buf, len);
		if (job->result == TOKENSTORE_OK)
			ts_seal_write(job, dirfd, 1);
		return;
	}
	if (ts_new_key(job) == TOKENSTORE_OK)
		ts_seal_write(job, dirfd, 0);
}

/* Run one job on the worker. */
static void
ts_run(struct tokenstore *ts, struct tokenstore_job *job)
{
	unsigned char	*buf;
	size_t		 len;
	char		 dpath[TS_REASON_MAX], why[TS_REASON_MAX];
	int		 dirfd, r;

	if (!ts_top_trusted(ts, why, sizeof(why))) {
		ts_fail(job, TOKENSTORE_ERROR, "%s", why);
		return;
	}
	snprintf(dpath, sizeof(dpath), "%s/%s", ts->dir, job->dname);
	dirfd = ts_dir_open(ts->dirfd, job->dname, dpath, job->kind == TS_SAVE,
	    why, sizeof(why));
	if (dirfd == -2) {
		ts_fail(job, TOKENSTORE_ABSENT, "%s does not exist", dpath);
		return;
	}
	if (dirfd < 0) {
		ts_fail(job, TOKENSTORE_ERROR, "%s", why);
		return;
	}
	if (job->kind == TS_SAVE)
		ts_run_save(job, dirfd);
	else if ((r = ts_file_read(job, dirfd, &buf, &len)) == 1)
		ts_fail(job, TOKENSTORE_ABSENT, "%s does not exist",
		    job->shown);
	else if (r == 0) {
		ts_unseal(job, buf, len, &job->out);
		safefile_free(buf, len);
	}
	close(dirfd);
}

/* ---- The worker thread --------------------------------------------------- */

/* Put a finished job on the done list and wake the event loop. */
static void
ts_post_done(struct tokenstore *ts, struct tokenstore_job *job)
{
	ssize_t	n;

	pthread_mutex_lock(&ts->lock);
	TAILQ_INSERT_TAIL(&ts->done, job, entry);
	if (!ts->notified) {
		ts->notified = 1;
		do
			n = write(ts->pipe_w, "", 1);
		while (n < 0 && errno == EINTR);
		/* EAGAIN: the pipe already holds a wake-up. */
	}
	pthread_mutex_unlock(&ts->lock);
}

/* The worker: jobs in order until stopped and nothing is left. */
static void *
ts_worker(void *arg)
{
	struct tokenstore	*ts = arg;
	struct tokenstore_job	*job;

	pthread_mutex_lock(&ts->lock);
	for (;;) {
		while ((TAILQ_EMPTY(&ts->queue) || ts->held) && !ts->stopping)
			pthread_cond_wait(&ts->wake, &ts->lock);
		if ((job = TAILQ_FIRST(&ts->queue)) == NULL)
			break;
		TAILQ_REMOVE(&ts->queue, job, entry);
		ts->queued--;
		pthread_mutex_unlock(&ts->lock);
		ts_run(ts, job);
		ts_post_done(ts, job);
		pthread_mutex_lock(&ts->lock);
	}
	pthread_mutex_unlock(&ts->lock);
	return NULL;
}

/* Start the worker with every signal blocked (the event loop takes them). */
static int
ts_worker_start(struct tokenstore *ts)
{
	sigset_t	all, old;
	int		error;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	error = pthread_create(&ts->thread, NULL, ts_worker, ts);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (error != 0)
		return error;
	ts->thread_started = 1;
	return 0;
}

/* ---- The cache (event loop) ---------------------------------------------- */

/* The account (section, user), or NULL. */
static struct ts_account *
ts_account_find(struct tokenstore *ts, const char *section, const char *user)
{
	struct ts_account	*acc;

	TAILQ_FOREACH(acc, &ts->accounts, entry)
		if (strcmp(acc->user, user) == 0 &&
		    strcmp(acc->section, section) == 0)
			return acc;
	return NULL;
}

/* Forget what unlocked the account. */
static void
ts_account_lock(struct tokenstore *ts, struct ts_account *acc)
{
	if (acc->secret != NULL) {
		sodium_free(acc->secret);
		acc->secret = NULL;
		ts->n_unlocked--;
	}
	token_set_clear(&acc->tokens);
	memset(&acc->ident, 0, sizeof(acc->ident));
}

/* Remove an account from the cache and free it. */
static void
ts_account_free(struct tokenstore *ts, struct ts_account *acc)
{
	ts_account_lock(ts, acc);
	TAILQ_REMOVE(&ts->accounts, acc, entry);
	free(acc->section);
	free(acc->user);
	free(acc);
}

/* Drop the account when nothing keeps it: not unlocked, no job. */
static void
ts_account_release(struct tokenstore *ts, struct ts_account *acc)
{
	if (acc != NULL && acc->secret == NULL && acc->pending == 0)
		ts_account_free(ts, acc);
}

/* The account, made (locked) when missing; NULL: no memory. */
static struct ts_account *
ts_account_get(struct tokenstore *ts, const char *section, const char *user)
{
	struct ts_account	*acc;

	if ((acc = ts_account_find(ts, section, user)) != NULL)
		return acc;
	if ((acc = calloc(1, sizeof(*acc))) == NULL)
		return NULL;
	acc->section = strdup(section);
	acc->user = strdup(user);
	if (acc->section == NULL || acc->user == NULL) {
		free(acc->section);
		free(acc->user);
		free(acc);
		return NULL;
	}
	TAILQ_INSERT_HEAD(&ts->accounts, acc, entry);
	return acc;
}

/* The account was just used: first in the list. */
static void
ts_account_touch(struct tokenstore *ts, struct ts_account *acc)
{
	TAILQ_REMOVE(&ts->accounts, acc, entry);
	TAILQ_INSERT_HEAD(&ts->accounts, acc, entry);
}

/* Lock the least recently used idle accounts while over the bound. */
static void
ts_cache_trim(struct tokenstore *ts)
{
	struct ts_account	*acc, *prev;

	for (acc = TAILQ_LAST(&ts->accounts, ts_accounts);
	    acc != NULL && ts->n_unlocked > TOKENSTORE_CACHE_MAX; acc = prev) {
		prev = TAILQ_PREV(acc, ts_accounts, entry);
		if (acc->secret != NULL && acc->pending == 0) {
			ts_account_lock(ts, acc);
			ts_account_release(ts, acc);
		}
	}
}

/* Keep what a successful job unlocked the account with. */
static void
ts_cache_keep(struct tokenstore *ts, struct ts_account *acc,
    struct tokenstore_job *job)
{
	struct token_set	tokens;

	if (job->kind == TS_SAVE) {
		tokens = job->in;
		memset(&job->in, 0, sizeof(job->in));
	} else if (token_set_copy(&tokens, &job->out) != 0) {
		ts_account_lock(ts, acc);	/* the next open reads it */
		return;
	}
	if (acc->secret == NULL) {
		if ((acc->secret = sodium_malloc(sizeof(*acc->secret))) ==
		    NULL) {
			token_set_clear(&tokens);
			ts_account_lock(ts, acc);
			return;
		}
		ts->n_unlocked++;
	}
	memcpy(acc->secret->verifier, job->sec->verifier, TS_VERIFIER_LEN);
	acc->secret->ki = job->sec->found;
	ts_set_move(&acc->tokens, &tokens);
	acc->ident = job->ident;
	ts_account_touch(ts, acc);
}

/* What a finished job teaches the cache. */
static void
ts_cache_learn(struct tokenstore *ts, struct tokenstore_job *job)
{
	struct ts_account	*acc;

	if (job->from_cache)
		return;
	acc = ts_account_find(ts, job->section, job->user);
	if (acc != NULL && job->counted)
		acc->pending--;
	if (acc == NULL)
		return;
	if (job->result == TOKENSTORE_OK && job->sec->has_found)
		ts_cache_keep(ts, acc, job);
	else if (job->result == TOKENSTORE_ABSENT ||
	    (job->result == TOKENSTORE_WRONG && job->sec->has_cached))
		ts_account_lock(ts, acc);	/* gone, or no longer ours */
	ts_account_release(ts, acc);
	ts_cache_trim(ts);
}

/* ---- Jobs (event loop) --------------------------------------------------- */

/* Wipe and free a job. */
static void
ts_job_free(struct tokenstore_job *job)
{
	if (job == NULL)
		return;
	free(job->section);
	free(job->user);
	free(job->shown);
	if (job->sec != NULL)
		sodium_free(job->sec);
	token_set_clear(&job->in);
	token_set_clear(&job->out);
	free(job);
}

/* The path of the job's file, for reasons; 0 or -1. */
static int
ts_job_shown(struct tokenstore *ts, struct tokenstore_job *job, int named)
{
	const char	*d = named ? job->dname : job->section;
	const char	*f = named ? job->fname : "(user)";
	size_t		 len = strlen(ts->dir) + strlen(d) + strlen(f) + 3;

	if ((job->shown = malloc(len)) == NULL)
		return -1;
	snprintf(job->shown, len, "%s/%s/%s", ts->dir, d, f);
	return 0;
}

/*
 * A new job with a copy of the password (in sodium_malloc memory) and its
 * verifier; NULL: no memory.  A request that cannot be run has its result
 * set to TOKENSTORE_ERROR already.
 */
static struct tokenstore_job *
ts_job_new(struct tokenstore *ts, enum ts_kind kind, const char *section,
    const char *user, const char *password, size_t pwlen, tokenstore_cb *cb,
    void *arg)
{
	struct tokenstore_job	*job;
	size_t			 alloc, copy;
	int			 named;

	if ((job = calloc(1, sizeof(*job))) == NULL)
		return NULL;
	job->ts = ts;
	job->kind = kind;
	job->cb = cb;
	job->arg = arg;
	job->result = TOKENSTORE_OK;
	copy = pwlen <= TOKENSTORE_PASSWORD_MAX ? pwlen : 0;
	/* A multiple of 16: sodium_malloc() aligns the end, not the start. */
	alloc = (sizeof(*job->sec) + copy + 15) & ~(size_t)15;
	named = tokenstore_file_name(job->dname, sizeof(job->dname),
	    section) == 0 && tokenstore_file_name(job->fname,
	    sizeof(job->fname), user) == 0;
	if ((job->section = strdup(section)) == NULL ||
	    (job->user = strdup(user)) == NULL ||
	    ts_job_shown(ts, job, named) != 0 ||
	    (job->sec = sodium_malloc(alloc)) == NULL) {
		ts_job_free(job);
		return NULL;
	}
	memset(job->sec, 0, sizeof(*job->sec));
	job->sec->alloc = alloc;
	job->sec->pwlen = copy;
	if (copy > 0)
		memcpy(job->sec + 1, password, copy);
	crypto_generichash(job->sec->verifier, TS_VERIFIER_LEN,
	    (const unsigned char *)password, copy, ts->vkey, TS_KEY_LEN);
	if (!named)
		ts_fail(job, TOKENSTORE_ERROR, "%s: the section or user name "
		    "is empty or longer than %d bytes as a file name",
		    job->shown, TOKENSTORE_NAME_MAX);
	else if (pwlen > TOKENSTORE_PASSWORD_MAX)
		ts_fail(job, TOKENSTORE_ERROR, "%s: the password is longer "
		    "than %d bytes", job->shown, TOKENSTORE_PASSWORD_MAX);
	else if (pwlen == 0)
		ts_fail(job, TOKENSTORE_ERROR, "%s: an empty password seals "
		    "nothing", job->shown);
	return job;
}

/* Whether the job's password is the one the cached account holds. */
static int
ts_job_matches(const struct tokenstore_job *job, const struct ts_account *acc)
{
	return acc != NULL && acc->secret != NULL &&
	    sodium_memcmp(acc->secret->verifier, job->sec->verifier,
	    TS_VERIFIER_LEN) == 0;
}

/*
 * Whether the account's file is still the one read or written last, in
 * directories still trusted: three look-ups of metadata, no read.
 */
static int
ts_cache_fresh(struct tokenstore *ts, const struct tokenstore_job *job,
    const struct ts_account *acc)
{
	char		rel[2 * TOKENSTORE_NAME_MAX + 2], why[TS_REASON_MAX];
	struct stat	st;
	struct ts_ident	id;

	if (!ts_top_trusted(ts, why, sizeof(why)) ||
	    fstatat(ts->dirfd, job->dname, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
	    !ts_dir_trusted(&st, job->dname, why, sizeof(why)))
		return 0;
	snprintf(rel, sizeof(rel), "%s/%s", job->dname, job->fname);
	if (fstatat(ts->dirfd, rel, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return 0;
	ts_ident_set(&id, &st);
	return ts_ident_eq(&id, &acc->ident);
}

/* Hand a job to the worker, or fail it when the queue is full. */
static void
ts_submit(struct tokenstore *ts, struct tokenstore_job *job,
    struct ts_account *acc)
{
	pthread_mutex_lock(&ts->lock);
	if (ts->queued < TOKENSTORE_QUEUE_MAX) {
		acc->pending++;
		job->counted = 1;
		TAILQ_INSERT_TAIL(&ts->queue, job, entry);
		ts->queued++;
		pthread_cond_signal(&ts->wake);
		pthread_mutex_unlock(&ts->lock);
		return;
	}
	pthread_mutex_unlock(&ts->lock);
	ts_fail(job, TOKENSTORE_ERROR, "busy: %d requests wait for the token "
	    "store", TOKENSTORE_QUEUE_MAX);
	ts_account_release(ts, acc);
	ts_post_done(ts, job);
}

/* Queue job for the worker with the cached key when it matches. */
static struct tokenstore_job *
ts_queue(struct tokenstore *ts, struct tokenstore_job *job)
{
	struct ts_account	*acc;

	acc = ts_account_find(ts, job->section, job->user);
	if (ts_job_matches(job, acc)) {
		job->sec->cached = acc->secret->ki;
		job->sec->has_cached = 1;
	}
	if ((acc = ts_account_get(ts, job->section, job->user)) == NULL) {
		ts_job_free(job);
		return NULL;
	}
	ts_submit(ts, job, acc);
	return job;
}

/* Open an account: from the cache, else on the worker. */
struct tokenstore_job *
tokenstore_open(struct tokenstore *ts, const char *section, const char *user,
    const char *password, size_t pwlen, tokenstore_cb *cb, void *arg)
{
	struct tokenstore_job	*job;
	struct ts_account	*acc;

	if ((job = ts_job_new(ts, TS_OPEN, section, user, password, pwlen, cb,
	    arg)) == NULL)
		return NULL;
	if (job->result != TOKENSTORE_OK) {
		ts_post_done(ts, job);
		return job;
	}
	acc = ts_account_find(ts, section, user);
	if (ts_job_matches(job, acc) && acc->pending == 0 &&
	    ts_cache_fresh(ts, job, acc)) {
		if (token_set_copy(&job->out, &acc->tokens) != 0) {
			ts_job_free(job);
			return NULL;
		}
		job->from_cache = 1;
		ts->stats.cache_hits++;
		ts_account_touch(ts, acc);
		ts_post_done(ts, job);
		return job;
	}
	return ts_queue(ts, job);
}

/* The Argon2id parameters for a new file of section. */
static struct ts_kdf
ts_section_kdf(const struct tokenstore *ts, const char *section)
{
	int	i;

	for (i = 0; i < ts->n_sections; i++)
		if (strcmp(ts->sections[i].name, section) == 0)
			return ts->sections[i].kdf;
	return ts->kdf;
}

/* Save an account's tokens on the worker. */
struct tokenstore_job *
tokenstore_save(struct tokenstore *ts, const char *section, const char *user,
    const char *password, size_t pwlen, const struct token_set *set,
    tokenstore_cb *cb, void *arg)
{
	struct tokenstore_job	*job;

	if ((job = ts_job_new(ts, TS_SAVE, section, user, password, pwlen, cb,
	    arg)) == NULL)
		return NULL;
	if (job->result != TOKENSTORE_OK) {
		ts_post_done(ts, job);
		return job;
	}
	if (token_set_copy(&job->in, set) != 0) {
		ts_job_free(job);
		return NULL;
	}
	if (job->in.updated == 0)
		job->in.updated = time(NULL);
	job->new_kdf = ts_section_kdf(ts, section);
	return ts_queue(ts, job);
}

/* Detach the caller from a job. */
void
tokenstore_cancel(struct tokenstore_job *job)
{
	if (job != NULL)
		job->cb = NULL;
}

/* Learn from a finished job, call its callback and free it. */
static void
ts_deliver(struct tokenstore *ts, struct tokenstore_job *job)
{
	const struct token_set	*set = NULL;
	const char		*reason = NULL;

	ts->stats.kdf_runs += job->kdf_runs;
	ts->stats.file_reads += job->reads;
	ts->stats.file_writes += job->writes;
	ts_cache_learn(ts, job);
	if (job->result == TOKENSTORE_OK) {
		if (job->kind == TS_OPEN)
			set = &job->out;
	} else
		reason = job->reason;
	if (job->cb != NULL && !ts->free_requested)
		job->cb(job->result, set, reason, job->arg);
	ts_job_free(job);
}

static void	ts_destroy(struct tokenstore *);

/* The worker (or the event loop itself) finished jobs: deliver them. */
static void
ts_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tokenstore	*ts = arg;
	struct tokenstore_job	*job;
	struct ts_jobs		 done;
	char			 buf[64];

	(void)what;
	while (read(fd, buf, sizeof(buf)) > 0)
		continue;
	TAILQ_INIT(&done);
	pthread_mutex_lock(&ts->lock);
	TAILQ_CONCAT(&done, &ts->done, entry);
	ts->notified = 0;
	pthread_mutex_unlock(&ts->lock);
	ts->delivering = 1;
	while ((job = TAILQ_FIRST(&done)) != NULL) {
		TAILQ_REMOVE(&done, job, entry);
		ts_deliver(ts, job);
	}
	ts->delivering = 0;
	if (ts->free_requested)
		ts_destroy(ts);
}

/* ---- The store ----------------------------------------------------------- */

/* Make the store and start its worker. */
struct tokenstore *
tokenstore_new(struct event_base *base, const char *dir, unsigned kdf_memory,
    unsigned kdf_passes, char *err, size_t errlen)
{
	struct tokenstore	*ts;
	int			 fds[2], error;

	if (sodium_init() < 0) {
		snprintf(err, errlen, "libsodium cannot start");
		return NULL;
	}
	if ((ts = calloc(1, sizeof(*ts))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ts->base = base;
	ts->dirfd = ts->pipe_r = ts->pipe_w = -1;
	TAILQ_INIT(&ts->accounts);
	TAILQ_INIT(&ts->queue);
	TAILQ_INIT(&ts->done);
	pthread_mutex_init(&ts->lock, NULL);
	pthread_cond_init(&ts->wake, NULL);
	if (ts_kdf_from_config(&ts->kdf, kdf_memory, kdf_passes, err,
	    errlen) != 0)
		goto fail;
	if ((ts->dir = strdup(dir)) == NULL ||
	    (ts->vkey = sodium_malloc(TS_KEY_LEN)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	randombytes_buf(ts->vkey, TS_KEY_LEN);
	if ((ts->dirfd = ts_dir_open(AT_FDCWD, dir, dir, 1, err, errlen)) < 0)
		goto fail;
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		goto fail;
	}
	ts->pipe_r = fds[0];
	ts->pipe_w = fds[1];
	if ((ts->done_ev = event_new(base, ts->pipe_r, EV_READ | EV_PERSIST,
	    ts_done_cb, ts)) == NULL || event_add(ts->done_ev, NULL) != 0) {
		snprintf(err, errlen, "cannot watch the token store's pipe");
		goto fail;
	}
	if ((error = ts_worker_start(ts)) != 0) {
		snprintf(err, errlen, "cannot start the token store's thread: "
		    "%s", strerror(error));
		goto fail;
	}
	return ts;
fail:
	ts_destroy(ts);
	return NULL;
}

/* Set the Argon2id parameters for new files of section. */
int
tokenstore_set_kdf(struct tokenstore *ts, const char *section,
    unsigned kdf_memory, unsigned kdf_passes, char *err, size_t errlen)
{
	struct ts_section_kdf	*sk = NULL;
	struct ts_kdf		 kdf;
	int			 i;

	if (ts_kdf_from_config(&kdf, kdf_memory, kdf_passes, err, errlen) != 0)
		return -1;
	for (i = 0; i < ts->n_sections && sk == NULL; i++)
		if (strcmp(ts->sections[i].name, section) == 0)
			sk = &ts->sections[i];
	if (sk == NULL) {
		if (ts->n_sections == TS_SECTIONS_MAX ||
		    strlen(section) >= sizeof(sk->name)) {
			snprintf(err, errlen, "too many sections for the token "
			    "store, or a name too long");
			return -1;
		}
		sk = &ts->sections[ts->n_sections++];
		snprintf(sk->name, sizeof(sk->name), "%s", section);
	}
	sk->kdf = kdf;
	return 0;
}

/*
 * Stop the worker (it finishes its job and the queued saves; queued opens
 * are dropped), then free every job and account, wiping their secrets.
 */
static void
ts_destroy(struct tokenstore *ts)
{
	struct tokenstore_job	*job, *next;
	struct ts_jobs		 dropped;

	TAILQ_INIT(&dropped);
	if (ts->thread_started) {
		pthread_mutex_lock(&ts->lock);
		ts->stopping = 1;
		for (job = TAILQ_FIRST(&ts->queue); job != NULL; job = next) {
			next = TAILQ_NEXT(job, entry);
			if (job->kind == TS_OPEN) {
				TAILQ_REMOVE(&ts->queue, job, entry);
				ts->queued--;
				TAILQ_INSERT_TAIL(&dropped, job, entry);
			}
		}
		pthread_cond_signal(&ts->wake);
		pthread_mutex_unlock(&ts->lock);
		pthread_join(ts->thread, NULL);
	}
	TAILQ_CONCAT(&dropped, &ts->done, entry);
	TAILQ_CONCAT(&dropped, &ts->queue, entry);
	while ((job = TAILQ_FIRST(&dropped)) != NULL) {
		TAILQ_REMOVE(&dropped, job, entry);
		ts_job_free(job);
	}
	while (!TAILQ_EMPTY(&ts->accounts))
		ts_account_free(ts, TAILQ_FIRST(&ts->accounts));
	if (ts->done_ev != NULL)
		event_free(ts->done_ev);
	if (ts->pipe_r >= 0)
		close(ts->pipe_r);
	if (ts->pipe_w >= 0)
		close(ts->pipe_w);
	if (ts->dirfd >= 0)
		close(ts->dirfd);
	if (ts->vkey != NULL)
		sodium_free(ts->vkey);
	pthread_cond_destroy(&ts->wake);
	pthread_mutex_destroy(&ts->lock);
	free(ts->dir);
	free(ts);
}

/* Free the store; from inside one of its callbacks, once it returns. */
void
tokenstore_free(struct tokenstore *ts)
{
	if (ts == NULL)
		return;
	if (ts->delivering) {
		ts->free_requested = 1;		/* no callback from now on */
		return;
	}
	ts_destroy(ts);
}

/* Hold the worker before its next job, or let it go on. */
void
tokenstore_hold(struct tokenstore *ts, int hold)
{
	pthread_mutex_lock(&ts->lock);
	ts->held = hold;
	pthread_cond_signal(&ts->wake);
	pthread_mutex_unlock(&ts->lock);
}

/* Report every unlocked account. */
void
tokenstore_foreach(const struct tokenstore *ts,
    void (*fn)(const struct tokenstore_account *, void *), void *arg)
{
	const struct ts_account		*acc;
	struct tokenstore_account	 a;

	TAILQ_FOREACH(acc, &ts->accounts, entry) {
		if (acc->secret == NULL)
			continue;
		a.section = acc->section;
		a.user = acc->user;
		a.updated = acc->tokens.updated;
		a.access_expires = acc->tokens.access_expires;
		fn(&a, arg);
	}
}

/* Copy the counters. */
void
tokenstore_get_stats(const struct tokenstore *ts, struct tokenstore_stats *st)
{
	*st = ts->stats;
}
