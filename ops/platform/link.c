/* The link calls (proto/LINK.md §4) with NervesHub's rules (devicelink-contract.md §2, §6).
 *
 * Opaque values this platform hands the gateway (all msgpack maps):
 *   socket info (auth `s`)        {"d": dev}
 *   device channel session        {"d": dev, "api": str, "dl": str|nil, "dep": int (-1: none),
 *                                  "sr": [script ref str...]}
 *   extensions channel session    {"d": dev, "x": {key: 1 (attachable) | 2 (attached)}}
 *   notify messages / timer keys  {"k": kind, ...}: after_join {fk, ak}, follow, run_script
 *                                  {text}, clear_script_ref {ref}, script_ref {ref} (timer key),
 *                                  ext {ext, tag} (extension ticks and timers),
 *                                  local_shell {op} (an operator opens the local shell; sent by
 *                                  operators through the gateway inbox, ops/README.md).
 *
 * The local shell (LINK.md §9.1): device output is published to operators on
 * <prefix>.local_shell.<dev>.out and kept by the gateway (scrollback_append); an operator's
 * local_shell notify is answered with scrollback_replay to <prefix>.local_shell.<dev>.op.<op>. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform.h"
#include "plog.h"
#include "pure_deploy.h"
#include "pure_mpjson.h"
#include "pure_nh1.h"
#include "pure_semver.h"
#include "store.h"

#define MAX_FX 16
#define MAX_BUFS 24
#define MAX_SCRIPT_REFS 8
#define SCRIPT_REF_LEN 8 /* 4 random bytes, base64 without padding: 6 chars */

struct call {
    enum lp_call kind;
    struct lp_request req;
    char dev[LPR_MAX_DEV + 1];
    struct lp_reply rep;
    struct lp_effect fx[MAX_FX];
    struct lp_out bufs[MAX_BUFS];
    size_t nbufs;
    bool failed; /* out of scratch buffers or effects */
};

static void shell_closed(const char *dev, const char *sub, const char *reason, const char *detail);

static struct lp_out *cbuf(struct call *c)
{
    if (c->nbufs == MAX_BUFS) {
        c->failed = true;
        static _Thread_local struct lp_out sink;
        lp_out_reset(&sink);
        return &sink;
    }
    return &c->bufs[c->nbufs++];
}

static struct lp_span out_span(const struct lp_out *o)
{
    return (struct lp_span){o->p, o->n};
}

static struct lp_effect *fx_add(struct call *c, enum lp_effect_kind k)
{
    if (c->rep.n_effects == MAX_FX) {
        c->failed = true;
        return NULL;
    }
    struct lp_effect *e = &c->fx[c->rep.n_effects++];
    memset(e, 0, sizeof(*e));
    e->kind = k;
    c->rep.effects = c->fx;
    return e;
}

static void fx_push(struct call *c, const char *event, struct lp_span payload)
{
    struct lp_effect *e = fx_add(c, LP_FX_PUSH);
    if (e) {
        e->event = lp_cspan(event);
        e->payload = payload;
    }
}

static struct lp_span empty_map(struct call *c)
{
    struct lp_out *o = cbuf(c);
    lp_mp_map(o, 0);
    return out_span(o);
}

static void fx_topic(struct call *c, enum lp_effect_kind k, const char *topic)
{
    struct lp_out *o = cbuf(c); /* the topic string must outlive this frame */
    lp_mp_raw(o, topic, strlen(topic));
    struct lp_effect *e = fx_add(c, k);
    if (e)
        e->topic = out_span(o);
}

static void fx_timer(struct call *c, enum lp_effect_kind k, struct lp_span key, struct lp_span msg, uint32_t ms)
{
    struct lp_effect *e = fx_add(c, k);
    if (e) {
        e->key = key;
        e->msg = msg;
        e->ms = ms;
    }
}

static bool span_is(struct lp_span s, const char *c)
{
    size_t n = strlen(c);
    return s.n == n && memcmp(s.p, c, n) == 0;
}

static void span_cpy(char *dst, size_t cap, struct lp_span s)
{
    size_t n = s.n < cap - 1 ? s.n : cap - 1;
    if (n)
        memcpy(dst, s.p, n);
    dst[n] = 0;
}

/* A string field of a msgpack map into dst ("" when absent or not a string). */
static void map_str(struct lp_span map, const char *key, char *dst, size_t cap)
{
    struct lp_span v, s = {0};
    if (lp_mp_map_get(map, key, &v) == 1)
        lp_mp_read_str(v, &s);
    span_cpy(dst, cap, s);
}

static bool map_int(struct lp_span map, const char *key, int64_t *out)
{
    struct lp_span v;
    return lp_mp_map_get(map, key, &v) == 1 && lp_mp_read_int(v, out) == 0;
}

/* ---- sessions and messages ---- */

struct dsess {
    char api[32];
    char dl[128];
    int64_t dep;
    char refs[MAX_SCRIPT_REFS][SCRIPT_REF_LEN + 1];
    int nrefs;
};

static void dsess_decode(struct lp_span s, struct dsess *d)
{
    memset(d, 0, sizeof(*d));
    map_str(s, "api", d->api, sizeof(d->api));
    if (!d->api[0])
        snprintf(d->api, sizeof(d->api), "1.0.0");
    map_str(s, "dl", d->dl, sizeof(d->dl));
    if (!map_int(s, "dep", &d->dep))
        d->dep = -1;
    struct lp_span sr;
    if (lp_mp_map_get(s, "sr", &sr) == 1 && sr.n > 0 && (sr.p[0] & 0xf0) == 0x90) {
        /* fixarray of fixstr (we wrote it): walk it */
        size_t cnt = sr.p[0] & 0x0f, off = 1;
        for (size_t i = 0; i < cnt && d->nrefs < MAX_SCRIPT_REFS; i++) {
            struct lp_span el = {sr.p + off, sr.n - off}, str;
            size_t len = lp_mp_object_len(el.p, el.n);
            if (!len)
                break;
            el.n = len;
            if (lp_mp_read_str(el, &str) == 0)
                span_cpy(d->refs[d->nrefs++], SCRIPT_REF_LEN + 1, str);
            off += len;
        }
    }
}

static struct lp_span dsess_encode(struct call *c, const struct dsess *d)
{
    struct lp_out *o = cbuf(c);
    lp_mp_map(o, 5);
    lp_mp_cstr(o, "d");
    lp_mp_cstr(o, c->dev);
    lp_mp_cstr(o, "api");
    lp_mp_cstr(o, d->api);
    lp_mp_cstr(o, "dl");
    if (d->dl[0])
        lp_mp_cstr(o, d->dl);
    else
        lp_mp_nil(o);
    lp_mp_cstr(o, "dep");
    lp_mp_int(o, d->dep);
    lp_mp_cstr(o, "sr");
    lp_mp_array(o, (uint32_t)d->nrefs);
    for (int i = 0; i < d->nrefs; i++)
        lp_mp_cstr(o, d->refs[i]);
    return out_span(o);
}

struct xsess {
    uint8_t state[PD_EXT_COUNT]; /* 0: not attachable, 1: detached, 2: attached */
    /* logging token bucket, carried in the channel's session so that any platform replica
     * applies the same per-device limit without shared state: milli-tokens and when they were
     * last counted (has_bucket false until the first line) */
    bool has_bucket;
    int64_t log_mtokens;
    int64_t log_at_ms;
};

static void xsess_decode(struct lp_span s, struct xsess *x)
{
    memset(x, 0, sizeof(*x));
    struct lp_span m;
    if (lp_mp_map_get(s, "x", &m) != 1)
        return;
    for (int i = 0; i < PD_EXT_COUNT; i++) {
        int64_t v;
        if (map_int(m, pd_ext_names[i], &v) && (v == 1 || v == 2))
            x->state[i] = (uint8_t)v;
    }
    int64_t t, at;
    if (map_int(s, "lt", &t) && map_int(s, "la", &at) && t >= 0 && t <= (int64_t)UINT32_MAX * 1000) {
        x->has_bucket = true;
        x->log_mtokens = t;
        x->log_at_ms = at;
    }
}

/* NervesHub's node-local bucket `device_<id>` (refill pf.log_rate_per_s, capacity pf.log_burst,
 * cost 1): true when the line may be stored. Excess lines are dropped silently, as there. */
static bool log_bucket_take(struct xsess *x, int64_t now_ms)
{
    if (pf.log_rate_per_s == 0)
        return true;
    int64_t cap = (int64_t)pf.log_burst * 1000;
    if (!x->has_bucket) {
        x->has_bucket = true;
        x->log_mtokens = cap;
    } else if (now_ms > x->log_at_ms) { /* replicas' clocks may disagree: never refill backwards */
        int64_t elapsed = now_ms - x->log_at_ms;
        int64_t add = elapsed > 3600000 ? cap : elapsed * (int64_t)pf.log_rate_per_s;
        x->log_mtokens = x->log_mtokens + add > cap ? cap : x->log_mtokens + add;
    }
    x->log_at_ms = now_ms;
    if (x->log_mtokens > cap)
        x->log_mtokens = cap;
    if (x->log_mtokens < 1000)
        return false;
    x->log_mtokens -= 1000;
    return true;
}

static struct lp_span xsess_encode(struct call *c, const struct xsess *x)
{
    struct lp_out *o = cbuf(c);
    uint32_t n = 0;
    for (int i = 0; i < PD_EXT_COUNT; i++)
        n += x->state[i] != 0;
    lp_mp_map(o, x->has_bucket ? 4 : 2);
    lp_mp_cstr(o, "d");
    lp_mp_cstr(o, c->dev);
    lp_mp_cstr(o, "x");
    lp_mp_map(o, n);
    for (int i = 0; i < PD_EXT_COUNT; i++) {
        if (x->state[i]) {
            lp_mp_cstr(o, pd_ext_names[i]);
            lp_mp_uint(o, x->state[i]);
        }
    }
    if (x->has_bucket) {
        lp_mp_cstr(o, "lt");
        lp_mp_uint(o, (uint64_t)x->log_mtokens);
        lp_mp_cstr(o, "la");
        lp_mp_int(o, x->log_at_ms);
    }
    return out_span(o);
}

/* {"k": kind, a: sa} */
static struct lp_span msg_kv(struct call *c, const char *k, const char *a, const char *sa)
{
    struct lp_out *o = cbuf(c);
    lp_mp_map(o, 2);
    lp_mp_cstr(o, "k");
    lp_mp_cstr(o, k);
    lp_mp_cstr(o, a);
    lp_mp_cstr(o, sa);
    return out_span(o);
}

static struct lp_span msg_ext(struct call *c, const char *ext, const char *tag)
{
    struct lp_out *o = cbuf(c);
    lp_mp_map(o, 3);
    lp_mp_cstr(o, "k");
    lp_mp_cstr(o, "ext");
    lp_mp_cstr(o, "ext");
    lp_mp_cstr(o, ext);
    lp_mp_cstr(o, "tag");
    lp_mp_cstr(o, tag);
    return out_span(o);
}

static void set_session(struct call *c, struct lp_span s)
{
    c->rep.has_session = true;
    c->rep.session = s;
}

static void refuse(struct call *c, const char *reason)
{
    c->rep.st = LP_ST_REFUSED;
    c->rep.reason = lp_cspan(reason);
}

static void fail(struct call *c, const char *reason)
{
    c->rep.st = LP_ST_ERROR;
    c->rep.reason = lp_cspan(reason);
    c->rep.n_effects = 0;
    c->rep.has_session = false;
}

static char *payload_json_str(struct lp_span p)
{
    json_t *j = mpj_to_json(p.p, p.n);
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    return s;
}

/* ---- scripts (device registration) ---- */

static struct store_script s_cert_auth, s_psk_register, s_disconnect;

/* KEYS: fp key, dev hash, dev fps set, devs set. ARGV: cn (valid id or ""), fp, now, autoreg. */
static const char CERT_AUTH_LUA[] =
    "local d = redis.call('GET', KEYS[1])\n"
    "if d then return {1, d} end\n"
    "if ARGV[4] ~= '1' then return {0, 'unknown device certificate'} end\n"
    "if ARGV[1] == '' then return {0, 'certificate has no usable common name'} end\n"
    "if redis.call('EXISTS', KEYS[2]) == 1 then\n"
    "  if redis.call('SCARD', KEYS[3]) > 0 then\n"
    "    return {0, 'identifier ' .. ARGV[1] .. ' is registered with another certificate'}\n"
    "  end\n"
    "else\n"
    "  redis.call('HSET', KEYS[2], 'identifier', ARGV[1], 'product', 'default', 'tags', '[]',"
    " 'created_at', ARGV[3])\n"
    "  redis.call('SADD', KEYS[4], ARGV[1])\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[1])\n"
    "redis.call('SADD', KEYS[3], ARGV[2])\n"
    "return {2, ARGV[1]}\n";

/* KEYS: dev hash, devs set. ARGV: id, product, now. 1 known, 2 created, 0 other product. */
static const char PSK_REGISTER_LUA[] =
    "local p = redis.call('HGET', KEYS[1], 'product')\n"
    "if p then if p == ARGV[2] then return 1 else return 0 end end\n"
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'identifier', ARGV[1], 'product', ARGV[2], 'tags', '[]',"
    " 'created_at', ARGV[3])\n"
    "redis.call('SADD', KEYS[2], ARGV[1])\n"
    "return 2\n";

/* KEYS: dev hash. ARGV: conn, now, reason. Marks the device disconnected if `conn` is still its
 * connection (a newer connection's record is left alone). */
static const char DISCONNECT_LUA[] =
    "if redis.call('HGET', KEYS[1], 'conn') ~= ARGV[1] then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'conn_status', 'disconnected', 'disconnected_at', ARGV[2],"
    " 'last_seen', ARGV[2], 'disconnect_reason', ARGV[3])\n"
    "return 1\n";

void link_init(void)
{
    store_script_init(&s_cert_auth, CERT_AUTH_LUA);
    store_script_init(&s_psk_register, PSK_REGISTER_LUA);
    store_script_init(&s_disconnect, DISCONNECT_LUA);
}

/* ---- auth ---- */

static struct lp_span socket_info(struct call *c)
{
    struct lp_out *o = cbuf(c);
    lp_mp_map(o, 1);
    lp_mp_cstr(o, "d");
    lp_mp_cstr(o, c->dev);
    return out_span(o);
}

static void auth_ok(struct call *c, const char *dev, const char *how)
{
    snprintf(c->dev, sizeof(c->dev), "%s", dev);
    c->rep.st = LP_ST_OK;
    c->rep.dev = lp_cspan(c->dev);
    set_session(c, socket_info(c));
    plog(PLOG_INFO, "auth_ok", "dev=%s via=%s peer=%.*s", c->dev, how, (int)c->req.peer.n, c->req.peer.p);
}

static void auth_refused(struct call *c, const char *reason, const char *how)
{
    static _Thread_local char buf[256];
    snprintf(buf, sizeof(buf), "%s", reason);
    refuse(c, buf);
    plog(PLOG_INFO, "auth_refused", "via=%s peer=%.*s reason=\"%s\"", how, (int)c->req.peer.n, c->req.peer.p,
         buf);
}

static void auth_cert(struct call *c)
{
    char fp[64], cn[LPR_MAX_DEV + 1] = "", k1[PF_KEY_MAX], k2[PF_KEY_MAX], k3[PF_KEY_MAX], k4[PF_KEY_MAX];
    span_cpy(fp, sizeof(fp), c->req.fp);
    if (c->req.cn.n && lp_valid_dev(c->req.cn))
        span_cpy(cn, sizeof(cn), c->req.cn);
    char now[24];
    snprintf(now, sizeof(now), "%" PRId64, pf_now_ms());
    const char *args[] = {pf_key(k1, "fp:%s", fp), pf_key(k2, "dev:%s", cn), pf_key(k3, "dev:%s:fps", cn),
                          pf_key(k4, "devs"),      cn, fp, now, pf.auto_register ? "1" : "0"};
    redisReply *r = store_eval(&s_cert_auth, 4, 8, args, NULL);
    if (!store_ok(r) || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        freeReplyObject(r);
        fail(c, "store unavailable");
        return;
    }
    long long code = r->element[0]->integer;
    const char *s = r->element[1]->str;
    if (code == 0) {
        auth_refused(c, s, "cert");
    } else {
        auth_ok(c, s, "cert");
        if (code == 2)
            pf_event(c->dev, "registered", json_pack("{s:s, s:s}", "via", "certificate", "fingerprint", fp));
    }
    freeReplyObject(r);
}

static void auth_shared_secret(struct call *c)
{
    struct nh1_headers h = {0};
    struct lp_kv kv;
    struct lp_iter it = c->req.x_iter;
    while (lp_kv_next(&it, &kv)) {
        if (span_is(kv.name, "x-nh-alg"))
            h.alg = kv.value;
        else if (span_is(kv.name, "x-nh-key"))
            h.key = kv.value;
        else if (span_is(kv.name, "x-nh-time"))
            h.time = kv.value;
        else if (span_is(kv.name, "x-nh-signature"))
            h.signature = kv.value;
    }
    if (!pf.shared_secrets) {
        auth_refused(c, "shared secret authentication is not enabled", "shared_secret");
        return;
    }
    if (h.key.n == 0 || h.key.n > NH1_MAX_KEY) {
        auth_refused(c, "missing x-nh-key header", "shared_secret");
        return;
    }
    if (h.signature.n == 0) {
        auth_refused(c, "missing x-nh-signature header", "shared_secret");
        return;
    }
    char key[NH1_MAX_KEY + 1], k[PF_KEY_MAX];
    span_cpy(key, sizeof(key), h.key);
    bool product = strncmp(key, "nhp_", 4) == 0;
    redisReply *r = store_cmd("HMGET %s secret %s", pf_key(k, "%s:%s", product ? "pkey" : "dkey", key),
                              product ? "product" : "dev");
    if (!store_ok(r)) {
        freeReplyObject(r);
        fail(c, "store unavailable");
        return;
    }
    const char *secret = store_str(r, 0), *owner = store_str(r, 1);
    if (!secret || !owner) {
        freeReplyObject(r);
        auth_refused(c, "unknown shared secret key", "shared_secret");
        return;
    }
    char ident[LPR_MAX_DEV + 1];
    struct lp_span id;
    enum nh1_result v = nh1_verify(&h, (const uint8_t *)secret, strlen(secret), pf_now_ms(), pf.max_age_s, ident,
                                   sizeof(ident), &id);
    char own[LPR_MAX_DEV + 1];
    snprintf(own, sizeof(own), "%s", owner);
    freeReplyObject(r);
    if (v != NH1_OK) {
        auth_refused(c, nh1_reason(v), "shared_secret");
        return;
    }
    if (!lp_valid_dev(id)) {
        auth_refused(c, "the signed identifier is not a valid device id", "shared_secret");
        return;
    }
    if (!product) {
        if (strcmp(own, ident) != 0) {
            auth_refused(c, "the signed identifier does not match the device key", "shared_secret");
            return;
        }
        auth_ok(c, ident, "device_key");
        return;
    }
    char k2[PF_KEY_MAX], now[24];
    snprintf(now, sizeof(now), "%" PRId64, pf_now_ms());
    const char *args[] = {pf_key(k, "dev:%s", ident), pf_key(k2, "devs"), ident, own, now};
    r = store_eval(&s_psk_register, 2, 5, args, NULL);
    if (!store_ok(r) || r->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(r);
        fail(c, "store unavailable");
        return;
    }
    long long code = r->integer;
    freeReplyObject(r);
    if (code == 0) {
        char why[LPR_MAX_DEV + 64];
        snprintf(why, sizeof(why), "a device with the identifier %s already exists in another product", ident);
        auth_refused(c, why, "shared_secret");
        return;
    }
    auth_ok(c, ident, "product_key");
    if (code == 2)
        pf_event(c->dev, "registered", json_pack("{s:s, s:s}", "via", "product_key", "product", own));
}

static void on_auth(struct call *c)
{
    if (c->req.has_cert)
        auth_cert(c);
    else if (c->req.x_iter.left > 0)
        auth_shared_secret(c);
    else
        auth_refused(c, "no certificate pair or shared secrets connection settings were provided", "none");
}

/* ---- connect / disconnect / heartbeat ---- */

static void conn_ref(const struct call *c, char *buf, size_t cap)
{
    snprintf(buf, cap, "%.*s/%" PRIu64, (int)c->req.gw.n, c->req.gw.p, c->req.cref);
}

static void on_connect(struct call *c)
{
    char k[PF_KEY_MAX], ref[128], gw[LPR_MAX_GW + 1], peer[128];
    conn_ref(c, ref, sizeof(ref));
    span_cpy(gw, sizeof(gw), c->req.gw);
    span_cpy(peer, sizeof(peer), c->req.peer);
    long long now = pf_now_ms();
    pf_key(k, "dev:%s", c->dev);
    redisReply *r = store_cmd("HSET %s conn %s conn_status connecting connected_at %lld last_seen %lld "
                              "peer %s gateway %s worker %u",
                              k, ref, now, now, peer, gw, (unsigned)c->req.worker);
    if (!store_ok(r)) {
        freeReplyObject(r);
        fail(c, "store unavailable");
        return;
    }
    freeReplyObject(r);
    freeReplyObject(store_cmd("HDEL %s disconnected_at disconnect_reason", k));
    c->rep.st = LP_ST_OK;
    pf_event(c->dev, "connect", json_pack("{s:s, s:s, s:i}", "peer", peer, "gateway", gw, "worker", (int)c->req.worker));
}

static void on_disconnect(struct call *c)
{
    char k[PF_KEY_MAX], ref[128], reason[64], now[24];
    conn_ref(c, ref, sizeof(ref));
    span_cpy(reason, sizeof(reason), c->req.reason);
    snprintf(now, sizeof(now), "%" PRId64, pf_now_ms());
    const char *args[] = {pf_key(k, "dev:%s", c->dev), ref, now, reason};
    redisReply *r = store_eval(&s_disconnect, 1, 4, args, NULL);
    bool current = store_ok(r) && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    pf_event(c->dev, "disconnect", json_pack("{s:s, s:b}", "reason", reason, "stale", !current));
    if (current) /* a stale one (kicked by a newer connection) must not end the new one's shell */
        shell_closed(c->dev, "out", "disconnected", reason);
}

static void on_heartbeat(struct call *c)
{
    struct lp_hb hb;
    struct lp_iter it = c->req.hb_iter;
    long long now = pf_now_ms();
    size_t n = 0;
    char k[PF_KEY_MAX], dev[LPR_MAX_DEV + 1];
    while (lp_hb_next(&it, &hb)) {
        span_cpy(dev, sizeof(dev), hb.dev);
        if (store_append("HSET %s last_seen %lld", pf_key(k, "dev:%s", dev), now) == 0)
            n++;
    }
    for (size_t i = 0; i < n; i++) {
        redisReply *r = store_reply();
        if (!r)
            break;
        freeReplyObject(r);
    }
    plog(PLOG_DEBUG, "heartbeat", "gw=%.*s devices=%zu", (int)c->req.gw.n, c->req.gw.p, n);
}

/* ---- device channel ---- */

static const char *validation_name(enum pd_validation v)
{
    return v == PD_VALID_YES ? "validated" : v == PD_VALID_NO ? "not_validated" : "unknown";
}

static void join_device(struct call *c)
{
    struct pd_join j;
    if (pd_join_parse(c->req.payload, &j) < 0) {
        refuse(c, "join payload is not a map");
        return;
    }
    char k[PF_KEY_MAX];
    pf_key(k, "dev:%s", c->dev);
    redisReply *r = store_cmd("HMGET %s identifier fw_uuid tags inflight", k);
    if (!store_ok(r)) {
        freeReplyObject(r);
        fail(c, "store unavailable");
        return;
    }
    if (!store_str(r, 0)) {
        freeReplyObject(r);
        refuse(c, "unknown device");
        return;
    }
    char old_uuid[128], uuid[128], version[128], inflight[512];
    snprintf(old_uuid, sizeof(old_uuid), "%s", store_str(r, 1) ? store_str(r, 1) : "");
    snprintf(inflight, sizeof(inflight), "%s", store_str(r, 3) ? store_str(r, 3) : "");
    json_t *tags = store_str(r, 2) ? json_loads(store_str(r, 2), 0, NULL) : NULL;
    freeReplyObject(r);
    span_cpy(uuid, sizeof(uuid), j.uuid);
    span_cpy(version, sizeof(version), j.version);

    const struct pf_deployment *deps;
    size_t ndeps;
    if (pf_deployments(&deps, &ndeps) < 0) {
        json_decref(tags);
        fail(c, "store unavailable");
        return;
    }
    const struct pf_deployment *d = pf_deployment_for(deps, ndeps, tags, version);
    json_decref(tags);

    /* firmware metadata, validation, deployment membership: one HSET */
    static const char *const names[] = {"fw_uuid", "fw_product", "fw_version", "fw_architecture",
                                        "fw_platform", "fw_author", "fw_description", "fw_vcs_identifier",
                                        "fw_misc", "fwup_version", "api"};
    struct lp_span vals[] = {j.uuid, j.product, j.version, j.architecture, j.platform, j.author,
                             j.description, j.vcs_identifier, j.misc, j.fwup_version, j.api};
    const char *argv[40];
    size_t lens[40];
    int n = 0;
    char depid[24];
    argv[n] = "HSET", lens[n++] = 4;
    argv[n] = k, lens[n++] = strlen(k);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        argv[n] = names[i], lens[n++] = strlen(names[i]);
        argv[n] = vals[i].n ? (const char *)vals[i].p : "", lens[n++] = vals[i].n;
    }
    const char *val = validation_name(j.validated);
    argv[n] = "validated", lens[n++] = 9;
    argv[n] = val, lens[n++] = strlen(val);
    argv[n] = "auto_revert", lens[n++] = 11;
    argv[n] = j.auto_revert ? "1" : "0", lens[n++] = 1;
    snprintf(depid, sizeof(depid), "%" PRId64, d ? d->id : (int64_t)-1);
    argv[n] = "deployment_id", lens[n++] = 13;
    argv[n] = depid, lens[n++] = strlen(depid);
    r = store_argv(n, argv, lens);
    if (!store_ok(r)) {
        freeReplyObject(r);
        fail(c, "store unavailable");
        return;
    }
    freeReplyObject(r);
    bool updated = old_uuid[0] && uuid[0] && strcmp(old_uuid, uuid) != 0;
    if (updated || (inflight[0] && j.downloading.n == 0)) {
        /* a new firmware runs (the update succeeded), or nothing is downloading any more */
        freeReplyObject(store_cmd("HDEL %s inflight progress", k));
    }
    if (updated)
        pf_event(c->dev, "firmware_updated", json_pack("{s:s, s:s}", "from", old_uuid, "to", uuid));

    struct dsess s = {.dep = d ? d->id : -1};
    span_cpy(s.api, sizeof(s.api), j.api);
    span_cpy(s.dl, sizeof(s.dl), j.downloading);
    set_session(c, dsess_encode(c, &s));
    if (d) {
        char topic[48];
        snprintf(topic, sizeof(topic), "deployment:%" PRId64, d->id);
        fx_topic(c, LP_FX_SUBSCRIBE, topic);
    }
    struct lp_out *m = cbuf(c);
    lp_mp_map(m, 3);
    lp_mp_cstr(m, "k");
    lp_mp_cstr(m, "after_join");
    lp_mp_cstr(m, "fk");
    lp_mp_bool(m, j.fwup_keys_on_connect);
    lp_mp_cstr(m, "ak");
    lp_mp_bool(m, j.archive_keys_on_connect);
    struct lp_effect *e = fx_add(c, LP_FX_SEND_SELF);
    if (e)
        e->msg = out_span(m);
    c->rep.response = empty_map(c);
    c->rep.fw = j.uuid;
    c->rep.st = LP_ST_OK;
    pf_event(c->dev, "join",
             json_pack("{s:s, s:s, s:s, s:o}", "firmware_uuid", uuid, "firmware_version", version, "api",
                       s.api, "deployment_id", d ? json_integer(d->id) : json_null()));
}

static bool api_at_least(const char *api, const char *min)
{
    return sv_match(min, strlen(min), api, strlen(api)) == 1;
}

/* Pushes the deployment's update when the device should get it (join, follow). */
static int maybe_update(struct call *c, const struct dsess *s, const struct pf_deployment *d, const char *via)
{
    if (!d)
        return 0;
    int rc = pf_should_update(c->dev, d, lp_cspan(s->dl));
    if (rc == 1) {
        fx_push(c, "update", (struct lp_span){d->payload, d->payload_n});
        pf_event(c->dev, "update_sent",
                 json_pack("{s:s, s:I, s:s}", "uuid", d->uuid, "deployment_id", (json_int_t)d->id, "via", via));
    }
    return rc;
}

static void notify_after_join(struct call *c, struct dsess *s, struct lp_span msg)
{
    struct lp_span v;
    bool fk = false;
    if (lp_mp_map_get(msg, "fk", &v) == 1)
        lp_mp_read_bool(v, &fk);
    if (fk && pf.n_fwup_keys > 0) {
        struct lp_out *o = cbuf(c);
        lp_mp_map(o, 1);
        lp_mp_cstr(o, "keys");
        lp_mp_array(o, (uint32_t)pf.n_fwup_keys);
        for (int i = 0; i < pf.n_fwup_keys; i++)
            lp_mp_cstr(o, pf.fwup_keys[i]);
        fx_push(c, "fwup_public_keys", out_span(o));
    }
    if (api_at_least(s->api, ">= 2.2.0"))
        fx_push(c, "extensions:get", empty_map(c));
    char k[PF_KEY_MAX];
    redisReply *r = store_cmd("HSET %s conn_status connected last_seen %lld", pf_key(k, "dev:%s", c->dev),
                              (long long)pf_now_ms());
    freeReplyObject(r);
    const struct pf_deployment *deps;
    size_t n;
    if (pf_deployments(&deps, &n) < 0 || maybe_update(c, s, pf_deployment_by_id(deps, n, s->dep), "join") < 0) {
        fail(c, "store unavailable");
        return;
    }
    pf_event(c->dev, "online", NULL);
}

/* Re-evaluates the device's deployment and follows its topic: sent on the topic of a deleted
 * deployment after deployment.delete moved the channels it knew of (pf_fanout_deleted), so it
 * reaches only the channels those moves missed (a worker that did not answer, a join racing
 * the delete). */
static void notify_follow(struct call *c, struct dsess *s)
{
    char k[PF_KEY_MAX];
    redisReply *r = store_cmd("HMGET %s tags fw_version", pf_key(k, "dev:%s", c->dev));
    const struct pf_deployment *deps;
    size_t n;
    if (!store_ok(r) || pf_deployments(&deps, &n) < 0) {
        freeReplyObject(r);
        fail(c, "store unavailable");
        return;
    }
    json_t *tags = store_str(r, 0) ? json_loads(store_str(r, 0), 0, NULL) : NULL;
    const struct pf_deployment *d = pf_deployment_for(deps, n, tags, store_str(r, 1));
    json_decref(tags);
    freeReplyObject(r);
    int64_t want = d ? d->id : -1;
    /* The session's `dep` is the deployment at join; a scan may have moved the channel since
     * through the inbox (LINK.md §6.1) without a call. A follow that arrived on a deployment's
     * topic proves the channel follows that one, so it is left too. */
    int64_t via = -1;
    char topic[48];
    if (c->req.from.n > 11 && c->req.from.n < sizeof(topic) && memcmp(c->req.from.p, "deployment:", 11) == 0) {
        memcpy(topic, c->req.from.p, c->req.from.n);
        topic[c->req.from.n] = 0;
        via = strtoll(topic + 11, NULL, 10);
    }
    if (want != s->dep || (via >= 0 && via != want)) {
        if (s->dep >= 0 && s->dep != want) {
            snprintf(topic, sizeof(topic), "deployment:%" PRId64, s->dep);
            fx_topic(c, LP_FX_UNSUBSCRIBE, topic);
        }
        if (via >= 0 && via != want && via != s->dep) {
            snprintf(topic, sizeof(topic), "deployment:%" PRId64, via);
            fx_topic(c, LP_FX_UNSUBSCRIBE, topic);
        }
        if (d) {
            snprintf(topic, sizeof(topic), "deployment:%" PRId64, d->id);
            fx_topic(c, LP_FX_SUBSCRIBE, topic);
        }
        s->dep = want;
        freeReplyObject(store_cmd("HSET %s deployment_id %lld", k, (long long)want));
    }
    if (maybe_update(c, s, d, "follow") < 0)
        fail(c, "store unavailable");
}

static void new_script_ref(char *out)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint32_t v = (uint32_t)random() ^ (uint32_t)pf_now_ms();
    for (int i = 0; i < 6; i++)
        out[i] = b64[(v >> (6 * i)) & 63];
    out[6] = 0;
}

static void notify_run_script(struct call *c, struct dsess *s, struct lp_span msg)
{
    char text[LP_MAX_STR];
    map_str(msg, "text", text, sizeof(text));
    if (!api_at_least(s->api, ">= 2.1.0")) {
        pf_event(c->dev, "script_refused", json_pack("{s:s}", "reason", "incompatible device_api_version"));
        return;
    }
    if (s->nrefs == MAX_SCRIPT_REFS) { /* drop the oldest's bookkeeping */
        fx_timer(c, LP_FX_CANCEL_TIMER, msg_kv(c, "script_ref", "ref", s->refs[0]), (struct lp_span){0}, 0);
        memmove(s->refs[0], s->refs[1], sizeof(s->refs[0]) * (MAX_SCRIPT_REFS - 1));
        s->nrefs--;
    }
    char *ref = s->refs[s->nrefs++];
    new_script_ref(ref);
    struct lp_out *o = cbuf(c);
    lp_mp_map(o, 2);
    lp_mp_cstr(o, "text");
    lp_mp_cstr(o, text);
    lp_mp_cstr(o, "ref");
    lp_mp_cstr(o, ref);
    fx_push(c, "scripts/run", out_span(o));
    fx_timer(c, LP_FX_SEND_AFTER, msg_kv(c, "script_ref", "ref", ref), msg_kv(c, "clear_script_ref", "ref", ref),
             pf.script_timeout_ms);
    pf_event(c->dev, "script_sent", json_pack("{s:s}", "ref", ref));
}

static int find_ref(const struct dsess *s, const char *ref)
{
    for (int i = 0; i < s->nrefs; i++)
        if (strcmp(s->refs[i], ref) == 0)
            return i;
    return -1;
}

static void drop_ref(struct call *c, struct dsess *s, int i)
{
    fx_timer(c, LP_FX_CANCEL_TIMER, msg_kv(c, "script_ref", "ref", s->refs[i]), (struct lp_span){0}, 0);
    memmove(s->refs[i], s->refs[i + 1], sizeof(s->refs[0]) * (size_t)(s->nrefs - i - 1));
    s->nrefs--;
}

static void notify_device(struct call *c)
{
    struct dsess s;
    dsess_decode(c->req.session, &s);
    char kind[32], ref[SCRIPT_REF_LEN + 1];
    map_str(c->req.msg, "k", kind, sizeof(kind));
    c->rep.st = LP_ST_OK;
    if (strcmp(kind, "after_join") == 0) {
        notify_after_join(c, &s, c->req.msg);
    } else if (strcmp(kind, "follow") == 0) {
        notify_follow(c, &s);
    } else if (strcmp(kind, "run_script") == 0) {
        notify_run_script(c, &s, c->req.msg);
    } else if (strcmp(kind, "clear_script_ref") == 0) {
        map_str(c->req.msg, "ref", ref, sizeof(ref));
        int i = find_ref(&s, ref);
        if (i >= 0) {
            drop_ref(c, &s, i);
            pf_event(c->dev, "script_timeout", json_pack("{s:s}", "ref", ref));
        }
    } else {
        plog(PLOG_DEBUG, "notify_unhandled", "dev=%s kind=%s", c->dev, kind);
    }
    if (c->rep.st == LP_ST_OK)
        set_session(c, dsess_encode(c, &s));
}

/* HSET of the status fields plus an event; progress < 0 removes it. */
static void record_status(struct call *c, const char *status, int progress, struct lp_span payload,
                          const char *event, json_t *fields)
{
    char k[PF_KEY_MAX], *js = payload_json_str(payload);
    pf_key(k, "dev:%s", c->dev);
    long long now = pf_now_ms();
    json_t *ls = json_pack("{s:s, s:I, s:o}", "status", status, "at", (json_int_t)now, "payload",
                           js ? json_loads(js, JSON_DECODE_ANY, NULL) : json_null());
    char *lss = ls ? json_dumps(ls, JSON_COMPACT) : NULL;
    json_decref(ls);
    if (progress >= 0)
        freeReplyObject(store_cmd("HSET %s status %s progress %d last_status %s", k, status, progress, lss ? lss : "{}"));
    else {
        freeReplyObject(store_cmd("HSET %s status %s last_status %s", k, status, lss ? lss : "{}"));
        freeReplyObject(store_cmd("HDEL %s progress", k));
    }
    free(lss);
    free(js);
    if (pd_status_clears_inflight(status)) {
        redisReply *r = store_cmd("HGET %s inflight", k);
        json_t *inf = store_ok(r) && r->type == REDIS_REPLY_STRING ? json_loads(r->str, 0, NULL) : NULL;
        freeReplyObject(r);
        int64_t until = 0;
        if (strcmp(status, "rescheduled") == 0) {
            int64_t delay = 0;
            if (map_int(payload, "delay_for", &delay) && delay > 0)
                until = now + delay;
        } else if (inf && json_is_integer(json_object_get(inf, "deployment_id")) && pf.penalty_ms) {
            until = now + pf.penalty_ms; /* penalty box: deployment updates only */
        }
        json_decref(inf);
        freeReplyObject(store_cmd("HDEL %s inflight", k));
        if (until)
            freeReplyObject(store_cmd("HSET %s blocked_until %lld", k, (long long)until));
    }
    json_object_set_new(fields, "status", json_string(status));
    json_object_set_new(fields, "progress", progress >= 0 ? json_integer(progress) : json_null());
    pf_event(c->dev, event, fields);
}

static void message_device(struct call *c)
{
    struct lp_span ev = c->req.event, p = c->req.payload;
    char k[PF_KEY_MAX];
    pf_key(k, "dev:%s", c->dev);
    struct dsess s;
    dsess_decode(c->req.session, &s);
    c->rep.st = LP_ST_OK;
    if (span_is(ev, "fwup_progress") || span_is(ev, "update_progress")) {
        int64_t value;
        if (!map_int(p, "value", &value))
            goto unhandled;
        struct lp_span v, stage = {0}, status;
        if (lp_mp_map_get(p, "stage", &v) == 1)
            lp_mp_read_str(v, &stage);
        int progress;
        pd_progress_status(stage, value, &status, &progress);
        char st[64];
        span_cpy(st, sizeof(st), status);
        record_status(c, st, progress, p, "fwup_progress", json_pack("{s:I}", "value", (json_int_t)value));
    } else if (span_is(ev, "status_update")) {
        struct lp_span v, status;
        if (lp_mp_map_get(p, "status", &v) != 1 || lp_mp_read_str(v, &status) < 0)
            goto unhandled; /* NervesHub's channel crashes here; a platform should not */
        char st[64];
        if (pd_status_normalize(status, st, sizeof(st)) == PD_STATUS_UNKNOWN)
            goto unhandled;
        int64_t prog = -1;
        map_int(p, "progress", &prog);
        char reason[512];
        map_str(p, "reason", reason, sizeof(reason));
        record_status(c, st, (strcmp(st, "downloading") == 0 || strcmp(st, "updating") == 0) ? (int)prog : -1, p,
                      "status_update", json_pack("{s:s}", "reason", reason));
    } else if (span_is(ev, "firmware_validated")) {
        freeReplyObject(store_cmd("HSET %s validated validated", k));
        pf_event(c->dev, "firmware_validated", NULL);
    } else if (span_is(ev, "connection_types")) {
        char *js = payload_json_str(p);
        json_t *j = js ? json_loads(js, 0, NULL) : NULL;
        json_t *vals = json_object_get(j, "values");
        char *vs = json_is_array(vals) ? json_dumps(vals, JSON_COMPACT) : NULL;
        if (vs)
            freeReplyObject(store_cmd("HSET %s connection_types %s", k, vs));
        pf_event(c->dev, "connection_types", json_pack("{s:O}", "values", vals ? vals : json_null()));
        free(vs);
        free(js);
        json_decref(j);
    } else if (span_is(ev, "report_network_interface")) {
        struct lp_span v, iface = {0};
        if (lp_mp_map_get(p, "interface", &v) == 1)
            lp_mp_read_str(v, &iface);
        const char *h = pd_humanize_iface(iface);
        freeReplyObject(store_cmd("HSET %s network_interface %s", k, h));
        char name[64];
        span_cpy(name, sizeof(name), iface);
        pf_event(c->dev, "network_interface", json_pack("{s:s, s:s}", "interface", name, "type", h));
    } else if (span_is(ev, "rebooting")) {
        pf_event(c->dev, "rebooting", NULL);
    } else if (span_is(ev, "scripts/run")) {
        char ref[64];
        map_str(p, "ref", ref, sizeof(ref));
        char *js = payload_json_str(p);
        json_t *j = js ? json_loads(js, 0, NULL) : NULL;
        free(js);
        int i = find_ref(&s, ref);
        if (strcmp(ref, "connecting_code") == 0) {
            pf_event(c->dev, "connecting_code", j);
        } else if (i >= 0) {
            drop_ref(c, &s, i);
            pf_event(c->dev, "script_result", j);
        } else {
            json_decref(j); /* unknown ref: ignored (devicelink-contract §2.7) */
        }
    } else {
        goto unhandled;
    }
    set_session(c, dsess_encode(c, &s));
    return;
unhandled:
    freeReplyObject(store_cmd("HINCRBY %s unhandled 1", k));
    plog(PLOG_DEBUG, "message_unhandled", "dev=%s event=%.*s", c->dev, (int)ev.n, ev.p);
    c->rep.has_session = false; /* keep the session */
}

/* ---- extensions channel ---- */

static void join_extensions(struct call *c)
{
    struct xsess x = {0};
    struct lp_out *r = cbuf(c);
    uint32_t n = 0;
    for (int i = 0; i < PD_EXT_COUNT; i++) {
        struct lp_span v, ver;
        if (lp_mp_map_get(c->req.payload, pd_ext_names[i], &v) == 1 && lp_mp_read_str(v, &ver) == 0 &&
            pd_ext_attaches(lp_cspan(pd_ext_names[i]), ver, pf.extensions)) {
            x.state[i] = 1;
            n++;
        }
    }
    lp_mp_array(r, n); /* pd_ext_names is sorted: the attach list comes out sorted as upstream's */
    for (int i = 0; i < PD_EXT_COUNT; i++)
        if (x.state[i])
            lp_mp_cstr(r, pd_ext_names[i]);
    c->rep.response = out_span(r);
    set_session(c, xsess_encode(c, &x));
    c->rep.st = LP_ST_OK;
    plog(PLOG_DEBUG, "extensions_join", "dev=%s attach=%u", c->dev, n);
}

static struct lp_span detach_reply(struct call *c)
{
    struct lp_out *o = cbuf(c);
    lp_mp_cstr(o, "detach");
    return out_span(o);
}

/* ---- the local shell (LINK.md §9.1, ops/README.md) ---- */

/* Device output is published in pieces of at most this much (cut before a UTF-8 lead byte). */
#define SHELL_OUT_CHUNK (256u << 10)

/* {v: 1, ev, p} (the console's output form, LINK.md §9) on <prefix>.local_shell.<dev>.<sub>. */
static void shell_publish(const char *dev, const char *sub, const char *ev, struct lp_span payload)
{
    char subj[LPR_MAX_PREFIX + LPR_MAX_DEV + LP_MAX_OP + 32];
    snprintf(subj, sizeof(subj), "%s.local_shell.%s.%s", pf.prefix, dev, sub);
    struct lp_out o = {0};
    struct lp_console_out m = {lp_cspan(ev), payload};
    if (lp_encode_console_out(&o, &m) == 0)
        natsConnection_Publish(pf_nc, subj, o.p, (int)o.n);
    lp_out_free(&o);
}

/* `closed {reason, detail?}`: the operators' shell has ended. */
static void shell_closed(const char *dev, const char *sub, const char *reason, const char *detail)
{
    struct lp_out o = {0};
    lp_mp_map(&o, detail ? 2 : 1);
    lp_mp_cstr(&o, "reason");
    lp_mp_cstr(&o, reason);
    if (detail) {
        lp_mp_cstr(&o, "detail");
        lp_mp_cstr(&o, detail);
    }
    if (!o.failed)
        shell_publish(dev, sub, "closed", (struct lp_span){o.p, o.n});
    lp_out_free(&o);
}

/* `local_shell:shell_output {data}`: published to operators as `output {data}` (same str/bin
 * type) and kept by the gateway. Only the last LP_MAX_SCROLLBACK bytes are appended: no gateway
 * scrollback holds more, and the reply must stay under LP_MAX_MESSAGE. */
static void shell_output(struct call *c)
{
    struct lp_span v, data;
    bool is_bin = false;
    if (lp_mp_map_get(c->req.payload, "data", &v) != 1)
        goto invalid;
    if (lp_mp_read_str(v, &data) != 0) {
        if (lp_mp_read_bin(v, &data) != 0)
            goto invalid;
        is_bin = true;
    }
    size_t at = 0;
    do {
        size_t end = data.n;
        if (end - at > SHELL_OUT_CHUNK) {
            end = at + SHELL_OUT_CHUNK;
            for (int k = 0; k < 3 && end > at + 1 && (data.p[end] & 0xc0) == 0x80; k++)
                end--;
        }
        struct lp_out o = {0};
        lp_mp_map(&o, 1);
        lp_mp_cstr(&o, "data");
        if (is_bin)
            lp_mp_bin(&o, data.p + at, end - at);
        else
            lp_mp_str(&o, data.p + at, end - at);
        if (!o.failed)
            shell_publish(c->dev, "out", "output", (struct lp_span){o.p, o.n});
        lp_out_free(&o);
        at = end;
    } while (at < data.n);
    struct lp_effect *e = fx_add(c, LP_FX_SCROLLBACK_APPEND);
    if (e)
        e->data = data.n > LP_MAX_SCROLLBACK
                      ? (struct lp_span){data.p + data.n - LP_MAX_SCROLLBACK, LP_MAX_SCROLLBACK}
                      : data;
    return;
invalid:
    plog(PLOG_DEBUG, "shell_output_invalid", "dev=%s", c->dev);
}

/* An operator's `local_shell {op}` notify: the scrollback is replayed to its own subject, or it
 * is told at once that there is no shell to open. */
static void shell_connect(struct call *c, const struct xsess *x)
{
    char op[LP_MAX_OP + 1], sub[LP_MAX_OP + 8];
    map_str(c->req.msg, "op", op, sizeof(op));
    if (!lp_valid_op(lp_cspan(op))) {
        plog(PLOG_DEBUG, "shell_connect_invalid", "dev=%s", c->dev);
        return;
    }
    snprintf(sub, sizeof(sub), "op.%s", op);
    if (x->state[PD_EXT_LOCAL_SHELL] != 2) {
        shell_closed(c->dev, sub, "not_attached", "the device has not attached the local_shell extension");
        return;
    }
    char subj[LPR_MAX_PREFIX + LPR_MAX_DEV + LP_MAX_OP + 32];
    struct lp_out *o = cbuf(c);
    int n = snprintf(subj, sizeof(subj), "%s.local_shell.%s.%s", pf.prefix, c->dev, sub);
    lp_mp_raw(o, subj, (size_t)n); /* the effect's span must outlive this frame */
    struct lp_effect *e = fx_add(c, LP_FX_SCROLLBACK_REPLAY);
    if (e)
        e->topic = out_span(o);
    plog(PLOG_DEBUG, "shell_connect", "dev=%s op=%s", c->dev, op);
}

static void ext_attach(struct call *c, int i)
{
    switch (i) {
    case PD_EXT_HEALTH:
        fx_push(c, "health:check", empty_map(c));
        fx_timer(c, LP_FX_START_TIMER, msg_ext(c, "health", "check"), msg_ext(c, "health", "check"),
                 pf.health_interval_ms);
        break;
    case PD_EXT_GEO:
        fx_push(c, "geo:location:request", empty_map(c));
        break;
    case PD_EXT_NETWORK_IDENTITY:
        fx_push(c, "network_identity:request", empty_map(c));
        break;
    case PD_EXT_LOCAL_SHELL:
        fx_push(c, "local_shell:request_shell", empty_map(c));
        fx_add(c, LP_FX_SCROLLBACK_CLEAR);
        break;
    default:
        break;
    }
}

static void ext_detach(struct call *c, int i)
{
    if (i == PD_EXT_HEALTH)
        fx_timer(c, LP_FX_CANCEL_TIMER, msg_ext(c, "health", "check"), (struct lp_span){0}, 0);
    else if (i == PD_EXT_LOCAL_SHELL) {
        fx_add(c, LP_FX_SCROLLBACK_CLEAR);
        shell_closed(c->dev, "out", "detached", NULL);
    }
}

/* A log line's text: a string, or a charlist (Erlang's list of code points, as nerves_hub_link
 * may send); NULL otherwise. Malloc'd, NUL-terminated, at most PF_LOG_MESSAGE_MAX bytes (cut on a
 * UTF-8 boundary; *cut says so). */
static char *log_text(const json_t *m, bool *cut)
{
    size_t cap = PF_LOG_MESSAGE_MAX, n = 0;
    char *out = malloc(cap + 4 + 1);
    if (!out)
        return NULL;
    *cut = false;
    if (json_is_string(m)) {
        const char *src = json_string_value(m);
        n = json_string_length(m);
        if (n > cap) {
            n = cap; /* back to the start of the character that would not fit */
            while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
                n--;
            *cut = true;
        }
        memcpy(out, src, n);
    } else if (json_is_array(m)) {
        size_t i;
        const json_t *e;
        json_array_foreach(m, i, e)
        {
            json_int_t cp = json_integer_value(e);
            if (!json_is_integer(e) || cp < 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                continue;
            size_t k = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
            if (n + k > cap) {
                *cut = true;
                break;
            }
            if (k == 1) {
                out[n++] = (char)cp;
            } else {
                for (size_t b = k - 1; b > 0; b--)
                    out[n + b] = (char)(0x80 | ((cp >> (6 * (k - 1 - b))) & 0x3f));
                out[n] = (char)((0xf0 << (4 - k)) | (cp >> (6 * (k - 1))));
                n += k;
            }
        }
    } else {
        free(out);
        return NULL;
    }
    out[n] = 0;
    return out;
}

/* `logging:send {level, message, timestamp?, meta?}`: appended to the device's bounded list
 * (PF_LOG_LINES), and published as the event `log`. */
static void store_log_line(struct call *c)
{
    char *js = payload_json_str(c->req.payload);
    json_t *j = js ? json_loads(js, JSON_DECODE_ANY, NULL) : NULL;
    free(js);
    bool cut;
    char *text = json_is_object(j) ? log_text(json_object_get(j, "message"), &cut) : NULL;
    if (!text) {
        json_decref(j);
        plog(PLOG_DEBUG, "log_line_invalid", "dev=%s", c->dev);
        return;
    }
    const char *level = json_string_value(json_object_get(j, "level"));
    json_t *msg = json_stringn(text, strlen(text));
    free(text);
    json_t *e = json_pack("{s:I, s:s, s:o}", "at", (json_int_t)pf_now_ms(), "level",
                          level && strlen(level) <= 16 ? level : "unknown", "message", msg ? msg : json_string("?"));
    if (e && cut)
        json_object_set_new(e, "truncated", json_true());
    const json_t *ts = json_object_get(j, "timestamp");
    if (e && (json_is_string(ts) || json_is_integer(ts)))
        json_object_set(e, "timestamp", (json_t *)ts);
    json_t *meta = json_object_get(j, "meta");
    char *ms = json_is_object(meta) ? json_dumps(meta, JSON_COMPACT) : NULL;
    if (e && ms && strlen(ms) <= PF_LOG_META_MAX)
        json_object_set(e, "meta", meta);
    free(ms);
    char *line = e ? json_dumps(e, JSON_COMPACT) : NULL;
    if (line) {
        char k[PF_KEY_MAX];
        pf_key(k, "dev:%s:logs", c->dev);
        store_append("RPUSH %s %s", k, line);
        store_append("LTRIM %s %d -1", k, -PF_LOG_LINES);
        freeReplyObject(store_reply());
        freeReplyObject(store_reply());
    }
    free(line);
    json_decref(j);
    pf_event(c->dev, "log", e);
}

static void message_extensions(struct call *c)
{
    struct xsess x;
    xsess_decode(c->req.session, &x);
    c->rep.st = LP_ST_OK;
    struct lp_span key, ev;
    int i = pd_ext_split(c->req.event, &key, &ev) == 0 ? pd_ext_lookup(key) : -1;
    if (i < 0 || x.state[i] == 0) {
        struct lp_effect *e = fx_add(c, LP_FX_REPLY);
        if (e) {
            e->status = lp_cspan("error");
            e->payload = detach_reply(c);
        }
        return;
    }
    char k[PF_KEY_MAX];
    pf_key(k, "dev:%s", c->dev);
    if (span_is(ev, "attached")) {
        x.state[i] = 2;
        ext_attach(c, i);
        pf_event(c->dev, "extension_attached", json_pack("{s:s}", "extension", pd_ext_names[i]));
    } else if (span_is(ev, "detached") || span_is(ev, "error")) {
        x.state[i] = 1;
        ext_detach(c, i);
        pf_event(c->dev, "extension_detached", json_pack("{s:s}", "extension", pd_ext_names[i]));
    } else if (x.state[i] != 2) {
        return; /* allowed but not attached: dropped */
    } else if (i == PD_EXT_HEALTH && span_is(ev, "report")) {
        char *js = payload_json_str(c->req.payload);
        if (js)
            freeReplyObject(store_cmd("HSET %s health %s health_at %lld", k, js, (long long)pf_now_ms()));
        pf_event(c->dev, "health_report", js ? json_loads(js, 0, NULL) : NULL);
        free(js);
    } else if (i == PD_EXT_GEO && span_is(ev, "location:update")) {
        char *js = payload_json_str(c->req.payload);
        if (js)
            freeReplyObject(store_cmd("HSET %s location %s", k, js));
        pf_event(c->dev, "location", js ? json_loads(js, 0, NULL) : NULL);
        free(js);
    } else if (i == PD_EXT_LOGGING && span_is(ev, "send")) {
        if (log_bucket_take(&x, pf_now_ms()))
            store_log_line(c);
        else
            plog(PLOG_DEBUG, "log_line_dropped", "dev=%s", c->dev);
    } else if (i == PD_EXT_LOCAL_SHELL && span_is(ev, "shell_output")) {
        shell_output(c);
        return; /* the session is unchanged */
    } else if (i == PD_EXT_NETWORK_IDENTITY && span_is(ev, "report")) {
        char *js = payload_json_str(c->req.payload);
        json_t *j = js ? json_loads(js, 0, NULL) : NULL;
        json_t *ids = json_object_get(j, "identities");
        while (json_is_array(ids) && json_array_size(ids) > 10) /* only the first 10 are used */
            json_array_remove(ids, 10);
        char *s = json_is_array(ids) ? json_dumps(ids, JSON_COMPACT) : NULL;
        if (s)
            freeReplyObject(store_cmd("HSET %s network_identities %s", k, s));
        free(s);
        free(js);
        pf_event(c->dev, "network_identities", j);
    } else {
        plog(PLOG_DEBUG, "extension_event", "dev=%s event=%.*s", c->dev, (int)c->req.event.n, c->req.event.p);
        return;
    }
    set_session(c, xsess_encode(c, &x));
}

static void notify_extensions(struct call *c)
{
    struct xsess x;
    xsess_decode(c->req.session, &x);
    c->rep.st = LP_ST_OK;
    char kind[32], ext[32], tag[32];
    map_str(c->req.msg, "k", kind, sizeof(kind));
    if (strcmp(kind, "local_shell") == 0) {
        shell_connect(c, &x);
        return;
    }
    map_str(c->req.msg, "ext", ext, sizeof(ext));
    map_str(c->req.msg, "tag", tag, sizeof(tag));
    int i = pd_ext_lookup(lp_cspan(ext));
    if (i == PD_EXT_HEALTH && x.state[i] == 2 && strcmp(tag, "check") == 0)
        fx_push(c, "health:check", empty_map(c));
    /* anything else (a detached extension's tick) is dropped, as upstream */
}

/* ---- dispatch ---- */

static void handle(struct call *c)
{
    switch (c->kind) {
    case LP_AUTH:
        on_auth(c);
        break;
    case LP_CONNECT:
        on_connect(c);
        break;
    case LP_DISCONNECT:
        on_disconnect(c);
        break;
    case LP_HEARTBEAT:
        on_heartbeat(c);
        break;
    case LP_JOIN:
        if (span_is(c->req.topic, "device"))
            join_device(c);
        else if (span_is(c->req.topic, "extensions"))
            join_extensions(c);
        else
            refuse(c, "unknown topic");
        break;
    case LP_MESSAGE:
        if (span_is(c->req.topic, "device"))
            message_device(c);
        else if (span_is(c->req.topic, "extensions"))
            message_extensions(c);
        else
            c->rep.st = LP_ST_OK;
        break;
    case LP_NOTIFY:
        if (span_is(c->req.topic, "device"))
            notify_device(c);
        else if (span_is(c->req.topic, "extensions"))
            notify_extensions(c);
        else
            c->rep.st = LP_ST_OK;
        break;
    default:
        fail(c, "unknown call");
    }
}

void link_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub;
    (void)closure;
    const char *subj = natsMsg_GetSubject(msg), *dot = strrchr(subj, '.');
    const char *reply = natsMsg_GetReply(msg);
    struct lp_span name = lp_cspan(dot ? dot + 1 : subj);
    int kind = lp_call_parse(name);
    struct call *c = calloc(1, sizeof(*c));
    if (!c || kind < 0) {
        plog(PLOG_WARN, "link_bad_call", "subject=%s", subj);
        free(c);
        natsMsg_Destroy(msg);
        return;
    }
    c->kind = (enum lp_call)kind;
    c->rep.st = LP_ST_ERROR;
    const char *err = NULL;
    if (lp_decode_request(c->kind, (const uint8_t *)natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg),
                          &c->req, &err) < 0) {
        plog(PLOG_WARN, "link_invalid", "call=%s error=\"%s\"", lp_call_name(c->kind), err ? err : "?");
        fail(c, "invalid request");
    } else {
        if (c->req.dev.n)
            span_cpy(c->dev, sizeof(c->dev), c->req.dev);
        /* published calls need no answer: they succeed unless their handler says otherwise (a
         * replayed disconnect that asks for a reply then gets "ok", LINK.md §4.3) */
        if (c->kind == LP_DISCONNECT || c->kind == LP_HEARTBEAT)
            c->rep.st = LP_ST_OK;
        handle(c);
        if (c->failed)
            fail(c, "platform reply too large");
    }
    if (reply && *reply) {
        struct lp_out o = {0};
        if (lp_encode_reply(&o, c->kind, &c->rep) < 0) {
            plog(PLOG_ERROR, "link_encode_failed", "call=%s dev=%s", lp_call_name(c->kind), c->dev);
            lp_out_reset(&o);
            o.failed = false;
            struct lp_reply e = {.st = LP_ST_ERROR, .reason = lp_cspan("platform could not encode its reply")};
            lp_encode_reply(&o, c->kind, &e);
        }
        if (!o.failed)
            natsConnection_Publish(nc, reply, o.p, (int)o.n);
        lp_out_free(&o);
    }
    if (c->rep.st == LP_ST_ERROR)
        plog(PLOG_WARN, "link_error", "call=%s dev=%s reason=\"%.*s\"", lp_call_name(c->kind), c->dev,
             (int)c->rep.reason.n, c->rep.reason.p);
    for (size_t i = 0; i < c->nbufs; i++)
        lp_out_free(&c->bufs[i]);
    free(c);
    natsMsg_Destroy(msg);
}
