/* config.json → mk_config, with each architecture's quirks (research/formats.md §1-§4). */
#include "arch.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The largest value moekit accepts for a size field: far above any real model, small enough that
 * what is allocated from it stays sane (a malformed config must not ask for terabytes). */
static int64_t limit_of(const char *key) {
    static const struct {
        const char *key;
        int64_t max;
    } lim[] = {
        {"num_hidden_layers", 4096},     {"num_attention_heads", 4096},  {"num_key_value_heads", 4096},
        {"head_dim", 65536},             {"num_local_experts", 65536},   {"num_experts", 65536},
        {"num_experts_per_tok", 65536},  {"vocab_size", 1 << 24},        {"hidden_size", 1 << 20},
        {"intermediate_size", 1 << 24},  {"moe_intermediate_size", 1 << 24}, {"shared_expert_intermediate_size", 1 << 24},
        {"decoder_sparse_step", 4096},   {"q_lora_rank", 1 << 20},       {"kv_lora_rank", 1 << 20},
        {"qk_nope_head_dim", 65536},     {"qk_rope_head_dim", 65536},    {"v_head_dim", 65536},
        {"n_routed_experts", 65536},     {"n_shared_experts", 65536},    {"n_group", 65536},
        {"topk_group", 65536},           {"first_k_dense_replace", 4096}, {"moe_layer_freq", 4096},
    };
    for (size_t i = 0; i < sizeof lim / sizeof lim[0]; i++)
        if (!strcmp(key, lim[i].key)) return lim[i].max;
    return (int64_t)1 << 40;
}

/* Reads an integer field; `dflt` < 0 means required. */
static mk_status get_int(json_t *root, const char *path, const char *key, int64_t dflt, int64_t min, int64_t *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (dflt < 0) return mk_err(MK_ERR_MISSING, "%s: field '%s' is missing", path, key);
        *out = dflt;
        return MK_OK;
    }
    if (!json_is_integer(v)) return mk_err(MK_ERR_FORMAT, "%s: field '%s' must be an integer", path, key);
    json_int_t x = json_integer_value(v);
    if (x < min || x > limit_of(key))
        return mk_err(MK_ERR_FORMAT, "%s: field '%s' = %lld is out of range [%lld, %lld]", path, key, (long long)x, (long long)min, (long long)limit_of(key));
    *out = (int64_t)x;
    return MK_OK;
}

static mk_status get_num(json_t *root, const char *path, const char *key, double dflt, bool required, double *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required) return mk_err(MK_ERR_MISSING, "%s: field '%s' is missing", path, key);
        *out = dflt;
        return MK_OK;
    }
    if (!json_is_number(v)) return mk_err(MK_ERR_FORMAT, "%s: field '%s' must be a number", path, key);
    *out = json_number_value(v);
    return MK_OK;
}

static mk_status get_bool(json_t *root, const char *path, const char *key, bool dflt, bool *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) { *out = dflt; return MK_OK; }
    if (!json_is_boolean(v)) return mk_err(MK_ERR_FORMAT, "%s: field '%s' must be true or false", path, key);
    *out = json_is_true(v);
    return MK_OK;
}

/* First of several spellings that is present. */
static const char *pick(json_t *root, const char *a, const char *b) {
    json_t *v = json_object_get(root, a);
    return (v && !json_is_null(v)) ? a : b;
}

/* RoPE, with the precedence transformers 5 applies (configuration_utils → convert_rope_params_to_dict,
 * standardize_rope_params): a top-level rope_scaling (v4 spelling, or a model card's long-context
 * advice added to a v5 config) REPLACES rope_parameters; rope_theta comes from that dict, else the
 * top level, else 10000; the type from its rope_type, else type, else default. YaRN reads factor
 * (null: max_position_embeddings / original), original_max_position_embeddings (a top-level field of
 * that name wins; absent: max_position_embeddings), beta_fast / beta_slow (absent or 0: 32 / 1),
 * mscale, mscale_all_dim, attention_factor and truncate (research/formats.md §10). Any other type, or
 * a key moekit does not know inside the dict, is an error: it would change the frequencies. */
static mk_status parse_rope(json_t *root, const char *path, mk_config *cfg) {
    json_t *rs = json_object_get(root, "rope_scaling"), *rp = json_object_get(root, "rope_parameters");
    const char *field = "rope_parameters";
    if (rs && !json_is_null(rs) && !(json_is_object(rs) && json_object_size(rs) == 0)) { rp = rs; field = "rope_scaling"; }
    if (rp && json_is_null(rp)) rp = NULL;
    if (rp && !json_is_object(rp)) return mk_err(MK_ERR_FORMAT, "%s: field '%s' must be an object", path, field);
    double theta = 10000.0;
    mk_status st = get_num(root, path, "rope_theta", 10000.0, false, &theta);
    if (st) return st;
    cfg->rope_attn_factor = 1.0f;
    if (rp) {
        if ((st = get_num(rp, path, "rope_theta", theta, false, &theta))) return mk_err_prefix(st, "%s", field);
        const char *key = "rope_type";
        json_t *t = json_object_get(rp, key);
        if (!t || json_is_null(t)) t = json_object_get(rp, key = "type");
        const char *type = t && !json_is_null(t) ? (json_is_string(t) ? json_string_value(t) : "?") : "default";
        if (!strcmp(type, "yarn")) {
            static const char *const known_keys[] = {"rope_type", "type", "rope_theta", "factor", "original_max_position_embeddings", "beta_fast",
                                                     "beta_slow", "mscale", "mscale_all_dim", "attention_factor", "truncate", "partial_rotary_factor"};
            const char *k;
            json_t *v;
            json_object_foreach(rp, k, v) {
                size_t n = 0;
                while (n < sizeof known_keys / sizeof *known_keys && strcmp(k, known_keys[n])) n++;
                if (n == sizeof known_keys / sizeof *known_keys)
                    return mk_err(MK_ERR_UNSUPPORTED, "%s: field '%s.%s' is not supported with YaRN RoPE", path, field, k);
            }
            cfg->yarn = true;
            json_t *top_orig = json_object_get(root, "original_max_position_embeddings");
            json_t *orig_src = top_orig && !json_is_null(top_orig) ? root : rp;
            double orig = (double)cfg->n_ctx_train, f, af;
            if ((st = get_num(orig_src, path, "original_max_position_embeddings", orig, false, &orig))) return orig_src == rp ? mk_err_prefix(st, "%s", field) : st;
            if (!(orig >= 1)) return mk_err(MK_ERR_FORMAT, "%s: YaRN needs '%s.original_max_position_embeddings' (or max_position_embeddings) of at least 1", path, field);
            cfg->yarn_orig_ctx = (int64_t)orig;
            if (!json_object_get(rp, "factor")) return mk_err(MK_ERR_MISSING, "%s: field '%s.factor' is missing (YaRN)", path, field);
            if ((st = get_num(rp, path, "factor", (double)cfg->n_ctx_train / orig, false, &f))) return mk_err_prefix(st, "%s", field);
            if (!(f > 0)) return mk_err(MK_ERR_FORMAT, "%s: field '%s.factor' must be positive", path, field);
            cfg->yarn_factor = f;
            if ((st = get_num(rp, path, "beta_fast", 0, false, &cfg->yarn_beta_fast))) return mk_err_prefix(st, "%s", field);
            if ((st = get_num(rp, path, "beta_slow", 0, false, &cfg->yarn_beta_slow))) return mk_err_prefix(st, "%s", field);
            if (cfg->yarn_beta_fast == 0) cfg->yarn_beta_fast = 32; /* transformers: `.get("beta_fast") or 32` */
            if (cfg->yarn_beta_slow == 0) cfg->yarn_beta_slow = 1;
            if ((st = get_num(rp, path, "mscale", 0, false, &cfg->yarn_mscale))) return mk_err_prefix(st, "%s", field);
            if ((st = get_num(rp, path, "mscale_all_dim", 0, false, &cfg->yarn_mscale_all_dim))) return mk_err_prefix(st, "%s", field);
            if ((st = get_bool(rp, path, "truncate", true, &cfg->yarn_truncate))) return mk_err_prefix(st, "%s", field);
            /* get_mscale(s, m) = 0.1 m ln s + 1 (1 for s <= 1) */
#define MSCALE(s, m) ((s) <= 1 ? 1.0 : 0.1 * (m) * log(s) + 1.0)
            if ((st = get_num(rp, path, "attention_factor", 0, false, &af))) return mk_err_prefix(st, "%s", field);
            if (!json_object_get(rp, "attention_factor") || json_is_null(json_object_get(rp, "attention_factor")))
                af = cfg->yarn_mscale != 0 && cfg->yarn_mscale_all_dim != 0 ? MSCALE(f, cfg->yarn_mscale) / MSCALE(f, cfg->yarn_mscale_all_dim) : MSCALE(f, 1.0);
#undef MSCALE
            cfg->rope_attn_factor = (float)af;
        } else if (!strcmp(type, "longrope") && cfg->arch != MK_ARCH_PHIMOE) {
            return mk_err(MK_ERR_UNSUPPORTED, "%s: field '%s.%s' = 'longrope' is supported for PhimoeForCausalLM only (default and yarn are for %s)", path, field, key, cfg->arch_name);
        } else if (!strcmp(type, "longrope")) {
            /* Phi-MoE's LongRoPE (research/formats.md §7): per-frequency factors, the short set up
             * to original_max_position_embeddings and the long set beyond, and Phi-MoE's own
             * short_mscale / long_mscale on cos and sin (its forward reads them from the config) */
            static const char *const known_keys[] = {"rope_type", "type", "rope_theta", "short_factor", "long_factor", "short_mscale", "long_mscale",
                                                     "original_max_position_embeddings", "factor", "attention_factor"};
            const char *k;
            json_t *v;
            json_object_foreach(rp, k, v) {
                size_t n = 0;
                while (n < sizeof known_keys / sizeof *known_keys && strcmp(k, known_keys[n])) n++;
                if (n == sizeof known_keys / sizeof *known_keys) return mk_err(MK_ERR_UNSUPPORTED, "%s: field '%s.%s' is not supported with LongRoPE", path, field, k);
            }
            const size_t half = (size_t)cfg->d_head / 2;
            const char *fk[2] = {"short_factor", "long_factor"};
            float **dst[2] = {&cfg->rope_short, &cfg->rope_long};
            for (int i = 0; i < 2; i++) {
                json_t *a = json_object_get(rp, fk[i]);
                if (!json_is_array(a) || json_array_size(a) != half)
                    return mk_err(MK_ERR_FORMAT, "%s: field '%s.%s' must be a list of %zu numbers (head_dim / 2)", path, field, fk[i], half);
                if (!(*dst[i] = mk_malloc(half * sizeof(float)))) return MK_ERR_NOMEM;
                for (size_t j = 0; j < half; j++) {
                    json_t *x = json_array_get(a, j);
                    if (!json_is_number(x) || !(json_number_value(x) > 0)) return mk_err(MK_ERR_FORMAT, "%s: field '%s.%s[%zu]' must be a positive number", path, field, fk[i], j);
                    (*dst[i])[j] = (float)json_number_value(x);
                }
            }
            double sm, lm, orig;
            const char *mkeys[2] = {"short_mscale", "long_mscale"};
            double *mv[2] = {&sm, &lm};
            for (int i = 0; i < 2; i++) {
                json_t *mv_json = json_object_get(rp, mkeys[i]);
                if (!mv_json || json_is_null(mv_json)) return mk_err(MK_ERR_MISSING, "%s: field '%s.%s' is missing (Phi-MoE's LongRoPE applies it to cos and sin)", path, field, mkeys[i]);
                if (!json_is_number(mv_json)) return mk_err(MK_ERR_FORMAT, "%s: field '%s.%s' must be a number", path, field, mkeys[i]);
                *mv[i] = json_number_value(mv_json);
            }
            json_t *top_orig = json_object_get(root, "original_max_position_embeddings");
            json_t *orig_src = json_object_get(rp, "original_max_position_embeddings") ? rp : top_orig && !json_is_null(top_orig) ? root : rp;
            if ((st = get_num(orig_src, path, "original_max_position_embeddings", 0, true, &orig))) return st;
            if (!(sm > 0 && lm > 0 && orig >= 1)) return mk_err(MK_ERR_FORMAT, "%s: LongRoPE needs positive short_mscale, long_mscale and original_max_position_embeddings", path);
            cfg->longrope = true;
            cfg->short_mscale = (float)sm;
            cfg->long_mscale = (float)lm;
            cfg->longrope_orig = (int64_t)orig;
        } else if (strcmp(type, "default")) {
            return mk_err(MK_ERR_UNSUPPORTED, "%s: field '%s.%s' = '%s' is not supported (default and yarn are); moekit will not run with a RoPE other than the one the config asks for",
                          path, field, key, type);
        }
    }
    if (!(theta > 0)) return mk_err(MK_ERR_FORMAT, "%s: field 'rope_theta' must be positive", path);
    cfg->rope_theta = (float)theta;
    /* partial_rotary_factor: in the RoPE dict (v5) or at the top level (v4); 0 = not given */
    json_t *src = rp && json_object_get(rp, "partial_rotary_factor") && !json_is_null(json_object_get(rp, "partial_rotary_factor")) ? rp : root;
    if ((st = get_num(src, path, "partial_rotary_factor", 0, false, &cfg->rope_partial))) return st;
    if (cfg->rope_partial < 0 || cfg->rope_partial > 1) return mk_err(MK_ERR_FORMAT, "%s: field 'partial_rotary_factor' must be in (0, 1]", path);
    return MK_OK;
}

bool mk_rope_long(const mk_config *cfg, size_t n_ctx) { return cfg->longrope && (int64_t)n_ctx > cfg->longrope_orig; }

float mk_rope_mscale(const mk_config *cfg, bool long_rope) {
    if (cfg->longrope) return long_rope ? cfg->long_mscale : cfg->short_mscale;
    return cfg->rope_attn_factor;
}

void mk_rope_inv_freq(const mk_config *cfg, int64_t dim, bool long_rope, float *inv) {
    const int64_t half = dim / 2;
    if (cfg->longrope) { /* transformers' _compute_longrope_parameters, in f32 */
        const float *ext = long_rope ? cfg->rope_long : cfg->rope_short;
        for (int64_t i = 0; i < half; i++) inv[i] = 1.0f / (ext[i] * powf(cfg->rope_theta, (float)(2 * i) / (float)dim));
        return;
    }
    if (!cfg->yarn) {
        for (int64_t i = 0; i < half; i++) inv[i] = 1.0f / powf(cfg->rope_theta, (float)(2 * i) / (float)dim);
        return;
    }
    /* transformers' _compute_yarn_parameters, step by step in the same precisions: the correction
     * range in double (Python floats), the ramp and the blend in f32 (torch tensors). */
    const double base = cfg->rope_theta, two_pi = 2 * 3.14159265358979323846;
    double lo = (double)dim * log((double)cfg->yarn_orig_ctx / (cfg->yarn_beta_fast * two_pi)) / (2 * log(base));
    double hi = (double)dim * log((double)cfg->yarn_orig_ctx / (cfg->yarn_beta_slow * two_pi)) / (2 * log(base));
    if (cfg->yarn_truncate) { lo = floor(lo); hi = ceil(hi); }
    lo = lo > 0 ? lo : 0;
    hi = hi < (double)(dim - 1) ? hi : (double)(dim - 1);
    if (lo == hi) hi += 0.001;
    const float flo = (float)lo, span = (float)(hi - lo), f = (float)cfg->yarn_factor;
    for (int64_t i = 0; i < half; i++) {
        float pos = powf(cfg->rope_theta, (float)(2 * i) / (float)dim);
        float extrap = 1.0f / pos, interp = 1.0f / (f * pos);
        float ramp = ((float)i - flo) / span;
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        float keep = 1.0f - ramp; /* the extrapolation share */
        inv[i] = interp * (1.0f - keep) + extrap * keep;
    }
}

static int32_t token_id(json_t *root, const char *key) {
    json_t *v = json_object_get(root, key);
    if (json_is_array(v)) v = json_array_get(v, 0);
    return json_is_integer(v) ? (int32_t)json_integer_value(v) : -1;
}

/* moekit_experts_per_layer: (n_layer) expert counts of a model pruned with a global budget, 0 (or
 * null) for dense layers, each MoE layer's in [num_experts_per_tok, num_experts]. A moekit-only
 * field: transformers and llama.cpp hold one expert count per model. */
static mk_status parse_layer_experts(json_t *root, const char *path, mk_config *cfg) {
    static const char key[] = "moekit_experts_per_layer";
    json_t *a = json_object_get(root, key);
    if (!a || json_is_null(a)) return MK_OK;
    if (!json_is_array(a) || (int64_t)json_array_size(a) != cfg->n_layer)
        return mk_err(MK_ERR_FORMAT, "%s: field '%s' must be a list of %lld expert counts, one per layer", path, key, (long long)cfg->n_layer);
    int64_t *n = mk_calloc((size_t)cfg->n_layer, sizeof *n);
    if (!n) return MK_ERR_NOMEM;
    bool differ = false;
    for (int64_t l = 0; l < cfg->n_layer; l++) {
        json_t *v = json_array_get(a, (size_t)l);
        int64_t x = json_is_integer(v) ? (int64_t)json_integer_value(v) : json_is_null(v) ? 0 : -1;
        bool ok = cfg->layer_moe[l] ? x >= cfg->k_active && x <= cfg->n_expert : x == 0;
        if (!ok) {
            free(n);
            if (cfg->layer_moe[l])
                return mk_err(MK_ERR_FORMAT, "%s: field '%s[%lld]' must be an expert count in [num_experts_per_tok = %lld, num_experts = %lld]", path, key,
                              (long long)l, (long long)cfg->k_active, (long long)cfg->n_expert);
            return mk_err(MK_ERR_FORMAT, "%s: field '%s[%lld]' must be 0: layer %lld is dense", path, key, (long long)l, (long long)l);
        }
        n[l] = x;
        differ |= cfg->layer_moe[l] && x != cfg->n_expert;
    }
    if (differ) cfg->n_expert_layer = n;
    else free(n);
    return MK_OK;
}

void mk_config_defaults(mk_config *c) {
    c->rope_dim = c->v_head = c->d_head;
    c->attn_scale = 1.0f / sqrtf((float)c->d_head);
    c->routed_scale = 1.0f;
    c->n_group = c->topk_group = 1;
}

static mk_status get_str(json_t *root, const char *path, const char *key, const char *dflt, const char **out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) { *out = dflt; return MK_OK; }
    if (!json_is_string(v)) return mk_err(MK_ERR_FORMAT, "%s: field '%s' must be a string", path, key);
    *out = json_string_value(v);
    return MK_OK;
}

void mk_config_mla_scale(mk_config *c) {
    double scale = 1.0 / sqrt((double)c->d_head);
    if (c->yarn && c->yarn_mscale_all_dim != 0 && c->yarn_factor > 1) {
        const double ms = 0.1 * c->yarn_mscale_all_dim * log(c->yarn_factor) + 1.0;
        scale *= ms * ms;
    }
    c->attn_scale = (float)scale;
}

mk_status mk_config_check_groups(const char *path, const mk_config *cfg) {
    const int64_t ng = cfg->n_group, tg = cfg->topk_group;
    if (ng > 256 || cfg->n_expert % ng || tg > ng || (cfg->group_top2 && cfg->n_expert / ng < 2) || cfg->k_active > tg * (cfg->n_expert / ng))
        return mk_err(MK_ERR_FORMAT, "%s: fields 'n_group' (%lld) and 'topk_group' (%lld) do not fit %lld experts with %lld chosen per token", path, (long long)ng,
                      (long long)tg, (long long)cfg->n_expert, (long long)cfg->k_active);
    return MK_OK;
}

/* GLM-4.5/4.6/4.7 (research/formats-2026.md §1) with transformers' defaults: grouped-query attention
 * with q/k/v biases (attention_bias; never on o_proj), per-head q/k norms when use_qk_norm, half-
 * rotation RoPE on the first head_dim · partial_rotary_factor (default 0.5) dims; DeepSeek-V3's
 * MoE block (sigmoid + selection bias, groups, norm_topk_prob default true, routed_scaling_factor
 * default 1.0, ungated shared experts), dense layers before first_k_dense_replace (default 1). */
static mk_status parse_glm4_moe(json_t *root, const char *path, mk_config *cfg) {
    mk_status st;
    int64_t n_shared, first_dense;
    bool b = false;
    if ((st = get_int(root, path, "moe_intermediate_size", -1, 1, &cfg->d_ff_expert)) || (st = get_int(root, path, "intermediate_size", -1, 1, &cfg->d_ff_dense)) ||
        (st = get_int(root, path, "n_shared_experts", 1, 0, &n_shared)) || (st = get_int(root, path, "first_k_dense_replace", 1, 0, &first_dense)) ||
        (st = get_int(root, path, "n_group", 1, 1, &cfg->n_group)) || (st = get_int(root, path, "topk_group", 1, 1, &cfg->topk_group)))
        return st;
    if ((st = get_bool(root, path, "attention_bias", false, &b))) return st;
    cfg->attn_bias = b; /* q, k and v only */
    if ((st = get_bool(root, path, "use_qk_norm", false, &b))) return st;
    cfg->qk_norm = b ? MK_QKNORM_HEAD : MK_QKNORM_NONE;
    const double pf = cfg->rope_partial > 0 ? cfg->rope_partial : 0.5;
    cfg->rope_dim = (int64_t)((double)cfg->d_head * pf); /* int(head_dim * factor), as transformers */
    if (cfg->rope_dim < 2 || cfg->rope_dim % 2)
        return mk_err(MK_ERR_FORMAT, "%s: field 'partial_rotary_factor' (%g) gives %lld rotary dims of a %lld-dim head; they must be even and at least 2", path, pf,
                      (long long)cfg->rope_dim, (long long)cfg->d_head);
    if ((st = get_bool(root, path, "norm_topk_prob", true, &cfg->norm_topk))) return st;
    double rs;
    if ((st = get_num(root, path, "routed_scaling_factor", 1.0, false, &rs))) return st;
    if (!(rs > 0)) return mk_err(MK_ERR_FORMAT, "%s: field 'routed_scaling_factor' must be positive", path);
    cfg->routed_scale = (float)rs;
    cfg->sigmoid = cfg->sel_bias = cfg->group_top2 = true;
    cfg->shared_expert = n_shared > 0;
    cfg->d_ff_shared = cfg->d_ff_expert * n_shared;
    for (int64_t l = 0; l < cfg->n_layer; l++) cfg->layer_moe[l] = l >= first_dense;
    return mk_config_check_groups(path, cfg);
}

/* DeepSeek-V2/V3 (research/formats.md §5), with transformers' defaults where a field is absent. MLA:
 * d_head is the q/k head (qk_nope + qk_rope; transformers saves head_dim = qk_rope, the rotary part),
 * num_key_value_heads is nominal and must equal num_attention_heads. Routing: V2 softmax with greedy
 * or group-limited greedy top-k (group score = its maximum), never renormalised in transformers; V3
 * sigmoid with the selection bias, groups scored by their top two (noaux_tc). The softmax scale is
 * (qk_nope + qk_rope)^-0.5, times m² with m = 0.1·mscale_all_dim·ln(factor) + 1 under YaRN. */
static mk_status parse_deepseek(json_t *root, const char *path, mk_config *cfg) {
    const bool v3 = cfg->arch == MK_ARCH_DEEPSEEK_V3;
    mk_status st;
    int64_t n_shared, first_dense, freq;
#define DINT(key, dflt, min, dst) if ((st = get_int(root, path, key, dflt, min, dst))) return st
    DINT("moe_intermediate_size", -1, 1, &cfg->d_ff_expert);
    DINT("intermediate_size", -1, 1, &cfg->d_ff_dense);
    DINT("n_shared_experts", v3 ? 1 : 2, 0, &n_shared);
    DINT("first_k_dense_replace", v3 ? 3 : 0, 0, &first_dense);
    DINT("moe_layer_freq", 1, 1, &freq);
    DINT("q_lora_rank", 0, 1, &cfg->q_lora_rank); /* null: a plain q_proj */
    DINT("kv_lora_rank", -1, 1, &cfg->kv_lora_rank);
    DINT("qk_nope_head_dim", -1, 0, &cfg->qk_nope);
    DINT("qk_rope_head_dim", -1, 2, &cfg->qk_rope);
    DINT("v_head_dim", -1, 1, &cfg->v_head);
#undef DINT
    if (freq != 1) /* transformers ignores it, DeepSeek's code does not */
        return mk_err(MK_ERR_UNSUPPORTED, "%s: field 'moe_layer_freq' = %lld is not supported (implementations disagree on it; only 1)", path, (long long)freq);
    if (cfg->qk_rope % 2) return mk_err(MK_ERR_FORMAT, "%s: field 'qk_rope_head_dim' (%lld) must be even for RoPE", path, (long long)cfg->qk_rope);
    if (cfg->n_kv_head != cfg->n_head)
        return mk_err(MK_ERR_FORMAT, "%s: field 'num_key_value_heads' (%lld) must equal 'num_attention_heads' (%lld) in multi-head latent attention", path,
                      (long long)cfg->n_kv_head, (long long)cfg->n_head);
    bool b;
    if ((st = get_bool(root, path, "attention_bias", false, &b))) return st;
    if (b) return mk_err(MK_ERR_UNSUPPORTED, "%s: field 'attention_bias' = true is not supported for %s", path, cfg->arch_name);
    cfg->mla = true;
    cfg->d_head = cfg->qk_nope + cfg->qk_rope;
    cfg->rope_dim = cfg->qk_rope;
    cfg->attn_bias = 0;
    cfg->rope_interleave = true; /* V2: complex rotation of pairs; V3: rope_interleave, default true */
    if (v3 && (st = get_bool(root, path, "rope_interleave", true, &cfg->rope_interleave))) return st;
    mk_config_mla_scale(cfg);
    cfg->shared_expert = n_shared > 0;
    cfg->d_ff_shared = cfg->d_ff_expert * n_shared;
    for (int64_t l = 0; l < cfg->n_layer; l++) cfg->layer_moe[l] = l >= first_dense;

    const char *scoring, *method;
    if ((st = get_str(root, path, "scoring_func", v3 ? "sigmoid" : "softmax", &scoring))) return st;
    if ((st = get_str(root, path, "topk_method", v3 ? "noaux_tc" : "greedy", &method))) return st;
    if (strcmp(scoring, v3 ? "sigmoid" : "softmax"))
        return mk_err(MK_ERR_UNSUPPORTED, "%s: field 'scoring_func' = '%s' is not supported for %s (transformers uses %s)", path, scoring, cfg->arch_name, v3 ? "sigmoid" : "softmax");
    double rs;
    if ((st = get_num(root, path, "routed_scaling_factor", v3 ? 2.5 : 1.0, false, &rs))) return st;
    if (!(rs > 0)) return mk_err(MK_ERR_FORMAT, "%s: field 'routed_scaling_factor' must be positive", path);
    cfg->routed_scale = (float)rs;
    int64_t ng = 1, tg = 1;
    if (v3) {
        if (strcmp(method, "noaux_tc"))
            return mk_err(MK_ERR_UNSUPPORTED, "%s: field 'topk_method' = '%s' is not supported for %s (noaux_tc)", path, method, cfg->arch_name);
        cfg->sigmoid = cfg->sel_bias = cfg->group_top2 = true;
        if ((st = get_bool(root, path, "norm_topk_prob", true, &cfg->norm_topk))) return st;
        if ((st = get_int(root, path, "n_group", 8, 1, &ng)) || (st = get_int(root, path, "topk_group", 4, 1, &tg))) return st;
    } else {
        if ((st = get_bool(root, path, "norm_topk_prob", false, &b))) return st;
        if (b) /* transformers' V2 router never renormalises; DeepSeek's code does when it is set */
            return mk_err(MK_ERR_UNSUPPORTED, "%s: field 'norm_topk_prob' = true is not supported for %s (implementations disagree on it)", path, cfg->arch_name);
        if (!strcmp(method, "group_limited_greedy")) {
            if ((st = get_int(root, path, "n_group", -1, 1, &ng)) || (st = get_int(root, path, "topk_group", -1, 1, &tg))) return st;
        } else if (strcmp(method, "greedy")) {
            return mk_err(MK_ERR_UNSUPPORTED, "%s: field 'topk_method' = '%s' is not supported for %s (greedy, group_limited_greedy)", path, method, cfg->arch_name);
        }
    }
    cfg->n_group = ng;
    cfg->topk_group = tg;
    return mk_config_check_groups(path, cfg);
}

/* GPT-OSS (research/formats-2026.md §2) with transformers' defaults: grouped-query attention with
 * biases on q, k, v and o (attention_bias, default true), a sink logit per head, layer_types naming
 * each layer sliding_attention (window sliding_window, default 128) or full_attention (default:
 * alternating, sliding first), every layer MoE with intermediate_size experts, a router with a bias
 * whose top-k logits are softmaxed (= softmax then renormalised over the top k), the experts'
 * clamped SwiGLU with swiglu_alpha (1.702) and swiglu_limit (7.0). */
static mk_status parse_gpt_oss(json_t *root, const char *path, mk_config *cfg) {
    mk_status st;
    bool b = true;
    double alpha, limit;
    if ((st = get_int(root, path, "intermediate_size", -1, 1, &cfg->d_ff_expert)) || (st = get_bool(root, path, "attention_bias", true, &b)) ||
        (st = get_int(root, path, "sliding_window", 128, 1, &cfg->sliding_window)) || (st = get_num(root, path, "swiglu_alpha", 1.702, false, &alpha)) ||
        (st = get_num(root, path, "swiglu_limit", 7.0, false, &limit)))
        return st;
    if (!(limit > 0) || !isfinite(alpha)) return mk_err(MK_ERR_FORMAT, "%s: fields 'swiglu_limit' (%g) and 'swiglu_alpha' (%g) must be finite, the limit positive", path, limit, alpha);
    cfg->attn_bias = b;
    cfg->o_bias = b;
    cfg->attn_sinks = cfg->router_logit_bias = cfg->expert_bias = cfg->swiglu_oai = true;
    cfg->swiglu_alpha = (float)alpha;
    cfg->swiglu_limit = (float)limit;
    cfg->norm_topk = true;
    if (!(cfg->layer_swa = mk_calloc((size_t)cfg->n_layer, sizeof(bool)))) return MK_ERR_NOMEM;
    json_t *lt = json_object_get(root, "layer_types");
    if (!lt || json_is_null(lt)) {
        for (int64_t l = 0; l < cfg->n_layer; l++) cfg->layer_swa[l] = l % 2 == 0;
        return MK_OK;
    }
    if (!json_is_array(lt) || (int64_t)json_array_size(lt) != cfg->n_layer)
        return mk_err(MK_ERR_FORMAT, "%s: field 'layer_types' must be a list of %lld layer types, one per layer", path, (long long)cfg->n_layer);
    for (int64_t l = 0; l < cfg->n_layer; l++) {
        json_t *v = json_array_get(lt, (size_t)l);
        const char *t = json_is_string(v) ? json_string_value(v) : "";
        if (strcmp(t, "sliding_attention") && strcmp(t, "full_attention"))
            return mk_err(MK_ERR_UNSUPPORTED, "%s: field 'layer_types[%lld]' = '%s' is not supported (sliding_attention, full_attention)", path, (long long)l, t);
        cfg->layer_swa[l] = t[0] == 's';
    }
    return MK_OK;
}

/* Phi-3.5-MoE (research/formats.md §7) with transformers' defaults: LayerNorm with biases (eps =
 * rms_norm_eps) for the block and final norms, q/k/v/o biases when attention_bias (default false;
 * true in the release), an LM-head bias when lm_head_bias, Mixtral's expert layout under
 * block_sparse_moe, sparsemixer routing with eps = router_jitter_noise (default 0.01) for k = 2,
 * a sliding window when sliding_window is set. */
static mk_status parse_phimoe(json_t *root, const char *path, mk_config *cfg) {
    mk_status st;
    bool ab = false, lb = false;
    double eps;
    if ((st = get_int(root, path, "intermediate_size", -1, 1, &cfg->d_ff_expert)) || (st = get_bool(root, path, "attention_bias", false, &ab)) ||
        (st = get_bool(root, path, "lm_head_bias", false, &lb)) || (st = get_num(root, path, "router_jitter_noise", 0.01, false, &eps)) ||
        (st = get_int(root, path, "sliding_window", 0, 0, &cfg->sliding_window)))
        return st;
    if (!(eps > 0 && eps < 1)) return mk_err(MK_ERR_FORMAT, "%s: field 'router_jitter_noise' (%g) must be in (0, 1): it is the sparsemixer's epsilon at inference", path, eps);
    if (cfg->k_active != 2) return mk_err(MK_ERR_UNSUPPORTED, "%s: field 'num_experts_per_tok' = %lld: PhiMoE's sparsemixer routing chooses 2 experts", path, (long long)cfg->k_active);
    cfg->attn_bias = ab;
    cfg->o_bias = ab;
    cfg->lm_head_bias = lb;
    cfg->layernorm = true;
    cfg->sparsemixer_eps = (float)eps;
    return MK_OK;
}

int64_t mk_layer_window(const mk_config *c, int64_t l) {
    if (c->sliding_window <= 0) return 0;
    return !c->layer_swa || c->layer_swa[l] ? c->sliding_window : 0;
}

void mk_config_free(mk_config *cfg) {
    if (!cfg) return;
    free(cfg->layer_moe);
    free(cfg->n_expert_layer);
    free(cfg->layer_swa);
    free(cfg->rope_short);
    free(cfg->rope_long);
    cfg->layer_moe = NULL;
    cfg->n_expert_layer = NULL;
    cfg->layer_swa = NULL;
    cfg->rope_short = cfg->rope_long = NULL;
}

mk_status mk_config_parse(mk_config *cfg, const char *text, const char *path) {
    memset(cfg, 0, sizeof *cfg);
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    if (!root) return mk_err(MK_ERR_FORMAT, "%s: malformed JSON: %s (line %d, column %d)", path, jerr.text, jerr.line, jerr.column);
    mk_status st = MK_OK;
    if (!json_is_object(root)) { st = mk_err(MK_ERR_FORMAT, "%s: not a JSON object", path); goto out; }

    /* Architecture: architectures[0], else model_type. */
    json_t *archs = json_object_get(root, "architectures"), *mt = json_object_get(root, "model_type");
    const char *cls = json_is_array(archs) && json_is_string(json_array_get(archs, 0)) ? json_string_value(json_array_get(archs, 0)) : NULL;
    const char *type = json_is_string(mt) ? json_string_value(mt) : NULL;
    if (!cls && !type) { st = mk_err(MK_ERR_MISSING, "%s: field 'architectures' (or 'model_type') is missing", path); goto out; }
    const mk_arch_desc *ad = mk_arch_by_hf(cls, type);
    if (!ad) {
        st = mk_err(MK_ERR_UNSUPPORTED, "%s: field '%s' = '%s' is not a supported architecture (supported: MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, OlmoeForCausalLM, DeepseekV2ForCausalLM, DeepseekV3ForCausalLM, Glm4MoeForCausalLM, GptOssForCausalLM, PhimoeForCausalLM)",
                    path, cls ? "architectures" : "model_type", cls ? cls : type);
        goto out;
    }
    cfg->arch = ad->arch;
    snprintf(cfg->arch_name, sizeof cfg->arch_name, "%s", ad->hf_class);
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", ad->model_type);

    json_t *act = json_object_get(root, "hidden_act");
    if (act && !(json_is_string(act) && strcmp(json_string_value(act), "silu") == 0)) {
        st = mk_err(MK_ERR_UNSUPPORTED, "%s: field 'hidden_act' = '%s' is not supported (only silu)", path, json_is_string(act) ? json_string_value(act) : "?");
        goto out;
    }

#define INT(key, dflt, min, dst) if ((st = get_int(root, path, key, dflt, min, dst))) goto out
    INT("vocab_size", -1, 1, &cfg->vocab);
    INT("hidden_size", -1, 1, &cfg->d_model);
    INT("num_hidden_layers", -1, 1, &cfg->n_layer);
    INT("num_attention_heads", -1, 1, &cfg->n_head);
    INT("num_key_value_heads", cfg->n_head, 1, &cfg->n_kv_head);
    if (cfg->d_model % cfg->n_head && !json_object_get(root, "head_dim")) {
        st = mk_err(MK_ERR_FORMAT, "%s: field 'hidden_size' (%lld) is not divisible by 'num_attention_heads' (%lld)", path, (long long)cfg->d_model, (long long)cfg->n_head);
        goto out;
    }
    INT("head_dim", cfg->d_model / cfg->n_head, 1, &cfg->d_head);
    if (cfg->n_head % cfg->n_kv_head) {
        st = mk_err(MK_ERR_FORMAT, "%s: field 'num_attention_heads' (%lld) is not a multiple of 'num_key_value_heads' (%lld)", path, (long long)cfg->n_head, (long long)cfg->n_kv_head);
        goto out;
    }
    if (cfg->d_head % 2) { st = mk_err(MK_ERR_FORMAT, "%s: field 'head_dim' (%lld) must be even for RoPE", path, (long long)cfg->d_head); goto out; }
    const bool deepseek = cfg->arch == MK_ARCH_DEEPSEEK_V2 || cfg->arch == MK_ARCH_DEEPSEEK_V3;
    INT(deepseek || cfg->arch == MK_ARCH_GLM4_MOE ? "n_routed_experts" : pick(root, "num_local_experts", "num_experts"), -1, 1, &cfg->n_expert);
    INT(pick(root, "num_experts_per_tok", "experts_per_token"), -1, 1, &cfg->k_active);
    if (cfg->k_active > cfg->n_expert) {
        st = mk_err(MK_ERR_FORMAT, "%s: field 'num_experts_per_tok' (%lld) exceeds the number of experts (%lld)", path, (long long)cfg->k_active, (long long)cfg->n_expert);
        goto out;
    }
    double eps;
    if ((st = get_num(root, path, "rms_norm_eps", 1e-6, true, &eps))) goto out;
    if (!(eps > 0 && eps < 1)) { st = mk_err(MK_ERR_FORMAT, "%s: field 'rms_norm_eps' must be in (0, 1)", path); goto out; }
    cfg->rms_eps = (float)eps;
    INT("max_position_embeddings", 0, 0, &cfg->n_ctx_train);
    if ((st = parse_rope(root, path, cfg))) goto out;
    if ((st = get_bool(root, path, "tie_word_embeddings", false, &cfg->tie_embed))) goto out;
    INT("num_nextn_predict_layers", 0, 0, &cfg->n_mtp);
    cfg->attn_bias = -1;
    mk_config_defaults(cfg);
    json_t *qc = json_object_get(root, "quantization_config");
    if (qc && !json_is_null(qc)) { /* refused by the loader (mk_model_load); shapes are still known */
        json_t *qm = json_is_object(qc) ? json_object_get(qc, "quant_method") : NULL;
        snprintf(cfg->quant_method, sizeof cfg->quant_method, "%s", json_is_string(qm) ? json_string_value(qm) : "?");
    }
    cfg->bos_id = token_id(root, "bos_token_id");
    cfg->eos_id = token_id(root, "eos_token_id");

    cfg->layer_moe = mk_calloc((size_t)cfg->n_layer, sizeof(bool));
    if (!cfg->layer_moe) { st = MK_ERR_NOMEM; goto out; }
    for (int64_t l = 0; l < cfg->n_layer; l++) cfg->layer_moe[l] = true;

    switch (cfg->arch) {
    case MK_ARCH_MIXTRAL: {
        INT("intermediate_size", -1, 1, &cfg->d_ff_expert);
        cfg->norm_topk = true; /* always renormalised, no flag */
        cfg->attn_bias = 0;
        INT("sliding_window", 0, 0, &cfg->sliding_window);
        break;
    }
    case MK_ARCH_OLMOE: {
        INT("intermediate_size", -1, 1, &cfg->d_ff_expert);
        if ((st = get_bool(root, path, "norm_topk_prob", false, &cfg->norm_topk))) goto out;
        bool b;
        if ((st = get_bool(root, path, "attention_bias", false, &b))) goto out;
        cfg->attn_bias = b;
        cfg->o_bias = b; /* transformers' OlmoeAttention: bias=attention_bias on q, k, v and o */
        cfg->qk_norm = MK_QKNORM_FULL;
        double clip;
        if ((st = get_num(root, path, "clip_qkv", 0, false, &clip))) goto out;
        if (clip < 0) { st = mk_err(MK_ERR_FORMAT, "%s: field 'clip_qkv' must be positive", path); goto out; }
        cfg->clip_qkv = (float)clip;
        break;
    }
    case MK_ARCH_QWEN2_MOE:
    case MK_ARCH_QWEN3_MOE: {
        bool qwen2 = cfg->arch == MK_ARCH_QWEN2_MOE;
        INT("moe_intermediate_size", -1, 1, &cfg->d_ff_expert);
        INT("intermediate_size", 0, 0, &cfg->d_ff_dense);
        if ((st = get_bool(root, path, "norm_topk_prob", false, &cfg->norm_topk))) goto out;
        if (qwen2) {
            INT("shared_expert_intermediate_size", 0, 0, &cfg->d_ff_shared);
            cfg->shared_expert = cfg->shared_gated = cfg->d_ff_shared > 0;
            json_t *qb = json_object_get(root, "qkv_bias");
            cfg->attn_bias = json_is_boolean(qb) ? json_is_true(qb) : 1; /* older configs: always biased */
        } else {
            bool b;
            if ((st = get_bool(root, path, "attention_bias", false, &b))) goto out;
            cfg->attn_bias = b;
            cfg->o_bias = b; /* Qwen3MoeAttention: bias=attention_bias on q, k, v and o */
            cfg->qk_norm = MK_QKNORM_HEAD;
        }
        bool swa;
        if ((st = get_bool(root, path, "use_sliding_window", false, &swa))) goto out;
        if (swa) { st = mk_err(MK_ERR_UNSUPPORTED, "%s: field 'use_sliding_window' = true is not supported yet", path); goto out; }
        int64_t step;
        INT("decoder_sparse_step", 1, 1, &step);
        json_t *mlp_only = json_object_get(root, "mlp_only_layers");
        if (mlp_only && !json_is_null(mlp_only) && !json_is_array(mlp_only)) { st = mk_err(MK_ERR_FORMAT, "%s: field 'mlp_only_layers' must be a list", path); goto out; }
        for (int64_t l = 0; l < cfg->n_layer; l++) cfg->layer_moe[l] = (l + 1) % step == 0;
        size_t i;
        json_t *v;
        json_array_foreach(mlp_only, i, v) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= cfg->n_layer) {
                st = mk_err(MK_ERR_FORMAT, "%s: field 'mlp_only_layers[%zu]' is not a layer index below %lld", path, i, (long long)cfg->n_layer);
                goto out;
            }
            cfg->layer_moe[json_integer_value(v)] = false;
        }
        for (int64_t l = 0; l < cfg->n_layer; l++)
            if (!cfg->layer_moe[l] && cfg->d_ff_dense <= 0) {
                st = mk_err(MK_ERR_MISSING, "%s: field 'intermediate_size' is needed for dense layer %lld", path, (long long)l);
                goto out;
            }
        break;
    }
    case MK_ARCH_DEEPSEEK_V2:
    case MK_ARCH_DEEPSEEK_V3:
        if ((st = parse_deepseek(root, path, cfg))) goto out;
        break;
    case MK_ARCH_GLM4_MOE:
        if ((st = parse_glm4_moe(root, path, cfg))) goto out;
        break;
    case MK_ARCH_GPT_OSS:
        if ((st = parse_gpt_oss(root, path, cfg))) goto out;
        break;
    case MK_ARCH_PHIMOE:
        if ((st = parse_phimoe(root, path, cfg))) goto out;
        break;
    }

    if (cfg->rope_partial > 0 && cfg->rope_partial != 1 && cfg->arch != MK_ARCH_GLM4_MOE) {
        st = mk_err(MK_ERR_UNSUPPORTED, "%s: field 'partial_rotary_factor' = %g is not supported for %s (it rotates every dimension)", path, cfg->rope_partial, cfg->arch_name);
        goto out;
    }
    if ((st = parse_layer_experts(root, path, cfg))) goto out;
#undef INT
out:
    json_decref(root);
    if (st) mk_config_free(cfg);
    return st;
}
