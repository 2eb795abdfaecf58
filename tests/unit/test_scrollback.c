/* scrollback: the console's bounded terminal history (gateway/scrollback.h). NervesHub's line
 * algorithm checked against a direct model of it, the byte cap at max and max+1, partial lines
 * over the cap, UTF-8 boundaries after a cut, lazy allocation, and a randomized comparison with
 * a flat-array model of the documented rules (which exercises the ring's wrap-around). */
#include "../lib/test.h"

#include "scrollback.h"

static void append_str(struct sb *b, const char *s)
{
    ASSERT_EQ(sb_append(b, (const uint8_t *)s, strlen(s)), 0);
}

static void expect(struct sb *b, const char *want)
{
    size_t n;
    const uint8_t *p = sb_view(b, &n);
    if (n != strlen(want) || (n && memcmp(p, want, n) != 0))
        TEST_FAIL("scrollback is \"%.*s\" (%zu bytes), want \"%s\" (%zu bytes)", (int)(n > 200 ? 200 : n),
                  n ? (const char *)p : "", n, want, strlen(want));
}

static size_t count_nl(struct sb *b)
{
    size_t n, c = 0;
    const uint8_t *p = sb_view(b, &n);
    for (size_t i = 0; i < n; i++)
        c += p[i] == '\n';
    return c;
}

TEST(scrollback_lazy_allocation)
{
    struct sb b;
    sb_init(&b, SB_MAX_LINES, 64 << 10);
    ASSERT_EQ(sb_alloc_bytes(&b), 0);
    ASSERT_EQ(sb_append(&b, (const uint8_t *)"", 0), 0);
    ASSERT_EQ(sb_alloc_bytes(&b), 0);
    expect(&b, "");
    append_str(&b, "iex(1)> ");
    ASSERT(sb_alloc_bytes(&b) > 0 && sb_alloc_bytes(&b) <= 256);
    expect(&b, "iex(1)> ");
    sb_clear(&b);
    ASSERT_EQ(sb_alloc_bytes(&b), 0);
    expect(&b, "");
    append_str(&b, "again\n");
    expect(&b, "again\n");
    sb_free(&b);
}

/* The line cap at 1024 (NervesHub's) and 1025, with the partial line kept besides. */
TEST(scrollback_lines_cap_at_max_and_max_plus_one)
{
    struct sb b;
    sb_init(&b, SB_MAX_LINES, 1 << 20);
    char line[32];
    for (int i = 0; i < SB_MAX_LINES; i++) {
        snprintf(line, sizeof(line), "line %d\n", i);
        append_str(&b, line);
    }
    ASSERT_EQ(count_nl(&b), SB_MAX_LINES);
    size_t n;
    const uint8_t *p = sb_view(&b, &n);
    ASSERT(n > 7 && memcmp(p, "line 0\n", 7) == 0);
    append_str(&b, "partial");
    ASSERT_EQ(count_nl(&b), SB_MAX_LINES); /* the partial line does not count */
    p = sb_view(&b, &n);
    ASSERT(memcmp(p, "line 0\n", 7) == 0);
    ASSERT(memcmp(p + n - 7, "partial", 7) == 0);
    append_str(&b, " done\n"); /* the 1025th completed line pushes out the first */
    ASSERT_EQ(count_nl(&b), SB_MAX_LINES);
    p = sb_view(&b, &n);
    ASSERT(memcmp(p, "line 1\n", 7) == 0);
    ASSERT(memcmp(p + n - 13, "partial done\n", 13) == 0);
    sb_free(&b);
}

/* Whole lines go first when the byte cap is reached; exactly max bytes are kept. */
TEST(scrollback_bytes_cap_at_max_and_max_plus_one)
{
    struct sb b;
    sb_init(&b, SB_MAX_LINES, 64);
    for (int i = 0; i < 6; i++)
        append_str(&b, i % 2 ? "bbbbbbbbb\n" : "aaaaaaaaa\n"); /* 60 bytes */
    append_str(&b, "cccc");                                   /* 64: at the cap */
    expect(&b, "aaaaaaaaa\nbbbbbbbbb\naaaaaaaaa\nbbbbbbbbb\naaaaaaaaa\nbbbbbbbbb\ncccc");
    append_str(&b, "d"); /* 65: the oldest line goes */
    expect(&b, "bbbbbbbbb\naaaaaaaaa\nbbbbbbbbb\naaaaaaaaa\nbbbbbbbbb\nccccd");
    /* one append that needs several lines dropped */
    append_str(&b, "\n0123456789012345678901234567890123456789");
    expect(&b, "bbbbbbbbb\nccccd\n0123456789012345678901234567890123456789");
    sb_free(&b);
}

/* A partial line over the cap keeps its last max bytes, and drops every older line. */
TEST(scrollback_partial_line_over_cap)
{
    struct sb b;
    sb_init(&b, SB_MAX_LINES, 16);
    append_str(&b, "old line\n");
    append_str(&b, "0123456789abcdef"); /* 9 + 16: the partial alone is at the cap */
    expect(&b, "0123456789abcdef");
    append_str(&b, "g"); /* max + 1 */
    expect(&b, "123456789abcdefg");
    append_str(&b, "\nnext"); /* the cut line completes; the next one starts */
    expect(&b, "next");
    /* a completed line longer than the cap, alone: its tail is kept, with its newline */
    sb_clear(&b);
    append_str(&b, "ABCDEFGHIJKLMNOPQRSTUVWXYZ\n");
    expect(&b, "LMNOPQRSTUVWXYZ\n");
    ASSERT_EQ(count_nl(&b), 1);
    append_str(&b, "x\n"); /* 16 + 2 > 16: the cut line goes */
    expect(&b, "x\n");
    sb_free(&b);
}

/* A device that never sends a newline: 10 MB in chunks of several sizes stays within the cap,
 * allocation included. */
TEST(scrollback_ten_megabytes_without_newline)
{
    enum { CAP = 64 << 10 };
    struct sb b;
    sb_init(&b, SB_MAX_LINES, CAP);
    static uint8_t chunk[100003];
    for (size_t i = 0; i < sizeof(chunk); i++)
        chunk[i] = (uint8_t)('a' + i % 26);
    size_t total = 0, sizes[] = {1, 7, 4096, 65535, 65536, 65537, 100003};
    for (size_t r = 0; total < 10u << 20; r++) {
        size_t k = sizes[r % (sizeof(sizes) / sizeof(sizes[0]))];
        ASSERT_EQ(sb_append(&b, chunk, k), 0);
        total += k;
        ASSERT(b.len <= CAP);
    }
    ASSERT_EQ(b.len, CAP);
    ASSERT_EQ(sb_alloc_bytes(&b), CAP);
    ASSERT_EQ(b.lines, 0);
    /* the text is the last CAP bytes sent: the final chunk's tail */
    size_t n;
    const uint8_t *p = sb_view(&b, &n);
    ASSERT_EQ(n, CAP);
    ASSERT(memcmp(p + CAP - 1000, chunk + sizeof(chunk) - 1000, 1000) == 0);
    sb_free(&b);
}

/* A cut never leaves the text starting inside a UTF-8 sequence. */
TEST(scrollback_cut_on_utf8_boundary)
{
    struct sb b;
    sb_init(&b, SB_MAX_LINES, 8);
    append_str(&b, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9" "a"); /* éééé a: 9 bytes, the cut lands on A9 */
    expect(&b, "\xc3\xa9\xc3\xa9\xc3\xa9" "a");
    sb_clear(&b);
    append_str(&b, "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac"); /* €€€: 9 bytes, cut after E2 */
    expect(&b, "\xe2\x82\xac\xe2\x82\xac");
    sb_free(&b);
}

/* ---- NervesHub's algorithm, independently: join, split on "\n", keep the last N lines ---- */

struct nh_model {
    char *lines[64];
    size_t n;
    char partial[4096];
};

static void nh_append(struct nh_model *m, const char *data, size_t max_lines)
{
    char buf[8192];
    size_t pl = strlen(m->partial), dl = strlen(data);
    ASSERT(pl + dl < sizeof(buf));
    memcpy(buf, m->partial, pl);
    memcpy(buf + pl, data, dl + 1);
    char *s = buf, *nl;
    while ((nl = strchr(s, '\n'))) {
        size_t k = (size_t)(nl - s) + 1;
        char *line = malloc(k + 1);
        memcpy(line, s, k);
        line[k] = 0;
        if (m->n == max_lines) {
            free(m->lines[0]);
            memmove(m->lines, m->lines + 1, (m->n - 1) * sizeof(char *));
            m->n--;
        }
        m->lines[m->n++] = line;
        s = nl + 1;
    }
    size_t rest = strlen(s);
    ASSERT(rest < sizeof(m->partial));
    memcpy(m->partial, s, rest + 1);
}

static void nh_text(const struct nh_model *m, char *out, size_t cap)
{
    out[0] = 0;
    for (size_t i = 0; i < m->n; i++)
        strncat(out, m->lines[i], cap - strlen(out) - 1);
    strncat(out, m->partial, cap - strlen(out) - 1);
}

TEST(scrollback_matches_nerveshub_without_byte_pressure)
{
    enum { MAXL = 8 };
    struct sb b;
    sb_init(&b, MAXL, 1 << 20);
    struct nh_model m = {0};
    uint32_t seed = 12345;
    for (int step = 0; step < 2000; step++) {
        char data[40];
        size_t k = 0, len = (seed = seed * 1103515245 + 12345) >> 16 & 15;
        for (; k < len; k++) {
            seed = seed * 1103515245 + 12345;
            data[k] = (seed >> 16) % 5 == 0 ? '\n' : (char)('a' + (seed >> 20) % 26);
        }
        data[k] = 0;
        nh_append(&m, data, MAXL);
        append_str(&b, data);
        char want[4096];
        nh_text(&m, want, sizeof(want));
        expect(&b, want);
        ASSERT(b.lines <= MAXL);
    }
    for (size_t i = 0; i < m.n; i++)
        free(m.lines[i]);
    sb_free(&b);
}

/* ---- the documented rules, on a flat array (the ring must agree, wrap-around included) ---- */

struct flat {
    uint8_t t[1 << 16];
    size_t n;
};

static size_t flat_lines(const struct flat *f)
{
    size_t c = 0;
    for (size_t i = 0; i < f->n; i++)
        c += f->t[i] == '\n';
    return c;
}

static void flat_drop(struct flat *f, size_t k)
{
    memmove(f->t, f->t + k, f->n - k);
    f->n -= k;
}

static void flat_drop_line(struct flat *f)
{
    size_t i = 0;
    while (f->t[i] != '\n')
        i++;
    flat_drop(f, i + 1);
}

/* Segments: completed lines, plus the partial line when non-empty. */
static size_t flat_segments(const struct flat *f)
{
    return flat_lines(f) + (f->n && f->t[f->n - 1] != '\n');
}

static void flat_append(struct flat *f, const uint8_t *p, size_t n, size_t max_lines, size_t cap)
{
    while (n) {
        const uint8_t *q = memchr(p, '\n', n);
        size_t k = q ? (size_t)(q - p) + 1 : n;
        memcpy(f->t + f->n, p, k);
        f->n += k;
        while (flat_lines(f) > max_lines)
            flat_drop_line(f);
        while (f->n > cap && flat_segments(f) >= 2)
            flat_drop_line(f);
        if (f->n > cap) {
            flat_drop(f, f->n - cap);
            for (int i = 0; i < 3 && f->n && (f->t[0] & 0xc0) == 0x80; i++)
                flat_drop(f, 1);
        }
        p += k;
        n -= k;
    }
}

TEST(scrollback_randomized_against_flat_model)
{
    static const uint8_t alphabet[] = {'a', 'b', '\n', 0xc3, 0xa9, 0xe2, 0x82, 0xac};
    uint32_t seed = 777;
#define RND() ((seed = seed * 1103515245 + 12345) >> 16)
    for (int round = 0; round < 200; round++) {
        size_t cap = 4 + RND() % 300, max_lines = 1 + RND() % 12;
        struct sb b;
        sb_init(&b, (uint32_t)max_lines, cap);
        static struct flat f;
        f.n = 0;
        for (int step = 0; step < 300; step++) {
            uint8_t data[1024];
            size_t len = RND() % 8 == 0 ? RND() % 1024 : RND() % 24;
            for (size_t i = 0; i < len; i++)
                data[i] = alphabet[RND() % sizeof(alphabet)];
            ASSERT_EQ(sb_append(&b, data, len), 0);
            flat_append(&f, data, len, max_lines, cap);
            ASSERT(b.len <= cap);
            /* view (which straightens the ring) only now and then, so appends and drops also
             * run on wrapped content */
            if (RND() % 3)
                continue;
            size_t n;
            const uint8_t *p = sb_view(&b, &n);
            if (n != f.n || (n && memcmp(p, f.t, n) != 0))
                TEST_FAIL("round %d step %d (cap %zu, lines %zu): ring %zu bytes, model %zu", round, step, cap,
                          max_lines, n, f.n);
            ASSERT(n <= cap);
            ASSERT_EQ(b.lines, flat_lines(&f));
            ASSERT(b.lines <= max_lines);
        }
        sb_free(&b);
    }
#undef RND
}
