/* NAEE expert selection by layer-wise reconstruction loss (research/methods.md §1.1). */
#include "compress.h"
#include "route/route.h"
#include "tensor/tensor.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

typedef struct naee_cap {
    const mk_model *m;
    size_t H, base;          /* row offset of the current sequence */
    float **X, **Z;          /* per layer (n_tok, d_model) */
} naee_cap;

static void on_moe(void *u, const mk_moe_event *ev) {
    naee_cap *c = u;
    size_t off = (c->base + ev->pos0) * c->H, n = ev->n_tok * c->H;
    memcpy(c->X[ev->layer] + off, ev->block_in, n * sizeof(float));
    memcpy(c->Z[ev->layer] + off, ev->block_out, n * sizeof(float));
}

/* Σ over sequences of ||Z − Z_S||_F for one layer and one mask. */
static mk_status subset_loss(mk_ctx *ctx, int64_t l, const naee_cap *cap, size_t n_tok, size_t seq, const uint8_t *mask,
                             float *zs, double *loss) {
    const size_t H = cap->H;
    double total = 0;
    for (size_t s0 = 0; s0 < n_tok; s0 += seq) {
        size_t n = MK_MIN(seq, n_tok - s0);
        mk_status st = mk_ctx_moe_block(ctx, l, cap->X[l] + s0 * H, n, mask, zs);
        if (st) return st;
        double ss = 0;
        const float *z = cap->Z[l] + s0 * H;
        for (size_t i = 0; i < n * H; i++) {
            double d = (double)z[i] - (double)zs[i];
            ss += d * d;
        }
        total += sqrt(ss);
    }
    *loss = total;
    return MK_OK;
}

/* Per-token moments of one layer (see mk_naee_select): row t of zg holds ||Z_t||², then <Z_t, E_e>
 * for e < E, then <E_e, E_f> for e <= f in row-major upper-triangle order. */
typedef struct naee_moments {
    int64_t E;
    size_t stride;
    double *zg;
    float *logits; /* (n_tok, E) router logits, computed per sequence as the MoE block does */
    int32_t *ids0; /* (n_tok, k) the unmasked routing: a token routed the same way under a mask */
    float *w0;     /* (n_tok, k) has Z_S = Z exactly, as in the block re-run, and adds 0 */
    float *pscr;   /* (threads, MK_ROUTE_SCRATCH(E)) scratch */
    const float *sel_bias; /* the layer's router selection bias, or NULL */
} naee_moments;

static inline size_t tri(int64_t E, int64_t e, int64_t f) { /* e <= f */
    return (size_t)(1 + E + e * E - e * (e - 1) / 2 + (f - e));
}

static mk_status layer_moments(mk_ctx *ctx, const mk_model *m, int64_t l, const naee_cap *cap, size_t n_tok, size_t seq, float *eo,
                               uint8_t *mask, naee_moments *mo) {
    const int64_t E = m->cfg.n_expert;
    const size_t H = cap->H;
    const uint8_t *live = m->live ? m->live + l * E : NULL;
    for (size_t s0 = 0; s0 < n_tok; s0 += seq) {
        const size_t n = MK_MIN(seq, n_tok - s0);
        mk_router_logits(m, l, cap->X[l] + s0 * H, n, mo->logits + s0 * (size_t)E);
        /* E_e(x) for every token: the block with only e allowed routes each token to e with weight 1 */
        for (int64_t e = 0; e < E; e++) {
            if (live && !live[e]) continue;
            memset(mask, 0, (size_t)E);
            mask[e] = 1;
            mk_status st = mk_ctx_moe_block(ctx, l, cap->X[l] + s0 * H, n, mask, eo + (size_t)e * seq * H);
            if (st) return st;
        }
        const size_t K = (size_t)m->cfg.k_active;
        mo->sel_bias = m->layers[l].router_bias.data;
        mk_route_cfg rc = mk_route_cfg_of(&m->cfg);
        rc.mask = live;
        rc.sel_bias = mo->sel_bias;
        #pragma omp parallel for schedule(static)
        for (size_t t = 0; t < n; t++) {
            mk_route_select(&rc, mo->logits + (s0 + t) * (size_t)E, mo->ids0 + (s0 + t) * K, mo->w0 + (s0 + t) * K, mo->pscr + (size_t)omp_get_thread_num() * (size_t)MK_ROUTE_SCRATCH(E));
            double *g = mo->zg + (s0 + t) * mo->stride;
            const float *z = cap->Z[l] + (s0 + t) * H;
            double zz = 0;
            for (size_t i = 0; i < H; i++) zz += (double)z[i] * z[i];
            g[0] = zz;
            for (int64_t e = 0; e < E; e++) {
                if (live && !live[e]) continue;
                const float *a = eo + ((size_t)e * seq + t) * H;
                double za = 0;
                for (size_t i = 0; i < H; i++) za += (double)z[i] * a[i];
                g[1 + e] = za;
                for (int64_t f = e; f < E; f++) {
                    if (live && !live[f]) continue;
                    const float *b = eo + ((size_t)f * seq + t) * H;
                    double ab = 0;
                    for (size_t i = 0; i < H; i++) ab += (double)a[i] * b[i];
                    g[tri(E, e, f)] = ab;
                }
            }
        }
    }
    return MK_OK;
}

/* Loss(S) from the moments: Σ over sequences of sqrt(Σ_t ||Z_t − Σ_j w_j E_j(x_t)||²). ids, w, p:
 * scratch of E each. */
static double moments_loss(const mk_model *m, const naee_moments *mo, size_t n_tok, size_t seq, const uint8_t *mask,
                           int32_t *ids, float *w, float *p) {
    const int64_t E = mo->E;
    const size_t K = (size_t)m->cfg.k_active;
    mk_route_cfg rc = mk_route_cfg_of(&m->cfg);
    rc.mask = mask;
    rc.sel_bias = mo->sel_bias;
    double total = 0;
    for (size_t s0 = 0; s0 < n_tok; s0 += seq) {
        const size_t n = MK_MIN(seq, n_tok - s0);
        double ss = 0;
        for (size_t t = s0; t < s0 + n; t++) {
            const int64_t c = mk_route_select(&rc, mo->logits + t * (size_t)E, ids, w, p);
            if (!memcmp(ids, mo->ids0 + t * K, K * sizeof *ids) && !memcmp(w, mo->w0 + t * K, K * sizeof *w)) continue;
            const double *g = mo->zg + t * mo->stride;
            double d = g[0];
            for (int64_t i = 0; i < c; i++) {
                d -= 2.0 * w[i] * g[1 + ids[i]];
                for (int64_t j = 0; j < c; j++) {
                    const int64_t a = MK_MIN(ids[i], ids[j]), b = MK_MAX(ids[i], ids[j]);
                    d += (double)w[i] * w[j] * g[tri(E, a, b)];
                }
            }
            ss += d;
        }
        total += sqrt(ss > 0 ? ss : 0);
    }
    return total;
}

/* Whether expert e's group keeps more than its share gkeep without it (always, without groups). */
static bool droppable(const uint8_t *kept, int64_t e, int64_t G, int64_t per, int64_t gkeep) {
    if (G <= 1) return true;
    int64_t n = 0;
    for (int64_t f = e / per * per; f < (e / per + 1) * per; f++) n += kept[f] != 0;
    return n > gkeep;
}

mk_status mk_naee_select(const mk_model *m, const int32_t *tokens, size_t n_tok, const mk_naee_opts *o, int64_t keep,
                         uint8_t *keep_map, double *loss_out, int64_t *evals) {
    const mk_config *cfg = &m->cfg;
    const int64_t L = cfg->n_layer, E = cfg->n_expert;
    const size_t H = (size_t)cfg->d_model, seq = o->ctx ? o->ctx : 512;
    const int64_t exh = o->exhaustive_max > 0 ? o->exhaustive_max : 8;
    if (keep < cfg->k_active || keep > E) return mk_err(MK_ERR_ARG, "naee: keep %lld is outside [k = %lld, %lld experts]", (long long)keep, (long long)cfg->k_active, (long long)E);
    if (n_tok == 0) return mk_err(MK_ERR_ARG, "naee: no calibration tokens");
    /* Group-limited routing: subsets keep keep / G experts of every group (as mk_prune_select), so
     * the pruned model routes as the original with the others masked. */
    const int64_t G = cfg->n_group > 1 ? cfg->n_group : 1, per = E / G, gkeep = keep / G;
    if (G > 1 && (keep % G || gkeep * cfg->topk_group < cfg->k_active))
        return mk_err(MK_ERR_ARG, "naee: %s routes within %lld groups of %lld experts: keep a multiple of %lld with at least %lld per group", cfg->arch_name,
                      (long long)G, (long long)per, (long long)G, (long long)((cfg->k_active + cfg->topk_group - 1) / cfg->topk_group));
    *evals = 0;
    naee_cap cap = {.m = m, .H = H};
    cap.X = mk_calloc((size_t)L, sizeof *cap.X);
    cap.Z = mk_calloc((size_t)L, sizeof *cap.Z);
    float *zs = mk_malloc(seq * H * sizeof(float));
    uint8_t *mask = mk_malloc((size_t)E), *best = mk_malloc((size_t)E);
    mk_ctx *ctx = NULL;
    mk_status st = MK_OK;
    naee_moments mo = {0};
    float *eo = NULL;
    uint8_t *scr = NULL; /* per thread: E ids (int32), E weights, E probabilities, E mask bytes */
    double *cand = NULL;
    size_t nth = 1;
    const size_t sstride = ((size_t)E * 17 + 15) & ~(size_t)15; /* ids, weights, route scratch (2E floats), mask */
    if (!cap.X || !cap.Z || !zs || !mask || !best) { st = MK_ERR_NOMEM; goto out; }
    for (int64_t l = 0; l < L; l++)
        if (m->layers[l].is_moe) {
            cap.X[l] = mk_malloc(n_tok * H * sizeof(float));
            cap.Z[l] = mk_malloc(n_tok * H * sizeof(float));
            if (!cap.X[l] || !cap.Z[l]) { st = MK_ERR_NOMEM; goto out; }
        }
    if ((st = mk_ctx_new(&ctx, m, seq, seq))) goto out;
    mk_observer obs = {.user = &cap, .on_moe = on_moe};
    mk_ctx_set_observer(ctx, &obs);
    for (size_t s0 = 0; s0 < n_tok; s0 += seq) {
        mk_ctx_reset(ctx);
        cap.base = s0;
        if ((st = mk_ctx_forward(ctx, tokens + s0, MK_MIN(seq, n_tok - s0), MK_LOGITS_NONE, NULL))) goto out;
    }
    mk_ctx_set_observer(ctx, NULL);

    memset(keep_map, 0, (size_t)(L * E));
    const bool fast = !o->reference && !cfg->shared_expert;
    if (fast) {
        mo.E = E;
        mo.stride = (size_t)(1 + E + E * (E + 1) / 2);
        nth = (size_t)omp_get_max_threads();
        mo.zg = mk_malloc(n_tok * mo.stride * sizeof(double));
        mo.logits = mk_malloc(n_tok * (size_t)E * sizeof(float));
        mo.ids0 = mk_malloc(n_tok * (size_t)cfg->k_active * sizeof(int32_t));
        mo.w0 = mk_malloc(n_tok * (size_t)cfg->k_active * sizeof(float));
        mo.pscr = mk_malloc(nth * (size_t)MK_ROUTE_SCRATCH(E) * sizeof(float));
        eo = mk_malloc((size_t)E * seq * H * sizeof(float));
        scr = mk_malloc(nth * sstride);
        cand = mk_malloc((size_t)E * sizeof *cand);
        if (!mo.zg || !mo.logits || !mo.ids0 || !mo.w0 || !mo.pscr || !eo || !scr || !cand) { st = MK_ERR_NOMEM; goto out; }
    }
    for (int64_t l = 0; l < L; l++) {
        if (!m->layers[l].is_moe) {
            memset(keep_map + l * E, 1, (size_t)E);
            if (loss_out) loss_out[l] = 0;
            continue;
        }
        const uint8_t *live = m->live ? m->live + l * E : NULL;
        if (fast && (st = layer_moments(ctx, m, l, &cap, n_tok, seq, eo, mask, &mo))) goto out;
        double best_loss = INFINITY;
        if (E <= exh) {
            /* every subset of size keep, as bit masks in increasing order */
            for (uint64_t bits = 0; bits < (1ull << E); bits++) {
                if (__builtin_popcountll(bits) != keep) continue;
                bool balanced = true;
                for (int64_t g = 0; g < G && G > 1; g++) balanced &= __builtin_popcountll((bits >> (g * per)) & ((1ull << per) - 1)) == gkeep;
                if (!balanced) continue;
                for (int64_t e = 0; e < E; e++) mask[e] = (bits >> e) & 1;
                double ls;
                if (fast) {
                    for (int64_t e = 0; e < E; e++) mask[e] = mask[e] && (!live || live[e]);
                    ls = moments_loss(m, &mo, n_tok, seq, mask, (int32_t *)scr, (float *)(scr + (size_t)E * 4),
                                      (float *)(scr + (size_t)E * 8));
                } else if ((st = subset_loss(ctx, l, &cap, n_tok, seq, mask, zs, &ls))) {
                    goto out;
                }
                ++*evals;
                if (ls < best_loss) {
                    best_loss = ls;
                    memcpy(best, mask, (size_t)E);
                }
            }
        } else {
            memset(best, 1, (size_t)E);
            for (int64_t left = E; left > keep; left--) {
                int64_t drop = -1;
                double drop_loss = INFINITY;
                if (fast) {
                    /* candidates in parallel, each loss summed by one thread in a fixed order */
                    #pragma omp parallel for schedule(dynamic, 1)
                    for (int64_t e = 0; e < E; e++) {
                        cand[e] = INFINITY;
                        if (!best[e] || !droppable(best, e, G, per, gkeep)) continue;
                        uint8_t *s8 = scr + (size_t)omp_get_thread_num() * sstride;
                        uint8_t *mk = s8 + (size_t)E * 16;
                        for (int64_t f = 0; f < E; f++) mk[f] = f != e && best[f] && (!live || live[f]);
                        cand[e] = moments_loss(m, &mo, n_tok, seq, mk, (int32_t *)s8, (float *)(s8 + (size_t)E * 4),
                                               (float *)(s8 + (size_t)E * 8));
                    }
                    for (int64_t e = 0; e < E; e++) {
                        if (!best[e] || !droppable(best, e, G, per, gkeep)) continue;
                        ++*evals;
                        if (cand[e] < drop_loss) {
                            drop_loss = cand[e];
                            drop = e;
                        }
                    }
                } else {
                    for (int64_t e = 0; e < E; e++) {
                        if (!best[e] || !droppable(best, e, G, per, gkeep)) continue;
                        memcpy(mask, best, (size_t)E);
                        mask[e] = 0;
                        double ls;
                        if ((st = subset_loss(ctx, l, &cap, n_tok, seq, mask, zs, &ls))) goto out;
                        ++*evals;
                        if (ls < drop_loss) {
                            drop_loss = ls;
                            drop = e;
                        }
                    }
                }
                if (drop < 0) break; /* fewer live experts than keep */
                best[drop] = 0;
                best_loss = drop_loss;
            }
        }
        memcpy(keep_map + l * E, best, (size_t)E);
        if (loss_out) loss_out[l] = best_loss;
    }
out:
    mk_ctx_free(ctx);
    for (int64_t l = 0; l < L && cap.X; l++) {
        free(cap.X[l]);
        free(cap.Z[l]);
    }
    free(cap.X);
    free(cap.Z);
    free(zs);
    free(mask);
    free(best);
    free(mo.zg);
    free(mo.logits);
    free(mo.ids0);
    free(mo.w0);
    free(mo.pscr);
    free(eo);
    free(scr);
    free(cand);
    return st;
}
