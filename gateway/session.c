/* Phoenix channel semantics for one socket (see session.h). The gateway serves exactly three
 * topics — `device` (pinned to the authenticated device), `console` and `extensions` — and
 * answers everything else as Phoenix does for an unmatched topic. */
#include "session.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "conn.h"
#include "link.h"
#include "log.h"
#include "phx.h"
#include "worker.h"

enum topic { T_DEVICE, T_CONSOLE, T_EXTENSIONS, T_COUNT };

static const struct span topic_names[T_COUNT] = { SPAN_LIT("device"), SPAN_LIT("console"),
                                                   SPAN_LIT("extensions") };

struct chan {
    char *join_ref;      /* owned; NULL while not joined */
    uint8_t *session;    /* opaque platform session, owned, may be NULL */
    uint32_t join_ref_len;
    uint32_t session_len;
};

struct sess {
    struct chan ch[T_COUNT];
    uint8_t n_joined;
    char device_id[];    /* NUL-terminated */
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

static bool span_eq(struct span a, struct span b)
{
    return a.len == b.len && memcmp(a.p, b.p, a.len) == 0;
}

static bool span_is(struct span a, const char *lit)
{
    size_t n = strlen(lit);
    return a.len == n && memcmp(a.p, lit, n) == 0;
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
    return (struct link_dev){ { c->sess->device_id, strlen(c->sess->device_id) }, c->id };
}

static bool is_msgpack(const struct conn *c)
{
    return c->flags & CONN_F_MSGPACK;
}

/* Send what phx_encode* left in the worker's scratch buffer (rc is their result). */
static void send_encoded(struct conn *c, int rc, struct span event)
{
    struct worker *w = c->w;
    if (rc != 0) {
        LOG(LOG_WARN, "encode_failed", "conn=%llu device=%s event=%.*s error=\"%s\"", (unsigned long long)c->id,
            c->sess ? c->sess->device_id : "", (int)event.len, event.p, phx_strerror(rc));
        return;
    }
    w->stats.phx_out++;
    conn_send(c, is_msgpack(c) ? WS_OP_BINARY : WS_OP_TEXT, w->scratch.p, w->scratch.len);
}

static void send_push(struct conn *c, const struct span *join_ref, const struct span *ref, struct span topic,
                      struct span event, struct span payload)
{
    struct worker *w = c->w;
    w->scratch.len = 0;
    int rc = phx_encode(is_msgpack(c) ? PHX_FMT_MSGPACK : PHX_FMT_JSON, join_ref, ref, topic, event, payload,
                        &w->scratch, w->cfg->max_output);
    send_encoded(c, rc, event);
}

static void send_reply(struct conn *c, const struct span *join_ref, const struct span *ref, struct span topic,
                       const char *status, struct span response)
{
    struct worker *w = c->w;
    w->scratch.len = 0;
    int rc = phx_encode_reply(is_msgpack(c) ? PHX_FMT_MSGPACK : PHX_FMT_JSON, join_ref, ref, topic, status,
                              response, &w->scratch, w->cfg->max_output);
    send_encoded(c, rc, SPAN_LIT("phx_reply"));
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

static void reply_ok_empty(struct conn *c, const struct phx_msg *m)
{
    send_reply(c, m->has_join_ref ? &m->join_ref : NULL, m->has_ref ? &m->ref : NULL, m->topic, "ok",
               PHX_MP_EMPTY_MAP);
}

static void chan_clear(struct sess *s, int t)
{
    struct chan *ch = &s->ch[t];
    if (ch->join_ref)
        s->n_joined--;
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

static int store_session(struct conn *c, struct chan *ch, struct span session)
{
    if (!session.p)
        return 0;
    if (session.len > c->w->cfg->max_session) {
        LOG(LOG_WARN, "session_too_large", "conn=%llu device=%s bytes=%zu", (unsigned long long)c->id,
            c->sess->device_id, session.len);
        return -1;
    }
    uint8_t *copy = NULL;
    if (session.len) {
        copy = malloc(session.len);
        if (!copy)
            return -1;
        memcpy(copy, session.p, session.len);
    }
    free(ch->session);
    ch->session = copy;
    ch->session_len = (uint32_t)session.len;
    return 0;
}

static void apply_effects(struct conn *c, const struct call *call, const struct link_reply *r)
{
    for (size_t i = 0; i < r->n_effects && conn_is_open(c); i++) {
        const struct link_effect *e = &r->effects[i];
        switch (e->kind) {
        case LINK_EFF_PUSH: {
            int t = topic_index(e->topic);
            if (t < 0 || !c->sess->ch[t].join_ref)
                break; /* nobody listens on that topic on this socket */
            struct span jr = { c->sess->ch[t].join_ref, c->sess->ch[t].join_ref_len };
            send_push(c, &jr, NULL, topic_names[t], e->event, e->payload);
            break;
        }
        case LINK_EFF_REPLY:
            if (call && call->has_ref) {
                struct span jr = { call->refs, call->join_ref_len };
                struct span ref = { call->refs + call->join_ref_len, call->ref_len };
                char status[16];
                size_t n = MIN(e->event.len, sizeof(status) - 1);
                memcpy(status, e->event.p, n);
                status[n] = 0;
                send_reply(c, call->join_ref_len ? &jr : NULL, &ref, topic_names[call->topic], status,
                           e->payload);
            }
            break;
        case LINK_EFF_CLOSE: {
            char reason[64];
            size_t n = MIN(e->event.len, sizeof(reason) - 1);
            memcpy(reason, e->event.p, n);
            reason[n] = 0;
            conn_close(c, e->code ? e->code : 1000, reason);
            break;
        }
        default:
            /* subscriptions and timers arrive with the NATS link */
            LOG(LOG_DEBUG, "effect_ignored", "conn=%llu kind=%d", (unsigned long long)c->id, (int)e->kind);
            break;
        }
    }
}

static struct call *call_new(struct conn *c, int t, const struct phx_msg *m)
{
    size_t jl = m->has_join_ref ? m->join_ref.len : 0, rl = m->has_ref ? m->ref.len : 0;
    struct call *call = malloc(sizeof(*call) + jl + rl);
    if (!call)
        return NULL;
    call->c = c;
    call->topic = (uint8_t)t;
    call->has_ref = m->has_ref;
    call->join_ref_len = (uint32_t)jl;
    call->ref_len = (uint32_t)rl;
    if (jl)
        memcpy(call->refs, m->join_ref.p, jl);
    if (rl)
        memcpy(call->refs + jl, m->ref.p, rl);
    return call;
}

static void on_join_done(void *arg, const struct link_reply *r)
{
    struct call *call = arg;
    struct conn *c = call->c;
    if (conn_is_open(c) && c->sess) {
        struct span jr = { call->refs, call->join_ref_len };
        struct span ref = { call->refs + call->join_ref_len, call->ref_len };
        struct chan *ch = &c->sess->ch[call->topic];
        if (r->status == LINK_OK && store_session(c, ch, r->session) == 0) {
            if (chan_mark_joined(c->sess, call->topic, jr) == 0) {
                send_reply(c, &jr, call->has_ref ? &ref : NULL, topic_names[call->topic], "ok",
                           r->response.p ? r->response : PHX_MP_EMPTY_MAP);
                apply_effects(c, call, r);
            } else {
                conn_close(c, 1011, "out of memory");
            }
        } else {
            /* without a platform answer, NervesHub's device join failure (§3.3.2) */
            struct span resp = r->response.p ? r->response : mp_map1(c, "error", "could not connect");
            send_reply(c, &jr, call->has_ref ? &ref : NULL, topic_names[call->topic], "error", resp);
        }
    }
    free(call);
    conn_call_end(c);
}

static void on_message_done(void *arg, const struct link_reply *r)
{
    struct call *call = arg;
    struct conn *c = call->c;
    if (conn_is_open(c) && c->sess) {
        struct chan *ch = &c->sess->ch[call->topic];
        if (r->status == LINK_OK) {
            if (store_session(c, ch, r->session) != 0)
                conn_close(c, 1011, "session too large");
            else
                apply_effects(c, call, r);
        } else {
            LOG(LOG_INFO, "platform_call_failed", "conn=%llu device=%s call=message", (unsigned long long)c->id,
                c->sess->device_id);
        }
    }
    free(call);
    conn_call_end(c);
}

static void on_connect_done(void *arg, const struct link_reply *r)
{
    struct conn *c = arg;
    if (conn_is_open(c) && r->status != LINK_OK) {
        LOG(LOG_INFO, "platform_connect_failed", "conn=%llu device=%s", (unsigned long long)c->id,
            c->sess ? c->sess->device_id : "");
        conn_close(c, 1011, "platform connect failed");
    }
    conn_call_end(c);
}

struct sess *sess_new(struct conn *c, struct span device_id)
{
    size_t n = MIN(device_id.len, 255);
    struct sess *s = calloc(1, sizeof(*s) + n + 1);
    if (!s)
        return NULL;
    memcpy(s->device_id, device_id.p, n);
    c->sess = s;
    struct link_dev d = dev_of(c);
    conn_call_begin(c);
    c->w->link->ops->connect(c->w->link, &d, on_connect_done, c);
    return s;
}

void sess_free(struct conn *c, const char *reason)
{
    struct sess *s = c->sess;
    if (!s)
        return;
    struct link_dev d = dev_of(c);
    c->w->link->ops->disconnect(c->w->link, &d, reason);
    for (int t = 0; t < T_COUNT; t++)
        chan_clear(s, t);
    free(s);
    c->sess = NULL;
}

static void handle_join(struct conn *c, const struct phx_msg *m, int t)
{
    struct sess *s = c->sess;
    if (t < 0) {
        /* includes `device:<id>`: the device topic is pinned to the authenticated device */
        reply_error_reason(c, m, "unmatched topic");
        return;
    }
    if (s->ch[t].join_ref) {
        /* Phoenix shuts the old channel down first; the client sees its phx_close */
        send_phx_close(c, t);
        chan_clear(s, t);
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
        if (chan_mark_joined(s, t, m->join_ref) != 0) {
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
    c->w->link->ops->join(c->w->link, &d, topic_names[t], (struct span){ NULL, 0 }, m->payload, on_join_done,
                          call);
}

static void handle_event(struct conn *c, const struct phx_msg *m, int t)
{
    struct chan *ch = &c->sess->ch[t];
    if (t == T_CONSOLE)
        return; /* console traffic is relayed to operators by the console feature */
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
        return rc == PHX_ERR_NOMEM ? 1011 : 1007;
    }
    c->w->stats.phx_in++;
    if (!c->sess) {
        phx_msg_free(&m);
        return 1011;
    }
    int t = topic_index(m.topic);
    if (span_is(m.topic, "phoenix") && span_is(m.event, "heartbeat")) {
        reply_ok_empty(c, &m);
    } else if (span_is(m.event, "phx_join")) {
        handle_join(c, &m, t);
    } else if (t < 0 || !c->sess->ch[t].join_ref) {
        if (span_is(m.event, "phx_leave"))
            reply_ok_empty(c, &m); /* Phoenix acknowledges leaving a channel it does not have */
        else
            reply_error_reason(c, &m, "unmatched topic");
    } else if (m.has_join_ref &&
               !span_eq(m.join_ref, (struct span){ c->sess->ch[t].join_ref, c->sess->ch[t].join_ref_len })) {
        /* a message for an earlier join of this topic: stale, dropped as Phoenix does */
    } else if (span_is(m.event, "phx_leave")) {
        reply_ok_empty(c, &m);
        if (conn_is_open(c)) {
            send_phx_close(c, t);
            chan_clear(c->sess, t);
        }
    } else {
        handle_event(c, &m, t);
    }
    phx_msg_free(&m);
    return 0;
}
