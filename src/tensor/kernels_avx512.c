/* AVX-512 (F/BW/VL/DQ) variant of the float-weight matmul; compiled for that target whatever the
 * build's -march, and called only when cpuid says the CPU has it (kernels.c). */
#include "kernels.h"

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

/* Decode GEMV for BF16 rows with fewer instructions per weight byte (more of the core's window
 * left for outstanding loads, which is what single-core streaming speed depends on): 32 bf16
 * weights are one 64-byte load; the even elements become f32 with a shift, the odd ones with a
 * mask, and meet x de-interleaved once per call into xd (even/odd halves of each 32-block).
 * Exact: the same f32 products as the generic path, summed in another order. n % 32 == 0. */
#define GEMV_BF16_FAST gemv_bf16_fast
/* software prefetch of the next 4-row block (16 KB ahead for d_model 2048): +15% single-core
 * streaming on a 512 MB matrix (19.5 → 22-23.6 GB/s); 8 or 16 rows ahead was less */
#define PF_ROWS 4
static void gemv_bf16_fast(const mk_kjob *j, size_t r0, size_t r1, float *xd) {
    const size_t n = j->n_in;
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
    const __m512i idx_e = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i idx_o = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (size_t t = 0; t < j->n_tok; t++) {
        const float *x = j->x + t * j->ldx;
        float *d = xd + t * n;
        for (size_t k = 0; k < n; k += 32) {
            __m512 a = _mm512_loadu_ps(x + k), b = _mm512_loadu_ps(x + k + 16);
            _mm512_storeu_ps(d + k, _mm512_permutex2var_ps(a, idx_e, b));
            _mm512_storeu_ps(d + k + 16, _mm512_permutex2var_ps(a, idx_o, b));
        }
    }
    const uint16_t *w = j->w;
    size_t r = r0;
    for (; r < r1; r += 4) {
        const int rm = (int)MK_MIN((size_t)4, r1 - r);
        for (size_t t = 0; t < j->n_tok; t++) {
            const float *d = xd + t * n;
            __m512 acc[4][2];
            for (int i = 0; i < 4; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
            if (rm == 4) {
                for (size_t k = 0; k < n; k += 32) {
                    const __m512 xe = _mm512_loadu_ps(d + k), xo = _mm512_loadu_ps(d + k + 16);
#pragma GCC unroll 4
                    for (int i = 0; i < 4; i++) {
                        _mm_prefetch((const char *)(w + (r + PF_ROWS + (size_t)i) * n + k), _MM_HINT_T0);
                        const __m512i v = _mm512_loadu_si512((const void *)(w + (r + (size_t)i) * n + k));
                        acc[i][0] = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v, 16)), xe, acc[i][0]);
                        acc[i][1] = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v, hi)), xo, acc[i][1]);
                    }
                }
            } else {
                for (int i = 0; i < rm; i++)
                    for (size_t k = 0; k < n; k += 32) {
                        const __m512i v = _mm512_loadu_si512((const void *)(w + (r + (size_t)i) * n + k));
                        acc[i][0] = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v, 16)), _mm512_loadu_ps(d + k), acc[i][0]);
                        acc[i][1] = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v, hi)), _mm512_loadu_ps(d + k + 16), acc[i][1]);
                    }
            }
            for (int i = 0; i < rm; i++) {
                const float s = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][0], acc[i][1]));
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
void mk_kern_rows_avx512(const mk_kjob *j, size_t r0, size_t r1, float *wbuf) { mk_kern_rows_scalar(j, r0, r1, wbuf); }
#endif
