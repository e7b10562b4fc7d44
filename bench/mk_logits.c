/* mk_logits: the logits moekit computes for a token-id file, every position, one prefill, written
 * as raw little-endian f32 (positions × vocab) for comparison scripts (bench/real_shapes.sh). A
 * development tool built against libmoekit.a; not part of moekit.
 *     mk_logits MODEL IDS OUT   (prints "T V" on stdout) */
#include "base/base.h"
#include "moekit/model.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: mk_logits MODEL IDS OUT\n");
        return 2;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    mk_model *m = NULL;
    mk_ctx *c = NULL;
    if (mk_read_ids_file(argv[2], &ids, &n) || mk_model_load(&m, argv[1]) || mk_ctx_new(&c, m, n, 0)) {
        fprintf(stderr, "mk_logits: %s\n", mk_last_error());
        return 1;
    }
    const size_t V = (size_t)mk_model_get_info(m)->vocab;
    float *lg = malloc(n * V * sizeof *lg);
    if (!lg || mk_ctx_forward(c, ids, n, MK_LOGITS_ALL, lg)) {
        fprintf(stderr, "mk_logits: %s\n", lg ? mk_last_error() : "out of memory");
        return 1;
    }
    FILE *f = fopen(argv[3], "wb");
    if (!f || fwrite(lg, sizeof *lg, n * V, f) != n * V || fclose(f)) {
        fprintf(stderr, "mk_logits: cannot write %s\n", argv[3]);
        return 1;
    }
    printf("%zu %zu\n", n, V);
    free(lg);
    free(ids);
    mk_ctx_free(c);
    mk_model_free(m);
    return 0;
}
