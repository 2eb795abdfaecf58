/* nhctl output helpers (nhctl.h): aligned tables and key/value lists of terminal-safe text. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nhctl.h"

/* Control characters (C0, DEL) become '?'. UTF-8 passes through; C1 controls (U+0080–U+009F,
 * encoded C2 80–C2 9F) are replaced too, since some terminals act on them. */
static void safe_into(char *dst, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        if (*p < 0x20 || *p == 0x7f) {
            *dst++ = '?';
            p++;
        } else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            *dst++ = '?';
            p += 2;
        } else {
            *dst++ = (char)*p++;
        }
    }
    *dst = '\0';
}

static char *safe_dup(const char *s)
{
    char *d = malloc(strlen(s) + 1);
    if (!d) {
        fputs("nhctl: out of memory\n", stderr);
        exit(NHCTL_ERROR);
    }
    safe_into(d, s);
    return d;
}

void out_safe(FILE *f, const char *s)
{
    char *d = safe_dup(s);
    fputs(d, f);
    free(d);
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d) {
        fputs("nhctl: out of memory\n", stderr);
        exit(NHCTL_ERROR);
    }
    return d;
}

char *render_value(const json_t *v)
{
    if (!v || json_is_null(v))
        return xstrdup("-");
    if (json_is_true(v))
        return xstrdup("yes");
    if (json_is_false(v))
        return xstrdup("no");
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    if (json_is_array(v)) {
        size_t i, len = 0;
        const json_t *e;
        bool strings = true;
        json_array_foreach(v, i, e)
        {
            if (!json_is_string(e))
                strings = false;
            else
                len += json_string_length(e) + 1;
        }
        if (json_array_size(v) == 0)
            return xstrdup("-");
        if (strings) {
            char *out = malloc(len + 1), *p = out;
            if (!out)
                return xstrdup("?");
            json_array_foreach(v, i, e)
            {
                if (i)
                    *p++ = ',';
                size_t n = json_string_length(e);
                memcpy(p, json_string_value(e), n);
                p += n;
            }
            *p = '\0';
            return out;
        }
    }
    char *d = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    return d ? d : xstrdup("?");
}

const char *render_ms(int64_t ms, char *buf, size_t cap)
{
    time_t s = (time_t)(ms / 1000);
    int frac = (int)(ms % 1000);
    if (frac < 0) {
        frac += 1000;
        s--;
    }
    struct tm tm;
    if (!gmtime_r(&s, &tm)) {
        snprintf(buf, cap, "%lld", (long long)ms);
        return buf;
    }
    char day[40];
    strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, cap, "%s.%03dZ", day, frac);
    return buf;
}

/* Display width: UTF-8 code points (no wide-character tables; good enough for ids and tags). */
static size_t width(const char *s)
{
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        w += (*p & 0xc0) != 0x80;
    return w;
}

struct table {
    size_t ncols, nrows, cap;
    char **cells; /* row-major; row 0 is the header */
};

struct table *table_new(const char *const *headers, size_t ncols)
{
    struct table *t = calloc(1, sizeof(*t));
    if (!t) {
        fputs("nhctl: out of memory\n", stderr);
        exit(NHCTL_ERROR);
    }
    t->ncols = ncols;
    table_add(t, headers);
    return t;
}

void table_add(struct table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **n = realloc(t->cells, cap * t->ncols * sizeof(char *));
        if (!n) {
            fputs("nhctl: out of memory\n", stderr);
            exit(NHCTL_ERROR);
        }
        t->cells = n;
        t->cap = cap;
    }
    for (size_t c = 0; c < t->ncols; c++)
        t->cells[t->nrows * t->ncols + c] = safe_dup(cells[c] && *cells[c] ? cells[c] : "-");
    t->nrows++;
}

void table_print(struct table *t, FILE *f)
{
    size_t *w = calloc(t->ncols, sizeof(size_t));
    if (!w)
        exit(NHCTL_ERROR);
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t cw = width(t->cells[r * t->ncols + c]);
            if (cw > w[c])
                w[c] = cw;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            fputs(s, f);
            if (c + 1 < t->ncols)
                fprintf(f, "%*s", (int)(w[c] - width(s) + 2), "");
        }
        fputs("\n", f);
    }
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t);
    free(w);
}

void kv_print(FILE *f, const char *const *keys, const char *const *values, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (width(keys[i]) > w)
            w = width(keys[i]);
    for (size_t i = 0; i < n; i++) {
        out_safe(f, keys[i]);
        fprintf(f, ":%*s", (int)(w - width(keys[i]) + 2), "");
        out_safe(f, values[i] && *values[i] ? values[i] : "-");
        fputs("\n", f);
    }
}
