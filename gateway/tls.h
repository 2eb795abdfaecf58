/* BoringSSL server context for the device port: certificates (ECDSA and/or RSA, chosen per
 * ClientHello), optional client certificates verified against the device CA bundle, identity
 * extraction into a plain struct, resumption (shared session-ticket keys; session IDs in the
 * shared store of sesscache.h), and error classification.
 * It does no socket I/O of its own beyond what SSL_* does on the descriptor. */
#ifndef NHGW_TLS_H
#define NHGW_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tlsredis.h"

struct cfg;
struct scache;
typedef struct ssl_st SSL;

/* What the gateway keeps of a client certificate: never the certificate itself past auth. */
struct tls_identity {
    bool has_cert;
    bool expired;           /* the leaf's notAfter has passed (accepted by policy) */
    uint8_t fingerprint[20];/* SHA-1 of the leaf DER */
    char cn[65];            /* subject CN (truncated at 64 bytes), "" if none */
    char serial[41];        /* serial number, uppercase hex, truncated */
    char aki[41];           /* authority key id, uppercase hex, "" if none */
    int64_t not_after;      /* unix seconds */
    uint8_t *der;           /* leaf DER, owned, freed by tls_identity_clear once auth is done */
    size_t der_len;
};

void tls_identity_clear(struct tls_identity *id);

struct tls_ctx;

/* Build a context from the config. Loads and validates every file; on failure returns NULL with
 * a message in err (nothing is half-applied, which is what reload relies on). `ticket_key` is the
 * fallback ticket key material (80 bytes) used when no --ticket-key-file is configured; the master
 * generates it once so all its workers share it. */
struct tls_ctx *tls_ctx_new(const struct cfg *c, const uint8_t fallback_ticket_key[80], char *err,
                            size_t errlen);
/* Serialised TLS sessions up to this size fit a slot of the shared session store. A session is
 * about 160 bytes plus the device's chain: 600 bytes with one ECDSA P-256 certificate, 1.1 KB with
 * its signer CA too, about 2 KB for two RSA-2048 certificates. Larger sessions are not cached
 * (their devices get full handshakes, counted). */
#define TLS_SESSION_MAX_BYTES 3008

/* Resume TLS 1.2 sessions by session ID from this shared store (sesscache.h) in every context
 * made from now on; NULL (the default) leaves session IDs off. The master calls it before it
 * forks, so all workers use the same store. */
void tls_set_session_cache(struct scache *c);

/* Also store new TLS 1.2 sessions in, and look missing ones up in, this cross-pod store
 * (tlsredis.h, --session-store redis), sealed with a key derived from the first ticket key and
 * opened with any loaded one. Per process (a worker sets its own); effective only with the
 * shared store on. NULL (the default) turns it off. */
void tls_set_session_store(struct tlsr *r);

/* Drops the creator's reference. Every SSL made by tls_ssl_new holds one until SSL_free, so a
 * context replaced by a reload may be released at once: it lives while a connection uses it. */
void tls_ctx_free(struct tls_ctx *t);

/* A server SSL on fd. The identity slot is borrowed until the SSL is freed: the verification
 * callback fills it during the handshake (also on resumption). NULL on allocation failure. */
SSL *tls_ssl_new(struct tls_ctx *t, int fd, struct tls_identity *id);

/* Call once the handshake is complete: a resumed session's stored chain (from a ticket or the
 * shared store) is verified again against the current CA bundle and its identity filled in. Returns 0, or -1 to refuse the connection.
 * It also ends the handshake's read-ahead (see tls_read_pending). */
int tls_after_handshake(SSL *ssl);

/* During the handshake the SSL's socket reads ahead (one read(2) per client flight instead of two
 * per record), so bytes can sit in user space while the socket is not readable: data a client sent
 * right behind its Finished may still be there after tls_after_handshake. An SSL call that ends in
 * TLS_IO_WANT_READ has consumed all of them; a caller that stops reading for another reason and
 * then waits for readiness must check this first (it includes SSL_pending). */
bool tls_read_pending(SSL *ssl);

/* Outcome of an SSL_* call, collapsing the details callers do not care about (wrk's style). */
enum tls_io { TLS_IO_OK, TLS_IO_WANT_READ, TLS_IO_WANT_WRITE, TLS_IO_CLOSED, TLS_IO_ERROR,
              TLS_IO_PENDING_SESSION };
enum tls_io tls_classify(SSL *ssl, int ret);

/* TLS_IO_PENDING_SESSION: the handshake stopped because the client's session ID was not in this
 * node's store and the cross-pod store is on. tls_fetch_session asks it; cb (a tlsr_cb, see
 * tlsredis.h) gets the answer later and, unless the SSL was freed meanwhile, hands it to
 * tls_session_fetched before driving the handshake again. When tls_fetch_session returns false
 * nothing was asked (cb is not called): the handshake goes on at once without a session. The
 * socket must not be read in between (the client's flight waits in the kernel). */
bool tls_fetch_session(SSL *ssl, tlsr_cb cb, void *arg);
void tls_session_fetched(SSL *ssl, enum tlsr_result r, const uint8_t *val, size_t len);

/* After an error, a short reason for logs ("certificate verify failed", "unknown ca", ...); and
 * whether the peer caused it (bad handshake, reset) rather than us. Clears the error queue. */
const char *tls_error_reason(bool *peer_caused);

/* Counters kept by this module, per process (all resumptions: worker_stats.resumed). */
struct tls_stats {
    uint64_t verify_ok, verify_failed, expired_accepted, expired_rejected;
    uint64_t resumed_id;          /* resumptions by session ID from the shared store, accepted */
    uint64_t resumed_ticket;      /* resumptions by session ticket, accepted */
    /* new TLS 1.2 sessions not stored: not serialisable, or refused by the store (too large,
     * already expired) */
    uint64_t sessions_not_cached;
    /* values from the cross-pod store that did not open (another key, tampered) or decode */
    uint64_t remote_rejected;
};
extern struct tls_stats tls_stats;

#endif
