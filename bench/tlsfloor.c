/* tlsfloor: the least a BoringSSL mutual-TLS terminator can do, as a peer for bench/peers.sh.
 *
 * It is the reference for "how many full mTLS handshakes per core can anything built on this
 * BoringSSL do on this machine": the same library build, certificates, versions, cipher list and
 * groups as nhgw, BoringSSL's own chain verification (SSL_VERIFY_PEER with an X509_STORE, client
 * certificate required), BoringSSL's default tickets, one level-triggered epoll loop per process,
 * and nothing else: no identity extraction, no HTTP, no timeouts, no limits, no logging. A session
 * is held until the client closes it. Not a server to deploy.
 *
 *   tlsfloor --listen 127.0.0.1:PORT --cert server.pem --key server.key --device-ca cas.pem
 *            [--workers N] [--tls13 on|off]
 *
 * N processes share the port with SO_REUSEPORT (so tls-hold can spread sessions under the
 * descriptor limit); SIGTERM to the parent stops them all. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

struct fconn {
    SSL *ssl;
    int fd;
    bool open;       /* handshake done */
    uint32_t events; /* registered with epoll */
};

static volatile sig_atomic_t stopping;

static void on_term(int sig)
{
    (void)sig;
    stopping = 1;
}

static void die(const char *what)
{
    fprintf(stderr, "tlsfloor: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static SSL_CTX *make_ctx(const char *cert, const char *key, const char *ca, bool tls13)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (!ctx)
        die("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, tls13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set1_curves_list(ctx, "X25519:P-256:P-384");
    /* nhgw's list (gateway/tls.c), so both negotiate the same suite with the same client */
    if (!SSL_CTX_set_strict_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                             "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                             "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"))
        die("cipher list");
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        die("server certificate or key");
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
        die("device CA bundle");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return ctx;
}

static int listen_on(const char *hostport)
{
    char host[64];
    const char *colon = strrchr(hostport, ':');
    if (!colon || (size_t)(colon - hostport) >= sizeof(host))
        die("--listen wants HOST:PORT");
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = 0;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1)) };
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        die("--listen: not an IPv4 address");
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 65535) != 0)
        die("cannot listen");
    return fd;
}

static void drop(int ep, struct fconn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    SSL_free(c->ssl);
    close(c->fd);
    free(c);
}

static void want(int ep, struct fconn *c, uint32_t events)
{
    if (events == c->events)
        return;
    struct epoll_event ev = { .events = events, .data.ptr = c };
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->events = events;
}

/* Drive one connection after readiness: the handshake, then reads until the client closes. */
static void step(int ep, struct fconn *c)
{
    static uint8_t sink[16384];
    for (;;) {
        int r = c->open ? SSL_read(c->ssl, sink, sizeof(sink)) : SSL_do_handshake(c->ssl);
        if (r > 0) {
            c->open = true;
            continue;
        }
        switch (SSL_get_error(c->ssl, r)) {
        case SSL_ERROR_WANT_READ:
            want(ep, c, EPOLLIN);
            return;
        case SSL_ERROR_WANT_WRITE:
            want(ep, c, EPOLLIN | EPOLLOUT);
            return;
        default:
            ERR_clear_error();
            drop(ep, c);
            return;
        }
    }
}

static void serve(int lfd, SSL_CTX *ctx)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) != 0)
        die("epoll");
    struct epoll_event evs[64];
    while (!stopping) {
        int n = epoll_wait(ep, evs, 64, 500);
        for (int i = 0; i < n; i++) {
            struct fconn *c = evs[i].data.ptr;
            if (c) {
                step(ep, c);
                continue;
            }
            int fd;
            while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                c = calloc(1, sizeof(*c));
                SSL *ssl = SSL_new(ctx);
                struct epoll_event ev = { .events = EPOLLIN };
                if (!c || !ssl || !SSL_set_fd(ssl, fd)) {
                    SSL_free(ssl);
                    free(c);
                    close(fd);
                    continue;
                }
                c->ssl = ssl;
                c->fd = fd;
                c->events = EPOLLIN;
                ev.data.ptr = c;
                SSL_set_accept_state(ssl);
                if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
                    SSL_free(ssl);
                    free(c);
                    close(fd);
                }
            }
        }
    }
}

int main(int argc, char **argv)
{
    const char *listen_addr = NULL, *cert = NULL, *key = NULL, *ca = NULL;
    int workers = 1;
    bool tls13 = true;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--listen"))
            listen_addr = argv[i + 1];
        else if (!strcmp(argv[i], "--cert"))
            cert = argv[i + 1];
        else if (!strcmp(argv[i], "--key"))
            key = argv[i + 1];
        else if (!strcmp(argv[i], "--device-ca"))
            ca = argv[i + 1];
        else if (!strcmp(argv[i], "--workers"))
            workers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--tls13"))
            tls13 = strcmp(argv[i + 1], "off") != 0;
        else
            die("usage: tlsfloor --listen HOST:PORT --cert F --key F --device-ca F [--workers N] [--tls13 on|off]");
    }
    if (!listen_addr || !cert || !key || !ca || workers < 1 || workers > 64)
        die("usage: tlsfloor --listen HOST:PORT --cert F --key F --device-ca F [--workers N] [--tls13 on|off]");
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = { .sa_handler = on_term };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    SSL_CTX *ctx = make_ctx(cert, key, ca, tls13);
    pid_t kids[64];
    for (int i = 0; i < workers; i++) {
        pid_t pid = fork();
        if (pid < 0)
            die("fork");
        if (pid == 0) {
            serve(listen_on(listen_addr), ctx);
            _exit(0);
        }
        kids[i] = pid;
    }
    while (!stopping)
        pause();
    for (int i = 0; i < workers; i++)
        kill(kids[i], SIGTERM);
    while (wait(NULL) > 0)
        ;
    return 0;
}
