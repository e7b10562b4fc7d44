#include "safetensors.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HEADER (100u << 20) /* the reference implementation's limit */

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const mk_st_entry *)a)->name, ((const mk_st_entry *)b)->name);
}

static int cmp_offset(const void *a, const void *b) {
    const mk_st_entry *x = *(const mk_st_entry *const *)a, *y = *(const mk_st_entry *const *)b;
    if (x->file != y->file) return x->file < y->file ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

void mk_st_free(mk_st_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n_files; i++) mk_map_close(&s->files[i]);
    free(s->files);
    for (size_t i = 0; i < s->n_entries; i++) {
        free(s->entries[i].name);
        free(s->entries[i].src_name);
    }
    free(s->entries);
    for (size_t i = 0; i < s->n_owned; i++) mk_free_aligned(s->owned[i]);
    free(s->owned);
    free(s->source);
    free(s);
}

static mk_status grow_entries(mk_st_set *s, size_t *cap, size_t need) {
    if (need <= *cap) return MK_OK;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    mk_st_entry *e = mk_realloc(s->entries, nc * sizeof *e);
    if (!e) return MK_ERR_NOMEM;
    s->entries = e;
    *cap = nc;
    return MK_OK;
}

/* Parses the header of file index fi (already mapped) and appends its entries. If `only` is
 * non-NULL, it is the index's weight_map and each tensor must map to this file. */
static mk_status parse_file(mk_st_set *s, int fi, size_t *cap) {
    const mk_map *m = &s->files[fi];
    const char *path = m->path;
    if (m->size < 8) return mk_err(MK_ERR_FORMAT, "%s: file too short for a safetensors header (%zu bytes)", path, m->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | m->data[i];
    if (hlen > MAX_HEADER) return mk_err(MK_ERR_FORMAT, "%s: header length %llu exceeds the %u-byte limit", path, (unsigned long long)hlen, MAX_HEADER);
    if (hlen > m->size - 8) return mk_err(MK_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes): truncated file?", path, (unsigned long long)hlen, m->size);
    if (hlen < 2 || m->data[8] != '{') return mk_err(MK_ERR_FORMAT, "%s: header does not start with '{'", path);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)m->data + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return mk_err(MK_ERR_FORMAT, "%s: header JSON: %s (column %d)", path, jerr.text, jerr.column);
    mk_status st = MK_OK;
    if (!json_is_object(root)) {
        st = mk_err(MK_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto out;
    }
    const size_t base = 8 + (size_t)hlen, buf_size = m->size - base;
    const char *key;
    json_t *val;
    size_t first = s->n_entries;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) continue;
        if (!json_is_object(val)) { st = mk_err(MK_ERR_FORMAT, "%s: tensor '%s': entry is not an object", path, key); goto out; }
        json_t *jd = json_object_get(val, "dtype"), *js = json_object_get(val, "shape"), *jo = json_object_get(val, "data_offsets");
        if (!json_is_string(jd)) { st = mk_err(MK_ERR_FORMAT, "%s: tensor '%s': field 'dtype' missing or not a string", path, key); goto out; }
        mk_dtype dt;
        if (!mk_dtype_from_name(json_string_value(jd), &dt) || mk_dtypes[dt].block_elems != 1) { st = mk_err(MK_ERR_UNSUPPORTED, "%s: tensor '%s': unsupported dtype '%s'", path, key, json_string_value(jd)); goto out; }
        if (!json_is_array(js)) { st = mk_err(MK_ERR_FORMAT, "%s: tensor '%s': field 'shape' missing or not an array", path, key); goto out; }
        size_t nd = json_array_size(js);
        if (nd > MK_MAX_DIMS) { st = mk_err(MK_ERR_UNSUPPORTED, "%s: tensor '%s': %zu dimensions (at most %d supported)", path, key, nd, MK_MAX_DIMS); goto out; }
        if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) || !json_is_integer(json_array_get(jo, 1))) {
            st = mk_err(MK_ERR_FORMAT, "%s: tensor '%s': field 'data_offsets' must be [begin, end]", path, key); goto out;
        }
        json_int_t b = json_integer_value(json_array_get(jo, 0)), e = json_integer_value(json_array_get(jo, 1));
        if (b < 0 || e < b) { st = mk_err(MK_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] invalid", path, key, (long long)b, (long long)e); goto out; }
        if ((uint64_t)e > buf_size) { st = mk_err(MK_ERR_FORMAT, "%s: tensor '%s': data_offsets end %lld is past the end of the data (%zu bytes): truncated file?", path, key, (long long)e, buf_size); goto out; }
        size_t n = 1;
        mk_tensor t = {0};
        t.dtype = dt;
        t.ndim = (int)nd;
        for (size_t i = 0; i < nd; i++) {
            json_t *d = json_array_get(js, i);
            if (!json_is_integer(d) || json_integer_value(d) < 0) { st = mk_err(MK_ERR_FORMAT, "%s: tensor '%s': shape[%zu] is not a non-negative integer", path, key, i); goto out; }
            t.shape[i] = (int64_t)json_integer_value(d);
            if (!mk_mul_ok(n, (size_t)t.shape[i], &n)) { st = mk_err(MK_ERR_FORMAT, "%s: tensor '%s': shape overflows", path, key); goto out; }
        }
        size_t nbytes;
        if (!mk_mul_ok(n, mk_dtypes[dt].elem_bytes, &nbytes) || nbytes != (size_t)(e - b)) {
            st = mk_err(MK_ERR_FORMAT, "%s: tensor '%s': shape × dtype size = %zu elements × %zu bytes does not equal the %lld bytes of data_offsets", path, key, n, mk_dtypes[dt].elem_bytes, (long long)(e - b));
            goto out;
        }
        if ((st = grow_entries(s, cap, s->n_entries + 1))) goto out;
        mk_st_entry *en = &s->entries[s->n_entries];
        en->src_name = NULL;
        en->name = mk_strdup(key);
        if (!en->name) { st = MK_ERR_NOMEM; goto out; }
        s->n_entries++;
        t.nbytes = nbytes;
        en->offset = base + (size_t)b;
        t.data = m->data + en->offset;
        if (nbytes && (uintptr_t)t.data % mk_dtypes[dt].elem_bytes) {
            void **no = mk_realloc(s->owned, (s->n_owned + 1) * sizeof *no);
            if (!no) { st = MK_ERR_NOMEM; goto out; }
            s->owned = no;
            void *copy = mk_malloc_aligned(nbytes);
            if (!copy) { st = MK_ERR_NOMEM; goto out; }
            memcpy(copy, t.data, nbytes);
            s->owned[s->n_owned++] = copy;
            t.data = copy;
        }
        en->t = t;
        en->file = fi;
    }
    /* Tensors of one file must not overlap. */
    size_t cnt = s->n_entries - first;
    if (cnt > 1) {
        const mk_st_entry **byoff = mk_malloc(cnt * sizeof *byoff);
        if (!byoff) { st = MK_ERR_NOMEM; goto out; }
        for (size_t i = 0; i < cnt; i++) byoff[i] = &s->entries[first + i];
        qsort(byoff, cnt, sizeof *byoff, cmp_offset);
        for (size_t i = 1; i < cnt; i++)
            if (byoff[i]->offset < byoff[i - 1]->offset + byoff[i - 1]->t.nbytes) {
                st = mk_err(MK_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", path, byoff[i - 1]->name, byoff[i]->name);
                break;
            }
        free(byoff);
    }
out:
    json_decref(root);
    return st;
}

static mk_status finish(mk_st_set *s) {
    qsort(s->entries, s->n_entries, sizeof *s->entries, cmp_entry);
    for (size_t i = 1; i < s->n_entries; i++)
        if (strcmp(s->entries[i].name, s->entries[i - 1].name) == 0)
            return mk_err(MK_ERR_FORMAT, "%s: tensor '%s' appears twice (in %s and %s)", s->source, s->entries[i].name,
                          s->files[s->entries[i - 1].file].path, s->files[s->entries[i].file].path);
    return MK_OK;
}

mk_status mk_st_open_file(mk_st_set **out, const char *path) {
    *out = NULL;
    mk_st_set *s = mk_calloc(1, sizeof *s);
    if (!s) return MK_ERR_NOMEM;
    s->source = mk_strdup(path);
    s->files = mk_calloc(1, sizeof *s->files);
    if (!s->source || !s->files) { mk_st_free(s); return MK_ERR_NOMEM; }
    mk_status st = mk_map_open(&s->files[0], path);
    if (st) { mk_st_free(s); return st; }
    s->n_files = 1;
    size_t cap = 0;
    if ((st = parse_file(s, 0, &cap)) || (st = finish(s))) { mk_st_free(s); return st; }
    *out = s;
    return MK_OK;
}

static mk_status open_index(mk_st_set *s, const char *dir, const char *index_path) {
    json_error_t jerr;
    json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return mk_err(MK_ERR_FORMAT, "%s: %s (line %d)", index_path, jerr.text, jerr.line);
    mk_status st = MK_OK;
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm)) { st = mk_err(MK_ERR_FORMAT, "%s: field 'weight_map' missing or not an object", index_path); goto out; }
    /* Distinct shard names, in first-seen order. */
    size_t cap_files = json_object_size(wm) ? json_object_size(wm) : 1;
    s->files = mk_calloc(cap_files, sizeof *s->files);
    const char **names = mk_calloc(cap_files, sizeof *names);
    if (!s->files || !names) { free(names); st = MK_ERR_NOMEM; goto out; }
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) {
        if (!json_is_string(val)) { st = mk_err(MK_ERR_FORMAT, "%s: weight_map['%s'] is not a string", index_path, key); break; }
        const char *fn = json_string_value(val);
        if (strchr(fn, '/') || strcmp(fn, "..") == 0) { st = mk_err(MK_ERR_FORMAT, "%s: weight_map['%s'] names a file outside the directory: '%s'", index_path, key, fn); break; }
        int found = 0;
        for (int i = 0; i < s->n_files; i++) if (strcmp(names[i], fn) == 0) found = 1;
        if (found) continue;
        names[s->n_files] = fn;
        char *p = mk_path_join(dir, fn);
        if (!p) { st = MK_ERR_NOMEM; break; }
        st = mk_map_open(&s->files[s->n_files], p);
        free(p);
        if (st) { mk_err_prefix(st, "%s: shard of weight_map['%s']", index_path, key); break; }
        s->n_files++;
    }
    size_t cap = 0;
    for (int i = 0; !st && i < s->n_files; i++) st = parse_file(s, i, &cap);
    if (!st) st = finish(s);
    /* Every tensor named by the index must be in the shard it names. */
    json_object_foreach(wm, key, val) {
        if (st) break;
        const mk_st_entry *e = mk_st_find(s, key);
        if (!e) { st = mk_err(MK_ERR_MISSING, "%s: tensor '%s' listed in weight_map is in no shard", index_path, key); break; }
        if (strcmp(names[e->file], json_string_value(val)) != 0) { st = mk_err(MK_ERR_FORMAT, "%s: tensor '%s' is in %s, not in %s as weight_map says", index_path, key, names[e->file], json_string_value(val)); break; }
    }
    free(names);
out:
    json_decref(root);
    return st;
}

mk_status mk_st_open_dir(mk_st_set **out, const char *dir) {
    *out = NULL;
    mk_st_set *s = mk_calloc(1, sizeof *s);
    if (!s) return MK_ERR_NOMEM;
    s->source = mk_strdup(dir);
    if (!s->source) { mk_st_free(s); return MK_ERR_NOMEM; }
    mk_status st;
    char *idx = mk_path_join(dir, "model.safetensors.index.json");
    char *single = mk_path_join(dir, "model.safetensors");
    if (!idx || !single) { free(idx); free(single); mk_st_free(s); return MK_ERR_NOMEM; }
    if (mk_file_exists(idx)) {
        st = open_index(s, dir, idx);
    } else if (mk_file_exists(single)) {
        mk_st_free(s);
        st = mk_st_open_file(&s, single);
        if (!st) { free(s->source); s->source = mk_strdup(dir); }
    } else {
        st = mk_err(MK_ERR_MISSING, "%s: no model.safetensors or model.safetensors.index.json", dir);
    }
    free(idx);
    free(single);
    if (st) { mk_st_free(s); return st; }
    *out = s;
    return MK_OK;
}

const mk_st_entry *mk_st_find(const mk_st_set *s, const char *name) {
    size_t lo = 0, hi = s->n_entries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->entries[mid].name, name);
        if (c == 0) return &s->entries[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const char *mk_st_file_of(const mk_st_set *s, const mk_st_entry *e) { return s->files[e->file].path; }

mk_status mk_st_new_table(mk_st_set **out, const char *source, const char *file) {
    *out = NULL;
    mk_st_set *s = mk_calloc(1, sizeof *s);
    if (!s) return MK_ERR_NOMEM;
    s->source = mk_strdup(source);
    s->files = mk_calloc(1, sizeof *s->files);
    if (!s->source || !s->files || !(s->files[0].path = mk_strdup(file))) {
        mk_st_free(s);
        return MK_ERR_NOMEM;
    }
    s->n_files = 1;
    s->n_entries = 0;
    *out = s;
    return MK_OK;
}

mk_status mk_st_add(mk_st_set *s, const char *name, const mk_tensor *t, size_t offset, const char *src_name) {
    /* The allocation always holds at least the next power of two of n_entries (grow_entries
     * doubles from 64), so that is a safe capacity to start from. */
    size_t pow2 = 1;
    while (pow2 < s->n_entries) pow2 *= 2;
    if (!s->entries) pow2 = 0;
    mk_status st = grow_entries(s, &pow2, s->n_entries + 1);
    if (st) return st;
    mk_st_entry *e = &s->entries[s->n_entries];
    memset(e, 0, sizeof *e);
    e->name = mk_strdup(name);
    e->src_name = src_name ? mk_strdup(src_name) : NULL;
    if (!e->name || (src_name && !e->src_name)) {
        free(e->name);
        free(e->src_name);
        return MK_ERR_NOMEM;
    }
    e->t = *t;
    e->offset = offset;
    s->n_entries++;
    return MK_OK;
}

mk_status mk_st_finish(mk_st_set *s) { return finish(s); }

bool mk_st_remove(mk_st_set *s, const char *name) {
    const mk_st_entry *f = mk_st_find(s, name);
    if (!f) return false;
    const size_t i = (size_t)(f - s->entries);
    free(s->entries[i].name);
    free(s->entries[i].src_name);
    memmove(&s->entries[i], &s->entries[i + 1], (s->n_entries - i - 1) * sizeof *s->entries);
    s->n_entries--;
    return true;
}
