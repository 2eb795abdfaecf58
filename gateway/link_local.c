/* The in-process default link policy (see link.h). It completes every call synchronously. */
#include "link.h"

#include <stdlib.h>

static const uint8_t empty_map[] = { 0x80 };

static void local_auth(struct link *l, const struct link_auth *a, link_done_cb cb, void *arg)
{
    (void)l;
    struct link_reply r = { 0 };
    if (!a->has_cert) {
        r.status = LINK_REFUSED;
        cb(arg, &r);
        return;
    }
    /* NervesHub keys devices by the certificate; the CN is the identifier devices are known by */
    char fp[41];
    link_fingerprint_hex(a->fingerprint, fp);
    r.status = LINK_OK;
    r.device_id = a->cn.len ? a->cn : (struct span){ fp, 40 };
    cb(arg, &r);
}

static void local_disconnect(struct link *l, const struct link_dev *d, const char *reason)
{
    (void)d;
    (void)reason;
    (void)l;
}

static void local_join(struct link *l, const struct link_dev *d, struct span topic, struct span payload,
                       link_done_cb cb, void *arg)
{
    (void)l;
    (void)d;
    (void)payload;
    /* NervesHub answers an extensions join with the list of extensions it wants: none here */
    static const uint8_t empty_array[] = { 0x90 };
    const uint8_t *resp = span_is(topic, "extensions") ? empty_array : empty_map;
    struct link_reply r = { .status = LINK_OK, .response = { (const char *)resp, 1 } };
    cb(arg, &r);
}

static void local_message(struct link *l, const struct link_dev *d, struct span topic, struct span session,
                          struct span event, struct span payload, link_done_cb cb, void *arg)
{
    (void)l;
    (void)d;
    (void)topic;
    (void)session;
    (void)event;
    (void)payload;
    struct link_reply r = { .status = LINK_OK };
    cb(arg, &r);
}

static void local_notify(struct link *l, const struct link_dev *d, struct span topic, struct span session,
                         struct span message, struct span from, link_done_cb cb, void *arg)
{
    (void)l;
    (void)d;
    (void)topic;
    (void)session;
    (void)message;
    (void)from;
    struct link_reply r = { .status = LINK_OK };
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
    struct link *l = xcalloc(1, sizeof(*l));
    l->ops = &local_ops;
    return l;
}
