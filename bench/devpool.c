/* Device certificate pool (see devpool.h). File layout: a 64-byte header ("NHBPOOL1", u32 count,
 * u32 0, SHA-256 of the CA certificate DER, zero padding) followed by `count` records
 * { u16 cert_len, u16 key_len, cert DER, PKCS#8 key DER }, little-endian. */
#include "devpool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bytestring.h>
#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define HEADER_LEN 64
static const char MAGIC[8] = "NHBPOOL1";

struct pool {
    uint8_t *map;       /* whole file */
    size_t map_len;
    uint32_t count;
    uint32_t *off;      /* offset of each record in map */
};

static int fail(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return -1;
}

struct ca {
    X509 *cert;
    EVP_PKEY *key;
    uint8_t hash[32];
};

static int ca_load(struct ca *ca, const char *cert_path, const char *key_path, char *err, size_t cap)
{
    memset(ca, 0, sizeof(*ca));
    FILE *f = fopen(cert_path, "r");
    if (!f)
        return fail(err, cap, "%s: %s", cert_path, strerror(errno));
    ca->cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!ca->cert)
        return fail(err, cap, "%s: not a PEM certificate", cert_path);
    f = fopen(key_path, "r");
    if (!f)
        return fail(err, cap, "%s: %s", key_path, strerror(errno));
    ca->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!ca->key)
        return fail(err, cap, "%s: not a PEM private key", key_path);
    uint8_t *der = NULL;
    int n = i2d_X509(ca->cert, &der);
    if (n <= 0)
        return fail(err, cap, "%s: cannot encode", cert_path);
    SHA256(der, (size_t)n, ca->hash);
    OPENSSL_free(der);
    return 0;
}

static void ca_free(struct ca *ca)
{
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
}

static bool add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
    if (!e)
        return false;
    bool ok = X509_add_ext(x, e, -1) == 1;
    X509_EXTENSION_free(e);
    return ok;
}

/* One identity: a fresh P-256 key and a leaf certificate like ops/devcerts.sh's v3_device. Appends
 * the record to f. Returns 0 or -1. */
static int make_identity(const struct ca *ca, uint32_t index, FILE *f)
{
    int rc = -1;
    EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
    EVP_PKEY *pk = EVP_PKEY_new();
    X509 *x = X509_new();
    uint8_t *cert_der = NULL, *key_der = NULL;
    size_t key_len = 0;
    CBB cbb;
    CBB_zero(&cbb);
    if (!ec || !pk || !x || !EC_KEY_generate_key(ec) || !EVP_PKEY_assign_EC_KEY(pk, ec))
        goto out;
    ec = NULL; /* owned by pk now */

    uint8_t serial[16];
    RAND_bytes(serial, sizeof(serial));
    serial[0] &= 0x7f; /* positive (RFC 5280 §4.1.2.2) */
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    ASN1_INTEGER *sn = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    BN_free(bn);
    if (!sn)
        goto out;
    int ok = X509_set_serialNumber(x, sn);
    ASN1_INTEGER_free(sn);
    if (!ok || !X509_set_version(x, X509_VERSION_3))
        goto out;
    if (!X509_gmtime_adj(X509_getm_notBefore(x), -86400) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 86400))
        goto out;
    char cn[32];
    snprintf(cn, sizeof(cn), "nhbench-%07u", index);
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const uint8_t *)"nhbench", -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const uint8_t *)cn, -1, -1, 0))
        goto out;
    if (!X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) || !X509_set_pubkey(x, pk))
        goto out;
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, ca->cert, x, NULL, NULL, 0);
    if (!add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") ||
        !add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature") ||
        !add_ext(x, &ctx, NID_ext_key_usage, "clientAuth") ||
        !add_ext(x, &ctx, NID_subject_key_identifier, "hash") ||
        !add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always"))
        goto out;
    if (!X509_sign(x, ca->key, EVP_sha256()))
        goto out;
    int cert_len = i2d_X509(x, &cert_der);
    if (cert_len <= 0 || cert_len > 0xffff)
        goto out;
    if (!CBB_init(&cbb, 160) || !EVP_marshal_private_key(&cbb, pk) || !CBB_finish(&cbb, &key_der, &key_len) ||
        key_len > 0xffff)
        goto out;
    uint8_t hdr[4] = { (uint8_t)cert_len, (uint8_t)(cert_len >> 8), (uint8_t)key_len, (uint8_t)(key_len >> 8) };
    if (fwrite(hdr, 4, 1, f) != 1 || fwrite(cert_der, (size_t)cert_len, 1, f) != 1 ||
        fwrite(key_der, key_len, 1, f) != 1)
        goto out;
    rc = 0;
out:
    CBB_cleanup(&cbb);
    OPENSSL_free(cert_der);
    OPENSSL_free(key_der);
    X509_free(x);
    EVP_PKEY_free(pk);
    EC_KEY_free(ec);
    return rc;
}

static int read_header(int fd, const uint8_t hash[32], uint32_t *count)
{
    uint8_t h[HEADER_LEN];
    *count = 0;
    if (pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h))
        return -1;
    if (memcmp(h, MAGIC, 8) != 0 || memcmp(h + 16, hash, 32) != 0)
        return -1;
    memcpy(count, h + 8, 4);
    return 0;
}

static int write_header(int fd, const uint8_t hash[32], uint32_t count)
{
    uint8_t h[HEADER_LEN] = { 0 };
    memcpy(h, MAGIC, 8);
    memcpy(h + 8, &count, 4);
    memcpy(h + 16, hash, 32);
    return pwrite(fd, h, sizeof(h), 0) == (ssize_t)sizeof(h) ? 0 : -1;
}

/* Length of the first `count` records, walking them (the file may hold a torn tail). */
static int records_end(int fd, uint32_t count, off_t *end)
{
    off_t o = HEADER_LEN;
    for (uint32_t i = 0; i < count; i++) {
        uint8_t h[4];
        if (pread(fd, h, 4, o) != 4)
            return -1;
        o += 4 + (h[0] | h[1] << 8) + (h[2] | h[3] << 8);
    }
    *end = o;
    return 0;
}

/* Generate identities [from, to) into tmp files, `jobs` children in parallel, then append them. */
static int generate(const struct ca *ca, int fd, const char *path, uint32_t from, uint32_t to, int jobs,
                    char *err, size_t cap)
{
    if (jobs < 1)
        jobs = 1;
    if ((uint32_t)jobs > to - from)
        jobs = (int)(to - from);
    pid_t pids[64];
    char tmp[64][1100];
    if (jobs > 64)
        jobs = 64;
    uint32_t per = (to - from + (uint32_t)jobs - 1) / (uint32_t)jobs;
    for (int j = 0; j < jobs; j++) {
        uint32_t a = from + per * (uint32_t)j, b = a + per < to ? a + per : to;
        snprintf(tmp[j], sizeof(tmp[j]), "%s.part%d", path, j);
        pids[j] = fork();
        if (pids[j] < 0)
            return fail(err, cap, "fork: %s", strerror(errno));
        if (pids[j] == 0) {
            FILE *f = fopen(tmp[j], "w");
            if (!f)
                _exit(2);
            for (uint32_t i = a; i < b; i++)
                if (make_identity(ca, i, f) != 0)
                    _exit(3);
            _exit(fclose(f) == 0 ? 0 : 4);
        }
    }
    int bad = 0;
    for (int j = 0; j < jobs; j++) {
        int st;
        while (waitpid(pids[j], &st, 0) < 0 && errno == EINTR) {
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            bad = 1;
    }
    off_t end;
    if (!bad && records_end(fd, from, &end) != 0)
        bad = 1;
    for (int j = 0; j < jobs && !bad; j++) {
        FILE *f = fopen(tmp[j], "r");
        if (!f) {
            bad = 1;
            break;
        }
        uint8_t chunk[65536];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
            if (pwrite(fd, chunk, n, end) != (ssize_t)n) {
                bad = 1;
                break;
            }
            end += (off_t)n;
        }
        fclose(f);
    }
    for (int j = 0; j < jobs; j++)
        unlink(tmp[j]);
    if (bad)
        return fail(err, cap, "generating device certificates failed");
    if (ftruncate(fd, end) != 0 || write_header(fd, ca->hash, to) != 0 || fsync(fd) != 0)
        return fail(err, cap, "%s: %s", path, strerror(errno));
    return 0;
}

int pool_ensure(const char *dir, const char *ca_cert, const char *ca_key, uint32_t n, int jobs, char *path,
                size_t path_cap, char *err, size_t err_cap)
{
    struct ca ca;
    if (ca_load(&ca, ca_cert, ca_key, err, err_cap) != 0) {
        ca_free(&ca);
        return -1;
    }
    int rc = -1, fd = -1;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fail(err, err_cap, "mkdir %s: %s", dir, strerror(errno));
        goto out;
    }
    snprintf(path, path_cap, "%s/devices-%02x%02x%02x%02x.pool", dir, ca.hash[0], ca.hash[1], ca.hash[2],
             ca.hash[3]);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fail(err, err_cap, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (flock(fd, LOCK_EX) != 0) {
        fail(err, err_cap, "flock %s: %s", path, strerror(errno));
        goto out;
    }
    uint32_t have;
    if (read_header(fd, ca.hash, &have) != 0) {
        have = 0;
        if (ftruncate(fd, HEADER_LEN) != 0 || write_header(fd, ca.hash, 0) != 0) {
            fail(err, err_cap, "%s: %s", path, strerror(errno));
            goto out;
        }
    }
    if (have < n) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        fprintf(stderr, "nhbench: generating %u device certificates (ECDSA P-256) into %s ...\n", n - have,
                path);
        if (generate(&ca, fd, path, have, n, jobs, err, err_cap) != 0)
            goto out;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        fprintf(stderr, "nhbench: generated %u in %.1f s\n", n - have,
                (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd); /* releases the lock */
    ca_free(&ca);
    return rc;
}

struct pool *pool_open(const char *path, char *err, size_t err_cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fail(err, err_cap, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    struct pool *p = calloc(1, sizeof(*p));
    if (!p || fstat(fd, &st) != 0 || st.st_size < HEADER_LEN) {
        fail(err, err_cap, "%s: not a pool file", path);
        goto bad;
    }
    p->map_len = (size_t)st.st_size;
    p->map = mmap(NULL, p->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p->map == MAP_FAILED) {
        p->map = NULL;
        fail(err, err_cap, "mmap %s: %s", path, strerror(errno));
        goto bad;
    }
    if (memcmp(p->map, MAGIC, 8) != 0) {
        fail(err, err_cap, "%s: not a pool file", path);
        goto bad;
    }
    memcpy(&p->count, p->map + 8, 4);
    p->off = malloc(((size_t)p->count + 1) * sizeof(*p->off));
    if (!p->off) {
        fail(err, err_cap, "out of memory");
        goto bad;
    }
    size_t o = HEADER_LEN;
    for (uint32_t i = 0; i < p->count; i++) {
        if (o + 4 > p->map_len)
            goto torn;
        const uint8_t *h = p->map + o;
        size_t len = 4 + (size_t)(h[0] | h[1] << 8) + (size_t)(h[2] | h[3] << 8);
        if (o + len > p->map_len)
            goto torn;
        p->off[i] = (uint32_t)o;
        o += len;
    }
    close(fd);
    return p;
torn:
    fail(err, err_cap, "%s: truncated pool file", path);
bad:
    close(fd);
    pool_free(p);
    return NULL;
}

void pool_free(struct pool *p)
{
    if (!p)
        return;
    if (p->map)
        munmap(p->map, p->map_len);
    free(p->off);
    free(p);
}

uint32_t pool_count(const struct pool *p)
{
    return p->count;
}

int pool_get(const struct pool *p, uint32_t i, const uint8_t **cert, size_t *cert_len, const uint8_t **key,
             size_t *key_len)
{
    if (i >= p->count)
        return -1;
    const uint8_t *h = p->map + p->off[i];
    *cert_len = (size_t)(h[0] | h[1] << 8);
    *key_len = (size_t)(h[2] | h[3] << 8);
    *cert = h + 4;
    *key = h + 4 + *cert_len;
    return 0;
}
