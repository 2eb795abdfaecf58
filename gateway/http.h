/* HTTP/1.1 WebSocket upgrade request codec: parse and validate the request head (llhttp underneath),
 * pick the serializer from the query, compute Sec-WebSocket-Accept, and format 101/4xx/5xx replies.
 * Pure: no I/O, no allocation, no libevent. It does not negotiate permessage-deflate (it only hands
 * the offered Sec-WebSocket-Extensions lines over), route requests, or authenticate anyone. */
#ifndef NHGW_HTTP_H
#define NHGW_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "common.h"

/* Parser errors (negative ssize_t from http_req_parse); http_err_status() maps them to a status. */
#define HTTP_ERR_TOO_LARGE (-1)        /* no end of head within max_head bytes → 431 */
#define HTTP_ERR_BAD_REQUEST (-2)      /* malformed request line/headers, or refused framing → 400 */
#define HTTP_ERR_TOO_MANY_FIELDS (-3)  /* more than HTTP_MAX_X_HEADERS x-* or HTTP_MAX_EXT_LINES
                                        * Sec-WebSocket-Extensions lines → 431 */

#define HTTP_MAX_X_HEADERS 32  /* x-* header lines kept; one more → HTTP_ERR_TOO_MANY_FIELDS */
#define HTTP_MAX_EXT_LINES 8   /* Sec-WebSocket-Extensions lines kept; one more → HTTP_ERR_TOO_MANY_FIELDS */

struct http_header {
    struct span name;   /* as sent (case preserved), a token */
    struct span value;  /* OWS-trimmed; may be empty (then .p is non-NULL) */
};

/* A parsed request head. Every span points into the buffer given to http_req_parse and stays valid
 * while those bytes do. A header span has .p == NULL when the header is absent. */
struct http_req {
    bool method_get;                 /* method is exactly GET (any other method llhttp knows parses) */
    uint8_t http_minor;              /* HTTP/1.<minor>: 0 or 1 (every other version is refused) */
    struct span path;                /* request-target path without query/fragment; for absolute-form
                                      * ("GET https://h/p?q HTTP/1.1") the path part, possibly empty */
    struct span query;               /* after the first '?', raw, up to '#'; .p NULL when no '?' */
    struct span host;                /* Host (at most one line, required for HTTP/1.1) */
    struct span upgrade;             /* first Upgrade line */
    struct span connection;          /* first Connection line */
    struct span ws_key;              /* first Sec-WebSocket-Key line */
    struct span ws_version;          /* first Sec-WebSocket-Version line */
    struct span origin;              /* first Origin line (Phoenix check_origin uses the first) */
    bool upgrade_websocket;          /* some Upgrade line lists the token "websocket" (any case) */
    bool connection_upgrade;         /* some Connection line lists the token "upgrade" (any case) */
    uint8_t n_ws_key;                /* Sec-WebSocket-Key lines seen (saturates at 255) */
    uint8_t n_ws_version;            /* Sec-WebSocket-Version lines seen (saturates at 255) */
    struct span extensions[HTTP_MAX_EXT_LINES]; /* Sec-WebSocket-Extensions lines, in order */
    size_t n_extensions;
    struct http_header x_headers[HTTP_MAX_X_HEADERS]; /* every header whose name starts with "x-"
                                                       * (any case), in order, duplicates kept */
    size_t n_x;
    size_t head_len;                 /* bytes of the head including the final CRLFCRLF */
};

/* Parse a request head from p[0..n) (n may include bytes after the head). The call is stateless:
 * call it again with the grown buffer. Cost is O(min(n, max_head)) per call.
 * Returns head_len > 0 once the whole head is present and valid (*req filled in);
 * 0 if incomplete and n < max_head; HTTP_ERR_TOO_LARGE if there is no complete head within max_head
 * bytes (a head of exactly max_head bytes is accepted, max_head+1 refused); HTTP_ERR_BAD_REQUEST for
 * malformed input (detected as early as possible, so a prefix may already return it);
 * HTTP_ERR_TOO_MANY_FIELDS as documented above. For any input, the result for a prefix is either 0 or
 * the result for the whole input. Bytes after head_len are not looked at. *req is only meaningful
 * when the return value is > 0.
 * Refused with HTTP_ERR_BAD_REQUEST (RFC 9112 unless noted): bare LF or CR, obs-fold (§5.2), control
 * bytes, anything but "METHOD SP target SP HTTP/1.x CRLF" as request line (including leading empty
 * lines), HTTP versions other than 1.0/1.1, absolute-form with a scheme other than http/https,
 * whitespace or non-token bytes in field names (§5.1), a body (Content-Length > 0 or any
 * Transfer-Encoding: an upgrade GET has none), zero or several Host lines in HTTP/1.1 (§3.2),
 * several Host lines in HTTP/1.0. */
ssize_t http_req_parse(const uint8_t *p, size_t n, size_t max_head, struct http_req *req);

/* Status code for a negative http_req_parse result (400 or 431), and a static description. */
int http_err_status(ssize_t err);
const char *http_strerror(ssize_t err);

enum http_vsn { HTTP_VSN_NONE = 0, HTTP_VSN_JSON, HTTP_VSN_MSGPACK };

/* vsn query parameter → serializer (device-protocol §1.3), as Phoenix decides it:
 * Version.parse + Version.match?(vsn, "~> 2.0.0") → JSON, "~> 3.0.0" → MSGPACK, else NONE.
 * Version parsing is Elixir's: MAJOR.MINOR.PATCH[-pre][+build], no leading zeros in numbers or numeric
 * pre-release identifiers, identifiers [0-9A-Za-z-]. Pre-releases match as Elixir's default allow_pre
 * does: 2.0.1-dev matches ~> 2.0.0, 2.0.0-rc.1 does not (it is < 2.0.0). The query is decoded like
 * Plug.Conn.Query: pairs split on '&', key/value on the first '=', then '+' → space and %XX decoded
 * (a malformed '%' stays literal, as in Elixir's URI.decode_www_form); the last "vsn" wins. A nested key
 * ("vsn[]", "vsn[a]") makes Phoenix's params["vsn"] a list/map, which Phoenix cannot parse: → NONE.
 * query.p may be NULL. */
enum http_vsn http_vsn_from_query(struct span query);

/* Plug.Conn.fetch_query_params refuses (InvalidQueryError → 400, before the Origin/vsn checks) a query
 * whose decoded keys or values are not valid UTF-8. Returns false in exactly that case. */
bool http_query_is_valid(struct span query);

/* True when path routes to the device socket (device-protocol §1.1): Phoenix matches on Plug's
 * path_info, i.e. the path split on '/' with empty segments dropped and no percent-decoding, so
 * "/socket/websocket", "/socket/websocket/" and "//socket//websocket" all match
 * ["socket","websocket"] (likewise ["device-socket","websocket"]); "/socket/%77ebsocket" does not. */
bool http_path_is_device_socket(struct span path);

/* /status/alive, /status/_health, /status/health, /status/healthy (device-protocol §1.1: the
 * DeviceEndpoint's health answers for load balancers), segments split as for the socket paths. */
bool http_path_is_status(struct span path);

/* Step 5 of device-protocol §1.6: is this a valid WebSocket upgrade (RFC 6455 §4.2.1)? Checks in
 * WebSockAdapter.UpgradeValidation's order: HTTP/1.1, GET, Host present, Connection lists "upgrade",
 * Upgrade lists "websocket", exactly one Sec-WebSocket-Key which is base64 of 16 bytes (24 chars with
 * "==" padding), exactly one Sec-WebSocket-Version equal to "13". Returns NULL if valid, else a static
 * reason for the 400 body: WebSockAdapter's text without its ", got [...]" suffix where it has one
 * (e.g. "'upgrade' header must contain 'websocket'"). */
const char *http_ws_upgrade_error(const struct http_req *req);

/* Sec-WebSocket-Accept (RFC 6455 §4.2.2): base64(SHA-1(key + GUID)) written NUL-terminated to out.
 * key is the header value as received (already OWS-trimmed by the parser). */
void http_ws_accept_key(struct span key, char out[29]);

/* Authentication mode (device-protocol §2.1): a TLS client certificate wins; otherwise any x-* header
 * (even X-Forwarded-For alone) selects shared-secret mode; otherwise none (→ 401 no_auth). */
enum http_auth_mode { HTTP_AUTH_CERT, HTTP_AUTH_SHARED_SECRET, HTTP_AUTH_NONE };
enum http_auth_mode http_auth_mode(const struct http_req *req, bool have_peer_cert);

/* Responses, written into out[0..cap) (not NUL-terminated). Each returns the bytes written, or 0 if
 * cap is too small, the status is not one listed here, a header value (accept, ext, nh_reason,
 * location) contains a control byte other than HTAB (no header injection), or `now` cannot be
 * formatted. Strings are NUL-terminated and borrowed for the call. Every response carries "Date: <IMF-fixdate>" (RFC 9110 §5.6.7) from now.
 *
 * 101: "HTTP/1.1 101 Switching Protocols", Date, "Upgrade: websocket", "Connection: Upgrade",
 *      "Sec-WebSocket-Accept: <accept>", and "Sec-WebSocket-Extensions: <ext>" when ext != NULL.
 *      No body, no Content-Length. */
size_t http_write_101(char *out, size_t cap, const char accept[29], const char *ext, time_t now);

/* A response that ends the connection: status line with the standard reason phrase (200, 301, 307,
 * 400, 401, 403, 404, 408, 431, 500, 503), Date, optional "nh-connection-error-reason: <nh_reason>",
 * "Content-Type: text/plain" when body is non-empty, Content-Length, "Connection: close", then the body
 * (NULL = empty). */
size_t http_write_error(char *out, size_t cap, int status, const char *nh_reason, const char *body,
                        time_t now);

/* 301/307 redirect (device-protocol §1.1, §1.6) with "Location: <location>", empty body, then close. */
size_t http_write_redirect(char *out, size_t cap, int status, const char *location, time_t now);

/* The two texts of device-protocol §1.6 (header value and body): */
#define HTTP_REASON_NO_AUTH "no certificate pair or shared secrets connection settings were provided"
#define HTTP_REASON_PLATFORM_UNAVAILABLE "the platform could not be reached to authenticate this device"

#endif
