/* Device connections (see conn.h): drives SSL on the socket, reads the upgrade request, frames
 * WebSocket messages and enforces transport limits and timeouts. An idle open connection holds
 * no buffers: input is read into the worker's shared buffer and only a partial frame is kept. */
#include "conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "config.h"
#include "http.h"
#include "link.h"
#include "log.h"
#include "session.h"
#include "tls.h"
#include "worker.h"

/* What the handshake and the upgrade leave for the auth answer; freed once open. */
struct conn_hs {
    struct tls_identity ident;
    char accept[29];
    const char *upgrade_error; /* static string: 400 body, or NULL when the upgrade is valid */
    char ext_resp[160];        /* Sec-WebSocket-Extensions answer, "" when not negotiated */
    uint8_t pmd_window;
    bool msgpack;
    size_t head_len;
    uint64_t t0_us;            /* accepted at (nhgw_tls_handshake_duration_seconds) */
};

#define MAX_READS_PER_EVENT 16

static void on_event(evutil_socket_t fd, short what, void *arg);
static void destroy(struct conn *c, const char *why);

static void update_events(struct conn *c)
{
    if (c->state == CONN_DEAD)
        return;
    short want = 0;
    /* back-pressure: while a link call is in flight the socket is not read (architecture §5) */
    bool paused = c->calls > 0 || c->state == CONN_AUTH;
    if (!paused)
        want |= EV_READ;
    if (c->flags & (CONN_F_WANT_WRITE | CONN_F_READ_WANTS_WRITE))
        want |= EV_WRITE;
    if (want == c->ev_mask)
        return;
    event_del(&c->ev);
    event_assign(&c->ev, c->w->base, c->fd, want | EV_PERSIST, on_event, c);
    if (want)
        event_add(&c->ev, NULL);
    c->ev_mask = (uint8_t)want;
}

static void move_to(struct conn *c, struct conn_list *l)
{
    if (c->list)
        conn_list_remove(c->list, c);
    if (l) {
        c->deadline_ms = worker_now_ms() + l->timeout_ms;
        conn_list_push(l, c);
    }
}

bool conn_is_open(const struct conn *c)
{
    return c->state == CONN_OPEN;
}

struct conn *conn_new(struct worker *w, int fd, const char *peer)
{
    struct conn *c = calloc(1, sizeof(*c));
    struct conn_hs *hs = calloc(1, sizeof(*hs));
    if (!c || !hs) {
        free(c);
        free(hs);
        close(fd);
        return NULL;
    }
    c->w = w;
    c->fd = fd;
    c->hs = hs;
    hs->t0_us = stats_now_us();
    c->id = ++w->next_conn_id;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    c->ssl = tls_ssl_new(w->tls, fd, &hs->ident);
    if (!c->ssl) {
        free(hs);
        free(c);
        close(fd);
        return NULL;
    }
    c->state = CONN_HANDSHAKE;
    move_to(c, &w->handshaking);
    event_assign(&c->ev, w->base, fd, 0, on_event, c);
    update_events(c);
    return c;
}

/* ---- output ---- */

static void flush(struct conn *c)
{
    while (c->out_off < c->out.len) {
        size_t n = c->out.len - c->out_off;
        int r = SSL_write(c->ssl, c->out.p + c->out_off, n > 65536 ? 65536 : (int)n);
        switch (tls_classify(c->ssl, r)) {
        case TLS_IO_OK:
            c->out_off += (size_t)r;
            c->w->stats.bytes_out += (uint64_t)r;
            continue;
        case TLS_IO_WANT_WRITE:
        case TLS_IO_WANT_READ:
            c->flags |= CONN_F_WANT_WRITE;
            update_events(c);
            return;
        default:
            destroy(c, "write failed");
            return;
        }
    }
    buf_free(&c->out);
    c->out_off = 0;
    c->flags &= ~CONN_F_WANT_WRITE;
    if (c->flags & CONN_F_FREE_AFTER_FLUSH) {
        destroy(c, c->flags & CONN_F_CLOSE_RECVD ? "closed by peer" : "closed");
        return;
    }
    update_events(c);
}

/* Append raw bytes to the output, enforcing the slow-consumer limit. */
static int queue_out(struct conn *c, const void *p, size_t n)
{
    if (c->out_off && c->out_off == c->out.len) {
        c->out.len = 0;
        c->out_off = 0;
    }
    if (buf_try_append(&c->out, p, n, c->w->cfg->max_output) != 0) {
        c->w->stats.slow_consumers++;
        log_peer("slow_consumer", "conn=%llu peer=%s device=%s queued=%zu", (unsigned long long)c->id, c->peer,
                 c->sess ? sess_device_id(c->sess) : "", c->out.len - c->out_off);
        sess_set_close_reason(c, "slow_consumer");
        destroy(c, "output limit");
        return -1;
    }
    return 0;
}

static int send_frame(struct conn *c, uint8_t opcode, bool rsv1, const uint8_t *payload, size_t len)
{
    uint8_t hdr[WS_MAX_HEADER];
    size_t hl = ws_frame_header(hdr, opcode, true, rsv1, len);
    if (queue_out(c, hdr, hl) != 0 || queue_out(c, payload, len) != 0)
        return -1;
    c->w->stats.frames_out++;
    flush(c);
    return c->state == CONN_DEAD ? -1 : 0;
}

int conn_send(struct conn *c, uint8_t opcode, const uint8_t *payload, size_t len)
{
    if (c->state != CONN_OPEN)
        return -1;
    struct worker *w = c->w;
    bool data = opcode == WS_OP_TEXT || opcode == WS_OP_BINARY;
    if (data && (c->flags & CONN_F_DEFLATE) && len >= w->cfg->deflate_min) {
        w->scratch2.len = 0;
        if (ws_deflate_msg(w->z, c->pmd_window, payload, len, &w->scratch2, w->cfg->max_output) == 0)
            return send_frame(c, opcode, true, w->scratch2.p, w->scratch2.len);
    }
    return send_frame(c, opcode, false, payload, len);
}

static void send_close_frame(struct conn *c, uint16_t code, const char *reason)
{
    uint8_t payload[125];
    size_t n = code == 1005 ? 0 : ws_close_payload(payload, code, reason ? reason : "");
    c->flags |= CONN_F_CLOSE_SENT;
    c->w->stats.ws_closes[stats_close_index(code)]++;
    send_frame(c, WS_OP_CLOSE, false, payload, n);
}

void conn_close(struct conn *c, uint16_t code, const char *reason)
{
    if (c->state == CONN_DEAD || (c->flags & CONN_F_CLOSE_SENT))
        return;
    if (c->state != CONN_OPEN) {
        destroy(c, reason ? reason : "closed");
        return;
    }
    LOG(LOG_DEBUG, "ws_close", "conn=%llu device=%s code=%u reason=\"%s\"", (unsigned long long)c->id,
        c->sess ? sess_device_id(c->sess) : "", code, reason ? reason : "");
    if (c->sess)
        sess_free(c, reason ? reason : "closed");
    c->state = CONN_CLOSING;
    move_to(c, &c->w->closing);
    buf_free(&c->frag);
    ws_msg_reset(&c->msg);
    if (c->flags & CONN_F_CLOSE_RECVD)
        c->flags |= CONN_F_FREE_AFTER_FLUSH;
    send_close_frame(c, code, reason);
}

void conn_abort(struct conn *c, const char *why)
{
    destroy(c, why);
}

/* ---- teardown ---- */

static void destroy(struct conn *c, const char *why)
{
    if (c->state == CONN_DEAD)
        return;
    struct worker *w = c->w;
    LOG(LOG_DEBUG, "conn_closed", "conn=%llu peer=%s device=%s reason=\"%s\"", (unsigned long long)c->id, c->peer,
        c->sess ? sess_device_id(c->sess) : "", why);
    if (c->sess)
        sess_free(c, why);
    if (c->list)
        conn_list_remove(c->list, c);
    event_del(&c->ev);
    if (c->ssl) {
        /* best effort close_notify; never waits. None to a peer that has closed (as nginx's
         * no_send_shutdown): it is going away, and in TLS 1.3 SSL_shutdown would first flush the
         * session tickets BoringSSL holds back until our first write (measured: 5-6 % of a TLS 1.3
         * handshake cycle, bench/RESULTS.md) */
        if (c->state >= CONN_UPGRADE && !(c->flags & CONN_F_PEER_CLOSED))
            SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    close(c->fd);
    c->fd = -1;
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->frag);
    /* a session is open, or closing after it was open (hs is gone by then); a refused upgrade is
     * closing too but never was one */
    if (c->state == CONN_OPEN || (c->state == CONN_CLOSING && !c->hs))
        w->stats.sessions--;
    if (c->hs) {
        tls_identity_clear(&c->hs->ident);
        free(c->hs);
        c->hs = NULL;
    }
    w->stats.closed++;
    c->state = CONN_DEAD;
    c->next = w->zombies;
    w->zombies = c;
}

void conn_reap(struct worker *w)
{
    struct conn **pp = &w->zombies;
    while (*pp) {
        struct conn *c = *pp;
        if (c->calls == 0 && !(c->flags & CONN_F_PROCESSING)) {
            *pp = c->next;
            free(c);
        } else {
            pp = &c->next;
        }
    }
}

/* ---- HTTP upgrade ---- */

/* Sends a complete HTTP response (n bytes; 0: it did not fit) and closes once it is written. */
static void answer_and_close(struct conn *c, const char *resp, size_t n)
{
    c->state = CONN_CLOSING;
    move_to(c, &c->w->closing);
    c->flags |= CONN_F_FREE_AFTER_FLUSH;
    if (n == 0 || queue_out(c, resp, n) != 0) {
        destroy(c, "http response");
        return;
    }
    flush(c);
}

static void respond_error(struct conn *c, int status, const char *nh_reason, const char *body)
{
    char resp[1024];
    size_t n = http_write_error(resp, sizeof(resp), status, nh_reason, body, time(NULL));
    int k = stats_upgrade_index(status);
    if (k >= 0)
        c->w->stats.upgrades[k]++;
    log_peer("upgrade_rejected", "conn=%llu peer=%s status=%d", (unsigned long long)c->id, c->peer, status);
    answer_and_close(c, resp, n);
}

/* NervesHub's DeviceEndpoint answers its /status paths for load balancers that health-check the
 * device port (device-protocol §1.1). Always 200 here: a draining worker has closed its listener
 * and dropped every connection that had not upgraded, so none reaches this while it drains. */
static void respond_status(struct conn *c)
{
    char resp[256];
    answer_and_close(c, resp, http_write_error(resp, sizeof(resp), 200, NULL, "Hello, Friend!", time(NULL)));
}

static bool origin_allowed(const struct http_req *req)
{
    if (!req->origin.p)
        return true;
    /* Phoenix's check_origin compares the origin's host with the endpoint's; devices send none */
    const char *p = req->origin.p, *end = req->origin.p + req->origin.len;
    const char *sep = memmem(p, req->origin.len, "://", 3);
    if (sep)
        p = sep + 3;
    const char *host_end = p;
    while (host_end < end && *host_end != ':' && *host_end != '/')
        host_end++;
    if (!req->host.p)
        return false;
    size_t hl = 0;
    while (hl < req->host.len && req->host.p[hl] != ':')
        hl++;
    return (size_t)(host_end - p) == hl && strncasecmp(p, req->host.p, hl) == 0;
}

static void process_input(struct conn *c);

static void on_auth_done(void *arg, const struct link_reply *r)
{
    struct conn *c = arg;
    if (c->state == CONN_AUTH) {
        struct conn_hs *hs = c->hs;
        if (r->status == LINK_UNAVAILABLE) {
            respond_error(c, 503, HTTP_REASON_PLATFORM_UNAVAILABLE, HTTP_REASON_PLATFORM_UNAVAILABLE);
        } else if (r->status != LINK_OK) {
            /* NervesHub answers a failed authentication with a bare 401 (device-protocol §1.6):
             * the platform's reason is for the operator's log, not for the peer. Printable ASCII
             * only, and no quotes, so the log line stays one parseable record. */
            char reason[256];
            size_t n = 0;
            for (size_t i = 0; i < r->reason.len && n < sizeof(reason) - 1; i++) {
                char ch = r->reason.p[i];
                reason[n++] = ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\' ? ch : ' ';
            }
            reason[n] = 0;
            log_peer("auth_refused", "conn=%llu peer=%s reason=\"%s\"", (unsigned long long)c->id, c->peer, reason);
            respond_error(c, 401, NULL, "");
        } else if (r->device_id.len == 0 || r->device_id.len > 128) {
            LOG(LOG_WARN, "auth_bad_device_id", "conn=%llu peer=%s len=%zu", (unsigned long long)c->id, c->peer,
                r->device_id.len);
            respond_error(c, 503, HTTP_REASON_PLATFORM_UNAVAILABLE, HTTP_REASON_PLATFORM_UNAVAILABLE);
        } else if (hs->upgrade_error) {
            respond_error(c, 400, NULL, hs->upgrade_error);
        } else {
            char resp[512];
            size_t n = http_write_101(resp, sizeof(resp), hs->accept, hs->ext_resp[0] ? hs->ext_resp : NULL,
                                      time(NULL));
            if (hs->ext_resp[0]) {
                c->flags |= CONN_F_DEFLATE;
                c->pmd_window = hs->pmd_window;
            }
            if (hs->msgpack)
                c->flags |= CONN_F_MSGPACK;
            buf_consume(&c->in, hs->head_len);
            if (c->in.len == 0)
                buf_free(&c->in);
            c->w->stats.upgrades[ST_UPG_101]++;
            c->w->stats.sessions++;
            c->state = CONN_OPEN;
            move_to(c, &c->w->open);
            if (queue_out(c, resp, n) == 0) {
                flush(c);
                /* the reply's device id may point into the identity: start the session first */
                if (c->state == CONN_OPEN && !sess_new(c, r->device_id, r->session))
                    destroy(c, "out of memory");
            }
            if (c->hs) {
                tls_identity_clear(&c->hs->ident);
                free(c->hs);
                c->hs = NULL;
            }
        }
    }
    conn_call_end(c);
}

static void start_auth(struct conn *c, const struct http_req *req)
{
    struct conn_hs *hs = c->hs;
    struct link_auth a = { 0 };
    a.has_cert = hs->ident.has_cert;
    memcpy(a.fingerprint, hs->ident.fingerprint, sizeof(a.fingerprint));
    a.cn = (struct span){ hs->ident.cn, strlen(hs->ident.cn) };
    a.der = (struct span){ (const char *)hs->ident.der, hs->ident.der_len };
    a.peer = (struct span){ c->peer, strlen(c->peer) };
    a.conn_ref = c->id;
    struct span names[HTTP_MAX_X_HEADERS], values[HTTP_MAX_X_HEADERS];
    char lower[HTTP_MAX_X_HEADERS][64];
    size_t nx = 0;
    for (size_t i = 0; i < req->n_x; i++) {
        size_t len = req->x_headers[i].name.len;
        if (len >= sizeof(lower[0]))
            continue; /* no header the platform reads is that long */
        for (size_t k = 0; k < len; k++) {
            char ch = req->x_headers[i].name.p[k];
            lower[nx][k] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        }
        names[nx] = (struct span){ lower[nx], len };
        values[nx] = req->x_headers[i].value;
        nx++;
    }
    a.x_names = names;
    a.x_values = values;
    a.n_x = nx;
    c->state = CONN_AUTH;
    update_events(c);
    conn_call_begin(c);
    c->w->link->ops->auth(c->w->link, &a, on_auth_done, c);
}

/* device-protocol.md §1.6: the first failing check decides the answer. */
static void handle_upgrade(struct conn *c, const struct http_req *req)
{
    struct conn_hs *hs = c->hs;
    if (req->method_get && http_path_is_status(req->path)) {
        respond_status(c);
        return;
    }
    if (!http_path_is_device_socket(req->path)) {
        respond_error(c, 404, NULL, "Not Found\n");
        return;
    }
    if (!req->method_get) {
        respond_error(c, 400, NULL, "");
        return;
    }
    if (!http_query_is_valid(req->query)) {
        respond_error(c, 400, NULL, ""); /* Plug refuses a query that does not decode */
        return;
    }
    if (!origin_allowed(req)) {
        respond_error(c, 403, NULL, "");
        return;
    }
    enum http_vsn vsn = http_vsn_from_query(req->query);
    if (vsn == HTTP_VSN_NONE) {
        respond_error(c, 403, NULL, "");
        return;
    }
    if (http_auth_mode(req, hs->ident.has_cert) == HTTP_AUTH_NONE) {
        respond_error(c, 401, HTTP_REASON_NO_AUTH, HTTP_REASON_NO_AUTH);
        return;
    }
    hs->msgpack = vsn == HTTP_VSN_MSGPACK;
    hs->head_len = req->head_len;
    hs->upgrade_error = http_ws_upgrade_error(req);
    if (!hs->upgrade_error) {
        http_ws_accept_key(req->ws_key, hs->accept);
        struct ws_pmd pmd = { 0 };
        for (size_t i = 0; c->w->cfg->deflate && i < req->n_extensions; i++) {
            if (ws_pmd_negotiate(req->extensions[i].p, req->extensions[i].len, &pmd, hs->ext_resp,
                                 sizeof(hs->ext_resp))) {
                hs->pmd_window = pmd.server_window_bits ? pmd.server_window_bits : 15;
                break;
            }
        }
    }
    start_auth(c, req);
}

static void read_upgrade(struct conn *c)
{
    struct worker *w = c->w;
    size_t max_head = w->cfg->max_header_bytes;
    for (int i = 0; i < MAX_READS_PER_EVENT && c->state == CONN_UPGRADE; i++) {
        int r = SSL_read(c->ssl, w->rbuf, WORKER_RBUF_SIZE);
        switch (tls_classify(c->ssl, r)) {
        case TLS_IO_OK:
            break;
        case TLS_IO_WANT_READ:
            return;
        case TLS_IO_WANT_WRITE:
            c->flags |= CONN_F_READ_WANTS_WRITE;
            update_events(c);
            return;
        case TLS_IO_CLOSED:
            c->flags |= CONN_F_PEER_CLOSED;
            /* fall through */
        default:
            destroy(c, "closed during upgrade");
            return;
        }
        w->stats.bytes_in += (uint64_t)r;
        /* room for the head plus a little pipelined data; anything beyond is refused as too large */
        if (buf_try_append(&c->in, w->rbuf, (size_t)r, max_head + WORKER_RBUF_SIZE) != 0) {
            respond_error(c, 431, NULL, "");
            return;
        }
        struct http_req req;
        ssize_t n = http_req_parse(c->in.p, c->in.len, max_head, &req);
        if (n == 0)
            continue;
        if (n == HTTP_ERR_TOO_LARGE || n == HTTP_ERR_TOO_MANY_FIELDS) {
            respond_error(c, 431, NULL, "");
            return;
        }
        if (n < 0) {
            respond_error(c, 400, NULL, "");
            return;
        }
        handle_upgrade(c, &req);
        return;
    }
    if (c->state == CONN_UPGRADE && tls_read_pending(c->ssl))
        event_active(&c->ev, EV_READ, 0);
}

/* ---- handshake ---- */

/* The cross-pod store answered a session lookup (tls_fetch_session). The lookup counted as a
 * call: the socket was not read and the memory stayed valid, even if the connection died
 * meanwhile (then the answer is dropped); conn_call_end drives the handshake again. */
static void on_session_fetched(void *arg, enum tlsr_result r, const uint8_t *val, size_t len)
{
    struct conn *c = arg;
    if (c->state == CONN_HANDSHAKE)
        tls_session_fetched(c->ssl, r, val, len);
    conn_call_end(c);
}

static void do_handshake(struct conn *c)
{
    int r = SSL_do_handshake(c->ssl);
    enum tls_io io = tls_classify(c->ssl, r);
    if (io == TLS_IO_PENDING_SESSION) {
        c->flags &= ~CONN_F_WANT_WRITE;
        if (tls_fetch_session(c->ssl, on_session_fetched, c)) {
            conn_call_begin(c);
            return;
        }
        /* not asked (the store is away or busy): on without a session */
        r = SSL_do_handshake(c->ssl);
        io = tls_classify(c->ssl, r);
    }
    switch (io) {
    case TLS_IO_OK:
        break;
    case TLS_IO_WANT_READ:
        c->flags &= ~CONN_F_WANT_WRITE;
        update_events(c);
        return;
    case TLS_IO_WANT_WRITE:
        c->flags |= CONN_F_WANT_WRITE;
        update_events(c);
        return;
    default: {
        bool peer;
        const char *why = tls_error_reason(&peer);
        c->w->stats.handshakes_failed++;
        log_peer("tls_handshake_failed", "conn=%llu peer=%s reason=\"%s\"", (unsigned long long)c->id, c->peer,
                 why);
        destroy(c, "handshake failed");
        return;
    }
    }
    if (tls_after_handshake(c->ssl) != 0) {
        c->w->stats.handshakes_failed++;
        destroy(c, "resumed certificate no longer trusted");
        return;
    }
    c->w->stats.handshakes_ok++;
    stats_hist_add(&c->w->stats.tls_hs, stats_now_us() - c->hs->t0_us);
    if (SSL_session_reused(c->ssl))
        c->w->stats.resumed++;
    c->flags &= ~CONN_F_WANT_WRITE;
    c->state = CONN_UPGRADE;
    move_to(c, &c->w->upgrading);
    update_events(c);
    read_upgrade(c);
}

/* ---- WebSocket input ---- */

static int handle_message(struct conn *c, uint8_t opcode, bool compressed, const uint8_t *p, size_t n)
{
    struct worker *w = c->w;
    if (compressed) {
        w->inflated.len = 0;
        /* an inflated message is still a message: both limits apply */
        size_t cap = MIN(w->cfg->max_inflated, w->cfg->max_message);
        int rc = ws_inflate_msg(w->z, p, n, &w->inflated, cap);
        if (rc != 0)
            return ws_err_close_code(rc);
        p = w->inflated.p;
        n = w->inflated.len;
    }
    bool msgpack = c->flags & CONN_F_MSGPACK;
    /* the serializer fixes the frame type (device-protocol.md §1.3); the other type is data we
     * cannot accept (RFC 6455 §7.4.1: 1003) */
    if ((opcode == WS_OP_TEXT) == msgpack)
        return 1003;
    if (opcode == WS_OP_TEXT && !ws_utf8_valid(p, n))
        return 1007;
    return sess_on_message(c, p, n);
}

static int handle_control(struct conn *c, const struct ws_frame *f)
{
    switch (f->opcode) {
    case WS_OP_PING:
        conn_send(c, WS_OP_PONG, f->payload, f->payload_len);
        return 0;
    case WS_OP_PONG:
        return 0;
    case WS_OP_CLOSE: {
        uint16_t code;
        int rc = ws_close_parse(f->payload, f->payload_len, &code);
        c->flags |= CONN_F_CLOSE_RECVD;
        if (c->flags & CONN_F_CLOSE_SENT) {
            destroy(c, "close handshake done");
            return 0;
        }
        if (rc != 0)
            return ws_err_close_code(rc);
        /* RFC 6455 §5.5.1: answer with a close frame, echoing the status code */
        if (c->sess)
            sess_free(c, "closed by device");
        c->state = CONN_CLOSING;
        move_to(c, &c->w->closing);
        c->flags |= CONN_F_FREE_AFTER_FLUSH;
        send_close_frame(c, code, NULL);
        return 0;
    }
    }
    return 1002;
}

/* Consume whole frames from p[0..n); returns the bytes consumed. Stops early when the connection
 * closes or a link call is in flight (back-pressure). */
static size_t process_frames(struct conn *c, uint8_t *p, size_t n)
{
    struct worker *w = c->w;
    const struct cfg *cfg = w->cfg;
    struct ws_limits lim = { cfg->max_frame, cfg->max_message, cfg->max_inflated };
    size_t off = 0;
    while (off < n && (c->state == CONN_OPEN || c->state == CONN_CLOSING) && c->calls == 0) {
        struct ws_frame f;
        size_t need;
        ssize_t r = ws_frame_parse(p + off, n - off, c->flags & CONN_F_DEFLATE, &lim, &f, &need);
        if (r == 0)
            break;
        if (r < 0) {
            log_peer("ws_error", "conn=%llu device=%s error=\"%s\"", (unsigned long long)c->id,
                     c->sess ? sess_device_id(c->sess) : "", ws_strerror((int)r));
            sess_set_close_reason(c, "protocol_error");
            conn_close(c, ws_err_close_code((int)r), ws_strerror((int)r));
            return n;
        }
        off += (size_t)r;
        w->stats.frames_in++;
        if (c->state == CONN_CLOSING) {
            /* after our close only the peer's close matters (RFC 6455 §5.5.1) */
            if (f.opcode == WS_OP_CLOSE)
                destroy(c, "close handshake done");
            continue;
        }
        int act = ws_msg_track(&c->msg, &f, &lim);
        int code = 0;
        switch (act) {
        case WS_ACT_CONTROL:
            code = handle_control(c, &f);
            break;
        case WS_ACT_MESSAGE:
            code = handle_message(c, f.opcode, f.rsv1, f.payload, f.payload_len);
            ws_msg_reset(&c->msg);
            break;
        case WS_ACT_START:
        case WS_ACT_CONT:
            if (buf_try_append(&c->frag, f.payload, f.payload_len, cfg->max_message) != 0)
                code = 1009;
            break;
        case WS_ACT_END:
            if (buf_try_append(&c->frag, f.payload, f.payload_len, cfg->max_message) != 0) {
                code = 1009;
                break;
            }
            code = handle_message(c, c->msg.opcode, c->msg.compressed, c->frag.p, c->frag.len);
            buf_free(&c->frag);
            ws_msg_reset(&c->msg);
            break;
        default:
            code = ws_err_close_code(act);
            break;
        }
        if (code) {
            log_peer("ws_error", "conn=%llu device=%s close=%d", (unsigned long long)c->id,
                     c->sess ? sess_device_id(c->sess) : "", code);
            sess_set_close_reason(c, code == 1011 ? "error" : "protocol_error");
            conn_close(c, (uint16_t)code, NULL);
            return n;
        }
    }
    return off;
}

static void refresh_idle(struct conn *c)
{
    if (c->state == CONN_OPEN)
        move_to(c, &c->w->open);
}

/* Process what is buffered in c->in (after a pause, or pipelined after the head). */
static void process_input(struct conn *c)
{
    if (c->in.len == 0)
        return;
    c->flags |= CONN_F_PROCESSING;
    size_t used = process_frames(c, c->in.p, c->in.len);
    c->flags &= ~CONN_F_PROCESSING;
    if (c->state == CONN_DEAD)
        return;
    buf_consume(&c->in, used);
    if (c->in.len == 0)
        buf_free(&c->in);
}

static void read_frames(struct conn *c)
{
    struct worker *w = c->w;
    size_t in_limit = w->cfg->max_frame + WS_MAX_HEADER + WORKER_RBUF_SIZE;
    for (int i = 0; i < MAX_READS_PER_EVENT; i++) {
        if (c->state == CONN_DEAD || c->calls > 0)
            return;
        uint8_t *dst;
        size_t cap;
        if (c->in.len == 0) {
            dst = w->rbuf;
            cap = WORKER_RBUF_SIZE;
        } else {
            if (buf_try_reserve(&c->in, 16384, in_limit) != 0) {
                conn_close(c, 1009, "frame too large");
                return;
            }
            dst = c->in.p + c->in.len;
            cap = c->in.cap - c->in.len;
        }
        int r = SSL_read(c->ssl, dst, cap > INT32_MAX ? INT32_MAX : (int)cap);
        switch (tls_classify(c->ssl, r)) {
        case TLS_IO_OK:
            break;
        case TLS_IO_WANT_READ:
            return;
        case TLS_IO_WANT_WRITE:
            c->flags |= CONN_F_READ_WANTS_WRITE;
            update_events(c);
            return;
        case TLS_IO_CLOSED:
            c->flags |= CONN_F_PEER_CLOSED;
            /* fall through */
        default:
            destroy(c, "connection lost");
            return;
        }
        w->stats.bytes_in += (uint64_t)r;
        refresh_idle(c);
        if (dst != w->rbuf) {
            c->in.len += (size_t)r;
            process_input(c);
            continue;
        }
        c->flags |= CONN_F_PROCESSING;
        size_t used = process_frames(c, dst, (size_t)r);
        c->flags &= ~CONN_F_PROCESSING;
        if (c->state == CONN_DEAD)
            return;
        /* only a partial frame (or what a pause left) outlives the shared read buffer */
        if (used < (size_t)r && buf_try_append(&c->in, dst + used, (size_t)r - used, in_limit) != 0) {
            conn_close(c, 1009, "frame too large");
            return;
        }
    }
    /* more may be buffered inside SSL or the socket; come back after others had a turn */
    event_active(&c->ev, EV_READ, 0);
}

void conn_call_begin(struct conn *c)
{
    c->calls++;
    update_events(c);
}

void conn_call_end(struct conn *c)
{
    c->calls--;
    if (c->state == CONN_DEAD || c->calls > 0 || (c->flags & CONN_F_PROCESSING))
        return;
    /* resume from the loop rather than from inside a completion callback */
    update_events(c);
    event_active(&c->ev, EV_READ, 0);
}

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct conn *c = arg;
    if (c->state == CONN_DEAD)
        return;
    if (what & EV_WRITE) {
        if (c->state == CONN_HANDSHAKE) {
            do_handshake(c);
            return;
        }
        if (c->flags & CONN_F_WANT_WRITE)
            flush(c);
        if (c->state == CONN_DEAD)
            return;
        if (c->flags & CONN_F_READ_WANTS_WRITE) {
            c->flags &= ~CONN_F_READ_WANTS_WRITE;
            what |= EV_READ;
        }
    }
    if (!(what & EV_READ))
        return;
    switch (c->state) {
    case CONN_HANDSHAKE:
        do_handshake(c);
        break;
    case CONN_UPGRADE:
        read_upgrade(c);
        break;
    case CONN_OPEN:
    case CONN_CLOSING:
        if (c->calls == 0) {
            process_input(c);
            if (c->state != CONN_DEAD)
                read_frames(c);
        }
        break;
    default:
        break;
    }
    if (c->state != CONN_DEAD)
        update_events(c);
}

/* ---- timeouts ---- */

static void expire_list(struct conn_list *l, uint64_t now, const char *why, bool close_ws, int what)
{
    while (l->head && l->head->deadline_ms <= now) {
        struct conn *c = l->head;
        c->w->stats.timeouts++;
        c->w->stats.timeouts_by[what]++;
        log_peer("timeout", "conn=%llu peer=%s device=%s what=\"%s\"", (unsigned long long)c->id, c->peer,
                 c->sess ? sess_device_id(c->sess) : "", why);
        /* both leave the list: conn_close moves an open connection to `closing` */
        if (close_ws) {
            sess_set_close_reason(c, "idle_timeout");
            conn_close(c, 1002, why); /* NervesHub closes idle sockets with 1002 (§1.7) */
        }
        else
            destroy(c, why);
    }
}

void conn_expire(struct worker *w, uint64_t now_ms)
{
    expire_list(&w->handshaking, now_ms, "handshake timeout", false, ST_TO_HANDSHAKE);
    expire_list(&w->upgrading, now_ms, "upgrade timeout", false, ST_TO_UPGRADE);
    expire_list(&w->open, now_ms, "idle timeout", true, ST_TO_IDLE);
    expire_list(&w->closing, now_ms, "close timeout", false, ST_TO_CLOSE);
}

void conn_close_all(struct worker *w, uint16_t code, const char *reason)
{
    /* connections that have no session yet have nothing to drain */
    while (w->handshaking.head)
        destroy(w->handshaking.head, reason);
    while (w->upgrading.head)
        destroy(w->upgrading.head, reason);
    while (w->open.head) {
        sess_set_close_reason(w->open.head, "shutdown");
        conn_close(w->open.head, code, reason);
    }
}
