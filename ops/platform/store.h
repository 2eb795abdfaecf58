/* store: the platform's Redis access. Each thread owns one synchronous hiredis connection
 * (thread-local), opened on first use and reopened on the next command after any failure, so
 * the platform rides out a Redis restart without a supervisor. A command that fails (Redis
 * down, timeout) returns NULL: the caller answers its request with an error. */
#ifndef NHPF_STORE_H
#define NHPF_STORE_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

void store_config(const char *host, int port, int timeout_ms);

/* `fn` runs when a thread that used the store exits (before its connection is closed), to free
 * the caller's own thread-local state. */
void store_on_thread_exit(void (*fn)(void));
/* The calling thread's connection is closed (for the main thread at exit). */
void store_thread_done(void);

/* A Lua script run with EVALSHA (EVAL on NOSCRIPT, which loads it). */
struct store_script {
    const char *text;
    char sha[41];
};
void store_script_init(struct store_script *s, const char *text);

/* One command; a reply (REDIS_REPLY_ERROR included) the caller frees, or NULL on a connection
 * failure (logged, rate-limited). */
redisReply *store_cmd(const char *fmt, ...);
redisReply *store_argv(int argc, const char **argv, const size_t *lens);
redisReply *store_eval(struct store_script *s, int nkeys, int nargs, const char **args,
                       const size_t *lens);

/* Pipelining: append commands, then read as many replies. store_append returns -1 when not
 * connected; store_reply returns NULL on failure (the connection is dropped: every reply still
 * pending is lost, so callers abandon the batch). */
int store_append(const char *fmt, ...);
int store_append_argv(int argc, const char **argv, const size_t *lens);
redisReply *store_reply(void);

/* Reply helpers: a string element (NULL when nil or not a string). */
const char *store_str(const redisReply *r, size_t i);
bool store_ok(const redisReply *r); /* not NULL and not an error */

#endif
