#include "base/base.h"
#include "base/sha256.h"
#include "mk_test.h"

#include <stdint.h>
#include <unistd.h>

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

/* A file of n bytes of a known pattern at path. */
static bool write_pattern(const char *path, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) ok = fputc((int)((i * 2654435761u) >> 13 & 0xFF), f) != EOF;
    return fclose(f) == 0 && ok;
}

static bool has_pattern(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)((i * 2654435761u) >> 13 & 0xFF)) return false;
    return true;
}

static void test_map_resident(void) {
    char path[] = "/tmp/mk_test_map.XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0, "mkstemp");
    close(fd);
    const size_t n = 5 * MK_MAP_ALIGN + 123;
    REQUIRE(write_pattern(path, n), "write %s", path);
    mk_map m;
    REQUIRE(mk_map_open(&m, path) == MK_OK, "%s", mk_last_error());
    CHECK((uintptr_t)m.data % MK_MAP_ALIGN == 0, "a large file maps at a %zu-aligned address", MK_MAP_ALIGN);
    CHECK(m.span == 6 * MK_MAP_ALIGN && m.size == n, "span %zu size %zu", m.span, m.size);
    const uint8_t *before = m.data;
    bool done = false;
    CHECK(mk_map_make_resident(&m, &done) == MK_OK, "%s", mk_last_error());
    CHECK(m.data == before && m.resident == done, "same addresses, resident %d done %d", m.resident, done);
    CHECK(has_pattern(m.data, n), "the bytes are the file's");
    if (done) { /* advice on a resident map must not drop (zero) its pages */
        mk_map_advise(&m, 0, n, false);
        CHECK(has_pattern(m.data, n), "still the file's bytes after advice to drop them");
        CHECK(mk_map_make_resident(&m, &done) == MK_OK && !done, "a second call copies nothing");
    } else {
        printf("     (no copy made: transparent huge pages off or memory short)\n");
    }
    mk_map_close(&m);

    /* a file that changed size since it was mapped: an error naming it, the mapping intact */
    REQUIRE(mk_map_open(&m, path) == MK_OK, "%s", mk_last_error());
    REQUIRE(truncate(path, (off_t)(4 * MK_MAP_ALIGN)) == 0, "truncate");
    CHECK(mk_map_make_resident(&m, &done) == MK_ERR_IO && !done && !m.resident, "a changed file is refused");
    CHECK(strstr(mk_last_error(), path) && strstr(mk_last_error(), "changed size"), "message: %s", mk_last_error());
    CHECK(has_pattern(m.data, 4 * MK_MAP_ALIGN), "the mapping still reads the file");
    mk_map_close(&m);

    /* a small file stays mapped */
    REQUIRE(write_pattern(path, 1000), "write");
    REQUIRE(mk_map_open(&m, path) == MK_OK, "%s", mk_last_error());
    CHECK(m.span == 1000 && mk_map_make_resident(&m, &done) == MK_OK && !done && !m.resident, "small file left mapped");
    CHECK(has_pattern(m.data, 1000), "small file bytes");
    mk_map_close(&m);
    unlink(path);
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
    RUN(test_map_resident);
    RUN(test_overflow);
    return TEST_SUMMARY("test_base");
}
