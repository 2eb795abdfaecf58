/* The master process (see master.h). It holds no connections, so a hostile device can only ever
 * take down one worker. */
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

#include "common.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "tls.h"
#include "worker.h"

#define MAX_WORKERS 256
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
#define STABLE_AFTER_MS 30000
#define STOP_DEADLINE_MS 30000

struct slot {
    pid_t pid;           /* 0 when not running */
    uint64_t started_ms;
    uint64_t backoff_ms;
    uint64_t respawn_at; /* 0 when no respawn is scheduled */
    unsigned restarts;
};

struct master {
    const struct cfg *cfg;
    struct event_base *base;
    struct slot slots[MAX_WORKERS];
    int n;
    int stopping;        /* SIGTERMs received */
    uint64_t stop_deadline;
    uint8_t ticket_key[80];
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
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        signal(SIGINT, SIG_IGN);
        worker_run(m->cfg, i, m->ticket_key);
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
                LOG(LOG_WARN, "worker_died", "worker=%d signal=%d lived_ms=%llu respawn_in_ms=%llu restarts=%u", i,
                    WTERMSIG(st), (unsigned long long)lived, (unsigned long long)s->backoff_ms, s->restarts);
            else
                LOG(LOG_WARN, "worker_died", "worker=%d status=%d lived_ms=%llu respawn_in_ms=%llu restarts=%u", i,
                    WEXITSTATUS(st), (unsigned long long)lived, (unsigned long long)s->backoff_ms, s->restarts);
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
            LOG(LOG_INFO, "stopping", "workers=%d", running(m));
            m->stop_deadline = now_ms() + STOP_DEADLINE_MS;
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
        LOG(LOG_INFO, "reload", "workers=%d", running(m));
        signal_all(m, SIGHUP);
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
    for (int i = 0; i < m->n; i++) {
        struct slot *s = &m->slots[i];
        if (!s->pid && s->respawn_at && now >= s->respawn_at)
            spawn(m, i);
    }
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

    if (cfg->pid_file) {
        FILE *f = fopen(cfg->pid_file, "w");
        if (f) {
            fprintf(f, "%d\n", (int)getpid());
            fclose(f);
        }
    }
    signal(SIGPIPE, SIG_IGN);
    m->base = event_base_new();
    int sigs[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP };
    for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
        event_add(evsignal_new(m->base, sigs[i], on_signal, m), NULL);
    struct event *tick = event_new(m->base, -1, EV_PERSIST, on_tick, m);
    struct timeval tv = { 0, 50000 };
    event_add(tick, &tv);
    LOG(LOG_INFO, "master_started", "workers=%d listen=%s gateway=%s", m->n, cfg->listen, cfg->gateway_id);
    for (int i = 0; i < m->n; i++)
        spawn(m, i);
    event_base_dispatch(m->base);
    if (cfg->pid_file)
        unlink(cfg->pid_file);
    LOG(LOG_INFO, "master_exit", "workers=%d", running(m));
    return 0;
}
