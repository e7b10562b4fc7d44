/* CAMERA-P micro-expert pruning (research/methods.md §1.6). */
#include "compress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cam {
    const mk_model *m;
    size_t F, H;
    double *sumsq, *maxsq;       /* (n_layer, E, F) */
    float *g, *u;                /* (F) scratch */
} cam;

static void on_moe(void *user, const mk_moe_event *ev) {
    cam *c = user;
    const size_t F = c->F, H = c->H, E = (size_t)ev->n_expert, K = (size_t)ev->k;
    for (size_t t = 0; t < ev->n_tok; t++) {
        const float *x = ev->block_in + t * H;
        for (size_t s = 0; s < K; s++) {
            int32_t e = ev->expert_ids[t * K + s];
            if (e < 0) continue;
            float gw = ev->expert_weights[t * K + s];
            mk_expert_forward(c->m, ev->layer, e, x, 1, c->g, c->u, NULL);
            double *ss = c->sumsq + ((size_t)ev->layer * E + (size_t)e) * F, *mx = c->maxsq + ((size_t)ev->layer * E + (size_t)e) * F;
            for (size_t i = 0; i < F; i++) {
                double act = (double)c->g[i] * gw, q = act * act;
                ss[i] += q;
                if (q > mx[i]) mx[i] = q;
            }
        }
    }
}

typedef struct sc {
    double v;
    int64_t c;
} sc;
static int by_score(const void *a, const void *b) {
    const sc *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->c < y->c ? -1 : (x->c > y->c);
}
static int by_index(const void *a, const void *b) {
    const sc *x = a, *y = b;
    return x->c < y->c ? -1 : (x->c > y->c);
}

mk_status mk_camera_plan(const mk_model *m, const int32_t *tokens, size_t n_tok, size_t ctx, double rho, int64_t d_ff_keep,
                         mk_expert_plan *plan, float **buffers) {
    const mk_config *cfg = &m->cfg;
    const int64_t L = cfg->n_layer, E = cfg->n_expert;
    const size_t F = (size_t)cfg->d_ff_expert, H = (size_t)cfg->d_model, Fk = (size_t)d_ff_keep;
    *buffers = NULL;
    if (d_ff_keep < 1 || d_ff_keep > cfg->d_ff_expert) return mk_err(MK_ERR_ARG, "camera: keeping %lld of %zu neurons per expert is not possible", (long long)d_ff_keep, F);
    if (!(rho >= 0 && rho <= 1)) return mk_err(MK_ERR_ARG, "camera: rho %g is not in [0, 1]", rho);
    if (n_tok == 0) return mk_err(MK_ERR_ARG, "camera: no calibration tokens");
    cam c = {.m = m, .F = F, .H = H};
    c.sumsq = mk_calloc((size_t)(L * E) * F, sizeof(double));
    c.maxsq = mk_calloc((size_t)(L * E) * F, sizeof(double));
    c.g = mk_malloc(F * sizeof(float));
    c.u = mk_malloc(F * sizeof(float));
    mk_expert_out *x = mk_calloc((size_t)(L * E), sizeof *x);
    sc *s = mk_malloc(F * sizeof *s);
    float *full = mk_malloc(3 * F * H * sizeof(float));
    int64_t n_moe = 0;
    for (int64_t l = 0; l < L; l++) n_moe += m->layers[l].is_moe;
    float *buf = mk_malloc((size_t)(n_moe * E) * 3 * Fk * H * sizeof(float));
    mk_ctx *ctxp = NULL;
    mk_status st = MK_OK;
    if (!c.sumsq || !c.maxsq || !c.g || !c.u || !x || !s || !full || !buf) { st = MK_ERR_NOMEM; goto fail; }
    if ((st = mk_ctx_new(&ctxp, m, ctx, ctx))) goto fail;
    mk_observer obs = {.user = &c, .on_moe = on_moe};
    mk_ctx_set_observer(ctxp, &obs);
    for (size_t s0 = 0; s0 < n_tok; s0 += ctx) {
        mk_ctx_reset(ctxp);
        if ((st = mk_ctx_forward(ctxp, tokens + s0, MK_MIN(ctx, n_tok - s0), MK_LOGITS_NONE, NULL))) goto fail;
    }
    size_t used = 0;
    for (int64_t l = 0; l < L; l++) {
        if (!m->layers[l].is_moe) continue;
        for (int64_t e = 0; e < E; e++) {
            const mk_mlp_w *w = &m->layers[l].experts[e];
            float *gd = full, *ud = full + F * H, *dd = full + 2 * F * H;
            mk_to_f32(gd, w->gate.data, w->gate.dtype, F * H);
            mk_to_f32(ud, w->up.data, w->up.dtype, F * H);
            mk_to_f32(dd, w->down.data, w->down.dtype, H * F);
            const double *ss = c.sumsq + ((size_t)(l * E + e)) * F, *mx = c.maxsq + ((size_t)(l * E + e)) * F;
            for (size_t i = 0; i < F; i++) {
                double col = 0;
                for (size_t h = 0; h < H; h++) col += (double)dd[h * F + i] * dd[h * F + i];
                s[i] = (sc){col * ((1 - rho) * ss[i] + rho * mx[i]), (int64_t)i};
            }
            qsort(s, F, sizeof *s, by_score);
            qsort(s, Fk, sizeof *s, by_index);
            float *g = buf + used, *u = g + Fk * H, *d = u + Fk * H;
            used += 3 * Fk * H;
            for (size_t j = 0; j < Fk; j++) {
                size_t i = (size_t)s[j].c;
                memcpy(g + j * H, gd + i * H, H * sizeof(float));
                memcpy(u + j * H, ud + i * H, H * sizeof(float));
                for (size_t h = 0; h < H; h++) d[h * Fk + j] = dd[h * F + i];
            }
            x[l * E + e] = (mk_expert_out){.copy_from = -1, .gate = g, .up = u, .down = d, .router_from = (int32_t)e};
        }
    }
    plan->n_out = E;
    plan->d_ff_out = d_ff_keep;
    plan->x = x;
    *buffers = buf;
    mk_ctx_free(ctxp);
    free(c.sumsq); free(c.maxsq); free(c.g); free(c.u); free(s); free(full);
    return MK_OK;
fail:
    mk_ctx_free(ctxp);
    free(c.sumsq); free(c.maxsq); free(c.g); free(c.u); free(s); free(full); free(x); free(buf);
    return st;
}
