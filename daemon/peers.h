/*
 * peers.h - how many sessions each client address holds
 * (max_sessions_per_client).
 */
#ifndef MAILTLSD_PEERS_H
#define MAILTLSD_PEERS_H

struct peer;
struct peers;
struct sockaddr;

/* An empty table; NULL when out of memory. */
struct peers	*peers_new(void);
void		 peers_free(struct peers *);

/* How many sessions the address of sa holds now. */
unsigned	 peers_count(const struct peers *, const struct sockaddr *);

/* One more session for the address of sa: its entry, or NULL (memory). */
struct peer	*peers_add(struct peers *, const struct sockaddr *);

/* That session ended; NULL does nothing. */
void		 peers_release(struct peers *, struct peer *);

#endif /* MAILTLSD_PEERS_H */
