/* A worker process (see worker.h): accept loop with a token bucket and the spare-descriptor
 * trick, the timeout sweep, deferred frees, publishing counters to the shared slot, the drain
 * (SIGTERM) and TLS reloads (SIGHUP). */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "link.h"
#include "registry.h"
#include "session.h"
#include "listener.h"
#include "log.h"
#include "tls.h"
#include "tlsredis.h"
#include "ws.h"

#define TICK_MS 100
#define ACCEPTS_PER_EVENT 64
#define DRAIN_FLUSH_MS 200 /* after the last session: time for registry deletes and disconnects
                              (fire and forget) to leave the process */

/* The cross-pod TLS session store (--session-store redis); one worker per process. */
static struct tlsr *w_tlsr;
_Static_assert(TLSR_RESULT_N == ARRAY_SIZE(((struct worker_stats *)0)->tlsr_lookups), "one counter per result");

uint64_t worker_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t worker_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void conn_list_push(struct conn_list *l, struct conn *c)
{
    c->list = l;
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
    l->count++;
}

void conn_list_remove(struct conn_list *l, struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
    c->list = NULL;
    l->count--;
}

static void refill(struct worker *w, uint64_t now)
{
    double add = (double)(now - w->tokens_at_ms) * w->cfg->accept_rate / 1000.0;
    w->tokens_at_ms = now;
    w->tokens += add;
    if (w->tokens > w->cfg->accept_burst)
        w->tokens = w->cfg->accept_burst;
}

static void pause_accept(struct worker *w)
{
    if (!w->accept_paused) {
        event_del(w->accept_ev);
        w->accept_paused = true;
    }
}

/* libuv's EMFILE trick: give back the spare descriptor, accept and close one connection so the
 * client learns at once instead of waiting in the backlog while we spin. */
static void shed_one(struct worker *w)
{
    if (w->spare_fd >= 0) {
        close(w->spare_fd);
        w->spare_fd = -1;
    }
    int fd = accept4(w->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0)
        close(fd);
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    w->stats.accept_emfile++;
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    (void)what;
    struct worker *w = arg;
    refill(w, worker_now_ms());
    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        if (w->tokens < 1.0) {
            w->stats.accept_limited++; /* nhgw_connections_refused_total{reason="rate_limited"} */
            pause_accept(w);
            return;
        }
        struct sockaddr_storage sa;
        socklen_t sl = sizeof(sa);
        int fd = accept4(lfd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE) {
                log_peer("accept_emfile", "error=\"%s\"", strerror(errno));
                shed_one(w);
                continue;
            }
            LOG(LOG_ERROR, "accept_failed", "error=\"%s\"", strerror(errno));
            return;
        }
        w->tokens -= 1.0;
        w->stats.accepted++;
        char peer[48];
        lsn_format(&sa, peer, sizeof(peer));
        conn_new(w, fd, peer);
    }
}

static bool drained(struct worker *w)
{
    return w->open.count == 0 && w->closing.count == 0 && w->upgrading.count == 0 && w->handshaking.count == 0;
}

/* Other modules keep process-lifetime counters (tls.c, the registry); they restart with the
 * process while ours continue from the slot, so add what moved since the last look. */
static void collect(struct worker *w)
{
    uint64_t e = tls_stats.expired_accepted;
    w->stats.tls_expired += e - w->seen_tls_expired;
    w->seen_tls_expired = e;
    static uint64_t seen_resumed_id; /* one worker per process */
    w->stats.resumed_id += tls_stats.resumed_id - seen_resumed_id;
    seen_resumed_id = tls_stats.resumed_id;
    if (w_tlsr) {
        static struct tlsr_stats seen; /* one worker per process */
        const struct tlsr_stats *t = tlsr_stats(w_tlsr);
        for (int i = 0; i < TLSR_RESULT_N; i++) {
            w->stats.tlsr_lookups[i] += t->lookups[i] - seen.lookups[i];
            seen.lookups[i] = t->lookups[i];
        }
        w->stats.tlsr_stores[ST_TLSR_STORED] += t->stored - seen.stored;
        w->stats.tlsr_stores[ST_TLSR_SKIPPED] += t->store_skipped - seen.store_skipped;
        w->stats.tlsr_stores[ST_TLSR_FAILED] += t->store_failed - seen.store_failed;
        seen.stored = t->stored;
        seen.store_skipped = t->store_skipped;
        seen.store_failed = t->store_failed;
        static uint64_t seen_rejected;
        w->stats.tlsr_rejected += tls_stats.remote_rejected - seen_rejected;
        seen_rejected = tls_stats.remote_rejected;
    }
    if (w->reg) {
        const struct reg_stats *r = reg_stats(w->reg);
        const uint64_t now[5] = { r->releases, r->refreshes, r->resyncs, r->errors, r->conflicts };
        uint64_t *dst[5] = { &w->stats.reg_ok[ST_REG_RELEASE], &w->stats.reg_ok[ST_REG_REFRESH],
                             &w->stats.reg_ok[ST_REG_RESYNC], &w->stats.reg_errors, &w->stats.reg_conflicts };
        for (int i = 0; i < 5; i++) {
            *dst[i] += now[i] - w->seen_reg[i];
            w->seen_reg[i] = now[i];
        }
    }
}

static void publish(struct worker *w)
{
    collect(w);
    struct stats_slot p;
    memset(&p, 0, sizeof(p));
    p.pid = (uint64_t)getpid();
    p.tick_ms = worker_now_ms();
    p.listening = w->listen_fd >= 0 && !w->draining;
    p.draining = w->draining;
    p.nats_connected = w->cfg->link == CFG_LINK_NATS && w->link->ops->available(w->link);
    p.redis_connected = reg_connected(w->reg);
    p.reload_gen = w->reload_gen;
    p.reload_failed_gen = w->reload_failed_gen;
    p.c = w->stats;
    stats_publish(w->slot, &p);
}

/* Apply the reload generation the master published, if not done yet: new connections get the
 * new context; connections that still use the old one keep it alive until they end (tls.h). */
static void reload(struct worker *w)
{
    uint64_t gen = __atomic_load_n(&w->shm->reload_gen, __ATOMIC_ACQUIRE);
    if (gen == w->reload_gen || gen == w->reload_failed_gen)
        return;
    char err[512];
    struct tls_ctx *t = tls_ctx_new(w->cfg, w->ticket_key, err, sizeof(err));
    if (!t) {
        w->reload_failed_gen = gen;
        LOG(LOG_ERROR, "reload_failed", "generation=%llu error=\"%s\" msg=\"the previous configuration stays\"",
            (unsigned long long)gen, err);
    } else {
        tls_ctx_free(w->tls);
        w->tls = t;
        w->reload_gen = gen;
        LOG(LOG_INFO, "tls_reloaded", "generation=%llu", (unsigned long long)gen);
    }
    publish(w);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    uint64_t now = worker_now_ms();
    conn_expire(w, now);
    conn_reap(w);
    if (!w->draining)
        reload(w); /* a SIGHUP that arrived before the handler was installed */
    publish(w);
    if (w->draining)
        return;
    if (now - w->hb_last_ms >= 1000) {
        w->hb_last_ms = now;
        sess_heartbeat_tick(w);
    }
    refill(w, now);
    if (w->accept_paused && w->tokens >= 1.0) {
        w->accept_paused = false;
        event_add(w->accept_ev, NULL);
    }
}

static void on_exit_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    event_base_loopbreak(w->base);
}

/* The drain's pace: session k (from 0) is closed at start + k / rate, so the fleet reconnects
 * elsewhere gradually; at the deadline whatever is left is closed at once. */
static void on_drain(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    uint64_t now = worker_now_ms();
    if (!w->drain_forced && now >= w->drain_deadline_ms) {
        w->drain_forced = true;
        LOG(LOG_WARN, "drain_timeout", "sessions=%zu closing=%zu", w->open.count, w->closing.count);
        conn_close_all(w, 1012, "service restart");
    }
    if (!w->drain_forced) {
        double due = (double)(now - w->drain_start_ms) * w->cfg->drain_rate / 1000.0 + 1.0;
        while (w->open.head && (double)w->drain_closed < due) {
            struct conn *c = w->open.head;
            sess_set_close_reason(c, "shutdown");
            conn_close(c, 1012, "service restart"); /* device-protocol.md §1.7: reconnect elsewhere */
            w->drain_closed++;
        }
    }
    /* when forced, closing handshakes are not waited for: the close frames are already written */
    if ((drained(w) || w->drain_forced) && !w->exit_ev) {
        LOG(LOG_INFO, "drain_done", "closed=%llu forced=%d", (unsigned long long)w->drain_closed, w->drain_forced);
        event_del(w->drain_ev);
        w->exit_ev = evtimer_new(w->base, on_exit_timer, w);
        struct timeval tv = { 0, DRAIN_FLUSH_MS * 1000 };
        evtimer_add(w->exit_ev, &tv);
    }
}

static void on_sigterm(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    struct worker *w = arg;
    /* idempotent: the master forwards SIGTERM and a supervisor may signal the whole process group
     * (systemd's control-group kill) too; "stop now" is the master's second SIGTERM (SIGKILL) */
    if (w->draining)
        return;
    uint64_t now = worker_now_ms();
    LOG(LOG_INFO, "worker_stopping", "sessions=%zu drain_rate=%g drain_timeout_ms=%llu", w->open.count,
        w->cfg->drain_rate, (unsigned long long)w->cfg->drain_timeout_ms);
    w->draining = true;
    w->drain_start_ms = now;
    w->drain_deadline_ms = now + w->cfg->drain_timeout_ms;
    pause_accept(w);
    if (w->listen_fd >= 0) {
        /* what already waits in the accept queue gets a clean close rather than a reset */
        for (int fd; (fd = accept4(w->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;) {
            close(fd);
            w->stats.refused_draining++;
        }
        close(w->listen_fd);
        w->listen_fd = -1;
    }
    /* connections without a session yet have nothing to drain */
    while (w->handshaking.head)
        conn_abort(w->handshaking.head, "draining");
    while (w->upgrading.head)
        conn_abort(w->upgrading.head, "draining");
    publish(w);
    double interval_ms = 1000.0 / w->cfg->drain_rate;
    interval_ms = interval_ms < 5 ? 5 : interval_ms > TICK_MS ? TICK_MS : interval_ms;
    w->drain_ev = event_new(w->base, -1, EV_PERSIST, on_drain, w);
    struct timeval tv = { 0, (suseconds_t)(interval_ms * 1000) };
    event_add(w->drain_ev, &tv);
    on_drain(-1, 0, w);
}

static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    struct worker *w = arg;
    if (!w->draining)
        reload(w);
}

static void on_libevent_log(int severity, const char *msg)
{
    /* libevent warns once that the forked worker re-homes signal handling; that is expected */
    LOG(severity >= EVENT_LOG_ERR ? LOG_ERROR : LOG_DEBUG, "libevent", "msg=\"%s\"", msg);
}

void worker_run(const struct cfg *cfg, int index, const uint8_t ticket_key[80], struct stats_shm *shm)
{
    event_set_log_callback(on_libevent_log);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGPIPE, SIG_IGN);
    log_init(cfg->log_level, cfg->log_format == CFG_LOG_JSON, "worker", index);
    struct worker *w = xcalloc(1, sizeof(*w));
    w->index = index;
    w->cfg = cfg;
    w->shm = shm;
    w->slot = &shm->slots[index];
    w->ticket_key = ticket_key;
    /* counters continue where this slot's previous worker left them; the master zeroed its gauges
     * when it reaped it (stats_slot_reset_gauges), before this respawn */
    struct stats_slot prev;
    stats_read(w->slot, &prev);
    w->stats = prev.c;
    stats_w = &w->stats;
    /* the files read below are at least as new as this generation */
    w->reload_gen = __atomic_load_n(&shm->reload_gen, __ATOMIC_ACQUIRE);
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    w->base = event_base_new();
    char err[512];
    w->tls = tls_ctx_new(cfg, ticket_key, err, sizeof(err));
    if (!w->base || !w->tls) {
        LOG(LOG_ERROR, "worker_init_failed", "error=\"%s\"", w->tls ? "event_base_new" : err);
        exit(3);
    }
    /* connection refs must not repeat across worker restarts (proto/LINK.md §1); below 2^53 so
     * that every JSON and JavaScript consumer reads them exactly */
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
        r = (uint64_t)getpid() << 20;
    w->next_conn_id = r & ((1ULL << 52) - 1);
    if (cfg->link == CFG_LINK_NATS) {
        w->link = link_nats_new(w->base, cfg, (unsigned)index);
        if (!w->link) {
            LOG(LOG_ERROR, "worker_init_failed", "error=\"NATS link\" nats_url=%s", cfg->nats_url);
            exit(3);
        }
    } else {
        w->link = link_local_new();
    }
    sess_attach_sink(w);
    if (cfg->redis) {
        char host[256];
        int port = 6379;
        snprintf(host, sizeof(host), "%s", cfg->redis);
        char *colon = strrchr(host, ':');
        if (colon) {
            *colon = 0;
            port = atoi(colon + 1);
        }
        struct reg_opts ro = { .host = host, .port = port, .prefix = cfg->link_prefix,
                               .gateway_id = cfg->gateway_id, .worker = (unsigned)index,
                               .ttl_ms = (uint32_t)MIN(cfg->registry_ttl_ms, UINT32_MAX),
                               .keep_alive_key = index == 0 };
        w->reg = reg_new(w->base, &ro);
        if (!w->reg) {
            LOG(LOG_ERROR, "worker_init_failed", "error=\"registry\" redis=%s", cfg->redis);
            exit(3);
        }
        reg_set_conflict_cb(w->reg, sess_on_registry_conflict, w);
        if (cfg->session_store == CFG_STORE_REDIS) {
            w_tlsr = tlsr_new(w->base, w->reg, cfg->link_prefix, (uint32_t)cfg->session_store_timeout_ms);
            if (!w_tlsr) {
                LOG(LOG_ERROR, "worker_init_failed", "error=\"session store\" redis=%s", cfg->redis);
                exit(3);
            }
            tls_set_session_store(w_tlsr);
        }
    }
    w->z = ws_zctx_new(cfg->deflate_level);
    w->rbuf = xmalloc(WORKER_RBUF_SIZE);
    if (!w->z) {
        LOG(LOG_ERROR, "worker_init_failed", "error=\"zlib\"");
        exit(3);
    }
    w->handshaking.timeout_ms = cfg->handshake_timeout_ms;
    w->upgrading.timeout_ms = cfg->upgrade_timeout_ms;
    w->open.timeout_ms = cfg->idle_timeout_ms;
    w->closing.timeout_ms = cfg->close_timeout_ms;

    struct sockaddr_storage addr;
    socklen_t alen;
    if (lsn_parse_addr(cfg->listen, &addr, &alen) != 0) {
        LOG(LOG_ERROR, "worker_init_failed", "error=\"bad listen address\" listen=%s", cfg->listen);
        exit(3);
    }
    w->listen_fd = lsn_open(&addr, alen, cfg->backlog);
    if (w->listen_fd < 0) {
        LOG(LOG_ERROR, "listen_failed", "listen=%s error=\"%s\"", cfg->listen, strerror(-w->listen_fd));
        exit(3);
    }
    w->tokens = cfg->accept_burst;
    w->tokens_at_ms = worker_now_ms();
    w->accept_ev = event_new(w->base, w->listen_fd, EV_READ | EV_PERSIST, on_accept, w);
    event_add(w->accept_ev, NULL);
    w->tick_ev = event_new(w->base, -1, EV_PERSIST, on_tick, w);
    struct timeval tick = { 0, TICK_MS * 1000 };
    event_add(w->tick_ev, &tick);
    struct event *term = evsignal_new(w->base, SIGTERM, on_sigterm, w);
    struct event *hup = evsignal_new(w->base, SIGHUP, on_sighup, w);
    event_add(term, NULL);
    event_add(hup, NULL);
    publish(w);
    LOG(LOG_INFO, "worker_started", "listen=%s", cfg->listen);
    LOG(LOG_INFO, "listening", "listen=%s", cfg->listen);

    event_base_dispatch(w->base);

    publish(w);
    LOG(LOG_INFO, "worker_exit", "sessions=%zu", w->open.count);
    exit(0);
}
