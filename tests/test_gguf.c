/* GGUF reader and writer: a file written by the gguf PyPI package (tools/gen_gguf_fixture.py) is
 * read back with every metadata type and tensor intact; moekit's own writer round-trips; bad
 * headers give one-line errors naming the file and field. */
#include "format/gguf.h"
#include "format/gguf_write.h"
#include "mk_test.h"
#include "tensor/quant.h"

#include <unistd.h>

#define PYFIX "tests/fixtures/gguf/gguf_py.gguf"

static void test_read_gguf_py(void) {
    mk_gguf *g = NULL;
    REQUIRE(mk_gguf_open(&g, PYFIX) == MK_OK, "%s", mk_last_error());
    CHECK(g->version == 3, "version %u", g->version);
    CHECK(g->alignment == 32, "alignment %zu", g->alignment);
    int64_t v;
    double d;
    bool b;
    char s[64];
    CHECK(mk_gguf_get_str(g, "general.architecture", s, sizeof s) == MK_OK && !strcmp(s, "testarch"), "architecture");
    CHECK(mk_gguf_get_int(g, "t.u8", &v) == MK_OK && v == 200, "u8");
    CHECK(mk_gguf_get_int(g, "t.i8", &v) == MK_OK && v == -100, "i8");
    CHECK(mk_gguf_get_int(g, "t.u16", &v) == MK_OK && v == 60000, "u16");
    CHECK(mk_gguf_get_int(g, "t.i16", &v) == MK_OK && v == -30000, "i16");
    CHECK(mk_gguf_get_int(g, "t.u32", &v) == MK_OK && v == 4000000000LL, "u32");
    CHECK(mk_gguf_get_int(g, "t.i32", &v) == MK_OK && v == -2000000000LL, "i32");
    CHECK(mk_gguf_get_float(g, "t.f32", &d) == MK_OK && d == 0.15625, "f32");
    CHECK(mk_gguf_get_bool(g, "t.bool", &b) == MK_OK && b, "bool");
    CHECK(mk_gguf_get_str(g, "t.str", s, sizeof s) == MK_OK && !strcmp(s, "h\xc3\xa9llo"), "string");
    CHECK(mk_gguf_get_int(g, "t.u64", &v) == MK_OK && v == 1LL << 40, "u64");
    CHECK(mk_gguf_get_int(g, "t.i64", &v) == MK_OK && v == -(1LL << 40), "i64");
    CHECK(mk_gguf_get_float(g, "t.f64", &d) == MK_OK && d == 2.5e-300, "f64");
    CHECK(mk_gguf_get_int(g, "t.f32", &v) == MK_ERR_FORMAT && strstr(mk_last_error(), "'t.f32' must be an integer"), "type check: %s", mk_last_error());
    CHECK(mk_gguf_get_int(g, "t.nope", &v) == MK_ERR_MISSING && strstr(mk_last_error(), "gguf_py.gguf: metadata key 't.nope' is missing"), "missing: %s", mk_last_error());
    const mk_gguf_kv *ai = mk_gguf_find(g, "t.arr_i32"), *as = mk_gguf_find(g, "t.arr_str");
    REQUIRE(ai && as, "arrays");
    CHECK(ai->n == 3 && mk_gguf_arr_int(ai, 1, &v) && v == -2 && !mk_gguf_arr_int(ai, 3, &v), "int array");
    const char *p;
    uint64_t len;
    CHECK(as->n == 3 && mk_gguf_arr_str(as, 2, &p, &len) && len == 3 && !memcmp(p, "ccc", 3), "string array");
    CHECK(mk_gguf_arr_str(as, 1, &p, &len) && len == 0, "empty string element");

    REQUIRE(g->n_tensors == 5, "n_tensors %zu", g->n_tensors);
    const mk_gguf_tensor *a = mk_gguf_find_tensor(g, "a.f32"), *h = mk_gguf_find_tensor(g, "b.f16"),
                         *q8 = mk_gguf_find_tensor(g, "c.q8_0"), *q4 = mk_gguf_find_tensor(g, "d.q4_0"),
                         *e3 = mk_gguf_find_tensor(g, "e.3d");
    REQUIRE(a && h && q8 && q4 && e3, "tensors present");
    CHECK(a->t.dtype == MK_DT_F32 && a->t.ndim == 2 && a->t.shape[0] == 4 && a->t.shape[1] == 64 && a->ne[0] == 64, "a.f32 shape");
    CHECK(h->t.dtype == MK_DT_F16 && q8->t.dtype == MK_DT_Q8_0 && q4->t.dtype == MK_DT_Q4_0, "types");
    CHECK(q8->t.nbytes == 4 * 68 && q4->t.nbytes == 4 * 36, "quant sizes %zu %zu", q8->t.nbytes, q4->t.nbytes);
    CHECK(e3->t.ndim == 3 && e3->t.shape[0] == 2 && e3->t.shape[1] == 3 && e3->t.shape[2] == 32, "3-d shape (row-major)");
    /* gguf-py's quantization of a.f32 equals moekit's, byte for byte. */
    uint8_t buf[128];
    const float *af = a->t.data;
    for (int r = 0; r < 4; r++) {
        mk_quantize_row(MK_DT_Q8_0, af + r * 64, buf, 64);
        CHECK(!memcmp(buf, (const uint8_t *)q8->t.data + r * 68, 68), "q8_0 row %d differs from gguf-py", r);
        mk_quantize_row(MK_DT_Q4_0, af + r * 64, buf, 64);
        CHECK(!memcmp(buf, (const uint8_t *)q4->t.data + r * 36, 36), "q4_0 row %d differs from gguf-py", r);
        mk_quantize_row(MK_DT_F16, af + r * 64, buf, 64);
        CHECK(!memcmp(buf, (const uint8_t *)h->t.data + r * 128, 64), "f16 row %d differs from numpy", r);
    }
    mk_gguf_free(g);
}

static mk_status fill_seq(void *user, size_t index, uint8_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = (uint8_t)(i * 7 + index);
    (void)user;
    return MK_OK;
}

static void test_write_read(void) {
    char path[] = "/tmp/mk_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0, "mkstemp");
    close(fd);
    mk_gguf_writer *w = NULL;
    REQUIRE(mk_gguf_writer_new(&w, path) == MK_OK, "new");
    const char *strs[] = {"x", "yy", ""};
    const int32_t ints[] = {5, -6};
    CHECK(mk_gguf_w_str(w, "general.architecture", "qwen3moe") == MK_OK, "str");
    CHECK(mk_gguf_w_u32(w, "a.u32", 123) == MK_OK && mk_gguf_w_i32(w, "a.i32", -5) == MK_OK && mk_gguf_w_u64(w, "a.u64", 1ull << 50) == MK_OK &&
              mk_gguf_w_f32(w, "a.f32", 1e-6f) == MK_OK && mk_gguf_w_bool(w, "a.bool", false) == MK_OK &&
              mk_gguf_w_arr_str(w, "a.strs", strs, 3) == MK_OK && mk_gguf_w_arr_i32(w, "a.ints", ints, 2) == MK_OK,
          "kv");
    CHECK(mk_gguf_w_tensor(w, "t.q4k", 12, 2, (const int64_t[]){512, 3}, fill_seq, NULL) == MK_OK, "tensor q4_k");
    CHECK(mk_gguf_w_tensor(w, "t.f32", 0, 3, (const int64_t[]){5, 1, 2}, fill_seq, NULL) == MK_OK, "tensor f32");
    CHECK(mk_gguf_w_tensor(w, "t.bad", 12, 1, (const int64_t[]){100}, fill_seq, NULL) == MK_ERR_ARG, "row not whole blocks refused");
    REQUIRE(mk_gguf_writer_finish(w) == MK_OK, "%s", mk_last_error());
    mk_gguf_writer_free(w);
    mk_gguf *g = NULL;
    REQUIRE(mk_gguf_open(&g, path) == MK_OK, "%s", mk_last_error());
    int64_t v;
    double d;
    bool b = true;
    CHECK(mk_gguf_get_int(g, "a.u32", &v) == MK_OK && v == 123, "u32");
    CHECK(mk_gguf_get_int(g, "a.i32", &v) == MK_OK && v == -5, "i32");
    CHECK(mk_gguf_get_int(g, "a.u64", &v) == MK_OK && v == 1LL << 50, "u64");
    CHECK(mk_gguf_get_float(g, "a.f32", &d) == MK_OK && (float)d == 1e-6f, "f32");
    CHECK(mk_gguf_get_bool(g, "a.bool", &b) == MK_OK && !b, "bool");
    const char *p;
    uint64_t len;
    CHECK(mk_gguf_arr_str(mk_gguf_find(g, "a.strs"), 1, &p, &len) && len == 2 && !memcmp(p, "yy", 2), "strs");
    CHECK(mk_gguf_arr_int(mk_gguf_find(g, "a.ints"), 1, &v) && v == -6, "ints");
    const mk_gguf_tensor *t = mk_gguf_find_tensor(g, "t.q4k"), *t2 = mk_gguf_find_tensor(g, "t.f32");
    REQUIRE(t && t2, "tensors");
    CHECK(t->t.dtype == MK_DT_Q4_K && t->t.shape[0] == 3 && t->t.shape[1] == 512 && t->t.nbytes == 3 * 2 * 144, "q4_k info");
    CHECK(t2->t.ndim == 3 && t2->t.shape[0] == 2 && t2->t.shape[2] == 5 && t2->offset % 32 == 0, "f32 info");
    bool same = true;
    for (size_t i = 0; i < t->t.nbytes; i++) same &= ((const uint8_t *)t->t.data)[i] == (uint8_t)(i * 7);
    for (size_t i = 0; i < t2->t.nbytes; i++) same &= ((const uint8_t *)t2->t.data)[i] == (uint8_t)(i * 7 + 1);
    CHECK(same, "tensor bytes");
    mk_gguf_free(g);
    unlink(path);
}

/* Writes bytes to a temp file and opens it as GGUF; returns the status. */
static mk_status open_bytes(const uint8_t *b, size_t n) {
    char path[] = "/tmp/mk_test_badgguf_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return MK_ERR_IO;
    if (write(fd, b, n) != (ssize_t)n) { close(fd); return MK_ERR_IO; }
    close(fd);
    mk_gguf *g = NULL;
    mk_status st = mk_gguf_open(&g, path);
    mk_gguf_free(g);
    unlink(path);
    return st;
}

static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

static void test_bad_headers(void) {
    uint8_t h[64] = {'G', 'G', 'U', 'F', 3, 0, 0, 0};
    CHECK(open_bytes(h, 3) == MK_ERR_FORMAT && strstr(mk_last_error(), "bad magic"), "short: %s", mk_last_error());
    uint8_t bad[24] = {'G', 'G', 'M', 'L'};
    CHECK(open_bytes(bad, 24) == MK_ERR_FORMAT && strstr(mk_last_error(), "not a GGUF file"), "magic: %s", mk_last_error());
    h[4] = 1;
    CHECK(open_bytes(h, 24) == MK_ERR_UNSUPPORTED && strstr(mk_last_error(), "version 1 is not supported"), "version: %s", mk_last_error());
    h[4] = 0;
    h[7] = 3;
    CHECK(open_bytes(h, 24) == MK_ERR_UNSUPPORTED && strstr(mk_last_error(), "big-endian"), "big-endian: %s", mk_last_error());
    h[4] = 3;
    h[7] = 0;
    CHECK(open_bytes(h, 12) == MK_ERR_FORMAT && strstr(mk_last_error(), "tensor_count runs past the end"), "truncated: %s", mk_last_error());
    put64(h + 8, 1ull << 60);
    put64(h + 16, 0);
    CHECK(open_bytes(h, 24) == MK_ERR_FORMAT && strstr(mk_last_error(), "tensor_count 1152921504606846976 is more than"), "tensor count: %s", mk_last_error());
    put64(h + 8, 0);
    put64(h + 16, ~0ull);
    CHECK(open_bytes(h, 24) == MK_ERR_FORMAT && strstr(mk_last_error(), "metadata_kv_count"), "kv count: %s", mk_last_error());
    /* one kv whose key length is absurd */
    put64(h + 16, 1);
    put64(h + 24, ~0ull >> 1);
    CHECK(open_bytes(h, 40) == MK_ERR_FORMAT && strstr(mk_last_error(), "metadata key #0: string length"), "key length: %s", mk_last_error());
    /* one kv with an unknown value type */
    put64(h + 24, 1);
    h[32] = 'k';
    h[33] = 99;
    h[34] = h[35] = h[36] = 0;
    CHECK(open_bytes(h, 40) == MK_ERR_FORMAT && strstr(mk_last_error(), "metadata key 'k': unknown value type 99"), "value type: %s", mk_last_error());
}

int main(void) {
    RUN(test_read_gguf_py);
    RUN(test_write_read);
    RUN(test_bad_headers);
    return TEST_SUMMARY("test_gguf");
}
