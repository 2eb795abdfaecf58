/* Helpers shared by the two Phoenix codec fuzz targets (JSON and msgpack input): cross-checks
 * with jansson and msgpack-c and field comparisons. Included by exactly those two files. */
#ifndef NHGW_FUZZ_PHX_COMMON_H
#define NHGW_FUZZ_PHX_COMMON_H

#include <jansson.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "phx.h"

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

#endif
