/* Unit tests: every tests/unit/test_*.c registers its tests; tests/lib/runner.c runs them.
 * Usage: unit [name-substring ...]. Ends with the line "N passed, N failed". */
#include "../lib/test.h"

int main(int argc, char **argv)
{
    return test_run_all(argc, argv, NULL);
}
