/* HTTP/1.1 WebSocket upgrade request codec (see http.h). llhttp tokenises the head; this file adds
 * the strictness llhttp 8.1 lacks (bare LF, obs-fold, field-name syntax, request-line shape), the
 * Phoenix/Plug/Bandit semantics the gateway must mirror, SHA-1 for the accept key, and the replies.
 * No I/O, no allocation. */
#include "http.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <llhttp.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" /* RFC 6455 §1.3 */

/* ---- small helpers ---------------------------------------------------------------------------- */

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* s (len n) equals the lowercase literal lit, ignoring ASCII case */
static bool eq_nocase(const char *s, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    if (n != m)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)s[i]) != lit[i])
            return false;
    return true;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static struct span trim_ows(struct span s)
{
    while (s.len && is_ows(s.p[0])) {
        s.p++;
        s.len--;
    }
    while (s.len && is_ows(s.p[s.len - 1]))
        s.len--;
    return s;
}

/* RFC 9110 §5.6.2 tchar */
static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Plug.Conn.Utils.list/1 then case-insensitive compare: does the comma list contain token? */
static bool list_has_token(struct span v, const char *token)
{
    size_t i = 0;
    while (i <= v.len) {
        size_t j = i;
        while (j < v.len && v.p[j] != ',')
            j++;
        struct span e = trim_ows((struct span){ v.p + i, j - i });
        if (eq_nocase(e.p, e.len, token))
            return true;
        i = j + 1;
    }
    return false;
}

/* ---- head scan -------------------------------------------------------------------------------- */

/* Walk p[0..lim) for what llhttp 8.1 lets through but we refuse. Returns the index of the first
 * offending byte, or the end of the first CRLFCRLF (and sets *head_end), or lim. Every decision at
 * index i depends only on p[0..i], so a prefix scans identically. */
static size_t scan_head(const uint8_t *p, size_t lim, size_t *head_end)
{
    *head_end = 0;
    for (size_t i = 0; i < lim; i++) {
        uint8_t c = p[i];
        if (i > 0 && p[i - 1] == '\r' && c != '\n')
            return i; /* RFC 9112 §2.2: a bare CR is invalid */
        if (c == '\n') {
            if (i == 0 || p[i - 1] != '\r')
                return i; /* bare LF: llhttp 8.1 accepts it on the request line; we do not */
            if (i >= 3 && p[i - 2] == '\n' && p[i - 3] == '\r') {
                *head_end = i + 1;
                return i + 1;
            }
            continue;
        }
        if (is_ows((char)c) && i >= 2 && p[i - 1] == '\n' && p[i - 2] == '\r')
            return i; /* RFC 9112 §5.2: obs-fold (llhttp 8.1 accepts it) → 400 */
        if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f)
            return i;
    }
    return lim;
}

/* ---- llhttp callbacks ------------------------------------------------------------------------- */

struct parse_ctx {
    struct http_req *req;
    struct span url;
    struct span name;    /* current field name */
    struct span value;   /* current field value; .p NULL until llhttp reports data */
    bool name_done;      /* name complete, now in the value */
    unsigned n_host;
    ssize_t err;         /* our own verdict when a callback fails */
};

static struct span extend(struct span s, const char *at, size_t len)
{
    if (!s.p)
        return (struct span){ at, len };
    s.len = (size_t)(at + len - s.p);
    return s;
}

static int on_url(llhttp_t *ll, const char *at, size_t len)
{
    struct parse_ctx *c = ll->data;
    c->url = extend(c->url, at, len);
    return 0;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t len)
{
    struct parse_ctx *c = ll->data;
    if (c->name_done) {
        c->name = (struct span){ NULL, 0 };
        c->value = (struct span){ NULL, 0 };
        c->name_done = false;
    }
    c->name = extend(c->name, at, len);
    return 0;
}

static int on_header_field_complete(llhttp_t *ll)
{
    struct parse_ctx *c = ll->data;
    /* RFC 9110 §5.1 / RFC 9112 §5.1: a token, no whitespace before ':' (llhttp 8.1 accepts "Host :") */
    if (!c->name.p || c->name.len == 0)
        goto bad;
    for (size_t i = 0; i < c->name.len; i++)
        if (!is_tchar((unsigned char)c->name.p[i]))
            goto bad;
    c->name_done = true;
    c->value = (struct span){ NULL, 0 };
    return 0;
bad:
    c->err = HTTP_ERR_BAD_REQUEST;
    return -1;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t len)
{
    struct parse_ctx *c = ll->data;
    c->value = extend(c->value, at, len);
    return 0;
}

static uint8_t sat_inc(uint8_t n)
{
    return n == UINT8_MAX ? n : (uint8_t)(n + 1);
}

static int on_header_value_complete(llhttp_t *ll)
{
    struct parse_ctx *c = ll->data;
    struct http_req *r = c->req;
    struct span n = c->name;
    if (!n.p)
        goto bad;
    /* an empty value gets a non-NULL pointer just past the ':' so "present" stays distinguishable */
    struct span v = c->value.p ? trim_ows(c->value) : (struct span){ n.p + n.len + 1, 0 };

    if (eq_nocase(n.p, n.len, "host")) {
        if (++c->n_host > 1)
            goto bad; /* RFC 9112 §3.2: more than one Host → 400 */
        r->host = v;
    } else if (eq_nocase(n.p, n.len, "upgrade")) {
        if (!r->upgrade.p)
            r->upgrade = v;
        r->upgrade_websocket |= list_has_token(v, "websocket");
    } else if (eq_nocase(n.p, n.len, "connection")) {
        if (!r->connection.p)
            r->connection = v;
        r->connection_upgrade |= list_has_token(v, "upgrade");
    } else if (eq_nocase(n.p, n.len, "sec-websocket-key")) {
        if (!r->ws_key.p)
            r->ws_key = v;
        r->n_ws_key = sat_inc(r->n_ws_key);
    } else if (eq_nocase(n.p, n.len, "sec-websocket-version")) {
        if (!r->ws_version.p)
            r->ws_version = v;
        r->n_ws_version = sat_inc(r->n_ws_version);
    } else if (eq_nocase(n.p, n.len, "origin")) {
        if (!r->origin.p)
            r->origin = v;
    } else if (eq_nocase(n.p, n.len, "sec-websocket-extensions")) {
        if (r->n_extensions == HTTP_MAX_EXT_LINES)
            goto too_many;
        r->extensions[r->n_extensions++] = v;
    } else if (n.len >= 2 && lower((unsigned char)n.p[0]) == 'x' && n.p[1] == '-') {
        /* device-protocol §2.1: every x-* header counts, names compared lowercased */
        if (r->n_x == HTTP_MAX_X_HEADERS)
            goto too_many;
        r->x_headers[r->n_x++] = (struct http_header){ n, v };
    }
    return 0;
too_many:
    c->err = HTTP_ERR_TOO_MANY_FIELDS;
    return -1;
bad:
    c->err = HTTP_ERR_BAD_REQUEST;
    return -1;
}

static int on_headers_complete(llhttp_t *ll)
{
    (void)ll;
    return 2; /* no body: stop here with HPE_PAUSED_UPGRADE whatever the headers say */
}

static const llhttp_settings_t parse_settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
};

/* ---- request line and target ------------------------------------------------------------------ */

/* Exactly "METHOD SP url SP HTTP/1.d CRLF" at the start of the head (RFC 9112 §3). */
static bool request_line_ok(const char *base, size_t head_len, struct span url)
{
    size_t sp = 0;
    while (sp < head_len && base[sp] != ' ') {
        char ch = base[sp];
        if (!((ch >= 'A' && ch <= 'Z') || ch == '-'))
            return false;
        sp++;
    }
    if (sp == 0 || url.p != base + sp + 1 || url.len == 0)
        return false;
    for (size_t i = 0; i < url.len; i++) {
        unsigned char ch = (unsigned char)url.p[i];
        if (ch <= 0x20 || ch == 0x7f)
            return false;
    }
    size_t end = sp + 1 + url.len;
    static const char tail[] = " HTTP/1.";
    if (head_len - end < sizeof(tail) - 1 + 3)
        return false;
    const char *t = base + end;
    return memcmp(t, tail, sizeof(tail) - 1) == 0 && t[8] >= '0' && t[8] <= '9' && t[9] == '\r' &&
           t[10] == '\n';
}

/* Split the request-target into path and query the way Bandit does (drop "#...", split on the first
 * '?'). Absolute-form (RFC 9112 §3.2.2) is accepted for http/https only: the path starts after the
 * authority. Returns false to refuse. */
static bool split_target(struct span url, struct http_req *r)
{
    const char *s = url.p, *end = url.p + url.len;
    const char *hash = memchr(s, '#', url.len);
    if (hash)
        end = hash;
    if (s < end && *s != '/' && !(end - s == 1 && *s == '*')) {
        size_t skip;
        if ((size_t)(end - s) >= 7 && eq_nocase(s, 7, "http://"))
            skip = 7;
        else if ((size_t)(end - s) >= 8 && eq_nocase(s, 8, "https://"))
            skip = 8;
        else
            return false;
        const char *auth = s + skip;
        const char *a = auth;
        while (a < end && *a != '/' && *a != '?')
            a++;
        if (a == auth)
            return false; /* empty authority */
        s = a;
    }
    const char *q = memchr(s, '?', (size_t)(end - s));
    if (q) {
        r->path = (struct span){ s, (size_t)(q - s) };
        r->query = (struct span){ q + 1, (size_t)(end - q - 1) };
    } else {
        r->path = (struct span){ s, (size_t)(end - s) };
    }
    return true;
}

/* Checks that need the whole head. */
static ssize_t finish_head(llhttp_t *ll, struct parse_ctx *c, const char *base, size_t head_len)
{
    struct http_req *r = c->req;
    if (!request_line_ok(base, head_len, c->url))
        return HTTP_ERR_BAD_REQUEST;
    if (ll->http_major != 1 || ll->http_minor > 1)
        return HTTP_ERR_BAD_REQUEST; /* llhttp 8.1 also lets 0.9 and 2.0 through */
    /* a GET upgrade has no body; refusing one also closes any request-smuggling question */
    if ((ll->flags & (F_CHUNKED | F_TRANSFER_ENCODING)) ||
        ((ll->flags & F_CONTENT_LENGTH) && ll->content_length > 0))
        return HTTP_ERR_BAD_REQUEST;
    if (ll->http_minor == 1 && c->n_host == 0)
        return HTTP_ERR_BAD_REQUEST; /* RFC 9112 §3.2; Bandit: "No host header" → 400 */
    if (!split_target(c->url, r))
        return HTTP_ERR_BAD_REQUEST;
    r->method_get = ll->method == HTTP_GET;
    r->http_minor = ll->http_minor;
    r->head_len = head_len;
    return (ssize_t)head_len;
}

ssize_t http_req_parse(const uint8_t *p, size_t n, size_t max_head, struct http_req *req)
{
    memset(req, 0, sizeof(*req));
    size_t lim = MIN(n, max_head);
    size_t head_end;
    size_t stop = scan_head(p, lim, &head_end);

    struct parse_ctx c = { .req = req };
    llhttp_t ll;
    llhttp_init(&ll, HTTP_REQUEST, &parse_settings);
    ll.data = &c;
    const char *base = (const char *)p;
    enum llhttp_errno e = stop ? llhttp_execute(&ll, base, stop) : HPE_OK;

    if (e == HPE_PAUSED_UPGRADE) {
        if (!head_end || llhttp_get_error_pos(&ll) != base + head_end)
            return HTTP_ERR_BAD_REQUEST;
        return finish_head(&ll, &c, base, head_end);
    }
    if (e != HPE_OK)
        return c.err ? c.err : HTTP_ERR_BAD_REQUEST;
    if (head_end || stop < lim)
        return HTTP_ERR_BAD_REQUEST; /* a CRLFCRLF llhttp did not end on, or an offending byte */
    return n >= max_head ? HTTP_ERR_TOO_LARGE : 0;
}

int http_err_status(ssize_t err)
{
    return err == HTTP_ERR_TOO_LARGE || err == HTTP_ERR_TOO_MANY_FIELDS ? 431 : 400;
}

const char *http_strerror(ssize_t err)
{
    switch (err) {
    case HTTP_ERR_TOO_LARGE:
        return "request head too large";
    case HTTP_ERR_BAD_REQUEST:
        return "malformed request head";
    case HTTP_ERR_TOO_MANY_FIELDS:
        return "too many x-* or Sec-WebSocket-Extensions header lines";
    default:
        return "unknown http error";
    }
}

/* ---- query and vsn ---------------------------------------------------------------------------- */

/* Byte iterator over one x-www-form-urlencoded component, decoding like Elixir's
 * URI.decode_www_form: '+' → ' ', "%XX" → byte, any other '%' stays literal. */
struct form_it {
    const char *p, *end;
};

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* next decoded byte, or -1 at the end */
static int form_next(struct form_it *it)
{
    if (it->p >= it->end)
        return -1;
    unsigned char ch = (unsigned char)*it->p++;
    if (ch == '+')
        return ' ';
    if (ch == '%' && it->end - it->p >= 2) {
        int h = hexval((unsigned char)it->p[0]), l = hexval((unsigned char)it->p[1]);
        if (h >= 0 && l >= 0) {
            it->p += 2;
            return h << 4 | l;
        }
    }
    return ch;
}

/* Streaming UTF-8 validator (what Elixir's String.valid?/1 accepts: no overlongs, no surrogates,
 * nothing above U+10FFFF). */
static bool form_is_utf8(struct form_it it)
{
    int c;
    while ((c = form_next(&it)) >= 0) {
        int need;
        unsigned lo = 0x80, hi = 0xbf;
        if (c < 0x80)
            continue;
        else if (c >= 0xc2 && c <= 0xdf)
            need = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else
            return false;
        for (int k = 0; k < need; k++) {
            int d = form_next(&it);
            if (d < 0 || (unsigned)d < lo || (unsigned)d > hi)
                return false;
            lo = 0x80;
            hi = 0xbf;
        }
    }
    return true;
}

/* Iterate the pairs of a query: returns false when done; key/value are raw (still encoded). */
struct pair_it {
    const char *p, *end;
};

static bool next_pair(struct pair_it *it, struct form_it *key, struct form_it *val)
{
    while (it->p < it->end) {
        const char *s = it->p;
        const char *amp = memchr(s, '&', (size_t)(it->end - s));
        const char *e = amp ? amp : it->end;
        it->p = amp ? amp + 1 : it->end;
        if (e == s)
            continue; /* Plug skips empty parts */
        const char *eq = memchr(s, '=', (size_t)(e - s));
        *key = (struct form_it){ s, eq ? eq : e };
        *val = (struct form_it){ eq ? eq + 1 : e, e };
        return true;
    }
    return false;
}

bool http_query_is_valid(struct span query)
{
    if (!query.p)
        return true;
    struct pair_it it = { query.p, query.p + query.len };
    struct form_it k, v;
    while (next_pair(&it, &k, &v))
        if (!form_is_utf8(k) || !form_is_utf8(v))
            return false;
    return true;
}

enum key_kind { KEY_OTHER, KEY_VSN, KEY_VSN_NESTED };

/* Plug.Conn.Query.decode_each: a decoded key ending in ']' with a '[' at position > 0 is nested under
 * the part before the first '['. */
static enum key_kind classify_key(struct form_it it)
{
    static const char root[] = "vsn";
    int ch, last = -1;
    size_t i = 0;
    while (i < 3 && (ch = form_next(&it)) >= 0) {
        if (ch != root[i])
            return KEY_OTHER;
        i++;
    }
    if (i < 3)
        return KEY_OTHER;
    ch = form_next(&it);
    if (ch < 0)
        return KEY_VSN;
    if (ch != '[')
        return KEY_OTHER;
    last = ch;
    while ((ch = form_next(&it)) >= 0)
        last = ch;
    return last == ']' ? KEY_VSN_NESTED : KEY_OTHER;
}

/* One MAJOR/MINOR/PATCH number or pre-release identifier while it streams by. */
struct ident {
    size_t len;
    bool all_digits;
    bool lead_zero;   /* first byte is '0' */
    unsigned value;   /* saturates at 1000: only 0/2/3 matter */
};

static void ident_reset(struct ident *id)
{
    *id = (struct ident){ 0, true, false, 0 };
}

static void ident_add(struct ident *id, int ch)
{
    if (id->len == 0 && ch == '0')
        id->lead_zero = true;
    if (ch >= '0' && ch <= '9') {
        if (id->value < 1000)
            id->value = id->value * 10 + (unsigned)(ch - '0');
    } else {
        id->all_digits = false;
    }
    id->len++;
}

/* Elixir require_digits/1: digits only, non-empty, no leading zero */
static bool ident_is_number(const struct ident *id)
{
    return id->len > 0 && id->all_digits && !(id->lead_zero && id->len > 1);
}

/* Elixir's Version.parse + "~> 2.0.0"/"~> 3.0.0", over the decoded value. */
static enum http_vsn parse_vsn(struct form_it it)
{
    enum { MAJOR, MINOR, PATCH, PRE, BUILD } st = MAJOR;
    struct ident id, nums[3];
    bool has_pre = false;
    int ch;
    ident_reset(&id);
    for (;;) {
        ch = form_next(&it);
        bool sep_dot = ch == '.', at_end = ch < 0;
        if (st <= PATCH) {
            bool ends = at_end || (st < PATCH && sep_dot) || (st == PATCH && (ch == '-' || ch == '+'));
            if (!ends) {
                if (ch < '0' || ch > '9')
                    return HTTP_VSN_NONE;
                ident_add(&id, ch);
                continue;
            }
            if (!ident_is_number(&id) || (at_end && st != PATCH))
                return HTTP_VSN_NONE;
            nums[st] = id;
            ident_reset(&id);
            if (at_end)
                break;
            st = st < PATCH ? st + 1 : ch == '-' ? PRE : BUILD;
            has_pre = st == PRE;
            continue;
        }
        /* pre-release / build identifiers: non-empty [0-9A-Za-z-]; numeric pre ids without leading 0 */
        if (at_end || sep_dot || (st == PRE && ch == '+')) {
            if (id.len == 0)
                return HTTP_VSN_NONE;
            if (st == PRE && id.all_digits && id.lead_zero && id.len > 1)
                return HTTP_VSN_NONE;
            ident_reset(&id);
            if (at_end)
                break;
            if (ch == '+')
                st = BUILD;
            continue;
        }
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              ch == '-'))
            return HTTP_VSN_NONE;
        ident_add(&id, ch);
    }
    /* ~> X.0.0 is ">= X.0.0 and < X.1.0-0": minor 0, and X.0.0 pre-releases sort below X.0.0 */
    if (nums[1].value != 0 || (nums[2].value == 0 && has_pre))
        return HTTP_VSN_NONE;
    if (nums[0].value == 2)
        return HTTP_VSN_JSON;
    if (nums[0].value == 3)
        return HTTP_VSN_MSGPACK;
    return HTTP_VSN_NONE;
}

enum http_vsn http_vsn_from_query(struct span query)
{
    if (!query.p)
        return HTTP_VSN_NONE; /* Phoenix: absent vsn is "1.0.0" → no serializer */
    struct pair_it it = { query.p, query.p + query.len };
    struct form_it k, v, last = { NULL, NULL };
    bool have = false, nested_seen = false, last_nested = false;
    while (next_pair(&it, &k, &v)) {
        switch (classify_key(k)) {
        case KEY_VSN:
            have = true;
            last_nested = false;
            last = v;
            break;
        case KEY_VSN_NESTED:
            /* only the first nested key creates the root entry (Plug insert_keys) */
            if (!nested_seen) {
                have = true;
                last_nested = true;
                nested_seen = true;
            }
            break;
        case KEY_OTHER:
            break;
        }
    }
    if (!have || last_nested)
        return HTTP_VSN_NONE;
    return parse_vsn(last);
}

/* ---- routing and upgrade checks --------------------------------------------------------------- */

/* Splits a path into its non-empty segments as Plug's path_info does ("//a//b/" is a, b);
 * SIZE_MAX when there are more than `max`. */
static size_t path_segments(struct span path, struct span *seg, size_t max)
{
    size_t nseg = 0, i = 0;
    while (path.p && i < path.len) {
        if (path.p[i] == '/') {
            i++;
            continue;
        }
        size_t j = i;
        while (j < path.len && path.p[j] != '/')
            j++;
        if (nseg == max)
            return SIZE_MAX;
        seg[nseg++] = (struct span){ path.p + i, j - i };
        i = j;
    }
    return nseg;
}

bool http_path_is_device_socket(struct span path)
{
    struct span seg[2];
    if (path_segments(path, seg, ARRAY_SIZE(seg)) != 2 || !span_is(seg[1], "websocket"))
        return false;
    return span_is(seg[0], "socket") || span_is(seg[0], "device-socket");
}

bool http_path_is_status(struct span path)
{
    struct span seg[2];
    if (path_segments(path, seg, ARRAY_SIZE(seg)) != 2 || !span_is(seg[0], "status"))
        return false;
    return span_is(seg[1], "alive") || span_is(seg[1], "_health") || span_is(seg[1], "health") ||
           span_is(seg[1], "healthy");
}

static bool is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* RFC 6455 §4.2.1 item 5: base64 that decodes to 16 bytes = 22 alphabet chars + "==" */
static bool ws_key_ok(struct span k)
{
    if (k.len != 24 || k.p[22] != '=' || k.p[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!is_b64(k.p[i]))
            return false;
    return true;
}

const char *http_ws_upgrade_error(const struct http_req *req)
{
    if (req->http_minor != 1)
        return "HTTP version HTTP/1.0 unsupported";
    if (!req->method_get)
        return "HTTP method unsupported";
    if (!req->host.p)
        return "'host' header is absent";
    if (!req->connection_upgrade)
        return "'connection' header must contain 'upgrade'";
    if (!req->upgrade_websocket)
        return "'upgrade' header must contain 'websocket'";
    if (req->n_ws_key == 0)
        return "'sec-websocket-key' header is absent";
    if (req->n_ws_key > 1)
        return "'sec-websocket-key' header must appear once"; /* Bandit's handshake refuses it too */
    if (!ws_key_ok(req->ws_key))
        return "'sec-websocket-key' header must be base64 of 16 bytes";
    if (req->n_ws_version != 1 || req->ws_version.len != 2 || memcmp(req->ws_version.p, "13", 2) != 0)
        return "'sec-websocket-version' header must equal '13'";
    return NULL;
}

enum http_auth_mode http_auth_mode(const struct http_req *req, bool have_peer_cert)
{
    if (have_peer_cert)
        return HTTP_AUTH_CERT;
    return req->n_x > 0 ? HTTP_AUTH_SHARED_SECRET : HTTP_AUTH_NONE;
}

/* ---- SHA-1 (FIPS 180-4), only for the accept key ---------------------------------------------- */

struct sha1 {
    uint32_t h[5];
    uint64_t len;
    uint8_t buf[64];
    size_t n;
};

static uint32_t rol(uint32_t x, int k)
{
    return x << k | x >> (32 - k);
}

static void sha1_block(struct sha1 *s, const uint8_t *b)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 | (uint32_t)b[4 * i + 2] << 8 |
               b[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = s->h[0], bb = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (bb & c) | (~bb & d);
            k = 0x5a827999;
        } else if (i < 40) {
            f = bb ^ c ^ d;
            k = 0x6ed9eba1;
        } else if (i < 60) {
            f = (bb & c) | (bb & d) | (c & d);
            k = 0x8f1bbcdc;
        } else {
            f = bb ^ c ^ d;
            k = 0xca62c1d6;
        }
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol(bb, 30);
        bb = a;
        a = t;
    }
    s->h[0] += a;
    s->h[1] += bb;
    s->h[2] += c;
    s->h[3] += d;
    s->h[4] += e;
}

static void sha1_init(struct sha1 *s)
{
    *s = (struct sha1){ { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0 }, 0, { 0 }, 0 };
}

static void sha1_update(struct sha1 *s, const void *data, size_t len)
{
    const uint8_t *d = data;
    s->len += len;
    while (len) {
        size_t k = MIN(len, 64 - s->n);
        memcpy(s->buf + s->n, d, k);
        s->n += k;
        d += k;
        len -= k;
        if (s->n == 64) {
            sha1_block(s, s->buf);
            s->n = 0;
        }
    }
}

static void sha1_final(struct sha1 *s, uint8_t out[20])
{
    uint64_t bits = s->len * 8;
    uint8_t pad = 0x80, zero = 0, lenbe[8];
    sha1_update(s, &pad, 1);
    while (s->n != 56)
        sha1_update(s, &zero, 1);
    for (int i = 0; i < 8; i++)
        lenbe[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha1_update(s, lenbe, 8);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

void http_ws_accept_key(struct span key, char out[29])
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    struct sha1 s;
    uint8_t d[21];
    sha1_init(&s);
    if (key.len)
        sha1_update(&s, key.p, key.len);
    sha1_update(&s, WS_GUID, sizeof(WS_GUID) - 1);
    sha1_final(&s, d);
    d[20] = 0;
    size_t o = 0;
    for (size_t i = 0; i < 21; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | (i + 2 < 21 ? d[i + 2] : 0);
        out[o++] = b64[v >> 18 & 63];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = b64[v >> 6 & 63];
        out[o++] = b64[v & 63];
    }
    /* 20 bytes → 27 significant chars + one '=' */
    out[27] = '=';
    out[28] = '\0';
}

/* ---- responses -------------------------------------------------------------------------------- */

struct out {
    char *p;
    size_t cap, len;
    bool fail;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (n == 0)
        return;
    if (o->fail || o->cap - o->len < n) {
        o->fail = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void put_str(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* a header value we are about to emit must not break the framing */
static bool safe_value(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 ? *s != '\t' : (unsigned char)*s == 0x7f)
            return false;
    return true;
}

/* "Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n" (RFC 9110 §5.6.7 IMF-fixdate), locale-independent */
static void put_date(struct out *o, time_t now)
{
    static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char mons[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct tm tm;
    char buf[64];
    if (!gmtime_r(&now, &tm) || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999) {
        o->fail = true;
        return;
    }
    int n = snprintf(buf, sizeof(buf), "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n", days[tm.tm_wday],
                     tm.tm_mday, mons[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    put(o, buf, (size_t)n);
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 301: return "Moved Permanently";
    case 307: return "Temporary Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return NULL;
    }
}

static void put_status(struct out *o, int status)
{
    char buf[64];
    int n = snprintf(buf, sizeof(buf), "HTTP/1.1 %d %s\r\n", status, reason_phrase(status));
    put(o, buf, (size_t)n);
}

size_t http_write_101(char *out, size_t cap, const char accept[29], const char *ext, time_t now)
{
    struct out o = { out, cap, 0, false };
    if (memchr(accept, '\0', 29) == NULL || !safe_value(accept) || (ext && !safe_value(ext)))
        return 0;
    put_status(&o, 101);
    put_date(&o, now);
    put_str(&o, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    put_str(&o, accept);
    put_str(&o, "\r\n");
    if (ext) {
        put_str(&o, "Sec-WebSocket-Extensions: ");
        put_str(&o, ext);
        put_str(&o, "\r\n");
    }
    put_str(&o, "\r\n");
    return o.fail ? 0 : o.len;
}

/* status line, Date, one optional extra header, body with its framing, then close */
static size_t write_closing(char *out, size_t cap, int status, const char *hname, const char *hval,
                            const char *body, time_t now)
{
    struct out o = { out, cap, 0, false };
    char buf[48];
    size_t blen = body ? strlen(body) : 0;
    if (!reason_phrase(status) || status == 101 || (hval && !safe_value(hval)))
        return 0;
    put_status(&o, status);
    put_date(&o, now);
    if (hval) {
        put_str(&o, hname);
        put_str(&o, hval);
        put_str(&o, "\r\n");
    }
    if (blen)
        put_str(&o, "Content-Type: text/plain\r\n");
    int n = snprintf(buf, sizeof(buf), "Content-Length: %zu\r\n", blen);
    put(&o, buf, (size_t)n);
    put_str(&o, "Connection: close\r\n\r\n");
    put(&o, body, blen);
    return o.fail ? 0 : o.len;
}

size_t http_write_error(char *out, size_t cap, int status, const char *nh_reason, const char *body,
                        time_t now)
{
    return write_closing(out, cap, status, "nh-connection-error-reason: ", nh_reason, body, now);
}

size_t http_write_redirect(char *out, size_t cap, int status, const char *location, time_t now)
{
    if ((status != 301 && status != 307) || !location)
        return 0;
    return write_closing(out, cap, status, "Location: ", location, NULL, now);
}
