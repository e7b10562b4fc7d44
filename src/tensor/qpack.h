/* The packed weight panels of the integer prefill GEMMs: one format, two ISAs' kernels.
 * qkernels_avx2.c packs them (AVX2 transposes) and multiplies with vpmaddubsw; qkernels_avx512.c
 * multiplies the same panels with AVX-512 VNNI (vpdpbusd). Private to src/tensor.
 *
 * A panel holds QP_ROWS = 16 consecutive weight rows over a slice of the input, in the "VNNI
 * layout": for each group of 4 consecutive input elements, 64 bytes = rows 0-15's 4 values (as
 * two 32-byte halves, rows 0-7 then 8-15, for AVX2; one zmm for AVX-512). Rows past the valid
 * ones are zero.
 *
 * K-quants (Q4_K, Q6_K), a slice of up to QP_KS super-blocks (mk_kpanel):
 *   W   (ks, 64 groups, 64 B)   unsigned weight values: Q4_K's nibbles 0..15, Q6_K's 0..63 (the
 *                               −32 offset is applied through the activation sums)
 *   SC  (ks, nsub, 16 words)    sub-block j's scale of row i as the int32 word (s | s << 16), i.e.
 *                               the int16 pair (s, s); nsub = 8 (Q4_K, unsigned 6-bit) or 16
 *                               (Q6_K, signed 8-bit)
 *   MP  (ks, nsub/2, 16 words)  the int16 pair (x_{2p}, x_{2p+1}) of row i: Q4_K's mins, Q6_K's scales
 *   D, DM (ks, 16) f32          d (and Q4_K's dmin) of each row
 * (The AVX2 GEMM packs Q6_K its own way, inside qkernels_avx2.c: W holds q − 32 as signed bytes,
 * against activations + 128, and MP's place the rows' correction for that + 128.)
 * Q8_0, a slice of up to QP_Q8_KB blocks of 32:
 *   W   (kb, 8 groups, 64 B)    the signed weights
 *   U   (kb, 8 groups, 64 B)    |w| (AVX2's sign trick) or, for VNNI, w + 128 as unsigned bytes
 *   D   (kb, 16) f32            the rows' block scales */
#ifndef MK_QPACK_H
#define MK_QPACK_H

#include "tensor/tensor.h"

#define QP_ROWS 16
#define QP_KS 4     /* K-quant super-blocks per slice: 16 rows × 1024 values = 16 KB of W */
#define QP_Q8_KB 32 /* Q8_0 blocks per slice: 16 rows × 1024 values */

typedef struct mk_kpanel {
    uint8_t *W;
    int16_t *SC, *MP;
    float *D, *DM;
} mk_kpanel;

/* Scratch bytes for one panel (any alignment: the layout functions align to 64). */
size_t mk_qpack_kq_bytes(void);
size_t mk_qpack_q8_bytes(void);
/* Carves a K-quant panel, or Q8_0's W, U and D, out of scratch. */
mk_kpanel mk_qpack_kq_layout(void *scratch);
void mk_qpack_q8_layout(void *scratch, uint8_t **W, uint8_t **U, float **D);

/* Packs rows [0, nrow) (nrow ≤ 16; rows wrb bytes apart from w) of super-blocks [b0, b0 + ks)
 * (ks ≤ QP_KS) of a Q4_K or Q6_K matrix into kp. */
void mk_qpack_kq(mk_dtype wt, const uint8_t *w, size_t wrb, size_t nrow, size_t b0, size_t ks, const mk_kpanel *kp);
/* mk_qpack_kq for Q6_K with AVX-512 (F/BW) transposes, about 3x faster, for the VNNI GEMM: the
 * same W, MP and D, and in SC's place (ks, 16, 16) f32 d·s_j of each row (qkernels_avx512.c; call
 * only where cpuid reports AVX-512 BW). */
void mk_qpack_q6k_avx512(const uint8_t *w, size_t wrb, size_t nrow, size_t b0, size_t ks, const mk_kpanel *kp);
/* Packs rows [0, nrow) of Q8_0 blocks [b0, b0 + kb) (kb ≤ QP_Q8_KB) into W, U and D; offset:
 * U = w + 128 (VNNI) instead of |w|. */
void mk_qpack_q8(const uint8_t *w, size_t wrb, size_t nrow, size_t b0, size_t kb, uint8_t *W, uint8_t *U, float *D, bool offset);

#endif
