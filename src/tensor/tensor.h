/* Tensors, dtypes and the kernels' dispatch point.
 *
 * A tensor here is a view: a dtype, a shape and a pointer into memory owned by someone else
 * (usually a read-only mapping of a weights file). Views are contiguous and row-major.
 * Knows no files and no model. */
#ifndef MK_TENSOR_H
#define MK_TENSOR_H

#include "base/base.h"

#define MK_MAX_DIMS 4

typedef enum mk_dtype {
    MK_DT_F32 = 0,
    MK_DT_F16,
    MK_DT_BF16,
    MK_DT_F64,
    MK_DT_I8,
    MK_DT_U8,
    MK_DT_I16,
    MK_DT_U16,
    MK_DT_I32,
    MK_DT_U32,
    MK_DT_I64,
    MK_DT_U64,
    MK_DT_BOOL,
    /* ---- block-quantized types (quant.h; GGUF-compatible layouts) ---- */
    MK_DT_Q8_0,
    MK_DT_Q4_0,
    MK_DT_Q4_K,
    MK_DT_Q6_K,
    MK_DT_MXFP4,      /* OCP microscaling FP4 (E2M1 values, an E8M0 scale per 32): GPT-OSS's experts */
    MK_DT_Q8_K,       /* activations only (the dot-product partner of Q4_K/Q6_K), not a weight */
    MK_DT_COUNT
} mk_dtype;

typedef struct mk_dtype_traits {
    const char *name;     /* safetensors spelling: "F32", "BF16", ...; ggml's for block types ("Q4_K") */
    size_t elem_bytes;    /* bytes per element; 0 for block types (use block_bytes / block_elems) */
    bool is_float;        /* usable as a weight by the kernels */
    size_t block_elems;   /* elements per block: 1 for plain types, 32 (Q8_0, Q4_0, MXFP4), 256 (K-quants) */
    size_t block_bytes;   /* bytes per block: = elem_bytes for plain types */
} mk_dtype_traits;

extern const mk_dtype_traits mk_dtypes[MK_DT_COUNT];

/* Looks up a dtype by its name; false if unknown. */
bool mk_dtype_from_name(const char *name, mk_dtype *out);

/* Bytes of a run of n elements (a row); n must be a multiple of block_elems (mk_dtype_row_ok). */
static inline size_t mk_dtype_row_bytes(mk_dtype dt, size_t n) {
    return n / mk_dtypes[dt].block_elems * mk_dtypes[dt].block_bytes;
}
static inline bool mk_dtype_row_ok(mk_dtype dt, size_t n) { return n % mk_dtypes[dt].block_elems == 0; }

typedef struct mk_tensor {
    const void *data;              /* NULL when the tensor is absent */
    mk_dtype dtype;
    int ndim;
    int64_t shape[MK_MAX_DIMS];
    size_t nbytes;
} mk_tensor;

static inline bool mk_tensor_present(const mk_tensor *t) { return t->data != NULL; }
int64_t mk_tensor_numel(const mk_tensor *t);

/* Element conversions. */
static inline float mk_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}
/* Round to nearest even, as torch does; NaN stays NaN. */
static inline uint16_t mk_f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = {f};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}
float mk_f16_to_f32(uint16_t h);
uint16_t mk_f32_to_f16(float f);

/* Converts n elements of row r (of a 2-D weight [rows, n]) or any contiguous run to f32.
 * Block types: src is the start of a block and n a multiple of block_elems (dequantizes). */
void mk_to_f32(float *dst, const void *src, mk_dtype dt, size_t n);

/* ---- kernels (the dispatch point: callers never branch on dtype) ---- */

/* y[t, o] = Σ_i x[t, i] · W[o, i]  (+ b[o] if b is present), for t < n_tok, o < n_out.
 * x: (n_tok, n_in) f32 row stride ldx; y: (n_tok, n_out) f32 row stride ldy; W: (n_out, n_in)
 * in any float dtype; b: (n_out) or absent. Multi-threaded (OpenMP) when worthwhile. */
void mk_matmul(float *y, size_t ldy, const float *x, size_t ldx, size_t n_tok, const mk_tensor *W,
               const mk_tensor *b);
/* The same for a row range [r0, r0 + n_out) of W (an expert's slice of a fused tensor, say). */
void mk_matmul_rows(float *y, size_t ldy, const float *x, size_t ldx, size_t n_tok, const void *w,
                    mk_dtype dt, size_t n_out, size_t n_in, const float *bias);

/* y = x · rsqrt(mean(x²) + eps) · w over n values; w in any float dtype (NULL for no weight). */
/* LayerNorm over n values: y = (x − mean)/sqrt(var + eps)·w + b (biased variance), w and b F32
 * (b may be NULL). y may alias x. */
void mk_layernorm(float *y, const float *x, const float *w, const float *b, size_t n, float eps);
void mk_rmsnorm(float *y, const float *x, const mk_tensor *w, size_t n, float eps);

float mk_dot_f32(const float *a, const float *b, size_t n);

/* Number of threads the kernels use (OpenMP); n <= 0 keeps the default. */
void mk_set_threads(int n);
int mk_get_threads(void);

#endif
