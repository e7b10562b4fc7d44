/* Jinja evaluator (see jinja.h): values with Python semantics (str(), repr(), ==, truthiness, slicing
 * by code point), the filters, tests, string/dict methods and globals that chat templates use, and
 * transformers' additions (raise_exception, strftime_now, a tojson that keeps non-ASCII and does not
 * escape HTML). Undefined behaves like Jinja's default Undefined: prints as "", is false, iterates as
 * empty, and raises an error when used in arithmetic, attribute access or calls. */
#include "tokenizer/jinja.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

/* ---------------------------------------------------------------- context */

typedef struct scope scope;
struct scope {
    scope *parent;
    const char **names;
    jv **vals;
    size_t n, cap;
};

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

typedef struct {
    jarena a;
    const char *label;
    mk_status st;
    int depth;
    uint64_t steps; /* loop iterations and macro calls, against MAX_STEPS */
    scope *root;
} rctx;

/* Bounds on one render, so that a hostile template fails instead of running for hours or filling memory. */
#define MAX_STEPS 10000000u
#define MAX_OUTPUT ((size_t)256 << 20)

enum { EX_OK = 0, EX_BREAK = 1, EX_CONTINUE = 2, EX_ERR = -1 };

static jv V_NONE = {.k = JV_NONE}, V_TRUE = {.k = JV_BOOL, .u.b = true}, V_FALSE = {.k = JV_BOOL, .u.b = false};

static jv *rerr(rctx *C, mk_status s, int line, const char *fmt, ...) MK_PRINTF(4, 5);
static jv *rerr(rctx *C, mk_status s, int line, const char *fmt, ...) {
    if (C->st) return NULL;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    C->st = mk_err(s, "%s: line %d: %s", C->label, line, msg);
    return NULL;
}
static jv *oom(rctx *C) {
    if (!C->st) C->st = MK_ERR_NOMEM;
    return NULL;
}

static bool sb_put(rctx *C, sbuf *b, const char *p, size_t n) {
    if (!n) return true;
    if (n > MAX_OUTPUT - b->n) {
        rerr(C, MK_ERR_UNSUPPORTED, 0, "rendered text exceeds %zu MiB", MAX_OUTPUT >> 20);
        return false;
    }
    if (b->cap - b->n < n + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < n + 1) {
            if (cap > SIZE_MAX / 2) { oom(C); return false; }
            cap *= 2;
        }
        char *q = realloc(b->p, cap);
        if (!q) {
            mk_err(MK_ERR_NOMEM, "%s: out of memory rendering", C->label);
            oom(C);
            return false;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = 0;
    return true;
}
static bool sb_puts(rctx *C, sbuf *b, const char *s) { return sb_put(C, b, s, strlen(s)); }
static bool sb_putc(rctx *C, sbuf *b, char c) { return sb_put(C, b, &c, 1); }

/* ---------------------------------------------------------------- values */

static jv *mk_v(rctx *C, jv_kind k) {
    jv *v = ja_alloc(&C->a, sizeof *v);
    if (!v) return oom(C);
    v->k = k;
    return v;
}
static jv *v_bool(bool b) { return b ? &V_TRUE : &V_FALSE; }
static jv *v_int(rctx *C, int64_t i) {
    jv *v = mk_v(C, JV_INT);
    if (v) v->u.i = i;
    return v;
}
static jv *v_float(rctx *C, double f) {
    jv *v = mk_v(C, JV_FLOAT);
    if (v) v->u.f = f;
    return v;
}
static jv *v_str(rctx *C, const char *p, size_t n) {
    jv *v = jv_new_str(&C->a, p, n);
    return v ? v : oom(C);
}
static jv *v_cstr(rctx *C, const char *s) { return v_str(C, s, strlen(s)); }
static jv *v_undef(rctx *C, const char *fmt, ...) MK_PRINTF(2, 3);
static jv *v_undef(rctx *C, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    jv *v = mk_v(C, JV_UNDEF);
    if (!v) return NULL;
    size_t n = strlen(msg);
    char *s = ja_strndup(&C->a, msg, n);
    if (!s) return oom(C);
    v->u.s.p = s;
    v->u.s.n = n;
    return v;
}
static jv *v_list(rctx *C, jv_kind k, size_t n) {
    jv *v = mk_v(C, k);
    if (!v) return NULL;
    if (n) {
        size_t bytes;
        if (!mk_mul_ok(n, sizeof(jv *), &bytes)) return oom(C);
        v->u.l.v = ja_alloc(&C->a, bytes);
        if (!v->u.l.v) return oom(C);
    }
    v->u.l.n = n;
    return v;
}
/* l (a fresh list) becomes a one-shot iterator */
static jv *as_gen(jv *l) {
    if (l) l->k = JV_GEN;
    return l;
}
static jv *v_from_sb(rctx *C, sbuf *b) {
    jv *v = v_str(C, b->p ? b->p : "", b->n);
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
    return v;
}

/* Markup's escape(): & < > " ' as HTML entities; a Markup string is returned as is. */
static jv *html_escape(rctx *C, jv *s) {
    if (s->markup) return s;
    sbuf b = {0};
    for (size_t i = 0; i < s->u.s.n; i++) {
        char c = s->u.s.p[i];
        const char *r = c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '"' ? "&#34;"
                      : c == '\'' ? "&#39;" : NULL;
        if (!(r ? sb_puts(C, &b, r) : sb_putc(C, &b, c))) { free(b.p); return NULL; }
    }
    jv *v = v_from_sb(C, &b);
    if (v) v->markup = true;
    return v;
}
static jv *with_markup(jv *v, bool m) {
    if (v && v->k == JV_STR && m) v->markup = true;
    return v;
}

static bool d_set(rctx *C, jv *d, jv *key, jv *val);

static bool key_eq(const jv *k, const char *p, size_t n) {
    return k->k == JV_STR && k->u.s.n == n && memcmp(k->u.s.p, p, n) == 0;
}
static jv *d_get(const jv *d, const char *p, size_t n) {
    for (size_t i = 0; i < d->u.d.n; i++)
        if (key_eq(d->u.d.keys[i], p, n)) return d->u.d.vals[i];
    return NULL;
}
static bool v_eq(const jv *a, const jv *b);
static jv *d_getv(const jv *d, const jv *key) {
    for (size_t i = 0; i < d->u.d.n; i++)
        if (v_eq(d->u.d.keys[i], key)) return d->u.d.vals[i];
    return NULL;
}
static bool d_set(rctx *C, jv *d, jv *key, jv *val) {
    for (size_t i = 0; i < d->u.d.n; i++)
        if (v_eq(d->u.d.keys[i], key)) { d->u.d.vals[i] = val; return true; }
    if (d->u.d.n == d->u.d.cap) {
        size_t cap = d->u.d.cap ? d->u.d.cap * 2 : 4;
        jv **k = ja_alloc(&C->a, cap * sizeof *k), **v = ja_alloc(&C->a, cap * sizeof *v);
        if (!k || !v) { oom(C); return false; }
        if (d->u.d.n) {
            memcpy(k, d->u.d.keys, d->u.d.n * sizeof *k);
            memcpy(v, d->u.d.vals, d->u.d.n * sizeof *v);
        }
        d->u.d.keys = k;
        d->u.d.vals = v;
        d->u.d.cap = cap;
    }
    d->u.d.keys[d->u.d.n] = key;
    d->u.d.vals[d->u.d.n] = val;
    d->u.d.n++;
    return true;
}

static const char *type_name(const jv *v) {
    switch (v->k) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return "list";
    case JV_TUPLE: return "tuple";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_LOOP: return "LoopContext";
    case JV_FUNC: return "function";
    case JV_METHOD: return "method";
    case JV_MACRO: return "Macro";
    case JV_GEN: return "generator";
    }
    return "object";
}

static bool truthy(const jv *v) {
    switch (v->k) {
    case JV_UNDEF: case JV_NONE: return false;
    case JV_BOOL: return v->u.b;
    case JV_INT: return v->u.i != 0;
    case JV_FLOAT: return v->u.f != 0.0;
    case JV_STR: return v->u.s.n != 0;
    case JV_LIST: case JV_TUPLE: return v->u.l.n != 0;
    case JV_DICT: return v->u.d.n != 0;
    default: return true;
    }
}

static bool is_num(const jv *v) { return v->k == JV_INT || v->k == JV_FLOAT || v->k == JV_BOOL; }
static bool is_intlike(const jv *v) { return v->k == JV_INT || v->k == JV_BOOL; }
static int64_t as_int(const jv *v) { return v->k == JV_BOOL ? (int64_t)v->u.b : v->u.i; }
static double as_f(const jv *v) { return v->k == JV_FLOAT ? v->u.f : (double)as_int(v); }

static bool v_eq(const jv *a, const jv *b) {
    if (is_num(a) && is_num(b)) {
        if (is_intlike(a) && is_intlike(b)) return as_int(a) == as_int(b);
        return as_f(a) == as_f(b);
    }
    if (a->k != b->k) return false;
    switch (a->k) {
    case JV_UNDEF: case JV_NONE: return true;
    case JV_STR: return a->u.s.n == b->u.s.n && memcmp(a->u.s.p, b->u.s.p, a->u.s.n) == 0;
    case JV_LIST: case JV_TUPLE:
        if (a->u.l.n != b->u.l.n) return false;
        for (size_t i = 0; i < a->u.l.n; i++)
            if (!v_eq(a->u.l.v[i], b->u.l.v[i])) return false;
        return true;
    case JV_DICT:
        if (a->u.d.n != b->u.d.n) return false;
        for (size_t i = 0; i < a->u.d.n; i++) {
            jv *o = d_getv(b, a->u.d.keys[i]);
            if (!o || !v_eq(a->u.d.vals[i], o)) return false;
        }
        return true;
    default: return a == b;
    }
}

/* ---- UTF-8 helpers ---- */

/* Decodes one code point at p (n bytes left); invalid bytes decode as themselves, length 1. */
static int32_t u8_dec(const char *p, size_t n, size_t *len) {
    utf8proc_int32_t c;
    utf8proc_ssize_t r = utf8proc_iterate((const utf8proc_uint8_t *)p, (utf8proc_ssize_t)n, &c);
    if (r <= 0) { *len = 1; return (unsigned char)p[0]; }
    *len = (size_t)r;
    return c;
}
static size_t u8_count(const char *p, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; c++) {
        size_t l;
        u8_dec(p + i, n - i, &l);
        i += l;
    }
    return c;
}
/* Byte offsets of each code point (n_cp + 1 entries). */
static size_t *u8_offsets(rctx *C, const char *p, size_t n, size_t *n_cp) {
    size_t cnt = u8_count(p, n);
    size_t *off = ja_alloc(&C->a, (cnt + 1) * sizeof *off);
    if (!off) { oom(C); return NULL; }
    size_t i = 0, k = 0;
    while (i < n) {
        off[k++] = i;
        size_t l;
        u8_dec(p + i, n - i, &l);
        i += l;
    }
    off[k] = n;
    *n_cp = cnt;
    return off;
}
static bool py_space(int32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* ---- str() / repr() / json ---- */

static void fmt_float(double f, char *buf, size_t bn) {
    if (isnan(f)) { snprintf(buf, bn, "nan"); return; }
    if (isinf(f)) { snprintf(buf, bn, f < 0 ? "-inf" : "inf"); return; }
    char tmp[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    /* tmp: [-]d[.ddd]e[+-]XX */
    char digits[24];
    size_t nd = 0;
    const char *q = tmp;
    bool neg = *q == '-';
    if (neg) q++;
    for (; *q && *q != 'e'; q++)
        if (*q != '.') digits[nd++] = *q;
    int e = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    size_t o = 0;
    if (neg) buf[o++] = '-';
    if (e >= -4 && e < 16) {
        if (e >= 0) {
            for (int i = 0; i <= e; i++) buf[o++] = (size_t)i < nd ? digits[i] : '0';
            buf[o++] = '.';
            if ((size_t)e + 1 < nd) for (size_t i = (size_t)e + 1; i < nd; i++) buf[o++] = digits[i];
            else buf[o++] = '0';
        } else {
            buf[o++] = '0';
            buf[o++] = '.';
            for (int i = 0; i < -e - 1; i++) buf[o++] = '0';
            for (size_t i = 0; i < nd; i++) buf[o++] = digits[i];
        }
        buf[o] = 0;
    } else {
        buf[o++] = digits[0];
        if (nd > 1) {
            buf[o++] = '.';
            for (size_t i = 1; i < nd; i++) buf[o++] = digits[i];
        }
        snprintf(buf + o, bn - o, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    }
}

static bool put_repr(rctx *C, sbuf *b, const jv *v);

static bool put_str(rctx *C, sbuf *b, const jv *v) {
    char buf[64];
    switch (v->k) {
    case JV_UNDEF: return true;
    case JV_NONE: return sb_puts(C, b, "None");
    case JV_BOOL: return sb_puts(C, b, v->u.b ? "True" : "False");
    case JV_INT: snprintf(buf, sizeof buf, "%lld", (long long)v->u.i); return sb_puts(C, b, buf);
    case JV_FLOAT: fmt_float(v->u.f, buf, sizeof buf); return sb_puts(C, b, buf);
    case JV_STR: return sb_put(C, b, v->u.s.p, v->u.s.n);
    default: return put_repr(C, b, v);
    }
}

static bool put_str_repr(rctx *C, sbuf *b, const char *p, size_t n) {
    bool sq = memchr(p, '\'', n) != NULL, dq = memchr(p, '"', n) != NULL;
    char q = (sq && !dq) ? '"' : '\'';
    if (!sb_putc(C, b, q)) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        char e[8];
        if (c == '\\') { if (!sb_puts(C, b, "\\\\")) return false; }
        else if (c == (unsigned char)q) { e[0] = '\\'; e[1] = (char)q; if (!sb_put(C, b, e, 2)) return false; }
        else if (c == '\n') { if (!sb_puts(C, b, "\\n")) return false; }
        else if (c == '\r') { if (!sb_puts(C, b, "\\r")) return false; }
        else if (c == '\t') { if (!sb_puts(C, b, "\\t")) return false; }
        else if (c < 0x20 || c == 0x7f) { snprintf(e, sizeof e, "\\x%02x", c); if (!sb_puts(C, b, e)) return false; }
        else if (!sb_putc(C, b, (char)c)) return false;
    }
    return sb_putc(C, b, q);
}

static bool put_repr(rctx *C, sbuf *b, const jv *v) {
    switch (v->k) {
    case JV_STR: return put_str_repr(C, b, v->u.s.p, v->u.s.n);
    case JV_LIST: case JV_TUPLE: {
        bool t = v->k == JV_TUPLE;
        if (!sb_putc(C, b, t ? '(' : '[')) return false;
        for (size_t i = 0; i < v->u.l.n; i++) {
            if (i && !sb_puts(C, b, ", ")) return false;
            if (!put_repr(C, b, v->u.l.v[i])) return false;
        }
        if (t && v->u.l.n == 1 && !sb_putc(C, b, ',')) return false;
        return sb_putc(C, b, t ? ')' : ']');
    }
    case JV_DICT: case JV_NS: {
        if (v->k == JV_NS && !sb_puts(C, b, "<Namespace ")) return false;
        if (!sb_putc(C, b, '{')) return false;
        for (size_t i = 0; i < v->u.d.n; i++) {
            if (i && !sb_puts(C, b, ", ")) return false;
            if (!put_repr(C, b, v->u.d.keys[i]) || !sb_puts(C, b, ": ") || !put_repr(C, b, v->u.d.vals[i]))
                return false;
        }
        return sb_putc(C, b, '}') && (v->k != JV_NS || sb_putc(C, b, '>'));
    }
    case JV_UNDEF: return true;
    case JV_LOOP: return sb_puts(C, b, "<LoopContext>");
    case JV_FUNC: case JV_METHOD: return sb_puts(C, b, "<function>");
    case JV_MACRO: return sb_puts(C, b, "<Macro>");
    case JV_GEN: return sb_puts(C, b, "<generator object>");
    default: return put_str(C, b, v);
    }
}

typedef struct {
    int indent; /* < 0: none */
    bool ensure_ascii, sort_keys;
    const char *item_sep, *key_sep;
} json_opts;

static bool put_json_str(rctx *C, sbuf *b, const char *p, size_t n, bool ascii) {
    if (!sb_putc(C, b, '"')) return false;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)p[i];
        char e[16];
        if (c == '"') { if (!sb_puts(C, b, "\\\"")) return false; }
        else if (c == '\\') { if (!sb_puts(C, b, "\\\\")) return false; }
        else if (c == '\n') { if (!sb_puts(C, b, "\\n")) return false; }
        else if (c == '\r') { if (!sb_puts(C, b, "\\r")) return false; }
        else if (c == '\t') { if (!sb_puts(C, b, "\\t")) return false; }
        else if (c == '\b') { if (!sb_puts(C, b, "\\b")) return false; }
        else if (c == '\f') { if (!sb_puts(C, b, "\\f")) return false; }
        else if (c < 0x20) { snprintf(e, sizeof e, "\\u%04x", c); if (!sb_puts(C, b, e)) return false; }
        else if (c >= 0x80 && ascii) {
            size_t l;
            int32_t cp = u8_dec(p + i, n - i, &l);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                snprintf(e, sizeof e, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
            } else {
                snprintf(e, sizeof e, "\\u%04x", cp);
            }
            if (!sb_puts(C, b, e)) return false;
            i += l;
            continue;
        } else if (!sb_putc(C, b, (char)c)) return false;
        i++;
    }
    return sb_putc(C, b, '"');
}

static bool json_nl(rctx *C, sbuf *b, const json_opts *o, int level) {
    if (o->indent < 0) return true;
    if (!sb_putc(C, b, '\n')) return false;
    for (int i = 0; i < o->indent * level; i++)
        if (!sb_putc(C, b, ' ')) return false;
    return true;
}

static int cmp_keys(const void *x, const void *y) {
    const jv *a = *(jv *const *)x, *b = *(jv *const *)y;
    if (a->k != JV_STR || b->k != JV_STR) return 0;
    size_t n = MK_MIN(a->u.s.n, b->u.s.n);
    int c = memcmp(a->u.s.p, b->u.s.p, n);
    return c ? c : (a->u.s.n > b->u.s.n) - (a->u.s.n < b->u.s.n);
}

static bool put_json(rctx *C, sbuf *b, const jv *v, const json_opts *o, int level, int line) {
    char buf[64];
    if (level > 100) { rerr(C, MK_ERR_UNSUPPORTED, line, "tojson: value nested too deeply"); return false; }
    switch (v->k) {
    case JV_NONE: return sb_puts(C, b, "null");
    case JV_BOOL: return sb_puts(C, b, v->u.b ? "true" : "false");
    case JV_INT: snprintf(buf, sizeof buf, "%lld", (long long)v->u.i); return sb_puts(C, b, buf);
    case JV_FLOAT:
        if (isnan(v->u.f)) return sb_puts(C, b, "NaN");
        if (isinf(v->u.f)) return sb_puts(C, b, v->u.f < 0 ? "-Infinity" : "Infinity");
        fmt_float(v->u.f, buf, sizeof buf);
        return sb_puts(C, b, buf);
    case JV_STR: return put_json_str(C, b, v->u.s.p, v->u.s.n, o->ensure_ascii);
    case JV_LIST: case JV_TUPLE:
        if (!v->u.l.n) return sb_puts(C, b, "[]");
        if (!sb_putc(C, b, '[')) return false;
        for (size_t i = 0; i < v->u.l.n; i++) {
            if (i && !sb_puts(C, b, o->item_sep)) return false;
            if (!json_nl(C, b, o, level + 1) || !put_json(C, b, v->u.l.v[i], o, level + 1, line)) return false;
        }
        return json_nl(C, b, o, level) && sb_putc(C, b, ']');
    case JV_DICT: {
        if (!v->u.d.n) return sb_puts(C, b, "{}");
        size_t n = v->u.d.n;
        size_t *idx = ja_alloc(&C->a, n * sizeof *idx);
        if (!idx) { oom(C); return false; }
        for (size_t i = 0; i < n; i++) idx[i] = i;
        if (o->sort_keys) { /* insertion sort by key (stable) */
            for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0 && cmp_keys(&v->u.d.keys[idx[j - 1]], &v->u.d.keys[idx[j]]) > 0; j--) {
                    size_t t = idx[j]; idx[j] = idx[j - 1]; idx[j - 1] = t;
                }
        }
        if (!sb_putc(C, b, '{')) return false;
        for (size_t k = 0; k < n; k++) {
            size_t i = idx[k];
            const jv *key = v->u.d.keys[i];
            if (k && !sb_puts(C, b, o->item_sep)) return false;
            if (!json_nl(C, b, o, level + 1)) return false;
            if (key->k == JV_STR) { if (!put_json_str(C, b, key->u.s.p, key->u.s.n, o->ensure_ascii)) return false; }
            else {
                sbuf t = {0};
                bool ok = key->k == JV_NONE ? sb_puts(C, &t, "null") : key->k == JV_BOOL ? sb_puts(C, &t, key->u.b ? "true" : "false") : put_str(C, &t, key);
                ok = ok && put_json_str(C, b, t.p ? t.p : "", t.n, o->ensure_ascii);
                free(t.p);
                if (!ok) return false;
            }
            if (!sb_puts(C, b, o->key_sep) || !put_json(C, b, v->u.d.vals[i], o, level + 1, line)) return false;
        }
        return json_nl(C, b, o, level) && sb_putc(C, b, '}');
    }
    default:
        rerr(C, MK_ERR_ARG, line, "tojson: object of type %s is not JSON serializable", type_name(v));
        return false;
    }
}

/* ---------------------------------------------------------------- scopes */

static scope *scope_new(rctx *C, scope *parent) {
    scope *s = ja_alloc(&C->a, sizeof *s);
    if (!s) { oom(C); return NULL; }
    s->parent = parent;
    return s;
}
static bool scope_set(rctx *C, scope *s, const char *name, jv *v) {
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0) { s->vals[i] = v; return true; }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        const char **nm = ja_alloc(&C->a, cap * sizeof *nm);
        jv **vv = ja_alloc(&C->a, cap * sizeof *vv);
        if (!nm || !vv) { oom(C); return false; }
        if (s->n) {
            memcpy(nm, s->names, s->n * sizeof *nm);
            memcpy(vv, s->vals, s->n * sizeof *vv);
        }
        s->names = nm;
        s->vals = vv;
        s->cap = cap;
    }
    s->names[s->n] = name;
    s->vals[s->n] = v;
    s->n++;
    return true;
}
static jv *scope_get(scope *s, const char *name) {
    for (; s; s = s->parent)
        for (size_t i = s->n; i-- > 0;)
            if (strcmp(s->names[i], name) == 0) return s->vals[i];
    return NULL;
}

/* ---------------------------------------------------------------- globals */

enum { F_RANGE = 1, F_NAMESPACE, F_DICT, F_RAISE, F_STRFTIME };
static const struct { const char *name; int id; } GLOBALS[] = {
    {"range", F_RANGE}, {"namespace", F_NAMESPACE}, {"dict", F_DICT},
    {"raise_exception", F_RAISE}, {"strftime_now", F_STRFTIME}};

/* ---------------------------------------------------------------- evaluation */

typedef struct {
    jv **pos;
    size_t np;
    const char **kw;
    jv **kwv;
    size_t nk;
} jargs;

static jv *arg(const jargs *a, size_t i, const char *name) {
    if (i < a->np) return a->pos[i];
    if (name)
        for (size_t k = 0; k < a->nk; k++)
            if (strcmp(a->kw[k], name) == 0) return a->kwv[k];
    return NULL;
}

static jv *eval(rctx *C, scope *S, const jnode *n);
static int exec_body(rctx *C, scope *S, const jnode *body, sbuf *out);

static bool eval_args(rctx *C, scope *S, const jnode *n, jargs *a, jv *first) {
    size_t extra = first ? 1 : 0;
    a->np = n->n_args + extra;
    a->pos = ja_alloc(&C->a, (a->np + 1) * sizeof(jv *));
    a->nk = n->n_kw;
    a->kw = n->kw;
    a->kwv = ja_alloc(&C->a, (a->nk + 1) * sizeof(jv *));
    if (!a->pos || !a->kwv) { oom(C); return false; }
    if (first) a->pos[0] = first;
    for (size_t i = 0; i < n->n_args; i++)
        if (!(a->pos[i + extra] = eval(C, S, n->args[i]))) return false;
    for (size_t i = 0; i < n->n_kw; i++)
        if (!(a->kwv[i] = eval(C, S, n->kwv[i]))) return false;
    return true;
}

static jv *undef_err(rctx *C, int line, const jv *u) {
    return rerr(C, MK_ERR_ARG, line, "%.*s", (int)u->u.s.n, u->u.s.p);
}

/* Materializes an iterable as a list of items (dict: keys; str: characters; undefined: empty). */
static jv *to_list(rctx *C, jv *v, int line) {
    switch (v->k) {
    case JV_LIST: case JV_TUPLE: return v;
    case JV_GEN: { /* consumes the iterator */
        jv *l = v_list(C, JV_LIST, v->u.l.n);
        if (!l) return NULL;
        for (size_t i = 0; i < v->u.l.n; i++) l->u.l.v[i] = v->u.l.v[i];
        v->u.l.n = 0;
        return l;
    }
    case JV_UNDEF: return v_list(C, JV_LIST, 0);
    case JV_DICT: {
        jv *l = v_list(C, JV_LIST, v->u.d.n);
        if (!l) return NULL;
        for (size_t i = 0; i < v->u.d.n; i++) l->u.l.v[i] = v->u.d.keys[i];
        return l;
    }
    case JV_STR: {
        size_t ncp;
        size_t *off = u8_offsets(C, v->u.s.p, v->u.s.n, &ncp);
        if (!off) return NULL;
        jv *l = v_list(C, JV_LIST, ncp);
        if (!l) return NULL;
        for (size_t i = 0; i < ncp; i++)
            if (!(l->u.l.v[i] = v_str(C, v->u.s.p + off[i], off[i + 1] - off[i]))) return NULL;
        return l;
    }
    default: return rerr(C, MK_ERR_ARG, line, "'%s' object is not iterable", type_name(v));
    }
}

static const char *const DICT_METHODS[] = {"items", "keys", "values", "get", "copy", "pop", "update", "clear",
                                           "setdefault", "popitem", "fromkeys"};
static const char *const STR_METHODS[] = {
    "startswith", "endswith", "strip", "lstrip", "rstrip", "split", "rsplit", "replace", "upper", "lower", "title",
    "capitalize", "find", "rfind", "count", "join", "isdigit", "isalpha", "isspace", "isalnum", "isupper",
    "islower", "index", "rindex", "format", "splitlines", "zfill", "center", "ljust", "rjust", "swapcase",
    "casefold", "partition", "rpartition", "encode", "expandtabs", "isdecimal", "isnumeric", "istitle",
    "isidentifier", "isprintable", "isascii", "removeprefix", "removesuffix", "translate", "maketrans"};
static const char *const LIST_METHODS[] = {"index", "count", "append", "extend", "insert", "pop", "remove",
                                           "reverse", "sort", "clear", "copy"};

static bool in_names(const char *const *names, size_t n, const char *s, size_t len) {
    for (size_t i = 0; i < n; i++)
        if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0) return true;
    return false;
}
#define IN_NAMES(arr, s, len) in_names(arr, sizeof arr / sizeof arr[0], s, len)

static jv *method(rctx *C, jv *self, const char *name, size_t len) {
    jv *m = mk_v(C, JV_METHOD);
    if (!m) return NULL;
    m->u.m.self = self;
    m->u.m.name = ja_strndup(&C->a, name, len);
    return m->u.m.name ? m : oom(C);
}

static jv *loop_attr(rctx *C, jv *lp, const char *name) {
    size_t i = lp->u.loop.i, n = lp->u.loop.n;
    jv *items = lp->u.loop.items;
    if (!strcmp(name, "index")) return v_int(C, (int64_t)i + 1);
    if (!strcmp(name, "index0")) return v_int(C, (int64_t)i);
    if (!strcmp(name, "revindex")) return v_int(C, (int64_t)(n - i));
    if (!strcmp(name, "revindex0")) return v_int(C, (int64_t)(n - i - 1));
    if (!strcmp(name, "first")) return v_bool(i == 0);
    if (!strcmp(name, "last")) return v_bool(i + 1 == n);
    if (!strcmp(name, "length")) return v_int(C, (int64_t)n);
    if (!strcmp(name, "depth")) return v_int(C, 1);
    if (!strcmp(name, "depth0")) return v_int(C, 0);
    if (!strcmp(name, "previtem"))
        return i > 0 ? items->u.l.v[i - 1] : v_undef(C, "there is no previous item");
    if (!strcmp(name, "nextitem"))
        return i + 1 < n ? items->u.l.v[i + 1] : v_undef(C, "there is no next item");
    if (!strcmp(name, "cycle")) return method(C, lp, name, strlen(name));
    return v_undef(C, "'LoopContext' has no attribute '%s'", name);
}

/* obj.name (Jinja getattr: attribute first, then item). */
static jv *get_attr(rctx *C, jv *o, const char *name, size_t len, int line) {
    switch (o->k) {
    case JV_UNDEF: return undef_err(C, line, o);
    case JV_DICT: {
        if (IN_NAMES(DICT_METHODS, name, len)) return method(C, o, name, len);
        jv *v = d_get(o, name, len);
        return v ? v : v_undef(C, "'dict object' has no attribute '%.*s'", (int)len, name);
    }
    case JV_NS: {
        jv *v = d_get(o, name, len);
        return v ? v : v_undef(C, "'Namespace' has no attribute '%.*s'", (int)len, name);
    }
    case JV_STR:
        if (IN_NAMES(STR_METHODS, name, len)) return method(C, o, name, len);
        break;
    case JV_LIST:
        if (IN_NAMES(LIST_METHODS, name, len)) return method(C, o, name, len);
        break;
    case JV_TUPLE:
        if (in_names(LIST_METHODS, 2, name, len)) return method(C, o, name, len);
        break;
    case JV_LOOP: {
        char nm[64];
        snprintf(nm, sizeof nm, "%.*s", (int)MK_MIN(len, 63), name);
        return loop_attr(C, o, nm);
    }
    default: break;
    }
    return v_undef(C, "'%s object' has no attribute '%.*s'", type_name(o), (int)len, name);
}

/* Python index normalization; false if out of range. */
static bool norm_index(int64_t i, size_t n, size_t *out) {
    if (i < 0) i += (int64_t)n;
    if (i < 0 || (uint64_t)i >= n) return false;
    *out = (size_t)i;
    return true;
}

/* obj[key] (Jinja getitem: item first, then attribute). */
static jv *get_item(rctx *C, jv *o, jv *key, int line) {
    if (o->k == JV_UNDEF) return undef_err(C, line, o);
    if (o->k == JV_DICT || o->k == JV_NS) {
        jv *v = d_getv(o, key);
        if (v) return v;
    } else if ((o->k == JV_LIST || o->k == JV_TUPLE) && is_intlike(key)) {
        size_t i;
        if (norm_index(as_int(key), o->u.l.n, &i)) return o->u.l.v[i];
        return v_undef(C, "%s index out of range", type_name(o));
    } else if (o->k == JV_STR && is_intlike(key)) {
        size_t ncp, i;
        size_t *off = u8_offsets(C, o->u.s.p, o->u.s.n, &ncp);
        if (!off) return NULL;
        if (norm_index(as_int(key), ncp, &i))
            return with_markup(v_str(C, o->u.s.p + off[i], off[i + 1] - off[i]), o->markup);
        return v_undef(C, "string index out of range");
    }
    if (key->k == JV_STR && o->k != JV_NS) return get_attr(C, o, key->u.s.p, key->u.s.n, line);
    if (key->k == JV_STR) return v_undef(C, "'Namespace' has no attribute '%.*s'", (int)key->u.s.n, key->u.s.p);
    return v_undef(C, "'%s object' has no such item", type_name(o));
}

/* Python slice indices (PySlice_AdjustIndices). */
static size_t slice_idx(size_t n, const jv *start, const jv *stop, int64_t step, int64_t *st_out) {
    int64_t len = (int64_t)n, st, sp;
    if (!start || start->k == JV_NONE) st = step < 0 ? len - 1 : 0;
    else {
        st = as_int(start);
        if (st < 0) { st += len; if (st < 0) st = step < 0 ? -1 : 0; }
        else if (st >= len) st = step < 0 ? len - 1 : len;
    }
    if (!stop || stop->k == JV_NONE) sp = step < 0 ? -1 : len;
    else {
        sp = as_int(stop);
        if (sp < 0) { sp += len; if (sp < 0) sp = step < 0 ? -1 : 0; }
        else if (sp >= len) sp = step < 0 ? len - 1 : len;
    }
    *st_out = st;
    if (step < 0) return sp < st ? (size_t)((st - sp - 1) / (-step) + 1) : 0;
    return st < sp ? (size_t)((sp - st - 1) / step + 1) : 0;
}

static jv *do_slice(rctx *C, jv *o, jv *a, jv *b, jv *c, int line) {
    jv *parts[3] = {a, b, c};
    for (int i = 0; i < 3; i++)
        if (parts[i] && parts[i]->k != JV_NONE && !is_intlike(parts[i]))
            return rerr(C, MK_ERR_ARG, line, "slice indices must be integers or None");
    int64_t step = (c && c->k != JV_NONE) ? as_int(c) : 1;
    if (step == 0) return rerr(C, MK_ERR_ARG, line, "slice step cannot be zero");
    if (o->k == JV_UNDEF) return undef_err(C, line, o);
    if (o->k == JV_LIST || o->k == JV_TUPLE) {
        int64_t st;
        size_t cnt = slice_idx(o->u.l.n, a, b, step, &st);
        jv *r = v_list(C, o->k, cnt);
        if (!r) return NULL;
        for (size_t i = 0; i < cnt; i++) r->u.l.v[i] = o->u.l.v[st + (int64_t)i * step];
        return r;
    }
    if (o->k == JV_STR) {
        size_t ncp;
        size_t *off = u8_offsets(C, o->u.s.p, o->u.s.n, &ncp);
        if (!off) return NULL;
        int64_t st;
        size_t cnt = slice_idx(ncp, a, b, step, &st);
        sbuf sb = {0};
        for (size_t i = 0; i < cnt; i++) {
            size_t k = (size_t)(st + (int64_t)i * step);
            if (!sb_put(C, &sb, o->u.s.p + off[k], off[k + 1] - off[k])) { free(sb.p); return NULL; }
        }
        return with_markup(v_from_sb(C, &sb), o->markup);
    }
    return rerr(C, MK_ERR_ARG, line, "'%s' object is not subscriptable", type_name(o));
}

static jv *concat_str(rctx *C, const char *a, size_t na, const char *b, size_t nb) {
    size_t n;
    if (!mk_add_ok(na, nb, &n)) return oom(C);
    jv *v = mk_v(C, JV_STR);
    char *p = v ? ja_alloc(&C->a, n + 1) : NULL;
    if (!p) return oom(C);
    if (na) memcpy(p, a, na);
    if (nb) memcpy(p + na, b, nb);
    v->u.s.p = p;
    v->u.s.n = n;
    return v;
}

static jv *to_str_v(rctx *C, jv *v) {
    if (v->k == JV_STR) return v;
    sbuf b = {0};
    if (!put_str(C, &b, v)) { free(b.p); return NULL; }
    return v_from_sb(C, &b);
}

static const char *opname(int op) {
    static const char *const N[] = {"?", "+", "-", "*", "/", "//", "%", "**", "~", "==", "!=", "<", "<=", ">", ">=",
                                    "in", "not in"};
    return op > 0 && op <= JOP_NOTIN ? N[op] : "?";
}

static jv *binop(rctx *C, int op, jv *a, jv *b, int line) {
    if (op == JOP_CONCAT) {
        jv *sa = to_str_v(C, a), *sb = sa ? to_str_v(C, b) : NULL;
        return sb ? concat_str(C, sa->u.s.p, sa->u.s.n, sb->u.s.p, sb->u.s.n) : NULL;
    }
    if (a->k == JV_UNDEF) return undef_err(C, line, a);
    if (b->k == JV_UNDEF) return undef_err(C, line, b);
    if (is_num(a) && is_num(b)) {
        bool ints = is_intlike(a) && is_intlike(b);
        if (ints) {
            int64_t x = as_int(a), y = as_int(b), r;
            switch (op) {
            case JOP_ADD: if (__builtin_add_overflow(x, y, &r)) goto ovf; return v_int(C, r);
            case JOP_SUB: if (__builtin_sub_overflow(x, y, &r)) goto ovf; return v_int(C, r);
            case JOP_MUL: if (__builtin_mul_overflow(x, y, &r)) goto ovf; return v_int(C, r);
            case JOP_DIV:
                if (!y) return rerr(C, MK_ERR_ARG, line, "division by zero");
                return v_float(C, (double)x / (double)y);
            case JOP_FLOORDIV: case JOP_MOD: {
                if (!y) return rerr(C, MK_ERR_ARG, line, "integer division or modulo by zero");
                if (x == INT64_MIN && y == -1) goto ovf;
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) { q--; m += y; }
                return v_int(C, op == JOP_MOD ? m : q);
            }
            case JOP_POW: {
                if (y < 0) return v_float(C, pow((double)x, (double)y));
                int64_t res = 1;
                for (int64_t k = 0; k < y; k++)
                    if (__builtin_mul_overflow(res, x, &res)) goto ovf;
                return v_int(C, res);
            }
            }
        } else {
            double x = as_f(a), y = as_f(b);
            switch (op) {
            case JOP_ADD: return v_float(C, x + y);
            case JOP_SUB: return v_float(C, x - y);
            case JOP_MUL: return v_float(C, x * y);
            case JOP_DIV:
                if (y == 0) return rerr(C, MK_ERR_ARG, line, "float division by zero");
                return v_float(C, x / y);
            case JOP_FLOORDIV: case JOP_MOD: {
                if (y == 0) return rerr(C, MK_ERR_ARG, line, "float modulo by zero");
                double m = fmod(x, y), q = (x - m) / y;
                if (m != 0 && ((m < 0) != (y < 0))) { m += y; q -= 1.0; }
                if (op == JOP_MOD) return v_float(C, m);
                double fq = floor(q);
                if (q - fq > 0.5) fq += 1.0;
                return v_float(C, fq);
            }
            case JOP_POW: return v_float(C, pow(x, y));
            }
        }
    }
    if (op == JOP_ADD && a->k == JV_STR && b->k == JV_STR) {
        if (a->markup != b->markup) { /* Markup + str escapes the str */
            if (!(a = html_escape(C, a)) || !(b = html_escape(C, b))) return NULL;
            return with_markup(concat_str(C, a->u.s.p, a->u.s.n, b->u.s.p, b->u.s.n), true);
        }
        return with_markup(concat_str(C, a->u.s.p, a->u.s.n, b->u.s.p, b->u.s.n), a->markup);
    }
    if (op == JOP_ADD && (a->k == JV_LIST || a->k == JV_TUPLE) && a->k == b->k) {
        jv *r = v_list(C, a->k, a->u.l.n + b->u.l.n);
        if (!r) return NULL;
        for (size_t i = 0; i < a->u.l.n; i++) r->u.l.v[i] = a->u.l.v[i];
        for (size_t i = 0; i < b->u.l.n; i++) r->u.l.v[a->u.l.n + i] = b->u.l.v[i];
        return r;
    }
    if (op == JOP_MUL && ((a->k == JV_STR && is_intlike(b)) || (b->k == JV_STR && is_intlike(a)))) {
        jv *s = a->k == JV_STR ? a : b;
        int64_t k = as_int(a->k == JV_STR ? b : a);
        if (k > 0 && s->u.s.n && (uint64_t)k > (uint64_t)(64u << 20) / s->u.s.n)
            return rerr(C, MK_ERR_ARG, line, "string repetition too large");
        sbuf sb = {0};
        for (int64_t i = 0; i < k; i++)
            if (!sb_put(C, &sb, s->u.s.p, s->u.s.n)) { free(sb.p); return NULL; }
        return with_markup(v_from_sb(C, &sb), s->markup);
    }
    if (op == JOP_MOD && a->k == JV_STR)
        return rerr(C, MK_ERR_UNSUPPORTED, line, "unsupported construct: '%%' string formatting");
    return rerr(C, MK_ERR_ARG, line, "unsupported operand type(s) for %s: '%s' and '%s'", opname(op), type_name(a),
                type_name(b));
ovf:
    return rerr(C, MK_ERR_UNSUPPORTED, line, "integer overflow in '%s'", opname(op));
}

/* Python ordering; *ok false (and error set) for incomparable types. */
static int v_cmp(rctx *C, const jv *a, const jv *b, int op, int line, bool *ok) {
    *ok = true;
    if (is_num(a) && is_num(b)) {
        if (is_intlike(a) && is_intlike(b)) return (as_int(a) > as_int(b)) - (as_int(a) < as_int(b));
        double x = as_f(a), y = as_f(b);
        return (x > y) - (x < y);
    }
    if (a->k == JV_STR && b->k == JV_STR) {
        int c = memcmp(a->u.s.p, b->u.s.p, MK_MIN(a->u.s.n, b->u.s.n));
        return c ? (c > 0) - (c < 0) : (a->u.s.n > b->u.s.n) - (a->u.s.n < b->u.s.n);
    }
    if ((a->k == JV_LIST || a->k == JV_TUPLE) && a->k == b->k) {
        for (size_t i = 0; i < a->u.l.n && i < b->u.l.n; i++) {
            if (v_eq(a->u.l.v[i], b->u.l.v[i])) continue;
            return v_cmp(C, a->u.l.v[i], b->u.l.v[i], op, line, ok);
        }
        return (a->u.l.n > b->u.l.n) - (a->u.l.n < b->u.l.n);
    }
    *ok = false;
    if (a->k == JV_UNDEF) undef_err(C, line, a);
    else if (b->k == JV_UNDEF) undef_err(C, line, b);
    else rerr(C, MK_ERR_ARG, line, "'%s' not supported between instances of '%s' and '%s'", opname(op),
              type_name(a), type_name(b));
    return 0;
}

static jv *contains(rctx *C, jv *container, jv *item, int line) {
    switch (container->k) {
    case JV_STR:
        if (item->k != JV_STR)
            return rerr(C, MK_ERR_ARG, line, "'in <string>' requires string as left operand, not %s", type_name(item));
        if (!item->u.s.n) return v_bool(true);
        return v_bool(memmem(container->u.s.p, container->u.s.n, item->u.s.p, item->u.s.n) != NULL);
    case JV_LIST: case JV_TUPLE:
        for (size_t i = 0; i < container->u.l.n; i++)
            if (v_eq(container->u.l.v[i], item)) return v_bool(true);
        return v_bool(false);
    case JV_DICT: return v_bool(d_getv(container, item) != NULL);
    case JV_GEN: /* consumes up to and including the match */
        while (container->u.l.n) {
            jv *x = container->u.l.v[0];
            container->u.l.v++;
            container->u.l.n--;
            if (v_eq(x, item)) return v_bool(true);
        }
        return v_bool(false);
    case JV_UNDEF: return v_bool(false);
    default: return rerr(C, MK_ERR_ARG, line, "argument of type '%s' is not iterable", type_name(container));
    }
}

static jv *compare(rctx *C, int op, jv *a, jv *b, int line) {
    bool ok;
    switch (op) {
    case JOP_EQ: return v_bool(v_eq(a, b));
    case JOP_NE: return v_bool(!v_eq(a, b));
    case JOP_IN: return contains(C, b, a, line);
    case JOP_NOTIN: {
        jv *r = contains(C, b, a, line);
        return r ? v_bool(!r->u.b) : NULL;
    }
    default: {
        int c = v_cmp(C, a, b, op, line, &ok);
        if (!ok) return NULL;
        return v_bool(op == JOP_LT ? c < 0 : op == JOP_LE ? c <= 0 : op == JOP_GT ? c > 0 : c >= 0);
    }
    }
}

/* ---------------------------------------------------------------- string helpers */

typedef struct { int32_t *cp; size_t n; } cpset;
static bool cps_has(const cpset *s, int32_t c) {
    if (!s) return py_space(c);
    for (size_t i = 0; i < s->n; i++)
        if (s->cp[i] == c) return true;
    return false;
}
static bool make_cpset(rctx *C, const jv *chars, cpset *out) {
    size_t ncp = u8_count(chars->u.s.p, chars->u.s.n);
    out->cp = ja_alloc(&C->a, (ncp + 1) * sizeof(int32_t));
    if (!out->cp) { oom(C); return false; }
    out->n = 0;
    for (size_t i = 0; i < chars->u.s.n;) {
        size_t l;
        out->cp[out->n++] = u8_dec(chars->u.s.p + i, chars->u.s.n - i, &l);
        i += l;
    }
    return true;
}
/* which: 1 left, 2 right, 3 both */
static jv *str_strip(rctx *C, jv *s, jv *chars, int which, int line) {
    cpset set, *ps = NULL;
    if (chars && chars->k != JV_NONE) {
        if (chars->k != JV_STR) return rerr(C, MK_ERR_ARG, line, "strip arg must be None or str");
        if (!make_cpset(C, chars, &set)) return NULL;
        ps = &set;
    }
    const char *p = s->u.s.p;
    size_t a = 0, b = s->u.s.n;
    if (which & 1)
        while (a < b) {
            size_t l;
            int32_t c = u8_dec(p + a, b - a, &l);
            if (!cps_has(ps, c)) break;
            a += l;
        }
    if (which & 2)
        while (b > a) {
            size_t st = b - 1;
            while (st > a && ((unsigned char)p[st] & 0xC0) == 0x80 && b - st < 4) st--;
            size_t l;
            int32_t c = u8_dec(p + st, b - st, &l);
            if (st + l != b) { st = b - 1; c = (unsigned char)p[st]; }
            if (!cps_has(ps, c)) break;
            b = st;
        }
    return with_markup(v_str(C, p + a, b - a), s->markup);
}

/* mode: 0 upper, 1 lower, 2 capitalize, 3 Jinja's title filter, 4 Python's str.title() */
static jv *str_map(rctx *C, jv *s, int mode) {
    sbuf b = {0};
    bool word_start = true;
    for (size_t i = 0; i < s->u.s.n;) {
        size_t l;
        int32_t c = u8_dec(s->u.s.p + i, s->u.s.n - i, &l);
        int32_t r = c;
        if (mode == 0) r = utf8proc_toupper(c);
        else if (mode == 1) r = utf8proc_tolower(c);
        else if (mode == 2) r = i == 0 ? utf8proc_totitle(c) : utf8proc_tolower(c);
        else if (mode == 4) { /* a cased letter after an uncased character starts a word */
            utf8proc_category_t cat = utf8proc_category(c);
            bool cased = cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
            r = !cased ? c : word_start ? utf8proc_totitle(c) : utf8proc_tolower(c);
            word_start = !cased;
        } else {
            /* Jinja's title filter: words start after runs of [-\s({\[<] */
            bool sep = py_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
            r = sep ? c : word_start ? utf8proc_toupper(c) : utf8proc_tolower(c);
            word_start = sep;
        }
        utf8proc_uint8_t enc[8];
        utf8proc_ssize_t el = utf8proc_encode_char(r, enc);
        if (!sb_put(C, &b, (const char *)enc, (size_t)el)) { free(b.p); return NULL; }
        i += l;
    }
    return with_markup(v_from_sb(C, &b), s->markup);
}

static jv *str_replace(rctx *C, jv *s, jv *old, jv *nw, int64_t count, int line) {
    if (s->k != JV_STR || old->k != JV_STR || nw->k != JV_STR)
        return rerr(C, MK_ERR_ARG, line, "replace() arguments must be strings");
    sbuf b = {0};
    const char *p = s->u.s.p;
    size_t n = s->u.s.n, i = 0;
    int64_t done = 0;
    if (old->u.s.n == 0) {
        while (count < 0 || done < count) {
            if (!sb_put(C, &b, nw->u.s.p, nw->u.s.n)) goto fail;
            done++;
            if (i >= n) break;
            size_t l;
            u8_dec(p + i, n - i, &l);
            if (!sb_put(C, &b, p + i, l)) goto fail;
            i += l;
        }
        if (i < n && !sb_put(C, &b, p + i, n - i)) goto fail;
        return v_from_sb(C, &b);
    }
    while (i <= n && (count < 0 || done < count)) {
        const char *f = memmem(p + i, n - i, old->u.s.p, old->u.s.n);
        if (!f) break;
        size_t at = (size_t)(f - p);
        if (!sb_put(C, &b, p + i, at - i) || !sb_put(C, &b, nw->u.s.p, nw->u.s.n)) goto fail;
        i = at + old->u.s.n;
        done++;
    }
    if (i < n && !sb_put(C, &b, p + i, n - i)) goto fail;
    return v_from_sb(C, &b);
fail:
    free(b.p);
    return NULL;
}

static bool list_push(rctx *C, jv *l, size_t *cap, jv *x) {
    if (l->u.l.n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        jv **v = ja_alloc(&C->a, nc * sizeof *v);
        if (!v) { oom(C); return false; }
        if (l->u.l.n) memcpy(v, l->u.l.v, l->u.l.n * sizeof *v);
        l->u.l.v = v;
        *cap = nc;
    }
    l->u.l.v[l->u.l.n++] = x;
    return true;
}

static jv *str_split(rctx *C, jv *s, jv *sep, int64_t maxsplit, int line) {
    jv *l = v_list(C, JV_LIST, 0);
    size_t cap = 0;
    if (!l) return NULL;
    const char *p = s->u.s.p;
    size_t n = s->u.s.n, i = 0;
    int64_t done = 0;
    if (!sep || sep->k == JV_NONE) {
        for (;;) {
            while (i < n) {
                size_t len;
                if (!py_space(u8_dec(p + i, n - i, &len))) break;
                i += len;
            }
            if (i >= n) break;
            if (maxsplit >= 0 && done >= maxsplit) {
                /* rest, with trailing whitespace stripped */
                jv *rest = str_strip(C, v_str(C, p + i, n - i), NULL, 2, line);
                if (!rest || !list_push(C, l, &cap, rest)) return NULL;
                break;
            }
            size_t st = i;
            while (i < n) {
                size_t len;
                if (py_space(u8_dec(p + i, n - i, &len))) break;
                i += len;
            }
            jv *w = v_str(C, p + st, i - st);
            if (!w || !list_push(C, l, &cap, w)) return NULL;
            done++;
        }
        return l;
    }
    if (sep->k != JV_STR) return rerr(C, MK_ERR_ARG, line, "split() separator must be str or None");
    if (!sep->u.s.n) return rerr(C, MK_ERR_ARG, line, "split(): empty separator");
    for (;;) {
        const char *f = (maxsplit < 0 || done < maxsplit) ? memmem(p + i, n - i, sep->u.s.p, sep->u.s.n) : NULL;
        size_t end = f ? (size_t)(f - p) : n;
        jv *w = v_str(C, p + i, end - i);
        if (!w || !list_push(C, l, &cap, w)) return NULL;
        if (!f) break;
        i = end + sep->u.s.n;
        done++;
    }
    return l;
}

static bool str_has_affix(const jv *s, const jv *a, bool end) {
    if (a->u.s.n > s->u.s.n) return false;
    return memcmp(s->u.s.p + (end ? s->u.s.n - a->u.s.n : 0), a->u.s.p, a->u.s.n) == 0;
}

static int64_t cp_index_of(const char *p, size_t byte_off) { return (int64_t)u8_count(p, byte_off); }

/* ---------------------------------------------------------------- calls */

static jv *call_value(rctx *C, jv *f, jargs *a, int line);
static jv *apply_filter(rctx *C, const char *name, jv *v, jargs *a, int line);
static jv *apply_test(rctx *C, const char *name, jv *v, jargs *a, int line, bool *res);

static jv *call_method(rctx *C, jv *self, const char *name, jargs *a, int line) {
    if (self->k == JV_STR) {
        jv *x = arg(a, 0, NULL);
        if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) {
            bool end = name[0] == 'e';
            if (!x) return rerr(C, MK_ERR_ARG, line, "%s() takes at least 1 argument", name);
            if (x->k == JV_STR) return v_bool(str_has_affix(self, x, end));
            if (x->k == JV_TUPLE || x->k == JV_LIST) {
                for (size_t i = 0; i < x->u.l.n; i++) {
                    if (x->u.l.v[i]->k != JV_STR) return rerr(C, MK_ERR_ARG, line, "%s(): tuple items must be str", name);
                    if (str_has_affix(self, x->u.l.v[i], end)) return v_bool(true);
                }
                return v_bool(false);
            }
            return rerr(C, MK_ERR_ARG, line, "%s() argument must be str or a tuple of str, not %s", name, type_name(x));
        }
        if (!strcmp(name, "strip")) return str_strip(C, self, x, 3, line);
        if (!strcmp(name, "lstrip")) return str_strip(C, self, x, 1, line);
        if (!strcmp(name, "rstrip")) return str_strip(C, self, x, 2, line);
        if (!strcmp(name, "upper")) return str_map(C, self, 0);
        if (!strcmp(name, "lower")) return str_map(C, self, 1);
        if (!strcmp(name, "capitalize")) return str_map(C, self, 2);
        if (!strcmp(name, "title")) return str_map(C, self, 4);
        if (!strcmp(name, "split")) {
            jv *ms = arg(a, 1, "maxsplit");
            return str_split(C, self, arg(a, 0, "sep"), ms && is_intlike(ms) ? as_int(ms) : -1, line);
        }
        if (!strcmp(name, "replace")) {
            jv *o = arg(a, 0, NULL), *nw = arg(a, 1, NULL), *cnt = arg(a, 2, "count");
            if (!o || !nw) return rerr(C, MK_ERR_ARG, line, "replace() takes at least 2 arguments");
            if (self->markup && o->k == JV_STR && nw->k == JV_STR && (!(o = html_escape(C, o)) || !(nw = html_escape(C, nw))))
                return NULL;
            return with_markup(str_replace(C, self, o, nw, cnt && is_intlike(cnt) ? as_int(cnt) : -1, line), self->markup);
        }
        if (!strcmp(name, "find") || !strcmp(name, "rfind") || !strcmp(name, "index") || !strcmp(name, "rindex") ||
            !strcmp(name, "count")) {
            if (!x || x->k != JV_STR) return rerr(C, MK_ERR_ARG, line, "%s() argument must be str", name);
            if (a->np > 1) return rerr(C, MK_ERR_UNSUPPORTED, line, "unsupported construct: %s() with start/end", name);
            const char *p = self->u.s.p;
            size_t n = self->u.s.n;
            if (!strcmp(name, "count")) {
                if (!x->u.s.n) return v_int(C, (int64_t)u8_count(p, n) + 1);
                int64_t c = 0;
                for (size_t i = 0; i <= n;) {
                    const char *f = memmem(p + i, n - i, x->u.s.p, x->u.s.n);
                    if (!f) break;
                    c++;
                    i = (size_t)(f - p) + x->u.s.n;
                }
                return v_int(C, c);
            }
            bool rev = name[0] == 'r';
            const char *found = NULL;
            if (!rev) found = memmem(p, n, x->u.s.p, x->u.s.n);
            else
                for (size_t i = n + 1; i-- > 0;)
                    if (i + x->u.s.n <= n && memcmp(p + i, x->u.s.p, x->u.s.n) == 0) { found = p + i; break; }
            if (!found) {
                if (strstr(name, "index")) return rerr(C, MK_ERR_ARG, line, "substring not found");
                return v_int(C, -1);
            }
            return v_int(C, cp_index_of(p, (size_t)(found - p)));
        }
        if (!strcmp(name, "join")) {
            if (!x) return rerr(C, MK_ERR_ARG, line, "join() takes exactly one argument");
            jv *l = to_list(C, x, line);
            if (!l) return NULL;
            sbuf b = {0};
            for (size_t i = 0; i < l->u.l.n; i++) {
                if (l->u.l.v[i]->k != JV_STR) {
                    free(b.p);
                    return rerr(C, MK_ERR_ARG, line, "join(): sequence item %zu: expected str instance, %s found", i,
                                type_name(l->u.l.v[i]));
                }
                if ((i && !sb_put(C, &b, self->u.s.p, self->u.s.n)) ||
                    !sb_put(C, &b, l->u.l.v[i]->u.s.p, l->u.l.v[i]->u.s.n)) { free(b.p); return NULL; }
            }
            return v_from_sb(C, &b);
        }
        if (!strcmp(name, "isdigit") || !strcmp(name, "isalpha") || !strcmp(name, "isspace") ||
            !strcmp(name, "isalnum") || !strcmp(name, "isupper") || !strcmp(name, "islower")) {
            if (!self->u.s.n) return v_bool(false);
            bool cased = false;
            for (size_t i = 0; i < self->u.s.n;) {
                size_t l;
                int32_t c = u8_dec(self->u.s.p + i, self->u.s.n - i, &l);
                i += l;
                utf8proc_category_t cat = utf8proc_category(c);
                bool alpha = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
                bool digit = cat == UTF8PROC_CATEGORY_ND;
                if (!strcmp(name, "isdigit") && !digit) return v_bool(false);
                if (!strcmp(name, "isalpha") && !alpha) return v_bool(false);
                if (!strcmp(name, "isalnum") && !alpha && !digit && cat != UTF8PROC_CATEGORY_NL && cat != UTF8PROC_CATEGORY_NO) return v_bool(false);
                if (!strcmp(name, "isspace") && !py_space(c)) return v_bool(false);
                if (!strcmp(name, "isupper")) {
                    if (cat == UTF8PROC_CATEGORY_LL) return v_bool(false);
                    if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LT) cased = true;
                }
                if (!strcmp(name, "islower")) {
                    if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LT) return v_bool(false);
                    if (cat == UTF8PROC_CATEGORY_LL) cased = true;
                }
            }
            if (!strcmp(name, "isupper") || !strcmp(name, "islower")) return v_bool(cased);
            return v_bool(true);
        }
        return rerr(C, MK_ERR_UNSUPPORTED, line, "unsupported construct: string method '%s'", name);
    }
    if (self->k == JV_DICT) {
        if (!strcmp(name, "get")) {
            jv *k = arg(a, 0, NULL), *def = arg(a, 1, NULL);
            if (!k) return rerr(C, MK_ERR_ARG, line, "get() takes at least 1 argument");
            jv *v = d_getv(self, k);
            return v ? v : def ? def : &V_NONE;
        }
        if (!strcmp(name, "items") || !strcmp(name, "keys") || !strcmp(name, "values")) {
            jv *l = v_list(C, JV_LIST, self->u.d.n);
            if (!l) return NULL;
            for (size_t i = 0; i < self->u.d.n; i++) {
                if (name[0] == 'k') l->u.l.v[i] = self->u.d.keys[i];
                else if (name[0] == 'v') l->u.l.v[i] = self->u.d.vals[i];
                else {
                    jv *t = v_list(C, JV_TUPLE, 2);
                    if (!t) return NULL;
                    t->u.l.v[0] = self->u.d.keys[i];
                    t->u.l.v[1] = self->u.d.vals[i];
                    l->u.l.v[i] = t;
                }
            }
            return l;
        }
        if (!strcmp(name, "copy")) {
            jv *d = mk_v(C, JV_DICT);
            if (!d) return NULL;
            for (size_t i = 0; i < self->u.d.n; i++)
                if (!d_set(C, d, self->u.d.keys[i], self->u.d.vals[i])) return NULL;
            return d;
        }
        return rerr(C, MK_ERR_UNSUPPORTED, line, "unsupported construct: dict.%s() (templates cannot modify values)",
                    name);
    }
    if (self->k == JV_LIST || self->k == JV_TUPLE) {
        jv *x = arg(a, 0, NULL);
        if ((!strcmp(name, "index") || !strcmp(name, "count")) && x) {
            int64_t c = 0;
            for (size_t i = 0; i < self->u.l.n; i++)
                if (v_eq(self->u.l.v[i], x)) {
                    if (name[0] == 'i') return v_int(C, (int64_t)i);
                    c++;
                }
            if (name[0] == 'i') return rerr(C, MK_ERR_ARG, line, "list.index(x): x not in list");
            return v_int(C, c);
        }
        if (!strcmp(name, "copy")) return v_list(C, JV_LIST, 0) ? binop(C, JOP_ADD, v_list(C, JV_LIST, 0), self, line) : NULL;
        return rerr(C, MK_ERR_UNSUPPORTED, line, "unsupported construct: list.%s() (templates cannot modify values)",
                    name);
    }
    if (self->k == JV_LOOP && !strcmp(name, "cycle")) {
        if (!a->np) return rerr(C, MK_ERR_ARG, line, "no items for cycling given");
        return a->pos[self->u.loop.i % a->np];
    }
    return rerr(C, MK_ERR_UNSUPPORTED, line, "unsupported construct: method '%s'", name);
}

static jv *call_macro(rctx *C, jv *m, jargs *a, int line) {
    const jnode *mac = m->u.mac.node;
    if (a->np > mac->n_kw)
        return rerr(C, MK_ERR_ARG, line, "macro '%s' takes not more than %zu argument(s)", mac->name, mac->n_kw);
    for (size_t k = 0; k < a->nk; k++) {
        bool found = false;
        for (size_t p = 0; p < mac->n_kw; p++)
            if (!strcmp(a->kw[k], mac->kw[p])) found = true;
        if (!found) return rerr(C, MK_ERR_ARG, line, "macro '%s' has no argument named '%s'", mac->name, a->kw[k]);
    }
    if (++C->depth > 100) return rerr(C, MK_ERR_UNSUPPORTED, line, "macro calls nested too deeply");
    if (++C->steps > MAX_STEPS) return rerr(C, MK_ERR_UNSUPPORTED, line, "template exceeded %u steps", MAX_STEPS);
    scope *S = scope_new(C, m->u.mac.scope);
    if (!S) return NULL;
    for (size_t p = 0; p < mac->n_kw; p++) {
        jv *v = arg(a, p, mac->kw[p]);
        if (!v && mac->args[p] && !(v = eval(C, S, mac->args[p]))) return NULL;
        if (!v && !(v = v_undef(C, "'%s' is undefined", mac->kw[p]))) return NULL;
        if (!scope_set(C, S, mac->kw[p], v)) return NULL;
    }
    sbuf b = {0};
    int r = exec_body(C, S, mac->c, &b);
    C->depth--;
    if (r == EX_ERR) { free(b.p); return NULL; }
    return v_from_sb(C, &b);
}

static jv *call_value(rctx *C, jv *f, jargs *a, int line) {
    switch (f->k) {
    case JV_METHOD: return call_method(C, f->u.m.self, f->u.m.name, a, line);
    case JV_MACRO: return call_macro(C, f, a, line);
    case JV_UNDEF: return undef_err(C, line, f);
    case JV_FUNC: break;
    default: return rerr(C, MK_ERR_ARG, line, "'%s' object is not callable", type_name(f));
    }
    switch (f->u.fn.id) {
    case F_RAISE: {
        jv *m = arg(a, 0, NULL);
        sbuf b = {0};
        if (m && !put_str(C, &b, m)) { free(b.p); return NULL; }
        rerr(C, MK_ERR_ARG, line, "raise_exception: %s", b.p ? b.p : "");
        free(b.p);
        return NULL;
    }
    case F_NAMESPACE: case F_DICT: {
        jv *d = mk_v(C, f->u.fn.id == F_NAMESPACE ? JV_NS : JV_DICT);
        if (!d) return NULL;
        for (size_t i = 0; i < a->np; i++) {
            jv *src = a->pos[i];
            if (src->k != JV_DICT && src->k != JV_NS)
                return rerr(C, MK_ERR_UNSUPPORTED, line, "unsupported construct: %s() from a %s",
                            f->u.fn.id == F_NAMESPACE ? "namespace" : "dict", type_name(src));
            for (size_t k = 0; k < src->u.d.n; k++)
                if (!d_set(C, d, src->u.d.keys[k], src->u.d.vals[k])) return NULL;
        }
        for (size_t k = 0; k < a->nk; k++) {
            jv *key = v_cstr(C, a->kw[k]);
            if (!key || !d_set(C, d, key, a->kwv[k])) return NULL;
        }
        return d;
    }
    case F_RANGE: {
        int64_t v[3] = {0, 0, 1};
        if (a->np < 1 || a->np > 3 || a->nk) return rerr(C, MK_ERR_ARG, line, "range() takes 1 to 3 integer arguments");
        for (size_t i = 0; i < a->np; i++) {
            if (!is_intlike(a->pos[i])) return rerr(C, MK_ERR_ARG, line, "range() arguments must be integers");
        }
        if (a->np == 1) v[1] = as_int(a->pos[0]);
        else { v[0] = as_int(a->pos[0]); v[1] = as_int(a->pos[1]); if (a->np == 3) v[2] = as_int(a->pos[2]); }
        if (!v[2]) return rerr(C, MK_ERR_ARG, line, "range() arg 3 must not be zero");
        jv *l = v_list(C, JV_LIST, 0);
        size_t cap = 0;
        if (!l) return NULL;
        for (int64_t i = v[0]; v[2] > 0 ? i < v[1] : i > v[1]; i += v[2]) {
            if (l->u.l.n >= 100000) return rerr(C, MK_ERR_ARG, line, "range() too large (limit 100000 items)");
            jv *x = v_int(C, i);
            if (!x || !list_push(C, l, &cap, x)) return NULL;
        }
        return l;
    }
    case F_STRFTIME: {
        jv *fmt = arg(a, 0, NULL);
        if (!fmt || fmt->k != JV_STR) return rerr(C, MK_ERR_ARG, line, "strftime_now() takes a format string");
        char f2[256], out[512];
        snprintf(f2, sizeof f2, "%.*s", (int)fmt->u.s.n, fmt->u.s.p);
        /* SOURCE_DATE_EPOCH (the reproducible-builds variable: seconds since 1970, UTC), where set
         * to a number, fixes the clock: a prompt rendered twice is the same prompt (tests, caches) */
        const char *sde = getenv("SOURCE_DATE_EPOCH");
        char *end = NULL;
        const long long fixed = sde && *sde ? strtoll(sde, &end, 10) : -1;
        struct tm tmv;
        if (fixed >= 0 && end && !*end) {
            const time_t t = (time_t)fixed;
            gmtime_r(&t, &tmv);
        } else {
            const time_t now = time(NULL);
            localtime_r(&now, &tmv);
        }
        size_t n = strftime(out, sizeof out, f2, &tmv);
        return v_str(C, out, n);
    }
    }
    return rerr(C, MK_ERR_INTERNAL, line, "unknown function");
}

/* ---------------------------------------------------------------- filters */

static jv *attr_path(rctx *C, jv *v, jv *attr, int line) {
    if (!attr || attr->k == JV_NONE) return v;
    if (is_intlike(attr)) return get_item(C, v, attr, line);
    if (attr->k != JV_STR) return rerr(C, MK_ERR_ARG, line, "attribute must be a string");
    const char *p = attr->u.s.p, *e = p + attr->u.s.n;
    while (v && p <= e) {
        const char *dot = memchr(p, '.', (size_t)(e - p));
        size_t len = dot ? (size_t)(dot - p) : (size_t)(e - p);
        bool digits = len > 0;
        for (size_t i = 0; i < len; i++)
            if (p[i] < '0' || p[i] > '9') digits = false;
        if (v->k == JV_UNDEF) return v;
        if (digits) {
            jv *k = v_int(C, strtoll(p, NULL, 10));
            v = k ? get_item(C, v, k, line) : NULL;
        } else {
            jv *k = v_str(C, p, len);
            v = k ? get_item(C, v, k, line) : NULL;
        }
        if (!dot) break;
        p = dot + 1;
    }
    return v;
}

static jv *sort_list(rctx *C, jv *l, bool reverse, bool case_sensitive, jv *attr, int line) {
    size_t n = l->u.l.n;
    jv *r = v_list(C, JV_LIST, n), *keys = v_list(C, JV_LIST, n);
    if (!r || !keys) return NULL;
    for (size_t i = 0; i < n; i++) {
        r->u.l.v[i] = l->u.l.v[i];
        jv *k = attr_path(C, l->u.l.v[i], attr, line);
        if (!k) return NULL;
        if (!case_sensitive && k->k == JV_STR && !(k = str_map(C, k, 1))) return NULL;
        keys->u.l.v[i] = k;
    }
    /* stable insertion sort */
    for (size_t i = 1; i < n; i++) {
        for (size_t j = i; j > 0; j--) {
            bool ok;
            int c = v_cmp(C, keys->u.l.v[j - 1], keys->u.l.v[j], JOP_LT, line, &ok);
            if (!ok) return NULL;
            if (reverse ? c >= 0 : c <= 0) break;
            jv *t = keys->u.l.v[j]; keys->u.l.v[j] = keys->u.l.v[j - 1]; keys->u.l.v[j - 1] = t;
            t = r->u.l.v[j]; r->u.l.v[j] = r->u.l.v[j - 1]; r->u.l.v[j - 1] = t;
        }
    }
    return r;
}

static const char *const FILTERS[] = {
    "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float", "indent",
    "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr",
    "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum", "title", "tojson", "trim",
    "unique", "upper", "wordcount", "center", "truncate", "batch", "slice", "groupby", "pprint", "striptags",
    "urlencode", "forceescape", "format", "random", "filesizeformat", "wordwrap", "xmlattr", "urlize"};
static const char *const UNIMPLEMENTED_FILTERS[] = {"batch", "slice", "groupby", "pprint", "striptags", "urlencode", "forceescape", "format", "random",
                                                    "filesizeformat", "wordwrap", "xmlattr", "urlize"};
bool jinja_has_filter(const char *name) {
    return IN_NAMES(FILTERS, name, strlen(name)) && !IN_NAMES(UNIMPLEMENTED_FILTERS, name, strlen(name));
}

static const char *const TESTS[] = {"defined", "undefined", "none", "boolean", "false", "true", "integer", "float",
                                    "number", "string", "mapping", "iterable", "sequence", "callable", "sameas",
                                    "equalto", "eq", "ne", "lt", "le", "gt", "ge", "in", "odd", "even", "divisibleby",
                                    "lower", "upper"};
bool jinja_has_test(const char *name) { return IN_NAMES(TESTS, name, strlen(name)); }

static jv *select_common(rctx *C, jv *v, jargs *a, int line, bool attr_mode, bool want) {
    if (!truthy(v)) return as_gen(v_list(C, JV_LIST, 0)); /* Jinja: "if value:" before iterating */
    jv *l = to_list(C, v, line);
    if (!l) return NULL;
    jv *r = v_list(C, JV_LIST, 0);
    size_t cap = 0;
    if (!r) return NULL;
    size_t first = 1; /* a->pos[0] is the value */
    jv *attr = NULL;
    if (attr_mode) {
        attr = arg(a, first, NULL);
        if (!attr) return rerr(C, MK_ERR_ARG, line, "selectattr/rejectattr need an attribute");
        first++;
    }
    jv *test = arg(a, first, NULL);
    if (test && test->k != JV_STR) return rerr(C, MK_ERR_ARG, line, "test name must be a string");
    char tname[64] = {0};
    if (test) {
        snprintf(tname, sizeof tname, "%.*s", (int)test->u.s.n, test->u.s.p);
        if (!jinja_has_test(tname)) return rerr(C, MK_ERR_UNSUPPORTED, line, "unsupported test '%s'", tname);
    }
    jargs ta = {0};
    ta.np = a->np > first + 1 ? a->np - first : 1;
    ta.pos = ja_alloc(&C->a, (ta.np + 1) * sizeof(jv *));
    if (!ta.pos) return oom(C);
    for (size_t i = first + 1; i < a->np; i++) ta.pos[i - first] = a->pos[i];
    for (size_t i = 0; i < l->u.l.n; i++) {
        jv *item = l->u.l.v[i];
        jv *x = attr_mode ? attr_path(C, item, attr, line) : item;
        if (!x) return NULL;
        bool res;
        if (test) {
            ta.pos[0] = x;
            if (!apply_test(C, tname, x, &ta, line, &res)) return NULL;
        } else {
            res = truthy(x);
        }
        if (res == want && !list_push(C, r, &cap, item)) return NULL;
    }
    return as_gen(r);
}

/* a->pos[0] is the filtered value. */
static jv *apply_filter(rctx *C, const char *name, jv *v, jargs *a, int line) {
    jv *x1 = arg(a, 1, NULL);
    if (!strcmp(name, "safe")) {
        jv *s = to_str_v(C, v), *m = s ? mk_v(C, JV_STR) : NULL;
        if (!m) return NULL;
        *m = *s;
        m->markup = true;
        return m;
    }
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        jv *def = arg(a, 1, "default_value"), *boolean = arg(a, 2, "boolean");
        if (!def && !(def = v_str(C, "", 0))) return NULL;
        if (v->k == JV_UNDEF || (boolean && truthy(boolean) && !truthy(v))) return def;
        return v;
    }
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        switch (v->k) {
        case JV_STR: return v_int(C, (int64_t)u8_count(v->u.s.p, v->u.s.n));
        case JV_LIST: case JV_TUPLE: return v_int(C, (int64_t)v->u.l.n);
        case JV_DICT: return v_int(C, (int64_t)v->u.d.n);
        case JV_UNDEF: return v_int(C, 0);
        default: return rerr(C, MK_ERR_ARG, line, "object of type '%s' has no len()", type_name(v));
        }
    }
    if (!strcmp(name, "string")) return to_str_v(C, v);
    if (!strcmp(name, "tojson")) {
        json_opts o = {.indent = -1, .item_sep = ", ", .key_sep = ": "};
        jv *ea = arg(a, 1, "ensure_ascii"), *ind = arg(a, 2, "indent"), *seps = arg(a, 3, "separators"),
           *sk = arg(a, 4, "sort_keys");
        if (ea) o.ensure_ascii = truthy(ea);
        if (sk) o.sort_keys = truthy(sk);
        if (ind && ind->k != JV_NONE) {
            if (!is_intlike(ind)) return rerr(C, MK_ERR_UNSUPPORTED, line, "tojson: indent must be an integer");
            o.indent = (int)MK_MAX(0, MK_MIN(as_int(ind), 64));
            o.item_sep = ",";
        }
        if (seps && seps->k != JV_NONE) {
            if ((seps->k != JV_TUPLE && seps->k != JV_LIST) || seps->u.l.n != 2 || seps->u.l.v[0]->k != JV_STR ||
                seps->u.l.v[1]->k != JV_STR)
                return rerr(C, MK_ERR_ARG, line, "tojson: separators must be a pair of strings");
            o.item_sep = ja_strndup(&C->a, seps->u.l.v[0]->u.s.p, seps->u.l.v[0]->u.s.n);
            o.key_sep = ja_strndup(&C->a, seps->u.l.v[1]->u.s.p, seps->u.l.v[1]->u.s.n);
            if (!o.item_sep || !o.key_sep) return oom(C);
        }
        if (v->k == JV_UNDEF) return rerr(C, MK_ERR_ARG, line, "tojson: %.*s", (int)v->u.s.n, v->u.s.p);
        sbuf b = {0};
        if (!put_json(C, &b, v, &o, 0, line)) { free(b.p); return NULL; }
        return v_from_sb(C, &b);
    }
    if (!strcmp(name, "items")) {
        if (v->k == JV_UNDEF) return as_gen(v_list(C, JV_LIST, 0));
        if (v->k != JV_DICT) return rerr(C, MK_ERR_ARG, line, "items filter: expected a mapping, got %s", type_name(v));
        jargs none = {0};
        return as_gen(call_method(C, v, "items", &none, line));
    }
    if (!strcmp(name, "dictsort")) {
        if (v->k != JV_DICT) return rerr(C, MK_ERR_ARG, line, "dictsort: expected a mapping, got %s", type_name(v));
        jargs none = {0};
        jv *it = call_method(C, v, "items", &none, line);
        jv *cs = arg(a, 1, "case_sensitive"), *by = arg(a, 2, "by"), *rev = arg(a, 3, "reverse");
        jv *key = v_int(C, by && by->k == JV_STR && by->u.s.n == 5 && !memcmp(by->u.s.p, "value", 5) ? 1 : 0);
        return it && key ? sort_list(C, it, rev && truthy(rev), cs && truthy(cs), key, line) : NULL;
    }
    if (!strcmp(name, "trim")) {
        jv *s = to_str_v(C, v);
        return s ? str_strip(C, s, x1 ? x1 : arg(a, 1, "chars"), 3, line) : NULL;
    }
    if (!strcmp(name, "upper") || !strcmp(name, "lower") || !strcmp(name, "capitalize") || !strcmp(name, "title")) {
        jv *s = to_str_v(C, v);
        int mode = name[0] == 'u' ? 0 : name[0] == 'l' ? 1 : name[0] == 'c' ? 2 : 3;
        return s ? str_map(C, s, mode) : NULL;
    }
    if (!strcmp(name, "replace")) {
        jv *s = to_str_v(C, v), *o = arg(a, 1, "old"), *nw = arg(a, 2, "new"), *cnt = arg(a, 3, "count");
        if (!s) return NULL;
        if (!o || !nw) return rerr(C, MK_ERR_ARG, line, "replace filter takes 2 arguments");
        jv *os = to_str_v(C, o), *ns = os ? to_str_v(C, nw) : NULL;
        if (!ns) return NULL;
        return str_replace(C, s, os, ns, cnt && is_intlike(cnt) ? as_int(cnt) : -1, line);
    }
    if (!strcmp(name, "join")) {
        jv *sep = arg(a, 1, "d"), *attr = arg(a, 2, "attribute");
        jv *l = to_list(C, v, line);
        if (!l) return NULL;
        jv *ss = sep ? to_str_v(C, sep) : NULL;
        if (sep && !ss) return NULL;
        sbuf b = {0};
        for (size_t i = 0; i < l->u.l.n; i++) {
            jv *it = attr ? attr_path(C, l->u.l.v[i], attr, line) : l->u.l.v[i];
            if (!it || (i && ss && !sb_put(C, &b, ss->u.s.p, ss->u.s.n)) || !put_str(C, &b, it)) {
                free(b.p);
                return NULL;
            }
        }
        return v_from_sb(C, &b);
    }
    if (!strcmp(name, "list")) {
        jv *l = to_list(C, v, line);
        if (!l || l->k == JV_LIST) return l;
        jv *r = v_list(C, JV_LIST, l->u.l.n);
        if (!r) return NULL;
        for (size_t i = 0; i < l->u.l.n; i++) r->u.l.v[i] = l->u.l.v[i];
        return r;
    }
    if (!strcmp(name, "first") && v->k == JV_GEN) {
        if (!v->u.l.n) return v_undef(C, "No first item, sequence was empty.");
        jv *x = v->u.l.v[0];
        v->u.l.v++;
        v->u.l.n--;
        return x;
    }
    if (!strcmp(name, "last") && v->k == JV_GEN)
        return rerr(C, MK_ERR_ARG, line, "last: 'generator' object is not reversible");
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        jv *l = to_list(C, v, line);
        if (!l) return NULL;
        if (!l->u.l.n) return v_undef(C, "No %s item, sequence was empty.", name);
        return l->u.l.v[name[0] == 'f' ? 0 : l->u.l.n - 1];
    }
    if (!strcmp(name, "reverse")) {
        if (v->k == JV_STR) {
            jv *neg = v_int(C, -1);
            return neg ? do_slice(C, v, NULL, NULL, neg, line) : NULL;
        }
        bool seq = v->k == JV_LIST || v->k == JV_TUPLE || v->k == JV_DICT; /* reversed() works: an iterator */
        jv *l = to_list(C, v, line);
        if (!l) return NULL;
        jv *r = v_list(C, JV_LIST, l->u.l.n);
        if (!r) return NULL;
        for (size_t i = 0; i < l->u.l.n; i++) r->u.l.v[i] = l->u.l.v[l->u.l.n - 1 - i];
        return seq ? as_gen(r) : r;
    }
    if (!strcmp(name, "sort")) {
        jv *l = to_list(C, v, line);
        jv *rev = arg(a, 1, "reverse"), *cs = arg(a, 2, "case_sensitive"), *attr = arg(a, 3, "attribute");
        return l ? sort_list(C, l, rev && truthy(rev), cs && truthy(cs), attr, line) : NULL;
    }
    if (!strcmp(name, "unique")) {
        jv *l = to_list(C, v, line), *cs = arg(a, 1, "case_sensitive"), *attr = arg(a, 2, "attribute");
        if (!l) return NULL;
        jv *r = v_list(C, JV_LIST, 0), *seen = v_list(C, JV_LIST, 0);
        size_t cap = 0, cap2 = 0;
        if (!r || !seen) return NULL;
        for (size_t i = 0; i < l->u.l.n; i++) {
            jv *k = attr_path(C, l->u.l.v[i], attr, line);
            if (!k) return NULL;
            if (!(cs && truthy(cs)) && k->k == JV_STR && !(k = str_map(C, k, 1))) return NULL;
            jv *has = contains(C, seen, k, line);
            if (!has) return NULL;
            if (has->u.b) continue;
            if (!list_push(C, seen, &cap2, k) || !list_push(C, r, &cap, l->u.l.v[i])) return NULL;
        }
        return as_gen(r);
    }
    if (!strcmp(name, "map")) {
        if (!truthy(v)) return as_gen(v_list(C, JV_LIST, 0));
        jv *l = to_list(C, v, line);
        if (!l) return NULL;
        jv *attr = NULL, *def = NULL;
        for (size_t k = 0; k < a->nk; k++) {
            if (!strcmp(a->kw[k], "attribute")) attr = a->kwv[k];
            else if (!strcmp(a->kw[k], "default")) def = a->kwv[k];
        }
        jv *r = v_list(C, JV_LIST, l->u.l.n);
        if (!r) return NULL;
        if (attr) {
            for (size_t i = 0; i < l->u.l.n; i++) {
                jv *x = attr_path(C, l->u.l.v[i], attr, line);
                if (!x) return NULL;
                r->u.l.v[i] = (x->k == JV_UNDEF && def) ? def : x;
            }
            return as_gen(r);
        }
        if (!x1 || x1->k != JV_STR) return rerr(C, MK_ERR_ARG, line, "map: expected a filter name or attribute=");
        char fname[64];
        snprintf(fname, sizeof fname, "%.*s", (int)x1->u.s.n, x1->u.s.p);
        if (!jinja_has_filter(fname)) return rerr(C, MK_ERR_UNSUPPORTED, line, "unsupported filter '%s'", fname);
        jargs fa = {.np = a->np - 1, .kw = a->kw, .kwv = a->kwv, .nk = a->nk};
        fa.pos = ja_alloc(&C->a, (fa.np + 1) * sizeof(jv *));
        if (!fa.pos) return oom(C);
        for (size_t i = 2; i < a->np; i++) fa.pos[i - 1] = a->pos[i];
        for (size_t i = 0; i < l->u.l.n; i++) {
            fa.pos[0] = l->u.l.v[i];
            if (!(r->u.l.v[i] = apply_filter(C, fname, l->u.l.v[i], &fa, line))) return NULL;
        }
        return as_gen(r);
    }
    if (!strcmp(name, "select")) return select_common(C, v, a, line, false, true);
    if (!strcmp(name, "reject")) return select_common(C, v, a, line, false, false);
    if (!strcmp(name, "selectattr")) return select_common(C, v, a, line, true, true);
    if (!strcmp(name, "rejectattr")) return select_common(C, v, a, line, true, false);
    if (!strcmp(name, "attr")) {
        if (!x1 || x1->k != JV_STR) return rerr(C, MK_ERR_ARG, line, "attr filter takes an attribute name");
        return get_attr(C, v, x1->u.s.p, x1->u.s.n, line);
    }
    if (!strcmp(name, "abs")) {
        if (v->k == JV_FLOAT) return v_float(C, fabs(v->u.f));
        if (is_intlike(v)) {
            if (as_int(v) == INT64_MIN) return rerr(C, MK_ERR_UNSUPPORTED, line, "integer overflow in abs");
            return v_int(C, as_int(v) < 0 ? -as_int(v) : as_int(v));
        }
        return rerr(C, MK_ERR_ARG, line, "bad operand type for abs(): '%s'", type_name(v));
    }
    if (!strcmp(name, "int") || !strcmp(name, "float")) {
        bool fl = name[0] == 'f';
        jv *def = arg(a, 1, "default");
        if (is_num(v)) return fl ? v_float(C, as_f(v)) : v_int(C, v->k == JV_FLOAT ? (int64_t)v->u.f : as_int(v));
        if (v->k == JV_STR) {
            char buf[128];
            snprintf(buf, sizeof buf, "%.*s", (int)MK_MIN(v->u.s.n, 127), v->u.s.p);
            char *end = buf;
            double d = strpbrk(buf, "xXpP") ? 0.0 : strtod(buf, &end); /* no C hex floats */
            while (*end == ' ' || *end == '\t' || *end == '\n') end++;
            if (end != buf && !*end) return fl ? v_float(C, d) : v_int(C, (int64_t)d);
        }
        if (def) return def;
        return fl ? v_float(C, 0.0) : v_int(C, 0);
    }
    if (!strcmp(name, "round")) {
        jv *prec = arg(a, 1, "precision"), *meth = arg(a, 2, "method");
        if (!is_num(v)) return rerr(C, MK_ERR_ARG, line, "round: expected a number, got %s", type_name(v));
        int64_t p = prec && is_intlike(prec) ? as_int(prec) : 0;
        double m = pow(10.0, (double)p), x = as_f(v) * m, r;
        if (meth && meth->k == JV_STR && meth->u.s.n == 5 && !memcmp(meth->u.s.p, "floor", 5)) r = floor(x);
        else if (meth && meth->k == JV_STR && meth->u.s.n == 4 && !memcmp(meth->u.s.p, "ceil", 4)) r = ceil(x);
        else if (p >= 0 && p <= 300) { /* Python round(): correctly rounded, half to even on the exact value */
            char buf[400];
            snprintf(buf, sizeof buf, "%.*f", (int)p, as_f(v));
            return v_float(C, strtod(buf, NULL));
        } else r = nearbyint(x);
        return v_float(C, r / m);
    }
    if (!strcmp(name, "sum") || !strcmp(name, "max") || !strcmp(name, "min")) {
        jv *l = to_list(C, v, line);
        if (!l) return NULL;
        if (name[0] == 's') {
            jv *attr = arg(a, 1, "attribute"), *acc = arg(a, 2, "start");
            if (!acc && !(acc = v_int(C, 0))) return NULL;
            for (size_t i = 0; i < l->u.l.n; i++) {
                jv *x = attr_path(C, l->u.l.v[i], attr, line);
                if (!x || !(acc = binop(C, JOP_ADD, acc, x, line))) return NULL;
            }
            return acc;
        }
        jv *cs = arg(a, 1, "case_sensitive"), *attr = arg(a, 2, "attribute");
        if (!l->u.l.n) return v_undef(C, "No aggregated item, sequence was empty.");
        jv *s = sort_list(C, l, name[1] == 'a', cs && truthy(cs), attr, line);
        return s ? s->u.l.v[0] : NULL;
    }
    if (!strcmp(name, "e") || !strcmp(name, "escape")) {
        jv *s = to_str_v(C, v);
        return s ? html_escape(C, s) : NULL;
    }
    if (!strcmp(name, "indent")) {
        jv *s = to_str_v(C, v), *w = arg(a, 1, "width"), *first = arg(a, 2, "first"), *blank = arg(a, 3, "blank");
        if (!s) return NULL;
        sbuf pad = {0}, b = {0};
        if (w && w->k == JV_STR) { if (!sb_put(C, &pad, w->u.s.p, w->u.s.n)) return NULL; }
        else {
            int64_t k = w && is_intlike(w) ? as_int(w) : 4;
            for (int64_t i = 0; i < k && i < 256; i++)
                if (!sb_putc(C, &pad, ' ')) { free(pad.p); return NULL; }
        }
        const char *p = s->u.s.p, *e = p + s->u.s.n;
        bool ok = true, firstline = true;
        while (ok) {
            const char *nl = memchr(p, '\n', (size_t)(e - p));
            size_t len = nl ? (size_t)(nl - p) : (size_t)(e - p);
            bool is_blank = len == 0;
            bool ind = firstline ? (first && truthy(first)) : (!is_blank || (blank && truthy(blank)));
            if (ind) ok = sb_put(C, &b, pad.p ? pad.p : "", pad.n);
            ok = ok && sb_put(C, &b, p, len);
            if (!nl) break;
            ok = ok && sb_putc(C, &b, '\n');
            p = nl + 1;
            firstline = false;
        }
        free(pad.p);
        if (!ok) { free(b.p); return NULL; }
        return v_from_sb(C, &b);
    }
    if (!strcmp(name, "center")) {
        jv *s = to_str_v(C, v), *w = arg(a, 1, "width");
        if (!s) return NULL;
        int64_t width = w && is_intlike(w) ? as_int(w) : 80, len = (int64_t)u8_count(s->u.s.p, s->u.s.n);
        if (width > 1 << 20) return rerr(C, MK_ERR_UNSUPPORTED, line, "center: width too large");
        if (width <= len) return s;
        int64_t marg = width - len, left = marg / 2 + (marg & width & 1); /* Python's str.center */
        sbuf b = {0};
        bool ok = true;
        for (int64_t i = 0; i < left && ok; i++) ok = sb_putc(C, &b, ' ');
        ok = ok && sb_put(C, &b, s->u.s.p, s->u.s.n);
        for (int64_t i = 0; i < marg - left && ok; i++) ok = sb_putc(C, &b, ' ');
        if (!ok) { free(b.p); return NULL; }
        return v_from_sb(C, &b);
    }
    if (!strcmp(name, "truncate")) { /* Jinja: length=255, killwords=False, end='...', leeway=5 */
        jv *s = to_str_v(C, v), *len_v = arg(a, 1, "length"), *kill = arg(a, 2, "killwords"), *end = arg(a, 3, "end"),
           *lee = arg(a, 4, "leeway");
        if (!s) return NULL;
        int64_t length = len_v && is_intlike(len_v) ? as_int(len_v) : 255, leeway = lee && is_intlike(lee) ? as_int(lee) : 5;
        if (end && !(end = to_str_v(C, end))) return NULL;
        const char *ep = end ? end->u.s.p : "...";
        size_t en = end ? end->u.s.n : 3;
        int64_t n_end = (int64_t)u8_count(ep, en);
        size_t ncp;
        size_t *off = u8_offsets(C, s->u.s.p, s->u.s.n, &ncp);
        if (!off) return NULL;
        if (length < n_end) return rerr(C, MK_ERR_ARG, line, "truncate: expected length >= %lld", (long long)n_end);
        if (leeway < 0) return rerr(C, MK_ERR_ARG, line, "truncate: expected leeway >= 0");
        if ((int64_t)ncp <= length + leeway) return s;
        size_t cut = off[length - n_end];
        if (!(kill && truthy(kill))) { /* s[:length - len(end)].rsplit(" ", 1)[0] */
            const char *sp = NULL;
            for (size_t i = cut; i-- > 0;)
                if (s->u.s.p[i] == ' ') { sp = s->u.s.p + i; break; }
            if (sp) cut = (size_t)(sp - s->u.s.p);
        }
        return concat_str(C, s->u.s.p, cut, ep, en);
    }
    if (!strcmp(name, "wordcount")) {
        jv *s = to_str_v(C, v);
        if (!s) return NULL;
        int64_t c = 0;
        bool in = false;
        for (size_t i = 0; i < s->u.s.n;) {
            size_t l;
            int32_t cp = u8_dec(s->u.s.p + i, s->u.s.n - i, &l);
            utf8proc_category_t cat = utf8proc_category(cp);
            bool w = (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) || cat == UTF8PROC_CATEGORY_ND ||
                     cp == '_';
            if (w && !in) c++;
            in = w;
            i += l;
        }
        return v_int(C, c);
    }
    return rerr(C, MK_ERR_UNSUPPORTED, line, "unsupported filter '%s'", name);
}

/* ---------------------------------------------------------------- tests */

static jv *apply_test(rctx *C, const char *name, jv *v, jargs *a, int line, bool *res) {
    jv *x = arg(a, 1, NULL);
    static jv ok_marker = {.k = JV_NONE};
    if (!strcmp(name, "defined")) *res = v->k != JV_UNDEF;
    else if (!strcmp(name, "undefined")) *res = v->k == JV_UNDEF;
    else if (!strcmp(name, "none")) *res = v->k == JV_NONE;
    else if (!strcmp(name, "boolean")) *res = v->k == JV_BOOL;
    else if (!strcmp(name, "true")) *res = v->k == JV_BOOL && v->u.b;
    else if (!strcmp(name, "false")) *res = v->k == JV_BOOL && !v->u.b;
    else if (!strcmp(name, "integer")) *res = v->k == JV_INT;
    else if (!strcmp(name, "float")) *res = v->k == JV_FLOAT;
    else if (!strcmp(name, "number")) *res = is_num(v);
    else if (!strcmp(name, "string")) *res = v->k == JV_STR;
    else if (!strcmp(name, "mapping")) *res = v->k == JV_DICT;
    else if (!strcmp(name, "iterable"))
        *res = v->k == JV_STR || v->k == JV_LIST || v->k == JV_TUPLE || v->k == JV_DICT || v->k == JV_UNDEF ||
               v->k == JV_GEN;
    else if (!strcmp(name, "sequence"))
        *res = v->k == JV_STR || v->k == JV_LIST || v->k == JV_TUPLE || v->k == JV_DICT || v->k == JV_UNDEF;
    else if (!strcmp(name, "callable"))
        *res = v->k == JV_FUNC || v->k == JV_METHOD || v->k == JV_MACRO || v->k == JV_UNDEF;
    else if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (v->k != JV_STR) { *res = false; return &ok_marker; }
        jargs none = {0};
        jv *r = call_method(C, v, name[0] == 'l' ? "islower" : "isupper", &none, line);
        if (!r) return NULL;
        *res = r->u.b;
    } else if (!strcmp(name, "odd") || !strcmp(name, "even") || !strcmp(name, "divisibleby")) {
        if (!is_intlike(v)) return rerr(C, MK_ERR_ARG, line, "test '%s' needs an integer, got %s", name, type_name(v));
        int64_t d = 2;
        if (name[0] == 'd') {
            if (!x || !is_intlike(x) || !as_int(x)) return rerr(C, MK_ERR_ARG, line, "divisibleby needs a non-zero integer");
            d = as_int(x);
        }
        int64_t m = d == -1 ? 0 : as_int(v) % d;
        *res = name[0] == 'o' ? m != 0 : m == 0;
    } else {
        if (!x) return rerr(C, MK_ERR_ARG, line, "test '%s' takes an argument", name);
        if (!strcmp(name, "sameas")) {
            if (v->k == JV_NONE || v->k == JV_BOOL || v->k == JV_UNDEF) *res = v->k == x->k && (v->k != JV_BOOL || v->u.b == x->u.b);
            else *res = v == x;
        } else {
            int op = !strcmp(name, "equalto") || !strcmp(name, "eq") ? JOP_EQ : !strcmp(name, "ne") ? JOP_NE
                   : !strcmp(name, "lt") ? JOP_LT : !strcmp(name, "le") ? JOP_LE : !strcmp(name, "gt") ? JOP_GT
                   : !strcmp(name, "ge") ? JOP_GE : JOP_IN;
            jv *r = compare(C, op, v, x, line);
            if (!r) return NULL;
            *res = r->u.b;
        }
    }
    return &ok_marker;
}

/* ---------------------------------------------------------------- expressions */

static jv *eval(rctx *C, scope *S, const jnode *n) {
    if (C->st) return NULL;
    switch (n->kind) {
    case JN_LIT: return n->lit;
    case JN_NAME: {
        jv *v = scope_get(S, n->name);
        if (v) return v;
        for (size_t i = 0; i < sizeof GLOBALS / sizeof GLOBALS[0]; i++)
            if (!strcmp(GLOBALS[i].name, n->name)) {
                jv *f = mk_v(C, JV_FUNC);
                if (f) f->u.fn.id = GLOBALS[i].id;
                return f;
            }
        if (!strcmp(n->name, "lipsum") || !strcmp(n->name, "cycler") || !strcmp(n->name, "joiner") ||
            !strcmp(n->name, "caller") || !strcmp(n->name, "varargs") || !strcmp(n->name, "kwargs") ||
            !strcmp(n->name, "self"))
            return rerr(C, MK_ERR_UNSUPPORTED, n->line, "unsupported construct: '%s'", n->name);
        return v_undef(C, "'%s' is undefined", n->name);
    }
    case JN_ATTR: {
        jv *o = eval(C, S, n->a);
        return o ? get_attr(C, o, n->name, strlen(n->name), n->line) : NULL;
    }
    case JN_ITEM: {
        jv *o = eval(C, S, n->a), *k = o ? eval(C, S, n->b) : NULL;
        return k ? get_item(C, o, k, n->line) : NULL;
    }
    case JN_SLICE: {
        jv *o = eval(C, S, n->a);
        if (!o) return NULL;
        jv *p[3] = {0};
        const jnode *pn[3] = {n->b, n->c, n->d};
        for (int i = 0; i < 3; i++)
            if (pn[i] && !(p[i] = eval(C, S, pn[i]))) return NULL;
        return do_slice(C, o, p[0], p[1], p[2], n->line);
    }
    case JN_CALL: {
        jv *f = eval(C, S, n->a);
        jargs a;
        if (!f || !eval_args(C, S, n, &a, NULL)) return NULL;
        return call_value(C, f, &a, n->line);
    }
    case JN_FILTER: {
        jv *v = eval(C, S, n->a);
        jargs a;
        if (!v || !eval_args(C, S, n, &a, v)) return NULL;
        return apply_filter(C, n->name, v, &a, n->line);
    }
    case JN_TEST: {
        jv *v;
        /* "x is defined" on a missing attribute of an undefined object raises in Jinja; so do we */
        if (!(v = eval(C, S, n->a))) return NULL;
        jargs a;
        if (!eval_args(C, S, n, &a, v)) return NULL;
        bool res;
        if (!apply_test(C, n->name, v, &a, n->line, &res)) return NULL;
        return v_bool(n->op ? !res : res);
    }
    case JN_NOT: {
        jv *v = eval(C, S, n->a);
        return v ? v_bool(!truthy(v)) : NULL;
    }
    case JN_NEG: case JN_POS: {
        jv *v = eval(C, S, n->a);
        if (!v) return NULL;
        if (v->k == JV_FLOAT) return v_float(C, n->kind == JN_NEG ? -v->u.f : v->u.f);
        if (is_intlike(v)) {
            if (n->kind == JN_NEG && as_int(v) == INT64_MIN) return rerr(C, MK_ERR_UNSUPPORTED, n->line, "integer overflow");
            return v_int(C, n->kind == JN_NEG ? -as_int(v) : as_int(v));
        }
        if (v->k == JV_UNDEF) return undef_err(C, n->line, v);
        return rerr(C, MK_ERR_ARG, n->line, "bad operand type for unary %s: '%s'", n->kind == JN_NEG ? "-" : "+",
                    type_name(v));
    }
    case JN_BIN: {
        jv *a = eval(C, S, n->a), *b = a ? eval(C, S, n->b) : NULL;
        return b ? binop(C, n->op, a, b, n->line) : NULL;
    }
    case JN_CMP: {
        jv *a = eval(C, S, n->a), *b = a ? eval(C, S, n->b) : NULL;
        return b ? compare(C, n->op, a, b, n->line) : NULL;
    }
    case JN_AND: case JN_OR: {
        jv *a = eval(C, S, n->a);
        if (!a) return NULL;
        if (n->kind == JN_AND ? !truthy(a) : truthy(a)) return a;
        return eval(C, S, n->b);
    }
    case JN_COND: {
        jv *c = eval(C, S, n->a);
        if (!c) return NULL;
        if (truthy(c)) return eval(C, S, n->b);
        if (n->c) return eval(C, S, n->c);
        return v_undef(C, "the inline if-expression on line %d evaluated to false and no else section was defined",
                       n->line);
    }
    case JN_LIST: case JN_TUPLE: {
        jv *l = v_list(C, n->kind == JN_LIST ? JV_LIST : JV_TUPLE, n->n_args);
        if (!l) return NULL;
        for (size_t i = 0; i < n->n_args; i++)
            if (!(l->u.l.v[i] = eval(C, S, n->args[i]))) return NULL;
        return l;
    }
    case JN_DICT: {
        jv *d = mk_v(C, JV_DICT);
        if (!d) return NULL;
        for (size_t i = 0; i + 1 < n->n_args; i += 2) {
            jv *k = eval(C, S, n->args[i]), *v = k ? eval(C, S, n->args[i + 1]) : NULL;
            if (!v) return NULL;
            if (k->k != JV_STR && k->k != JV_INT && k->k != JV_BOOL && k->k != JV_NONE && k->k != JV_FLOAT)
                return rerr(C, MK_ERR_ARG, n->line, "unhashable type: '%s'", type_name(k));
            if (!d_set(C, d, k, v)) return NULL;
        }
        return d;
    }
    default: return rerr(C, MK_ERR_INTERNAL, n->line, "statement in expression position");
    }
}

/* ---------------------------------------------------------------- statements */

static bool assign(rctx *C, scope *S, const char *const *names, size_t n_names, jv *v, int line) {
    if (n_names == 1) return scope_set(C, S, names[0], v);
    if (v->k != JV_LIST && v->k != JV_TUPLE) {
        if (v->k == JV_STR || v->k == JV_DICT || v->k == JV_GEN) {
            if (!(v = to_list(C, v, line))) return false;
        } else {
            rerr(C, MK_ERR_ARG, line, "cannot unpack non-iterable %s object", type_name(v));
            return false;
        }
    }
    if (v->u.l.n != n_names) {
        rerr(C, MK_ERR_ARG, line, "%s values to unpack (expected %zu, got %zu)",
             v->u.l.n > n_names ? "too many" : "not enough", n_names, v->u.l.n);
        return false;
    }
    for (size_t i = 0; i < n_names; i++)
        if (!scope_set(C, S, names[i], v->u.l.v[i])) return false;
    return true;
}

static int exec_node(rctx *C, scope *S, const jnode *n, sbuf *out);

static int exec_body(rctx *C, scope *S, const jnode *body, sbuf *out) {
    if (!body) return EX_OK;
    for (size_t i = 0; i < body->n_args; i++) {
        int r = exec_node(C, S, body->args[i], out);
        if (r != EX_OK) return r;
    }
    return EX_OK;
}

static int exec_node(rctx *C, scope *S, const jnode *n, sbuf *out) {
    if (C->st) return EX_ERR;
    switch (n->kind) {
    case JN_TEXT: return sb_put(C, out, n->lit->u.s.p, n->lit->u.s.n) ? EX_OK : EX_ERR;
    case JN_OUT: {
        jv *v = eval(C, S, n->a);
        return v && put_str(C, out, v) ? EX_OK : EX_ERR;
    }
    case JN_BODY: return exec_body(C, S, n, out);
    case JN_IF: {
        jv *c = eval(C, S, n->a);
        if (!c) return EX_ERR;
        return exec_body(C, S, truthy(c) ? n->b : n->c, out);
    }
    case JN_FOR: {
        jv *it = eval(C, S, n->a);
        if (!it || !(it = to_list(C, it, n->line))) return EX_ERR;
        scope *L = scope_new(C, S);
        if (!L) return EX_ERR;
        if (n->b) { /* loop filter: applied before counting */
            jv *f = v_list(C, JV_LIST, 0);
            size_t cap = 0;
            if (!f) return EX_ERR;
            for (size_t i = 0; i < it->u.l.n; i++) {
                if (!assign(C, L, n->kw, n->n_kw, it->u.l.v[i], n->line)) return EX_ERR;
                jv *c = eval(C, L, n->b);
                if (!c) return EX_ERR;
                if (truthy(c) && !list_push(C, f, &cap, it->u.l.v[i])) return EX_ERR;
            }
            it = f;
        }
        if (!it->u.l.n) return exec_body(C, S, n->d, out);
        jv *lp = mk_v(C, JV_LOOP);
        if (!lp) return EX_ERR;
        lp->u.loop.n = it->u.l.n;
        lp->u.loop.items = it;
        for (size_t i = 0; i < it->u.l.n; i++) {
            if (++C->steps > MAX_STEPS) {
                rerr(C, MK_ERR_UNSUPPORTED, n->line, "template exceeded %u loop iterations", MAX_STEPS);
                return EX_ERR;
            }
            /* a fresh loop object per iteration, so that a stored loop keeps its values */
            jv *li = mk_v(C, JV_LOOP);
            if (!li) return EX_ERR;
            *li = *lp;
            li->u.loop.i = i;
            /* each iteration has its own scope: what the body sets does not carry to the next one */
            if (!(L = scope_new(C, S))) return EX_ERR;
            if (!scope_set(C, L, "loop", li) || !assign(C, L, n->kw, n->n_kw, it->u.l.v[i], n->line)) return EX_ERR;
            int r = exec_body(C, L, n->c, out);
            if (r == EX_ERR) return EX_ERR;
            if (r == EX_BREAK) break;
        }
        return EX_OK;
    }
    case JN_SET: {
        jv *v = eval(C, S, n->a);
        if (!v) return EX_ERR;
        if (n->op == 1) {
            jv *obj = scope_get(S, n->name);
            if (!obj || obj->k != JV_NS) {
                rerr(C, MK_ERR_UNSUPPORTED, n->line, "cannot assign attribute '%s' on %s '%s' (only namespace() objects "
                     "can be modified)", n->kw[0], obj ? type_name(obj) : "undefined", n->name);
                return EX_ERR;
            }
            jv *key = v_cstr(C, n->kw[0]);
            return key && d_set(C, obj, key, v) ? EX_OK : EX_ERR;
        }
        return assign(C, S, n->kw, n->n_kw, v, n->line) ? EX_OK : EX_ERR;
    }
    case JN_SETBLOCK: {
        sbuf b = {0};
        int r = exec_body(C, S, n->c, &b);
        if (r == EX_ERR) { free(b.p); return EX_ERR; }
        jv *v = v_from_sb(C, &b);
        return v && scope_set(C, S, n->name, v) ? EX_OK : EX_ERR;
    }
    case JN_MACRO: {
        jv *m = mk_v(C, JV_MACRO);
        if (!m) return EX_ERR;
        m->u.mac.node = n;
        m->u.mac.scope = S;
        return scope_set(C, S, n->name, m) ? EX_OK : EX_ERR;
    }
    case JN_FILTERBLOCK: {
        scope *F = scope_new(C, S);
        sbuf b = {0};
        if (!F) return EX_ERR;
        int r = exec_body(C, F, n->c, &b);
        jv *body = r == EX_ERR ? NULL : v_from_sb(C, &b);
        free(b.p);
        if (!body || !scope_set(C, F, " body", body)) return EX_ERR;
        jv *v = eval(C, F, n->a);
        return v && put_str(C, out, v) ? EX_OK : EX_ERR;
    }
    case JN_BREAK: return EX_BREAK;
    case JN_CONTINUE: return EX_CONTINUE;
    default: rerr(C, MK_ERR_INTERNAL, n->line, "expression in statement position"); return EX_ERR;
    }
}

/* ---------------------------------------------------------------- entry */

static jv *from_json(rctx *C, json_t *j, int depth) {
    if (depth > 200) { rerr(C, MK_ERR_UNSUPPORTED, 0, "input value nested too deeply"); return NULL; }
    switch (json_typeof(j)) {
    case JSON_NULL: return &V_NONE;
    case JSON_TRUE: return &V_TRUE;
    case JSON_FALSE: return &V_FALSE;
    case JSON_INTEGER: return v_int(C, (int64_t)json_integer_value(j));
    case JSON_REAL: return v_float(C, json_real_value(j));
    case JSON_STRING: return v_str(C, json_string_value(j), json_string_length(j));
    case JSON_ARRAY: {
        jv *l = v_list(C, JV_LIST, json_array_size(j));
        if (!l) return NULL;
        for (size_t i = 0; i < l->u.l.n; i++)
            if (!(l->u.l.v[i] = from_json(C, json_array_get(j, i), depth + 1))) return NULL;
        return l;
    }
    case JSON_OBJECT: {
        jv *d = mk_v(C, JV_DICT);
        if (!d) return NULL;
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) {
            jv *key = v_cstr(C, k), *val = key ? from_json(C, v, depth + 1) : NULL;
            if (!val || !d_set(C, d, key, val)) return NULL;
        }
        return d;
    }
    }
    return &V_NONE;
}

mk_status jinja_render(const jinja_tpl *t, json_t *vars, char **out, size_t *out_len) {
    *out = NULL;
    if (out_len) *out_len = 0;
    rctx C = {.label = t->label};
    scope *S = scope_new(&C, NULL);
    if (!S) { ja_free(&C.a); return mk_err(MK_ERR_NOMEM, "%s: out of memory", t->label); }
    C.root = S;
    if (vars && json_is_object(vars)) {
        const char *k;
        json_t *v;
        json_object_foreach(vars, k, v) {
            const char *name = ja_strndup(&C.a, k, strlen(k));
            jv *val = name ? from_json(&C, v, 0) : NULL;
            if (!val || !scope_set(&C, S, name, val)) {
                mk_status st = C.st ? C.st : mk_err(MK_ERR_NOMEM, "%s: out of memory", t->label);
                ja_free(&C.a);
                return st;
            }
        }
    }
    sbuf b = {0};
    int r = exec_body(&C, S, t->root, &b);
    ja_free(&C.a);
    if (r == EX_ERR || C.st) {
        free(b.p);
        return C.st ? C.st : mk_err(MK_ERR_INTERNAL, "%s: render failed", t->label);
    }
    if (!b.p && !(b.p = calloc(1, 1))) return mk_err(MK_ERR_NOMEM, "%s: out of memory", t->label);
    *out = b.p;
    if (out_len) *out_len = b.n;
    return MK_OK;
}
