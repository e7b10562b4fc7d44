#include "base/base.h"
#include "base/sha256.h"
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

static void test_sha256(void) {
    const struct { const char *in, *hex; } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    for (size_t i = 0; i < 3; i++) {
        mk_sha256 s;
        uint8_t d[32];
        char hex[65];
        mk_sha256_init(&s);
        mk_sha256_update(&s, v[i].in, strlen(v[i].in));
        mk_sha256_final(&s, d);
        for (int j = 0; j < 32; j++) snprintf(hex + 2 * j, 3, "%02x", d[j]);
        CHECK(strcmp(hex, v[i].hex) == 0, "sha256('%s') = %s", v[i].in, hex);
    }
}

int main(void) {
    RUN(test_sha256);
    RUN(test_error_one_line);
    RUN(test_map_missing);
    RUN(test_overflow);
    return TEST_SUMMARY("test_base");
}
