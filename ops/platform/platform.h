/* nhplatform: the reference stateless platform behind the link (proto/LINK.md). Every piece of
 * state lives in Redis (ops/README.md lists the keys), so any number of replicas serve the same
 * fleet through the NATS queue group `<prefix>.platform`. This header holds what the modules
 * share: configuration, key names, events, the deployment cache and the worker inbox. */
#ifndef NHPF_PLATFORM_H
#define NHPF_PLATFORM_H

#include <jansson.h>
#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

#include "lp.h"
#include "lp_registry.h"

#define PF_MAX_FWUP_KEYS 16
/* The `logging` extension's store: the last PF_LOG_LINES lines per device (Redis list
 * <prefix>:pf:dev:<id>:logs, oldest first), each message cut to PF_LOG_MESSAGE_MAX bytes. */
#define PF_LOG_LINES 100
#define PF_LOG_MESSAGE_MAX 1024
#define PF_LOG_META_MAX 1024

struct pf_config {
    const char *nats_url;
    const char *redis_host;
    int redis_port;
    char prefix[LPR_MAX_PREFIX + 1];
    size_t prefix_len;
    bool auto_register;
    bool shared_secrets;
    uint32_t extensions;        /* pd_ext bit mask */
    uint32_t health_interval_ms;
    /* logging extension token bucket per device (NervesHub: 5/s, capacity 10, cost 1); rate 0 = off */
    uint32_t log_rate_per_s;
    uint32_t log_burst;
    uint32_t script_timeout_ms; /* scripts/run bookkeeping (send_after) */
    uint32_t penalty_ms;        /* failed/ignored deployment updates block the device this long */
    uint32_t reap_interval_ms;
    uint32_t inbox_timeout_ms;  /* device.update/reboot/identify wait for the worker's answer */
    uint32_t max_age_s;         /* shared-secret signature age */
    const char *fwup_keys[PF_MAX_FWUP_KEYS];
    int n_fwup_keys;
    int threads;
};

extern struct pf_config pf;
extern natsConnection *pf_nc;

int64_t pf_now_ms(void);

/* "<prefix>:pf:<fmt...>" into buf; returns buf (truncated keys are never produced for valid
 * ids: cap PF_KEY_MAX). */
#define PF_KEY_MAX 512
const char *pf_key(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Publishes {"ts","dev","event",...fields} on <prefix>.events.<dev>; steals `fields` (may be
 * NULL). */
void pf_event(const char *dev, const char *event, json_t *fields);

/* ---- deployments (a per-thread cache, invalidated by the generation counter) ---- */
struct pf_deployment {
    int64_t id;
    json_t *record;     /* the API object: id, name, firmware, conditions, created_at */
    const char *uuid;   /* record.firmware.uuid */
    uint8_t *payload;   /* the `update` payload (msgpack) */
    size_t payload_n;
};
/* The current deployments (refreshed when the generation moved); -1 when Redis failed. */
int pf_deployments(const struct pf_deployment **out, size_t *n);
/* The deployment a device with these tags/version belongs to: the highest-id one whose
 * conditions match; NULL for none. */
const struct pf_deployment *pf_deployment_for(const struct pf_deployment *d, size_t n, const json_t *tags,
                                              const char *version);
const struct pf_deployment *pf_deployment_by_id(const struct pf_deployment *d, size_t n, int64_t id);

/* ---- the registry and the worker inbox ---- */
struct pf_reg {
    char gw[LPR_MAX_GW + 1];
    uint32_t w;
    uint64_t cref;
    int64_t at;
    char fw[128];
};
/* 1 and *e when `dev` has a registry entry, 0 when not, -1 on a Redis failure. */
int pf_reg_lookup(const char *dev, struct pf_reg *e);
/* Fills *e from an HMGET gw w cref at fw reply; 1 when present. */
int pf_reg_from_reply(const void *redis_reply, struct pf_reg *e);
/* Publishes an inbox message for `dev` at `e` (cref set from e); 0 or -1. */
int pf_inbox_publish(const struct pf_reg *e, struct lp_inbox *m);
/* Same, waiting for the worker's answer: 0 and *st, or -1 (timeout, no responders). */
int pf_inbox_request(const struct pf_reg *e, struct lp_inbox *m, enum lp_inbox_status *st);

/* Opaque notify messages of the device channel (msgpack arrays, carried as bin). */
void pf_msg_follow(struct lp_out *o);

/* Frees the calling thread's deployment cache (registered with store_on_thread_exit). */
void pf_thread_cleanup(void);

/* ---- handlers ---- */
void link_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure);
void api_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure);
void link_init(void);
void api_init(void);
/* Reaps dead gateways' registry entries (LINK.md §8); run by the main thread. */
void pf_reap(void);

/* Operations shared by the link and the API (fleet.c). */
/* Decides and sends the deployment `update` to one device after join / on follow; shared
 * checks: not on the target firmware, not downloading it, not in the penalty box, not
 * not_validated, no in-flight update. Returns 1 when the device should get it (and records the
 * in-flight update), 0 when not, -1 on Redis failure. */
int pf_should_update(const char *dev, const struct pf_deployment *d, struct lp_span downloading);
/* What a scan did: devices that match the deployment, `update`s pushed, topic moves sent
 * (LINK.md §6.1), moves the workers applied, moves whose worker did not answer. */
struct pf_fanout {
    size_t matched, pushed, moves, moved, move_failed;
    int64_t move_wait_ms; /* of the scan's time, waiting for the workers' `topics` replies */
};
/* Fan-out after a deployment was created or its conditions changed (api.c): scans the online
 * devices, pushes `update` and moves channels between deployment topics through the worker
 * inboxes. -1 on Redis failure. */
int pf_fanout_scan(int64_t id, struct pf_fanout *out);
/* The same scan after deployment `id` was deleted (its record gone and the generation bumped
 * first): every online device recorded in it (`matched`) is moved from its topic to the topic
 * of the deployment it matches now, or only off it when none matches, and gets that
 * deployment's `update` when the usual checks say so. -1 on Redis failure. */
int pf_fanout_deleted(int64_t id, struct pf_fanout *out);

#endif
