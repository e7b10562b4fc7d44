/* AVX-512 (F/BW/VL/DQ) variant of the float-weight matmul; compiled for that target whatever the
 * build's -march, and called only when cpuid says the CPU has it (kernels.c). */
#include "kernels.h"
#include "quant.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
/* gcc: a target pragma for the whole file; clang ignores it and takes the same features as an
 * attribute on every function (the intrinsics need them whatever the build's -march) */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
#endif
#include <immintrin.h>

#define V __m512
#define KV 16
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps((p), (v))
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define VRED(v) _mm512_reduce_add_ps(v)
#define VLOAD_BF16(p) \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#define VLOAD_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define RM 8
#define RN 3
#define FN_ROWS mk_kern_rows_avx512
#define VBCAST(p) _mm512_set1_ps(*(p))
#define PACKED_GEMM
#define PACKED_MIN_TOK 4
#define FN_GEMM mk_kern_gemm_avx512
#ifndef MV
#define MV 2 /* 2 × 16 rows × 8 tokens: 16 accumulators (pp512 BF16 within noise of 2×12 and 4×6) */
#endif
#ifndef NR
#define NR 8
#endif

/* the BF16 decode GEMV (kernels_tmpl.h): 32 weights per 64-byte load, x de-interleaved by two
 * two-source permutes */
#define VI __m512i
#define VLOADI(p) _mm512_loadu_si512((const void *)(p))
#define VBF16_EVEN(v) _mm512_castsi512_ps(_mm512_slli_epi32((v), 16))
#define VBF16_ODD(v) _mm512_castsi512_ps(_mm512_and_si512((v), _mm512_set1_epi32((int)0xffff0000u)))
#define VADD(a, b) _mm512_add_ps((a), (b))
#define VDEINTERLEAVE(x, d)                                                                                                  \
    do {                                                                                                                     \
        const __m512 a_ = _mm512_loadu_ps(x), b_ = _mm512_loadu_ps((x) + 16);                                                \
        _mm512_storeu_ps((d), _mm512_permutex2var_ps(a_, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), b_)); \
        _mm512_storeu_ps((d) + 16, _mm512_permutex2var_ps(a_, _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), b_)); \
    } while (0)

#include "kernels_tmpl.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
void mk_kern_rows_avx512(const mk_kjob *j, size_t r0, size_t r1, float *wbuf) { mk_kern_rows_scalar(j, r0, r1, wbuf); }
void mk_kern_gemm_avx512(const mk_kjob *j, size_t r0, size_t r1, float *wbuf) { mk_kern_rows_scalar(j, r0, r1, wbuf); }
#endif
