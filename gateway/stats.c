/* Shared-memory metrics (see stats.h): the slot sequence lock, histogram buckets and the
 * Prometheus text rendering. */
#include "stats.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#ifndef NHGW_VERSION
#define NHGW_VERSION "0.1.0"
#endif
#ifndef NHGW_COMMIT
#define NHGW_COMMIT "unknown"
#endif

_Static_assert(sizeof(struct worker_stats) % sizeof(uint64_t) == 0, "worker_stats is copied word by word");
_Static_assert(sizeof(struct stats_slot) % sizeof(uint64_t) == 0, "slots are copied word by word");

const double stats_bucket_le[STATS_NBUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                0.25,  0.5,    1,     2.5,  5,     10};
static const uint64_t bucket_us[STATS_NBUCKETS] = {1000,   2500,   5000,    10000,   25000,   50000,   100000,
                                                   250000, 500000, 1000000, 2500000, 5000000, 10000000};

const uint16_t stats_close_codes[ST_CLOSE_N - 1] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1012};

static struct worker_stats dummy;
struct worker_stats *stats_w = &dummy;

struct stats_shm *stats_shm_new(int n)
{
    size_t size = sizeof(struct stats_shm) + (size_t)n * sizeof(struct stats_slot);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Linux's seqlock pattern: every word is stored and loaded atomically (relaxed), the sequence
 * number orders them. */
void stats_publish(struct stats_slot *dst, const struct stats_slot *src)
{
    uint64_t seq = __atomic_load_n(&dst->seq, __ATOMIC_RELAXED);
    seq |= 1; /* a writer that died mid-publish left it odd */
    __atomic_store_n(&dst->seq, seq, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    const uint64_t *s = (const uint64_t *)src;
    uint64_t *d = (uint64_t *)dst;
    for (size_t i = 1; i < sizeof(*src) / sizeof(uint64_t); i++)
        __atomic_store_n(&d[i], s[i], __ATOMIC_RELAXED);
    __atomic_store_n(&dst->seq, seq + 1, __ATOMIC_RELEASE);
}

bool stats_read(const struct stats_slot *src, struct stats_slot *out)
{
    const uint64_t *s = (const uint64_t *)src;
    uint64_t *d = (uint64_t *)out;
    for (int attempt = 0; attempt < 1000; attempt++) {
        uint64_t seq = __atomic_load_n(&src->seq, __ATOMIC_ACQUIRE);
        for (size_t i = 1; i < sizeof(*src) / sizeof(uint64_t); i++)
            d[i] = __atomic_load_n(&s[i], __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (!(seq & 1) && __atomic_load_n(&src->seq, __ATOMIC_RELAXED) == seq) {
            out->seq = seq;
            return true;
        }
    }
    return false;
}

void stats_slot_reset_gauges(struct stats_slot *s)
{
    uint64_t seq = __atomic_load_n(&s->seq, __ATOMIC_RELAXED) | 1;
    __atomic_store_n(&s->seq, seq, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(&s->pid, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->listening, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->draining, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->nats_connected, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->redis_connected, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->c.sessions, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->c.calls_in_flight, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->c.consoles, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->c.console_ops, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->c.console_sb_bytes, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->c.xshell_sbs, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->c.xshell_sb_bytes, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->seq, seq + 1, __ATOMIC_RELEASE);
}

uint64_t stats_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void stats_hist_add(struct stats_hist *h, uint64_t us)
{
    int i = 0;
    while (i < STATS_NBUCKETS && us > bucket_us[i])
        i++;
    h->n[i]++;
    h->sum_us += us;
}

int stats_upgrade_index(int status)
{
    switch (status) {
    case 101:
        return ST_UPG_101;
    case 400:
        return ST_UPG_400;
    case 401:
        return ST_UPG_401;
    case 403:
        return ST_UPG_403;
    case 404:
        return ST_UPG_404;
    case 431:
        return ST_UPG_431;
    case 503:
        return ST_UPG_503;
    default:
        return -1;
    }
}

int stats_close_index(unsigned code)
{
    for (int i = 0; i < ST_CLOSE_N - 1; i++)
        if (stats_close_codes[i] == code)
            return i;
    return ST_CLOSE_N - 1;
}

int stats_topic_index(const char *p, size_t n)
{
    static const char *const names[] = {"device", "extensions", "console", "phoenix"};
    for (int i = 0; i < (int)ARRAY_SIZE(names); i++)
        if (strlen(names[i]) == n && memcmp(names[i], p, n) == 0)
            return i;
    return ST_TOPIC_OTHER;
}

void sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 16384;
        while (cap - b->len <= (size_t)n)
            cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
}

void sbuf_free(struct sbuf *b)
{
    free(b->p);
    *b = (struct sbuf){0};
}

/* ---- rendering ---- */

static void head(struct sbuf *o, const char *name, const char *type, const char *help)
{
    sbuf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

#define SUM(v, expr)                                                                                         \
    do {                                                                                                     \
        v = 0;                                                                                               \
        for (int i_ = 0; i_ < n; i_++) {                                                                     \
            const struct worker_stats *c = &s[i_].c;                                                         \
            v += (expr);                                                                                     \
        }                                                                                                    \
    } while (0)

/* One unlabelled series: HELP, TYPE and the sum of expr over the workers. */
#define SCALAR(name, type, help, expr)                                                                       \
    do {                                                                                                     \
        head(o, name, type, help);                                                                           \
        SUM(x, expr);                                                                                        \
        sbuf_printf(o, name " %llu\n", (unsigned long long)x);                                               \
    } while (0)

static void hist(struct sbuf *o, const char *name, const char *label, const struct stats_hist *h)
{
    uint64_t cum = 0;
    const char *sep = label[0] ? "," : "";
    for (int i = 0; i < STATS_NBUCKETS; i++) {
        cum += h->n[i];
        sbuf_printf(o, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, label, sep, stats_bucket_le[i],
                    (unsigned long long)cum);
    }
    cum += h->n[STATS_NBUCKETS];
    sbuf_printf(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, label, sep, (unsigned long long)cum);
    const char *open = label[0] ? "{" : "", *close = label[0] ? "}" : "";
    sbuf_printf(o, "%s_sum%s%s%s %.6f\n", name, open, label, close, (double)h->sum_us / 1e6);
    sbuf_printf(o, "%s_count%s%s%s %llu\n", name, open, label, close, (unsigned long long)cum);
}

static void hist_add(struct stats_hist *acc, const struct stats_hist *h)
{
    for (int i = 0; i <= STATS_NBUCKETS; i++)
        acc->n[i] += h->n[i];
    acc->sum_us += h->sum_us;
}

static bool is_request_call(int call)
{
    return call != LP_DISCONNECT && call != LP_HEARTBEAT;
}

void stats_render(struct sbuf *o, const struct stats_view *v)
{
    const struct stats_slot *s = v->slots;
    int n = v->n;
    uint64_t x, y;

    head(o, "nhgw_build_info", "gauge", "Build information (always 1).");
    sbuf_printf(o, "nhgw_build_info{version=\"%s\",commit=\"%s\"} 1\n", NHGW_VERSION, NHGW_COMMIT);
    head(o, "nhgw_workers", "gauge", "Worker processes running.");
    sbuf_printf(o, "nhgw_workers %d\n", v->running);
    head(o, "nhgw_worker_restarts_total", "counter", "Workers respawned by the master after they died.");
    x = 0;
    for (int i = 0; i < n; i++)
        x += v->restarts[i];
    sbuf_printf(o, "nhgw_worker_restarts_total %llu\n", (unsigned long long)x);
    head(o, "nhgw_draining", "gauge", "1 while the gateway drains after SIGTERM.");
    sbuf_printf(o, "nhgw_draining %d\n", v->draining);
    head(o, "nhgw_ready", "gauge", "1 when /readyz answers 200.");
    sbuf_printf(o, "nhgw_ready %d\n", v->ready);
    head(o, "nhgw_config_reloads_total", "counter", "SIGHUP reloads of the TLS files by result.");
    sbuf_printf(o, "nhgw_config_reloads_total{result=\"ok\"} %llu\n", (unsigned long long)v->reloads_ok);
    sbuf_printf(o, "nhgw_config_reloads_total{result=\"failed\"} %llu\n",
                (unsigned long long)v->reloads_failed);

    head(o, "nhgw_sessions", "gauge", "Open WebSocket sessions.");
    for (int i = 0; i < n; i++)
        sbuf_printf(o, "nhgw_sessions{worker=\"%d\"} %llu\n", i, (unsigned long long)s[i].c.sessions);
    head(o, "nhgw_connections_accepted_total", "counter", "TCP connections accepted.");
    for (int i = 0; i < n; i++)
        sbuf_printf(o, "nhgw_connections_accepted_total{worker=\"%d\"} %llu\n", i,
                    (unsigned long long)s[i].c.accepted);
    head(o, "nhgw_connections_refused_total", "counter",
         "Connections not served: accept paused by the rate limit, closed for lack of descriptors, or "
         "queued when a drain began.");
    SUM(x, c->accept_limited);
    sbuf_printf(o, "nhgw_connections_refused_total{reason=\"rate_limited\"} %llu\n", (unsigned long long)x);
    SUM(x, c->accept_emfile);
    sbuf_printf(o, "nhgw_connections_refused_total{reason=\"no_descriptors\"} %llu\n", (unsigned long long)x);
    SUM(x, c->refused_draining);
    sbuf_printf(o, "nhgw_connections_refused_total{reason=\"draining\"} %llu\n", (unsigned long long)x);

    head(o, "nhgw_tls_handshakes_total", "counter", "TLS handshakes by result.");
    SUM(x, c->handshakes_ok - c->resumed);
    sbuf_printf(o, "nhgw_tls_handshakes_total{result=\"ok\"} %llu\n", (unsigned long long)x);
    SUM(x, c->resumed);
    sbuf_printf(o, "nhgw_tls_handshakes_total{result=\"resumed\"} %llu\n", (unsigned long long)x);
    SUM(x, c->handshakes_failed);
    sbuf_printf(o, "nhgw_tls_handshakes_total{result=\"failed\"} %llu\n", (unsigned long long)x);
    SUM(x, c->timeouts_by[ST_TO_HANDSHAKE]);
    sbuf_printf(o, "nhgw_tls_handshakes_total{result=\"timeout\"} %llu\n", (unsigned long long)x);
    head(o, "nhgw_tls_resumptions_total", "counter",
         "Resumed TLS handshakes by mechanism: session ticket, or session ID (--session-cache-size).");
    SUM(x, c->resumed_id);
    uint64_t by_id = x;
    SUM(x, c->resumed);
    sbuf_printf(o, "nhgw_tls_resumptions_total{by=\"ticket\"} %llu\n",
                (unsigned long long)(x > by_id ? x - by_id : 0));
    sbuf_printf(o, "nhgw_tls_resumptions_total{by=\"session_id\"} %llu\n", (unsigned long long)by_id);
    head(o, "nhgw_tls_handshake_duration_seconds", "histogram",
         "Time from accept to a completed TLS handshake.");
    struct stats_hist h = {0};
    for (int i = 0; i < n; i++)
        hist_add(&h, &s[i].c.tls_hs);
    hist(o, "nhgw_tls_handshake_duration_seconds", "", &h);
    SCALAR("nhgw_tls_expired_client_certs_total", "counter",
           "Expired device certificates accepted (--expired-certs accept).", c->tls_expired);

    /* the session-ID store is one for all workers: no per-worker series */
    const struct scache_stats *sc = &v->scache;
    head(o, "nhgw_tls_session_cache_capacity", "gauge",
         "Sessions the shared TLS session-ID store can hold (0: off, --session-cache-size 0).");
    sbuf_printf(o, "nhgw_tls_session_cache_capacity %llu\n", (unsigned long long)v->scache_capacity);
    head(o, "nhgw_tls_session_cache_entries", "gauge",
         "Sessions in the shared store (expired ones until a lookup or a store drops them).");
    sbuf_printf(o, "nhgw_tls_session_cache_entries %llu\n", (unsigned long long)v->scache_entries);
    head(o, "nhgw_tls_session_cache_lookups_total", "counter",
         "Session IDs offered by TLS 1.2 clients looked up in the shared store, by result.");
    sbuf_printf(o, "nhgw_tls_session_cache_lookups_total{result=\"hit\"} %llu\n",
                (unsigned long long)sc->hits);
    sbuf_printf(o, "nhgw_tls_session_cache_lookups_total{result=\"miss\"} %llu\n",
                (unsigned long long)sc->misses);
    head(o, "nhgw_tls_session_cache_stores_total", "counter",
         "New TLS 1.2 sessions stored in the shared store.");
    sbuf_printf(o, "nhgw_tls_session_cache_stores_total %llu\n", (unsigned long long)sc->stores);
    head(o, "nhgw_tls_session_cache_evictions_total", "counter",
         "Sessions dropped from the shared store: replaced while live because their set was full, or "
         "found expired.");
    sbuf_printf(o, "nhgw_tls_session_cache_evictions_total{reason=\"full\"} %llu\n",
                (unsigned long long)sc->evictions);
    sbuf_printf(o, "nhgw_tls_session_cache_evictions_total{reason=\"expired\"} %llu\n",
                (unsigned long long)sc->expired);
    head(o, "nhgw_tls_session_cache_refused_total", "counter",
         "Sessions not stored: larger than a slot, or an invalid ID or lifetime.");
    sbuf_printf(o, "nhgw_tls_session_cache_refused_total{reason=\"too_large\"} %llu\n",
                (unsigned long long)sc->too_large);
    sbuf_printf(o, "nhgw_tls_session_cache_refused_total{reason=\"other\"} %llu\n",
                (unsigned long long)(sc->rejected > sc->too_large ? sc->rejected - sc->too_large : 0));
    head(o, "nhgw_tls_session_cache_recoveries_total", "counter",
         "Lock stripes of the shared store emptied because a worker died holding their lock.");
    sbuf_printf(o, "nhgw_tls_session_cache_recoveries_total %llu\n", (unsigned long long)sc->recovered);
    /* the cross-pod store (--session-store redis): all 0 when it is off */
    head(o, "nhgw_tls_session_cache_redis_lookups_total", "counter",
         "Session IDs missing from this node's store looked up in Redis (--session-store redis), by "
         "result.");
    static const char *const tlsr_res[4] = {"hit", "miss", "timeout", "error"};
    SUM(y, c->tlsr_rejected);
    for (int k = 0; k < 4; k++) {
        SUM(x, c->tlsr_lookups[k]);
        if (k == 0)
            x = x > y ? x - y : 0;
        sbuf_printf(o, "nhgw_tls_session_cache_redis_lookups_total{result=\"%s\"} %llu\n", tlsr_res[k],
                    (unsigned long long)x);
    }
    sbuf_printf(o, "nhgw_tls_session_cache_redis_lookups_total{result=\"rejected\"} %llu\n",
                (unsigned long long)y);
    head(o, "nhgw_tls_session_cache_redis_stores_total", "counter",
         "New TLS 1.2 sessions written to Redis (--session-store redis), by result.");
    static const char *const tlsr_st[ST_TLSR_N] = {"stored", "skipped", "failed"};
    for (int k = 0; k < ST_TLSR_N; k++) {
        SUM(x, c->tlsr_stores[k]);
        sbuf_printf(o, "nhgw_tls_session_cache_redis_stores_total{result=\"%s\"} %llu\n", tlsr_st[k],
                    (unsigned long long)x);
    }

    static const int upg_status[ST_UPG_N] = {101, 400, 401, 403, 404, 431, 503};
    head(o, "nhgw_upgrades_total", "counter", "HTTP upgrade requests answered, by status.");
    for (int k = 0; k < ST_UPG_N; k++) {
        SUM(x, c->upgrades[k]);
        sbuf_printf(o, "nhgw_upgrades_total{status=\"%d\"} %llu\n", upg_status[k], (unsigned long long)x);
    }

    head(o, "nhgw_ws_frames_total", "counter", "WebSocket frames.");
    SUM(x, c->frames_in);
    SUM(y, c->frames_out);
    sbuf_printf(o,
                "nhgw_ws_frames_total{direction=\"in\"} %llu\nnhgw_ws_frames_total{direction=\"out\"} %llu\n",
                (unsigned long long)x, (unsigned long long)y);
    head(o, "nhgw_ws_bytes_total", "counter", "TLS plaintext bytes read from and written to devices.");
    SUM(x, c->bytes_in);
    SUM(y, c->bytes_out);
    sbuf_printf(o,
                "nhgw_ws_bytes_total{direction=\"in\"} %llu\nnhgw_ws_bytes_total{direction=\"out\"} %llu\n",
                (unsigned long long)x, (unsigned long long)y);
    head(o, "nhgw_ws_closes_total", "counter", "WebSocket close frames sent by the gateway, by code.");
    for (int k = 0; k < ST_CLOSE_N; k++) {
        SUM(x, c->ws_closes[k]);
        if (k < ST_CLOSE_N - 1)
            sbuf_printf(o, "nhgw_ws_closes_total{code=\"%u\"} %llu\n", stats_close_codes[k],
                        (unsigned long long)x);
        else
            sbuf_printf(o, "nhgw_ws_closes_total{code=\"other\"} %llu\n", (unsigned long long)x);
    }

    static const char *const topics[ST_TOPIC_N] = {"device", "extensions", "console", "phoenix", "other"};
    head(o, "nhgw_phoenix_messages_total", "counter", "Phoenix messages by direction and topic.");
    for (int d = 0; d < 2; d++) {
        for (int k = 0; k < ST_TOPIC_N; k++) {
            SUM(x, c->phx[d][k]);
            sbuf_printf(o, "nhgw_phoenix_messages_total{direction=\"%s\",topic=\"%s\"} %llu\n",
                        d ? "out" : "in", topics[k], (unsigned long long)x);
        }
    }

    static const char *const results[ST_RES_N] = {"ok",      "refused",       "unavailable",
                                                  "timeout", "no_responders", "invalid"};
    head(o, "nhgw_platform_calls_total", "counter", "Platform calls over the NATS link by call and result.");
    for (int k = 0; k < LP_CALL_COUNT; k++) {
        for (int r = 0; r < ST_RES_N; r++) {
            SUM(x, c->calls[k][r]);
            sbuf_printf(o, "nhgw_platform_calls_total{call=\"%s\",result=\"%s\"} %llu\n", lp_call_name(k),
                        results[r], (unsigned long long)x);
        }
    }
    head(o, "nhgw_platform_call_duration_seconds", "histogram",
         "Platform request latency (request to reply or failure), by call.");
    for (int k = 0; k < LP_CALL_COUNT; k++) {
        if (!is_request_call(k))
            continue;
        memset(&h, 0, sizeof(h));
        for (int i = 0; i < n; i++)
            hist_add(&h, &s[i].c.call_dur[k]);
        char label[48];
        snprintf(label, sizeof(label), "call=\"%s\"", lp_call_name(k));
        hist(o, "nhgw_platform_call_duration_seconds", label, &h);
    }
    SCALAR("nhgw_platform_calls_in_flight", "gauge", "Platform calls started and not yet answered.",
           c->calls_in_flight);
    if (v->link_nats) {
        head(o, "nhgw_nats_connected", "gauge", "1 while the worker's NATS connection is up.");
        for (int i = 0; i < n; i++)
            sbuf_printf(o, "nhgw_nats_connected{worker=\"%d\"} %llu\n", i,
                        (unsigned long long)s[i].nats_connected);
    }
    if (v->redis) {
        head(o, "nhgw_redis_connected", "gauge", "1 while the worker's Redis connection is up.");
        for (int i = 0; i < n; i++)
            sbuf_printf(o, "nhgw_redis_connected{worker=\"%d\"} %llu\n", i,
                        (unsigned long long)s[i].redis_connected);
    }

    static const char *const ops[ST_REG_N] = {"claim", "release", "refresh", "resync"};
    head(o, "nhgw_registry_operations_total", "counter",
         "Session registry operations by result (errors of release, refresh and resync: "
         "nhgw_registry_errors_total).");
    for (int k = 0; k < ST_REG_N; k++) {
        SUM(x, c->reg_ok[k]);
        sbuf_printf(o, "nhgw_registry_operations_total{op=\"%s\",result=\"ok\"} %llu\n", ops[k],
                    (unsigned long long)x);
    }
    SUM(x, c->reg_claim_failed);
    sbuf_printf(o, "nhgw_registry_operations_total{op=\"claim\",result=\"error\"} %llu\n",
                (unsigned long long)x);
    SCALAR("nhgw_registry_errors_total", "counter", "Redis error replies, timeouts and failed commands.",
           c->reg_errors);

    head(o, "nhgw_devices_kicked_total", "counter",
         "Sessions closed with 1001 because the device connected again (local: on this worker; remote: "
         "elsewhere).");
    SUM(x, c->kicks_local);
    SUM(y, c->kicks_received + c->reg_conflicts);
    sbuf_printf(
        o,
        "nhgw_devices_kicked_total{where=\"local\"} %llu\nnhgw_devices_kicked_total{where=\"remote\"} %llu\n",
        (unsigned long long)x, (unsigned long long)y);
    SCALAR("nhgw_slow_consumers_total", "counter",
           "Devices closed because their output queue passed --max-output.", c->slow_consumers);
    static const char *const whats[ST_TO_N] = {"handshake", "upgrade", "idle", "close"};
    head(o, "nhgw_timeouts_total", "counter", "Connections closed by a timeout, by phase.");
    for (int k = 0; k < ST_TO_N; k++) {
        SUM(x, c->timeouts_by[k]);
        sbuf_printf(o, "nhgw_timeouts_total{what=\"%s\"} %llu\n", whats[k], (unsigned long long)x);
    }
    SCALAR("nhgw_notifies_dropped_total", "counter", "Platform notifies dropped (queue full or no memory).",
           c->notifies_dropped);
    SCALAR("nhgw_timers_fired_total", "counter", "Platform timers (send_after, start_timer) fired.",
           c->timers_fired);
    SCALAR("nhgw_topic_fanout_pushes_total", "counter", "Pushes delivered to devices from shared topics.",
           c->fanout_pushes);

    SCALAR("nhgw_consoles", "gauge", "Console channels joined by devices.", c->consoles);
    SCALAR("nhgw_console_operators", "gauge",
           "Operator attach leases held on consoles (a lapsed lease counts until its console's next event).",
           c->console_ops);
    SCALAR("nhgw_console_scrollback_bytes", "gauge",
           "Memory held by console scrollbacks (allocated as devices print, each at most "
           "--console-scrollback-bytes).",
           c->console_sb_bytes);
    SCALAR("nhgw_console_output_bytes_total", "counter",
           "Console output published to attached operators (message bodies on <prefix>.console.<dev>.out).",
           c->console_out_bytes);
    SCALAR("nhgw_console_input_bytes_total", "counter",
           "Operator console input (the data of `dn` pushes) delivered to devices.", c->console_in_bytes);

    SCALAR("nhgw_local_shell_scrollbacks", "gauge",
           "Connections holding a local-shell scrollback (extensions channel, scrollback_append).",
           c->xshell_sbs);
    SCALAR("nhgw_local_shell_scrollback_bytes", "gauge",
           "Memory held by local-shell scrollbacks (each at most --console-scrollback-bytes).",
           c->xshell_sb_bytes);
    static const char *const replay_res[2] = {"ok", "failed"};
    head(o, "nhgw_local_shell_replays_total", "counter",
         "Local-shell scrollback replays published (ok) or not (failed: subject refused or "
         "publish failed).");
    for (int k = 0; k < 2; k++) {
        SUM(x, c->xshell_replays[k]);
        sbuf_printf(o, "nhgw_local_shell_replays_total{result=\"%s\"} %llu\n", replay_res[k],
                    (unsigned long long)x);
    }
}
