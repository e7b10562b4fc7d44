/* A small Jinja interpreter for chat templates (internal to moekit).
 *
 * jinja_parse.c: lexer (with trim_blocks, lstrip_blocks and -/+ whitespace control, as transformers
 * configures Jinja) and recursive-descent parser into an AST of jnode.
 * jinja_eval.c: values (jv), evaluation, filters, tests, methods, output.
 *
 * The subset (everything the chat templates of ~55 model families use; see tests/test_chat_template.c):
 *   tags     {{ }} {% %} {# #}, '-' and '+' whitespace control; if/elif/else, for (tuple targets,
 *            'if' filter, else, loop.index/index0/revindex/revindex0/first/last/length/previtem/
 *            nextitem/cycle), break/continue, set (names, tuples, ns.attr), block set, macro (defaults,
 *            keyword arguments, recursion), filter blocks, generation (transformers' marker).
 *   exprs    literals (str with Python escapes, int, float, true/false/none, list, tuple, dict), + - * /
 *            // % ** ~, == != < <= > >= (chained), in / not in, and/or/not, a if c else b, attribute and
 *            item access, slices [a:b:c] by code point, calls.
 *   globals  range, namespace, dict, raise_exception, strftime_now.
 *   filters  abs attr capitalize center count d default dictsort e escape first float indent int items join
 *            last length list lower map max min reject rejectattr replace reverse round safe select
 *            selectattr sort string sum title tojson (transformers': ensure_ascii/indent/separators/
 *            sort_keys) trim truncate unique upper wordcount.
 *   tests    defined undefined none boolean true false integer float number string mapping iterable
 *            sequence callable sameas equalto eq ne lt le gt ge in odd even divisibleby lower upper.
 *   methods  str: startswith endswith strip lstrip rstrip split replace upper lower title capitalize find
 *            rfind index rindex count join isdigit isalpha isspace isalnum isupper islower;
 *            dict: get items keys values copy; list: index count; loop.cycle.
 * Not interpreted (MK_ERR_UNSUPPORTED naming the construct and line): include/import/extends/block,
 * call blocks, recursive loops, '%' string formatting, str.format, cycler/joiner/lipsum, *args, other
 * filters. Values that cannot be modified in transformers' sandbox (list.append, ...) also fail.
 *
 * Memory: a compiled template owns one arena holding its AST and literals; each render allocates its
 * values in a render arena freed at the end, so values are never freed one by one. */
#ifndef MK_JINJA_H
#define MK_JINJA_H

#include "base/base.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- arena ---- */
typedef struct jarena_blk jarena_blk;
typedef struct jarena {
    jarena_blk *head;
} jarena;
void *ja_alloc(jarena *a, size_t n); /* zeroed; NULL (and MK_ERR_NOMEM recorded) on failure */
char *ja_strndup(jarena *a, const char *s, size_t n);
void ja_free(jarena *a);

/* ---- values ---- */
typedef enum jv_kind {
    JV_UNDEF, /* s: the name that was undefined (for messages) */
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,   /* UTF-8 bytes, not NUL-terminated in general */
    JV_LIST,
    JV_TUPLE,
    JV_DICT,  /* insertion-ordered; keys are JV_STR (or other scalars from dict literals) */
    JV_NS,    /* namespace(): a dict whose attributes can be set */
    JV_LOOP,  /* the loop variable of a for loop */
    JV_FUNC,  /* a global function (range, namespace, raise_exception, ...) */
    JV_METHOD,/* a bound method: self.name */
    JV_MACRO,
    JV_GEN    /* a one-shot iterator (what map/select/unique/reverse... return in Jinja): iterating
               * consumes it; it is always true, has no len() and is not JSON serializable */
} jv_kind;

typedef struct jnode jnode;
typedef struct jv jv;
struct jv {
    jv_kind k;
    bool markup; /* JV_STR: a Markup string (from |safe or |escape): '+' with a plain string escapes it */
    union {
        bool b;
        int64_t i;
        double f;
        struct { const char *p; size_t n; } s;
        struct { jv **v; size_t n; } l;
        struct { jv **keys; jv **vals; size_t n, cap; } d;
        struct { size_t i, n; jv *items; } loop;
        struct { int id; } fn;
        struct { jv *self; const char *name; } m;
        struct { const jnode *node; void *scope; } mac;
    } u;
};

/* ---- AST ---- */
typedef enum jnode_kind {
    /* expressions */
    JN_LIT,    /* lit */
    JN_NAME,   /* name */
    JN_ATTR,   /* a.name */
    JN_ITEM,   /* a[b] */
    JN_SLICE,  /* a[b:c:d] (NULL parts omitted) */
    JN_CALL,   /* a(args..., kw=kwargs...) */
    JN_FILTER, /* a | name(args..., kw=...) */
    JN_TEST,   /* a is [not] name(args...); op = 1 if negated */
    JN_NOT,
    JN_NEG,
    JN_POS,
    JN_BIN,    /* a op b: op is one of the JOP_* arithmetic/concat operators */
    JN_AND,
    JN_OR,
    JN_CMP,    /* a op b, chained comparisons are nested JN_AND-like: see parser */
    JN_COND,   /* b if a else c */
    JN_LIST,   /* [args] */
    JN_TUPLE,  /* (args) */
    JN_DICT,   /* {args[2i]: args[2i+1]} */
    /* statements */
    JN_BODY,   /* args: statements */
    JN_TEXT,   /* lit: string */
    JN_OUT,    /* {{ a }} */
    JN_IF,     /* if a: b (JN_BODY) else c (JN_BODY or NULL) */
    JN_FOR,    /* for names in a [if b]: c else d */
    JN_SET,    /* set names = a; or set name.attr = a (attr set: op = 1, name = object, kw[0] = attr) */
    JN_SETBLOCK,/* set name: body c */
    JN_MACRO,  /* macro name(kw params, defaults in args (NULL = required)): body c */
    JN_BREAK,
    JN_CONTINUE,
    JN_FILTERBLOCK /* filter a (a JN_FILTER chain whose innermost target is JN_NAME " body"): body c */
} jnode_kind;

enum {
    JOP_ADD = 1, JOP_SUB, JOP_MUL, JOP_DIV, JOP_FLOORDIV, JOP_MOD, JOP_POW, JOP_CONCAT,
    JOP_EQ, JOP_NE, JOP_LT, JOP_LE, JOP_GT, JOP_GE, JOP_IN, JOP_NOTIN
};

struct jnode {
    jnode_kind kind;
    int op;
    int line;
    const char *name;     /* NUL-terminated (arena) */
    jv *lit;
    jnode *a, *b, *c, *d;
    jnode **args;         /* positional arguments, list items, statements */
    size_t n_args;
    const char **kw;      /* keyword-argument names, for-loop / set target names, macro params */
    jnode **kwv;          /* keyword-argument values */
    size_t n_kw;
};

typedef struct jinja_tpl {
    jarena arena;
    jnode *root; /* JN_BODY */
    char *label; /* for error messages */
} jinja_tpl;

/* Compiles source (len bytes). On failure returns MK_ERR_FORMAT (syntax) or MK_ERR_UNSUPPORTED with a
 * message "<label>: line N: ...". */
mk_status jinja_compile(const char *src, size_t len, const char *label, jinja_tpl **out);
/* Renders with the members of the JSON object vars as variables (borrowed; NULL = none). *out is a
 * malloc'd NUL-terminated string of *out_len bytes. */
mk_status jinja_render(const jinja_tpl *t, json_t *vars, char **out, size_t *out_len);
void jinja_free(jinja_tpl *t);

/* Shared by parser and evaluator. */
jv *jv_new_str(jarena *a, const char *p, size_t n);
/* Whether the evaluator knows a filter / test of this name (unknown ones are rejected at compile time,
 * as Jinja does). */
bool jinja_has_filter(const char *name);
bool jinja_has_test(const char *name);

#endif
