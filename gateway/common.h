/* Small helpers shared by every gateway module. No dependencies beyond libc. */
#ifndef NHGW_COMMON_H
#define NHGW_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define WARN_UNUSED __attribute__((warn_unused_result))

/* A borrowed view of bytes; not NUL-terminated unless stated. */
struct span {
    const char *p;
    size_t len;
};

#define SPAN_LIT(s) ((struct span){ (s), sizeof(s) - 1 })

/* True when the span holds exactly the NUL-terminated `lit`. */
static inline bool span_is(struct span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.p, lit, n) == 0;
}

/* Aborting allocators for small internal needs whose size no peer controls. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

#endif
