/* Tokenizers in GGUF metadata (tok_gguf.h): llama.cpp's tokenizer.* keys read into the same
 * mk_tokenizer as tokenizer.json (same BPE engine, regexes, byte-level mapping), and written from it. */
#include "tok_gguf.h"
#include "tok_internal.h"

#include <float.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum { TT_UNDEFINED = 0, TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

#define K_MODEL "tokenizer.ggml.model"
#define K_PRE "tokenizer.ggml.pre"
#define K_TOKENS "tokenizer.ggml.tokens"
#define K_TYPES "tokenizer.ggml.token_type"
#define K_SCORES "tokenizer.ggml.scores"
#define K_MERGES "tokenizer.ggml.merges"
#define K_BOS "tokenizer.ggml.bos_token_id"
#define K_EOS "tokenizer.ggml.eos_token_id"
#define K_UNK "tokenizer.ggml.unknown_token_id"
#define K_PAD "tokenizer.ggml.padding_token_id"
#define K_ADD_BOS "tokenizer.ggml.add_bos_token"
#define K_ADD_EOS "tokenizer.ggml.add_eos_token"
#define K_ADD_PREFIX "tokenizer.ggml.add_space_prefix"
#define K_TEMPLATE "tokenizer.chat_template"
#define K_TEMPLATES "tokenizer.chat_templates"

#define MAX_TOKEN_BYTES (1u << 20)
/* SentencePiece pieces are at most 16 characters by default; longer tokens get no rebuilt merges
 * (the rebuild costs the square of a token's length). */
#define MAX_SPM_MERGED_BYTES 1024
#define SPM_SPACE "\xE2\x96\x81" /* ▁ U+2581 */

/* ---- pre-tokenizers by llama.cpp name ------------------------------------------------------------
 * Each name stands for what the tokenizer.json of its family does before BPE: Split(Isolated)
 * steps with these regexes (as the tokenizer.json spells them) then ByteLevel without regex, or
 * (re NULL) ByteLevel with the GPT-2 regex; an NFC normalizer or none; and ignore_merges. The
 * regexes are HF's originals (llama-vocab.cpp rewrites some for its own engine, same splits).
 * gpt-4o: llama.cpp does not set ignore_merges; the o200k tokenizer.json (GPT-OSS) does, and
 * HF tokenizers is the reference. smaug-bpe is llama-bpe's regex without ignore_merges (what an
 * HF-trained BPE with the Llama-3 regex, such as the testbed's, does). */
static const char *const re_qwen2[] = {
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
static const char *const re_llama3[] = {
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
static const char *const re_deepseek_v3[] = {
    "\\p{N}{1,3}",
    "[\344\270\200-\351\276\245\343\201\200-\343\202\237\343\202\240-\343\203\277]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"};
static const char *const re_gpt4o[] = {
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
/* llama.cpp's fallback for unknown or missing names */
static const char *const re_default[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|]+", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)", "\\p{N}+",
    "[0-9][0-9][0-9]"};

typedef struct pre_desc {
    const char *name;
    const char *aliases[3];   /* other names llama.cpp reads as the same */
    const char *const *re;    /* NULL: ByteLevel with the GPT-2 regex */
    size_t n_re;
    bool nfc, ignore_merges;
} pre_desc;

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))
static const pre_desc PRES[] = {
    {"qwen2", {"deepseek-r1-qwen"}, re_qwen2, N_OF(re_qwen2), true, false},
    {"llama-bpe", {"llama3", "llama-v3"}, re_llama3, N_OF(re_llama3), false, true},
    {"smaug-bpe", {"dbrx"}, re_llama3, N_OF(re_llama3), false, false},
    {"olmo", {NULL}, NULL, 0, true, false},
    {"gpt-2", {NULL}, NULL, 0, false, false},
    {"deepseek-v3", {NULL}, re_deepseek_v3, N_OF(re_deepseek_v3), false, false},
    {"gpt-4o", {NULL}, re_gpt4o, N_OF(re_gpt4o), false, true},
    {"default", {NULL}, re_default, N_OF(re_default), false, false},
};
#define PRE_DEFAULT (&PRES[N_OF(PRES) - 1])

static const pre_desc *pre_by_name(const char *name) {
    for (size_t i = 0; i < N_OF(PRES); i++) {
        if (!strcmp(PRES[i].name, name)) return &PRES[i];
        for (size_t k = 0; k < N_OF(PRES[i].aliases) && PRES[i].aliases[k]; k++)
            if (!strcmp(PRES[i].aliases[k], name)) return &PRES[i];
    }
    return NULL;
}

/* ==== reading ==================================================================================== */

typedef struct rd {
    const mk_gguf *g;
    const char *file;
    mk_tokenizer *tok;
    uint64_t n;    /* entries of tokenizer.ggml.tokens */
    uint8_t *type; /* (n) token types; TT_UNUSED also for empty strings */
} rd;

static mk_status kerr(const rd *R, const char *key, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mk_err(MK_ERR_FORMAT, "%s: %s: %s", R->file, key, msg);
}

/* The array at key: elements of type t1 or t2, n entries when n > 0. *out NULL if absent and optional. */
static mk_status get_array(const rd *R, const char *key, bool required, mk_gguf_type t1, mk_gguf_type t2, uint64_t n,
                           const mk_gguf_kv **out) {
    const mk_gguf_kv *kv = mk_gguf_find(R->g, key);
    *out = NULL;
    if (!kv) return required ? mk_err(MK_ERR_FORMAT, "%s: metadata key '%s' is missing", R->file, key) : MK_OK;
    if (kv->type != MK_GGUF_ARRAY)
        return kerr(R, key, "expected an array of %s, not a %s", mk_gguf_type_name(t1), mk_gguf_type_name(kv->type));
    if (kv->arr_type != t1 && kv->arr_type != t2)
        return kerr(R, key, "expected an array of %s, not an array of %s", mk_gguf_type_name(t1), mk_gguf_type_name(kv->arr_type));
    if (n && kv->n != n)
        return kerr(R, key, "%llu entries, but %s has %llu", (unsigned long long)kv->n, K_TOKENS, (unsigned long long)n);
    *out = kv;
    return MK_OK;
}

/* An optional token id: absent gives def, else an integer indexing tokenizer.ggml.tokens. */
static mk_status get_id(const rd *R, const char *key, int32_t def, int32_t *out) {
    int64_t v;
    mk_status st = mk_gguf_get_int(R->g, key, &v);
    if (st == MK_ERR_MISSING) {
        *out = def >= 0 && (uint64_t)def < R->n && R->type[def] != TT_UNUSED ? def : -1;
        return MK_OK;
    }
    if (st) return st;
    if (v < 0 || (uint64_t)v >= R->n)
        return kerr(R, key, "token id %lld is out of range (%s has %llu entries)", (long long)v, K_TOKENS, (unsigned long long)R->n);
    *out = (int32_t)v;
    return MK_OK;
}

static mk_status get_bool_opt(const rd *R, const char *key, bool def, bool *out) {
    mk_status st = mk_gguf_get_bool(R->g, key, out);
    if (st == MK_ERR_MISSING) {
        *out = def;
        return MK_OK;
    }
    (void)R;
    return st;
}

/* tokens, token types, added tokens, vocabulary index, duplicate check */
static mk_status read_tokens(rd *R) {
    mk_tokenizer *tok = R->tok;
    const mk_gguf_kv *toks, *types;
    mk_status st = get_array(R, K_TOKENS, true, MK_GGUF_STRING, MK_GGUF_STRING, 0, &toks);
    if (st) return st;
    R->n = toks->n;
    if (R->n == 0 || R->n >= INT32_MAX) return kerr(R, K_TOKENS, "%llu entries (must be 1..%d)", (unsigned long long)R->n, INT32_MAX - 1);
    if ((st = get_array(R, K_TYPES, false, MK_GGUF_I32, MK_GGUF_I32, R->n, &types))) return st;
    if (!(R->type = mk_malloc((size_t)R->n))) return MK_ERR_NOMEM;
    size_t bytes = 0, n_added = 0, nv = 0;
    int64_t max_id = -1;
    for (uint64_t i = 0; i < R->n; i++) {
        int64_t t = TT_NORMAL;
        if (types && (!mk_gguf_arr_int(types, i, &t) || t < TT_UNDEFINED || t > TT_BYTE))
            return kerr(R, K_TYPES, "entry %llu is %lld, not a token type (1..6)", (unsigned long long)i, (long long)t);
        if (t == TT_UNDEFINED) t = TT_NORMAL;
        const char *p;
        uint64_t len;
        mk_gguf_arr_str(toks, i, &p, &len);
        if (len > MAX_TOKEN_BYTES)
            return kerr(R, K_TOKENS, "entry %llu is %llu bytes long (at most %u)", (unsigned long long)i, (unsigned long long)len, MAX_TOKEN_BYTES);
        if (len == 0) t = TT_UNUSED;
        R->type[i] = (uint8_t)t;
        if (t == TT_UNUSED) continue;
        bytes += (size_t)len + 1;
        nv++;
        max_id = (int64_t)i;
        n_added += t == TT_CONTROL || t == TT_USER || t == TT_UNKNOWN;
    }
    if (max_id < 0) return kerr(R, K_TOKENS, "no token in use (all %llu are unused or empty)", (unsigned long long)R->n);
    tok->n_ids = (size_t)max_id + 1;
    tok->tokens = mk_calloc(tok->n_ids + 1, sizeof *tok->tokens);
    tok->added_by_id = mk_calloc(tok->n_ids + 1, sizeof *tok->added_by_id);
    tok->special = mk_calloc(tok->n_ids + 1, 1);
    tok->added = mk_calloc(n_added + 1, sizeof *tok->added);
    if (!tok->tokens || !tok->added_by_id || !tok->special || !tok->added || !tk_buf_reserve(&tok->arena, bytes)) return MK_ERR_NOMEM;
    /* the arena holds all bytes up front: pointers into it stay valid */
    for (size_t id = 0; id < tok->n_ids; id++) {
        const int t = R->type[id];
        if (t == TT_UNUSED) continue;
        const char *p;
        uint64_t len;
        size_t off;
        mk_gguf_arr_str(toks, id, &p, &len);
        tk_arena_put(tok, p, (size_t)len, &off);
        tok->tokens[id] = (tk_str){tok->arena.p + off, (uint32_t)len};
        if (t == TT_CONTROL || t == TT_USER || t == TT_UNKNOWN) {
            tk_added *ad = &tok->added[tok->n_added++];
            ad->content = tok->tokens[id];
            ad->id = (int32_t)id;
            ad->special = t != TT_USER;
            tok->added_by_id[id] = ad->content;
            tok->special[id] = ad->special;
        }
    }
    if ((st = tk_index_vocab(tok, nv))) return st;
    for (size_t id = 0; id < tok->n_ids; id++) {
        const tk_str *s = &tok->tokens[id];
        if (!s->s) continue;
        int64_t j = tk_strmap_get(&tok->vocab, tok->tokens, s->s, s->len);
        if (j != (int64_t)id)
            return kerr(R, K_TOKENS, "entries %zu and %lld are the same token '%.*s'", id, (long long)j, (int)MK_MIN(s->len, 40u), s->s);
    }
    return MK_OK;
}

static mk_status read_merges(rd *R) {
    mk_tokenizer *tok = R->tok;
    const mk_gguf_kv *mg;
    mk_status st = get_array(R, K_MERGES, true, MK_GGUF_STRING, MK_GGUF_STRING, 0, &mg);
    if (st) return st;
    if (mg->n >= UINT32_MAX) return kerr(R, K_MERGES, "%llu entries (too many)", (unsigned long long)mg->n);
    if (!tk_pairmap_init(&tok->merges, (size_t)mg->n)) return MK_ERR_NOMEM;
    tk_buf cat = {0};
    for (uint64_t i = 0; i < mg->n && !st; i++) {
        const char *p;
        uint64_t len;
        char f[64];
        mk_gguf_arr_str(mg, i, &p, &len);
        snprintf(f, sizeof f, "%s[%llu]", K_MERGES, (unsigned long long)i);
        /* as llama.cpp: split at the first space after the first byte */
        const char *sp = len > 1 ? memchr(p + 1, ' ', (size_t)len - 1) : NULL;
        if (!sp) st = mk_err(MK_ERR_FORMAT, "%s: %s: expected two tokens separated by a space", R->file, f);
        else st = tk_merge_put(tok, p, (size_t)(sp - p), sp + 1, (size_t)(p + len - sp - 1), (uint32_t)i, R->file, f, K_TOKENS, &cat);
    }
    tk_buf_free(&cat);
    return st;
}

typedef struct smerge {
    float score;
    int32_t t, l, r;
} smerge;

static int cmp_smerge(const void *a, const void *b) {
    const smerge *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return x->l < y->l ? -1 : x->l > y->l;
}

/* SentencePiece-style vocabularies: every split of a normal token into two tokens is a merge,
 * ranked by the token's score (highest first), then its id and the left part's id. */
static mk_status spm_merges(rd *R) {
    mk_tokenizer *tok = R->tok;
    const mk_gguf_kv *sc;
    mk_status st = get_array(R, K_SCORES, false, MK_GGUF_F32, MK_GGUF_I32, R->n, &sc);
    if (st) return st;
    smerge *m = NULL;
    size_t n = 0, cap = 0;
    for (size_t id = 0; id < tok->n_ids; id++) {
        const tk_str *s = &tok->tokens[id];
        if (!s->s || R->type[id] != TT_NORMAL || s->len < 2 || s->len > MAX_SPM_MERGED_BYTES) continue;
        double score = 0;
        if (sc && !mk_gguf_arr_float(sc, id, &score)) score = 0;
        float f = score == score ? (float)MK_MAX(MK_MIN(score, (double)FLT_MAX), -(double)FLT_MAX) : -FLT_MAX;
        for (size_t k = tk_utf8_len((unsigned char)s->s[0]); k < s->len; k += tk_utf8_len((unsigned char)s->s[k])) {
            int64_t l = tk_strmap_get(&tok->vocab, tok->tokens, s->s, k), r = tk_strmap_get(&tok->vocab, tok->tokens, s->s + k, s->len - k);
            if (l < 0 || r < 0) continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 1024;
                smerge *p = mk_realloc(m, cap * sizeof *p);
                if (!p) { free(m); return MK_ERR_NOMEM; }
                m = p;
            }
            m[n++] = (smerge){f, (int32_t)id, (int32_t)l, (int32_t)r};
        }
    }
    if (n) qsort(m, n, sizeof *m, cmp_smerge);
    if (n >= UINT32_MAX || !tk_pairmap_init(&tok->merges, n)) { free(m); return MK_ERR_NOMEM; }
    for (size_t i = 0; i < n; i++) tk_pairmap_put(&tok->merges, (uint32_t)m[i].l, (uint32_t)m[i].r, (uint32_t)i, (uint32_t)m[i].t);
    free(m);
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

/* A literal Replace(from -> to) normalizer or decoder step's parts. */
static mk_status literal_replace(const char *from, const char *to, const char *where, pcre2_code **re, char **content, size_t *clen) {
    if (!(*re = tk_regex_compile(from, strlen(from), true, where))) return MK_ERR_INTERNAL;
    *clen = strlen(to);
    return (*content = dup_n(to, *clen)) ? MK_OK : MK_ERR_NOMEM;
}

/* gpt2: the pre-tokenizer, normalizer and decoder a tokenizer.ggml.pre name stands for. */
static mk_status gpt2_pipeline(rd *R, const pre_desc *pd) {
    mk_tokenizer *tok = R->tok;
    char where[300];
    snprintf(where, sizeof where, "%s: %s '%s'", R->file, K_PRE, pd->name);
    if (pd->nfc) {
        if (!(tok->norm = mk_calloc(1, sizeof *tok->norm))) return MK_ERR_NOMEM;
        tok->norm->kind = TN_NFC;
    }
    size_t n = pd->re ? pd->n_re + 1 : 1;
    if (!(tok->pre = mk_calloc(n, sizeof *tok->pre))) return MK_ERR_NOMEM;
    for (size_t i = 0; pd->re && i < pd->n_re; i++) {
        tk_pre *p = &tok->pre[tok->n_pre++];
        p->kind = TP_SPLIT;
        p->behavior = TB_ISOLATED;
        p->src.len = strlen(pd->re[i]);
        if (!(p->src.s = dup_n(pd->re[i], p->src.len))) return MK_ERR_NOMEM;
        if (!(p->re = tk_regex_compile(pd->re[i], p->src.len, false, where))) return MK_ERR_INTERNAL;
    }
    tk_pre *bl = &tok->pre[tok->n_pre++];
    bl->kind = TP_BYTELEVEL;
    if (!pd->re && !(bl->re = tk_regex_compile(TK_GPT2_PATTERN, strlen(TK_GPT2_PATTERN), false, where))) return MK_ERR_INTERNAL;
    if (!(tok->dec = mk_calloc(1, sizeof *tok->dec))) return MK_ERR_NOMEM;
    tok->dec[0].kind = TD_BYTELEVEL;
    tok->n_dec = 1;
    tok->has_decoder = true;
    tok->ignore_merges = pd->ignore_merges;
    return MK_OK;
}

/* llama (SentencePiece-style): ▁ for spaces (and a ▁ prefix), byte fallback; the decoder undoes it. */
static mk_status spm_pipeline(rd *R, bool add_prefix) {
    mk_tokenizer *tok = R->tok;
    char where[300];
    snprintf(where, sizeof where, "%s: %s 'llama'", R->file, K_MODEL);
    mk_status st;
    tk_norm *nz = tok->norm = mk_calloc(1, sizeof *tok->norm);
    if (!nz) return MK_ERR_NOMEM;
    if (add_prefix) {
        nz->kind = TN_SEQ;
        if (!(nz->kids = mk_calloc(2, sizeof *nz->kids))) return MK_ERR_NOMEM;
        nz->n_kids = 2;
        nz->kids[0].kind = TN_PREPEND;
        nz->kids[0].content_len = strlen(SPM_SPACE);
        if (!(nz->kids[0].content = dup_n(SPM_SPACE, nz->kids[0].content_len))) return MK_ERR_NOMEM;
        nz = &nz->kids[1];
    }
    nz->kind = TN_REPLACE;
    if ((st = literal_replace(" ", SPM_SPACE, where, &nz->re, &nz->content, &nz->content_len))) return st;
    nz->src = (tk_src){dup_n(" ", 1), 1, true};
    if (!nz->src.s) return MK_ERR_NOMEM;
    if (!(tok->dec = mk_calloc(4, sizeof *tok->dec))) return MK_ERR_NOMEM;
    tk_dec *d = tok->dec;
    d[0].kind = TD_REPLACE;
    if ((st = literal_replace(SPM_SPACE, " ", where, &d[0].re, &d[0].content, &d[0].content_len))) return st;
    d[1].kind = TD_BYTEFALLBACK;
    d[2].kind = TD_FUSE;
    tok->n_dec = 3;
    if (add_prefix) {
        d[3].kind = TD_STRIP;
        d[3].start = 1;
        d[3].content_len = 1;
        if (!(d[3].content = dup_n(" ", 1))) return MK_ERR_NOMEM;
        tok->n_dec = 4;
    }
    tok->has_decoder = true;
    tok->byte_fallback = true;
    tok->fuse_unk = true;
    return MK_OK;
}

static mk_status push_id(int32_t **a, size_t *n, int32_t id) {
    int32_t *p = mk_realloc(*a, (*n + 1) * sizeof *p);
    if (!p) return MK_ERR_NOMEM;
    *a = p;
    p[(*n)++] = id;
    return MK_OK;
}

static mk_status read_all(rd *R, bool spm, const pre_desc *pd) {
    mk_tokenizer *tok = R->tok;
    mk_status st;
    bool add_bos, add_eos, add_prefix = true;
    if ((st = read_tokens(R))) return st;
    if ((st = spm ? spm_merges(R) : read_merges(R))) return st;
    if (spm && (st = get_bool_opt(R, K_ADD_PREFIX, true, &add_prefix))) return st;
    if ((st = spm ? spm_pipeline(R, add_prefix) : gpt2_pipeline(R, pd))) return st;
    /* llama.cpp's defaults when the keys are absent: llama bos 1, eos 2, unk 0, BOS added */
    if ((st = get_id(R, K_BOS, spm ? 1 : -1, &tok->bos_id)) || (st = get_id(R, K_EOS, spm ? 2 : -1, &tok->eos_id)) ||
        (st = get_id(R, K_UNK, spm ? 0 : -1, &tok->unk_id)) || (st = get_id(R, K_PAD, -1, &tok->pad_id)) ||
        (st = get_bool_opt(R, K_ADD_BOS, spm, &add_bos)) || (st = get_bool_opt(R, K_ADD_EOS, false, &add_eos)))
        return st;
    if (tok->unk_id >= 0 && R->type[tok->unk_id] == TT_UNUSED) tok->unk_id = -1;
    if (add_bos && tok->bos_id < 0) return kerr(R, K_ADD_BOS, "true, but there is no %s", K_BOS);
    if (add_eos && tok->eos_id < 0) return kerr(R, K_ADD_EOS, "true, but there is no %s", K_EOS);
    if (add_bos && (st = push_id(&tok->post.pre, &tok->post.n_pre, tok->bos_id))) return st;
    if (add_eos && (st = push_id(&tok->post.post, &tok->post.n_post, tok->eos_id))) return st;
    tok->add_bos = add_bos;
    return tk_build_tries(tok);
}

bool mk_tokenizer_gguf_present(const mk_gguf *g) {
    const mk_gguf_kv *kv = mk_gguf_find(g, K_MODEL);
    return kv && !(kv->type == MK_GGUF_STRING && kv->str_len == 4 && !memcmp(kv->data, "none", 4));
}

mk_status mk_tokenizer_from_gguf(const mk_gguf *g, mk_tokenizer **out) {
    *out = NULL;
    const char *file = g->map.path;
    char model[32], pre[64];
    mk_status st = mk_gguf_get_str(g, K_MODEL, model, sizeof model);
    if (st == MK_ERR_MISSING) return mk_err(MK_ERR_MISSING, "%s: no tokenizer in this GGUF file (metadata key '%s' is missing)", file, K_MODEL);
    if (st) return st;
    if (!strcmp(model, "none")) return mk_err(MK_ERR_MISSING, "%s: no tokenizer in this GGUF file (%s is 'none')", file, K_MODEL);
    const bool spm = !strcmp(model, "llama");
    if (!spm && strcmp(model, "gpt2"))
        return mk_err(MK_ERR_UNSUPPORTED, "%s: %s '%s' is not supported (only gpt2 and llama)", file, K_MODEL, model);
    const pre_desc *pd = NULL;
    if (!spm) {
        st = mk_gguf_get_str(g, K_PRE, pre, sizeof pre);
        if (st == MK_ERR_MISSING) pd = PRE_DEFAULT; /* as llama.cpp */
        else if (st) return st;
        else if (!(pd = pre_by_name(pre)))
            return mk_err(MK_ERR_UNSUPPORTED,
                          "%s: %s '%s' is not supported (known: qwen2, llama-bpe, smaug-bpe, olmo, gpt-2, deepseek-v3, gpt-4o, default)",
                          file, K_PRE, pre);
    }
    mk_tokenizer *tok = tk_new(file);
    if (!tok) return MK_ERR_NOMEM;
    tk_bytelevel_init();
    rd R = {.g = g, .file = file, .tok = tok};
    st = read_all(&R, spm, pd);
    free(R.type);
    if (st) {
        mk_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return MK_OK;
}

/* ==== writing ==================================================================================== */

typedef struct wr {
    const mk_tokenizer *tok;
    mk_tok_gguf_info *info;
    mk_gguf_writer *w;
    const char **names;    /* named chat templates written */
    size_t n_names;
} wr;

static void warn(mk_tok_gguf_info *info, const char *fmt, ...) {
    size_t l = strlen(info->warning);
    if (l + 3 >= sizeof info->warning) return;
    if (l) {
        memcpy(info->warning + l, "; ", 3);
        l += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(info->warning + l, sizeof info->warning - l, fmt, ap);
    va_end(ap);
}

static bool norm_none(const tk_norm *n) { return !n || (n->kind == TN_SEQ && n->n_kids == 0); }
static bool norm_nfc(const tk_norm *n) {
    return n && (n->kind == TN_NFC || (n->kind == TN_SEQ && n->n_kids == 1 && n->kids[0].kind == TN_NFC));
}
static bool is_space_replace(const tk_norm *n) {
    return n->kind == TN_REPLACE && n->src.literal && n->src.len == 1 && n->src.s[0] == ' ' && n->content_len == strlen(SPM_SPACE) &&
           !memcmp(n->content, SPM_SPACE, n->content_len);
}

/* gpt2: the llama.cpp pre-tokenizer name of tok's pipeline, or NULL if it has no byte-level step. */
static const pre_desc *classify_gpt2(const mk_tokenizer *tok, mk_tok_gguf_info *info) {
    if (!tok->n_pre || tok->pre[tok->n_pre - 1].kind != TP_BYTELEVEL) return NULL;
    const tk_pre *last = &tok->pre[tok->n_pre - 1];
    bool ok = !last->add_prefix_space && (!last->re || tok->n_pre == 1);
    for (size_t i = 0; ok && i + 1 < tok->n_pre; i++) {
        const tk_pre *p = &tok->pre[i];
        ok = p->kind == TP_SPLIT && p->behavior == TB_ISOLATED && !p->invert && p->src.s && !p->src.literal;
    }
    const bool nfc = norm_nfc(tok->norm);
    const pre_desc *by_re = NULL;
    for (size_t k = 0; ok && k < N_OF(PRES); k++) {
        const pre_desc *pd = &PRES[k];
        bool same = last->re ? !pd->re : pd->re && pd->n_re == tok->n_pre - 1;
        for (size_t i = 0; same && pd->re && i < pd->n_re; i++)
            same = tok->pre[i].src.len == strlen(pd->re[i]) && !memcmp(tok->pre[i].src.s, pd->re[i], tok->pre[i].src.len);
        if (!same) continue;
        if (pd->nfc == nfc && pd->ignore_merges == tok->ignore_merges) return pd;
        if (!by_re) by_re = pd;
    }
    if (by_re) {
        warn(info, "pre-tokenizer written as '%s', whose normalizer (%s) or ignore_merges (%s) differs from tokenizer.json's", by_re->name,
             by_re->nfc ? "NFC" : "none", by_re->ignore_merges ? "true" : "false");
        return by_re;
    }
    warn(info, "the pre-tokenizer matches no llama.cpp pre-tokenizer name: written as 'default', which splits text differently");
    return PRE_DEFAULT;
}

/* llama (SentencePiece-style BPE): whether tok is one, and its add_space_prefix. */
static bool classify_spm(const mk_tokenizer *tok, bool *add_prefix, mk_tok_gguf_info *info) {
    if (!tok->byte_fallback) return false;
    const tk_norm *n = tok->norm;
    if (tok->n_pre == 0 && n && n->kind == TN_SEQ && n->n_kids == 2 && n->kids[0].kind == TN_PREPEND &&
        n->kids[0].content_len == strlen(SPM_SPACE) && !memcmp(n->kids[0].content, SPM_SPACE, n->kids[0].content_len) &&
        is_space_replace(&n->kids[1])) {
        *add_prefix = true;
        return true;
    }
    if (tok->n_pre == 0 && n && is_space_replace(n)) {
        *add_prefix = false;
        return true;
    }
    if (tok->n_pre == 1 && norm_none(n) && tok->pre[0].kind == TP_METASPACE && tok->pre[0].repl_len == strlen(SPM_SPACE) &&
        !memcmp(tok->pre[0].repl, SPM_SPACE, tok->pre[0].repl_len)) {
        *add_prefix = tok->pre[0].scheme != TS_NEVER;
        if (tok->pre[0].scheme == TS_FIRST)
            warn(info, "Metaspace prepend_scheme 'first' is stored as add_space_prefix, which also prefixes text after special tokens");
        if (tok->pre[0].split) warn(info, "Metaspace split is not stored (GGUF readers do not split at spaces)");
        return true;
    }
    return false;
}

typedef struct mrg {
    uint32_t rank, a, b, t;
} mrg;

static int cmp_mrg(const void *x, const void *y) {
    uint32_t a = ((const mrg *)x)->rank, b = ((const mrg *)y)->rank;
    return a < b ? -1 : a > b;
}

/* The merges in rank order (a later duplicate pair took the earlier one's place, as on load). */
static mrg *collect_merges(const mk_tokenizer *tok, size_t *n) {
    size_t k = 0;
    for (size_t i = 0; i <= tok->merges.mask; i++) k += tok->merges.keys && tok->merges.keys[i] != UINT64_MAX;
    mrg *m = mk_malloc((k ? k : 1) * sizeof *m);
    if (!m) return NULL;
    k = 0;
    for (size_t i = 0; tok->merges.keys && i <= tok->merges.mask; i++) {
        uint64_t key = tok->merges.keys[i];
        if (key == UINT64_MAX) continue;
        m[k++] = (mrg){(uint32_t)(tok->merges.vals[i] >> 32), (uint32_t)(key >> 32), (uint32_t)key, (uint32_t)tok->merges.vals[i]};
    }
    qsort(m, k, sizeof *m, cmp_mrg);
    *n = k;
    return m;
}

static mk_status put_template(void *user, const char *name, const char *source) {
    wr *W = user;
    char key[300];
    if (!name) {
        for (size_t i = 0; i < W->n_names; i++)
            if (!W->names[i]) return MK_OK; /* one default only */
        snprintf(key, sizeof key, "%s", K_TEMPLATE);
    } else {
        /* gguf-py's key for a named template: characters other than [A-Za-z0-9] become '_' */
        char clean[200];
        size_t i = 0;
        for (; name[i] && i + 1 < sizeof clean; i++) {
            char c = name[i];
            clean[i] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ? c : '_';
        }
        clean[i] = 0;
        snprintf(key, sizeof key, "%s.%s", K_TEMPLATE, clean);
        for (size_t k = 0; k < W->n_names; k++)
            if (W->names[k] && !strcmp(W->names[k], clean)) return MK_OK;
    }
    const char **nn = mk_realloc(W->names, (W->n_names + 1) * sizeof *nn);
    if (!nn) return MK_ERR_NOMEM;
    W->names = nn;
    W->names[W->n_names] = name ? mk_strdup(key + strlen(K_TEMPLATE) + 1) : NULL;
    if (name && !W->names[W->n_names]) return MK_ERR_NOMEM;
    W->n_names++;
    W->info->n_templates++;
    return mk_gguf_w_str(W->w, key, source);
}

static mk_status write_templates(mk_gguf_writer *w, const char *model_path, mk_tok_gguf_info *info) {
    wr W = {.w = w, .info = info};
    mk_status st = tk_chat_templates_each(model_path, put_template, &W);
    size_t n_named = 0;
    const char **named = mk_malloc((W.n_names + 1) * sizeof *named);
    if (!named && !st) st = MK_ERR_NOMEM;
    for (size_t i = 0; named && i < W.n_names; i++)
        if (W.names[i]) named[n_named++] = W.names[i];
    if (!st && n_named) st = mk_gguf_w_arr_str(w, K_TEMPLATES, named, n_named);
    for (size_t i = 0; i < W.n_names; i++) free((char *)W.names[i]);
    free(W.names);
    free(named);
    return st;
}

/* Writes tok's vocabulary keys; false in *written (and a warning) when no GGUF type can hold it. */
static mk_status write_vocab(mk_gguf_writer *w, const mk_tokenizer *tok, int64_t n_vocab, mk_tok_gguf_info *info, bool *written) {
    *written = false;
    bool add_prefix = false;
    const pre_desc *pd = classify_gpt2(tok, info);
    const bool spm = !pd && classify_spm(tok, &add_prefix, info);
    if (!pd && !spm) {
        warn(info, "the tokenizer is neither byte-level BPE nor SentencePiece-style BPE with byte fallback: not written");
        return MK_OK;
    }
    if (pd && (tok->csp || tok->eow)) warn(info, "continuing_subword_prefix/end_of_word_suffix are not stored");
    if (pd && !norm_none(tok->norm) && !norm_nfc(tok->norm)) warn(info, "the normalizer is not stored");
    if (pd && (tok->n_dec != 1 || tok->dec[0].kind != TD_BYTELEVEL)) warn(info, "the decoder is read back as ByteLevel");
    for (size_t i = 0; i < tok->n_added; i++)
        if (tok->added[i].lstrip || tok->added[i].rstrip || tok->added[i].single_word) {
            warn(info, "added-token lstrip/rstrip/single_word flags are not stored");
            break;
        }
    /* post-processor: one BOS before, one EOS after */
    int32_t bos = tok->bos_id, eos = tok->eos_id;
    const bool add_bos = tok->post.n_pre == 1, add_eos = tok->post.n_post == 1;
    if (tok->post.n_pre > 1 || tok->post.n_post > 1) warn(info, "a post-processor adding more than one token on a side is not stored");
    if (add_bos) bos = tok->post.pre[0];
    if (add_eos) eos = tok->post.post[0];

    const size_t nv = (size_t)n_vocab;
    mk_status st = MK_OK;
    const char **strs = mk_calloc(nv, sizeof *strs);
    size_t *lens = mk_calloc(nv, sizeof *lens);
    int32_t *types = mk_calloc(nv, sizeof *types);
    float *scores = spm ? mk_calloc(nv, sizeof *scores) : NULL;
    tk_str *keys = mk_calloc(nv, sizeof *keys);
    char *pads = mk_malloc(nv * 24);
    tk_buf mtext = {0};
    size_t n_m = 0, *moff = NULL;
    const char **mstr = NULL;
    mrg *m = collect_merges(tok, &n_m);
    uint32_t *min_rank = spm ? mk_malloc(nv * sizeof *min_rank) : NULL;
    tk_strmap seen = {0};
    if (!strs || !lens || !types || (spm && (!scores || !min_rank)) || !keys || !pads || !m || !tk_strmap_init(&seen, nv)) {
        st = MK_ERR_NOMEM;
        goto done;
    }
    if (spm) {
        for (size_t i = 0; i < nv; i++) min_rank[i] = UINT32_MAX;
        for (size_t i = 0; i < n_m; i++)
            if (m[i].t < nv) min_rank[m[i].t] = MK_MIN(min_rank[m[i].t], m[i].rank);
    }
    for (size_t id = 0; id < nv; id++) {
        const tk_str *a = id < tok->n_ids && tok->added_by_id[id].s ? &tok->added_by_id[id] : NULL;
        const tk_str *t = a ? a : id < tok->n_ids && tok->tokens[id].s ? &tok->tokens[id] : NULL;
        if (!t) {
            int l = snprintf(pads + id * 24, 24, "[PAD%zu]", id);
            strs[id] = pads + id * 24;
            lens[id] = (size_t)l;
            types[id] = TT_UNUSED;
        } else {
            strs[id] = t->s;
            lens[id] = t->len;
            types[id] = spm && (int32_t)id == tok->unk_id ? TT_UNKNOWN : a ? (tok->special[id] ? TT_CONTROL : TT_USER) : TT_NORMAL;
            if (spm && types[id] == TT_NORMAL && t->len == 6 && !memcmp(t->s, "<0x", 3)) {
                unsigned b;
                if (sscanf(t->s + 3, "%2X", &b) == 1 && tok->byte_fb[b & 255] == (int32_t)id) types[id] = TT_BYTE;
            }
            if (spm)
                scores[id] = types[id] != TT_NORMAL ? 0.0f : min_rank[id] != UINT32_MAX ? -(float)min_rank[id] : -(float)(n_m + id);
        }
        keys[id] = (tk_str){strs[id], (uint32_t)lens[id]};
        int64_t dup = tk_strmap_get(&seen, keys, keys[id].s, keys[id].len);
        if (lens[id] == 0 || dup >= 0) {
            warn(info, lens[id] ? "tokens %lld and %zu are the same string, which llama.cpp refuses: tokenizer not written"
                                : "token %zu is empty, which llama.cpp renames: tokenizer not written",
                 lens[id] ? (long long)dup : (long long)id, id);
            goto done;
        }
        tk_strmap_put(&seen, keys, (uint32_t)id);
    }
    if (pd) {
        /* "a b", split by readers at the first space after the first byte */
        if (!(moff = mk_malloc((n_m + 1) * sizeof *moff)) || !(mstr = mk_malloc((n_m + 1) * sizeof *mstr))) {
            st = MK_ERR_NOMEM;
            goto done;
        }
        for (size_t i = 0; i < n_m; i++) {
            const tk_str *a = &tok->tokens[m[i].a], *b = &tok->tokens[m[i].b];
            if (!a->len || memchr(a->s + 1, ' ', a->len - 1)) {
                warn(info, "merge %zu's first token contains a space, which \"a b\" cannot hold: tokenizer not written", i);
                goto done;
            }
            moff[i] = mtext.len;
            if (!tk_buf_put(&mtext, a->s, a->len) || !tk_buf_putc(&mtext, ' ') || !tk_buf_put(&mtext, b->s, b->len)) {
                st = MK_ERR_NOMEM;
                goto done;
            }
        }
        moff[n_m] = mtext.len;
        for (size_t i = 0; i < n_m; i++) mstr[i] = mtext.p + moff[i];
        for (size_t i = 0; i < n_m; i++) moff[i] = moff[i + 1] - moff[i];
    }
    st = mk_gguf_w_str(w, K_MODEL, pd ? "gpt2" : "llama");
    if (!st && pd) st = mk_gguf_w_str(w, K_PRE, pd->name);
    if (!st) st = mk_gguf_w_arr_strn(w, K_TOKENS, strs, lens, nv);
    if (!st) st = mk_gguf_w_arr_i32(w, K_TYPES, types, nv);
    if (!st && pd) st = mk_gguf_w_arr_strn(w, K_MERGES, mstr, moff, n_m);
    if (!st && spm) st = mk_gguf_w_arr_f32(w, K_SCORES, scores, nv);
    if (!st && spm) st = mk_gguf_w_bool(w, K_ADD_PREFIX, add_prefix);
    if (!st && bos >= 0) st = mk_gguf_w_u32(w, K_BOS, (uint32_t)bos);
    if (!st && eos >= 0) st = mk_gguf_w_u32(w, K_EOS, (uint32_t)eos);
    if (!st && tok->unk_id >= 0) st = mk_gguf_w_u32(w, K_UNK, (uint32_t)tok->unk_id);
    if (!st && tok->pad_id >= 0) st = mk_gguf_w_u32(w, K_PAD, (uint32_t)tok->pad_id);
    if (!st) st = mk_gguf_w_bool(w, K_ADD_BOS, add_bos);
    if (!st) st = mk_gguf_w_bool(w, K_ADD_EOS, add_eos);
    if (!st) {
        *written = true;
        snprintf(info->model, sizeof info->model, "%s", pd ? "gpt2" : "llama");
        if (pd) snprintf(info->pre, sizeof info->pre, "%s", pd->name);
        info->n_tokens = nv;
        info->n_merges = pd ? n_m : 0;
    }
done:
    free(strs);
    free(lens);
    free(types);
    free(scores);
    free(keys);
    free(pads);
    free(m);
    free(moff);
    free(mstr);
    free(min_rank);
    tk_buf_free(&mtext);
    tk_strmap_free(&seen);
    return st;
}

mk_status mk_tokenizer_gguf_write(mk_gguf_writer *w, const char *model_path, int64_t n_vocab, mk_tok_gguf_info *info) {
    mk_tok_gguf_info scratch;
    if (!info) info = &scratch;
    memset(info, 0, sizeof *info);
    snprintf(info->model, sizeof info->model, "none");
    mk_status st = MK_OK;
    bool written = false;
    if (mk_tokenizer_present(model_path)) {
        mk_tokenizer *tok = NULL;
        st = mk_tokenizer_load(model_path, &tok);
        if (st == MK_ERR_UNSUPPORTED) { /* a tokenizer moekit cannot read (e.g. Unigram): the model is still written */
            warn(info, "%s: tokenizer not written", mk_last_error());
            st = MK_OK;
        }
        if (st) return st;
        if (tok && (int64_t)tok->n_ids > n_vocab)
            st = mk_err(MK_ERR_FORMAT, "%s: the tokenizer has %zu ids, more than the model's vocab_size %lld", tok->path, tok->n_ids,
                        (long long)n_vocab);
        else if (tok)
            st = write_vocab(w, tok, n_vocab, info, &written);
        mk_tokenizer_free(tok);
        if (st) return st;
    }
    if (!written && (st = mk_gguf_w_str(w, K_MODEL, "none"))) return st;
    return write_templates(w, model_path, info);
}
