/* Chat templates: byte-exact rendering against transformers' apply_chat_template (fixtures from
 * tools/gen_chat_fixtures.py), unit tests of the Jinja interpreter, and error cases. */
#include "base/base.h"
#include "format/gguf.h"
#include "format/gguf_write.h"
#include "moekit/chat.h"
#include "mk_test.h"
#include "tokenizer/tok_gguf.h"

#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- helpers */

/* Renders src with messages (JSON) and extra vars; returns a malloc'd string or NULL (error in
 * mk_last_error()). *st receives the status. */
static char *render_src(const char *src, const char *tokens, const char *msgs, const char *extra, bool agp,
                        mk_status *st) {
    mk_chat_template *t = NULL;
    char *out = NULL;
    mk_status s = mk_chat_template_new(src, "test", tokens, &t);
    if (!s) s = mk_chat_template_render_json(t, msgs ? msgs : "[]", extra, agp, &out);
    mk_chat_template_free(t);
    if (st) *st = s;
    return s ? NULL : out;
}

/* Checks that src renders (with no messages, extra vars as given) to want. */
#define EXPECT(src, extra, want)                                                                           \
    do {                                                                                                   \
        mk_status st_;                                                                                     \
        char *got_ = render_src(src, NULL, NULL, extra, false, &st_);                                      \
        CHECK(got_ && strcmp(got_, want) == 0, "template %s\n    want [%s]\n    got  [%s] (%s)", #src, want, \
              got_ ? got_ : "(error)", got_ ? "" : mk_last_error());                                       \
        free(got_);                                                                                        \
    } while (0)

/* Checks that src fails with status want_st and a message containing frag. */
#define EXPECT_ERR(src, extra, want_st, frag)                                                              \
    do {                                                                                                   \
        mk_status st_;                                                                                     \
        char *got_ = render_src(src, NULL, NULL, extra, false, &st_);                                      \
        CHECK(!got_ && st_ == (want_st) && strstr(mk_last_error(), frag), "template %s: status %s, msg '%s'", \
              #src, mk_status_name(st_), got_ ? got_ : mk_last_error());                                   \
        free(got_);                                                                                        \
    } while (0)

/* ---------------------------------------------------------------- fixtures */

static int g_cases, g_exact;

static void run_fixture(const char *name, const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "tests/fixtures/chat/%s.jsonl", name);
    char *text = NULL;
    size_t len = 0;
    mk_status st = mk_read_file(path, &text, &len);
    REQUIRE(st == MK_OK, "%s: %s", path, mk_last_error());
    mk_chat_template *t = NULL;
    st = mk_chat_template_load(dir, NULL, &t);
    if (st) {
        free(text);
        REQUIRE(st == MK_OK, "load %s: %s", dir, mk_last_error());
    }
    int n = 0, ok = 0;
    char *line = text;
    while (line && *line) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        json_error_t je;
        json_t *c = json_loads(line, 0, &je);
        CHECK(c != NULL, "%s:%d: bad fixture line: %s", path, n + 1, je.text);
        if (c) {
            char *msgs = json_dumps(json_object_get(c, "messages"), JSON_COMPACT | JSON_PRESERVE_ORDER);
            char *kw = json_dumps(json_object_get(c, "kwargs"), JSON_COMPACT | JSON_PRESERVE_ORDER);
            bool agp = json_is_true(json_object_get(c, "add_generation_prompt"));
            json_t *exp = json_object_get(c, "expected");
            char *out = NULL;
            st = mk_chat_template_render_json(t, msgs, kw, agp, &out);
            n++;
            if (exp) {
                const char *want = json_string_value(exp);
                size_t wl = json_string_length(exp);
                if (st) {
                    CHECK(0, "%s case %d: render failed: %s", name, n, mk_last_error());
                } else if (strlen(out) != wl || memcmp(out, want, wl) != 0) {
                    size_t i = 0, gl = strlen(out);
                    while (i < wl && i < gl && out[i] == want[i]) i++;
                    size_t from = i > 40 ? i - 40 : 0;
                    CHECK(0, "%s case %d: differs at byte %zu (len want %zu got %zu)\n    want ...[%.80s]\n    got  ...[%.80s]",
                          name, n, i, wl, gl, want + from, out + from);
                } else {
                    ok++;
                }
            } else {
                /* transformers raised: moekit must fail with a one-line message naming the template */
                if (st == MK_OK) CHECK(0, "%s case %d: expected an error (%s), rendered", name, n,
                                       json_string_value(json_object_get(c, "error")));
                else if (strchr(mk_last_error(), '\n')) CHECK(0, "%s case %d: multi-line error", name, n);
                else ok++;
            }
            free(out);
            free(msgs);
            free(kw);
            json_decref(c);
        }
        line = nl ? nl + 1 : NULL;
    }
    printf("     %s: %d/%d cases byte-identical\n", name, ok, n);
    g_cases += n;
    g_exact += ok;
    CHECK(n >= 20, "%s: only %d cases", name, n);
    mk_chat_template_free(t);
    free(text);
}

static void real_dir(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/tokenizers/%s", mk_t_data(), name);
}

static void test_fixture_qwen3(void) {
    char d[512];
    real_dir(d, sizeof d, "qwen3");
    run_fixture("qwen3", d);
}
static void test_fixture_deepseek_v3(void) {
    char d[512];
    real_dir(d, sizeof d, "deepseek_v3");
    run_fixture("deepseek_v3", d);
}
/* gpt-oss's harmony template (chat_template.jinja beside the tokenizer: tests/data/SOURCES.md), its
 * system message dated by strftime_now() at the fixtures' fixed clock */
static void test_fixture_gptoss(void) {
    char d[512];
    real_dir(d, sizeof d, "gptoss");
    setenv("SOURCE_DATE_EPOCH", "1767225600", 1);   /* tools/gen_chat_fixtures.py FIXED_EPOCH */
    run_fixture("gptoss", d);
    unsetenv("SOURCE_DATE_EPOCH");
}
static void test_fixture_llama2_style(void) { run_fixture("llama2_style", "tests/fixtures/chat/llama2_style"); }
static void test_fixture_features(void) { run_fixture("features", "tests/fixtures/chat/features"); }

/* ---------------------------------------------------------------- GGUF */

/* Writes model_dir's tokenizer and chat templates as GGUF metadata (what moekit quantize writes)
 * into path; n_vocab 0: the tokenizer's own size. */
static bool write_gguf(const char *model_dir, const char *path, mk_tok_gguf_info *info) {
    int64_t n_vocab = 16;
    mk_tokenizer *tok = NULL;
    if (mk_tokenizer_present(model_dir)) {
        if (mk_tokenizer_load(model_dir, &tok)) { CHECK(0, "%s: %s", model_dir, mk_last_error()); return false; }
        n_vocab = (int64_t)mk_tokenizer_vocab_size(tok);
        mk_tokenizer_free(tok);
    }
    mk_gguf_writer *w = NULL;
    mk_status st = mk_gguf_writer_new(&w, path);
    if (!st) st = mk_gguf_w_str(w, "general.architecture", "qwen3moe");
    if (!st) st = mk_tokenizer_gguf_write(w, model_dir, n_vocab, info);
    if (!st) st = mk_gguf_writer_finish(w);
    mk_gguf_writer_free(w);
    CHECK(st == MK_OK, "write %s: %s", path, mk_last_error());
    return st == MK_OK;
}

static const char *const SPECIAL_TOKENS[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                             "pad_token", "cls_token", "mask_token"};

/* The real templates stored in a GGUF file render byte-identically to the fixtures (the
 * special-token variables come from the token ids). */
static void test_fixture_gguf(void) {
    const char *names[] = {"qwen3", "deepseek_v3"};
    char path[64];
    snprintf(path, sizeof path, "/tmp/mk_chat_gguf_%d.gguf", (int)getpid());
    for (size_t i = 0; i < 2; i++) {
        char d[512];
        real_dir(d, sizeof d, names[i]);
        mk_tok_gguf_info info;
        if (!write_gguf(d, path, &info)) continue;
        CHECK(info.n_templates == 1, "%s: %zu templates written", names[i], info.n_templates);
        mk_chat_template *a = NULL, *b = NULL;
        REQUIRE(mk_chat_template_load(d, NULL, &a) == MK_OK && mk_chat_template_load(path, NULL, &b) == MK_OK, "%s", mk_last_error());
        CHECK(!strcmp(mk_chat_template_source(a), mk_chat_template_source(b)), "%s: sources differ", names[i]);
        for (size_t k = 0; k < sizeof SPECIAL_TOKENS / sizeof SPECIAL_TOKENS[0]; k++) {
            const char *x = mk_chat_template_token(a, SPECIAL_TOKENS[k]), *y = mk_chat_template_token(b, SPECIAL_TOKENS[k]);
            CHECK((!x && !y) || (x && y && !strcmp(x, y)), "%s: %s is '%s' in tokenizer_config.json, '%s' in the GGUF", names[i],
                  SPECIAL_TOKENS[k], x ? x : "(unset)", y ? y : "(unset)");
        }
        mk_chat_template_free(a);
        mk_chat_template_free(b);
        run_fixture(names[i], path);
    }
    unlink(path);
}

/* Named templates (a list in tokenizer_config.json, additional_chat_templates/) become
 * tokenizer.chat_template.<name> with gguf-py's key names, and load back by name. */
static void test_gguf_named(void) {
    char tmpl[] = "/tmp/mk_chat_XXXXXX";
    REQUIRE(mkdtemp(tmpl), "mkdtemp");
    char p[256], q[256], g[300];
    snprintf(p, sizeof p, "%s/tokenizer_config.json", tmpl);
    FILE *f = fopen(p, "w");
    REQUIRE(f, "write %s", p);
    fputs("{\"chat_template\": [{\"name\": \"default\", \"template\": \"D{{ messages|length }}\"}, "
          "{\"name\": \"tool-use\", \"template\": \"T\"}]}", f);
    fclose(f);
    snprintf(q, sizeof q, "%s/additional_chat_templates", tmpl);
    mkdir(q, 0700);
    snprintf(q, sizeof q, "%s/additional_chat_templates/rag.jinja", tmpl);
    f = fopen(q, "w");
    if (f) { fputs("R", f); fclose(f); }
    snprintf(g, sizeof g, "%s/m.gguf", tmpl);
    mk_tok_gguf_info info;
    if (write_gguf(tmpl, g, &info)) {
        CHECK(!strcmp(info.model, "none") && info.n_templates == 3, "model %s, %zu templates", info.model, info.n_templates);
        mk_gguf *gg = NULL;
        REQUIRE(mk_gguf_open(&gg, g) == MK_OK, "%s", mk_last_error());
        const mk_gguf_kv *names = mk_gguf_find(gg, "tokenizer.chat_templates");
        const char *s0, *s1;
        uint64_t l0, l1;
        CHECK(names && names->n == 2 && mk_gguf_arr_str(names, 0, &s0, &l0) && mk_gguf_arr_str(names, 1, &s1, &l1) &&
                  l0 == 8 && !memcmp(s0, "tool_use", 8) && l1 == 3 && !memcmp(s1, "rag", 3),
              "tokenizer.chat_templates");
        CHECK(mk_gguf_find(gg, "tokenizer.chat_template.tool_use") && mk_gguf_find(gg, "tokenizer.chat_template.rag"), "named keys");
        mk_gguf_free(gg);
        const char *want_name[] = {NULL, "default", "tool_use", "rag"}, *want[] = {"D1", "D1", "T", "R"};
        mk_chat_message m = {"user", "x"};
        for (size_t i = 0; i < 4; i++) {
            mk_chat_template *t = NULL;
            char *out = NULL;
            mk_status st = mk_chat_template_load(g, want_name[i], &t);
            if (!st) st = mk_chat_template_render(t, &m, 1, false, &out);
            CHECK(st == MK_OK && !strcmp(out, want[i]), "name %s: %s", want_name[i] ? want_name[i] : "(default)", st ? mk_last_error() : out);
            free(out);
            mk_chat_template_free(t);
        }
        mk_chat_template *t = NULL;
        CHECK(mk_chat_template_load(g, "nope", &t) == MK_ERR_MISSING &&
                  strstr(mk_last_error(), "m.gguf: no chat template (metadata key 'tokenizer.chat_template.nope' is missing)"),
              "missing name: %s", mk_last_error());
    }
    /* a GGUF without templates */
    remove(q);
    snprintf(q, sizeof q, "%s/additional_chat_templates", tmpl);
    remove(q);
    remove(p);
    if (write_gguf(tmpl, g, &info)) {
        mk_chat_template *t = NULL;
        CHECK(info.n_templates == 0, "%zu templates", info.n_templates);
        CHECK(mk_chat_template_load(g, NULL, &t) == MK_ERR_MISSING &&
                  strstr(mk_last_error(), "m.gguf: no chat template (metadata key 'tokenizer.chat_template' is missing)"),
              "no template: %s", mk_last_error());
    }
    /* a template that is not a string */
    mk_gguf_writer *w = NULL;
    if (mk_gguf_writer_new(&w, g) == MK_OK && mk_gguf_w_u32(w, "tokenizer.chat_template", 7) == MK_OK && mk_gguf_writer_finish(w) == MK_OK) {
        mk_chat_template *t = NULL;
        CHECK(mk_chat_template_load(g, NULL, &t) == MK_ERR_FORMAT &&
                  strstr(mk_last_error(), "m.gguf: metadata key 'tokenizer.chat_template' must be a string, not u32"),
              "wrong type: %s", mk_last_error());
    }
    mk_gguf_writer_free(w);
    remove(g);
    remove(tmpl);
}

/* ---------------------------------------------------------------- loading */

static void test_load_tokens(void) {
    char d[512];
    real_dir(d, sizeof d, "deepseek_v3");
    mk_chat_template *t = NULL;
    REQUIRE(mk_chat_template_load(d, NULL, &t) == MK_OK, "%s", mk_last_error());
    CHECK(strcmp(mk_chat_template_token(t, "bos_token"), "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>") == 0,
          "bos %s", mk_chat_template_token(t, "bos_token"));
    CHECK(mk_chat_template_token(t, "unk_token") == NULL, "unk is null in the config");
    mk_chat_message m[] = {{"user", "hi"}};
    char *out = NULL;
    REQUIRE(mk_chat_template_render(t, m, 1, true, &out) == MK_OK, "%s", mk_last_error());
    CHECK(strstr(out, "hi<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>") != NULL, "got %s", out);
    free(out);
    mk_chat_template_free(t);

    /* chat_template.jinja takes precedence over tokenizer_config.json's chat_template */
    REQUIRE(mk_chat_template_load("tests/fixtures/chat/features", NULL, &t) == MK_OK, "%s", mk_last_error());
    CHECK(strstr(mk_chat_template_source(t), "macro render_value") != NULL, "wrong source");
    CHECK(strcmp(mk_chat_template_token(t, "bos_token"), "<|begin|>") == 0, "bos from {content}");
    mk_chat_template_free(t);
    mk_chat_template_free(NULL);
}

static char *write_tmp_dir(const char *cfg) {
    char tmpl[] = "/tmp/mk_chat_XXXXXX";
    char *d = mkdtemp(tmpl);
    if (!d) return NULL;
    char *dir = mk_strdup(d);
    char *p = mk_path_join(dir, "tokenizer_config.json");
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(cfg, f);
        fclose(f);
    }
    free(p);
    return dir;
}
static void rm_tmp_dir(char *dir) {
    char *p = mk_path_join(dir, "tokenizer_config.json");
    remove(p);
    free(p);
    remove(dir);
    free(dir);
}

static void test_load_named_and_errors(void) {
    struct {
        const char *cfg, *name;
        mk_status st;
        const char *frag;
    } cases[] = {
        {"{\"chat_template\": [{\"name\": \"default\", \"template\": \"D{{ messages|length }}\"},"
         " {\"name\": \"tool_use\", \"template\": \"T\"}]}", NULL, MK_OK, NULL},
        {"{\"chat_template\": [{\"name\": \"default\", \"template\": \"D\"}, {\"name\": \"tool_use\", \"template\": \"T\"}]}",
         "tool_use", MK_OK, NULL},
        {"{\"chat_template\": [{\"name\": \"rag\", \"template\": \"R\"}]}", "nope", MK_ERR_MISSING, "no template named 'nope'"},
        {"{\"chat_template\": \"x\", \"bos_token\": 5}", NULL, MK_ERR_FORMAT, "'bos_token'"},
        {"{\"chat_template\": 3}", NULL, MK_ERR_FORMAT, "'chat_template'"},
        {"{\"chat_template\": [3]}", NULL, MK_ERR_FORMAT, "'chat_template'[0]"},
        {"{\"bos_token\": \"<s>\"}", NULL, MK_ERR_MISSING, "no 'chat_template'"},
        {"{\"chat_template\": \"x\",", NULL, MK_ERR_FORMAT, "invalid JSON at line"},
        {"[1, 2]", NULL, MK_ERR_FORMAT, "expected a JSON object"},
        {"{\"chat_template\": \"{% for x in y %}\"}", NULL, MK_ERR_FORMAT, "tokenizer_config.json: line 1: unexpected end"},
        {"{\"chat_template\": \"{% include 'x' %}\"}", NULL, MK_ERR_UNSUPPORTED, "'{% include %}' tag"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = write_tmp_dir(cases[i].cfg);
        REQUIRE(dir, "mkdtemp");
        mk_chat_template *t = NULL;
        mk_status st = mk_chat_template_load(dir, cases[i].name, &t);
        CHECK(st == cases[i].st, "case %zu: status %s: %s", i, mk_status_name(st), st ? mk_last_error() : "");
        if (st && cases[i].frag)
            CHECK(strstr(mk_last_error(), cases[i].frag) && !strchr(mk_last_error(), '\n'), "case %zu: message '%s'",
                  i, mk_last_error());
        if (!st) {
            char *out = NULL;
            CHECK(mk_chat_template_render(t, NULL, 0, false, &out) == MK_OK, "%s", mk_last_error());
            CHECK(out && out[0] == (cases[i].name ? 'T' : 'D'), "case %zu: got %s", i, out);
            free(out);
        }
        mk_chat_template_free(t);
        rm_tmp_dir(dir);
    }
    /* chat_template.jinja is the default; additional_chat_templates/<name>.jinja the named ones */
    char *dir = write_tmp_dir("{\"eos_token\": \"E\", \"chat_template\": [{\"name\": \"rag\", \"template\": \"R\"}]}");
    REQUIRE(dir, "mkdtemp");
    char *p1 = mk_path_join(dir, "chat_template.jinja"), *p2 = mk_path_join(dir, "additional_chat_templates"),
         *p3 = mk_path_join(p2, "tool_use.jinja");
    FILE *f = fopen(p1, "w");
    if (f) { fputs("J{{ eos_token }}\n", f); fclose(f); }
    mkdir(p2, 0700);
    f = fopen(p3, "w");
    if (f) { fputs("T{{ eos_token }}", f); fclose(f); }
    const char *names[] = {NULL, "default", "tool_use", "rag", "nope", "../x"};
    const char *want[] = {"JE", "JE", "TE", "R", NULL, NULL};
    for (size_t i = 0; i < 6; i++) {
        mk_chat_template *t = NULL;
        char *out = NULL;
        mk_status st = mk_chat_template_load(dir, names[i], &t);
        if (!st) st = mk_chat_template_render(t, NULL, 0, false, &out);
        if (want[i]) CHECK(st == MK_OK && strcmp(out, want[i]) == 0, "name %s: %s", names[i], st ? mk_last_error() : out);
        else CHECK(st == (i == 4 ? MK_ERR_MISSING : MK_ERR_ARG), "name %s: %s", names[i], mk_status_name(st));
        free(out);
        mk_chat_template_free(t);
    }
    remove(p3);
    remove(p2);
    remove(p1);
    free(p1);
    free(p2);
    free(p3);
    rm_tmp_dir(dir);

    mk_chat_template *t = NULL;
    CHECK(mk_chat_template_load("/nonexistent/dir", NULL, &t) == MK_ERR_MISSING, "missing dir");
    CHECK(t == NULL, "out stays NULL");
}

/* ---------------------------------------------------------------- interpreter */

static void test_whitespace_control(void) {
    /* trim_blocks: newline after a block tag is removed; lstrip_blocks: indentation before it */
    EXPECT("a\n  {% if true %}\n  b\n  {% endif %}\nc", NULL, "a\n  b\nc");
    EXPECT("a  {%- if true -%}  b  {%- endif -%}  c", NULL, "abc");
    EXPECT("a\n  {{- 'x' -}}  \n b", NULL, "axb");
    EXPECT("a\n  {{ 'x' }}\nb", NULL, "a\n  x\nb"); /* no lstrip/trim for {{ }} */
    EXPECT("a\n  {#- c -#}\n  b", NULL, "ab");
    EXPECT("a\n  {# c #}\nb", NULL, "a\nb");
    EXPECT("a\n  {%+ if true %}x{% endif %}", NULL, "a\n  x");
    EXPECT("{% if true +%}\nx{% endif %}", NULL, "\nx");
    EXPECT("x\n", NULL, "x");          /* one trailing newline dropped */
    EXPECT("x\n\n", NULL, "x\n");
    EXPECT("a\r\nb", NULL, "a\nb");    /* newlines normalized */
    EXPECT("  {% set x = 1 %}y", NULL, "y");
    EXPECT("t {% set x = 1 %} y", NULL, "t  y"); /* not at line start: no lstrip */
}

static void test_expressions(void) {
    EXPECT("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 ** 3 ** 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }}", NULL,
           "7 9 64 3 -4 2 3.5");
    EXPECT("{{ 1 ~ 'a' ~ none ~ true }} {{ 'ab' * 2 }} {{ [1] + [2] }}", NULL, "1aNoneTrue abab [1, 2]");
    EXPECT("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ 'a' != 'b' }} {{ [1, 2] == [1, 2] }}", NULL,
           "True False True True True");
    EXPECT("{{ 'b' in 'abc' }} {{ 2 not in [1, 2] }} {{ 'k' in {'k': 1} }} {{ not 'x' in 'yz' }}", NULL,
           "True False True True");
    EXPECT("{{ 0 or 'x' }} {{ 1 and 0 }} {{ '' or [] }} {{ none is none }} {{ 'x' if false }}|", NULL, "x 0 [] True |");
    EXPECT("{{ 'abcdef'[1:3] }} {{ 'abcdef'[::-1] }} {{ 'abcdef'[-2:] }} {{ [1,2,3,4][::2] }} {{ [1,2,3][5:] }}",
           NULL, "bc fedcba ef [1, 3] []");
    EXPECT("{{ 'héllo'[1] }} {{ 'héllo'[:2] }} {{ 'héllo'|length }} {{ 'abc'[-1] }}", NULL, "é hé 5 c");
    EXPECT("{{ x.a.b }} {{ x['a']['b'] }} {{ x.l[1] }} {{ x.l[-1] }} {{ x.missing }}|{{ x.l[9] }}|",
           "{\"x\": {\"a\": {\"b\": 7}, \"l\": [1, 2, 3]}}", "7 7 2 3 ||");
    EXPECT("{{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1.0 }} {{ 2.5e-5 }} {{ 123456789.125 }} {{ -0.0 }}", NULL,
           "0.30000000000000004 1e+16 1.0 2.5e-05 123456789.125 -0.0");
    EXPECT("{{ {'a': 1, 'b': [true, none, 'it\\'s']} }} {{ ('x',) }} {{ (1, 2) }}", NULL,
           "{'a': 1, 'b': [True, None, \"it's\"]} ('x',) (1, 2)");
    EXPECT("{{ 'a' 'b' }} {{ \"q\\\"\\n\\t\\u00e9\\x41\" }}", NULL, "ab q\"\n\t\xc3\xa9" "A");
    EXPECT("{{ -3 + +2 }} {{ -(1) }} {{ not true }}", NULL, "-1 -1 False");
}

static void test_statements(void) {
    EXPECT("{% for x in [1, 2, 3] %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}"
           "{{ loop.revindex }},{% endfor %}", NULL, "10TrueFalse33,21FalseFalse32,32FalseTrue31,");
    EXPECT("{% for x in [] %}a{% else %}empty{% endfor %}", NULL, "empty");
    EXPECT("{% for x in [1,2,3,4] if x is even %}{{ x }}{{ loop.length }}{% endfor %}", NULL, "2242");
    EXPECT("{% for k, v in {'a': 1, 'b': 2}|items %}{{ k }}={{ v }};{% endfor %}", NULL, "a=1;b=2;");
    EXPECT("{% for x in 'ab' %}{{ x }}.{% endfor %}{% for k in {'z': 1} %}{{ k }}{% endfor %}", NULL, "a.b.z");
    EXPECT("{% for x in range(5) %}{% if x == 1 %}{% continue %}{% elif x == 3 %}{% break %}{% endif %}{{ x }}{% endfor %}",
           NULL, "02");
    EXPECT("{% for x in [1, 2] %}{{ loop.previtem is defined }}{{ loop.nextitem|default('-') }}{{ loop.cycle('a', 'b') }}"
           "{% endfor %}", NULL, "False2aTrue-b");
    /* scoping: set in a loop does not leak; namespace attributes do */
    EXPECT("{% set a = 1 %}{% set ns = namespace(b=1) %}{% for i in [1] %}{% set a = 2 %}{% set ns.b = 2 %}{% endfor %}"
           "{{ a }}{{ ns.b }}", NULL, "12");
    EXPECT("{% set x = 0 %}{% for i in [1,2,3] %}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}|"
           "{% for i in [1,2] %}{{ y is defined }}{% set y = i %}{% endfor %}|"
           "{% for i in [1, 2] %}{% for j in [3] %}{{ loop.index }}{% endfor %}{{ loop.index }}{% endfor %}",
           NULL, "1110|FalseFalse|1112");
    EXPECT("{% if false %}a{% elif 0 %}b{% elif 1 %}c{% else %}d{% endif %}", NULL, "c");
    EXPECT("{% set x, y = [1, 2] %}{{ y }}{{ x }}{% set t = 1, 2 %}{{ t }}", NULL, "21(1, 2)");
    EXPECT("{% set b %}in {{ 1 + 1 }}{% endset %}[{{ b }}]", NULL, "[in 2]");
    EXPECT("{% macro m(a, b='B', c=none) %}{{ a }}{{ b }}{{ c }}{% endmacro %}{{ m(1) }} {{ m(1, c=3) }} {{ m(b=2, a=0) }}",
           NULL, "1BNone 1B3 02None");
    EXPECT("{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(3) }}", NULL, "321");
    EXPECT("{% generation %}gen{% endgeneration %}", NULL, "gen");
    EXPECT("{% filter upper %}a{{ 'b' }}{% set q = 1 %}{% endfilter %}{{ q is defined }}"
           "{% filter replace('X', 'y')|trim %}  aXb  {% endfilter %}|", NULL, "ABFalseayb|");
    EXPECT("{% set d = dict(a=1, b='x') %}{{ d.b }}{{ d|length }}{{ d.get('a') }}{{ d.get('z', 9) }}{{ d.get('z') }}",
           NULL, "x219None");
}

static void test_filters(void) {
    EXPECT("{{ '  x y  '|trim }}|{{ 'xxaxx'|trim('x') }}|{{ 'aB'|upper }}{{ 'aB'|lower }}|{{ 'hello wORLD'|title }}|"
           "{{ 'hELLO'|capitalize }}", NULL, "x y|a|ABab|Hello World|Hello");
    EXPECT("{{ [1, 2, 3]|join(', ') }}|{{ [1, 2]|join }}|{{ users|join(',', attribute='n') }}",
           "{\"users\": [{\"n\": \"a\"}, {\"n\": \"b\"}]}", "1, 2, 3|12|a,b");
    EXPECT("{{ x|default('d') }}{{ none|default('d') }}{{ ''|default('d', true) }}{{ 0|d('z') }}", NULL, "dNoned0");
    EXPECT("{{ [3, 1, 2]|first }}{{ [3, 1, 2]|last }}{{ 'abc'|first }}{{ [3, 1, 2]|sort|list }}{{ [3, 1, 2]|reverse|list }}",
           NULL, "32a[1, 2, 3][2, 1, 3]");
    EXPECT("{{ 'a-b-c'|replace('-', '+') }} {{ 'aaa'|replace('a', 'b', 2) }} {{ 5|string ~ 1 }} {{ 'ab'|list }}", NULL,
           "a+b+c bba 51 ['a', 'b']");
    EXPECT("{{ {'b': 1, 'a': 'é\\n\"'}|tojson }} {{ [1, 2.5, none, true]|tojson }} {{ 'x'|tojson }}", NULL,
           "{\"b\": 1, \"a\": \"é\\n\\\"\"} [1, 2.5, null, true] \"x\"");
    EXPECT("{{ {'b': [1, {}], 'a': []}|tojson(indent=2) }}", NULL,
           "{\n  \"b\": [\n    1,\n    {}\n  ],\n  \"a\": []\n}");
    EXPECT("{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }} {{ 'é'|tojson(ensure_ascii=true) }}", NULL,
           "{\"a\": 2, \"b\": 1} \"\\u00e9\"");
    EXPECT("{{ m|selectattr('role', 'equalto', 'user')|map(attribute='c')|list }}"
           "{{ m|rejectattr('role', 'equalto', 'user')|list|length }}{{ m|selectattr('x')|list }}"
           "{{ m|map(attribute='x', default='?')|join }}",
           "{\"m\": [{\"role\": \"user\", \"c\": 1}, {\"role\": \"bot\", \"c\": 2, \"x\": 0}, {\"role\": \"user\", \"c\": 3}]}",
           "[1, 3]1[]?0?");
    EXPECT("{{ [1, 2, 3, 4]|select('odd')|list }}{{ [0, 1, '']|select|list }}{{ ['a', 'B']|map('upper')|join }}", NULL,
           "[1, 3][1]AB");
    EXPECT("{{ ['b', 'A', 'a']|unique|list }} {{ [2, 3]|sum }} {{ [2, 9, 3]|max }} {{ -2|abs }} {{ '3'|int + 1 }} "
           "{{ 'x'|int }} {{ 2.5|round }} {{ 3.14159|round(2) }} {{ '<a&b>'|e }} {{ 'one two'|wordcount }}",
           NULL, "['b', 'A'] 5 9 2 4 0 2.0 3.14 &lt;a&amp;b&gt; 2");
    EXPECT("{{ 'Hello'|center(9) }}|{{ 'Hi'|center(7) }}|{{ 'Hello World and more'|truncate(9) }}|"
           "{{ 'Hello World and more'|truncate(6, true) }}|{{ '0x10'|int }}", NULL, "  Hello  |   Hi  |Hello...|Hel...|0");
    EXPECT("{{ 'a\nb\n\nc'|indent(2) }}|{{ 'x'|indent(2, true) }}", NULL, "a\n  b\n\n  c|  x");
    EXPECT("{{ {'b': 1, 'a': 2}|dictsort }} {{ x|items|list }}", NULL, "[('a', 2), ('b', 1)] []");
}

/* Jinja's one-shot iterators (map/select/...) and Markup strings (|safe, |escape). */
static void test_iterators_and_markup(void) {
    EXPECT("{% set g = [1, 2, 3]|select('odd') %}{{ g|list }}{{ g|list }}|{{ [1,2]|map('string') is iterable }}"
           "{{ [3,1]|reverse|list }}{{ none|select|list }}{{ [2, 3]|select('odd') is sequence }}|"
           "{% if []|select %}T{% endif %}|{{ ([1, 2, 3]|select)|first }}",
           NULL, "[1, 3][]|True[1, 3][]False|T|1");
    EXPECT_ERR("{{ [1]|map('string')|tojson }}", NULL, MK_ERR_ARG, "generator is not JSON serializable");
    EXPECT_ERR("{{ [1]|select|length }}", NULL, MK_ERR_ARG, "has no len()");
    EXPECT("{{ 'a<'|safe + '<b>' }}|{{ '<x>' + 'y'|safe }}|{{ ('<'|safe) ~ '<' }}|{{ ('q'|safe + '\"')|upper }}|"
           "{{ '<'|e|e }}|{{ ('<'|safe)|replace('<', '>') }}|{{ (('x'|safe) * 2) + '&' }}|"
           "{{ ('<a>'|safe).replace('a', '&') }}|{{ ['<', 'b']|join('|'|safe) }}",
           NULL, "a<&lt;b&gt;|&lt;x&gt;y|<<|Q&#34;|&lt;|>|xx&amp;|<&amp;>|<|b");
}

static void test_tests_and_methods(void) {
    EXPECT("{{ x is defined }}{{ x is undefined }}{{ none is none }}{{ 1 is number }}{{ 1 is integer }}"
           "{{ 1.0 is float }}{{ 'a' is string }}{{ {} is mapping }}{{ [] is iterable }}{{ 'a' is iterable }}"
           "{{ 1 is iterable }}{{ true is boolean }}{{ false is false }}{{ true is true }}",
           NULL, "FalseTrueTrueTrueTrueTrueTrueTrueTrueTrueFalseTrueTrueTrue");
    EXPECT("{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 1 is equalto 1 }}{{ 2 is eq(3) }}"
           "{{ none is sameas none }}{{ 'a' is in 'abc' }}{{ 1 is gt 0 }}{{ 'ab' is lower }}{{ 'x' is not none }}",
           NULL, "TrueTrueTrueTrueFalseTrueTrueTrueTrueTrue");
    EXPECT("{{ 'Hello'.startswith('He') }}{{ 'Hello'.endswith(('x', 'lo')) }}{{ '  a  '.strip() }}{{ 'xxa'.lstrip('x') }}"
           "{{ 'a\\n\\n'.rstrip('\\n') }}{{ 'a,b'.split(',') }}{{ 'a b'.split() }}{{ 'a,b,c'.split(',', 1) }}",
           NULL, "TrueTrueaaa['a', 'b']['a', 'b']['a', 'b,c']");
    EXPECT("{{ 'ab'.upper() }}{{ 'AB'.lower() }}{{ 'aXa'.replace('a', 'b') }}{{ 'héllo'.find('l') }}{{ 'a-b'.title() }}"
           "{{ '-'.join(['x', 'y']) }}{{ 'abca'.count('a') }}{{ '12'.isdigit() }}",
           NULL, "ABabbXb2A-Bx-y2True");
    EXPECT("{% for k, v in d.items() %}{{ k }}{{ v }}{% endfor %}{{ d.keys()|list }}{{ d.values()|list }}",
           "{\"d\": {\"x\": 1, \"y\": 2}}", "x1y2['x', 'y'][1, 2]");
    EXPECT("{{ \"they're 3rd-party x_y\".title() }}|{{ \"they're 3rd-party x_y\"|title }}", NULL,
           "They'Re 3Rd-Party X_Y|They're 3rd-Party X_y");
    EXPECT("{{ d.items is callable }}|{{ d['items'] }}", "{\"d\": {\"items\": 5}}", "True|5");
}

static void test_errors(void) {
    /* syntax errors name the template and line */
    EXPECT_ERR("a\n{% if x %}b", NULL, MK_ERR_FORMAT, "test: line 2: unexpected end of template: 'if'");
    EXPECT_ERR("{{ 1 + }}", NULL, MK_ERR_FORMAT, "line 1: unexpected '}}' in expression");
    EXPECT_ERR("{{ 'abc }}", NULL, MK_ERR_FORMAT, "unterminated string");
    EXPECT_ERR("x\ny\n{% endfor %}", NULL, MK_ERR_FORMAT, "line 3: unexpected 'endfor'");
    EXPECT_ERR("{{ x ", NULL, MK_ERR_FORMAT, "unexpected end of template inside");
    EXPECT_ERR("{# never closed", NULL, MK_ERR_FORMAT, "unclosed comment");
    EXPECT_ERR("{% break %}", NULL, MK_ERR_FORMAT, "'break' outside a for loop");
    EXPECT_ERR("{{ (1 }}", NULL, MK_ERR_FORMAT, "line 1");
    EXPECT_ERR("{{ a @ b }}", NULL, MK_ERR_FORMAT, "unexpected character '@'");
    /* unsupported constructs */
    EXPECT_ERR("\n{% include 'other.jinja' %}", NULL, MK_ERR_UNSUPPORTED, "line 2: unsupported construct: '{% include %}' tag");
    EXPECT_ERR("{% extends 'base' %}", NULL, MK_ERR_UNSUPPORTED, "'{% extends %}' tag");
    EXPECT_ERR("{% filter groupby('a') %}x{% endfilter %}", NULL, MK_ERR_UNSUPPORTED, "unsupported filter 'groupby'");
    EXPECT_ERR("{{ x|urlize }}", NULL, MK_ERR_UNSUPPORTED, "unsupported filter 'urlize'");
    EXPECT_ERR("{{ x|nosuchfilter }}", NULL, MK_ERR_UNSUPPORTED, "unsupported filter 'nosuchfilter'");
    EXPECT_ERR("{{ x is nosuchtest }}", NULL, MK_ERR_UNSUPPORTED, "unsupported test 'nosuchtest'");
    EXPECT_ERR("{{ '%s' % 1 }}", NULL, MK_ERR_UNSUPPORTED, "string formatting");
    EXPECT_ERR("{{ 'a'.format(1) }}", NULL, MK_ERR_UNSUPPORTED, "string method 'format'");
    EXPECT_ERR("{{ [1].append(2) }}", NULL, MK_ERR_UNSUPPORTED, "list.append()");
    EXPECT_ERR("{{ f(*args) }}", NULL, MK_ERR_UNSUPPORTED, "*args");
    EXPECT_ERR("{% set x = 1 %}{% set x.a = 2 %}", NULL, MK_ERR_UNSUPPORTED, "only namespace() objects");
    EXPECT_ERR("{{ cycler(1, 2) }}", NULL, MK_ERR_UNSUPPORTED, "'cycler'");
    /* runtime errors */
    EXPECT_ERR("\n\n{{ raise_exception('bad roles') }}", NULL, MK_ERR_ARG, "line 3: raise_exception: bad roles");
    EXPECT_ERR("{{ x.y }}", NULL, MK_ERR_ARG, "'x' is undefined");
    EXPECT_ERR("{{ x + 1 }}", NULL, MK_ERR_ARG, "'x' is undefined");
    EXPECT_ERR("{{ d.a.b }}", "{\"d\": {}}", MK_ERR_ARG, "'dict object' has no attribute 'a'");
    EXPECT_ERR("{{ 'a' + 1 }}", NULL, MK_ERR_ARG, "unsupported operand type(s) for +: 'str' and 'int'");
    EXPECT_ERR("{{ 1 < 'a' }}", NULL, MK_ERR_ARG, "'<' not supported");
    EXPECT_ERR("{{ 1 // 0 }}", NULL, MK_ERR_ARG, "division or modulo by zero");
    EXPECT_ERR("{% for x in 5 %}{% endfor %}", NULL, MK_ERR_ARG, "'int' object is not iterable");
    EXPECT_ERR("{{ x|tojson }}", NULL, MK_ERR_ARG, "tojson");
    EXPECT_ERR("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", NULL, MK_ERR_ARG, "takes not more than 1");
    EXPECT_ERR("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", NULL, MK_ERR_UNSUPPORTED, "nested too deeply");
    EXPECT_ERR("{{ 9223372036854775807 + 1 }}", NULL, MK_ERR_UNSUPPORTED, "integer overflow");
    EXPECT_ERR("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", NULL,
               MK_ERR_UNSUPPORTED, "exceeded 10000000 loop iterations");
    EXPECT_ERR("{% set s = 'x' * 60000000 %}{% for i in range(5) %}{{ s }}{% endfor %}", NULL, MK_ERR_UNSUPPORTED,
               "rendered text exceeds");
    /* bad inputs to the API */
    mk_status st;
    char *o = render_src("x", "[1]", NULL, NULL, false, &st);
    CHECK(!o && st == MK_ERR_ARG && strstr(mk_last_error(), "special tokens"), "%s", mk_last_error());
    o = render_src("x", NULL, "{\"role\": 1}", NULL, false, &st);
    CHECK(!o && st == MK_ERR_ARG && strstr(mk_last_error(), "messages"), "%s", mk_last_error());
    o = render_src("x", NULL, "[1]", NULL, false, &st);
    CHECK(!o && st == MK_ERR_ARG && strstr(mk_last_error(), "message 0"), "%s", mk_last_error());
    o = render_src("x", NULL, "[]", "[]", false, &st);
    CHECK(!o && st == MK_ERR_ARG && strstr(mk_last_error(), "extra variables"), "%s", mk_last_error());
}

/* Deep nesting and odd inputs must give an error or a result, never a crash. */
static void test_robustness(void) {
    size_t n = 5000;
    char *s = malloc(12 * n + 16);
    REQUIRE(s, "malloc");
    strcpy(s, "{{ ");
    for (size_t i = 0; i < n; i++) s[3 + i] = '(';
    for (size_t i = 0; i < n; i++) s[3 + n + i] = ')';
    strcpy(s + 3 + 2 * n, " }}");
    mk_status st;
    char *o = render_src(s, NULL, NULL, NULL, false, &st);
    CHECK(!o && st == MK_ERR_UNSUPPORTED, "deep parens: %s", mk_last_error());
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += (size_t)sprintf(s + k, "{%% if 1 %%}");
    o = render_src(s, NULL, NULL, NULL, false, &st);
    CHECK(!o && st == MK_ERR_UNSUPPORTED, "deep ifs: %s", mk_last_error());
    free(s);
    static const char *const junk[] = {"{{", "{%", "{#", "{{}}", "{%%}", "{% if %}", "{{ [ }}", "{{ {1: } }}",
                                       "{% for %}", "{% set %}", "{% macro %}", "{{ x[::] }}", "{{ 'a'[::0] }}",
                                       "{{ x. }}", "{{ 1 is }}", "{% endmacro %}", "{{ '\\u12' }}", "}}", "%}",
                                       "{{ a|b( }}", "{% for x in y if %}", "{{ 1 if }}", "{{ -'a' }}"};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        o = render_src(junk[i], NULL, NULL, NULL, false, &st);
        if (o) free(o);
        else CHECK(st != MK_ERR_INTERNAL && st != MK_ERR_NOMEM && !strchr(mk_last_error(), '\n'), "'%s': %s", junk[i],
                   mk_last_error());
    }
}

int main(void) {
    RUN(test_fixture_qwen3);
    RUN(test_fixture_deepseek_v3);
    RUN(test_fixture_gptoss);
    RUN(test_fixture_llama2_style);
    RUN(test_fixture_features);
    RUN(test_fixture_gguf);
    printf("     fixtures: %d/%d cases byte-identical\n", g_exact, g_cases);
    RUN(test_load_tokens);
    RUN(test_load_named_and_errors);
    RUN(test_gguf_named);
    RUN(test_whitespace_control);
    RUN(test_expressions);
    RUN(test_statements);
    RUN(test_filters);
    RUN(test_tests_and_methods);
    RUN(test_iterators_and_markup);
    RUN(test_errors);
    RUN(test_robustness);
    return TEST_SUMMARY("test_chat_template");
}
