#include "safetensors_write.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct mk_st_writer {
    int fd;
    char *path, *tmp;
    size_t total, written;
};

static char *tmp_name(const char *path) {
    size_t n = strlen(path) + 32;
    char *t = mk_malloc(n);
    if (t) snprintf(t, n, "%s.tmp.%ld", path, (long)getpid());
    return t;
}

static void fsync_dir_of(const char *path) {
    char *p = mk_strdup(path);
    if (!p) return;
    int fd = open(dirname(p), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(p);
}

static mk_status write_all(int fd, const void *data, size_t n, const char *path) {
    const uint8_t *p = data;
    while (n) {
        ssize_t k = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return mk_err(MK_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        }
        p += k;
        n -= (size_t)k;
    }
    return MK_OK;
}

void mk_st_writer_abort(mk_st_writer *w) {
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    if (w->tmp) unlink(w->tmp);
    free(w->tmp);
    free(w->path);
    free(w);
}

mk_status mk_st_writer_open(mk_st_writer **out, const char *path, const mk_st_decl *decls, size_t n,
                            const char *const *metadata) {
    *out = NULL;
    mk_st_writer *w = mk_calloc(1, sizeof *w);
    if (!w) return MK_ERR_NOMEM;
    w->fd = -1;
    mk_status st = MK_OK;
    char *hdr = NULL;
    json_t *root = json_object(), *meta = json_object();
    if (!root || !meta) { json_decref(meta); st = MK_ERR_NOMEM; goto fail; }
    if (metadata) {
        for (size_t i = 0; metadata[i] && metadata[i + 1]; i += 2) json_object_set_new(meta, metadata[i], json_string(metadata[i + 1]));
    } else {
        json_object_set_new(meta, "format", json_string("pt"));
    }
    json_object_set_new(root, "__metadata__", meta);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const mk_st_decl *d = &decls[i];
        if (!d->name || !*d->name || d->dtype < 0 || d->dtype >= MK_DT_COUNT || d->ndim < 0 || d->ndim > MK_MAX_DIMS) {
            st = mk_err(MK_ERR_ARG, "%s: tensor %zu: bad declaration", path, i);
            goto fail;
        }
        if (json_object_get(root, d->name)) { st = mk_err(MK_ERR_ARG, "%s: tensor '%s' declared twice", path, d->name); goto fail; }
        size_t bytes = mk_dtypes[d->dtype].elem_bytes;
        json_t *shape = json_array();
        for (int k = 0; k < d->ndim; k++) {
            if (d->shape[k] < 0 || !mk_mul_ok(bytes, (size_t)d->shape[k], &bytes)) {
                json_decref(shape);
                st = mk_err(MK_ERR_ARG, "%s: tensor '%s': bad shape", path, d->name);
                goto fail;
            }
            json_array_append_new(shape, json_integer(d->shape[k]));
        }
        size_t end;
        if (!mk_add_ok(off, bytes, &end)) { json_decref(shape); st = mk_err(MK_ERR_ARG, "%s: total size overflows", path); goto fail; }
        json_t *e = json_object();
        json_object_set_new(e, "dtype", json_string(mk_dtypes[d->dtype].name));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets", json_pack("[II]", (json_int_t)off, (json_int_t)end));
        json_object_set_new(root, d->name, e);
        off = end;
    }
    w->total = off;
    hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!hdr) { st = MK_ERR_NOMEM; goto fail; }
    size_t hlen = strlen(hdr), padded = (hlen + 7) / 8 * 8;
    w->path = mk_strdup(path);
    w->tmp = tmp_name(path);
    if (!w->path || !w->tmp) { st = MK_ERR_NOMEM; goto fail; }
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) { st = mk_err(MK_ERR_IO, "%s: cannot create: %s", w->tmp, strerror(errno)); goto fail; }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    char pad[8] = "        ";
    if ((st = write_all(w->fd, len8, 8, w->tmp)) || (st = write_all(w->fd, hdr, hlen, w->tmp)) ||
        (st = write_all(w->fd, pad, padded - hlen, w->tmp)))
        goto fail;
    free(hdr);
    json_decref(root);
    *out = w;
    return MK_OK;
fail:
    free(hdr);
    json_decref(root);
    mk_st_writer_abort(w);
    return st;
}

mk_status mk_st_writer_write(mk_st_writer *w, const void *data, size_t nbytes) {
    if (nbytes > w->total - w->written)
        return mk_err(MK_ERR_ARG, "%s: %zu more bytes exceed the declared tensors (%zu of %zu written)", w->path, nbytes,
                      w->written, w->total);
    mk_status st = write_all(w->fd, data, nbytes, w->tmp);
    if (!st) w->written += nbytes;
    return st;
}

size_t mk_st_writer_remaining(const mk_st_writer *w) { return w->total - w->written; }

mk_status mk_st_writer_close(mk_st_writer *w) {
    mk_status st = MK_OK;
    if (w->written != w->total)
        st = mk_err(MK_ERR_ARG, "%s: only %zu of the declared %zu bytes were written", w->path, w->written, w->total);
    else if (fsync(w->fd) != 0)
        st = mk_err(MK_ERR_IO, "%s: fsync failed: %s", w->tmp, strerror(errno));
    if (!st) {
        int rc = close(w->fd);
        w->fd = -1;
        if (rc != 0) st = mk_err(MK_ERR_IO, "%s: close failed: %s", w->tmp, strerror(errno));
        else if (rename(w->tmp, w->path) != 0) st = mk_err(MK_ERR_IO, "%s: cannot rename onto %s: %s", w->tmp, w->path, strerror(errno));
    }
    if (st) {
        mk_st_writer_abort(w);
        return st;
    }
    fsync_dir_of(w->path);
    free(w->tmp);
    w->tmp = NULL;
    mk_st_writer_abort(w);
    return MK_OK;
}
