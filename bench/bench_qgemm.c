/* The integer prefill GEMMs in isolation, one thread: GMAC/s (multiply-adds per second) of
 * mk_qgemm_avx2 and, where the CPU has AVX-512 VNNI, mk_qgemm_avx512vnni, for Q8_0, Q4_K and Q6_K,
 * on one expert-sized product (ROWS weight rows × IN inputs, TOK tokens: an expert's share of a
 * 512-token prompt in an OLMoE-shaped model), packing included. The variants alternate, best of
 * REPS rounds each. Also the f32 GEMM on the same weights dequantized (MOEKIT_QGEMM=0's path).
 * Build and run: bash bench/bench_qgemm.sh */
#include "tensor/kernels.h"
#include "tensor/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

typedef bool (*gemm_fn)(mk_dtype, size_t, const void *, size_t, size_t, const void *, size_t, size_t, float *, size_t, const float *, void *);

int main(int argc, char **argv) {
    const size_t ROWS = argc > 1 ? strtoul(argv[1], NULL, 10) : 256, IN = argc > 2 ? strtoul(argv[2], NULL, 10) : 2048;
    const size_t TOK = argc > 3 ? strtoul(argv[3], NULL, 10) : 64;
    const int REPS = argc > 4 ? atoi(argv[4]) : 20;
    if (ROWS == 0 || IN == 0 || IN % 256 || TOK == 0 || REPS <= 0) {
        fprintf(stderr, "usage: bench_qgemm [ROWS [IN (a multiple of 256) [TOK [REPS]]]]\n");
        return 2;
    }
    float *w = malloc(ROWS * IN * sizeof(float)), *x = malloc(TOK * IN * sizeof(float)), *y = malloc(TOK * ROWS * sizeof(float));
    uint8_t *q = malloc(ROWS * IN * 2), *xq = malloc(TOK * IN * 3), *scr = malloc(1 << 20);
    if (!w || !x || !y || !q || !xq || !scr) return 1;
    for (size_t i = 0; i < ROWS * IN; i++) w[i] = frand() * 0.05f;
    for (size_t i = 0; i < TOK * IN; i++) x[i] = frand();
    const bool vnni = mk_kern_has_vnni();
    printf("| type | rows × in × tokens | avx2 GMAC/s | avx512 vnni GMAC/s | vnni / avx2 | f32 GEMM (dequantized) GMAC/s |\n");
    printf("| ---- | ---- | ---: | ---: | ---: | ---: |\n");
    const mk_dtype dts[] = {MK_DT_Q8_0, MK_DT_Q4_K, MK_DT_Q6_K, MK_DT_MXFP4};
    for (int k = 0; k < 4; k++) {
        const mk_dtype dt = dts[k], vt = mk_vec_dot_type(dt);
        /* activation rows as the drivers make them: Q8_0's carry their block sums (VNNI), Q6_K's their
         * values + 128 (AVX2); each GEMM reads what it needs */
        const size_t ab0 = mk_dtype_row_bytes(vt, IN), rb = mk_dtype_row_bytes(dt, IN);
        const size_t ab = ab0 + (dt == MK_DT_Q8_0 ? 4 * IN / 32 : 0) + (dt == MK_DT_Q6_K ? IN : 0);
        for (size_t r = 0; r < ROWS; r++) mk_quantize_row(dt, w + r * IN, q + r * rb, IN);
        for (size_t t = 0; t < TOK; t++) {
            mk_quantize_row(vt, x + t * IN, xq + t * ab, IN);
            if (dt == MK_DT_Q8_0) mk_q8_0_row_sums(xq + t * ab, IN, xq + t * ab + ab0);
            if (dt == MK_DT_Q6_K) mk_q8_K_row_unsigned(xq + t * ab, IN, xq + t * ab + ab0);
        }
        const gemm_fn fns[2] = {mk_qgemm_avx2, mk_qgemm_avx512vnni};
        double best[3] = {1e30, 1e30, 1e30};
        for (int rep = 0; rep < REPS; rep++)
            for (int v = 0; v < 3; v++) {
                if (v == 1 && (!vnni || dt == MK_DT_MXFP4)) continue; /* MXFP4 has the AVX2 GEMM only */
                const double t0 = now();
                if (v < 2) fns[v](dt, IN, q, rb, ROWS, xq, ab, TOK, y, ROWS, NULL, scr);
                else {
                    mk_kern_set_qgemm(false);
                    #pragma omp parallel num_threads(1)
                    mk_matmul_team(y, ROWS, x, IN, TOK, q, dt, ROWS, IN, NULL);
                    mk_kern_set_qgemm(true);
                }
                const double dt_s = now() - t0;
                if (dt_s < best[v]) best[v] = dt_s;
            }
        const double macs = (double)ROWS * (double)IN * (double)TOK;
        char vs[32] = "—", rs[32] = "—";
        if (vnni && dt != MK_DT_MXFP4) {
            snprintf(vs, sizeof vs, "%.1f", macs / best[1] * 1e-9);
            snprintf(rs, sizeof rs, "%.2f×", best[0] / best[1]);
        }
        printf("| %s | %zu × %zu × %zu | %.1f | %s | %s | %.1f |\n", mk_dtypes[dt].name, ROWS, IN, TOK, macs / best[0] * 1e-9, vs, rs,
               macs / best[2] * 1e-9);
    }
    free(w), free(x), free(y), free(q), free(xq), free(scr);
    return 0;
}
