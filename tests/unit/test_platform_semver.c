/* Versions and Elixir-style requirements (ops/platform/pure_semver.c). */
#include "../lib/test.h"

#include "../../ops/platform/pure_semver.h"

static int match(const char *req, const char *v)
{
    return sv_match(req, strlen(req), v, strlen(v));
}

static int cmp(const char *a, const char *b)
{
    struct sv_version x, y;
    ASSERT_EQ(sv_parse(a, strlen(a), &x), 0);
    ASSERT_EQ(sv_parse(b, strlen(b), &y), 0);
    return sv_compare(&x, &y);
}

TEST(platform_semver_parse)
{
    struct sv_version v;
    ASSERT_EQ(sv_parse("1.2.3", 5, &v), 0);
    ASSERT_EQ(v.major, 1);
    ASSERT_EQ(v.minor, 2);
    ASSERT_EQ(v.patch, 3);
    ASSERT_EQ(v.pre_n, 0);
    const char *s = "10.20.30-rc.1+build.5";
    ASSERT_EQ(sv_parse(s, strlen(s), &v), 0);
    ASSERT_MEM_EQ(v.pre, v.pre_n, "rc.1", 4);
    static const char *const bad[] = {"",      "1",     "1.2",      "1.2.3.4", "01.2.3", "1.02.3", "1.2.03",
                                      "1.2.3-", "1.2.3+", "1.2.3-01", "1.2.3-a..b", "v1.2.3", "1.2.3 ", "-1.2.3",
                                      "1.2.x", "1.2.3-a_b", "1234567890123456789.0.0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (sv_parse(bad[i], strlen(bad[i]), &v) == 0)
            TEST_FAIL("accepted \"%s\"", bad[i]);
    /* build metadata may have leading zeros; pre-release numeric identifiers may not */
    ASSERT_EQ(sv_parse("1.2.3+001", 9, &v), 0);
    ASSERT_EQ(sv_parse("0.0.0", 5, &v), 0);
    ASSERT_EQ(sv_parse("123456789012345678.0.0", 22, &v), 0);
}

TEST(platform_semver_precedence)
{
    /* SemVer 2.0 §11 example chain */
    static const char *const chain[] = {"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
                                        "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1",
                                        "1.1.0", "2.0.0", "10.0.0"};
    for (size_t i = 0; i + 1 < sizeof(chain) / sizeof(chain[0]); i++) {
        ASSERT_EQ(cmp(chain[i], chain[i + 1]), -1);
        ASSERT_EQ(cmp(chain[i + 1], chain[i]), 1);
    }
    ASSERT_EQ(cmp("1.0.0+a", "1.0.0+b"), 0); /* build metadata ignored */
    ASSERT_EQ(cmp("1.0.0-2", "1.0.0-10"), -1); /* numeric, not lexical */
}

TEST(platform_semver_operators)
{
    ASSERT_EQ(match("1.2.3", "1.2.3"), 1);
    ASSERT_EQ(match("== 1.2.3", "1.2.3+b"), 1);
    ASSERT_EQ(match("== 1.2.3", "1.2.4"), 0);
    ASSERT_EQ(match("!= 1.2.3", "1.2.4"), 1);
    ASSERT_EQ(match(">= 1.2.3", "1.2.3"), 1);
    ASSERT_EQ(match(">= 1.2.3", "1.2.3-rc.1"), 0);
    ASSERT_EQ(match("> 1.2.3", "1.2.3"), 0);
    ASSERT_EQ(match("> 1.2.3", "1.10.0"), 1);
    ASSERT_EQ(match("< 2.0.0", "1.99.99"), 1);
    ASSERT_EQ(match("< 2.0.0", "2.0.0"), 0);
    ASSERT_EQ(match("<= 2.0.0", "2.0.0"), 1);
    ASSERT_EQ(match(">=1.0.0", "1.0.0"), 1); /* operator without a space */
}

TEST(platform_semver_tilde)
{
    /* ~> MAJOR.MINOR: >= MAJOR.MINOR.0 and < (MAJOR+1).0.0-0 */
    ASSERT_EQ(match("~> 2.1", "2.1.0"), 1);
    ASSERT_EQ(match("~> 2.1", "2.9.9"), 1);
    ASSERT_EQ(match("~> 2.1", "2.0.9"), 0);
    ASSERT_EQ(match("~> 2.1", "3.0.0"), 0);
    ASSERT_EQ(match("~> 2.1", "3.0.0-rc.1"), 0); /* the next major's pre-releases stay out */
    ASSERT_EQ(match("~> 2.1", "2.5.0-rc.1"), 1); /* pre-releases inside the range match */
    /* ~> MAJOR.MINOR.PATCH: >= it and < MAJOR.(MINOR+1).0-0 */
    ASSERT_EQ(match("~> 2.1.3", "2.1.3"), 1);
    ASSERT_EQ(match("~> 2.1.3", "2.1.99"), 1);
    ASSERT_EQ(match("~> 2.1.3", "2.1.2"), 0);
    ASSERT_EQ(match("~> 2.1.3", "2.2.0"), 0);
    ASSERT_EQ(match("~> 2.1.3", "2.2.0-0"), 0);
    ASSERT_EQ(match("~> 0.0.1", "0.0.1"), 1);
    ASSERT_EQ(match("~> 0.0.1", "0.0.2"), 1);
    ASSERT_EQ(match("~> 0.0.1", "0.1.0"), 0);
    ASSERT_EQ(match("~> 2.0.0-rc.1", "2.0.0-rc.2"), 1);
    ASSERT_EQ(match("~> 2.0.0-rc.1", "2.0.0-beta"), 0);
}

TEST(platform_semver_and_or)
{
    ASSERT_EQ(match(">= 1.0.0 and < 2.0.0", "1.5.0"), 1);
    ASSERT_EQ(match(">= 1.0.0 and < 2.0.0", "2.0.0"), 0);
    ASSERT_EQ(match("< 1.0.0 or >= 3.0.0", "3.1.0"), 1);
    ASSERT_EQ(match("< 1.0.0 or >= 3.0.0", "2.0.0"), 0);
    /* and binds tighter than or: (== 1.0.0) or (>= 2.0.0 and < 2.1.0) */
    ASSERT_EQ(match("== 1.0.0 or >= 2.0.0 and < 2.1.0", "1.0.0"), 1);
    ASSERT_EQ(match("== 1.0.0 or >= 2.0.0 and < 2.1.0", "2.0.5"), 1);
    ASSERT_EQ(match("== 1.0.0 or >= 2.0.0 and < 2.1.0", "2.1.0"), 0);
    ASSERT_EQ(match(">= 2.0.0 and < 2.1.0 or == 1.0.0", "1.0.0"), 1);
}

TEST(platform_semver_invalid_requirements)
{
    static const char *const bad[] = {"",           "  ",          ">= 1.0",      "== 1",       "~> 1",
                                      ">= 1.0.0 and", "or < 1.0.0", ">= 1.0.0 xor < 2.0.0", "=> 1.0.0",
                                      ">= 1.0.0 < 2.0.0", "~>", "1.0.0 and and 2.0.0", "= 1.0.0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (sv_req_valid(bad[i], strlen(bad[i])))
            TEST_FAIL("accepted \"%s\"", bad[i]);
        ASSERT_EQ(sv_match(bad[i], strlen(bad[i]), "1.0.0", 5), -1);
    }
    /* an invalid version never matches a valid requirement */
    ASSERT_EQ(match(">= 0.0.0", "garbage"), 0);
    ASSERT_EQ(match(">= 0.0.0", ""), 0);
}

TEST(platform_semver_limits)
{
    /* SV_MAX_CLAUSES clauses are fine, one more is invalid */
    char req[4096] = "";
    size_t n = 0;
    for (int i = 0; i < SV_MAX_CLAUSES; i++)
        n += (size_t)snprintf(req + n, sizeof(req) - n, "%s>= 1.0.0", i ? " and " : "");
    ASSERT(n <= SV_MAX_LEN);
    ASSERT_EQ(sv_match(req, n, "1.0.0", 5), 1);
    n += (size_t)snprintf(req + n, sizeof(req) - n, " and >= 1.0.0");
    ASSERT_EQ(sv_req_valid(req, n), false);
    /* a string over SV_MAX_LEN is invalid whatever it holds */
    char big[SV_MAX_LEN + 2];
    memset(big, ' ', sizeof(big));
    memcpy(big, "1.0.0", 5);
    ASSERT_EQ(sv_req_valid(big, SV_MAX_LEN), true);
    ASSERT_EQ(sv_req_valid(big, SV_MAX_LEN + 1), false);
    /* guard page: no read past the end */
    uint8_t *g = test_guard_copy("~> 1.2", 6);
    ASSERT_EQ(sv_match((const char *)g, 6, "1.3.0", 5), 1);
    test_guard_free(g);
    g = test_guard_copy("1.2.3-rc", 8);
    struct sv_version v;
    ASSERT_EQ(sv_parse((const char *)g, 8, &v), 0);
    test_guard_free(g);
}
