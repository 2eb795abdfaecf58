/* reg: a worker's client of the fleet-wide session registry (proto/LINK.md §8, lp_registry.h),
 * async hiredis on the worker's event_base. It claims, refreshes, resyncs and releases the
 * entries of the worker's sessions; it never closes a session by itself and a Redis outage never
 * affects one: claims made while Redis is away are answered REG_UNAVAILABLE and written by the
 * resync when it returns. One connection, reconnected with backoff (100 ms doubling to 5 s)
 * forever; scripts are loaded on every connect and run with EVALSHA.
 *
 * Memory: entries are intrusive (struct reg_entry lives in the caller's session object); the
 * registry allocates nothing per session or per request beyond hiredis's own command buffers.
 * Not thread-safe: every call, and every callback, happens on the loop's thread. */
#ifndef NHGW_REGISTRY_H
#define NHGW_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"

struct event_base;
struct reg;

struct reg_opts {
    const char *host;       /* Redis host (name or address); copied */
    int port;
    const char *prefix;     /* link prefix, [A-Za-z0-9_-]{1,32}; copied */
    const char *gateway_id; /* [A-Za-z0-9_-]{1,64}; copied */
    unsigned worker;        /* this worker's index (the `w` of entries) */
    uint32_t ttl_ms;        /* entry TTL, refreshed every third of it; 0 = 90000 */
    uint32_t timeout_ms;    /* connect and command timeout (a hung Redis is dropped); 0 = 2000 */
    unsigned batch;         /* refresh/resync commands per 100 ms tick at most; 0 = 1000 */
    bool keep_alive_key;    /* this worker keeps <p>:gw:<gw>:alive (every 5 s, TTL 15 s) and adds
                               the gateway to <p>:gws (one worker per gateway, e.g. worker 0) */
};

struct reg_entry;

enum reg_result {
    REG_CLAIMED,      /* written; there was no previous holder, or it was this very connection */
    REG_CLAIMED_PREV, /* written; `prev` held the device (another connection: kick it) */
    REG_UNAVAILABLE,  /* Redis down, slow or failing: the entry is kept and the resync writes it
                         when Redis is back (without kicking anyone) */
};

struct reg_prev {
    struct span gw;   /* borrowed until the callback returns */
    unsigned worker;
    uint64_t cref;
};

/* Called on the loop exactly once per reg_claim, never from inside reg_claim, unless
 * reg_release(e) or reg_free() came first (then never). `prev` is non-NULL only with
 * REG_CLAIMED_PREV. The callback may call reg_release(e) (or release/claim other entries). */
typedef void (*reg_claim_cb)(void *arg, enum reg_result r, const struct reg_prev *prev);

/* A resync found that another connection (a later one) holds e's device. The registry has let
 * go of e (it is no longer refreshed or resynced); the caller closes e's connection with 1001
 * (`kicked`) and then calls reg_release(e) as usual. */
typedef void (*reg_conflict_cb)(void *arg, struct reg_entry *e);

/* Embedded in the caller's session object, zero-initialised before its first reg_claim (the
 * registry's fields must start at 0; after reg_release it may be claimed again). The caller sets
 * dev, peer, cref and at_ms before reg_claim and keeps them (and the bytes they point to)
 * unchanged and valid until reg_release returns; fw is set through reg_set_fw. The other fields
 * are the registry's. */
struct reg_entry {
    struct reg_entry *prev, *next; /* registry: the list for `state` */
    struct span dev;               /* device id, 1..128 bytes (lpr_dev_valid) */
    struct span peer;              /* "ip:port" */
    struct span fw;                /* firmware uuid; empty = unknown */
    uint64_t cref;                 /* connection ref, unique per gateway id */
    uint64_t at_ms;                /* connected-at, unix ms */
    reg_claim_cb cb;               /* registry: pending claim callback, NULL when none */
    void *cb_arg;                  /* registry */
    uint32_t seq;                  /* registry: id of the command in flight */
    uint8_t state;                 /* registry: S_* in registry.c */
    uint8_t op;                    /* registry: what is in flight */
    uint8_t flags;                 /* registry */
};

/* Starts connecting at once. Returns NULL when an option is invalid (prefix, gateway id, host,
 * port). Borrowed `base` must outlive the registry. */
struct reg *reg_new(struct event_base *base, const struct reg_opts *o);

/* Claims e's device for this connection (LINK.md §8 claim) and keeps the entry refreshed and
 * resynced until reg_release. e must not be claimed already. The callback reports the outcome
 * within about the timeout: while Redis is known to be down it is REG_UNAVAILABLE on the next
 * loop iteration. An invalid device id is answered REG_UNAVAILABLE and never written. */
void reg_claim(struct reg *r, struct reg_entry *e, reg_claim_cb cb, void *arg);

/* Records e's firmware uuid (borrowed like dev, until the next reg_set_fw or reg_release) and
 * writes it to e's hash if e holds it; later resyncs carry it. No-op for an unclaimed entry. */
void reg_set_fw(struct reg *r, struct reg_entry *e, struct span fw);

/* Ends e: unlinks it, cancels a pending claim callback and compare-and-deletes its hash (fire and
 * forget; with Redis down there is nothing to do: the TTL covers it). The caller may free e as
 * soon as this returns. No-op for an entry that was never claimed or is already released. */
void reg_release(struct reg *r, struct reg_entry *e);

void reg_set_conflict_cb(struct reg *r, reg_conflict_cb cb, void *arg);

/* Other modules' commands on the registry's connection (tlsredis.h), so a worker holds one Redis
 * connection. A command carries a tag; its reply (a hiredis redisReply, or NULL when the
 * connection was lost first) goes to the handler with that tag, exactly once, unless reg_free
 * came first. One handler per registry. */
typedef void (*reg_raw_cb)(void *arg, uint32_t tag, const void *reply);
void reg_set_raw_handler(struct reg *r, reg_raw_cb cb, void *arg);
/* Queues a command (never blocks). False, sending nothing, while not connected or when more than
 * `max_pending` commands (the registry's own included) await replies: the caller skips it. The
 * registry's watchdog covers these commands too (a Redis that stops answering is dropped). */
bool reg_raw_command(struct reg *r, uint32_t tag, int argc, const char **argv, const size_t *len,
                     uint32_t max_pending);

/* True while the Redis connection is established. */
bool reg_connected(const struct reg *r);

struct reg_stats {
    uint64_t claims;      /* reg_claim calls */
    uint64_t claim_prev;  /* claims that returned another holder */
    uint64_t releases;    /* reg_release calls of claimed entries */
    uint64_t refreshes;   /* TTL refreshes acknowledged */
    uint64_t resyncs;     /* entries rewritten by a resync */
    uint64_t conflicts;   /* resyncs that found a newer holder */
    uint64_t errors;      /* error replies, timeouts and failed commands */
    uint64_t reconnects;  /* connections established after the first */
    uint64_t live;        /* entries held (claimed and not released), a gauge */
};
const struct reg_stats *reg_stats(const struct reg *r);

/* Closes the connection without waiting. Pending claim callbacks are not called; entries still
 * claimed are simply forgotten (their hashes expire). Must not be called from a registry
 * callback. reg_free(NULL) does nothing. */
void reg_free(struct reg *r);

#endif
