/* Stored reference logits (format in include/moekit/eval.h): writer and validating reader. */
#include "eval/eval_internal.h"

#include "base/base.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HDR_BYTES 96

uint64_t mk_fnv1a(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get32(const uint8_t *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }
static float getf(const uint8_t *p) { uint32_t u = get32(p); float f; memcpy(&f, &u, 4); return f; }
static double getd(const uint8_t *p) { uint64_t u = get64(p); double d; memcpy(&d, &u, 8); return d; }
static void putf(uint8_t *p, float f) { uint32_t u; memcpy(&u, &f, 4); put32(p, u); }
static void putd(uint8_t *p, double d) { uint64_t u; memcpy(&u, &d, 8); put64(p, u); }

size_t mk_logits_record_bytes(uint32_t top_k) { return 16 + 8 * (size_t)top_k; }

static void encode_header(uint8_t *h, const mk_logits_header *x) {
    memset(h, 0, HDR_BYTES);
    memcpy(h, MK_LOGITS_MAGIC, 8);
    put32(h + 8, MK_LOGITS_VERSION);
    put32(h + 12, HDR_BYTES);
    put64(h + 16, x->vocab);
    put32(h + 24, x->top_k);
    put64(h + 32, x->ctx);
    put64(h + 40, x->stride);
    put64(h + 48, x->n_tokens);
    put64(h + 56, x->tokens_hash);
    put64(h + 64, x->model_hash);
    put64(h + 72, x->count);
}

/* ---- writer ---- */
struct mk_logits_writer {
    FILE *f;
    char *path, *tmp;
    mk_logits_header h;
    uint8_t *rec;
    float *vals;     /* (top_k) */
    int32_t *ids;    /* (top_k) */
    mk_topk_pair *scratch;   /* (vocab), for mk_logits_top_k's sorting path; NULL for small top_k */
};

mk_status mk_logits_writer_open(mk_logits_writer **out, const char *path, const mk_logits_header *h) {
    *out = NULL;
    mk_logits_writer *w = mk_calloc(1, sizeof *w);
    if (!w) return MK_ERR_NOMEM;
    w->h = *h;
    w->h.count = 0;
    w->path = mk_strdup(path);
    size_t n = strlen(path) + 16;
    w->tmp = mk_malloc(n);
    w->rec = mk_malloc(mk_logits_record_bytes(h->top_k));
    w->vals = mk_malloc((size_t)h->top_k * sizeof(float) + 1);
    w->ids = mk_malloc((size_t)h->top_k * sizeof(int32_t) + 1);
    if (h->top_k > MK_TOPK_INSERT_MAX) w->scratch = mk_malloc((size_t)h->vocab * sizeof(mk_topk_pair));
    if (!w->path || !w->tmp || !w->rec || !w->vals || !w->ids || (h->top_k > MK_TOPK_INSERT_MAX && !w->scratch)) {
        mk_logits_writer_abort(w);
        return MK_ERR_NOMEM;
    }
    snprintf(w->tmp, n, "%s.tmp%ld", path, (long)getpid());
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        mk_status st = mk_err(MK_ERR_IO, "%s: cannot create: %s", w->tmp, strerror(errno));
        mk_logits_writer_abort(w);
        return st;
    }
    uint8_t hdr[HDR_BYTES];
    encode_header(hdr, &w->h);
    if (fwrite(hdr, 1, HDR_BYTES, w->f) != HDR_BYTES) {
        mk_status st = mk_err(MK_ERR_IO, "%s: write failed", w->tmp);
        mk_logits_writer_abort(w);
        return st;
    }
    *out = w;
    return MK_OK;
}

/* The k largest of x, descending, the lowest id first among equal values. Two ways, one order
 * (tests/test_eval_core.c compares them): insertion into a sorted list of k, O(V k), for the usual
 * top-32; and a sort of all V (value, id) pairs, O(V log V), for large k (a whole-vocabulary record
 * for exact KLD, where the insertion costs about V^2/4 moves a position: 15 ms at V = 8192, against
 * under 1 ms for the sort). */
void mk_topk_insert(const float *x, size_t V, uint32_t k, int32_t *ids, float *vals) {
    uint32_t n = 0;
    for (size_t i = 0; i < V; i++) {
        float v = x[i];
        if (n == k && !(v > vals[k - 1])) continue;
        uint32_t j = n < k ? n++ : k - 1;
        while (j > 0 && v > vals[j - 1]) {
            vals[j] = vals[j - 1];
            ids[j] = ids[j - 1];
            j--;
        }
        vals[j] = v;
        ids[j] = (int32_t)i;
    }
}

static int cmp_pair_desc(const void *a, const void *b) {
    const mk_topk_pair *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

void mk_topk_sort(const float *x, size_t V, uint32_t k, int32_t *ids, float *vals, mk_topk_pair *scratch) {
    for (size_t i = 0; i < V; i++) scratch[i] = (mk_topk_pair){x[i], (int32_t)i};
    qsort(scratch, V, sizeof *scratch, cmp_pair_desc);
    for (uint32_t i = 0; i < k; i++) {
        vals[i] = scratch[i].v;
        ids[i] = scratch[i].id;
    }
}

mk_status mk_logits_writer_add(mk_logits_writer *w, const float *row, double lse, int32_t target) {
    const uint32_t k = w->h.top_k;
    if (k > MK_TOPK_INSERT_MAX)
        mk_topk_sort(row, (size_t)w->h.vocab, k, w->ids, w->vals, w->scratch);
    else
        mk_topk_insert(row, (size_t)w->h.vocab, k, w->ids, w->vals);
    uint8_t *p = w->rec;
    put32(p, (uint32_t)target);
    putf(p + 4, row[target]);
    putd(p + 8, lse);
    for (uint32_t i = 0; i < k; i++) {
        put32(p + 16 + 8 * (size_t)i, (uint32_t)w->ids[i]);
        putf(p + 20 + 8 * (size_t)i, w->vals[i]);
    }
    size_t nb = mk_logits_record_bytes(k);
    if (fwrite(p, 1, nb, w->f) != nb) return mk_err(MK_ERR_IO, "%s: write failed", w->tmp);
    w->h.count++;
    return MK_OK;
}

mk_status mk_logits_writer_close(mk_logits_writer *w) {
    uint8_t hdr[HDR_BYTES];
    encode_header(hdr, &w->h);
    mk_status st = MK_OK;
    if (fseek(w->f, 0, SEEK_SET) || fwrite(hdr, 1, HDR_BYTES, w->f) != HDR_BYTES || fflush(w->f) || fsync(fileno(w->f)))
        st = mk_err(MK_ERR_IO, "%s: write failed: %s", w->tmp, strerror(errno));
    if (fclose(w->f) && !st) st = mk_err(MK_ERR_IO, "%s: close failed: %s", w->tmp, strerror(errno));
    w->f = NULL;
    if (!st && rename(w->tmp, w->path)) st = mk_err(MK_ERR_IO, "%s: cannot rename to %s: %s", w->tmp, w->path, strerror(errno));
    if (st) { mk_logits_writer_abort(w); return st; }
    free(w->path); free(w->tmp); free(w->rec); free(w->vals); free(w->ids); free(w->scratch); free(w);
    return MK_OK;
}

void mk_logits_writer_abort(mk_logits_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    if (w->tmp) unlink(w->tmp);
    free(w->path); free(w->tmp); free(w->rec); free(w->vals); free(w->ids); free(w->scratch); free(w);
}

/* ---- reader ---- */
struct mk_logits_file {
    mk_map map;
    mk_logits_header h;
    size_t rec_bytes;
};

mk_status mk_logits_open(mk_logits_file **out, const char *path) {
    *out = NULL;
    mk_logits_file *f = mk_calloc(1, sizeof *f);
    if (!f) return MK_ERR_NOMEM;
    mk_status st = mk_map_open(&f->map, path);
    if (st) { free(f); return st; }
    if ((st = mk_logits_validate(f->map.data, f->map.size, path, &f->h))) {
        mk_map_close(&f->map);
        free(f);
        return st;
    }
    f->rec_bytes = mk_logits_record_bytes(f->h.top_k);
    *out = f;
    return MK_OK;
}

mk_status mk_logits_validate(const uint8_t *d, size_t sz, const char *path, mk_logits_header *h) {
    mk_status st = MK_OK;
    size_t rec_bytes;
#define BAD(...) do { st = mk_err(MK_ERR_FORMAT, __VA_ARGS__); goto fail; } while (0)
    if (sz < HDR_BYTES) BAD("%s: %zu bytes, shorter than the %d-byte header of a stored-logits file", path, sz, HDR_BYTES);
    if (memcmp(d, MK_LOGITS_MAGIC, 8)) BAD("%s: not a moekit stored-logits file (bad magic)", path);
    if (get32(d + 8) != MK_LOGITS_VERSION) BAD("%s: version %u, expected %u", path, get32(d + 8), MK_LOGITS_VERSION);
    if (get32(d + 12) != HDR_BYTES) BAD("%s: header_bytes %u, expected %d", path, get32(d + 12), HDR_BYTES);
    h->vocab = get64(d + 16);
    h->top_k = get32(d + 24);
    h->ctx = get64(d + 32);
    h->stride = get64(d + 40);
    h->n_tokens = get64(d + 48);
    h->tokens_hash = get64(d + 56);
    h->model_hash = get64(d + 64);
    h->count = get64(d + 72);
    if (h->vocab < 2 || h->vocab > (1u << 31)) BAD("%s: vocab %llu out of range", path, (unsigned long long)h->vocab);
    if (h->top_k < 1 || h->top_k > h->vocab) BAD("%s: top_k %u not in [1, vocab %llu]", path, h->top_k, (unsigned long long)h->vocab);
    if (h->ctx < 2 || h->stride < 1 || h->stride > h->ctx) BAD("%s: ctx %llu / stride %llu invalid", path, (unsigned long long)h->ctx, (unsigned long long)h->stride);
    if (h->n_tokens < 2 || h->n_tokens > SIZE_MAX || h->count != mk_eval_count_scored((size_t)h->n_tokens, (size_t)h->ctx, (size_t)h->stride))
        BAD("%s: count %llu does not match %llu tokens in windows of %llu / stride %llu", path,
            (unsigned long long)h->count, (unsigned long long)h->n_tokens, (unsigned long long)h->ctx,
            (unsigned long long)h->stride);
    rec_bytes = mk_logits_record_bytes(h->top_k);
    size_t body;
    if (h->count > SIZE_MAX || !mk_mul_ok((size_t)h->count, rec_bytes, &body) || body != sz - HDR_BYTES)
        BAD("%s: %llu records of %zu bytes do not fill the file's %zu bytes after the header (truncated?)", path,
            (unsigned long long)h->count, rec_bytes, sz - HDR_BYTES);
    for (size_t r = 0; r < h->count; r++) {
        const uint8_t *p = d + HDR_BYTES + r * rec_bytes;
        uint32_t tgt = get32(p);
        double lse = getd(p + 8);
        float tl = getf(p + 4);
        if (tgt >= h->vocab) BAD("%s: record %zu: target %u out of range", path, r, tgt);
        if (!isfinite(lse) || !isfinite(tl) || tl > lse + 1e-3 * fabs(lse) + 1e-3)
            BAD("%s: record %zu: logsumexp / target logit not finite or inconsistent", path, r);
        float prev = INFINITY;
        for (uint32_t i = 0; i < h->top_k; i++) {
            uint32_t id = get32(p + 16 + 8 * (size_t)i);
            float v = getf(p + 20 + 8 * (size_t)i);
            if (id >= h->vocab) BAD("%s: record %zu: top-k id %u out of range", path, r, id);
            if (!isfinite(v) || v > prev) BAD("%s: record %zu: top-k logits not finite or not descending", path, r);
            prev = v;
        }
    }
#undef BAD
    return MK_OK;
fail:
    return st;
}

const mk_logits_header *mk_logits_get_header(const mk_logits_file *f) { return &f->h; }

void mk_logits_record(const mk_logits_file *f, size_t r, mk_logits_rec *out) {
    const uint8_t *p = f->map.data + HDR_BYTES + r * f->rec_bytes;
    out->target = (int32_t)get32(p);
    out->target_logit = getf(p + 4);
    out->lse = getd(p + 8);
    out->p = p + 16;
}

int32_t mk_logits_rec_id(const mk_logits_rec *r, uint32_t i) { return (int32_t)get32(r->p + 8 * (size_t)i); }
float mk_logits_rec_logit(const mk_logits_rec *r, uint32_t i) { return getf(r->p + 4 + 8 * (size_t)i); }

void mk_logits_close(mk_logits_file *f) {
    if (!f) return;
    mk_map_close(&f->map);
    free(f);
}
