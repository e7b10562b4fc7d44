/* Routing policies: router logits → chosen experts and their weights, per token. */
#ifndef MK_ROUTE_H
#define MK_ROUTE_H

#include "base/base.h"
#include "moekit/model.h"

typedef struct mk_route_cfg {
    int64_t n_expert;
    int64_t k;              /* experts to choose (top-k) */
    int64_t slots;          /* slots per token in ids/weights (>= k; top-p may use up to this) */
    bool norm_topk;         /* renormalise the chosen weights to sum to 1 */
    float top_p;            /* > 0: top-p selection capped at `slots`; weights are the raw
                               probabilities unless top_p_renorm (norm_topk does not apply) */
    bool top_p_renorm;
    float skip_beta;        /* > 0: drop chosen j > 0 with p_j < beta * p_0 */
    int64_t rank;           /* >= 0: keep only the expert of this rank, weight 1; -1 = off */
    const uint8_t *mask;    /* (n_expert) 1 = allowed, or NULL */
    const mk_route_boost *boosts; /* this layer's boosts only */
    size_t n_boosts;
} mk_route_cfg;

/* Softmax over the allowed experts (f32), then the policy of mk_route_opts (boosts, top-k with
 * the lower index winning ties or top-p, skipping, the architecture's weight rule).
 * ids/weights: (slots) in selection order (descending probability); unused slots get id -1 and
 * weight 0. scratch: (n_expert) floats. Returns the number of experts used. */
int64_t mk_route_select(const mk_route_cfg *rc, const float *logits, int32_t *ids, float *weights, float *scratch);

/* Reads a kept-experts file (a moekit_compression.json, or any JSON object with a
 * "kept_experts" field) into a (n_layer, n_expert) mask, 1 = kept. "kept_experts" is either a
 * list indexed by layer (null or absent for layers left whole) or an object keyed by the layer
 * number as a string. Expert ids must be < n_expert. The caller frees *mask. */
mk_status mk_route_mask_load(const char *path, int64_t n_layer, int64_t n_expert, uint8_t **mask);

#endif
