/* GGUF v3 writer (gguf_write.h). */
#include "gguf_write.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ALIGN MK_GGUF_DEFAULT_ALIGNMENT

typedef struct wtensor {
    char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[MK_MAX_DIMS];
    size_t nbytes, offset;
    mk_gguf_fill_fn fill;
    void *user;
} wtensor;

struct mk_gguf_writer {
    char *path;
    uint8_t *meta;          /* serialized key/value pairs */
    size_t meta_len, meta_cap;
    uint64_t n_kv;
    wtensor *t;
    size_t n_t, cap_t;
    size_t data_size;       /* running size of the data section */
};

mk_status mk_gguf_writer_new(mk_gguf_writer **out, const char *path) {
    *out = NULL;
    mk_gguf_writer *w = mk_calloc(1, sizeof *w);
    if (!w) return MK_ERR_NOMEM;
    if (!(w->path = mk_strdup(path))) { free(w); return MK_ERR_NOMEM; }
    *out = w;
    return MK_OK;
}

void mk_gguf_writer_free(mk_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->t);
    free(w->meta);
    free(w->path);
    free(w);
}

static mk_status put(mk_gguf_writer *w, const void *p, size_t n) {
    if (w->meta_len + n > w->meta_cap) {
        size_t nc = w->meta_cap ? w->meta_cap : 4096;
        while (nc < w->meta_len + n) nc *= 2;
        uint8_t *m = mk_realloc(w->meta, nc);
        if (!m) return MK_ERR_NOMEM;
        w->meta = m;
        w->meta_cap = nc;
    }
    memcpy(w->meta + w->meta_len, p, n);
    w->meta_len += n;
    return MK_OK;
}

static mk_status put_le(mk_gguf_writer *w, uint64_t v, int n) {
    uint8_t b[8];
    for (int i = 0; i < n; i++) b[i] = (uint8_t)(v >> (8 * i));
    return put(w, b, (size_t)n);
}

static mk_status put_str(mk_gguf_writer *w, const char *s) {
    size_t n = strlen(s);
    mk_status st = put_le(w, n, 8);
    return st ? st : put(w, s, n);
}

static mk_status put_key(mk_gguf_writer *w, const char *key, mk_gguf_type t) {
    mk_status st = put_str(w, key);
    if (!st) st = put_le(w, (uint64_t)t, 4);
    if (!st) w->n_kv++;
    return st;
}

mk_status mk_gguf_w_u32(mk_gguf_writer *w, const char *key, uint32_t v) {
    mk_status st = put_key(w, key, MK_GGUF_U32);
    return st ? st : put_le(w, v, 4);
}
mk_status mk_gguf_w_i32(mk_gguf_writer *w, const char *key, int32_t v) {
    mk_status st = put_key(w, key, MK_GGUF_I32);
    return st ? st : put_le(w, (uint32_t)v, 4);
}
mk_status mk_gguf_w_u64(mk_gguf_writer *w, const char *key, uint64_t v) {
    mk_status st = put_key(w, key, MK_GGUF_U64);
    return st ? st : put_le(w, v, 8);
}
mk_status mk_gguf_w_f32(mk_gguf_writer *w, const char *key, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    mk_status st = put_key(w, key, MK_GGUF_F32);
    return st ? st : put_le(w, u, 4);
}
mk_status mk_gguf_w_bool(mk_gguf_writer *w, const char *key, bool v) {
    mk_status st = put_key(w, key, MK_GGUF_BOOL);
    return st ? st : put_le(w, v ? 1 : 0, 1);
}
mk_status mk_gguf_w_str(mk_gguf_writer *w, const char *key, const char *v) {
    mk_status st = put_key(w, key, MK_GGUF_STRING);
    return st ? st : put_str(w, v);
}
mk_status mk_gguf_w_arr_str(mk_gguf_writer *w, const char *key, const char *const *v, size_t n) {
    mk_status st = put_key(w, key, MK_GGUF_ARRAY);
    if (!st) st = put_le(w, MK_GGUF_STRING, 4);
    if (!st) st = put_le(w, n, 8);
    for (size_t i = 0; !st && i < n; i++) st = put_str(w, v[i]);
    return st;
}
mk_status mk_gguf_w_arr_strn(mk_gguf_writer *w, const char *key, const char *const *v, const size_t *lens, size_t n) {
    mk_status st = put_key(w, key, MK_GGUF_ARRAY);
    if (!st) st = put_le(w, MK_GGUF_STRING, 4);
    if (!st) st = put_le(w, n, 8);
    for (size_t i = 0; !st && i < n; i++) {
        st = put_le(w, lens[i], 8);
        if (!st) st = put(w, v[i], lens[i]);
    }
    return st;
}
mk_status mk_gguf_w_arr_f32(mk_gguf_writer *w, const char *key, const float *v, size_t n) {
    mk_status st = put_key(w, key, MK_GGUF_ARRAY);
    if (!st) st = put_le(w, MK_GGUF_F32, 4);
    if (!st) st = put_le(w, n, 8);
    for (size_t i = 0; !st && i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        st = put_le(w, u, 4);
    }
    return st;
}
mk_status mk_gguf_w_arr_i32(mk_gguf_writer *w, const char *key, const int32_t *v, size_t n) {
    mk_status st = put_key(w, key, MK_GGUF_ARRAY);
    if (!st) st = put_le(w, MK_GGUF_I32, 4);
    if (!st) st = put_le(w, n, 8);
    for (size_t i = 0; !st && i < n; i++) st = put_le(w, (uint32_t)v[i], 4);
    return st;
}

mk_status mk_gguf_w_arr_bool(mk_gguf_writer *w, const char *key, const bool *v, size_t n) {
    mk_status st = put_key(w, key, MK_GGUF_ARRAY);
    if (!st) st = put_le(w, MK_GGUF_BOOL, 4);
    if (!st) st = put_le(w, n, 8);
    for (size_t i = 0; !st && i < n; i++) st = put_le(w, v[i] ? 1 : 0, 1);
    return st;
}

mk_status mk_gguf_w_tensor(mk_gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne,
                           mk_gguf_fill_fn fill, void *user) {
    uint32_t blk, tsz;
    if (!mk_ggml_type_size(type, &blk, &tsz)) return mk_err(MK_ERR_ARG, "%s: tensor '%s': unknown ggml type %u", w->path, name, type);
    if (n_dims < 1 || n_dims > MK_MAX_DIMS || ne[0] % blk)
        return mk_err(MK_ERR_ARG, "%s: tensor '%s': %d dims, row length %lld not a multiple of the %s block (%u)", w->path, name, n_dims,
                      (long long)ne[0], mk_ggml_type_name(type), blk);
    if (w->n_t == w->cap_t) {
        size_t nc = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *t = mk_realloc(w->t, nc * sizeof *t);
        if (!t) return MK_ERR_NOMEM;
        w->t = t;
        w->cap_t = nc;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = mk_strdup(name))) return MK_ERR_NOMEM;
    w->n_t++;
    t->type = type;
    t->n_dims = n_dims;
    size_t nb = (size_t)ne[0] / blk * tsz;
    for (int d = 0; d < n_dims; d++) {
        t->ne[d] = ne[d];
        if (d && !mk_mul_ok(nb, (size_t)ne[d], &nb)) return mk_err(MK_ERR_ARG, "%s: tensor '%s': size overflows", w->path, name);
    }
    t->nbytes = nb;
    t->offset = w->data_size;
    t->fill = fill;
    t->user = user;
    w->data_size += (nb + ALIGN - 1) / ALIGN * ALIGN;
    return MK_OK;
}

static mk_status wr(FILE *f, const void *p, size_t n, const char *tmp) {
    if (n && fwrite(p, 1, n, f) != n) return mk_err(MK_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    return MK_OK;
}

static mk_status wr_le(FILE *f, uint64_t v, int n, const char *tmp) {
    uint8_t b[8];
    for (int i = 0; i < n; i++) b[i] = (uint8_t)(v >> (8 * i));
    return wr(f, b, (size_t)n, tmp);
}

static mk_status wr_pad(FILE *f, size_t pos, const char *tmp) {
    static const uint8_t zeros[ALIGN];
    size_t pad = (ALIGN - pos % ALIGN) % ALIGN;
    return wr(f, zeros, pad, tmp);
}

mk_status mk_gguf_writer_finish(mk_gguf_writer *w) {
    size_t plen = strlen(w->path);
    char *tmp = mk_malloc(plen + 16);
    if (!tmp) return MK_ERR_NOMEM;
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", w->path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        mk_status st = mk_err(MK_ERR_IO, "%s: cannot create a temporary file beside it: %s", w->path, strerror(errno));
        free(tmp);
        return st;
    }
    fchmod(fd, 0644);
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlink(tmp);
        free(tmp);
        return mk_err(MK_ERR_IO, "%s: fdopen failed", w->path);
    }
    mk_status st = MK_OK;
    size_t pos = 0;
#define W(expr) do { if (!st) st = (expr); } while (0)
    W(wr_le(f, MK_GGUF_MAGIC, 4, tmp));
    W(wr_le(f, 3, 4, tmp));
    W(wr_le(f, w->n_t, 8, tmp));
    W(wr_le(f, w->n_kv, 8, tmp));
    W(wr(f, w->meta, w->meta_len, tmp));
    pos = 24 + w->meta_len;
    for (size_t i = 0; i < w->n_t && !st; i++) {
        const wtensor *t = &w->t[i];
        size_t nl = strlen(t->name);
        W(wr_le(f, nl, 8, tmp));
        W(wr(f, t->name, nl, tmp));
        W(wr_le(f, (uint64_t)t->n_dims, 4, tmp));
        for (int d = 0; d < t->n_dims; d++) W(wr_le(f, (uint64_t)t->ne[d], 8, tmp));
        W(wr_le(f, t->type, 4, tmp));
        W(wr_le(f, t->offset, 8, tmp));
        pos += 8 + nl + 4 + 8 * (size_t)t->n_dims + 4 + 8;
    }
    W(wr_pad(f, pos, tmp));
    uint8_t *buf = NULL;
    size_t buf_cap = 0;
    for (size_t i = 0; i < w->n_t && !st; i++) {
        const wtensor *t = &w->t[i];
        if (t->nbytes > buf_cap) {
            free(buf);
            buf_cap = t->nbytes;
            if (!(buf = mk_malloc(buf_cap))) { st = MK_ERR_NOMEM; break; }
        }
        if ((st = t->fill(t->user, i, buf, t->nbytes))) break;
        W(wr(f, buf, t->nbytes, tmp));
        W(wr_pad(f, t->nbytes, tmp));
    }
    free(buf);
#undef W
    if (!st && fflush(f) != 0) st = mk_err(MK_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    if (!st && fsync(fileno(f)) != 0) st = mk_err(MK_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (fclose(f) != 0 && !st) st = mk_err(MK_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (!st && rename(tmp, w->path) != 0) st = mk_err(MK_ERR_IO, "%s: cannot rename %s over it: %s", w->path, tmp, strerror(errno));
    if (st) unlink(tmp);
    else {
        /* Make the rename durable. */
        char *d = mk_strdup(w->path);
        if (d) {
            int dfd = open(dirname(d), O_RDONLY | O_DIRECTORY);
            if (dfd >= 0) { fsync(dfd); close(dfd); }
            free(d);
        }
    }
    free(tmp);
    return st;
}
