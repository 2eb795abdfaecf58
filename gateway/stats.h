/* Counters and gauges for /metrics, kept in a shared-memory segment the master maps before it
 * forks: one slot per worker, written only by that worker (its "publish" each tick), read by the
 * master's admin server.
 *
 * A worker counts into a plain local struct worker_stats (no atomics on the hot path) and copies it
 * into its slot under a sequence lock every tick (100 ms), at drain and at exit, so a reader sees
 * each slot as of one moment. A respawned worker starts from the counters its slot holds (the
 * previous process's last publish), so every counter stays monotonic across restarts; increments
 * made after a crashed worker's last publish (at most one tick) are lost. Gauges restart at 0.
 *
 * Histograms are fixed buckets (0.001 s .. 10 s) counted per bucket, not cumulatively, so a
 * reader adds them up; `_count` is derived from the buckets and always matches them. */
#ifndef NHGW_STATS_H
#define NHGW_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "lp.h"
#include "sesscache.h"

#define STATS_NBUCKETS 13 /* upper bounds in stats_bucket_le; one more slot for "above" */
extern const double stats_bucket_le[STATS_NBUCKETS];

struct stats_hist {
    uint64_t n[STATS_NBUCKETS + 1];
    uint64_t sum_us;
};

enum { ST_UPG_101, ST_UPG_400, ST_UPG_401, ST_UPG_403, ST_UPG_404, ST_UPG_431, ST_UPG_503, ST_UPG_N };
enum { ST_IN, ST_OUT };
#define ST_CLOSE_N 10 /* the codes in stats_close_codes, then "other" */
enum { ST_TOPIC_DEVICE, ST_TOPIC_EXTENSIONS, ST_TOPIC_CONSOLE, ST_TOPIC_PHOENIX, ST_TOPIC_OTHER, ST_TOPIC_N };
enum {
    ST_RES_OK,
    ST_RES_REFUSED,
    ST_RES_UNAVAILABLE,
    ST_RES_TIMEOUT,
    ST_RES_NO_RESPONDERS,
    ST_RES_INVALID,
    ST_RES_N
};
enum { ST_TO_HANDSHAKE, ST_TO_UPGRADE, ST_TO_IDLE, ST_TO_CLOSE, ST_TO_N };
enum { ST_XSHELL_OK, ST_XSHELL_FAILED };
enum { ST_REG_CLAIM, ST_REG_RELEASE, ST_REG_REFRESH, ST_REG_RESYNC, ST_REG_N };
enum { ST_TLSR_STORED, ST_TLSR_SKIPPED, ST_TLSR_FAILED, ST_TLSR_N };

/* One worker's counters. Only uint64_t members: a slot is copied word by word. */
struct worker_stats {
    uint64_t accepted, accept_limited, accept_emfile, sessions, handshakes_ok, handshakes_failed, resumed,
        closed, frames_in, frames_out, bytes_in, bytes_out, timeouts;
    /* the link and sessions (session.c) */
    uint64_t notifies_dropped, timers_fired, kicks_local, kicks_received, fanout_pushes;
    /* for /metrics (stats.h) */
    uint64_t refused_draining;
    uint64_t upgrades[ST_UPG_N];
    uint64_t ws_closes[ST_CLOSE_N];          /* close frames the gateway sent, by code */
    uint64_t phx[2][ST_TOPIC_N];             /* Phoenix messages by direction and topic */
    uint64_t calls[LP_CALL_COUNT][ST_RES_N]; /* platform calls by call and result */
    uint64_t calls_in_flight;                /* gauge: platform calls started and not finished */
    uint64_t timeouts_by[ST_TO_N];
    uint64_t reg_ok[ST_REG_N], reg_claim_failed, reg_errors, reg_conflicts;
    uint64_t slow_consumers;
    uint64_t tls_expired;     /* expired client certificates accepted */
    uint64_t resumed_id;      /* of resumed: by session ID from the shared store (tls.h) */
    /* the cross-pod session store (tlsredis.h): lookups by enum tlsr_result, of the hits those
     * that did not open or decode, and stores by ST_TLSR_* */
    uint64_t tlsr_lookups[4], tlsr_rejected, tlsr_stores[ST_TLSR_N];
    /* the remote console (console.c): gauges, then counters */
    uint64_t consoles;          /* console channels joined */
    uint64_t console_ops;       /* operator leases held (a lapsed one until its console's next event) */
    uint64_t console_sb_bytes;  /* memory of the scrollback rings */
    uint64_t console_out_bytes; /* bodies published on <prefix>.console.<dev>.out */
    uint64_t console_in_bytes;  /* operator `dn` data pushed to devices (console_note_input) */
    /* the local shell's scrollbacks (xshell.c): gauges, then counters */
    uint64_t xshell_sbs;        /* connections holding one */
    uint64_t xshell_sb_bytes;   /* memory of their rings */
    uint64_t xshell_replays[2]; /* scrollback_replay effects by result (ST_XSHELL_OK / _FAILED) */
    struct stats_hist tls_hs; /* completed TLS handshakes, accept to done */
    struct stats_hist call_dur[LP_CALL_COUNT];
};

/* A worker's slot. The worker writes all of it (stats_publish); the master clears the gauges of
 * a worker it has reaped, when no writer is left. */
struct stats_slot {
    uint64_t seq; /* odd while a publish is in progress */
    uint64_t pid;
    uint64_t tick_ms;   /* monotonic ms of the latest publish */
    uint64_t listening; /* 1 while the worker's listener accepts */
    uint64_t draining;
    uint64_t nats_connected;
    uint64_t redis_connected;
    uint64_t reload_gen;        /* reload generation its TLS context was built for */
    uint64_t reload_failed_gen; /* latest generation it could not apply */
    struct worker_stats c;
} __attribute__((aligned(64)));

struct stats_shm {
    uint64_t reload_gen; /* written by the master only: the reload workers should apply */
    uint64_t pad[7];
    struct stats_slot slots[];
};

/* Maps a zeroed segment for n slots (MAP_SHARED|MAP_ANONYMOUS: inherited by fork). NULL on
 * failure. */
struct stats_shm *stats_shm_new(int n);

/* Copy `src` into the shared slot `dst` under the sequence lock (the worker). */
void stats_publish(struct stats_slot *dst, const struct stats_slot *src);
/* A consistent copy of a slot (the master); false when a writer kept it busy (the copy may then
 * be torn, but every word is a value that was published). */
bool stats_read(const struct stats_slot *src, struct stats_slot *out);
/* Once a slot's writer is gone: clear its gauges and a half-finished sequence (the master). */
void stats_slot_reset_gauges(struct stats_slot *s);

/* The running worker's local counters, for modules that do not see the worker (link_nats.c);
 * points at a dummy outside a worker, so writers never check. */
extern struct worker_stats *stats_w;

uint64_t stats_now_us(void);
void stats_hist_add(struct stats_hist *h, uint64_t us);

/* Label index helpers; -1 when a status has no label of its own. */
int stats_upgrade_index(int http_status);
int stats_close_index(unsigned code); /* the "other" slot for codes without a label of their own */
extern const uint16_t stats_close_codes[ST_CLOSE_N - 1];
int stats_topic_index(const char *p, size_t n);

/* Growable text for the admin server; aborts when out of memory (its size is not
 * peer-controlled: it depends on the number of workers). */
struct sbuf {
    char *p;
    size_t len, cap;
};
void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbuf_free(struct sbuf *b);

/* What the master knows beyond the slots, for rendering. */
struct stats_view {
    const struct stats_slot *slots; /* consistent copies, n of them */
    const uint64_t *restarts;       /* per worker */
    int n;
    int running;
    bool draining, ready;
    bool link_nats, redis;
    uint64_t reloads_ok, reloads_failed;
    /* the shared TLS session store (sesscache.h), read by the master: all zero when it is off */
    uint64_t scache_capacity, scache_entries;
    struct scache_stats scache;
};

/* The Prometheus text exposition (format 0.0.4) of everything. */
void stats_render(struct sbuf *out, const struct stats_view *v);

#endif
