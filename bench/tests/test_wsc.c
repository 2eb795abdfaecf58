/* Unit tests for bench/wsc.c (client-side WebSocket handshake and framing), through its public API.
 * Masked client frames are cross-checked with the gateway's own server-side parser (gateway/ws.h). */
#include <string.h>

#include "../../tests/lib/test.h"
#include "buf.h"
#include "ws.h"
#include "wsc.h"

static const char RESP_101[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "upgrade: websocket\r\n"
                               "connection: Upgrade\r\n"
                               "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                               "sec-websocket-extensions: permessage-deflate; server_no_context_takeover; "
                               "client_no_context_takeover\r\n"
                               "\r\n";

TEST(wsc_accept_rfc6455_example)
{
    /* RFC 6455 §1.3 */
    char out[WSC_ACCEPT_LEN + 1];
    wsc_accept("dGhlIHNhbXBsZSBub25jZQ==", out);
    ASSERT_STR_EQ(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    uint8_t rnd[16] = "the sample nonce";
    char key[WSC_KEY_LEN + 1];
    wsc_key(rnd, key);
    ASSERT_STR_EQ(key, "dGhlIHNhbXBsZSBub25jZQ==");
}

TEST(wsc_request_is_links)
{
    struct buf b = BUF_INIT;
    ASSERT_EQ(wsc_request(&b, "/socket/websocket", "2.0.0", "gw:4443", "dGhlIHNhbXBsZSBub25jZQ==", true), 0);
    static const char want[] = "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: gw:4443\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                               "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
    ASSERT_MEM_EQ(b.p, b.len, want, sizeof(want) - 1);
    b.len = 0;
    ASSERT_EQ(wsc_request(&b, "/socket/websocket", "3.0.0", "gw", "dGhlIHNhbXBsZSBub25jZQ==", false), 0);
    ASSERT(!memmem(b.p, b.len, "Extensions", 10));
    buf_free(&b);
}

TEST(wsc_response_every_split_and_guard)
{
    size_t n = sizeof(RESP_101) - 1;
    for (size_t cut = 0; cut < n; cut++) {
        uint8_t *g = test_guard_copy(RESP_101, cut);
        struct wsc_response r;
        ASSERT_EQ(wsc_parse_response(g, cut, &r), 0);
        test_guard_free(g);
    }
    uint8_t *g = test_guard_copy(RESP_101, n);
    struct wsc_response r;
    ASSERT_EQ(wsc_parse_response(g, n, &r), (long long)n);
    ASSERT_EQ(r.status, 101);
    ASSERT(r.upgrade_ok && r.connection_ok);
    ASSERT_MEM_EQ(r.accept.p, r.accept.len, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 28);
    ASSERT(r.pmd && !r.pmd_bad && r.server_no_context && r.client_no_context);
    ASSERT_EQ(r.server_max_window, 15);
    test_guard_free(g);
}

static struct wsc_response parse_ok(const char *s)
{
    struct wsc_response r;
    ASSERT_EQ(wsc_parse_response((const uint8_t *)s, strlen(s), &r), (long long)strlen(s));
    return r;
}

TEST(wsc_response_extensions)
{
    struct wsc_response r = parse_ok("HTTP/1.1 101 OK\r\nSec-WebSocket-Extensions: permessage-deflate;"
                                     " server_max_window_bits=\"10\"\r\n\r\n");
    ASSERT(r.pmd && !r.pmd_bad);
    ASSERT_EQ(r.server_max_window, 10);
    r = parse_ok("HTTP/1.1 101 OK\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10\r\n\r\n");
    ASSERT(r.pmd_bad); /* not offered (RFC 7692 §7.1.2.2) */
    r = parse_ok("HTTP/1.1 101 OK\r\nSec-WebSocket-Extensions: x-webkit-deflate-frame\r\n\r\n");
    ASSERT(r.pmd_bad && !r.pmd);
    r = parse_ok("HTTP/1.1 101 OK\r\nSec-WebSocket-Extensions: permessage-deflate, permessage-deflate\r\n\r\n");
    ASSERT(r.pmd_bad);
    r = parse_ok("HTTP/1.1 101 OK\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16\r\n\r\n");
    ASSERT(r.pmd_bad);
    r = parse_ok("HTTP/1.1 101 OK\r\nSec-WebSocket-Extensions: permessage-deflate; bogus\r\n\r\n");
    ASSERT(r.pmd_bad);
    r = parse_ok("HTTP/1.1 101 OK\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\r\n");
    ASSERT(r.connection_ok && r.upgrade_ok && !r.pmd);
}

TEST(wsc_response_refusal_reason)
{
    struct wsc_response r = parse_ok("HTTP/1.1 401 Unauthorized\r\nnh-connection-error-reason: no certificate\r\n"
                                     "content-length: 0\r\n\r\n");
    ASSERT_EQ(r.status, 401);
    ASSERT_MEM_EQ(r.reason.p, r.reason.len, "no certificate", 14);
}

TEST(wsc_response_malformed)
{
    static const char *const bad[] = {
        "HTTP/1.0 101 OK\r\n\r\n", "HTTP/1.1 1x1 OK\r\n\r\n", "HTTP/1.1 101OK\r\n\r\n",
        "HTTP/1.1 101 OK\r\nno colon here\r\n\r\n", "HTTP/1.1 101 OK\r\n: empty name\r\n\r\n", "garbage\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct wsc_response r;
        ASSERT_EQ(wsc_parse_response((const uint8_t *)bad[i], strlen(bad[i]), &r), WSC_ERR_SYNTAX);
    }
}

TEST(wsc_response_head_limit)
{
    /* a head of exactly WSC_MAX_HEAD bytes is accepted, one more is too big */
    static char head[WSC_MAX_HEAD + 2];
    const char *start = "HTTP/1.1 101 OK\r\nX: ";
    for (size_t extra = 0; extra < 2; extra++) {
        size_t total = WSC_MAX_HEAD + extra;
        memset(head, 'a', sizeof(head));
        memcpy(head, start, strlen(start));
        memcpy(head + total - 4, "\r\n\r\n", 4);
        uint8_t *g = test_guard_copy(head, total);
        struct wsc_response r;
        ssize_t k = wsc_parse_response(g, total, &r);
        if (extra == 0)
            ASSERT_EQ(k, (long long)total);
        else
            ASSERT_EQ(k, WSC_ERR_TOO_BIG);
        test_guard_free(g);
    }
    /* an incomplete head stays "need more" until it reaches the limit */
    memset(head, 'a', sizeof(head));
    struct wsc_response r;
    ASSERT_EQ(wsc_parse_response((const uint8_t *)head, WSC_MAX_HEAD - 1, &r), 0);
    ASSERT_EQ(wsc_parse_response((const uint8_t *)head, WSC_MAX_HEAD, &r), WSC_ERR_TOO_BIG);
}

/* A server frame: header + payload. */
static size_t server_frame(uint8_t *out, uint8_t b0, size_t len, uint8_t fill)
{
    size_t o = 0;
    out[o++] = b0;
    if (len < 126) {
        out[o++] = (uint8_t)len;
    } else if (len <= 0xffff) {
        out[o++] = 126;
        out[o++] = (uint8_t)(len >> 8);
        out[o++] = (uint8_t)len;
    } else {
        out[o++] = 127;
        for (int i = 7; i >= 0; i--)
            out[o++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memset(out + o, fill, len);
    return o + len;
}

TEST(wsc_frame_lengths_every_split_and_guard)
{
    static const size_t lens[] = { 0, 1, 125, 126, 65535, 65536 };
    static uint8_t f[65536 + 16];
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t n = server_frame(f, 0x82, lens[i], 0x5a);
        /* every split point for the short ones, the header region for the long ones */
        size_t max_cut = lens[i] < 200 ? n : 16;
        for (size_t cut = 0; cut < max_cut && cut < n; cut++) {
            struct wsc_frame fr;
            ASSERT_EQ(wsc_parse_frame(f, cut, false, 1 << 20, &fr), 0);
        }
        uint8_t *g = test_guard_copy(f, n);
        struct wsc_frame fr;
        ASSERT_EQ(wsc_parse_frame(g, n, false, 1 << 20, &fr), (long long)n);
        ASSERT_EQ(fr.opcode, 2);
        ASSERT(fr.fin && !fr.rsv1);
        ASSERT_EQ(fr.len, lens[i]);
        ASSERT_EQ(fr.payload + fr.len, g + n);
        test_guard_free(g);
    }
}

TEST(wsc_frame_limit)
{
    uint8_t f[300];
    size_t n = server_frame(f, 0x81, 200, 'x');
    struct wsc_frame fr;
    ASSERT_EQ(wsc_parse_frame(f, n, false, 200, &fr), (long long)n);
    ASSERT_EQ(wsc_parse_frame(f, n, false, 199, &fr), WSC_ERR_TOO_BIG);
    ASSERT_EQ(wsc_parse_frame(f, 4, false, 199, &fr), WSC_ERR_TOO_BIG); /* decided from the header */
}

TEST(wsc_frame_errors)
{
    struct wsc_frame fr;
    uint8_t f[16];
    struct {
        uint8_t b0, b1;
        bool pmd;
        int want;
    } cases[] = {
        { 0x81, 0x80, false, WSC_ERR_MASKED },  /* §5.1 */
        { 0xa1, 0x00, true, WSC_ERR_RSV },      /* RSV2 */
        { 0x91, 0x00, true, WSC_ERR_RSV },      /* RSV3 */
        { 0xc1, 0x00, false, WSC_ERR_RSV },     /* RSV1 without permessage-deflate */
        { 0xc9, 0x00, true, WSC_ERR_RSV },      /* RSV1 on a control frame */
        { 0xc0, 0x00, true, WSC_ERR_RSV },      /* RSV1 on a continuation (RFC 7692 §6.1) */
        { 0x83, 0x00, false, WSC_ERR_OPCODE },  /* reserved */
        { 0x8b, 0x00, false, WSC_ERR_OPCODE },  /* reserved control */
        { 0x09, 0x00, false, WSC_ERR_OPCODE },  /* fragmented ping (§5.5) */
        { 0x89, 0x7e, false, WSC_ERR_OPCODE },  /* control payload > 125 */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        f[0] = cases[i].b0;
        f[1] = cases[i].b1;
        memset(f + 2, 0, sizeof(f) - 2);
        ASSERT_EQ(wsc_parse_frame(f, sizeof(f), cases[i].pmd, 1 << 20, &fr), cases[i].want);
    }
    /* RSV1 on a data frame with permessage-deflate negotiated is fine */
    f[0] = 0xc1;
    f[1] = 0x01;
    ASSERT_EQ(wsc_parse_frame(f, 3, true, 1 << 20, &fr), 3);
    ASSERT(fr.rsv1);
    /* 64-bit length with the top bit set (§5.2) */
    uint8_t big[10] = { 0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0 };
    ASSERT_EQ(wsc_parse_frame(big, sizeof(big), false, SIZE_MAX, &fr), WSC_ERR_SYNTAX);
    /* a 125-byte ping is the largest control frame */
    uint8_t ping[127];
    size_t n = server_frame(ping, 0x89, 125, 0);
    ASSERT_EQ(wsc_parse_frame(ping, n, false, 1 << 20, &fr), (long long)n);
}

TEST(wsc_client_frames_parse_as_the_gateway_does)
{
    static const size_t lens[] = { 0, 5, 125, 126, 65535, 65536, 70000 };
    static uint8_t payload[70000], frame[70000 + WSC_MAX_HEADER];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 7);
    struct ws_limits lim = { 1 << 20, 1 << 20, 1 << 20 };
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        uint8_t mask[4] = { 0x12, 0x34, 0x56, (uint8_t)i };
        size_t hl = wsc_frame_header(frame, WS_OP_BINARY, true, i % 2, lens[i], mask);
        ASSERT_EQ(hl, lens[i] < 126 ? 6 : lens[i] <= 0xffff ? 8 : 14);
        memcpy(frame + hl, payload, lens[i]);
        wsc_mask(frame + hl, lens[i], mask);
        struct ws_frame f;
        ssize_t k = ws_frame_parse(frame, hl + lens[i], true, &lim, &f, NULL);
        ASSERT_EQ(k, (long long)(hl + lens[i]));
        ASSERT_EQ(f.opcode, WS_OP_BINARY);
        ASSERT(f.fin);
        ASSERT_EQ(f.rsv1, i % 2);
        ASSERT_MEM_EQ(f.payload, f.payload_len, payload, lens[i]);
    }
}
