/* Loading tokenizer.json (+ tokenizer_config.json, config.json) into an mk_tokenizer, and the
 * lookup functions. Every error names the file and the JSON field. */
#include "tok_gguf.h"
#include "tok_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct ld {
    mk_tokenizer *tok;
    const char *file; /* tokenizer.json path, for messages */
} ld;

static mk_status bad(const ld *L, const char *field, const char *what) {
    return mk_err(MK_ERR_FORMAT, "%s: %s: %s", L->file, field, what);
}

/* Optional boolean field (default if absent or null). */
static mk_status get_bool(const ld *L, json_t *o, const char *key, bool def, bool *out, const char *where) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) { *out = def; return MK_OK; }
    if (!json_is_boolean(v)) return mk_err(MK_ERR_FORMAT, "%s: %s.%s: expected true or false", L->file, where, key);
    *out = json_is_true(v);
    return MK_OK;
}

static mk_status get_str(const ld *L, json_t *o, const char *key, const char **s, size_t *n, const char *where) {
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v)) return mk_err(MK_ERR_FORMAT, "%s: %s.%s: expected a string", L->file, where, key);
    *s = json_string_value(v);
    *n = json_string_length(v);
    return MK_OK;
}

static char *dup_n(const char *s, size_t n) {
    char *p = mk_malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* {"String": s} or {"Regex": r} -> compiled regex; its source (owned copy) and kind if src. */
static mk_status get_pattern(const ld *L, json_t *o, const char *where, pcre2_code **re, tk_src *src) {
    json_t *p = json_object_get(o, "pattern");
    char f[160];
    snprintf(f, sizeof f, "%s.pattern", where);
    if (!json_is_object(p)) return bad(L, f, "expected {\"String\": ...} or {\"Regex\": ...}");
    json_t *s = json_object_get(p, "String"), *r = json_object_get(p, "Regex");
    json_t *v = s ? s : r;
    if (!json_is_string(v)) return bad(L, f, "expected {\"String\": ...} or {\"Regex\": ...}");
    char w[400];
    snprintf(w, sizeof w, "%s: %s", L->file, f);
    *re = tk_regex_compile(json_string_value(v), json_string_length(v), s != NULL, w);
    if (!*re) return MK_ERR_FORMAT;
    if (src) {
        if (!(src->s = dup_n(json_string_value(v), json_string_length(v)))) return MK_ERR_NOMEM;
        src->len = json_string_length(v);
        src->literal = s != NULL;
    }
    return MK_OK;
}

static const char *type_of(json_t *o) {
    json_t *t = json_object_get(o, "type");
    return json_is_string(t) ? json_string_value(t) : NULL;
}

/* ---- normalizer -------------------------------------------------------------------------- */

static mk_status parse_norm(const ld *L, json_t *o, tk_norm *n, const char *where) {
    memset(n, 0, sizeof *n);
    if (!json_is_object(o)) return bad(L, where, "expected an object");
    const char *t = type_of(o);
    char f[160];
    if (!t) return bad(L, where, "missing \"type\"");
    mk_status st;
    if (!strcmp(t, "Sequence")) {
        n->kind = TN_SEQ;
        json_t *a = json_object_get(o, "normalizers");
        snprintf(f, sizeof f, "%s.normalizers", where);
        if (!json_is_array(a)) return bad(L, f, "expected an array");
        n->n_kids = json_array_size(a);
        if (n->n_kids && !(n->kids = mk_calloc(n->n_kids, sizeof *n->kids))) return MK_ERR_NOMEM;
        for (size_t i = 0; i < n->n_kids; i++) {
            snprintf(f, sizeof f, "%s.normalizers[%zu]", where, i);
            if ((st = parse_norm(L, json_array_get(a, i), &n->kids[i], f))) return st;
        }
        return MK_OK;
    }
    if (!strcmp(t, "NFC")) { n->kind = TN_NFC; return MK_OK; }
    if (!strcmp(t, "NFD")) { n->kind = TN_NFD; return MK_OK; }
    if (!strcmp(t, "NFKC")) { n->kind = TN_NFKC; return MK_OK; }
    if (!strcmp(t, "NFKD")) { n->kind = TN_NFKD; return MK_OK; }
    if (!strcmp(t, "Lowercase")) { n->kind = TN_LOWER; return MK_OK; }
    if (!strcmp(t, "Replace")) {
        n->kind = TN_REPLACE;
        const char *c;
        size_t cl;
        if ((st = get_pattern(L, o, where, &n->re, &n->src)) || (st = get_str(L, o, "content", &c, &cl, where))) return st;
        n->content = dup_n(c, cl);
        n->content_len = cl;
        return n->content ? MK_OK : MK_ERR_NOMEM;
    }
    if (!strcmp(t, "Prepend")) {
        n->kind = TN_PREPEND;
        const char *c;
        size_t cl;
        if ((st = get_str(L, o, "prepend", &c, &cl, where))) return st;
        n->content = dup_n(c, cl);
        n->content_len = cl;
        return n->content ? MK_OK : MK_ERR_NOMEM;
    }
    if (!strcmp(t, "Strip")) {
        n->kind = TN_STRIP;
        if ((st = get_bool(L, o, "strip_left", true, &n->left, where)) ||
            (st = get_bool(L, o, "strip_right", true, &n->right, where)))
            return st;
        return MK_OK;
    }
    return mk_err(MK_ERR_UNSUPPORTED, "%s: %s.type: normalizer '%s' is not supported", L->file, where, t);
}

/* ---- pre-tokenizer ----------------------------------------------------------------------- */

static mk_status pre_push(const ld *L, tk_pre **arr, size_t *n, tk_pre **out) {
    if (*n >= 16) return mk_err(MK_ERR_UNSUPPORTED, "%s: pre_tokenizer: more than 16 steps", L->file);
    tk_pre *p = mk_realloc(*arr, (*n + 1) * sizeof *p);
    if (!p) return MK_ERR_NOMEM;
    *arr = p;
    *out = &p[(*n)++];
    memset(*out, 0, sizeof **out);
    return MK_OK;
}

static mk_status parse_scheme(const ld *L, json_t *o, const char *where, tk_prepend *sc) {
    json_t *ps = json_object_get(o, "prepend_scheme");
    if (json_is_string(ps)) {
        const char *s = json_string_value(ps);
        if (!strcmp(s, "always")) *sc = TS_ALWAYS;
        else if (!strcmp(s, "first")) *sc = TS_FIRST;
        else if (!strcmp(s, "never")) *sc = TS_NEVER;
        else return mk_err(MK_ERR_FORMAT, "%s: %s.prepend_scheme: unknown value '%s'", L->file, where, s);
        return MK_OK;
    }
    bool aps;
    mk_status st = get_bool(L, o, "add_prefix_space", true, &aps, where);
    *sc = aps ? TS_ALWAYS : TS_NEVER;
    return st;
}

static mk_status get_char(const ld *L, json_t *o, const char *key, char *buf, size_t *n, const char *where) {
    const char *s;
    size_t l;
    mk_status st = get_str(L, o, key, &s, &l, where);
    if (st) return st;
    if (l == 0 || l > 4 || tk_utf8_len((unsigned char)s[0]) != l)
        return mk_err(MK_ERR_FORMAT, "%s: %s.%s: expected one character", L->file, where, key);
    memcpy(buf, s, l);
    *n = l;
    return MK_OK;
}

/* Pre-tokenizers and decoders are flat lists in moekit: a "Sequence" node's items (under `key`)
 * are parsed in order by `item` into the same list. *t gets the node's type; *done is set when the
 * node was a Sequence (or is malformed: the status says). */
typedef mk_status (*list_item_fn)(const ld *L, json_t *o, void *arr, size_t *n, const char *where);
static mk_status flatten_sequence(const ld *L, json_t *o, const char *key, list_item_fn item, void *arr, size_t *n, const char *where,
                                  const char **t, bool *done) {
    *done = true;
    if (!json_is_object(o)) return bad(L, where, "expected an object");
    if (!(*t = type_of(o))) return bad(L, where, "missing \"type\"");
    if (strcmp(*t, "Sequence")) {
        *done = false;
        return MK_OK;
    }
    char f[160];
    json_t *a = json_object_get(o, key);
    snprintf(f, sizeof f, "%s.%s", where, key);
    if (!json_is_array(a)) return bad(L, f, "expected an array");
    for (size_t i = 0; i < json_array_size(a); i++) {
        snprintf(f, sizeof f, "%s.%s[%zu]", where, key, i);
        mk_status st = item(L, json_array_get(a, i), arr, n, f);
        if (st) return st;
    }
    return MK_OK;
}

static mk_status parse_pre(const ld *L, json_t *o, tk_pre **arr, size_t *n, const char *where);
static mk_status pre_item(const ld *L, json_t *o, void *arr, size_t *n, const char *where) { return parse_pre(L, o, arr, n, where); }

static mk_status parse_pre(const ld *L, json_t *o, tk_pre **arr, size_t *n, const char *where) {
    const char *t;
    bool done;
    mk_status st = flatten_sequence(L, o, "pretokenizers", pre_item, arr, n, where, &t, &done);
    if (st || done) return st;
    tk_pre *p;
    if (!strcmp(t, "Split")) {
        if ((st = pre_push(L, arr, n, &p))) return st;
        p->kind = TP_SPLIT;
        if ((st = get_pattern(L, o, where, &p->re, &p->src))) return st;
        const char *b;
        size_t bl;
        if ((st = get_str(L, o, "behavior", &b, &bl, where))) return st;
        if (!strcmp(b, "Removed")) p->behavior = TB_REMOVED;
        else if (!strcmp(b, "Isolated")) p->behavior = TB_ISOLATED;
        else if (!strcmp(b, "MergedWithPrevious")) p->behavior = TB_MERGED_PREV;
        else if (!strcmp(b, "MergedWithNext")) p->behavior = TB_MERGED_NEXT;
        else if (!strcmp(b, "Contiguous")) p->behavior = TB_CONTIGUOUS;
        else return mk_err(MK_ERR_FORMAT, "%s: %s.behavior: unknown value '%s'", L->file, where, b);
        return get_bool(L, o, "invert", false, &p->invert, where);
    }
    if (!strcmp(t, "ByteLevel")) {
        if ((st = pre_push(L, arr, n, &p))) return st;
        p->kind = TP_BYTELEVEL;
        bool use_regex;
        if ((st = get_bool(L, o, "add_prefix_space", true, &p->add_prefix_space, where)) ||
            (st = get_bool(L, o, "use_regex", true, &use_regex, where)))
            return st;
        if (use_regex && !(p->re = tk_regex_compile(TK_GPT2_PATTERN, strlen(TK_GPT2_PATTERN), false, "ByteLevel")))
            return MK_ERR_INTERNAL;
        return MK_OK;
    }
    if (!strcmp(t, "Digits")) {
        if ((st = pre_push(L, arr, n, &p))) return st;
        p->kind = TP_DIGITS;
        return get_bool(L, o, "individual_digits", false, &p->individual, where);
    }
    if (!strcmp(t, "Metaspace")) {
        if ((st = pre_push(L, arr, n, &p))) return st;
        p->kind = TP_METASPACE;
        if ((st = get_char(L, o, "replacement", p->repl, &p->repl_len, where)) ||
            (st = parse_scheme(L, o, where, &p->scheme)) || (st = get_bool(L, o, "split", true, &p->split, where)))
            return st;
        return MK_OK;
    }
    if (!strcmp(t, "Whitespace") || !strcmp(t, "WhitespaceSplit")) {
        if ((st = pre_push(L, arr, n, &p))) return st;
        p->kind = TP_SPLIT;
        bool ws = !strcmp(t, "Whitespace");
        const char *re = ws ? "\\w+|[^\\w\\s]+" : "\\s+";
        if (!(p->re = tk_regex_compile(re, strlen(re), false, t))) return MK_ERR_INTERNAL;
        p->behavior = TB_REMOVED;
        p->invert = ws;
        return MK_OK;
    }
    return mk_err(MK_ERR_UNSUPPORTED, "%s: %s.type: pre-tokenizer '%s' is not supported", L->file, where, t);
}

/* ---- decoder ----------------------------------------------------------------------------- */

static mk_status dec_push(tk_dec **arr, size_t *n, tk_dec **out) {
    tk_dec *p = mk_realloc(*arr, (*n + 1) * sizeof *p);
    if (!p) return MK_ERR_NOMEM;
    *arr = p;
    *out = &p[(*n)++];
    memset(*out, 0, sizeof **out);
    return MK_OK;
}

static mk_status parse_dec(const ld *L, json_t *o, tk_dec **arr, size_t *n, const char *where);
static mk_status dec_item(const ld *L, json_t *o, void *arr, size_t *n, const char *where) { return parse_dec(L, o, arr, n, where); }

static mk_status parse_dec(const ld *L, json_t *o, tk_dec **arr, size_t *n, const char *where) {
    const char *t;
    bool done;
    mk_status st = flatten_sequence(L, o, "decoders", dec_item, arr, n, where, &t, &done);
    if (st || done) return st;
    tk_dec *d;
    if ((st = dec_push(arr, n, &d))) return st;
    if (!strcmp(t, "ByteLevel")) { d->kind = TD_BYTELEVEL; return MK_OK; }
    if (!strcmp(t, "ByteFallback")) { d->kind = TD_BYTEFALLBACK; return MK_OK; }
    if (!strcmp(t, "Fuse")) { d->kind = TD_FUSE; return MK_OK; }
    if (!strcmp(t, "Metaspace")) {
        d->kind = TD_METASPACE;
        char c[8];
        size_t cl;
        if ((st = get_char(L, o, "replacement", c, &cl, where)) || (st = parse_scheme(L, o, where, &d->scheme))) return st;
        d->content = dup_n(c, cl);
        d->content_len = cl;
        return d->content ? MK_OK : MK_ERR_NOMEM;
    }
    if (!strcmp(t, "Strip")) {
        d->kind = TD_STRIP;
        char c[8];
        size_t cl;
        if ((st = get_char(L, o, "content", c, &cl, where))) return st;
        json_t *a = json_object_get(o, "start"), *b = json_object_get(o, "stop");
        if (!json_is_integer(a) || !json_is_integer(b) || json_integer_value(a) < 0 || json_integer_value(b) < 0)
            return bad(L, where, "expected non-negative integers start and stop");
        d->start = (size_t)json_integer_value(a);
        d->stop = (size_t)json_integer_value(b);
        d->content = dup_n(c, cl);
        d->content_len = cl;
        return d->content ? MK_OK : MK_ERR_NOMEM;
    }
    if (!strcmp(t, "Replace")) {
        d->kind = TD_REPLACE;
        const char *c;
        size_t cl;
        if ((st = get_pattern(L, o, where, &d->re, NULL)) || (st = get_str(L, o, "content", &c, &cl, where))) return st;
        d->content = dup_n(c, cl);
        d->content_len = cl;
        return d->content ? MK_OK : MK_ERR_NOMEM;
    }
    return mk_err(MK_ERR_UNSUPPORTED, "%s: %s.type: decoder '%s' is not supported", L->file, where, t);
}

/* ---- post-processor ------------------------------------------------------------------------ */

static mk_status ids_push(int32_t **a, size_t *n, int32_t id) {
    int32_t *p = mk_realloc(*a, (*n + 1) * sizeof *p);
    if (!p) return MK_ERR_NOMEM;
    *a = p;
    p[(*n)++] = id;
    return MK_OK;
}

static mk_status parse_post(const ld *L, json_t *o, tk_post *pp, const char *where) {
    if (!json_is_object(o)) return bad(L, where, "expected an object");
    const char *t = type_of(o);
    if (!t) return bad(L, where, "missing \"type\"");
    char f[160];
    mk_status st;
    if (!strcmp(t, "ByteLevel")) return MK_OK;
    if (!strcmp(t, "Sequence")) {
        json_t *a = json_object_get(o, "processors");
        snprintf(f, sizeof f, "%s.processors", where);
        if (!json_is_array(a)) return bad(L, f, "expected an array");
        for (size_t i = 0; i < json_array_size(a); i++) {
            snprintf(f, sizeof f, "%s.processors[%zu]", where, i);
            if ((st = parse_post(L, json_array_get(a, i), pp, f))) return st;
        }
        return MK_OK;
    }
    if (!strcmp(t, "RobertaProcessing") || !strcmp(t, "BertProcessing")) {
        json_t *cls = json_object_get(o, "cls"), *sep = json_object_get(o, "sep");
        if (!json_is_array(cls) || !json_is_integer(json_array_get(cls, 1)) || !json_is_array(sep) ||
            !json_is_integer(json_array_get(sep, 1)))
            return bad(L, where, "expected cls and sep as [token, id]");
        if ((st = ids_push(&pp->pre, &pp->n_pre, (int32_t)json_integer_value(json_array_get(cls, 1)))) ||
            (st = ids_push(&pp->post, &pp->n_post, (int32_t)json_integer_value(json_array_get(sep, 1)))))
            return st;
        return MK_OK;
    }
    if (!strcmp(t, "TemplateProcessing")) {
        json_t *single = json_object_get(o, "single"), *sp = json_object_get(o, "special_tokens");
        snprintf(f, sizeof f, "%s.single", where);
        if (!json_is_array(single)) return bad(L, f, "expected an array");
        bool after = false;
        for (size_t i = 0; i < json_array_size(single); i++) {
            json_t *it = json_array_get(single, i);
            snprintf(f, sizeof f, "%s.single[%zu]", where, i);
            if (json_object_get(it, "Sequence")) { after = true; continue; }
            json_t *stk = json_object_get(it, "SpecialToken");
            json_t *id = json_object_get(stk, "id");
            if (!json_is_string(id)) return bad(L, f, "expected {\"SpecialToken\": {\"id\": ...}} or {\"Sequence\": ...}");
            json_t *ent = json_object_get(sp, json_string_value(id));
            json_t *ids = json_object_get(ent, "ids");
            if (!json_is_array(ids))
                return mk_err(MK_ERR_FORMAT, "%s: %s.special_tokens: no entry with ids for '%s'", L->file, where,
                              json_string_value(id));
            for (size_t k = 0; k < json_array_size(ids); k++) {
                json_t *v = json_array_get(ids, k);
                if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
                    return bad(L, f, "special token ids must be non-negative integers");
                if ((st = ids_push(after ? &pp->post : &pp->pre, after ? &pp->n_post : &pp->n_pre,
                                   (int32_t)json_integer_value(v))))
                    return st;
            }
        }
        return MK_OK;
    }
    return mk_err(MK_ERR_UNSUPPORTED, "%s: %s.type: post-processor '%s' is not supported", L->file, where, t);
}

/* ---- model and added tokens ---------------------------------------------------------------- */

bool tk_arena_put(mk_tokenizer *tok, const char *s, size_t n, size_t *off) {
    *off = tok->arena.len;
    return tk_buf_put(&tok->arena, s, n) && tk_buf_putc(&tok->arena, 0);
}

mk_status tk_index_vocab(mk_tokenizer *tok, size_t nv) {
    if (!tk_strmap_init(&tok->vocab, nv)) return MK_ERR_NOMEM;
    for (size_t id = 0; id < tok->n_ids; id++)
        if (tok->tokens[id].s) tk_strmap_put(&tok->vocab, tok->tokens, (uint32_t)id);
    tok->added_keys = mk_calloc(tok->n_added + 1, sizeof *tok->added_keys);
    if (!tok->added_keys || !tk_strmap_init(&tok->added_map, tok->n_added)) return MK_ERR_NOMEM;
    for (size_t i = 0; i < tok->n_added; i++) {
        tok->added_keys[i] = tok->added[i].content;
        if (tk_strmap_get(&tok->added_map, tok->added_keys, tok->added_keys[i].s, tok->added_keys[i].len) < 0)
            tk_strmap_put(&tok->added_map, tok->added_keys, (uint32_t)i);
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        tok->byte_fb[b] = (int32_t)tk_strmap_get(&tok->vocab, tok->tokens, name, 6);
    }
    return MK_OK;
}

mk_status tk_merge_put(mk_tokenizer *tok, const char *a, size_t al, const char *b, size_t bl, uint32_t rank,
                       const char *file, const char *field, const char *vocab_name, tk_buf *cat) {
    int64_t ia = tk_strmap_get(&tok->vocab, tok->tokens, a, al), ib = tk_strmap_get(&tok->vocab, tok->tokens, b, bl);
    if (ia < 0 || ib < 0)
        return mk_err(MK_ERR_FORMAT, "%s: %s: token '%.*s' is not in %s", file, field,
                      (int)(ia < 0 ? MK_MIN(al, 40) : MK_MIN(bl, 40)), ia < 0 ? a : b, vocab_name);
    cat->len = 0;
    size_t skip = tok->csp && bl >= tok->csp_len && !memcmp(b, tok->csp, tok->csp_len) ? tok->csp_len : 0;
    if (!tk_buf_put(cat, a, al) || !tk_buf_put(cat, b + skip, bl - skip)) return MK_ERR_NOMEM;
    int64_t in = tk_strmap_get(&tok->vocab, tok->tokens, cat->p, cat->len);
    if (in < 0)
        return mk_err(MK_ERR_FORMAT, "%s: %s: merged token '%.*s' is not in %s", file, field, (int)MK_MIN(cat->len, 40),
                      cat->p, vocab_name);
    tk_pairmap_put(&tok->merges, (uint32_t)ia, (uint32_t)ib, rank, (uint32_t)in);
    return MK_OK;
}

static mk_status id_of(const ld *L, json_t *v, const char *field, int64_t *id) {
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= INT32_MAX)
        return bad(L, field, "expected a non-negative integer id");
    *id = json_integer_value(v);
    return MK_OK;
}

static mk_status load_model(const ld *L, json_t *root) {
    mk_tokenizer *tok = L->tok;
    mk_status st;
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return bad(L, "model", "expected an object");
    const char *type = type_of(model);
    if (type && strcmp(type, "BPE"))
        return mk_err(MK_ERR_UNSUPPORTED, "%s: model.type: '%s' is not supported (only BPE)", L->file, type);
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab)) return bad(L, "model.vocab", "expected an object {token: id}");
    if (!json_is_array(merges)) return bad(L, "model.merges", "expected an array");
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_array(added) && !json_is_null(added)) return bad(L, "added_tokens", "expected an array");
    size_t n_added = json_is_array(added) ? json_array_size(added) : 0;

    /* ids range */
    int64_t max_id = -1;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        int64_t id;
        char f[64];
        snprintf(f, sizeof f, "model.vocab[\"%.20s\"]", key);
        if ((st = id_of(L, val, f, &id))) return st;
        if (id > max_id) max_id = id;
    }
    for (size_t i = 0; i < n_added; i++) {
        json_t *a = json_array_get(added, i);
        char f[64];
        snprintf(f, sizeof f, "added_tokens[%zu].id", i);
        int64_t id;
        if ((st = id_of(L, json_object_get(a, "id"), f, &id))) return st;
        snprintf(f, sizeof f, "added_tokens[%zu].content", i);
        if (!json_is_string(json_object_get(a, "content"))) return bad(L, f, "expected a string");
        if (id > max_id) max_id = id;
    }
    tok->n_ids = (size_t)(max_id + 1);
    tok->tokens = mk_calloc(tok->n_ids + 1, sizeof *tok->tokens);
    tok->added_by_id = mk_calloc(tok->n_ids + 1, sizeof *tok->added_by_id);
    tok->special = mk_calloc(tok->n_ids + 1, 1);
    size_t *offs = mk_calloc(tok->n_ids + 1, sizeof *offs);
    if (!tok->tokens || !tok->added_by_id || !tok->special || !offs) { free(offs); return MK_ERR_NOMEM; }
    /* copy strings into the arena, then point into it */
    size_t nv = 0;
    json_object_foreach(vocab, key, val) {
        size_t id = (size_t)json_integer_value(val), kl = strlen(key);
        if (!tk_arena_put(tok, key, kl, &offs[id])) { free(offs); return MK_ERR_NOMEM; }
        tok->tokens[id].len = (uint32_t)kl;
        tok->tokens[id].s = (const char *)1; /* marks presence until the arena is final */
        nv++;
    }
    tok->added = mk_calloc(n_added + 1, sizeof *tok->added);
    size_t *aoffs = mk_calloc(n_added + 1, sizeof *aoffs);
    if (!tok->added || !aoffs) { free(offs); free(aoffs); return MK_ERR_NOMEM; }
    tok->n_added = n_added;
    for (size_t i = 0; i < n_added; i++) {
        json_t *a = json_array_get(added, i);
        tk_added *ad = &tok->added[i];
        char w[64];
        snprintf(w, sizeof w, "added_tokens[%zu]", i);
        json_t *c = json_object_get(a, "content");
        ad->id = (int32_t)json_integer_value(json_object_get(a, "id"));
        ad->content.len = (uint32_t)json_string_length(c);
        if (!tk_arena_put(tok, json_string_value(c), json_string_length(c), &aoffs[i])) { st = MK_ERR_NOMEM; goto fail; }
        if ((st = get_bool(L, a, "special", false, &ad->special, w)) ||
            (st = get_bool(L, a, "normalized", !ad->special, &ad->normalized, w)) ||
            (st = get_bool(L, a, "lstrip", false, &ad->lstrip, w)) || (st = get_bool(L, a, "rstrip", false, &ad->rstrip, w)) ||
            (st = get_bool(L, a, "single_word", false, &ad->single_word, w)))
            goto fail;
    }
    for (size_t id = 0; id < tok->n_ids; id++)
        if (tok->tokens[id].s) tok->tokens[id].s = tok->arena.p + offs[id];
    for (size_t i = 0; i < n_added; i++) {
        tk_added *ad = &tok->added[i];
        ad->content.s = tok->arena.p + aoffs[i];
        tok->added_by_id[ad->id] = ad->content;
        tok->special[ad->id] = ad->special;
    }
    free(offs);
    free(aoffs);
    offs = aoffs = NULL;
    if ((st = tk_index_vocab(tok, nv))) return st;

    /* options */
    json_t *v;
    if ((st = get_bool(L, model, "fuse_unk", false, &tok->fuse_unk, "model")) ||
        (st = get_bool(L, model, "byte_fallback", false, &tok->byte_fallback, "model")) ||
        (st = get_bool(L, model, "ignore_merges", false, &tok->ignore_merges, "model")))
        return st;
    v = json_object_get(model, "dropout");
    if (v && !json_is_null(v) && !(json_is_number(v) && json_number_value(v) == 0.0))
        return mk_err(MK_ERR_UNSUPPORTED, "%s: model.dropout: BPE dropout is not supported", L->file);
    tok->unk_id = -1;
    v = json_object_get(model, "unk_token");
    if (json_is_string(v)) tok->unk_id = (int32_t)tk_strmap_get(&tok->vocab, tok->tokens, json_string_value(v), json_string_length(v));
    v = json_object_get(model, "continuing_subword_prefix");
    if (json_is_string(v) && json_string_length(v)) {
        tok->csp = dup_n(json_string_value(v), json_string_length(v));
        tok->csp_len = json_string_length(v);
        if (!tok->csp) return MK_ERR_NOMEM;
    }
    v = json_object_get(model, "end_of_word_suffix");
    if (json_is_string(v) && json_string_length(v)) {
        tok->eow = dup_n(json_string_value(v), json_string_length(v));
        tok->eow_len = json_string_length(v);
        if (!tok->eow) return MK_ERR_NOMEM;
    }
    /* merges: rank = index; a later duplicate pair overwrites (as HF's HashMap collect) */
    size_t nm = json_array_size(merges);
    if (!tk_pairmap_init(&tok->merges, nm)) return MK_ERR_NOMEM;
    tk_buf cat = {0};
    for (size_t i = 0; i < nm; i++) {
        json_t *m = json_array_get(merges, i);
        const char *a, *b;
        size_t al, bl;
        char f[48];
        snprintf(f, sizeof f, "model.merges[%zu]", i);
        if (json_is_string(m)) {
            a = json_string_value(m);
            const char *sp = memchr(a, ' ', json_string_length(m));
            if (!sp) { tk_buf_free(&cat); return bad(L, f, "expected \"a b\" (two tokens separated by a space)"); }
            al = (size_t)(sp - a);
            b = sp + 1;
            bl = json_string_length(m) - al - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            al = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            bl = json_string_length(json_array_get(m, 1));
        } else {
            tk_buf_free(&cat);
            return bad(L, f, "expected \"a b\" or [\"a\", \"b\"]");
        }
        if ((st = tk_merge_put(tok, a, al, b, bl, (uint32_t)i, L->file, f, "model.vocab", &cat))) {
            tk_buf_free(&cat);
            return st;
        }
    }
    tk_buf_free(&cat);
    return MK_OK;
fail:
    free(offs);
    free(aoffs);
    return st;
}

mk_status tk_build_tries(mk_tokenizer *tok) {
    tok->norm_contents = mk_calloc(tok->n_added + 1, sizeof *tok->norm_contents);
    if (!tok->norm_contents) return MK_ERR_NOMEM;
    tk_buf out = {0}, tmp = {0};
    for (size_t i = 0; i < tok->n_added; i++) {
        const tk_added *ad = &tok->added[i];
        if (!ad->normalized) {
            if (!tk_trie_add(&tok->trie_raw, ad->content.s, ad->content.len, (int32_t)i)) goto nomem;
            continue;
        }
        mk_status st = tk_normalize(tok->norm, ad->content.s, ad->content.len, &out, &tmp);
        if (st) { tk_buf_free(&out); tk_buf_free(&tmp); return st; }
        tok->norm_contents[i] = dup_n(out.p ? out.p : "", out.len);
        if (!tok->norm_contents[i] || !tk_trie_add(&tok->trie_norm, tok->norm_contents[i], out.len, (int32_t)i)) goto nomem;
    }
    tk_buf_free(&out);
    tk_buf_free(&tmp);
    return MK_OK;
nomem:
    tk_buf_free(&out);
    tk_buf_free(&tmp);
    return MK_ERR_NOMEM;
}

/* ---- configs -------------------------------------------------------------------------------- */

static int32_t token_ref(const mk_tokenizer *tok, json_t *v) {
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v)) return -1;
    return mk_tokenizer_token_to_id(tok, json_string_value(v), json_string_length(v));
}

static int32_t id_ref(json_t *v) {
    if (json_is_array(v)) v = json_array_get(v, 0);
    return json_is_number(v) && json_number_value(v) >= 0 && json_number_value(v) < INT32_MAX
               ? (int32_t)json_number_value(v) : -1;
}

static mk_status load_configs(mk_tokenizer *tok, const char *dir) {
    tok->bos_id = tok->eos_id = tok->pad_id = -1;
    if (!dir) return MK_OK;
    char *p = mk_path_join(dir, "tokenizer_config.json");
    if (!p) return MK_ERR_NOMEM;
    if (mk_file_exists(p)) {
        json_error_t e;
        json_t *j = json_load_file(p, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &e); /* model_max_length can exceed int64 */
        if (!j) {
            mk_status st = mk_err(MK_ERR_FORMAT, "%s: line %d: %s", p, e.line, e.text);
            free(p);
            return st;
        }
        tok->bos_id = token_ref(tok, json_object_get(j, "bos_token"));
        tok->eos_id = token_ref(tok, json_object_get(j, "eos_token"));
        tok->pad_id = token_ref(tok, json_object_get(j, "pad_token"));
        tok->add_bos = json_is_true(json_object_get(j, "add_bos_token"));
        json_decref(j);
    }
    free(p);
    p = mk_path_join(dir, "config.json");
    if (!p) return MK_ERR_NOMEM;
    if ((tok->bos_id < 0 || tok->eos_id < 0 || tok->pad_id < 0) && mk_file_exists(p)) {
        json_t *j = json_load_file(p, JSON_DECODE_INT_AS_REAL, NULL);
        if (j) {
            if (tok->bos_id < 0) tok->bos_id = id_ref(json_object_get(j, "bos_token_id"));
            if (tok->eos_id < 0) tok->eos_id = id_ref(json_object_get(j, "eos_token_id"));
            if (tok->pad_id < 0) tok->pad_id = id_ref(json_object_get(j, "pad_token_id"));
            json_decref(j);
        }
    }
    free(p);
    return MK_OK;
}

/* ---- public ------------------------------------------------------------------------------------ */

mk_tokenizer *tk_new(const char *path) {
    mk_tokenizer *tok = mk_calloc(1, sizeof *tok);
    if (!tok) return NULL;
    if (!(tok->path = mk_strdup(path))) { free(tok); return NULL; }
    pthread_mutex_init(&tok->lock, NULL);
    tok->bos_id = tok->eos_id = tok->pad_id = tok->unk_id = -1;
    return tok;
}

bool mk_tokenizer_present(const char *path) {
    struct stat sb;
    if (!path || stat(path, &sb) != 0) return false;
    if (S_ISDIR(sb.st_mode)) {
        char *file = mk_path_join(path, "tokenizer.json");
        bool ok = file && mk_file_exists(file);
        free(file);
        return ok;
    }
    if (!mk_gguf_sniff(path)) return true;
    mk_gguf *g = NULL;
    bool ok = mk_gguf_open(&g, path) == MK_OK && mk_tokenizer_gguf_present(g);
    mk_gguf_free(g);
    return ok;
}

mk_status mk_tokenizer_load(const char *path, mk_tokenizer **out) {
    if (!path || !out) return mk_err(MK_ERR_ARG, "mk_tokenizer_load: NULL argument");
    *out = NULL;
    tk_bytelevel_init();
    struct stat sb;
    if (stat(path, &sb) != 0) return mk_err(MK_ERR_IO, "%s: no such file or directory", path);
    if (S_ISREG(sb.st_mode) && mk_gguf_sniff(path)) {
        mk_gguf *g = NULL;
        mk_status st = mk_gguf_open(&g, path);
        if (!st) st = mk_tokenizer_from_gguf(g, out);
        mk_gguf_free(g);
        return st;
    }
    char *file, *dir = NULL;
    if (S_ISDIR(sb.st_mode)) {
        file = mk_path_join(path, "tokenizer.json");
        dir = mk_strdup(path);
        if (file && !mk_file_exists(file)) {
            mk_status st = mk_err(MK_ERR_MISSING, "%s: no tokenizer.json in this directory", path);
            free(file);
            free(dir);
            return st;
        }
    } else {
        file = mk_strdup(path);
        /* a file named tokenizer.json takes its configs from beside it */
        const char *slash = strrchr(path, '/');
        const char *base = slash ? slash + 1 : path;
        if (!strcmp(base, "tokenizer.json")) dir = slash ? dup_n(path, (size_t)(slash - path)) : mk_strdup(".");
    }
    if (!file) { free(dir); return MK_ERR_NOMEM; }
    mk_tokenizer *tok = tk_new(file);
    free(file);
    if (!tok) { free(dir); return MK_ERR_NOMEM; }
    file = tok->path;
    ld L = {tok, file};
    mk_status st;
    char *text = NULL;
    size_t len;
    json_t *root = NULL;
    if ((st = mk_read_file(file, &text, &len))) goto fail;
    json_error_t e;
    root = json_loadb(text, len, JSON_ALLOW_NUL, &e);
    free(text);
    if (!root) { st = mk_err(MK_ERR_FORMAT, "%s: line %d: malformed JSON: %s", file, e.line, e.text); goto fail; }
    if (!json_is_object(root)) { st = bad(&L, "(top level)", "expected an object"); goto fail; }
    json_t *v = json_object_get(root, "normalizer");
    if (v && !json_is_null(v)) {
        if (!(tok->norm = mk_calloc(1, sizeof *tok->norm))) { st = MK_ERR_NOMEM; goto fail; }
        if ((st = parse_norm(&L, v, tok->norm, "normalizer"))) goto fail;
    }
    v = json_object_get(root, "pre_tokenizer");
    if (v && !json_is_null(v) && (st = parse_pre(&L, v, &tok->pre, &tok->n_pre, "pre_tokenizer"))) goto fail;
    v = json_object_get(root, "decoder");
    if (v && !json_is_null(v)) {
        tok->has_decoder = true;
        if ((st = parse_dec(&L, v, &tok->dec, &tok->n_dec, "decoder"))) goto fail;
    }
    if ((st = load_model(&L, root))) goto fail;
    v = json_object_get(root, "post_processor");
    if (v && !json_is_null(v) && (st = parse_post(&L, v, &tok->post, "post_processor"))) goto fail;
    if ((st = tk_build_tries(tok))) goto fail;
    json_decref(root);
    root = NULL;
    if ((st = load_configs(tok, dir))) goto fail;
    free(dir);
    *out = tok;
    return MK_OK;
fail:
    if (root) json_decref(root);
    free(dir);
    mk_tokenizer_free(tok);
    return st;
}

void mk_tokenizer_free(mk_tokenizer *tok) {
    if (!tok) return;
    free(tok->path);
    free(tok->tokens);
    tk_strmap_free(&tok->vocab);
    tk_pairmap_free(&tok->merges);
    free(tok->csp);
    free(tok->eow);
    free(tok->added);
    free(tok->added_by_id);
    free(tok->special);
    tk_strmap_free(&tok->added_map);
    free(tok->added_keys);
    tk_trie_free(&tok->trie_raw);
    tk_trie_free(&tok->trie_norm);
    if (tok->norm_contents)
        for (size_t i = 0; i < tok->n_added; i++) free(tok->norm_contents[i]);
    free(tok->norm_contents);
    if (tok->norm) tk_norm_free(tok->norm);
    free(tok->norm);
    for (size_t i = 0; i < tok->n_pre; i++) {
        if (tok->pre[i].re) pcre2_code_free(tok->pre[i].re);
        free(tok->pre[i].src.s);
    }
    free(tok->pre);
    for (size_t i = 0; i < tok->n_dec; i++) {
        if (tok->dec[i].re) pcre2_code_free(tok->dec[i].re);
        free(tok->dec[i].content);
    }
    free(tok->dec);
    free(tok->post.pre);
    free(tok->post.post);
    tk_buf_free(&tok->arena);
    tk_scratch_free(tok->shared);
    pthread_mutex_destroy(&tok->lock);
    free(tok);
}

size_t mk_tokenizer_vocab_size(const mk_tokenizer *tok) { return tok ? tok->n_ids : 0; }

const char *mk_tokenizer_id_to_token(const mk_tokenizer *tok, int32_t id, size_t *len) {
    if (!tok || id < 0 || (size_t)id >= tok->n_ids) return NULL;
    const tk_str *t = tok->added_by_id[id].s ? &tok->added_by_id[id] : &tok->tokens[id];
    if (!t->s) return NULL;
    if (len) *len = t->len;
    return t->s;
}

int32_t mk_tokenizer_token_to_id(const mk_tokenizer *tok, const char *token, size_t len) {
    if (!tok || (!token && len)) return -1;
    int64_t i = tk_strmap_get(&tok->added_map, tok->added_keys, token ? token : "", len);
    if (i >= 0) return tok->added[i].id;
    return (int32_t)tk_strmap_get(&tok->vocab, tok->tokens, token ? token : "", len);
}

bool mk_tokenizer_is_special(const mk_tokenizer *tok, int32_t id) {
    return tok && id >= 0 && (size_t)id < tok->n_ids && tok->special[id];
}

int32_t mk_tokenizer_bos_id(const mk_tokenizer *tok) { return tok ? tok->bos_id : -1; }
int32_t mk_tokenizer_eos_id(const mk_tokenizer *tok) { return tok ? tok->eos_id : -1; }
bool mk_tokenizer_add_bos(const mk_tokenizer *tok) { return tok && tok->add_bos; }
