/* moekit merge: fold experts together (M-SMoE) and write the result as a standard HF checkpoint. */
#include "args.h"
#include "base/base.h"
#include "cli.h"
#include "compress/compress.h"
#include "model/model.h"
#include "format/safetensors_write.h"
#include "moekit.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: moekit merge -m MODEL --method msmoe|submoe (--keep N | --keep-frac F) (--stats stats.json | --calib-ids FILE) -o OUTDIR\n"
               "M-SMoE: per MoE layer the N most used experts are dominant, every other expert joins the\n"
               "dominant it is most similar to, and each group becomes one expert: members' neurons are\n"
               "aligned to the dominant's (weight matching, solved as an assignment problem) and averaged\n"
               "weighted by usage. The merged expert keeps the dominant's router row and the members' rows\n"
               "are dropped, so the output is a standard HF checkpoint (a token that chose a member now\n"
               "routes among the remaining experts).\n"
               "  --stats FILE        usage frequencies from moekit profile (with --dataset NAME: one domain's)\n"
               "  --calib FILE        calibration text (the model's tokenizer), or\n"
               "  --calib-ids FILE    calibration tokens: expert similarity = cosine of router logits over\n"
               "                      them (the paper's default); also the usage when --stats is absent.\n"
               "                      Without it similarity is the cosine of the router's weight rows\n"
               "  --ctx N             calibration sequence length (default 512)\n"
               "  --no-align          msmoe: average without permutation alignment\n"
               "Sub-MoE (--method submoe): the same groups, with expert similarity the cosine of the experts'\n"
               "outputs on calibration tokens (--calib-ids; else router rows); each group's weights, per\n"
               "projection, are the SVD of the members' matrices side by side, U S [V_1 .. V_m]^T, rebuilt as\n"
               "U S (sum_i w_i V_i)^T with w the usage shares, at rank ceil(R * full rank)\n"
               "  --rank-frac R       submoe: fraction of the singular values kept (default 1: the exact\n"
               "                      usage-weighted average of the members)\n"
               "  --force             replace OUTDIR if it exists\n");
}

#define SIM_ROWS 256 /* calibration tokens per layer on which Sub-MoE compares expert outputs */

typedef struct calib {
    int64_t E;
    size_t H;
    size_t n_tok;                 /* tokens seen so far */
    float *rows;                  /* (n_layer, SIM_ROWS, H) MoE block inputs, for output similarity */
    size_t *n_rows;               /* (n_layer) */
    double *count;                /* (n_layer, E) selections */
    double *dot, *sq;             /* (n_layer, E, E) Σ z_a z_b ; (n_layer, E) Σ z² */
} calib;

static void on_moe(void *u, const mk_moe_event *ev) {
    calib *c = u;
    const int64_t E = c->E, l = ev->layer;
    double *dot = c->dot + (size_t)(l * E * E), *sq = c->sq + (size_t)(l * E);
    for (size_t t = 0; t < ev->n_tok && c->n_rows[l] < SIM_ROWS; t++, c->n_rows[l]++)
        memcpy(c->rows + ((size_t)l * SIM_ROWS + c->n_rows[l]) * c->H, ev->block_in + t * c->H, c->H * sizeof(float));
    for (size_t t = 0; t < ev->n_tok; t++) {
        const float *z = ev->router_logits + t * (size_t)E;
        for (int64_t a = 0; a < E; a++) {
            sq[a] += (double)z[a] * z[a];
            for (int64_t b = 0; b < E; b++) dot[a * E + b] += (double)z[a] * z[b];
        }
        for (int64_t s = 0; s < ev->k; s++) {
            int32_t e = ev->expert_ids[t * (size_t)ev->k + (size_t)s];
            if (e >= 0) c->count[l * E + e] += 1;
        }
    }
}

/* sim (n_layer, E, E) = (cos + 1) / 2 of the experts' outputs on the saved calibration rows. */
static mk_status expert_output_similarity(const mk_model *m, const calib *cb, float *sim) {
    const int64_t L = m->cfg.n_layer, E = m->cfg.n_expert;
    const size_t H = cb->H, F = (size_t)m->cfg.d_ff_expert;
    float *g = mk_malloc(SIM_ROWS * F * sizeof(float)), *u = mk_malloc(SIM_ROWS * F * sizeof(float));
    float *o = mk_malloc((size_t)E * SIM_ROWS * H * sizeof(float));
    if (!g || !u || !o) { free(g); free(u); free(o); return MK_ERR_NOMEM; }
    for (int64_t l = 0; l < L; l++) {
        if (!mk_model_layer_is_moe(m, l) || !cb->n_rows[l]) continue;
        const size_t n = cb->n_rows[l];
        const float *x = cb->rows + (size_t)l * SIM_ROWS * H;
        for (int64_t e = 0; e < E; e++) {
            const mk_mlp_w *w = &m->layers[l].experts[e];
            mk_matmul(g, F, x, H, n, &w->gate, NULL);
            mk_matmul(u, F, x, H, n, &w->up, NULL);
            for (size_t i = 0; i < n * F; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
            mk_matmul(o + (size_t)e * SIM_ROWS * H, H, g, F, n, &w->down, NULL);
        }
        for (int64_t a = 0; a < E; a++)
            for (int64_t b = 0; b < E; b++) {
                const float *pa = o + (size_t)a * SIM_ROWS * H, *pb = o + (size_t)b * SIM_ROWS * H;
                double ab = 0, aa = 0, bb = 0;
                for (size_t i = 0; i < n * H; i++) { ab += (double)pa[i] * pb[i]; aa += (double)pa[i] * pa[i]; bb += (double)pb[i] * pb[i]; }
                sim[(l * E + a) * E + b] = (float)((ab / (sqrt(aa * bb) + 1e-30) + 1) / 2);
            }
    }
    free(g); free(u); free(o);
    return MK_OK;
}

int mk_cmd_merge(int argc, char **argv) {
    mk_compress_args ca = MK_COMPRESS_ARGS_INIT;
    bool do_align = true;
    double rank_frac = 1.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        const int r = mk_compress_arg(argc, argv, &i, &ca);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--no-align")) do_align = false;
        else if (!strcmp(a, "--rank-frac")) { if (!(v = mk_arg_value(argc, argv, &i)) || !mk_arg_float(a, v, 1e-6, 1, &rank_frac)) return 2; }
        else { fprintf(stderr, "moekit merge: unknown option '%s' (moekit merge --help)\n", a); return 2; }
    }
    const char *dir = ca.dir, *stats_path = ca.stats_path, *method = ca.method, *outdir = ca.outdir, *dataset = ca.dataset;
    const char *calib_ids = ca.calib_ids, *calib_text = ca.calib_text;
    int64_t keep = ca.keep;
    const int64_t ctx = ca.ctx;
    const double keep_frac = ca.keep_frac;
    const bool force = ca.force;
    bool submoe = method && !strcmp(method, "submoe");
    if (!method || (strcmp(method, "msmoe") && !submoe)) { fprintf(stderr, "moekit merge: --method must be msmoe or submoe%s%s%s\n", method ? " (got '" : "", method ? method : "", method ? "')" : ""); return 2; }
    if (!keep == !(keep_frac > 0)) { fprintf(stderr, "moekit merge: give exactly one of --keep N or --keep-frac F\n"); return 2; }
    if (calib_ids && calib_text) { fprintf(stderr, "moekit merge: give --calib or --calib-ids, not both\n"); return 2; }
    const char *calib_src = calib_ids ? calib_ids : calib_text;
    if (!stats_path && !calib_src) { fprintf(stderr, "moekit merge: give --stats stats.json or --calib FILE / --calib-ids FILE (usage frequencies)\n"); return 2; }
    if (dataset && !stats_path) { fprintf(stderr, "moekit merge: --dataset needs --stats\n"); return 2; }
    if (!outdir) { fprintf(stderr, "moekit merge: give an output directory with -o\n"); return 2; }
    if (!dir && !(dir = mk_default_model())) { fprintf(stderr, "moekit merge: no model given (-m DIR) and no default model found\n"); return 2; }

    double t0 = mk_wall();
    int rc = 1;
    mk_model *m = NULL;
    mk_stats *stats = NULL;
    mk_ctx *c = NULL;
    int32_t *toks = NULL, *group_of = NULL;
    float *sim = NULL, *buffers = NULL;
    double *freq = NULL;
    calib cb = {0};
    mk_expert_plan plan = {0};
    json_t *rec = NULL;
    char *record = NULL;
    if (mk_model_load(&m, dir) || mk_require_uniform_experts(m, "merge")) { rc = mk_cli_fail(); goto out; }
    const int64_t L = m->cfg.n_layer, E = m->cfg.n_expert;
    if (keep_frac > 0) keep = (int64_t)llround(keep_frac * (double)E);
    if (keep > E || keep < m->cfg.k_active) {
        fprintf(stderr, "moekit merge: --keep %lld must be between the model's k (%lld) and its %lld experts\n", (long long)keep, (long long)m->cfg.k_active, (long long)E);
        rc = 2;
        goto out;
    }
    freq = mk_calloc((size_t)(L * E), sizeof *freq);
    group_of = mk_calloc((size_t)(L * E), sizeof *group_of);
    if (!freq || !group_of) { rc = mk_cli_fail(); goto out; }
    if (stats_path && (mk_stats_load(&stats, stats_path, m) || mk_stats_field(stats, dataset, "freq", freq))) { rc = mk_cli_fail(); goto out; }
    size_t nt = 0;
    if (calib_src) {
        if (mk_cli_calib_tokens(dir, calib_text, calib_ids, &toks, &nt)) { rc = mk_cli_fail(); goto out; }
        cb.E = E;
        cb.H = (size_t)m->cfg.d_model;
        cb.rows = mk_calloc((size_t)L * SIM_ROWS * cb.H, sizeof(float));
        cb.n_rows = mk_calloc((size_t)L, sizeof(size_t));
        if (!cb.rows || !cb.n_rows) { rc = mk_cli_fail(); goto out; }
        cb.count = mk_calloc((size_t)(L * E), sizeof(double));
        cb.dot = mk_calloc((size_t)(L * E * E), sizeof(double));
        cb.sq = mk_calloc((size_t)(L * E), sizeof(double));
        sim = mk_calloc((size_t)(L * E * E), sizeof(float));
        if (!cb.count || !cb.dot || !cb.sq || !sim || mk_ctx_new(&c, m, (size_t)ctx, (size_t)ctx)) { rc = mk_cli_fail(); goto out; }
        mk_observer obs = {.user = &cb, .on_moe = on_moe};
        mk_ctx_set_observer(c, &obs);
        for (size_t s0 = 0; s0 < nt; s0 += (size_t)ctx) {
            mk_ctx_reset(c);
            if (mk_ctx_forward(c, toks + s0, MK_MIN((size_t)ctx, nt - s0), MK_LOGITS_NONE, NULL)) { rc = mk_cli_fail(); goto out; }
        }
        for (int64_t l = 0; l < L; l++)
            for (int64_t a = 0; a < E; a++)
                for (int64_t b = 0; b < E; b++) {
                    double den = sqrt(cb.sq[l * E + a] * cb.sq[l * E + b]);
                    sim[(l * E + a) * E + b] = den > 0 ? (float)((cb.dot[(l * E + a) * E + b] / den + 1) / 2) : 0.5f;
                }
        if (submoe && expert_output_similarity(m, &cb, sim)) { rc = mk_cli_fail(); goto out; }
        if (!stats) {
            for (int64_t l = 0; l < L; l++) {
                double tot = 0;
                for (int64_t e = 0; e < E; e++) tot += cb.count[l * E + e];
                for (int64_t e = 0; e < E; e++) freq[l * E + e] = tot > 0 ? cb.count[l * E + e] / tot : 0;
            }
        }
    }
    mk_msmoe_opts mo = {.align = do_align, .similarity = sim};
    if (submoe ? mk_submoe_plan(m, freq, keep, sim, rank_frac, &plan, &buffers, group_of) : mk_msmoe_plan(m, freq, keep, &mo, &plan, &buffers, group_of)) {
        rc = mk_cli_fail();
        goto out;
    }

    rec = json_object();
    json_object_set_new(rec, "moekit_version", json_string(MK_VERSION));
    json_object_set_new(rec, "operation", json_string("merge"));
    json_object_set_new(rec, "method", json_string(submoe ? "submoe" : "msmoe"));
    json_t *params = json_object();
    json_object_set_new(params, "keep", json_integer(keep));
    if (submoe) json_object_set_new(params, "rank_frac", json_real(rank_frac));
    else json_object_set_new(params, "align", json_boolean(do_align));
    json_object_set_new(params, "similarity", json_string(!calib_src ? "router-weights" : submoe ? "expert-outputs" : "router-logits"));
    json_object_set_new(params, "usage", json_string(stats ? "stats" : "calibration"));
    json_object_set_new(params, "dataset", dataset ? json_string(dataset) : json_null());
    if (calib_src) json_object_set_new(params, "calibration", json_string(calib_src));
    json_object_set_new(params, "router", json_string("merged expert takes its dominant's router row; members' rows dropped"));
    json_object_set_new(rec, "params", params);
    json_object_set_new(rec, "source_model", json_string(dir));
    json_object_set_new(rec, "stats", stats ? json_string(mk_stats_path(stats)) : json_null());
    json_object_set_new(rec, "stats_sha256", stats ? json_string(mk_stats_sha256(stats)) : json_null());
    json_t *ke = json_array(), *groups = json_array();
    for (int64_t l = 0; l < L; l++) {
        if (!mk_model_layer_is_moe(m, l)) { json_array_append_new(ke, json_null()); json_array_append_new(groups, json_null()); continue; }
        json_t *row = json_array(), *gl = json_array();
        for (int64_t j = 0; j < keep; j++) {
            json_array_append_new(row, json_integer(plan.x[l * keep + j].router_from));
            json_t *g = json_array();
            for (int64_t e = 0; e < E; e++)
                if (group_of[l * E + e] == j) json_array_append_new(g, json_integer(e));
            json_array_append_new(gl, g);
        }
        json_array_append_new(ke, row);
        json_array_append_new(groups, gl);
    }
    json_object_set_new(rec, "kept_experts", ke);
    json_object_set_new(rec, "groups", groups);
    record = json_dumps(rec, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!record) goto out;
    mk_write_opts wo = {.force = force, .record_json = record};
    if (mk_write_experts(m, &plan, outdir, &wo)) { rc = mk_cli_fail(); goto out; }
    fprintf(stderr, "merged model written to %s: %lld of %lld experts per MoE layer (%s), %.2f s\n", outdir, (long long)keep, (long long)E,
            submoe ? "submoe" : do_align ? "msmoe, aligned" : "msmoe", mk_wall() - t0);
    rc = 0;
out:
    json_decref(rec);
    free(record);
    free((void *)plan.x);
    free(buffers);
    free(freq);
    free(group_of);
    free(sim);
    free(toks);
    free(cb.count);
    free(cb.rows);
    free(cb.n_rows);
    free(cb.dot);
    free(cb.sq);
    mk_ctx_free(c);
    mk_stats_free(stats);
    mk_model_free(m);
    return rc;
}
