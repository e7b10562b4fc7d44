/* Jinja lexer and parser (see jinja.h). The lexer reproduces Jinja's environment as transformers sets
 * it up: trim_blocks=True (the first newline after a block or comment tag is removed),
 * lstrip_blocks=True (spaces and tabs from the start of a line up to a block or comment tag are
 * removed), '-' strips all whitespace on that side of a tag, '+' disables lstrip/trim, newlines are
 * normalized to \n and one trailing newline of the template is dropped (keep_trailing_newline=False). */
#include "tokenizer/jinja.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- arena */

struct jarena_blk {
    jarena_blk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

void *ja_alloc(jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    jarena_blk *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 32768 ? n : 32768;
        size_t total;
        if (!mk_add_ok(cap, sizeof(jarena_blk), &total)) {
            mk_err(MK_ERR_NOMEM, "jinja: allocation size overflow");
            return NULL;
        }
        b = malloc(total);
        if (!b) {
            mk_err(MK_ERR_NOMEM, "jinja: out of memory allocating %zu bytes", n);
            return NULL;
        }
        b->used = 0;
        b->cap = cap;
        if (a->head && n > 32768) { /* keep the current block in front for small allocations */
            b->next = a->head->next;
            a->head->next = b;
        } else {
            b->next = a->head;
            a->head = b;
        }
    }
    void *p = b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

char *ja_strndup(jarena *a, const char *s, size_t n) {
    char *p = ja_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void ja_free(jarena *a) {
    jarena_blk *b = a->head;
    while (b) {
        jarena_blk *nx = b->next;
        free(b);
        b = nx;
    }
    a->head = NULL;
}

jv *jv_new_str(jarena *a, const char *p, size_t n) {
    jv *v = ja_alloc(a, sizeof *v);
    if (!v) return NULL;
    char *s = ja_strndup(a, p, n);
    if (!s) return NULL;
    v->k = JV_STR;
    v->u.s.p = s;
    v->u.s.n = n;
    return v;
}

/* ---------------------------------------------------------------- lexer */

typedef enum {
    TK_TEXT, TK_VAR_BEGIN, TK_VAR_END, TK_BLOCK_BEGIN, TK_BLOCK_END,
    TK_NAME, TK_STR, TK_INT, TK_FLOAT, TK_OP, TK_EOF
} tk_kind;

typedef struct {
    tk_kind k;
    int line;
    const char *p; /* TEXT/STR: decoded value (arena); NAME/OP: in source */
    size_t n;
    int64_t i;
    double f;
} tok;

typedef struct {
    jarena *a;
    const char *label;
    const char *s;
    size_t n;
    tok *toks;
    size_t ntok, cap;
    /* line tracking */
    size_t line_pos;
    int line;
    mk_status st;
} lexer;

static int line_at(lexer *L, size_t pos) {
    if (pos < L->line_pos) { L->line_pos = 0; L->line = 1; }
    for (size_t i = L->line_pos; i < pos && i < L->n; i++)
        if (L->s[i] == '\n') L->line++;
    L->line_pos = pos;
    return L->line;
}

static mk_status lex_err(lexer *L, mk_status s, size_t pos, const char *fmt, ...) MK_PRINTF(4, 5);
static mk_status lex_err(lexer *L, mk_status s, size_t pos, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    L->st = mk_err(s, "%s: line %d: %s", L->label, line_at(L, pos), msg);
    return L->st;
}

static tok *push(lexer *L, tk_kind k, size_t pos) {
    if (L->ntok == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        tok *t = ja_alloc(L->a, cap * sizeof *t);
        if (!t) { L->st = MK_ERR_NOMEM; return NULL; }
        if (L->ntok) memcpy(t, L->toks, L->ntok * sizeof *t);
        L->toks = t;
        L->cap = cap;
    }
    tok *t = &L->toks[L->ntok++];
    memset(t, 0, sizeof *t);
    t->k = k;
    t->line = line_at(L, pos);
    return t;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static size_t skip_ws(const char *s, size_t n, size_t p) {
    while (p < n && is_ws(s[p])) p++;
    return p;
}

static void put_utf8(char *out, size_t *o, uint32_t c) {
    if (c < 0x80) out[(*o)++] = (char)c;
    else if (c < 0x800) { out[(*o)++] = (char)(0xC0 | (c >> 6)); out[(*o)++] = (char)(0x80 | (c & 0x3F)); }
    else if (c < 0x10000) {
        out[(*o)++] = (char)(0xE0 | (c >> 12)); out[(*o)++] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[(*o)++] = (char)(0x80 | (c & 0x3F));
    } else {
        out[(*o)++] = (char)(0xF0 | (c >> 18)); out[(*o)++] = (char)(0x80 | ((c >> 12) & 0x3F));
        out[(*o)++] = (char)(0x80 | ((c >> 6) & 0x3F)); out[(*o)++] = (char)(0x80 | (c & 0x3F));
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes a string literal's body as Python's unicode-escape does (unknown escapes stay as written). */
static mk_status lex_string(lexer *L, size_t start, size_t end, tok *t) {
    const char *s = L->s + start;
    size_t n = end - start, o = 0;
    char *out = ja_alloc(L->a, n + 1);
    if (!out) return L->st = MK_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) { out[o++] = s[i]; continue; }
        char c = s[++i];
        switch (c) {
        case 'n': out[o++] = '\n'; break;
        case 't': out[o++] = '\t'; break;
        case 'r': out[o++] = '\r'; break;
        case '\\': out[o++] = '\\'; break;
        case '\'': out[o++] = '\''; break;
        case '"': out[o++] = '"'; break;
        case 'a': out[o++] = '\a'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'v': out[o++] = '\v'; break;
        case '\n': break; /* line continuation */
        case 'x': case 'u': case 'U': {
            int nd = c == 'x' ? 2 : c == 'u' ? 4 : 8;
            uint32_t v = 0;
            for (int k = 0; k < nd; k++) {
                if (i + 1 + (size_t)k >= n) goto bad;
                int h = hexval(s[i + 1 + (size_t)k]);
                if (h < 0) goto bad;
                v = v * 16 + (uint32_t)h;
            }
            if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) goto bad;
            i += (size_t)nd;
            put_utf8(out, &o, v);
            break;
        bad:
            return lex_err(L, MK_ERR_FORMAT, start, "bad \\%c escape in string literal", c);
        }
        default:
            if (c >= '0' && c <= '7') {
                uint32_t v = (uint32_t)(c - '0');
                for (int k = 0; k < 2 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7'; k++) v = v * 8 + (uint32_t)(s[++i] - '0');
                put_utf8(out, &o, v);
            } else {
                out[o++] = '\\';
                out[o++] = c;
            }
        }
    }
    out[o] = 0;
    t->p = out;
    t->n = o;
    return MK_OK;
}

static const char *const OPS[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "/", "*", "%", "~", "[", "]", "(",
                                  ")", "{", "}", "<", ">", "=", ".", ":", "|", ",", ";"};

/* Tokenizes the inside of a {{ }} or {% %} tag starting at p; returns the position after the end tag
 * (and its whitespace control) or 0 on error. */
static size_t lex_tag(lexer *L, size_t p, bool block, bool *line_starting) {
    const char *s = L->s;
    size_t n = L->n;
    int balance = 0;
    for (;;) {
        p = skip_ws(s, n, p);
        if (p >= n) {
            lex_err(L, MK_ERR_FORMAT, p, "unexpected end of template inside a %s tag", block ? "{% %}" : "{{ }}");
            return 0;
        }
        if (balance == 0) {
            size_t end = 0;
            if (block) {
                if (s[p] == '-' && p + 2 < n + 0 && s[p + 1] == '%' && s[p + 2] == '}') end = skip_ws(s, n, p + 3);
                else if (s[p] == '+' && p + 2 < n && s[p + 1] == '%' && s[p + 2] == '}') end = p + 3;
                else if (s[p] == '%' && p + 1 < n && s[p + 1] == '}') {
                    end = p + 2;
                    if (end < n && s[end] == '\n') end++;
                }
            } else {
                if (s[p] == '-' && p + 2 < n && s[p + 1] == '}' && s[p + 2] == '}') end = skip_ws(s, n, p + 3);
                else if (s[p] == '}' && p + 1 < n && s[p + 1] == '}') end = p + 2;
            }
            if (end) {
                if (!push(L, block ? TK_BLOCK_END : TK_VAR_END, p)) return 0;
                *line_starting = s[end - 1] == '\n';
                return end;
            }
        }
        char c = s[p];
        if (isalpha((unsigned char)c) || c == '_') {
            size_t q = p;
            while (q < n && (isalnum((unsigned char)s[q]) || s[q] == '_')) q++;
            tok *t = push(L, TK_NAME, p);
            if (!t) return 0;
            t->p = s + p;
            t->n = q - p;
            p = q;
        } else if (isdigit((unsigned char)c)) {
            size_t q = p;
            while (q < n && (isdigit((unsigned char)s[q]) || s[q] == '_')) q++;
            bool fl = false;
            bool after_dot = p > 0 && s[p - 1] == '.';
            if (!after_dot && q + 1 < n && s[q] == '.' && isdigit((unsigned char)s[q + 1])) {
                fl = true;
                q++;
                while (q < n && (isdigit((unsigned char)s[q]) || s[q] == '_')) q++;
            }
            if (!after_dot && q < n && (s[q] == 'e' || s[q] == 'E')) {
                size_t r = q + 1;
                if (r < n && (s[r] == '+' || s[r] == '-')) r++;
                if (r < n && isdigit((unsigned char)s[r])) {
                    fl = true;
                    q = r;
                    while (q < n && isdigit((unsigned char)s[q])) q++;
                }
            }
            char buf[64];
            size_t bl = 0;
            for (size_t k = p; k < q && bl + 1 < sizeof buf; k++)
                if (s[k] != '_') buf[bl++] = s[k];
            buf[bl] = 0;
            tok *t = push(L, fl ? TK_FLOAT : TK_INT, p);
            if (!t) return 0;
            errno = 0;
            if (fl) t->f = strtod(buf, NULL);
            else t->i = strtoll(buf, NULL, 10);
            if (errno) {
                lex_err(L, MK_ERR_UNSUPPORTED, p, "number literal '%s' out of range", buf);
                return 0;
            }
            p = q;
        } else if (c == '\'' || c == '"') {
            size_t q = p + 1;
            while (q < n && s[q] != c) q += (s[q] == '\\') ? 2 : 1;
            if (q >= n) {
                lex_err(L, MK_ERR_FORMAT, p, "unterminated string literal");
                return 0;
            }
            tok *t = push(L, TK_STR, p);
            if (!t || lex_string(L, p + 1, q, t)) return 0;
            p = q + 1;
        } else {
            size_t k, ol = 0;
            for (k = 0; k < sizeof OPS / sizeof OPS[0]; k++) {
                ol = strlen(OPS[k]);
                if (p + ol <= n && memcmp(s + p, OPS[k], ol) == 0) break;
            }
            if (k == sizeof OPS / sizeof OPS[0]) {
                lex_err(L, MK_ERR_FORMAT, p, "unexpected character '%c' in tag", c);
                return 0;
            }
            if (c == '(' || c == '[' || c == '{') balance++;
            if (c == ')' || c == ']' || c == '}') {
                if (balance == 0) {
                    lex_err(L, MK_ERR_FORMAT, p, "unbalanced '%c'", c);
                    return 0;
                }
                balance--;
            }
            tok *t = push(L, TK_OP, p);
            if (!t) return 0;
            t->p = s + p;
            t->n = ol;
            p += ol;
        }
    }
}

static mk_status emit_text(lexer *L, size_t a, size_t b) {
    if (b <= a) return MK_OK;
    tok *t = push(L, TK_TEXT, a);
    if (!t) return L->st ? L->st : MK_ERR_NOMEM;
    t->p = L->s + a; /* source is normalized and owned by the arena */
    t->n = b - a;
    return MK_OK;
}

static mk_status lex_all(lexer *L) {
    const char *s = L->s;
    size_t n = L->n, pos = 0;
    bool line_starting = true;
    while (pos < n) {
        size_t q = pos;
        while (q + 1 < n && !(s[q] == '{' && (s[q + 1] == '{' || s[q + 1] == '%' || s[q + 1] == '#'))) q++;
        if (q + 1 >= n) {
            if (emit_text(L, pos, n)) return L->st;
            break;
        }
        char c = s[q + 1];
        char sign = (q + 2 < n && (s[q + 2] == '-' || s[q + 2] == '+')) ? s[q + 2] : 0;
        size_t tend = q;
        if (sign == '-') {
            while (tend > pos && is_ws(s[tend - 1])) tend--;
        } else if (sign != '+' && c != '{') {
            size_t lpos = tend;
            while (lpos > pos && s[lpos - 1] != '\n') lpos--;
            bool nl = lpos > pos;
            if ((nl || line_starting) && tend > lpos) {
                bool all = true;
                for (size_t k = lpos; k < tend; k++)
                    if (!is_ws(s[k])) { all = false; break; }
                if (all) tend = lpos;
            }
        }
        if (emit_text(L, pos, tend)) return L->st;
        size_t p = q + 2 + (sign ? 1 : 0);
        if (c == '#') {
            const char *e = NULL;
            for (size_t k = p; k + 1 < n; k++)
                if (s[k] == '#' && s[k + 1] == '}') { e = s + k; break; }
            if (!e) return lex_err(L, MK_ERR_FORMAT, q, "unclosed comment");
            size_t ei = (size_t)(e - s);
            if (ei > p && s[ei - 1] == '-') pos = skip_ws(s, n, ei + 2);
            else if (ei > p && s[ei - 1] == '+') pos = ei + 2;
            else {
                pos = ei + 2;
                if (pos < n && s[pos] == '\n') pos++;
            }
            line_starting = s[pos - 1] == '\n';
            continue;
        }
        if (!push(L, c == '%' ? TK_BLOCK_BEGIN : TK_VAR_BEGIN, q)) return L->st ? L->st : MK_ERR_NOMEM;
        pos = lex_tag(L, p, c == '%', &line_starting);
        if (!pos) return L->st ? L->st : MK_ERR_NOMEM;
    }
    if (!push(L, TK_EOF, n)) return L->st ? L->st : MK_ERR_NOMEM;
    return MK_OK;
}

/* ---------------------------------------------------------------- parser */

typedef struct {
    jarena *a;
    const char *label;
    tok *t;
    size_t i, n;
    mk_status st;
    int macro_depth, loop_depth, depth, body_depth;
} parser;

#define PFAIL(P) ((P)->st != MK_OK)

static void *perr(parser *P, mk_status s, int line, const char *fmt, ...) MK_PRINTF(4, 5);
static void *perr(parser *P, mk_status s, int line, const char *fmt, ...) {
    if (P->st) return NULL;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    P->st = mk_err(s, "%s: line %d: %s", P->label, line, msg);
    return NULL;
}

static tok *cur(parser *P) { return &P->t[P->i]; }
static bool is_op(parser *P, const char *op) {
    tok *t = cur(P);
    return t->k == TK_OP && t->n == strlen(op) && memcmp(t->p, op, t->n) == 0;
}
static bool is_name(parser *P, const char *nm) {
    tok *t = cur(P);
    return t->k == TK_NAME && t->n == strlen(nm) && memcmp(t->p, nm, t->n) == 0;
}
static bool is_name_at(parser *P, size_t k, const char *nm) {
    if (P->i + k >= P->n) return false;
    tok *t = &P->t[P->i + k];
    return t->k == TK_NAME && t->n == strlen(nm) && memcmp(t->p, nm, t->n) == 0;
}
static void adv(parser *P) {
    if (P->t[P->i].k != TK_EOF) P->i++;
}
static const char *tok_desc(tok *t, char *buf, size_t n) {
    switch (t->k) {
    case TK_EOF: return "end of template";
    case TK_TEXT: return "template text";
    case TK_VAR_BEGIN: return "'{{'";
    case TK_VAR_END: return "'}}'";
    case TK_BLOCK_BEGIN: return "'{%'";
    case TK_BLOCK_END: return "'%}'";
    case TK_STR: return "string literal";
    case TK_INT: case TK_FLOAT: return "number";
    default: snprintf(buf, n, "'%.*s'", (int)MK_MIN(t->n, 40), t->p); return buf;
    }
}
static bool expect_op(parser *P, const char *op) {
    if (is_op(P, op)) { adv(P); return true; }
    char b[64];
    perr(P, MK_ERR_FORMAT, cur(P)->line, "expected '%s', got %s", op, tok_desc(cur(P), b, sizeof b));
    return false;
}
static bool expect(parser *P, tk_kind k, const char *what) {
    if (cur(P)->k == k) { adv(P); return true; }
    char b[64];
    perr(P, MK_ERR_FORMAT, cur(P)->line, "expected %s, got %s", what, tok_desc(cur(P), b, sizeof b));
    return false;
}

static jnode *mk_node(parser *P, jnode_kind k, int line) {
    jnode *n = ja_alloc(P->a, sizeof *n);
    if (!n) { P->st = MK_ERR_NOMEM; return NULL; }
    n->kind = k;
    n->line = line;
    return n;
}

/* A growable node list in the arena. */
typedef struct { jnode **v; size_t n, cap; } nlist;
static bool nl_push(parser *P, nlist *l, jnode *x) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        jnode **v = ja_alloc(P->a, cap * sizeof *v);
        if (!v) { P->st = MK_ERR_NOMEM; return false; }
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return true;
}
typedef struct { const char **v; size_t n, cap; } slist;
static bool sl_push(parser *P, slist *l, const char *x) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        const char **v = ja_alloc(P->a, cap * sizeof *v);
        if (!v) { P->st = MK_ERR_NOMEM; return false; }
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return true;
}

static const char *name_str(parser *P, tok *t) {
    const char *s = ja_strndup(P->a, t->p, t->n);
    if (!s) P->st = MK_ERR_NOMEM;
    return s;
}

static jnode *parse_expr(parser *P, bool with_cond);
static jnode *parse_or(parser *P);
static jnode *parse_unary(parser *P, bool with_filter);
static jnode *parse_primary(parser *P);
static jnode *parse_postfix(parser *P, jnode *n);
static jnode *parse_filter_expr(parser *P, jnode *n);

/* Parses "(args, kw=v, ...)" into n->args / n->kw / n->kwv; the '(' is current. */
static bool parse_call_args(parser *P, jnode *n) {
    if (!expect_op(P, "(")) return false;
    nlist args = {0}, kwv = {0};
    slist kw = {0};
    while (!is_op(P, ")")) {
        if (args.n + kw.n > 0 && !expect_op(P, ",")) return false;
        if (is_op(P, ")")) break;
        if (is_op(P, "*") || is_op(P, "**")) {
            perr(P, MK_ERR_UNSUPPORTED, cur(P)->line, "unsupported construct: *args/**kwargs in a call");
            return false;
        }
        if (cur(P)->k == TK_NAME && P->i + 1 < P->n && P->t[P->i + 1].k == TK_OP && P->t[P->i + 1].n == 1 &&
            P->t[P->i + 1].p[0] == '=') {
            const char *k = name_str(P, cur(P));
            adv(P);
            adv(P);
            jnode *v = parse_expr(P, true);
            if (!v || !sl_push(P, &kw, k) || !nl_push(P, &kwv, v)) return false;
        } else {
            if (kw.n) {
                perr(P, MK_ERR_FORMAT, cur(P)->line, "positional argument after keyword argument");
                return false;
            }
            jnode *v = parse_expr(P, true);
            if (!v || !nl_push(P, &args, v)) return false;
        }
    }
    adv(P);
    n->args = args.v;
    n->n_args = args.n;
    n->kw = kw.v;
    n->kwv = kwv.v;
    n->n_kw = kw.n;
    return true;
}

/* Parses "a, b, ..." as an implicit tuple (one expression stays itself). */
static jnode *parse_tuple(parser *P, bool with_cond) {
    int line = cur(P)->line;
    jnode *first = parse_expr(P, with_cond);
    if (!first || !is_op(P, ",")) return first;
    nlist l = {0};
    if (!nl_push(P, &l, first)) return NULL;
    while (is_op(P, ",")) {
        adv(P);
        if (cur(P)->k == TK_BLOCK_END || cur(P)->k == TK_VAR_END || is_op(P, ")") || is_name(P, "if")) break;
        jnode *x = parse_expr(P, with_cond);
        if (!x || !nl_push(P, &l, x)) return NULL;
    }
    jnode *t = mk_node(P, JN_TUPLE, line);
    if (!t) return NULL;
    t->args = l.v;
    t->n_args = l.n;
    return t;
}

static jnode *parse_primary(parser *P) {
    tok *t = cur(P);
    char b[64];
    jnode *n;
    switch (t->k) {
    case TK_NAME: {
        static const struct { const char *nm; int kind; } CONSTS[] = {
            {"true", 1}, {"True", 1}, {"false", 0}, {"False", 0}, {"none", 2}, {"None", 2}};
        for (size_t k = 0; k < sizeof CONSTS / sizeof CONSTS[0]; k++) {
            if (is_name(P, CONSTS[k].nm)) {
                n = mk_node(P, JN_LIT, t->line);
                if (!n) return NULL;
                n->lit = ja_alloc(P->a, sizeof(jv));
                if (!n->lit) { P->st = MK_ERR_NOMEM; return NULL; }
                if (CONSTS[k].kind == 2) n->lit->k = JV_NONE;
                else { n->lit->k = JV_BOOL; n->lit->u.b = CONSTS[k].kind == 1; }
                adv(P);
                return n;
            }
        }
        n = mk_node(P, JN_NAME, t->line);
        if (!n || !(n->name = name_str(P, t))) return NULL;
        adv(P);
        return n;
    }
    case TK_STR: {
        /* adjacent string literals concatenate */
        size_t total = 0, k = P->i;
        while (P->t[k].k == TK_STR) total += P->t[k++].n;
        char *buf = ja_alloc(P->a, total + 1);
        if (!buf) { P->st = MK_ERR_NOMEM; return NULL; }
        size_t o = 0;
        int line = t->line;
        while (cur(P)->k == TK_STR) {
            memcpy(buf + o, cur(P)->p, cur(P)->n);
            o += cur(P)->n;
            adv(P);
        }
        n = mk_node(P, JN_LIT, line);
        if (!n) return NULL;
        n->lit = ja_alloc(P->a, sizeof(jv));
        if (!n->lit) { P->st = MK_ERR_NOMEM; return NULL; }
        n->lit->k = JV_STR;
        n->lit->u.s.p = buf;
        n->lit->u.s.n = total;
        return n;
    }
    case TK_INT: case TK_FLOAT:
        n = mk_node(P, JN_LIT, t->line);
        if (!n) return NULL;
        n->lit = ja_alloc(P->a, sizeof(jv));
        if (!n->lit) { P->st = MK_ERR_NOMEM; return NULL; }
        if (t->k == TK_INT) { n->lit->k = JV_INT; n->lit->u.i = t->i; }
        else { n->lit->k = JV_FLOAT; n->lit->u.f = t->f; }
        adv(P);
        return n;
    case TK_OP:
        if (is_op(P, "(")) {
            adv(P);
            if (is_op(P, ")")) {
                adv(P);
                return mk_node(P, JN_TUPLE, t->line);
            }
            jnode *x = parse_tuple(P, true);
            if (!x || !expect_op(P, ")")) return NULL;
            return x;
        }
        if (is_op(P, "[") || is_op(P, "{")) {
            bool dict = is_op(P, "{");
            int line = t->line;
            adv(P);
            nlist l = {0};
            const char *close = dict ? "}" : "]";
            while (!is_op(P, close)) {
                if (l.n && !expect_op(P, ",")) return NULL;
                if (is_op(P, close)) break;
                jnode *x = parse_expr(P, true);
                if (!x || !nl_push(P, &l, x)) return NULL;
                if (dict) {
                    if (!expect_op(P, ":")) return NULL;
                    jnode *v = parse_expr(P, true);
                    if (!v || !nl_push(P, &l, v)) return NULL;
                }
            }
            adv(P);
            n = mk_node(P, dict ? JN_DICT : JN_LIST, line);
            if (!n) return NULL;
            n->args = l.v;
            n->n_args = l.n;
            return n;
        }
        break;
    default: break;
    }
    return perr(P, MK_ERR_FORMAT, t->line, "unexpected %s in expression", tok_desc(t, b, sizeof b));
}

static jnode *parse_postfix(parser *P, jnode *n) {
    while (n) {
        int line = cur(P)->line;
        if (is_op(P, ".")) {
            adv(P);
            tok *t = cur(P);
            if (t->k == TK_NAME) {
                jnode *x = mk_node(P, JN_ATTR, line);
                if (!x || !(x->name = name_str(P, t))) return NULL;
                x->a = n;
                adv(P);
                n = x;
            } else if (t->k == TK_INT) {
                jnode *x = mk_node(P, JN_ITEM, line), *k = mk_node(P, JN_LIT, line);
                if (!x || !k || !(k->lit = ja_alloc(P->a, sizeof(jv)))) { P->st = MK_ERR_NOMEM; return NULL; }
                k->lit->k = JV_INT;
                k->lit->u.i = t->i;
                x->a = n;
                x->b = k;
                adv(P);
                n = x;
            } else {
                return perr(P, MK_ERR_FORMAT, line, "expected an attribute name after '.'");
            }
        } else if (is_op(P, "[")) {
            adv(P);
            jnode *parts[3] = {0};
            bool slice = false;
            for (int k = 0; k < 3; k++) {
                if (!is_op(P, ":") && !is_op(P, "]")) {
                    parts[k] = parse_expr(P, true);
                    if (!parts[k]) return NULL;
                }
                if (k < 2 && is_op(P, ":")) { slice = true; adv(P); }
                else break;
            }
            if (!expect_op(P, "]")) return NULL;
            jnode *x = mk_node(P, slice ? JN_SLICE : JN_ITEM, line);
            if (!x) return NULL;
            x->a = n;
            if (slice) { x->b = parts[0]; x->c = parts[1]; x->d = parts[2]; }
            else {
                if (!parts[0]) return perr(P, MK_ERR_FORMAT, line, "empty subscript");
                x->b = parts[0];
            }
            n = x;
        } else if (is_op(P, "(")) {
            jnode *x = mk_node(P, JN_CALL, line);
            if (!x) return NULL;
            x->a = n;
            if (!parse_call_args(P, x)) return NULL;
            n = x;
        } else {
            break;
        }
    }
    return n;
}

/* name or dotted name of a filter/test */
static const char *parse_dotted(parser *P) {
    if (cur(P)->k != TK_NAME) {
        char b[64];
        return perr(P, MK_ERR_FORMAT, cur(P)->line, "expected a filter or test name, got %s",
                    tok_desc(cur(P), b, sizeof b));
    }
    const char *nm = name_str(P, cur(P));
    adv(P);
    return nm;
}

static jnode *parse_filter_expr(parser *P, jnode *n) {
    while (n) {
        int line = cur(P)->line;
        if (is_op(P, "|")) {
            adv(P);
            jnode *f = mk_node(P, JN_FILTER, line);
            if (!f || !(f->name = parse_dotted(P))) return NULL;
            if (!jinja_has_filter(f->name))
                return perr(P, MK_ERR_UNSUPPORTED, line, "unsupported filter '%s'", f->name);
            f->a = n;
            if (is_op(P, "(") && !parse_call_args(P, f)) return NULL;
            n = f;
        } else if (is_name(P, "is")) {
            adv(P);
            bool neg = false;
            if (is_name(P, "not")) { neg = true; adv(P); }
            jnode *t = mk_node(P, JN_TEST, line);
            if (!t || !(t->name = parse_dotted(P))) return NULL;
            if (!jinja_has_test(t->name)) return perr(P, MK_ERR_UNSUPPORTED, line, "unsupported test '%s'", t->name);
            t->a = n;
            t->op = neg;
            tok *c = cur(P);
            if (is_op(P, "(")) {
                if (!parse_call_args(P, t)) return NULL;
            } else if ((c->k == TK_NAME || c->k == TK_STR || c->k == TK_INT || c->k == TK_FLOAT || is_op(P, "[") ||
                        is_op(P, "{")) &&
                       !is_name(P, "else") && !is_name(P, "or") && !is_name(P, "and") && !is_name(P, "if") &&
                       !is_name(P, "is") && !is_name(P, "in") && !is_name(P, "not")) {
                jnode *arg = parse_postfix(P, parse_primary(P));
                if (!arg) return NULL;
                t->args = ja_alloc(P->a, sizeof(jnode *));
                if (!t->args) { P->st = MK_ERR_NOMEM; return NULL; }
                t->args[0] = arg;
                t->n_args = 1;
            }
            n = t;
        } else if (is_op(P, "(")) {
            jnode *x = mk_node(P, JN_CALL, line);
            if (!x) return NULL;
            x->a = n;
            if (!parse_call_args(P, x)) return NULL;
            n = x;
        } else {
            break;
        }
    }
    return n;
}

static jnode *parse_unary(parser *P, bool with_filter) {
    int line = cur(P)->line;
    jnode *n;
    if (is_op(P, "-") || is_op(P, "+")) {
        bool neg = is_op(P, "-");
        adv(P);
        n = mk_node(P, neg ? JN_NEG : JN_POS, line);
        if (++P->depth > 200) return perr(P, MK_ERR_UNSUPPORTED, line, "expression nested too deeply");
        if (!n || !(n->a = parse_unary(P, false))) return NULL;
        P->depth--;
    } else {
        n = parse_primary(P);
    }
    n = parse_postfix(P, n);
    if (with_filter) n = parse_filter_expr(P, n);
    return n;
}

static jnode *bin(parser *P, jnode_kind k, int op, int line, jnode *a, jnode *b) {
    if (!a || !b) return NULL;
    jnode *n = mk_node(P, k, line);
    if (!n) return NULL;
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static jnode *parse_pow(parser *P) {
    jnode *n = parse_unary(P, true);
    while (n && is_op(P, "**")) {
        int line = cur(P)->line;
        adv(P);
        n = bin(P, JN_BIN, JOP_POW, line, n, parse_unary(P, true));
    }
    return n;
}
static jnode *parse_math2(parser *P) {
    jnode *n = parse_pow(P);
    while (n) {
        int op = is_op(P, "*") ? JOP_MUL : is_op(P, "/") ? JOP_DIV : is_op(P, "//") ? JOP_FLOORDIV
               : is_op(P, "%") ? JOP_MOD : 0;
        if (!op) break;
        int line = cur(P)->line;
        adv(P);
        n = bin(P, JN_BIN, op, line, n, parse_pow(P));
    }
    return n;
}
static jnode *parse_concat(parser *P) {
    jnode *n = parse_math2(P);
    while (n && is_op(P, "~")) {
        int line = cur(P)->line;
        adv(P);
        n = bin(P, JN_BIN, JOP_CONCAT, line, n, parse_math2(P));
    }
    return n;
}
static jnode *parse_math1(parser *P) {
    jnode *n = parse_concat(P);
    while (n) {
        int op = is_op(P, "+") ? JOP_ADD : is_op(P, "-") ? JOP_SUB : 0;
        if (!op) break;
        int line = cur(P)->line;
        adv(P);
        n = bin(P, JN_BIN, op, line, n, parse_concat(P));
    }
    return n;
}
/* Chained comparisons a < b < c become (a < b) and (b < c) with b evaluated twice (templates do not
 * rely on single evaluation: expressions have no side effects except raise_exception). */
static jnode *parse_compare(parser *P) {
    jnode *n = parse_math1(P);
    jnode *result = n, *prev = n;
    int n_cmp = 0;
    while (n) {
        int line = cur(P)->line, op = 0;
        if (is_op(P, "==")) op = JOP_EQ;
        else if (is_op(P, "!=")) op = JOP_NE;
        else if (is_op(P, "<")) op = JOP_LT;
        else if (is_op(P, "<=")) op = JOP_LE;
        else if (is_op(P, ">")) op = JOP_GT;
        else if (is_op(P, ">=")) op = JOP_GE;
        else if (is_name(P, "in")) op = JOP_IN;
        else if (is_name(P, "not") && is_name_at(P, 1, "in")) { op = JOP_NOTIN; adv(P); }
        if (!op) break;
        adv(P);
        jnode *rhs = parse_math1(P);
        jnode *c = bin(P, JN_CMP, op, line, prev, rhs);
        if (!c) return NULL;
        result = n_cmp++ == 0 ? c : bin(P, JN_AND, 0, line, result, c);
        if (!result) return NULL;
        prev = rhs;
    }
    return n ? result : NULL;
}
static jnode *parse_not(parser *P) {
    if (is_name(P, "not")) {
        int line = cur(P)->line;
        adv(P);
        jnode *n = mk_node(P, JN_NOT, line);
        if (++P->depth > 200) return perr(P, MK_ERR_UNSUPPORTED, line, "expression nested too deeply");
        if (!n || !(n->a = parse_not(P))) return NULL;
        P->depth--;
        return n;
    }
    return parse_compare(P);
}
static jnode *parse_and(parser *P) {
    jnode *n = parse_not(P);
    while (n && is_name(P, "and")) {
        int line = cur(P)->line;
        adv(P);
        n = bin(P, JN_AND, 0, line, n, parse_not(P));
    }
    return n;
}
static jnode *parse_or(parser *P) {
    jnode *n = parse_and(P);
    while (n && is_name(P, "or")) {
        int line = cur(P)->line;
        adv(P);
        n = bin(P, JN_OR, 0, line, n, parse_and(P));
    }
    return n;
}
static jnode *parse_expr(parser *P, bool with_cond) {
    if (++P->depth > 200) return perr(P, MK_ERR_UNSUPPORTED, cur(P)->line, "expression nested too deeply");
    jnode *n = parse_or(P);
    P->depth--;
    if (!with_cond) return n;
    while (n && is_name(P, "if")) {
        int line = cur(P)->line;
        adv(P);
        jnode *c = mk_node(P, JN_COND, line);
        if (!c) return NULL;
        c->b = n;
        if (!(c->a = parse_or(P))) return NULL;
        if (is_name(P, "else")) {
            adv(P);
            if (!(c->c = parse_expr(P, true))) return NULL;
        }
        n = c;
    }
    return n;
}

/* ---- statements ---- */

static jnode *parse_body(parser *P, const char *const *ends, size_t n_ends, const char *opener, int open_line);

static bool end_block(parser *P) { return expect(P, TK_BLOCK_END, "'%}'"); }

/* Assignment targets: name or "a, b" (for loops, set). */
static bool parse_targets(parser *P, slist *names) {
    bool paren = false;
    if (is_op(P, "(")) { paren = true; adv(P); }
    for (;;) {
        if (cur(P)->k != TK_NAME) {
            char b[64];
            perr(P, MK_ERR_FORMAT, cur(P)->line, "expected a variable name, got %s", tok_desc(cur(P), b, sizeof b));
            return false;
        }
        if (!sl_push(P, names, name_str(P, cur(P)))) return false;
        adv(P);
        if (!is_op(P, ",")) break;
        adv(P);
    }
    if (paren && !expect_op(P, ")")) return false;
    return true;
}

static jnode *parse_if(parser *P, int line) {
    jnode *n = mk_node(P, JN_IF, line);
    if (!n || !(n->a = parse_tuple(P, true)) || !end_block(P)) return NULL;
    static const char *const ends[] = {"elif", "else", "endif"};
    if (!(n->b = parse_body(P, ends, 3, "if", line))) return NULL;
    int l2 = cur(P)->line;
    if (is_name(P, "elif")) {
        adv(P);
        jnode *body = mk_node(P, JN_BODY, l2);
        if (!body || !(body->args = ja_alloc(P->a, sizeof(jnode *)))) { P->st = MK_ERR_NOMEM; return NULL; }
        if (!(body->args[0] = parse_if(P, l2))) return NULL;
        body->n_args = 1;
        n->c = body;
        return n; /* the nested if consumed endif */
    }
    if (is_name(P, "else")) {
        adv(P);
        if (!end_block(P)) return NULL;
        static const char *const ends2[] = {"endif"};
        if (!(n->c = parse_body(P, ends2, 1, "if", line))) return NULL;
    }
    adv(P); /* endif */
    if (!end_block(P)) return NULL;
    return n;
}

static jnode *parse_statement(parser *P) {
    tok *t = cur(P);
    int line = t->line;
    char b[64];
    if (t->k != TK_NAME) return perr(P, MK_ERR_FORMAT, line, "expected a tag name, got %s", tok_desc(t, b, sizeof b));
    if (is_name(P, "if")) {
        adv(P);
        return parse_if(P, line);
    }
    if (is_name(P, "for")) {
        adv(P);
        jnode *n = mk_node(P, JN_FOR, line);
        slist names = {0};
        if (!n || !parse_targets(P, &names)) return NULL;
        n->kw = names.v;
        n->n_kw = names.n;
        if (!is_name(P, "in")) return perr(P, MK_ERR_FORMAT, line, "expected 'in' in for loop");
        adv(P);
        if (!(n->a = parse_tuple(P, false))) return NULL;
        if (is_name(P, "if")) {
            adv(P);
            if (!(n->b = parse_expr(P, true))) return NULL;
        }
        if (is_name(P, "recursive"))
            return perr(P, MK_ERR_UNSUPPORTED, line, "unsupported construct: recursive for loop");
        if (!end_block(P)) return NULL;
        static const char *const ends[] = {"else", "endfor"};
        P->loop_depth++;
        n->c = parse_body(P, ends, 2, "for", line);
        P->loop_depth--;
        if (!n->c) return NULL;
        if (is_name(P, "else")) {
            adv(P);
            if (!end_block(P)) return NULL;
            static const char *const ends2[] = {"endfor"};
            if (!(n->d = parse_body(P, ends2, 1, "for", line))) return NULL;
        }
        adv(P);
        if (!end_block(P)) return NULL;
        return n;
    }
    if (is_name(P, "set")) {
        adv(P);
        slist names = {0};
        /* set ns.attr = value */
        if (cur(P)->k == TK_NAME && P->t[P->i + 1].k == TK_OP && P->t[P->i + 1].n == 1 && P->t[P->i + 1].p[0] == '.') {
            jnode *n = mk_node(P, JN_SET, line);
            if (!n || !(n->name = name_str(P, cur(P)))) return NULL;
            adv(P);
            adv(P);
            if (cur(P)->k != TK_NAME) return perr(P, MK_ERR_FORMAT, line, "expected an attribute name after '.'");
            if (!sl_push(P, &names, name_str(P, cur(P)))) return NULL;
            adv(P);
            n->op = 1;
            n->kw = names.v;
            n->n_kw = 1;
            if (!expect_op(P, "=") || !(n->a = parse_tuple(P, true)) || !end_block(P)) return NULL;
            return n;
        }
        if (!parse_targets(P, &names)) return NULL;
        if (is_op(P, "=")) {
            adv(P);
            jnode *n = mk_node(P, JN_SET, line);
            if (!n) return NULL;
            n->kw = names.v;
            n->n_kw = names.n;
            if (!(n->a = parse_tuple(P, true)) || !end_block(P)) return NULL;
            return n;
        }
        if (names.n != 1) return perr(P, MK_ERR_FORMAT, line, "block set takes one name");
        if (is_op(P, "|"))
            return perr(P, MK_ERR_UNSUPPORTED, line, "unsupported construct: filtered block set");
        if (!end_block(P)) return NULL;
        jnode *n = mk_node(P, JN_SETBLOCK, line);
        if (!n) return NULL;
        n->name = names.v[0];
        static const char *const ends[] = {"endset"};
        if (!(n->c = parse_body(P, ends, 1, "set", line))) return NULL;
        adv(P);
        if (!end_block(P)) return NULL;
        return n;
    }
    if (is_name(P, "macro")) {
        adv(P);
        if (cur(P)->k != TK_NAME) return perr(P, MK_ERR_FORMAT, line, "expected a macro name");
        jnode *n = mk_node(P, JN_MACRO, line);
        if (!n || !(n->name = name_str(P, cur(P)))) return NULL;
        adv(P);
        if (!expect_op(P, "(")) return NULL;
        slist params = {0};
        nlist defs = {0};
        while (!is_op(P, ")")) {
            if (params.n && !expect_op(P, ",")) return NULL;
            if (cur(P)->k != TK_NAME) return perr(P, MK_ERR_FORMAT, line, "expected a macro parameter name");
            if (!sl_push(P, &params, name_str(P, cur(P)))) return NULL;
            adv(P);
            jnode *d = NULL;
            if (is_op(P, "=")) {
                adv(P);
                if (!(d = parse_expr(P, true))) return NULL;
            }
            if (!nl_push(P, &defs, d)) return NULL;
        }
        adv(P);
        if (!end_block(P)) return NULL;
        n->kw = params.v;
        n->n_kw = params.n;
        n->args = defs.v;
        n->n_args = defs.n;
        static const char *const ends[] = {"endmacro"};
        P->macro_depth++;
        int saved_loop = P->loop_depth;
        P->loop_depth = 0;
        n->c = parse_body(P, ends, 1, "macro", line);
        P->loop_depth = saved_loop;
        P->macro_depth--;
        if (!n->c) return NULL;
        adv(P);
        if (cur(P)->k == TK_NAME) adv(P); /* {% endmacro name %} */
        if (!end_block(P)) return NULL;
        return n;
    }
    if (is_name(P, "break") || is_name(P, "continue")) {
        bool brk = is_name(P, "break");
        if (!P->loop_depth) return perr(P, MK_ERR_FORMAT, line, "'%s' outside a for loop", brk ? "break" : "continue");
        adv(P);
        if (!end_block(P)) return NULL;
        return mk_node(P, brk ? JN_BREAK : JN_CONTINUE, line);
    }
    if (is_name(P, "filter")) {
        adv(P);
        jnode *n = mk_node(P, JN_FILTERBLOCK, line), *body = mk_node(P, JN_NAME, line);
        if (!n || !body) return NULL;
        body->name = " body"; /* not a valid identifier: cannot clash with template variables */
        jnode *chain = body;
        do {
            if (chain != body) adv(P); /* '|' */
            jnode *f = mk_node(P, JN_FILTER, cur(P)->line);
            if (!f || !(f->name = parse_dotted(P))) return NULL;
            if (!jinja_has_filter(f->name)) return perr(P, MK_ERR_UNSUPPORTED, line, "unsupported filter '%s'", f->name);
            f->a = chain;
            if (is_op(P, "(") && !parse_call_args(P, f)) return NULL;
            chain = f;
        } while (is_op(P, "|"));
        n->a = chain;
        if (!end_block(P)) return NULL;
        static const char *const ends[] = {"endfilter"};
        if (!(n->c = parse_body(P, ends, 1, "filter", line))) return NULL;
        adv(P);
        if (!end_block(P)) return NULL;
        return n;
    }
    if (is_name(P, "generation")) { /* transformers' assistant-mask marker: renders its body */
        adv(P);
        if (!end_block(P)) return NULL;
        static const char *const ends[] = {"endgeneration"};
        jnode *body = parse_body(P, ends, 1, "generation", line);
        if (!body) return NULL;
        adv(P);
        if (!end_block(P)) return NULL;
        return body;
    }
    static const char *const KNOWN[] = {"elif", "else", "endif", "endfor", "endset", "endmacro", "endgeneration",
                                        "endfilter"};
    for (size_t k = 0; k < sizeof KNOWN / sizeof KNOWN[0]; k++)
        if (is_name(P, KNOWN[k])) return perr(P, MK_ERR_FORMAT, line, "unexpected '%s'", KNOWN[k]);
    return perr(P, MK_ERR_UNSUPPORTED, line, "unsupported construct: '{%% %.*s %%}' tag", (int)MK_MIN(t->n, 40), t->p);
}

/* Parses statements until a block tag whose name is one of ends (left current, after its '{%'). */
static jnode *parse_body(parser *P, const char *const *ends, size_t n_ends, const char *opener, int open_line) {
    if (++P->body_depth > 100) return perr(P, MK_ERR_UNSUPPORTED, cur(P)->line, "tags nested too deeply");
    jnode *body = mk_node(P, JN_BODY, cur(P)->line);
    if (!body) return NULL;
    nlist l = {0};
    for (;;) {
        tok *t = cur(P);
        if (t->k == TK_EOF) {
            if (n_ends)
                return perr(P, MK_ERR_FORMAT, open_line, "unexpected end of template: '%s' opened here is not closed "
                            "(expected '%s')", opener, ends[n_ends - 1]);
            break;
        }
        if (t->k == TK_TEXT) {
            jnode *x = mk_node(P, JN_TEXT, t->line);
            if (!x || !(x->lit = ja_alloc(P->a, sizeof(jv)))) { P->st = MK_ERR_NOMEM; return NULL; }
            x->lit->k = JV_STR;
            x->lit->u.s.p = t->p;
            x->lit->u.s.n = t->n;
            adv(P);
            if (!nl_push(P, &l, x)) return NULL;
        } else if (t->k == TK_VAR_BEGIN) {
            adv(P);
            jnode *x = mk_node(P, JN_OUT, t->line);
            if (!x || !(x->a = parse_tuple(P, true)) || !expect(P, TK_VAR_END, "'}}'")) return NULL;
            if (!nl_push(P, &l, x)) return NULL;
        } else if (t->k == TK_BLOCK_BEGIN) {
            adv(P);
            for (size_t k = 0; k < n_ends; k++)
                if (is_name(P, ends[k])) goto done;
            jnode *x = parse_statement(P);
            if (!x || !nl_push(P, &l, x)) return NULL;
        } else {
            char b[64];
            return perr(P, MK_ERR_FORMAT, t->line, "unexpected %s", tok_desc(t, b, sizeof b));
        }
    }
done:
    P->body_depth--;
    body->args = l.v;
    body->n_args = l.n;
    return body;
}

mk_status jinja_compile(const char *src, size_t len, const char *label, jinja_tpl **out) {
    *out = NULL;
    jinja_tpl *t = calloc(1, sizeof *t);
    if (!t) return mk_err(MK_ERR_NOMEM, "jinja: out of memory");
    t->label = mk_strdup(label ? label : "chat template");
    if (!t->label) { free(t); return MK_ERR_NOMEM; }
    /* normalize newlines; drop one trailing newline */
    char *s = ja_alloc(&t->arena, len + 1);
    if (!s) { jinja_free(t); return MK_ERR_NOMEM; }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n && s[n - 1] == '\n') n--;
    s[n] = 0;
    if (memchr(s, 0, n)) {
        mk_status st = mk_err(MK_ERR_FORMAT, "%s: template contains a NUL byte", t->label);
        jinja_free(t);
        return st;
    }
    lexer L = {.a = &t->arena, .label = t->label, .s = s, .n = n, .line = 1};
    mk_status st = lex_all(&L);
    if (st) { jinja_free(t); return st; }
    parser P = {.a = &t->arena, .label = t->label, .t = L.toks, .n = L.ntok};
    t->root = parse_body(&P, NULL, 0, NULL, 0);
    if (!t->root || P.st) {
        st = P.st ? P.st : MK_ERR_NOMEM;
        jinja_free(t);
        return st;
    }
    *out = t;
    return MK_OK;
}

void jinja_free(jinja_tpl *t) {
    if (!t) return;
    ja_free(&t->arena);
    free(t->label);
    free(t);
}
