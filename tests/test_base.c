#include "base/base.h"
#include "mk_test.h"

static void test_error_one_line(void) {
    mk_status s = mk_err(MK_ERR_FORMAT, "%s: field '%s'\nsecond line", "a.json", "x");
    CHECK(s == MK_ERR_FORMAT, "status %d", s);
    CHECK(strcmp(mk_last_error(), "a.json: field 'x' second line") == 0, "got '%s'", mk_last_error());
    mk_err_prefix(MK_ERR_FORMAT, "dir");
    CHECK(strncmp(mk_last_error(), "dir: a.json", 11) == 0, "got '%s'", mk_last_error());
}

static void test_map_missing(void) {
    mk_map m;
    mk_status s = mk_map_open(&m, "/nonexistent/file.bin");
    CHECK(s == MK_ERR_IO, "status %d", s);
    CHECK(strstr(mk_last_error(), "/nonexistent/file.bin") != NULL, "got '%s'", mk_last_error());
}

static void test_overflow(void) {
    size_t r;
    CHECK(!mk_mul_ok(SIZE_MAX / 2, 3, &r), "overflow not detected");
    CHECK(mk_mul_ok(1000, 1000, &r) && r == 1000000, "r=%zu", r);
    CHECK(mk_calloc(SIZE_MAX / 2, 3) == NULL, "calloc overflow not refused");
}

int main(void) {
    RUN(test_error_one_line);
    RUN(test_map_missing);
    RUN(test_overflow);
    return TEST_SUMMARY("test_base");
}
