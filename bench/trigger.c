/* The fanout scenario's operator requests (see trigger.h). */
#include "trigger.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <jansson.h>
#include <nats/nats.h>

struct tr {
    natsConnection *nc;
    char prefix[40];
};

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

struct tr *tr_open(const char *url, const char *prefix, char *err, size_t cap)
{
    struct tr *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    snprintf(t->prefix, sizeof(t->prefix), "%s", prefix);
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, url);
    if (s == NATS_OK)
        s = natsOptions_SetName(o, "nhbench");
    if (s == NATS_OK)
        s = natsConnection_Connect(&t->nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        snprintf(err, cap, "NATS %s: %s", url, natsStatus_GetText(s));
        free(t);
        nats_CloseAndWait(2000);
        return NULL;
    }
    return t;
}

void tr_close(struct tr *t)
{
    if (!t)
        return;
    natsConnection_Destroy(t->nc);
    free(t);
    nats_CloseAndWait(2000);
}

void tr_new_uuid(char out[37])
{
    uint8_t b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
        uint64_t x = mono_us() * 0x9E3779B97F4A7C15ULL;
        for (size_t i = 0; i < sizeof(b); i++)
            b[i] = (uint8_t)(x >> (8 * (i % 8))) ^ (uint8_t)i;
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3],
             b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* The firmware object of an update a real deployment would carry (device-protocol.md §5.3). */
static json_t *firmware(const char *uuid, const char *version)
{
    char url[160];
    snprintf(url, sizeof(url), "https://firmware.example/nhbench/%s.fw", uuid);
    return json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:s}", "uuid", uuid, "version", version, "url", url,
                     "size", (json_int_t)48123456, "checksum",
                     "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08", "architecture", "arm",
                     "platform", "rpi4", "product", "my_product", "author", "nhbench");
}

/* Send body on <prefix>.api.<verb>; *reply is the parsed object unless the platform answered an
 * error (then -1 with its message). */
static int request(struct tr *t, const char *verb, json_t *body, uint32_t timeout_ms, json_t **reply,
                   uint64_t *sent_us, uint64_t *replied_us, char *err, size_t cap)
{
    *reply = NULL;
    char subj[96];
    snprintf(subj, sizeof(subj), "%s.api.%s", t->prefix, verb);
    char *txt = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!txt) {
        snprintf(err, cap, "cannot encode the request");
        return -1;
    }
    natsMsg *m = NULL;
    *sent_us = mono_us();
    natsStatus s = natsConnection_Request(&m, t->nc, subj, txt, (int)strlen(txt), (int64_t)timeout_ms);
    *replied_us = mono_us();
    free(txt);
    if (s != NATS_OK) {
        snprintf(err, cap, "%s: %s", subj, natsStatus_GetText(s));
        return -1;
    }
    json_error_t je;
    json_t *r = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, &je);
    natsMsg_Destroy(m);
    if (!json_is_object(r)) {
        snprintf(err, cap, "%s: reply is not a JSON object", subj);
        json_decref(r);
        return -1;
    }
    const char *e = json_string_value(json_object_get(r, "error"));
    if (e) {
        snprintf(err, cap, "%s: %s (%s)", subj, e, json_string_value(json_object_get(r, "code")) ?: "?");
        json_decref(r);
        return -1;
    }
    *reply = r;
    return 0;
}

int tr_deployment_create(struct tr *t, const char *name, const char *uuid, const char *version, uint32_t timeout_ms,
                         int64_t *id, int64_t *matched, int64_t *pushed, uint64_t *sent_us, uint64_t *replied_us,
                         char *err, size_t cap)
{
    json_t *body = json_pack("{s:s, s:o}", "name", name, "firmware", firmware(uuid, version));
    json_t *r;
    if (!body || request(t, "deployment.create", body, timeout_ms, &r, sent_us, replied_us, err, cap) != 0)
        return -1;
    json_t *dep = json_object_get(r, "deployment");
    *id = json_integer_value(json_object_get(dep, "id"));
    *matched = json_integer_value(json_object_get(r, "matched"));
    *pushed = json_integer_value(json_object_get(r, "pushed"));
    int rc = *id > 0 ? 0 : -1;
    if (rc)
        snprintf(err, cap, "deployment.create: reply without deployment.id");
    json_decref(r);
    return rc;
}

int tr_deployment_update(struct tr *t, int64_t id, const char *uuid, const char *version, uint32_t timeout_ms,
                         char path[8], uint64_t *sent_us, uint64_t *replied_us, char *err, size_t cap)
{
    json_t *body = json_pack("{s:I, s:o}", "id", (json_int_t)id, "firmware", firmware(uuid, version));
    json_t *r;
    if (!body || request(t, "deployment.update", body, timeout_ms, &r, sent_us, replied_us, err, cap) != 0)
        return -1;
    snprintf(path, 8, "%s", json_string_value(json_object_get(r, "fanout")) ?: "?");
    json_decref(r);
    return 0;
}
