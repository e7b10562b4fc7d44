/* Tokenizer tests: exact ids and decodes against HF `tokenizers` fixtures
 * (tests/fixtures/tokenizer, made by tools/gen_tokenizer_fixtures.py) for the real tokenizer.json
 * files in tests/data (unpacked into $MK_TESTDATA), streaming decode, and error cases. */
#include "format/gguf.h"
#include "format/gguf_write.h"
#include "mk_test.h"
#include "moekit/tokenizer.h"
#include "tokenizer/tok_gguf.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#define FIX "tests/fixtures/tokenizer"

static const struct { const char *name, *path; } TOKS[] = {
    {"qwen3", "tokenizers/qwen3/tokenizer.json"},
    {"deepseek_v3", "tokenizers/deepseek_v3/tokenizer.json"},
    {"gptoss", "tokenizers/gptoss/tokenizer.json"},
    {"llama2", "tokenizers/llama2/tokenizer.json"},
    {"olmoe", "tokenizers/olmoe/tokenizer.json"},
};
#define N_TOKS (sizeof TOKS / sizeof TOKS[0])

static json_t **texts;
static size_t n_texts;
static size_t total_cases, total_ids_ok, total_dec_ok, total_stream_ok;

/* Reads a JSONL file into an array of json values (NULL on failure). */
static json_t **read_jsonl(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1024;
    json_t **a = malloc(cap * sizeof *a);
    *n = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, f)) > 0) {
        json_error_t e;
        json_t *v = json_loadb(line, (size_t)len, JSON_ALLOW_NUL | JSON_DECODE_ANY, &e);
        if (!v) { fprintf(stderr, "%s: %s\n", path, e.text); break; }
        if (*n == cap) a = realloc(a, (cap *= 2) * sizeof *a);
        a[(*n)++] = v;
    }
    free(line);
    fclose(f);
    return a;
}

static void free_jsonl(json_t **a, size_t n) {
    for (size_t i = 0; i < n; i++) json_decref(a[i]);
    free(a);
}

static char *data_path(const char *rel) {
    const char *sh = mk_t_data();
    char *p = malloc(strlen(sh) + strlen(rel) + 2);
    sprintf(p, "%s/%s", sh, rel);
    return p;
}

static void print_excerpt(const char *what, const char *s, size_t n) {
    fprintf(stderr, "    %s: \"", what);
    for (size_t i = 0; i < n && i < 120; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20) fprintf(stderr, "\\x%02x", c);
        else fputc(c, stderr);
    }
    fprintf(stderr, "%s\"\n", n > 120 ? "..." : "");
}

/* Decodes ids one at a time through a stream; returns the concatenation (caller frees). */
static char *stream_decode(const mk_tokenizer *tok, const int32_t *ids, size_t n, bool skip, size_t *len) {
    mk_tokenizer_stream *st;
    if (mk_tokenizer_stream_new(tok, skip, &st)) return NULL;
    size_t cap = 64, l = 0;
    char *out = malloc(cap);
    for (size_t i = 0; i <= n; i++) {
        const char *t;
        size_t tl;
        mk_status s = i < n ? mk_tokenizer_stream_feed(st, ids[i], &t, &tl) : mk_tokenizer_stream_flush(st, &t, &tl);
        if (s) { free(out); mk_tokenizer_stream_free(st); return NULL; }
        /* before the flush, only complete UTF-8 comes out (never a trailing U+FFFD) */
        CHECK(i == n || tl < 3 || memcmp(t + tl - 3, "\xEF\xBF\xBD", 3) != 0, "stream emitted an incomplete character");
        while (l + tl + 1 > cap) out = realloc(out, cap *= 2);
        memcpy(out + l, t, tl);
        l += tl;
    }
    out[l] = 0;
    mk_tokenizer_stream_free(st);
    *len = l;
    return out;
}

static bool str_eq(const char *a, size_t al, json_t *b) {
    return json_string_length(b) == al && !memcmp(a, json_string_value(b), al);
}

/* Checks tok (freed here) against the fixture file of `name`. */
static void check_fixture(const char *name, mk_tokenizer *tok) {
    mk_status s;
    char fpath[256];
    snprintf(fpath, sizeof fpath, FIX "/%s.jsonl", name);
    size_t n_cases;
    json_t **cases = read_jsonl(fpath, &n_cases);
    if (!cases) {
        mk_tokenizer_free(tok);
        CHECK(cases != NULL, "cannot read %s", fpath);
        return;
    }
    size_t ok_ids = 0, ok_dec = 0, ok_stream = 0, shown = 0;
    for (size_t c = 0; c < n_cases; c++) {
        json_t *rec = cases[c];
        size_t ti_text = (size_t)json_integer_value(json_object_get(rec, "t"));
        bool add = json_integer_value(json_object_get(rec, "s")) != 0;
        json_t *jids = json_object_get(rec, "ids");
        if (ti_text >= n_texts || !json_is_array(jids)) { CHECK(0, "%s: bad fixture line %zu", fpath, c + 1); continue; }
        json_t *text = texts[ti_text];
        size_t ne = json_array_size(jids);
        int32_t *exp = malloc((ne + 1) * sizeof *exp);
        for (size_t i = 0; i < ne; i++) exp[i] = (int32_t)json_integer_value(json_array_get(jids, i));
        int32_t *ids = NULL;
        size_t n = 0;
        s = mk_tokenizer_encode(tok, json_string_value(text), json_string_length(text), add, &ids, &n);
        bool same = s == MK_OK && n == ne && (n == 0 || !memcmp(ids, exp, n * sizeof *ids));
        ok_ids += same;
        if (!same && shown++ < 5) {
            size_t k = 0;
            while (s == MK_OK && k < n && k < ne && ids[k] == exp[k]) k++;
            fprintf(stderr, "  %s: text %zu (add_special %d): %s; %zu ids vs %zu expected, first difference at %zu (%d vs %d)\n",
                    name, ti_text, add, s ? mk_last_error() : "ids differ", n, ne, k, k < n ? ids[k] : -1,
                    k < ne ? exp[k] : -1);
            print_excerpt("text", json_string_value(text), json_string_length(text));
        }
        /* decode of the expected ids */
        json_t *d = json_object_get(rec, "d");
        json_t *ds = json_object_get(rec, "ds");
        json_t *want = d ? d : text, *want_skip = ds ? ds : want;
        char *out = NULL, *outs = NULL;
        size_t ol = 0, osl = 0;
        bool dok = mk_tokenizer_decode(tok, exp, ne, false, &out, &ol) == MK_OK && str_eq(out, ol, want) &&
                   mk_tokenizer_decode(tok, exp, ne, true, &outs, &osl) == MK_OK && str_eq(outs, osl, want_skip);
        ok_dec += dok;
        if (!dok && shown++ < 5) {
            fprintf(stderr, "  %s: text %zu: decode differs\n", name, ti_text);
            if (out) print_excerpt("got", out, ol);
            if (outs) print_excerpt("got (skip special)", outs, osl);
            print_excerpt("want", json_string_value(want), json_string_length(want));
            print_excerpt("want (skip special)", json_string_value(want_skip), json_string_length(want_skip));
        }
        /* streaming decode equals full decode */
        size_t sl = 0;
        char *st = stream_decode(tok, exp, ne, false, &sl);
        bool sok = st && out && sl == ol && !memcmp(st, out, ol);
        ok_stream += sok;
        if (!sok && shown++ < 5) {
            fprintf(stderr, "  %s: text %zu: stream decode differs from decode\n", name, ti_text);
            if (st) print_excerpt("stream", st, sl);
            if (out) print_excerpt("decode", out, ol);
        }
        free(st);
        free(out);
        free(outs);
        free(ids);
        free(exp);
    }
    printf("  %-12s %zu cases: ids identical %zu, decode identical %zu, stream = decode %zu\n", name,
           n_cases, ok_ids, ok_dec, ok_stream);
    CHECK(ok_ids == n_cases, "%s: %zu of %zu encodings differ from HF", name, n_cases - ok_ids, n_cases);
    CHECK(ok_dec == n_cases, "%s: %zu of %zu decodes differ from HF", name, n_cases - ok_dec, n_cases);
    CHECK(ok_stream == n_cases, "%s: %zu of %zu stream decodes differ", name, n_cases - ok_stream, n_cases);
    total_cases += n_cases;
    total_ids_ok += ok_ids;
    total_dec_ok += ok_dec;
    total_stream_ok += ok_stream;
    free_jsonl(cases, n_cases);
    mk_tokenizer_free(tok);
}

static void check_tokenizer(size_t ti) {
    char *path = data_path(TOKS[ti].path);
    mk_tokenizer *tok = NULL;
    mk_status s = mk_tokenizer_load(path, &tok);
    free(path);
    REQUIRE(s == MK_OK, "%s: load failed: %s", TOKS[ti].name, mk_last_error());
    check_fixture(TOKS[ti].name, tok);
}

/* Variants of the real files (tests/fixtures/tokenizer/variants.json: base tokenizer and the
 * top-level keys to replace) cover pipeline pieces the real files do not use. */
static void test_variants(void) {
    json_error_t e;
    json_t *vars = json_load_file(FIX "/variants.json", 0, &e);
    REQUIRE(vars, "variants.json: %s", e.text);
    const char *vname;
    json_t *v;
    json_object_foreach(vars, vname, v) {
        const char *base = json_string_value(json_object_get(v, "base"));
        size_t ti = 0;
        while (ti < N_TOKS && (!base || strcmp(TOKS[ti].name, base))) ti++;
        if (ti == N_TOKS) { CHECK(0, "%s: unknown base", vname); continue; }
        char *path = data_path(TOKS[ti].path);
        json_t *root = json_load_file(path, JSON_ALLOW_NUL, &e);
        free(path);
        if (!root) { CHECK(0, "%s: %s", vname, e.text); continue; }
        const char *key;
        json_t *val;
        json_object_foreach(json_object_get(v, "set"), key, val) json_object_set(root, key, val);
        char tmp[128];
        snprintf(tmp, sizeof tmp, "/tmp/mk_tok_variant_%d.json", (int)getpid());
        int rc = json_dump_file(root, tmp, JSON_COMPACT);
        json_decref(root);
        if (rc) { CHECK(0, "%s: cannot write %s", vname, tmp); continue; }
        mk_tokenizer *tok = NULL;
        mk_status s = mk_tokenizer_load(tmp, &tok);
        unlink(tmp);
        if (s) { CHECK(0, "%s: load failed: %s", vname, mk_last_error()); continue; }
        check_fixture(vname, tok);
    }
    json_decref(vars);
}

static void test_qwen3(void) { check_tokenizer(0); }
static void test_deepseek_v3(void) { check_tokenizer(1); }
static void test_gptoss(void) { check_tokenizer(2); }
static void test_llama2(void) { check_tokenizer(3); }
static void test_olmoe(void) { check_tokenizer(4); }

/* ---- the same tokenizers through GGUF metadata ------------------------------------------------- */

/* Writes the tokenizer of src (a model directory or a tokenizer.json) as GGUF metadata, padded to
 * `pad` ids past its vocabulary, into path; false (with a message) on failure. */
static bool write_tok_gguf(const char *src, const char *path, size_t pad, mk_tok_gguf_info *info) {
    mk_tokenizer *t = NULL;
    if (mk_tokenizer_load(src, &t)) { CHECK(0, "load %s: %s", src, mk_last_error()); return false; }
    int64_t n_vocab = (int64_t)(mk_tokenizer_vocab_size(t) + pad);
    mk_tokenizer_free(t);
    mk_gguf_writer *w = NULL;
    mk_status s = mk_gguf_writer_new(&w, path);
    if (!s) s = mk_gguf_w_str(w, "general.architecture", "qwen3moe");
    if (!s) s = mk_tokenizer_gguf_write(w, src, n_vocab, info);
    if (!s) s = mk_gguf_writer_finish(w);
    mk_gguf_writer_free(w);
    CHECK(s == MK_OK, "write %s: %s", path, mk_last_error());
    return s == MK_OK;
}

/* Each real tokenizer written into GGUF metadata (llama.cpp's keys) and read back gives the HF
 * ids, decodes and stream decodes of its fixture: the whole fixture again, through the GGUF. */
static void test_gguf_roundtrip(void) {
    static const char *const srcs[N_TOKS] = {
        "tokenizers/qwen3", "tokenizers/deepseek_v3", "tokenizers/gptoss",
        "tokenizers/llama2", "tokenizers/olmoe/tokenizer.json"};
    static const char *const want_model[N_TOKS] = {"gpt2", "gpt2", "gpt2", "llama", "gpt2"};
    static const char *const want_pre[N_TOKS] = {"qwen2", "deepseek-v3", "gpt-4o", "", "olmo"};
    char path[128];
    snprintf(path, sizeof path, "/tmp/mk_tok_gguf_%d.gguf", (int)getpid());
    for (size_t ti = 0; ti < N_TOKS; ti++) {
        char *src = data_path(srcs[ti]);
        mk_tok_gguf_info info;
        bool ok = write_tok_gguf(src, path, 7, &info);
        free(src);
        if (!ok) continue;
        printf("  %-12s GGUF %s/%s: %zu tokens, %zu merges, %zu chat templates%s%s\n", TOKS[ti].name, info.model, info.pre,
               info.n_tokens, info.n_merges, info.n_templates, info.warning[0] ? "; warning: " : "", info.warning);
        CHECK(!strcmp(info.model, want_model[ti]) && !strcmp(info.pre, want_pre[ti]), "%s: written as %s/%s", TOKS[ti].name,
              info.model, info.pre);
        CHECK(!info.warning[0], "%s: warning: %s", TOKS[ti].name, info.warning);
        mk_tokenizer *tok = NULL;
        mk_status s = mk_tokenizer_load(path, &tok);
        if (s) { CHECK(0, "%s: GGUF load: %s", TOKS[ti].name, mk_last_error()); continue; }
        check_fixture(TOKS[ti].name, tok);
    }
    unlink(path);
}

/* A tiny gpt2 vocabulary in GGUF metadata with one thing wrong (case), for the error tests. */
enum {
    BAD_NONE, BAD_TOKENS_I32, BAD_TOKENS_STR, BAD_NO_TOKENS, BAD_TYPES_COUNT, BAD_TYPES_TYPE, BAD_TYPES_VALUE, BAD_MERGE_UNKNOWN,
    BAD_MERGE_RESULT, BAD_MERGE_NOSPACE, BAD_NO_MERGES, BAD_MERGES_I32, BAD_BOS_RANGE, BAD_BOS_STR, BAD_ADD_BOS, BAD_ADD_BOS_U32,
    BAD_DUP, BAD_ALL_UNUSED, BAD_MODEL, BAD_MODEL_NONE, BAD_NO_MODEL, BAD_PRE, BAD_SCORES_COUNT, BAD_SCORES_TYPE, BAD_N
};
static mk_status write_bad_gguf(const char *path, int bad) {
    const bool spm = bad == BAD_SCORES_COUNT || bad == BAD_SCORES_TYPE;
    const char *toks[] = {"a", "b", "ab", bad == BAD_DUP ? "a" : "<|end|>"};
    const int32_t types[] = {1, 1, 1, bad == BAD_TYPES_VALUE ? 9 : 3}, unused[] = {5, 5, 5, 5}, ints[] = {1, 2, 3, 4};
    const char *merges[] = {bad == BAD_MERGE_UNKNOWN ? "a c" : bad == BAD_MERGE_NOSPACE ? "ab" : bad == BAD_MERGE_RESULT ? "b a" : "a b"};
    const float scores[] = {0, 0, -1};
    const char *junk[] = {"x", "y", "z"};
    mk_gguf_writer *w = NULL;
    mk_status st = mk_gguf_writer_new(&w, path);
#define W(e) do { if (!st) st = (e); } while (0)
    W(mk_gguf_w_str(w, "general.architecture", "qwen3moe"));
    if (bad != BAD_NO_MODEL)
        W(mk_gguf_w_str(w, "tokenizer.ggml.model", spm ? "llama" : bad == BAD_MODEL ? "bert" : bad == BAD_MODEL_NONE ? "none" : "gpt2"));
    if (!spm) W(mk_gguf_w_str(w, "tokenizer.ggml.pre", bad == BAD_PRE ? "falcon" : "gpt-2"));
    if (bad == BAD_TOKENS_I32) W(mk_gguf_w_arr_i32(w, "tokenizer.ggml.tokens", ints, 4));
    else if (bad == BAD_TOKENS_STR) W(mk_gguf_w_str(w, "tokenizer.ggml.tokens", "a"));
    else if (bad != BAD_NO_TOKENS) W(mk_gguf_w_arr_str(w, "tokenizer.ggml.tokens", toks, 4));
    if (bad == BAD_TYPES_TYPE) W(mk_gguf_w_arr_str(w, "tokenizer.ggml.token_type", toks, 4));
    else W(mk_gguf_w_arr_i32(w, "tokenizer.ggml.token_type", bad == BAD_ALL_UNUSED ? unused : types, bad == BAD_TYPES_COUNT ? 3 : 4));
    if (bad == BAD_MERGES_I32) W(mk_gguf_w_arr_i32(w, "tokenizer.ggml.merges", ints, 1));
    else if (bad != BAD_NO_MERGES && !spm) W(mk_gguf_w_arr_str(w, "tokenizer.ggml.merges", merges, 1));
    if (bad == BAD_SCORES_COUNT) W(mk_gguf_w_arr_f32(w, "tokenizer.ggml.scores", scores, 3));
    if (bad == BAD_SCORES_TYPE) W(mk_gguf_w_arr_str(w, "tokenizer.ggml.scores", junk, 3));
    if (bad == BAD_BOS_STR) W(mk_gguf_w_str(w, "tokenizer.ggml.bos_token_id", "3"));
    else if (bad != BAD_ADD_BOS) W(mk_gguf_w_u32(w, "tokenizer.ggml.bos_token_id", bad == BAD_BOS_RANGE ? 4 : 3));
    W(mk_gguf_w_u32(w, "tokenizer.ggml.eos_token_id", 3));
    if (bad == BAD_ADD_BOS_U32) W(mk_gguf_w_u32(w, "tokenizer.ggml.add_bos_token", 1));
    else W(mk_gguf_w_bool(w, "tokenizer.ggml.add_bos_token", bad == BAD_ADD_BOS));
    W(mk_gguf_writer_finish(w));
#undef W
    mk_gguf_writer_free(w);
    return st;
}

/* Malformed tokenizer metadata: a one-line error naming the file and the key, never a crash. */
static void test_gguf_errors(void) {
    static const struct { int bad; mk_status st; const char *msg; } cases[] = {
        {BAD_TOKENS_I32, MK_ERR_FORMAT, "tokenizer.ggml.tokens: expected an array of string, not an array of i32"},
        {BAD_TOKENS_STR, MK_ERR_FORMAT, "tokenizer.ggml.tokens: expected an array of string, not a string"},
        {BAD_NO_TOKENS, MK_ERR_FORMAT, "metadata key 'tokenizer.ggml.tokens' is missing"},
        {BAD_TYPES_COUNT, MK_ERR_FORMAT, "tokenizer.ggml.token_type: 3 entries, but tokenizer.ggml.tokens has 4"},
        {BAD_TYPES_TYPE, MK_ERR_FORMAT, "tokenizer.ggml.token_type: expected an array of i32, not an array of string"},
        {BAD_TYPES_VALUE, MK_ERR_FORMAT, "tokenizer.ggml.token_type: entry 3 is 9, not a token type (1..6)"},
        {BAD_MERGE_UNKNOWN, MK_ERR_FORMAT, "tokenizer.ggml.merges[0]: token 'c' is not in tokenizer.ggml.tokens"},
        {BAD_MERGE_RESULT, MK_ERR_FORMAT, "tokenizer.ggml.merges[0]: merged token 'ba' is not in tokenizer.ggml.tokens"},
        {BAD_MERGE_NOSPACE, MK_ERR_FORMAT, "tokenizer.ggml.merges[0]: expected two tokens separated by a space"},
        {BAD_NO_MERGES, MK_ERR_FORMAT, "metadata key 'tokenizer.ggml.merges' is missing"},
        {BAD_MERGES_I32, MK_ERR_FORMAT, "tokenizer.ggml.merges: expected an array of string, not an array of i32"},
        {BAD_BOS_RANGE, MK_ERR_FORMAT, "tokenizer.ggml.bos_token_id: token id 4 is out of range (tokenizer.ggml.tokens has 4 entries)"},
        {BAD_BOS_STR, MK_ERR_FORMAT, "metadata key 'tokenizer.ggml.bos_token_id' must be an integer, not string"},
        {BAD_ADD_BOS, MK_ERR_FORMAT, "tokenizer.ggml.add_bos_token: true, but there is no tokenizer.ggml.bos_token_id"},
        {BAD_ADD_BOS_U32, MK_ERR_FORMAT, "metadata key 'tokenizer.ggml.add_bos_token' must be a bool, not u32"},
        {BAD_DUP, MK_ERR_FORMAT, "tokenizer.ggml.tokens: entries 0 and 3 are the same token 'a'"},
        {BAD_ALL_UNUSED, MK_ERR_FORMAT, "tokenizer.ggml.tokens: no token in use (all 4 are unused or empty)"},
        {BAD_MODEL, MK_ERR_UNSUPPORTED, "tokenizer.ggml.model 'bert' is not supported (only gpt2 and llama)"},
        {BAD_MODEL_NONE, MK_ERR_MISSING, "no tokenizer in this GGUF file (tokenizer.ggml.model is 'none')"},
        {BAD_NO_MODEL, MK_ERR_MISSING, "no tokenizer in this GGUF file (metadata key 'tokenizer.ggml.model' is missing)"},
        {BAD_PRE, MK_ERR_UNSUPPORTED, "tokenizer.ggml.pre 'falcon' is not supported"},
        {BAD_SCORES_COUNT, MK_ERR_FORMAT, "tokenizer.ggml.scores: 3 entries, but tokenizer.ggml.tokens has 4"},
        {BAD_SCORES_TYPE, MK_ERR_FORMAT, "tokenizer.ggml.scores: expected an array of f32, not an array of string"},
    };
    char path[128];
    snprintf(path, sizeof path, "/tmp/mk_tok_bad_%d.gguf", (int)getpid());
    /* the intact file loads and encodes: "ab" is one merged token, "<|end|>" a control token */
    REQUIRE(write_bad_gguf(path, BAD_NONE) == MK_OK, "%s", mk_last_error());
    mk_tokenizer *t = NULL;
    REQUIRE(mk_tokenizer_load(path, &t) == MK_OK, "intact file: %s", mk_last_error());
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(mk_tokenizer_encode(t, "abab<|end|>", 11, true, &ids, &n) == MK_OK && n == 3 && ids[0] == 2 && ids[1] == 2 && ids[2] == 3,
          "encode: %zu ids", n);
    CHECK(mk_tokenizer_is_special(t, 3) && mk_tokenizer_bos_id(t) == 3 && !mk_tokenizer_add_bos(t), "special/bos");
    free(ids);
    mk_tokenizer_free(t);
    CHECK(mk_tokenizer_present(path), "present");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (write_bad_gguf(path, cases[i].bad)) { CHECK(0, "case %d: write: %s", cases[i].bad, mk_last_error()); continue; }
        t = (mk_tokenizer *)1;
        mk_status s = mk_tokenizer_load(path, &t);
        const char *e = mk_last_error();
        CHECK(s == cases[i].st && t == NULL, "case %d: status %s, want %s (%s)", cases[i].bad, mk_status_name(s), mk_status_name(cases[i].st), e);
        CHECK(strstr(e, path) == e && strstr(e, cases[i].msg) && !strchr(e, '\n'), "case %d: message '%s', want '%s: ...%s'", cases[i].bad,
              e, path, cases[i].msg);
        if (cases[i].bad == BAD_MODEL_NONE || cases[i].bad == BAD_NO_MODEL) CHECK(!mk_tokenizer_present(path), "present without a tokenizer");
    }
    unlink(path);
}

/* ---- API details -------------------------------------------------------------------------- */

static mk_tokenizer *load_rel(const char *rel) {
    char *p = data_path(rel);
    mk_tokenizer *t = NULL;
    if (mk_tokenizer_load(p, &t)) fprintf(stderr, "  load %s: %s\n", p, mk_last_error());
    free(p);
    return t;
}

static void test_lookups_and_config(void) {
    mk_tokenizer *q = load_rel("tokenizers/qwen3"); /* a directory */
    REQUIRE(q, "qwen3 dir load");
    CHECK(mk_tokenizer_vocab_size(q) == 151669, "qwen3 vocab size %zu", mk_tokenizer_vocab_size(q));
    CHECK(mk_tokenizer_token_to_id(q, "<|im_end|>", 10) == 151645, "im_end id");
    CHECK(mk_tokenizer_token_to_id(q, "Ġthe", strlen("Ġthe")) == 279, "Ġthe id %d",
          mk_tokenizer_token_to_id(q, "Ġthe", strlen("Ġthe")));
    CHECK(mk_tokenizer_token_to_id(q, "no such token!!", 15) == -1, "absent token");
    size_t l = 0;
    const char *t = mk_tokenizer_id_to_token(q, 151644, &l);
    CHECK(t && l == 12 && !memcmp(t, "<|im_start|>", 12), "id 151644 -> %s", t ? t : "(null)");
    CHECK(mk_tokenizer_id_to_token(q, -1, NULL) == NULL && mk_tokenizer_id_to_token(q, 1 << 30, NULL) == NULL, "range");
    CHECK(mk_tokenizer_is_special(q, 151645) && !mk_tokenizer_is_special(q, 279), "is_special");
    CHECK(mk_tokenizer_eos_id(q) == 151645, "qwen3 eos %d", mk_tokenizer_eos_id(q));
    CHECK(mk_tokenizer_bos_id(q) == -1 && !mk_tokenizer_add_bos(q), "qwen3 has no bos");
    mk_tokenizer_free(q);
    mk_tokenizer *m = load_rel("tokenizers/llama2/tokenizer.json");
    REQUIRE(m, "llama2 load");
    CHECK(mk_tokenizer_bos_id(m) == 1 && mk_tokenizer_eos_id(m) == 2 && mk_tokenizer_add_bos(m), "llama2 bos/eos");
    int32_t *ids;
    size_t n;
    CHECK(mk_tokenizer_encode(m, "", 0, true, &ids, &n) == MK_OK && n == 1 && ids[0] == 1, "empty text -> BOS");
    free(ids);
    mk_tokenizer_free(m);
    mk_tokenizer *d = load_rel("tokenizers/deepseek_v3");
    REQUIRE(d, "deepseek load");
    CHECK(mk_tokenizer_bos_id(d) == 0 && mk_tokenizer_eos_id(d) == 1 && mk_tokenizer_add_bos(d), "deepseek bos/eos");
    mk_tokenizer_free(d);
}

/* Streaming: text held back until a multi-byte character is complete. */
static void test_stream_partial_utf8(void) {
    mk_tokenizer *q = load_rel("tokenizers/qwen3/tokenizer.json");
    REQUIRE(q, "qwen3 load");
    /* byte-level tokens for the three bytes of U+4E2D, one at a time */
    const char *bytes[3] = {"\xC3\xA4", "\xC2\xB8", "\xC5\x83"}; /* mapped chars of E4 B8 AD (0xAD -> U+0143) */
    mk_tokenizer_stream *st;
    REQUIRE(mk_tokenizer_stream_new(q, false, &st) == MK_OK, "stream new");
    size_t total = 0;
    for (int i = 0; i < 3; i++) {
        int32_t id = mk_tokenizer_token_to_id(q, bytes[i], 2);
        CHECK(id >= 0, "byte token %d", i);
        const char *t;
        size_t tl;
        CHECK(mk_tokenizer_stream_feed(st, id, &t, &tl) == MK_OK, "feed");
        if (i < 2) CHECK(tl == 0, "partial UTF-8 emitted at byte %d", i);
        else CHECK(tl == 3 && !memcmp(t, "\xE4\xB8\xAD", 3), "complete char not emitted (%zu bytes)", tl);
        total += tl;
    }
    const char *t;
    size_t tl;
    CHECK(mk_tokenizer_stream_flush(st, &t, &tl) == MK_OK && tl == 0, "flush after complete text");
    /* an incomplete tail comes out as U+FFFD at the flush */
    int32_t id = mk_tokenizer_token_to_id(q, bytes[0], 2);
    CHECK(mk_tokenizer_stream_feed(st, id, &t, &tl) == MK_OK && tl == 0, "held back");
    CHECK(mk_tokenizer_stream_flush(st, &t, &tl) == MK_OK && tl == 3 && !memcmp(t, "\xEF\xBF\xBD", 3), "flush tail");
    mk_tokenizer_stream_free(st);
    mk_tokenizer_free(q);
}

/* ---- errors ------------------------------------------------------------------------------------- */

static char tmpdir[64];

static char *write_tmp(const char *name, const char *content, size_t len) {
    char *p = malloc(strlen(tmpdir) + strlen(name) + 2);
    sprintf(p, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    fwrite(content, 1, len, f);
    fclose(f);
    return p;
}

static void expect_load_error(const char *name, const char *json, mk_status want, const char *needle) {
    char *p = write_tmp(name, json, strlen(json));
    mk_tokenizer *t = (mk_tokenizer *)1;
    mk_status s = mk_tokenizer_load(p, &t);
    CHECK(s == want, "%s: status %s, want %s (%s)", name, mk_status_name(s), mk_status_name(want), mk_last_error());
    CHECK(t == NULL, "%s: *out not NULL on error", name);
    CHECK(strstr(mk_last_error(), name) != NULL, "%s: message does not name the file: %s", name, mk_last_error());
    CHECK(strstr(mk_last_error(), needle) != NULL, "%s: message lacks '%s': %s", name, needle, mk_last_error());
    CHECK(strchr(mk_last_error(), '\n') == NULL, "%s: message has several lines", name);
    unlink(p);
    free(p);
}

#define MIN_MODEL "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}"

static void test_errors(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mk_tok_test_%d", (int)getpid());
    char cmd[128];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", tmpdir);
    REQUIRE(system(cmd) == 0, "mkdir");
    expect_load_error("bad1.json", "{\"model\": {\"type\": \"BPE\", ", MK_ERR_FORMAT, "malformed JSON");
    expect_load_error("bad2.json", "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", MK_ERR_UNSUPPORTED, "model.type");
    expect_load_error("bad3.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": [1], \"merges\": []}}", MK_ERR_FORMAT, "model.vocab");
    expect_load_error("bad4.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a c\"]}}",
                      MK_ERR_FORMAT, "model.merges[0]");
    expect_load_error("bad5.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}}", MK_ERR_FORMAT,
                      "model.vocab");
    expect_load_error("bad6.json", "{\"normalizer\": {\"type\": \"Precompiled\"}, " MIN_MODEL "}", MK_ERR_UNSUPPORTED,
                      "normalizer.type");
    expect_load_error("bad7.json", "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, "
                      "\"behavior\": \"Isolated\", \"invert\": false}, " MIN_MODEL "}", MK_ERR_FORMAT, "pre_tokenizer.pattern");
    expect_load_error("bad8.json", "{\"added_tokens\": [{\"id\": \"x\", \"content\": \"<s>\"}], " MIN_MODEL "}",
                      MK_ERR_FORMAT, "added_tokens[0].id");
    expect_load_error("bad9.json", "[1, 2, 3]", MK_ERR_FORMAT, "top level");
    expect_load_error("bad10.json", "{\"decoder\": {\"type\": \"CTC\"}, " MIN_MODEL "}", MK_ERR_UNSUPPORTED, "decoder.type");
    expect_load_error("bad11.json", "{}", MK_ERR_FORMAT, "model");
    /* a truncated real file */
    char *src = data_path("tokenizers/llama2/tokenizer.json");
    FILE *f = fopen(src, "rb");
    free(src);
    CHECK(f != NULL, "cannot read the llama2 tokenizer.json from the test data");
    if (f) {
        char buf[4096];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        expect_load_error("truncated.json", buf, MK_ERR_FORMAT, "malformed JSON");
    }
    mk_tokenizer *t = (mk_tokenizer *)1;
    CHECK(mk_tokenizer_load("/nonexistent/tok", &t) == MK_ERR_IO && t == NULL, "missing path: %s", mk_last_error());
    CHECK(mk_tokenizer_load(tmpdir, &t) == MK_ERR_MISSING, "dir without tokenizer.json: %s", mk_last_error());
    CHECK(mk_tokenizer_load(NULL, &t) == MK_ERR_ARG, "NULL path");
    /* a minimal valid tokenizer works */
    const char *min = "{" MIN_MODEL "}";
    char *p = write_tmp("min.json", min, strlen(min));
    REQUIRE(mk_tokenizer_load(p, &t) == MK_OK, "minimal tokenizer: %s", mk_last_error());
    int32_t *ids;
    size_t n;
    CHECK(mk_tokenizer_encode(t, "abba", 4, false, &ids, &n) == MK_OK && n == 3 && ids[0] == 2 && ids[1] == 1 && ids[2] == 0,
          "minimal encode");
    free(ids);
    /* invalid UTF-8 input */
    const char *bad_inputs[] = {"ab\xFF", "\xC3", "\xE4\xB8", "\xED\xA0\x80", "\xC0\xAF", "\xF4\x90\x80\x80", "a\x80"};
    for (size_t i = 0; i < sizeof bad_inputs / sizeof *bad_inputs; i++) {
        ids = (int32_t *)1;
        mk_status s = mk_tokenizer_encode(t, bad_inputs[i], strlen(bad_inputs[i]), false, &ids, &n);
        CHECK(s == MK_ERR_ARG && ids == NULL && n == 0, "invalid UTF-8 %zu accepted", i);
        CHECK(strstr(mk_last_error(), "UTF-8") != NULL, "message: %s", mk_last_error());
    }
    CHECK(mk_tokenizer_encode(t, NULL, 0, false, &ids, &n) == MK_OK && n == 0, "empty NULL text");
    free(ids);
    char *out;
    int32_t odd[] = {-5, 2, 99999};
    CHECK(mk_tokenizer_decode(t, odd, 3, false, &out, NULL) == MK_OK && !strcmp(out, "ab"), "decode skips unknown ids");
    free(out);
    mk_tokenizer_free(t);
    mk_tokenizer_free(NULL);
    mk_tokenizer_stream_free(NULL);
    unlink(p);
    free(p);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    CHECK(system(cmd) == 0, "rm");
}

/* Robustness: mutated tokenizer.json files load or fail cleanly; random text and random ids
 * (including out-of-range ones) encode, decode and stream without crashing (run under ASan). */
static uint64_t rng_state = 88172645463325252ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)rng_state;
}

static void test_fuzz(void) {
    const char *base = "{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFKC\"}, "
                       "{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"_\"}]}, "
                       "\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\p{L}+|\\\\s+\"}, "
                       "\"behavior\": \"MergedWithNext\", \"invert\": false}, "
                       "\"added_tokens\": [{\"id\": 3, \"content\": \"<x>\", \"special\": true, \"normalized\": false, "
                       "\"lstrip\": true, \"rstrip\": true, \"single_word\": false}], "
                       "\"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, "
                       "{\"type\": \"Strip\", \"content\": \"_\", \"start\": 1, \"stop\": 1}]}, "
                       "\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": true, \"byte_fallback\": true, "
                       "\"vocab\": {\"<unk>\": 0, \"a\": 1, \"b\": 2, \"ab\": 4, \"<0x41>\": 5, \"_\": 6}, \"merges\": [\"a b\"]}}";
    size_t bl = strlen(base);
    char *buf = malloc(bl + 1);
    char path[128];
    snprintf(path, sizeof path, "/tmp/mk_tok_fuzz_%d.json", (int)getpid());
    int loaded = 0;
    for (int it = 0; it < 400; it++) {
        memcpy(buf, base, bl + 1);
        int nmut = it == 0 ? 0 : 1 + (int)(rnd() % 4);
        for (int k = 0; k < nmut; k++) buf[rnd() % bl] = "{}[]\":,0123456789abtrufnl \\"[rnd() % 28];
        FILE *f = fopen(path, "wb");
        fwrite(buf, 1, bl, f);
        fclose(f);
        mk_tokenizer *t = NULL;
        if (mk_tokenizer_load(path, &t) != MK_OK) {
            CHECK(t == NULL && strchr(mk_last_error(), '\n') == NULL && mk_last_error()[0], "bad failure");
            continue;
        }
        loaded++;
        const char *txt[] = {"ab a<x> b  AZ\xc3\xa9\xef\xac\x81 \xe4\xb8\xad!", "", "<x><x>", "  <x>  "};
        for (size_t j = 0; j < 4; j++) {
            int32_t *ids;
            size_t n;
            if (mk_tokenizer_encode(t, txt[j], strlen(txt[j]), j & 1, &ids, &n) == MK_OK) {
                char *out;
                if (mk_tokenizer_decode(t, ids, n, j & 2, &out, NULL) == MK_OK) free(out);
                free(ids);
            }
        }
        mk_tokenizer_free(t);
    }
    CHECK(loaded > 0, "the unmutated file did not load: %s", mk_last_error());
    unlink(path);
    free(buf);
    /* random valid text and random ids on a real tokenizer */
    char *p = data_path(TOKS[3].path);
    mk_tokenizer *t = NULL;
    mk_status s = mk_tokenizer_load(p, &t);
    free(p);
    REQUIRE(s == MK_OK, "load %s: %s", TOKS[3].path, mk_last_error());
    static const int32_t cps[] = {'a', ' ', '\n', 0xE9, 0x301, 0x4E2D, 0x1F600, 0x2581, '<', 's', '>', 0xA0, '0', 0x10FFFF};
    for (int it = 0; it < 200; it++) {
        char txt[256];
        size_t l = 0;
        int n = (int)(rnd() % 40);
        for (int k = 0; k < n; k++) {
            int32_t c = cps[rnd() % (sizeof cps / sizeof *cps)];
            if (c < 0x80) txt[l++] = (char)c;
            else if (c < 0x800) { txt[l++] = (char)(0xC0 | (c >> 6)); txt[l++] = (char)(0x80 | (c & 0x3F)); }
            else if (c < 0x10000) {
                txt[l++] = (char)(0xE0 | (c >> 12)); txt[l++] = (char)(0x80 | ((c >> 6) & 0x3F)); txt[l++] = (char)(0x80 | (c & 0x3F));
            } else {
                txt[l++] = (char)(0xF0 | (c >> 18)); txt[l++] = (char)(0x80 | ((c >> 12) & 0x3F));
                txt[l++] = (char)(0x80 | ((c >> 6) & 0x3F)); txt[l++] = (char)(0x80 | (c & 0x3F));
            }
        }
        int32_t *ids;
        size_t ni;
        CHECK(mk_tokenizer_encode(t, txt, l, it & 1, &ids, &ni) == MK_OK, "encode random text: %s", mk_last_error());
        free(ids);
        int32_t rid[32];
        for (int k = 0; k < 32; k++) rid[k] = (int32_t)(rnd() % 33000) - 500;
        char *out;
        size_t ol, sl;
        CHECK(mk_tokenizer_decode(t, rid, 32, it & 2, &out, &ol) == MK_OK, "decode random ids");
        char *st = stream_decode(t, rid, 32, it & 2, &sl);
        CHECK(st && sl == ol && !memcmp(st, out, ol), "stream differs on random ids");
        free(st);
        free(out);
    }
    mk_tokenizer_free(t);
}

/* Concurrent encodes of one tokenizer give the same ids as sequential ones. */
typedef struct { const mk_tokenizer *tok; size_t bad; } thr_arg;

static void *thr_encode(void *p) {
    thr_arg *a = p;
    for (int rep = 0; rep < 2; rep++)
        for (size_t i = 0; i < n_texts; i += 3) {
            int32_t *x, *y;
            size_t nx, ny;
            const char *t = json_string_value(texts[i]);
            size_t tl = json_string_length(texts[i]);
            if (mk_tokenizer_encode(a->tok, t, tl, true, &x, &nx)) { a->bad++; continue; }
            if (mk_tokenizer_encode(a->tok, t, tl, true, &y, &ny)) { a->bad++; free(x); continue; }
            if (nx != ny || (nx && memcmp(x, y, nx * sizeof *x))) a->bad++;
            free(x);
            free(y);
        }
    return NULL;
}

static void test_threads(void) {
    mk_tokenizer *q = load_rel("tokenizers/qwen3/tokenizer.json");
    REQUIRE(q, "qwen3 load");
    pthread_t th[4];
    thr_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thr_arg){q, 0};
        REQUIRE(pthread_create(&th[i], NULL, thr_encode, &args[i]) == 0, "pthread_create");
    }
    size_t bad = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        bad += args[i].bad;
    }
    CHECK(bad == 0, "%zu concurrent encodes differ or failed", bad);
    mk_tokenizer_free(q);
}

int main(void) {
    texts = read_jsonl(FIX "/texts.jsonl", &n_texts);
    if (!texts) {
        printf("cannot read " FIX "/texts.jsonl (run from the repository root)\n");
        return TEST_SUMMARY("test_tokenizer") + 1;
    }
    RUN(test_qwen3);
    RUN(test_deepseek_v3);
    RUN(test_gptoss);
    RUN(test_llama2);
    RUN(test_olmoe);
    RUN(test_variants);
    RUN(test_gguf_roundtrip);
    printf("  all tokenizers: %zu cases, ids identical %zu, decode identical %zu, stream %zu\n", total_cases,
           total_ids_ok, total_dec_ok, total_stream_ok);
    RUN(test_lookups_and_config);
    RUN(test_stream_partial_utf8);
    RUN(test_threads);
    RUN(test_errors);
    RUN(test_gguf_errors);
    RUN(test_fuzz);
    free_jsonl(texts, n_texts);
    return TEST_SUMMARY("test_tokenizer");
}
