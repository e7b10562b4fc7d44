/* moekit tokenize: encodes text with a model's tokenizer and prints ids (and token strings). */
#include "cli.h"
#include "moekit.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: moekit tokenize -m DIR|tokenizer.json|FILE.gguf [--ids] [--no-special] (TEXT | -f FILE | -)\n"
               "  Encodes TEXT (or FILE, or stdin with '-') and prints one line per token: id and token string.\n"
               "  --ids         print only the ids, space-separated, on one line\n"
               "  --no-special  do not add the post-processor's special tokens (e.g. BOS)\n");
}

/* Reads all of f into a malloc'ed buffer; NULL on failure. */
static char *slurp(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap);
    if (!p) return NULL;
    for (;;) {
        if (n == cap) {
            char *q = realloc(p, cap *= 2);
            if (!q) { free(p); return NULL; }
            p = q;
        }
        size_t r = fread(p + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    if (ferror(f)) { free(p); return NULL; }
    *len = n;
    return p;
}

/* Prints s[0..n) with control characters and backslashes escaped. */
static void print_escaped(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\') fputs("\\\\", stdout);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c < 0x20 || c == 0x7F) printf("\\x%02x", c);
        else putchar(c);
    }
}

int mk_cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *file = NULL, *text = NULL;
    bool ids_only = false, special = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (++i >= argc) { fprintf(stderr, "moekit tokenize: %s needs a value\n", a); return 2; }
            model = argv[i];
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (++i >= argc) { fprintf(stderr, "moekit tokenize: %s needs a value\n", a); return 2; }
            file = argv[i];
        } else if (!strcmp(a, "--ids")) ids_only = true;
        else if (!strcmp(a, "--no-special")) special = false;
        else if (!strcmp(a, "-")) file = "-";
        else if (a[0] == '-' && a[1] && !text) { fprintf(stderr, "moekit tokenize: unknown option '%s'\n", a); return 2; }
        else if (!text) text = a;
        else { fprintf(stderr, "moekit tokenize: more than one TEXT (quote it)\n"); return 2; }
    }
    if (!model) { fprintf(stderr, "moekit tokenize: -m DIR is required (moekit tokenize --help)\n"); return 2; }
    if (!text == !file) { fprintf(stderr, "moekit tokenize: give TEXT, -f FILE or - (moekit tokenize --help)\n"); return 2; }
    char *buf = NULL;
    size_t len;
    if (file) {
        FILE *f = strcmp(file, "-") ? fopen(file, "rb") : stdin;
        if (!f) { fprintf(stderr, "moekit: %s: cannot open\n", file); return 1; }
        buf = slurp(f, &len);
        if (f != stdin) fclose(f);
        if (!buf) { fprintf(stderr, "moekit: %s: cannot read\n", file); return 1; }
        text = buf;
    } else len = strlen(text);
    mk_tokenizer *tok;
    if (mk_tokenizer_load(model, &tok)) { free(buf); return mk_cli_fail(); }
    int32_t *ids;
    size_t n;
    if (mk_tokenizer_encode(tok, text, len, special, &ids, &n)) {
        free(buf);
        mk_tokenizer_free(tok);
        return mk_cli_fail();
    }
    for (size_t i = 0; i < n; i++) {
        if (ids_only) { printf(i ? " %d" : "%d", ids[i]); continue; }
        size_t tl = 0;
        const char *t = mk_tokenizer_id_to_token(tok, ids[i], &tl);
        printf("%d\t", ids[i]);
        if (t) print_escaped(t, tl);
        putchar('\n');
    }
    if (ids_only) putchar('\n');
    free(ids);
    free(buf);
    mk_tokenizer_free(tok);
    return 0;
}
