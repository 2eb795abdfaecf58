/* Unit tests for ops/platform/pure_nh1.c: the device-protocol.md §2.4 test vector step by step,
 * the accept window at its edges, nh1_sign byte for byte, every alg/time/token/ETF rejection,
 * limits at max and max+1, and HS384/HS512 + SHA-1/384/512 PBKDF2 variants.
 *
 * Tokens for the hostile cases are built here by make_token(), which uses BoringSSL directly
 * (not the code under test). Its output is pinned against constants computed independently with
 * Python's hashlib/hmac:
 *
 *   import hashlib, hmac, base64
 *   b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b'=').decode()
 *   secret = b"ExampleProductSecret00000000000000000000000"
 *   key = "nhp_ExampleProductKey00000000000000000000000000"
 *   msg = bytes.fromhex("8368036d0000000b" + b"nerves-abcd".hex() + "6e060000a8da769b016200015180")
 *   def tok(alg, prot, hm):                       # alg = NH1-HMAC-<d>-<it>-<kl>
 *       d, it, kl = alg.split('-')[2:]
 *       salt = ("NH1:device-socket:shared-secret:connect\n\nx-nh-alg=%s\nx-nh-key=%s\n"
 *               "x-nh-time=1767225600\n" % (alg, key)).encode()
 *       dk = hashlib.pbkdf2_hmac('sha1' if d == 'sha' else d, secret, salt, int(it), int(kl))
 *       head = prot + "." + b64(msg)
 *       return head + "." + b64(hmac.new(dk, head.encode(), hm).digest())
 *   tok("NH1-HMAC-sha512-1000-64", "SFMzODQ", hashlib.sha384)   # -> TOK_SHA512_HS384
 *   tok("NH1-HMAC-sha384-2000-48", "SFM1MTI", hashlib.sha512)   # -> TOK_SHA384_HS512
 *   tok("NH1-HMAC-sha-1000-20",    "SFMyNTY", hashlib.sha256)   # -> TOK_SHA1_HS256
 *   tok("NH1-HMAC-sha256-1000-32", "SFMyNTY", hashlib.sha256)   # -> the §2.4 signature
 */
#include "../lib/test.h"

#include <openssl/digest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../../ops/platform/pure_nh1.h"

#define SECRET "ExampleProductSecret00000000000000000000000"
#define KEY "nhp_ExampleProductKey00000000000000000000000000"
#define ALG "NH1-HMAC-sha256-1000-32"
#define TIME "1767225600"
#define T_MS INT64_C(1767225600000)
#define IDENT "nerves-abcd"
#define SALT_HEX                                                                                             \
    "4e48313a6465766963652d736f636b65743a7368617265642d7365637265743a636f6e6e6563740a"                       \
    "0a782d6e682d616c673d4e48312d484d41432d7368613235362d313030302d33320a782d6e682d6b"                       \
    "65793d6e68705f4578616d706c6550726f647563744b657930303030303030303030303030303030"                       \
    "303030303030303030300a782d6e682d74696d653d313736373232353630300a"
#define DK_HEX "ba7c5f684b3b3f21477e9016df517041a6d34b4cdb8137b26bb0960ffe1a796e"
#define MSG_HEX                                                                                              \
    "83 68 03 6d 00 00 00 0b 6e 65 72 76 65 73 2d 61 62 63 64 6e 06 00 00 a8 da 76 9b 01 62 00 01 51 80"
#define MSG_B64 "g2gDbQAAAAtuZXJ2ZXMtYWJjZG4GAACo2nabAWIAAVGA"
#define MAC_HEX "6bcf6fd1622d5b201cd9ae4db4ea7ecbf83a26ecb2ad2124126ce4e4531f00d8"
#define SIG "SFMyNTY.g2gDbQAAAAtuZXJ2ZXMtYWJjZG4GAACo2nabAWIAAVGA.a89v0WItWyAc2a5NtOp-y_g6JuyyrSEkEmzk5FMfANg"

#define TOK_SHA512_HS384                                                                                     \
    "SFMzODQ.g2gDbQAAAAtuZXJ2ZXMtYWJjZG4GAACo2nabAWIAAVGA."                                                  \
    "yufcc6eKh5ArrAcquhCtIWqNr8tBmyrcGNyFFO1t_ufJCT1Os5NUEZ4nsBLz3FnB"
#define TOK_SHA384_HS512                                                                                     \
    "SFM1MTI.g2gDbQAAAAtuZXJ2ZXMtYWJjZG4GAACo2nabAWIAAVGA."                                                  \
    "aWi_citgdz-TBKHMPRxDA9rS2mpCkzfyOpEQfh2EuqelwtjYN7Brr1XXiwj4sl8MsjFLgUR65cDeCWuRqbZE_g"
#define TOK_SHA1_HS256                                                                                       \
    "SFMyNTY.g2gDbQAAAAtuZXJ2ZXMtYWJjZG4GAACo2nabAWIAAVGA.6zlRYqxW-G3G5uV_RzaWrVqCJmsCdAf5ncGAWPySHic"

/* ---- helpers (independent of the code under test) ---- */

static struct lp_span S(const char *s) {
    return lp_cspan(s);
}

static char *
tohex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
    out[2 * n] = 0;
    return out;
}

static void b64url(const uint8_t *p, size_t n, char *out)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = acc << 8 | p[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = A[(acc >> bits) & 63];
        }
    }
    if (bits)
        out[o++] = A[(acc << (6 - bits)) & 63];
    out[o] = 0;
}

static size_t salt_of(const char *alg, const char *key, const char *time, char *out)
{
    return (size_t)sprintf(out,
                           "NH1:device-socket:shared-secret:connect\n\nx-nh-alg=%s\nx-nh-key=%s\n"
                           "x-nh-time=%s\n",
                           alg, key, time);
}

/* A token signed over arbitrary MSG bytes: PBKDF2(pmd, iters, klen) with the salt of (alg, key,
 * time) as given, HMAC with mmd, PROTECTED prot. `out` needs ~2 KB. */
static void make_token_full(const char *alg, const EVP_MD *pmd, unsigned iters, size_t klen, const char *key,
                            const char *time, const char *secret, const char *prot, const EVP_MD *mmd,
                            const uint8_t *msg, size_t msg_n, char *out)
{
    char salt[1024];
    size_t salt_n = salt_of(alg, key, time, salt);
    uint8_t dk[128], mac[EVP_MAX_MD_SIZE];
    unsigned mac_n = 0;
    ASSERT(PKCS5_PBKDF2_HMAC(secret, strlen(secret), (const uint8_t *)salt, salt_n, iters, pmd, klen, dk));
    strcpy(out, prot);
    strcat(out, ".");
    b64url(msg, msg_n, out + strlen(out));
    ASSERT(HMAC(mmd, dk, klen, (const uint8_t *)out, strlen(out), mac, &mac_n));
    strcat(out, ".");
    b64url(mac, mac_n, out + strlen(out));
}

/* The link defaults (sha256-1000-32, HS256, KEY, TIME, SECRET) over arbitrary MSG bytes. */
static void make_token(const uint8_t *msg, size_t msg_n, char *out)
{
    make_token_full(ALG, EVP_sha256(), 1000, 32, KEY, TIME, SECRET, "SFMyNTY", EVP_sha256(), msg, msg_n, out);
}

/* ETF {identifier(binary), <signed_at bytes>, <max_age bytes>} with the tuple header. */
static size_t etf_msg(uint8_t *out, const void *ident, size_t ident_n, const char *rest_hex)
{
    size_t n = 0;
    out[n++] = 0x83;
    out[n++] = 0x68;
    out[n++] = 3;
    out[n++] = 0x6d;
    out[n++] = (uint8_t)(ident_n >> 24);
    out[n++] = (uint8_t)(ident_n >> 16);
    out[n++] = (uint8_t)(ident_n >> 8);
    out[n++] = (uint8_t)ident_n;
    memcpy(out + n, ident, ident_n);
    n += ident_n;
    size_t rn;
    uint8_t *rest = test_unhex(rest_hex, &rn);
    memcpy(out + n, rest, rn);
    free(rest);
    return n + rn;
}

/* SMALL_BIG 1767225600000, INTEGER_EXT 86400 (what link sends for TIME). */
#define REST_T "6e 06 00 00 a8 da 76 9b 01 62 00 01 51 80"

static struct nh1_headers hdrs(const char *alg, const char *key, const char *time, const char *sig)
{
    struct nh1_headers h = {S(alg), S(key), S(time), S(sig)};
    return h;
}

static char g_ident[256];
static struct lp_span g_id;

static enum nh1_result verify_at(const struct nh1_headers *h, const char *secret, int64_t now)
{
    memset(g_ident, 0x55, sizeof(g_ident));
    g_id = (struct lp_span){0};
    return nh1_verify(h, (const uint8_t *)secret, strlen(secret), now, 90, g_ident, sizeof(g_ident), &g_id);
}

static enum nh1_result verify_tok(const char *alg, const char *time, const char *tok, int64_t now)
{
    struct nh1_headers h = hdrs(alg, KEY, time, tok);
    return verify_at(&h, SECRET, now);
}

/* ---- the §2.4 vector ---- */

TEST(nh1_vector_steps)
{
    char salt[512], hex[1024];
    size_t salt_n = salt_of(ALG, KEY, TIME, salt);
    ASSERT_STR_EQ(tohex((const uint8_t *)salt, salt_n, hex), SALT_HEX);

    uint8_t dk[32];
    ASSERT(PKCS5_PBKDF2_HMAC(SECRET, 43, (const uint8_t *)salt, salt_n, 1000, EVP_sha256(), 32, dk));
    ASSERT_STR_EQ(tohex(dk, 32, hex), DK_HEX);

    size_t msg_n;
    uint8_t *msg = test_unhex(MSG_HEX, &msg_n);
    uint8_t built[64];
    size_t built_n = etf_msg(built, IDENT, 11, REST_T);
    ASSERT_MEM_EQ(built, built_n, msg, msg_n);
    char b64[128];
    b64url(msg, msg_n, b64);
    ASSERT_STR_EQ(b64, MSG_B64);

    uint8_t mac[32];
    unsigned mac_n = 0;
    const char *head = "SFMyNTY." MSG_B64;
    ASSERT(HMAC(EVP_sha256(), dk, 32, (const uint8_t *)head, strlen(head), mac, &mac_n));
    ASSERT_STR_EQ(tohex(mac, mac_n, hex), MAC_HEX);

    char tok[2048];
    make_token(msg, msg_n, tok);
    ASSERT_STR_EQ(tok, SIG);

    struct lp_span id;
    int64_t at = 0;
    ASSERT_EQ(nh1_decode_msg(msg, msg_n, &id, &at), 0);
    ASSERT_MEM_EQ(id.p, id.n, IDENT, 11);
    ASSERT_EQ(at, T_MS);
    free(msg);
}

TEST(nh1_vector_window)
{
    ASSERT_EQ(verify_tok(ALG, TIME, SIG, T_MS), NH1_OK);
    ASSERT_MEM_EQ(g_id.p, g_id.n, IDENT, 11);
    ASSERT(g_id.p == (const uint8_t *)g_ident);
    ASSERT_STR_EQ(g_ident, IDENT);
    ASSERT_EQ(verify_tok(ALG, TIME, SIG, T_MS + 90000), NH1_OK);
    ASSERT_EQ(verify_tok(ALG, TIME, SIG, T_MS + 90001), NH1_EXPIRED);
    ASSERT_EQ(verify_tok(ALG, TIME, SIG, T_MS - 1), NH1_INVALID);
    ASSERT_EQ(g_id.n, 0); /* untouched on failure */
    /* max_age is the server's: the token's 86400 does not widen it. */
    struct nh1_headers h = hdrs(ALG, KEY, TIME, SIG);
    char buf[64];
    struct lp_span id;
    ASSERT_EQ(nh1_verify(&h, (const uint8_t *)SECRET, 43, T_MS + 1000, 0, buf, sizeof(buf), &id),
              NH1_EXPIRED);
    ASSERT_EQ(nh1_verify(&h, (const uint8_t *)SECRET, 43, T_MS, 0, buf, sizeof(buf), &id), NH1_OK);
}

TEST(nh1_sign_vector)
{
    char sig[512];
    ASSERT_EQ(nh1_sign(KEY, SECRET, IDENT, 1767225600, sig, sizeof(sig)), 0);
    ASSERT_STR_EQ(sig, SIG);
    ASSERT_STR_EQ(NH1_SIGN_ALG, ALG);
    /* cap exactly strlen + 1 fits, one less does not (and writes nothing past cap). */
    size_t need = strlen(SIG) + 1;
    char *exact = (char *)test_guard_copy(sig, need);
    memset(exact, 0, need);
    ASSERT_EQ(nh1_sign(KEY, SECRET, IDENT, 1767225600, exact, need), 0);
    ASSERT_STR_EQ(exact, SIG);
    ASSERT_EQ(nh1_sign(KEY, SECRET, IDENT, 1767225600, exact, need - 1), -1);
    test_guard_free((uint8_t *)exact);
    ASSERT_EQ(nh1_sign(KEY, SECRET, IDENT, -1, sig, sizeof(sig)), -1);
    ASSERT_EQ(nh1_sign(KEY, SECRET, IDENT, INT64_MAX / 1000 + 1, sig, sizeof(sig)), -1);
    ASSERT_EQ(nh1_sign(KEY, SECRET, "", 1767225600, sig, sizeof(sig)), -1);
}

/* Integers in MSG are encoded as erlang:term_to_binary does; each form round-trips. */
TEST(nh1_sign_integer_forms)
{
    static const struct {
        int64_t s;
        const char *rest;
    } cases[] = {
        {0, "61 00 62 00 01 51 80"},
        {1, "62 00 00 03 e8 62 00 01 51 80"},
        {2147483, "62 7f ff fd 78 62 00 01 51 80"},       /* 2147483000 ≤ 2^31-1 */
        {2147484, "6e 04 00 60 01 00 80 62 00 01 51 80"}, /* 2147484000 > 2^31-1 */
        {1767225600, REST_T},
        {INT64_MAX / 1000, "6e 08 00 d8 fc ff ff ff ff ff 7f 62 00 01 51 80"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char sig[512], tok[2048], time[32];
        uint8_t msg[64];
        size_t n = etf_msg(msg, "dev", 3, cases[i].rest);
        snprintf(time, sizeof(time), "%lld", (long long)cases[i].s);
        make_token_full(ALG, EVP_sha256(), 1000, 32, KEY, time, SECRET, "SFMyNTY", EVP_sha256(), msg, n, tok);
        ASSERT_EQ(nh1_sign(KEY, SECRET, "dev", cases[i].s, sig, sizeof(sig)), 0);
        ASSERT_STR_EQ(sig, tok);
        ASSERT_EQ(verify_tok(ALG, time, sig, cases[i].s * 1000), NH1_OK);
        ASSERT_STR_EQ(g_ident, "dev");
    }
}

TEST(nh1_sign_roundtrip_identifiers)
{
    const char *ids[] = {"a", "nerves-0001", "UTF-8 \xc3\xa9\xe2\x82\xac", "x.y.z"};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        char sig[512];
        ASSERT_EQ(nh1_sign("nhd_k", "s3cret", ids[i], 1767225600, sig, sizeof(sig)), 0);
        struct nh1_headers h = hdrs(ALG, "nhd_k", TIME, sig);
        ASSERT_EQ(verify_at(&h, "s3cret", T_MS + 500), NH1_OK);
        ASSERT_STR_EQ(g_ident, ids[i]);
        /* bound to the key: the same token under another key fails */
        h.key = S("nhd_j");
        ASSERT_EQ(verify_at(&h, "s3cret", T_MS + 500), NH1_INVALID);
    }
}

/* ---- secrets and tampering ---- */

TEST(nh1_wrong_secret)
{
    struct nh1_headers h = hdrs(ALG, KEY, TIME, SIG);
    ASSERT_EQ(verify_at(&h, SECRET "0", T_MS), NH1_INVALID);
    ASSERT_EQ(verify_at(&h, "ExampleProductSecret00000000000000000000001", T_MS), NH1_INVALID);
    ASSERT_EQ(verify_at(&h, "", T_MS), NH1_INVALID);
    char buf[64];
    struct lp_span id;
    ASSERT_EQ(nh1_verify(&h, NULL, 0, T_MS, 90, buf, sizeof(buf), &id), NH1_INVALID);
    /* another key / time in the salt */
    h.key = S("nhp_ExampleProductKey00000000000000000000000001");
    ASSERT_EQ(verify_at(&h, SECRET, T_MS), NH1_INVALID);
    h = hdrs(ALG, KEY, "1767225601", SIG);
    ASSERT_EQ(verify_at(&h, SECRET, T_MS + 1000), NH1_INVALID);
    /* digest name is case-insensitive, but the salt carries x-nh-alg verbatim */
    h = hdrs("NH1-HMAC-SHA256-1000-32", KEY, TIME, SIG);
    ASSERT_EQ(verify_at(&h, SECRET, T_MS), NH1_INVALID);
}

/* Any single-character change anywhere in the token is refused. */
TEST(nh1_tamper_every_char)
{
    const char repl[] = "AgQw_-=+/.9";
    char tok[256];
    size_t n = strlen(SIG);
    for (size_t i = 0; i < n; i++) {
        for (const char *r = repl; *r; r++) {
            if (SIG[i] == *r)
                continue;
            strcpy(tok, SIG);
            tok[i] = *r;
            enum nh1_result rc = verify_tok(ALG, TIME, tok, T_MS);
            if (rc == NH1_OK)
                TEST_FAIL("accepted with '%c' at %zu", *r, i);
        }
    }
}

TEST(nh1_tamper_kinds)
{
    /* MSG changed (re-encoded canonically) → the HMAC no longer matches */
    char tok[256];
    strcpy(tok, SIG);
    char *p = tok + 8 + 12;
    p[0] = p[0] == 'A' ? 'B' : 'A';
    ASSERT_EQ(verify_tok(ALG, TIME, tok, T_MS), NH1_INVALID);
    /* last MAC char: 'g' → 'k' keeps the 2 unused bits zero (a real bit flip) → invalid;
     * 'g' → 'h' sets an unused bit (non-canonical) → malformed */
    strcpy(tok, SIG);
    tok[strlen(tok) - 1] = 'k';
    ASSERT_EQ(verify_tok(ALG, TIME, tok, T_MS), NH1_INVALID);
    tok[strlen(tok) - 1] = 'h';
    ASSERT_EQ(verify_tok(ALG, TIME, tok, T_MS), NH1_MALFORMED);
    /* first MAC char */
    strcpy(tok, SIG);
    p = strrchr(tok, '.') + 1;
    p[0] = 'b';
    ASSERT_EQ(verify_tok(ALG, TIME, tok, T_MS), NH1_INVALID);
    /* PROTECTED swapped to HS384 with a 32-byte MAC: wrong MAC length */
    strcpy(tok, SIG);
    memcpy(tok, "SFMzODQ", 7);
    ASSERT_EQ(verify_tok(ALG, TIME, tok, T_MS), NH1_MALFORMED);
}

/* ---- alg ---- */

TEST(nh1_bad_alg_forms)
{
    struct nh1_headers h = hdrs("", KEY, TIME, SIG);
    ASSERT_EQ(verify_at(&h, SECRET, T_MS), NH1_NO_ALG);
    h.alg = (struct lp_span){NULL, 0};
    ASSERT_EQ(verify_at(&h, SECRET, T_MS), NH1_NO_ALG);
    static const char *const bad[] = {
        "NH1-HMAC-",
        "NH1-HMAC",
        "NH2-HMAC-sha256-1000-32",
        "nh1-hmac-sha256-1000-32",
        "NH1-HMAC-sha256-1000",
        "NH1-HMAC-sha256",
        "NH1-HMAC-md5-1000-32",
        "NH1-HMAC-sha224-1000-32",
        "NH1-HMAC-sha1-1000-32",
        "NH1-HMAC-sha2566-1000-32",
        "NH1-HMAC--1000-32",
        "NH1-HMAC-sha256--32",
        "NH1-HMAC-sha256-1000-",
        "NH1-HMAC-sha256-0-32",
        "NH1-HMAC-sha256-1000-0",
        "NH1-HMAC-sha256-+1000-32",
        "NH1-HMAC-sha256--1000-32",
        "NH1-HMAC-sha256-1e3-32",
        "NH1-HMAC-sha256- 1000-32",
        "NH1-HMAC-sha256-1000-32 ",
        "NH1-HMAC-sha256-1000-32-1",
        "NH1-HMAC-sha256-1000-32-",
        "NH1-HMAC-sha256-18446744073709551617-32",
        "NH1-HMAC-sha256-1000-18446744073709551648",
        " NH1-HMAC-sha256-1000-32",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        h = hdrs(bad[i], KEY, TIME, SIG);
        if (verify_at(&h, SECRET, T_MS) != NH1_BAD_ALG)
            TEST_FAIL("alg \"%s\" not refused as BAD_ALG", bad[i]);
    }
    /* an embedded NUL is not a digit */
    static const char nul[] = "NH1-HMAC-sha256-1000-3\0";
    h.alg = (struct lp_span){(const uint8_t *)nul, sizeof(nul) - 1};
    ASSERT_EQ(verify_at(&h, SECRET, T_MS), NH1_BAD_ALG);
}

/* A token made for alg A verifies under A: digest case, leading zeros, limits. */
static void alg_ok(const char *alg, const EVP_MD *pmd, unsigned iters, size_t klen)
{
    uint8_t msg[64];
    size_t n = etf_msg(msg, IDENT, 11, REST_T);
    char tok[2048];
    make_token_full(alg, pmd, iters, klen, KEY, TIME, SECRET, "SFMyNTY", EVP_sha256(), msg, n, tok);
    if (verify_tok(alg, TIME, tok, T_MS) != NH1_OK)
        TEST_FAIL("alg \"%s\" refused", alg);
    ASSERT_STR_EQ(g_ident, IDENT);
}

TEST(nh1_alg_variants_accepted)
{
    alg_ok("NH1-HMAC-SHA256-1000-32", EVP_sha256(), 1000, 32);
    alg_ok("NH1-HMAC-Sha512-1-1", EVP_sha512(), 1, 1);
    alg_ok("NH1-HMAC-sha-7-20", EVP_sha1(), 7, 20);
    alg_ok("NH1-HMAC-sha384-001000-032", EVP_sha384(), 1000, 32);
}

TEST(nh1_alg_limits)
{
    /* iterations at the cap verify; cap + 1 is refused before any PBKDF2 work */
    alg_ok("NH1-HMAC-sha256-100000-32", EVP_sha256(), 100000, 32);
    struct nh1_headers h = hdrs("NH1-HMAC-sha256-100001-32", KEY, TIME, SIG);
    ASSERT_EQ(verify_at(&h, SECRET, T_MS), NH1_BAD_ALG);
    /* key length */
    alg_ok("NH1-HMAC-sha256-1000-64", EVP_sha256(), 1000, 64);
    h = hdrs("NH1-HMAC-sha256-1000-65", KEY, TIME, SIG);
    ASSERT_EQ(verify_at(&h, SECRET, T_MS), NH1_BAD_ALG);
    /* alg length: 64 bytes accepted, 65 refused (leading zeros pad the iteration count) */
    char alg[80];
    snprintf(alg, sizeof(alg), "NH1-HMAC-sha256-%045d-32", 1000);
    ASSERT_EQ(strlen(alg), NH1_MAX_ALG);
    alg_ok(alg, EVP_sha256(), 1000, 32);
    snprintf(alg, sizeof(alg), "NH1-HMAC-sha256-%046d-32", 1000);
    ASSERT_EQ(strlen(alg), NH1_MAX_ALG + 1);
    h = hdrs(alg, KEY, TIME, SIG);
    ASSERT_EQ(verify_at(&h, SECRET, T_MS), NH1_BAD_ALG);
}

/* ---- time ---- */

TEST(nh1_time_canonical)
{
    static const char *const bad[] = {"0001767225600",
                                      "01767225600",
                                      "+1767225600",
                                      "-1767225600",
                                      " 1767225600",
                                      "1767225600 ",
                                      "1767225600.0",
                                      "17672256O0",
                                      "1e9",
                                      "00",
                                      ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct nh1_headers h = hdrs(ALG, KEY, bad[i], SIG);
        if (verify_at(&h, SECRET, T_MS) != NH1_BAD_TIME)
            TEST_FAIL("time \"%s\" not refused", bad[i]);
    }
    struct nh1_headers h = hdrs(ALG, KEY, TIME, SIG);
    h.time = (struct lp_span){NULL, 0};
    ASSERT_EQ(verify_at(&h, SECRET, T_MS), NH1_BAD_TIME);
    /* "0001767225600" is refused even when the signer built its salt from that very string */
    uint8_t msg[64];
    size_t n = etf_msg(msg, IDENT, 11, REST_T);
    char tok[2048];
    make_token_full(ALG, EVP_sha256(), 1000, 32, KEY, "0001767225600", SECRET, "SFMyNTY", EVP_sha256(), msg,
                    n, tok);
    ASSERT_EQ(verify_tok(ALG, "0001767225600", tok, T_MS), NH1_BAD_TIME);
    /* "0" is canonical */
    make_token_full(ALG, EVP_sha256(), 1000, 32, KEY, "0", SECRET, "SFMyNTY", EVP_sha256(), msg, n, tok);
    ASSERT_EQ(verify_tok(ALG, "0", tok, T_MS), NH1_OK);
}

TEST(nh1_time_limits)
{
    /* x-nh-time only feeds the salt: 18 digits verify, 19 are refused */
    uint8_t msg[64];
    size_t n = etf_msg(msg, IDENT, 11, REST_T);
    char tok[2048];
    const char *t18 = "999999999999999999", *t19 = "1000000000000000000";
    ASSERT_EQ(strlen(t18), NH1_MAX_TIME_DIGITS);
    make_token_full(ALG, EVP_sha256(), 1000, 32, KEY, t18, SECRET, "SFMyNTY", EVP_sha256(), msg, n, tok);
    ASSERT_EQ(verify_tok(ALG, t18, tok, T_MS), NH1_OK);
    make_token_full(ALG, EVP_sha256(), 1000, 32, KEY, t19, SECRET, "SFMyNTY", EVP_sha256(), msg, n, tok);
    ASSERT_EQ(verify_tok(ALG, t19, tok, T_MS), NH1_BAD_TIME);
}

/* ---- token shape and base64url ---- */

TEST(nh1_token_shape)
{
    static const char *const bad[] = {
        "",
        "SFMyNTY",
        "SFMyNTY.g2gDbQAAAAtuZXJ2ZXMtYWJjZG4GAACo2nabAWIAAVGA",
        "SFMyNTY.g2gDbQAAAAtuZXJ2ZXMtYWJjZG4GAACo2nabAWIAAVGA.",
        "SFMyNTY..a89v0WItWyAc2a5NtOp-y_g6JuyyrSEkEmzk5FMfANg",
        ".g2gDbQAAAAtuZXJ2ZXMtYWJjZG4GAACo2nabAWIAAVGA.a89v0WItWyAc2a5NtOp-y_g6JuyyrSEkEmzk5FMfANg",
        "SFMyNTZ.g2gDbQAAAAtuZXJ2ZXMtYWJjZG4GAACo2nabAWIAAVGA.a89v0WItWyAc2a5NtOp-y_g6JuyyrSEkEmzk5FMfANg",
        "HS256.g2gDbQAAAAtuZXJ2ZXMtYWJjZG4GAACo2nabAWIAAVGA.a89v0WItWyAc2a5NtOp-y_g6JuyyrSEkEmzk5FMfANg",
        "SFMyNTY=.g2gDbQAAAAtuZXJ2ZXMtYWJjZG4GAACo2nabAWIAAVGA.a89v0WItWyAc2a5NtOp-y_g6JuyyrSEkEmzk5FMfANg",
        /* padding on the MAC (43 chars + '=') and on MSG */
        SIG "=",
        "SFMyNTY.g2gDbQAAAAtuZXJ2ZXMtYWJjZG4GAACo2nabAWIAAVGA=.a89v0WItWyAc2a5NtOp-y_g6JuyyrSEkEmzk5FMfANg",
        /* standard alphabet instead of url */
        "SFMyNTY.g2gDbQAAAAtuZXJ2ZXMtYWJjZG4GAACo2nabAWIAAVGA.a89v0WItWyAc2a5NtOp+y/g6JuyyrSEkEmzk5FMfANg",
        /* four segments, trailing dot, whitespace */
        SIG ".x",
        SIG ".",
        SIG " ",
        " " SIG,
        /* MAC one char short (42 ≡ 2 mod 4 decodes to 31 bytes) and one char long (44 → 33) */
        "SFMyNTY.g2gDbQAAAAtuZXJ2ZXMtYWJjZG4GAACo2nabAWIAAVGA.a89v0WItWyAc2a5NtOp-y_g6JuyyrSEkEmzk5FMfAN",
        SIG "A",
        /* MSG length ≡ 1 mod 4 */
        "SFMyNTY.g2gDbQAAAAtuZXJ2ZXMtYWJjZG4GAACo2nabAWIAAVGAA.a89v0WItWyAc2a5NtOp-y_g6JuyyrSEkEmzk5FMfANg",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (verify_tok(ALG, TIME, bad[i], T_MS) != NH1_MALFORMED)
            TEST_FAIL("token #%zu \"%s\" not MALFORMED", i, bad[i]);
    }
    struct nh1_headers h = hdrs(ALG, KEY, TIME, SIG);
    h.signature = (struct lp_span){NULL, 0};
    ASSERT_EQ(verify_at(&h, SECRET, T_MS), NH1_MALFORMED);
    /* NUL inside the signature header */
    static const char nul[] =
        "SFMyNTY.g2gDbQAAAAtuZXJ2ZXMtYWJjZG4GAACo2nabAWIAAVGA.a89v0WItWyAc2a5NtOp-y_g6Juyy\0SEkEmzk5FMfANg";
    h.signature = (struct lp_span){(const uint8_t *)nul, sizeof(nul) - 1};
    ASSERT_EQ(verify_at(&h, SECRET, T_MS), NH1_MALFORMED);
}

/* Non-canonical MSG encodings (unused low bits set) are refused even though they decode alike. */
TEST(nh1_b64_noncanonical_msg)
{
    /* 33-byte MSG → 44 chars, no spare bits; use a 32-byte MSG → 43 chars, 2 spare bits. */
    uint8_t msg[64];
    size_t n = etf_msg(msg, "nerves-abc", 10, REST_T);
    ASSERT_EQ(n, 32);
    char tok[2048];
    make_token(msg, n, tok);
    ASSERT_EQ(verify_tok(ALG, TIME, tok, T_MS), NH1_OK);
    /* Set a spare bit in MSG's last char, then re-sign over the altered text so only the
     * encoding is wrong. */
    char *dot2 = strrchr(tok, '.');
    char c = dot2[-1];
    ASSERT(c == 'A'); /* MSG ends 51 80: the last char carries 0x0 plus the 2 zero spare bits */
    char head[256];
    memcpy(head, tok, (size_t)(dot2 - tok));
    head[dot2 - tok] = 0;
    head[dot2 - tok - 1] = (char)(c + 1);
    char salt[512];
    size_t salt_n = salt_of(ALG, KEY, TIME, salt);
    uint8_t dk[32], mac[32];
    unsigned mac_n;
    ASSERT(PKCS5_PBKDF2_HMAC(SECRET, 43, (const uint8_t *)salt, salt_n, 1000, EVP_sha256(), 32, dk));
    ASSERT(HMAC(EVP_sha256(), dk, 32, (const uint8_t *)head, strlen(head), mac, &mac_n));
    char bad[512];
    strcpy(bad, head);
    strcat(bad, ".");
    b64url(mac, 32, bad + strlen(bad));
    ASSERT_EQ(verify_tok(ALG, TIME, bad, T_MS), NH1_MALFORMED);
}

/* ---- ETF ---- */

TEST(nh1_etf_truncated_every_byte)
{
    size_t n;
    uint8_t *msg = test_unhex(MSG_HEX, &n);
    char tok[2048];
    for (size_t k = 0; k < n; k++) {
        /* decoder alone, ending at a guard page */
        uint8_t *g = test_guard_copy(msg, k ? k : 1);
        struct lp_span id;
        int64_t at;
        if (nh1_decode_msg(g, k, &id, &at) != -1)
            TEST_FAIL("decode accepted %zu of %zu bytes", k, n);
        test_guard_free(g);
        /* and through verify with a valid HMAC over the truncated bytes */
        make_token(msg, k, tok);
        if (verify_tok(ALG, TIME, tok, T_MS) != NH1_MALFORMED)
            TEST_FAIL("verify accepted %zu of %zu bytes", k, n);
    }
    /* one trailing byte too many */
    uint8_t longer[64];
    memcpy(longer, msg, n);
    longer[n] = 0;
    make_token(longer, n + 1, tok);
    ASSERT_EQ(verify_tok(ALG, TIME, tok, T_MS), NH1_MALFORMED);
    uint8_t *g = test_guard_copy(msg, n);
    struct lp_span id;
    int64_t at;
    ASSERT_EQ(nh1_decode_msg(g, n, &id, &at), 0);
    test_guard_free(g);
    free(msg);
}

static enum nh1_result verify_msg_hex(const char *hex, int64_t now)
{
    size_t n;
    uint8_t *msg = test_unhex(hex, &n);
    char tok[4096];
    make_token(msg, n, tok);
    free(msg);
    return verify_tok(ALG, TIME, tok, now);
}

TEST(nh1_etf_forms_accepted)
{
    /* 2-tuple {data, signed_ms} */
    ASSERT_EQ(verify_msg_hex("83 68 02 6d 00000003 646576 6e 06 00 00 a8 da 76 9b 01", T_MS), NH1_OK);
    ASSERT_STR_EQ(g_ident, "dev");
    /* INTEGER_EXT and SMALL_INTEGER_EXT signed_at */
    ASSERT_EQ(verify_msg_hex("83 68 03 6d 00000003 646576 62 00 0f 42 40 62 00 01 51 80", 1000000), NH1_OK);
    ASSERT_EQ(verify_msg_hex("83 68 03 6d 00000003 646576 61 05 61 00", 5), NH1_OK);
    ASSERT_EQ(verify_msg_hex("83 68 03 6d 00000003 646576 61 05 61 00", 4), NH1_INVALID);
    /* max_age as SMALL_INTEGER / SMALL_BIG / negative INTEGER: read and ignored */
    ASSERT_EQ(verify_msg_hex("83 68 03 6d 00000003 646576 6e 06 00 00 a8 da 76 9b 01 61 00", T_MS), NH1_OK);
    ASSERT_EQ(verify_msg_hex("83 68 03 6d 00000003 646576 6e 06 00 00 a8 da 76 9b 01 "
                             "6e 08 00 ff ff ff ff ff ff ff 7f",
                             T_MS),
              NH1_OK);
    ASSERT_EQ(verify_msg_hex("83 68 03 6d 00000003 646576 6e 06 00 00 a8 da 76 9b 01 "
                             "62 ff ff ff ff",
                             T_MS),
              NH1_OK);
    /* non-minimal SMALL_BIG (zero high bytes) still means the same integer */
    ASSERT_EQ(verify_msg_hex("83 68 03 6d 00000003 646576 6e 08 00 00 a8 da 76 9b 01 00 00 "
                             "62 00 01 51 80",
                             T_MS),
              NH1_OK);
}

TEST(nh1_etf_forms_refused)
{
    static const char *const bad[] = {
        /* fun term (EXPORT_EXT erlang:apply/2) as the identifier */
        "83 68 03 71 64 00 06 65726c616e67 64 00 05 6170706c79 61 02 6e 06 00 00 a8 da 76 9b 01 "
        "62 00 01 51 80",
        /* NEW_FUN_EXT header as the identifier */
        "83 68 03 70 00 00 00 20 00 0102030405060708090a0b0c0d0e0f10 00000000 00000000 "
        "6e 06 00 00 a8 da 76 9b 01 62 00 01 51 80",
        /* atom, string (STRING_EXT), list, bit binary as the identifier */
        "83 68 03 77 03 646576 6e 06 00 00 a8 da 76 9b 01 62 00 01 51 80",
        "83 68 03 6b 00 03 646576 6e 06 00 00 a8 da 76 9b 01 62 00 01 51 80",
        "83 68 03 6c 00000001 61 01 6a 6e 06 00 00 a8 da 76 9b 01 62 00 01 51 80",
        "83 68 03 4d 00000003 08 646576 6e 06 00 00 a8 da 76 9b 01 62 00 01 51 80",
        /* empty identifier, identifier with NUL */
        "83 68 03 6d 00000000 6e 06 00 00 a8 da 76 9b 01 62 00 01 51 80",
        "83 68 03 6d 00000003 640076 6e 06 00 00 a8 da 76 9b 01 62 00 01 51 80",
        /* binary length beyond the message */
        "83 68 03 6d 7fffffff 646576 6e 06 00 00 a8 da 76 9b 01 62 00 01 51 80",
        "83 68 03 6d ffffffff 646576 6e 06 00 00 a8 da 76 9b 01 62 00 01 51 80",
        /* negative SMALL_BIG, 9-byte SMALL_BIG, > INT64_MAX, LARGE_BIG, float */
        "83 68 03 6d 00000003 646576 6e 06 01 00 a8 da 76 9b 01 62 00 01 51 80",
        "83 68 03 6d 00000003 646576 6e 09 00 00 a8 da 76 9b 01 00 00 00 62 00 01 51 80",
        "83 68 03 6d 00000003 646576 6e 08 00 00 00 00 00 00 00 00 80 62 00 01 51 80",
        "83 68 03 6d 00000003 646576 6f 00000006 00 00 a8 da 76 9b 01 62 00 01 51 80",
        "83 68 03 6d 00000003 646576 46 4279b76daa800000 62 00 01 51 80",
        /* max_age not an integer */
        "83 68 03 6d 00000003 646576 6e 06 00 00 a8 da 76 9b 01 64 00 03 6e696c",
        /* wrong arity, LARGE_TUPLE, map, wrong version, compressed, no tuple */
        "83 68 04 6d 00000003 646576 6e 06 00 00 a8 da 76 9b 01 62 00 01 51 80 61 00",
        "83 68 01 6d 00000003 646576",
        "83 68 00",
        "83 69 00000003 6d 00000003 646576 6e 06 00 00 a8 da 76 9b 01 62 00 01 51 80",
        "83 74 00000002 64 00 04 64617461 6d 00000003 646576 64 00 06 7369676e6564 61 05",
        "84 68 03 6d 00000003 646576 6e 06 00 00 a8 da 76 9b 01 62 00 01 51 80",
        "83 50 00000020 789c",
        "83 6d 00000003 646576",
        "",
        "83",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (verify_msg_hex(bad[i], T_MS) != NH1_MALFORMED)
            TEST_FAIL("MSG #%zu accepted or misclassified: %s", i, bad[i]);
        size_t n;
        uint8_t *m = test_unhex(bad[i], &n);
        static const uint8_t one = 0x83;
        uint8_t *g = test_guard_copy(n ? m : &one, n ? n : 1);
        struct lp_span id;
        int64_t at;
        /* the decoder alone refuses all but the identifier-content rules verify adds */
        if (i != 6 && i != 7 && nh1_decode_msg(g, n, &id, &at) != -1)
            TEST_FAIL("decode accepted MSG #%zu", i);
        test_guard_free(g);
        free(m);
    }
}

/* ---- clock edges ---- */

TEST(nh1_clock_edges)
{
    /* forward skew of 1 ms is refused */
    ASSERT_EQ(verify_tok(ALG, TIME, SIG, T_MS - 1), NH1_INVALID);
    /* extreme clocks: no overflow (UBSan), sensible answers */
    ASSERT_EQ(verify_msg_hex("83 68 03 6d 00000001 64 62 80 00 00 00 61 00", INT64_MAX), NH1_EXPIRED);
    ASSERT_EQ(verify_msg_hex("83 68 03 6d 00000001 64 6e 08 00 ff ff ff ff ff ff ff 7f 61 00", INT64_MAX),
              NH1_OK);
    ASSERT_EQ(verify_msg_hex("83 68 03 6d 00000001 64 6e 08 00 ff ff ff ff ff ff ff 7f 61 00", INT64_MIN),
              NH1_INVALID);
    ASSERT_EQ(verify_msg_hex("83 68 03 6d 00000001 64 62 80 00 00 00 61 00", INT64_MIN), NH1_INVALID);
    /* the largest max_age the type allows */
    size_t n;
    uint8_t *msg = test_unhex("83 68 03 6d 00000001 64 62 80 00 00 00 61 00", &n);
    char tok[256], buf[8];
    make_token(msg, n, tok);
    free(msg);
    struct nh1_headers h = hdrs(ALG, KEY, TIME, tok);
    struct lp_span id;
    ASSERT_EQ(nh1_verify(&h, (const uint8_t *)SECRET, 43, INT64_MAX, UINT32_MAX, buf, sizeof(buf), &id),
              NH1_EXPIRED);
    ASSERT_EQ(nh1_verify(&h, (const uint8_t *)SECRET, 43, INT64_C(4294967295000) - INT32_MAX - 1, UINT32_MAX,
                         buf, sizeof(buf), &id),
              NH1_OK);
    ASSERT_EQ(nh1_verify(&h, (const uint8_t *)SECRET, 43, INT64_C(4294967295000) - INT32_MAX, UINT32_MAX, buf,
                         sizeof(buf), &id),
              NH1_EXPIRED);
}

/* ---- limits ---- */

TEST(nh1_ident_cap)
{
    struct nh1_headers h = hdrs(ALG, KEY, TIME, SIG);
    char buf[16];
    struct lp_span id = {0};
    memset(buf, 0x55, sizeof(buf));
    ASSERT_EQ(nh1_verify(&h, (const uint8_t *)SECRET, 43, T_MS, 90, buf, 12, &id), NH1_OK);
    ASSERT_STR_EQ(buf, IDENT);
    ASSERT_EQ(id.n, 11);
    memset(buf, 0x55, sizeof(buf));
    ASSERT_EQ(nh1_verify(&h, (const uint8_t *)SECRET, 43, T_MS, 90, buf, 11, &id), NH1_MALFORMED);
    ASSERT_EQ((uint8_t)buf[0], 0x55); /* nothing written */
    ASSERT_EQ(nh1_verify(&h, (const uint8_t *)SECRET, 43, T_MS, 90, buf, 0, &id), NH1_MALFORMED);
}

TEST(nh1_key_and_secret_limits)
{
    char key[NH1_MAX_KEY + 2], secret[NH1_MAX_SECRET + 2], sig[2048];
    memset(key, 'k', sizeof(key));
    memset(secret, 's', sizeof(secret));
    key[NH1_MAX_KEY] = 0;
    secret[NH1_MAX_SECRET] = 0;
    ASSERT_EQ(nh1_sign(key, secret, IDENT, 1767225600, sig, sizeof(sig)), 0);
    struct nh1_headers h = hdrs(ALG, key, TIME, sig);
    ASSERT_EQ(verify_at(&h, secret, T_MS), NH1_OK);
    /* key + 1 */
    key[NH1_MAX_KEY] = 'k';
    key[NH1_MAX_KEY + 1] = 0;
    ASSERT_EQ(nh1_sign(key, secret, IDENT, 1767225600, sig, sizeof(sig)), -1);
    h.key = S(key);
    ASSERT_EQ(verify_at(&h, secret, T_MS), NH1_MALFORMED);
    /* secret + 1 */
    key[NH1_MAX_KEY] = 0;
    h.key = S(key);
    secret[NH1_MAX_SECRET] = 's';
    secret[NH1_MAX_SECRET + 1] = 0;
    ASSERT_EQ(verify_at(&h, secret, T_MS), NH1_MALFORMED);
    ASSERT_EQ(nh1_sign(key, secret, IDENT, 1767225600, sig, sizeof(sig)), -1);
}

TEST(nh1_signature_limit)
{
    /* HS384 token: 8 + b64(MSG) + 1 + 64 chars, MSG = identifier + 22 bytes. Identifier 691 →
     * MSG 713 → 951 chars → token 1024 (accepted); 692 → 714 → 952 → 1025 (refused). */
    char ident[800], tok[4096];
    uint8_t msg[1024];
    memset(ident, 'i', sizeof(ident));
    for (int extra = 0; extra <= 1; extra++) {
        size_t n = etf_msg(msg, ident, 691 + (size_t)extra, REST_T);
        make_token_full(ALG, EVP_sha256(), 1000, 32, KEY, TIME, SECRET, "SFMzODQ", EVP_sha384(), msg, n, tok);
        ASSERT_EQ(strlen(tok), NH1_MAX_SIGNATURE + (size_t)extra);
        struct nh1_headers h = hdrs(ALG, KEY, TIME, tok);
        char buf[1024];
        struct lp_span id;
        ASSERT_EQ(nh1_verify(&h, (const uint8_t *)SECRET, 43, T_MS, 90, buf, sizeof(buf), &id),
                  extra ? NH1_MALFORMED : NH1_OK);
        if (!extra)
            ASSERT_EQ(id.n, 691);
    }
    /* nh1_sign refuses an identifier whose token would exceed the limit: HS256 token is
     * 8 + b64(L + 22) + 1 + 43; L = 707 → exactly 1024, L = 708 → 1026. */
    ident[707] = 0;
    ASSERT_EQ(nh1_sign(KEY, SECRET, ident, 1767225600, tok, sizeof(tok)), 0);
    ASSERT_EQ(strlen(tok), NH1_MAX_SIGNATURE);
    ident[707] = 'i';
    ident[708] = 0;
    ASSERT_EQ(nh1_sign(KEY, SECRET, ident, 1767225600, tok, sizeof(tok)), -1);
}

/* ---- HMAC / PBKDF2 digest variants, pinned to the Python computation in the header ---- */

TEST(nh1_digest_variants)
{
    size_t n;
    uint8_t *msg = test_unhex(MSG_HEX, &n);
    char tok[2048];
    make_token_full("NH1-HMAC-sha512-1000-64", EVP_sha512(), 1000, 64, KEY, TIME, SECRET, "SFMzODQ",
                    EVP_sha384(), msg, n, tok);
    ASSERT_STR_EQ(tok, TOK_SHA512_HS384);
    make_token_full("NH1-HMAC-sha384-2000-48", EVP_sha384(), 2000, 48, KEY, TIME, SECRET, "SFM1MTI",
                    EVP_sha512(), msg, n, tok);
    ASSERT_STR_EQ(tok, TOK_SHA384_HS512);
    make_token_full("NH1-HMAC-sha-1000-20", EVP_sha1(), 1000, 20, KEY, TIME, SECRET, "SFMyNTY", EVP_sha256(),
                    msg, n, tok);
    ASSERT_STR_EQ(tok, TOK_SHA1_HS256);
    free(msg);

    ASSERT_EQ(verify_tok("NH1-HMAC-sha512-1000-64", TIME, TOK_SHA512_HS384, T_MS), NH1_OK);
    ASSERT_STR_EQ(g_ident, IDENT);
    ASSERT_EQ(verify_tok("NH1-HMAC-sha384-2000-48", TIME, TOK_SHA384_HS512, T_MS + 90000), NH1_OK);
    ASSERT_EQ(verify_tok("NH1-HMAC-sha384-2000-48", TIME, TOK_SHA384_HS512, T_MS + 90001), NH1_EXPIRED);
    ASSERT_EQ(verify_tok("NH1-HMAC-sha-1000-20", TIME, TOK_SHA1_HS256, T_MS), NH1_OK);
    /* alg and PROTECTED are both bound: swapping either fails */
    ASSERT_EQ(verify_tok("NH1-HMAC-sha384-1000-64", TIME, TOK_SHA512_HS384, T_MS), NH1_INVALID);
    ASSERT_EQ(verify_tok("NH1-HMAC-sha256-1000-32", TIME, TOK_SHA1_HS256, T_MS), NH1_INVALID);
    char t2[512];
    strcpy(t2, TOK_SHA384_HS512);
    memcpy(t2, "SFMzODQ", 7); /* HS384 label on a 64-byte MAC */
    ASSERT_EQ(verify_tok("NH1-HMAC-sha384-2000-48", TIME, t2, T_MS), NH1_MALFORMED);
}

TEST(nh1_reasons)
{
    const char *seen[NH1_EXPIRED + 1];
    for (int r = NH1_OK; r <= NH1_EXPIRED; r++) {
        const char *s = nh1_reason((enum nh1_result)r);
        ASSERT(s && *s);
        for (const char *c = s; *c; c++)
            ASSERT(*c >= 0x20 && *c < 0x7f); /* safe as an HTTP header value */
        for (int q = NH1_OK; q < r; q++)
            ASSERT(strcmp(seen[q], s) != 0);
        seen[r] = s;
    }
    ASSERT(nh1_reason((enum nh1_result)99) != NULL);
}
