/* Client-side WebSocket handshake and framing (see wsc.h). */
#include "wsc.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/base64.h>
#include <openssl/sha.h>

const char *wsc_strerror(int err)
{
    switch (err) {
    case WSC_ERR_SYNTAX: return "malformed";
    case WSC_ERR_TOO_BIG: return "too big";
    case WSC_ERR_MASKED: return "masked server frame";
    case WSC_ERR_RSV: return "unexpected RSV bit";
    case WSC_ERR_OPCODE: return "bad opcode or control frame";
    default: return "unknown error";
    }
}

void wsc_key(const uint8_t rnd[16], char out[WSC_KEY_LEN + 1])
{
    EVP_EncodeBlock((uint8_t *)out, rnd, 16);
}

void wsc_accept(const char key[WSC_KEY_LEN], char out[WSC_ACCEPT_LEN + 1])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"; /* RFC 6455 §1.3 */
    uint8_t in[WSC_KEY_LEN + sizeof(guid) - 1], md[SHA_DIGEST_LENGTH];
    memcpy(in, key, WSC_KEY_LEN);
    memcpy(in + WSC_KEY_LEN, guid, sizeof(guid) - 1);
    SHA1(in, sizeof(in), md);
    EVP_EncodeBlock((uint8_t *)out, md, sizeof(md));
}

int wsc_request(struct buf *out, const char *path, const char *vsn, const char *host, const char *key,
                bool deflate)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp),
                     "GET %s?vsn=%s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Key: %.*s\r\n"
                     "%s"
                     "\r\n",
                     path, vsn, host, WSC_KEY_LEN, key,
                     deflate ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -1;
    return buf_try_append(out, tmp, (size_t)n, out->len + sizeof(tmp));
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static struct span trim(const char *p, const char *e)
{
    while (p < e && is_ows(*p))
        p++;
    while (e > p && is_ows(e[-1]))
        e--;
    return (struct span){ p, (size_t)(e - p) };
}

static bool span_ieq(struct span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(s.p, lit, n) == 0;
}

/* True if the comma-separated list s contains token tok (case-insensitive). */
static bool list_has(struct span s, const char *tok)
{
    const char *p = s.p, *e = s.p + s.len;
    while (p <= e) {
        const char *c = memchr(p, ',', (size_t)(e - p));
        if (!c)
            c = e;
        if (span_ieq(trim(p, c), tok))
            return true;
        p = c + 1;
    }
    return false;
}

/* Parse a window-bits value (token or quoted string, 8..15, no leading zeros: RFC 7692 §7.1.2). */
static int window_bits(struct span v)
{
    if (v.len >= 2 && v.p[0] == '"' && v.p[v.len - 1] == '"')
        v = (struct span){ v.p + 1, v.len - 2 };
    if (v.len == 1 && v.p[0] >= '8' && v.p[0] <= '9')
        return v.p[0] - '0';
    if (v.len == 2 && v.p[0] == '1' && v.p[1] >= '0' && v.p[1] <= '5')
        return 10 + v.p[1] - '0';
    return -1;
}

/* One extension element "name; param[=value]; ..." of a response's extension list. */
static void parse_extension(struct span el, struct wsc_response *r)
{
    const char *p = el.p, *e = el.p + el.len;
    const char *semi = memchr(p, ';', (size_t)(e - p));
    struct span name = trim(p, semi ? semi : e);
    if (name.len == 0)
        return;
    if (!span_ieq(name, "permessage-deflate") || r->pmd) {
        /* RFC 6455 §9.1: the server may only accept what the client offered, once */
        r->pmd_bad = true;
        return;
    }
    r->pmd = true;
    p = semi ? semi + 1 : e;
    while (p < e) {
        const char *s = memchr(p, ';', (size_t)(e - p));
        if (!s)
            s = e;
        struct span param = trim(p, s);
        const char *eq = memchr(param.p, '=', param.len);
        struct span key = eq ? trim(param.p, eq) : param;
        struct span val = eq ? trim(eq + 1, param.p + param.len) : (struct span){ NULL, 0 };
        if (span_ieq(key, "server_no_context_takeover") && !eq) {
            r->server_no_context = true;
        } else if (span_ieq(key, "client_no_context_takeover") && !eq) {
            r->client_no_context = true;
        } else if (span_ieq(key, "server_max_window_bits") && eq && window_bits(val) >= 8) {
            r->server_max_window = window_bits(val);
        } else {
            /* client_max_window_bits was not offered (RFC 7692 §7.1.2.2), anything else is unknown */
            r->pmd_bad = true;
        }
        p = s + 1;
    }
}

ssize_t wsc_parse_response(const uint8_t *p, size_t n, struct wsc_response *r)
{
    const char *s = (const char *)p;
    size_t lim = n < WSC_MAX_HEAD ? n : WSC_MAX_HEAD;
    const char *end = memmem(s, lim, "\r\n\r\n", 4);
    if (!end)
        return n >= WSC_MAX_HEAD ? WSC_ERR_TOO_BIG : 0;
    memset(r, 0, sizeof(*r));
    r->server_max_window = 15;
    r->client_max_window = 15;
    const char *line_end = memmem(s, (size_t)(end + 2 - s), "\r\n", 2);
    /* status-line = HTTP-version SP status-code SP reason-phrase (RFC 9112 §4) */
    if (line_end - s < 12 || memcmp(s, "HTTP/1.1 ", 9) != 0 || (line_end - s > 12 && s[12] != ' '))
        return WSC_ERR_SYNTAX;
    for (int i = 9; i < 12; i++) {
        if (s[i] < '0' || s[i] > '9')
            return WSC_ERR_SYNTAX;
        r->status = r->status * 10 + (s[i] - '0');
    }
    const char *q = line_end + 2;
    while (q < end + 2) {
        const char *le = memmem(q, (size_t)(end + 2 - q), "\r\n", 2);
        const char *colon = memchr(q, ':', (size_t)(le - q));
        if (!colon || colon == q)
            return WSC_ERR_SYNTAX;
        struct span name = { q, (size_t)(colon - q) };
        struct span val = trim(colon + 1, le);
        if (span_ieq(name, "upgrade")) {
            r->upgrade_ok = span_ieq(val, "websocket");
        } else if (span_ieq(name, "connection")) {
            r->connection_ok = r->connection_ok || list_has(val, "upgrade");
        } else if (span_ieq(name, "sec-websocket-accept")) {
            r->accept = val;
        } else if (span_ieq(name, "nh-connection-error-reason")) {
            r->reason = val;
        } else if (span_ieq(name, "sec-websocket-extensions")) {
            const char *a = val.p, *ve = val.p + val.len;
            while (a <= ve) {
                const char *c = memchr(a, ',', (size_t)(ve - a));
                if (!c)
                    c = ve;
                parse_extension(trim(a, c), r);
                a = c + 1;
            }
        }
        q = le + 2;
    }
    return end + 4 - s;
}

ssize_t wsc_parse_frame(const uint8_t *p, size_t n, bool rsv1_ok, size_t max_payload, struct wsc_frame *f)
{
    if (n < 2)
        return 0;
    uint8_t b0 = p[0], b1 = p[1];
    uint8_t op = b0 & 0x0f;
    bool fin = b0 & 0x80, rsv1 = b0 & 0x40;
    if (b0 & 0x30)
        return WSC_ERR_RSV;
    if (op != 0x0 && op != 0x1 && op != 0x2 && op != 0x8 && op != 0x9 && op != 0xa)
        return WSC_ERR_OPCODE;
    /* RFC 7692 §6.1: RSV1 marks the first frame of a compressed data message only */
    if (rsv1 && (!rsv1_ok || (op != 0x1 && op != 0x2)))
        return WSC_ERR_RSV;
    if (b1 & 0x80)
        return WSC_ERR_MASKED;
    uint64_t len = b1 & 0x7f;
    size_t hl = 2;
    if (op >= 0x8 && (!fin || len > 125))
        return WSC_ERR_OPCODE; /* §5.5 */
    if (len == 126) {
        if (n < 4)
            return 0;
        len = (uint64_t)p[2] << 8 | p[3];
        hl = 4;
    } else if (len == 127) {
        if (n < 10)
            return 0;
        len = 0;
        for (int i = 2; i < 10; i++)
            len = len << 8 | p[i];
        if (len >> 63)
            return WSC_ERR_SYNTAX;
        hl = 10;
    }
    if (len > max_payload)
        return WSC_ERR_TOO_BIG;
    if (n - hl < len)
        return 0;
    f->opcode = op;
    f->fin = fin;
    f->rsv1 = rsv1;
    f->payload = p + hl;
    f->len = (size_t)len;
    return (ssize_t)(hl + len);
}

size_t wsc_frame_header(uint8_t out[WSC_MAX_HEADER], uint8_t opcode, bool fin, bool rsv1, uint64_t len,
                        const uint8_t mask[4])
{
    size_t o = 0;
    out[o++] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0f));
    if (len < 126) {
        out[o++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        out[o++] = 0x80 | 126;
        out[o++] = (uint8_t)(len >> 8);
        out[o++] = (uint8_t)len;
    } else {
        out[o++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            out[o++] = (uint8_t)(len >> (8 * i));
    }
    memcpy(out + o, mask, 4);
    return o + 4;
}

void wsc_mask(uint8_t *p, size_t n, const uint8_t mask[4])
{
    for (size_t i = 0; i < n; i++)
        p[i] ^= mask[i & 3];
}
