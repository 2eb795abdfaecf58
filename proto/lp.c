/* lp: the link contract's codec (proto/LINK.md). See lp.h for the API contract.
 *
 * Decoding is two passes over the top-level map. The first (collect) walks every key/value pair
 * once, bounds-checked, rejecting non-string keys, duplicate known keys, malformed values and
 * trailing bytes, and records the value span of each known key. The second reads the spans the
 * message kind needs with typed getters that check type and limits. Every msgpack count is
 * bounded by the bytes left (an element takes at least one byte), so a hostile count costs at
 * most one step per input byte and nothing is allocated.
 *
 * Encoding writes the message, then runs the matching decoder over the bytes written: what the
 * decoder rejects is rolled back and refused, so the two can never disagree about validity. */
#include "lp.h"

#include <stdlib.h>
#include <string.h>

/* ---- names ---- */

static const char *const CALL_NAMES[LP_CALL_COUNT] = {
    [LP_AUTH] = "auth",           [LP_CONNECT] = "connect", [LP_DISCONNECT] = "disconnect",
    [LP_HEARTBEAT] = "heartbeat", [LP_JOIN] = "join",       [LP_MESSAGE] = "message",
    [LP_NOTIFY] = "notify",
};

static bool span_is(struct lp_span s, const char *c)
{
    size_t n = strlen(c);
    return s.n == n && (n == 0 || memcmp(s.p, c, n) == 0);
}

const char *lp_call_name(enum lp_call call)
{
    if ((unsigned)call >= LP_CALL_COUNT)
        return NULL;
    return CALL_NAMES[call];
}

int lp_call_parse(struct lp_span name)
{
    for (int i = 0; i < LP_CALL_COUNT; i++)
        if (span_is(name, CALL_NAMES[i]))
            return i;
    return -1;
}

static bool is_alnum(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool valid_token(struct lp_span s, size_t max, bool colon)
{
    if (s.n == 0 || s.n > max || !s.p)
        return false;
    for (size_t i = 0; i < s.n; i++) {
        uint8_t c = s.p[i];
        if (!is_alnum(c) && c != '_' && c != '-' && !(colon && c == ':'))
            return false;
    }
    return true;
}

bool lp_valid_prefix(struct lp_span s)
{
    return valid_token(s, 32, false);
}

bool lp_valid_gateway_id(struct lp_span s)
{
    return valid_token(s, 64, false);
}

bool lp_valid_topic(struct lp_span s)
{
    return valid_token(s, LP_MAX_TOPIC, true);
}

bool lp_valid_op(struct lp_span s)
{
    return valid_token(s, LP_MAX_OP, false);
}

/* Unicode White_Space code points above ASCII. */
static bool is_unicode_space(uint32_t cp)
{
    return cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

/* A device id ends up in NATS subjects (`<prefix>.events.<dev>`), Redis keys and logs: one subject
 * token, well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF), no
 * whitespace, no ASCII control characters. */
bool lp_valid_dev(struct lp_span s)
{
    if (s.n == 0 || s.n > LP_MAX_ID || !s.p)
        return false;
    size_t i = 0;
    while (i < s.n) {
        uint8_t c = s.p[i];
        if (c < 0x80) {
            if (c <= 0x20 || c == 0x7f || c == '.' || c == '*' || c == '>')
                return false;
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (s.n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            uint8_t cc = s.p[i + k];
            if ((cc & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (cc & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || is_unicode_space(cp))
            return false;
        i += len;
    }
    return true;
}

/* A NATS subject to publish to (scrollback_replay): dot-separated non-empty tokens, no
 * whitespace or control characters, no wildcards. */
static bool valid_subject(struct lp_span s)
{
    if (s.n == 0 || s.n > LP_MAX_STR)
        return false;
    uint8_t prev = '.';
    for (size_t i = 0; i < s.n; i++) {
        uint8_t c = s.p[i];
        if (c <= 0x20 || c == 0x7f || c == '*' || c == '>' || (c == '.' && prev == '.'))
            return false;
        prev = c;
    }
    return prev != '.';
}

/* ---- msgpack reader ---- */

struct rd {
    const uint8_t *p, *end;
};

enum mp_type { MP_NIL, MP_BOOL, MP_UINT, MP_NEG, MP_FLOAT, MP_STR, MP_BIN, MP_ARRAY, MP_MAP, MP_EXT };

/* One msgpack header: scalars complete, str/bin/ext with their data, array/map with their count
 * (the elements follow in the reader). */
struct mp_tok {
    enum mp_type t;
    uint64_t u;          /* MP_UINT */
    int64_t i;           /* MP_NEG (< 0) */
    bool b;              /* MP_BOOL */
    uint32_t n;          /* MP_ARRAY, MP_MAP */
    struct lp_span data; /* MP_STR, MP_BIN, MP_EXT */
};

static int rd_take(struct rd *r, size_t n, const uint8_t **out)
{
    if ((size_t)(r->end - r->p) < n)
        return -1;
    *out = r->p;
    r->p += n;
    return 0;
}

static int rd_be(struct rd *r, unsigned w, uint64_t *v)
{
    const uint8_t *b;
    if (rd_take(r, w, &b))
        return -1;
    uint64_t x = 0;
    for (unsigned k = 0; k < w; k++)
        x = x << 8 | b[k];
    *v = x;
    return 0;
}

static int mp_next(struct rd *r, struct mp_tok *t)
{
    const uint8_t *b;
    uint64_t len;
    unsigned w;
    if (r->p == NULL || rd_take(r, 1, &b))
        return -1;
    uint8_t c = b[0];
    if (c <= 0x7f) {
        t->t = MP_UINT, t->u = c;
        return 0;
    }
    if (c >= 0xe0) {
        t->t = MP_NEG, t->i = (int8_t)c;
        return 0;
    }
    if (c >= 0xa0 && c <= 0xbf) {
        t->t = MP_STR, len = c & 0x1f;
        goto data;
    }
    if (c >= 0x90 && c <= 0x9f) {
        t->t = MP_ARRAY, len = c & 0x0f;
        goto container;
    }
    if (c >= 0x80 && c <= 0x8f) {
        t->t = MP_MAP, len = c & 0x0f;
        goto container;
    }
    switch (c) {
    case 0xc0:
        t->t = MP_NIL;
        return 0;
    case 0xc2:
    case 0xc3:
        t->t = MP_BOOL, t->b = c == 0xc3;
        return 0;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        t->t = MP_BIN, w = 1u << (c - 0xc4);
        if (rd_be(r, w, &len))
            return -1;
        goto data;
    case 0xc7:
    case 0xc8:
    case 0xc9:
        t->t = MP_EXT, w = 1u << (c - 0xc7);
        if (rd_be(r, w, &len))
            return -1;
        len += 1; /* the type byte */
        goto data;
    case 0xca:
    case 0xcb:
        t->t = MP_FLOAT;
        return rd_take(r, c == 0xca ? 4 : 8, &b);
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        t->t = MP_UINT;
        return rd_be(r, 1u << (c - 0xcc), &t->u);
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        uint64_t v;
        w = 1u << (c - 0xd0);
        if (rd_be(r, w, &v))
            return -1;
        if (w < 8 && (v >> (w * 8 - 1)) & 1)
            v |= ~(uint64_t)0 << (w * 8); /* sign-extend */
        if (v >> 63) {
            t->t = MP_NEG, t->i = (int64_t)v;
        } else {
            t->t = MP_UINT, t->u = v;
        }
        return 0;
    }
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        t->t = MP_EXT, len = 1 + (1u << (c - 0xd4));
        goto data;
    case 0xd9:
    case 0xda:
    case 0xdb:
        t->t = MP_STR, w = 1u << (c - 0xd9);
        if (rd_be(r, w, &len))
            return -1;
        goto data;
    case 0xdc:
    case 0xdd:
        t->t = MP_ARRAY, w = c == 0xdc ? 2 : 4;
        if (rd_be(r, w, &len))
            return -1;
        goto container;
    case 0xde:
    case 0xdf:
        t->t = MP_MAP, w = c == 0xde ? 2 : 4;
        if (rd_be(r, w, &len))
            return -1;
        goto container;
    default: /* 0xc1 */
        return -1;
    }
data:
    if (len > (uint64_t)(r->end - r->p))
        return -1;
    t->data.p = r->p;
    t->data.n = (size_t)len;
    r->p += len;
    return 0;
container:
    /* every element takes at least one byte: a count the input cannot hold is invalid now */
    if ((t->t == MP_MAP ? 2 * len : len) > (uint64_t)(r->end - r->p))
        return -1;
    t->n = (uint32_t)len;
    return 0;
}

/* Skips one object nesting at most `depth` containers. Recursion is bounded by depth. */
static int mp_skip(struct rd *r, unsigned depth)
{
    struct mp_tok t;
    if (mp_next(r, &t))
        return -1;
    if (t.t != MP_ARRAY && t.t != MP_MAP)
        return 0;
    if (depth == 0)
        return -1;
    uint64_t k = t.t == MP_MAP ? 2 * (uint64_t)t.n : t.n;
    for (uint64_t i = 0; i < k; i++)
        if (mp_skip(r, depth - 1))
            return -1;
    return 0;
}

/* Reads one whole object (nesting ≤ LP_MAX_DEPTH) and returns its bytes. */
static int rd_obj(struct rd *r, struct lp_span *out)
{
    const uint8_t *start = r->p;
    if (mp_skip(r, LP_MAX_DEPTH))
        return -1;
    out->p = start;
    out->n = (size_t)(r->p - start);
    return 0;
}

static int rd_str(struct rd *r, size_t min, size_t max, struct lp_span *out)
{
    struct mp_tok t;
    if (mp_next(r, &t) || t.t != MP_STR || t.data.n < min || t.data.n > max)
        return -1;
    *out = t.data;
    return 0;
}

static int rd_bin(struct rd *r, size_t max, struct lp_span *out)
{
    struct mp_tok t;
    if (mp_next(r, &t) || t.t != MP_BIN || t.data.n > max)
        return -1;
    *out = t.data;
    return 0;
}

static int rd_uint(struct rd *r, uint64_t min, uint64_t max, uint64_t *out)
{
    struct mp_tok t;
    if (mp_next(r, &t) || t.t != MP_UINT || t.u < min || t.u > max)
        return -1;
    *out = t.u;
    return 0;
}

size_t lp_mp_object_len(const uint8_t *p, size_t n)
{
    if (!p || n == 0)
        return 0;
    struct rd r = {p, p + n};
    if (mp_skip(&r, LP_MAX_DEPTH))
        return 0;
    return (size_t)(r.p - p);
}

static bool one_object(struct lp_span s)
{
    return s.n > 0 && lp_mp_object_len(s.p, s.n) == s.n;
}

/* Reads the span as exactly one scalar token. */
static int span_tok(struct lp_span v, struct mp_tok *t)
{
    if (!v.p || v.n == 0)
        return -1;
    struct rd r = {v.p, v.p + v.n};
    if (mp_next(&r, t))
        return -1;
    if (t->t == MP_ARRAY || t->t == MP_MAP)
        return -1;
    return r.p == r.end ? 0 : -1;
}

int lp_mp_read_str(struct lp_span v, struct lp_span *out)
{
    struct mp_tok t;
    if (span_tok(v, &t) || t.t != MP_STR)
        return -1;
    *out = t.data;
    return 0;
}

int lp_mp_read_bin(struct lp_span v, struct lp_span *out)
{
    struct mp_tok t;
    if (span_tok(v, &t) || t.t != MP_BIN)
        return -1;
    *out = t.data;
    return 0;
}

int lp_mp_read_uint(struct lp_span v, uint64_t *out)
{
    struct mp_tok t;
    if (span_tok(v, &t) || t.t != MP_UINT)
        return -1;
    *out = t.u;
    return 0;
}

int lp_mp_read_int(struct lp_span v, int64_t *out)
{
    struct mp_tok t;
    if (span_tok(v, &t))
        return -1;
    if (t.t == MP_NEG) {
        *out = t.i;
        return 0;
    }
    if (t.t == MP_UINT && t.u <= (uint64_t)INT64_MAX) {
        *out = (int64_t)t.u;
        return 0;
    }
    return -1;
}

int lp_mp_read_bool(struct lp_span v, bool *out)
{
    struct mp_tok t;
    if (span_tok(v, &t) || t.t != MP_BOOL)
        return -1;
    *out = t.b;
    return 0;
}

bool lp_mp_is_nil(struct lp_span v)
{
    return v.p && v.n == 1 && v.p[0] == 0xc0;
}

int lp_mp_map_get(struct lp_span map, const char *key, struct lp_span *value)
{
    if (!one_object(map))
        return -1;
    struct rd r = {map.p, map.p + map.n};
    struct mp_tok t, k;
    if (mp_next(&r, &t) || t.t != MP_MAP)
        return -1;
    for (uint32_t i = 0; i < t.n; i++) {
        const uint8_t *ks = r.p;
        if (mp_next(&r, &k))
            return -1;
        bool match = k.t == MP_STR && span_is(k.data, key);
        if (k.t == MP_ARRAY || k.t == MP_MAP) { /* a container key: skip it whole */
            r.p = ks;
            if (mp_skip(&r, LP_MAX_DEPTH))
                return -1;
        }
        const uint8_t *vs = r.p;
        if (mp_skip(&r, LP_MAX_DEPTH))
            return -1;
        if (match) {
            value->p = vs;
            value->n = (size_t)(r.p - vs);
            return 1;
        }
    }
    return 0;
}

/* ---- message decoding ---- */

#define LP_KEYS(X)                                                                                           \
    X(V, "v")                                                                                                \
    X(GW, "gw")                                                                                              \
    X(W, "w")                                                                                                \
    X(CREF, "cref")                                                                                          \
    X(DEV, "dev")                                                                                            \
    X(PEER, "peer")                                                                                          \
    X(FP, "fp")                                                                                              \
    X(DER, "der")                                                                                            \
    X(CN, "cn")                                                                                              \
    X(X, "x")                                                                                                \
    X(S, "s")                                                                                                \
    X(TOPIC, "topic")                                                                                        \
    X(EV, "ev")                                                                                              \
    X(P, "p")                                                                                                \
    X(MSG, "msg")                                                                                            \
    X(FROM, "from")                                                                                          \
    X(REASON, "reason")                                                                                      \
    X(DEVS, "devs")                                                                                          \
    X(ST, "st")                                                                                              \
    X(R, "r")                                                                                                \
    X(FX, "fx")                                                                                              \
    X(FW, "fw")                                                                                              \
    X(K, "k")                                                                                                \
    X(CODE, "code")                                                                                          \
    X(SKIP_FW, "skip_fw")                                                                                    \
    X(OP, "op")                                                                                              \
    X(SB, "sb")                                                                                              \
    X(LEASE, "lease_ms")                                                                                     \
    X(SCROLLBACK, "scrollback")                                                                              \
    X(VERSION, "version")                                                                                    \
    X(N, "n")

enum {
#define X(id, s) K_##id,
    LP_KEYS(X)
#undef X
        K_COUNT
};

static const char *const KEY_NAMES[K_COUNT] = {
#define X(id, s) s,
    LP_KEYS(X)
#undef X
};
static const char *const KEY_MISSING[K_COUNT] = {
#define X(id, s) "missing key \"" s "\"",
    LP_KEYS(X)
#undef X
};
static const char *const KEY_BAD[K_COUNT] = {
#define X(id, s) "\"" s "\": wrong type or over its limit",
    LP_KEYS(X)
#undef X
};

_Static_assert(K_COUNT <= 32, "struct dec's seen mask holds 32 keys");

struct dec {
    struct lp_span val[K_COUNT];
    uint32_t seen;
    const char *err;
};

static int dfail(struct dec *d, const char *e)
{
    if (!d->err)
        d->err = e;
    return -1;
}

static int key_id(struct lp_span k)
{
    for (int i = 0; i < K_COUNT; i++)
        if (span_is(k, KEY_NAMES[i]))
            return i;
    return -1;
}

static bool has(const struct dec *d, int k)
{
    return (d->seen >> k) & 1;
}

/* First pass: the whole message is one map with str keys and no trailing bytes; known keys
 * appear once; every value is well-formed. Values may nest LP_MAX_DEPTH + 2 containers here
 * (fx → effect → payload); the precise limits are checked by the getters. */
static int collect(const uint8_t *p, size_t n, struct dec *d)
{
    memset(d, 0, sizeof(*d));
    if (!p || n == 0)
        return dfail(d, "empty message");
    if (n > LP_MAX_MESSAGE)
        return dfail(d, "message over LP_MAX_MESSAGE");
    struct rd r = {p, p + n};
    struct mp_tok t, k;
    if (mp_next(&r, &t) || t.t != MP_MAP)
        return dfail(d, "not a msgpack map");
    for (uint32_t i = 0; i < t.n; i++) {
        if (mp_next(&r, &k))
            return dfail(d, "truncated or malformed");
        if (k.t != MP_STR)
            return dfail(d, "a key is not a str");
        int id = key_id(k.data);
        const uint8_t *vs = r.p;
        if (mp_skip(&r, LP_MAX_DEPTH + 2))
            return dfail(d, "truncated, malformed or too deep");
        if (id < 0)
            continue;
        if (has(d, id))
            return dfail(d, "duplicate key");
        d->seen |= 1u << id;
        d->val[id].p = vs;
        d->val[id].n = (size_t)(r.p - vs);
    }
    if (r.p != r.end)
        return dfail(d, "trailing bytes after the map");
    if (!has(d, K_V))
        return dfail(d, KEY_MISSING[K_V]);
    uint64_t v;
    if (lp_mp_read_uint(d->val[K_V], &v) || v != LP_VERSION)
        return dfail(d, "unsupported version \"v\"");
    return 0;
}

/* Typed getters: opt_* leave *out empty and succeed when the key is absent; need_* fail. */
static int opt_str(struct dec *d, int k, size_t min, size_t max, struct lp_span *out)
{
    *out = (struct lp_span){NULL, 0};
    if (!has(d, k))
        return 0;
    struct mp_tok t;
    if (span_tok(d->val[k], &t) || t.t != MP_STR || t.data.n < min || t.data.n > max)
        return dfail(d, KEY_BAD[k]);
    *out = t.data;
    return 0;
}

static int need_str(struct dec *d, int k, size_t min, size_t max, struct lp_span *out)
{
    if (!has(d, k))
        return dfail(d, KEY_MISSING[k]);
    return opt_str(d, k, min, max, out);
}

static int opt_bin(struct dec *d, int k, size_t max, struct lp_span *out)
{
    *out = (struct lp_span){NULL, 0};
    if (!has(d, k))
        return 0;
    struct mp_tok t;
    if (span_tok(d->val[k], &t) || t.t != MP_BIN || t.data.n > max)
        return dfail(d, KEY_BAD[k]);
    *out = t.data;
    return 0;
}

static int need_bin(struct dec *d, int k, size_t max, struct lp_span *out)
{
    if (!has(d, k))
        return dfail(d, KEY_MISSING[k]);
    return opt_bin(d, k, max, out);
}

static int need_uint(struct dec *d, int k, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!has(d, k))
        return dfail(d, KEY_MISSING[k]);
    struct mp_tok t;
    if (span_tok(d->val[k], &t) || t.t != MP_UINT || t.u < min || t.u > max)
        return dfail(d, KEY_BAD[k]);
    *out = t.u;
    return 0;
}

static int opt_bool(struct dec *d, int k, bool dflt, bool *out)
{
    *out = dflt;
    if (!has(d, k))
        return 0;
    struct mp_tok t;
    if (span_tok(d->val[k], &t) || t.t != MP_BOOL)
        return dfail(d, KEY_BAD[k]);
    *out = t.b;
    return 0;
}

static int opt_obj(struct dec *d, int k, struct lp_span *out)
{
    *out = (struct lp_span){NULL, 0};
    if (!has(d, k))
        return 0;
    if (!one_object(d->val[k]))
        return dfail(d, "payload nests deeper than LP_MAX_DEPTH");
    *out = d->val[k];
    return 0;
}

static int need_obj(struct dec *d, int k, struct lp_span *out)
{
    if (!has(d, k))
        return dfail(d, KEY_MISSING[k]);
    return opt_obj(d, k, out);
}

static int need_dev(struct dec *d, struct lp_span *out)
{
    if (need_str(d, K_DEV, 1, LP_MAX_ID, out))
        return -1;
    if (!lp_valid_dev(*out))
        return dfail(d, "\"dev\" is not a valid device id");
    return 0;
}

/* `topic` of a platform call: a channel with a session at the platform. */
static int need_call_topic(struct dec *d, struct lp_span *out)
{
    if (need_str(d, K_TOPIC, 1, LP_MAX_TOPIC, out))
        return -1;
    if (!span_is(*out, "device") && !span_is(*out, "extensions"))
        return dfail(d, "\"topic\" is not device or extensions");
    return 0;
}

/* Opens an array value for element-wise validation. */
static int open_array(struct lp_span v, struct rd *r, uint32_t *n)
{
    struct mp_tok t;
    r->p = v.p;
    r->end = v.p + v.n;
    if (mp_next(r, &t) || t.t != MP_ARRAY)
        return -1;
    *n = t.n;
    return 0;
}

/* ---- list elements (shared by the decoders and the iterators, so iteration cannot fail once
 * the decoder accepted) ---- */

static bool valid_x_name(struct lp_span s)
{
    if (s.n < 3 || s.n > LP_MAX_X_NAME || s.p[0] != 'x' || s.p[1] != '-')
        return false;
    for (size_t i = 0; i < s.n; i++)
        if (s.p[i] >= 'A' && s.p[i] <= 'Z')
            return false;
    return true;
}

static int kv_read(struct rd *r, struct lp_kv *out)
{
    if (rd_str(r, 0, LP_MAX_X_NAME, &out->name) || !valid_x_name(out->name))
        return -1;
    return rd_str(r, 0, LP_MAX_X_VALUE, &out->value);
}

static int hb_read(struct rd *r, struct lp_hb *out)
{
    struct mp_tok t;
    if (mp_next(r, &t) || t.t != MP_ARRAY || t.n != 2)
        return -1;
    if (rd_str(r, 1, LP_MAX_ID, &out->dev) || !lp_valid_dev(out->dev))
        return -1;
    return rd_bin(r, LP_MAX_SESSION, &out->session);
}

/* A topic of a `topics` entry: nil (none) or a valid topic. */
static int rd_opt_topic(struct rd *r, struct lp_span *out)
{
    *out = (struct lp_span){NULL, 0};
    if (r->p < r->end && *r->p == 0xc0) {
        r->p++;
        return 0;
    }
    return rd_str(r, 1, LP_MAX_TOPIC, out) || !lp_valid_topic(*out) ? -1 : 0;
}

static int move_read(struct rd *r, struct lp_move *out)
{
    struct mp_tok t;
    if (mp_next(r, &t) || t.t != MP_ARRAY || t.n != 4)
        return -1;
    if (rd_str(r, 1, LP_MAX_ID, &out->dev) || !lp_valid_dev(out->dev) ||
        rd_uint(r, 0, UINT64_MAX, &out->cref) || rd_opt_topic(r, &out->unsub) || rd_opt_topic(r, &out->sub))
        return -1;
    return out->unsub.n || out->sub.n ? 0 : -1; /* an entry that changes nothing is a platform bug */
}

static const struct {
    const char *name;
    unsigned args;
} FX[] = {
    [LP_FX_PUSH] = {"push", 2},
    [LP_FX_REPLY] = {"reply", 2},
    [LP_FX_SUBSCRIBE] = {"subscribe", 1},
    [LP_FX_UNSUBSCRIBE] = {"unsubscribe", 1},
    [LP_FX_SEND_SELF] = {"send_self", 1},
    [LP_FX_SEND_AFTER] = {"send_after", 3},
    [LP_FX_START_TIMER] = {"start_timer", 3},
    [LP_FX_CANCEL_TIMER] = {"cancel_timer", 1},
    [LP_FX_CLOSE] = {"close", 2},
    [LP_FX_SCROLLBACK_APPEND] = {"scrollback_append", 1},
    [LP_FX_SCROLLBACK_CLEAR] = {"scrollback_clear", 0},
    [LP_FX_SCROLLBACK_REPLAY] = {"scrollback_replay", 1},
};
#define N_FX (sizeof(FX) / sizeof(FX[0]))
#define MAX_TIMER_MS 0x7fffffffu

static int fx_read(struct rd *r, struct lp_effect *e)
{
    struct mp_tok t;
    struct lp_span name;
    uint64_t u;
    memset(e, 0, sizeof(*e));
    if (mp_next(r, &t) || t.t != MP_ARRAY || t.n == 0 || rd_str(r, 1, 32, &name))
        return -1;
    size_t k = 0;
    while (k < N_FX && !span_is(name, FX[k].name))
        k++;
    if (k == N_FX || t.n != 1 + FX[k].args)
        return -1;
    e->kind = (enum lp_effect_kind)k;
    switch (e->kind) {
    case LP_FX_PUSH:
        return rd_str(r, 0, LP_MAX_STR, &e->event) || rd_obj(r, &e->payload) ? -1 : 0;
    case LP_FX_REPLY:
        return rd_str(r, 0, LP_MAX_STR, &e->status) || rd_obj(r, &e->payload) ? -1 : 0;
    case LP_FX_SUBSCRIBE:
    case LP_FX_UNSUBSCRIBE:
        return rd_str(r, 1, LP_MAX_TOPIC, &e->topic) || !lp_valid_topic(e->topic) ? -1 : 0;
    case LP_FX_SEND_SELF:
        return rd_bin(r, LP_MAX_MSG, &e->msg);
    case LP_FX_SEND_AFTER:
    case LP_FX_START_TIMER:
        if (rd_bin(r, LP_MAX_KEY, &e->key) || rd_bin(r, LP_MAX_MSG, &e->msg) ||
            rd_uint(r, 1, MAX_TIMER_MS, &u))
            return -1;
        e->ms = (uint32_t)u;
        return 0;
    case LP_FX_CANCEL_TIMER:
        return rd_bin(r, LP_MAX_KEY, &e->key);
    case LP_FX_CLOSE:
        if (rd_uint(r, 1000, 4999, &u) || rd_str(r, 0, LP_MAX_STR, &e->reason))
            return -1;
        e->code = (uint16_t)u;
        return 0;
    case LP_FX_SCROLLBACK_APPEND:
        return rd_bin(r, LP_MAX_MESSAGE, &e->data);
    case LP_FX_SCROLLBACK_CLEAR:
        return 0;
    case LP_FX_SCROLLBACK_REPLAY:
        return rd_str(r, 1, LP_MAX_STR, &e->topic) || !valid_subject(e->topic) ? -1 : 0;
    }
    return -1;
}

int lp_effect_next(struct lp_iter *it, struct lp_effect *out)
{
    if (!it || it->left == 0 || !it->p)
        return 0;
    struct rd r = {it->p, it->end};
    if (fx_read(&r, out)) {
        it->left = 0;
        return 0;
    }
    it->p = r.p;
    it->left--;
    return 1;
}

int lp_kv_next(struct lp_iter *it, struct lp_kv *out)
{
    if (!it || it->left == 0 || !it->p)
        return 0;
    struct rd r = {it->p, it->end};
    if (kv_read(&r, out)) {
        it->left = 0;
        return 0;
    }
    it->p = r.p;
    it->left--;
    return 1;
}

int lp_hb_next(struct lp_iter *it, struct lp_hb *out)
{
    if (!it || it->left == 0 || !it->p)
        return 0;
    struct rd r = {it->p, it->end};
    if (hb_read(&r, out)) {
        it->left = 0;
        return 0;
    }
    it->p = r.p;
    it->left--;
    return 1;
}

int lp_move_next(struct lp_iter *it, struct lp_move *out)
{
    if (!it || it->left == 0 || !it->p)
        return 0;
    struct rd r = {it->p, it->end};
    if (move_read(&r, out)) {
        it->left = 0;
        return 0;
    }
    it->p = r.p;
    it->left--;
    return 1;
}

static int dec_x(struct dec *d, struct lp_iter *it)
{
    struct lp_span v = d->val[K_X];
    struct rd r = {v.p, v.p + v.n};
    struct mp_tok t;
    struct lp_kv kv[LP_MAX_X];
    if (mp_next(&r, &t) || t.t != MP_MAP || t.n == 0 || t.n > LP_MAX_X)
        return dfail(d, "\"x\": not a map of 1..LP_MAX_X headers");
    it->p = r.p;
    it->end = r.end;
    it->left = t.n;
    for (uint32_t i = 0; i < t.n; i++) {
        if (kv_read(&r, &kv[i]))
            return dfail(d, "\"x\": a header name or value is invalid");
        for (uint32_t j = 0; j < i; j++)
            if (kv[j].name.n == kv[i].name.n && memcmp(kv[j].name.p, kv[i].name.p, kv[i].name.n) == 0)
                return dfail(d, "\"x\": duplicate header name");
    }
    return 0;
}

static int dec_hb(struct dec *d, struct lp_iter *it)
{
    struct rd r;
    uint32_t n;
    if (!has(d, K_DEVS))
        return dfail(d, KEY_MISSING[K_DEVS]);
    if (open_array(d->val[K_DEVS], &r, &n) || n > LP_MAX_HEARTBEATS)
        return dfail(d, "\"devs\": not an array of at most LP_MAX_HEARTBEATS");
    it->p = r.p;
    it->end = r.end;
    it->left = n;
    struct lp_hb hb;
    for (uint32_t i = 0; i < n; i++)
        if (hb_read(&r, &hb))
            return dfail(d, "\"devs\": an entry is not [dev, s]");
    return 0;
}

static int dec_moves(struct dec *d, struct lp_iter *it, size_t *count)
{
    struct rd r;
    uint32_t n;
    if (!has(d, K_DEVS))
        return dfail(d, KEY_MISSING[K_DEVS]);
    if (open_array(d->val[K_DEVS], &r, &n) || n == 0 || n > LP_MAX_MOVES)
        return dfail(d, "\"devs\": not an array of 1..LP_MAX_MOVES");
    it->p = r.p;
    it->end = r.end;
    it->left = n;
    *count = n;
    struct lp_move mv;
    for (uint32_t i = 0; i < n; i++)
        if (move_read(&r, &mv))
            return dfail(d, "\"devs\": an entry is not [dev, cref, unsub|nil, sub|nil]");
    return 0;
}

static int dec_fx(struct dec *d, struct lp_iter *it, uint32_t *count)
{
    struct rd r;
    uint32_t n;
    if (!has(d, K_FX))
        return 0;
    if (open_array(d->val[K_FX], &r, &n) || n > LP_MAX_EFFECTS)
        return dfail(d, "\"fx\": not an array of at most LP_MAX_EFFECTS");
    it->p = r.p;
    it->end = r.end;
    it->left = n;
    *count = n;
    struct lp_effect e;
    for (uint32_t i = 0; i < n; i++)
        if (fx_read(&r, &e))
            return dfail(d, "\"fx\": unknown or malformed effect");
    return 0;
}

static const char *const DISCONNECT_REASONS[] = {
    "closed",        "idle_timeout", "kicked",         "protocol_error",
    "slow_consumer", "shutdown",     "platform_close", "worker_exit", "error",
};

static bool valid_disconnect_reason(struct lp_span s)
{
    for (size_t i = 0; i < sizeof(DISCONNECT_REASONS) / sizeof(DISCONNECT_REASONS[0]); i++)
        if (span_is(s, DISCONNECT_REASONS[i]))
            return true;
    return false;
}

static bool is_upper_hex(struct lp_span s)
{
    for (size_t i = 0; i < s.n; i++)
        if (!((s.p[i] >= '0' && s.p[i] <= '9') || (s.p[i] >= 'A' && s.p[i] <= 'F')))
            return false;
    return true;
}

static int decode_request(enum lp_call call, const uint8_t *p, size_t n, struct lp_request *o, struct dec *d)
{
    uint64_t u;
    memset(o, 0, sizeof(*o));
    if ((unsigned)call >= LP_CALL_COUNT)
        return dfail(d, "unknown call");
    o->call = call;
    if (collect(p, n, d))
        return -1;
    if (need_str(d, K_GW, 1, LP_MAX_ID, &o->gw))
        return -1;
    if (!lp_valid_gateway_id(o->gw))
        return dfail(d, "\"gw\" is not a valid gateway id");
    if (need_uint(d, K_W, 0, UINT32_MAX, &u))
        return -1;
    o->worker = (uint32_t)u;
    if (call == LP_HEARTBEAT)
        return dec_hb(d, &o->hb_iter);
    if (need_uint(d, K_CREF, 0, UINT64_MAX, &o->cref))
        return -1;
    if (call != LP_AUTH && need_dev(d, &o->dev))
        return -1;
    switch (call) {
    case LP_AUTH:
        if (need_str(d, K_PEER, 0, LP_MAX_STR, &o->peer))
            return -1;
        o->has_cert = has(d, K_FP);
        if (has(d, K_DER) != o->has_cert || has(d, K_CN) != o->has_cert)
            return dfail(d, "\"fp\", \"der\" and \"cn\" must come together");
        if (o->has_cert) {
            if (need_str(d, K_FP, 40, 40, &o->fp) || !is_upper_hex(o->fp))
                return dfail(d, KEY_BAD[K_FP]);
            if (need_bin(d, K_DER, LP_MAX_MESSAGE, &o->der) || need_str(d, K_CN, 0, LP_MAX_STR, &o->cn))
                return -1;
        }
        if (has(d, K_X) && dec_x(d, &o->x_iter))
            return -1;
        return 0;
    case LP_CONNECT:
        return need_bin(d, K_S, LP_MAX_SESSION, &o->session) || need_str(d, K_PEER, 0, LP_MAX_STR, &o->peer)
                   ? -1
                   : 0;
    case LP_DISCONNECT:
        if (need_bin(d, K_S, LP_MAX_SESSION, &o->session) || need_str(d, K_REASON, 1, LP_MAX_STR, &o->reason))
            return -1;
        if (!valid_disconnect_reason(o->reason))
            return dfail(d, "\"reason\" is not a disconnect reason");
        return 0;
    case LP_JOIN:
        return need_call_topic(d, &o->topic) || need_bin(d, K_S, LP_MAX_SESSION, &o->session) ||
                       need_obj(d, K_P, &o->payload)
                   ? -1
                   : 0;
    case LP_MESSAGE:
        return need_call_topic(d, &o->topic) || need_bin(d, K_S, LP_MAX_SESSION, &o->session) ||
                       need_str(d, K_EV, 0, LP_MAX_STR, &o->event) || need_obj(d, K_P, &o->payload)
                   ? -1
                   : 0;
    case LP_NOTIFY:
        if (need_call_topic(d, &o->topic) || need_bin(d, K_S, LP_MAX_SESSION, &o->session) ||
            need_bin(d, K_MSG, LP_MAX_MSG, &o->msg) || opt_str(d, K_FROM, 1, LP_MAX_TOPIC, &o->from))
            return -1;
        if (has(d, K_FROM) && !lp_valid_topic(o->from))
            return dfail(d, "\"from\" is not a valid topic");
        return 0;
    default:
        return dfail(d, "unknown call");
    }
}

int lp_decode_request(enum lp_call call, const uint8_t *p, size_t n, struct lp_request *out, const char **err)
{
    struct dec d;
    d.err = NULL;
    int rc = decode_request(call, p, n, out, &d);
    if (err)
        *err = rc ? d.err : NULL;
    return rc;
}

static int decode_reply(enum lp_call call, const uint8_t *p, size_t n, struct lp_reply *o, struct dec *d)
{
    struct lp_span st;
    memset(o, 0, sizeof(*o));
    if ((unsigned)call >= LP_CALL_COUNT)
        return dfail(d, "unknown call");
    if (call == LP_DISCONNECT || call == LP_HEARTBEAT)
        return dfail(d, "this call has no reply");
    if (collect(p, n, d))
        return -1;
    if (need_str(d, K_ST, 1, 16, &st))
        return -1;
    if (span_is(st, "ok"))
        o->st = LP_ST_OK;
    else if (span_is(st, "refused"))
        o->st = LP_ST_REFUSED;
    else if (span_is(st, "error"))
        o->st = LP_ST_ERROR;
    else
        return dfail(d, "\"st\" is not ok, refused or error");
    bool ok = o->st == LP_ST_OK;
    if (opt_str(d, K_REASON, 0, LP_MAX_STR, &o->reason) || opt_bin(d, K_S, LP_MAX_SESSION, &o->session))
        return -1;
    o->has_session = has(d, K_S);
    switch (call) {
    case LP_AUTH:
        if (ok && !has(d, K_DEV))
            return dfail(d, KEY_MISSING[K_DEV]);
        if (has(d, K_DEV) && need_dev(d, &o->dev))
            return -1;
        if (ok && !o->has_session)
            return dfail(d, KEY_MISSING[K_S]);
        return 0;
    case LP_CONNECT:
        return 0;
    case LP_JOIN:
        if (ok && !o->has_session)
            return dfail(d, KEY_MISSING[K_S]);
        if (opt_obj(d, K_R, &o->response) || opt_str(d, K_FW, 0, LP_MAX_STR, &o->fw))
            return -1;
        return dec_fx(d, &o->fx_iter, &o->n_fx);
    case LP_MESSAGE:
    case LP_NOTIFY:
        return dec_fx(d, &o->fx_iter, &o->n_fx);
    default:
        return dfail(d, "this call has no reply");
    }
}

int lp_decode_reply(enum lp_call call, const uint8_t *p, size_t n, struct lp_reply *out, const char **err)
{
    struct dec d;
    d.err = NULL;
    int rc = decode_reply(call, p, n, out, &d);
    if (err)
        *err = rc ? d.err : NULL;
    return rc;
}

static int decode_inbox(const uint8_t *p, size_t n, struct lp_inbox *o, struct dec *d)
{
    struct lp_span k;
    uint64_t u;
    memset(o, 0, sizeof(*o));
    if (collect(p, n, d) || need_str(d, K_K, 1, 16, &k))
        return -1;
    if (span_is(k, "topics")) {
        o->kind = LP_IN_TOPICS;
        return need_call_topic(d, &o->topic) || dec_moves(d, &o->moves_iter, &o->n_moves) ? -1 : 0;
    }
    if (need_dev(d, &o->dev))
        return -1;
    if (has(d, K_CREF)) {
        if (need_uint(d, K_CREF, 0, UINT64_MAX, &o->cref))
            return -1;
        o->has_cref = true;
    }
    if (span_is(k, "push")) {
        o->kind = LP_IN_PUSH;
        if (need_str(d, K_TOPIC, 1, LP_MAX_TOPIC, &o->topic))
            return -1;
        if (!span_is(o->topic, "device") && !span_is(o->topic, "extensions") && !span_is(o->topic, "console"))
            return dfail(d, "\"topic\" is not device, extensions or console");
        return need_str(d, K_EV, 0, LP_MAX_STR, &o->event) || need_obj(d, K_P, &o->payload) ? -1 : 0;
    }
    if (span_is(k, "notify")) {
        o->kind = LP_IN_NOTIFY;
        return need_call_topic(d, &o->topic) || need_bin(d, K_MSG, LP_MAX_MSG, &o->msg) ? -1 : 0;
    }
    if (span_is(k, "kick")) {
        o->kind = LP_IN_KICK;
        o->code = 1001;
        if (has(d, K_CODE)) {
            if (need_uint(d, K_CODE, 1000, 4999, &u))
                return -1;
            o->code = (uint16_t)u;
        }
        return opt_str(d, K_REASON, 0, LP_MAX_STR, &o->reason);
    }
    bool attach = span_is(k, "console_attach");
    if (attach || span_is(k, "console_detach")) {
        o->kind = attach ? LP_IN_CONSOLE_ATTACH : LP_IN_CONSOLE_DETACH;
        if (need_str(d, K_OP, 1, LP_MAX_OP, &o->op))
            return -1;
        if (!lp_valid_op(o->op))
            return dfail(d, "\"op\" is not an operator id");
        if (!attach)
            return 0;
        bool sb;
        if (opt_bool(d, K_SB, true, &sb))
            return -1;
        o->no_scrollback = !sb;
        if (has(d, K_LEASE)) {
            if (need_uint(d, K_LEASE, LP_LEASE_MIN_MS, LP_LEASE_MAX_MS, &u))
                return -1;
            o->lease_ms = (uint32_t)u;
        }
        return 0;
    }
    return dfail(d, "\"k\" is not push, notify, kick, console_attach, console_detach or topics");
}

int lp_decode_inbox(const uint8_t *p, size_t n, struct lp_inbox *out, const char **err)
{
    struct dec d;
    d.err = NULL;
    int rc = decode_inbox(p, n, out, &d);
    if (err)
        *err = rc ? d.err : NULL;
    return rc;
}

static int decode_topic_msg(const uint8_t *p, size_t n, struct lp_topic_msg *o, struct dec *d)
{
    struct lp_span k;
    memset(o, 0, sizeof(*o));
    if (collect(p, n, d) || need_str(d, K_K, 1, 16, &k))
        return -1;
    if (span_is(k, "push")) {
        o->kind = LP_TOPIC_PUSH;
        return need_str(d, K_EV, 0, LP_MAX_STR, &o->event) || need_obj(d, K_P, &o->payload) ||
                       opt_str(d, K_SKIP_FW, 0, LP_MAX_STR, &o->skip_fw)
                   ? -1
                   : 0;
    }
    if (span_is(k, "notify")) {
        o->kind = LP_TOPIC_NOTIFY;
        return need_bin(d, K_MSG, LP_MAX_MSG, &o->msg);
    }
    return dfail(d, "\"k\" is not push or notify");
}

int lp_decode_topic_msg(const uint8_t *p, size_t n, struct lp_topic_msg *out, const char **err)
{
    struct dec d;
    d.err = NULL;
    int rc = decode_topic_msg(p, n, out, &d);
    if (err)
        *err = rc ? d.err : NULL;
    return rc;
}

static int decode_inbox_status(const uint8_t *p, size_t n, enum lp_inbox_status *o, struct dec *d)
{
    struct lp_span st;
    if (collect(p, n, d) || need_str(d, K_ST, 1, 16, &st))
        return -1;
    if (span_is(st, "ok"))
        *o = LP_IST_OK;
    else if (span_is(st, "gone"))
        *o = LP_IST_GONE;
    else if (span_is(st, "not_joined"))
        *o = LP_IST_NOT_JOINED;
    else
        return dfail(d, "\"st\" is not ok, gone or not_joined");
    return 0;
}

int lp_decode_inbox_status(const uint8_t *p, size_t n, enum lp_inbox_status *out, const char **err)
{
    struct dec d;
    enum lp_inbox_status st = LP_IST_OK;
    d.err = NULL;
    int rc = decode_inbox_status(p, n, &st, &d);
    if (out && rc == 0)
        *out = st;
    if (err)
        *err = rc ? d.err : NULL;
    return rc;
}

static int decode_topics_reply(const uint8_t *p, size_t n, uint32_t *applied, struct dec *d)
{
    struct lp_span st;
    uint64_t u;
    if (collect(p, n, d) || need_str(d, K_ST, 1, 16, &st))
        return -1;
    if (!span_is(st, "ok"))
        return dfail(d, "\"st\" is not ok");
    if (need_uint(d, K_N, 0, LP_MAX_MOVES, &u))
        return -1;
    *applied = (uint32_t)u;
    return 0;
}

int lp_decode_topics_reply(const uint8_t *p, size_t n, uint32_t *applied, const char **err)
{
    struct dec d;
    uint32_t a = 0;
    d.err = NULL;
    int rc = decode_topics_reply(p, n, &a, &d);
    if (applied && rc == 0)
        *applied = a;
    if (err)
        *err = rc ? d.err : NULL;
    return rc;
}

static int decode_console_reply(const uint8_t *p, size_t n, struct lp_console_reply *o, struct dec *d)
{
    struct lp_span st;
    memset(o, 0, sizeof(*o));
    if (collect(p, n, d) || need_str(d, K_ST, 1, 16, &st))
        return -1;
    if (span_is(st, "ok"))
        o->st = LP_CST_OK;
    else if (span_is(st, "gone"))
        o->st = LP_CST_GONE;
    else if (span_is(st, "not_joined"))
        o->st = LP_CST_NOT_JOINED;
    else if (span_is(st, "full"))
        o->st = LP_CST_FULL;
    else
        return dfail(d, "\"st\" is not ok, gone, not_joined or full");
    if (o->st != LP_CST_OK)
        return 0; /* scrollback and version belong to an ok reply only; ignored otherwise */
    if (opt_bin(d, K_SCROLLBACK, LP_MAX_SCROLLBACK, &o->scrollback) ||
        opt_str(d, K_VERSION, 1, LP_MAX_CONSOLE_VERSION, &o->version))
        return -1;
    o->has_scrollback = has(d, K_SCROLLBACK);
    return 0;
}

int lp_decode_console_reply(const uint8_t *p, size_t n, struct lp_console_reply *out, const char **err)
{
    struct dec d;
    d.err = NULL;
    int rc = decode_console_reply(p, n, out, &d);
    if (err)
        *err = rc ? d.err : NULL;
    return rc;
}

static int decode_console_out(const uint8_t *p, size_t n, struct lp_console_out *o, struct dec *d)
{
    memset(o, 0, sizeof(*o));
    if (collect(p, n, d))
        return -1;
    return need_str(d, K_EV, 1, LP_MAX_STR, &o->event) || need_obj(d, K_P, &o->payload) ? -1 : 0;
}

int lp_decode_console_out(const uint8_t *p, size_t n, struct lp_console_out *out, const char **err)
{
    struct dec d;
    d.err = NULL;
    int rc = decode_console_out(p, n, out, &d);
    if (err)
        *err = rc ? d.err : NULL;
    return rc;
}

/* ---- output buffer and msgpack writer ---- */

static bool out_reserve(struct lp_out *o, size_t add)
{
    if (o->failed)
        return false;
    size_t cap = o->cap ? o->cap : LP_MAX_MESSAGE;
    if (o->n > cap || add > cap - o->n) {
        o->failed = true;
        return false;
    }
    size_t need = o->n + add;
    if (need <= o->alloc)
        return true;
    size_t na = o->alloc ? o->alloc : 256;
    while (na < need)
        na = na > SIZE_MAX / 2 ? need : na * 2;
    if (na > cap)
        na = cap;
    uint8_t *p = realloc(o->p, na);
    if (!p) {
        o->failed = true;
        return false;
    }
    o->p = p;
    o->alloc = na;
    return true;
}

void lp_out_reset(struct lp_out *o)
{
    o->n = 0;
    o->failed = false;
}

void lp_out_free(struct lp_out *o)
{
    free(o->p);
    o->p = NULL;
    o->n = o->alloc = 0;
    o->failed = false;
}

void lp_mp_raw(struct lp_out *o, const void *p, size_t n)
{
    if (n == 0 || !out_reserve(o, n))
        return;
    memcpy(o->p + o->n, p, n);
    o->n += n;
}

/* A header byte followed by a big-endian length of w bytes (w = 0: none). */
static void put_hdr(struct lp_out *o, uint8_t c, unsigned w, uint64_t v)
{
    uint8_t b[9];
    b[0] = c;
    for (unsigned k = 0; k < w; k++)
        b[1 + k] = (uint8_t)(v >> (8 * (w - 1 - k)));
    lp_mp_raw(o, b, 1 + w);
}

void lp_mp_map(struct lp_out *o, uint32_t n)
{
    if (n <= 15)
        put_hdr(o, (uint8_t)(0x80 | n), 0, 0);
    else if (n <= 0xffff)
        put_hdr(o, 0xde, 2, n);
    else
        put_hdr(o, 0xdf, 4, n);
}

void lp_mp_array(struct lp_out *o, uint32_t n)
{
    if (n <= 15)
        put_hdr(o, (uint8_t)(0x90 | n), 0, 0);
    else if (n <= 0xffff)
        put_hdr(o, 0xdc, 2, n);
    else
        put_hdr(o, 0xdd, 4, n);
}

void lp_mp_str(struct lp_out *o, const void *s, size_t n)
{
    if (n <= 31)
        put_hdr(o, (uint8_t)(0xa0 | n), 0, 0);
    else if (n <= 0xff)
        put_hdr(o, 0xd9, 1, n);
    else if (n <= 0xffff)
        put_hdr(o, 0xda, 2, n);
    else if (n <= 0xffffffffu)
        put_hdr(o, 0xdb, 4, n);
    else
        o->failed = true;
    lp_mp_raw(o, s, n);
}

void lp_mp_cstr(struct lp_out *o, const char *s)
{
    lp_mp_str(o, s, s ? strlen(s) : 0);
}

void lp_mp_bin(struct lp_out *o, const void *s, size_t n)
{
    if (n <= 0xff)
        put_hdr(o, 0xc4, 1, n);
    else if (n <= 0xffff)
        put_hdr(o, 0xc5, 2, n);
    else if (n <= 0xffffffffu)
        put_hdr(o, 0xc6, 4, n);
    else
        o->failed = true;
    lp_mp_raw(o, s, n);
}

void lp_mp_uint(struct lp_out *o, uint64_t v)
{
    if (v <= 0x7f)
        put_hdr(o, (uint8_t)v, 0, 0);
    else if (v <= 0xff)
        put_hdr(o, 0xcc, 1, v);
    else if (v <= 0xffff)
        put_hdr(o, 0xcd, 2, v);
    else if (v <= 0xffffffffu)
        put_hdr(o, 0xce, 4, v);
    else
        put_hdr(o, 0xcf, 8, v);
}

void lp_mp_int(struct lp_out *o, int64_t v)
{
    if (v >= 0)
        lp_mp_uint(o, (uint64_t)v);
    else if (v >= -32)
        put_hdr(o, (uint8_t)(0xe0 | (v & 0x1f)), 0, 0);
    else if (v >= INT8_MIN)
        put_hdr(o, 0xd0, 1, (uint64_t)v);
    else if (v >= INT16_MIN)
        put_hdr(o, 0xd1, 2, (uint64_t)v);
    else if (v >= INT32_MIN)
        put_hdr(o, 0xd2, 4, (uint64_t)v);
    else
        put_hdr(o, 0xd3, 8, (uint64_t)v);
}

void lp_mp_bool(struct lp_out *o, bool v)
{
    put_hdr(o, v ? 0xc3 : 0xc2, 0, 0);
}

void lp_mp_nil(struct lp_out *o)
{
    put_hdr(o, 0xc0, 0, 0);
}

/* ---- message encoding ---- */

static bool span_ok(struct lp_span s)
{
    return s.n == 0 || s.p != NULL;
}

/* Payload spans are copied verbatim, so they must be exactly one object. */
static bool payload_ok(struct lp_span s)
{
    return one_object(s);
}

static void put_kstr(struct lp_out *o, const char *k, struct lp_span v)
{
    lp_mp_cstr(o, k);
    lp_mp_str(o, v.p, v.n);
}

static void put_kbin(struct lp_out *o, const char *k, struct lp_span v)
{
    lp_mp_cstr(o, k);
    lp_mp_bin(o, v.p, v.n);
}

static void put_kuint(struct lp_out *o, const char *k, uint64_t v)
{
    lp_mp_cstr(o, k);
    lp_mp_uint(o, v);
}

static void put_kraw(struct lp_out *o, const char *k, struct lp_span v)
{
    lp_mp_cstr(o, k);
    lp_mp_raw(o, v.p, v.n);
}

/* Ends an encoder: rolls back on failure. */
static int enc_end(struct lp_out *o, size_t start, int rc)
{
    if (rc || o->failed) {
        if (o->n > start && o->p)
            o->n = start;
        return -1;
    }
    return 0;
}

static int enc_effect(struct lp_out *o, const struct lp_effect *e)
{
    if ((unsigned)e->kind >= N_FX)
        return -1;
    lp_mp_array(o, 1 + FX[e->kind].args);
    lp_mp_cstr(o, FX[e->kind].name);
    switch (e->kind) {
    case LP_FX_PUSH:
    case LP_FX_REPLY: {
        struct lp_span s = e->kind == LP_FX_PUSH ? e->event : e->status;
        if (!span_ok(s) || !payload_ok(e->payload))
            return -1;
        lp_mp_str(o, s.p, s.n);
        lp_mp_raw(o, e->payload.p, e->payload.n);
        return 0;
    }
    case LP_FX_SUBSCRIBE:
    case LP_FX_UNSUBSCRIBE:
    case LP_FX_SCROLLBACK_REPLAY:
        if (!span_ok(e->topic))
            return -1;
        lp_mp_str(o, e->topic.p, e->topic.n);
        return 0;
    case LP_FX_SEND_SELF:
        if (!span_ok(e->msg))
            return -1;
        lp_mp_bin(o, e->msg.p, e->msg.n);
        return 0;
    case LP_FX_SEND_AFTER:
    case LP_FX_START_TIMER:
        if (!span_ok(e->key) || !span_ok(e->msg))
            return -1;
        lp_mp_bin(o, e->key.p, e->key.n);
        lp_mp_bin(o, e->msg.p, e->msg.n);
        lp_mp_uint(o, e->ms);
        return 0;
    case LP_FX_CANCEL_TIMER:
        if (!span_ok(e->key))
            return -1;
        lp_mp_bin(o, e->key.p, e->key.n);
        return 0;
    case LP_FX_CLOSE:
        if (!span_ok(e->reason))
            return -1;
        lp_mp_uint(o, e->code);
        lp_mp_str(o, e->reason.p, e->reason.n);
        return 0;
    case LP_FX_SCROLLBACK_APPEND:
        if (!span_ok(e->data))
            return -1;
        lp_mp_bin(o, e->data.p, e->data.n);
        return 0;
    case LP_FX_SCROLLBACK_CLEAR:
        return 0;
    }
    return -1;
}

static int enc_request(struct lp_out *o, const struct lp_request *r)
{
    enum lp_call c = r->call;
    uint32_t keys = 3; /* v gw w */
    if ((unsigned)c >= LP_CALL_COUNT || !span_ok(r->gw) || !span_ok(r->dev) || !span_ok(r->peer) ||
        !span_ok(r->session) || !span_ok(r->event) || !span_ok(r->msg) || !span_ok(r->from) ||
        !span_ok(r->reason) || !span_ok(r->topic))
        return -1;
    if (c != LP_HEARTBEAT)
        keys += c == LP_AUTH ? 1 : 2; /* cref, dev */
    switch (c) {
    case LP_AUTH:
        if (r->n_x > LP_MAX_X || (r->n_x && !r->x))
            return -1;
        if (r->has_cert && (!span_ok(r->fp) || !span_ok(r->der) || !span_ok(r->cn)))
            return -1;
        keys += 1 + (r->has_cert ? 3 : 0) + (r->n_x ? 1 : 0);
        break;
    case LP_CONNECT:
    case LP_DISCONNECT:
        keys += 2;
        break;
    case LP_HEARTBEAT:
        if (r->n_hb > LP_MAX_HEARTBEATS || (r->n_hb && !r->hb))
            return -1;
        keys += 1;
        break;
    case LP_JOIN:
        keys += 3;
        break;
    case LP_MESSAGE:
        keys += 4;
        break;
    case LP_NOTIFY:
        keys += 3 + (r->from.n ? 1 : 0);
        break;
    default:
        return -1;
    }
    if ((c == LP_JOIN || c == LP_MESSAGE) && !payload_ok(r->payload))
        return -1;

    lp_mp_map(o, keys);
    put_kuint(o, "v", LP_VERSION);
    put_kstr(o, "gw", r->gw);
    put_kuint(o, "w", r->worker);
    if (c != LP_HEARTBEAT)
        put_kuint(o, "cref", r->cref);
    if (c != LP_HEARTBEAT && c != LP_AUTH)
        put_kstr(o, "dev", r->dev);
    switch (c) {
    case LP_AUTH:
        put_kstr(o, "peer", r->peer);
        if (r->has_cert) {
            put_kstr(o, "fp", r->fp);
            put_kbin(o, "der", r->der);
            put_kstr(o, "cn", r->cn);
        }
        if (r->n_x) {
            lp_mp_cstr(o, "x");
            lp_mp_map(o, (uint32_t)r->n_x);
            for (size_t i = 0; i < r->n_x; i++) {
                if (!span_ok(r->x[i].name) || !span_ok(r->x[i].value))
                    return -1;
                lp_mp_str(o, r->x[i].name.p, r->x[i].name.n);
                lp_mp_str(o, r->x[i].value.p, r->x[i].value.n);
            }
        }
        break;
    case LP_CONNECT:
        put_kbin(o, "s", r->session);
        put_kstr(o, "peer", r->peer);
        break;
    case LP_DISCONNECT:
        put_kbin(o, "s", r->session);
        put_kstr(o, "reason", r->reason);
        break;
    case LP_HEARTBEAT:
        lp_mp_cstr(o, "devs");
        lp_mp_array(o, (uint32_t)r->n_hb);
        for (size_t i = 0; i < r->n_hb && !o->failed; i++) {
            if (!span_ok(r->hb[i].dev) || !span_ok(r->hb[i].session))
                return -1;
            lp_mp_array(o, 2);
            lp_mp_str(o, r->hb[i].dev.p, r->hb[i].dev.n);
            lp_mp_bin(o, r->hb[i].session.p, r->hb[i].session.n);
        }
        break;
    case LP_JOIN:
        put_kstr(o, "topic", r->topic);
        put_kbin(o, "s", r->session);
        put_kraw(o, "p", r->payload);
        break;
    case LP_MESSAGE:
        put_kstr(o, "topic", r->topic);
        put_kbin(o, "s", r->session);
        put_kstr(o, "ev", r->event);
        put_kraw(o, "p", r->payload);
        break;
    case LP_NOTIFY:
        put_kstr(o, "topic", r->topic);
        put_kbin(o, "s", r->session);
        put_kbin(o, "msg", r->msg);
        if (r->from.n)
            put_kstr(o, "from", r->from);
        break;
    default:
        return -1;
    }
    return 0;
}

int lp_encode_request(struct lp_out *o, const struct lp_request *r)
{
    if (!o || !r || o->failed)
        return -1;
    size_t start = o->n;
    int rc = enc_request(o, r);
    struct lp_request chk;
    if (!rc && !o->failed)
        rc = lp_decode_request(r->call, o->p + start, o->n - start, &chk, NULL);
    return enc_end(o, start, rc);
}

static int enc_reply(struct lp_out *o, enum lp_call c, const struct lp_reply *r)
{
    static const char *const ST[] = {[LP_ST_OK] = "ok", [LP_ST_REFUSED] = "refused", [LP_ST_ERROR] = "error"};
    bool fx_call = c == LP_JOIN || c == LP_MESSAGE || c == LP_NOTIFY;
    uint32_t keys = 2; /* v st */
    if ((unsigned)c >= LP_CALL_COUNT || c == LP_DISCONNECT || c == LP_HEARTBEAT ||
        (unsigned)r->st > LP_ST_ERROR)
        return -1;
    if (!span_ok(r->reason) || !span_ok(r->dev) || !span_ok(r->session) || !span_ok(r->fw))
        return -1;
    if ((r->n_effects && !fx_call) || r->n_effects > LP_MAX_EFFECTS || (r->n_effects && !r->effects))
        return -1;
    if ((r->response.n && c != LP_JOIN) || (r->response.n && !payload_ok(r->response)))
        return -1;
    if (r->fw.n && c != LP_JOIN)
        return -1;
    if (r->dev.n && c != LP_AUTH)
        return -1;
    keys += (r->reason.n ? 1 : 0) + (r->dev.n ? 1 : 0) + (r->has_session ? 1 : 0) + (r->response.n ? 1 : 0) +
            (r->n_effects ? 1 : 0) + (r->fw.n ? 1 : 0);

    lp_mp_map(o, keys);
    lp_mp_cstr(o, "v");
    lp_mp_uint(o, LP_VERSION);
    lp_mp_cstr(o, "st");
    lp_mp_cstr(o, ST[r->st]);
    if (r->reason.n)
        put_kstr(o, "reason", r->reason);
    if (r->dev.n)
        put_kstr(o, "dev", r->dev);
    if (r->has_session)
        put_kbin(o, "s", r->session);
    if (r->response.n)
        put_kraw(o, "r", r->response);
    if (r->fw.n)
        put_kstr(o, "fw", r->fw);
    if (r->n_effects) {
        lp_mp_cstr(o, "fx");
        lp_mp_array(o, (uint32_t)r->n_effects);
        for (size_t i = 0; i < r->n_effects; i++)
            if (enc_effect(o, &r->effects[i]))
                return -1;
    }
    return 0;
}

int lp_encode_reply(struct lp_out *o, enum lp_call call, const struct lp_reply *r)
{
    if (!o || !r || o->failed)
        return -1;
    size_t start = o->n;
    int rc = enc_reply(o, call, r);
    struct lp_reply chk;
    if (!rc && !o->failed)
        rc = lp_decode_reply(call, o->p + start, o->n - start, &chk, NULL);
    return enc_end(o, start, rc);
}

static void put_opt_topic(struct lp_out *o, struct lp_span t)
{
    if (t.n)
        lp_mp_str(o, t.p, t.n);
    else
        lp_mp_nil(o);
}

/* {v, k: "topics", topic, devs: [[dev, cref, unsub|nil, sub|nil], ...]}; validity of the entries
 * is left to the decoder run over the result. */
static int enc_topics(struct lp_out *o, const struct lp_inbox *m)
{
    if (m->n_moves == 0 || m->n_moves > LP_MAX_MOVES || !m->moves)
        return -1;
    lp_mp_map(o, 4);
    put_kuint(o, "v", LP_VERSION);
    lp_mp_cstr(o, "k");
    lp_mp_cstr(o, "topics");
    put_kstr(o, "topic", m->topic);
    lp_mp_cstr(o, "devs");
    lp_mp_array(o, (uint32_t)m->n_moves);
    for (size_t i = 0; i < m->n_moves && !o->failed; i++) {
        const struct lp_move *mv = &m->moves[i];
        if (!span_ok(mv->dev) || !span_ok(mv->unsub) || !span_ok(mv->sub))
            return -1;
        lp_mp_array(o, 4);
        lp_mp_str(o, mv->dev.p, mv->dev.n);
        lp_mp_uint(o, mv->cref);
        put_opt_topic(o, mv->unsub);
        put_opt_topic(o, mv->sub);
    }
    return 0;
}

static int enc_inbox(struct lp_out *o, const struct lp_inbox *m)
{
    static const char *const K[] = {[LP_IN_PUSH] = "push",
                                     [LP_IN_NOTIFY] = "notify",
                                     [LP_IN_KICK] = "kick",
                                     [LP_IN_CONSOLE_ATTACH] = "console_attach",
                                     [LP_IN_CONSOLE_DETACH] = "console_detach",
                                     [LP_IN_TOPICS] = "topics"};
    uint32_t keys = 3 + (m->has_cref ? 1 : 0);
    if ((unsigned)m->kind > LP_IN_TOPICS || !span_ok(m->dev) || !span_ok(m->topic) ||
        !span_ok(m->event) || !span_ok(m->msg) || !span_ok(m->reason) || !span_ok(m->op))
        return -1;
    if (m->kind == LP_IN_TOPICS)
        return enc_topics(o, m);
    switch (m->kind) {
    case LP_IN_PUSH:
        if (!payload_ok(m->payload))
            return -1;
        keys += 3;
        break;
    case LP_IN_NOTIFY:
        keys += 2;
        break;
    case LP_IN_KICK:
        keys += (m->code ? 1 : 0) + (m->reason.n ? 1 : 0);
        break;
    case LP_IN_CONSOLE_ATTACH:
        keys += 1 + (m->no_scrollback ? 1 : 0) + (m->lease_ms ? 1 : 0);
        break;
    case LP_IN_CONSOLE_DETACH:
        keys += 1;
        break;
    case LP_IN_TOPICS:
        return -1;
    }
    lp_mp_map(o, keys);
    put_kuint(o, "v", LP_VERSION);
    lp_mp_cstr(o, "k");
    lp_mp_cstr(o, K[m->kind]);
    put_kstr(o, "dev", m->dev);
    if (m->has_cref)
        put_kuint(o, "cref", m->cref);
    switch (m->kind) {
    case LP_IN_PUSH:
        put_kstr(o, "topic", m->topic);
        put_kstr(o, "ev", m->event);
        put_kraw(o, "p", m->payload);
        break;
    case LP_IN_NOTIFY:
        put_kstr(o, "topic", m->topic);
        put_kbin(o, "msg", m->msg);
        break;
    case LP_IN_KICK:
        if (m->code) /* 0: absent, the receiver applies the default 1001 */
            put_kuint(o, "code", m->code);
        if (m->reason.n)
            put_kstr(o, "reason", m->reason);
        break;
    case LP_IN_CONSOLE_ATTACH:
    case LP_IN_CONSOLE_DETACH:
        put_kstr(o, "op", m->op);
        if (m->no_scrollback) { /* absent: true */
            lp_mp_cstr(o, "sb");
            lp_mp_bool(o, false);
        }
        if (m->lease_ms)
            put_kuint(o, "lease_ms", m->lease_ms);
        break;
    case LP_IN_TOPICS:
        return -1;
    }
    return 0;
}

int lp_encode_inbox(struct lp_out *o, const struct lp_inbox *m)
{
    if (!o || !m || o->failed)
        return -1;
    size_t start = o->n;
    int rc = enc_inbox(o, m);
    struct lp_inbox chk;
    if (!rc && !o->failed)
        rc = lp_decode_inbox(o->p + start, o->n - start, &chk, NULL);
    return enc_end(o, start, rc);
}

static int enc_topic_msg(struct lp_out *o, const struct lp_topic_msg *m)
{
    if (!span_ok(m->event) || !span_ok(m->skip_fw) || !span_ok(m->msg))
        return -1;
    switch (m->kind) {
    case LP_TOPIC_PUSH:
        if (!payload_ok(m->payload))
            return -1;
        lp_mp_map(o, m->skip_fw.n ? 5 : 4);
        put_kuint(o, "v", LP_VERSION);
        lp_mp_cstr(o, "k");
        lp_mp_cstr(o, "push");
        put_kstr(o, "ev", m->event);
        put_kraw(o, "p", m->payload);
        if (m->skip_fw.n)
            put_kstr(o, "skip_fw", m->skip_fw);
        return 0;
    case LP_TOPIC_NOTIFY:
        lp_mp_map(o, 3);
        put_kuint(o, "v", LP_VERSION);
        lp_mp_cstr(o, "k");
        lp_mp_cstr(o, "notify");
        put_kbin(o, "msg", m->msg);
        return 0;
    }
    return -1;
}

int lp_encode_topic_msg(struct lp_out *o, const struct lp_topic_msg *m)
{
    if (!o || !m || o->failed)
        return -1;
    size_t start = o->n;
    int rc = enc_topic_msg(o, m);
    struct lp_topic_msg chk;
    if (!rc && !o->failed)
        rc = lp_decode_topic_msg(o->p + start, o->n - start, &chk, NULL);
    return enc_end(o, start, rc);
}

int lp_encode_inbox_status(struct lp_out *o, enum lp_inbox_status st)
{
    static const char *const ST[] = {
        [LP_IST_OK] = "ok", [LP_IST_GONE] = "gone", [LP_IST_NOT_JOINED] = "not_joined"};
    if (!o || o->failed)
        return -1;
    size_t start = o->n;
    if ((unsigned)st > LP_IST_NOT_JOINED)
        return -1;
    lp_mp_map(o, 2);
    put_kuint(o, "v", LP_VERSION);
    lp_mp_cstr(o, "st");
    lp_mp_cstr(o, ST[st]);
    return enc_end(o, start, 0);
}

int lp_encode_topics_reply(struct lp_out *o, uint32_t applied)
{
    if (!o || o->failed)
        return -1;
    size_t start = o->n;
    if (applied > LP_MAX_MOVES)
        return -1;
    lp_mp_map(o, 3);
    put_kuint(o, "v", LP_VERSION);
    lp_mp_cstr(o, "st");
    lp_mp_cstr(o, "ok");
    put_kuint(o, "n", applied);
    return enc_end(o, start, 0);
}

int lp_encode_console_reply(struct lp_out *o, const struct lp_console_reply *r)
{
    static const char *const ST[] = {[LP_CST_OK] = "ok",
                                     [LP_CST_GONE] = "gone",
                                     [LP_CST_NOT_JOINED] = "not_joined",
                                     [LP_CST_FULL] = "full"};
    if (!o || !r || o->failed)
        return -1;
    size_t start = o->n;
    if ((unsigned)r->st > LP_CST_FULL || !span_ok(r->scrollback) || !span_ok(r->version))
        return -1;
    bool ok = r->st == LP_CST_OK;
    bool sb = ok && r->has_scrollback, ver = ok && r->version.n;
    lp_mp_map(o, 2 + (sb ? 1 : 0) + (ver ? 1 : 0));
    put_kuint(o, "v", LP_VERSION);
    lp_mp_cstr(o, "st");
    lp_mp_cstr(o, ST[r->st]);
    if (sb)
        put_kbin(o, "scrollback", r->scrollback);
    if (ver)
        put_kstr(o, "version", r->version);
    struct lp_console_reply chk;
    int rc = o->failed ? -1 : lp_decode_console_reply(o->p + start, o->n - start, &chk, NULL);
    return enc_end(o, start, rc);
}

int lp_encode_console_out(struct lp_out *o, const struct lp_console_out *m)
{
    if (!o || !m || o->failed)
        return -1;
    size_t start = o->n;
    if (!span_ok(m->event) || !payload_ok(m->payload))
        return -1;
    lp_mp_map(o, 3);
    put_kuint(o, "v", LP_VERSION);
    put_kstr(o, "ev", m->event);
    put_kraw(o, "p", m->payload);
    struct lp_console_out chk;
    int rc = o->failed ? -1 : lp_decode_console_out(o->p + start, o->n - start, &chk, NULL);
    return enc_end(o, start, rc);
}
