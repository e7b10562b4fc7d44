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

/* the BF16 decode GEMV (kernels_tmpl.h): 16 weights per 32-byte load; x de-interleaved by a
 * shuffle (2 from each source per 128-bit lane) and a 64-bit permute that orders them */
#define VI __m256i
#define VLOADI(p) _mm256_loadu_si256((const __m256i *)(p))
#define VBF16_EVEN(v) _mm256_castsi256_ps(_mm256_slli_epi32((v), 16))
#define VBF16_ODD(v) _mm256_castsi256_ps(_mm256_and_si256((v), _mm256_set1_epi32((int)0xffff0000u)))
#define VADD(a, b) _mm256_add_ps((a), (b))
#define VDEINTERLEAVE(x, d)                                                                                   \
    do {                                                                                                      \
        const __m256 a_ = _mm256_loadu_ps(x), b_ = _mm256_loadu_ps((x) + 8);                                  \
        const __m256 e_ = _mm256_shuffle_ps(a_, b_, 0x88), o_ = _mm256_shuffle_ps(a_, b_, 0xDD);              \
        _mm256_storeu_ps((d), _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e_), 0xD8)));           \
        _mm256_storeu_ps((d) + 8, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o_), 0xD8)));       \
    } while (0)
/* the BF16 GEMV's prefetch: 8 rows ahead (4 with AVX-512). 2048-wide rows are 4 KB apart, and on
 * Zen 3 (2 threads, 2048 × 2048 matrices, medians of alternating rounds against a plain read of
 * the same buffer) 8 rows ahead streamed at 0.90-0.94 of the read, 2 or 16 at 0.88-0.91, 4 at
 * 0.85; one row at a time with a prefetch 4-16 KB ahead 0.73-0.77, eight at a time 0.78-0.88 */
#define PF_ROWS 8
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
