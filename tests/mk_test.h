/* A minimal test harness: each tests/test_*.c is one program with TEST functions run from main
 * through RUN(). A test fails if any CHECK in it fails; every failing CHECK prints its file, line
 * and message. The program's last line is "<name>: N passed, N failed" and its exit status is
 * non-zero if any test failed. tests/run_tests.sh adds these up. */
#ifndef MK_TEST_H
#define MK_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int mk_t_passed, mk_t_failed, mk_t_cur_failed;

#define CHECK(cond, ...)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            mk_t_cur_failed = 1;                                                         \
            fprintf(stderr, "  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);            \
            fprintf(stderr, __VA_ARGS__);                                                \
            fputc('\n', stderr);                                                         \
        }                                                                                \
    } while (0)

/* Stops the current test when cond is false (for preconditions whose failure makes the rest moot). */
#define REQUIRE(cond, ...)                                                               \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            CHECK(cond, __VA_ARGS__);                                                    \
            return;                                                                      \
        }                                                                                \
    } while (0)

#define RUN(fn)                                                                          \
    do {                                                                                 \
        mk_t_cur_failed = 0;                                                             \
        fn();                                                                            \
        if (mk_t_cur_failed) { mk_t_failed++; printf("FAIL %s\n", #fn); }                \
        else { mk_t_passed++; printf("ok   %s\n", #fn); }                                \
        fflush(stdout);                                                                  \
    } while (0)

#define TEST_SUMMARY(name)                                                               \
    (printf("%s: %d passed, %d failed\n", name, mk_t_passed, mk_t_failed), mk_t_failed ? 1 : 0)

/* Root of the shared data folder: $MK_SHARED, else ../shared beside the repository. */
static inline const char *mk_t_shared(void) {
    const char *s = getenv("MK_SHARED");
    return s && *s ? s : "../shared";
}

#endif
