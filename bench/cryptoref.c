/* Public-key reference timings (see cryptoref.h). */
#include "cryptoref.h"

#include <string.h>
#include <time.h>

#include <openssl/curve25519.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdh.h>
#include <openssl/ecdsa.h>
#include <openssl/nid.h>

static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int cref_measure(double seconds, struct cref *out)
{
    memset(out, 0, sizeof(*out));
    double slice = seconds / 4;
    int rc = -1;
    EC_KEY *k = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
    EC_KEY *e = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
    uint8_t dig[32] = { 1 }, sig[80] /* a P-256 DER signature is at most 72 bytes */, pub[32], priv[32], secret[32];
    unsigned sig_len = 0;
    if (!k || !e || !EC_KEY_generate_key(k) || ECDSA_size(k) > sizeof(sig))
        goto out;
    long n = 0;
    double t0 = cpu_s(), t;
    do {
        if (!ECDSA_sign(0, dig, sizeof(dig), sig, &sig_len, k))
            goto out;
        n++;
    } while ((t = cpu_s()) - t0 < slice);
    out->sign_us = (t - t0) * 1e6 / (double)n;
    n = 0;
    t0 = cpu_s();
    do {
        if (!ECDSA_verify(0, dig, sizeof(dig), sig, sig_len, k))
            goto out;
        n++;
    } while ((t = cpu_s()) - t0 < slice);
    out->verify_us = (t - t0) * 1e6 / (double)n;
    n = 0;
    t0 = cpu_s();
    do {
        X25519_keypair(pub, priv);
        if (!X25519(secret, priv, pub))
            goto out;
        n++;
    } while ((t = cpu_s()) - t0 < slice);
    out->x25519_us = (t - t0) * 1e6 / (double)n;
    n = 0;
    t0 = cpu_s();
    do {
        if (!EC_KEY_generate_key(e) || ECDH_compute_key(secret, sizeof(secret), EC_KEY_get0_public_key(k), e, NULL) <= 0)
            goto out;
        n++;
    } while ((t = cpu_s()) - t0 < slice);
    out->p256_ecdh_us = (t - t0) * 1e6 / (double)n;
    out->server_x25519_us = out->x25519_us + out->sign_us + 2 * out->verify_us;
    out->server_p256_us = out->p256_ecdh_us + out->sign_us + 2 * out->verify_us;
    rc = 0;
out:
    EC_KEY_free(k);
    EC_KEY_free(e);
    return rc;
}
