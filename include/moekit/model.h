/* moekit model API: load an HF MoE checkpoint and run the forward pass.
 *
 * Ownership: mk_model_load returns a model the caller frees with mk_model_free; it maps the
 * weights read-only and keeps the mapping until freed. A context (mk_ctx) holds the run state of
 * one sequence (KV cache, activation buffers) for a model that must outlive it. */
#ifndef MOEKIT_MODEL_H
#define MOEKIT_MODEL_H

#include "moekit/base.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mk_model mk_model;
typedef struct mk_ctx mk_ctx;

/* What a consumer needs to know about a loaded model. Shape letters as in DESIGN.md. */
typedef struct mk_model_info {
    const char *arch;        /* the config's architectures[0], e.g. "Qwen3MoeForCausalLM" */
    const char *model_type;  /* e.g. "qwen3_moe" */
    int64_t vocab, d_model, n_layer, n_head, n_kv_head, d_head;
    int64_t n_expert, k_active, d_ff_expert, d_ff_dense, d_ff_shared;
    int64_t n_moe_layers;
    bool norm_topk, has_shared_expert, tie_embed;
    int64_t params_total;    /* scalar parameters in distinct tensors */
    int64_t params_active;   /* params_total minus the routed experts a token does not use */
    int32_t bos_id, eos_id;  /* -1 when unknown */
    double rope_theta;
    bool rope_yarn;          /* YaRN: inv_freq blended for yarn_factor × yarn_orig_ctx positions */
    double yarn_factor, rope_attn_factor; /* attention factor: cos/sin multiplier (1 without YaRN) */
    int64_t yarn_orig_ctx;
    const int64_t *experts_per_layer; /* (n_layer) experts of each layer (0: dense) when MoE layers
                                 differ (a global-budget prune); NULL: every MoE layer has n_expert */
    bool mla;                /* multi-head latent attention (DeepSeek-V2/V3) */
    bool router_sigmoid;     /* experts scored by a sigmoid (DeepSeek-V3, GLM-4.5) instead of a softmax */
    int64_t kv_lora_rank, qk_rope, v_head; /* MLA: latent width, RoPE part of a q/k head, value head */
    int64_t kv_bytes_token;  /* KV cache bytes per token over all layers, as moekit holds it (f32; MLA:
                                the latent and the RoPE key only) */
    int64_t kv_bytes_token_expanded; /* the same with K and V of every head expanded (= kv_bytes_token
                                without MLA) */
    char quant_method[24];   /* a config's quantization_config.quant_method (mk_config_info only); "" = none */
    int64_t sliding_window;  /* 0 = none */
    int64_t n_swa_layers;    /* layers that use it (GPT-OSS: every other one) */
    bool attn_sinks;         /* a sink logit per head (GPT-OSS) */
    bool sparsemixer;        /* Phi-MoE's sparsemixer routing */
    bool rope_longrope;      /* LongRoPE (Phi-MoE): short factors up to longrope_orig positions, long beyond */
    int64_t longrope_orig;
    double short_mscale, long_mscale;
} mk_model_info;

/* Loads a model: an HF checkpoint directory (config.json and safetensors weights, single or
 * sharded) or a .gguf file (llama.cpp's names and metadata for llama/Mixtral, qwen2moe, qwen3moe,
 * olmoe, deepseek2, glm4moe, gpt-oss, phimoe; F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K and MXFP4 tensors). */
mk_status mk_model_load(mk_model **out, const char *dir);
void mk_model_free(mk_model *m);
/* Moves the model's weight files from their read-only file mappings into private memory at the
 * same addresses, backed by transparent huge pages where the kernel has them (decode streams
 * every weight once per token: one TLB miss per 2 MiB instead of per 4 KiB, and the weights no
 * longer depend on the page cache). *bytes = the bytes copied; files it leaves mapped: those
 * under 2 MiB, every file on a kernel with transparent huge pages off, one larger than 90% of
 * the available memory. Reads the files again; on an error (a file changed or cannot be read)
 * the model stays mapped and usable. Do not use with mk_forward_streamed's release option's
 * purpose in mind: a resident model's pages are never dropped. */
mk_status mk_model_make_resident(mk_model *m, size_t *bytes);
const mk_model_info *mk_model_get_info(const mk_model *m);

/* What a config.json describes, without weights (for planning a model not downloaded): the
 * fields of mk_model_info, parameters from the architecture's tensor table. experts_per_layer is
 * NULL. A quantized config (quantization_config) is described, with quant_method set; loading
 * its checkpoint is refused. */
mk_status mk_config_info(const char *config_path, mk_model_info *info);
/* Bytes of weights by dtype name, as a NULL-terminated list of (name, bytes) for printing. */
size_t mk_model_bytes_by_dtype(const mk_model *m, const char **names, int64_t *bytes, size_t cap);
/* Weight bytes one decoded token reads, the denominator of the memory-bandwidth roof: every
 * weight tensor once (the LM head too, tied or not) but the embedding table, of which a token
 * gathers one row; in a MoE layer k of its experts (k × the mean of its experts' bytes, so mixed
 * precision experts count at their average). */
int64_t mk_model_token_bytes(const mk_model *m);
/* Whether layer l has a routed MoE block. */
bool mk_model_layer_is_moe(const mk_model *m, int64_t l);
/* Routed experts layer l has (0 for a dense layer): n_expert, or fewer in a per-layer model, whose
 * layers are padded to n_expert with experts that routing never picks. */
int64_t mk_model_layer_experts(const mk_model *m, int64_t l);

/* ---- observer: what a consumer sees at each MoE block (zero cost when absent) ---- */
typedef struct mk_moe_event {
    int64_t layer;
    size_t n_tok;            /* tokens in this batch */
    size_t pos0;             /* position of the first token in its sequence */
    int64_t d_model, n_expert, k;
    int64_t n_live;          /* experts this layer has (< n_expert in a per-layer model: logits from
                                n_live on belong to padding experts that are never routed to) */
    const float *resid_in;   /* (n_tok, d_model) residual stream entering the MoE sub-block */
    const float *block_in;   /* (n_tok, d_model) after post_attention_layernorm: the router's input */
    const float *router_logits; /* (n_tok, n_expert) */
    const int32_t *expert_ids;  /* (n_tok, k) chosen experts in selection order; -1 = slot unused */
    const float *expert_weights;/* (n_tok, k) weights applied to each chosen expert's output */
    const float *expert_out;    /* (n_tok, k, d_model) each chosen expert's output before weighting */
    const float *block_out;     /* (n_tok, d_model) MoE block output (routed + shared) */
} mk_moe_event;

typedef struct mk_observer {
    void *user;
    /* Called after each MoE block; the pointers are valid during the call only. */
    void (*on_moe)(void *user, const mk_moe_event *ev);
    /* Called after each decoder layer with its output (n_tok, d_model), before the next layer. */
    void (*on_layer)(void *user, int64_t layer, size_t n_tok, const float *hidden);
} mk_observer;

/* ---- routing overrides (applied to the router logits the same way in every command) ---- */
/* The routing policy, applied per token to the router's softmax probabilities p (over the
 * allowed experts) in this order: boosts, selection (top-k, or top-p), skipping, then the
 * architecture's weight rule (renormalise the chosen weights to 1 if the model does). */
typedef struct mk_route_boost {
    int64_t layer, expert;
    float factor;            /* p[expert] *= factor before selection (RICE-style steering) */
} mk_route_boost;

typedef struct mk_route_opts {
    int64_t k;               /* top-k: experts per token; 0 = the model's own */
    float top_p;             /* > 0: top-p routing: the fewest experts whose cumulative p first
                                exceeds top_p (the crossing one included), at most k_max */
    int64_t k_max;           /* cap for top-p; 0 = all experts */
    bool top_p_renorm;       /* top-p only: renormalise the kept weights to sum to 1 (moekit's
                                variant, topp:P[:KMAX]:renorm). Off (the default, as Huang et al.
                                2024): the weights are the raw softmax probabilities */
    bool rank_only;          /* route each token to the single expert of probability rank
                                `rank` (0 = the top one) with weight 1: SCMoE's weak pass */
    int64_t rank;
    float skip_beta;         /* > 0: NAEE dynamic skipping: drop a chosen expert j > 0 when
                                p_j < skip_beta * p_0 (p_0 the top expert's probability) */
    const float *skip_betas; /* (n_layer) per-layer beta (skip:auto), or NULL */
    const uint8_t *mask;     /* (n_layer, n_expert) 1 = allowed; NULL = all */
    const uint8_t *zero;     /* (n_layer, n_expert) 1 = routed as usual but its output is zero, as
                                if its down_proj were zero (the Super Experts paper's removal: the
                                router unchanged); NULL = none */
    const mk_route_boost *boosts;
    size_t n_boosts;
} mk_route_opts;

/* Parses one --route spec into opts (specs compose: call once per spec on the same opts):
 *   topk:K  topp:P[:KMAX][:renorm]  skip:BETA  boost:LAYER:EXPERT:FACTOR  rank:R
 * Storage for boosts is malloc'd into *opts and released by mk_route_opts_clear. mask:FILE and
 * skip:auto are handled by the commands that read those files. */
mk_status mk_route_parse(mk_route_opts *opts, const char *spec);
void mk_route_opts_clear(mk_route_opts *opts);
/* The route syntax, for error messages and --help. */
extern const char mk_route_syntax[];

/* ---- contexts ---- */
/* n_ctx: the most tokens the sequence may hold (KV cache capacity);
 * max_batch: the most tokens one mk_ctx_forward call may take (0 = n_ctx). */
mk_status mk_ctx_new(mk_ctx **out, const mk_model *m, size_t n_ctx, size_t max_batch);
void mk_ctx_free(mk_ctx *c);
/* Forgets the sequence (position back to 0). */
void mk_ctx_reset(mk_ctx *c);
size_t mk_ctx_pos(const mk_ctx *c);
/* Forgets the tokens after the first pos (pos <= mk_ctx_pos): the next forward continues from
 * there, reusing the KV cache of the kept prefix (e.g. one shared context, several continuations). */
void mk_ctx_truncate(mk_ctx *c, size_t pos);
void mk_ctx_set_observer(mk_ctx *c, const mk_observer *obs);  /* NULL to remove; copied */
mk_status mk_ctx_set_route(mk_ctx *c, const mk_route_opts *r);  /* NULL for the default; copied */
/* Average number of experts actually used per token in MoE layer l since the context was made
 * (or reset_stats); 0 for dense layers. */
double mk_ctx_experts_per_token(const mk_ctx *c, int64_t l);
void mk_ctx_reset_route_stats(mk_ctx *c);
/* After every layer the forward pass checks that the layer's output (the residual stream, n_tok ×
 * d_model values) is finite, and stops with MK_ERR_NONFINITE naming the first layer and token
 * where a NaN or infinity appears (non-finite weights, say): on by default, at a cost of one pass
 * over the layer's output. Off, non-finite values propagate to the logits as in transformers. */
void mk_ctx_set_check_finite(mk_ctx *c, bool on);

typedef enum mk_logits_mode {
    MK_LOGITS_NONE = 0,  /* compute no logits */
    MK_LOGITS_LAST,      /* logits of the last token only: (vocab) */
    MK_LOGITS_ALL        /* logits of every token: (n, vocab) */
} mk_logits_mode;

/* Appends n tokens to the sequence and runs them through the model (a batched prefill when
 * n > 1, a KV-cached decode step when n == 1). Writes logits as `mode` says into `logits`.
 * MK_ERR_NONFINITE (see mk_ctx_set_check_finite) leaves the context unusable until reset. */
mk_status mk_ctx_forward(mk_ctx *c, const int32_t *tokens, size_t n, mk_logits_mode mode, float *logits);


/* ---- layer streaming (calibration over models larger than RAM) ---- */
typedef struct mk_stream_opts {
    bool release;  /* drop each layer's weight pages once every sequence has passed it, and
                      prefetch the next layer's: only about one layer's weights stay resident */
    void *user;
    /* Called after each sequence at each layer: tokens done at `layer` out of `total`. */
    void (*on_progress)(void *user, int64_t layer, size_t done, size_t total);
} mk_stream_opts;

/* Runs n_seq independent sequences (tokens: their concatenation; seq_len: (n_seq) lengths, each
 * at most the context's n_ctx) through the model layer by layer: all sequences through layer l
 * before any enters layer l+1. Holds the residual stream of every token (sum(seq_len) × d_model
 * floats) and the context's run state; computes no logits. The context's observer sees, for each
 * layer, the same events with the same values as mk_ctx_forward over each sequence from position
 * 0 would give, but ordered by layer, then sequence. The context's sequence is reset. o: NULL for
 * the defaults. */
mk_status mk_forward_streamed(mk_ctx *c, const int32_t *tokens, const size_t *seq_len, size_t n_seq,
                              const mk_stream_opts *o);

/* ---- sampling ---- */
#ifndef MOEKIT_SAMPLER_DEFINED
#define MOEKIT_SAMPLER_DEFINED
typedef struct mk_sampler_opts {
    float temp;      /* 0 = greedy (argmax, lowest id on ties) */
    int64_t top_k;   /* 0 = off */
    float top_p;     /* 1 = off */
    uint64_t seed;
} mk_sampler_opts;

typedef struct mk_sampler mk_sampler;
mk_status mk_sampler_new(mk_sampler **out, int64_t vocab, const mk_sampler_opts *o);
void mk_sampler_free(mk_sampler *s);
/* Picks the next token from logits (vocab). logits are not modified. */
int32_t mk_sampler_pick(mk_sampler *s, const float *logits);
/* SCMoE (self-contrast decoding): turns the strong pass's logits into contrast scores in place,
 *   score_v = (1+beta) strong_v - beta weak_v   where strong_v >= log(alpha) + max strong,
 *   -inf elsewhere. */
void mk_scmoe_scores(float *strong, const float *weak, int64_t vocab, float alpha, float beta);
#endif

#ifdef __cplusplus
}
#endif
#endif
