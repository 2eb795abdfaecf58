/* Phoenix channel message codec (see phx.h): msgpack envelopes are walked in place (zero copy);
 * JSON envelopes are converted to msgpack in two linear passes (measure, then write into one
 * exactly sized block); msgpack payloads are written out as JSON directly into a struct buf.
 * Deliberately no JSON tree library: jansson cannot hold integers above INT64_MAX, drops
 * duplicate keys, builds a tree costing tens of bytes per input byte and has its own depth limit. */
#include "phx.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct span PHX_MP_EMPTY_MAP = {"\x80", 1};
const struct span PHX_MP_NIL = {"\xc0", 1};

/* Storage behind phx_msg.owned_. */
struct phx_owned {
    char ref_txt[2][24]; /* decimal text of integer join_ref / ref */
    size_t mp_len;       /* bytes in mp */
    uint8_t mp[];        /* the envelope converted from JSON; empty for msgpack input */
};

const char *phx_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case PHX_ERR_SYNTAX:
        return "malformed message";
    case PHX_ERR_SHAPE:
        return "message is not [join_ref, ref, topic, event, payload]";
    case PHX_ERR_NOMEM:
        return "out of memory";
    case PHX_ERR_DEPTH:
        return "message nested too deeply";
    case PHX_ERR_UNSUPPORTED:
        return "value cannot be represented";
    case PHX_ERR_TOO_BIG:
        return "encoded message exceeds the output limit";
    default:
        return "unknown error";
    }
}

/* ---------------------------------------------------------------------------------------------
 * msgpack reading (https://github.com/msgpack/msgpack/blob/master/spec.md)
 * ------------------------------------------------------------------------------------------- */

enum mp_type { MP_NIL, MP_BOOL, MP_UINT, MP_INT, MP_FLOAT, MP_STR, MP_BIN, MP_EXT, MP_ARRAY, MP_MAP };

/* One decoded msgpack header. For scalars hlen + len is the whole encoding. */
struct mp_item {
    enum mp_type type;
    size_t hlen;     /* bytes before the body (an ext's type byte included) */
    uint64_t len;    /* body bytes (str, bin, ext), elements (array) or pairs (map) */
    int8_t ext_type; /* MP_EXT only */
    union {
        uint64_t u; /* MP_UINT */
        int64_t i;  /* MP_INT */
        double f;   /* MP_FLOAT (float32 widened) */
        bool b;     /* MP_BOOL */
    } v;
};

static uint64_t rd_be(const uint8_t *p, size_t k)
{
    uint64_t v = 0;
    for (size_t i = 0; i < k; i++)
        v = v << 8 | p[i];
    return v;
}

static int64_t sign_extend(uint64_t v, size_t bytes)
{
    unsigned shift = 64 - 8 * (unsigned)bytes;
    return (int64_t)(v << shift) >> shift;
}

/* Decode the header at p[0..n) and check that a scalar's body fits in n.
 * Returns 0 or PHX_ERR_SYNTAX (truncated, or the never-used byte 0xc1). */
static int mp_item(const uint8_t *p, size_t n, struct mp_item *it)
{
    size_t extra; /* header bytes after the first */
    if (n == 0)
        return PHX_ERR_SYNTAX;
    uint8_t c = p[0];
    it->len = 0;
    it->hlen = 1;
    if (c <= 0x7f) {
        it->type = MP_UINT;
        it->v.u = c;
        return 0;
    }
    if (c >= 0xe0) {
        it->type = MP_INT;
        it->v.i = (int64_t)c - 256;
        return 0;
    }
    if (c <= 0x9f) {
        it->type = c <= 0x8f ? MP_MAP : MP_ARRAY;
        it->len = c & 0x0f;
        return 0;
    }
    if (c <= 0xbf) {
        it->type = MP_STR;
        it->len = c & 0x1f;
        return n - 1 < it->len ? PHX_ERR_SYNTAX : 0;
    }
    switch (c) {
    case 0xc0:
        it->type = MP_NIL;
        return 0;
    case 0xc1:
        return PHX_ERR_SYNTAX;
    case 0xc2:
    case 0xc3:
        it->type = MP_BOOL;
        it->v.b = c == 0xc3;
        return 0;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        it->type = MP_BIN;
        extra = (size_t)1 << (c - 0xc4);
        break;
    case 0xc7:
    case 0xc8:
    case 0xc9:
        it->type = MP_EXT;
        extra = ((size_t)1 << (c - 0xc7)) + 1;
        break;
    case 0xca:
    case 0xcb:
        it->type = MP_FLOAT;
        extra = c == 0xca ? 4 : 8;
        break;
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        it->type = MP_UINT;
        extra = (size_t)1 << (c - 0xcc);
        break;
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3:
        it->type = MP_INT;
        extra = (size_t)1 << (c - 0xd0);
        break;
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        it->type = MP_EXT;
        extra = 1;
        break;
    case 0xd9:
    case 0xda:
    case 0xdb:
        it->type = MP_STR;
        extra = (size_t)1 << (c - 0xd9);
        break;
    case 0xdc:
    case 0xdd:
        it->type = MP_ARRAY;
        extra = c == 0xdc ? 2 : 4;
        break;
    default: /* 0xde, 0xdf */
        it->type = MP_MAP;
        extra = c == 0xde ? 2 : 4;
        break;
    }
    if (n - 1 < extra)
        return PHX_ERR_SYNTAX;
    it->hlen = 1 + extra;
    switch (it->type) {
    case MP_UINT:
        it->v.u = rd_be(p + 1, extra);
        return 0;
    case MP_INT:
        it->v.i = sign_extend(rd_be(p + 1, extra), extra);
        return 0;
    case MP_FLOAT:
        if (extra == 4) {
            uint32_t u = (uint32_t)rd_be(p + 1, 4);
            float f;
            memcpy(&f, &u, sizeof(f));
            it->v.f = f;
        } else {
            uint64_t u = rd_be(p + 1, 8);
            memcpy(&it->v.f, &u, sizeof(it->v.f));
        }
        return 0;
    case MP_EXT:
        if (c >= 0xd4)
            it->len = (uint64_t)1 << (c - 0xd4);
        else
            it->len = rd_be(p + 1, extra - 1);
        it->ext_type = (int8_t)(p[extra] >= 0x80 ? (int)p[extra] - 256 : (int)p[extra]);
        break;
    default: /* str, bin, array, map */
        it->len = rd_be(p + 1, extra);
        if (it->type == MP_ARRAY || it->type == MP_MAP)
            return 0;
        break;
    }
    return n - it->hlen < it->len ? PHX_ERR_SYNTAX : 0;
}

/* Walk the one value at p[0..n) without recursion; *used = its encoded size. Containers may nest
 * max_depth deep (empty ones count). Linear: every step consumes at least one byte.
 * Returns 0, PHX_ERR_SYNTAX or PHX_ERR_DEPTH. */
static int mp_scan(const uint8_t *p, size_t n, int max_depth, size_t *used)
{
    uint64_t suspended[PHX_MAX_DEPTH]; /* items left in each enclosing container */
    int sp = 0;
    uint64_t left = 1;
    size_t i = 0;
    if (max_depth > PHX_MAX_DEPTH)
        max_depth = PHX_MAX_DEPTH;
    for (;;) {
        while (left == 0) {
            if (sp == 0) {
                *used = i;
                return 0;
            }
            left = suspended[--sp];
        }
        struct mp_item it;
        int err = mp_item(p + i, n - i, &it);
        if (err)
            return err;
        left--;
        if (it.type != MP_ARRAY && it.type != MP_MAP) {
            i += it.hlen + (size_t)it.len;
            continue;
        }
        if (sp + 1 > max_depth)
            return PHX_ERR_DEPTH;
        i += it.hlen;
        uint64_t items = it.type == MP_MAP ? it.len * 2 : it.len;
        /* each item takes at least one byte: a larger count is a truncated value */
        if (items > n - i)
            return PHX_ERR_SYNTAX;
        if (items) {
            suspended[sp++] = left;
            left = items;
        }
    }
}

int phx_mp_validate(struct span v, int max_depth)
{
    size_t used;
    if (v.len == 0)
        return PHX_ERR_SYNTAX;
    int err = mp_scan((const uint8_t *)v.p, v.len, max_depth, &used);
    if (err)
        return err;
    return used == v.len ? 0 : PHX_ERR_SYNTAX;
}

bool phx_mp_map_get(struct span map, const char *key, struct span *value)
{
    const uint8_t *p = (const uint8_t *)map.p;
    size_t n = map.len, klen = strlen(key), off, used;
    struct mp_item it, k;
    bool found = false;
    if (n == 0 || mp_item(p, n, &it) != 0 || it.type != MP_MAP)
        return false;
    off = it.hlen;
    for (uint64_t i = 0; i < it.len; i++) {
        if (mp_item(p + off, n - off, &k) != 0)
            return false;
        bool match = (k.type == MP_STR || k.type == MP_BIN) && k.len == klen &&
                     memcmp(p + off + k.hlen, key, klen) == 0;
        if (mp_scan(p + off, n - off, PHX_MAX_DEPTH, &used) != 0)
            return false;
        off += used;
        if (mp_scan(p + off, n - off, PHX_MAX_DEPTH, &used) != 0)
            return false;
        if (match) {
            /* keep scanning: Elixir maps keep the last of duplicate keys */
            value->p = (const char *)p + off;
            value->len = used;
            found = true;
        }
        off += used;
    }
    return found;
}

bool phx_mp_get_str(struct span value, struct span *s)
{
    struct mp_item it;
    if (value.len == 0 || mp_item((const uint8_t *)value.p, value.len, &it) != 0)
        return false;
    if (it.type != MP_STR && it.type != MP_BIN)
        return false;
    s->p = value.p + it.hlen;
    s->len = (size_t)it.len;
    return true;
}

bool phx_mp_is_nil(struct span value)
{
    return value.len > 0 && (uint8_t)value.p[0] == 0xc0;
}

/* ---------------------------------------------------------------------------------------------
 * msgpack writing into raw memory; o == NULL only measures. Forms follow Msgpax: smallest int
 * encoding (unsigned forms for non-negative values), str for every string.
 * ------------------------------------------------------------------------------------------- */

static size_t pk_be(uint8_t *o, uint8_t code, uint64_t v, size_t k)
{
    if (o) {
        o[0] = code;
        for (size_t i = 0; i < k; i++)
            o[1 + i] = (uint8_t)(v >> (8 * (k - 1 - i)));
    }
    return 1 + k;
}

static size_t pk_uint(uint8_t *o, uint64_t v)
{
    if (v <= 0x7f) {
        if (o)
            o[0] = (uint8_t)v;
        return 1;
    }
    if (v <= UINT8_MAX)
        return pk_be(o, 0xcc, v, 1);
    if (v <= UINT16_MAX)
        return pk_be(o, 0xcd, v, 2);
    if (v <= UINT32_MAX)
        return pk_be(o, 0xce, v, 4);
    return pk_be(o, 0xcf, v, 8);
}

static size_t pk_int(uint8_t *o, int64_t v)
{
    if (v >= 0)
        return pk_uint(o, (uint64_t)v);
    if (v >= -32) {
        if (o)
            o[0] = (uint8_t)(v + 256);
        return 1;
    }
    if (v >= INT8_MIN)
        return pk_be(o, 0xd0, (uint64_t)v, 1);
    if (v >= INT16_MIN)
        return pk_be(o, 0xd1, (uint64_t)v, 2);
    if (v >= INT32_MIN)
        return pk_be(o, 0xd2, (uint64_t)v, 4);
    return pk_be(o, 0xd3, (uint64_t)v, 8);
}

static size_t pk_str_hdr(uint8_t *o, uint32_t n)
{
    if (n < 32) {
        if (o)
            o[0] = (uint8_t)(0xa0 | n);
        return 1;
    }
    if (n <= UINT8_MAX)
        return pk_be(o, 0xd9, n, 1);
    if (n <= UINT16_MAX)
        return pk_be(o, 0xda, n, 2);
    return pk_be(o, 0xdb, n, 4);
}

static size_t pk_container_hdr(uint8_t *o, bool map, uint32_t n)
{
    if (n < 16) {
        if (o)
            o[0] = (uint8_t)((map ? 0x80 : 0x90) | n);
        return 1;
    }
    if (n <= UINT16_MAX)
        return pk_be(o, map ? 0xde : 0xdc, n, 2);
    return pk_be(o, map ? 0xdf : 0xdd, n, 4);
}

static size_t pk_double(uint8_t *o, double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return pk_be(o, 0xcb, u, 8);
}

/* Make room for extra more bytes in out without passing limit. */
static int out_reserve(struct buf *out, size_t extra, size_t limit)
{
    if (extra > limit || out->len > limit - extra)
        return PHX_ERR_TOO_BIG;
    if (buf_try_reserve(out, extra, limit) != 0)
        return PHX_ERR_NOMEM;
    return 0;
}

/* Size of s packed as msgpack str, or 0 if it cannot be (longer than 2^32-1). */
static size_t str_packed_size(size_t len)
{
    if (len > UINT32_MAX)
        return 0;
    return pk_str_hdr(NULL, (uint32_t)len) + len;
}

static size_t pk_str(uint8_t *o, const void *s, size_t len)
{
    size_t h = pk_str_hdr(o, (uint32_t)len);
    if (len)
        memcpy(o + h, s, len);
    return h + len;
}

int phx_mp_put_str(struct span s, struct buf *out, size_t limit)
{
    size_t sz = str_packed_size(s.len);
    if (sz == 0)
        return PHX_ERR_UNSUPPORTED;
    int err = out_reserve(out, sz, limit);
    if (err)
        return err;
    out->len += pk_str(out->p + out->len, s.p, s.len);
    return 0;
}

static int put_small(struct buf *out, size_t limit, size_t (*fn)(uint8_t *, uint64_t), uint64_t v)
{
    int err = out_reserve(out, fn(NULL, v), limit);
    if (err)
        return err;
    out->len += fn(out->p + out->len, v);
    return 0;
}

static size_t pk_map_hdr_u(uint8_t *o, uint64_t n)
{
    return pk_container_hdr(o, true, (uint32_t)n);
}

static size_t pk_arr_hdr_u(uint8_t *o, uint64_t n)
{
    return pk_container_hdr(o, false, (uint32_t)n);
}

static size_t pk_int_u(uint8_t *o, uint64_t v)
{
    return pk_int(o, (int64_t)v);
}

int phx_mp_put_map(uint32_t npairs, struct buf *out, size_t limit)
{
    return put_small(out, limit, pk_map_hdr_u, npairs);
}

int phx_mp_put_array(uint32_t nitems, struct buf *out, size_t limit)
{
    return put_small(out, limit, pk_arr_hdr_u, nitems);
}

int phx_mp_put_int(int64_t v, struct buf *out, size_t limit)
{
    return put_small(out, limit, pk_int_u, (uint64_t)v);
}

int phx_mp_put_uint(uint64_t v, struct buf *out, size_t limit)
{
    return put_small(out, limit, pk_uint, v);
}

int phx_mp_put_bool(bool v, struct buf *out, size_t limit)
{
    uint8_t c = v ? 0xc3 : 0xc2;
    int err = out_reserve(out, 1, limit);
    if (err)
        return err;
    out->p[out->len++] = c;
    return 0;
}

int phx_mp_put_nil(struct buf *out, size_t limit)
{
    int err = out_reserve(out, 1, limit);
    if (err)
        return err;
    out->p[out->len++] = 0xc0;
    return 0;
}

int phx_mp_reason(const char *reason, struct buf *out, size_t limit)
{
    size_t mark = out->len;
    int err = phx_mp_put_map(1, out, limit);
    if (!err)
        err = phx_mp_put_str(SPAN_LIT("reason"), out, limit);
    if (!err)
        err = phx_mp_put_str((struct span){reason, strlen(reason)}, out, limit);
    if (err)
        out->len = mark;
    return err;
}

/* ---------------------------------------------------------------------------------------------
 * msgpack envelope (device-protocol.md §7)
 * ------------------------------------------------------------------------------------------- */

static size_t fmt_u64(char *o, uint64_t v)
{
    char t[20];
    size_t k = 0;
    do {
        t[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < k; i++)
        o[i] = t[k - 1 - i];
    return k;
}

static size_t fmt_i64(char *o, int64_t v)
{
    if (v >= 0)
        return fmt_u64(o, (uint64_t)v);
    o[0] = '-';
    return 1 + fmt_u64(o + 1, (uint64_t)0 - (uint64_t)v);
}

/* A ref at *pp: nil, str/bin, or an integer turned into decimal text (§7: the server accepts
 * integers and converts them, "1" for 1). */
static int take_ref(const uint8_t **pp, const uint8_t *end, int slot, bool *has, struct span *s,
                    struct phx_owned **own)
{
    struct mp_item it;
    (void)mp_item(*pp, (size_t)(end - *pp), &it); /* validated by mp_scan */
    switch (it.type) {
    case MP_NIL:
        *has = false;
        *s = (struct span){NULL, 0};
        break;
    case MP_STR:
    case MP_BIN:
        *has = true;
        *s = (struct span){(const char *)*pp + it.hlen, (size_t)it.len};
        break;
    case MP_UINT:
    case MP_INT:
        if (!*own) {
            *own = calloc(1, sizeof(**own));
            if (!*own)
                return PHX_ERR_NOMEM;
        }
        *has = true;
        s->p = (*own)->ref_txt[slot];
        s->len = it.type == MP_UINT ? fmt_u64((*own)->ref_txt[slot], it.v.u)
                                    : fmt_i64((*own)->ref_txt[slot], it.v.i);
        break;
    default:
        return PHX_ERR_SHAPE;
    }
    *pp += it.hlen + (size_t)it.len;
    return 0;
}

static int take_str(const uint8_t **pp, const uint8_t *end, struct span *s)
{
    struct mp_item it;
    (void)mp_item(*pp, (size_t)(end - *pp), &it); /* validated by mp_scan */
    if (it.type != MP_STR && it.type != MP_BIN)
        return PHX_ERR_SHAPE;
    *s = (struct span){(const char *)*pp + it.hlen, (size_t)it.len};
    *pp += it.hlen + (size_t)it.len;
    return 0;
}

/* Decode a msgpack envelope occupying exactly p[0..n). *own may be preset (JSON) or is
 * allocated here for integer refs; the caller frees it on error. */
static int mp_envelope(const uint8_t *p, size_t n, struct phx_msg *m, struct phx_owned **own)
{
    const uint8_t *end = p + n, *q;
    struct mp_item it;
    size_t used;
    int err = mp_scan(p, n, PHX_MAX_DEPTH, &used);
    if (err)
        return err;
    if (used != n)
        return PHX_ERR_SYNTAX;
    (void)mp_item(p, n, &it);
    /* §7: exactly one 5-element array; any other count crashes the reference server */
    if (it.type != MP_ARRAY || it.len != 5)
        return PHX_ERR_SHAPE;
    q = p + it.hlen;
    if ((err = take_ref(&q, end, 0, &m->has_join_ref, &m->join_ref, own)) != 0 ||
        (err = take_ref(&q, end, 1, &m->has_ref, &m->ref, own)) != 0 ||
        (err = take_str(&q, end, &m->topic)) != 0 || (err = take_str(&q, end, &m->event)) != 0)
        return err;
    /* the payload is the last element, so it runs to the end of the input */
    m->payload = (struct span){(const char *)q, (size_t)(end - q)};
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * JSON (RFC 8259) → msgpack. Pass 1 (out == NULL) validates and measures, recording every
 * container's element count and every string's decoded length in document order; pass 2 runs
 * the same code over the same bytes and writes into a block of exactly the measured size.
 * ------------------------------------------------------------------------------------------- */

struct jconv {
    const uint8_t *p; /* cursor */
    const uint8_t *end;
    uint8_t *out;    /* NULL in pass 1 */
    size_t olen;     /* bytes measured (pass 1) or written (pass 2) */
    uint32_t *sizes; /* counts and string lengths in document order */
    size_t nsizes;
    size_t capsizes;
    size_t si; /* pass 2: next entry of sizes */
};

static int sizes_push(struct jconv *j, uint32_t v, size_t *idx)
{
    if (j->nsizes == j->capsizes) {
        size_t cap = j->capsizes ? j->capsizes * 2 : 16;
        uint32_t *s = realloc(j->sizes, cap * sizeof(*s));
        if (!s)
            return PHX_ERR_NOMEM;
        j->sizes = s;
        j->capsizes = cap;
    }
    *idx = j->nsizes;
    j->sizes[j->nsizes++] = v;
    return 0;
}

static void skip_ws(struct jconv *j)
{
    /* RFC 8259 §2: space, tab, LF, CR */
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int hex4(const uint8_t *s, const uint8_t *end, uint32_t *v)
{
    if (end - s < 4)
        return -1;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = s[i];
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        *v = *v << 4 | (uint32_t)d;
    }
    return 0;
}

static size_t utf8_put(uint8_t *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xc0 | cp >> 6);
        o[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xe0 | cp >> 12);
        o[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (uint8_t)(0xf0 | cp >> 18);
    o[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

/* The escape after a backslash at s[-1]; *cp = the code point. Returns bytes consumed after
 * the backslash, or 0 if invalid. RFC 8259 §7; a lone surrogate (§8.2 leaves it undefined) is
 * rejected, as Jason (Phoenix's JSON library) and jansson do. */
static size_t json_escape(const uint8_t *s, const uint8_t *end, uint32_t *cp)
{
    uint32_t lo;
    if (s == end)
        return 0;
    switch (*s) {
    case '"':
    case '\\':
    case '/':
        *cp = *s;
        return 1;
    case 'b':
        *cp = '\b';
        return 1;
    case 'f':
        *cp = '\f';
        return 1;
    case 'n':
        *cp = '\n';
        return 1;
    case 'r':
        *cp = '\r';
        return 1;
    case 't':
        *cp = '\t';
        return 1;
    case 'u':
        if (hex4(s + 1, end, cp) != 0)
            return 0;
        if (*cp >= 0xdc00 && *cp <= 0xdfff)
            return 0;
        if (*cp < 0xd800 || *cp > 0xdbff)
            return 5;
        if (end - (s + 5) < 6 || s[5] != '\\' || s[6] != 'u' || hex4(s + 7, end, &lo) != 0 || lo < 0xdc00 ||
            lo > 0xdfff)
            return 0;
        *cp = 0x10000 + ((*cp - 0xd800) << 10) + (lo - 0xdc00);
        return 11;
    default:
        return 0;
    }
}

/* A string starting at the opening quote → msgpack str. */
static int json_string(struct jconv *j)
{
    const uint8_t *s = j->p + 1, *end = j->end;
    uint8_t *o = NULL;
    size_t len = 0, idx;
    if (j->out) {
        j->olen += pk_str_hdr(j->out + j->olen, j->sizes[j->si++]);
        o = j->out + j->olen;
    }
    for (;;) {
        const uint8_t *run = s;
        while (s < end && *s != '"' && *s != '\\' && *s >= 0x20)
            s++;
        if (o && s > run)
            memcpy(o + len, run, (size_t)(s - run));
        len += (size_t)(s - run);
        if (s == end)
            return PHX_ERR_SYNTAX;
        if (*s == '"')
            break;
        if (*s < 0x20) /* RFC 8259 §7: control characters must be escaped */
            return PHX_ERR_SYNTAX;
        uint32_t cp;
        size_t k = json_escape(s + 1, end, &cp);
        if (k == 0)
            return PHX_ERR_SYNTAX;
        s += 1 + k;
        uint8_t u[4];
        size_t ulen = utf8_put(u, cp);
        if (o)
            memcpy(o + len, u, ulen);
        len += ulen;
    }
    j->p = s + 1;
    if (j->out) {
        j->olen += len;
        return 0;
    }
    if (len > UINT32_MAX)
        return PHX_ERR_UNSUPPORTED;
    j->olen += pk_str_hdr(NULL, (uint32_t)len) + len;
    return sizes_push(j, (uint32_t)len, &idx);
}

static bool is_digit(const uint8_t *s, const uint8_t *end)
{
    return s < end && *s >= '0' && *s <= '9';
}

/* A number (RFC 8259 §6). Integers become msgpack ints when they fit int64 or uint64, like
 * Msgpax; a fraction or exponent makes a float64, as Jason decodes it. */
static int json_number(struct jconv *j)
{
    const uint8_t *s = j->p, *end = j->end, *start = s;
    bool neg = false, real = false, ovf = false;
    uint64_t mag = 0;
    if (*s == '-') {
        neg = true;
        s++;
    }
    if (!is_digit(s, end))
        return PHX_ERR_SYNTAX;
    if (*s == '0') {
        s++;
    } else {
        for (; is_digit(s, end); s++) {
            unsigned d = *s - '0';
            if (mag > (UINT64_MAX - d) / 10)
                ovf = true;
            else
                mag = mag * 10 + d;
        }
    }
    if (s < end && *s == '.') {
        real = true;
        if (!is_digit(++s, end))
            return PHX_ERR_SYNTAX;
        while (is_digit(s, end))
            s++;
    }
    if (s < end && (*s == 'e' || *s == 'E')) {
        real = true;
        s++;
        if (s < end && (*s == '+' || *s == '-'))
            s++;
        if (!is_digit(s, end))
            return PHX_ERR_SYNTAX;
        while (is_digit(s, end))
            s++;
    }
    j->p = s;
    size_t toklen = (size_t)(s - start);
    uint8_t *o = j->out ? j->out + j->olen : NULL;
    if (toklen > PHX_JSON_MAX_NUMBER)
        return PHX_ERR_UNSUPPORTED;
    if (real) {
        char tmp[PHX_JSON_MAX_NUMBER + 1];
        memcpy(tmp, start, toklen);
        tmp[toklen] = '\0';
        double d = strtod(tmp, NULL);
        if (isinf(d)) /* msgpack could carry it, but JSON output could not */
            return PHX_ERR_UNSUPPORTED;
        j->olen += pk_double(o, d);
        return 0;
    }
    if (ovf)
        return PHX_ERR_UNSUPPORTED;
    if (!neg || mag == 0) {
        j->olen += pk_uint(o, mag);
        return 0;
    }
    if (mag > (uint64_t)INT64_MAX + 1)
        return PHX_ERR_UNSUPPORTED;
    j->olen += pk_int(o, mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag);
    return 0;
}

static int json_literal(struct jconv *j, const char *word, uint8_t code)
{
    size_t k = strlen(word);
    if ((size_t)(j->end - j->p) < k || memcmp(j->p, word, k) != 0)
        return PHX_ERR_SYNTAX;
    j->p += k;
    if (j->out)
        j->out[j->olen] = code;
    j->olen++;
    return 0;
}

static int json_scalar(struct jconv *j)
{
    switch (*j->p) {
    case '"':
        return json_string(j);
    case 't':
        return json_literal(j, "true", 0xc3);
    case 'f':
        return json_literal(j, "false", 0xc2);
    case 'n':
        return json_literal(j, "null", 0xc0);
    default:
        if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9'))
            return json_number(j);
        return PHX_ERR_SYNTAX;
    }
}

/* An object key and its colon. */
static int json_key(struct jconv *j)
{
    skip_ws(j);
    if (j->p == j->end || *j->p != '"')
        return PHX_ERR_SYNTAX;
    int err = json_string(j);
    if (err)
        return err;
    skip_ws(j);
    if (j->p == j->end || *j->p != ':')
        return PHX_ERR_SYNTAX;
    j->p++;
    return 0;
}

struct jframe {
    size_t idx; /* pass 1: entry in sizes for this container's count */
    uint64_t n; /* elements (array) or pairs (object) seen */
    bool obj;
};

static int json_close(struct jconv *j, const struct jframe *f)
{
    if (j->out)
        return 0;
    if (f->n > UINT32_MAX)
        return PHX_ERR_UNSUPPORTED;
    j->sizes[f->idx] = (uint32_t)f->n;
    j->olen += pk_container_hdr(NULL, f->obj, (uint32_t)f->n);
    return 0;
}

/* One whole JSON text (one value with optional surrounding whitespace), iteratively. */
static int json_run(struct jconv *j)
{
    struct jframe st[PHX_MAX_DEPTH];
    int sp = 0, err;
    for (;;) {
        skip_ws(j);
        if (j->p == j->end)
            return PHX_ERR_SYNTAX;
        uint8_t c = *j->p;
        if (c == '[' || c == '{') {
            if (sp == PHX_MAX_DEPTH)
                return PHX_ERR_DEPTH;
            struct jframe *f = &st[sp];
            f->obj = c == '{';
            f->n = 0;
            j->p++;
            if (j->out)
                j->olen += pk_container_hdr(j->out + j->olen, f->obj, j->sizes[j->si++]);
            else if ((err = sizes_push(j, 0, &f->idx)) != 0)
                return err;
            sp++;
            skip_ws(j);
            if (j->p < j->end && *j->p == (f->obj ? '}' : ']')) {
                j->p++;
                if ((err = json_close(j, f)) != 0)
                    return err;
                sp--;
                goto after_value;
            }
            if (f->obj && (err = json_key(j)) != 0)
                return err;
            continue;
        }
        if ((err = json_scalar(j)) != 0)
            return err;
    after_value:
        for (;;) {
            if (sp == 0) {
                skip_ws(j);
                return j->p == j->end ? 0 : PHX_ERR_SYNTAX;
            }
            struct jframe *f = &st[sp - 1];
            f->n++;
            skip_ws(j);
            if (j->p == j->end)
                return PHX_ERR_SYNTAX;
            c = *j->p++;
            if (c == ',') {
                if (f->obj && (err = json_key(j)) != 0)
                    return err;
                break;
            }
            if (c != (f->obj ? '}' : ']'))
                return PHX_ERR_SYNTAX;
            if ((err = json_close(j, f)) != 0)
                return err;
            sp--;
        }
    }
}

static int json_decode(const uint8_t *p, size_t n, struct phx_msg *m)
{
    struct jconv j = {.p = p, .end = p + n};
    struct phx_owned *own = NULL;
    int err = json_run(&j);
    if (err)
        goto out;
    size_t measured = j.olen;
    own = malloc(sizeof(*own) + measured);
    if (!own) {
        err = PHX_ERR_NOMEM;
        goto out;
    }
    own->mp_len = measured;
    j.p = p;
    j.out = own->mp;
    j.olen = 0;
    err = json_run(&j);
    /* pass 2 re-reads bytes pass 1 accepted, so it cannot fail or differ in size */
    assert(err == 0 && j.olen == measured);
    err = mp_envelope(own->mp, own->mp_len, m, &own);
    if (err)
        goto out;
    m->owned_ = own;
    own = NULL;
out:
    free(own);
    free(j.sizes);
    return err;
}

int phx_decode(enum phx_format fmt, const uint8_t *p, size_t n, struct phx_msg *m)
{
    struct phx_owned *own = NULL;
    int err;
    memset(m, 0, sizeof(*m));
    if (n == 0)
        return PHX_ERR_SYNTAX;
    if (fmt == PHX_FMT_JSON) {
        err = json_decode(p, n, m);
    } else {
        err = mp_envelope(p, n, m, &own);
        if (!err)
            m->owned_ = own;
        else
            free(own);
    }
    if (err)
        memset(m, 0, sizeof(*m));
    return err;
}

void phx_msg_free(struct phx_msg *m)
{
    if (!m)
        return;
    free(m->owned_);
    memset(m, 0, sizeof(*m));
}

/* ---------------------------------------------------------------------------------------------
 * msgpack → JSON, written straight into the output buffer
 * ------------------------------------------------------------------------------------------- */

struct jw {
    struct buf *b;
    size_t limit;
};

static inline int jw_put(struct jw *w, const void *s, size_t n)
{
    struct buf *b = w->b;
    if (n == 0)
        return 0;
    if (n > w->limit || b->len > w->limit - n)
        return PHX_ERR_TOO_BIG;
    if (b->cap - b->len < n && buf_try_reserve(b, n, w->limit) != 0)
        return PHX_ERR_NOMEM;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

#define JW_LIT(w, s) jw_put((w), (s), sizeof(s) - 1)

/* Length of the well-formed UTF-8 sequence at s, or 0 and *bad = the length of its maximal
 * invalid subpart (Unicode §3.9 "U+FFFD substitution of maximal subparts"). */
static size_t utf8_seq(const uint8_t *s, size_t n, size_t *bad)
{
    uint8_t c = s[0], lo = 0x80, hi = 0xbf;
    size_t need;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 2;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed) /* UTF-16 surrogates are not scalar values */
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        *bad = 1;
        return 0;
    }
    for (size_t i = 1; i <= need; i++) {
        if (i >= n || s[i] < lo || s[i] > hi) {
            *bad = i;
            return 0;
        }
        lo = 0x80;
        hi = 0xbf;
    }
    return need + 1;
}

/* Bytes as a JSON string: escapes as Jason's default mode (", \, control characters), other
 * bytes raw, invalid UTF-8 replaced with U+FFFD so the text frame stays valid (RFC 6455 §8.1). */
static int jw_str(struct jw *w, const uint8_t *s, size_t n)
{
    static const char hexd[] = "0123456789ABCDEF";
    size_t i = 0, run = 0;
    int err = JW_LIT(w, "\"");
    while (!err && i < n) {
        uint8_t c = s[i];
        char esc[6];
        size_t elen = 2, bad = 0;
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t k = utf8_seq(s + i, n - i, &bad);
            if (k) {
                i += k;
                continue;
            }
        }
        err = jw_put(w, s + run, i - run);
        if (err)
            break;
        if (bad) {
            err = JW_LIT(w, "\xef\xbf\xbd");
            i += bad;
            run = i;
            continue;
        }
        esc[0] = '\\';
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hexd[c >> 4];
            esc[5] = hexd[c & 0xf];
            elen = 6;
            break;
        }
        err = jw_put(w, esc, elen);
        i++;
        run = i;
    }
    if (!err && n > run)
        err = jw_put(w, s + run, n - run);
    if (!err)
        err = JW_LIT(w, "\"");
    return err;
}

/* Shortest round-trip form for doubles needing at most 15 significant digits (for a normal
 * double, %.15g then reproduces the shortest digits exactly); otherwise 16 or 17 digits. The
 * result always reads as a float, in Elixir's style: "1.0", "1.0e20", "-2.5e-7". */
static size_t fmt_double(char *out, double d)
{
    char tmp[40];
    for (int prec = 15;; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
        if (prec == 17 || strtod(tmp, NULL) == d)
            break;
    }
    char *e = strchr(tmp, 'e');
    size_t mlen = e ? (size_t)(e - tmp) : strlen(tmp), k = mlen;
    memcpy(out, tmp, mlen);
    if (!memchr(tmp, '.', mlen)) {
        out[k++] = '.';
        out[k++] = '0';
    }
    if (e) {
        const char *x = e + 1;
        out[k++] = 'e';
        if (*x == '-')
            out[k++] = *x++;
        else if (*x == '+')
            x++;
        while (*x == '0' && x[1])
            x++;
        while (*x)
            out[k++] = *x++;
    }
    return k;
}

/* Days since 1970-01-01 → civil date (H. Hinnant, "chrono-compatible low-level date
 * algorithms"). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *mo, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *mo = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*mo <= 2);
}

/* msgpack timestamp extension (type -1: 32, 64 or 96 bit) → quoted RFC 3339 UTC text with
 * microseconds, the form Elixir's DateTime takes in JSON. Returns 0 when not representable. */
static size_t fmt_timestamp(char *out, const uint8_t *d, uint64_t len)
{
    int64_t sec, days, rem, y;
    uint32_t nsec;
    unsigned mo, day;
    if (len == 4) {
        sec = (int64_t)rd_be(d, 4);
        nsec = 0;
    } else if (len == 8) {
        uint64_t v = rd_be(d, 8);
        nsec = (uint32_t)(v >> 34);
        sec = (int64_t)(v & 0x3ffffffffULL);
    } else if (len == 12) {
        nsec = (uint32_t)rd_be(d, 4);
        sec = (int64_t)rd_be(d + 4, 8);
    } else {
        return 0;
    }
    /* 0000-01-01T00:00:00Z .. 9999-12-31T23:59:59Z: RFC 3339 years have four digits */
    if (nsec > 999999999 || sec < -62167219200LL || sec > 253402300799LL)
        return 0;
    days = sec / 86400;
    rem = sec % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    civil_from_days(days, &y, &mo, &day);
    return (size_t)snprintf(out, 40, "\"%04d-%02u-%02uT%02u:%02u:%02u.%06uZ\"", (int)y, mo, day,
                            (unsigned)(rem / 3600), (unsigned)(rem / 60 % 60), (unsigned)(rem % 60),
                            (unsigned)(nsec / 1000));
}

static int jw_scalar(struct jw *w, const uint8_t *p, const struct mp_item *it)
{
    char num[48];
    size_t k;
    switch (it->type) {
    case MP_NIL:
        return JW_LIT(w, "null");
    case MP_BOOL:
        return it->v.b ? JW_LIT(w, "true") : JW_LIT(w, "false");
    case MP_UINT:
        return jw_put(w, num, fmt_u64(num, it->v.u));
    case MP_INT:
        return jw_put(w, num, fmt_i64(num, it->v.i));
    case MP_FLOAT:
        if (!isfinite(it->v.f))
            return JW_LIT(w, "null");
        return jw_put(w, num, fmt_double(num, it->v.f));
    case MP_STR:
    case MP_BIN:
        return jw_str(w, p + it->hlen, (size_t)it->len);
    default: /* MP_EXT */
        if (it->ext_type == -1 && (k = fmt_timestamp(num, p + it->hlen, it->len)) != 0)
            return jw_put(w, num, k);
        return JW_LIT(w, "null");
    }
}

/* JSON object keys are strings: str/bin as is, integers as decimal (as Jason does for integer
 * keys); anything else has no faithful JSON form. */
static int jw_key(struct jw *w, const uint8_t *p, const struct mp_item *it)
{
    char num[24];
    int err;
    switch (it->type) {
    case MP_STR:
    case MP_BIN:
        return jw_str(w, p + it->hlen, (size_t)it->len);
    case MP_UINT:
    case MP_INT:
        if ((err = JW_LIT(w, "\"")) != 0)
            return err;
        err = jw_put(w, num, it->type == MP_UINT ? fmt_u64(num, it->v.u) : fmt_i64(num, it->v.i));
        return err ? err : JW_LIT(w, "\"");
    default:
        return PHX_ERR_UNSUPPORTED;
    }
}

/* The msgpack value at p[0..n) as JSON; containers may nest depth deep; *used = bytes read.
 * Recursion is bounded by depth (at most PHX_MAX_DEPTH). */
static int jw_value(struct jw *w, const uint8_t *p, size_t n, int depth, size_t *used)
{
    struct mp_item it;
    size_t off, u;
    int err = mp_item(p, n, &it);
    if (err)
        return err;
    if (it.type != MP_ARRAY && it.type != MP_MAP) {
        *used = it.hlen + (size_t)it.len;
        return jw_scalar(w, p, &it);
    }
    if (depth <= 0)
        return PHX_ERR_DEPTH;
    bool map = it.type == MP_MAP;
    if ((err = jw_put(w, map ? "{" : "[", 1)) != 0)
        return err;
    off = it.hlen;
    for (uint64_t i = 0; i < it.len; i++) {
        if (i && (err = JW_LIT(w, ",")) != 0)
            return err;
        if (map) {
            struct mp_item k;
            if ((err = mp_item(p + off, n - off, &k)) != 0)
                return err;
            if (k.type == MP_ARRAY || k.type == MP_MAP)
                return PHX_ERR_UNSUPPORTED;
            if ((err = jw_key(w, p + off, &k)) != 0)
                return err;
            off += k.hlen + (size_t)k.len;
            if ((err = JW_LIT(w, ":")) != 0)
                return err;
        }
        if ((err = jw_value(w, p + off, n - off, depth - 1, &u)) != 0)
            return err;
        off += u;
    }
    *used = off;
    return jw_put(w, map ? "}" : "]", 1);
}

/* One whole msgpack value (nothing after it) as JSON. */
static int jw_whole(struct jw *w, struct span v, int depth)
{
    size_t used;
    if (v.len == 0)
        return PHX_ERR_SYNTAX;
    int err = jw_value(w, (const uint8_t *)v.p, v.len, depth, &used);
    if (err)
        return err;
    return used == v.len ? 0 : PHX_ERR_SYNTAX;
}

static int jw_ref(struct jw *w, const struct span *ref)
{
    if (!ref)
        return JW_LIT(w, "null");
    return jw_str(w, (const uint8_t *)ref->p, ref->len);
}

/* "[join_ref,ref,topic,event," */
static int jw_head(struct jw *w, const struct span *join_ref, const struct span *ref, struct span topic,
                   struct span event)
{
    int err;
    if ((err = JW_LIT(w, "[")) != 0 || (err = jw_ref(w, join_ref)) != 0 || (err = JW_LIT(w, ",")) != 0 ||
        (err = jw_ref(w, ref)) != 0 || (err = JW_LIT(w, ",")) != 0 ||
        (err = jw_str(w, (const uint8_t *)topic.p, topic.len)) != 0 || (err = JW_LIT(w, ",")) != 0 ||
        (err = jw_str(w, (const uint8_t *)event.p, event.len)) != 0)
        return err;
    return JW_LIT(w, ",");
}

/* ---------------------------------------------------------------------------------------------
 * Encoders
 * ------------------------------------------------------------------------------------------- */

static size_t ref_packed_size(const struct span *ref)
{
    return ref ? str_packed_size(ref->len) : 1;
}

static size_t pk_ref(uint8_t *o, const struct span *ref)
{
    if (!ref) {
        o[0] = 0xc0;
        return 1;
    }
    return pk_str(o, ref->p, ref->len);
}

/* msgpack envelope head + tail bytes: reserve head + tail_len, write the head, return where the
 * caller writes the rest. */
static int mp_head(const struct span *join_ref, const struct span *ref, struct span topic, struct span event,
                   size_t tail_len, struct buf *out, size_t limit, uint8_t **o)
{
    size_t a = ref_packed_size(join_ref), b = ref_packed_size(ref);
    size_t c = str_packed_size(topic.len), d = str_packed_size(event.len);
    if (!a || !b || !c || !d)
        return PHX_ERR_UNSUPPORTED;
    size_t total = 1 + a + b + c + d;
    if (tail_len > SIZE_MAX - total)
        return PHX_ERR_TOO_BIG;
    int err = out_reserve(out, total + tail_len, limit);
    if (err)
        return err;
    uint8_t *q = out->p + out->len;
    *q++ = 0x95; /* fixarray of 5: §7 */
    q += pk_ref(q, join_ref);
    q += pk_ref(q, ref);
    q += pk_str(q, topic.p, topic.len);
    q += pk_str(q, event.p, event.len);
    *o = q;
    return 0;
}

int phx_encode(enum phx_format fmt, const struct span *join_ref, const struct span *ref, struct span topic,
               struct span event, struct span payload, struct buf *out, size_t limit)
{
    size_t mark = out->len;
    struct jw w = {out, limit};
    uint8_t *o;
    int err;
    if (fmt == PHX_FMT_MSGPACK) {
        if ((err = phx_mp_validate(payload, PHX_MAX_DEPTH - 1)) != 0)
            return err;
        if ((err = mp_head(join_ref, ref, topic, event, payload.len, out, limit, &o)) != 0)
            return err;
        memcpy(o, payload.p, payload.len);
        out->len = (size_t)(o + payload.len - out->p);
        return 0;
    }
    if ((err = jw_head(&w, join_ref, ref, topic, event)) == 0 &&
        (err = jw_whole(&w, payload, PHX_MAX_DEPTH - 1)) == 0)
        err = JW_LIT(&w, "]");
    if (err)
        out->len = mark;
    return err;
}

int phx_encode_reply(enum phx_format fmt, const struct span *join_ref, const struct span *ref,
                     struct span topic, const char *status, struct span response, struct buf *out,
                     size_t limit)
{
    static const struct span event = SPAN_LIT("phx_reply");
    size_t mark = out->len, slen = strlen(status);
    struct jw w = {out, limit};
    uint8_t *o;
    int err;
    if (fmt == PHX_FMT_MSGPACK) {
        /* {"response": response, "status": status}, key order as Elixir emits it (§7) */
        static const uint8_t key_response[] = "\x82\xa8response";
        static const uint8_t key_status[] = "\xa6status";
        size_t ssz = str_packed_size(slen);
        if (!ssz)
            return PHX_ERR_UNSUPPORTED;
        if ((err = phx_mp_validate(response, PHX_MAX_DEPTH - 2)) != 0)
            return err;
        if (response.len > SIZE_MAX / 2)
            return PHX_ERR_TOO_BIG;
        size_t tail = sizeof(key_response) - 1 + response.len + sizeof(key_status) - 1 + ssz;
        if ((err = mp_head(join_ref, ref, topic, event, tail, out, limit, &o)) != 0)
            return err;
        memcpy(o, key_response, sizeof(key_response) - 1);
        o += sizeof(key_response) - 1;
        memcpy(o, response.p, response.len);
        o += response.len;
        memcpy(o, key_status, sizeof(key_status) - 1);
        o += sizeof(key_status) - 1;
        o += pk_str(o, status, slen);
        out->len = (size_t)(o - out->p);
        return 0;
    }
    if ((err = jw_head(&w, join_ref, ref, topic, event)) == 0 && (err = JW_LIT(&w, "{\"response\":")) == 0 &&
        (err = jw_whole(&w, response, PHX_MAX_DEPTH - 2)) == 0 && (err = JW_LIT(&w, ",\"status\":")) == 0 &&
        (err = jw_str(&w, (const uint8_t *)status, slen)) == 0)
        err = JW_LIT(&w, "}]");
    if (err)
        out->len = mark;
    return err;
}
