/* Unit tests for gateway/http.c through its public API: request-head parsing (real device and
 * Phoenix-client shapes, limits, split feeds, guard page, malformed input), vsn selection, routing,
 * upgrade validation, auth mode, accept key and the exact response bytes. */
#include "../lib/test.h"

#include "http.h"

#define S(lit) ((struct span){ (lit), sizeof(lit) - 1 })
#define PARSE(lit, req) http_req_parse((const uint8_t *)(lit), sizeof(lit) - 1, 8192, (req))

static bool span_present_is(struct span s, const char *lit)
{
    return s.p && s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

#define ASSERT_SPAN(s, lit)                                                                  \
    do {                                                                                     \
        struct span s_ = (s);                                                                \
        if (!span_present_is(s_, lit))                                                               \
            TEST_FAIL("%s: \"%.*s\" != \"%s\"", #s, s_.p ? (int)s_.len : 6,                  \
                      s_.p ? s_.p : "(null)", lit);                                          \
    } while (0)

/* nerves_hub_link through Mint/mint_web_socket (device-protocol §8): lowercase names, host first */
static const char LINK_REQ[] = "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\n"
                               "host: device.example.com\r\n"
                               "upgrade: websocket\r\n"
                               "connection: upgrade\r\n"
                               "sec-websocket-version: 13\r\n"
                               "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                               "sec-websocket-extensions: permessage-deflate\r\n"
                               "\r\n";

/* the Phoenix JS client as the `ws` npm package sends it */
static const char WS_NPM_REQ[] = "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\n"
                                 "Sec-WebSocket-Version: 13\r\n"
                                 "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n"
                                 "Connection: Upgrade\r\n"
                                 "Upgrade: websocket\r\n"
                                 "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                                 "Host: 127.0.0.1:4443\r\n"
                                 "\r\n";

/* shared-secret device (device-protocol §2.3.1, §2.4), names in mixed case to check preservation */
static const char SHARED_REQ[] =
    "GET /device-socket/websocket?vsn=3.0.0 HTTP/1.1\r\n"
    "host: device.example.com\r\n"
    "upgrade: websocket\r\n"
    "connection: upgrade\r\n"
    "sec-websocket-version: 13\r\n"
    "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "X-NH-Alg: NH1-HMAC-sha256-1000-32\r\n"
    "x-nh-key: nhp_ExampleProductKey00000000000000000000000000\r\n"
    "x-Nh-Time:   1767225600 \t\r\n"
    "x-nh-signature: SFMyNTY.g2gDbQAAAAtuZXJ2ZXMtYWJjZG4GAAAAAAAAAGIAAVGA.sig\r\n"
    "\r\n";

TEST(http_parse_link_request)
{
    struct http_req r;
    ASSERT_EQ(PARSE(LINK_REQ, &r), sizeof(LINK_REQ) - 1);
    ASSERT_EQ(r.head_len, sizeof(LINK_REQ) - 1);
    ASSERT(r.method_get);
    ASSERT_EQ(r.http_minor, 1);
    ASSERT_SPAN(r.path, "/socket/websocket");
    ASSERT_SPAN(r.query, "vsn=2.0.0");
    ASSERT_SPAN(r.host, "device.example.com");
    ASSERT_SPAN(r.upgrade, "websocket");
    ASSERT_SPAN(r.connection, "upgrade");
    ASSERT_SPAN(r.ws_key, "dGhlIHNhbXBsZSBub25jZQ==");
    ASSERT_SPAN(r.ws_version, "13");
    ASSERT(r.origin.p == NULL);
    ASSERT(r.upgrade_websocket && r.connection_upgrade);
    ASSERT_EQ(r.n_ws_key, 1);
    ASSERT_EQ(r.n_ws_version, 1);
    ASSERT_EQ(r.n_extensions, 1);
    ASSERT_SPAN(r.extensions[0], "permessage-deflate");
    ASSERT_EQ(r.n_x, 0);
    ASSERT(http_path_is_device_socket(r.path));
    ASSERT_EQ(http_vsn_from_query(r.query), HTTP_VSN_JSON);
    ASSERT(http_query_is_valid(r.query));
    ASSERT(http_ws_upgrade_error(&r) == NULL);
    ASSERT_EQ(http_auth_mode(&r, true), HTTP_AUTH_CERT);
    ASSERT_EQ(http_auth_mode(&r, false), HTTP_AUTH_NONE);
    char acc[29];
    http_ws_accept_key(r.ws_key, acc);
    ASSERT_STR_EQ(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(http_parse_ws_npm_request)
{
    struct http_req r;
    ASSERT_EQ(PARSE(WS_NPM_REQ, &r), sizeof(WS_NPM_REQ) - 1);
    ASSERT_SPAN(r.host, "127.0.0.1:4443");
    ASSERT_SPAN(r.connection, "Upgrade");
    ASSERT_SPAN(r.ws_key, "x3JJHMbDL1EzLkh9GBhXDw==");
    ASSERT_EQ(r.n_extensions, 1);
    ASSERT_SPAN(r.extensions[0], "permessage-deflate; client_max_window_bits");
    ASSERT(http_ws_upgrade_error(&r) == NULL);
    ASSERT_EQ(http_vsn_from_query(r.query), HTTP_VSN_JSON);
    char acc[29];
    http_ws_accept_key(r.ws_key, acc);
    /* MDN's handshake example; also checked with Python hashlib */
    ASSERT_STR_EQ(acc, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

TEST(http_parse_shared_secret_headers)
{
    struct http_req r;
    ASSERT_EQ(PARSE(SHARED_REQ, &r), sizeof(SHARED_REQ) - 1);
    ASSERT_SPAN(r.path, "/device-socket/websocket");
    ASSERT(http_path_is_device_socket(r.path));
    ASSERT_EQ(http_vsn_from_query(r.query), HTTP_VSN_MSGPACK);
    ASSERT_EQ(r.n_x, 4);
    ASSERT_SPAN(r.x_headers[0].name, "X-NH-Alg");
    ASSERT_SPAN(r.x_headers[0].value, "NH1-HMAC-sha256-1000-32");
    ASSERT_SPAN(r.x_headers[1].name, "x-nh-key");
    ASSERT_SPAN(r.x_headers[1].value, "nhp_ExampleProductKey00000000000000000000000000");
    ASSERT_SPAN(r.x_headers[2].name, "x-Nh-Time");
    ASSERT_SPAN(r.x_headers[2].value, "1767225600");
    ASSERT_SPAN(r.x_headers[3].name, "x-nh-signature");
    ASSERT_SPAN(r.x_headers[3].value, "SFMyNTY.g2gDbQAAAAtuZXJ2ZXMtYWJjZG4GAAAAAAAAAGIAAVGA.sig");
    ASSERT_EQ(r.n_extensions, 0);
    ASSERT_EQ(http_auth_mode(&r, false), HTTP_AUTH_SHARED_SECRET);
    ASSERT_EQ(http_auth_mode(&r, true), HTTP_AUTH_CERT); /* §2.1: the cert wins */
    ASSERT(http_ws_upgrade_error(&r) == NULL);
}

TEST(http_auth_mode_table)
{
    struct http_req r;
    static const char xff[] = "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: h\r\n"
                              "X-Forwarded-For: 10.0.0.1\r\n\r\n";
    ASSERT_EQ(PARSE(xff, &r), sizeof(xff) - 1);
    ASSERT_EQ(http_auth_mode(&r, false), HTTP_AUTH_SHARED_SECRET); /* §2.1 note */
    ASSERT_EQ(http_auth_mode(&r, true), HTTP_AUTH_CERT);
    static const char bare_x[] = "GET / HTTP/1.1\r\nHost: h\r\nx-: \r\n\r\n";
    ASSERT_EQ(PARSE(bare_x, &r), sizeof(bare_x) - 1);
    ASSERT_EQ(r.n_x, 1);
    ASSERT_SPAN(r.x_headers[0].value, "");
    ASSERT_EQ(http_auth_mode(&r, false), HTTP_AUTH_SHARED_SECRET);
    static const char not_x[] = "GET / HTTP/1.1\r\nHost: h\r\nxy: 1\r\nX_a: 1\r\nx: 2\r\n\r\n";
    ASSERT_EQ(PARSE(not_x, &r), sizeof(not_x) - 1);
    ASSERT_EQ(r.n_x, 0);
    ASSERT_EQ(http_auth_mode(&r, false), HTTP_AUTH_NONE);
    ASSERT_EQ(http_auth_mode(&r, true), HTTP_AUTH_CERT);
}

TEST(http_accept_key_rfc6455)
{
    char acc[29];
    http_ws_accept_key(S("dGhlIHNhbXBsZSBub25jZQ=="), acc); /* RFC 6455 §1.3 */
    ASSERT_STR_EQ(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /* SHA-1 padding edges, key + GUID = 56 and 64 bytes, and the empty key (values from Python hashlib) */
    http_ws_accept_key(S("01234567890123456789"), acc);
    ASSERT_STR_EQ(acc, "bfojMczDg3dsICcPBQt2lgLayVA=");
    http_ws_accept_key(S("0123456789012345678901234567"), acc);
    ASSERT_STR_EQ(acc, "L/LxVrWLCNmdeLz0onIT/zC6v8g=");
    http_ws_accept_key((struct span){ NULL, 0 }, acc);
    ASSERT_STR_EQ(acc, "Kfh9QIsMVZcl6xEPYxPHzW8SZ8w=");
}

struct vsn_case {
    const char *query;
    enum http_vsn want;
};

TEST(http_vsn_table)
{
    static const struct vsn_case cases[] = {
        { "vsn=2.0.0", HTTP_VSN_JSON },
        { "vsn=2.0.9", HTTP_VSN_JSON },
        { "vsn=2.0.1-dev", HTTP_VSN_JSON },       /* allow_pre: true */
        { "vsn=2.0.0-rc.1", HTTP_VSN_NONE },      /* < 2.0.0 */
        { "vsn=2.0.0%2Bbuild.7", HTTP_VSN_JSON }, /* build ignored */
        { "vsn=2.0.0+build", HTTP_VSN_NONE },     /* '+' is a space in a query */
        { "vsn=2.1.0", HTTP_VSN_NONE },
        { "vsn=2.1.0-0", HTTP_VSN_NONE },
        { "vsn=3.0.0", HTTP_VSN_MSGPACK },
        { "vsn=3.0.1", HTTP_VSN_MSGPACK },
        { "vsn=3.0.0-rc.0", HTTP_VSN_NONE },
        { "vsn=3.1.0", HTTP_VSN_NONE },
        { "vsn=1.0.0", HTTP_VSN_NONE },
        { "vsn=4.0.0", HTTP_VSN_NONE },
        { "vsn=2.0.99999999999999999999999", HTTP_VSN_JSON },
        { "vsn=22.0.0", HTTP_VSN_NONE },
        { "", HTTP_VSN_NONE },
        { "foo=bar", HTTP_VSN_NONE },
        { "vsn=", HTTP_VSN_NONE },
        { "vsn", HTTP_VSN_NONE },
        { "vsn=2.0", HTTP_VSN_NONE },
        { "vsn=2", HTTP_VSN_NONE },
        { "vsn=v2.0.0", HTTP_VSN_NONE },
        { "vsn=02.0.0", HTTP_VSN_NONE },
        { "vsn=2.00.0", HTTP_VSN_NONE },
        { "vsn=2.0.00", HTTP_VSN_NONE },
        { "vsn=2.0.0.0", HTTP_VSN_NONE },
        { "vsn=2.0.0-", HTTP_VSN_NONE },
        { "vsn=2.0.0+", HTTP_VSN_NONE },
        { "vsn=2.0.1-01", HTTP_VSN_NONE },        /* numeric pre id with a leading zero */
        { "vsn=2.0.1-0a", HTTP_VSN_JSON },        /* alphanumeric ids may start with 0 */
        { "vsn=2.0.1-a..b", HTTP_VSN_NONE },
        { "vsn=2.0.1-a_b", HTTP_VSN_NONE },
        { "vsn=2.0.1-a-b.c--d", HTTP_VSN_JSON },
        { "vsn=2.0.0%2Ba%2Bb", HTTP_VSN_NONE },   /* second '+' in build */
        { "vsn=2.0.0%2B01", HTTP_VSN_JSON },      /* build ids may have leading zeros */
        { "vsn=%202.0.0", HTTP_VSN_NONE },
        { "vsn=2.0.0%20", HTTP_VSN_NONE },
        { "vsn=2%2E0%2E0", HTTP_VSN_JSON },
        { "vsn=2%2e0%2e0", HTTP_VSN_JSON },
        { "v%73n=2.0.0", HTTP_VSN_JSON },
        { "VSN=2.0.0", HTTP_VSN_NONE },
        { "vsn+=2.0.0", HTTP_VSN_NONE },
        { "vsn=2.0.0%", HTTP_VSN_NONE },          /* malformed '%' stays literal */
        { "vsn=2.0.0%zz", HTTP_VSN_NONE },
        { "vsn=1.0.0&vsn=2.0.0", HTTP_VSN_JSON },  /* last wins */
        { "vsn=2.0.0&vsn=1.0.0", HTTP_VSN_NONE },
        { "vsn=2.0.0&vsn=", HTTP_VSN_NONE },
        { "vsn=3.0.0&&foo=1&", HTTP_VSN_MSGPACK },
        { "a=1&vsn=2.0.0&b=2", HTTP_VSN_JSON },
        { "vsn=2.0.0=x", HTTP_VSN_NONE },          /* value is "2.0.0=x" */
        { "vsn[]=2.0.0", HTTP_VSN_NONE },          /* params["vsn"] becomes a list */
        { "vsn=2.0.0&vsn[x]=1", HTTP_VSN_NONE },
        { "vsn[]=1&vsn=2.0.0&vsn[]=2", HTTP_VSN_JSON }, /* only the first nested key is a root entry */
        { "vsn[=1&vsn=3.0.0", HTTP_VSN_MSGPACK },
        { "vsn[=3.0.0", HTTP_VSN_NONE },
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct span q = { cases[i].query, strlen(cases[i].query) };
        enum http_vsn got = http_vsn_from_query(q);
        if (got != cases[i].want)
            TEST_FAIL("vsn(\"%s\") = %d, want %d", cases[i].query, got, cases[i].want);
    }
    ASSERT_EQ(http_vsn_from_query((struct span){ NULL, 0 }), HTTP_VSN_NONE);

    /* through the parser: no '?' → query.p NULL; "?" → empty */
    struct http_req r;
    static const char noq[] = "GET /socket/websocket HTTP/1.1\r\nHost: h\r\n\r\n";
    ASSERT_EQ(PARSE(noq, &r), sizeof(noq) - 1);
    ASSERT(r.query.p == NULL);
    ASSERT_EQ(http_vsn_from_query(r.query), HTTP_VSN_NONE);
    static const char emptyq[] = "GET /socket/websocket? HTTP/1.1\r\nHost: h\r\n\r\n";
    ASSERT_EQ(PARSE(emptyq, &r), sizeof(emptyq) - 1);
    ASSERT(r.query.p != NULL);
    ASSERT_EQ(r.query.len, 0);
}

TEST(http_query_validity)
{
    ASSERT(http_query_is_valid((struct span){ NULL, 0 }));
    ASSERT(http_query_is_valid(S("")));
    ASSERT(http_query_is_valid(S("vsn=2.0.0&a=%C3%A9&b=%E2%82%AC&c=%F0%9F%98%80")));
    ASSERT(http_query_is_valid(S("a=%zz&b=%&c=%4")));  /* malformed escapes are literal bytes */
    ASSERT(!http_query_is_valid(S("vsn=2.0.0&a=%FF")));
    ASSERT(!http_query_is_valid(S("%80=1")));
    ASSERT(!http_query_is_valid(S("a=%C0%AF")));       /* overlong */
    ASSERT(!http_query_is_valid(S("a=%ED%A0%80")));    /* surrogate */
    ASSERT(!http_query_is_valid(S("a=%F4%90%80%80"))); /* > U+10FFFF */
    ASSERT(!http_query_is_valid(S("a=%E2%82")));       /* truncated */
    ASSERT(!http_query_is_valid(S("a=\xff")));
}

TEST(http_path_routing)
{
    ASSERT(http_path_is_device_socket(S("/socket/websocket")));
    ASSERT(http_path_is_device_socket(S("/device-socket/websocket")));
    ASSERT(http_path_is_device_socket(S("/socket/websocket/")));
    ASSERT(http_path_is_device_socket(S("//socket//websocket//")));
    ASSERT(!http_path_is_device_socket(S("/socket")));
    ASSERT(!http_path_is_device_socket(S("/socket/websocket/x")));
    ASSERT(!http_path_is_device_socket(S("/Socket/websocket")));
    ASSERT(http_path_is_status(S("/status/alive")));
    ASSERT(http_path_is_status(S("/status/_health")));
    ASSERT(http_path_is_status(S("/status/health")));
    ASSERT(http_path_is_status(S("/status/healthy")));
    ASSERT(http_path_is_status(S("//status//alive/")));
    ASSERT(!http_path_is_status(S("/status")));
    ASSERT(!http_path_is_status(S("/status/alive/x")));
    ASSERT(!http_path_is_status(S("/status/alivee")));
    ASSERT(!http_path_is_status(S("/status/aliv")));
    ASSERT(!http_path_is_status(S("/Status/alive")));
    ASSERT(!http_path_is_status(S("/a/b/c/d")));
    ASSERT(!http_path_is_status((struct span){ NULL, 0 }));
    ASSERT(!http_path_is_device_socket(S("/socket/%77ebsocket")));
    ASSERT(!http_path_is_device_socket(S("/x/socket/websocket")));
    ASSERT(!http_path_is_device_socket(S("/device_socket/websocket")));
    ASSERT(!http_path_is_device_socket(S("/status/alive")));
    ASSERT(!http_path_is_device_socket(S("/")));
    ASSERT(!http_path_is_device_socket(S("")));
    ASSERT(!http_path_is_device_socket(S("*")));
    ASSERT(!http_path_is_device_socket((struct span){ NULL, 0 }));
}

/* Build "GET ... HTTP/1.1" + headers + CRLF and return the upgrade error. */
static const char *upgrade_err(const char *head)
{
    struct http_req r;
    ssize_t n = http_req_parse((const uint8_t *)head, strlen(head), 8192, &r);
    if (n <= 0)
        TEST_FAIL("parse(%s) = %zd", head, n);
    return http_ws_upgrade_error(&r);
}

#define UP_START "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: h\r\n"
#define UP_KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define UP_VER "Sec-WebSocket-Version: 13\r\n"

TEST(http_upgrade_validation)
{
    ASSERT(upgrade_err(UP_START "Upgrade: websocket\r\nConnection: Upgrade\r\n" UP_KEY UP_VER "\r\n") == NULL);
    ASSERT(upgrade_err(UP_START "Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n" UP_KEY UP_VER
                                "\r\n") == NULL);
    ASSERT(upgrade_err(UP_START "Upgrade: h2c, websocket \r\nConnection: close,,UPGRADE\r\n" UP_KEY UP_VER
                                "\r\n") == NULL);
    /* tokens spread over several lines (RFC 9110 §5.3) */
    ASSERT(upgrade_err(UP_START "Upgrade: foo\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
                                "Connection: upgrade\r\n" UP_KEY UP_VER "\r\n") == NULL);

    ASSERT_STR_EQ(upgrade_err("GET /socket/websocket HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" UP_KEY
                              UP_VER "\r\n"),
                  "HTTP version HTTP/1.0 unsupported");
    ASSERT_STR_EQ(upgrade_err("POST /socket/websocket HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\n" UP_KEY UP_VER "\r\n"),
                  "HTTP method unsupported");
    ASSERT_STR_EQ(upgrade_err(UP_START "Upgrade: websocket\r\n" UP_KEY UP_VER "\r\n"),
                  "'connection' header must contain 'upgrade'");
    ASSERT_STR_EQ(upgrade_err(UP_START "Upgrade: websocket\r\nConnection: upgraded\r\n" UP_KEY UP_VER "\r\n"),
                  "'connection' header must contain 'upgrade'");
    ASSERT_STR_EQ(upgrade_err(UP_START "Connection: upgrade\r\n" UP_KEY UP_VER "\r\n"),
                  "'upgrade' header must contain 'websocket'");
    ASSERT_STR_EQ(upgrade_err(UP_START "Upgrade: websocket/13\r\nConnection: upgrade\r\n" UP_KEY UP_VER "\r\n"),
                  "'upgrade' header must contain 'websocket'");
    ASSERT_STR_EQ(upgrade_err(UP_START "Upgrade: websocket\r\nConnection: upgrade\r\n" UP_VER "\r\n"),
                  "'sec-websocket-key' header is absent");
    ASSERT_STR_EQ(upgrade_err(UP_START "Upgrade: websocket\r\nConnection: upgrade\r\n" UP_KEY UP_KEY UP_VER
                                       "\r\n"),
                  "'sec-websocket-key' header must appear once");
    static const char *bad_keys[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ",     /* unpadded */
        "dGhlIHNhbXBsZSBub25jZQ=",
        "dGhlIHNhbXBsZSBub25jZQ===",
        "dGhlIHNhbXBsZSBub25jZ===",   /* 15 bytes */
        "dGhlIHNhbXBsZSBub25jZQo=",   /* 17 bytes */
        "dGhlIHNhbXBsZSBub25j-Q==",   /* base64url alphabet */
        "dGhlIHNhbXBsZSBu b25jZQ==",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad_keys); i++) {
        char head[512];
        snprintf(head, sizeof(head), UP_START "Upgrade: websocket\r\nConnection: upgrade\r\n"
                                              "Sec-WebSocket-Key: %s\r\n" UP_VER "\r\n",
                 bad_keys[i]);
        ASSERT_STR_EQ(upgrade_err(head), "'sec-websocket-key' header must be base64 of 16 bytes");
    }
    ASSERT_STR_EQ(upgrade_err(UP_START "Upgrade: websocket\r\nConnection: upgrade\r\n" UP_KEY "\r\n"),
                  "'sec-websocket-version' header must equal '13'");
    ASSERT_STR_EQ(upgrade_err(UP_START "Upgrade: websocket\r\nConnection: upgrade\r\n" UP_KEY
                                       "Sec-WebSocket-Version: 8\r\n\r\n"),
                  "'sec-websocket-version' header must equal '13'");
    ASSERT_STR_EQ(upgrade_err(UP_START "Upgrade: websocket\r\nConnection: upgrade\r\n" UP_KEY UP_VER UP_VER
                                       "\r\n"),
                  "'sec-websocket-version' header must equal '13'");
    ASSERT_STR_EQ(upgrade_err(UP_START "Upgrade: websocket\r\nConnection: upgrade\r\n" UP_KEY
                                       "Sec-WebSocket-Version: 13, 8\r\n\r\n"),
                  "'sec-websocket-version' header must equal '13'");
}

TEST(http_headers_trim_dups_and_origin)
{
    struct http_req r;
    static const char req[] = "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\n"
                              "HOST:\th \t\r\n"
                              "Origin: https://a.example\r\n"
                              "origin: https://b.example\r\n"
                              "Sec-WebSocket-Extensions: \r\n"
                              "sec-websocket-extensions: permessage-deflate; server_no_context_takeover\r\n"
                              "Content-Length: 0\r\n"
                              "Empty:\r\n"
                              "\r\n";
    ASSERT_EQ(PARSE(req, &r), sizeof(req) - 1);
    ASSERT_SPAN(r.host, "h");
    ASSERT_SPAN(r.origin, "https://a.example");
    ASSERT_EQ(r.n_extensions, 2);
    ASSERT_SPAN(r.extensions[0], "");
    ASSERT_SPAN(r.extensions[1], "permessage-deflate; server_no_context_takeover");
    ASSERT(r.upgrade.p == NULL && r.connection.p == NULL && r.ws_key.p == NULL);
    ASSERT_EQ(r.n_ws_key, 0);

    static const char empty_host[] = "GET / HTTP/1.1\r\nHost:\r\n\r\n";
    ASSERT_EQ(PARSE(empty_host, &r), sizeof(empty_host) - 1);
    ASSERT(r.host.p != NULL);
    ASSERT_EQ(r.host.len, 0);
}

TEST(http_request_targets)
{
    struct http_req r;
    static const char absf[] = "GET https://device.example.com/socket/websocket?vsn=2.0.0#f HTTP/1.1\r\n"
                               "Host: h\r\n\r\n";
    ASSERT_EQ(PARSE(absf, &r), sizeof(absf) - 1);
    ASSERT_SPAN(r.path, "/socket/websocket");
    ASSERT_SPAN(r.query, "vsn=2.0.0");
    static const char absf2[] = "GET HTTP://u@h:8080?vsn=3.0.0 HTTP/1.1\r\nHost: h\r\n\r\n";
    ASSERT_EQ(PARSE(absf2, &r), sizeof(absf2) - 1);
    ASSERT_EQ(r.path.len, 0);
    ASSERT_SPAN(r.query, "vsn=3.0.0");
    static const char frag[] = "GET /socket/websocket#x?vsn=2.0.0 HTTP/1.1\r\nHost: h\r\n\r\n";
    ASSERT_EQ(PARSE(frag, &r), sizeof(frag) - 1);
    ASSERT_SPAN(r.path, "/socket/websocket");
    ASSERT(r.query.p == NULL);
    static const char q2[] = "GET /a?b?c HTTP/1.1\r\nHost: h\r\n\r\n";
    ASSERT_EQ(PARSE(q2, &r), sizeof(q2) - 1);
    ASSERT_SPAN(r.path, "/a");
    ASSERT_SPAN(r.query, "b?c");
    static const char star[] = "GET * HTTP/1.1\r\nHost: h\r\n\r\n";
    ASSERT_EQ(PARSE(star, &r), sizeof(star) - 1);
    ASSERT_SPAN(r.path, "*");
    static const char opt[] = "OPTIONS / HTTP/1.1\r\nHost: h\r\n\r\n";
    ASSERT_EQ(PARSE(opt, &r), sizeof(opt) - 1);
    ASSERT(!r.method_get);
    static const char h10[] = "GET / HTTP/1.0\r\n\r\n"; /* HTTP/1.0 needs no Host */
    ASSERT_EQ(PARSE(h10, &r), sizeof(h10) - 1);
    ASSERT_EQ(r.http_minor, 0);
    ASSERT(r.host.p == NULL);
    ASSERT_STR_EQ(http_ws_upgrade_error(&r), "HTTP version HTTP/1.0 unsupported");
}

struct bad_case {
    const char *name;
    const char *req;
    size_t len; /* 0 = strlen */
    ssize_t want;
};

TEST(http_malformed)
{
#define B(name, s, want) { name, s, sizeof(s) - 1, want }
    static const struct bad_case cases[] = {
        B("lowercase method", "get / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("unknown method", "FOO / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("method char", "G@T / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("no version", "GET /\r\nHost: h\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("http/0.9", "GET /\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("http/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("http/1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("lowercase version", "GET / http/1.1\r\nHost: h\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("double space", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("double space 2", "GET /  HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("trailing space", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("leading CRLF", "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("only CRLFs", "\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("relative target", "GET a HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("ws scheme", "GET ws://h/a HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("empty authority", "GET http:///a HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("tab in target", "GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("NUL in target", "GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("NUL in value", "GET / HTTP/1.1\r\nHost: h\0\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("NUL in name", "GET / HTTP/1.1\r\nHo\0st: h\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("DEL in value", "GET / HTTP/1.1\r\nHost: h\x7f\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("ctl in value", "GET / HTTP/1.1\r\nHost: h\x01\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("no colon", "GET / HTTP/1.1\r\nHost h\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("space before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("space in name", "GET / HTTP/1.1\r\nHost: h\r\nX y: 1\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("empty name", "GET / HTTP/1.1\r\nHost: h\r\n: 1\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("non-token name", "GET / HTTP/1.1\r\nHost: h\r\nX\x80: 1\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX-a: 1\r\n 2\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("obs-fold tab", "GET / HTTP/1.1\r\nHost: h\r\nX-a: 1\r\n\t2\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("ws-led first line", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("bare LF", "GET / HTTP/1.1\nHost: h\n\n", HTTP_ERR_BAD_REQUEST),
        B("bare LF in headers", "GET / HTTP/1.1\r\nHost: h\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("bare LF end", "GET / HTTP/1.1\r\nHost: h\r\n\n", HTTP_ERR_BAD_REQUEST),
        B("bare CR", "GET / HTTP/1.1\r\nHost: h\rx\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("missing host", "GET / HTTP/1.1\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("two hosts", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("two hosts 1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("body", "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", HTTP_ERR_BAD_REQUEST),
        B("chunked", "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("te identity", "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("bad content-length", "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n", HTTP_ERR_BAD_REQUEST),
        B("two content-lengths", "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
          HTTP_ERR_BAD_REQUEST),
        B("TLS hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", HTTP_ERR_BAD_REQUEST),
        B("binary", "\x00\x00\x00\x00", HTTP_ERR_BAD_REQUEST),
    };
#undef B
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct http_req r;
        ssize_t got = http_req_parse((const uint8_t *)cases[i].req, cases[i].len, 8192, &r);
        if (got != cases[i].want)
            TEST_FAIL("%s: got %zd, want %zd", cases[i].name, got, cases[i].want);
        /* a prefix never returns anything but 0 or the same verdict */
        for (size_t k = 0; k < cases[i].len; k++) {
            ssize_t g = http_req_parse((const uint8_t *)cases[i].req, k, 8192, &r);
            if (g != 0 && g != cases[i].want)
                TEST_FAIL("%s: prefix %zu got %zd", cases[i].name, k, g);
        }
    }
    /* errors are found before the head is complete */
    struct http_req r;
    ASSERT_EQ(http_req_parse((const uint8_t *)"get ", 4, 8192, &r), HTTP_ERR_BAD_REQUEST);
    ASSERT_EQ(http_req_parse((const uint8_t *)"GET / HTTP/1.1\n", 15, 8192, &r), HTTP_ERR_BAD_REQUEST);
    ASSERT_EQ(http_req_parse((const uint8_t *)"\x16\x03\x01", 3, 8192, &r), HTTP_ERR_BAD_REQUEST);
    ASSERT_EQ(http_err_status(HTTP_ERR_BAD_REQUEST), 400);
    ASSERT_EQ(http_err_status(HTTP_ERR_TOO_LARGE), 431);
    ASSERT_EQ(http_err_status(HTTP_ERR_TOO_MANY_FIELDS), 431);
    ASSERT_STR_EQ(http_strerror(HTTP_ERR_TOO_LARGE), "request head too large");
}

/* A valid head of exactly `len` bytes, padded with an x-pad header. */
static char *head_of_len(size_t len)
{
    static const char pre[] = "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: h\r\nx-pad: ";
    size_t fixed = sizeof(pre) - 1 + 4;
    if (len < fixed + 1)
        abort();
    char *s = malloc(len + 1);
    memcpy(s, pre, sizeof(pre) - 1);
    memset(s + sizeof(pre) - 1, 'a', len - fixed);
    memcpy(s + len - 4, "\r\n\r\n", 5);
    return s;
}

TEST(http_limits_max_head)
{
    struct http_req r;
    for (size_t max = 100; max <= 4096; max += 997) {
        char *h = head_of_len(max);
        ASSERT_EQ(http_req_parse((uint8_t *)h, max, max, &r), (ssize_t)max);
        ASSERT_EQ(r.n_x, 1);
        ASSERT_EQ(http_req_parse((uint8_t *)h, max - 1, max, &r), 0);
        free(h);
        h = head_of_len(max + 1);
        ASSERT_EQ(http_req_parse((uint8_t *)h, max, max, &r), HTTP_ERR_TOO_LARGE);
        ASSERT_EQ(http_req_parse((uint8_t *)h, max + 1, max, &r), HTTP_ERR_TOO_LARGE);
        ASSERT_EQ(http_req_parse((uint8_t *)h, max - 1, max, &r), 0);
        ASSERT_EQ(http_req_parse((uint8_t *)h, max + 1, max + 1, &r), (ssize_t)max + 1);
        free(h);
    }
    ASSERT_EQ(http_req_parse((const uint8_t *)"", 0, 10, &r), 0);
    ASSERT_EQ(http_req_parse((const uint8_t *)"", 0, 0, &r), HTTP_ERR_TOO_LARGE);
}

TEST(http_limits_x_headers_and_extensions)
{
    char buf[4096];
    struct http_req r;
    for (int extra = 0; extra <= 1; extra++) {
        size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\n");
        for (int i = 0; i < HTTP_MAX_X_HEADERS + extra; i++)
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s-%d: v%d\r\n", i % 2 ? "X" : "x", i, i);
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
        ssize_t got = http_req_parse((uint8_t *)buf, n, sizeof(buf), &r);
        if (!extra) {
            ASSERT_EQ(got, (ssize_t)n);
            ASSERT_EQ(r.n_x, HTTP_MAX_X_HEADERS);
            ASSERT_SPAN(r.x_headers[31].name, "X-31");
            ASSERT_SPAN(r.x_headers[31].value, "v31");
        } else {
            ASSERT_EQ(got, HTTP_ERR_TOO_MANY_FIELDS);
        }
    }
    for (int extra = 0; extra <= 1; extra++) {
        size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\n");
        for (int i = 0; i < HTTP_MAX_EXT_LINES + extra; i++)
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "Sec-WebSocket-Extensions: e%d\r\n", i);
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
        ssize_t got = http_req_parse((uint8_t *)buf, n, sizeof(buf), &r);
        if (!extra) {
            ASSERT_EQ(got, (ssize_t)n);
            ASSERT_EQ(r.n_extensions, HTTP_MAX_EXT_LINES);
            ASSERT_SPAN(r.extensions[7], "e7");
        } else {
            ASSERT_EQ(got, HTTP_ERR_TOO_MANY_FIELDS);
        }
    }
}

/* Compare two successful parses of the same head (possibly at different addresses). */
static void assert_same_req(const struct http_req *a, const char *abase, const struct http_req *b,
                            const char *bbase)
{
#define SAME(f)                                                                   \
    do {                                                                          \
        ASSERT_EQ(a->f.p == NULL, b->f.p == NULL);                                \
        if (a->f.p) {                                                             \
            ASSERT_EQ(a->f.p - abase, b->f.p - bbase);                            \
            ASSERT_EQ(a->f.len, b->f.len);                                        \
        }                                                                         \
    } while (0)
    SAME(path);
    SAME(query);
    SAME(host);
    SAME(upgrade);
    SAME(connection);
    SAME(ws_key);
    SAME(ws_version);
    SAME(origin);
    ASSERT_EQ(a->n_x, b->n_x);
    for (size_t i = 0; i < a->n_x; i++) {
        SAME(x_headers[i].name);
        SAME(x_headers[i].value);
    }
    ASSERT_EQ(a->n_extensions, b->n_extensions);
    for (size_t i = 0; i < a->n_extensions; i++)
        SAME(extensions[i]);
    ASSERT_EQ(a->method_get, b->method_get);
    ASSERT_EQ(a->http_minor, b->http_minor);
    ASSERT_EQ(a->upgrade_websocket, b->upgrade_websocket);
    ASSERT_EQ(a->connection_upgrade, b->connection_upgrade);
    ASSERT_EQ(a->n_ws_key, b->n_ws_key);
    ASSERT_EQ(a->n_ws_version, b->n_ws_version);
    ASSERT_EQ(a->head_len, b->head_len);
#undef SAME
}

/* Feed every prefix (what one-byte-at-a-time reads produce for this stateless parser), then the
 * whole head followed by trailing bytes, all against the guard page. */
static void check_incremental(const char *req, size_t len)
{
    struct http_req full, r;
    ASSERT_EQ(http_req_parse((const uint8_t *)req, len, 8192, &full), (ssize_t)len);
    ASSERT_EQ(http_req_parse((const uint8_t *)req, 0, 8192, &r), 0);
    /* k starts at 1: test_guard_free cannot free a zero-length guard copy (reported) */
    for (size_t k = 1; k <= len; k++) {
        uint8_t *g = test_guard_copy(req, k);
        ssize_t got = http_req_parse(g, k, 8192, &r);
        if (k < len) {
            if (got != 0)
                TEST_FAIL("prefix %zu of %zu: %zd", k, len, got);
        } else {
            ASSERT_EQ(got, (ssize_t)len);
            assert_same_req(&full, req, &r, (const char *)g);
        }
        test_guard_free(g);
    }
    /* trailing bytes (a pipelined WebSocket frame, or junk) are not looked at */
    static const char junk[] = "\x81\x85\x00\r\n\n garbage \0";
    for (size_t t = 1; t < sizeof(junk); t++) {
        char *buf = malloc(len + t);
        memcpy(buf, req, len);
        memcpy(buf + len, junk, t);
        uint8_t *g = test_guard_copy(buf, len + t);
        ASSERT_EQ(http_req_parse(g, len + t, 8192, &r), (ssize_t)len);
        assert_same_req(&full, req, &r, (const char *)g);
        ASSERT_EQ(http_req_parse(g, len + t, len, &r), (ssize_t)len); /* max_head == head */
        test_guard_free(g);
        free(buf);
    }
}

TEST(http_every_split_and_guard)
{
    check_incremental(LINK_REQ, sizeof(LINK_REQ) - 1);
    check_incremental(WS_NPM_REQ, sizeof(WS_NPM_REQ) - 1);
    check_incremental(SHARED_REQ, sizeof(SHARED_REQ) - 1);
    static const char tiny[] = "GET / HTTP/1.0\r\n\r\n";
    check_incremental(tiny, sizeof(tiny) - 1);
    static const char empty_val[] = "GET / HTTP/1.1\r\nHost:\r\nx-a:\r\n\r\n";
    check_incremental(empty_val, sizeof(empty_val) - 1);
}

TEST(http_write_101_bytes)
{
    char out[512];
    char acc[29];
    http_ws_accept_key(S("dGhlIHNhbXBsZSBub25jZQ=="), acc);
    static const char want[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
                               "Upgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                               "Sec-WebSocket-Extensions: permessage-deflate\r\n"
                               "\r\n";
    size_t n = http_write_101(out, sizeof(out), acc, "permessage-deflate", 1767225600);
    ASSERT_MEM_EQ(out, n, want, sizeof(want) - 1);
    for (size_t cap = 0; cap < sizeof(want) - 1; cap++)
        ASSERT_EQ(http_write_101(out, cap, acc, "permessage-deflate", 1767225600), 0);
    ASSERT_EQ(http_write_101(out, sizeof(want) - 1, acc, "permessage-deflate", 1767225600),
              sizeof(want) - 1);

    static const char want2[] = "HTTP/1.1 101 Switching Protocols\r\n"
                                "Date: Sat, 22 Aug 2026 10:00:00 GMT\r\n"
                                "Upgrade: websocket\r\n"
                                "Connection: Upgrade\r\n"
                                "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                                "\r\n";
    n = http_write_101(out, sizeof(out), acc, NULL, 1787392800);
    ASSERT_MEM_EQ(out, n, want2, sizeof(want2) - 1);
    ASSERT_EQ(http_write_101(out, sizeof(out), acc, "a\r\nSet-Cookie: x", 1787392800), 0);
}

TEST(http_write_error_bytes)
{
    char out[512];
    static const char want401[] =
        "HTTP/1.1 401 Unauthorized\r\n"
        "Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
        "nh-connection-error-reason: " HTTP_REASON_NO_AUTH "\r\n"
        "Content-Type: text/plain\r\n"
        "Content-Length: 71\r\n"
        "Connection: close\r\n"
        "\r\n" HTTP_REASON_NO_AUTH;
    ASSERT_EQ(strlen(HTTP_REASON_NO_AUTH), 71);
    size_t n = http_write_error(out, sizeof(out), 401, HTTP_REASON_NO_AUTH, HTTP_REASON_NO_AUTH, 1767225600);
    ASSERT_MEM_EQ(out, n, want401, sizeof(want401) - 1);
    for (size_t cap = 0; cap < sizeof(want401) - 1; cap++)
        ASSERT_EQ(http_write_error(out, cap, 401, HTTP_REASON_NO_AUTH, HTTP_REASON_NO_AUTH, 1767225600), 0);

    static const char want503[] =
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
        "nh-connection-error-reason: " HTTP_REASON_PLATFORM_UNAVAILABLE "\r\n"
        "Content-Type: text/plain\r\n"
        "Content-Length: 61\r\n"
        "Connection: close\r\n"
        "\r\n" HTTP_REASON_PLATFORM_UNAVAILABLE;
    n = http_write_error(out, sizeof(out), 503, HTTP_REASON_PLATFORM_UNAVAILABLE,
                         HTTP_REASON_PLATFORM_UNAVAILABLE, 1767225600);
    ASSERT_MEM_EQ(out, n, want503, sizeof(want503) - 1);

    static const char want403[] = "HTTP/1.1 403 Forbidden\r\n"
                                  "Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
                                  "Content-Length: 0\r\n"
                                  "Connection: close\r\n"
                                  "\r\n";
    n = http_write_error(out, sizeof(out), 403, NULL, NULL, 1767225600);
    ASSERT_MEM_EQ(out, n, want403, sizeof(want403) - 1);
    n = http_write_error(out, sizeof(out), 403, NULL, "", 1767225600);
    ASSERT_MEM_EQ(out, n, want403, sizeof(want403) - 1);

    static const char want400[] = "HTTP/1.1 400 Bad Request\r\n"
                                  "Date: Wed, 31 Dec 2025 23:59:59 GMT\r\n"
                                  "Content-Type: text/plain\r\n"
                                  "Content-Length: 41\r\n"
                                  "Connection: close\r\n"
                                  "\r\n"
                                  "'upgrade' header must contain 'websocket'";
    n = http_write_error(out, sizeof(out), 400, NULL, "'upgrade' header must contain 'websocket'", 1767225599);
    ASSERT_MEM_EQ(out, n, want400, sizeof(want400) - 1);

    static const struct {
        int status;
        const char *line;
    } phrases[] = {
        { 200, "HTTP/1.1 200 OK\r\n" },
        { 301, "HTTP/1.1 301 Moved Permanently\r\n" },
        { 307, "HTTP/1.1 307 Temporary Redirect\r\n" },
        { 400, "HTTP/1.1 400 Bad Request\r\n" },
        { 401, "HTTP/1.1 401 Unauthorized\r\n" },
        { 403, "HTTP/1.1 403 Forbidden\r\n" },
        { 404, "HTTP/1.1 404 Not Found\r\n" },
        { 408, "HTTP/1.1 408 Request Timeout\r\n" },
        { 431, "HTTP/1.1 431 Request Header Fields Too Large\r\n" },
        { 500, "HTTP/1.1 500 Internal Server Error\r\n" },
        { 503, "HTTP/1.1 503 Service Unavailable\r\n" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(phrases); i++) {
        n = http_write_error(out, sizeof(out), phrases[i].status, NULL, NULL, 0);
        ASSERT(n > strlen(phrases[i].line));
        ASSERT_MEM_EQ(out, strlen(phrases[i].line), phrases[i].line, strlen(phrases[i].line));
        ASSERT(memmem(out, n, "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n", 37) != NULL);
    }
    ASSERT_EQ(http_write_error(out, sizeof(out), 418, NULL, NULL, 0), 0);
    ASSERT_EQ(http_write_error(out, sizeof(out), 101, NULL, NULL, 0), 0);
    ASSERT_EQ(http_write_error(out, sizeof(out), 401, "x\r\ny: z", NULL, 0), 0);
}

TEST(http_write_redirect_bytes)
{
    char out[256];
    static const char want[] = "HTTP/1.1 301 Moved Permanently\r\n"
                               "Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
                               "Location: https://docs.nerves-hub.org/\r\n"
                               "Content-Length: 0\r\n"
                               "Connection: close\r\n"
                               "\r\n";
    size_t n = http_write_redirect(out, sizeof(out), 301, "https://docs.nerves-hub.org/", 1767225600);
    ASSERT_MEM_EQ(out, n, want, sizeof(want) - 1);
    ASSERT_EQ(http_write_redirect(out, sizeof(out), 400, "https://x/", 1767225600), 0);
    ASSERT_EQ(http_write_redirect(out, sizeof(out), 307, NULL, 1767225600), 0);
    ASSERT(http_write_redirect(out, sizeof(out), 307, "wss://other/socket/websocket", 1767225600) > 0);
}
