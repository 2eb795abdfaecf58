/* WebSocket codec (see ws.h): RFC 6455 framing and RFC 7692 permessage-deflate over caller-owned spans.
 * No I/O and no per-connection state beyond the caller's struct ws_msg_state / struct ws_pmd; the zlib streams
 * live in a per-worker struct ws_zctx and are reset after every message. */
#include "ws.h"

#include <stdlib.h>
#include <string.h>

#include <zlib.h>

uint16_t ws_err_close_code(int err)
{
    switch (err) {
    case WS_ERR_PROTOCOL:
        return 1002;
    case WS_ERR_TOO_BIG:
        return 1009;
    case WS_ERR_UTF8:
    case WS_ERR_INFLATE:
        return 1007;
    default:
        return 1011;
    }
}

const char *ws_strerror(int err)
{
    switch (err) {
    case WS_ERR_PROTOCOL:
        return "websocket protocol violation";
    case WS_ERR_TOO_BIG:
        return "websocket frame or message too big";
    case WS_ERR_UTF8:
        return "invalid utf-8";
    case WS_ERR_NOMEM:
        return "out of memory";
    case WS_ERR_INFLATE:
        return "corrupt compressed message";
    default:
        return "unknown error";
    }
}

/* ---- frames ---- */

static bool is_control(uint8_t op)
{
    return op & 0x8;
}

static bool opcode_known(uint8_t op)
{
    return op <= WS_OP_BINARY || (op >= WS_OP_CLOSE && op <= WS_OP_PONG);
}

static void unmask(uint8_t *p, size_t n, const uint8_t key[4])
{
    uint32_t k32;
    uint64_t k64;
    size_t i = 0;

    memcpy(&k32, key, 4);
    k64 = (uint64_t)k32 << 32 | k32;
    /* the key repeats every 4 bytes, so an 8-byte word starting at a multiple of 4 sees it twice in byte
     * order whatever the host endianness; memcpy keeps unaligned loads legal */
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        w ^= k64;
        memcpy(p + i, &w, 8);
    }
    for (; i < n; i++)
        p[i] ^= key[i & 3];
}

/* Checks on the first header byte alone. */
static int check_byte0(uint8_t b0, bool deflate)
{
    uint8_t op = b0 & 0x0f;

    /* RFC 6455 §5.2: RSV2/RSV3 need an extension defining them; we negotiate none */
    if (b0 & 0x30)
        return WS_ERR_PROTOCOL;
    if (!opcode_known(op))
        return WS_ERR_PROTOCOL;
    if (is_control(op)) {
        /* §5.5: control frames must not be fragmented; RFC 7692 §6: RSV1 only on data frames */
        if (!(b0 & 0x80) || (b0 & 0x40))
            return WS_ERR_PROTOCOL;
    } else if ((b0 & 0x40) && !deflate) {
        return WS_ERR_PROTOCOL;
    }
    return 0;
}

ssize_t ws_frame_parse(uint8_t *p, size_t n, bool deflate, const struct ws_limits *lim, struct ws_frame *f,
                       size_t *need)
{
    size_t hdr, ext;
    uint64_t len;
    int err;

    if (n == 0) {
        if (need)
            *need = 2;
        return 0;
    }
    if ((err = check_byte0(p[0], deflate)) != 0)
        return err;
    if (n < 2) {
        if (need)
            *need = 2;
        return 0;
    }
    /* §5.1: a server must close on an unmasked client frame */
    if (!(p[1] & 0x80))
        return WS_ERR_PROTOCOL;
    len = p[1] & 0x7f;
    ext = len == 126 ? 2 : len == 127 ? 8 : 0;
    /* §5.5: control payload <= 125, which also rules out the extended lengths */
    if (is_control(p[0] & 0x0f) && ext)
        return WS_ERR_PROTOCOL;
    hdr = 2 + ext + 4;
    if (ext == 0 && len > lim->max_frame)
        return WS_ERR_TOO_BIG;
    if (n < 2 + ext) {
        /* check what length bytes we have: an over-limit frame fails without waiting for the rest */
        if (ext == 8 && n > 2 && (p[2] & 0x80))
            return WS_ERR_PROTOCOL;
        if (need)
            *need = hdr;
        return 0;
    }
    if (ext == 2) {
        len = (uint64_t)p[2] << 8 | p[3];
    } else if (ext == 8) {
        len = 0;
        for (size_t i = 0; i < 8; i++)
            len = len << 8 | p[2 + i];
        /* §5.2: the most significant bit must be 0 */
        if (len >> 63)
            return WS_ERR_PROTOCOL;
    }
    if (len > lim->max_frame || len > SIZE_MAX - hdr)
        return WS_ERR_TOO_BIG;
    if (n < hdr || n - hdr < len) {
        if (need)
            *need = hdr + (size_t)len;
        return 0;
    }
    f->opcode = p[0] & 0x0f;
    f->fin = p[0] & 0x80;
    f->rsv1 = p[0] & 0x40;
    f->payload = p + hdr;
    f->payload_len = (size_t)len;
    unmask(f->payload, f->payload_len, p + hdr - 4);
    return (ssize_t)(hdr + len);
}

int ws_msg_track(struct ws_msg_state *st, const struct ws_frame *f, const struct ws_limits *lim)
{
    if (is_control(f->opcode))
        return WS_ACT_CONTROL;
    if (f->opcode == WS_OP_CONT) {
        /* §5.4: a continuation needs a message in progress; RFC 7692 §6.1: RSV1 only on the first frame */
        if (!st->opcode || f->rsv1)
            return WS_ERR_PROTOCOL;
        if (f->payload_len > lim->max_message || st->len > lim->max_message - f->payload_len)
            return WS_ERR_TOO_BIG;
        st->len += f->payload_len;
        return f->fin ? WS_ACT_END : WS_ACT_CONT;
    }
    /* §5.4: fragments of different messages must not interleave */
    if (st->opcode)
        return WS_ERR_PROTOCOL;
    if (f->payload_len > lim->max_message)
        return WS_ERR_TOO_BIG;
    if (f->fin)
        return WS_ACT_MESSAGE;
    st->opcode = f->opcode;
    st->compressed = f->rsv1;
    st->len = f->payload_len;
    return WS_ACT_START;
}

void ws_msg_reset(struct ws_msg_state *st)
{
    st->opcode = 0;
    st->compressed = false;
    st->len = 0;
}

size_t ws_frame_header(uint8_t out[WS_MAX_HEADER], uint8_t opcode, bool fin, bool rsv1, uint64_t len)
{
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0f));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

/* ---- close frames ---- */

size_t ws_close_payload(uint8_t out[WS_MAX_CONTROL], uint16_t code, const char *reason)
{
    size_t rlen = reason ? strlen(reason) : 0;

    if (code == 0 || code == 1005)
        return 0;
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    if (rlen > WS_MAX_CONTROL - 2) {
        rlen = WS_MAX_CONTROL - 2;
        /* back off to the start of the character that straddles the cut */
        while (rlen > 0 && ((uint8_t)reason[rlen] & 0xc0) == 0x80)
            rlen--;
    }
    if (rlen)
        memcpy(out + 2, reason, rlen);
    return 2 + rlen;
}

static bool close_code_valid(uint16_t c)
{
    /* RFC 6455 §7.4.1/§7.4.2 and the IANA registry: 1004-1006 and 1015 are reserved or never sent,
     * 1016-2999 are reserved for future RFCs, 3000-4999 are for libraries/applications */
    if (c < 1000 || c >= 5000)
        return false;
    if (c == 1004 || c == 1005 || c == 1006)
        return false;
    if (c >= 1015 && c <= 2999)
        return false;
    return true;
}

int ws_close_parse(const uint8_t *p, size_t n, uint16_t *code)
{
    uint16_t c;

    if (n == 0) {
        *code = 1005; /* §7.1.5: no status code present */
        return 0;
    }
    /* §5.5.1: a body starts with a 2-byte code; §5.5: at most 125 bytes */
    if (n == 1 || n > WS_MAX_CONTROL)
        return WS_ERR_PROTOCOL;
    c = (uint16_t)(p[0] << 8 | p[1]);
    if (!close_code_valid(c))
        return WS_ERR_PROTOCOL;
    if (!ws_utf8_valid(p + 2, n - 2))
        return WS_ERR_UTF8;
    *code = c;
    return 0;
}

/* ---- UTF-8 ---- */

bool ws_utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        if (n - i >= 8) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            w &= 0x8080808080808080ull;
            if (!w) {
                i += 8;
                continue;
            }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            /* skip the ASCII bytes before the first high bit */
            i += (size_t)__builtin_ctzll(w) >> 3;
#endif
        }
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        /* Unicode 15 table 3-7: the second byte's range depends on the lead byte, which excludes overlongs
         * (E0, F0), surrogates (ED) and code points above U+10FFFF (F4) */
        uint8_t lo = 0x80, hi = 0xbf;
        size_t len;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else {
            return false; /* continuation byte as lead, C0/C1 overlong leads, F5-FF */
        }
        if (n - i < len)
            return false;
        if (p[i + 1] < lo || p[i + 1] > hi)
            return false;
        for (size_t k = 2; k < len; k++)
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
        i += len;
    }
    return true;
}

/* ---- permessage-deflate ---- */

#define WS_WBITS_MIN 9
#define WS_WBITS_MAX 15
#define WS_ZCHUNK 16384 /* output step while (in|de)flating; bounds overshoot past a cap */

struct ws_zctx {
    int level;                             /* zlib compression level */
    z_stream inf;                          /* raw inflate, 15-bit window, reset per message */
    z_stream *def[WS_WBITS_MAX + 1];       /* raw deflate by window bits, created on first use */
};

static const uint8_t ws_deflate_tail[4] = { 0x00, 0x00, 0xff, 0xff };

static z_stream *deflate_stream(struct ws_zctx *z, int bits)
{
    z_stream *s = z->def[bits];

    if (s)
        return s;
    s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    /* negative windowBits: raw deflate, no zlib header (RFC 7692 §7.2.1) */
    if (deflateInit2(s, z->level, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(s);
        return NULL;
    }
    z->def[bits] = s;
    return s;
}

struct ws_zctx *ws_zctx_new(int level)
{
    struct ws_zctx *z;

    if (level < -1 || level > 9)
        return NULL;
    z = calloc(1, sizeof(*z));
    if (!z)
        return NULL;
    z->level = level;
    if (inflateInit2(&z->inf, -WS_WBITS_MAX) != Z_OK) {
        free(z);
        return NULL;
    }
    if (!deflate_stream(z, WS_WBITS_MAX)) {
        inflateEnd(&z->inf);
        free(z);
        return NULL;
    }
    return z;
}

void ws_zctx_free(struct ws_zctx *z)
{
    if (!z)
        return;
    inflateEnd(&z->inf);
    for (size_t i = 0; i < ARRAY_SIZE(z->def); i++) {
        if (z->def[i]) {
            deflateEnd(z->def[i]);
            free(z->def[i]);
        }
    }
    free(z);
}

/* Output budget of one ws_inflate_msg call. */
struct inflate_out {
    struct buf *out;
    size_t room;  /* bytes still acceptable: max + 1 - produced (reaching 0 means too big) */
    size_t limit; /* capacity cap for out: its length at the start + max + 1 */
    size_t step;  /* output space to offer per inflate() call: grows with the message, up to WS_ZCHUNK */
};

/* Run the inflater over one input chunk in[0..n), appending to o->out. */
static int inflate_chunk(z_stream *s, const uint8_t *in, size_t n, struct inflate_out *o)
{
    struct buf *out = o->out;

    s->next_in = (Bytef *)in;
    s->avail_in = 0;
    for (;;) {
        if (s->avail_in == 0 && n > 0) {
            /* avail_in is a uInt */
            uInt step = n > UINT32_MAX ? UINT32_MAX : (uInt)n;
            s->avail_in = step;
            n -= step;
        }
        size_t want = MIN(o->room, MAX(o->step, out->cap - out->len));
        o->step = MIN(o->step * 2, (size_t)WS_ZCHUNK);
        /* out->len + want never passes o->limit, so a failure here is an allocation failure */
        if (out->cap - out->len < want && buf_try_reserve(out, want, o->limit) != 0)
            return WS_ERR_NOMEM;
        want = MIN(want, (size_t)UINT32_MAX);
        s->next_out = out->p + out->len;
        s->avail_out = (uInt)want;
        int rc = inflate(s, Z_SYNC_FLUSH);
        size_t got = want - s->avail_out;
        out->len += got;
        o->room -= got;
        switch (rc) {
        case Z_OK:
            break;
        case Z_STREAM_END:
            /* RFC 7692 §7.2.3.3: a block with BFINAL=1 ends the DEFLATE stream, yet the message may carry
             * more (at least the empty stored block the sender adds); decode the rest as a fresh stream */
            if (inflateReset(s) != Z_OK)
                return WS_ERR_INFLATE;
            break;
        case Z_BUF_ERROR:
            /* no progress possible: fine when the input is used up (a message may end mid-block) or when
             * the output is full; anything else would loop forever */
            if (s->avail_out > 0 && (s->avail_in > 0 || n > 0))
                return WS_ERR_INFLATE;
            break;
        case Z_MEM_ERROR:
            return WS_ERR_NOMEM;
        default:
            return WS_ERR_INFLATE;
        }
        if (o->room == 0)
            return WS_ERR_TOO_BIG;
        /* input gone and output space to spare: nothing is pending inside the inflater */
        if (s->avail_in == 0 && n == 0 && s->avail_out > 0)
            return 0;
    }
}

int ws_inflate_msg(struct ws_zctx *z, const uint8_t *in, size_t n, struct buf *out, size_t max)
{
    size_t start = out->len;
    /* small messages (the common case) should not cost a 16 KiB buffer */
    size_t step = n >= WS_ZCHUNK / 4 ? WS_ZCHUNK : MAX((size_t)256, n * 4);
    struct inflate_out o = { out, max + 1, start + max + 1, step };
    int rc;

    if (max >= SIZE_MAX - start) {
        o.room = SIZE_MAX;
        o.limit = SIZE_MAX;
    }
    rc = n ? inflate_chunk(&z->inf, in, n, &o) : 0;
    /* §7.2.2: append 00 00 ff ff to the payload before inflating */
    if (rc == 0)
        rc = inflate_chunk(&z->inf, ws_deflate_tail, sizeof(ws_deflate_tail), &o);
    if (rc == 0 && out->len - start > max)
        rc = WS_ERR_TOO_BIG;
    /* no context takeover: every message starts from an empty window */
    inflateReset(&z->inf);
    if (rc != 0)
        out->len = start;
    return rc;
}

int ws_deflate_msg(struct ws_zctx *z, int window_bits, const uint8_t *in, size_t n, struct buf *out,
                   size_t limit)
{
    size_t start = out->len;
    /* room for the 4 tail bytes we strip afterwards, plus one: zlib signals a finished flush by leaving
     * output space unused, so output that exactly fills the space would look unfinished */
    size_t cap_limit = limit > SIZE_MAX - 5 ? SIZE_MAX : limit + 5;
    z_stream *s;
    int rc = 0;

    if (window_bits < WS_WBITS_MIN || window_bits > WS_WBITS_MAX)
        return WS_ERR_PROTOCOL;
    if (!(s = deflate_stream(z, window_bits)))
        return WS_ERR_NOMEM;
    s->next_in = (Bytef *)in;
    s->avail_in = 0;
    for (;;) {
        if (s->avail_in == 0 && n > 0) {
            uInt step = n > UINT32_MAX ? UINT32_MAX : (uInt)n;
            s->avail_in = step;
            n -= step;
        }
        /* deflateBound covers the input still pending; +16 for the sync-flush marker */
        size_t want = MAX((size_t)deflateBound(s, s->avail_in) + 16, out->cap - out->len);
        if (out->len >= cap_limit) {
            rc = WS_ERR_TOO_BIG;
            break;
        }
        want = MIN(want, cap_limit - out->len);
        if (out->cap - out->len < want && buf_try_reserve(out, want, cap_limit) != 0) {
            rc = WS_ERR_NOMEM;
            break;
        }
        want = MIN(want, (size_t)UINT32_MAX);
        s->next_out = out->p + out->len;
        s->avail_out = (uInt)want;
        int zrc = deflate(s, n > 0 ? Z_NO_FLUSH : Z_SYNC_FLUSH);
        out->len += want - s->avail_out;
        if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
            rc = WS_ERR_NOMEM;
            break;
        }
        /* with Z_SYNC_FLUSH, spare output space on return means the flush is complete (zlib.h) */
        if (n == 0 && s->avail_in == 0 && s->avail_out > 0)
            break;
    }
    deflateReset(s);
    if (rc == 0) {
        /* §7.2.1: remove the 00 00 ff ff the sync flush ends with */
        if (out->len - start < 4 || memcmp(out->p + out->len - 4, ws_deflate_tail, 4) != 0)
            rc = WS_ERR_NOMEM; /* cannot happen with zlib; never send a frame we cannot vouch for */
        else
            out->len -= 4;
    }
    if (rc == 0 && out->len > limit)
        rc = WS_ERR_TOO_BIG;
    if (rc != 0)
        out->len = start;
    return rc;
}

/* ---- negotiation (RFC 7692 §5, §7.1; grammar RFC 6455 §9.1) ---- */

struct lex {
    const char *p;
    const char *end;
};

static bool is_tchar(unsigned char c)
{
    /* RFC 7230 §3.2.6 tchar */
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void skip_ows(struct lex *l)
{
    while (l->p < l->end && (*l->p == ' ' || *l->p == '\t'))
        l->p++;
}

/* A token; returns its length (0 if none). */
static size_t lex_token(struct lex *l, const char **tok)
{
    *tok = l->p;
    while (l->p < l->end && is_tchar((unsigned char)*l->p))
        l->p++;
    return (size_t)(l->p - *tok);
}

static bool name_eq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

/* A value (token or quoted-string, unescaped into val). Returns false on a syntax error. */
static bool lex_value(struct lex *l, char *val, size_t cap, size_t *vlen)
{
    size_t n = 0;
    const char *tok;

    if (l->p < l->end && *l->p == '"') {
        l->p++;
        for (;;) {
            if (l->p >= l->end)
                return false;
            char c = *l->p++;
            if (c == '"')
                break;
            if (c == '\\') {
                if (l->p >= l->end)
                    return false;
                c = *l->p++;
            }
            if (n < cap)
                val[n] = c;
            n++;
        }
    } else {
        n = lex_token(l, &tok);
        if (n == 0)
            return false;
        memcpy(val, tok, MIN(n, cap));
    }
    *vlen = n;
    return true;
}

/* Parse "8".."15" exactly (§7.1.2: decimal, no leading zeros). */
static int window_bits_value(const char *v, size_t n)
{
    if (n == 1 && v[0] >= '8' && v[0] <= '9')
        return v[0] - '0';
    if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
        return 10 + (v[1] - '0');
    return -1;
}

/* Skip to just past the next ',' outside a quoted string (or the end). */
static void skip_element(struct lex *l)
{
    bool quoted = false;

    while (l->p < l->end) {
        char c = *l->p++;
        if (quoted && c == '\\' && l->p < l->end)
            l->p++;
        else if (c == '"')
            quoted = !quoted;
        else if (c == ',' && !quoted)
            return;
    }
}

#define PMD_SNCT 0x1 /* server_no_context_takeover seen */
#define PMD_CNCT 0x2 /* client_no_context_takeover seen */
#define PMD_SMWB 0x4 /* server_max_window_bits seen */
#define PMD_CMWB 0x8 /* client_max_window_bits seen */

/* Parse the parameters of one permessage-deflate offer up to the end of its list element. Returns the
 * window bits to deflate with (9..15), or -1 if the offer is unacceptable or malformed. */
static int pmd_offer(struct lex *l)
{
    unsigned seen = 0;
    int server_bits = WS_WBITS_MAX;

    for (;;) {
        const char *name;
        size_t nlen, vlen = 0;
        char val[4];
        bool has_val = false;
        unsigned bit;

        skip_ows(l);
        if (l->p >= l->end || *l->p == ',')
            break;
        if (*l->p != ';')
            return -1;
        l->p++;
        skip_ows(l);
        if ((nlen = lex_token(l, &name)) == 0)
            return -1;
        skip_ows(l);
        if (l->p < l->end && *l->p == '=') {
            l->p++;
            skip_ows(l);
            if (!lex_value(l, val, sizeof(val), &vlen))
                return -1;
            has_val = true;
        }
        if (name_eq(name, nlen, "server_no_context_takeover"))
            bit = PMD_SNCT;
        else if (name_eq(name, nlen, "client_no_context_takeover"))
            bit = PMD_CNCT;
        else if (name_eq(name, nlen, "server_max_window_bits"))
            bit = PMD_SMWB;
        else if (name_eq(name, nlen, "client_max_window_bits"))
            bit = PMD_CMWB;
        else
            return -1; /* §7.1: unknown parameter → decline the offer */
        if (seen & bit)
            return -1; /* §7.1: duplicate → decline */
        seen |= bit;
        if ((bit == PMD_SNCT || bit == PMD_CNCT) && has_val)
            return -1;
        if (bit == PMD_SMWB) {
            int b = has_val ? window_bits_value(val, vlen) : -1;
            /* zlib's raw deflate cannot produce a 256-byte window (§7.1.2.1 lets us decline) */
            if (b < WS_WBITS_MIN)
                return -1;
            server_bits = b;
        }
        if (bit == PMD_CMWB && has_val && window_bits_value(val, vlen) < 0)
            return -1;
    }
    return server_bits;
}

static bool pmd_response(int bits, char *resp, size_t resp_cap)
{
    static const char base[] = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    size_t n = sizeof(base) - 1;

    if (resp_cap < n + 1)
        return false;
    memcpy(resp, base, n + 1);
    if (bits < WS_WBITS_MAX) {
        static const char smwb[] = "; server_max_window_bits=";
        size_t m = sizeof(smwb) - 1;
        if (resp_cap < n + m + 2 + 1)
            return false;
        memcpy(resp + n, smwb, m);
        n += m;
        if (bits >= 10)
            resp[n++] = '1';
        resp[n++] = (char)('0' + bits % 10);
        resp[n] = '\0';
    }
    return true;
}

bool ws_pmd_negotiate(const char *value, size_t len, struct ws_pmd *out, char *resp, size_t resp_cap)
{
    struct lex l = { value, value + len };

    if (out->enabled)
        return true;
    while (l.p < l.end) {
        const char *name;
        size_t nlen;
        int bits;

        skip_ows(&l);
        nlen = lex_token(&l, &name);
        if (nlen == 0 || !name_eq(name, nlen, "permessage-deflate")) {
            skip_element(&l);
            continue;
        }
        bits = pmd_offer(&l);
        /* only a clean end of element counts: a syntax error makes the offer unacceptable */
        if (bits > 0 && (l.p == l.end || *l.p == ',') && pmd_response(bits, resp, resp_cap)) {
            out->enabled = true;
            out->server_window_bits = (uint8_t)bits;
            return true;
        }
        skip_element(&l);
    }
    return false;
}
