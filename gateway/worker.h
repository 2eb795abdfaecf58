/* One worker process: an event_base, its own SO_REUSEPORT listener, every connection accepted on
 * it, the link, and the per-worker shared scratch state (read buffer, zlib streams) that lets idle
 * connections hold no buffers of their own. */
#ifndef NHGW_WORKER_H
#define NHGW_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "conn.h"
#include "rmap.h"
#include "stats.h"

struct cfg;
struct event_base;
struct link;
struct reg;
struct tls_ctx;
struct ws_zctx;

#define WORKER_RBUF_SIZE (64 * 1024)

struct conn_list {
    struct conn *head, *tail;
    uint64_t timeout_ms;   /* every member's deadline is its last refresh + timeout_ms */
    size_t count;
};

struct worker {
    int index;
    const struct cfg *cfg;
    struct event_base *base;
    struct tls_ctx *tls;
    struct link *link;
    struct reg *reg;          /* registry client; NULL without --redis */
    struct rmap devs;         /* device id → its session on this worker */
    struct rmap topics;       /* shared topic → the channels following it */
    size_t hb_cursor;         /* platform heartbeat sweep position in devs */
    uint64_t hb_last_ms;
    struct ws_zctx *z;
    uint64_t next_conn_id;
    /* one list per timeout class, each kept in deadline order (FIFO: uniform timeout) */
    struct conn_list handshaking, upgrading, open, closing;
    struct conn *zombies;     /* closed, waiting for in-flight calls to finish */
    struct buf scratch;       /* encode/inflate/deflate scratch, reused */
    struct buf scratch2;
    struct buf inflated;      /* a received message after inflation, reused */
    uint8_t *rbuf;            /* WORKER_RBUF_SIZE bytes: where TLS plaintext is read first */
    struct worker_stats stats;   /* counters (stats.h), published to the shared slot each tick */
    struct stats_shm *shm;
    struct stats_slot *slot;     /* this worker's slot in shm */
    const uint8_t *ticket_key;   /* fallback ticket key, for reloads */
    uint64_t reload_gen, reload_failed_gen;
    uint64_t seen_tls_expired;   /* process counters already added to stats (deltas) */
    uint64_t seen_reg[5];
    bool draining;
    uint64_t drain_start_ms, drain_deadline_ms, drain_closed;
    bool drain_forced;           /* --drain-timeout passed: everything was closed at once */
    struct event *drain_ev;
    struct event *exit_ev;
    int listen_fd;
    int spare_fd;             /* released to accept-and-close when out of descriptors */
    bool accept_paused;       /* token bucket empty or draining */
    double tokens;            /* accept token bucket */
    uint64_t tokens_at_ms;
    struct event *accept_ev;
    struct event *tick_ev;
};

/* Run worker `index` until it is told to stop; never returns (exits the process). The worker
 * binds its own SO_REUSEPORT socket and publishes its counters into shm->slots[index].
 * SIGTERM drains (README "Operating"), SIGHUP rebuilds the TLS context for new connections. */
void worker_run(const struct cfg *cfg, int index, const uint8_t ticket_key[80], struct stats_shm *shm)
    __attribute__((noreturn));

/* Monotonic milliseconds (vDSO clock, cheap enough to read per event). */
uint64_t worker_now_ms(void);
/* Wall-clock Unix milliseconds (for records other hosts read). */
uint64_t worker_wall_ms(void);

void conn_list_push(struct conn_list *l, struct conn *c);
void conn_list_remove(struct conn_list *l, struct conn *c);

#endif
