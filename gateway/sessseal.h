#ifndef NHGW_SESSSEAL_H
#define NHGW_SESSSEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Sealed TLS sessions, for a store outside the process tree (Redis, shared by pods).
 * A session holds its master secret, so a value leaving the node is encrypted and authenticated
 * (AES-256-GCM) under a key every pod can derive from the secret they share (the ticket keys),
 * and bound to its session ID (associated data): a value copied under another ID does not open.
 * Layout: version (1 byte, SSEAL_V1), 12-byte random nonce, ciphertext, 16-byte tag. */
#define SSEAL_KEY_LEN 32
#define SSEAL_V1 1
#define SSEAL_OVERHEAD (1 + 12 + 16)

/* HKDF-SHA256 of `secret` (a ticket key: name and keys, 48 or 80 bytes) with a label of its own,
 * so the sealing key is never a ticket key itself. False on a BoringSSL failure. */
bool sseal_key(uint8_t out[SSEAL_KEY_LEN], const uint8_t *secret, size_t secret_len);
/* Seal `len` bytes for id into out (capacity cap >= len + SSEAL_OVERHEAD); returns the
 * sealed length, or 0 when it does not fit or encryption fails. */
size_t sseal_seal(const uint8_t key[SSEAL_KEY_LEN], const uint8_t *id, size_t id_len,
                   const uint8_t *val, size_t len, uint8_t *out, size_t cap);
/* Open a sealed value of id with the first of `n_keys` keys that authenticates it; returns the
 * plain length, or -1 when none does (wrong key, another ID, tampered, truncated, unknown
 * version, or longer than cap). */
ssize_t sseal_open(const uint8_t (*keys)[SSEAL_KEY_LEN], size_t n_keys, const uint8_t *id,
                    size_t id_len, const uint8_t *in, size_t in_len, uint8_t *out, size_t cap);

#endif
