/* Scalar reference quantizers, dequantizers and dot products of the GGUF block types (quant.h).
 * The arithmetic follows ggml's reference code (ggml-quants.c quantize_row_*_ref, dequantize_row_*,
 * ggml-cpu/quants.c ggml_vec_dot_*_generic) operation by operation so results agree bit for bit. */
#include "quant.h"

#include <math.h>
#include <string.h>

_Static_assert(sizeof(float) == 4, "f32");

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline void wr16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline float rdh(const uint8_t *p) { return mk_f16_to_f32(rd16(p)); }
static inline void wrh(uint8_t *p, float f) { wr16(p, mk_f32_to_f16(f)); }
static inline float rdf(const uint8_t *p) {
    float f;
    memcpy(&f, p, 4); /* little-endian host assumed (x86-64, AArch64) */
    return f;
}
static inline void wrf(uint8_t *p, float f) { memcpy(p, &f, 4); }

/* ggml's nearest_int: round half to even through the float adder; |fval| <= 4194303. */
static inline int nearest_int(float fval) {
    float val = fval + 12582912.f;
    int i;
    memcpy(&i, &val, sizeof(int));
    return (i & 0x007fffff) - 0x00400000;
}

#define GROUP_MAX_EPS 1e-15f

/* ---------------------------------------------------------------- Q8_0 */

static void quantize_q8_0(const float *x, uint8_t *y, size_t n) {
    for (size_t b = 0; b < n / MK_QK8_0; b++, x += MK_QK8_0, y += 34) {
        float amax = 0.0f;
        for (int j = 0; j < MK_QK8_0; j++) amax = MK_MAX(amax, fabsf(x[j]));
        const float d = amax / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        wrh(y, d);
        for (int j = 0; j < MK_QK8_0; j++) y[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

static void dequantize_q8_0(const uint8_t *x, float *y, size_t n) {
    for (size_t b = 0; b < n / MK_QK8_0; b++, x += 34, y += MK_QK8_0) {
        const float d = rdh(x);
        for (int j = 0; j < MK_QK8_0; j++) y[j] = (float)(int8_t)x[2 + j] * d;
    }
}

/* ---------------------------------------------------------------- Q4_0 */

static void quantize_q4_0(const float *x, uint8_t *y, size_t n) {
    for (size_t b = 0; b < n / MK_QK4_0; b++, x += MK_QK4_0, y += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < MK_QK4_0; j++) {
            const float v = x[j];
            if (amax < fabsf(v)) {
                amax = fabsf(v);
                max = v;
            }
        }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        wrh(y, d);
        for (int j = 0; j < MK_QK4_0 / 2; j++) {
            const float x0 = x[j] * id, x1 = x[MK_QK4_0 / 2 + j] * id;
            const uint8_t xi0 = (uint8_t)MK_MIN(15, (int8_t)(x0 + 8.5f));
            const uint8_t xi1 = (uint8_t)MK_MIN(15, (int8_t)(x1 + 8.5f));
            y[2 + j] = (uint8_t)(xi0 | (xi1 << 4));
        }
    }
}

static void dequantize_q4_0(const uint8_t *x, float *y, size_t n) {
    for (size_t b = 0; b < n / MK_QK4_0; b++, x += 18, y += MK_QK4_0) {
        const float d = rdh(x);
        for (int j = 0; j < MK_QK4_0 / 2; j++) {
            const int x0 = (x[2 + j] & 0x0F) - 8, x1 = (x[2 + j] >> 4) - 8;
            y[j] = (float)x0 * d;
            y[j + MK_QK4_0 / 2] = (float)x1 * d;
        }
    }
}

/* ---------------------------------------------------------------- MXFP4 */

const int8_t mk_mxfp4_kv[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* The code whose value (times d) is nearest x; the first such on ties (so +0 before -0). */
static uint8_t mxfp4_code(float x, float d) {
    uint8_t best = 0;
    float best_err = fabsf((float)mk_mxfp4_kv[0] * d - x);
    for (uint8_t i = 1; i < 16; i++) {
        const float err = fabsf((float)mk_mxfp4_kv[i] * d - x);
        if (err < best_err) {
            best = i;
            best_err = err;
        }
    }
    return best;
}

static void quantize_mxfp4(const float *x, uint8_t *y, size_t n) {
    for (size_t b = 0; b < n / MK_QK_MXFP4; b++, x += MK_QK_MXFP4, y += 17) {
        float amax = 0.0f;
        for (int j = 0; j < MK_QK_MXFP4; j++)
            if (amax < fabsf(x[j])) amax = fabsf(x[j]);
        /* the scale 2^(floor(log2 amax) - 2): amax then falls between codes 4 and 8 (×2 stored). The
         * exponent is clamped to E8M0's range, where ggml's conversion of it is undefined
         * (amax below 2^-125 or from 2^129 up); everywhere else the same bits. */
        const float ef = amax > 0.0f ? floorf(log2f(amax)) - 2 + 127 : 0;
        const uint8_t e = (uint8_t)(ef < 0 ? 0 : ef > 254 ? 254 : ef);
        const float d = mk_e8m0_half(e);
        y[0] = e;
        for (int j = 0; j < MK_QK_MXFP4 / 2; j++)
            y[1 + j] = (uint8_t)(mxfp4_code(x[j], d) | mxfp4_code(x[MK_QK_MXFP4 / 2 + j], d) << 4);
    }
}

void mk_mxfp4_from_hf(const uint8_t *blocks, const uint8_t *scales, size_t n, uint8_t *out) {
    for (size_t b = 0; b < n / MK_QK_MXFP4; b++, blocks += 16, out += 17) {
        out[0] = scales[b];
        for (int j = 0; j < 16; j++) {   /* element j: HF byte j/2, nibble j%2; element j+16: byte 8 + j/2 */
            const uint8_t lo = (uint8_t)(blocks[j / 2] >> (4 * (j % 2)) & 15), hi = (uint8_t)(blocks[8 + j / 2] >> (4 * (j % 2)) & 15);
            out[1 + j] = (uint8_t)(lo | hi << 4);
        }
    }
}

void mk_mxfp4_to_hf(const uint8_t *in, size_t n, uint8_t *blocks, uint8_t *scales) {
    for (size_t b = 0; b < n / MK_QK_MXFP4; b++, in += 17, blocks += 16) {
        scales[b] = in[0];
        memset(blocks, 0, 16);
        for (int j = 0; j < 16; j++) { /* element j: low nibble of in[1 + j]; element j + 16: its high nibble */
            blocks[j / 2] |= (uint8_t)((in[1 + j] & 15) << (4 * (j % 2)));
            blocks[8 + j / 2] |= (uint8_t)((in[1 + j] >> 4) << (4 * (j % 2)));
        }
    }
}

static void dequantize_mxfp4(const uint8_t *x, float *y, size_t n) {
    for (size_t b = 0; b < n / MK_QK_MXFP4; b++, x += 17, y += MK_QK_MXFP4) {
        const float d = mk_e8m0_half(x[0]);
        for (int j = 0; j < MK_QK_MXFP4 / 2; j++) {
            y[j] = (float)mk_mxfp4_kv[x[1 + j] & 0x0F] * d;
            y[j + MK_QK_MXFP4 / 2] = (float)mk_mxfp4_kv[x[1 + j] >> 4] * d;
        }
    }
}

/* ---------------------------------------------------------------- Q4_K */

/* 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes. */
static inline void get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

/* ggml's make_qkx2_quants: weighted search for a (scale, min) pair of n values into [0, nmax]. */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                              uint8_t *Laux, float rmin, float rdelta, int nstep, bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)MK_MAX(0, MK_MIN(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        float w = weights[i];
        best_error += w * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * (x[i] - min));
            l = MK_MAX(0, MK_MIN(nmax, l));
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                float w = weights[i];
                cur_error += w * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Q4_K block: d @0, dmin @2, scales[12] @4, qs[128] @16. */
static void quantize_q4_K(const float *x, uint8_t *y, size_t n) {
    uint8_t L[MK_QK_K], Laux[32];
    float weights[32], mins[MK_QK_K / 32], scales[MK_QK_K / 32];
    for (size_t b = 0; b < n / MK_QK_K; b++, x += MK_QK_K, y += 144) {
        uint8_t *ysc = y + 4, *q = y + 16;
        memset(ysc, 0, 12);
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < MK_QK_K / 32; ++j) {
            float sum_x2 = 0;
            for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
            float av_x = sqrtf(sum_x2 / 32);
            for (int l = 0; l < 32; ++l) weights[l] = av_x + fabsf(x[32 * j + l]);
            scales[j] = make_qkx2_quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20, false);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        for (int j = 0; j < MK_QK_K / 32; ++j) {
            uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
            uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
            ls = MK_MIN(63, ls);
            lm = MK_MIN(63, lm);
            if (j < 4) {
                ysc[j] = ls;
                ysc[j + 4] = lm;
            } else {
                ysc[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
                ysc[j - 4] |= (uint8_t)((ls >> 4) << 6);
                ysc[j - 0] |= (uint8_t)((lm >> 4) << 6);
            }
        }
        wrh(y, max_scale / 63.f);
        wrh(y + 2, max_min / 63.f);
        uint8_t sc, m;
        for (int j = 0; j < MK_QK_K / 32; ++j) {
            get_scale_min_k4(j, ysc, &sc, &m);
            const float d = rdh(y) * sc;
            if (!d) continue;
            const float dm = rdh(y + 2) * m;
            for (int ii = 0; ii < 32; ++ii) {
                int l = nearest_int((x[32 * j + ii] + dm) / d);
                L[32 * j + ii] = (uint8_t)MK_MAX(0, MK_MIN(15, l));
            }
        }
        for (int j = 0; j < MK_QK_K; j += 64) {
            for (int l = 0; l < 32; ++l) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
            q += 32;
        }
    }
}

static void dequantize_q4_K(const uint8_t *x, float *y, size_t n) {
    for (size_t b = 0; b < n / MK_QK_K; b++, x += 144) {
        const uint8_t *sc8 = x + 4, *q = x + 16;
        const float d = rdh(x), min = rdh(x + 2);
        int is = 0;
        uint8_t sc, m;
        for (int j = 0; j < MK_QK_K; j += 64) {
            get_scale_min_k4(is + 0, sc8, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            get_scale_min_k4(is + 1, sc8, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
            q += 32;
            is += 2;
        }
    }
}

/* ---------------------------------------------------------------- Q6_K */

/* ggml's make_qx_quants for rmse_type 1 and no importance weights (what Q6_K's reference uses):
 * symmetric n values into [-nmax, nmax-1], stored as L + nmax. */
static float make_qx_quants_rmse1(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = MK_MAX(-nmax, MK_MIN(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * x[i]);
            l = MK_MAX(-nmax, MK_MIN(nmax - 1, l));
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + MK_MAX(-nmax, MK_MIN(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q6_K block: ql[128] @0, qh[64] @128, scales[16] (i8) @192, d @208. */
static void quantize_q6_K(const float *x, uint8_t *y, size_t n) {
    int8_t L[MK_QK_K];
    float scales[MK_QK_K / 16];
    for (size_t b = 0; b < n / MK_QK_K; b++, x += MK_QK_K, y += 210) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < MK_QK_K / 16; ++ib) {
            const float scale = make_qx_quants_rmse1(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = scale;
            const float abs_scale = fabsf(scale);
            if (abs_scale > max_abs_scale) {
                max_abs_scale = abs_scale;
                max_scale = scale;
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(y, 0, 210);
            continue;
        }
        int8_t *ysc = (int8_t *)(y + 192);
        float iscale = -128.f / max_scale;
        wrh(y + 208, 1 / iscale);
        for (int ib = 0; ib < MK_QK_K / 16; ++ib) ysc[ib] = (int8_t)MK_MIN(127, nearest_int(iscale * scales[ib]));
        for (int j = 0; j < MK_QK_K / 16; ++j) {
            float d = rdh(y + 208) * ysc[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ++ii) {
                int l = nearest_int(x[16 * j + ii] / d);
                l = MK_MAX(-32, MK_MIN(31, l));
                L[16 * j + ii] = (int8_t)(l + 32);
            }
        }
        uint8_t *ql = y, *qh = y + 128;
        for (int j = 0; j < MK_QK_K; j += 128) {
            for (int l = 0; l < 32; ++l) {
                const uint8_t q1 = L[j + l + 0] & 0xF, q2 = L[j + l + 32] & 0xF, q3 = L[j + l + 64] & 0xF,
                              q4 = L[j + l + 96] & 0xF;
                ql[l + 0] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                  ((L[j + l + 96] >> 4) << 6));
            }
            ql += 64;
            qh += 32;
        }
    }
}

/* The 256 signed 6-bit values of a Q6_K block, in element order. */
static void unpack_q6_K(const uint8_t *x, int8_t *a) {
    const uint8_t *ql = x, *qh = x + 128;
    for (int j = 0; j < MK_QK_K; j += 128) {
        for (int l = 0; l < 32; ++l) {
            a[l + 0] = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            a[l + 32] = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            a[l + 64] = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            a[l + 96] = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        }
        a += 128;
        ql += 64;
        qh += 32;
    }
}

static void dequantize_q6_K(const uint8_t *x, float *y, size_t n) {
    int8_t q[MK_QK_K];
    for (size_t b = 0; b < n / MK_QK_K; b++, x += 210, y += MK_QK_K) {
        const float d = rdh(x + 208);
        const int8_t *sc = (const int8_t *)(x + 192);
        unpack_q6_K(x, q);
        /* element 128·h + 32·k + l uses scale sc[8·h + 2·k + l/16] */
        for (int i = 0; i < MK_QK_K; i++) y[i] = d * sc[(i / 128) * 8 + ((i % 128) / 32) * 2 + (i % 32) / 16] * q[i];
    }
}

/* ---------------------------------------------------------------- Q8_K */

/* Q8_K block: f32 d @0, qs[256] @4, i16 bsums[16] @260. */
static void quantize_q8_K(const float *x, uint8_t *y, size_t n) {
    for (size_t b = 0; b < n / MK_QK_K; b++, x += MK_QK_K, y += 292) {
        float max = 0, amax = 0;
        for (int j = 0; j < MK_QK_K; ++j) {
            float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (!amax) {
            memset(y, 0, 292);
            continue;
        }
        const float iscale = -127.f / max;
        int8_t *qs = (int8_t *)(y + 4);
        for (int j = 0; j < MK_QK_K; ++j) qs[j] = (int8_t)MK_MIN(127, nearest_int(iscale * x[j]));
        for (int j = 0; j < MK_QK_K / 16; ++j) {
            int sum = 0;
            for (int ii = 0; ii < 16; ++ii) sum += qs[j * 16 + ii];
            wr16(y + 260 + 2 * j, (uint16_t)(int16_t)sum);
        }
        wrf(y, 1 / iscale);
    }
}

static void dequantize_q8_K(const uint8_t *x, float *y, size_t n) {
    for (size_t b = 0; b < n / MK_QK_K; b++, x += 292, y += MK_QK_K) {
        const float d = rdf(x);
        for (int j = 0; j < MK_QK_K; j++) y[j] = d * (int8_t)x[4 + j];
    }
}

/* ---------------------------------------------------------------- dispatch */

void mk_quantize_row(mk_dtype dt, const float *x, void *vy, size_t n) {
    uint8_t *y = vy;
    switch (dt) {
    case MK_DT_F32: memcpy(y, x, n * sizeof(float)); break;
    case MK_DT_F16:
        for (size_t i = 0; i < n; i++) wr16(y + 2 * i, mk_f32_to_f16(x[i]));
        break;
    case MK_DT_BF16:
        for (size_t i = 0; i < n; i++) wr16(y + 2 * i, mk_f32_to_bf16(x[i]));
        break;
    case MK_DT_Q8_0: quantize_q8_0(x, y, n); break;
    case MK_DT_Q4_0: quantize_q4_0(x, y, n); break;
    case MK_DT_Q4_K: quantize_q4_K(x, y, n); break;
    case MK_DT_Q6_K: quantize_q6_K(x, y, n); break;
    case MK_DT_MXFP4: quantize_mxfp4(x, y, n); break;
    case MK_DT_Q8_K: quantize_q8_K(x, y, n); break;
    default: memset(y, 0, mk_dtype_row_bytes(dt, n)); break;
    }
}

void mk_dequantize_row(mk_dtype dt, const void *vx, float *y, size_t n) {
    const uint8_t *x = vx;
    switch (dt) {
    case MK_DT_F32: memcpy(y, x, n * sizeof(float)); break;
    case MK_DT_F16:
        for (size_t i = 0; i < n; i++) y[i] = mk_f16_to_f32(rd16(x + 2 * i));
        break;
    case MK_DT_BF16:
        for (size_t i = 0; i < n; i++) y[i] = mk_bf16_to_f32(rd16(x + 2 * i));
        break;
    case MK_DT_Q8_0: dequantize_q8_0(x, y, n); break;
    case MK_DT_Q4_0: dequantize_q4_0(x, y, n); break;
    case MK_DT_Q4_K: dequantize_q4_K(x, y, n); break;
    case MK_DT_Q6_K: dequantize_q6_K(x, y, n); break;
    case MK_DT_MXFP4: dequantize_mxfp4(x, y, n); break;
    case MK_DT_Q8_K: dequantize_q8_K(x, y, n); break;
    default: memset(y, 0, n * sizeof(float)); break;
    }
}

mk_dtype mk_vec_dot_type(mk_dtype w) {
    switch (w) {
    case MK_DT_Q8_0:
    case MK_DT_Q4_0:
    case MK_DT_MXFP4: return MK_DT_Q8_0;
    case MK_DT_Q4_K:
    case MK_DT_Q6_K: return MK_DT_Q8_K;
    default: return MK_DT_F32;
    }
}

static float dot_q8_0_q8_0(size_t n, const uint8_t *x, const uint8_t *y) {
    float sumf = 0;
    for (size_t ib = 0; ib < n / MK_QK8_0; ib++, x += 34, y += 34) {
        int sumi = 0;
        for (int j = 0; j < MK_QK8_0; j++) sumi += (int8_t)x[2 + j] * (int8_t)y[2 + j];
        sumf += (float)sumi * (rdh(x) * rdh(y));
    }
    return sumf;
}

static float dot_q4_0_q8_0(size_t n, const uint8_t *x, const uint8_t *y) {
    float sumf = 0;
    for (size_t ib = 0; ib < n / MK_QK8_0; ib++, x += 18, y += 34) {
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < MK_QK8_0 / 2; ++j) {
            const int v0 = (x[2 + j] & 0x0F) - 8, v1 = (x[2 + j] >> 4) - 8;
            sumi0 += v0 * (int8_t)y[2 + j];
            sumi1 += v1 * (int8_t)y[2 + j + MK_QK8_0 / 2];
        }
        int sumi = sumi0 + sumi1;
        sumf += (float)sumi * rdh(x) * rdh(y);
    }
    return sumf;
}

static float dot_mxfp4_q8_0(size_t n, const uint8_t *x, const uint8_t *y) {
    float sumf = 0;
    for (size_t ib = 0; ib < n / MK_QK_MXFP4; ib++, x += 17, y += 34) {
        const float d = rdh(y) * mk_e8m0_half(x[0]);
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < MK_QK_MXFP4 / 2; ++j) {
            sumi0 += (int8_t)y[2 + j] * mk_mxfp4_kv[x[1 + j] & 0x0F];
            sumi1 += (int8_t)y[2 + j + MK_QK_MXFP4 / 2] * mk_mxfp4_kv[x[1 + j] >> 4];
        }
        sumf += d * (float)(sumi0 + sumi1);
    }
    return sumf;
}

static float dot_q4_K_q8_K(size_t n, const uint8_t *x, const uint8_t *y) {
    int8_t aux8[MK_QK_K];
    int16_t aux16[8];
    int32_t aux32[8];
    float sums[8] = {0};
    float sumf = 0;
    for (size_t i = 0; i < n / MK_QK_K; ++i, x += 144, y += 292) {
        const uint8_t *q4 = x + 16;
        const int8_t *q8 = (const int8_t *)(y + 4);
        memset(aux32, 0, sizeof aux32);
        int8_t *a = aux8;
        for (int j = 0; j < MK_QK_K / 64; ++j) {
            for (int l = 0; l < 32; ++l) a[l] = (int8_t)(q4[l] & 0xF);
            a += 32;
            for (int l = 0; l < 32; ++l) a[l] = (int8_t)(q4[l] >> 4);
            a += 32;
            q4 += 32;
        }
        uint8_t scales[8], mins[8];
        for (int j = 0; j < 8; j++) get_scale_min_k4(j, x + 4, &scales[j], &mins[j]);
        int sumi = 0;
        for (int j = 0; j < MK_QK_K / 16; ++j) sumi += (int16_t)rd16(y + 260 + 2 * j) * mins[j / 2];
        a = aux8;
        int is = 0;
        for (int j = 0; j < MK_QK_K / 32; ++j) {
            int32_t scale = scales[is++];
            for (int k = 0; k < 4; k++) {
                for (int l = 0; l < 8; ++l) aux16[l] = (int16_t)(q8[l] * a[l]);
                for (int l = 0; l < 8; ++l) aux32[l] += scale * aux16[l];
                q8 += 8;
                a += 8;
            }
        }
        const float d = rdh(x) * rdf(y);
        for (int l = 0; l < 8; ++l) sums[l] += d * aux32[l];
        const float dmin = rdh(x + 2) * rdf(y);
        sumf -= dmin * sumi;
    }
    for (int l = 0; l < 8; ++l) sumf += sums[l];
    return sumf;
}

static float dot_q6_K_q8_K(size_t n, const uint8_t *x, const uint8_t *y) {
    int8_t aux8[MK_QK_K];
    int16_t aux16[8];
    int32_t aux32[8];
    float sums[8] = {0};
    float sumf = 0;
    for (size_t i = 0; i < n / MK_QK_K; ++i, x += 210, y += 292) {
        const int8_t *q8 = (const int8_t *)(y + 4), *sc = (const int8_t *)(x + 192);
        memset(aux32, 0, sizeof aux32);
        unpack_q6_K(x, aux8);
        const int8_t *a = aux8;
        int is = 0;
        for (int j = 0; j < MK_QK_K / 16; ++j) {
            int scale = sc[is++];
            for (int k = 0; k < 2; k++) {
                for (int l = 0; l < 8; ++l) aux16[l] = (int16_t)(q8[l] * a[l]);
                for (int l = 0; l < 8; ++l) aux32[l] += scale * aux16[l];
                q8 += 8;
                a += 8;
            }
        }
        const float d = rdh(x + 208) * rdf(y);
        for (int l = 0; l < 8; ++l) sums[l] += d * aux32[l];
    }
    for (int l = 0; l < 8; ++l) sumf += sums[l];
    return sumf;
}

static float ref_q8_0(size_t n, const void *w, const void *a) { return dot_q8_0_q8_0(n, w, a); }
static float ref_q4_0(size_t n, const void *w, const void *a) { return dot_q4_0_q8_0(n, w, a); }
static float ref_q4_K(size_t n, const void *w, const void *a) { return dot_q4_K_q8_K(n, w, a); }
static float ref_q6_K(size_t n, const void *w, const void *a) { return dot_q6_K_q8_K(n, w, a); }
static float ref_mxfp4(size_t n, const void *w, const void *a) { return dot_mxfp4_q8_0(n, w, a); }

mk_qdot_fn mk_qdot_ref(mk_dtype wt) {
    switch (wt) {
    case MK_DT_Q8_0: return ref_q8_0;
    case MK_DT_Q4_0: return ref_q4_0;
    case MK_DT_Q4_K: return ref_q4_K;
    case MK_DT_Q6_K: return ref_q6_K;
    case MK_DT_MXFP4: return ref_mxfp4;
    default: return NULL;
    }
}

float mk_vec_dot_ref(mk_dtype wt, size_t n, const void *w, const void *a) {
    switch (wt) {
    case MK_DT_Q8_0: return dot_q8_0_q8_0(n, w, a);
    case MK_DT_Q4_0: return dot_q4_0_q8_0(n, w, a);
    case MK_DT_Q4_K: return dot_q4_K_q8_K(n, w, a);
    case MK_DT_Q6_K: return dot_q6_K_q8_K(n, w, a);
    case MK_DT_MXFP4: return dot_mxfp4_q8_0(n, w, a);
    default: {
        /* plain float weights against f32 activations */
        float buf[256];
        const float *af = a;
        float s = 0;
        for (size_t i = 0; i < n; i += 256) {
            size_t m = MK_MIN((size_t)256, n - i);
            mk_dequantize_row(wt, (const uint8_t *)w + mk_dtype_row_bytes(wt, i), buf, m);
            for (size_t j = 0; j < m; j++) s += buf[j] * af[i + j];
        }
        return s;
    }
    }
}

void mk_q8_K_row_unsigned(const void *vq, size_t n, void *vu) {
    const uint8_t *q = vq;
    uint8_t *u = vu;
    for (size_t b = 0; b < n / MK_QK_K; b++, q += 292, u += MK_QK_K)
        for (int i = 0; i < MK_QK_K; i += 8) { /* a + 128 = a ^ 0x80, eight bytes at a time */
            uint64_t v;
            memcpy(&v, q + 4 + i, 8);
            v ^= 0x8080808080808080ull;
            memcpy(u + i, &v, 8);
        }
}

void mk_q8_0_row_sums(const void *vq, size_t n, void *vsums) {
    const uint8_t *q = vq;
    uint8_t *sums = vsums;
    for (size_t b = 0; b < n / MK_QK8_0; b++, q += 34) {
        int32_t s = 0;
        for (int i = 0; i < MK_QK8_0; i++) s += (int8_t)q[2 + i];
        memcpy(sums + 4 * b, &s, 4);
    }
}
