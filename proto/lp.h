/* lp: the link contract's codec (proto/LINK.md). Free of I/O and of other project modules, so
 * the gateway, the platform, nhctl, nhbench and the fuzzer all link it alone.
 *
 * Decoding never allocates: every string, bin and payload is an lp_span into the input, which
 * must outlive the decoded struct. Variable-length lists (effects, x-* headers, heartbeat
 * entries) are returned as an lp_iter over the raw msgpack array/map, validated in full by the
 * decoder so that iterating them cannot fail. Encoding appends to an lp_out, a growable buffer
 * with a hard cap; on allocation failure or cap overflow it latches `failed` and the encoder
 * returns -1. */
#ifndef NHGW_LP_H
#define NHGW_LP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LP_VERSION 1
#define LP_MAX_MESSAGE (1u << 20)
#define LP_MAX_ID 128
#define LP_MAX_TOPIC 128
#define LP_MAX_X 32
#define LP_MAX_X_NAME 64
#define LP_MAX_X_VALUE 1024
#define LP_MAX_EFFECTS 64
#define LP_MAX_SESSION (64u << 10)
#define LP_MAX_KEY 256
#define LP_MAX_MSG (64u << 10)
#define LP_MAX_DEPTH 64 /* a device payload phx accepts (≤ 63) always fits */
#define LP_MAX_HEARTBEATS 4096
/* Entries of one inbox `topics` message (LINK.md §6.1). An entry is at most 1 + 130 (dev) + 9
 * (cref) + 2 × 130 (topics) = 400 bytes, so a full message (≤ 410 KB) always fits LP_MAX_MESSAGE. */
#define LP_MAX_MOVES 1024
#define LP_MAX_STR 4096 /* any other str (event, reason, peer, fw, status) */
/* The remote console (LINK.md §9) */
#define LP_MAX_OP 64                    /* an operator id: [A-Za-z0-9_-]{1,64} */
#define LP_MAX_SCROLLBACK (512u << 10)  /* the scrollback in an attach reply */
#define LP_MAX_CONSOLE_VERSION 64
#define LP_LEASE_MIN_MS 1000u
#define LP_LEASE_MAX_MS 600000u
#define LP_LEASE_DEFAULT_MS 45000u

struct lp_span {
    const uint8_t *p;
    size_t n;
};

enum lp_call {
    LP_AUTH,
    LP_CONNECT,
    LP_DISCONNECT,
    LP_HEARTBEAT,
    LP_JOIN,
    LP_MESSAGE,
    LP_NOTIFY,
    LP_CALL_COUNT
};

/* "auth", "connect", ... (the last subject token); NULL for an out-of-range value. */
const char *lp_call_name(enum lp_call call);
/* The call named by a subject's last token; -1 when unknown. */
int lp_call_parse(struct lp_span name);

/* Raw msgpack list to iterate: `n` elements starting at `p` (already validated). */
struct lp_iter {
    const uint8_t *p;
    const uint8_t *end;
    uint32_t left;
};

struct lp_kv {
    struct lp_span name, value;
};

struct lp_hb {
    struct lp_span dev, session;
};

struct lp_request {
    enum lp_call call;
    struct lp_span gw;
    uint32_t worker;
    uint64_t cref;
    struct lp_span dev;     /* every call but auth and heartbeat */
    struct lp_span peer;    /* auth, connect */
    /* auth */
    bool has_cert;
    struct lp_span fp;      /* 40 uppercase hex chars */
    struct lp_span der;
    struct lp_span cn;
    /* auth x-* headers: decode fills x_iter (lp_kv_next); encode reads x/n_x */
    struct lp_iter x_iter;
    const struct lp_kv *x;
    size_t n_x;
    /* connect, disconnect, join: socket-level info; message, notify: channel session */
    struct lp_span session;
    struct lp_span topic;   /* join, message, notify */
    struct lp_span event;   /* message */
    struct lp_span payload; /* join, message: one encoded msgpack object */
    struct lp_span msg;     /* notify */
    struct lp_span from;    /* notify, optional (n == 0: absent) */
    struct lp_span reason;  /* disconnect */
    /* heartbeat: decode fills hb_iter (lp_hb_next); encode reads hb/n_hb */
    struct lp_iter hb_iter;
    const struct lp_hb *hb;
    size_t n_hb;
};

enum lp_status { LP_ST_OK, LP_ST_REFUSED, LP_ST_ERROR };

enum lp_effect_kind {
    LP_FX_PUSH,
    LP_FX_REPLY,
    LP_FX_SUBSCRIBE,
    LP_FX_UNSUBSCRIBE,
    LP_FX_SEND_SELF,
    LP_FX_SEND_AFTER,
    LP_FX_START_TIMER,
    LP_FX_CANCEL_TIMER,
    LP_FX_CLOSE,
    LP_FX_SCROLLBACK_APPEND,
    LP_FX_SCROLLBACK_CLEAR,
    LP_FX_SCROLLBACK_REPLAY,
};

struct lp_effect {
    enum lp_effect_kind kind;
    struct lp_span event;   /* push */
    struct lp_span payload; /* push, reply: encoded msgpack object */
    struct lp_span status;  /* reply */
    struct lp_span topic;   /* subscribe, unsubscribe; scrollback_replay: the subject */
    struct lp_span key;     /* send_after, start_timer, cancel_timer */
    struct lp_span msg;     /* send_self, send_after, start_timer */
    struct lp_span data;    /* scrollback_append */
    struct lp_span reason;  /* close */
    uint32_t ms;            /* send_after, start_timer: 1 .. 2^31-1 */
    uint16_t code;          /* close: 1000 .. 4999 */
};

struct lp_reply {
    enum lp_status st;
    struct lp_span reason;   /* optional */
    struct lp_span dev;      /* auth ok */
    bool has_session;
    struct lp_span session;
    struct lp_span response; /* join: encoded msgpack object; n == 0: absent */
    struct lp_span fw;       /* join: optional */
    /* decode fills fx_iter (lp_effect_next) and n_fx; encode reads effects/n_effects */
    struct lp_iter fx_iter;
    uint32_t n_fx;
    const struct lp_effect *effects;
    size_t n_effects;
};

enum lp_inbox_kind {
    LP_IN_PUSH,
    LP_IN_NOTIFY,
    LP_IN_KICK,
    LP_IN_CONSOLE_ATTACH,
    LP_IN_CONSOLE_DETACH,
    LP_IN_TOPICS
};

/* One entry of an inbox `topics` message: the connection `cref` of `dev` leaves topic `unsub`
 * and then follows topic `sub` (n == 0: none; at least one is present). */
struct lp_move {
    struct lp_span dev;
    uint64_t cref;
    struct lp_span unsub, sub;
};

/* A worker-inbox message (LINK.md §6, §9). */
struct lp_inbox {
    enum lp_inbox_kind kind;
    struct lp_span dev;     /* every kind but topics */
    bool has_cref;
    uint64_t cref;
    struct lp_span topic;   /* push, notify, topics */
    struct lp_span event;   /* push */
    struct lp_span payload; /* push */
    struct lp_span msg;     /* notify */
    uint16_t code;          /* kick: default 1001 */
    struct lp_span reason;  /* kick, optional */
    struct lp_span op;      /* console_attach, console_detach: the operator's id */
    bool no_scrollback;     /* console_attach: "sb": false (a lease renewal) */
    uint32_t lease_ms;      /* console_attach: 0 = absent (LP_LEASE_DEFAULT_MS) */
    /* topics (`topic` is the channel): decode fills moves_iter (lp_move_next) and n_moves;
     * encode reads moves/n_moves (1 .. LP_MAX_MOVES) */
    struct lp_iter moves_iter;
    const struct lp_move *moves;
    size_t n_moves;
};

enum lp_topic_kind { LP_TOPIC_PUSH, LP_TOPIC_NOTIFY };

/* A shared-topic message (LINK.md §7). */
struct lp_topic_msg {
    enum lp_topic_kind kind;
    struct lp_span event, payload, skip_fw; /* push */
    struct lp_span msg;                     /* notify */
};

enum lp_inbox_status { LP_IST_OK, LP_IST_GONE, LP_IST_NOT_JOINED };

/* The reply to console_attach (LINK.md §9). A plain inbox status reply ({v, st: gone |
 * not_joined}) decodes as one too. */
enum lp_console_status { LP_CST_OK, LP_CST_GONE, LP_CST_NOT_JOINED, LP_CST_FULL };
struct lp_console_reply {
    enum lp_console_status st;
    bool has_scrollback;      /* ok, unless the attach said "sb": false */
    struct lp_span scrollback;
    struct lp_span version;   /* ok: the device's console_version; n == 0: it sent none */
};

/* What a gateway publishes on <prefix>.console.<dev>.out (LINK.md §9): a device event (`up`,
 * `file-data/start`, `file-data`, `file-data/stop`) or the gateway's `closed`. */
struct lp_console_out {
    struct lp_span event;
    struct lp_span payload; /* one msgpack object */
};

/* Decoders: 0 on success, -1 when the message is invalid (LINK.md §3), with a static
 * description in *err (may be NULL). */
int lp_decode_request(enum lp_call call, const uint8_t *p, size_t n, struct lp_request *out,
                      const char **err);
int lp_decode_reply(enum lp_call call, const uint8_t *p, size_t n, struct lp_reply *out,
                    const char **err);
int lp_decode_inbox(const uint8_t *p, size_t n, struct lp_inbox *out, const char **err);
int lp_decode_topic_msg(const uint8_t *p, size_t n, struct lp_topic_msg *out, const char **err);
int lp_decode_inbox_status(const uint8_t *p, size_t n, enum lp_inbox_status *out,
                           const char **err);
int lp_decode_console_reply(const uint8_t *p, size_t n, struct lp_console_reply *out,
                            const char **err);
int lp_decode_console_out(const uint8_t *p, size_t n, struct lp_console_out *out,
                          const char **err);
/* The reply to an inbox `topics` message: {v, st: "ok", n: entries applied}. */
int lp_decode_topics_reply(const uint8_t *p, size_t n, uint32_t *applied, const char **err);

/* Iterators over lists a decoder validated: 1 and the next element, or 0 at the end. */
int lp_effect_next(struct lp_iter *it, struct lp_effect *out);
int lp_kv_next(struct lp_iter *it, struct lp_kv *out);
int lp_hb_next(struct lp_iter *it, struct lp_hb *out);
int lp_move_next(struct lp_iter *it, struct lp_move *out);

/* Output buffer. Zero-initialise and set `cap` (0 means LP_MAX_MESSAGE); free with lp_out_free.
 * lp_out_reset keeps the allocation. */
struct lp_out {
    uint8_t *p;
    size_t n, alloc, cap;
    bool failed;
};
void lp_out_reset(struct lp_out *o);
void lp_out_free(struct lp_out *o);

/* Encoders append one message to `o`: 0, or -1 when `o` failed or the input breaks a limit
 * (what the decoder would reject is never encoded). Payload spans must hold exactly one
 * encoded msgpack object (validated). */
int lp_encode_request(struct lp_out *o, const struct lp_request *r);
int lp_encode_reply(struct lp_out *o, enum lp_call call, const struct lp_reply *r);
int lp_encode_inbox(struct lp_out *o, const struct lp_inbox *m);
int lp_encode_topic_msg(struct lp_out *o, const struct lp_topic_msg *m);
int lp_encode_inbox_status(struct lp_out *o, enum lp_inbox_status st);
int lp_encode_console_reply(struct lp_out *o, const struct lp_console_reply *r);
int lp_encode_console_out(struct lp_out *o, const struct lp_console_out *m);
int lp_encode_topics_reply(struct lp_out *o, uint32_t applied);

/* Validates the name forms of LINK.md §1. */
bool lp_valid_prefix(struct lp_span s);
bool lp_valid_gateway_id(struct lp_span s);
bool lp_valid_dev(struct lp_span s);
bool lp_valid_topic(struct lp_span s);
bool lp_valid_op(struct lp_span s);

/* Minimal msgpack helpers shared by the programs that build payloads by hand. Each appends to
 * `o` (latching failure). */
void lp_mp_map(struct lp_out *o, uint32_t n);
void lp_mp_array(struct lp_out *o, uint32_t n);
void lp_mp_str(struct lp_out *o, const void *s, size_t n);
void lp_mp_cstr(struct lp_out *o, const char *s);
void lp_mp_bin(struct lp_out *o, const void *s, size_t n);
void lp_mp_uint(struct lp_out *o, uint64_t v);
void lp_mp_int(struct lp_out *o, int64_t v);
void lp_mp_bool(struct lp_out *o, bool v);
void lp_mp_nil(struct lp_out *o);
void lp_mp_raw(struct lp_out *o, const void *p, size_t n);

/* Length of the one msgpack object at p (nesting ≤ LP_MAX_DEPTH), or 0 when invalid/truncated. */
size_t lp_mp_object_len(const uint8_t *p, size_t n);

/* Looks up a str key in the msgpack map at `map` (one object); returns 1 and the value's span,
 * 0 when absent, -1 when `map` is not a valid map. For platforms reading payloads. */
int lp_mp_map_get(struct lp_span map, const char *key, struct lp_span *value);
/* Reads a value span as str / bin / uint / int / bool: 0 on success, -1 on type mismatch. */
int lp_mp_read_str(struct lp_span v, struct lp_span *out);
int lp_mp_read_bin(struct lp_span v, struct lp_span *out);
int lp_mp_read_uint(struct lp_span v, uint64_t *out);
int lp_mp_read_int(struct lp_span v, int64_t *out);
int lp_mp_read_bool(struct lp_span v, bool *out);
bool lp_mp_is_nil(struct lp_span v);

static inline struct lp_span lp_cspan(const char *s)
{
    struct lp_span r = {(const uint8_t *)s, 0};
    while (s && s[r.n])
        r.n++;
    return r;
}

#endif
