/* Token sampling: greedy, temperature, top-k, top-p (nucleus), seeded. */
#include "base/base.h"
#include "moekit/model.h"

#include <math.h>
#include <stdlib.h>

struct mk_sampler {
    mk_sampler_opts o;
    int64_t vocab;
    uint64_t rng;
    float *prob;     /* (vocab) */
    int32_t *idx;    /* (vocab) */
};

static uint64_t next_u64(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

mk_status mk_sampler_new(mk_sampler **out, int64_t vocab, const mk_sampler_opts *o) {
    *out = NULL;
    if (o->temp < 0) return mk_err(MK_ERR_ARG, "sampler: temperature must be >= 0 (got %g)", (double)o->temp);
    if (!(o->top_p > 0 && o->top_p <= 1)) return mk_err(MK_ERR_ARG, "sampler: top-p must be in (0, 1] (got %g)", (double)o->top_p);
    if (o->top_k < 0) return mk_err(MK_ERR_ARG, "sampler: top-k must be >= 0");
    mk_sampler *s = mk_calloc(1, sizeof *s);
    if (!s) return MK_ERR_NOMEM;
    s->o = *o;
    s->vocab = vocab;
    s->rng = o->seed;
    s->prob = mk_calloc((size_t)vocab, sizeof(float));
    s->idx = mk_calloc((size_t)vocab, sizeof(int32_t));
    if (!s->prob || !s->idx) {
        mk_sampler_free(s);
        return MK_ERR_NOMEM;
    }
    *out = s;
    return MK_OK;
}

void mk_sampler_free(mk_sampler *s) {
    if (!s) return;
    free(s->prob);
    free(s->idx);
    free(s);
}

static int by_prob_desc(const void *a, const void *b, void *ctx) {
    const float *p = ctx;
    float x = p[*(const int32_t *)a], y = p[*(const int32_t *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

int32_t mk_sampler_pick(mk_sampler *s, const float *logits) {
    const int64_t V = s->vocab;
    int32_t best = 0;
    for (int64_t i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = (int32_t)i;
    if (s->o.temp == 0) return best;
    float mx = logits[best], sum = 0;
    for (int64_t i = 0; i < V; i++) {
        s->prob[i] = expf((logits[i] - mx) / s->o.temp);
        sum += s->prob[i];
    }
    int64_t n = V;
    for (int64_t i = 0; i < V; i++) {
        s->prob[i] /= sum;
        s->idx[i] = (int32_t)i;
    }
    if ((s->o.top_k > 0 && s->o.top_k < V) || s->o.top_p < 1) {
        qsort_r(s->idx, (size_t)V, sizeof *s->idx, by_prob_desc, s->prob);
        if (s->o.top_k > 0 && s->o.top_k < n) n = s->o.top_k;
        if (s->o.top_p < 1) {
            float cum = 0;
            for (int64_t i = 0; i < n; i++) {
                cum += s->prob[s->idx[i]];
                if (cum >= s->o.top_p) {
                    n = i + 1;
                    break;
                }
            }
        }
    }
    float total = 0;
    for (int64_t i = 0; i < n; i++) total += s->prob[s->idx[i]];
    float r = (float)((double)(next_u64(&s->rng) >> 11) * 0x1.0p-53) * total;
    for (int64_t i = 0; i < n; i++) {
        r -= s->prob[s->idx[i]];
        if (r <= 0) return s->idx[i];
    }
    return s->idx[n - 1];
}

void mk_scmoe_scores(float *z, const float *w, int64_t V, float alpha, float beta) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < V; i++) mx = fmaxf(mx, z[i]);
    const float cutoff = logf(alpha) + mx;
    for (int64_t i = 0; i < V; i++) z[i] = z[i] >= cutoff ? (1 + beta) * z[i] - beta * w[i] : -INFINITY;
}
