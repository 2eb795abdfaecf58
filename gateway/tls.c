/* BoringSSL server context (see tls.h). Uses the CRYPTO_BUFFER ("with buffers") method so no X509
 * objects live on idle connections; device chains are parsed only inside the verify callback. */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/pem.h>
#include <openssl/pool.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common.h"
#include "config.h"
#include "log.h"
#include "sesscache.h"
#include "sessseal.h"

struct tls_stats tls_stats;

/* The master's shared session store (tls_set_session_cache), inherited by every worker. */
static struct scache *sess_cache;
/* This worker's cross-pod store (tls_set_session_store); NULL when off. */
static struct tlsr *sess_remote;

#define MAX_TICKET_KEYS 8

struct ticket_key {
    uint8_t name[16];
    uint8_t hmac[32];
    uint8_t aes[32];
    size_t key_len; /* 16 (AES-128, 48-byte file format) or 32 (AES-256, 80-byte format) */
};

struct server_cert {
    CRYPTO_BUFFER *chain[10];
    size_t n;
    EVP_PKEY *key;
    bool ecdsa;
};

struct tls_ctx {
    SSL_CTX *ctx;
    X509_STORE *devices;       /* device CA bundle (+ CRL) */
    bool reject_expired;
    struct server_cert certs[CFG_MAX_CERTS];
    int n_certs;
    struct ticket_key tickets[MAX_TICKET_KEYS];
    int n_tickets;
    uint8_t seal[MAX_TICKET_KEYS][SSEAL_KEY_LEN]; /* the cross-pod store's, per ticket key */
    uint8_t trust[SHA256_DIGEST_LENGTH]; /* the session ID context (trust_digest) */
    unsigned refs;             /* the owner's, plus one per SSL made from it (tls.h) */
};

static int ex_identity = -1;
static int ex_tls_ctx = -1;
static int ex_from_cache = -1; /* set when the session came from the shared store */
static int ex_remote = -1;     /* struct remote_lookup, while a cross-pod lookup is involved */

/* A session ID looked up in the cross-pod store: asked (waiting), then answered with a session
 * or none; the session callback runs again once the answer is in. */
struct remote_lookup {
    uint8_t id[SCACHE_ID_MAX];
    uint8_t id_len;
    bool answered;
    SSL_SESSION *sess; /* the answer, handed to BoringSSL by the session callback */
};

static void remote_lookup_free(struct remote_lookup *rl)
{
    if (rl)
        SSL_SESSION_free(rl->sess);
    free(rl);
}

static void remote_lookup_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int index, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)index;
    (void)argl;
    (void)argp;
    remote_lookup_free(ptr);
}

/* An SSL's callbacks read its tls_ctx, so each SSL holds a reference until it is freed. */
static void ssl_ctx_ref_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int index, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)index;
    (void)argl;
    (void)argp;
    tls_ctx_free(ptr);
}

void tls_identity_clear(struct tls_identity *id)
{
    free(id->der);
    id->der = NULL;
    id->der_len = 0;
}

static void set_err(char *err, size_t errlen, const char *what, const char *path)
{
    unsigned long e = ERR_get_error();
    char buf[160] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    else if (errno)
        snprintf(buf, sizeof(buf), "%s", strerror(errno));
    snprintf(err, errlen, "%s %s: %s", what, path ? path : "", buf[0] ? buf : "invalid");
    ERR_clear_error();
}

static void hex_upper(const uint8_t *p, size_t n, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n && o + 2 < cap; i++) {
        out[o++] = hex[p[i] >> 4];
        out[o++] = hex[p[i] & 15];
    }
    out[o] = 0;
}

/* Seconds until the leaf's notAfter (negative once expired); 0 if it cannot be decoded. */
static int64_t seconds_left(X509 *leaf)
{
    int days = 0, secs = 0;
    if (!ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(leaf))) /* NULL: now */
        return 0;
    return (int64_t)days * 86400 + secs;
}

static void fill_identity(struct tls_identity *id, X509 *leaf, const CRYPTO_BUFFER *der, int64_t left)
{
    tls_identity_clear(id);
    memset(id, 0, sizeof(*id));
    id->has_cert = true;
    SHA1(CRYPTO_BUFFER_data(der), CRYPTO_BUFFER_len(der), id->fingerprint);
    X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, id->cn, sizeof(id->cn));
    const ASN1_INTEGER *serial = X509_get_serialNumber(leaf);
    if (serial)
        hex_upper(serial->data, (size_t)serial->length, id->serial, sizeof(id->serial));
    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(leaf);
    if (aki)
        hex_upper(aki->data, (size_t)aki->length, id->aki, sizeof(id->aki));
    id->not_after = (int64_t)time(NULL) + left;
    id->expired = left < 0;
    id->der = malloc(CRYPTO_BUFFER_len(der));
    if (id->der) {
        memcpy(id->der, CRYPTO_BUFFER_data(der), CRYPTO_BUFFER_len(der));
        id->der_len = CRYPTO_BUFFER_len(der);
    }
}

/* Time errors are forgiven when expired certificates are accepted (NervesHub keeps accepting
 * registered certificates after expiry, device-protocol.md §2.2). */
static int verify_time_cb(int ok, X509_STORE_CTX *sctx)
{
    if (ok)
        return 1;
    int e = X509_STORE_CTX_get_error(sctx);
    if (e == X509_V_ERR_CERT_HAS_EXPIRED || e == X509_V_ERR_CERT_NOT_YET_VALID ||
        e == X509_V_ERR_CRL_HAS_EXPIRED || e == X509_V_ERR_CRL_NOT_YET_VALID) {
        X509_STORE_CTX_set_error(sctx, X509_V_OK);
        return 1;
    }
    return 0;
}

static uint8_t alert_for(int verify_error)
{
    switch (verify_error) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return SSL_AD_CERTIFICATE_EXPIRED;
    case X509_V_ERR_CERT_REVOKED:
        return SSL_AD_CERTIFICATE_REVOKED;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        return SSL_AD_UNKNOWN_CA;
    default:
        return SSL_AD_BAD_CERTIFICATE;
    }
}

/* Verify a device chain against the device CA bundle and fill the identity. Returns true when
 * the chain is acceptable; *out_alert says why not otherwise. */
static bool verify_chain(struct tls_ctx *t, const STACK_OF(CRYPTO_BUFFER) *chain, struct tls_identity *id,
                         uint8_t *out_alert)
{
    bool ok = false;
    *out_alert = SSL_AD_BAD_CERTIFICATE;
    X509 *leaf = NULL;
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    X509_STORE_CTX *sctx = X509_STORE_CTX_new();
    if (!untrusted || !sctx) {
        *out_alert = SSL_AD_INTERNAL_ERROR;
        goto out;
    }
    for (size_t i = 0; i < sk_CRYPTO_BUFFER_num(chain); i++) {
        X509 *x = X509_parse_from_buffer(sk_CRYPTO_BUFFER_value(chain, i));
        if (!x)
            goto out;
        if (i == 0) {
            leaf = x;
        } else if (!sk_X509_push(untrusted, x)) {
            X509_free(x);
            goto out;
        }
    }
    if (!X509_STORE_CTX_init(sctx, t->devices, leaf, untrusted))
        goto out;
    X509_STORE_CTX_set_default(sctx, "ssl_client");
    if (!t->reject_expired)
        X509_STORE_CTX_set_verify_cb(sctx, verify_time_cb);
    int64_t left = seconds_left(leaf);
    if (X509_verify_cert(sctx) != 1) {
        int e = X509_STORE_CTX_get_error(sctx);
        *out_alert = alert_for(e);
        tls_stats.verify_failed++;
        if (e == X509_V_ERR_CERT_HAS_EXPIRED)
            tls_stats.expired_rejected++;
        log_peer("tls_verify_failed", "reason=\"%s\"", X509_verify_cert_error_string(e));
        goto out;
    }
    tls_stats.verify_ok++;
    if (left < 0)
        tls_stats.expired_accepted++;
    if (id)
        fill_identity(id, leaf, sk_CRYPTO_BUFFER_value(chain, 0), left);
    ok = true;
out:
    X509_STORE_CTX_free(sctx);
    sk_X509_pop_free(untrusted, X509_free);
    X509_free(leaf);
    ERR_clear_error();
    return ok;
}

static enum ssl_verify_result_t verify_device(SSL *ssl, uint8_t *out_alert)
{
    struct tls_ctx *t = SSL_get_ex_data(ssl, ex_tls_ctx);
    const STACK_OF(CRYPTO_BUFFER) *chain = SSL_get0_peer_certificates(ssl);
    if (!chain || sk_CRYPTO_BUFFER_num(chain) == 0)
        return ssl_verify_ok; /* the certificate is optional: shared-secret devices share the port */
    return verify_chain(t, chain, SSL_get_ex_data(ssl, ex_identity), out_alert) ? ssl_verify_ok
                                                                                : ssl_verify_invalid;
}

/* ---- socket BIO with read-ahead during the handshake ----
 * BoringSSL reads a record in two calls (the 5-byte header, then the body), so the five records of
 * a client's certificate flight cost ten read(2)s plus the one that finds the socket empty. While
 * the handshake runs, this BIO reads whatever the socket holds into a per-process scratch buffer,
 * returns what BoringSSL asked for and keeps the rest in a heap block that lives only until it is
 * consumed (normally within the same SSL call). tls_after_handshake swaps in BoringSSL's plain
 * socket BIO, so an open session costs exactly what it did without read-ahead.
 * The contract callers rely on: a read reports "retry" (SSL_ERROR_WANT_READ) only when nothing is
 * held here, so level-triggered socket readiness stays exact once an SSL call wants to read. */

#define RA_SCRATCH (SSL3_RT_MAX_ENCRYPTED_LENGTH + SSL3_RT_HEADER_LENGTH) /* one maximal record */

struct ra_bio {
    int fd;
    bool ahead;    /* false once the handshake is over */
    uint32_t off;  /* consumed part of held */
    uint32_t len;  /* bytes in held */
    uint8_t *held; /* read from the socket, not yet returned; NULL when empty */
};

static uint8_t ra_scratch[RA_SCRATCH]; /* workers are single-threaded */
static BIO_METHOD *ra_method;
static int ra_type;

/* read(2)/write(2) with the socket BIO's conventions: errno is cleared first (so an orderly EOF
 * is not reported with a stale errno) and a would-block result sets the retry flag. */
static int ra_sys(BIO *b, int fd, void *p, size_t n, bool is_read)
{
    errno = 0;
    ssize_t r = is_read ? read(fd, p, n) : write(fd, p, n);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        if (is_read)
            BIO_set_retry_read(b);
        else
            BIO_set_retry_write(b);
    }
    return (int)r;
}

static int ra_read(BIO *b, char *out, int outl)
{
    struct ra_bio *st = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (outl <= 0)
        return 0;
    size_t want = (size_t)outl;
    if (st->held) {
        size_t n = MIN(want, (size_t)(st->len - st->off));
        memcpy(out, st->held + st->off, n);
        st->off += (uint32_t)n;
        if (st->off == st->len) {
            free(st->held);
            st->held = NULL;
            st->off = st->len = 0;
        }
        return (int)n;
    }
    if (!st->ahead || want >= sizeof(ra_scratch))
        return ra_sys(b, st->fd, out, want, true);
    int r = ra_sys(b, st->fd, ra_scratch, sizeof(ra_scratch), true);
    if (r <= 0)
        return r;
    size_t got = (size_t)r;
    if (got > want) {
        /* bounded by the scratch size; failing here fails the handshake, not the process */
        st->held = malloc(got - want);
        if (!st->held) {
            errno = ENOMEM;
            return -1;
        }
        st->len = (uint32_t)(got - want);
        memcpy(st->held, ra_scratch + want, st->len);
        got = want;
    }
    memcpy(out, ra_scratch, got);
    return (int)got;
}

static int ra_write(BIO *b, const char *in, int inl)
{
    struct ra_bio *st = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    return inl > 0 ? ra_sys(b, st->fd, (void *)in, (size_t)inl, false) : 0;
}

static long ra_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    struct ra_bio *st = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_C_GET_FD:
        if (ptr)
            *(int *)ptr = st->fd;
        return st->fd;
    default:
        return 0;
    }
}

static int ra_destroy(BIO *b)
{
    struct ra_bio *st = BIO_get_data(b);
    if (st) {
        free(st->held);
        free(st);
        BIO_set_data(b, NULL);
    }
    return 1;
}

static bool ra_init_method(void)
{
    if (ra_method)
        return true;
    int type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR;
    BIO_METHOD *m = BIO_meth_new(type, "nhgw read-ahead socket");
    if (!m || !BIO_meth_set_read(m, ra_read) || !BIO_meth_set_write(m, ra_write) ||
        !BIO_meth_set_ctrl(m, ra_ctrl) || !BIO_meth_set_destroy(m, ra_destroy)) {
        BIO_meth_free(m);
        return false;
    }
    ra_method = m;
    ra_type = type;
    return true;
}

static BIO *ra_new(int fd)
{
    struct ra_bio *st = calloc(1, sizeof(*st));
    BIO *b = st ? BIO_new(ra_method) : NULL;
    if (!b) {
        free(st);
        return NULL;
    }
    st->fd = fd;
    st->ahead = true;
    BIO_set_data(b, st);
    BIO_set_init(b, 1);
    return b;
}

/* End the read-ahead: the plain socket BIO takes over. Bytes the client sent right behind its
 * Finished (TLS 1.3, resumption) and that were read with it must be returned first, so such a
 * connection keeps this BIO, which from now on only drains them and otherwise reads straight. */
static void ra_finish(SSL *ssl)
{
    BIO *b = SSL_get_rbio(ssl);
    if (!b || BIO_method_type(b) != ra_type)
        return;
    struct ra_bio *st = BIO_get_data(b);
    st->ahead = false;
    if (st->held)
        return;
    BIO *plain = BIO_new_socket(st->fd, BIO_NOCLOSE);
    if (plain)
        SSL_set_bio(ssl, plain, plain); /* frees b */
}

bool tls_read_pending(SSL *ssl)
{
    BIO *b = SSL_get_rbio(ssl);
    if (SSL_pending(ssl) > 0)
        return true;
    return b && BIO_method_type(b) == ra_type && ((struct ra_bio *)BIO_get_data(b))->held != NULL;
}

int tls_after_handshake(SSL *ssl)
{
    ra_finish(ssl);
    struct remote_lookup *rl = SSL_get_ex_data(ssl, ex_remote);
    if (rl) {
        SSL_set_ex_data(ssl, ex_remote, NULL);
        remote_lookup_free(rl);
    }
    if (!SSL_session_reused(ssl))
        return 0;
    bool by_id = SSL_get_ex_data(ssl, ex_from_cache) != NULL;
    /* BoringSSL verifies only full handshakes on the server side: check the chain stored in the
     * session (a ticket's or the shared store's) against today's CA bundle, which also yields
     * the identity, exactly as a full handshake's verification does */
    SSL_SESSION *sess = SSL_get_session(ssl);
    const STACK_OF(CRYPTO_BUFFER) *chain = SSL_SESSION_get0_peer_certificates(sess);
    uint8_t alert;
    if (chain && sk_CRYPTO_BUFFER_num(chain) > 0 &&
        !verify_chain(SSL_get_ex_data(ssl, ex_tls_ctx), chain, SSL_get_ex_data(ssl, ex_identity), &alert)) {
        if (by_id) {
            /* nobody may resume it again: its next attempt falls back to a full handshake */
            unsigned id_len;
            const uint8_t *id = SSL_SESSION_get_id(sess, &id_len);
            scache_remove(sess_cache, id, id_len);
        }
        return -1;
    }
    if (by_id)
        tls_stats.resumed_id++;
    else
        tls_stats.resumed_ticket++;
    return 0;
}

/* ---- session-ID resumption through the shared store (sesscache.h) ----
 * Only TLS 1.2 clients that offer no session ticket get a session ID (BoringSSL assigns one only
 * then, and looks IDs up only then): Erlang's ssl, i.e. nerves_hub_link, is such a client. The
 * store holds the serialised session, peer certificate chain included, so a resumption on any
 * worker verifies and identifies the device like a ticket resumption (tls_after_handshake). */

static uint8_t sess_buf[TLS_SESSION_MAX_BYTES]; /* workers are single-threaded */
static uint8_t seal_buf[TLS_SESSION_MAX_BYTES + SSEAL_OVERHEAD];

void tls_set_session_cache(struct scache *c)
{
    sess_cache = c;
}

void tls_set_session_store(struct tlsr *r)
{
    sess_remote = r;
}

static int64_t session_expires(const SSL_SESSION *sess)
{
    return (int64_t)SSL_SESSION_get_time(sess) + (int64_t)SSL_SESSION_get_timeout(sess);
}

/* Sealed with the first ticket key (the one every pod encrypts tickets with), so any pod that
 * loads the same file opens it; the key expires in Redis with the session. */
static void remote_store(SSL *ssl, const uint8_t *id, size_t id_len, const uint8_t *der, size_t len,
                         int64_t expires, int64_t now)
{
    struct tls_ctx *t = SSL_get_ex_data(ssl, ex_tls_ctx);
    if (!t || expires <= now || len > TLS_SESSION_MAX_BYTES)
        return;
    size_t n = sseal_seal(t->seal[0], id, id_len, der, len, seal_buf, sizeof(seal_buf));
    if (n)
        tlsr_store(sess_remote, id, id_len, seal_buf, n, (uint32_t)MIN(expires - now, (int64_t)UINT32_MAX));
}

bool tls_fetch_session(SSL *ssl, tlsr_cb cb, void *arg)
{
    struct remote_lookup *rl = SSL_get_ex_data(ssl, ex_remote);
    if (!rl || rl->answered)
        return false;
    if (sess_remote && tlsr_lookup(sess_remote, rl->id, rl->id_len, cb, arg))
        return true;
    rl->answered = true; /* not asked: resume nothing, now */
    return false;
}

void tls_session_fetched(SSL *ssl, enum tlsr_result r, const uint8_t *val, size_t len)
{
    struct remote_lookup *rl = SSL_get_ex_data(ssl, ex_remote);
    if (!rl || rl->answered)
        return;
    rl->answered = true;
    if (r != TLSR_HIT)
        return;
    struct tls_ctx *t = SSL_get_ex_data(ssl, ex_tls_ctx);
    ssize_t n = sseal_open((const uint8_t (*)[SSEAL_KEY_LEN])t->seal, (size_t)t->n_tickets, rl->id,
                            rl->id_len, val, len, sess_buf, sizeof(sess_buf));
    SSL_SESSION *s = n > 0 ? SSL_SESSION_from_bytes(sess_buf, (size_t)n, SSL_get_SSL_CTX(ssl)) : NULL;
    if (!s) {
        ERR_clear_error();
        tls_stats.remote_rejected++;
        return;
    }
    /* this node's next lookup of it is local */
    if (sess_cache)
        scache_put(sess_cache, rl->id, rl->id_len, sess_buf, (size_t)n, session_expires(s), (int64_t)time(NULL));
    rl->sess = s;
}

static int sess_new_cb(SSL *ssl, SSL_SESSION *sess)
{
    unsigned id_len;
    const uint8_t *id = SSL_SESSION_get_id(sess, &id_len);
    if (!sess_cache || id_len == 0 || SSL_SESSION_get_protocol_version(sess) != TLS1_2_VERSION)
        return 0;
    uint8_t *der = NULL;
    size_t len = 0;
    if (!SSL_SESSION_to_bytes(sess, &der, &len)) {
        ERR_clear_error();
        tls_stats.sessions_not_cached++;
        return 0;
    }
    int64_t now = (int64_t)time(NULL);
    int64_t expires = session_expires(sess);
    /* too large (a long client chain) or already expired: that device resumes nothing */
    if (!scache_put(sess_cache, id, id_len, der, len, expires, now))
        tls_stats.sessions_not_cached++;
    else if (sess_remote)
        remote_store(ssl, id, id_len, der, len, expires, now);
    OPENSSL_free(der);
    return 0; /* the serialised copy is all the store keeps */
}

static SSL_SESSION *sess_get_cb(SSL *ssl, const uint8_t *id, int id_len, int *out_copy)
{
    *out_copy = 0; /* the session returned is a new reference, handed over */
    if (!sess_cache || id_len <= 0)
        return NULL;
    struct remote_lookup *rl = SSL_get_ex_data(ssl, ex_remote);
    if (rl) {
        /* called again after the cross-pod store answered (or was not asked) */
        if (!rl->answered)
            return SSL_magic_pending_session_ptr();
        SSL_SESSION *s = rl->sess;
        rl->sess = NULL;
        if (s)
            SSL_set_ex_data(ssl, ex_from_cache, (void *)1);
        return s;
    }
    ssize_t n = scache_get(sess_cache, id, (size_t)id_len, (int64_t)time(NULL), sess_buf, sizeof(sess_buf));
    if (n < 0 && sess_remote && id_len <= SCACHE_ID_MAX) {
        /* not on this node: the handshake waits for the cross-pod store (conn.c) */
        rl = calloc(1, sizeof(*rl));
        if (!rl || !SSL_set_ex_data(ssl, ex_remote, rl)) {
            free(rl);
            return NULL;
        }
        memcpy(rl->id, id, (size_t)id_len);
        rl->id_len = (uint8_t)id_len;
        return SSL_magic_pending_session_ptr();
    }
    if (n < 0)
        return NULL;
    SSL_SESSION *s = SSL_SESSION_from_bytes(sess_buf, (size_t)n, SSL_get_SSL_CTX(ssl));
    if (!s) {
        ERR_clear_error();
        scache_remove(sess_cache, id, (size_t)id_len);
        return NULL;
    }
    /* BoringSSL still checks the session ID context, lifetime, version and cipher */
    SSL_set_ex_data(ssl, ex_from_cache, (void *)1);
    return s;
}

/* Fires only for sessions of BoringSSL's internal cache, which is off: kept so that dropping a
 * session through BoringSSL also drops it from the store, should that change. */
static void sess_remove_cb(SSL_CTX *ctx, SSL_SESSION *sess)
{
    (void)ctx;
    unsigned id_len;
    const uint8_t *id = SSL_SESSION_get_id(sess, &id_len);
    if (sess_cache)
        scache_remove(sess_cache, id, id_len);
}

static int cmp_digest(const void *a, const void *b)
{
    return memcmp(a, b, SHA256_DIGEST_LENGTH);
}

/* The session ID context names what a client certificate was verified against: the device CA
 * bundle, the CRLs and the expiry policy. Sessions (cached or in tickets) made under another
 * context are not resumed, so a reload that changes the bundle forces full handshakes, on top of
 * the verification tls_after_handshake repeats. Order-independent, so every worker and every pod
 * loading the same files agrees. `crls` holds the digests of the CRLs loaded. */
static void trust_digest(struct tls_ctx *t, const uint8_t (*crls)[SHA256_DIGEST_LENGTH], size_t n_crls)
{
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(t->devices);
    size_t n_objs = sk_X509_OBJECT_num(objs);
    size_t n = 0;
    uint8_t (*d)[SHA256_DIGEST_LENGTH] = xcalloc(n_objs + n_crls + 1, SHA256_DIGEST_LENGTH);
    for (size_t i = 0; i < n_objs; i++) {
        X509 *x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        uint8_t *der = NULL;
        int len = x ? i2d_X509(x, &der) : -1;
        if (len <= 0)
            continue; /* CRLs are counted from the file (crls) */
        SHA256(der, (size_t)len, d[n++]);
        OPENSSL_free(der);
    }
    if (n_crls)
        memcpy(d + n, crls, n_crls * SHA256_DIGEST_LENGTH);
    n += n_crls;
    qsort(d, n, SHA256_DIGEST_LENGTH, cmp_digest);
    SHA256_CTX h;
    SHA256_Init(&h);
    static const char label[] = "nhgw device trust v1";
    SHA256_Update(&h, label, sizeof(label));
    uint8_t policy[2] = { t->reject_expired, (uint8_t)(n_crls > 0) };
    SHA256_Update(&h, policy, sizeof(policy));
    SHA256_Update(&h, d, n * SHA256_DIGEST_LENGTH);
    SHA256_Final(t->trust, &h);
    free(d);
}

static bool ext_has_u16(const SSL_CLIENT_HELLO *hello, uint16_t ext, bool skip_len1, uint16_t want)
{
    const uint8_t *d;
    size_t len;
    if (!SSL_early_callback_ctx_extension_get(hello, ext, &d, &len))
        return false;
    /* supported_versions carries a 1-byte list length, signature_algorithms a 2-byte one */
    size_t off = skip_len1 ? 1 : 2;
    for (size_t i = off; i + 1 < len; i += 2)
        if ((uint16_t)(d[i] << 8 | d[i + 1]) == want)
            return true;
    return false;
}

static bool client_takes_ecdsa(const SSL_CLIENT_HELLO *hello)
{
    bool sigalg_ok;
    const uint8_t *d;
    size_t len;
    if (SSL_early_callback_ctx_extension_get(hello, TLSEXT_TYPE_signature_algorithms, &d, &len))
        sigalg_ok = ext_has_u16(hello, TLSEXT_TYPE_signature_algorithms, false, 0x0403);
    else
        sigalg_ok = true; /* TLS 1.2 default sigalgs include ecdsa_sha1 (RFC 5246 §7.4.1.4.1) */
    if (!sigalg_ok)
        return false;
    if (ext_has_u16(hello, TLSEXT_TYPE_supported_versions, true, 0x0304))
        return true; /* TLS 1.3: the cipher suite does not name the signature */
    for (size_t i = 0; i + 1 < hello->cipher_suites_len; i += 2) {
        uint16_t cs = (uint16_t)(hello->cipher_suites[i] << 8 | hello->cipher_suites[i + 1]);
        switch (cs) {
        case 0xC02B: case 0xC02C: case 0xCCA9: case 0xC009: case 0xC00A: case 0xC023: case 0xC024:
            return true;
        }
    }
    return false;
}

static enum ssl_select_cert_result_t select_cert(const SSL_CLIENT_HELLO *hello)
{
    struct tls_ctx *t = SSL_get_ex_data(hello->ssl, ex_tls_ctx);
    bool want_ecdsa = client_takes_ecdsa(hello);
    const struct server_cert *pick = &t->certs[0];
    for (int i = 0; i < t->n_certs; i++) {
        if (t->certs[i].ecdsa == want_ecdsa) {
            pick = &t->certs[i];
            break;
        }
    }
    if (!SSL_set_chain_and_key(hello->ssl, pick->chain, pick->n, pick->key, NULL))
        return ssl_select_cert_error;
    return ssl_select_cert_success;
}

static int ticket_cb(SSL *ssl, uint8_t *key_name, uint8_t *iv, EVP_CIPHER_CTX *cctx, HMAC_CTX *hctx,
                     int encrypt)
{
    struct tls_ctx *t = SSL_get_ex_data(ssl, ex_tls_ctx);
    if (encrypt) {
        const struct ticket_key *k = &t->tickets[0];
        const EVP_CIPHER *c = k->key_len == 32 ? EVP_aes_256_cbc() : EVP_aes_128_cbc();
        if (!RAND_bytes(iv, EVP_CIPHER_iv_length(c)))
            return -1;
        memcpy(key_name, k->name, 16);
        if (!EVP_EncryptInit_ex(cctx, c, NULL, k->aes, iv) ||
            !HMAC_Init_ex(hctx, k->hmac, k->key_len, EVP_sha256(), NULL))
            return -1;
        return 1;
    }
    for (int i = 0; i < t->n_tickets; i++) {
        const struct ticket_key *k = &t->tickets[i];
        if (memcmp(key_name, k->name, 16) != 0)
            continue;
        const EVP_CIPHER *c = k->key_len == 32 ? EVP_aes_256_cbc() : EVP_aes_128_cbc();
        if (!HMAC_Init_ex(hctx, k->hmac, k->key_len, EVP_sha256(), NULL) ||
            !EVP_DecryptInit_ex(cctx, c, NULL, k->aes, iv))
            return -1;
        /* renew tickets made with an older key so rotation converges */
        return i == 0 ? 1 : 2;
    }
    return 0;
}

/* False only if the cross-pod store's key cannot be derived (a BoringSSL failure). */
static bool add_ticket_key(struct tls_ctx *t, const uint8_t *p, size_t len)
{
    struct ticket_key *k = &t->tickets[t->n_tickets];
    memcpy(k->name, p, 16);
    k->key_len = len == 80 ? 32 : 16;
    memcpy(k->hmac, p + 16, k->key_len);
    memcpy(k->aes, p + 16 + k->key_len, k->key_len);
    return sseal_key(t->seal[t->n_tickets++], p, len);
}

/* The file holds one or more keys of 80 bytes (AES-256, nginx's format: name, HMAC key, AES key)
 * or of 48 bytes (AES-128); the first encrypts new tickets, all decrypt. */
static int load_ticket_keys(struct tls_ctx *t, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "ticket key file %s: %s", path, strerror(errno));
        return -1;
    }
    uint8_t buf[80 * MAX_TICKET_KEYS + 1];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    size_t unit = n % 80 == 0 ? 80 : n % 48 == 0 ? 48 : 0;
    if (n == 0 || unit == 0 || n / unit > MAX_TICKET_KEYS) {
        snprintf(err, errlen, "ticket key file %s: size %zu is not a multiple of 80 or 48 bytes (max %d keys)",
                 path, n, MAX_TICKET_KEYS);
        return -1;
    }
    bool ok = true;
    for (size_t off = 0; off < n; off += unit)
        ok &= add_ticket_key(t, buf + off, unit);
    OPENSSL_cleanse(buf, sizeof(buf));
    if (!ok) {
        snprintf(err, errlen, "ticket key file %s: cannot derive the session store key", path);
        return -1;
    }
    return 0;
}

static int load_server_cert(struct server_cert *sc, const char *cert_path, const char *key_path, char *err,
                            size_t errlen)
{
    BIO *b = BIO_new_file(cert_path, "r");
    if (!b) {
        set_err(err, errlen, "cannot read certificate", cert_path);
        return -1;
    }
    X509 *x;
    while (sc->n < ARRAY_SIZE(sc->chain) && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        uint8_t *der = NULL;
        int len = i2d_X509(x, &der);
        X509_free(x);
        if (len <= 0) {
            BIO_free(b);
            set_err(err, errlen, "bad certificate in", cert_path);
            return -1;
        }
        sc->chain[sc->n++] = CRYPTO_BUFFER_new(der, (size_t)len, NULL);
        OPENSSL_free(der);
    }
    BIO_free(b);
    ERR_clear_error();
    if (sc->n == 0) {
        snprintf(err, errlen, "no certificate found in %s", cert_path);
        return -1;
    }
    b = BIO_new_file(key_path, "r");
    if (!b) {
        set_err(err, errlen, "cannot read key", key_path);
        return -1;
    }
    sc->key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!sc->key) {
        set_err(err, errlen, "bad private key in", key_path);
        return -1;
    }
    sc->ecdsa = EVP_PKEY_id(sc->key) == EVP_PKEY_EC;
    /* refuse a key that does not belong to the certificate now, not at the first handshake */
    X509 *leaf = X509_parse_from_buffer(sc->chain[0]);
    bool match = leaf && X509_check_private_key(leaf, sc->key);
    X509_free(leaf);
    if (!match) {
        set_err(err, errlen, "private key does not match certificate", cert_path);
        return -1;
    }
    return 0;
}

static int load_device_store(struct tls_ctx *t, const struct cfg *c, char *err, size_t errlen)
{
    t->devices = X509_STORE_new();
    if (!t->devices || !X509_STORE_load_locations(t->devices, c->device_ca, NULL)) {
        set_err(err, errlen, "cannot load device CA bundle", c->device_ca);
        return -1;
    }
    uint8_t (*crls)[SHA256_DIGEST_LENGTH] = NULL;
    size_t n = 0;
    if (c->crl) {
        BIO *b = BIO_new_file(c->crl, "r");
        X509_CRL *crl;
        while (b && (crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL)) != NULL) {
            X509_STORE_add_crl(t->devices, crl);
            crls = xrealloc(crls, (n + 1) * SHA256_DIGEST_LENGTH);
            uint8_t *der = NULL;
            int len = i2d_X509_CRL(crl, &der);
            if (len > 0)
                SHA256(der, (size_t)len, crls[n]);
            else
                memset(crls[n], 0, SHA256_DIGEST_LENGTH);
            OPENSSL_free(der);
            X509_CRL_free(crl);
            n++;
        }
        BIO_free(b);
        ERR_clear_error();
        if (n == 0) {
            snprintf(err, errlen, "no CRL found in %s", c->crl);
            return -1;
        }
        X509_STORE_set_flags(t->devices, X509_V_FLAG_CRL_CHECK);
    }
    trust_digest(t, (const uint8_t (*)[SHA256_DIGEST_LENGTH])crls, n);
    free(crls);
    return 0;
}

struct tls_ctx *tls_ctx_new(const struct cfg *c, const uint8_t fallback_ticket_key[80], char *err,
                            size_t errlen)
{
    if (ex_identity < 0) {
        ex_identity = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
        ex_tls_ctx = SSL_get_ex_new_index(0, NULL, NULL, NULL, ssl_ctx_ref_free);
        ex_from_cache = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
        ex_remote = SSL_get_ex_new_index(0, NULL, NULL, NULL, remote_lookup_ex_free);
    }
    if (!ra_init_method()) {
        snprintf(err, errlen, "cannot create the socket BIO method");
        return NULL;
    }
    struct tls_ctx *t = xcalloc(1, sizeof(*t));
    t->refs = 1;
    t->reject_expired = c->expired_certs == CFG_EXPIRED_REJECT;
    for (int i = 0; i < c->n_certs; i++) {
        if (load_server_cert(&t->certs[i], c->certs[i], c->keys[i], err, errlen) != 0)
            goto fail;
        t->n_certs++;
    }
    if (load_device_store(t, c, err, errlen) != 0)
        goto fail;
    if (c->ticket_key_file) {
        if (load_ticket_keys(t, c->ticket_key_file, err, errlen) != 0)
            goto fail;
    } else if (!add_ticket_key(t, fallback_ticket_key, 80)) {
        snprintf(err, errlen, "cannot derive the session store key");
        goto fail;
    }

    t->ctx = SSL_CTX_new(TLS_with_buffers_method());
    if (!t->ctx) {
        set_err(err, errlen, "SSL_CTX_new", NULL);
        goto fail;
    }
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(t->ctx, c->tls13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set1_curves_list(t->ctx, "X25519:P-256:P-384");
    SSL_CTX_set_strict_cipher_list(t->ctx, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                           "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                           "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305");
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Tickets for the clients that take them (shared keys: any worker, any pod). For those that do
     * not (Erlang's ssl in TLS 1.2), session IDs in the master's shared store when there is one:
     * bounded, shared by the workers, never BoringSSL's per-process cache. */
    if (sess_cache) {
        SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
        SSL_CTX_sess_set_new_cb(t->ctx, sess_new_cb);
        SSL_CTX_sess_set_get_cb(t->ctx, sess_get_cb);
        SSL_CTX_sess_set_remove_cb(t->ctx, sess_remove_cb);
    } else {
        SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_OFF);
    }
    SSL_CTX_set_session_id_context(t->ctx, t->trust, sizeof(t->trust));
    SSL_CTX_set_tlsext_ticket_key_cb(t->ctx, ticket_cb);
    SSL_CTX_set_custom_verify(t->ctx, SSL_VERIFY_PEER, verify_device);
    /* resumed sessions are verified again, so identity extraction has one path and a CA removed by
     * a reload cannot be bypassed with an old ticket */
    SSL_CTX_set_reverify_on_resume(t->ctx, 1);
    if (t->n_certs == 1) {
        if (!SSL_CTX_set_chain_and_key(t->ctx, t->certs[0].chain, t->certs[0].n, t->certs[0].key, NULL)) {
            set_err(err, errlen, "cannot use certificate", c->certs[0]);
            goto fail;
        }
    } else {
        SSL_CTX_set_select_certificate_cb(t->ctx, select_cert);
    }
    return t;
fail:
    tls_ctx_free(t);
    return NULL;
}

void tls_ctx_free(struct tls_ctx *t)
{
    if (!t || --t->refs > 0)
        return;
    SSL_CTX_free(t->ctx);
    X509_STORE_free(t->devices);
    for (int i = 0; i < CFG_MAX_CERTS; i++) {
        for (size_t k = 0; k < t->certs[i].n; k++)
            CRYPTO_BUFFER_free(t->certs[i].chain[k]);
        EVP_PKEY_free(t->certs[i].key);
    }
    OPENSSL_cleanse(t->tickets, sizeof(t->tickets));
    OPENSSL_cleanse(t->seal, sizeof(t->seal));
    free(t);
}

SSL *tls_ssl_new(struct tls_ctx *t, int fd, struct tls_identity *id)
{
    SSL *ssl = SSL_new(t->ctx);
    if (!ssl)
        return NULL;
    BIO *b = ra_new(fd);
    if (!b) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_bio(ssl, b, b); /* the SSL owns b; closing fd stays the caller's job */
    if (SSL_set_ex_data(ssl, ex_tls_ctx, t))
        t->refs++;
    SSL_set_ex_data(ssl, ex_identity, id);
    SSL_set_accept_state(ssl);
    /* the handshake configuration (certificates, verify settings) is not needed afterwards */
    SSL_set_shed_handshake_config(ssl, 1);
    return ssl;
}

enum tls_io tls_classify(SSL *ssl, int ret)
{
    if (ret > 0)
        return TLS_IO_OK;
    switch (SSL_get_error(ssl, ret)) {
    case SSL_ERROR_WANT_READ:
        return TLS_IO_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return TLS_IO_WANT_WRITE;
    case SSL_ERROR_PENDING_SESSION:
        return TLS_IO_PENDING_SESSION;
    case SSL_ERROR_ZERO_RETURN:
        return TLS_IO_CLOSED;
    case SSL_ERROR_SYSCALL:
        return ret == 0 ? TLS_IO_CLOSED : TLS_IO_ERROR;
    default:
        return TLS_IO_ERROR;
    }
}

const char *tls_error_reason(bool *peer_caused)
{
    static char buf[128];
    unsigned long e = ERR_peek_last_error();
    *peer_caused = true;
    if (!e) {
        snprintf(buf, sizeof(buf), "%s", errno ? strerror(errno) : "connection closed");
    } else {
        const char *r = ERR_reason_error_string(e);
        snprintf(buf, sizeof(buf), "%s", r ? r : "tls error");
        if (ERR_GET_LIB(e) != ERR_LIB_SSL && ERR_GET_LIB(e) != ERR_LIB_X509)
            *peer_caused = false;
    }
    ERR_clear_error();
    return buf;
}
