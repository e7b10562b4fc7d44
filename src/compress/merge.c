/* Expert merging: M-SMoE (research/methods.md §2.1). */
#include "compress.h"

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

/* Groups of layer l: the keep most used experts are dominant (output order: by expert id); every
 * other expert joins the dominant it is most similar to (similarity (n_layer, E, E), or the
 * cosine of the router's weight rows). dom (keep), od (E) and rw (E, d_model) are scratch. */
static void choose_groups(const mk_model *m, int64_t l, const double *freq, int64_t keep, const float *similarity, ord *od, int64_t *dom,
                          float *rw, int32_t *group_of) {
    const int64_t E = m->cfg.n_expert;
    const size_t H = (size_t)m->cfg.d_model;
    const mk_layer_w *lw = &m->layers[l];
    for (int64_t e = 0; e < E; e++) od[e] = (ord){freq[l * E + e], e};
    qsort(od, (size_t)E, sizeof *od, by_freq_desc);
    for (int64_t j = 0; j < keep; j++) dom[j] = od[j].e;
    for (int64_t a = 1; a < keep; a++)
        for (int64_t b = a; b > 0 && dom[b - 1] > dom[b]; b--) { int64_t t = dom[b]; dom[b] = dom[b - 1]; dom[b - 1] = t; }
    const float *sim = similarity ? similarity + (size_t)l * (size_t)(E * E) : NULL;
    if (!sim) mk_to_f32(rw, lw->router.data, lw->router.dtype, (size_t)E * H);
    for (int64_t e = 0; e < E; e++) {
        int64_t best = -1;
        double bs = -INFINITY;
        for (int64_t j = 0; j < keep; j++) {
            if (dom[j] == e) { best = j; break; }
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

mk_status mk_msmoe_plan(const mk_model *m, const double *freq, int64_t keep, const mk_msmoe_opts *o, mk_expert_plan *plan,
                        float **buffers, int32_t *group_of) {
    const mk_config *cfg = &m->cfg;
    const int64_t L = cfg->n_layer, E = cfg->n_expert;
    for (int64_t i = 0; i < L * E; i++) group_of[i] = -1; /* dense layers: no group */
    const size_t H = (size_t)cfg->d_model, F = (size_t)cfg->d_ff_expert, mat = F * H;
    *buffers = NULL;
    if (keep < cfg->k_active || keep > E)
        return mk_err(MK_ERR_ARG, "merge: keeping %lld experts per layer is outside [k = %lld, %lld]", (long long)keep, (long long)cfg->k_active, (long long)E);
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

mk_status mk_submoe_plan(const mk_model *m, const double *freq, int64_t keep, const float *similarity, double rank_frac,
                         mk_expert_plan *plan, float **buffers, int32_t *group_of) {
    const mk_config *cfg = &m->cfg;
    const int64_t L = cfg->n_layer, E = cfg->n_expert;
    for (int64_t i = 0; i < L * E; i++) group_of[i] = -1; /* dense layers: no group */
    const size_t H = (size_t)cfg->d_model, F = (size_t)cfg->d_ff_expert, mat = F * H;
    *buffers = NULL;
    if (keep < cfg->k_active || keep > E)
        return mk_err(MK_ERR_ARG, "merge: keeping %lld experts per layer is outside [k = %lld, %lld]", (long long)keep, (long long)cfg->k_active, (long long)E);
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
