/* The weight tables of the architectures (research/formats.md §1-§5, GGUF names §12). */
#include "arch.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

static mk_presence p_qkv_bias(const mk_config *c) { return c->attn_bias > 0 ? MK_REQUIRED : c->attn_bias < 0 ? MK_OPTIONAL : MK_ABSENT; }
static mk_presence p_o_bias(const mk_config *c) { return c->o_bias ? MK_REQUIRED : MK_ABSENT; }
static mk_presence p_norm_head(const mk_config *c) { return c->qk_norm == MK_QKNORM_HEAD ? MK_REQUIRED : MK_ABSENT; }
static mk_presence p_norm_full(const mk_config *c) { return c->qk_norm == MK_QKNORM_FULL ? MK_REQUIRED : MK_ABSENT; }
static mk_presence p_shared(const mk_config *c) { return c->shared_expert ? MK_REQUIRED : MK_ABSENT; }
static mk_presence p_untied(const mk_config *c) { return c->tie_embed ? MK_ABSENT : MK_REQUIRED; }
static mk_presence p_q_plain(const mk_config *c) { return c->q_lora_rank ? MK_ABSENT : MK_REQUIRED; }
static mk_presence p_q_lora(const mk_config *c) { return c->q_lora_rank ? MK_REQUIRED : MK_ABSENT; }
static mk_presence p_sel_bias(const mk_config *c) { return c->sel_bias ? MK_REQUIRED : MK_ABSENT; }
static mk_presence p_lm_bias(const mk_config *c) { return c->lm_head_bias ? MK_REQUIRED : MK_ABSENT; }

#define LW(f) offsetof(mk_layer_w, f)
#define M_(f) offsetof(mk_model, f)
#define X_(f) offsetof(mk_mlp_w, f)
#define R (MK_ROLE_MATRIX)

/* Rows the architectures here share: embeddings, norms, grouped-query attention (biases and q/k
 * norms as the config says), a dense layer's MLP, the final norm and the LM head. */
#define FIRST_ROWS {"model.embed_tokens.weight", "token_embd.weight", MK_SCOPE_FIRST, MK_DIM_VOCAB, MK_DIM_MODEL, MK_FILL_RAND, R, NULL, M_(embed)}
#define NORM_ROWS \
    {"model.layers.{L}.input_layernorm.weight", "blk.{L}.attn_norm.weight", MK_SCOPE_LAYER, MK_DIM_MODEL, MK_DIM_NONE, MK_FILL_ONES, 0, NULL, LW(attn_norm)}, \
    {"model.layers.{L}.post_attention_layernorm.weight", "blk.{L}.ffn_norm.weight", MK_SCOPE_LAYER, MK_DIM_MODEL, MK_DIM_NONE, MK_FILL_ONES, 0, NULL, LW(ffn_norm)}
#define GQA_ROWS \
    {"model.layers.{L}.self_attn.q_proj.weight", "blk.{L}.attn_q.weight", MK_SCOPE_LAYER, MK_DIM_Q, MK_DIM_MODEL, MK_FILL_RAND, R | MK_ROLE_PERM_Q, NULL, LW(wq)}, \
    {"model.layers.{L}.self_attn.k_proj.weight", "blk.{L}.attn_k.weight", MK_SCOPE_LAYER, MK_DIM_KV, MK_DIM_MODEL, MK_FILL_RAND, R | MK_ROLE_PERM_K, NULL, LW(wk)}, \
    {"model.layers.{L}.self_attn.v_proj.weight", "blk.{L}.attn_v.weight", MK_SCOPE_LAYER, MK_DIM_KV, MK_DIM_MODEL, MK_FILL_RAND, R, NULL, LW(wv)}, \
    {"model.layers.{L}.self_attn.o_proj.weight", "blk.{L}.attn_output.weight", MK_SCOPE_LAYER, MK_DIM_MODEL, MK_DIM_ATT_OUT, MK_FILL_RAND, R, NULL, LW(wo)}, \
    {"model.layers.{L}.self_attn.q_proj.bias", "blk.{L}.attn_q.bias", MK_SCOPE_LAYER, MK_DIM_Q, MK_DIM_NONE, MK_FILL_ZEROS, MK_ROLE_PERM_Q, p_qkv_bias, LW(bq)}, \
    {"model.layers.{L}.self_attn.k_proj.bias", "blk.{L}.attn_k.bias", MK_SCOPE_LAYER, MK_DIM_KV, MK_DIM_NONE, MK_FILL_ZEROS, MK_ROLE_PERM_K, p_qkv_bias, LW(bk)}, \
    {"model.layers.{L}.self_attn.v_proj.bias", "blk.{L}.attn_v.bias", MK_SCOPE_LAYER, MK_DIM_KV, MK_DIM_NONE, MK_FILL_ZEROS, 0, p_qkv_bias, LW(bv)}, \
    {"model.layers.{L}.self_attn.o_proj.bias", "blk.{L}.attn_output.bias", MK_SCOPE_LAYER, MK_DIM_MODEL, MK_DIM_NONE, MK_FILL_ZEROS, MK_ROLE_F32, p_o_bias, LW(bo)}, \
    {"model.layers.{L}.self_attn.q_norm.weight", "blk.{L}.attn_q_norm.weight", MK_SCOPE_LAYER, MK_DIM_HEAD, MK_DIM_NONE, MK_FILL_ONES, 0, p_norm_head, LW(q_norm)}, \
    {"model.layers.{L}.self_attn.k_norm.weight", "blk.{L}.attn_k_norm.weight", MK_SCOPE_LAYER, MK_DIM_HEAD, MK_DIM_NONE, MK_FILL_ONES, 0, p_norm_head, LW(k_norm)}, \
    {"model.layers.{L}.self_attn.q_norm.weight", "blk.{L}.attn_q_norm.weight", MK_SCOPE_LAYER, MK_DIM_Q, MK_DIM_NONE, MK_FILL_ONES, 0, p_norm_full, LW(q_norm)}, \
    {"model.layers.{L}.self_attn.k_norm.weight", "blk.{L}.attn_k_norm.weight", MK_SCOPE_LAYER, MK_DIM_KV, MK_DIM_NONE, MK_FILL_ONES, 0, p_norm_full, LW(k_norm)}
#define DENSE_ROWS \
    {"model.layers.{L}.mlp.gate_proj.weight", "blk.{L}.ffn_gate.weight", MK_SCOPE_DENSE, MK_DIM_FF_DENSE, MK_DIM_MODEL, MK_FILL_RAND, R, NULL, LW(dense.gate)}, \
    {"model.layers.{L}.mlp.up_proj.weight", "blk.{L}.ffn_up.weight", MK_SCOPE_DENSE, MK_DIM_FF_DENSE, MK_DIM_MODEL, MK_FILL_RAND, R, NULL, LW(dense.up)}, \
    {"model.layers.{L}.mlp.down_proj.weight", "blk.{L}.ffn_down.weight", MK_SCOPE_DENSE, MK_DIM_MODEL, MK_DIM_FF_DENSE, MK_FILL_RAND, R, NULL, LW(dense.down)}
#define ATTENTION_ROWS NORM_ROWS, GQA_ROWS, DENSE_ROWS
#define ROUTER_ROW {"model.layers.{L}.{M}.gate.weight", "blk.{L}.ffn_gate_inp.weight", MK_SCOPE_MOE, MK_DIM_EXPERTS, MK_DIM_MODEL, MK_FILL_RAND, MK_ROLE_ROUTER, NULL, LW(router)}
#define EXPERT_ROWS(g, u, d)                                                                                                                                    \
    {"model.layers.{L}.{M}.experts.{E}." g ".weight", "blk.{L}.ffn_gate_exps.weight", MK_SCOPE_EXPERT, MK_DIM_FF_EXPERT, MK_DIM_MODEL, MK_FILL_RAND, R, NULL, X_(gate)}, \
    {"model.layers.{L}.{M}.experts.{E}." u ".weight", "blk.{L}.ffn_up_exps.weight", MK_SCOPE_EXPERT, MK_DIM_FF_EXPERT, MK_DIM_MODEL, MK_FILL_RAND, R, NULL, X_(up)},     \
    {"model.layers.{L}.{M}.experts.{E}." d ".weight", "blk.{L}.ffn_down_exps.weight", MK_SCOPE_EXPERT, MK_DIM_MODEL, MK_DIM_FF_EXPERT, MK_FILL_RAND, R, NULL, X_(down)}
#define LAST_ROWS                                                                                                                              \
    {"model.norm.weight", "output_norm.weight", MK_SCOPE_LAST, MK_DIM_MODEL, MK_DIM_NONE, MK_FILL_ONES, 0, NULL, M_(final_norm)},              \
    {"lm_head.weight", "output.weight", MK_SCOPE_LAST, MK_DIM_VOCAB, MK_DIM_MODEL, MK_FILL_RAND, R, p_untied, M_(lm_head)}

/* DeepSeek-V3's MoE block beside the router and the routed experts: the selection bias, and the
 * ungated shared experts (n_shared of them as one MLP) */
#define SEL_BIAS_ROW \
    {"model.layers.{L}.{M}.gate.e_score_correction_bias", "blk.{L}.exp_probs_b.bias", MK_SCOPE_MOE, MK_DIM_EXPERTS, MK_DIM_NONE, MK_FILL_ZEROS, MK_ROLE_F32 | MK_ROLE_ROUTER_BIAS, p_sel_bias, LW(router_bias)}
#define SHARED_EXPERTS_ROWS \
    {"model.layers.{L}.mlp.shared_experts.gate_proj.weight", "blk.{L}.ffn_gate_shexp.weight", MK_SCOPE_MOE, MK_DIM_FF_SHARED, MK_DIM_MODEL, MK_FILL_RAND, R, p_shared, LW(shared.gate)}, \
    {"model.layers.{L}.mlp.shared_experts.up_proj.weight", "blk.{L}.ffn_up_shexp.weight", MK_SCOPE_MOE, MK_DIM_FF_SHARED, MK_DIM_MODEL, MK_FILL_RAND, R, p_shared, LW(shared.up)}, \
    {"model.layers.{L}.mlp.shared_experts.down_proj.weight", "blk.{L}.ffn_down_shexp.weight", MK_SCOPE_MOE, MK_DIM_MODEL, MK_DIM_FF_SHARED, MK_FILL_RAND, R, p_shared, LW(shared.down)}

static const mk_role mixtral_roles[] = {FIRST_ROWS, ATTENTION_ROWS, ROUTER_ROW, EXPERT_ROWS("w1", "w3", "w2"), LAST_ROWS};
static const mk_role qwen2_moe_roles[] = {
    FIRST_ROWS, ATTENTION_ROWS, ROUTER_ROW, EXPERT_ROWS("gate_proj", "up_proj", "down_proj"),
    {"model.layers.{L}.mlp.shared_expert.gate_proj.weight", "blk.{L}.ffn_gate_shexp.weight", MK_SCOPE_MOE, MK_DIM_FF_SHARED, MK_DIM_MODEL, MK_FILL_RAND, R, p_shared, LW(shared.gate)},
    {"model.layers.{L}.mlp.shared_expert.up_proj.weight", "blk.{L}.ffn_up_shexp.weight", MK_SCOPE_MOE, MK_DIM_FF_SHARED, MK_DIM_MODEL, MK_FILL_RAND, R, p_shared, LW(shared.up)},
    {"model.layers.{L}.mlp.shared_expert.down_proj.weight", "blk.{L}.ffn_down_shexp.weight", MK_SCOPE_MOE, MK_DIM_MODEL, MK_DIM_FF_SHARED, MK_FILL_RAND, R, p_shared, LW(shared.down)},
    /* HF (1, d_model); llama.cpp stores it as a vector of d_model */
    {"model.layers.{L}.mlp.shared_expert_gate.weight", "blk.{L}.ffn_gate_inp_shexp.weight", MK_SCOPE_MOE, MK_DIM_ONE, MK_DIM_MODEL, MK_FILL_RAND, MK_ROLE_GGUF_VECTOR, p_shared, LW(shared_gate)},
    LAST_ROWS};
/* Qwen3-MoE and OLMoE differ in the shape of their q/k norms, which the config decides */
static const mk_role qwen3_moe_roles[] = {FIRST_ROWS, ATTENTION_ROWS, ROUTER_ROW, EXPERT_ROWS("gate_proj", "up_proj", "down_proj"), LAST_ROWS};
/* DeepSeek-V2/V3 (formats.md §5): multi-head latent attention, dense layers first, a router (with
 * V3's selection bias), routed experts and ungated shared experts; GGUF names are llama.cpp's
 * deepseek2 ones. */
static const mk_role deepseek_roles[] = {
    FIRST_ROWS, NORM_ROWS,
    {"model.layers.{L}.self_attn.q_proj.weight", "blk.{L}.attn_q.weight", MK_SCOPE_LAYER, MK_DIM_Q, MK_DIM_MODEL, MK_FILL_RAND, R, p_q_plain, LW(wq)},
    {"model.layers.{L}.self_attn.q_a_proj.weight", "blk.{L}.attn_q_a.weight", MK_SCOPE_LAYER, MK_DIM_Q_LORA, MK_DIM_MODEL, MK_FILL_RAND, R, p_q_lora, LW(q_a)},
    {"model.layers.{L}.self_attn.q_a_layernorm.weight", "blk.{L}.attn_q_a_norm.weight", MK_SCOPE_LAYER, MK_DIM_Q_LORA, MK_DIM_NONE, MK_FILL_ONES, 0, p_q_lora, LW(q_a_norm)},
    {"model.layers.{L}.self_attn.q_b_proj.weight", "blk.{L}.attn_q_b.weight", MK_SCOPE_LAYER, MK_DIM_Q, MK_DIM_Q_LORA, MK_FILL_RAND, R, p_q_lora, LW(q_b)},
    {"model.layers.{L}.self_attn.kv_a_proj_with_mqa.weight", "blk.{L}.attn_kv_a_mqa.weight", MK_SCOPE_LAYER, MK_DIM_KV_A, MK_DIM_MODEL, MK_FILL_RAND, R, NULL, LW(kv_a)},
    {"model.layers.{L}.self_attn.kv_a_layernorm.weight", "blk.{L}.attn_kv_a_norm.weight", MK_SCOPE_LAYER, MK_DIM_KV_LORA, MK_DIM_NONE, MK_FILL_ONES, 0, NULL, LW(kv_a_norm)},
    {"model.layers.{L}.self_attn.kv_b_proj.weight", "blk.{L}.attn_kv_b.weight", MK_SCOPE_LAYER, MK_DIM_KV_B, MK_DIM_KV_LORA, MK_FILL_RAND, R | MK_ROLE_MLA_KV_B, NULL, LW(kv_b)},
    {"model.layers.{L}.self_attn.o_proj.weight", "blk.{L}.attn_output.weight", MK_SCOPE_LAYER, MK_DIM_MODEL, MK_DIM_ATT_OUT, MK_FILL_RAND, R, NULL, LW(wo)},
    DENSE_ROWS, ROUTER_ROW,
    SEL_BIAS_ROW, EXPERT_ROWS("gate_proj", "up_proj", "down_proj"), SHARED_EXPERTS_ROWS, LAST_ROWS};

/* GLM-4.5/4.6/4.7 (formats-2026.md §1): grouped-query attention (q/k/v biases, per-head q/k norms
 * when use_qk_norm) and DeepSeek-V3's MoE block; llama.cpp's glm4moe names its FFN norm
 * post_attention_norm. */
static const mk_role glm4_moe_roles[] = {
    FIRST_ROWS,
    {"model.layers.{L}.input_layernorm.weight", "blk.{L}.attn_norm.weight", MK_SCOPE_LAYER, MK_DIM_MODEL, MK_DIM_NONE, MK_FILL_ONES, 0, NULL, LW(attn_norm)},
    {"model.layers.{L}.post_attention_layernorm.weight", "blk.{L}.post_attention_norm.weight", MK_SCOPE_LAYER, MK_DIM_MODEL, MK_DIM_NONE, MK_FILL_ONES, 0, NULL, LW(ffn_norm)},
    GQA_ROWS, DENSE_ROWS, ROUTER_ROW, SEL_BIAS_ROW, EXPERT_ROWS("gate_proj", "up_proj", "down_proj"), SHARED_EXPERTS_ROWS, LAST_ROWS};

/* GPT-OSS (formats-2026.md §2): grouped-query attention with biases on q/k/v/o and a sink logit per
 * head, a biased router and experts with biases; llama.cpp's gpt-oss names its FFN norm
 * post_attention_norm. The expert rows name moekit's per-expert views of the HF file's fused
 * tensors (MK_ROLE_HF_FUSED); llama.cpp stacks the biases as (n_expert, rows). */
#define GPTOSS_EXPERT(p, g, rows, cols, slot) \
    {"model.layers.{L}.mlp.experts.{E}." p, "blk.{L}." g, MK_SCOPE_EXPERT, rows, cols, cols == MK_DIM_NONE ? MK_FILL_ZEROS : MK_FILL_RAND, \
     (cols == MK_DIM_NONE ? MK_ROLE_F32 : R) | MK_ROLE_HF_FUSED, NULL, X_(slot)}
static const mk_role gpt_oss_roles[] = {
    FIRST_ROWS,
    {"model.layers.{L}.input_layernorm.weight", "blk.{L}.attn_norm.weight", MK_SCOPE_LAYER, MK_DIM_MODEL, MK_DIM_NONE, MK_FILL_ONES, 0, NULL, LW(attn_norm)},
    {"model.layers.{L}.post_attention_layernorm.weight", "blk.{L}.post_attention_norm.weight", MK_SCOPE_LAYER, MK_DIM_MODEL, MK_DIM_NONE, MK_FILL_ONES, 0, NULL, LW(ffn_norm)},
    GQA_ROWS,
    {"model.layers.{L}.self_attn.sinks", "blk.{L}.attn_sinks.weight", MK_SCOPE_LAYER, MK_DIM_HEADS, MK_DIM_NONE, MK_FILL_RAND, MK_ROLE_F32, NULL, LW(sinks)},
    {"model.layers.{L}.mlp.router.weight", "blk.{L}.ffn_gate_inp.weight", MK_SCOPE_MOE, MK_DIM_EXPERTS, MK_DIM_MODEL, MK_FILL_RAND, MK_ROLE_ROUTER, NULL, LW(router)},
    {"model.layers.{L}.mlp.router.bias", "blk.{L}.ffn_gate_inp.bias", MK_SCOPE_MOE, MK_DIM_EXPERTS, MK_DIM_NONE, MK_FILL_RAND, MK_ROLE_F32 | MK_ROLE_ROUTER_BIAS, NULL, LW(router_b)},
    GPTOSS_EXPERT("gate_proj.weight", "ffn_gate_exps.weight", MK_DIM_FF_EXPERT, MK_DIM_MODEL, gate),
    GPTOSS_EXPERT("up_proj.weight", "ffn_up_exps.weight", MK_DIM_FF_EXPERT, MK_DIM_MODEL, up),
    GPTOSS_EXPERT("down_proj.weight", "ffn_down_exps.weight", MK_DIM_MODEL, MK_DIM_FF_EXPERT, down),
    GPTOSS_EXPERT("gate_proj.bias", "ffn_gate_exps.bias", MK_DIM_FF_EXPERT, MK_DIM_NONE, gate_b),
    GPTOSS_EXPERT("up_proj.bias", "ffn_up_exps.bias", MK_DIM_FF_EXPERT, MK_DIM_NONE, up_b),
    GPTOSS_EXPERT("down_proj.bias", "ffn_down_exps.bias", MK_DIM_MODEL, MK_DIM_NONE, down_b),
    LAST_ROWS};

/* Phi-3.5-MoE (formats.md §7): LayerNorms with biases (kept F32 for the norm kernel), GQA with
 * biases, Mixtral's MoE block (block_sparse_moe, w1/w3/w2), the final LayerNorm and an LM head with
 * a bias; llama.cpp's phimoe names. LongRoPE's factors are config values in HF and tensors
 * (rope_factors_long/short) in llama.cpp's files: gguf_load.c and quant_gguf.c move them. */
#define LN_ROWS(hf, g, slot) \
    {"model.layers.{L}." hf ".weight", "blk.{L}." g ".weight", MK_SCOPE_LAYER, MK_DIM_MODEL, MK_DIM_NONE, MK_FILL_ONES, MK_ROLE_F32, NULL, LW(slot)}, \
    {"model.layers.{L}." hf ".bias", "blk.{L}." g ".bias", MK_SCOPE_LAYER, MK_DIM_MODEL, MK_DIM_NONE, MK_FILL_ZEROS, MK_ROLE_F32, NULL, LW(slot##_b)}
static const mk_role phimoe_roles[] = {
    FIRST_ROWS, LN_ROWS("input_layernorm", "attn_norm", attn_norm), LN_ROWS("post_attention_layernorm", "ffn_norm", ffn_norm), GQA_ROWS,
    ROUTER_ROW, EXPERT_ROWS("w1", "w3", "w2"),
    {"model.norm.weight", "output_norm.weight", MK_SCOPE_LAST, MK_DIM_MODEL, MK_DIM_NONE, MK_FILL_ONES, MK_ROLE_F32, NULL, M_(final_norm)},
    {"model.norm.bias", "output_norm.bias", MK_SCOPE_LAST, MK_DIM_MODEL, MK_DIM_NONE, MK_FILL_ZEROS, MK_ROLE_F32, NULL, M_(final_norm_b)},
    {"lm_head.weight", "output.weight", MK_SCOPE_LAST, MK_DIM_VOCAB, MK_DIM_MODEL, MK_FILL_RAND, R, p_untied, M_(lm_head)},
    {"lm_head.bias", "output.bias", MK_SCOPE_LAST, MK_DIM_VOCAB, MK_DIM_NONE, MK_FILL_ZEROS, MK_ROLE_F32, p_lm_bias, M_(lm_head_b)}};

#define N(a) (sizeof a / sizeof a[0])
static const mk_arch_desc archs[] = {
    {MK_ARCH_MIXTRAL, "MixtralForCausalLM", "mixtral", "llama", "block_sparse_moe", true, true, mixtral_roles, N(mixtral_roles)},
    {MK_ARCH_QWEN2_MOE, "Qwen2MoeForCausalLM", "qwen2_moe", "qwen2moe", "mlp", false, false, qwen2_moe_roles, N(qwen2_moe_roles)},
    {MK_ARCH_QWEN3_MOE, "Qwen3MoeForCausalLM", "qwen3_moe", "qwen3moe", "mlp", false, true, qwen3_moe_roles, N(qwen3_moe_roles)},
    {MK_ARCH_OLMOE, "OlmoeForCausalLM", "olmoe", "olmoe", "mlp", false, false, qwen3_moe_roles, N(qwen3_moe_roles)},
    {MK_ARCH_DEEPSEEK_V2, "DeepseekV2ForCausalLM", "deepseek_v2", "deepseek2", "mlp", false, false, deepseek_roles, N(deepseek_roles)},
    {MK_ARCH_DEEPSEEK_V3, "DeepseekV3ForCausalLM", "deepseek_v3", "deepseek2", "mlp", false, false, deepseek_roles, N(deepseek_roles)},
    {MK_ARCH_GLM4_MOE, "Glm4MoeForCausalLM", "glm4_moe", "glm4moe", "mlp", false, true, glm4_moe_roles, N(glm4_moe_roles)},
    {MK_ARCH_GPT_OSS, "GptOssForCausalLM", "gpt_oss", "gpt-oss", "mlp", false, true, gpt_oss_roles, N(gpt_oss_roles)},
    {MK_ARCH_PHIMOE, "PhimoeForCausalLM", "phimoe", "phimoe", "block_sparse_moe", false, false, phimoe_roles, N(phimoe_roles)},
};

const mk_arch_desc *mk_arch_describe(mk_arch a) {
    for (size_t i = 0; i < N(archs); i++)
        if (archs[i].arch == a) return &archs[i];
    return NULL;
}

const mk_arch_desc *mk_arch_by_hf(const char *hf_class, const char *model_type) {
    for (size_t i = 0; i < N(archs); i++)
        if (hf_class ? !strcmp(archs[i].hf_class, hf_class) : model_type && !strcmp(archs[i].model_type, model_type)) return &archs[i];
    return NULL;
}

const mk_arch_desc *mk_arch_by_gguf(const char *gguf_arch) {
    for (size_t i = 0; i < N(archs); i++)
        if (!strcmp(archs[i].gguf_arch, gguf_arch)) return &archs[i];
    return NULL;
}

static int64_t dim_of(const mk_config *c, mk_dim d, int64_t layer) {
    switch (d) {
    case MK_DIM_NONE: return 0;
    case MK_DIM_ONE: return 1;
    case MK_DIM_VOCAB: return c->vocab;
    case MK_DIM_MODEL: return c->d_model;
    case MK_DIM_Q: return c->n_head * c->d_head;
    case MK_DIM_KV: return c->n_kv_head * c->d_head;
    case MK_DIM_HEAD: return c->d_head;
    case MK_DIM_EXPERTS: return c->n_expert_layer && layer >= 0 ? c->n_expert_layer[layer] : c->n_expert;
    case MK_DIM_FF_EXPERT: return c->d_ff_expert;
    case MK_DIM_FF_SHARED: return c->d_ff_shared;
    case MK_DIM_FF_DENSE: return c->d_ff_dense;
    case MK_DIM_ATT_OUT: return c->n_head * c->v_head;
    case MK_DIM_Q_LORA: return c->q_lora_rank;
    case MK_DIM_KV_LORA: return c->kv_lora_rank;
    case MK_DIM_KV_A: return c->kv_lora_rank + c->qk_rope;
    case MK_DIM_KV_B: return c->n_head * (c->qk_nope + c->v_head);
    case MK_DIM_HEADS: return c->n_head;
    }
    return 0;
}

void mk_arch_format(char *out, size_t cap, const char *pat, int64_t layer, int64_t expert, const char *moe) {
    size_t o = 0;
    for (const char *p = pat; *p && o + 1 < cap; p++) {
        if (p[0] == '{' && p[1] && p[2] == '}') {
            if (p[1] == 'L') o += (size_t)snprintf(out + o, cap - o, "%lld", (long long)layer);
            else if (p[1] == 'E') o += (size_t)snprintf(out + o, cap - o, "%lld", (long long)expert);
            else o += (size_t)snprintf(out + o, cap - o, "%s", moe);
            p += 2;
            if (o >= cap) o = cap - 1;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = 0;
}

static mk_status emit(const mk_config *c, const mk_role *r, int64_t layer, int64_t expert, const char *moe, mk_arch_fn fn, void *user) {
    mk_presence p = r->when ? r->when(c) : MK_REQUIRED;
    if (p == MK_ABSENT) return MK_OK;
    mk_arch_item it = {.role = r, .layer = layer, .expert = expert, .optional = p == MK_OPTIONAL};
    mk_arch_format(it.hf, sizeof it.hf, r->hf, layer, expert, moe);
    it.ndim = r->cols == MK_DIM_NONE ? 1 : 2;
    it.shape[0] = dim_of(c, r->rows, layer);
    it.shape[1] = dim_of(c, r->cols, layer);
    return fn(&it, user);
}

mk_status mk_arch_walk(const mk_config *c, const char *moe_block, mk_arch_fn fn, void *user) {
    const mk_arch_desc *a = mk_arch_describe(c->arch);
    if (!a) return mk_err(MK_ERR_INTERNAL, "architecture %d has no weight table", (int)c->arch);
    const char *moe = moe_block ? moe_block : a->moe_block;
    mk_status st;
    for (size_t i = 0; i < a->n_roles; i++)
        if (a->roles[i].scope == MK_SCOPE_FIRST && (st = emit(c, &a->roles[i], -1, -1, moe, fn, user))) return st;
    for (int64_t l = 0; l < c->n_layer; l++) {
        const bool moe_layer = c->layer_moe[l];
        for (size_t i = 0; i < a->n_roles; i++) {
            const mk_role *r = &a->roles[i];
            if (r->scope == MK_SCOPE_EXPERT) {
                if (!moe_layer || (i > 0 && a->roles[i - 1].scope == MK_SCOPE_EXPERT)) continue; /* once, at the first expert role */
                const int64_t EL = dim_of(c, MK_DIM_EXPERTS, l);
                for (int64_t e = 0; e < EL; e++)
                    for (size_t k = i; k < a->n_roles && a->roles[k].scope == MK_SCOPE_EXPERT; k++)
                        if ((st = emit(c, &a->roles[k], l, e, moe, fn, user))) return st;
                continue;
            }
            const bool here = r->scope == MK_SCOPE_LAYER || (r->scope == MK_SCOPE_MOE && moe_layer) || (r->scope == MK_SCOPE_DENSE && !moe_layer);
            if (here && (st = emit(c, r, l, -1, moe, fn, user))) return st;
        }
    }
    for (size_t i = 0; i < a->n_roles; i++)
        if (a->roles[i].scope == MK_SCOPE_LAST && (st = emit(c, &a->roles[i], -1, -1, moe, fn, user))) return st;
    return MK_OK;
}

const mk_role *mk_arch_find_hf(const mk_arch_desc *a, const char *moe_block, const char *name, int64_t *layer, int64_t *expert) {
    long long l = -1, e = -1;
    int n = 0;
    if (sscanf(name, "model.layers.%lld.%n", &l, &n) != 1 || n == 0) l = -1;
    const char *x = strstr(name, ".experts.");
    if (!x || sscanf(x, ".experts.%lld.", &e) != 1) e = -1;
    char buf[192];
    for (size_t i = 0; i < a->n_roles; i++) {
        const mk_role *r = &a->roles[i];
        const bool has_l = r->scope != MK_SCOPE_FIRST && r->scope != MK_SCOPE_LAST, has_e = r->scope == MK_SCOPE_EXPERT;
        if (has_l != (l >= 0) || has_e != (e >= 0)) continue;
        for (int v = 0; v < 2; v++) {
            mk_arch_format(buf, sizeof buf, r->hf, l, e, v ? "mlp" : (moe_block ? moe_block : a->moe_block));
            if (strcmp(buf, name)) continue;
            *layer = l;
            *expert = e;
            return r;
        }
    }
    return NULL;
}

void mk_arch_gguf_name(const mk_arch_item *it, char *out, size_t cap) { mk_arch_format(out, cap, it->role->gguf, it->layer, it->expert, ""); }

mk_tensor *mk_arch_slot(mk_model *m, const mk_arch_item *it) {
    const mk_role *r = it->role;
    switch (r->scope) {
    case MK_SCOPE_FIRST:
    case MK_SCOPE_LAST: return (mk_tensor *)((char *)m + r->slot);
    case MK_SCOPE_EXPERT: return (mk_tensor *)((char *)&m->layers[it->layer].experts[it->expert] + r->slot);
    default: return (mk_tensor *)((char *)&m->layers[it->layer] + r->slot);
    }
}
