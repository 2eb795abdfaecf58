/* Client side of the WebSocket handshake and framing for nhbench (RFC 6455, RFC 7692): builds the
 * upgrade request nerves_hub_link sends, checks the 101 answer (Sec-WebSocket-Accept, the
 * permessage-deflate parameters), writes masked client frames and parses unmasked server frames.
 * Pure: no I/O, no libevent; inflate/deflate is gateway/ws.h's (no context takeover either way).
 * Not handled: subprotocols, redirects, HTTP/2 (RFC 8441). */
#ifndef NHBENCH_WSC_H
#define NHBENCH_WSC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "common.h"

#define WSC_ERR_SYNTAX (-1)   /* malformed response head or frame */
#define WSC_ERR_TOO_BIG (-2)  /* response head over WSC_MAX_HEAD, or frame over the caller's limit */
#define WSC_ERR_MASKED (-3)   /* a masked server frame (RFC 6455 §5.1: the client must fail) */
#define WSC_ERR_RSV (-4)      /* RSV bits not allowed by the negotiated extensions (§5.2) */
#define WSC_ERR_OPCODE (-5)   /* reserved opcode, or a fragmented / oversized control frame (§5.5) */

#define WSC_MAX_HEAD 8192     /* longest response head accepted */
#define WSC_KEY_LEN 24        /* base64 of 16 random bytes */
#define WSC_ACCEPT_LEN 28     /* base64 of a SHA-1 */

/* Static name of a WSC_ERR_* code. */
const char *wsc_strerror(int err);

/* Sec-WebSocket-Key from 16 random bytes: out gets WSC_KEY_LEN chars and a NUL. */
void wsc_key(const uint8_t rnd[16], char out[WSC_KEY_LEN + 1]);

/* Expected Sec-WebSocket-Accept for key (RFC 6455 §4.2.2: base64(SHA-1(key + GUID))); out gets
 * WSC_ACCEPT_LEN chars and a NUL. */
void wsc_accept(const char key[WSC_KEY_LEN], char out[WSC_ACCEPT_LEN + 1]);

/* Append the upgrade request link sends (device-protocol.md §8): GET path?vsn=<vsn>, Host,
 * Upgrade, Connection, Sec-WebSocket-Version 13, the key, and with `deflate` a bare
 * "Sec-WebSocket-Extensions: permessage-deflate" (link's mint_extensions/1). Returns 0 or -1 when
 * out would exceed 4096 bytes (a caller bug: inputs are our own configuration). */
int wsc_request(struct buf *out, const char *path, const char *vsn, const char *host, const char *key,
                bool deflate) WARN_UNUSED;

/* What wsc_parse_response found in a response head. Spans point into the parsed input. */
struct wsc_response {
    int status;                /* HTTP status code */
    bool upgrade_ok;           /* Upgrade: websocket */
    bool connection_ok;        /* Connection contains the token "upgrade" */
    struct span accept;        /* Sec-WebSocket-Accept value (len 0 if absent) */
    bool pmd;                  /* permessage-deflate accepted by the server */
    bool pmd_bad;              /* an extension or parameter the client did not offer or cannot honour */
    bool server_no_context;    /* server_no_context_takeover */
    bool client_no_context;    /* client_no_context_takeover */
    int server_max_window;     /* server_max_window_bits, 15 if absent */
    int client_max_window;     /* client_max_window_bits, 15 if absent (we did not offer it: pmd_bad) */
    struct span reason;        /* nh-connection-error-reason header, if any */
};

/* Parse the HTTP/1.1 response head at p[0..n). Returns the head length including the final CRLF
 * CRLF (> 0) with *r filled, 0 if the head is incomplete (and shorter than WSC_MAX_HEAD), or
 * WSC_ERR_TOO_BIG / WSC_ERR_SYNTAX. Header names match case-insensitively; several
 * Sec-WebSocket-Extensions lines form one list (RFC 6455 §9.1). */
ssize_t wsc_parse_response(const uint8_t *p, size_t n, struct wsc_response *r);

/* One parsed server frame; payload points into the parsed buffer. */
struct wsc_frame {
    uint8_t opcode;
    bool fin;
    bool rsv1;
    const uint8_t *payload;
    size_t len;
};

/* Parse one server frame at p[0..n). Returns the bytes consumed (> 0), 0 if more are needed, or a
 * WSC_ERR_*. rsv1_ok allows RSV1 on data frames that start a message (permessage-deflate). Frames
 * over max_payload bytes → WSC_ERR_TOO_BIG, decided from the header. */
ssize_t wsc_parse_frame(const uint8_t *p, size_t n, bool rsv1_ok, size_t max_payload, struct wsc_frame *f);

#define WSC_MAX_HEADER 14

/* Write a client frame header (always masked with `mask`, §5.3) for len payload bytes into out.
 * Returns its length (6, 8 or 14). */
size_t wsc_frame_header(uint8_t out[WSC_MAX_HEADER], uint8_t opcode, bool fin, bool rsv1, uint64_t len,
                        const uint8_t mask[4]);

/* XOR p[0..n) with mask, as if p started at payload offset 0 (§5.3). */
void wsc_mask(uint8_t *p, size_t n, const uint8_t mask[4]);

#endif
