#include "args.h"

#include "base/base.h"
#include "moekit/tokenizer.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool mk_arg_int(const char *opt, const char *s, int64_t min, int64_t max, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < min || v > max) {
        fprintf(stderr, "moekit: option %s: '%s' is not an integer in [%lld, %lld]\n", opt, s, (long long)min, (long long)max);
        return false;
    }
    *out = v;
    return true;
}

bool mk_arg_float(const char *opt, const char *s, double min, double max, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !(v >= min && v <= max)) {
        fprintf(stderr, "moekit: option %s: '%s' is not a number in [%g, %g]\n", opt, s, min, max);
        return false;
    }
    *out = v;
    return true;
}

bool mk_arg_ids(const char *opt, const char *s, int32_t **ids, size_t *n) {
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return false;
    size_t k = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "moekit: option %s: '%s' is not a comma-separated list of token ids\n", opt, s);
            free(v);
            return false;
        }
        v[k++] = (int32_t)x;
        p = *end ? end + 1 : end;
    }
    if (k == 0) {
        fprintf(stderr, "moekit: option %s: empty list of token ids\n", opt);
        free(v);
        return false;
    }
    *ids = v;
    *n = k;
    return true;
}

const char *mk_arg_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "moekit: option %s needs a value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int mk_compress_arg(int argc, char **argv, int *i, mk_compress_args *o) {
    const char *a = argv[*i];
    const char **str = !strcmp(a, "-m") || !strcmp(a, "--model") ? &o->dir
                     : !strcmp(a, "--stats") ? &o->stats_path
                     : !strcmp(a, "--method") ? &o->method
                     : !strcmp(a, "-o") || !strcmp(a, "--out") ? &o->outdir
                     : !strcmp(a, "--dataset") ? &o->dataset
                     : !strcmp(a, "--calib-ids") ? &o->calib_ids
                     : !strcmp(a, "--calib") ? &o->calib_text : NULL;
    if (str) return (*str = mk_arg_value(argc, argv, i)) ? 1 : -1;
    if (!strcmp(a, "--force")) {
        o->force = true;
        return 1;
    }
    const bool is_keep = !strcmp(a, "--keep"), is_frac = !strcmp(a, "--keep-frac"), is_ctx = !strcmp(a, "--ctx");
    if (!is_keep && !is_frac && !is_ctx) return 0;
    const char *v = mk_arg_value(argc, argv, i);
    if (!v) return -1;
    if (is_frac) return mk_arg_float(a, v, 1e-9, 1, &o->keep_frac) ? 1 : -1;
    return mk_arg_int(a, v, 1, 1 << 20, is_keep ? &o->keep : &o->ctx) ? 1 : -1;
}

const char *mk_default_model(void) {
    const char *env = getenv("MOEKIT_MODEL");
    if (env && *env) return env;
    /* The binary lives in <repo>/build/moekit (or build-san/); the default model in <repo>/models/testbed. */
    static char path[4096];
    char exe[4000];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = 0;
    slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = 0;
    snprintf(path, sizeof path, "%s/models/testbed", exe);
    char cfg[4200];
    snprintf(cfg, sizeof cfg, "%s/config.json", path);
    return mk_file_exists(cfg) ? path : NULL;
}

const char *mk_cli_no_tokenizer(const char *model) {
    struct stat sb;
    return stat(model, &sb) == 0 && S_ISREG(sb.st_mode) ? "has no tokenizer in its metadata (tokenizer.ggml.model is missing or 'none')"
                                                        : "has no tokenizer.json";
}

int mk_cli_calib_tokens(const char *model_dir, const char *text_path, const char *ids_path, int32_t **toks, size_t *n) {
    *toks = NULL;
    *n = 0;
    if (ids_path) return mk_read_ids_file(ids_path, toks, n);
    char *text = NULL;
    size_t len = 0;
    mk_tokenizer *tk = NULL;
    mk_status st = mk_read_file(text_path, &text, &len);
    if (!st) st = mk_tokenizer_load(model_dir, &tk);
    if (!st) st = mk_tokenizer_encode(tk, text, len, false, toks, n);
    if (!st && *n == 0) st = mk_err(MK_ERR_FORMAT, "%s: no tokens in the calibration text", text_path);
    mk_tokenizer_free(tk);
    free(text);
    return st;
}
