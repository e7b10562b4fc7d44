/* Block-quantized weight types with ggml/GGUF-compatible layouts (research/formats.md §12;
 * ggml-common.h), scalar reference code only. The SIMD kernels (kernels_*.c) are tested against
 * these functions.
 *
 * Layouts (little-endian, packed, no padding; "f16" = IEEE binary16 bits):
 *   Q8_0  32 elems / 34 B:  f16 d; i8 qs[32]                          y[j] = d·qs[j]
 *   Q4_0  32 elems / 18 B:  f16 d; u8 qs[16]                          y[j] = d·((qs[j]&15)-8), y[j+16] = d·((qs[j]>>4)-8)
 *   Q4_K 256 elems / 144 B: f16 d, dmin; u8 scales[12]; u8 qs[128]    8 sub-blocks of 32, 6-bit scale/min each
 *   Q6_K 256 elems / 210 B: u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d (d last)
 *   Q8_K 256 elems / 292 B: f32 d; i8 qs[256]; i16 bsums[16]           activations only
 *   MXFP4 32 elems / 17 B:  u8 e (E8M0); u8 qs[16]                    y[j] = kv[qs[j]&15]·2^(e−128),
 *                           y[j+16] = kv[qs[j]>>4]·2^(e−128), kv = twice the E2M1 values
 *                           {0,1,2,3,4,6,8,12,−0,−1,−2,−3,−4,−6,−8,−12} (ggml's block_mxfp4; the
 *                           HF checkpoint's blocks hold adjacent elements in a byte and scale 2^(e−127))
 * Blocks are read and written byte-wise, so they need no alignment. A row of a quantized matrix
 * is a whole number of blocks (n % block_elems == 0), so row slicing is plain byte arithmetic.
 *
 * Quantizers reproduce ggml's reference quantizers (quantize_row_*_ref) bit for bit: the same
 * float operations in the same order, roundf (Q8_0), truncation after +8.5 (Q4_0), ggml's
 * nearest_int (round half to even via the 1.5·2^23 trick) in the K-quants, and for MXFP4 the
 * scale floor(log2 amax) − 2 with each value's nearest code (the first on ties). Built without
 * -ffast-math and with FP contraction off (-std=c11), as moekit is. */
#ifndef MK_QUANT_H
#define MK_QUANT_H

#include "tensor/tensor.h"

#include <string.h>

#define MK_QK8_0 32
#define MK_QK4_0 32
#define MK_QK_K 256
#define MK_QK_MXFP4 32

/* 2^(e−128): half the E8M0 scale e, which MXFP4's doubled code values multiply (ggml's
 * ggml_e8m0_to_fp32_half, bit for bit, subnormal for e < 2). Inline: the kernels take one a block. */
static inline float mk_e8m0_half(uint8_t e) {
    const uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
/* The 16 MXFP4 codes' values, doubled: {0,1,2,3,4,6,8,12,0,−1,−2,−3,−4,−6,−8,−12}. */
extern const int8_t mk_mxfp4_kv[16];
/* One row of n MXFP4 values from the layout of HF's gpt-oss checkpoints (research/formats.md §6:
 * blocks n/2 bytes, adjacent elements in a byte, low nibble first; scales n/32 E8M0 bytes, value =
 * E2M1 · 2^(scale−127)) into ggml's blocks (n/32 × 17 bytes at out): the same codes and exponents,
 * the nibbles reordered; the values are identical (E2M1 · 2^(s−127) = 2·E2M1 · 2^(s−128)). */
void mk_mxfp4_from_hf(const uint8_t *blocks, const uint8_t *scales, size_t n, uint8_t *out);
/* The inverse: ggml blocks (n/32 × 17 bytes) → HF blocks (n/2 bytes) and scales (n/32 bytes). */
void mk_mxfp4_to_hf(const uint8_t *in, size_t n, uint8_t *blocks, uint8_t *scales);

/* x (n f32) → y (n elements of dt). dt: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K, MXFP4 or Q8_K;
 * n % block_elems == 0 (the caller checks with mk_dtype_row_ok). */
void mk_quantize_row(mk_dtype dt, const float *x, void *y, size_t n);
/* x (n elements of dt) → y (n f32): any float dtype or block type (Q8_K included). */
void mk_dequantize_row(mk_dtype dt, const void *x, float *y, size_t n);

/* The activation type a weight type's dot product takes, as in llama.cpp: Q8_0 for Q8_0/Q4_0/MXFP4,
 * Q8_K for Q4_K/Q6_K, F32 for F32/F16/BF16. */
mk_dtype mk_vec_dot_type(mk_dtype w);
/* Σ w[i]·a[i] over n elements: w a row of weight type wt, a the activations quantized to
 * mk_vec_dot_type(wt) with mk_quantize_row. The scalar reference of ggml's vec_dot kernels
 * (ggml_vec_dot_*_generic, same integer sums and float accumulation order). */
float mk_vec_dot_ref(mk_dtype wt, size_t n, const void *w, const void *a);

/* One weight type's dot product (w a row of the type, a the activations in its vec_dot type) and
 * one activation type's quantizer, as function pointers the matmul drivers pick once per call. */
typedef float (*mk_qdot_fn)(size_t n, const void *w, const void *a);
typedef void (*mk_qquant_fn)(const float *x, void *y, size_t n);
/* The scalar references of Q8_0, Q4_0, Q4_K, Q6_K and MXFP4 (NULL for other types). */
mk_qdot_fn mk_qdot_ref(mk_dtype wt);
/* The AVX2 variants (src/tensor/qkernels_avx2.c): every weight type above; the Q8_0 and Q8_K quantizers
 * (bit-identical to the reference). NULL where not built or not available. */
mk_qdot_fn mk_qdot_avx2(mk_dtype wt);
mk_qquant_fn mk_qquant_avx2(mk_dtype at);
/* The AVX2 prefill product for Q8_0, Q4_K and Q6_K weights: y[t·ldy + r] = Σ w_r·a_t (+ bias[r])
 * for nr weight rows (wrb bytes apart) and nt activation rows xq (arb bytes apart, quantized to
 * the vec_dot type), a panel of 16 weight rows against every token. The same integer block sums
 * as mk_qdot_avx2; float sums in another order. Q6_K activation rows must carry their values + 128
 * after the blocks (mk_q8_K_row_unsigned at byte 292·n_in/256 of each row; arb ≥ 548·n_in/256).
 * scratch: mk_qgemm_scratch_avx2(wt, n_in) bytes (any alignment). False (nothing written) for
 * other types or where not built. */
size_t mk_qgemm_scratch_avx2(mk_dtype wt, size_t n_in);
bool mk_qgemm_avx2(mk_dtype wt, size_t n_in, const void *w, size_t wrb, size_t nr, const void *xq, size_t arb, size_t nt, float *y, size_t ldy,
                   const float *bias, void *scratch);
/* The same product with AVX-512 VNNI (src/tensor/qkernels_avx512.c), bit-identical to
 * mk_qgemm_avx2. Q8_0 activation rows must carry their block sums after the blocks
 * (mk_q8_0_row_sums at byte 34·n_in/32 of each row; arb ≥ 38·n_in/32). */
size_t mk_qgemm_scratch_avx512vnni(mk_dtype wt, size_t n_in);
bool mk_qgemm_avx512vnni(mk_dtype wt, size_t n_in, const void *w, size_t wrb, size_t nr, const void *xq, size_t arb, size_t nt, float *y,
                         size_t ldy, const float *bias, void *scratch);
/* Decode: four rows wrb bytes apart against one activation row of mk_vec_dot_type (n elements:
 * Q8_0 for Q8_0, Q8_K for Q4_K and Q6_K), out[i] the product of row i, with AVX-512 VNNI (exact integer block sums; float sums in another order than
 * the reference). Call only where the CPU has AVX-512 VNNI. */
typedef void (*mk_qdot4_fn)(size_t n, const void *w, size_t wrb, const void *a, float *out);
void mk_qdot4_q8_0_avx512vnni(size_t n, const void *w, size_t wrb, const void *a, float *out);
void mk_qdot4_q4_K_avx512vnni(size_t n, const void *w, size_t wrb, const void *a, float *out); /* a: Q8_K */
void mk_qdot4_q6_K_avx512vnni(size_t n, const void *w, size_t wrb, const void *a, float *out); /* a: Q8_K */
/* The n/32 block sums Σ qs of a Q8_0 row (n elements at q) as int32 at sums (any alignment). */
void mk_q8_0_row_sums(const void *q, size_t n, void *sums);
/* The n values of a Q8_K row q as unsigned bytes a + 128 (n bytes at u, block after block): the
 * AVX2 Q6_K GEMM's activations, which meet the weights' q − 32 in vpmaddubsw as its unsigned
 * operand. */
void mk_q8_K_row_unsigned(const void *q, size_t n, void *u);

#endif
