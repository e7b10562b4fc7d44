/* A minimal test harness: each tests/test_*.c is one program with TEST functions run from main
 * through RUN(). A test fails if any CHECK in it fails; every failing CHECK prints its file, line
 * and message. A test that cannot run calls SKIP(reason): it is counted as skipped, never as
 * passed (tests/run_tests.sh fails a CI run that skipped anything). The program's last line is
 * "<name>: N passed, N failed, N skipped" and its exit status is non-zero if any test failed.
 * tests/run_tests.sh adds these up. */
#ifndef MK_TEST_H
#define MK_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int mk_t_passed, mk_t_failed, mk_t_skipped, mk_t_cur_failed, mk_t_cur_skipped;

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

/* Ends the current test as skipped, printing why (for a check that cannot run on this machine,
 * never for missing project files: those are failures). */
#define SKIP(...)                                                                        \
    do {                                                                                 \
        mk_t_cur_skipped = 1;                                                            \
        printf("skip %s: ", __func__);                                                   \
        printf(__VA_ARGS__);                                                             \
        putchar('\n');                                                                   \
        return;                                                                          \
    } while (0)

#define RUN(fn)                                                                          \
    do {                                                                                 \
        mk_t_cur_failed = mk_t_cur_skipped = 0;                                          \
        fn();                                                                            \
        if (mk_t_cur_failed) { mk_t_failed++; printf("FAIL %s\n", #fn); }                \
        else if (mk_t_cur_skipped) mk_t_skipped++;                                       \
        else { mk_t_passed++; printf("ok   %s\n", #fn); }                                \
        fflush(stdout);                                                                  \
    } while (0)

#define TEST_SUMMARY(name)                                                               \
    (printf("%s: %d passed, %d failed, %d skipped\n", name, mk_t_passed, mk_t_failed, mk_t_skipped), mk_t_failed ? 1 : 0)

/* Root of the unpacked test data (tests/data, unpacked by tests/data/unpack.sh, which
 * tests/run_tests.sh runs): $MK_TESTDATA, else build/testdata. */
static inline const char *mk_t_data(void) {
    const char *s = getenv("MK_TESTDATA");
    return s && *s ? s : "build/testdata";
}

/* buf = <test data root>/rel. */
static inline const char *mk_t_data_path(char *buf, size_t cap, const char *rel) {
    snprintf(buf, cap, "%s/%s", mk_t_data(), rel);
    return buf;
}

#endif
