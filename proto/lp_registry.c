/* The registry's Redis contract: script table, name checks and key builders (lp_registry.h). */
#include "lp_registry.h"

#include <string.h>

static const char *const script_text[LPR_SCRIPT_COUNT] = {
    [LPR_CLAIM] = LPR_SCRIPT_CLAIM,
    [LPR_RELEASE] = LPR_SCRIPT_RELEASE,
    [LPR_RESYNC] = LPR_SCRIPT_RESYNC,
    [LPR_SETFW] = LPR_SCRIPT_SETFW,
    [LPR_REAP] = LPR_SCRIPT_REAP,
};

static const char *const script_name[LPR_SCRIPT_COUNT] = {
    [LPR_CLAIM] = "claim",
    [LPR_RELEASE] = "release",
    [LPR_RESYNC] = "resync",
    [LPR_SETFW] = "setfw",
    [LPR_REAP] = "reap",
};

const char *lpr_script_text(enum lpr_script s)
{
    return (unsigned)s < LPR_SCRIPT_COUNT ? script_text[s] : NULL;
}

const char *lpr_script_name(enum lpr_script s)
{
    return (unsigned)s < LPR_SCRIPT_COUNT ? script_name[s] : NULL;
}

static bool id_chars(const char *p, size_t n, size_t max)
{
    if (!p || n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

bool lpr_prefix_valid(const char *p, size_t n)
{
    return id_chars(p, n, LPR_MAX_PREFIX);
}

bool lpr_gw_valid(const char *p, size_t n)
{
    return id_chars(p, n, LPR_MAX_GW);
}

/* Length of the UTF-8 sequence at s (at most `left` bytes), 0 when malformed: overlong forms,
 * surrogates and code points above U+10FFFF are rejected (RFC 3629 §4). */
static size_t utf8_len(const unsigned char *s, size_t left)
{
    unsigned char c = s[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    if (n > left)
        return 0;
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

bool lpr_dev_valid(const char *p, size_t n)
{
    if (!p || n == 0 || n > LPR_MAX_DEV)
        return false;
    const unsigned char *s = (const unsigned char *)p;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c < 0x80) {
            /* NATS subject wildcards and separators, whitespace and control characters */
            if (c <= 0x20 || c == 0x7F || c == '.' || c == '*' || c == '>')
                return false;
            i++;
            continue;
        }
        size_t k = utf8_len(s + i, n - i);
        if (k == 0)
            return false;
        /* U+0085 and U+00A0 are whitespace too (NEL, NBSP) */
        if (k == 2 && c == 0xC2 && (s[i + 1] == 0x85 || s[i + 1] == 0xA0))
            return false;
        i += k;
    }
    return true;
}

/* Joins up to four parts into out; 0 (and an empty out) when they do not fit with the NUL. */
static size_t join(char *out, size_t cap, const char *a, size_t an, const char *b, size_t bn,
                   const char *c, size_t cn, const char *d, size_t dn)
{
    size_t n = an + bn + cn + dn;
    if (n + 1 > cap || n < an) {
        if (cap)
            out[0] = '\0';
        return 0;
    }
    char *o = out;
    memcpy(o, a, an);
    o += an;
    memcpy(o, b, bn);
    o += bn;
    if (cn)
        memcpy(o, c, cn);
    o += cn;
    if (dn)
        memcpy(o, d, dn);
    o += dn;
    *o = '\0';
    return n;
}

size_t lpr_key_dev(char *out, size_t cap, const char *prefix, size_t prefix_len, const char *dev,
                   size_t dev_len)
{
    return join(out, cap, prefix, prefix_len, ":dev:", 5, dev, dev_len, NULL, 0);
}

size_t lpr_key_gw_devs(char *out, size_t cap, const char *prefix, size_t prefix_len,
                       const char *gw, size_t gw_len)
{
    return join(out, cap, prefix, prefix_len, ":gw:", 4, gw, gw_len, ":devs", 5);
}

size_t lpr_key_gw_alive(char *out, size_t cap, const char *prefix, size_t prefix_len,
                        const char *gw, size_t gw_len)
{
    return join(out, cap, prefix, prefix_len, ":gw:", 4, gw, gw_len, ":alive", 6);
}

size_t lpr_key_gws(char *out, size_t cap, const char *prefix, size_t prefix_len)
{
    return join(out, cap, prefix, prefix_len, ":gws", 4, NULL, 0, NULL, 0);
}
