/* nhctl's NATS side (nhctl.h): synchronous connect, request and watch. Every failure becomes one
 * clear line on stderr and an exit code: the operator must be able to tell "NATS is not there"
 * from "nothing answers on NATS" from "the platform said no". */
#include <string.h>
#include <time.h>

#include "nhctl.h"

int rpc_connect(struct ctx *c, bool reconnect)
{
    if (c->nc)
        return NHCTL_OK;
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, c->nats_url);
    if (s == NATS_OK)
        s = natsOptions_SetName(o, "nhctl");
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, c->timeout_ms); /* connect timeout */
    if (s == NATS_OK)
        s = natsOptions_SetAllowReconnect(o, reconnect);
    if (s == NATS_OK && reconnect)
        s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK)
        s = natsConnection_Connect(&c->nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        c->nc = NULL;
        nhctl_err("cannot reach NATS at %s (%s)", c->nats_url, natsStatus_GetText(s));
        return NHCTL_UNREACHABLE;
    }
    return NHCTL_OK;
}

void rpc_close(struct ctx *c)
{
    if (c->nc) {
        natsConnection_Destroy(c->nc);
        c->nc = NULL;
    }
}

/* The message of an {"error": ...} reply, sanitised at print time. */
static int print_error_reply(const json_t *reply)
{
    const json_t *e = json_object_get(reply, "error");
    const char *code = json_string_value(json_object_get(reply, "code"));
    const char *msg = json_string_value(e);
    char *dumped = NULL;
    if (!msg)
        msg = dumped = json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY);
    fputs("nhctl: ", stderr);
    out_safe(stderr, msg ? msg : "error");
    if (code) {
        fputs(" (", stderr);
        out_safe(stderr, code);
        fputs(")", stderr);
    }
    fputs("\n", stderr);
    free(dumped);
    return NHCTL_ERROR;
}

int rpc_call(struct ctx *c, const char *verb, json_t *body, json_t **reply)
{
    *reply = NULL;
    int rc = rpc_connect(c, false);
    if (rc) {
        json_decref(body);
        return rc;
    }
    char subject[256];
    snprintf(subject, sizeof(subject), "%s.api.%s", c->prefix, verb);
    char *data = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(body);
    if (!data) {
        nhctl_err("out of memory");
        return NHCTL_ERROR;
    }
    natsMsg *m = NULL;
    natsStatus s = natsConnection_Request(&m, c->nc, subject, data, (int)strlen(data), c->timeout_ms);
    free(data);
    if (s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS) {
        nhctl_err("no platform answered %s within %s%s", subject, c->timeout_text,
                  s == NATS_NO_RESPONDERS ? " (no responders: is nhplatform running with this --prefix?)"
                                          : "");
        return NHCTL_UNREACHABLE;
    }
    if (s != NATS_OK) {
        nhctl_err("request %s failed: %s (NATS at %s)", subject, natsStatus_GetText(s), c->nats_url);
        return NHCTL_UNREACHABLE;
    }
    const char *rd = natsMsg_GetData(m);
    size_t rn = (size_t)natsMsg_GetDataLength(m);
    json_error_t jerr;
    json_t *r = json_loadb(rd ? rd : "", rn, 0, &jerr);
    if (c->json) {
        fwrite(rd ? rd : "", 1, rn, stdout);
        fputs("\n", stdout);
        fflush(stdout);
    }
    natsMsg_Destroy(m);
    if (!json_is_object(r)) {
        json_decref(r);
        nhctl_err("invalid reply on %s: not a JSON object", subject);
        return NHCTL_ERROR;
    }
    if (json_object_get(r, "error")) {
        rc = print_error_reply(r);
        json_decref(r);
        return rc;
    }
    *reply = r;
    return NHCTL_OK;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int rpc_watch(struct ctx *c, const char *subject, uint64_t count, int64_t watch_ms, const char *watch_text,
              void (*print)(const struct ctx *c, const char *data, size_t n))
{
    natsSubscription *sub = NULL;
    natsStatus s = natsConnection_SubscribeSync(&sub, c->nc, subject);
    if (s == NATS_OK)
        s = natsConnection_FlushTimeout(c->nc, c->timeout_ms);
    if (s != NATS_OK) {
        natsSubscription_Destroy(sub);
        nhctl_err("cannot subscribe to %s at %s: %s", subject, c->nats_url, natsStatus_GetText(s));
        return NHCTL_UNREACHABLE;
    }
    /* Printed once the server has the subscription: scripts wait for this line. */
    fprintf(stderr, "nhctl: watching %s%s\n", subject, count || watch_ms ? "" : " (Ctrl-C to stop)");
    int64_t deadline = watch_ms ? mono_ms() + watch_ms : 0;
    uint64_t seen = 0;
    int rc = NHCTL_OK;
    while (!count || seen < count) {
        int64_t wait = 1000;
        if (deadline) {
            wait = deadline - mono_ms();
            if (wait <= 0)
                break;
        }
        natsMsg *m = NULL;
        s = natsSubscription_NextMsg(&m, sub, wait);
        if (s == NATS_TIMEOUT)
            continue;
        if (s != NATS_OK) {
            nhctl_err("lost the connection to NATS at %s: %s", c->nats_url, natsStatus_GetText(s));
            rc = NHCTL_UNREACHABLE;
            break;
        }
        print(c, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
        natsMsg_Destroy(m);
        seen++;
    }
    if (rc == NHCTL_OK && count && seen < count) {
        nhctl_err("timed out after %s with %llu of %llu events", watch_text, (unsigned long long)seen,
                  (unsigned long long)count);
        rc = NHCTL_ERROR;
    }
    natsSubscription_Destroy(sub);
    return rc;
}
