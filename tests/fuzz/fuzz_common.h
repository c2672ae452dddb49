// Shared helpers for convgen's libFuzzer targets (tests/fuzz/README.md).
// Every target feeds the bytes to a parser and catches convgen::Error only: any other exception,
// a crash, a sanitizer report, a hang or a huge allocation is a finding. Inputs that parse are
// also checked for the parser's promises (round trips, sizes); a broken promise aborts.
#pragma once

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                                      \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            std::abort();                                                                     \
        }                                                                                     \
    } while (0)
