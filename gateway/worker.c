/* A worker process (see worker.h): accept loop with a token bucket and the spare-descriptor
 * trick, the timeout sweep, deferred frees, and SIGTERM handling. */
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
#include "ws.h"

#define TICK_MS 100
#define ACCEPTS_PER_EVENT 64

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
            w->stats.accept_limited++;
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
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        char peer[48];
        lsn_format(&sa, peer, sizeof(peer));
        conn_new(w, fd, peer);
    }
}

static bool drained(struct worker *w)
{
    return w->open.count == 0 && w->closing.count == 0 && w->upgrading.count == 0 && w->handshaking.count == 0;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    uint64_t now = worker_now_ms();
    conn_expire(w, now);
    conn_reap(w);
    if (w->draining) {
        if (drained(w))
            event_base_loopbreak(w->base);
        return;
    }
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

static void on_sigterm(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    struct worker *w = arg;
    if (w->draining) {
        event_base_loopbreak(w->base);
        return;
    }
    LOG(LOG_INFO, "worker_stopping", "sessions=%zu", w->open.count);
    w->draining = true;
    pause_accept(w);
    close(w->listen_fd);
    w->listen_fd = -1;
    /* 1012: service restart; devices reconnect elsewhere (device-protocol.md §1.7) */
    conn_close_all(w, 1012, "service restart");
}

static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    LOG(LOG_INFO, "reload_ignored", "msg=\"reload is handled by the operations feature\"");
}

static void on_libevent_log(int severity, const char *msg)
{
    /* libevent warns once that the forked worker re-homes signal handling; that is expected */
    LOG(severity >= EVENT_LOG_ERR ? LOG_ERROR : LOG_DEBUG, "libevent", "msg=\"%s\"", msg);
}

void worker_run(const struct cfg *cfg, int index, const uint8_t ticket_key[80])
{
    event_set_log_callback(on_libevent_log);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGPIPE, SIG_IGN);
    log_init(cfg->log_level, cfg->log_format == CFG_LOG_JSON, "worker", index);
    struct worker *w = xcalloc(1, sizeof(*w));
    w->index = index;
    w->cfg = cfg;
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
    LOG(LOG_INFO, "worker_started", "listen=%s", cfg->listen);
    LOG(LOG_INFO, "listening", "listen=%s", cfg->listen);

    event_base_dispatch(w->base);

    LOG(LOG_INFO, "worker_exit", "sessions=%zu", w->open.count);
    exit(0);
}
