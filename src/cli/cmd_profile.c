/* moekit profile: expert routing statistics over calibration data → stats.json (+ HTML report).
 * The thin data layer lives here: data files → token ids → sequences of at most --ctx tokens;
 * the statistics are src/analyze/profile.c, a consumer of the forward pass's observer. */
#include "analyze/profile.h"
#include "args.h"
#include "cli.h"
#include "route_cli.h"
#include "moekit.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: moekit profile [-m MODEL_DIR] --data [NAME=]FILE [--data [NAME=]FILE ...] -o stats.json [options]\n"
            "Runs the calibration data through the model once and records, per MoE layer and expert, per\n"
            "dataset and overall: selection counts and frequency, gate mass, REAP, EASY-EP and TCESS scores,\n"
            "output norms, max |down_proj output| and super experts, routing entropy, co-activation,\n"
            "layer-to-layer transitions, top tokens, and the Jensen-Shannon divergence between datasets.\n"
            "Schema: docs/stats-schema.md.\n"
            "  -m, --model DIR       HF checkpoint directory (default: $MOEKIT_MODEL, else models/testbed)\n"
            "  --data [NAME=]FILE    a dataset: text (the whole file encoded with the model's tokenizer,\n"
            "                        no special tokens added) or token ids (decimal, separated by spaces\n"
            "                        or commas; one document per line; '#' starts a comment line). NAME\n"
            "                        defaults to the file name up to its first dot. Repeat for several.\n"
            "  --tokens N            use the first N tokens of each dataset (default: all)\n"
            "  --ctx N               tokens per sequence; longer documents are cut (default 512)\n"
            "  -o, --output FILE     stats.json to write (atomically)\n"
            "  --html FILE           also write a self-contained HTML report\n"
            "  --report-layer L      the layer whose co-activation and transitions the report draws\n"
            "                        (default: where the datasets diverge most)\n"
            "  --stream              layer by layer: every sequence through layer l before layer l+1,\n"
            "                        holding one layer's weights (for models larger than RAM)\n"
            MK_CLI_ROUTE_HELP
            "  --experts K           the same as --route topk:K\n"
            "  -t, --threads N       threads (default: all cores)\n"
            "  -q, --quiet           no progress bar (it is shown only on a terminal anyway)\n"
            "  --forward-only        benchmarking: the same forward passes with no observer; writes\n"
            "                        nothing (-o is still checked); compare its tok/s with a real run\n");
}

typedef struct dataset {
    char *name;
    const char *path;
    int32_t *ids;
    size_t n;
    size_t *doc_len;   /* (n_doc) tokens of each document (line) */
    size_t n_doc;
    char *text;        /* a text file, until encoded with the model's tokenizer */
    size_t text_len;
} dataset;

static bool is_token_text(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '#') {
            while (i < len && s[i] != '\n') i++;
            continue;
        }
        if (!isdigit(c) && !isspace(c) && c != ',') return false;
    }
    return true;
}

/* Reads a token-id file; returns false with a message printed. */
static bool read_ids(dataset *d) {
    char *text = NULL;
    size_t len = 0;
    if (mk_read_file(d->path, &text, &len)) {
        fprintf(stderr, "moekit profile: %s\n", mk_last_error());
        return false;
    }
    if (!is_token_text(text, len)) {
        /* text: encoded once the model (and its tokenizer) is loaded */
        bool blank = true;
        for (size_t i = 0; i < len && blank; i++) blank = isspace((unsigned char)text[i]) != 0;
        if (blank) {
            fprintf(stderr, "moekit profile: %s: no tokens (empty data file)\n", d->path);
            free(text);
            return false;
        }
        d->text = text;
        d->text_len = len;
        return true;
    }
    size_t cap = 1024, dcap = 64;
    d->ids = malloc(cap * sizeof *d->ids);
    d->doc_len = malloc(dcap * sizeof *d->doc_len);
    if (!d->ids || !d->doc_len) goto oom;
    const char *p = text;
    size_t line = 1;
    while (*p) {
        size_t start = d->n;
        if (*p == '#') {
            while (*p && *p != '\n') p++;
        }
        while (*p && *p != '\n') {
            if (isdigit((unsigned char)*p)) {
                errno = 0;
                char *end;
                unsigned long long v = strtoull(p, &end, 10);
                if (errno || v > INT32_MAX) {
                    fprintf(stderr, "moekit profile: %s: line %zu: token id '%.*s' is too large\n", d->path, line, (int)(end - p), p);
                    free(text);
                    return false;
                }
                if (d->n == cap) {
                    cap *= 2;
                    int32_t *ni = realloc(d->ids, cap * sizeof *ni);
                    if (!ni) goto oom;
                    d->ids = ni;
                }
                d->ids[d->n++] = (int32_t)v;
                p = end;
            } else {
                p++;
            }
        }
        if (d->n > start) {
            if (d->n_doc == dcap) {
                dcap *= 2;
                size_t *nd = realloc(d->doc_len, dcap * sizeof *nd);
                if (!nd) goto oom;
                d->doc_len = nd;
            }
            d->doc_len[d->n_doc++] = d->n - start;
        }
        if (*p == '\n') {
            p++;
            line++;
        }
    }
    free(text);
    if (d->n == 0) {
        fprintf(stderr, "moekit profile: %s: no tokens (empty data file)\n", d->path);
        return false;
    }
    return true;
oom:
    free(text);
    fprintf(stderr, "moekit profile: %s: out of memory\n", d->path);
    return false;
}

/* --tokens N: keeps the first N tokens of the dataset; false (message printed) if it has fewer. */
static bool trim_tokens(dataset *d, int64_t tokens) {
    if (!tokens) return true;
    if ((size_t)tokens > d->n) {
        fprintf(stderr, "moekit profile: --tokens %lld is more than the %zu tokens in %s\n", (long long)tokens, d->n, d->path);
        return false;
    }
    size_t acc = 0, k = 0;
    while (acc < (size_t)tokens) {
        size_t take = MK_MIN(d->doc_len[k], (size_t)tokens - acc);
        d->doc_len[k++] = take;
        acc += take;
    }
    d->n_doc = k;
    d->n = acc;
    return true;
}

/* Token text for "top tokens" and outliers: the decoded id, as HF decode([id]) gives it. */
static bool decode_one(void *user, int32_t id, char *buf, size_t cap) {
    char *t = NULL;
    size_t len = 0;
    if (mk_tokenizer_decode(user, &id, 1, false, &t, &len)) return false;
    size_t n = MK_MIN(len, cap - 1);
    /* do not cut a UTF-8 sequence */
    while (n > 0 && n < len && ((unsigned char)t[n] & 0xC0) == 0x80) n--;
    memcpy(buf, t, n);
    buf[n] = 0;
    free(t);
    return true;
}

/* Fails early (before a long run) if `path` cannot be created: a probe file in its directory. */
static bool probe_writable(const char *path) {
    char *copy = strdup(path);
    if (!copy) return false;
    char *dir = dirname(copy);
    size_t n = strlen(dir) + 32;
    char *probe = malloc(n);
    if (!probe) { free(copy); return false; }
    snprintf(probe, n, "%s/.moekit-probe.XXXXXX", dir);
    int fd = mkstemp(probe);
    bool ok = fd >= 0;
    if (!ok) fprintf(stderr, "moekit profile: %s: cannot write: %s\n", path, strerror(errno));
    else {
        close(fd);
        unlink(probe);
        /* an existing directory at the path itself */
        char *d2 = strdup(path);
        if (d2) {
            int dfd = open(path, O_RDONLY | O_DIRECTORY);
            if (dfd >= 0) {
                close(dfd);
                fprintf(stderr, "moekit profile: %s: cannot write: is a directory\n", path);
                ok = false;
            }
            free(d2);
        }
    }
    free(probe);
    free(copy);
    return ok;
}

typedef struct progress {
    bool on;
    double t0, last;
    size_t total;        /* tokens */
    int64_t n_layer;
} progress;

static void fmt_eta(char *b, size_t cap, double s) {
    if (!(s >= 0) || s > 1e7) { snprintf(b, cap, "--:--"); return; }
    long v = (long)(s + 0.5);
    if (v >= 3600) snprintf(b, cap, "%ld:%02ld:%02ld", v / 3600, v / 60 % 60, v % 60);
    else snprintf(b, cap, "%ld:%02ld", v / 60, v % 60);
}

/* done: token-layers done out of total · n_layer. */
static void progress_show(progress *pg, double done_tl, bool final, const char *what) {
    if (!pg->on) return;
    double now = mk_wall();
    if (!final && now - pg->last < 0.2) return;
    pg->last = now;
    double all = (double)pg->total * (double)pg->n_layer, el = now - pg->t0;
    double tok = done_tl / (double)pg->n_layer, tps = el > 0 ? tok / el : 0;
    char eta[32];
    fmt_eta(eta, sizeof eta, done_tl > 0 ? el * (all - done_tl) / done_tl : -1);
    int w = 30, fill = (int)(w * (done_tl / all));
    char bar[40];
    for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
    bar[w] = 0;
    fprintf(stderr, "\r%s [%s] %3.0f%%  %.0f/%zu tok  %.1f tok/s  ETA %s ", what, bar, 100 * done_tl / all, tok, pg->total,
            tps, final ? "0:00" : eta);
    if (final) fputc('\n', stderr);
    fflush(stderr);
}

static void stream_progress(void *user, int64_t layer, size_t done, size_t total) {
    progress *pg = user;
    progress_show(pg, (double)layer * (double)total + (double)done, false, "profile (stream)");
}

int mk_cmd_profile(int argc, char **argv) {
    const char *dir = NULL, *out = NULL, *html = NULL;
    int64_t tokens = 0, n_ctx = 512, threads = 0, experts = 0, report_layer = -1;
    bool stream = false, quiet = false, fwd_only = false;
    dataset *ds = NULL;
    size_t n_ds = 0;
    int rc = 2;
    mk_model *m = NULL;
    mk_ctx *c = NULL;
    mk_profile *prof = NULL;
    int32_t *all = NULL, *seq_ds = NULL;
    size_t *seq_len = NULL;
    const char **names = NULL, **paths = NULL;
    mk_cli_route route = {0};
    char topk_spec[32];
    mk_tokenizer *tkz = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
#define VAL() if (!(v = mk_arg_value(argc, argv, &i))) goto out
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); rc = 0; goto out; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); dir = v; }
        else if (!strcmp(a, "--data")) {
            VAL();
            dataset *nd = realloc(ds, (n_ds + 1) * sizeof *nd);
            if (!nd) goto out;
            ds = nd;
            dataset *d = &ds[n_ds++];
            memset(d, 0, sizeof *d);
            const char *eq = strchr(v, '=');
            if (eq && eq > v && !memchr(v, '/', (size_t)(eq - v))) {
                d->name = strndup(v, (size_t)(eq - v));
                d->path = eq + 1;
            } else {
                const char *base = strrchr(v, '/');
                base = base ? base + 1 : v;
                const char *dot = strchr(base, '.');
                d->name = dot && dot > base ? strndup(base, (size_t)(dot - base)) : strdup(base);
                d->path = v;
            }
            if (!d->name) goto out;
        }
        else if (!strcmp(a, "--tokens")) { VAL(); if (!mk_arg_int(a, v, 1, INT64_MAX / 2, &tokens)) goto out; }
        else if (!strcmp(a, "--ctx")) { VAL(); if (!mk_arg_int(a, v, 1, 1 << 24, &n_ctx)) goto out; }
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) { VAL(); out = v; }
        else if (!strcmp(a, "--html")) { VAL(); html = v; }
        else if (!strcmp(a, "--report-layer")) { VAL(); if (!mk_arg_int(a, v, 0, 1 << 20, &report_layer)) goto out; }
        else if (!strcmp(a, "--stream")) stream = true;
        else if (!strcmp(a, "--route")) { VAL(); if (!mk_cli_route_add(&route, v)) goto out; }
        else if (!strcmp(a, "--experts")) { VAL(); if (!mk_arg_int(a, v, 1, 1 << 20, &experts)) goto out; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); if (!mk_arg_int(a, v, 1, 1024, &threads)) goto out; }
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = true;
        else if (!strcmp(a, "--forward-only")) fwd_only = true;
        else { fprintf(stderr, "moekit profile: unknown option '%s' (moekit profile --help)\n", a); goto out; }
#undef VAL
    }
    if (!n_ds) { fprintf(stderr, "moekit profile: give calibration data with --data FILE (moekit profile --help)\n"); goto out; }
    if (!out) { fprintf(stderr, "moekit profile: give the output file with -o stats.json (moekit profile --help)\n"); goto out; }
    for (size_t i = 0; i < n_ds; i++)
        for (size_t j = 0; j < i; j++)
            if (!strcmp(ds[i].name, ds[j].name)) {
                fprintf(stderr, "moekit profile: two datasets are named '%s'; name them with --data NAME=FILE\n", ds[i].name);
                goto out;
            }
    if (!dir && !(dir = mk_default_model())) { fprintf(stderr, "moekit profile: no model given (-m DIR) and no default model found\n"); goto out; }
    if (threads) omp_set_num_threads((int)threads);

    rc = 1;
    /* everything that can fail fast, before loading the model or running anything */
    if (!probe_writable(out) || (html && !probe_writable(html))) goto out;
    for (size_t i = 0; i < n_ds; i++) {
        if (!read_ids(&ds[i])) goto out;
        if (!ds[i].text && !trim_tokens(&ds[i], tokens)) goto out;
    }
    if (mk_model_load(&m, dir)) { rc = mk_cli_fail(); goto out; }
    const mk_model_info *in = mk_model_get_info(m);
    /* the model's tokenizer, if it has one: text data, and decoded tokens in the output */
    if (mk_tokenizer_present(dir) && mk_tokenizer_load(dir, &tkz)) { rc = mk_cli_fail(); goto out; }
    size_t total = 0;
    for (size_t i = 0; i < n_ds; i++) {
        if (ds[i].text) {
            if (!tkz) {
                fprintf(stderr, "moekit profile: %s is text, but %s %s; give token ids (decimal, one document per line)\n", ds[i].path, dir,
                        mk_cli_no_tokenizer(dir));
                goto out;
            }
            /* the whole file is one document, encoded without special tokens, then cut into --ctx sequences */
            if (mk_tokenizer_encode(tkz, ds[i].text, ds[i].text_len, false, &ds[i].ids, &ds[i].n)) {
                fprintf(stderr, "moekit profile: %s: %s\n", ds[i].path, mk_last_error());
                goto out;
            }
            free(ds[i].text);
            ds[i].text = NULL;
            ds[i].doc_len = malloc(sizeof *ds[i].doc_len);
            if (!ds[i].doc_len) goto out;
            ds[i].doc_len[0] = ds[i].n;
            ds[i].n_doc = ds[i].n ? 1 : 0;
            if (!ds[i].n) { fprintf(stderr, "moekit profile: %s: no tokens (the tokenizer produced none)\n", ds[i].path); goto out; }
            if (!trim_tokens(&ds[i], tokens)) goto out;
        }
        total += ds[i].n;
    }
    if (html && report_layer >= 0 && !mk_model_layer_is_moe(m, report_layer)) {
        fprintf(stderr, "moekit profile: --report-layer %lld is not a MoE layer of this model\n", (long long)report_layer);
        goto out;
    }
    /* sequences: each document cut into chunks of at most --ctx tokens */
    size_t n_seq = 0;
    for (size_t i = 0; i < n_ds; i++)
        for (size_t k = 0; k < ds[i].n_doc; k++) n_seq += (ds[i].doc_len[k] + (size_t)n_ctx - 1) / (size_t)n_ctx;
    all = malloc(total * sizeof *all);
    seq_len = malloc(n_seq * sizeof *seq_len);
    seq_ds = malloc(n_seq * sizeof *seq_ds);
    names = malloc(n_ds * sizeof *names);
    paths = malloc(n_ds * sizeof *paths);
    if (!all || !seq_len || !seq_ds || !names || !paths) { fprintf(stderr, "moekit profile: out of memory\n"); goto out; }
    size_t off = 0, s = 0;
    for (size_t i = 0; i < n_ds; i++) {
        names[i] = ds[i].name;
        paths[i] = ds[i].path;
        memcpy(all + off, ds[i].ids, ds[i].n * sizeof *all);
        for (size_t t = 0; t < ds[i].n; t++)
            if (ds[i].ids[t] >= in->vocab) {
                fprintf(stderr, "moekit profile: %s: token id %d (token %zu) is out of range for the model's vocabulary of %lld\n",
                        ds[i].path, ds[i].ids[t], t, (long long)in->vocab);
                goto out;
            }
        off += ds[i].n;
        for (size_t k = 0; k < ds[i].n_doc; k++)
            for (size_t done = 0; done < ds[i].doc_len[k]; done += (size_t)n_ctx) {
                seq_len[s] = MK_MIN((size_t)n_ctx, ds[i].doc_len[k] - done);
                seq_ds[s++] = (int32_t)i;
            }
    }
    size_t max_len = 0;
    for (size_t k = 0; k < n_seq; k++) max_len = MK_MAX(max_len, seq_len[k]);
    if (experts) {
        snprintf(topk_spec, sizeof topk_spec, "topk:%lld", (long long)experts);
        if (!mk_cli_route_add(&route, topk_spec)) goto out;
    }
    if (mk_ctx_new(&c, m, max_len, MK_MIN(max_len, (size_t)512)) || mk_cli_route_apply(&route, m, c)) { rc = mk_cli_fail(); goto out; }
    mk_profile_layout lay = {.tokens = all, .n_tok = total, .seq_len = seq_len, .seq_dataset = seq_ds, .n_seq = n_seq,
                             .n_dataset = n_ds, .dataset_names = names, .dataset_paths = paths, .k = 0};
    if (mk_profile_new(&prof, m, &lay)) { rc = mk_cli_fail(); goto out; }
    mk_observer obs = mk_profile_observer(prof);
    if (!fwd_only) mk_ctx_set_observer(c, &obs);

    progress pg = {.on = !quiet && isatty(STDERR_FILENO), .t0 = mk_wall(), .total = total, .n_layer = in->n_layer};
    double t0 = mk_wall();
    if (stream) {
        mk_stream_opts so = {.release = true, .user = &pg, .on_progress = stream_progress};
        if (mk_forward_streamed(c, all, seq_len, n_seq, &so)) { rc = mk_cli_fail(); goto out; }
    } else {
        size_t o2 = 0;
        for (size_t k = 0; k < n_seq; k++) {
            mk_ctx_reset(c);
            if (mk_ctx_forward(c, all + o2, seq_len[k], MK_LOGITS_NONE, NULL)) { rc = mk_cli_fail(); goto out; }
            o2 += seq_len[k];
            progress_show(&pg, (double)o2 * (double)in->n_layer, false, "profile");
        }
    }
    double secs = mk_wall() - t0;
    progress_show(&pg, (double)total * (double)in->n_layer, true, stream ? "profile (stream)" : "profile");
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const double peak_mib = (double)ru.ru_maxrss / 1024.0;
    if (fwd_only) {
        if (!quiet)
            fprintf(stderr, "profile --forward-only: %zu tokens in %zu sequences, %.2f s (%.1f tok/s)%s, peak RSS %.0f MiB; nothing written\n",
                    total, n_seq, secs, secs > 0 ? (double)total / secs : 0.0, stream ? ", streamed" : "", peak_mib);
        rc = 0;
        goto out;
    }
    if (mk_profile_status(prof)) { rc = mk_cli_fail(); goto out; }
    mk_profile_run_info run = {.model_dir = dir, .ctx = (size_t)n_ctx, .tokens_limit = tokens, .streamed = stream, .seconds = secs};
    if (mk_profile_write_json(prof, &run, tkz ? decode_one : NULL, tkz, out)) { rc = mk_cli_fail(); goto out; }
    if (html && mk_profile_write_html(prof, &run, tkz ? decode_one : NULL, tkz, report_layer, html)) { rc = mk_cli_fail(); goto out; }
    if (!quiet)
        fprintf(stderr, "profile: %zu tokens in %zu sequences from %zu dataset%s, %.2f s (%.1f tok/s)%s, peak RSS %.0f MiB, statistics %.2f s (%.1f%% over the forward); wrote %s%s%s\n",
                total, n_seq, n_ds, n_ds > 1 ? "s" : "", secs, secs > 0 ? (double)total / secs : 0.0, stream ? ", streamed" : "",
                peak_mib, mk_profile_observer_seconds(prof), secs > mk_profile_observer_seconds(prof) ? 100 * mk_profile_observer_seconds(prof) / (secs - mk_profile_observer_seconds(prof)) : 0.0,
                out, html ? " and " : "", html ? html : "");
    rc = 0;
out:
    mk_cli_route_free(&route);
    mk_tokenizer_free(tkz);
    mk_profile_free(prof);
    mk_ctx_free(c);
    mk_model_free(m);
    for (size_t i = 0; i < n_ds; i++) {
        free(ds[i].name);
        free(ds[i].ids);
        free(ds[i].doc_len);
        free(ds[i].text);
    }
    free(ds);
    free(all);
    free(seq_len);
    free(seq_ds);
    free(names);
    free(paths);
    return rc;
}
