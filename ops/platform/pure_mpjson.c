/* msgpack → JSON (pure_mpjson.h), on msgpack-c's unpacker. */
#include "pure_mpjson.h"

#include <msgpack.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lp.h"

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static json_t *bin_to_b64(const uint8_t *p, size_t n)
{
    size_t out_n = 4 * ((n + 2) / 3);
    char *s = malloc(out_n + 1);
    if (!s)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        s[k++] = b64[v >> 18 & 63];
        s[k++] = b64[v >> 12 & 63];
        s[k++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        s[k++] = i + 2 < n ? b64[v & 63] : '=';
    }
    json_t *j = json_stringn(s, k);
    free(s);
    return j;
}

/* msgpack timestamp extension (type -1): 4, 8 or 12 bytes. */
static json_t *timestamp(const char *p, uint32_t n)
{
    const uint8_t *b = (const uint8_t *)p;
    int64_t sec;
    uint32_t nsec = 0;
    if (n == 4) {
        sec = (int64_t)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]);
    } else if (n == 8) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
            v = v << 8 | b[i];
        nsec = (uint32_t)(v >> 34);
        sec = (int64_t)(v & 0x3ffffffffull);
    } else if (n == 12) {
        nsec = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        uint64_t v = 0;
        for (int i = 4; i < 12; i++)
            v = v << 8 | b[i];
        sec = (int64_t)v;
    } else {
        return json_null();
    }
    time_t t = (time_t)sec;
    struct tm tm;
    if (!gmtime_r(&t, &tm))
        return json_null();
    char buf[64];
    snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, nsec / 1000);
    return json_string(buf);
}

static json_t *conv(const msgpack_object *o, int depth)
{
    if (depth > MPJ_MAX_DEPTH)
        return NULL;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return json_integer(o->via.u64 > INT64_MAX ? INT64_MAX : (json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer(o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR: {
        json_t *s = json_stringn(o->via.str.ptr, o->via.str.size);
        return s ? s : json_null();
    }
    case MSGPACK_OBJECT_BIN:
        return bin_to_b64((const uint8_t *)o->via.bin.ptr, o->via.bin.size);
    case MSGPACK_OBJECT_EXT:
        return o->via.ext.type == -1 ? timestamp(o->via.ext.ptr, o->via.ext.size) : json_null();
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; a && i < o->via.array.size; i++) {
            json_t *e = conv(&o->via.array.ptr[i], depth + 1);
            if (!e || json_array_append_new(a, e) < 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        json_t *m = json_object();
        for (uint32_t i = 0; m && i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR)
                continue;
            json_t *v = conv(&kv->val, depth + 1);
            if (!v) {
                json_decref(m);
                return NULL;
            }
            /* json_object_setn_new rejects invalid UTF-8 keys: skip those */
            json_object_setn_new(m, kv->key.via.str.ptr, kv->key.via.str.size, v);
        }
        return m;
    }
    }
    return NULL;
}

json_t *mpj_to_json(const uint8_t *p, size_t n)
{
    if (lp_mp_object_len(p, n) != n)
        return NULL;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    json_t *j = NULL;
    if (msgpack_unpack_next(&u, (const char *)p, n, &off) == MSGPACK_UNPACK_SUCCESS && off == n)
        j = conv(&u.data, 0);
    msgpack_unpacked_destroy(&u);
    return j;
}
