/*
 * peers.c - how many sessions each client address holds, for
 * max_sessions_per_client.
 *
 * A small hash table of addresses with a count each; an entry lives while
 * its count is above zero, so the table holds at most one entry per
 * session.  An IPv4-mapped IPv6 address counts as its IPv4 address, so a
 * dual-stack listener cannot give one client two counts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "peers.h"

#define PEERS_BUCKETS	1024	/* a power of two */

struct peer {
	struct peer	*next;
	unsigned	 count;
	uint8_t		 len;		/* 4 or 16 */
	uint8_t		 addr[16];
};

struct peers {
	struct peer	*bucket[PEERS_BUCKETS];
};

/* The address bytes of sa (4 or 16 of them); 0 for other families. */
static size_t
peers_key(const struct sockaddr *sa, uint8_t key[16])
{
	static const uint8_t	 mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
				    0xff, 0xff };
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;

	switch (sa->sa_family) {
	case AF_INET:
		sin = (const struct sockaddr_in *)(const void *)sa;
		memcpy(key, &sin->sin_addr, 4);
		return 4;
	case AF_INET6:
		sin6 = (const struct sockaddr_in6 *)(const void *)sa;
		if (memcmp(sin6->sin6_addr.s6_addr, mapped, 12) == 0) {
			memcpy(key, sin6->sin6_addr.s6_addr + 12, 4);
			return 4;
		}
		memcpy(key, sin6->sin6_addr.s6_addr, 16);
		return 16;
	default:
		return 0;
	}
}

/* The bucket of a key (FNV-1a). */
static unsigned
peers_hash(const uint8_t *key, size_t len)
{
	uint32_t	h = 2166136261u;
	size_t		i;

	for (i = 0; i < len; i++) {
		h ^= key[i];
		h *= 16777619u;
	}
	return h & (PEERS_BUCKETS - 1);
}

/* The entry of an address, or NULL. */
static struct peer *
peers_find(const struct peers *pt, const uint8_t *key, size_t len)
{
	struct peer	*p;

	for (p = pt->bucket[peers_hash(key, len)]; p != NULL; p = p->next)
		if (p->len == len && memcmp(p->addr, key, len) == 0)
			return p;
	return NULL;
}

/* An empty table; NULL when out of memory. */
struct peers *
peers_new(void)
{
	return calloc(1, sizeof(struct peers));
}

/* Free the table and every entry left; NULL does nothing. */
void
peers_free(struct peers *pt)
{
	struct peer	*p, *next;
	size_t		 i;

	if (pt == NULL)
		return;
	for (i = 0; i < PEERS_BUCKETS; i++)
		for (p = pt->bucket[i]; p != NULL; p = next) {
			next = p->next;
			free(p);
		}
	free(pt);
}

/* How many sessions the address of sa holds. */
unsigned
peers_count(const struct peers *pt, const struct sockaddr *sa)
{
	uint8_t		 key[16];
	size_t		 len = peers_key(sa, key);
	struct peer	*p;

	if (len == 0)
		return 0;
	p = peers_find(pt, key, len);
	return p != NULL ? p->count : 0;
}

/* Count one more session for the address; its entry, NULL (memory). */
struct peer *
peers_add(struct peers *pt, const struct sockaddr *sa)
{
	uint8_t		 key[16] = { 0 };
	size_t		 len = peers_key(sa, key);
	struct peer	*p;
	unsigned	 h;

	if (len == 0)
		len = 16;	/* not an IP address: all such share one */
	if ((p = peers_find(pt, key, len)) == NULL) {
		if ((p = calloc(1, sizeof(*p))) == NULL)
			return NULL;
		p->len = (uint8_t)len;
		memcpy(p->addr, key, len);
		h = peers_hash(key, len);
		p->next = pt->bucket[h];
		pt->bucket[h] = p;
	}
	p->count++;
	return p;
}

/* A session of the entry's address ended; NULL does nothing. */
void
peers_release(struct peers *pt, struct peer *p)
{
	struct peer	**pp;

	if (p == NULL || --p->count > 0)
		return;
	for (pp = &pt->bucket[peers_hash(p->addr, p->len)]; *pp != NULL;
	    pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			free(p);
			return;
		}
}
