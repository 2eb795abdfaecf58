/* One msgpack object → a jansson value, for recording device payloads and publishing them in
 * events (JSON). str → string (invalid UTF-8 → null), bin → base64 string, timestamp ext (-1) →
 * ISO-8601 string, other ext → null, non-string map keys are skipped. Nesting is bounded by
 * MPJ_MAX_DEPTH containers: msgpack-c's unpacker keeps a fixed stack of 32 (its
 * MSGPACK_EMBED_STACK_SIZE), shallower than the link allows; deeper payloads are not recorded.
 * I/O-free. */
#ifndef NHPF_MPJSON_H
#define NHPF_MPJSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define MPJ_MAX_DEPTH 32

/* New reference, or NULL when `p` does not hold exactly one valid msgpack object. */
json_t *mpj_to_json(const uint8_t *p, size_t n);

#endif
