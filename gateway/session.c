/* Phoenix channel semantics for one socket (see session.h). The gateway serves exactly three
 * topics — `device` (pinned to the authenticated device), `console` and `extensions` — and
 * answers everything else as Phoenix does for an unmatched topic. Platform calls go through the
 * link one at a time per connection (proto/LINK.md §5); effects are applied here: pushes,
 * replies, shared-topic follows, self-messages, timers, closes and the local shell's scrollback
 * (xshell.h). */
#include "session.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "config.h"
#include "conn.h"
#include "console.h"
#include "link.h"
#include "log.h"
#include "lp.h"
#include "phx.h"
#include "registry.h"
#include "rmap.h"
#include "worker.h"
#include "xshell.h"

enum topic { T_DEVICE, T_CONSOLE, T_EXTENSIONS, T_COUNT };

static const struct span topic_names[T_COUNT] = { SPAN_LIT("device"), SPAN_LIT("console"),
                                                   SPAN_LIT("extensions") };

/* A platform timer (send_after / start_timer), filed under its opaque key until cancelled. */
struct timer {
    struct event ev;
    struct timer *next;
    struct conn *c;
    uint8_t topic;
    bool repeat;
    uint16_t key_len;
    uint32_t msg_len;
    uint8_t data[]; /* key, then msg */
};

/* One worker-wide subscription to a shared topic and the channels that follow it. */
struct rtopic {
    struct rnode node;
    struct follow *head;
    size_t n;
    char name[];
};

struct follow {
    struct follow *tprev, *tnext; /* followers of the same topic on this worker */
    struct follow *cnext;         /* the channel's follows */
    struct rtopic *t;
    struct conn *c;
    uint8_t topic;
};

/* A notify waiting for the connection's call in flight to finish. */
struct pending {
    struct pending *next;
    uint8_t topic;
    uint32_t msg_len;
    uint32_t from_len;
    uint8_t data[]; /* msg, then from */
};

struct chan {
    char *join_ref;      /* owned; NULL while not joined */
    uint8_t *session;    /* opaque platform session, owned, may be NULL */
    uint32_t join_ref_len;
    uint32_t session_len;
    struct timer *timers;
    struct follow *follows;
    uint16_t n_timers;
    uint16_t n_follows;
};

struct sess {
    struct chan ch[T_COUNT];
    struct rnode node;        /* in the worker's device map, keyed by device_id */
    struct reg_entry reg;     /* registry entry, when the worker has a registry */
    struct conn *c;
    uint8_t *info;            /* socket-level info from auth, owned */
    uint32_t info_len;
    char *fw;                 /* firmware uuid from the device join reply, owned */
    struct console *console;  /* the joined console channel's state (console.h), owned */
    struct sb *xsb;           /* the local shell's scrollback (xshell.h), owned, NULL when empty */
    struct pending *pq_head, *pq_tail;
    const char *close_reason; /* static: why the gateway ended the session (LINK.md §4.3) */
    uint16_t n_pending;
    uint8_t n_joined;
    bool in_map;
    bool in_registry;
    bool active;              /* a data message arrived since the last platform heartbeat */
    char device_id[];         /* NUL-terminated */
};

/* What a link completion needs to answer the device; one per call in flight. */
struct call {
    struct conn *c;
    uint8_t topic;
    bool has_ref;
    uint32_t join_ref_len;
    uint32_t ref_len;
    char refs[];         /* join_ref then ref */
};

static void issue_notify(struct conn *c, int t, struct span msg, struct span from);
static void start_notify(struct conn *c, int t, struct span msg, struct span from);

static bool span_eq(struct span a, struct span b)
{
    return a.len == b.len && memcmp(a.p, b.p, a.len) == 0;
}

static int topic_index(struct span t)
{
    for (int i = 0; i < T_COUNT; i++)
        if (span_eq(t, topic_names[i]))
            return i;
    return -1;
}

const char *sess_device_id(const struct sess *s)
{
    return s->device_id;
}

static struct link_dev dev_of(const struct conn *c)
{
    const struct sess *s = c->sess;
    return (struct link_dev){ { s->device_id, strlen(s->device_id) }, c->id,
                              { (const char *)s->info, s->info_len } };
}

static bool is_msgpack(const struct conn *c)
{
    return c->flags & CONN_F_MSGPACK;
}

static void set_close_reason(struct sess *s, const char *reason)
{
    if (!s->close_reason)
        s->close_reason = reason;
}

/* Send what phx_encode* left in the worker's scratch buffer (rc is their result). */
static void send_encoded(struct conn *c, int rc, struct span topic, struct span event)
{
    struct worker *w = c->w;
    if (rc != 0) {
        LOG(LOG_WARN, "encode_failed", "conn=%llu device=%s event=%.*s error=\"%s\"", (unsigned long long)c->id,
            c->sess ? c->sess->device_id : "", (int)event.len, event.p, phx_strerror(rc));
        return;
    }
    w->stats.phx[ST_OUT][stats_topic_index(topic.p, topic.len)]++;
    conn_send(c, is_msgpack(c) ? WS_OP_BINARY : WS_OP_TEXT, w->scratch.p, w->scratch.len);
}

static void send_push(struct conn *c, const struct span *join_ref, const struct span *ref, struct span topic,
                      struct span event, struct span payload)
{
    struct worker *w = c->w;
    w->scratch.len = 0;
    int rc = phx_encode(is_msgpack(c) ? PHX_FMT_MSGPACK : PHX_FMT_JSON, join_ref, ref, topic, event, payload,
                        &w->scratch, w->cfg->max_output);
    send_encoded(c, rc, topic, event);
}

/* The join_ref a server-initiated message carries (device-protocol §3.1, §3.3.3): NervesHub sends
 * everything on `device` as an endpoint broadcast (null join_ref) except `scripts/run`, a channel
 * push; `console` and `extensions` messages are channel pushes with the join's ref. */
static const struct span *push_join_ref(const struct sess *s, int t, struct span event, struct span *jr)
{
    if (t == T_DEVICE && !span_is(event, "scripts/run"))
        return NULL;
    *jr = (struct span){ s->ch[t].join_ref, s->ch[t].join_ref_len };
    return jr;
}

static void send_reply(struct conn *c, const struct span *join_ref, const struct span *ref, struct span topic,
                       const char *status, struct span response)
{
    struct worker *w = c->w;
    w->scratch.len = 0;
    int rc = phx_encode_reply(is_msgpack(c) ? PHX_FMT_MSGPACK : PHX_FMT_JSON, join_ref, ref, topic, status,
                              response, &w->scratch, w->cfg->max_output);
    send_encoded(c, rc, topic, SPAN_LIT("phx_reply"));
}

/* {key: value} for the gateway's own constant replies, built in the worker's second scratch
 * buffer: it is free until conn_send deflates, which happens after the reply is encoded. */
static struct span mp_map1(struct conn *c, const char *key, const char *value)
{
    struct buf *b = &c->w->scratch2;
    b->len = 0;
    if (phx_mp_put_map(1, b, 256) != 0 || phx_mp_put_str((struct span){ key, strlen(key) }, b, 256) != 0 ||
        phx_mp_put_str((struct span){ value, strlen(value) }, b, 256) != 0)
        return PHX_MP_EMPTY_MAP;
    return (struct span){ (const char *)b->p, b->len };
}

static void reply_error_reason(struct conn *c, const struct phx_msg *m, const char *reason)
{
    send_reply(c, m->has_join_ref ? &m->join_ref : NULL, m->has_ref ? &m->ref : NULL, m->topic, "error",
               mp_map1(c, "reason", reason));
}

/* Phoenix's socket answers these itself, with no join_ref (its heartbeat clause and
 * encode_ignore build the reply from the ref and topic alone) */
static void reply_unmatched(struct conn *c, const struct phx_msg *m)
{
    send_reply(c, NULL, m->has_ref ? &m->ref : NULL, m->topic, "error", mp_map1(c, "reason", "unmatched topic"));
}

static void reply_heartbeat(struct conn *c, const struct phx_msg *m)
{
    send_reply(c, NULL, m->has_ref ? &m->ref : NULL, m->topic, "ok", PHX_MP_EMPTY_MAP);
}

static void reply_ok_empty(struct conn *c, const struct phx_msg *m)
{
    send_reply(c, m->has_join_ref ? &m->join_ref : NULL, m->has_ref ? &m->ref : NULL, m->topic, "ok",
               PHX_MP_EMPTY_MAP);
}

/* ---- shared topics ---- */

static void follow_remove(struct conn *c, struct chan *ch, struct follow *f)
{
    struct worker *w = c->w;
    struct follow **pp = &ch->follows;
    while (*pp && *pp != f)
        pp = &(*pp)->cnext;
    if (*pp)
        *pp = f->cnext;
    ch->n_follows--;
    struct rtopic *t = f->t;
    if (f->tprev)
        f->tprev->tnext = f->tnext;
    else
        t->head = f->tnext;
    if (f->tnext)
        f->tnext->tprev = f->tprev;
    free(f);
    if (--t->n == 0) {
        w->link->ops->unfollow(w->link, t->name);
        rmap_del(&w->topics, &t->node);
        free(t);
    }
}

static struct follow *follow_find(struct chan *ch, struct span topic)
{
    for (struct follow *f = ch->follows; f; f = f->cnext)
        if (span_eq((struct span){ f->t->name, f->t->node.len }, topic))
            return f;
    return NULL;
}

/* 0 when the channel follows the topic (already did, or now), -1 when it could not. */
static int follow_add(struct conn *c, int t, struct span topic)
{
    struct worker *w = c->w;
    struct chan *ch = &c->sess->ch[t];
    if (!lp_valid_topic((struct lp_span){ (const uint8_t *)topic.p, topic.len })) {
        LOG(LOG_WARN, "effect_invalid", "conn=%llu device=%s effect=subscribe", (unsigned long long)c->id,
            c->sess->device_id);
        return -1;
    }
    if (follow_find(ch, topic))
        return 0;
    if (ch->n_follows >= w->cfg->max_follows) {
        LOG(LOG_WARN, "follow_limit", "conn=%llu device=%s topic=%.*s", (unsigned long long)c->id,
            c->sess->device_id, (int)topic.len, topic.p);
        return -1;
    }
    struct rtopic *rt = (struct rtopic *)rmap_get(&w->topics, topic.p, topic.len);
    if (!rt) {
        rt = calloc(1, sizeof(*rt) + topic.len + 1);
        if (!rt)
            return -1;
        memcpy(rt->name, topic.p, topic.len);
        rt->node.key = rt->name;
        rt->node.len = topic.len;
        if (w->link->ops->follow(w->link, rt->name) != 0 || rmap_put(&w->topics, &rt->node) != 0) {
            LOG(LOG_WARN, "follow_failed", "topic=%s", rt->name);
            free(rt);
            return -1;
        }
    }
    struct follow *f = calloc(1, sizeof(*f));
    if (!f) {
        if (rt->n == 0) {
            w->link->ops->unfollow(w->link, rt->name);
            rmap_del(&w->topics, &rt->node);
            free(rt);
        }
        return -1;
    }
    f->t = rt;
    f->c = c;
    f->topic = (uint8_t)t;
    f->tnext = rt->head;
    if (rt->head)
        rt->head->tprev = f;
    rt->head = f;
    rt->n++;
    f->cnext = ch->follows;
    ch->follows = f;
    ch->n_follows++;
    return 0;
}

/* ---- timers ---- */

static void timer_free(struct chan *ch, struct timer *tm)
{
    struct timer **pp = &ch->timers;
    while (*pp && *pp != tm)
        pp = &(*pp)->next;
    if (*pp)
        *pp = tm->next;
    ch->n_timers--;
    event_del(&tm->ev);
    free(tm);
}

static struct timer *timer_find(struct chan *ch, struct span key)
{
    for (struct timer *tm = ch->timers; tm; tm = tm->next)
        if (tm->key_len == key.len && memcmp(tm->data, key.p, key.len) == 0)
            return tm;
    return NULL;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct timer *tm = arg;
    struct conn *c = tm->c;
    c->w->stats.timers_fired++;
    /* a one-shot timer stays filed until the platform cancels it (devicelink-contract §3) */
    issue_notify(c, tm->topic, (struct span){ (const char *)tm->data + tm->key_len, tm->msg_len },
                 (struct span){ NULL, 0 });
}

static void timer_start(struct conn *c, int t, const struct link_effect *e, bool repeat)
{
    struct worker *w = c->w;
    struct chan *ch = &c->sess->ch[t];
    if (e->ms == 0 || e->ms > INT32_MAX || e->key.len > LP_MAX_KEY || e->payload.len > LP_MAX_MSG)
        return;
    struct timer *old = timer_find(ch, e->key);
    if (old)
        timer_free(ch, old);
    if (ch->n_timers >= w->cfg->max_timers) {
        /* the list is newest first: the oldest filed timer is the last */
        struct timer *last = ch->timers;
        while (last->next)
            last = last->next;
        LOG(LOG_WARN, "timer_limit", "conn=%llu device=%s", (unsigned long long)c->id, c->sess->device_id);
        timer_free(ch, last);
    }
    struct timer *tm = malloc(sizeof(*tm) + e->key.len + e->payload.len);
    if (!tm)
        return;
    tm->c = c;
    tm->topic = (uint8_t)t;
    tm->repeat = repeat;
    tm->key_len = (uint16_t)e->key.len;
    tm->msg_len = (uint32_t)e->payload.len;
    memcpy(tm->data, e->key.p, e->key.len);
    memcpy(tm->data + e->key.len, e->payload.p, e->payload.len);
    event_assign(&tm->ev, w->base, -1, repeat ? EV_PERSIST : 0, on_timer, tm);
    struct timeval tv = { e->ms / 1000, (e->ms % 1000) * 1000 };
    event_add(&tm->ev, &tv);
    tm->next = ch->timers;
    ch->timers = tm;
    ch->n_timers++;
}

/* ---- channels ---- */

/* Ends channel t's state. `why` (and `detail`, may be NULL) is what operators attached to the
 * console are told (LINK.md §9): left, rejoined or disconnected. */
static void chan_clear(struct conn *c, int t, const char *why, const char *detail)
{
    struct sess *s = c->sess;
    struct chan *ch = &s->ch[t];
    if (t == T_CONSOLE && s->console) {
        console_close(c->w, s->device_id, s->console, why, detail);
        s->console = NULL;
    }
    if (t == T_EXTENSIONS)
        xshell_clear(&s->xsb); /* the local shell ends with its channel */
    if (ch->join_ref)
        s->n_joined--;
    while (ch->timers)
        timer_free(ch, ch->timers);
    while (ch->follows)
        follow_remove(c, ch, ch->follows);
    free(ch->join_ref);
    free(ch->session);
    memset(ch, 0, sizeof(*ch));
}

/* phx_close for the current join of topic t ([join_ref, join_ref, topic, "phx_close", {}]). */
static void send_phx_close(struct conn *c, int t)
{
    struct chan *ch = &c->sess->ch[t];
    struct span jr = { ch->join_ref, ch->join_ref_len };
    send_push(c, &jr, &jr, topic_names[t], SPAN_LIT("phx_close"), PHX_MP_EMPTY_MAP);
}

/* Record that topic t is joined under join_ref. Returns 0, or -1 when out of memory. */
static int chan_mark_joined(struct sess *s, int t, struct span join_ref)
{
    struct chan *ch = &s->ch[t];
    ch->join_ref = malloc(join_ref.len + 1);
    if (!ch->join_ref)
        return -1;
    memcpy(ch->join_ref, join_ref.p, join_ref.len);
    ch->join_ref[join_ref.len] = 0;
    ch->join_ref_len = (uint32_t)join_ref.len;
    s->n_joined++;
    return 0;
}

/* Replace *dst with a copy of src (NULL src keeps it). 0, or -1 when too large or out of memory. */
static int store_blob(struct conn *c, uint8_t **dst, uint32_t *dst_len, struct span src)
{
    if (!src.p)
        return 0;
    if (src.len > c->w->cfg->max_session) {
        LOG(LOG_WARN, "session_too_large", "conn=%llu device=%s bytes=%zu", (unsigned long long)c->id,
            c->sess ? c->sess->device_id : "", src.len);
        return -1;
    }
    uint8_t *copy = NULL;
    if (src.len) {
        copy = malloc(src.len);
        if (!copy)
            return -1;
        memcpy(copy, src.p, src.len);
    }
    free(*dst);
    *dst = copy;
    *dst_len = (uint32_t)src.len;
    return 0;
}

/* The notify queue: self-messages, timers and inbox/topic notifies wait here while a call is in
 * flight, so the platform sees one call at a time per connection, in order. */
static void pending_push(struct conn *c, int t, struct span msg, struct span from)
{
    struct sess *s = c->sess;
    if (s->n_pending >= c->w->cfg->max_queued_notifies) {
        c->w->stats.notifies_dropped++;
        log_peer("notify_dropped", "conn=%llu device=%s queued=%u", (unsigned long long)c->id, s->device_id,
                 (unsigned)s->n_pending);
        return;
    }
    struct pending *p = malloc(sizeof(*p) + msg.len + from.len);
    if (!p) {
        c->w->stats.notifies_dropped++;
        return;
    }
    p->next = NULL;
    p->topic = (uint8_t)t;
    p->msg_len = (uint32_t)msg.len;
    p->from_len = (uint32_t)from.len;
    memcpy(p->data, msg.p, msg.len);
    if (from.len)
        memcpy(p->data + msg.len, from.p, from.len);
    if (s->pq_tail)
        s->pq_tail->next = p;
    else
        s->pq_head = p;
    s->pq_tail = p;
    s->n_pending++;
}

static void pending_clear(struct sess *s)
{
    while (s->pq_head) {
        struct pending *p = s->pq_head;
        s->pq_head = p->next;
        free(p);
    }
    s->pq_tail = NULL;
    s->n_pending = 0;
}

/* Called by every completion before conn_call_end: the next queued notify goes first. */
static void run_pending(struct conn *c)
{
    struct sess *s = c->sess;
    if (!s || !conn_is_open(c) || c->calls > 1)
        return;
    while (s->pq_head) {
        struct pending *p = s->pq_head;
        s->pq_head = p->next;
        if (!s->pq_head)
            s->pq_tail = NULL;
        s->n_pending--;
        bool joined = s->ch[p->topic].join_ref != NULL;
        if (joined)
            start_notify(c, p->topic, (struct span){ (const char *)p->data, p->msg_len },
                         (struct span){ (const char *)p->data + p->msg_len, p->from_len });
        free(p);
        if (joined)
            return;
    }
}

static void apply_scrollback(struct conn *c, const struct link_effect *e)
{
    struct sess *s = c->sess;
    if (e->kind == LINK_EFF_SCROLLBACK_APPEND) {
        if (xshell_append(c->w, &s->xsb, e->payload) != 0)
            log_peer("local_shell_scrollback_nomem", "conn=%llu device=%s", (unsigned long long)c->id,
                     s->device_id);
    } else if (e->kind == LINK_EFF_SCROLLBACK_CLEAR) {
        xshell_clear(&s->xsb);
    } else {
        if (xshell_replay(c->w, s->xsb, e->topic) != 0)
            log_peer("local_shell_replay_failed", "conn=%llu device=%s", (unsigned long long)c->id,
                     s->device_id);
    }
}

static void apply_effects(struct conn *c, const struct call *call, const struct link_reply *r)
{
    int t = call->topic;
    for (size_t i = 0; i < r->n_effects && conn_is_open(c); i++) {
        const struct link_effect *e = &r->effects[i];
        struct chan *ch = &c->sess->ch[t];
        switch (e->kind) {
        case LINK_EFF_PUSH: {
            if (!ch->join_ref)
                break; /* the channel went away meanwhile */
            struct span jr;
            send_push(c, push_join_ref(c->sess, t, e->event, &jr), NULL, topic_names[t], e->event, e->payload);
            break;
        }
        case LINK_EFF_REPLY:
            if (call->has_ref) {
                struct span jr = { call->refs, call->join_ref_len };
                struct span ref = { call->refs + call->join_ref_len, call->ref_len };
                char status[16];
                size_t n = MIN(e->event.len, sizeof(status) - 1);
                memcpy(status, e->event.p, n);
                status[n] = 0;
                send_reply(c, call->join_ref_len ? &jr : NULL, &ref, topic_names[t], status, e->payload);
            }
            break;
        case LINK_EFF_SUBSCRIBE:
            if (ch->join_ref)
                follow_add(c, t, e->topic);
            break;
        case LINK_EFF_UNSUBSCRIBE: {
            struct follow *f = follow_find(ch, e->topic);
            if (f)
                follow_remove(c, ch, f);
            break;
        }
        case LINK_EFF_SEND_SELF:
            pending_push(c, t, e->payload, (struct span){ NULL, 0 });
            break;
        case LINK_EFF_SEND_AFTER:
        case LINK_EFF_START_TIMER:
            if (ch->join_ref)
                timer_start(c, t, e, e->kind == LINK_EFF_START_TIMER);
            break;
        case LINK_EFF_CANCEL_TIMER: {
            struct timer *tm = timer_find(ch, e->key);
            if (tm)
                timer_free(ch, tm);
            break;
        }
        case LINK_EFF_CLOSE: {
            char reason[64];
            size_t n = MIN(e->event.len, sizeof(reason) - 1);
            memcpy(reason, e->event.p, n);
            reason[n] = 0;
            set_close_reason(c->sess, "platform_close");
            conn_close(c, e->code >= 1000 && e->code <= 4999 ? e->code : 1000, reason);
            break;
        }
        case LINK_EFF_SCROLLBACK_APPEND:
        case LINK_EFF_SCROLLBACK_CLEAR:
        case LINK_EFF_SCROLLBACK_REPLAY:
            /* the local shell lives on `extensions` (LINK.md §9.1); elsewhere the effect means
             * nothing and is ignored */
            if (t == T_EXTENSIONS && ch->join_ref)
                apply_scrollback(c, e);
            break;
        }
    }
}

static struct call *call_new(struct conn *c, int t, const struct phx_msg *m)
{
    size_t jl = m && m->has_join_ref ? m->join_ref.len : 0, rl = m && m->has_ref ? m->ref.len : 0;
    struct call *call = malloc(sizeof(*call) + jl + rl);
    if (!call)
        return NULL;
    call->c = c;
    call->topic = (uint8_t)t;
    call->has_ref = m && m->has_ref;
    call->join_ref_len = (uint32_t)jl;
    call->ref_len = (uint32_t)rl;
    if (jl)
        memcpy(call->refs, m->join_ref.p, jl);
    if (rl)
        memcpy(call->refs + jl, m->ref.p, rl);
    return call;
}

static void call_done(struct call *call)
{
    struct conn *c = call->c;
    free(call);
    run_pending(c);
    conn_call_end(c);
}

static void note_failure(struct conn *c, const char *call, const struct link_reply *r)
{
    log_peer("platform_call_failed", "conn=%llu device=%s call=%s status=%s reason=\"%.*s\"",
             (unsigned long long)c->id, c->sess ? c->sess->device_id : "", call,
             r->status == LINK_REFUSED ? "refused" : "unavailable", (int)MIN(r->reason.len, 200), r->reason.p);
}

static void on_join_done(void *arg, const struct link_reply *r)
{
    struct call *call = arg;
    struct conn *c = call->c;
    if (conn_is_open(c) && c->sess) {
        struct sess *s = c->sess;
        struct span jr = { call->refs, call->join_ref_len };
        struct span ref = { call->refs + call->join_ref_len, call->ref_len };
        struct chan *ch = &s->ch[call->topic];
        if (r->status == LINK_OK && store_blob(c, &ch->session, &ch->session_len, r->session) == 0) {
            if (chan_mark_joined(s, call->topic, jr) == 0) {
                send_reply(c, &jr, call->has_ref ? &ref : NULL, topic_names[call->topic], "ok",
                           r->response.p ? r->response : PHX_MP_EMPTY_MAP);
                if (call->topic == T_DEVICE && r->fw.p && r->fw.len <= 64) {
                    char *fw = malloc(r->fw.len + 1);
                    if (fw) {
                        memcpy(fw, r->fw.p, r->fw.len);
                        fw[r->fw.len] = 0;
                        free(s->fw);
                        s->fw = fw;
                        if (c->w->reg && s->in_registry)
                            reg_set_fw(c->w->reg, &s->reg, (struct span){ fw, r->fw.len });
                    }
                }
                apply_effects(c, call, r);
            } else {
                conn_close(c, 1011, "out of memory");
            }
        } else {
            if (r->status != LINK_OK)
                note_failure(c, "join", r);
            /* without a platform answer, NervesHub's device join failure (§3.3.2) */
            struct span resp = r->status == LINK_REFUSED && r->response.p ? r->response
                                                                          : mp_map1(c, "error", "could not connect");
            send_reply(c, &jr, call->has_ref ? &ref : NULL, topic_names[call->topic], "error", resp);
        }
    }
    call_done(call);
}

static void on_message_done(void *arg, const struct link_reply *r)
{
    struct call *call = arg;
    struct conn *c = call->c;
    if (conn_is_open(c) && c->sess) {
        struct chan *ch = &c->sess->ch[call->topic];
        if (r->status == LINK_OK) {
            if (!ch->join_ref) {
                /* left or rejoined meanwhile: this answer belongs to a channel that is gone */
            } else if (store_blob(c, &ch->session, &ch->session_len, r->session) != 0) {
                conn_close(c, 1011, "session too large");
            } else {
                apply_effects(c, call, r);
            }
        } else {
            note_failure(c, "message", r);
        }
    }
    call_done(call);
}

static void issue_notify(struct conn *c, int t, struct span msg, struct span from)
{
    struct sess *s = c->sess;
    if (!s || !conn_is_open(c) || !s->ch[t].join_ref)
        return;
    if (c->calls > 0 || s->pq_head) {
        pending_push(c, t, msg, from);
        return;
    }
    start_notify(c, t, msg, from);
}

static void start_notify(struct conn *c, int t, struct span msg, struct span from)
{
    struct sess *s = c->sess;
    struct call *call = call_new(c, t, NULL);
    if (!call) {
        c->w->stats.notifies_dropped++;
        return;
    }
    struct chan *ch = &s->ch[t];
    struct link_dev d = dev_of(c);
    conn_call_begin(c);
    c->w->link->ops->notify(c->w->link, &d, topic_names[t],
                            (struct span){ (const char *)ch->session, ch->session_len }, msg, from,
                            on_message_done, call);
}

/* ---- the registry ---- */

static void on_claim(void *arg, enum reg_result r, const struct reg_prev *prev)
{
    struct sess *s = arg;
    struct conn *c = s->c;
    struct worker *w = c->w;
    if (r == REG_UNAVAILABLE)
        w->stats.reg_claim_failed++;
    else
        w->stats.reg_ok[ST_REG_CLAIM]++;
    if (r != REG_CLAIMED_PREV || !prev)
        return;
    bool same_gw = prev->gw.len == strlen(w->cfg->gateway_id) &&
                   memcmp(prev->gw.p, w->cfg->gateway_id, prev->gw.len) == 0;
    if (same_gw && prev->worker == (unsigned)w->index) {
        /* a local older connection was kicked when this one entered the device map */
        return;
    }
    LOG(LOG_INFO, "duplicate_kick", "conn=%llu device=%s prev_gateway=%.*s prev_worker=%u prev_conn=%llu",
        (unsigned long long)c->id, s->device_id, (int)prev->gw.len, prev->gw.p, prev->worker,
        (unsigned long long)prev->cref);
    w->link->ops->kick(w->link, prev->gw, prev->worker, (struct span){ s->device_id, strlen(s->device_id) },
                       prev->cref);
}

void sess_on_registry_conflict(void *arg, struct reg_entry *e)
{
    (void)arg;
    struct sess *s = (struct sess *)((char *)e - offsetof(struct sess, reg));
    LOG(LOG_INFO, "registry_conflict", "conn=%llu device=%s", (unsigned long long)s->c->id, s->device_id);
    set_close_reason(s, "kicked");
    conn_close(s->c, 1001, "");
}

/* ---- session lifecycle ---- */

struct sess *sess_new(struct conn *c, struct span device_id, struct span info)
{
    struct worker *w = c->w;
    size_t n = MIN(device_id.len, LP_MAX_ID);
    struct sess *s = calloc(1, sizeof(*s) + n + 1);
    if (!s)
        return NULL;
    memcpy(s->device_id, device_id.p, n);
    s->c = c;
    if (store_blob(c, &s->info, &s->info_len, info) != 0) {
        free(s);
        return NULL;
    }
    c->sess = s;
    /* the newer connection of a device wins (device-protocol.md §4.3) */
    struct rnode *old = rmap_get(&w->devs, s->device_id, n);
    if (old) {
        struct sess *os = (struct sess *)((char *)old - offsetof(struct sess, node));
        rmap_del(&w->devs, old);
        os->in_map = false;
        w->stats.kicks_local++;
        set_close_reason(os, "kicked");
        conn_close(os->c, 1001, "");
    }
    s->node.key = s->device_id;
    s->node.len = n;
    s->in_map = rmap_put(&w->devs, &s->node) == 0;
    if (w->reg) {
        s->reg.dev = (struct span){ s->device_id, n };
        s->reg.peer = (struct span){ c->peer, strlen(c->peer) };
        s->reg.cref = c->id;
        s->reg.at_ms = worker_wall_ms();
        s->in_registry = true;
        reg_claim(w->reg, &s->reg, on_claim, s);
    }
    return s;
}

void sess_free(struct conn *c, const char *reason)
{
    struct sess *s = c->sess;
    if (!s)
        return;
    struct worker *w = c->w;
    struct link_dev d = dev_of(c);
    (void)reason; /* free text for logs; the platform gets one of LINK.md §4.3's reasons */
    w->link->ops->disconnect(w->link, &d, s->close_reason ? s->close_reason : "closed");
    for (int t = 0; t < T_COUNT; t++)
        chan_clear(c, t, "disconnected", s->close_reason ? s->close_reason : "closed");
    pending_clear(s);
    if (s->in_registry)
        reg_release(w->reg, &s->reg);
    if (s->in_map)
        rmap_del(&w->devs, &s->node);
    free(s->info);
    free(s->fw);
    free(s);
    c->sess = NULL;
}

void sess_set_close_reason(struct conn *c, const char *reason)
{
    if (c->sess)
        set_close_reason(c->sess, reason);
}

static void handle_join(struct conn *c, const struct phx_msg *m, int t)
{
    struct sess *s = c->sess;
    if (t < 0) {
        /* includes `device:<id>`: the device topic is pinned to the authenticated device */
        reply_unmatched(c, m);
        return;
    }
    if (s->ch[t].join_ref) {
        /* Phoenix shuts the old channel down first; the client sees its phx_close */
        send_phx_close(c, t);
        chan_clear(c, t, "rejoined", NULL);
    } else if (s->n_joined >= c->w->cfg->max_channels) {
        reply_error_reason(c, m, "too many channels joined");
        return;
    }
    if (!m->has_join_ref) {
        reply_error_reason(c, m, "join_ref required");
        return;
    }
    if (t == T_CONSOLE) {
        /* the console is the gateway's own (architecture.md §8), not the platform's */
        s->console = console_open(c->w, m->payload);
        if (!s->console || chan_mark_joined(s, t, m->join_ref) != 0) {
            conn_close(c, 1011, "out of memory");
            return;
        }
        reply_ok_empty(c, m);
        return;
    }
    struct call *call = call_new(c, t, m);
    if (!call) {
        conn_close(c, 1011, "out of memory");
        return;
    }
    struct link_dev d = dev_of(c);
    conn_call_begin(c);
    c->w->link->ops->join(c->w->link, &d, topic_names[t], m->payload, on_join_done, call);
}

static void handle_event(struct conn *c, const struct phx_msg *m, int t)
{
    struct chan *ch = &c->sess->ch[t];
    if (t == T_CONSOLE) {
        /* the gateway's own: scrollback and operators (console.c), no platform call */
        console_device_event(c->w, c->sess->device_id, c->sess->console, m->event, m->payload);
        return;
    }
    struct call *call = call_new(c, t, m);
    if (!call) {
        conn_close(c, 1011, "out of memory");
        return;
    }
    struct link_dev d = dev_of(c);
    conn_call_begin(c);
    c->w->link->ops->message(c->w->link, &d, topic_names[t],
                             (struct span){ (const char *)ch->session, ch->session_len }, m->event, m->payload,
                             on_message_done, call);
}

int sess_on_message(struct conn *c, const uint8_t *msg, size_t len)
{
    struct phx_msg m;
    int rc = phx_decode(is_msgpack(c) ? PHX_FMT_MSGPACK : PHX_FMT_JSON, msg, len, &m);
    if (rc != 0) {
        log_peer("phx_decode_failed", "conn=%llu device=%s error=\"%s\"", (unsigned long long)c->id,
                 c->sess ? c->sess->device_id : "", phx_strerror(rc));
        if (c->sess)
            set_close_reason(c->sess, "protocol_error");
        return rc == PHX_ERR_NOMEM ? 1011 : 1007;
    }
    c->w->stats.phx[ST_IN][stats_topic_index(m.topic.p, m.topic.len)]++;
    if (!c->sess) {
        phx_msg_free(&m);
        return 1011;
    }
    c->sess->active = true;
    int t = topic_index(m.topic);
    if (span_is(m.topic, "phoenix") && span_is(m.event, "heartbeat")) {
        reply_heartbeat(c, &m);
    } else if (span_is(m.event, "phx_join")) {
        handle_join(c, &m, t);
    } else if (t < 0 || !c->sess->ch[t].join_ref) {
        if (span_is(m.event, "phx_leave"))
            reply_ok_empty(c, &m); /* Phoenix acknowledges leaving a channel it does not have */
        else
            reply_unmatched(c, &m);
    } else if (m.has_join_ref &&
               !span_eq(m.join_ref, (struct span){ c->sess->ch[t].join_ref, c->sess->ch[t].join_ref_len })) {
        /* a message for an earlier join of this topic: stale, dropped as Phoenix does */
    } else if (span_is(m.event, "phx_leave")) {
        reply_ok_empty(c, &m);
        if (conn_is_open(c)) {
            send_phx_close(c, t);
            chan_clear(c, t, "left", NULL);
        }
    } else {
        handle_event(c, &m, t);
    }
    phx_msg_free(&m);
    return 0;
}

/* ---- what arrives unasked: the worker inbox and shared topics ---- */

static struct sess *find_dev(struct worker *w, struct lp_span dev)
{
    struct rnode *n = rmap_get(&w->devs, (const char *)dev.p, dev.n);
    return n ? (struct sess *)((char *)n - offsetof(struct sess, node)) : NULL;
}

/* Inbox `topics` (LINK.md §6.1): each entry moves one connection's channel between shared topics
 * as a reply's unsubscribe/subscribe effects would, with no platform call. Entries for devices
 * this worker does not hold (gone, another cref, channel not joined) are skipped; the reply
 * counts the applied ones. */
static int inbox_topics(struct worker *w, const struct lp_inbox *m, struct lp_out *reply)
{
    int t = topic_index((struct span){ (const char *)m->topic.p, m->topic.n });
    struct lp_iter it = m->moves_iter;
    struct lp_move mv;
    uint32_t applied = 0;
    while (t >= 0 && lp_move_next(&it, &mv)) {
        struct sess *s = find_dev(w, mv.dev);
        if (!s || mv.cref != s->c->id || !conn_is_open(s->c) || !s->ch[t].join_ref)
            continue;
        struct chan *ch = &s->ch[t];
        if (mv.unsub.n) {
            struct follow *f = follow_find(ch, (struct span){ (const char *)mv.unsub.p, mv.unsub.n });
            if (f)
                follow_remove(s->c, ch, f);
        }
        if (mv.sub.n && follow_add(s->c, t, (struct span){ (const char *)mv.sub.p, mv.sub.n }) != 0)
            continue;
        applied++;
    }
    if (applied < m->n_moves)
        LOG(LOG_DEBUG, "inbox_topics_skipped", "entries=%zu applied=%u", m->n_moves, (unsigned)applied);
    lp_encode_topics_reply(reply, applied);
    return LP_IST_OK;
}

static int on_inbox(void *arg, const struct lp_inbox *m, struct lp_out *reply)
{
    struct worker *w = arg;
    if (m->kind == LP_IN_TOPICS)
        return inbox_topics(w, m, reply);
    struct sess *s = find_dev(w, m->dev);
    if (!s || (m->has_cref && m->cref != s->c->id) || !conn_is_open(s->c))
        return LP_IST_GONE;
    struct conn *c = s->c;
    switch (m->kind) {
    case LP_IN_KICK:
        w->stats.kicks_received++;
        set_close_reason(s, "kicked");
        conn_close(c, m->code ? m->code : 1001, "");
        return LP_IST_OK;
    case LP_IN_PUSH:
    case LP_IN_NOTIFY: {
        int t = topic_index((struct span){ (const char *)m->topic.p, m->topic.n });
        if (t < 0 || !s->ch[t].join_ref)
            return LP_IST_NOT_JOINED;
        if (m->kind == LP_IN_NOTIFY) {
            issue_notify(c, t, (struct span){ (const char *)m->msg.p, m->msg.n }, (struct span){ NULL, 0 });
        } else {
            struct span jr, event = { (const char *)m->event.p, m->event.n };
            send_push(c, push_join_ref(s, t, event, &jr), NULL, topic_names[t], event,
                      (struct span){ (const char *)m->payload.p, m->payload.n });
            if (t == T_CONSOLE)
                console_note_input(w, m);
        }
        return LP_IST_OK;
    }
    case LP_IN_CONSOLE_ATTACH:
    case LP_IN_CONSOLE_DETACH:
        if (!s->ch[T_CONSOLE].join_ref || !s->console)
            return LP_IST_NOT_JOINED;
        return console_inbox(w, s->device_id, s->console, m, reply);
    case LP_IN_TOPICS:
        break;
    }
    return LP_IST_GONE;
}

static void on_topic(void *arg, struct span topic, const struct lp_topic_msg *m)
{
    struct worker *w = arg;
    struct rtopic *rt = (struct rtopic *)rmap_get(&w->topics, topic.p, topic.len);
    if (!rt)
        return;
    /* the follower list may change under notify completions that run synchronously (the local
     * link), so walk a snapshot of the next pointer */
    for (struct follow *f = rt->head, *next; f; f = next) {
        next = f->tnext;
        struct conn *c = f->c;
        struct sess *s = c->sess;
        if (!s || !conn_is_open(c) || !s->ch[f->topic].join_ref)
            continue;
        if (m->kind == LP_TOPIC_NOTIFY) {
            issue_notify(c, f->topic, (struct span){ (const char *)m->msg.p, m->msg.n }, topic);
            continue;
        }
        if (m->skip_fw.n && s->fw && strlen(s->fw) == m->skip_fw.n && memcmp(s->fw, m->skip_fw.p, m->skip_fw.n) == 0)
            continue;
        struct span jr, event = { (const char *)m->event.p, m->event.n };
        send_push(c, push_join_ref(s, f->topic, event, &jr), NULL, topic_names[f->topic], event,
                  (struct span){ (const char *)m->payload.p, m->payload.n });
        w->stats.fanout_pushes++;
    }
}

void sess_attach_sink(struct worker *w)
{
    w->link->sink.inbox = on_inbox;
    w->link->sink.topic = on_topic;
    w->link->sink.arg = w;
}

/* ---- batched last-seen heartbeats (LINK.md §4.7) ---- */

#define HB_BATCH 512

/* Called once a second: sweeps the device map so that every bucket is visited once per
 * heartbeat interval; a device that sent anything since its last heartbeat is reported. The
 * sweep's position relative to a device's connect time is what spreads heartbeats out. */
void sess_heartbeat_tick(struct worker *w)
{
    if (!w->devs.nb)
        return;
    uint64_t period_s = w->cfg->link_heartbeat_ms / 1000;
    if (period_s == 0)
        period_s = 1;
    size_t per_tick = (w->devs.nb + period_s - 1) / period_s;
    struct link_dev batch[HB_BATCH];
    size_t n = 0;
    for (size_t i = 0; i < per_tick; i++) {
        size_t b = w->hb_cursor++ % w->devs.nb;
        for (struct rnode *node = rmap_bucket(&w->devs, b); node; node = node->next) {
            struct sess *s = (struct sess *)((char *)node - offsetof(struct sess, node));
            if (!s->active)
                continue;
            s->active = false;
            batch[n++] = dev_of(s->c);
            if (n == HB_BATCH) {
                w->link->ops->heartbeat(w->link, batch, n);
                n = 0;
            }
        }
    }
    if (n)
        w->link->ops->heartbeat(w->link, batch, n);
}
