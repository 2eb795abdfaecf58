/* libFuzzer target: the link codec (proto/lp.c). The first byte picks a decoder (each call's
 * request and reply, the worker inbox, a shared-topic message, an inbox status, a console attach
 * reply, a console output message, the reply to an inbox `topics`; see the K_ enum; new kinds go last so seeds keep theirs), the
 * rest is the message. On success every list is iterated and checked against the contract's
 * limits; the message is re-encoded, decode(encode(x)) must equal x field by field (spans by
 * bytes), and encoding is a fixed point. A proper prefix of an accepted message must be invalid,
 * and the raw msgpack helpers run on the payloads. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "lp.h"

enum {
    K_REQ = 0,
    K_REP = LP_CALL_COUNT,
    K_INBOX = K_REP + 5,
    K_TOPIC,
    K_ISTATUS,
    K_CREPLY,
    K_COUT,
    K_TREPLY, /* the reply to an inbox `topics` */
    N_KINDS
};
static const enum lp_call REPLY_CALLS[5] = {LP_AUTH, LP_CONNECT, LP_JOIN, LP_MESSAGE, LP_NOTIFY};

static struct lp_kv xs[2][LP_MAX_X + 1];
static struct lp_hb hbs[2][LP_MAX_HEARTBEATS + 1];
static struct lp_effect fxs[2][LP_MAX_EFFECTS + 1];
static struct lp_move mvs[2][LP_MAX_MOVES + 1];

static bool span_eq(struct lp_span a, struct lp_span b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

/* A span the decoder returned lies inside the input. */
static void check_inside(struct lp_span s, const uint8_t *p, size_t n)
{
    if (s.n == 0)
        return;
    CHECK(s.p >= p && s.p <= p + n && s.n <= (size_t)(p + n - s.p));
}

static void check_payload(struct lp_span s)
{
    CHECK(s.n > 0 && lp_mp_object_len(s.p, s.n) == s.n);
    struct lp_span v, str;
    uint64_t u;
    int64_t i;
    bool b;
    int rc = lp_mp_map_get(s, "data", &v);
    CHECK(rc >= -1 && rc <= 1);
    if (rc == 1) {
        CHECK(lp_mp_object_len(v.p, v.n) == v.n);
        (void)lp_mp_read_str(v, &str);
        (void)lp_mp_read_bin(v, &str);
        if (lp_mp_read_uint(v, &u) == 0 && u <= INT64_MAX)
            CHECK(lp_mp_read_int(v, &i) == 0 && (uint64_t)i == u);
        (void)lp_mp_read_bool(v, &b);
        (void)lp_mp_is_nil(v);
    }
}

static void check_effect(const struct lp_effect *e)
{
    switch (e->kind) {
    case LP_FX_PUSH:
        CHECK(e->event.n <= LP_MAX_STR);
        check_payload(e->payload);
        break;
    case LP_FX_REPLY:
        CHECK(e->status.n <= LP_MAX_STR);
        check_payload(e->payload);
        break;
    case LP_FX_SUBSCRIBE:
    case LP_FX_UNSUBSCRIBE:
        CHECK(lp_valid_topic(e->topic));
        break;
    case LP_FX_SEND_SELF:
        CHECK(e->msg.n <= LP_MAX_MSG);
        break;
    case LP_FX_SEND_AFTER:
    case LP_FX_START_TIMER:
        CHECK(e->key.n <= LP_MAX_KEY && e->msg.n <= LP_MAX_MSG);
        CHECK(e->ms >= 1 && e->ms <= 0x7fffffffu);
        break;
    case LP_FX_CANCEL_TIMER:
        CHECK(e->key.n <= LP_MAX_KEY);
        break;
    case LP_FX_CLOSE:
        CHECK(e->code >= 1000 && e->code <= 4999 && e->reason.n <= LP_MAX_STR);
        break;
    case LP_FX_SCROLLBACK_APPEND:
    case LP_FX_SCROLLBACK_CLEAR:
        break;
    case LP_FX_SCROLLBACK_REPLAY:
        CHECK(e->topic.n >= 1 && e->topic.n <= LP_MAX_STR);
        break;
    default:
        CHECK(!"unknown effect kind");
    }
}

static bool effect_eq(const struct lp_effect *a, const struct lp_effect *b)
{
    return a->kind == b->kind && span_eq(a->event, b->event) && span_eq(a->payload, b->payload) &&
           span_eq(a->status, b->status) && span_eq(a->topic, b->topic) && span_eq(a->key, b->key) &&
           span_eq(a->msg, b->msg) && span_eq(a->data, b->data) && span_eq(a->reason, b->reason) &&
           a->ms == b->ms && a->code == b->code;
}

/* Fills the arrays an encoder reads from the iterators a decoder filled. */
static void req_lists(struct lp_request *r, int slot)
{
    size_t n = 0;
    struct lp_iter it = r->x_iter;
    while (lp_kv_next(&it, &xs[slot][n])) {
        CHECK(xs[slot][n].name.n <= LP_MAX_X_NAME && xs[slot][n].value.n <= LP_MAX_X_VALUE);
        n++;
        CHECK(n <= LP_MAX_X);
    }
    CHECK(it.left == 0);
    r->x = xs[slot], r->n_x = n;
    n = 0;
    it = r->hb_iter;
    while (lp_hb_next(&it, &hbs[slot][n])) {
        CHECK(lp_valid_dev(hbs[slot][n].dev) && hbs[slot][n].session.n <= LP_MAX_SESSION);
        n++;
        CHECK(n <= LP_MAX_HEARTBEATS);
    }
    CHECK(it.left == 0);
    r->hb = hbs[slot], r->n_hb = n;
}

static void rep_lists(struct lp_reply *r, int slot)
{
    size_t n = 0;
    struct lp_iter it = r->fx_iter;
    while (lp_effect_next(&it, &fxs[slot][n])) {
        check_effect(&fxs[slot][n]);
        n++;
        CHECK(n <= LP_MAX_EFFECTS);
    }
    CHECK(it.left == 0);
    CHECK(n == r->n_fx);
    r->effects = fxs[slot], r->n_effects = n;
}

static void req_check_eq(const struct lp_request *a, const struct lp_request *b)
{
    CHECK(a->call == b->call && span_eq(a->gw, b->gw) && a->worker == b->worker);
    CHECK(a->cref == b->cref && span_eq(a->dev, b->dev) && span_eq(a->peer, b->peer));
    CHECK(a->has_cert == b->has_cert && span_eq(a->fp, b->fp) && span_eq(a->der, b->der) &&
          span_eq(a->cn, b->cn));
    CHECK(a->n_x == b->n_x);
    for (size_t i = 0; i < a->n_x; i++)
        CHECK(span_eq(a->x[i].name, b->x[i].name) && span_eq(a->x[i].value, b->x[i].value));
    CHECK(span_eq(a->session, b->session) && span_eq(a->topic, b->topic) && span_eq(a->event, b->event));
    CHECK(span_eq(a->payload, b->payload) && span_eq(a->msg, b->msg) && span_eq(a->from, b->from));
    CHECK(span_eq(a->reason, b->reason));
    CHECK(a->n_hb == b->n_hb);
    for (size_t i = 0; i < a->n_hb; i++)
        CHECK(span_eq(a->hb[i].dev, b->hb[i].dev) && span_eq(a->hb[i].session, b->hb[i].session));
}

static void rep_check_eq(const struct lp_reply *a, const struct lp_reply *b)
{
    CHECK(a->st == b->st && span_eq(a->reason, b->reason) && span_eq(a->dev, b->dev));
    CHECK(a->has_session == b->has_session && span_eq(a->session, b->session));
    CHECK(span_eq(a->response, b->response) && span_eq(a->fw, b->fw));
    CHECK(a->n_effects == b->n_effects && a->n_fx == b->n_fx);
    for (size_t i = 0; i < a->n_effects; i++)
        CHECK(effect_eq(&a->effects[i], &b->effects[i]));
}

static void fuzz_request(enum lp_call c, const uint8_t *p, size_t n)
{
    struct lp_request a, b;
    struct lp_out o = {0}, o2 = {0};
    if (lp_decode_request(c, p, n, &a, NULL) != 0)
        return;
    CHECK(a.call == c && lp_valid_gateway_id(a.gw));
    check_inside(a.gw, p, n);
    check_inside(a.session, p, n);
    check_inside(a.payload, p, n);
    if (c != LP_AUTH && c != LP_HEARTBEAT)
        CHECK(lp_valid_dev(a.dev));
    if (c == LP_JOIN || c == LP_MESSAGE)
        check_payload(a.payload);
    if (c == LP_AUTH && a.has_cert)
        CHECK(a.fp.n == 40);
    if (a.from.n)
        CHECK(lp_valid_topic(a.from));
    CHECK(a.session.n <= LP_MAX_SESSION && a.msg.n <= LP_MAX_MSG);
    req_lists(&a, 0);
    CHECK(lp_encode_request(&o, &a) == 0);
    CHECK(lp_decode_request(c, o.p, o.n, &b, NULL) == 0);
    req_lists(&b, 1);
    req_check_eq(&a, &b);
    CHECK(lp_encode_request(&o2, &b) == 0);
    CHECK(o2.n == o.n && memcmp(o2.p, o.p, o.n) == 0);
    lp_out_free(&o);
    lp_out_free(&o2);
}

static void fuzz_reply(enum lp_call c, const uint8_t *p, size_t n)
{
    struct lp_reply a, b;
    struct lp_out o = {0}, o2 = {0};
    if (lp_decode_reply(c, p, n, &a, NULL) != 0)
        return;
    check_inside(a.session, p, n);
    check_inside(a.response, p, n);
    if (a.response.n)
        check_payload(a.response);
    if (a.st == LP_ST_OK && c == LP_AUTH)
        CHECK(lp_valid_dev(a.dev) && a.has_session);
    if (a.st == LP_ST_OK && c == LP_JOIN)
        CHECK(a.has_session);
    CHECK(a.session.n <= LP_MAX_SESSION);
    rep_lists(&a, 0);
    CHECK(lp_encode_reply(&o, c, &a) == 0);
    CHECK(lp_decode_reply(c, o.p, o.n, &b, NULL) == 0);
    rep_lists(&b, 1);
    rep_check_eq(&a, &b);
    CHECK(lp_encode_reply(&o2, c, &b) == 0);
    CHECK(o2.n == o.n && memcmp(o2.p, o.p, o.n) == 0);
    lp_out_free(&o);
    lp_out_free(&o2);
}

static void fuzz_inbox(const uint8_t *p, size_t n)
{
    struct lp_inbox a, b;
    struct lp_out o = {0};
    if (lp_decode_inbox(p, n, &a, NULL) != 0)
        return;
    if (a.kind == LP_IN_TOPICS) {
        CHECK(a.n_moves >= 1 && a.n_moves <= LP_MAX_MOVES);
        CHECK(span_eq(a.topic, lp_cspan("device")) || span_eq(a.topic, lp_cspan("extensions")));
        size_t k = 0;
        struct lp_iter it = a.moves_iter;
        while (lp_move_next(&it, &mvs[0][k])) {
            const struct lp_move *m = &mvs[0][k];
            check_inside(m->dev, p, n);
            CHECK(lp_valid_dev(m->dev) && (m->unsub.n || m->sub.n));
            CHECK(!m->unsub.n || lp_valid_topic(m->unsub));
            CHECK(!m->sub.n || lp_valid_topic(m->sub));
            k++;
            CHECK(k <= LP_MAX_MOVES);
        }
        CHECK(it.left == 0 && k == a.n_moves);
        a.moves = mvs[0];
        CHECK(lp_encode_inbox(&o, &a) == 0);
        CHECK(lp_decode_inbox(o.p, o.n, &b, NULL) == 0);
        CHECK(b.kind == LP_IN_TOPICS && b.n_moves == a.n_moves && span_eq(a.topic, b.topic));
        it = b.moves_iter;
        for (size_t i = 0; i < a.n_moves; i++) {
            CHECK(lp_move_next(&it, &mvs[1][i]) == 1);
            CHECK(span_eq(mvs[0][i].dev, mvs[1][i].dev) && mvs[0][i].cref == mvs[1][i].cref);
            CHECK(span_eq(mvs[0][i].unsub, mvs[1][i].unsub) && span_eq(mvs[0][i].sub, mvs[1][i].sub));
        }
        CHECK(lp_move_next(&it, &mvs[1][0]) == 0);
        lp_out_free(&o);
        return;
    }
    CHECK(lp_valid_dev(a.dev));
    if (a.kind == LP_IN_PUSH)
        check_payload(a.payload);
    if (a.kind == LP_IN_KICK)
        CHECK(a.code >= 1000 && a.code <= 4999);
    if (a.kind == LP_IN_CONSOLE_ATTACH || a.kind == LP_IN_CONSOLE_DETACH)
        CHECK(lp_valid_op(a.op));
    if (a.lease_ms)
        CHECK(a.lease_ms >= LP_LEASE_MIN_MS && a.lease_ms <= LP_LEASE_MAX_MS);
    CHECK(lp_encode_inbox(&o, &a) == 0);
    CHECK(lp_decode_inbox(o.p, o.n, &b, NULL) == 0);
    CHECK(a.kind == b.kind && span_eq(a.dev, b.dev) && a.has_cref == b.has_cref && a.cref == b.cref);
    CHECK(span_eq(a.topic, b.topic) && span_eq(a.event, b.event) && span_eq(a.payload, b.payload));
    CHECK(span_eq(a.msg, b.msg) && a.code == b.code && span_eq(a.reason, b.reason));
    CHECK(span_eq(a.op, b.op) && a.no_scrollback == b.no_scrollback && a.lease_ms == b.lease_ms);
    lp_out_free(&o);
}

static void fuzz_topic(const uint8_t *p, size_t n)
{
    struct lp_topic_msg a, b;
    struct lp_out o = {0};
    if (lp_decode_topic_msg(p, n, &a, NULL) != 0)
        return;
    if (a.kind == LP_TOPIC_PUSH)
        check_payload(a.payload);
    CHECK(lp_encode_topic_msg(&o, &a) == 0);
    CHECK(lp_decode_topic_msg(o.p, o.n, &b, NULL) == 0);
    CHECK(a.kind == b.kind && span_eq(a.event, b.event) && span_eq(a.payload, b.payload));
    CHECK(span_eq(a.skip_fw, b.skip_fw) && span_eq(a.msg, b.msg));
    lp_out_free(&o);
}

static void fuzz_status(const uint8_t *p, size_t n)
{
    enum lp_inbox_status a, b;
    struct lp_out o = {0};
    if (lp_decode_inbox_status(p, n, &a, NULL) != 0)
        return;
    CHECK(lp_encode_inbox_status(&o, a) == 0);
    CHECK(lp_decode_inbox_status(o.p, o.n, &b, NULL) == 0 && a == b);
    lp_out_free(&o);
}

static void fuzz_console_reply(const uint8_t *p, size_t n)
{
    struct lp_console_reply a, b;
    struct lp_out o = {0}, o2 = {0};
    if (lp_decode_console_reply(p, n, &a, NULL) != 0)
        return;
    check_inside(a.scrollback, p, n);
    check_inside(a.version, p, n);
    CHECK(a.scrollback.n <= LP_MAX_SCROLLBACK && a.version.n <= LP_MAX_CONSOLE_VERSION);
    if (a.st != LP_CST_OK)
        CHECK(!a.has_scrollback && a.version.n == 0);
    CHECK(lp_encode_console_reply(&o, &a) == 0);
    CHECK(lp_decode_console_reply(o.p, o.n, &b, NULL) == 0);
    CHECK(a.st == b.st && a.has_scrollback == b.has_scrollback && span_eq(a.scrollback, b.scrollback) &&
          span_eq(a.version, b.version));
    CHECK(lp_encode_console_reply(&o2, &b) == 0);
    CHECK(o2.n == o.n && memcmp(o2.p, o.p, o.n) == 0);
    lp_out_free(&o);
    lp_out_free(&o2);
}

static void fuzz_topics_reply(const uint8_t *p, size_t n)
{
    uint32_t a = 0, b = 0;
    struct lp_out o = {0};
    if (lp_decode_topics_reply(p, n, &a, NULL) != 0)
        return;
    CHECK(a <= LP_MAX_MOVES);
    CHECK(lp_encode_topics_reply(&o, a) == 0);
    CHECK(lp_decode_topics_reply(o.p, o.n, &b, NULL) == 0 && a == b);
    lp_out_free(&o);
}

static void fuzz_console_out(const uint8_t *p, size_t n)
{
    struct lp_console_out a, b;
    struct lp_out o = {0};
    if (lp_decode_console_out(p, n, &a, NULL) != 0)
        return;
    CHECK(a.event.n >= 1 && a.event.n <= LP_MAX_STR);
    check_payload(a.payload);
    CHECK(lp_encode_console_out(&o, &a) == 0);
    CHECK(lp_decode_console_out(o.p, o.n, &b, NULL) == 0);
    CHECK(span_eq(a.event, b.event) && span_eq(a.payload, b.payload));
    lp_out_free(&o);
}

/* Decodes as kind; returns the decoder's status only. */
static int decode_kind(int kind, const uint8_t *p, size_t n)
{
    struct lp_request rq;
    struct lp_reply rp;
    struct lp_inbox in;
    struct lp_topic_msg tm;
    enum lp_inbox_status st;
    struct lp_console_reply cr;
    struct lp_console_out co;
    uint32_t applied;
    const char *err = NULL;
    int rc;
    if (kind < K_REP)
        rc = lp_decode_request((enum lp_call)kind, p, n, &rq, &err);
    else if (kind < K_INBOX)
        rc = lp_decode_reply(REPLY_CALLS[kind - K_REP], p, n, &rp, &err);
    else if (kind == K_INBOX)
        rc = lp_decode_inbox(p, n, &in, &err);
    else if (kind == K_TOPIC)
        rc = lp_decode_topic_msg(p, n, &tm, &err);
    else if (kind == K_CREPLY)
        rc = lp_decode_console_reply(p, n, &cr, &err);
    else if (kind == K_COUT)
        rc = lp_decode_console_out(p, n, &co, &err);
    else if (kind == K_TREPLY)
        rc = lp_decode_topics_reply(p, n, &applied, &err);
    else
        rc = lp_decode_inbox_status(p, n, &st, &err);
    CHECK(rc == 0 || rc == -1);
    CHECK((rc == 0) == (err == NULL));
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int kind = data[0] % N_KINDS;
    const uint8_t *p = data + 1;
    size_t n = size - 1;

    size_t len = lp_mp_object_len(p, n);
    CHECK(len <= n);
    if (decode_kind(kind, p, n) == 0) {
        /* a proper prefix (at a point derived from the input) is invalid */
        size_t k = n > 1 ? (size_t)p[n / 2] * 257 % n : 0;
        uint8_t *head = malloc(k ? k : 1);
        memcpy(head, p, k);
        CHECK(decode_kind(kind, head, k) == -1);
        free(head);
        /* one object, unless payloads at the depth limit put the whole message one level over */
        CHECK(len == n || len == 0);
    }

    if (kind < K_REP)
        fuzz_request((enum lp_call)kind, p, n);
    else if (kind < K_INBOX)
        fuzz_reply(REPLY_CALLS[kind - K_REP], p, n);
    else if (kind == K_INBOX)
        fuzz_inbox(p, n);
    else if (kind == K_TOPIC)
        fuzz_topic(p, n);
    else if (kind == K_CREPLY)
        fuzz_console_reply(p, n);
    else if (kind == K_COUT)
        fuzz_console_out(p, n);
    else if (kind == K_TREPLY)
        fuzz_topics_reply(p, n);
    else
        fuzz_status(p, n);
    return 0;
}
