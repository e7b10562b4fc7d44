/* Float-weight matmul kernels: every SIMD variant the CPU has (and the portable one) against a
 * double-precision reference, on shapes with row, token and n_in tails, with bias and strides.
 * Bounds (stated, checked per output; e = |y - ref|, S = Σ_i |x_i · w_i|):
 *   scalar / avx2 / avx512 (weights expanded exactly to f32, f32 accumulation):
 *       e ≤ n_in · 2^-24 · S        (the worst-case bound of any f32 summation order)
 *   avx512bf16 (x rounded to bf16 once, vdpbf16ps, f32 accumulation):
 *       e ≤ (2^-8 + n_in · 2^-24) · S
 * The largest e / S seen is printed. Results must not depend on the thread count (bitwise). */
#include "mk_test.h"
#include "tensor/kernels.h"

#include <omp.h>
#include <stdint.h>

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

typedef struct shape { size_t n_out, n_in, n_tok; } shape;
static const shape shapes[] = {
    {37, 133, 1}, {64, 2048, 1}, {13, 259, 2}, {21, 100, 5}, {64, 512, 67}, {9, 70, 130}, {130, 96, 4}, {3, 31, 3},
    {50, 600, 13}, {300, 1030, 7}, /* k chunks of 256 with a ragged last one; row blocks past one panel block */
    {38, 256, 2},                  /* the BF16 GEMV's 32-multiple path with a row tail, two tokens */
};

static double worst[MK_ISA_COUNT + 1];

/* Runs one case and checks it; bf16dot selects the vdpbf16ps path (avx512 + BF16 only). */
static void run_case(const shape *s, mk_dtype dt, mk_isa isa, bool bf16dot, bool with_bias) {
    const size_t ldx = s->n_in + 3, ldy = s->n_out + 5;
    float *x = malloc(s->n_tok * ldx * sizeof(float)), *y = malloc(s->n_tok * ldy * sizeof(float));
    float *y1 = malloc(s->n_tok * ldy * sizeof(float)), *b = malloc(s->n_out * sizeof(float));
    float *wf = malloc(s->n_out * s->n_in * sizeof(float));
    void *w = malloc(s->n_out * s->n_in * 4);
    for (size_t i = 0; i < s->n_tok * ldx; i++) x[i] = frand();
    for (size_t i = 0; i < s->n_out; i++) b[i] = frand();
    for (size_t i = 0; i < s->n_out * s->n_in; i++) {
        float v = frand() * 0.5f;
        if (dt == MK_DT_F32) ((float *)w)[i] = v;
        else if (dt == MK_DT_BF16) ((uint16_t *)w)[i] = mk_f32_to_bf16(v);
        else ((uint16_t *)w)[i] = mk_f32_to_f16(v);
    }
    mk_to_f32(wf, w, dt, s->n_out * s->n_in);
    mk_kern_set_isa(isa);
    mk_kern_set_bf16_dot(bf16dot);
    const float *bias = with_bias ? b : NULL;
    for (size_t i = 0; i < s->n_tok * ldy; i++) y[i] = y1[i] = -7.0f;
    omp_set_num_threads(3);
    CHECK(mk_kern_matmul(y, ldy, x, ldx, s->n_tok, w, dt, s->n_out, s->n_in, bias), "dtype handled");
    omp_set_num_threads(1);
    mk_kern_matmul(y1, ldy, x, ldx, s->n_tok, w, dt, s->n_out, s->n_in, bias);
    const bool dot = bf16dot && dt == MK_DT_BF16 && s->n_tok >= 3;
    const double bound = (dot ? 1.0 / 256 : 0.0) + (double)s->n_in / 16777216.0;
    int bad = 0;
    for (size_t t = 0; t < s->n_tok; t++) {
        for (size_t o = 0; o < s->n_out; o++) {
            double ref = with_bias ? b[o] : 0, S = with_bias ? fabs(b[o]) : 0;
            for (size_t i = 0; i < s->n_in; i++) {
                double p = (double)x[t * ldx + i] * (double)wf[o * s->n_in + i];
                ref += p;
                S += fabs(p);
            }
            double e = fabs((double)y[t * ldy + o] - ref);
            if (S > 0 && e / S > worst[dot ? MK_ISA_COUNT : isa]) worst[dot ? MK_ISA_COUNT : isa] = e / S;
            if (!(e <= bound * S) && bad++ < 3)
                CHECK(e <= bound * S, "%s %s%s [%zu,%zu,%zu] t=%zu o=%zu: y=%.9g ref=%.9g e/S=%.3g bound %.3g",
                      mk_kern_isa_name(isa), mk_dtypes[dt].name, dot ? " bf16dot" : "", s->n_out, s->n_in, s->n_tok, t,
                      o, y[t * ldy + o], ref, e / S, bound);
            if (y[t * ldy + o] != y1[t * ldy + o] && bad++ < 3)
                CHECK(0, "%s: 3 threads and 1 thread differ at t=%zu o=%zu", mk_kern_isa_name(isa), t, o);
        }
        for (size_t o = s->n_out; o < ldy; o++)
            if (y[t * ldy + o] != -7.0f && bad++ < 3) CHECK(0, "wrote past n_out at t=%zu o=%zu", t, o);
    }
    free(x); free(y); free(y1); free(b); free(wf); free(w);
}

static void test_variants(void) {
    const mk_dtype dts[] = {MK_DT_F32, MK_DT_BF16, MK_DT_F16};
    const mk_isa best = mk_kern_isa_detect();
    for (int isa = 0; isa <= (int)best; isa++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (size_t d = 0; d < 3; d++)
                for (int bias = 0; bias < 2; bias++) run_case(&shapes[s], dts[d], (mk_isa)isa, false, bias);
    for (int isa = 0; isa <= (int)best; isa++)
        printf("  %-10s max e/S = %.3g (bound n_in·2^-24·S)\n", mk_kern_isa_name((mk_isa)isa), worst[isa]);
}

static void test_bf16_dot(void) {
    if (!mk_kern_has_bf16_dot()) {
        printf("  (no AVX512-BF16 on this CPU: vdpbf16ps path not tested)\n");
        return;
    }
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int bias = 0; bias < 2; bias++) run_case(&shapes[s], MK_DT_BF16, MK_ISA_AVX512, true, bias);
    printf("  %-10s max e/S = %.3g (bound (2^-8 + n_in·2^-24)·S)\n", "avx512bf16", worst[MK_ISA_COUNT]);
}

/* The public entry point routes float weights to the kernels and gives the same answer. */
static void test_matmul_api(void) {
    mk_kern_set_isa(mk_kern_isa_detect());
    mk_kern_set_bf16_dot(false);
    float x[2 * 40], w[7 * 40], y[2 * 7], y2[2 * 7];
    for (size_t i = 0; i < 80; i++) x[i] = frand();
    for (size_t i = 0; i < 280; i++) w[i] = frand();
    mk_tensor W = {.data = w, .dtype = MK_DT_F32, .ndim = 2, .shape = {7, 40}, .nbytes = sizeof w};
    mk_matmul(y, 7, x, 40, 2, &W, NULL);
    mk_kern_matmul(y2, 7, x, 40, 2, w, MK_DT_F32, 7, 40, NULL);
    CHECK(!memcmp(y, y2, sizeof y), "mk_matmul equals mk_kern_matmul");
    CHECK(!mk_kern_matmul(y, 7, x, 40, 2, w, MK_DT_I32, 7, 40, NULL), "non-float dtype is declined");
    printf("  dispatch: best %s, bf16 dot %s\n", mk_kern_isa_name(mk_kern_isa_detect()), mk_kern_has_bf16_dot() ? "yes" : "no");
}

/* Team products inside one parallel region equal the stand-alone driver's, bit for bit. */
static void test_team(void) {
    const size_t n_out = 75, n_in = 300, n_tok = 9;
    float *x = malloc(n_tok * n_in * sizeof(float)), *y1 = malloc(2 * n_tok * n_out * sizeof(float));
    float *y2 = malloc(2 * n_tok * n_out * sizeof(float));
    uint16_t *w = malloc(2 * n_out * n_in * sizeof(uint16_t));
    for (size_t i = 0; i < n_tok * n_in; i++) x[i] = frand();
    for (size_t i = 0; i < 2 * n_out * n_in; i++) w[i] = mk_f32_to_bf16(frand());
    for (int dot = 0; dot < 2; dot++) {
        mk_kern_set_isa(mk_kern_isa_detect());
        mk_kern_set_bf16_dot(dot);
        for (int m = 0; m < 2; m++)
            mk_kern_matmul(y1 + m * n_tok * n_out, n_out, x, n_in, n_tok, w + m * n_out * n_in, MK_DT_BF16, n_out, n_in, NULL);
        omp_set_num_threads(3);
        #pragma omp parallel
        {
            for (int m = 0; m < 2; m++)
                mk_matmul_team(y2 + m * n_tok * n_out, n_out, x, n_in, n_tok, w + m * n_out * n_in, MK_DT_BF16, n_out, n_in, NULL);
        }
        CHECK(!memcmp(y1, y2, 2 * n_tok * n_out * sizeof(float)), "team == driver (bf16 dot %d)", dot);
    }
    mk_kern_set_bf16_dot(false);
    /* strided F32 rows (a head's slice of a KV cache): same as the rows copied out contiguously */
    const size_t ldw = n_in + 37;
    float *ws = malloc(n_out * ldw * sizeof(float)), *wc = malloc(n_out * n_in * sizeof(float));
    for (size_t i = 0; i < n_out * ldw; i++) ws[i] = frand();
    for (size_t r = 0; r < n_out; r++) memcpy(wc + r * n_in, ws + r * ldw + 5, n_in * sizeof(float));
    for (size_t tok = 1; tok <= n_tok; tok += n_tok - 1) {
        mk_kern_matmul(y1, n_out, x, n_in, tok, wc, MK_DT_F32, n_out, n_in, NULL);
        #pragma omp parallel
        mk_matmul_team_f32_strided(y2, n_out, x, n_in, tok, ws + 5, ldw, n_out, n_in);
        CHECK(!memcmp(y1, y2, tok * n_out * sizeof(float)), "strided team == contiguous (%zu tokens)", tok);
    }
    free(ws); free(wc);
    free(x); free(y1); free(y2); free(w);
}

int main(void) {
    RUN(test_team);
    RUN(test_variants);
    RUN(test_bf16_dot);
    RUN(test_matmul_api);
    return TEST_SUMMARY("test_kernels");
}
