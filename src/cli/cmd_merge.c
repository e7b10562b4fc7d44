/* moekit merge: fold experts together (M-SMoE, Sub-MoE) and write the result as a standard HF checkpoint. */
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
    fprintf(f, "usage: moekit merge -m MODEL --method M (--keep N | --keep-frac F) (--stats stats.json | --calib-ids FILE) -o OUTDIR\n"
               "Methods as published (the router is unchanged: the output keeps every expert and its router row,\n"
               "and all members of a group carry the group's merged weights, so a token that picks two members\n"
               "gets the merged expert with their two gate weights summed; loads in HF transformers as is):\n"
               "  msmoe         M-SMoE as MC-SMoE's code does it: per layer the most used experts are dominant,\n"
               "                every other expert joins the dominant with the most similar router logits on the\n"
               "                calibration tokens (router weight rows without them), and each group becomes\n"
               "                the usage-weighted average of its members. N groups per layer on average, spread\n"
               "                over layers by MC-SMoE's global usage threshold (--budget layer: N in each)\n"
               "  submoe        Sub-MoE: per layer k-means (k = N; k-means++ with a fixed seed) on the\n"
               "                experts' output similarities on the calibration tokens (needs --calib/--calib-ids);\n"
               "                each cluster's weights, per projection, are the SVD of the members' matrices side\n"
               "                by side, U S [V_1 .. V_m]^T, rebuilt as U S (sum_i w_i V_i)^T, w the usage shares\n"
               "moekit's variants (not the papers'; a smaller standard HF checkpoint of N >= k experts):\n"
               "  msmoe-slice   M-SMoE's groups with N dominants in every layer, members' neurons aligned to\n"
               "                the dominant (weight matching); the merged expert takes its dominant's router\n"
               "                row and the members' rows are dropped (a token that chose a member now routes\n"
               "                among the remaining experts)\n"
               "  submoe-slice  the same groups on expert-output similarity, merged by Sub-MoE's SVD, router sliced\n"
               "  --stats FILE        usage frequencies from moekit profile (with --dataset NAME: one domain's)\n"
               "  --calib FILE        calibration text (the model's tokenizer), or\n"
               "  --calib-ids FILE    calibration tokens: expert similarity (router logits for msmoe, expert\n"
               "                      outputs for submoe); also the usage when --stats is absent\n"
               "  --ctx N             calibration sequence length (default 512)\n"
               "  --budget B          msmoe: global (default) or layer\n"
               "  --align             msmoe: align members' neurons to the dominant before averaging (the paper's\n"
               "                      Switch code; its Mixtral code, the default here, does not)\n"
               "  --no-align          msmoe-slice: average without alignment\n"
               "  --rank-frac R       submoe*: fraction of the singular values kept (default 1: the exact\n"
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
            mk_expert_forward(m, l, e, x, n, g, u, o + (size_t)e * SIM_ROWS * H);
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
    int align_opt = -1; /* -1: the method's default */
    double rank_frac = 1.0;
    const char *budget_s = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        const int r = mk_compress_arg(argc, argv, &i, &ca);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--no-align")) align_opt = 0;
        else if (!strcmp(a, "--align")) align_opt = 1;
        else if (!strcmp(a, "--budget")) { if (!(budget_s = mk_arg_value(argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--rank-frac")) { if (!(v = mk_arg_value(argc, argv, &i)) || !mk_arg_float(a, v, 1e-6, 1, &rank_frac)) return 2; }
        else { fprintf(stderr, "moekit merge: unknown option '%s' (moekit merge --help)\n", a); return 2; }
    }
    const char *dir = ca.dir, *stats_path = ca.stats_path, *method = ca.method, *outdir = ca.outdir, *dataset = ca.dataset;
    const char *calib_ids = ca.calib_ids, *calib_text = ca.calib_text;
    int64_t keep = ca.keep;
    const int64_t ctx = ca.ctx;
    const double keep_frac = ca.keep_frac;
    const bool force = ca.force;
    static const char *const methods[] = {"msmoe", "submoe", "msmoe-slice", "submoe-slice"};
    int mi = -1;
    for (int j = 0; method && j < 4; j++)
        if (!strcmp(method, methods[j])) mi = j;
    if (mi < 0) { fprintf(stderr, "moekit merge: --method must be msmoe, submoe, msmoe-slice or submoe-slice%s%s%s\n", method ? " (got '" : "", method ? method : "", method ? "')" : ""); return 2; }
    const bool submoe = mi == 1 || mi == 3, slice = mi >= 2;
    if (mi != 0 && budget_s) { fprintf(stderr, "moekit merge: --budget is for --method msmoe\n"); return 2; }
    if (!budget_s) budget_s = mi == 0 ? "global" : "layer";
    if (strcmp(budget_s, "global") && strcmp(budget_s, "layer")) { fprintf(stderr, "moekit merge: --budget must be layer or global (got '%s')\n", budget_s); return 2; }
    if (submoe && align_opt >= 0) { fprintf(stderr, "moekit merge: --align/--no-align are for msmoe and msmoe-slice\n"); return 2; }
    const bool do_align = align_opt >= 0 ? align_opt : mi == 2;
    if (!submoe && rank_frac != 1.0) { fprintf(stderr, "moekit merge: --rank-frac is for submoe and submoe-slice\n"); return 2; }
    if (!keep == !(keep_frac > 0)) { fprintf(stderr, "moekit merge: give exactly one of --keep N or --keep-frac F\n"); return 2; }
    if (calib_ids && calib_text) { fprintf(stderr, "moekit merge: give --calib or --calib-ids, not both\n"); return 2; }
    const char *calib_src = calib_ids ? calib_ids : calib_text;
    if (mi == 1 && !calib_src) { fprintf(stderr, "moekit merge: --method submoe clusters experts by their outputs on calibration tokens: give --calib FILE or --calib-ids FILE\n"); return 2; }
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
    const int64_t keep_min = slice ? m->cfg.k_active : 1; /* a sliced router needs k experts; an unchanged one any group count */
    if (keep > E || keep < keep_min) {
        if (slice) fprintf(stderr, "moekit merge: --keep %lld must be between the model's k (%lld) and its %lld experts (%s writes that many)\n", (long long)keep, (long long)keep_min, (long long)E, method);
        else fprintf(stderr, "moekit merge: --keep %lld must be between 1 and the model's %lld experts\n", (long long)keep, (long long)E);
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
    mk_msmoe_opts mo = {.align = do_align, .similarity = sim, .slice = slice, .budget = budget_s[0] == 'g' ? MK_BUDGET_GLOBAL : MK_BUDGET_LAYER};
    mk_submoe_opts so = {.similarity = sim, .rank_frac = rank_frac, .slice = slice};
    if (submoe ? mk_submoe_plan(m, freq, keep, &so, &plan, &buffers, group_of) : mk_msmoe_plan(m, freq, keep, &mo, &plan, &buffers, group_of)) {
        rc = mk_cli_fail();
        goto out;
    }

    rec = json_object();
    json_object_set_new(rec, "moekit_version", json_string(MK_VERSION));
    json_object_set_new(rec, "operation", json_string("merge"));
    json_object_set_new(rec, "method", json_string(method));
    json_object_set_new(rec, "published", json_boolean(!slice));
    json_t *params = json_object();
    json_object_set_new(params, "keep", json_integer(keep));
    if (!submoe) json_object_set_new(params, "budget", json_string(budget_s));
    if (submoe) json_object_set_new(params, "rank_frac", json_real(rank_frac));
    else json_object_set_new(params, "align", json_boolean(do_align));
    if (mi == 1) json_object_set_new(params, "clustering", json_string("k-means++ (splitmix64, seed 0x5EED + layer), Lloyd <= 100 rounds"));
    json_object_set_new(params, "similarity", json_string(!calib_src ? "router-weights" : submoe ? "expert-outputs" : "router-logits"));
    json_object_set_new(params, "usage", json_string(stats ? "stats" : "calibration"));
    json_object_set_new(params, "dataset", dataset ? json_string(dataset) : json_null());
    if (calib_src) json_object_set_new(params, "calibration", json_string(calib_src));
    json_object_set_new(params, "router", json_string(slice ? "merged expert takes its dominant's router row; members' rows dropped"
                                                            : "unchanged: every expert keeps its router row; a group's members carry its merged weights"));
    json_object_set_new(rec, "params", params);
    json_object_set_new(rec, "source_model", json_string(dir));
    json_object_set_new(rec, "stats", stats ? json_string(mk_stats_path(stats)) : json_null());
    json_object_set_new(rec, "stats_sha256", stats ? json_string(mk_stats_sha256(stats)) : json_null());
    /* groups: per MoE layer, the members of each group (slice: of each output expert); kept_experts
     * (slice): the router row each output expert took */
    json_t *ke = json_array(), *groups = json_array(), *ngj = json_array();
    int64_t n_groups_all = 0, n_moe = 0;
    for (int64_t l = 0; l < L; l++) {
        if (!mk_model_layer_is_moe(m, l)) { json_array_append_new(ke, json_null()); json_array_append_new(groups, json_null()); json_array_append_new(ngj, json_null()); continue; }
        int64_t ng = 0;
        for (int64_t e = 0; e < E; e++) ng = MK_MAX(ng, (int64_t)group_of[l * E + e] + 1);
        json_t *row = json_array(), *gl = json_array();
        for (int64_t j = 0; j < ng; j++) {
            if (slice) json_array_append_new(row, json_integer(plan.x[l * keep + j].router_from));
            json_t *g = json_array();
            for (int64_t e = 0; e < E; e++)
                if (group_of[l * E + e] == j) json_array_append_new(g, json_integer(e));
            json_array_append_new(gl, g);
        }
        json_array_append_new(ke, slice ? row : json_null());
        if (!slice) json_decref(row);
        json_array_append_new(groups, gl);
        json_array_append_new(ngj, json_integer(ng));
        n_groups_all += ng;
        n_moe++;
    }
    json_object_set_new(rec, "kept_experts", ke);
    json_object_set_new(rec, "groups", groups);
    json_object_set_new(rec, "n_groups", ngj);
    record = json_dumps(rec, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!record) goto out;
    mk_write_opts wo = {.force = force, .record_json = record};
    if (mk_write_experts(m, &plan, outdir, &wo)) { rc = mk_cli_fail(); goto out; }
    if (slice) fprintf(stderr, "merged model written to %s: %lld of %lld experts per MoE layer (%s%s), %.2f s\n", outdir, (long long)keep, (long long)E, method,
                       do_align && !submoe ? ", aligned" : "", mk_wall() - t0);
    else fprintf(stderr, "merged model written to %s: %.2f groups per MoE layer on average, %lld experts each bound to its group (%s%s), %.2f s\n", outdir,
                 n_moe ? (double)n_groups_all / (double)n_moe : 0.0, (long long)E, method, do_align && !submoe ? ", aligned" : "", mk_wall() - t0);
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
