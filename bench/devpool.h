/* Device identities for nhbench: N unique ECDSA P-256 client certificates signed by a device CA
 * (CN "nhbench-<index>"), generated with BoringSSL and cached in a pool file so later runs start
 * at once. The pool file is bound to the CA certificate (its SHA-256); a pool for another CA is
 * rebuilt. Not a PKI tool: no CRLs, no chains beyond the leaf, keys stored unencrypted. */
#ifndef NHBENCH_DEVPOOL_H
#define NHBENCH_DEVPOOL_H

#include <stddef.h>
#include <stdint.h>

struct pool;

/* Make sure dir/devices-<ca hash>.pool holds at least n identities signed by ca_cert/ca_key
 * (PEM files), generating the missing ones with `jobs` processes. Concurrent callers serialise on a
 * lock file. Returns 0 with the pool path in path (cap path_cap), or -1 with a message in err. */
int pool_ensure(const char *dir, const char *ca_cert, const char *ca_key, uint32_t n, int jobs, char *path,
                size_t path_cap, char *err, size_t err_cap);

/* Map a pool file read-only. Returns NULL with a message in err. pool_free(NULL) is a no-op. */
struct pool *pool_open(const char *path, char *err, size_t err_cap);
void pool_free(struct pool *p);

/* Number of identities in the pool. */
uint32_t pool_count(const struct pool *p);

/* Identity i (< pool_count): DER certificate and DER PKCS#8 private key, borrowed from the mapping
 * until pool_free. Returns 0, or -1 if i is out of range. */
int pool_get(const struct pool *p, uint32_t i, const uint8_t **cert, size_t *cert_len, const uint8_t **key,
             size_t *key_len);

#endif
