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
/* Super experts as a (n_layer, n_expert) 0/1 map; returns how many. */
int64_t mk_stats_super(const mk_stats *s, uint8_t *map);
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

/* Writes model m with only the experts marked in keep (n_layer, n_expert) as a new HF directory:
 * expert tensors removed and renumbered (per-expert or fused layout, as the source), router rows
 * sliced, config.json's expert count and k (clipped to the experts kept) updated, tokenizer and
 * generation files copied. Every MoE layer must keep the same number of experts (what HF
 * configs can express). The directory appears under `outdir` only when complete. */
mk_status mk_write_pruned(const mk_model *m, const uint8_t *keep, const char *outdir, const mk_write_opts *o);


/* ---- NAEE (Lu et al., 2024): layer-wise reconstruction-loss expert selection ---- */
typedef struct mk_naee_opts {
    size_t ctx;               /* calibration sequence length in tokens */
    int64_t exhaustive_max;   /* exhaustive subset search when a layer has at most this many experts
                                 (default 8); greedy elimination beyond */
} mk_naee_opts;
/* Runs the calibration tokens (cut into sequences of ctx) through the model, caching each MoE
 * block's input X and output Z, then per layer keeps the `keep` experts whose subset S minimises
 * Loss(S) = Σ_sequences ||Z − Z_S||_F, Z_S the block output with the other experts masked
 * (softmax over the kept ones, top-k, the model's renormalisation). Exhaustive over all subsets
 * when n_expert <= exhaustive_max; otherwise greedy: repeatedly drop the expert whose removal
 * (given those already dropped) raises the loss least. loss (n_layer) gets each layer's loss;
 * evals counts the subsets evaluated. */
mk_status mk_naee_select(const mk_model *m, const int32_t *tokens, size_t n_tok, const mk_naee_opts *o, int64_t keep,
                         uint8_t *keep_map, double *loss, int64_t *evals);

#endif
