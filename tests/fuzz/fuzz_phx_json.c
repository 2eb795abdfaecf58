/* libFuzzer target: phx_decode on arbitrary bytes as a JSON (vsn 2.0.x) message. Every proper
 * prefix of an accepted message must be SYNTAX; an accepted message must re-encode in both
 * formats, re-decode to the same refs/topic/event, and msgpack→msgpack must be a fixed point;
 * JSON output must satisfy jansson and be a fixed point of decode→encode. */
#include <jansson.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phx.h"

#define CHECK(c)                                                                                             \
    do {                                                                                                     \
        if (!(c)) {                                                                                          \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);                            \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

static bool utf8_valid(const uint8_t *s, size_t n)
{
    /* jansson's json_stringn validates UTF-8 (NULs allowed) */
    json_t *v = json_stringn((const char *)s, n);
    bool ok = v != NULL;
    json_decref(v);
    return ok;
}

/* Independent check with msgpack-c: a value we accept (and that fits msgpack-c's 32-level
 * unpack stack) must unpack there too, using exactly the same bytes. msgpack-c is not run on
 * values we reject: it allocates whatever element count a header claims. */
static void check_with_msgpack_c(const char *p, size_t n)
{
    size_t off = 0;
    msgpack_unpacked u;
    if (phx_mp_validate((struct span){p, n}, 32) != 0)
        return;
    msgpack_unpacked_init(&u);
    CHECK(msgpack_unpack_next(&u, p, n, &off) == MSGPACK_UNPACK_SUCCESS && off == n);
    msgpack_unpacked_destroy(&u);
}

static bool span_eq(struct span a, struct span b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static void check_fields(const struct phx_msg *a, const struct phx_msg *b)
{
    CHECK(a->has_join_ref == b->has_join_ref && a->has_ref == b->has_ref);
    CHECK(!a->has_join_ref || span_eq(a->join_ref, b->join_ref));
    CHECK(!a->has_ref || span_eq(a->ref, b->ref));
    CHECK(span_eq(a->topic, b->topic));
    CHECK(span_eq(a->event, b->event));
}

static bool fields_utf8(const struct phx_msg *m)
{
    return (!m->has_join_ref || utf8_valid((const uint8_t *)m->join_ref.p, m->join_ref.len)) &&
           (!m->has_ref || utf8_valid((const uint8_t *)m->ref.p, m->ref.len)) &&
           utf8_valid((const uint8_t *)m->topic.p, m->topic.len) &&
           utf8_valid((const uint8_t *)m->event.p, m->event.len);
}

static int encode(enum phx_format fmt, const struct phx_msg *m, struct buf *b)
{
    b->len = 0;
    return phx_encode(fmt, m->has_join_ref ? &m->join_ref : NULL, m->has_ref ? &m->ref : NULL, m->topic,
                      m->event, m->payload, b, SIZE_MAX);
}

/* Validate with jansson, an independent parser. jansson refuses NUL in object keys even with
 * JSON_ALLOW_NUL, so "u0000" (only ever inside strings here) is turned into "u0001" first. */
static void check_json_text(const struct buf *b)
{
    json_error_t e;
    char *t = malloc(b->len + 1);
    memcpy(t, b->p, b->len);
    for (size_t i = 0; i + 5 <= b->len; i++)
        if (memcmp(t + i, "u0000", 5) == 0)
            t[i + 4] = '1';
    json_t *v = json_loadb(t, b->len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &e);
    if (!v) {
        fprintf(stderr, "jansson: %s: %.*s\n", e.text, (int)b->len, t);
        abort();
    }
    CHECK(json_is_array(v) && json_array_size(v) == 5);
    json_decref(v);
    free(t);
}

static bool all_ws(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r')
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct phx_msg m, m2, m3;
    struct buf bm = BUF_INIT, bj = BUF_INIT, tmp = BUF_INIT;
    int rc = phx_decode(PHX_FMT_JSON, data, size, &m);
    if (rc) {
        CHECK(rc == PHX_ERR_SYNTAX || rc == PHX_ERR_SHAPE || rc == PHX_ERR_DEPTH ||
              rc == PHX_ERR_UNSUPPORTED || rc == PHX_ERR_NOMEM);
        CHECK(m.owned_ == NULL);
        return 0;
    }
    /* split in two at a byte derived from the input: the first part alone is incomplete */
    size_t k = (size_t)data[size / 2] * 257 % size;
    if (!all_ws(data + k, size - k)) {
        uint8_t *head = malloc(k ? k : 1);
        memcpy(head, data, k);
        /* UNSUPPORTED when the cut turns "1…1e3" into an over-long integer */
        rc = phx_decode(PHX_FMT_JSON, head, k, &m2);
        CHECK(rc == PHX_ERR_SYNTAX || rc == PHX_ERR_UNSUPPORTED);
        free(head);
    }
    CHECK(phx_mp_validate(m.payload, PHX_MAX_DEPTH - 1) == 0);
    check_with_msgpack_c(m.payload.p, m.payload.len);

    /* msgpack: decode(encode(m)) has the same fields and the very same payload bytes */
    CHECK(encode(PHX_FMT_MSGPACK, &m, &bm) == 0);
    CHECK(phx_decode(PHX_FMT_MSGPACK, bm.p, bm.len, &m2) == 0);
    check_fields(&m, &m2);
    CHECK(span_eq(m.payload, m2.payload));
    CHECK(encode(PHX_FMT_MSGPACK, &m2, &tmp) == 0);
    CHECK(tmp.len == bm.len && memcmp(tmp.p, bm.p, bm.len) == 0);

    /* JSON: valid text; decode→encode is a fixed point */
    CHECK(encode(PHX_FMT_JSON, &m, &bj) == 0);
    check_json_text(&bj);
    CHECK(encode(PHX_FMT_JSON, &m2, &tmp) == 0);
    CHECK(tmp.len == bj.len && memcmp(tmp.p, bj.p, bj.len) == 0);
    CHECK(phx_decode(PHX_FMT_JSON, bj.p, bj.len, &m3) == 0);
    CHECK(encode(PHX_FMT_JSON, &m3, &tmp) == 0);
    CHECK(tmp.len == bj.len && memcmp(tmp.p, bj.p, bj.len) == 0);
    if (utf8_valid(data, size)) {
        /* nothing was replaced, so nothing may change at all */
        check_fields(&m, &m3);
        CHECK(span_eq(m.payload, m3.payload));
    } else if (fields_utf8(&m)) {
        check_fields(&m, &m3);
    }

    /* replies wrap the payload one level deeper */
    rc = phx_encode_reply(PHX_FMT_JSON, NULL, m.has_ref ? &m.ref : NULL, m.topic, "ok", m.payload, &tmp,
                          SIZE_MAX);
    CHECK(rc == 0 || rc == PHX_ERR_DEPTH);
    rc = phx_encode_reply(PHX_FMT_MSGPACK, NULL, m.has_ref ? &m.ref : NULL, m.topic, "ok", m.payload, &tmp,
                          SIZE_MAX);
    CHECK(rc == 0 || rc == PHX_ERR_DEPTH);

    /* lookups never read outside the payload */
    struct span v, s;
    char key[8];
    size_t kl = size < sizeof(key) - 1 ? size : sizeof(key) - 1;
    memcpy(key, data + size - kl, kl);
    key[kl] = '\0';
    if (phx_mp_map_get(m.payload, key, &v))
        (void)phx_mp_get_str(v, &s);
    (void)phx_mp_map_get(m.payload, "status", &v);

    phx_msg_free(&m);
    phx_msg_free(&m2);
    phx_msg_free(&m3);
    buf_free(&bm);
    buf_free(&bj);
    buf_free(&tmp);
    return 0;
}
