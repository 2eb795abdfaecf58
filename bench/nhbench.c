/* nhbench: load generator and end-to-end test client for nhgw (and, TLS only, any TLS terminator).
 * Parses options, prepares the device certificate pool, forks worker processes (client.c) that
 * share nothing but a results slot, samples the gateway's memory and CPU from /proc around the
 * measured phase, and reports a human summary and a JSON file. Scenarios: hold, handshake,
 * tls-hold, tls-handshake, storm, fanout and console (both need the NATS link and the reference
 * platform), smoke, crypto.
 * Deliberately not here: connection handling (client.c), report formatting (report.c). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <jansson.h>
#include <openssl/ssl.h>

#include "client.h"
#include "common.h"
#include "console_op.h"
#include "cryptoref.h"
#include "devpool.h"
#include "procstat.h"
#include "report.h"
#include "trigger.h"

#define FD_PER_WORKER 15000 /* sessions per nhbench process (the hard descriptor limit is 20,000) */

static const char *argv0 = "nhbench";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s SCENARIO --target HOST:PORT [options]\n"
            "\n"
            "scenarios:\n"
            "  hold           ramp to --sessions mTLS+WebSocket sessions (device + extensions joined),\n"
            "                 hold them --hold long with heartbeats; gateway memory per session\n"
            "  handshake      connect, mTLS handshake, WebSocket upgrade (101), close, repeatedly;\n"
            "                 handshakes per gateway CPU second (--resume: resumed sessions)\n"
            "  tls-hold       like hold, TLS only (no HTTP/WebSocket), for any TLS terminator\n"
            "  tls-handshake  like handshake, TLS only\n"
            "  storm          ramp like hold, then close every session at once and reconnect every\n"
            "                 device with link's backoff; time until all are joined again, rate curve\n"
            "  fanout         ramp like hold (against a gateway on the NATS link with the reference\n"
            "                 platform), then ask the platform's operator API to push `update` to every\n"
            "                 device, once per --fanout path; delivery latency and completeness\n"
            "  console        ramp like hold with every device joining `console` and echoing its input;\n"
            "                 one operator per device (over NATS, as nhctl console) types into it: round\n"
            "                 trip latency operator -> gateway -> device -> operator, echoes per second\n"
            "  smoke          every scenario briefly, strict checks; exit 1 on any failure\n"
            "  crypto         no connections: time the public-key operations of one full mTLS\n"
            "                 handshake with this BoringSSL (the crypto-only bound); no --target\n"
            "\n"
            "options (durations take ms/s/m, e.g. 500ms, 30s, 2m):\n"
            "  --target HOST:PORT     gateway address (required)\n"
            "  --gateway-pid PID      gateway master pid: memory/CPU of it and its children\n"
            "  --workers N            nhbench worker processes (default: sessions/%d, at least 1)\n"
            "  --sessions N           hold: sessions (default 1000; smoke 200)\n"
            "  --devices N            distinct device identities (default: sessions, or 4 x concurrency)\n"
            "  --rate R               new connections per second (hold default 2000; 0 = unlimited)\n"
            "  --concurrency C        handshake: connections in flight, closed loop (default 16);\n"
            "                         0 = open loop at --rate\n"
            "  --max-pending N        connection set-ups in flight (default 1000)\n"
            "  --hold T               hold time (default 30s; storm: after every device is back, 5s)\n"
            "  --backoff link|none    storm: link's reconnect delays (1-1.5 s, then 2-3 s, ... after\n"
            "                         failures; default) or at once (100 ms after a failure)\n"
            "  --backoff-unit T       storm: link's first delay, the list scales with it (default 1s)\n"
            "  --storm-timeout T      storm: how long to wait for every device to be back (default 5m)\n"
            "  --bucket T             timeline bucket width for the rate curves (default 100ms)\n"
            "  --nats URL             fanout, console: the platform's NATS (default nats://127.0.0.1:4222)\n"
            "  --link-prefix P        fanout: the link prefix (default nh)\n"
            "  --fanout LIST          fanout: rounds, comma-separated, at most %d: topic (deployment.update\n"
            "                         with new firmware: one publish on the deployment's topic) or scan\n"
            "                         (deployment.create: one inbox push per device) (default topic,scan)\n"
            "  --fanout-timeout T     fanout: how long a round waits for every device (default 60s)\n"
            "  --fanout-grace T       fanout: wait after the last device, to catch duplicates (default 2s)\n"
            "  --console              hold, storm, smoke: devices also join `console` and echo `dn` as `up`\n"
            "  --console-rate R       console: pushes per second per console, open loop (default 10);\n"
            "                         0 = closed loop, one push in flight per console\n"
            "  --console-bytes B      console: data bytes per push (default 64, %d..%d)\n"
            "  --duration T           handshake, console: measured window (default 10s)\n"
            "  --warmup T             handshake, console: unmeasured start (default 2s)\n"
            "  --settle T             hold: wait after the ramp before sampling memory (default 2s)\n"
            "  --vsn 2|3|mix          2.0.0 JSON (link's default), 3.0.0 msgpack, or alternate (default 2)\n"
            "  --deflate on|off|mix   offer permessage-deflate like link (default on)\n"
            "  --heartbeat T          Phoenix heartbeat interval (default 30s, link's)\n"
            "  --timeout T            deadline for connect .. joined (default 30s)\n"
            "  --tls 1.2|1.3          highest TLS version (default 1.2, link's only one)\n"
            "  --resume               offer each device's previous session\n"
            "  --resume-id            --resume by TLS 1.2 session ID, offering no ticket (as Erlang's ssl)\n"
            "  --strict               byte-exact reply checks (smoke always)\n"
            "  --no-extensions        do not join `extensions`\n"
            "  --no-iface             do not send report_network_interface\n"
            "  --groups LIST          TLS groups (default X25519:P-256, as Erlang's ssl prefers)\n"
            "  --server-ca FILE       verify the server certificate (default: no verification)\n"
            "  --sni NAME             send SNI\n"
            "  --host NAME            Host header (default: the target)\n"
            "  --path PATH            socket path (default /socket/websocket)\n"
            "  --linger0              close with RST instead of close_notify + FIN (also storm's drop)\n"
            "  --ca-cert FILE         device CA certificate (default build/test-certs/device-ca.pem)\n"
            "  --ca-key FILE          device CA key (default build/test-certs/device-ca.key)\n"
            "  --pool-dir DIR         device certificate cache (default build/bench-pool)\n"
            "  --json FILE            write the results as JSON\n"
            "  --label TEXT           free text stored in the JSON\n"
            "  --quiet                no progress lines on stderr\n",
            argv0, FD_PER_WORKER, CL_FAN_MAX, CO_MIN_BYTES, CO_MAX_BYTES);
}

static int parse_duration_ms(const char *s, uint32_t *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0)
        return -1;
    double mul = 1000;
    if (!strcmp(end, "ms"))
        mul = 1;
    else if (!strcmp(end, "s") || !*end)
        mul = 1000;
    else if (!strcmp(end, "m") || !strcmp(end, "min"))
        mul = 60000;
    else if (!strcmp(end, "h"))
        mul = 3600000;
    else
        return -1;
    if (v * mul > 4e9)
        return -1;
    *out = (uint32_t)(v * mul + 0.5);
    return 0;
}

static int parse_u32(const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    double mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1000, end++;
    if (errno || end == s || *end || v * mul > 4e9)
        return -1;
    *out = (uint32_t)(v * mul);
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* ---- one run ---- */

struct shared {
    volatile int phase;
    struct cl_fan fan;
    struct cl_slot slots[];
};

static void sum_slots(const struct shared *sh, int n, struct bench_counts *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < C_COUNT; k++)
            out->c[k] += sh->slots[i].c[k];
        for (int k = 0; k < E_COUNT; k++)
            out->e[k] += sh->slots[i].e[k];
        for (int k = 0; k < 17; k++)
            out->close_codes[k] += sh->slots[i].close_codes[k];
    }
}

static uint64_t errors_total(const struct bench_counts *c)
{
    uint64_t t = 0;
    for (int k = 0; k < E_COUNT; k++)
        t += c->e[k];
    return t;
}

static bool all_state(const struct shared *sh, int n, int st)
{
    for (int i = 0; i < n; i++)
        if (sh->slots[i].state < st)
            return false;
    return true;
}

/* Wait for workers that exited on their own; returns how many died with a non-zero status. */
static int reap(pid_t *pids, int n, bool block)
{
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (pids[i] <= 0)
            continue;
        int st;
        pid_t r = waitpid(pids[i], &st, block ? 0 : WNOHANG);
        if (r == pids[i]) {
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                bad++;
                fprintf(stderr, "nhbench: worker %d (pid %d) %s %d\n", i, (int)pids[i],
                        WIFEXITED(st) ? "exited with" : "killed by signal",
                        WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
            }
            pids[i] = 0;
        }
    }
    return bad;
}

static void progress(const struct run *r, const struct shared *sh, double t0)
{
    struct bench_counts c;
    sum_slots(sh, r->cfg.workers, &c);
    if (r->cfg.pattern == CL_HOLD)
        fprintf(stderr,
                "[%6.1fs] %s: started %llu ready %llu pending %llu active %llu hb %llu/%llu errors %llu%s",
                now_s() - t0, r->name, (unsigned long long)c.c[C_STARTED], (unsigned long long)c.c[C_READY],
                (unsigned long long)c.c[C_PENDING], (unsigned long long)c.c[C_ACTIVE],
                (unsigned long long)c.c[C_HB_OK], (unsigned long long)c.c[C_HB_SENT],
                (unsigned long long)errors_total(&c), r->cfg.storm ? "" : "\n");
    if (r->cfg.storm)
        fprintf(stderr, " reconnects %llu recovered %llu\n", (unsigned long long)c.c[C_RECONNECTS],
                (unsigned long long)c.c[C_RECOVERED]);
    if (r->cfg.pattern != CL_HOLD)
        fprintf(stderr, "[%6.1fs] %s: cycles %llu (full %llu resumed %llu) in flight %llu errors %llu\n",
                now_s() - t0, r->name, (unsigned long long)c.c[C_CYCLES], (unsigned long long)c.c[C_TLS_FULL],
                (unsigned long long)c.c[C_TLS_RESUMED], (unsigned long long)c.c[C_PENDING],
                (unsigned long long)errors_total(&c));
}

/* Record the active-session gauge for the current timeline bucket and, about once a second, a
 * sample of the gateway for the curves. */
static void observe(struct run *r, const struct shared *sh)
{
    double now = now_s();
    uint64_t t_us = (uint64_t)(now * 1e6);
    uint32_t i = tl_index(t_us, r->cfg.epoch_us, (uint64_t)r->cfg.bucket_ms * 1000u);
    uint64_t active = 0;
    for (int k = 0; k < r->cfg.workers; k++)
        active += sh->slots[k].c[C_ACTIVE];
    for (uint32_t j = r->n_active; j < i; j++)
        r->active[j] = j ? r->active[j - 1] : 0; /* a stalled parent repeats the last value */
    r->active[i] = (uint32_t)active;
    if (i + 1 > r->n_active)
        r->n_active = i + 1;
    double t = now - r->epoch_s;
    if (r->n_series < REPORT_SERIES && t >= (double)r->n_series) {
        struct series_point *p = &r->series[r->n_series];
        struct ps_sample g = { 0 };
        if (r->gw_pid > 0)
            ps_sample_tree(r->gw_pid, &g);
        struct ps_sample self = { 0 };
        ps_sample_tree(getpid(), &self);
        ps_system_cpu(&p->sys_busy, &p->sys_all);
        p->self_ticks = self.cpu_ticks;
        p->t = t;
        p->cpu_ticks = g.cpu_ticks;
        p->rss_kib = g.rss_kib;
        p->active = (uint32_t)active;
        r->n_series++;
    }
}

/* Sleep `secs` (or until `until` holds) while printing progress every second and watching the
 * workers. Returns false if a worker died or the user interrupted (recorded as failures). */
static bool watch(struct run *r, struct shared *sh, pid_t *pids, double secs, double t0, bool quiet,
                  bool (*until)(const struct shared *, int))
{
    double end = now_s() + secs, next = now_s() + 1;
    while (now_s() < end) {
        if (interrupted) {
            report_fail(r, "interrupted");
            return false;
        }
        if (reap(pids, r->cfg.workers, false) > 0) {
            report_fail(r, "a worker process died");
            return false;
        }
        observe(r, sh);
        if (until && until(sh, r->cfg.workers))
            break;
        sleep_s(0.05);
        if (!quiet && now_s() >= next) {
            progress(r, sh, t0);
            next += 1;
        }
    }
    return true;
}

static bool ramped(const struct shared *sh, int n)
{
    return all_state(sh, n, CL_ST_RAMPED);
}

static bool recovered(const struct shared *sh, int n)
{
    return all_state(sh, n, CL_ST_RECOVERED);
}

static void sample(pid_t pid, struct ps_sample *s, bool *ok)
{
    *ok = pid > 0 && ps_sample_tree(pid, s) == 0;
}

/* ---- fanout ---- */

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int fan_wait_index;      /* the round watch() waits for (0-based) */
static uint64_t fan_wait_count; /* ... and how many devices must have it */

static uint64_t fan_sum(const struct shared *sh, int n, const volatile uint64_t *(*field)(const struct cl_slot *),
                        int k)
{
    uint64_t t = 0;
    for (int i = 0; i < n; i++)
        t += field(&sh->slots[i])[k];
    return t;
}

static const volatile uint64_t *f_first(const struct cl_slot *s)
{
    return s->fan_first;
}
static const volatile uint64_t *f_dup(const struct cl_slot *s)
{
    return s->fan_dup;
}
static const volatile uint64_t *f_dup_devs(const struct cl_slot *s)
{
    return s->fan_dup_devs;
}

static uint64_t stale_sum(const struct shared *sh, int n)
{
    uint64_t t = 0;
    for (int i = 0; i < n; i++)
        t += sh->slots[i].fan_stale;
    return t;
}

static bool fan_all_in(const struct shared *sh, int n)
{
    return fan_sum(sh, n, f_first, fan_wait_index) >= fan_wait_count;
}

/* The deployment every device joins into, created before the ramp: its firmware is the devices'
 * own, so the join pushes nothing, and every device follows its topic (`deployment:<id>`). The
 * NATS library's threads are gone when this returns, so the workers can be forked. */
static int fan_base(struct run *r)
{
    char err[200], name[64];
    struct tr *t = tr_open(r->nats_url, r->link_prefix, err, sizeof(err));
    if (!t) {
        report_fail(r, err);
        return -1;
    }
    snprintf(name, sizeof(name), "nhbench-%d-%llu-base", (int)getpid(), (unsigned long long)now_us());
    int64_t matched, pushed;
    uint64_t a, b;
    int rc = tr_deployment_create(t, name, CL_DEVICE_FW_UUID, CL_DEVICE_FW_VERSION, 10000, &r->fan_base_deployment,
                                  &matched, &pushed, &a, &b, err, sizeof(err));
    tr_close(t);
    if (rc != 0)
        report_fail(r, err);
    return rc;
}

/* The rounds, after the ramp: for each, publish the trigger to the workers, send the operator
 * request, wait until every open session received the round's update (or the timeout), then
 * --fanout-grace more for duplicates. Returns false if a worker died or the user interrupted. */
static bool fan_rounds(struct run *r, struct shared *sh, pid_t *pids, double t0, bool quiet)
{
    int W = r->cfg.workers;
    char err[200];
    struct tr *t = tr_open(r->nats_url, r->link_prefix, err, sizeof(err));
    if (!t) {
        report_fail(r, err);
        return true;
    }
    int64_t dep = r->fan_base_deployment;
    bool ok = true;
    for (int i = 0; i < r->n_fan && ok; i++) {
        struct fan_round *f = &r->fan[i];
        struct bench_counts c;
        sum_slots(sh, W, &c);
        f->expected = c.c[C_ACTIVE];
        uint64_t stale0 = stale_sum(sh, W);
        tr_new_uuid(f->uuid);
        char version[24];
        snprintf(version, sizeof(version), "1.0.%d", i + 1);
        memcpy(sh->fan.uuid, f->uuid, sizeof(f->uuid));
        struct ps_sample g0 = { 0 }, g1 = { 0 };
        bool have0, have1;
        sample(r->gw_pid, &g0, &have0);
        uint64_t trig = now_us();
        sh->fan.t0_us = trig;
        __atomic_store_n(&sh->fan.round, (uint32_t)(i + 1), __ATOMIC_RELEASE);
        f->trigger_s = (double)trig / 1e6 - r->epoch_s;
        uint64_t sent, replied;
        int rc;
        if (!strcmp(f->path, "scan")) {
            char name[64];
            snprintf(name, sizeof(name), "nhbench-%d-%llu-%d", (int)getpid(), (unsigned long long)trig, i + 1);
            rc = tr_deployment_create(t, name, f->uuid, version, (uint32_t)(r->fan_timeout_s * 1000), &dep, &f->matched,
                                      &f->pushed, &sent, &replied, err, sizeof(err));
        } else {
            rc = tr_deployment_update(t, dep, f->uuid, version, 10000, f->reply_path, &sent, &replied, err, sizeof(err));
        }
        f->deployment = dep;
        f->api_ms = (double)(replied - trig) / 1000.0;
        if (rc != 0) {
            snprintf(f->error, sizeof(f->error), "%s", err);
            report_fail(r, err);
        }
        fan_wait_index = i;
        fan_wait_count = f->expected;
        double ts = now_s();
        double left = r->fan_timeout_s - (ts - (double)trig / 1e6);
        if (rc == 0)
            ok = watch(r, sh, pids, left > 0 ? left : 0, t0, quiet, fan_all_in);
        f->complete = fan_all_in(sh, W);
        if (ok)
            ok = watch(r, sh, pids, r->fan_grace_s, t0, quiet, NULL);
        f->waited_s = now_s() - (double)trig / 1e6;
        sample(r->gw_pid, &g1, &have1);
        if (have0 && have1)
            f->gw_cpu_s = (double)(g1.cpu_ticks - g0.cpu_ticks) * ps_tick_seconds();
        f->first = fan_sum(sh, W, f_first, i);
        f->dup = fan_sum(sh, W, f_dup, i);
        f->dup_devs = fan_sum(sh, W, f_dup_devs, i);
        f->stale = stale_sum(sh, W) - stale0;
        sum_slots(sh, W, &c);
        f->open_after = c.c[C_ACTIVE];
        if (!quiet)
            fprintf(stderr, "[%6.1fs] %s: round %d (%s): %llu/%llu devices got the update, %llu duplicates, api %.1f ms\n",
                    now_s() - t0, r->name, i + 1, f->path, (unsigned long long)f->first,
                    (unsigned long long)f->expected, (unsigned long long)f->dup, f->api_ms);
    }
    tr_close(t);
    return ok;
}

/* ---- console ---- */

/* A console run's settings and results, beside its struct run (report.c knows nothing of them:
 * nhbench prints them after the run's summary and adds them to the JSON file). */
struct con_run {
    bool on;
    double rate;         /* per console; 0 = closed loop */
    uint32_t bytes;
    double gw_cpu_s;     /* the gateway's CPU over the measured window */
    double self_cpu_s;   /* nhbench's (operators, workers) over the window */
    bool have_cpu;
    struct co_result res;
};

static struct con_run con_runs[REPORT_MAX_RUNS];
static struct con_run *cur_con; /* of the run in progress, NULL when it is not a console run */

/* After the ramp: attach an operator to every console, type for --warmup, then measure for
 * --duration, then wait for the last echoes. Returns false if a worker died or the user
 * interrupted. */
static bool con_measure(struct run *r, struct con_run *cr, struct shared *sh, pid_t *pids, double t0, bool quiet)
{
    char err[240];
    struct co_cfg cc = { .nats_url = r->nats_url,
                         .prefix = r->link_prefix,
                         .consoles = r->cfg.sessions,
                         .device_base = r->cfg.device_base,
                         .rate = cr->rate,
                         .bytes = cr->bytes };
    struct co *o = co_open(&cc, &cr->res, err, sizeof(err));
    if (!o) {
        report_fail(r, err);
        return true;
    }
    if (!quiet)
        fprintf(stderr, "[%6.1fs] %s: %u consoles attached, %u failed; typing %s\n", now_s() - t0, r->name,
                cr->res.attached, cr->res.attach_failed, cr->rate > 0 ? "(open loop)" : "(closed loop)");
    if (co_start(o, err, sizeof(err)) != 0) {
        report_fail(r, err);
        co_close(o);
        return true;
    }
    bool ok = watch(r, sh, pids, r->warmup_s, t0, quiet, NULL);
    struct ps_sample g0 = { 0 }, g1 = { 0 }, s0 = { 0 }, s1 = { 0 };
    bool h0, h1;
    sample(r->gw_pid, &g0, &h0);
    ps_sample_tree(getpid(), &s0);
    co_window_begin(o);
    if (ok)
        ok = watch(r, sh, pids, r->duration_s, t0, quiet, NULL);
    co_window_end(o);
    sample(r->gw_pid, &g1, &h1);
    ps_sample_tree(getpid(), &s1);
    co_stop(o, 5.0);
    co_close(o);
    cr->have_cpu = h0 && h1;
    if (cr->have_cpu)
        cr->gw_cpu_s = (double)(g1.cpu_ticks - g0.cpu_ticks) * ps_tick_seconds();
    cr->self_cpu_s = (double)(s1.cpu_ticks - s0.cpu_ticks) * ps_tick_seconds();
    return ok;
}

static void con_judge(struct run *r, const struct con_run *cr)
{
    const struct bench_counts *f = &r->final;
    char m[200];
    if (r->cfg.console && !r->cfg.storm && f->c[C_CON_JOINED] != f->c[C_JOINED]) {
        snprintf(m, sizeof(m), "%llu of %llu sessions joined console", (unsigned long long)f->c[C_CON_JOINED],
                 (unsigned long long)f->c[C_JOINED]);
        report_fail(r, m);
    }
    if (!cr->on)
        return;
    const struct co_result *x = &cr->res;
    if (x->attach_failed) {
        snprintf(m, sizeof(m), "%u consoles could not be attached (first: %s)", x->attach_failed, x->attach_error);
        report_fail(r, m);
    }
    if (x->attached && x->received == 0)
        report_fail(r, "no echo came back");
    if (x->lost) {
        snprintf(m, sizeof(m), "%llu of %llu pushes never came back", (unsigned long long)x->lost,
                 (unsigned long long)x->sent);
        report_fail(r, m);
    }
    if (x->dup || x->reordered || x->foreign || x->closed) {
        snprintf(m, sizeof(m), "console output: %llu duplicates, %llu out of order, %llu foreign, %llu closed",
                 (unsigned long long)x->dup, (unsigned long long)x->reordered, (unsigned long long)x->foreign,
                 (unsigned long long)x->closed);
        report_fail(r, m);
    }
    if (x->send_failed) {
        snprintf(m, sizeof(m), "%llu pushes could not be published", (unsigned long long)x->send_failed);
        report_fail(r, m);
    }
}

static void con_print(FILE *f, const struct run *r, const struct con_run *cr)
{
    if (!cr->on)
        return;
    const struct co_result *x = &cr->res;
    double w = x->window_s > 0 ? x->window_s : 1;
    fprintf(f, "  console    : %llu joined, %u attached (%u failed), %s, %u bytes per push, operators on %s (prefix %s)\n",
            (unsigned long long)r->final.c[C_CON_JOINED], x->attached, x->attach_failed, cr->rate > 0 ? "open loop" : "closed loop, one push in flight each",
            cr->bytes, r->nats_url, r->link_prefix);
    if (cr->rate > 0)
        fprintf(f, "               %.1f pushes/s per console, %.0f/s in all; sender at most %.1f ms behind schedule\n",
                cr->rate, cr->rate * x->attached, x->max_lag_us / 1e3);
    fprintf(f, "               sent %llu, echoed %llu, lost %llu, duplicates %llu, out of order %llu, foreign %llu, closed %llu\n",
            (unsigned long long)x->sent, (unsigned long long)x->received, (unsigned long long)x->lost,
            (unsigned long long)x->dup, (unsigned long long)x->reordered, (unsigned long long)x->foreign,
            (unsigned long long)x->closed);
    fprintf(f, "  throughput : %.0f echoes/s, %.1f KiB/s echoed data, %.1f KiB/s NATS bodies to operators (%.1f s window)\n",
            (double)x->win_received / w, (double)x->win_data_bytes / w / 1024, (double)x->win_msg_bytes / w / 1024,
            x->window_s);
    const struct hist *h = &x->h;
    fprintf(f, "  round trip : operator -> gateway -> device -> gateway -> operator, from the %s send (ms):\n"
               "               n %llu  mean %.2f  p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f\n",
            cr->rate > 0 ? "intended" : "actual", (unsigned long long)h->count, hist_mean(h) / 1e3,
            hist_percentile(h, 50) / 1e3, hist_percentile(h, 90) / 1e3, hist_percentile(h, 99) / 1e3,
            hist_percentile(h, 99.9) / 1e3, h->max / 1e3);
    if (cr->rate == 0) {
        h = &x->h_corrected;
        fprintf(f, "               corrected for coordinated omission (interval %.2f ms): p50 %.2f  p90 %.2f  p99 %.2f"
                   "  p99.9 %.2f\n",
                x->co_interval_us / 1e3, hist_percentile(h, 50) / 1e3, hist_percentile(h, 90) / 1e3,
                hist_percentile(h, 99) / 1e3, hist_percentile(h, 99.9) / 1e3);
    }
    if (cr->have_cpu && x->win_received)
        fprintf(f, "  cpu        : gateway %.2f s in the window = %.2f cores, %.1f us per echo; nhbench %.2f cores\n",
                cr->gw_cpu_s, cr->gw_cpu_s / w, cr->gw_cpu_s * 1e6 / (double)x->win_received, cr->self_cpu_s / w);
}

static json_t *con_hist_json(const struct hist *h)
{
    return json_pack("{s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "count", (json_int_t)h->count, "mean",
                     hist_mean(h), "min", (json_int_t)(h->count ? h->min : 0), "p50",
                     (json_int_t)hist_percentile(h, 50), "p90", (json_int_t)hist_percentile(h, 90), "p99",
                     (json_int_t)hist_percentile(h, 99), "p999", (json_int_t)hist_percentile(h, 99.9), "p9999",
                     (json_int_t)hist_percentile(h, 99.99), "max", (json_int_t)h->max);
}

static json_t *con_json(const struct con_run *cr)
{
    const struct co_result *x = &cr->res;
    double w = x->window_s > 0 ? x->window_s : 1;
    json_t *o = json_object();
    json_object_set_new(o, "loop", json_string(cr->rate > 0 ? "open" : "closed"));
    json_object_set_new(o, "rate_per_console", json_real(cr->rate));
    json_object_set_new(o, "bytes_per_push", json_integer(cr->bytes));
    json_object_set_new(o, "attached", json_integer(x->attached));
    json_object_set_new(o, "attach_failed", json_integer(x->attach_failed));
    json_object_set_new(o, "attach_error", json_string(x->attach_error));
    json_object_set_new(o, "sent", json_integer((json_int_t)x->sent));
    json_object_set_new(o, "echoed", json_integer((json_int_t)x->received));
    json_object_set_new(o, "lost", json_integer((json_int_t)x->lost));
    json_object_set_new(o, "duplicates", json_integer((json_int_t)x->dup));
    json_object_set_new(o, "out_of_order", json_integer((json_int_t)x->reordered));
    json_object_set_new(o, "foreign", json_integer((json_int_t)x->foreign));
    json_object_set_new(o, "closed", json_integer((json_int_t)x->closed));
    json_object_set_new(o, "send_failed", json_integer((json_int_t)x->send_failed));
    json_object_set_new(o, "data_bytes", json_integer((json_int_t)x->data_bytes));
    json_object_set_new(o, "msg_bytes", json_integer((json_int_t)x->msg_bytes));
    json_object_set_new(o, "window_s", json_real(x->window_s));
    json_object_set_new(o, "echoes_per_s", json_real((double)x->win_received / w));
    json_object_set_new(o, "data_bytes_per_s", json_real((double)x->win_data_bytes / w));
    json_object_set_new(o, "msg_bytes_per_s", json_real((double)x->win_msg_bytes / w));
    json_object_set_new(o, "sender_max_lag_us", json_integer((json_int_t)x->max_lag_us));
    json_object_set_new(o, "co_interval_us", json_integer((json_int_t)x->co_interval_us));
    json_object_set_new(o, "rtt_us", con_hist_json(&x->h));
    json_object_set_new(o, "rtt_corrected_us", con_hist_json(&x->h_corrected));
    if (cr->have_cpu) {
        json_object_set_new(o, "gateway_cpu_s", json_real(cr->gw_cpu_s));
        json_object_set_new(o, "gateway_cpu_us_per_echo",
                            json_real(x->win_received ? cr->gw_cpu_s * 1e6 / (double)x->win_received : 0));
    }
    json_object_set_new(o, "nhbench_cpu_s", json_real(cr->self_cpu_s));
    return o;
}

/* report.c wrote the file: add each console run's results as runs[i].console. */
static int con_add_json(const char *path, int n_runs)
{
    bool any = false;
    for (int i = 0; i < n_runs; i++)
        any = any || con_runs[i].on;
    if (!any)
        return 0;
    json_error_t je;
    json_t *root = json_load_file(path, JSON_PRESERVE_ORDER, &je);
    json_t *runs = root ? json_object_get(root, "runs") : NULL;
    if (!json_is_array(runs)) {
        json_decref(root);
        return -1;
    }
    for (int i = 0; i < n_runs && i < (int)json_array_size(runs); i++)
        if (con_runs[i].on)
            json_object_set_new(json_array_get(runs, (size_t)i), "console", con_json(&con_runs[i]));
    int rc = json_dump_file(root, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    return rc;
}

/* Execute one run described by r->cfg; fills the rest of *r. */
static void run_one(struct run *r, pid_t gw_pid, bool quiet)
{
    const struct cl_cfg *cfg = &r->cfg;
    int W = cfg->workers;
    size_t len = sizeof(struct shared) + (size_t)W * sizeof(struct cl_slot);
    struct shared *sh = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        report_fail(r, "mmap failed");
        return;
    }
    sh->phase = CL_PHASE_RUN;
    for (int i = 0; i < W; i++)
        cl_slot_init(&sh->slots[i]);
    r->gw_pid = gw_pid;
    r->epoch_s = now_s();
    r->cfg.epoch_us = (uint64_t)(r->epoch_s * 1e6);
    if (!r->cfg.bucket_ms)
        r->cfg.bucket_ms = 100;
    sample(gw_pid, &r->gw_before, &r->have_gw);
    ps_sockstat(&r->sock_before);
    ps_sample_tree(getpid(), &r->self_before);
    if (r->fanout) {
        r->cfg.fan = &sh->fan;
        if (fan_base(r) != 0) {
            munmap(sh, len);
            return;
        }
    }

    fflush(NULL);
    pid_t pids[256] = { 0 };
    pid_t parent = getpid();
    for (int i = 0; i < W; i++) {
        pids[i] = fork();
        if (pids[i] < 0) {
            report_fail(r, "fork failed");
            W = i;
            break;
        }
        if (pids[i] == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(1);
            signal(SIGINT, SIG_IGN);
            _exit(cl_worker_run(cfg, i, &sh->slots[i], &sh->phase));
        }
    }
    double t0 = now_s();
    bool ok = W == cfg->workers;
    if (cfg->pattern == CL_HOLD) {
        /* generous: on a shared machine the achieved rate can be a third of the one asked for */
        double ramp_max = (cfg->rate > 0 ? (double)cfg->sessions / cfg->rate * 3 : (double)cfg->sessions / 300) +
                          cfg->timeout_ms / 1000.0 + 30;
        ok = ok && watch(r, sh, pids, ramp_max, t0, quiet, ramped);
        r->ramp_s = now_s() - t0;
        if (ok && !ramped(sh, W))
            report_fail(r, "ramp did not finish in time"); /* measure what is there all the same */
        sum_slots(sh, W, &r->at_ramp);
        r->ramp_end_s = now_s() - r->epoch_s;
        if (ok) {
            watch(r, sh, pids, r->settle_s, t0, quiet, NULL);
            sample(gw_pid, &r->gw_ramped, &r->have_gw);
            ps_sockstat(&r->sock_ramped);
            ps_sample_tree(getpid(), &r->self_ramped);
            if (cfg->storm && r->at_ramp.c[C_READY] < cfg->sessions) {
                report_fail(r, "not every session was set up: no drop");
                ok = false;
            } else if (cfg->storm) {
                /* every session drops at once; the hold below then runs with the reconnected ones */
                sum_slots(sh, W, &r->at_drop);
                sample(gw_pid, &r->gw_dropped, &r->have_gw);
                double td = now_s();
                r->drop_s = td - r->epoch_s;
                sh->phase = CL_PHASE_DROP;
                ok = watch(r, sh, pids, r->storm_timeout_s, t0, quiet, recovered);
                r->storm_s = now_s() - td;
                r->recovered_s = now_s() - r->epoch_s;
                sum_slots(sh, W, &r->at_recovered);
                sample(gw_pid, &r->gw_recovered, &r->have_gw);
                if (ok && !recovered(sh, W))
                    report_fail(r, "not every device came back within --storm-timeout");
            } else if (r->fanout) {
                sh->phase = CL_PHASE_MEASURE;
                ok = fan_rounds(r, sh, pids, t0, quiet);
                sample(gw_pid, &r->gw_recovered, &r->have_gw); /* the hold's start */
            } else if (cur_con && cur_con->on) {
                sh->phase = CL_PHASE_MEASURE;
                ok = con_measure(r, cur_con, sh, pids, t0, quiet);
            } else {
                sh->phase = CL_PHASE_MEASURE;
            }
            r->hold_start = now_s();
            ok = ok && watch(r, sh, pids, r->hold_s, t0, quiet, NULL);
            r->hold_s = now_s() - r->hold_start;
            sum_slots(sh, W, &r->at_end);
            sample(gw_pid, &r->gw_end, &r->have_gw);
            ps_sockstat(&r->sock_end);
            ps_sample_tree(getpid(), &r->self_end);
        }
    } else {
        ok = ok && watch(r, sh, pids, r->warmup_s, t0, quiet, NULL);
        sum_slots(sh, W, &r->win_start);
        sample(gw_pid, &r->gw_ramped, &r->have_gw);
        ps_sample_tree(getpid(), &r->self_ramped);
        if (ok) {
            ok = watch(r, sh, pids, r->duration_s, t0, quiet, NULL);
            sum_slots(sh, W, &r->win_end);
            sample(gw_pid, &r->gw_end, &r->have_gw);
            ps_sample_tree(getpid(), &r->self_end);
            ps_sockstat(&r->sock_end);
        }
    }
    sh->phase = CL_PHASE_STOP;
    /* workers close every connection and exit; give them a while, then insist */
    double stop_by = now_s() + 30;
    for (;;) {
        if (reap(pids, W, false) > 0)
            report_fail(r, "a worker process died");
        int alive = 0;
        for (int i = 0; i < W; i++)
            alive += pids[i] > 0;
        if (!alive)
            break;
        if (now_s() > stop_by) {
            for (int i = 0; i < W; i++)
                if (pids[i] > 0)
                    kill(pids[i], SIGKILL);
            reap(pids, W, true);
            report_fail(r, "workers did not stop within 30 s");
            break;
        }
        sleep_s(0.02);
    }
    r->total_s = now_s() - t0;
    r->end_s = now_s() - r->epoch_s;
    sum_slots(sh, W, &r->final);
    if (cfg->storm) {
        uint64_t lo = UINT64_MAX, hi = 0, last = 0;
        for (int i = 0; i < W; i++) {
            uint64_t d = sh->slots[i].drop_us, e = sh->slots[i].drop_end_us;
            if (!d)
                continue;
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
            last = e > last ? e : last;
        }
        r->drop_spread_s = hi >= lo ? (double)(hi - lo) / 1e6 : 0;
        r->drop_took_s = last >= lo && hi >= lo ? (double)(last - lo) / 1e6 : 0;
    }
    report_merge_hists(r, sh->slots, W);
    munmap(sh, len);
}

/* ---- options ---- */

struct opts {
    const char *scenario;
    const char *target;
    pid_t gw_pid;
    uint32_t workers, sessions, devices, concurrency, max_pending;
    double rate;
    bool rate_set, sessions_set, concurrency_set, hold_set;
    uint32_t hold_ms, duration_ms, warmup_ms, settle_ms, hb_ms, timeout_ms;
    int backoff;
    uint32_t backoff_unit_ms, storm_timeout_ms, bucket_ms;
    int vsn, deflate, tls_max;
    bool resume, resume_id, strict, no_ext, no_iface, linger0, quiet;
    const char *groups, *server_ca, *sni, *host, *path, *ca_cert, *ca_key, *pool_dir, *json, *label;
    const char *nats, *link_prefix, *fanout;
    uint32_t fan_timeout_ms, fan_grace_ms;
    bool console, nats_set;
    double console_rate;
    uint32_t console_bytes;
};

static int parse_args(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof(*o));
    o->sessions = 1000;
    o->concurrency = 16;
    o->max_pending = 1000;
    o->rate = 2000;
    o->hold_ms = 30000;
    o->duration_ms = 10000;
    o->warmup_ms = 2000;
    o->settle_ms = 2000;
    o->hb_ms = 30000;
    o->timeout_ms = 30000;
    o->backoff = CL_BACKOFF_LINK;
    o->backoff_unit_ms = 1000;
    o->storm_timeout_ms = 300000;
    o->bucket_ms = 100;
    o->vsn = 2;
    o->deflate = 1;
    o->tls_max = TLS1_2_VERSION;
    o->groups = "X25519:P-256";
    o->path = "/socket/websocket";
    o->ca_cert = "build/test-certs/device-ca.pem";
    o->ca_key = "build/test-certs/device-ca.key";
    o->pool_dir = "build/bench-pool";
    o->nats = "nats://127.0.0.1:4222";
    o->link_prefix = "nh";
    o->fanout = "topic,scan";
    o->fan_timeout_ms = 60000;
    o->fan_grace_ms = 2000;
    o->console_rate = 10;
    o->console_bytes = 64;
    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            usage(stdout);
            exit(0);
        }
        usage(stderr);
        return -1;
    }
    o->scenario = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool used = true;
#define FLAG(name, field)                                                                                     \
    if (!strcmp(a, name)) {                                                                                   \
        o->field = true;                                                                                      \
        continue;                                                                                             \
    }
        FLAG("--resume", resume)
        FLAG("--resume-id", resume_id)
        FLAG("--strict", strict)
        FLAG("--no-extensions", no_ext)
        FLAG("--no-iface", no_iface)
        FLAG("--linger0", linger0)
        FLAG("--quiet", quiet)
        FLAG("--console", console)
#undef FLAG
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (!v) {
            fprintf(stderr, "%s: %s needs a value (or is unknown)\n", argv0, a);
            return -1;
        }
        int bad = 0;
        uint32_t u;
        if (!strcmp(a, "--target"))
            o->target = v;
        else if (!strcmp(a, "--gateway-pid"))
            bad = parse_u32(v, &u), o->gw_pid = (pid_t)u;
        else if (!strcmp(a, "--workers"))
            bad = parse_u32(v, &o->workers);
        else if (!strcmp(a, "--sessions"))
            bad = parse_u32(v, &o->sessions), o->sessions_set = true;
        else if (!strcmp(a, "--devices"))
            bad = parse_u32(v, &o->devices);
        else if (!strcmp(a, "--concurrency"))
            bad = parse_u32(v, &o->concurrency), o->concurrency_set = true;
        else if (!strcmp(a, "--max-pending"))
            bad = parse_u32(v, &o->max_pending);
        else if (!strcmp(a, "--rate")) {
            char *end;
            o->rate = strtod(v, &end);
            if (*end == 'k')
                o->rate *= 1000, end++;
            bad = *end || o->rate < 0;
            o->rate_set = true;
        } else if (!strcmp(a, "--hold"))
            bad = parse_duration_ms(v, &o->hold_ms), o->hold_set = true;
        else if (!strcmp(a, "--backoff"))
            o->backoff = !strcmp(v, "link") ? CL_BACKOFF_LINK : !strcmp(v, "none") ? CL_BACKOFF_NONE : (bad = 1);
        else if (!strcmp(a, "--backoff-unit"))
            bad = parse_duration_ms(v, &o->backoff_unit_ms) || o->backoff_unit_ms == 0 ||
                  o->backoff_unit_ms > 60000;
        else if (!strcmp(a, "--storm-timeout"))
            bad = parse_duration_ms(v, &o->storm_timeout_ms);
        else if (!strcmp(a, "--bucket"))
            bad = parse_duration_ms(v, &o->bucket_ms) || o->bucket_ms == 0;
        else if (!strcmp(a, "--duration"))
            bad = parse_duration_ms(v, &o->duration_ms);
        else if (!strcmp(a, "--warmup"))
            bad = parse_duration_ms(v, &o->warmup_ms);
        else if (!strcmp(a, "--settle"))
            bad = parse_duration_ms(v, &o->settle_ms);
        else if (!strcmp(a, "--heartbeat"))
            bad = parse_duration_ms(v, &o->hb_ms);
        else if (!strcmp(a, "--timeout"))
            bad = parse_duration_ms(v, &o->timeout_ms) || o->timeout_ms == 0;
        else if (!strcmp(a, "--vsn"))
            o->vsn = !strcmp(v, "2") || !strcmp(v, "2.0.0") ? 2 : !strcmp(v, "3") || !strcmp(v, "3.0.0") ? 3
                     : !strcmp(v, "mix")                    ? 0
                                                             : (bad = 1);
        else if (!strcmp(a, "--deflate"))
            o->deflate = !strcmp(v, "on") ? 1 : !strcmp(v, "off") ? 0 : !strcmp(v, "mix") ? -1 : (bad = 1);
        else if (!strcmp(a, "--tls"))
            o->tls_max = !strcmp(v, "1.2") ? TLS1_2_VERSION : !strcmp(v, "1.3") ? TLS1_3_VERSION : (bad = 1);
        else if (!strcmp(a, "--groups"))
            o->groups = v;
        else if (!strcmp(a, "--server-ca"))
            o->server_ca = v;
        else if (!strcmp(a, "--sni"))
            o->sni = v;
        else if (!strcmp(a, "--host"))
            o->host = v;
        else if (!strcmp(a, "--path"))
            o->path = v;
        else if (!strcmp(a, "--ca-cert"))
            o->ca_cert = v;
        else if (!strcmp(a, "--ca-key"))
            o->ca_key = v;
        else if (!strcmp(a, "--pool-dir"))
            o->pool_dir = v;
        else if (!strcmp(a, "--json"))
            o->json = v;
        else if (!strcmp(a, "--label"))
            o->label = v;
        else if (!strcmp(a, "--nats"))
            o->nats = v, o->nats_set = true;
        else if (!strcmp(a, "--console-rate")) {
            char *end;
            o->console_rate = strtod(v, &end);
            bad = *end || !(o->console_rate >= 0 && o->console_rate <= 1e6);
        } else if (!strcmp(a, "--console-bytes"))
            bad = parse_u32(v, &o->console_bytes) || o->console_bytes < CO_MIN_BYTES || o->console_bytes > CO_MAX_BYTES;
        else if (!strcmp(a, "--link-prefix"))
            o->link_prefix = v;
        else if (!strcmp(a, "--fanout"))
            o->fanout = v;
        else if (!strcmp(a, "--fanout-timeout"))
            bad = parse_duration_ms(v, &o->fan_timeout_ms) || o->fan_timeout_ms == 0;
        else if (!strcmp(a, "--fanout-grace"))
            bad = parse_duration_ms(v, &o->fan_grace_ms);
        else
            used = false;
        if (!used) {
            fprintf(stderr, "%s: unknown option %s\n", argv0, a);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "%s: bad value for %s: %s\n", argv0, a, v);
            return -1;
        }
        i++;
    }
    if (!o->target && strcmp(o->scenario, "crypto") != 0) {
        fprintf(stderr, "%s: --target HOST:PORT is required\n", argv0);
        return -1;
    }
    return 0;
}

static int parse_target(const char *t, struct sockaddr_in *sa)
{
    const char *colon = strrchr(t, ':');
    if (!colon || colon == t || colon - t > 63)
        return -1;
    char host[64];
    memcpy(host, t, (size_t)(colon - t));
    host[colon - t] = 0;
    if (!strcmp(host, "localhost"))
        strcpy(host, "127.0.0.1");
    uint32_t port;
    if (parse_u32(colon + 1, &port) != 0 || port == 0 || port > 65535)
        return -1;
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static void copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* A run for `scenario` from the options; smoke overrides sizes afterwards. */
static void make_run(struct run *r, const struct opts *o, const char *scenario, const char *pool_path)
{
    memset(r, 0, sizeof(*r));
    copy(r->name, sizeof(r->name), scenario);
    struct cl_cfg *c = &r->cfg;
    bool tls = !strncmp(scenario, "tls-", 4);
    bool storm = !strcmp(scenario, "storm");
    bool fanout = !strcmp(scenario, "fanout");
    bool console = !strcmp(scenario, "console");
    bool hold = strstr(scenario, "hold") != NULL || storm || fanout || console;
    c->mode = tls ? CL_MODE_TLS : CL_MODE_WS;
    c->console = !tls && hold && (console || o->console);
    c->pattern = hold ? CL_HOLD : CL_CYCLE;
    parse_target(o->target, &c->target);
    copy(c->host, sizeof(c->host), o->host ? o->host : o->target);
    copy(c->path, sizeof(c->path), o->path);
    copy(c->sni, sizeof(c->sni), o->sni);
    copy(c->server_ca, sizeof(c->server_ca), o->server_ca);
    copy(c->groups, sizeof(c->groups), o->groups);
    copy(c->pool_path, sizeof(c->pool_path), pool_path);
    c->sessions = hold ? o->sessions : 0;
    c->concurrency = hold ? 0 : o->concurrency;
    c->rate = hold ? (o->rate_set ? o->rate : 2000) : (o->rate_set ? o->rate : 0);
    c->max_pending = o->max_pending;
    c->vsn = o->vsn;
    c->deflate = o->deflate;
    c->hb_interval_ms = o->hb_ms;
    c->timeout_ms = o->timeout_ms;
    c->tls_max = o->tls_max;
    c->resume = o->resume || o->resume_id;
    c->resume_id = o->resume_id;
    c->strict = o->strict;
    c->extensions = !o->no_ext;
    c->report_iface = !o->no_iface;
    c->linger0 = o->linger0;
    c->storm = storm;
    c->backoff = o->backoff;
    c->backoff_unit_ms = o->backoff_unit_ms;
    c->bucket_ms = o->bucket_ms;
    if (o->workers)
        c->workers = (int)o->workers;
    else if (hold)
        c->workers = (int)((o->sessions + FD_PER_WORKER - 1) / FD_PER_WORKER);
    else
        c->workers = 1;
    if (c->workers < 1)
        c->workers = 1;
    if (c->workers > 256)
        c->workers = 256;
    uint32_t dflt = hold ? o->sessions : (c->concurrency ? 4 * c->concurrency : 1000);
    c->devices = o->devices ? o->devices : dflt;
    if (hold && c->devices < c->sessions)
        c->devices = c->sessions;
    if (c->devices < (uint32_t)c->workers)
        c->devices = (uint32_t)c->workers;
    r->hold_s = ((storm || fanout || console) && !o->hold_set ? (storm ? 5000 : 1000) : o->hold_ms) / 1000.0;
    if (fanout || console) {
        copy(r->nats_url, sizeof(r->nats_url), o->nats);
        copy(r->link_prefix, sizeof(r->link_prefix), o->link_prefix);
    }
    if (fanout) {
        r->fanout = true;
        copy(r->nats_url, sizeof(r->nats_url), o->nats);
        copy(r->link_prefix, sizeof(r->link_prefix), o->link_prefix);
        copy(r->fan_paths, sizeof(r->fan_paths), o->fanout);
        r->fan_timeout_s = o->fan_timeout_ms / 1000.0;
        r->fan_grace_s = o->fan_grace_ms / 1000.0;
        char list[96];
        copy(list, sizeof(list), o->fanout);
        char *save = NULL;
        for (char *tok = strtok_r(list, ",", &save); tok && r->n_fan < CL_FAN_MAX; tok = strtok_r(NULL, ",", &save))
            copy(r->fan[r->n_fan++].path, sizeof(r->fan[0].path), tok);
    }
    r->storm_timeout_s = o->storm_timeout_ms / 1000.0;
    r->duration_s = o->duration_ms / 1000.0;
    r->warmup_s = o->warmup_ms / 1000.0;
    r->settle_s = o->settle_ms / 1000.0;
    copy(r->label, sizeof(r->label), o->label);
}

/* Check a run's outcome against what every scenario requires. */
static void judge(struct run *r, bool smoke)
{
    const struct cl_cfg *c = &r->cfg;
    const struct bench_counts *f = &r->final;
    char m[160];
    /* a storm's reconnects meet timeouts and refusals by design: only errors before the drop count,
     * and afterwards only those that mean a protocol violation rather than load (smoke: any) */
    bool dropped = c->storm && r->drop_s > 0;
    uint64_t errs = errors_total(dropped ? &r->at_drop : f);
    if (errs) {
        snprintf(m, sizeof(m), "%llu errors%s", (unsigned long long)errs, dropped ? " before the drop" : "");
        report_fail(r, m);
    }
    if (dropped) {
        static const enum cl_error protocol[] = { E_HTTP_BAD, E_PMD, E_WS_PROTOCOL, E_INFLATE, E_FRAME_TYPE,
                                                  E_PHX_DECODE, E_BAD_REPLY, E_STRICT, E_JOIN_REFUSED };
        uint64_t after = errors_total(f) - errs, bad = 0;
        for (size_t i = 0; i < ARRAY_SIZE(protocol); i++)
            bad += f->e[protocol[i]] - r->at_drop.e[protocol[i]];
        if (bad || (smoke && after)) {
            snprintf(m, sizeof(m), "%llu errors after the drop", (unsigned long long)(smoke ? after : bad));
            report_fail(r, m);
        }
        uint64_t back = r->at_recovered.c[C_RECOVERED];
        if (back != c->sessions) {
            snprintf(m, sizeof(m), "%llu of %u devices back and joined within %.0f s", (unsigned long long)back,
                     c->sessions, r->storm_timeout_s);
            report_fail(r, m);
        }
        if (smoke && r->at_end.c[C_ACTIVE] != c->sessions) {
            snprintf(m, sizeof(m), "%llu of %u sessions open at the end", (unsigned long long)r->at_end.c[C_ACTIVE],
                     c->sessions);
            report_fail(r, m);
        }
        uint64_t hb_after = f->c[C_HB_SESSIONS] - r->at_drop.c[C_HB_SESSIONS];
        if (smoke && hb_after < c->sessions) {
            snprintf(m, sizeof(m), "%llu of %u reconnected sessions had a heartbeat answered",
                     (unsigned long long)hb_after, c->sessions);
            report_fail(r, m);
        }
        if (smoke && c->resume && f->c[C_TLS_RESUMED] == r->at_drop.c[C_TLS_RESUMED])
            report_fail(r, "no reconnect resumed its TLS session");
    }
    for (int i = 0; i < r->n_fan; i++) {
        const struct fan_round *fr = &r->fan[i];
        if (fr->error[0])
            continue; /* already a failure */
        if (fr->first < fr->expected) {
            snprintf(m, sizeof(m), "round %d (%s): %llu of %llu devices did not receive the update", i + 1, fr->path,
                     (unsigned long long)(fr->expected - fr->first), (unsigned long long)fr->expected);
            report_fail(r, m);
        }
        if (fr->dup_devs) {
            snprintf(m, sizeof(m), "round %d (%s): %llu devices received the update more than once (%llu copies)", i + 1,
                     fr->path, (unsigned long long)fr->dup_devs, (unsigned long long)fr->dup);
            report_fail(r, m);
        }
        if (fr->stale) {
            snprintf(m, sizeof(m), "round %d (%s): %llu updates with another firmware arrived", i + 1, fr->path,
                     (unsigned long long)fr->stale);
            report_fail(r, m);
        }
        if (!strcmp(fr->path, "topic") && strcmp(fr->reply_path, "topic") != 0) {
            snprintf(m, sizeof(m), "round %d: the platform fanned out by %s, not by topic", i + 1, fr->reply_path);
            report_fail(r, m);
        }
    }
    if (c->pattern == CL_HOLD) {
        if (r->at_ramp.c[C_READY] != c->sessions) {
            snprintf(m, sizeof(m), "%llu of %u sessions ready", (unsigned long long)r->at_ramp.c[C_READY],
                     c->sessions);
            report_fail(r, m);
        }
        const struct bench_counts *j = c->storm && !smoke ? &r->at_ramp : f;
        if (c->mode == CL_MODE_WS && c->extensions && j->c[C_EXT_JOINED] != j->c[C_JOINED])
            report_fail(r, "not every session joined extensions");
        if (smoke && !c->storm && c->mode == CL_MODE_WS && f->c[C_HB_SESSIONS] != c->sessions) {
            snprintf(m, sizeof(m), "%llu of %u sessions had a heartbeat answered",
                     (unsigned long long)f->c[C_HB_SESSIONS], c->sessions);
            report_fail(r, m);
        }
        if (smoke && c->mode == CL_MODE_WS && c->deflate && f->c[C_PMD] == 0)
            report_fail(r, "permessage-deflate was never negotiated");
    } else {
        if (f->c[C_CYCLES] == 0)
            report_fail(r, "no handshake completed");
        if (c->resume && f->c[C_TLS_RESUMED] == 0)
            report_fail(r, "no session was resumed");
        if (c->tls_max == TLS1_3_VERSION && smoke && f->c[C_TLS13] == 0)
            report_fail(r, "TLS 1.3 was never negotiated");
    }
}

static int run_smoke(const struct opts *o, const char *pool_path, struct run *runs, int *n_runs, pid_t gw)
{
    /* every scenario briefly, strict, each with its own devices and source addresses */
    uint32_t S = o->sessions_set ? o->sessions : 200;
    uint32_t base = 0;
    int n = 0;
    struct run *r;

    r = &runs[n++];
    make_run(r, o, "hold", pool_path);
    r->cfg.sessions = S;
    r->cfg.devices = S;
    r->cfg.vsn = 0;     /* alternate JSON and msgpack */
    r->cfg.deflate = -1; /* and with / without permessage-deflate */
    r->cfg.hb_interval_ms = o->hb_ms < 30000 ? o->hb_ms : 1000;
    r->cfg.rate = o->rate_set ? o->rate : 1000;
    r->cfg.workers = S > 100 ? 2 : 1;
    r->hold_s = 2.5 * r->cfg.hb_interval_ms / 1000.0;
    r->settle_s = 0.5;
    r->cfg.console = true; /* and `console`: its join reply checked byte for byte */
    r->cfg.device_base = base;
    base += r->cfg.devices;

    /* a storm: every session dropped at once and back with link's backoff (1-1.5 s), resuming its
     * TLS session, then heartbeats on the new connections */
    r = &runs[n++];
    make_run(r, o, "storm", pool_path);
    r->cfg.sessions = S;
    r->cfg.devices = S;
    r->cfg.vsn = 0;
    r->cfg.deflate = -1;
    r->cfg.resume = true;
    r->cfg.hb_interval_ms = o->hb_ms < 30000 ? o->hb_ms : 1000;
    r->cfg.rate = o->rate_set ? o->rate : 1000;
    r->cfg.workers = S > 100 ? 2 : 1;
    r->hold_s = 2.5 * r->cfg.hb_interval_ms / 1000.0;
    r->settle_s = 0.2;
    r->storm_timeout_s = 30;
    r->cfg.device_base = base;
    base += r->cfg.devices;

    r = &runs[n++];
    make_run(r, o, "tls-hold", pool_path);
    r->cfg.sessions = S < 50 ? S : 50;
    r->cfg.devices = r->cfg.sessions;
    r->cfg.rate = 1000;
    r->cfg.workers = 1;
    r->hold_s = 1;
    r->settle_s = 0.2;
    r->cfg.device_base = base;
    base += r->cfg.devices;

    static const struct {
        const char *name;
        bool resume;
        int tls;
        int vsn;
    } cyc[] = {
        { "handshake", false, TLS1_2_VERSION, 2 },
        { "handshake", true, TLS1_2_VERSION, 3 },
        { "tls-handshake", false, TLS1_2_VERSION, 2 },
        { "tls-handshake", false, TLS1_3_VERSION, 2 }, /* BoringSSL sends 1.3 tickets with the first write */
        { "handshake", true, TLS1_3_VERSION, 3 },      /* ... so they arrive with the 101 */
    };
    for (size_t i = 0; i < ARRAY_SIZE(cyc); i++) {
        r = &runs[n++];
        make_run(r, o, cyc[i].name, pool_path);
        r->cfg.concurrency = 4;
        r->cfg.devices = 8;
        r->cfg.rate = 0;
        r->cfg.workers = 1;
        r->cfg.resume = cyc[i].resume;
        r->cfg.tls_max = cyc[i].tls;
        r->cfg.vsn = cyc[i].vsn;
        r->warmup_s = 0.3;
        r->duration_s = 1.5;
        r->cfg.device_base = base;
        base += r->cfg.devices;
    }
    if (o->nats_set) {
        /* the console round trip through NATS (the stack's: `--nats`), open loop, briefly */
        r = &runs[n++];
        make_run(r, o, "console", pool_path);
        r->cfg.sessions = S < 50 ? S : 50;
        r->cfg.devices = r->cfg.sessions;
        r->cfg.vsn = 0;
        r->cfg.deflate = -1;
        r->cfg.rate = 1000;
        r->cfg.workers = 1;
        r->cfg.hb_interval_ms = o->hb_ms < 30000 ? o->hb_ms : 1000; /* smoke wants every session heartbeating */
        r->settle_s = 0.2;
        r->warmup_s = 0.5;
        r->duration_s = 1.5;
        r->hold_s = 0.5;
        r->cfg.device_base = base;
        base += r->cfg.devices;
    }
    for (int i = 0; i < n; i++) {
        runs[i].cfg.strict = true;
        runs[i].cfg.src_base = (uint32_t)i * 4000000u;
    }
    *n_runs = n;
    (void)gw;
    return (int)base;
}

/* The `crypto` scenario: reference timings, printed and optionally written as JSON. */
static int run_crypto(const struct opts *o)
{
    struct cref c;
    if (cref_measure(4.0, &c) != 0) {
        fprintf(stderr, "%s: crypto measurement failed\n", argv0);
        return 1;
    }
    printf("nhbench crypto (BoringSSL, one core, CPU time):\n"
           "  ECDSA P-256 sign %.1f us, verify %.1f us; X25519 keygen+derive %.1f us; P-256 ECDH keygen+derive %.1f us\n"
           "  server side of a full mTLS handshake (ECDHE + 1 sign + 2 verify):\n"
           "    X25519: %.0f us -> %.0f per core-second; P-256: %.0f us -> %.0f per core-second\n",
           c.sign_us, c.verify_us, c.x25519_us, c.p256_ecdh_us, c.server_x25519_us, 1e6 / c.server_x25519_us,
           c.server_p256_us, 1e6 / c.server_p256_us);
    if (o->json) {
        FILE *f = fopen(o->json, "w");
        if (!f)
            return 1;
        fprintf(f,
                "{\n  \"tool\": \"nhbench\",\n  \"scenario\": \"crypto\",\n  \"pass\": true,\n"
                "  \"sign_us\": %.2f,\n  \"verify_us\": %.2f,\n  \"x25519_us\": %.2f,\n  \"p256_ecdh_us\": %.2f,\n"
                "  \"server_handshake_x25519_us\": %.2f,\n  \"server_handshake_p256_us\": %.2f,\n"
                "  \"bound_per_core_s_x25519\": %.0f,\n  \"bound_per_core_s_p256\": %.0f\n}\n",
                c.sign_us, c.verify_us, c.x25519_us, c.p256_ecdh_us, c.server_x25519_us, c.server_p256_us,
                1e6 / c.server_x25519_us, 1e6 / c.server_p256_us);
        fclose(f);
    }
    return 0;
}

int main(int argc, char **argv)
{
    argv0 = argv[0];
    struct opts o;
    if (parse_args(argc, argv, &o) != 0)
        return 2;
    if (!strcmp(o.scenario, "crypto"))
        return run_crypto(&o);
    struct sockaddr_in sa;
    if (parse_target(o.target, &sa) != 0) {
        fprintf(stderr, "%s: --target must be IPv4:PORT, got %s\n", argv0, o.target);
        return 2;
    }
    static const char *const known[] = { "hold",   "handshake", "tls-hold", "tls-handshake",
                                         "storm",  "fanout",    "console",  "smoke" };
    bool ok_name = false;
    for (size_t i = 0; i < ARRAY_SIZE(known); i++)
        ok_name = ok_name || !strcmp(o.scenario, known[i]);
    if (!ok_name) {
        fprintf(stderr, "%s: unknown scenario %s\n", argv0, o.scenario);
        return 2;
    }
    if (!strcmp(o.scenario, "fanout")) {
        /* topic,scan,...: 1 to CL_FAN_MAX known paths, no empty element */
        int n = 0, scans = 0;
        bool good = strlen(o.fanout) < 96;
        for (const char *p = o.fanout; good && *p; n++) {
            size_t l = strcspn(p, ",");
            good = (l == 4 && !strncmp(p, "scan", 4)) || (l == 5 && !strncmp(p, "topic", 5));
            scans += l == 4;
            p += l;
            if (*p == ',' && !*++p)
                good = false;
        }
        if (!good || n == 0 || n > CL_FAN_MAX) {
            fprintf(stderr, "%s: --fanout takes 1 to %d of topic,scan separated by commas, got %s\n", argv0, CL_FAN_MAX,
                    o.fanout);
            return 2;
        }
        /* a scan push files an in-flight update per device that only the device's status report
         * clears (ops/README.md); simulated devices never report, so a second scan pushes nothing */
        if (scans > 1) {
            fprintf(stderr, "%s: --fanout: at most one scan per run (the first leaves an in-flight update on every"
                            " device, so the platform rightly pushes nothing on a second one)\n", argv0);
            return 2;
        }
    }
    signal(SIGINT, on_sigint);
    signal(SIGPIPE, SIG_IGN);

    static struct run runs[REPORT_MAX_RUNS];
    int n_runs = 0;
    char pool_path[512], err[512];
    uint32_t need;
    bool smoke = !strcmp(o.scenario, "smoke");
    if (smoke) {
        need = (uint32_t)run_smoke(&o, "", runs, &n_runs, o.gw_pid);
    } else {
        make_run(&runs[0], &o, o.scenario, "");
        n_runs = 1;
        need = runs[0].cfg.devices;
    }
    if (pool_ensure(o.pool_dir, o.ca_cert, o.ca_key, need, 2, pool_path, sizeof(pool_path), err, sizeof(err)) !=
        0) {
        fprintf(stderr, "%s: device pool: %s\n", argv0, err);
        return 2;
    }
    for (int i = 0; i < n_runs; i++) {
        copy(runs[i].cfg.pool_path, sizeof(runs[i].cfg.pool_path), pool_path);
        if (!strcmp(runs[i].name, "console"))
            con_runs[i] = (struct con_run){ .on = true, .rate = o.console_rate, .bytes = o.console_bytes };
    }

    bool pass = true;
    for (int i = 0; i < n_runs; i++) {
        struct run *r = &runs[i];
        if (!o.quiet)
            fprintf(stderr, "nhbench: %s run %d/%d: %s\n", o.scenario, i + 1, n_runs, report_describe(r));
        cur_con = &con_runs[i];
        run_one(r, o.gw_pid, o.quiet);
        cur_con = NULL;
        judge(r, smoke);
        con_judge(r, &con_runs[i]);
        report_print(stdout, r);
        con_print(stdout, r, &con_runs[i]);
        pass = pass && r->n_fail == 0;
        fflush(stdout);
        if (interrupted)
            break;
    }
    if (smoke)
        printf("smoke: %s (%d runs)\n", pass ? "PASS" : "FAIL", n_runs);
    if (o.json && (report_write_json(o.json, o.scenario, runs, n_runs, pass, smoke, argc, argv) != 0 ||
                   con_add_json(o.json, n_runs) != 0)) {
        fprintf(stderr, "%s: cannot write %s\n", argv0, o.json);
        return 1;
    }
    return pass ? 0 : 1;
}
