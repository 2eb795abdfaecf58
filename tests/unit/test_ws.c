/* Unit tests for gateway/ws.c through its public API: RFC 6455 framing (examples, length encodings, splits,
 * guard page, limits, every violation with its code), close payloads, UTF-8, RFC 7692 deflate/inflate and
 * negotiation. */
#include "../lib/test.h"

#include <zlib.h>

#include "ws.h"

/* test_guard_copy/test_guard_free, also for n == 0 (then the pointer sits at the guard page, which
 * test_guard_free cannot walk back from, so copy one byte and point past it). */
static uint8_t *gcopy(const void *data, size_t n)
{
    return n ? test_guard_copy(data, n) : test_guard_copy("", 1) + 1;
}

static void gfree(uint8_t *p, size_t n)
{
    test_guard_free(n ? p : p - 1);
}

static const struct ws_limits big_lim = { 1u << 24, 1u << 24, 1u << 24 };
static const uint8_t mask_key[4] = { 0x37, 0xfa, 0x21, 0x3d };

/* Build a masked client frame. len_bytes forces the length encoding (0 = minimal, else 1, 2 or 8 length
 * bytes after byte 1). Returns malloc'd bytes. */
static uint8_t *mk_frame_ex(uint8_t b0, const void *payload, size_t len, int len_bytes, bool masked,
                            size_t *out_len)
{
    uint8_t *f = malloc(len + WS_MAX_HEADER);
    size_t h = 0;
    if (len_bytes == 0)
        len_bytes = len < 126 ? 1 : len <= 0xffff ? 2 : 8;
    f[h++] = b0;
    uint8_t m = masked ? 0x80 : 0;
    if (len_bytes == 1) {
        f[h++] = m | (uint8_t)len;
    } else if (len_bytes == 2) {
        f[h++] = m | 126;
        f[h++] = (uint8_t)(len >> 8);
        f[h++] = (uint8_t)len;
    } else {
        f[h++] = m | 127;
        for (int i = 7; i >= 0; i--)
            f[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    if (masked) {
        memcpy(f + h, mask_key, 4);
        h += 4;
    }
    for (size_t i = 0; i < len; i++)
        f[h + i] = ((const uint8_t *)payload)[i] ^ (masked ? mask_key[i & 3] : 0);
    *out_len = h + len;
    return f;
}

static uint8_t *mk_frame(uint8_t opcode, bool fin, const void *payload, size_t len, size_t *out_len)
{
    return mk_frame_ex((uint8_t)((fin ? 0x80 : 0) | opcode), payload, len, 0, true, out_len);
}

/* Parse a whole buffer (copied against the guard page); returns the parse result. */
static ssize_t parse_guarded(const uint8_t *bytes, size_t n, bool deflate, const struct ws_limits *lim,
                             struct ws_frame *f, uint8_t *payload_copy, size_t *need)
{
    uint8_t *g = gcopy(bytes, n);
    ssize_t r = ws_frame_parse(g, n, deflate, lim, f, need);
    if (r > 0 && payload_copy)
        memcpy(payload_copy, f->payload, f->payload_len);
    gfree(g, n);
    return r;
}

static ssize_t parse_err(const char *hex, bool deflate, const struct ws_limits *lim)
{
    size_t n;
    uint8_t *b = test_unhex(hex, &n);
    struct ws_frame f;
    size_t need = 0;
    ssize_t r = parse_guarded(b, n, deflate, lim, &f, NULL, &need);
    free(b);
    return r;
}

/* ---- RFC 6455 §5.7 examples ---- */

TEST(ws_rfc6455_masked_hello)
{
    size_t n;
    uint8_t *b = test_unhex("81 85 37 fa 21 3d 7f 9f 4d 51 58", &n);
    uint8_t *g = gcopy(b, n);
    struct ws_frame f;
    size_t need = 0;
    ASSERT_EQ(ws_frame_parse(g, n, false, &big_lim, &f, &need), 11);
    ASSERT_EQ(f.opcode, WS_OP_TEXT);
    ASSERT(f.fin);
    ASSERT(!f.rsv1);
    ASSERT_MEM_EQ(f.payload, f.payload_len, "Hello", 5);
    ASSERT(f.payload == g + 6);
    gfree(g, n);
    free(b);
}

TEST(ws_rfc6455_unmasked_examples_rejected)
{
    /* §5.7 unmasked text, fragments and ping: a server must reject them (§5.1) */
    ASSERT_EQ(parse_err("81 05 48 65 6c 6c 6f", false, &big_lim), WS_ERR_PROTOCOL);
    ASSERT_EQ(parse_err("01 03 48 65 6c", false, &big_lim), WS_ERR_PROTOCOL);
    ASSERT_EQ(parse_err("80 02 6c 6f", false, &big_lim), WS_ERR_PROTOCOL);
    ASSERT_EQ(parse_err("89 05 48 65 6c 6c 6f", false, &big_lim), WS_ERR_PROTOCOL);
    /* decided as soon as byte 1 arrives */
    ASSERT_EQ(parse_err("81 05", false, &big_lim), WS_ERR_PROTOCOL);
}

TEST(ws_rfc6455_masked_pong)
{
    size_t n;
    uint8_t *b = test_unhex("8a 85 37 fa 21 3d 7f 9f 4d 51 58", &n);
    struct ws_frame f;
    uint8_t pl[8];
    ASSERT_EQ(parse_guarded(b, n, false, &big_lim, &f, pl, NULL), 11);
    ASSERT_EQ(f.opcode, WS_OP_PONG);
    ASSERT_MEM_EQ(pl, f.payload_len, "Hello", 5);
    free(b);
}

TEST(ws_rfc6455_fragmented_hello)
{
    /* the §5.7 fragmented "Hel" + "lo", masked as a client must */
    size_t n1, n2;
    uint8_t *a = mk_frame(WS_OP_TEXT, false, "Hel", 3, &n1);
    uint8_t *b = mk_frame(WS_OP_CONT, true, "lo", 2, &n2);
    struct ws_msg_state st = { 0 };
    struct ws_frame f;
    ASSERT_EQ(ws_frame_parse(a, n1, false, &big_lim, &f, NULL), (ssize_t)n1);
    ASSERT_EQ(ws_msg_track(&st, &f, &big_lim), WS_ACT_START);
    ASSERT_MEM_EQ(f.payload, f.payload_len, "Hel", 3);
    ASSERT_EQ(ws_frame_parse(b, n2, false, &big_lim, &f, NULL), (ssize_t)n2);
    ASSERT_EQ(ws_msg_track(&st, &f, &big_lim), WS_ACT_END);
    ASSERT_MEM_EQ(f.payload, f.payload_len, "lo", 2);
    ASSERT_EQ(st.opcode, WS_OP_TEXT);
    ASSERT_EQ(st.len, 5);
    ASSERT(!st.compressed);
    ws_msg_reset(&st);
    ASSERT_EQ(st.opcode, 0);
    ASSERT_EQ(st.len, 0);
    free(a);
    free(b);
}

TEST(ws_rfc6455_server_headers)
{
    uint8_t h[WS_MAX_HEADER];
    size_t n;
    uint8_t *want;

    /* §5.7: unmasked "Hello", 256 bytes and 64 KiB binary */
    ASSERT_EQ(ws_frame_header(h, WS_OP_TEXT, true, false, 5), 2);
    want = test_unhex("81 05", &n);
    ASSERT_MEM_EQ(h, 2, want, n);
    free(want);
    ASSERT_EQ(ws_frame_header(h, WS_OP_BINARY, true, false, 256), 4);
    want = test_unhex("82 7e 01 00", &n);
    ASSERT_MEM_EQ(h, 4, want, n);
    free(want);
    ASSERT_EQ(ws_frame_header(h, WS_OP_BINARY, true, false, 65536), 10);
    want = test_unhex("82 7f 00 00 00 00 00 01 00 00", &n);
    ASSERT_MEM_EQ(h, 10, want, n);
    free(want);
    /* fragment and compressed bits */
    ASSERT_EQ(ws_frame_header(h, WS_OP_TEXT, false, true, 0), 2);
    ASSERT_EQ(h[0], 0x41);
    ASSERT_EQ(h[1], 0x00);
    ASSERT_EQ(ws_frame_header(h, WS_OP_CLOSE, true, false, 125), 2);
    ASSERT_EQ(h[0], 0x88);
    ASSERT_EQ(h[1], 125);
    /* boundaries */
    ASSERT_EQ(ws_frame_header(h, WS_OP_BINARY, true, false, 125), 2);
    ASSERT_EQ(ws_frame_header(h, WS_OP_BINARY, true, false, 126), 4);
    ASSERT_EQ(h[1], 126);
    ASSERT_EQ(ws_frame_header(h, WS_OP_BINARY, true, false, 65535), 4);
    ASSERT_EQ(h[2], 0xff);
    ASSERT_EQ(h[3], 0xff);
    ASSERT_EQ(ws_frame_header(h, WS_OP_BINARY, true, false, 0x7fffffffffffffffull), 10);
    ASSERT_EQ(h[2], 0x7f);
    ASSERT_EQ(h[9], 0xff);
}

/* ---- lengths, splits, guard page ---- */

static const size_t test_lengths[] = { 0, 1, 7, 8, 9, 125, 126, 127, 1000, 65535, 65536, 70001 };

static uint8_t *pattern(size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 31 + (i >> 8));
    return p;
}

TEST(ws_parse_all_length_encodings)
{
    for (size_t i = 0; i < ARRAY_SIZE(test_lengths); i++) {
        size_t len = test_lengths[i], n;
        uint8_t *pl = pattern(len);
        uint8_t *fr = mk_frame(WS_OP_BINARY, true, pl, len, &n);
        size_t hdr = len < 126 ? 6 : len <= 0xffff ? 8 : 14;
        ASSERT_EQ(n, hdr + len);
        uint8_t *g = gcopy(fr, n);
        struct ws_frame f;
        ASSERT_EQ(ws_frame_parse(g, n, false, &big_lim, &f, NULL), (ssize_t)n);
        ASSERT_EQ(f.opcode, WS_OP_BINARY);
        ASSERT(f.payload == g + hdr);
        ASSERT_MEM_EQ(f.payload, f.payload_len, pl, len);
        gfree(g, n);
        /* the payload view is unmasked in place; bytes after the frame are untouched */
        uint8_t *two = malloc(n + 3);
        memcpy(two, fr, n);
        memcpy(two + n, "\x81\x80\x01", 3);
        ASSERT_EQ(ws_frame_parse(two, n + 3, false, &big_lim, &f, NULL), (ssize_t)n);
        ASSERT_MEM_EQ(two + n, 3, "\x81\x80\x01", 3);
        free(two);
        free(fr);
        free(pl);
    }
}

TEST(ws_parse_non_minimal_lengths_accepted)
{
    /* §5.2 asks senders for the minimal encoding; like Bandit we accept the others */
    int encs[] = { 2, 8 };
    for (size_t e = 0; e < ARRAY_SIZE(encs); e++) {
        size_t n;
        uint8_t *fr = mk_frame_ex(0x82, "abc", 3, encs[e], true, &n);
        struct ws_frame f;
        uint8_t pl[3];
        ASSERT_EQ(parse_guarded(fr, n, false, &big_lim, &f, pl, NULL), (ssize_t)n);
        ASSERT_MEM_EQ(pl, f.payload_len, "abc", 3);
        free(fr);
    }
}

TEST(ws_parse_split_at_every_byte)
{
    for (size_t i = 0; i < ARRAY_SIZE(test_lengths); i++) {
        size_t len = test_lengths[i], n;
        if (len > 1000)
            continue; /* every prefix of a 64 KiB frame on its own guard page is slow and adds nothing */
        uint8_t *pl = pattern(len);
        uint8_t *fr = mk_frame(WS_OP_TEXT, true, pl, len, &n);
        size_t hdr = n - len;
        for (size_t k = 0; k < n; k++) {
            struct ws_frame f;
            size_t need = 0;
            uint8_t *g = gcopy(fr, k);
            ASSERT_EQ(ws_frame_parse(g, k, false, &big_lim, &f, &need), 0);
            /* a prefix must not be modified: the caller will re-parse it with more bytes */
            ASSERT_MEM_EQ(g, k, fr, k);
            size_t lenbytes = hdr == 6 ? 2 : hdr == 8 ? 4 : 10;
            size_t want = k < 2 ? 2 : k < lenbytes ? hdr : n;
            ASSERT_EQ(need, want);
            gfree(g, k);
        }
        /* and at every split point, the second half arriving later */
        for (size_t k = 0; k <= n; k++) {
            uint8_t *acc = malloc(n);
            struct ws_frame f;
            size_t need = 0;
            memcpy(acc, fr, k);
            ssize_t r = ws_frame_parse(acc, k, false, &big_lim, &f, &need);
            ASSERT_EQ(r, k == n ? (ssize_t)n : 0);
            if (k < n) {
                memcpy(acc + k, fr + k, n - k);
                ASSERT_EQ(ws_frame_parse(acc, n, false, &big_lim, &f, &need), (ssize_t)n);
            }
            ASSERT_MEM_EQ(f.payload, f.payload_len, pl, len);
            free(acc);
        }
        free(fr);
        free(pl);
    }
}

TEST(ws_parse_need_is_exact_for_big_frames)
{
    size_t n;
    uint8_t *pl = pattern(70001);
    uint8_t *fr = mk_frame(WS_OP_BINARY, true, pl, 70001, &n);
    struct ws_frame f;
    size_t need = 0;
    ASSERT_EQ(ws_frame_parse(fr, 1, false, &big_lim, &f, &need), 0);
    ASSERT_EQ(need, 2);
    ASSERT_EQ(ws_frame_parse(fr, 2, false, &big_lim, &f, &need), 0);
    ASSERT_EQ(need, 14);
    ASSERT_EQ(ws_frame_parse(fr, 9, false, &big_lim, &f, &need), 0);
    ASSERT_EQ(need, 14);
    /* the total is known once the length field is complete, before the mask key */
    ASSERT_EQ(ws_frame_parse(fr, 10, false, &big_lim, &f, &need), 0);
    ASSERT_EQ(need, n);
    ASSERT_EQ(ws_frame_parse(fr, 13, false, &big_lim, &f, &need), 0);
    ASSERT_EQ(need, n);
    ASSERT_EQ(ws_frame_parse(fr, 14, false, &big_lim, &f, &need), 0);
    ASSERT_EQ(need, n);
    ASSERT_EQ(ws_frame_parse(fr, n - 1, false, &big_lim, &f, &need), 0);
    ASSERT_EQ(need, n);
    ASSERT_EQ(ws_frame_parse(fr, 0, false, &big_lim, &f, &need), 0);
    ASSERT_EQ(need, 2);
    /* need may be NULL */
    ASSERT_EQ(ws_frame_parse(fr, 3, false, &big_lim, &f, NULL), 0);
    ASSERT_EQ(ws_frame_parse(fr, n, false, &big_lim, &f, NULL), (ssize_t)n);
    free(fr);
    free(pl);
}

/* Feed a byte stream one byte at a time into an accumulator, parsing and tracking as a connection would.
 * Returns the text of completed data messages joined with '|', control frames as "<op>:payload". */
static char *drive_stream(const uint8_t *s, size_t n, bool deflate, const struct ws_limits *lim, int *err)
{
    uint8_t *acc = malloc(n + 1);
    size_t have = 0;
    char *log = calloc(1, n * 2 + 64);
    struct ws_msg_state st = { 0 };
    char *msg = malloc(n + 1);
    size_t mlen = 0;
    *err = 0;
    for (size_t i = 0; i < n; i++) {
        acc[have++] = s[i];
        struct ws_frame f;
        size_t need = 0;
        ssize_t r = ws_frame_parse(acc, have, deflate, lim, &f, &need);
        if (r < 0) {
            *err = (int)r;
            break;
        }
        if (r == 0) {
            if (need <= have)
                TEST_FAIL("need %zu <= have %zu", need, have);
            continue;
        }
        int act = ws_msg_track(&st, &f, lim);
        if (act < 0) {
            *err = act;
            break;
        }
        if (act == WS_ACT_CONTROL) {
            sprintf(log + strlen(log), "%x:%.*s|", f.opcode, (int)f.payload_len, (const char *)f.payload);
        } else if (act == WS_ACT_MESSAGE) {
            sprintf(log + strlen(log), "%.*s|", (int)f.payload_len, (const char *)f.payload);
        } else {
            if (act == WS_ACT_START)
                mlen = 0;
            memcpy(msg + mlen, f.payload, f.payload_len);
            mlen += f.payload_len;
            if (act == WS_ACT_END) {
                sprintf(log + strlen(log), "%.*s|", (int)mlen, msg);
                ws_msg_reset(&st);
            }
        }
        memmove(acc, acc + r, have - (size_t)r);
        have -= (size_t)r;
    }
    free(acc);
    free(msg);
    return log;
}

static size_t append_frame(uint8_t *dst, uint8_t op, bool fin, const char *payload)
{
    size_t n;
    uint8_t *fr = mk_frame(op, fin, payload, strlen(payload), &n);
    memcpy(dst, fr, n);
    free(fr);
    return n;
}

TEST(ws_stream_one_byte_at_a_time)
{
    uint8_t s[4096];
    size_t n = 0;
    char big[300];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    n += append_frame(s + n, WS_OP_TEXT, true, "one");
    n += append_frame(s + n, WS_OP_BINARY, false, "tw");
    n += append_frame(s + n, WS_OP_PING, true, "p");
    n += append_frame(s + n, WS_OP_CONT, false, "");
    n += append_frame(s + n, WS_OP_PONG, true, "");
    n += append_frame(s + n, WS_OP_CONT, true, "o");
    n += append_frame(s + n, WS_OP_TEXT, true, big);
    n += append_frame(s + n, WS_OP_TEXT, true, "");
    n += append_frame(s + n, WS_OP_CLOSE, true, "\x03\xe8");
    int err;
    char *log = drive_stream(s, n, false, &big_lim, &err);
    ASSERT_EQ(err, 0);
    char want[1024];
    snprintf(want, sizeof(want), "one|9:p|a:|two|%s||8:\x03\xe8|", big);
    ASSERT_STR_EQ(log, want);
    free(log);
}

/* ---- protocol violations ---- */

TEST(ws_violations_header)
{
    const struct ws_limits *L = &big_lim;
    /* RSV2, RSV3 (§5.2), with and without deflate; decided from byte 0 */
    ASSERT_EQ(parse_err("a1", false, L), WS_ERR_PROTOCOL);
    ASSERT_EQ(parse_err("91", true, L), WS_ERR_PROTOCOL);
    ASSERT_EQ(parse_err("a1 80 00 00 00 00", true, L), WS_ERR_PROTOCOL);
    ASSERT_EQ(parse_err("f1 80 00 00 00 00", true, L), WS_ERR_PROTOCOL);
    /* RSV1 without deflate; on control frames even with deflate (RFC 7692 §6) */
    ASSERT_EQ(parse_err("c1", false, L), WS_ERR_PROTOCOL);
    ASSERT_EQ(parse_err("c2 80 00 00 00 00", false, L), WS_ERR_PROTOCOL);
    ASSERT_EQ(parse_err("40", false, L), WS_ERR_PROTOCOL);
    ASSERT_EQ(parse_err("c9", true, L), WS_ERR_PROTOCOL);
    ASSERT_EQ(parse_err("c8 80 00 00 00 00", true, L), WS_ERR_PROTOCOL);
    ASSERT_EQ(parse_err("ca", true, L), WS_ERR_PROTOCOL);
    /* reserved opcodes */
    static const char *reserved[] = { "83", "84", "85", "86", "87", "8b", "8c", "8d", "8e", "8f" };
    for (size_t i = 0; i < ARRAY_SIZE(reserved); i++) {
        ASSERT_EQ(parse_err(reserved[i], false, L), WS_ERR_PROTOCOL);
        char full[64];
        snprintf(full, sizeof(full), "%s 80 01 02 03 04", reserved[i]);
        ASSERT_EQ(parse_err(full, true, L), WS_ERR_PROTOCOL);
    }
    /* control frames fragmented (§5.5) */
    ASSERT_EQ(parse_err("08", false, L), WS_ERR_PROTOCOL);
    ASSERT_EQ(parse_err("09 80 00 00 00 00", false, L), WS_ERR_PROTOCOL);
    ASSERT_EQ(parse_err("0a 80 00 00 00 00", false, L), WS_ERR_PROTOCOL);
    /* control payload > 125: 126 and 127 length codes, decided from byte 1 */
    ASSERT_EQ(parse_err("89 fe", false, L), WS_ERR_PROTOCOL);
    ASSERT_EQ(parse_err("88 ff", false, L), WS_ERR_PROTOCOL);
    ASSERT_EQ(parse_err("8a fe 00 05 00 00 00 00 61 62 63 64 65", false, L), WS_ERR_PROTOCOL);
    /* unmasked (§5.1) */
    ASSERT_EQ(parse_err("82 00", false, L), WS_ERR_PROTOCOL);
    ASSERT_EQ(parse_err("88 00", false, L), WS_ERR_PROTOCOL);
    /* 64-bit length with MSB (§5.2), decided as soon as that byte arrives */
    ASSERT_EQ(parse_err("82 ff 80", false, L), WS_ERR_PROTOCOL);
    ASSERT_EQ(parse_err("82 ff 80 00 00 00 00 00 00 00 01 02 03 04", false, L), WS_ERR_PROTOCOL);
    ASSERT_EQ(parse_err("82 ff ff ff ff ff ff ff ff ff", false, L), WS_ERR_PROTOCOL);
    /* the 7 largest positive 64-bit lengths are merely too big */
    ASSERT_EQ(parse_err("82 ff 7f ff ff ff ff ff ff ff 01 02 03 04", false, L), WS_ERR_TOO_BIG);
    /* a valid control frame of 125 bytes is fine */
    size_t n;
    uint8_t pl[125];
    memset(pl, 'a', sizeof(pl));
    uint8_t *fr = mk_frame(WS_OP_PING, true, pl, 125, &n);
    struct ws_frame f;
    ASSERT_EQ(parse_guarded(fr, n, false, L, &f, NULL, NULL), (ssize_t)n);
    free(fr);
    /* RSV1 on data frames with deflate passes the parser */
    fr = mk_frame_ex(0xc1, "x", 1, 0, true, &n);
    ASSERT_EQ(parse_guarded(fr, n, true, L, &f, NULL, NULL), (ssize_t)n);
    ASSERT(f.rsv1);
    free(fr);
    fr = mk_frame_ex(0x40, "x", 1, 0, true, &n);
    ASSERT_EQ(parse_guarded(fr, n, true, L, &f, NULL, NULL), (ssize_t)n);
    ASSERT(f.rsv1);
    free(fr);
}

/* Parse one frame (must succeed) and track it. */
static int track_one(struct ws_msg_state *st, uint8_t b0, size_t len, bool deflate, const struct ws_limits *L)
{
    size_t n;
    uint8_t *pl = pattern(len);
    uint8_t *fr = mk_frame_ex(b0, pl, len, 0, true, &n);
    struct ws_frame f;
    ssize_t r = ws_frame_parse(fr, n, deflate, L, &f, NULL);
    if (r != (ssize_t)n)
        TEST_FAIL("parse %zd != %zu", r, n);
    int act = ws_msg_track(st, &f, L);
    free(fr);
    free(pl);
    return act;
}

TEST(ws_violations_fragmentation)
{
    const struct ws_limits *L = &big_lim;
    struct ws_msg_state st = { 0 };
    /* CONT without a message (§5.4) */
    ASSERT_EQ(track_one(&st, 0x80, 1, false, L), WS_ERR_PROTOCOL);
    ASSERT_EQ(track_one(&st, 0x00, 1, false, L), WS_ERR_PROTOCOL);
    ASSERT_EQ(st.opcode, 0);
    /* data frame while a message is in progress */
    ASSERT_EQ(track_one(&st, 0x01, 1, false, L), WS_ACT_START);
    ASSERT_EQ(track_one(&st, 0x81, 1, false, L), WS_ERR_PROTOCOL);
    ASSERT_EQ(track_one(&st, 0x02, 1, false, L), WS_ERR_PROTOCOL);
    ASSERT_EQ(track_one(&st, 0x82, 1, false, L), WS_ERR_PROTOCOL);
    ASSERT_EQ(st.opcode, WS_OP_TEXT); /* unchanged by errors */
    ASSERT_EQ(st.len, 1);
    /* control frames are fine in between */
    ASSERT_EQ(track_one(&st, 0x89, 3, false, L), WS_ACT_CONTROL);
    ASSERT_EQ(track_one(&st, 0x8a, 0, false, L), WS_ACT_CONTROL);
    ASSERT_EQ(track_one(&st, 0x00, 2, false, L), WS_ACT_CONT);
    ASSERT_EQ(track_one(&st, 0x88, 2, false, L), WS_ACT_CONTROL);
    ASSERT_EQ(track_one(&st, 0x80, 3, false, L), WS_ACT_END);
    ASSERT_EQ(st.len, 6);
    ASSERT_EQ(st.opcode, WS_OP_TEXT);
    ws_msg_reset(&st);
    /* RSV1 on CONT (RFC 7692 §6.1), compressed flag from the first frame */
    ASSERT_EQ(track_one(&st, 0x42, 4, true, L), WS_ACT_START);
    ASSERT(st.compressed);
    ASSERT_EQ(st.opcode, WS_OP_BINARY);
    ASSERT_EQ(track_one(&st, 0x40, 1, true, L), WS_ERR_PROTOCOL);
    ASSERT_EQ(track_one(&st, 0xc0, 1, true, L), WS_ERR_PROTOCOL);
    ASSERT_EQ(track_one(&st, 0x80, 1, true, L), WS_ACT_END);
    ASSERT(st.compressed);
    ws_msg_reset(&st);
    ASSERT(!st.compressed);
    /* unfragmented messages leave st alone */
    ASSERT_EQ(track_one(&st, 0xc1, 1, true, L), WS_ACT_MESSAGE);
    ASSERT_EQ(track_one(&st, 0x82, 0, true, L), WS_ACT_MESSAGE);
    ASSERT_EQ(st.opcode, 0);
}

TEST(ws_violations_stream_codes)
{
    /* the exact error through the one-byte-at-a-time driver */
    uint8_t s[256];
    size_t n = 0;
    int err;
    n += append_frame(s + n, WS_OP_TEXT, false, "a");
    n += append_frame(s + n, WS_OP_TEXT, true, "b");
    char *log = drive_stream(s, n, false, &big_lim, &err);
    ASSERT_EQ(err, WS_ERR_PROTOCOL);
    ASSERT_EQ(ws_err_close_code(err), 1002);
    free(log);
}

/* ---- limits: exactly max and max + 1 ---- */

TEST(ws_limit_max_frame)
{
    size_t maxes[] = { 0, 1, 125, 126, 65535, 65536, 70000 };
    for (size_t i = 0; i < ARRAY_SIZE(maxes); i++) {
        struct ws_limits L = { maxes[i], SIZE_MAX, SIZE_MAX };
        for (size_t len = maxes[i]; len <= maxes[i] + 1; len++) {
            size_t n;
            uint8_t *pl = pattern(len);
            uint8_t *fr = mk_frame(WS_OP_BINARY, true, pl, len, &n);
            size_t hdr = n - len;
            struct ws_frame f;
            size_t need;
            ssize_t want = len > maxes[i] ? WS_ERR_TOO_BIG : (ssize_t)n;
            ASSERT_EQ(parse_guarded(fr, n, false, &L, &f, NULL, &need), want);
            /* decided from the header alone, before the payload arrives */
            ASSERT_EQ(parse_guarded(fr, hdr, false, &L, &f, NULL, &need),
                      len > maxes[i] ? WS_ERR_TOO_BIG : len == 0 ? (ssize_t)n : 0);
            if (len < 126)
                ASSERT_EQ(parse_guarded(fr, 2, false, &L, &f, NULL, &need),
                          len > maxes[i] ? WS_ERR_TOO_BIG : 0);
            free(fr);
            free(pl);
        }
    }
    /* control frames obey max_frame too */
    struct ws_limits L = { 4, SIZE_MAX, SIZE_MAX };
    ASSERT_EQ(parse_err("89 85", false, &L), WS_ERR_TOO_BIG);
    ASSERT_EQ(parse_err("89 84 00 00 00 00 01 02 03 04", false, &L), 10);
    ASSERT_EQ(ws_err_close_code(WS_ERR_TOO_BIG), 1009);
}

TEST(ws_limit_max_message)
{
    struct ws_limits L = { 1000, 100, SIZE_MAX };
    struct ws_msg_state st = { 0 };
    /* single frame */
    ASSERT_EQ(track_one(&st, 0x82, 100, false, &L), WS_ACT_MESSAGE);
    ASSERT_EQ(track_one(&st, 0x82, 101, false, &L), WS_ERR_TOO_BIG);
    ASSERT_EQ(track_one(&st, 0x02, 101, false, &L), WS_ERR_TOO_BIG);
    ASSERT_EQ(st.opcode, 0);
    /* fragmented: exactly 100 */
    ASSERT_EQ(track_one(&st, 0x01, 40, false, &L), WS_ACT_START);
    ASSERT_EQ(track_one(&st, 0x00, 0, false, &L), WS_ACT_CONT);
    ASSERT_EQ(track_one(&st, 0x00, 50, false, &L), WS_ACT_CONT);
    ASSERT_EQ(track_one(&st, 0x80, 10, false, &L), WS_ACT_END);
    ASSERT_EQ(st.len, 100);
    ws_msg_reset(&st);
    /* fragmented: 101 */
    ASSERT_EQ(track_one(&st, 0x01, 40, false, &L), WS_ACT_START);
    ASSERT_EQ(track_one(&st, 0x00, 50, false, &L), WS_ACT_CONT);
    ASSERT_EQ(track_one(&st, 0x80, 11, false, &L), WS_ERR_TOO_BIG);
    ASSERT_EQ(track_one(&st, 0x00, 11, false, &L), WS_ERR_TOO_BIG);
    ASSERT_EQ(st.len, 90);
    /* a huge continuation cannot wrap the counter */
    struct ws_limits L2 = { SIZE_MAX, SIZE_MAX - 1, SIZE_MAX };
    struct ws_msg_state st2 = { WS_OP_TEXT, false, SIZE_MAX - 10 };
    struct ws_frame f = { WS_OP_CONT, true, false, NULL, 20 };
    ASSERT_EQ(ws_msg_track(&st2, &f, &L2), WS_ERR_TOO_BIG);
    f.payload_len = 9;
    ASSERT_EQ(ws_msg_track(&st2, &f, &L2), WS_ACT_END);
    ASSERT_EQ(st2.len, SIZE_MAX - 1);
}

/* ---- close frames ---- */

static int close_parse_hex(const char *hex, uint16_t *code)
{
    size_t n;
    uint8_t *b = test_unhex(hex, &n);
    uint8_t *g = gcopy(b, n);
    int r = ws_close_parse(g, n, code);
    gfree(g, n);
    free(b);
    return r;
}

TEST(ws_close_parse_table)
{
    static const struct {
        uint16_t code;
        int want;
    } table[] = {
        { 0, WS_ERR_PROTOCOL },    { 1, WS_ERR_PROTOCOL },    { 999, WS_ERR_PROTOCOL },
        { 1000, 0 },               { 1001, 0 },               { 1002, 0 },
        { 1003, 0 },               { 1004, WS_ERR_PROTOCOL }, { 1005, WS_ERR_PROTOCOL },
        { 1006, WS_ERR_PROTOCOL }, { 1007, 0 },               { 1008, 0 },
        { 1009, 0 },               { 1010, 0 },               { 1011, 0 },
        { 1012, 0 },               { 1013, 0 },               { 1014, 0 },
        { 1015, WS_ERR_PROTOCOL }, { 1016, WS_ERR_PROTOCOL }, { 1100, WS_ERR_PROTOCOL },
        { 2000, WS_ERR_PROTOCOL }, { 2999, WS_ERR_PROTOCOL }, { 3000, 0 },
        { 3999, 0 },               { 4000, 0 },               { 4999, 0 },
        { 5000, WS_ERR_PROTOCOL }, { 65535, WS_ERR_PROTOCOL },
    };
    for (size_t i = 0; i < ARRAY_SIZE(table); i++) {
        uint8_t p[2] = { (uint8_t)(table[i].code >> 8), (uint8_t)table[i].code };
        uint16_t code = 7;
        uint8_t *g = gcopy(p, 2);
        int r = ws_close_parse(g, 2, &code);
        gfree(g, 2);
        if (r != table[i].want)
            TEST_FAIL("code %u: %d != %d", table[i].code, r, table[i].want);
        if (r == 0)
            ASSERT_EQ(code, table[i].code);
    }
    uint16_t code = 0;
    ASSERT_EQ(close_parse_hex("", &code), 0);
    ASSERT_EQ(code, 1005);
    ASSERT_EQ(close_parse_hex("03", &code), WS_ERR_PROTOCOL);
    ASSERT_EQ(close_parse_hex("03 e8 48 69", &code), 0);
    ASSERT_EQ(code, 1000);
    ASSERT_EQ(close_parse_hex("03 e9 ce ba e1 bd b9 cf 83 ce bc ce b5", &code), 0); /* κόσμε */
    ASSERT_EQ(code, 1001);
    /* invalid UTF-8 reason → 1007 (Autobahn 7.5.1) */
    ASSERT_EQ(close_parse_hex("03 e8 ce ba e1 bd b9 cf 83 ce bc ce b5 ed a0 80 65 64 69 74 65 64", &code),
              WS_ERR_UTF8);
    ASSERT_EQ(close_parse_hex("03 e8 ff", &code), WS_ERR_UTF8);
    ASSERT_EQ(close_parse_hex("03 e8 c3", &code), WS_ERR_UTF8);
    ASSERT_EQ(ws_err_close_code(WS_ERR_UTF8), 1007);
    /* longest payload and one more */
    uint8_t big[126];
    memset(big, 'r', sizeof(big));
    big[0] = 0x03;
    big[1] = 0xe8;
    ASSERT_EQ(ws_close_parse(big, 125, &code), 0);
    ASSERT_EQ(ws_close_parse(big, 126, &code), WS_ERR_PROTOCOL);
}

TEST(ws_close_payload_build)
{
    uint8_t out[WS_MAX_CONTROL];
    uint16_t code;
    ASSERT_EQ(ws_close_payload(out, 1000, NULL), 2);
    ASSERT_EQ(out[0], 0x03);
    ASSERT_EQ(out[1], 0xe8);
    ASSERT_EQ(ws_close_payload(out, 1012, "restart"), 9);
    ASSERT_MEM_EQ(out, 9, "\x03\xf4restart", 9);
    ASSERT_EQ(ws_close_parse(out, 9, &code), 0);
    ASSERT_EQ(code, 1012);
    ASSERT_EQ(ws_close_payload(out, 0, "x"), 0);
    ASSERT_EQ(ws_close_payload(out, 1005, "x"), 0);
    /* 123-byte reason fits exactly; 124 is cut */
    char r[300];
    memset(r, 'a', sizeof(r));
    r[123] = 0;
    ASSERT_EQ(ws_close_payload(out, 1001, r), 125);
    r[123] = 'a';
    r[124] = 0;
    ASSERT_EQ(ws_close_payload(out, 1001, r), 125);
    /* a multibyte character straddling the cut is dropped whole, for every alignment */
    const char *chars[] = { "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80" };
    for (size_t c = 0; c < ARRAY_SIZE(chars); c++) {
        size_t cl = strlen(chars[c]);
        for (size_t pre = 110; pre < 124; pre++) {
            size_t k = 0;
            memset(r, 'a', pre);
            k = pre;
            while (k + cl < sizeof(r) - 1) {
                memcpy(r + k, chars[c], cl);
                k += cl;
            }
            r[k] = 0;
            size_t len = ws_close_payload(out, 4000, r);
            ASSERT(len <= 125);
            ASSERT(len > 125 - cl);
            ASSERT(ws_utf8_valid(out + 2, len - 2));
            ASSERT_MEM_EQ(out + 2, len - 2, r, len - 2);
            ASSERT_EQ(ws_close_parse(out, len, &code), 0);
        }
    }
}

/* ---- UTF-8 ---- */

static bool utf8_hex_valid(const char *hex)
{
    size_t n;
    uint8_t *b = test_unhex(hex, &n);
    uint8_t *g = gcopy(b, n);
    bool v = ws_utf8_valid(g, n);
    gfree(g, n);
    free(b);
    return v;
}

TEST(ws_utf8_table)
{
    static const struct {
        const char *hex;
        bool valid;
    } table[] = {
        { "", true },
        { "00", true },
        { "7f", true },
        { "48 65 6c 6c 6f 2d c2 b5 40 c3 9f c3 b6 c3 a4 c3 bc c3 a0 c3 a1 2d 55 54 46 2d 38 21 21", true },
        { "ce ba e1 bd b9 cf 83 ce bc ce b5", true },
        { "c2 80", true },           /* U+0080 */
        { "df bf", true },           /* U+07FF */
        { "e0 a0 80", true },        /* U+0800 */
        { "ed 9f bf", true },        /* U+D7FF */
        { "ee 80 80", true },        /* U+E000 */
        { "ef bf bd", true },        /* U+FFFD */
        { "ef bf bf", true },        /* U+FFFF (noncharacter, still valid) */
        { "f0 90 80 80", true },     /* U+10000 */
        { "f4 8f bf bf", true },     /* U+10FFFF */
        { "f0 9f 98 80", true },     /* emoji */
        /* lone continuation bytes and bad leads */
        { "80", false },
        { "bf", false },
        { "41 80 41", false },
        { "fe", false },
        { "ff", false },
        { "f5 80 80 80", false },
        { "f8 88 80 80 80", false },
        { "fc 84 80 80 80 80", false },
        /* overlongs */
        { "c0 80", false },
        { "c0 af", false },
        { "c1 bf", false },
        { "e0 80 80", false },
        { "e0 80 af", false },
        { "e0 9f bf", false },
        { "f0 80 80 80", false },
        { "f0 80 80 af", false },
        { "f0 8f bf bf", false },
        /* surrogates */
        { "ed a0 80", false },
        { "ed ad bf", false },
        { "ed ae 80", false },
        { "ed b0 80", false },
        { "ed bf bf", false },
        { "ed a0 80 ed b0 80", false },
        /* above U+10FFFF */
        { "f4 90 80 80", false },
        { "f7 bf bf bf", false },
        /* truncated */
        { "c3", false },
        { "e2 82", false },
        { "f0 9f 98", false },
        { "41 42 43 44 45 46 47 f0 9f 98", false },
        { "e2 82 41", false },
        { "f0 9f 41 80", false },
        { "c3 41", false },
        /* bad continuation */
        { "c3 c3", false },
        { "e2 c2 ac", false },
        { "f0 9f 98 c0", false },
    };
    for (size_t i = 0; i < ARRAY_SIZE(table); i++)
        if (utf8_hex_valid(table[i].hex) != table[i].valid)
            TEST_FAIL("utf8 \"%s\" should be %s", table[i].hex, table[i].valid ? "valid" : "invalid");
}

/* Independent reference: decode, then check minimality, surrogates and range. */
static bool utf8_ref(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t len;
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        static const uint32_t min[5] = { 0, 0, 0x80, 0x800, 0x10000 };
        if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

TEST(ws_utf8_exhaustive_short_sequences)
{
    uint8_t b[3];
    for (unsigned a = 0; a < 256; a++) {
        b[0] = (uint8_t)a;
        ASSERT_EQ(ws_utf8_valid(b, 1), utf8_ref(b, 1));
        for (unsigned c = 0; c < 256; c++) {
            b[1] = (uint8_t)c;
            ASSERT_EQ(ws_utf8_valid(b, 2), utf8_ref(b, 2));
            if (a < 0xe0 || a > 0xf4)
                continue; /* 3-byte sweep only where a 3- or 4-byte lead starts */
            for (unsigned d = 0; d < 256; d++) {
                b[2] = (uint8_t)d;
                if (ws_utf8_valid(b, 3) != utf8_ref(b, 3))
                    TEST_FAIL("%02x %02x %02x", a, c, d);
            }
        }
    }
    /* 4-byte: every lead F0-F7 with every second byte, and the third/fourth at their edges */
    static const uint8_t edge[] = { 0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff };
    uint8_t q[4];
    for (unsigned a = 0xf0; a < 0x100; a++)
        for (unsigned c = 0; c < 256; c++)
            for (size_t x = 0; x < ARRAY_SIZE(edge); x++)
                for (size_t y = 0; y < ARRAY_SIZE(edge); y++) {
                    q[0] = (uint8_t)a;
                    q[1] = (uint8_t)c;
                    q[2] = edge[x];
                    q[3] = edge[y];
                    ASSERT_EQ(ws_utf8_valid(q, 4), utf8_ref(q, 4));
                }
}

TEST(ws_utf8_fast_path_positions)
{
    /* multibyte characters and errors at every offset around the 8-byte ASCII fast path */
    static const char *seqs[] = { "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\x80", "\xed\xa0\x80",
                                  "\xc3", "\xf4\x90\x80\x80" };
    uint8_t buf[64];
    for (size_t s = 0; s < ARRAY_SIZE(seqs); s++) {
        size_t sl = strlen(seqs[s]);
        for (size_t pre = 0; pre < 24; pre++)
            for (size_t post = 0; post < 20; post++) {
                size_t n = pre + sl + post;
                memset(buf, 'a', n);
                memcpy(buf + pre, seqs[s], sl);
                uint8_t *g = gcopy(buf, n);
                ASSERT_EQ(ws_utf8_valid(g, n), utf8_ref(buf, n));
                gfree(g, n);
            }
    }
    /* pseudo-random mixes */
    uint32_t x = 12345;
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)(x % 40);
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245 + 12345;
            uint8_t v = (uint8_t)(x >> 16);
            buf[i] = (x >> 28) < 10 ? (uint8_t)(v & 0x7f) : v;
        }
        ASSERT_EQ(ws_utf8_valid(buf, n), utf8_ref(buf, n));
        x = x * 1103515245 + 12345;
    }
}

/* ---- permessage-deflate ---- */

static int inflate_hex(struct ws_zctx *z, const char *hex, struct buf *out, size_t max)
{
    size_t n;
    uint8_t *b = test_unhex(hex, &n);
    uint8_t *g = gcopy(b, n);
    int r = ws_inflate_msg(z, g, n, out, max);
    gfree(g, n);
    free(b);
    return r;
}

TEST(ws_rfc7692_examples)
{
    struct ws_zctx *z = ws_zctx_new(-1);
    struct buf out = BUF_INIT;
    ASSERT(z);
    /* §7.2.3.1 */
    ASSERT_EQ(inflate_hex(z, "f2 48 cd c9 c9 07 00", &out, 100), 0);
    ASSERT_MEM_EQ(out.p, out.len, "Hello", 5);
    /* §7.2.3.2: the second message needs the first one's window, which no-context-takeover forbids */
    out.len = 0;
    ASSERT_EQ(inflate_hex(z, "f2 48 cd c9 c9 07 00", &out, 100), 0);
    ASSERT_EQ(inflate_hex(z, "f2 00 11 00 00", &out, 100), WS_ERR_INFLATE);
    ASSERT_MEM_EQ(out.p, out.len, "Hello", 5); /* length restored on error */
    ASSERT_EQ(ws_err_close_code(WS_ERR_INFLATE), 1007);
    /* the stream was reset after the error */
    out.len = 0;
    ASSERT_EQ(inflate_hex(z, "f2 48 cd c9 c9 07 00", &out, 100), 0);
    ASSERT_MEM_EQ(out.p, out.len, "Hello", 5);
    /* §7.2.3.3: BFINAL=1 */
    out.len = 0;
    ASSERT_EQ(inflate_hex(z, "f3 48 cd c9 c9 07 00 00", &out, 100), 0);
    ASSERT_MEM_EQ(out.p, out.len, "Hello", 5);
    /* BFINAL=1 without the trailing byte */
    out.len = 0;
    ASSERT_EQ(inflate_hex(z, "f3 48 cd c9 c9 07 00", &out, 100), 0);
    ASSERT_MEM_EQ(out.p, out.len, "Hello", 5);
    /* §7.2.3.4: stored block */
    out.len = 0;
    ASSERT_EQ(inflate_hex(z, "00 05 00 fa ff 48 65 6c 6c 6f 00", &out, 100), 0);
    ASSERT_MEM_EQ(out.p, out.len, "Hello", 5);
    /* §7.2.3.5: two blocks */
    out.len = 0;
    ASSERT_EQ(inflate_hex(z, "f2 48 05 00 00 00 ff ff ca c9 c9 07 00", &out, 100), 0);
    ASSERT_MEM_EQ(out.p, out.len, "Hello", 5);
    /* §7.2.3.6: empty message, and an empty payload */
    out.len = 0;
    ASSERT_EQ(inflate_hex(z, "00", &out, 100), 0);
    ASSERT_EQ(out.len, 0);
    ASSERT_EQ(inflate_hex(z, "", &out, 0), 0);
    ASSERT_EQ(out.len, 0);
    /* deflate side: exactly the RFC bytes, and 0x00 for an empty message */
    struct buf d = BUF_INIT;
    ASSERT_EQ(ws_deflate_msg(z, 15, (const uint8_t *)"Hello", 5, &d, 100), 0);
    size_t n;
    uint8_t *want = test_unhex("f2 48 cd c9 c9 07 00", &n);
    ASSERT_MEM_EQ(d.p, d.len, want, n);
    free(want);
    d.len = 0;
    ASSERT_EQ(ws_deflate_msg(z, 15, (const uint8_t *)"", 0, &d, 100), 0);
    ASSERT_MEM_EQ(d.p, d.len, "\x00", 1);
    /* no context takeover: the same message compresses the same way twice */
    d.len = 0;
    ASSERT_EQ(ws_deflate_msg(z, 15, (const uint8_t *)"Hello", 5, &d, 100), 0);
    ASSERT_EQ(ws_deflate_msg(z, 15, (const uint8_t *)"Hello", 5, &d, 100), 0);
    ASSERT_EQ(d.len, 14);
    ASSERT_MEM_EQ(d.p, 7, d.p + 7, 7);
    buf_free(&d);
    buf_free(&out);
    ws_zctx_free(z);
    ws_zctx_free(NULL);
}

TEST(ws_inflate_corrupt)
{
    struct ws_zctx *z = ws_zctx_new(6);
    struct buf out = BUF_INIT;
    static const char *bad[] = {
        "06",                      /* BTYPE=11 reserved */
        "07",                      /* BFINAL + reserved */
        "00 05 00 00 00 41",       /* stored block with LEN/NLEN mismatch */
        "f2 00 11 00 00",          /* distance too far back */
        "f3 48 cd c9 c9 07 00 ff", /* garbage after a final block */
        "ff ff ff ff",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        out.len = 0;
        int r = inflate_hex(z, bad[i], &out, 1000);
        if (r != WS_ERR_INFLATE)
            TEST_FAIL("\"%s\": %d", bad[i], r);
        ASSERT_EQ(out.len, 0);
        /* the shared stream is usable right after */
        ASSERT_EQ(inflate_hex(z, "f2 48 cd c9 c9 07 00", &out, 5), 0);
        ASSERT_MEM_EQ(out.p, out.len, "Hello", 5);
    }
    buf_free(&out);
    ws_zctx_free(z);
}

/* zlib reference compressor producing a permessage-deflate payload (sync flush, tail stripped). */
static uint8_t *ref_deflate(const uint8_t *in, size_t n, int bits, size_t *out_n)
{
    z_stream s;
    memset(&s, 0, sizeof(s));
    ASSERT_EQ(deflateInit2(&s, 9, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&s, n) + 64;
    uint8_t *o = malloc(cap);
    s.next_in = (Bytef *)in;
    s.avail_in = (uInt)n;
    s.next_out = o;
    s.avail_out = (uInt)cap;
    ASSERT_EQ(deflate(&s, Z_SYNC_FLUSH), Z_OK);
    ASSERT(s.avail_in == 0 && s.avail_out > 0);
    *out_n = cap - s.avail_out - 4;
    deflateEnd(&s);
    return o;
}

TEST(ws_deflate_inflate_round_trip)
{
    struct ws_zctx *z = ws_zctx_new(-1);
    struct buf c = BUF_INIT, d = BUF_INIT;
    static const size_t sizes[] = { 0, 1, 5, 100, 4096, 16384, 16385, 100000, 1u << 20 };
    for (size_t si = 0; si < ARRAY_SIZE(sizes); si++) {
        size_t n = sizes[si];
        uint8_t *text = malloc(n + 1), *rnd = malloc(n + 1);
        uint32_t x = (uint32_t)n + 1;
        for (size_t i = 0; i < n; i++) {
            text[i] = (uint8_t)("{\"topic\":\"device\",\"event\":\"phx_join\"} "[i % 39]);
            x = x * 1103515245 + 12345;
            rnd[i] = (uint8_t)(x >> 16);
        }
        for (int bits = 9; bits <= 15; bits++) {
            for (int k = 0; k < 2; k++) {
                const uint8_t *in = k ? rnd : text;
                c.len = 0;
                d.len = 0;
                ASSERT_EQ(ws_deflate_msg(z, bits, in, n, &c, SIZE_MAX), 0);
                ASSERT_EQ(ws_inflate_msg(z, c.p, c.len, &d, n), 0);
                ASSERT_MEM_EQ(d.p, d.len, in, n);
                /* an independent zlib inflater with exactly that window decodes it (what Mint does) */
                z_stream s;
                memset(&s, 0, sizeof(s));
                ASSERT_EQ(inflateInit2(&s, -bits), Z_OK);
                uint8_t *o = malloc(n + 16);
                uint8_t *inbuf = malloc(c.len + 4);
                memcpy(inbuf, c.p, c.len);
                memcpy(inbuf + c.len, "\x00\x00\xff\xff", 4);
                s.next_in = inbuf;
                s.avail_in = (uInt)(c.len + 4);
                s.next_out = o;
                s.avail_out = (uInt)(n + 16);
                int rc = inflate(&s, Z_SYNC_FLUSH);
                ASSERT(rc == Z_OK || (rc == Z_BUF_ERROR && n == 0));
                ASSERT_MEM_EQ(o, n + 16 - s.avail_out, in, n);
                inflateEnd(&s);
                free(o);
                free(inbuf);
            }
        }
        /* a reference compressor's output inflates too, split over frames or not */
        size_t rn;
        uint8_t *r = ref_deflate(text, n, 15, &rn);
        d.len = 0;
        ASSERT_EQ(ws_inflate_msg(z, r, rn, &d, n), 0);
        ASSERT_MEM_EQ(d.p, d.len, text, n);
        free(r);
        free(text);
        free(rnd);
    }
    /* bad window sizes */
    ASSERT_EQ(ws_deflate_msg(z, 8, (const uint8_t *)"a", 1, &c, SIZE_MAX), WS_ERR_PROTOCOL);
    ASSERT_EQ(ws_deflate_msg(z, 16, (const uint8_t *)"a", 1, &c, SIZE_MAX), WS_ERR_PROTOCOL);
    ASSERT(ws_zctx_new(10) == NULL);
    ASSERT(ws_zctx_new(-2) == NULL);
    buf_free(&c);
    buf_free(&d);
    ws_zctx_free(z);
}

TEST(ws_deflate_appends_and_limit)
{
    struct ws_zctx *z = ws_zctx_new(-1);
    struct buf c = BUF_INIT;
    ASSERT_EQ(buf_try_append(&c, "hdr", 3, 100), 0);
    ASSERT_EQ(ws_deflate_msg(z, 15, (const uint8_t *)"Hello", 5, &c, 10), 0);
    ASSERT_EQ(c.len, 10);
    ASSERT_MEM_EQ(c.p, 3, "hdr", 3);
    /* limit one short: TOO_BIG with the length restored */
    c.len = 3;
    ASSERT_EQ(ws_deflate_msg(z, 15, (const uint8_t *)"Hello", 5, &c, 9), WS_ERR_TOO_BIG);
    ASSERT_EQ(c.len, 3);
    /* incompressible data with limit = len + n: compression does not pay */
    uint8_t rnd[2000];
    uint32_t x = 7;
    for (size_t i = 0; i < sizeof(rnd); i++) {
        x = x * 1103515245 + 12345;
        rnd[i] = (uint8_t)(x >> 16);
    }
    ASSERT_EQ(ws_deflate_msg(z, 15, rnd, sizeof(rnd), &c, c.len + sizeof(rnd)), WS_ERR_TOO_BIG);
    ASSERT_EQ(c.len, 3);
    /* the exact size is accepted, one less is not, across sizes and windows */
    for (int bits = 9; bits <= 15; bits += 3) {
        for (size_t n = 0; n < sizeof(rnd); n += 250) {
            c.len = 0;
            ASSERT_EQ(ws_deflate_msg(z, bits, rnd, n, &c, SIZE_MAX), 0);
            size_t exact = c.len;
            buf_free(&c);
            ASSERT_EQ(ws_deflate_msg(z, bits, rnd, n, &c, exact), 0);
            ASSERT_EQ(c.len, exact);
            ASSERT(c.cap <= exact + 5);
            buf_free(&c);
            ASSERT_EQ(ws_deflate_msg(z, bits, rnd, n, &c, exact - 1), WS_ERR_TOO_BIG);
            ASSERT_EQ(c.len, 0);
            ASSERT(c.cap <= exact + 4);
        }
    }
    buf_free(&c);
    ws_zctx_free(z);
}

TEST(ws_limit_max_inflated)
{
    struct ws_zctx *z = ws_zctx_new(-1);
    struct buf c = BUF_INIT, d = BUF_INIT;
    static const size_t sizes[] = { 0, 1, 100, 16384, 16385, 50000 };
    for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
        size_t n = sizes[i];
        uint8_t *in = pattern(n);
        c.len = 0;
        ASSERT_EQ(ws_deflate_msg(z, 15, in, n, &c, SIZE_MAX), 0);
        d.len = 0;
        ASSERT_EQ(ws_inflate_msg(z, c.p, c.len, &d, n), 0);
        ASSERT_MEM_EQ(d.p, d.len, in, n);
        if (n > 0) {
            d.len = 0;
            ASSERT_EQ(ws_inflate_msg(z, c.p, c.len, &d, n - 1), WS_ERR_TOO_BIG);
            ASSERT_EQ(d.len, 0);
        }
        /* with bytes already in out, max counts only this message */
        d.len = 0;
        ASSERT_EQ(buf_try_append(&d, "prefix", 6, SIZE_MAX), 0);
        ASSERT_EQ(ws_inflate_msg(z, c.p, c.len, &d, n), 0);
        ASSERT_MEM_EQ(d.p, 6, "prefix", 6);
        ASSERT_MEM_EQ(d.p + 6, d.len - 6, in, n);
        free(in);
    }
    buf_free(&c);
    buf_free(&d);
    ws_zctx_free(z);
}

TEST(ws_inflate_zip_bomb)
{
    /* 10 MB of zeros compress to about 10 KB */
    size_t n = 10u << 20;
    uint8_t *zeros = calloc(1, n);
    size_t cn;
    uint8_t *bomb = ref_deflate(zeros, n, 15, &cn);
    free(zeros);
    ASSERT(cn < 20000);
    struct ws_zctx *z = ws_zctx_new(-1);
    struct buf d = BUF_INIT;
    size_t max = 1u << 20;
    ASSERT_EQ(ws_inflate_msg(z, bomb, cn, &d, max), WS_ERR_TOO_BIG);
    ASSERT_EQ(d.len, 0);
    /* bounded memory: the output never grew past the cap + 1 */
    ASSERT(d.cap <= max + 1);
    buf_free(&d);
    /* a tiny cap stops it almost at once */
    ASSERT_EQ(ws_inflate_msg(z, bomb, cn, &d, 10), WS_ERR_TOO_BIG);
    ASSERT(d.cap <= 11);
    buf_free(&d);
    ASSERT_EQ(ws_inflate_msg(z, bomb, cn, &d, 0), WS_ERR_TOO_BIG);
    ASSERT(d.cap <= 1);
    buf_free(&d);
    /* the whole thing at exactly its size */
    ASSERT_EQ(ws_inflate_msg(z, bomb, cn, &d, n), 0);
    ASSERT_EQ(d.len, n);
    ASSERT(d.cap <= n + 1);
    buf_free(&d);
    free(bomb);
    ws_zctx_free(z);
}

TEST(ws_compressed_fragmented_message)
{
    /* a compressed message split over frames: RSV1 only on the first, inflate the concatenation */
    struct ws_zctx *z = ws_zctx_new(-1);
    struct buf c = BUF_INIT, msg = BUF_INIT, d = BUF_INIT;
    const char *text = "{\"topic\":\"device\",\"event\":\"phx_join\",\"payload\":{}}";
    ASSERT_EQ(ws_deflate_msg(z, 15, (const uint8_t *)text, strlen(text), &c, SIZE_MAX), 0);
    uint8_t s[512];
    size_t n = 0, fl;
    size_t half = c.len / 2;
    uint8_t *fr = mk_frame_ex(0x41, c.p, half, 0, true, &fl);
    memcpy(s + n, fr, fl);
    n += fl;
    free(fr);
    n += append_frame(s + n, WS_OP_PING, true, "");
    fr = mk_frame_ex(0x80, c.p + half, c.len - half, 0, true, &fl);
    memcpy(s + n, fr, fl);
    n += fl;
    free(fr);
    struct ws_msg_state st = { 0 };
    size_t off = 0;
    int acts[3], k = 0;
    while (off < n) {
        struct ws_frame f;
        ssize_t r = ws_frame_parse(s + off, n - off, true, &big_lim, &f, NULL);
        ASSERT(r > 0);
        acts[k] = ws_msg_track(&st, &f, &big_lim);
        if (acts[k] != WS_ACT_CONTROL)
            ASSERT_EQ(buf_try_append(&msg, f.payload, f.payload_len, SIZE_MAX), 0);
        k++;
        off += (size_t)r;
    }
    ASSERT_EQ(acts[0], WS_ACT_START);
    ASSERT_EQ(acts[1], WS_ACT_CONTROL);
    ASSERT_EQ(acts[2], WS_ACT_END);
    ASSERT(st.compressed);
    ASSERT_EQ(st.opcode, WS_OP_TEXT);
    ASSERT_EQ(ws_inflate_msg(z, msg.p, msg.len, &d, 1000), 0);
    ASSERT_MEM_EQ(d.p, d.len, text, strlen(text));
    ASSERT(ws_utf8_valid(d.p, d.len));
    buf_free(&c);
    buf_free(&msg);
    buf_free(&d);
    ws_zctx_free(z);
}

/* ---- negotiation ---- */

#define RESP_BASE "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

TEST(ws_pmd_negotiate_table)
{
    static const struct {
        const char *value;
        const char *resp; /* NULL: declined */
        int bits;
    } table[] = {
        /* what nerves_hub_link (Mint) sends */
        { "permessage-deflate", RESP_BASE, 15 },
        { "permessage-deflate; client_max_window_bits", RESP_BASE, 15 },
        /* what browsers send */
        { "permessage-deflate; client_max_window_bits", RESP_BASE, 15 },
        { "  permessage-deflate  ;  client_max_window_bits  ", RESP_BASE, 15 },
        { "permessage-deflate;client_no_context_takeover;server_no_context_takeover", RESP_BASE, 15 },
        { "permessage-deflate; server_max_window_bits=15", RESP_BASE, 15 },
        { "permessage-deflate; server_max_window_bits=10", RESP_BASE "; server_max_window_bits=10", 10 },
        { "permessage-deflate; server_max_window_bits=9", RESP_BASE "; server_max_window_bits=9", 9 },
        { "permessage-deflate; server_max_window_bits=\"12\"", RESP_BASE "; server_max_window_bits=12", 12 },
        { "permessage-deflate; server_max_window_bits = 11", RESP_BASE "; server_max_window_bits=11", 11 },
        { "permessage-deflate; client_max_window_bits=8", RESP_BASE, 15 },
        { "permessage-deflate; client_max_window_bits=15", RESP_BASE, 15 },
        { "permessage-deflate; client_max_window_bits=\"9\"", RESP_BASE, 15 },
        { "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
          "server_max_window_bits=13; client_max_window_bits=10",
          RESP_BASE "; server_max_window_bits=13", 13 },
        /* case-insensitive names */
        { "PerMessage-Deflate; Server_Max_Window_Bits=14", RESP_BASE "; server_max_window_bits=14", 14 },
        /* declined: unknown parameter, duplicates, bad values, window 8, junk */
        { "permessage-deflate; foo", NULL, 0 },
        { "permessage-deflate; foo=1", NULL, 0 },
        { "permessage-deflate; server_no_context_takeover; server_no_context_takeover", NULL, 0 },
        { "permessage-deflate; client_max_window_bits; client_max_window_bits=10", NULL, 0 },
        { "permessage-deflate; server_max_window_bits", NULL, 0 },
        { "permessage-deflate; server_max_window_bits=8", NULL, 0 },
        { "permessage-deflate; server_max_window_bits=7", NULL, 0 },
        { "permessage-deflate; server_max_window_bits=16", NULL, 0 },
        { "permessage-deflate; server_max_window_bits=010", NULL, 0 },
        { "permessage-deflate; server_max_window_bits=1a", NULL, 0 },
        { "permessage-deflate; server_max_window_bits=\"\"", NULL, 0 },
        { "permessage-deflate; server_max_window_bits=\"10", NULL, 0 },
        { "permessage-deflate; server_max_window_bits=", NULL, 0 },
        { "permessage-deflate; client_max_window_bits=7", NULL, 0 },
        { "permessage-deflate; client_max_window_bits=0", NULL, 0 },
        { "permessage-deflate; server_no_context_takeover=1", NULL, 0 },
        { "permessage-deflate; client_no_context_takeover=\"\"", NULL, 0 },
        { "permessage-deflate;", NULL, 0 },
        { "permessage-deflate x", NULL, 0 },
        { "permessage-deflate; a b", NULL, 0 },
        { "permessage-deflatex", NULL, 0 },
        { "x-webkit-deflate-frame", NULL, 0 },
        { "", NULL, 0 },
        { ",,,", NULL, 0 },
        /* several offers: first acceptable wins */
        { "permessage-deflate; server_max_window_bits=8, permessage-deflate", RESP_BASE, 15 },
        { "permessage-deflate; server_max_window_bits=10, permessage-deflate",
          RESP_BASE "; server_max_window_bits=10", 10 },
        { "permessage-deflate; foo, permessage-deflate; server_max_window_bits=12",
          RESP_BASE "; server_max_window_bits=12", 12 },
        { "x-foo; a=\"b,c\", permessage-deflate", RESP_BASE, 15 },
        { "x-foo; a=\"b,\\\"c\", permessage-deflate", RESP_BASE, 15 },
        { "permessage-deflate; foo=\"x,y\", permessage-deflate; server_max_window_bits=9",
          RESP_BASE "; server_max_window_bits=9", 9 },
        { "permessage-deflate; ;x=\"a,b\", permessage-deflate", RESP_BASE, 15 },
        { "mux; max-channels=4; flow-control, permessage-deflate", RESP_BASE, 15 },
        { ", permessage-deflate ,", RESP_BASE, 15 },
        { "\tpermessage-deflate\t", RESP_BASE, 15 },
    };
    for (size_t i = 0; i < ARRAY_SIZE(table); i++) {
        struct ws_pmd pmd = { 0 };
        char resp[WS_PMD_RESP_MAX];
        const char *v = table[i].value;
        /* the value is not NUL-terminated: put it against the guard page */
        uint8_t *g = gcopy(v, strlen(v));
        bool ok = ws_pmd_negotiate((const char *)g, strlen(v), &pmd, resp, sizeof(resp));
        gfree(g, strlen(v));
        if (ok != (table[i].resp != NULL))
            TEST_FAIL("\"%s\": %s", v, ok ? "accepted" : "declined");
        ASSERT_EQ(pmd.enabled, ok);
        if (ok) {
            ASSERT_STR_EQ(resp, table[i].resp);
            ASSERT_EQ(pmd.server_window_bits, table[i].bits);
        }
    }
}

TEST(ws_pmd_negotiate_lines_and_cap)
{
    struct ws_pmd pmd = { 0 };
    char resp[WS_PMD_RESP_MAX];
    /* several header lines: the first acceptable offer across them wins; later lines change nothing */
    ASSERT(!ws_pmd_negotiate("x-foo", 5, &pmd, resp, sizeof(resp)));
    ASSERT(!ws_pmd_negotiate("permessage-deflate; bad", 23, &pmd, resp, sizeof(resp)));
    const char *l3 = "permessage-deflate; server_max_window_bits=11";
    ASSERT(ws_pmd_negotiate(l3, strlen(l3), &pmd, resp, sizeof(resp)));
    ASSERT_EQ(pmd.server_window_bits, 11);
    ASSERT(ws_pmd_negotiate("permessage-deflate", 18, &pmd, resp, sizeof(resp)));
    ASSERT_EQ(pmd.server_window_bits, 11);
    ASSERT_STR_EQ(resp, RESP_BASE "; server_max_window_bits=11");
    /* the longest response fits WS_PMD_RESP_MAX; one byte too small declines */
    size_t need = strlen(RESP_BASE "; server_max_window_bits=11") + 1;
    ASSERT(need <= WS_PMD_RESP_MAX);
    struct ws_pmd p2 = { 0 };
    ASSERT(!ws_pmd_negotiate(l3, strlen(l3), &p2, resp, need - 1));
    ASSERT(!p2.enabled);
    ASSERT(ws_pmd_negotiate(l3, strlen(l3), &p2, resp, need));
    struct ws_pmd p3 = { 0 };
    ASSERT(!ws_pmd_negotiate("permessage-deflate", 18, &p3, resp, strlen(RESP_BASE)));
    ASSERT(ws_pmd_negotiate("permessage-deflate", 18, &p3, resp, strlen(RESP_BASE) + 1));
    ASSERT_STR_EQ(resp, RESP_BASE);
    /* length is honoured: a value cut short of its bad parameter is accepted */
    struct ws_pmd p4 = { 0 };
    ASSERT(ws_pmd_negotiate("permessage-deflate; foo", 18, &p4, resp, sizeof(resp)));
}

/* ---- errors ---- */

TEST(ws_error_mapping)
{
    ASSERT_EQ(ws_err_close_code(WS_ERR_PROTOCOL), 1002);
    ASSERT_EQ(ws_err_close_code(WS_ERR_TOO_BIG), 1009);
    ASSERT_EQ(ws_err_close_code(WS_ERR_UTF8), 1007);
    ASSERT_EQ(ws_err_close_code(WS_ERR_NOMEM), 1011);
    ASSERT_EQ(ws_err_close_code(WS_ERR_INFLATE), 1007);
    ASSERT_EQ(ws_err_close_code(-99), 1011);
    int errs[] = { WS_ERR_PROTOCOL, WS_ERR_TOO_BIG, WS_ERR_UTF8, WS_ERR_NOMEM, WS_ERR_INFLATE };
    for (size_t i = 0; i < ARRAY_SIZE(errs); i++) {
        ASSERT(ws_strerror(errs[i]) != NULL);
        ASSERT(strcmp(ws_strerror(errs[i]), "unknown error") != 0);
    }
    ASSERT_STR_EQ(ws_strerror(0), "unknown error");
}
