/* The console scenario's operators (see console_op.h). */
#include "console_op.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <nats/nats.h>

#include "lp.h"

#define CO_SEQ_HEX 16 /* data starts with the console's index (6 hex digits) and the push's number (10) */
#define CO_API_TIMEOUT_MS 10000
#define CO_ATTACH_TIMEOUT_MS 5000
#define CO_SEEN_MAX (64u << 20) /* bytes of "echoed" bits per console: 512 M pushes */

struct con {
    char dev[24];
    char inbox[200]; /* <prefix>.gw.<gateway>.<worker>, empty until located */
    bool attached;
    uint64_t sent;     /* pushes sent (atomic: the sender writes, the callback reads) */
    uint64_t sent_us;  /* closed loop: when the outstanding push left */
    uint64_t max_seen; /* highest push number echoed + 1 */
    uint8_t *seen;     /* echoed pushes, one bit each (the callback's) */
    size_t seen_cap;
};

struct co {
    struct co_cfg cfg;
    struct co_result *res;
    natsConnection *nc;
    natsSubscription *sub;
    struct con *cons; /* cfg.consoles entries, by device */
    uint32_t *act;    /* the attached ones, by the index their data carries */
    uint32_t n_act;
    char op_prefix[24];
    uint64_t t0_us;                             /* open loop: the schedule's start */
    double period_us;                           /* open loop: between two pushes over all consoles */
    volatile uint64_t win_begin_us, win_end_us; /* 0 while unset */
    volatile int stopping;
    bool frozen;        /* under mu: the result is final, receipts are ignored */
    pthread_mutex_t mu; /* the callback's work vs co_start (closed loop) and co_stop */
    pthread_t sender;
    bool sender_started;
    struct lp_out pay, msg; /* sender's (or, closed loop, the callback's under mu) encode buffers */
    char *pad;              /* the padding every push carries */
};

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static struct lp_span cspan(const char *s)
{
    return (struct lp_span){(const uint8_t *)s, strlen(s)};
}

/* ---- locating the devices: the platform's operator API ---- */

static json_t *api(struct co *o, const char *verb, json_t *body, char *err, size_t cap)
{
    char subject[160];
    snprintf(subject, sizeof(subject), "%s.api.%s", o->cfg.prefix, verb);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!text) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    natsMsg *reply = NULL;
    natsStatus s = natsConnection_RequestString(&reply, o->nc, subject, text, CO_API_TIMEOUT_MS);
    free(text);
    if (s != NATS_OK) {
        snprintf(err, cap, "%s: %s", subject, natsStatus_GetText(s));
        return NULL;
    }
    json_error_t je;
    json_t *r = json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, &je);
    natsMsg_Destroy(reply);
    const char *e = r ? json_string_value(json_object_get(r, "error")) : "not JSON";
    if (!r || e) {
        snprintf(err, cap, "%s: %s", subject, e);
        json_decref(r);
        return NULL;
    }
    return r;
}

/* The console of device `id` (nhbench-NNNNNNN), or NULL when it is not one of ours. */
static struct con *con_of(struct co *o, const char *id, size_t n)
{
    static const char pre[] = "nhbench-";
    if (n <= sizeof(pre) - 1 || n >= sizeof(o->cons[0].dev) || memcmp(id, pre, sizeof(pre) - 1) != 0)
        return NULL;
    uint64_t v = 0;
    for (size_t i = sizeof(pre) - 1; i < n; i++) {
        if (id[i] < '0' || id[i] > '9' || v > UINT32_MAX)
            return NULL;
        v = v * 10 + (uint64_t)(id[i] - '0');
    }
    if (v < o->cfg.device_base || v - o->cfg.device_base >= o->cfg.consoles)
        return NULL;
    struct con *c = &o->cons[v - o->cfg.device_base];
    return strlen(c->dev) == n && memcmp(c->dev, id, n) == 0 ? c : NULL;
}

static void set_inbox(struct co *o, json_t *dev)
{
    const char *id = json_string_value(json_object_get(dev, "id"));
    const char *gw = json_string_value(json_object_get(dev, "gateway"));
    json_t *wk = json_object_get(dev, "worker");
    struct con *c = id ? con_of(o, id, strlen(id)) : NULL;
    if (c && gw && json_is_integer(wk))
        snprintf(c->inbox, sizeof(c->inbox), "%s.gw.%s.%lld", o->cfg.prefix, gw,
                 (long long)json_integer_value(wk));
}

/* devices.list finds up to 2000 at once; the rest one by one with devices.show. */
static int locate(struct co *o, char *err, size_t cap)
{
    json_t *r = api(o, "devices.list", json_pack("{s:b, s:i}", "online", 1, "limit", 2000), err, cap);
    if (!r)
        return -1;
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(r, "devices"), i, d) set_inbox(o, d);
    json_decref(r);
    for (uint32_t k = 0; k < o->cfg.consoles; k++) {
        struct con *c = &o->cons[k];
        if (c->inbox[0])
            continue;
        char e[160];
        r = api(o, "devices.show", json_pack("{s:s}", "id", c->dev), e, sizeof(e));
        if (r)
            set_inbox(o, json_object_get(r, "device"));
        json_decref(r);
    }
    return 0;
}

/* ---- attach, detach ---- */

static void op_id(const struct co *o, uint32_t k, char out[LP_MAX_OP + 1])
{
    snprintf(out, LP_MAX_OP + 1, "%s-%u", o->op_prefix, k);
}

static int attach(struct co *o, struct con *c, uint32_t k, char *err, size_t cap)
{
    if (!c->inbox[0]) {
        snprintf(err, cap, "%s: not online (the platform has no gateway for it)", c->dev);
        return -1;
    }
    char op[LP_MAX_OP + 1];
    op_id(o, k, op);
    struct lp_inbox m = {
        .kind = LP_IN_CONSOLE_ATTACH, .dev = cspan(c->dev), .op = cspan(op), .lease_ms = CO_LEASE_MS};
    lp_out_reset(&o->msg);
    if (lp_encode_inbox(&o->msg, &m) != 0) {
        snprintf(err, cap, "%s: cannot encode console_attach", c->dev);
        return -1;
    }
    natsMsg *reply = NULL;
    natsStatus s =
        natsConnection_Request(&reply, o->nc, c->inbox, o->msg.p, (int)o->msg.n, CO_ATTACH_TIMEOUT_MS);
    if (s != NATS_OK) {
        snprintf(err, cap, "%s: console_attach on %.100s: %s", c->dev, c->inbox, natsStatus_GetText(s));
        return -1;
    }
    struct lp_console_reply r;
    const char *why = NULL;
    int rc = lp_decode_console_reply((const uint8_t *)natsMsg_GetData(reply),
                                     (size_t)natsMsg_GetDataLength(reply), &r, &why);
    natsMsg_Destroy(reply);
    static const char *const st[] = {"ok", "gone", "not_joined", "full"};
    if (rc != 0 || r.st != LP_CST_OK) {
        snprintf(err, cap, "%s: console_attach answered %s", c->dev, rc != 0 ? why : st[r.st]);
        return -1;
    }
    return 0;
}

static void detach(struct co *o, struct con *c, uint32_t k)
{
    char op[LP_MAX_OP + 1];
    op_id(o, k, op);
    struct lp_inbox m = {.kind = LP_IN_CONSOLE_DETACH, .dev = cspan(c->dev), .op = cspan(op)};
    lp_out_reset(&o->msg);
    if (lp_encode_inbox(&o->msg, &m) == 0)
        natsConnection_Publish(o->nc, c->inbox, o->msg.p, (int)o->msg.n);
}

/* ---- typing ---- */

static const char HEX[] = "0123456789abcdef";

/* Push number j to attached console a (index into act). The caller owns o->pay / o->msg. */
static int send_dn(struct co *o, uint32_t a, uint64_t j)
{
    struct con *c = &o->cons[o->act[a]];
    char data[CO_MAX_BYTES];
    uint32_t n = o->cfg.bytes;
    for (int i = 0; i < 6; i++)
        data[i] = HEX[(a >> (4 * (5 - i))) & 15];
    for (int i = 0; i < 10; i++)
        data[6 + i] = HEX[(j >> (4 * (9 - i))) & 15];
    memcpy(data + CO_SEQ_HEX, o->pad, n - CO_SEQ_HEX - 2);
    data[n - 2] = '\r';
    data[n - 1] = '\n';
    lp_out_reset(&o->pay);
    lp_mp_map(&o->pay, 1);
    lp_mp_cstr(&o->pay, "data");
    lp_mp_str(&o->pay, data, n);
    struct lp_inbox m = {.kind = LP_IN_PUSH,
                         .dev = cspan(c->dev),
                         .topic = cspan("console"),
                         .event = cspan("dn"),
                         .payload = {o->pay.p, o->pay.n}};
    lp_out_reset(&o->msg);
    if (o->pay.failed || lp_encode_inbox(&o->msg, &m) != 0 ||
        natsConnection_Publish(o->nc, c->inbox, o->msg.p, (int)o->msg.n) != NATS_OK) {
        o->res->send_failed++;
        return -1;
    }
    return 0;
}

static void *sender_main(void *arg)
{
    struct co *o = arg;
    uint64_t k = 0;
    while (!__atomic_load_n(&o->stopping, __ATOMIC_ACQUIRE)) {
        uint64_t now = mono_us();
        uint64_t due = o->t0_us + (uint64_t)((double)k * o->period_us);
        if (due > now) {
            uint64_t wait = due - now;
            if (wait > 50000)
                wait = 50000; /* look at `stopping` now and then */
            struct timespec ts = {(time_t)(wait / 1000000u), (long)(wait % 1000000u) * 1000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (now - due > o->res->max_lag_us)
            o->res->max_lag_us = now - due;
        uint32_t a = (uint32_t)(k % o->n_act);
        uint64_t j = k / o->n_act;
        /* counted before it leaves, so its echo is never taken for a foreign one; a failed
         * publish is not retried: it counts as lost */
        __atomic_store_n(&o->cons[o->act[a]].sent, j + 1, __ATOMIC_RELEASE);
        o->res->sent++;
        send_dn(o, a, j);
        k++;
    }
    return NULL;
}

/* ---- receiving ---- */

static bool hex_read(const uint8_t *p, int n, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        const char *q = p[i] ? strchr(HEX, p[i]) : NULL;
        if (!q)
            return false;
        v = v << 4 | (uint64_t)(q - HEX);
    }
    *out = v;
    return true;
}

/* Marks push j of c echoed; false when it already was (or the bitmap could not grow). */
static bool mark(struct con *c, uint64_t j)
{
    size_t byte = (size_t)(j / 8);
    if (byte >= c->seen_cap) {
        size_t cap = c->seen_cap ? c->seen_cap : 64;
        while (cap <= byte)
            cap *= 2;
        if (cap > CO_SEEN_MAX)
            return false;
        uint8_t *p = realloc(c->seen, cap);
        if (!p)
            return false;
        memset(p + c->seen_cap, 0, cap - c->seen_cap);
        c->seen = p;
        c->seen_cap = cap;
    }
    uint8_t bit = (uint8_t)(1u << (j % 8));
    if (c->seen[byte] & bit)
        return false;
    c->seen[byte] |= bit;
    return true;
}

static void on_out(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    struct co *o = closure;
    uint64_t now = mono_us();
    struct co_result *r = o->res;
    pthread_mutex_lock(&o->mu);
    if (o->frozen)
        goto done;
    const uint8_t *body = (const uint8_t *)natsMsg_GetData(msg);
    size_t len = (size_t)natsMsg_GetDataLength(msg);
    uint64_t wb = o->win_begin_us, we = o->win_end_us;
    bool in_win = wb && now >= wb && (!we || now < we);
    r->msg_bytes += len;
    if (in_win)
        r->win_msg_bytes += len;
    /* <prefix>.console.<dev>.out */
    const char *subj = natsMsg_GetSubject(msg);
    size_t pl = strlen(o->cfg.prefix), sl = strlen(subj);
    const char *dev = subj + pl + sizeof(".console.") - 1;
    size_t dl = sl > pl + sizeof(".console.") - 1 + 4 ? sl - pl - (sizeof(".console.") - 1) - 4 : 0;
    struct lp_console_out m;
    struct lp_span v, data;
    if (lp_decode_console_out(body, len, &m, NULL) != 0) {
        r->foreign++;
        goto done;
    }
    if (m.event.n == 6 && memcmp(m.event.p, "closed", 6) == 0) {
        r->closed++;
        goto done;
    }
    uint64_t a, j;
    if (m.event.n != 2 || memcmp(m.event.p, "up", 2) != 0 || lp_mp_map_get(m.payload, "data", &v) != 1 ||
        lp_mp_read_str(v, &data) != 0 || data.n != o->cfg.bytes || !hex_read(data.p, 6, &a) ||
        !hex_read(data.p + 6, 10, &j) || a >= o->n_act) {
        r->foreign++;
        goto done;
    }
    struct con *c = &o->cons[o->act[a]];
    if (strlen(c->dev) != dl || memcmp(c->dev, dev, dl) != 0 ||
        j >= __atomic_load_n(&c->sent, __ATOMIC_ACQUIRE)) {
        r->foreign++;
        goto done;
    }
    if (!mark(c, j)) {
        r->dup++;
        goto done;
    }
    r->received++;
    r->data_bytes += data.n;
    if (in_win) {
        r->win_received++;
        r->win_data_bytes += data.n;
    }
    if (j + 1 < c->max_seen)
        r->reordered++;
    else
        c->max_seen = j + 1;
    uint64_t sent_at =
        o->cfg.rate > 0 ? o->t0_us + (uint64_t)((double)(j * o->n_act + a) * o->period_us) : c->sent_us;
    if (wb && sent_at >= wb && (!we || sent_at < we))
        hist_record(&r->h, now > sent_at ? now - sent_at : 0);
    if (o->cfg.rate == 0 && j + 1 == c->sent && !o->stopping) {
        /* closed loop: the echo of the outstanding push sends the next one */
        c->sent_us = mono_us();
        c->sent = j + 2;
        r->sent++;
        send_dn(o, (uint32_t)a, j + 1);
    }
done:
    pthread_mutex_unlock(&o->mu);
    natsMsg_Destroy(msg);
}

/* ---- life cycle ---- */

struct co *co_open(const struct co_cfg *cfg, struct co_result *res, char *err, size_t cap)
{
    memset(res, 0, sizeof(*res));
    hist_init(&res->h);
    hist_init(&res->h_corrected);
    if (cfg->consoles == 0 || cfg->bytes < CO_MIN_BYTES || cfg->bytes > CO_MAX_BYTES ||
        cfg->consoles > (1u << 24)) {
        snprintf(err, cap, "console: 1..%u consoles and %u..%u bytes per push", 1u << 24, CO_MIN_BYTES,
                 CO_MAX_BYTES);
        return NULL;
    }
    struct co *o = calloc(1, sizeof(*o));
    if (!o) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    o->cfg = *cfg;
    o->res = res;
    pthread_mutex_init(&o->mu, NULL);
    o->cons = calloc(cfg->consoles, sizeof(*o->cons));
    o->act = calloc(cfg->consoles, sizeof(*o->act));
    o->pad = malloc(CO_MAX_BYTES);
    if (!o->cons || !o->act || !o->pad) {
        snprintf(err, cap, "out of memory");
        co_close(o);
        return NULL;
    }
    for (size_t i = 0; i < CO_MAX_BYTES; i++)
        o->pad[i] = (char)('a' + i % 26);
    for (uint32_t k = 0; k < cfg->consoles; k++)
        snprintf(o->cons[k].dev, sizeof(o->cons[k].dev), "nhbench-%07u", cfg->device_base + k);
    snprintf(o->op_prefix, sizeof(o->op_prefix), "nhbench-%u", (unsigned)(mono_us() % 1000000000u));
    natsOptions *no = NULL;
    natsStatus s = natsOptions_Create(&no);
    if (s == NATS_OK)
        s = natsOptions_SetURL(no, cfg->nats_url);
    if (s == NATS_OK)
        s = natsOptions_SetName(no, "nhbench-console");
    if (s == NATS_OK)
        s = natsConnection_Connect(&o->nc, no);
    natsOptions_Destroy(no);
    if (s != NATS_OK) {
        snprintf(err, cap, "NATS %s: %s", cfg->nats_url, natsStatus_GetText(s));
        co_close(o);
        return NULL;
    }
    if (locate(o, err, cap) != 0) {
        co_close(o);
        return NULL;
    }
    /* one wildcard subscription for every console (nhctl takes one subject per device): the
     * operators share a connection and a delivery thread */
    char subject[160];
    snprintf(subject, sizeof(subject), "%s.console.*.out", cfg->prefix);
    s = natsConnection_Subscribe(&o->sub, o->nc, subject, on_out, o);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(o->sub, -1, -1);
    if (s == NATS_OK)
        s = natsConnection_FlushTimeout(o->nc, 5000);
    if (s != NATS_OK) {
        snprintf(err, cap, "subscribe %s: %s", subject, natsStatus_GetText(s));
        co_close(o);
        return NULL;
    }
    for (uint32_t k = 0; k < cfg->consoles; k++) {
        char e[160];
        if (attach(o, &o->cons[k], o->n_act, e, sizeof(e)) == 0) {
            o->cons[k].attached = true;
            o->act[o->n_act++] = k;
        } else if (res->attach_failed++ == 0) {
            snprintf(res->attach_error, sizeof(res->attach_error), "%s", e);
        }
    }
    res->attached = o->n_act;
    if (o->n_act == 0) {
        snprintf(err, cap, "no console could be attached: %s", res->attach_error);
        co_close(o);
        return NULL;
    }
    return o;
}

int co_start(struct co *o, char *err, size_t cap)
{
    if (o->cfg.rate > 0) {
        o->period_us = 1e6 / (o->cfg.rate * o->n_act);
        o->t0_us = mono_us();
        if (pthread_create(&o->sender, NULL, sender_main, o) != 0) {
            snprintf(err, cap, "cannot start the sender thread");
            return -1;
        }
        o->sender_started = true;
        return 0;
    }
    pthread_mutex_lock(&o->mu);
    for (uint32_t a = 0; a < o->n_act; a++) {
        struct con *c = &o->cons[o->act[a]];
        c->sent_us = mono_us();
        c->sent = 1;
        o->res->sent++;
        send_dn(o, a, 0);
    }
    pthread_mutex_unlock(&o->mu);
    return 0;
}

void co_window_begin(struct co *o)
{
    o->win_begin_us = mono_us();
}

void co_window_end(struct co *o)
{
    o->win_end_us = mono_us();
    o->res->window_s = (double)(o->win_end_us - o->win_begin_us) / 1e6;
}

void co_stop(struct co *o, double grace_s)
{
    __atomic_store_n(&o->stopping, 1, __ATOMIC_RELEASE);
    if (o->sender_started) {
        pthread_join(o->sender, NULL);
        o->sender_started = false;
    }
    uint64_t until = mono_us() + (uint64_t)(grace_s * 1e6);
    for (;;) {
        pthread_mutex_lock(&o->mu);
        bool all = o->res->received >= o->res->sent;
        pthread_mutex_unlock(&o->mu);
        if (all || mono_us() >= until)
            break;
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&o->mu);
    o->frozen = true;
    struct co_result *r = o->res;
    r->lost = r->sent - r->received;
    hist_merge(&r->h_corrected, &r->h);
    if (o->cfg.rate == 0 && r->win_received && r->window_s > 0) {
        /* one push in flight per console: each console's echoes should have come every
         * window / (its echoes in the window) */
        r->co_interval_us = (uint64_t)(r->window_s * 1e6 * o->n_act / (double)r->win_received);
        hist_correct(&r->h_corrected, r->co_interval_us);
    }
    pthread_mutex_unlock(&o->mu);
}

void co_close(struct co *o)
{
    if (!o)
        return;
    if (o->sender_started) {
        __atomic_store_n(&o->stopping, 1, __ATOMIC_RELEASE);
        pthread_join(o->sender, NULL);
    }
    if (o->nc) {
        for (uint32_t a = 0; a < o->n_act; a++)
            detach(o, &o->cons[o->act[a]], a);
        natsConnection_FlushTimeout(o->nc, 2000);
        if (o->sub) {
            natsSubscription_Unsubscribe(o->sub);
            natsSubscription_Destroy(o->sub);
        }
        natsConnection_Destroy(o->nc);
        nats_CloseAndWait(2000);
    }
    if (o->cons)
        for (uint32_t k = 0; k < o->cfg.consoles; k++)
            free(o->cons[k].seen);
    lp_out_free(&o->pay);
    lp_out_free(&o->msg);
    free(o->cons);
    free(o->act);
    free(o->pad);
    pthread_mutex_destroy(&o->mu);
    free(o);
}
