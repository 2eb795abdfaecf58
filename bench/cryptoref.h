/* Reference cost of the public-key operations in one full mTLS handshake with ECDSA P-256
 * certificates, measured with the same BoringSSL on this machine (CPU time of this process), so
 * gateway handshake rates can be compared with what the crypto alone allows at the same moment.
 * Not a TLS benchmark: no records, no handshake messages, no certificate parsing. */
#ifndef NHBENCH_CRYPTOREF_H
#define NHBENCH_CRYPTOREF_H

struct cref {
    double sign_us;          /* ECDSA P-256 sign (server CertificateVerify / ServerKeyExchange) */
    double verify_us;        /* ECDSA P-256 verify (device cert signature, device CertificateVerify) */
    double x25519_us;        /* X25519 key generation + shared secret */
    double p256_ecdh_us;     /* P-256 ECDH key generation + shared secret */
    double server_x25519_us; /* server side of a full handshake: X25519 + 1 sign + 2 verify */
    double server_p256_us;   /* ... with P-256 ECDHE */
};

/* Measure for about `seconds` of CPU time in total. Returns 0 or -1 on a BoringSSL failure. */
int cref_measure(double seconds, struct cref *out);

#endif
