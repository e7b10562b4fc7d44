/* Tokenizer utilities: buffers, strict UTF-8, hash maps, PCRE2 pattern translation. */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

bool tk_buf_reserve(tk_buf *b, size_t extra) {
    size_t need;
    if (!mk_add_ok(b->len, extra, &need)) {
        mk_err(MK_ERR_NOMEM, "buffer size overflow");
        return false;
    }
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = mk_realloc(b->p, cap);
    if (!p) return false;
    b->p = p;
    b->cap = cap;
    return true;
}

bool tk_buf_put(tk_buf *b, const void *s, size_t n) {
    if (!tk_buf_reserve(b, n)) return false;
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    return true;
}

void tk_buf_free(tk_buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ---- UTF-8 ---------------------------------------------------------------------------- */

/* Length of the valid prefix of an encoded character at s[0..n) (0 if the lead is invalid),
 * and whether it is complete (*full). Follows the Unicode "maximal subpart" rules that Rust's
 * from_utf8_lossy uses. */
static size_t utf8_prefix(const unsigned char *s, size_t n, bool *full) {
    unsigned char c = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    *full = false;
    if (c < 0x80) { *full = true; return 1; }
    if (c < 0xC2) return 0;
    if (c < 0xE0) need = 2;
    else if (c < 0xF0) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        else if (c == 0xED) hi = 0x9F;
    } else if (c < 0xF5) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        else if (c == 0xF4) hi = 0x8F;
    } else return 0;
    size_t i = 1;
    if (i < n && s[i] >= lo && s[i] <= hi) i++;
    else return 1;
    while (i < need && i < n && s[i] >= 0x80 && s[i] <= 0xBF) i++;
    *full = i == need;
    return i;
}

size_t tk_utf8_check(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        /* fast path: 8 ASCII bytes at a time */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        if (s[i] < 0x80) { i++; continue; }
        bool full;
        size_t l = utf8_prefix(s + i, n - i, &full);
        if (!full) return i;
        i += l;
    }
    return n;
}

int32_t tk_utf8_decode(const char *str, size_t *l) {
    const unsigned char *s = (const unsigned char *)str;
    unsigned char c = s[0];
    if (c < 0x80) { *l = 1; return c; }
    if (c < 0xE0) { *l = 2; return ((c & 0x1F) << 6) | (s[1] & 0x3F); }
    if (c < 0xF0) { *l = 3; return ((c & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F); }
    *l = 4;
    return ((c & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) | (s[3] & 0x3F);
}

bool tk_utf8_put(tk_buf *b, int32_t c) {
    char u[4];
    size_t n;
    if (c < 0x80) { u[0] = (char)c; n = 1; }
    else if (c < 0x800) { u[0] = (char)(0xC0 | (c >> 6)); u[1] = (char)(0x80 | (c & 0x3F)); n = 2; }
    else if (c < 0x10000) {
        u[0] = (char)(0xE0 | (c >> 12)); u[1] = (char)(0x80 | ((c >> 6) & 0x3F)); u[2] = (char)(0x80 | (c & 0x3F)); n = 3;
    } else {
        u[0] = (char)(0xF0 | (c >> 18)); u[1] = (char)(0x80 | ((c >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((c >> 6) & 0x3F)); u[3] = (char)(0x80 | (c & 0x3F)); n = 4;
    }
    return tk_buf_put(b, u, n);
}

bool tk_utf8_lossy(tk_buf *b, const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, start = 0;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        bool full;
        size_t l = utf8_prefix(s + i, n - i, &full);
        if (full) { i += l; continue; }
        if (!tk_buf_put(b, s + start, i - start)) return false;
        if (!tk_buf_put(b, "\xEF\xBF\xBD", 3)) return false;
        i += l ? l : 1;
        start = i;
    }
    return tk_buf_put(b, s + start, n - start);
}

/* ---- hashing ---------------------------------------------------------------------------- */

static inline uint64_t mix(uint64_t a, uint64_t b) {
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

uint64_t tk_hash(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x243F6A8885A308D3ull ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = mix(h ^ w, 0x9E3779B97F4A7C15ull);
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = mix(h ^ w ^ 0x13198A2E03707344ull, 0xBF58476D1CE4E5B9ull);
    return h ^ (h >> 29);
}

bool tk_strmap_init(tk_strmap *m, size_t n_keys) {
    size_t cap = 16;
    while (cap < n_keys * 2 + 1) cap *= 2;
    m->slots = mk_calloc(cap, sizeof *m->slots);
    m->mask = cap - 1;
    return m->slots != NULL;
}

void tk_strmap_put(tk_strmap *m, const tk_str *keys, uint32_t idx) {
    uint64_t h = tk_hash(keys[idx].s, keys[idx].len);
    uint64_t tag = h & 0xFFFFFFFF00000000ull;
    size_t i = (size_t)h & m->mask;
    for (;;) {
        uint64_t v = m->slots[i];
        if (!v) { m->slots[i] = tag | ((uint64_t)idx + 1); return; }
        if ((v & 0xFFFFFFFF00000000ull) == tag) {
            const tk_str *k = &keys[(uint32_t)v - 1];
            if (k->len == keys[idx].len && !memcmp(k->s, keys[idx].s, k->len)) {
                m->slots[i] = tag | ((uint64_t)idx + 1);
                return;
            }
        }
        i = (i + 1) & m->mask;
    }
}

int64_t tk_strmap_get(const tk_strmap *m, const tk_str *keys, const char *s, size_t n) {
    if (!m->slots) return -1;
    uint64_t h = tk_hash(s, n);
    uint64_t tag = h & 0xFFFFFFFF00000000ull;
    size_t i = (size_t)h & m->mask;
    for (;;) {
        uint64_t v = m->slots[i];
        if (!v) return -1;
        if ((v & 0xFFFFFFFF00000000ull) == tag) {
            const tk_str *k = &keys[(uint32_t)v - 1];
            if (k->len == n && !memcmp(k->s, s, n)) return (int64_t)((uint32_t)v - 1);
        }
        i = (i + 1) & m->mask;
    }
}

void tk_strmap_free(tk_strmap *m) {
    free(m->slots);
    m->slots = NULL;
}

bool tk_pairmap_init(tk_pairmap *m, size_t n) {
    size_t cap = 16;
    while (cap < n * 2 + 1) cap *= 2;
    m->keys = mk_malloc(cap * sizeof *m->keys);
    m->vals = mk_malloc(cap * sizeof *m->vals);
    m->mask = cap - 1;
    if (!m->keys || !m->vals) return false;
    memset(m->keys, 0xFF, cap * sizeof *m->keys);
    return true;
}

void tk_pairmap_put(tk_pairmap *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t new_id) {
    uint64_t k = ((uint64_t)a << 32) | b;
    uint64_t h = k * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h >> 20) & m->mask;
    while (m->keys[i] != UINT64_MAX && m->keys[i] != k) i = (i + 1) & m->mask;
    m->keys[i] = k;
    m->vals[i] = ((uint64_t)rank << 32) | new_id;
}

void tk_pairmap_free(tk_pairmap *m) {
    free(m->keys);
    free(m->vals);
    m->keys = m->vals = NULL;
}

/* ---- regex ------------------------------------------------------------------------------ */

pcre2_code *tk_regex_compile(const char *pat, size_t len, bool literal, const char *where) {
    tk_buf b = {0};
    if (literal) {
        /* \Q...\E cannot hold "\E"; escape every non-alphanumeric ASCII byte instead. */
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)pat[i];
            if (c < 0x80 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
                if (c < 0x20 || c == 0x7F) {
                    char e[8];
                    snprintf(e, sizeof e, "\\x{%02x}", c);
                    if (!tk_buf_put(&b, e, strlen(e))) goto nomem;
                    continue;
                }
                if (!tk_buf_putc(&b, '\\')) goto nomem;
            }
            if (!tk_buf_putc(&b, (char)c)) goto nomem;
        }
    } else {
        /* Oniguruma's \s is the Unicode White_Space property; PCRE2's also holds U+180E. */
        for (size_t i = 0; i < len; i++) {
            if (pat[i] == '\\' && i + 1 < len) {
                if (pat[i + 1] == 's') { if (!tk_buf_put(&b, "\\p{White_Space}", 15)) goto nomem; i++; continue; }
                if (pat[i + 1] == 'S') { if (!tk_buf_put(&b, "\\P{White_Space}", 15)) goto nomem; i++; continue; }
                if (!tk_buf_put(&b, pat + i, 2)) goto nomem;
                i++;
                continue;
            }
            if (!tk_buf_putc(&b, pat[i])) goto nomem;
        }
    }
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(b.p ? b.p : ""), b.len, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        mk_err(MK_ERR_FORMAT, "%s: regex does not compile at offset %zu: %s", where, (size_t)off, (char *)msg);
        tk_buf_free(&b);
        return NULL;
    }
    tk_buf_free(&b);
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if JIT is unavailable */
    return re;
nomem:
    tk_buf_free(&b);
    return NULL;
}
