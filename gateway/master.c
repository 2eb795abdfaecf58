/* The master process (see master.h). It holds no connections, so a hostile device can only ever
 * take down one worker. It also serves the admin port from the workers' shared-memory slots,
 * and orchestrates drain (SIGTERM) and reload (SIGHUP). */
#include "master.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "admin.h"
#include "common.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "sesscache.h"
#include "stats.h"
#include "tls.h"
#include "worker.h"

#define MAX_WORKERS 256
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
#define STABLE_AFTER_MS 30000
#define STOP_GRACE_MS 5000      /* beyond --drain-timeout, before workers are killed */
#define RELOAD_WAIT_MS 10000    /* workers must confirm a reload within this */
#define STALE_MS 10000          /* a worker that has not published for this long is not ready */

struct slot {
    pid_t pid;           /* 0 when not running */
    uint64_t started_ms;
    uint64_t backoff_ms;
    uint64_t respawn_at; /* 0 when no respawn is scheduled */
    uint64_t restarts;
};

struct master {
    const struct cfg *cfg;
    struct event_base *base;
    struct slot slots[MAX_WORKERS];
    int n;
    int stopping;        /* SIGTERMs received */
    uint64_t stop_deadline;
    uint8_t ticket_key[80];
    struct stats_shm *shm;
    struct scache *scache; /* the shared TLS session store; NULL when off */
    struct admin *admin;
    uint64_t reload_target;      /* generation being applied by the workers; 0 when none */
    uint64_t reload_deadline;
    uint64_t reloads_ok, reloads_failed;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void spawn(struct master *m, int i)
{
    pid_t pid = fork();
    if (pid < 0) {
        LOG(LOG_ERROR, "fork_failed", "worker=%d error=\"%s\"", i, strerror(errno));
        m->slots[i].respawn_at = now_ms() + BACKOFF_MAX_MS;
        return;
    }
    if (pid == 0) {
        /* the master's handlers write to the master's event loop; the worker installs its own.
         * The master's base is left alone: freeing it here would deregister the master's
         * descriptors from the epoll instance the two processes share. */
        admin_close_in_child(m->admin);
        signal(SIGTERM, SIG_DFL);
        /* a reload before the worker's handler is in place is picked up by its tick */
        signal(SIGHUP, SIG_IGN);
        signal(SIGCHLD, SIG_DFL);
        signal(SIGINT, SIG_IGN);
        worker_run(m->cfg, i, m->ticket_key, m->shm);
    }
    m->slots[i].pid = pid;
    m->slots[i].started_ms = now_ms();
    m->slots[i].respawn_at = 0;
}

static int running(const struct master *m)
{
    int n = 0;
    for (int i = 0; i < m->n; i++)
        n += m->slots[i].pid != 0;
    return n;
}

static void reap_children(struct master *m)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        for (int i = 0; i < m->n; i++) {
            struct slot *s = &m->slots[i];
            if (s->pid != pid)
                continue;
            s->pid = 0;
            stats_slot_reset_gauges(&m->shm->slots[i]);
            if (m->stopping) {
                LOG(LOG_INFO, "worker_stopped", "worker=%d status=%d", i, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
                break;
            }
            uint64_t now = now_ms();
            uint64_t lived = now - s->started_ms;
            if (lived >= STABLE_AFTER_MS)
                s->backoff_ms = BACKOFF_MIN_MS;
            else
                s->backoff_ms = s->backoff_ms ? MIN(s->backoff_ms * 2, BACKOFF_MAX_MS) : BACKOFF_MIN_MS;
            s->respawn_at = now + s->backoff_ms;
            s->restarts++;
            if (WIFSIGNALED(st))
                LOG(LOG_WARN, "worker_died", "worker=%d signal=%d lived_ms=%llu respawn_in_ms=%llu restarts=%llu", i,
                    WTERMSIG(st), (unsigned long long)lived, (unsigned long long)s->backoff_ms,
                    (unsigned long long)s->restarts);
            else
                LOG(LOG_WARN, "worker_died", "worker=%d status=%d lived_ms=%llu respawn_in_ms=%llu restarts=%llu", i,
                    WEXITSTATUS(st), (unsigned long long)lived, (unsigned long long)s->backoff_ms,
                    (unsigned long long)s->restarts);
            break;
        }
    }
}

static void signal_all(struct master *m, int sig)
{
    for (int i = 0; i < m->n; i++)
        if (m->slots[i].pid)
            kill(m->slots[i].pid, sig);
}

/* SIGHUP: check the TLS files by building a context from them, exactly as the workers will; only
 * then ask the workers (shared generation + SIGHUP) to rebuild theirs. */
static void reload(struct master *m)
{
    if (m->stopping) {
        LOG(LOG_INFO, "reload_ignored", "reason=draining");
        return;
    }
    char err[512];
    struct tls_ctx *probe = tls_ctx_new(m->cfg, m->ticket_key, err, sizeof(err));
    if (!probe) {
        m->reloads_failed++;
        LOG(LOG_ERROR, "reload_failed", "error=\"%s\" msg=\"the previous configuration stays\"", err);
        return;
    }
    tls_ctx_free(probe);
    uint64_t gen = m->shm->reload_gen + 1;
    __atomic_store_n(&m->shm->reload_gen, gen, __ATOMIC_RELEASE);
    m->reload_target = gen;
    m->reload_deadline = now_ms() + RELOAD_WAIT_MS;
    LOG(LOG_INFO, "reload", "workers=%d generation=%llu", running(m), (unsigned long long)gen);
    signal_all(m, SIGHUP);
}

/* Whether every running worker has applied (or failed) the pending reload. */
static void check_reload(struct master *m, uint64_t now)
{
    uint64_t gen = m->reload_target;
    int failed = -1;
    for (int i = 0; i < m->n; i++) {
        if (!m->slots[i].pid)
            continue;
        struct stats_slot *s = &m->shm->slots[i];
        uint64_t done = __atomic_load_n(&s->reload_gen, __ATOMIC_ACQUIRE);
        uint64_t bad = __atomic_load_n(&s->reload_failed_gen, __ATOMIC_ACQUIRE);
        if (bad >= gen && bad > done) {
            failed = i;
            continue;
        }
        if (done < gen || __atomic_load_n(&s->pid, __ATOMIC_RELAXED) != (uint64_t)m->slots[i].pid) {
            if (now < m->reload_deadline)
                return;
            failed = i;
        }
    }
    m->reload_target = 0;
    if (failed >= 0) {
        m->reloads_failed++;
        LOG(LOG_ERROR, "reload_failed", "generation=%llu worker=%d error=\"a worker did not apply it (see its log)\"",
            (unsigned long long)gen, failed);
        return;
    }
    m->reloads_ok++;
    LOG(LOG_INFO, "reload_done", "generation=%llu workers=%d", (unsigned long long)gen, running(m));
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct master *m = arg;
    switch (sig) {
    case SIGCHLD:
        reap_children(m);
        if (m->stopping && running(m) == 0)
            event_base_loopbreak(m->base);
        break;
    case SIGTERM:
    case SIGINT:
        m->stopping++;
        if (m->stopping == 1) {
            /* unready from here on (/readyz), the workers drain at --drain-rate */
            LOG(LOG_INFO, "stopping", "workers=%d drain_rate=%g drain_timeout_ms=%llu", running(m),
                m->cfg->drain_rate, (unsigned long long)m->cfg->drain_timeout_ms);
            m->stop_deadline = now_ms() + m->cfg->drain_timeout_ms + STOP_GRACE_MS;
            signal_all(m, SIGTERM);
        } else {
            /* a second SIGTERM means now */
            LOG(LOG_INFO, "stopping_now", "workers=%d", running(m));
            signal_all(m, SIGKILL);
        }
        if (running(m) == 0)
            event_base_loopbreak(m->base);
        break;
    case SIGHUP:
        reload(m);
        break;
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct master *m = arg;
    uint64_t now = now_ms();
    if (m->stopping) {
        if (now >= m->stop_deadline)
            signal_all(m, SIGKILL);
        return;
    }
    if (m->reload_target)
        check_reload(m, now);
    for (int i = 0; i < m->n; i++) {
        struct slot *s = &m->slots[i];
        if (!s->pid && s->respawn_at && now >= s->respawn_at)
            spawn(m, i);
    }
}

/* ---- admin port ---- */

/* NULL when worker i is ready, else why not. */
static const char *not_ready(const struct master *m, int i, const struct stats_slot *s, uint64_t now)
{
    if (!m->slots[i].pid || s->pid != (uint64_t)m->slots[i].pid)
        return "not running";
    if (s->draining)
        return "draining";
    if (!s->listening)
        return "not listening";
    if (m->cfg->link == CFG_LINK_NATS && !s->nats_connected)
        return "NATS disconnected";
    if (m->cfg->redis && !s->redis_connected)
        return "Redis disconnected";
    if (now - s->tick_ms > STALE_MS)
        return "stalled";
    return NULL;
}

static int on_admin(void *arg, const char *path, struct sbuf *body, const char **ctype)
{
    struct master *m = arg;
    bool metrics = strcmp(path, "/metrics") == 0;
    bool readyz = strcmp(path, "/readyz") == 0;
    if (strcmp(path, "/healthz") == 0) {
        /* liveness: the master answers and its workers run (a drain stops them on purpose) */
        int r = running(m);
        sbuf_printf(body, "%s workers=%d/%d\n", m->stopping || r == m->n ? "ok" : "degraded", r, m->n);
        return m->stopping || r == m->n ? 200 : 503;
    }
    if (!metrics && !readyz)
        return 404;
    struct stats_slot *slots = xcalloc((size_t)m->n, sizeof(*slots));
    uint64_t now = now_ms();
    bool ready = !m->stopping;
    for (int i = 0; i < m->n; i++) {
        stats_read(&m->shm->slots[i], &slots[i]);
        const char *why = not_ready(m, i, &slots[i], now);
        if (why) {
            ready = false;
            if (readyz && !m->stopping)
                sbuf_printf(body, "worker %d: %s\n", i, why);
        }
    }
    int status = 200;
    if (readyz) {
        if (m->stopping)
            sbuf_printf(body, "draining\n");
        else if (ready)
            sbuf_printf(body, "ready\n");
        status = ready ? 200 : 503;
    } else {
        uint64_t restarts[MAX_WORKERS];
        for (int i = 0; i < m->n; i++)
            restarts[i] = m->slots[i].restarts;
        struct stats_view v = { .slots = slots, .restarts = restarts, .n = m->n, .running = running(m),
                                .draining = m->stopping > 0, .ready = ready,
                                .link_nats = m->cfg->link == CFG_LINK_NATS, .redis = m->cfg->redis != NULL,
                                .reloads_ok = m->reloads_ok, .reloads_failed = m->reloads_failed };
        if (m->scache) {
            /* the store is shared memory the workers write: its counters are read here directly */
            v.scache_capacity = scache_capacity(m->scache);
            v.scache_entries = scache_entries(m->scache);
            scache_get_stats(m->scache, &v.scache);
        }
        stats_render(body, &v);
        *ctype = "text/plain; version=0.0.4; charset=utf-8";
    }
    free(slots);
    return status;
}

int master_run(const struct cfg *cfg)
{
    struct master *m = xcalloc(1, sizeof(*m));
    m->cfg = cfg;
    m->n = cfg->workers > 0 ? cfg->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (m->n < 1)
        m->n = 1;
    if (m->n > MAX_WORKERS)
        m->n = MAX_WORKERS;

    /* report configuration errors once, here, rather than as a respawn loop */
    if (getrandom(m->ticket_key, sizeof(m->ticket_key), 0) != sizeof(m->ticket_key)) {
        LOG(LOG_ERROR, "startup_failed", "error=\"getrandom\"");
        return 1;
    }
    char err[512];
    struct tls_ctx *probe = tls_ctx_new(cfg, m->ticket_key, err, sizeof(err));
    if (!probe) {
        LOG(LOG_ERROR, "startup_failed", "error=\"%s\"", err);
        return 1;
    }
    tls_ctx_free(probe);
    struct sockaddr_storage addr;
    socklen_t alen;
    if (lsn_parse_addr(cfg->listen, &addr, &alen) != 0) {
        LOG(LOG_ERROR, "startup_failed", "error=\"bad listen address\" listen=%s", cfg->listen);
        return 1;
    }
    int fd = lsn_open(&addr, alen, 1);
    if (fd < 0) {
        LOG(LOG_ERROR, "startup_failed", "listen=%s error=\"%s\"", cfg->listen, strerror(-fd));
        return 1;
    }
    close(fd);

    signal(SIGPIPE, SIG_IGN);
    m->base = event_base_new();
    m->shm = stats_shm_new(m->n);
    if (!m->shm) {
        LOG(LOG_ERROR, "startup_failed", "error=\"shared memory: %s\"", strerror(errno));
        return 1;
    }
    /* one store for all workers (and their respawns), so a reconnect resumes on any of them */
    if (cfg->session_cache_size) {
        struct scache *sc = scache_new(cfg->session_cache_size, TLS_SESSION_MAX_BYTES);
        if (!sc) {
            LOG(LOG_ERROR, "startup_failed", "error=\"session cache: %s\"", strerror(errno));
            return 1;
        }
        tls_set_session_cache(sc);
        m->scache = sc;
        LOG(LOG_INFO, "session_cache", "sessions=%zu bytes=%zu", scache_capacity(sc), scache_mapped_bytes(sc));
    }
    m->admin = admin_new(m->base, cfg->admin_listen, on_admin, m, err, sizeof(err));
    if (!m->admin) {
        LOG(LOG_ERROR, "startup_failed", "error=\"%s\"", err);
        return 1;
    }
    char admin_addr[64];
    admin_address(m->admin, admin_addr, sizeof(admin_addr));
    if (cfg->pid_file) {
        FILE *f = fopen(cfg->pid_file, "w");
        if (f) {
            fprintf(f, "%d\n", (int)getpid());
            fclose(f);
        }
    }
    int sigs[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP };
    for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
        event_add(evsignal_new(m->base, sigs[i], on_signal, m), NULL);
    struct event *tick = event_new(m->base, -1, EV_PERSIST, on_tick, m);
    struct timeval tv = { 0, 50000 };
    event_add(tick, &tv);
    LOG(LOG_INFO, "master_started", "workers=%d listen=%s admin=%s gateway=%s", m->n, cfg->listen, admin_addr,
        cfg->gateway_id);
    for (int i = 0; i < m->n; i++)
        spawn(m, i);
    event_base_dispatch(m->base);
    admin_free(m->admin);
    if (cfg->pid_file)
        unlink(cfg->pid_file);
    LOG(LOG_INFO, "master_exit", "workers=%d", running(m));
    return 0;
}
