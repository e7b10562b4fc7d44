/* GGUF models end to end: tiny random HF checkpoints of each architecture (written here as
 * config.json + model.safetensors, F32) are written as GGUF by mk_gguf_write_model (what
 * `moekit quantize` runs) and loaded back through mk_model_load. F32 GGUF logits must equal the
 * safetensors run exactly (names, layouts, Mixtral's q/k permutation and metadata all round-trip);
 * the other types must stay within stated bounds of it. Where the HF fixtures of tests/fixtures/
 * exist, they get the same f32 and q8_0 checks. */
#include "compress/quant_gguf.h"
#include "format/gguf.h"
#include "format/safetensors.h"
#include "mk_test.h"
#include "moekit.h"

#include <sys/stat.h>
#include <unistd.h>

enum { H = 256, NH = 4, NKV = 2, DH = 64, FF = 256, FFS = 256, E = 4, K = 2, L = 2, V = 320, T = 16 };

static uint64_t rs = 88172645463325252ull;
static float frand(void) { /* uniform in [-1, 1) */
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (float)((double)(rs >> 11) / 4503599627370496.0 - 1.0);
}

/* A safetensors file built in memory: names, shapes and random F32 data. */
typedef struct stw {
    char *hdr;
    size_t hlen, hcap;
    float *data;
    size_t n, cap;
} stw;

static void st_add(stw *w, const char *name, int nd, const int64_t *shape, float scale, float offset) {
    size_t cnt = 1;
    for (int i = 0; i < nd; i++) cnt *= (size_t)shape[i];
    if (w->n + cnt > w->cap) {
        w->cap = (w->n + cnt) * 2;
        w->data = realloc(w->data, w->cap * sizeof(float));
    }
    for (size_t i = 0; i < cnt; i++) w->data[w->n + i] = offset + scale * frand();
    char ent[512];
    int o = snprintf(ent, sizeof ent, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[", w->hlen > 1 ? "," : "", name);
    for (int i = 0; i < nd; i++) o += snprintf(ent + o, sizeof ent - (size_t)o, i ? ",%lld" : "%lld", (long long)shape[i]);
    snprintf(ent + o, sizeof ent - (size_t)o, "],\"data_offsets\":[%zu,%zu]}", w->n * 4, (w->n + cnt) * 4);
    size_t el = strlen(ent);
    if (w->hlen + el + 2 > w->hcap) {
        w->hcap = (w->hlen + el + 2) * 2;
        w->hdr = realloc(w->hdr, w->hcap);
    }
    memcpy(w->hdr + w->hlen, ent, el + 1);
    w->hlen += el;
    w->n += cnt;
}

static bool st_save(stw *w, const char *path) {
    w->hdr[w->hlen++] = '}';
    while ((w->hlen + 8) % 8) w->hdr[w->hlen++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    uint64_t n = w->hlen;
    bool ok = fwrite(&n, 8, 1, f) == 1 && fwrite(w->hdr, 1, w->hlen, f) == w->hlen && fwrite(w->data, 4, w->n, f) == w->n;
    ok &= fclose(f) == 0;
    free(w->hdr);
    free(w->data);
    memset(w, 0, sizeof *w);
    return ok;
}

#define S(...) ((const int64_t[]){__VA_ARGS__})

/* Writes a tiny checkpoint of model_type `mt` into dir. */
static bool make_model(const char *dir, const char *mt) {
    mkdir(dir, 0755);
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return false;
    const bool mixtral = !strcmp(mt, "mixtral"), qwen2 = !strcmp(mt, "qwen2_moe"), qwen3 = !strcmp(mt, "qwen3_moe"), olmoe = !strcmp(mt, "olmoe");
    const char *cls = mixtral ? "MixtralForCausalLM" : qwen2 ? "Qwen2MoeForCausalLM" : qwen3 ? "Qwen3MoeForCausalLM" : "OlmoeForCausalLM";
    /* OLMoE as released has as many kv heads as heads, and llama.cpp's olmoe assumes it
     * (attn_k_norm {n_embd}); the others get grouped-query attention. */
    const int nkv = olmoe ? NH : NKV;
    fprintf(f, "{\"architectures\":[\"%s\"],\"model_type\":\"%s\",\"vocab_size\":%d,\"hidden_size\":%d,\"num_hidden_layers\":%d,"
               "\"num_attention_heads\":%d,\"num_key_value_heads\":%d,\"head_dim\":%d,\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,"
               "\"max_position_embeddings\":512,\"num_experts_per_tok\":%d,\"tie_word_embeddings\":false,\"hidden_act\":\"silu\",\"bos_token_id\":1,\"eos_token_id\":2",
            cls, mt, V, H, L, NH, nkv, DH, K);
    if (mixtral) fprintf(f, ",\"num_local_experts\":%d,\"intermediate_size\":%d}", E, FF);
    if (qwen2) fprintf(f, ",\"num_experts\":%d,\"moe_intermediate_size\":%d,\"shared_expert_intermediate_size\":%d,\"intermediate_size\":%d,\"norm_topk_prob\":false}", E, FF, FFS, FF);
    if (qwen3) fprintf(f, ",\"num_experts\":%d,\"moe_intermediate_size\":%d,\"intermediate_size\":%d,\"norm_topk_prob\":true}", E, FF, FF);
    if (olmoe) fprintf(f, ",\"num_experts\":%d,\"intermediate_size\":%d,\"norm_topk_prob\":false,\"clip_qkv\":8.0}", E, FF);
    fclose(f);
    stw w = {.hdr = malloc(2), .hlen = 1, .hcap = 2};
    w.hdr[0] = '{';
    const float ws = 0.08f;
    st_add(&w, "model.embed_tokens.weight", 2, S(V, H), 1.0f, 0);
    st_add(&w, "model.norm.weight", 1, S(H), 0.1f, 1.0f);
    st_add(&w, "lm_head.weight", 2, S(V, H), ws, 0);
    for (int l = 0; l < L; l++) {
        char n[160], p[96];
#define A(suffix, nd, shape, sc, off) (snprintf(n, sizeof n, "model.layers.%d.%s", l, suffix), st_add(&w, n, nd, shape, sc, off))
        A("input_layernorm.weight", 1, S(H), 0.1f, 1.0f);
        A("post_attention_layernorm.weight", 1, S(H), 0.1f, 1.0f);
        A("self_attn.q_proj.weight", 2, S(NH * DH, H), ws, 0);
        A("self_attn.k_proj.weight", 2, S(nkv * DH, H), ws, 0);
        A("self_attn.v_proj.weight", 2, S(nkv * DH, H), ws, 0);
        A("self_attn.o_proj.weight", 2, S(H, NH * DH), ws, 0);
        if (qwen2) {
            A("self_attn.q_proj.bias", 1, S(NH * DH), 0.1f, 0);
            A("self_attn.k_proj.bias", 1, S(NKV * DH), 0.1f, 0);
            A("self_attn.v_proj.bias", 1, S(NKV * DH), 0.1f, 0);
        }
        if (qwen3) {
            A("self_attn.q_norm.weight", 1, S(DH), 0.1f, 1.0f);
            A("self_attn.k_norm.weight", 1, S(DH), 0.1f, 1.0f);
        }
        if (olmoe) {
            A("self_attn.q_norm.weight", 1, S(NH * DH), 0.1f, 1.0f);
            A("self_attn.k_norm.weight", 1, S(nkv * DH), 0.1f, 1.0f);
        }
        const char *moe = mixtral ? "block_sparse_moe" : "mlp";
        snprintf(p, sizeof p, "%s.gate.weight", moe);
        A(p, 2, S(E, H), 0.3f, 0);
        for (int e = 0; e < E; e++) {
            const char *g = mixtral ? "w1" : "gate_proj", *u = mixtral ? "w3" : "up_proj", *d = mixtral ? "w2" : "down_proj";
            snprintf(p, sizeof p, "%s.experts.%d.%s.weight", moe, e, g);
            A(p, 2, S(FF, H), ws, 0);
            snprintf(p, sizeof p, "%s.experts.%d.%s.weight", moe, e, u);
            A(p, 2, S(FF, H), ws, 0);
            snprintf(p, sizeof p, "%s.experts.%d.%s.weight", moe, e, d);
            A(p, 2, S(H, FF), ws, 0);
        }
        if (qwen2) {
            A("mlp.shared_expert.gate_proj.weight", 2, S(FFS, H), ws, 0);
            A("mlp.shared_expert.up_proj.weight", 2, S(FFS, H), ws, 0);
            A("mlp.shared_expert.down_proj.weight", 2, S(H, FFS), ws, 0);
            A("mlp.shared_expert_gate.weight", 2, S(1, H), 0.1f, 0);
        }
#undef A
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    return st_save(&w, path);
}

/* Logits (T, vocab) of a fixed prompt. NULL on failure (message printed). */
static float *run_logits(const char *path, const int32_t *ids, size_t n, int64_t *vocab) {
    mk_model *m = NULL;
    if (mk_model_load(&m, path) != MK_OK) {
        fprintf(stderr, "  load %s: %s\n", path, mk_last_error());
        return NULL;
    }
    *vocab = mk_model_get_info(m)->vocab;
    mk_ctx *c = NULL;
    float *lg = calloc(n * (size_t)*vocab, sizeof(float));
    if (mk_ctx_new(&c, m, n, 0) != MK_OK || mk_ctx_forward(c, ids, n, MK_LOGITS_ALL, lg) != MK_OK) {
        fprintf(stderr, "  forward %s: %s\n", path, mk_last_error());
        free(lg);
        lg = NULL;
    }
    mk_ctx_free(c);
    mk_model_free(m);
    return lg;
}

static size_t argmax(const float *x, size_t n) {
    size_t b = 0;
    for (size_t i = 1; i < n; i++) if (x[i] > x[b]) b = i;
    return b;
}

static bool files_equal(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool eq = fa && fb;
    while (eq) {
        int x = fgetc(fa), y = fgetc(fb);
        if (x != y) eq = false;
        if (x == EOF || y == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return eq;
}

typedef struct qtype { const char *name; mk_dtype dt; double max_rel; double min_top1; } qtype;

/* Bounds: max |Δlogit| relative to max |logit| of the f32 run, and the share of positions whose
 * top-1 token matches, measured on these random 2-layer models (the test prints them). Random
 * routers have near-ties, so a quantized model flips a few of the 64 (token, slot) routing
 * choices (q8_0: 0-2, q6_k: 0-3 here), and those flips, not the weight error itself, set the max
 * difference: bf16 ~4e-3, q8_0 ~8e-3 without a flip and up to ~6e-2 with one, q6_k up to ~0.13,
 * q4_k / q4_0 ~0.15-0.19, mxfp4 (experts only, the rest q8_0) ~0.09-0.11. The bounds leave margin
 * over the worst measured value. */
static const qtype qtypes[] = {
    {"f32", MK_DT_F32, 0.0, 1.0},     {"f16", MK_DT_F16, 0.005, 1.0},  {"bf16", MK_DT_BF16, 0.03, 0.85},
    {"q8_0", MK_DT_Q8_0, 0.1, 0.8},   {"q6_k", MK_DT_Q6_K, 0.2, 0.75}, {"q4_k", MK_DT_Q4_K, 0.35, 0.6},
    {"q4_0", MK_DT_Q4_0, 0.35, 0.6},  {"mxfp4", MK_DT_MXFP4, 0.2, 0.75},
};

/* given_ids (T) or NULL for a fixed pattern below V. */
static void roundtrip(const char *dir, const char *label, size_t n_types, const int32_t *given_ids) {
    int32_t ids[T];
    for (int t = 0; t < T; t++) ids[t] = given_ids ? given_ids[t] : (int32_t)((t * 37 + 11) % V);
    int64_t vocab = 0, v2 = 0;
    float *ref = run_logits(dir, ids, T, &vocab);
    REQUIRE(ref, "%s: safetensors run", label);
    double scale = 0;
    for (size_t i = 0; i < T * (size_t)vocab; i++) scale = fmax(scale, fabs(ref[i]));
    for (size_t q = 0; q < n_types; q++) {
        char out[512];
        snprintf(out, sizeof out, "%s/model-%s.gguf", dir, qtypes[q].name);
        mk_model *m = NULL;
        REQUIRE(mk_model_load(&m, dir) == MK_OK, "%s: %s", label, mk_last_error());
        mk_gguf_write_report rep;
        mk_status st = mk_gguf_write_model(m, qtypes[q].dt, out, label, &rep);
        mk_model_free(m);
        REQUIRE(st == MK_OK, "%s %s: write: %s", label, qtypes[q].name, mk_last_error());
        if (qtypes[q].dt == MK_DT_MXFP4) /* llama.cpp's MXFP4_MOE: the routed experts MXFP4, other matrices Q8_0 */
            CHECK(rep.bytes_by_dtype[MK_DT_MXFP4] > 0 && rep.bytes_by_dtype[MK_DT_Q8_0] > 0 && rep.n_fallback == 0,
                  "%s mxfp4: MXFP4 %lld bytes, Q8_0 %lld bytes, %zu fallbacks", label, (long long)rep.bytes_by_dtype[MK_DT_MXFP4],
                  (long long)rep.bytes_by_dtype[MK_DT_Q8_0], rep.n_fallback);
        float *lg = run_logits(out, ids, T, &v2);
        REQUIRE(lg && v2 == vocab, "%s %s: GGUF run", label, qtypes[q].name);
        double d = 0;
        size_t same = 0;
        for (size_t i = 0; i < T * (size_t)vocab; i++) d = fmax(d, fabs((double)lg[i] - ref[i]));
        for (size_t t = 0; t < T; t++) same += argmax(lg + t * (size_t)vocab, (size_t)vocab) == argmax(ref + t * (size_t)vocab, (size_t)vocab);
        printf("  %-16s %-5s max|Δlogit| %.3e (%.2e of max|logit| %.2f), top-1 same %zu/%d\n", label, qtypes[q].name, d, d / scale, scale, same, T);
        CHECK(d / scale <= qtypes[q].max_rel, "%s %s: max |Δlogit| %.3g = %.3g of the scale > %.3g", label, qtypes[q].name, d, d / scale, qtypes[q].max_rel);
        CHECK((double)same >= qtypes[q].min_top1 * T, "%s %s: top-1 same at %zu of %d positions", label, qtypes[q].name, same, T);
        free(lg);
        if (q == 0) { /* the f32 file re-quantized equals a direct q8_0 write, byte for byte */
            char o2[512], o3[512];
            snprintf(o2, sizeof o2, "%s/model-re.gguf", dir);
            snprintf(o3, sizeof o3, "%s/model-direct.gguf", dir);
            mk_model *a = NULL, *b = NULL;
            CHECK(mk_model_load(&a, out) == MK_OK && mk_gguf_write_model(a, MK_DT_Q8_0, o2, label, NULL) == MK_OK, "%s: requantize: %s", label, mk_last_error());
            CHECK(mk_model_load(&b, dir) == MK_OK && mk_gguf_write_model(b, MK_DT_Q8_0, o3, label, NULL) == MK_OK, "%s: direct: %s", label, mk_last_error());
            mk_model_free(a);
            mk_model_free(b);
            CHECK(files_equal(o2, o3), "%s: GGUF→q8_0 and HF→q8_0 files differ", label);
            unlink(o2);
            unlink(o3);
        }
        if (!getenv("MK_KEEP")) unlink(out);
    }
    free(ref);
}

static char tmpdir[64];

static void arch_test(const char *mt) {
    char dir[128];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, mt);
    REQUIRE(make_model(dir, mt), "%s: cannot write the test checkpoint", mt);
    roundtrip(dir, mt, sizeof qtypes / sizeof qtypes[0], NULL);
    if (getenv("MK_KEEP")) { /* MK_KEEP=1 keeps the checkpoints and GGUF files for inspection */
        printf("  kept %s\n", dir);
        return;
    }
    char p[256];
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    rmdir(dir);
}

static void test_mixtral(void) { arch_test("mixtral"); }
static void test_qwen2_moe(void) { arch_test("qwen2_moe"); }
static void test_qwen3_moe(void) { arch_test("qwen3_moe"); }
static void test_olmoe(void) { arch_test("olmoe"); }

/* The HF fixtures (tests/fixtures/<name>, from tools/gen_fixtures.py), when present. */
static void test_hf_fixtures(void) {
    const char *names[] = {"mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "qwen3_moe_fused"};
    int found = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char dir[128], cfg[160];
        snprintf(dir, sizeof dir, "tests/fixtures/%s", names[i]);
        snprintf(cfg, sizeof cfg, "%s/config.json", dir);
        if (access(cfg, R_OK)) continue;
        found++;
        /* The GGUF files go to the temp dir: a directory of symlinks to the fixture's files. */
        char link[160], cwd[512], a[1024], b[1024];
        snprintf(link, sizeof link, "%s/fx_%s", tmpdir, names[i]);
        mkdir(link, 0755);
        if (!getcwd(cwd, sizeof cwd)) strcpy(cwd, ".");
        static const char *const files[2] = {"config.json", "model.safetensors"};
        for (int k = 0; k < 2; k++) {
            snprintf(a, sizeof a, "%s/%s/%s", cwd, dir, files[k]);
            snprintf(b, sizeof b, "%s/%s", link, files[k]);
            CHECK(symlink(a, b) == 0, "symlink %s", b);
        }
        /* The fixture's own prompt: tools/gen_fixtures.py chose seeds whose routing has no near-ties
         * on it, so the quantized models are compared without tie flips. */
        snprintf(a, sizeof a, "%s/reference.safetensors", dir);
        mk_st_set *ref = NULL;
        REQUIRE(mk_st_open_file(&ref, a) == MK_OK && mk_st_find(ref, "input_ids"), "%s", mk_last_error());
        roundtrip(link, names[i], 4, mk_st_find(ref, "input_ids")->t.data); /* f32, f16, bf16, q8_0 (fixture rows need not be whole K-quant blocks) */
        mk_st_free(ref);
        for (int k = 0; k < 2; k++) {
            snprintf(b, sizeof b, "%s/%s", link, files[k]);
            unlink(b);
        }
        rmdir(link);
    }
    CHECK(found == 5, "only %d of the 5 HF fixtures found", found);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mk_test_ggufm_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(test_mixtral);
    RUN(test_qwen2_moe);
    RUN(test_qwen3_moe);
    RUN(test_olmoe);
    RUN(test_hf_fixtures);
    rmdir(tmpdir);
    return TEST_SUMMARY("test_gguf_model");
}
