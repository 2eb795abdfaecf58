/* libFuzzer target for gateway/ws.c: drives a client byte stream through ws_frame_parse + ws_msg_track the way
 * a connection does (with small limits from the input), inflates compressed messages, validates text and close
 * payloads, and checks invariants: the same result when the stream arrives in two pieces, any prefix of a
 * frame is "need more" or the same error, UTF-8 against a reference decoder, deflate→inflate round trips,
 * and a negotiated response accepted again as an offer. Input: 3 config bytes, then the stream. */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws.h"

#include "fuzz_check.h"

static struct ws_zctx *zctx;

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

/* A running digest of what the connection saw, to compare two deliveries of the same stream. */
struct trace {
    uint64_t h;
    int err;
    size_t frames;
};

static void mix(struct trace *t, uint64_t v)
{
    t->h = (t->h ^ v) * 0x100000001b3ull;
}

static void mix_bytes(struct trace *t, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        mix(t, p[i]);
    mix(t, n);
}

/* What the connection layer does with a complete message. Returns 0 or a WS_ERR_*. */
static int on_message(struct trace *t, uint8_t opcode, bool compressed, const uint8_t *p, size_t n,
                      const struct ws_limits *lim, int window_bits)
{
    struct buf in = BUF_INIT, re = BUF_INIT, again = BUF_INIT;
    int rc = 0;

    if (compressed) {
        rc = ws_inflate_msg(zctx, p, n, &in, lim->max_inflated);
        CHECK(rc == 0 || rc == WS_ERR_TOO_BIG || rc == WS_ERR_INFLATE || rc == WS_ERR_NOMEM);
        if (rc == 0) {
            CHECK(in.len <= lim->max_inflated);
            p = in.p;
            n = in.len;
        } else {
            CHECK(in.len == 0);
            CHECK(in.cap <= lim->max_inflated + 1);
        }
    }
    if (rc == 0) {
        mix_bytes(t, p, n);
        bool v = ws_utf8_valid(p, n);
        CHECK(v == utf8_ref(p, n));
        if (opcode == WS_OP_TEXT && !v)
            rc = WS_ERR_UTF8;
        /* round trip: what we would send back compresses and inflates to the same bytes */
        if (ws_deflate_msg(zctx, window_bits, p, n, &re, SIZE_MAX) == 0) {
            CHECK(ws_inflate_msg(zctx, re.p, re.len, &again, n) == 0);
            CHECK(again.len == n && (n == 0 || memcmp(again.p, p, n) == 0));
        }
    }
    buf_free(&in);
    buf_free(&re);
    buf_free(&again);
    return rc;
}

static int on_control(struct trace *t, const struct ws_frame *f)
{
    mix_bytes(t, f->payload, f->payload_len);
    if (f->opcode != WS_OP_CLOSE)
        return 0;
    uint16_t code = 0;
    int rc = ws_close_parse(f->payload, f->payload_len, &code);
    CHECK(rc == 0 || rc == WS_ERR_PROTOCOL || rc == WS_ERR_UTF8);
    if (rc == 0) {
        /* echo it: build our close payload with the peer's reason and parse it back */
        uint8_t out[WS_MAX_CONTROL];
        char reason[WS_MAX_CONTROL + 1];
        size_t rl = f->payload_len > 2 ? f->payload_len - 2 : 0;
        memcpy(reason, f->payload + (f->payload_len >= 2 ? 2 : 0), rl);
        reason[rl] = 0;
        size_t len = ws_close_payload(out, code, reason);
        uint16_t code2 = 0;
        if (code == 1005) {
            CHECK(len == 0);
        } else {
            CHECK(len >= 2 && len <= WS_MAX_CONTROL);
            CHECK(ws_close_parse(out, len, &code2) == 0 && code2 == code);
        }
        mix(t, code);
    }
    return rc;
}

/* Our header encoder, plus a mask, parses back to the same frame. */
static void check_header_round_trip(const struct ws_frame *f, bool deflate, const struct ws_limits *lim)
{
    uint8_t buf[WS_MAX_HEADER + 4 + 256];
    struct ws_frame g;
    size_t need = 0;

    if (f->payload_len > 256)
        return;
    size_t h = ws_frame_header(buf, f->opcode, f->fin, f->rsv1, f->payload_len);
    CHECK(h == (f->payload_len < 126 ? 2u : 4u));
    buf[1] |= 0x80;
    memset(buf + h, 0, 4); /* a zero mask leaves the payload as is */
    memcpy(buf + h + 4, f->payload, f->payload_len);
    ssize_t r = ws_frame_parse(buf, h + 4 + f->payload_len, deflate, lim, &g, &need);
    CHECK(r == (ssize_t)(h + 4 + f->payload_len));
    CHECK(g.opcode == f->opcode && g.fin == f->fin && g.rsv1 == f->rsv1 && g.payload_len == f->payload_len);
    CHECK(f->payload_len == 0 || memcmp(g.payload, f->payload, f->payload_len) == 0);
}

/* Deliver the stream in two pieces (split at `cut`) to a connection-like loop. */
static void run(struct trace *t, const uint8_t *s, size_t n, size_t cut, bool deflate,
                const struct ws_limits *lim, int window_bits)
{
    uint8_t *acc = malloc(n ? n : 1);
    size_t have = 0, fed = 0;
    struct ws_msg_state st = { 0 };
    struct buf msg = BUF_INIT;

    memset(t, 0, sizeof(*t));
    for (int piece = 0; piece < 2 && t->err == 0; piece++) {
        size_t step = piece == 0 ? cut : n - cut;
        memcpy(acc + have, s + fed, step);
        have += step;
        fed += step;
        size_t off = 0;
        for (;;) {
            struct ws_frame f;
            size_t need = 0;
            ssize_t r = ws_frame_parse(acc + off, have - off, deflate, lim, &f, &need);
            if (r < 0) {
                t->err = (int)r;
                break;
            }
            if (r == 0) {
                CHECK(need > have - off);
                CHECK(need <= WS_MAX_HEADER + lim->max_frame);
                break;
            }
            CHECK((size_t)r <= have - off && f.payload_len <= lim->max_frame);
            check_header_round_trip(&f, deflate, lim);
            t->frames++;
            mix(t, (uint64_t)f.opcode << 2 | (uint64_t)f.fin << 1 | f.rsv1);
            off += (size_t)r;
            int act = ws_msg_track(&st, &f, lim);
            mix(t, (uint64_t)(act + 16));
            if (act < 0) {
                t->err = act;
                break;
            }
            int rc = 0;
            switch (act) {
            case WS_ACT_CONTROL:
                rc = on_control(t, &f);
                break;
            case WS_ACT_MESSAGE:
                CHECK(f.payload_len <= lim->max_message);
                rc = on_message(t, f.opcode, f.rsv1, f.payload, f.payload_len, lim, window_bits);
                break;
            case WS_ACT_START:
                msg.len = 0;
                /* fall through */
            case WS_ACT_CONT:
            case WS_ACT_END:
                CHECK(st.len <= lim->max_message);
                if (buf_try_append(&msg, f.payload, f.payload_len, lim->max_message) != 0)
                    abort(); /* track already enforced max_message */
                CHECK(msg.len == st.len);
                if (act == WS_ACT_END) {
                    rc = on_message(t, st.opcode, st.compressed, msg.p, msg.len, lim, window_bits);
                    ws_msg_reset(&st);
                }
                break;
            default:
                abort();
            }
            if (rc) {
                t->err = rc;
                break;
            }
        }
        memmove(acc, acc + off, have - off);
        have -= off;
    }
    buf_free(&msg);
    free(acc);
}

/* Every proper prefix of the first frame is "need more" or the same error as the whole. */
static void check_prefixes(const uint8_t *s, size_t n, bool deflate, const struct ws_limits *lim)
{
    uint8_t buf[64];
    struct ws_frame f;
    size_t need;
    size_t m = n < sizeof(buf) ? n : sizeof(buf);

    memcpy(buf, s, m);
    ssize_t full = ws_frame_parse(buf, m, deflate, lim, &f, &need);
    size_t upto = full > 0 ? (size_t)full : m;
    for (size_t k = 0; k < upto; k++) {
        memcpy(buf, s, k);
        ssize_t r = ws_frame_parse(buf, k, deflate, lim, &f, &need);
        CHECK(r == 0 || (full < 0 && r == full));
        if (r == 0)
            CHECK(need > k);
    }
}

static void check_negotiation(const uint8_t *s, size_t n)
{
    struct ws_pmd pmd = { 0 };
    char resp[WS_PMD_RESP_MAX];
    size_t m = n < 200 ? n : 200;

    if (!ws_pmd_negotiate((const char *)s, m, &pmd, resp, sizeof(resp)))
        return;
    CHECK(pmd.enabled && pmd.server_window_bits >= 9 && pmd.server_window_bits <= 15);
    struct ws_pmd again = { 0 };
    char resp2[WS_PMD_RESP_MAX];
    CHECK(ws_pmd_negotiate(resp, strlen(resp), &again, resp2, sizeof(resp2)));
    CHECK(again.server_window_bits == pmd.server_window_bits);
    CHECK(strcmp(resp, resp2) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t frames[] = { 0, 1, 16, 125, 126, 1000, 65536, 1u << 20 };
    static const size_t messages[] = { 0, 3, 64, 200, 5000, 1u << 20 };
    static const size_t inflated[] = { 0, 1, 16, 1000, 100000 };
    struct trace a, b;

    if (!zctx && !(zctx = ws_zctx_new(-1)))
        abort();
    if (size < 3)
        return 0;
    bool deflate = data[0] & 1;
    int window_bits = 9 + (data[0] >> 1) % 7;
    struct ws_limits lim = {
        frames[data[1] % 8],
        messages[(data[1] >> 3) % 6],
        inflated[data[2] % 5],
    };
    const uint8_t *s = data + 3;
    size_t n = size - 3;
    size_t cut = n ? (size_t)(data[2] >> 3) * 7919 % (n + 1) : 0;

    run(&a, s, n, n, deflate, &lim, window_bits);
    run(&b, s, n, cut, deflate, &lim, window_bits);
    CHECK(a.err == b.err && a.frames == b.frames && a.h == b.h);
    check_prefixes(s, n, deflate, &lim);
    CHECK(ws_utf8_valid(s, n) == utf8_ref(s, n));
    check_negotiation(s, n);
    if (a.err)
        CHECK(ws_err_close_code(a.err) >= 1002 && ws_strerror(a.err) != NULL);
    return 0;
}
