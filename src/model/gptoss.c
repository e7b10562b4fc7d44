/* GPT-OSS's HF expert tensors → moekit's per-expert views (research/formats-2026.md §2).
 *
 * transformers keeps all experts of a layer in four tensors:
 *   mlp.experts.gate_up_proj       (E, H, 2·I)  x·W orientation, gate = even columns, up = odd columns
 *   mlp.experts.gate_up_proj_bias  (E, 2·I)     interleaved the same way
 *   mlp.experts.down_proj          (E, I, H)    x·W orientation
 *   mlp.experts.down_proj_bias     (E, H)
 * and OpenAI's released checkpoints store the matrices as MXFP4 (quantization_config mxfp4):
 *   *_blocks (E, rows, cols/32, 16) u8 and *_scales (E, rows, cols/32) u8, one row per output
 *   feature (gate_up: 2·I rows, interleaved; down: H rows): the W·x orientation already.
 * The forward pass wants per-expert (rows, cols) matrices in W·x orientation, so this makes them,
 * once, into buffers the model owns: float matrices transposed element by element in their own
 * dtype (exact), MXFP4 rows repacked into ggml's blocks (mk_mxfp4_from_hf: the same codes and
 * exponents, so the same values), gate/up split by row parity, biases as F32. The copy costs the
 * experts' bytes in memory once; a GGUF file of the same model is used in place instead. */
#include "arch.h"
#include "tensor/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One fused tensor of the file: a copy of its view (the set's entries move as views are added). */
typedef struct fsrc {
    bool present;
    mk_tensor t;
    const char *file;
    char name[128];
} fsrc;

typedef struct fused {
    fsrc w, blocks, scales, bias;
} fused;

static void find_src(const mk_model *m, fsrc *s, const char *fmt, long long l, const char *proj) {
    snprintf(s->name, sizeof s->name, fmt, l, proj);
    const mk_st_entry *e = mk_st_find(m->st, s->name);
    s->present = e != NULL;
    if (e) {
        s->t = e->t;
        s->file = mk_st_file_of(m->st, e);
    }
}

static void find_fused(const mk_model *m, int64_t l, const char *proj, fused *f) {
    find_src(m, &f->w, "model.layers.%lld.mlp.experts.%s", (long long)l, proj);
    find_src(m, &f->blocks, "model.layers.%lld.mlp.experts.%s_blocks", (long long)l, proj);
    find_src(m, &f->scales, "model.layers.%lld.mlp.experts.%s_scales", (long long)l, proj);
    find_src(m, &f->bias, "model.layers.%lld.mlp.experts.%s_bias", (long long)l, proj);
}

static mk_status shape_err(const fsrc *s, const char *want) {
    return mk_err(MK_ERR_SHAPE, "%s: tensor '%s': shape or dtype does not match config.json (expected %s)", s->file, s->name, want);
}

/* Adds the per-expert view `name` of layer l, expert e (an HF name of the table's pattern p). */
static mk_status add_view(mk_model *m, int64_t l, int64_t e, const char *p, const mk_tensor *t, const char *src) {
    char name[160];
    snprintf(name, sizeof name, "model.layers.%lld.mlp.experts.%lld.%s", (long long)l, (long long)e, p);
    return mk_st_add(m->st, name, t, 0, src);
}

static mk_tensor mat(mk_dtype dt, int64_t rows, int64_t cols, const void *data) {
    return (mk_tensor){.dtype = dt, .ndim = 2, .shape = {rows, cols}, .nbytes = (size_t)rows * mk_dtype_row_bytes(dt, (size_t)cols), .data = data};
}

static mk_tensor vec(int64_t n, const float *data) {
    return (mk_tensor){.dtype = MK_DT_F32, .ndim = 1, .shape = {n}, .nbytes = (size_t)n * sizeof(float), .data = data};
}

/* The matrices of one projection: part 0 (gate, even rows/columns) and part 1 (up) of gate_up, or
 * down (one part), each expert's (rows, cols) in W·x orientation. */
static mk_status split_matrices(mk_model *m, int64_t l, const fused *f, bool gate_up, int64_t E, int64_t rows, int64_t cols) {
    const int parts = gate_up ? 2 : 1;
    const int64_t R = rows * parts; /* rows of the stored tensor per expert */
    static const char *const pat[3] = {"gate_proj.weight", "up_proj.weight", "down_proj.weight"};
    char want[96];
    mk_status st;
    if (f->blocks.present || f->scales.present) {
        if (!f->blocks.present || !f->scales.present)
            return mk_err(MK_ERR_MISSING, "%s: tensor '%s' is missing (MXFP4 experts need blocks and scales)", m->dir, f->blocks.present ? f->scales.name : f->blocks.name);
        const mk_tensor *b = &f->blocks.t, *s = &f->scales.t;
        snprintf(want, sizeof want, "[%lld, %lld, %lld, 16] U8", (long long)E, (long long)R, (long long)(cols / 32));
        if (cols % 32 || b->dtype != MK_DT_U8 || b->ndim != 4 || b->shape[0] != E || b->shape[1] != R || b->shape[2] != cols / 32 || b->shape[3] != 16) return shape_err(&f->blocks, want);
        snprintf(want, sizeof want, "[%lld, %lld, %lld] U8", (long long)E, (long long)R, (long long)(cols / 32));
        if (s->dtype != MK_DT_U8 || s->ndim != 3 || s->shape[0] != E || s->shape[1] != R || s->shape[2] != cols / 32) return shape_err(&f->scales, want);
        const size_t rb = mk_dtype_row_bytes(MK_DT_MXFP4, (size_t)cols);
        uint8_t *buf = mk_model_owned(m, (size_t)(E * R) * rb);
        if (!buf) return MK_ERR_NOMEM;
        for (int64_t e = 0; e < E; e++)
            for (int64_t r = 0; r < R; r++) { /* stored row r → part r % parts, row r / parts */
                const int64_t p = r % parts, i = r / parts;
                mk_mxfp4_from_hf((const uint8_t *)b->data + (size_t)(e * R + r) * (size_t)(cols / 2), (const uint8_t *)s->data + (size_t)(e * R + r) * (size_t)(cols / 32),
                                 (size_t)cols, buf + ((size_t)((e * parts + p) * rows + i)) * rb);
            }
        for (int64_t e = 0; e < E; e++)
            for (int p = 0; p < parts; p++) {
                mk_tensor t = mat(MK_DT_MXFP4, rows, cols, buf + (size_t)((e * parts + p) * rows) * rb);
                if ((st = add_view(m, l, e, pat[gate_up ? p : 2], &t, f->blocks.name))) return st;
            }
        return MK_OK;
    }
    if (!f->w.present) return mk_err(MK_ERR_MISSING, "%s: tensor '%s' is missing (or its MXFP4 form '%s' and '%s')", m->dir, f->w.name, f->blocks.name, f->scales.name);
    const mk_tensor *w = &f->w.t;
    snprintf(want, sizeof want, "[%lld, %lld, %lld] F32, F16 or BF16", (long long)E, (long long)cols, (long long)R);
    if (w->ndim != 3 || w->shape[0] != E || w->shape[1] != cols || w->shape[2] != R || mk_dtypes[w->dtype].block_elems != 1 || !mk_dtypes[w->dtype].is_float) return shape_err(&f->w, want);
    const size_t es = mk_dtype_row_bytes(w->dtype, 1);
    uint8_t *buf = mk_model_owned(m, (size_t)(E * R * cols) * es);
    if (!buf) return MK_ERR_NOMEM;
    const uint8_t *src = w->data;
    for (int64_t e = 0; e < E; e++)
        for (int64_t c = 0; c < cols; c++) /* stored (c, r) → part r % parts, (r / parts, c) */
            for (int64_t r = 0; r < R; r++)
                memcpy(buf + ((size_t)(((e * parts + r % parts) * rows + r / parts) * cols + c)) * es, src + ((size_t)((e * cols + c) * R + r)) * es, es);
    for (int64_t e = 0; e < E; e++)
        for (int p = 0; p < parts; p++) {
            mk_tensor t = mat(w->dtype, rows, cols, buf + (size_t)((e * parts + p) * rows * cols) * es);
            if ((st = add_view(m, l, e, pat[gate_up ? p : 2], &t, f->w.name))) return st;
        }
    return MK_OK;
}

/* The biases: gate_up_proj_bias (E, 2·I) split by parity, down_proj_bias (E, H), as F32. */
static mk_status split_bias(mk_model *m, int64_t l, const fused *f, bool gate_up, int64_t E, int64_t n) {
    const int parts = gate_up ? 2 : 1;
    char want[64];
    if (!f->bias.present) return mk_err(MK_ERR_MISSING, "%s: tensor '%s' is missing", m->dir, f->bias.name);
    const mk_tensor *b = &f->bias.t;
    snprintf(want, sizeof want, "[%lld, %lld] F32, F16 or BF16", (long long)E, (long long)(n * parts));
    if (b->ndim != 2 || b->shape[0] != E || b->shape[1] != n * parts || mk_dtypes[b->dtype].block_elems != 1 || !mk_dtypes[b->dtype].is_float) return shape_err(&f->bias, want);
    float *all = mk_model_owned(m, (size_t)(E * n * parts) * sizeof(float)), *row = mk_malloc((size_t)(n * parts) * sizeof(float));
    if (!all || !row) { free(row); return MK_ERR_NOMEM; }
    mk_status st = MK_OK;
    for (int64_t e = 0; e < E && !st; e++) {
        mk_to_f32(row, (const uint8_t *)b->data + (size_t)(e * n * parts) * mk_dtype_row_bytes(b->dtype, 1), b->dtype, (size_t)(n * parts));
        for (int p = 0; p < parts && !st; p++) {
            float *dst = all + (size_t)((e * parts + p) * n);
            for (int64_t i = 0; i < n; i++) dst[i] = row[i * parts + p];
            mk_tensor t = vec(n, dst);
            st = add_view(m, l, e, gate_up ? (p ? "up_proj.bias" : "gate_proj.bias") : "down_proj.bias", &t, f->bias.name);
        }
    }
    free(row);
    return st;
}

mk_status mk_gptoss_hf_experts(mk_model *m) {
    const mk_config *c = &m->cfg;
    if (c->arch != MK_ARCH_GPT_OSS) return MK_OK;
    const int64_t H = c->d_model, I = c->d_ff_expert, L = c->n_layer;
    /* every layer's sources first: adding views unsorts the set, which mk_st_find searches */
    fused *f = mk_calloc((size_t)(2 * L), sizeof *f);
    if (!f) return MK_ERR_NOMEM;
    bool any = false;
    for (int64_t l = 0; l < L; l++) {
        find_fused(m, l, "gate_up_proj", &f[2 * l]);
        find_fused(m, l, "down_proj", &f[2 * l + 1]);
        for (int k = 0; k < 2; k++) any |= f[2 * l + k].w.present || f[2 * l + k].blocks.present || f[2 * l + k].scales.present;
    }
    mk_status st = MK_OK;
    for (int64_t l = 0; l < L && any && !st; l++) { /* (none: per-expert views already, moekit's own files; the walk reads them) */
        if (!c->layer_moe[l]) continue;
        const int64_t E = c->n_expert_layer ? c->n_expert_layer[l] : c->n_expert;
        fused *gu = &f[2 * l], *dn = &f[2 * l + 1];
        if (!(st = split_matrices(m, l, gu, true, E, I, H)) && !(st = split_matrices(m, l, dn, false, E, H, I)) && !(st = split_bias(m, l, gu, true, E, I)))
            st = split_bias(m, l, dn, false, E, H);
    }
    if (any && !st) st = mk_st_finish(m->st);
    if (any && !st) {
        m->experts_repacked = true;
        /* the sources are read no more: out of this process's memory (the file's pages stay cached) */
        for (int64_t l = 0; l < L; l++)
            for (int k = 0; k < 2; k++) {
                const fsrc *all[] = {&f[2 * l + k].w, &f[2 * l + k].blocks, &f[2 * l + k].scales};
                for (int i = 0; i < 3; i++)
                    if (all[i]->present) mk_model_advise_tensor(m, &all[i]->t, false);
            }
    }
    /* the fused tensors are now read through the views: out of the set, so that no one reads them twice */
    for (int64_t l = 0; l < L && any && !st; l++)
        for (int k = 0; k < 2; k++) {
            const fsrc *all[] = {&f[2 * l + k].w, &f[2 * l + k].blocks, &f[2 * l + k].scales, &f[2 * l + k].bias};
            for (int i = 0; i < 4; i++)
                if (all[i]->present) mk_st_remove(m->st, all[i]->name);
        }
    free(f);
    return st;
}
