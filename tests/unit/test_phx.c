/* Unit tests for gateway/phx.c through its public API: device-protocol.md §7/§8 examples in both
 * formats, every error class, truncation at every length against a guard page, depth and size
 * limits at max and max+1, number/string/ext conversions. JSON output is cross-checked with
 * jansson and msgpack with msgpack-c (independent implementations). */
#include "../lib/test.h"

#include <jansson.h>
#include <msgpack.h>
#include <time.h>

#include "phx.h"

#define NOLIMIT SIZE_MAX

static const char HB_MP[] = "95 c0 a1 37 a7 70686f656e6978 a9 686561727462656174 80";
static const char HB_REPLY_MP[] = "95 c0 a1 37 a7 70686f656e6978 a9 7068785f7265706c79 82 a8 "
                                  "726573706f6e7365 80 a6 737461747573 a2 6f6b";

/* The §8 example frames, compact (as Phoenix V2 JSON emits them). */
static const char *const SECTION8[] = {
    "[\"1\",\"1\",\"device\",\"phx_join\",{\"nerves_fw_uuid\":\"8a8b902c-d1a9-58aa-6111-04ab57c2f2a8\","
    "\"nerves_fw_product\":\"my_product\",\"nerves_fw_version\":\"1.0.0\",\"nerves_fw_architecture\":\"arm\","
    "\"nerves_fw_platform\":\"rpi4\",\"nerves_fw_author\":\"ACME\",\"nerves_fw_description\":\"\","
    "\"nerves_fw_vcs_identifier\":\"\",\"nerves_fw_misc\":\"\",\"fwup_version\":\"1.10.2\","
    "\"device_api_version\":\"2.3.0\",\"console_version\":\"2.0.0\",\"currently_downloading_uuid\":null,"
    "\"meta\":{\"firmware_auto_revert_detected\":false,\"firmware_validated\":true},"
    "\"fwup_public_keys\":\"on_connect\",\"archive_public_keys\":\"on_connect\"}]",
    "[\"2\",\"2\",\"console\",\"phx_join\",{\"console_version\":\"2.0.0\",\"device_api_version\":\"2.3.0\"}]",
    "[\"1\",\"1\",\"device\",\"phx_reply\",{\"response\":{},\"status\":\"ok\"}]",
    "[null,null,\"device\",\"fwup_public_keys\",{\"keys\":[\"Zm9vYmFyRXhhbXBsZUtleUJhc2U2NC4uLg==\"]}]",
    "[null,null,\"device\",\"archive_public_keys\",{\"keys\":[\"Zm9vYmFyRXhhbXBsZUtleUJhc2U2NC4uLg==\"]}]",
    "[null,null,\"device\",\"extensions:get\",{}]",
    "[\"2\",\"2\",\"console\",\"phx_reply\",{\"response\":{},\"status\":\"ok\"}]",
    "[\"1\",\"3\",\"device\",\"report_network_interface\",{\"interface\":\"eth0\"}]",
    "[\"4\",\"4\",\"extensions\",\"phx_join\",{\"geo\":\"0.0.1\",\"health\":\"0.0.1\",\"network_identity\":"
    "\"0.0.1\"}]",
    "[\"4\",\"4\",\"extensions\",\"phx_reply\",{\"response\":[\"geo\",\"health\"],\"status\":\"ok\"}]",
    "[\"4\",\"5\",\"extensions\",\"geo:attached\",{}]",
    "[\"4\",null,\"extensions\",\"geo:location:request\",{}]",
    "[\"4\",\"6\",\"extensions\",\"health:attached\",{}]",
    "[\"4\",null,\"extensions\",\"health:check\",{}]",
    "[\"4\",\"7\",\"extensions\",\"geo:location:update\",{\"latitude\":-41.29,\"longitude\":174.78,"
    "\"source\":\"geoip\"}]",
    "[\"4\",\"8\",\"extensions\",\"health:report\",{\"value\":{\"timestamp\":\"2026-08-22T10:00:00.000000Z\","
    "\"metadata\":{},\"alarms\":{},\"metrics\":{\"cpu_temp\":48.3},\"checks\":{},\"connectivity\":{}}}]",
    "[\"4\",\"9\",\"extensions\",\"network_identity:attached\",{}]",
    "[\"4\",\"9\",\"extensions\",\"phx_reply\",{\"response\":\"detach\",\"status\":\"error\"}]",
    "[\"4\",\"10\",\"extensions\",\"network_identity:detached\",{}]",
    "[null,\"11\",\"phoenix\",\"heartbeat\",{}]",
    "[null,\"11\",\"phoenix\",\"phx_reply\",{\"response\":{},\"status\":\"ok\"}]",
    "[null,null,\"device\",\"update\",{\"update_available\":true,"
    "\"firmware_url\":\"https://bucket.s3.amazonaws.com/firmware/abc.fw?X-Amz-Signature=...\","
    "\"firmware_meta\":{\"architecture\":\"arm\",\"author\":\"ACME\",\"description\":\"\",\"misc\":null,"
    "\"platform\":\"rpi4\",\"product\":\"my_product\",\"uuid\":\"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\","
    "\"vcs_identifier\":null,\"version\":\"1.1.0\"},"
    "\"size\":41943040,\"checksum\":\"9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08\","
    "\"partials_checksums\":[\"\xe2\x80\xa6"
    "40 entries\xe2\x80\xa6\"],\"deployment_id\":42}]",
    "[\"1\",\"12\",\"device\",\"status_update\",{\"status\":\"received\"}]",
    "[\"1\",\"13\",\"device\",\"status_update\",{\"downloader_network_interface\":\"eth0\",\"status\":"
    "\"started\"}]",
    "[\"1\",\"14\",\"device\",\"fwup_progress\",{\"stage\":\"updating\",\"value\":0}]",
    "[\"1\",\"15\",\"device\",\"fwup_progress\",{\"stage\":\"updating\",\"value\":57}]",
    "[\"1\",\"16\",\"device\",\"fwup_progress\",{\"stage\":\"updating\",\"value\":100}]",
    "[\"1\",\"17\",\"device\",\"status_update\",{\"status\":\"completed\"}]",
    "[\"2\",null,\"console\",\"window_size\",{\"height\":40,\"width\":120}]",
    "[\"2\",null,\"console\",\"dn\",{\"data\":\"h\"}]",
    "[\"2\",\"18\",\"console\",\"up\",{\"data\":\"h\"}]",
    "[\"2\",null,\"console\",\"dn\",{\"data\":\"\\r\"}]",
    "[\"2\",\"19\",\"console\",\"up\",{\"data\":\"\\r\\niex(1)> \"}]",
    "[\"2\",\"20\",\"console\",\"phx_leave\",{}]",
    "[\"2\",\"20\",\"console\",\"phx_reply\",{\"response\":{},\"status\":\"ok\"}]",
    "[\"2\",\"2\",\"console\",\"phx_close\",{}]",
};

/* ---- helpers ---- */

/* test_guard_copy, usable for n == 0 too (test_guard_free cannot free a zero-length copy):
 * copy one extra leading byte and return the bytes after it, which still end at the guard. */
static uint8_t *gcopy(const void *data, size_t n)
{
    uint8_t *tmp = malloc(n + 1);
    tmp[0] = 0;
    if (n)
        memcpy(tmp + 1, data, n);
    uint8_t *g = test_guard_copy(tmp, n + 1);
    free(tmp);
    return g + 1;
}

static void gfree(uint8_t *p)
{
    test_guard_free(p - 1);
}

static uint8_t *unhex(const char *hex, size_t *n)
{
    return test_unhex(hex, n);
}

static int decode_str(enum phx_format fmt, const char *s, size_t n, struct phx_msg *m)
{
    /* always against a guard page so any over-read faults */
    uint8_t *g = gcopy(s, n);
    int rc = phx_decode(fmt, g, n, m);
    if (rc == 0) {
        /* spans may point into g; keep the message usable by decoding from a heap copy */
        phx_msg_free(m);
        uint8_t *h = malloc(n);
        memcpy(h, s, n);
        rc = phx_decode(fmt, h, n, m);
        ASSERT_EQ(rc, 0);
        /* h is leaked on purpose: tests are short-lived children */
    }
    gfree(g);
    return rc;
}

static int decode_json(const char *s, struct phx_msg *m)
{
    return decode_str(PHX_FMT_JSON, s, strlen(s), m);
}

static int decode_hex(const char *hex, struct phx_msg *m)
{
    size_t n;
    uint8_t *b = unhex(hex, &n);
    return decode_str(PHX_FMT_MSGPACK, (const char *)b, n, m);
}

static void assert_span(struct span s, const char *want)
{
    ASSERT_MEM_EQ(s.p, s.len, want, strlen(want));
}

/* Check JSON text with jansson and that it is valid UTF-8 (jansson checks that too). */
static void assert_valid_json(const char *s, size_t n)
{
    json_error_t e;
    json_t *v = json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &e);
    if (!v)
        TEST_FAIL("jansson rejects %.*s: %s", (int)n, s, e.text);
    json_decref(v);
}

/* Re-encode a decoded message in fmt; returns a NUL-terminated malloc'd copy. */
static char *encode_msg(enum phx_format fmt, const struct phx_msg *m, size_t *len)
{
    struct buf b = BUF_INIT;
    int rc = phx_encode(fmt, m->has_join_ref ? &m->join_ref : NULL, m->has_ref ? &m->ref : NULL, m->topic,
                        m->event, m->payload, &b, NOLIMIT);
    ASSERT_EQ(rc, 0);
    char *s = malloc(b.len + 1);
    memcpy(s, b.p, b.len);
    s[b.len] = '\0';
    *len = b.len;
    buf_free(&b);
    if (fmt == PHX_FMT_JSON)
        assert_valid_json(s, *len);
    return s;
}

/* JSON payload text → msgpack payload bytes (malloc'd), or the decode error. */
static int json_to_mp(const char *payload_json, uint8_t **out, size_t *n)
{
    char *msg = malloc(strlen(payload_json) + 32);
    sprintf(msg, "[null,null,\"t\",\"e\",%s]", payload_json);
    struct phx_msg m;
    int rc = decode_json(msg, &m);
    free(msg);
    if (rc)
        return rc;
    *n = m.payload.len;
    *out = malloc(*n);
    memcpy(*out, m.payload.p, *n);
    phx_msg_free(&m);
    return 0;
}

/* msgpack payload bytes → the payload's JSON text (malloc'd), or NULL with *rc set. */
static char *mp_to_json(const uint8_t *p, size_t n, int *rc)
{
    struct buf b = BUF_INIT;
    *rc = phx_encode(PHX_FMT_JSON, NULL, NULL, SPAN_LIT("t"), SPAN_LIT("e"),
                     (struct span){(const char *)p, n}, &b, NOLIMIT);
    if (*rc) {
        ASSERT_EQ(b.len, 0);
        buf_free(&b);
        return NULL;
    }
    static const char head[] = "[null,null,\"t\",\"e\",";
    ASSERT(b.len >= sizeof(head));
    ASSERT(memcmp(b.p, head, sizeof(head) - 1) == 0);
    ASSERT_EQ(b.p[b.len - 1], ']');
    assert_valid_json((const char *)b.p, b.len);
    size_t k = b.len - sizeof(head);
    char *s = malloc(k + 1);
    memcpy(s, b.p + sizeof(head) - 1, k);
    s[k] = '\0';
    buf_free(&b);
    return s;
}

static char *mp_hex_to_json(const char *hex, int *rc)
{
    size_t n;
    uint8_t *b = unhex(hex, &n);
    char *s = mp_to_json(b, n, rc);
    free(b);
    return s;
}

static void assert_json_payload_mp(const char *json, const char *hex)
{
    uint8_t *got, *want;
    size_t ng, nw;
    int rc = json_to_mp(json, &got, &ng);
    if (rc)
        TEST_FAIL("%s: decode error %d", json, rc);
    want = unhex(hex, &nw);
    if (ng != nw || memcmp(got, want, ng) != 0) {
        fprintf(stderr, "  %s →", json);
        for (size_t i = 0; i < ng; i++)
            fprintf(stderr, " %02x", got[i]);
        fprintf(stderr, "\n  want %s\n", hex);
        TEST_FAIL("msgpack mismatch");
    }
    free(got);
    free(want);
}

static void assert_mp_json(const char *hex, const char *want)
{
    int rc;
    char *s = mp_hex_to_json(hex, &rc);
    if (!s)
        TEST_FAIL("%s: encode error %d", hex, rc);
    ASSERT_STR_EQ(s, want);
    free(s);
}

static void assert_json_roundtrip(const char *json, const char *want)
{
    uint8_t *mp;
    size_t n;
    int rc = json_to_mp(json, &mp, &n);
    if (rc)
        TEST_FAIL("%s: decode error %d", json, rc);
    char *s = mp_to_json(mp, n, &rc);
    if (!s)
        TEST_FAIL("%s: encode error %d", json, rc);
    ASSERT_STR_EQ(s, want ? want : json);
    free(s);
    free(mp);
}

/* ---- §7 / §8 examples ---- */

TEST(phx_heartbeat_msgpack)
{
    struct phx_msg m;
    size_t n, rn;
    ASSERT_EQ(decode_hex(HB_MP, &m), 0);
    ASSERT(!m.has_join_ref);
    ASSERT(m.has_ref);
    assert_span(m.ref, "7");
    assert_span(m.topic, "phoenix");
    assert_span(m.event, "heartbeat");
    ASSERT_MEM_EQ(m.payload.p, m.payload.len, "\x80", 1);

    /* the message re-encodes byte for byte */
    uint8_t *in = unhex(HB_MP, &n);
    char *again = encode_msg(PHX_FMT_MSGPACK, &m, &rn);
    ASSERT_MEM_EQ(again, rn, in, n);

    /* and the reply matches §7 byte for byte */
    struct buf b = BUF_INIT;
    ASSERT_EQ(phx_encode_reply(PHX_FMT_MSGPACK, NULL, &m.ref, m.topic, "ok", PHX_MP_EMPTY_MAP, &b, NOLIMIT),
              0);
    uint8_t *want = unhex(HB_REPLY_MP, &rn);
    ASSERT_MEM_EQ(b.p, b.len, want, rn);

    /* the reply decodes to the right fields */
    struct phx_msg r;
    struct span v, s;
    ASSERT_EQ(phx_decode(PHX_FMT_MSGPACK, b.p, b.len, &r), 0);
    assert_span(r.event, "phx_reply");
    ASSERT(phx_mp_map_get(r.payload, "status", &v));
    ASSERT(phx_mp_get_str(v, &s));
    assert_span(s, "ok");
    ASSERT(phx_mp_map_get(r.payload, "response", &v));
    ASSERT_MEM_EQ(v.p, v.len, "\x80", 1);
    phx_msg_free(&r);
    phx_msg_free(&m);
    buf_free(&b);
    free(in);
    free(want);
    free(again);
}

TEST(phx_heartbeat_json)
{
    struct phx_msg m;
    ASSERT_EQ(decode_json("[null,\"11\",\"phoenix\",\"heartbeat\",{}]", &m), 0);
    ASSERT(!m.has_join_ref);
    assert_span(m.ref, "11");
    assert_span(m.topic, "phoenix");
    assert_span(m.event, "heartbeat");
    ASSERT_MEM_EQ(m.payload.p, m.payload.len, "\x80", 1);
    struct buf b = BUF_INIT;
    ASSERT_EQ(phx_encode_reply(PHX_FMT_JSON, NULL, &m.ref, m.topic, "ok", PHX_MP_EMPTY_MAP, &b, NOLIMIT), 0);
    const char *want = "[null,\"11\",\"phoenix\",\"phx_reply\",{\"response\":{},\"status\":\"ok\"}]";
    ASSERT_MEM_EQ(b.p, b.len, want, strlen(want));
    phx_msg_free(&m);
    buf_free(&b);
}

TEST(phx_section8_frames_both_formats)
{
    for (size_t i = 0; i < ARRAY_SIZE(SECTION8); i++) {
        struct phx_msg m, mm;
        size_t jn, mn, jn2, mn2;
        if (decode_json(SECTION8[i], &m) != 0)
            TEST_FAIL("frame %zu does not decode", i);
        /* JSON → JSON is byte exact for Phoenix-shaped compact frames */
        char *j = encode_msg(PHX_FMT_JSON, &m, &jn);
        ASSERT_MEM_EQ(j, jn, SECTION8[i], strlen(SECTION8[i]));
        /* JSON → msgpack → JSON too, and msgpack → msgpack is a fixed point */
        char *mp = encode_msg(PHX_FMT_MSGPACK, &m, &mn);
        ASSERT_EQ(decode_str(PHX_FMT_MSGPACK, mp, mn, &mm), 0);
        ASSERT_EQ(mm.has_join_ref, m.has_join_ref);
        ASSERT_EQ(mm.has_ref, m.has_ref);
        if (m.has_join_ref)
            ASSERT_MEM_EQ(mm.join_ref.p, mm.join_ref.len, m.join_ref.p, m.join_ref.len);
        if (m.has_ref)
            ASSERT_MEM_EQ(mm.ref.p, mm.ref.len, m.ref.p, m.ref.len);
        ASSERT_MEM_EQ(mm.topic.p, mm.topic.len, m.topic.p, m.topic.len);
        ASSERT_MEM_EQ(mm.event.p, mm.event.len, m.event.p, m.event.len);
        ASSERT_MEM_EQ(mm.payload.p, mm.payload.len, m.payload.p, m.payload.len);
        char *j2 = encode_msg(PHX_FMT_JSON, &mm, &jn2);
        ASSERT_MEM_EQ(j2, jn2, SECTION8[i], strlen(SECTION8[i]));
        char *mp2 = encode_msg(PHX_FMT_MSGPACK, &mm, &mn2);
        ASSERT_MEM_EQ(mp2, mn2, mp, mn);
        free(j);
        free(j2);
        free(mp);
        free(mp2);
        phx_msg_free(&m);
        phx_msg_free(&mm);
    }
}

TEST(phx_join_payload_fields)
{
    struct phx_msg m;
    struct span v, s, meta;
    ASSERT_EQ(decode_json(SECTION8[0], &m), 0);
    assert_span(m.join_ref, "1");
    assert_span(m.ref, "1");
    assert_span(m.topic, "device");
    assert_span(m.event, "phx_join");
    ASSERT(phx_mp_map_get(m.payload, "nerves_fw_uuid", &v));
    ASSERT(phx_mp_get_str(v, &s));
    assert_span(s, "8a8b902c-d1a9-58aa-6111-04ab57c2f2a8");
    ASSERT(phx_mp_map_get(m.payload, "device_api_version", &v));
    ASSERT(phx_mp_get_str(v, &s));
    assert_span(s, "2.3.0");
    ASSERT(phx_mp_map_get(m.payload, "nerves_fw_description", &v));
    ASSERT(phx_mp_get_str(v, &s));
    ASSERT_EQ(s.len, 0);
    ASSERT(phx_mp_map_get(m.payload, "currently_downloading_uuid", &v));
    ASSERT(phx_mp_is_nil(v));
    ASSERT(!phx_mp_get_str(v, &s));
    ASSERT(phx_mp_map_get(m.payload, "meta", &meta));
    ASSERT(phx_mp_map_get(meta, "firmware_validated", &v));
    ASSERT_MEM_EQ(v.p, v.len, "\xc3", 1);
    ASSERT(phx_mp_map_get(meta, "firmware_auto_revert_detected", &v));
    ASSERT_MEM_EQ(v.p, v.len, "\xc2", 1);
    ASSERT(!phx_mp_map_get(m.payload, "update_tool", &v));
    ASSERT(!phx_mp_map_get(m.payload, "nerves_fw", &v));
    ASSERT(!phx_mp_map_get(m.topic, "x", &v));
    phx_msg_free(&m);
}

/* ---- refs ---- */

TEST(phx_int_refs_msgpack)
{
    static const struct {
        const char *hex;
        const char *jr, *r;
    } cases[] = {
        {"95 01 02 a1 74 a1 65 80", "1", "2"},
        {"95 00 7f a1 74 a1 65 80", "0", "127"},
        {"95 ff e0 a1 74 a1 65 80", "-1", "-32"},
        {"95 cc ff cd ffff a1 74 a1 65 80", "255", "65535"},
        {"95 ce ffffffff cf ffffffffffffffff a1 74 a1 65 80", "4294967295", "18446744073709551615"},
        {"95 d0 80 d1 8000 a1 74 a1 65 80", "-128", "-32768"},
        {"95 d2 80000000 d3 8000000000000000 a1 74 a1 65 80", "-2147483648", "-9223372036854775808"},
        {"95 d3 7fffffffffffffff d0 05 a1 74 a1 65 80", "9223372036854775807", "5"},
        {"95 c4 02 3132 d9 01 33 a1 74 a1 65 80", "12", "3"}, /* bin and str8 */
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct phx_msg m;
        ASSERT_EQ(decode_hex(cases[i].hex, &m), 0);
        ASSERT(m.has_join_ref && m.has_ref);
        assert_span(m.join_ref, cases[i].jr);
        assert_span(m.ref, cases[i].r);
        /* echoed back as strings */
        size_t n;
        char *j = encode_msg(PHX_FMT_JSON, &m, &n);
        char want[128];
        snprintf(want, sizeof(want), "[\"%s\",\"%s\",\"t\",\"e\",{}]", cases[i].jr, cases[i].r);
        ASSERT_STR_EQ(j, want);
        free(j);
        phx_msg_free(&m);
    }
}

TEST(phx_int_refs_json)
{
    static const struct {
        const char *json;
        const char *jr, *r;
    } cases[] = {
        {"[1,2,\"t\",\"e\",{}]", "1", "2"},
        {"[-5,0,\"t\",\"e\",{}]", "-5", "0"},
        {"[-0,18446744073709551615,\"t\",\"e\",{}]", "0", "18446744073709551615"},
        {"[-9223372036854775808,9223372036854775807,\"t\",\"e\",{}]", "-9223372036854775808",
         "9223372036854775807"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct phx_msg m;
        ASSERT_EQ(decode_json(cases[i].json, &m), 0);
        assert_span(m.join_ref, cases[i].jr);
        assert_span(m.ref, cases[i].r);
        phx_msg_free(&m);
    }
    struct phx_msg m;
    ASSERT_EQ(decode_json("[18446744073709551616,null,\"t\",\"e\",{}]", &m), PHX_ERR_UNSUPPORTED);
    ASSERT_EQ(decode_json("[-9223372036854775809,null,\"t\",\"e\",{}]", &m), PHX_ERR_UNSUPPORTED);
}

TEST(phx_null_and_empty_refs)
{
    struct phx_msg m;
    ASSERT_EQ(decode_json("[null,null,\"t\",\"e\",{}]", &m), 0);
    ASSERT(!m.has_join_ref && !m.has_ref);
    ASSERT_EQ(m.join_ref.len, 0);
    phx_msg_free(&m);
    ASSERT_EQ(decode_json("[\"\",\"\",\"\",\"\",null]", &m), 0);
    ASSERT(m.has_join_ref && m.has_ref);
    ASSERT_EQ(m.join_ref.len + m.ref.len + m.topic.len + m.event.len, 0);
    ASSERT_MEM_EQ(m.payload.p, m.payload.len, "\xc0", 1);
    phx_msg_free(&m);
    ASSERT_EQ(decode_hex("95 c0 c0 a0 c4 00 c0", &m), 0);
    ASSERT(!m.has_join_ref && !m.has_ref);
    ASSERT_EQ(m.topic.len + m.event.len, 0);
    phx_msg_free(&m);
    phx_msg_free(&m); /* double free of a freed message is harmless */
    phx_msg_free(NULL);
}

/* ---- errors ---- */

TEST(phx_shape_errors_msgpack)
{
    static const char *const cases[] = {
        "80",        /* map, not array */
        "a3 616263", /* str */
        "01",
        "c0",
        "c3",                                       /* scalars */
        "90",                                       /* [] */
        "94 c0 c0 a1 74 a1 65",                     /* 4 elements */
        "96 c0 c0 a1 74 a1 65 80 80",               /* 6 elements */
        "dc 0004 c0 c0 a1 74 a1 65",                /* array16 of 4 */
        "95 c0 c0 01 a1 65 80",                     /* topic int */
        "95 c0 c0 c0 a1 65 80",                     /* topic nil */
        "95 c0 c0 a1 74 80 80",                     /* event map */
        "95 c0 c0 a1 74 d6ff00000000 80",           /* event ext */
        "95 cb 3ff0000000000000 c0 a1 74 a1 65 80", /* join_ref float */
        "95 c0 ca 3f800000 a1 74 a1 65 80",         /* ref float32 */
        "95 c3 c0 a1 74 a1 65 80",                  /* join_ref bool */
        "95 c0 c2 a1 74 a1 65 80",                  /* ref bool */
        "95 90 c0 a1 74 a1 65 80",                  /* join_ref array */
        "95 c0 80 a1 74 a1 65 80",                  /* ref map */
        "95 c0 d4 01 00 a1 74 a1 65 80",            /* ref ext */
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct phx_msg m;
        int rc = decode_hex(cases[i], &m);
        if (rc != PHX_ERR_SHAPE)
            TEST_FAIL("case %zu (%s): %d", i, cases[i], rc);
        ASSERT(m.owned_ == NULL);
    }
}

TEST(phx_shape_errors_json)
{
    static const char *const cases[] = {
        "{}",
        "{\"a\":[null,null,\"t\",\"e\",{}]}",
        "\"x\"",
        "1",
        "null",
        "true",
        "[]",
        "[null,null,\"t\",\"e\"]",
        "[null,null,\"t\",\"e\",{},{}]",
        "[null,null,1,\"e\",{}]",
        "[null,null,null,\"e\",{}]",
        "[null,null,\"t\",[],{}]",
        "[null,null,\"t\",{},{}]",
        "[1.0,null,\"t\",\"e\",{}]",
        "[null,1e3,\"t\",\"e\",{}]",
        "[true,null,\"t\",\"e\",{}]",
        "[null,false,\"t\",\"e\",{}]",
        "[[],null,\"t\",\"e\",{}]",
        "[null,{},\"t\",\"e\",{}]",
        "[null,[\"1\"],\"t\",\"e\",{}]",
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct phx_msg m;
        int rc = decode_json(cases[i], &m);
        if (rc != PHX_ERR_SHAPE)
            TEST_FAIL("case %zu (%s): %d", i, cases[i], rc);
        ASSERT(m.owned_ == NULL);
    }
}

TEST(phx_syntax_errors_msgpack)
{
    static const char *const cases[] = {
        "c1",                                  /* never used */
        "95 c0 c0 a1 74 a1 65 c1",             /* c1 as payload */
        "95 c0 c0 a1 74 a1 65 80 00",          /* trailing byte */
        "95 c0 c0 a1 74 a1 65 80 80",          /* trailing value */
        "95 c0 c0 a1 74 a1 65",                /* 4 of 5 present */
        "95 c0 c0 a1 74 a1 65 81 a1 61",       /* map value missing */
        "95 c0 c0 a5 74 a1 65 80",             /* str longer than the rest */
        "95 c0 c0 a1 74 a1 65 dd ffffffff",    /* huge array count */
        "95 c0 c0 a1 74 a1 65 db ffffffff 00", /* huge str */
        "95 c0 c0 a1 74 a1 65 c9 ffffffff 01", /* huge ext */
        "95 c0 c0 a1 74 a1 65 c6 00000002 00", /* short bin */
        "95 c0 c0 a1 74 a1 65 cb 00",          /* short float */
        "95 c0 c0 a1 74 a1 65 d8 ff 00",       /* short fixext16 */
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct phx_msg m;
        int rc = decode_hex(cases[i], &m);
        if (rc != PHX_ERR_SYNTAX)
            TEST_FAIL("case %zu (%s): %d", i, cases[i], rc);
    }
    struct phx_msg m;
    ASSERT_EQ(phx_decode(PHX_FMT_MSGPACK, NULL, 0, &m), PHX_ERR_SYNTAX);
    ASSERT_EQ(phx_decode(PHX_FMT_JSON, NULL, 0, &m), PHX_ERR_SYNTAX);
}

TEST(phx_syntax_errors_json)
{
    static const char *const cases[] = {
        "",
        " ",
        "[",
        "]",
        "[null,null,\"t\",\"e\",{}",
        "[null,null,\"t\",\"e\",{}]]",
        "[null,null,\"t\",\"e\",{}] x",
        "[null,null,\"t\",\"e\",{}][]",
        "[null,null,\"t\",\"e\",{},]",
        "[,null,null,\"t\",\"e\",{}]",
        "[null null,\"t\",\"e\",{}]",
        "[nul,null,\"t\",\"e\",{}]",
        "[NULL,null,\"t\",\"e\",{}]",
        "[null,null,'t',\"e\",{}]",
        "[null,null,\"t,\"e\",{}]",
        "[null,null,\"t\",\"e\",{\"a\"}]",
        "[null,null,\"t\",\"e\",{\"a\":}]",
        "[null,null,\"t\",\"e\",{a:1}]",
        "[null,null,\"t\",\"e\",{\"a\":1,}]",
        "[null,null,\"t\",\"e\",{\"a\" 1}]",
        "[null,null,\"t\",\"e\",{\"a\":1 \"b\":2}]",
        "[01,null,\"t\",\"e\",{}]",
        "[+1,null,\"t\",\"e\",{}]",
        "[1.,null,\"t\",\"e\",{}]",
        "[.5,null,\"t\",\"e\",{}]",
        "[1e,null,\"t\",\"e\",{}]",
        "[1e+,null,\"t\",\"e\",{}]",
        "[-,null,\"t\",\"e\",{}]",
        "[--1,null,\"t\",\"e\",{}]",
        "[0x1,null,\"t\",\"e\",{}]",
        "[NaN,null,\"t\",\"e\",{}]",
        "[Infinity,null,\"t\",\"e\",{}]",
        "[1a,null,\"t\",\"e\",{}]",
        "[null,null,\"t\",\"e\",\"\\x\"]",
        "[null,null,\"t\",\"e\",\"\\u12\"]",
        "[null,null,\"t\",\"e\",\"\\u12G4\"]",
        "[null,null,\"t\",\"e\",\"\\ud800\"]",
        "[null,null,\"t\",\"e\",\"\\udc00\"]",
        "[null,null,\"t\",\"e\",\"\\ud800\\u0041\"]",
        "[null,null,\"t\",\"e\",\"\\ud800\\ud800\"]",
        "[null,null,\"t\",\"e\",\"\\ud83d\"]",
        "[null,null,\"t\",\"e\",\"a\nb\"]",
        "[null,null,\"t\",\"e\",\"a\tb\"]",
        "\xef\xbb\xbf[null,null,\"t\",\"e\",{}]", /* BOM */
        "[null,null,\"t\",\"e\",{}]\f",
        "\v[null,null,\"t\",\"e\",{}]",
        "/*c*/[null,null,\"t\",\"e\",{}]",
        "[null,null,\"t\",\"e\",tru]",
        "[null,null,\"t\",\"e\",falsey]",
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct phx_msg m;
        int rc = decode_json(cases[i], &m);
        if (rc != PHX_ERR_SYNTAX)
            TEST_FAIL("case %zu (%s): %d", i, cases[i], rc);
        ASSERT(m.owned_ == NULL);
    }
    /* an embedded NUL outside a string is just an invalid byte */
    struct phx_msg m;
    ASSERT_EQ(decode_str(PHX_FMT_JSON, "[null,null,\"t\",\"e\",{}]\0", 23, &m), PHX_ERR_SYNTAX);
}

/* Every proper prefix of a valid message is SYNTAX, read against the guard page. */
static void check_prefixes(enum phx_format fmt, const uint8_t *p, size_t n)
{
    struct phx_msg m;
    for (size_t k = 0; k < n; k++) {
        uint8_t *g = gcopy(p, k);
        int rc = phx_decode(fmt, g, k, &m);
        if (rc != PHX_ERR_SYNTAX)
            TEST_FAIL("prefix %zu/%zu: %d", k, n, rc);
        gfree(g);
    }
    uint8_t *g = gcopy(p, n);
    ASSERT_EQ(phx_decode(fmt, g, n, &m), 0);
    phx_msg_free(&m);
    gfree(g);
}

TEST(phx_truncation_every_length_json)
{
    for (size_t i = 0; i < ARRAY_SIZE(SECTION8); i++)
        check_prefixes(PHX_FMT_JSON, (const uint8_t *)SECTION8[i], strlen(SECTION8[i]));
    static const char *const more[] = {
        "[1,-22,\"\\u00e9\\ud83d\\ude00\\n\",\"e\",{\"a\":[1.5e-3,true,false,null,-0.0]}]",
        "[\"1\",\"2\",\"t\",\"e\",123]",
        "[\"1\",\"2\",\"t\",\"e\",\"abc\"]",
    };
    for (size_t i = 0; i < ARRAY_SIZE(more); i++)
        check_prefixes(PHX_FMT_JSON, (const uint8_t *)more[i], strlen(more[i]));
}

TEST(phx_truncation_every_length_msgpack)
{
    static const char *const cases[] = {
        HB_MP,
        HB_REPLY_MP,
        "95 cf ffffffffffffffff d3 8000000000000000 d9 01 74 da 0001 65 "
        "83 a1 61 ca 3fc00000 a1 62 d6 ff 6a897320 c4 01 00 dc 0002 c7 0c ff 000000000000000000000000 "
        "c8 0001 05 00",
        "dd 00000005 c0 c0 a1 74 a1 65 de 0001 a1 6b db 00000001 76",
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        size_t n;
        uint8_t *b = unhex(cases[i], &n);
        check_prefixes(PHX_FMT_MSGPACK, b, n);
        free(b);
    }
    /* also every §8 frame converted to msgpack */
    for (size_t i = 0; i < ARRAY_SIZE(SECTION8); i++) {
        struct phx_msg m;
        size_t n;
        ASSERT_EQ(decode_json(SECTION8[i], &m), 0);
        char *mp = encode_msg(PHX_FMT_MSGPACK, &m, &n);
        check_prefixes(PHX_FMT_MSGPACK, (const uint8_t *)mp, n);
        free(mp);
        phx_msg_free(&m);
    }
}

/* ---- depth ---- */

/* [null,null,"t","e", <levels nested arrays>] as msgpack */
static uint8_t *nested_mp(int levels, size_t *n)
{
    static const uint8_t head[] = {0x95, 0xc0, 0xc0, 0xa1, 't', 0xa1, 'e'};
    uint8_t *b = malloc(sizeof(head) + (size_t)levels + 1);
    memcpy(b, head, sizeof(head));
    for (int i = 0; i < levels; i++)
        b[sizeof(head) + (size_t)i] = i == levels - 1 ? 0x90 : 0x91;
    *n = sizeof(head) + (size_t)levels;
    return b;
}

static char *nested_json(int levels, bool objects)
{
    size_t cap = 64 + (size_t)levels * 8;
    char *s = malloc(cap), *o = s;
    o += sprintf(o, "[null,null,\"t\",\"e\",");
    for (int i = 0; i < levels; i++)
        o += sprintf(o, objects && i < levels - 1 ? "{\"k\":" : (objects ? "{" : "["));
    for (int i = 0; i < levels; i++)
        o += sprintf(o, objects ? "}" : "]");
    sprintf(o, "]");
    return s;
}

TEST(phx_depth_limit_decode)
{
    struct phx_msg m;
    size_t n;
    uint8_t *b;
    /* the envelope is depth 1, so the payload may nest PHX_MAX_DEPTH - 1 containers */
    b = nested_mp(PHX_MAX_DEPTH - 1, &n);
    ASSERT_EQ(decode_str(PHX_FMT_MSGPACK, (const char *)b, n, &m), 0);
    ASSERT_EQ(m.payload.len, PHX_MAX_DEPTH - 1);
    phx_msg_free(&m);
    free(b);
    b = nested_mp(PHX_MAX_DEPTH, &n);
    ASSERT_EQ(decode_str(PHX_FMT_MSGPACK, (const char *)b, n, &m), PHX_ERR_DEPTH);
    free(b);
    for (int obj = 0; obj < 2; obj++) {
        char *s = nested_json(PHX_MAX_DEPTH - 1, obj);
        ASSERT_EQ(decode_json(s, &m), 0);
        ASSERT_EQ(phx_mp_validate(m.payload, PHX_MAX_DEPTH - 1), 0);
        ASSERT_EQ(phx_mp_validate(m.payload, PHX_MAX_DEPTH - 2), PHX_ERR_DEPTH);
        /* and it re-encodes in both formats */
        size_t k;
        char *j = encode_msg(PHX_FMT_JSON, &m, &k);
        ASSERT_STR_EQ(j, s);
        free(j);
        free(encode_msg(PHX_FMT_MSGPACK, &m, &k));
        phx_msg_free(&m);
        free(s);
        s = nested_json(PHX_MAX_DEPTH, obj);
        ASSERT_EQ(decode_json(s, &m), PHX_ERR_DEPTH);
        free(s);
    }
    /* depth is found even when the input is also truncated later */
    char deep[200];
    memset(deep, '[', sizeof(deep));
    ASSERT_EQ(decode_str(PHX_FMT_JSON, deep, sizeof(deep), &m), PHX_ERR_DEPTH);
    memset(deep, 0x91, sizeof(deep));
    ASSERT_EQ(decode_str(PHX_FMT_MSGPACK, deep, sizeof(deep), &m), PHX_ERR_DEPTH);
    /* exactly 64 open brackets but never closed: syntax, not depth */
    ASSERT_EQ(decode_str(PHX_FMT_JSON, deep, 0, &m), PHX_ERR_SYNTAX);
    memset(deep, '[', PHX_MAX_DEPTH);
    ASSERT_EQ(decode_str(PHX_FMT_JSON, deep, PHX_MAX_DEPTH, &m), PHX_ERR_SYNTAX);
}

TEST(phx_depth_limit_encode)
{
    uint8_t p[PHX_MAX_DEPTH + 1];
    struct buf b = BUF_INIT;
    for (int fmt = 0; fmt < 2; fmt++) {
        for (int levels = PHX_MAX_DEPTH - 2; levels <= PHX_MAX_DEPTH; levels++) {
            for (int i = 0; i < levels; i++)
                p[i] = i == levels - 1 ? 0x80 : 0x91;
            struct span pl = {(const char *)p, (size_t)levels};
            int rc = phx_encode(fmt, NULL, NULL, SPAN_LIT("t"), SPAN_LIT("e"), pl, &b, NOLIMIT);
            ASSERT_EQ(rc, levels <= PHX_MAX_DEPTH - 1 ? 0 : PHX_ERR_DEPTH);
            b.len = 0;
            /* the reply wraps the response in one more map */
            rc = phx_encode_reply(fmt, NULL, NULL, SPAN_LIT("t"), "ok", pl, &b, NOLIMIT);
            ASSERT_EQ(rc, levels <= PHX_MAX_DEPTH - 2 ? 0 : PHX_ERR_DEPTH);
            if (rc == 0) {
                struct phx_msg m;
                ASSERT_EQ(phx_decode(fmt, b.p, b.len, &m), 0);
                phx_msg_free(&m);
            }
            ASSERT(rc == 0 || b.len == 0);
            b.len = 0;
        }
    }
    buf_free(&b);
}

/* ---- numbers ---- */

TEST(phx_json_integers)
{
    static const struct {
        const char *json, *hex;
    } cases[] = {
        {"0", "00"},
        {"-0", "00"},
        {"1", "01"},
        {"127", "7f"},
        {"128", "cc 80"},
        {"255", "cc ff"},
        {"256", "cd 0100"},
        {"65535", "cd ffff"},
        {"65536", "ce 00010000"},
        {"4294967295", "ce ffffffff"},
        {"4294967296", "cf 0000000100000000"},
        {"9223372036854775807", "cf 7fffffffffffffff"},
        {"9223372036854775808", "cf 8000000000000000"},
        {"18446744073709551615", "cf ffffffffffffffff"},
        {"-1", "ff"},
        {"-32", "e0"},
        {"-33", "d0 df"},
        {"-128", "d0 80"},
        {"-129", "d1 ff7f"},
        {"-32768", "d1 8000"},
        {"-32769", "d2 ffff7fff"},
        {"-2147483648", "d2 80000000"},
        {"-2147483649", "d3 ffffffff7fffffff"},
        {"-9223372036854775808", "d3 8000000000000000"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        assert_json_payload_mp(cases[i].json, cases[i].hex);
        assert_mp_json(cases[i].hex, strcmp(cases[i].json, "-0") ? cases[i].json : "0");
    }
    static const char *const too_big[] = {
        "18446744073709551616",
        "-9223372036854775809",
        "99999999999999999999999",
        "-99999999999999999999999",
    };
    for (size_t i = 0; i < ARRAY_SIZE(too_big); i++) {
        uint8_t *o;
        size_t n;
        ASSERT_EQ(json_to_mp(too_big[i], &o, &n), PHX_ERR_UNSUPPORTED);
    }
    /* msgpack ints in non-minimal forms still print their value */
    assert_mp_json("d0 05", "5");
    assert_mp_json("cf 0000000000000001", "1");
    assert_mp_json("d3 ffffffffffffffff", "-1");
}

TEST(phx_json_floats)
{
    static const struct {
        const char *json, *hex, *back;
    } cases[] = {
        {"1.5", "cb 3ff8000000000000", "1.5"},
        {"1.0", "cb 3ff0000000000000", "1.0"},
        {"-0.0", "cb 8000000000000000", "-0.0"},
        {"0.0", "cb 0000000000000000", "0.0"},
        {"1e2", "cb 4059000000000000", "100.0"},
        {"1E2", "cb 4059000000000000", "100.0"},
        {"2.5e-1", "cb 3fd0000000000000", "0.25"},
        {"0.1", "cb 3fb999999999999a", "0.1"},
        {"-41.29", "cb c044a51eb851eb85", "-41.29"},
        {"1e20", "cb 4415af1d78b58c40", "1.0e20"},
        {"1e+20", "cb 4415af1d78b58c40", "1.0e20"},
        {"1.5e-7", "cb 3e8421f5f40d8376", "1.5e-7"},
        {"1.7976931348623157e308", "cb 7fefffffffffffff", "1.7976931348623157e308"},
        {"2.2250738585072014e-308", "cb 0010000000000000", "2.2250738585072014e-308"},
        {"0.30000000000000004", "cb 3fd3333333333334", "0.30000000000000004"},
        {"1e-400", "cb 0000000000000000", "0.0"}, /* underflow reads as zero */
        {"123456789012345678", "cf 01b69b4ba630f34e", "123456789012345678"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        assert_json_payload_mp(cases[i].json, cases[i].hex);
        assert_mp_json(cases[i].hex, cases[i].back);
    }
    uint8_t *o;
    size_t n;
    ASSERT_EQ(json_to_mp("1e400", &o, &n), PHX_ERR_UNSUPPORTED);
    ASSERT_EQ(json_to_mp("-1e400", &o, &n), PHX_ERR_UNSUPPORTED);
    /* number tokens: PHX_JSON_MAX_NUMBER bytes at most */
    char num[PHX_JSON_MAX_NUMBER + 2];
    memset(num, '0', sizeof(num));
    num[0] = '1';
    num[1] = '.';
    num[PHX_JSON_MAX_NUMBER] = '\0';
    ASSERT_EQ(json_to_mp(num, &o, &n), 0);
    free(o);
    num[PHX_JSON_MAX_NUMBER] = '0';
    num[PHX_JSON_MAX_NUMBER + 1] = '\0';
    ASSERT_EQ(json_to_mp(num, &o, &n), PHX_ERR_UNSUPPORTED);
}

TEST(phx_msgpack_floats_to_json)
{
    assert_mp_json("cb 7ff8000000000000", "null"); /* NaN */
    assert_mp_json("cb 7ff0000000000000", "null"); /* +Inf */
    assert_mp_json("cb fff0000000000000", "null"); /* -Inf */
    assert_mp_json("ca 7fc00000", "null");         /* float32 NaN */
    assert_mp_json("ca 3fc00000", "1.5");          /* float32 */
    assert_mp_json("ca 3dcccccd", "0.10000000149011612");
    assert_mp_json("cb 0000000000000001", "4.94065645841247e-324");
    assert_mp_json("cb 4341c37937e08000", "1.0e16");
    assert_mp_json("cb 430c6bf526340000", "1.0e15");
    assert_mp_json("cb 42d6bcc41e900000", "100000000000000.0");
    assert_mp_json("92 cb 3ff8000000000000 ca c0200000", "[1.5,-2.5]");
}

/* ---- strings ---- */

TEST(phx_json_string_escapes_decode)
{
    static const struct {
        const char *json, *hex;
    } cases[] = {
        {"\"\\u00e9\"", "a2 c3a9"},
        {"\"\\u00E9\"", "a2 c3a9"},
        {"\"\\ud83d\\ude00\"", "a4 f09f9880"},
        {"\"\\uD83D\\uDE00\"", "a4 f09f9880"},
        {"\"\\n\"", "a1 0a"},
        {"\"\\\"\"", "a1 22"},
        {"\"\\\\\"", "a1 5c"},
        {"\"\\/\"", "a1 2f"},
        {"\"\\b\\f\\r\\t\"", "a4 080c0d09"},
        {"\"\\u0000\"", "a1 00"},
        {"\"\\u0041\\u20ac\"", "a4 41e282ac"},
        {"\"\\uffff\"", "a3 efbfbf"},
        {"\"\\udbff\\udfff\"", "a4 f48fbfbf"},
        {"\"\xc3\xa9\"", "a2 c3a9"},
        {"\"\"", "a0"},
        {"{\"\\u006b\":1}", "81 a1 6b 01"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        assert_json_payload_mp(cases[i].json, cases[i].hex);
}

TEST(phx_json_string_output)
{
    /* Jason-style: escape ", \, control characters; "/" and DEL and non-ASCII raw */
    assert_mp_json("a3 612262", "\"a\\\"b\"");
    assert_mp_json("a1 5c", "\"\\\\\"");
    assert_mp_json("a1 2f", "\"/\"");
    assert_mp_json("a7 0a0d09080c001f", "\"\\n\\r\\t\\b\\f\\u0000\\u001F\"");
    assert_mp_json("a2 017f", "\"\\u0001\x7f\"");
    assert_mp_json("a2 c3a9", "\"\xc3\xa9\"");
    assert_mp_json("a4 f09f9880", "\"\xf0\x9f\x98\x80\"");
    assert_mp_json("c4 03 616263", "\"abc\""); /* bin → string */
    assert_mp_json("a0", "\"\"");
    /* JSON output of escapes decodes to the same bytes (round trip) */
    assert_json_roundtrip("\"\\u00e9\\ud83d\\ude00\\n\\\"\\/\"", "\"\xc3\xa9\xf0\x9f\x98\x80\\n\\\"/\"");
    assert_json_roundtrip("\"\\u001f\\u007f\"", "\"\\u001F\x7f\"");
}

TEST(phx_invalid_utf8_becomes_replacement)
{
#define FFFD "\xef\xbf\xbd"
    assert_mp_json("a2 c328", "\"" FFFD "(\"");
    assert_mp_json("a1 80", "\"" FFFD "\"");
    assert_mp_json("a1 ff", "\"" FFFD "\"");
    assert_mp_json("a2 c0af", "\"" FFFD FFFD "\"");        /* overlong */
    assert_mp_json("a3 eda080", "\"" FFFD FFFD FFFD "\""); /* surrogate D800 */
    assert_mp_json("a3 f09f98", "\"" FFFD "\"");           /* truncated 4-byte, one subpart */
    assert_mp_json("a4 f09f9841", "\"" FFFD "A\"");
    assert_mp_json("a4 f4908080", "\"" FFFD FFFD FFFD FFFD "\""); /* > U+10FFFF */
    assert_mp_json("a3 e08080", "\"" FFFD FFFD FFFD "\"");        /* overlong 3-byte */
    assert_mp_json("a2 e282", "\"" FFFD "\"");
    assert_mp_json("a5 61e2826162", "\"a" FFFD "ab\"");
    assert_mp_json("c4 02 fe22", "\"" FFFD "\\\"\"");
    /* in map keys, refs, topic and event too */
    assert_mp_json("81 a1 ff 01", "{\"" FFFD "\":1}");
    struct buf b = BUF_INIT;
    struct span bad = {"\xff", 1};
    ASSERT_EQ(phx_encode(PHX_FMT_JSON, &bad, &bad, bad, bad, PHX_MP_EMPTY_MAP, &b, NOLIMIT), 0);
    const char *want = "[\"" FFFD "\",\"" FFFD "\",\"" FFFD "\",\"" FFFD "\",{}]";
    ASSERT_MEM_EQ(b.p, b.len, want, strlen(want));
    /* msgpack output keeps the bytes (Msgpax does not check UTF-8) */
    b.len = 0;
    ASSERT_EQ(phx_encode(PHX_FMT_MSGPACK, &bad, NULL, bad, bad, PHX_MP_EMPTY_MAP, &b, NOLIMIT), 0);
    ASSERT_MEM_EQ(b.p, b.len, "\x95\xa1\xff\xc0\xa1\xff\xa1\xff\x80", 9);
    buf_free(&b);
#undef FFFD
}

TEST(phx_str_and_container_header_sizes)
{
    static const struct {
        size_t len;
        uint8_t hdr[5];
        size_t hlen;
    } strs[] = {
        {0, {0xa0}, 1},
        {31, {0xbf}, 1},
        {32, {0xd9, 32}, 2},
        {255, {0xd9, 0xff}, 2},
        {256, {0xda, 1, 0}, 3},
        {65535, {0xda, 0xff, 0xff}, 3},
        {65536, {0xdb, 0, 1, 0, 0}, 5},
    };
    for (size_t i = 0; i < ARRAY_SIZE(strs); i++) {
        char *json = malloc(strs[i].len + 3);
        json[0] = '"';
        memset(json + 1, 'x', strs[i].len);
        strcpy(json + 1 + strs[i].len, "\"");
        uint8_t *mp;
        size_t n;
        ASSERT_EQ(json_to_mp(json, &mp, &n), 0);
        ASSERT_EQ(n, strs[i].hlen + strs[i].len);
        ASSERT_MEM_EQ(mp, strs[i].hlen, strs[i].hdr, strs[i].hlen);
        int rc;
        char *back = mp_to_json(mp, n, &rc);
        ASSERT_STR_EQ(back, json);
        /* topics of that length are packed with the same header */
        struct buf b = BUF_INIT;
        ASSERT_EQ(phx_encode(PHX_FMT_MSGPACK, NULL, NULL, (struct span){json + 1, strs[i].len}, SPAN_LIT("e"),
                             PHX_MP_EMPTY_MAP, &b, NOLIMIT),
                  0);
        ASSERT_MEM_EQ(b.p + 3, strs[i].hlen, strs[i].hdr, strs[i].hlen);
        buf_free(&b);
        free(back);
        free(mp);
        free(json);
    }
    static const struct {
        size_t n;
        uint8_t hdr[5];
        size_t hlen;
    } arrs[] = {
        {15, {0x9f}, 1},
        {16, {0xdc, 0, 16}, 3},
        {65535, {0xdc, 0xff, 0xff}, 3},
        {65536, {0xdd, 0, 1, 0, 0}, 5},
    };
    for (size_t i = 0; i < ARRAY_SIZE(arrs); i++) {
        for (int obj = 0; obj < 2; obj++) {
            size_t cap = arrs[i].n * 16 + 8;
            char *json = malloc(cap), *o = json;
            *o++ = obj ? '{' : '[';
            for (size_t k = 0; k < arrs[i].n; k++)
                o += obj ? sprintf(o, "%s\"%zu\":0", k ? "," : "", k) : sprintf(o, "%s0", k ? "," : "");
            *o++ = obj ? '}' : ']';
            *o = '\0';
            uint8_t *mp;
            size_t n;
            ASSERT_EQ(json_to_mp(json, &mp, &n), 0);
            uint8_t hdr[5];
            memcpy(hdr, arrs[i].hdr, 5);
            if (obj)
                hdr[0] = hdr[0] == 0x9f ? 0x8f : (uint8_t)(hdr[0] + 2); /* map forms */
            ASSERT_MEM_EQ(mp, arrs[i].hlen, hdr, arrs[i].hlen);
            int rc;
            char *back = mp_to_json(mp, n, &rc);
            ASSERT_STR_EQ(back, json);
            free(back);
            free(mp);
            free(json);
        }
    }
}

/* ---- ext ---- */

TEST(phx_ext_passthrough_and_timestamps)
{
    /* health report value with a timestamp ext (2026-08-22T10:00:00Z = 0x6a897320) */
    const char *msg = "95 a1 34 a1 38 aa 657874656e73696f6e73 ad 6865616c74683a7265706f7274 "
                      "81 a5 76616c7565 82 a9 74696d657374616d70 d6 ff 6a897320 a1 78 c7 03 05 010203";
    struct phx_msg m;
    size_t n, en;
    ASSERT_EQ(decode_hex(msg, &m), 0);
    uint8_t *in = unhex(msg, &n);
    char *again = encode_msg(PHX_FMT_MSGPACK, &m, &en);
    ASSERT_MEM_EQ(again, en, in, n);
    char *j = encode_msg(PHX_FMT_JSON, &m, &en);
    ASSERT_STR_EQ(j, "[\"4\",\"8\",\"extensions\",\"health:report\","
                     "{\"value\":{\"timestamp\":\"2026-08-22T10:00:00.000000Z\",\"x\":null}}]");
    free(j);
    free(again);
    free(in);
    phx_msg_free(&m);

    static const struct {
        const char *hex, *json;
    } ts[] = {
        {"d6 ff 00000000", "\"1970-01-01T00:00:00.000000Z\""},
        {"d6 ff ffffffff", "\"2106-02-07T06:28:15.000000Z\""},
        /* 64-bit: nsec in the top 30 bits; 123456789 ns → .123456 (truncated) */
        {"d7 ff 1d6f3454 6a897320", "\"2026-08-22T10:00:00.123456Z\""},
        {"d7 ff 00000003 ffffffff", "\"2514-05-30T01:53:03.000000Z\""},
        /* 96-bit: nsec u32 then i64 seconds, negative allowed */
        {"c7 0c ff 1dcd6500 ffffffffffffffff", "\"1969-12-31T23:59:59.500000Z\""},
        {"c7 0c ff 00000000 fffffff1868b8400", "\"0000-01-01T00:00:00.000000Z\""},
        {"c7 0c ff 3b9ac9ff 0000003afff4417f", "\"9999-12-31T23:59:59.999999Z\""},
        {"c7 0c ff 00000000 000000003b5d2dc0", "\"2001-07-24T08:11:44.000000Z\""},
        {"c7 0c ff 00000000 0000000038d7ea4c", "\"2000-03-21T21:31:56.000000Z\""},
        {"c7 0c ff 00000000 0000000038a5f3a4", "\"2000-02-12T23:58:28.000000Z\""},
        /* not representable → null */
        {"c7 0c ff 00000000 fffffff1868b83ff", "null"}, /* year -1 */
        {"c7 0c ff 00000000 0000003afff44180", "null"}, /* year 10000 */
        {"c7 0c ff 3b9aca00 0000000000000000", "null"}, /* nsec 1e9 */
        {"d7 ff fffffffc 00000000", "null"},            /* 64-bit nsec > 999999999 */
        {"c7 0c ff 00000000 8000000000000000", "null"},
        {"d5 ff 0000", "null"}, /* wrong size for a timestamp */
        {"d4 01 00", "null"},
        {"d8 02 00000000000000000000000000000000", "null"},
        {"c8 0000 07", "null"},
        {"c9 00000001 7f 00", "null"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(ts); i++)
        assert_mp_json(ts[i].hex, ts[i].json);
}

/* ---- JSON ↔ msgpack round trips ---- */

TEST(phx_json_roundtrips)
{
    static const char *const same[] = {
        "{}",
        "[]",
        "null",
        "true",
        "false",
        "0",
        "-1",
        "\"x\"",
        "{\"a\":[1,2,{\"b\":null}],\"c\":\"d\",\"e\":-1.25,\"f\":[[]],\"g\":{}}",
        "[\"\",[],{},0,-0.0,1.0e-5]",
        "{\"z\":1,\"a\":2,\"m\":3}", /* key order kept */
        "{\"a\":1,\"a\":2}",         /* duplicates kept */
        "{\"\":\"\"}",
        "[18446744073709551615,-9223372036854775808,3.141592653589793]",
    };
    for (size_t i = 0; i < ARRAY_SIZE(same); i++)
        assert_json_roundtrip(same[i], NULL);
    /* whitespace and escape forms normalise */
    assert_json_roundtrip(" { \"a\" : [ 1 , 2 ] ,\n\t\"b\"\r:\"\\u0041\" } ", "{\"a\":[1,2],\"b\":\"A\"}");
    assert_json_roundtrip("[1E3,2e-0,0.50]", "[1000.0,2.0,0.5]");
}

TEST(phx_json_duplicate_keys_last_wins)
{
    uint8_t *mp;
    size_t n;
    struct span v;
    ASSERT_EQ(json_to_mp("{\"a\":1,\"b\":2,\"a\":3}", &mp, &n), 0);
    ASSERT_EQ(mp[0], 0x83); /* all three pairs kept */
    ASSERT(phx_mp_map_get((struct span){(const char *)mp, n}, "a", &v));
    ASSERT_MEM_EQ(v.p, v.len, "\x03", 1);
    free(mp);
}

TEST(phx_json_whitespace_around_envelope)
{
    struct phx_msg m;
    ASSERT_EQ(decode_json(" \t\r\n[ null , \"1\" ,\"t\" , \"e\" , { } ] \n", &m), 0);
    assert_span(m.ref, "1");
    ASSERT_MEM_EQ(m.payload.p, m.payload.len, "\x80", 1);
    phx_msg_free(&m);
}

TEST(phx_msgpack_noncanonical_input)
{
    /* array16 envelope, str8/bin topic and event, array32 payload: accepted, re-encoded
     * canonically, and payload bytes are kept verbatim */
    struct phx_msg m;
    size_t n;
    ASSERT_EQ(decode_hex("dc 0005 d9 01 31 c4 01 32 da 0001 74 c5 0001 65 dd 00000001 cd 0001", &m), 0);
    assert_span(m.join_ref, "1");
    assert_span(m.ref, "2");
    assert_span(m.topic, "t");
    assert_span(m.event, "e");
    char *mp = encode_msg(PHX_FMT_MSGPACK, &m, &n);
    uint8_t *want;
    size_t wn;
    want = unhex("95 a1 31 a1 32 a1 74 a1 65 dd 00000001 cd 0001", &wn);
    ASSERT_MEM_EQ(mp, n, want, wn);
    char *j = encode_msg(PHX_FMT_JSON, &m, &n);
    ASSERT_STR_EQ(j, "[\"1\",\"2\",\"t\",\"e\",[1]]");
    free(j);
    free(mp);
    free(want);
    phx_msg_free(&m);
}

TEST(phx_map_keys_to_json)
{
    assert_mp_json("82 01 02 ff 03", "{\"1\":2,\"-1\":3}");
    assert_mp_json("81 cf ffffffffffffffff c0", "{\"18446744073709551615\":null}");
    assert_mp_json("81 c4 01 6b 01", "{\"k\":1}");
    static const char *const bad[] = {
        "81 c0 01",       "81 c3 01", "81 cb 3ff0000000000000 01",
        "81 90 01",       "81 80 01", "81 d6 ff 00000000 01",
        "92 01 81 c2 01",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        int rc;
        char *s = mp_hex_to_json(bad[i], &rc);
        ASSERT(s == NULL);
        ASSERT_EQ(rc, PHX_ERR_UNSUPPORTED);
    }
}

/* ---- helpers API ---- */

TEST(phx_mp_helpers)
{
    uint8_t *mp;
    size_t n;
    struct span v, s, map;
    ASSERT_EQ(json_to_mp("{\"a\":{\"b\":[1,2]},\"s\":\"str\",\"n\":null,\"i\":7}", &mp, &n), 0);
    map = (struct span){(const char *)mp, n};
    ASSERT(phx_mp_map_get(map, "a", &v));
    ASSERT(phx_mp_map_get(v, "b", &v));
    ASSERT_MEM_EQ(v.p, v.len, "\x92\x01\x02", 3);
    ASSERT(phx_mp_map_get(map, "s", &v));
    ASSERT(phx_mp_get_str(v, &s));
    assert_span(s, "str");
    ASSERT(phx_mp_map_get(map, "n", &v));
    ASSERT(phx_mp_is_nil(v));
    ASSERT(phx_mp_map_get(map, "i", &v));
    ASSERT(!phx_mp_get_str(v, &s));
    ASSERT(!phx_mp_is_nil(v));
    ASSERT(!phx_mp_map_get(map, "b", &v));
    ASSERT(!phx_mp_map_get(map, "", &v));
    /* truncated maps never match past the end and never read past it */
    for (size_t k = 0; k < n; k++) {
        uint8_t *g = gcopy(mp, k);
        struct span t = {(const char *)g, k};
        ASSERT(!phx_mp_map_get(t, "i", &v));
        (void)phx_mp_map_get(t, "a", &v);
        (void)phx_mp_get_str(t, &s);
        ASSERT_EQ(phx_mp_validate(t, PHX_MAX_DEPTH), PHX_ERR_SYNTAX);
        gfree(g);
    }
    ASSERT_EQ(phx_mp_validate(map, PHX_MAX_DEPTH), 0);
    ASSERT_EQ(phx_mp_validate(map, 3), 0);
    ASSERT_EQ(phx_mp_validate(map, 2), PHX_ERR_DEPTH);
    map.len--;
    ASSERT_EQ(phx_mp_validate(map, PHX_MAX_DEPTH), PHX_ERR_SYNTAX);
    ASSERT(!phx_mp_map_get((struct span){NULL, 0}, "a", &v));
    ASSERT(!phx_mp_get_str((struct span){NULL, 0}, &s));
    ASSERT(!phx_mp_is_nil((struct span){NULL, 0}));
    ASSERT(phx_mp_get_str((struct span){"\xc4\x01x", 3}, &s)); /* bin */
    assert_span(s, "x");
    ASSERT(!phx_mp_get_str((struct span){"\xa2x", 2}, &s)); /* truncated str */
    free(mp);
    ASSERT_EQ(PHX_MP_EMPTY_MAP.len, 1);
    ASSERT_EQ((uint8_t)PHX_MP_EMPTY_MAP.p[0], 0x80);
    ASSERT(phx_mp_is_nil(PHX_MP_NIL));
}

TEST(phx_mp_packers)
{
    struct buf b = BUF_INIT;
    ASSERT_EQ(phx_mp_reason("unmatched topic", &b, NOLIMIT), 0);
    const char *want = "\x81\xa6reason\xafunmatched topic";
    ASSERT_MEM_EQ(b.p, b.len, want, strlen(want));
    int rc;
    char *j = mp_to_json(b.p, b.len, &rc);
    ASSERT_STR_EQ(j, "{\"reason\":\"unmatched topic\"}");
    free(j);
    b.len = 0;
    ASSERT_EQ(phx_mp_put_map(2, &b, NOLIMIT), 0);
    ASSERT_EQ(phx_mp_put_str(SPAN_LIT("a"), &b, NOLIMIT), 0);
    ASSERT_EQ(phx_mp_put_array(3, &b, NOLIMIT), 0);
    ASSERT_EQ(phx_mp_put_int(-33, &b, NOLIMIT), 0);
    ASSERT_EQ(phx_mp_put_uint(UINT64_MAX, &b, NOLIMIT), 0);
    ASSERT_EQ(phx_mp_put_bool(true, &b, NOLIMIT), 0);
    ASSERT_EQ(phx_mp_put_str(SPAN_LIT("b"), &b, NOLIMIT), 0);
    ASSERT_EQ(phx_mp_put_nil(&b, NOLIMIT), 0);
    j = mp_to_json(b.p, b.len, &rc);
    ASSERT_STR_EQ(j, "{\"a\":[-33,18446744073709551615,true],\"b\":null}");
    free(j);
    /* limits: at exactly the limit fine, one over is TOO_BIG and leaves out unchanged */
    b.len = 0;
    ASSERT_EQ(phx_mp_reason("x", &b, 10), 0);
    ASSERT_EQ(b.len, 10);
    b.len = 0;
    ASSERT_EQ(phx_mp_reason("x", &b, 9), PHX_ERR_TOO_BIG);
    ASSERT_EQ(b.len, 0);
    ASSERT_EQ(phx_mp_put_int(-129, &b, 2), PHX_ERR_TOO_BIG);
    ASSERT_EQ(phx_mp_put_int(-129, &b, 3), 0);
    ASSERT_MEM_EQ(b.p, b.len, "\xd1\xff\x7f", 3);
    ASSERT_EQ(phx_mp_put_nil(&b, 3), PHX_ERR_TOO_BIG);
    ASSERT_EQ(phx_mp_put_bool(false, &b, 3), PHX_ERR_TOO_BIG);
    ASSERT_EQ(b.len, 3);
    buf_free(&b);
}

/* ---- encoder limits and bad payloads ---- */

TEST(phx_encode_output_limit_exact)
{
    struct span jr = SPAN_LIT("1"), r = SPAN_LIT("22");
    const uint8_t pl[] = {0x81, 0xa1, 'k', 0xa2, 0xff, 'v'};
    struct span payload = {(const char *)pl, sizeof(pl)};
    for (int fmt = 0; fmt < 2; fmt++) {
        for (int reply = 0; reply < 2; reply++) {
            struct buf b = BUF_INIT;
            ASSERT_EQ(buf_try_append(&b, "prefix", 6, NOLIMIT), 0);
            int rc = reply
                         ? phx_encode_reply(fmt, &jr, &r, SPAN_LIT("topic"), "error", payload, &b, NOLIMIT)
                         : phx_encode(fmt, &jr, &r, SPAN_LIT("topic"), SPAN_LIT("ev"), payload, &b, NOLIMIT);
            ASSERT_EQ(rc, 0);
            size_t full = b.len;
            uint8_t *want = malloc(full);
            memcpy(want, b.p, full);
            for (size_t limit = 0; limit <= full; limit++) {
                b.len = 6;
                rc = reply ? phx_encode_reply(fmt, &jr, &r, SPAN_LIT("topic"), "error", payload, &b, limit)
                           : phx_encode(fmt, &jr, &r, SPAN_LIT("topic"), SPAN_LIT("ev"), payload, &b, limit);
                if (limit == full) {
                    ASSERT_EQ(rc, 0);
                    ASSERT_MEM_EQ(b.p, b.len, want, full);
                } else {
                    ASSERT_EQ(rc, PHX_ERR_TOO_BIG);
                    ASSERT_EQ(b.len, 6);
                    ASSERT(memcmp(b.p, "prefix", 6) == 0);
                }
            }
            free(want);
            buf_free(&b);
        }
    }
}

TEST(phx_encode_rejects_bad_payload)
{
    static const char *const bad[] = {
        "", "c1", "92 01", "81 a1 6b", "80 80", "01 02", "a3 6162", "dd ffffffff", "c7 05 01 00",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        size_t n;
        uint8_t *p = unhex(bad[i], &n);
        uint8_t *g = gcopy(p, n);
        struct span pl = {(const char *)g, n};
        for (int fmt = 0; fmt < 2; fmt++) {
            struct buf b = BUF_INIT;
            int rc = phx_encode(fmt, NULL, NULL, SPAN_LIT("t"), SPAN_LIT("e"), pl, &b, NOLIMIT);
            if (rc != PHX_ERR_SYNTAX)
                TEST_FAIL("payload %s fmt %d: %d", bad[i], fmt, rc);
            ASSERT_EQ(b.len, 0);
            rc = phx_encode_reply(fmt, NULL, NULL, SPAN_LIT("t"), "ok", pl, &b, NOLIMIT);
            ASSERT_EQ(rc, PHX_ERR_SYNTAX);
            ASSERT_EQ(b.len, 0);
            buf_free(&b);
        }
        gfree(g);
        free(p);
    }
}

TEST(phx_reply_shapes)
{
    /* §8: the extensions join reply and detach error use non-map responses */
    struct buf b = BUF_INIT;
    struct span four = SPAN_LIT("4"), nine = SPAN_LIT("9");
    ASSERT_EQ(phx_encode_reply(PHX_FMT_JSON, &four, &nine, SPAN_LIT("extensions"), "error",
                               (struct span){"\xa6"
                                             "detach",
                                             7},
                               &b, NOLIMIT),
              0);
    const char *want =
        "[\"4\",\"9\",\"extensions\",\"phx_reply\",{\"response\":\"detach\",\"status\":\"error\"}]";
    ASSERT_MEM_EQ(b.p, b.len, want, strlen(want));
    b.len = 0;
    ASSERT_EQ(phx_encode_reply(PHX_FMT_MSGPACK, &four, &nine, SPAN_LIT("extensions"), "error",
                               (struct span){"\xa6"
                                             "detach",
                                             7},
                               &b, NOLIMIT),
              0);
    struct phx_msg m;
    ASSERT_EQ(phx_decode(PHX_FMT_MSGPACK, b.p, b.len, &m), 0);
    size_t n;
    char *j = encode_msg(PHX_FMT_JSON, &m, &n);
    ASSERT_STR_EQ(j, want);
    free(j);
    phx_msg_free(&m);
    buf_free(&b);
}

TEST(phx_strerror_covers_codes)
{
    for (int e = PHX_ERR_TOO_BIG; e <= 0; e++)
        ASSERT(strcmp(phx_strerror(e), "unknown error") != 0);
    ASSERT_STR_EQ(phx_strerror(-99), "unknown error");
}

/* ---- cost ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

TEST(phx_large_inputs_are_linear)
{
    /* 4 MB payloads of many small items, many keys, long strings with escapes, and repeated
     * deep-but-allowed nesting: each must decode and re-encode quickly (quadratic behaviour
     * would take minutes here) */
    const size_t target = 4u << 20;
    /* envelope + payload array leave PHX_MAX_DEPTH - 2 levels for each deep item */
    char deep[2 * PHX_MAX_DEPTH + 2];
    memset(deep, '[', PHX_MAX_DEPTH - 2);
    memset(deep + PHX_MAX_DEPTH - 2, ']', PHX_MAX_DEPTH - 2);
    strcpy(deep + 2 * (PHX_MAX_DEPTH - 2), ",");
    const char *const unit[] = {"0,", "{\"k\":1},", "\"\\u00e9\\n\",", "1.5,", deep};
    for (size_t u = 0; u < ARRAY_SIZE(unit); u++) {
        char *s = malloc(target + sizeof(deep) + 64), *o = s;
        o += sprintf(o, "[null,null,\"t\",\"e\",[");
        while ((size_t)(o - s) < target)
            o += sprintf(o, "%s", unit[u]);
        o += sprintf(o, "0]]");
        double t0 = now_s();
        struct phx_msg m;
        ASSERT_EQ(phx_decode(PHX_FMT_JSON, (const uint8_t *)s, (size_t)(o - s), &m), 0);
        ASSERT(m.payload.len <= (size_t)(o - s) * 3);
        struct buf b = BUF_INIT;
        ASSERT_EQ(phx_encode(PHX_FMT_JSON, NULL, NULL, m.topic, m.event, m.payload, &b, NOLIMIT), 0);
        ASSERT_EQ(phx_encode(PHX_FMT_MSGPACK, NULL, NULL, m.topic, m.event, m.payload, &b, NOLIMIT), 0);
        double dt = now_s() - t0;
        if (dt > 20.0)
            TEST_FAIL("unit %zu took %.1fs", u, dt);
        buf_free(&b);
        phx_msg_free(&m);
        free(s);
    }
}

/* ---- cross-checks with msgpack-c ---- */

TEST(phx_json_to_msgpack_agrees_with_msgpack_c)
{
    uint8_t *mp;
    size_t n, off = 0;
    ASSERT_EQ(json_to_mp("{\"a\":1,\"b\":-1,\"c\":18446744073709551615,\"d\":-9223372036854775808,"
                         "\"e\":1.5,\"f\":\"x\\u00e9\",\"g\":[true,false,null],\"h\":{}}",
                         &mp, &n),
              0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    ASSERT_EQ(msgpack_unpack_next(&u, (const char *)mp, n, &off), MSGPACK_UNPACK_SUCCESS);
    ASSERT_EQ(off, n);
    msgpack_object o = u.data;
    ASSERT_EQ(o.type, MSGPACK_OBJECT_MAP);
    ASSERT_EQ(o.via.map.size, 8);
    msgpack_object_kv *kv = o.via.map.ptr;
    ASSERT_MEM_EQ(kv[0].key.via.str.ptr, kv[0].key.via.str.size, "a", 1);
    ASSERT_EQ(kv[0].val.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    ASSERT_EQ(kv[0].val.via.u64, 1);
    ASSERT_EQ(kv[1].val.type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
    ASSERT_EQ(kv[1].val.via.i64, -1);
    ASSERT_EQ(kv[2].val.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    ASSERT(kv[2].val.via.u64 == UINT64_MAX);
    ASSERT_EQ(kv[3].val.type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
    ASSERT(kv[3].val.via.i64 == INT64_MIN);
    ASSERT_EQ(kv[4].val.type, MSGPACK_OBJECT_FLOAT64);
    ASSERT(kv[4].val.via.f64 == 1.5);
    ASSERT_EQ(kv[5].val.type, MSGPACK_OBJECT_STR);
    ASSERT_MEM_EQ(kv[5].val.via.str.ptr, kv[5].val.via.str.size, "x\xc3\xa9", 3);
    ASSERT_EQ(kv[6].val.type, MSGPACK_OBJECT_ARRAY);
    ASSERT_EQ(kv[6].val.via.array.size, 3);
    ASSERT_EQ(kv[6].val.via.array.ptr[2].type, MSGPACK_OBJECT_NIL);
    ASSERT_EQ(kv[7].val.type, MSGPACK_OBJECT_MAP);
    ASSERT_EQ(kv[7].val.via.map.size, 0);
    /* msgpack-c re-packs the object to the same bytes: both pick the smallest forms */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    ASSERT_EQ(msgpack_pack_object(&pk, o), 0);
    ASSERT_MEM_EQ(sb.data, sb.size, mp, n);
    msgpack_sbuffer_destroy(&sb);
    msgpack_unpacked_destroy(&u);
    free(mp);
}

TEST(phx_decodes_msgpack_c_output)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 5);
    msgpack_pack_nil(&pk);
    msgpack_pack_int(&pk, 42); /* integer ref */
    msgpack_pack_str_with_body(&pk, "device", 6);
    msgpack_pack_bin_with_body(&pk, "update", 6);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "k", 1);
    msgpack_pack_array(&pk, 5);
    msgpack_pack_int64(&pk, -40000);
    msgpack_pack_uint64(&pk, 300);
    msgpack_pack_double(&pk, 0.5);
    msgpack_pack_float(&pk, 2.0f);
    msgpack_pack_bin_with_body(&pk, "\x01", 1);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_ext_with_body(&pk, "\x6a\x89\x73\x20", 4, -1);
    struct phx_msg m;
    ASSERT_EQ(phx_decode(PHX_FMT_MSGPACK, (const uint8_t *)sb.data, sb.size, &m), 0);
    assert_span(m.ref, "42");
    assert_span(m.event, "update");
    size_t n;
    char *j = encode_msg(PHX_FMT_JSON, &m, &n);
    ASSERT_STR_EQ(j, "[null,\"42\",\"device\",\"update\","
                     "{\"k\":[-40000,300,0.5,2.0,\"\\u0001\"],\"t\":\"2026-08-22T10:00:00.000000Z\"}]");
    free(j);
    phx_msg_free(&m);
    msgpack_sbuffer_destroy(&sb);
}
