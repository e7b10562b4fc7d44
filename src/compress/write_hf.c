/* Writes a pruned model as a new HF checkpoint directory, atomically: everything goes into a
 * temporary directory beside the target, which is renamed onto the target only when complete. */
#include "compress.h"
#include "format/safetensors_write.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* How one output tensor is made from the source. */
typedef enum { SRC_COPY, SRC_ROWS, SRC_FUSED } src_kind;
typedef struct out_tensor {
    char *name;
    const mk_st_entry *src;
    src_kind kind;
    int64_t layer;            /* SRC_ROWS / SRC_FUSED: whose kept experts select the rows / slabs */
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

/* config.json with the new expert count and k. */
static mk_status write_config(const mk_model *m, int64_t n_keep, const char *dir) {
    char *src = mk_path_join(m->dir, "config.json"), *dst = mk_path_join(dir, "config.json");
    mk_status st = MK_OK;
    json_error_t jerr;
    json_t *root = src ? json_load_file(src, JSON_PRESERVE_ORDER, &jerr) : NULL;
    if (!root) {
        st = src ? mk_err(MK_ERR_FORMAT, "%s: %s", src, jerr.text) : MK_ERR_NOMEM;
        goto out;
    }
    bool set = false;
    const char *keys[] = {"num_local_experts", "num_experts"};
    for (int i = 0; i < 2; i++)
        if (json_is_integer(json_object_get(root, keys[i]))) {
            json_object_set_new(root, keys[i], json_integer(n_keep));
            set = true;
        }
    if (!set) { st = mk_err(MK_ERR_FORMAT, "%s: no expert count field to update", src); goto out; }
    json_object_set_new(root, "num_experts_per_tok", json_integer(MK_MIN(m->cfg.k_active, n_keep)));
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

static mk_status write_weights(const mk_model *m, const uint8_t *keep, int64_t n_keep, const char *dir) {
    const mk_st_set *s = m->st;
    const int64_t E = m->cfg.n_expert;
    out_tensor *ot = mk_calloc(s->n_entries, sizeof *ot);
    mk_st_decl *decl = mk_calloc(s->n_entries, sizeof *decl);
    mk_status st = MK_OK;
    size_t n = 0;
    if (!ot || !decl) { st = MK_ERR_NOMEM; goto out; }
    for (size_t i = 0; i < s->n_entries; i++) {
        const mk_st_entry *en = &s->entries[i];
        const char *rest = NULL;
        int64_t l = layer_of(en->name, &rest);
        bool moe = l >= 0 && l < m->cfg.n_layer && m->layers[l].is_moe;
        out_tensor *o = &ot[n];
        mk_st_decl *d = &decl[n];
        d->dtype = en->t.dtype;
        d->ndim = en->t.ndim;
        memcpy(d->shape, en->t.shape, sizeof d->shape);
        o->src = en;
        o->kind = SRC_COPY;
        o->layer = l;
        size_t at;
        const char *tail;
        int64_t e = moe ? expert_of(rest, &at, &tail) : -1;
        if (e >= 0) {
            if (e >= E) { st = mk_err(MK_ERR_FORMAT, "%s: tensor '%s' names expert %lld of %lld", m->dir, en->name, (long long)e, (long long)E); goto out; }
            if (!keep[l * E + e]) continue;
            int64_t ne = 0;
            for (int64_t j = 0; j < e; j++) ne += keep[l * E + j];
            size_t len = strlen(en->name) + 24;
            o->name = mk_malloc(len);
            if (!o->name) { st = MK_ERR_NOMEM; goto out; }
            snprintf(o->name, len, "%.*s%lld%s", (int)(rest - en->name + (ptrdiff_t)at), en->name, (long long)ne, tail);
        } else {
            o->name = mk_strdup(en->name);
            if (!o->name) { st = MK_ERR_NOMEM; goto out; }
            if (moe && (ends_with(rest, "experts.gate_up_proj") || ends_with(rest, "experts.down_proj"))) {
                o->kind = SRC_FUSED;
                d->shape[0] = n_keep;
            } else if (moe && en->t.ndim >= 1 && en->t.shape[0] == E &&
                       (!strcmp(rest, "mlp.gate.weight") || !strcmp(rest, "block_sparse_moe.gate.weight") ||
                        ends_with(rest, "gate.bias") || ends_with(rest, "gate.e_score_correction_bias"))) {
                o->kind = SRC_ROWS;
                d->shape[0] = n_keep;
            }
        }
        d->name = o->name;
        n++;
    }
    char *path = mk_path_join(dir, "model.safetensors");
    if (!path) { st = MK_ERR_NOMEM; goto out; }
    mk_st_writer *w = NULL;
    st = mk_st_writer_open(&w, path, decl, n, NULL);
    free(path);
    for (size_t i = 0; !st && i < n; i++) {
        const out_tensor *o = &ot[i];
        const mk_tensor *t = &o->src->t;
        if (o->kind == SRC_COPY) {
            st = mk_st_writer_write(w, t->data, t->nbytes);
            continue;
        }
        size_t slab = t->nbytes / (size_t)t->shape[0]; /* one expert's row or matrix */
        for (int64_t e = 0; !st && e < E; e++)
            if (keep[o->layer * E + e]) st = mk_st_writer_write(w, (const uint8_t *)t->data + (size_t)e * slab, slab);
    }
    if (st) mk_st_writer_abort(w);
    else st = mk_st_writer_close(w);
out:
    for (size_t i = 0; i < s->n_entries && ot; i++) free(ot[i].name);
    free(ot);
    free(decl);
    return st;
}

static const char *const carried[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json",
                                      "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json", "chat_template.jinja", NULL};

mk_status mk_write_pruned(const mk_model *m, const uint8_t *keep, const char *outdir, const mk_write_opts *o) {
    const int64_t L = m->cfg.n_layer, E = m->cfg.n_expert;
    int64_t n_keep = -1;
    for (int64_t l = 0; l < L; l++) {
        if (!m->layers[l].is_moe) continue;
        int64_t c = 0;
        for (int64_t e = 0; e < E; e++) c += keep[l * E + e] != 0;
        if (c == 0) return mk_err(MK_ERR_ARG, "prune: layer %lld keeps no expert", (long long)l);
        if (n_keep >= 0 && c != n_keep)
            return mk_err(MK_ERR_UNSUPPORTED, "prune: layers keep different numbers of experts (%lld and %lld); an HF config holds one expert count, so such a plan can be evaluated with --route mask:FILE but not written yet", (long long)n_keep, (long long)c);
        n_keep = c;
    }
    if (n_keep < 0) return mk_err(MK_ERR_ARG, "prune: the model has no MoE layer");
    struct stat sb;
    if (stat(outdir, &sb) == 0 && !o->force) return mk_err(MK_ERR_ARG, "%s: already exists (use --force to replace it)", outdir);
    size_t len = strlen(outdir) + 48;
    char *tmp = mk_malloc(len), *old = mk_malloc(len);
    if (!tmp || !old) { free(tmp); free(old); return MK_ERR_NOMEM; }
    snprintf(tmp, len, "%s.moekit-tmp-%ld", outdir, (long)getpid());
    snprintf(old, len, "%s.moekit-old-%ld", outdir, (long)getpid());
    rm_rf(tmp);
    mk_status st = MK_OK;
    if (mkdir(tmp, 0755) != 0) { st = mk_err(MK_ERR_IO, "%s: cannot create directory: %s", tmp, strerror(errno)); goto fail; }
    if ((st = write_weights(m, keep, n_keep, tmp))) goto fail;
    if ((st = write_config(m, n_keep, tmp))) goto fail;
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
