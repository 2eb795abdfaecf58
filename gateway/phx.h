/* Phoenix channel message codec (device-protocol.md §3.1, §7): the envelope
 * [join_ref, ref, topic, event, payload] as Phoenix V2 JSON (vsn 2.0.x, text frames) or msgpack
 * (vsn 3.0.x, binary frames). Inside the gateway every payload is msgpack bytes; JSON payloads are
 * converted at this edge. Pure: no I/O, no libevent, no channel rules or topic rewriting (session.c).
 * Not handled: Phoenix V2 JSON *binary* push frames (§3.1 allows a gateway to reject them). */
#ifndef NHGW_PHX_H
#define NHGW_PHX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "common.h"

enum phx_format {
    PHX_FMT_JSON,    /* vsn 2.0.x: Phoenix V2 JSON array in a text frame */
    PHX_FMT_MSGPACK, /* vsn 3.0.x: msgpack array in a binary frame */
};

#define PHX_ERR_SYNTAX (-1)      /* not valid JSON / msgpack, or trailing bytes after the value */
#define PHX_ERR_SHAPE (-2)       /* not a 5-element array, topic/event not strings, refs not str/int/null */
#define PHX_ERR_NOMEM (-3)       /* allocation failed */
#define PHX_ERR_DEPTH (-4)       /* nesting deeper than PHX_MAX_DEPTH */
#define PHX_ERR_UNSUPPORTED (-5) /* a value that cannot be represented in the other format */
#define PHX_ERR_TOO_BIG (-6)     /* encoding would make the output buffer exceed its limit */

/* Maximum number of nested containers in a whole message. The envelope array is depth 1, so a
 * payload may nest PHX_MAX_DEPTH - 1 containers ({} is depth 2) and a reply's response
 * PHX_MAX_DEPTH - 2. Empty containers count. Scalars add no depth. */
#define PHX_MAX_DEPTH 64

/* JSON number tokens longer than this are rejected with PHX_ERR_UNSUPPORTED (bounds strtod work). */
#define PHX_JSON_MAX_NUMBER 256

/* Static description of a PHX_ERR_* code (or "unknown error"). */
const char *phx_strerror(int err);

/* One decoded message. Spans point into the decoded input or into storage owned by the message. */
struct phx_msg {
    bool has_join_ref;    /* false when join_ref is null */
    struct span join_ref; /* integer refs become decimal strings ("1"), as NervesHub does */
    bool has_ref;         /* false when ref is null */
    struct span ref;      /* like join_ref */
    struct span topic;    /* opaque bytes (msgpack str or bin, JSON string) */
    struct span event;    /* opaque bytes */
    struct span payload;  /* exactly one msgpack value, any type */
    void *owned_;         /* internal storage; release with phx_msg_free */
};

/* Decode one whole message (one WebSocket message) of n bytes at p.
 * Inputs: JSON must be one array value with optional surrounding whitespace; msgpack one array
 * value. Refs may be null, strings or integers (msgpack str, bin, any int; JSON string, integer).
 * JSON: integers in [-2^63, 2^64-1] become the smallest msgpack int (others: UNSUPPORTED); numbers
 * with a fraction or exponent become float64 (overflow to infinity: UNSUPPORTED); strings become
 * msgpack str; objects keep key order and duplicate keys (consumers take the last, like Elixir);
 * escapes are decoded, a lone UTF-16 surrogate escape is SYNTAX; raw bytes are not UTF-8 checked
 * (the WebSocket layer validated the text frame).
 * Cost: linear in n; JSON allocates at most about 5n bytes, msgpack allocates nothing unless a
 * ref is an integer.
 * Output: on 0, *m is filled; spans stay valid while both the input and *m live. On a negative
 * PHX_ERR_* return *m needs no free (it is zeroed). Errors found over the whole input (SYNTAX,
 * DEPTH, UNSUPPORTED) take precedence over SHAPE. */
int phx_decode(enum phx_format fmt, const uint8_t *p, size_t n, struct phx_msg *m) WARN_UNUSED;

/* Release what phx_decode allocated and zero *m. NULL or an already freed message is fine. */
void phx_msg_free(struct phx_msg *m);

/* Append an encoded [join_ref, ref, topic, event, payload] to out. limit is the maximum total
 * length of out after the append. join_ref/ref NULL → null. payload must be exactly one valid
 * msgpack value nesting at most PHX_MAX_DEPTH - 1 containers.
 * msgpack: strings are emitted as str (fixstr/str8/16/32, like Msgpax), payload bytes verbatim.
 * JSON (compact, no spaces, key order kept): str and bin → JSON strings with invalid UTF-8
 * replaced by U+FFFD (maximal subparts); map keys str/bin/integer (integers as decimal strings),
 * any other key type → UNSUPPORTED; timestamp ext (-1) → "YYYY-MM-DDTHH:MM:SS.ffffffZ"
 * (nanoseconds truncated; null outside years 0000-9999 or with invalid nanoseconds); other ext →
 * null; floats → shortest round-trip repr that still reads as a float ("1.0", "1.0e20");
 * NaN/Inf → null. Relies on the "C" LC_NUMERIC locale (never call setlocale).
 * Returns 0, or PHX_ERR_SYNTAX (payload not one msgpack value), PHX_ERR_DEPTH,
 * PHX_ERR_UNSUPPORTED, PHX_ERR_TOO_BIG or PHX_ERR_NOMEM; on error out is unchanged. */
int phx_encode(enum phx_format fmt, const struct span *join_ref, const struct span *ref, struct span topic,
               struct span event, struct span payload, struct buf *out, size_t limit) WARN_UNUSED;

/* Append a phx_reply whose payload is {"response": response, "status": status} (this key order,
 * as Elixir emits it). response is one msgpack value nesting at most PHX_MAX_DEPTH - 2
 * containers; status is a NUL-terminated string ("ok", "error"). Other rules and returns as
 * phx_encode. */
int phx_encode_reply(enum phx_format fmt, const struct span *join_ref, const struct span *ref,
                     struct span topic, const char *status, struct span response, struct buf *out,
                     size_t limit) WARN_UNUSED;

/* ---- msgpack helpers over a span holding one msgpack value (bounds-checked, never trusted) ---- */

/* Check that v is exactly one well-formed msgpack value nesting at most max_depth containers.
 * Returns 0, PHX_ERR_SYNTAX (malformed, truncated or trailing bytes) or PHX_ERR_DEPTH. */
int phx_mp_validate(struct span v, int max_depth);

/* If map is a msgpack map, find the entry whose key (str or bin) equals the NUL-terminated key
 * and set *value to the encoded sub-value. With duplicate keys the last one wins (Elixir maps).
 * Returns false when map is not a map, the key is absent, or the bytes are malformed. */
bool phx_mp_map_get(struct span map, const char *key, struct span *value);

/* If value starts with a msgpack str or bin, set *s to its bytes (pointing into value). */
bool phx_mp_get_str(struct span value, struct span *s);

/* True if value starts with msgpack nil. */
bool phx_mp_is_nil(struct span value);

/* Canned encodings. */
extern const struct span PHX_MP_EMPTY_MAP; /* {} = 0x80 */
extern const struct span PHX_MP_NIL;       /* nil = 0xc0 */

/* Append {"reason": reason} (reason NUL-terminated). Returns 0, PHX_ERR_TOO_BIG or PHX_ERR_NOMEM;
 * on error out is unchanged. */
int phx_mp_reason(const char *reason, struct buf *out, size_t limit) WARN_UNUSED;

/* Small msgpack packers, encoded as Msgpax does (smallest int form, str for strings).
 * Each returns 0, PHX_ERR_TOO_BIG or PHX_ERR_NOMEM (out unchanged on error); put_str also
 * PHX_ERR_UNSUPPORTED for strings of 2^32 bytes or more. */
int phx_mp_put_str(struct span s, struct buf *out, size_t limit) WARN_UNUSED;
int phx_mp_put_map(uint32_t npairs, struct buf *out, size_t limit) WARN_UNUSED;
int phx_mp_put_array(uint32_t nitems, struct buf *out, size_t limit) WARN_UNUSED;
int phx_mp_put_int(int64_t v, struct buf *out, size_t limit) WARN_UNUSED;
int phx_mp_put_uint(uint64_t v, struct buf *out, size_t limit) WARN_UNUSED;
int phx_mp_put_bool(bool v, struct buf *out, size_t limit) WARN_UNUSED;
int phx_mp_put_nil(struct buf *out, size_t limit) WARN_UNUSED;

#endif
