/* Writes a pruned model as a new HF checkpoint directory, atomically: everything goes into a
 * temporary directory beside the target, which is renamed onto the target only when complete. */
#include "compress.h"
#include "format/safetensors_write.h"
#include "model/arch.h"
#include "tensor/quant.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* How one output tensor is made. */
typedef enum { SRC_COPY, SRC_ROWS, SRC_FUSED, SRC_EXPERT, SRC_GPTOSS } src_kind;
/* SRC_GPTOSS: one of GPT-OSS's stacked expert tensors (gptoss.c) of the output experts */
typedef enum { GO_WEIGHT, GO_BLOCKS, GO_SCALES, GO_BIAS } gptoss_part;
typedef enum { PROJ_GATE, PROJ_UP, PROJ_DOWN } proj;
typedef struct out_tensor {
    char *name;
    const mk_st_entry *src;   /* SRC_COPY / SRC_ROWS / SRC_FUSED: the source tensor */
    src_kind kind;
    int64_t layer, j;         /* SRC_EXPERT: output expert j of layer; SRC_ROWS/FUSED: layer */
    proj p;                   /* SRC_EXPERT: which projection; SRC_FUSED, SRC_GPTOSS: GATE = gate_up, DOWN = down */
    gptoss_part part;         /* SRC_GPTOSS */
} out_tensor;

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}
static void rm_rf(const char *path) { nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

/* "model.layers.<l>.<rest>" → l and a pointer to rest; -1 if not a layer tensor. */
static int64_t layer_of(const char *name, const char **rest) {
    static const char pre[] = "model.layers.";
    if (strncmp(name, pre, sizeof pre - 1)) return -1;
    char *end;
    long l = strtol(name + sizeof pre - 1, &end, 10);
    if (end == name + sizeof pre - 1 || *end != '.') return -1;
    *rest = end + 1;
    return l;
}

/* Per-expert tensor "<moe>.experts.<e>.<tail>" → e and the text before/after the number. */
static int64_t expert_of(const char *rest, size_t *num_at, const char **tail) {
    const char *p = strstr(rest, ".experts.");
    if (!p) return -1;
    p += 9;
    char *end;
    long e = strtol(p, &end, 10);
    if (end == p || *end != '.') return -1;
    *num_at = (size_t)(p - rest);
    *tail = end;
    return e;
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static mk_status copy_file(const char *from, const char *to) {
    char *data = NULL;
    size_t n = 0;
    mk_status st = mk_read_file(from, &data, &n);
    if (st) return st;
    st = mk_write_file_atomic(to, data, n);
    free(data);
    return st;
}

/* config.json with the new expert count, k and expert d_ff; per-layer counts in
 * moekit_experts_per_layer when the plan's layers differ. */
static mk_status write_config(const mk_model *m, const mk_expert_plan *plan, int64_t dff, const char *dir) {
    const int64_t n_keep = plan->n_out;
    int64_t k_max = n_keep; /* k is clipped to the smallest layer */
    for (int64_t l = 0; plan->n_out_layer && l < m->cfg.n_layer; l++)
        if (m->layers[l].is_moe) k_max = MK_MIN(k_max, plan->n_out_layer[l]);
    char *src = mk_path_join(m->dir, "config.json"), *dst = mk_path_join(dir, "config.json");
    mk_status st = MK_OK;
    json_error_t jerr;
    json_t *root = src ? json_load_file(src, JSON_PRESERVE_ORDER, &jerr) : NULL;
    if (!root) {
        st = src ? mk_err(MK_ERR_FORMAT, "%s: %s", src, jerr.text) : MK_ERR_NOMEM;
        goto out;
    }
    bool set = false;
    const char *keys[] = {"num_local_experts", "num_experts", "n_routed_experts"};
    for (int i = 0; i < 3; i++)
        if (json_is_integer(json_object_get(root, keys[i]))) {
            json_object_set_new(root, keys[i], json_integer(n_keep));
            set = true;
        }
    if (!set) { st = mk_err(MK_ERR_FORMAT, "%s: no expert count field to update", src); goto out; }
    json_object_set_new(root, "num_experts_per_tok", json_integer(MK_MIN(m->cfg.k_active, k_max)));
    if (json_object_get(root, "experts_per_token")) json_object_set_new(root, "experts_per_token", json_integer(MK_MIN(m->cfg.k_active, k_max))); /* gpt-oss's duplicate */

    json_object_del(root, "moekit_experts_per_layer");
    if (plan->n_out_layer) {
        json_t *a = json_array();
        for (int64_t l = 0; l < m->cfg.n_layer; l++) json_array_append_new(a, json_integer(m->layers[l].is_moe ? plan->n_out_layer[l] : 0));
        json_object_set_new(root, "moekit_experts_per_layer", a);
    }
    const char *ff_key = json_is_integer(json_object_get(root, "moe_intermediate_size")) ? "moe_intermediate_size" : "intermediate_size";
    if (dff != m->cfg.d_ff_expert) json_object_set_new(root, ff_key, json_integer(dff));
    /* DeepSeek and GLM size the shared experts as moe_intermediate_size · n_shared_experts: a
     * narrower routed expert keeps the (unchanged) shared MLP's width by a larger count */
    if (dff != m->cfg.d_ff_expert && m->cfg.shared_expert && !m->cfg.shared_gated && json_is_integer(json_object_get(root, "n_shared_experts"))) {
        if (m->cfg.d_ff_shared % dff) {
            st = mk_err(MK_ERR_ARG, "%s: the shared experts' width %lld is not a multiple of the new expert d_ff %lld, which config.json cannot express (it sizes them as moe_intermediate_size x n_shared_experts)",
                        src, (long long)m->cfg.d_ff_shared, (long long)dff);
            goto out;
        }
        json_object_set_new(root, "n_shared_experts", json_integer(m->cfg.d_ff_shared / dff));
    }
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text) { st = MK_ERR_NOMEM; goto out; }
    size_t len = strlen(text);
    char *withnl = mk_malloc(len + 2);
    if (withnl) {
        memcpy(withnl, text, len);
        withnl[len] = '\n';
        st = mk_write_file_atomic(dst, withnl, len + 1);
        free(withnl);
    } else st = MK_ERR_NOMEM;
    free(text);
out:
    json_decref(root);
    free(src);
    free(dst);
    return st;
}

/* The projection a routed-expert role of the architecture table holds. */
static proj proj_of(const mk_role *r) {
    return r->slot == offsetof(mk_mlp_w, gate) ? PROJ_GATE : r->slot == offsetof(mk_mlp_w, up) ? PROJ_UP : PROJ_DOWN;
}

/* Writes n f32 values as dtype dt (round to nearest even for BF16/F16). */
static mk_status write_converted(mk_st_writer *w, const float *x, size_t n, mk_dtype dt) {
    if (dt == MK_DT_F32) return mk_st_writer_write(w, x, n * sizeof(float));
    uint16_t buf[4096];
    for (size_t i = 0; i < n;) {
        size_t k = MK_MIN(n - i, sizeof buf / sizeof buf[0]);
        for (size_t j = 0; j < k; j++) buf[j] = dt == MK_DT_BF16 ? mk_f32_to_bf16(x[i + j]) : mk_f32_to_f16(x[i + j]);
        mk_status st = mk_st_writer_write(w, buf, k * sizeof(uint16_t));
        if (st) return st;
        i += k;
    }
    return MK_OK;
}

/* One projection of output expert x: a copy of source expert copy_from's, or the new f32 data. */
static mk_status write_proj(mk_st_writer *w, const mk_model *m, int64_t l, const mk_expert_out *x, proj p, int64_t dff) {
    const mk_mlp_w *src = x->copy_from >= 0 ? &m->layers[l].experts[x->copy_from] : NULL;
    const mk_tensor *t = src ? (p == PROJ_GATE ? &src->gate : p == PROJ_UP ? &src->up : &src->down) : NULL;
    if (t) return mk_st_writer_write(w, t->data, t->nbytes);
    const float *data = p == PROJ_GATE ? x->gate : p == PROJ_UP ? x->up : x->down;
    mk_dtype dt = m->layers[l].experts[0].gate.dtype;
    return write_converted(w, data, (size_t)dff * (size_t)m->cfg.d_model, dt);
}

/* GPT-OSS's stacked tensor `part` of projection p (gate_up or down) for the output experts, in
 * transformers' layout (gptoss.c): weights (E, in, out) in x·W orientation with gate and up
 * interleaved by column, or MXFP4 blocks/scales by output row (interleaved rows), biases (E, out)
 * F32. Every output expert copies a source expert (checked by the caller). */
static mk_status write_gptoss(mk_st_writer *w, const mk_model *m, int64_t l, const mk_expert_out *xs, int64_t NOL, proj p, gptoss_part part) {
    const int64_t H = m->cfg.d_model, I = m->cfg.d_ff_expert;
    const bool gu = p == PROJ_GATE;
    const int parts = gu ? 2 : 1;
    const int64_t rows = gu ? I : H, cols = gu ? H : I; /* of one part, W·x orientation */
    const mk_mlp_w *ex = m->layers[l].experts;
    const size_t es = mk_dtypes[ex[0].gate.dtype].block_elems == 1 ? mk_dtype_row_bytes(ex[0].gate.dtype, 1) : 0;
    const size_t n_buf = (size_t)(parts * MK_MAX(rows, cols)) * MK_MAX(es, sizeof(float));
    uint8_t *buf = mk_malloc(n_buf);
    if (!buf) return MK_ERR_NOMEM;
    mk_status st = MK_OK;
    for (int64_t j = 0; j < NOL && !st; j++) {
        const mk_mlp_w *x = &ex[xs[j].copy_from];
        const mk_tensor *src[2] = {gu ? &x->gate : &x->down, &x->up};
        if (part == GO_BIAS) {
            const float *b[2] = {gu ? x->gate_b.data : x->down_b.data, x->up_b.data};
            float *o = (float *)buf;
            for (int64_t i = 0; i < rows; i++)
                for (int k = 0; k < parts; k++) o[i * parts + k] = b[k][i];
            st = mk_st_writer_write(w, o, (size_t)(rows * parts) * sizeof(float));
        } else if (part == GO_WEIGHT) { /* row c of the stored (in, out) matrix: column c of each part, interleaved */
            for (int64_t c = 0; c < cols && !st; c++) {
                for (int64_t i = 0; i < rows; i++)
                    for (int k = 0; k < parts; k++) memcpy(buf + (size_t)(i * parts + k) * es, (const uint8_t *)src[k]->data + (size_t)(i * cols + c) * es, es);
                st = mk_st_writer_write(w, buf, (size_t)(rows * parts) * es);
            }
        } else { /* MXFP4: stored row r = part r % parts, row r / parts */
            const size_t rb = mk_dtype_row_bytes(MK_DT_MXFP4, (size_t)cols);
            uint8_t *blk = buf, *scl = buf + cols / 2;
            for (int64_t r = 0; r < rows * parts && !st; r++) {
                mk_mxfp4_to_hf((const uint8_t *)src[r % parts]->data + (size_t)(r / parts) * rb, (size_t)cols, blk, scl);
                st = part == GO_BLOCKS ? mk_st_writer_write(w, blk, (size_t)cols / 2) : mk_st_writer_write(w, scl, (size_t)cols / 32);
            }
        }
    }
    free(buf);
    return st;
}

/* The output tensors of GPT-OSS's experts of layer l (at the tensor of its first expert role). */
static mk_status plan_gptoss(const mk_model *m, int64_t l, int64_t NOL, out_tensor *ot, mk_st_decl *decl, size_t *n) {
    const int64_t H = m->cfg.d_model, I = m->cfg.d_ff_expert;
    const bool mx = m->layers[l].experts[0].gate.dtype == MK_DT_MXFP4;
    const mk_dtype wdt = m->layers[l].experts[0].gate.dtype;
    for (int gp = 0; gp < 2; gp++) {
        const proj p = gp ? PROJ_DOWN : PROJ_GATE;
        const int64_t R = gp ? H : 2 * I, C = gp ? I : H; /* stored rows (outputs), inputs */
        const char *nm = gp ? "down_proj" : "gate_up_proj";
        for (int k = 0; k < 3; k++) {
            const gptoss_part part = k == 2 ? GO_BIAS : mx ? (k ? GO_SCALES : GO_BLOCKS) : GO_WEIGHT;
            if (!mx && k == 1) continue;
            out_tensor *o = &ot[*n];
            mk_st_decl *d = &decl[*n];
            char name[128];
            snprintf(name, sizeof name, "model.layers.%lld.mlp.experts.%s%s", (long long)l, nm,
                     part == GO_BIAS ? "_bias" : part == GO_BLOCKS ? "_blocks" : part == GO_SCALES ? "_scales" : "");
            if (!(o->name = mk_strdup(name))) return MK_ERR_NOMEM;
            *o = (out_tensor){.name = o->name, .kind = SRC_GPTOSS, .layer = l, .p = p, .part = part};
            *d = (mk_st_decl){.name = o->name};
            if (part == GO_BIAS) { d->dtype = MK_DT_F32; d->ndim = 2; d->shape[0] = NOL; d->shape[1] = R; }
            else if (part == GO_WEIGHT) { d->dtype = wdt; d->ndim = 3; d->shape[0] = NOL; d->shape[1] = C; d->shape[2] = R; }
            else if (part == GO_BLOCKS) { d->dtype = MK_DT_U8; d->ndim = 4; d->shape[0] = NOL; d->shape[1] = R; d->shape[2] = C / 32; d->shape[3] = 16; }
            else { d->dtype = MK_DT_U8; d->ndim = 3; d->shape[0] = NOL; d->shape[1] = R; d->shape[2] = C / 32; }
            (*n)++;
        }
    }
    return MK_OK;
}

static mk_status write_weights(const mk_model *m, const mk_expert_plan *plan, const char *dir) {
    const mk_st_set *s = m->st;
    const int64_t E = m->cfg.n_expert, L = m->cfg.n_layer, NO = plan->n_out, H = m->cfg.d_model;
    const int64_t dff = plan->d_ff_out ? plan->d_ff_out : m->cfg.d_ff_expert;
    size_t cap = s->n_entries + (size_t)(L * NO * 3) + (size_t)(L * 6);
    out_tensor *ot = mk_calloc(cap, sizeof *ot);
    mk_st_decl *decl = mk_calloc(cap, sizeof *decl);
    mk_status st = MK_OK;
    size_t n = 0;
    if (!ot || !decl) { st = MK_ERR_NOMEM; goto out; }
    const mk_arch_desc *ad = mk_arch_describe(m->cfg.arch);
    for (size_t i = 0; i < s->n_entries; i++) {
        const mk_st_entry *en = &s->entries[i];
        const char *rest = NULL;
        int64_t l = layer_of(en->name, &rest), rl, re;
        bool moe = l >= 0 && l < L && m->layers[l].is_moe;
        /* the tensor's role in the architecture's table; NULL for what the table does not list (the
         * v5 fused expert stacks, and the known-unused tensors, copied as they are) */
        const mk_role *role = mk_arch_find_hf(ad, NULL, en->name, &rl, &re);
        size_t at;
        const char *tail;
        int64_t e = moe && role && role->scope == MK_SCOPE_EXPERT ? expert_of(rest, &at, &tail) : -1;
        if (e >= E) { st = mk_err(MK_ERR_FORMAT, "%s: tensor '%s' names expert %lld of %lld", m->dir, en->name, (long long)e, (long long)E); goto out; }
        if (e > 0) continue; /* expert 0's tensors stand for the pattern of every output expert */
        const int64_t NOL = moe && plan->n_out_layer ? plan->n_out_layer[l] : NO; /* this layer's experts */
        if (e == 0 && (role->flags & MK_ROLE_HF_FUSED)) { /* GPT-OSS: the layer's stacked tensors, once */
            if (role->slot == offsetof(mk_mlp_w, gate) && (st = plan_gptoss(m, l, NOL, ot, decl, &n))) goto out;
            continue;
        }
        if (e == 0) {
            for (int64_t j = 0; j < NOL; j++) {
                out_tensor *o = &ot[n];
                mk_st_decl *d = &decl[n];
                size_t len = strlen(en->name) + 24;
                if (!(o->name = mk_malloc(len))) { st = MK_ERR_NOMEM; goto out; }
                snprintf(o->name, len, "%.*s%lld%s", (int)(rest - en->name + (ptrdiff_t)at), en->name, (long long)j, tail);
                o->kind = SRC_EXPERT;
                o->layer = l;
                o->j = j;
                o->p = proj_of(role);
                d->name = o->name;
                d->dtype = en->t.dtype;
                d->ndim = 2;
                d->shape[0] = o->p == PROJ_DOWN ? H : dff;
                d->shape[1] = o->p == PROJ_DOWN ? dff : H;
                n++;
            }
            continue;
        }
        out_tensor *o = &ot[n];
        mk_st_decl *d = &decl[n];
        if (!(o->name = mk_strdup(en->name))) { st = MK_ERR_NOMEM; goto out; }
        d->name = o->name;
        d->dtype = en->t.dtype;
        d->ndim = en->t.ndim;
        memcpy(d->shape, en->t.shape, sizeof d->shape);
        o->src = en;
        o->kind = SRC_COPY;
        o->layer = l;
        if (moe && (ends_with(rest, "experts.gate_up_proj") || ends_with(rest, "experts.down_proj"))) {
            o->kind = SRC_FUSED;
            o->p = ends_with(rest, "gate_up_proj") ? PROJ_GATE : PROJ_DOWN;
            d->shape[0] = NOL;
            if (o->p == PROJ_GATE) d->shape[1] = 2 * dff;
            else d->shape[2] = dff;
        } else if (moe && role && (role->flags & (MK_ROLE_ROUTER | MK_ROLE_ROUTER_BIAS))) { /* one row (or value) per expert: the kept experts' */
            o->kind = SRC_ROWS;
            d->shape[0] = NOL;
        }
        n++;
    }
    char *path = mk_path_join(dir, "model.safetensors");
    if (!path) { st = MK_ERR_NOMEM; goto out; }
    mk_st_writer *w = NULL;
    st = mk_st_writer_open(&w, path, decl, n, NULL);
    free(path);
    for (size_t i = 0; !st && i < n; i++) {
        const out_tensor *o = &ot[i];
        const mk_expert_out *xs = plan->x + o->layer * NO;
        const int64_t NOL = o->layer >= 0 && plan->n_out_layer ? plan->n_out_layer[o->layer] : NO;
        if (o->kind == SRC_COPY) {
            st = mk_st_writer_write(w, o->src->t.data, o->src->t.nbytes);
        } else if (o->kind == SRC_ROWS) {
            size_t row = o->src->t.nbytes / (size_t)E;
            for (int64_t j = 0; !st && j < NOL; j++) st = mk_st_writer_write(w, (const uint8_t *)o->src->t.data + (size_t)xs[j].router_from * row, row);
        } else if (o->kind == SRC_EXPERT) {
            st = write_proj(w, m, o->layer, &xs[o->j], o->p, dff);
        } else if (o->kind == SRC_GPTOSS) {
            st = write_gptoss(w, m, o->layer, xs, NOL, o->p, o->part);
        } else { /* fused: gate rows then up rows, or down, per output expert */
            for (int64_t j = 0; !st && j < NOL; j++) {
                if (o->p == PROJ_GATE) {
                    st = write_proj(w, m, o->layer, &xs[j], PROJ_GATE, dff);
                    if (!st) st = write_proj(w, m, o->layer, &xs[j], PROJ_UP, dff);
                } else {
                    st = write_proj(w, m, o->layer, &xs[j], PROJ_DOWN, dff);
                }
            }
        }
    }
    if (st) mk_st_writer_abort(w);
    else st = mk_st_writer_close(w);
out:
    for (size_t i = 0; i < cap && ot; i++) free(ot[i].name);
    free(ot);
    free(decl);
    return st;
}

static const char *const carried[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json",
                                      "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json", "chat_template.jinja", NULL};

mk_status mk_write_experts(const mk_model *m, const mk_expert_plan *plan, const char *outdir, const mk_write_opts *o) {
    const int64_t L = m->cfg.n_layer, E = m->cfg.n_expert, NO = plan->n_out;
    const int64_t dff = plan->d_ff_out ? plan->d_ff_out : m->cfg.d_ff_expert;
    if (NO < 1) return mk_err(MK_ERR_ARG, "write: no experts per layer");
    mk_status st = mk_require_uniform_experts(m, "write");
    if (st) return st;
    bool any_moe = false;
    for (int64_t l = 0; l < L; l++) {
        if (!m->layers[l].is_moe) continue;
        any_moe = true;
        const int64_t NOL = plan->n_out_layer ? plan->n_out_layer[l] : NO;
        if (NOL < 1 || NOL > NO) return mk_err(MK_ERR_ARG, "write: layer %lld gets %lld experts (1 to %lld)", (long long)l, (long long)NOL, (long long)NO);
        if (NOL < m->cfg.k_active && plan->n_out_layer) return mk_err(MK_ERR_ARG, "write: layer %lld gets %lld experts, fewer than k = %lld", (long long)l, (long long)NOL, (long long)m->cfg.k_active);
        for (int64_t j = 0; j < NOL; j++) {
            const mk_expert_out *x = &plan->x[l * NO + j];
            if (x->router_from < 0 || x->router_from >= E) return mk_err(MK_ERR_ARG, "write: layer %lld expert %lld takes router row %d of %lld", (long long)l, (long long)j, x->router_from, (long long)E);
            if (x->copy_from >= E) return mk_err(MK_ERR_ARG, "write: layer %lld expert %lld copies expert %d of %lld", (long long)l, (long long)j, x->copy_from, (long long)E);
            if (x->copy_from >= 0 && dff != m->cfg.d_ff_expert) return mk_err(MK_ERR_ARG, "write: a copied expert cannot change size (d_ff %lld -> %lld)", (long long)m->cfg.d_ff_expert, (long long)dff);
            if (x->copy_from < 0 && (!x->gate || !x->up || !x->down)) return mk_err(MK_ERR_ARG, "write: layer %lld expert %lld has no weights", (long long)l, (long long)j);
            if (x->copy_from < 0 && m->cfg.expert_bias)
                return mk_err(MK_ERR_UNSUPPORTED, "write: %s: new experts (merged or neuron-pruned) of a model whose experts have biases (%s) are not supported yet; pruning whole experts is",
                              m->dir, m->cfg.arch_name);
        }
        /* group-limited routing: the output experts must form n_group equal groups in order (each
         * takes its router row from its own group), or transformers would route differently */
        const int64_t G = m->cfg.n_group;
        for (int64_t j = 0; G > 1 && j < NOL; j++)
            if (NOL % G || plan->x[l * NO + j].router_from / (E / G) != j / (NOL / G))
                return mk_err(MK_ERR_ARG, "write: layer %lld: %s routes within %lld expert groups; the %lld experts written must be an equal share of each group, in order",
                              (long long)l, m->cfg.arch_name, (long long)G, (long long)NOL);
    }
    if (!any_moe) return mk_err(MK_ERR_ARG, "write: the model has no MoE layer");
    struct stat sb;
    if (stat(outdir, &sb) == 0 && !o->force) return mk_err(MK_ERR_ARG, "%s: already exists (use --force to replace it)", outdir);
    size_t len = strlen(outdir) + 48;
    char *tmp = mk_malloc(len), *old = mk_malloc(len);
    if (!tmp || !old) { free(tmp); free(old); return MK_ERR_NOMEM; }
    snprintf(tmp, len, "%s.moekit-tmp-%ld", outdir, (long)getpid());
    snprintf(old, len, "%s.moekit-old-%ld", outdir, (long)getpid());
    rm_rf(tmp);
    if (mkdir(tmp, 0755) != 0) { st = mk_err(MK_ERR_IO, "%s: cannot create directory: %s", tmp, strerror(errno)); goto fail; }
    if ((st = write_weights(m, plan, tmp))) goto fail;
    if ((st = write_config(m, plan, dff, tmp))) goto fail;
    for (int i = 0; carried[i]; i++) {
        char *from = mk_path_join(m->dir, carried[i]), *to = mk_path_join(tmp, carried[i]);
        if (!from || !to) st = MK_ERR_NOMEM;
        else if (mk_file_exists(from)) st = copy_file(from, to);
        free(from);
        free(to);
        if (st) goto fail;
    }
    if (o->record_json) {
        char *rec = mk_path_join(tmp, "moekit_compression.json");
        st = rec ? mk_write_file_atomic(rec, o->record_json, strlen(o->record_json)) : MK_ERR_NOMEM;
        free(rec);
        if (st) goto fail;
    }
    bool replaced = false;
    if (stat(outdir, &sb) == 0) {
        if (rename(outdir, old) != 0) { st = mk_err(MK_ERR_IO, "%s: cannot move the existing directory aside: %s", outdir, strerror(errno)); goto fail; }
        replaced = true;
    }
    if (rename(tmp, outdir) != 0) {
        st = mk_err(MK_ERR_IO, "%s: cannot rename the finished output into place: %s", outdir, strerror(errno));
        if (replaced && rename(old, outdir) != 0) mk_err_prefix(st, "%s: the previous directory is kept as %s", outdir, old);
        goto fail;
    }
    if (replaced) rm_rf(old);
    free(tmp);
    free(old);
    return MK_OK;
fail:
    rm_rf(tmp);
    free(tmp);
    free(old);
    return st;
}

mk_status mk_require_uniform_experts(const mk_model *m, const char *what) {
    if (!m->cfg.n_expert_layer) return MK_OK;
    return mk_err(MK_ERR_UNSUPPORTED, "%s: %s: the model's layers have different expert counts (config.json's moekit_experts_per_layer); a per-layer model is not compressed again: start from its source model",
                  m->dir, what);
}

mk_status mk_write_pruned(const mk_model *m, const uint8_t *keep, const char *outdir, const mk_write_opts *o) {
    const int64_t L = m->cfg.n_layer, E = m->cfg.n_expert;
    int64_t n_max = 0;
    bool differ = false;
    int64_t *count = mk_calloc((size_t)L, sizeof *count);
    if (!count) return MK_ERR_NOMEM;
    for (int64_t l = 0; l < L; l++) {
        if (!m->layers[l].is_moe) continue;
        for (int64_t e = 0; e < E; e++) count[l] += keep[l * E + e] != 0;
        if (count[l] == 0) { free(count); return mk_err(MK_ERR_ARG, "prune: layer %lld keeps no expert", (long long)l); }
        differ |= n_max && count[l] != n_max;
        n_max = MK_MAX(n_max, count[l]);
    }
    if (n_max == 0) { free(count); return mk_err(MK_ERR_ARG, "prune: the model has no MoE layer"); }
    mk_expert_out *x = mk_calloc((size_t)(L * n_max), sizeof *x);
    if (!x) { free(count); return MK_ERR_NOMEM; }
    for (int64_t l = 0; l < L; l++) {
        int64_t j = 0;
        for (int64_t e = 0; e < E && m->layers[l].is_moe; e++)
            if (keep[l * E + e]) {
                x[l * n_max + j].copy_from = (int32_t)e;
                x[l * n_max + j++].router_from = (int32_t)e;
            }
    }
    mk_expert_plan plan = {.n_out = n_max, .n_out_layer = differ ? count : NULL, .x = x};
    mk_status st = mk_write_experts(m, &plan, outdir, o);
    free(x);
    free(count);
    return st;
}
