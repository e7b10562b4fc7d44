/* Expert routing profiler: accumulation from observer events, derived statistics, stats.json.
 * Formulas (research/methods.md): REAP §1.3, EASY-EP §1.2, Super Experts §1.4, PreMoe TCESS §1.7.
 * Per-token quantities are computed in parallel into scratch arrays, then accumulated serially in
 * token order, so results do not depend on the thread count or on streamed vs sequential runs. */
#include "analyze/profile_int.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#define TOP MK_PROFILE_TOP_TOKENS
#define NB MK_PROFILE_HIST_BINS

/* ---------------------------------------------------------------- token-expert counter */

static void tc_add(mk_tokcount *t, int32_t id) {
    int32_t lo = 0;
    for (int32_t i = 0; i < t->n; i++) {
        if (t->id[i] == id) {
            t->count[i]++;
            return;
        }
        if (t->count[i] < t->count[lo]) lo = i;
    }
    if (t->n < MK_PROFILE_TOKEN_SLOTS) {
        t->id[t->n] = id;
        t->count[t->n] = 1;
        t->err[t->n++] = 0;
        return;
    }
    /* replace the smallest counter (the first of them): the newcomer inherits its count as error */
    t->err[lo] = t->count[lo];
    t->count[lo]++;
    t->id[lo] = id;
    t->evicted++;
}

/* ---------------------------------------------------------------- lifetime */

void mk_profile_free(mk_profile *p) {
    if (!p) return;
    free(p->seq_len);
    free(p->seq_start);
    free(p->seq_ds);
    for (size_t i = 0; p->ds_name && i < p->n_ds; i++) free(p->ds_name[i]);
    for (size_t i = 0; p->ds_path && i < p->n_ds; i++) free(p->ds_path[i]);
    free(p->ds_name);
    free(p->ds_path);
    free(p->ds_tokens);
    free(p->ds_seqs);
    free(p->moe_layer);
    free(p->moe_index);
    free(p->ex);
    free(p->ent_sum);
    free(p->ntok);
    free(p->hist);
    free(p->ratio_hist);
    free(p->coact);
    free(p->trans);
    free(p->tc);
    free(p->ids_prev[0]);
    free(p->ids_prev[1]);
    free(p->cursor);
    free(p->sc_norm);
    free(p->sc_absmax);
    free(p->sc_s);
    free(p->sc_ent);
    free(p->sc_top1v);
    free(p->sc_ratio);
    free(p->sc_chan);
    free(p->sc_top1);
    free(p);
}

mk_status mk_profile_new(mk_profile **out, const mk_model *m, const mk_profile_layout *lay) {
    *out = NULL;
    const mk_model_info *in = mk_model_get_info(m);
    if (lay->n_dataset == 0 || lay->n_seq == 0 || lay->n_tok == 0) return mk_err(MK_ERR_ARG, "profile: no data");
    if (in->n_moe_layers == 0) return mk_err(MK_ERR_ARG, "profile: the model has no MoE layers");
    mk_profile *p = mk_calloc(1, sizeof *p);
    if (!p) return MK_ERR_NOMEM;
    p->m = m;
    p->sigmoid = mk_model_get_info(m)->router_sigmoid;
    p->tokens = lay->tokens;
    p->n_tok = lay->n_tok;
    p->n_seq = lay->n_seq;
    p->n_ds = lay->n_dataset;
    p->n_layer = in->n_layer;
    p->E = in->n_expert;
    p->K = lay->k > 0 ? lay->k : in->k_active;
    const size_t S = p->n_ds + 1, E = (size_t)p->E, K = (size_t)p->K;
    p->seq_len = mk_calloc(p->n_seq, sizeof(size_t));
    p->seq_start = mk_calloc(p->n_seq, sizeof(size_t));
    p->seq_ds = mk_calloc(p->n_seq, sizeof(int32_t));
    p->ds_name = mk_calloc(p->n_ds, sizeof(char *));
    p->ds_path = mk_calloc(p->n_ds, sizeof(char *));
    p->ds_tokens = mk_calloc(p->n_ds, sizeof(size_t));
    p->ds_seqs = mk_calloc(p->n_ds, sizeof(size_t));
    p->moe_index = mk_calloc((size_t)p->n_layer, sizeof(int64_t));
    p->moe_layer = mk_calloc((size_t)in->n_moe_layers, sizeof(int64_t));
    if (!p->seq_len || !p->seq_start || !p->seq_ds || !p->ds_name || !p->ds_path || !p->ds_tokens || !p->ds_seqs ||
        !p->moe_index || !p->moe_layer)
        goto nomem;
    size_t off = 0;
    for (size_t s = 0; s < p->n_seq; s++) {
        int32_t d = lay->seq_dataset[s];
        if (d < 0 || (size_t)d >= p->n_ds || (s && d < p->seq_ds[s - 1]) || lay->seq_len[s] == 0) {
            mk_profile_free(p);
            return mk_err(MK_ERR_ARG, "profile: bad layout at sequence %zu", s);
        }
        p->seq_len[s] = lay->seq_len[s];
        p->seq_start[s] = off;
        p->seq_ds[s] = d;
        p->ds_tokens[d] += lay->seq_len[s];
        p->ds_seqs[d]++;
        off += lay->seq_len[s];
    }
    if (off != p->n_tok) {
        mk_profile_free(p);
        return mk_err(MK_ERR_ARG, "profile: sequence lengths add up to %zu, not %zu tokens", off, p->n_tok);
    }
    for (size_t d = 0; d < p->n_ds; d++) {
        p->ds_name[d] = mk_strdup(lay->dataset_names[d]);
        p->ds_path[d] = mk_strdup(lay->dataset_paths && lay->dataset_paths[d] ? lay->dataset_paths[d] : "");
        if (!p->ds_name[d] || !p->ds_path[d]) goto nomem;
    }
    for (int64_t l = 0; l < p->n_layer; l++) {
        p->moe_index[l] = mk_model_layer_is_moe(m, l) ? p->n_moe : -1;
        if (p->moe_index[l] >= 0) p->moe_layer[p->n_moe++] = l;
    }
    const size_t L = (size_t)p->n_moe;
    p->ex = mk_calloc(S * L * E, sizeof *p->ex);
    p->ent_sum = mk_calloc(S * L, sizeof(double));
    p->ntok = mk_calloc(S * L, sizeof(int64_t));
    p->hist = mk_calloc(L * E * NB, sizeof(int64_t));
    p->ratio_hist = mk_calloc(L * MK_PROFILE_RATIO_BINS, sizeof(int64_t));
    p->coact = mk_calloc(L * E * E, sizeof(int64_t));
    p->trans = mk_calloc((L > 1 ? L - 1 : 1) * E * E, sizeof(int64_t));
    p->tc = mk_calloc(L * E, sizeof *p->tc);
    p->ids_prev[0] = mk_calloc(p->n_tok * K, sizeof(int32_t));
    p->ids_prev[1] = mk_calloc(p->n_tok * K, sizeof(int32_t));
    p->cursor = mk_calloc(L, sizeof(size_t));
    if (!p->ex || !p->ent_sum || !p->ntok || !p->hist || !p->ratio_hist || !p->coact || !p->trans || !p->tc || !p->ids_prev[0] ||
        !p->ids_prev[1] || !p->cursor)
        goto nomem;
    for (size_t i = 0; i < S * L * E; i++) {
        p->ex[i].norm_min = INFINITY;
        p->ex[i].out_channel = -1;
        p->ex[i].out_token = -1;
    }
    *out = p;
    return MK_OK;
nomem:
    mk_profile_free(p);
    return mk_err(MK_ERR_NOMEM, "profile: out of memory for the statistics of %zu tokens", lay->n_tok);
}

mk_status mk_profile_status(const mk_profile *p) {
    if (p->st) mk_err(p->st, "%s", p->err);
    return p->st;
}

static void fail(mk_profile *p, mk_status st, const char *fmt, ...) MK_PRINTF(3, 4);
static void fail(mk_profile *p, mk_status st, const char *fmt, ...) {
    if (p->st) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
    p->st = st;
}

static size_t find_seq(const mk_profile *p, size_t g) {
    size_t lo = 0, hi = p->n_seq;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (p->seq_start[mid] <= g) lo = mid;
        else hi = mid;
    }
    return lo;
}

void mk_prof_locate(const mk_profile *p, size_t g, size_t *ds, size_t *seq, size_t *pos) {
    size_t s = find_seq(p, g);
    if (ds) *ds = (size_t)p->seq_ds[s];
    if (seq) *seq = s;
    if (pos) *pos = g - p->seq_start[s];
}

static bool grow_scratch(mk_profile *p, size_t n) {
    if (n <= p->scratch_cap) return true;
    const size_t K = (size_t)p->K;
    double **d[] = {&p->sc_norm, &p->sc_absmax};
    for (size_t i = 0; i < 2; i++) {
        free(*d[i]);
        *d[i] = mk_malloc(n * K * sizeof(double));
    }
    double **d1[] = {&p->sc_s, &p->sc_ent, &p->sc_top1v, &p->sc_ratio};
    for (size_t i = 0; i < 4; i++) {
        free(*d1[i]);
        *d1[i] = mk_malloc(n * sizeof(double));
    }
    free(p->sc_chan);
    free(p->sc_top1);
    p->sc_chan = mk_malloc(n * K * sizeof(int32_t));
    p->sc_top1 = mk_malloc(n * sizeof(int32_t));
    if (!p->sc_norm || !p->sc_absmax || !p->sc_s || !p->sc_ent || !p->sc_top1v || !p->sc_ratio || !p->sc_chan || !p->sc_top1) {
        p->scratch_cap = 0;
        return false;
    }
    p->scratch_cap = n;
    return true;
}

static int hist_bin(double norm) {
    if (!(norm > 0)) return 0;
    int b = (int)floor((log2(norm) + 12.0) * 2.0);
    return b < 0 ? 0 : b >= NB ? NB - 1 : b;
}

/* Per-token quantities of one event, into the scratch arrays. */
static void event_scratch(mk_profile *p, const mk_moe_event *ev) {
    const size_t n = ev->n_tok, K = (size_t)ev->k, H = (size_t)ev->d_model, E = (size_t)ev->n_expert;
    const size_t EL = ev->n_live > 0 ? (size_t)ev->n_live : E; /* the layer's own experts (a per-layer model pads to E) */
    #pragma omp parallel for schedule(static) if (n > 8)
    for (size_t t = 0; t < n; t++) {
        const float *h = ev->resid_in + t * H;
        double hh = 0, hr = 0, rr = 0;
        for (size_t i = 0; i < H; i++) hh += (double)h[i] * h[i];
        /* r = Σ_s g_s E_s(x): the routed experts' contribution only (no shared expert) */
        for (size_t s = 0; s < K; s++) {
            const size_t j = t * K + s;
            p->sc_norm[j] = 0;
            p->sc_absmax[j] = 0;
            p->sc_chan[j] = -1;
            if (ev->expert_ids[j] < 0) continue;
            const float *eo = ev->expert_out + j * H;
            double ss = 0, mx = -1;
            int32_t ch = 0;
            for (size_t i = 0; i < H; i++) {
                double v = eo[i];
                ss += v * v;
                if (fabs(v) > mx) {
                    mx = fabs(v);
                    ch = (int32_t)i;
                }
            }
            p->sc_norm[j] = sqrt(ss);
            p->sc_absmax[j] = mx;
            p->sc_chan[j] = ch;
        }
        /* cos(h, h + r) with r accumulated in double, channel by channel */
        for (size_t i = 0; i < H; i++) {
            double r = 0;
            for (size_t s = 0; s < K; s++) {
                const size_t j = t * K + s;
                if (ev->expert_ids[j] >= 0) r += (double)ev->expert_weights[j] * ev->expert_out[j * H + i];
            }
            double y = h[i] + r;
            hr += (double)h[i] * y;
            rr += y * y;
        }
        double den = sqrt(hh) * sqrt(rr);
        double cs = hr / (den > 1e-8 ? den : 1e-8);
        p->sc_s[t] = 1.0 - cs > 0 ? 1.0 - cs : 0.0;
        /* routing entropy of the router's scores over all experts; top-1 logit for TCESS */
        const float *z = ev->router_logits + t * E;
        double mxz = z[0];
        int32_t arg = 0;
        for (size_t e = 1; e < EL; e++)
            if (z[e] > mxz) {
                mxz = z[e];
                arg = (int32_t)e;
            }
        double z2 = -INFINITY;
        for (size_t e = 0; e < EL; e++)
            if ((int32_t)e != arg && z[e] > z2) z2 = z[e];
        if (p->sigmoid) {
            /* sigmoid scores (DeepSeek-V3, GLM): the entropy of the scores normalised to sum to 1,
             * and NAEE's ratio of the second score to the first */
            double ss = 0, sl = 0;
            for (size_t e = 0; e < EL; e++) ss += 1.0 / (1.0 + exp(-(double)z[e]));
            for (size_t e = 0; e < EL; e++) {
                const double q = 1.0 / (1.0 + exp(-(double)z[e])) / ss;
                if (q > 0) sl -= q * log(q);
            }
            p->sc_ent[t] = sl;
            p->sc_ratio[t] = EL > 1 ? (1.0 + exp(-mxz)) / (1.0 + exp(-z2)) : 0.0;
        } else {
            double se = 0, sz = 0;
            for (size_t e = 0; e < EL; e++) {
                double w = exp((double)z[e] - mxz);
                se += w;
                sz += w * ((double)z[e] - mxz);
            }
            p->sc_ent[t] = log(se) - sz / se;
            /* NAEE: p(2)/p(1) of the full softmax = exp(z(2) - z(1)) */
            p->sc_ratio[t] = EL > 1 ? exp(z2 - mxz) : 0.0;
        }
        p->sc_top1[t] = arg;
        p->sc_top1v[t] = z[arg];
    }
}

static void on_moe_body(mk_profile *p, const mk_moe_event *ev);

static void on_moe(void *user, const mk_moe_event *ev) {
    mk_profile *p = user;
    if (p->st) return;
    const double t0 = mk_now();
    on_moe_body(p, ev);
    p->obs_seconds += mk_now() - t0;
}

double mk_profile_observer_seconds(const mk_profile *p) { return p->obs_seconds; }

static void on_moe_body(mk_profile *p, const mk_moe_event *ev) {
    if (ev->layer < 0 || ev->layer >= p->n_layer || p->moe_index[ev->layer] < 0) {
        fail(p, MK_ERR_INTERNAL, "profile: event for layer %lld, which is not a MoE layer", (long long)ev->layer);
        return;
    }
    if (ev->k != p->K && ev->n_expert == p->E) {
        /* the routing policy decides the slots per token; adopt it before the first token */
        bool fresh = true;
        for (int64_t i = 0; i < p->n_moe; i++) fresh = fresh && p->cursor[i] == 0;
        int32_t *a = fresh ? mk_calloc(p->n_tok * (size_t)ev->k, sizeof(int32_t)) : NULL;
        int32_t *b = fresh ? mk_calloc(p->n_tok * (size_t)ev->k, sizeof(int32_t)) : NULL;
        if (a && b) {
            free(p->ids_prev[0]);
            free(p->ids_prev[1]);
            p->ids_prev[0] = a;
            p->ids_prev[1] = b;
            p->K = ev->k;
            p->scratch_cap = 0;
        } else {
            free(a);
            free(b);
        }
    }
    if (ev->k != p->K || ev->n_expert != p->E) {
        fail(p, MK_ERR_INTERNAL, "profile: event with k = %lld, %lld experts (expected %lld, %lld)", (long long)ev->k,
             (long long)ev->n_expert, (long long)p->K, (long long)p->E);
        return;
    }
    const int64_t li = p->moe_index[ev->layer];
    const size_t n = ev->n_tok, K = (size_t)p->K, E = (size_t)p->E, g0 = p->cursor[li];
    if (g0 + n > p->n_tok) {
        fail(p, MK_ERR_INTERNAL, "profile: layer %lld saw more tokens than the data holds", (long long)ev->layer);
        return;
    }
    const size_t sq = find_seq(p, g0);
    if (g0 - p->seq_start[sq] != ev->pos0 || ev->pos0 + n > p->seq_len[sq]) {
        fail(p, MK_ERR_INTERNAL, "profile: layer %lld: event at position %zu does not line up with sequence %zu",
             (long long)ev->layer, ev->pos0, sq);
        return;
    }
    if (!grow_scratch(p, n)) {
        fail(p, MK_ERR_NOMEM, "profile: out of memory");
        return;
    }
    event_scratch(p, ev);
    const size_t slots[2] = {(size_t)p->seq_ds[sq], p->n_ds};
    int32_t *prev = li > 0 ? p->ids_prev[(li - 1) & 1] : NULL, *cur = p->ids_prev[li & 1];
    int64_t *coact = p->coact + (size_t)li * E * E, *trans = li > 0 ? p->trans + (size_t)(li - 1) * E * E : NULL;
    for (size_t t = 0; t < n; t++) {
        const size_t g = g0 + t;
        const int32_t *id = ev->expert_ids + t * K;
        const float *w = ev->expert_weights + t * K;
        for (int si = 0; si < 2; si++) {
            const size_t sl = slots[si];
            p->ent_sum[sl * (size_t)p->n_moe + (size_t)li] += p->sc_ent[t];
            if (si == 1) {
                size_t b = (size_t)(p->sc_ratio[t] * MK_PROFILE_RATIO_BINS);
                p->ratio_hist[(size_t)li * MK_PROFILE_RATIO_BINS + (b < MK_PROFILE_RATIO_BINS ? b : MK_PROFILE_RATIO_BINS - 1)]++;
            }
            p->ntok[sl * (size_t)p->n_moe + (size_t)li]++;
            mk_prof_ex(p, sl, li, p->sc_top1[t])->tcess_sum += p->sc_top1v[t];
            for (size_t s = 0; s < K; s++) {
                if (id[s] < 0) continue;
                const size_t j = t * K + s;
                mk_expert_stats *x = mk_prof_ex(p, sl, li, id[s]);
                const double nrm = p->sc_norm[j], gw = w[s];
                x->count++;
                x->gate_sum += gw;
                x->reap_sum += gw * nrm;
                x->easyep_sum += gw * nrm * p->sc_s[t];
                x->norm_sum += nrm;
                x->norm_sq += nrm * nrm;
                if (nrm < x->norm_min) x->norm_min = nrm;
                if (nrm > x->norm_max) x->norm_max = nrm;
                if (p->sc_absmax[j] > x->out_absmax || x->out_token < 0) {
                    x->out_absmax = p->sc_absmax[j];
                    x->out_channel = p->sc_chan[j];
                    x->out_token = (int64_t)g;
                }
            }
        }
        for (size_t s = 0; s < K; s++) {
            if (id[s] < 0) continue;
            p->hist[((size_t)li * E + (size_t)id[s]) * NB + (size_t)hist_bin(p->sc_norm[t * K + s])]++;
            for (size_t s2 = 0; s2 < K; s2++)
                if (id[s2] >= 0) coact[(size_t)id[s] * E + (size_t)id[s2]]++;
            if (prev)
                for (size_t s2 = 0; s2 < K; s2++) {
                    const int32_t pe = prev[g * K + s2];
                    if (pe >= 0) trans[(size_t)pe * E + (size_t)id[s]]++;
                }
            tc_add(&p->tc[(size_t)li * E + (size_t)id[s]], p->tokens[g]);
        }
        memcpy(cur + g * K, id, K * sizeof(int32_t));
    }
    p->cursor[li] = g0 + n;
}

mk_observer mk_profile_observer(mk_profile *p) {
    mk_observer o = {.user = p, .on_moe = on_moe, .on_layer = NULL};
    return o;
}

/* ---------------------------------------------------------------- derived statistics */

double mk_prof_js(const mk_profile *p, size_t a, size_t b, int64_t li) {
    double ta = 0, tb = 0;
    for (int64_t e = 0; e < p->E; e++) {
        ta += (double)mk_prof_ex(p, a, li, e)->count;
        tb += (double)mk_prof_ex(p, b, li, e)->count;
    }
    if (ta <= 0 || tb <= 0) return 0;
    double js = 0;
    for (int64_t e = 0; e < p->E; e++) {
        double pa = (double)mk_prof_ex(p, a, li, e)->count / ta, pb = (double)mk_prof_ex(p, b, li, e)->count / tb;
        double m = 0.5 * (pa + pb);
        if (pa > 0) js += 0.5 * pa * log2(pa / m);
        if (pb > 0) js += 0.5 * pb * log2(pb / m);
    }
    return js < 0 ? 0 : js;
}

static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}
static int cmp_asc(const void *a, const void *b) { return -cmp_desc(a, b); }

static int cmp_se(const void *a, const void *b) {
    const mk_super_expert *x = a, *y = b;
    if (x->value != y->value) return x->value < y->value ? 1 : -1;
    if (x->li != y->li) return x->li < y->li ? -1 : 1;
    return (x->e > y->e) - (x->e < y->e);
}

mk_status mk_super_experts_rule(const double *vals, const int64_t *count, const int64_t *moe_layer, int64_t n_moe, int64_t E,
                                int64_t n_layer, mk_super_expert **out, size_t *n, int64_t *n_incl, double *p995, double *floor10) {
    *out = NULL;
    *n = 0;
    /* Python's round(): half to even, as nearbyint does in the default rounding mode. */
    const int64_t incl = (int64_t)nearbyint(0.75 * (double)n_layer);
    *n_incl = incl;
    *p995 = *floor10 = 0;
    size_t cnt = 0;
    double *v = mk_malloc((size_t)(n_moe * E) * sizeof(double) + 1);
    mk_super_expert *se = mk_malloc((size_t)(n_moe * E) * sizeof *se + 1);
    if (!v || !se) {
        free(v);
        free(se);
        return MK_ERR_NOMEM;
    }
    for (int64_t li = 0; li < n_moe; li++) {
        if (moe_layer[li] >= incl) continue;
        for (int64_t e = 0; e < E; e++)
            if (count[li * E + e] > 0) v[cnt++] = vals[li * E + e];
    }
    size_t ns = 0;
    if (cnt > 0) {
        qsort(v, cnt, sizeof *v, cmp_asc);
        /* numpy.percentile, linear interpolation */
        double pos = 0.995 * (double)(cnt - 1);
        size_t lo = (size_t)floor(pos), hi = lo + 1 < cnt ? lo + 1 : lo;
        double fr = pos - (double)lo;
        *p995 = v[lo] + (v[hi] - v[lo]) * fr;
        *floor10 = floor(v[cnt - 1] / 10.0);
        for (int64_t li = 0; li < n_moe; li++) {
            if (moe_layer[li] >= incl) continue;
            for (int64_t e = 0; e < E; e++) {
                const double x = vals[li * E + e];
                if (count[li * E + e] > 0 && x > *p995 && x > *floor10) se[ns++] = (mk_super_expert){li, e, x};
            }
        }
        qsort(se, ns, sizeof *se, cmp_se);
    }
    free(v);
    *out = se;
    *n = ns;
    return MK_OK;
}

mk_status mk_prof_super_experts(const mk_profile *p, mk_super_expert **out, size_t *n, int64_t *n_incl, double *p995,
                                double *floor10) {
    const size_t N = (size_t)(p->n_moe * p->E);
    double *vals = mk_malloc(N * sizeof *vals + 1);
    int64_t *count = mk_malloc(N * sizeof *count + 1);
    mk_status st = MK_ERR_NOMEM;
    if (vals && count) {
        for (int64_t li = 0; li < p->n_moe; li++)
            for (int64_t e = 0; e < p->E; e++) {
                const mk_expert_stats *x = mk_prof_ex(p, p->n_ds, li, e);
                vals[li * p->E + e] = x->out_absmax;
                count[li * p->E + e] = x->count;
            }
        st = mk_super_experts_rule(vals, count, p->moe_layer, p->n_moe, p->E, p->n_layer, out, n, n_incl, p995, floor10);
    } else {
        *out = NULL;
        *n = 0;
    }
    free(vals);
    free(count);
    return st;
}

void mk_prof_top_tokens(const mk_profile *p, int64_t li, int32_t *ids, int64_t *counts, int *n) {
    for (int64_t e = 0; e < p->E; e++) {
        const mk_tokcount *t = mk_prof_tc(p, li, e);
        int32_t *I = ids + (size_t)e * TOP;
        int64_t *C = counts + (size_t)e * TOP;
        int m = 0;
        for (int32_t j = 0; j < t->n; j++) {
            const int32_t id = t->id[j];
            const int64_t c = t->count[j];
            /* insertion into a list sorted by count desc, id asc */
            int pos = m;
            while (pos > 0 && (C[pos - 1] < c || (C[pos - 1] == c && I[pos - 1] > id))) pos--;
            if (pos >= TOP) continue;
            for (int i = (m < TOP ? m : TOP - 1); i > pos; i--) {
                I[i] = I[i - 1];
                C[i] = C[i - 1];
            }
            I[pos] = id;
            C[pos] = c;
            if (m < TOP) m++;
        }
        n[e] = m;
    }
}

/* ---------------------------------------------------------------- stats.json */

static json_t *jnum(double v) { return isfinite(v) ? json_real(v) : json_null(); }

typedef double (*field_fn)(const mk_profile *p, size_t slot, int64_t li, int64_t e);
static double f_count(const mk_profile *p, size_t s, int64_t li, int64_t e) { return (double)mk_prof_ex(p, s, li, e)->count; }
static double f_freq(const mk_profile *p, size_t s, int64_t li, int64_t e) {
    int64_t T = p->ntok[s * (size_t)p->n_moe + (size_t)li];
    return T ? (double)mk_prof_ex(p, s, li, e)->count / (double)T : 0;
}
#define PER_COUNT(name, expr)                                                                          \
    static double name(const mk_profile *p, size_t s, int64_t li, int64_t e) {                         \
        const mk_expert_stats *x = mk_prof_ex(p, s, li, e);                                            \
        return x->count ? (expr) : 0;                                                                  \
    }
PER_COUNT(f_gate_mean, x->gate_sum / (double)x->count)
PER_COUNT(f_reap, x->reap_sum / (double)x->count)
PER_COUNT(f_norm_mean, x->norm_sum / (double)x->count)
PER_COUNT(f_norm_std, sqrt(fmax(0, x->norm_sq / (double)x->count - (x->norm_sum / (double)x->count) * (x->norm_sum / (double)x->count))))
PER_COUNT(f_norm_min, x->norm_min)
PER_COUNT(f_norm_max, x->norm_max)
PER_COUNT(f_absmax, x->out_absmax)
static double f_gate_sum(const mk_profile *p, size_t s, int64_t li, int64_t e) { return mk_prof_ex(p, s, li, e)->gate_sum; }
static double f_easyep(const mk_profile *p, size_t s, int64_t li, int64_t e) { return mk_prof_ex(p, s, li, e)->easyep_sum; }
static double f_tcess(const mk_profile *p, size_t s, int64_t li, int64_t e) {
    int64_t T = p->ntok[s * (size_t)p->n_moe + (size_t)li];
    return T ? mk_prof_ex(p, s, li, e)->tcess_sum / (double)T : 0;
}

static json_t *grid(const mk_profile *p, size_t slot, field_fn f, bool integer) {
    json_t *a = json_array();
    for (int64_t li = 0; li < p->n_moe; li++) {
        json_t *row = json_array();
        for (int64_t e = 0; e < p->E; e++) {
            double v = f(p, slot, li, e);
            json_array_append_new(row, integer ? json_integer((json_int_t)v) : jnum(v));
        }
        json_array_append_new(a, row);
    }
    return a;
}

static json_t *token_ref(const mk_profile *p, int64_t g, mk_decode_fn decode, void *du) {
    if (g < 0) return json_null();
    size_t ds, seq, pos;
    mk_prof_locate(p, (size_t)g, &ds, &seq, &pos);
    json_t *o = json_object();
    json_object_set_new(o, "dataset", json_string(p->ds_name[ds]));
    size_t first = seq;
    while (first > 0 && p->seq_ds[first - 1] == p->seq_ds[seq]) first--;
    json_object_set_new(o, "sequence", json_integer((json_int_t)(seq - first)));
    json_object_set_new(o, "position", json_integer((json_int_t)pos));
    json_object_set_new(o, "token_id", json_integer(p->tokens[g]));
    char buf[256];
    if (decode && decode(du, p->tokens[g], buf, sizeof buf)) json_object_set_new(o, "token", json_string(buf));
    return o;
}

static json_t *slot_stats(const mk_profile *p, size_t slot, mk_decode_fn decode, void *du) {
    json_t *o = json_object();
    const size_t L = (size_t)p->n_moe;
    json_object_set_new(o, "n_tokens", json_integer((json_int_t)p->ntok[slot * L]));
    json_t *ent = json_array();
    for (size_t li = 0; li < L; li++) {
        int64_t T = p->ntok[slot * L + li];
        json_array_append_new(ent, jnum(T ? p->ent_sum[slot * L + li] / (double)T : 0));
    }
    json_object_set_new(o, "entropy_mean", ent);
    json_object_set_new(o, "count", grid(p, slot, f_count, true));
    json_object_set_new(o, "freq", grid(p, slot, f_freq, false));
    json_object_set_new(o, "gate_sum", grid(p, slot, f_gate_sum, false));
    json_object_set_new(o, "gate_mean", grid(p, slot, f_gate_mean, false));
    json_object_set_new(o, "reap", grid(p, slot, f_reap, false));
    json_object_set_new(o, "easyep", grid(p, slot, f_easyep, false));
    json_object_set_new(o, "tcess", grid(p, slot, f_tcess, false));
    json_object_set_new(o, "norm_mean", grid(p, slot, f_norm_mean, false));
    json_object_set_new(o, "norm_std", grid(p, slot, f_norm_std, false));
    json_object_set_new(o, "norm_min", grid(p, slot, f_norm_min, false));
    json_object_set_new(o, "norm_max", grid(p, slot, f_norm_max, false));
    json_object_set_new(o, "down_absmax", grid(p, slot, f_absmax, false));
    /* where each expert's max |down_proj output| occurred: [channel, global token index] */
    json_t *where = json_array();
    for (int64_t li = 0; li < p->n_moe; li++) {
        json_t *row = json_array();
        for (int64_t e = 0; e < p->E; e++) {
            const mk_expert_stats *x = mk_prof_ex(p, slot, li, e);
            json_t *c = json_array();
            json_array_append_new(c, json_integer(x->out_channel));
            json_array_append_new(c, json_integer(x->out_token));
            json_array_append_new(row, c);
        }
        json_array_append_new(where, row);
    }
    json_object_set_new(o, "down_absmax_at", where);
    (void)decode;
    (void)du;
    return o;
}

static json_t *matrix(const int64_t *m, size_t E) {
    json_t *a = json_array();
    for (size_t i = 0; i < E; i++) {
        json_t *row = json_array();
        for (size_t j = 0; j < E; j++) json_array_append_new(row, json_integer(m[i * E + j]));
        json_array_append_new(a, row);
    }
    return a;
}

static int cmp_spec(const void *a, const void *b) {
    const spec_item *x = a, *y = b;
    double dx = x->pd - x->prest, dy = y->pd - y->prest;
    if (dx != dy) return dx < dy ? 1 : -1;
    if (x->li != y->li) return x->li < y->li ? -1 : 1;
    return (x->e > y->e) - (x->e < y->e);
}

size_t mk_prof_specific(const mk_profile *p, size_t d, spec_item *out, size_t top) {
    const size_t n = (size_t)(p->n_moe * p->E);
    spec_item *all = mk_malloc(n * sizeof *all);
    if (!all) return 0;
    size_t k = 0;
    for (int64_t li = 0; li < p->n_moe; li++) {
        double td = 0, tr = 0;
        for (int64_t e = 0; e < p->E; e++) {
            td += (double)mk_prof_ex(p, d, li, e)->count;
            tr += (double)(mk_prof_ex(p, p->n_ds, li, e)->count - mk_prof_ex(p, d, li, e)->count);
        }
        if (td <= 0 || tr <= 0) continue;
        for (int64_t e = 0; e < p->E; e++) {
            double cd = (double)mk_prof_ex(p, d, li, e)->count;
            double cr = (double)(mk_prof_ex(p, p->n_ds, li, e)->count) - cd;
            all[k++] = (spec_item){li, e, cd / td, cr / tr};
        }
    }
    qsort(all, k, sizeof *all, cmp_spec);
    size_t m = k < top ? k : top;
    memcpy(out, all, m * sizeof *out);
    free(all);
    return m;
}

static json_t *build_json(const mk_profile *p, const mk_profile_run_info *run, mk_decode_fn decode, void *du) {
    const mk_model_info *in = mk_model_get_info(p->m);
    const size_t E = (size_t)p->E, L = (size_t)p->n_moe;
    json_t *root = json_object();
    json_object_set_new(root, "schema", json_string("moekit.profile"));
    json_object_set_new(root, "version", json_integer(MK_PROFILE_SCHEMA_VERSION));
    json_t *mo = json_object();
    json_object_set_new(mo, "dir", json_string(run && run->model_dir ? run->model_dir : ""));
    json_object_set_new(mo, "arch", json_string(in->arch));
    json_object_set_new(mo, "model_type", json_string(in->model_type));
    json_object_set_new(mo, "n_layer", json_integer(in->n_layer));
    json_object_set_new(mo, "n_expert", json_integer(in->n_expert));
    json_object_set_new(mo, "k", json_integer(p->K));
    json_object_set_new(mo, "d_model", json_integer(in->d_model));
    json_object_set_new(mo, "vocab", json_integer(in->vocab));
    json_t *ml = json_array();
    for (size_t li = 0; li < L; li++) json_array_append_new(ml, json_integer(p->moe_layer[li]));
    json_object_set_new(mo, "moe_layers", ml);
    if (in->experts_per_layer) { /* a per-layer model: grid rows are padded to n_expert with zeros */
        json_t *ne = json_array();
        for (size_t li = 0; li < L; li++) json_array_append_new(ne, json_integer(in->experts_per_layer[p->moe_layer[li]]));
        json_object_set_new(mo, "experts_per_layer", ne);
    }
    json_object_set_new(root, "model", mo);
    if (run) {
        json_t *r = json_object();
        json_object_set_new(r, "ctx", json_integer((json_int_t)run->ctx));
        json_object_set_new(r, "tokens_limit", json_integer(run->tokens_limit));
        json_object_set_new(r, "streamed", json_boolean(run->streamed));
        json_object_set_new(r, "seconds", jnum(run->seconds));
        json_object_set_new(r, "moekit_version", json_string(MK_VERSION));
        json_object_set_new(root, "run", r);
    }
    json_t *dss = json_array();
    for (size_t d = 0; d < p->n_ds; d++) {
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(p->ds_name[d]));
        json_object_set_new(o, "path", json_string(p->ds_path[d]));
        json_object_set_new(o, "n_tokens", json_integer((json_int_t)p->ds_tokens[d]));
        json_object_set_new(o, "n_sequences", json_integer((json_int_t)p->ds_seqs[d]));
        json_array_append_new(dss, o);
    }
    json_object_set_new(root, "datasets", dss);
    json_object_set_new(root, "overall", slot_stats(p, p->n_ds, decode, du));
    json_t *per = json_object();
    for (size_t d = 0; d < p->n_ds; d++) json_object_set_new(per, p->ds_name[d], slot_stats(p, d, decode, du));
    json_object_set_new(root, "per_dataset", per);

    /* output-norm histograms (overall) */
    json_t *h = json_object();
    json_object_set_new(h, "bins", json_integer(NB));
    json_object_set_new(h, "log2_lo", json_real(-12.0));
    json_object_set_new(h, "log2_step", json_real(0.5));
    json_t *hc = json_array();
    for (size_t li = 0; li < L; li++) {
        json_t *row = json_array();
        for (size_t e = 0; e < E; e++) {
            json_t *b = json_array();
            for (size_t i = 0; i < NB; i++) json_array_append_new(b, json_integer(p->hist[(li * E + e) * NB + i]));
            json_array_append_new(row, b);
        }
        json_array_append_new(hc, row);
    }
    json_object_set_new(h, "counts", hc);
    json_object_set_new(root, "norm_hist", h);

    /* super experts */
    mk_super_expert *se = NULL;
    size_t nse = 0;
    int64_t incl = 0;
    double p995 = 0, fl = 0;
    json_t *so = json_object();
    if (mk_prof_super_experts(p, &se, &nse, &incl, &p995, &fl) == MK_OK) {
        json_object_set_new(so, "rule", json_string("down_absmax > percentile_99.5 and > floor(max/10), layers < round(0.75 n_layer)"));
        json_object_set_new(so, "include_layers", json_integer(incl));
        json_object_set_new(so, "percentile_99_5", jnum(p995));
        json_object_set_new(so, "floor_max_over_10", jnum(fl));
        json_t *lst = json_array();
        for (size_t i = 0; i < nse; i++) {
            const mk_expert_stats *x = mk_prof_ex(p, p->n_ds, se[i].li, se[i].e);
            json_t *o = json_object();
            json_object_set_new(o, "layer", json_integer(p->moe_layer[se[i].li]));
            json_object_set_new(o, "expert", json_integer(se[i].e));
            json_object_set_new(o, "channel", json_integer(x->out_channel));
            json_object_set_new(o, "value", jnum(se[i].value));
            json_object_set_new(o, "token", token_ref(p, x->out_token, decode, du));
            json_array_append_new(lst, o);
        }
        json_object_set_new(so, "experts", lst);
        free(se);
    }
    json_object_set_new(root, "super_experts", so);

    /* the single largest outlier over all layers and experts */
    int64_t bl = -1, be = -1;
    double bv = -1;
    for (size_t li = 0; li < L; li++)
        for (size_t e = 0; e < E; e++) {
            const mk_expert_stats *x = mk_prof_ex(p, p->n_ds, (int64_t)li, (int64_t)e);
            if (x->count && x->out_absmax > bv) {
                bv = x->out_absmax;
                bl = (int64_t)li;
                be = (int64_t)e;
            }
        }
    if (bl >= 0) {
        const mk_expert_stats *x = mk_prof_ex(p, p->n_ds, bl, be);
        json_t *o = json_object();
        json_object_set_new(o, "layer", json_integer(p->moe_layer[bl]));
        json_object_set_new(o, "expert", json_integer(be));
        json_object_set_new(o, "channel", json_integer(x->out_channel));
        json_object_set_new(o, "value", jnum(bv));
        json_object_set_new(o, "token", token_ref(p, x->out_token, decode, du));
        json_object_set_new(root, "max_down_proj", o);
    }
    {
        /* NAEE dynamic skipping's per-layer beta: the median over tokens of p(2)/p(1) of the full
         * router softmax, from a 4096-bin histogram (resolution 1/4096). */
        json_t *nb = json_array();
        for (int64_t li = 0; li < p->n_moe; li++) {
            const int64_t *rh = p->ratio_hist + (size_t)li * MK_PROFILE_RATIO_BINS;
            int64_t tot = 0, acc = 0;
            for (size_t b = 0; b < MK_PROFILE_RATIO_BINS; b++) tot += rh[b];
            double med = 0;
            for (size_t b = 0; b < MK_PROFILE_RATIO_BINS && tot; b++) {
                acc += rh[b];
                if (2 * acc >= tot) {
                    med = ((double)b + 0.5) / MK_PROFILE_RATIO_BINS;
                    break;
                }
            }
            json_array_append_new(nb, json_real(med));
        }
        json_object_set_new(root, "naee_beta", nb);
    }

    /* co-activation and transitions (overall) */
    json_t *co = json_array();
    for (size_t li = 0; li < L; li++) json_array_append_new(co, matrix(p->coact + li * E * E, E));
    json_object_set_new(root, "coactivation", co);
    json_t *tr = json_array();
    for (size_t li = 0; li + 1 < L; li++) {
        json_t *o = json_object();
        json_object_set_new(o, "from_layer", json_integer(p->moe_layer[li]));
        json_object_set_new(o, "to_layer", json_integer(p->moe_layer[li + 1]));
        json_object_set_new(o, "counts", matrix(p->trans + li * E * E, E));
        json_array_append_new(tr, o);
    }
    json_object_set_new(root, "transitions", tr);

    /* top tokens per expert */
    int32_t *ids = mk_malloc(E * TOP * sizeof *ids);
    int64_t *cnts = mk_malloc(E * TOP * sizeof *cnts);
    int *nn = mk_malloc(E * sizeof *nn);
    json_t *tt = json_array();
    for (size_t li = 0; ids && cnts && nn && li < L; li++) {
        mk_prof_top_tokens(p, (int64_t)li, ids, cnts, nn);
        json_t *row = json_array();
        for (size_t e = 0; e < E; e++) {
            json_t *lst = json_array();
            for (int i = 0; i < nn[e]; i++) {
                json_t *o = json_object();
                json_object_set_new(o, "id", json_integer(ids[e * TOP + (size_t)i]));
                json_object_set_new(o, "count", json_integer(cnts[e * TOP + (size_t)i]));
                const mk_tokcount *tcn = mk_prof_tc(p, (int64_t)li, (int64_t)e);
                int64_t err = 0;
                for (int32_t j = 0; j < tcn->n; j++)
                    if (tcn->id[j] == ids[e * TOP + (size_t)i]) err = tcn->err[j];
                json_object_set_new(o, "overcount_max", json_integer(err));
                char buf[256];
                if (decode && decode(du, ids[e * TOP + (size_t)i], buf, sizeof buf)) json_object_set_new(o, "token", json_string(buf));
                json_array_append_new(lst, o);
            }
            json_array_append_new(row, lst);
        }
        json_array_append_new(tt, row);
    }
    free(ids);
    free(cnts);
    free(nn);
    json_object_set_new(root, "top_tokens", tt);

    /* divergence between datasets */
    json_t *dv = json_object();
    json_t *pairs = json_array();
    for (size_t a = 0; a < p->n_ds; a++)
        for (size_t b = a + 1; b < p->n_ds; b++) {
            json_t *o = json_object(), *js = json_array();
            double sum = 0;
            for (size_t li = 0; li < L; li++) {
                double v = mk_prof_js(p, a, b, (int64_t)li);
                sum += v;
                json_array_append_new(js, jnum(v));
            }
            json_object_set_new(o, "a", json_string(p->ds_name[a]));
            json_object_set_new(o, "b", json_string(p->ds_name[b]));
            json_object_set_new(o, "js", js);
            json_object_set_new(o, "js_mean", jnum(sum / (double)L));
            json_array_append_new(pairs, o);
        }
    json_object_set_new(dv, "pairs", pairs);
    json_t *spec = json_object();
    spec_item items[16];
    for (size_t d = 0; p->n_ds > 1 && d < p->n_ds; d++) {
        size_t m = mk_prof_specific(p, d, items, 16);
        json_t *lst = json_array();
        for (size_t i = 0; i < m; i++) {
            json_t *o = json_object();
            json_object_set_new(o, "layer", json_integer(p->moe_layer[items[i].li]));
            json_object_set_new(o, "expert", json_integer(items[i].e));
            json_object_set_new(o, "share", jnum(items[i].pd));
            json_object_set_new(o, "share_others", jnum(items[i].prest));
            json_array_append_new(lst, o);
        }
        json_object_set_new(spec, p->ds_name[d], lst);
    }
    json_object_set_new(dv, "specific_experts", spec);
    json_object_set_new(root, "divergence", dv);
    return root;
}

mk_status mk_profile_write_json(const mk_profile *p, const mk_profile_run_info *run, mk_decode_fn decode,
                                void *decode_user, const char *path) {
    if (mk_profile_status(p)) return p->st;
    json_t *root = build_json(p, run, decode, decode_user);
    if (!root) return mk_err(MK_ERR_NOMEM, "%s: out of memory building the statistics", path);
    char *text = json_dumps(root, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(17));
    json_decref(root);
    if (!text) return mk_err(MK_ERR_NOMEM, "%s: out of memory serialising the statistics", path);
    size_t len = strlen(text);
    text[len] = '\n';
    mk_status st = mk_write_file_atomic(path, text, len + 1);
    free(text);
    return st;
}
