/* Loading: config.json + safetensors → mk_model, with every tensor checked against the config. */
#include "arch.h"
#include "format/gguf.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DIMS(...) ((const int64_t[]){__VA_ARGS__})

typedef struct loader {
    mk_model *m;
    char name[256];
    int64_t params;      /* scalars in the tensors the model uses */
    uint8_t *used;       /* (m->st->n_entries) 1 = read by the loader */
} loader;

bool mk_tensor_known_unused(const char *name, const mk_config *c) {
    const char *p = strstr(name, "rotary_emb.inv_freq");
    if (p && p[strlen("rotary_emb.inv_freq")] == 0) return true; /* recomputed from rope_theta */
    if (!strncmp(name, "mtp.", 4)) return true;                   /* a separate MTP module */
    long long l;
    int n = 0;
    if (c->n_mtp > 0 && sscanf(name, "model.layers.%lld.%n", &l, &n) == 1 && n > 0) /* MTP layers after the last */
        return l >= c->n_layer && l < c->n_layer + c->n_mtp;
    return false;
}

/* Every tensor of the checkpoint was read by the loader, or is on the known-unused list: a tensor
 * the forward pass would not apply (an o_proj bias, say) is an error, never silently dropped. */
static mk_status check_all_used(const loader *L) {
    const mk_st_set *s = L->m->st;
    for (size_t i = 0; i < s->n_entries; i++) {
        const mk_st_entry *e = &s->entries[i];
        if (L->used[i] || mk_tensor_known_unused(e->name, &L->m->cfg)) continue;
        const char *why = L->m->cfg.tie_embed && !strcmp(e->name, "lm_head.weight") ? " (tie_word_embeddings is true: the LM head is the embedding)" : "";
        return mk_err(MK_ERR_UNSUPPORTED, "%s: tensor '%s' is not used by moekit's %s loader%s; running without it would give wrong results",
                      mk_st_file_of(s, e), e->src_name ? e->src_name : e->name, L->m->cfg.arch_name, why);
    }
    return MK_OK;
}

static const char *fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (int i = 0; i < ndim && o < cap; i++) o += (size_t)snprintf(buf + o, cap - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
    return buf;
}

/* Looks up the tensor named by fmt (a weight: F32, F16 or BF16) and checks its shape against
 * the `ndim` dims in `want`; the name is formatted from fmt and the rest. Absent + optional → t->data = NULL, MK_OK. */
static mk_status get_tensor(loader *L, mk_tensor *t, bool optional, int ndim, const int64_t *want, const char *fmt, ...) MK_PRINTF(6, 7);
static mk_status get_tensor(loader *L, mk_tensor *t, bool optional, int ndim, const int64_t *want, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(L->name, sizeof L->name, fmt, ap);
    va_end(ap);
    memset(t, 0, sizeof *t);
    const mk_st_entry *e = mk_st_find(L->m->st, L->name);
    if (!e) {
        if (optional) return MK_OK;
        char gn[192];
        if (L->m->gguf) /* name the tensor as the GGUF file does */
            return mk_err(MK_ERR_MISSING, "%s: tensor '%s' is missing", L->m->dir, mk_gguf_name_of(&L->m->cfg, L->name, gn, sizeof gn));
        return mk_err(MK_ERR_MISSING, "%s: tensor '%s' is missing", L->m->dir, L->name);
    }
    L->used[e - L->m->st->entries] = 1;
    const char *file = mk_st_file_of(L->m->st, e);
    const char *tname = e->src_name ? e->src_name : L->name, *cfg_src = L->m->gguf ? "the GGUF metadata" : "config.json";
    if (!mk_dtypes[e->t.dtype].is_float)
        return mk_err(MK_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s is not a supported weight dtype (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K, MXFP4)", file, tname, mk_dtypes[e->t.dtype].name);
    if (ndim == 1 && mk_dtypes[e->t.dtype].block_elems != 1)
        return mk_err(MK_ERR_UNSUPPORTED, "%s: tensor '%s': 1-D tensors (norms, biases) must be F32, F16 or BF16, not %s", file, tname, mk_dtypes[e->t.dtype].name);
    bool same = e->t.ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = e->t.shape[i] == want[i];
    if (!same) {
        char a[96], b[96];
        return mk_err(MK_ERR_SHAPE, "%s: tensor '%s': shape %s does not match %s (expected %s)", file, tname,
                      fmt_shape(a, sizeof a, e->t.ndim, e->t.shape), cfg_src, fmt_shape(b, sizeof b, ndim, want));
    }
    *t = e->t;
    L->params += mk_tensor_numel(t);
    return MK_OK;
}

/* A 2-D view of rows [r0, r0+rows) of matrix e of a stacked (E, R, C) tensor. */
static mk_tensor slice3(const mk_tensor *t, int64_t e, int64_t r0, int64_t rows) {
    mk_tensor v = {0};
    size_t row_bytes = mk_dtype_row_bytes(t->dtype, (size_t)t->shape[2]); /* rows are whole blocks */
    v.dtype = t->dtype;
    v.ndim = 2;
    v.shape[0] = rows;
    v.shape[1] = t->shape[2];
    v.nbytes = (size_t)rows * row_bytes;
    v.data = (const uint8_t *)t->data + ((size_t)e * (size_t)t->shape[1] + (size_t)r0) * row_bytes;
    return v;
}

void *mk_model_owned(mk_model *m, size_t bytes) {
    void **ow = mk_realloc(m->owned, (m->n_owned + 1) * sizeof *ow);
    if (!ow) return NULL;
    m->owned = ow;
    void *p = mk_calloc(1, bytes ? bytes : 1);
    if (p) m->owned[m->n_owned++] = p;
    return p;
}

/* Replaces a 1-D tensor's view with an F32 copy owned by the model (no-op when already F32), for
 * vectors the fused kernels take as f32 (the o_proj bias). */
static mk_status own_f32(mk_model *m, mk_tensor *t) {
    if (t->dtype == MK_DT_F32) return MK_OK;
    float *buf = mk_model_owned(m, (size_t)t->shape[0] * sizeof *buf);
    if (!buf) return MK_ERR_NOMEM;
    mk_to_f32(buf, t->data, t->dtype, (size_t)t->shape[0]);
    t->data = buf;
    t->dtype = MK_DT_F32;
    t->nbytes = (size_t)t->shape[0] * sizeof *buf;
    return MK_OK;
}

/* A copy of the (rows, cols) router with zero rows up to n_expert, owned by the model: a layer of
 * a per-layer model routes over n_expert logits, the missing experts masked (m->live). */
static mk_status pad_router(mk_model *m, mk_tensor *t, int64_t n_expert) {
    const size_t row = t->nbytes / (size_t)t->shape[0];
    uint8_t *buf = mk_model_owned(m, (size_t)n_expert * row);
    if (!buf) return MK_ERR_NOMEM;
    memcpy(buf, t->data, t->nbytes);
    t->data = buf;
    t->shape[0] = n_expert;
    t->nbytes = (size_t)n_expert * row;
    return MK_OK;
}

/* A layer whose experts are stored as v5 stacks (gate_up_proj (E, 2·d_ff, d_model), down_proj
 * (E, d_model, d_ff)) instead of one tensor per expert: the experts become views into them. */
static mk_status load_fused_experts(loader *L, int64_t l, const char *moe, bool *fused) {
    mk_model *m = L->m;
    const mk_config *c = &m->cfg;
    mk_layer_w *lw = &m->layers[l];
    const int64_t H = c->d_model, I = c->d_ff_expert, EL = lw->n_live;
    char probe[128];
    snprintf(probe, sizeof probe, "model.layers.%lld.%s.experts.gate_up_proj", (long long)l, moe);
    *fused = mk_st_find(m->st, probe) != NULL;
    if (!*fused) return MK_OK;
    mk_tensor gu, dn;
    mk_status st;
    if ((st = get_tensor(L, &gu, false, 3, DIMS(EL, 2 * I, H), "%s", probe))) return st;
    if ((st = get_tensor(L, &dn, false, 3, DIMS(EL, H, I), "model.layers.%lld.%s.experts.down_proj", (long long)l, moe))) return st;
    for (int64_t e = 0; e < EL; e++) {
        lw->experts[e].gate = slice3(&gu, e, 0, I);
        lw->experts[e].up = slice3(&gu, e, I, I);
        lw->experts[e].down = slice3(&dn, e, 0, H);
    }
    m->fused_experts = true;
    return MK_OK;
}

typedef struct walk_state {
    loader *L;
    const char *moe;
    bool fused;  /* the current layer's experts came from stacks */
} walk_state;

/* One tensor of the architecture's table (arch.h) into its slot, checked against the config. */
static mk_status load_item(const mk_arch_item *it, void *user) {
    walk_state *w = user;
    mk_model *m = w->L->m;
    const mk_role *r = it->role;
    if (r->scope == MK_SCOPE_EXPERT && w->fused) return MK_OK;
    if ((r->flags & MK_ROLE_MLA_KV_B) && !mk_st_find(m->st, it->hf)) { /* a GGUF that splits kv_b: k_b and v_b as stored */
        const mk_config *c = &m->cfg;
        mk_layer_w *lw = &m->layers[it->layer];
        const long long l = (long long)it->layer;
        if (!mk_st_find(m->st, "model.layers.0.self_attn.k_b")) return get_tensor(w->L, &lw->kv_b, false, it->ndim, it->shape, "%s", it->hf); /* names kv_b as missing */
        mk_status st = get_tensor(w->L, &lw->k_b, false, 3, DIMS(c->n_head, c->kv_lora_rank, c->qk_nope), "model.layers.%lld.self_attn.k_b", l);
        return st ? st : get_tensor(w->L, &lw->v_b, false, 3, DIMS(c->n_head, c->v_head, c->kv_lora_rank), "model.layers.%lld.self_attn.v_b", l);
    }
    mk_tensor *t = mk_arch_slot(m, it);
    mk_status st = get_tensor(w->L, t, it->optional, it->ndim, it->shape, "%s", it->hf);
    if (st) return st;
    if ((r->flags & MK_ROLE_F32) && t->data && (st = own_f32(m, t))) return st;
    if ((r->flags & MK_ROLE_ROUTER_BIAS) && m->layers[it->layer].n_live < m->cfg.n_expert) return pad_router(m, t, m->cfg.n_expert);
    if (r->flags & MK_ROLE_ROUTER) {
        if (m->layers[it->layer].n_live < m->cfg.n_expert && (st = pad_router(m, t, m->cfg.n_expert))) return st;
        return load_fused_experts(w->L, it->layer, w->moe, &w->fused);
    }
    return MK_OK;
}

/* MLA: k_b (n_head, r, qk_nope), each head's key rows of kv_b (rows h·(nope + v) .. + nope, r
 * columns) transposed, in kv_b's dtype (an exact copy of its values), owned by the model. Only
 * element types transpose element by element; a block-quantized kv_b is refused (llama.cpp's
 * files carry k_b made at conversion instead). */
static mk_status make_k_b(mk_model *m, mk_layer_w *lw) {
    const mk_config *c = &m->cfg;
    const mk_tensor *kv = &lw->kv_b;
    if (mk_dtypes[kv->dtype].block_elems != 1)
        return mk_err(MK_ERR_UNSUPPORTED, "%s: kv_b_proj in %s: a block-quantized kv_b cannot be split into the absorbed MLA form", m->dir, mk_dtypes[kv->dtype].name);
    const size_t nh = (size_t)c->n_head, r = (size_t)c->kv_lora_rank, dn = (size_t)c->qk_nope, dv = (size_t)c->v_head;
    const size_t es = mk_dtype_row_bytes(kv->dtype, 1);
    uint8_t *buf = mk_model_owned(m, nh * r * dn * es);
    if (!buf) return MK_ERR_NOMEM;
    const uint8_t *src = kv->data;
    for (size_t h = 0; h < nh; h++)
        for (size_t i = 0; i < dn; i++)      /* key row i of head h */
            for (size_t j = 0; j < r; j++)   /* → column i of row j of the head's (r, dn) block */
                memcpy(buf + ((h * r + j) * dn + i) * es, src + ((h * (dn + dv) + i) * r + j) * es, es);
    lw->k_b = (mk_tensor){.dtype = kv->dtype, .ndim = 3, .shape = {(int64_t)nh, (int64_t)r, (int64_t)dn}, .nbytes = nh * r * dn * es, .data = buf};
    return MK_OK;
}

/* The layers' weights, as the architecture's table lists them. */
static mk_status load_layers(loader *L) {
    mk_model *m = L->m;
    const mk_config *c = &m->cfg;
    for (int64_t l = 0; l < c->n_layer; l++) {
        mk_layer_w *lw = &m->layers[l];
        lw->is_moe = c->layer_moe[l];
        if (!lw->is_moe) continue;
        lw->n_live = c->n_expert_layer ? c->n_expert_layer[l] : c->n_expert;
        if (!(lw->experts = mk_calloc((size_t)c->n_expert, sizeof *lw->experts))) return MK_ERR_NOMEM;
    }
    /* Mixtral's original names live under block_sparse_moe; v5 re-saves move them to mlp. */
    walk_state w = {.L = L};
    if ((c->arch == MK_ARCH_MIXTRAL || c->arch == MK_ARCH_PHIMOE) && !mk_st_find(m->st, "model.layers.0.block_sparse_moe.gate.weight")) w.moe = "mlp";
    w.moe = w.moe ? w.moe : mk_arch_describe(c->arch)->moe_block;
    mk_status st = mk_arch_walk(c, w.moe, load_item, &w);
    for (int64_t l = 0; !st && c->mla && l < c->n_layer; l++)
        if (!m->layers[l].k_b.data) st = make_k_b(m, &m->layers[l]);
    return st;
}

/* Routed-expert parameters a token does not use, over the model (cfg's expert counts). */
static int64_t idle_params(const mk_config *c) {
    int64_t idle = 0;
    for (int64_t l = 0; l < c->n_layer; l++)
        if (c->layer_moe[l])
            idle += ((c->n_expert_layer ? c->n_expert_layer[l] : c->n_expert) - c->k_active) *
                    (3 * c->d_model * c->d_ff_expert + (c->expert_bias ? 2 * c->d_ff_expert + c->d_model : 0));
    return idle;
}

/* mk_model_info from the config and the parameter count (strings: the architecture table's). */
static void fill_info(mk_model_info *in, const mk_config *c, int64_t params, int64_t idle) {
    const mk_arch_desc *ad = mk_arch_describe(c->arch);
    int64_t n_moe = 0;
    for (int64_t l = 0; l < c->n_layer; l++) n_moe += c->layer_moe[l];
    *in = (mk_model_info){.arch = ad->hf_class, .model_type = ad->model_type, .vocab = c->vocab, .d_model = c->d_model, .n_layer = c->n_layer,
                          .n_head = c->n_head, .n_kv_head = c->n_kv_head, .d_head = c->d_head, .n_expert = c->n_expert, .k_active = c->k_active,
                          .d_ff_expert = c->d_ff_expert, .d_ff_dense = c->d_ff_dense, .d_ff_shared = c->d_ff_shared, .n_moe_layers = n_moe,
                          .norm_topk = c->norm_topk, .has_shared_expert = c->shared_expert, .tie_embed = c->tie_embed, .params_total = params,
                          .params_active = params - idle, .experts_per_layer = c->n_expert_layer, .bos_id = c->bos_id, .eos_id = c->eos_id,
                          .rope_theta = c->rope_theta, .rope_yarn = c->yarn, .yarn_factor = c->yarn_factor, .yarn_orig_ctx = c->yarn_orig_ctx,
                          .rope_attn_factor = c->rope_attn_factor, .mla = c->mla, .router_sigmoid = c->sigmoid, .kv_lora_rank = c->kv_lora_rank, .qk_rope = c->qk_rope,
                          .v_head = c->v_head};
    const int64_t f = (int64_t)sizeof(float), expanded = c->n_layer * c->n_kv_head * (c->d_head + c->v_head) * f;
    in->kv_bytes_token = c->mla ? c->n_layer * (c->kv_lora_rank + c->qk_rope) * f : expanded;
    in->sliding_window = c->sliding_window;
    for (int64_t l = 0; l < c->n_layer; l++) in->n_swa_layers += mk_layer_window(c, l) > 0;
    in->attn_sinks = c->attn_sinks;
    in->sparsemixer = c->sparsemixer_eps > 0;
    in->rope_longrope = c->longrope;
    in->longrope_orig = c->longrope_orig;
    in->short_mscale = c->short_mscale;
    in->long_mscale = c->long_mscale;
    in->kv_bytes_token_expanded = expanded;
}

static mk_status count_item(const mk_arch_item *it, void *user) {
    if (!it->optional) *(int64_t *)user += it->shape[0] * (it->ndim == 2 ? it->shape[1] : 1);
    return MK_OK;
}

mk_status mk_config_info(const char *path, mk_model_info *info) {
    char *text = NULL;
    mk_config c;
    mk_status st = mk_read_file(path, &text, NULL);
    if (st) return st;
    st = mk_config_parse(&c, text, path);
    free(text);
    if (st) return st;
    int64_t params = 0;
    if (!(st = mk_arch_walk(&c, NULL, count_item, &params))) {
        fill_info(info, &c, params, idle_params(&c));
        info->experts_per_layer = NULL;
        snprintf(info->quant_method, sizeof info->quant_method, "%s", c.quant_method);
    }
    mk_config_free(&c);
    return st;
}

void mk_model_free(mk_model *m) {
    if (!m) return;
    if (m->layers)
        for (int64_t l = 0; l < m->cfg.n_layer; l++) free(m->layers[l].experts);
    free(m->layers);
    mk_config_free(&m->cfg);
    mk_st_free(m->st);
    mk_gguf_free(m->gguf);
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->live);
    free(m->dir);
    free(m);
}

mk_status mk_model_load(mk_model **out, const char *dir) {
    *out = NULL;
    mk_model *m = mk_calloc(1, sizeof *m);
    if (!m) return MK_ERR_NOMEM;
    mk_status st;
    loader L = {.m = m};
    char *cpath = mk_path_join(dir, "config.json"), *text = NULL;
    m->dir = mk_strdup(dir);
    if (!cpath || !m->dir) { st = MK_ERR_NOMEM; goto fail; }
    struct stat sb;
    if (stat(dir, &sb) == 0 && S_ISREG(sb.st_mode)) { /* a file: GGUF (config from its metadata, tensors as HF-named views) */
        if ((st = mk_gguf_model_open(m, dir))) goto fail;
    } else {
        if ((st = mk_read_file(cpath, &text, NULL))) goto fail;
        if ((st = mk_config_parse(&m->cfg, text, cpath))) goto fail;
        if ((st = mk_st_open_dir(&m->st, dir))) goto fail;
    }

    const mk_config *c = &m->cfg;
    if (c->arch == MK_ARCH_GPT_OSS && !strcmp(c->quant_method, "mxfp4") && !m->gguf) {
        /* OpenAI's release: MXFP4 experts, read as they are (the rest is BF16) */
    } else if (c->quant_method[0]) {
        st = mk_err(MK_ERR_UNSUPPORTED, "%s: field 'quantization_config' (%s) is not supported: moekit reads unquantized F32/F16/BF16 checkpoints and GGUF files; dequantize the checkpoint first",
                    cpath, c->quant_method);
        goto fail;
    }
    if (!m->gguf && (st = mk_gptoss_hf_experts(m))) goto fail;
    if (!(L.used = mk_calloc(m->st->n_entries + 1, 1))) { st = MK_ERR_NOMEM; goto fail; }
    m->layers = mk_calloc((size_t)c->n_layer, sizeof *m->layers);
    if (!m->layers) { st = MK_ERR_NOMEM; goto fail; }
    if ((st = load_layers(&L))) goto fail;
    if (c->tie_embed) m->lm_head = m->embed;
    const int64_t idle = idle_params(c); /* expert parameters a token does not use */
    if ((st = check_all_used(&L))) goto fail;
    free(L.used);
    L.used = NULL;
    if (c->n_expert_layer) {
        const int64_t E = c->n_expert;
        if (!(m->live = mk_calloc((size_t)(c->n_layer * E), 1))) { st = MK_ERR_NOMEM; goto fail; }
        for (int64_t l = 0; l < c->n_layer; l++)
            for (int64_t e = 0; e < m->layers[l].n_live && m->layers[l].is_moe; e++) m->live[l * E + e] = 1;
    }

    fill_info(&m->info, c, L.params, idle);
    free(cpath);
    free(text);
    *out = m;
    return MK_OK;
fail:
    free(L.used);
    free(cpath);
    free(text);
    mk_model_free(m);
    return st;
}

const mk_model_info *mk_model_get_info(const mk_model *m) { return &m->info; }

bool mk_model_layer_is_moe(const mk_model *m, int64_t l) {
    return l >= 0 && l < m->cfg.n_layer && m->layers[l].is_moe;
}

int64_t mk_model_layer_experts(const mk_model *m, int64_t l) {
    return mk_model_layer_is_moe(m, l) ? m->layers[l].n_live : 0;
}

size_t mk_model_bytes_by_dtype(const mk_model *m, const char **names, int64_t *bytes, size_t cap) {
    int64_t by[MK_DT_COUNT] = {0};
    for (size_t i = 0; i < m->st->n_entries; i++) by[m->st->entries[i].t.dtype] += (int64_t)m->st->entries[i].t.nbytes;
    size_t n = 0;
    for (int d = 0; d < MK_DT_COUNT && n < cap; d++)
        if (by[d]) {
            names[n] = mk_dtypes[d].name;
            bytes[n++] = by[d];
        }
    return n;
}

static int64_t tb(const mk_tensor *t) { return mk_tensor_present(t) ? (int64_t)t->nbytes : 0; }

/* The tensors of layer l outside the routed experts (l = -1: the FIRST and LAST roles), as the
 * architecture's table lists them, plus what the loader derives (MLA's k_b, a GGUF's v_b). */
typedef struct layer_walk {
    const mk_model *m;
    int64_t l;
    void (*fn)(const mk_model *m, const mk_tensor *t, void *user);
    void *user;
} layer_walk;

static mk_status layer_item(const mk_arch_item *it, void *user) {
    layer_walk *w = user;
    if (it->role->scope == MK_SCOPE_EXPERT || it->layer != w->l) return MK_OK;
    w->fn(w->m, mk_arch_slot((mk_model *)w->m, it), w->user);
    return MK_OK;
}

static void for_layer_tensors(const mk_model *m, int64_t l, void (*fn)(const mk_model *, const mk_tensor *, void *), void *user) {
    layer_walk w = {m, l, fn, user};
    mk_arch_walk(&m->cfg, NULL, layer_item, &w);
    if (l >= 0) {
        if (m->layers[l].k_b.data && m->layers[l].k_b.data != m->layers[l].kv_b.data) fn(m, &m->layers[l].k_b, user);
        fn(m, &m->layers[l].v_b, user);
    }
}

static void add_bytes(const mk_model *m, const mk_tensor *t, void *user) {
    (void)m;
    *(int64_t *)user += tb(t);
}

static int64_t mlp_bytes(const mk_mlp_w *w) { return tb(&w->gate) + tb(&w->up) + tb(&w->down); }

int64_t mk_model_token_bytes(const mk_model *m) {
    int64_t b = 0;
    for_layer_tensors(m, -1, add_bytes, &b);
    b -= tb(&m->embed) - (int64_t)mk_dtype_row_bytes(m->embed.dtype, (size_t)m->cfg.d_model); /* one embedding row */
    if (m->cfg.tie_embed) b += tb(&m->lm_head);
    for (int64_t l = 0; l < m->cfg.n_layer; l++) {
        const mk_layer_w *w = &m->layers[l];
        for_layer_tensors(m, l, add_bytes, &b);
        if (w->is_moe && w->n_live > 0) {
            int64_t e_sum = 0;
            for (int64_t e = 0; e < w->n_live; e++) e_sum += mlp_bytes(&w->experts[e]);
            b += (int64_t)((double)e_sum * (double)MK_MIN(m->cfg.k_active, w->n_live) / (double)w->n_live + 0.5);
        }
    }
    return b;
}
/* Only ranges inside a file mapping: a tensor copied to the heap (misaligned in its file) must
 * never be dropped, as MADV_DONTNEED zeroes anonymous memory. */
void mk_model_advise_tensor(const mk_model *m, const mk_tensor *t, bool willneed) {
    if (!mk_tensor_present(t)) return;
    const uint8_t *p = t->data;
    for (int i = 0; i < m->st->n_files; i++) {
        const mk_map *f = &m->st->files[i];
        if (f->data && p >= f->data && t->nbytes <= f->size && (size_t)(p - f->data) <= f->size - t->nbytes) {
            if (f->resident) return;
            mk_advise_range(p, t->nbytes, willneed);
            return;
        }
    }
}

static void advise_mlp(const mk_model *m, const mk_mlp_w *w, bool willneed) {
    mk_model_advise_tensor(m, &w->gate, willneed);
    mk_model_advise_tensor(m, &w->up, willneed);
    mk_model_advise_tensor(m, &w->down, willneed);
}

mk_status mk_model_make_resident(mk_model *m, size_t *bytes) {
    *bytes = 0;
    bool done = false;
    mk_status st;
    if (m->gguf) { /* a GGUF model's tensors are views into its one file */
        if ((st = mk_map_make_resident(&m->gguf->map, &done))) return st;
        if (done) *bytes += m->gguf->map.size;
    }
    /* a model whose experts were copied out of its files (GPT-OSS's HF layout) keeps them mapped:
     * a copy would hold mostly bytes no tensor reads any more */
    for (int i = 0; m->st && !m->experts_repacked && i < m->st->n_files; i++) {
        if ((st = mk_map_make_resident(&m->st->files[i], &done))) return st;
        if (done) *bytes += m->st->files[i].size;
    }
    return MK_OK;
}

static void advise_one(const mk_model *m, const mk_tensor *t, void *user) { mk_model_advise_tensor(m, t, *(const bool *)user); }

void mk_model_advise_weights(const mk_model *m, int64_t l, bool willneed) {
    if (l >= m->cfg.n_layer) return;
    for_layer_tensors(m, l, advise_one, &willneed);
    if (l >= 0 && m->layers[l].is_moe)
        for (int64_t e = 0; e < m->layers[l].n_live; e++) advise_mlp(m, &m->layers[l].experts[e], willneed);
}
