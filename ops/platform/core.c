/* Shared platform services (platform.h): keys, events, the deployment cache, the registry and
 * the worker inbox, the update decision and the deployment fan-out, the reaper. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "platform.h"
#include "plog.h"
#include "pure_deploy.h"
#include "store.h"

struct pf_config pf;
natsConnection *pf_nc;

int64_t pf_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *pf_key(char *buf, const char *fmt, ...)
{
    int n = snprintf(buf, PF_KEY_MAX, "%s:pf:", pf.prefix);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, PF_KEY_MAX - (size_t)n, fmt, ap);
    va_end(ap);
    return buf;
}

void pf_event(const char *dev, const char *event, json_t *fields)
{
    json_t *e = fields && json_is_object(fields) ? fields : json_object();
    if (fields && e != fields)
        json_decref(fields);
    if (!e)
        return;
    json_object_set_new(e, "ts", json_integer(pf_now_ms()));
    json_object_set_new(e, "dev", json_string(dev));
    json_object_set_new(e, "event", json_string(event));
    char *s = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    if (!s)
        return;
    char subj[LPR_MAX_PREFIX + LPR_MAX_DEV + 16];
    snprintf(subj, sizeof(subj), "%s.events.%s", pf.prefix, dev);
    natsConnection_Publish(pf_nc, subj, s, (int)strlen(s));
    free(s);
}

/* ---- deployment cache ---- */

static _Thread_local struct {
    bool valid;
    long long gen;
    struct pf_deployment *d;
    size_t n;
} dcache;

static void dcache_clear(void)
{
    for (size_t i = 0; i < dcache.n; i++) {
        json_decref(dcache.d[i].record);
        free(dcache.d[i].payload);
    }
    free(dcache.d);
    dcache.d = NULL;
    dcache.n = 0;
    dcache.valid = false;
}

void pf_thread_cleanup(void)
{
    dcache_clear();
}

static int by_id(const void *a, const void *b)
{
    const struct pf_deployment *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

int pf_deployments(const struct pf_deployment **out, size_t *n)
{
    char k[PF_KEY_MAX];
    redisReply *g = store_cmd("GET %s", pf_key(k, "dep_gen"));
    if (!store_ok(g)) {
        freeReplyObject(g);
        return -1;
    }
    long long gen = g->type == REDIS_REPLY_STRING ? atoll(g->str) : 0;
    freeReplyObject(g);
    if (!dcache.valid || dcache.gen != gen) {
        dcache_clear();
        redisReply *ids = store_cmd("SMEMBERS %s", pf_key(k, "deps"));
        if (!store_ok(ids) || ids->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(ids);
            return -1;
        }
        size_t m = ids->elements;
        for (size_t i = 0; i < m; i++)
            store_append("HMGET %s json payload", pf_key(k, "dep:%s", ids->element[i]->str));
        dcache.d = calloc(m ? m : 1, sizeof(*dcache.d));
        int rc = dcache.d ? 0 : -1;
        for (size_t i = 0; i < m; i++) {
            redisReply *r = store_reply();
            if (!r) {
                rc = -1;
                break;
            }
            const char *js = store_str(r, 0);
            json_t *rec = js && dcache.d ? json_loads(js, 0, NULL) : NULL;
            const redisReply *pl = r->type == REDIS_REPLY_ARRAY && r->elements == 2 ? r->element[1] : NULL;
            if (rec && pl && pl->type == REDIS_REPLY_STRING) {
                struct pf_deployment *d = &dcache.d[dcache.n];
                d->record = rec;
                d->id = json_integer_value(json_object_get(rec, "id"));
                d->uuid = json_string_value(json_object_get(json_object_get(rec, "firmware"), "uuid"));
                d->payload = malloc(pl->len);
                if (d->payload && d->uuid) {
                    memcpy(d->payload, pl->str, pl->len);
                    d->payload_n = pl->len;
                    dcache.n++;
                } else {
                    free(d->payload);
                    json_decref(rec);
                }
            } else {
                json_decref(rec); /* deleted between SMEMBERS and HMGET */
            }
            freeReplyObject(r);
        }
        freeReplyObject(ids);
        if (rc < 0) {
            dcache_clear();
            return -1;
        }
        qsort(dcache.d, dcache.n, sizeof(*dcache.d), by_id);
        dcache.gen = gen;
        dcache.valid = true;
    }
    *out = dcache.d;
    *n = dcache.n;
    return 0;
}

const struct pf_deployment *pf_deployment_for(const struct pf_deployment *d, size_t n, const json_t *tags,
                                              const char *version)
{
    for (size_t i = n; i-- > 0;)
        if (pd_conditions_match(json_object_get(d[i].record, "conditions"), tags, version))
            return &d[i];
    return NULL;
}

const struct pf_deployment *pf_deployment_by_id(const struct pf_deployment *d, size_t n, int64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (d[i].id == id)
            return &d[i];
    return NULL;
}

/* ---- registry and inbox ---- */

int pf_reg_from_reply(const void *reply, struct pf_reg *e)
{
    const redisReply *r = reply;
    memset(e, 0, sizeof(*e));
    const char *gw = store_str(r, 0), *w = store_str(r, 1), *cref = store_str(r, 2);
    if (!gw || !w || !cref)
        return 0;
    snprintf(e->gw, sizeof(e->gw), "%s", gw);
    e->w = (uint32_t)strtoul(w, NULL, 10);
    e->cref = strtoull(cref, NULL, 10);
    const char *at = store_str(r, 3), *fw = store_str(r, 4);
    e->at = at ? strtoll(at, NULL, 10) : 0;
    snprintf(e->fw, sizeof(e->fw), "%s", fw ? fw : "");
    return 1;
}

int pf_reg_lookup(const char *dev, struct pf_reg *e)
{
    char k[LPR_KEY_MAX];
    lpr_key_dev(k, sizeof(k), pf.prefix, pf.prefix_len, dev, strlen(dev));
    redisReply *r = store_cmd("HMGET %s gw w cref at fw", k);
    if (!store_ok(r)) {
        freeReplyObject(r);
        return -1;
    }
    int rc = pf_reg_from_reply(r, e);
    freeReplyObject(r);
    return rc;
}

static int inbox_encode(struct lp_out *o, const struct pf_reg *e, struct lp_inbox *m, char *subj, size_t cap)
{
    m->has_cref = true;
    m->cref = e->cref;
    snprintf(subj, cap, "%s.gw.%s.%" PRIu32, pf.prefix, e->gw, e->w);
    return lp_encode_inbox(o, m);
}

int pf_inbox_publish(const struct pf_reg *e, struct lp_inbox *m)
{
    struct lp_out o = {0};
    char subj[128];
    int rc = -1;
    if (inbox_encode(&o, e, m, subj, sizeof(subj)) == 0)
        rc = natsConnection_Publish(pf_nc, subj, o.p, (int)o.n) == NATS_OK ? 0 : -1;
    lp_out_free(&o);
    return rc;
}

int pf_inbox_request(const struct pf_reg *e, struct lp_inbox *m, enum lp_inbox_status *st)
{
    struct lp_out o = {0};
    char subj[128];
    int rc = -1;
    natsMsg *reply = NULL;
    if (inbox_encode(&o, e, m, subj, sizeof(subj)) == 0 &&
        natsConnection_Request(&reply, pf_nc, subj, o.p, (int)o.n, pf.inbox_timeout_ms) == NATS_OK) {
        rc = lp_decode_inbox_status((const uint8_t *)natsMsg_GetData(reply),
                                    (size_t)natsMsg_GetDataLength(reply), st, NULL);
    }
    natsMsg_Destroy(reply);
    lp_out_free(&o);
    return rc;
}

void pf_msg_follow(struct lp_out *o)
{
    lp_mp_map(o, 1);
    lp_mp_cstr(o, "k");
    lp_mp_cstr(o, "follow");
}

/* ---- update decision ---- */

/* The shared checks on HMGET fw_uuid validated inflight blocked_until. */
static bool wants_update(const redisReply *r, const struct pf_deployment *d, struct lp_span downloading,
                         int64_t now)
{
    const char *fw = store_str(r, 0), *validated = store_str(r, 1), *inflight = store_str(r, 2),
               *blocked = store_str(r, 3);
    size_t ul = strlen(d->uuid);
    if (fw && strcmp(fw, d->uuid) == 0)
        return false;
    if (downloading.n == ul && memcmp(downloading.p, d->uuid, ul) == 0)
        return false;
    if (validated && strcmp(validated, "not_validated") == 0)
        return false;
    if (inflight && *inflight)
        return false;
    if (blocked && strtoll(blocked, NULL, 10) > now)
        return false;
    return true;
}

static char *inflight_json(const struct pf_deployment *d, int64_t now)
{
    json_t *j = json_pack("{s:s, s:I, s:I}", "uuid", d->uuid, "deployment_id", (json_int_t)d->id, "at",
                          (json_int_t)now);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

int pf_should_update(const char *dev, const struct pf_deployment *d, struct lp_span downloading)
{
    char k[PF_KEY_MAX];
    pf_key(k, "dev:%s", dev);
    redisReply *r = store_cmd("HMGET %s fw_uuid validated inflight blocked_until", k);
    if (!store_ok(r)) {
        freeReplyObject(r);
        return -1;
    }
    int64_t now = pf_now_ms();
    bool want = wants_update(r, d, downloading, now);
    freeReplyObject(r);
    if (!want)
        return 0;
    char *inf = inflight_json(d, now);
    if (!inf)
        return -1;
    /* HSETNX: of two replicas deciding at once, one sends */
    r = store_cmd("HSETNX %s inflight %s", k, inf);
    free(inf);
    int rc = !store_ok(r) ? -1 : r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return rc;
}

/* ---- fan-out to online devices (deployment created or conditions changed) ---- */

#define SCAN_BATCH 512

struct scan_dev {
    char *id;
    struct pf_reg reg;
    bool online;
};

static int fanout_batch(const struct pf_deployment *d, const struct pf_deployment *all, size_t n_all,
                        char **ids, size_t n, size_t *matched, size_t *pushed)
{
    char k[PF_KEY_MAX], rk[LPR_KEY_MAX];
    for (size_t i = 0; i < n; i++) {
        lpr_key_dev(rk, sizeof(rk), pf.prefix, pf.prefix_len, ids[i], strlen(ids[i]));
        store_append("HMGET %s gw w cref at fw", rk);
        store_append("HMGET %s fw_uuid validated inflight blocked_until tags fw_version deployment_id",
                     pf_key(k, "dev:%s", ids[i]));
    }
    struct pf_reg *regs = calloc(n, sizeof(*regs));
    uint8_t *action = calloc(n, 1); /* bit 0: push candidate, bit 1: follow */
    int rc = regs && action ? 0 : -1;
    int64_t now = pf_now_ms();
    for (size_t i = 0; i < n; i++) {
        redisReply *reg = store_reply();
        redisReply *dev = reg ? store_reply() : NULL;
        if (!reg || !dev) {
            freeReplyObject(reg);
            rc = -1;
            break;
        }
        if (rc == 0 && pf_reg_from_reply(reg, &regs[i]) && store_str(dev, 0 + 4) != NULL) {
            json_t *tags = json_loads(store_str(dev, 4), 0, NULL);
            const struct pf_deployment *best = pf_deployment_for(all, n_all, tags, store_str(dev, 5));
            json_decref(tags);
            const char *cur = store_str(dev, 6);
            bool was_ours = cur && strtoll(cur, NULL, 10) == d->id;
            if (best && best->id == d->id) {
                (*matched)++;
                if (wants_update(dev, d, (struct lp_span){0}, now))
                    action[i] |= 1;
                if (!was_ours)
                    action[i] |= 2;
            } else if (was_ours) {
                action[i] |= 2; /* no longer matches: let its channel re-evaluate */
            }
        }
        freeReplyObject(reg);
        freeReplyObject(dev);
    }
    if (rc < 0)
        goto out;
    char *inf = inflight_json(d, now);
    size_t appended = 0;
    for (size_t i = 0; i < n && inf; i++) {
        if (action[i] & 1) {
            store_append("HSETNX %s inflight %s", pf_key(k, "dev:%s", ids[i]), inf);
            appended++;
        }
        if (action[i] & 2) {
            store_append("HSET %s deployment_id %lld", pf_key(k, "dev:%s", ids[i]), (long long)d->id);
            appended++;
        }
    }
    free(inf);
    for (size_t i = 0; i < n; i++) {
        if (action[i] & 1) {
            redisReply *r = store_reply();
            if (!r) {
                rc = -1;
                goto out;
            }
            if (!(r->type == REDIS_REPLY_INTEGER && r->integer == 1))
                action[i] &= (uint8_t)~1; /* another replica or a join got there first */
            freeReplyObject(r);
        }
        if (action[i] & 2)
            freeReplyObject(store_reply());
    }
    (void)appended;
    struct lp_out follow = {0};
    pf_msg_follow(&follow);
    for (size_t i = 0; i < n; i++) {
        if (action[i] & 1) {
            struct lp_inbox m = {.kind = LP_IN_PUSH, .dev = lp_cspan(ids[i]), .topic = lp_cspan("device"),
                                 .event = lp_cspan("update"), .payload = {d->payload, d->payload_n}};
            if (pf_inbox_publish(&regs[i], &m) == 0) {
                (*pushed)++;
                pf_event(ids[i], "update_sent",
                         json_pack("{s:s, s:I, s:s}", "uuid", d->uuid, "deployment_id", (json_int_t)d->id,
                                   "via", "inbox"));
            }
        }
        if (action[i] & 2) {
            struct lp_inbox m = {.kind = LP_IN_NOTIFY, .dev = lp_cspan(ids[i]), .topic = lp_cspan("device"),
                                 .msg = {follow.p, follow.n}};
            pf_inbox_publish(&regs[i], &m);
        }
    }
    lp_out_free(&follow);
out:
    free(regs);
    free(action);
    return rc;
}

int pf_fanout_scan(int64_t id, size_t *matched, size_t *pushed)
{
    *matched = *pushed = 0;
    const struct pf_deployment *all, *d;
    size_t n_all;
    if (pf_deployments(&all, &n_all) < 0)
        return -1;
    if (!(d = pf_deployment_by_id(all, n_all, id)))
        return 0; /* deleted meanwhile */
    char k[LPR_KEY_MAX];
    lpr_key_gws(k, sizeof(k), pf.prefix, pf.prefix_len);
    redisReply *gws = store_cmd("SMEMBERS %s", k);
    if (!store_ok(gws) || gws->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(gws);
        return -1;
    }
    int rc = 0;
    for (size_t g = 0; g < gws->elements && rc == 0; g++) {
        lpr_key_gw_devs(k, sizeof(k), pf.prefix, pf.prefix_len, gws->element[g]->str, gws->element[g]->len);
        redisReply *devs = store_cmd("SMEMBERS %s", k);
        if (!store_ok(devs) || devs->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(devs);
            rc = -1;
            break;
        }
        char *ids[SCAN_BATCH];
        size_t n = 0;
        for (size_t i = 0; i < devs->elements && rc == 0; i++) {
            ids[n++] = devs->element[i]->str;
            if (n == SCAN_BATCH || i + 1 == devs->elements) {
                rc = fanout_batch(d, all, n_all, ids, n, matched, pushed);
                n = 0;
            }
        }
        freeReplyObject(devs);
    }
    freeReplyObject(gws);
    return rc;
}

/* ---- reaper ---- */

static struct store_script reap_script;

void pf_reap(void)
{
    if (!reap_script.text)
        store_script_init(&reap_script, LPR_SCRIPT_REAP);
    char k[LPR_KEY_MAX];
    lpr_key_gws(k, sizeof(k), pf.prefix, pf.prefix_len);
    redisReply *gws = store_cmd("SMEMBERS %s", k);
    if (!store_ok(gws) || gws->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(gws);
        return;
    }
    for (size_t g = 0; g < gws->elements; g++) {
        const char *gw = gws->element[g]->str;
        size_t gl = gws->element[g]->len;
        char devs[LPR_KEY_MAX], all[LPR_KEY_MAX], alive[LPR_KEY_MAX];
        lpr_key_gw_devs(devs, sizeof(devs), pf.prefix, pf.prefix_len, gw, gl);
        lpr_key_gws(all, sizeof(all), pf.prefix, pf.prefix_len);
        lpr_key_gw_alive(alive, sizeof(alive), pf.prefix, pf.prefix_len, gw, gl);
        long long deleted = 0;
        for (int round = 0; round < 10000; round++) {
            const char *args[] = {devs, all, alive, gw, "1000"};
            size_t lens[] = {strlen(devs), strlen(all), strlen(alive), gl, 4};
            redisReply *r = store_eval(&reap_script, 3, 5, args, lens);
            if (!store_ok(r) || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
                freeReplyObject(r);
                break;
            }
            long long n = r->element[0]->integer, left = r->element[1]->integer;
            freeReplyObject(r);
            deleted += n;
            if (left <= 0) {
                if (left == 0)
                    plog(PLOG_INFO, "gateway_reaped", "gw=%s entries=%lld", gw, deleted);
                break;
            }
        }
    }
    freeReplyObject(gws);
}
