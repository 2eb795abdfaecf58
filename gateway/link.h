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
    LINK_UNAVAILABLE, /* the platform could not be reached (auth: 503) */
};

enum link_effect_kind {
    LINK_EFF_PUSH,        /* topic, event, payload: send to the device */
    LINK_EFF_REPLY,       /* status (in event), payload: reply to the message that caused the call */
    LINK_EFF_SUBSCRIBE,   /* topic: follow a shared topic on the device's behalf */
    LINK_EFF_UNSUBSCRIBE, /* topic */
    LINK_EFF_SEND_SELF,   /* payload: opaque message, comes back as notify */
    LINK_EFF_SEND_AFTER,  /* payload, ms */
    LINK_EFF_START_TIMER, /* key, payload, ms: a named timer (restarts an existing one) */
    LINK_EFF_CANCEL_TIMER,/* key */
    LINK_EFF_CLOSE,       /* code, event = reason */
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
    struct span session;    /* new opaque session; .p == NULL keeps the current one */
    struct span response;   /* join: reply response (msgpack); refused join: error response */
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
};

/* A connected device as calls after auth name it. Borrowed for the duration of the call. */
struct link_dev {
    struct span device_id;
    uint64_t conn_ref;            /* unique per connection in this gateway */
};

struct link;

struct link_ops {
    const char *name;
    void (*auth)(struct link *l, const struct link_auth *a, link_done_cb cb, void *arg);
    void (*connect)(struct link *l, const struct link_dev *d, link_done_cb cb, void *arg);
    /* fire and forget */
    void (*disconnect)(struct link *l, const struct link_dev *d, const char *reason);
    void (*join)(struct link *l, const struct link_dev *d, struct span topic, struct span session,
                 struct span payload, link_done_cb cb, void *arg);
    void (*message)(struct link *l, const struct link_dev *d, struct span topic, struct span session,
                    struct span event, struct span payload, link_done_cb cb, void *arg);
    void (*notify)(struct link *l, const struct link_dev *d, struct span topic, struct span session,
                   struct span message, link_done_cb cb, void *arg);
    void (*free)(struct link *l);
};

struct link {
    const struct link_ops *ops;
};

/* The in-process default policy: a device is accepted when its certificate chained to a
 * configured CA (the TLS layer checked that); shared secrets are refused; joins reply {} with no
 * effects; device events are counted and dropped. For standalone use and measuring the gateway. */
struct link *link_local_new(void);

/* Counters of the in-process link, for tests and metrics. */
struct link_local_stats {
    uint64_t auths, refusals, connects, disconnects, joins, messages, notifies;
};
const struct link_local_stats *link_local_stats(const struct link *l);

#endif
