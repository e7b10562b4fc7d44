/* Matmul kernels with run-time CPU dispatch: float weights (F32, F16, BF16) and GGUF block types
 * (Q8_0, Q4_0, Q4_K, Q6_K, MXFP4).
 *
 * One contract for every variant:  y[t, o] = Σ_i x[t, i] · W[o, i] (+ bias[o])
 *   x (n_tok, n_in) f32, row stride ldx;  y (n_tok, n_out) f32, row stride ldy;
 *   W (n_out, n_in) row-major in dtype dt;  bias (n_out) f32 or NULL.
 * Variants (chosen once from cpuid, overridable with MOEKIT_ISA=scalar|avx2|avx512 and for
 * tests with mk_kern_set_isa):
 *   scalar   portable C, the reference the SIMD paths are tested against;
 *   avx2     AVX2 + FMA + F16C, 8 lanes;
 *   avx512   AVX-512 F/BW/VL/DQ, 16 lanes.
 * Each variant computes in f32 with weights expanded exactly to f32 (bf16 → f32 and f16 → f32 are
 * exact), so only the order of the f32 additions differs from the reference. Shapes:
 *   n_tok ≤ 2 (decode)  GEMV, every weight byte read once from memory, expanded in registers;
 *   n_tok ≥ 3/4         avx512: register tiles over L2 blocks of expanded rows; avx2: a packed
 *                       outer-product GEMM (16 rows × 6 tokens of accumulators, weights packed
 *                       k-major into L2-sized panels), also used for block-quantized weights,
 *                       which are dequantized exactly into the panels (batches of 8+ tokens).
 * Block-quantized weights in decode-sized batches quantize the activations to the type's vec_dot
 * type (Q8_0 or Q8_K) and sum integer block products (qkernels_avx2.c, the scalar reference in
 * quant.c), as llama.cpp does: that reads each weight byte once, at the cost of rounding the
 * activations to 8 bits (bounds in tests/test_quant.c). MOEKIT_QACT=1 makes every batch size
 * do so (llama.cpp's arithmetic for prefill too, for comparisons; slower on AVX2).
 * Optional BF16 fast path (AVX512-BF16, vdpbf16ps): for BF16 weights and n_tok ≥ 2 the activation
 * rows are rounded to bf16 once per call and multiplied pairwise with the raw bf16 weights. This
 * is what llama.cpp does for BF16 weights, and about 2.5× faster than the exact path, but it breaks
 * the 1e-4 agreement with HF that the fidelity tests ask of BF16 models, so it is off by default:
 * MOEKIT_BF16_DOT=1 or mk_kern_set_bf16_dot(true) turns it on where the CPU has AVX512-BF16.
 * Error bounds: see tests/test_kernels.c.
 * Knows no files and no model. */
#ifndef MK_KERNELS_H
#define MK_KERNELS_H

#include "tensor.h"

#include <string.h>

/* The i-th 16-bit element at p, which need not be 2-byte aligned (tensors in files need not be). */
static inline uint16_t mk_kern_ld16(const void *p, size_t i) {
    uint16_t h;
    memcpy(&h, (const uint8_t *)p + 2 * i, 2);
    return h;
}

typedef enum mk_isa {
    MK_ISA_SCALAR = 0,
    MK_ISA_AVX2,
    MK_ISA_AVX512,
    MK_ISA_COUNT
} mk_isa;

/* One matmul call's operands (shared by all threads of the call). */
typedef struct mk_kjob {
    float *y;
    size_t ldy;
    const float *x;
    size_t ldx;
    const uint16_t *xb;     /* (n_tok, n_in) x rounded to bf16, for the vdpbf16ps path; else NULL */
    size_t n_tok;
    const void *w;
    size_t ldw;             /* row stride of W in elements (n_in unless strided, F32 only) */
    mk_dtype dt;
    size_t n_in;
    const float *bias;
    int *xd_ready;          /* decode GEMV, NULL or a flag private to the calling thread, 0 at the
                               start of each product: a kernel that rearranges x into wbuf first
                               (the BF16 fast path) sets it, and the product's later row chunks on
                               this thread reuse wbuf as it is */
} mk_kjob;

/* Prefill (n_tok ≥ 3) walks the weights in blocks of mk_kern_block_rows(n_in, bytes per
 * element) rows, about MK_KERN_WBLOCK_BYTES, which stay in L2 while every token passes over them
 * (the tokens in register tiles, their activations in L1).
 * A variant computes rows [r0, r1) of y for all tokens. wbuf: per-thread scratch of at least
 * mk_kern_block_rows(n_in, 4) · n_in floats (weights expanded to f32). */
#define MK_KERN_WBLOCK_BYTES ((size_t)256 * 1024)
static inline size_t mk_kern_block_rows(size_t n_in, size_t es) {
    size_t r = MK_KERN_WBLOCK_BYTES / (n_in * es) / 8 * 8;
    return r < 8 ? 8 : r > 256 ? 256 : r;
}
typedef void (*mk_kern_fn)(const mk_kjob *j, size_t r0, size_t r1, float *wbuf);

void mk_kern_rows_scalar(const mk_kjob *j, size_t r0, size_t r1, float *wbuf);
void mk_kern_rows_avx2(const mk_kjob *j, size_t r0, size_t r1, float *wbuf);
void mk_kern_rows_avx512(const mk_kjob *j, size_t r0, size_t r1, float *wbuf);
/* The packed (outer-product) GEMM of the AVX2 and AVX-512 variants for n_tok ≥ 4, for float weights and
 * block-quantized ones (dequantized exactly into the packed panels). wbuf as above. */
void mk_kern_gemm_avx2(const mk_kjob *j, size_t r0, size_t r1, float *wbuf);
void mk_kern_gemm_avx512(const mk_kjob *j, size_t r0, size_t r1, float *wbuf);
/* BF16 weights only; j->xb must be set. */
void mk_kern_rows_avx512bf16(const mk_kjob *j, size_t r0, size_t r1, float *wbuf);
/* Rounds n f32 values to bf16 (round to nearest even), vectorized where available. */
void mk_kern_to_bf16_avx512bf16(uint16_t *dst, const float *src, size_t n);

/* Best ISA this CPU (and OS) supports; whether AVX512-BF16 is present. */
mk_isa mk_kern_isa_detect(void);
bool mk_kern_has_bf16_dot(void);
/* Whether the CPU has AVX-512 VNNI (the integer prefill GEMM uses it when the ISA in use is avx512). */
bool mk_kern_has_vnni(void);
/* The ISA in use (after MOEKIT_ISA); set clamps to what the CPU supports and returns what is used. */
mk_isa mk_kern_isa(void);
mk_isa mk_kern_set_isa(mk_isa isa);
const char *mk_kern_isa_name(mk_isa isa);
/* Whether BF16 weights with n_tok ≥ 2 use vdpbf16ps (false: exact f32 path). Returns the setting. */
bool mk_kern_set_bf16_dot(bool on);
bool mk_kern_bf16_dot(void);
/* Whether prefill with Q8_0/Q4_K/Q6_K weights uses the integer GEMM (AVX2 or VNNI; the default, or
 * MOEKIT_QGEMM=0 at startup) or dequantizes into the f32 GEMM. Returns the setting. */
bool mk_kern_set_qgemm(bool on);

/* How products with block-quantized weights treat the activations: AUTO quantizes decode-sized
 * batches to the type's vec_dot type (llama.cpp's arithmetic) and lets prefill use the integer GEMM;
 * ALWAYS quantizes them at every batch size (MOEKIT_QACT=1); NEVER keeps them f32 and dequantizes
 * the weights exactly into the f32 GEMM at every batch size (MOEKIT_QACT=0; AVX2 and up): the
 * product a float reference computes from the same weights, for checks. Returns the previous mode. */
typedef enum mk_qact_mode { MK_QACT_AUTO, MK_QACT_ALWAYS, MK_QACT_NEVER } mk_qact_mode;
mk_qact_mode mk_kern_set_qact(mk_qact_mode mode);

/* The threaded driver: splits output rows among the OpenMP threads (call from outside a parallel
 * region, or inside one to run on the calling thread only). Float weights as above; block-quantized
 * weights (Q8_0, Q4_0, Q4_K, Q6_K, MXFP4) as llama.cpp computes them: the activations quantized once to
 * the type's vec_dot type (quant.h), integer block dot products (AVX2, or the scalar reference).
 * Returns false when dt is not a dtype these kernels handle or scratch memory ran out (the caller
 * falls back). */
bool mk_kern_matmul(float *y, size_t ldy, const float *x, size_t ldx, size_t n_tok, const void *w, mk_dtype dt,
                    size_t n_out, size_t n_in, const float *bias);

/* The same product computed by the whole team of an enclosing OpenMP parallel region: every
 * thread of the team must call it with the same arguments; the rows are shared out dynamically
 * (an orphaned `omp for nowait`), so several calls in a row form one pool of work and only the
 * caller's next barrier waits for them. Weight dtypes the kernels do not handle go to
 * mk_matmul_rows on one thread of the team. */
void mk_matmul_team(float *y, size_t ldy, const float *x, size_t ldx, size_t n_tok, const void *w, mk_dtype dt,
                    size_t n_out, size_t n_in, const float *bias);
/* Quantized weights with activations quantized beforehand and shared by the team: xq holds n_tok
 * rows of mk_kern_qact_bytes(dt, n_in) bytes made with mk_kern_quantize_act (so gate and up
 * projections of the same tokens quantize them once). Team semantics as mk_matmul_team. */
void mk_matmul_team_q(float *y, size_t ldy, const void *xq, size_t n_tok, const void *w, mk_dtype dt, size_t n_out,
                      size_t n_in, const float *bias);
/* Whether a product of block-quantized weights wt with a batch of n_tok tokens uses quantized
 * activations (decode-sized batches: integer dot products, as llama.cpp; prefill with Q4_K/Q6_K on
 * AVX2: the integer GEMM) — else the weights are dequantized exactly into the packed f32 GEMM and
 * the activations stay f32. False for float types. */
bool mk_kern_q_act(mk_dtype wt, size_t n_tok);
/* Bytes of one activation row for weight type wt (0: wt is not block-quantized). */
size_t mk_kern_qact_bytes(mk_dtype wt, size_t n_in);
/* The largest mk_kern_qact_bytes over the block-quantized weight types (a buffer for any of them). */
size_t mk_kern_qact_bytes_max(size_t n_in);
/* One activation row x (n_in f32) → xq in wt's vec_dot type, with the CPU's quantizer. */
void mk_kern_quantize_act(mk_dtype wt, const float *x, void *xq, size_t n_in);
/* mk_matmul_team for an F32 W whose rows are ldw floats apart (a head's slice of a KV cache). */
void mk_matmul_team_f32_strided(float *y, size_t ldy, const float *x, size_t ldx, size_t n_tok, const float *w,
                                size_t ldw, size_t n_out, size_t n_in);

#endif
