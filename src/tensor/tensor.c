#include "tensor.h"
#include "kernels.h"
#include "quant.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

const mk_dtype_traits mk_dtypes[MK_DT_COUNT] = {
    [MK_DT_F32] = {"F32", 4, true, 1, 4},   [MK_DT_F16] = {"F16", 2, true, 1, 2},
    [MK_DT_BF16] = {"BF16", 2, true, 1, 2}, [MK_DT_F64] = {"F64", 8, false, 1, 8},
    [MK_DT_I8] = {"I8", 1, false, 1, 1},    [MK_DT_U8] = {"U8", 1, false, 1, 1},
    [MK_DT_I16] = {"I16", 2, false, 1, 2},  [MK_DT_U16] = {"U16", 2, false, 1, 2},
    [MK_DT_I32] = {"I32", 4, false, 1, 4},  [MK_DT_U32] = {"U32", 4, false, 1, 4},
    [MK_DT_I64] = {"I64", 8, false, 1, 8},  [MK_DT_U64] = {"U64", 8, false, 1, 8},
    [MK_DT_BOOL] = {"BOOL", 1, false, 1, 1},
    /* block types: layouts in quant.h */
    [MK_DT_Q8_0] = {"Q8_0", 0, true, 32, 34},   [MK_DT_Q4_0] = {"Q4_0", 0, true, 32, 18},
    [MK_DT_Q4_K] = {"Q4_K", 0, true, 256, 144}, [MK_DT_Q6_K] = {"Q6_K", 0, true, 256, 210},
    [MK_DT_MXFP4] = {"MXFP4", 0, true, 32, 17},
    [MK_DT_Q8_K] = {"Q8_K", 0, false, 256, 292},
};

bool mk_dtype_from_name(const char *name, mk_dtype *out) {
    for (int i = 0; i < MK_DT_COUNT; i++)
        if (strcmp(mk_dtypes[i].name, name) == 0) {
            *out = (mk_dtype)i;
            return true;
        }
    return false;
}

int64_t mk_tensor_numel(const mk_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

float mk_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    union { uint32_t u; float f; } v;
    if (exp == 0) {
        if (man == 0) {
            v.u = sign;
        } else { /* subnormal: man · 2^-24 */
            float f = (float)man * 5.9604644775390625e-8f;
            return sign ? -f : f;
        }
    } else if (exp == 31) {
        v.u = sign | 0x7f800000u | (man << 13);
    } else {
        v.u = sign | ((exp + 112) << 23) | (man << 13);
    }
    return v.f;
}

uint16_t mk_f32_to_f16(float f) {
    union { float f; uint32_t u; } v = {f};
    uint32_t sign = (v.u >> 16) & 0x8000, x = v.u & 0x7fffffffu;
    if (x > 0x7f800000u) return (uint16_t)(sign | 0x7e00);        /* NaN */
    if (x >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);       /* overflow to inf */
    if (x < 0x38800000u) {                                         /* subnormal or zero */
        float a = fabsf(f) * 16777216.0f;                          /* / 2^-24 */
        return (uint16_t)(sign | (uint32_t)nearbyintf(a));
    }
    uint32_t r = x + 0xfffu + ((x >> 13) & 1u) - (112u << 23);
    return (uint16_t)(sign | (r >> 13));
}

void mk_to_f32(float *dst, const void *src, mk_dtype dt, size_t n) {
    switch (dt) {
    case MK_DT_F32: memcpy(dst, src, n * sizeof(float)); break;
    case MK_DT_BF16:
    case MK_DT_F16: /* byte-wise: safetensors data need not be 2-byte aligned */
        mk_dequantize_row(dt, src, dst, n);
        break;
    default:
        if (mk_dtypes[dt].block_elems > 1) mk_dequantize_row(dt, src, dst, n);
        else memset(dst, 0, n * sizeof(float)); /* the loader admits only float weights */
        break;
    }
}

/* 16 independent accumulators so the compiler can vectorize without reassociating. */
float mk_dot_f32(const float *a, const float *b, size_t n) {
    float acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) acc[j] += a[i + j] * b[i + j];
    float s = 0;
    for (int j = 0; j < 16; j++) s += acc[j];
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

void mk_set_threads(int n) {
    if (n > 0) omp_set_num_threads(n);
}

int mk_get_threads(void) { return omp_get_max_threads(); }

/* x · w_row for a non-f32 row, converting 256 elements (a whole number of blocks of every type)
 * at a time on the stack (the allocation-free fallback). */
static float dot_mixed(const float *x, const void *w, mk_dtype dt, size_t n) {
    float buf[256];
    double s = 0;
    for (size_t i = 0; i < n; i += 256) {
        size_t m = MK_MIN((size_t)256, n - i);
        mk_to_f32(buf, (const uint8_t *)w + mk_dtype_row_bytes(dt, i), dt, m);
        for (size_t j = 0; j < m; j++) s += (double)x[i + j] * (double)buf[j];
    }
    return (float)s;
}

/* Rows of W are converted to f32 in tiles of TILE_ROWS and reused across all tokens, so a
 * BF16/F16 weight is decoded once per call however many tokens there are. */
#define TILE_ROWS 16

void mk_matmul_rows(float *y, size_t ldy, const float *x, size_t ldx, size_t n_tok, const void *w,
                    mk_dtype dt, size_t n_out, size_t n_in, const float *bias) {
    /* float weights: the SIMD kernels with run-time dispatch (kernels.c) */
    if (mk_kern_matmul(y, ldy, x, ldx, n_tok, w, dt, n_out, n_in, bias)) return;
    const size_t row_bytes = mk_dtype_row_bytes(dt, n_in); /* rows are whole blocks */
    const size_t n_tiles = (n_out + TILE_ROWS - 1) / TILE_ROWS;
    const double work = (double)n_out * (double)n_in * (double)n_tok;
    #pragma omp parallel if (work > 65536.0)
    {
        float *tile = NULL;
        if (dt != MK_DT_F32) tile = mk_malloc_aligned(TILE_ROWS * n_in * sizeof(float));
        #pragma omp for schedule(static)
        for (size_t ti = 0; ti < n_tiles; ti++) {
            size_t r0 = ti * TILE_ROWS, nr = MK_MIN((size_t)TILE_ROWS, n_out - r0);
            const float *wf;
            if (dt != MK_DT_F32 && !tile) {
                for (size_t t = 0; t < n_tok; t++)
                    for (size_t r = 0; r < nr; r++) {
                        const void *wr = (const uint8_t *)w + (r0 + r) * row_bytes;
                        float s = dot_mixed(x + t * ldx, wr, dt, n_in);
                        y[t * ldy + r0 + r] = bias ? s + bias[r0 + r] : s;
                    }
                continue;
            }
            if (dt == MK_DT_F32) {
                wf = (const float *)w + r0 * n_in;
            } else {
                mk_to_f32(tile, (const uint8_t *)w + r0 * row_bytes, dt, nr * n_in);
                wf = tile;
            }
            for (size_t t = 0; t < n_tok; t++) {
                const float *xt = x + t * ldx;
                float *yt = y + t * ldy + r0;
                for (size_t r = 0; r < nr; r++) {
                    float s = mk_dot_f32(xt, wf + r * n_in, n_in);
                    yt[r] = bias ? s + bias[r0 + r] : s;
                }
            }
        }
        mk_free_aligned(tile);
    }
}

void mk_matmul(float *y, size_t ldy, const float *x, size_t ldx, size_t n_tok, const mk_tensor *W,
               const mk_tensor *b) {
    size_t n_out = (size_t)W->shape[0], n_in = (size_t)W->shape[1];
    float *bias = NULL;
    if (b && b->data) {
        if (b->dtype == MK_DT_F32) {
            bias = (float *)b->data;
        } else {
            bias = mk_malloc(n_out * sizeof(float));
            if (bias) mk_to_f32(bias, b->data, b->dtype, n_out);
        }
    }
    mk_matmul_rows(y, ldy, x, ldx, n_tok, W->data, W->dtype, n_out, n_in, bias);
    if (bias && b->dtype != MK_DT_F32) free(bias);
}

void mk_layernorm(float *y, const float *x, const float *w, const float *b, size_t n, float eps) {
    double s = 0, ss = 0; /* in double: the two moments of one row */
    #pragma omp simd reduction(+ : s)
    for (size_t i = 0; i < n; i++) s += (double)x[i];
    const double mean = s / (double)n;
    #pragma omp simd reduction(+ : ss)
    for (size_t i = 0; i < n; i++) ss += ((double)x[i] - mean) * ((double)x[i] - mean);
    const float mu = (float)mean, r = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (size_t i = 0; i < n; i++) y[i] = (x[i] - mu) * r * w[i] + (b ? b[i] : 0.0f);
}

void mk_rmsnorm(float *y, const float *x, const mk_tensor *w, size_t n, float eps) {
    double ss = 0; /* in double, which allows the vector partial sums (a serial chain of double
                      adds was 1% of a Q6_K prompt) */
    #pragma omp simd reduction(+ : ss)
    for (size_t i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
    float var = (float)(ss / (double)n);
    float r = 1.0f / sqrtf(var + eps);
    if (!w || !w->data) {
        for (size_t i = 0; i < n; i++) y[i] = x[i] * r;
        return;
    }
    switch (w->dtype) {
    case MK_DT_F32: {
        const float *wf = w->data;
        for (size_t i = 0; i < n; i++) y[i] = wf[i] * (x[i] * r);
        break;
    }
    case MK_DT_BF16: {
        const uint16_t *wb = w->data;
        for (size_t i = 0; i < n; i++) y[i] = mk_bf16_to_f32(wb[i]) * (x[i] * r);
        break;
    }
    case MK_DT_F16: {
        const uint16_t *wh = w->data;
        for (size_t i = 0; i < n; i++) y[i] = mk_f16_to_f32(wh[i]) * (x[i] * r);
        break;
    }
    default: break;
    }
}
