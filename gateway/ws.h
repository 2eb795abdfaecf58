/* WebSocket codec, server side: RFC 6455 frame decode/encode over caller-owned byte spans (unmasking,
 * fragmentation bookkeeping, control frames, limits, close codes), strict UTF-8 validation, and
 * RFC 7692 permessage-deflate without per-connection compression state.
 * Deliberately no I/O, no libevent, no per-connection allocation: the caller owns every byte and buffer. */
#ifndef NHGW_WS_H
#define NHGW_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "common.h"

/* RFC 6455 §5.2 opcodes; 0x3-0x7 and 0xB-0xF are reserved and rejected. */
enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

/* Negative error codes; ws_err_close_code() maps them to the close code to send. */
#define WS_ERR_PROTOCOL (-1) /* protocol violation: close 1002 */
#define WS_ERR_TOO_BIG (-2)  /* frame, message or inflated size over its limit: close 1009 */
#define WS_ERR_UTF8 (-3)     /* invalid UTF-8 in a text message or close reason: close 1007 */
#define WS_ERR_NOMEM (-4)    /* allocation failed (our fault, not the peer's): close 1011 */
#define WS_ERR_INFLATE (-5)  /* corrupt compressed data: close 1007 */

/* Close code for a WS_ERR_* (1011 for anything unknown). */
uint16_t ws_err_close_code(int err);
/* Static, human-readable name of a WS_ERR_* for logs ("unknown error" otherwise). */
const char *ws_strerror(int err);

#define WS_MAX_HEADER 14 /* largest frame header: 2 + 8 length + 4 mask (server frames need at most 10) */
#define WS_MAX_CONTROL 125 /* RFC 6455 §5.5: control frame payload limit */

/* Hard limits, in bytes. Checked with `>`: a value of exactly the limit is accepted. */
struct ws_limits {
    size_t max_frame;    /* payload of one frame on the wire */
    size_t max_message;  /* sum of the frame payloads of one (possibly fragmented) message, on the wire */
    size_t max_inflated; /* one message after permessage-deflate decompression (pass to ws_inflate_msg) */
};

/* One parsed frame; a view into the caller's buffer. */
struct ws_frame {
    uint8_t opcode;     /* enum ws_opcode */
    bool fin;           /* final fragment */
    bool rsv1;          /* permessage-deflate "compressed" bit (only on TEXT/BINARY when negotiated) */
    uint8_t *payload;   /* unmasked, points into the parsed buffer; valid while the caller keeps those bytes */
    size_t payload_len; /* bytes at payload */
};

/* Parse one CLIENT frame at p[0..n).
 * Returns the bytes consumed (> 0) with *f filled and the payload unmasked IN PLACE (f->payload points into
 * p), 0 if more bytes are needed, or a negative WS_ERR_*. On 0, *need (if need is not NULL) is the total frame
 * size (header + payload) as soon as the length field is complete (even before the mask key), else the header
 * size as far as it is known (2 until the second byte arrived), so the caller can reserve exactly.
 * Because the payload is unmasked in place, a frame must be parsed once: the caller drops the consumed bytes
 * before calling again (a 0 return modifies nothing, so re-parsing a growing prefix is fine).
 * Rejects as early as the header allows (any prefix of a bad header already fails):
 *   RSV2/RSV3 set, RSV1 unless `deflate` and a data frame (TEXT/BINARY/CONT; RSV1 on CONT is then rejected by
 *   ws_msg_track), reserved opcode, control frame with FIN=0 or payload > 125 (§5.5), unmasked frame (§5.1),
 *   64-bit length with the MSB set (§5.2) → WS_ERR_PROTOCOL; payload_len > lim->max_frame → WS_ERR_TOO_BIG,
 *   decided from the header alone. Non-minimal length encodings are accepted (as Bandit and most servers do).
 * lim is borrowed and must not be NULL. On error *f is not touched. */
ssize_t ws_frame_parse(uint8_t *p, size_t n, bool deflate, const struct ws_limits *lim, struct ws_frame *f,
                       size_t *need);

/* Message reassembly bookkeeping. The caller owns the bytes; this only tracks state and limits.
 * Zero-initialise (or ws_msg_reset) before the first frame; 12-16 bytes per connection. */
struct ws_msg_state {
    uint8_t opcode;  /* TEXT/BINARY of the fragmented message in progress, 0 if none */
    bool compressed; /* RSV1 of its first fragment */
    size_t len;      /* wire payload bytes accumulated so far */
};

#define WS_ACT_CONTROL 1 /* handle the control frame now (allowed between fragments, §5.4) */
#define WS_ACT_MESSAGE 2 /* this frame alone is a complete message (st untouched: read f) */
#define WS_ACT_START 3   /* first fragment: caller starts accumulating */
#define WS_ACT_CONT 4    /* middle fragment: append */
#define WS_ACT_END 5     /* last fragment: append, message complete (st->opcode/compressed tell its type) */

/* Classify a frame returned by ws_frame_parse. Returns a WS_ACT_* or a negative error:
 * CONT without a message in progress, TEXT/BINARY while one is in progress (§5.4), RSV1 on a CONT frame
 * (RFC 7692 §6.1) → WS_ERR_PROTOCOL; accumulated length > lim->max_message → WS_ERR_TOO_BIG (also for an
 * unfragmented message). After END the caller reads st->opcode/st->compressed, then calls ws_msg_reset(st).
 * On error st is unchanged. */
int ws_msg_track(struct ws_msg_state *st, const struct ws_frame *f, const struct ws_limits *lim);
void ws_msg_reset(struct ws_msg_state *st);

/* Write an unmasked server frame header for a payload of len bytes into out. Returns its length: 2, 4 or 10.
 * The caller passes a valid opcode, and fin=true / len <= 125 for control frames. */
size_t ws_frame_header(uint8_t out[WS_MAX_HEADER], uint8_t opcode, bool fin, bool rsv1, uint64_t len);

/* Close frame payload: 2-byte big-endian code + reason, the reason truncated at a UTF-8 character boundary so
 * the whole fits 125 bytes (§5.5). reason may be NULL; it should be valid UTF-8. code 0 or 1005 ("no status",
 * which must not be sent, §7.4.1) gives an empty payload. Returns the payload length (0..125). */
size_t ws_close_payload(uint8_t out[WS_MAX_CONTROL], uint16_t code, const char *reason);

/* Validate a received close payload p[0..n) (RFC 6455 §5.5.1, §7.4). Returns 0 with *code set, or:
 * empty → 0 with *code = 1005; length 1 or > 125 → WS_ERR_PROTOCOL; code 0-999, 1004, 1005, 1006, 1015,
 * 1016-2999 or >= 5000 → WS_ERR_PROTOCOL; reason not valid UTF-8 → WS_ERR_UTF8 (§8.1 says fail the
 * connection; 1007 is what §7.4.1 defines for it and what the Autobahn suite, case 7.5.1, expects). */
int ws_close_parse(const uint8_t *p, size_t n, uint16_t *code);

/* Strict UTF-8 (RFC 3629 / Unicode table 3-7): no overlongs, no surrogates, nothing above U+10FFFF, no
 * truncated sequence at the end. ASCII runs are checked 8 bytes at a time. */
bool ws_utf8_valid(const uint8_t *p, size_t n);

/* permessage-deflate (RFC 7692) with NO per-connection zlib state: the server always answers
 * server_no_context_takeover; client_no_context_takeover, so one inflate stream and one deflate stream per
 * window size, owned by the worker and reset after every message, serve every connection.
 * Not thread-safe: one ws_zctx per thread. */
struct ws_zctx;

/* Allocate the inflate stream and the 15-bit deflate stream at zlib `level` (-1 = Z_DEFAULT_COMPRESSION, or
 * 0..9). Streams for smaller windows are created on first use. Returns NULL on failure or a bad level. */
struct ws_zctx *ws_zctx_new(int level);
void ws_zctx_free(struct ws_zctx *z); /* NULL is a no-op */

/* Inflate one whole compressed message in[0..n) (the concatenated payloads of its frames; §7.2.2: the
 * 00 00 ff ff tail is appended internally without copying the input), then reset the stream.
 * Appends the output to out. Returns 0, or: more than `max` output bytes → WS_ERR_TOO_BIG (inflation stops as
 * soon as max + 1 bytes exist, so a zip bomb costs at most max + 1 bytes of out); corrupt data →
 * WS_ERR_INFLATE; allocation failure → WS_ERR_NOMEM. On error out->len is restored (capacity may have grown).
 * Messages made of DEFLATE blocks with BFINAL=1 (§7.2.3.3) are accepted; data after such a block starts a
 * fresh stream. */
int ws_inflate_msg(struct ws_zctx *z, const uint8_t *in, size_t n, struct buf *out, size_t max);

/* Deflate one whole message in[0..n) with no context takeover and a 2^window_bits window (9..15, as
 * negotiated in ws_pmd.server_window_bits) and append it to out without the trailing 00 00 ff ff (§7.2.1).
 * An empty message deflates to the single byte 0x00 (§7.2.3.6). `limit` caps out->len like buf_try_append
 * (capacity may reach limit + 5: room for the stripped tail and zlib's end-of-flush test).
 * Returns 0, or WS_ERR_TOO_BIG if the output would pass `limit` (pass limit = out->len + n to give up when
 * compression does not pay, and send the message uncompressed instead: RSV1 is per message, §6),
 * WS_ERR_NOMEM on allocation failure, WS_ERR_PROTOCOL for a bad window_bits. On error out->len is restored.
 * Small messages rarely shrink (a 64-byte Phoenix reply grows by one byte) and each call costs a few µs of
 * zlib setup, so callers should send messages below a few hundred bytes uncompressed. */
int ws_deflate_msg(struct ws_zctx *z, int window_bits, const uint8_t *in, size_t n, struct buf *out,
                   size_t limit);

/* Negotiated permessage-deflate parameters for one connection (2 bytes). */
struct ws_pmd {
    bool enabled;               /* extension accepted */
    uint8_t server_window_bits; /* window to deflate with: 9..15 */
};

#define WS_PMD_RESP_MAX 128 /* enough for the longest response value (101 bytes) incl. NUL */

/* Negotiation (RFC 7692 §5, §7.1; syntax RFC 6455 §9.1). Call once per Sec-WebSocket-Extensions header line
 * value[0..len) (several lines form one ordered list). Zero *out before the first call; once a call returned
 * true, further calls return true and change nothing.
 * Offers are tried in order and the first acceptable permessage-deflate offer wins. Acceptable parameters:
 * server_no_context_takeover, client_no_context_takeover (no value), server_max_window_bits=9..15,
 * client_max_window_bits (no value or 8..15; our inflater always uses 15 bits, which decodes any window).
 * Values may be tokens or quoted strings, decimal without leading zeros (§7.1.2). An unknown parameter, a
 * duplicate, a bad value, or server_max_window_bits=8 (raw deflate in zlib cannot use a 256-byte window)
 * makes that offer unacceptable. Extension and parameter names match case-insensitively. A syntax error
 * spoils only the list element it is in. Other extensions are ignored.
 * Returns true once accepted: *out filled and resp holds the NUL-terminated response value
 * "permessage-deflate; server_no_context_takeover; client_no_context_takeover", plus
 * "; server_max_window_bits=N" when the client asked for N < 15. Returns false (and leaves *out disabled)
 * if nothing was acceptable or resp_cap is too small (WS_PMD_RESP_MAX always suffices). */
bool ws_pmd_negotiate(const char *value, size_t len, struct ws_pmd *out, char *resp, size_t resp_cap);

#endif
