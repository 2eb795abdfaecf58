/* The link seam: the only way the session layer reaches the platform (architecture.md §5).
 * Calls are asynchronous: each takes a completion callback that receives a reply borrowed until
 * the callback returns. An implementation may complete a call before the call returns (the
 * in-process default does), so callers must not touch state after issuing a call that they
 * would not touch from the callback. Every issued call completes exactly once, also on timeout
 * or shutdown, so a caller may hold a reference across it. */
#ifndef NHGW_LINK_H
#define NHGW_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct cfg;
struct event_base;

enum link_status {
    LINK_OK,
    LINK_REFUSED,     /* the platform said no (auth: 401; join: error reply) */
    LINK_UNAVAILABLE, /* the platform could not be reached or failed (auth: 503) */
};

enum link_effect_kind {
    LINK_EFF_PUSH,        /* event, payload: send to the device on the call's channel */
    LINK_EFF_REPLY,       /* status (in event), payload: reply to the message that caused the call */
    LINK_EFF_SUBSCRIBE,   /* topic: follow a shared topic on the channel's behalf */
    LINK_EFF_UNSUBSCRIBE, /* topic */
    LINK_EFF_SEND_SELF,   /* payload: opaque message, comes back as notify */
    LINK_EFF_SEND_AFTER,  /* key, payload, ms: one-shot timer filed under key */
    LINK_EFF_START_TIMER, /* key, payload, ms: repeating timer filed under key */
    LINK_EFF_CANCEL_TIMER,/* key */
    LINK_EFF_CLOSE,       /* code, event = reason */
    LINK_EFF_SCROLLBACK_APPEND, /* payload: the local shell's output, kept for later operators */
    LINK_EFF_SCROLLBACK_CLEAR,  /* drop the local shell's scrollback */
    LINK_EFF_SCROLLBACK_REPLAY, /* topic: NATS subject to publish the scrollback to */
};

struct link_effect {
    enum link_effect_kind kind;
    struct span topic;
    struct span event;
    struct span payload; /* msgpack for push/reply; opaque for send_self/send_after/timers */
    struct span key;
    uint32_t ms;
    uint16_t code;
};

struct link_reply {
    enum link_status status;
    struct span device_id;  /* auth: the device's id, used for logs and the registry */
    struct span session;    /* auth: socket-level info; join/message/notify: the channel's new
                               session; .p == NULL keeps the current one */
    struct span response;   /* join: reply response (msgpack); refused join: error response */
    struct span fw;         /* join: the device's firmware uuid, optional */
    struct span reason;     /* refused/unavailable: why (auth: the 401 reason header) */
    const struct link_effect *effects;
    size_t n_effects;
};

typedef void (*link_done_cb)(void *arg, const struct link_reply *reply);

/* What the gateway knows about a connecting device. Borrowed for the duration of the call. */
struct link_auth {
    bool has_cert;
    uint8_t fingerprint[20];      /* SHA-1 of the leaf DER, when has_cert */
    struct span cn;               /* subject CN, may be empty */
    struct span der;              /* the leaf certificate */
    const struct span *x_names;   /* x-* request headers, names lower-cased */
    const struct span *x_values;
    size_t n_x;
    struct span peer;             /* "ip:port" */
    uint64_t conn_ref;
};

/* A connected device as calls after auth name it. Borrowed for the duration of the call. */
struct link_dev {
    struct span device_id;
    uint64_t conn_ref;            /* unique per connection in this gateway (LINK.md §1) */
    struct span info;             /* the socket-level info auth returned */
};

/* Where a link delivers what arrives unasked: the worker's inbox (LINK.md §6) and the shared
 * topics it follows (§7). Messages are borrowed during the call. */
struct lp_inbox;
struct lp_out;
struct lp_topic_msg;
struct link_sink {
    /* returns an enum lp_inbox_status, sent back when the message asked for a reply; a sink that
     * has a richer answer (console_attach, LINK.md §9) encodes it into `reply` (empty on entry)
     * instead, and the link sends that */
    int (*inbox)(void *arg, const struct lp_inbox *m, struct lp_out *reply);
    void (*topic)(void *arg, struct span topic, const struct lp_topic_msg *m);
    void *arg;
};

struct link;

/* The fingerprint as the platform keys devices by it: 40 uppercase hex characters and a NUL. */
static inline void link_fingerprint_hex(const uint8_t fp[20], char out[41])
{
    static const char hex[] = "0123456789ABCDEF";
    for (int i = 0; i < 20; i++) {
        out[2 * i] = hex[fp[i] >> 4];
        out[2 * i + 1] = hex[fp[i] & 15];
    }
    out[40] = 0;
}

struct link_ops {
    const char *name;
    /* authenticate the device and record the connection (LINK.md auth + connect) */
    void (*auth)(struct link *l, const struct link_auth *a, link_done_cb cb, void *arg);
    /* fire and forget */
    void (*disconnect)(struct link *l, const struct link_dev *d, const char *reason);
    void (*join)(struct link *l, const struct link_dev *d, struct span topic, struct span payload,
                 link_done_cb cb, void *arg);
    void (*message)(struct link *l, const struct link_dev *d, struct span topic, struct span session,
                    struct span event, struct span payload, link_done_cb cb, void *arg);
    void (*notify)(struct link *l, const struct link_dev *d, struct span topic, struct span session,
                   struct span message, struct span from, link_done_cb cb, void *arg);
    /* last-seen refresh for a batch of devices; fire and forget */
    void (*heartbeat)(struct link *l, const struct link_dev *devs, size_t n);
    /* start / stop receiving a shared topic (NUL-terminated, already validated); 0 or -1 */
    int (*follow)(struct link *l, const char *topic);
    void (*unfollow)(struct link *l, const char *topic);
    /* tell another worker (maybe on another gateway) to close its connection of this device */
    void (*kick)(struct link *l, struct span gw, unsigned worker, struct span dev, uint64_t conn_ref);
    /* publish bytes on a NATS subject (the console's output, LINK.md §9); 0, or -1 when not
     * sent. NULL in a link without NATS. */
    int (*publish)(struct link *l, const char *subject, const void *p, size_t n);
    /* whether new calls can currently reach the platform */
    bool (*available)(const struct link *l);
    void (*free)(struct link *l);
};

struct link {
    const struct link_ops *ops;
    struct link_sink sink;
};

/* The in-process default policy: a device is accepted when its certificate chained to a
 * configured CA (the TLS layer checked that); shared secrets are refused; joins reply {} with no
 * effects; device events are dropped (the worker's counters count them). For standalone use and
 * measuring the gateway. */
struct link *link_local_new(void);

/* The NATS link (proto/LINK.md), one per worker. */
struct link *link_nats_new(struct event_base *base, const struct cfg *cfg, unsigned worker);

#endif
