/* Expert merging: the assignment solver against brute force; merging an expert with a neuron-
 * permuted copy of itself gives back the expert exactly (alignment recovers the permutation);
 * a merged model written by moekit computes in moekit what transformers computes on it; the
 * published M-SMoE and Sub-MoE give the reference's groups, merged weights and logits
 * (tests/fixtures/merge/NAME.safetensors, from tools/gen_merge_reference.py, which computes them
 * from the papers' formulas in numpy and transformers); MC-SMoE's global group counts. */
#include "compress/compress.h"
#include "format/safetensors.h"
#include "mk_test.h"
#include "moekit.h"

#include <unistd.h>

static void test_assign_brute_force(void) {
    uint64_t x = 12345;
    for (int trial = 0; trial < 200; trial++) {
        int64_t n = 1 + trial % 7;
        double c[49];
        for (int64_t i = 0; i < n * n; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            c[i] = (double)(x % 1000) / 10.0 - (trial % 3 == 0 ? 50 : 0);
        }
        int64_t perm[7];
        REQUIRE(mk_assign_min(c, n, perm) == MK_OK, "%s", mk_last_error());
        double got = 0;
        int seen = 0;
        for (int64_t i = 0; i < n; i++) { got += c[i * n + perm[i]]; seen |= 1 << perm[i]; }
        CHECK(seen == (1 << n) - 1, "not a permutation (trial %d)", trial);
        /* brute force over all permutations (Heap's algorithm) */
        int64_t p[7], cnt[7] = {0};
        for (int64_t i = 0; i < n; i++) p[i] = i;
        double best = 0;
        for (int64_t i = 0; i < n; i++) best += c[i * n + p[i]];
        for (int64_t i = 1; i < n;) {
            if (cnt[i] < i) {
                int64_t j = i % 2 ? cnt[i] : 0, t = p[j];
                p[j] = p[i]; p[i] = t;
                double s = 0;
                for (int64_t r = 0; r < n; r++) s += c[r * n + p[r]];
                if (s < best) best = s;
                cnt[i]++; i = 1;
            } else { cnt[i] = 0; i++; }
        }
        CHECK(fabs(got - best) < 1e-9, "trial %d n=%lld: %g vs optimum %g", trial, (long long)n, got, best);
    }
}

static void test_merge_permuted_copy(void) {
    mk_model *m = NULL;
    REQUIRE(mk_model_load(&m, "tests/fixtures/olmoe") == MK_OK, "%s", mk_last_error()); /* E 8, k 3 */
    const int64_t L = m->cfg.n_layer, E = m->cfg.n_expert;
    const size_t F = (size_t)m->cfg.d_ff_expert, H = (size_t)m->cfg.d_model, mat = F * H;
    /* A model whose expert 1 is expert 0 with its neurons in reverse order. */
    float *g0 = malloc(mat * 4), *u0 = malloc(mat * 4), *d0 = malloc(mat * 4), *g1 = malloc(mat * 4), *u1 = malloc(mat * 4), *d1 = malloc(mat * 4);
    mk_expert_out x[2 * 8];
    for (int64_t l = 0; l < L; l++)
        for (int64_t e = 0; e < E; e++) x[l * E + e] = (mk_expert_out){.copy_from = (int32_t)e, .router_from = (int32_t)e};
    mk_to_f32(g0, m->layers[0].experts[0].gate.data, m->layers[0].experts[0].gate.dtype, mat);
    mk_to_f32(u0, m->layers[0].experts[0].up.data, m->layers[0].experts[0].up.dtype, mat);
    mk_to_f32(d0, m->layers[0].experts[0].down.data, m->layers[0].experts[0].down.dtype, mat);
    for (size_t c = 0; c < F; c++)
        for (size_t h = 0; h < H; h++) {
            g1[c * H + h] = g0[(F - 1 - c) * H + h];
            u1[c * H + h] = u0[(F - 1 - c) * H + h];
            d1[h * F + c] = d0[h * F + (F - 1 - c)];
        }
    x[1] = (mk_expert_out){.copy_from = -1, .gate = g1, .up = u1, .down = d1, .router_from = 1};
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/mk_merge_perm_%d", (int)getpid());
    mk_expert_plan wp = {.n_out = E, .x = x};
    mk_write_opts wo = {.force = true};
    REQUIRE(mk_write_experts(m, &wp, dir, &wo) == MK_OK, "%s", mk_last_error());
    mk_model *m2 = NULL;
    REQUIRE(mk_model_load(&m2, dir) == MK_OK, "%s", mk_last_error());
    /* expert 0 dominant (most used), expert 1 most similar to it; keep 7 so only 1 merges */
    double freq[16];
    for (int i = 0; i < 16; i++) freq[i] = i % 8 == 0 ? 0.3 : i % 8 == 1 ? 0.01 : 0.1;
    float sim[2 * 64];
    for (int i = 0; i < 128; i++) sim[i] = 0;
    sim[0 * 64 + 1 * 8 + 0] = sim[1 * 64 + 1 * 8 + 0] = 1;
    for (int align = 1; align >= 0; align--) {
        mk_msmoe_opts mo = {.align = align, .similarity = sim, .slice = true};
        mk_expert_plan plan = {0};
        float *buf = NULL;
        int32_t group_of[16];
        REQUIRE(mk_msmoe_plan(m2, freq, 7, &mo, &plan, &buf, group_of) == MK_OK, "%s", mk_last_error());
        CHECK(group_of[0] == 0 && group_of[1] == 0 && group_of[2] == 1, "groups %d %d %d", group_of[0], group_of[1], group_of[2]);
        const mk_expert_out *o0 = &plan.x[0];
        REQUIRE(o0->copy_from < 0 && o0->router_from == 0, "expert 0 merged");
        double dg = 0, du = 0, dd = 0;
        for (size_t i = 0; i < mat; i++) {
            dg = fmax(dg, fabs(o0->gate[i] - g0[i]));
            du = fmax(du, fabs(o0->up[i] - u0[i]));
            dd = fmax(dd, fabs(o0->down[i] - d0[i]));
        }
        if (align) CHECK(dg < 1e-6 && du < 1e-6 && dd < 1e-6, "aligned merge of a permuted copy: max |Δ| %g %g %g", dg, du, dd);
        else CHECK(dg > 1e-3, "without alignment the permuted copy blurs the expert (max |Δ| %g)", dg);
        CHECK(plan.x[1].copy_from == 2 && plan.x[1].router_from == 2, "singleton group copied");
        free((void *)plan.x);
        free(buf);
    }
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    free(g0); free(u0); free(d0); free(g1); free(u1); free(d1);
    mk_model_free(m2);
    mk_model_free(m);
}

/* msmoe-slice, the same plan as tools/gen_merge_reference.py: keep E - drop (drop < 0: half the
 * experts) from the reference's `freq`, similarity of router rows, aligned. */
static void check_written(const char *name, const char *ref_name, int64_t drop) {
    char src[128], refp[200], fxp[200], out[200];
    snprintf(src, sizeof src, "tests/fixtures/%s", name);
    snprintf(refp, sizeof refp, "tests/fixtures/merge/%s.safetensors", ref_name);
    snprintf(fxp, sizeof fxp, "%s/reference.safetensors", src);
    snprintf(out, sizeof out, "/tmp/mk_merge_%s_%d", name, (int)getpid());
    mk_model *m = NULL, *mm = NULL;
    mk_st_set *ref = NULL, *fx = NULL;
    REQUIRE(mk_model_load(&m, src) == MK_OK && mk_st_open_file(&ref, refp) == MK_OK && mk_st_open_file(&fx, fxp) == MK_OK, "%s", mk_last_error());
    const int64_t L = m->cfg.n_layer, E = m->cfg.n_expert, V = m->cfg.vocab, keep = drop < 0 ? E / 2 : E - drop;
    const mk_tensor *tf = &mk_st_find(ref, "freq")->t, *tl = &mk_st_find(ref, "logits")->t, *tid = &mk_st_find(fx, "input_ids")->t;
    double *freq = calloc((size_t)(L * E), sizeof *freq);
    for (int64_t i = 0; i < L * E; i++) freq[i] = ((const float *)tf->data)[i];
    mk_msmoe_opts mo = {.align = true, .slice = true};
    mk_expert_plan plan = {0};
    float *buf = NULL;
    int32_t *group_of = calloc((size_t)(L * E), sizeof *group_of);
    REQUIRE(mk_msmoe_plan(m, freq, keep, &mo, &plan, &buf, group_of) == MK_OK, "%s", mk_last_error());
    mk_write_opts wo = {.force = true};
    REQUIRE(mk_write_experts(m, &plan, out, &wo) == MK_OK, "%s", mk_last_error());
    REQUIRE(mk_model_load(&mm, out) == MK_OK, "%s", mk_last_error());
    const size_t T = (size_t)tid->shape[0];
    float *lg = calloc(T * (size_t)V, sizeof(float));
    mk_ctx *c = NULL;
    REQUIRE(mk_ctx_new(&c, mm, T, 0) == MK_OK && mk_ctx_forward(c, tid->data, T, MK_LOGITS_ALL, lg) == MK_OK, "%s", mk_last_error());
    double d = 0;
    for (size_t i = 0; i < T * (size_t)V; i++) d = fmax(d, fabs(lg[i] - ((const float *)tl->data)[i]));
    printf("  %-10s merged model (keep %lld of %lld) vs transformers max|Δlogit| %.2e\n", name, (long long)keep, (long long)E, d);
    if (m->cfg.n_group > 1) { /* every merged expert from one router group: the written groups stay equal and in order */
        int64_t mixed = 0;
        for (int64_t l = 0; l < L; l++)
            for (int64_t e = 0; e < E; e++)
                if (group_of[l * E + e] >= 0 && plan.x[l * keep + group_of[l * E + e]].router_from / (E / m->cfg.n_group) != e / (E / m->cfg.n_group)) mixed++;
        CHECK(mixed == 0 && mm->cfg.n_group == m->cfg.n_group, "%s: %lld experts merged across router groups; n_group %lld -> %lld", name, (long long)mixed,
              (long long)m->cfg.n_group, (long long)mm->cfg.n_group);
    }
    CHECK(d <= 1e-4, "%s: merged model vs transformers max |Δlogit| %.3g", name, d);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", out);
    CHECK(system(cmd) == 0, "cleanup");
    mk_ctx_free(c);
    free(lg);
    free(freq);
    free(group_of);
    free((void *)plan.x);
    free(buf);
    mk_st_free(ref);
    mk_st_free(fx);
    mk_model_free(mm);
    mk_model_free(m);
}

static void test_written_qwen3(void) { check_written("qwen3_moe", "qwen3_moe", 2); }
static void test_written_mixtral(void) { check_written("mixtral", "mixtral", 2); }
static void test_written_qwen3_fused(void) { check_written("qwen3_moe_fused", "qwen3_moe_fused", 2); }
static void test_written_deepseek_v3(void) { check_written("deepseek_v3", "deepseek_v3_slice", -1); }

/* Sub-MoE at full rank is the usage-weighted average of the group (the SVD factors reassemble
 * the members exactly), i.e. M-SMoE without alignment; a lower rank changes the weights. */
static void test_submoe_full_rank(void) {
    mk_model *m = NULL;
    REQUIRE(mk_model_load(&m, "tests/fixtures/qwen3_moe") == MK_OK, "%s", mk_last_error());
    const int64_t L = m->cfg.n_layer, E = m->cfg.n_expert;
    const size_t mat = (size_t)(m->cfg.d_ff_expert * m->cfg.d_model);
    double freq[24];
    for (int i = 0; i < 24; i++) freq[i] = 1.0 + (i * 7) % 5;
    int32_t ga[24], gb[24];
    mk_expert_plan pa = {0}, pb = {0}, pc = {0};
    float *ba = NULL, *bb = NULL, *bc = NULL;
    mk_msmoe_opts mo = {.align = false, .slice = true};
    mk_submoe_opts so = {.rank_frac = 1.0, .slice = true}, so4 = {.rank_frac = 0.25, .slice = true};
    REQUIRE(mk_msmoe_plan(m, freq, 5, &mo, &pa, &ba, ga) == MK_OK, "%s", mk_last_error());
    REQUIRE(mk_submoe_plan(m, freq, 5, &so, &pb, &bb, gb) == MK_OK, "%s", mk_last_error());
    REQUIRE(mk_submoe_plan(m, freq, 5, &so4, &pc, &bc, gb) == MK_OK, "%s", mk_last_error());
    CHECK(!memcmp(ga, gb, sizeof ga), "the same groups");
    double d = 0, dl = 0;
    int merged = 0;
    for (int64_t i = 0; i < L * 5; i++) {
        const mk_expert_out *a = &pa.x[i], *b = &pb.x[i], *c = &pc.x[i];
        if (!m->layers[i / 5].is_moe) continue;
        CHECK(a->copy_from == b->copy_from && a->router_from == b->router_from, "slot %lld differs", (long long)i);
        if (a->copy_from >= 0) continue;
        merged++;
        for (size_t k = 0; k < mat; k++) {
            d = fmax(d, fabs(a->gate[k] - b->gate[k]));
            d = fmax(d, fabs(a->up[k] - b->up[k]));
            d = fmax(d, fabs(a->down[k] - b->down[k]));
            dl = fmax(dl, fabs(a->gate[k] - c->gate[k]));
        }
    }
    printf("  submoe full rank vs weighted average: max |Δw| %.2e over %d merged experts; rank 1/4: %.2e\n", d, merged, dl);
    CHECK(merged > 0 && d < 1e-5, "full-rank Sub-MoE differs from the weighted average by %g", d);
    CHECK(dl > 1e-3, "rank truncation left the weights unchanged (%g)", dl);
    (void)E;
    free((void *)pa.x); free((void *)pb.x); free((void *)pc.x);
    free(ba); free(bb); free(bc);
    mk_model_free(m);
}

/* The published procedures against the reference on the same usage and similarities (the
 * reference's calibration statistics): M-SMoE with keep E-2 groups per layer on average (global
 * budget, no alignment), Sub-MoE with E-3 clusters at rank 1/2. Groups must be equal; each merged
 * group's weights within 1e-5; every member slot must carry its group's weights with its own
 * router row; the written model's logits within 1e-4 of the reference model's in transformers. */
static void check_published(const char *name, bool sub) {
    char src[128], refp[200], out[200], key[200];
    const char *tag = sub ? "submoe" : "msmoe";
    snprintf(src, sizeof src, "tests/fixtures/%s", name);
    snprintf(refp, sizeof refp, "tests/fixtures/merge/%s.safetensors", name);
    snprintf(out, sizeof out, "/tmp/mk_merge_%s_%s_%d", tag, name, (int)getpid());
    mk_model *m = NULL, *mm = NULL;
    mk_st_set *ref = NULL, *fx = NULL;
    snprintf(key, sizeof key, "%s/reference.safetensors", src);
    REQUIRE(mk_model_load(&m, src) == MK_OK && mk_st_open_file(&ref, refp) == MK_OK && mk_st_open_file(&fx, key) == MK_OK, "%s", mk_last_error());
    const int64_t L = m->cfg.n_layer, E = m->cfg.n_expert, V = m->cfg.vocab;
    const size_t mat = (size_t)(m->cfg.d_ff_expert * m->cfg.d_model);
    snprintf(key, sizeof key, "%s_sim", tag);
    const mk_st_entry *esim = mk_st_find(ref, key);
    snprintf(key, sizeof key, "%s_groups", tag);
    const mk_st_entry *egrp = mk_st_find(ref, key);
    snprintf(key, sizeof key, "%s_logits", tag);
    const mk_st_entry *elog = mk_st_find(ref, key), *efreq = mk_st_find(ref, "calib_freq");
    REQUIRE(esim && egrp && elog && efreq, "%s: reference lacks %s tensors", refp, tag);
    const float *rf = (const float *)efreq->t.data;
    const int32_t *rg = (const int32_t *)egrp->t.data;
    double *freq = calloc((size_t)(L * E), sizeof *freq);
    for (int64_t i = 0; i < L * E; i++) freq[i] = rf[i];
    int32_t *group_of = calloc((size_t)(L * E), sizeof *group_of);
    mk_expert_plan plan = {0};
    float *buf = NULL;
    mk_status st;
    if (sub) {
        mk_submoe_opts so = {.similarity = (const float *)esim->t.data, .rank_frac = 0.5};
        st = mk_submoe_plan(m, freq, E - 3, &so, &plan, &buf, group_of);
    } else {
        mk_msmoe_opts mo = {.similarity = (const float *)esim->t.data, .budget = MK_BUDGET_GLOBAL};
        st = mk_msmoe_plan(m, freq, E - 2, &mo, &plan, &buf, group_of);
    }
    REQUIRE(st == MK_OK, "%s", mk_last_error());
    REQUIRE(plan.n_out == E, "%s %s: the router is unchanged, so all %lld experts stay (got %lld)", tag, name, (long long)E, (long long)plan.n_out);
    int same = 1, merged = 0;
    double dw = 0;
    for (int64_t l = 0; l < L; l++) {
        if (!m->layers[l].is_moe) continue;
        for (int64_t e = 0; e < E; e++) same &= group_of[l * E + e] == rg[l * E + e];
        for (int64_t g = 0; g < E; g++) {
            int64_t first = -1, n = 0;
            for (int64_t e = 0; e < E; e++)
                if (group_of[l * E + e] == g) { n++; if (first < 0) first = e; }
            if (n < 2) continue;
            snprintf(key, sizeof key, "%s_w.%lld.%lld", tag, (long long)l, (long long)g);
            const mk_st_entry *ew = mk_st_find(ref, key);
            CHECK(ew != NULL, "%s %s: the reference has no merged group %s", tag, name, key);
            if (!ew) continue;
            const float *w = (const float *)ew->t.data, *x = plan.x[l * E + first].gate;
            CHECK(x != NULL, "%s %s layer %lld: expert %lld does not carry its group's merged weights", tag, name, (long long)l, (long long)first);
            if (!x) continue;
            merged++;
            for (size_t i = 0; i < mat; i++) {
                dw = fmax(dw, fabs(plan.x[l * E + first].gate[i] - w[i]));
                dw = fmax(dw, fabs(plan.x[l * E + first].up[i] - w[mat + i]));
                dw = fmax(dw, fabs(plan.x[l * E + first].down[i] - w[2 * mat + i]));
            }
            for (int64_t e = 0; e < E; e++)
                if (group_of[l * E + e] == g)
                    CHECK(plan.x[l * E + e].copy_from < 0 && plan.x[l * E + e].gate == x && plan.x[l * E + e].router_from == e,
                          "%s %s layer %lld: member %lld is not bound to its group's weights with its own router row", tag, name, (long long)l, (long long)e);
        }
        for (int64_t e = 0; e < E; e++) {
            int64_t n = 0;
            for (int64_t i = 0; i < E; i++) n += group_of[l * E + i] == group_of[l * E + e];
            if (n == 1) CHECK(plan.x[l * E + e].copy_from == e && plan.x[l * E + e].router_from == e, "%s %s: singleton %lld not kept", tag, name, (long long)e);
        }
    }
    CHECK(same, "%s %s: groups differ from the reference", tag, name);
    CHECK(merged > 0 && dw < 1e-5, "%s %s: %d merged groups, max |Δw| vs reference %.3g", tag, name, merged, dw);
    mk_write_opts wo = {.force = true};
    REQUIRE(mk_write_experts(m, &plan, out, &wo) == MK_OK, "%s", mk_last_error());
    REQUIRE(mk_model_load(&mm, out) == MK_OK, "%s", mk_last_error());
    const mk_tensor *tid = &mk_st_find(fx, "input_ids")->t;
    const size_t T = (size_t)tid->shape[0];
    float *lg = calloc(T * (size_t)V, sizeof(float));
    mk_ctx *c = NULL;
    REQUIRE(mk_ctx_new(&c, mm, T, 0) == MK_OK && mk_ctx_forward(c, tid->data, T, MK_LOGITS_ALL, lg) == MK_OK, "%s", mk_last_error());
    double d = 0;
    for (size_t i = 0; i < T * (size_t)V; i++) d = fmax(d, fabs(lg[i] - ((const float *)elog->t.data)[i]));
    printf("  %-6s %-15s groups %s, %d merged groups max |Δw| %.2e, written model vs reference in transformers max |Δlogit| %.2e\n", tag, name,
           same ? "equal" : "DIFFER", merged, dw, d);
    CHECK(d <= 1e-4, "%s %s: merged model vs reference max |Δlogit| %.3g", tag, name, d);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", out);
    CHECK(system(cmd) == 0, "cleanup");
    mk_ctx_free(c);
    free(lg); free(freq); free(group_of); free((void *)plan.x); free(buf);
    mk_st_free(ref); mk_st_free(fx);
    mk_model_free(mm); mk_model_free(m);
}

static void test_published_msmoe(void) {
    check_published("qwen3_moe", false);
    check_published("mixtral", false);
    check_published("qwen3_moe_fused", false);
}
static void test_published_submoe(void) {
    check_published("qwen3_moe", true);
    check_published("mixtral", true);
    check_published("qwen3_moe_fused", true);
}

/* MC-SMoE's global budget: 4 groups per layer on average over MoE layers 0 and 2 gives G = 8;
 * with each layer's top usage counted as 1.0 the sorted usages are 1, 1, .3, .18, .16, .14, .12,
 * .11, [.1], ... so τ = .1: layer 0 keeps #{f > .1} = 3 groups (dominants 0, 1, 2), layer 2 keeps 5.
 * The layer budget keeps 4 in each. */
static void test_global_group_counts(void) {
    mk_model *m = NULL;
    REQUIRE(mk_model_load(&m, "tests/fixtures/qwen3_moe") == MK_OK, "%s", mk_last_error());
    const double f0[8] = {.5, .3, .11, .04, .05, 0, 0, 0}, f2[8] = {.2, .18, .16, .14, .12, .1, .06, .04};
    double freq[24] = {0};
    for (int e = 0; e < 8; e++) { freq[e] = f0[e]; freq[16 + e] = f2[e]; }
    const int64_t want[2][3] = {{3, 0, 5}, {4, 0, 4}};
    for (int b = 0; b < 2; b++) {
        mk_msmoe_opts mo = {.budget = b ? MK_BUDGET_LAYER : MK_BUDGET_GLOBAL};
        mk_expert_plan plan = {0};
        float *buf = NULL;
        int32_t group_of[24];
        REQUIRE(mk_msmoe_plan(m, freq, 4, &mo, &plan, &buf, group_of) == MK_OK, "%s", mk_last_error());
        for (int l = 0; l < 3; l += 2) {
            int64_t ng = 0;
            for (int e = 0; e < 8; e++) ng = group_of[l * 8 + e] + 1 > ng ? group_of[l * 8 + e] + 1 : ng;
            CHECK(ng == want[b][l], "%s budget, layer %d: %lld groups, want %lld", b ? "layer" : "global", l, (long long)ng, (long long)want[b][l]);
        }
        if (!b) CHECK(group_of[0] != group_of[1] && group_of[1] != group_of[2] && group_of[0] != group_of[2], "layer 0's dominants are experts 0, 1, 2");
        free((void *)plan.x);
        free(buf);
    }
    mk_model_free(m);
}

int main(void) {
    RUN(test_global_group_counts);
    RUN(test_published_msmoe);
    RUN(test_published_submoe);
    RUN(test_submoe_full_rank);
    RUN(test_assign_brute_force);
    RUN(test_merge_permuted_copy);
    RUN(test_written_qwen3);
    RUN(test_written_mixtral);
    RUN(test_written_qwen3_fused);
    RUN(test_written_deepseek_v3);
    return TEST_SUMMARY("test_merge");
}
