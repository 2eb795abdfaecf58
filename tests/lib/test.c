/* Support code for tests/lib/test.h. */
#include "test.h"

#include <ctype.h>
#include <sys/mman.h>
#include <unistd.h>

struct guard_hdr {
    void *base;
    size_t maplen;
};

uint8_t *test_guard_copy(const void *data, size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t body = ((n + sizeof(struct guard_hdr) + page - 1) / page) * page;
    size_t maplen = body + page;
    uint8_t *base = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        abort();
    if (mprotect(base + body, page, PROT_NONE) != 0)
        abort();
    uint8_t *p = base + body - n;
    struct guard_hdr h = { base, maplen };
    memcpy(base, &h, sizeof(h));
    if (n)
        memcpy(p, data, n);
    return p;
}

void test_guard_free(uint8_t *p)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    /* the header sits at the start of the mapping, which starts at a page boundary
     * at or before p; walk back page by page until we find the header */
    /* p - 1 is in the mapping's readable part even for an empty copy, whose p is the guard page */
    uintptr_t a = ((uintptr_t)p - 1) & ~(uintptr_t)(page - 1);
    for (;; a -= page) {
        struct guard_hdr h;
        memcpy(&h, (void *)a, sizeof(h));
        if (h.base == (void *)a) {
            munmap(h.base, h.maplen);
            return;
        }
    }
}

uint8_t *test_unhex(const char *hex, size_t *n)
{
    size_t cap = strlen(hex) / 2 + 1, len = 0;
    uint8_t *out = malloc(cap);
    int hi = -1;
    for (const char *s = hex; *s; s++) {
        if (isspace((unsigned char)*s))
            continue;
        int v = isdigit((unsigned char)*s) ? *s - '0' : (tolower((unsigned char)*s) - 'a' + 10);
        if (hi < 0) {
            hi = v;
        } else {
            out[len++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    *n = len;
    return out;
}
