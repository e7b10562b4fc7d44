/* One description per architecture of the weights its checkpoints hold: a table of roles, each
 * with its HF name, its llama.cpp GGUF name, its shape in config quantities, how synth fills it,
 * how GGUF stores it (quantized or F32, llama.cpp's RoPE row permutation) and where the loaded
 * tensor goes in mk_model. Every reader and writer walks the same table (mk_arch_walk), so a
 * tensor the loader reads is one synth writes, and the reverse. */
#ifndef MK_MODEL_ARCH_H
#define MK_MODEL_ARCH_H

#include "model.h"

/* A dimension of a weight, from the config (DESIGN.md §3's shape letters). */
typedef enum mk_dim {
    MK_DIM_NONE,      /* (no second dimension: a 1-D tensor) */
    MK_DIM_ONE,       /* 1 */
    MK_DIM_VOCAB,     /* vocab */
    MK_DIM_MODEL,     /* d_model */
    MK_DIM_Q,         /* n_head · d_head */
    MK_DIM_KV,        /* n_kv_head · d_head */
    MK_DIM_HEAD,      /* d_head */
    MK_DIM_EXPERTS,   /* n_expert of the layer (fewer in a per-layer model) */
    MK_DIM_FF_EXPERT, /* d_ff of a routed expert */
    MK_DIM_FF_SHARED, /* d_ff of the shared expert */
    MK_DIM_FF_DENSE,  /* d_ff of a dense layer's MLP */
    MK_DIM_ATT_OUT,   /* n_head · v_head: the attention output o_proj reads (MK_DIM_Q except in MLA) */
    MK_DIM_Q_LORA,    /* MLA: q_lora_rank */
    MK_DIM_KV_LORA,   /* MLA: kv_lora_rank */
    MK_DIM_KV_A,      /* MLA: kv_lora_rank + qk_rope (the latent and the shared RoPE key) */
    MK_DIM_KV_B,      /* MLA: n_head · (qk_nope + v_head) */
    MK_DIM_HEADS,     /* n_head (GPT-OSS's sinks: one per query head) */
} mk_dim;

/* How often a role occurs and which struct its slot is in. */
typedef enum mk_scope {
    MK_SCOPE_FIRST,   /* once, before the layers (mk_model) */
    MK_SCOPE_LAYER,   /* every layer (mk_layer_w) */
    MK_SCOPE_DENSE,   /* every dense layer (mk_layer_w) */
    MK_SCOPE_MOE,     /* every MoE layer (mk_layer_w) */
    MK_SCOPE_EXPERT,  /* every routed expert of a MoE layer (mk_mlp_w) */
    MK_SCOPE_LAST,    /* once, after the layers (mk_model) */
} mk_scope;

typedef enum mk_fill { MK_FILL_RAND, MK_FILL_ONES, MK_FILL_ZEROS } mk_fill;

enum {
    MK_ROLE_MATRIX = 1,   /* GGUF: written in the requested type (else F32: norms, biases, routers) */
    MK_ROLE_PERM_Q = 2,   /* llama.cpp permutes the rows of this tensor per query head when the  */
    MK_ROLE_PERM_K = 4,   /*   architecture's GGUF RoPE is NORM (Mixtral); PERM_K: per KV head   */
    MK_ROLE_F32 = 8,      /* the loader keeps an F32 copy (vectors the fused kernels take as f32) */
    MK_ROLE_ROUTER = 16,  /* the MoE router: its rows are the layer's experts */
    MK_ROLE_GGUF_VECTOR = 32, /* HF (1, n) is a vector of n in llama.cpp's file */
    MK_ROLE_ROUTER_BIAS = 64, /* a per-expert vector beside the router (DeepSeek-V3's selection bias) */
    MK_ROLE_MLA_KV_B = 128,   /* MLA's kv_b: llama.cpp stores it split, attn_k_b (each head's key rows
                                 transposed, ne [nope, r, n_head]) and attn_v_b (ne [r, v_head, n_head]) */
    MK_ROLE_HF_FUSED = 256,   /* EXPERT roles whose HF checkpoint holds all experts in one tensor of
                                 another layout (GPT-OSS's gate_up_proj (E, H, 2·d_ff), gate and up
                                 interleaved): the names here are moekit's per-expert views, which the
                                 HF loader makes (gptoss.c) and the HF writer fuses back */
};

/* Whether a role is in a model: absent, required, or read if the file has it. */
typedef enum mk_presence { MK_ABSENT, MK_REQUIRED, MK_OPTIONAL } mk_presence;

typedef struct mk_role {
    const char *hf;     /* HF name: {L} = the layer, {E} = the expert, {M} = the MoE block */
    const char *gguf;   /* llama.cpp's name; routed experts: the stacked tensor (expert e is matrix e) */
    mk_scope scope;
    mk_dim rows, cols;  /* cols MK_DIM_NONE: 1-D of `rows` values */
    mk_fill fill;
    unsigned flags;     /* MK_ROLE_* */
    mk_presence (*when)(const mk_config *c); /* NULL: always in its scope */
    size_t slot;        /* offset of the mk_tensor in mk_model (FIRST, LAST), mk_layer_w (LAYER,
                           DENSE, MOE) or mk_mlp_w (EXPERT) */
} mk_role;

typedef struct mk_arch_desc {
    mk_arch arch;
    const char *hf_class, *model_type, *gguf_arch;
    const char *moe_block;  /* HF prefix of the MoE block after model.layers.{L}. ({M}) */
    bool gguf_rope_norm;    /* llama.cpp converts it with NORM RoPE and permuted q/k rows */
    bool gguf_norm_topk;    /* llama.cpp's top-k renormalisation when the file has no expert_weights_norm */
    const mk_role *roles;
    size_t n_roles;
} mk_arch_desc;

const mk_arch_desc *mk_arch_describe(mk_arch a);
/* The architecture of config.json's architectures[0] (hf_class), or when that is NULL of its
 * model_type; NULL if neither is known. */
const mk_arch_desc *mk_arch_by_hf(const char *hf_class, const char *model_type);
/* The architecture of a GGUF general.architecture value, or NULL. */
const mk_arch_desc *mk_arch_by_gguf(const char *gguf_arch);

/* pattern with {L} = layer, {E} = expert, {M} = moe_block → out (a role's hf or gguf name). */
void mk_arch_format(char *out, size_t cap, const char *pattern, int64_t layer, int64_t expert, const char *moe_block);

/* One tensor of a model, as mk_arch_walk yields it. */
typedef struct mk_arch_item {
    const mk_role *role;
    int64_t layer, expert;  /* -1 where the scope has none */
    bool optional;          /* MK_OPTIONAL: read if present */
    char hf[192];
    int ndim;
    int64_t shape[2];
} mk_arch_item;

typedef mk_status (*mk_arch_fn)(const mk_arch_item *it, void *user);

/* Calls fn for every tensor of cfg's HF checkpoint (per-expert layout, experts of a per-layer
 * model as its config says) in file order: the FIRST roles, each layer's roles in table order
 * (the routed experts one after the other, each with its roles), the LAST roles. moe_block: the
 * HF prefix to use for {M}, NULL = the architecture's. Stops at the first status fn returns. */
mk_status mk_arch_walk(const mk_config *cfg, const char *moe_block, mk_arch_fn fn, void *user);

/* The role an HF tensor name of architecture a stands for (with the MoE block moe_block, or the
 * v5 spelling "mlp"), its layer and expert (-1 where none), or NULL: one reverse lookup for
 * writers and messages, instead of string matching on name parts. */
const mk_role *mk_arch_find_hf(const mk_arch_desc *a, const char *moe_block, const char *name, int64_t *layer, int64_t *expert);

/* The item's llama.cpp tensor name (routed experts: the stacked tensor's). */
void mk_arch_gguf_name(const mk_arch_item *it, char *out, size_t cap);

/* The mk_tensor of m an item's tensor goes to (m->layers[..].experts allocated for EXPERT items). */
mk_tensor *mk_arch_slot(mk_model *m, const mk_arch_item *it);

#endif
