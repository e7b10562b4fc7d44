/* Encoding: added-token split, normalizers, pre-tokenizers, BPE model, post-processor.
 * Each stage mirrors the HF tokenizers (Rust) implementation of the same name. */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define MAX_CACHED_PIECE 256   /* longer pre-tokens are not cached */
#define CACHE_MAX_ENTS (1u << 17)
#define CACHE_MAX_BYTES ((size_t)16 << 20)

/* ---- scratch ------------------------------------------------------------------------------ */

tk_scratch *tk_scratch_new(void) {
    tk_scratch *sc = mk_calloc(1, sizeof *sc);
    if (!sc) return NULL;
    sc->md = pcre2_match_data_create(8, NULL);
    sc->jit = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    sc->mctx = pcre2_match_context_create(NULL);
    if (!sc->md || !sc->mctx) {
        tk_scratch_free(sc);
        mk_err(MK_ERR_NOMEM, "out of memory (regex match data)");
        return NULL;
    }
    if (sc->jit) pcre2_jit_stack_assign(sc->mctx, NULL, sc->jit);
    return sc;
}

static void cache_free(tk_cache *c) {
    free(c->slots);
    free(c->ents);
    tk_buf_free(&c->keys);
    free(c->ids);
    memset(c, 0, sizeof *c);
}

void tk_scratch_free(tk_scratch *sc) {
    if (!sc) return;
    if (sc->md) pcre2_match_data_free(sc->md);
    if (sc->jit) pcre2_jit_stack_free(sc->jit);
    if (sc->mctx) pcre2_match_context_free(sc->mctx);
    tk_buf_free(&sc->norm);
    tk_buf_free(&sc->tmp);
    for (int i = 0; i < 16; i++) {
        tk_buf_free(&sc->lvl_buf[i][0]);
        tk_buf_free(&sc->lvl_buf[i][1]);
        free(sc->lvl_spans[i]);
    }
    free(sc->syms);
    free(sc->heap);
    free(sc->segs[0]);
    free(sc->segs[1]);
    tk_buf_free(&sc->word);
    cache_free(&sc->cache);
    free(sc->out);
    free(sc);
}

static bool out_push(tk_scratch *sc, int32_t id) {
    if (sc->n_out == sc->cap_out) {
        size_t cap = sc->cap_out ? sc->cap_out * 2 : 1024;
        int32_t *p = mk_realloc(sc->out, cap * sizeof *p);
        if (!p) return false;
        sc->out = p;
        sc->cap_out = cap;
    }
    sc->out[sc->n_out++] = id;
    return true;
}

/* ---- cache ---------------------------------------------------------------------------------- */

static const int32_t *cache_get(const tk_cache *c, const char *s, size_t n, uint64_t h, uint32_t *n_ids) {
    if (!c->slots) return NULL;
    uint64_t tag = h & 0xFFFFFFFF00000000ull;
    size_t i = (size_t)h & c->mask;
    for (;;) {
        uint64_t v = c->slots[i];
        if (!v) return NULL;
        if ((v & 0xFFFFFFFF00000000ull) == tag) {
            const struct tk_centry *e = &c->ents[(uint32_t)v - 1];
            if (e->key_len == n && !memcmp(c->keys.p + e->key_off, s, n)) {
                *n_ids = e->n_ids;
                return c->ids + e->ids_off;
            }
        }
        i = (i + 1) & c->mask;
    }
}

/* Best effort: a failed allocation leaves the cache as it was. */
static void cache_put(tk_cache *c, const char *s, size_t n, uint64_t h, const int32_t *ids, size_t n_ids) {
    if (!c->slots) {
        c->mask = 2 * CACHE_MAX_ENTS - 1;
        c->slots = calloc(c->mask + 1, sizeof *c->slots);
        if (!c->slots) return;
    }
    if (c->n_ents >= CACHE_MAX_ENTS || c->keys.len > CACHE_MAX_BYTES) {
        memset(c->slots, 0, (c->mask + 1) * sizeof *c->slots);
        c->n_ents = 0;
        c->keys.len = 0;
        c->n_ids = 0;
    }
    if (c->n_ents == c->cap_ents) {
        size_t cap = c->cap_ents ? c->cap_ents * 2 : 4096;
        void *p = realloc(c->ents, cap * sizeof *c->ents);
        if (!p) return;
        c->ents = p;
        c->cap_ents = cap;
    }
    if (c->n_ids + n_ids > c->cap_ids) {
        size_t cap = c->cap_ids ? c->cap_ids : 16384;
        while (cap < c->n_ids + n_ids) cap *= 2;
        void *p = realloc(c->ids, cap * sizeof *c->ids);
        if (!p) return;
        c->ids = p;
        c->cap_ids = cap;
    }
    size_t key_off = c->keys.len;
    if (!tk_buf_put(&c->keys, s, n)) return;
    struct tk_centry *e = &c->ents[c->n_ents];
    e->key_off = key_off;
    e->key_len = (uint32_t)n;
    e->ids_off = c->n_ids;
    e->n_ids = (uint32_t)n_ids;
    memcpy(c->ids + c->n_ids, ids, n_ids * sizeof *ids);
    c->n_ids += n_ids;
    uint64_t tag = h & 0xFFFFFFFF00000000ull;
    size_t i = (size_t)h & c->mask;
    while (c->slots[i]) i = (i + 1) & c->mask;
    c->slots[i] = tag | ((uint64_t)c->n_ents + 1);
    c->n_ents++;
}

/* ---- Unicode helpers -------------------------------------------------------------------------- */

/* Rust char::is_whitespace (Unicode White_Space). */
static bool is_ws(int32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Rust char::is_numeric (general categories Nd, Nl, No). */
static bool is_numeric(int32_t c) {
    if (c < 0x80) return c >= '0' && c <= '9';
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

/* Rust char::is_alphanumeric (approximated by general categories L* and N*). */
static bool is_alnum(int32_t c) {
    if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    utf8proc_category_t k = utf8proc_category(c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
}

static int32_t last_cp(const char *s, size_t n) {
    size_t i = n;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--;
    if (i == 0) return -1;
    size_t l;
    return tk_utf8_decode(s + i - 1, &l);
}

/* ---- normalizers ------------------------------------------------------------------------------- */

static void swap_buf(tk_buf *a, tk_buf *b) {
    tk_buf t = *a;
    *a = *b;
    *b = t;
}

/* Unicode normalization of cur with utf8proc. Text is cut before ASCII characters (stable
 * starters that never compose with what precedes them); segments without any code point at or
 * above `thr` are unchanged by the normalization and copied. */
static mk_status uni_norm(tk_buf *cur, tk_buf *tmp, utf8proc_option_t opt, unsigned char thr) {
    const unsigned char *s = (const unsigned char *)cur->p;
    size_t n = cur->len, i = 0;
    size_t j = 0;
    while (j < n && s[j] < thr) j++;
    if (j == n) return MK_OK;
    tmp->len = 0;
    while (i < n) {
        while (j < n && s[j] < thr) j++;
        if (j == n) {
            if (!tk_buf_put(tmp, s + i, n - i)) return MK_ERR_NOMEM;
            break;
        }
        size_t a = j;
        while (a > i && s[a - 1] >= 0x80) a--;
        if (a > i) a--; /* the ASCII starter before the run */
        size_t e = j;
        while (e < n && s[e] >= 0x80) e++;
        if (!tk_buf_put(tmp, s + i, a - i)) return MK_ERR_NOMEM;
        utf8proc_uint8_t *dst = NULL;
        utf8proc_ssize_t r = utf8proc_map(s + a, (utf8proc_ssize_t)(e - a), &dst, opt | UTF8PROC_STABLE);
        if (r < 0) return mk_err(MK_ERR_INTERNAL, "tokenizer: normalization failed: %s", utf8proc_errmsg(r));
        bool ok = tk_buf_put(tmp, dst, (size_t)r);
        free(dst);
        if (!ok) return MK_ERR_NOMEM;
        i = e;
        j = e;
    }
    swap_buf(cur, tmp);
    return MK_OK;
}

static mk_status norm_apply(const tk_norm *nz, tk_buf *cur, tk_buf *tmp, pcre2_match_data *md);

static mk_status regex_replace_buf(const pcre2_code *re, const char *content, size_t clen, tk_buf *cur, tk_buf *tmp,
                                   pcre2_match_data *md) {
    const char *s = cur->p ? cur->p : "";
    size_t n = cur->len, pos = 0, last = 0;
    tmp->len = 0;
    while (pos <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return mk_err(MK_ERR_INTERNAL, "tokenizer: regex match failed (%d)", rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (!tk_buf_put(tmp, s + last, ov[0] - last) || !tk_buf_put(tmp, content, clen)) return MK_ERR_NOMEM;
        last = ov[1];
        if (ov[1] == ov[0]) {
            if (ov[1] >= n) break;
            pos = ov[1] + tk_utf8_len((unsigned char)s[ov[1]]);
        } else pos = ov[1];
    }
    if (!tk_buf_put(tmp, s + last, n - last)) return MK_ERR_NOMEM;
    swap_buf(cur, tmp);
    return MK_OK;
}

static mk_status norm_apply(const tk_norm *nz, tk_buf *cur, tk_buf *tmp, pcre2_match_data *md) {
    switch (nz->kind) {
    case TN_SEQ:
        for (size_t i = 0; i < nz->n_kids; i++) {
            mk_status s = norm_apply(&nz->kids[i], cur, tmp, md);
            if (s) return s;
        }
        return MK_OK;
    case TN_NFC: return uni_norm(cur, tmp, UTF8PROC_COMPOSE, 0xCC);
    case TN_NFD: return uni_norm(cur, tmp, UTF8PROC_DECOMPOSE, 0x80);
    case TN_NFKC: return uni_norm(cur, tmp, UTF8PROC_COMPOSE | UTF8PROC_COMPAT, 0x80);
    case TN_NFKD: return uni_norm(cur, tmp, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, 0x80);
    case TN_LOWER: {
        tmp->len = 0;
        for (size_t i = 0; i < cur->len;) {
            unsigned char c = (unsigned char)cur->p[i];
            if (c < 0x80) {
                if (!tk_buf_putc(tmp, (char)(c >= 'A' && c <= 'Z' ? c + 32 : c))) return MK_ERR_NOMEM;
                i++;
                continue;
            }
            size_t l;
            int32_t cp = tk_utf8_decode(cur->p + i, &l);
            /* Rust char::to_lowercase: U+0130 is the one code point whose lowercase is two */
            bool ok = cp == 0x130 ? tk_buf_put(tmp, "i\xCC\x87", 3) : tk_utf8_put(tmp, utf8proc_tolower(cp));
            if (!ok) return MK_ERR_NOMEM;
            i += l;
        }
        swap_buf(cur, tmp);
        return MK_OK;
    }
    case TN_REPLACE: return regex_replace_buf(nz->re, nz->content, nz->content_len, cur, tmp, md);
    case TN_PREPEND:
        if (cur->len == 0) return MK_OK;
        tmp->len = 0;
        if (!tk_buf_put(tmp, nz->content, nz->content_len) || !tk_buf_put(tmp, cur->p, cur->len)) return MK_ERR_NOMEM;
        swap_buf(cur, tmp);
        return MK_OK;
    case TN_STRIP: {
        size_t a = 0, e = cur->len;
        if (nz->left)
            while (a < e) {
                size_t l;
                if (!is_ws(tk_utf8_decode(cur->p + a, &l))) break;
                a += l;
            }
        if (nz->right)
            while (e > a) {
                size_t k = e - 1, l;
                while (k > a && ((unsigned char)cur->p[k] & 0xC0) == 0x80) k--;
                if (!is_ws(tk_utf8_decode(cur->p + k, &l))) break;
                e = k;
            }
        memmove(cur->p, cur->p + a, e - a);
        cur->len = e - a;
        return MK_OK;
    }
    }
    return mk_err(MK_ERR_INTERNAL, "tokenizer: unknown normalizer kind");
}

mk_status tk_normalize(const tk_norm *nz, const char *s, size_t len, tk_buf *out, tk_buf *tmp) {
    out->len = 0;
    if (!tk_buf_put(out, s, len)) return MK_ERR_NOMEM;
    if (!nz) return MK_OK;
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    if (!md) return mk_err(MK_ERR_NOMEM, "out of memory");
    mk_status st = norm_apply(nz, out, tmp, md);
    pcre2_match_data_free(md);
    return st;
}

void tk_norm_free(tk_norm *nz) {
    if (!nz) return;
    for (size_t i = 0; i < nz->n_kids; i++) tk_norm_free(&nz->kids[i]);
    free(nz->kids);
    if (nz->re) pcre2_code_free(nz->re);
    free(nz->content);
    free(nz->src.s);
}

/* ---- added-token trie ---------------------------------------------------------------------- */

static int32_t trie_new_node(tk_trie *t, uint8_t byte) {
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        tk_trie_node *p = mk_realloc(t->nodes, cap * sizeof *p);
        if (!p) return -1;
        t->nodes = p;
        t->cap = cap;
    }
    tk_trie_node *nd = &t->nodes[t->n];
    nd->child = nd->sibling = nd->added = -1;
    nd->byte = byte;
    return (int32_t)t->n++;
}

bool tk_trie_add(tk_trie *t, const char *s, size_t n, int32_t idx) {
    if (n == 0) return true; /* an empty token never matches */
    if (t->n == 0 && trie_new_node(t, 0) < 0) return false;
    int32_t cur = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = t->nodes[cur].child;
        while (c >= 0 && t->nodes[c].byte != b) c = t->nodes[c].sibling;
        if (c < 0) {
            c = trie_new_node(t, b);
            if (c < 0) return false;
            t->nodes[c].sibling = t->nodes[cur].child;
            t->nodes[cur].child = c;
        }
        cur = c;
    }
    if (t->nodes[cur].added < 0) t->nodes[cur].added = idx; /* first of duplicate contents wins */
    t->first[(uint8_t)s[0]] = 1;
    return true;
}

void tk_trie_free(tk_trie *t) {
    free(t->nodes);
    memset(t, 0, sizeof *t);
}

/* Longest token matching at s[0..n): its added index and length, or -1. */
static int32_t trie_longest(const tk_trie *t, const char *s, size_t n, size_t *mlen) {
    int32_t cur = 0, best = -1;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = t->nodes[cur].child;
        while (c >= 0 && t->nodes[c].byte != b) c = t->nodes[c].sibling;
        if (c < 0) break;
        cur = c;
        if (t->nodes[c].added >= 0) {
            best = t->nodes[c].added;
            *mlen = i + 1;
        }
    }
    return best;
}

/* Segments of a split on added tokens: [start, end) with the added index, or -1 for text. */
typedef struct seg { size_t start, end; int32_t added; } seg;

static bool seg_push(tk_scratch *sc, int which, size_t a, size_t e, int32_t added) {
    if (sc->n_segs[which] == sc->cap_segs[which]) {
        size_t cap = sc->cap_segs[which] ? sc->cap_segs[which] * 2 : 64;
        void *p = mk_realloc(sc->segs[which], cap * sizeof(seg));
        if (!p) return false;
        sc->segs[which] = p;
        sc->cap_segs[which] = cap;
    }
    seg *g = (seg *)sc->segs[which] + sc->n_segs[which]++;
    g->start = a;
    g->end = e;
    g->added = added;
    return true;
}

/* HF AddedVocabulary::find_matches: leftmost-longest matches honouring single_word, lstrip and
 * rstrip; the gaps become text segments. */
static mk_status split_added(const mk_tokenizer *tok, const tk_trie *t, tk_scratch *sc, int which, const char *s,
                             size_t n) {
    sc->n_segs[which] = 0;
    size_t start_offset = 0, pos = 0;
    if (t->n)
        while (pos < n) {
            if (!t->first[(uint8_t)s[pos]]) { pos++; continue; }
            size_t mlen = 0;
            int32_t ai = trie_longest(t, s + pos, n - pos, &mlen);
            if (ai < 0) { pos++; continue; }
            size_t start = pos, stop = pos + mlen;
            pos = stop;
            const tk_added *ad = &tok->added[ai];
            if (start < start_offset) continue; /* inside a previous token's rstrip */
            if (ad->single_word) {
                bool start_space = start == 0 || !is_alnum(last_cp(s, start));
                bool stop_space = true;
                if (stop < n) {
                    size_t l;
                    stop_space = !is_alnum(tk_utf8_decode(s + stop, &l));
                }
                if (!start_space || !stop_space) continue;
            }
            if (ad->lstrip) {
                size_t a = start;
                while (a > 0) {
                    int32_t c = last_cp(s, a);
                    if (!is_ws(c)) break;
                    size_t k = a;
                    do k--; while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80);
                    a = k;
                }
                start = a > start_offset ? a : start_offset;
            }
            if (ad->rstrip) {
                while (stop < n) {
                    size_t l;
                    if (!is_ws(tk_utf8_decode(s + stop, &l))) break;
                    stop += l;
                }
            }
            if (start_offset < start && !seg_push(sc, which, start_offset, start, -1)) return MK_ERR_NOMEM;
            if (!seg_push(sc, which, start, stop, ai)) return MK_ERR_NOMEM;
            start_offset = stop;
        }
    if (start_offset < n && !seg_push(sc, which, start_offset, n, -1)) return MK_ERR_NOMEM;
    return MK_OK;
}

/* ---- BPE model ------------------------------------------------------------------------------ */

typedef struct tk_merge hmerge;

static inline bool merge_less(const hmerge *a, const hmerge *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static bool heap_push(tk_scratch *sc, size_t *n, uint32_t rank, uint32_t pos, uint32_t new_id) {
    if (*n == sc->cap_heap) {
        size_t cap = sc->cap_heap ? sc->cap_heap * 2 : 256;
        hmerge *p = mk_realloc(sc->heap, cap * sizeof *p);
        if (!p) return false;
        sc->heap = p;
        sc->cap_heap = cap;
    }
    hmerge m = {rank, pos, new_id};
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!merge_less(&m, &sc->heap[p])) break;
        sc->heap[i] = sc->heap[p];
        i = p;
    }
    sc->heap[i] = m;
    return true;
}

static hmerge heap_pop(tk_scratch *sc, size_t *n) {
    hmerge top = sc->heap[0];
    hmerge last = sc->heap[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && merge_less(&sc->heap[c + 1], &sc->heap[c])) c++;
        if (!merge_less(&sc->heap[c], &last)) break;
        sc->heap[i] = sc->heap[c];
        i = c;
    }
    if (*n) sc->heap[i] = last;
    return top;
}

static bool sym_push(tk_scratch *sc, size_t *n, int32_t id, size_t len) {
    if (*n == sc->cap_syms) {
        size_t cap = sc->cap_syms ? sc->cap_syms * 2 : 256;
        struct tk_sym *p = mk_realloc(sc->syms, cap * sizeof *p);
        if (!p) return false;
        sc->syms = p;
        sc->cap_syms = cap;
    }
    struct tk_sym *y = &sc->syms[*n];
    y->id = id;
    y->len = (uint32_t)len;
    y->prev = (int32_t)*n - 1;
    y->next = (int32_t)*n + 1;
    (*n)++;
    return true;
}

static int32_t vocab_get(const mk_tokenizer *tok, const char *s, size_t n) {
    return (int32_t)tk_strmap_get(&tok->vocab, tok->tokens, s, n);
}

/* HF BPE::merge_word + Word::merge_all: appends the ids of pre-token s[0..n) to sc->out. */
static mk_status bpe_word(const mk_tokenizer *tok, tk_scratch *sc, const char *s, size_t n) {
    size_t ns = 0;
    int32_t unk = -1;
    size_t unk_len = 0;
    for (size_t i = 0; i < n;) {
        size_t l = tk_utf8_len((unsigned char)s[i]);
        bool first = i == 0, last = i + l >= n;
        int32_t id;
        if ((first || !tok->csp) && (!last || !tok->eow)) id = vocab_get(tok, s + i, l);
        else {
            sc->word.len = 0;
            if ((!first && tok->csp && !tk_buf_put(&sc->word, tok->csp, tok->csp_len)) || !tk_buf_put(&sc->word, s + i, l) ||
                (last && tok->eow && !tk_buf_put(&sc->word, tok->eow, tok->eow_len)))
                return MK_ERR_NOMEM;
            id = vocab_get(tok, sc->word.p, sc->word.len);
        }
        if (id >= 0) {
            if (unk >= 0) {
                if (!sym_push(sc, &ns, unk, unk_len)) return MK_ERR_NOMEM;
                unk = -1;
            }
            if (!sym_push(sc, &ns, id, l)) return MK_ERR_NOMEM;
        } else {
            bool done = false;
            if (tok->byte_fallback) {
                /* the prefix/suffix, if any, are part of the bytes as in HF */
                const char *b = s + i;
                size_t bl = l;
                if ((!first && tok->csp) || (last && tok->eow)) { b = sc->word.p; bl = sc->word.len; }
                bool all = true;
                for (size_t k = 0; k < bl; k++)
                    if (tok->byte_fb[(uint8_t)b[k]] < 0) all = false;
                if (all) {
                    for (size_t k = 0; k < bl; k++)
                        if (!sym_push(sc, &ns, tok->byte_fb[(uint8_t)b[k]], 1)) return MK_ERR_NOMEM;
                    done = true;
                }
            }
            if (!done && tok->unk_id >= 0) {
                if (unk >= 0 && tok->fuse_unk) unk_len += l;
                else {
                    if (unk >= 0 && !sym_push(sc, &ns, unk, unk_len)) return MK_ERR_NOMEM;
                    unk = tok->unk_id;
                    unk_len = l;
                }
            }
        }
        i += l;
    }
    if (unk >= 0 && !sym_push(sc, &ns, unk, unk_len)) return MK_ERR_NOMEM;
    if (ns == 0) return MK_OK;
    struct tk_sym *y = sc->syms;
    y[ns - 1].next = -1;
    size_t nh = 0;
    uint32_t rank, nid;
    for (size_t i = 0; i + 1 < ns; i++)
        if (tk_pairmap_get(&tok->merges, (uint32_t)y[i].id, (uint32_t)y[i + 1].id, &rank, &nid) &&
            !heap_push(sc, &nh, rank, (uint32_t)i, nid))
            return MK_ERR_NOMEM;
    y = sc->syms;
    while (nh) {
        hmerge top = heap_pop(sc, &nh);
        struct tk_sym *cur = &y[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        int32_t next_pos = cur->next;
        struct tk_sym right = y[next_pos];
        if (!tk_pairmap_get(&tok->merges, (uint32_t)cur->id, (uint32_t)right.id, &rank, &nid) || nid != top.new_id)
            continue;
        cur->id = (int32_t)top.new_id;
        cur->len += right.len;
        cur->next = right.next;
        y[next_pos].len = 0;
        if (right.next >= 0) y[right.next].prev = (int32_t)top.pos;
        if (cur->prev >= 0) {
            const struct tk_sym *p = &y[cur->prev];
            if (tk_pairmap_get(&tok->merges, (uint32_t)p->id, (uint32_t)cur->id, &rank, &nid) &&
                !heap_push(sc, &nh, rank, (uint32_t)cur->prev, nid))
                return MK_ERR_NOMEM;
        }
        if (cur->next >= 0) {
            const struct tk_sym *q = &y[cur->next];
            if (tk_pairmap_get(&tok->merges, (uint32_t)cur->id, (uint32_t)q->id, &rank, &nid) &&
                !heap_push(sc, &nh, rank, top.pos, nid))
                return MK_ERR_NOMEM;
        }
    }
    for (int32_t i = 0; i >= 0; i = y[i].next)
        if (!out_push(sc, y[i].id)) return MK_ERR_NOMEM;
    return MK_OK;
}

/* HF BPE::tokenize for one pre-token (ignore_merges, cache, merge_word). */
static mk_status model_piece(const mk_tokenizer *tok, tk_scratch *sc, const char *s, size_t n) {
    if (tok->ignore_merges) {
        int32_t id = vocab_get(tok, s, n);
        if (id >= 0) return out_push(sc, id) ? MK_OK : MK_ERR_NOMEM;
    }
    uint64_t h = 0;
    if (n <= MAX_CACHED_PIECE) {
        h = tk_hash(s, n);
        uint32_t k;
        const int32_t *ids = cache_get(&sc->cache, s, n, h, &k);
        if (ids) {
            if (sc->n_out + k > sc->cap_out) {
                size_t cap = sc->cap_out ? sc->cap_out : 1024;
                while (cap < sc->n_out + k) cap *= 2;
                int32_t *p = mk_realloc(sc->out, cap * sizeof *p);
                if (!p) return MK_ERR_NOMEM;
                sc->out = p;
                sc->cap_out = cap;
            }
            memcpy(sc->out + sc->n_out, ids, k * sizeof *ids);
            sc->n_out += k;
            return MK_OK;
        }
    }
    size_t before = sc->n_out;
    mk_status st = bpe_word(tok, sc, s, n);
    if (st) return st;
    if (n <= MAX_CACHED_PIECE) cache_put(&sc->cache, s, n, h, sc->out + before, sc->n_out - before);
    return MK_OK;
}

/* ---- pre-tokenizers --------------------------------------------------------------------------- */

static bool spans_reserve(tk_scratch *sc, size_t lvl, size_t n) {
    if (n <= sc->lvl_cap[lvl]) return true;
    size_t cap = sc->lvl_cap[lvl] ? sc->lvl_cap[lvl] : 64;
    while (cap < n) cap *= 2;
    size_t *p = mk_realloc(sc->lvl_spans[lvl], cap * 3 * sizeof *p);
    if (!p) return false;
    sc->lvl_spans[lvl] = p;
    sc->lvl_cap[lvl] = cap;
    return true;
}

static mk_status pt_run(const mk_tokenizer *tok, tk_scratch *sc, size_t step, const char *s, size_t n, bool first);

/* Marks spans (start, end, is_match) covering s[0..n) into sc->lvl_spans[lvl] for the matches
 * of re (kind 0), numeric chars (kind 1) or the char c[0..cl) (kind 2); returns the count. */
static mk_status find_matches(tk_scratch *sc, size_t lvl, int kind, const pcre2_code *re, const char *c, size_t cl,
                              const char *s, size_t n, size_t *count) {
    size_t k = 0, prev = 0, pos = 0;
    while (pos < n) {
        size_t ms, me;
        if (kind == 0) {
            int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, sc->md, sc->mctx);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) {
                PCRE2_UCHAR msg[128];
                pcre2_get_error_message(rc, msg, sizeof msg);
                return mk_err(MK_ERR_INTERNAL, "tokenizer: pre-tokenizer regex failed: %s", (char *)msg);
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(sc->md);
            ms = ov[0];
            me = ov[1];
            if (me == ms) { /* empty match: skip a character */
                pos = ms + tk_utf8_len((unsigned char)s[ms]);
                continue;
            }
        } else {
            size_t l = tk_utf8_len((unsigned char)s[pos]);
            bool hit;
            if (kind == 1) {
                size_t ll;
                hit = is_numeric(tk_utf8_decode(s + pos, &ll));
            } else hit = l == cl && !memcmp(s + pos, c, cl);
            if (!hit) { pos += l; continue; }
            ms = pos;
            me = pos + l;
        }
        if (!spans_reserve(sc, lvl, k + 2)) return MK_ERR_NOMEM;
        size_t *sp = sc->lvl_spans[lvl];
        if (prev != ms) { sp[3 * k] = prev; sp[3 * k + 1] = ms; sp[3 * k + 2] = 0; k++; }
        sp[3 * k] = ms; sp[3 * k + 1] = me; sp[3 * k + 2] = 1; k++;
        prev = pos = me;
    }
    if (prev != n) {
        if (!spans_reserve(sc, lvl, k + 1)) return MK_ERR_NOMEM;
        size_t *sp = sc->lvl_spans[lvl];
        sp[3 * k] = prev; sp[3 * k + 1] = n; sp[3 * k + 2] = 0; k++;
    }
    *count = k;
    return MK_OK;
}

/* Applies a split behavior to the spans of lvl in place (HF NormalizedString::split); the
 * result keeps the 3-per-span layout with the third field set to 1 for removed spans. */
static size_t apply_behavior(size_t *sp, size_t k, tk_behavior beh, bool invert) {
    if (invert)
        for (size_t i = 0; i < k; i++) sp[3 * i + 2] ^= 1;
    size_t m = 0;
    switch (beh) {
    case TB_ISOLATED:
        for (size_t i = 0; i < k; i++) sp[3 * i + 2] = 0;
        return k;
    case TB_REMOVED:
        for (size_t i = 0; i < k; i++) sp[3 * i + 2] = sp[3 * i + 2] ? 1 : 0;
        return k;
    case TB_MERGED_PREV: {
        bool prev_match = false;
        for (size_t i = 0; i < k; i++) {
            bool is_match = sp[3 * i + 2];
            if (is_match && !prev_match && m > 0) sp[3 * (m - 1) + 1] = sp[3 * i + 1];
            else {
                sp[3 * m] = sp[3 * i]; sp[3 * m + 1] = sp[3 * i + 1]; sp[3 * m + 2] = 0; m++;
            }
            prev_match = is_match;
        }
        return m;
    }
    case TB_MERGED_NEXT: {
        /* walk backwards, building the result from the end of the array */
        bool prev_match = false;
        size_t w = k; /* result occupies sp[3*w .. 3*k) */
        for (size_t ii = k; ii-- > 0;) {
            size_t a = sp[3 * ii], e = sp[3 * ii + 1];
            bool is_match = sp[3 * ii + 2];
            if (is_match && !prev_match && w < k) sp[3 * w] = a;
            else {
                w--;
                sp[3 * w] = a; sp[3 * w + 1] = e; sp[3 * w + 2] = 0;
            }
            prev_match = is_match;
        }
        memmove(sp, sp + 3 * w, (k - w) * 3 * sizeof *sp);
        return k - w;
    }
    case TB_CONTIGUOUS: {
        int prev = -1;
        for (size_t i = 0; i < k; i++) {
            int is_match = (int)sp[3 * i + 2];
            if (is_match == prev && m > 0) sp[3 * (m - 1) + 1] = sp[3 * i + 1];
            else {
                sp[3 * m] = sp[3 * i]; sp[3 * m + 1] = sp[3 * i + 1]; sp[3 * m + 2] = 0; m++;
            }
            prev = is_match;
        }
        return m;
    }
    }
    return 0;
}

/* Runs the spans of level `step` through the next step. */
static mk_status run_spans(const mk_tokenizer *tok, tk_scratch *sc, size_t step, const char *s, size_t k, bool first) {
    for (size_t i = 0; i < k; i++) {
        size_t *sp = sc->lvl_spans[step];
        if (sp[3 * i + 2]) continue;
        size_t a = sp[3 * i], e = sp[3 * i + 1];
        if (a == e) continue;
        mk_status st = pt_run(tok, sc, step + 1, s + a, e - a, first && a == 0);
        if (st) return st;
    }
    return MK_OK;
}

static mk_status pt_run(const mk_tokenizer *tok, tk_scratch *sc, size_t step, const char *s, size_t n, bool first) {
    if (n == 0) return MK_OK;
    if (step == tok->n_pre) return model_piece(tok, sc, s, n);
    const tk_pre *p = &tok->pre[step];
    size_t k;
    mk_status st;
    switch (p->kind) {
    case TP_SPLIT:
        if ((st = find_matches(sc, step, 0, p->re, NULL, 0, s, n, &k))) return st;
        k = apply_behavior(sc->lvl_spans[step], k, p->behavior, p->invert);
        return run_spans(tok, sc, step, s, k, first);
    case TP_DIGITS:
        if ((st = find_matches(sc, step, 1, NULL, NULL, 0, s, n, &k))) return st;
        k = apply_behavior(sc->lvl_spans[step], k, p->individual ? TB_ISOLATED : TB_CONTIGUOUS, false);
        return run_spans(tok, sc, step, s, k, first);
    case TP_METASPACE: {
        tk_buf *b = &sc->lvl_buf[step][0];
        b->len = 0;
        bool pre = false;
        if (p->scheme == TS_ALWAYS || (p->scheme == TS_FIRST && first)) {
            /* prepend unless the piece (after replacing spaces) starts with the replacement */
            pre = !(s[0] == ' ' || (n >= p->repl_len && !memcmp(s, p->repl, p->repl_len)));
        }
        if (pre && !tk_buf_put(b, p->repl, p->repl_len)) return MK_ERR_NOMEM;
        for (size_t i = 0; i < n; i++) {
            bool ok = s[i] == ' ' ? tk_buf_put(b, p->repl, p->repl_len) : tk_buf_putc(b, s[i]);
            if (!ok) return MK_ERR_NOMEM;
        }
        if (!p->split) return pt_run(tok, sc, step + 1, b->p, b->len, first);
        if ((st = find_matches(sc, step, 2, NULL, p->repl, p->repl_len, b->p, b->len, &k))) return st;
        k = apply_behavior(sc->lvl_spans[step], k, TB_MERGED_NEXT, false);
        return run_spans(tok, sc, step, b->p, k, first);
    }
    case TP_BYTELEVEL: {
        const char *src = s;
        size_t sn = n;
        if (p->add_prefix_space && s[0] != ' ') {
            tk_buf *b = &sc->lvl_buf[step][0];
            b->len = 0;
            if (!tk_buf_putc(b, ' ') || !tk_buf_put(b, s, n)) return MK_ERR_NOMEM;
            src = b->p;
            sn = b->len;
        }
        if (p->re) {
            if ((st = find_matches(sc, step, 0, p->re, NULL, 0, src, sn, &k))) return st;
        } else {
            if (!spans_reserve(sc, step, 1)) return MK_ERR_NOMEM;
            sc->lvl_spans[step][0] = 0;
            sc->lvl_spans[step][1] = sn;
            sc->lvl_spans[step][2] = 0;
            k = 1;
        }
        tk_buf *m = &sc->lvl_buf[step][1];
        for (size_t i = 0; i < k; i++) {
            size_t *sp = sc->lvl_spans[step];
            size_t a = sp[3 * i], e = sp[3 * i + 1];
            if (a == e) continue;
            m->len = 0;
            if (!tk_buf_reserve(m, 2 * (e - a))) return MK_ERR_NOMEM;
            char *w = m->p;
            for (size_t j = a; j < e; j++) {
                int32_t cp = tk_byte_to_cp[(uint8_t)src[j]];
                if (cp < 0x80) *w++ = (char)cp;
                else {
                    *w++ = (char)(0xC0 | (cp >> 6));
                    *w++ = (char)(0x80 | (cp & 0x3F));
                }
            }
            m->len = (size_t)(w - m->p);
            if ((st = pt_run(tok, sc, step + 1, m->p, m->len, first && a == 0))) return st;
        }
        return MK_OK;
    }
    }
    return mk_err(MK_ERR_INTERNAL, "tokenizer: unknown pre-tokenizer kind");
}

/* ---- encode ------------------------------------------------------------------------------------- */

static mk_status encode_with(const mk_tokenizer *tok, tk_scratch *sc, const char *text, size_t len, bool add_special) {
    mk_status st;
    sc->n_out = 0;
    if (add_special)
        for (size_t i = 0; i < tok->post.n_pre; i++)
            if (!out_push(sc, tok->post.pre[i])) return MK_ERR_NOMEM;
    if ((st = split_added(tok, &tok->trie_raw, sc, 0, text, len))) return st;
    for (size_t gi = 0; gi < sc->n_segs[0]; gi++) {
        seg g = ((seg *)sc->segs[0])[gi];
        if (g.added >= 0) {
            if (!out_push(sc, tok->added[g.added].id)) return MK_ERR_NOMEM;
            continue;
        }
        if ((st = tk_normalize_sc(tok, sc, text + g.start, g.end - g.start))) return st;
        const char *ns = sc->norm.p;
        size_t nn = sc->norm.len;
        if ((st = split_added(tok, &tok->trie_norm, sc, 1, ns, nn))) return st;
        for (size_t hi = 0; hi < sc->n_segs[1]; hi++) {
            seg h = ((seg *)sc->segs[1])[hi];
            if (h.added >= 0) {
                if (!out_push(sc, tok->added[h.added].id)) return MK_ERR_NOMEM;
                continue;
            }
            if ((st = pt_run(tok, sc, 0, ns + h.start, h.end - h.start, g.start == 0 && h.start == 0))) return st;
        }
    }
    if (add_special)
        for (size_t i = 0; i < tok->post.n_post; i++)
            if (!out_push(sc, tok->post.post[i])) return MK_ERR_NOMEM;
    return MK_OK;
}

mk_status tk_normalize_sc(const mk_tokenizer *tok, tk_scratch *sc, const char *s, size_t n) {
    sc->norm.len = 0;
    if (!tk_buf_put(&sc->norm, s, n)) return MK_ERR_NOMEM;
    if (!tok->norm) return MK_OK;
    return norm_apply(tok->norm, &sc->norm, &sc->tmp, sc->md);
}

mk_status mk_tokenizer_encode(const mk_tokenizer *tok, const char *text, size_t len, bool add_special, int32_t **ids,
                              size_t *n_ids) {
    if (ids) *ids = NULL;
    if (n_ids) *n_ids = 0;
    if (!tok || !ids || !n_ids || (len && !text)) return mk_err(MK_ERR_ARG, "mk_tokenizer_encode: NULL argument");
    size_t bad = tk_utf8_check(text, len);
    if (bad != len)
        return mk_err(MK_ERR_ARG, "tokenizer: input text is not valid UTF-8 (byte 0x%02x at offset %zu)",
                      (unsigned char)text[bad], bad);
    mk_tokenizer *mt = (mk_tokenizer *)tok; /* the lock and the shared scratch are the only mutable parts */
    tk_scratch *sc = NULL;
    bool shared = pthread_mutex_trylock(&mt->lock) == 0;
    if (shared) {
        if (!mt->shared) mt->shared = tk_scratch_new();
        sc = mt->shared;
        if (!sc) {
            pthread_mutex_unlock(&mt->lock);
            return MK_ERR_NOMEM;
        }
    } else {
        sc = tk_scratch_new();
        if (!sc) return MK_ERR_NOMEM;
    }
    mk_status st = encode_with(tok, sc, text ? text : "", len, add_special);
    if (!st) {
        *ids = mk_malloc(sc->n_out * sizeof **ids);
        if (!*ids) st = MK_ERR_NOMEM;
        else {
            if (sc->n_out) memcpy(*ids, sc->out, sc->n_out * sizeof **ids);
            *n_ids = sc->n_out;
        }
    }
    if (shared) {
        /* do not keep huge buffers from one long text */
        if (sc->cap_out > ((size_t)1 << 22)) { free(sc->out); sc->out = NULL; sc->cap_out = 0; }
        pthread_mutex_unlock(&mt->lock);
    } else tk_scratch_free(sc);
    return st;
}
