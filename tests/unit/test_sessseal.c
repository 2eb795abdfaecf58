/* sesscache's sealed values (the Redis session store's format): key derivation, round trip,
 * wrong key, another session ID, tampering anywhere, truncation, and key rotation. */
#include "../lib/test.h"

#include <sys/types.h>

#include "config.h"
#include "sessseal.h"

static void ticket_key(uint8_t *out, size_t len, uint8_t tag)
{
    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)(tag * 13u + i);
}

static const uint8_t ID[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };

TEST(sessseal_key_derivation)
{
    uint8_t t1[80], t2[80], k1[SSEAL_KEY_LEN], k1b[SSEAL_KEY_LEN], k2[SSEAL_KEY_LEN];
    ticket_key(t1, sizeof(t1), 1);
    ticket_key(t2, sizeof(t2), 1);
    t2[79] ^= 1; /* one bit of the AES key */
    ASSERT(sseal_key(k1, t1, sizeof(t1)));
    ASSERT(sseal_key(k1b, t1, sizeof(t1)));
    ASSERT(sseal_key(k2, t2, sizeof(t2)));
    /* deterministic: every pod with the same ticket key file derives the same key */
    ASSERT(memcmp(k1, k1b, sizeof(k1)) == 0);
    ASSERT(memcmp(k1, k2, sizeof(k1)) != 0);
    /* never the ticket key material itself */
    ASSERT(memmem(t1, sizeof(t1), k1, 16) == NULL);
    /* the 48-byte (AES-128) format derives a key too, another one */
    ASSERT(sseal_key(k2, t1, 48));
    ASSERT(memcmp(k1, k2, sizeof(k1)) != 0);
}

TEST(sessseal_round_trip_and_confidentiality)
{
    uint8_t t[80], key[1][SSEAL_KEY_LEN];
    ticket_key(t, sizeof(t), 7);
    ASSERT(sseal_key(key[0], t, sizeof(t)));
    uint8_t val[600], sealed[700], out[700];
    for (size_t i = 0; i < sizeof(val); i++)
        val[i] = (uint8_t)(i * 37u);
    memcpy(val + 100, "MASTER-SECRET-MARKER-0123456789", 31);
    size_t n = sseal_seal(key[0], ID, sizeof(ID), val, sizeof(val), sealed, sizeof(sealed));
    ASSERT_EQ(n, sizeof(val) + SSEAL_OVERHEAD);
    ASSERT_EQ(sealed[0], SSEAL_V1);
    ASSERT(memmem(sealed, n, "MASTER-SECRET", 13) == NULL);
    ASSERT(memmem(sealed, n, val, 16) == NULL);
    ssize_t m = sseal_open(key, 1, ID, sizeof(ID), sealed, n, out, sizeof(out));
    ASSERT_EQ(m, sizeof(val));
    ASSERT(memcmp(out, val, sizeof(val)) == 0);
    /* two seals of one value differ (random nonce) */
    uint8_t sealed2[700];
    size_t n2 = sseal_seal(key[0], ID, sizeof(ID), val, sizeof(val), sealed2, sizeof(sealed2));
    ASSERT_EQ(n2, n);
    ASSERT(memcmp(sealed, sealed2, n) != 0);
    /* output capacity: exactly enough works, one byte less does not */
    ASSERT_EQ(sseal_seal(key[0], ID, sizeof(ID), val, sizeof(val), sealed2, sizeof(val) + SSEAL_OVERHEAD),
              n);
    ASSERT_EQ(sseal_seal(key[0], ID, sizeof(ID), val, sizeof(val), sealed2,
                          sizeof(val) + SSEAL_OVERHEAD - 1), 0);
    ASSERT_EQ(sseal_open(key, 1, ID, sizeof(ID), sealed, n, out, sizeof(val)), sizeof(val));
    ASSERT_EQ(sseal_open(key, 1, ID, sizeof(ID), sealed, n, out, sizeof(val) - 1), -1);
}

TEST(sessseal_wrong_key_other_id_tampered_truncated)
{
    uint8_t t[80], key[1][SSEAL_KEY_LEN], other[1][SSEAL_KEY_LEN];
    ticket_key(t, sizeof(t), 3);
    ASSERT(sseal_key(key[0], t, sizeof(t)));
    t[20] ^= 0x80;
    ASSERT(sseal_key(other[0], t, sizeof(t)));
    uint8_t val[200], sealed[300], out[300];
    memset(val, 0x5a, sizeof(val));
    size_t n = sseal_seal(key[0], ID, sizeof(ID), val, sizeof(val), sealed, sizeof(sealed));
    ASSERT(n > 0);
    ASSERT_EQ(sseal_open(other, 1, ID, sizeof(ID), sealed, n, out, sizeof(out)), -1);
    /* bound to the session ID: the same value under another ID (or a shorter one) does not open */
    uint8_t id2[32];
    memcpy(id2, ID, sizeof(id2));
    id2[31] ^= 1;
    ASSERT_EQ(sseal_open(key, 1, id2, sizeof(id2), sealed, n, out, sizeof(out)), -1);
    ASSERT_EQ(sseal_open(key, 1, ID, sizeof(ID) - 1, sealed, n, out, sizeof(out)), -1);
    /* every single-byte change is caught: version, nonce, ciphertext, tag */
    for (size_t i = 0; i < n; i++) {
        uint8_t bad[300];
        memcpy(bad, sealed, n);
        bad[i] ^= 0x01;
        ASSERT_EQ(sseal_open(key, 1, ID, sizeof(ID), bad, n, out, sizeof(out)), -1);
    }
    for (size_t len = 0; len < n; len++)
        ASSERT_EQ(sseal_open(key, 1, ID, sizeof(ID), sealed, len, out, sizeof(out)), -1);
    /* garbage of any plausible length, e.g. a plain serialised session put there by hand */
    ASSERT_EQ(sseal_open(key, 1, ID, sizeof(ID), val, sizeof(val), out, sizeof(out)), -1);
    ASSERT_EQ(sseal_open(key, 1, ID, sizeof(ID), sealed, n, out, sizeof(out)), sizeof(val));
}

TEST(sessseal_rotation_old_key_still_opens)
{
    uint8_t t_old[80], t_new[80];
    ticket_key(t_old, sizeof(t_old), 1);
    ticket_key(t_new, sizeof(t_new), 2);
    uint8_t keys[2][SSEAL_KEY_LEN]; /* the file after rotation: new key first, old second */
    ASSERT(sseal_key(keys[0], t_new, sizeof(t_new)));
    ASSERT(sseal_key(keys[1], t_old, sizeof(t_old)));
    uint8_t val[64], sealed[128], out[128];
    memset(val, 0xc3, sizeof(val));
    /* sealed by a pod that has not rotated yet */
    size_t n = sseal_seal(keys[1], ID, sizeof(ID), val, sizeof(val), sealed, sizeof(sealed));
    ASSERT(n > 0);
    ASSERT_EQ(sseal_open((const uint8_t (*)[SSEAL_KEY_LEN])keys, 2, ID, sizeof(ID), sealed, n, out,
                          sizeof(out)), sizeof(val));
    ASSERT(memcmp(out, val, sizeof(val)) == 0);
    /* once the old key is dropped from the file, its values no longer open */
    ASSERT_EQ(sseal_open((const uint8_t (*)[SSEAL_KEY_LEN])keys, 1, ID, sizeof(ID), sealed, n, out,
                          sizeof(out)), -1);
    /* and a value sealed with the new key opens on a pod that has only the new key */
    n = sseal_seal(keys[0], ID, sizeof(ID), val, sizeof(val), sealed, sizeof(sealed));
    ASSERT_EQ(sseal_open((const uint8_t (*)[SSEAL_KEY_LEN])keys, 1, ID, sizeof(ID), sealed, n, out,
                          sizeof(out)), sizeof(val));
    ASSERT_EQ(sseal_open((const uint8_t (*)[SSEAL_KEY_LEN])keys + 1, 1, ID, sizeof(ID), sealed, n, out,
                          sizeof(out)), -1);
}

static int load(struct cfg *c, char **argv, char *err)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    return cfg_load(c, argc, argv, err, 256);
}

/* --session-store redis needs everything it derives from or writes to. */
TEST(sessseal_config_session_store)
{
    struct cfg c;
    char err[256];
    char *base[] = { "nhgw", "--cert", "c.pem", "--key", "k.pem", "--device-ca", "ca.pem", NULL };
    ASSERT_EQ(load(&c, base, err), 0);
    ASSERT_EQ(c.session_store, CFG_STORE_LOCAL); /* off by default */
    ASSERT_EQ(c.session_store_timeout_ms, 50);
    cfg_free(&c);
    char *ok[] = { "nhgw", "--cert", "c.pem", "--key", "k.pem", "--device-ca", "ca.pem", "--redis",
                   "127.0.0.1:6379", "--ticket-key-file", "t.key", "--session-store", "redis",
                   "--session-store-timeout", "1000ms", NULL };
    ASSERT_EQ(load(&c, ok, err), 0);
    ASSERT_EQ(c.session_store, CFG_STORE_REDIS);
    ASSERT_EQ(c.session_store_timeout_ms, 1000);
    cfg_free(&c);
    char *too_long[] = { "nhgw", "--cert", "c.pem", "--key", "k.pem", "--device-ca", "ca.pem", "--redis",
                         "127.0.0.1:6379", "--ticket-key-file", "t.key", "--session-store", "redis",
                         "--session-store-timeout", "1001ms", NULL };
    ASSERT_EQ(load(&c, too_long, err), -1);
    cfg_free(&c);
    char *no_redis[] = { "nhgw", "--cert", "c.pem", "--key", "k.pem", "--device-ca", "ca.pem",
                         "--ticket-key-file", "t.key", "--session-store", "redis", NULL };
    ASSERT_EQ(load(&c, no_redis, err), -1);
    ASSERT(strstr(err, "--session-store redis") != NULL);
    cfg_free(&c);
    char *no_key[] = { "nhgw", "--cert", "c.pem", "--key", "k.pem", "--device-ca", "ca.pem", "--redis",
                       "127.0.0.1:6379", "--session-store", "redis", NULL };
    ASSERT_EQ(load(&c, no_key, err), -1);
    cfg_free(&c);
    char *no_cache[] = { "nhgw", "--cert", "c.pem", "--key", "k.pem", "--device-ca", "ca.pem", "--redis",
                         "127.0.0.1:6379", "--ticket-key-file", "t.key", "--session-store", "redis",
                         "--session-cache-size", "0", NULL };
    ASSERT_EQ(load(&c, no_cache, err), -1);
    cfg_free(&c);
    char *bad[] = { "nhgw", "--cert", "c.pem", "--key", "k.pem", "--device-ca", "ca.pem", "--session-store",
                    "memcached", NULL };
    ASSERT_EQ(load(&c, bad, err), -1);
    cfg_free(&c);
}
