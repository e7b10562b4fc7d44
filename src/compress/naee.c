/* NAEE expert selection by layer-wise reconstruction loss (research/methods.md §1.1). */
#include "compress.h"

#include <math.h>
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

mk_status mk_naee_select(const mk_model *m, const int32_t *tokens, size_t n_tok, const mk_naee_opts *o, int64_t keep,
                         uint8_t *keep_map, double *loss_out, int64_t *evals) {
    const mk_config *cfg = &m->cfg;
    const int64_t L = cfg->n_layer, E = cfg->n_expert;
    const size_t H = (size_t)cfg->d_model, seq = o->ctx ? o->ctx : 512;
    const int64_t exh = o->exhaustive_max > 0 ? o->exhaustive_max : 8;
    if (keep < cfg->k_active || keep > E) return mk_err(MK_ERR_ARG, "naee: keep %lld is outside [k = %lld, %lld experts]", (long long)keep, (long long)cfg->k_active, (long long)E);
    if (n_tok == 0) return mk_err(MK_ERR_ARG, "naee: no calibration tokens");
    *evals = 0;
    naee_cap cap = {.m = m, .H = H};
    cap.X = mk_calloc((size_t)L, sizeof *cap.X);
    cap.Z = mk_calloc((size_t)L, sizeof *cap.Z);
    float *zs = mk_malloc(seq * H * sizeof(float));
    uint8_t *mask = mk_malloc((size_t)E), *best = mk_malloc((size_t)E);
    mk_ctx *ctx = NULL;
    mk_status st = MK_OK;
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
    for (int64_t l = 0; l < L; l++) {
        if (!m->layers[l].is_moe) {
            memset(keep_map + l * E, 1, (size_t)E);
            if (loss_out) loss_out[l] = 0;
            continue;
        }
        double best_loss = INFINITY;
        if (E <= exh) {
            /* every subset of size keep, as bit masks in increasing order */
            for (uint64_t bits = 0; bits < (1ull << E); bits++) {
                if (__builtin_popcountll(bits) != keep) continue;
                for (int64_t e = 0; e < E; e++) mask[e] = (bits >> e) & 1;
                double ls;
                if ((st = subset_loss(ctx, l, &cap, n_tok, seq, mask, zs, &ls))) goto out;
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
                for (int64_t e = 0; e < E; e++) {
                    if (!best[e]) continue;
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
    return st;
}
