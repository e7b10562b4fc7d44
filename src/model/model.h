/* Internal model description: the architecture (from config.json), the weights (views into the
 * safetensors mapping, one struct per layer, experts addressable one by one) and the forward
 * pass's entry points. */
#ifndef MK_MODEL_INTERNAL_H
#define MK_MODEL_INTERNAL_H

#include "format/safetensors.h"
#include "moekit/model.h"
#include "tensor/tensor.h"

typedef enum mk_arch {
    MK_ARCH_MIXTRAL,
    MK_ARCH_QWEN2_MOE,
    MK_ARCH_QWEN3_MOE,
    MK_ARCH_OLMOE,
    MK_ARCH_DEEPSEEK_V2, /* DeepseekV2ForCausalLM (V2, V2-Lite): MLA, softmax routing */
    MK_ARCH_DEEPSEEK_V3, /* DeepseekV3ForCausalLM (V3, R1, Kimi-K2, Moonlight): MLA, sigmoid + bias routing */
    MK_ARCH_GLM4_MOE,    /* Glm4MoeForCausalLM (GLM-4.5, 4.6, 4.7, 4.5-Air): GQA with partial RoPE, V3's routing */
    MK_ARCH_GPT_OSS,     /* GptOssForCausalLM (gpt-oss-20b, -120b): sinks, alternating sliding/full attention, biased
                            router and experts, clamped SwiGLU, softmax over the top-k logits */
    MK_ARCH_PHIMOE,      /* PhimoeForCausalLM (Phi-3.5-MoE): LayerNorm with biases, attention and LM-head biases,
                            LongRoPE, sparsemixer routing */
} mk_arch;

typedef enum mk_qk_norm {
    MK_QKNORM_NONE,
    MK_QKNORM_HEAD,   /* Qwen3: RMSNorm over each head's d_head values, weight (d_head) */
    MK_QKNORM_FULL,   /* OLMoE: RMSNorm over the whole projection, weight (n_head·d_head) */
} mk_qk_norm;

/* Everything the forward pass needs to know from config.json. */
typedef struct mk_config {
    mk_arch arch;
    char arch_name[64];
    char model_type[32];
    int64_t vocab, d_model, n_layer, n_head, n_kv_head, d_head;
    int64_t n_expert, k_active, d_ff_expert, d_ff_dense, d_ff_shared;
    float rms_eps, rope_theta;
    /* RoPE scaling (rope_parameters / rope_scaling in config.json): none, or YaRN as transformers'
     * _compute_yarn_parameters computes it (research/formats.md §10); see mk_rope_inv_freq. */
    bool yarn;
    double yarn_factor;          /* f */
    int64_t yarn_orig_ctx;       /* original_max_position_embeddings */
    double yarn_beta_fast, yarn_beta_slow;
    bool yarn_truncate;          /* floor/ceil the correction range (default true) */
    double yarn_mscale, yarn_mscale_all_dim; /* 0 = not given */
    float rope_attn_factor;      /* cos/sin are multiplied by it: YaRN's attention factor, else 1 */
    double rope_partial;         /* partial_rotary_factor as the config gives it (0 = absent) */
    int64_t rope_dim;            /* rotary dimensions of a head (the first ones): d_head, MLA's qk_rope, or
                                    d_head · partial_rotary_factor */
    bool rope_interleave;        /* rotate pairs (2i, 2i+1) (DeepSeek) instead of halves (i, i + dim/2) */
    float attn_scale;            /* the softmax scale: d_head^-0.5, times YaRN's m² where mscale_all_dim is set (MLA) */
    /* Multi-head latent attention (DeepSeek-V2/V3, research/formats.md §5); d_head = qk_nope + qk_rope */
    bool mla;
    int64_t q_lora_rank;         /* 0: a plain q_proj */
    int64_t kv_lora_rank;        /* r, the cached latent's width */
    int64_t qk_nope, qk_rope;    /* the parts of a q/k head without and with RoPE */
    int64_t v_head;              /* value head dim (d_head where attention is not MLA) */
    bool tie_embed;
    bool norm_topk;       /* renormalise the top-k weights to sum to 1 */
    /* Routing beyond softmax top-k: sigmoid scores with a selection bias (DeepSeek-V3), experts in
     * n_group groups of which topk_group are searched (group score: the maximum, or with
     * group_top2 the sum of the top two), and a factor on the final weights. */
    bool sigmoid;
    bool sel_bias;        /* e_score_correction_bias: added to the scores for selection only */
    int64_t n_group, topk_group; /* 1, 1 = no groups */
    bool group_top2;
    float routed_scale;   /* routed_scaling_factor (1 = none) */
    bool shared_expert;   /* a shared expert per MoE layer (Qwen2-MoE, DeepSeek) */
    bool shared_gated;    /* Qwen2-MoE: its output is scaled by sigmoid(shared_expert_gate · x) */
    int attn_bias;        /* -1 = not stated (follow the file), 0 = none, 1 = q/k/v biases */
    bool o_bias;          /* o_proj has a bias too (attention_bias: true in Qwen3-MoE and OLMoE) */
    mk_qk_norm qk_norm;
    float clip_qkv;       /* 0 = none */
    int64_t sliding_window; /* 0 = full causal attention */
    bool *layer_swa;      /* (n_layer) which layers use sliding_window when only some do (GPT-OSS's
                             layer_types); NULL: every layer does (when sliding_window > 0) */
    bool attn_sinks;      /* a learned logit per head joins each softmax over the keys (GPT-OSS) */
    bool router_logit_bias; /* the router has a bias, added to its logits (GPT-OSS) */
    bool expert_bias;     /* the routed experts' gate, up and down have biases (GPT-OSS) */
    bool swiglu_oai;      /* GPT-OSS's clamped SwiGLU: g = min(gate, limit), u = clamp(up, ±limit),
                             (u + 1)·g·sigmoid(alpha·g) */
    float swiglu_alpha, swiglu_limit;
    bool layernorm;       /* the block and final norms are LayerNorm with a bias (eps rms_eps), not RMSNorm (Phi-MoE) */
    bool lm_head_bias;    /* the LM head has a bias (Phi-MoE's lm_head_bias) */
    float sparsemixer_eps; /* > 0: sparsemixer routing at inference with this epsilon (Phi-MoE's router_jitter_noise):
                              expert i_j = the best of those not yet taken, weight = softmax at i_j over the
                              experts within 2·eps (relative) of its logit; no renormalisation */
    /* LongRoPE (Phi-MoE, research/formats.md §7): inv_freq[i] = 1 / (factor[i] · theta^(2i/d)), cos/sin times
     * mscale; the short set up to longrope_orig positions, the long set beyond. A context chooses
     * one set for all its positions by its size (mk_ctx_new: n_ctx > longrope_orig → long), as
     * llama.cpp does; transformers chooses per forward by its length. */
    bool longrope;
    float *rope_short, *rope_long; /* (rope_dim/2) each, owned */
    float short_mscale, long_mscale;
    int64_t longrope_orig;
    bool *layer_moe;      /* (n_layer) */
    int64_t *n_expert_layer; /* (n_layer) experts of each MoE layer (0 for dense layers) when they differ
                                (moekit_experts_per_layer, written by a global-budget prune); NULL: all
                                have n_expert, which is then the largest count */
    int32_t bos_id, eos_id;
    int64_t n_ctx_train;  /* max_position_embeddings / <arch>.context_length; 0 = not stated */
    int64_t n_mtp;        /* num_nextn_predict_layers: multi-token-prediction layers stored after the last layer (not run) */
    char quant_method[24]; /* quantization_config.quant_method ("fp8", ...): weights moekit cannot read; "" = none */
} mk_config;

/* True for a tensor name a checkpoint may hold that the forward pass does not need, and that the
 * loader therefore accepts unused: rotary `*.rotary_emb.inv_freq` buffers (recomputed from
 * rope_theta), multi-token-prediction modules (`mtp.*`, and `model.layers.L.*` for the
 * num_nextn_predict_layers layers after the last). Every other tensor the loader does not read
 * is an error. */
bool mk_tensor_known_unused(const char *name, const mk_config *c);

/* The RoPE inverse frequencies of a head of `dim` rotary dimensions, inv[0 .. dim/2), in f32 as
 * transformers computes them: theta^(-2i/dim), or YaRN's blend of interpolated and extrapolated
 * frequencies when cfg->yarn, or LongRoPE's (the long factors when `long_rope`). cos/sin are then
 * multiplied by mk_rope_mscale. */
void mk_rope_inv_freq(const mk_config *cfg, int64_t dim, bool long_rope, float *inv);
/* The factor on cos/sin: YaRN's attention factor, LongRoPE's short or long mscale, else 1. */
float mk_rope_mscale(const mk_config *cfg, bool long_rope);
/* Whether a context of n_ctx positions uses LongRoPE's long factors. */
bool mk_rope_long(const mk_config *cfg, size_t n_ctx);

/* The fields every reader sets alike once d_head is known, for attention without MLA and plain
 * top-k routing: rope_dim = v_head = d_head, attn_scale = d_head^-0.5, no groups, no weight factor.
 * Readers then change what their architecture differs in. */
void mk_config_defaults(mk_config *c);

/* MLA's softmax scale as transformers computes it (yarn_apply_mscale): d_head^-0.5, times m² with
 * m = 0.1·mscale_all_dim·ln(factor) + 1 under YaRN with mscale_all_dim. */
void mk_config_mla_scale(mk_config *c);

/* n_group / topk_group against the experts: equal groups, enough experts in the searched ones for
 * k, two per group for a top-2 group score; an error naming `path` otherwise. */
mk_status mk_config_check_groups(const char *path, const mk_config *cfg);

/* Parses config.json text; `path` is for messages. cfg->layer_moe is allocated. */
mk_status mk_config_parse(mk_config *cfg, const char *json_text, const char *path);
void mk_config_free(mk_config *cfg);

/* One SwiGLU MLP: down(silu(gate·x) ⊙ up·x). gate, up (d_ff, d_model); down (d_model, d_ff).
 * gate_b, up_b (d_ff) and down_b (d_model): F32 biases (GPT-OSS's experts), or absent. */
typedef struct mk_mlp_w {
    mk_tensor gate, up, down;
    mk_tensor gate_b, up_b, down_b;
} mk_mlp_w;

/* The per-layer sliding window of layer l: the config's window where the layer uses it, else 0. */
int64_t mk_layer_window(const mk_config *c, int64_t l);

/* The experts' activation over n values in place: g[i] = act(g[i], u[i]), SwiGLU silu(g)·u, or
 * GPT-OSS's clamped form where the config says so. One helper for the forward pass and every
 * method that evaluates an expert by itself. */
void mk_expert_act(const mk_config *c, float *g, const float *u, size_t n);

/* Expert e of layer l on n rows x (n, d_model), by itself (no routing weight): g (n, d_ff) = the
 * activation (gate and up products with their biases, then mk_expert_act; u (n, d_ff) is scratch),
 * and when out is given out (n, d_model) = down·g + down's bias. The one expert evaluation for the
 * methods that score or compare experts outside the forward pass. */
struct mk_model;
void mk_expert_forward(const struct mk_model *m, int64_t l, int64_t e, const float *x, size_t n, float *g, float *u, float *out);

typedef struct mk_layer_w {
    mk_tensor attn_norm, ffn_norm;           /* (d_model) */
    mk_tensor attn_norm_b, ffn_norm_b;       /* (d_model) LayerNorm biases (Phi-MoE), or absent */
    mk_tensor wq, wk, wv, wo;                /* q (n_head·d_head, d_model), k/v (n_kv_head·d_head, d_model), o (d_model, n_head·d_head) */
    mk_tensor bq, bk, bv;                    /* biases or absent */
    mk_tensor bo;                            /* (d_model) o_proj bias or absent; always F32 (converted at load) */
    mk_tensor q_norm, k_norm;                /* per mk_qk_norm, or absent */
    /* MLA: q_a (q_lora, d_model) + q_a_norm + q_b (n_head·d_head, q_lora), or wq; kv_a (r + qk_rope,
     * d_model), kv_a_norm (r), kv_b (n_head·(qk_nope + v_head), r); wo (d_model, n_head·v_head).
     * k_b (n_head, r, qk_nope): each head's key rows of kv_b transposed, made at load (owned), so
     * that a query is absorbed into the latent space by one product per head. */
    mk_tensor q_a, q_a_norm, q_b, kv_a, kv_a_norm, kv_b, k_b;
    mk_tensor v_b;                           /* (n_head, v_head, r) from a GGUF that splits kv_b (llama.cpp's
                                                attn_v_b, with k_b its attn_k_b; kv_b absent); else absent
                                                and the value rows are read from kv_b */
    bool is_moe;
    mk_tensor router;                        /* (n_expert, d_model); rows from n_live on are zero */
    mk_tensor router_bias;                   /* (n_expert) F32 selection bias (DeepSeek-V3), or absent */
    mk_tensor router_b;                      /* (n_expert) F32 bias added to the router logits (GPT-OSS), or absent */
    mk_tensor sinks;                         /* (n_head) F32 attention sink logits (GPT-OSS), or absent */
    mk_mlp_w *experts;                       /* (n_expert) views; into fused tensors where stored so;
                                                absent (data NULL) from n_live on */
    int64_t n_live;                          /* experts this layer has: n_expert, or fewer in a
                                                per-layer model (the rest are masked at routing) */
    mk_mlp_w shared;                         /* the shared expert(s) (Qwen2-MoE, DeepSeek: n_shared fused in one MLP) */
    mk_tensor shared_gate;                   /* (1, d_model) Qwen2-MoE */
    mk_mlp_w dense;                          /* dense layers */
} mk_layer_w;

struct mk_gguf;

struct mk_model {
    mk_config cfg;
    mk_model_info info;
    char *dir;
    mk_st_set *st;        /* tensors by HF name: the safetensors files, or a table of views into a GGUF */
    struct mk_gguf *gguf; /* the GGUF file the views point into (NULL for HF checkpoints) */
    void **owned;         /* (n_owned) buffers views point into (un-permuted GGUF q/k rows) */
    size_t n_owned;
    mk_tensor embed;      /* (vocab, d_model) */
    mk_tensor final_norm; /* (d_model) */
    mk_tensor final_norm_b; /* (d_model) LayerNorm bias (Phi-MoE), or absent */
    mk_tensor lm_head;    /* (vocab, d_model); = embed when tied */
    mk_tensor lm_head_b;  /* (vocab) F32 LM-head bias (Phi-MoE), or absent */
    mk_layer_w *layers;   /* (n_layer) */
    bool fused_experts;   /* the file stores experts as gate_up_proj/down_proj stacks */
    bool experts_repacked; /* the routed experts were copied out of the files into owned buffers (GPT-OSS's HF
                              layout, gptoss.c): most of the files' bytes are no longer read */
    uint8_t *live;        /* (n_layer, n_expert) 1 = the expert exists; NULL when every MoE layer has
                             n_expert (a per-layer model's smaller layers are padded to n_expert) */
};

/* `bytes` of zeroed memory the model owns (freed with it), or NULL when out of memory: the one way
 * loaders keep a buffer that tensor views point into. */
void *mk_model_owned(mk_model *m, size_t bytes);

/* Advises the kernel about one tensor's pages when they lie in one of the model's file mappings
 * (never a heap copy: MADV_DONTNEED would zero it): willneed = prefetch, else drop them from this
 * process. */
void mk_model_advise_tensor(const mk_model *m, const mk_tensor *t, bool willneed);

/* Advises the kernel about the weight pages of layer l (l = -1: embeddings, final norm, LM
 * head): willneed = prefetch, else drop them from this process (they are re-read on use). */
void mk_model_advise_weights(const mk_model *m, int64_t l, bool willneed);

/* Layer l's router logits out (n, n_expert) for n rows x (n, d_model) of block input (already
 * normed): the router's product plus its bias where it has one (GPT-OSS), as transformers' router
 * returns them. The one place router logits are made. */
void mk_router_logits(const mk_model *m, int64_t l, const float *x, size_t n, float *out);

/* Runs layer l's MoE block (router, the context's routing policy, experts, shared expert) on n
 * rows x (n, d_model) of block input (already normed) and writes the block output (n, d_model).
 * mask_row (n_expert) overrides the context's expert mask for this call (NULL: keep it). Uses the
 * context's buffers, not its KV cache; no observer is called. n <= the context's max_batch. */
mk_status mk_ctx_moe_block(mk_ctx *c, int64_t l, const float *x, size_t n, const uint8_t *mask_row, float *out);

/* GPT-OSS HF checkpoints (gptoss.c): their fused expert tensors (float gate_up_proj/down_proj, or
 * MXFP4 *_blocks and *_scales) become per-expert views the model owns, under the table's names; a no-op
 * for other architectures and for files that hold the per-expert names already. */
mk_status mk_gptoss_hf_experts(mk_model *m);

/* GGUF models (gguf_load.c): reads the file at path into m->gguf, fills m->cfg from its metadata
 * (llama.cpp's keys) and m->st with HF-named views of its tensors, so the safetensors loader's
 * checks and the forward pass apply unchanged. */
mk_status mk_gguf_model_open(mk_model *m, const char *path);
/* The GGUF name of an HF tensor name of a model of config c (for messages); buf on success, else hf itself. */
const char *mk_gguf_name_of(const mk_config *c, const char *hf, char *buf, size_t cap);

#endif
