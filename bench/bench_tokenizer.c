/* Tokenizer benchmark (moekit side): load time of a tokenizer.json and single-thread encode
 * throughput over files, one encode call per file (MODE doc) or per line, newline included
 * (MODE line). Times are CPU time of the process (the machine may be shared). Prints one line
 * per measure and a checksum of all ids (FNV-1a) to compare with bench_tokenizer_hf.py.
 * usage: bench_tokenizer TOKENIZER_JSON LOAD_REPEATS doc|line FILE... */
#include "moekit/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    *len = fread(p, 1, (size_t)n, f);
    fclose(f);
    return p;
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: %s TOKENIZER_JSON LOAD_REPEATS doc|line FILE...\n", argv[0]); return 2; }
    int reps = atoi(argv[2]);
    int lines = !strcmp(argv[3], "line");
    mk_tokenizer *tok = NULL;
    double best = 1e9;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        if (mk_tokenizer_load(argv[1], &tok)) { fprintf(stderr, "%s\n", mk_last_error()); return 1; }
        double t = now() - t0;
        if (t < best) best = t;
        if (r + 1 < reps) mk_tokenizer_free(tok);
    }
    printf("moekit load_s %.3f\n", best);
    int nf = argc - 4;
    char **docs = malloc(nf * sizeof *docs);
    size_t *lens = malloc(nf * sizeof *lens), bytes = 0;
    for (int i = 0; i < nf; i++) {
        docs[i] = slurp(argv[4 + i], &lens[i]);
        if (!docs[i]) { fprintf(stderr, "cannot read %s\n", argv[4 + i]); return 1; }
        bytes += lens[i];
    }
    for (int pass = 0; pass < 2; pass++) { /* pass 0: cold cache, pass 1: warm */
        uint64_t h = 1469598103934665603ull;
        size_t ntok = 0;
        double t0 = now(), tcheck = 0;
        for (int i = 0; i < nf; i++) {
            for (size_t a = 0; a < lens[i];) {
                size_t e = lens[i];
                if (lines) {
                    const char *nl = memchr(docs[i] + a, '\n', lens[i] - a);
                    if (nl) e = (size_t)(nl - docs[i]) + 1;
                }
                int32_t *ids;
                size_t n;
                if (mk_tokenizer_encode(tok, docs[i] + a, e - a, false, &ids, &n)) {
                    fprintf(stderr, "%s\n", mk_last_error());
                    return 1;
                }
                double c0 = now(); /* checksum outside the timed part */
                for (size_t k = 0; k < n; k++) {
                    uint32_t v = (uint32_t)ids[k];
                    for (int b = 0; b < 4; b++) { h ^= (v >> (8 * b)) & 0xFF; h *= 1099511628211ull; }
                }
                tcheck += now() - c0;
                ntok += n;
                free(ids);
                a = e;
            }
        }
        double t = now() - t0 - tcheck;
        printf("moekit encode_%s_%s bytes %zu tokens %zu seconds %.3f MB/s %.2f checksum %016llx\n", argv[3],
               pass ? "warm" : "cold", bytes, ntok, t, bytes / t / 1e6, (unsigned long long)h);
    }
    mk_tokenizer_free(tok);
    for (int i = 0; i < nf; i++) free(docs[i]);
    free(docs);
    free(lens);
    return 0;
}
