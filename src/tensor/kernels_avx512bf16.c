/* AVX512-BF16 variant for BF16 weights and n_tok ≥ 3: activations rounded to bf16 once per call
 * (j->xb), then vdpbf16ps on raw bf16 weight rows straight from the mapping: 32 multiply-adds per
 * instruction (twice the f32 FMA rate), f32 accumulation. Called only when cpuid has AVX512-BF16. */
#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
/* gcc: a target pragma for the whole file; clang ignores it and takes the same features as an
 * attribute on every function (the intrinsics need them whatever the build's -march) */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c")
#endif
#include <immintrin.h>

#define AI static inline __attribute__((always_inline))
#define RM 4
#define RN 4

/* rm bf16 rows of w (stride n) × rn bf16 rows of xb (stride n) → y[t·ldy + r] (+ bias[r]). */
AI void tile(const uint16_t *w, const uint16_t *xb, float *y, size_t ldy, size_t n, const float *bias, const int rm,
             const int rn) {
    __m512 acc[RM][RN];
#pragma GCC unroll 8
    for (int r = 0; r < rm; r++)
#pragma GCC unroll 8
        for (int t = 0; t < rn; t++) acc[r][t] = _mm512_setzero_ps();
    size_t k = 0;
    for (; k + 32 <= n; k += 32) {
        __m512i wv[RM];
#pragma GCC unroll 8
        for (int r = 0; r < rm; r++) wv[r] = _mm512_loadu_si512((const void *)(w + (size_t)r * n + k));
#pragma GCC unroll 8
        for (int t = 0; t < rn; t++) {
            __m512bh xv = (__m512bh)_mm512_loadu_si512((const void *)(xb + (size_t)t * n + k));
#pragma GCC unroll 8
            for (int r = 0; r < rm; r++) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], (__m512bh)wv[r], xv);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < rm; r++)
#pragma GCC unroll 8
        for (int t = 0; t < rn; t++) {
            float s = _mm512_reduce_add_ps(acc[r][t]);
            for (size_t kk = k; kk < n; kk++)
                s += mk_bf16_to_f32(mk_kern_ld16(w, (size_t)r * n + kk)) * mk_bf16_to_f32(xb[(size_t)t * n + kk]);
            y[(size_t)t * ldy + r] = bias ? s + bias[r] : s;
        }
}

void mk_kern_rows_avx512bf16(const mk_kjob *j, size_t r0, size_t r1, float *wbuf) {
    (void)wbuf;
    const size_t n = j->n_in, ldy = j->ldy;
    const uint16_t *w = j->w, *xb = j->xb;
    const size_t RB = mk_kern_block_rows(n, sizeof(uint16_t)), T = j->n_tok;
    for (size_t rb0 = r0; rb0 < r1; rb0 += RB) {
        const size_t rb1 = MK_MIN(r1, rb0 + RB);
        size_t t = 0;
        for (; t + RN <= T; t += RN) {
            size_t r = rb0;
            for (; r + RM <= rb1; r += RM) tile(w + r * n, xb + t * n, j->y + t * ldy + r, ldy, n, j->bias ? j->bias + r : NULL, RM, RN);
            for (; r < rb1; r++) tile(w + r * n, xb + t * n, j->y + t * ldy + r, ldy, n, j->bias ? j->bias + r : NULL, 1, RN);
        }
        for (; t < T; t++) {
            size_t r = rb0;
            for (; r + RM <= rb1; r += RM) tile(w + r * n, xb + t * n, j->y + t * ldy + r, ldy, n, j->bias ? j->bias + r : NULL, RM, 1);
            for (; r < rb1; r++) tile(w + r * n, xb + t * n, j->y + t * ldy + r, ldy, n, j->bias ? j->bias + r : NULL, 1, 1);
        }
    }
}

void mk_kern_to_bf16_avx512bf16(uint16_t *dst, const float *src, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
    for (; i < n; i++) dst[i] = mk_f32_to_bf16(src[i]);
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
void mk_kern_rows_avx512bf16(const mk_kjob *j, size_t r0, size_t r1, float *wbuf) { mk_kern_rows_scalar(j, r0, r1, wbuf); }
void mk_kern_to_bf16_avx512bf16(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = mk_f32_to_bf16(src[i]);
}
#endif
