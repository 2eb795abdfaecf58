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

/* ---- fan-out to online devices (deployment created, conditions changed, deployment deleted) ---- */

#define SCAN_BATCH 512

/* Topic moves (LINK.md §6.1) are queued per gateway worker and sent as one inbox `topics`
 * request of up to LP_MAX_MOVES entries, waiting for the worker's answer before the next: the
 * worker has followed every topic of a batch (its subscription is on the server) when it
 * answers, so a topic publish after the scan reaches every moved channel, and the platform
 * never has more than one batch in flight. */
struct move_ent {
    const char *dev; /* into the scan's SMEMBERS reply: queues are flushed before it is freed */
    uint64_t cref;
    int64_t unsub, sub; /* deployment ids; -1: none */
};

struct move_q {
    char gw[LPR_MAX_GW + 1];
    uint32_t w;
    size_t n;
    struct move_ent e[LP_MAX_MOVES];
};

struct moves {
    struct move_q **q;
    size_t n, alloc;
    struct pf_fanout *out;
};

static const char *dep_topic(char *buf, size_t cap, int64_t id)
{
    snprintf(buf, cap, "deployment:%" PRId64, id);
    return buf;
}

static void moves_send(struct moves *mv, struct move_q *q)
{
    if (q->n == 0)
        return;
    struct lp_move *ms = calloc(q->n, sizeof(*ms));
    char(*topics)[2][32] = calloc(q->n, sizeof(*topics));
    struct lp_out o = {0};
    char subj[128];
    natsMsg *reply = NULL;
    natsStatus st = NATS_NO_MEMORY;
    uint32_t applied = 0;
    if (ms && topics) {
        for (size_t i = 0; i < q->n; i++) {
            const struct move_ent *e = &q->e[i];
            ms[i].dev = lp_cspan(e->dev);
            ms[i].cref = e->cref;
            if (e->unsub >= 0)
                ms[i].unsub = lp_cspan(dep_topic(topics[i][0], sizeof(topics[i][0]), e->unsub));
            if (e->sub >= 0)
                ms[i].sub = lp_cspan(dep_topic(topics[i][1], sizeof(topics[i][1]), e->sub));
        }
        struct lp_inbox m = {.kind = LP_IN_TOPICS, .topic = lp_cspan("device"), .moves = ms, .n_moves = q->n};
        snprintf(subj, sizeof(subj), "%s.gw.%s.%" PRIu32, pf.prefix, q->gw, q->w);
        st = NATS_ERR;
        int64_t t0 = pf_now_ms();
        if (lp_encode_inbox(&o, &m) == 0) {
            st = natsConnection_Request(&reply, pf_nc, subj, o.p, (int)o.n, pf.inbox_timeout_ms);
            if (st == NATS_TIMEOUT) /* idempotent: once more for a worker busy with the fan-out */
                st = natsConnection_Request(&reply, pf_nc, subj, o.p, (int)o.n, pf.inbox_timeout_ms);
        }
        mv->out->move_wait_ms += pf_now_ms() - t0;
        if (st == NATS_OK && lp_decode_topics_reply((const uint8_t *)natsMsg_GetData(reply),
                                                    (size_t)natsMsg_GetDataLength(reply), &applied, NULL) != 0)
            st = NATS_PROTOCOL_ERROR;
    }
    mv->out->moves += q->n;
    if (st == NATS_OK) {
        mv->out->moved += applied;
    } else {
        mv->out->move_failed += q->n;
        plog(PLOG_WARN, "topics_move_failed", "gw=%s w=%" PRIu32 " entries=%zu error=\"%s\"", q->gw, q->w, q->n,
             natsStatus_GetText(st));
    }
    natsMsg_Destroy(reply);
    lp_out_free(&o);
    free(ms);
    free(topics);
    q->n = 0;
}

/* Queues one move; 0, or -1 when out of memory. */
static int moves_add(struct moves *mv, const struct pf_reg *r, const char *dev, int64_t unsub, int64_t sub)
{
    struct move_q *q = NULL;
    for (size_t i = 0; i < mv->n && !q; i++)
        if (mv->q[i]->w == r->w && strcmp(mv->q[i]->gw, r->gw) == 0)
            q = mv->q[i];
    if (!q) {
        if (mv->n == mv->alloc) {
            size_t na = mv->alloc ? mv->alloc * 2 : 16;
            struct move_q **nq = realloc(mv->q, na * sizeof(*nq));
            if (!nq)
                return -1;
            mv->q = nq;
            mv->alloc = na;
        }
        if (!(q = malloc(sizeof(*q))))
            return -1;
        snprintf(q->gw, sizeof(q->gw), "%s", r->gw);
        q->w = r->w;
        q->n = 0;
        mv->q[mv->n++] = q;
    }
    q->e[q->n++] = (struct move_ent){dev, r->cref, unsub, sub};
    if (q->n == LP_MAX_MOVES)
        moves_send(mv, q);
    return 0;
}

static void moves_flush(struct moves *mv)
{
    for (size_t i = 0; i < mv->n; i++)
        moves_send(mv, mv->q[i]);
}

static void moves_free(struct moves *mv)
{
    for (size_t i = 0; i < mv->n; i++)
        free(mv->q[i]);
    free(mv->q);
}

/* One batch of devices: for each online device, the deployment it belongs to now (`best`) and
 * the one it is recorded in (`deployment_id`). A device that enters or leaves deployment `id`
 * is moved between the deployments' topics through its worker's inbox (no platform call), and
 * its record follows; a device that should get the update of the deployment it is now in gets
 * it through the inbox. `d` is deployment `id`, or NULL when it was deleted (`all` no longer
 * holds it, so every device recorded in it leaves it). */
static int fanout_batch(int64_t id, const struct pf_deployment *d, const struct pf_deployment *all, size_t n_all,
                        char **ids, size_t n, struct moves *mv)
{
    struct pf_fanout *out = mv->out;
    char k[PF_KEY_MAX], rk[LPR_KEY_MAX];
    for (size_t i = 0; i < n; i++) {
        lpr_key_dev(rk, sizeof(rk), pf.prefix, pf.prefix_len, ids[i], strlen(ids[i]));
        store_append("HMGET %s gw w cref at fw", rk);
        store_append("HMGET %s fw_uuid validated inflight blocked_until tags fw_version deployment_id",
                     pf_key(k, "dev:%s", ids[i]));
    }
    struct pf_reg *regs = calloc(n, sizeof(*regs));
    const struct pf_deployment **push = calloc(n, sizeof(*push)); /* the update to send, if any */
    int64_t *from = calloc(n, sizeof(*from)), *to = calloc(n, sizeof(*to));
    bool *move = calloc(n, sizeof(*move));
    int rc = regs && push && from && to && move ? 0 : -1;
    int64_t now = pf_now_ms();
    for (size_t i = 0; i < n; i++) {
        redisReply *reg = store_reply();
        redisReply *dev = reg ? store_reply() : NULL;
        if (!reg || !dev) {
            freeReplyObject(reg);
            rc = -1;
            break;
        }
        if (rc == 0 && pf_reg_from_reply(reg, &regs[i]) && store_str(dev, 4) != NULL) {
            json_t *tags = json_loads(store_str(dev, 4), 0, NULL);
            const struct pf_deployment *best = pf_deployment_for(all, n_all, tags, store_str(dev, 5));
            json_decref(tags);
            const char *cur = store_str(dev, 6);
            from[i] = cur && *cur ? strtoll(cur, NULL, 10) : -1;
            to[i] = best ? best->id : -1;
            if (d ? best == d : from[i] == id)
                out->matched++;
            move[i] = from[i] != to[i] && (from[i] == id || to[i] == id);
            /* d's devices, and those that left d for another deployment */
            if (best && (best == d || move[i]) && wants_update(dev, best, (struct lp_span){0}, now))
                push[i] = best;
        }
        freeReplyObject(reg);
        freeReplyObject(dev);
    }
    if (rc < 0)
        goto out;
    char *inf_d = d ? inflight_json(d, now) : NULL;
    for (size_t i = 0; i < n; i++) {
        if (push[i]) {
            char *inf = push[i] == d && inf_d ? inf_d : inflight_json(push[i], now);
            if (inf)
                store_append("HSETNX %s inflight %s", pf_key(k, "dev:%s", ids[i]), inf);
            else
                push[i] = NULL;
            if (inf != inf_d)
                free(inf);
        }
        if (move[i])
            store_append("HSET %s deployment_id %lld", pf_key(k, "dev:%s", ids[i]), (long long)to[i]);
    }
    free(inf_d);
    for (size_t i = 0; i < n; i++) {
        if (push[i]) {
            redisReply *r = store_reply();
            if (!r) {
                rc = -1;
                goto out;
            }
            if (!(r->type == REDIS_REPLY_INTEGER && r->integer == 1))
                push[i] = NULL; /* another replica or a join got there first */
            freeReplyObject(r);
        }
        if (move[i]) {
            redisReply *r = store_reply();
            if (!r) {
                rc = -1;
                goto out;
            }
            freeReplyObject(r);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (push[i]) {
            const struct pf_deployment *p = push[i];
            struct lp_inbox m = {.kind = LP_IN_PUSH, .dev = lp_cspan(ids[i]), .topic = lp_cspan("device"),
                                 .event = lp_cspan("update"), .payload = {p->payload, p->payload_n}};
            if (pf_inbox_publish(&regs[i], &m) == 0) {
                out->pushed++;
                pf_event(ids[i], "update_sent",
                         json_pack("{s:s, s:I, s:s}", "uuid", p->uuid, "deployment_id", (json_int_t)p->id, "via",
                                   "inbox"));
            }
        }
        if (move[i] && moves_add(mv, &regs[i], ids[i], from[i], to[i]) < 0)
            rc = -1;
    }
out:
    free(regs);
    free(push);
    free(from);
    free(to);
    free(move);
    return rc;
}

/* Walks every online device (the members of the registry's gateway sets) in batches. */
static int scan_online(int64_t id, const struct pf_deployment *d, const struct pf_deployment *all, size_t n_all,
                       struct pf_fanout *out)
{
    char k[LPR_KEY_MAX];
    lpr_key_gws(k, sizeof(k), pf.prefix, pf.prefix_len);
    redisReply *gws = store_cmd("SMEMBERS %s", k);
    if (!store_ok(gws) || gws->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(gws);
        return -1;
    }
    struct moves mv = {.out = out};
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
                rc = fanout_batch(id, d, all, n_all, ids, n, &mv);
                n = 0;
            }
        }
        moves_flush(&mv); /* before `devs`, which the queued entries point into, goes */
        freeReplyObject(devs);
    }
    moves_free(&mv);
    freeReplyObject(gws);
    return rc;
}

int pf_fanout_scan(int64_t id, struct pf_fanout *out)
{
    memset(out, 0, sizeof(*out));
    const struct pf_deployment *all, *d;
    size_t n_all;
    if (pf_deployments(&all, &n_all) < 0)
        return -1;
    if (!(d = pf_deployment_by_id(all, n_all, id)))
        return 0; /* deleted meanwhile */
    return scan_online(id, d, all, n_all, out);
}

int pf_fanout_deleted(int64_t id, struct pf_fanout *out)
{
    memset(out, 0, sizeof(*out));
    const struct pf_deployment *all;
    size_t n_all;
    if (pf_deployments(&all, &n_all) < 0)
        return -1;
    if (pf_deployment_by_id(all, n_all, id))
        return -1; /* the caller deletes it (and bumps the generation) first */
    return scan_online(id, NULL, all, n_all, out);
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
