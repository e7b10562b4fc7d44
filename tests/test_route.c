/* Routing policies on hand-made router logits, and on a fixture model. */
#include "mk_test.h"
#include "moekit.h"
#include "route/route.h"

#include <jansson.h>

static const float logits8[8] = {0.5f, 2.0f, -1.0f, 1.5f, 0.0f, 1.5f, -3.0f, 0.25f};

static void softmax(const float *z, float *p, int n) {
    float mx = z[0], s = 0;
    for (int i = 1; i < n; i++) mx = z[i] > mx ? z[i] : mx;
    for (int i = 0; i < n; i++) s += p[i] = expf(z[i] - mx);
    for (int i = 0; i < n; i++) p[i] /= s;
}

static void test_topk_ties_and_norm(void) {
    float p[8], scratch[MK_ROUTE_SCRATCH(8)], w[8];
    int32_t ids[8];
    softmax(logits8, p, 8);
    mk_route_cfg rc = {.n_expert = 8, .k = 3, .slots = 3, .norm_topk = false, .rank = -1};
    CHECK(mk_route_select(&rc, logits8, ids, w, scratch) == 3, "count");
    /* experts 3 and 5 tie at 1.5: the lower index comes first */
    CHECK(ids[0] == 1 && ids[1] == 3 && ids[2] == 5, "ids %d %d %d", ids[0], ids[1], ids[2]);
    CHECK(w[0] == p[1] && w[1] == p[3], "raw weights");
    rc.norm_topk = true;
    mk_route_select(&rc, logits8, ids, w, scratch);
    CHECK(fabsf(w[0] + w[1] + w[2] - 1.0f) < 1e-6f, "renormalised sum %g", w[0] + w[1] + w[2]);
}

static void test_topp(void) {
    float scratch[MK_ROUTE_SCRATCH(8)], w[8], p[8];
    int32_t ids[8];
    softmax(logits8, p, 8);
    mk_route_cfg rc = {.n_expert = 8, .k = 2, .slots = 8, .top_p = 1.0f, .rank = -1};
    CHECK(mk_route_select(&rc, logits8, ids, w, scratch) == 8, "topp:1.0 uses all experts");
    rc.top_p = 0.3f; /* p[1] ≈ 0.33 alone exceeds 0.3 */
    CHECK(mk_route_select(&rc, logits8, ids, w, scratch) == 1 && ids[0] == 1 && ids[1] == -1, "topp:0.3 -> %d", ids[0]);
    rc.top_p = 0.5f;
    int64_t n = mk_route_select(&rc, logits8, ids, w, scratch);
    float cum = 0;
    for (int64_t j = 0; j < n; j++) cum += w[j];
    CHECK(cum > 0.5f && cum - w[n - 1] <= 0.5f, "smallest prefix crossing 0.5: n=%lld cum=%g", (long long)n, cum);
    rc.slots = 2; /* KMAX caps it */
    CHECK(mk_route_select(&rc, logits8, ids, w, scratch) == 2, "KMAX");
}

/* A sigmoid router (DeepSeek-V3, GLM): the choice by score + selection bias within the best groups,
 * the weights the unbiased scores renormalised and scaled; top-p accumulates the scores normalised
 * over all experts. Expected values worked out by hand from the logits. */
static void test_sigmoid_groups(void) {
    float scratch[MK_ROUTE_SCRATCH(8)], w[8], s[8];
    int32_t ids[8];
    for (int e = 0; e < 8; e++) s[e] = 1.0f / (1.0f + expf(-logits8[e]));
    /* bias makes expert 6 (lowest score) the best choice, expert 1 (best score) drop behind 5 and 3 */
    const float bias[8] = {0, -0.3f, 0, 0, 0, 0, 0.9f, 0};
    mk_route_cfg rc = {.n_expert = 8, .k = 2, .slots = 2, .norm_topk = true, .rank = -1, .sigmoid = true, .sel_bias = bias, .scale = 2.5f};
    CHECK(mk_route_select(&rc, logits8, ids, w, scratch) == 2, "count");
    /* choice: s+b = .622 .580 .269 .818 .5 .818 .947 .562 -> 6, then 3 (ties 3/5: lower index) */
    CHECK(ids[0] == 6 && ids[1] == 3, "ids %d %d", ids[0], ids[1]);
    CHECK(fabsf(w[0] - 2.5f * s[6] / (s[6] + s[3])) < 1e-6f && fabsf(w[1] - 2.5f * s[3] / (s[6] + s[3])) < 1e-6f, "weights %g %g", w[0], w[1]);
    /* 4 groups of 2 (top-2 sum): {.622+.580, .269+.818, .5+.818, .947+.562} -> groups 3 and 2 (1.509, 1.318) */
    rc.n_group = 4;
    rc.topk_group = 2;
    rc.group_top2 = true;
    CHECK(mk_route_select(&rc, logits8, ids, w, scratch) == 2 && ids[0] == 6 && ids[1] == 5, "grouped ids %d %d", ids[0], ids[1]);
    /* group score = the best one: {.622, .818, .818, .947} -> groups 3 and 1 (ties 1/2: lower) */
    rc.group_top2 = false;
    CHECK(mk_route_select(&rc, logits8, ids, w, scratch) == 2 && ids[0] == 6 && ids[1] == 3, "max-group ids %d %d", ids[0], ids[1]);
    /* top-p 0.3 over s / sum(s): choice order 6, 3, 5, 0, 1, 7, 4, 2 */
    rc.n_group = 1;
    rc.top_p = 0.3f;
    rc.slots = 8;
    float tot = 0;
    for (int e = 0; e < 8; e++) tot += s[e];
    int64_t n = mk_route_select(&rc, logits8, ids, w, scratch);
    float cum = 0;
    int64_t want = 0;
    const int order[8] = {6, 3, 5, 0, 1, 7, 4, 2};
    while (want < 8 && cum <= 0.3f) cum += s[order[want++]] / tot;
    CHECK(n == want && ids[0] == 6, "top-p on normalised sigmoid scores: %lld experts, expected %lld", (long long)n, (long long)want);
    float ws = 0;
    for (int64_t j = 0; j < n; j++) ws += w[j];
    CHECK(fabsf(ws - 2.5f) < 1e-5f, "top-p weights follow the router's rule (renormalised, x2.5): sum %g", ws);
}

/* tests/fixtures/methods/topp.json (tools/gen_methods_reference.py, numpy): the paper's top-p
 * (raw probabilities, the crossing expert kept), with and without a KMAX cap, and :renorm. */
static void test_topp_reference(void) {
    json_error_t je;
    json_t *root = json_load_file("tests/fixtures/methods/topp.json", 0, &je);
    REQUIRE(root, "topp.json: %s", je.text);
    json_t *cases = json_object_get(root, "cases");
    REQUIRE(json_array_size(cases) >= 20, "topp.json: too few cases");
    float z[16], w[16], scratch[MK_ROUTE_SCRATCH(16)];
    int32_t ids[16];
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        for (int e = 0; e < 16; e++) z[e] = (float)json_number_value(json_array_get(json_object_get(c, "logits"), (size_t)e));
        const int64_t kmax = json_integer_value(json_object_get(c, "kmax"));
        for (int renorm = 0; renorm < 2; renorm++) {
            /* norm_topk as Qwen3/Mixtral: top-p must not follow it unless asked to */
            mk_route_cfg rc = {.n_expert = 16, .k = 2, .slots = kmax ? kmax : 16, .norm_topk = true, .rank = -1,
                               .top_p = (float)json_number_value(json_object_get(c, "p")), .top_p_renorm = renorm};
            const int64_t n = mk_route_select(&rc, z, ids, w, scratch);
            json_t *rid = json_object_get(c, "ids"), *rw = json_object_get(c, renorm ? "weights_renorm" : "weights");
            CHECK(n == (int64_t)json_array_size(rid), "case %zu renorm %d: %lld experts, reference %zu", i, renorm, (long long)n, json_array_size(rid));
            for (int64_t j = 0; j < n && j < (int64_t)json_array_size(rid); j++) {
                CHECK(ids[j] == json_integer_value(json_array_get(rid, (size_t)j)), "case %zu slot %lld: expert %d", i, (long long)j, ids[j]);
                const double ref = json_number_value(json_array_get(rw, (size_t)j));
                CHECK(fabs(w[j] - ref) <= 1e-6 * fabs(ref) + 1e-7, "case %zu renorm %d slot %lld: weight %.8g, reference %.8g", i, renorm, (long long)j, w[j], ref);
            }
        }
    }
    json_decref(root);
}

static void test_skip_boost_mask(void) {
    float scratch[MK_ROUTE_SCRATCH(8)], w[8], w0[8];
    int32_t ids[8], ids0[8];
    mk_route_cfg rc = {.n_expert = 8, .k = 3, .slots = 3, .rank = -1};
    mk_route_select(&rc, logits8, ids0, w0, scratch);
    rc.skip_beta = 0.0f;
    mk_route_select(&rc, logits8, ids, w, scratch);
    CHECK(!memcmp(ids, ids0, sizeof(int32_t) * 3) && !memcmp(w, w0, sizeof(float) * 3), "skip:0 equals default");
    rc.skip_beta = 0.7f; /* p3/p1 = e^-0.5 ≈ 0.61 < 0.7: experts 3 and 5 dropped */
    CHECK(mk_route_select(&rc, logits8, ids, w, scratch) == 1 && ids[0] == 1 && ids[1] == -1, "skip:0.7");
    rc.skip_beta = 0;
    mk_route_boost b = {.layer = 0, .expert = 6, .factor = 1000.0f};
    rc.boosts = &b;
    rc.n_boosts = 1;
    mk_route_select(&rc, logits8, ids, w, scratch);
    CHECK(ids[0] == 6, "boosted expert first, got %d", ids[0]);
    rc.n_boosts = 0;
    uint8_t mask[8] = {1, 0, 1, 0, 1, 0, 1, 1};
    rc.mask = mask;
    rc.norm_topk = true;
    mk_route_select(&rc, logits8, ids, w, scratch);
    CHECK(ids[0] == 0 && ids[1] == 7 && ids[2] == 4, "masked top-3 %d %d %d", ids[0], ids[1], ids[2]);
    rc.mask = NULL;
    rc.rank = 2; /* ranks: 1, 3, 5 (tie, lower first), 0, ... */
    CHECK(mk_route_select(&rc, logits8, ids, w, scratch) == 1 && ids[0] == 5 && w[0] == 1.0f && ids[1] == -1, "rank:2 -> %d w %g", ids[0], w[0]);
    rc.rank = -1;
    rc.mask = mask;
    mk_route_select(&rc, logits8, ids, w, scratch);
    /* renormalised over the kept experts, as a physically pruned router would be */
    float z[4] = {logits8[0], logits8[7], logits8[4], logits8[2]}, p[4];
    softmax(z, p, 4);
    float s = p[0] + p[1] + p[2];
    CHECK(fabsf(w[0] - p[0] / s) < 1e-6f, "masked weight %g vs %g", w[0], p[0] / s);
}

static void test_parse(void) {
    mk_route_opts o = {0};
    CHECK(mk_route_parse(&o, "topk:4") == MK_OK && o.k == 4, "topk");
    CHECK(mk_route_parse(&o, "topp:0.4:6") == MK_OK && fabsf(o.top_p - 0.4f) < 1e-7f && o.k_max == 6 && !o.top_p_renorm, "topp");
    CHECK(mk_route_parse(&o, "topp:0.4:renorm") == MK_OK && o.k_max == 0 && o.top_p_renorm, "topp:P:renorm");
    CHECK(mk_route_parse(&o, "topp:0.4:3:renorm") == MK_OK && o.k_max == 3 && o.top_p_renorm, "topp:P:KMAX:renorm");
    CHECK(mk_route_parse(&o, "topp:0.5") == MK_OK && o.k_max == 0 && !o.top_p_renorm, "topp:P resets KMAX and renorm");
    CHECK(mk_route_parse(&o, "skip:0.25") == MK_OK && o.skip_beta == 0.25f, "skip");
    CHECK(mk_route_parse(&o, "boost:1:3:2.5") == MK_OK && o.n_boosts == 1 && o.boosts[0].expert == 3, "boost");
    CHECK(mk_route_parse(&o, "rank:2") == MK_OK && o.rank_only && o.rank == 2, "rank");
    const char *bad[] = {"rank:-1", "topk:0", "topk:x", "topp:1.5", "topp", "skip:2", "boost:1:2", "foo:1", "", "topk:3:4", "topp:0.4:renorm:3", "topp:0.4:x", "topp:0.4:2:3", "topp:0.4:2:renorm:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(mk_route_parse(&o, bad[i]) == MK_ERR_ARG, "'%s' accepted", bad[i]);
        CHECK(strstr(mk_last_error(), "expected topk:K") != NULL, "'%s': message lacks the syntax: %s", bad[i], mk_last_error());
    }
    mk_route_opts_clear(&o);
}

/* On a fixture model: topk:<model k> is the default path bit for bit; topp:1.0 routes to every
 * expert; skip:0 is the default; a mask keeping every expert is the default. */
static void run_logits(const char *dir, const mk_route_opts *ro, float *out, size_t *T, double *avg) {
    mk_model *m = NULL;
    mk_ctx *c = NULL;
    REQUIRE(mk_model_load(&m, dir) == MK_OK, "%s", mk_last_error());
    const int32_t ids[12] = {5, 17, 3, 99, 42, 7, 7, 250, 11, 0, 64, 128};
    *T = 12;
    REQUIRE(mk_ctx_new(&c, m, 16, 0) == MK_OK, "%s", mk_last_error());
    REQUIRE(mk_ctx_set_route(c, ro) == MK_OK, "%s", mk_last_error());
    CHECK(mk_ctx_forward(c, ids, 12, MK_LOGITS_ALL, out) == MK_OK, "%s", mk_last_error());
    *avg = mk_ctx_experts_per_token(c, 0);
    mk_ctx_free(c);
    mk_model_free(m);
}

static void test_policies_on_model(void) {
    const char *dir = "tests/fixtures/qwen3_moe"; /* E = 8, k = 4, vocab 304 */
    size_t V = 304, T;
    float *a = calloc(12 * V, sizeof(float)), *b = calloc(12 * V, sizeof(float));
    double avg;
    run_logits(dir, NULL, a, &T, &avg);
    CHECK(avg == 4.0, "default uses k = 4, got %g", avg);
    mk_route_opts o = {.k = 4};
    run_logits(dir, &o, b, &T, &avg);
    CHECK(!memcmp(a, b, T * V * sizeof(float)), "topk:4 differs from the default");
    mk_route_opts s0 = {.skip_beta = 0};
    run_logits(dir, &s0, b, &T, &avg);
    CHECK(!memcmp(a, b, T * V * sizeof(float)), "skip:0 differs from the default");
    uint8_t mask[3 * 8];
    memset(mask, 1, sizeof mask);
    mk_route_opts mk = {.mask = mask};
    run_logits(dir, &mk, b, &T, &avg);
    CHECK(!memcmp(a, b, T * V * sizeof(float)), "an all-kept mask differs from the default");
    mk_route_opts tp = {.top_p = 1.0f};
    run_logits(dir, &tp, b, &T, &avg);
    CHECK(avg == 8.0, "topp:1.0 uses %g experts per token, expected all 8", avg);
    mk_route_opts k2 = {.k = 2};
    run_logits(dir, &k2, b, &T, &avg);
    CHECK(avg == 2.0 && memcmp(a, b, T * V * sizeof(float)), "topk:2: %g experts, logits must change", avg);
    free(a);
    free(b);
}

int main(void) {
    RUN(test_policies_on_model);
    RUN(test_topk_ties_and_norm);
    RUN(test_topp);
    RUN(test_sigmoid_groups);
    RUN(test_topp_reference);
    RUN(test_skip_boost_mask);
    RUN(test_parse);
    return TEST_SUMMARY("test_route");
}
