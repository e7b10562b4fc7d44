/* safetensors reader: well-formed files read back exactly; malformed headers are refused with
 * a message naming the file and the tensor. */
#include "format/safetensors.h"
#include "mk_test.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/mk_st_XXXXXX";

/* Writes a safetensors file from a header string and a body. */
static void write_st(const char *path, const char *header, const void *body, size_t body_len) {
    FILE *f = fopen(path, "wb");
    uint64_t n = strlen(header);
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(n >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(header, 1, n, f);
    if (body_len) fwrite(body, 1, body_len, f);
    fclose(f);
}

static char *p(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void test_roundtrip(void) {
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[2] = {0x3f80, 0xc000}; /* bf16 1.0, -2.0 */
    uint8_t body[32];
    memcpy(body, a, 24);
    memcpy(body + 24, b, 4);
    write_st(p("ok.safetensors"),
             "{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[24,28]},"
             "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[28,28]}}",
             body, 28);
    mk_st_set *s;
    REQUIRE(mk_st_open_file(&s, p("ok.safetensors")) == MK_OK, "%s", mk_last_error());
    CHECK(s->n_entries == 3, "%zu entries", s->n_entries);
    const mk_st_entry *ea = mk_st_find(s, "a"), *eb = mk_st_find(s, "b");
    REQUIRE(ea && eb, "lookup");
    CHECK(ea->t.ndim == 2 && ea->t.shape[0] == 2 && ea->t.shape[1] == 3, "shape");
    CHECK(memcmp(ea->t.data, a, 24) == 0, "data of a");
    float f[2];
    mk_to_f32(f, eb->t.data, eb->t.dtype, 2);
    CHECK(f[0] == 1.0f && f[1] == -2.0f, "bf16 %g %g", f[0], f[1]);
    CHECK(mk_st_find(s, "zz") == NULL, "absent name found");
    mk_st_free(s);
}

static void expect_bad(const char *file, const char *header, size_t body_len, const char *needle) {
    uint8_t body[64] = {0};
    write_st(p(file), header, body, body_len);
    mk_st_set *s = NULL;
    mk_status st = mk_st_open_file(&s, p(file));
    CHECK(st != MK_OK, "%s accepted", file);
    CHECK(strstr(mk_last_error(), needle) != NULL, "%s: message '%s' lacks '%s'", file, mk_last_error(), needle);
    CHECK(strstr(mk_last_error(), file) != NULL, "%s: message '%s' does not name the file", file, mk_last_error());
    mk_st_free(s);
}

static void test_malformed(void) {
    expect_bad("dup.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "duplicate");
    expect_bad("overlap.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "overlap");
    expect_bad("past.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "past the end");
    expect_bad("bytes.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "does not equal");
    expect_bad("dtype.st", "{\"a\":{\"dtype\":\"F99\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unsupported dtype 'F99'");
    expect_bad("neg.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "shape[0]");
    expect_bad("rev.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8, "data_offsets");
    expect_bad("huge.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, "overflows");
    expect_bad("notobj.st", "[1,2,3]", 0, "header does not start with '{'");
    expect_bad("json.st", "{\"a\":", 0, "header JSON");
    expect_bad("offs.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 8, "data_offsets");
    /* A header length larger than the file. */
    FILE *f = fopen(p("len.st"), "wb");
    uint8_t le[8] = {0xff, 0xff, 0, 0, 0, 0, 0, 0};
    fwrite(le, 1, 8, f);
    fwrite("{}", 1, 2, f);
    fclose(f);
    mk_st_set *s = NULL;
    CHECK(mk_st_open_file(&s, p("len.st")) == MK_ERR_FORMAT && strstr(mk_last_error(), "runs past the end"), "%s", mk_last_error());
    mk_st_free(s);
}

static void test_sharded(void) {
    float a[2] = {1, 2}, b[1] = {3};
    char d[256];
    snprintf(d, sizeof d, "%s/sh", tmpdir);
    mkdir(d, 0755);
    write_st(p("sh/model-00001-of-00002.safetensors"), "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", a, 8);
    write_st(p("sh/model-00002-of-00002.safetensors"), "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", b, 4);
    FILE *f = fopen(p("sh/model.safetensors.index.json"), "w");
    fputs("{\"metadata\":{\"total_size\":12},\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00002-of-00002.safetensors\"}}", f);
    fclose(f);
    mk_st_set *s = NULL;
    REQUIRE(mk_st_open_dir(&s, d) == MK_OK, "%s", mk_last_error());
    CHECK(s->n_files == 2 && s->n_entries == 2, "%d files %zu entries", s->n_files, s->n_entries);
    const mk_st_entry *eb = mk_st_find(s, "b");
    float bv = 0;
    if (eb) memcpy(&bv, eb->t.data, sizeof bv); /* the data need not be 4-byte aligned */
    CHECK(eb && bv == 3.0f, "b");
    mk_st_free(s);
    /* The index names a tensor that is in no shard. */
    f = fopen(p("sh/model.safetensors.index.json"), "w");
    fputs("{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\",\"c\":\"model-00002-of-00002.safetensors\"}}", f);
    fclose(f);
    CHECK(mk_st_open_dir(&s, d) == MK_ERR_MISSING && strstr(mk_last_error(), "'c'"), "%s", mk_last_error());
    /* A shard path that leaves the directory. */
    f = fopen(p("sh/model.safetensors.index.json"), "w");
    fputs("{\"weight_map\":{\"a\":\"../x.safetensors\"}}", f);
    fclose(f);
    CHECK(mk_st_open_dir(&s, d) == MK_ERR_FORMAT && strstr(mk_last_error(), "outside the directory"), "%s", mk_last_error());
    /* A missing shard. */
    f = fopen(p("sh/model.safetensors.index.json"), "w");
    fputs("{\"weight_map\":{\"a\":\"model-00009-of-00009.safetensors\"}}", f);
    fclose(f);
    CHECK(mk_st_open_dir(&s, d) == MK_ERR_IO && strstr(mk_last_error(), "model-00009-of-00009"), "%s", mk_last_error());
}

int main(void) {
    if (!mkdtemp(tmpdir)) return 1;
    RUN(test_roundtrip);
    RUN(test_malformed);
    RUN(test_sharded);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return TEST_SUMMARY("test_safetensors");
}
