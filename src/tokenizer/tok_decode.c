/* Decoding: ids -> token strings -> decoder chain (HF decoders' decode_chain) -> text, and the
 * streaming decoder (HF DecodeStream). */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

int32_t tk_byte_to_cp[256];
static int16_t cp_to_byte[324]; /* mapped code points are < 0x144 */
static pthread_once_t bl_once = PTHREAD_ONCE_INIT;

static void bl_init(void) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        tk_byte_to_cp[b] = keep ? b : 256 + n++;
    }
    for (int i = 0; i < 324; i++) cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) cp_to_byte[tk_byte_to_cp[b]] = (int16_t)b;
}

void tk_bytelevel_init(void) { pthread_once(&bl_once, bl_init); }

int32_t tk_cp_to_byte(int32_t cp) { return cp >= 0 && cp < 324 ? cp_to_byte[cp] : -1; }

/* A list of token strings: spans into one buffer. */
typedef struct toklist {
    tk_buf text;
    size_t *span; /* (off, len) pairs */
    size_t n, cap;
} toklist;

static bool tl_push(toklist *l, const char *s, size_t n) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        size_t *p = mk_realloc(l->span, cap * 2 * sizeof *p);
        if (!p) return false;
        l->span = p;
        l->cap = cap;
    }
    size_t off = l->text.len;
    if (!tk_buf_put(&l->text, s, n)) return false;
    l->span[2 * l->n] = off;
    l->span[2 * l->n + 1] = n;
    l->n++;
    return true;
}

/* Starts a new token at the end of l->text whose bytes the caller then appends. */
static bool tl_open(toklist *l) {
    return tl_push(l, "", 0);
}
static void tl_close(toklist *l) { l->span[2 * (l->n - 1) + 1] = l->text.len - l->span[2 * (l->n - 1)]; }

static void tl_free(toklist *l) {
    tk_buf_free(&l->text);
    free(l->span);
    memset(l, 0, sizeof *l);
}

#define TOK(l, i) ((l)->text.p + (l)->span[2 * (i)])
#define TLEN(l, i) ((l)->span[2 * (i) + 1])

/* Replaces every match of re in s[0..n) by content, appending to out. */
static mk_status regex_replace(const pcre2_code *re, const char *s, size_t n, const char *content, size_t clen,
                               tk_buf *out, pcre2_match_data *md) {
    size_t pos = 0, last = 0;
    while (pos <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return mk_err(MK_ERR_INTERNAL, "tokenizer: regex match failed (%d)", rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (!tk_buf_put(out, s + last, ov[0] - last) || !tk_buf_put(out, content, clen)) return MK_ERR_NOMEM;
        last = ov[1];
        if (ov[1] == ov[0]) {
            if (ov[1] >= n) break;
            pos = ov[1] + tk_utf8_len((unsigned char)s[ov[1]]);
        } else pos = ov[1];
    }
    if (!tk_buf_put(out, s + last, n - last)) return MK_ERR_NOMEM;
    return MK_OK;
}

/* One decoder step: in -> out (out is empty on entry). */
static mk_status dec_step(const tk_dec *d, const toklist *in, toklist *out, pcre2_match_data *md) {
    switch (d->kind) {
    case TD_BYTELEVEL: {
        /* every token's chars mapped back to bytes (a token with an unmapped char keeps its raw
         * bytes), all joined, then decoded lossily into one token */
        tk_buf bytes = {0};
        for (size_t i = 0; i < in->n; i++) {
            const char *s = TOK(in, i);
            size_t n = TLEN(in, i), start = bytes.len;
            bool ok = true;
            for (size_t j = 0; j < n;) {
                size_t l;
                int32_t b = tk_cp_to_byte(tk_utf8_decode(s + j, &l));
                if (b < 0) { ok = false; break; }
                if (!tk_buf_putc(&bytes, (char)b)) { tk_buf_free(&bytes); return MK_ERR_NOMEM; }
                j += l;
            }
            if (!ok) {
                bytes.len = start;
                if (!tk_buf_put(&bytes, s, n)) { tk_buf_free(&bytes); return MK_ERR_NOMEM; }
            }
        }
        bool ok = tl_open(out) && tk_utf8_lossy(&out->text, bytes.p ? bytes.p : "", bytes.len);
        tk_buf_free(&bytes);
        if (!ok) return MK_ERR_NOMEM;
        tl_close(out);
        return MK_OK;
    }
    case TD_METASPACE:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = TOK(in, i);
            size_t n = TLEN(in, i);
            if (!tl_open(out)) return MK_ERR_NOMEM;
            for (size_t j = 0; j < n;) {
                size_t l = tk_utf8_len((unsigned char)s[j]);
                if (l == d->content_len && !memcmp(s + j, d->content, l)) {
                    if (!(i == 0 && d->scheme != TS_NEVER) && !tk_buf_putc(&out->text, ' ')) return MK_ERR_NOMEM;
                } else if (!tk_buf_put(&out->text, s + j, l)) return MK_ERR_NOMEM;
                j += l;
            }
            tl_close(out);
        }
        return MK_OK;
    case TD_BYTEFALLBACK: {
        /* runs of <0xNN> tokens become their bytes if valid UTF-8, else one U+FFFD per byte */
        unsigned char run[256];
        tk_buf big = {0};
        size_t nrun = 0;
        for (size_t i = 0; i <= in->n; i++) {
            int byte = -1;
            if (i < in->n) {
                const char *s = TOK(in, i);
                if (TLEN(in, i) == 6 && !memcmp(s, "<0x", 3) && s[5] == '>') {
                    int v = 0, ok = 1;
                    for (int k = 3; k < 5; k++) {
                        char c = s[k];
                        int x = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : (k == 3 && c == '+') ? 0 : -1;
                        if (x < 0) { ok = 0; break; }
                        v = v * 16 + x;
                    }
                    if (ok) byte = v;
                }
            }
            if (byte >= 0) {
                if (nrun == sizeof run) {
                    if (!tk_buf_put(&big, run, nrun)) { tk_buf_free(&big); return MK_ERR_NOMEM; }
                    nrun = 0;
                }
                run[nrun++] = (unsigned char)byte;
                continue;
            }
            if (nrun || big.len) {
                if (!tk_buf_put(&big, run, nrun)) { tk_buf_free(&big); return MK_ERR_NOMEM; }
                nrun = 0;
                bool ok = true;
                if (tk_utf8_check(big.p, big.len) == big.len) ok = tl_push(out, big.p, big.len);
                else
                    for (size_t k = 0; k < big.len && ok; k++) ok = tl_push(out, "\xEF\xBF\xBD", 3);
                big.len = 0;
                if (!ok) { tk_buf_free(&big); return MK_ERR_NOMEM; }
            }
            if (i < in->n && !tl_push(out, TOK(in, i), TLEN(in, i))) { tk_buf_free(&big); return MK_ERR_NOMEM; }
        }
        tk_buf_free(&big);
        return MK_OK;
    }
    case TD_FUSE:
        if (!tl_open(out)) return MK_ERR_NOMEM;
        for (size_t i = 0; i < in->n; i++)
            if (!tk_buf_put(&out->text, TOK(in, i), TLEN(in, i))) return MK_ERR_NOMEM;
        tl_close(out);
        return MK_OK;
    case TD_STRIP:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = TOK(in, i);
            size_t n = TLEN(in, i), a = 0, e = n;
            for (size_t k = 0; k < d->start && a < n; k++) {
                if (n - a >= d->content_len && !memcmp(s + a, d->content, d->content_len)) a += d->content_len;
                else break;
            }
            for (size_t k = 0; k < d->stop && e > a; k++) {
                if (e - a >= d->content_len && !memcmp(s + e - d->content_len, d->content, d->content_len))
                    e -= d->content_len;
                else break;
            }
            if (!tl_push(out, s + a, e - a)) return MK_ERR_NOMEM;
        }
        return MK_OK;
    case TD_REPLACE:
        for (size_t i = 0; i < in->n; i++) {
            if (!tl_open(out)) return MK_ERR_NOMEM;
            mk_status s = regex_replace(d->re, TOK(in, i), TLEN(in, i), d->content, d->content_len, &out->text, md);
            if (s) return s;
            tl_close(out);
        }
        return MK_OK;
    }
    return mk_err(MK_ERR_INTERNAL, "tokenizer: unknown decoder kind");
}

mk_status mk_tokenizer_decode(const mk_tokenizer *tok, const int32_t *ids, size_t n_ids, bool skip_special,
                              char **text, size_t *len) {
    if (!tok || !text || (n_ids && !ids)) return mk_err(MK_ERR_ARG, "mk_tokenizer_decode: NULL argument");
    *text = NULL;
    if (len) *len = 0;
    toklist a = {0}, b = {0};
    pcre2_match_data *md = NULL;
    mk_status st = MK_OK;
    for (size_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        if (id < 0 || (size_t)id >= tok->n_ids) continue;
        const tk_str *t = tok->added_by_id[id].s ? &tok->added_by_id[id] : &tok->tokens[id];
        if (!t->s) continue;
        if (skip_special && tok->special[id]) continue;
        if (!tl_push(&a, t->s, t->len)) { st = MK_ERR_NOMEM; goto done; }
    }
    if (tok->has_decoder) {
        md = pcre2_match_data_create(4, NULL);
        if (!md) { st = mk_err(MK_ERR_NOMEM, "out of memory"); goto done; }
        for (size_t k = 0; k < tok->n_dec; k++) {
            b.n = 0;
            b.text.len = 0;
            if ((st = dec_step(&tok->dec[k], &a, &b, md))) goto done;
            toklist t = a;
            a = b;
            b = t;
        }
    }
    tk_buf out = {0};
    for (size_t i = 0; i < a.n; i++) {
        if (!tok->has_decoder && i && !tk_buf_putc(&out, ' ')) { tk_buf_free(&out); st = MK_ERR_NOMEM; goto done; }
        if (!tk_buf_put(&out, TOK(&a, i), TLEN(&a, i))) { tk_buf_free(&out); st = MK_ERR_NOMEM; goto done; }
    }
    if (!tk_buf_putc(&out, 0)) { tk_buf_free(&out); st = MK_ERR_NOMEM; goto done; }
    *text = out.p;
    if (len) *len = out.len - 1;
done:
    if (md) pcre2_match_data_free(md);
    tl_free(&a);
    tl_free(&b);
    return st;
}

/* ---- streaming ---------------------------------------------------------------------------- */

struct mk_tokenizer_stream {
    const mk_tokenizer *tok;
    bool skip_special;
    int32_t *ids;
    size_t n_ids, cap_ids;
    char *prefix;      /* decode of ids[0..prefix_index) */
    size_t prefix_len;
    size_t prefix_index;
    tk_buf out;
};

mk_status mk_tokenizer_stream_new(const mk_tokenizer *tok, bool skip_special, mk_tokenizer_stream **out) {
    if (!tok || !out) return mk_err(MK_ERR_ARG, "mk_tokenizer_stream_new: NULL argument");
    mk_tokenizer_stream *s = mk_calloc(1, sizeof *s);
    if (!s) return MK_ERR_NOMEM;
    s->tok = tok;
    s->skip_special = skip_special;
    *out = s;
    return MK_OK;
}

void mk_tokenizer_stream_free(mk_tokenizer_stream *st) {
    if (!st) return;
    free(st->ids);
    free(st->prefix);
    tk_buf_free(&st->out);
    free(st);
}

static bool ends_with_fffd(const char *s, size_t n) {
    return n >= 3 && !memcmp(s + n - 3, "\xEF\xBF\xBD", 3);
}

mk_status mk_tokenizer_stream_feed(mk_tokenizer_stream *st, int32_t id, const char **text, size_t *len) {
    if (!st || !text || !len) return mk_err(MK_ERR_ARG, "mk_tokenizer_stream_feed: NULL argument");
    *text = "";
    *len = 0;
    mk_status s;
    if (st->prefix_len == 0 && st->n_ids) {
        char *p;
        size_t pl;
        if ((s = mk_tokenizer_decode(st->tok, st->ids, st->n_ids, st->skip_special, &p, &pl))) return s;
        if (!ends_with_fffd(p, pl)) {
            free(st->prefix);
            st->prefix = p;
            st->prefix_len = pl;
            st->prefix_index = st->n_ids;
        } else free(p);
    }
    if (st->n_ids == st->cap_ids) {
        size_t cap = st->cap_ids ? st->cap_ids * 2 : 16;
        int32_t *p = mk_realloc(st->ids, cap * sizeof *p);
        if (!p) return MK_ERR_NOMEM;
        st->ids = p;
        st->cap_ids = cap;
    }
    st->ids[st->n_ids++] = id;
    char *str;
    size_t sl;
    if ((s = mk_tokenizer_decode(st->tok, st->ids, st->n_ids, st->skip_special, &str, &sl))) return s;
    if (sl > st->prefix_len && !ends_with_fffd(str, sl)) {
        if (st->prefix_len && memcmp(str, st->prefix, st->prefix_len)) {
            free(str);
            return mk_err(MK_ERR_INTERNAL, "tokenizer stream: decoded text does not extend the previous prefix");
        }
        st->out.len = 0;
        if (!tk_buf_put(&st->out, str + st->prefix_len, sl - st->prefix_len) || !tk_buf_putc(&st->out, 0)) {
            free(str);
            return MK_ERR_NOMEM;
        }
        free(str);
        size_t new_prefix_index = st->n_ids - st->prefix_index;
        memmove(st->ids, st->ids + st->prefix_index, new_prefix_index * sizeof *st->ids);
        st->n_ids = new_prefix_index;
        free(st->prefix);
        st->prefix = NULL;
        st->prefix_len = 0;
        if ((s = mk_tokenizer_decode(st->tok, st->ids, st->n_ids, st->skip_special, &st->prefix, &st->prefix_len)))
            return s;
        st->prefix_index = new_prefix_index;
        *text = st->out.p;
        *len = st->out.len - 1;
        return MK_OK;
    }
    free(str);
    return MK_OK;
}

mk_status mk_tokenizer_stream_flush(mk_tokenizer_stream *st, const char **text, size_t *len) {
    if (!st || !text || !len) return mk_err(MK_ERR_ARG, "mk_tokenizer_stream_flush: NULL argument");
    *text = "";
    *len = 0;
    char *str;
    size_t sl;
    mk_status s = mk_tokenizer_decode(st->tok, st->ids, st->n_ids, st->skip_special, &str, &sl);
    if (s) return s;
    st->out.len = 0;
    /* what the stream has already returned is the decode of ids[0..prefix_index) (prefix) */
    size_t done = st->prefix_len <= sl && !memcmp(str, st->prefix ? st->prefix : "", st->prefix_len) ? st->prefix_len : 0;
    bool ok = tk_buf_put(&st->out, str + done, sl - done) && tk_buf_putc(&st->out, 0);
    free(str);
    if (!ok) return MK_ERR_NOMEM;
    st->n_ids = 0;
    free(st->prefix);
    st->prefix = NULL;
    st->prefix_len = 0;
    st->prefix_index = 0;
    *text = st->out.p;
    *len = st->out.len - 1;
    return MK_OK;
}
