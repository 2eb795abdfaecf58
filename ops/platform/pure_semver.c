/* Versions and requirements (pure_semver.h). */
#include "pure_semver.h"

#include <string.h>

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_ident_char(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

/* A numeric part: digits, no leading zero unless it is "0", at most 18 digits (no overflow). */
static int parse_num(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    size_t k = 0;
    while (s + k < end && is_digit(s[k])) {
        if (k == 18)
            return -1;
        v = v * 10 + (uint64_t)(s[k] - '0');
        k++;
    }
    if (k == 0 || (k > 1 && s[0] == '0'))
        return -1;
    *p = s + k;
    *out = v;
    return 0;
}

/* Dot-separated identifiers [0-9A-Za-z-]+; with `numeric_rule`, all-digit identifiers may not
 * have leading zeros (pre-release rule; build metadata has no such rule). */
static bool valid_idents(const char *s, size_t n, bool numeric_rule)
{
    if (n == 0)
        return false;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            size_t len = i - start;
            if (len == 0)
                return false;
            bool all_digits = true;
            for (size_t j = start; j < i; j++)
                if (!is_digit(s[j]))
                    all_digits = false;
            if (numeric_rule && all_digits && len > 1 && s[start] == '0')
                return false;
            start = i + 1;
        } else if (!is_ident_char(s[i])) {
            return false;
        }
    }
    return true;
}

/* Parses MAJOR.MINOR[.PATCH][-PRE][+BUILD]; *has_patch tells whether PATCH was present. */
static int parse_version(const char *s, size_t n, bool allow_no_patch, struct sv_version *out,
                         bool *has_patch)
{
    if (n == 0 || n > SV_MAX_LEN)
        return -1;
    const char *p = s, *end = s + n;
    memset(out, 0, sizeof(*out));
    if (parse_num(&p, end, &out->major) < 0 || p == end || *p != '.')
        return -1;
    p++;
    if (parse_num(&p, end, &out->minor) < 0)
        return -1;
    *has_patch = false;
    if (p < end && *p == '.') {
        p++;
        if (parse_num(&p, end, &out->patch) < 0)
            return -1;
        *has_patch = true;
    } else if (!allow_no_patch) {
        return -1;
    }
    const char *build = memchr(p, '+', (size_t)(end - p));
    const char *pre_end = build ? build : end;
    if (p < pre_end) {
        if (*p != '-' || !valid_idents(p + 1, (size_t)(pre_end - p - 1), true))
            return -1;
        out->pre = p + 1;
        out->pre_n = (size_t)(pre_end - p - 1);
    }
    if (build && !valid_idents(build + 1, (size_t)(end - build - 1), false))
        return -1;
    return 0;
}

int sv_parse(const char *s, size_t n, struct sv_version *out)
{
    bool has_patch;
    return parse_version(s, n, false, out, &has_patch);
}

static int cmp_u64(uint64_t a, uint64_t b)
{
    return a < b ? -1 : a > b;
}

/* Next identifier of a pre-release list starting at *p (within end). */
static void next_ident(const char **p, const char *end, const char **id, size_t *len)
{
    const char *s = *p;
    const char *dot = memchr(s, '.', (size_t)(end - s));
    const char *e = dot ? dot : end;
    *id = s;
    *len = (size_t)(e - s);
    *p = dot ? dot + 1 : end;
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_digit(s[i]))
            return false;
    return true;
}

static int cmp_pre(const struct sv_version *a, const struct sv_version *b)
{
    if (a->pre_n == 0 || b->pre_n == 0)
        return a->pre_n == 0 ? (b->pre_n == 0 ? 0 : 1) : -1; /* no pre-release ranks higher */
    const char *pa = a->pre, *ea = a->pre + a->pre_n, *pb = b->pre, *eb = b->pre + b->pre_n;
    while (pa < ea && pb < eb) {
        const char *ia, *ib;
        size_t la, lb;
        next_ident(&pa, ea, &ia, &la);
        next_ident(&pb, eb, &ib, &lb);
        bool na = all_digits(ia, la), nb = all_digits(ib, lb);
        int c;
        if (na && nb) /* no leading zeros: the longer number is larger */
            c = la != lb ? (la < lb ? -1 : 1) : memcmp(ia, ib, la);
        else if (na != nb)
            c = na ? -1 : 1; /* numeric identifiers rank below alphanumeric ones */
        else {
            c = memcmp(ia, ib, la < lb ? la : lb);
            if (c == 0)
                c = la < lb ? -1 : la > lb;
        }
        if (c)
            return c < 0 ? -1 : 1;
    }
    return pa < ea ? 1 : pb < eb ? -1 : 0; /* a longer list ranks higher */
}

int sv_compare(const struct sv_version *a, const struct sv_version *b)
{
    int c = cmp_u64(a->major, b->major);
    if (!c)
        c = cmp_u64(a->minor, b->minor);
    if (!c)
        c = cmp_u64(a->patch, b->patch);
    if (!c)
        c = cmp_pre(a, b);
    return c;
}

enum op { OP_EQ, OP_NE, OP_GT, OP_GE, OP_LT, OP_LE, OP_TILDE };

struct clause {
    enum op op;
    struct sv_version v, upper; /* upper: ~> only */
    bool or_before;             /* joined to the previous clause with `or` */
};

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Parses the whole requirement into clauses; -1 when invalid. */
static int parse_req(const char *s, size_t n, struct clause *cl, size_t *ncl)
{
    if (n == 0 || n > SV_MAX_LEN)
        return -1;
    const char *p = s, *end = s + n;
    size_t k = 0;
    bool want_clause = true, or_next = false;
    for (;;) {
        while (p < end && is_space(*p))
            p++;
        if (p == end)
            break;
        const char *t = p;
        if (!want_clause) {
            while (p < end && !is_space(*p))
                p++;
            size_t len = (size_t)(p - t);
            if (len == 3 && memcmp(t, "and", 3) == 0)
                or_next = false;
            else if (len == 2 && memcmp(t, "or", 2) == 0)
                or_next = true;
            else
                return -1;
            want_clause = true;
            continue;
        }
        if (k == SV_MAX_CLAUSES)
            return -1;
        struct clause *c = &cl[k];
        static const struct {
            const char *s;
            enum op op;
        } ops[] = {{"~>", OP_TILDE}, {">=", OP_GE}, {"<=", OP_LE}, {"==", OP_EQ},
                   {"!=", OP_NE},    {">", OP_GT},  {"<", OP_LT}};
        c->op = OP_EQ;
        for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
            size_t ol = strlen(ops[i].s);
            if ((size_t)(end - p) >= ol && memcmp(p, ops[i].s, ol) == 0) {
                c->op = ops[i].op;
                p += ol;
                break;
            }
        }
        while (p < end && is_space(*p))
            p++;
        t = p;
        while (p < end && !is_space(*p))
            p++;
        bool has_patch;
        if (parse_version(t, (size_t)(p - t), c->op == OP_TILDE, &c->v, &has_patch) < 0)
            return -1;
        if (c->op == OP_TILDE) {
            static const char zero[] = "0";
            memset(&c->upper, 0, sizeof(c->upper));
            if (has_patch) {
                c->upper.major = c->v.major;
                c->upper.minor = c->v.minor + 1;
            } else {
                c->upper.major = c->v.major + 1;
            }
            c->upper.pre = zero;
            c->upper.pre_n = 1;
        }
        c->or_before = or_next;
        k++;
        want_clause = false;
    }
    if (want_clause) /* empty, or ends with and/or */
        return -1;
    *ncl = k;
    return 0;
}

static bool clause_holds(const struct clause *c, const struct sv_version *v)
{
    int r = sv_compare(v, &c->v);
    switch (c->op) {
    case OP_EQ:
        return r == 0;
    case OP_NE:
        return r != 0;
    case OP_GT:
        return r > 0;
    case OP_GE:
        return r >= 0;
    case OP_LT:
        return r < 0;
    case OP_LE:
        return r <= 0;
    case OP_TILDE:
        return r >= 0 && sv_compare(v, &c->upper) < 0;
    }
    return false;
}

bool sv_req_valid(const char *req, size_t n)
{
    struct clause cl[SV_MAX_CLAUSES];
    size_t k;
    return parse_req(req, n, cl, &k) == 0;
}

int sv_match(const char *req, size_t req_n, const char *version, size_t version_n)
{
    struct clause cl[SV_MAX_CLAUSES];
    size_t k;
    if (parse_req(req, req_n, cl, &k) < 0)
        return -1;
    struct sv_version v;
    if (sv_parse(version, version_n, &v) < 0)
        return 0;
    /* OR of AND-groups */
    bool group = true;
    for (size_t i = 0; i < k; i++) {
        if (i > 0 && cl[i].or_before) {
            if (group)
                return 1;
            group = true;
        }
        group = group && clause_holds(&cl[i], &v);
    }
    return group ? 1 : 0;
}
