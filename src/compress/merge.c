/* Expert merging: M-SMoE (research/methods.md §2.1) and Sub-MoE (§2.2), each as published
 * (router unchanged, group members bound to the merged weights) and as moekit's earlier
 * router-slicing variant. */
#include "compress.h"

#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct ord {
    double f;
    int64_t e;
} ord;

static int by_freq_desc(const void *a, const void *b) {
    const ord *x = a, *y = b;
    if (x->f != y->f) return x->f > y->f ? -1 : 1;
    return x->e < y->e ? -1 : (x->e > y->e);
}

/* An expert's three matrices as f32: gate, up (F, H) and down (H, F). */
static void load_expert(const mk_mlp_w *w, size_t F, size_t H, float *g, float *u, float *d) {
    mk_to_f32(g, w->gate.data, w->gate.dtype, F * H);
    mk_to_f32(u, w->up.data, w->up.dtype, F * H);
    mk_to_f32(d, w->down.data, w->down.dtype, H * F);
}

/* Permutes member neurons onto the dominant's: perm[c] = the member neuron matched to c. */
static mk_status align(const float *gd, const float *ud, const float *dd, const float *gm, const float *um, const float *dm, size_t F,
                       size_t H, int64_t *perm, double *cost) {
    for (size_t c = 0; c < F; c++)
        for (size_t c2 = 0; c2 < F; c2++) {
            double s = 0;
            for (size_t h = 0; h < H; h++) {
                double a = (double)gd[c * H + h] - gm[c2 * H + h], b = (double)ud[c * H + h] - um[c2 * H + h];
                double d = (double)dd[h * F + c] - dm[h * F + c2];
                s += a * a + b * b + d * d;
            }
            cost[c * F + c2] = s;
        }
    return mk_assign_min(cost, (int64_t)F, perm);
}

/* The slicing merges write keep experts per layer. Under group-limited routing (DeepSeek's n_group
 * G > 1) the written experts must stay G equal groups in order, so keep must be a multiple of G. */
static mk_status check_slice_keep(const mk_config *cfg, int64_t keep) {
    if (keep < cfg->k_active || keep > cfg->n_expert)
        return mk_err(MK_ERR_ARG, "merge: keeping %lld experts per layer is outside [k = %lld, %lld]", (long long)keep, (long long)cfg->k_active,
                      (long long)cfg->n_expert);
    if (cfg->n_group > 1 && keep % cfg->n_group)
        return mk_err(MK_ERR_ARG, "merge: %s routes within %lld expert groups; keeping %lld experts per layer is not an equal share of each",
                      cfg->arch_name, (long long)cfg->n_group, (long long)keep);
    return MK_OK;
}

/* Groups of layer l: the keep most used experts are dominant (output order: by expert id); every
 * other expert joins the dominant it is most similar to (similarity (n_layer, E, E), or the
 * cosine of the router's weight rows). Under group-limited routing (n_group G > 1) each router group
 * keeps its keep / G most used experts as dominants and its other experts join one of those, so a
 * merged expert never mixes router groups and the written experts are G equal groups in order.
 * dom (keep), od (E) and rw (E, d_model) are scratch. */
static void choose_groups(const mk_model *m, int64_t l, const double *freq, int64_t keep, const float *similarity, ord *od, int64_t *dom,
                          float *rw, int32_t *group_of) {
    const int64_t E = m->cfg.n_expert;
    const int64_t G = m->cfg.n_group > 1 ? m->cfg.n_group : 1, per = E / G, gkeep = keep / G;
    const size_t H = (size_t)m->cfg.d_model;
    const mk_layer_w *lw = &m->layers[l];
    for (int64_t e = 0; e < E; e++) od[e] = (ord){freq[l * E + e], e};
    for (int64_t g = 0; g < G; g++) {
        qsort(od + g * per, (size_t)per, sizeof *od, by_freq_desc);
        for (int64_t j = 0; j < gkeep; j++) dom[g * gkeep + j] = od[g * per + j].e;
    }
    for (int64_t a = 1; a < keep; a++)
        for (int64_t b = a; b > 0 && dom[b - 1] > dom[b]; b--) { int64_t t = dom[b]; dom[b] = dom[b - 1]; dom[b - 1] = t; }
    const float *sim = similarity ? similarity + (size_t)l * (size_t)(E * E) : NULL;
    if (!sim) mk_to_f32(rw, lw->router.data, lw->router.dtype, (size_t)E * H);
    for (int64_t e = 0; e < E; e++) {
        int64_t best = -1;
        double bs = -INFINITY;
        for (int64_t j = 0; j < keep; j++) {
            if (dom[j] == e) { best = j; break; }
            if (dom[j] / per != e / per) continue; /* another router group */
            double sv;
            if (sim) sv = sim[e * E + dom[j]];
            else {
                const float *a = rw + (size_t)e * H, *b = rw + (size_t)dom[j] * H;
                double ab = 0, aa = 0, bb = 0;
                for (size_t h = 0; h < H; h++) { ab += (double)a[h] * b[h]; aa += (double)a[h] * a[h]; bb += (double)b[h] * b[h]; }
                sv = ab / (sqrt(aa * bb) + 1e-30);
            }
            if (sv > bs) { bs = sv; best = j; }
        }
        group_of[l * E + e] = (int32_t)best;
    }
}

/* msmoe-slice: moekit's earlier M-SMoE (keep experts written, each with its dominant's router row). */
static mk_status msmoe_slice_plan(const mk_model *m, const double *freq, int64_t keep, const mk_msmoe_opts *o, mk_expert_plan *plan,
                                  float **buffers, int32_t *group_of) {
    const mk_config *cfg = &m->cfg;
    const int64_t L = cfg->n_layer, E = cfg->n_expert;
    for (int64_t i = 0; i < L * E; i++) group_of[i] = -1; /* dense layers: no group */
    const size_t H = (size_t)cfg->d_model, F = (size_t)cfg->d_ff_expert, mat = F * H;
    *buffers = NULL;
    mk_status kst = check_slice_keep(cfg, keep);
    if (kst) return kst;
    mk_expert_out *x = mk_calloc((size_t)(L * keep), sizeof *x);
    ord *od = mk_malloc((size_t)E * sizeof *od);
    int64_t *dom = mk_malloc((size_t)keep * sizeof *dom), *perm = mk_malloc(F * sizeof *perm);
    float *tmp = mk_malloc(6 * mat * sizeof(float)), *rw = mk_malloc((size_t)E * H * sizeof(float));
    double *cost = mk_malloc(F * F * sizeof *cost);
    float *buf = NULL;
    mk_status st = MK_OK;
    if (!x || !od || !dom || !perm || !tmp || !rw || !cost) { st = MK_ERR_NOMEM; goto fail; }
    /* one buffer for every merged group: 3 matrices each, at most keep groups per layer */
    int64_t n_moe = 0;
    for (int64_t l = 0; l < L; l++) n_moe += m->layers[l].is_moe;
    buf = mk_malloc((size_t)(n_moe * keep) * 3 * mat * sizeof(float));
    if (!buf) { st = MK_ERR_NOMEM; goto fail; }
    size_t used = 0;
    for (int64_t l = 0; l < L; l++) {
        const mk_layer_w *lw = &m->layers[l];
        if (!lw->is_moe) continue;
        choose_groups(m, l, freq, keep, o->similarity, od, dom, rw, group_of);
        for (int64_t j = 0; j < keep; j++) {
            mk_expert_out *xo = &x[l * keep + j];
            xo->router_from = (int32_t)dom[j];
            int64_t members = 0;
            double fsum = 0;
            for (int64_t e = 0; e < E; e++)
                if (group_of[l * E + e] == j) { members++; fsum += fmax(freq[l * E + e], 0); }
            if (members == 1) { xo->copy_from = (int32_t)dom[j]; continue; }
            xo->copy_from = -1;
            float *g = buf + used, *u = g + mat, *d = u + mat;
            used += 3 * mat;
            float *gd = tmp, *ud = tmp + mat, *dd = tmp + 2 * mat, *gm = tmp + 3 * mat, *um = tmp + 4 * mat, *dm = tmp + 5 * mat;
            load_expert(&lw->experts[dom[j]], F, H, gd, ud, dd);
            memset(g, 0, 3 * mat * sizeof(float));
            for (int64_t e = 0; e < E; e++) {
                if (group_of[l * E + e] != j) continue;
                double w = fsum > 0 ? fmax(freq[l * E + e], 0) / fsum : 1.0 / (double)members;
                if (e == dom[j]) {
                    for (size_t i = 0; i < mat; i++) { g[i] += (float)w * gd[i]; u[i] += (float)w * ud[i]; d[i] += (float)w * dd[i]; }
                    continue;
                }
                load_expert(&lw->experts[e], F, H, gm, um, dm);
                if (o->align) {
                    if ((st = align(gd, ud, dd, gm, um, dm, F, H, perm, cost))) goto fail;
                } else {
                    for (size_t c = 0; c < F; c++) perm[c] = (int64_t)c;
                }
                for (size_t c = 0; c < F; c++) {
                    size_t pc = (size_t)perm[c];
                    for (size_t h = 0; h < H; h++) {
                        g[c * H + h] += (float)w * gm[pc * H + h];
                        u[c * H + h] += (float)w * um[pc * H + h];
                        d[h * F + c] += (float)w * dm[h * F + pc];
                    }
                }
            }
            xo->gate = g;
            xo->up = u;
            xo->down = d;
        }
    }
    plan->n_out = keep;
    plan->d_ff_out = 0;
    plan->x = x;
    *buffers = buf;
    free(od); free(dom); free(perm); free(tmp); free(rw); free(cost);
    return MK_OK;
fail:
    free(x); free(od); free(dom); free(perm); free(tmp); free(rw); free(cost); free(buf);
    return st;
}

/* One projection of a Sub-MoE group: out (rows, cols) from the members' matrices ws[i]
 * (rows, cols) with shares w[i]. */
static mk_status union_merge(float *const *ws, const double *w, int64_t m, size_t rows, size_t cols, double rank_frac, float *out) {
    const size_t wide = cols * (size_t)m, k = MK_MIN(rows, wide);
    double *a = mk_malloc(rows * wide * sizeof(double)), *sv = mk_malloc(k * sizeof(double));
    double *u = mk_malloc(rows * k * sizeof(double)), *vt = mk_malloc(k * wide * sizeof(double)), *vm = mk_malloc(k * cols * sizeof(double));
    mk_status st = MK_OK;
    if (!a || !sv || !u || !vt || !vm) { st = MK_ERR_NOMEM; goto out; }
    for (size_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < m; i++)
            for (size_t c = 0; c < cols; c++) a[r * wide + (size_t)i * cols + c] = ws[i][r * cols + c];
    lapack_int info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', (lapack_int)rows, (lapack_int)wide, a, (lapack_int)wide, sv, u, (lapack_int)k, vt,
                                     (lapack_int)wide);
    if (info != 0) { st = mk_err(MK_ERR_INTERNAL, "submoe: SVD failed (LAPACK dgesdd info %d)", (int)info); goto out; }
    size_t r_keep = (size_t)ceil(rank_frac * (double)k);
    if (r_keep < 1) r_keep = 1;
    if (r_keep > k) r_keep = k;
    /* V_merged^T (r, cols) = Σ_i w_i Vt[:, block i] */
    for (size_t q = 0; q < r_keep; q++)
        for (size_t c = 0; c < cols; c++) {
            double acc = 0;
            for (int64_t i = 0; i < m; i++) acc += w[i] * vt[q * wide + (size_t)i * cols + c];
            vm[q * cols + c] = acc;
        }
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) {
            double acc = 0;
            for (size_t q = 0; q < r_keep; q++) acc += u[r * k + q] * sv[q] * vm[q * cols + c];
            out[r * cols + c] = (float)acc;
        }
out:
    free(a); free(sv); free(u); free(vt); free(vm);
    return st;
}

/* submoe-slice: moekit's earlier Sub-MoE (M-SMoE's dominant grouping, dominant's router row). */
static mk_status submoe_slice_plan(const mk_model *m, const double *freq, int64_t keep, const float *similarity, double rank_frac,
                                   mk_expert_plan *plan, float **buffers, int32_t *group_of) {
    const mk_config *cfg = &m->cfg;
    const int64_t L = cfg->n_layer, E = cfg->n_expert;
    for (int64_t i = 0; i < L * E; i++) group_of[i] = -1; /* dense layers: no group */
    const size_t H = (size_t)cfg->d_model, F = (size_t)cfg->d_ff_expert, mat = F * H;
    *buffers = NULL;
    mk_status kst = check_slice_keep(cfg, keep);
    if (kst) return kst;
    if (!(rank_frac > 0 && rank_frac <= 1)) return mk_err(MK_ERR_ARG, "merge: rank fraction %g is not in (0, 1]", rank_frac);
    int64_t n_moe = 0;
    for (int64_t l = 0; l < L; l++) n_moe += m->layers[l].is_moe;
    mk_expert_out *x = mk_calloc((size_t)(L * keep), sizeof *x);
    ord *od = mk_malloc((size_t)E * sizeof *od);
    int64_t *dom = mk_malloc((size_t)keep * sizeof *dom);
    float *rw = mk_malloc((size_t)E * H * sizeof(float)), *mem = mk_malloc((size_t)E * 3 * mat * sizeof(float));
    float **ws = mk_malloc((size_t)E * sizeof *ws);
    double *w = mk_malloc((size_t)E * sizeof *w);
    float *buf = mk_malloc((size_t)(n_moe * keep) * 3 * mat * sizeof(float));
    mk_status st = MK_OK;
    if (!x || !od || !dom || !rw || !mem || !ws || !w || !buf) { st = MK_ERR_NOMEM; goto fail; }
    size_t used = 0;
    for (int64_t l = 0; l < L; l++) {
        const mk_layer_w *lw = &m->layers[l];
        if (!lw->is_moe) continue;
        choose_groups(m, l, freq, keep, similarity, od, dom, rw, group_of);
        for (int64_t j = 0; j < keep; j++) {
            mk_expert_out *xo = &x[l * keep + j];
            xo->router_from = (int32_t)dom[j];
            int64_t n = 0;
            double fsum = 0;
            for (int64_t e = 0; e < E; e++)
                if (group_of[l * E + e] == j) {
                    float *g = mem + (size_t)n * 3 * mat;
                    load_expert(&lw->experts[e], F, H, g, g + mat, g + 2 * mat);
                    w[n] = fmax(freq[l * E + e], 0);
                    fsum += w[n++];
                }
            if (n == 1) { xo->copy_from = (int32_t)dom[j]; continue; }
            for (int64_t i = 0; i < n; i++) w[i] = fsum > 0 ? w[i] / fsum : 1.0 / (double)n;
            float *out = buf + used;
            used += 3 * mat;
            for (int p = 0; p < 3; p++) {
                for (int64_t i = 0; i < n; i++) ws[i] = mem + (size_t)i * 3 * mat + (size_t)p * mat;
                size_t rows = p < 2 ? F : H, cols = p < 2 ? H : F;
                if ((st = union_merge(ws, w, n, rows, cols, rank_frac, out + (size_t)p * mat))) goto fail;
            }
            xo->copy_from = -1;
            xo->gate = out;
            xo->up = out + mat;
            xo->down = out + 2 * mat;
        }
    }
    plan->n_out = keep;
    plan->d_ff_out = 0;
    plan->x = x;
    *buffers = buf;
    free(od); free(dom); free(rw); free(mem); free(ws); free(w);
    return MK_OK;
fail:
    free(x); free(od); free(dom); free(rw); free(mem); free(ws); free(w); free(buf);
    return st;
}

/* ---- the published procedures: router unchanged, members bound to their group's weights ---- */

/* S (E, E) = (cos + 1) / 2 of layer l's router weight rows; rw (E, d_model) is scratch. */
static void router_row_similarity(const mk_model *m, int64_t l, float *rw, float *S) {
    const int64_t E = m->cfg.n_expert;
    const size_t H = (size_t)m->cfg.d_model;
    const mk_tensor *r = &m->layers[l].router;
    mk_to_f32(rw, r->data, r->dtype, (size_t)E * H);
    for (int64_t a = 0; a < E; a++)
        for (int64_t b = 0; b < E; b++) {
            const float *x = rw + (size_t)a * H, *y = rw + (size_t)b * H;
            double xy = 0, xx = 0, yy = 0;
            for (size_t h = 0; h < H; h++) { xy += (double)x[h] * y[h]; xx += (double)x[h] * x[h]; yy += (double)y[h] * y[h]; }
            S[a * E + b] = (float)((xy / (sqrt(xx * yy) + 1e-30) + 1) / 2);
        }
}

/* Renumbers labels (E) so that groups are numbered in order of their lowest expert id; map (E) is
 * scratch. Returns the number of groups. */
static int64_t canonical_labels(int64_t E, int32_t *label, int32_t *map) {
    int32_t next = 0;
    for (int64_t e = 0; e < E; e++) map[e] = -1;
    for (int64_t e = 0; e < E; e++) {
        if (map[label[e]] < 0) map[label[e]] = next++;
        label[e] = map[label[e]];
    }
    return next;
}

/* MC-SMoE's adaptive group counts ("globally_group", grouping_mixtral.py): G = keep × n_moe groups in
 * all; each layer's most used expert (the first, on ties) counts as usage 1.0 so that every layer keeps
 * a group; τ = the (G+1)-th largest of all usages; layer l gets #{e : f'_e > τ} groups (ties at τ give
 * fewer than G in all, as in the authors' code). keep == n_expert: every expert its own group. */
static mk_status global_group_counts(const mk_model *m, const double *freq, int64_t keep, int64_t *n_groups) {
    const int64_t L = m->cfg.n_layer, E = m->cfg.n_expert;
    int64_t n_moe = 0;
    for (int64_t l = 0; l < L; l++) {
        n_groups[l] = m->layers[l].is_moe ? keep : 0;
        n_moe += m->layers[l].is_moe;
    }
    if (keep == E || !n_moe) return MK_OK;
    double *f = mk_malloc((size_t)(L * E) * sizeof *f), *all = mk_malloc((size_t)(n_moe * E) * sizeof *all);
    if (!f || !all) { free(f); free(all); return MK_ERR_NOMEM; }
    int64_t n = 0;
    for (int64_t l = 0; l < L; l++) {
        if (!m->layers[l].is_moe) continue;
        int64_t top = 0;
        for (int64_t e = 0; e < E; e++) {
            f[l * E + e] = freq[l * E + e];
            if (freq[l * E + e] > freq[l * E + top]) top = e;
        }
        f[l * E + top] = 1.0;
        for (int64_t e = 0; e < E; e++) all[n++] = f[l * E + e];
    }
    for (int64_t a = 1; a < n; a++) /* descending; n is small (layers × experts) */
        for (int64_t b = a; b > 0 && all[b - 1] < all[b]; b--) { double t = all[b]; all[b] = all[b - 1]; all[b - 1] = t; }
    const double tau = all[keep * n_moe];
    mk_status st = MK_OK;
    if (tau >= 1.0) st = mk_err(MK_ERR_ARG, "merge: %lld groups per layer on average leave no usage threshold below 1 (ask for fewer)", (long long)keep);
    for (int64_t l = 0; !st && l < L; l++) {
        if (!m->layers[l].is_moe) continue;
        n_groups[l] = 0;
        for (int64_t e = 0; e < E; e++) n_groups[l] += f[l * E + e] > tau;
    }
    free(f); free(all);
    return st;
}

/* M-SMoE's grouping of one layer (group_experts_globally_from_dominant_experts): the n most used
 * experts (ties: lower id) are dominant; every other expert, in order of usage, joins the dominant
 * (scanned in order of usage, the first on ties) of highest similarity S (E, E). dom (n) gets the
 * dominant of each group label before canonical numbering; od (E) is scratch. */
static void msmoe_groups(int64_t E, const double *f, const float *S, int64_t n, ord *od, int32_t *label) {
    for (int64_t e = 0; e < E; e++) od[e] = (ord){f[e], e};
    qsort(od, (size_t)E, sizeof *od, by_freq_desc);
    for (int64_t i = 0; i < n; i++) label[od[i].e] = (int32_t)i;
    for (int64_t i = n; i < E; i++) {
        const int64_t e = od[i].e;
        int64_t best = 0;
        for (int64_t j = 1; j < n; j++)
            if (S[e * E + od[j].e] > S[e * E + od[best].e]) best = j;
        label[e] = (int32_t)best;
    }
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double unit_draw(uint64_t *s) { return (double)(splitmix64(s) >> 11) * 0x1.0p-53; }

static double sqdist(const float *x, const double *c, int64_t E) {
    double s = 0;
    for (int64_t i = 0; i < E; i++) { double d = (double)x[i] - c[i]; s += d * d; }
    return s;
}

/* Sub-MoE's clustering of one layer: k-means (Euclidean, Lloyd) of the experts' rows of S (E, E), the
 * similarity of their outputs, into k non-empty clusters. Init k-means++ with splitmix64 seeded `seed`:
 * the first centre is expert floor(u E); each next one is drawn with probability ∝ D² (the first
 * expert whose running sum of D² exceeds u ΣD²; the lowest unchosen expert when ΣD² = 0). Then at most
 * MK_SUBMOE_KMEANS_ITERS rounds of: assign each expert to its nearest centre (ties: lower centre);
 * fill each empty cluster with the expert farthest from its centre (ties: lower id) among clusters of
 * two or more; move the centres to their means; stop when no label changes. cent (k, E), d2 (E) and
 * prev (E) are scratch. */
static void kmeans_groups(int64_t E, const float *S, int64_t k, uint64_t seed, double *cent, double *d2, int32_t *prev, int32_t *label) {
    uint64_t rng = seed;
    int64_t first = (int64_t)(unit_draw(&rng) * (double)E);
    if (first >= E) first = E - 1;
    for (int64_t i = 0; i < E; i++) { cent[i] = S[first * E + i]; label[i] = 0; }
    for (int64_t c = 1; c < k; c++) {
        double tot = 0;
        for (int64_t e = 0; e < E; e++) {
            double best = INFINITY;
            for (int64_t j = 0; j < c; j++) best = fmin(best, sqdist(S + e * E, cent + j * E, E));
            d2[e] = best;
            tot += best;
        }
        int64_t pick = -1;
        if (tot > 0) {
            const double r = unit_draw(&rng) * tot;
            double acc = 0;
            for (int64_t e = 0; e < E && pick < 0; e++) {
                if (d2[e] <= 0) continue;
                acc += d2[e];
                if (acc > r) pick = e;
            }
            for (int64_t e = E - 1; pick < 0 && e >= 0; e--) if (d2[e] > 0) pick = e;
        } else {
            for (int64_t e = 0; e < E && pick < 0; e++) if (d2[e] <= 0 && e != first) pick = e; /* all alike */
            if (pick < 0) pick = 0;
        }
        for (int64_t i = 0; i < E; i++) cent[c * E + i] = S[pick * E + i];
    }
    for (int iter = 0; iter < MK_SUBMOE_KMEANS_ITERS; iter++) {
        for (int64_t e = 0; e < E; e++) {
            prev[e] = label[e];
            int64_t best = 0;
            double bd = sqdist(S + e * E, cent, E);
            for (int64_t c = 1; c < k; c++) {
                double d = sqdist(S + e * E, cent + c * E, E);
                if (d < bd) { bd = d; best = c; }
            }
            label[e] = (int32_t)best;
            d2[e] = bd;
        }
        for (int64_t c = 0; c < k; c++) {
            int64_t n = 0;
            for (int64_t e = 0; e < E; e++) n += label[e] == c;
            if (n) continue;
            int64_t far = -1;
            for (int64_t e = 0; e < E; e++) {
                int64_t size = 0;
                for (int64_t i = 0; i < E; i++) size += label[i] == label[e];
                if (size > 1 && (far < 0 || d2[e] > d2[far])) far = e;
            }
            label[far] = (int32_t)c;
            d2[far] = 0;
        }
        for (int64_t c = 0; c < k; c++) {
            int64_t n = 0;
            for (int64_t i = 0; i < E; i++) cent[c * E + i] = 0;
            for (int64_t e = 0; e < E; e++)
                if (label[e] == c) { n++; for (int64_t i = 0; i < E; i++) cent[c * E + i] += S[e * E + i]; }
            for (int64_t i = 0; i < E; i++) cent[c * E + i] /= (double)n;
        }
        bool same = iter > 0;
        for (int64_t e = 0; e < E && same; e++) same = prev[e] == label[e];
        if (same) break;
    }
}

/* Output slots of layer l for groups label (E, canonical): a singleton copies its expert, every
 * member of a larger group points at that group's weights in merged[group] (3 matrices); every slot
 * keeps its own router row. */
static void bind_members(int64_t E, int64_t l, const int32_t *label, float *const *merged, size_t mat, mk_expert_out *x) {
    for (int64_t e = 0; e < E; e++) {
        mk_expert_out *xo = &x[l * E + e];
        xo->router_from = (int32_t)e;
        const float *w = merged[label[e]];
        if (!w) { xo->copy_from = (int32_t)e; continue; }
        xo->copy_from = -1;
        xo->gate = w;
        xo->up = w + mat;
        xo->down = w + 2 * mat;
    }
}

/* A bound plan (every one of the E experts kept, members bound to their group's weights) takes
 * *x as its slots and *buf as the caller's *buffers; both pointers are cleared (owned elsewhere now). */
static void hand_over_bound_plan(mk_expert_plan *plan, int64_t E, mk_expert_out **x, float **buffers, float **buf) {
    plan->n_out = E;
    plan->n_out_layer = NULL;
    plan->d_ff_out = 0;
    plan->x = *x;
    *buffers = *buf;
    *buf = NULL;
    *x = NULL;
}

/* The published M-SMoE; see compress.h. */
static mk_status msmoe_bind_plan(const mk_model *m, const double *freq, int64_t keep, const mk_msmoe_opts *o, mk_expert_plan *plan,
                                 float **buffers, int32_t *group_of) {
    const mk_config *cfg = &m->cfg;
    const int64_t L = cfg->n_layer, E = cfg->n_expert;
    const size_t H = (size_t)cfg->d_model, F = (size_t)cfg->d_ff_expert, mat = F * H;
    for (int64_t i = 0; i < L * E; i++) group_of[i] = -1;
    *buffers = NULL;
    if (keep < 1 || keep > E) return mk_err(MK_ERR_ARG, "merge: %lld groups per layer is outside [1, %lld]", (long long)keep, (long long)E);
    int64_t n_moe = 0;
    for (int64_t l = 0; l < L; l++) n_moe += m->layers[l].is_moe;
    const size_t per_layer = (size_t)(E / 2); /* at most E/2 groups have two or more members */
    mk_expert_out *x = mk_calloc((size_t)(L * E), sizeof *x);
    int64_t *n_groups = mk_malloc((size_t)L * sizeof *n_groups), *perm = mk_malloc(F * sizeof *perm);
    ord *od = mk_malloc((size_t)E * sizeof *od);
    int32_t *map = mk_malloc((size_t)E * sizeof *map), *dom = mk_malloc((size_t)E * sizeof *dom);
    float *S = mk_malloc((size_t)(E * E) * sizeof *S), *rw = mk_malloc((size_t)E * H * sizeof *rw), *tmp = mk_malloc(6 * mat * sizeof(float));
    float **merged = mk_calloc((size_t)E, sizeof *merged);
    double *cost = mk_malloc(F * F * sizeof *cost);
    float *buf = mk_malloc(((size_t)n_moe * per_layer + 1) * 3 * mat * sizeof(float));
    mk_status st = MK_OK;
    if (!x || !n_groups || !perm || !od || !map || !dom || !S || !rw || !tmp || !merged || !cost || !buf) { st = MK_ERR_NOMEM; goto out; }
    if (o->budget == MK_BUDGET_GLOBAL) st = global_group_counts(m, freq, keep, n_groups);
    else for (int64_t l = 0; l < L; l++) n_groups[l] = keep;
    if (st) goto out;
    size_t used = 0;
    for (int64_t l = 0; l < L; l++) {
        if (!m->layers[l].is_moe) continue;
        const float *sim = o->similarity ? o->similarity + (size_t)(l * E * E) : S;
        if (!o->similarity) router_row_similarity(m, l, rw, S);
        int32_t *label = group_of + l * E;
        const double *f = freq + l * E;
        msmoe_groups(E, f, sim, n_groups[l], od, label);
        const int64_t ng = canonical_labels(E, label, map);
        for (int64_t j = 0; j < ng; j++) dom[map[j]] = (int32_t)od[j].e; /* map: label j (dominant od[j]) -> group */
        for (int64_t g = 0; g < ng; g++) {
            merged[g] = NULL;
            int64_t members = 0;
            double fsum = 0;
            for (int64_t e = 0; e < E; e++)
                if (label[e] == g) { members++; fsum += f[e]; }
            if (members == 1) continue;
            float *gw = buf + used, *uw = gw + mat, *dw = uw + mat;
            used += 3 * mat;
            merged[g] = gw;
            memset(gw, 0, 3 * mat * sizeof(float));
            float *gd = tmp, *ud = tmp + mat, *dd = tmp + 2 * mat, *gm = tmp + 3 * mat, *um = tmp + 4 * mat, *dm = tmp + 5 * mat;
            load_expert(&m->layers[l].experts[dom[g]], F, H, gd, ud, dd);
            for (int64_t e = 0; e < E; e++) {
                if (label[e] != g) continue;
                /* MC-SMoE: Σ f_e W_e / (Σ f + FP32 eps); a group nobody used is averaged evenly */
                const double w = fsum > 0 ? f[e] / (fsum + FLT_EPSILON) : 1.0 / (double)members;
                load_expert(&m->layers[l].experts[e], F, H, gm, um, dm);
                if (o->align && e != dom[g]) {
                    if ((st = align(gd, ud, dd, gm, um, dm, F, H, perm, cost))) goto out;
                } else {
                    for (size_t c = 0; c < F; c++) perm[c] = (int64_t)c;
                }
                for (size_t c = 0; c < F; c++) {
                    const size_t pc = (size_t)perm[c];
                    for (size_t h = 0; h < H; h++) {
                        gw[c * H + h] += (float)w * gm[pc * H + h];
                        uw[c * H + h] += (float)w * um[pc * H + h];
                        dw[h * F + c] += (float)w * dm[h * F + pc];
                    }
                }
            }
        }
        bind_members(E, l, label, merged, mat, x);
    }
    hand_over_bound_plan(plan, E, &x, buffers, &buf);
out:
    free(x); free(n_groups); free(perm); free(od); free(map); free(dom); free(S); free(rw); free(tmp); free(merged); free(cost); free(buf);
    return st;
}

/* The published Sub-MoE; see compress.h. */
static mk_status submoe_bind_plan(const mk_model *m, const double *freq, int64_t keep, const mk_submoe_opts *o, mk_expert_plan *plan,
                                  float **buffers, int32_t *group_of) {
    const mk_config *cfg = &m->cfg;
    const int64_t L = cfg->n_layer, E = cfg->n_expert;
    const size_t F = (size_t)cfg->d_ff_expert, H = (size_t)cfg->d_model, mat = F * H;
    for (int64_t i = 0; i < L * E; i++) group_of[i] = -1;
    *buffers = NULL;
    if (keep < 1 || keep > E) return mk_err(MK_ERR_ARG, "merge: %lld clusters per layer is outside [1, %lld]", (long long)keep, (long long)E);
    if (!(o->rank_frac > 0 && o->rank_frac <= 1)) return mk_err(MK_ERR_ARG, "merge: rank fraction %g is not in (0, 1]", o->rank_frac);
    if (!o->similarity) return mk_err(MK_ERR_ARG, "merge: submoe clusters experts by the similarity of their outputs, which needs calibration tokens");
    int64_t n_moe = 0;
    for (int64_t l = 0; l < L; l++) n_moe += m->layers[l].is_moe;
    mk_expert_out *x = mk_calloc((size_t)(L * E), sizeof *x);
    int32_t *map = mk_malloc((size_t)E * sizeof *map), *prev = mk_malloc((size_t)E * sizeof *prev);
    double *cent = mk_malloc((size_t)(E * E) * sizeof *cent), *d2 = mk_malloc((size_t)E * sizeof *d2), *w = mk_malloc((size_t)E * sizeof *w);
    float *mem = mk_malloc((size_t)E * 3 * mat * sizeof(float)), **ws = mk_malloc((size_t)E * sizeof *ws), **merged = mk_calloc((size_t)E, sizeof *merged);
    float *buf = mk_malloc(((size_t)n_moe * (size_t)(E / 2) + 1) * 3 * mat * sizeof(float));
    mk_status st = MK_OK;
    if (!x || !map || !prev || !cent || !d2 || !w || !mem || !ws || !merged || !buf) { st = MK_ERR_NOMEM; goto out; }
    size_t used = 0;
    for (int64_t l = 0; l < L; l++) {
        const mk_layer_w *lw = &m->layers[l];
        if (!lw->is_moe) continue;
        int32_t *label = group_of + l * E;
        kmeans_groups(E, o->similarity + (size_t)(l * E * E), keep, MK_SUBMOE_SEED + (uint64_t)l, cent, d2, prev, label);
        const int64_t ng = canonical_labels(E, label, map);
        for (int64_t g = 0; g < ng; g++) {
            merged[g] = NULL;
            int64_t n = 0;
            double fsum = 0;
            for (int64_t e = 0; e < E; e++)
                if (label[e] == g) {
                    float *p = mem + (size_t)n * 3 * mat;
                    load_expert(&lw->experts[e], F, H, p, p + mat, p + 2 * mat);
                    w[n] = freq[l * E + e];
                    fsum += w[n++];
                }
            if (n == 1) continue;
            for (int64_t i = 0; i < n; i++) w[i] = fsum > 0 ? w[i] / fsum : 1.0 / (double)n;
            float *out = buf + used;
            used += 3 * mat;
            merged[g] = out;
            for (int p = 0; p < 3; p++) {
                for (int64_t i = 0; i < n; i++) ws[i] = mem + (size_t)i * 3 * mat + (size_t)p * mat;
                size_t rows = p < 2 ? F : H, cols = p < 2 ? H : F;
                if ((st = union_merge(ws, w, n, rows, cols, o->rank_frac, out + (size_t)p * mat))) goto out;
            }
        }
        bind_members(E, l, label, merged, mat, x);
    }
    hand_over_bound_plan(plan, E, &x, buffers, &buf);
out:
    free(x); free(map); free(prev); free(cent); free(d2); free(w); free(mem); free(ws); free(merged); free(buf);
    return st;
}

mk_status mk_msmoe_plan(const mk_model *m, const double *freq, int64_t keep, const mk_msmoe_opts *o, mk_expert_plan *plan,
                        float **buffers, int32_t *group_of) {
    if (o->slice && o->budget != MK_BUDGET_LAYER) return mk_err(MK_ERR_ARG, "merge: msmoe-slice takes the same number of experts in every layer (no global budget)");
    return o->slice ? msmoe_slice_plan(m, freq, keep, o, plan, buffers, group_of) : msmoe_bind_plan(m, freq, keep, o, plan, buffers, group_of);
}

mk_status mk_submoe_plan(const mk_model *m, const double *freq, int64_t keep, const mk_submoe_opts *o, mk_expert_plan *plan,
                         float **buffers, int32_t *group_of) {
    return o->slice ? submoe_slice_plan(m, freq, keep, o->similarity, o->rank_frac, plan, buffers, group_of)
                    : submoe_bind_plan(m, freq, keep, o, plan, buffers, group_of);
}
