/* nhbench summaries and JSON (see report.h). */
#include "report.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/ssl.h>

static const char *const hist_names[H_COUNT] = { "connect", "tls", "upgrade", "join", "extensions_join", "setup",
                                                 "heartbeat", "heartbeat_hold", "cycle", "recover" };

void report_fail(struct run *r, const char *why)
{
    for (int i = 0; i < r->n_fail && i < REPORT_MAX_FAIL; i++)
        if (!strcmp(r->fail[i], why))
            return;
    if (r->n_fail < REPORT_MAX_FAIL)
        snprintf(r->fail[r->n_fail], sizeof(r->fail[0]), "%s", why);
    r->n_fail++;
}

static uint64_t delta(const struct bench_counts *a, const struct bench_counts *b, int k)
{
    return b->c[k] - a->c[k];
}

static double window_s(const struct run *r)
{
    double w = r->self_end.t - r->self_ramped.t;
    return w > 0 ? w : r->duration_s;
}

void report_merge_hists(struct run *r, const struct cl_slot *slots, int n)
{
    for (int k = 0; k < H_COUNT; k++)
        hist_init(&r->h[k]);
    for (int k = 0; k < CL_FAN_MAX; k++)
        hist_init(&r->fan[k].h);
    memset(&r->tl, 0, sizeof(r->tl));
    for (int i = 0; i < n; i++) {
        const struct cl_slot *s = &slots[i];
        hist_merge(&r->h[H_CONNECT], &s->h_connect);
        hist_merge(&r->h[H_TLS], &s->h_tls);
        hist_merge(&r->h[H_UPGRADE], &s->h_upgrade);
        hist_merge(&r->h[H_JOIN], &s->h_join);
        hist_merge(&r->h[H_EXT_JOIN], &s->h_ext_join);
        hist_merge(&r->h[H_SETUP], &s->h_setup);
        hist_merge(&r->h[H_HB], &s->h_hb);
        hist_merge(&r->h[H_HB_HOLD], &s->h_hb_hold);
        hist_merge(&r->h[H_CYCLE], &s->h_cycle);
        hist_merge(&r->h[H_RECOVER], &s->h_recover);
        tl_merge(&r->tl, &s->tl);
        for (int k = 0; k < r->n_fan && k < CL_FAN_MAX; k++)
            hist_merge(&r->fan[k].h, &s->h_fan[k]);
        for (int k = 0; k < E_COUNT; k++)
            if (!r->sample[k][0] && s->sample[k][0])
                memcpy(r->sample[k], s->sample[k], CL_SAMPLE_LEN);
    }
    r->h_cycle_corrected = r->h[H_CYCLE];
    r->co_interval_us = 0;
    if (r->cfg.pattern == CL_CYCLE && r->cfg.concurrency > 0) {
        /* wrk: each connection should have completed a request every runtime / (requests / connections) */
        uint64_t done = r->final.c[C_CYCLES];
        double per_conn = (double)done / r->cfg.concurrency;
        if (per_conn >= 1) {
            r->co_interval_us = (uint64_t)(r->total_s * 1e6 / per_conn);
            hist_correct(&r->h_cycle_corrected, r->co_interval_us);
        }
    }
}

static const char *vsn_name(int v)
{
    return v == 2 ? "2.0.0" : v == 3 ? "3.0.0" : "mix";
}

static const char *deflate_name(int d)
{
    return d > 0 ? "on" : d == 0 ? "off" : "mix";
}

const char *report_describe(const struct run *r)
{
    static char b[320];
    const struct cl_cfg *c = &r->cfg;
    if (c->pattern == CL_HOLD)
        snprintf(b, sizeof(b), "%u sessions at %.0f/s, %d workers, %s%s%s, TLS %s, heartbeat %u ms, hold %.1f s",
                 c->sessions, c->rate, c->workers, c->mode == CL_MODE_TLS ? "TLS only" : "vsn ",
                 c->mode == CL_MODE_TLS ? "" : vsn_name(c->vsn),
                 c->mode == CL_MODE_TLS ? "" : (c->deflate > 0 ? " deflate" : c->deflate < 0 ? " deflate mix" : ""),
                 c->tls_max == TLS1_3_VERSION ? "<=1.3" : "1.2", c->hb_interval_ms, r->hold_s);
    else
        snprintf(b, sizeof(b), "%s %u, %d workers, %u devices, %s%s, TLS %s%s, %.1f s (+%.1f s warm-up)",
                 c->concurrency ? "concurrency" : "open loop, rate", c->concurrency ? c->concurrency : (uint32_t)c->rate,
                 c->workers, c->devices, c->mode == CL_MODE_TLS ? "TLS only" : "upgrade vsn ",
                 c->mode == CL_MODE_TLS ? "" : vsn_name(c->vsn), c->tls_max == TLS1_3_VERSION ? "<=1.3" : "1.2",
                 c->resume_id ? ", resumption by session ID" : c->resume ? ", resumption" : "", r->duration_s,
                 r->warmup_s);
    return b;
}

/* Cores busy between times a and b (seconds from the epoch) from the once-a-second samples: the
 * gateway, nhbench, and everything the machine did. Returns false without two samples in between. */
static bool series_cores(const struct run *r, double a, double b, double *gw, double *self, double *busy)
{
    const struct series_point *p = NULL, *q = NULL;
    for (uint32_t i = 0; i < r->n_series; i++) {
        if (!p && r->series[i].t >= a)
            p = &r->series[i];
        if (r->series[i].t <= b)
            q = &r->series[i];
    }
    if (!p || !q || q->t <= p->t || q->sys_all <= p->sys_all)
        return false;
    double tick = ps_tick_seconds(), w = q->t - p->t;
    *gw = (double)(q->cpu_ticks - p->cpu_ticks) * tick / w;
    *self = (double)(q->self_ticks - p->self_ticks) * tick / w;
    *busy = (double)(q->sys_busy - p->sys_busy) * tick / w;
    return true;
}

/* Storm figures derived from the snapshots around the drop. */
struct storm_fig {
    uint64_t back, attempts, tls, full, resumed, errors;
    double gw_cpu_s, gw_cores, peak_tls_per_s, peak_ready_per_s;
    double m_gw, m_self, m_busy; /* cores busy while devices came back (series_cores) */
    bool all_back, have_m;
};

static void storm_figures(const struct run *r, struct storm_fig *s)
{
    const struct bench_counts *a = &r->at_drop, *b = &r->at_recovered;
    memset(s, 0, sizeof(*s));
    s->back = b->c[C_RECOVERED];
    s->all_back = s->back == r->cfg.sessions;
    s->attempts = b->c[C_RECONNECTS];
    s->tls = b->c[C_TLS] - a->c[C_TLS];
    s->full = b->c[C_TLS_FULL] - a->c[C_TLS_FULL];
    s->resumed = b->c[C_TLS_RESUMED] - a->c[C_TLS_RESUMED];
    for (int k = 0; k < E_COUNT; k++)
        s->errors += b->e[k] - a->e[k];
    if (r->have_gw) {
        s->gw_cpu_s = (double)(r->gw_recovered.cpu_ticks - r->gw_dropped.cpu_ticks) * ps_tick_seconds();
        s->gw_cores = r->storm_s > 0 ? s->gw_cpu_s / r->storm_s : 0;
    }
    s->have_m = series_cores(r, r->drop_s, r->recovered_s, &s->m_gw, &s->m_self, &s->m_busy);
    /* peak rates over one-second windows of the timeline, from the drop on */
    double bucket_s = r->cfg.bucket_ms / 1000.0;
    uint32_t per_s = r->cfg.bucket_ms >= 1000 ? 1 : 1000 / r->cfg.bucket_ms;
    uint32_t from = (uint32_t)(r->drop_s / bucket_s), to = tl_used(&r->tl);
    for (uint32_t i = from; i + per_s <= to; i++) {
        uint64_t t = 0, j = 0;
        for (uint32_t k = i; k < i + per_s; k++)
            t += r->tl.n[k][TL_TLS], j += r->tl.n[k][TL_READY];
        double w = per_s * bucket_s;
        if (t / w > s->peak_tls_per_s)
            s->peak_tls_per_s = t / w;
        if (j / w > s->peak_ready_per_s)
            s->peak_ready_per_s = j / w;
    }
}

static void print_hist(FILE *f, const char *name, const struct hist *h)
{
    if (h->count == 0)
        return;
    fprintf(f, "    %-18s %9llu %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f\n", name, (unsigned long long)h->count,
            hist_mean(h) / 1000, hist_percentile(h, 50) / 1000.0, hist_percentile(h, 90) / 1000.0,
            hist_percentile(h, 99) / 1000.0, hist_percentile(h, 99.9) / 1000.0, h->max / 1000.0);
}

static double kib(uint64_t kib_a, uint64_t kib_b)
{
    return (double)((int64_t)kib_b - (int64_t)kib_a);
}

void report_print(FILE *f, const struct run *r)
{
    const struct cl_cfg *c = &r->cfg;
    const struct bench_counts *fin = &r->final;
    double tick = ps_tick_seconds();
    fprintf(f, "\nnhbench %s -> %s: %s\n", r->name, c->host, report_describe(r));
    if (r->label[0])
        fprintf(f, "  label: %s\n", r->label);
    if (c->pattern == CL_HOLD) {
        uint64_t ready = r->at_ramp.c[C_READY], tls = r->at_ramp.c[C_TLS];
        fprintf(f, "  sessions   : %llu/%u ready in %.2f s (%.0f/s set-up, %.0f TLS handshakes/s); %llu active at the end\n",
                (unsigned long long)ready, c->sessions, r->ramp_s, r->ramp_s > 0 ? ready / r->ramp_s : 0,
                r->ramp_s > 0 ? tls / r->ramp_s : 0, (unsigned long long)r->at_end.c[C_ACTIVE]);
        fprintf(f, "  handshakes : %llu full, %llu resumed, %llu TLS 1.3; deflate negotiated on %llu\n",
                (unsigned long long)fin->c[C_TLS_FULL], (unsigned long long)fin->c[C_TLS_RESUMED],
                (unsigned long long)fin->c[C_TLS13], (unsigned long long)fin->c[C_PMD]);
        if (c->mode == CL_MODE_WS)
            fprintf(f, "  channels   : device %llu, extensions %llu; heartbeats %llu sent, %llu ok; %llu sessions answered; %llu pushes\n",
                    (unsigned long long)fin->c[C_JOINED], (unsigned long long)fin->c[C_EXT_JOINED],
                    (unsigned long long)fin->c[C_HB_SENT], (unsigned long long)fin->c[C_HB_OK],
                    (unsigned long long)fin->c[C_HB_SESSIONS], (unsigned long long)fin->c[C_PUSHES]);
        uint64_t n = r->at_ramp.c[C_ACTIVE];
        if (r->have_gw && n) {
            double d = kib(r->gw_before.rss_kib, r->gw_ramped.rss_kib), a = kib(r->gw_before.anon_kib, r->gw_ramped.anon_kib);
            double d2 = kib(r->gw_before.rss_kib, r->gw_end.rss_kib), a2 = kib(r->gw_before.anon_kib, r->gw_end.anon_kib);
            fprintf(f, "  gateway    : %d processes; RSS %.1f -> %.1f MiB: +%.1f MiB = %.2f KiB/session (anon %.2f KiB/session)\n",
                    r->gw_ramped.procs, r->gw_before.rss_kib / 1024.0, r->gw_ramped.rss_kib / 1024.0, d / 1024, d / n, a / n);
            fprintf(f, "               end of hold: +%.1f MiB = %.2f KiB/session (anon %.2f KiB/session)\n", d2 / 1024,
                    d2 / n, a2 / n);
            double ramp_cpu = (double)(r->gw_ramped.cpu_ticks - r->gw_before.cpu_ticks) * tick;
            const struct ps_sample *hs = (c->storm && r->drop_s > 0) || r->fanout ? &r->gw_recovered : &r->gw_ramped;
            double hold_cpu = (double)(r->gw_end.cpu_ticks - hs->cpu_ticks) * tick;
            fprintf(f, "               CPU %.2f s over the ramp (%.0f handshakes per CPU second), %.3f cores while holding\n",
                    ramp_cpu, ramp_cpu > 0 ? tls / ramp_cpu : 0, r->hold_s > 0 ? hold_cpu / r->hold_s : 0);
        }
        if (n) {
            double km = ((double)r->sock_ramped.tcp_mem_pages - (double)r->sock_before.tcp_mem_pages) * 4.0;
            double slab = kib(r->sock_before.slab_kib, r->sock_ramped.slab_kib);
            fprintf(f, "  kernel     : TCP buffers %+.1f MiB = %.2f KiB/session; slab %+.1f MiB = %.2f KiB/session"
                       " (both ends on loopback, system-wide); sockets %llu -> %llu\n",
                    km / 1024, km / n, slab / 1024, slab / n, (unsigned long long)r->sock_before.tcp_inuse,
                    (unsigned long long)r->sock_ramped.tcp_inuse);
            double s = kib(r->self_before.rss_kib, r->self_ramped.rss_kib);
            fprintf(f, "  nhbench    : %d processes, RSS +%.1f MiB = %.2f KiB/session\n", r->self_ramped.procs, s / 1024,
                    s / n);
        }
        if (c->storm && r->drop_s <= 0) {
            fprintf(f, "  storm      : no drop (the ramp did not set up every session)\n");
        } else if (c->storm) {
            struct storm_fig s;
            storm_figures(r, &s);
            const struct hist *h = &r->h[H_RECOVER];
            fprintf(f, "  storm      : dropped %llu sessions at %.1f s (%s; workers began within %.0f ms, the last closed"
                       " %.2f s after the first began), %s backoff%s\n",
                    (unsigned long long)r->at_drop.c[C_ACTIVE], r->drop_s, c->linger0 ? "RST" : "close_notify + FIN",
                    r->drop_spread_s * 1000, r->drop_took_s, c->backoff == CL_BACKOFF_LINK ? "link" : "no",
                    c->backoff == CL_BACKOFF_LINK && c->backoff_unit_ms != 1000 ? " (scaled)" : "");
            fprintf(f, "               %llu/%u back and joined %s %.2f s after the drop; p50 %.2f s, p90 %.2f s, p99 %.2f s\n",
                    (unsigned long long)s.back, c->sessions, s.all_back ? "ALL within" : "when giving up at",
                    s.all_back ? h->max / 1e6 : r->storm_s, hist_percentile(h, 50) / 1e6, hist_percentile(h, 90) / 1e6,
                    hist_percentile(h, 99) / 1e6);
            fprintf(f, "               %llu attempts (%.2f per device), %llu TLS handshakes (%llu full, %llu resumed), %llu errors;"
                       " peak %.0f handshakes/s, %.0f joins/s\n",
                    (unsigned long long)s.attempts, c->sessions ? (double)s.attempts / c->sessions : 0,
                    (unsigned long long)s.tls, (unsigned long long)s.full, (unsigned long long)s.resumed,
                    (unsigned long long)s.errors, s.peak_tls_per_s, s.peak_ready_per_s);
            if (r->have_gw)
                fprintf(f, "               gateway %.1f CPU s = %.2f cores until all back: %.0f handshakes per gateway CPU second\n",
                        s.gw_cpu_s, s.gw_cores, s.gw_cpu_s > 0 ? s.tls / s.gw_cpu_s : 0);
            if (s.have_m)
                fprintf(f, "               machine meanwhile: %.2f cores busy = gateway %.2f + nhbench %.2f + other processes %.2f\n",
                        s.m_busy, s.m_gw, s.m_self, s.m_busy - s.m_gw - s.m_self);
        }
        if (r->fanout) {
            fprintf(f, "  fanout     : operator API on %s (prefix %s), base deployment %lld (the devices' own firmware)\n",
                    r->nats_url, r->link_prefix, (long long)r->fan_base_deployment);
            for (int i = 0; i < r->n_fan; i++) {
                const struct fan_round *fr = &r->fan[i];
                const struct hist *h = &fr->h;
                fprintf(f, "    round %d %-5s deployment %lld fw %s: %s%s\n", i + 1, fr->path, (long long)fr->deployment,
                        fr->uuid, fr->error[0] ? "REQUEST FAILED: " : "", fr->error);
                fprintf(f, "      %llu/%llu devices got it (%s), exactly once %llu, duplicates %llu on %llu devices,"
                           " missing %llu, other firmware %llu; %llu open after\n",
                        (unsigned long long)fr->first, (unsigned long long)fr->expected,
                        fr->complete ? "complete" : "INCOMPLETE", (unsigned long long)(fr->first - fr->dup_devs),
                        (unsigned long long)fr->dup, (unsigned long long)fr->dup_devs,
                        (unsigned long long)(fr->expected > fr->first ? fr->expected - fr->first : 0),
                        (unsigned long long)fr->stale, (unsigned long long)fr->open_after);
                fprintf(f, "      from the request: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, last %.1f ms; API reply after"
                           " %.1f ms%s; gateway %.2f CPU s over %.1f s\n",
                        hist_percentile(h, 50) / 1e3, hist_percentile(h, 90) / 1e3, hist_percentile(h, 99) / 1e3,
                        h->max / 1e3, fr->api_ms, !strcmp(fr->path, "scan") ? "" : " (before any delivery is possible)",
                        fr->gw_cpu_s, fr->waited_s);
                if (!strcmp(fr->path, "scan"))
                    fprintf(f, "      platform: matched %lld, pushed %lld\n", (long long)fr->matched, (long long)fr->pushed);
            }
        }
    } else {
        double w = window_s(r);
        uint64_t cy = delta(&r->win_start, &r->win_end, C_CYCLES), full = delta(&r->win_start, &r->win_end, C_TLS_FULL),
                 res = delta(&r->win_start, &r->win_end, C_TLS_RESUMED);
        fprintf(f, "  window     : %.2f s: %llu %s (%.0f/s): %llu full, %llu resumed\n", w, (unsigned long long)cy,
                c->mode == CL_MODE_TLS ? "TLS handshakes" : "handshakes + upgrades", w > 0 ? cy / w : 0,
                (unsigned long long)full, (unsigned long long)res);
        if (r->have_gw) {
            double cpu = (double)(r->gw_end.cpu_ticks - r->gw_ramped.cpu_ticks) * tick;
            fprintf(f, "  gateway    : %.2f CPU s = %.2f cores busy -> %.0f per gateway core-second (%d processes)\n", cpu,
                    w > 0 ? cpu / w : 0, cpu > 0 ? cy / cpu : 0, r->gw_end.procs);
        }
        double scpu = (double)(r->self_end.cpu_ticks - r->self_ramped.cpu_ticks) * tick;
        fprintf(f, "  nhbench    : %.2f CPU s = %.2f cores; total over the run %llu cycles, %llu TLS 1.3\n", scpu,
                w > 0 ? scpu / w : 0, (unsigned long long)fin->c[C_CYCLES], (unsigned long long)fin->c[C_TLS13]);
    }
    fprintf(f, "  latency (ms)           count      mean       p50       p90       p99     p99.9       max\n");
    for (int k = 0; k < H_COUNT; k++)
        print_hist(f, hist_names[k], &r->h[k]);
    if (r->co_interval_us)
        print_hist(f, "cycle (CO-corr.)", &r->h_cycle_corrected);
    bool any = false;
    for (int k = 0; k < E_COUNT; k++) {
        if (!fin->e[k])
            continue;
        if (!any)
            fprintf(f, "  errors     :\n");
        any = true;
        fprintf(f, "    %-18s %9llu  e.g. %.*s\n", cl_error_names[k], (unsigned long long)fin->e[k], CL_SAMPLE_LEN,
                r->sample[k]);
    }
    if (!any)
        fprintf(f, "  errors     : none\n");
    for (int k = 0; k < 17; k++)
        if (fin->close_codes[k])
            fprintf(f, "  close code %s%d: %llu\n", k == 16 ? "other than 1000-1015 " : "", k == 16 ? 0 : 1000 + k,
                    (unsigned long long)fin->close_codes[k]);
    for (int i = 0; i < r->n_fail && i < REPORT_MAX_FAIL; i++)
        fprintf(f, "  FAIL: %s\n", r->fail[i]);
    fprintf(f, "  result     : %s\n", r->n_fail ? "FAIL" : "ok");
}

/* ---- JSON ---- */

static json_t *hist_json(const struct hist *h)
{
    return json_pack("{s:I,s:I,s:f,s:I,s:I,s:I,s:I,s:I,s:I}", "count", (json_int_t)h->count, "min",
                     (json_int_t)(h->count ? h->min : 0), "mean", hist_mean(h), "p50",
                     (json_int_t)hist_percentile(h, 50), "p90", (json_int_t)hist_percentile(h, 90), "p99",
                     (json_int_t)hist_percentile(h, 99), "p999", (json_int_t)hist_percentile(h, 99.9), "p9999",
                     (json_int_t)hist_percentile(h, 99.99), "max", (json_int_t)h->max);
}

static json_t *counts_json(const struct bench_counts *c)
{
    json_t *o = json_object();
    for (int k = 0; k < C_COUNT; k++)
        json_object_set_new(o, cl_counter_names[k], json_integer((json_int_t)c->c[k]));
    return o;
}

static json_t *sample_json(const struct ps_sample *s)
{
    return json_pack("{s:i,s:I,s:I,s:I}", "procs", s->procs, "rss_kib", (json_int_t)s->rss_kib, "anon_kib",
                     (json_int_t)s->anon_kib, "cpu_ticks", (json_int_t)s->cpu_ticks);
}

static json_t *sock_json(const struct ps_sockstat *s)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "tcp_inuse", (json_int_t)s->tcp_inuse, "tcp_orphan",
                     (json_int_t)s->tcp_orphan, "tcp_tw", (json_int_t)s->tcp_tw, "tcp_alloc",
                     (json_int_t)s->tcp_alloc, "tcp_mem_bytes", (json_int_t)(s->tcp_mem_pages * 4096),
                     "slab_bytes", (json_int_t)(s->slab_kib * 1024));
}

/* Event counts per bucket, the active-session gauge and the once-a-second gateway samples, up to
 * the end of the run: the input of bench/plot.sh. */
static json_t *timeline_json(const struct run *r)
{
    static const char *const kinds[TL_KINDS] = { "started", "tls", "ready", "failed" };
    uint32_t n = tl_used(&r->tl);
    if (r->n_active > n)
        n = r->n_active;
    json_t *t = json_object();
    json_object_set_new(t, "bucket_ms", json_integer(r->cfg.bucket_ms));
    json_t *marks = json_object();
    if (r->cfg.pattern == CL_HOLD)
        json_object_set_new(marks, "ramp_end_s", json_real(r->ramp_end_s));
    if (r->cfg.storm && r->drop_s > 0) {
        json_object_set_new(marks, "drop_s", json_real(r->drop_s));
        json_object_set_new(marks, "back_s", json_real(r->recovered_s));
    }
    json_object_set_new(marks, "end_s", json_real(r->end_s));
    json_object_set_new(t, "marks_s", marks);
    for (int k = 0; k < TL_KINDS; k++) {
        json_t *a = json_array();
        for (uint32_t i = 0; i < n; i++)
            json_array_append_new(a, json_integer(r->tl.n[i][k]));
        json_object_set_new(t, kinds[k], a);
    }
    json_t *act = json_array();
    for (uint32_t i = 0; i < n; i++)
        json_array_append_new(act, json_integer(i < r->n_active ? r->active[i] : 0));
    json_object_set_new(t, "active", act);
    json_t *ts = json_array(), *cpu = json_array(), *rss = json_array(), *sa = json_array();
    json_t *self = json_array(), *busy = json_array(), *all = json_array();
    for (uint32_t i = 0; i < r->n_series; i++) {
        const struct series_point *p = &r->series[i];
        json_array_append_new(ts, json_real(p->t));
        json_array_append_new(cpu, json_real((double)p->cpu_ticks * ps_tick_seconds()));
        json_array_append_new(rss, json_integer((json_int_t)p->rss_kib));
        json_array_append_new(sa, json_integer(p->active));
        json_array_append_new(self, json_real((double)p->self_ticks * ps_tick_seconds()));
        json_array_append_new(busy, json_real((double)p->sys_busy * ps_tick_seconds()));
        json_array_append_new(all, json_real((double)p->sys_all * ps_tick_seconds()));
    }
    json_object_set_new(t, "gateway_t_s", ts);
    json_object_set_new(t, "gateway_cpu_s", cpu);
    json_object_set_new(t, "gateway_rss_kib", rss);
    json_object_set_new(t, "gateway_active", sa);
    json_object_set_new(t, "nhbench_cpu_s", self);
    json_object_set_new(t, "machine_busy_cpu_s", busy);
    json_object_set_new(t, "machine_all_cpu_s", all);
    return t;
}

static json_t *run_json(const struct run *r)
{
    const struct cl_cfg *c = &r->cfg;
    const struct bench_counts *fin = &r->final;
    double tick = ps_tick_seconds();
    json_t *o = json_object();
    json_object_set_new(o, "scenario", json_string(r->name));
    if (r->label[0])
        json_object_set_new(o, "label", json_string(r->label));
    json_object_set_new(o, "pass", json_boolean(r->n_fail == 0));
    json_t *fails = json_array();
    for (int i = 0; i < r->n_fail && i < REPORT_MAX_FAIL; i++)
        json_array_append_new(fails, json_string(r->fail[i]));
    json_object_set_new(o, "failures", fails);

    json_object_set_new(
        o, "config",
        json_pack("{s:s,s:s,s:s,s:i,s:i,s:i,s:i,s:f,s:i,s:i,s:s,s:s,s:i,s:i,s:s,s:b,s:b,s:b,s:b,s:b,s:s,s:b}", "mode",
                  c->mode == CL_MODE_TLS ? "tls" : "websocket", "pattern", c->pattern == CL_HOLD ? "hold" : "cycle",
                  "target", c->host, "workers", c->workers, "sessions", (int)c->sessions, "devices", (int)c->devices,
                  "device_base", (int)c->device_base, "rate", c->rate, "concurrency", (int)c->concurrency,
                  "max_pending", (int)c->max_pending, "vsn", vsn_name(c->vsn), "deflate", deflate_name(c->deflate),
                  "heartbeat_ms", (int)c->hb_interval_ms, "timeout_ms", (int)c->timeout_ms, "tls_max",
                  c->tls_max == TLS1_3_VERSION ? "1.3" : "1.2", "resume", c->resume, "resume_id", c->resume_id,
                  "strict", c->strict,
                  "extensions", c->extensions, "report_iface", c->report_iface, "groups", c->groups,
                  "server_verify", c->server_ca[0] != 0));

    json_object_set_new(o, "counts", counts_json(fin));
    json_t *errs = json_object(), *samples = json_object();
    uint64_t total = 0;
    for (int k = 0; k < E_COUNT; k++) {
        total += fin->e[k];
        if (fin->e[k])
            json_object_set_new(errs, cl_error_names[k], json_integer((json_int_t)fin->e[k]));
        if (fin->e[k] && r->sample[k][0])
            json_object_set_new(samples, cl_error_names[k], json_stringn(r->sample[k], strnlen(r->sample[k], CL_SAMPLE_LEN)));
    }
    json_object_set_new(o, "errors", errs);
    json_object_set_new(o, "errors_total", json_integer((json_int_t)total));
    json_t *codes = json_object();
    for (int k = 0; k < 17; k++) {
        if (!fin->close_codes[k])
            continue;
        char key[16];
        snprintf(key, sizeof(key), "%s", k == 16 ? "other" : "");
        if (k < 16)
            snprintf(key, sizeof(key), "%d", 1000 + k);
        json_object_set_new(codes, key, json_integer((json_int_t)fin->close_codes[k]));
    }
    json_object_set_new(o, "close_codes", codes);
    json_object_set_new(o, "error_samples", samples);

    json_t *lat = json_object();
    for (int k = 0; k < H_COUNT; k++)
        if (r->h[k].count)
            json_object_set_new(lat, hist_names[k], hist_json(&r->h[k]));
    if (r->co_interval_us) {
        json_object_set_new(lat, "cycle_co_corrected", hist_json(&r->h_cycle_corrected));
        json_object_set_new(lat, "co_interval_us", json_integer((json_int_t)r->co_interval_us));
    }
    json_object_set_new(o, "latency_us", lat);
    json_object_set_new(o, "timing_s",
                        json_pack("{s:f,s:f,s:f,s:f,s:f}", "ramp", r->ramp_s, "hold", r->hold_s, "warmup", r->warmup_s,
                                  "window", c->pattern == CL_CYCLE ? window_s(r) : 0.0, "total", r->total_s));

    json_t *gw = json_object();
    json_object_set_new(gw, "sampled", json_boolean(r->have_gw));
    if (r->have_gw) {
        json_object_set_new(gw, "pid", json_integer(r->gw_pid));
        json_object_set_new(gw, "before", sample_json(&r->gw_before));
        json_object_set_new(gw, c->pattern == CL_HOLD ? "ramped" : "window_start", sample_json(&r->gw_ramped));
        json_object_set_new(gw, "end", sample_json(&r->gw_end));
    }
    json_t *self = json_pack("{s:o,s:o,s:o}", "before", sample_json(&r->self_before),
                             c->pattern == CL_HOLD ? "ramped" : "window_start", sample_json(&r->self_ramped), "end",
                             sample_json(&r->self_end));
    json_t *kern = json_pack("{s:o,s:o,s:o}", "before", sock_json(&r->sock_before), "ramped",
                             sock_json(&r->sock_ramped), "end", sock_json(&r->sock_end));
    json_t *d = json_object();
    if (c->pattern == CL_HOLD) {
        uint64_t n = r->at_ramp.c[C_ACTIVE], ready = r->at_ramp.c[C_READY];
        json_object_set_new(d, "sessions_ready", json_integer((json_int_t)ready));
        json_object_set_new(d, "sessions_active_at_sample", json_integer((json_int_t)n));
        json_object_set_new(d, "setup_per_s", json_real(r->ramp_s > 0 ? ready / r->ramp_s : 0));
        json_object_set_new(d, "tls_handshakes_per_s", json_real(r->ramp_s > 0 ? r->at_ramp.c[C_TLS] / r->ramp_s : 0));
        if (n && r->have_gw) {
            json_object_set_new(d, "gateway_rss_bytes_per_session",
                                json_real(kib(r->gw_before.rss_kib, r->gw_ramped.rss_kib) * 1024 / n));
            json_object_set_new(d, "gateway_anon_bytes_per_session",
                                json_real(kib(r->gw_before.anon_kib, r->gw_ramped.anon_kib) * 1024 / n));
            json_object_set_new(d, "gateway_rss_bytes_per_session_end",
                                json_real(kib(r->gw_before.rss_kib, r->gw_end.rss_kib) * 1024 / n));
            json_object_set_new(d, "gateway_anon_bytes_per_session_end",
                                json_real(kib(r->gw_before.anon_kib, r->gw_end.anon_kib) * 1024 / n));
            double ramp_cpu = (double)(r->gw_ramped.cpu_ticks - r->gw_before.cpu_ticks) * tick;
            const struct ps_sample *hs = (c->storm && r->drop_s > 0) || r->fanout ? &r->gw_recovered : &r->gw_ramped;
            double hold_cpu = (double)(r->gw_end.cpu_ticks - hs->cpu_ticks) * tick;
            json_object_set_new(d, "gateway_cpu_s_ramp", json_real(ramp_cpu));
            json_object_set_new(d, "gateway_handshakes_per_cpu_s_ramp",
                                json_real(ramp_cpu > 0 ? r->at_ramp.c[C_TLS] / ramp_cpu : 0));
            json_object_set_new(d, "gateway_cores_hold", json_real(r->hold_s > 0 ? hold_cpu / r->hold_s : 0));
        }
        if (n) {
            json_object_set_new(d, "kernel_tcp_bytes_per_session_both_ends",
                                json_real(((double)r->sock_ramped.tcp_mem_pages - (double)r->sock_before.tcp_mem_pages) *
                                          4096 / n));
            json_object_set_new(d, "kernel_slab_bytes_per_session_both_ends",
                                json_real(kib(r->sock_before.slab_kib, r->sock_ramped.slab_kib) * 1024 / n));
            json_object_set_new(d, "nhbench_rss_bytes_per_session",
                                json_real(kib(r->self_before.rss_kib, r->self_ramped.rss_kib) * 1024 / n));
        }
    } else {
        double w = window_s(r);
        uint64_t cy = delta(&r->win_start, &r->win_end, C_CYCLES);
        json_object_set_new(d, "window_cycles", json_integer((json_int_t)cy));
        json_object_set_new(d, "window_full", json_integer((json_int_t)delta(&r->win_start, &r->win_end, C_TLS_FULL)));
        json_object_set_new(d, "window_resumed",
                            json_integer((json_int_t)delta(&r->win_start, &r->win_end, C_TLS_RESUMED)));
        json_object_set_new(d, "cycles_per_s", json_real(w > 0 ? cy / w : 0));
        if (r->have_gw) {
            double cpu = (double)(r->gw_end.cpu_ticks - r->gw_ramped.cpu_ticks) * tick;
            json_object_set_new(d, "gateway_cpu_s", json_real(cpu));
            json_object_set_new(d, "gateway_cores", json_real(w > 0 ? cpu / w : 0));
            json_object_set_new(d, "handshakes_per_gateway_core_s", json_real(cpu > 0 ? cy / cpu : 0));
        }
        double scpu = (double)(r->self_end.cpu_ticks - r->self_ramped.cpu_ticks) * tick;
        json_object_set_new(d, "nhbench_cpu_s", json_real(scpu));
        json_object_set_new(d, "nhbench_cores", json_real(w > 0 ? scpu / w : 0));
    }
    if (c->storm && r->drop_s > 0) {
        struct storm_fig s;
        storm_figures(r, &s);
        const struct hist *h = &r->h[H_RECOVER];
        json_t *st = json_object();
        json_object_set_new(st, "backoff", json_string(c->backoff == CL_BACKOFF_LINK ? "link" : "none"));
        json_object_set_new(st, "backoff_unit_ms", json_integer(c->backoff_unit_ms));
        json_object_set_new(st, "drop", json_string(c->linger0 ? "rst" : "close_notify+fin"));
        json_object_set_new(st, "dropped", json_integer((json_int_t)r->at_drop.c[C_ACTIVE]));
        json_object_set_new(st, "drop_at_s", json_real(r->drop_s));
        json_object_set_new(st, "drop_spread_s", json_real(r->drop_spread_s));
        json_object_set_new(st, "drop_took_s", json_real(r->drop_took_s));
        json_object_set_new(st, "back", json_integer((json_int_t)s.back));
        json_object_set_new(st, "all_back", json_boolean(s.all_back));
        json_object_set_new(st, "all_back_s", s.all_back ? json_real(h->max / 1e6) : json_null());
        json_object_set_new(st, "waited_s", json_real(r->storm_s));
        json_object_set_new(st, "back_p50_s", json_real(hist_percentile(h, 50) / 1e6));
        json_object_set_new(st, "back_p90_s", json_real(hist_percentile(h, 90) / 1e6));
        json_object_set_new(st, "back_p99_s", json_real(hist_percentile(h, 99) / 1e6));
        json_object_set_new(st, "attempts", json_integer((json_int_t)s.attempts));
        json_object_set_new(st, "tls_handshakes", json_integer((json_int_t)s.tls));
        json_object_set_new(st, "tls_full", json_integer((json_int_t)s.full));
        json_object_set_new(st, "tls_resumed", json_integer((json_int_t)s.resumed));
        json_object_set_new(st, "peak_tls_per_s", json_real(s.peak_tls_per_s));
        json_object_set_new(st, "peak_joins_per_s", json_real(s.peak_ready_per_s));
        json_t *ea = json_object();
        for (int k = 0; k < E_COUNT; k++)
            if (r->at_recovered.e[k] > r->at_drop.e[k])
                json_object_set_new(ea, cl_error_names[k], json_integer((json_int_t)(r->at_recovered.e[k] - r->at_drop.e[k])));
        json_object_set_new(st, "errors_until_back", ea);
        if (r->have_gw) {
            json_object_set_new(st, "gateway_cpu_s", json_real(s.gw_cpu_s));
            json_object_set_new(st, "gateway_cores", json_real(s.gw_cores));
            json_object_set_new(st, "handshakes_per_gateway_cpu_s", json_real(s.gw_cpu_s > 0 ? s.tls / s.gw_cpu_s : 0));
        }
        if (s.have_m)
            json_object_set_new(st, "machine_cores_busy",
                                json_pack("{s:f,s:f,s:f,s:f}", "all", s.m_busy, "gateway", s.m_gw, "nhbench", s.m_self,
                                          "other_processes", s.m_busy - s.m_gw - s.m_self));
        json_object_set_new(d, "storm", st);
        json_object_set_new(o, "counts_at_drop", counts_json(&r->at_drop));
        json_object_set_new(o, "counts_when_back", counts_json(&r->at_recovered));
    }
    if (r->fanout) {
        json_t *fo = json_object(), *rounds = json_array();
        json_object_set_new(fo, "nats", json_string(r->nats_url));
        json_object_set_new(fo, "prefix", json_string(r->link_prefix));
        json_object_set_new(fo, "base_deployment", json_integer((json_int_t)r->fan_base_deployment));
        json_object_set_new(fo, "timeout_s", json_real(r->fan_timeout_s));
        json_object_set_new(fo, "grace_s", json_real(r->fan_grace_s));
        for (int i = 0; i < r->n_fan; i++) {
            const struct fan_round *fr = &r->fan[i];
            json_t *x = json_object();
            json_object_set_new(x, "path", json_string(fr->path));
            json_object_set_new(x, "deployment", json_integer((json_int_t)fr->deployment));
            json_object_set_new(x, "uuid", json_string(fr->uuid));
            json_object_set_new(x, "error", fr->error[0] ? json_string(fr->error) : json_null());
            json_object_set_new(x, "trigger_at_s", json_real(fr->trigger_s));
            json_object_set_new(x, "api_reply_ms", json_real(fr->api_ms));
            json_object_set_new(x, "expected", json_integer((json_int_t)fr->expected));
            json_object_set_new(x, "received", json_integer((json_int_t)fr->first));
            json_object_set_new(x, "exactly_once", json_integer((json_int_t)(fr->first - fr->dup_devs)));
            json_object_set_new(x, "duplicate_devices", json_integer((json_int_t)fr->dup_devs));
            json_object_set_new(x, "duplicates", json_integer((json_int_t)fr->dup));
            json_object_set_new(x, "missing",
                                json_integer((json_int_t)(fr->expected > fr->first ? fr->expected - fr->first : 0)));
            json_object_set_new(x, "other_firmware", json_integer((json_int_t)fr->stale));
            json_object_set_new(x, "complete", json_boolean(fr->complete));
            json_object_set_new(x, "open_after", json_integer((json_int_t)fr->open_after));
            json_object_set_new(x, "waited_s", json_real(fr->waited_s));
            json_object_set_new(x, "gateway_cpu_s", json_real(fr->gw_cpu_s));
            if (!strcmp(fr->path, "scan")) {
                json_object_set_new(x, "matched", json_integer((json_int_t)fr->matched));
                json_object_set_new(x, "pushed", json_integer((json_int_t)fr->pushed));
            } else {
                json_object_set_new(x, "platform_path", json_string(fr->reply_path));
            }
            json_object_set_new(x, "latency_us", hist_json(&fr->h));
            json_array_append_new(rounds, x);
        }
        json_object_set_new(fo, "rounds", rounds);
        json_object_set_new(d, "fanout", fo);
    }
    json_object_set_new(o, "derived", d);
    json_object_set_new(o, "timeline", timeline_json(r));
    json_object_set_new(o, "gateway", gw);
    json_object_set_new(o, "nhbench", self);
    json_object_set_new(o, "kernel_sockstat", kern);
    json_object_set_new(o, "counts_at_ramp", counts_json(&r->at_ramp));
    if (c->pattern == CL_HOLD)
        json_object_set_new(o, "counts_at_end_of_hold", counts_json(&r->at_end));
    return o;
}

int report_write_json(const char *path, const char *scenario, const struct run *runs, int n, bool pass,
                      bool smoke, int argc, char **argv)
{
    json_t *root = json_object();
    json_object_set_new(root, "tool", json_string("nhbench"));
    json_object_set_new(root, "scenario", json_string(scenario));
    json_object_set_new(root, "pass", json_boolean(pass));
    char when[32];
    time_t t = time(NULL);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    json_object_set_new(root, "finished_at", json_string(when));
    json_t *args = json_array();
    for (int i = 0; i < argc; i++)
        json_array_append_new(args, json_string(argv[i]));
    json_object_set_new(root, "argv", args);
    json_t *arr = json_array();
    uint64_t errors = 0;
    for (int i = 0; i < n; i++) {
        json_array_append_new(arr, run_json(&runs[i]));
        for (int k = 0; k < E_COUNT; k++)
            errors += runs[i].final.e[k];
    }
    json_object_set_new(root, "runs", arr);
    json_object_set_new(root, "errors", json_integer((json_int_t)errors));
    if (smoke && n > 0) {
        /* the session figures come from the WebSocket hold run */
        const struct run *h = &runs[0];
        json_object_set_new(root, "sessions_target", json_integer(h->cfg.sessions));
        json_object_set_new(root, "sessions_joined", json_integer((json_int_t)h->at_ramp.c[C_READY]));
        json_object_set_new(root, "heartbeats_answered", json_integer((json_int_t)h->final.c[C_HB_OK]));
        json_object_set_new(root, "heartbeat_sessions", json_integer((json_int_t)h->final.c[C_HB_SESSIONS]));
    }
    int rc = json_dump_file(root, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    return rc == 0 ? 0 : -1;
}
