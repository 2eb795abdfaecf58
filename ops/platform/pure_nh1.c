/* nh1: shared-secret verification and signing (pure_nh1.h; device-protocol.md §2.3). */
#include "pure_nh1.h"

#include <stdbool.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/digest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define ALG_PREFIX "NH1-HMAC-"
#define SALT_HEAD "NH1:device-socket:shared-secret:connect\n\n"
/* Salt: head + "x-nh-alg=" alg "\n" "x-nh-key=" key "\n" "x-nh-time=" digits "\n". */
#define SALT_MAX (sizeof(SALT_HEAD) - 1 + 10 + NH1_MAX_ALG + 10 + NH1_MAX_KEY + 11 + 20)
/* Decoded MSG of a NH1_MAX_SIGNATURE token is at most 3/4 of it. */
#define MSG_MAX (NH1_MAX_SIGNATURE / 4 * 3 + 3)
#define LINK_MAX_AGE 86400

enum {
    ETF_VERSION = 131,
    ETF_SMALL_INT = 97,
    ETF_INT = 98,
    ETF_SMALL_TUPLE = 104,
    ETF_BINARY = 109,
    ETF_SMALL_BIG = 110
};

/* ---- base64url without padding ---- */

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64url_len(size_t n)
{
    return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

/* Writes b64url_len(n) chars (no NUL). */
static void b64url_encode(const uint8_t *in, size_t n, char *out)
{
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = B64URL[v >> 18];
        *out++ = B64URL[v >> 12 & 63];
        *out++ = B64URL[v >> 6 & 63];
        *out++ = B64URL[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *out++ = B64URL[v >> 18];
        *out++ = B64URL[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *out++ = B64URL[v >> 18];
        *out++ = B64URL[v >> 12 & 63];
        *out++ = B64URL[v >> 6 & 63];
    }
}

static int b64url_val(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Strict decode: only the url alphabet, no padding, no length ≡ 1 (mod 4), and the unused low
 * bits of the last char must be zero, so each byte string has exactly one accepted encoding.
 * Returns the decoded length, or -1. `out` must hold n / 4 * 3 + 2 bytes. */
static long b64url_decode(const uint8_t *in, size_t n, uint8_t *out)
{
    if (n % 4 == 1)
        return -1;
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_val(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6 | (uint32_t)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    if (bits && (acc & ((1u << bits) - 1)))
        return -1;
    return (long)o;
}

/* ---- x-nh-alg / x-nh-time ---- */

struct alg {
    const EVP_MD *md;
    uint32_t iterations, keylen;
};

static bool ieq(const uint8_t *p, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    if (n != l)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (c >= 'A' && c <= 'Z')
            c = (uint8_t)(c - 'A' + 'a');
        if (c != (uint8_t)lit[i])
            return false;
    }
    return true;
}

/* Decimal digits only (no sign); 1 ≤ value ≤ max. Leading zeros are accepted here: the salt
 * carries x-nh-alg verbatim, so they cannot make two different salts verify alike. */
static bool parse_bounded(const uint8_t *p, size_t n, uint32_t max, uint32_t *out)
{
    if (n == 0)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(p[i] - '0');
        if (v > max)
            return false;
    }
    if (v == 0)
        return false;
    *out = (uint32_t)v;
    return true;
}

static enum nh1_result parse_alg(struct lp_span s, struct alg *a)
{
    if (!s.p || s.n == 0)
        return NH1_NO_ALG;
    size_t pl = sizeof(ALG_PREFIX) - 1;
    if (s.n > NH1_MAX_ALG || s.n <= pl || memcmp(s.p, ALG_PREFIX, pl) != 0)
        return NH1_BAD_ALG;
    const uint8_t *p = s.p + pl, *end = s.p + s.n;
    const uint8_t *d1 = memchr(p, '-', (size_t)(end - p));
    if (!d1)
        return NH1_BAD_ALG;
    const uint8_t *d2 = memchr(d1 + 1, '-', (size_t)(end - d1 - 1));
    if (!d2)
        return NH1_BAD_ALG;
    /* The digest is lowercased by the server (device-protocol.md §2.3.1). */
    size_t dn = (size_t)(d1 - p);
    if (ieq(p, dn, "sha"))
        a->md = EVP_sha1();
    else if (ieq(p, dn, "sha256"))
        a->md = EVP_sha256();
    else if (ieq(p, dn, "sha384"))
        a->md = EVP_sha384();
    else if (ieq(p, dn, "sha512"))
        a->md = EVP_sha512();
    else
        return NH1_BAD_ALG;
    /* A third '-' lands in the key length and fails its digit check. */
    if (!parse_bounded(d1 + 1, (size_t)(d2 - d1 - 1), NH1_MAX_ITERATIONS, &a->iterations) ||
        !parse_bounded(d2 + 1, (size_t)(end - d2 - 1), NH1_MAX_KEYLEN, &a->keylen))
        return NH1_BAD_ALG;
    return NH1_OK;
}

/* Canonical decimal only: the salt is rebuilt from the parsed integer, so "0017…" or "+17…"
 * would produce a salt different from what was signed; rejecting them says why. */
static bool parse_time(struct lp_span s, uint64_t *out)
{
    if (!s.p || s.n == 0 || s.n > NH1_MAX_TIME_DIGITS)
        return false;
    if (s.p[0] == '0' && s.n > 1)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < s.n; i++) {
        if (s.p[i] < '0' || s.p[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s.p[i] - '0');
    }
    *out = v;
    return true;
}

/* ---- salt, key, HMAC ---- */

static size_t build_salt(uint8_t *out, struct lp_span alg, struct lp_span key, uint64_t t)
{
    char digits[24];
    int dn = 0;
    char rev[24];
    do {
        rev[dn++] = (char)('0' + t % 10);
        t /= 10;
    } while (t);
    for (int i = 0; i < dn; i++)
        digits[i] = rev[dn - 1 - i];
    size_t n = 0;
#define PUT(p, len)                                                                                          \
    do {                                                                                                     \
        if (len) /* alg/key may be absent (NULL, 0) */                                                       \
            memcpy(out + n, (p), (len));                                                                     \
        n += (len);                                                                                          \
    } while (0)
    PUT(SALT_HEAD, sizeof(SALT_HEAD) - 1);
    PUT("x-nh-alg=", 9);
    PUT(alg.p, alg.n);
    PUT("\nx-nh-key=", 10);
    PUT(key.p, key.n);
    PUT("\nx-nh-time=", 11);
    PUT(digits, (size_t)dn);
    PUT("\n", 1);
#undef PUT
    return n;
}

/* PROTECTED segment → HMAC digest (independent of the PBKDF2 digest). */
static const EVP_MD *protected_md(const uint8_t *p, size_t n)
{
    if (n == 7 && memcmp(p, "SFMyNTY", 7) == 0)
        return EVP_sha256();
    if (n == 7 && memcmp(p, "SFMzODQ", 7) == 0)
        return EVP_sha384();
    if (n == 7 && memcmp(p, "SFM1MTI", 7) == 0)
        return EVP_sha512();
    return NULL;
}

/* ---- ETF ---- */

struct rd {
    const uint8_t *p, *end;
};

/* An integer as Erlang encodes it; SMALL_BIG_EXT only non-negative and ≤ INT64_MAX. */
static bool etf_int(struct rd *r, int64_t *out)
{
    if (r->p >= r->end)
        return false;
    uint8_t tag = *r->p++;
    size_t left = (size_t)(r->end - r->p);
    if (tag == ETF_SMALL_INT) {
        if (left < 1)
            return false;
        *out = *r->p++;
        return true;
    }
    if (tag == ETF_INT) {
        if (left < 4)
            return false;
        uint32_t u = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
        r->p += 4;
        *out = (int32_t)u;
        return true;
    }
    if (tag == ETF_SMALL_BIG) {
        if (left < 2)
            return false;
        size_t n = r->p[0];
        uint8_t sign = r->p[1];
        r->p += 2;
        if (sign != 0 || n > 8 || (size_t)(r->end - r->p) < n)
            return false;
        uint64_t v = 0;
        for (size_t i = n; i-- > 0;)
            v = v << 8 | r->p[i];
        r->p += n;
        if (v > (uint64_t)INT64_MAX)
            return false;
        *out = (int64_t)v;
        return true;
    }
    return false;
}

int nh1_decode_msg(const uint8_t *msg, size_t n, struct lp_span *identifier, int64_t *signed_at_ms)
{
    struct rd r = {msg, msg + n};
    if (n < 3 || r.p[0] != ETF_VERSION || r.p[1] != ETF_SMALL_TUPLE)
        return -1;
    uint8_t arity = r.p[2];
    if (arity != 2 && arity != 3)
        return -1;
    r.p += 3;
    /* Only BINARY_EXT: anything else (a fun, a pid, a list…) is refused outright. */
    if (r.end - r.p < 5 || r.p[0] != ETF_BINARY)
        return -1;
    uint32_t len = (uint32_t)r.p[1] << 24 | (uint32_t)r.p[2] << 16 | (uint32_t)r.p[3] << 8 | r.p[4];
    r.p += 5;
    if ((size_t)(r.end - r.p) < len)
        return -1;
    struct lp_span id = {r.p, len};
    r.p += len;
    int64_t at, max_age;
    if (!etf_int(&r, &at))
        return -1;
    if (arity == 3 && !etf_int(&r, &max_age))
        return -1;
    if (r.p != r.end)
        return -1;
    *identifier = id;
    *signed_at_ms = at;
    return 0;
}

/* ---- verify ---- */

enum nh1_result nh1_verify(const struct nh1_headers *h, const uint8_t *secret, size_t secret_len,
                           int64_t now_ms, uint32_t max_age_s, char *ident_buf, size_t ident_cap,
                           struct lp_span *identifier)
{
    struct alg alg;
    enum nh1_result rc = parse_alg(h->alg, &alg);
    if (rc != NH1_OK)
        return rc;
    uint64_t t;
    if (!parse_time(h->time, &t))
        return NH1_BAD_TIME;
    if (h->key.n > NH1_MAX_KEY || (h->key.n && !h->key.p) || secret_len > NH1_MAX_SECRET ||
        (secret_len && !secret))
        return NH1_MALFORMED;

    /* Token shape: PROTECTED "." b64url(MSG) "." b64url(MAC), nothing else. */
    struct lp_span sig = h->signature;
    if (!sig.p || sig.n == 0 || sig.n > NH1_MAX_SIGNATURE)
        return NH1_MALFORMED;
    const uint8_t *end = sig.p + sig.n;
    const uint8_t *dot1 = memchr(sig.p, '.', sig.n);
    if (!dot1)
        return NH1_MALFORMED;
    const uint8_t *dot2 = memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1));
    if (!dot2 || memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1)))
        return NH1_MALFORMED;
    const EVP_MD *mac_md = protected_md(sig.p, (size_t)(dot1 - sig.p));
    if (!mac_md)
        return NH1_MALFORMED;
    uint8_t msg[MSG_MAX];
    long msg_n = b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), msg);
    uint8_t mac[NH1_MAX_SIGNATURE / 4 * 3 + 3];
    long mac_n = b64url_decode(dot2 + 1, (size_t)(end - dot2 - 1), mac);
    if (msg_n <= 0 || mac_n < 0 || (size_t)mac_n != EVP_MD_size(mac_md))
        return NH1_MALFORMED;

    uint8_t salt[SALT_MAX];
    size_t salt_n = build_salt(salt, h->alg, h->key, t);
    uint8_t dk[NH1_MAX_KEYLEN];
    static const uint8_t empty[1];
    if (!PKCS5_PBKDF2_HMAC((const char *)(secret ? secret : empty), secret_len, salt, salt_n, alg.iterations,
                           alg.md, alg.keylen, dk))
        return NH1_INVALID;
    uint8_t expect[EVP_MAX_MD_SIZE];
    unsigned expect_n = 0;
    bool ok = HMAC(mac_md, dk, alg.keylen, sig.p, (size_t)(dot2 - sig.p), expect, &expect_n) &&
              expect_n == (unsigned)mac_n && CRYPTO_memcmp(expect, mac, expect_n) == 0;
    OPENSSL_cleanse(dk, sizeof(dk));
    if (!ok)
        return NH1_INVALID;

    struct lp_span id;
    int64_t at;
    if (nh1_decode_msg(msg, (size_t)msg_n, &id, &at) != 0)
        return NH1_MALFORMED;
    if (id.n == 0 || id.n >= ident_cap || memchr(id.p, 0, id.n))
        return NH1_MALFORMED;
    /* No forward skew at all (§2.3.4): link floors to whole seconds, so an honest device is at
     * most the sub-second remainder ahead. */
    if (at > now_ms)
        return NH1_INVALID;
    /* at ≤ now_ms, so the true difference is in [0, 2^64): unsigned subtraction is exact. */
    if ((uint64_t)now_ms - (uint64_t)at > (uint64_t)max_age_s * 1000u)
        return NH1_EXPIRED;
    memcpy(ident_buf, id.p, id.n);
    ident_buf[id.n] = '\0';
    identifier->p = (const uint8_t *)ident_buf;
    identifier->n = id.n;
    return NH1_OK;
}

const char *nh1_reason(enum nh1_result r)
{
    switch (r) {
    case NH1_OK:
        return "ok";
    case NH1_NO_ALG:
        return "missing x-nh-alg header";
    case NH1_BAD_ALG:
        return "unsupported x-nh-alg (expected NH1-HMAC-<sha|sha256|sha384|sha512>-<iterations "
               "1..100000>-<key length 1..64>)";
    case NH1_BAD_TIME:
        return "missing or non-canonical x-nh-time";
    case NH1_MALFORMED:
        return "malformed x-nh-signature";
    case NH1_INVALID:
        return "invalid signature (wrong secret, tampered token, or signed ahead of the server "
               "clock)";
    case NH1_EXPIRED:
        return "signature expired (check the device clock)";
    }
    return "unknown shared-secret error";
}

/* ---- sign ---- */

/* Appends an integer exactly as erlang:term_to_binary/1 encodes it (v ≥ 0). */
static size_t etf_put_int(uint8_t *out, int64_t v)
{
    if (v <= 255) {
        out[0] = ETF_SMALL_INT;
        out[1] = (uint8_t)v;
        return 2;
    }
    if (v <= INT32_MAX) {
        out[0] = ETF_INT;
        out[1] = (uint8_t)(v >> 24);
        out[2] = (uint8_t)(v >> 16);
        out[3] = (uint8_t)(v >> 8);
        out[4] = (uint8_t)v;
        return 5;
    }
    uint64_t u = (uint64_t)v;
    size_t n = 0;
    out[0] = ETF_SMALL_BIG;
    out[2] = 0; /* sign */
    while (u) {
        out[3 + n++] = (uint8_t)u;
        u >>= 8;
    }
    out[1] = (uint8_t)n;
    return 3 + n;
}

int nh1_sign(const char *key, const char *secret, const char *identifier, int64_t unix_s, char *sig_out,
             size_t cap)
{
    if (!key || !secret || !identifier || !sig_out || unix_s < 0 || unix_s > INT64_MAX / 1000)
        return -1;
    size_t key_n = strlen(key), secret_n = strlen(secret), id_n = strlen(identifier);
    if (key_n > NH1_MAX_KEY || secret_n > NH1_MAX_SECRET || id_n == 0 || id_n > MSG_MAX - 32)
        return -1;

    uint8_t msg[MSG_MAX];
    size_t n = 0;
    msg[n++] = ETF_VERSION;
    msg[n++] = ETF_SMALL_TUPLE;
    msg[n++] = 3;
    msg[n++] = ETF_BINARY;
    msg[n++] = (uint8_t)(id_n >> 24);
    msg[n++] = (uint8_t)(id_n >> 16);
    msg[n++] = (uint8_t)(id_n >> 8);
    msg[n++] = (uint8_t)id_n;
    memcpy(msg + n, identifier, id_n);
    n += id_n;
    n += etf_put_int(msg + n, unix_s * 1000);
    n += etf_put_int(msg + n, LINK_MAX_AGE);

    /* Never produce a token nh1_verify would refuse for its size. */
    size_t need = 8 + b64url_len(n) + 1 + b64url_len(32);
    if (need > NH1_MAX_SIGNATURE || need + 1 > cap)
        return -1;
    memcpy(sig_out, "SFMyNTY.", 8);
    size_t o = 8;
    b64url_encode(msg, n, sig_out + o);
    o += b64url_len(n);

    uint8_t salt[SALT_MAX];
    size_t salt_n = build_salt(salt, lp_cspan(NH1_SIGN_ALG), (struct lp_span){(const uint8_t *)key, key_n},
                               (uint64_t)unix_s);
    uint8_t dk[32], mac[32];
    unsigned mac_n = 0;
    int ok = PKCS5_PBKDF2_HMAC(secret, secret_n, salt, salt_n, 1000, EVP_sha256(), sizeof(dk), dk) &&
             HMAC(EVP_sha256(), dk, sizeof(dk), (const uint8_t *)sig_out, o, mac, &mac_n) &&
             mac_n == sizeof(mac);
    OPENSSL_cleanse(dk, sizeof(dk));
    if (!ok)
        return -1;
    sig_out[o++] = '.';
    b64url_encode(mac, sizeof(mac), sig_out + o);
    o += b64url_len(sizeof(mac));
    sig_out[o] = '\0';
    return 0;
}
