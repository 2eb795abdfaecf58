/* The in-process default link policy (see link.h). It completes every call synchronously. */
#include "link.h"

#include <stdlib.h>

struct link_local {
    struct link base;
    struct link_local_stats stats;
};

static const uint8_t empty_map[] = { 0x80 };

static void local_auth(struct link *l, const struct link_auth *a, link_done_cb cb, void *arg)
{
    struct link_local *ll = (struct link_local *)l;
    struct link_reply r = { 0 };
    ll->stats.auths++;
    if (!a->has_cert) {
        ll->stats.refusals++;
        r.status = LINK_REFUSED;
        cb(arg, &r);
        return;
    }
    /* NervesHub keys devices by the certificate; the CN is the identifier devices are known by */
    static const char hex[] = "0123456789ABCDEF";
    char fp[41];
    for (int i = 0; i < 20; i++) {
        fp[2 * i] = hex[a->fingerprint[i] >> 4];
        fp[2 * i + 1] = hex[a->fingerprint[i] & 15];
    }
    fp[40] = 0;
    r.status = LINK_OK;
    r.device_id = a->cn.len ? a->cn : (struct span){ fp, 40 };
    ll->stats.connects++;
    cb(arg, &r);
}

static void local_disconnect(struct link *l, const struct link_dev *d, const char *reason)
{
    (void)d;
    (void)reason;
    ((struct link_local *)l)->stats.disconnects++;
}

static void local_join(struct link *l, const struct link_dev *d, struct span topic, struct span payload,
                       link_done_cb cb, void *arg)
{
    (void)d;
    (void)topic;
    (void)payload;
    struct link_local *ll = (struct link_local *)l;
    struct link_reply r = { .status = LINK_OK, .response = { (const char *)empty_map, 1 } };
    ll->stats.joins++;
    cb(arg, &r);
}

static void local_message(struct link *l, const struct link_dev *d, struct span topic, struct span session,
                          struct span event, struct span payload, link_done_cb cb, void *arg)
{
    (void)d;
    (void)topic;
    (void)session;
    (void)event;
    (void)payload;
    struct link_local *ll = (struct link_local *)l;
    struct link_reply r = { .status = LINK_OK };
    ll->stats.messages++;
    cb(arg, &r);
}

static void local_notify(struct link *l, const struct link_dev *d, struct span topic, struct span session,
                         struct span message, struct span from, link_done_cb cb, void *arg)
{
    (void)d;
    (void)topic;
    (void)session;
    (void)message;
    (void)from;
    struct link_local *ll = (struct link_local *)l;
    struct link_reply r = { .status = LINK_OK };
    ll->stats.notifies++;
    cb(arg, &r);
}

static void local_heartbeat(struct link *l, const struct link_dev *devs, size_t n)
{
    (void)l;
    (void)devs;
    (void)n;
}

/* nothing is ever published to this gateway without a platform */
static int local_follow(struct link *l, const char *topic)
{
    (void)l;
    (void)topic;
    return 0;
}

static void local_unfollow(struct link *l, const char *topic)
{
    (void)l;
    (void)topic;
}

/* without a registry no other holder is ever known */
static void local_kick(struct link *l, struct span gw, unsigned worker, struct span dev, uint64_t conn_ref)
{
    (void)l;
    (void)gw;
    (void)worker;
    (void)dev;
    (void)conn_ref;
}

static bool local_available(const struct link *l)
{
    (void)l;
    return true;
}

static void local_free(struct link *l)
{
    free(l);
}

static const struct link_ops local_ops = {
    .name = "local",
    .auth = local_auth,
    .disconnect = local_disconnect,
    .join = local_join,
    .message = local_message,
    .notify = local_notify,
    .heartbeat = local_heartbeat,
    .follow = local_follow,
    .unfollow = local_unfollow,
    .kick = local_kick,
    .available = local_available,
    .free = local_free,
};

struct link *link_local_new(void)
{
    struct link_local *ll = xcalloc(1, sizeof(*ll));
    ll->base.ops = &local_ops;
    return &ll->base;
}

const struct link_local_stats *link_local_stats(const struct link *l)
{
    return &((const struct link_local *)l)->stats;
}
