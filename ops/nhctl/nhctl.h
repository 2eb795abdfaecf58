/* nhctl: the operator CLI. Talks to the platform over NATS request/reply with JSON bodies
 * (api.md / ops/README.md: `<prefix>.api.<verb>`), and watches `<prefix>.events.*`.
 *
 * Modules: args.c (argv → options and positionals, checked against each command's flags),
 * rpc.c (NATS: connect, one request, event watching; maps failures to exit codes),
 * render.c (tables, key/value lists, terminal-safe text), cmds.c (the commands), main.c
 * (dispatch and help). */
#ifndef NHCTL_H
#define NHCTL_H

#include <jansson.h>
#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes (api.md). */
enum {
    NHCTL_OK = 0,
    NHCTL_ERROR = 1,       /* the platform answered {"error": ...} (or an unusable reply) */
    NHCTL_USAGE = 2,       /* bad command line */
    NHCTL_UNREACHABLE = 3, /* NATS not reachable, or no platform answered in time */
};

#define NHCTL_MAX_ARGS 256

/* ---- args.c ---- */

enum arg_kind { ARG_BOOL, ARG_VALUE, ARG_LIST };

struct arg_opt {
    const char *name; /* without the leading "--" */
    const char *value;
};

struct args {
    const char *pos[NHCTL_MAX_ARGS];
    size_t n_pos;
    struct arg_opt opt[NHCTL_MAX_ARGS];
    size_t n_opt;
};

/* Splits argv into options and positionals ("--name value", "--name=value", "-h", "--" ends
 * options). Every option name must be known (args_kind). Returns 0, or prints a usage error and
 * returns -1. */
int args_parse(int argc, char **argv, struct args *a);
/* The kind of a known option name; -1 when unknown. */
int args_kind(const char *name);
bool args_has(const struct args *a, const char *name);
/* The value of a single-valued option, or NULL. */
const char *args_get(const struct args *a, const char *name);
/* The i-th value of a (list) option, or NULL past the end. */
const char *args_nth(const struct args *a, const char *name, size_t i);
size_t args_count(const struct args *a, const char *name);

/* ---- rpc.c ---- */

struct ctx {
    const char *nats_url;
    const char *prefix;
    int64_t timeout_ms;
    bool json;
    const char *timeout_text; /* as given, for messages ("5s") */
    natsConnection *nc;
};

/* Connects (once) to ctx->nats_url; on failure prints "cannot reach NATS at URL" and returns
 * NHCTL_UNREACHABLE. `reconnect` keeps a long-lived watcher connected across server restarts. */
int rpc_connect(struct ctx *c, bool reconnect);
/* Connects if needed (so commands validate their arguments first), sends `body` to
 * <prefix>.api.<verb> and waits for the reply; *reply is the parsed JSON object.
 * Returns NHCTL_OK; NHCTL_UNREACHABLE (message printed) on timeout/no responders/connection
 * loss; NHCTL_ERROR (message printed) when the reply is an {"error"} object or not a JSON
 * object. With --json the raw reply is printed to stdout (errors too). Steals `body`. */
int rpc_call(struct ctx *c, const char *verb, json_t *body, json_t **reply);
/* Prints events on `subject` until `count` (0: unlimited) have arrived or `watch_ms` (0:
 * forever) elapsed; one line each, via `print`. */
int rpc_watch(struct ctx *c, const char *subject, uint64_t count, int64_t watch_ms, const char *watch_text,
              void (*print)(const struct ctx *c, const char *data, size_t n));
/* "5", "5s", "2.5s", "500ms", "1m" → milliseconds (1 ms … 1 day); -1 when invalid. */
int64_t parse_duration(const char *s);
void rpc_close(struct ctx *c);

/* ---- render.c ---- */

/* Prints `s` to `f` with control characters replaced by '?': platform and device strings must
 * not be able to drive the operator's terminal. */
void out_safe(FILE *f, const char *s);
/* A JSON value as text for a table cell or list (null → "-", bools yes/no, string arrays
 * comma-joined, other containers compact JSON). Caller frees. */
char *render_value(const json_t *v);
/* Milliseconds since the epoch → "2026-01-01T00:00:00.000Z"; writes into buf. */
const char *render_ms(int64_t ms, char *buf, size_t cap);

struct table;
struct table *table_new(const char *const *headers, size_t ncols);
/* Adds a row of ncols cells (copied; NULL → "-"). */
void table_add(struct table *t, const char *const *cells);
/* Prints the table with columns aligned (display width counts UTF-8 code points) and frees it. */
void table_print(struct table *t, FILE *f);

/* "key:  value" lines, keys aligned. */
void kv_print(FILE *f, const char *const *keys, const char *const *values, size_t n);

/* ---- cmds.c ---- */

struct cmd {
    const char *name;         /* "devices", "device show", ... */
    const char *usage;        /* argument synopsis after the name */
    const char *help;         /* what it does, flags */
    const char *const *flags; /* allowed command-specific options (NULL-terminated) */
    unsigned min_pos, max_pos;
    int (*run)(struct ctx *c, const struct args *a, const char *const *pos);
};

/* ---- console.c (console and local-shell) ---- */

/* `nhctl console <device>`: the interactive remote console (proto/LINK.md §9). */
int cmd_console(struct ctx *c, const struct args *a, const char *const *pos);
/* `nhctl local-shell <device>`: the interactive local shell (the `local_shell` extension,
 * proto/LINK.md §9.1, ops/README.md). */
int cmd_local_shell(struct ctx *c, const struct args *a, const char *const *pos);

extern const struct cmd nhctl_cmds[];
extern const size_t nhctl_n_cmds;

/* Prints "nhctl: <msg>" to stderr. */
void nhctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A usage error: message plus a pointer to help; returns NHCTL_USAGE. */
int nhctl_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
