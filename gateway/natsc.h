/* natsc — a worker's NATS connection, driven from its libevent loop.
 *
 * NATS.c runs its own threads (socket reader, flusher, message delivery, connection events).
 * natsc confines all of that behind a mailbox: NATS threads only copy what arrived into the
 * mailbox and poke an eventfd; every natsc callback runs on the loop thread, from the loop.
 * Nothing in natsc is thread-safe: call every function from the loop thread.
 *
 * Requests share one wildcard subscription `<reply_prefix>.*`; request n is published with the
 * reply subject `<reply_prefix>.<n>`. Pending requests are a hash map by id plus one list in
 * deadline order served by a single timer, so a worker's O(inflight) requests cost one small
 * struct each and no libevent event.
 *
 * Process notes: call NATS.c (natsc_new) only in the process that uses it, after fork — the
 * library starts threads on first use. NATS.c's global message delivery (one thread for all
 * subscriptions of the process) is enabled, so topic subscriptions cost no thread each. */
#ifndef NHGW_NATSC_H
#define NHGW_NATSC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct event_base;
struct natsc;
struct natsc_sub;

struct natsc_opts {
    const char *urls;         /* comma-separated, e.g. "nats://127.0.0.1:4222,nats://b:4222" */
    const char *name;         /* client name shown by the server (optional) */
    const char *reply_prefix; /* e.g. "_INBOX.nh.gw1.0": ≤ NATSC_MAX_PREFIX bytes, no wildcards */
    uint32_t max_pending;     /* inbound messages queued for the loop; beyond: dropped, counted.
                               * 0: 65536 */
    size_t max_pending_bytes; /* and their payload+subject bytes; 0: 64 MiB */
    uint32_t connect_timeout_ms; /* per connection attempt; 0: 2000 */
    uint32_t reconnect_min_ms;   /* backoff between attempts: min doubling up to max, ± 25 %;
                                  * 0: 100 */
    uint32_t reconnect_max_ms;   /* 0: 5000 */
};

#define NATSC_MAX_PREFIX 200

/* Creates the connection and starts connecting. Never fails for an unreachable server: it keeps
 * trying forever with backoff, and conn_cb reports when it is up. The first attempt runs inside
 * this call (bounded by connect_timeout_ms per URL: a refused or unresolvable server returns at
 * once), so call it while the loop has nothing else to serve, e.g. at worker start. NULL on bad
 * options (malformed URL, bad reply_prefix) or out of memory. */
struct natsc *natsc_new(struct event_base *base, const struct natsc_opts *o);

/* Closes the connection. Pending requests are cancelled silently (their callbacks never run),
 * queued inbound messages are dropped; no natsc callback runs after it returns. May be called
 * from inside a natsc callback. Subscription handles become invalid. */
void natsc_free(struct natsc *c);

/* The loop's view: true between conn_cb(true) and conn_cb(false). Starts false. */
bool natsc_connected(const struct natsc *c);

/* Called on the loop when the connection comes up (first connect and every reconnect) and when
 * it goes down. A drop and reconnect that both happen between two loop turns is still reported
 * as false then true; callbacks alternate, the first is `true`. */
typedef void (*natsc_conn_cb)(void *arg, bool connected);
void natsc_set_conn_cb(struct natsc *c, natsc_conn_cb cb, void *arg);

struct natsc_msg {
    const char *subject; /* NUL-terminated */
    struct span data;
    const char *reply; /* NULL if none */
};

/* Called on the loop; m and everything it points to are borrowed for the call. */
typedef void (*natsc_msg_cb)(void *arg, const struct natsc_msg *m);

/* Subscribes now (or as soon as connected; subscriptions survive reconnects, NATS.c
 * re-sends them). NULL on failure (bad subject, out of memory). */
struct natsc_sub *natsc_subscribe(struct natsc *c, const char *subject, natsc_msg_cb cb, void *arg);

/* No callback for s runs after this returns, even for messages already queued; s is freed. */
void natsc_unsubscribe(struct natsc_sub *s);

/* Publishes (reply may be NULL). 0 when NATS.c accepted it on a connected connection (it is
 * then on its way; NATS gives at-most-once delivery). -1 when natsc is not connected — including
 * while NATS.c is reconnecting: natsc does not let NATS.c buffer publishes during a reconnect, so
 * the caller knows the message was not sent and can keep its own bounded queue — or when NATS.c
 * refused it (e.g. payload above the server's max_payload, bad subject). */
int natsc_publish(struct natsc *c, const char *subject, const void *p, size_t n, const char *reply);

enum natsc_result {
    NATSC_OK,            /* data is the reply's body */
    NATSC_TIMEOUT,       /* no reply in time: the request may have been executed */
    NATSC_NO_RESPONDERS, /* the server reported nobody subscribed to the subject: not executed */
    NATSC_DOWN,          /* not connected at the time of sending: not sent, not executed */
};

/* data is borrowed for the call (empty unless NATSC_OK). */
typedef void (*natsc_reply_cb)(void *arg, enum natsc_result r, struct span data);

/* Sends a request; cb runs exactly once on the loop, never from inside natsc_request (a request
 * that cannot be sent gets NATSC_DOWN on the next loop turn), unless natsc_cancel or natsc_free
 * comes first. A connection lost while a request is pending does not fail it: its reply may still
 * arrive after the reconnect, otherwise it times out. timeout_ms 0 is taken as 1. Returns the
 * request's id (never 0), or 0 only when out of memory (cb will not run). */
uint64_t natsc_request(struct natsc *c, const char *subject, const void *p, size_t n,
                       uint32_t timeout_ms, natsc_reply_cb cb, void *arg);

/* The request's callback will not run. Unknown or finished ids are ignored. */
void natsc_cancel(struct natsc *c, uint64_t id);

/* Requests waiting for their callback (in flight or about to report NATSC_DOWN). */
size_t natsc_pending(const struct natsc *c);

/* Inbound messages in the mailbox right now, not yet taken by the loop (a gauge). */
uint32_t natsc_inbound_queued(const struct natsc *c);

struct natsc_stats {
    uint64_t published;       /* natsc_publish calls that returned 0 */
    uint64_t requests;        /* natsc_request calls that returned an id */
    uint64_t replies;         /* NATSC_OK results */
    uint64_t timeouts;        /* NATSC_TIMEOUT results */
    uint64_t no_responders;   /* NATSC_NO_RESPONDERS results */
    uint64_t down;            /* NATSC_DOWN results */
    uint64_t stale_replies;   /* replies to no pending request (late, cancelled, or malformed) */
    uint64_t dropped_inbound; /* messages dropped: mailbox full (count or bytes) or no memory */
    uint64_t reconnects;      /* connection re-established after a loss */
};

/* Counters as of the latest loop turn. */
const struct natsc_stats *natsc_stats(const struct natsc *c);

/* Mailboxes some NATS thread may still call into: natsc_free leaves its mailbox to NATS.c's
 * threads until they have finished with it. For shutdown and tests: wait for 0 before
 * nats_CloseAndWait (NATS.c 3.4 can leak its last internal messages otherwise). */
size_t natsc_live_mailboxes(void);

#endif
