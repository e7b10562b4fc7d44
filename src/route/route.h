/* Routing policies: router logits → chosen experts and their weights, per token. */
#ifndef MK_ROUTE_H
#define MK_ROUTE_H

#include "base/base.h"

typedef struct mk_route_cfg {
    int64_t n_expert;
    int64_t k;              /* experts to choose */
    bool norm_topk;         /* renormalise the chosen weights to sum to 1 */
    const uint8_t *mask;    /* (n_expert) 1 = allowed, or NULL */
} mk_route_cfg;

/* Softmax over the allowed experts (f32), top-k with the lower index winning ties, weights as
 * the architecture says. ids/weights: (k) in selection order (descending probability); slots
 * beyond the number of allowed experts get id -1 and weight 0. scratch: (n_expert) floats. */
void mk_route_softmax_topk(const mk_route_cfg *rc, const float *logits, int32_t *ids, float *weights, float *scratch);

#endif
