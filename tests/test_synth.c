/* safetensors writer (streamed, atomic) and `synth` (random models of every architecture that
 * load and run with finite logits). */
#include "base/base.h"
#include "format/safetensors.h"
#include "model/arch.h"
#include "model/model.h"
#include "format/safetensors_write.h"
#include "mk_test.h"
#include "moekit.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static void test_writer_roundtrip(void) {
    char path[300];
    snprintf(path, sizeof path, "%s/w.safetensors", tmpdir);
    mk_st_decl d[3] = {{"a.weight", MK_DT_F32, 2, {2, 3}}, {"b", MK_DT_BF16, 1, {5}}, {"empty", MK_DT_F16, 2, {0, 4}}};
    mk_st_writer *w;
    REQUIRE(mk_st_writer_open(&w, path, d, 3, NULL) == MK_OK, "%s", mk_last_error());
    CHECK(mk_st_writer_remaining(w) == 24 + 10, "remaining %zu", mk_st_writer_remaining(w));
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[5];
    for (int i = 0; i < 5; i++) b[i] = mk_f32_to_bf16((float)i - 2.5f);
    CHECK(mk_st_writer_write(w, a, 10) == MK_OK, "piece 1");
    CHECK(!mk_file_exists(path), "target absent before close");
    CHECK(mk_st_writer_write(w, (uint8_t *)a + 10, 14) == MK_OK, "piece 2");
    CHECK(mk_st_writer_write(w, b, 10) == MK_OK, "piece 3");
    CHECK(mk_st_writer_write(w, b, 1) != MK_OK, "writing past the end fails");
    REQUIRE(mk_st_writer_close(w) == MK_OK, "%s", mk_last_error());
    mk_st_set *s;
    REQUIRE(mk_st_open_file(&s, path) == MK_OK, "%s", mk_last_error());
    const mk_st_entry *ea = mk_st_find(s, "a.weight"), *eb = mk_st_find(s, "b"), *ee = mk_st_find(s, "empty");
    REQUIRE(ea && eb && ee, "all tensors present");
    CHECK(ea->t.dtype == MK_DT_F32 && ea->t.shape[0] == 2 && ea->t.shape[1] == 3 && !memcmp(ea->t.data, a, 24), "a");
    CHECK(eb->t.dtype == MK_DT_BF16 && !memcmp(eb->t.data, b, 10), "b");
    CHECK(ee->t.nbytes == 0, "empty");
    CHECK(ea->offset % 8 == 0, "data starts 8-aligned");
    mk_st_free(s);
    unlink(path);
}

static void test_writer_incomplete(void) {
    char path[300];
    snprintf(path, sizeof path, "%s/inc.safetensors", tmpdir);
    mk_st_decl d[1] = {{"x", MK_DT_F32, 1, {4}}};
    mk_st_writer *w;
    REQUIRE(mk_st_writer_open(&w, path, d, 1, NULL) == MK_OK, "%s", mk_last_error());
    float v[2] = {1, 2};
    mk_st_writer_write(w, v, 8);
    CHECK(mk_st_writer_close(w) != MK_OK, "close of an incomplete file fails");
    CHECK(strstr(mk_last_error(), "only 8 of the declared 16 bytes") != NULL, "message: %s", mk_last_error());
    CHECK(!mk_file_exists(path), "no file under the target name");
    mk_st_decl dup[2] = {{"x", MK_DT_F32, 1, {1}}, {"x", MK_DT_F32, 1, {1}}};
    CHECK(mk_st_writer_open(&w, path, dup, 2, NULL) != MK_OK, "duplicate names rejected");
    mk_st_writer_abort(NULL);
    DIR *dir = opendir(tmpdir);
    int left = 0;
    struct dirent *de;
    while ((de = readdir(dir))) left += strstr(de->d_name, ".tmp.") != NULL;
    closedir(dir);
    CHECK(left == 0, "%d temporary files left behind", left);
}

static const char *configs[] = {
    "{\"architectures\":[\"Qwen3MoeForCausalLM\"],\"vocab_size\":97,\"hidden_size\":32,\"num_hidden_layers\":3,"
    "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":16,\"num_experts\":6,\"num_experts_per_tok\":2,"
    "\"moe_intermediate_size\":24,\"intermediate_size\":40,\"mlp_only_layers\":[2],\"norm_topk_prob\":true,\"rms_norm_eps\":1e-6}",
    "{\"architectures\":[\"Qwen2MoeForCausalLM\"],\"vocab_size\":97,\"hidden_size\":32,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":4,\"num_key_value_heads\":4,\"num_experts\":4,\"num_experts_per_tok\":2,"
    "\"moe_intermediate_size\":24,\"shared_expert_intermediate_size\":48,\"intermediate_size\":40,\"rms_norm_eps\":1e-6}",
    "{\"architectures\":[\"MixtralForCausalLM\"],\"vocab_size\":97,\"hidden_size\":32,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"num_local_experts\":4,\"num_experts_per_tok\":2,"
    "\"intermediate_size\":24,\"rms_norm_eps\":1e-5}",
    "{\"architectures\":[\"OlmoeForCausalLM\"],\"vocab_size\":97,\"hidden_size\":32,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":4,\"num_experts\":8,\"num_experts_per_tok\":3,\"intermediate_size\":24,"
    "\"rms_norm_eps\":1e-5,\"clip_qkv\":null}",
};

static void test_synth_archs(void) {
    const char *dts[] = {"f32", "bf16", "f16"};
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
        char cpath[300], out[300];
        snprintf(cpath, sizeof cpath, "%s/c%zu.json", tmpdir, i);
        snprintf(out, sizeof out, "%s/m%zu", tmpdir, i);
        FILE *f = fopen(cpath, "w");
        REQUIRE(f, "write config");
        fputs(configs[i], f);
        fclose(f);
        mk_synth_opts o = {.n_layer = i == 0 ? 3 : 0, .dtype = dts[i % 3], .seed = 7, .quiet = true};
        REQUIRE(mk_model_synth(cpath, out, &o) == MK_OK, "config %zu: %s", i, mk_last_error());
        mk_model *m;
        REQUIRE(mk_model_load(&m, out) == MK_OK, "config %zu: %s", i, mk_last_error());
        const mk_model_info *in = mk_model_get_info(m);
        mk_ctx *c;
        REQUIRE(mk_ctx_new(&c, m, 16, 8) == MK_OK, "%s", mk_last_error());
        int32_t tok[5] = {1, 5, 9, 96, 0};
        float *lg = malloc(5 * (size_t)in->vocab * sizeof(float));
        CHECK(mk_ctx_forward(c, tok, 5, MK_LOGITS_ALL, lg) == MK_OK, "%s", mk_last_error());
        bool finite = true, nonzero = false;
        for (size_t k = 0; k < 5 * (size_t)in->vocab; k++) {
            finite &= isfinite(lg[k]);
            nonzero |= lg[k] != 0;
        }
        CHECK(finite && nonzero, "config %zu: logits finite and not all zero", i);
        free(lg);
        mk_ctx_free(c);
        mk_model_free(m);
        /* same seed, same bytes; synth into the existing directory replaces the files */
        char out2[300];
        snprintf(out2, sizeof out2, "%s/m%zu", tmpdir, i);
        CHECK(mk_model_synth(cpath, out2, &o) == MK_OK, "re-synth into an existing dir: %s", mk_last_error());
    }
    char cpath[300], out[300];
    snprintf(cpath, sizeof cpath, "%s/c0.json", tmpdir);
    snprintf(out, sizeof out, "%s/too_many", tmpdir);
    mk_synth_opts o = {.n_layer = 9, .quiet = true};
    CHECK(mk_model_synth(cpath, out, &o) != MK_OK, "--layers beyond the config fails");
    CHECK(!mk_file_exists(out), "and leaves nothing");
}

/* The architecture's table (model/arch.h) is what transformers writes: for every fixture saved in
 * the per-expert layout, the walk names exactly the file's tensors with their shapes (nothing
 * missing, nothing extra but the known-unused), and synth of the fixture's config loads. */
typedef struct walk_check {
    const mk_st_set *st;
    uint8_t *seen;
    const char *name;
    size_t n;
} walk_check;

static mk_status check_item(const mk_arch_item *it, void *user) {
    walk_check *w = user;
    const mk_st_entry *e = mk_st_find(w->st, it->hf);
    w->n++;
    CHECK(e != NULL, "%s: the table names '%s', which the checkpoint lacks", w->name, it->hf);
    if (!e) return MK_OK;
    w->seen[e - w->st->entries] = 1;
    bool same = e->t.ndim == it->ndim && e->t.shape[0] == it->shape[0] && (it->ndim == 1 || e->t.shape[1] == it->shape[1]);
    CHECK(same, "%s: '%s' has shape [%lld, %lld] in the file, [%lld, %lld] in the table", w->name, it->hf, (long long)e->t.shape[0],
          (long long)(e->t.ndim > 1 ? e->t.shape[1] : 0), (long long)it->shape[0], (long long)it->shape[1]);
    return MK_OK;
}

static void test_table_matches_fixtures(void) {
    static const char *const fixtures[] = {"mixtral", "mixtral_sharded", "mixtral_bf16", "qwen2_moe", "qwen2_moe_bf16", "qwen2_moe_dense0",
                                           "qwen3_moe", "qwen3_moe_bf16", "qwen3_moe_attn_bias", "qwen3_moe_yarn", "olmoe", "olmoe_bf16",
                                           "olmoe_attn_bias", "mixtral_yarn"};
    for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++) {
        char dir[256], cpath[300], out[300];
        snprintf(dir, sizeof dir, "tests/fixtures/%s", fixtures[i]);
        snprintf(cpath, sizeof cpath, "%s/config.json", dir);
        char *text = NULL;
        mk_config cfg;
        memset(&cfg, 0, sizeof cfg);
        REQUIRE(mk_read_file(cpath, &text, NULL) == MK_OK && mk_config_parse(&cfg, text, cpath) == MK_OK, "%s: %s", fixtures[i], mk_last_error());
        mk_st_set *st;
        REQUIRE(mk_st_open_dir(&st, dir) == MK_OK, "%s", mk_last_error());
        walk_check w = {.st = st, .seen = calloc(st->n_entries + 1, 1), .name = fixtures[i]};
        CHECK(mk_arch_walk(&cfg, NULL, check_item, &w) == MK_OK, "%s: walk: %s", fixtures[i], mk_last_error());
        size_t extra = 0;
        for (size_t k = 0; k < st->n_entries; k++)
            if (!w.seen[k] && !mk_tensor_known_unused(st->entries[k].name, &cfg)) {
                extra++;
                CHECK(false, "%s: tensor '%s' of the checkpoint is not in the table", fixtures[i], st->entries[k].name);
            }
        CHECK(w.n == st->n_entries && extra == 0, "%s: the table walks %zu tensors, the file holds %zu", fixtures[i], w.n, st->n_entries);
        free(w.seen);
        mk_st_free(st);
        mk_config_free(&cfg);
        free(text);
        /* synth writes the same table: its model of this config loads */
        snprintf(out, sizeof out, "%s/t%zu", tmpdir, i);
        mk_synth_opts o = {.dtype = "f32", .seed = 3, .quiet = true};
        REQUIRE(mk_model_synth(cpath, out, &o) == MK_OK, "%s: synth: %s", fixtures[i], mk_last_error());
        mk_model *m;
        CHECK(mk_model_load(&m, out) == MK_OK, "%s: synth's model does not load: %s", fixtures[i], mk_last_error());
        mk_model_free(m);
    }
}

/* A model copied into memory (mk_model_make_resident) gives the same logits, bit for bit, as
 * the same model run from its file mapping, and advice to drop its layers changes nothing. */
static void test_resident_same_logits(void) {
    char cpath[300], out[300];
    snprintf(cpath, sizeof cpath, "%s/big.json", tmpdir);
    snprintf(out, sizeof out, "%s/big", tmpdir);
    FILE *f = fopen(cpath, "w");
    REQUIRE(f, "write config");
    fputs("{\"architectures\":[\"OlmoeForCausalLM\"],\"vocab_size\":1000,\"hidden_size\":256,\"num_hidden_layers\":2,"
          "\"num_attention_heads\":4,\"num_experts\":8,\"num_experts_per_tok\":2,\"intermediate_size\":256,"
          "\"rms_norm_eps\":1e-5,\"clip_qkv\":null}", f);
    fclose(f);
    mk_synth_opts o = {.dtype = "bf16", .seed = 3, .quiet = true};
    REQUIRE(mk_model_synth(cpath, out, &o) == MK_OK, "%s", mk_last_error());
    mk_model *m[2];
    REQUIRE(mk_model_load(&m[0], out) == MK_OK, "%s", mk_last_error());
    REQUIRE(mk_model_load(&m[1], out) == MK_OK, "%s", mk_last_error());
    size_t bytes = 0;
    CHECK(mk_model_make_resident(m[1], &bytes) == MK_OK, "%s", mk_last_error());
    char wpath[320];
    snprintf(wpath, sizeof wpath, "%s/model.safetensors", out);
    struct stat sb;
    REQUIRE(stat(wpath, &sb) == 0 && (size_t)sb.st_size > 2 * MK_MAP_ALIGN, "%s: a weight file of several huge pages", wpath);
    if (bytes) CHECK(bytes == (size_t)sb.st_size, "copied %zu bytes of a %lld-byte weight file", bytes, (long long)sb.st_size);
    else printf("     (no copy made: transparent huge pages off or memory short)\n");
    mk_model_advise_weights(m[1], 0, false);
    mk_model_advise_weights(m[1], -1, false);
    const size_t V = 1000;
    float *lg[2];
    int32_t tok[6] = {3, 999, 17, 0, 512, 64};
    for (int k = 0; k < 2; k++) {
        lg[k] = malloc(6 * V * sizeof(float));
        mk_ctx *c;
        REQUIRE(lg[k] && mk_ctx_new(&c, m[k], 16, 8) == MK_OK, "%s", mk_last_error());
        CHECK(mk_ctx_forward(c, tok, 5, MK_LOGITS_ALL, lg[k]) == MK_OK, "%s", mk_last_error());
        CHECK(mk_ctx_forward(c, tok + 5, 1, MK_LOGITS_ALL, lg[k] + 5 * V) == MK_OK, "%s", mk_last_error());
        mk_ctx_free(c);
    }
    CHECK(!memcmp(lg[0], lg[1], 6 * V * sizeof(float)), "resident and mapped logits differ");
    /* the roof's bytes per token: all weight bytes but the embedding table (one bf16 row is
     * read) and 6 of 8 experts (3 bf16 256 × 256 matrices each) in each of the 2 layers */
    const char *names[8];
    int64_t by[8], total = 0;
    for (size_t i = 0, nd = mk_model_bytes_by_dtype(m[0], names, by, 8); i < nd; i++) total += by[i];
    const int64_t want = total - (int64_t)V * 256 * 2 + 256 * 2 - 2 * 6 * 3 * 256 * 256 * 2;
    CHECK(mk_model_token_bytes(m[0]) == want, "token bytes %lld, want %lld (of %lld)", (long long)mk_model_token_bytes(m[0]),
          (long long)want, (long long)total);
    double s = 0;
    for (size_t i = 0; i < 6 * V; i++) s += fabs(lg[0][i]);
    CHECK(s > 0 && isfinite(s), "logits finite and not zero (sum |l| %g)", s);
    for (int k = 0; k < 2; k++) {
        free(lg[k]);
        mk_model_free(m[k]);
    }
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mk_test_synth.XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(test_writer_roundtrip);
    RUN(test_writer_incomplete);
    RUN(test_synth_archs);
    RUN(test_table_matches_fixtures);
    RUN(test_resident_same_logits);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "cannot remove %s\n", tmpdir);
    return TEST_SUMMARY("test_synth");
}
