/* moekit prune: drop the least important experts by a published criterion and write the result. */
#include "args.h"
#include "cli.h"
#include "compress/compress.h"
#include "format/safetensors_write.h"
#include "moekit.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name, *field, *what;
} methods[] = {
    {"random", NULL, "seeded random choice (baseline)"},
    {"frequency", "freq", "how often the router picks the expert"},
    {"gate-mass", "gate_sum", "sum of the expert's gate weights"},
    {"reap", "reap", "REAP: mean over routed tokens of gate x ||expert output||"},
    {"easy-ep", "easyep", "EASY-EP: gate x ||output|| x token contribution, summed per dataset and\n"
                          "                                   normalised to a share of each layer, shares added over the\n"
                          "                                   datasets (the paper's mixed-domain rule; --dataset: one dataset)"},
    {"easy-ep-pooled", "easyep", "\n                                   moekit variant: EASY-EP's sums pooled over all datasets (no\n"
                                 "                                   per-dataset normalisation, so large datasets dominate)"},
    {"tcess", "tcess", "PreMoe TCESS"},
    {"camera", NULL, "CAMERA-P: drop the same number of low-energy neurons (micro-experts) in every\n"
                     "                                   expert; --keep-frac is the fraction of neurons kept, the output has a\n"
                     "                                   smaller moe_intermediate_size (needs --calib-ids; --rho R, default 0.9)"},
    {"naee", NULL, "NAEE: the subset that best reconstructs each MoE block's output on calibration\n"
                   "                                   tokens (exhaustive up to 8 experts, greedy elimination beyond)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: moekit prune -m MODEL --stats stats.json --method METHOD (--keep N | --keep-frac F) -o OUTDIR\n"
               "Keeps the most important experts of every MoE layer and writes a new HF checkpoint\n"
               "(expert tensors renumbered, router rows sliced, config.json updated, tokenizer copied,\n"
               "moekit_compression.json recording the plan). The source is never modified.\n"
               "  --method M          ");
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) fprintf(f, "%s%s", i ? ", " : "", methods[i].name);
    fprintf(f, "\n");
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) fprintf(f, "                        %-10s %s\n", methods[i].name, methods[i].what);
    fprintf(f, "  --keep N            experts kept per MoE layer (at least the model's k)\n"
               "  --keep-frac F       fraction of experts kept per layer (rounded)\n"
               "  --budget B          layer (default): the same count in every layer, a standard HF model;\n"
               "                      global: keep×layers experts ranked across layers by their share of the\n"
               "                      layer's score, each layer keeping at least k. Layers then differ in\n"
               "                      size, which HF configs cannot express: the model written is\n"
               "                      MOEKIT-ONLY (config.json's moekit_experts_per_layer lists the counts;\n"
               "                      transformers and llama.cpp do not load it, quantize refuses it).\n"
               "                      Or write just the plan with --plan-only and run it with --route mask:FILE\n"
               "  --dataset NAME      use the statistics of one calibration dataset (task-specific pruning)\n"
               "  --protect-super     never drop a super expert found by profile\n"
               "  --seed S            seed for --method random (default 0)\n"
               "  --calib FILE        naee, camera: calibration text (encoded with the model's tokenizer)\n"
               "  --calib-ids FILE    naee, camera: calibration tokens (whitespace-separated ids)\n"
               "  --ctx N             naee, camera: calibration sequence length (default 512)\n"
               "  --plan-only FILE    write only the plan (moekit_compression.json format) to FILE\n"
               "  --force             replace OUTDIR if it exists\n");
}

/* Neuron-level pruning writes experts of a new size: its own short path. */
static int camera(const char *dir, const char *calib_text, const char *calib_ids, int64_t ctx, double rho, double keep_frac, const char *outdir,
                  bool force) {
    if (!calib_ids && !calib_text) { fprintf(stderr, "moekit prune: --method camera needs calibration data (--calib FILE or --calib-ids FILE)\n"); return 2; }
    if (!(keep_frac > 0)) { fprintf(stderr, "moekit prune: --method camera takes --keep-frac F (the fraction of neurons kept)\n"); return 2; }
    if (!outdir) { fprintf(stderr, "moekit prune: give an output directory with -o\n"); return 2; }
    if (!dir && !(dir = mk_default_model())) { fprintf(stderr, "moekit prune: no model given (-m DIR) and no default model found\n"); return 2; }
    double t0 = mk_wall();
    int rc = 1;
    mk_model *m = NULL;
    int32_t *toks = NULL;
    size_t nt = 0;
    float *buf = NULL;
    mk_expert_plan plan = {0};
    char *record = NULL;
    if (mk_model_load(&m, dir) || mk_require_uniform_experts(m, "prune") || mk_cli_calib_tokens(dir, calib_text, calib_ids, &toks, &nt)) {
        rc = mk_cli_fail();
        goto out;
    }
    int64_t keep = (int64_t)llround(keep_frac * (double)m->cfg.d_ff_expert);
    if (keep < 1) keep = 1;
    if (mk_camera_plan(m, toks, nt, (size_t)ctx, rho, keep, &plan, &buf)) { rc = mk_cli_fail(); goto out; }
    json_t *rec = json_object();
    json_object_set_new(rec, "moekit_version", json_string(MK_VERSION));
    json_object_set_new(rec, "operation", json_string("prune-neurons"));
    json_object_set_new(rec, "method", json_string("camera"));
    json_t *params = json_object();
    json_object_set_new(params, "keep_frac", json_real(keep_frac));
    json_object_set_new(params, "d_ff", json_integer(m->cfg.d_ff_expert));
    json_object_set_new(params, "d_ff_kept", json_integer(keep));
    json_object_set_new(params, "rho", json_real(rho));
    json_object_set_new(params, "calibration", json_string(calib_ids ? calib_ids : calib_text));
    json_object_set_new(params, "calibration_tokens", json_integer((json_int_t)nt));
    json_object_set_new(rec, "params", params);
    json_object_set_new(rec, "source_model", json_string(dir));
    record = json_dumps(rec, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(rec);
    mk_write_opts wo = {.force = force, .record_json = record};
    if (!record || mk_write_experts(m, &plan, outdir, &wo)) { rc = mk_cli_fail(); goto out; }
    fprintf(stderr, "neuron-pruned model written to %s: %lld of %lld neurons kept in every expert (camera), %.2f s\n", outdir,
            (long long)keep, (long long)m->cfg.d_ff_expert, mk_wall() - t0);
    rc = 0;
out:
    free(record);
    free((void *)plan.x);
    free(buf);
    free(toks);
    mk_model_free(m);
    return rc;
}

int mk_cmd_prune(int argc, char **argv) {
    mk_compress_args ca = MK_COMPRESS_ARGS_INIT;
    double rho = 0.9;
    const char *plan_only = NULL, *budget_s = "layer";
    int64_t seed = 0;
    bool protect_super = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        const int r = mk_compress_arg(argc, argv, &i, &ca);
        if (r < 0) return 2;
        if (r) continue;
#define VAL() if (!(v = mk_arg_value(argc, argv, &i))) return 2
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--plan-only")) { VAL(); plan_only = v; }
        else if (!strcmp(a, "--budget")) { VAL(); budget_s = v; }
        else if (!strcmp(a, "--seed")) { VAL(); if (!mk_arg_int(a, v, 0, INT64_MAX, &seed)) return 2; }
        else if (!strcmp(a, "--rho")) { VAL(); if (!mk_arg_float(a, v, 0, 1, &rho)) return 2; }
        else if (!strcmp(a, "--protect-super")) protect_super = true;
        else { fprintf(stderr, "moekit prune: unknown option '%s' (moekit prune --help)\n", a); return 2; }
#undef VAL
    }
    const char *dir = ca.dir, *stats_path = ca.stats_path, *method = ca.method, *outdir = ca.outdir, *dataset = ca.dataset;
    const char *calib_ids = ca.calib_ids, *calib_text = ca.calib_text;
    int64_t keep = ca.keep;
    const int64_t ctx = ca.ctx;
    const double keep_frac = ca.keep_frac;
    const bool force = ca.force;
    int mi = -1;
    for (size_t i = 0; method && i < sizeof methods / sizeof methods[0]; i++)
        if (!strcmp(method, methods[i].name)) mi = (int)i;
    bool naee = mi >= 0 && !strcmp(methods[mi].name, "naee");
    if (mi >= 0 && !strcmp(methods[mi].name, "camera")) return camera(dir, calib_text, calib_ids, ctx, rho, keep_frac, outdir, force);
    if (naee && !calib_ids && !calib_text) { fprintf(stderr, "moekit prune: --method naee needs calibration data (--calib FILE or --calib-ids FILE)\n"); return 2; }
    if (calib_ids && calib_text) { fprintf(stderr, "moekit prune: give --calib or --calib-ids, not both\n"); return 2; }
    if (naee && (budget_s[0] != 'l' || protect_super)) { fprintf(stderr, "moekit prune: --method naee chooses per layer (no --budget global or --protect-super)\n"); return 2; }
    if (mi < 0) { fprintf(stderr, "moekit prune: --method must be one of random, frequency, gate-mass, reap, easy-ep, easy-ep-pooled, tcess, naee%s%s%s\n", method ? " (got '" : "", method ? method : "", method ? "')" : ""); return 2; }
    if (!keep == !(keep_frac > 0)) { fprintf(stderr, "moekit prune: give exactly one of --keep N or --keep-frac F\n"); return 2; }
    mk_budget budget;
    if (!strcmp(budget_s, "layer")) budget = MK_BUDGET_LAYER;
    else if (!strcmp(budget_s, "global")) budget = MK_BUDGET_GLOBAL;
    else { fprintf(stderr, "moekit prune: --budget must be layer or global (got '%s')\n", budget_s); return 2; }
    if (!outdir && !plan_only) { fprintf(stderr, "moekit prune: give an output directory with -o (or --plan-only FILE)\n"); return 2; }
    if (methods[mi].field && !stats_path) { fprintf(stderr, "moekit prune: --method %s needs --stats stats.json (from moekit profile)\n", method); return 2; }
    if ((dataset || protect_super) && !stats_path) { fprintf(stderr, "moekit prune: --dataset and --protect-super need --stats\n"); return 2; }
    if (!dir && !(dir = mk_default_model())) { fprintf(stderr, "moekit prune: no model given (-m DIR) and no default model found\n"); return 2; }

    double t0 = mk_wall();
    int rc = 1;
    mk_model *m = NULL;
    mk_stats *stats = NULL;
    double *scores = NULL;
    uint8_t *keepmap = NULL, *protect = NULL;
    char *record = NULL;
    json_t *rec = NULL;
    if (mk_model_load(&m, dir) || mk_require_uniform_experts(m, "prune")) { rc = mk_cli_fail(); goto out; }
    const int64_t L = m->cfg.n_layer, E = m->cfg.n_expert;
    if (keep_frac > 0) keep = (int64_t)llround(keep_frac * (double)E);
    if (keep > E) { fprintf(stderr, "moekit prune: --keep %lld is more than the model's %lld experts per layer\n", (long long)keep, (long long)E); rc = 2; goto out; }
    if (keep < m->cfg.k_active) { fprintf(stderr, "moekit prune: --keep %lld is fewer than the %lld experts each token is routed to (k)\n", (long long)keep, (long long)m->cfg.k_active); rc = 2; goto out; }
    scores = mk_calloc((size_t)(L * E), sizeof *scores);
    keepmap = mk_calloc((size_t)(L * E), 1);
    protect = mk_calloc((size_t)(L * E), 1);
    if (!scores || !keepmap || !protect) { rc = mk_cli_fail(); goto out; }
    if (stats_path && mk_stats_load(&stats, stats_path, m)) { rc = mk_cli_fail(); goto out; }
    double naee_s = 0;
    int64_t naee_evals = 0;
    size_t nt_naee = 0;
    if (naee) {
        int32_t *toks = NULL;
        size_t nt = 0;
        if (mk_cli_calib_tokens(dir, calib_text, calib_ids, &toks, &nt)) { rc = mk_cli_fail(); goto out; }
        mk_naee_opts no = {.ctx = (size_t)ctx};
        double t1 = mk_wall();
        mk_status st = mk_naee_select(m, toks, nt, &no, keep, keepmap, NULL, &naee_evals);
        nt_naee = nt;
        naee_s = mk_wall() - t1;
        free(toks);
        if (st) { rc = mk_cli_fail(); goto out; }
        fprintf(stderr, "naee: %lld subsets evaluated on %zu tokens in %.2f s\n", (long long)naee_evals, nt, naee_s);
    } else if (methods[mi].field) {
        const bool mixed = !dataset && !strcmp(methods[mi].name, "easy-ep");
        if (mixed ? mk_stats_field_mixed(stats, methods[mi].field, scores) : mk_stats_field(stats, dataset, methods[mi].field, scores)) {
            rc = mk_cli_fail();
            goto out;
        }
    } else {
        uint64_t x = (uint64_t)seed * 0x9e3779b97f4a7c15ull + 1;
        for (int64_t i = 0; i < L * E; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            scores[i] = (double)(x >> 11);
        }
    }
    int64_t n_super = protect_super ? mk_stats_super(stats, protect) : 0;
    if (!naee && mk_prune_select(m, scores, keep, budget, m->cfg.k_active, protect_super ? protect : NULL, keepmap)) { rc = mk_cli_fail(); goto out; }

    rec = json_object();
    json_object_set_new(rec, "moekit_version", json_string(MK_VERSION));
    json_object_set_new(rec, "operation", json_string("prune"));
    json_object_set_new(rec, "method", json_string(method));
    json_t *params = json_object();
    json_object_set_new(params, "keep", json_integer(keep));
    if (keep_frac > 0) json_object_set_new(params, "keep_frac", json_real(keep_frac));
    json_object_set_new(params, "budget", json_string(budget_s));
    json_object_set_new(params, "dataset", dataset ? json_string(dataset) : json_null());
    json_object_set_new(params, "protect_super", json_boolean(protect_super));
    if (protect_super) json_object_set_new(params, "super_experts_protected", json_integer(n_super));
    if (mi == 0) json_object_set_new(params, "seed", json_integer(seed));
    if (naee) {
        json_object_set_new(params, "calibration", json_string(calib_ids ? calib_ids : calib_text));
        json_object_set_new(params, "calibration_tokens", json_integer((json_int_t)nt_naee));
        json_object_set_new(params, "ctx", json_integer(ctx));
        json_object_set_new(params, "subsets_evaluated", json_integer(naee_evals));
        json_object_set_new(params, "search", json_string(m->cfg.n_expert <= 8 ? "exhaustive" : "greedy elimination"));
    }
    json_object_set_new(rec, "params", params);
    json_object_set_new(rec, "source_model", json_string(dir));
    json_object_set_new(rec, "stats", stats ? json_string(mk_stats_path(stats)) : json_null());
    json_object_set_new(rec, "stats_sha256", stats ? json_string(mk_stats_sha256(stats)) : json_null());
    json_t *ke = json_array();
    for (int64_t l = 0; l < L; l++) {
        if (!m->layers[l].is_moe) { json_array_append_new(ke, json_null()); continue; }
        json_t *row = json_array();
        for (int64_t e = 0; e < E; e++)
            if (keepmap[l * E + e]) json_array_append_new(row, json_integer(e));
        json_array_append_new(ke, row);
    }
    json_object_set_new(rec, "kept_experts", ke);
    record = json_dumps(rec, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!record) { fprintf(stderr, "moekit prune: out of memory\n"); goto out; }
    size_t rl = strlen(record);
    char *r2 = realloc(record, rl + 2);
    if (!r2) goto out;
    record = r2;
    record[rl] = '\n';
    record[rl + 1] = 0;
    if (plan_only) {
        if (mk_write_file_atomic(plan_only, record, rl + 1)) { rc = mk_cli_fail(); goto out; }
        fprintf(stderr, "plan written to %s (%.2f s)\n", plan_only, mk_wall() - t0);
    }
    if (outdir) {
        mk_write_opts wo = {.force = force, .record_json = record};
        if (mk_write_pruned(m, keepmap, outdir, &wo)) { rc = mk_cli_fail(); goto out; }
        if (budget == MK_BUDGET_GLOBAL) {
            int64_t lo = E, hi = 0;
            for (int64_t l = 0; l < L; l++) {
                if (!m->layers[l].is_moe) continue;
                int64_t c = 0;
                for (int64_t e = 0; e < E; e++) c += keepmap[l * E + e] != 0;
                lo = MK_MIN(lo, c);
                hi = MK_MAX(hi, c);
            }
            fprintf(stderr, "pruned model written to %s: %lld to %lld of %lld experts kept per MoE layer (%s, global budget%s), %.2f s\n", outdir,
                    (long long)lo, (long long)hi, (long long)E, method, lo == hi ? ": the same in every layer, a standard HF model" : "; moekit-only", mk_wall() - t0);
        } else {
            fprintf(stderr, "pruned model written to %s: %lld of %lld experts kept per MoE layer (%s), %.2f s\n", outdir, (long long)keep,
                    (long long)E, method, mk_wall() - t0);
        }
    }
    rc = 0;
out:
    json_decref(rec);
    free(record);
    free(scores);
    free(keepmap);
    free(protect);
    mk_stats_free(stats);
    mk_model_free(m);
    return rc;
}
