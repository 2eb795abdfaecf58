/* nhbench's operator side for the `fanout` scenario: JSON requests on the reference platform's
 * operator API (`<prefix>.api.<verb>` over NATS, ops/README.md), exactly what nhctl sends, so the
 * scenario can time an update from the moment the operator asked for it. One connection per
 * tr_open .. tr_close; the NATS library's threads are gone after tr_close, so the caller may fork
 * afterwards (nhbench forks its workers after creating the base deployment). */
#ifndef NHBENCH_TRIGGER_H
#define NHBENCH_TRIGGER_H

#include <stddef.h>
#include <stdint.h>

struct tr;

/* Connect to url (nats://host:port). NULL on failure, with the reason in err. */
struct tr *tr_open(const char *url, const char *prefix, char *err, size_t cap);

/* Destroy the connection and wait (up to 2 s) for the NATS library's threads to end. */
void tr_close(struct tr *t);

/* A firmware uuid nobody has seen: random, in the 8-4-4-4-12 form (out: 37 bytes). */
void tr_new_uuid(char out[37]);

/* deployment.create {name, firmware: {uuid, version, url, size, checksum, architecture, platform,
 * product}} without conditions (every device matches). *sent_us is set to CLOCK_MONOTONIC µs just
 * before the request leaves, *replied_us when the answer arrived. On success *id is the new
 * deployment's id and the reply's `matched` / `pushed` (scan fan-out) are stored. Returns 0, or -1
 * with the platform's error (or the transport's) in err. */
int tr_deployment_create(struct tr *t, const char *name, const char *uuid, const char *version, uint32_t timeout_ms,
                         int64_t *id, int64_t *matched, int64_t *pushed, uint64_t *sent_us, uint64_t *replied_us,
                         char *err, size_t cap);

/* deployment.update {id, firmware: {...}}: firmware only, so the platform publishes ONE `update` on
 * the deployment's topic. *path receives the reply's `fanout` ("topic" or "scan", 8 bytes).
 * Times and result as above. */
int tr_deployment_update(struct tr *t, int64_t id, const char *uuid, const char *version, uint32_t timeout_ms,
                         char path[8], uint64_t *sent_us, uint64_t *replied_us, char *err, size_t cap);

#endif
