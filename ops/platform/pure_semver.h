/* Semantic versions and Elixir-style version requirements (Elixir's `Version`), for deployment
 * conditions and the extensions' `~> 0.0.1` check. I/O-free.
 *
 * Versions: MAJOR.MINOR.PATCH[-PRE][+BUILD] (SemVer 2.0: numeric parts without leading zeros,
 * pre-release identifiers [0-9A-Za-z-]+ separated by dots; build metadata is ignored when
 * comparing). Requirements: clauses `OP VERSION` joined by `and` / `or` (`and` binds tighter),
 * OP one of `==` `!=` `>` `>=` `<` `<=` `~>` (no OP means `==`). Only `~>` accepts MAJOR.MINOR:
 * `~> 2.1` is `>= 2.1.0 and < 3.0.0-0`, `~> 2.1.3` is `>= 2.1.3 and < 2.2.0-0` (the `-0` upper
 * bound keeps the next version's pre-releases out). Pre-releases of versions inside a range
 * match (Elixir's default `allow_pre: true`). */
#ifndef NHPF_SEMVER_H
#define NHPF_SEMVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SV_MAX_CLAUSES 32 /* longer requirements are invalid */
#define SV_MAX_LEN 1024   /* longer version or requirement strings are invalid */

struct sv_version {
    uint64_t major, minor, patch;
    const char *pre; /* pre-release identifiers without the '-'; pre_n == 0: none */
    size_t pre_n;
};

/* 0 and *out (pointing into s) for a full version, -1 when s is not one. */
int sv_parse(const char *s, size_t n, struct sv_version *out);

/* SemVer precedence: <0, 0, >0. */
int sv_compare(const struct sv_version *a, const struct sv_version *b);

/* 1 when `version` satisfies `req`, 0 when it does not (or `version` is not a valid version),
 * -1 when `req` is not a valid requirement. */
int sv_match(const char *req, size_t req_n, const char *version, size_t version_n);

bool sv_req_valid(const char *req, size_t n);

#endif
