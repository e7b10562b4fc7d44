/* stats.json (from `moekit profile`) as the input of pruning and merging. */
#include "compress.h"
#include "base/sha256.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

struct mk_stats {
    json_t *root;
    char *path;
    char sha[65];
    int64_t n_layer, n_expert, n_moe;
    int64_t *moe_layer;   /* (n_moe) layer index of each row of the per-expert grids */
};

void mk_stats_free(mk_stats *s) {
    if (!s) return;
    json_decref(s->root);
    free(s->path);
    free(s->moe_layer);
    free(s);
}

static mk_status expect_int(const mk_stats *s, json_t *obj, const char *key, int64_t want, const char *what) {
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v)) return mk_err(MK_ERR_FORMAT, "%s: field 'model.%s' missing or not an integer", s->path, key);
    if (json_integer_value(v) != want)
        return mk_err(MK_ERR_SHAPE, "%s: field 'model.%s' = %lld, but the model has %lld %s: statistics of a different model", s->path, key,
                      (long long)json_integer_value(v), (long long)want, what);
    return MK_OK;
}

mk_status mk_stats_load(mk_stats **out, const char *path, const mk_model *m) {
    *out = NULL;
    mk_stats *s = mk_calloc(1, sizeof *s);
    if (!s) return MK_ERR_NOMEM;
    mk_status st;
    s->path = mk_strdup(path);
    if (!s->path) { mk_stats_free(s); return MK_ERR_NOMEM; }
    if ((st = mk_sha256_file(path, s->sha))) { mk_stats_free(s); return st; }
    json_error_t jerr;
    s->root = json_load_file(path, 0, &jerr);
    if (!s->root) { mk_stats_free(s); return mk_err(MK_ERR_FORMAT, "%s: %s (line %d)", path, jerr.text, jerr.line); }
    json_t *schema = json_object_get(s->root, "schema"), *mo = json_object_get(s->root, "model");
    if (!json_is_string(schema) || strcmp(json_string_value(schema), "moekit.profile")) {
        mk_stats_free(s);
        return mk_err(MK_ERR_FORMAT, "%s: field 'schema' is not \"moekit.profile\": not a moekit stats.json", path);
    }
    if (!json_is_object(mo)) { mk_stats_free(s); return mk_err(MK_ERR_FORMAT, "%s: field 'model' missing", path); }
    const mk_config *c = &m->cfg;
    if ((st = expect_int(s, mo, "n_layer", c->n_layer, "layers")) || (st = expect_int(s, mo, "n_expert", c->n_expert, "experts")) ||
        (st = expect_int(s, mo, "d_model", c->d_model, "hidden size")) || (st = expect_int(s, mo, "vocab", c->vocab, "vocabulary entries"))) {
        mk_stats_free(s);
        return st;
    }
    json_t *ml = json_object_get(mo, "moe_layers");
    if (!json_is_array(ml)) { mk_stats_free(s); return mk_err(MK_ERR_FORMAT, "%s: field 'model.moe_layers' missing", path); }
    s->n_layer = c->n_layer;
    s->n_expert = c->n_expert;
    s->n_moe = (int64_t)json_array_size(ml);
    s->moe_layer = mk_calloc((size_t)s->n_moe + 1, sizeof *s->moe_layer);
    if (!s->moe_layer) { mk_stats_free(s); return MK_ERR_NOMEM; }
    for (int64_t i = 0; i < s->n_moe; i++) {
        json_t *v = json_array_get(ml, (size_t)i);
        int64_t l = json_is_integer(v) ? json_integer_value(v) : -1;
        if (l < 0 || l >= c->n_layer || !m->layers[l].is_moe) {
            mk_stats_free(s);
            return mk_err(MK_ERR_SHAPE, "%s: field 'model.moe_layers[%lld]' is not a MoE layer of this model: statistics of a different model", path, (long long)i);
        }
        s->moe_layer[i] = l;
    }
    *out = s;
    return MK_OK;
}

mk_status mk_stats_field(const mk_stats *s, const char *dataset, const char *field, double *scores) {
    json_t *slot;
    if (dataset) {
        slot = json_object_get(json_object_get(s->root, "per_dataset"), dataset);
        if (!slot) return mk_err(MK_ERR_MISSING, "%s: no dataset '%s' in field 'per_dataset'", s->path, dataset);
    } else {
        slot = json_object_get(s->root, "overall");
        if (!slot) return mk_err(MK_ERR_MISSING, "%s: field 'overall' missing", s->path);
    }
    json_t *g = json_object_get(slot, field);
    if (!json_is_array(g) || (int64_t)json_array_size(g) != s->n_moe)
        return mk_err(MK_ERR_FORMAT, "%s: field '%s.%s' missing or not one row per MoE layer", s->path, dataset ? dataset : "overall", field);
    memset(scores, 0, (size_t)(s->n_layer * s->n_expert) * sizeof *scores);
    for (int64_t i = 0; i < s->n_moe; i++) {
        json_t *row = json_array_get(g, (size_t)i);
        if (!json_is_array(row) || (int64_t)json_array_size(row) != s->n_expert)
            return mk_err(MK_ERR_FORMAT, "%s: field '%s.%s[%lld]' is not a list of %lld numbers", s->path, dataset ? dataset : "overall", field, (long long)i, (long long)s->n_expert);
        for (int64_t e = 0; e < s->n_expert; e++) {
            json_t *v = json_array_get(row, (size_t)e);
            if (!json_is_number(v) && !json_is_null(v))
                return mk_err(MK_ERR_FORMAT, "%s: field '%s.%s[%lld][%lld]' is not a number", s->path, dataset ? dataset : "overall", field, (long long)i, (long long)e);
            scores[s->moe_layer[i] * s->n_expert + e] = json_is_null(v) ? 0 : json_number_value(v);
        }
    }
    return MK_OK;
}

mk_status mk_stats_field_mixed(const mk_stats *s, const char *field, double *scores) {
    json_t *ds = json_object_get(s->root, "datasets");
    if (!json_is_array(ds) || json_array_size(ds) == 0) return mk_err(MK_ERR_FORMAT, "%s: field 'datasets' missing or empty", s->path);
    const size_t n = (size_t)(s->n_layer * s->n_expert);
    double *one = mk_malloc(n * sizeof *one);
    if (!one) return MK_ERR_NOMEM;
    memset(scores, 0, n * sizeof *scores);
    mk_status st = MK_OK;
    for (size_t d = 0; d < json_array_size(ds) && !st; d++) {
        const char *name = json_string_value(json_object_get(json_array_get(ds, d), "name"));
        if (!name) { st = mk_err(MK_ERR_FORMAT, "%s: field 'datasets[%zu].name' missing or not a string", s->path, d); break; }
        if ((st = mk_stats_field(s, name, field, one))) break;
        for (int64_t l = 0; l < s->n_layer; l++) {
            double sum = 0;
            for (int64_t e = 0; e < s->n_expert; e++) sum += one[l * s->n_expert + e];
            if (sum > 0)
                for (int64_t e = 0; e < s->n_expert; e++) scores[l * s->n_expert + e] += one[l * s->n_expert + e] / sum;
        }
    }
    free(one);
    return st;
}

int64_t mk_stats_super(const mk_stats *s, uint8_t *map) {
    memset(map, 0, (size_t)(s->n_layer * s->n_expert));
    json_t *lst = json_object_get(json_object_get(s->root, "super_experts"), "experts");
    size_t i;
    json_t *v;
    int64_t n = 0;
    json_array_foreach(lst, i, v) {
        json_t *jl = json_object_get(v, "layer"), *je = json_object_get(v, "expert");
        if (!json_is_integer(jl) || !json_is_integer(je)) continue;
        int64_t l = json_integer_value(jl), e = json_integer_value(je);
        if (l < 0 || l >= s->n_layer || e < 0 || e >= s->n_expert) continue;
        n += !map[l * s->n_expert + e];
        map[l * s->n_expert + e] = 1;
    }
    return n;
}

mk_status mk_stats_naee_beta(const mk_stats *s, float *betas) {
    json_t *nb = json_object_get(s->root, "naee_beta");
    if (!json_is_array(nb) || (int64_t)json_array_size(nb) != s->n_moe)
        return mk_err(MK_ERR_MISSING, "%s: field 'naee_beta' missing or not one value per MoE layer (profile it with this moekit)", s->path);
    memset(betas, 0, (size_t)s->n_layer * sizeof *betas);
    for (int64_t i = 0; i < s->n_moe; i++) {
        json_t *v = json_array_get(nb, (size_t)i);
        if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1)
            return mk_err(MK_ERR_FORMAT, "%s: field 'naee_beta[%lld]' is not a number in [0, 1]", s->path, (long long)i);
        betas[s->moe_layer[i]] = (float)json_number_value(v);
    }
    return MK_OK;
}

const char *mk_stats_sha256(const mk_stats *s) { return s->sha; }
const char *mk_stats_path(const mk_stats *s) { return s->path; }
