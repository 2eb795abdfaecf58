/* Redis connections per thread (store.h). */
#include "store.h"

#include <openssl/sha.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "plog.h"

static char store_host[256] = "127.0.0.1";
static int store_port = 6379;
static int store_timeout_ms = 2000;

static _Thread_local redisContext *rc;
static _Thread_local int64_t last_fail_log;

/* Thread exit (NATS delivery threads end when their subscription is destroyed): close the
 * thread's connection and run the owner's cleanup of other thread-local state. */
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static void (*exit_hook)(void);

static void on_thread_exit(void *arg)
{
    (void)arg;
    if (exit_hook)
        exit_hook();
    if (rc)
        redisFree(rc);
    rc = NULL;
}

static void make_key(void)
{
    pthread_key_create(&exit_key, on_thread_exit);
}

void store_on_thread_exit(void (*fn)(void))
{
    exit_hook = fn;
}

void store_config(const char *host, int port, int timeout_ms)
{
    snprintf(store_host, sizeof(store_host), "%s", host);
    store_port = port;
    store_timeout_ms = timeout_ms;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void drop(const char *why)
{
    int64_t now = mono_ms();
    if (now - last_fail_log > 5000) {
        last_fail_log = now;
        plog(PLOG_WARN, "redis_error", "addr=%s:%d error=\"%s\"", store_host, store_port,
             rc && rc->errstr[0] ? rc->errstr : why);
    }
    if (rc)
        redisFree(rc);
    rc = NULL;
}

/* A connection idle for this long is checked with PING before use: a Redis restart leaves it
 * dead without hiredis knowing, and the caller's command (or pipeline) would fail once. */
#define IDLE_CHECK_MS 1000

static _Thread_local int64_t last_used;

static redisContext *conn(void)
{
    int64_t now = mono_ms();
    if (rc && now - last_used > IDLE_CHECK_MS) {
        redisReply *r = redisCommand(rc, "PING");
        if (!r)
            drop("connection lost");
        freeReplyObject(r);
    }
    last_used = now;
    if (rc)
        return rc;
    pthread_once(&exit_once, make_key);
    pthread_setspecific(exit_key, (void *)1);
    struct timeval tv = {store_timeout_ms / 1000, (store_timeout_ms % 1000) * 1000};
    rc = redisConnectWithTimeout(store_host, store_port, tv);
    if (!rc || rc->err) {
        drop("connect failed");
        return NULL;
    }
    redisSetTimeout(rc, tv);
    plog(PLOG_DEBUG, "redis_connected", "addr=%s:%d", store_host, store_port);
    return rc;
}

static redisReply *checked(void *r)
{
    if (!r)
        drop("command failed");
    return r;
}

/* A connection that fails on its first command after a Redis restart (EOF, reset) is replaced
 * and the command sent once more: it never reached the old server. */
static bool retryable(void)
{
    return rc && (rc->err == REDIS_ERR_EOF || rc->err == REDIS_ERR_IO);
}

redisReply *store_cmd(const char *fmt, ...)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!conn())
            return NULL;
        va_list ap;
        va_start(ap, fmt);
        void *r = redisvCommand(rc, fmt, ap);
        va_end(ap);
        if (r || attempt == 1 || !retryable())
            return checked(r);
        drop("connection lost");
    }
    return NULL;
}

redisReply *store_argv(int argc, const char **argv, const size_t *lens)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!conn())
            return NULL;
        void *r = redisCommandArgv(rc, argc, argv, lens);
        if (r || attempt == 1 || !retryable())
            return checked(r);
        drop("connection lost");
    }
    return NULL;
}

void store_script_init(struct store_script *s, const char *text)
{
    uint8_t d[SHA_DIGEST_LENGTH];
    SHA1((const uint8_t *)text, strlen(text), d);
    s->text = text;
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(s->sha + 2 * i, 3, "%02x", d[i]);
}

#define EVAL_MAX_ARGS 24

redisReply *store_eval(struct store_script *s, int nkeys, int nargs, const char **args, const size_t *lens)
{
    if (nargs > EVAL_MAX_ARGS)
        return NULL;
    const char *argv[EVAL_MAX_ARGS + 3];
    size_t alen[EVAL_MAX_ARGS + 3];
    char nk[16];
    snprintf(nk, sizeof(nk), "%d", nkeys);
    argv[0] = "EVALSHA";
    alen[0] = 7;
    argv[1] = s->sha;
    alen[1] = 40;
    argv[2] = nk;
    alen[2] = strlen(nk);
    for (int i = 0; i < nargs; i++) {
        argv[3 + i] = args[i];
        alen[3 + i] = lens ? lens[i] : strlen(args[i]);
    }
    redisReply *r = store_argv(nargs + 3, argv, alen);
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r);
        argv[0] = "EVAL";
        alen[0] = 4;
        argv[1] = s->text;
        alen[1] = strlen(s->text);
        r = store_argv(nargs + 3, argv, alen);
    }
    if (r && r->type == REDIS_REPLY_ERROR)
        plog(PLOG_WARN, "redis_script_error", "error=\"%s\"", r->str);
    return r;
}

int store_append(const char *fmt, ...)
{
    if (!conn())
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int r = redisvAppendCommand(rc, fmt, ap);
    va_end(ap);
    return r == REDIS_OK ? 0 : -1;
}

int store_append_argv(int argc, const char **argv, const size_t *lens)
{
    if (!conn())
        return -1;
    return redisAppendCommandArgv(rc, argc, argv, lens) == REDIS_OK ? 0 : -1;
}

redisReply *store_reply(void)
{
    if (!rc)
        return NULL;
    void *r = NULL;
    if (redisGetReply(rc, &r) != REDIS_OK)
        r = NULL;
    return checked(r);
}

const char *store_str(const redisReply *r, size_t i)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || i >= r->elements)
        return NULL;
    const redisReply *e = r->element[i];
    return e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS ? e->str : NULL;
}

bool store_ok(const redisReply *r)
{
    return r && r->type != REDIS_REPLY_ERROR;
}

void store_thread_done(void)
{
    on_thread_exit(NULL);
}
