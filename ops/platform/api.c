/* The operator API (ops/README.md "Operator API"): JSON request/reply on <prefix>.api.<verb>. */
#include <ctype.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform.h"
#include "plog.h"
#include "pure_deploy.h"
#include "store.h"

#define LIST_DEFAULT 1000
#define LIST_MAX 2000 /* keeps a reply well under NATS's 1 MiB max_payload */

struct req {
    json_t *body;
    json_t *out; /* the reply */
};

static json_t *api_error(const char *code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static json_t *api_error(const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return json_pack("{s:s, s:s}", "error", msg, "code", code);
}

static json_t *store_down(void)
{
    return api_error("internal", "the platform's store (Redis) is unavailable");
}

static const char *body_str(json_t *b, const char *k)
{
    return json_string_value(json_object_get(b, k));
}

/* A device id from the request (must be a valid link device id). */
static const char *want_id(json_t *b, const char *k, json_t **err)
{
    const char *id = body_str(b, k);
    if (!id || !lp_valid_dev(lp_cspan(id))) {
        *err = api_error("bad_request", "%s must be a device identifier (1-128 bytes, no '.', '*', '>' or spaces)", k);
        return NULL;
    }
    return id;
}

static json_t *str_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

static json_t *int_or_null(const char *s)
{
    return s && *s ? json_integer(strtoll(s, NULL, 10)) : json_null();
}

static json_t *json_or_null(const char *s)
{
    json_t *j = s && *s ? json_loads(s, JSON_DECODE_ANY, NULL) : NULL;
    return j ? j : json_null();
}

/* ---- devices ---- */

static const char *const SHOW_FIELDS[] = {"deployment_id", "last_status", "validated", "product", "api",
                                          "network_interface", "conn_status", "last_seen", "disconnected_at",
                                          "disconnect_reason", "health", "location", "connection_types",
                                          "inflight", "blocked_until", "unhandled", "fw_product",
                                          "fw_architecture", "fw_platform", "created_at", "peer", "health_at"};
#define N_SHOW_FIELDS (sizeof(SHOW_FIELDS) / sizeof(SHOW_FIELDS[0]))

static void append_list_cmds(const char *id)
{
    char k[PF_KEY_MAX], rk[LPR_KEY_MAX];
    store_append("HMGET %s identifier fw_uuid fw_version tags status progress", pf_key(k, "dev:%s", id));
    lpr_key_dev(rk, sizeof(rk), pf.prefix, pf.prefix_len, id, strlen(id));
    store_append("HMGET %s gw w cref at fw", rk);
}

/* The list fields of one device from its two replies; NULL when the device does not exist. */
static json_t *device_json(const char *id, redisReply *dev, redisReply *reg)
{
    if (!store_str(dev, 0))
        return NULL;
    struct pf_reg e;
    bool online = pf_reg_from_reply(reg, &e) == 1;
    json_t *tags = json_or_null(store_str(dev, 3));
    if (!json_is_array(tags)) {
        json_decref(tags);
        tags = json_array();
    }
    return json_pack("{s:s, s:s, s:b, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "id", id, "identifier",
                     store_str(dev, 0), "online", online, "gateway", online ? json_string(e.gw) : json_null(),
                     "worker", online ? json_integer(e.w) : json_null(), "connected_at",
                     online && e.at ? json_integer(e.at) : json_null(), "firmware_uuid",
                     str_or_null(store_str(dev, 1)), "firmware_version", str_or_null(store_str(dev, 2)), "tags",
                     tags, "status", str_or_null(store_str(dev, 4)), "progress", int_or_null(store_str(dev, 5)));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static json_t *devices_list(json_t *b)
{
    json_t *f = json_object_get(b, "online");
    if (f && !json_is_boolean(f) && !json_is_null(f))
        return api_error("bad_request", "online must be a boolean");
    json_t *lim = json_object_get(b, "limit");
    if (lim && !(json_is_integer(lim) && json_integer_value(lim) > 0 && json_integer_value(lim) <= LIST_MAX))
        return api_error("bad_request", "limit must be an integer in 1..%d", LIST_MAX);
    size_t limit = lim ? (size_t)json_integer_value(lim) : LIST_DEFAULT;
    char k[PF_KEY_MAX];
    redisReply *ids = store_cmd("SMEMBERS %s", pf_key(k, "devs"));
    if (!store_ok(ids) || ids->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(ids);
        return store_down();
    }
    char **sorted = malloc((ids->elements ? ids->elements : 1) * sizeof(char *));
    if (!sorted) {
        freeReplyObject(ids);
        return api_error("internal", "out of memory");
    }
    for (size_t i = 0; i < ids->elements; i++)
        sorted[i] = ids->element[i]->str;
    qsort(sorted, ids->elements, sizeof(char *), cmp_str);
    json_t *list = json_array();
    size_t total = 0;
    bool truncated = false, failed = false;
    for (size_t at = 0; at < ids->elements && !failed && !truncated; at += 256) {
        size_t n = ids->elements - at < 256 ? ids->elements - at : 256;
        for (size_t i = 0; i < n; i++)
            append_list_cmds(sorted[at + i]);
        for (size_t i = 0; i < n; i++) {
            redisReply *dev = store_reply(), *reg = dev ? store_reply() : NULL;
            if (!dev || !reg) {
                freeReplyObject(dev);
                failed = true;
                break;
            }
            json_t *d = device_json(sorted[at + i], dev, reg);
            freeReplyObject(dev);
            freeReplyObject(reg);
            if (!d)
                continue;
            if (json_is_boolean(f) && json_is_true(f) != json_is_true(json_object_get(d, "online"))) {
                json_decref(d);
                continue;
            }
            total++;
            if (json_array_size(list) < limit)
                json_array_append_new(list, d);
            else {
                json_decref(d);
                truncated = true;
            }
        }
    }
    free(sorted);
    freeReplyObject(ids);
    if (failed) {
        json_decref(list);
        return store_down();
    }
    return json_pack("{s:o, s:b}", "devices", list, "truncated", truncated);
}

static json_t *devices_show(json_t *b)
{
    json_t *err = NULL;
    const char *id = want_id(b, "id", &err);
    if (!id)
        return err;
    char k[PF_KEY_MAX];
    append_list_cmds(id);
    const char *argv[2 + N_SHOW_FIELDS];
    argv[0] = "HMGET";
    argv[1] = pf_key(k, "dev:%s", id);
    for (size_t i = 0; i < N_SHOW_FIELDS; i++)
        argv[2 + i] = SHOW_FIELDS[i];
    store_append_argv((int)(2 + N_SHOW_FIELDS), argv, NULL);
    char fk[PF_KEY_MAX];
    store_append("SMEMBERS %s", pf_key(fk, "dev:%s:fps", id));
    store_append("LRANGE %s 0 -1", pf_key(fk, "dev:%s:logs", id));
    redisReply *dev = store_reply(), *reg = dev ? store_reply() : NULL, *more = reg ? store_reply() : NULL,
               *fps = more ? store_reply() : NULL, *logs = fps ? store_reply() : NULL;
    json_t *out;
    if (!logs) {
        out = store_down();
    } else {
        json_t *d = device_json(id, dev, reg);
        if (!d) {
            out = api_error("not_found", "unknown device %s", id);
        } else {
            const char *dep = store_str(more, 0);
            json_object_set_new(d, "deployment_id", dep && strtoll(dep, NULL, 10) >= 0 ? int_or_null(dep) : json_null());
            json_object_set_new(d, "last_status", json_or_null(store_str(more, 1)));
            const char *v = store_str(more, 2);
            json_object_set_new(d, "validated", json_boolean(v && strcmp(v, "validated") == 0));
            json_object_set_new(d, "validation", str_or_null(v));
            static const char *const extra[] = {"product", "device_api_version", "network_interface",
                                                "connection_status", "last_seen", "disconnected_at",
                                                "disconnect_reason", "health", "location", "connection_types",
                                                "inflight_update", "blocked_until", "unhandled_messages",
                                                "firmware_product", "firmware_architecture", "firmware_platform",
                                                "created_at", "peer", "health_at"};
            for (size_t i = 3; i < N_SHOW_FIELDS; i++) {
                const char *s = store_str(more, i);
                const char *name = extra[i - 3];
                json_t *val;
                if (!strcmp(name, "health") || !strcmp(name, "location") || !strcmp(name, "connection_types") ||
                    !strcmp(name, "inflight_update"))
                    val = json_or_null(s);
                else if (!strcmp(name, "last_seen") || !strcmp(name, "disconnected_at") ||
                         !strcmp(name, "blocked_until") || !strcmp(name, "unhandled_messages") ||
                         !strcmp(name, "created_at") || !strcmp(name, "health_at"))
                    val = int_or_null(s);
                else
                    val = str_or_null(s);
                json_object_set_new(d, name, val);
            }
            json_t *list = json_array();
            for (size_t i = 0; fps->type == REDIS_REPLY_ARRAY && i < fps->elements; i++)
                json_array_append_new(list, json_string(fps->element[i]->str));
            json_object_set_new(d, "fingerprints", list);
            json_t *lines = json_array();
            for (size_t i = 0; logs->type == REDIS_REPLY_ARRAY && i < logs->elements; i++) {
                json_t *l = json_or_null(logs->element[i]->str);
                if (json_is_object(l))
                    json_array_append_new(lines, l);
                else
                    json_decref(l);
            }
            json_object_set_new(d, "logs", lines);
            out = json_pack("{s:o}", "device", d);
        }
    }
    freeReplyObject(dev);
    freeReplyObject(reg);
    freeReplyObject(more);
    freeReplyObject(fps);
    freeReplyObject(logs);
    return out;
}

static struct store_script s_create;

/* KEYS: dev hash, devs set, fp key ("" none), fps set. ARGV: id, fp, tags, now. */
static const char CREATE_LUA[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end\n"
    "if ARGV[2] ~= '' and redis.call('EXISTS', KEYS[3]) == 1 then return -2 end\n"
    "redis.call('HSET', KEYS[1], 'identifier', ARGV[1], 'product', 'default', 'tags', ARGV[3],"
    " 'created_at', ARGV[4])\n"
    "redis.call('SADD', KEYS[2], ARGV[1])\n"
    "if ARGV[2] ~= '' then\n"
    "  redis.call('SET', KEYS[3], ARGV[1])\n"
    "  redis.call('SADD', KEYS[4], ARGV[2])\n"
    "end\n"
    "return 1\n";

static json_t *devices_create(json_t *b)
{
    json_t *err = NULL;
    const char *id = want_id(b, "identifier", &err);
    if (!id)
        return err;
    char fp[41] = "";
    json_t *f = json_object_get(b, "fingerprint");
    if (f && !json_is_null(f)) {
        const char *s = json_string_value(f);
        if (!s || strlen(s) != 40)
            return api_error("bad_request", "fingerprint must be 40 hex digits (SHA-1 of the certificate DER)");
        for (int i = 0; i < 40; i++) {
            if (!isxdigit((unsigned char)s[i]))
                return api_error("bad_request", "fingerprint must be 40 hex digits (SHA-1 of the certificate DER)");
            fp[i] = (char)toupper((unsigned char)s[i]);
        }
    }
    json_t *tags = json_object_get(b, "tags");
    char msg[256];
    if (tags && !json_is_null(tags) && pd_tags_check(tags, msg, sizeof(msg)) < 0)
        return api_error("bad_request", "%s", msg);
    char *ts = json_is_array(tags) ? json_dumps(tags, JSON_COMPACT) : NULL;
    char k1[PF_KEY_MAX], k2[PF_KEY_MAX], k3[PF_KEY_MAX], k4[PF_KEY_MAX], now[24];
    snprintf(now, sizeof(now), "%" PRId64, pf_now_ms());
    const char *args[] = {pf_key(k1, "dev:%s", id), pf_key(k2, "devs"), pf_key(k3, "fp:%s", fp[0] ? fp : "-"),
                          pf_key(k4, "dev:%s:fps", id), id, fp, ts ? ts : "[]", now};
    redisReply *r = store_eval(&s_create, 4, 8, args, NULL);
    free(ts);
    if (!store_ok(r) || r->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(r);
        return store_down();
    }
    long long code = r->integer;
    freeReplyObject(r);
    if (code == -1)
        return api_error("conflict", "device %s already exists", id);
    if (code == -2)
        return api_error("conflict", "fingerprint %s belongs to another device", fp);
    pf_event(id, "registered", json_pack("{s:s}", "via", "api"));
    json_t *show = json_pack("{s:s}", "id", id);
    json_t *out = devices_show(show);
    json_decref(show);
    return out;
}

/* ---- deployments ---- */

static int save_deployment(json_t *rec)
{
    int64_t id = json_integer_value(json_object_get(rec, "id"));
    struct lp_out o = {0};
    if (pd_update_payload(&o, json_object_get(rec, "firmware"), id) < 0) {
        lp_out_free(&o);
        return -1;
    }
    char *js = json_dumps(rec, JSON_COMPACT);
    char k[PF_KEY_MAX], ids[24];
    snprintf(ids, sizeof(ids), "%" PRId64, id);
    /* the record before the generation bump: a reader that sees the new generation sees it */
    redisReply *r = js ? store_cmd("HSET %s json %s payload %b", pf_key(k, "dep:%s", ids), js, o.p, o.n) : NULL;
    int rc = store_ok(r) ? 0 : -1;
    freeReplyObject(r);
    free(js);
    lp_out_free(&o);
    if (rc == 0) {
        freeReplyObject(store_cmd("SADD %s %s", pf_key(k, "deps"), ids));
        r = store_cmd("INCR %s", pf_key(k, "dep_gen"));
        rc = store_ok(r) ? 0 : -1;
        freeReplyObject(r);
    }
    return rc;
}

static json_t *fanout_reply(json_t *rec, const char *path, const struct pf_fanout *f)
{
    json_t *r = json_pack("{s:O, s:s, s:I, s:I}", "deployment", rec, "fanout", path, "matched",
                          (json_int_t)f->matched, "pushed", (json_int_t)f->pushed);
    if (r && strcmp(path, "scan") == 0) {
        json_object_set_new(r, "moved", json_integer((json_int_t)f->moved));
        json_object_set_new(r, "move_failed", json_integer((json_int_t)f->move_failed));
    }
    return r;
}

static json_t *scan_and_reply(json_t *rec)
{
    struct pf_fanout f;
    int64_t t0 = pf_now_ms();
    if (pf_fanout_scan(json_integer_value(json_object_get(rec, "id")), &f) < 0)
        return store_down();
    plog(PLOG_INFO, "deployment_fanout",
         "id=%" JSON_INTEGER_FORMAT " path=scan matched=%zu pushed=%zu moves=%zu moved=%zu move_failed=%zu"
         " ms=%" PRId64 " move_wait_ms=%" PRId64,
         json_integer_value(json_object_get(rec, "id")), f.matched, f.pushed, f.moves, f.moved, f.move_failed,
         pf_now_ms() - t0, f.move_wait_ms);
    return fanout_reply(rec, "scan", &f);
}

static json_t *deployment_create(json_t *b)
{
    const char *name = body_str(b, "name");
    if (!name || !*name || strlen(name) > 128)
        return api_error("bad_request", "name must be a non-empty string of at most 128 bytes");
    char msg[256];
    json_t *fw = json_deep_copy(json_object_get(b, "firmware"));
    if (pd_firmware_check(fw, msg, sizeof(msg)) < 0) {
        json_decref(fw);
        return api_error("bad_request", "%s", msg);
    }
    json_t *cond = json_object_get(b, "conditions");
    cond = cond && !json_is_null(cond) ? json_deep_copy(cond) : json_object();
    if (pd_conditions_check(cond, msg, sizeof(msg)) < 0) {
        json_decref(fw);
        json_decref(cond);
        return api_error("bad_request", "%s", msg);
    }
    char k[PF_KEY_MAX];
    redisReply *r = store_cmd("INCR %s", pf_key(k, "dep_seq"));
    if (!store_ok(r) || r->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(r);
        json_decref(fw);
        json_decref(cond);
        return store_down();
    }
    long long id = r->integer;
    freeReplyObject(r);
    r = store_cmd("HSETNX %s %s %lld", pf_key(k, "dep_names"), name, id);
    if (!store_ok(r) || r->type != REDIS_REPLY_INTEGER || r->integer != 1) {
        bool down = !store_ok(r);
        freeReplyObject(r);
        json_decref(fw);
        json_decref(cond);
        return down ? store_down() : api_error("conflict", "a deployment named %s exists", name);
    }
    freeReplyObject(r);
    json_t *rec = json_pack("{s:I, s:s, s:o, s:o, s:I}", "id", (json_int_t)id, "name", name, "firmware", fw,
                            "conditions", cond, "created_at", (json_int_t)pf_now_ms());
    if (!rec || save_deployment(rec) < 0) {
        json_decref(rec);
        return store_down();
    }
    plog(PLOG_INFO, "deployment_created", "id=%lld name=\"%s\"", id, name);
    json_t *out = scan_and_reply(rec);
    json_decref(rec);
    return out;
}

static json_t *load_deployment(json_t *b, json_t **err)
{
    json_t *idv = json_object_get(b, "id");
    if (!json_is_integer(idv) && !(json_is_string(idv) && atoll(json_string_value(idv)) > 0)) {
        *err = api_error("bad_request", "id must be a deployment id");
        return NULL;
    }
    long long id = json_is_integer(idv) ? json_integer_value(idv) : atoll(json_string_value(idv));
    char k[PF_KEY_MAX], ids[24];
    snprintf(ids, sizeof(ids), "%lld", id);
    redisReply *r = store_cmd("HGET %s json", pf_key(k, "dep:%s", ids));
    if (!store_ok(r)) {
        freeReplyObject(r);
        *err = store_down();
        return NULL;
    }
    json_t *rec = r->type == REDIS_REPLY_STRING ? json_loads(r->str, 0, NULL) : NULL;
    freeReplyObject(r);
    if (!rec)
        *err = api_error("not_found", "unknown deployment %lld", id);
    return rec;
}

/* Publishes a shared-topic message on <prefix>.topic.deployment:<id>. */
static int topic_publish(int64_t id, const struct lp_topic_msg *m)
{
    struct lp_out o = {0};
    char subj[96];
    snprintf(subj, sizeof(subj), "%s.topic.deployment:%" PRId64, pf.prefix, id);
    int rc = lp_encode_topic_msg(&o, m) == 0 && natsConnection_Publish(pf_nc, subj, o.p, (int)o.n) == NATS_OK ? 0 : -1;
    lp_out_free(&o);
    return rc;
}

static json_t *deployment_update(json_t *b)
{
    json_t *err = NULL;
    json_t *rec = load_deployment(b, &err);
    if (!rec)
        return err;
    char msg[256];
    json_t *fw = json_object_get(b, "firmware"), *cond = json_object_get(b, "conditions");
    if (!fw && !cond) {
        json_decref(rec);
        return api_error("bad_request", "nothing to change: give firmware and/or conditions");
    }
    if (fw) {
        fw = json_deep_copy(fw);
        if (pd_firmware_check(fw, msg, sizeof(msg)) < 0) {
            json_decref(fw);
            json_decref(rec);
            return api_error("bad_request", "%s", msg);
        }
        json_object_set_new(rec, "firmware", fw);
    }
    if (cond) {
        cond = json_deep_copy(cond);
        if (pd_conditions_check(cond, msg, sizeof(msg)) < 0) {
            json_decref(cond);
            json_decref(rec);
            return api_error("bad_request", "%s", msg);
        }
        json_object_set_new(rec, "conditions", cond);
    }
    json_object_set_new(rec, "updated_at", json_integer(pf_now_ms()));
    if (save_deployment(rec) < 0) {
        json_decref(rec);
        return store_down();
    }
    json_t *out;
    if (cond) {
        out = scan_and_reply(rec);
    } else {
        /* firmware only: the devices of this deployment follow its topic; one publish reaches
         * them all, and the gateway skips those already on the target (skip_fw) */
        int64_t id = json_integer_value(json_object_get(rec, "id"));
        const struct pf_deployment *all, *d;
        size_t n;
        if (pf_deployments(&all, &n) < 0 || !(d = pf_deployment_by_id(all, n, id))) {
            json_decref(rec);
            return store_down();
        }
        struct lp_topic_msg m = {.kind = LP_TOPIC_PUSH, .event = lp_cspan("update"),
                                 .payload = {d->payload, d->payload_n}, .skip_fw = lp_cspan(d->uuid)};
        if (topic_publish(id, &m) < 0) {
            json_decref(rec);
            return api_error("internal", "could not publish on the deployment topic");
        }
        plog(PLOG_INFO, "deployment_fanout", "id=%" PRId64 " path=topic", id);
        out = fanout_reply(rec, "topic", &(struct pf_fanout){0});
    }
    json_decref(rec);
    return out;
}

static json_t *deployment_list(json_t *b)
{
    (void)b;
    const struct pf_deployment *all;
    size_t n;
    if (pf_deployments(&all, &n) < 0)
        return store_down();
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append(list, all[i].record);
    return json_pack("{s:o}", "deployments", list);
}

static json_t *deployment_delete(json_t *b)
{
    json_t *err = NULL;
    json_t *rec = load_deployment(b, &err);
    if (!rec)
        return err;
    int64_t id = json_integer_value(json_object_get(rec, "id"));
    char k[PF_KEY_MAX], ids[24];
    snprintf(ids, sizeof(ids), "%" PRId64, id);
    store_append("SREM %s %s", pf_key(k, "deps"), ids);
    store_append("DEL %s", pf_key(k, "dep:%s", ids));
    store_append("HDEL %s %s", pf_key(k, "dep_names"), json_string_value(json_object_get(rec, "name")));
    store_append("INCR %s", pf_key(k, "dep_gen"));
    bool ok = true;
    for (int i = 0; i < 4; i++) {
        redisReply *r = store_reply();
        ok = ok && store_ok(r);
        freeReplyObject(r);
    }
    if (!ok) {
        json_decref(rec);
        return store_down();
    }
    /* Its online devices are moved by their workers (LINK.md §6.1), like a scan's: no call per
     * device. Deleted first, so that the scan and any join from now on see the new set. */
    struct pf_fanout f;
    int64_t t0 = pf_now_ms();
    int scanned = pf_fanout_deleted(id, &f);
    /* Then a `follow` notify on the dead topic, for the channels the moves did not take off it
     * (a worker that did not answer, a join that read the deployments before the delete): it
     * reaches only those, normally none, and each re-evaluates through a call. */
    struct lp_out follow = {0};
    pf_msg_follow(&follow);
    struct lp_topic_msg m = {.kind = LP_TOPIC_NOTIFY, .msg = {follow.p, follow.n}};
    topic_publish(id, &m);
    lp_out_free(&follow);
    if (scanned < 0) {
        plog(PLOG_WARN, "deployment_deleted", "id=%" PRId64 " path=scan error=\"store unavailable\"", id);
        json_decref(rec);
        return api_error("internal", "deployment %" PRId64 " deleted, but its online devices could not be moved"
                         " (store unavailable); they re-evaluate on the follow notify", id);
    }
    plog(PLOG_INFO, "deployment_deleted",
         "id=%" PRId64 " path=scan matched=%zu pushed=%zu moves=%zu moved=%zu move_failed=%zu ms=%" PRId64
         " move_wait_ms=%" PRId64,
         id, f.matched, f.pushed, f.moves, f.moved, f.move_failed, pf_now_ms() - t0, f.move_wait_ms);
    json_t *out = fanout_reply(rec, "scan", &f);
    json_decref(rec);
    if (out)
        json_object_set_new(out, "ok", json_true());
    return out;
}

/* ---- device-directed messages ---- */

/* NULL when the device record exists; otherwise the error reply (not_found, or Redis down). */
static json_t *require_device(const char *id)
{
    char k[PF_KEY_MAX];
    redisReply *r = store_cmd("EXISTS %s", pf_key(k, "dev:%s", id));
    if (!store_ok(r)) {
        freeReplyObject(r);
        return store_down();
    }
    bool exists = r->integer == 1;
    freeReplyObject(r);
    return exists ? NULL : api_error("not_found", "unknown device %s", id);
}

static json_t *send_to_device(const char *id, struct lp_inbox *m, bool *delivered)
{
    *delivered = false;
    json_t *missing = require_device(id);
    if (missing)
        return missing;
    struct pf_reg e;
    int found = pf_reg_lookup(id, &e);
    if (found < 0)
        return store_down();
    if (found == 0)
        return json_pack("{s:s}", "status", "offline");
    m->dev = lp_cspan(id);
    enum lp_inbox_status st;
    if (pf_inbox_request(&e, m, &st) < 0 || st != LP_IST_OK)
        return json_pack("{s:s}", "status", "gone");
    *delivered = true;
    return json_pack("{s:s}", "status", "ok");
}

static json_t *device_push(json_t *b, const char *event)
{
    json_t *err = NULL;
    const char *id = want_id(b, "id", &err);
    if (!id)
        return err;
    struct lp_out o = {0};
    lp_mp_map(&o, 0);
    struct lp_inbox m = {.kind = LP_IN_PUSH, .topic = lp_cspan("device"), .event = lp_cspan(event),
                         .payload = {o.p, o.n}};
    bool ok;
    json_t *out = send_to_device(id, &m, &ok);
    lp_out_free(&o);
    if (ok)
        pf_event(id, event, json_pack("{s:s}", "via", "api"));
    return out;
}

static json_t *device_update(json_t *b)
{
    json_t *err = NULL;
    const char *id = want_id(b, "id", &err);
    if (!id)
        return err;
    char msg[256];
    json_t *fw = json_deep_copy(json_object_get(b, "firmware"));
    if (pd_firmware_check(fw, msg, sizeof(msg)) < 0) {
        json_decref(fw);
        return api_error("bad_request", "%s", msg);
    }
    struct lp_out o = {0};
    pd_update_payload(&o, fw, -1);
    struct lp_inbox m = {.kind = LP_IN_PUSH, .topic = lp_cspan("device"), .event = lp_cspan("update"),
                         .payload = {o.p, o.n}};
    bool ok;
    json_t *out = o.failed ? api_error("internal", "out of memory") : send_to_device(id, &m, &ok);
    lp_out_free(&o);
    if (!o.failed && ok) {
        const char *uuid = json_string_value(json_object_get(fw, "uuid"));
        json_t *inf = json_pack("{s:s, s:n, s:I}", "uuid", uuid, "deployment_id", "at", (json_int_t)pf_now_ms());
        char *s = inf ? json_dumps(inf, JSON_COMPACT) : NULL;
        char k[PF_KEY_MAX];
        if (s)
            freeReplyObject(store_cmd("HSET %s inflight %s", pf_key(k, "dev:%s", id), s));
        free(s);
        json_decref(inf);
        pf_event(id, "update_sent", json_pack("{s:s, s:n, s:s}", "uuid", uuid, "deployment_id", "via", "manual"));
    }
    json_decref(fw);
    return out;
}

static json_t *device_script(json_t *b)
{
    json_t *err = NULL;
    const char *id = want_id(b, "id", &err);
    if (!id)
        return err;
    const char *text = body_str(b, "text");
    if (!text || strlen(text) >= LP_MAX_STR)
        return api_error("bad_request", "text must be a string of less than %d bytes", LP_MAX_STR);
    struct lp_out o = {0};
    lp_mp_map(&o, 2);
    lp_mp_cstr(&o, "k");
    lp_mp_cstr(&o, "run_script");
    lp_mp_cstr(&o, "text");
    lp_mp_cstr(&o, text);
    struct lp_inbox m = {.kind = LP_IN_NOTIFY, .topic = lp_cspan("device"), .msg = {o.p, o.n}};
    bool ok;
    json_t *out = send_to_device(id, &m, &ok);
    lp_out_free(&o);
    return out;
}

/* ---- keys ---- */

static void random_b64(char *out /* 44 bytes */)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t r[33] = {0};
    RAND_bytes(r, 32);
    size_t k = 0;
    for (size_t i = 0; i < 33; i += 3) {
        uint32_t v = (uint32_t)r[i] << 16 | (uint32_t)r[i + 1] << 8 | r[i + 2];
        for (int j = 3; j >= 0 && k < 43; j--)
            out[k++] = b64[(v >> (6 * j)) & 63];
    }
    out[43] = 0;
}

static json_t *product_key_create(json_t *b)
{
    const char *name = body_str(b, "name");
    if (json_object_get(b, "name") && !json_is_null(json_object_get(b, "name")) &&
        (!name || !*name || strlen(name) > 128))
        return api_error("bad_request", "name must be a non-empty string of at most 128 bytes");
    if (!name)
        name = "default";
    char key[48] = "nhp_", secret[44], k[PF_KEY_MAX];
    random_b64(key + 4);
    random_b64(secret);
    redisReply *r = store_cmd("HSET %s secret %s product %s created_at %lld", pf_key(k, "pkey:%s", key), secret, name,
                              (long long)pf_now_ms());
    bool ok = store_ok(r);
    freeReplyObject(r);
    if (!ok)
        return store_down();
    plog(PLOG_INFO, "product_key_created", "product=\"%s\"", name);
    return json_pack("{s:s, s:s, s:s}", "key", key, "secret", secret, "product", name);
}

static json_t *device_key_create(json_t *b)
{
    json_t *err = NULL;
    const char *id = want_id(b, "id", &err);
    if (!id)
        return err;
    char key[48] = "nhd_", secret[44], k[PF_KEY_MAX];
    json_t *missing = require_device(id);
    if (missing)
        return missing;
    random_b64(key + 4);
    random_b64(secret);
    redisReply *r = store_cmd("HSET %s secret %s dev %s created_at %lld", pf_key(k, "dkey:%s", key), secret, id,
                  (long long)pf_now_ms());
    bool ok = store_ok(r);
    freeReplyObject(r);
    if (!ok)
        return store_down();
    return json_pack("{s:s, s:s, s:s}", "key", key, "secret", secret, "id", id);
}

static json_t *ping(json_t *b)
{
    (void)b;
    redisReply *r = store_cmd("PING");
    bool ok = store_ok(r);
    freeReplyObject(r);
    return json_pack("{s:b, s:b}", "ok", 1, "store", ok);
}

/* ---- dispatch ---- */

static const struct {
    const char *verb;
    json_t *(*fn)(json_t *);
} verbs[] = {
    {"ping", ping},
    {"devices.list", devices_list},
    {"devices.show", devices_show},
    {"devices.create", devices_create},
    {"deployment.create", deployment_create},
    {"deployment.update", deployment_update},
    {"deployment.list", deployment_list},
    {"deployment.delete", deployment_delete},
    {"device.update", device_update},
    {"device.reboot", NULL},
    {"device.identify", NULL},
    {"device.script", device_script},
    {"product_key.create", product_key_create},
    {"device_key.create", device_key_create},
};

void api_init(void)
{
    store_script_init(&s_create, CREATE_LUA);
}

void api_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub;
    (void)closure;
    const char *reply = natsMsg_GetReply(msg);
    const char *subj = natsMsg_GetSubject(msg);
    size_t pl = strlen(pf.prefix) + 5; /* "<p>.api." */
    const char *verb = strlen(subj) > pl ? subj + pl : "";
    json_t *out = NULL;
    json_t *body = NULL;
    int len = natsMsg_GetDataLength(msg);
    if (len == 0) {
        body = json_object();
    } else {
        json_error_t je;
        body = json_loadb(natsMsg_GetData(msg), (size_t)len, 0, &je);
        if (!json_is_object(body))
            out = api_error("bad_request", "the request body must be a JSON object");
    }
    if (!out) {
        for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
            if (strcmp(verbs[i].verb, verb) == 0) {
                if (!verbs[i].fn)
                    out = device_push(body, strcmp(verb, "device.reboot") == 0 ? "reboot" : "identify");
                else
                    out = verbs[i].fn(body);
                break;
            }
        }
        if (!out)
            out = api_error("bad_request", "unknown verb %s", verb);
    }
    json_t *e = json_object_get(out, "error");
    plog(e ? PLOG_INFO : PLOG_DEBUG, "api", "verb=%s%s%s%s", verb, e ? " error=\"" : "",
         e ? json_string_value(e) : "", e ? "\"" : "");
    char *s = out ? json_dumps(out, JSON_COMPACT) : NULL;
    if (reply && *reply) {
        if (s)
            natsConnection_Publish(nc, reply, s, (int)strlen(s));
        else
            natsConnection_PublishString(nc, reply, "{\"error\":\"internal error\",\"code\":\"internal\"}");
    }
    free(s);
    json_decref(out);
    json_decref(body);
    natsMsg_Destroy(msg);
}
