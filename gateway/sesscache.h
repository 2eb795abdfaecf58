/* A fixed-size TLS session store in shared memory, for session-ID resumption (TLS 1.2) across
 * the worker processes. The master maps it before it forks, so every worker sees the same store
 * and a device that reconnects to another worker still resumes. It stores opaque bytes (the
 * serialised session) under a session ID; it knows nothing of TLS (tls.c is the glue).
 *
 * Layout: sets of SCACHE_WAYS slots, each slot a fixed size; a session ID hashes to one set and
 * the least recently used slot of a full set is replaced. Memory is bounded by the size given at
 * creation and never grows; pages are touched as sessions are stored. Sets are guarded by striped
 * process-shared robust mutexes: a worker that dies holding one leaves the next locker with
 * EOWNERDEAD, and the slots under that lock are dropped (they may be half-written), never read.
 *
 * Every function may be called concurrently from any process mapping the store. Lookups take an
 * explicit `now` (unix seconds) so expiry is testable. */
#ifndef NHGW_SESSCACHE_H
#define NHGW_SESSCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SCACHE_ID_MAX 32    /* SSL_MAX_SSL_SESSION_ID_LENGTH */
#define SCACHE_WAYS 16      /* slots per set */
#define SCACHE_SLOT_META 64 /* bytes of bookkeeping per slot, besides its data */

struct scache;

/* Map a store of at most `bytes` (header, locks and slots included) whose slots hold up to
 * `slot_data` bytes each. NULL (errno set) when the mapping fails or `bytes` cannot hold one set. */
struct scache *scache_new(size_t bytes, size_t slot_data);
/* Unmap (tests; the gateway keeps its store for the life of the process tree). */
void scache_free(struct scache *c);

/* Slots in the store, and the largest value it accepts. */
size_t scache_capacity(const struct scache *c);
size_t scache_max_value(const struct scache *c);
/* Bytes the store maps: at most the size it was created with (whole sets only). */
size_t scache_mapped_bytes(const struct scache *c);

/* Store `len` bytes under id, valid until `expires` (unix seconds), replacing any value the id
 * had. Returns false, storing nothing, when the id is empty or longer than SCACHE_ID_MAX, the
 * value is larger than scache_max_value, or the lock is unusable. */
bool scache_put(struct scache *c, const uint8_t *id, size_t id_len, const void *val, size_t len,
                int64_t expires, int64_t now);
/* Copy the value stored under id into out (capacity cap) and return its length; -1 when there is
 * none, it has expired (then it is dropped), or it does not fit in cap. Any id length is accepted:
 * ids that cannot have been stored simply miss. */
ssize_t scache_get(struct scache *c, const uint8_t *id, size_t id_len, int64_t now, void *out, size_t cap);
/* Drop the value stored under id, if any. */
void scache_remove(struct scache *c, const uint8_t *id, size_t id_len);

/* Counters since creation, over all processes. Read without locks: each is exact, but a set of
 * them read together need not be from one moment. */
struct scache_stats {
    uint64_t hits, misses; /* scache_get: a value returned, or none (any reason) */
    uint64_t stores;       /* scache_put that stored */
    uint64_t evictions;    /* live values replaced because their set was full (least recently used) */
    uint64_t expired;      /* expired values dropped: found by scache_get, or reused by scache_put */
    uint64_t rejected;     /* scache_put that stored nothing (every reason, too_large included) */
    uint64_t too_large;    /* ... of which: the value was larger than scache_max_value */
    uint64_t recovered;    /* stripes emptied because a process died holding their lock */
};
void scache_get_stats(const struct scache *c, struct scache_stats *out);
/* Slots holding a value now (an expired one included until it is dropped): at most
 * scache_capacity. Kept per stripe under its lock and summed here, so it costs no scan and stays
 * right when a stripe is emptied after its lock holder died. */
size_t scache_entries(const struct scache *c);

/* For tests: lock the stripe that id belongs to and return without unlocking, so a process that
 * then exits plays a worker that died inside the store. */
bool scache_test_hold_lock(struct scache *c, const uint8_t *id, size_t id_len);

#endif
