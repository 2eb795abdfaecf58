/* The remote console (see console.h, proto/LINK.md §9). */
#include "console.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "link.h"
#include "log.h"
#include "lp.h"
#include "scrollback.h"
#include "worker.h"

#define CONSOLE_MAX_OPS 16
/* `up` data is published in pieces of at most this much, so that one device message (up to
 * --max-message) never makes a NATS message over LP_MAX_MESSAGE. */
#define CONSOLE_OUT_CHUNK (256u << 10)

/* An operator's attach lease: renewed by each console_attach, lapsed when not renewed in time. */
struct lease {
    uint64_t until_ms;
    uint8_t len;
    char op[LP_MAX_OP];
};

struct console {
    struct sb sb;
    struct lease *ops; /* CONSOLE_MAX_OPS entries while anyone is attached, else NULL */
    uint8_t n_ops;
    uint8_t version_len;
    char version[]; /* the join's console_version (may be empty) */
};

/* Encode buffers, reused: a worker is one thread. */
static struct lp_out payload_out, msg_out;

struct console *console_open(struct worker *w, struct span join_payload)
{
    struct lp_span v = {NULL, 0}, ver = {NULL, 0};
    if (lp_mp_map_get((struct lp_span){(const uint8_t *)join_payload.p, join_payload.len}, "console_version",
                      &v) == 1 &&
        lp_mp_read_str(v, &ver) == 0 && ver.n > LP_MAX_CONSOLE_VERSION)
        ver.n = 0; /* not a version anyone could use: reported as absent */
    struct console *k = calloc(1, sizeof(*k) + ver.n);
    if (!k)
        return NULL;
    sb_init(&k->sb, SB_MAX_LINES, (size_t)w->cfg->console_scrollback_bytes);
    if (ver.n)
        memcpy(k->version, ver.p, ver.n);
    k->version_len = (uint8_t)ver.n;
    w->stats.consoles++;
    return k;
}

/* Drops lapsed leases; returns how many operators are attached now. */
static unsigned live_ops(struct worker *w, struct console *k, uint64_t now)
{
    unsigned n = 0;
    for (unsigned i = 0; i < k->n_ops; i++)
        if (k->ops[i].until_ms > now)
            k->ops[n++] = k->ops[i];
    w->stats.console_ops -= k->n_ops - n;
    k->n_ops = (uint8_t)n;
    if (n == 0) {
        free(k->ops);
        k->ops = NULL;
    }
    return n;
}

static void publish(struct worker *w, const char *dev, struct span event, struct lp_span payload)
{
    if (!w->link->ops->publish)
        return;
    char subject[LP_MAX_ID + 64];
    snprintf(subject, sizeof(subject), "%s.console.%s.out", w->cfg->link_prefix, dev);
    lp_out_reset(&msg_out);
    struct lp_console_out m = {{(const uint8_t *)event.p, event.len}, payload};
    if (lp_encode_console_out(&msg_out, &m) != 0) {
        log_peer("console_output_dropped", "device=%s event=%.*s size=%zu", dev, (int)MIN(event.len, 64),
                 event.p, payload.n);
        return;
    }
    w->link->ops->publish(w->link, subject, msg_out.p, msg_out.n);
    w->stats.console_out_bytes += msg_out.n;
}

/* `up {data}` in pieces, each cut before a UTF-8 lead byte so every piece stays decodable. */
static void publish_up(struct worker *w, const char *dev, struct lp_span data, bool is_bin)
{
    size_t at = 0;
    do {
        size_t end = data.n;
        if (end - at > CONSOLE_OUT_CHUNK) {
            end = at + CONSOLE_OUT_CHUNK;
            for (int i = 0; i < 3 && end > at + 1 && (data.p[end] & 0xc0) == 0x80; i++)
                end--;
        }
        lp_out_reset(&payload_out);
        lp_mp_map(&payload_out, 1);
        lp_mp_cstr(&payload_out, "data");
        if (is_bin)
            lp_mp_bin(&payload_out, data.p + at, end - at);
        else
            lp_mp_str(&payload_out, data.p + at, end - at);
        if (!payload_out.failed)
            publish(w, dev, SPAN_LIT("up"), (struct lp_span){payload_out.p, payload_out.n});
        at = end;
    } while (at < data.n);
}

void console_device_event(struct worker *w, const char *dev, struct console *k, struct span event,
                          struct span payload)
{
    struct lp_span p = {(const uint8_t *)payload.p, payload.len};
    if (span_is(event, "up")) {
        struct lp_span v, data;
        bool has = lp_mp_map_get(p, "data", &v) == 1, is_bin = false;
        bool ok = has && lp_mp_read_str(v, &data) == 0;
        if (!ok && has && lp_mp_read_bin(v, &data) == 0)
            ok = is_bin = true;
        if (!ok) {
            /* NervesHub's channel crashes on this; here it is only dropped */
            log_peer("console_up_invalid", "device=%s", dev);
            return;
        }
        size_t had = sb_alloc_bytes(&k->sb);
        if (sb_append(&k->sb, data.p, data.n) != 0)
            log_peer("console_scrollback_nomem", "device=%s", dev);
        w->stats.console_sb_bytes += sb_alloc_bytes(&k->sb) - had; /* the ring never shrinks */
        if (k->n_ops && live_ops(w, k, worker_now_ms()))
            publish_up(w, dev, data, is_bin);
        return;
    }
    if (span_is(event, "file-data/start") || span_is(event, "file-data") ||
        span_is(event, "file-data/stop")) {
        if (k->n_ops && live_ops(w, k, worker_now_ms()))
            publish(w, dev, event, p);
        return;
    }
    log_peer("console_event_unknown", "device=%s event=%.*s", dev, (int)MIN(event.len, 64), event.p);
}

static struct lease *find_op(struct console *k, struct lp_span op)
{
    for (unsigned i = 0; i < k->n_ops; i++)
        if (k->ops[i].len == op.n && memcmp(k->ops[i].op, op.p, op.n) == 0)
            return &k->ops[i];
    return NULL;
}

static int attach(struct worker *w, const char *dev, struct console *k, const struct lp_inbox *m,
                  struct lp_out *reply)
{
    uint64_t now = worker_now_ms();
    live_ops(w, k, now);
    struct lease *l = find_op(k, m->op);
    struct lp_console_reply r = {0};
    if (!l) {
        if (!k->ops)
            k->ops = malloc(CONSOLE_MAX_OPS * sizeof(*k->ops));
        if (!k->ops || k->n_ops == CONSOLE_MAX_OPS) {
            r.st = LP_CST_FULL;
            lp_encode_console_reply(reply, &r);
            return LP_IST_OK;
        }
        l = &k->ops[k->n_ops++];
        w->stats.console_ops++;
        l->len = (uint8_t)m->op.n;
        memcpy(l->op, m->op.p, m->op.n);
        LOG(LOG_INFO, "console_attached", "device=%s op=%.*s operators=%u", dev, (int)m->op.n,
            (const char *)m->op.p, k->n_ops);
    }
    l->until_ms = now + (m->lease_ms ? m->lease_ms : LP_LEASE_DEFAULT_MS);
    r.st = LP_CST_OK;
    if (!m->no_scrollback) {
        size_t n;
        const uint8_t *p = sb_view(&k->sb, &n);
        r.has_scrollback = true;
        r.scrollback = (struct lp_span){p, n};
    }
    r.version = (struct lp_span){(const uint8_t *)k->version, k->version_len};
    if (lp_encode_console_reply(reply, &r) != 0) {
        struct lp_console_reply bare = {.st = LP_CST_OK};
        lp_out_reset(reply);
        lp_encode_console_reply(reply, &bare);
    }
    return LP_IST_OK;
}

int console_inbox(struct worker *w, const char *dev, struct console *k, const struct lp_inbox *m,
                  struct lp_out *reply)
{
    if (m->kind == LP_IN_CONSOLE_ATTACH)
        return attach(w, dev, k, m, reply);
    struct lease *l = find_op(k, m->op);
    if (l) {
        *l = k->ops[--k->n_ops];
        w->stats.console_ops--;
        LOG(LOG_INFO, "console_detached", "device=%s op=%.*s operators=%u", dev, (int)m->op.n,
            (const char *)m->op.p, k->n_ops);
        if (k->n_ops == 0) {
            free(k->ops);
            k->ops = NULL;
        }
    }
    return LP_IST_OK;
}

void console_close(struct worker *w, const char *dev, struct console *k, const char *reason,
                   const char *detail)
{
    if (!k)
        return;
    if (k->n_ops && live_ops(w, k, worker_now_ms())) {
        lp_out_reset(&payload_out);
        lp_mp_map(&payload_out, detail ? 2 : 1);
        lp_mp_cstr(&payload_out, "reason");
        lp_mp_cstr(&payload_out, reason);
        if (detail) {
            lp_mp_cstr(&payload_out, "detail");
            lp_mp_cstr(&payload_out, detail);
        }
        if (!payload_out.failed)
            publish(w, dev, SPAN_LIT("closed"), (struct lp_span){payload_out.p, payload_out.n});
        LOG(LOG_INFO, "console_closed", "device=%s reason=%s operators=%u", dev, reason, k->n_ops);
    }
    w->stats.consoles--;
    w->stats.console_ops -= k->n_ops;
    w->stats.console_sb_bytes -= sb_alloc_bytes(&k->sb);
    sb_free(&k->sb);
    free(k->ops);
    free(k);
}

void console_note_input(struct worker *w, const struct lp_inbox *m)
{
    if (!span_is((struct span){ (const char *)m->event.p, m->event.n }, "dn"))
        return;
    struct lp_span v, data;
    if (lp_mp_map_get(m->payload, "data", &v) == 1 &&
        (lp_mp_read_str(v, &data) == 0 || lp_mp_read_bin(v, &data) == 0))
        w->stats.console_in_bytes += data.n;
}
