/*
 * tokenstore.h - OAuth2 tokens at rest: state_dir/oauth2/, one file per
 * [oauth2:NAME] section and user, sealed with a key derived from the
 * password the mail client logs in with (Argon2id, libsodium).
 *
 * The key derivation is memory-hard on purpose and takes a noticeable
 * time, so it runs on a worker thread together with every file write
 * (temporary file, fsync, rename, fsync of the directory); results come
 * back to the event loop through the callbacks.  A successful unlock is
 * kept in memory: the same password then opens the account without a new
 * derivation (compared in constant time).  A wrong password never changes
 * the file.  Files follow the rules of the generated certificate: owned
 * by the daemon's user, mode 0600, no symbolic links, in a directory only
 * that user can write.
 */
#ifndef MAILTLSD_TOKENSTORE_H
#define MAILTLSD_TOKENSTORE_H

#include <stddef.h>
#include <time.h>

struct event_base;
struct tokenstore;
struct tokenstore_job;

/* What one account holds; strings are NUL terminated, "" when absent. */
struct token_set {
	char	*access_token;
	time_t	 access_expires;	/* 0: unknown */
	char	*refresh_token;
	char	*scope;			/* as granted */
	time_t	 updated;
};

enum tokenstore_result {
	TOKENSTORE_OK,		/* unlocked (or saved) */
	TOKENSTORE_ABSENT,	/* no file for this account yet */
	TOKENSTORE_WRONG,	/* the file is not sealed with this password */
	TOKENSTORE_ERROR	/* unreadable, untrusted, I/O: reason given */
};

/* set is the store's, valid during the call (NULL unless OK on open). */
typedef void	tokenstore_cb(enum tokenstore_result,
		    const struct token_set *set, const char *reason, void *arg);

/*
 * dir is state_dir/oauth2 (created 0700 when missing); kdf_memory in KiB
 * and kdf_passes are the Argon2id parameters for new files (each file
 * records its own).  NULL with err set.
 */
struct tokenstore *tokenstore_new(struct event_base *, const char *dir,
		    unsigned kdf_memory, unsigned kdf_passes,
		    char *err, size_t errlen);
void		 tokenstore_free(struct tokenstore *);

/*
 * Open the account (section, user) with password: TOKENSTORE_OK with its
 * tokens, TOKENSTORE_ABSENT, TOKENSTORE_WRONG or TOKENSTORE_ERROR.  From
 * the cache when this password unlocked it before.  NULL: no memory.
 */
struct tokenstore_job *tokenstore_open(struct tokenstore *,
		    const char *section, const char *user,
		    const char *password, size_t pwlen,
		    tokenstore_cb *, void *arg);

/*
 * Write set for the account, sealed with password (a new salt and key
 * when the account has no unlocked key for it yet; replaces the file
 * atomically).  Only after a successful open with the same password, or
 * for an account that is absent.  The callback gets OK or ERROR.
 */
struct tokenstore_job *tokenstore_save(struct tokenstore *,
		    const char *section, const char *user,
		    const char *password, size_t pwlen,
		    const struct token_set *set, tokenstore_cb *, void *arg);

/* The caller went away: cb will not be called (the work may finish). */
void		 tokenstore_cancel(struct tokenstore_job *);

/* Copy / wipe and free the strings of a token_set. */
int		 token_set_copy(struct token_set *dst,
		    const struct token_set *src);
void		 token_set_clear(struct token_set *);

#endif /* MAILTLSD_TOKENSTORE_H */
