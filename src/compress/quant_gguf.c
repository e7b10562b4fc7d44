/* mk_model → GGUF (quant_gguf.h). One job per GGUF tensor: its name, type, ggml dims, and the
 * model's tensor views that make it up (one, or one per expert for the stacked expert tensors). */
#include "quant_gguf.h"

#include "format/gguf_write.h"
#include "model/arch.h"
#include "tensor/quant.h"
#include "tokenizer/tok_gguf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct job {
    char name[96];
    mk_dtype type;            /* written */
    mk_dtype want;            /* asked for by the type rule (F32 for vectors and routers) */
    int n_dims;
    int64_t ne[MK_MAX_DIMS];
    const mk_tensor **parts;  /* (n_parts) sources, each (rows, cols) or (cols) */
    size_t n_parts;
    int64_t perm_heads;       /* > 0: llama.cpp's rope row permutation with this many heads */
    bool owns_part;           /* parts[0] was allocated for this job */
} job;

typedef struct writer_ctx {
    const mk_model *m;
    mk_dtype type;            /* requested for the routed experts' matrices */
    mk_dtype other;           /* for every other matrix: type, or Q8_0 where type is MXFP4 */
    const mk_tensor **parts;  /* (n_expert) scratch for the stacked expert tensors */
    job *jobs;
    size_t n_jobs, cap_jobs;
    float *row;               /* (max cols) scratch */
    size_t row_cap;
} writer_ctx;

static mk_dtype pick_type(mk_dtype want, int64_t cols) {
    if (cols % (int64_t)mk_dtypes[want].block_elems == 0) return want;
    if (cols % 32 == 0) return MK_DT_Q8_0;
    return MK_DT_F16;
}

/* Adds a job with n_parts sources (copied pointers). `matrix` selects the weight type rule. */
static mk_status add_job(writer_ctx *w, const char *name, mk_dtype want, bool matrix, const mk_tensor *const *parts, size_t n_parts,
                         int64_t perm_heads) {
    if (!parts[0]->data) return MK_OK; /* absent optional tensor */
    if (w->n_jobs == w->cap_jobs) {
        size_t nc = w->cap_jobs ? 2 * w->cap_jobs : 64;
        job *j = mk_realloc(w->jobs, nc * sizeof *j);
        if (!j) return MK_ERR_NOMEM;
        w->jobs = j;
        w->cap_jobs = nc;
    }
    job *j = &w->jobs[w->n_jobs];
    memset(j, 0, sizeof *j);
    snprintf(j->name, sizeof j->name, "%s", name);
    j->parts = mk_malloc(n_parts * sizeof *j->parts);
    if (!j->parts) return MK_ERR_NOMEM;
    memcpy(j->parts, parts, n_parts * sizeof *parts);
    j->n_parts = n_parts;
    w->n_jobs++;
    const mk_tensor *t = parts[0];
    const int64_t cols = t->ndim == 1 ? t->shape[0] : t->shape[1];
    j->want = matrix && t->ndim == 2 ? want : MK_DT_F32;
    j->type = j->want == MK_DT_F32 ? MK_DT_F32 : pick_type(want, cols);
    j->perm_heads = perm_heads;
    if (t->ndim == 1) { /* one vector, or one per expert stacked (gpt-oss's expert biases: ne [n, E]) */
        j->n_dims = n_parts > 1 ? 2 : 1;
        j->ne[0] = cols;
        j->ne[1] = (int64_t)n_parts;
    } else {
        j->n_dims = n_parts > 1 ? 3 : 2;
        j->ne[0] = cols;
        j->ne[1] = t->shape[0];
        j->ne[2] = (int64_t)n_parts;
    }
    if ((size_t)cols > w->row_cap) {
        float *r = mk_realloc(w->row, (size_t)cols * sizeof(float));
        if (!r) return MK_ERR_NOMEM;
        w->row = r;
        w->row_cap = (size_t)cols;
    }
    return MK_OK;
}

static mk_status add1(writer_ctx *w, const char *name, mk_dtype want, bool matrix, const mk_tensor *t, int64_t perm_heads) {
    return add_job(w, name, want, matrix, &t, 1, perm_heads);
}

/* Source row r of a part after llama.cpp's permutation: GGUF row h·d + 2i + j ← HF row h·d + j·d/2 + i. */
static int64_t src_row(int64_t r, int64_t rows, int64_t heads) {
    if (heads <= 0) return r;
    const int64_t d = rows / heads, h = r / d, k = r % d, i = k / 2, j = k % 2;
    return h * d + j * (d / 2) + i;
}

static mk_status fill(void *user, size_t index, uint8_t *dst, size_t nbytes) {
    writer_ctx *w = user;
    const job *j = &w->jobs[index];
    const size_t cols = (size_t)j->ne[0], out_rb = mk_dtype_row_bytes(j->type, cols);
    uint8_t *o = dst;
    for (size_t p = 0; p < j->n_parts; p++) {
        const mk_tensor *t = j->parts[p];
        const int64_t rows = t->ndim == 1 ? 1 : t->shape[0];
        const size_t in_rb = mk_dtype_row_bytes(t->dtype, cols);
        for (int64_t r = 0; r < rows; r++, o += out_rb) {
            const uint8_t *src = (const uint8_t *)t->data + (size_t)src_row(r, rows, j->perm_heads) * in_rb;
            if (t->dtype == j->type) {
                memcpy(o, src, out_rb);
            } else {
                mk_to_f32(w->row, src, t->dtype, cols);
                mk_quantize_row(j->type, w->row, o, cols);
            }
        }
    }
    if ((size_t)(o - dst) != nbytes) return mk_err(MK_ERR_INTERNAL, "gguf writer: tensor '%s': %zu bytes produced, %zu declared", j->name, (size_t)(o - dst), nbytes);
    return MK_OK;
}

/* llama.cpp's general.file_type for a whole-file type. */
static uint32_t file_type(mk_dtype t) {
    switch (t) {
    case MK_DT_F32: return 0;
    case MK_DT_F16: return 1;
    case MK_DT_Q4_0: return 2;
    case MK_DT_Q8_0: return 7;
    case MK_DT_Q4_K: return 14; /* MOSTLY_Q4_K_S: the closest llama.cpp file type to all-Q4_K */
    case MK_DT_Q6_K: return 18;
    case MK_DT_MXFP4: return 38; /* MOSTLY_MXFP4_MOE: experts MXFP4, other matrices Q8_0 */
    case MK_DT_BF16: return 32;
    default: return 1024;       /* GUESSED */
    }
}

static mk_status write_meta(mk_gguf_writer *gw, const mk_model *m, mk_dtype type, const char *name, mk_tok_gguf_info *tinfo) {
    const mk_config *c = &m->cfg;
    const char *a = mk_arch_describe(c->arch)->gguf_arch;
    char k[128];
    mk_status st = MK_OK;
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", a, s), k)
#define W(expr) do { if (!st) st = (expr); } while (0)
    W(mk_gguf_w_str(gw, "general.architecture", a));
    W(mk_gguf_w_str(gw, "general.type", "model"));
    if (name) W(mk_gguf_w_str(gw, "general.name", name));
    W(mk_gguf_w_u32(gw, "general.file_type", file_type(type)));
    W(mk_gguf_w_u32(gw, "general.quantization_version", 2));
    W(mk_gguf_w_u32(gw, KEY("block_count"), (uint32_t)c->n_layer));
    W(mk_gguf_w_u32(gw, KEY("context_length"), (uint32_t)(c->n_ctx_train > 0 ? c->n_ctx_train : 4096)));
    W(mk_gguf_w_u32(gw, KEY("embedding_length"), (uint32_t)c->d_model));
    /* llama and olmoe size their experts by feed_forward_length; the Qwens by expert_feed_forward_length */
    const bool ff_is_expert = c->arch == MK_ARCH_MIXTRAL || c->arch == MK_ARCH_OLMOE || c->arch == MK_ARCH_GPT_OSS || c->arch == MK_ARCH_PHIMOE;
    if (ff_is_expert) W(mk_gguf_w_u32(gw, KEY("feed_forward_length"), (uint32_t)c->d_ff_expert));
    else if (c->d_ff_dense > 0) W(mk_gguf_w_u32(gw, KEY("feed_forward_length"), (uint32_t)c->d_ff_dense));
    W(mk_gguf_w_u32(gw, KEY("expert_feed_forward_length"), (uint32_t)c->d_ff_expert));
    const bool v3_moe = c->arch == MK_ARCH_DEEPSEEK_V2 || c->arch == MK_ARCH_DEEPSEEK_V3 || c->arch == MK_ARCH_GLM4_MOE;
    if (c->shared_expert && !v3_moe) W(mk_gguf_w_u32(gw, KEY("expert_shared_feed_forward_length"), (uint32_t)c->d_ff_shared));
    W(mk_gguf_w_u32(gw, KEY("attention.head_count"), (uint32_t)c->n_head));
    if (c->mla) {
        /* llama.cpp runs MLA as one KV head of the latent and the RoPE key (absorbed form) */
        W(mk_gguf_w_u32(gw, KEY("attention.head_count_kv"), 1));
        W(mk_gguf_w_u32(gw, KEY("attention.key_length"), (uint32_t)(c->kv_lora_rank + c->qk_rope)));
        W(mk_gguf_w_u32(gw, KEY("attention.value_length"), (uint32_t)c->kv_lora_rank));
        W(mk_gguf_w_u32(gw, KEY("attention.key_length_mla"), (uint32_t)c->d_head));
        W(mk_gguf_w_u32(gw, KEY("attention.value_length_mla"), (uint32_t)c->v_head));
        /* 0 = a plain q_proj; llama.cpp requires the key unless the layer count says "V2-Lite" */
        W(mk_gguf_w_u32(gw, KEY("attention.q_lora_rank"), (uint32_t)c->q_lora_rank));
        W(mk_gguf_w_u32(gw, KEY("attention.kv_lora_rank"), (uint32_t)c->kv_lora_rank));
    } else {
        W(mk_gguf_w_u32(gw, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_head));
        W(mk_gguf_w_u32(gw, KEY("attention.key_length"), (uint32_t)c->d_head));
        W(mk_gguf_w_u32(gw, KEY("attention.value_length"), (uint32_t)c->d_head));
    }
    W(mk_gguf_w_u32(gw, KEY("rope.dimension_count"), (uint32_t)c->rope_dim));
    W(mk_gguf_w_f32(gw, KEY("rope.freq_base"), c->rope_theta));
    if (c->yarn && c->arch == MK_ARCH_GPT_OSS) { /* as llama.cpp's converter writes OpenAI's config */
        W(mk_gguf_w_str(gw, KEY("rope.scaling.type"), "yarn"));
        W(mk_gguf_w_f32(gw, KEY("rope.scaling.factor"), (float)c->yarn_factor));
        W(mk_gguf_w_u32(gw, KEY("rope.scaling.original_context_length"), (uint32_t)c->yarn_orig_ctx));
        W(mk_gguf_w_f32(gw, KEY("rope.scaling.yarn_beta_fast"), (float)c->yarn_beta_fast));
        W(mk_gguf_w_f32(gw, KEY("rope.scaling.yarn_beta_slow"), (float)c->yarn_beta_slow));
    } else if (c->yarn) { /* MLA only (checked by the caller): llama.cpp rebuilds m² from the log multiplier */
        W(mk_gguf_w_str(gw, KEY("rope.scaling.type"), "yarn"));
        W(mk_gguf_w_f32(gw, KEY("rope.scaling.factor"), (float)c->yarn_factor));
        W(mk_gguf_w_u32(gw, KEY("rope.scaling.original_context_length"), (uint32_t)c->yarn_orig_ctx));
        W(mk_gguf_w_f32(gw, KEY("rope.scaling.yarn_beta_fast"), (float)c->yarn_beta_fast));
        W(mk_gguf_w_f32(gw, KEY("rope.scaling.yarn_beta_slow"), (float)c->yarn_beta_slow));
        W(mk_gguf_w_f32(gw, KEY("rope.scaling.yarn_log_multiplier"), (float)(0.1 * c->yarn_mscale_all_dim)));
    }
    if (c->longrope) {
        /* llama.cpp's phimoe: the factor tensors (add_rope_factors), the original context, and one
         * attn_factor for both sets (the long mscale; moekit keeps both exactly in moekit.*) */
        W(mk_gguf_w_u32(gw, KEY("rope.scaling.original_context_length"), (uint32_t)c->longrope_orig));
        W(mk_gguf_w_f32(gw, KEY("rope.scaling.attn_factor"), c->long_mscale));
        W(mk_gguf_w_f32(gw, "moekit.rope.short_mscale", c->short_mscale));
        W(mk_gguf_w_f32(gw, "moekit.rope.long_mscale", c->long_mscale));
    }
    if (c->sparsemixer_eps > 0) W(mk_gguf_w_f32(gw, "moekit.sparsemixer_eps", c->sparsemixer_eps));
    W(mk_gguf_w_f32(gw, KEY("attention.layer_norm_rms_epsilon"), c->rms_eps));
    W(mk_gguf_w_u32(gw, KEY("expert_count"), (uint32_t)c->n_expert));
    W(mk_gguf_w_u32(gw, KEY("expert_used_count"), (uint32_t)c->k_active));
    W(mk_gguf_w_bool(gw, KEY("expert_weights_norm"), c->norm_topk));
    if (v3_moe) {
        int64_t dense = 0;
        while (dense < c->n_layer && !c->layer_moe[dense]) dense++;
        W(mk_gguf_w_u32(gw, KEY("leading_dense_block_count"), (uint32_t)dense));
        W(mk_gguf_w_u32(gw, KEY("expert_shared_count"), (uint32_t)(c->shared_expert ? c->d_ff_shared / c->d_ff_expert : 0)));
        W(mk_gguf_w_f32(gw, KEY("expert_weights_scale"), c->routed_scale));
        W(mk_gguf_w_u32(gw, KEY("expert_gating_func"), c->sigmoid ? 2u : 1u)); /* llama.cpp: 1 softmax, 2 sigmoid */
        W(mk_gguf_w_u32(gw, KEY("expert_group_count"), (uint32_t)c->n_group));
        W(mk_gguf_w_u32(gw, KEY("expert_group_used_count"), (uint32_t)c->topk_group));
    }
    W(mk_gguf_w_u32(gw, KEY("vocab_size"), (uint32_t)c->vocab));
    if (c->clip_qkv > 0) W(mk_gguf_w_f32(gw, KEY("attention.clamp_kqv"), c->clip_qkv));
    if (c->sliding_window > 0) W(mk_gguf_w_u32(gw, KEY("attention.sliding_window"), (uint32_t)c->sliding_window));
    if (c->layer_swa) W(mk_gguf_w_arr_bool(gw, KEY("attention.sliding_window_pattern"), c->layer_swa, (size_t)c->n_layer));
    if (c->swiglu_oai && (c->swiglu_alpha != 1.702f || c->swiglu_limit != 7.0f)) { /* llama.cpp hard-codes 1.702 and 7.0 (caveat in the report) */
        W(mk_gguf_w_f32(gw, "moekit.swiglu_alpha", c->swiglu_alpha));
        W(mk_gguf_w_f32(gw, "moekit.swiglu_limit", c->swiglu_limit));
    }
    /* the source's tokenizer (tokenizer.json beside config.json, or the source GGUF's metadata) */
    W(mk_tokenizer_gguf_write(gw, m->dir, c->vocab, tinfo));
    if (!strcmp(tinfo->model, "none")) {
        if (c->bos_id >= 0) W(mk_gguf_w_u32(gw, "tokenizer.ggml.bos_token_id", (uint32_t)c->bos_id));
        if (c->eos_id >= 0) W(mk_gguf_w_u32(gw, "tokenizer.ggml.eos_token_id", (uint32_t)c->eos_id));
    }
#undef KEY
#undef W
    return st;
}

/* MLA's kv_b as llama.cpp stores it: attn_k_b, the model's k_b (n_head, r, qk_nope: each head's key
 * rows transposed), and attn_v_b, each head's value rows of kv_b (n_head, v_head, r). Each job owns
 * its array of per-head views. */
static mk_status add_kv_b(writer_ctx *w, const mk_layer_w *lw, int64_t l) {
    const mk_config *c = &w->m->cfg;
    const size_t nh = (size_t)c->n_head, r = (size_t)c->kv_lora_rank, dn = (size_t)c->qk_nope, dv = (size_t)c->v_head;
    for (int which = 0; which < 2; which++) {
        mk_tensor *v = mk_calloc(nh, sizeof *v);
        const mk_tensor **pp = mk_malloc(nh * sizeof *pp);
        if (!v || !pp) { free(v); free(pp); return MK_ERR_NOMEM; }
        for (size_t h = 0; h < nh; h++) {
            const mk_tensor *src = which ? (lw->v_b.data ? &lw->v_b : &lw->kv_b) : &lw->k_b;
            const size_t rows = which ? dv : r, cols = which ? r : dn, rb = mk_dtype_row_bytes(src->dtype, cols);
            const size_t row0 = which ? (lw->v_b.data ? h * dv : h * (dn + dv) + dn) : h * r;
            v[h] = (mk_tensor){.data = (const uint8_t *)src->data + row0 * rb, .dtype = src->dtype, .ndim = 2, .shape = {(int64_t)rows, (int64_t)cols}, .nbytes = rows * rb};
            pp[h] = &v[h];
        }
        char name[96];
        snprintf(name, sizeof name, "blk.%lld.attn_%s_b.weight", (long long)l, which ? "v" : "k");
        const size_t before = w->n_jobs;
        mk_status st = add_job(w, name, w->other, true, pp, nh, 0);
        free(pp);
        if (w->n_jobs > before) w->jobs[w->n_jobs - 1].owns_part = true;
        else free(v);
        if (st) return st;
    }
    return MK_OK;
}

/* One job per tensor of the architecture's table (model/arch.h): routed experts stacked into one
 * (n_expert, rows, cols) tensor per role, q/k rows permuted where llama.cpp's RoPE is NORM. */
static mk_status job_item(const mk_arch_item *it, void *user) {
    writer_ctx *w = user;
    const mk_model *m = w->m;
    const mk_config *c = &m->cfg;
    const mk_role *r = it->role;
    char name[96];
    mk_arch_gguf_name(it, name, sizeof name);
    const bool matrix = r->flags & MK_ROLE_MATRIX;
    if (r->scope == MK_SCOPE_EXPERT) {
        if (it->expert != 0) return MK_OK; /* the whole stack at the first expert */
        const mk_layer_w *lw = &m->layers[it->layer];
        for (int64_t e = 0; e < c->n_expert; e++) w->parts[e] = (const mk_tensor *)((const char *)&lw->experts[e] + r->slot);
        return add_job(w, name, w->type, matrix, w->parts, (size_t)c->n_expert, 0);
    }
    const mk_tensor *t = mk_arch_slot((mk_model *)m, it);
    if (r->flags & MK_ROLE_MLA_KV_B) return add_kv_b(w, &m->layers[it->layer], it->layer);
    const bool norm_rope = mk_arch_describe(c->arch)->gguf_rope_norm;
    const int64_t heads = !norm_rope ? 0 : (r->flags & MK_ROLE_PERM_Q) ? c->n_head : (r->flags & MK_ROLE_PERM_K) ? c->n_kv_head : 0;
    if ((r->flags & MK_ROLE_GGUF_VECTOR) && t->data) { /* HF (1, n) → llama.cpp's {n}: the job keeps a pointer */
        mk_tensor *v = mk_malloc(sizeof *v);
        if (!v) return MK_ERR_NOMEM;
        *v = *t;
        v->ndim = 1;
        v->shape[0] = t->shape[1];
        v->shape[1] = 0;
        size_t before = w->n_jobs;
        mk_status st = add1(w, name, w->other, matrix, v, heads);
        if (w->n_jobs > before) w->jobs[w->n_jobs - 1].owns_part = true;
        else free(v);
        return st;
    }
    return add1(w, name, w->other, matrix, t, heads);
}

/* LongRoPE's factors, config values in HF, as llama.cpp's rope_factors_long / rope_factors_short
 * (F32, rope_dim/2); the jobs own the views, not the config's arrays. */
static mk_status add_rope_factors(writer_ctx *w) {
    const mk_config *c = &w->m->cfg;
    for (int k = 0; k < 2; k++) {
        mk_tensor *v = mk_malloc(sizeof *v);
        if (!v) return MK_ERR_NOMEM;
        *v = (mk_tensor){.dtype = MK_DT_F32, .ndim = 1, .shape = {c->rope_dim / 2}, .nbytes = (size_t)(c->rope_dim / 2) * sizeof(float), .data = k ? c->rope_short : c->rope_long};
        const size_t before = w->n_jobs;
        mk_status st = add1(w, k ? "rope_factors_short.weight" : "rope_factors_long.weight", MK_DT_F32, false, v, 0);
        if (w->n_jobs > before) w->jobs[w->n_jobs - 1].owns_part = true;
        else free(v);
        if (st) return st;
    }
    return MK_OK;
}

static mk_status build_jobs(writer_ctx *w, mk_dtype type) {
    w->type = type;
    w->other = type == MK_DT_MXFP4 ? MK_DT_Q8_0 : type;
    w->parts = mk_malloc((size_t)w->m->cfg.n_expert * sizeof *w->parts);
    if (!w->parts) return MK_ERR_NOMEM;
    mk_status st = mk_arch_walk(&w->m->cfg, NULL, job_item, w);
    if (!st && w->m->cfg.longrope) st = add_rope_factors(w);
    free(w->parts);
    w->parts = NULL;
    return st;
}

/* rep->fallback: one line per (written type, row length) of the matrices not written as `want`:
 * "N tensors written as T instead of W: rows of C values are not a multiple of W's block of B
 * (name, name, ...)"; names past the line's room are counted, not listed. */
static void describe_fallbacks(const writer_ctx *w, mk_gguf_write_report *rep) {
    size_t o = 0;
    const size_t cap = sizeof rep->fallback;
    for (size_t i = 0; i < w->n_jobs; i++) {
        const job *a = &w->jobs[i];
        if (a->type == a->want) continue; /* as asked; F32: 1-D tensors and routers, by rule */
        const mk_dtype want = a->want;
#define SAME_CASE(b) ((b)->type == a->type && (b)->want == want && (b)->ne[0] == a->ne[0])
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++) seen = SAME_CASE(&w->jobs[k]);
        if (seen) continue;
        size_t n = 0;
        for (size_t k = i; k < w->n_jobs; k++) n += SAME_CASE(&w->jobs[k]);
        rep->n_fallback += n;
        char line[768];
        size_t lo = (size_t)snprintf(line, sizeof line, "%zu tensor%s written as %s instead of %s: rows of %lld values are not a multiple of %s's block of %zu (",
                                     n, n == 1 ? "" : "s", mk_dtypes[a->type].name, mk_dtypes[want].name, (long long)a->ne[0], mk_dtypes[want].name,
                                     mk_dtypes[want].block_elems);
        size_t listed = 0;
        for (size_t k = i; k < w->n_jobs && lo < sizeof line; k++) {
            const job *b = &w->jobs[k];
            if (!SAME_CASE(b)) continue;
            if (lo + strlen(b->name) + 40 > sizeof line) break;
            lo += (size_t)snprintf(line + lo, sizeof line - lo, "%s%s", listed ? ", " : "", b->name);
            listed++;
        }
        if (listed < n) lo += (size_t)snprintf(line + lo, sizeof line - lo, " and %zu more", n - listed);
        snprintf(line + MK_MIN(lo, sizeof line - 1), sizeof line - MK_MIN(lo, sizeof line - 1), ")");
        if (o < cap) o += (size_t)snprintf(rep->fallback + o, cap - o, "%s%s", o ? "\n" : "", line);
#undef SAME_CASE
    }
}

mk_status mk_gguf_write_model(const mk_model *m, mk_dtype type, const char *out_path, const char *name, mk_gguf_write_report *rep) {
    if (!(type == MK_DT_F32 || type == MK_DT_F16 || type == MK_DT_BF16 || type == MK_DT_Q8_0 || type == MK_DT_Q4_0 ||
          type == MK_DT_Q4_K || type == MK_DT_Q6_K || type == MK_DT_MXFP4))
        return mk_err(MK_ERR_ARG, "gguf writer: type %s cannot be written", mk_dtypes[type].name);
    if (m->cfg.n_expert_layer)
        return mk_err(MK_ERR_UNSUPPORTED, "%s: its layers have different expert counts (moekit_experts_per_layer), which GGUF (one expert count per model) cannot hold",
                      m->dir);
    if (m->cfg.mla && !m->cfg.rope_interleave) /* llama.cpp's deepseek2 rotates interleaved pairs */
        return mk_err(MK_ERR_UNSUPPORTED, "%s: rope_interleave = false cannot be written as llama.cpp's deepseek2 (its RoPE rotates interleaved pairs)", m->dir);
    if (m->cfg.mla && m->cfg.yarn && (m->cfg.rope_attn_factor != 1.0f || m->cfg.yarn_mscale_all_dim == 0))
        return mk_err(MK_ERR_UNSUPPORTED, "%s: YaRN with mscale %g and mscale_all_dim %g cannot be written as llama.cpp's deepseek2 (it keeps the log multiplier 0.1·mscale_all_dim only)",
                      m->dir, m->cfg.yarn_mscale, m->cfg.yarn_mscale_all_dim);
    if (m->cfg.arch == MK_ARCH_GPT_OSS && m->cfg.yarn && (m->cfg.yarn_truncate || m->cfg.yarn_mscale != 0 || m->cfg.yarn_mscale_all_dim != 0 ||
                                                      fabsf(m->cfg.rope_attn_factor - (float)(0.1 * log(m->cfg.yarn_factor) + 1.0)) > 1e-6f))
        return mk_err(MK_ERR_UNSUPPORTED, "%s: YaRN other than gpt-oss's (truncate false, no mscale, attention factor 0.1 ln(factor) + 1) cannot be written as llama.cpp's gpt-oss", m->dir);
    if (m->cfg.yarn && !m->cfg.mla && m->cfg.arch != MK_ARCH_GPT_OSS) /* llama.cpp's YaRN for these is not checked against transformers': refuse rather than guess */
        return mk_err(MK_ERR_UNSUPPORTED, "%s: YaRN RoPE (rope_scaling) cannot be written to GGUF yet; the file would run with plain RoPE", m->dir);
    const bool lead = m->cfg.arch == MK_ARCH_DEEPSEEK_V2 || m->cfg.arch == MK_ARCH_DEEPSEEK_V3 || m->cfg.arch == MK_ARCH_GLM4_MOE;
    for (int64_t l = 1; lead && l < m->cfg.n_layer; l++)
        if (m->cfg.layer_moe[l - 1] && !m->cfg.layer_moe[l])
            return mk_err(MK_ERR_UNSUPPORTED, "%s: a dense layer after a MoE layer (layer %lld) cannot be described by llama.cpp's leading_dense_block_count", m->dir, (long long)l);
    writer_ctx w = {.m = m};
    mk_gguf_writer *gw = NULL;
    mk_tok_gguf_info tinfo;
    mk_status st = mk_gguf_writer_new(&gw, out_path);
    if (!st) st = write_meta(gw, m, type, name, &tinfo);
    if (!st) st = build_jobs(&w, type);
    for (size_t i = 0; i < w.n_jobs && !st; i++) {
        uint32_t gt;
        job *j = &w.jobs[i];
        if (!mk_dtype_to_ggml(j->type, &gt)) { st = mk_err(MK_ERR_INTERNAL, "no ggml type for %s", mk_dtypes[j->type].name); break; }
        st = mk_gguf_w_tensor(gw, j->name, gt, j->n_dims, j->ne, fill, &w);
    }
    if (!st) st = mk_gguf_writer_finish(gw);
    if (!st && rep) {
        memset(rep, 0, sizeof *rep);
        rep->n_tensors = w.n_jobs;
        rep->tokenizer = tinfo;
        describe_fallbacks(&w, rep);
        if (m->cfg.arch == MK_ARCH_DEEPSEEK_V2 && m->cfg.n_group > 1) /* llama-graph.cpp build_moe_ffn: ggml_argsort_top_k(.., 2) + sum */
            snprintf(rep->caveat, sizeof rep->caveat,
                     "llama.cpp scores expert groups by the sum of their two best experts; DeepSeek-V2's group-limited routing (transformers, moekit) by the best one: llama.cpp will route this file differently");
        if (m->cfg.arch == MK_ARCH_PHIMOE) /* src/models/phi3.cpp, which runs phimoe */
            snprintf(rep->caveat, sizeof rep->caveat,
                     "llama.cpp's phimoe normalises with RMSNorm (plus the bias) where Phi-MoE has LayerNorm, routes by softmax top-2 renormalised instead of sparsemixer%s: llama.cpp will compute this file differently from transformers and moekit",
                     m->cfg.short_mscale != m->cfg.long_mscale ? ", and applies one RoPE mscale (the long one) to both factor sets" : "");
        if (m->cfg.swiglu_oai && (m->cfg.swiglu_alpha != 1.702f || m->cfg.swiglu_limit != 7.0f))
            snprintf(rep->caveat, sizeof rep->caveat, "llama.cpp's gpt-oss computes the experts' SwiGLU with alpha 1.702 and limit 7.0; this model's %g and %g are kept in moekit.swiglu_alpha / moekit.swiglu_limit, which llama.cpp ignores",
                     (double)m->cfg.swiglu_alpha, (double)m->cfg.swiglu_limit);
        for (size_t i = 0; i < w.n_jobs; i++) {
            size_t rows = 1;
            for (int d = 1; d < w.jobs[i].n_dims; d++) rows *= (size_t)w.jobs[i].ne[d];
            rep->bytes_by_dtype[w.jobs[i].type] += (int64_t)(rows * mk_dtype_row_bytes(w.jobs[i].type, (size_t)w.jobs[i].ne[0]));
        }
    }
    mk_gguf_writer_free(gw);
    for (size_t i = 0; i < w.n_jobs; i++) {
        if (w.jobs[i].owns_part) free((void *)w.jobs[i].parts[0]);
        free(w.jobs[i].parts);
    }
    free(w.jobs);
    free(w.row);
    return st;
}
