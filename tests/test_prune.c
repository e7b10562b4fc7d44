/* Pruning writes checkpoints that (a) transformers computes the same logits on as moekit
 * (tests/fixtures/prune/<name>.safetensors from tools/gen_prune_reference.py) and (b) equal a
 * virtual-mask run of the base model with the same experts masked. One test per architecture. */
#include "compress/compress.h"
#include "tensor/kernels.h"
#include "format/safetensors.h"
#include "mk_test.h"
#include "moekit.h"

#include <unistd.h>

static double run(const char *dir, const int32_t *ids, size_t T, const uint8_t *mask, float *logits) {
    mk_model *m = NULL;
    mk_ctx *c = NULL;
    if (mk_model_load(&m, dir) || mk_ctx_new(&c, m, T, 0)) {
        fprintf(stderr, "  %s: %s\n", dir, mk_last_error());
        mk_model_free(m);
        return -1;
    }
    mk_route_opts ro = {.mask = mask};
    mk_status st = mk_ctx_set_route(c, &ro);
    if (!st) st = mk_ctx_forward(c, ids, T, MK_LOGITS_ALL, logits);
    mk_ctx_free(c);
    mk_model_free(m);
    return st ? -1 : 0;
}

static double maxdiff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - (double)b[i]));
    return d;
}

/* The pruned checkpoint of fixture `name` (reference tests/fixtures/prune/<ref>.safetensors, plan:
 * the reference's stored scores when it has them, else random with seed 7; keep_n experts) loads in
 * transformers with the same logits, and equals the original model with the dropped experts masked. */
static void check_plan(const char *name, const char *refname, int64_t keep_n) {
    char src[256], refp[300], out[300];
    snprintf(src, sizeof src, "tests/fixtures/%s", name);
    snprintf(refp, sizeof refp, "tests/fixtures/prune/%s.safetensors", refname);
    snprintf(out, sizeof out, "/tmp/mk_prune_%s_%d", name, (int)getpid());
    mk_model *m = NULL;
    mk_st_set *ref = NULL, *fx = NULL;
    char fxp[300];
    snprintf(fxp, sizeof fxp, "%s/reference.safetensors", src);
    REQUIRE(mk_model_load(&m, src) == MK_OK && mk_st_open_file(&ref, refp) == MK_OK && mk_st_open_file(&fx, fxp) == MK_OK, "%s", mk_last_error());
    const int64_t L = m->cfg.n_layer, E = m->cfg.n_expert, V = m->cfg.vocab;
    const mk_tensor *tid = &mk_st_find(fx, "input_ids")->t, *tl = &mk_st_find(ref, "logits")->t, *tk = &mk_st_find(ref, "kept")->t;
    const size_t T = (size_t)tid->shape[0];
    /* The same plan as tools/gen_prune_reference.py: its stored scores (REAP from a profile), or
     * random with seed 7. */
    double *scores = calloc((size_t)(L * E), sizeof *scores);
    const mk_st_entry *ts = mk_st_find(ref, "scores");
    if (ts) {
        REQUIRE(ts->t.dtype == MK_DT_F64 && mk_tensor_numel(&ts->t) == L * E, "%s: stored scores", refname);
        memcpy(scores, ts->t.data, (size_t)(L * E) * sizeof *scores);
    } else {
        uint64_t x = 7ull * 0x9e3779b97f4a7c15ull + 1;
        for (int64_t i = 0; i < L * E; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            scores[i] = (double)(x >> 11);
        }
    }
    uint8_t *keep = calloc((size_t)(L * E), 1);
    REQUIRE(mk_prune_select(m, scores, keep_n, MK_BUDGET_LAYER, m->cfg.k_active, NULL, keep) == MK_OK, "%s", mk_last_error());
    size_t j = 0, same = 1;
    for (int64_t l = 0; l < L; l++)
        for (int64_t e = 0; e < E && m->layers[l].is_moe; e++)
            if (keep[l * E + e]) same &= j < (size_t)tk->shape[0] && ((const int32_t *)tk->data)[j++] == e;
    CHECK(same && j == (size_t)tk->shape[0], "%s: the plan differs from the one the reference was made with", name);
    mk_write_opts wo = {.force = true, .record_json = "{\"kept_experts\": []}\n"};
    REQUIRE(mk_write_pruned(m, keep, out, &wo) == MK_OK, "%s", mk_last_error());

    float *pruned = calloc(T * (size_t)V, sizeof(float)), *virt = calloc(T * (size_t)V, sizeof(float));
    CHECK(run(out, tid->data, T, NULL, pruned) == 0, "%s: run pruned", name);
    CHECK(run(src, tid->data, T, keep, virt) == 0, "%s: run masked", name);
    double d_hf = maxdiff(pruned, tl->data, T * (size_t)V), d_virt = maxdiff(pruned, virt, T * (size_t)V);
    printf("  %-22s pruned vs transformers max|Δlogit| %.2e, pruned vs virtual mask %.2e\n", refname, d_hf, d_virt);
    CHECK(d_hf <= 1e-4, "%s: pruned model vs transformers max |Δlogit| %.3g", name, d_hf);
    CHECK(d_virt <= 1e-5, "%s: pruned model vs virtual mask max |Δlogit| %.3g", name, d_virt);

    /* An existing output directory is refused without force and left as it was. */
    wo.force = false;
    CHECK(mk_write_pruned(m, keep, out, &wo) == MK_ERR_ARG && strstr(mk_last_error(), "already exists"), "%s", mk_last_error());
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", out);
    CHECK(system(cmd) == 0, "cleanup");
    free(pruned);
    free(virt);
    free(keep);
    free(scores);
    mk_st_free(ref);
    mk_st_free(fx);
    mk_model_free(m);
}

static void check_arch(const char *name) {
    mk_model *m = NULL;
    char src[256];
    snprintf(src, sizeof src, "tests/fixtures/%s", name);
    REQUIRE(mk_model_load(&m, src) == MK_OK, "%s", mk_last_error());
    const int64_t E = m->cfg.n_expert;
    mk_model_free(m);
    check_plan(name, name, E - 2);
}
static void test_mixtral(void) { check_arch("mixtral"); }
static void test_qwen2_moe(void) { check_arch("qwen2_moe"); }
static void test_qwen3_moe(void) { check_arch("qwen3_moe"); }
static void test_olmoe(void) { check_arch("olmoe"); }
static void test_qwen3_moe_fused(void) { check_arch("qwen3_moe_fused"); }
/* DeepSeek and GLM-4.5, REAP at 50%: shared experts kept, the selection bias sliced with the router rows, and a
 * group-limited router (V2 max-per-group, V3 top-2-sum per group) keeping an equal share of each
 * group, so the pruned model routes as the original with the dropped experts masked */
static void test_deepseek_v2_lite(void) { check_plan("deepseek_v2_lite", "reap_deepseek_v2_lite", 4); }
static void test_deepseek_v2_group(void) { check_plan("deepseek_v2_group", "reap_deepseek_v2_group", 8); }
static void test_deepseek_v3(void) { check_plan("deepseek_v3", "reap_deepseek_v3", 8); }
static void test_glm4_moe(void) { check_plan("glm4_moe", "reap_glm4_moe", 8); }
/* GPT-OSS, REAP at 25% and 50%: transformers' fused layout written back (router and expert biases
 * sliced with their experts); the MXFP4 fixture's blocks copied byte for byte, its products exact
 * (the reference is transformers' dequantized computation) */
static void test_gpt_oss(void) {
    check_plan("gpt_oss", "reap6_gpt_oss", 6);
    check_plan("gpt_oss", "reap4_gpt_oss", 4);
}
static void test_gpt_oss_mxfp4(void) {
    REQUIRE(mk_kern_isa() >= MK_ISA_AVX2, "the exact MXFP4 product needs AVX2");
    const mk_qact_mode old = mk_kern_set_qact(MK_QACT_NEVER);
    check_plan("gpt_oss_mxfp4", "reap6_gpt_oss_mxfp4", 6);
    check_plan("gpt_oss_mxfp4", "reap4_gpt_oss_mxfp4", 4);
    mk_kern_set_qact(old);
}

/* A group-limited model refuses a keep count that would leave its groups unequal. */
static void test_group_keep(void) {
    mk_model *m = NULL;
    REQUIRE(mk_model_load(&m, "tests/fixtures/deepseek_v3") == MK_OK, "%s", mk_last_error());
    const int64_t L = m->cfg.n_layer, E = m->cfg.n_expert;
    double *scores = calloc((size_t)(L * E), sizeof *scores);
    uint8_t *keep = calloc((size_t)(L * E), 1);
    for (int64_t i = 0; i < L * E; i++) scores[i] = (double)(i % 7);
    CHECK(mk_prune_select(m, scores, 6, MK_BUDGET_LAYER, m->cfg.k_active, NULL, keep) == MK_ERR_ARG && strstr(mk_last_error(), "multiple of 4"), "%s", mk_last_error());
    CHECK(mk_prune_select(m, scores, 8, MK_BUDGET_GLOBAL, m->cfg.k_active, NULL, keep) == MK_ERR_ARG && strstr(mk_last_error(), "groups"), "%s", mk_last_error());
    CHECK(mk_prune_select(m, scores, 8, MK_BUDGET_LAYER, m->cfg.k_active, NULL, keep) == MK_OK, "%s", mk_last_error());
    for (int64_t l = 1; l < L; l++)
        for (int64_t g = 0; g < 4; g++) {
            int64_t n = 0;
            for (int64_t e = g * 4; e < g * 4 + 4; e++) n += keep[l * E + e];
            CHECK(n == 2, "layer %lld group %lld keeps %lld of 4", (long long)l, (long long)g, (long long)n);
        }
    free(scores);
    free(keep);
    mk_model_free(m);
}

/* A global budget: MoE layers keep different numbers of experts (E-1 in the first, k in the
 * second, ...). The written per-layer model loads with each layer's count, its logits equal the
 * virtual-mask run of the base model, and what cannot hold it refuses it clearly. */
static void check_per_layer(const char *name) {
    char src[256], out[300], cfgp[340];
    snprintf(src, sizeof src, "tests/fixtures/%s", name);
    snprintf(out, sizeof out, "/tmp/mk_prune_pl_%s_%d", name, (int)getpid());
    snprintf(cfgp, sizeof cfgp, "%s/config.json", out);
    mk_model *m = NULL, *pm = NULL;
    mk_st_set *fx = NULL;
    char fxp[300];
    snprintf(fxp, sizeof fxp, "%s/reference.safetensors", src);
    REQUIRE(mk_model_load(&m, src) == MK_OK && mk_st_open_file(&fx, fxp) == MK_OK, "%s", mk_last_error());
    const int64_t L = m->cfg.n_layer, E = m->cfg.n_expert, V = m->cfg.vocab, K = m->cfg.k_active;
    const mk_tensor *tid = &mk_st_find(fx, "input_ids")->t;
    const size_t T = (size_t)tid->shape[0];
    uint8_t *keep = calloc((size_t)(L * E), 1);
    int64_t want[16] = {0}, i_moe = 0;
    uint64_t x = 11;
    for (int64_t l = 0; l < L; l++) {
        if (!m->layers[l].is_moe) continue;
        want[l] = i_moe++ % 2 == 0 ? E - 1 : K; /* alternate: nearly whole, then as small as allowed */
        for (int64_t n = 0; n < want[l];) { /* a seeded random choice of want[l] experts */
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            int64_t e = (int64_t)(x % (uint64_t)E);
            if (!keep[l * E + e]) { keep[l * E + e] = 1; n++; }
        }
    }
    mk_write_opts wo = {.force = true, .record_json = "{}\n"};
    REQUIRE(mk_write_pruned(m, keep, out, &wo) == MK_OK, "%s", mk_last_error());
    REQUIRE(mk_model_load(&pm, out) == MK_OK, "%s: %s", name, mk_last_error());
    const mk_model_info *in = mk_model_get_info(pm);
    CHECK(in->n_expert == E - 1 && in->k_active == K && in->experts_per_layer, "%s: n_expert %lld k %lld", name, (long long)in->n_expert, (long long)in->k_active);
    int64_t idle = 0;
    for (int64_t l = 0; l < L; l++) {
        CHECK(mk_model_layer_experts(pm, l) == want[l], "%s: layer %lld has %lld experts, want %lld", name, (long long)l,
              (long long)mk_model_layer_experts(pm, l), (long long)want[l]);
        if (want[l]) idle += (want[l] - K) * 3 * in->d_model * in->d_ff_expert;
    }
    CHECK(in->params_total - in->params_active == idle, "%s: active parameters count each layer's own experts", name);
    /* the stored tensors have each layer's count: the second MoE layer's router has K rows */
    bool rows_ok = false;
    for (size_t i = 0; i < pm->st->n_entries; i++) {
        const mk_st_entry *en = &pm->st->entries[i];
        if (strstr(en->name, ".gate.weight") && !strstr(en->name, "experts") && en->t.shape[0] == K) rows_ok = true;
    }
    CHECK(rows_ok, "%s: no router stored with %lld rows", name, (long long)K);
    float *pruned = calloc(T * (size_t)V, sizeof(float)), *virt = calloc(T * (size_t)V, sizeof(float));
    CHECK(run(out, tid->data, T, NULL, pruned) == 0, "%s: run per-layer model", name);
    CHECK(run(src, tid->data, T, keep, virt) == 0, "%s: run masked", name);
    double d = maxdiff(pruned, virt, T * (size_t)V);
    printf("  %-16s per-layer model (%lld/%lld experts) vs virtual mask max|Δlogit| %.2e\n", name, (long long)(E - 1), (long long)K, d);
    CHECK(d <= 1e-5, "%s: per-layer model vs virtual mask max |Δlogit| %.3g", name, d);
    /* a user mask on the per-layer model combines with its own: masking expert 0 of the first MoE
     * layer = masking it (and the dropped experts) in the base model */
    uint8_t *um = malloc((size_t)(L * E)), *bm = malloc((size_t)(L * E));
    memset(um, 1, (size_t)(L * E));
    memcpy(bm, keep, (size_t)(L * E));
    for (int64_t l = 0; l < L; l++)
        if (m->layers[l].is_moe) {
            um[l * (E - 1)] = 0; /* the per-layer model has E-1 columns per layer */
            for (int64_t e = 0; e < E; e++)
                if (keep[l * E + e]) { bm[l * E + e] = 0; break; } /* its expert 0 = the first kept */
            break;
        }
    for (int64_t l = 0; l < L; l++) /* base-model mask rows must allow something in dense layers too */
        if (!m->layers[l].is_moe) memset(bm + l * E, 1, (size_t)E);
    CHECK(run(out, tid->data, T, um, pruned) == 0 && run(src, tid->data, T, bm, virt) == 0, "%s: masked runs", name);
    d = maxdiff(pruned, virt, T * (size_t)V);
    CHECK(d <= 1e-5, "%s: user mask on a per-layer model max |Δlogit| %.3g", name, d);
    /* compressing it again or writing GGUF is refused with the reason */
    CHECK(mk_require_uniform_experts(pm, "prune") == MK_ERR_UNSUPPORTED && strstr(mk_last_error(), "moekit_experts_per_layer"), "%s", mk_last_error());
    CHECK(mk_write_pruned(pm, keep, out, &wo) == MK_ERR_UNSUPPORTED, "rewriting a per-layer model accepted");
    mk_model_free(pm);
    pm = NULL;
    /* bad counts in config.json: one error naming the file and the field */
    char *text = NULL;
    size_t tl = 0;
    REQUIRE(mk_read_file(cfgp, &text, &tl) == MK_OK, "%s", mk_last_error());
    char *key = strstr(text, "\"moekit_experts_per_layer\"");
    REQUIRE(key != NULL, "%s: config.json has no moekit_experts_per_layer", name);
    const struct { const char *list, *msg; } bad[] = {
        {"[1]", "must be a list of"},
        {NULL, "must be an expert count in"},    /* a count above num_experts (built below) */
        {NULL, "tensor"},                        /* a count the tensors do not have */
    };
    for (int b = 0; b < 3; b++) {
        char list[128] = "[", *pp = list + 1;
        for (int64_t l = 0; l < L; l++) {
            int64_t v = want[l];
            if (b == 1 && want[l]) v = E;      /* > num_experts (E-1) */
            if (b == 2 && want[l] == E - 1) v = E - 2;
            pp += snprintf(pp, 16, "%s%lld", l ? ", " : "", (long long)v);
        }
        snprintf(pp, 4, "]");
        const char *lst = bad[b].list ? bad[b].list : list;
        char *end = strchr(key, ']');
        size_t head = (size_t)(strchr(key, '[') - text);
        char *t2 = malloc(tl + 256);
        snprintf(t2, tl + 256, "%.*s%s%s", (int)head, text, lst, end + 1);
        REQUIRE(mk_write_file_atomic(cfgp, t2, strlen(t2)) == MK_OK, "%s", mk_last_error());
        free(t2);
        mk_status st = mk_model_load(&pm, out);
        CHECK(st != MK_OK && strstr(mk_last_error(), bad[b].msg) && strstr(mk_last_error(), out), "%s bad case %d: %s", name, b, mk_last_error());
        mk_model_free(pm);
        pm = NULL;
    }
    free(text);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", out);
    CHECK(system(cmd) == 0, "cleanup");
    free(um);
    free(bm);
    free(pruned);
    free(virt);
    free(keep);
    mk_st_free(fx);
    mk_model_free(m);
}

static void test_per_layer_mixtral(void) { check_per_layer("mixtral"); }
static void test_per_layer_qwen2_moe(void) { check_per_layer("qwen2_moe"); }
static void test_per_layer_qwen3_moe(void) { check_per_layer("qwen3_moe"); }
static void test_per_layer_olmoe(void) { check_per_layer("olmoe"); }
static void test_per_layer_qwen3_moe_fused(void) { check_per_layer("qwen3_moe_fused"); }

static void test_budgets(void) {
    mk_model *m = NULL;
    REQUIRE(mk_model_load(&m, "tests/fixtures/qwen3_moe") == MK_OK, "%s", mk_last_error());
    double s[24] = {0};
    for (int e = 0; e < 8; e++) { s[0 * 8 + e] = 8 - e; s[2 * 8 + e] = e == 7 ? 100 : 1; }
    uint8_t keep[24], prot[24] = {0};
    CHECK(mk_prune_select(m, s, 5, MK_BUDGET_LAYER, 4, NULL, keep) == MK_OK, "%s", mk_last_error());
    CHECK(keep[0] && keep[4] && !keep[5] && !keep[7], "layer 0 keeps its 5 best");
    CHECK(keep[8] && keep[15], "dense layer kept whole");
    prot[7] = 1; /* protect a weak expert of layer 0 */
    CHECK(mk_prune_select(m, s, 5, MK_BUDGET_LAYER, 4, prot, keep) == MK_OK && keep[7] && !keep[4], "protected expert kept");
    /* Global: 10 experts over 2 layers, at least 4 each; layer 2's mass is in one expert, so
     * layer 0's flatter scores win the extra slots. */
    CHECK(mk_prune_select(m, s, 5, MK_BUDGET_GLOBAL, 4, NULL, keep) == MK_OK, "%s", mk_last_error());
    int n0 = 0, n2 = 0;
    for (int e = 0; e < 8; e++) { n0 += keep[e]; n2 += keep[16 + e]; }
    CHECK(n0 + n2 == 10 && n2 >= 4 && n0 == 6, "global split %d + %d", n0, n2);
    CHECK(mk_prune_select(m, s, 3, MK_BUDGET_LAYER, 4, NULL, keep) == MK_ERR_ARG && strstr(mk_last_error(), "fewer than the 4"), "%s", mk_last_error());
    CHECK(mk_prune_select(m, s, 9, MK_BUDGET_LAYER, 4, NULL, keep) == MK_ERR_ARG, "keep > E accepted");
    mk_model_free(m);
}

/* NAEE: exhaustive and greedy searches agree where greedy is exact (one expert dropped), the
 * exhaustive optimum is never worse than greedy, and keeping every expert costs nothing. */
static void test_naee(void) {
    mk_model *m = NULL;
    REQUIRE(mk_model_load(&m, "tests/fixtures/olmoe") == MK_OK, "%s", mk_last_error()); /* E = 8, k = 3 */
    int32_t toks[96];
    for (int i = 0; i < 96; i++) toks[i] = (i * 53 + 7) % 272;
    uint8_t a[16], b[16];
    double la[2], lb[2];
    int64_t ev = 0;
    mk_naee_opts ex = {.ctx = 32, .exhaustive_max = 8}, gr = {.ctx = 32, .exhaustive_max = 1};
    REQUIRE(mk_naee_select(m, toks, 96, &ex, 8, a, la, &ev) == MK_OK, "%s", mk_last_error());
    CHECK(la[0] == 0 && la[1] == 0 && ev == 2, "keep all: loss %g %g, %lld evals", la[0], la[1], (long long)ev);
    CHECK(mk_naee_select(m, toks, 96, &ex, 7, a, la, &ev) == MK_OK && ev == 16, "exhaustive C(8,7) x 2 = 16 evals, got %lld", (long long)ev);
    CHECK(mk_naee_select(m, toks, 96, &gr, 7, b, lb, &ev) == MK_OK && ev == 16, "greedy 8 x 2 = 16 evals, got %lld", (long long)ev);
    CHECK(!memcmp(a, b, 16) && la[0] == lb[0] && la[1] == lb[1], "one expert dropped: greedy = exhaustive");
    CHECK(la[0] > 0 && la[1] > 0, "dropping an expert costs something");
    CHECK(mk_naee_select(m, toks, 96, &ex, 5, a, la, &ev) == MK_OK && ev == 2 * 56, "C(8,5) x 2 evals, got %lld", (long long)ev);
    CHECK(mk_naee_select(m, toks, 96, &gr, 5, b, lb, &ev) == MK_OK, "%s", mk_last_error());
    CHECK(la[0] <= lb[0] && la[1] <= lb[1], "exhaustive %g %g worse than greedy %g %g", la[0], la[1], lb[0], lb[1]);
    int n0 = 0;
    for (int e = 0; e < 8; e++) n0 += a[e];
    CHECK(n0 == 5, "layer 0 keeps %d", n0);
    CHECK(mk_naee_select(m, toks, 96, &ex, 2, a, la, &ev) == MK_ERR_ARG, "keep below k accepted");
    mk_model_free(m);
}

/* NAEE's default (expert outputs and their Gram matrix cached once per token) chooses exactly what
 * re-running the MoE block for every candidate subset chooses, with the same losses to rounding:
 * exhaustive and greedy on fixtures, greedy on the 32-expert testbed down to 12 experts. (Experts
 * the calibration tokens never route to cost only rounding noise to drop, in either search, so
 * the two may drop them in a different order; the kept sets agree once all of them are gone.) */
static void naee_same(const char *dir, int64_t vocab, size_t n, size_t ctx, int64_t exh, int64_t keep) {
    mk_model *m = NULL;
    REQUIRE(mk_model_load(&m, dir) == MK_OK, "%s", mk_last_error());
    const int64_t L = m->cfg.n_layer, E = m->cfg.n_expert;
    int32_t *toks = NULL;
    if (vocab > 0) {
        toks = malloc(n * sizeof *toks);
        for (size_t i = 0; i < n; i++) toks[i] = (int32_t)((i * 53 + 7) % (size_t)vocab);
    } else { /* real text: the first 400 bytes of two testbed calibration domains */
        char text[1401];
        size_t len = 0;
        const char *files[2] = {"data/testbed/english.calib.txt", "data/testbed/python.calib.txt"};
        for (int i = 0; i < 2; i++) {
            FILE *f = fopen(files[i], "rb");
            REQUIRE(f, "%s: cannot open", files[i]);
            len += fread(text + len, 1, 400, f);
            fclose(f);
        }
        while (len > 0 && (text[len - 1] & 0xC0) == 0x80) len--; /* whole UTF-8 characters */
        if (len > 0 && (unsigned char)text[len - 1] >= 0xC0) len--;
        mk_tokenizer *tk = NULL;
        REQUIRE(mk_tokenizer_load(dir, &tk) == MK_OK, "%s", mk_last_error());
        REQUIRE(mk_tokenizer_encode(tk, text, len, false, &toks, &n) == MK_OK && n > ctx, "%s", mk_last_error());
        mk_tokenizer_free(tk);
    }
    uint8_t *a = calloc((size_t)(L * E), 1), *b = calloc((size_t)(L * E), 1);
    double *la = calloc((size_t)L, sizeof *la), *lb = calloc((size_t)L, sizeof *lb);
    int64_t ea = 0, eb = 0;
    mk_naee_opts ref = {.ctx = ctx, .exhaustive_max = exh, .reference = true}, fast = {.ctx = ctx, .exhaustive_max = exh};
    REQUIRE(mk_naee_select(m, toks, n, &ref, keep, a, la, &ea) == MK_OK, "%s", mk_last_error());
    REQUIRE(mk_naee_select(m, toks, n, &fast, keep, b, lb, &eb) == MK_OK, "%s", mk_last_error());
    CHECK(!memcmp(a, b, (size_t)(L * E)) && ea == eb, "%s keep %lld (exhaustive up to %lld): the cached search chose differently",
          dir, (long long)keep, (long long)exh);
    for (int64_t l = 0; l < L; l++)
        CHECK(fabs(la[l] - lb[l]) <= 1e-5 * la[l], "%s layer %lld: loss %.9g cached, %.9g re-run", dir, (long long)l, lb[l], la[l]);
    free(toks);
    free(a);
    free(b);
    free(la);
    free(lb);
    mk_model_free(m);
}

static void test_naee_cached(void) {
    naee_same("tests/fixtures/olmoe", 272, 96, 32, 8, 5);
    naee_same("tests/fixtures/olmoe", 272, 96, 32, 1, 3);
    naee_same("tests/fixtures/qwen3_moe", 304, 96, 32, 1, 4);
    naee_same("tests/fixtures/mixtral", 320, 96, 32, 8, 4);
    naee_same("models/testbed", 0, 0, 128, 8, 12);
}

/* CAMERA-P: keeping every neuron reproduces the model bit for bit; at keep-frac 0.5 the written
 * model computes in moekit what transformers computes on it (tools/gen_prune_reference.py). */
static void camera_case(const char *name) {
    char src[128], refp[200], fxp[200], out[200], out1[200];
    snprintf(src, sizeof src, "tests/fixtures/%s", name);
    snprintf(refp, sizeof refp, "tests/fixtures/prune/camera_%s.safetensors", name);
    snprintf(fxp, sizeof fxp, "%s/reference.safetensors", src);
    snprintf(out, sizeof out, "/tmp/mk_camera_%s_%d", name, (int)getpid());
    snprintf(out1, sizeof out1, "/tmp/mk_camera1_%s_%d", name, (int)getpid());
    mk_model *m = NULL;
    mk_st_set *ref = NULL, *fx = NULL;
    REQUIRE(mk_model_load(&m, src) == MK_OK && mk_st_open_file(&ref, refp) == MK_OK && mk_st_open_file(&fx, fxp) == MK_OK, "%s", mk_last_error());
    int32_t calib[256];
    for (int i = 0; i < 256; i++) calib[i] = (i * 53 + 7) % 256;
    const mk_tensor *tid = &mk_st_find(fx, "input_ids")->t, *tl = &mk_st_find(ref, "logits")->t;
    const size_t T = (size_t)tid->shape[0], V = (size_t)m->cfg.vocab;
    const int64_t F = m->cfg.d_ff_expert;
    float *base = calloc(T * V, sizeof(float)), *a = calloc(T * V, sizeof(float)), *b = calloc(T * V, sizeof(float));
    mk_write_opts wo = {.force = true};
    for (int pass = 0; pass < 2; pass++) {
        mk_expert_plan plan = {0};
        float *buf = NULL;
        REQUIRE(mk_camera_plan(m, calib, 256, 64, 0.9, pass ? F / 2 : F, &plan, &buf) == MK_OK, "%s", mk_last_error());
        REQUIRE(mk_write_experts(m, &plan, pass ? out : out1, &wo) == MK_OK, "%s", mk_last_error());
        free((void *)plan.x);
        free(buf);
    }
    CHECK(run(src, tid->data, T, NULL, base) == 0 && run(out1, tid->data, T, NULL, a) == 0 && run(out, tid->data, T, NULL, b) == 0, "runs");
    double d_all = maxdiff(base, a, T * V), d_hf = maxdiff(b, tl->data, T * V), d_half = maxdiff(base, b, T * V);
    printf("  %-10s camera keep 1.0 vs original %.2e; keep 0.5 vs transformers %.2e (vs original %.2e)\n", name, d_all, d_hf, d_half);
    CHECK(d_all == 0, "%s: keeping every neuron changed the logits by %g", name, d_all);
    CHECK(d_hf <= 1e-4, "%s: neuron-pruned model vs transformers max |Δlogit| %g", name, d_hf);
    CHECK(d_half > 1e-3, "%s: pruning half the neurons should change the logits", name);
    char cmd[500];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", out, out1);
    CHECK(system(cmd) == 0, "cleanup");
    free(base); free(a); free(b);
    mk_st_free(ref);
    mk_st_free(fx);
    mk_model_free(m);
}
static void test_camera_qwen3(void) { camera_case("qwen3_moe"); }
static void test_camera_mixtral(void) { camera_case("mixtral"); }
/* DeepSeek-V3 and GLM-4.5 size their shared experts from moe_intermediate_size: the narrower routed
 * experts are written with n_shared_experts scaled so that the unchanged shared MLP keeps its width */
static void test_camera_deepseek_v3(void) { camera_case("deepseek_v3"); }
static void test_camera_glm4_moe(void) { camera_case("glm4_moe"); }

int main(void) {
    RUN(test_camera_qwen3);
    RUN(test_camera_mixtral);
    RUN(test_camera_deepseek_v3);
    RUN(test_camera_glm4_moe);
    RUN(test_naee);
    RUN(test_naee_cached);
    RUN(test_mixtral);
    RUN(test_qwen2_moe);
    RUN(test_qwen3_moe);
    RUN(test_olmoe);
    RUN(test_qwen3_moe_fused);
    RUN(test_deepseek_v2_lite);
    RUN(test_deepseek_v2_group);
    RUN(test_deepseek_v3);
    RUN(test_glm4_moe);
    RUN(test_gpt_oss);
    RUN(test_gpt_oss_mxfp4);
    RUN(test_group_keep);
    RUN(test_budgets);
    RUN(test_per_layer_mixtral);
    RUN(test_per_layer_qwen2_moe);
    RUN(test_per_layer_qwen3_moe);
    RUN(test_per_layer_olmoe);
    RUN(test_per_layer_qwen3_moe_fused);
    return TEST_SUMMARY("test_prune");
}
