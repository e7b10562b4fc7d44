/* Internal structures of the tokenizer (src/tokenizer/tok_*.c). Not part of the public API.
 *
 * Pipeline of mk_tokenizer_encode, as in HF tokenizers:
 *   text -> split out non-normalized added tokens (leftmost-longest) -> normalize each remaining
 *   piece -> split out normalized added tokens -> pre-tokenize (depth-first through the flattened
 *   pre-tokenizer steps) -> BPE model per pre-token (with a cache) -> post-processor.
 */
#ifndef MK_TOK_INTERNAL_H
#define MK_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>

#include "base/base.h"
#include "moekit/tokenizer.h"

/* ---- growable byte buffer --------------------------------------------------------------- */
typedef struct tk_buf {
    char *p;
    size_t len, cap;
} tk_buf;
/* All return false (and record MK_ERR_NOMEM) when memory runs out. */
bool tk_buf_reserve(tk_buf *b, size_t extra);
bool tk_buf_put(tk_buf *b, const void *s, size_t n);
static inline bool tk_buf_putc(tk_buf *b, char c) {
    if (b->len + 1 > b->cap && !tk_buf_reserve(b, 1)) return false;
    b->p[b->len++] = c;
    return true;
}
void tk_buf_free(tk_buf *b);

/* ---- UTF-8 ------------------------------------------------------------------------------ */
/* Offset of the first invalid byte of s[0..n) (strict UTF-8 as Rust's str), or n if valid. */
size_t tk_utf8_check(const char *s, size_t n);
/* Length of the UTF-8 sequence starting with lead byte c (1 for invalid leads). */
static inline size_t tk_utf8_len(unsigned char c) {
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}
/* Decodes one code point of valid UTF-8 at s, storing its length in *l. */
int32_t tk_utf8_decode(const char *s, size_t *l);
/* Appends the UTF-8 of code point c. */
bool tk_utf8_put(tk_buf *b, int32_t c);
/* Appends s[0..n) with invalid sequences replaced by U+FFFD as Rust's String::from_utf8_lossy. */
bool tk_utf8_lossy(tk_buf *b, const char *s, size_t n);

/* ---- hashing and maps ------------------------------------------------------------------- */
uint64_t tk_hash(const void *p, size_t n);

typedef struct tk_str {
    const char *s; /* points into an owned arena */
    uint32_t len;
} tk_str;

/* Open-addressing map from strings to indices of a caller-owned key array. */
typedef struct tk_strmap {
    uint64_t *slots; /* (hash high 32 bits << 32) | (index + 1); 0 = empty */
    size_t mask;
} tk_strmap;
bool tk_strmap_init(tk_strmap *m, size_t n_keys);
/* Inserts index idx for keys[idx] (overwrites an equal key's index). */
void tk_strmap_put(tk_strmap *m, const tk_str *keys, uint32_t idx);
/* Index of s[0..n) or -1. */
int64_t tk_strmap_get(const tk_strmap *m, const tk_str *keys, const char *s, size_t n);
void tk_strmap_free(tk_strmap *m);

/* Open-addressing map from a pair of ids to (rank, new id). */
typedef struct tk_pairmap {
    uint64_t *keys; /* (a << 32) | b; UINT64_MAX = empty */
    uint64_t *vals; /* (rank << 32) | new_id */
    size_t mask;
} tk_pairmap;
bool tk_pairmap_init(tk_pairmap *m, size_t n);
void tk_pairmap_put(tk_pairmap *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t new_id);
static inline bool tk_pairmap_get(const tk_pairmap *m, uint32_t a, uint32_t b, uint32_t *rank, uint32_t *new_id) {
    uint64_t k = ((uint64_t)a << 32) | b;
    uint64_t h = k * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h >> 20) & m->mask;
    for (;;) {
        uint64_t kk = m->keys[i];
        if (kk == k) {
            *rank = (uint32_t)(m->vals[i] >> 32);
            *new_id = (uint32_t)m->vals[i];
            return true;
        }
        if (kk == UINT64_MAX) return false;
        i = (i + 1) & m->mask;
    }
}
void tk_pairmap_free(tk_pairmap *m);

/* ---- regex ------------------------------------------------------------------------------ */
/* Compiles an Oniguruma-style pattern from tokenizer.json with PCRE2 (UTF, UCP, JIT); \s and \S
 * are translated to the Unicode White_Space property as Oniguruma defines them. NULL on error
 * (message names `where`). literal: the pattern is a plain string to be matched verbatim. */
pcre2_code *tk_regex_compile(const char *pat, size_t len, bool literal, const char *where);

/* Source of a pattern as tokenizer.json gives it (owned; s NULL if not kept). */
typedef struct tk_src {
    char *s;
    size_t len;
    bool literal; /* {"String": ...} rather than {"Regex": ...} */
} tk_src;

/* The GPT-2 pattern of the ByteLevel pre-tokenizer with use_regex. */
#define TK_GPT2_PATTERN "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* ---- normalizers ------------------------------------------------------------------------ */
typedef enum tk_norm_kind {
    TN_SEQ, TN_NFC, TN_NFD, TN_NFKC, TN_NFKD, TN_LOWER, TN_REPLACE, TN_PREPEND, TN_STRIP
} tk_norm_kind;
typedef struct tk_norm {
    tk_norm_kind kind;
    struct tk_norm *kids; /* TN_SEQ */
    size_t n_kids;
    pcre2_code *re;       /* TN_REPLACE */
    tk_src src;           /* TN_REPLACE pattern */
    char *content;        /* TN_REPLACE replacement, TN_PREPEND prefix */
    size_t content_len;
    bool left, right;     /* TN_STRIP */
} tk_norm;

/* ---- pre-tokenizers (flattened: a Sequence becomes consecutive steps) ------------------- */
typedef enum tk_pre_kind { TP_SPLIT, TP_BYTELEVEL, TP_DIGITS, TP_METASPACE } tk_pre_kind;
typedef enum tk_behavior { TB_REMOVED, TB_ISOLATED, TB_MERGED_PREV, TB_MERGED_NEXT, TB_CONTIGUOUS } tk_behavior;
typedef enum tk_prepend { TS_ALWAYS, TS_FIRST, TS_NEVER } tk_prepend;
typedef struct tk_pre {
    tk_pre_kind kind;
    pcre2_code *re;        /* TP_SPLIT; TP_BYTELEVEL with use_regex (GPT-2 pattern) */
    tk_src src;            /* TP_SPLIT pattern */
    tk_behavior behavior;  /* TP_SPLIT */
    bool invert;           /* TP_SPLIT */
    bool add_prefix_space; /* TP_BYTELEVEL */
    bool individual;       /* TP_DIGITS */
    char repl[8];          /* TP_METASPACE replacement char (UTF-8) */
    size_t repl_len;
    tk_prepend scheme;     /* TP_METASPACE */
    bool split;            /* TP_METASPACE */
} tk_pre;

/* ---- decoders (a Sequence is flattened into consecutive steps) -------------------------- */
typedef enum tk_dec_kind { TD_BYTELEVEL, TD_METASPACE, TD_BYTEFALLBACK, TD_FUSE, TD_STRIP, TD_REPLACE } tk_dec_kind;
typedef struct tk_dec {
    tk_dec_kind kind;
    pcre2_code *re;      /* TD_REPLACE */
    char *content;       /* TD_REPLACE content; TD_STRIP/TD_METASPACE char (UTF-8) */
    size_t content_len;
    size_t start, stop;  /* TD_STRIP */
    tk_prepend scheme;   /* TD_METASPACE */
} tk_dec;

/* ---- added tokens ----------------------------------------------------------------------- */
typedef struct tk_added {
    tk_str content;
    int32_t id;
    bool special, normalized, lstrip, rstrip, single_word;
} tk_added;

/* Byte trie over added-token contents for leftmost-longest matching. */
typedef struct tk_trie_node {
    int32_t child;   /* first child or -1 */
    int32_t sibling; /* next sibling or -1 */
    int32_t added;   /* index into tok->added of a token ending here, or -1 */
    uint8_t byte;
} tk_trie_node;
typedef struct tk_trie {
    tk_trie_node *nodes; /* node 0 is the root */
    size_t n, cap;
    uint8_t first[256];  /* 1 if some token starts with this byte */
} tk_trie;

/* ---- post-processor --------------------------------------------------------------------- */
/* Template of the single-sequence case: ids before and after the encoded sequence. */
typedef struct tk_post {
    int32_t *pre, *post;
    size_t n_pre, n_post;
} tk_post;

/* ---- pre-token cache ---------------------------------------------------------------------- */
typedef struct tk_cache {
    uint64_t *slots;  /* (hash high 32 << 32) | (entry + 1) */
    size_t mask;
    struct tk_centry { size_t key_off, ids_off; uint32_t key_len, n_ids; } *ents;
    size_t n_ents, cap_ents;
    tk_buf keys;
    int32_t *ids;
    size_t n_ids, cap_ids;
} tk_cache;

/* Scratch state of one encode call (reused through the tokenizer when not contended). */
typedef struct tk_scratch {
    pcre2_match_data *md;
    pcre2_jit_stack *jit;
    pcre2_match_context *mctx;
    tk_buf norm, tmp;              /* normalized text, normalizer temporaries */
    tk_buf lvl_buf[16][2];         /* per pre-tokenizer step: transformed pieces */
    size_t *lvl_spans[16];         /* per step: (start, end, flag) triples */
    size_t lvl_cap[16];
    /* BPE word state */
    struct tk_sym { int32_t id, prev, next; uint32_t len; } *syms;
    size_t cap_syms;
    struct tk_merge { uint32_t rank, pos, new_id; } *heap;
    size_t cap_heap;
    tk_buf word;                   /* char + prefix/suffix temporaries */
    void *segs[2];                 /* added-token split segments (raw text, normalized piece) */
    size_t n_segs[2], cap_segs[2];
    tk_cache cache;
    /* output */
    int32_t *out;
    size_t n_out, cap_out;
} tk_scratch;

struct mk_tokenizer {
    char *path; /* for messages */
    /* model (BPE) */
    tk_str *tokens;        /* id -> model token (s NULL if none), n_ids entries */
    size_t n_ids;          /* max id + 1 over vocab and added tokens */
    tk_strmap vocab;       /* model token -> id */
    tk_pairmap merges;
    int32_t unk_id;        /* -1 if none */
    bool fuse_unk, byte_fallback, ignore_merges;
    char *csp, *eow;       /* continuing_subword_prefix, end_of_word_suffix (NULL if none) */
    size_t csp_len, eow_len;
    int32_t byte_fb[256];  /* id of <0xNN>, -1 if absent */
    /* added tokens */
    tk_added *added;
    size_t n_added;
    tk_str *added_by_id;   /* id -> added content (s NULL if not added), n_ids entries */
    uint8_t *special;      /* id -> 1 if special added token, n_ids entries */
    tk_strmap added_map;   /* content -> index into added (keys: added_keys) */
    tk_str *added_keys;
    tk_trie trie_raw;      /* tokens with normalized:false */
    tk_trie trie_norm;     /* tokens with normalized:true, contents normalized */
    char **norm_contents;  /* owned normalized contents (for trie_norm) */
    /* pipeline */
    tk_norm *norm;         /* NULL if none */
    tk_pre *pre;
    size_t n_pre;
    tk_dec *dec;
    size_t n_dec;
    bool has_decoder;
    tk_post post;
    /* config */
    int32_t bos_id, eos_id, pad_id;
    bool add_bos;
    /* arenas */
    tk_buf arena;
    /* shared scratch (cache) used by one encode at a time */
    pthread_mutex_t lock;
    tk_scratch *shared;
};

/* tok_load.c: the construction steps shared by the tokenizer.json and GGUF loaders. */
/* A new empty tokenizer (bos/eos/pad/unk -1) whose messages name path; NULL if out of memory. */
mk_tokenizer *tk_new(const char *path);
/* Copies s[0..n) and a NUL into tok->arena; *off gets its offset (the arena moves until loading ends). */
bool tk_arena_put(mk_tokenizer *tok, const char *s, size_t n, size_t *off);
/* Once tokens[] (nv model tokens) and added[] are final: the vocabulary map, the added-token map
 * and the byte-fallback ids. */
mk_status tk_index_vocab(mk_tokenizer *tok, size_t nv);
/* Registers merge (a, b) with this rank (the merged token must be in the vocabulary too). Errors
 * name file, field and, as the vocabulary, vocab_name. cat is scratch. */
mk_status tk_merge_put(mk_tokenizer *tok, const char *a, size_t al, const char *b, size_t bl, uint32_t rank,
                       const char *file, const char *field, const char *vocab_name, tk_buf *cat);
/* The added-token tries (contents of normalized tokens go through the normalizer). */
mk_status tk_build_tries(mk_tokenizer *tok);

/* chat_template.c: calls fn(user, name, source) for each chat template of a model without
 * compiling it, name NULL for the default one: a directory's chat_template.jinja or
 * tokenizer_config.json "chat_template" (a string, or a list of named templates) and
 * additional_chat_templates/<name>.jinja, or a GGUF file's
 * tokenizer.chat_template and tokenizer.chat_template.<name>. */
typedef mk_status (*tk_template_fn)(void *user, const char *name, const char *source);
mk_status tk_chat_templates_each(const char *model_path, tk_template_fn fn, void *user);

/* tok_encode.c */
tk_scratch *tk_scratch_new(void);
void tk_scratch_free(tk_scratch *sc);
/* Normalizes s[0..n) with tok's normalizer into sc->norm. */
mk_status tk_normalize_sc(const mk_tokenizer *tok, tk_scratch *sc, const char *s, size_t n);
/* Applies the normalizer n to s[0..len) into out (cleared first). */
mk_status tk_normalize(const tk_norm *n, const char *s, size_t len, tk_buf *out, tk_buf *tmp);
void tk_norm_free(tk_norm *n);
/* Inserts added[idx] under key s[0..n) into the trie. */
bool tk_trie_add(tk_trie *t, const char *s, size_t n, int32_t idx);
void tk_trie_free(tk_trie *t);

/* tok_decode.c */
/* GPT-2 byte -> code point map and its inverse (-1 for code points that are not mapped). */
extern int32_t tk_byte_to_cp[256];
int32_t tk_cp_to_byte(int32_t cp);
void tk_bytelevel_init(void);

#endif
