/* libFuzzer target for gateway/http.c: http_req_parse on arbitrary bytes with a small max_head chosen
 * by the first input byte, prefix/limit consistency, every accessor on successful parses, and the
 * response writers decoded back with llhttp (HTTP_RESPONSE). Input: [max_head selector] request... */
#include <stdlib.h>
#include <string.h>

#include <llhttp.h>

#include "http.h"

#include "fuzz_check.h"

static bool span_in(struct span s, const uint8_t *base, size_t len)
{
    if (!s.p)
        return true;
    return (const uint8_t *)s.p >= base && (const uint8_t *)s.p + s.len <= base + len;
}

static void check_spans(const struct http_req *r, const uint8_t *p, size_t head_len)
{
    CHECK(span_in(r->path, p, head_len));
    CHECK(span_in(r->query, p, head_len));
    CHECK(span_in(r->host, p, head_len));
    CHECK(span_in(r->upgrade, p, head_len));
    CHECK(span_in(r->connection, p, head_len));
    CHECK(span_in(r->ws_key, p, head_len));
    CHECK(span_in(r->ws_version, p, head_len));
    CHECK(span_in(r->origin, p, head_len));
    CHECK(r->n_extensions <= HTTP_MAX_EXT_LINES);
    CHECK(r->n_x <= HTTP_MAX_X_HEADERS);
    for (size_t i = 0; i < r->n_extensions; i++)
        CHECK(r->extensions[i].p && span_in(r->extensions[i], p, head_len));
    for (size_t i = 0; i < r->n_x; i++) {
        const struct http_header *h = &r->x_headers[i];
        CHECK(h->name.p && h->value.p && span_in(h->name, p, head_len) && span_in(h->value, p, head_len));
        CHECK(h->name.len >= 2 && (h->name.p[0] | 0x20) == 'x' && h->name.p[1] == '-');
        /* values are OWS-trimmed */
        if (h->value.len)
            CHECK(h->value.p[0] != ' ' && h->value.p[h->value.len - 1] != ' ');
    }
    CHECK(r->http_minor <= 1);
    CHECK(r->head_len == head_len);
    CHECK(head_len >= 4 && memcmp(p + head_len - 4, "\r\n\r\n", 4) == 0);
}

static bool same_span(struct span a, const uint8_t *ab, struct span b, const uint8_t *bb)
{
    if (!a.p || !b.p)
        return !a.p && !b.p;
    return a.len == b.len && (const uint8_t *)a.p - ab == (const uint8_t *)b.p - bb;
}

static void check_same(const struct http_req *a, const uint8_t *ab, const struct http_req *b,
                       const uint8_t *bb)
{
    CHECK(same_span(a->path, ab, b->path, bb) && same_span(a->query, ab, b->query, bb));
    CHECK(same_span(a->host, ab, b->host, bb) && same_span(a->ws_key, ab, b->ws_key, bb));
    CHECK(same_span(a->upgrade, ab, b->upgrade, bb) && same_span(a->connection, ab, b->connection, bb));
    CHECK(same_span(a->ws_version, ab, b->ws_version, bb) && same_span(a->origin, ab, b->origin, bb));
    CHECK(a->n_x == b->n_x && a->n_extensions == b->n_extensions && a->head_len == b->head_len);
    for (size_t i = 0; i < a->n_x; i++)
        CHECK(same_span(a->x_headers[i].name, ab, b->x_headers[i].name, bb) &&
              same_span(a->x_headers[i].value, ab, b->x_headers[i].value, bb));
    CHECK(a->method_get == b->method_get && a->http_minor == b->http_minor);
    CHECK(a->upgrade_websocket == b->upgrade_websocket && a->connection_upgrade == b->connection_upgrade);
    CHECK(a->n_ws_key == b->n_ws_key && a->n_ws_version == b->n_ws_version);
}

/* ---- response round trip through llhttp ------------------------------------------------------- */

struct resp_ctx {
    size_t body;
    bool complete;
};

static int on_body(llhttp_t *ll, const char *at, size_t len)
{
    (void)at;
    ((struct resp_ctx *)ll->data)->body += len;
    return 0;
}

static int on_message_complete(llhttp_t *ll)
{
    ((struct resp_ctx *)ll->data)->complete = true;
    return HPE_PAUSED;
}

static void check_response(const char *out, size_t n, int status, size_t body_len, bool is_101)
{
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_body = on_body;
    if (!is_101)
        s.on_message_complete = on_message_complete; /* a 101 ends in HPE_PAUSED_UPGRADE instead */
    llhttp_t ll;
    struct resp_ctx c = { 0, false };
    llhttp_init(&ll, HTTP_RESPONSE, &s);
    ll.data = &c;
    enum llhttp_errno e = llhttp_execute(&ll, out, n);
    if (is_101) {
        CHECK(e == HPE_PAUSED_UPGRADE);
        CHECK(llhttp_get_error_pos(&ll) == out + n);
    } else {
        CHECK(e == HPE_PAUSED && c.complete);
        CHECK(llhttp_get_error_pos(&ll) == out + n);
        CHECK(c.body == body_len);
    }
    CHECK(llhttp_get_status_code(&ll) == status);
}

static void fuzz_writers(const uint8_t *data, size_t size)
{
    static const int statuses[] = { 200, 301, 307, 400, 401, 403, 404, 408, 431, 500, 503 };
    char str[256], out[1024];
    size_t n = MIN(size, sizeof(str) - 1);
    memcpy(str, data, n);
    str[n] = '\0';
    int status = statuses[(size ? data[0] : 0) % ARRAY_SIZE(statuses)];
    size_t w = http_write_error(out, sizeof(out), status, str, str, 1767225600);
    if (w)
        check_response(out, w, status, strlen(str), false);
    w = http_write_error(out, sizeof(out), status, NULL, str, (time_t)size * 86399);
    CHECK(w > 0);
    check_response(out, w, status, strlen(str), false);
    w = http_write_redirect(out, sizeof(out), status == 301 ? 301 : 307, str, 0);
    if (w)
        check_response(out, w, status == 301 ? 301 : 307, 0, false);
    char acc[29];
    http_ws_accept_key((struct span){ (const char *)data, size }, acc);
    CHECK(strlen(acc) == 28);
    w = http_write_101(out, sizeof(out), acc, str[0] ? str : NULL, 1767225600);
    if (w)
        check_response(out, w, 101, 0, true);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t max_head = 16 + (size_t)data[0] * 2; /* 16..526: small, so the limit is hit often */
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    struct http_req full, r;

    /* the raw bytes as a query and a path must never crash */
    struct span raw = { (const char *)p, n };
    (void)http_vsn_from_query(raw);
    (void)http_query_is_valid(raw);
    (void)http_path_is_device_socket(raw);

    ssize_t res = http_req_parse(p, n, max_head, &full);
    CHECK(res == 0 || res == HTTP_ERR_TOO_LARGE || res == HTTP_ERR_BAD_REQUEST ||
          res == HTTP_ERR_TOO_MANY_FIELDS || (res > 0 && (size_t)res <= MIN(n, max_head)));
    if (res == 0)
        CHECK(n < max_head);
    if (res == HTTP_ERR_TOO_LARGE)
        CHECK(n >= max_head);

    /* a prefix (cut at a byte derived from the input) gives 0 or the same verdict; past the head, the
     * same parse. The copy is exact-size so ASan sees any read beyond k. */
    size_t k = n ? (size_t)(data[size - 1] * 31u + size) % (n + 1) : 0;
    uint8_t *cut = malloc(k ? k : 1);
    memcpy(cut, p, k);
    ssize_t rk = http_req_parse(cut, k, max_head, &r);
    if (res > 0 && k < (size_t)res)
        CHECK(rk == 0);
    else if (res > 0)
        CHECK(rk == res);
    else
        CHECK(rk == 0 || rk == res);
    if (res > 0 && rk > 0)
        check_same(&full, p, &r, cut);
    free(cut);

    /* a larger limit agrees whenever the smaller one decided */
    ssize_t big = http_req_parse(p, n, 1 << 20, &r);
    if (res > 0 || res == HTTP_ERR_BAD_REQUEST || res == HTTP_ERR_TOO_MANY_FIELDS)
        CHECK(big == res);
    if (big > 0 && (size_t)big <= max_head)
        CHECK(res == big);

    if (res > 0) {
        check_spans(&full, p, (size_t)res);
        (void)http_vsn_from_query(full.query);
        (void)http_query_is_valid(full.query);
        (void)http_path_is_device_socket(full.path);
        const char *why = http_ws_upgrade_error(&full);
        enum http_auth_mode m = http_auth_mode(&full, false);
        CHECK(m == (full.n_x ? HTTP_AUTH_SHARED_SECRET : HTTP_AUTH_NONE));
        CHECK(http_auth_mode(&full, true) == HTTP_AUTH_CERT);
        char out[1024], acc[29];
        if (!why) {
            CHECK(full.ws_key.len == 24 && full.method_get && full.http_minor == 1);
            http_ws_accept_key(full.ws_key, acc);
            size_t w = http_write_101(out, sizeof(out), acc, NULL, 1767225600);
            CHECK(w > 0);
            check_response(out, w, 101, 0, true);
        } else {
            size_t w = http_write_error(out, sizeof(out), 400, NULL, why, 1767225600);
            CHECK(w > 0);
            check_response(out, w, 400, strlen(why), false);
        }
    }
    fuzz_writers(p, n);
    return 0;
}
