/* Sealing of TLS sessions that leave the node (sessseal.h). */
#include "sessseal.h"

#include <openssl/aead.h>
#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/hkdf.h>
#include <openssl/rand.h>

#define SEAL_NONCE 12

bool sseal_key(uint8_t out[SSEAL_KEY_LEN], const uint8_t *secret, size_t secret_len)
{
    static const char info[] = "nhgw tls session store v1";
    if (!HKDF(out, SSEAL_KEY_LEN, EVP_sha256(), secret, secret_len, NULL, 0, (const uint8_t *)info,
              sizeof(info) - 1)) {
        ERR_clear_error();
        return false;
    }
    return true;
}

size_t sseal_seal(const uint8_t key[SSEAL_KEY_LEN], const uint8_t *id, size_t id_len,
                   const uint8_t *val, size_t len, uint8_t *out, size_t cap)
{
    if (cap < SSEAL_OVERHEAD || len > cap - SSEAL_OVERHEAD)
        return 0;
    EVP_AEAD_CTX ctx;
    if (!EVP_AEAD_CTX_init(&ctx, EVP_aead_aes_256_gcm(), key, SSEAL_KEY_LEN, EVP_AEAD_DEFAULT_TAG_LENGTH,
                           NULL)) {
        ERR_clear_error();
        return 0;
    }
    out[0] = SSEAL_V1;
    size_t n = 0;
    bool ok = RAND_bytes(out + 1, SEAL_NONCE) &&
              EVP_AEAD_CTX_seal(&ctx, out + 1 + SEAL_NONCE, &n, cap - 1 - SEAL_NONCE, out + 1, SEAL_NONCE, val,
                                len, id, id_len);
    EVP_AEAD_CTX_cleanup(&ctx);
    if (!ok) {
        ERR_clear_error();
        return 0;
    }
    return 1 + SEAL_NONCE + n;
}

ssize_t sseal_open(const uint8_t (*keys)[SSEAL_KEY_LEN], size_t n_keys, const uint8_t *id,
                    size_t id_len, const uint8_t *in, size_t in_len, uint8_t *out, size_t cap)
{
    if (in_len < SSEAL_OVERHEAD || in[0] != SSEAL_V1)
        return -1;
    for (size_t i = 0; i < n_keys; i++) {
        EVP_AEAD_CTX ctx;
        if (!EVP_AEAD_CTX_init(&ctx, EVP_aead_aes_256_gcm(), keys[i], SSEAL_KEY_LEN,
                               EVP_AEAD_DEFAULT_TAG_LENGTH, NULL))
            continue;
        size_t n = 0;
        bool ok = EVP_AEAD_CTX_open(&ctx, out, &n, cap, in + 1, SEAL_NONCE, in + 1 + SEAL_NONCE,
                                    in_len - 1 - SEAL_NONCE, id, id_len);
        EVP_AEAD_CTX_cleanup(&ctx);
        if (ok) {
            ERR_clear_error();
            return (ssize_t)n;
        }
    }
    ERR_clear_error();
    return -1;
}
