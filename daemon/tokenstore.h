/*
 * tokenstore.h - OAuth2 tokens at rest: state_dir/oauth2/, one file per
 * [oauth2:NAME] section and user, sealed with a key derived from the
 * password the mail client logs in with (Argon2id, libsodium).
 *
 * The key derivation is memory-hard on purpose and takes a noticeable
 * time, so it runs on a worker thread together with every file read and
 * write (temporary file, fsync, rename, fsync of the directory); results
 * come back to the event loop through the callbacks, never from inside
 * the call that asked.  A successful unlock is kept in memory: the same
 * password then opens the account without a new derivation and without
 * reading the file (compared in constant time), unless the file changed
 * on disk.  A wrong password always costs a derivation, cached account or
 * not.  A wrong password never changes the file.  Files follow the rules
 * of the generated certificate: owned by the daemon's user, mode 0600, no
 * symbolic links, in directories only that user can write.
 *
 * Everything here is called from the event loop's thread; the module
 * logs nothing and gives reasons instead (none holds a secret).  Make the
 * store after detaching and after the privilege drop: its thread does not
 * survive fork(), and its files belong to the user it runs as.
 */
#ifndef MAILTLSD_TOKENSTORE_H
#define MAILTLSD_TOKENSTORE_H

#include <stddef.h>
#include <time.h>

struct event_base;
struct tokenstore;
struct tokenstore_job;

#define TOKENSTORE_QUEUE_MAX	256	/* jobs waiting; over it: "busy" */
#define TOKENSTORE_CACHE_MAX	1024	/* unlocked accounts kept */
#define TOKENSTORE_FILE_MAX	65536	/* a token file, header included */
#define TOKENSTORE_NAME_MAX	255	/* an encoded file name, bytes */
#define TOKENSTORE_PASSWORD_MAX	4096	/* bytes of a password */
/* Argon2id bounds, for new files and for what a file records. */
#define TOKENSTORE_KDF_MEMORY_MAX (1024 * 1024)	/* KiB: 1 GiB */
#define TOKENSTORE_KDF_PASSES_MAX 10

/* What one account holds; strings are NUL terminated, "" when absent. */
struct token_set {
	char	*access_token;
	time_t	 access_expires;	/* 0: unknown */
	char	*refresh_token;
	char	*scope;			/* as granted */
	time_t	 updated;		/* 0 on save: the time of the save */
};

enum tokenstore_result {
	TOKENSTORE_OK,		/* unlocked (or saved) */
	TOKENSTORE_ABSENT,	/* no file for this account yet */
	TOKENSTORE_WRONG,	/* the file is not sealed with this password,
				 * or was altered: it is left as it is */
	TOKENSTORE_ERROR	/* unreadable, untrusted, I/O, busy: reason */
};

/*
 * set is the store's, valid during the call (NULL unless OK on open).
 * reason is NULL on OK, else a short text for the log.
 */
typedef void	tokenstore_cb(enum tokenstore_result,
		    const struct token_set *set, const char *reason, void *arg);

/*
 * dir is state_dir/oauth2 (created 0700 when missing; refused when it is
 * a symbolic link, not owned by this process's user, or writable by group
 * or others); kdf_memory in KiB and kdf_passes are the Argon2id
 * parameters for new files of sections without their own (each file
 * records its own).  Starts the worker thread.  NULL with err set.
 */
struct tokenstore *tokenstore_new(struct event_base *, const char *dir,
		    unsigned kdf_memory, unsigned kdf_passes,
		    char *err, size_t errlen);

/*
 * The Argon2id parameters for new files of one section (kdf_memory and
 * kdf_passes of [oauth2:NAME]); later calls replace them.  0, or -1 with
 * err when they are out of bounds.
 */
int		 tokenstore_set_kdf(struct tokenstore *, const char *section,
		    unsigned kdf_memory, unsigned kdf_passes,
		    char *err, size_t errlen);

/*
 * Stop the worker: the job it is running finishes, queued opens are
 * dropped, queued saves are written (tokens are never lost), so this may
 * wait for key derivations.  No callback is called, then or later; every
 * secret held is wiped.  tokenstore_free(NULL) does nothing.
 */
void		 tokenstore_free(struct tokenstore *);

/*
 * Open the account (section, user) with password: TOKENSTORE_OK with its
 * tokens, TOKENSTORE_ABSENT, TOKENSTORE_WRONG or TOKENSTORE_ERROR.  From
 * the cache when this password unlocked it before and the file is the
 * one read or written then.  The job is valid until its callback returns
 * or tokenstore_cancel().  NULL: no memory (cb is not called).
 */
struct tokenstore_job *tokenstore_open(struct tokenstore *,
		    const char *section, const char *user,
		    const char *password, size_t pwlen,
		    tokenstore_cb *, void *arg);

/*
 * Write set for the account, sealed with password, replacing the file
 * atomically with a new nonce.  An account already on disk is written
 * only when password opens it (with its salt and key: no derivation when
 * the cache holds them), else the callback gets TOKENSTORE_WRONG and the
 * file stays as it is; an absent account gets a new salt and key.  The
 * callback gets OK, WRONG or ERROR.  NULL: no memory.
 */
struct tokenstore_job *tokenstore_save(struct tokenstore *,
		    const char *section, const char *user,
		    const char *password, size_t pwlen,
		    const struct token_set *set, tokenstore_cb *, void *arg);

/*
 * The caller went away: cb will not be called.  The work may still
 * finish: a cancelled save is still written, since its tokens are real.
 */
void		 tokenstore_cancel(struct tokenstore_job *);

/* One unlocked account, for status (no secrets). */
struct tokenstore_account {
	const char	*section;
	const char	*user;
	time_t		 updated;
	time_t		 access_expires;	/* 0: unknown */
};

/*
 * Call fn for each account the cache holds unlocked, most recently used
 * first; fn must not call the store.
 */
void		 tokenstore_foreach(const struct tokenstore *,
		    void (*fn)(const struct tokenstore_account *, void *),
		    void *arg);

/* What the store has done since it started (for tests and metrics). */
struct tokenstore_stats {
	unsigned long	kdf_runs;	/* Argon2id derivations */
	unsigned long	file_reads;	/* token files read */
	unsigned long	file_writes;	/* token files written */
	unsigned long	cache_hits;	/* opens answered from memory */
};

void		 tokenstore_get_stats(const struct tokenstore *,
		    struct tokenstore_stats *);

/*
 * For tests: hold = 1 makes the worker wait before its next job (jobs
 * queue up), 0 lets it go on.  tokenstore_free() ends a hold.
 */
void		 tokenstore_hold(struct tokenstore *, int hold);

/*
 * The file name of a section or user under dir: bytes other than
 * [A-Za-z0-9@._+-] and a leading '.' as %XX (upper case), so a name can
 * never be "", ".", ".." or hold a '/'.  0, or -1 when name is empty or
 * its encoding would exceed TOKENSTORE_NAME_MAX bytes (or len).
 */
int		 tokenstore_file_name(char *buf, size_t len, const char *name);

/* Copy / wipe and free the strings of a token_set; 0 or -1 (memory). */
int		 token_set_copy(struct token_set *dst,
		    const struct token_set *src);
void		 token_set_clear(struct token_set *);

#endif /* MAILTLSD_TOKENSTORE_H */
