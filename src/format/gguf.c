/* GGUF reader: every field is checked against the mapping before use (gguf.h). */
#include "gguf.h"

#include <stdlib.h>
#include <string.h>

#define MAX_NAME 256        /* tensor names (ggml's limit is 64) */
#define MAX_KEY 65535
#define MAX_ALIGNMENT (1u << 24)

/* ggml types: name, block elements, block bytes (ggml-common.h / gguf-py GGML_QUANT_SIZES). */
static const struct { const char *name; uint32_t blk, size; } ggml_types[] = {
    [0] = {"F32", 1, 4},        [1] = {"F16", 1, 2},        [2] = {"Q4_0", 32, 18},     [3] = {"Q4_1", 32, 20},
    [6] = {"Q5_0", 32, 22},     [7] = {"Q5_1", 32, 24},     [8] = {"Q8_0", 32, 34},     [9] = {"Q8_1", 32, 40},
    [10] = {"Q2_K", 256, 84},   [11] = {"Q3_K", 256, 110},  [12] = {"Q4_K", 256, 144},  [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210},  [15] = {"Q8_K", 256, 292},  [16] = {"IQ2_XXS", 256, 66}, [17] = {"IQ2_XS", 256, 74},
    [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50}, [20] = {"IQ4_NL", 32, 18},  [21] = {"IQ3_S", 256, 110},
    [22] = {"IQ2_S", 256, 82},  [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1},       [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},       [27] = {"I64", 1, 8},       [28] = {"F64", 1, 8},       [29] = {"IQ1_M", 256, 56},
    [30] = {"BF16", 1, 2},      [34] = {"TQ1_0", 256, 54},  [35] = {"TQ2_0", 256, 66},  [39] = {"MXFP4", 32, 17},
    [40] = {"NVFP4", 64, 36},   [41] = {"Q1_0", 128, 18},   [42] = {"Q2_0", 64, 18},
};
#define N_GGML_TYPES (sizeof ggml_types / sizeof ggml_types[0])

static const struct { uint32_t ggml; mk_dtype dt; } type_map[] = {
    {0, MK_DT_F32}, {1, MK_DT_F16},  {30, MK_DT_BF16}, {8, MK_DT_Q8_0}, {2, MK_DT_Q4_0}, {12, MK_DT_Q4_K},
    {14, MK_DT_Q6_K}, {39, MK_DT_MXFP4}, {15, MK_DT_Q8_K}, {24, MK_DT_I8}, {25, MK_DT_I16}, {26, MK_DT_I32}, {27, MK_DT_I64}, {28, MK_DT_F64},
};

const char *mk_ggml_type_name(uint32_t t) { return t < N_GGML_TYPES ? ggml_types[t].name : NULL; }

bool mk_ggml_type_size(uint32_t t, uint32_t *blk, uint32_t *size) {
    if (!mk_ggml_type_name(t)) return false;
    *blk = ggml_types[t].blk;
    *size = ggml_types[t].size;
    return true;
}

bool mk_ggml_to_dtype(uint32_t t, mk_dtype *out) {
    for (size_t i = 0; i < sizeof type_map / sizeof type_map[0]; i++)
        if (type_map[i].ggml == t) { *out = type_map[i].dt; return true; }
    return false;
}

bool mk_dtype_to_ggml(mk_dtype dt, uint32_t *out) {
    for (size_t i = 0; i < sizeof type_map / sizeof type_map[0]; i++)
        if (type_map[i].dt == dt) { *out = type_map[i].ggml; return true; }
    return false;
}

static const char *const vtype_names[MK_GGUF_TYPE_COUNT] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                                           "bool", "string", "array", "u64", "i64", "f64"};
static const uint8_t vtype_size[MK_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *mk_gguf_type_name(uint32_t t) { return t < MK_GGUF_TYPE_COUNT ? vtype_names[t] : "?"; }

/* ---- cursor over the mapping ---- */
typedef struct cur {
    const uint8_t *p;
    size_t size, pos;
    const char *path;
} cur;

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static mk_status need(cur *c, size_t n, const char *what) {
    if (n > c->size - c->pos)
        return mk_err(MK_ERR_FORMAT, "%s: %s runs past the end of the file (%zu bytes needed at offset %zu, file is %zu bytes): truncated file?",
                      c->path, what, n, c->pos, c->size);
    return MK_OK;
}

static mk_status rd_u32(cur *c, uint32_t *v, const char *what) {
    mk_status st = need(c, 4, what);
    if (st) return st;
    *v = (uint32_t)le(c->p + c->pos, 4);
    c->pos += 4;
    return MK_OK;
}

static mk_status rd_u64(cur *c, uint64_t *v, const char *what) {
    mk_status st = need(c, 8, what);
    if (st) return st;
    *v = le(c->p + c->pos, 8);
    c->pos += 8;
    return MK_OK;
}

/* A gguf_string: u64 length + bytes. *s points at the bytes. */
static mk_status rd_str(cur *c, const uint8_t **s, uint64_t *len, const char *what) {
    mk_status st = rd_u64(c, len, what);
    if (st) return st;
    if (*len > c->size - c->pos)
        return mk_err(MK_ERR_FORMAT, "%s: %s: string length %llu runs past the end of the file (%zu bytes left)", c->path, what,
                      (unsigned long long)*len, c->size - c->pos);
    *s = c->p + c->pos;
    c->pos += (size_t)*len;
    return MK_OK;
}

static char *dup_name(const uint8_t *s, uint64_t len) {
    char *d = mk_malloc((size_t)len + 1);
    if (!d) return NULL;
    memcpy(d, s, (size_t)len);
    d[len] = 0;
    return d;
}

void mk_gguf_free(mk_gguf *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].strs);
    }
    free(g->kv);
    for (size_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->tensors);
    mk_map_close(&g->map);
    free(g);
}

bool mk_gguf_sniff(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    uint8_t b[4];
    bool ok = fread(b, 1, 4, f) == 4 && le(b, 4) == MK_GGUF_MAGIC;
    fclose(f);
    return ok;
}

/* Parses one value of type t (not ARRAY) at the cursor; fills kv->data / str_len. */
static mk_status rd_value(cur *c, mk_gguf_kv *kv, const char *what) {
    mk_status st;
    if (kv->type == MK_GGUF_STRING) {
        const uint8_t *s;
        if ((st = rd_str(c, &s, &kv->str_len, what))) return st;
        kv->data = s;
        return MK_OK;
    }
    size_t sz = vtype_size[kv->type];
    if ((st = need(c, sz, what))) return st;
    kv->data = c->p + c->pos;
    c->pos += sz;
    return MK_OK;
}

static mk_status rd_kv(cur *c, mk_gguf_kv *kv, size_t idx) {
    char what[64 + MAX_NAME];
    snprintf(what, sizeof what, "metadata key #%zu", idx);
    const uint8_t *ks;
    uint64_t klen;
    mk_status st = rd_str(c, &ks, &klen, what);
    if (st) return st;
    if (klen == 0 || klen > MAX_KEY) return mk_err(MK_ERR_FORMAT, "%s: %s: key length %llu (must be 1..%d)", c->path, what, (unsigned long long)klen, MAX_KEY);
    if (memchr(ks, 0, (size_t)klen)) return mk_err(MK_ERR_FORMAT, "%s: %s: key contains a NUL byte", c->path, what);
    if (!(kv->key = dup_name(ks, klen))) return MK_ERR_NOMEM;
    snprintf(what, sizeof what, "metadata key '%.*s'", (int)MK_MIN(klen, (uint64_t)MAX_NAME), kv->key);
    uint32_t t;
    if ((st = rd_u32(c, &t, what))) return st;
    if (t >= MK_GGUF_TYPE_COUNT) return mk_err(MK_ERR_FORMAT, "%s: %s: unknown value type %u", c->path, what, t);
    kv->type = (mk_gguf_type)t;
    kv->n = 1;
    if (t != MK_GGUF_ARRAY) return rd_value(c, kv, what);
    uint32_t et;
    if ((st = rd_u32(c, &et, what))) return st;
    if (et >= MK_GGUF_TYPE_COUNT) return mk_err(MK_ERR_FORMAT, "%s: %s: unknown array element type %u", c->path, what, et);
    if (et == MK_GGUF_ARRAY) return mk_err(MK_ERR_UNSUPPORTED, "%s: %s: arrays of arrays are not supported", c->path, what);
    kv->arr_type = (mk_gguf_type)et;
    if ((st = rd_u64(c, &kv->n, what))) return st;
    kv->data = c->p + c->pos;
    const size_t left = c->size - c->pos;
    if (et == MK_GGUF_STRING) {
        if (kv->n > left / 8)
            return mk_err(MK_ERR_FORMAT, "%s: %s: array count %llu is more than the %zu bytes left can hold", c->path, what, (unsigned long long)kv->n, left);
        kv->strs = mk_malloc((size_t)(kv->n ? kv->n : 1) * sizeof *kv->strs);
        if (!kv->strs) return MK_ERR_NOMEM;
        for (uint64_t i = 0; i < kv->n; i++) {
            const uint8_t *s;
            uint64_t len;
            kv->strs[i] = c->p + c->pos;
            if ((st = rd_str(c, &s, &len, what))) return st;
        }
        return MK_OK;
    }
    size_t bytes;
    if (!mk_mul_ok((size_t)kv->n, vtype_size[et], &bytes) || kv->n > SIZE_MAX || bytes > left)
        return mk_err(MK_ERR_FORMAT, "%s: %s: array of %llu %s values runs past the end of the file (%zu bytes left)", c->path, what,
                      (unsigned long long)kv->n, vtype_names[et], left);
    c->pos += bytes;
    return MK_OK;
}

static mk_status rd_tensor_info(cur *c, mk_gguf_tensor *ti, size_t idx) {
    char what[64 + MAX_NAME];
    snprintf(what, sizeof what, "tensor info #%zu", idx);
    const uint8_t *ns;
    uint64_t nlen;
    mk_status st = rd_str(c, &ns, &nlen, what);
    if (st) return st;
    if (nlen == 0 || nlen >= MAX_NAME) return mk_err(MK_ERR_FORMAT, "%s: %s: name length %llu (must be 1..%d)", c->path, what, (unsigned long long)nlen, MAX_NAME - 1);
    if (memchr(ns, 0, (size_t)nlen)) return mk_err(MK_ERR_FORMAT, "%s: %s: name contains a NUL byte", c->path, what);
    if (!(ti->name = dup_name(ns, nlen))) return MK_ERR_NOMEM;
    snprintf(what, sizeof what, "tensor '%s'", ti->name);
    if ((st = rd_u32(c, &ti->n_dims, what))) return st;
    if (ti->n_dims < 1 || ti->n_dims > MK_MAX_DIMS)
        return mk_err(MK_ERR_FORMAT, "%s: %s: n_dims = %u (must be 1..%d)", c->path, what, ti->n_dims, MK_MAX_DIMS);
    for (uint32_t d = 0; d < ti->n_dims; d++) {
        uint64_t v;
        if ((st = rd_u64(c, &v, what))) return st;
        if (v > (uint64_t)INT64_MAX) return mk_err(MK_ERR_FORMAT, "%s: %s: ne[%u] = %llu is out of range", c->path, what, d, (unsigned long long)v);
        ti->ne[d] = (int64_t)v;
    }
    if ((st = rd_u32(c, &ti->ggml_type, what))) return st;
    return rd_u64(c, &ti->offset, what);
}

static int cmp_kv(const void *a, const void *b) {
    return strcmp((*(const mk_gguf_kv *const *)a)->key, (*(const mk_gguf_kv *const *)b)->key);
}
static int cmp_tname(const void *a, const void *b) {
    return strcmp((*(const mk_gguf_tensor *const *)a)->name, (*(const mk_gguf_tensor *const *)b)->name);
}
static int cmp_toff(const void *a, const void *b) {
    uint64_t x = (*(const mk_gguf_tensor *const *)a)->offset, y = (*(const mk_gguf_tensor *const *)b)->offset;
    return x < y ? -1 : x > y;
}

static mk_status check_tables(mk_gguf *g) {
    const char *path = g->map.path;
    mk_status st = MK_OK;
    size_t n = MK_MAX(g->n_kv, g->n_tensors);
    void **idx = mk_malloc((n ? n : 1) * sizeof *idx);
    if (!idx) return MK_ERR_NOMEM;
    for (size_t i = 0; i < g->n_kv; i++) idx[i] = &g->kv[i];
    qsort(idx, g->n_kv, sizeof *idx, cmp_kv);
    for (size_t i = 1; i < g->n_kv && !st; i++)
        if (!strcmp(((mk_gguf_kv *)idx[i])->key, ((mk_gguf_kv *)idx[i - 1])->key))
            st = mk_err(MK_ERR_FORMAT, "%s: metadata key '%s' appears twice", path, ((mk_gguf_kv *)idx[i])->key);
    for (size_t i = 0; i < g->n_tensors; i++) idx[i] = &g->tensors[i];
    qsort(idx, g->n_tensors, sizeof *idx, cmp_tname);
    for (size_t i = 1; i < g->n_tensors && !st; i++)
        if (!strcmp(((mk_gguf_tensor *)idx[i])->name, ((mk_gguf_tensor *)idx[i - 1])->name))
            st = mk_err(MK_ERR_FORMAT, "%s: tensor '%s' appears twice", path, ((mk_gguf_tensor *)idx[i])->name);
    qsort(idx, g->n_tensors, sizeof *idx, cmp_toff);
    for (size_t i = 1; i < g->n_tensors && !st; i++) {
        const mk_gguf_tensor *a = idx[i - 1], *b = idx[i];
        if (b->offset < a->offset + a->t.nbytes)
            st = mk_err(MK_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", path, a->name, b->name);
    }
    free(idx);
    return st;
}

/* Sizes, types, alignment and bounds of tensor i, and its view. */
static mk_status place_tensor(mk_gguf *g, mk_gguf_tensor *ti) {
    const char *path = g->map.path;
    const char *tn = mk_ggml_type_name(ti->ggml_type);
    if (!tn) return mk_err(MK_ERR_FORMAT, "%s: tensor '%s': unknown ggml type %u", path, ti->name, ti->ggml_type);
    const uint32_t blk = ggml_types[ti->ggml_type].blk, tsz = ggml_types[ti->ggml_type].size;
    if (ti->ne[0] % blk)
        return mk_err(MK_ERR_FORMAT, "%s: tensor '%s': row length ne[0] = %lld is not a multiple of the %s block size %u", path, ti->name,
                      (long long)ti->ne[0], tn, blk);
    size_t nbytes = (size_t)ti->ne[0] / blk, numel = (size_t)ti->ne[0];
    bool ok = mk_mul_ok(nbytes, tsz, &nbytes);
    for (uint32_t d = 1; d < ti->n_dims && ok; d++)
        ok = mk_mul_ok(nbytes, (size_t)ti->ne[d], &nbytes) && mk_mul_ok(numel, (size_t)ti->ne[d], &numel);
    if (!ok || numel > (size_t)INT64_MAX) return mk_err(MK_ERR_FORMAT, "%s: tensor '%s': shape overflows", path, ti->name);
    if (ti->offset % g->alignment)
        return mk_err(MK_ERR_FORMAT, "%s: tensor '%s': offset %llu is not a multiple of the alignment %zu", path, ti->name,
                      (unsigned long long)ti->offset, g->alignment);
    size_t start, end;
    if (ti->offset > SIZE_MAX || !mk_add_ok(g->data_offset, (size_t)ti->offset, &start) || !mk_add_ok(start, nbytes, &end) || end > g->map.size)
        return mk_err(MK_ERR_FORMAT, "%s: tensor '%s': data [offset %llu, +%zu bytes] runs past the end of the file (%zu bytes): truncated file?", path,
                      ti->name, (unsigned long long)ti->offset, nbytes, g->map.size);
    if (blk == 1 && start % tsz)
        return mk_err(MK_ERR_FORMAT, "%s: tensor '%s': data at file offset %zu is misaligned for %s", path, ti->name, start, tn);
    mk_tensor *t = &ti->t;
    t->ndim = (int)ti->n_dims;
    for (uint32_t d = 0; d < ti->n_dims; d++) t->shape[d] = ti->ne[ti->n_dims - 1 - d];
    t->nbytes = nbytes;
    t->data = g->map.data ? g->map.data + start : NULL;
    if (!mk_ggml_to_dtype(ti->ggml_type, &t->dtype)) t->dtype = MK_DT_COUNT;
    return MK_OK;
}

mk_status mk_gguf_open(mk_gguf **out, const char *path) {
    *out = NULL;
    mk_gguf *g = mk_calloc(1, sizeof *g);
    if (!g) return MK_ERR_NOMEM;
    mk_status st = mk_map_open(&g->map, path);
    if (st) { free(g); return st; }
    cur c = {.p = g->map.data, .size = g->map.size, .path = g->map.path};
    uint32_t magic;
    uint64_t n_tensors, n_kv;
    if (g->map.size < 4 || le(g->map.data, 4) != MK_GGUF_MAGIC) {
        st = mk_err(MK_ERR_FORMAT, "%s: not a GGUF file (bad magic: the file does not start with \"GGUF\")", path);
        goto fail;
    }
    if ((st = rd_u32(&c, &magic, "magic")) || (st = rd_u32(&c, &g->version, "version"))) goto fail;
    if (g->version != 2 && g->version != 3) {
        if (g->version == 0x02000000u || g->version == 0x03000000u)
            st = mk_err(MK_ERR_UNSUPPORTED, "%s: version: big-endian GGUF files are not supported", path);
        else
            st = mk_err(MK_ERR_UNSUPPORTED, "%s: version %u is not supported (only GGUF v2 and v3)", path, g->version);
        goto fail;
    }
    if ((st = rd_u64(&c, &n_tensors, "tensor_count")) || (st = rd_u64(&c, &n_kv, "metadata_kv_count"))) goto fail;
    /* Each metadata entry takes at least 13 bytes, each tensor info at least 32. */
    if (n_kv > (c.size - c.pos) / 13) {
        st = mk_err(MK_ERR_FORMAT, "%s: metadata_kv_count %llu is more than the file's %zu remaining bytes can hold", path, (unsigned long long)n_kv, c.size - c.pos);
        goto fail;
    }
    if (n_tensors > (c.size - c.pos) / 32) {
        st = mk_err(MK_ERR_FORMAT, "%s: tensor_count %llu is more than the file's %zu remaining bytes can hold", path, (unsigned long long)n_tensors, c.size - c.pos);
        goto fail;
    }
    g->kv = mk_calloc((size_t)(n_kv ? n_kv : 1), sizeof *g->kv);
    g->tensors = mk_calloc((size_t)(n_tensors ? n_tensors : 1), sizeof *g->tensors);
    if (!g->kv || !g->tensors) { st = MK_ERR_NOMEM; goto fail; }
    for (size_t i = 0; i < n_kv; i++) {
        g->n_kv = i + 1;
        if ((st = rd_kv(&c, &g->kv[i], i))) goto fail;
    }
    g->alignment = MK_GGUF_DEFAULT_ALIGNMENT;
    const mk_gguf_kv *al = mk_gguf_find(g, "general.alignment");
    if (al) {
        if (al->type != MK_GGUF_U32) { st = mk_err(MK_ERR_FORMAT, "%s: metadata key 'general.alignment' must be a u32, not %s", path, vtype_names[al->type]); goto fail; }
        uint32_t a = (uint32_t)le(al->data, 4);
        if (a == 0 || (a & (a - 1)) || a > MAX_ALIGNMENT) {
            st = mk_err(MK_ERR_FORMAT, "%s: metadata key 'general.alignment' = %u is not a power of two in [1, %u]", path, a, MAX_ALIGNMENT);
            goto fail;
        }
        g->alignment = a;
    }
    for (size_t i = 0; i < n_tensors; i++) {
        g->n_tensors = i + 1;
        if ((st = rd_tensor_info(&c, &g->tensors[i], i))) goto fail;
    }
    g->data_offset = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
    if (g->n_tensors && g->data_offset > c.size) {
        st = mk_err(MK_ERR_FORMAT, "%s: data section starts at %zu, past the end of the file (%zu bytes): truncated file?", path, g->data_offset, c.size);
        goto fail;
    }
    for (size_t i = 0; i < g->n_tensors; i++)
        if ((st = place_tensor(g, &g->tensors[i]))) goto fail;
    if ((st = check_tables(g))) goto fail;
    *out = g;
    return MK_OK;
fail:
    mk_gguf_free(g);
    return st;
}

const mk_gguf_kv *mk_gguf_find(const mk_gguf *g, const char *key) {
    for (size_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && !strcmp(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const mk_gguf_tensor *mk_gguf_find_tensor(const mk_gguf *g, const char *name) {
    for (size_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].name && !strcmp(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

/* A numeric scalar of any type as int64 (exact) and double. */
static bool scalar_num(mk_gguf_type t, const uint8_t *p, int64_t *i, double *d, bool *is_int) {
    *is_int = true;
    switch (t) {
    case MK_GGUF_U8: case MK_GGUF_BOOL: *i = p[0]; break;
    case MK_GGUF_I8: *i = (int8_t)p[0]; break;
    case MK_GGUF_U16: *i = (int64_t)le(p, 2); break;
    case MK_GGUF_I16: *i = (int16_t)le(p, 2); break;
    case MK_GGUF_U32: *i = (int64_t)le(p, 4); break;
    case MK_GGUF_I32: *i = (int32_t)le(p, 4); break;
    case MK_GGUF_U64: {
        uint64_t u = le(p, 8);
        if (u > (uint64_t)INT64_MAX) return false;
        *i = (int64_t)u;
        break;
    }
    case MK_GGUF_I64: *i = (int64_t)le(p, 8); break;
    case MK_GGUF_F32: {
        uint32_t u = (uint32_t)le(p, 4);
        float f;
        memcpy(&f, &u, 4);
        *d = f;
        *is_int = false;
        return true;
    }
    case MK_GGUF_F64: {
        uint64_t u = le(p, 8);
        memcpy(d, &u, 8);
        *is_int = false;
        return true;
    }
    default: return false;
    }
    *d = (double)*i;
    return true;
}

static mk_status get_kv(const mk_gguf *g, const char *key, const mk_gguf_kv **kv) {
    *kv = mk_gguf_find(g, key);
    if (!*kv) return mk_err(MK_ERR_MISSING, "%s: metadata key '%s' is missing", g->map.path, key);
    return MK_OK;
}

mk_status mk_gguf_get_int(const mk_gguf *g, const char *key, int64_t *out) {
    const mk_gguf_kv *kv;
    mk_status st = get_kv(g, key, &kv);
    if (st) return st;
    double d;
    bool is_int;
    if (kv->type == MK_GGUF_BOOL || !scalar_num(kv->type, kv->data, out, &d, &is_int) || !is_int)
        return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s' must be an integer, not %s", g->map.path, key, vtype_names[kv->type]);
    return MK_OK;
}

mk_status mk_gguf_get_float(const mk_gguf *g, const char *key, double *out) {
    const mk_gguf_kv *kv;
    mk_status st = get_kv(g, key, &kv);
    if (st) return st;
    int64_t i;
    bool is_int;
    if (kv->type == MK_GGUF_BOOL || !scalar_num(kv->type, kv->data, &i, out, &is_int))
        return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s' must be a number, not %s", g->map.path, key, vtype_names[kv->type]);
    return MK_OK;
}

mk_status mk_gguf_get_bool(const mk_gguf *g, const char *key, bool *out) {
    const mk_gguf_kv *kv;
    mk_status st = get_kv(g, key, &kv);
    if (st) return st;
    if (kv->type != MK_GGUF_BOOL) return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s' must be a bool, not %s", g->map.path, key, vtype_names[kv->type]);
    *out = kv->data[0] != 0;
    return MK_OK;
}

mk_status mk_gguf_get_str(const mk_gguf *g, const char *key, char *buf, size_t cap) {
    const mk_gguf_kv *kv;
    mk_status st = get_kv(g, key, &kv);
    if (st) return st;
    if (kv->type != MK_GGUF_STRING) return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s' must be a string, not %s", g->map.path, key, vtype_names[kv->type]);
    if (kv->str_len >= cap || memchr(kv->data, 0, (size_t)kv->str_len))
        return mk_err(MK_ERR_FORMAT, "%s: metadata key '%s': string of %llu bytes is too long or contains NUL", g->map.path, key, (unsigned long long)kv->str_len);
    memcpy(buf, kv->data, (size_t)kv->str_len);
    buf[kv->str_len] = 0;
    return MK_OK;
}

bool mk_gguf_arr_str(const mk_gguf_kv *kv, uint64_t i, const char **p, uint64_t *len) {
    if (kv->type != MK_GGUF_ARRAY || kv->arr_type != MK_GGUF_STRING || i >= kv->n) return false;
    *len = le(kv->strs[i], 8);
    *p = (const char *)kv->strs[i] + 8;
    return true;
}

bool mk_gguf_arr_int(const mk_gguf_kv *kv, uint64_t i, int64_t *out) {
    if (kv->type != MK_GGUF_ARRAY || kv->arr_type == MK_GGUF_STRING || i >= kv->n) return false;
    double d;
    bool is_int;
    if (!scalar_num(kv->arr_type, kv->data + i * vtype_size[kv->arr_type], out, &d, &is_int)) return false;
    if (!is_int) {
        if (!(d >= -9.2e18 && d <= 9.2e18)) return false;
        *out = (int64_t)d;
    }
    return true;
}

bool mk_gguf_arr_float(const mk_gguf_kv *kv, uint64_t i, double *out) {
    if (kv->type != MK_GGUF_ARRAY || kv->arr_type == MK_GGUF_STRING || kv->arr_type == MK_GGUF_BOOL || i >= kv->n) return false;
    int64_t v;
    bool is_int;
    if (!scalar_num(kv->arr_type, kv->data + i * vtype_size[kv->arr_type], &v, out, &is_int)) return false;
    return true;
}
