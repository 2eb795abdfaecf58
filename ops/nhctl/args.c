/* nhctl command-line splitting (nhctl.h). Every option has one kind across all commands, so argv
 * can be split before the command is known; main.c then checks the options against it. */
#include <stdio.h>
#include <string.h>

#include "nhctl.h"

static const struct {
    const char *name;
    enum arg_kind kind;
} KNOWN[] = {
    /* global */
    {"nats", ARG_VALUE},
    {"prefix", ARG_VALUE},
    {"timeout", ARG_VALUE},
    {"json", ARG_BOOL},
    {"help", ARG_BOOL},
    /* commands */
    {"online", ARG_BOOL},
    {"fingerprint", ARG_VALUE},
    {"tag", ARG_LIST},
    {"name", ARG_VALUE},
    {"firmware-uuid", ARG_VALUE},
    {"version", ARG_VALUE},
    {"url", ARG_VALUE},
    {"size", ARG_VALUE},
    {"checksum", ARG_VALUE},
    {"partial-checksum", ARG_LIST},
    {"architecture", ARG_VALUE},
    {"platform", ARG_VALUE},
    {"product", ARG_VALUE},
    {"author", ARG_VALUE},
    {"description", ARG_VALUE},
    {"misc", ARG_VALUE},
    {"vcs-identifier", ARG_VALUE},
    {"version-requirement", ARG_VALUE},
    {"count", ARG_VALUE},
    {"key", ARG_VALUE},
    {"secret", ARG_VALUE},
    {"identifier", ARG_VALUE},
    {"time", ARG_VALUE},
};

int args_kind(const char *name)
{
    for (size_t i = 0; i < sizeof(KNOWN) / sizeof(KNOWN[0]); i++)
        if (strcmp(KNOWN[i].name, name) == 0)
            return (int)KNOWN[i].kind;
    return -1;
}

int args_parse(int argc, char **argv, struct args *a)
{
    static char names[NHCTL_MAX_ARGS][64];
    memset(a, 0, sizeof(*a));
    bool opts_done = false;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (opts_done || s[0] != '-' || strcmp(s, "-") == 0) {
            if (a->n_pos == NHCTL_MAX_ARGS)
                return nhctl_usage(NULL, "too many arguments"), -1;
            a->pos[a->n_pos++] = s;
            continue;
        }
        if (strcmp(s, "--") == 0) {
            opts_done = true;
            continue;
        }
        const char *name, *value = NULL;
        size_t nlen;
        if (strcmp(s, "-h") == 0) {
            name = "help";
            nlen = 4;
        } else if (s[1] == '-') {
            name = s + 2;
            const char *eq = strchr(name, '=');
            nlen = eq ? (size_t)(eq - name) : strlen(name);
            if (eq)
                value = eq + 1;
        } else {
            return nhctl_usage(NULL, "unknown option %s", s), -1;
        }
        if (nlen == 0 || nlen >= sizeof(names[0]))
            return nhctl_usage(NULL, "unknown option %s", s), -1;
        if (a->n_opt == NHCTL_MAX_ARGS)
            return nhctl_usage(NULL, "too many options"), -1;
        char *nm = names[a->n_opt];
        memcpy(nm, name, nlen);
        nm[nlen] = '\0';
        int kind = args_kind(nm);
        if (kind < 0)
            return nhctl_usage(NULL, "unknown option --%s", nm), -1;
        if (kind == ARG_BOOL) {
            if (value)
                return nhctl_usage(NULL, "--%s takes no value", nm), -1;
        } else if (!value) {
            if (i + 1 >= argc)
                return nhctl_usage(NULL, "--%s needs a value", nm), -1;
            value = argv[++i];
        }
        if (kind == ARG_VALUE && args_has(a, nm))
            return nhctl_usage(NULL, "--%s given twice", nm), -1;
        a->opt[a->n_opt].name = nm;
        a->opt[a->n_opt].value = value;
        a->n_opt++;
    }
    return 0;
}

bool args_has(const struct args *a, const char *name)
{
    return args_nth(a, name, 0) != NULL;
}

const char *args_get(const struct args *a, const char *name)
{
    return args_nth(a, name, 0);
}

const char *args_nth(const struct args *a, const char *name, size_t i)
{
    for (size_t k = 0; k < a->n_opt; k++)
        if (strcmp(a->opt[k].name, name) == 0 && i-- == 0)
            return a->opt[k].value ? a->opt[k].value : "";
    return NULL;
}

size_t args_count(const struct args *a, const char *name)
{
    size_t n = 0;
    for (size_t k = 0; k < a->n_opt; k++)
        n += strcmp(a->opt[k].name, name) == 0;
    return n;
}
