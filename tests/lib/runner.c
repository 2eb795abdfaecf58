/* The test runner shared by the unit tests and the component tests (tests/natsc,
 * tests/registry): every registered test runs in its own child process with a timeout
 * (libuv's runner), so one crashing test cannot hide the others. Selection by name substring;
 * the last line is "N passed, N failed". */
#include "test.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct test_entry {
    const char *name;
    test_fn fn;
};

static struct test_entry tests[4096];
static size_t ntests;

void test_register(const char *name, test_fn fn)
{
    if (ntests == sizeof(tests) / sizeof(tests[0]))
        abort();
    tests[ntests].name = name;
    tests[ntests].fn = fn;
    ntests++;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct test_entry *)a)->name, ((const struct test_entry *)b)->name);
}

static bool selected(const char *name, int argc, char **argv)
{
    if (argc < 2)
        return true;
    for (int i = 1; i < argc; i++)
        if (strstr(name, argv[i]))
            return true;
    return false;
}

int test_run_all(int argc, char **argv, const struct test_hooks *h)
{
    unsigned timeout = getenv("TEST_TIMEOUT") ? (unsigned)atoi(getenv("TEST_TIMEOUT")) : 60;
    int passed = 0, failed = 0;
    signal(SIGPIPE, SIG_IGN);
    qsort(tests, ntests, sizeof(tests[0]), by_name);
    if (h && h->before_all)
        h->before_all();
    for (size_t i = 0; i < ntests; i++) {
        if (!selected(tests[i].name, argc, argv))
            continue;
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid == 0) {
            alarm(timeout);
            tests[i].fn();
            if (h && h->after_each)
                h->after_each();
            fflush(stdout);
            /* exit runs LeakSanitizer in ASan builds; _exit skips it for tests that leave
             * process-lifetime state behind on purpose */
            if (h && h->leak_check)
                exit(0);
            _exit(0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            passed++;
            printf("ok   %s\n", tests[i].name);
        } else {
            failed++;
            if (WIFSIGNALED(st))
                printf("FAIL %s (signal %d%s)\n", tests[i].name, WTERMSIG(st),
                       WTERMSIG(st) == SIGALRM ? ", timeout" : "");
            else
                printf("FAIL %s (exit %d)\n", tests[i].name, WEXITSTATUS(st));
        }
    }
    if (h && h->after_all)
        h->after_all();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
