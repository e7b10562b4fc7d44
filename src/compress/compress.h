/* Compression: choosing experts to keep (pruning criteria and budgets) and writing the result
 * as a new HF checkpoint directory. Reads statistics (stats.json from `moekit profile`) and the
 * model; never modifies the source. */
#ifndef MK_COMPRESS_H
#define MK_COMPRESS_H

#include "model/model.h"

/* ---- stats.json (schema "moekit.profile", see docs/stats-schema.md) ---- */
typedef struct mk_stats mk_stats;
/* Loads stats.json and checks it describes model m (architecture, layers, experts, d_model,
 * vocab). */
mk_status mk_stats_load(mk_stats **out, const char *path, const mk_model *m);
void mk_stats_free(mk_stats *s);
/* Per-expert values of a field ("freq", "gate_sum", "reap", "easyep", "tcess", ...) for a
 * dataset (NULL = overall) into scores (n_layer, n_expert); dense layers are left 0. */
mk_status mk_stats_field(const mk_stats *s, const char *dataset, const char *field, double *scores);
/* EASY-EP's mixed-domain rule (Dong et al. 2025): for every dataset d listed in 'datasets', the
 * field of per_dataset[d] divided by its sum over the layer's experts, summed over the datasets,
 * into scores (n_layer, n_expert). A layer whose sum is 0 in a dataset adds nothing from it.
 * With one dataset the ranking in each layer is that of the raw field. */
mk_status mk_stats_field_mixed(const mk_stats *s, const char *field, double *scores);
/* Super experts as a (n_layer, n_expert) 0/1 map; returns how many. */
int64_t mk_stats_super(const mk_stats *s, uint8_t *map);
/* NAEE's per-layer skip threshold beta (field "naee_beta": median p(2)/p(1)) into betas (n_layer);
 * dense layers get 0. */
mk_status mk_stats_naee_beta(const mk_stats *s, float *betas);
const char *mk_stats_sha256(const mk_stats *s);
const char *mk_stats_path(const mk_stats *s);

/* ---- choosing what to keep ---- */
typedef enum mk_budget { MK_BUDGET_LAYER, MK_BUDGET_GLOBAL } mk_budget;

/* keep (n_layer, n_expert) 0/1 from scores (higher = more important). Layer budget: keep_per_layer
 * experts in every MoE layer. Global budget: keep_per_layer × n_moe_layers experts in all, ranked
 * by each score divided by its layer's total (so layers compare), every layer keeping at least
 * min_keep. protect (or NULL): experts that must be kept. Ties: the lower expert id wins. */
mk_status mk_prune_select(const mk_model *m, const double *scores, int64_t keep_per_layer, mk_budget budget,
                          int64_t min_keep, const uint8_t *protect, uint8_t *keep);

/* ---- writing ---- */
typedef struct mk_write_opts {
    bool force;               /* replace an existing output directory */
    const char *record_json;  /* text of moekit_compression.json (NULL: none) */
} mk_write_opts;

/* What goes into output expert j of a MoE layer. */
typedef struct mk_expert_out {
    int32_t copy_from;        /* >= 0: the source expert's weights, unchanged (same d_ff only) */
    const float *gate, *up;   /* copy_from < 0: new weights, f32 (d_ff_out, d_model) ... */
    const float *down;        /* ... and (d_model, d_ff_out); written in the source's dtype */
    int32_t router_from;      /* the source router row (and router bias entry) this expert gets */
} mk_expert_out;

typedef struct mk_expert_plan {
    int64_t n_out;            /* experts per MoE layer in the output (the largest, with n_out_layer) */
    const int64_t *n_out_layer; /* (n_layer) or NULL: layer l gets its first n_out_layer[l] entries
                                 of x — a per-layer model, which only moekit reads (config.json's
                                 moekit_experts_per_layer) */
    int64_t d_ff_out;         /* expert intermediate size of the output; 0 = the source's */
    const mk_expert_out *x;   /* (n_layer, n_out); rows of dense layers are not read */
} mk_expert_plan;

/* Writes model m with the MoE layers rebuilt as the plan says, as a new HF directory: expert
 * tensors in the source's layout (per-expert or fused) and dtype, router rows as chosen,
 * config.json's expert count, k (clipped to n_out) and expert d_ff updated, tokenizer and
 * generation files copied, moekit_compression.json from o->record_json. The directory appears
 * under `outdir` only when complete; the source is never modified. */
mk_status mk_write_experts(const mk_model *m, const mk_expert_plan *plan, const char *outdir, const mk_write_opts *o);

/* MK_OK when every MoE layer of m has n_expert experts; else an MK_ERR_UNSUPPORTED error naming
 * the model and `what` (a per-layer model is run, profiled and evaluated, not compressed again:
 * compress its source). */
mk_status mk_require_uniform_experts(const mk_model *m, const char *what);

/* Writes model m with only the experts marked in keep (n_layer, n_expert) as a new HF directory:
 * expert tensors removed and renumbered (per-expert or fused layout, as the source), router rows
 * sliced, config.json's expert count and k (clipped to the experts kept) updated, tokenizer and
 * generation files copied. When every MoE layer keeps the same number of experts the result is a
 * standard HF checkpoint; otherwise (a global budget) each layer stores its own count, config.json
 * says the largest as the expert count and lists them all in moekit_experts_per_layer, and only
 * moekit reads it. The directory appears under `outdir` only when complete. */
mk_status mk_write_pruned(const mk_model *m, const uint8_t *keep, const char *outdir, const mk_write_opts *o);


/* ---- NAEE (Lu et al., 2024): layer-wise reconstruction-loss expert selection ---- */
typedef struct mk_naee_opts {
    size_t ctx;               /* calibration sequence length in tokens */
    int64_t exhaustive_max;   /* exhaustive subset search when a layer has at most this many experts
                                 (default 8); greedy elimination beyond */
    bool reference;           /* re-run the MoE block for every candidate subset (the procedure as
                                 first written: slow, kept to test the default against) */
} mk_naee_opts;
/* Runs the calibration tokens (cut into sequences of ctx) through the model, caching each MoE
 * block's input X and output Z, then per layer keeps the `keep` experts whose subset S minimises
 * Loss(S) = Σ_sequences ||Z − Z_S||_F, Z_S the block output with the other experts masked
 * (softmax over the kept ones, top-k, the model's renormalisation). Exhaustive over all subsets
 * when n_expert <= exhaustive_max; otherwise greedy: repeatedly drop the expert whose removal
 * (given those already dropped) raises the loss least. loss (n_layer) gets each layer's loss;
 * evals counts the subsets evaluated.
 * By default (no shared expert, !o->reference) each layer runs every expert once per calibration
 * token and keeps, per token, <Z, E_e(x)>, the Gram matrix <E_e(x), E_f(x)> and ||Z||² (double);
 * a candidate's ||Z − Z_S||² is then Σ from the router's weights for S (mk_route_select on the
 * cached logits), with no expert re-run. Memory: n_tok × (E(E+1)/2 + E + 1) doubles per layer. */
mk_status mk_naee_select(const mk_model *m, const int32_t *tokens, size_t n_tok, const mk_naee_opts *o, int64_t keep,
                         uint8_t *keep_map, double *loss, int64_t *evals);

/* ---- merging ---- */
/* Minimum-cost assignment: perm[i] = the column given to row i, minimising Σ cost[i][perm[i]]
 * over permutations of n (cost is (n, n) row-major). */
mk_status mk_assign_min(const double *cost, int64_t n, int64_t *perm);

typedef struct mk_msmoe_opts {
    bool align;               /* permute each member's neurons onto its dominant before averaging */
    const float *similarity;  /* (n_layer, n_expert, n_expert) expert similarity, or NULL: cosine
                                 of the router's weight rows */
    bool slice;               /* moekit's variant "msmoe-slice" (below) instead of the published one */
    mk_budget budget;         /* published only: keep groups in every layer, or keep on average
                                 (MC-SMoE's adaptive per-layer counts) */
} mk_msmoe_opts;

/* M-SMoE (Li et al., research/methods.md §2.1), as MC-SMoE's code does it for Mixtral
 * (grouping_mixtral.py): per MoE layer, the n_l most used experts (freq (n_layer, n_expert);
 * ties: lower id) are dominant, n_l = keep (layer budget) or MC-SMoE's global usage threshold
 * (global budget, keep groups per layer on average); every other expert, in order of usage, joins
 * the dominant of highest similarity; each group's weights become Σ f_e W_e / (Σ f + FLT_EPSILON)
 * (with align, members' neurons first permuted onto the dominant's; an unused group: the plain
 * mean). The router is unchanged: the plan keeps all n_expert experts with their own router rows,
 * every member of a group carrying the group's merged weights, so a token that picks two members
 * of one group gets the merged expert with the two gate weights summed. group_of (n_layer,
 * n_expert; -1 in dense layers) gets each expert's group, groups numbered by their lowest expert.
 *
 * o->slice, "msmoe-slice" (moekit's earlier variant, not the paper's): keep (>= k) dominants per
 * layer, members join the most similar (output order: by expert id), neurons aligned when
 * o->align, usage-weighted average; the plan has keep experts and each merged expert takes its
 * dominant's router row (the members' rows are dropped); group_of gets each expert's output slot.
 *
 * Either way the new weights are owned by *buffers (free with free()), plan->x is malloc'd. */
mk_status mk_msmoe_plan(const mk_model *m, const double *freq, int64_t keep, const mk_msmoe_opts *o, mk_expert_plan *plan,
                        float **buffers, int32_t *group_of);

#define MK_SUBMOE_SEED 0x5EEDu      /* k-means++ seed of layer l: MK_SUBMOE_SEED + l */
#define MK_SUBMOE_KMEANS_ITERS 100  /* Lloyd rounds at most */

typedef struct mk_submoe_opts {
    const float *similarity;  /* (n_layer, n_expert, n_expert) (cos + 1) / 2 of the experts' outputs
                                 on calibration tokens; the published method requires it */
    double rank_frac;         /* fraction of the singular values kept, in (0, 1] */
    bool slice;               /* moekit's variant "submoe-slice" (below) */
} mk_submoe_opts;

/* Sub-MoE (Li et al., AAAI 2026, research/methods.md §2.2): per MoE layer the experts are clustered
 * into keep clusters by k-means on their rows of the output similarity matrix (each expert's
 * similarities to all experts are its features; deterministic: k-means++ from splitmix64 seeded
 * MK_SUBMOE_SEED + layer, at most MK_SUBMOE_KMEANS_ITERS Lloyd rounds, empty clusters refilled,
 * see merge.c). Per cluster and projection an SVD of the members' weights (in expert order)
 * concatenated along the input axis, [W_1 … W_m] = U Σ [V_1 … V_m]ᵀ, kept to rank
 * ceil(rank_frac · min(rows, m·cols)), gives W = U Σ (Σ_i ω_i V_i)ᵀ with ω the usage shares (at
 * rank_frac 1: the usage-weighted average). Router unchanged, members bound to their cluster's
 * weights, as REAP's reimplementation does (the official code is not public); group_of as M-SMoE.
 *
 * o->slice, "submoe-slice" (moekit's earlier variant): M-SMoE's dominant grouping on the given
 * similarity (or router rows when NULL), keep (>= k) experts written, each with its dominant's
 * router row. */
mk_status mk_submoe_plan(const mk_model *m, const double *freq, int64_t keep, const mk_submoe_opts *o, mk_expert_plan *plan,
                         float **buffers, int32_t *group_of);

/* ---- CAMERA-P (Xu et al.): micro-expert (neuron) pruning ---- */
/* Scores every neuron c of every routed expert e on the calibration tokens,
 *   I(e,c) = ||W_down[:, c]||^2 * ((1 - rho) * Σ_t (g_te a_tec)^2 + rho * max_t (g_te a_tec)^2)
 * (a = silu(gate x) * up x, g the token's gate weight for e, 0 when not routed), keeps the
 * d_ff_keep best neurons of every expert (in their original order) and returns the plan of a
 * model with moe_intermediate_size d_ff_keep. Weights owned by *buffers; plan->x malloc'd. */
mk_status mk_camera_plan(const mk_model *m, const int32_t *tokens, size_t n_tok, size_t ctx, double rho, int64_t d_ff_keep,
                         mk_expert_plan *plan, float **buffers);

#endif
