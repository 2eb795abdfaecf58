/* Shared by the libFuzzer targets: an invariant check that survives -DNDEBUG and names itself. */
#ifndef NHGW_FUZZ_CHECK_H
#define NHGW_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(c)                                                                                             \
    do {                                                                                                     \
        if (!(c)) {                                                                                          \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);                            \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

#endif
