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
                               probabilities unless top_p_renorm (norm_topk does not apply); a
                               sigmoid router accumulates its scores normalised over the allowed
                               experts, and weights them by its own rule (norm_topk, scale) */
    bool top_p_renorm;
    float skip_beta;        /* > 0: drop chosen j > 0 with p_j < beta * p_0 */
    int64_t rank;           /* >= 0: keep only the expert of this rank, weight 1; -1 = off */
    const uint8_t *mask;    /* (n_expert) 1 = allowed, or NULL */
    const mk_route_boost *boosts; /* this layer's boosts only */
    size_t n_boosts;
    /* the architecture's scoring (mk_config): sigmoid instead of softmax, a selection bias
     * (n_expert, added for the choice only), groups, and a factor on the final weights */
    bool sigmoid;
    const float *sel_bias;
    int64_t n_group, topk_group; /* 0 or 1: no groups */
    bool group_top2;        /* group score = sum of its two best choice scores (else its best) */
    float scale;            /* 0 or 1: none */
    float sparsemixer_eps;  /* > 0: Phi-MoE's sparsemixer (mk_config) instead of softmax top-k */
} mk_route_cfg;

/* Scores of the allowed experts (softmax in f32, or sigmoid), then the policy of mk_route_opts
 * (boosts, top-k with the lower index winning ties or top-p, skipping, the architecture's weight
 * rule). Selection is by score plus sel_bias, among the topk_group best groups when n_group > 1;
 * the weights are the unbiased scores (renormalised when norm_topk, then times scale).
 * ids/weights: (slots) in selection order (descending choice score); unused slots get id -1 and
 * weight 0. scratch: (2·n_expert) floats. Returns the number of experts used. */
/* Floats of scratch mk_route_select needs for n_expert experts. */
#define MK_ROUTE_SCRATCH(n_expert) (2 * (n_expert))

struct mk_config;
/* The architecture's routing as cfg describes it (top-k of k_active, its scoring, groups, bias use,
 * weight rule), no policy, no mask; sel_bias is per layer and stays NULL (set it from the layer). */
mk_route_cfg mk_route_cfg_of(const struct mk_config *cfg);

int64_t mk_route_select(const mk_route_cfg *rc, const float *logits, int32_t *ids, float *weights, float *scratch);

/* Reads a kept-experts file (a moekit_compression.json, or any JSON object with a
 * "kept_experts" field) into a (n_layer, n_expert) mask, 1 = kept. "kept_experts" is either a
 * list indexed by layer (null or absent for layers left whole) or an object keyed by the layer
 * number as a string. Expert ids must be < n_expert. The caller frees *mask. */
mk_status mk_route_mask_load(const char *path, int64_t n_layer, int64_t n_expert, uint8_t **mask);

#endif
