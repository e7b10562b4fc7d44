/* The forward pass, written once for every architecture (research/formats.md §0):
 *   x = embed(tokens)
 *   per layer: x += Attn(RMSNorm(x));  x += FFN(RMSNorm(x))   (FFN = MoE block or dense MLP)
 *   logits = lm_head(RMSNorm(x))
 * Activations are f32; weights stay in their stored dtype and are read through the kernels.
 * layer_forward() runs one layer over a batch of tokens of one sequence, so the same code serves
 * a whole-model prefill, a KV-cached decode step, and (later) layer-streamed calibration. */
#include "model.h"
#include "route/route.h"
#include "tensor/kernels.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

struct mk_ctx {
    const mk_model *m;
    size_t n_ctx, max_batch, pos;
    int n_threads;
    int64_t k_cap;                 /* expert slots per token the buffers hold */
    float *k_cache, *v_cache;      /* (n_layer, n_kv_head, n_ctx, d_head): a head's keys are contiguous;
                                      MLA: k_cache (n_layer, n_ctx, r + qk_rope) latents and RoPE keys, no v_cache */
    float *rope_cos, *rope_sin;    /* (n_ctx, rope_dim/2) */
    /* (max_batch, ·) activations */
    float *x, *xn, *q, *kn, *vn, *att, *tmp, *moe_out, *rlogits, *wts, *eo;
    float *qa, *qq, *att2;         /* MLA: (max_batch, q_lora), absorbed queries (max_batch, n_head·(r + qk_rope)),
                                      head outputs (max_batch, n_head·v_head); NULL otherwise */
    int32_t *ids;
    float *scores;                 /* (n_threads, n_ctx) attention scratch */
    float *head_scores;            /* (max_batch, n_ctx) one head's scores for a batch (prefill) */
    float *head_vt;                /* (d_head, n_ctx) one head's cached V transposed (prefill P·V) */
    float *route_scratch;          /* (n_threads, MK_ROUTE_SCRATCH(n_expert)) */
    /* expert grouping */
    int32_t *grp;                  /* (max_batch·k_cap) slot indices, grouped by expert */
    int32_t *slot_row;             /* (max_batch·k_cap) the inverse: slot → its row in the grouped buffers */
    int32_t *grp_start;            /* (n_expert + 1) */
    int32_t *grp_cur;              /* (n_expert) */
    float *gx, *gg, *gu, *go;      /* (max_batch, d_model | d_ff_max) */
    float *egx, *ego;              /* (max_batch·k_cap, d_model) expert inputs / outputs, grouped by expert */
    float *egg, *egu;              /* (max_batch·k_cap, d_ff_expert) */
    uint8_t *egq;                  /* (max_batch·k_cap) expert input rows quantized for block-quantized experts */
    int32_t *active;               /* (n_expert) experts with tokens in this batch */
    float *logit_rows;             /* (max_batch, d_model) final-normed rows for the LM head */
    bool has_obs;
    mk_observer obs;
    /* routing policy (a private copy of the caller's mk_route_opts) */
    int64_t route_k;               /* top-k k */
    int64_t slots;                 /* expert slots per token this policy may fill */
    float top_p, skip_beta;
    bool top_p_renorm;
    int64_t rank;                  /* -1 = off */
    float *skip_betas;             /* (n_layer) or NULL */
    uint8_t *mask;                 /* (n_layer, n_expert) the policy's mask AND the model's live experts, or NULL */
    uint8_t *mask_row;             /* (n_expert) scratch: a caller's mask row AND the layer's live experts */
    uint8_t *zero;                 /* (n_layer, n_expert) experts whose output is dropped from the sum, or NULL */
    mk_route_boost *boosts;
    size_t n_boosts;
    double *used, *routed;         /* (n_layer) experts used and tokens routed, for the average */
    bool no_check_finite;          /* mk_ctx_set_check_finite(c, false) */
};

static int64_t d_ff_max(const mk_config *c) {
    return MK_MAX(c->d_ff_expert, MK_MAX(c->d_ff_dense, c->d_ff_shared));
}

void mk_ctx_free(mk_ctx *c) {
    if (!c) return;
    float **bufs[] = {&c->k_cache, &c->v_cache, &c->rope_cos, &c->rope_sin, &c->x, &c->xn, &c->q, &c->kn, &c->vn, &c->att, &c->tmp,
                      &c->moe_out, &c->rlogits, &c->wts, &c->eo, &c->scores, &c->head_scores, &c->head_vt, &c->route_scratch, &c->gx, &c->gg, &c->gu,
                      &c->go, &c->logit_rows, &c->egx, &c->ego, &c->egg, &c->egu, &c->qa, &c->qq, &c->att2};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) mk_free_aligned(*bufs[i]);
    free(c->ids);
    free(c->grp);
    free(c->slot_row);
    mk_free_aligned(c->egq);
    free(c->grp_start);
    free(c->grp_cur);
    free(c->active);
    free(c->mask);
    free(c->mask_row);
    free(c->zero);
    free(c->skip_betas);
    free(c->boosts);
    free(c->used);
    free(c->routed);
    free(c);
}

static float *falloc(size_t n, size_t m, bool *ok) {
    size_t bytes;
    if (!mk_mul_ok(n, m, &bytes) || !mk_mul_ok(bytes, sizeof(float), &bytes)) {
        mk_err(MK_ERR_NOMEM, "buffer size overflow (%zu x %zu floats)", n, m);
        *ok = false;
        return NULL;
    }
    float *p = mk_malloc_aligned(bytes);
    if (!p) *ok = false;
    else memset(p, 0, bytes);
    return p;
}

/* (Re)allocates what depends on the number of expert slots per token. */
static mk_status alloc_slots(mk_ctx *c, int64_t k) {
    const mk_config *cfg = &c->m->cfg;
    bool ok = true;
    float **bufs[] = {&c->wts, &c->eo, &c->egx, &c->ego, &c->egg, &c->egu};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) mk_free_aligned(*bufs[i]);
    free(c->ids);
    free(c->grp);
    free(c->slot_row);
    mk_free_aligned(c->egq);
    c->egq = NULL;
    const size_t slots = c->max_batch * (size_t)k;
    c->wts = falloc(c->max_batch, (size_t)k, &ok);
    c->eo = falloc(slots, (size_t)cfg->d_model, &ok);
    c->egx = falloc(slots, (size_t)cfg->d_model, &ok);
    c->ego = falloc(slots, (size_t)cfg->d_model, &ok);
    c->egg = falloc(slots, (size_t)cfg->d_ff_expert, &ok);
    c->egu = falloc(slots, (size_t)cfg->d_ff_expert, &ok);
    c->ids = mk_calloc(c->max_batch * (size_t)k, sizeof(int32_t));
    c->grp = mk_calloc(c->max_batch * (size_t)k, sizeof(int32_t));
    c->slot_row = mk_calloc(c->max_batch * (size_t)k, sizeof(int32_t));
    const size_t qrow = mk_kern_qact_bytes_max((size_t)MK_MAX(cfg->d_model, cfg->d_ff_expert));
    size_t qbytes;
    c->egq = mk_mul_ok(slots, qrow, &qbytes) ? mk_malloc_aligned(qbytes) : NULL;
    if (!ok || !c->ids || !c->grp || !c->slot_row || !c->egq) return MK_ERR_NOMEM;
    c->k_cap = k;
    return MK_OK;
}

mk_status mk_ctx_new(mk_ctx **out, const mk_model *m, size_t n_ctx, size_t max_batch) {
    *out = NULL;
    const mk_config *cfg = &m->cfg;
    if (n_ctx == 0) return mk_err(MK_ERR_ARG, "context size must be positive");
    if (max_batch == 0 || max_batch > n_ctx) max_batch = n_ctx;
    mk_ctx *c = mk_calloc(1, sizeof *c);
    if (!c) return MK_ERR_NOMEM;
    c->m = m;
    c->n_ctx = n_ctx;
    c->max_batch = max_batch;
    c->n_threads = omp_get_max_threads();
    c->route_k = c->slots = cfg->k_active;
    c->rank = -1;
    const size_t H = (size_t)cfg->d_model, q_dim = (size_t)(cfg->n_head * cfg->d_head),
                 kv_dim = (size_t)(cfg->n_kv_head * cfg->d_head), E = (size_t)cfg->n_expert, B = max_batch,
                 half = (size_t)cfg->rope_dim / 2, F = (size_t)d_ff_max(cfg);
    /* MLA: a cache row of r + qk_rope per token and layer; attend() writes each head's latent
     * output (r) to att, reads the transposed values (r, n_ctx) from head_vt */
    const size_t R = cfg->mla ? (size_t)(cfg->kv_lora_rank + cfg->qk_rope) : 0, nh = (size_t)cfg->n_head;
    const size_t att_w = cfg->mla ? nh * (size_t)cfg->kv_lora_rank : q_dim, vt_rows = cfg->mla ? (size_t)cfg->kv_lora_rank : (size_t)cfg->d_head;
    bool ok = true;
    c->k_cache = falloc((size_t)cfg->n_layer * n_ctx, cfg->mla ? R : kv_dim, &ok);
    c->v_cache = cfg->mla ? NULL : falloc((size_t)cfg->n_layer * n_ctx, kv_dim, &ok);
    c->rope_cos = falloc(n_ctx, half, &ok);
    c->rope_sin = falloc(n_ctx, half, &ok);
    c->x = falloc(B, H, &ok);
    c->xn = falloc(B, H, &ok);
    c->q = falloc(B, q_dim, &ok);
    c->kn = falloc(B, cfg->mla ? R : kv_dim, &ok);
    c->vn = falloc(B, kv_dim, &ok);
    c->att = falloc(B, att_w, &ok);
    if (cfg->mla) {
        c->qa = cfg->q_lora_rank ? falloc(B, (size_t)cfg->q_lora_rank, &ok) : NULL;
        c->qq = falloc(B, nh * R, &ok);
        c->att2 = falloc(B, nh * (size_t)cfg->v_head, &ok);
    }
    c->tmp = falloc(B, MK_MAX(H, F), &ok);
    c->moe_out = falloc(B, H, &ok);
    c->rlogits = falloc(B, E, &ok);
    c->scores = falloc((size_t)c->n_threads, n_ctx, &ok);
    c->head_scores = B > 1 ? falloc(B, n_ctx, &ok) : NULL;
    c->head_vt = B > 1 ? falloc(vt_rows, n_ctx, &ok) : NULL;
    c->route_scratch = falloc((size_t)c->n_threads, MK_ROUTE_SCRATCH(E), &ok);
    c->gx = falloc(B, H, &ok);
    c->gg = falloc(B, F, &ok);
    c->gu = falloc(B, F, &ok);
    c->go = falloc(B, H, &ok);
    c->logit_rows = falloc(B, H, &ok);
    c->grp_start = mk_calloc(E + 1, sizeof(int32_t));
    c->grp_cur = mk_calloc(E, sizeof(int32_t));
    c->used = mk_calloc((size_t)cfg->n_layer, sizeof(double));
    c->routed = mk_calloc((size_t)cfg->n_layer, sizeof(double));
    c->active = mk_calloc(E, sizeof(int32_t));
    if (m->live) { /* a per-layer model: its smaller layers' padding experts are never routed to */
        c->mask = mk_malloc((size_t)cfg->n_layer * E);
        c->mask_row = mk_malloc(E);
        if (c->mask) memcpy(c->mask, m->live, (size_t)cfg->n_layer * E);
        ok = ok && c->mask && c->mask_row;
    }
    if (!ok || !c->grp_start || !c->grp_cur || !c->used || !c->routed || !c->active || alloc_slots(c, cfg->k_active)) {
        mk_ctx_free(c);
        return mk_err(MK_ERR_NOMEM, "%s: cannot allocate the run state for a context of %zu tokens", m->dir, n_ctx);
    }
    /* RoPE tables as HF computes them: inv_freq and position·inv_freq in f32, cos/sin times the
     * attention factor (YaRN's; 1 otherwise). */
    float *inv = mk_malloc(half * sizeof *inv);
    if (!inv) {
        mk_ctx_free(c);
        return MK_ERR_NOMEM;
    }
    const bool long_rope = mk_rope_long(cfg, n_ctx); /* LongRoPE: one factor set for the whole context */
    mk_rope_inv_freq(cfg, cfg->rope_dim, long_rope, inv);
    const float af = mk_rope_mscale(cfg, long_rope);
    for (size_t i = 0; i < half; i++)
        for (size_t p = 0; p < n_ctx; p++) {
            float f = (float)p * inv[i];
            c->rope_cos[p * half + i] = af == 1.0f ? cosf(f) : cosf(f) * af;
            c->rope_sin[p * half + i] = af == 1.0f ? sinf(f) : sinf(f) * af;
        }
    free(inv);
    *out = c;
    return MK_OK;
}

void mk_ctx_reset(mk_ctx *c) { c->pos = 0; }
size_t mk_ctx_pos(const mk_ctx *c) { return c->pos; }
void mk_ctx_truncate(mk_ctx *c, size_t pos) {
    if (pos < c->pos) c->pos = pos;
}

void mk_ctx_set_observer(mk_ctx *c, const mk_observer *obs) {
    c->has_obs = obs != NULL;
    if (obs) c->obs = *obs;
}

mk_status mk_ctx_set_route(mk_ctx *c, const mk_route_opts *r) {
    const mk_config *cfg = &c->m->cfg;
    const int64_t E = cfg->n_expert, NL = cfg->n_layer;
    mk_route_opts def = {0};
    if (!r) r = &def;
    int64_t k = r->k > 0 ? r->k : cfg->k_active;
    if (k > E) return mk_err(MK_ERR_ARG, "route: k = %lld exceeds the model's %lld experts", (long long)k, (long long)E);
    int64_t slots = k;
    if (r->top_p > 0) {
        if (r->top_p > 1) return mk_err(MK_ERR_ARG, "route: top-p %g is not in (0, 1]", (double)r->top_p);
        slots = r->k_max > 0 ? MK_MIN(r->k_max, E) : E;
    }
    if (r->rank_only) {
        if (r->rank < 0 || r->rank >= E) return mk_err(MK_ERR_ARG, "route: rank %lld is outside the model's %lld experts", (long long)r->rank, (long long)E);
        slots = MK_MAX(slots, r->rank + 1);
    }
    if (r->skip_beta < 0 || r->skip_beta > 1) return mk_err(MK_ERR_ARG, "route: skip beta %g is not in [0, 1]", (double)r->skip_beta);
    if (cfg->sparsemixer_eps > 0 && (r->top_p > 0 || r->rank_only || r->skip_beta > 0 || r->skip_betas || r->n_boosts))
        return mk_err(MK_ERR_UNSUPPORTED, "route: %s routes with sparsemixer, which has no probabilities over all experts: top-p, rank, skip and boost do not apply (top-k, mask and zero do)",
                      cfg->arch_name);
    for (size_t b = 0; b < r->n_boosts; b++)
        if (r->boosts[b].layer < 0 || r->boosts[b].layer >= NL || r->boosts[b].expert < 0 || r->boosts[b].expert >= E || !(r->boosts[b].factor >= 0))
            return mk_err(MK_ERR_ARG, "route: boost %lld:%lld:%g is outside the model (%lld layers, %lld experts)", (long long)r->boosts[b].layer,
                          (long long)r->boosts[b].expert, (double)r->boosts[b].factor, (long long)NL, (long long)E);
    for (int64_t l = 0; l < NL; l++) {
        size_t nb = 0;
        for (size_t b = 0; b < r->n_boosts; b++) nb += r->boosts[b].layer == l;
        if (nb > 8) return mk_err(MK_ERR_ARG, "route: %zu boosts in layer %lld (at most 8 per layer)", nb, (long long)l);
    }
    if (slots > c->k_cap && alloc_slots(c, slots)) return MK_ERR_NOMEM;
    const uint8_t *live = c->m->live;
    uint8_t *mask = NULL;
    float *betas = NULL;
    mk_route_boost *boosts = NULL;
    if ((r->mask || live) && !(mask = mk_malloc((size_t)(NL * E)))) return MK_ERR_NOMEM;
    if (mask)
        for (int64_t i = 0; i < NL * E; i++) mask[i] = (!r->mask || r->mask[i]) && (!live || live[i]);
    if (r->mask)
        for (int64_t l = 0; l < NL; l++) {
            if (!c->m->layers[l].is_moe) continue;
            int64_t allowed = 0;
            for (int64_t e = 0; e < E; e++) allowed += mask[l * E + e] != 0;
            if (allowed == 0) {
                free(mask);
                return mk_err(MK_ERR_ARG, "route: the expert mask leaves no expert in layer %lld", (long long)l);
            }
        }
    uint8_t *zero = NULL;
    if (r->zero && !(zero = mk_malloc((size_t)(NL * E)))) { free(mask); return MK_ERR_NOMEM; }
    if (zero) memcpy(zero, r->zero, (size_t)(NL * E));
    if (r->skip_betas && !(betas = mk_malloc((size_t)NL * sizeof *betas))) { free(mask); free(zero); return MK_ERR_NOMEM; }
    if (r->n_boosts && !(boosts = mk_malloc(r->n_boosts * sizeof *boosts))) { free(mask); free(zero); free(betas); return MK_ERR_NOMEM; }
    if (betas) memcpy(betas, r->skip_betas, (size_t)NL * sizeof *betas);
    if (boosts) memcpy(boosts, r->boosts, r->n_boosts * sizeof *boosts);
    free(c->mask);
    free(c->zero);
    free(c->skip_betas);
    free(c->boosts);
    c->mask = mask;
    c->zero = zero;
    c->skip_betas = betas;
    c->boosts = boosts;
    c->n_boosts = r->n_boosts;
    c->route_k = k;
    c->slots = slots;
    c->top_p = r->top_p;
    c->top_p_renorm = r->top_p_renorm;
    c->skip_beta = r->skip_beta;
    c->rank = r->rank_only ? r->rank : -1;
    mk_ctx_reset_route_stats(c);
    return MK_OK;
}

double mk_ctx_experts_per_token(const mk_ctx *c, int64_t l) {
    if (l < 0 || l >= c->m->cfg.n_layer || c->routed[l] == 0) return 0;
    return c->used[l] / c->routed[l];
}

void mk_ctx_reset_route_stats(mk_ctx *c) {
    memset(c->used, 0, (size_t)c->m->cfg.n_layer * sizeof *c->used);
    memset(c->routed, 0, (size_t)c->m->cfg.n_layer * sizeof *c->routed);
}

/* The block and final norm of one row: RMSNorm, or LayerNorm with its bias (Phi-MoE). */
static inline void block_norm(const mk_config *cfg, float *y, const float *x, const mk_tensor *w, const mk_tensor *b, size_t H) {
    if (cfg->layernorm) mk_layernorm(y, x, w->data, b->data, H, cfg->rms_eps); /* both F32 (MK_ROLE_F32) */
    else mk_rmsnorm(y, x, w, H, cfg->rms_eps);
}

/* Half-rotation RoPE ("rotate_half") on one head vector of d values at position p. */
static void rope_half(float *v, const float *cs, const float *sn, size_t d) {
    size_t h = d / 2;
    for (size_t i = 0; i < h; i++) {
        float a = v[i], b = v[i + h];
        v[i] = a * cs[i] - b * sn[i];
        v[i + h] = b * cs[i] + a * sn[i];
    }
}

static inline float silu(float x); /* below, with the exp it uses */

/* SwiGLU MLP over n rows: out (n, d_model) = down(silu(gate·x) ⊙ up·x). */
static void mlp_forward(mk_ctx *c, const mk_mlp_w *w, const float *x, size_t n, float *out) {
    const size_t H = (size_t)c->m->cfg.d_model, F = (size_t)w->gate.shape[0];
    mk_matmul(c->gg, F, x, H, n, &w->gate, NULL);
    mk_matmul(c->gu, F, x, H, n, &w->up, NULL);
    float *gg = c->gg;
    const float *gu = c->gu;
    #pragma omp parallel for simd schedule(static) num_threads(c->n_threads) if (n * F >= 65536)
    for (size_t i = 0; i < n * F; i++) gg[i] = silu(gg[i]) * gu[i];
    mk_matmul(out, H, c->gg, F, n, &w->down, NULL);
}

/* e^x for x ≤ 0 (a score minus its row's maximum), written so that the loop around it
 * vectorizes: x = n·ln2 + r with |r| ≤ ln2/2 (ln2 in two parts, Cody-Waite), e^r by its degree-6
 * Taylor polynomial, 2^n built in the exponent bits; within 2.6e-7 of expf relative (about 2 ulp)
 * down to −87, and e^−87 (1.6e−38, nothing against the row's largest weight 1) below. A NaN
 * comes out as NaN: the clamp below would turn it into e^−87, and a non-finite activation must
 * reach the layer's output, where the forward pass reports it. */
static inline float exp_neg(float x) {
    /* xc = max(−|x|, −87) on the bits (no float compare: the loop stays a vector loop): negative
     * floats order as their bit patterns do reversed, so the clamp is a signed integer min */
    int32_t xb;
    memcpy(&xb, &x, sizeof xb);
    const bool nan = (xb & INT32_MAX) > 0x7F800000;
    xb |= INT32_MIN;
    xb = xb < (int32_t)0xC2AE0000 ? xb : (int32_t)0xC2AE0000; /* −87.0f */
    float xc;
    memcpy(&xc, &xb, sizeof xc);
    const float shift = 12582912.0f; /* 1.5·2^23: adding it rounds to an integer (round to nearest even) */
    const float t = xc * 1.44269504088896341f + shift, n = t - shift;
    const float r = (xc - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t ti;
    memcpy(&ti, &t, sizeof ti);
    const int32_t e = (ti - 0x4B400000 + 127) * (1 << 23); /* n + 127 in the exponent field */
    float two_n;
    memcpy(&two_n, &e, sizeof two_n);
    return nan ? x : p * two_n;
}

/* x·sigmoid(x) from e = e^−|x| (exp_neg): sigmoid is 1/(1 + e) for x ≥ 0 and e/(1 + e) below;
 * a vector loop where expf was a call per element (0.75% of Q6_K pp512) */
static inline float silu(float x) {
    const float e = exp_neg(x);
    return x * ((x >= 0 ? 1.0f : e) / (1.0f + e));
}

void mk_expert_act(const mk_config *c, float *restrict g, const float *restrict u, size_t n) {
    if (!c->swiglu_oai) {
        #pragma omp simd
        for (size_t i = 0; i < n; i++) g[i] = silu(g[i]) * u[i];
        return;
    }
    /* transformers' GptOssExperts._apply_gate: gate clamped above, up on both sides, then
     * (up + 1)·gate·sigmoid(alpha·gate); sigmoid(z) from e = e^−|z| as in silu */
    const float lim = c->swiglu_limit, alpha = c->swiglu_alpha;
    #pragma omp simd
    for (size_t i = 0; i < n; i++) {
        const float x = fminf(g[i], lim), y = fminf(fmaxf(u[i], -lim), lim), z = alpha * x, e = exp_neg(z);
        g[i] = (y + 1.0f) * (x * ((z >= 0 ? 1.0f : e) / (1.0f + e)));
    }
}

/* sc[j] = softmax over keys j0..p of sc (mx = its maximum), in place; with a sink logit (GPT-OSS;
 * -INFINITY: none) that joins the softmax and takes its share of the weight to no value. */
static inline void softmax_keys(float *sc, size_t j0, size_t p, float mx, float sink) {
    if (sink > mx) mx = sink;
    #pragma omp simd
    for (size_t j = j0; j < p + 1; j++) sc[j] = exp_neg(sc[j] - mx);
    float sum = 0;
    #pragma omp simd reduction(+ : sum)
    for (size_t j = j0; j < p + 1; j++) sum += sc[j];
    if (sink != -INFINITY) sum += exp_neg(sink - mx);
    const float inv = 1.0f / sum;
    #pragma omp simd
    for (size_t j = j0; j < p + 1; j++) sc[j] *= inv;
}

/* o (D) = Σ_j softmax(sc)_j · v_j over keys j0..p, where mx = max sc; v_j = v + j·ld. sc is
 * overwritten with the weights. */
static inline void softmax_weighted_sum(float *sc, size_t j0, size_t p, float mx, float sink, const float *v, size_t ld, size_t D, float *restrict o) {
    softmax_keys(sc, j0, p, mx, sink);
    /* o = Σ_j sc[j]·v_j in 32-wide slices of o held in registers across the keys (the same
     * sums, in the same order, as one pass over o per key) */
    size_t i0 = 0;
    for (; i0 + 32 <= D; i0 += 32) {
        float acc[32] = {0};
        for (size_t j = j0; j <= p; j++) {
            const float a = sc[j], *restrict vj = v + j * ld + i0;
            #pragma omp simd
            for (size_t i = 0; i < 32; i++) acc[i] += a * vj[i];
        }
        memcpy(o + i0, acc, sizeof acc);
    }
    if (i0 < D) {
        memset(o + i0, 0, (D - i0) * sizeof(float));
        for (size_t j = j0; j <= p; j++) {
            const float a = sc[j], *restrict vj = v + j * ld;
            for (size_t i = i0; i < D; i++) o[i] += a * vj[i];
        }
    }
}

/* Where attend() finds its queries, keys and values and puts its output: nh query heads of dk
 * values (head h at q + t·ldq + h·dk for token t), reading KV head h / group, whose key at position
 * j is kc + g·k_hs + j·ldk (dk values) and value vc + g·v_hs + j·ldv (dv values); the output of head
 * h for token t goes to out + t·ldo + h·dv. GQA: a cache row per KV head; MLA: one "head" whose
 * key is the cached latent and RoPE key and whose value is the latent. */
typedef struct attn_geom {
    const float *q;
    size_t ldq, nh, group, dk, dv;
    const float *kc, *vc;
    size_t k_hs, v_hs, ldk, ldv;
    float *out;
    size_t ldo;
    float scale;
    size_t win;          /* sliding window: each query sees its last win positions; 0 = all */
    const float *sinks;  /* (nh) sink logits, or NULL */
} attn_geom;

/* Causal softmax attention of n tokens at positions pos0.. over the cache (keys [0, pos0 + n)
 * are there), each query against the keys up to its own position (and inside the sliding window).
 * wo: when given (with its bias bo), also the output projection tmp (n, d_model) = wo · out, fused
 * into the decode path's parallel region; else the caller projects. */
static void attend(mk_ctx *c, const attn_geom *g, size_t n, size_t pos0, const mk_tensor *wo, const mk_tensor *bo) {
    const mk_config *cfg = &c->m->cfg;
    const size_t H = (size_t)cfg->d_model, nh = g->nh, dk = g->dk, dv = g->dv, group = g->group;
    const float scale = g->scale;
    const size_t win = g->win;
    if (n >= 8 && c->head_scores) {
        /* Prefill: per head, all the batch's scores against keys [0, pos0 + n) as one product
         * (q rows × cached k rows, the matmul kernels), the causal softmax per token (zero weight
         * for keys outside its window), then P·V as products too: over the head's V transposed,
         * in blocks of PV_TOK tokens, each against the keys up to its last token's position. */
        enum { PV_TOK = 64 };
        const size_t nk = pos0 + n;
        float *S = c->head_scores, *Vt = c->head_vt;
        #pragma omp parallel num_threads(c->n_threads)
        for (size_t h = 0; h < nh; h++) {
            const size_t kv = h / group;
            const float *kg = g->kc + kv * g->k_hs, *vg = g->vc + kv * g->v_hs;
            mk_matmul_team_f32_strided(S, nk, g->q + h * dk, g->ldq, n, kg, g->ldk, nk, dk);
            if (h % group == 0) { /* Vt (dv, nk) = this head's V (nk, dv) transposed, once per KV head */
                #pragma omp for schedule(static) nowait
                for (size_t j = 0; j < nk; j++)
                    for (size_t i = 0; i < dv; i++) Vt[i * nk + j] = vg[j * g->ldv + i];
            }
            #pragma omp barrier
            #pragma omp for schedule(dynamic, 4)
            for (size_t t = 0; t < n; t++) {
                const size_t p = pos0 + t, j0 = win && p + 1 > win ? p + 1 - win : 0;
                const size_t kend = MK_MIN(nk, pos0 + (t / PV_TOK + 1) * PV_TOK); /* the keys its block's product reads */
                float *sc = S + t * nk;
                float mx = -INFINITY;
                for (size_t j = j0; j <= p; j++) {
                    sc[j] *= scale;
                    if (sc[j] > mx) mx = sc[j];
                }
                softmax_keys(sc, j0, p, mx, g->sinks ? g->sinks[h] : -INFINITY);
                for (size_t j = 0; j < j0; j++) sc[j] = 0;
                for (size_t j = p + 1; j < kend; j++) sc[j] = 0;
            }
            /* (the omp for's barrier: every row of P is ready) */
            for (size_t t0 = 0; t0 < n; t0 += PV_TOK) {
                const size_t nt = MK_MIN((size_t)PV_TOK, n - t0);
                mk_matmul_team_f32_strided(g->out + t0 * g->ldo + h * dv, g->ldo, S + t0 * nk, nk, nt, Vt, nk, dv, pos0 + t0 + nt);
            }
            #pragma omp barrier /* the next head overwrites S and Vt */
        }
        if (wo) mk_matmul(c->tmp, H, g->out, g->ldo, n, wo, bo);
        return;
    }
    /* decode and small batches: the heads, then the output projection, in one parallel region (one
     * fork and one barrier fewer per layer) */
    #pragma omp parallel num_threads(c->n_threads)
    {
        #pragma omp for collapse(2) schedule(dynamic, 1)
        for (size_t t = 0; t < n; t++) {
            for (size_t h = 0; h < nh; h++) {
                float *sc = c->scores + (size_t)omp_get_thread_num() * c->n_ctx;
                const size_t p = pos0 + t, j0 = win && p + 1 > win ? p + 1 - win : 0;
                const float *qh = g->q + t * g->ldq + h * dk;
                const size_t kv = h / group;
                const float *kg = g->kc + kv * g->k_hs, *vg = g->vc + kv * g->v_hs;
                float mx = -INFINITY;
                for (size_t j = j0; j <= p; j++) {
                    const float *restrict kj = kg + j * g->ldk;
                    /* the values the weighted sum reads once the softmax is known: their misses
                     * overlap the scores' instead of following them */
                    for (size_t i = 0; i < dv; i += 64 / sizeof(float)) __builtin_prefetch(vg + j * g->ldv + i, 0, 3);
                    float d = 0;
                    #pragma omp simd reduction(+ : d)
                    for (size_t i = 0; i < dk; i++) d += qh[i] * kj[i];
                    sc[j] = d * scale;
                    if (sc[j] > mx) mx = sc[j];
                }
                softmax_weighted_sum(sc, j0, p, mx, g->sinks ? g->sinks[h] : -INFINITY, vg, g->ldv, dv, g->out + t * g->ldo + h * dv);
            }
        }
        /* (the for's barrier: every head's output is in out) */
        if (wo) mk_matmul_team(c->tmp, H, g->out, g->ldo, n, wo->data, wo->dtype, H, nh * dv, bo->data); /* bo: F32 or absent */
    }
}

/* RoPE on the first `dim` values of v at one position (cs, sn: dim/2 values): halves (i, i + dim/2),
 * or interleaved pairs (2i, 2i + 1), each pair rotated by frequency i. */
static void rope(float *v, const float *cs, const float *sn, size_t dim, bool interleave) {
    if (!interleave) {
        rope_half(v, cs, sn, dim);
        return;
    }
    for (size_t i = 0; i < dim / 2; i++) {
        const float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * cs[i] - b * sn[i];
        v[2 * i + 1] = b * cs[i] + a * sn[i];
    }
}

/* Attention sub-block: x (n, d_model) += o_proj(attn(RMSNorm(x))), tokens at positions pos0... */
static void attention(mk_ctx *c, int64_t l, float *x, size_t n, size_t pos0) {
    const mk_config *cfg = &c->m->cfg;
    const mk_layer_w *lw = &c->m->layers[l];
    const size_t H = (size_t)cfg->d_model, D = (size_t)cfg->d_head, nh = (size_t)cfg->n_head, nkv = (size_t)cfg->n_kv_head;
    const size_t q_dim = nh * D, kv_dim = nkv * D, half = (size_t)cfg->rope_dim / 2, group = nh / nkv;
    /* this layer's cache; head g's keys (values) at position j: kc + (g·n_ctx + j)·D */
    float *kc = c->k_cache + (size_t)l * c->n_ctx * kv_dim, *vc = c->v_cache + (size_t)l * c->n_ctx * kv_dim;
    float *k = c->kn, *v = c->vn; /* the batch's k and v rows, (n, kv_dim), until they go to the cache */

    /* per-token steps on every thread for a prompt (one thread's serial work otherwise, with the
     * others waiting: 3% of Q6_K pp512) */
    #pragma omp parallel for schedule(static) num_threads(c->n_threads) if (n >= 16)
    for (size_t t = 0; t < n; t++) block_norm(cfg, c->xn + t * H, x + t * H, &lw->attn_norm, &lw->attn_norm_b, H);
    const mk_tensor *bq = &lw->bq, *bk = &lw->bk, *bv = &lw->bv;
    const bool f32_bias = (!bq->data || bq->dtype == MK_DT_F32) && (!bk->data || bk->dtype == MK_DT_F32) &&
                          (!bv->data || bv->dtype == MK_DT_F32);
    if (f32_bias) { /* q, k and v as one pool of row chunks: one fork and one barrier, not three */
        #pragma omp parallel num_threads(c->n_threads)
        {
            mk_matmul_team(c->q, q_dim, c->xn, H, n, lw->wq.data, lw->wq.dtype, q_dim, H, bq->data);
            mk_matmul_team(k, kv_dim, c->xn, H, n, lw->wk.data, lw->wk.dtype, kv_dim, H, bk->data);
            mk_matmul_team(v, kv_dim, c->xn, H, n, lw->wv.data, lw->wv.dtype, kv_dim, H, bv->data);
        }
    } else {
        mk_matmul(c->q, q_dim, c->xn, H, n, &lw->wq, bq);
        mk_matmul(k, kv_dim, c->xn, H, n, &lw->wk, bk);
        mk_matmul(v, kv_dim, c->xn, H, n, &lw->wv, bv);
    }

    #pragma omp parallel for schedule(static) num_threads(c->n_threads) if (n >= 16)
    for (size_t t = 0; t < n; t++) {
        float *qt = c->q + t * q_dim, *kt = k + t * kv_dim, *vt = v + t * kv_dim;
        if (cfg->qk_norm == MK_QKNORM_FULL) {
            mk_rmsnorm(qt, qt, &lw->q_norm, q_dim, cfg->rms_eps);
            mk_rmsnorm(kt, kt, &lw->k_norm, kv_dim, cfg->rms_eps);
        } else if (cfg->qk_norm == MK_QKNORM_HEAD) {
            for (size_t h = 0; h < nh; h++) mk_rmsnorm(qt + h * D, qt + h * D, &lw->q_norm, D, cfg->rms_eps);
            for (size_t h = 0; h < nkv; h++) mk_rmsnorm(kt + h * D, kt + h * D, &lw->k_norm, D, cfg->rms_eps);
        }
        if (cfg->clip_qkv > 0) {
            float cl = cfg->clip_qkv;
            for (size_t i = 0; i < q_dim; i++) qt[i] = fminf(fmaxf(qt[i], -cl), cl);
            for (size_t i = 0; i < kv_dim; i++) {
                kt[i] = fminf(fmaxf(kt[i], -cl), cl);
                vt[i] = fminf(fmaxf(vt[i], -cl), cl);
            }
        }
        const float *cs = c->rope_cos + (pos0 + t) * half, *sn = c->rope_sin + (pos0 + t) * half;
        for (size_t h = 0; h < nh; h++) rope(qt + h * D, cs, sn, 2 * half, cfg->rope_interleave);
        for (size_t h = 0; h < nkv; h++) rope(kt + h * D, cs, sn, 2 * half, cfg->rope_interleave);
        for (size_t g = 0; g < nkv; g++) {
            memcpy(kc + (g * c->n_ctx + pos0 + t) * D, kt + g * D, D * sizeof(float));
            memcpy(vc + (g * c->n_ctx + pos0 + t) * D, vt + g * D, D * sizeof(float));
        }
    }
    const attn_geom geom = {.q = c->q, .ldq = q_dim, .nh = nh, .group = group, .dk = D, .dv = D, .kc = kc, .vc = vc,
                            .k_hs = c->n_ctx * D, .v_hs = c->n_ctx * D, .ldk = D, .ldv = D, .out = c->att, .ldo = q_dim, .scale = cfg->attn_scale,
                            .win = (size_t)mk_layer_window(cfg, l), .sinks = lw->sinks.data};
    attend(c, &geom, n, pos0, &lw->wo, &lw->bo);
    #pragma omp parallel for schedule(static) num_threads(c->n_threads) if (n >= 16)
    for (size_t i = 0; i < n * H; i++) x[i] += c->tmp[i];
}

/* A view of rows [r0, r0 + rows) of a 2-D weight (rows are whole blocks in every dtype). */
static mk_tensor row_view(const mk_tensor *w, size_t r0, size_t rows, size_t cols) {
    const size_t rb = mk_dtype_row_bytes(w->dtype, cols);
    return (mk_tensor){.data = (const uint8_t *)w->data + r0 * rb, .dtype = w->dtype, .ndim = 2, .shape = {(int64_t)rows, (int64_t)cols}, .nbytes = rows * rb};
}

/* Multi-head latent attention (DeepSeek-V2/V3, research/formats.md §5) in the absorbed form: the
 * cache holds per token only the normed latent c (r) and the roped shared key k_pe (qk_rope). A
 * head's query becomes [k_bᵀ·q_nope (r), q_pe] so its score against token j is one dot product with
 * the cached row [c_j, k_pe_j]; its output is v_b · Σ_j p_j c_j, then o_proj. Equal to transformers'
 * expanded form up to the order of the sums. */
static void attention_mla(mk_ctx *c, int64_t l, float *x, size_t n, size_t pos0) {
    const mk_config *cfg = &c->m->cfg;
    const mk_layer_w *lw = &c->m->layers[l];
    const size_t H = (size_t)cfg->d_model, nh = (size_t)cfg->n_head, dn = (size_t)cfg->qk_nope, dr = (size_t)cfg->qk_rope,
                 dq = dn + dr, dv = (size_t)cfg->v_head, r = (size_t)cfg->kv_lora_rank, R = r + dr, QL = (size_t)cfg->q_lora_rank;
    const size_t q_dim = nh * dq, half = dr / 2;
    const float low_eps = 1e-6f; /* q_a_layernorm and kv_a_layernorm: transformers' default eps, not rms_norm_eps */
    float *kc = c->k_cache + (size_t)l * c->n_ctx * R;

    #pragma omp parallel for schedule(static) num_threads(c->n_threads) if (n >= 16)
    for (size_t t = 0; t < n; t++) mk_rmsnorm(c->xn + t * H, x + t * H, &lw->attn_norm, H, cfg->rms_eps);
    if (QL) {
        mk_matmul(c->qa, QL, c->xn, H, n, &lw->q_a, NULL);
        for (size_t t = 0; t < n; t++) mk_rmsnorm(c->qa + t * QL, c->qa + t * QL, &lw->q_a_norm, QL, low_eps);
        mk_matmul(c->q, q_dim, c->qa, QL, n, &lw->q_b, NULL);
    } else {
        mk_matmul(c->q, q_dim, c->xn, H, n, &lw->wq, NULL);
    }
    mk_matmul(c->kn, R, c->xn, H, n, &lw->kv_a, NULL);
    #pragma omp parallel for schedule(static) num_threads(c->n_threads) if (n >= 16)
    for (size_t t = 0; t < n; t++) {
        float *kt = c->kn + t * R, *qt = c->q + t * q_dim, *qq = c->qq + t * nh * R;
        const float *cs = c->rope_cos + (pos0 + t) * half, *sn = c->rope_sin + (pos0 + t) * half;
        mk_rmsnorm(kt, kt, &lw->kv_a_norm, r, low_eps);
        rope(kt + r, cs, sn, dr, cfg->rope_interleave);
        memcpy(kc + (pos0 + t) * R, kt, R * sizeof(float));
        for (size_t h = 0; h < nh; h++) {
            rope(qt + h * dq + dn, cs, sn, dr, cfg->rope_interleave);
            memcpy(qq + h * R + r, qt + h * dq + dn, dr * sizeof(float));
        }
    }
    /* q_lat of head h = k_b[h] (r, qk_nope) · q_nope of head h */
    for (size_t h = 0; h < nh; h++) {
        const mk_tensor kb = row_view(&lw->k_b, h * r, r, dn);
        mk_matmul(c->qq + h * R, nh * R, c->q + h * dq, q_dim, n, &kb, NULL);
    }
    const attn_geom geom = {.q = c->qq, .ldq = nh * R, .nh = nh, .group = nh, .dk = R, .dv = r, .kc = kc, .vc = kc,
                            .k_hs = 0, .v_hs = 0, .ldk = R, .ldv = R, .out = c->att, .ldo = nh * r, .scale = cfg->attn_scale,
                            .win = (size_t)mk_layer_window(cfg, l)};
    attend(c, &geom, n, pos0, NULL, NULL);
    /* each head's latent output through its value rows of kv_b, then o_proj */
    for (size_t h = 0; h < nh; h++) {
        const mk_tensor vb = lw->v_b.data ? row_view(&lw->v_b, h * dv, dv, r) : row_view(&lw->kv_b, h * (dn + dv) + dn, dv, r);
        mk_matmul(c->att2 + h * dv, nh * dv, c->att + h * r, nh * r, n, &vb, NULL);
    }
    mk_matmul(c->tmp, H, c->att2, nh * dv, n, &lw->wo, NULL);
    #pragma omp parallel for schedule(static) num_threads(c->n_threads) if (n >= 16)
    for (size_t i = 0; i < n * H; i++) x[i] += c->tmp[i];
}

void mk_expert_forward(const mk_model *m, int64_t l, int64_t e, const float *x, size_t n, float *g, float *u, float *out) {
    const mk_mlp_w *w = &m->layers[l].experts[e];
    const size_t H = (size_t)m->cfg.d_model, F = (size_t)w->gate.shape[0];
    mk_matmul(g, F, x, H, n, &w->gate, &w->gate_b);
    mk_matmul(u, F, x, H, n, &w->up, &w->up_b);
    mk_expert_act(&m->cfg, g, u, n * F);
    if (out) mk_matmul(out, H, g, F, n, &w->down, &w->down_b);
}

void mk_router_logits(const mk_model *m, int64_t l, const float *x, size_t n, float *out) {
    const mk_layer_w *lw = &m->layers[l];
    mk_matmul(out, (size_t)m->cfg.n_expert, x, (size_t)m->cfg.d_model, n, &lw->router, &lw->router_b);
}

/* MoE block over n rows of xn: moe_out (n, d_model). Tokens are grouped by expert so each
 * active expert runs one matrix-matrix product over all its tokens. */
static void moe_forward(mk_ctx *c, int64_t l, const float *resid, size_t n, size_t pos0, const uint8_t *mask_row) {
    const mk_config *cfg = &c->m->cfg;
    const mk_layer_w *lw = &c->m->layers[l];
    const size_t H = (size_t)cfg->d_model, E = (size_t)cfg->n_expert, K = (size_t)c->slots;

    mk_router_logits(c->m, l, c->xn, n, c->rlogits);
    mk_route_boost lb[8];
    size_t nlb = 0;
    for (size_t b = 0; b < c->n_boosts && nlb < 8; b++)
        if (c->boosts[b].layer == l) lb[nlb++] = c->boosts[b];
    mk_route_cfg rc = mk_route_cfg_of(cfg);
    rc.k = c->route_k;
    rc.slots = c->slots;
    rc.top_p = c->top_p;
    rc.top_p_renorm = c->top_p_renorm;
    rc.rank = c->rank;
    rc.skip_beta = c->skip_betas ? c->skip_betas[l] : c->skip_beta;
    rc.mask = mask_row ? mask_row : c->mask ? c->mask + (size_t)l * E : NULL;
    rc.boosts = lb;
    rc.n_boosts = nlb;
    rc.sel_bias = lw->router_bias.data;
    int64_t used = 0;
    #pragma omp parallel for schedule(static) num_threads(c->n_threads) if (n > 16) reduction(+ : used)
    for (size_t t = 0; t < n; t++)
        used += mk_route_select(&rc, c->rlogits + t * E, c->ids + t * K, c->wts + t * K,
                                c->route_scratch + (size_t)omp_get_thread_num() * MK_ROUTE_SCRATCH(E));
    c->used[l] += (double)used;
    c->routed[l] += (double)n;

    /* Counting sort of the (token, slot) pairs by expert. */
    int32_t *start = c->grp_start;
    memset(start, 0, (E + 1) * sizeof *start);
    for (size_t s = 0; s < n * K; s++)
        if (c->ids[s] >= 0) start[c->ids[s] + 1]++;
    for (size_t e = 0; e < E; e++) start[e + 1] += start[e];
    int32_t *cur = c->grp_cur;
    memcpy(cur, start, E * sizeof *cur);
    for (size_t s = 0; s < n * K; s++)
        if (c->ids[s] >= 0) c->grp[cur[c->ids[s]]++] = (int32_t)s;
    /* The weighted sum reads each slot's output where the expert wrote it (slot_row), unless an
     * observer wants the outputs in slot order (eo): that copy moved 32 MB a layer in a prompt
     * of 512 tokens (1.3% of Q6_K pp512). */
    const bool keep_eo = c->has_obs && c->obs.on_moe;
    if (!keep_eo)
        for (size_t r = 0; r < (size_t)start[E]; r++) c->slot_row[c->grp[r]] = (int32_t)r;
    /* All active experts in one parallel region: gather → every expert's gate and up products as
     * one dynamic pool of row chunks → SwiGLU → every expert's down product → scatter. Three
     * barriers per MoE block whatever the number of experts (decode is 24 products for k = 8).
     * Block-quantized experts take their input rows quantized once, shared by gate and up (and
     * the SwiGLU output quantized once for down), instead of once per product and thread. */
    const size_t total = (size_t)start[E], F = (size_t)cfg->d_ff_expert;
    size_t n_active = 0;
    for (size_t e = 0; e < E; e++)
        if (start[e + 1] > start[e]) c->active[n_active++] = (int32_t)e;
    const int32_t *grp = c->grp, *act = c->active;
    float *egx = c->egx, *egg = c->egg, *egu = c->egu, *ego = c->ego, *eout = c->eo;
    uint8_t *egq = c->egq;
    const float *xn = c->xn;
    const mk_mlp_w *ex = lw->experts;
    const mk_dtype gdt = n_active ? ex[act[0]].gate.dtype : MK_DT_F32, ddt = n_active ? ex[act[0]].down.dtype : MK_DT_F32;
    size_t gqb = mk_kern_qact_bytes(gdt, H), dqb = mk_kern_qact_bytes(ddt, F);
    for (size_t a = 0; a < n_active; a++) { /* one activation format for all experts, or none */
        if (ex[act[a]].gate.dtype != gdt || ex[act[a]].up.dtype != gdt) gqb = 0;
        if (ex[act[a]].down.dtype != ddt) dqb = 0;
    }
    #pragma omp parallel num_threads(c->n_threads)
    {
        /* expert by expert: an expert's rows go in quantized form where its batch is decode-sized */
        #pragma omp for schedule(dynamic, 1)
        for (size_t a = 0; a < n_active; a++) {
            const size_t e = (size_t)act[a], r0 = (size_t)start[e], cnt = (size_t)start[e + 1] - r0;
            const bool q = gqb && mk_kern_q_act(gdt, cnt);
            for (size_t r = r0; r < r0 + cnt; r++) {
                const float *src = xn + (size_t)grp[r] / K * H;
                if (q) mk_kern_quantize_act(gdt, src, egq + r * gqb, H);
                else memcpy(egx + r * H, src, H * sizeof(float));
            }
        }
        for (size_t a = 0; a < n_active; a++) {
            const size_t e = (size_t)act[a], r0 = (size_t)start[e], cnt = (size_t)start[e + 1] - r0;
            const mk_tensor *g = &ex[e].gate, *u = &ex[e].up;
            const float *gb = ex[e].gate_b.data, *ub = ex[e].up_b.data; /* F32 biases (GPT-OSS) or NULL */
            if (gqb && mk_kern_q_act(gdt, cnt)) {
                mk_matmul_team_q(egg + r0 * F, F, egq + r0 * gqb, cnt, g->data, g->dtype, F, H, gb);
                mk_matmul_team_q(egu + r0 * F, F, egq + r0 * gqb, cnt, u->data, u->dtype, F, H, ub);
            } else {
                mk_matmul_team(egg + r0 * F, F, egx + r0 * H, H, cnt, g->data, g->dtype, F, H, gb);
                mk_matmul_team(egu + r0 * F, F, egx + r0 * H, H, cnt, u->data, u->dtype, F, H, ub);
            }
        }
        #pragma omp barrier
        #pragma omp for schedule(dynamic, 1)
        for (size_t a = 0; a < n_active; a++) {
            const size_t e = (size_t)act[a], r0 = (size_t)start[e], cnt = (size_t)start[e + 1] - r0;
            const bool q = dqb && mk_kern_q_act(ddt, cnt);
            for (size_t r = r0; r < r0 + cnt; r++) {
                float *gr = egg + r * F;
                mk_expert_act(cfg, gr, egu + r * F, F);
                if (q) mk_kern_quantize_act(ddt, gr, egq + r * dqb, F);
            }
        }
        for (size_t a = 0; a < n_active; a++) {
            const size_t e = (size_t)act[a], r0 = (size_t)start[e], cnt = (size_t)start[e + 1] - r0;
            const mk_tensor *d = &ex[e].down;
            const float *db = ex[e].down_b.data;
            if (dqb && mk_kern_q_act(ddt, cnt)) mk_matmul_team_q(ego + r0 * H, H, egq + r0 * dqb, cnt, d->data, d->dtype, H, F, db);
            else mk_matmul_team(ego + r0 * H, H, egg + r0 * F, F, cnt, d->data, d->dtype, H, F, db);
        }
        if (keep_eo) { /* (the same branch on every thread) */
            #pragma omp barrier
            #pragma omp for schedule(static)
            for (size_t r = 0; r < total; r++) memcpy(eout + (size_t)grp[r] * H, ego + r * H, H * sizeof(float));
        }
    }
    /* Weighted sum in increasing expert id, as HF accumulates (a zeroed expert adds nothing). */
    const uint8_t *zero = c->zero ? c->zero + (size_t)l * E : NULL;
    #pragma omp parallel for schedule(static) num_threads(c->n_threads) if (n >= 16)
    for (size_t t = 0; t < n; t++) {
        float *o = c->moe_out + t * H;
        memset(o, 0, H * sizeof(float));
        const int32_t *id = c->ids + t * K;
        int32_t last = -1;
        for (size_t done = 0; done < K; done++) {
            size_t best = K;
            for (size_t s = 0; s < K; s++)
                if (id[s] > last && (best == K || id[s] < id[best])) best = s;
            if (best == K) break;
            last = id[best];
            if (zero && zero[last]) continue;
            const float w = c->wts[t * K + best];
            const float *eo = keep_eo ? c->eo + (t * K + best) * H : c->ego + (size_t)c->slot_row[t * K + best] * H;
            for (size_t i = 0; i < H; i++) o[i] += w * eo[i];
        }
    }
    if (cfg->shared_expert) {
        mlp_forward(c, &lw->shared, c->xn, n, c->go);
        if (cfg->shared_gated) {
            mk_matmul(c->tmp, 1, c->xn, H, n, &lw->shared_gate, NULL);
            for (size_t t = 0; t < n; t++) {
                const float g = 1.0f / (1.0f + expf(-c->tmp[t]));
                for (size_t i = 0; i < H; i++) c->moe_out[t * H + i] += g * c->go[t * H + i];
            }
        } else {
            for (size_t i = 0; i < n * H; i++) c->moe_out[i] += c->go[i];
        }
    }
    if (c->has_obs && c->obs.on_moe) {
        mk_moe_event ev = {.layer = l, .n_tok = n, .pos0 = pos0, .d_model = cfg->d_model, .n_expert = cfg->n_expert,
                           .n_live = lw->n_live, .k = c->slots, .resid_in = resid, .block_in = c->xn, .router_logits = c->rlogits,
                           .expert_ids = c->ids, .expert_weights = c->wts, .expert_out = c->eo, .block_out = c->moe_out};
        c->obs.on_moe(c->obs.user, &ev);
    }
}

/* The embedding rows of n tokens into x (n, d_model), as f32: the one place a row is located
 * (by mk_dtype_row_bytes: block types have no per-element size). */
static void embed_rows(const mk_model *m, const int32_t *tokens, size_t n, float *x) {
    const size_t H = (size_t)m->cfg.d_model, row_bytes = mk_dtype_row_bytes(m->embed.dtype, H);
    for (size_t t = 0; t < n; t++)
        mk_to_f32(x + t * H, (const uint8_t *)m->embed.data + (size_t)tokens[t] * row_bytes, m->embed.dtype, H);
}

/* MK_ERR_NONFINITE naming layer l and the first token (position pos0 + t) whose row of x (n,
 * d_model) holds a NaN or an infinity; MK_OK when all are finite or the check is off. */
static mk_status check_finite(const mk_ctx *c, int64_t l, const float *x, size_t n, size_t pos0) {
    if (c->no_check_finite) return MK_OK;
    const size_t H = (size_t)c->m->cfg.d_model;
    uint32_t bad = 0; /* on the bits, so the loop vectorizes: exponent all ones = Inf or NaN */
    #pragma omp simd reduction(| : bad)
    for (size_t i = 0; i < n * H; i++) {
        uint32_t b;
        memcpy(&b, &x[i], sizeof b);
        bad |= (b & 0x7F800000u) == 0x7F800000u;
    }
    if (!bad) return MK_OK;
    size_t i = 0;
    while (isfinite(x[i])) i++;
    return mk_err(MK_ERR_NONFINITE, "non-finite activation (%s) in the output of layer %lld at token position %zu: the model's weights or inputs hold NaN or infinite values",
                  isnan(x[i]) ? "NaN" : "infinity", (long long)l, pos0 + i / H);
}

static mk_status layer_forward(mk_ctx *c, int64_t l, float *x, size_t n, size_t pos0) {
    const mk_config *cfg = &c->m->cfg;
    const mk_layer_w *lw = &c->m->layers[l];
    const size_t H = (size_t)cfg->d_model;
    if (cfg->mla) attention_mla(c, l, x, n, pos0);
    else attention(c, l, x, n, pos0);
    #pragma omp parallel for schedule(static) num_threads(c->n_threads) if (n >= 16)
    for (size_t t = 0; t < n; t++) block_norm(cfg, c->xn + t * H, x + t * H, &lw->ffn_norm, &lw->ffn_norm_b, H);
    if (lw->is_moe) {
        moe_forward(c, l, x, n, pos0, NULL);
        #pragma omp parallel for schedule(static) num_threads(c->n_threads) if (n >= 16)
        for (size_t i = 0; i < n * H; i++) x[i] += c->moe_out[i];
    } else {
        mlp_forward(c, &lw->dense, c->xn, n, c->tmp);
        #pragma omp parallel for schedule(static) num_threads(c->n_threads) if (n >= 16)
        for (size_t i = 0; i < n * H; i++) x[i] += c->tmp[i];
    }
    if (c->has_obs && c->obs.on_layer) c->obs.on_layer(c->obs.user, l, n, x);
    return check_finite(c, l, x, n, pos0);
}

void mk_ctx_set_check_finite(mk_ctx *c, bool on) { c->no_check_finite = !on; }

static mk_status forward_batch(mk_ctx *c, const int32_t *tokens, size_t n, mk_logits_mode mode, float *logits) {
    const mk_model *m = c->m;
    const mk_config *cfg = &m->cfg;
    const size_t H = (size_t)cfg->d_model, V = (size_t)cfg->vocab;
    embed_rows(m, tokens, n, c->x);
    for (int64_t l = 0; l < cfg->n_layer; l++) {
        mk_status st = layer_forward(c, l, c->x, n, c->pos);
        if (st) return st;
    }
    c->pos += n;
    if (mode == MK_LOGITS_NONE || !logits) return MK_OK;
    const size_t first = mode == MK_LOGITS_LAST ? n - 1 : 0, rows = n - first;
    for (size_t t = 0; t < rows; t++) block_norm(cfg, c->logit_rows + t * H, c->x + (first + t) * H, &m->final_norm, &m->final_norm_b, H);
    mk_matmul(logits, V, c->logit_rows, H, rows, &m->lm_head, &m->lm_head_b);
    return MK_OK;
}

mk_status mk_ctx_forward(mk_ctx *c, const int32_t *tokens, size_t n, mk_logits_mode mode, float *logits) {
    if (n == 0) return mk_err(MK_ERR_ARG, "forward: no tokens");
    if (n > c->n_ctx - c->pos)
        return mk_err(MK_ERR_ARG, "forward: %zu more tokens exceed the context of %zu (already %zu)", n, c->n_ctx, c->pos);
    const size_t V = (size_t)c->m->cfg.vocab;
    for (size_t t = 0; t < n; t++)
        if (tokens[t] < 0 || (int64_t)tokens[t] >= c->m->cfg.vocab)
            return mk_err(MK_ERR_ARG, "token id %d at index %zu is out of range (vocab %lld)", tokens[t], t, (long long)V);
    for (size_t done = 0; done < n;) {
        size_t b = MK_MIN(c->max_batch, n - done);
        bool last = done + b == n;
        mk_logits_mode md = mode == MK_LOGITS_ALL ? MK_LOGITS_ALL : (last ? mode : MK_LOGITS_NONE);
        float *lg = mode == MK_LOGITS_ALL ? logits + done * V : logits;
        mk_status st = forward_batch(c, tokens + done, b, md, lg);
        if (st) return st;
        done += b;
    }
    return MK_OK;
}

/* Layer-streamed forward (see mk_forward_streamed in moekit/model.h): every sequence goes
 * through layer l before any goes through layer l+1, using the same layer_forward as a
 * prefill (same batches, same positions), so the observer sees bit-identical values. */
mk_status mk_forward_streamed(mk_ctx *c, const int32_t *tokens, const size_t *seq_len, size_t n_seq,
                              const mk_stream_opts *o) {
    const mk_model *m = c->m;
    const mk_config *cfg = &m->cfg;
    const size_t H = (size_t)cfg->d_model;
    size_t total = 0;
    for (size_t s = 0; s < n_seq; s++) {
        if (seq_len[s] == 0 || seq_len[s] > c->n_ctx)
            return mk_err(MK_ERR_ARG, "stream: sequence %zu has %zu tokens (context %zu)", s, seq_len[s], c->n_ctx);
        total += seq_len[s];
    }
    if (total == 0) return mk_err(MK_ERR_ARG, "stream: no tokens");
    for (size_t t = 0; t < total; t++)
        if (tokens[t] < 0 || (int64_t)tokens[t] >= cfg->vocab)
            return mk_err(MK_ERR_ARG, "token id %d at index %zu is out of range (vocab %lld)", tokens[t], t, (long long)cfg->vocab);
    bool ok = true;
    float *X = falloc(total, H, &ok);   /* (total, d_model) the residual stream of every token */
    if (!ok) return mk_err(MK_ERR_NOMEM, "stream: cannot hold the activations of %zu tokens", total);
    embed_rows(m, tokens, total, X);
    if (o && o->release) mk_model_advise_weights(m, -1, false);
    for (int64_t l = 0; l < cfg->n_layer; l++) {
        if (o && o->release && l + 1 < cfg->n_layer) mk_model_advise_weights(m, l + 1, true);
        size_t off = 0;
        for (size_t s = 0; s < n_seq; s++) {
            for (size_t done = 0; done < seq_len[s];) {
                size_t b = MK_MIN(c->max_batch, seq_len[s] - done);
                mk_status st = layer_forward(c, l, X + (off + done) * H, b, done);
                if (st) {
                    c->pos = 0;
                    mk_free_aligned(X);
                    return st;
                }
                done += b;
            }
            off += seq_len[s];
            if (o && o->on_progress) o->on_progress(o->user, l, off, total);
        }
        if (o && o->release) mk_model_advise_weights(m, l, false);
    }
    c->pos = 0;
    mk_free_aligned(X);
    return MK_OK;
}

mk_status mk_ctx_moe_block(mk_ctx *c, int64_t l, const float *x, size_t n, const uint8_t *mask_row, float *out) {
    const mk_config *cfg = &c->m->cfg;
    if (l < 0 || l >= cfg->n_layer || !c->m->layers[l].is_moe) return mk_err(MK_ERR_ARG, "layer %lld has no MoE block", (long long)l);
    if (n > c->max_batch) return mk_err(MK_ERR_ARG, "MoE block: %zu rows exceed the context's batch of %zu", n, c->max_batch);
    if (mask_row) {
        if (c->m->live) { /* the model's missing experts stay masked */
            for (int64_t e = 0; e < cfg->n_expert; e++) c->mask_row[e] = mask_row[e] && c->m->live[l * cfg->n_expert + e];
            mask_row = c->mask_row;
        }
        int64_t allowed = 0;
        for (int64_t e = 0; e < cfg->n_expert; e++) allowed += mask_row[e] != 0;
        if (!allowed) return mk_err(MK_ERR_ARG, "MoE block: the mask leaves no expert in layer %lld", (long long)l);
    }
    const size_t H = (size_t)cfg->d_model;
    memcpy(c->xn, x, n * H * sizeof(float));
    bool obs = c->has_obs;
    c->has_obs = false;
    moe_forward(c, l, NULL, n, 0, mask_row);
    c->has_obs = obs;
    memcpy(out, c->moe_out, n * H * sizeof(float));
    return MK_OK;
}
