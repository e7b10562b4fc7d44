/* GGUF models → the same mk_model as HF checkpoints (research/formats.md §0.3, §12).
 *
 * The metadata (llama.cpp's keys for llama = Mixtral with expert_count, qwen2moe, qwen3moe, olmoe)
 * becomes an mk_config; the tensors become a table of HF-named views, so load.c checks shapes and
 * forward.c runs exactly as for safetensors. The names pair up through the architecture's table
 * (arch.c: each role's HF and llama.cpp name), plus two expert layouts only GGUF has:
 *   token_embd / output_norm / output            → model.embed_tokens / model.norm / lm_head
 *   blk.N.attn_{norm,q,k,v,output,q_norm,k_norm}  → model.layers.N.{input_layernorm, self_attn.*}
 *   blk.N.ffn_gate_inp                            → <moe>.gate (router; <moe> = block_sparse_moe for Mixtral, else mlp)
 *   blk.N.ffn_{gate,up,down}_exps [E, rows, cols] → per-expert 2-D views <moe>.experts.E.{w1,w3,w2 | gate,up,down_proj}
 *   blk.N.ffn_gate_up_exps [E, 2I, H]             → the same views (gate = rows [0, I), up = rows [I, 2I))
 *   blk.N.ffn_{gate,up,down}.E (2023 Mixtral)     → the same names
 *   blk.N.ffn_*_shexp, ffn_gate_inp_shexp         → mlp.shared_expert.*, mlp.shared_expert_gate ([H] → [1, H])
 *   blk.N.ffn_{gate,up,down}                      → mlp.{gate,up,down}_proj (dense layers)
 *   blk.N.attn_k_b, attn_v_b (deepseek2, MLA)     → self_attn.k_b, self_attn.v_b: moekit's own names for the
 *                                                   split kv_b, which the loader reads instead of kv_b_proj
 * Expert views are slices of whole rows, and a row of any type is a whole number of blocks.
 *
 * RoPE pairing: llama.cpp converts Mixtral as rope type NORM and permutes the rows of q_proj and
 * k_proj (per head, HF row j·d/2 + i becomes GGUF row 2i + j) so that interleaved RoPE on the GGUF
 * weights equals half-rotation RoPE on the HF weights. moekit un-permutes those rows at load into
 * owned buffers (a copy of wq and wk only, about 1-2% of an MoE model) instead of adding an
 * interleaved-RoPE flag: every consumer (forward pass, observer, analyses, writers of HF
 * safetensors or GGUF) then sees one layout, the HF one. qwen2moe/qwen3moe/olmoe are NEOX in
 * llama.cpp and are not permuted. */
#include "arch.h"
#include "format/gguf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The table role a GGUF tensor name "blk.N.<rest>" (layer roles) or "<name>" (FIRST/LAST roles)
 * stands for, or NULL. */
static const mk_role *role_of_gguf(const mk_arch_desc *ad, const char *rest, bool layer) {
    static const char blk[] = "blk.{L}.";
    for (size_t i = 0; i < ad->n_roles; i++) {
        const mk_role *r = &ad->roles[i];
        const bool lr = r->scope != MK_SCOPE_FIRST && r->scope != MK_SCOPE_LAST;
        if (lr != layer) continue;
        const char *g = r->gguf;
        if (lr) {
            if (strncmp(g, blk, sizeof blk - 1)) continue;
            g += sizeof blk - 1;
        }
        if (!strcmp(g, rest)) return r;
    }
    return NULL;
}

/* The routed-expert role of part k (0 gate, 1 up, 2 down: the table's order of EXPERT roles). */
static const mk_role *expert_role(const mk_arch_desc *ad, int k) {
    for (size_t i = 0; i < ad->n_roles; i++)
        if (ad->roles[i].scope == MK_SCOPE_EXPERT && k-- == 0) return &ad->roles[i];
    return NULL;
}

/* 2023-style per-expert 2-D tensors (blk.N.ffn_gate.E.weight): the stacked name minus "_exps". */
static const char *const legacy_gguf[3] = {"ffn_gate", "ffn_up", "ffn_down"};

const char *mk_gguf_name_of(const mk_config *c, const char *hf, char *buf, size_t cap) {
    const mk_arch_desc *ad = mk_arch_describe(c->arch);
    int64_t l, e;
    const mk_role *r = ad ? mk_arch_find_hf(ad, NULL, hf, &l, &e) : NULL;
    if (!r) return hf;
    mk_arch_format(buf, cap, r->gguf, l, e, "");
    if (r->scope == MK_SCOPE_EXPERT) {
        size_t o = strlen(buf);
        snprintf(buf + o, cap > o ? cap - o : 0, " (expert %lld)", (long long)e);
    }
    return buf;
}

/* ---- metadata → mk_config ---- */

static mk_status key_int(const mk_gguf *g, const char *arch, const char *k, int64_t dflt, int64_t min, int64_t *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, k);
    const mk_gguf_kv *kv = mk_gguf_find(g, key);
    if (!kv) {
        if (dflt < 0) return mk_err(MK_ERR_MISSING, "%s: metadata key '%s' is missing", g->map.path, key);
        *out = dflt;
        return MK_OK;
    }
    if (kv->type == MK_GGUF_ARRAY)
        return mk_err(MK_ERR_UNSUPPORTED, "%s: metadata key '%s': per-layer values are not supported", g->map.path, key);
    mk_status st = mk_gguf_get_int(g, key, out);
    if (st) return st;
    if (*out < min || *out > (int64_t)1 << 40)
        return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s' = %lld is out of range (at least %lld)", g->map.path, key, (long long)*out, (long long)min);
    return MK_OK;
}

static mk_status key_float(const mk_gguf *g, const char *arch, const char *k, double dflt, bool required, double *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, k);
    if (!mk_gguf_find(g, key)) {
        if (required) return mk_err(MK_ERR_MISSING, "%s: metadata key '%s' is missing", g->map.path, key);
        *out = dflt;
        return MK_OK;
    }
    return mk_gguf_get_float(g, key, out);
}

static int32_t token_id(const mk_gguf *g, const char *key) {
    int64_t v;
    if (!mk_gguf_find(g, key) || mk_gguf_get_int(g, key, &v) || v < 0 || v > INT32_MAX) return -1;
    return (int32_t)v;
}

static bool has_tensor(const mk_gguf *g, const char *fmt, long long l) {
    char name[128];
    snprintf(name, sizeof name, fmt, l);
    return mk_gguf_find_tensor(g, name) != NULL;
}

/* The first layer below n_layer that has (moe) or lacks (!moe) blk.N.ffn_gate_inp.weight, or -1.
 * Per-layer facts (expert and dense widths, the shared expert) are read from such a layer, never
 * from blk.0, which may be the other kind (a Qwen2-MoE with mlp_only_layers [0], say). */
static long long first_layer(const mk_gguf *g, int64_t n_layer, bool moe) {
    for (long long l = 0; l < n_layer; l++)
        if (has_tensor(g, "blk.%lld.ffn_gate_inp.weight", l) == moe) return l;
    return -1;
}

/* Row count (ne[1]) of a 2-D/3-D GGUF tensor, or 0 when absent. */
static int64_t tensor_ne(const mk_gguf *g, const char *name, int d) {
    const mk_gguf_tensor *t = mk_gguf_find_tensor(g, name);
    return t && (uint32_t)d < t->n_dims ? t->ne[d] : 0;
}

static mk_status gguf_config(mk_config *c, const mk_gguf *g, const mk_arch_desc **out_arch) {
    const char *path = g->map.path;
    memset(c, 0, sizeof *c);
    char a[64];
    mk_status st = mk_gguf_get_str(g, "general.architecture", a, sizeof a);
    if (st) return st;
    const mk_arch_desc *ad = mk_arch_by_gguf(a);
    if (!ad)
        return mk_err(MK_ERR_UNSUPPORTED, "%s: metadata key 'general.architecture' = '%s' is not a supported architecture (supported: llama with experts (Mixtral), qwen2moe, qwen3moe, olmoe, deepseek2, glm4moe, gpt-oss, phimoe)",
                      path, a);
    if (ad->arch == MK_ARCH_DEEPSEEK_V2) { /* deepseek2 holds V2 and V3: the gating function tells (missing: softmax, old V2 files) */
        int64_t gf;
        if ((st = key_int(g, a, "expert_gating_func", 1, 0, &gf))) return st;
        if (gf != 1 && gf != 2) return mk_err(MK_ERR_UNSUPPORTED, "%s: metadata key '%s.expert_gating_func' = %lld is not supported (1 softmax, 2 sigmoid)", path, a, (long long)gf);
        if (gf == 2) ad = mk_arch_describe(MK_ARCH_DEEPSEEK_V3);
    }
    *out_arch = ad;
    c->arch = ad->arch;
    snprintf(c->arch_name, sizeof c->arch_name, "%s", ad->hf_class);
    snprintf(c->model_type, sizeof c->model_type, "%s", ad->model_type);
#define I(k, dflt, min, dst) if ((st = key_int(g, a, k, dflt, min, dst))) return st
    I("block_count", -1, 1, &c->n_layer);
    if (c->n_layer > 4096 || (size_t)c->n_layer > g->n_tensors)
        return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s.block_count' = %lld is more than the file's %zu tensors can hold", path, a,
                      (long long)c->n_layer, g->n_tensors);
    I("embedding_length", -1, 1, &c->d_model);
    I("attention.head_count", -1, 1, &c->n_head);
    I("attention.head_count_kv", c->n_head, 1, &c->n_kv_head);
    I("context_length", 0, 0, &c->n_ctx_train);
    if (c->d_model % c->n_head) {
        char key[96];
        snprintf(key, sizeof key, "%s.attention.key_length", a);
        if (!mk_gguf_find(g, key))
            return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s.embedding_length' (%lld) is not divisible by the head count (%lld)", path, a,
                          (long long)c->d_model, (long long)c->n_head);
    }
    I("attention.key_length", c->d_model / c->n_head, 1, &c->d_head);
    int64_t vlen, rot;
    I("attention.value_length", c->d_head, 1, &vlen);
    I("rope.dimension_count", c->d_head, 1, &rot);
    const bool mla = ad->arch == MK_ARCH_DEEPSEEK_V2 || ad->arch == MK_ARCH_DEEPSEEK_V3;
    if (mla) {
        /* MLA: files since llama.cpp's MLA rework hold one KV head of key_length = r + qk_rope and
         * value_length = r, the head sizes in key_length_mla / value_length_mla, and kv_b split into
         * attn_k_b / attn_v_b; older files hold n_head KV heads of key_length = qk_nope + qk_rope and
         * attn_kv_b. */
        char key[96];
        snprintf(key, sizeof key, "%s.attention.key_length_mla", a);
        const bool split = mk_gguf_find(g, key) != NULL;
        I("attention.kv_lora_rank", -1, 1, &c->kv_lora_rank);
        I("attention.q_lora_rank", 0, 0, &c->q_lora_rank);
        c->qk_rope = rot;
        if (split) {
            I("attention.key_length_mla", -1, 1, &c->d_head);
            I("attention.value_length_mla", -1, 1, &c->v_head);
            if (c->n_kv_head != 1 || vlen != c->kv_lora_rank)
                return mk_err(MK_ERR_FORMAT, "%s: metadata keys '%s.attention.head_count_kv' (%lld) and value_length (%lld) do not describe MLA's one latent head of %lld", path,
                              a, (long long)c->n_kv_head, (long long)vlen, (long long)c->kv_lora_rank);
        } else {
            c->v_head = vlen;
        }
        c->n_kv_head = c->n_head;
        c->qk_nope = c->d_head - c->qk_rope;
        if (c->qk_nope < 0 || rot % 2) return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s.rope.dimension_count' = %lld does not fit a q/k head of %lld", path, a, (long long)rot, (long long)c->d_head);
    } else {
        if (vlen != c->d_head) return mk_err(MK_ERR_UNSUPPORTED, "%s: metadata key '%s.attention.value_length' (%lld) differs from key_length (%lld)", path, a, (long long)vlen, (long long)c->d_head);
        if (rot != c->d_head && ad->arch != MK_ARCH_GLM4_MOE)
            return mk_err(MK_ERR_UNSUPPORTED, "%s: metadata key '%s.rope.dimension_count' = %lld: partial rotary embeddings are not supported for %s (head dim %lld)", path, a, (long long)rot,
                          ad->hf_class, (long long)c->d_head);
        if (rot > c->d_head || rot % 2) return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s.rope.dimension_count' = %lld does not fit a head of %lld", path, a, (long long)rot, (long long)c->d_head);
    }
    if (c->n_head % c->n_kv_head) return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s.attention.head_count' (%lld) is not a multiple of head_count_kv (%lld)", path, a, (long long)c->n_head, (long long)c->n_kv_head);
    if (c->d_head % 2 && !mla) return mk_err(MK_ERR_FORMAT, "%s: head dimension %lld must be even for RoPE", path, (long long)c->d_head);
    const int64_t v_head = c->v_head;
    mk_config_defaults(c);
    c->rope_dim = rot;
    if (mla) {
        c->mla = c->rope_interleave = true; /* llama.cpp's deepseek2 RoPE is NORM: interleaved pairs */
        c->v_head = v_head;
    }
    const bool gptoss = ad->arch == MK_ARCH_GPT_OSS;
    I("expert_count", 0, 0, &c->n_expert);
    if (c->n_expert == 0)
        return mk_err(MK_ERR_UNSUPPORTED, "%s: metadata key '%s.expert_count' is missing or 0: not a Mixture-of-Experts model", path, a);
    if (c->n_expert > 4096) /* llama.cpp's LLAMA_MAX_EXPERTS is 1024 */
        return mk_err(MK_ERR_UNSUPPORTED, "%s: metadata key '%s.expert_count' = %lld: at most 4096 experts are supported", path, a, (long long)c->n_expert);
    I("expert_used_count", -1, 1, &c->k_active);
    if (c->k_active > c->n_expert) return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s.expert_used_count' (%lld) exceeds expert_count (%lld)", path, a, (long long)c->k_active, (long long)c->n_expert);
    int64_t ff;
    I("feed_forward_length", 0, 0, &ff);
    char key[128];
    snprintf(key, sizeof key, "%s.expert_feed_forward_length", a);
    if (mk_gguf_find(g, key)) {
        I("expert_feed_forward_length", -1, 1, &c->d_ff_expert);
        c->d_ff_dense = ff;
    } else {
        char tn[96];
        snprintf(tn, sizeof tn, "blk.%lld.ffn_gate_exps.weight", first_layer(g, c->n_layer, true));
        c->d_ff_expert = ff ? ff : tensor_ne(g, tn, 1);
    }
    if (c->d_ff_expert <= 0) return mk_err(MK_ERR_MISSING, "%s: metadata key '%s.expert_feed_forward_length' is missing", path, a);
    double eps, theta;
    if ((st = key_float(g, a, "attention.layer_norm_rms_epsilon", 0, true, &eps))) return st;
    if (!(eps > 0 && eps < 1)) return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s.attention.layer_norm_rms_epsilon' must be in (0, 1)", path, a);
    c->rms_eps = (float)eps;
    if ((st = key_float(g, a, "rope.freq_base", 10000.0, false, &theta))) return st;
    if (!(theta > 0)) return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s.rope.freq_base' must be positive", path, a);
    c->rope_theta = (float)theta;
    c->rope_attn_factor = 1.0f;
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    if (mk_gguf_find(g, key)) {
        char sc[32];
        if ((st = mk_gguf_get_str(g, key, sc, sizeof sc))) return st;
        if (!strcmp(sc, "yarn") && gptoss) {
            /* GPT-OSS's YaRN as transformers runs it: truncate false (the correction range is not
             * rounded; llama.cpp rounds it, a small difference in a few frequencies), attention
             * factor 0.1·ln(factor) + 1 */
            double f, bf, bs;
            int64_t orig;
            if ((st = key_float(g, a, "rope.scaling.factor", 0, true, &f)) || (st = key_int(g, a, "rope.scaling.original_context_length", -1, 1, &orig)) ||
                (st = key_float(g, a, "rope.scaling.yarn_beta_fast", 32, false, &bf)) || (st = key_float(g, a, "rope.scaling.yarn_beta_slow", 1, false, &bs)))
                return st;
            if (!(f > 0)) return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s.rope.scaling.factor' must be positive", path, a);
            c->yarn = true;
            c->yarn_truncate = false;
            c->yarn_factor = f;
            c->yarn_orig_ctx = orig;
            c->yarn_beta_fast = bf;
            c->yarn_beta_slow = bs;
            c->rope_attn_factor = (float)(f <= 1 ? 1.0 : 0.1 * log(f) + 1.0);
        } else if (!strcmp(sc, "yarn") && mla) {
            /* DeepSeek's YaRN as llama.cpp keeps it: mscale_all_dim from the log multiplier
             * (0.1·mscale_all_dim), and mscale equal to it (attention factor 1), as in V2 and V3 */
            double f, lm, bf, bs;
            int64_t orig;
            if ((st = key_float(g, a, "rope.scaling.factor", 0, true, &f)) || (st = key_int(g, a, "rope.scaling.original_context_length", -1, 1, &orig)) ||
                (st = key_float(g, a, "rope.scaling.yarn_log_multiplier", 0, false, &lm)) || (st = key_float(g, a, "rope.scaling.yarn_beta_fast", 32, false, &bf)) ||
                (st = key_float(g, a, "rope.scaling.yarn_beta_slow", 1, false, &bs)))
                return st;
            if (!(f > 0)) return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s.rope.scaling.factor' must be positive", path, a);
            c->yarn = c->yarn_truncate = true;
            c->yarn_factor = f;
            c->yarn_orig_ctx = orig;
            c->yarn_beta_fast = bf;
            c->yarn_beta_slow = bs;
            c->yarn_mscale = c->yarn_mscale_all_dim = lm / 0.1;
        } else if (strcmp(sc, "none") && strcmp(sc, "linear"))
            return mk_err(MK_ERR_UNSUPPORTED, "%s: metadata key '%s' = '%s' is not supported yet (only default RoPE, and YaRN for deepseek2)", path, key, sc);
        double f;
        if (!strcmp(sc, "linear") && !key_float(g, a, "rope.scaling.factor", 1.0, false, &f) && f != 1.0 && f != 0.0)
            return mk_err(MK_ERR_UNSUPPORTED, "%s: linear RoPE scaling (factor %g) is not supported yet", path, f);
    }
    snprintf(key, sizeof key, "%s.expert_weights_norm", a);
    c->norm_topk = ad->gguf_norm_topk;
    if (mk_gguf_find(g, key) && (st = mk_gguf_get_bool(g, key, &c->norm_topk))) return st;
    double clip = 0;
    if (ad->arch == MK_ARCH_OLMOE && (st = key_float(g, a, "attention.clamp_kqv", 0, false, &clip))) return st;
    if (clip < 0) return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s.attention.clamp_kqv' must not be negative", path, a);
    c->clip_qkv = (float)clip;
    if (ad->arch == MK_ARCH_MIXTRAL) I("attention.sliding_window", 0, 0, &c->sliding_window);
    if (ad->arch == MK_ARCH_PHIMOE) {
        /* llama.cpp's phimoe files carry no sparsemixer epsilon (llama.cpp routes by softmax top-2):
         * Phi-3.5-MoE's 0.01 unless moekit wrote another; LayerNorm; the LM-head bias if present */
        double e;
        if ((st = key_float(g, "moekit", "sparsemixer_eps", 0.01, false, &e))) return st;
        if (!(e > 0 && e < 1)) return mk_err(MK_ERR_FORMAT, "%s: metadata key 'moekit.sparsemixer_eps' must be in (0, 1)", path);
        if (c->k_active != 2) return mk_err(MK_ERR_UNSUPPORTED, "%s: metadata key '%s.expert_used_count' = %lld: PhiMoE's sparsemixer routing chooses 2 experts", path, a, (long long)c->k_active);
        c->sparsemixer_eps = (float)e;
        c->layernorm = true;
        c->lm_head_bias = mk_gguf_find_tensor(g, "output.bias") != NULL;
        I("attention.sliding_window", 0, 0, &c->sliding_window);
        /* LongRoPE: the factor tensors, the original context, and the mscales (moekit's keys, else
         * llama.cpp's one attn_factor for both) */
        const mk_gguf_tensor *fl = mk_gguf_find_tensor(g, "rope_factors_long.weight"), *fs = mk_gguf_find_tensor(g, "rope_factors_short.weight");
        if (fl || fs) {
            const int64_t half = rot / 2;
            const mk_gguf_tensor *ft[2] = {fs, fl};
            float **dst[2] = {&c->rope_short, &c->rope_long};
            for (int k = 0; k < 2; k++) {
                if (!ft[k] || ft[k]->t.dtype != MK_DT_F32 || ft[k]->t.ndim != 1 || ft[k]->t.shape[0] != half)
                    return mk_err(MK_ERR_FORMAT, "%s: tensor 'rope_factors_%s.weight' must be F32 of %lld values (rope dims / 2)", path, k ? "long" : "short", (long long)half);
                if (!(*dst[k] = mk_malloc((size_t)half * sizeof(float)))) return MK_ERR_NOMEM;
                memcpy(*dst[k], ft[k]->t.data, (size_t)half * sizeof(float));
            }
            double af, sm, lm;
            I("rope.scaling.original_context_length", -1, 1, &c->longrope_orig);
            if ((st = key_float(g, a, "rope.scaling.attn_factor", 1.0, false, &af)) || (st = key_float(g, "moekit", "rope.short_mscale", af, false, &sm)) ||
                (st = key_float(g, "moekit", "rope.long_mscale", af, false, &lm)))
                return st;
            if (!(sm > 0 && lm > 0)) return mk_err(MK_ERR_FORMAT, "%s: the LongRoPE mscales must be positive", path);
            c->longrope = true;
            c->short_mscale = (float)sm;
            c->long_mscale = (float)lm;
        }
    }
    if (gptoss) {
        /* llama.cpp's gpt-oss: every layer has sinks, biases on q/k/v/o, router and experts; the
         * clamped SwiGLU with alpha 1.702 and limit 7.0 (llama.cpp hard-codes them; moekit's files
         * name other values in moekit.swiglu_alpha / moekit.swiglu_limit); layers sliding where
         * attention.sliding_window_pattern says (an array of bools, or n: the last of every n is
         * full), by default every other layer from layer 0 */
        I("attention.sliding_window", -1, 1, &c->sliding_window);
        c->attn_sinks = c->router_logit_bias = c->expert_bias = c->swiglu_oai = true;
        double alpha, limit;
        if ((st = key_float(g, "moekit", "swiglu_alpha", 1.702, false, &alpha)) || (st = key_float(g, "moekit", "swiglu_limit", 7.0, false, &limit))) return st;
        if (!(limit > 0) || !isfinite(alpha)) return mk_err(MK_ERR_FORMAT, "%s: metadata keys 'moekit.swiglu_alpha' / 'moekit.swiglu_limit' must be finite, the limit positive", path);
        c->swiglu_alpha = (float)alpha;
        c->swiglu_limit = (float)limit;
    }
    c->qk_norm = ad->arch == MK_ARCH_QWEN3_MOE ? MK_QKNORM_HEAD : ad->arch == MK_ARCH_OLMOE ? MK_QKNORM_FULL : MK_QKNORM_NONE;
    c->attn_bias = has_tensor(g, "blk.%lld.attn_q.bias", 0) ? 1 : 0;
    c->o_bias = has_tensor(g, "blk.%lld.attn_output.bias", 0);
    c->tie_embed = !mk_gguf_find_tensor(g, "output.weight");
    const long long l_moe = first_layer(g, c->n_layer, true);
    if (ad->arch == MK_ARCH_QWEN2_MOE && l_moe >= 0 && has_tensor(g, "blk.%lld.ffn_gate_shexp.weight", l_moe)) {
        c->shared_expert = c->shared_gated = true;
        I("expert_shared_feed_forward_length", 0, 0, &c->d_ff_shared);
        char tn[96];
        snprintf(tn, sizeof tn, "blk.%lld.ffn_gate_shexp.weight", l_moe);
        if (!c->d_ff_shared) c->d_ff_shared = tensor_ne(g, tn, 1);
    }
    if (mla || ad->arch == MK_ARCH_GLM4_MOE) {
        /* DeepSeek-V3's MoE block: shared experts (ungated), routed_scaling_factor, groups,
         * sigmoid scores with the selection bias (V3, GLM) or softmax (V2) */
        int64_t ns, ng, tg;
        double ws;
        I("expert_shared_count", 0, 0, &ns);
        I("expert_group_count", 1, 1, &ng);
        I("expert_group_used_count", 1, 1, &tg);
        if ((st = key_float(g, a, "expert_weights_scale", 1.0, false, &ws))) return st;
        if (!(ws > 0)) return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s.expert_weights_scale' must be positive", path, a);
        c->shared_expert = ns > 0;
        c->d_ff_shared = ns * c->d_ff_expert;
        c->n_group = ng;
        c->topk_group = tg;
        c->routed_scale = (float)ws;
        c->sigmoid = c->group_top2 = ad->arch != MK_ARCH_DEEPSEEK_V2;
        c->sel_bias = l_moe >= 0 && has_tensor(g, "blk.%lld.exp_probs_b.bias", l_moe);
        if ((st = mk_config_check_groups(path, c))) return st;
        if (mla) {
            mk_config_mla_scale(c);
        } else {
            c->attn_bias = has_tensor(g, "blk.%lld.attn_q.bias", 0) ? 1 : 0;
            c->qk_norm = has_tensor(g, "blk.%lld.attn_q_norm.weight", 0) ? MK_QKNORM_HEAD : MK_QKNORM_NONE;
        }
        I("nextn_predict_layers", 0, 0, &c->n_mtp); /* glm4moe: block_count counts the MTP layers */
        if (c->n_mtp >= c->n_layer) return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s.nextn_predict_layers' (%lld) leaves no layer", path, a, (long long)c->n_mtp);
        c->n_layer -= c->n_mtp;
    }
    /* vocabulary: <arch>.vocab_size, else the token list, else the embedding's rows */
    snprintf(key, sizeof key, "%s.vocab_size", a);
    const mk_gguf_kv *tok = mk_gguf_find(g, "tokenizer.ggml.tokens");
    if (mk_gguf_find(g, key)) {
        I("vocab_size", -1, 1, &c->vocab);
    } else if (tok && tok->type == MK_GGUF_ARRAY) {
        c->vocab = (int64_t)tok->n;
    } else {
        c->vocab = tensor_ne(g, "token_embd.weight", 1);
    }
    if (c->vocab <= 0) return mk_err(MK_ERR_MISSING, "%s: no vocabulary size ('%s', tokenizer.ggml.tokens or token_embd.weight)", path, key);
#undef I
    c->bos_id = token_id(g, "tokenizer.ggml.bos_token_id");
    c->eos_id = token_id(g, "tokenizer.ggml.eos_token_id");
    c->layer_moe = mk_calloc((size_t)c->n_layer, sizeof(bool));
    if (!c->layer_moe) return MK_ERR_NOMEM;
    if (gptoss) {
        if (!(c->layer_swa = mk_calloc((size_t)c->n_layer, sizeof(bool)))) return MK_ERR_NOMEM;
        snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", a);
        const mk_gguf_kv *pk = mk_gguf_find(g, key);
        int64_t every = 2;
        if (pk && pk->type == MK_GGUF_ARRAY) {
            if (pk->n != (uint64_t)c->n_layer) return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s' holds %llu values for %lld layers", path, key, (unsigned long long)pk->n, (long long)c->n_layer);
            for (int64_t l = 0; l < c->n_layer; l++) {
                int64_t v;
                if (!mk_gguf_arr_int(pk, (uint64_t)l, &v)) return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s' must be an array of booleans", path, key);
                c->layer_swa[l] = v != 0;
            }
        } else {
            if (pk && ((st = mk_gguf_get_int(g, key, &every)) || every < 1)) return st ? st : mk_err(MK_ERR_FORMAT, "%s: metadata key '%s' must be at least 1", path, key);
            for (int64_t l = 0; l < c->n_layer; l++) c->layer_swa[l] = l % every < every - 1; /* llama.cpp's set_swa_pattern */
        }
    }
    bool dense = false;
    for (int64_t l = 0; l < c->n_layer; l++) {
        c->layer_moe[l] = has_tensor(g, "blk.%lld.ffn_gate_inp.weight", l);
        dense |= !c->layer_moe[l];
    }
    if (dense && c->d_ff_dense <= 0) {
        char tn[96];
        snprintf(tn, sizeof tn, "blk.%lld.ffn_gate.weight", first_layer(g, c->n_layer, false));
        c->d_ff_dense = tensor_ne(g, tn, 1);
    }
    return MK_OK;
}

/* ---- tensors → HF-named table ---- */

/* Rows [r0, r0+rows) of matrix e of a 3-D tensor (row-major [E, R, C]). */
static mk_tensor slice_rows(const mk_tensor *t, int64_t e, int64_t r0, int64_t rows) {
    mk_tensor v = *t;
    const size_t rb = mk_dtype_row_bytes(t->dtype, (size_t)t->shape[2]);
    v.ndim = 2;
    v.shape[0] = rows;
    v.shape[1] = t->shape[2];
    v.shape[2] = v.shape[3] = 0;
    v.nbytes = (size_t)rows * rb;
    v.data = (const uint8_t *)t->data + ((size_t)e * (size_t)t->shape[1] + (size_t)r0) * rb;
    return v;
}

/* llama.cpp's Mixtral q/k permutation undone: GGUF row h·d + 2i + j → HF row h·d + j·d/2 + i. */
static mk_status unpermute(mk_model *m, const mk_gguf_tensor *gt, int64_t n_heads, mk_tensor *out) {
    const mk_tensor *t = &gt->t;
    const int64_t rows = t->shape[0];
    if (rows % n_heads || (rows / n_heads) % 2)
        return mk_err(MK_ERR_SHAPE, "%s: tensor '%s': %lld rows do not split into %lld heads of even size", m->gguf->map.path, gt->name,
                      (long long)rows, (long long)n_heads);
    const size_t rb = t->ndim == 1 ? mk_dtypes[t->dtype].block_bytes : mk_dtype_row_bytes(t->dtype, (size_t)t->shape[1]);
    if (t->ndim == 1 && mk_dtypes[t->dtype].block_elems != 1)
        return mk_err(MK_ERR_UNSUPPORTED, "%s: tensor '%s': a quantized 1-D tensor", m->gguf->map.path, gt->name);
    uint8_t *buf = mk_model_owned(m, t->nbytes);
    if (!buf) return MK_ERR_NOMEM;
    const int64_t d = rows / n_heads, half = d / 2;
    const uint8_t *src = t->data;
    for (int64_t h = 0; h < n_heads; h++)
        for (int64_t i = 0; i < half; i++)
            for (int64_t j = 0; j < 2; j++)
                memcpy(buf + (size_t)(h * d + j * half + i) * rb, src + (size_t)(h * d + 2 * i + j) * rb, rb);
    *out = *t;
    out->data = buf;
    return MK_OK;
}

static mk_status add(mk_model *m, const char *hf, const mk_tensor *t, const mk_gguf_tensor *src) {
    return mk_st_add(m->st, hf, t, (size_t)((const uint8_t *)src->t.data - m->gguf->map.data), src->name);
}

/* A tensor no HF name stands for (rope_freqs, say): kept under its own name, so that the loader's
 * check that every tensor is used names it. */
static mk_status add_other(mk_model *m, const mk_gguf_tensor *gt) {
    return gt->t.dtype == MK_DT_COUNT ? MK_OK : add(m, gt->name, &gt->t, gt);
}

/* A name the loader maps: a role of the table, or one of the GGUF-only expert layouts. */
static bool is_ours(const mk_arch_desc *ad, const char *name) {
    if (role_of_gguf(ad, name, false)) return true;
    long long l;
    int n = 0;
    if (sscanf(name, "blk.%lld.%n", &l, &n) != 1 || n == 0) return false;
    const char *rest = name + n;
    return role_of_gguf(ad, rest, true) || !strncmp(rest, "ffn_gate", 8) || !strncmp(rest, "ffn_up", 6) || !strncmp(rest, "ffn_down", 8) ||
           !strcmp(rest, "attn_k_b.weight") || !strcmp(rest, "attn_v_b.weight");
}

static mk_status add_tensor(mk_model *m, const mk_gguf_tensor *gt, const mk_arch_desc *ad) {
    const char *path = m->gguf->map.path;
    const mk_config *c = &m->cfg;
    const mk_tensor *t = &gt->t;
    if (t->dtype == MK_DT_COUNT) {
        if (!is_ours(ad, gt->name)) /* what the loader would not read either: an error, not a skip */
            return mk_err(MK_ERR_UNSUPPORTED, "%s: tensor '%s' (ggml type %s) is not used by moekit's %s loader; running without it would give wrong results",
                          path, gt->name, mk_ggml_type_name(gt->ggml_type), c->arch_name);
        return mk_err(MK_ERR_UNSUPPORTED, "%s: tensor '%s': ggml type %s (%u) is not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K, MXFP4)",
                      path, gt->name, mk_ggml_type_name(gt->ggml_type), gt->ggml_type);
    }
    char hf[192];
    const mk_role *r = role_of_gguf(ad, gt->name, false);
    if (r) {
        mk_arch_format(hf, sizeof hf, r->hf, -1, -1, ad->moe_block);
        return add(m, hf, t, gt);
    }
    long long l;
    int n = 0;
    if (sscanf(gt->name, "blk.%lld.%n", &l, &n) != 1 || n == 0 || l < 0 || l >= c->n_layer) {
        if (n > 0 && l >= c->n_layer && l < c->n_layer + c->n_mtp) return MK_OK; /* a multi-token-prediction layer: not run */
        if (c->longrope && (!strcmp(gt->name, "rope_factors_long.weight") || !strcmp(gt->name, "rope_factors_short.weight"))) return MK_OK; /* in the config */
        return add_other(m, gt);
    }
    const char *rest = gt->name + n;
    if (c->mla && (!strcmp(rest, "attn_k_b.weight") || !strcmp(rest, "attn_v_b.weight"))) { /* kv_b as llama.cpp splits it (load.c reads both) */
        snprintf(hf, sizeof hf, "model.layers.%lld.self_attn.%s", l, rest[5] == 'k' ? "k_b" : "v_b");
        return add(m, hf, t, gt);
    }
    r = role_of_gguf(ad, rest, true);
    const bool fused = !strcmp(rest, "ffn_gate_up_exps.weight"); /* gate rows [0, d_ff), up rows [d_ff, 2 d_ff) */
    if (r && r->scope == MK_SCOPE_EXPERT && r->cols == MK_DIM_NONE) { /* stacked per-expert vectors (gpt-oss's biases): (E, n), one row each */
        if (t->ndim != 2 || t->shape[0] != c->n_expert)
            return mk_err(MK_ERR_SHAPE, "%s: tensor '%s': shape [%lld, %lld] (row-major) does not hold a vector for each of %lld experts", path, gt->name,
                          (long long)t->shape[0], (long long)(t->ndim > 1 ? t->shape[1] : 0), (long long)c->n_expert);
        if (mk_dtypes[t->dtype].block_elems != 1) return mk_err(MK_ERR_UNSUPPORTED, "%s: tensor '%s': quantized per-expert vectors are not supported", path, gt->name);
        mk_status st;
        for (int64_t e = 0; e < c->n_expert; e++) {
            mk_arch_format(hf, sizeof hf, r->hf, l, e, ad->moe_block);
            mk_tensor v = *t;
            v.ndim = 1;
            v.shape[0] = t->shape[1];
            v.shape[1] = 0;
            v.nbytes = mk_dtype_row_bytes(t->dtype, (size_t)t->shape[1]);
            v.data = (const uint8_t *)t->data + (size_t)e * v.nbytes;
            if ((st = add(m, hf, &v, gt))) return st;
        }
        return MK_OK;
    }
    if (fused || (r && r->scope == MK_SCOPE_EXPERT)) { /* stacked experts: one 2-D view per expert */
        if (t->ndim != 3 || t->shape[0] != c->n_expert || (fused && t->shape[1] % 2))
            return mk_err(MK_ERR_SHAPE, "%s: tensor '%s': shape [%lld, %lld, %lld] (row-major) does not hold %lld experts%s", path, gt->name,
                          (long long)t->shape[0], (long long)(t->ndim > 1 ? t->shape[1] : 0), (long long)(t->ndim > 2 ? t->shape[2] : 0),
                          (long long)c->n_expert, fused ? " of gate and up halves" : "");
        const int64_t rows = fused ? t->shape[1] / 2 : t->shape[1];
        mk_status st;
        for (int64_t e = 0; e < c->n_expert; e++)
            for (int part = 0; part < (fused ? 2 : 1); part++) {
                const mk_role *er = fused ? expert_role(ad, part) : r;
                mk_arch_format(hf, sizeof hf, er->hf, l, e, ad->moe_block);
                mk_tensor v = slice_rows(t, e, part * rows, rows);
                if ((st = add(m, hf, &v, gt))) return st;
            }
        return MK_OK;
    }
    for (int k = 0; k < 3 && !r; k++) { /* 2023-style per-expert 2-D tensors: blk.N.ffn_gate.E.weight */
        long long e;
        int m2 = 0;
        char pat[64];
        snprintf(pat, sizeof pat, "%s.%%lld.weight%%n", legacy_gguf[k]);
        if (sscanf(rest, pat, &e, &m2) == 1 && m2 > 0 && rest[m2] == 0 && e >= 0 && e < c->n_expert) {
            mk_arch_format(hf, sizeof hf, expert_role(ad, k)->hf, l, e, ad->moe_block);
            return add(m, hf, t, gt);
        }
    }
    if (!r) return add_other(m, gt);
    mk_arch_format(hf, sizeof hf, r->hf, l, -1, ad->moe_block);
    mk_tensor v = *t;
    if (r->flags & MK_ROLE_GGUF_VECTOR) {
        if (t->ndim == 1) { /* llama.cpp's [n] → HF's [1, n] */
            v.ndim = 2;
            v.shape[0] = 1;
            v.shape[1] = t->shape[0];
        } else if (t->ndim == 2 && t->shape[1] == 1 && t->shape[0] != 1) { /* ne [1, n] written transposed: same bytes */
            v.shape[0] = 1;
            v.shape[1] = t->shape[0];
        }
    }
    if (ad->gguf_rope_norm && (r->flags & (MK_ROLE_PERM_Q | MK_ROLE_PERM_K))) {
        mk_status st = unpermute(m, gt, (r->flags & MK_ROLE_PERM_Q) ? c->n_head : c->n_kv_head, &v);
        if (st) return st;
    }
    return add(m, hf, &v, gt);
}

mk_status mk_gguf_model_open(mk_model *m, const char *path) {
    mk_status st = mk_gguf_open(&m->gguf, path);
    if (st) return st;
    const mk_arch_desc *ad = NULL;
    if ((st = gguf_config(&m->cfg, m->gguf, &ad))) return st;
    if ((st = mk_st_new_table(&m->st, path, path))) return st;
    for (size_t i = 0; i < m->gguf->n_tensors; i++)
        if ((st = add_tensor(m, &m->gguf->tensors[i], ad))) return st;
    return mk_st_finish(m->st);
}
