/* A device connection: TLS on the socket, the HTTP upgrade, WebSocket framing and the state
 * machine HANDSHAKE → UPGRADE → AUTH → OPEN → CLOSING. Phoenix semantics live in session.c; this
 * module moves bytes and enforces the transport limits. Closing only marks the connection; its
 * memory is released at a safe point (after in-flight link calls complete). */
#ifndef NHGW_CONN_H
#define NHGW_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event_struct.h>

#include "buf.h"
#include "common.h"
#include "ws.h"

struct worker;
struct conn_list;
struct sess;
struct conn_hs;
typedef struct ssl_st SSL;

enum conn_state {
    CONN_HANDSHAKE, /* TLS handshake in progress */
    CONN_UPGRADE,   /* reading the HTTP upgrade request */
    CONN_AUTH,      /* waiting for the link's auth answer */
    CONN_OPEN,      /* WebSocket open */
    CONN_CLOSING,   /* close frame or error response sent; flushing / waiting for the peer's close */
    CONN_DEAD,      /* resources released; memory freed once calls in flight are done */
};

#define CONN_F_MSGPACK     0x01 /* vsn 3.0.x: msgpack over binary frames (else JSON over text) */
#define CONN_F_DEFLATE     0x02 /* permessage-deflate negotiated */
#define CONN_F_WANT_WRITE  0x04 /* output is waiting for the socket to become writable */
#define CONN_F_CLOSE_SENT  0x10 /* our close frame is queued */
#define CONN_F_CLOSE_RECVD 0x20 /* the peer's close frame arrived */
#define CONN_F_FREE_AFTER_FLUSH 0x40 /* close the socket once the output is written */
#define CONN_F_READ_WANTS_WRITE 0x80 /* SSL_read needs the socket writable (TLS internals) */
#define CONN_F_PROCESSING  0x100 /* inside the input loop: completions must not re-enter it */
#define CONN_F_PEER_CLOSED 0x200 /* the peer closed (close_notify or TCP FIN): send no close_notify back */

struct conn {
    struct conn *prev, *next;   /* membership in one of the worker's timeout lists */
    struct conn_list *list;     /* which list, NULL if none */
    struct worker *w;           /* owning worker */
    SSL *ssl;                   /* NULL once dead */
    struct event ev;            /* socket readiness */
    uint64_t id;                /* unique within the worker */
    uint64_t deadline_ms;       /* when the current timeout class fires */
    int fd;
    uint8_t state;              /* enum conn_state */
    uint16_t flags;             /* CONN_F_* */
    uint8_t pmd_window;         /* deflate window bits negotiated for our output */
    uint8_t ev_mask;            /* EV_READ/EV_WRITE currently registered */
    uint16_t calls;             /* link calls in flight; memory lives while > 0 */
    struct ws_msg_state msg;    /* fragmented message in progress */
    struct buf in;              /* unprocessed input; empty (unallocated) when idle */
    struct buf out;             /* unwritten output; empty (unallocated) when idle */
    size_t out_off;             /* bytes of out already written */
    struct buf frag;            /* fragments of an unfinished message */
    struct conn_hs *hs;         /* handshake, upgrade and auth only */
    struct sess *sess;          /* Phoenix session once open */
    char peer[48];              /* "ip:port" for logs */
};

/* Take over an accepted socket. Returns NULL (socket closed) if allocation fails. */
struct conn *conn_new(struct worker *w, int fd, const char *peer);

/* Queue one WebSocket message (deflated when negotiated and worthwhile). Returns 0, or -1 when the
 * connection is closing or its output limit was passed (it is then being closed). */
int conn_send(struct conn *c, uint8_t opcode, const uint8_t *payload, size_t len);

/* Start the WebSocket close handshake with `code` (reason may be NULL); the connection stops
 * processing input other than the peer's close. Idempotent. */
void conn_close(struct conn *c, uint16_t code, const char *reason);

/* Drop the connection now without a close handshake. */
void conn_abort(struct conn *c, const char *why);

/* Back-pressure around a link call: while any call is in flight, the socket is not read and no
 * further messages are processed; conn_call_end resumes processing. The connection's memory
 * stays valid until the matching conn_call_end. */
void conn_call_begin(struct conn *c);
void conn_call_end(struct conn *c);

/* Whether the connection can still take output (false once dead or closing). */
bool conn_is_open(const struct conn *c);

/* Timeout sweep and deferred frees, called by the worker's timer. */
void conn_expire(struct worker *w, uint64_t now_ms);
void conn_reap(struct worker *w);

/* Close every open connection with `code` (drain/shutdown). */
void conn_close_all(struct worker *w, uint16_t code, const char *reason);

#endif
