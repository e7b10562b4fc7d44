/* AVX-512 (F/BW/VL/DQ) variant of the float-weight matmul; compiled for that target whatever the
 * build's -march, and called only when cpuid says the CPU has it (kernels.c). */
#include "kernels.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
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
#include "kernels_tmpl.h"

#pragma GCC pop_options
#else
void mk_kern_rows_avx512(const mk_kjob *j, size_t r0, size_t r1, float *wbuf) { mk_kern_rows_scalar(j, r0, r1, wbuf); }
#endif
