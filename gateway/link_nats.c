/* The NATS link (proto/LINK.md): the link seam's calls as msgpack requests to the platform's
 * queue group, the worker inbox and shared-topic subscriptions delivered to the session layer.
 * One per worker, on the worker's loop; NATS.c's threads stay behind natsc's mailbox. */
#include "link.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "config.h"
#include "log.h"
#include "lp.h"
#include "natsc.h"
#include "rmap.h"
#include "stats.h"

#define DISCONNECT_QUEUE_MAX 4096

struct follow_sub {
    struct rnode node;
    struct link_nats *ln;
    struct natsc_sub *sub;
    char name[];
};

/* An encoded request waiting for NATS capacity, a reply, or its retry. */
struct lcall {
    struct lcall *next;          /* in the deferred queue */
    struct link_nats *ln;
    enum lp_call call;
    link_done_cb cb;
    void *arg;
    uint8_t attempts;
    uint8_t result;              /* ST_RES_* of a transport failure; 0: from the reply's status */
    bool counted;                /* holds one of the worker's in-flight slots */
    uint64_t t0_us;              /* started (nhgw_platform_call_duration_seconds) */
    /* auth continues with connect: what the connect request needs */
    uint64_t cref;
    char *peer;
    char *dev;
    uint8_t *info;
    size_t info_len;
    size_t n;
    uint8_t data[];
};

struct queued_pub {
    struct queued_pub *next;
    size_t n;
    uint8_t data[];
};

struct link_nats {
    struct link base;
    const struct cfg *cfg;
    struct natsc *nc;
    unsigned worker;
    uint32_t timeout_ms;
    size_t max_inflight;
    size_t inflight;
    struct lcall *deferred_head, *deferred_tail;
    struct queued_pub *dq_head, *dq_tail;
    size_t dq_len;
    bool dq_inflight;
    struct event *dq_timer;
    struct natsc_sub *inbox_sub;
    struct rmap follows;
    struct lp_out out;
    struct link_effect fx[LP_MAX_EFFECTS];
    char subject[LP_CALL_COUNT][128];
    char inbox[160];
    char topic_prefix[64];
};

static struct lp_span lps(struct span s)
{
    return (struct lp_span){ (const uint8_t *)s.p, s.len };
}

static struct span sp(struct lp_span s)
{
    return (struct span){ (const char *)s.p, s.n };
}

static void send_call(struct lcall *lc);

static void lcall_free(struct lcall *lc)
{
    free(lc->peer);
    free(lc->dev);
    free(lc->info);
    free(lc);
}

static void release_slot(struct link_nats *ln, struct lcall *lc)
{
    if (!lc->counted)
        return;
    lc->counted = false;
    ln->inflight--;
    /* a freed slot goes to the oldest waiting call */
    while (ln->deferred_head && ln->inflight < ln->max_inflight) {
        struct lcall *next = ln->deferred_head;
        ln->deferred_head = next->next;
        if (!ln->deferred_head)
            ln->deferred_tail = NULL;
        next->counted = true;
        ln->inflight++;
        send_call(next);
    }
}

static void finish(struct lcall *lc, const struct link_reply *r)
{
    struct link_nats *ln = lc->ln;
    int res = lc->result ? lc->result
              : r->status == LINK_OK ? ST_RES_OK
              : r->status == LINK_REFUSED ? ST_RES_REFUSED
                                        : ST_RES_UNAVAILABLE;
    stats_w->calls[lc->call][res]++;
    stats_hist_add(&stats_w->call_dur[lc->call], stats_now_us() - lc->t0_us);
    stats_w->calls_in_flight--;
    release_slot(ln, lc);
    /* r may point into lc (auth's device id and info) */
    lc->cb(lc->arg, r);
    lcall_free(lc);
}

static void fail_call(struct lcall *lc, const char *why)
{
    struct link_reply r = { .status = LINK_UNAVAILABLE, .reason = { why, strlen(why) } };
    finish(lc, &r);
}

/* lp effects → the seam's effects, in the link's array (valid until the next reply). */
static size_t convert_effects(struct link_nats *ln, const struct lp_reply *lr)
{
    struct lp_iter it = lr->fx_iter;
    struct lp_effect e;
    size_t n = 0;
    while (n < LP_MAX_EFFECTS && lp_effect_next(&it, &e) == 1) {
        struct link_effect *o = &ln->fx[n++];
        memset(o, 0, sizeof(*o));
        switch (e.kind) {
        case LP_FX_PUSH:
            o->kind = LINK_EFF_PUSH;
            o->event = sp(e.event);
            o->payload = sp(e.payload);
            break;
        case LP_FX_REPLY:
            o->kind = LINK_EFF_REPLY;
            o->event = sp(e.status);
            o->payload = sp(e.payload);
            break;
        case LP_FX_SUBSCRIBE:
        case LP_FX_UNSUBSCRIBE:
            o->kind = e.kind == LP_FX_SUBSCRIBE ? LINK_EFF_SUBSCRIBE : LINK_EFF_UNSUBSCRIBE;
            o->topic = sp(e.topic);
            break;
        case LP_FX_SEND_SELF:
            o->kind = LINK_EFF_SEND_SELF;
            o->payload = sp(e.msg);
            break;
        case LP_FX_SEND_AFTER:
        case LP_FX_START_TIMER:
            o->kind = e.kind == LP_FX_SEND_AFTER ? LINK_EFF_SEND_AFTER : LINK_EFF_START_TIMER;
            o->key = sp(e.key);
            o->payload = sp(e.msg);
            o->ms = e.ms;
            break;
        case LP_FX_CANCEL_TIMER:
            o->kind = LINK_EFF_CANCEL_TIMER;
            o->key = sp(e.key);
            break;
        case LP_FX_CLOSE:
            o->kind = LINK_EFF_CLOSE;
            o->code = e.code;
            o->event = sp(e.reason);
            break;
        case LP_FX_SCROLLBACK_APPEND:
        case LP_FX_SCROLLBACK_CLEAR:
        case LP_FX_SCROLLBACK_REPLAY:
            o->kind = e.kind == LP_FX_SCROLLBACK_APPEND  ? LINK_EFF_SCROLLBACK_APPEND
                      : e.kind == LP_FX_SCROLLBACK_CLEAR ? LINK_EFF_SCROLLBACK_CLEAR
                                                         : LINK_EFF_SCROLLBACK_REPLAY;
            o->payload = sp(e.data);
            o->topic = sp(e.topic);
            break;
        }
    }
    return n;
}

static void on_connect_reply(struct lcall *lc, const struct lp_reply *lr)
{
    struct link_reply r = { 0 };
    r.status = LINK_OK;
    r.device_id = (struct span){ lc->dev, strlen(lc->dev) };
    r.session = lr->has_session ? sp(lr->session) : (struct span){ (const char *)lc->info, lc->info_len };
    if (!r.session.p)
        r.session = (struct span){ "", 0 };
    finish(lc, &r);
}

/* auth answered ok: the same call continues as `connect` (LINK.md §4.2). */
static void continue_with_connect(struct lcall *lc, const struct lp_reply *lr)
{
    struct link_nats *ln = lc->ln;
    lc->dev = malloc(lr->dev.n + 1);
    lc->info = malloc(lr->session.n ? lr->session.n : 1);
    if (!lc->dev || !lc->info) {
        fail_call(lc, "out of memory");
        return;
    }
    memcpy(lc->dev, lr->dev.p, lr->dev.n);
    lc->dev[lr->dev.n] = 0;
    memcpy(lc->info, lr->session.p, lr->session.n);
    lc->info_len = lr->session.n;
    struct lp_request rq = { 0 };
    rq.call = LP_CONNECT;
    rq.gw = lp_cspan(ln->cfg->gateway_id);
    rq.worker = ln->worker;
    rq.cref = lc->cref;
    rq.dev = lr->dev;
    rq.session = lr->session;
    rq.peer = lp_cspan(lc->peer);
    lp_out_reset(&ln->out);
    if (lp_encode_request(&ln->out, &rq) != 0) {
        fail_call(lc, "connect request not encodable");
        return;
    }
    struct lcall *next = realloc(lc, sizeof(*lc) + ln->out.n);
    if (!next) {
        fail_call(lc, "out of memory");
        return;
    }
    lc = next;
    /* auth is done: the same call continues as connect */
    stats_w->calls[LP_AUTH][ST_RES_OK]++;
    stats_hist_add(&stats_w->call_dur[LP_AUTH], stats_now_us() - lc->t0_us);
    lc->t0_us = stats_now_us();
    lc->call = LP_CONNECT;
    lc->attempts = 0;
    lc->n = ln->out.n;
    memcpy(lc->data, ln->out.p, ln->out.n);
    send_call(lc);
}

static void on_reply(void *arg, enum natsc_result res, struct span data)
{
    struct lcall *lc = arg;
    struct link_nats *ln = lc->ln;
    if (res == NATSC_NO_RESPONDERS || res == NATSC_DOWN) {
        /* transport failures: the platform did not run the call, so one retry is safe */
        if (lc->attempts < 2) {
            send_call(lc);
            return;
        }
        lc->result = res == NATSC_DOWN ? ST_RES_UNAVAILABLE : ST_RES_NO_RESPONDERS;
        fail_call(lc, res == NATSC_DOWN ? "NATS unavailable" : "no platform subscribed");
        return;
    }
    if (res == NATSC_TIMEOUT) {
        log_peer("platform_timeout", "call=%s", lp_call_name(lc->call));
        lc->result = ST_RES_TIMEOUT;
        fail_call(lc, "timeout");
        return;
    }
    struct lp_reply lr;
    const char *err = NULL;
    if (lp_decode_reply(lc->call, (const uint8_t *)data.p, data.len, &lr, &err) != 0) {
        lc->result = ST_RES_INVALID;
        LOG(LOG_WARN, "platform_reply_invalid", "call=%s error=\"%s\"", lp_call_name(lc->call), err ? err : "");
        fail_call(lc, "invalid reply");
        return;
    }
    if (lr.st == LP_ST_OK && lc->call == LP_AUTH) {
        if (!lp_valid_dev(lr.dev) || !lr.has_session) {
            lc->result = ST_RES_INVALID;
            fail_call(lc, "auth reply without a valid device id");
            return;
        }
        continue_with_connect(lc, &lr);
        return;
    }
    if (lr.st == LP_ST_OK && lc->call == LP_CONNECT) {
        on_connect_reply(lc, &lr);
        return;
    }
    struct link_reply r = { 0 };
    r.status = lr.st == LP_ST_OK ? LINK_OK : lr.st == LP_ST_REFUSED ? LINK_REFUSED : LINK_UNAVAILABLE;
    /* a platform that refuses to record the connection cannot serve the device: 503 */
    if (lc->call == LP_CONNECT && r.status == LINK_REFUSED)
        r.status = LINK_UNAVAILABLE;
    r.reason = sp(lr.reason);
    r.session = lr.has_session ? sp(lr.session) : (struct span){ NULL, 0 };
    r.response = lr.response.n ? sp(lr.response) : (struct span){ NULL, 0 };
    r.fw = lr.fw.n ? sp(lr.fw) : (struct span){ NULL, 0 };
    if (r.status == LINK_OK) {
        r.effects = ln->fx;
        r.n_effects = convert_effects(ln, &lr);
    }
    finish(lc, &r);
}

static void send_call(struct lcall *lc)
{
    struct link_nats *ln = lc->ln;
    lc->attempts++;
    if (natsc_request(ln->nc, ln->subject[lc->call], lc->data, lc->n, ln->timeout_ms, on_reply, lc) == 0)
        fail_call(lc, "out of memory");
}

/* Takes a slot, or defers (device messages wait, new devices are told 503: LINK.md §5). */
static void start_call(struct link_nats *ln, enum lp_call call, link_done_cb cb, void *arg, const char *peer,
                       uint64_t cref)
{
    struct lcall *lc = calloc(1, sizeof(*lc) + ln->out.n);
    if (!lc || (peer && !(lc->peer = strdup(peer)))) {
        stats_w->calls[call][ST_RES_UNAVAILABLE]++;
        free(lc);
        struct link_reply r = { .status = LINK_UNAVAILABLE, .reason = SPAN_LIT("out of memory") };
        cb(arg, &r);
        return;
    }
    lc->ln = ln;
    lc->call = call;
    lc->t0_us = stats_now_us();
    stats_w->calls_in_flight++;
    lc->cb = cb;
    lc->arg = arg;
    lc->cref = cref;
    lc->n = ln->out.n;
    memcpy(lc->data, ln->out.p, ln->out.n);
    if (ln->inflight >= ln->max_inflight) {
        if (call == LP_AUTH) {
            fail_call(lc, "too many platform calls in flight");
            return;
        }
        if (ln->deferred_tail)
            ln->deferred_tail->next = lc;
        else
            ln->deferred_head = lc;
        ln->deferred_tail = lc;
        return;
    }
    lc->counted = true;
    ln->inflight++;
    send_call(lc);
}

static void fail_encode(enum lp_call call, link_done_cb cb, void *arg)
{
    /* what the device sent (or its session) breaks a contract limit */
    log_peer("link_encode_failed", "call=%s", lp_call_name(call));
    struct link_reply r = { .status = LINK_UNAVAILABLE, .reason = SPAN_LIT("request not encodable") };
    cb(arg, &r);
}

static void base_request(struct link_nats *ln, struct lp_request *rq, enum lp_call call, const struct link_dev *d)
{
    memset(rq, 0, sizeof(*rq));
    rq->call = call;
    rq->gw = lp_cspan(ln->cfg->gateway_id);
    rq->worker = ln->worker;
    if (d) {
        rq->cref = d->conn_ref;
        rq->dev = lps(d->device_id);
    }
}

static void nats_auth(struct link *l, const struct link_auth *a, link_done_cb cb, void *arg)
{
    struct link_nats *ln = (struct link_nats *)l;
    struct lp_request rq;
    base_request(ln, &rq, LP_AUTH, NULL);
    rq.cref = a->conn_ref;
    rq.peer = lps(a->peer);
    char fp[41];
    if (a->has_cert) {
        link_fingerprint_hex(a->fingerprint, fp);
        rq.has_cert = true;
        rq.fp = (struct lp_span){ (const uint8_t *)fp, 40 };
        rq.der = lps(a->der);
        rq.cn = lps(a->cn);
    }
    struct lp_kv x[LP_MAX_X];
    size_t nx = 0;
    for (size_t i = 0; i < a->n_x && nx < LP_MAX_X; i++) {
        if (a->x_names[i].len > LP_MAX_X_NAME || a->x_values[i].len > LP_MAX_X_VALUE)
            continue; /* the platform reads none that long; the rest still reach it */
        bool repeated = false;
        for (size_t k = 0; k < nx && !repeated; k++)
            repeated = x[k].name.n == a->x_names[i].len && memcmp(x[k].name.p, a->x_names[i].p, x[k].name.n) == 0;
        if (repeated)
            continue; /* a repeated header: the first one counts (LINK.md: names are unique) */
        x[nx].name = lps(a->x_names[i]);
        x[nx].value = lps(a->x_values[i]);
        nx++;
    }
    rq.x = x;
    rq.n_x = nx;
    lp_out_reset(&ln->out);
    if (lp_encode_request(&ln->out, &rq) != 0) {
        fail_encode(LP_AUTH, cb, arg);
        return;
    }
    char peer[64];
    snprintf(peer, sizeof(peer), "%.*s", (int)MIN(a->peer.len, 63), a->peer.p);
    start_call(ln, LP_AUTH, cb, arg, peer, a->conn_ref);
}

static void flush_disconnects(struct link_nats *ln);

static void on_dq_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flush_disconnects(arg);
}

static void on_dq_reply(void *arg, enum natsc_result res, struct span data)
{
    (void)data;
    struct link_nats *ln = arg;
    ln->dq_inflight = false;
    if (res != NATSC_OK) {
        /* the platform may not have resubscribed yet after a NATS restart: try again shortly */
        struct timeval tv = { 1, 0 };
        evtimer_add(ln->dq_timer, &tv);
        return;
    }
    struct queued_pub *q = ln->dq_head;
    if (q) {
        ln->dq_head = q->next;
        if (!ln->dq_head)
            ln->dq_tail = NULL;
        ln->dq_len--;
        free(q);
    }
    flush_disconnects(ln);
}

/* Replayed disconnects go one at a time as requests, so each is known to have reached a
 * platform replica (LINK.md §4.3); live ones are plain publishes. */
static void flush_disconnects(struct link_nats *ln)
{
    if (!ln->dq_head || ln->dq_inflight || !natsc_connected(ln->nc))
        return;
    if (natsc_request(ln->nc, ln->subject[LP_DISCONNECT], ln->dq_head->data, ln->dq_head->n, ln->timeout_ms,
                      on_dq_reply, ln) != 0)
        ln->dq_inflight = true;
}

static void nats_disconnect(struct link *l, const struct link_dev *d, const char *reason)
{
    struct link_nats *ln = (struct link_nats *)l;
    struct lp_request rq;
    base_request(ln, &rq, LP_DISCONNECT, d);
    rq.session = lps(d->info);
    rq.reason = lp_cspan(reason);
    lp_out_reset(&ln->out);
    if (lp_encode_request(&ln->out, &rq) != 0)
        return;
    flush_disconnects(ln);
    if (!ln->dq_head && natsc_publish(ln->nc, ln->subject[LP_DISCONNECT], ln->out.p, ln->out.n, NULL) == 0) {
        stats_w->calls[LP_DISCONNECT][ST_RES_OK]++;
        return;
    }
    stats_w->calls[LP_DISCONNECT][ST_RES_UNAVAILABLE]++;
    /* NATS is down: keep it for later, bounded; the platform's stale sweep covers the rest */
    struct queued_pub *q = ln->dq_len < DISCONNECT_QUEUE_MAX ? malloc(sizeof(*q) + ln->out.n) : NULL;
    if (!q)
        return;
    q->next = NULL;
    q->n = ln->out.n;
    memcpy(q->data, ln->out.p, ln->out.n);
    if (ln->dq_tail)
        ln->dq_tail->next = q;
    else
        ln->dq_head = q;
    ln->dq_tail = q;
    ln->dq_len++;
}

static void nats_join(struct link *l, const struct link_dev *d, struct span topic, struct span payload,
                      link_done_cb cb, void *arg)
{
    struct link_nats *ln = (struct link_nats *)l;
    struct lp_request rq;
    base_request(ln, &rq, LP_JOIN, d);
    rq.topic = lps(topic);
    rq.session = lps(d->info);
    rq.payload = lps(payload);
    lp_out_reset(&ln->out);
    if (lp_encode_request(&ln->out, &rq) != 0) {
        fail_encode(LP_JOIN, cb, arg);
        return;
    }
    start_call(ln, LP_JOIN, cb, arg, NULL, d->conn_ref);
}

static void nats_message(struct link *l, const struct link_dev *d, struct span topic, struct span session,
                         struct span event, struct span payload, link_done_cb cb, void *arg)
{
    struct link_nats *ln = (struct link_nats *)l;
    struct lp_request rq;
    base_request(ln, &rq, LP_MESSAGE, d);
    rq.topic = lps(topic);
    rq.session = lps(session);
    rq.event = lps(event);
    rq.payload = lps(payload);
    lp_out_reset(&ln->out);
    if (lp_encode_request(&ln->out, &rq) != 0) {
        fail_encode(LP_MESSAGE, cb, arg);
        return;
    }
    start_call(ln, LP_MESSAGE, cb, arg, NULL, d->conn_ref);
}

static void nats_notify(struct link *l, const struct link_dev *d, struct span topic, struct span session,
                        struct span message, struct span from, link_done_cb cb, void *arg)
{
    struct link_nats *ln = (struct link_nats *)l;
    struct lp_request rq;
    base_request(ln, &rq, LP_NOTIFY, d);
    rq.topic = lps(topic);
    rq.session = lps(session);
    rq.msg = lps(message);
    rq.from = lps(from);
    lp_out_reset(&ln->out);
    if (lp_encode_request(&ln->out, &rq) != 0) {
        fail_encode(LP_NOTIFY, cb, arg);
        return;
    }
    start_call(ln, LP_NOTIFY, cb, arg, NULL, d->conn_ref);
}

static void nats_heartbeat(struct link *l, const struct link_dev *devs, size_t n)
{
    struct link_nats *ln = (struct link_nats *)l;
    struct lp_hb hb[512];
    while (n) {
        size_t k = MIN(n, ARRAY_SIZE(hb));
        for (size_t i = 0; i < k; i++)
            hb[i] = (struct lp_hb){ lps(devs[i].device_id), lps(devs[i].info) };
        struct lp_request rq;
        base_request(ln, &rq, LP_HEARTBEAT, NULL);
        rq.hb = hb;
        rq.n_hb = k;
        lp_out_reset(&ln->out);
        if (lp_encode_request(&ln->out, &rq) == 0 &&
            natsc_publish(ln->nc, ln->subject[LP_HEARTBEAT], ln->out.p, ln->out.n, NULL) == 0) {
            stats_w->calls[LP_HEARTBEAT][ST_RES_OK]++;
        } else {
            stats_w->calls[LP_HEARTBEAT][ST_RES_UNAVAILABLE]++;
        }
        devs += k;
        n -= k;
    }
}

static void on_topic_msg(void *arg, const struct natsc_msg *m)
{
    struct follow_sub *fs = arg;
    struct link_nats *ln = fs->ln;
    struct lp_topic_msg tm;
    const char *err = NULL;
    if (lp_decode_topic_msg((const uint8_t *)m->data.p, m->data.len, &tm, &err) != 0) {
        LOG(LOG_WARN, "topic_message_invalid", "topic=%s error=\"%s\"", fs->name, err ? err : "");
        return;
    }
    if (ln->base.sink.topic)
        ln->base.sink.topic(ln->base.sink.arg, (struct span){ fs->name, fs->node.len }, &tm);
}

static int nats_follow(struct link *l, const char *topic)
{
    struct link_nats *ln = (struct link_nats *)l;
    size_t n = strlen(topic);
    if (rmap_get(&ln->follows, topic, n))
        return 0;
    struct follow_sub *fs = calloc(1, sizeof(*fs) + n + 1);
    if (!fs)
        return -1;
    memcpy(fs->name, topic, n);
    fs->node.key = fs->name;
    fs->node.len = n;
    fs->ln = ln;
    char subject[256];
    snprintf(subject, sizeof(subject), "%s%s", ln->topic_prefix, topic);
    fs->sub = natsc_subscribe(ln->nc, subject, on_topic_msg, fs);
    if (!fs->sub || rmap_put(&ln->follows, &fs->node) != 0) {
        if (fs->sub)
            natsc_unsubscribe(fs->sub);
        free(fs);
        return -1;
    }
    return 0;
}

static void nats_unfollow(struct link *l, const char *topic)
{
    struct link_nats *ln = (struct link_nats *)l;
    struct follow_sub *fs = (struct follow_sub *)rmap_get(&ln->follows, topic, strlen(topic));
    if (!fs)
        return;
    natsc_unsubscribe(fs->sub);
    rmap_del(&ln->follows, &fs->node);
    free(fs);
}

static void nats_kick(struct link *l, struct span gw, unsigned worker, struct span dev, uint64_t conn_ref)
{
    struct link_nats *ln = (struct link_nats *)l;
    if (!lp_valid_gateway_id(lps(gw)))
        return;
    struct lp_inbox m = { 0 };
    m.kind = LP_IN_KICK;
    m.dev = lps(dev);
    m.has_cref = true;
    m.cref = conn_ref;
    m.code = 1001;
    lp_out_reset(&ln->out);
    if (lp_encode_inbox(&ln->out, &m) != 0)
        return;
    char subject[160];
    snprintf(subject, sizeof(subject), "%s.gw.%.*s.%u", ln->cfg->link_prefix, (int)gw.len, gw.p, worker);
    natsc_publish(ln->nc, subject, ln->out.p, ln->out.n, NULL);
}

static void on_inbox_msg(void *arg, const struct natsc_msg *m)
{
    struct link_nats *ln = arg;
    struct lp_inbox in;
    const char *err = NULL;
    if (lp_decode_inbox((const uint8_t *)m->data.p, m->data.len, &in, &err) != 0) {
        LOG(LOG_WARN, "inbox_message_invalid", "error=\"%s\"", err ? err : "");
        return;
    }
    /* a reply buffer of its own: the sink may run calls that encode into ln->out */
    static struct lp_out reply;
    lp_out_reset(&reply);
    int st = ln->base.sink.inbox ? ln->base.sink.inbox(ln->base.sink.arg, &in, &reply) : LP_IST_GONE;
    if (!m->reply)
        return;
    if (reply.n == 0 && lp_encode_inbox_status(&reply, (enum lp_inbox_status)st) != 0)
        return;
    natsc_publish(ln->nc, m->reply, reply.p, reply.n, NULL);
}

static int nats_publish(struct link *l, const char *subject, const void *p, size_t n)
{
    return natsc_publish(((struct link_nats *)l)->nc, subject, p, n, NULL);
}

static void on_conn(void *arg, bool connected)
{
    struct link_nats *ln = arg;
    LOG(connected ? LOG_INFO : LOG_WARN, connected ? "nats_connected" : "nats_disconnected", "queued_disconnects=%zu",
        ln->dq_len);
    if (connected)
        flush_disconnects(ln);
}

static bool nats_available(const struct link *l)
{
    return natsc_connected(((const struct link_nats *)l)->nc);
}

static void nats_free(struct link *l)
{
    struct link_nats *ln = (struct link_nats *)l;
    natsc_free(ln->nc);
    if (ln->dq_timer)
        event_free(ln->dq_timer);
    while (ln->deferred_head) {
        struct lcall *lc = ln->deferred_head;
        ln->deferred_head = lc->next;
        lcall_free(lc);
    }
    while (ln->dq_head) {
        struct queued_pub *q = ln->dq_head;
        ln->dq_head = q->next;
        free(q);
    }
    for (size_t i = 0; i < ln->follows.nb; i++) {
        struct rnode *n = rmap_bucket(&ln->follows, i);
        while (n) {
            struct rnode *next = n->next;
            free(n);
            n = next;
        }
    }
    rmap_free(&ln->follows);
    lp_out_free(&ln->out);
    free(ln);
}

static const struct link_ops nats_ops = {
    .name = "nats",
    .auth = nats_auth,
    .disconnect = nats_disconnect,
    .join = nats_join,
    .message = nats_message,
    .notify = nats_notify,
    .heartbeat = nats_heartbeat,
    .follow = nats_follow,
    .unfollow = nats_unfollow,
    .kick = nats_kick,
    .publish = nats_publish,
    .available = nats_available,
    .free = nats_free,
};

struct link *link_nats_new(struct event_base *base, const struct cfg *cfg, unsigned worker)
{
    struct link_nats *ln = calloc(1, sizeof(*ln));
    if (!ln)
        return NULL;
    ln->base.ops = &nats_ops;
    ln->cfg = cfg;
    ln->worker = worker;
    ln->timeout_ms = (uint32_t)MIN(cfg->link_timeout_ms, UINT32_MAX);
    ln->max_inflight = (size_t)cfg->link_max_inflight;
    for (int c = 0; c < LP_CALL_COUNT; c++)
        snprintf(ln->subject[c], sizeof(ln->subject[c]), "%s.link.%s", cfg->link_prefix,
                 lp_call_name((enum lp_call)c));
    snprintf(ln->inbox, sizeof(ln->inbox), "%s.gw.%s.%u", cfg->link_prefix, cfg->gateway_id, worker);
    snprintf(ln->topic_prefix, sizeof(ln->topic_prefix), "%s.topic.", cfg->link_prefix);
    char reply_prefix[160], name[160];
    snprintf(reply_prefix, sizeof(reply_prefix), "_INBOX.%s.%s.%u", cfg->link_prefix, cfg->gateway_id, worker);
    snprintf(name, sizeof(name), "nhgw %s/%u", cfg->gateway_id, worker);
    struct natsc_opts o = { .urls = cfg->nats_url, .name = name, .reply_prefix = reply_prefix };
    ln->nc = natsc_new(base, &o);
    if (!ln->nc) {
        free(ln);
        return NULL;
    }
    natsc_set_conn_cb(ln->nc, on_conn, ln);
    ln->dq_timer = evtimer_new(base, on_dq_retry, ln);
    ln->inbox_sub = natsc_subscribe(ln->nc, ln->inbox, on_inbox_msg, ln);
    if (!ln->inbox_sub) {
        natsc_free(ln->nc);
        free(ln);
        return NULL;
    }
    return &ln->base;
}
