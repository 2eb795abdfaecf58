/* Simulated devices on one libevent loop (see client.h). Each connection is a small state machine:
 * CONNECT → TLS → (UPGRADE → JOIN → EXT_JOIN → OPEN) or, TLS only, → TLS_IDLE; in the cycle
 * pattern it is closed as soon as the handshake (and the 101) is done. The SSL object is driven
 * directly on the socket; input and output buffers exist only while bytes are pending, so an idle
 * simulated device costs its SSL object, its socket and this struct. */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pool.h>
#include <openssl/ssl.h>

#include "backoff.h"
#include "buf.h"
#include "devpool.h"
#include "phx.h"
#include "ws.h"
#include "wsc.h"

const char *const cl_counter_names[C_COUNT] = {
    "started", "tcp_connected", "tls_done", "tls_full", "tls_resumed", "tls13", "upgraded", "pmd",
    "device_joined", "extensions_joined", "ready", "active", "pending", "heartbeats_sent",
    "heartbeats_ok", "heartbeat_sessions", "messages_in", "messages_out", "pushes", "inflated", "cycles",
    "reconnects", "recovered", "updates", "console_joined", "console_dn", "console_up",
};

const char *const cl_error_names[E_COUNT] = {
    "out_of_fds", "bind", "connect", "connect_timeout", "tls", "tls_eof", "tls_timeout", "http_status",
    "http_bad", "upgrade_timeout", "pmd", "ws_protocol", "inflate", "frame_type", "phx_decode",
    "bad_reply", "strict", "join_refused", "join_timeout", "channel_closed", "heartbeat_timeout",
    "server_close", "eof", "io",
};

#define MAX_MESSAGE (16u << 20) /* largest server message accepted (nhgw's max-output is 4 MiB) */
#define READ_CHUNK 16384

/* Fixed refs of the set-up messages (link numbers them per connection from "1"). */
#define REF_DEVICE_JOIN 1
#define REF_IFACE 2
#define REF_EXT_JOIN 3
#define REF_CON_JOIN 4
#define REF_FIRST_FREE 5

enum st {
    S_CONNECT,
    S_TLS,
    S_DRAIN,    /* TLS 1.3 cycle: our close_notify is sent; the server's ticket, close_notify or FIN proves
                 * it read our Finished (its handshake work is done) */
    S_TLS_IDLE, /* TLS-only hold */
    S_UPGRADE,
    S_JOIN,
    S_EXT_JOIN,
    S_CON_JOIN,
    S_OPEN,
};

#define F_MSGPACK 0x01    /* vsn 3.0.0 */
#define F_OFFER_PMD 0x02  /* permessage-deflate offered */
#define F_PMD 0x04        /* ... and negotiated */
#define F_READY 0x08      /* counted in C_ACTIVE (else in C_PENDING) */
#define F_HB_OK 0x10      /* a heartbeat was answered */
#define F_TICKET 0x20     /* a session ticket arrived */
#define F_FRAG_PMD 0x40   /* the fragmented message in progress is compressed */
#define F_WANT_WRITE 0x80 /* SSL needs the socket writable */
#define F_SHUT 0x100      /* close_notify sent */
#define F_HB_MEASURED 0x200 /* the unanswered heartbeat was sent during the measured phase */
#define F_STORM 0x400     /* a storm reconnect: a failure schedules the device's next attempt */

struct dev {
    CRYPTO_BUFFER *cert; /* NULL until first used */
    EVP_PKEY *key;
    SSL_SESSION *sess;   /* last session, for --resume */
    uint64_t due_us;     /* storm: when the pending reconnect was due (its intended start) */
    uint8_t attempt;     /* storm: failed attempts since the last successful connect */
    bool back;           /* storm: joined again since the drop */
    bool scheduled;      /* storm: its first reconnect after the drop is scheduled */
    uint8_t fan_round;   /* fanout: the last round whose update this device received */
    uint8_t fan_n;       /* ... and how many copies of it (saturating) */
};

struct wk;

struct conn {
    struct wk *w;
    struct conn *prev, *next; /* live connections */
    SSL *ssl;
    struct event ev;          /* socket readiness */
    struct event tmr;         /* set-up deadline, then heartbeats */
    uint64_t t_start;         /* intended start (µs) */
    uint64_t t_mark;          /* start of the current phase (µs) */
    uint64_t hb_due;          /* intended time of the next heartbeat */
    uint64_t hb_out;          /* intended time of the unanswered heartbeat, 0 if none */
    struct buf in;            /* unparsed input, only while a message is incomplete */
    struct buf out;           /* unwritten output, only while the socket is full */
    struct buf frag;          /* fragmented message in progress */
    int fd;
    uint32_t dev;             /* device number (pool index minus device_base) */
    uint32_t slot;            /* closed-loop slot, UINT32_MAX otherwise */
    uint32_t ref;             /* last Phoenix ref sent */
    uint32_t hb_ref;          /* ref of the unanswered heartbeat */
    uint8_t state;            /* enum st */
    uint16_t flags;           /* F_* */
    uint8_t ev_mask;          /* EV_READ/EV_WRITE registered */
    uint8_t frag_op;
    char key[WSC_KEY_LEN + 1];/* Sec-WebSocket-Key, during the upgrade */
};

struct wk {
    const struct cl_cfg *cfg;
    struct cl_slot *slot;
    volatile int *phase;
    int index;
    struct event_base *base;
    SSL_CTX *ctx;
    struct pool *pool;
    struct ws_zctx *z;
    struct dev *devs;         /* by local device index (dev / workers) */
    uint32_t n_devs;
    struct conn *live;        /* list head */
    uint64_t t0;              /* ramp start (µs) */
    uint64_t started;         /* connections started by this worker */
    uint64_t n_target;        /* CL_HOLD: sessions this worker opens */
    double rate;              /* this worker's share of cfg->rate */
    uint32_t max_pending;
    uint32_t n_slots;         /* closed loop */
    uint32_t *slot_iter;
    uint64_t src_next;
    uint64_t rng;
    uint64_t bucket_us;       /* timeline bucket width */
    bool stopping;
    bool dropped;             /* storm: the drop happened; failures reconnect from now on */
    uint32_t *due;            /* storm: devices whose reconnect is due, a ring of n_devs entries */
    uint32_t due_head, due_len;
    struct event *ramp_ev, *phase_ev;
    uint8_t rbuf[READ_CHUNK];
    struct buf scratch;       /* encoded Phoenix message */
    struct buf frame;         /* outgoing frame */
    struct buf defl;          /* deflated payload */
    struct buf infl;          /* inflated payload */
    struct buf expect;        /* expected reply bytes (strict) */
    struct buf join_msg[2];   /* encoded device join per format (0 JSON, 1 msgpack) */
    struct buf iface_msg[2];
    struct buf ext_msg[2];
    struct buf con_msg[2];
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t rnd(struct wk *w)
{
    /* xorshift64*: masks, keys and jitter need speed, not secrecy */
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    return w->rng * 0x2545F4914F6CDD1DULL;
}

static void ctr_add(struct wk *w, enum cl_counter c, int64_t d)
{
    w->slot->c[c] += (uint64_t)d;
}

static void tl_note(struct wk *w, uint64_t t, enum tl_kind k)
{
    tl_add(&w->slot->tl, tl_index(t, w->cfg->epoch_us, w->bucket_us), k);
}

static struct timeval tv_us(uint64_t us)
{
    return (struct timeval){ (time_t)(us / 1000000u), (suseconds_t)(us % 1000000u) };
}

static void conn_free(struct conn *c);
static void conn_fail(struct conn *c, enum cl_error e, const char *detail);
static void start_slot(struct wk *w, uint32_t slot);

static void note_error(struct wk *w, enum cl_error e, const char *detail)
{
    if (w->slot->e[e]++ == 0 && detail)
        snprintf(w->slot->sample[e], CL_SAMPLE_LEN, "%s", detail);
}

static void on_io(evutil_socket_t fd, short what, void *arg);

static void set_interest(struct conn *c, uint8_t mask)
{
    if (c->ev_mask == mask)
        return;
    event_del(&c->ev);
    event_assign(&c->ev, c->w->base, c->fd, (short)(mask | EV_PERSIST), on_io, c);
    if (mask)
        event_add(&c->ev, NULL);
    c->ev_mask = mask;
}

/* ---- device credentials ---- */

static struct dev *dev_get(struct wk *w, uint32_t dev, char *err, size_t cap)
{
    uint32_t local = dev / (uint32_t)w->cfg->workers;
    if (local >= w->n_devs) {
        snprintf(err, cap, "device %u outside this worker's set", dev);
        return NULL;
    }
    struct dev *d = &w->devs[local];
    if (d->cert)
        return d;
    const uint8_t *cert, *key;
    size_t cert_len, key_len;
    if (pool_get(w->pool, w->cfg->device_base + dev, &cert, &cert_len, &key, &key_len) != 0) {
        snprintf(err, cap, "device %u not in the pool", w->cfg->device_base + dev);
        return NULL;
    }
    CBS cbs;
    CBS_init(&cbs, key, key_len);
    d->key = EVP_parse_private_key(&cbs);
    d->cert = CRYPTO_BUFFER_new(cert, cert_len, NULL);
    if (!d->key || !d->cert) {
        EVP_PKEY_free(d->key);
        CRYPTO_BUFFER_free(d->cert);
        d->key = NULL;
        d->cert = NULL;
        snprintf(err, cap, "device %u: bad pool record", dev);
        return NULL;
    }
    return d;
}

static void dev_release(struct wk *w, uint32_t dev)
{
    /* a held session never reconnects: its key and certificate are not needed any more */
    struct dev *d = &w->devs[dev / (uint32_t)w->cfg->workers];
    CRYPTO_BUFFER_free(d->cert);
    EVP_PKEY_free(d->key);
    d->cert = NULL;
    d->key = NULL;
}

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct conn *c = SSL_get_app_data(ssl);
    if (!c)
        return 0;
    c->flags |= F_TICKET;
    if (!c->w->cfg->resume)
        return 0;
    struct dev *d = &c->w->devs[c->dev / (uint32_t)c->w->cfg->workers];
    SSL_SESSION_free(d->sess);
    d->sess = sess; /* we keep the reference */
    return 1;
}

/* ---- output ---- */

static int flush_out(struct conn *c)
{
    while (c->out.len) {
        int n = SSL_write(c->ssl, c->out.p, (int)MIN(c->out.len, (size_t)INT32_MAX));
        if (n > 0) {
            buf_consume(&c->out, (size_t)n);
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            set_interest(c, EV_READ | EV_WRITE);
            return 0;
        }
        conn_fail(c, c->state <= S_TLS ? E_TLS : E_IO, "write failed");
        return -1;
    }
    buf_free(&c->out);
    if (!(c->flags & F_WANT_WRITE))
        set_interest(c, EV_READ);
    return 0;
}

/* Queue bytes for the TLS connection. Returns 0, or -1 when the connection failed (and is freed). */
static int send_raw(struct conn *c, const uint8_t *p, size_t n)
{
    if (c->out.len == 0) {
        int k = SSL_write(c->ssl, p, (int)n);
        if (k > 0 && (size_t)k == n)
            return 0;
        if (k > 0) {
            p += k;
            n -= (size_t)k;
        } else {
            int e = SSL_get_error(c->ssl, k);
            if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) {
                conn_fail(c, E_IO, "write failed");
                return -1;
            }
        }
        if (buf_try_append(&c->out, p, n, MAX_MESSAGE) != 0) {
            conn_fail(c, E_IO, "output buffer full");
            return -1;
        }
        set_interest(c, EV_READ | EV_WRITE);
        return 0;
    }
    if (buf_try_append(&c->out, p, n, MAX_MESSAGE) != 0) {
        conn_fail(c, E_IO, "output buffer full");
        return -1;
    }
    return 0;
}

/* Send one WebSocket message: deflated when negotiated (Mint compresses every message), masked. */
static int ws_send(struct conn *c, uint8_t opcode, const uint8_t *p, size_t n)
{
    struct wk *w = c->w;
    bool rsv1 = false;
    if ((c->flags & F_PMD) && opcode < 0x8) {
        w->defl.len = 0;
        if (ws_deflate_msg(w->z, 15, p, n, &w->defl, MAX_MESSAGE) != 0) {
            conn_fail(c, E_IO, "deflate failed");
            return -1;
        }
        p = w->defl.p;
        n = w->defl.len;
        rsv1 = true;
    }
    uint8_t mask[4];
    uint64_t r = rnd(w);
    memcpy(mask, &r, 4);
    uint8_t hdr[WSC_MAX_HEADER];
    size_t hl = wsc_frame_header(hdr, opcode, true, rsv1, n, mask);
    w->frame.len = 0;
    if (buf_try_append(&w->frame, hdr, hl, MAX_MESSAGE + 16) != 0 ||
        buf_try_append(&w->frame, p, n, MAX_MESSAGE + 16) != 0) {
        conn_fail(c, E_IO, "frame too large");
        return -1;
    }
    wsc_mask(w->frame.p + hl, n, mask);
    if (opcode < 0x8)
        ctr_add(w, C_MSGS_OUT, 1);
    return send_raw(c, w->frame.p, w->frame.len);
}

static int fmt_of(const struct conn *c)
{
    return (c->flags & F_MSGPACK) ? 1 : 0;
}

static uint8_t data_op(const struct conn *c)
{
    return (c->flags & F_MSGPACK) ? 0x2 : 0x1;
}

static int send_heartbeat(struct conn *c)
{
    struct wk *w = c->w;
    char ref[16];
    int rl = snprintf(ref, sizeof(ref), "%u", ++c->ref);
    struct span rs = { ref, (size_t)rl };
    w->scratch.len = 0;
    if (phx_encode(fmt_of(c) ? PHX_FMT_MSGPACK : PHX_FMT_JSON, NULL, &rs, SPAN_LIT("phoenix"),
                   SPAN_LIT("heartbeat"), PHX_MP_EMPTY_MAP, &w->scratch, 4096) != 0) {
        conn_fail(c, E_IO, "encode heartbeat");
        return -1;
    }
    c->hb_ref = c->ref;
    ctr_add(w, C_HB_SENT, 1);
    return ws_send(c, data_op(c), w->scratch.p, w->scratch.len);
}

/* ---- life cycle ---- */

static void on_timer(evutil_socket_t fd, short what, void *arg);

static void conn_unlink(struct conn *c)
{
    struct wk *w = c->w;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->live = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

static void conn_free(struct conn *c)
{
    struct wk *w = c->w;
    if (c->flags & F_READY)
        ctr_add(w, C_ACTIVE, -1);
    else
        ctr_add(w, C_PENDING, -1);
    event_del(&c->ev);
    event_del(&c->tmr);
    if (c->ssl) {
        SSL_set_app_data(c->ssl, NULL);
        SSL_free(c->ssl);
    }
    if (w->cfg->linger0) {
        struct linger l = { 1, 0 };
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    }
    close(c->fd);
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->frag);
    conn_unlink(c);
    uint32_t slot = c->slot;
    free(c);
    if (slot != UINT32_MAX && !w->stopping)
        start_slot(w, slot);
}

/* Closed-loop restart after a failure: a short pause so a refused port does not spin. */
static void on_slot_retry(evutil_socket_t fd, short what, void *arg);

static void storm_schedule(struct wk *w, uint32_t dev);

static void conn_fail(struct conn *c, enum cl_error e, const char *detail)
{
    struct wk *w = c->w;
    note_error(w, e, detail);
    tl_note(w, now_us(), TL_FAILED);
    uint32_t slot = c->slot, dev = c->dev;
    bool storm = c->flags & F_STORM;
    c->slot = UINT32_MAX;
    conn_free(c);
    if (storm && !w->stopping) {
        /* link backs off after every kind of failure, escalating until a connect succeeds */
        struct dev *d = &w->devs[dev / (uint32_t)w->cfg->workers];
        if (d->attempt < UINT8_MAX)
            d->attempt++;
        storm_schedule(w, dev);
    }
    if (slot != UINT32_MAX && !w->stopping) {
        struct timeval tv = { 0, 10000 };
        event_base_once(w->base, -1, EV_TIMEOUT, on_slot_retry, (void *)(uintptr_t)slot, &tv);
    }
}

/* A cycle is complete: count it, close politely (close_notify, FIN) and start the next. */
static void cycle_done(struct conn *c)
{
    struct wk *w = c->w;
    uint64_t t = now_us();
    ctr_add(w, C_CYCLES, 1);
    hist_record(&w->slot->h_cycle, t - c->t_start);
    if (!w->cfg->linger0 && !(c->flags & F_SHUT))
        SSL_shutdown(c->ssl);
    conn_free(c);
}

static void become_ready(struct conn *c)
{
    struct wk *w = c->w;
    uint64_t t = now_us();
    c->state = c->state == S_TLS ? S_TLS_IDLE : S_OPEN;
    c->flags |= F_READY;
    ctr_add(w, C_PENDING, -1);
    ctr_add(w, C_ACTIVE, 1);
    ctr_add(w, C_READY, 1);
    hist_record(&w->slot->h_setup, t - c->t_start);
    tl_note(w, t, TL_READY);
    if (c->flags & F_STORM) {
        struct dev *d = &w->devs[c->dev / (uint32_t)w->cfg->workers];
        d->attempt = 0;
        if (!d->back) {
            d->back = true;
            hist_record(&w->slot->h_recover, t - w->slot->drop_us);
            ctr_add(w, C_RECOVERED, 1);
            if (w->slot->c[C_RECOVERED] == w->n_target && w->slot->state == CL_ST_RAMPED)
                w->slot->state = CL_ST_RECOVERED;
        }
    }
    event_del(&c->tmr);
    if (c->state == S_OPEN && w->cfg->hb_interval_ms) {
        /* link's first heartbeat comes one interval after connecting; spread them uniformly */
        uint64_t iv = (uint64_t)w->cfg->hb_interval_ms * 1000u;
        uint64_t first = 1 + rnd(w) % iv;
        c->hb_due = t + first;
        struct timeval tv = tv_us(first);
        event_add(&c->tmr, &tv);
    }
}

/* Returns 0, or -1 when the connection failed (and is freed). */
static int send_device_join(struct conn *c)
{
    struct wk *w = c->w;
    struct buf *m = &w->join_msg[fmt_of(c)];
    c->state = S_JOIN;
    c->t_mark = now_us();
    c->ref = REF_FIRST_FREE - 1;
    return ws_send(c, data_op(c), m->p, m->len);
}

static void tls_done(struct conn *c)
{
    struct wk *w = c->w;
    uint64_t t = now_us();
    ctr_add(w, C_TLS, 1);
    ctr_add(w, SSL_session_reused(c->ssl) ? C_TLS_RESUMED : C_TLS_FULL, 1);
    bool tls13 = SSL_version(c->ssl) == TLS1_3_VERSION;
    if (tls13)
        ctr_add(w, C_TLS13, 1);
    hist_record(&w->slot->h_tls, t - c->t_start);
    tl_note(w, t, TL_TLS);
    SSL_set_shed_handshake_config(c->ssl, 1);
    if (w->cfg->pattern == CL_HOLD && !w->cfg->resume)
        dev_release(w, c->dev);
    c->t_mark = t;
    if (w->cfg->mode == CL_MODE_TLS) {
        if (w->cfg->pattern == CL_HOLD) {
            become_ready(c);
            set_interest(c, EV_READ);
        } else if (tls13 && !(c->flags & F_TICKET)) {
            /* TLS 1.3: our handshake ends before the server has read our Finished. Its records are
             * processed in order, so its ticket, or its answer to our close_notify, proves it did. */
            c->state = S_DRAIN;
            c->flags |= F_SHUT;
            if (!w->cfg->linger0)
                SSL_shutdown(c->ssl);
            set_interest(c, EV_READ);
        } else {
            cycle_done(c);
        }
        return;
    }
    uint8_t r[16];
    uint64_t a = rnd(w), b = rnd(w);
    memcpy(r, &a, 8);
    memcpy(r + 8, &b, 8);
    wsc_key(r, c->key);
    int vsn = fmt_of(c) ? 3 : 2;
    w->scratch.len = 0;
    if (wsc_request(&w->scratch, w->cfg->path, vsn == 3 ? "3.0.0" : "2.0.0", w->cfg->host, c->key,
                    c->flags & F_OFFER_PMD) != 0) {
        conn_fail(c, E_HTTP_BAD, "request too long");
        return;
    }
    c->state = S_UPGRADE;
    set_interest(c, EV_READ);
    send_raw(c, w->scratch.p, w->scratch.len);
}

static void tls_step(struct conn *c)
{
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        tls_done(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        set_interest(c, EV_READ);
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        set_interest(c, EV_WRITE);
        return;
    }
    char detail[CL_SAMPLE_LEN];
    uint32_t err = ERR_peek_error();
    if (err) {
        const char *why = ERR_reason_error_string(err);
        snprintf(detail, sizeof(detail), "%s", why ? why : "unknown TLS error");
        ERR_clear_error();
        conn_fail(c, E_TLS, detail);
    } else if (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL) {
        snprintf(detail, sizeof(detail), "%s", errno ? strerror(errno) : "closed by peer");
        conn_fail(c, E_TLS_EOF, detail);
    } else {
        snprintf(detail, sizeof(detail), "SSL error %d", e);
        conn_fail(c, E_TLS, detail);
    }
}

static void tls_begin(struct conn *c)
{
    struct wk *w = c->w;
    char err[CL_SAMPLE_LEN];
    struct dev *d = dev_get(w, c->dev, err, sizeof(err));
    if (!d) {
        conn_fail(c, E_TLS, err);
        return;
    }
    c->ssl = SSL_new(w->ctx);
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd) || !SSL_set_chain_and_key(c->ssl, &d->cert, 1, d->key, NULL)) {
        conn_fail(c, E_TLS, "SSL_new failed");
        return;
    }
    SSL_set_app_data(c->ssl, c);
    SSL_set_connect_state(c->ssl);
    if (w->cfg->sni[0])
        SSL_set_tlsext_host_name(c->ssl, w->cfg->sni);
    if (w->cfg->resume && d->sess)
        SSL_set_session(c->ssl, d->sess);
    c->state = S_TLS;
    tls_step(c);
}

/* Start a connection for device dev (flags: F_STORM or 0). Returns false when no descriptor or
 * address was available. */
static bool conn_start(struct wk *w, uint32_t dev, uint32_t slot, uint64_t t_intended, uint64_t seq, uint16_t flags)
{
    const struct cl_cfg *cfg = w->cfg;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        note_error(w, E_FD, strerror(errno));
        return false;
    }
    /* 127.0.0.0/8 source addresses, 64 connections each, so no address runs out of ports and
     * TIME_WAIT from earlier cycles never collides */
    uint64_t k = (cfg->src_base + w->src_next++ * (uint64_t)cfg->workers + (uint64_t)w->index) / 64;
    uint32_t ip = (127u << 24) | ((uint32_t)(1 + (k / 62500) % 250) << 16) | ((uint32_t)(1 + (k / 250) % 250) << 8) |
                  (uint32_t)(1 + k % 250);
    struct sockaddr_in src = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(ip) };
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
        note_error(w, E_BIND, strerror(errno));
        close(fd);
        return false;
    }
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return false;
    }
    c->w = w;
    c->fd = fd;
    c->dev = dev;
    c->slot = slot;
    c->t_start = t_intended;
    c->t_mark = now_us();
    c->flags = flags;
    tl_note(w, c->t_mark, TL_STARTED);
    int vsn = cfg->vsn ? cfg->vsn : (seq % 2 ? 3 : 2);
    if (vsn == 3)
        c->flags |= F_MSGPACK;
    if (cfg->deflate > 0 || (cfg->deflate < 0 && (seq / 2) % 2 == 0))
        c->flags |= F_OFFER_PMD;
    c->next = w->live;
    if (w->live)
        w->live->prev = c;
    w->live = c;
    ctr_add(w, C_STARTED, 1);
    ctr_add(w, C_PENDING, 1);
    event_assign(&c->ev, w->base, fd, EV_WRITE | EV_PERSIST, on_io, c);
    c->ev_mask = EV_WRITE;
    evtimer_assign(&c->tmr, w->base, on_timer, c);
    struct timeval tv = tv_us((uint64_t)cfg->timeout_ms * 1000u);
    event_add(&c->tmr, &tv);
    if (connect(fd, (struct sockaddr *)&cfg->target, sizeof(cfg->target)) != 0 && errno != EINPROGRESS) {
        char d[CL_SAMPLE_LEN];
        snprintf(d, sizeof(d), "%s", strerror(errno));
        c->slot = UINT32_MAX; /* the retry below restarts the slot */
        conn_fail(c, E_CONNECT, d);
        if (slot != UINT32_MAX && !w->stopping) {
            struct timeval rt = { 0, 10000 };
            event_base_once(w->base, -1, EV_TIMEOUT, on_slot_retry, (void *)(uintptr_t)slot, &rt);
        }
        return true;
    }
    event_add(&c->ev, NULL);
    return true;
}

/* ---- input ---- */

static bool ref_is(const struct phx_msg *m, uint32_t want)
{
    char b[16];
    int n = snprintf(b, sizeof(b), "%u", want);
    return m->has_ref && m->ref.len == (size_t)n && memcmp(m->ref.p, b, (size_t)n) == 0;
}

/* The exact reply NervesHub sends for an ok reply with response {} (device-protocol.md §7, §8):
 * JSON [join_ref,"ref",topic,"phx_reply",{"response":{},"status":"ok"}], msgpack the same array
 * with response before status. */
static void expected_ok_reply(struct wk *w, int fmt, const char *join_ref, const char *ref, const char *topic)
{
    struct buf *b = &w->expect;
    b->len = 0;
    if (fmt == 0) {
        char tmp[256];
        int n;
        if (join_ref)
            n = snprintf(tmp, sizeof(tmp), "[\"%s\",\"%s\",\"%s\",\"phx_reply\",{\"response\":{},\"status\":\"ok\"}]",
                         join_ref, ref, topic);
        else
            n = snprintf(tmp, sizeof(tmp), "[null,\"%s\",\"%s\",\"phx_reply\",{\"response\":{},\"status\":\"ok\"}]",
                         ref, topic);
        (void)!buf_try_append(b, tmp, (size_t)n, 4096);
        return;
    }
    uint8_t tmp[256];
    size_t o = 0;
    tmp[o++] = 0x95;
    const char *strs[3] = { join_ref, ref, topic };
    for (int i = 0; i < 3; i++) {
        if (!strs[i]) {
            tmp[o++] = 0xc0;
            continue;
        }
        size_t n = strlen(strs[i]);
        tmp[o++] = (uint8_t)(0xa0 | n);
        memcpy(tmp + o, strs[i], n);
        o += n;
    }
    static const uint8_t tail[] = { 0xa9, 'p', 'h', 'x', '_', 'r', 'e', 'p', 'l', 'y', 0x82, 0xa8, 'r', 'e', 's',
                                    'p', 'o', 'n', 's', 'e', 0x80, 0xa6, 's', 't', 'a', 't', 'u', 's', 0xa2, 'o',
                                    'k' };
    memcpy(tmp + o, tail, sizeof(tail));
    o += sizeof(tail);
    (void)!buf_try_append(b, tmp, o, 4096);
}

static bool strict_ok(struct conn *c, const uint8_t *p, size_t n, const char *join_ref, const char *ref,
                      const char *topic)
{
    struct wk *w = c->w;
    if (!w->cfg->strict)
        return true;
    expected_ok_reply(w, fmt_of(c), join_ref, ref, topic);
    if (w->expect.len == n && memcmp(w->expect.p, p, n) == 0)
        return true;
    char d[CL_SAMPLE_LEN];
    snprintf(d, sizeof(d), "%s reply to ref %s differs (%zu bytes, want %zu)", topic, ref, n, w->expect.len);
    conn_fail(c, E_STRICT, d);
    return false;
}

/* status "ok" and, when want_empty, response {} exactly. */
static bool reply_ok(const struct phx_msg *m, bool want_empty, struct span *response)
{
    struct span status, resp;
    if (!phx_mp_map_get(m->payload, "status", &status) || !phx_mp_map_get(m->payload, "response", &resp))
        return false;
    *response = resp;
    struct span s;
    if (!phx_mp_get_str(status, &s) || !span_is(s, "ok"))
        return false;
    return !want_empty || (resp.len == 1 && (uint8_t)resp.p[0] == 0x80);
}

static void describe_reply(const struct phx_msg *m, char *out, size_t cap)
{
    struct span status, s;
    if (phx_mp_map_get(m->payload, "status", &status) && phx_mp_get_str(status, &s))
        snprintf(out, cap, "topic=%.*s ref=%.*s status=%.*s", (int)m->topic.len, m->topic.p,
                 (int)(m->has_ref ? m->ref.len : 4), m->has_ref ? m->ref.p : "null", (int)s.len, s.p);
    else
        snprintf(out, cap, "topic=%.*s ref=%.*s (no status)", (int)m->topic.len, m->topic.p,
                 (int)(m->has_ref ? m->ref.len : 4), m->has_ref ? m->ref.p : "null");
}

/* A join's reply: on `topic` with our join_ref, status ok (and an empty response when strict).
 * Otherwise the connection has failed, with the reply described. */
static bool join_reply_ok(struct conn *c, const struct phx_msg *m, const char *topic, const char *join_ref,
                          bool want_empty, struct span *resp)
{
    char d[CL_SAMPLE_LEN];
    if (!span_is(m->topic, topic) || !m->has_join_ref || !span_is(m->join_ref, join_ref)) {
        describe_reply(m, d, sizeof(d));
        conn_fail(c, E_BAD_REPLY, d);
        return false;
    }
    if (!reply_ok(m, want_empty, resp)) {
        describe_reply(m, d, sizeof(d));
        conn_fail(c, E_JOIN_REFUSED, d);
        return false;
    }
    return true;
}

/* A `device` push `update`. In a fanout run it counts for the parent's current round when its
 * payload (msgpack, whatever the socket's format) names that round's firmware uuid: the first copy
 * per device is timed from the trigger, further copies are duplicates; anything else is stale. */
static void on_update(struct conn *c, const struct phx_msg *m, uint64_t t)
{
    struct wk *w = c->w;
    ctr_add(w, C_UPDATES, 1);
    const volatile struct cl_fan *f = w->cfg->fan;
    if (!f)
        return;
    uint32_t round = __atomic_load_n(&f->round, __ATOMIC_ACQUIRE);
    char uuid[sizeof(f->uuid)];
    memcpy(uuid, (const char *)f->uuid, sizeof(uuid));
    uuid[sizeof(uuid) - 1] = 0;
    size_t ul = strlen(uuid);
    if (round == 0 || round > CL_FAN_MAX || ul == 0 || !memmem(m->payload.p, m->payload.len, uuid, ul)) {
        w->slot->fan_stale++;
        return;
    }
    struct dev *d = &w->devs[c->dev / (uint32_t)w->cfg->workers];
    uint32_t i = round - 1;
    if (d->fan_round != round) {
        d->fan_round = (uint8_t)round;
        d->fan_n = 1;
        uint64_t t0 = f->t0_us;
        hist_record(&w->slot->h_fan[i], t > t0 ? t - t0 : 0);
        w->slot->fan_first[i]++;
        return;
    }
    w->slot->fan_dup[i]++;
    if (d->fan_n == 1)
        w->slot->fan_dup_devs[i]++;
    if (d->fan_n < UINT8_MAX)
        d->fan_n++;
}

/* The last join is answered: join `console` (cfg->console) or the session is set up. Returns 0, or
 * -1 when the connection failed (and is freed). */
static int after_joins(struct conn *c, uint64_t t)
{
    struct wk *w = c->w;
    if (!w->cfg->console) {
        become_ready(c);
        return 0;
    }
    struct buf *b = &w->con_msg[fmt_of(c)];
    c->state = S_CON_JOIN;
    c->t_mark = t;
    return ws_send(c, data_op(c), b->p, b->len);
}

/* A push on `console`: `dn {data}` is echoed at once as `up {data}` on the console join, as a
 * shell echoes keystrokes (the console bench times operator -> device -> operator with it); other
 * events (window_size, file-data...) are taken in silence. Returns 0, or -1 when the connection is
 * gone. */
static int on_console_push(struct conn *c, const struct phx_msg *m)
{
    struct wk *w = c->w;
    char d[CL_SAMPLE_LEN];
    if (w->cfg->strict && (!m->has_join_ref || !span_is(m->join_ref, "4") || m->has_ref)) {
        snprintf(d, sizeof(d), "console %.*s push: join_ref %.*s, ref %.*s (want 4, null)", (int)MIN(m->event.len, 20),
                 m->event.p, (int)(m->has_join_ref ? m->join_ref.len : 4), m->has_join_ref ? m->join_ref.p : "null",
                 (int)(m->has_ref ? m->ref.len : 4), m->has_ref ? m->ref.p : "null");
        conn_fail(c, E_STRICT, d);
        return -1;
    }
    if (!span_is(m->event, "dn"))
        return 0;
    ctr_add(w, C_CON_DN, 1);
    struct span data;
    if (c->state != S_OPEN || !phx_mp_map_get(m->payload, "data", &data)) {
        snprintf(d, sizeof(d), "console dn %s", c->state != S_OPEN ? "before the console join" : "without data");
        conn_fail(c, E_BAD_REPLY, d);
        return -1;
    }
    /* up {data: <the dn's data value as it came, str or bin>} */
    struct buf *p = &w->expect; /* free here: strict compares only replies */
    p->len = 0;
    char ref[16];
    int rl = snprintf(ref, sizeof(ref), "%u", ++c->ref);
    struct span jr = SPAN_LIT("4"), rs = { ref, (size_t)rl };
    w->scratch.len = 0;
    if (phx_mp_put_map(1, p, MAX_MESSAGE) != 0 || phx_mp_put_str(SPAN_LIT("data"), p, MAX_MESSAGE) != 0 ||
        buf_try_append(p, data.p, data.len, MAX_MESSAGE) != 0 ||
        phx_encode(fmt_of(c) ? PHX_FMT_MSGPACK : PHX_FMT_JSON, &jr, &rs, SPAN_LIT("console"), SPAN_LIT("up"),
                   (struct span){ (const char *)p->p, p->len }, &w->scratch, MAX_MESSAGE) != 0) {
        conn_fail(c, E_IO, "cannot encode the console echo");
        return -1;
    }
    ctr_add(w, C_CON_UP, 1);
    return ws_send(c, data_op(c), w->scratch.p, w->scratch.len);
}

/* A whole Phoenix message. Returns 0, or -1 when the connection is gone. */
static int on_message(struct conn *c, uint8_t op, bool compressed, const uint8_t *p, size_t n)
{
    struct wk *w = c->w;
    if (compressed) {
        w->infl.len = 0;
        if (ws_inflate_msg(w->z, p, n, &w->infl, MAX_MESSAGE) != 0) {
            conn_fail(c, E_INFLATE, "corrupt compressed message");
            return -1;
        }
        ctr_add(w, C_INFLATED, 1);
        p = w->infl.p;
        n = w->infl.len;
    }
    if (op != data_op(c)) {
        conn_fail(c, E_FRAME_TYPE, op == 0x1 ? "text frame on a msgpack socket" : "binary frame on a JSON socket");
        return -1;
    }
    if (op == 0x1 && w->cfg->strict && !ws_utf8_valid(p, n)) {
        conn_fail(c, E_WS_PROTOCOL, "invalid UTF-8 in a text message");
        return -1;
    }
    struct phx_msg m;
    int rc = phx_decode(fmt_of(c) ? PHX_FMT_MSGPACK : PHX_FMT_JSON, p, n, &m);
    if (rc != 0) {
        conn_fail(c, E_PHX_DECODE, phx_strerror(rc));
        return -1;
    }
    ctr_add(w, C_MSGS_IN, 1);
    uint64_t t = now_us();
    char d[CL_SAMPLE_LEN];
    struct span resp;
    int ret = 0;
    if (!span_is(m.event, "phx_reply")) {
        ctr_add(w, C_PUSHES, 1);
        if (span_is(m.event, "update") && span_is(m.topic, "device"))
            on_update(c, &m, t);
        else if (span_is(m.topic, "console") && !span_is(m.event, "phx_close") && !span_is(m.event, "phx_error"))
            ret = on_console_push(c, &m);
        else if (span_is(m.event, "phx_close") || span_is(m.event, "phx_error")) {
            snprintf(d, sizeof(d), "%.*s on %.*s", (int)m.event.len, m.event.p, (int)m.topic.len, m.topic.p);
            note_error(w, E_CHANNEL_CLOSED, d);
        }
    } else if (c->hb_ref && ref_is(&m, c->hb_ref)) {
        char ref[16];
        snprintf(ref, sizeof(ref), "%u", c->hb_ref);
        if (!span_is(m.topic, "phoenix") || m.has_join_ref || !reply_ok(&m, true, &resp)) {
            describe_reply(&m, d, sizeof(d));
            conn_fail(c, E_BAD_REPLY, d);
            ret = -1;
        } else if (!strict_ok(c, p, n, NULL, ref, "phoenix")) {
            ret = -1;
        } else {
            hist_record(&w->slot->h_hb, t - c->hb_out);
            if (c->flags & F_HB_MEASURED)
                hist_record(&w->slot->h_hb_hold, t - c->hb_out);
            ctr_add(w, C_HB_OK, 1);
            if (!(c->flags & F_HB_OK)) {
                c->flags |= F_HB_OK;
                ctr_add(w, C_HB_SESSIONS, 1);
            }
            c->hb_ref = 0;
            c->hb_out = 0;
        }
    } else if (c->state == S_JOIN && ref_is(&m, REF_DEVICE_JOIN)) {
        if (!join_reply_ok(c, &m, "device", "1", w->cfg->strict, &resp)) {
            ret = -1;
        } else if (!strict_ok(c, p, n, "1", "1", "device")) {
            ret = -1;
        } else {
            hist_record(&w->slot->h_join, t - c->t_mark);
            ctr_add(w, C_JOINED, 1);
            /* link reports its interface right after the join, then joins extensions once asked
             * (extensions:get); the local link never asks, so join at once */
            if (w->cfg->report_iface) {
                struct buf *b = &w->iface_msg[fmt_of(c)];
                if (ws_send(c, data_op(c), b->p, b->len) != 0)
                    ret = -1;
            }
            if (ret == 0 && w->cfg->extensions) {
                struct buf *b = &w->ext_msg[fmt_of(c)];
                c->state = S_EXT_JOIN;
                c->t_mark = t;
                if (ws_send(c, data_op(c), b->p, b->len) != 0)
                    ret = -1;
            } else if (ret == 0 && after_joins(c, t) != 0) {
                ret = -1;
            }
        }
    } else if (c->state == S_EXT_JOIN && ref_is(&m, REF_EXT_JOIN)) {
        /* NervesHub answers with the list of extensions to attach; the local link with {} */
        if (!join_reply_ok(c, &m, "extensions", "3", false, &resp)) {
            ret = -1;
        } else if (w->cfg->strict && resp.len > 0 && ((uint8_t)resp.p[0] & 0xf0) != 0x80 &&
                   ((uint8_t)resp.p[0] & 0xf0) != 0x90 && (uint8_t)resp.p[0] != 0xdc && (uint8_t)resp.p[0] != 0xde) {
            conn_fail(c, E_STRICT, "extensions join response is neither a map nor an array");
            ret = -1;
        } else {
            hist_record(&w->slot->h_ext_join, t - c->t_mark);
            ctr_add(w, C_EXT_JOINED, 1);
            if (after_joins(c, t) != 0)
                ret = -1;
        }
    } else if (c->state == S_CON_JOIN && ref_is(&m, REF_CON_JOIN)) {
        /* NervesHub answers the console join with ok {} (device-protocol.md §3.4), as nhgw does */
        if (!join_reply_ok(c, &m, "console", "4", w->cfg->strict, &resp)) {
            ret = -1;
        } else if (!strict_ok(c, p, n, "4", "4", "console")) {
            ret = -1;
        } else {
            hist_record(&w->slot->h_con_join, t - c->t_mark);
            ctr_add(w, C_CON_JOINED, 1);
            become_ready(c);
        }
    } else {
        describe_reply(&m, d, sizeof(d));
        conn_fail(c, E_BAD_REPLY, d);
        ret = -1;
    }
    phx_msg_free(&m);
    return ret;
}

/* A close frame from the server: count its code, echo it best effort (RFC 6455 §5.5.1) and drop
 * the connection (a device would reconnect; here it is an error). */
static void on_close_frame(struct conn *c, const uint8_t *p, size_t n)
{
    struct wk *w = c->w;
    uint16_t code = n >= 2 ? (uint16_t)(p[0] << 8 | p[1]) : 1005;
    w->slot->close_codes[code >= 1000 && code <= 1015 ? code - 1000 : 16]++;
    char d[CL_SAMPLE_LEN];
    snprintf(d, sizeof(d), "close %u %.*s", code, (int)(n > 2 ? MIN(n - 2, (size_t)80) : 0),
             n > 2 ? (const char *)p + 2 : "");
    uint8_t mask[4] = { 0, 0, 0, 0 }, fr[WSC_MAX_HEADER + 2];
    size_t hl = wsc_frame_header(fr, 0x8, true, false, n >= 2 ? 2 : 0, mask);
    if (n >= 2) {
        fr[hl++] = (uint8_t)(code >> 8);
        fr[hl++] = (uint8_t)code;
    }
    if (c->out.len == 0)
        (void)SSL_write(c->ssl, fr, (int)hl);
    ERR_clear_error();
    conn_fail(c, E_SERVER_CLOSE, d);
}

/* Parse frames from p[0..n). Returns the bytes consumed, or -1 when the connection is gone. */
static ssize_t on_frames(struct conn *c, const uint8_t *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        struct wsc_frame f;
        ssize_t k = wsc_parse_frame(p + off, n - off, c->flags & F_PMD, MAX_MESSAGE, &f);
        if (k == 0)
            break;
        if (k < 0) {
            conn_fail(c, E_WS_PROTOCOL, wsc_strerror((int)k));
            return -1;
        }
        off += (size_t)k;
        if (f.opcode >= 0x8) {
            if (f.opcode == 0x8) {
                on_close_frame(c, f.payload, f.len);
                return -1;
            }
            if (f.opcode == 0x9 && ws_send(c, 0xa, f.payload, f.len) != 0)
                return -1;
            continue;
        }
        if (f.opcode != 0x0) {
            if (c->frag_op) {
                conn_fail(c, E_WS_PROTOCOL, "new message inside a fragmented one");
                return -1;
            }
            if (f.fin) {
                if (on_message(c, f.opcode, f.rsv1, f.payload, f.len) != 0)
                    return -1;
                continue;
            }
            c->frag_op = f.opcode;
            if (f.rsv1)
                c->flags |= F_FRAG_PMD;
        } else if (!c->frag_op) {
            conn_fail(c, E_WS_PROTOCOL, "continuation without a message");
            return -1;
        }
        if (buf_try_append(&c->frag, f.payload, f.len, MAX_MESSAGE) != 0) {
            conn_fail(c, E_WS_PROTOCOL, "message too big");
            return -1;
        }
        if (f.fin) {
            /* move the message out first: on_message may free the connection */
            struct buf msg = c->frag;
            uint8_t op = c->frag_op;
            bool z = c->flags & F_FRAG_PMD;
            c->frag = BUF_INIT;
            c->frag_op = 0;
            c->flags &= (uint16_t)~F_FRAG_PMD;
            int r = on_message(c, op, z, msg.p, msg.len);
            buf_free(&msg);
            if (r != 0)
                return -1;
        }
    }
    return (ssize_t)off;
}

static ssize_t on_upgrade(struct conn *c, const uint8_t *p, size_t n)
{
    struct wk *w = c->w;
    struct wsc_response r;
    ssize_t k = wsc_parse_response(p, n, &r);
    if (k == 0)
        return 0;
    char d[CL_SAMPLE_LEN];
    if (k < 0) {
        conn_fail(c, E_HTTP_BAD, wsc_strerror((int)k));
        return -1;
    }
    if (r.status != 101) {
        snprintf(d, sizeof(d), "HTTP %d %.*s", r.status, (int)MIN(r.reason.len, (size_t)80), r.reason.p);
        conn_fail(c, E_HTTP_STATUS, d);
        return -1;
    }
    char want[WSC_ACCEPT_LEN + 1];
    wsc_accept(c->key, want);
    if (!r.upgrade_ok || !r.connection_ok || r.accept.len != WSC_ACCEPT_LEN ||
        memcmp(r.accept.p, want, WSC_ACCEPT_LEN) != 0) {
        conn_fail(c, E_HTTP_BAD, "Upgrade, Connection or Sec-WebSocket-Accept wrong");
        return -1;
    }
    bool offered = c->flags & F_OFFER_PMD;
    if (r.pmd_bad || (r.pmd && !offered)) {
        conn_fail(c, E_PMD, "unrequested extension or parameter");
        return -1;
    }
    if (r.pmd) {
        /* one shared zlib stream per worker only works without context takeover in both directions */
        if (!r.server_no_context || !r.client_no_context) {
            conn_fail(c, E_PMD, "context takeover not disabled");
            return -1;
        }
        c->flags |= F_PMD;
        ctr_add(w, C_PMD, 1);
    } else if (offered && w->cfg->strict) {
        conn_fail(c, E_PMD, "permessage-deflate declined");
        return -1;
    }
    uint64_t t = now_us();
    hist_record(&w->slot->h_upgrade, t - c->t_mark);
    ctr_add(w, C_UPGRADED, 1);
    if (w->cfg->pattern == CL_CYCLE) {
        cycle_done(c);
        return -1;
    }
    if (send_device_join(c) != 0)
        return -1;
    return k;
}

/* Process input p[0..n). Returns the bytes consumed or -1 when the connection is gone. */
static ssize_t process(struct conn *c, const uint8_t *p, size_t n)
{
    size_t off = 0;
    if (c->state == S_UPGRADE) {
        ssize_t k = on_upgrade(c, p, n);
        if (k <= 0)
            return k;
        off = (size_t)k;
        /* state may have moved on, continue with frames */
    }
    if (c->state == S_TLS_IDLE || c->state == S_DRAIN) {
        return (ssize_t)n; /* a TLS-only client ignores application data */
    }
    if (off == n)
        return (ssize_t)off;
    ssize_t k = on_frames(c, p + off, n - off);
    if (k < 0)
        return -1;
    return (ssize_t)off + k;
}

/* Feed newly read bytes. Returns 0, or -1 when the connection is gone. */
static int feed(struct conn *c, const uint8_t *p, size_t n)
{
    if (c->in.len == 0) {
        ssize_t k = process(c, p, n);
        if (k < 0)
            return -1;
        if ((size_t)k < n && buf_try_append(&c->in, p + k, n - (size_t)k, MAX_MESSAGE + 16) != 0) {
            conn_fail(c, E_WS_PROTOCOL, "message too big");
            return -1;
        }
        return 0;
    }
    if (buf_try_append(&c->in, p, n, MAX_MESSAGE + 16) != 0) {
        conn_fail(c, E_WS_PROTOCOL, "message too big");
        return -1;
    }
    /* process() may free c (and c->in with it): work on a detached buffer */
    struct buf in = c->in;
    c->in = BUF_INIT;
    ssize_t k = process(c, in.p, in.len);
    if (k < 0) {
        buf_free(&in);
        return -1;
    }
    buf_consume(&in, (size_t)k);
    if (in.len == 0)
        buf_free(&in);
    c->in = in;
    return 0;
}

static void read_in(struct conn *c)
{
    struct wk *w = c->w;
    c->flags &= (uint16_t)~F_WANT_WRITE;
    for (;;) {
        int n = SSL_read(c->ssl, w->rbuf, sizeof(w->rbuf));
        if (n > 0) {
            if (feed(c, w->rbuf, (size_t)n) != 0)
                return;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
            break;
        if (e == SSL_ERROR_WANT_WRITE) {
            c->flags |= F_WANT_WRITE;
            set_interest(c, EV_READ | EV_WRITE);
            return;
        }
        if (c->state == S_DRAIN && (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL)) {
            ERR_clear_error();
            cycle_done(c);
            return;
        }
        enum cl_error kind = c->state == S_UPGRADE ? E_HTTP_BAD : (e == SSL_ERROR_ZERO_RETURN ? E_EOF : E_IO);
        char d[CL_SAMPLE_LEN];
        uint32_t err = ERR_peek_error();
        if (err)
            snprintf(d, sizeof(d), "%s", ERR_reason_error_string(err) ? ERR_reason_error_string(err) : "TLS error");
        else if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && n == 0))
            snprintf(d, sizeof(d), "closed by the server in state %d", c->state);
        else
            snprintf(d, sizeof(d), "%s", strerror(errno));
        if (e == SSL_ERROR_SYSCALL && n == 0 && !err)
            kind = c->state == S_UPGRADE ? E_HTTP_BAD : E_EOF;
        ERR_clear_error();
        conn_fail(c, kind, d);
        return;
    }
    if (c->state == S_DRAIN && (c->flags & F_TICKET))
        cycle_done(c);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    if (c->state == S_CONNECT) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err) {
            conn_fail(c, E_CONNECT, strerror(err));
            return;
        }
        uint64_t t = now_us();
        hist_record(&c->w->slot->h_connect, t - c->t_mark);
        ctr_add(c->w, C_TCP, 1);
        c->t_mark = t;
        tls_begin(c);
        return;
    }
    if (c->state == S_TLS) {
        tls_step(c);
        return;
    }
    if ((what & EV_WRITE) && c->out.len) {
        if (flush_out(c) != 0)
            return;
    } else if ((what & EV_WRITE) && !(c->flags & F_WANT_WRITE)) {
        set_interest(c, EV_READ);
    }
    if ((what & EV_READ) || (c->flags & F_WANT_WRITE))
        read_in(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    (void)what;
    struct wk *w = c->w;
    if (c->state == S_OPEN) {
        uint64_t iv = (uint64_t)w->cfg->hb_interval_ms * 1000u;
        if (c->hb_out) {
            /* link (Slipstream) closes and reconnects when the previous heartbeat is unanswered */
            conn_fail(c, E_HB_TIMEOUT, "heartbeat unanswered for one interval");
            return;
        }
        uint64_t t = now_us();
        /* libevent may fire a little early (its cached clock): then the send time is the intent */
        c->hb_out = MIN(c->hb_due, t);
        if (*w->phase == CL_PHASE_MEASURE)
            c->flags |= F_HB_MEASURED;
        else
            c->flags &= (uint16_t)~F_HB_MEASURED;
        c->hb_due += iv;
        struct timeval tv = tv_us(c->hb_due > t ? c->hb_due - t : 1);
        event_add(&c->tmr, &tv);
        send_heartbeat(c);
        return;
    }
    static const enum cl_error by_state[] = {
        [S_CONNECT] = E_CONNECT_TIMEOUT, [S_TLS] = E_TLS_TIMEOUT, [S_DRAIN] = E_TLS_TIMEOUT,
        [S_TLS_IDLE] = E_TLS_TIMEOUT, [S_UPGRADE] = E_UPGRADE_TIMEOUT, [S_JOIN] = E_JOIN_TIMEOUT,
        [S_EXT_JOIN] = E_JOIN_TIMEOUT, [S_CON_JOIN] = E_JOIN_TIMEOUT, [S_OPEN] = E_IO,
    };
    char d[CL_SAMPLE_LEN];
    snprintf(d, sizeof(d), "no progress for %u ms", w->cfg->timeout_ms);
    conn_fail(c, by_state[c->state], d);
}

/* ---- ramp and slots ---- */

/* Device number for the k-th connection of this worker: devices are dealt round-robin to workers,
 * so worker w owns w, w + W, w + 2W, ... */
static uint32_t dev_for(struct wk *w, uint64_t k)
{
    uint32_t W = (uint32_t)w->cfg->workers;
    return (uint32_t)((uint64_t)w->index + (k % w->n_devs) * W);
}

static void start_slot(struct wk *w, uint32_t slot)
{
    uint64_t j = w->slot_iter[slot]++;
    uint64_t k = (uint64_t)slot + j * w->n_slots;
    uint64_t t = now_us();
    if (!conn_start(w, dev_for(w, k), slot, t, w->started++, 0)) {
        struct timeval tv = { 0, 10000 };
        event_base_once(w->base, -1, EV_TIMEOUT, on_slot_retry, (void *)(uintptr_t)slot, &tv);
    }
}

static struct wk *the_worker; /* one per process: lets event_base_once callbacks find it */

static void on_slot_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    if (!the_worker->stopping)
        start_slot(the_worker, (uint32_t)(uintptr_t)arg);
}

/* ---- storm: drop everything, reconnect every device with link's backoff ---- */

static void due_push(struct wk *w, uint32_t dev)
{
    /* each device is in at most one place (live, timer or this ring), so n_devs entries suffice */
    w->due[(w->due_head + w->due_len++) % w->n_devs] = dev;
}

static void on_reconnect_due(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    if (!the_worker->stopping)
        due_push(the_worker, (uint32_t)(uintptr_t)arg);
}

/* Schedule device dev's next attempt after its backoff (d->attempt failures so far). */
static void storm_schedule(struct wk *w, uint32_t dev)
{
    struct dev *d = &w->devs[dev / (uint32_t)w->cfg->workers];
    uint64_t delay;
    if (w->cfg->backoff == CL_BACKOFF_LINK)
        delay = bo_link_delay_us(d->attempt, w->cfg->backoff_unit_ms, rnd(w));
    else
        delay = d->attempt ? 100000 : 0;
    d->due_us = now_us() + delay;
    if (delay == 0) {
        due_push(w, dev);
        return;
    }
    struct timeval tv = tv_us(delay);
    if (event_base_once(w->base, -1, EV_TIMEOUT, on_reconnect_due, (void *)(uintptr_t)dev, &tv) != 0) {
        note_error(w, E_FD, "cannot schedule a reconnect");
        due_push(w, dev); /* better early than never */
    }
}

/* Close every connection at once (close_notify + FIN, or RST with linger0) and schedule each
 * device's reconnect as link would after losing its connection, counted from its own close (closing
 * thousands of connections takes this loop a while on a busy machine). */
static void storm_drop(struct wk *w)
{
    w->dropped = true;
    w->slot->drop_us = now_us();
    for (uint64_t k = 0; k < w->n_target; k++) {
        struct dev *d = &w->devs[dev_for(w, k) / (uint32_t)w->cfg->workers];
        d->attempt = 0;
        d->back = false;
        d->scheduled = false;
    }
    while (w->live) {
        struct conn *c = w->live;
        uint32_t dev = c->dev;
        if (!w->cfg->linger0 && c->ssl && !SSL_in_init(c->ssl))
            SSL_shutdown(c->ssl);
        ERR_clear_error();
        c->slot = UINT32_MAX;
        conn_free(c);
        struct dev *d = &w->devs[dev / (uint32_t)w->cfg->workers];
        if (!d->scheduled) {
            d->scheduled = true;
            storm_schedule(w, dev);
        }
    }
    for (uint64_t k = 0; k < w->n_target; k++) {
        uint32_t dev = dev_for(w, k);
        struct dev *d = &w->devs[dev / (uint32_t)w->cfg->workers];
        if (!d->scheduled) { /* its session had failed before the drop */
            d->scheduled = true;
            storm_schedule(w, dev);
        }
    }
    w->slot->drop_end_us = now_us();
    if (w->n_target == 0 && w->slot->state == CL_ST_RAMPED)
        w->slot->state = CL_ST_RECOVERED;
    event_add(w->ramp_ev, &(struct timeval){ 0, 1000 });
}

/* Start the reconnects that are due, a bounded number per tick so established sessions are served. */
static void storm_tick(struct wk *w)
{
    int budget = 256;
    while (w->due_len && budget-- > 0) {
        uint32_t dev = w->due[w->due_head];
        w->due_head = (w->due_head + 1) % w->n_devs;
        w->due_len--;
        struct dev *d = &w->devs[dev / (uint32_t)w->cfg->workers];
        ctr_add(w, C_RECONNECTS, 1);
        /* libevent times from its cached clock, so a timer may fire a little before due_us */
        uint64_t t = now_us();
        if (!conn_start(w, dev, UINT32_MAX, MIN(d->due_us, t), w->started++, F_STORM)) {
            tl_note(w, now_us(), TL_FAILED);
            if (d->attempt < UINT8_MAX)
                d->attempt++;
            storm_schedule(w, dev);
        }
    }
}

static void on_ramp(evutil_socket_t fd, short what, void *arg)
{
    struct wk *w = arg;
    (void)fd;
    (void)what;
    if (w->stopping)
        return;
    if (w->dropped) {
        storm_tick(w);
        return;
    }
    uint64_t t = now_us();
    bool hold = w->cfg->pattern == CL_HOLD;
    uint64_t due = w->rate > 0 ? (uint64_t)((double)(t - w->t0) * w->rate / 1e6) + 1 : UINT64_MAX;
    if (hold && due > w->n_target)
        due = w->n_target;
    int budget = 256; /* per tick, so the loop keeps serving established connections */
    while (w->started < due && w->slot->c[C_PENDING] < w->max_pending && budget-- > 0) {
        uint64_t intended = w->rate > 0 ? w->t0 + (uint64_t)((double)w->started * 1e6 / w->rate) : t;
        if (!conn_start(w, dev_for(w, w->started), UINT32_MAX, intended, w->started, 0))
            break;
        w->started++;
    }
    if (hold && w->started >= w->n_target && w->slot->c[C_PENDING] == 0 && w->slot->state == CL_ST_RUNNING) {
        w->slot->state = CL_ST_RAMPED;
        event_del(w->ramp_ev);
    }
}

static void on_phase(evutil_socket_t fd, short what, void *arg)
{
    struct wk *w = arg;
    (void)fd;
    (void)what;
    if (*w->phase == CL_PHASE_STOP) {
        w->stopping = true;
        event_base_loopbreak(w->base);
    } else if (*w->phase == CL_PHASE_DROP && w->cfg->storm && !w->dropped) {
        storm_drop(w);
    }
}

/* ---- set-up ---- */

static int encode_json(struct wk *w, const char *json, struct buf out[2])
{
    struct phx_msg m;
    if (phx_decode(PHX_FMT_JSON, (const uint8_t *)json, strlen(json), &m) != 0)
        return -1;
    int rc = 0;
    for (int f = 0; f < 2 && rc == 0; f++)
        rc = phx_encode(f ? PHX_FMT_MSGPACK : PHX_FMT_JSON, m.has_join_ref ? &m.join_ref : NULL,
                        m.has_ref ? &m.ref : NULL, m.topic, m.event, m.payload, &out[f], 65536);
    phx_msg_free(&m);
    (void)w;
    return rc;
}

/* The join payload link sends (device-protocol.md §3.3.1, §8). */
static const char DEVICE_JOIN[] =
    "[\"1\",\"1\",\"device\",\"phx_join\",{\"nerves_fw_uuid\":\"" CL_DEVICE_FW_UUID "\","
    "\"nerves_fw_product\":\"my_product\",\"nerves_fw_version\":\"" CL_DEVICE_FW_VERSION "\",\"nerves_fw_architecture\":\"arm\","
    "\"nerves_fw_platform\":\"rpi4\",\"nerves_fw_author\":\"ACME\",\"nerves_fw_description\":\"\","
    "\"nerves_fw_vcs_identifier\":\"\",\"nerves_fw_misc\":\"\",\"fwup_version\":\"1.10.2\","
    "\"device_api_version\":\"2.3.0\",\"console_version\":\"2.0.0\",\"currently_downloading_uuid\":null,"
    "\"meta\":{\"firmware_auto_revert_detected\":false,\"firmware_validated\":true},"
    "\"fwup_public_keys\":\"on_connect\",\"archive_public_keys\":\"on_connect\"}]";
static const char IFACE[] = "[\"1\",\"2\",\"device\",\"report_network_interface\",{\"interface\":\"eth0\"}]";
static const char EXT_JOIN[] =
    "[\"3\",\"3\",\"extensions\",\"phx_join\",{\"geo\":\"0.0.1\",\"health\":\"0.0.1\",\"network_identity\":\"0.0.1\"}]";
/* link with remote_iex: true (device-protocol.md §3.4) */
static const char CON_JOIN[] =
    "[\"4\",\"4\",\"console\",\"phx_join\",{\"console_version\":\"2.0.0\",\"device_api_version\":\"2.3.0\"}]";

static int setup_tls(struct wk *w)
{
    const struct cl_cfg *cfg = w->cfg;
    w->ctx = SSL_CTX_new(TLS_method());
    if (!w->ctx)
        return -1;
    SSL_CTX_set_min_proto_version(w->ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(w->ctx, (uint16_t)cfg->tls_max);
    SSL_CTX_set_mode(w->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(w->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(w->ctx, on_new_session);
    if (cfg->resume_id)
        SSL_CTX_set_options(w->ctx, SSL_OP_NO_TICKET); /* the server then issues a session ID */
    if (cfg->groups[0] && !SSL_CTX_set1_curves_list(w->ctx, cfg->groups)) {
        fprintf(stderr, "nhbench: bad --groups %s\n", cfg->groups);
        return -1;
    }
    if (cfg->server_ca[0]) {
        if (!SSL_CTX_load_verify_locations(w->ctx, cfg->server_ca, NULL)) {
            fprintf(stderr, "nhbench: cannot load --server-ca %s\n", cfg->server_ca);
            return -1;
        }
        SSL_CTX_set_verify(w->ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(w->ctx, SSL_VERIFY_NONE, NULL);
    }
    return 0;
}

void cl_slot_init(struct cl_slot *s)
{
    memset(s, 0, sizeof(*s));
    hist_init(&s->h_connect);
    hist_init(&s->h_tls);
    hist_init(&s->h_upgrade);
    hist_init(&s->h_join);
    hist_init(&s->h_ext_join);
    hist_init(&s->h_con_join);
    for (int i = 0; i < CL_FAN_MAX; i++)
        hist_init(&s->h_fan[i]);
    hist_init(&s->h_setup);
    hist_init(&s->h_hb);
    hist_init(&s->h_hb_hold);
    hist_init(&s->h_cycle);
    hist_init(&s->h_recover);
}

static void share(uint64_t total, int W, int i, uint64_t *mine)
{
    *mine = total / (uint64_t)W + ((uint64_t)i < total % (uint64_t)W ? 1 : 0);
}

int cl_worker_run(const struct cl_cfg *cfg, int index, struct cl_slot *slot, volatile int *phase)
{
    static struct wk wk;
    struct wk *w = &wk;
    the_worker = w;
    w->cfg = cfg;
    w->slot = slot;
    w->phase = phase;
    w->index = index;
    if (getrandom(&w->rng, sizeof(w->rng), 0) != sizeof(w->rng) || w->rng == 0)
        w->rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
    char err[256];
    w->pool = pool_open(cfg->pool_path, err, sizeof(err));
    if (!w->pool) {
        fprintf(stderr, "nhbench worker %d: %s\n", index, err);
        return 1;
    }
    uint64_t n_devs;
    share(cfg->devices, cfg->workers, index, &n_devs);
    w->n_devs = (uint32_t)n_devs;
    if (w->n_devs == 0 || cfg->device_base + cfg->devices > pool_count(w->pool)) {
        fprintf(stderr, "nhbench worker %d: pool holds %u identities, need %u\n", index, pool_count(w->pool),
                cfg->device_base + cfg->devices);
        return 1;
    }
    w->devs = calloc(w->n_devs, sizeof(*w->devs));
    w->due = cfg->storm ? calloc(w->n_devs, sizeof(*w->due)) : NULL;
    w->bucket_us = (uint64_t)(cfg->bucket_ms ? cfg->bucket_ms : 100) * 1000u;
    struct event_config *ec = event_config_new();
    event_config_avoid_method(ec, "select");
    event_config_avoid_method(ec, "poll");
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    w->z = ws_zctx_new(9); /* Mint deflates at :best_compression */
    if (!w->devs || (cfg->storm && !w->due) || !w->base || !w->z || setup_tls(w) != 0) {
        fprintf(stderr, "nhbench worker %d: initialisation failed\n", index);
        return 1;
    }
    if (encode_json(w, DEVICE_JOIN, w->join_msg) != 0 || encode_json(w, IFACE, w->iface_msg) != 0 ||
        encode_json(w, EXT_JOIN, w->ext_msg) != 0 || encode_json(w, CON_JOIN, w->con_msg) != 0) {
        fprintf(stderr, "nhbench worker %d: cannot encode the join messages\n", index);
        return 1;
    }
    w->rate = cfg->rate > 0 ? cfg->rate / cfg->workers : 0;
    w->max_pending = cfg->max_pending / (uint32_t)cfg->workers + 1;
    share(cfg->sessions, cfg->workers, index, &w->n_target);
    w->t0 = now_us();
    slot->state = CL_ST_RUNNING;

    w->phase_ev = event_new(w->base, -1, EV_PERSIST, on_phase, w);
    struct timeval ptv = { 0, 50000 };
    event_add(w->phase_ev, &ptv);
    if (cfg->pattern == CL_CYCLE && cfg->concurrency > 0) {
        uint64_t n;
        share(cfg->concurrency, cfg->workers, index, &n);
        w->n_slots = (uint32_t)n;
        w->slot_iter = calloc(n ? n : 1, sizeof(*w->slot_iter));
        for (uint32_t s = 0; s < w->n_slots; s++)
            start_slot(w, s);
    } else {
        w->ramp_ev = event_new(w->base, -1, EV_PERSIST, on_ramp, w);
        struct timeval rtv = { 0, 1000 };
        event_add(w->ramp_ev, &rtv);
        on_ramp(-1, 0, w);
    }
    event_base_dispatch(w->base);

    w->stopping = true;
    while (w->live) {
        w->live->slot = UINT32_MAX;
        conn_free(w->live);
    }
    slot->state = CL_ST_DONE;
    return 0;
}
