/* AVX2 + FMA + F16C variant of the float-weight matmul; compiled for that target whatever the
 * build's -march, and called only when cpuid says the CPU has it (kernels.c). */
#include "kernels.h"
#include "quant.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
/* gcc: a target pragma for the whole file; clang ignores it and takes the same features as an
 * attribute on every function (the intrinsics need them whatever the build's -march) */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#include <immintrin.h>

static inline __attribute__((always_inline)) float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#define V __m256
#define KV 8
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps((p), (v))
#define VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define VRED(v) hsum256(v)
#define VLOAD_BF16(p) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
#define VLOAD_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define RM 6
#define RN 2
#define FN_ROWS mk_kern_rows_avx2
#define VBCAST(p) _mm256_broadcast_ss(p)
#define PACKED_GEMM
#define PACKED_MIN_TOK 4
#define FN_GEMM mk_kern_gemm_avx2

/* Decode with BF16 weights (the GEMV): a 32-byte load holds 16 weights as 8 words; the even
 * elements become f32 with a shift, the odd ones with a mask (2 instructions for 16 weights, where
 * widening 8 at a time costs a shuffle and a shift per 8), and meet x de-interleaved once per call
 * into xd (even then odd elements of each 16-block). The next rows are prefetched a block ahead,
 * as in the AVX-512 variant. Exact: the same f32 products as the generic path, summed in another
 * order. n % 32 == 0. */
#define GEMV_BF16_FAST gemv_bf16_fast
#define PF_ROWS 4
static void gemv_bf16_fast(const mk_kjob *j, size_t r0, size_t r1, float *xd) {
    const size_t n = j->n_in;
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    for (size_t t = 0; t < j->n_tok; t++) {
        const float *x = j->x + t * j->ldx;
        float *d = xd + t * n;
        for (size_t k = 0; k < n; k += 16) {
            const __m256 a = _mm256_loadu_ps(x + k), b = _mm256_loadu_ps(x + k + 8);
            /* shuffle_ps takes 2 from each source per 128-bit lane; the 64-bit permute orders them */
            const __m256 e = _mm256_shuffle_ps(a, b, 0x88), o = _mm256_shuffle_ps(a, b, 0xDD);
            _mm256_storeu_ps(d + k, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8)));
            _mm256_storeu_ps(d + k + 8, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xD8)));
        }
    }
    const uint16_t *w = j->w;
    for (size_t r = r0; r < r1; r += 4) {
        const int rm = (int)MK_MIN((size_t)4, r1 - r);
        for (size_t t = 0; t < j->n_tok; t++) {
            const float *d = xd + t * n;
            __m256 acc[4][2];
            for (int i = 0; i < 4; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
            if (rm == 4) {
                for (size_t k = 0; k < n; k += 16) {
                    const __m256 xe = _mm256_loadu_ps(d + k), xo = _mm256_loadu_ps(d + k + 8);
#pragma GCC unroll 4
                    for (int i = 0; i < 4; i++) {
                        if ((k & 31) == 0) _mm_prefetch((const char *)(w + (r + PF_ROWS + (size_t)i) * n + k), _MM_HINT_T0);
                        const __m256i v = _mm256_loadu_si256((const __m256i *)(w + (r + (size_t)i) * n + k));
                        acc[i][0] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), xe, acc[i][0]);
                        acc[i][1] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v, hi)), xo, acc[i][1]);
                    }
                }
            } else {
                for (int i = 0; i < rm; i++)
                    for (size_t k = 0; k < n; k += 16) {
                        const __m256i v = _mm256_loadu_si256((const __m256i *)(w + (r + (size_t)i) * n + k));
                        acc[i][0] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), _mm256_loadu_ps(d + k), acc[i][0]);
                        acc[i][1] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v, hi)), _mm256_loadu_ps(d + k + 8), acc[i][1]);
                    }
            }
            for (int i = 0; i < rm; i++) {
                const float s = hsum256(_mm256_add_ps(acc[i][0], acc[i][1]));
                j->y[t * j->ldy + r + (size_t)i] = j->bias ? s + j->bias[r + (size_t)i] : s;
            }
        }
    }
}

#include "kernels_tmpl.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
void mk_kern_rows_avx2(const mk_kjob *j, size_t r0, size_t r1, float *wbuf) { mk_kern_rows_scalar(j, r0, r1, wbuf); }
void mk_kern_gemm_avx2(const mk_kjob *j, size_t r0, size_t r1, float *wbuf) { mk_kern_rows_scalar(j, r0, r1, wbuf); }
#endif
