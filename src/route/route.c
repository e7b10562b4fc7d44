#include "route.h"

#include <math.h>

void mk_route_softmax_topk(const mk_route_cfg *rc, const float *logits, int32_t *ids, float *weights, float *p) {
    const int64_t E = rc->n_expert;
    float mx = -INFINITY;
    for (int64_t e = 0; e < E; e++)
        if ((!rc->mask || rc->mask[e]) && logits[e] > mx) mx = logits[e];
    float sum = 0;
    for (int64_t e = 0; e < E; e++) {
        p[e] = (!rc->mask || rc->mask[e]) ? expf(logits[e] - mx) : 0.0f;
        sum += p[e];
    }
    for (int64_t e = 0; e < E; e++) p[e] /= sum;
    float wsum = 0;
    for (int64_t s = 0; s < rc->k; s++) {
        int64_t best = -1;
        for (int64_t e = 0; e < E; e++) {
            if (rc->mask && !rc->mask[e]) continue;
            bool taken = false;
            for (int64_t j = 0; j < s; j++) taken |= ids[j] == e;
            if (taken) continue;
            if (best < 0 || p[e] > p[best]) best = e;
        }
        ids[s] = (int32_t)best;
        weights[s] = best >= 0 ? p[best] : 0.0f;
        wsum += weights[s];
    }
    if (rc->norm_topk && wsum > 0)
        for (int64_t s = 0; s < rc->k; s++) weights[s] /= wsum;
}
