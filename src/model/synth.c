/* Random-weight HF checkpoints of any supported config (include/moekit/synth.h): the tensors of
 * the architecture's table (arch.h), which load.c reads too (HF hub layout, one tensor per expert). */
#include "format/safetensors_write.h"
#include "arch.h"
#include "moekit/synth.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* FILL_SCALE: the E8M0 exponent byte of MXFP4 blocks whose random codes have the requested std */
typedef enum { FILL_RAND = MK_FILL_RAND, FILL_ONES = MK_FILL_ONES, FILL_ZEROS = MK_FILL_ZEROS, FILL_SCALE } fill_kind;

typedef struct tlist {
    mk_st_decl *d;
    fill_kind *fill;
    size_t n, cap;
    mk_dtype dt;
    bool mxfp4;   /* GPT-OSS's experts as MXFP4 blocks and scales */
    const mk_config *cfg;
    bool oom;
} tlist;

static void add(tlist *L, fill_kind f, mk_dtype dt, int ndim, const int64_t *shape, const char *fmt, ...) MK_PRINTF(6, 7);
static void add(tlist *L, fill_kind f, mk_dtype dt, int ndim, const int64_t *shape, const char *fmt, ...) {
    if (L->oom) return;
    if (L->n == L->cap) {
        size_t nc = L->cap ? 2 * L->cap : 256;
        mk_st_decl *d = mk_realloc(L->d, nc * sizeof *d);
        if (d) L->d = d;
        fill_kind *k = mk_realloc(L->fill, nc * sizeof *k);
        if (k) L->fill = k;
        if (!d || !k) { L->oom = true; return; }
        L->cap = nc;
    }
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    mk_st_decl *e = &L->d[L->n];
    memset(e, 0, sizeof *e);
    e->name = mk_strdup(name);
    if (!e->name) { L->oom = true; return; }
    e->dtype = dt;
    e->ndim = ndim;
    for (int k = 0; k < ndim; k++) e->shape[k] = shape[k];
    L->fill[L->n++] = f;
}

static void tlist_free(tlist *L) {
    for (size_t i = 0; i < L->n; i++) free((char *)L->d[i].name);
    free(L->d);
    free(L->fill);
}

/* GPT-OSS's experts as transformers stores them (gptoss.c): per layer gate_up_proj (E, H, 2·I) and
 * down_proj (E, I, H), or as MXFP4 *_blocks (E, rows, cols/32, 16) and *_scales (E, rows, cols/32)
 * with rows the output features, and the biases gate_up_proj_bias (E, 2·I), down_proj_bias (E, H). */
static mk_status add_item(const mk_arch_item *it, void *user) {
    tlist *L = user;
    if (it->optional) return MK_OK; /* biases the config leaves to the file: synth writes none */
    if (it->role->flags & MK_ROLE_HF_FUSED) {
        const mk_role *r = it->role;
        if (it->expert != 0 || r->cols == MK_DIM_NONE || r->slot == offsetof(mk_mlp_w, up)) return MK_OK; /* once a layer, per stacked tensor */
        const mk_config *c = L->cfg;
        const bool gu = r->slot == offsetof(mk_mlp_w, gate);
        const int64_t E = c->n_expert_layer ? c->n_expert_layer[it->layer] : c->n_expert, H = c->d_model, I = c->d_ff_expert;
        const int64_t rows = gu ? 2 * I : H, cols = gu ? H : I; /* output features, inputs */
        const char *p = gu ? "gate_up_proj" : "down_proj";
        const long long l = (long long)it->layer;
        if (L->mxfp4) {
            add(L, FILL_RAND, MK_DT_U8, 4, (const int64_t[]){E, rows, cols / 32, 16}, "model.layers.%lld.mlp.experts.%s_blocks", l, p);
            add(L, FILL_SCALE, MK_DT_U8, 3, (const int64_t[]){E, rows, cols / 32}, "model.layers.%lld.mlp.experts.%s_scales", l, p);
        } else {
            add(L, FILL_RAND, L->dt, 3, (const int64_t[]){E, cols, rows}, "model.layers.%lld.mlp.experts.%s", l, p);
        }
        add(L, FILL_ZEROS, L->dt, 2, (const int64_t[]){E, rows}, "model.layers.%lld.mlp.experts.%s_bias", l, p);
        return L->oom ? MK_ERR_NOMEM : MK_OK;
    }
    add(L, (fill_kind)it->role->fill, L->dt, it->ndim, it->shape, "%s", it->hf);
    return L->oom ? MK_ERR_NOMEM : MK_OK;
}

/* Every tensor load.c reads for this config (the architecture's table), in file order. */
static mk_status build_list(tlist *L, const mk_config *c) {
    L->cfg = c;
    return mk_arch_walk(c, NULL, add_item, L);
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#define CHUNK ((size_t)1 << 20) /* elements per independently seeded piece */

/* Fills elements [i0, i0 + n) of tensor ti into buf (already in dtype dt). Deterministic in
 * (seed, ti, chunk index) whatever the thread count. */
static void gen_chunk(void *buf, size_t n, mk_dtype dt, fill_kind f, uint64_t seed, size_t ti, size_t chunk, float a) {
    uint64_t s = seed * 0x100000001b3ull ^ ((uint64_t)ti << 32) ^ (uint64_t)chunk;
    s = splitmix(&s);
    if (dt == MK_DT_U8) { /* MXFP4: random codes; the exponent that gives them std a/√3 (the codes' rms is 2.93) */
        const int e = 127 + (int)lrintf(log2f(a / 1.7320508f / 2.926f));
        for (size_t i = 0; i < n; i++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((uint8_t *)buf)[i] = f == FILL_SCALE ? (uint8_t)(e < 1 ? 1 : e > 254 ? 254 : e) : (uint8_t)(s >> 56);
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float v = f == FILL_ONES ? 1.0f : 0.0f;
        if (f == FILL_RAND) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            v = a * (float)((double)(s >> 11) * (2.0 / 9007199254740992.0) - 1.0);
        }
        if (dt == MK_DT_F32) ((float *)buf)[i] = v;
        else if (dt == MK_DT_BF16) ((uint16_t *)buf)[i] = mk_f32_to_bf16(v);
        else ((uint16_t *)buf)[i] = mk_f32_to_f16(v);
    }
}

static mk_status write_weights(const char *path, const tlist *L, const mk_synth_opts *o, float a) {
    mk_st_writer *w;
    mk_status st = mk_st_writer_open(&w, path, L->d, L->n, NULL);
    if (st) return st;
    const size_t es = mk_dtypes[L->dt].elem_bytes, total = mk_st_writer_remaining(w); /* (U8 tensors use a fraction of the buffer) */
    const int nth = omp_get_max_threads();
    const size_t per = CHUNK * (size_t)nth;
    uint8_t *buf = mk_malloc(per * es);
    if (!buf) { mk_st_writer_abort(w); return MK_ERR_NOMEM; }
    size_t done_bytes = 0;
    double t0 = mk_now(), last = t0;
    for (size_t ti = 0; ti < L->n && !st; ti++) {
        size_t n = 1;
        for (int k = 0; k < L->d[ti].ndim; k++) n *= (size_t)L->d[ti].shape[k];
        for (size_t c0 = 0; c0 < n && !st; c0 += per) {
            const size_t m = MK_MIN(per, n - c0);
            const size_t nchunks = (m + CHUNK - 1) / CHUNK;
            const mk_dtype tdt = L->d[ti].dtype;
            const size_t tes = mk_dtypes[tdt].elem_bytes;
            #pragma omp parallel for schedule(static) if (nchunks > 1)
            for (size_t c = 0; c < nchunks; c++) {
                const size_t cn = MK_MIN(CHUNK, m - c * CHUNK);
                gen_chunk(buf + c * CHUNK * tes, cn, tdt, L->fill[ti], o->seed, ti, (c0 / CHUNK) + c, a);
            }
            st = mk_st_writer_write(w, buf, m * tes);
            done_bytes += m * tes;
            if (!o->quiet && mk_now() - last > 1.0) {
                last = mk_now();
                fprintf(stderr, "\rsynth: %.0f / %.0f MB", done_bytes / 1e6, total / 1e6);
            }
        }
    }
    free(buf);
    if (st) { mk_st_writer_abort(w); return st; }
    if (!o->quiet) fprintf(stderr, "\rsynth: %.0f MB in %.1f s, syncing...\n", total / 1e6, mk_now() - t0);
    return mk_st_writer_close(w);
}

/* config.json text with n_layer and dtype applied; *cfg parsed from it. */
static mk_status make_config(const char *config_path, const mk_synth_opts *o, const char *torch_dtype, char **text,
                             mk_config *cfg) {
    json_error_t jerr;
    json_t *root = json_load_file(config_path, 0, &jerr);
    if (!root) return mk_err(MK_ERR_FORMAT, "%s: %s (line %d)", config_path, jerr.text, jerr.line);
    mk_status st = MK_OK;
    if (!json_is_object(root)) { st = mk_err(MK_ERR_FORMAT, "%s: not a JSON object", config_path); goto out; }
    if (o->n_layer > 0) {
        json_t *nl = json_object_get(root, "num_hidden_layers");
        if (json_is_integer(nl) && json_integer_value(nl) < o->n_layer) {
            st = mk_err(MK_ERR_ARG, "%s: --layers %lld exceeds the config's %lld layers", config_path, (long long)o->n_layer, (long long)json_integer_value(nl));
            goto out;
        }
        json_object_set_new(root, "num_hidden_layers", json_integer(o->n_layer));
        json_t *mlo = json_object_get(root, "mlp_only_layers");
        if (json_is_array(mlo)) {
            json_t *keep = json_array();
            size_t i;
            json_t *v;
            json_array_foreach(mlo, i, v) if (json_is_integer(v) && json_integer_value(v) < o->n_layer) json_array_append(keep, v);
            json_object_set_new(root, "mlp_only_layers", keep);
        }
        if (json_object_get(root, "max_window_layers")) json_object_set_new(root, "max_window_layers", json_integer(o->n_layer));
    }
    json_object_set_new(root, "torch_dtype", json_string(torch_dtype));
    json_object_del(root, "quantization_config"); /* the weights written are not quantized, */
    if (o->dtype && !strcmp(o->dtype, "mxfp4")) { /* except GPT-OSS's experts in MXFP4, as OpenAI ships them */
        json_t *qc = json_object(), *keep = json_array();
        const char *const not_converted[] = {"model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"};
        for (size_t i = 0; i < 4; i++) json_array_append_new(keep, json_string(not_converted[i]));
        json_object_set_new(qc, "modules_to_not_convert", keep);
        json_object_set_new(qc, "quant_method", json_string("mxfp4"));
        json_object_set_new(root, "quantization_config", qc);
    }
    *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!*text) { st = MK_ERR_NOMEM; goto out; }
    st = mk_config_parse(cfg, *text, config_path);
    if (st) { free(*text); *text = NULL; }
out:
    json_decref(root);
    return st;
}

mk_status mk_model_synth(const char *config_path, const char *out_dir, const mk_synth_opts *opts) {
    mk_synth_opts o = opts ? *opts : (mk_synth_opts){0};
    mk_dtype dt = MK_DT_BF16;
    const char *torch_dtype = "bfloat16";
    if (o.dtype && !strcmp(o.dtype, "f32")) { dt = MK_DT_F32; torch_dtype = "float32"; }
    else if (o.dtype && !strcmp(o.dtype, "f16")) { dt = MK_DT_F16; torch_dtype = "float16"; }
    else if (o.dtype && strcmp(o.dtype, "bf16") && strcmp(o.dtype, "mxfp4")) return mk_err(MK_ERR_ARG, "synth: dtype '%s' is not one of bf16, f16, f32, mxfp4", o.dtype);
    const float std = o.std > 0 ? o.std : 0.02f, a = std * 1.7320508f; /* uniform(-a, a) has std a/√3 */

    char *text = NULL, *work = NULL, *wpath = NULL, *cpath = NULL;
    mk_config cfg;
    memset(&cfg, 0, sizeof cfg);
    tlist L = {.dt = dt, .mxfp4 = o.dtype && !strcmp(o.dtype, "mxfp4")};
    mk_status st = make_config(config_path, &o, torch_dtype, &text, &cfg);
    if (st) return st;
    if (L.mxfp4 && (cfg.arch != MK_ARCH_GPT_OSS || cfg.d_model % 32 || cfg.d_ff_expert % 32)) {
        st = mk_err(MK_ERR_ARG, "synth: dtype mxfp4 is GPT-OSS's expert format (hidden_size and intermediate_size multiples of 32), not for %s", cfg.arch_name);
        goto out;
    }
    if ((st = build_list(&L, &cfg))) goto out;

    struct stat sb;
    bool fresh = stat(out_dir, &sb) != 0;
    if (!fresh && !S_ISDIR(sb.st_mode)) { st = mk_err(MK_ERR_ARG, "%s: exists and is not a directory", out_dir); goto out; }
    if (fresh) {
        size_t n = strlen(out_dir) + 32;
        work = mk_malloc(n);
        if (!work) { st = MK_ERR_NOMEM; goto out; }
        snprintf(work, n, "%s.tmp.%ld", out_dir, (long)getpid());
        if (mkdir(work, 0755) != 0) { st = mk_err(MK_ERR_IO, "%s: cannot create: %s", work, strerror(errno)); free(work); work = NULL; goto out; }
    } else {
        char *idx = mk_path_join(out_dir, "model.safetensors.index.json");
        bool has_idx = idx && mk_file_exists(idx);
        free(idx);
        if (has_idx) { st = mk_err(MK_ERR_ARG, "%s: holds a sharded model (model.safetensors.index.json); choose a new directory", out_dir); goto out; }
    }
    const char *dir = fresh ? work : out_dir;
    wpath = mk_path_join(dir, "model.safetensors");
    cpath = mk_path_join(dir, "config.json");
    if (!wpath || !cpath) { st = MK_ERR_NOMEM; goto out; }
    if ((st = write_weights(wpath, &L, &o, a))) goto out;
    if ((st = mk_write_file_atomic(cpath, text, strlen(text)))) goto out;
    if (fresh && rename(work, out_dir) != 0) { st = mk_err(MK_ERR_IO, "%s: cannot rename onto %s: %s", work, out_dir, strerror(errno)); goto out; }
    if (fresh) { free(work); work = NULL; }
out:
    if (work) { /* a failed fresh build: remove what it holds */
        if (wpath) unlink(wpath);
        if (cpath) unlink(cpath);
        rmdir(work);
        free(work);
    }
    free(wpath);
    free(cpath);
    free(text);
    tlist_free(&L);
    mk_config_free(&cfg);
    return st;
}
