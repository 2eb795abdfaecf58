/* Tiny unit-test harness: TEST() registers a test; the runner (tests/unit/main.c) runs each
 * in a child process with a timeout. ASSERT_* print both values on failure and abort the test. */
#ifndef NHGW_TEST_H
#define NHGW_TEST_H

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn);

/* Optional hooks of the runner (tests/lib/runner.c). before_all/after_all run in the runner
 * process; after_each in each test's child after the test passed. leak_check: children end with
 * exit() rather than _exit(), so LeakSanitizer checks every test. */
struct test_hooks {
    void (*before_all)(void);
    void (*after_each)(void);
    void (*after_all)(void);
    bool leak_check;
};
/* Runs the registered tests selected by argv substrings; returns the exit status. */
int test_run_all(int argc, char **argv, const struct test_hooks *h);

#define TEST(name)                                                        \
    static void test_##name(void);                                        \
    __attribute__((constructor)) static void test_register_##name(void)   \
    {                                                                     \
        test_register(#name, test_##name);                                \
    }                                                                     \
    static void test_##name(void)

#define TEST_FAIL(...)                                                    \
    do {                                                                  \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                 \
        fprintf(stderr, __VA_ARGS__);                                     \
        fprintf(stderr, "\n");                                            \
        abort();                                                          \
    } while (0)

#define ASSERT(c)                                                         \
    do {                                                                  \
        if (!(c))                                                         \
            TEST_FAIL("assertion failed: %s", #c);                        \
    } while (0)

#define ASSERT_EQ(a, b)                                                   \
    do {                                                                  \
        long long a_ = (long long)(a), b_ = (long long)(b);               \
        if (a_ != b_)                                                     \
            TEST_FAIL("%s == %s: %lld != %lld", #a, #b, a_, b_);          \
    } while (0)

#define ASSERT_NE(a, b)                                                   \
    do {                                                                  \
        long long a_ = (long long)(a), b_ = (long long)(b);               \
        if (a_ == b_)                                                     \
            TEST_FAIL("%s != %s: both %lld", #a, #b, a_);                 \
    } while (0)

#define ASSERT_STR_EQ(a, b)                                               \
    do {                                                                  \
        const char *a_ = (a), *b_ = (b);                                  \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                            \
            TEST_FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b,               \
                      a_ ? a_ : "(null)", b_ ? b_ : "(null)");            \
    } while (0)

/* Compare a (pointer, length) against a (pointer, length). */
#define ASSERT_MEM_EQ(ap, alen, bp, blen)                                 \
    do {                                                                  \
        size_t al_ = (alen), bl_ = (blen);                                \
        if (al_ != bl_ || memcmp((ap), (bp), al_) != 0)                   \
            TEST_FAIL("%s[%zu] != %s[%zu]", #ap, al_, #bp, bl_);          \
    } while (0)

/* Copy n bytes so they end exactly at a PROT_NONE page: any over-read faults
 * (picohttpparser's test trick). The result is writable. Freed by test_guard_free. */
uint8_t *test_guard_copy(const void *data, size_t n);
void test_guard_free(uint8_t *p);

/* Hex string ("95 c0 a1") to bytes; spaces ignored. Returns malloc'd bytes, length in *n. */
uint8_t *test_unhex(const char *hex, size_t *n);

#endif
