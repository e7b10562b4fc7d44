/* Kept-experts files → expert masks (virtual pruning: --route mask:FILE). */
#include "route.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static mk_status fill_layer(const char *path, json_t *list, int64_t l, int64_t n_expert, uint8_t *row) {
    if (json_is_null(list)) return MK_OK;
    if (!json_is_array(list)) return mk_err(MK_ERR_FORMAT, "%s: field 'kept_experts[%lld]' must be a list of expert ids", path, (long long)l);
    memset(row, 0, (size_t)n_expert);
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= n_expert)
            return mk_err(MK_ERR_FORMAT, "%s: field 'kept_experts[%lld][%zu]' is not an expert id below %lld", path, (long long)l, i, (long long)n_expert);
        row[json_integer_value(v)] = 1;
    }
    return MK_OK;
}

mk_status mk_route_mask_load(const char *path, int64_t n_layer, int64_t n_expert, uint8_t **out) {
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) return mk_err(MK_ERR_FORMAT, "%s: %s (line %d)", path, jerr.text, jerr.line);
    mk_status st = MK_OK;
    uint8_t *mask = NULL;
    json_t *ke = json_object_get(root, "kept_experts");
    if (!ke) { st = mk_err(MK_ERR_MISSING, "%s: field 'kept_experts' is missing", path); goto out; }
    mask = mk_malloc((size_t)(n_layer * n_expert));
    if (!mask) { st = MK_ERR_NOMEM; goto out; }
    memset(mask, 1, (size_t)(n_layer * n_expert));
    if (json_is_array(ke)) {
        if ((int64_t)json_array_size(ke) > n_layer) { st = mk_err(MK_ERR_SHAPE, "%s: field 'kept_experts' has %zu layers, the model %lld", path, json_array_size(ke), (long long)n_layer); goto out; }
        for (size_t l = 0; l < json_array_size(ke) && !st; l++) st = fill_layer(path, json_array_get(ke, l), (int64_t)l, n_expert, mask + l * (size_t)n_expert);
    } else if (json_is_object(ke)) {
        const char *key;
        json_t *v;
        json_object_foreach(ke, key, v) {
            char *end;
            long l = strtol(key, &end, 10);
            if (*end || end == key || l < 0 || l >= n_layer) { st = mk_err(MK_ERR_FORMAT, "%s: field 'kept_experts' key '%s' is not a layer below %lld", path, key, (long long)n_layer); break; }
            if ((st = fill_layer(path, v, l, n_expert, mask + (size_t)l * (size_t)n_expert))) break;
        }
    } else {
        st = mk_err(MK_ERR_FORMAT, "%s: field 'kept_experts' must be a list or an object", path);
    }
out:
    json_decref(root);
    if (st) free(mask);
    else *out = mask;
    return st;
}
