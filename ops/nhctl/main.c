/* nhctl entry point: global options, command lookup, help (nhctl.h). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "lp.h"
#include "nhctl.h"

#define DEFAULT_NATS "nats://127.0.0.1:4222"
#define DEFAULT_TIMEOUT "5s"

static const char *const GLOBAL[] = {"nats", "prefix", "timeout", "json", "help"};

void nhctl_err(const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fputs("nhctl: ", stderr);
    out_safe(stderr, buf);
    fputs("\n", stderr);
}

int nhctl_usage(const char *cmd, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fprintf(stderr, "nhctl%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    out_safe(stderr, buf);
    fprintf(stderr, "\n(see nhctl %s%s--help)\n", cmd ? cmd : "", cmd ? " " : "");
    return NHCTL_USAGE;
}

static void print_usage(FILE *f)
{
    fputs("nhctl — operate an nhgw fleet through the platform (NATS request/reply, JSON).\n\n"
          "usage: nhctl [global options] <command> [arguments]\n\ncommands:\n",
          f);
    for (size_t i = 0; i < nhctl_n_cmds; i++)
        fprintf(f, "  %s%s%s\n", nhctl_cmds[i].name, *nhctl_cmds[i].usage ? " " : "", nhctl_cmds[i].usage);
    fputs("\nglobal options (anywhere on the line):\n"
          "  --nats URL      NATS server (default: $NHCTL_NATS, else " DEFAULT_NATS ")\n"
          "  --prefix P      subject prefix of the fleet (default: nh)\n"
          "  --timeout D     how long to wait for the platform, e.g. 5s, 500ms (default: 5s)\n"
          "  --json          print the platform's JSON replies as received\n"
          "  -h, --help      this help; `nhctl <command> --help` for one command\n\n"
          "exit codes: 0 ok, 1 the platform answered with an error, 2 usage error,\n"
          "            3 NATS unreachable or no platform answered\n",
          f);
}

static void print_cmd_help(const struct cmd *c)
{
    printf("usage: nhctl %s%s%s\n\n%s", c->name, *c->usage ? " " : "", c->usage, c->help);
    printf("\nglobal options: --nats URL, --prefix P, --timeout D, --json (see nhctl --help)\n");
}

/* The command named by the leading positionals (two-word names first); *words = how many. */
static const struct cmd *find_cmd(const struct args *a, size_t *words)
{
    for (size_t i = 0; i < nhctl_n_cmds; i++) {
        const char *name = nhctl_cmds[i].name, *sp = strchr(name, ' ');
        if (sp) {
            size_t l = (size_t)(sp - name);
            if (a->n_pos >= 2 && strlen(a->pos[0]) == l && strncmp(a->pos[0], name, l) == 0 &&
                strcmp(a->pos[1], sp + 1) == 0) {
                *words = 2;
                return &nhctl_cmds[i];
            }
        } else if (a->n_pos >= 1 && strcmp(a->pos[0], name) == 0) {
            *words = 1;
            return &nhctl_cmds[i];
        }
    }
    return NULL;
}

static bool allowed(const struct cmd *c, const char *opt)
{
    for (size_t i = 0; i < sizeof(GLOBAL) / sizeof(GLOBAL[0]); i++)
        if (strcmp(GLOBAL[i], opt) == 0)
            return true;
    for (const char *const *f = c->flags; *f; f++)
        if (strcmp(*f, opt) == 0)
            return true;
    return false;
}

int main(int argc, char **argv)
{
    static struct args a;
    if (args_parse(argc, argv, &a))
        return NHCTL_USAGE;
    bool help = args_has(&a, "help");
    /* "nhctl help [command...]" is "nhctl [command...] --help" */
    if (a.n_pos && strcmp(a.pos[0], "help") == 0) {
        help = true;
        memmove(a.pos, a.pos + 1, (a.n_pos - 1) * sizeof(a.pos[0]));
        a.n_pos--;
    }
    if (a.n_pos == 0) {
        print_usage(help ? stdout : stderr);
        return help ? NHCTL_OK : NHCTL_USAGE;
    }
    size_t words = 0;
    const struct cmd *cmd = find_cmd(&a, &words);
    if (!cmd) {
        char name[256];
        snprintf(name, sizeof(name), "%s%s%s", a.pos[0], a.n_pos > 1 ? " " : "", a.n_pos > 1 ? a.pos[1] : "");
        nhctl_err("unknown command \"%s\" (see nhctl --help)", name);
        return NHCTL_USAGE;
    }
    if (help) {
        print_cmd_help(cmd);
        return NHCTL_OK;
    }
    for (size_t i = 0; i < a.n_opt; i++)
        if (!allowed(cmd, a.opt[i].name))
            return nhctl_usage(cmd->name, "unknown option --%s for this command", a.opt[i].name);
    size_t npos = a.n_pos - words;
    if (npos < cmd->min_pos)
        return nhctl_usage(cmd->name, "missing argument (usage: nhctl %s %s)", cmd->name, cmd->usage);
    if (npos > cmd->max_pos)
        return nhctl_usage(cmd->name, "unexpected argument \"%s\"", a.pos[words + cmd->max_pos]);
    const char *pos[4] = {NULL, NULL, NULL, NULL};
    for (size_t i = 0; i < npos; i++) {
        pos[i] = a.pos[words + i];
        if (!*pos[i])
            return nhctl_usage(cmd->name, "empty argument");
    }

    struct ctx c = {0};
    c.nats_url = args_get(&a, "nats");
    if (!c.nats_url)
        c.nats_url = getenv("NHCTL_NATS");
    if (!c.nats_url || !*c.nats_url)
        c.nats_url = DEFAULT_NATS;
    c.prefix = args_get(&a, "prefix");
    if (!c.prefix)
        c.prefix = "nh";
    if (!lp_valid_prefix(lp_cspan(c.prefix)))
        return nhctl_usage(cmd->name, "--prefix must be 1-32 of [A-Za-z0-9_-], not \"%s\"", c.prefix);
    c.timeout_text = args_get(&a, "timeout");
    if (!c.timeout_text)
        c.timeout_text = DEFAULT_TIMEOUT;
    c.timeout_ms = parse_duration(c.timeout_text);
    if (c.timeout_ms < 0)
        return nhctl_usage(cmd->name, "--timeout must be a duration such as 5s or 500ms, not \"%s\"",
                           c.timeout_text);
    c.json = args_has(&a, "json");

    /* Commands connect on first use, after validating their own arguments. */
    int rc = cmd->run(&c, &a, pos);
    rpc_close(&c);
    nats_Close();
    fflush(stdout);
    return rc;
}
