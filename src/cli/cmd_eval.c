/* moekit eval: perplexity, KL divergence against a base model, multiple-choice scoring. The
 * library part is src/eval/ (token ids in, numbers out); this file reads inputs, prints results. */
#include "args.h"
#include "base/base.h"
#include "cli.h"
#include "moekit.h"
#include "moekit/eval.h"
#include "route_cli.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: moekit eval [-m MODEL_DIR] (--ppl FILE | --ppl-ids FILE | --mc FILE) [options]\n"
            "Perplexity, KL divergence against a base model, and multiple-choice accuracy.\n"
            "\n"
            "Perplexity follows HF's \"Perplexity of fixed-length models\" guide: windows of --ctx tokens\n"
            "start every --stride tokens (the last one ends at the end of the text); each window scores\n"
            "only the tokens after the previous window's end (its first token never: it has no context),\n"
            "so with stride < ctx every token but the first is scored once, with at least ctx - stride\n"
            "tokens of context. NLL is summed per token in double precision. A text shorter than --ctx\n"
            "is scored as one window of its own length (a note says so); fewer than 2 tokens is an error.\n"
            "\n"
            "  -m, --model DIR       HF checkpoint directory (default: $MOEKIT_MODEL, else models/testbed)\n"
            "  --ppl FILE            perplexity of a text file, taken verbatim and encoded with the model's\n"
            "                        tokenizer (DIR/tokenizer.json, or the GGUF file's) with its special\n"
            "                        tokens, as HF tokenizer(text)\n"
            "  --ppl-ids FILE        perplexity of token ids (whitespace- or comma-separated integers)\n"
            "  --ctx N               window length in tokens (default 512)\n"
            "  --stride S            window step, 1..ctx (default ctx/2)\n"
            "  --kld-base DIR        also run this base model on the same windows: KL(base || model) per\n"
            "                        position (exact, full vocabulary), top-1 agreement, base ppl, delta ppl\n"
            "  --save-logits FILE    store the reference distribution's top-k per scored position (the\n"
            "                        --kld-base model's if given, else this model's) for later --kld-logits\n"
            "  --save-top-k K        logits kept per position by --save-logits (default 32)\n"
            "  --kld-logits FILE     KL divergence against stored logits instead of running the base. Only\n"
            "                        the base's top-k are stored (plus its logsumexp and the target's logit,\n"
            "                        so base ppl is exact): KLD is computed between the distributions coarsened\n"
            "                        to those k tokens + one bucket for the rest, a lower bound of the true KLD\n"
            "                        (log-sum inequality), exact when k = vocab; the base's mean tail mass is reported\n"
            "  --mc FILE             multiple choice, JSONL, one item a line:\n"
            "                          {\"context\": str, \"choices\": [str...], \"gold\": int}  (text, through the\n"
            "                          model's tokenizer; each choice is scored as the continuation delimiter+choice,\n"
            "                          \"delimiter\" default \" \" as lm-eval's target_delimiter; split into tokens as\n"
            "                          lm-eval's _encode_pair; an empty context becomes BOS, else EOS)\n"
            "                          {\"contexts\": [str...], \"continuation\": str, \"gold\": int}  (WinoGrande-style)\n"
            "                          {\"context_ids\": [int...] (or one array per choice), \"choice_ids\": [[int...]...], \"gold\": int,\n"
            "                           \"choices\": [str...] (optional, for acc_norm lengths)}\n"
            "                        acc: argmax of the summed loglik of the continuation tokens; acc_norm:\n"
            "                        argmax of loglik / length of the choice in characters (lm-eval's acc_norm;\n"
            "                        token count when only ids are given); stderr as lm-eval (sample std / sqrt n)\n"
            "  --mc-limit N          score only the first N items\n"
            "  --json                print a JSON summary on stdout instead of text\n"
            "  --experts K           the same as --route topk:K\n"
            MK_CLI_ROUTE_HELP
            "                        (routing options apply to the evaluated model, not to --kld-base)\n"
            "  --batch N             tokens per forward call (default min(ctx, 512))\n"
            "  -t, --threads N       threads (default: all cores)\n"
            MK_CLI_MMAP_HELP
            "A progress bar (tokens, tok/s, ETA) is drawn on stderr when it is a terminal.\n");
}

/* ---- inputs ---- */
static bool read_ids_file(const char *path, int32_t **out, size_t *n) {
    FILE *f = fopen(path, "r");
    if (!f) { fprintf(stderr, "moekit eval: %s: cannot open: %s\n", path, strerror(errno)); return false; }
    size_t cap = 1024, k = 0, line = 1;
    int32_t *v = malloc(cap * sizeof *v);
    bool ok = v != NULL;
    int ch;
    while (ok && (ch = fgetc(f)) != EOF) {
        if (ch == '\n') { line++; continue; }
        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == ',') continue;
        if (ch < '0' || ch > '9') {
            fprintf(stderr, "moekit eval: %s: line %zu: '%c' is not part of a token id (expected integers separated by spaces or commas)\n", path, line, ch);
            ok = false;
            break;
        }
        long long x = 0;
        while (ch >= '0' && ch <= '9') {
            x = x * 10 + (ch - '0');
            if (x > INT32_MAX) break;
            ch = fgetc(f);
        }
        if (x > INT32_MAX) { fprintf(stderr, "moekit eval: %s: line %zu: token id too large\n", path, line); ok = false; break; }
        if (k == cap) {
            int32_t *nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) { ok = false; break; }
            v = nv;
        }
        v[k++] = (int32_t)x;
        if (ch == EOF) break;
        ungetc(ch, f);
    }
    fclose(f);
    if (ok && k == 0) { fprintf(stderr, "moekit eval: %s: no tokens (empty file)\n", path); ok = false; }
    if (!ok) { free(v); return false; }
    *out = v;
    *n = k;
    return true;
}

/* The text layer: the model's tokenizer (DIR/tokenizer.json, or a GGUF file's) behind mk_eval_encode_fn. */
typedef struct text_enc {
    mk_eval_encode_fn fn;
    void *user;          /* mk_tokenizer */
} text_enc;

static mk_status tok_encode(void *user, const char *text, size_t len, bool add_special, int32_t **ids, size_t *n) {
    return mk_tokenizer_encode(user, text, len, add_special, ids, n);
}

/* Loads DIR's tokenizer; false with one line printed if there is none or it does not load. */
static bool open_encoder(text_enc *e, const char *dir, const char *what) {
    e->fn = NULL;
    e->user = NULL;
    if (!mk_tokenizer_present(dir)) {
        fprintf(stderr, "moekit eval: %s: %s %s; give token ids (--ppl-ids, or context_ids/choice_ids in --mc)\n", what, dir,
                mk_cli_no_tokenizer(dir));
        return false;
    }
    mk_tokenizer *t = NULL;
    if (mk_tokenizer_load(dir, &t)) {
        fprintf(stderr, "moekit eval: %s\n", mk_last_error());
        return false;
    }
    e->fn = tok_encode;
    e->user = t;
    return true;
}

static void close_encoder(text_enc *e) {
    mk_tokenizer_free(e->user);
    e->user = NULL;
}

/* ---- progress ---- */
typedef struct progress { double t0, last; bool on; const char *unit; } progress;
static void on_progress(void *u, size_t done, size_t total) {
    progress *p = u;
    if (!p->on) return;
    double now = mk_wall();
    if (done < total && now - p->last < 0.1) return;   /* at most 10 redraws a second */
    p->last = now;
    double dt = now - p->t0, rate = dt > 0 ? (double)done / dt : 0;
    int w = 30, fill = total ? (int)((double)w * (double)done / (double)total) : w;
    char bar[64];
    for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
    bar[w] = 0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0;
    fprintf(stderr, "\r[%s] %zu/%zu %s  %.1f %s/s  ETA %.0fs ", bar, done, total, p->unit, rate, p->unit, eta);
    if (done == total) fputc('\n', stderr);
    fflush(stderr);
}

/* A JSON number, or null when not finite (a standard error of one item). */
static json_t *jnum(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static uint64_t model_hash(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "rb");
    uint64_t h = MK_FNV_INIT;
    if (!f) return h;
    char buf[4096];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0) h = mk_fnv1a(h, buf, k);
    fclose(f);
    return h;
}

/* ---- multiple choice ---- */
typedef struct mc_line {
    int32_t *ctx; size_t n_ctx;          /* shared context, or NULL with per-choice contexts */
    size_t n_choices;
    int32_t **cctx; size_t *n_cctx;      /* per-choice contexts (WinoGrande-style) or NULL */
    int32_t **cont; size_t *n_cont;      /* per-choice continuations */
} mc_line;

static bool json_ids(json_t *a, int32_t **out, size_t *n, int64_t vocab) {
    if (!json_is_array(a)) return false;
    size_t k = json_array_size(a);
    int32_t *v = malloc((k ? k : 1) * sizeof *v);
    if (!v) return false;
    for (size_t i = 0; i < k; i++) {
        json_t *x = json_array_get(a, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= vocab) { free(v); return false; }
        v[i] = (int32_t)json_integer_value(x);
    }
    *out = v;
    *n = k;
    return true;
}

static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

typedef struct mc_run {
    const mk_model *m;
    mk_ctx *c;
    size_t max_len;
    int32_t prefix;     /* token for an empty context, -1 if none */
    mk_mc_item *items;
    size_t n, cap;
    bool norm_tokens, norm_chars;
    const char *dir;
    text_enc enc;        /* opened at the first text item */
    bool enc_tried, enc_ok;
} mc_run;

/* One JSONL line → one scored item. Messages name the file and the line. */
static bool mc_do_line(mc_run *r, const char *path, size_t lineno, const char *text) {
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    bool ok = false;
    int32_t **ctxs = NULL, **conts = NULL;   /* per choice; ctxs[i] all equal to ctxs[0] when shared */
    size_t *n_ctxs = NULL, *n_conts = NULL, nc = 0;
    bool per_choice = false;
    double *ll = NULL, *len = NULL;
    const int64_t V = mk_model_get_info(r->m)->vocab;
#define LBAD(...) do { fprintf(stderr, "moekit eval: %s: line %zu: ", path, lineno); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); goto out; } while (0)
    if (!o) LBAD("malformed JSON: %s", je.text);
    if (!json_is_object(o)) LBAD("expected a JSON object");
    json_t *gold = json_object_get(o, "gold");
    if (!json_is_integer(gold)) LBAD("field 'gold' must be an integer");
    json_t *cids = json_object_get(o, "choice_ids"), *ctxids = json_object_get(o, "context_ids");
    json_t *choices = json_object_get(o, "choices");
    if (cids || ctxids) {
        if (!json_is_array(cids) || json_array_size(cids) < 1) LBAD("field 'choice_ids' must be a non-empty array of arrays of token ids");
        nc = json_array_size(cids);
        ctxs = calloc(nc, sizeof *ctxs);
        n_ctxs = calloc(nc, sizeof *n_ctxs);
        conts = calloc(nc, sizeof *conts);
        n_conts = calloc(nc, sizeof *n_conts);
        ll = calloc(nc, sizeof *ll);
        len = calloc(nc, sizeof *len);
        if (!ctxs || !n_ctxs || !conts || !n_conts || !ll || !len) LBAD("out of memory");
        per_choice = json_is_array(ctxids) && json_array_size(ctxids) && json_is_array(json_array_get(ctxids, 0));
        if (per_choice) {
            if (json_array_size(ctxids) != nc) LBAD("field 'context_ids' has %zu contexts for %zu choices", json_array_size(ctxids), nc);
            for (size_t i = 0; i < nc; i++)
                if (!json_ids(json_array_get(ctxids, i), &ctxs[i], &n_ctxs[i], V))
                    LBAD("field 'context_ids[%zu]' must be an array of token ids in [0, %lld)", i, (long long)V);
        } else {
            if (!json_ids(ctxids, &ctxs[0], &n_ctxs[0], V))
                LBAD("field 'context_ids' must be an array of token ids in [0, %lld) (or one such array per choice)", (long long)V);
        }
        for (size_t i = 0; i < nc; i++)
            if (!json_ids(json_array_get(cids, i), &conts[i], &n_conts[i], V) || !n_conts[i])
                LBAD("field 'choice_ids[%zu]' must be a non-empty array of token ids in [0, %lld)", i, (long long)V);
        if (choices && (!json_is_array(choices) || json_array_size(choices) != nc))
            LBAD("field 'choices' must be an array of %zu strings (one per choice_ids)", nc);
        for (size_t i = 0; i < nc; i++) {
            json_t *s = choices ? json_array_get(choices, i) : NULL;
            if (choices && !json_is_string(s)) LBAD("field 'choices[%zu]' must be a string", i);
            len[i] = s ? (double)utf8_chars(json_string_value(s)) : (double)n_conts[i];
            if (len[i] <= 0) len[i] = 1;
        }
        if (choices) r->norm_chars = true; else r->norm_tokens = true;
    } else if (json_object_get(o, "context") || json_object_get(o, "contexts")) {
        json_t *jd = json_object_get(o, "delimiter"), *jctx = json_object_get(o, "context"),
               *jctxs = json_object_get(o, "contexts"), *jcont = json_object_get(o, "continuation");
        if (jd && !json_is_string(jd)) LBAD("field 'delimiter' must be a string");
        const char *delim = jd ? json_string_value(jd) : " ";
        json_t *list = jctx ? choices : jctxs;
        const char *lname = jctx ? "choices" : "contexts";
        if (jctx && !json_is_string(jctx)) LBAD("field 'context' must be a string");
        if (!jctx && !json_is_string(jcont)) LBAD("field 'continuation' must be a string (with 'contexts')");
        if (!json_is_array(list) || json_array_size(list) < 1) LBAD("field '%s' must be a non-empty array of strings", lname);
        nc = json_array_size(list);
        for (size_t i = 0; i < nc; i++)
            if (!json_is_string(json_array_get(list, i))) LBAD("field '%s[%zu]' must be a string", lname, i);
        if (!r->enc_tried) {
            char what[64];
            snprintf(what, sizeof what, "text items in --mc (line %zu)", lineno);
            r->enc_tried = true;
            r->enc_ok = open_encoder(&r->enc, r->dir, what);
        }
        if (!r->enc_ok) goto out;
        ctxs = calloc(nc, sizeof *ctxs);
        n_ctxs = calloc(nc, sizeof *n_ctxs);
        conts = calloc(nc, sizeof *conts);
        n_conts = calloc(nc, sizeof *n_conts);
        ll = calloc(nc, sizeof *ll);
        len = calloc(nc, sizeof *len);
        if (!ctxs || !n_ctxs || !conts || !n_conts || !ll || !len) LBAD("out of memory");
        per_choice = !jctx;   /* one context for all choices: ctxs[i] are equal, ctxs[0] is used */
        for (size_t i = 0; i < nc; i++) {
            const char *item = json_string_value(json_array_get(list, i));
            const char *cx = jctx ? json_string_value(jctx) : item, *ct = jctx ? item : json_string_value(jcont);
            size_t dl = strlen(delim), tl = strlen(ct);
            char *cont = malloc(dl + tl + 1);
            if (!cont) LBAD("out of memory");
            memcpy(cont, delim, dl);
            memcpy(cont + dl, ct, tl + 1);
            mk_status st = mk_eval_encode_pair(r->enc.fn, r->enc.user, cx, cont, &ctxs[i], &n_ctxs[i], &conts[i], &n_conts[i]);
            free(cont);
            if (st) LBAD("%s", mk_last_error());
            if (!n_conts[i]) LBAD("choice %zu encodes to no tokens", i);
            len[i] = (double)utf8_chars(item);   /* lm-eval: len() of doc_to_choice's strings */
            if (len[i] <= 0) len[i] = 1;
        }
        r->norm_chars = true;
    } else {
        LBAD("expected fields context + choices, contexts + continuation, or context_ids + choice_ids");
    }
    int64_t g = json_integer_value(gold);
    if (g < 0 || g >= (int64_t)nc) LBAD("field 'gold' = %lld is not a choice index in [0, %zu)", (long long)g, nc);
    for (size_t i = 0; i < (per_choice ? nc : 1); i++) {
        if (n_ctxs[i]) continue;
        /* lm-eval: an empty context is replaced by the prefix token */
        if (r->enc_ok) {   /* lm-eval's HFLM.prefix_token_id: the tokenizer's BOS, else its EOS */
            int32_t b = mk_tokenizer_bos_id(r->enc.user), e = mk_tokenizer_eos_id(r->enc.user);
            if (b >= 0 || e >= 0) r->prefix = b >= 0 ? b : e;
        }
        if (r->prefix < 0) LBAD("empty context and the model has no BOS/EOS token to stand in for it");
        free(ctxs[i]);
        if (!(ctxs[i] = malloc(sizeof **ctxs))) LBAD("out of memory");
        ctxs[i][0] = r->prefix;
        n_ctxs[i] = 1;
    }
    if (per_choice) {
        for (size_t i = 0; i < nc; i++)
            if (mk_eval_loglik(r->m, r->c, ctxs[i], n_ctxs[i], conts[i], n_conts[i], r->max_len, &ll[i], NULL))
                LBAD("%s", mk_last_error());
    } else if (mk_eval_loglik_shared(r->m, r->c, ctxs[0], n_ctxs[0], (const int32_t *const *)conts, n_conts, nc,
                                     r->max_len, ll, NULL)) {
        LBAD("%s", mk_last_error());
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        mk_mc_item *ni = realloc(r->items, cap * sizeof *ni);
        if (!ni) LBAD("out of memory");
        r->items = ni;
        r->cap = cap;
    }
    r->items[r->n++] = (mk_mc_item){.n_choices = nc, .loglik = ll, .norm_len = len, .gold = g};
    ll = len = NULL;
    ok = true;
#undef LBAD
out:
    if (conts) for (size_t i = 0; i < nc; i++) free(conts[i]);
    if (ctxs) for (size_t i = 0; i < nc; i++) free(ctxs[i]);
    free(conts);
    free(n_conts);
    free(ctxs);
    free(n_ctxs);
    free(ll);
    free(len);
    json_decref(o);
    return ok;
}

static bool mc_file(mc_run *r, const char *path, int64_t limit) {
    FILE *f = fopen(path, "r");
    if (!f) { fprintf(stderr, "moekit eval: %s: cannot open: %s\n", path, strerror(errno)); return false; }
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t k;
    bool ok = true;
    /* progress on a terminal: count the items first */
    progress pg = {.t0 = mk_wall(), .on = isatty(2) != 0, .unit = "items"};
    size_t total = 0;
    if (pg.on) {
        while ((k = getline(&line, &cap, f)) >= 0) {
            size_t j = 0;
            while (j < (size_t)k && (line[j] == ' ' || line[j] == '\t' || line[j] == '\r' || line[j] == '\n')) j++;
            total += j < (size_t)k;
        }
        if (limit && (size_t)limit < total) total = (size_t)limit;
        rewind(f);
    }
    while ((k = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t j = 0;
        while (j < (size_t)k && (line[j] == ' ' || line[j] == '\t' || line[j] == '\r' || line[j] == '\n')) j++;
        if (j == (size_t)k) continue;   /* blank line */
        if (limit && (int64_t)r->n >= limit) break;
        if (!(ok = mc_do_line(r, path, lineno, line))) break;
        if (pg.on && total) on_progress(&pg, r->n, total);
    }
    if (pg.on && !ok) fputc('\n', stderr);
    free(line);
    fclose(f);
    if (ok && r->n == 0) { fprintf(stderr, "moekit eval: %s: no items (empty file)\n", path); ok = false; }
    return ok;
}

int mk_cmd_eval(int argc, char **argv) {
    const char *dir = NULL, *ppl_text = NULL, *ppl_ids = NULL, *base_dir = NULL, *save = NULL, *kld_file = NULL,
               *mc = NULL;
    int64_t ctx = 512, stride = 0, experts = 0, threads = 0, save_k = 32, batch = 0, mc_limit = 0;
    bool json = false, keep_mapped = false;
    mk_cli_route route = {0};
    char topk_spec[32];
    int rc = 2;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
#define VAL() if (!(v = mk_arg_value(argc, argv, &i))) goto out
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); rc = 0; goto out; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); dir = v; }
        else if (!strcmp(a, "--ppl")) { VAL(); ppl_text = v; }
        else if (!strcmp(a, "--ppl-ids")) { VAL(); ppl_ids = v; }
        else if (!strcmp(a, "--ctx")) { VAL(); if (!mk_arg_int(a, v, 2, 1 << 24, &ctx)) goto out; }
        else if (!strcmp(a, "--stride")) { VAL(); if (!mk_arg_int(a, v, 1, 1 << 24, &stride)) goto out; }
        else if (!strcmp(a, "--kld-base")) { VAL(); base_dir = v; }
        else if (!strcmp(a, "--save-logits")) { VAL(); save = v; }
        else if (!strcmp(a, "--save-top-k")) { VAL(); if (!mk_arg_int(a, v, 1, 1 << 24, &save_k)) goto out; }
        else if (!strcmp(a, "--kld-logits")) { VAL(); kld_file = v; }
        else if (!strcmp(a, "--mc")) { VAL(); mc = v; }
        else if (!strcmp(a, "--mc-limit")) { VAL(); if (!mk_arg_int(a, v, 1, INT64_MAX, &mc_limit)) goto out; }
        else if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "--mmap")) keep_mapped = true;
        else if (!strcmp(a, "--experts")) { VAL(); if (!mk_arg_int(a, v, 1, 1 << 20, &experts)) goto out; }
        else if (!strcmp(a, "--route")) { VAL(); if (!mk_cli_route_add(&route, v)) goto out; }
        else if (!strcmp(a, "--batch")) { VAL(); if (!mk_arg_int(a, v, 1, 1 << 20, &batch)) goto out; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); if (!mk_arg_int(a, v, 1, 1024, &threads)) goto out; }
        else { fprintf(stderr, "moekit eval: unknown option '%s' (moekit eval --help)\n", a); goto out; }
#undef VAL
    }
    int modes = !!ppl_text + !!ppl_ids + !!mc;
    if (modes != 1) { fprintf(stderr, "moekit eval: give exactly one of --ppl, --ppl-ids, --mc (moekit eval --help)\n"); goto out; }
    if (mc && (base_dir || save || kld_file)) { fprintf(stderr, "moekit eval: --kld-base/--save-logits/--kld-logits go with --ppl, not --mc\n"); goto out; }
    if (base_dir && kld_file) { fprintf(stderr, "moekit eval: give --kld-base or --kld-logits, not both\n"); goto out; }
    if (save && kld_file) { fprintf(stderr, "moekit eval: --save-logits stores a reference; it does not go with --kld-logits (which reads one)\n"); goto out; }
    if (!stride) stride = ctx / 2 ? ctx / 2 : 1;
    if (stride > ctx) { fprintf(stderr, "moekit eval: --stride %lld is larger than --ctx %lld (tokens would be skipped)\n", (long long)stride, (long long)ctx); goto out; }
    if (!dir && !(dir = mk_default_model())) { fprintf(stderr, "moekit eval: no model given (-m DIR) and no default model found\n"); goto out; }
    if (threads) omp_set_num_threads((int)threads);
    if (experts) {
        snprintf(topk_spec, sizeof topk_spec, "topk:%lld", (long long)experts);
        if (!mk_cli_route_add(&route, topk_spec)) goto out;
    }

    rc = 1;
    if (ppl_ids && !read_ids_file(ppl_ids, &ids, &n_ids)) goto out;
    if (ppl_text) {
        char *text = NULL;
        size_t len = 0;
        FILE *tf = fopen(ppl_text, "rb");
        if (!tf) { fprintf(stderr, "moekit eval: %s: cannot open: %s\n", ppl_text, strerror(errno)); goto out; }
        fclose(tf);
        if (mk_read_file(ppl_text, &text, &len)) { rc = mk_cli_fail(); goto out; }
        if (len == 0) { fprintf(stderr, "moekit eval: %s: empty file\n", ppl_text); free(text); goto out; }
        text_enc te;
        if (!open_encoder(&te, dir, "--ppl (text)")) { free(text); goto out; }
        mk_status st = te.fn(te.user, text, len, true, &ids, &n_ids);
        close_encoder(&te);
        free(text);
        if (st) { rc = mk_cli_fail(); goto out; }
        ppl_ids = ppl_text;   /* names the input in messages and JSON */
    }

    mk_model *m = NULL, *bm = NULL;
    mk_ctx *c = NULL, *bc = NULL;
    mk_logits_file *lf = NULL;
    mk_eval_result res = {0};
    mc_run r = {0};
    if (mk_cli_load_model(&m, dir, keep_mapped)) goto done;
    const mk_model_info *in = mk_model_get_info(m);
    if (ids) {
        size_t wctx = (size_t)ctx;
        if (n_ids < 2) { fprintf(stderr, "moekit eval: %s: %zu token, perplexity needs at least 2\n", ppl_ids, n_ids); goto done; }
        for (size_t i = 0; i < n_ids; i++)
            if (ids[i] >= in->vocab) {
                fprintf(stderr, "moekit eval: %s: token id %d at index %zu is out of range (vocab %lld)\n", ppl_ids, ids[i], i, (long long)in->vocab);
                goto done;
            }
        if (n_ids < wctx) {
            if (!json) fprintf(stderr, "moekit eval: note: the text has %zu tokens, fewer than --ctx %lld: scoring one window of %zu tokens\n", n_ids, (long long)ctx, n_ids);
            wctx = n_ids;
            if ((size_t)stride > wctx) stride = (int64_t)wctx;
        }
        if (kld_file) {
            if (mk_logits_open(&lf, kld_file)) { rc = mk_cli_fail(); goto done; }
        }
        if (base_dir) {
            if (mk_cli_load_model(&bm, base_dir, keep_mapped)) goto done;
            if (mk_model_get_info(bm)->vocab != in->vocab) {
                fprintf(stderr, "moekit eval: base model %s has a vocabulary of %lld tokens, %s has %lld: KL divergence needs the same vocabulary\n",
                        base_dir, (long long)mk_model_get_info(bm)->vocab, dir, (long long)in->vocab);
                goto done;
            }
        }
        size_t B = batch ? (size_t)batch : (wctx < 512 ? wctx : 512);
        if (mk_ctx_new(&c, m, wctx, B) || mk_cli_route_apply(&route, m, c)) { rc = mk_cli_fail(); goto done; }
        if (bm && mk_ctx_new(&bc, bm, wctx, B)) { rc = mk_cli_fail(); goto done; }
        progress pg = {.t0 = mk_wall(), .on = isatty(2) != 0, .unit = "tok"};
        mk_eval_opts o = {.ctx = wctx, .stride = (size_t)stride, .batch = B, .base = bc, .base_model = bm,
                          .ref_logits = lf, .save_path = save, .save_top_k = (uint32_t)save_k,
                          .model_hash = model_hash(base_dir ? base_dir : dir), .progress = on_progress,
                          .progress_user = &pg};
        if (mk_eval_ppl(m, c, ids, n_ids, &o, &res)) { rc = mk_cli_fail(); goto done; }
        if (json) {
            json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:I, s:f, s:f}", "model", dir, "input",
                                  ppl_ids, "n_tokens", (json_int_t)res.n_tokens, "n_scored", (json_int_t)res.n_scored,
                                  "n_windows", (json_int_t)res.n_windows, "ctx", (json_int_t)res.ctx, "stride",
                                  (json_int_t)res.stride, "nll_sum", res.nll_sum, "ppl", res.ppl, "tokens_fed",
                                  (json_int_t)res.n_fed, "seconds", res.seconds, "tok_per_s", res.tok_per_s);
            if (route.n) {
                json_t *rs = json_array();
                for (int i = 0; i < route.n; i++) json_array_append_new(rs, json_string(route.specs[i]));
                json_object_set_new(j, "route", rs);
            }
            {
                json_t *ept = json_array();
                double sum = 0;
                int64_t nl = 0;
                for (int64_t l = 0; l < mk_model_get_info(m)->n_layer; l++) {
                    if (!mk_model_layer_is_moe(m, l)) continue;
                    double v = mk_ctx_experts_per_token(c, l);
                    json_array_append_new(ept, json_real(v));
                    sum += v;
                    nl++;
                }
                json_object_set_new(j, "experts_per_token", ept);
                json_object_set_new(j, "experts_per_token_mean", json_real(nl ? sum / (double)nl : 0));
            }
            if (res.has_kld) {
                json_t *k = json_pack("{s:s, s:b, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "reference",
                                      base_dir ? base_dir : kld_file, "exact", res.kld_exact, "kld_mean", res.kld_mean,
                                      "kld_median", res.kld_median, "kld_p99", res.kld_p99, "kld_max", res.kld_max,
                                      "top1_agree", res.top1_agree, "base_ppl", res.base_ppl, "delta_ppl", res.delta_ppl,
                                      "ref_tail_mass_mean", res.ref_tail_mean);
                if (!res.kld_exact) json_object_set_new(k, "top_k", json_integer(res.top_k));
                json_object_set_new(j, "kld", k);
            }
            if (save) json_object_set_new(j, "saved_logits", json_string(save));
            char *s = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
            if (s) puts(s);
            free(s);
            json_decref(j);
        } else {
            printf("perplexity: %.6f  (%zu tokens, %zu scored, %zu windows of ctx %zu, stride %zu)\n", res.ppl,
                   res.n_tokens, res.n_scored, res.n_windows, res.ctx, res.stride);
            if (res.has_kld) {
                printf("base perplexity: %.6f  delta ppl: %+.6f\n", res.base_ppl, res.delta_ppl);
                printf("KLD(base || model): mean %.6g  median %.6g  p99 %.6g  max %.6g  (%s)\n", res.kld_mean,
                       res.kld_median, res.kld_p99, res.kld_max,
                       res.kld_exact ? "exact" : "top-k + tail bucket: a lower bound");
                if (!res.kld_exact)
                    printf("stored top-%u: mean base probability mass outside it %.4g\n", res.top_k, res.ref_tail_mean);
                printf("top-1 agreement: %.3f%%\n", 100 * res.top1_agree);
            }
            if (save) printf("saved reference logits to %s\n", save);
            fprintf(stderr, "%zu tokens through the model in %.2f s: %.1f tok/s, %d threads\n", res.n_fed, res.seconds,
                    res.tok_per_s, omp_get_max_threads());
            if (route.n) mk_cli_route_report(m, c, stderr);
        }
        rc = 0;
    } else {
        if (mk_ctx_new(&c, m, (size_t)ctx, batch ? (size_t)batch : 0) || mk_cli_route_apply(&route, m, c)) { rc = mk_cli_fail(); goto done; }
        r = (mc_run){.m = m, .c = c, .max_len = (size_t)ctx, .prefix = in->bos_id >= 0 ? in->bos_id : in->eos_id, .dir = dir};
        double t0 = mk_wall();
        if (!mc_file(&r, mc, mc_limit)) goto done;
        double dt = mk_wall() - t0;
        mk_mc_summary sm;
        mk_mc_score(r.items, r.n, &sm);
        const char *norm = r.norm_chars && r.norm_tokens ? "mixed" : r.norm_tokens ? "tokens" : "characters";
        if (json) {
            json_t *lls = json_array();
            for (size_t i = 0; i < r.n; i++) {
                json_t *a = json_array();
                for (size_t k = 0; k < r.items[i].n_choices; k++) json_array_append_new(a, jnum(r.items[i].loglik[k]));
                json_array_append_new(lls, a);
            }
            json_t *j = json_pack("{s:s, s:s, s:I, s:o, s:o, s:o, s:o, s:s, s:f, s:o}", "model", dir, "input", mc, "n",
                                  (json_int_t)sm.n, "acc", jnum(sm.acc), "acc_stderr", jnum(sm.acc_stderr), "acc_norm",
                                  jnum(sm.acc_norm), "acc_norm_stderr", jnum(sm.acc_norm_stderr), "acc_norm_by", norm,
                                  "seconds", dt, "loglik", lls);
            char *s = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(12));
            if (s) puts(s);
            free(s);
            json_decref(j);
        } else {
            printf("items: %zu\nacc:      %.4f ± %.4f\nacc_norm: %.4f ± %.4f  (loglik / length in %s)\n", sm.n, sm.acc,
                   sm.acc_stderr, sm.acc_norm, sm.acc_norm_stderr, norm);
            fprintf(stderr, "%zu items in %.2f s\n", sm.n, dt);
        }
        rc = 0;
    }
done:
    if (r.enc_ok) close_encoder(&r.enc);
    for (size_t i = 0; i < r.n; i++) { free(r.items[i].loglik); free(r.items[i].norm_len); }
    free(r.items);
    mk_eval_result_clear(&res);
    mk_logits_close(lf);
    mk_ctx_free(bc);
    mk_ctx_free(c);
    mk_model_free(bm);
    mk_model_free(m);
out:
    mk_cli_route_free(&route);
    free(ids);
    return rc;
}
