/* nh1: NervesHub shared-secret ("NH1") connect verification, device-protocol.md §2.3, and the
 * device-side signer that nerves_hub_link implements (for nhctl, tests and the dev stack).
 * Pure: no I/O, no clock (the caller passes now_ms), no allocation; BoringSSL for PBKDF2/HMAC.
 *
 * Every input a peer controls is bounded before any work is done (the NH1_MAX_* limits). The
 * PBKDF2 iteration count is chosen by the peer in x-nh-alg, so it is capped: an uncapped count
 * would let one unauthenticated request burn seconds of platform CPU. */
#ifndef NHGW_PURE_NH1_H
#define NHGW_PURE_NH1_H

#include <stddef.h>
#include <stdint.h>

#include "lp.h" /* struct lp_span */

/* The alg nerves_hub_link sends, and the only one nh1_sign produces. */
#define NH1_SIGN_ALG "NH1-HMAC-sha256-1000-32"
/* link always sends 1000. The cap bounds what one request can cost: iterations × ceil(keylen /
 * digest size) HMACs, worst case sha256-100000-64 ≈ 0.1–0.2 s of one core (measured ~100 ms with
 * OpenSSL). Callers should look the key up first, so only holders of a real key can spend it. */
#define NH1_MAX_ITERATIONS 100000u
#define NH1_MAX_KEYLEN 64u      /* PBKDF2 output bytes (the largest HMAC key that is useful) */
#define NH1_MAX_ALG 64u         /* x-nh-alg bytes */
#define NH1_MAX_KEY 256u        /* x-nh-key bytes (generated keys are 47) */
#define NH1_MAX_TIME_DIGITS 18u /* x-nh-time digits: always fits int64 */
#define NH1_MAX_SIGNATURE 1024u /* x-nh-signature bytes (= LP_MAX_X_VALUE) */
#define NH1_MAX_SECRET 256u     /* stored secret bytes (generated secrets are 43) */

enum nh1_result {
    NH1_OK,
    NH1_NO_ALG,    /* x-nh-alg absent or empty */
    NH1_BAD_ALG,   /* not NH1-HMAC-<sha|sha256|sha384|sha512>-<1..MAX_ITERATIONS>-<1..MAX_KEYLEN> */
    NH1_BAD_TIME,  /* x-nh-time absent, empty, or not canonical decimal (NervesHub answers 503
                    * when it is absent; the caller can tell that case by h->time.n == 0) */
    NH1_MALFORMED, /* token shape, base64url, or (after the HMAC matched) the ETF message; also
                    * a key/secret/identifier over its limit */
    NH1_INVALID,   /* HMAC mismatch (wrong secret or tampered), or signed in the future */
    NH1_EXPIRED,   /* signed_at_ms + max_age_s * 1000 < now_ms */
};

/* The four request headers' values (absent: n == 0). */
struct nh1_headers {
    struct lp_span alg, key, time, signature;
};

/* Verifies h against `secret` (the stored secret's ASCII bytes, used as the PBKDF2 password as
 * is) at server time now_ms; max_age_s is the server's limit (NervesHub: 90). The age is checked
 * with the timestamp inside the token; x-nh-time only feeds the salt. No forward skew is
 * tolerated. On NH1_OK the token's identifier is copied NUL-terminated into ident_buf and
 * *identifier points at it; an identifier longer than ident_cap - 1 bytes, empty, or containing
 * NUL is NH1_MALFORMED. The HMAC is compared in constant time before the message is decoded. */
enum nh1_result nh1_verify(const struct nh1_headers *h, const uint8_t *secret, size_t secret_len,
                           int64_t now_ms, uint32_t max_age_s, char *ident_buf, size_t ident_cap,
                           struct lp_span *identifier);

/* Human reason (static, ASCII) for the nh-connection-error-reason header and logs. */
const char *nh1_reason(enum nh1_result r);

/* Produces the x-nh-signature that nerves_hub_link sends for (key, secret, identifier) at Unix
 * time unix_s with alg NH1_SIGN_ALG: HS256 over the ETF {identifier, unix_s * 1000, 86400}
 * (signed_at as Erlang encodes the integer, i.e. SMALL_BIG_EXT for current dates; max_age as
 * INTEGER_EXT). x-nh-time is then the decimal unix_s. Writes a NUL-terminated token; returns 0,
 * or -1 when cap is too small, unix_s is negative or too large, or an input is over its limit. */
int nh1_sign(const char *key, const char *secret, const char *identifier, int64_t unix_s, char *sig_out,
             size_t cap);

/* Decodes a token's MSG (ETF): the 3-tuple {binary identifier, signed_at_ms, max_age_s} or the
 * 2-tuple {binary identifier, signed_at_ms}; integers as SMALL_INTEGER_EXT, INTEGER_EXT or
 * non-negative SMALL_BIG_EXT (≤ 8 bytes, ≤ INT64_MAX); max_age is read and ignored. The whole
 * input must be consumed. Returns 0 with *identifier pointing into msg, or -1. Exposed for the
 * tests and a fuzz target; nh1_verify calls it only on authenticated bytes. */
int nh1_decode_msg(const uint8_t *msg, size_t n, struct lp_span *identifier, int64_t *signed_at_ms);

#endif
