/* Unit tests for proto/lp.c (the link codec, proto/LINK.md) through its public API: golden byte
 * vectors for every message kind (decode to the expected fields, and the encoder reproduces the
 * bytes exactly), round trips with every field set, a model of every message kind mutated key by
 * key (missing, duplicated, wrong type, reordered, unknown keys), every limit at max and max+1 on
 * both the decoder and the encoder, truncation at every length against a guard page, integers in
 * every msgpack width, the effects and their argument ranges, the msgpack helpers, and the name
 * validators. The golden vectors are also unpacked with msgpack-c (an independent decoder). */
#include "../lib/test.h"

#include <msgpack.h>

#include "lp.h"

/* ---- helpers ---- */

#define CS(s)                                                                                                \
    {                                                                                                        \
        (const uint8_t *)(s), sizeof(s) - 1                                                                  \
    }

static struct lp_span S(const char *s) {
    return lp_cspan(s);
}

/* Spans compare by bytes; empty spans may have NULL pointers (memcmp must not see them). */
#define SPAN_EQ(a, b)                                                                                        \
    do {                                                                                                     \
        struct lp_span a_ = (a), b_ = (b);                                                                   \
        if (a_.n != b_.n || (a_.n && memcmp(a_.p, b_.p, a_.n) != 0))                                         \
            TEST_FAIL("%s[%zu] != %s[%zu]", #a, a_.n, #b, b_.n);                                             \
    } while (0)
#define SPAN_IS(a, s) ASSERT_MEM_EQ((a).p, (a).n, (s), strlen(s))

/* Message kinds for the generic helpers: a request or reply of a call, or one of the others. */
enum {
    M_REQ = 0,
    M_REP = 8,
    M_INBOX = 16,
    M_TOPIC,
    M_ISTATUS,
    M_CREPLY, /* console_attach reply */
    M_COUT,   /* console output */
    M_TREPLY  /* the reply to an inbox `topics` */
};

/* Decodes from a copy that ends at a guard page, so any over-read faults. Only the status is
 * returned: the struct would point into the freed copy. */
static int dec_guarded(int kind, const uint8_t *p, size_t n, const char **err)
{
    uint8_t *g = test_guard_copy(p, n);
    struct lp_request rq;
    struct lp_reply rp;
    struct lp_inbox in;
    struct lp_topic_msg tm;
    enum lp_inbox_status st;
    struct lp_console_reply cr;
    struct lp_console_out co;
    uint32_t applied;
    int rc;
    if (kind < M_REP)
        rc = lp_decode_request((enum lp_call)(kind - M_REQ), g, n, &rq, err);
    else if (kind < M_INBOX)
        rc = lp_decode_reply((enum lp_call)(kind - M_REP), g, n, &rp, err);
    else if (kind == M_INBOX)
        rc = lp_decode_inbox(g, n, &in, err);
    else if (kind == M_TOPIC)
        rc = lp_decode_topic_msg(g, n, &tm, err);
    else if (kind == M_CREPLY)
        rc = lp_decode_console_reply(g, n, &cr, err);
    else if (kind == M_COUT)
        rc = lp_decode_console_out(g, n, &co, err);
    else if (kind == M_TREPLY)
        rc = lp_decode_topics_reply(g, n, &applied, err);
    else
        rc = lp_decode_inbox_status(g, n, &st, err);
    test_guard_free(g);
    return rc;
}

static int dec_out(int kind, const struct lp_out *o)
{
    return dec_guarded(kind, o->p, o->n, NULL);
}

/* Strings of a repeated byte, for limits. Leaked: tests run in short-lived children. */
static struct lp_span rep(char c, size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    memset(p, c, n);
    return (struct lp_span){p, n};
}

static void print_hex(const char *label, const uint8_t *p, size_t n)
{
    fprintf(stderr, "  %s: ", label);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "%02x", p[i]);
    fprintf(stderr, "\n");
}

/* Materialises a decoded struct's iterators into arrays, so decoded and hand-built structs
 * compare alike. */
static struct lp_kv g_x[2][LP_MAX_X + 1];
static struct lp_hb g_hb[2][LP_MAX_HEARTBEATS + 1];
static struct lp_effect g_fx[2][LP_MAX_EFFECTS + 1];
static struct lp_move g_mv[2][LP_MAX_MOVES + 1];

static void inbox_lists(struct lp_inbox *m, int slot)
{
    if (!m->moves) {
        size_t n = 0;
        while (n <= LP_MAX_MOVES && lp_move_next(&m->moves_iter, &g_mv[slot][n]))
            n++;
        ASSERT_EQ(n, m->n_moves);
        m->moves = g_mv[slot];
    }
}

static void req_lists(struct lp_request *r, int slot)
{
    if (!r->x) {
        size_t n = 0;
        while (n <= LP_MAX_X && lp_kv_next(&r->x_iter, &g_x[slot][n]))
            n++;
        r->x = g_x[slot], r->n_x = n;
    }
    if (!r->hb) {
        size_t n = 0;
        while (n <= LP_MAX_HEARTBEATS && lp_hb_next(&r->hb_iter, &g_hb[slot][n]))
            n++;
        r->hb = g_hb[slot], r->n_hb = n;
    }
}

static void rep_lists(struct lp_reply *r, int slot)
{
    if (!r->effects) {
        size_t n = 0;
        while (n <= LP_MAX_EFFECTS && lp_effect_next(&r->fx_iter, &g_fx[slot][n]))
            n++;
        ASSERT_EQ(n, r->n_fx);
        r->effects = g_fx[slot], r->n_effects = n;
    }
}

static void effect_eq(const struct lp_effect *a, const struct lp_effect *b)
{
    ASSERT_EQ(a->kind, b->kind);
    SPAN_EQ(a->event, b->event);
    SPAN_EQ(a->payload, b->payload);
    SPAN_EQ(a->status, b->status);
    SPAN_EQ(a->topic, b->topic);
    SPAN_EQ(a->key, b->key);
    SPAN_EQ(a->msg, b->msg);
    SPAN_EQ(a->data, b->data);
    SPAN_EQ(a->reason, b->reason);
    ASSERT_EQ(a->ms, b->ms);
    ASSERT_EQ(a->code, b->code);
}

static void req_eq(struct lp_request a, struct lp_request b)
{
    req_lists(&a, 0);
    req_lists(&b, 1);
    ASSERT_EQ(a.call, b.call);
    SPAN_EQ(a.gw, b.gw);
    ASSERT_EQ(a.worker, b.worker);
    if (a.call != LP_HEARTBEAT)
        ASSERT(a.cref == b.cref);
    SPAN_EQ(a.dev, b.dev);
    SPAN_EQ(a.peer, b.peer);
    ASSERT_EQ(a.has_cert, b.has_cert);
    SPAN_EQ(a.fp, b.fp);
    SPAN_EQ(a.der, b.der);
    SPAN_EQ(a.cn, b.cn);
    ASSERT_EQ(a.n_x, b.n_x);
    for (size_t i = 0; i < a.n_x; i++) {
        SPAN_EQ(a.x[i].name, b.x[i].name);
        SPAN_EQ(a.x[i].value, b.x[i].value);
    }
    SPAN_EQ(a.session, b.session);
    SPAN_EQ(a.topic, b.topic);
    SPAN_EQ(a.event, b.event);
    SPAN_EQ(a.payload, b.payload);
    SPAN_EQ(a.msg, b.msg);
    SPAN_EQ(a.from, b.from);
    SPAN_EQ(a.reason, b.reason);
    ASSERT_EQ(a.n_hb, b.n_hb);
    for (size_t i = 0; i < a.n_hb; i++) {
        SPAN_EQ(a.hb[i].dev, b.hb[i].dev);
        SPAN_EQ(a.hb[i].session, b.hb[i].session);
    }
}

static void rep_eq(struct lp_reply a, struct lp_reply b)
{
    rep_lists(&a, 0);
    rep_lists(&b, 1);
    ASSERT_EQ(a.st, b.st);
    SPAN_EQ(a.reason, b.reason);
    SPAN_EQ(a.dev, b.dev);
    ASSERT_EQ(a.has_session, b.has_session);
    SPAN_EQ(a.session, b.session);
    SPAN_EQ(a.response, b.response);
    SPAN_EQ(a.fw, b.fw);
    ASSERT_EQ(a.n_effects, b.n_effects);
    for (size_t i = 0; i < a.n_effects; i++)
        effect_eq(&a.effects[i], &b.effects[i]);
}

static void inbox_eq(const struct lp_inbox *pa, const struct lp_inbox *pb)
{
    struct lp_inbox a1 = *pa, b1 = *pb;
    const struct lp_inbox *a = &a1, *b = &b1;
    inbox_lists(&a1, 0);
    inbox_lists(&b1, 1);
    ASSERT_EQ(a->n_moves, b->n_moves);
    for (size_t i = 0; i < a->n_moves; i++) {
        SPAN_EQ(a->moves[i].dev, b->moves[i].dev);
        ASSERT(a->moves[i].cref == b->moves[i].cref);
        SPAN_EQ(a->moves[i].unsub, b->moves[i].unsub);
        SPAN_EQ(a->moves[i].sub, b->moves[i].sub);
    }
    ASSERT_EQ(a->kind, b->kind);
    SPAN_EQ(a->dev, b->dev);
    ASSERT_EQ(a->has_cref, b->has_cref);
    ASSERT(a->cref == b->cref);
    SPAN_EQ(a->topic, b->topic);
    SPAN_EQ(a->event, b->event);
    SPAN_EQ(a->payload, b->payload);
    SPAN_EQ(a->msg, b->msg);
    ASSERT_EQ(a->code, b->code);
    SPAN_EQ(a->reason, b->reason);
    SPAN_EQ(a->op, b->op);
    ASSERT_EQ(a->no_scrollback, b->no_scrollback);
    ASSERT_EQ(a->lease_ms, b->lease_ms);
}

static void creply_eq(const struct lp_console_reply *a, const struct lp_console_reply *b)
{
    ASSERT_EQ(a->st, b->st);
    ASSERT_EQ(a->has_scrollback, b->has_scrollback);
    SPAN_EQ(a->scrollback, b->scrollback);
    SPAN_EQ(a->version, b->version);
}

static void cout_eq(const struct lp_console_out *a, const struct lp_console_out *b)
{
    SPAN_EQ(a->event, b->event);
    SPAN_EQ(a->payload, b->payload);
}

static void topic_eq(const struct lp_topic_msg *a, const struct lp_topic_msg *b)
{
    ASSERT_EQ(a->kind, b->kind);
    SPAN_EQ(a->event, b->event);
    SPAN_EQ(a->payload, b->payload);
    SPAN_EQ(a->skip_fw, b->skip_fw);
    SPAN_EQ(a->msg, b->msg);
}

/* ---- samples ---- */

static const uint8_t DER[] = {0x30, 0x03, 0x02, 0x01, 0x05};
static const uint8_t SESS[] = {0x01, 0x02};
static const uint8_t MAP_FW[] = {0x81, 0xa2, 'f', 'w', 0xa1, 'x'}; /* {"fw":"x"} */
static const uint8_t ARR_1_NIL[] = {0x92, 0x01, 0xc0};             /* [1,nil] */
static const uint8_t EMPTY_MAP[] = {0x80};
static const uint8_t DATA_H[] = {0x81, 0xa4, 'd', 'a', 't', 'a', 0xa1, 'h'}; /* {"data":"h"} */
static const uint8_t DETACH[] = {0xa6, 'd', 'e', 't', 'a', 'c', 'h'};        /* "detach" */
static const struct lp_kv XS[] = {{CS("x-nh-tag"), CS("a")}};
static const struct lp_hb HBS[] = {{CS("dev-1"), {SESS, 1}}, {CS("dev-2"), {SESS + 1, 1}}};
#define SP(a) ((struct lp_span){(a), sizeof(a)})

static struct lp_request req_base(enum lp_call c)
{
    struct lp_request r = {0};
    r.call = c;
    r.gw = S("gw1");
    r.worker = 2;
    r.cref = 7;
    if (c != LP_AUTH && c != LP_HEARTBEAT)
        r.dev = S("dev-1");
    return r;
}

static struct lp_request sample_request(enum lp_call c)
{
    struct lp_request r = req_base(c);
    switch (c) {
    case LP_AUTH:
        r.peer = S("10.0.0.1:5000");
        r.has_cert = true;
        r.fp = S("0123456789ABCDEF0123456789ABCDEF01234567");
        r.der = SP(DER);
        r.cn = S("dev-1");
        r.x = XS, r.n_x = 1;
        break;
    case LP_CONNECT:
        r.cref = 300;
        r.session = SP(SESS);
        r.peer = S("10.0.0.1:5000");
        break;
    case LP_DISCONNECT:
        r.session = SP(SESS);
        r.reason = S("kicked");
        break;
    case LP_HEARTBEAT:
        r.worker = 1;
        r.hb = HBS, r.n_hb = 2;
        break;
    case LP_JOIN:
        r.topic = S("device");
        r.session = S("S");
        r.payload = SP(MAP_FW);
        break;
    case LP_MESSAGE:
        r.topic = S("extensions");
        r.session = S("S");
        r.event = S("health:report");
        r.payload = SP(ARR_1_NIL);
        break;
    case LP_NOTIFY:
        r.topic = S("device");
        r.session = S("S");
        r.msg = S("M");
        r.from = S("deployment:12");
        break;
    default:
        break;
    }
    return r;
}

static struct lp_effect FX_JOIN[4], FX_MSG[8];

static void init_effects(void)
{
    memset(FX_JOIN, 0, sizeof(FX_JOIN));
    memset(FX_MSG, 0, sizeof(FX_MSG));
    FX_JOIN[0].kind = LP_FX_PUSH, FX_JOIN[0].event = S("update"), FX_JOIN[0].payload = SP(EMPTY_MAP);
    FX_JOIN[1].kind = LP_FX_SUBSCRIBE, FX_JOIN[1].topic = S("deployment:12");
    FX_JOIN[2].kind = LP_FX_SEND_AFTER, FX_JOIN[2].key = S("k"), FX_JOIN[2].msg = S("m"),
    FX_JOIN[2].ms = 1000;
    FX_JOIN[3].kind = LP_FX_CLOSE, FX_JOIN[3].code = 4000, FX_JOIN[3].reason = S("bye");
    FX_MSG[0].kind = LP_FX_REPLY, FX_MSG[0].status = S("error"), FX_MSG[0].payload = SP(DETACH);
    FX_MSG[1].kind = LP_FX_UNSUBSCRIBE, FX_MSG[1].topic = S("deployment:12");
    FX_MSG[2].kind = LP_FX_SEND_SELF, FX_MSG[2].msg = S("m");
    FX_MSG[3].kind = LP_FX_START_TIMER, FX_MSG[3].key = S("t"), FX_MSG[3].msg = S("m"), FX_MSG[3].ms = 70000;
    FX_MSG[4].kind = LP_FX_CANCEL_TIMER, FX_MSG[4].key = S("t");
    FX_MSG[5].kind = LP_FX_SCROLLBACK_APPEND, FX_MSG[5].data = S("iex> ");
    FX_MSG[6].kind = LP_FX_SCROLLBACK_CLEAR;
    FX_MSG[7].kind = LP_FX_SCROLLBACK_REPLAY, FX_MSG[7].topic = S("nh.console.dev-1");
}

/* variant: 0 the main sample, 1 an alternative (refused / minimal) */
static struct lp_reply sample_reply(enum lp_call c, int variant)
{
    struct lp_reply r = {0};
    init_effects();
    switch (c) {
    case LP_AUTH:
        if (variant) {
            r.st = LP_ST_REFUSED, r.reason = S("unknown device");
        } else {
            r.dev = S("dev-1"), r.has_session = true, r.session = S("\n");
        }
        break;
    case LP_CONNECT:
        if (!variant)
            r.has_session = true, r.session = S("C");
        else
            r.st = LP_ST_ERROR;
        break;
    case LP_JOIN:
        if (variant) {
            r.st = LP_ST_REFUSED, r.response = SP(DETACH);
        } else {
            r.has_session = true, r.session = S("J");
            r.response = SP(EMPTY_MAP);
            r.fw = S("uuid");
            r.effects = FX_JOIN, r.n_effects = 4;
        }
        break;
    case LP_MESSAGE:
        if (!variant)
            r.effects = FX_MSG, r.n_effects = 8;
        break;
    case LP_NOTIFY:
        if (variant) {
            r.has_session = true, r.session = S("N");
        } else {
            r.st = LP_ST_ERROR, r.reason = S("boom");
        }
        break;
    default:
        break;
    }
    return r;
}

static struct lp_inbox sample_inbox(enum lp_inbox_kind k, int variant)
{
    struct lp_inbox m = {0};
    m.kind = k;
    m.dev = S("dev-1");
    switch (k) {
    case LP_IN_PUSH:
        m.has_cref = true, m.cref = 9;
        m.topic = S("console"), m.event = S("dn"), m.payload = SP(DATA_H);
        break;
    case LP_IN_NOTIFY:
        m.topic = S("device"), m.msg = S("M");
        break;
    case LP_IN_KICK:
        if (variant) {
            m.code = 1001; /* encoded, so the decoder does not need its default */
        } else {
            m.has_cref = true, m.cref = 0x100000000ull;
            m.code = 4001, m.reason = S("x");
        }
        break;
    case LP_IN_CONSOLE_ATTACH:
        m.op = S("op-1");
        if (!variant)
            m.no_scrollback = true, m.lease_ms = 15000;
        break;
    case LP_IN_CONSOLE_DETACH:
        m.op = S("op-1");
        m.has_cref = true, m.cref = 9;
        break;
    case LP_IN_TOPICS: {
        static const struct lp_move mv[] = {
            {CS("dev-1"), 9, CS("deployment:1"), CS("deployment:2")},
            {CS("dev-2"), 0x100000000ull, {NULL, 0}, CS("deployment:2")},
            {CS("dev-3"), 0, CS("deployment:2"), {NULL, 0}},
        };
        m.dev = (struct lp_span){NULL, 0};
        m.topic = S(variant ? "extensions" : "device");
        m.moves = mv, m.n_moves = variant ? 1 : 3;
        break;
    }
    }
    return m;
}

static const uint8_t IEX[] = {'i', 'e', 'x', '>', ' '};

/* Variants: 0 ok with scrollback and version, 1 ok bare (a renewal), 2 full, 3 not_joined. */
static struct lp_console_reply sample_creply(int variant)
{
    struct lp_console_reply r = {0};
    switch (variant) {
    case 0:
        r.has_scrollback = true, r.scrollback = SP(IEX), r.version = S("2.0.0");
        break;
    case 2:
        r.st = LP_CST_FULL;
        break;
    case 3:
        r.st = LP_CST_NOT_JOINED;
        break;
    default:
        break;
    }
    return r;
}

static const uint8_t REASON_LEFT[] = {0x81, 0xa6, 'r', 'e', 'a', 's', 'o', 'n', 0xa4, 'l', 'e', 'f', 't'};

static struct lp_console_out sample_cout(int variant)
{
    struct lp_console_out m;
    if (variant)
        m.event = S("closed"), m.payload = SP(REASON_LEFT);
    else
        m.event = S("up"), m.payload = SP(DATA_H);
    return m;
}

static struct lp_topic_msg sample_topic(enum lp_topic_kind k)
{
    struct lp_topic_msg m = {0};
    m.kind = k;
    if (k == LP_TOPIC_PUSH)
        m.event = S("update"), m.payload = SP(EMPTY_MAP), m.skip_fw = S("uuid");
    else
        m.msg = S("M");
    return m;
}

/* ---- golden vectors ---- */

struct golden {
    int kind;
    int variant; /* reply/inbox sample variant; for kinds with a subkind: the subkind */
    const char *hex;
};

/* The exact bytes the encoder produces for the samples above: an encoder change that alters the
 * wire fails here. Written out by hand from the msgpack spec (key order: v first, then as the
 * encoder writes them). */
static const struct golden GOLDEN[] = {
    /* auth request: {v:1,gw:"gw1",w:2,cref:7,peer:"10.0.0.1:5000",fp:...,der:bin,cn:"dev-1",
     *  x:{"x-nh-tag":"a"}} */
    {M_REQ + LP_AUTH, 0,
     "89 a1 76 01 a2 6777 a3 677731 a1 77 02 a4 63726566 07 a4 70656572 ad 31302e302e302e313a35303030"
     " a2 6670 d9 28 30313233343536373839414243444546303132333435363738394142434445463031323334353637"
     " a3 646572 c4 05 3003020105 a2 636e a5 6465762d31 a1 78 81 a8 782d6e682d746167 a1 61"},
    /* connect: cref 300 as uint16 */
    {M_REQ + LP_CONNECT, 0,
     "87 a1 76 01 a2 6777 a3 677731 a1 77 02 a4 63726566 cd 012c a3 646576 a5 6465762d31"
     " a1 73 c4 02 0102 a4 70656572 ad 31302e302e302e313a35303030"},
    {M_REQ + LP_DISCONNECT, 0,
     "87 a1 76 01 a2 6777 a3 677731 a1 77 02 a4 63726566 07 a3 646576 a5 6465762d31"
     " a1 73 c4 02 0102 a6 726561736f6e a6 6b69636b6564"},
    /* heartbeat: no cref, devs [["dev-1",bin 01],["dev-2",bin 02]] */
    {M_REQ + LP_HEARTBEAT, 0,
     "84 a1 76 01 a2 6777 a3 677731 a1 77 01 a4 64657673 92 92 a5 6465762d31 c4 01 01"
     " 92 a5 6465762d32 c4 01 02"},
    {M_REQ + LP_JOIN, 0,
     "88 a1 76 01 a2 6777 a3 677731 a1 77 02 a4 63726566 07 a3 646576 a5 6465762d31"
     " a5 746f706963 a6 646576696365 a1 73 c4 01 53 a1 70 81 a2 6677 a1 78"},
    {M_REQ + LP_MESSAGE, 0,
     "89 a1 76 01 a2 6777 a3 677731 a1 77 02 a4 63726566 07 a3 646576 a5 6465762d31"
     " a5 746f706963 aa 657874656e73696f6e73 a1 73 c4 01 53 a2 6576 ad 6865616c74683a7265706f7274"
     " a1 70 92 01 c0"},
    {M_REQ + LP_NOTIFY, 0,
     "89 a1 76 01 a2 6777 a3 677731 a1 77 02 a4 63726566 07 a3 646576 a5 6465762d31"
     " a5 746f706963 a6 646576696365 a1 73 c4 01 53 a3 6d7367 c4 01 4d"
     " a4 66726f6d ad 6465706c6f796d656e743a3132"},
    /* auth ok: {v:1,st:"ok",dev:"dev-1",s:bin 0a} */
    {M_REP + LP_AUTH, 0, "84 a1 76 01 a2 7374 a2 6f6b a3 646576 a5 6465762d31 a1 73 c4 01 0a"},
    {M_REP + LP_AUTH, 1,
     "83 a1 76 01 a2 7374 a7 72656675736564 a6 726561736f6e ae 756e6b6e6f776e20646576696365"},
    {M_REP + LP_CONNECT, 0, "83 a1 76 01 a2 7374 a2 6f6b a1 73 c4 01 43"},
    {M_REP + LP_CONNECT, 1, "82 a1 76 01 a2 7374 a5 6572726f72"},
    /* join ok: s, r {}, fw, fx [push, subscribe, send_after, close] */
    {M_REP + LP_JOIN, 0,
     "86 a1 76 01 a2 7374 a2 6f6b a1 73 c4 01 4a a1 72 80 a2 6677 a4 75756964 a2 6678 94"
     " 93 a4 70757368 a6 757064617465 80"
     " 92 a9 737562736372696265 ad 6465706c6f796d656e743a3132"
     " 94 aa 73656e645f6166746572 c4 01 6b c4 01 6d cd 03e8"
     " 93 a5 636c6f7365 cd 0fa0 a3 627965"},
    {M_REP + LP_JOIN, 1, "83 a1 76 01 a2 7374 a7 72656675736564 a1 72 a6 646574616368"},
    /* message ok, every other effect */
    {M_REP + LP_MESSAGE, 0,
     "83 a1 76 01 a2 7374 a2 6f6b a2 6678 98"
     " 93 a5 7265706c79 a5 6572726f72 a6 646574616368"
     " 92 ab 756e737562736372696265 ad 6465706c6f796d656e743a3132"
     " 92 a9 73656e645f73656c66 c4 01 6d"
     " 94 ab 73746172745f74696d6572 c4 01 74 c4 01 6d ce 00011170"
     " 92 ac 63616e63656c5f74696d6572 c4 01 74"
     " 92 b1 7363726f6c6c6261636b5f617070656e64 c4 05 6965783e20"
     " 91 b0 7363726f6c6c6261636b5f636c656172"
     " 92 b1 7363726f6c6c6261636b5f7265706c6179 b0 6e682e636f6e736f6c652e6465762d31"},
    {M_REP + LP_MESSAGE, 1, "82 a1 76 01 a2 7374 a2 6f6b"},
    {M_REP + LP_NOTIFY, 0, "83 a1 76 01 a2 7374 a5 6572726f72 a6 726561736f6e a4 626f6f6d"},
    {M_REP + LP_NOTIFY, 1, "83 a1 76 01 a2 7374 a2 6f6b a1 73 c4 01 4e"},
    {M_INBOX, LP_IN_PUSH,
     "87 a1 76 01 a1 6b a4 70757368 a3 646576 a5 6465762d31 a4 63726566 09"
     " a5 746f706963 a7 636f6e736f6c65 a2 6576 a2 646e a1 70 81 a4 64617461 a1 68"},
    {M_INBOX, LP_IN_NOTIFY,
     "85 a1 76 01 a1 6b a6 6e6f74696679 a3 646576 a5 6465762d31 a5 746f706963 a6 646576696365"
     " a3 6d7367 c4 01 4d"},
    /* kick, cref 2^32 as uint64 */
    {M_INBOX, LP_IN_KICK,
     "86 a1 76 01 a1 6b a4 6b69636b a3 646576 a5 6465762d31 a4 63726566 cf 0000000100000000"
     " a4 636f6465 cd 0fa1 a6 726561736f6e a1 78"},
    {M_TOPIC, LP_TOPIC_PUSH,
     "85 a1 76 01 a1 6b a4 70757368 a2 6576 a6 757064617465 a1 70 80 a7 736b69705f6677 a4 75756964"},
    {M_TOPIC, LP_TOPIC_NOTIFY, "83 a1 76 01 a1 6b a6 6e6f74696679 a3 6d7367 c4 01 4d"},
    /* console_attach: {v,k,dev,op:"op-1",sb:false,lease_ms:15000} */
    {M_INBOX, LP_IN_CONSOLE_ATTACH,
     "86 a1 76 01 a1 6b ae 636f6e736f6c655f617474616368 a3 646576 a5 6465762d31 a2 6f70 a4 6f702d31"
     " a2 7362 c2 a8 6c656173655f6d73 cd 3a98"},
    {M_INBOX, LP_IN_CONSOLE_DETACH,
     "85 a1 76 01 a1 6b ae 636f6e736f6c655f646574616368 a3 646576 a5 6465762d31 a4 63726566 09"
     " a2 6f70 a4 6f702d31"},
    {M_CREPLY, 0,
     "84 a1 76 01 a2 7374 a2 6f6b aa 7363726f6c6c6261636b c4 05 6965783e20 a7 76657273696f6e a5 322e302e30"},
    {M_CREPLY, 1, "82 a1 76 01 a2 7374 a2 6f6b"},
    {M_CREPLY, 2, "82 a1 76 01 a2 7374 a4 66756c6c"},
    {M_CREPLY, 3, "82 a1 76 01 a2 7374 aa 6e6f745f6a6f696e6564"},
    {M_COUT, 0, "83 a1 76 01 a2 6576 a2 7570 a1 70 81 a4 64617461 a1 68"},
    {M_COUT, 1, "83 a1 76 01 a2 6576 a6 636c6f736564 a1 70 81 a6 726561736f6e a4 6c656674"},
    {M_ISTATUS, LP_IST_OK, "82 a1 76 01 a2 7374 a2 6f6b"},
    {M_ISTATUS, LP_IST_GONE, "82 a1 76 01 a2 7374 a4 676f6e65"},
    {M_ISTATUS, LP_IST_NOT_JOINED, "82 a1 76 01 a2 7374 aa 6e6f745f6a6f696e6564"},
    /* topics: {v,k,topic:"device",devs:[["dev-1",9,"deployment:1","deployment:2"],
     *  ["dev-2",2^32,nil,"deployment:2"],["dev-3",0,"deployment:2",nil]]} */
    {M_INBOX, LP_IN_TOPICS,
     "84 a1 76 01 a1 6b a6 746f70696373 a5 746f706963 a6 646576696365 a4 64657673 93"
     " 94 a5 6465762d31 09 ac 6465706c6f796d656e743a31 ac 6465706c6f796d656e743a32"
     " 94 a5 6465762d32 cf 0000000100000000 c0 ac 6465706c6f796d656e743a32"
     " 94 a5 6465762d33 00 ac 6465706c6f796d656e743a32 c0"},
    /* its reply: {v,st:"ok",n} */
    {M_TREPLY, 3, "83 a1 76 01 a2 7374 a2 6f6b a1 6e 03"},
    {M_TREPLY, LP_MAX_MOVES, "83 a1 76 01 a2 7374 a2 6f6b a1 6e cd 0400"},
};
#define N_GOLDEN (sizeof(GOLDEN) / sizeof(GOLDEN[0]))

static const char *golden_hex(int kind, int variant)
{
    for (size_t i = 0; i < N_GOLDEN; i++)
        if (GOLDEN[i].kind == kind && GOLDEN[i].variant == variant)
            return GOLDEN[i].hex;
    TEST_FAIL("no golden vector %d/%d", kind, variant);
}

/* Encodes the sample a golden vector stands for. */
static int encode_sample(const struct golden *g, struct lp_out *o)
{
    if (g->kind < M_REP) {
        struct lp_request r = sample_request((enum lp_call)g->kind);
        return lp_encode_request(o, &r);
    }
    if (g->kind < M_INBOX) {
        struct lp_reply r = sample_reply((enum lp_call)(g->kind - M_REP), g->variant);
        return lp_encode_reply(o, (enum lp_call)(g->kind - M_REP), &r);
    }
    if (g->kind == M_INBOX) {
        struct lp_inbox m = sample_inbox((enum lp_inbox_kind)g->variant, 0);
        return lp_encode_inbox(o, &m);
    }
    if (g->kind == M_TOPIC) {
        struct lp_topic_msg m = sample_topic((enum lp_topic_kind)g->variant);
        return lp_encode_topic_msg(o, &m);
    }
    if (g->kind == M_CREPLY) {
        struct lp_console_reply r = sample_creply(g->variant);
        return lp_encode_console_reply(o, &r);
    }
    if (g->kind == M_COUT) {
        struct lp_console_out m = sample_cout(g->variant);
        return lp_encode_console_out(o, &m);
    }
    if (g->kind == M_TREPLY)
        return lp_encode_topics_reply(o, (uint32_t)g->variant);
    return lp_encode_inbox_status(o, (enum lp_inbox_status)g->variant);
}

/* Decodes the bytes and compares every field with the sample. */
static void check_decodes_to_sample(const struct golden *g, const uint8_t *p, size_t n)
{
    const char *err = NULL;
    if (g->kind < M_REP) {
        struct lp_request r;
        if (lp_decode_request((enum lp_call)g->kind, p, n, &r, &err))
            TEST_FAIL("golden request %d: %s", g->kind, err);
        req_eq(r, sample_request((enum lp_call)g->kind));
    } else if (g->kind < M_INBOX) {
        struct lp_reply r;
        enum lp_call c = (enum lp_call)(g->kind - M_REP);
        if (lp_decode_reply(c, p, n, &r, &err))
            TEST_FAIL("golden reply %d/%d: %s", c, g->variant, err);
        rep_eq(r, sample_reply(c, g->variant));
    } else if (g->kind == M_INBOX) {
        struct lp_inbox m, want = sample_inbox((enum lp_inbox_kind)g->variant, 0);
        if (lp_decode_inbox(p, n, &m, &err))
            TEST_FAIL("golden inbox %d: %s", g->variant, err);
        inbox_eq(&m, &want);
    } else if (g->kind == M_TOPIC) {
        struct lp_topic_msg m, want = sample_topic((enum lp_topic_kind)g->variant);
        if (lp_decode_topic_msg(p, n, &m, &err))
            TEST_FAIL("golden topic %d: %s", g->variant, err);
        topic_eq(&m, &want);
    } else if (g->kind == M_CREPLY) {
        struct lp_console_reply m, want = sample_creply(g->variant);
        if (lp_decode_console_reply(p, n, &m, &err))
            TEST_FAIL("golden console reply %d: %s", g->variant, err);
        creply_eq(&m, &want);
    } else if (g->kind == M_COUT) {
        struct lp_console_out m, want = sample_cout(g->variant);
        if (lp_decode_console_out(p, n, &m, &err))
            TEST_FAIL("golden console out %d: %s", g->variant, err);
        cout_eq(&m, &want);
    } else if (g->kind == M_TREPLY) {
        uint32_t applied = 12345;
        if (lp_decode_topics_reply(p, n, &applied, &err))
            TEST_FAIL("golden topics reply %d: %s", g->variant, err);
        ASSERT_EQ(applied, (uint32_t)g->variant);
    } else {
        enum lp_inbox_status st = (enum lp_inbox_status) - 1;
        if (lp_decode_inbox_status(p, n, &st, &err))
            TEST_FAIL("golden status %d: %s", g->variant, err);
        ASSERT_EQ(st, g->variant);
    }
}

TEST(lp_golden_vectors_decode)
{
    for (size_t i = 0; i < N_GOLDEN; i++) {
        size_t n;
        uint8_t *b = test_unhex(GOLDEN[i].hex, &n);
        ASSERT_EQ(dec_guarded(GOLDEN[i].kind, b, n, NULL), 0);
        check_decodes_to_sample(&GOLDEN[i], b, n);
    }
}

TEST(lp_golden_vectors_encode)
{
    for (size_t i = 0; i < N_GOLDEN; i++) {
        size_t n;
        uint8_t *b = test_unhex(GOLDEN[i].hex, &n);
        struct lp_out o = {0};
        ASSERT_EQ(encode_sample(&GOLDEN[i], &o), 0);
        if (o.n != n || memcmp(o.p, b, n) != 0) {
            print_hex("want", b, n);
            print_hex("got ", o.p, o.n);
            TEST_FAIL("golden %zu (kind %d, variant %d): encoder output differs", i, GOLDEN[i].kind,
                      GOLDEN[i].variant);
        }
        lp_out_free(&o);
        free(b);
    }
}

/* An independent decoder agrees the golden vectors are single msgpack maps with `v` first. */
TEST(lp_golden_vectors_msgpack_c)
{
    for (size_t i = 0; i < N_GOLDEN; i++) {
        size_t n, off = 0;
        uint8_t *b = test_unhex(GOLDEN[i].hex, &n);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        ASSERT_EQ(msgpack_unpack_next(&u, (const char *)b, n, &off), MSGPACK_UNPACK_SUCCESS);
        ASSERT_EQ(off, n);
        ASSERT_EQ(u.data.type, MSGPACK_OBJECT_MAP);
        msgpack_object_kv *kv = u.data.via.map.ptr;
        ASSERT(u.data.via.map.size >= 2);
        ASSERT_EQ(kv[0].key.type, MSGPACK_OBJECT_STR);
        ASSERT_MEM_EQ(kv[0].key.via.str.ptr, kv[0].key.via.str.size, "v", 1);
        ASSERT_EQ(kv[0].val.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
        ASSERT_EQ(kv[0].val.via.u64, 1);
        for (uint32_t k = 0; k < u.data.via.map.size; k++)
            ASSERT_EQ(kv[k].key.type, MSGPACK_OBJECT_STR);
        msgpack_unpacked_destroy(&u);
        free(b);
    }
}

/* Every proper prefix of every golden vector is invalid, read against a guard page. */
TEST(lp_truncated_every_length)
{
    for (size_t i = 0; i < N_GOLDEN; i++) {
        size_t n;
        uint8_t *b = test_unhex(GOLDEN[i].hex, &n);
        for (size_t k = 0; k < n; k++)
            if (dec_guarded(GOLDEN[i].kind, b, k, NULL) != -1)
                TEST_FAIL("golden %zu accepted truncated to %zu of %zu bytes", i, k, n);
        free(b);
    }
}

TEST(lp_trailing_bytes_invalid)
{
    for (size_t i = 0; i < N_GOLDEN; i++) {
        size_t n;
        uint8_t *b = test_unhex(GOLDEN[i].hex, &n);
        uint8_t *t = malloc(2 * n);
        memcpy(t, b, n);
        t[n] = 0xc0;
        ASSERT_EQ(dec_guarded(GOLDEN[i].kind, t, n + 1, NULL), -1);
        memcpy(t + n, b, n); /* two whole messages */
        ASSERT_EQ(dec_guarded(GOLDEN[i].kind, t, 2 * n, NULL), -1);
        free(t);
        free(b);
    }
}

/* A message is only valid as the kind it was built for (replies and requests differ). */
TEST(lp_decoding_as_the_wrong_call)
{
    size_t n;
    uint8_t *b = test_unhex(GOLDEN[0].hex, &n); /* an auth request */
    for (int c = 1; c < LP_CALL_COUNT; c++)
        ASSERT_EQ(dec_guarded(M_REQ + c, b, n, NULL), -1);
    for (int c = 0; c < LP_CALL_COUNT; c++)
        ASSERT_EQ(dec_guarded(M_REP + c, b, n, NULL), -1);
    ASSERT_EQ(dec_guarded(M_INBOX, b, n, NULL), -1);
    ASSERT_EQ(dec_guarded(M_TOPIC, b, n, NULL), -1);
    ASSERT_EQ(dec_guarded(M_ISTATUS, b, n, NULL), -1);
    ASSERT_EQ(dec_guarded(M_CREPLY, b, n, NULL), -1);
    ASSERT_EQ(dec_guarded(M_COUT, b, n, NULL), -1);
    ASSERT_EQ(dec_guarded(M_TREPLY, b, n, NULL), -1);
    free(b);
    struct lp_request r;
    struct lp_reply rp;
    const char *err = NULL;
    ASSERT_EQ(lp_decode_request((enum lp_call)LP_CALL_COUNT, (const uint8_t *)"\x80", 1, &r, &err), -1);
    ASSERT(err != NULL);
    ASSERT_EQ(lp_decode_reply(LP_DISCONNECT, (const uint8_t *)"\x80", 1, &rp, NULL), -1);
    ASSERT_EQ(lp_decode_reply(LP_HEARTBEAT, (const uint8_t *)"\x80", 1, &rp, NULL), -1);
}

/* ---- round trips ---- */

TEST(lp_roundtrip_requests)
{
    for (int c = 0; c < LP_CALL_COUNT; c++) {
        struct lp_request want = sample_request((enum lp_call)c), got;
        struct lp_out o = {0};
        ASSERT_EQ(lp_encode_request(&o, &want), 0);
        ASSERT_EQ(lp_decode_request((enum lp_call)c, o.p, o.n, &got, NULL), 0);
        req_eq(got, want);
        /* decode → encode reproduces the bytes */
        struct lp_out o2 = {0};
        req_lists(&got, 0);
        ASSERT_EQ(lp_encode_request(&o2, &got), 0);
        ASSERT_MEM_EQ(o2.p, o2.n, o.p, o.n);
        lp_out_free(&o);
        lp_out_free(&o2);
    }
}

TEST(lp_roundtrip_requests_minimal)
{
    /* auth without certificate or headers; notify without from; heartbeat with no entries */
    struct lp_request r = req_base(LP_AUTH), got;
    r.peer = S("[::1]:1");
    struct lp_out o = {0};
    ASSERT_EQ(lp_encode_request(&o, &r), 0);
    ASSERT_EQ(lp_decode_request(LP_AUTH, o.p, o.n, &got, NULL), 0);
    ASSERT(!got.has_cert);
    ASSERT_EQ(got.x_iter.left, 0);
    req_eq(got, r);

    r = sample_request(LP_NOTIFY);
    r.from = (struct lp_span){0};
    lp_out_reset(&o);
    ASSERT_EQ(lp_encode_request(&o, &r), 0);
    ASSERT_EQ(lp_decode_request(LP_NOTIFY, o.p, o.n, &got, NULL), 0);
    ASSERT_EQ(got.from.n, 0);
    req_eq(got, r);

    r = req_base(LP_HEARTBEAT);
    lp_out_reset(&o);
    ASSERT_EQ(lp_encode_request(&o, &r), 0);
    ASSERT_EQ(lp_decode_request(LP_HEARTBEAT, o.p, o.n, &got, NULL), 0);
    struct lp_hb hb;
    ASSERT_EQ(lp_hb_next(&got.hb_iter, &hb), 0);
    lp_out_free(&o);
}

TEST(lp_roundtrip_replies)
{
    for (int c = 0; c < LP_CALL_COUNT; c++) {
        if (c == LP_DISCONNECT || c == LP_HEARTBEAT)
            continue;
        for (int v = 0; v < 2; v++) {
            struct lp_reply want = sample_reply((enum lp_call)c, v), got;
            struct lp_out o = {0}, o2 = {0};
            ASSERT_EQ(lp_encode_reply(&o, (enum lp_call)c, &want), 0);
            ASSERT_EQ(lp_decode_reply((enum lp_call)c, o.p, o.n, &got, NULL), 0);
            ASSERT_EQ(got.n_fx, want.n_effects);
            rep_eq(got, want);
            rep_lists(&got, 0);
            ASSERT_EQ(lp_encode_reply(&o2, (enum lp_call)c, &got), 0);
            ASSERT_MEM_EQ(o2.p, o2.n, o.p, o.n);
            lp_out_free(&o);
            lp_out_free(&o2);
        }
    }
}

TEST(lp_roundtrip_inbox_topic_status)
{
    for (int k = LP_IN_PUSH; k <= LP_IN_TOPICS; k++) {
        for (int v = 0; v < 2; v++) {
            struct lp_inbox want = sample_inbox((enum lp_inbox_kind)k, v), got;
            struct lp_out o = {0};
            ASSERT_EQ(lp_encode_inbox(&o, &want), 0);
            ASSERT_EQ(lp_decode_inbox(o.p, o.n, &got, NULL), 0);
            inbox_eq(&got, &want);
            lp_out_free(&o);
        }
    }
    for (int k = LP_TOPIC_PUSH; k <= LP_TOPIC_NOTIFY; k++) {
        struct lp_topic_msg want = sample_topic((enum lp_topic_kind)k), got;
        struct lp_out o = {0};
        ASSERT_EQ(lp_encode_topic_msg(&o, &want), 0);
        ASSERT_EQ(lp_decode_topic_msg(o.p, o.n, &got, NULL), 0);
        topic_eq(&got, &want);
        lp_out_free(&o);
    }
    for (int s = LP_IST_OK; s <= LP_IST_NOT_JOINED; s++) {
        struct lp_out o = {0};
        enum lp_inbox_status got;
        ASSERT_EQ(lp_encode_inbox_status(&o, (enum lp_inbox_status)s), 0);
        ASSERT_EQ(lp_decode_inbox_status(o.p, o.n, &got, NULL), 0);
        ASSERT_EQ(got, s);
        lp_out_free(&o);
    }
    for (int v = 0; v < 4; v++) {
        struct lp_console_reply want = sample_creply(v), got;
        struct lp_out o = {0};
        ASSERT_EQ(lp_encode_console_reply(&o, &want), 0);
        ASSERT_EQ(lp_decode_console_reply(o.p, o.n, &got, NULL), 0);
        creply_eq(&got, &want);
        lp_out_free(&o);
    }
    struct lp_out o = {0};
    ASSERT_EQ(lp_encode_inbox_status(&o, (enum lp_inbox_status)3), -1);
    ASSERT_EQ(o.n, 0);
}

/* Several messages appended to one lp_out, each decodable at its offset. */
TEST(lp_encoders_append)
{
    struct lp_out o = {0};
    struct lp_request r = sample_request(LP_JOIN);
    ASSERT_EQ(lp_encode_request(&o, &r), 0);
    size_t first = o.n;
    ASSERT_EQ(lp_encode_inbox_status(&o, LP_IST_GONE), 0);
    struct lp_request got;
    enum lp_inbox_status st;
    ASSERT_EQ(lp_decode_request(LP_JOIN, o.p, first, &got, NULL), 0);
    ASSERT_EQ(lp_decode_inbox_status(o.p + first, o.n - first, &st, NULL), 0);
    ASSERT_EQ(st, LP_IST_GONE);
    lp_out_free(&o);
}

/* ---- the message model: every kind mutated key by key ---- */

/* A field: key, value spec ("u:<n>" uint, "s:<text>" str, "b:<text>" bin, "h:<hex>" raw bytes),
 * type ('u' uint, 's' str, 'b' bin, 'o' any object, 'm' map, 'a' array), required. */
struct fld {
    const char *k, *v;
    char type;
    bool req;
};

struct model {
    const char *name;
    int kind;
    struct fld f[12];
};

#define HDR_REQ                                                                                              \
    {"v", "u:1", 'u', true}, {"gw", "s:gw1", 's', true}, {"w", "u:2", 'u', true},                            \
    {                                                                                                        \
        "cref", "u:7", 'u', true                                                                             \
    }
#define F_DEV                                                                                                \
    {                                                                                                        \
        "dev", "s:dev-1", 's', true                                                                          \
    }
#define F_V                                                                                                  \
    {                                                                                                        \
        "v", "u:1", 'u', true                                                                                \
    }
#define FX_ONE "h:91 92 a9 737562736372696265 a1 74"

static const struct model MODELS[] = {
    {"auth",
     M_REQ + LP_AUTH,
     {HDR_REQ,
      {"peer", "s:10.0.0.1:5000", 's', true},
      {"fp", "s:0123456789ABCDEF0123456789ABCDEF01234567", 's', true},
      {"der", "h:c4 05 3003020105", 'b', true},
      {"cn", "s:", 's', true},
      {"x", "h:82 a8 782d6e682d746167 a1 61 a6 782d6e682d62 a0", 'm', false}}},
    {"connect", M_REQ + LP_CONNECT, {HDR_REQ, F_DEV, {"s", "b:SS", 'b', true}, {"peer", "s:p", 's', true}}},
    {"disconnect",
     M_REQ + LP_DISCONNECT,
     {HDR_REQ, F_DEV, {"s", "b:", 'b', true}, {"reason", "s:worker_exit", 's', true}}},
    {"heartbeat",
     M_REQ + LP_HEARTBEAT,
     {F_V,
      {"gw", "s:gw1", 's', true},
      {"w", "u:0", 'u', true},
      {"devs", "h:92 92 a5 6465762d31 c4 01 01 92 a1 61 c4 00", 'a', true}}},
    {"join",
     M_REQ + LP_JOIN,
     {HDR_REQ, F_DEV, {"topic", "s:device", 's', true}, {"s", "b:S", 'b', true}, {"p", "h:80", 'o', true}}},
    {"message",
     M_REQ + LP_MESSAGE,
     {HDR_REQ,
      F_DEV,
      {"topic", "s:extensions", 's', true},
      {"s", "b:S", 'b', true},
      {"ev", "s:geo:attached", 's', true},
      {"p", "h:81 a1 61 cb 3ff8000000000000", 'o', true}}},
    {"notify",
     M_REQ + LP_NOTIFY,
     {HDR_REQ,
      F_DEV,
      {"topic", "s:device", 's', true},
      {"s", "b:S", 'b', true},
      {"msg", "b:tick", 'b', true},
      {"from", "s:deployment:12", 's', false}}},
    {"auth reply",
     M_REP + LP_AUTH,
     {F_V, {"st", "s:ok", 's', true}, F_DEV, {"s", "b:", 'b', true}, {"reason", "s:r", 's', false}}},
    {"connect reply", M_REP + LP_CONNECT, {F_V, {"st", "s:ok", 's', true}, {"s", "b:C", 'b', false}}},
    {"join reply",
     M_REP + LP_JOIN,
     {F_V,
      {"st", "s:ok", 's', true},
      {"s", "b:J", 'b', true},
      {"r", "h:c0", 'o', false},
      {"fw", "s:uuid", 's', false},
      {"fx", FX_ONE, 'a', false},
      {"reason", "s:", 's', false}}},
    {"message reply",
     M_REP + LP_MESSAGE,
     {F_V, {"st", "s:ok", 's', true}, {"s", "b:M", 'b', false}, {"fx", FX_ONE, 'a', false}}},
    {"notify reply",
     M_REP + LP_NOTIFY,
     {F_V, {"st", "s:refused", 's', true}, {"s", "b:N", 'b', false}, {"fx", "h:90", 'a', false}}},
    {"inbox push",
     M_INBOX,
     {F_V,
      {"k", "s:push", 's', true},
      F_DEV,
      {"cref", "u:9", 'u', false},
      {"topic", "s:device", 's', true},
      {"ev", "s:reboot", 's', true},
      {"p", "h:d6 ff 00000001", 'o', true}}},
    {"inbox notify",
     M_INBOX,
     {F_V,
      {"k", "s:notify", 's', true},
      F_DEV,
      {"topic", "s:extensions", 's', true},
      {"msg", "b:m", 'b', true}}},
    {"inbox kick",
     M_INBOX,
     {F_V, {"k", "s:kick", 's', true}, F_DEV, {"code", "u:1000", 'u', false}, {"reason", "s:x", 's', false}}},
    {"topic push",
     M_TOPIC,
     {F_V,
      {"k", "s:push", 's', true},
      {"ev", "s:update", 's', true},
      {"p", "h:93 01 02 03", 'o', true},
      {"skip_fw", "s:uuid", 's', false}}},
    {"topic notify", M_TOPIC, {F_V, {"k", "s:notify", 's', true}, {"msg", "b:", 'b', true}}},
    {"inbox status", M_ISTATUS, {F_V, {"st", "s:not_joined", 's', true}}},
    {"inbox console_attach",
     M_INBOX,
     {F_V,
      {"k", "s:console_attach", 's', true},
      F_DEV,
      {"cref", "u:9", 'u', false},
      {"op", "s:nhctl-1a2b", 's', true},
      {"sb", "h:c3", 'B', false},
      {"lease_ms", "u:45000", 'u', false}}},
    {"inbox console_detach",
     M_INBOX,
     {F_V, {"k", "s:console_detach", 's', true}, F_DEV, {"op", "s:o", 's', true}}},
    {"console reply",
     M_CREPLY,
     {F_V,
      {"st", "s:ok", 's', true},
      {"scrollback", "b:iex> ", 'b', false},
      {"version", "s:1.0.0", 's', false}}},
    {"console out", M_COUT, {F_V, {"ev", "s:file-data", 's', true}, {"p", "h:80", 'o', true}}},
    {"inbox topics",
     M_INBOX,
     {F_V,
      {"k", "s:topics", 's', true},
      {"topic", "s:device", 's', true},
      {"devs", "h:92 94 a1 61 07 c0 a3 742d31 94 a1 62 00 a3 742d31 c0", 'a', true}}},
    {"topics reply", M_TREPLY, {F_V, {"st", "s:ok", 's', true}, {"n", "u:2", 'u', true}}},
};
#define N_MODELS (sizeof(MODELS) / sizeof(MODELS[0]))

static size_t model_len(const struct model *m)
{
    size_t n = 0;
    while (n < 12 && m->f[n].k)
        n++;
    return n;
}

static void put_spec(struct lp_out *o, const char *v)
{
    if (v[0] == 'u') {
        lp_mp_uint(o, strtoull(v + 2, NULL, 10));
    } else if (v[0] == 's') {
        lp_mp_cstr(o, v + 2);
    } else if (v[0] == 'b') {
        lp_mp_bin(o, v + 2, strlen(v + 2));
    } else {
        size_t n;
        uint8_t *b = test_unhex(v + 2, &n);
        lp_mp_raw(o, b, n);
        free(b);
    }
}

#define MUT_NONE ((size_t)-1)

/* Builds the model's message: `omit` leaves a field out, `dup` writes it twice, `subst` replaces
 * field `at`'s value with raw bytes, `extra` adds an unknown key, `reverse` reverses the order. */
struct mut {
    size_t omit, dup, at;
    const struct lp_span *subst;
    bool extra, reverse;
};

static void build(const struct model *m, struct mut mu, struct lp_out *o)
{
    size_t n = model_len(m);
    uint32_t keys = (uint32_t)n;
    if (mu.omit != MUT_NONE)
        keys--;
    if (mu.dup != MUT_NONE)
        keys++;
    if (mu.extra)
        keys++;
    lp_out_reset(o);
    lp_mp_map(o, keys);
    if (mu.extra) {
        lp_mp_cstr(o, "zz-unknown");
        lp_mp_raw(o, "\x91\x91\x81\xa1k", 5); /* [[{"k":1}]] */
        lp_mp_uint(o, 1);
    }
    for (size_t j = 0; j < n; j++) {
        size_t i = mu.reverse ? n - 1 - j : j;
        if (i == mu.omit)
            continue;
        for (int t = 0; t < (i == mu.dup ? 2 : 1); t++) {
            lp_mp_cstr(o, m->f[i].k);
            if (i == mu.at && mu.subst)
                lp_mp_raw(o, mu.subst->p, mu.subst->n);
            else
                put_spec(o, m->f[i].v);
        }
    }
    ASSERT(!o->failed);
}

static const struct mut MUT0 = {MUT_NONE, MUT_NONE, MUT_NONE, NULL, false, false};

TEST(lp_model_valid_in_any_order_and_with_unknown_keys)
{
    struct lp_out o = {0};
    for (size_t i = 0; i < N_MODELS; i++) {
        struct mut mu = MUT0;
        const char *err = NULL;
        build(&MODELS[i], mu, &o);
        if (dec_out(MODELS[i].kind, &o) != 0) {
            dec_guarded(MODELS[i].kind, o.p, o.n, &err);
            TEST_FAIL("model %s: %s", MODELS[i].name, err);
        }
        mu.reverse = true;
        build(&MODELS[i], mu, &o);
        ASSERT_EQ(dec_out(MODELS[i].kind, &o), 0);
        mu.extra = true;
        build(&MODELS[i], mu, &o);
        if (dec_out(MODELS[i].kind, &o) != 0)
            TEST_FAIL("model %s with an unknown key rejected", MODELS[i].name);
    }
    lp_out_free(&o);
}

TEST(lp_model_missing_keys)
{
    struct lp_out o = {0};
    for (size_t i = 0; i < N_MODELS; i++) {
        for (size_t f = 0; f < model_len(&MODELS[i]); f++) {
            struct mut mu = MUT0;
            mu.omit = f;
            build(&MODELS[i], mu, &o);
            int want = MODELS[i].f[f].req ? -1 : 0;
            if (dec_out(MODELS[i].kind, &o) != want)
                TEST_FAIL("model %s without %s: expected %s", MODELS[i].name, MODELS[i].f[f].k,
                          want ? "invalid" : "valid");
        }
    }
    lp_out_free(&o);
}

TEST(lp_model_duplicate_keys)
{
    struct lp_out o = {0};
    for (size_t i = 0; i < N_MODELS; i++) {
        for (size_t f = 0; f < model_len(&MODELS[i]); f++) {
            struct mut mu = MUT0;
            mu.dup = f;
            build(&MODELS[i], mu, &o);
            if (dec_out(MODELS[i].kind, &o) != -1)
                TEST_FAIL("model %s with %s twice accepted", MODELS[i].name, MODELS[i].f[f].k);
        }
    }
    lp_out_free(&o);
}

/* Every field given a value of each msgpack type: only the right type is accepted (payloads
 * accept any type). */
TEST(lp_model_wrong_types)
{
    static const struct {
        const char *hex;
        char type;
    } cand[] = {
        {"c0", 'n'},       {"c2", 'B'},       {"c3", 'B'},          {"05", 'u'},
        {"ff", '-'},       {"d0 80", '-'},    {"a1 78", 's'},       {"c4 01 78", 'b'},
        {"90", 'a'},       {"80", 'm'},       {"ca 3f800000", 'f'}, {"cb 3ff8000000000000", 'f'},
        {"d4 01 00", 'e'}, {"c7 00 05", 'e'},
    };
    struct lp_out o = {0};
    for (size_t i = 0; i < N_MODELS; i++) {
        for (size_t f = 0; f < model_len(&MODELS[i]); f++) {
            for (size_t c = 0; c < sizeof(cand) / sizeof(cand[0]); c++) {
                char t = MODELS[i].f[f].type;
                if (cand[c].type == t)
                    continue;
                size_t n;
                uint8_t *b = test_unhex(cand[c].hex, &n);
                struct lp_span v = {b, n};
                struct mut mu = MUT0;
                mu.at = f, mu.subst = &v;
                build(&MODELS[i], mu, &o);
                int want = t == 'o' ? 0 : -1;
                if (dec_out(MODELS[i].kind, &o) != want)
                    TEST_FAIL("model %s, %s = %s: expected %s", MODELS[i].name, MODELS[i].f[f].k, cand[c].hex,
                              want ? "invalid" : "valid");
                free(b);
            }
        }
    }
    lp_out_free(&o);
}

/* Replaces one field of a model with the given value; returns the decoder's verdict. */
static int model_with(const char *model, const char *key, struct lp_span v)
{
    for (size_t i = 0; i < N_MODELS; i++) {
        if (strcmp(MODELS[i].name, model) != 0)
            continue;
        for (size_t f = 0; f < model_len(&MODELS[i]); f++) {
            if (strcmp(MODELS[i].f[f].k, key) != 0)
                continue;
            struct lp_out o = {0};
            struct mut mu = MUT0;
            mu.at = f, mu.subst = &v;
            build(&MODELS[i], mu, &o);
            int rc = dec_out(MODELS[i].kind, &o);
            lp_out_free(&o);
            return rc;
        }
    }
    TEST_FAIL("no field %s in model %s", key, model);
}

static int model_with_hex(const char *model, const char *key, const char *hex)
{
    size_t n;
    uint8_t *b = test_unhex(hex, &n);
    int rc = model_with(model, key, (struct lp_span){b, n});
    free(b);
    return rc;
}

/* A value encoded with the lp_mp_* helpers. */
static struct lp_span enc_str(struct lp_span s)
{
    struct lp_out o = {0};
    o.cap = SIZE_MAX;
    lp_mp_str(&o, s.p, s.n);
    return (struct lp_span){o.p, o.n};
}

static struct lp_span enc_bin(struct lp_span s)
{
    struct lp_out o = {0};
    o.cap = SIZE_MAX;
    lp_mp_bin(&o, s.p, s.n);
    return (struct lp_span){o.p, o.n};
}

TEST(lp_version)
{
    ASSERT_EQ(model_with_hex("join", "v", "01"), 0);
    ASSERT_EQ(model_with_hex("join", "v", "cf 0000000000000001"), 0);
    ASSERT_EQ(model_with_hex("join", "v", "00"), -1);
    ASSERT_EQ(model_with_hex("join", "v", "02"), -1);
    ASSERT_EQ(model_with_hex("join", "v", "cf 0100000000000001"), -1);
    ASSERT_EQ(model_with_hex("join", "v", "ff"), -1);
    ASSERT_EQ(model_with_hex("join", "v", "a1 31"), -1);
    ASSERT_EQ(model_with_hex("inbox status", "v", "02"), -1);
    ASSERT_EQ(model_with_hex("topic push", "v", "02"), -1);
    ASSERT_EQ(model_with_hex("join reply", "v", "02"), -1);
}

/* Integers in every width: unsigned and non-negative signed encodings are accepted, negative
 * values and values beyond the field's range are not. */
TEST(lp_integer_widths)
{
    static const char *const zero[] = {
        "00",    "cc 00",   "cd 0000",     "ce 00000000",        "cf 0000000000000000",
        "d0 00", "d1 0000", "d2 00000000", "d3 0000000000000000"};
    static const char *const neg[] = {
        "ff", "e0", "d0 ff", "d1 ffff", "d2 ffffffff", "d3 ffffffffffffffff", "d3 8000000000000000"};
    for (size_t i = 0; i < sizeof(zero) / sizeof(zero[0]); i++) {
        ASSERT_EQ(model_with_hex("join", "w", zero[i]), 0);
        ASSERT_EQ(model_with_hex("join", "cref", zero[i]), 0);
    }
    for (size_t i = 0; i < sizeof(neg) / sizeof(neg[0]); i++) {
        ASSERT_EQ(model_with_hex("join", "w", neg[i]), -1);
        ASSERT_EQ(model_with_hex("join", "cref", neg[i]), -1);
        ASSERT_EQ(model_with_hex("inbox push", "cref", neg[i]), -1);
        ASSERT_EQ(model_with_hex("inbox kick", "code", neg[i]), -1);
    }
    /* the values that come back */
    static const struct {
        const char *hex;
        uint64_t v;
    } vals[] = {
        {"7f", 127},
        {"cc ff", 255},
        {"cd ffff", 65535},
        {"ce ffffffff", 0xffffffffu},
        {"cf ffffffffffffffff", UINT64_MAX},
        {"d0 7f", 127},
        {"d1 7fff", 32767},
        {"d2 7fffffff", 0x7fffffff},
        {"d3 7fffffffffffffff", INT64_MAX},
    };
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        struct lp_out o = {0};
        size_t n;
        uint8_t *b = test_unhex(vals[i].hex, &n);
        lp_mp_map(&o, 7);
        lp_mp_cstr(&o, "v"), lp_mp_uint(&o, 1);
        lp_mp_cstr(&o, "gw"), lp_mp_cstr(&o, "g");
        lp_mp_cstr(&o, "w"), lp_mp_raw(&o, "\xcc\x05", 2);
        lp_mp_cstr(&o, "cref"), lp_mp_raw(&o, b, n);
        lp_mp_cstr(&o, "dev"), lp_mp_cstr(&o, "d");
        lp_mp_cstr(&o, "s"), lp_mp_bin(&o, "", 0);
        lp_mp_cstr(&o, "peer"), lp_mp_cstr(&o, "p");
        struct lp_request r;
        ASSERT_EQ(lp_decode_request(LP_CONNECT, o.p, o.n, &r, NULL), 0);
        ASSERT(r.cref == vals[i].v);
        ASSERT_EQ(r.worker, 5);
        lp_out_free(&o);
        free(b);
    }
    /* w is 32-bit */
    ASSERT_EQ(model_with_hex("join", "w", "ce ffffffff"), 0);
    ASSERT_EQ(model_with_hex("join", "w", "cf 0000000100000000"), -1);
    ASSERT_EQ(model_with_hex("join", "w", "d3 0000000100000000"), -1);
    /* floats are not integers */
    ASSERT_EQ(model_with_hex("join", "w", "cb 0000000000000000"), -1);
}

/* ---- limits at max and max+1, decoder side ---- */

TEST(lp_limit_ids)
{
    struct lp_span d128 = rep('d', LP_MAX_ID), d129 = rep('d', LP_MAX_ID + 1);
    ASSERT_EQ(model_with("connect", "dev", enc_str(d128)), 0);
    ASSERT_EQ(model_with("connect", "dev", enc_str(d129)), -1);
    ASSERT_EQ(model_with("auth reply", "dev", enc_str(d128)), 0);
    ASSERT_EQ(model_with("auth reply", "dev", enc_str(d129)), -1);
    ASSERT_EQ(model_with("inbox kick", "dev", enc_str(d128)), 0);
    ASSERT_EQ(model_with("inbox kick", "dev", enc_str(d129)), -1);
    ASSERT_EQ(model_with("connect", "dev", enc_str(S(""))), -1);
    ASSERT_EQ(model_with("connect", "dev", enc_str(S("a.b"))), -1);
    ASSERT_EQ(model_with("connect", "dev", enc_str(S("a b"))), -1);
    ASSERT_EQ(model_with("connect", "dev", enc_str(S("*"))), -1);
    ASSERT_EQ(model_with("connect", "dev", enc_str(S("caf\xc3\xa9"))), 0);
    ASSERT_EQ(model_with("connect", "dev", enc_str(S("caf\xc3"))), -1);
    /* gateway ids: [A-Za-z0-9_-]{1,64} */
    ASSERT_EQ(model_with("connect", "gw", enc_str(rep('g', 64))), 0);
    ASSERT_EQ(model_with("connect", "gw", enc_str(rep('g', 65))), -1);
    ASSERT_EQ(model_with("connect", "gw", enc_str(S("gw.1"))), -1);
    ASSERT_EQ(model_with("connect", "gw", enc_str(S(""))), -1);
    /* heartbeat entries' device ids */
    struct lp_out o = {0};
    lp_mp_array(&o, 1), lp_mp_array(&o, 2), lp_mp_str(&o, d128.p, d128.n), lp_mp_bin(&o, "", 0);
    ASSERT_EQ(model_with("heartbeat", "devs", (struct lp_span){o.p, o.n}), 0);
    lp_out_reset(&o);
    lp_mp_array(&o, 1), lp_mp_array(&o, 2), lp_mp_str(&o, d129.p, d129.n), lp_mp_bin(&o, "", 0);
    ASSERT_EQ(model_with("heartbeat", "devs", (struct lp_span){o.p, o.n}), -1);
    lp_out_free(&o);
}

TEST(lp_limit_topics)
{
    struct lp_span t128 = rep('t', LP_MAX_TOPIC), t129 = rep('t', LP_MAX_TOPIC + 1);
    ASSERT_EQ(model_with("notify", "from", enc_str(t128)), 0);
    ASSERT_EQ(model_with("notify", "from", enc_str(t129)), -1);
    ASSERT_EQ(model_with("notify", "from", enc_str(S("a:b-c_d"))), 0);
    ASSERT_EQ(model_with("notify", "from", enc_str(S("a.b"))), -1);
    ASSERT_EQ(model_with("notify", "from", enc_str(S(""))), -1);
    /* subscribe effects */
    struct lp_out o = {0};
    lp_mp_array(&o, 1), lp_mp_array(&o, 2), lp_mp_cstr(&o, "subscribe"), lp_mp_str(&o, t128.p, t128.n);
    ASSERT_EQ(model_with("message reply", "fx", (struct lp_span){o.p, o.n}), 0);
    lp_out_reset(&o);
    lp_mp_array(&o, 1), lp_mp_array(&o, 2), lp_mp_cstr(&o, "unsubscribe"), lp_mp_str(&o, t129.p, t129.n);
    ASSERT_EQ(model_with("message reply", "fx", (struct lp_span){o.p, o.n}), -1);
    lp_out_free(&o);
    /* channel topics of calls and the inbox */
    ASSERT_EQ(model_with("join", "topic", enc_str(S("extensions"))), 0);
    ASSERT_EQ(model_with("join", "topic", enc_str(S("console"))), -1);
    ASSERT_EQ(model_with("notify", "topic", enc_str(S("phoenix"))), -1);
    ASSERT_EQ(model_with("inbox push", "topic", enc_str(S("console"))), 0);
    ASSERT_EQ(model_with("inbox push", "topic", enc_str(S("consol"))), -1);
    ASSERT_EQ(model_with("inbox notify", "topic", enc_str(S("console"))), -1);
}

/* x built as a map of n entries with name/value lengths. */
static struct lp_span x_map(size_t n, size_t name_len, size_t value_len)
{
    struct lp_out o = {0};
    o.cap = SIZE_MAX;
    lp_mp_map(&o, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        char name[128];
        snprintf(name, sizeof(name), "x-%03zu", i);
        size_t k = strlen(name);
        while (k < name_len)
            name[k++] = 'h';
        name[name_len] = '\0';
        lp_mp_cstr(&o, name);
        struct lp_span v = rep('v', value_len);
        lp_mp_str(&o, v.p, v.n);
    }
    return (struct lp_span){o.p, o.n};
}

TEST(lp_limit_x_headers)
{
    ASSERT_EQ(model_with("auth", "x", x_map(LP_MAX_X, 10, 1)), 0);
    ASSERT_EQ(model_with("auth", "x", x_map(LP_MAX_X + 1, 10, 1)), -1);
    ASSERT_EQ(model_with("auth", "x", x_map(1, LP_MAX_X_NAME, 1)), 0);
    ASSERT_EQ(model_with("auth", "x", x_map(1, LP_MAX_X_NAME + 1, 1)), -1);
    ASSERT_EQ(model_with("auth", "x", x_map(1, 10, LP_MAX_X_VALUE)), 0);
    ASSERT_EQ(model_with("auth", "x", x_map(1, 10, LP_MAX_X_VALUE + 1)), -1);
    ASSERT_EQ(model_with("auth", "x", x_map(1, 10, 0)), 0);
    ASSERT_EQ(model_with("auth", "x", x_map(0, 10, 1)), -1); /* present iff any */
    /* names: x-*, lower case, unique */
    ASSERT_EQ(model_with_hex("auth", "x", "81 a4 782d6e68 a0"), 0);
    ASSERT_EQ(model_with_hex("auth", "x", "81 a4 582d6e68 a0"), -1); /* X-nh */
    ASSERT_EQ(model_with_hex("auth", "x", "81 a4 782d4e68 a0"), -1); /* x-Nh */
    ASSERT_EQ(model_with_hex("auth", "x", "81 a4 6e682d78 a0"), -1); /* nh-x */
    ASSERT_EQ(model_with_hex("auth", "x", "81 a2 782d a0"), -1);     /* x- */
    ASSERT_EQ(model_with_hex("auth", "x", "82 a3 782d61 a0 a3 782d61 a0"), -1);
    ASSERT_EQ(model_with_hex("auth", "x", "81 a3 782d61 c4 00"), -1); /* bin value */
    ASSERT_EQ(model_with_hex("auth", "x", "81 c4 03 782d61 a0"), -1); /* bin name */
}

static struct lp_span fx_array(size_t n, const char *effect_hex)
{
    struct lp_out o = {0};
    size_t k;
    uint8_t *e = test_unhex(effect_hex, &k);
    lp_mp_array(&o, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        lp_mp_raw(&o, e, k);
    free(e);
    return (struct lp_span){o.p, o.n};
}

static int fx_one(const char *effect_hex)
{
    return model_with("message reply", "fx", fx_array(1, effect_hex));
}

#define CLEAR_HEX "91 b0 7363726f6c6c6261636b5f636c656172"

TEST(lp_limit_effects)
{
    ASSERT_EQ(model_with("message reply", "fx", fx_array(LP_MAX_EFFECTS, CLEAR_HEX)), 0);
    ASSERT_EQ(model_with("message reply", "fx", fx_array(LP_MAX_EFFECTS + 1, CLEAR_HEX)), -1);
    ASSERT_EQ(model_with("join reply", "fx", fx_array(LP_MAX_EFFECTS + 1, CLEAR_HEX)), -1);
    ASSERT_EQ(model_with("notify reply", "fx", fx_array(0, CLEAR_HEX)), 0);
}

TEST(lp_limit_sessions)
{
    ASSERT_EQ(model_with("join", "s", enc_bin(rep('s', LP_MAX_SESSION))), 0);
    ASSERT_EQ(model_with("join", "s", enc_bin(rep('s', LP_MAX_SESSION + 1))), -1);
    ASSERT_EQ(model_with("join reply", "s", enc_bin(rep('s', LP_MAX_SESSION))), 0);
    ASSERT_EQ(model_with("join reply", "s", enc_bin(rep('s', LP_MAX_SESSION + 1))), -1);
    ASSERT_EQ(model_with("auth reply", "s", enc_bin(rep('s', LP_MAX_SESSION + 1))), -1);
    /* str is not accepted for an opaque value */
    ASSERT_EQ(model_with("join", "s", enc_str(S("S"))), -1);
}

TEST(lp_limit_msgs_and_keys)
{
    ASSERT_EQ(model_with("notify", "msg", enc_bin(rep('m', LP_MAX_MSG))), 0);
    ASSERT_EQ(model_with("notify", "msg", enc_bin(rep('m', LP_MAX_MSG + 1))), -1);
    ASSERT_EQ(model_with("inbox notify", "msg", enc_bin(rep('m', LP_MAX_MSG + 1))), -1);
    ASSERT_EQ(model_with("topic notify", "msg", enc_bin(rep('m', LP_MAX_MSG))), 0);
    ASSERT_EQ(model_with("topic notify", "msg", enc_bin(rep('m', LP_MAX_MSG + 1))), -1);
    /* timer keys and messages in effects */
    for (int big = 0; big < 2; big++) {
        struct lp_out o = {0};
        struct lp_span key = rep('k', LP_MAX_KEY + (size_t)big), msg = rep('m', LP_MAX_MSG);
        lp_mp_array(&o, 1), lp_mp_array(&o, 4), lp_mp_cstr(&o, "send_after");
        lp_mp_bin(&o, key.p, key.n), lp_mp_bin(&o, msg.p, msg.n), lp_mp_uint(&o, 5);
        ASSERT_EQ(model_with("message reply", "fx", (struct lp_span){o.p, o.n}), -big);
        lp_out_reset(&o);
        lp_mp_array(&o, 1), lp_mp_array(&o, 2), lp_mp_cstr(&o, "cancel_timer"), lp_mp_bin(&o, key.p, key.n);
        ASSERT_EQ(model_with("message reply", "fx", (struct lp_span){o.p, o.n}), -big);
        lp_out_reset(&o);
        msg = rep('m', LP_MAX_MSG + (size_t)big);
        lp_mp_array(&o, 1), lp_mp_array(&o, 2), lp_mp_cstr(&o, "send_self"), lp_mp_bin(&o, msg.p, msg.n);
        ASSERT_EQ(model_with("message reply", "fx", (struct lp_span){o.p, o.n}), -big);
        lp_out_reset(&o);
        lp_mp_array(&o, 1), lp_mp_array(&o, 4), lp_mp_cstr(&o, "start_timer");
        lp_mp_bin(&o, "k", 1), lp_mp_bin(&o, msg.p, msg.n), lp_mp_uint(&o, 5);
        ASSERT_EQ(model_with("message reply", "fx", (struct lp_span){o.p, o.n}), -big);
        lp_out_free(&o);
    }
}

TEST(lp_limit_strings)
{
    ASSERT_EQ(model_with("message", "ev", enc_str(rep('e', LP_MAX_STR))), 0);
    ASSERT_EQ(model_with("message", "ev", enc_str(rep('e', LP_MAX_STR + 1))), -1);
    ASSERT_EQ(model_with("connect", "peer", enc_str(rep('p', LP_MAX_STR))), 0);
    ASSERT_EQ(model_with("connect", "peer", enc_str(rep('p', LP_MAX_STR + 1))), -1);
    ASSERT_EQ(model_with("join reply", "fw", enc_str(rep('f', LP_MAX_STR + 1))), -1);
    ASSERT_EQ(model_with("join reply", "reason", enc_str(rep('r', LP_MAX_STR))), 0);
    ASSERT_EQ(model_with("join reply", "reason", enc_str(rep('r', LP_MAX_STR + 1))), -1);
    ASSERT_EQ(model_with("inbox kick", "reason", enc_str(rep('r', LP_MAX_STR + 1))), -1);
    ASSERT_EQ(model_with("topic push", "skip_fw", enc_str(rep('f', LP_MAX_STR + 1))), -1);
    ASSERT_EQ(model_with("auth", "cn", enc_str(rep('c', LP_MAX_STR))), 0);
    ASSERT_EQ(model_with("auth", "cn", enc_str(rep('c', LP_MAX_STR + 1))), -1);
    /* fp: 40 uppercase hex characters */
    ASSERT_EQ(model_with("auth", "fp", enc_str(rep('A', 40))), 0);
    ASSERT_EQ(model_with("auth", "fp", enc_str(rep('A', 39))), -1);
    ASSERT_EQ(model_with("auth", "fp", enc_str(rep('A', 41))), -1);
    ASSERT_EQ(model_with("auth", "fp", enc_str(rep('a', 40))), -1);
    ASSERT_EQ(model_with("auth", "fp", enc_str(rep('G', 40))), -1);
    ASSERT_EQ(model_with("auth", "fp", enc_bin(rep('A', 40))), -1);
}

TEST(lp_limit_heartbeats)
{
    for (int big = 0; big < 2; big++) {
        struct lp_out o = {0};
        uint32_t n = LP_MAX_HEARTBEATS + (uint32_t)big;
        lp_mp_array(&o, n);
        for (uint32_t i = 0; i < n; i++) {
            char dev[16];
            snprintf(dev, sizeof(dev), "d%u", i);
            lp_mp_array(&o, 2), lp_mp_cstr(&o, dev), lp_mp_bin(&o, "s", 1);
        }
        ASSERT_EQ(model_with("heartbeat", "devs", (struct lp_span){o.p, o.n}), -big);
        lp_out_free(&o);
    }
    /* malformed entries */
    ASSERT_EQ(model_with_hex("heartbeat", "devs", "91 91 a1 61"), -1);
    ASSERT_EQ(model_with_hex("heartbeat", "devs", "91 93 a1 61 c4 00 c0"), -1);
    ASSERT_EQ(model_with_hex("heartbeat", "devs", "91 92 a1 61 a0"), -1);
    ASSERT_EQ(model_with_hex("heartbeat", "devs", "91 92 c4 01 61 c4 00"), -1);
    ASSERT_EQ(model_with_hex("heartbeat", "devs", "91 a1 61"), -1);
}

/* Inbox `topics` (LINK.md §6.1): 1..LP_MAX_MOVES entries, each [dev, cref, unsub|nil, sub|nil]. */
TEST(lp_limit_topics_moves)
{
    for (int big = 0; big < 2; big++) {
        struct lp_out o = {0};
        uint32_t n = LP_MAX_MOVES + (uint32_t)big;
        lp_mp_array(&o, n);
        for (uint32_t i = 0; i < n; i++) {
            char dev[16];
            snprintf(dev, sizeof(dev), "d%u", i);
            lp_mp_array(&o, 4), lp_mp_cstr(&o, dev), lp_mp_uint(&o, i), lp_mp_nil(&o);
            lp_mp_cstr(&o, "deployment:7");
        }
        ASSERT_EQ(model_with("inbox topics", "devs", (struct lp_span){o.p, o.n}), -big);
        lp_out_free(&o);
    }
    ASSERT_EQ(model_with_hex("inbox topics", "devs", "90"), -1); /* empty */
    /* entries: the model's first one, varied */
    ASSERT_EQ(model_with_hex("inbox topics", "devs", "91 94 a1 61 07 c0 a3 742d31"), 0);
    ASSERT_EQ(model_with_hex("inbox topics", "devs", "91 94 a1 61 07 a3 742d31 c0"), 0);
    ASSERT_EQ(model_with_hex("inbox topics", "devs", "91 94 a1 61 07 a3 742d31 a3 742d31"), 0);
    ASSERT_EQ(model_with_hex("inbox topics", "devs", "91 94 a1 61 07 c0 c0"), -1);        /* no-op */
    ASSERT_EQ(model_with_hex("inbox topics", "devs", "91 93 a1 61 07 a3 742d31"), -1);    /* arity 3 */
    ASSERT_EQ(model_with_hex("inbox topics", "devs", "91 95 a1 61 07 c0 a3 742d31 c0"), -1);
    ASSERT_EQ(model_with_hex("inbox topics", "devs", "91 94 a0 07 c0 a3 742d31"), -1);    /* empty dev */
    ASSERT_EQ(model_with_hex("inbox topics", "devs", "91 94 a3 612e62 07 c0 a3 742d31"), -1); /* a.b */
    ASSERT_EQ(model_with_hex("inbox topics", "devs", "91 94 c4 01 61 07 c0 a3 742d31"), -1);  /* bin dev */
    ASSERT_EQ(model_with_hex("inbox topics", "devs", "91 94 a1 61 ff c0 a3 742d31"), -1);     /* cref -1 */
    ASSERT_EQ(model_with_hex("inbox topics", "devs", "91 94 a1 61 c0 c0 a3 742d31"), -1);     /* cref nil */
    ASSERT_EQ(model_with_hex("inbox topics", "devs", "91 94 a1 61 07 c0 a3 742e31"), -1);     /* t.1 */
    ASSERT_EQ(model_with_hex("inbox topics", "devs", "91 94 a1 61 07 a0 c0"), -1);            /* "" */
    ASSERT_EQ(model_with_hex("inbox topics", "devs", "91 94 a1 61 07 c4 01 74 c0"), -1);      /* bin topic */
    ASSERT_EQ(model_with_hex("inbox topics", "devs", "91 a1 61"), -1);
    ASSERT_EQ(model_with_hex("inbox topics", "devs", "91 94 a1 61 07 c0"), -1); /* truncated entry */
    /* the channel: a call topic only */
    ASSERT_EQ(model_with("inbox topics", "topic", enc_str(S("extensions"))), 0);
    ASSERT_EQ(model_with("inbox topics", "topic", enc_str(S("console"))), -1);
    ASSERT_EQ(model_with("inbox topics", "topic", enc_str(S("deployment:1"))), -1);
    /* dev and topic at their limits inside an entry */
    struct lp_span d128 = rep('d', LP_MAX_ID), d129 = rep('d', LP_MAX_ID + 1);
    struct lp_span t128 = rep('t', LP_MAX_TOPIC), t129 = rep('t', LP_MAX_TOPIC + 1);
    for (int k = 0; k < 4; k++) {
        struct lp_out o = {0};
        lp_mp_array(&o, 1), lp_mp_array(&o, 4);
        lp_mp_str(&o, (k == 1 ? d129 : d128).p, (k == 1 ? d129 : d128).n);
        lp_mp_uint(&o, UINT64_MAX);
        lp_mp_str(&o, (k == 2 ? t129 : t128).p, (k == 2 ? t129 : t128).n);
        lp_mp_str(&o, (k == 3 ? t129 : t128).p, (k == 3 ? t129 : t128).n);
        ASSERT_EQ(model_with("inbox topics", "devs", (struct lp_span){o.p, o.n}), k == 0 ? 0 : -1);
        lp_out_free(&o);
    }
    /* the topics reply: n ≤ LP_MAX_MOVES, st ok only */
    ASSERT_EQ(model_with_hex("topics reply", "n", "cd 0400"), 0);
    ASSERT_EQ(model_with_hex("topics reply", "n", "cd 0401"), -1);
    ASSERT_EQ(model_with_hex("topics reply", "st", "a4 676f6e65"), -1);
}

TEST(lp_encoder_limits_topics)
{
    /* the largest message: LP_MAX_MOVES entries with every field at its limit, under 1 MiB */
    static struct lp_move mv[LP_MAX_MOVES + 1];
    struct lp_span d = rep('d', LP_MAX_ID), t = rep('t', LP_MAX_TOPIC);
    for (size_t i = 0; i <= LP_MAX_MOVES; i++)
        mv[i] = (struct lp_move){d, UINT64_MAX, t, t};
    struct lp_inbox m = {.kind = LP_IN_TOPICS, .topic = S("device"), .moves = mv, .n_moves = LP_MAX_MOVES};
    struct lp_out o = {0};
    ASSERT_EQ(lp_encode_inbox(&o, &m), 0);
    ASSERT(o.n <= 410u * 1024);
    struct lp_inbox got;
    ASSERT_EQ(lp_decode_inbox(o.p, o.n, &got, NULL), 0);
    ASSERT_EQ(got.kind, LP_IN_TOPICS);
    ASSERT_EQ(got.n_moves, LP_MAX_MOVES);
    struct lp_move x;
    size_t seen = 0;
    while (lp_move_next(&got.moves_iter, &x)) {
        ASSERT(x.cref == UINT64_MAX);
        ASSERT_EQ(x.dev.n, LP_MAX_ID);
        seen++;
    }
    ASSERT_EQ(seen, LP_MAX_MOVES);
    lp_out_reset(&o);
    m.n_moves = LP_MAX_MOVES + 1;
    ASSERT_EQ(lp_encode_inbox(&o, &m), -1);
    m.n_moves = 0;
    ASSERT_EQ(lp_encode_inbox(&o, &m), -1);
    m.n_moves = 1, m.moves = NULL;
    ASSERT_EQ(lp_encode_inbox(&o, &m), -1);
    /* an invalid entry is refused as a whole, and nothing is left in the buffer */
    struct lp_move bad[2] = {{S("ok"), 1, S("a"), S("b")}, {S("x"), 1, {NULL, 0}, {NULL, 0}}};
    m.moves = bad, m.n_moves = 2;
    ASSERT_EQ(lp_encode_inbox(&o, &m), -1);
    bad[1].sub = S("a.b");
    ASSERT_EQ(lp_encode_inbox(&o, &m), -1);
    bad[1].sub = S("b"), bad[1].dev = rep('d', LP_MAX_ID + 1);
    ASSERT_EQ(lp_encode_inbox(&o, &m), -1);
    bad[1].dev = S("x");
    m.topic = S("console");
    ASSERT_EQ(lp_encode_inbox(&o, &m), -1);
    ASSERT_EQ(o.n, 0);
    m.topic = S("device");
    ASSERT_EQ(lp_encode_inbox(&o, &m), 0);
    lp_out_reset(&o);
    ASSERT_EQ(lp_encode_topics_reply(&o, LP_MAX_MOVES), 0);
    lp_out_reset(&o);
    ASSERT_EQ(lp_encode_topics_reply(&o, LP_MAX_MOVES + 1), -1);
    ASSERT_EQ(o.n, 0);
    lp_out_free(&o);
}

/* n nested arrays around 0 */
static struct lp_span nested(size_t n)
{
    uint8_t *p = malloc(n + 1);
    memset(p, 0x91, n);
    p[n] = 0x00;
    return (struct lp_span){p, n + 1};
}

TEST(lp_limit_depth)
{
    ASSERT_EQ(model_with("join", "p", nested(LP_MAX_DEPTH)), 0);
    ASSERT_EQ(model_with("join", "p", nested(LP_MAX_DEPTH + 1)), -1);
    ASSERT_EQ(model_with("join reply", "r", nested(LP_MAX_DEPTH)), 0);
    ASSERT_EQ(model_with("join reply", "r", nested(LP_MAX_DEPTH + 1)), -1);
    ASSERT_EQ(model_with("inbox push", "p", nested(LP_MAX_DEPTH + 1)), -1);
    ASSERT_EQ(model_with("topic push", "p", nested(LP_MAX_DEPTH + 1)), -1);
    /* effect payloads: the payload itself may nest LP_MAX_DEPTH */
    for (int big = 0; big < 2; big++) {
        struct lp_span p = nested(LP_MAX_DEPTH + (size_t)big);
        struct lp_out o = {0};
        lp_mp_array(&o, 1), lp_mp_array(&o, 3), lp_mp_cstr(&o, "push"), lp_mp_cstr(&o, "e"),
            lp_mp_raw(&o, p.p, p.n);
        ASSERT_EQ(model_with("message reply", "fx", (struct lp_span){o.p, o.n}), -big);
        lp_out_reset(&o);
        lp_mp_array(&o, 1), lp_mp_array(&o, 3), lp_mp_cstr(&o, "reply"), lp_mp_cstr(&o, "ok"),
            lp_mp_raw(&o, p.p, p.n);
        ASSERT_EQ(model_with("message reply", "fx", (struct lp_span){o.p, o.n}), -big);
        lp_out_free(&o);
    }
    /* maps count as nesting too */
    struct lp_out o = {0};
    for (int i = 0; i < LP_MAX_DEPTH; i++)
        lp_mp_map(&o, 1), lp_mp_cstr(&o, "k");
    lp_mp_nil(&o);
    ASSERT_EQ(model_with("join", "p", (struct lp_span){o.p, o.n}), 0);
    lp_out_reset(&o);
    for (int i = 0; i <= LP_MAX_DEPTH; i++)
        lp_mp_map(&o, 1), lp_mp_cstr(&o, "k");
    lp_mp_nil(&o);
    ASSERT_EQ(model_with("join", "p", (struct lp_span){o.p, o.n}), -1);
    lp_out_free(&o);
    /* an unknown key's value is bounded too (any deeper than fx could need is invalid) */
    struct lp_span deep = nested(10000);
    struct lp_out m = {0};
    lp_mp_map(&m, 2), lp_mp_cstr(&m, "v"), lp_mp_uint(&m, 1), lp_mp_cstr(&m, "zz"),
        lp_mp_raw(&m, deep.p, deep.n);
    ASSERT_EQ(dec_out(M_ISTATUS, &m), -1);
    lp_out_free(&m);
}

TEST(lp_limit_message_size)
{
    /* {"v":1,"st":"ok","pad":bin32} of exactly LP_MAX_MESSAGE bytes, then one more */
    for (int big = 0; big < 2; big++) {
        struct lp_out o = {0};
        o.cap = SIZE_MAX;
        lp_mp_map(&o, 3), lp_mp_cstr(&o, "v"), lp_mp_uint(&o, 1), lp_mp_cstr(&o, "st"), lp_mp_cstr(&o, "ok");
        lp_mp_cstr(&o, "pad");
        size_t pad = LP_MAX_MESSAGE - o.n - 5 + (size_t)big;
        struct lp_span b = rep('p', pad);
        lp_mp_bin(&o, b.p, b.n);
        ASSERT_EQ(o.n, LP_MAX_MESSAGE + (size_t)big);
        ASSERT_EQ(dec_out(M_ISTATUS, &o), -big);
        lp_out_free(&o);
    }
}

/* ---- limits, encoder side: max encodes, max+1 is refused and leaves the buffer unchanged ---- */

/* Encodes r after a marker byte; checks the marker and rollback on refusal. */
static int enc_req_checked(const struct lp_request *r)
{
    struct lp_out o = {0};
    lp_mp_nil(&o);
    int rc = lp_encode_request(&o, r);
    ASSERT(!o.failed);
    if (rc)
        ASSERT_EQ(o.n, 1);
    else
        ASSERT_EQ(dec_guarded(M_REQ + r->call, o.p + 1, o.n - 1, NULL), 0);
    ASSERT_EQ(o.p[0], 0xc0);
    lp_out_free(&o);
    return rc;
}

static int enc_rep_checked(enum lp_call c, const struct lp_reply *r)
{
    struct lp_out o = {0};
    lp_mp_nil(&o);
    int rc = lp_encode_reply(&o, c, r);
    ASSERT(!o.failed);
    if (rc)
        ASSERT_EQ(o.n, 1);
    else
        ASSERT_EQ(dec_guarded(M_REP + c, o.p + 1, o.n - 1, NULL), 0);
    lp_out_free(&o);
    return rc;
}

TEST(lp_encoder_limits_requests)
{
    struct lp_request r = sample_request(LP_CONNECT);
    r.dev = rep('d', LP_MAX_ID);
    ASSERT_EQ(enc_req_checked(&r), 0);
    r.dev = rep('d', LP_MAX_ID + 1);
    ASSERT_EQ(enc_req_checked(&r), -1);
    r.dev = S("a.b");
    ASSERT_EQ(enc_req_checked(&r), -1);
    r.dev = S("");
    ASSERT_EQ(enc_req_checked(&r), -1);
    r = sample_request(LP_CONNECT);
    r.gw = rep('g', 65);
    ASSERT_EQ(enc_req_checked(&r), -1);
    r = sample_request(LP_JOIN);
    r.session = rep('s', LP_MAX_SESSION);
    ASSERT_EQ(enc_req_checked(&r), 0);
    r.session = rep('s', LP_MAX_SESSION + 1);
    ASSERT_EQ(enc_req_checked(&r), -1);
    r = sample_request(LP_JOIN);
    r.payload = nested(LP_MAX_DEPTH);
    ASSERT_EQ(enc_req_checked(&r), 0);
    r.payload = nested(LP_MAX_DEPTH + 1);
    ASSERT_EQ(enc_req_checked(&r), -1);
    r.topic = S("console");
    r.payload = SP(EMPTY_MAP);
    ASSERT_EQ(enc_req_checked(&r), -1);
    r = sample_request(LP_NOTIFY);
    r.msg = rep('m', LP_MAX_MSG);
    ASSERT_EQ(enc_req_checked(&r), 0);
    r.msg = rep('m', LP_MAX_MSG + 1);
    ASSERT_EQ(enc_req_checked(&r), -1);
    r = sample_request(LP_NOTIFY);
    r.from = rep('t', LP_MAX_TOPIC);
    ASSERT_EQ(enc_req_checked(&r), 0);
    r.from = rep('t', LP_MAX_TOPIC + 1);
    ASSERT_EQ(enc_req_checked(&r), -1);
    r = sample_request(LP_MESSAGE);
    r.event = rep('e', LP_MAX_STR);
    ASSERT_EQ(enc_req_checked(&r), 0);
    r.event = rep('e', LP_MAX_STR + 1);
    ASSERT_EQ(enc_req_checked(&r), -1);
    r = sample_request(LP_DISCONNECT);
    r.reason = S("bored");
    ASSERT_EQ(enc_req_checked(&r), -1);
    r = sample_request(LP_AUTH);
    r.fp = S("0123");
    ASSERT_EQ(enc_req_checked(&r), -1);
}

TEST(lp_encoder_limits_x_and_heartbeats)
{
    static struct lp_kv xs[LP_MAX_X + 1];
    for (size_t i = 0; i <= LP_MAX_X; i++) {
        char *name = malloc(16);
        snprintf(name, 16, "x-h%zu", i);
        xs[i].name = S(name);
        xs[i].value = S("v");
    }
    struct lp_request r = sample_request(LP_AUTH);
    r.x = xs, r.n_x = LP_MAX_X;
    ASSERT_EQ(enc_req_checked(&r), 0);
    r.n_x = LP_MAX_X + 1;
    ASSERT_EQ(enc_req_checked(&r), -1);
    r.n_x = 1;
    xs[0].name = rep('x', LP_MAX_X_NAME);
    memcpy((uint8_t *)xs[0].name.p, "x-", 2);
    ASSERT_EQ(enc_req_checked(&r), 0);
    xs[0].name = rep('x', LP_MAX_X_NAME + 1);
    memcpy((uint8_t *)xs[0].name.p, "x-", 2);
    ASSERT_EQ(enc_req_checked(&r), -1);
    xs[0].name = S("x-a");
    xs[0].value = rep('v', LP_MAX_X_VALUE);
    ASSERT_EQ(enc_req_checked(&r), 0);
    xs[0].value = rep('v', LP_MAX_X_VALUE + 1);
    ASSERT_EQ(enc_req_checked(&r), -1);
    xs[0].value = S("v");
    xs[1].name = S("x-a");
    r.n_x = 2; /* duplicate names */
    ASSERT_EQ(enc_req_checked(&r), -1);
    xs[0].name = S("X-A");
    r.n_x = 1;
    ASSERT_EQ(enc_req_checked(&r), -1);

    static struct lp_hb hbs[LP_MAX_HEARTBEATS + 1];
    for (size_t i = 0; i <= LP_MAX_HEARTBEATS; i++)
        hbs[i].dev = S("d"), hbs[i].session = S("s");
    r = sample_request(LP_HEARTBEAT);
    r.hb = hbs, r.n_hb = LP_MAX_HEARTBEATS;
    ASSERT_EQ(enc_req_checked(&r), 0);
    r.n_hb = LP_MAX_HEARTBEATS + 1;
    ASSERT_EQ(enc_req_checked(&r), -1);
    r.n_hb = 1;
    hbs[0].dev = S("d>");
    ASSERT_EQ(enc_req_checked(&r), -1);
}

TEST(lp_encoder_limits_replies)
{
    static struct lp_effect fx[LP_MAX_EFFECTS + 1];
    memset(fx, 0, sizeof(fx));
    for (size_t i = 0; i <= LP_MAX_EFFECTS; i++)
        fx[i].kind = LP_FX_SCROLLBACK_CLEAR;
    struct lp_reply r = {0};
    r.effects = fx, r.n_effects = LP_MAX_EFFECTS;
    ASSERT_EQ(enc_rep_checked(LP_MESSAGE, &r), 0);
    r.n_effects = LP_MAX_EFFECTS + 1;
    ASSERT_EQ(enc_rep_checked(LP_MESSAGE, &r), -1);
    r.n_effects = 1;
    ASSERT_EQ(enc_rep_checked(LP_CONNECT, &r), -1); /* connect replies carry no effects */
    ASSERT_EQ(enc_rep_checked(LP_AUTH, &r), -1);
    /* effect arguments */
    static const struct {
        enum lp_effect_kind kind;
        uint32_t ms;
        uint16_t code;
        size_t key, msg;
        int rc;
    } cases[] = {
        {LP_FX_SEND_AFTER, 1, 0, LP_MAX_KEY, LP_MAX_MSG, 0},
        {LP_FX_SEND_AFTER, 0x7fffffff, 0, 0, 0, 0},
        {LP_FX_START_TIMER, 0, 0, 1, 1, -1},
        {LP_FX_START_TIMER, 0x80000000u, 0, 1, 1, -1},
        {LP_FX_SEND_AFTER, 5, 0, LP_MAX_KEY + 1, 1, -1},
        {LP_FX_SEND_AFTER, 5, 0, 1, LP_MAX_MSG + 1, -1},
        {LP_FX_CANCEL_TIMER, 0, 0, LP_MAX_KEY, 0, 0},
        {LP_FX_CANCEL_TIMER, 0, 0, LP_MAX_KEY + 1, 0, -1},
        {LP_FX_SEND_SELF, 0, 0, 0, LP_MAX_MSG, 0},
        {LP_FX_SEND_SELF, 0, 0, 0, LP_MAX_MSG + 1, -1},
        {LP_FX_CLOSE, 0, 1000, 0, 0, 0},
        {LP_FX_CLOSE, 0, 4999, 0, 0, 0},
        {LP_FX_CLOSE, 0, 999, 0, 0, -1},
        {LP_FX_CLOSE, 0, 5000, 0, 0, -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(fx, 0, sizeof(fx[0]));
        fx[0].kind = cases[i].kind;
        fx[0].ms = cases[i].ms;
        fx[0].code = cases[i].code;
        fx[0].key = rep('k', cases[i].key);
        fx[0].msg = rep('m', cases[i].msg);
        if (enc_rep_checked(LP_NOTIFY, &r) != cases[i].rc)
            TEST_FAIL("effect case %zu", i);
    }
    memset(fx, 0, sizeof(fx[0]));
    fx[0].kind = LP_FX_SUBSCRIBE, fx[0].topic = rep('t', LP_MAX_TOPIC);
    ASSERT_EQ(
        enc_rep_checked(
            LP_JOIN, &(struct lp_reply){.st = LP_ST_OK, .has_session = true, .effects = fx, .n_effects = 1}),
        0);
    fx[0].topic = rep('t', LP_MAX_TOPIC + 1);
    ASSERT_EQ(enc_rep_checked(LP_MESSAGE, &r), -1);
    fx[0].kind = LP_FX_PUSH, fx[0].event = S("e"), fx[0].payload = nested(LP_MAX_DEPTH + 1);
    ASSERT_EQ(enc_rep_checked(LP_MESSAGE, &r), -1);
    fx[0].payload = (struct lp_span){0}; /* a payload is required */
    ASSERT_EQ(enc_rep_checked(LP_MESSAGE, &r), -1);
    fx[0].kind = (enum lp_effect_kind)99;
    ASSERT_EQ(enc_rep_checked(LP_MESSAGE, &r), -1);
    fx[0].kind = LP_FX_SCROLLBACK_REPLAY, fx[0].topic = S("nh.console.d");
    ASSERT_EQ(enc_rep_checked(LP_MESSAGE, &r), 0);
    fx[0].topic = S("nh.*");
    ASSERT_EQ(enc_rep_checked(LP_MESSAGE, &r), -1);

    /* status-dependent requirements */
    struct lp_reply a = {0};
    ASSERT_EQ(enc_rep_checked(LP_AUTH, &a), -1); /* ok without dev and s */
    a.dev = S("d");
    ASSERT_EQ(enc_rep_checked(LP_AUTH, &a), -1);
    a.has_session = true;
    ASSERT_EQ(enc_rep_checked(LP_AUTH, &a), 0);
    a.dev = rep('d', LP_MAX_ID + 1);
    ASSERT_EQ(enc_rep_checked(LP_AUTH, &a), -1);
    a = (struct lp_reply){.st = LP_ST_REFUSED};
    ASSERT_EQ(enc_rep_checked(LP_AUTH, &a), 0);
    ASSERT_EQ(enc_rep_checked(LP_JOIN, &a), 0);
    a.st = LP_ST_OK;
    ASSERT_EQ(enc_rep_checked(LP_JOIN, &a), -1); /* ok join without s */
    a.has_session = true, a.session = rep('s', LP_MAX_SESSION + 1);
    ASSERT_EQ(enc_rep_checked(LP_JOIN, &a), -1);
    a.session = S("s"), a.response = nested(LP_MAX_DEPTH + 1);
    ASSERT_EQ(enc_rep_checked(LP_JOIN, &a), -1);
    a.response = SP(ARR_1_NIL);
    ASSERT_EQ(enc_rep_checked(LP_JOIN, &a), 0);
    ASSERT_EQ(enc_rep_checked(LP_MESSAGE, &a), -1); /* r only in join replies */
    a.st = (enum lp_status)7;
    ASSERT_EQ(enc_rep_checked(LP_JOIN, &a), -1);
    ASSERT_EQ(enc_rep_checked(LP_DISCONNECT, &(struct lp_reply){0}), -1);
    ASSERT_EQ(enc_rep_checked(LP_HEARTBEAT, &(struct lp_reply){0}), -1);
}

TEST(lp_encoder_inbox_and_topic_checks)
{
    struct lp_out o = {0};
    struct lp_inbox m = sample_inbox(LP_IN_PUSH, 0);
    m.topic = S("phoenix");
    ASSERT_EQ(lp_encode_inbox(&o, &m), -1);
    m = sample_inbox(LP_IN_PUSH, 0);
    m.payload = (struct lp_span){(const uint8_t *)"\x01\x02", 2}; /* two objects */
    ASSERT_EQ(lp_encode_inbox(&o, &m), -1);
    m.payload = (struct lp_span){(const uint8_t *)"\x92\x01", 2}; /* truncated */
    ASSERT_EQ(lp_encode_inbox(&o, &m), -1);
    m = sample_inbox(LP_IN_KICK, 0);
    m.code = 999;
    ASSERT_EQ(lp_encode_inbox(&o, &m), -1);
    m.code = 5000;
    ASSERT_EQ(lp_encode_inbox(&o, &m), -1);
    m.code = 0; /* absent: the default 1001 */
    ASSERT_EQ(lp_encode_inbox(&o, &m), 0);
    struct lp_inbox got;
    ASSERT_EQ(lp_decode_inbox(o.p, o.n, &got, NULL), 0);
    ASSERT_EQ(got.code, 1001);
    lp_out_reset(&o);
    m = sample_inbox(LP_IN_NOTIFY, 0);
    m.msg = rep('m', LP_MAX_MSG + 1);
    ASSERT_EQ(lp_encode_inbox(&o, &m), -1);
    m.kind = (enum lp_inbox_kind)(LP_IN_TOPICS + 1);
    ASSERT_EQ(lp_encode_inbox(&o, &m), -1);
    m = sample_inbox(LP_IN_NOTIFY, 0);
    m.dev = rep('d', LP_MAX_ID + 1);
    ASSERT_EQ(lp_encode_inbox(&o, &m), -1);
    struct lp_topic_msg t = sample_topic(LP_TOPIC_PUSH);
    t.payload = nested(LP_MAX_DEPTH + 1);
    ASSERT_EQ(lp_encode_topic_msg(&o, &t), -1);
    t = sample_topic(LP_TOPIC_NOTIFY);
    t.msg = rep('m', LP_MAX_MSG + 1);
    ASSERT_EQ(lp_encode_topic_msg(&o, &t), -1);
    t.kind = (enum lp_topic_kind)2;
    ASSERT_EQ(lp_encode_topic_msg(&o, &t), -1);
    ASSERT_EQ(o.n, 0);
    ASSERT(!o.failed);
    lp_out_free(&o);
}

/* ---- the output buffer ---- */

TEST(lp_out_cap_latches)
{
    struct lp_request r = sample_request(LP_JOIN);
    struct lp_out o = {0};
    ASSERT_EQ(lp_encode_request(&o, &r), 0);
    size_t need = o.n;
    lp_out_free(&o);
    /* exactly enough */
    o = (struct lp_out){.cap = need};
    ASSERT_EQ(lp_encode_request(&o, &r), 0);
    ASSERT_EQ(o.n, need);
    ASSERT(o.alloc <= need);
    /* one byte short: fails, latches, later calls fail too */
    lp_out_free(&o);
    o = (struct lp_out){.cap = need - 1};
    ASSERT_EQ(lp_encode_request(&o, &r), -1);
    ASSERT(o.failed);
    ASSERT_EQ(o.n, 0);
    ASSERT_EQ(lp_encode_inbox_status(&o, LP_IST_OK), -1);
    lp_mp_nil(&o);
    ASSERT_EQ(o.n, 0);
    lp_out_reset(&o);
    ASSERT(!o.failed);
    ASSERT_EQ(lp_encode_inbox_status(&o, LP_IST_OK), 0);
    lp_out_free(&o);
    ASSERT(o.p == NULL);
    /* cap 0 is LP_MAX_MESSAGE */
    o = (struct lp_out){0};
    struct lp_span big = rep('b', LP_MAX_MESSAGE - 5);
    lp_mp_bin(&o, big.p, big.n);
    ASSERT(!o.failed);
    ASSERT_EQ(o.n, LP_MAX_MESSAGE);
    lp_mp_raw(&o, "", 0); /* nothing to add still fits */
    ASSERT(!o.failed);
    lp_out_reset(&o);
    big = rep('b', LP_MAX_MESSAGE - 4);
    lp_mp_raw(&o, big.p, big.n);
    lp_mp_raw(&o, "1234", 4);
    ASSERT(!o.failed);
    lp_mp_nil(&o);
    ASSERT(o.failed);
    ASSERT_EQ(o.n, LP_MAX_MESSAGE);
    lp_out_free(&o);
}

TEST(lp_encoders_refuse_null_and_bad_spans)
{
    struct lp_out o = {0};
    struct lp_request r = sample_request(LP_CONNECT);
    r.peer = (struct lp_span){NULL, 3};
    ASSERT_EQ(lp_encode_request(&o, &r), -1);
    r = sample_request(LP_AUTH);
    r.x = NULL; /* n_x 1 */
    ASSERT_EQ(lp_encode_request(&o, &r), -1);
    r = sample_request(LP_HEARTBEAT);
    r.hb = NULL;
    ASSERT_EQ(lp_encode_request(&o, &r), -1);
    r.call = (enum lp_call)LP_CALL_COUNT;
    ASSERT_EQ(lp_encode_request(&o, &r), -1);
    r = sample_request(LP_MESSAGE);
    r.payload = (struct lp_span){0};
    ASSERT_EQ(lp_encode_request(&o, &r), -1);
    r.payload = (struct lp_span){(const uint8_t *)"\xc1", 1};
    ASSERT_EQ(lp_encode_request(&o, &r), -1);
    struct lp_reply rp = sample_reply(LP_MESSAGE, 0);
    rp.effects = NULL;
    ASSERT_EQ(lp_encode_reply(&o, LP_MESSAGE, &rp), -1);
    ASSERT_EQ(o.n, 0);
    ASSERT(!o.failed);
    lp_out_free(&o);
}

/* ---- status-dependent decoding ---- */

TEST(lp_reply_status_rules)
{
    /* auth: ok needs dev and s; refused/error need neither */
    ASSERT_EQ(model_with_hex("auth reply", "st", "a7 72656675736564"), 0);
    ASSERT_EQ(model_with_hex("auth reply", "st", "a5 6572726f72"), 0);
    ASSERT_EQ(model_with_hex("auth reply", "st", "a2 4f4b"), -1); /* "OK" */
    ASSERT_EQ(model_with_hex("auth reply", "st", "a0"), -1);
    static const char *const refused_auth = "82 a1 76 01 a2 7374 a7 72656675736564";
    size_t n;
    uint8_t *b = test_unhex(refused_auth, &n);
    ASSERT_EQ(dec_guarded(M_REP + LP_AUTH, b, n, NULL), 0);
    ASSERT_EQ(dec_guarded(M_REP + LP_JOIN, b, n, NULL), 0);
    ASSERT_EQ(dec_guarded(M_REP + LP_CONNECT, b, n, NULL), 0);
    free(b);
    /* ok without s / dev */
    b = test_unhex("83 a1 76 01 a2 7374 a2 6f6b a3 646576 a1 64", &n);
    ASSERT_EQ(dec_guarded(M_REP + LP_AUTH, b, n, NULL), -1);
    free(b);
    b = test_unhex("83 a1 76 01 a2 7374 a2 6f6b a1 73 c4 00", &n);
    ASSERT_EQ(dec_guarded(M_REP + LP_AUTH, b, n, NULL), -1);
    ASSERT_EQ(dec_guarded(M_REP + LP_JOIN, b, n, NULL), 0);
    free(b);
    b = test_unhex("82 a1 76 01 a2 7374 a2 6f6b", &n);
    ASSERT_EQ(dec_guarded(M_REP + LP_JOIN, b, n, NULL), -1);
    ASSERT_EQ(dec_guarded(M_REP + LP_CONNECT, b, n, NULL), 0);
    ASSERT_EQ(dec_guarded(M_REP + LP_MESSAGE, b, n, NULL), 0);
    free(b);
    /* refused join with a response */
    struct lp_reply r;
    b = test_unhex("83 a1 76 01 a2 7374 a7 72656675736564 a1 72 81 a1 61 01", &n);
    ASSERT_EQ(lp_decode_reply(LP_JOIN, b, n, &r, NULL), 0);
    ASSERT_EQ(r.st, LP_ST_REFUSED);
    ASSERT(!r.has_session);
    ASSERT_MEM_EQ(r.response.p, r.response.n, "\x81\xa1\x61\x01", 4);
    free(b);
    /* keys that belong to other calls are ignored (not validated) */
    b = test_unhex("84 a1 76 01 a2 7374 a2 6f6b a1 72 c1 a2 6678 01", &n);
    ASSERT_EQ(dec_guarded(M_REP + LP_CONNECT, b, n, NULL), -1); /* c1 is never valid msgpack */
    free(b);
    b = test_unhex("84 a1 76 01 a2 7374 a2 6f6b a1 72 c0 a2 6678 01", &n);
    ASSERT_EQ(dec_guarded(M_REP + LP_CONNECT, b, n, NULL), 0);
    ASSERT_EQ(dec_guarded(M_REP + LP_MESSAGE, b, n, NULL), -1); /* fx must be an array there */
    free(b);
}

TEST(lp_auth_cert_fields_together)
{
    /* model "auth" has fp, der, cn; without all three: fine */
    struct lp_out o = {0};
    lp_mp_map(&o, 5);
    lp_mp_cstr(&o, "v"), lp_mp_uint(&o, 1);
    lp_mp_cstr(&o, "gw"), lp_mp_cstr(&o, "g");
    lp_mp_cstr(&o, "w"), lp_mp_uint(&o, 0);
    lp_mp_cstr(&o, "cref"), lp_mp_uint(&o, 0);
    lp_mp_cstr(&o, "peer"), lp_mp_cstr(&o, "p");
    struct lp_request r;
    ASSERT_EQ(lp_decode_request(LP_AUTH, o.p, o.n, &r, NULL), 0);
    ASSERT(!r.has_cert);
    ASSERT_EQ(r.fp.n, 0);
    lp_out_free(&o);
    /* each one alone (covered by the model's missing-key test for pairs) */
    ASSERT_EQ(model_with_hex("auth", "cn", "a0"), 0);
    ASSERT_EQ(model_with_hex("auth", "der", "c4 00"), 0);
}

TEST(lp_disconnect_reasons)
{
    static const char *const ok[] = {"closed",        "idle_timeout", "kicked",         "protocol_error",
                                     "slow_consumer", "shutdown",     "platform_close", "worker_exit"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        ASSERT_EQ(model_with("disconnect", "reason", enc_str(S(ok[i]))), 0);
        struct lp_request r = sample_request(LP_DISCONNECT);
        r.reason = S(ok[i]);
        ASSERT_EQ(enc_req_checked(&r), 0);
    }
    ASSERT_EQ(model_with("disconnect", "reason", enc_str(S("close"))), -1);
    ASSERT_EQ(model_with("disconnect", "reason", enc_str(S("closed "))), -1);
    ASSERT_EQ(model_with("disconnect", "reason", enc_str(S(""))), -1);
}

TEST(lp_inbox_kinds)
{
    ASSERT_EQ(model_with_hex("inbox push", "k", "a4 6b69636b"), 0);  /* a kick ignores push keys */
    ASSERT_EQ(model_with_hex("inbox push", "k", "a4 50555348"), -1); /* PUSH */
    ASSERT_EQ(model_with_hex("inbox push", "k", "a5 7265706c79"), -1);
    ASSERT_EQ(model_with_hex("topic push", "k", "a4 6b69636b"), -1); /* no kick on topics */
    ASSERT_EQ(model_with_hex("inbox kick", "code", "cd 03e8"), 0);
    ASSERT_EQ(model_with_hex("inbox kick", "code", "cd 1387"), 0);
    ASSERT_EQ(model_with_hex("inbox kick", "code", "cd 03e7"), -1);
    ASSERT_EQ(model_with_hex("inbox kick", "code", "cd 1388"), -1);
    ASSERT_EQ(model_with_hex("inbox status", "st", "a2 6f6b"), 0);
    ASSERT_EQ(model_with_hex("inbox status", "st", "a5 6572726f72"), -1);
    /* kick without code: 1001 */
    size_t n;
    uint8_t *b = test_unhex("83 a1 76 01 a1 6b a4 6b69636b a3 646576 a1 64", &n);
    struct lp_inbox m;
    ASSERT_EQ(lp_decode_inbox(b, n, &m, NULL), 0);
    ASSERT_EQ(m.kind, LP_IN_KICK);
    ASSERT_EQ(m.code, 1001);
    ASSERT(!m.has_cref);
    ASSERT_EQ(m.reason.n, 0);
    free(b);
}

/* ---- effects ---- */

TEST(lp_effects_decode_each)
{
    struct lp_reply r;
    size_t n;
    uint8_t *b = test_unhex(golden_hex(M_REP + LP_MESSAGE, 0), &n); /* 8 effects */
    ASSERT_EQ(lp_decode_reply(LP_MESSAGE, b, n, &r, NULL), 0);
    ASSERT_EQ(r.n_fx, 8);
    struct lp_effect e;
    ASSERT_EQ(lp_effect_next(&r.fx_iter, &e), 1);
    ASSERT_EQ(e.kind, LP_FX_REPLY);
    SPAN_IS(e.status, "error");
    ASSERT_MEM_EQ(e.payload.p, e.payload.n, DETACH, sizeof(DETACH));
    ASSERT_EQ(lp_effect_next(&r.fx_iter, &e), 1);
    ASSERT_EQ(e.kind, LP_FX_UNSUBSCRIBE);
    SPAN_IS(e.topic, "deployment:12");
    ASSERT_EQ(lp_effect_next(&r.fx_iter, &e), 1);
    ASSERT_EQ(e.kind, LP_FX_SEND_SELF);
    SPAN_IS(e.msg, "m");
    ASSERT_EQ(lp_effect_next(&r.fx_iter, &e), 1);
    ASSERT_EQ(e.kind, LP_FX_START_TIMER);
    SPAN_IS(e.key, "t");
    ASSERT_EQ(e.ms, 70000);
    ASSERT_EQ(lp_effect_next(&r.fx_iter, &e), 1);
    ASSERT_EQ(e.kind, LP_FX_CANCEL_TIMER);
    ASSERT_EQ(lp_effect_next(&r.fx_iter, &e), 1);
    ASSERT_EQ(e.kind, LP_FX_SCROLLBACK_APPEND);
    SPAN_IS(e.data, "iex> ");
    ASSERT_EQ(lp_effect_next(&r.fx_iter, &e), 1);
    ASSERT_EQ(e.kind, LP_FX_SCROLLBACK_CLEAR);
    ASSERT_EQ(lp_effect_next(&r.fx_iter, &e), 1);
    ASSERT_EQ(e.kind, LP_FX_SCROLLBACK_REPLAY);
    SPAN_IS(e.topic, "nh.console.dev-1");
    ASSERT_EQ(lp_effect_next(&r.fx_iter, &e), 0);
    ASSERT_EQ(lp_effect_next(&r.fx_iter, &e), 0);
    free(b);
}

TEST(lp_effects_malformed)
{
    /* arity, names, argument types and ranges */
    ASSERT_EQ(fx_one(CLEAR_HEX), 0);
    ASSERT_EQ(fx_one("92 b0 7363726f6c6c6261636b5f636c656172 c0"), -1); /* clear takes nothing */
    ASSERT_EQ(fx_one("90"), -1);
    ASSERT_EQ(fx_one("91 a4 70757368"), -1);       /* push without args */
    ASSERT_EQ(fx_one("92 a4 70757368 a1 65"), -1); /* push without payload */
    ASSERT_EQ(fx_one("93 a4 70757368 a1 65 c0"), 0);
    ASSERT_EQ(fx_one("93 a4 70757368 c4 01 65 c0"), -1); /* bin event */
    ASSERT_EQ(fx_one("94 a4 70757368 a1 65 c0 c0"), -1); /* extra argument */
    ASSERT_EQ(fx_one("93 a4 50555348 a1 65 c0"), -1);    /* PUSH */
    ASSERT_EQ(fx_one("93 c4 04 70757368 a1 65 c0"), -1); /* bin name */
    ASSERT_EQ(fx_one("92 a4 6a756d70 c0"), -1);          /* jump */
    ASSERT_EQ(fx_one("a4 70757368"), -1);                /* not an array */
    ASSERT_EQ(fx_one("81 a4 70757368 c0"), -1);
    ASSERT_EQ(fx_one("93 a5 7265706c79 a2 6f6b 80"), 0);
    ASSERT_EQ(fx_one("93 a5 7265706c79 c0 80"), -1);
    ASSERT_EQ(fx_one("92 a9 737562736372696265 a3 612e62"), -1); /* a.b */
    ASSERT_EQ(fx_one("92 a9 737562736372696265 a0"), -1);
    ASSERT_EQ(fx_one("92 a9 73656e645f73656c66 a1 6d"), -1); /* str msg */
    /* send_after / start_timer ms: 1 .. 2^31-1 in any width */
    ASSERT_EQ(fx_one("94 aa 73656e645f6166746572 c4 00 c4 00 01"), 0);
    ASSERT_EQ(fx_one("94 aa 73656e645f6166746572 c4 00 c4 00 ce 7fffffff"), 0);
    ASSERT_EQ(fx_one("94 aa 73656e645f6166746572 c4 00 c4 00 d3 000000007fffffff"), 0);
    ASSERT_EQ(fx_one("94 aa 73656e645f6166746572 c4 00 c4 00 00"), -1);
    ASSERT_EQ(fx_one("94 aa 73656e645f6166746572 c4 00 c4 00 ce 80000000"), -1);
    ASSERT_EQ(fx_one("94 aa 73656e645f6166746572 c4 00 c4 00 ff"), -1);
    ASSERT_EQ(fx_one("94 aa 73656e645f6166746572 c4 00 c4 00 cb 3ff0000000000000"), -1);
    ASSERT_EQ(fx_one("94 ab 73746172745f74696d6572 c4 00 c4 00 ce 80000000"), -1);
    ASSERT_EQ(fx_one("93 aa 73656e645f6166746572 c4 00 c4 00"), -1);
    ASSERT_EQ(fx_one("92 ac 63616e63656c5f74696d6572 a1 74"), -1); /* str key */
    /* close: code 1000..4999, reason str */
    ASSERT_EQ(fx_one("93 a5 636c6f7365 cd 03e8 a0"), 0);
    ASSERT_EQ(fx_one("93 a5 636c6f7365 cd 1387 a0"), 0);
    ASSERT_EQ(fx_one("93 a5 636c6f7365 cd 03e7 a0"), -1);
    ASSERT_EQ(fx_one("93 a5 636c6f7365 cd 1388 a0"), -1);
    ASSERT_EQ(fx_one("93 a5 636c6f7365 cd 03e8 c0"), -1);
    ASSERT_EQ(fx_one("92 a5 636c6f7365 cd 03e8"), -1);
    ASSERT_EQ(fx_one("92 b1 7363726f6c6c6261636b5f617070656e64 a1 61"), -1); /* str data */
    ASSERT_EQ(fx_one("92 b1 7363726f6c6c6261636b5f7265706c6179 a0"), -1);
    ASSERT_EQ(fx_one("92 b1 7363726f6c6c6261636b5f7265706c6179 a3 612062"), -1);
    ASSERT_EQ(fx_one("92 b1 7363726f6c6c6261636b5f7265706c6179 a2 612e"), -1);
    ASSERT_EQ(fx_one("92 b1 7363726f6c6c6261636b5f7265706c6179 a3 612e62"), 0);
    /* one bad effect among good ones invalidates the reply */
    struct lp_out o = {0};
    size_t n;
    uint8_t *e = test_unhex(CLEAR_HEX, &n);
    lp_mp_array(&o, 3), lp_mp_raw(&o, e, n), lp_mp_raw(&o, "\x90", 1), lp_mp_raw(&o, e, n);
    ASSERT_EQ(model_with("join reply", "fx", (struct lp_span){o.p, o.n}), -1);
    lp_out_free(&o);
    free(e);
}

/* ---- lists ---- */

TEST(lp_iterators)
{
    struct lp_request r;
    size_t n;
    uint8_t *b = test_unhex(golden_hex(M_REQ + LP_AUTH, 0), &n);
    ASSERT_EQ(lp_decode_request(LP_AUTH, b, n, &r, NULL), 0);
    struct lp_kv kv;
    ASSERT_EQ(lp_kv_next(&r.x_iter, &kv), 1);
    SPAN_IS(kv.name, "x-nh-tag");
    SPAN_IS(kv.value, "a");
    ASSERT_EQ(lp_kv_next(&r.x_iter, &kv), 0);
    free(b);
    b = test_unhex(golden_hex(M_REQ + LP_HEARTBEAT, 0), &n);
    ASSERT_EQ(lp_decode_request(LP_HEARTBEAT, b, n, &r, NULL), 0);
    struct lp_hb hb;
    ASSERT_EQ(lp_hb_next(&r.hb_iter, &hb), 1);
    SPAN_IS(hb.dev, "dev-1");
    ASSERT_MEM_EQ(hb.session.p, hb.session.n, "\x01", 1);
    ASSERT_EQ(lp_hb_next(&r.hb_iter, &hb), 1);
    SPAN_IS(hb.dev, "dev-2");
    ASSERT_EQ(lp_hb_next(&r.hb_iter, &hb), 0);
    free(b);
    /* a zeroed iterator is empty; a hand-made bad one stops instead of reading past its end */
    struct lp_iter it = {0};
    struct lp_effect e;
    ASSERT_EQ(lp_effect_next(&it, &e), 0);
    ASSERT_EQ(lp_kv_next(NULL, &kv), 0);
    uint8_t *g = test_guard_copy("\x92\xa4push", 6);
    it = (struct lp_iter){g, g + 6, 5};
    ASSERT_EQ(lp_effect_next(&it, &e), 0);
    ASSERT_EQ(it.left, 0);
    test_guard_free(g);
}

/* ---- msgpack helpers ---- */

TEST(lp_mp_object_len_all_types)
{
    static const struct {
        const char *hex;
        size_t len; /* 0: invalid */
    } cases[] = {
        {"c0", 1},
        {"c2", 1},
        {"c3", 1},
        {"c1", 0},
        {"7f", 1},
        {"e0", 1},
        {"cc ff", 2},
        {"cd ffff", 3},
        {"ce ffffffff", 5},
        {"cf ffffffffffffffff", 9},
        {"d0 80", 2},
        {"d1 8000", 3},
        {"d2 80000000", 5},
        {"d3 8000000000000000", 9},
        {"ca 3f800000", 5},
        {"cb 3ff0000000000000", 9},
        {"cb 3ff00000000000", 0},
        {"a3 616263", 4},
        {"a3 6162", 0},
        {"d9 03 616263", 5},
        {"da 0003 616263", 6},
        {"db 00000003 616263", 8},
        {"db ffffffff 61", 0},
        {"c4 02 0102", 4},
        {"c5 0002 0102", 5},
        {"c6 00000002 0102", 7},
        {"c6 00000003 0102", 0},
        {"d4 01 aa", 3},
        {"d5 01 aabb", 4},
        {"d6 ff 00000001", 6},
        {"d7 ff 0000000000000001", 10},
        {"d8 01 00112233445566778899aabbccddeeff", 18},
        {"d8 01 00112233445566778899aabbccddee", 0},
        {"c7 02 01 aabb", 5},
        {"c8 0002 01 aabb", 6},
        {"c9 00000002 01 aabb", 8},
        {"c7 02 01 aa", 0},
        {"c7 00 01", 3},
        {"c7 00", 0},
        {"93 01 02 03", 4},
        {"93 01 02", 0},
        {"dc 0002 01 02", 5},
        {"dd 00000002 01 02", 7},
        {"82 a1 61 01 a1 62 02", 7},
        {"82 a1 61 01 a1 62", 0},
        {"de 0001 01 02", 5},
        {"df 00000001 01 02", 7},
        {"81 92 01 02 80", 5}, /* container keys are fine in payloads */
        {"01 02", 1},          /* one object; the caller checks the rest */
        /* hostile counts: rejected at once, before iterating */
        {"dd ffffffff 01", 0},
        {"df ffffffff 01 01", 0},
        {"df 80000000 01 01", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n;
        uint8_t *b = test_unhex(cases[i].hex, &n);
        uint8_t *g = test_guard_copy(b, n);
        size_t got = lp_mp_object_len(g, n);
        if (got != cases[i].len)
            TEST_FAIL("%s: %zu != %zu", cases[i].hex, got, cases[i].len);
        test_guard_free(g);
        /* every proper prefix of a valid object is incomplete */
        for (size_t k = 0; k < cases[i].len; k++) {
            uint8_t *t = test_guard_copy(b, k);
            if (lp_mp_object_len(t, k) != 0)
                TEST_FAIL("%s accepted truncated to %zu", cases[i].hex, k);
            test_guard_free(t);
        }
        free(b);
    }
    ASSERT_EQ(lp_mp_object_len(NULL, 0), 0);
    struct lp_span d = nested(LP_MAX_DEPTH);
    ASSERT_EQ(lp_mp_object_len(d.p, d.n), d.n);
    d = nested(LP_MAX_DEPTH + 1);
    ASSERT_EQ(lp_mp_object_len(d.p, d.n), 0);
}

/* A map32/array32 with a huge count over a large input costs one step per byte. */
TEST(lp_hostile_counts_are_linear)
{
    size_t n = 4u << 20;
    uint8_t *p = malloc(n);
    memset(p, 0x01, n);
    p[0] = 0xdd, p[1] = 0xff, p[2] = 0xff, p[3] = 0xff, p[4] = 0xff;
    ASSERT_EQ(lp_mp_object_len(p, n), 0);
    p[0] = 0xdf;
    ASSERT_EQ(lp_mp_object_len(p, n), 0);
    /* a message over the limit is rejected before it is read */
    struct lp_request r;
    const char *err = NULL;
    ASSERT_EQ(lp_decode_request(LP_JOIN, p, n, &r, &err), -1);
    ASSERT(err != NULL);
    /* the largest message: an unknown key holding ~1M empty arrays is walked once, and accepted */
    static const uint8_t head[] = {0x83, 0xa1, 'v', 0x01, 0xa2, 's', 't', 0xa2, 'o', 'k', 0xa1, 'z', 0xdd};
    uint32_t cnt = LP_MAX_MESSAGE - sizeof(head) - 4;
    memcpy(p, head, sizeof(head));
    p[13] = (uint8_t)(cnt >> 24), p[14] = (uint8_t)(cnt >> 16), p[15] = (uint8_t)(cnt >> 8),
    p[16] = (uint8_t)cnt;
    memset(p + 17, 0x90, cnt);
    enum lp_inbox_status st;
    ASSERT_EQ(lp_decode_inbox_status(p, LP_MAX_MESSAGE, &st, NULL), 0);
    ASSERT_EQ(lp_decode_inbox_status(p, LP_MAX_MESSAGE - 1, &st, NULL), -1);
    free(p);
}

TEST(lp_mp_writers_widths)
{
    static const struct {
        int what; /* 0 uint, 1 int */
        int64_t v;
        const char *hex;
    } cases[] = {
        {0, 0, "00"},
        {0, 127, "7f"},
        {0, 128, "cc 80"},
        {0, 255, "cc ff"},
        {0, 256, "cd 0100"},
        {0, 65535, "cd ffff"},
        {0, 65536, "ce 00010000"},
        {0, 0xffffffffLL, "ce ffffffff"},
        {0, 0x100000000LL, "cf 0000000100000000"},
        {1, -1, "ff"},
        {1, -32, "e0"},
        {1, -33, "d0 df"},
        {1, -128, "d0 80"},
        {1, -129, "d1 ff7f"},
        {1, -32768, "d1 8000"},
        {1, -32769, "d2 ffff7fff"},
        {1, INT32_MIN, "d2 80000000"},
        {1, (int64_t)INT32_MIN - 1, "d3 ffffffff7fffffff"},
        {1, INT64_MIN, "d3 8000000000000000"},
        {1, 5, "05"},
        {1, INT64_MAX, "cf 7fffffffffffffff"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lp_out o = {0};
        if (cases[i].what == 0)
            lp_mp_uint(&o, (uint64_t)cases[i].v);
        else
            lp_mp_int(&o, cases[i].v);
        size_t n;
        uint8_t *b = test_unhex(cases[i].hex, &n);
        ASSERT_MEM_EQ(o.p, o.n, b, n);
        int64_t back;
        ASSERT_EQ(lp_mp_read_int((struct lp_span){o.p, o.n}, &back), 0);
        ASSERT(back == cases[i].v);
        free(b);
        lp_out_free(&o);
    }
    struct lp_out o = {0};
    lp_mp_uint(&o, UINT64_MAX);
    ASSERT_MEM_EQ(o.p, o.n, "\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9);
    int64_t i64;
    ASSERT_EQ(lp_mp_read_int((struct lp_span){o.p, o.n}, &i64), -1);
    lp_out_free(&o);
    /* str, bin, array, map header widths */
    static const struct {
        char what;
        size_t n;
        const char *hdr;
    } hdrs[] = {
        {'s', 0, "a0"},
        {'s', 31, "bf"},
        {'s', 32, "d9 20"},
        {'s', 255, "d9 ff"},
        {'s', 256, "da 0100"},
        {'s', 65535, "da ffff"},
        {'s', 65536, "db 00010000"},
        {'b', 0, "c4 00"},
        {'b', 255, "c4 ff"},
        {'b', 256, "c5 0100"},
        {'b', 65536, "c6 00010000"},
        {'a', 15, "9f"},
        {'a', 16, "dc 0010"},
        {'a', 65536, "dd 00010000"},
        {'m', 15, "8f"},
        {'m', 16, "de 0010"},
        {'m', 65536, "df 00010000"},
    };
    for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
        struct lp_out w = {0};
        struct lp_span s = rep('a', hdrs[i].n);
        if (hdrs[i].what == 's')
            lp_mp_str(&w, s.p, s.n);
        else if (hdrs[i].what == 'b')
            lp_mp_bin(&w, s.p, s.n);
        else if (hdrs[i].what == 'a')
            lp_mp_array(&w, (uint32_t)hdrs[i].n);
        else
            lp_mp_map(&w, (uint32_t)hdrs[i].n);
        size_t hn;
        uint8_t *h = test_unhex(hdrs[i].hdr, &hn);
        ASSERT(w.n >= hn);
        ASSERT_MEM_EQ(w.p, hn, h, hn);
        if (hdrs[i].what == 's' || hdrs[i].what == 'b')
            ASSERT_EQ(w.n, hn + hdrs[i].n);
        free(h);
        lp_out_free(&w);
    }
    lp_mp_bool(&o, true), lp_mp_bool(&o, false), lp_mp_nil(&o), lp_mp_cstr(&o, "hi");
    ASSERT_MEM_EQ(o.p, o.n, "\xc3\xc2\xc0\xa2hi", 6);
    lp_out_free(&o);
}

TEST(lp_mp_readers)
{
    struct lp_span v, out;
    uint64_t u;
    int64_t i;
    bool b;
    v = (struct lp_span){(const uint8_t *)"\xa2hi", 3};
    ASSERT_EQ(lp_mp_read_str(v, &out), 0);
    SPAN_IS(out, "hi");
    ASSERT_EQ(lp_mp_read_bin(v, &out), -1);
    ASSERT_EQ(lp_mp_read_uint(v, &u), -1);
    v = (struct lp_span){(const uint8_t *)"\xa2hi\x00", 4}; /* trailing byte */
    ASSERT_EQ(lp_mp_read_str(v, &out), -1);
    v = (struct lp_span){(const uint8_t *)"\xc4\x01x", 3};
    ASSERT_EQ(lp_mp_read_bin(v, &out), 0);
    SPAN_IS(out, "x");
    ASSERT_EQ(lp_mp_read_str(v, &out), -1);
    v = (struct lp_span){(const uint8_t *)"\xd0\xfe", 2};
    ASSERT_EQ(lp_mp_read_int(v, &i), 0);
    ASSERT_EQ(i, -2);
    ASSERT_EQ(lp_mp_read_uint(v, &u), -1);
    v = (struct lp_span){(const uint8_t *)"\xd0\x05", 2};
    ASSERT_EQ(lp_mp_read_uint(v, &u), 0);
    ASSERT_EQ(u, 5);
    v = (struct lp_span){(const uint8_t *)"\xc3", 1};
    ASSERT_EQ(lp_mp_read_bool(v, &b), 0);
    ASSERT(b);
    ASSERT_EQ(lp_mp_read_uint(v, &u), -1);
    ASSERT(!lp_mp_is_nil(v));
    v = (struct lp_span){(const uint8_t *)"\xc0", 1};
    ASSERT(lp_mp_is_nil(v));
    ASSERT_EQ(lp_mp_read_bool(v, &b), -1);
    v = (struct lp_span){(const uint8_t *)"\x90", 1};
    ASSERT_EQ(lp_mp_read_str(v, &out), -1);
    ASSERT_EQ(lp_mp_read_uint((struct lp_span){0}, &u), -1);
    ASSERT(!lp_mp_is_nil((struct lp_span){0}));
}

TEST(lp_mp_map_get_lookups)
{
    size_t n;
    /* {"a":1, 5:"x", [1]:2, "b":{"c":[true]}, "a":3} */
    uint8_t *b = test_unhex("85 a1 61 01 05 a1 78 91 01 02 a1 62 81 a1 63 91 c3 a1 61 03", &n);
    struct lp_span m = {b, n}, v, v2;
    uint64_t u;
    ASSERT_EQ(lp_mp_map_get(m, "a", &v), 1);
    ASSERT_EQ(lp_mp_read_uint(v, &u), 0);
    ASSERT_EQ(u, 1); /* the first occurrence */
    ASSERT_EQ(lp_mp_map_get(m, "b", &v), 1);
    ASSERT_MEM_EQ(v.p, v.n, "\x81\xa1\x63\x91\xc3", 5);
    ASSERT_EQ(lp_mp_map_get(v, "c", &v2), 1);
    ASSERT_MEM_EQ(v2.p, v2.n, "\x91\xc3", 2);
    ASSERT_EQ(lp_mp_map_get(m, "c", &v), 0);
    ASSERT_EQ(lp_mp_map_get(m, "", &v), 0);
    ASSERT_EQ(lp_mp_map_get(v2, "c", &v), -1); /* an array */
    ASSERT_EQ(lp_mp_map_get((struct lp_span){b, n - 1}, "a", &v), -1);
    ASSERT_EQ(lp_mp_map_get((struct lp_span){0}, "a", &v), -1);
    free(b);
    b = test_unhex("81 a1 61 01 00", &n); /* trailing bytes */
    ASSERT_EQ(lp_mp_map_get((struct lp_span){b, n}, "a", &v), -1);
    free(b);
}

/* ---- names ---- */

TEST(lp_call_names)
{
    static const char *const names[] = {"auth", "connect", "disconnect", "heartbeat",
                                        "join", "message", "notify"};
    for (int c = 0; c < LP_CALL_COUNT; c++) {
        ASSERT_STR_EQ(lp_call_name((enum lp_call)c), names[c]);
        ASSERT_EQ(lp_call_parse(S(names[c])), c);
    }
    ASSERT(lp_call_name((enum lp_call)LP_CALL_COUNT) == NULL);
    ASSERT(lp_call_name((enum lp_call) - 1) == NULL);
    ASSERT_EQ(lp_call_parse(S("")), -1);
    ASSERT_EQ(lp_call_parse(S("Auth")), -1);
    ASSERT_EQ(lp_call_parse(S("authx")), -1);
    ASSERT_EQ(lp_call_parse(S("aut")), -1);
    ASSERT_EQ(lp_call_parse((struct lp_span){(const uint8_t *)"join\0", 5}), -1);
}

TEST(lp_name_validators)
{
    ASSERT(lp_valid_prefix(S("nh")));
    ASSERT(lp_valid_prefix(S("a-B_9")));
    ASSERT(lp_valid_prefix(rep('p', 32)));
    ASSERT(!lp_valid_prefix(rep('p', 33)));
    ASSERT(!lp_valid_prefix(S("")));
    ASSERT(!lp_valid_prefix(S("n.h")));
    ASSERT(!lp_valid_prefix(S("nh:1")));
    ASSERT(!lp_valid_prefix(S("n h")));
    ASSERT(!lp_valid_prefix((struct lp_span){NULL, 2}));

    ASSERT(lp_valid_gateway_id(S("gw-1_A")));
    ASSERT(lp_valid_gateway_id(rep('g', 64)));
    ASSERT(!lp_valid_gateway_id(rep('g', 65)));
    ASSERT(!lp_valid_gateway_id(S("")));
    ASSERT(!lp_valid_gateway_id(S("gw*")));
    ASSERT(!lp_valid_gateway_id(S("g\xc3\xa9")));

    ASSERT(lp_valid_topic(S("deployment:12")));
    ASSERT(lp_valid_topic(S("a-b_c:D")));
    ASSERT(lp_valid_topic(rep('t', LP_MAX_TOPIC)));
    ASSERT(!lp_valid_topic(rep('t', LP_MAX_TOPIC + 1)));
    ASSERT(!lp_valid_topic(S("")));
    ASSERT(!lp_valid_topic(S("a.b")));
    ASSERT(!lp_valid_topic(S("a>")));
    ASSERT(!lp_valid_topic(S("a b")));

    ASSERT(lp_valid_dev(S("dev-1")));
    ASSERT(lp_valid_dev(S("AB:CD/ef@g#h")));
    ASSERT(lp_valid_dev(rep('d', LP_MAX_ID)));
    ASSERT(!lp_valid_dev(rep('d', LP_MAX_ID + 1)));
    ASSERT(!lp_valid_dev(S("")));
    static const char *const bad[] = {
        "a.b",
        "a*",
        ">",
        "a b",
        "a\tb",
        "a\nb",
        "a\rb",
        "\x7f",
        "\x01",
        "\xc3",             /* truncated */
        "\xc3\x28",         /* bad continuation byte */
        "\xe2\x82",         /* truncated 3-byte */
        "\xc0\xaf",         /* overlong */
        "\xe0\x80\xaf",     /* overlong */
        "\xed\xa0\x80",     /* surrogate */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xf5\x80\x80\x80",
        "\x80",
        "\xff",
        "\xc2\xa0",      /* U+00A0 no-break space */
        "\xe2\x80\xa8",  /* U+2028 line separator */
        "\xe3\x80\x80",  /* U+3000 ideographic space */
        "a\xe2\x80\x83", /* U+2003 em space */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (lp_valid_dev(S(bad[i])))
            TEST_FAIL("lp_valid_dev accepted bad[%zu]", i);
    ASSERT(!lp_valid_dev((struct lp_span){(const uint8_t *)"a\0b", 3}));
    ASSERT(lp_valid_dev(S("caf\xc3\xa9")));
    ASSERT(lp_valid_dev(S("\xe2\x82\xac")));     /* € */
    ASSERT(lp_valid_dev(S("\xf0\x9f\x98\x80"))); /* U+1F600 */
    ASSERT(lp_valid_dev(S("\xf4\x8f\xbf\xbf"))); /* U+10FFFF */
    ASSERT(lp_valid_dev(S("\xef\xbb\xbf")));     /* U+FEFF is not White_Space */
    /* 128 bytes of multi-byte characters */
    char buf[LP_MAX_ID + 4];
    for (size_t i = 0; i + 2 <= LP_MAX_ID; i += 2)
        buf[i] = (char)0xc3, buf[i + 1] = (char)0xa9;
    ASSERT(lp_valid_dev((struct lp_span){(const uint8_t *)buf, LP_MAX_ID}));
}

/* Non-map bodies, non-str keys, empty input. */
TEST(lp_body_shape)
{
    static const char *const bad[] = {
        "",                     /* empty */
        "90",                   /* array */
        "c0",                   /* nil */
        "a1 76",                /* str */
        "81 01 01",             /* int key */
        "81 c4 01 76 01",       /* bin key */
        "82 a1 76 01 c0 c0",    /* nil key */
        "82 a1 76 01 91 01 01", /* array key */
        "df 00000001 a1 76",    /* missing value */
        "c1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n;
        uint8_t *b = test_unhex(bad[i], &n);
        const char *err = NULL;
        ASSERT_EQ(dec_guarded(M_ISTATUS, b, n, &err), -1);
        ASSERT(err != NULL);
        free(b);
    }
    /* map16/map32 and long key forms are fine */
    size_t n;
    uint8_t *b = test_unhex("df 00000002 d9 01 76 01 db 00000002 7374 a2 6f6b", &n);
    enum lp_inbox_status st = LP_IST_GONE;
    ASSERT_EQ(lp_decode_inbox_status(b, n, &st, NULL), 0);
    ASSERT_EQ(st, LP_IST_OK);
    free(b);
    /* err is cleared on success and names the problem on failure */
    const char *err = "x";
    b = test_unhex(GOLDEN[N_GOLDEN - 1].hex, &n);
    ASSERT_EQ(lp_decode_inbox_status(b, n, &st, &err), 0);
    ASSERT(err == NULL);
    free(b);
    b = test_unhex("82 a1 76 01 a1 77 01", &n);
    ASSERT_EQ(lp_decode_inbox_status(b, n, &st, &err), -1);
    ASSERT(err && strstr(err, "st"));
    free(b);
}

/* ---- the remote console (LINK.md §9) ---- */

TEST(lp_console_attach_fields)
{
    /* op: 1..64 of [A-Za-z0-9_-] */
    ASSERT_EQ(model_with("inbox console_attach", "op", enc_str(rep('o', LP_MAX_OP))), 0);
    ASSERT_EQ(model_with("inbox console_attach", "op", enc_str(rep('o', LP_MAX_OP + 1))), -1);
    ASSERT_EQ(model_with("inbox console_attach", "op", enc_str(S(""))), -1);
    ASSERT_EQ(model_with("inbox console_attach", "op", enc_str(S("a.b"))), -1);
    ASSERT_EQ(model_with("inbox console_attach", "op", enc_str(S("a b"))), -1);
    ASSERT_EQ(model_with("inbox console_detach", "op", enc_str(S("a*"))), -1);
    /* lease: 1 s .. 10 min */
    ASSERT_EQ(model_with_hex("inbox console_attach", "lease_ms", "cd 03e8"), 0);
    ASSERT_EQ(model_with_hex("inbox console_attach", "lease_ms", "cd 03e7"), -1);
    ASSERT_EQ(model_with_hex("inbox console_attach", "lease_ms", "ce 000927c0"), 0);
    ASSERT_EQ(model_with_hex("inbox console_attach", "lease_ms", "ce 000927c1"), -1);
    /* sb: a bool; absent and true mean "send the scrollback" */
    struct lp_out o = {0};
    struct lp_inbox m = sample_inbox(LP_IN_CONSOLE_ATTACH, 1), got;
    ASSERT_EQ(lp_encode_inbox(&o, &m), 0);
    ASSERT_EQ(lp_decode_inbox(o.p, o.n, &got, NULL), 0);
    ASSERT(!got.no_scrollback);
    ASSERT_EQ(got.lease_ms, 0);
    size_t n;
    uint8_t *b = test_unhex("85 a1 76 01 a1 6b ae 636f6e736f6c655f617474616368 a3 646576 a1 64 a2 6f70 a1 6f"
                            " a2 7362 c3",
                            &n);
    ASSERT_EQ(lp_decode_inbox(b, n, &got, NULL), 0);
    ASSERT(!got.no_scrollback);
    b[n - 1] = 0xc2;
    ASSERT_EQ(lp_decode_inbox(b, n, &got, NULL), 0);
    ASSERT(got.no_scrollback);
    free(b);
    /* the encoder refuses what the decoder would */
    lp_out_reset(&o);
    m.op = rep('o', LP_MAX_OP + 1);
    ASSERT_EQ(lp_encode_inbox(&o, &m), -1);
    m.op = S("");
    ASSERT_EQ(lp_encode_inbox(&o, &m), -1);
    m = sample_inbox(LP_IN_CONSOLE_ATTACH, 1);
    m.lease_ms = LP_LEASE_MIN_MS - 1;
    ASSERT_EQ(lp_encode_inbox(&o, &m), -1);
    m.lease_ms = LP_LEASE_MAX_MS + 1;
    ASSERT_EQ(lp_encode_inbox(&o, &m), -1);
    m.lease_ms = LP_LEASE_MAX_MS;
    ASSERT_EQ(lp_encode_inbox(&o, &m), 0);
    lp_out_free(&o);
}

TEST(lp_console_reply_fields)
{
    /* the scrollback at max and max + 1, the version at max and max + 1 */
    struct lp_out o = {0};
    struct lp_console_reply r = sample_creply(0), got;
    r.scrollback = rep('x', LP_MAX_SCROLLBACK);
    ASSERT_EQ(lp_encode_console_reply(&o, &r), 0);
    ASSERT_EQ(lp_decode_console_reply(o.p, o.n, &got, NULL), 0);
    ASSERT_EQ(got.scrollback.n, LP_MAX_SCROLLBACK);
    lp_out_reset(&o);
    r.scrollback = rep('x', LP_MAX_SCROLLBACK + 1);
    ASSERT_EQ(lp_encode_console_reply(&o, &r), -1);
    ASSERT_EQ(o.n, 0);
    ASSERT_EQ(model_with("console reply", "scrollback", enc_bin(rep('x', LP_MAX_SCROLLBACK))), 0);
    ASSERT_EQ(model_with("console reply", "scrollback", enc_bin(rep('x', LP_MAX_SCROLLBACK + 1))), -1);
    ASSERT_EQ(model_with("console reply", "scrollback", enc_str(S("text"))), -1); /* bin only */
    ASSERT_EQ(model_with("console reply", "version", enc_str(rep('1', LP_MAX_CONSOLE_VERSION))), 0);
    ASSERT_EQ(model_with("console reply", "version", enc_str(rep('1', LP_MAX_CONSOLE_VERSION + 1))), -1);
    ASSERT_EQ(model_with("console reply", "version", enc_str(S(""))), -1);
    r = sample_creply(0);
    r.version = rep('1', LP_MAX_CONSOLE_VERSION + 1);
    ASSERT_EQ(lp_encode_console_reply(&o, &r), -1);
    /* statuses; a non-ok reply ignores (and never encodes) scrollback and version */
    ASSERT_EQ(model_with_hex("console reply", "st", "a4 676f6e65"), 0);
    ASSERT_EQ(model_with_hex("console reply", "st", "a4 66756c6c"), 0);
    ASSERT_EQ(model_with_hex("console reply", "st", "a5 6572726f72"), -1);
    r = sample_creply(0);
    r.st = LP_CST_GONE;
    ASSERT_EQ(lp_encode_console_reply(&o, &r), 0);
    ASSERT_EQ(lp_decode_console_reply(o.p, o.n, &got, NULL), 0);
    ASSERT_EQ(got.st, LP_CST_GONE);
    ASSERT(!got.has_scrollback && got.version.n == 0);
    lp_out_reset(&o);
    r.st = (enum lp_console_status)4;
    ASSERT_EQ(lp_encode_console_reply(&o, &r), -1);
    /* the link's plain status replies read as console replies */
    for (int s = LP_IST_OK; s <= LP_IST_NOT_JOINED; s++) {
        lp_out_reset(&o);
        ASSERT_EQ(lp_encode_inbox_status(&o, (enum lp_inbox_status)s), 0);
        ASSERT_EQ(lp_decode_console_reply(o.p, o.n, &got, NULL), 0);
        ASSERT_EQ(got.st, s == LP_IST_OK ? LP_CST_OK : s == LP_IST_GONE ? LP_CST_GONE : LP_CST_NOT_JOINED);
        ASSERT(!got.has_scrollback);
    }
    lp_out_free(&o);
}

TEST(lp_console_out_fields)
{
    ASSERT_EQ(model_with("console out", "ev", enc_str(S(""))), -1);
    ASSERT_EQ(model_with("console out", "ev", enc_str(rep('e', LP_MAX_STR))), 0);
    ASSERT_EQ(model_with("console out", "ev", enc_str(rep('e', LP_MAX_STR + 1))), -1);
    struct lp_out o = {0};
    struct lp_console_out m = sample_cout(0);
    m.payload = (struct lp_span){(const uint8_t *)"\x01\x02", 2}; /* two objects */
    ASSERT_EQ(lp_encode_console_out(&o, &m), -1);
    m.payload = nested(LP_MAX_DEPTH + 1);
    ASSERT_EQ(lp_encode_console_out(&o, &m), -1);
    m = sample_cout(0);
    m.event = S("");
    ASSERT_EQ(lp_encode_console_out(&o, &m), -1);
    ASSERT_EQ(o.n, 0);
    /* a message of exactly LP_MAX_MESSAGE bytes (12 bytes of keys, a bin32 header), then one more */
    m = sample_cout(0);
    struct lp_out big = {0};
    big.cap = SIZE_MAX;
    lp_mp_bin(&big, rep('x', LP_MAX_MESSAGE - 17).p, LP_MAX_MESSAGE - 17);
    m.payload = (struct lp_span){big.p, big.n};
    ASSERT_EQ(lp_encode_console_out(&o, &m), 0);
    ASSERT_EQ(o.n, LP_MAX_MESSAGE);
    lp_out_reset(&o);
    lp_out_reset(&big);
    lp_mp_bin(&big, rep('x', LP_MAX_MESSAGE - 16).p, LP_MAX_MESSAGE - 16);
    m.payload = (struct lp_span){big.p, big.n};
    ASSERT_EQ(lp_encode_console_out(&o, &m), -1);
    lp_out_free(&big);
    lp_out_free(&o);
}
