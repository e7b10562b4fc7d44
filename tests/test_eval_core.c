/* src/eval: window counting, acc/acc_norm/stderr as lm-eval computes them, lm-eval's left
 * truncation of long loglikelihood requests, and the library-level perplexity against the fixture
 * reference (the CLI test tests/cli/test_eval.sh covers the rest against transformers). */
#include "mk_test.h"
#include "moekit.h"
#include "moekit/eval.h"
#include "eval/eval_internal.h"

#include <jansson.h>

#define FIX "tests/fixtures/"

static void test_count_scored(void) {
    /* stride < ctx: every token but the first */
    CHECK(mk_eval_count_scored(150, 64, 32) == 149, "%zu", mk_eval_count_scored(150, 64, 32));
    /* stride == ctx: each window's first token is not scored (150 = 64 + 64 + 22 → 3 windows) */
    CHECK(mk_eval_count_scored(150, 64, 64) == 147, "%zu", mk_eval_count_scored(150, 64, 64));
    CHECK(mk_eval_count_scored(150, 64, 0) == 147, "stride 0 = ctx");
    CHECK(mk_eval_count_scored(20, 64, 32) == 19, "shorter than ctx: one window");
    CHECK(mk_eval_count_scored(1, 64, 32) == 0, "one token");
    CHECK(mk_eval_count_scored(10, 4, 5) == 0, "stride > ctx");
}

static void test_mc_score(void) {
    /* 4 items: item 0 right by both; item 1 right by acc only (a long gold choice); item 2 right by
     * acc_norm only; item 3 wrong by both. */
    double ll0[] = {-1, -5}, n0[] = {1, 1};
    double ll1[] = {-4, -6}, n1[] = {1, 100};   /* acc picks 0 (gold); norm: -4 vs -0.06 → 1 */
    double ll2[] = {-4, -6}, n2[] = {1, 100};   /* gold 1 */
    double ll3[] = {-9, -1, -2}, n3[] = {1, 1, 1};
    mk_mc_item it[] = {{2, ll0, n0, 0}, {2, ll1, n1, 0}, {2, ll2, n2, 1}, {3, ll3, n3, 0}};
    mk_mc_summary s;
    mk_mc_score(it, 4, &s);
    CHECK(s.n == 4 && fabs(s.acc - 0.5) < 1e-12 && fabs(s.acc_norm - 0.5) < 1e-12, "acc %g acc_norm %g", s.acc, s.acc_norm);
    /* lm-eval mean_stderr: sqrt(sample variance (n-1) / n) = sqrt(p(1-p)/(n-1)) for 0/1 values */
    double want = sqrt(0.25 / 3);
    CHECK(fabs(s.acc_stderr - want) < 1e-12, "stderr %.15g want %.15g", s.acc_stderr, want);
    /* ties: first index, as numpy.argmax */
    double llt[] = {-2, -2}, nt[] = {1, 1};
    mk_mc_item t1 = {2, llt, nt, 0};
    mk_mc_score(&t1, 1, &s);
    CHECK(s.acc == 1 && s.acc_norm == 1, "tie → first index");
}

static void test_loglik_truncation(void) {
    mk_model *m = NULL;
    mk_ctx *c = NULL;
    REQUIRE(mk_model_load(&m, FIX "qwen3_moe") == MK_OK, "%s", mk_last_error());
    REQUIRE(mk_ctx_new(&c, m, 16, 0) == MK_OK, "%s", mk_last_error());
    int32_t ctx[20], cont[3] = {5, 6, 7};
    for (int i = 0; i < 20; i++) ctx[i] = (i * 37) % 300;
    double a, b;
    /* 20 + 3 tokens with max_len 16: the input keeps the last 17 tokens of ctx ++ cont minus the final */
    CHECK(mk_eval_loglik(m, c, ctx, 20, cont, 3, 16, &a, NULL) == MK_OK, "%s", mk_last_error());
    CHECK(mk_eval_loglik(m, c, ctx + 6, 14, cont, 3, 16, &b, NULL) == MK_OK, "%s", mk_last_error());
    CHECK(a == b && isfinite(a) && a < 0, "truncated %.10g vs explicit %.10g", a, b);
    CHECK(mk_eval_loglik(m, c, ctx, 0, cont, 3, 16, &a, NULL) == MK_ERR_ARG, "empty context is an error");
    int32_t big[17] = {0};
    CHECK(mk_eval_loglik(m, c, ctx, 2, big, 17, 16, &a, NULL) == MK_ERR_ARG, "continuation longer than max_len");
    /* one shared context, several continuations (KV reuse) = one request per choice */
    int32_t c1[] = {9}, c2[] = {10, 11, 12, 13}, c3[] = {14, 15};
    const int32_t *conts[] = {c1, c2, c3};
    size_t ns[] = {1, 4, 2};
    double sh[3], one;
    size_t lens[] = {10, 14};   /* 10 + 4 <= 16 + 1: shared path; 14 + 4 > 17: per-choice fallback */
    for (int t = 0; t < 2; t++) {
        CHECK(mk_eval_loglik_shared(m, c, ctx, lens[t], conts, ns, 3, 16, sh, NULL) == MK_OK, "%s", mk_last_error());
        for (int i = 0; i < 3; i++) {
            CHECK(mk_eval_loglik(m, c, ctx, lens[t], conts[i], ns[i], 16, &one, NULL) == MK_OK, "%s", mk_last_error());
            CHECK(fabs(sh[i] - one) <= 1e-9 * fabs(one), "ctx %zu choice %d: shared %.12g vs alone %.12g", lens[t], i, sh[i], one);
        }
    }
    mk_ctx_free(c);
    mk_model_free(m);
}

static void test_ppl_library(void) {
    /* the library on the fixture reference, batch sizes that split windows oddly */
    json_error_t je;
    json_t *ref = json_load_file(FIX "eval/qwen3_moe.ref.json", 0, &je);
    REQUIRE(ref, "ref: %s", je.text);
    FILE *f = fopen(FIX "eval/qwen3_moe.ids", "r");
    REQUIRE(f, "ids");
    int32_t ids[400];
    size_t n = 0;
    while (n < 400 && fscanf(f, "%d", &ids[n]) == 1) n++;
    fclose(f);
    mk_model *m = NULL;
    mk_ctx *c = NULL;
    REQUIRE(mk_model_load(&m, FIX "qwen3_moe") == MK_OK, "%s", mk_last_error());
    REQUIRE(mk_ctx_new(&c, m, 48, 5) == MK_OK, "%s", mk_last_error());
    json_t *p = json_array_get(json_object_get(ref, "ppl"), 2);  /* ctx 48, stride 20 */
    REQUIRE(json_integer_value(json_object_get(p, "ctx")) == 48, "reference order");
    double want = json_real_value(json_object_get(p, "ppl"));
    size_t batches[] = {0, 1, 5, 13};
    for (size_t i = 0; i < 4; i++) {
        mk_eval_opts o = {.ctx = 48, .stride = 20, .batch = batches[i]};
        mk_eval_result r;
        REQUIRE(mk_eval_ppl(m, c, ids, n, &o, &r) == MK_OK, "%s", mk_last_error());
        CHECK(fabs(r.ppl / want - 1) <= 1e-4 && r.n_scored == n - 1, "batch %zu: ppl %.8g vs HF %.8g", batches[i], r.ppl, want);
        mk_eval_result_clear(&r);
    }
    mk_eval_opts bad = {.ctx = 48, .stride = 49};
    mk_eval_result r;
    CHECK(mk_eval_ppl(m, c, ids, n, &bad, &r) == MK_ERR_ARG, "stride > ctx");
    bad.stride = 20;
    CHECK(mk_eval_ppl(m, c, ids, 1, &bad, &r) == MK_ERR_ARG, "one token");
    mk_ctx_free(c);
    mk_model_free(m);
    json_decref(ref);
}

/* A toy GPT-2-like encoder: a token is a run of non-spaces with the spaces before it attached
 * (" b" is one token, a trailing " " is its own token); id = the bytes' sum. */
static mk_status toy_enc(void *u, const char *t, size_t len, bool add_special, int32_t **ids, size_t *n) {
    (void)u;
    (void)add_special;
    int32_t *v = malloc((len + 1) * sizeof *v);
    size_t k = 0, i = 0;
    while (i < len) {
        int32_t id = 0;
        while (i < len && t[i] == ' ') id += t[i++];
        while (i < len && t[i] != ' ') id += (unsigned char)t[i++];
        v[k++] = id;
    }
    *ids = v;
    *n = k;
    return MK_OK;
}

static void test_encode_pair(void) {
    int32_t *c, *k;
    size_t nc, nk;
    /* trailing space of the context moves to the continuation: ctx "a b", cont " c" */
    REQUIRE(mk_eval_encode_pair(toy_enc, NULL, "a b ", "c", &c, &nc, &k, &nk) == MK_OK, "%s", mk_last_error());
    CHECK(nc == 2 && c[0] == 'a' && c[1] == ' ' + 'b', "ctx %zu", nc);
    CHECK(nk == 1 && k[0] == ' ' + 'c', "cont %zu", nk);
    free(c); free(k);
    /* the usual lm-eval request: context without trailing space, continuation " " + choice */
    REQUIRE(mk_eval_encode_pair(toy_enc, NULL, "Answer:", " Paris is", &c, &nc, &k, &nk) == MK_OK, "%s", mk_last_error());
    CHECK(nc == 1 && nk == 2 && k[1] == ' ' + 'i' + 's', "ctx %zu cont %zu", nc, nk);
    free(c); free(k);
    /* empty context: no context tokens, the continuation alone */
    REQUIRE(mk_eval_encode_pair(toy_enc, NULL, "", " x y", &c, &nc, &k, &nk) == MK_OK, "%s", mk_last_error());
    CHECK(nc == 0 && nk == 2, "ctx %zu cont %zu", nc, nk);
    free(c); free(k);
}

/* The stored-logits writer's two top-k paths (insertion for small k, a sort of the whole row for
 * large k) give the same ids in the same order, ties included, and that order is the definition:
 * descending values, the lowest id first among equal values. */
static void test_topk_paths(void) {
    enum { V = 1000 };
    float x[V], va[V], vb[V];
    int32_t ia[V], ib[V];
    mk_topk_pair scratch[V];
    uint32_t s = 12345;
    for (int i = 0; i < V; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((s >> 8) % 37) * 0.25f - 4.0f;   /* 37 levels: every value tied many times */
    }
    x[17] = 100.0f;   /* a unique maximum */
    const uint32_t ks[] = {1, 5, 64, 65, 300, V};
    for (size_t t = 0; t < sizeof ks / sizeof *ks; t++) {
        const uint32_t k = ks[t];
        mk_topk_insert(x, V, k, ia, va);
        mk_topk_sort(x, V, k, ib, vb, scratch);
        size_t diff = 0, bad = 0;
        for (uint32_t i = 0; i < k; i++) {
            diff += ia[i] != ib[i] || va[i] != vb[i];
            bad += va[i] != x[ia[i]];
            if (i) bad += va[i] > va[i - 1] || (va[i] == va[i - 1] && ia[i] <= ia[i - 1]);
        }
        CHECK(diff == 0 && bad == 0 && ia[0] == 17, "k %u: %zu entries differ, %zu out of order", k, diff, bad);
        /* nothing left out is larger than the last kept, or equal to it with a lower id */
        size_t missed = 0;
        for (int i = 0; i < V && k < V; i++) {
            int kept = 0;
            for (uint32_t j = 0; j < k; j++) kept |= ia[j] == i;
            missed += !kept && (x[i] > va[k - 1] || (x[i] == va[k - 1] && i < ia[k - 1]));
        }
        CHECK(missed == 0, "k %u: %zu larger values left out", k, missed);
    }
}

int main(void) {
    RUN(test_count_scored);
    RUN(test_mc_score);
    RUN(test_loglik_truncation);
    RUN(test_ppl_library);
    RUN(test_encode_pair);
    RUN(test_topk_paths);
    return TEST_SUMMARY("test_eval_core");
}
