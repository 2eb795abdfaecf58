/* tlsr: the cross-pod TLS session store (--session-store redis). Sealed sessions (sesscache.h)
 * under <prefix>:tls:<hex session id> in the registry's Redis, over the registry's connection
 * (registry.h raw commands). Stores are fire and forget; lookups are answered within a short
 * timeout whatever Redis does. It knows nothing of TLS or of connections: tls.c seals and opens,
 * conn.c waits. Not thread-safe: every call and callback happens on the worker's loop. */
#ifndef NHGW_TLSREDIS_H
#define NHGW_TLSREDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct reg;
struct tlsr;

/* Lookups waiting for a reply, per worker; beyond it a lookup is answered TLSR_ERROR at once. */
#define TLSR_MAX_LOOKUPS 1024
/* Commands awaiting replies on the connection beyond which a store or lookup is skipped. */
#define TLSR_MAX_PENDING 10000

enum tlsr_result { TLSR_HIT, TLSR_MISS, TLSR_TIMEOUT, TLSR_ERROR, TLSR_RESULT_N };

/* `val` (borrowed for the call) is set only with TLSR_HIT. */
typedef void (*tlsr_cb)(void *arg, enum tlsr_result r, const uint8_t *val, size_t len);

/* Takes over reg's raw-command handler. `prefix` is the link prefix (copied). */
struct tlsr *tlsr_new(struct event_base *base, struct reg *reg, const char *prefix, uint32_t timeout_ms);

/* SET the value with EX ttl_s; skipped (counted) when Redis is away or too far behind. */
void tlsr_store(struct tlsr *t, const uint8_t *id, size_t id_len, const uint8_t *val, size_t len,
                uint32_t ttl_s);

/* GET: cb runs exactly once, never from inside tlsr_lookup unless this returns false, with the
 * value, a miss, TLSR_TIMEOUT after timeout_ms, or TLSR_ERROR (Redis away, error reply, lost
 * connection). Returns false, without calling cb, when the lookup was not sent (Redis away, too
 * many lookups waiting, an invalid id): the caller goes on without it. */
bool tlsr_lookup(struct tlsr *t, const uint8_t *id, size_t id_len, tlsr_cb cb, void *arg);

struct tlsr_stats {
    uint64_t lookups[TLSR_RESULT_N]; /* answered lookups, by result; not sent ones are errors */
    uint64_t stored, store_skipped, store_failed;
};
const struct tlsr_stats *tlsr_stats(const struct tlsr *t);

#endif
