/* The register-blocked matmul variant, written once and included by kernels_avx2.c and
 * kernels_avx512.c with their vector macros (no include guard on purpose):
 *   V, KV (lanes), VZERO(), VLOAD(const float*), VSTORE(float*, V), VFMA(a, b, c) = a·b + c,
 *   VRED(V) → float (horizontal sum), VLOAD_BF16(const uint16_t*), VLOAD_F16(const uint16_t*),
 *   RM (rows per tile), RN (tokens per tile), FN_ROWS (the exported name).
 *
 * Tile: RM weight rows × RN tokens, RM·RN vector accumulators over the shared n_in axis (both
 * operands are contiguous along n_in, as in y = x·Wᵀ), one horizontal sum per output at the end.
 *  - n_tok ≤ 2 (decode): GEMV; each weight byte is read once, expanded to f32 in registers.
 *  - n_tok ≥ 3 (prefill): rows in L2-sized blocks (mk_kern_block_rows), 16-bit weights expanded
 *    to f32 once per block into wbuf; every token passes over the block in RN-token tiles. */
#define AI static inline __attribute__((always_inline))

AI V load_w(const void *w, size_t i, int dt) {
    if (dt == MK_DT_F32) return VLOAD((const float *)w + i);
    if (dt == MK_DT_BF16) return VLOAD_BF16((const uint16_t *)w + i);
    return VLOAD_F16((const uint16_t *)w + i);
}

AI float w_scalar(const void *w, size_t i, int dt) {
    if (dt == MK_DT_F32) return ((const float *)w)[i];
    if (dt == MK_DT_BF16) return mk_bf16_to_f32(mk_kern_ld16(w, i));
    return mk_f16_to_f32(mk_kern_ld16(w, i));
}

/* rm rows of w (row stride ldw elements) × rn rows of x (stride ldx) over n values; writes
 * y[t·ldy + r] (+ bias[r]). */
AI void tile(const void *w, size_t ldw, int dt, const float *x, size_t ldx, float *y, size_t ldy, size_t n,
             const float *bias, const int rm, const int rn) {
    V acc[RM][RN];
#pragma GCC unroll 8
    for (int r = 0; r < rm; r++)
#pragma GCC unroll 8
        for (int t = 0; t < rn; t++) acc[r][t] = VZERO();
    size_t k = 0;
    for (; k + KV <= n; k += KV) {
        V wv[RM];
#pragma GCC unroll 8
        for (int r = 0; r < rm; r++) wv[r] = load_w(w, (size_t)r * ldw + k, dt);
#pragma GCC unroll 8
        for (int t = 0; t < rn; t++) {
            V xv = VLOAD(x + (size_t)t * ldx + k);
#pragma GCC unroll 8
            for (int r = 0; r < rm; r++) acc[r][t] = VFMA(wv[r], xv, acc[r][t]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < rm; r++)
#pragma GCC unroll 8
        for (int t = 0; t < rn; t++) {
            float s = VRED(acc[r][t]);
            for (size_t kk = k; kk < n; kk++) s += w_scalar(w, (size_t)r * ldw + kk, dt) * x[(size_t)t * ldx + kk];
            y[(size_t)t * ldy + r] = bias ? s + bias[r] : s;
        }
}

/* Decode: every token against rows [r0, r1) straight from the stored weights. */
AI void gemv_dt(const mk_kjob *j, size_t r0, size_t r1, int dt) {
    const size_t n = j->n_in, es = mk_dtypes[dt].elem_bytes;
    size_t r = r0;
    for (; r + RM <= r1; r += RM)
        for (size_t t = 0; t < j->n_tok; t++)
            tile((const uint8_t *)j->w + r * j->ldw * es, j->ldw, dt, j->x + t * j->ldx, 0, j->y + t * j->ldy + r, 0, n,
                 j->bias ? j->bias + r : NULL, RM, 1);
    for (; r < r1; r++)
        for (size_t t = 0; t < j->n_tok; t++)
            tile((const uint8_t *)j->w + r * j->ldw * es, j->ldw, dt, j->x + t * j->ldx, 0, j->y + t * j->ldy + r, 0, n,
                 j->bias ? j->bias + r : NULL, 1, 1);
}

#ifdef VI
/* Decode GEMV for BF16 rows with fewer instructions per weight byte (more of the core's window
 * left for outstanding loads, which is what streaming speed depends on): 2·KV bf16 weights are one
 * integer vector load (VI); the even elements become f32 with a shift, the odd ones with a mask
 * (VBF16_EVEN/ODD), and meet x de-interleaved once per call into xd (VDEINTERLEAVE: even then odd
 * elements of each 2·KV block). The next PF_ROWS rows are prefetched a block ahead: +15% single-
 * core streaming on a 512 MB matrix with AVX-512 (19.5 → 22-23.6 GB/s; 8 or 16 rows ahead was
 * less). Exact: the same f32 products as the generic path, summed in another order. n % 32 == 0. */
#define GEMV_BF16_FAST gemv_bf16_pairs
#ifndef PF_ROWS
#define PF_ROWS 4
#endif
static void gemv_bf16_pairs(const mk_kjob *j, size_t r0, size_t r1, float *xd) {
    const size_t n = j->n_in, B = 2 * KV;
    if (!j->xd_ready || !*j->xd_ready) { /* once per product and thread: +3% streaming (2048-wide rows, Zen 3) */
        for (size_t t = 0; t < j->n_tok; t++)
            for (size_t k = 0; k < n; k += B) VDEINTERLEAVE(j->x + t * j->ldx + k, xd + t * n + k);
        if (j->xd_ready) *j->xd_ready = 1;
    }
    const uint16_t *w = j->w;
    for (size_t r = r0; r < r1; r += 4) {
        const int rm = (int)MK_MIN((size_t)4, r1 - r);
        for (size_t t = 0; t < j->n_tok; t++) {
            const float *d = xd + t * n;
            V acc[4][2];
            for (int i = 0; i < 4; i++) acc[i][0] = acc[i][1] = VZERO();
            if (rm == 4) {
                for (size_t k = 0; k < n; k += B) {
                    const V xe = VLOAD(d + k), xo = VLOAD(d + k + KV);
#pragma GCC unroll 4
                    for (int i = 0; i < 4; i++) {
                        if (k % 32 == 0) _mm_prefetch((const char *)(w + (r + PF_ROWS + (size_t)i) * n + k), _MM_HINT_T0);
                        const VI v = VLOADI(w + (r + (size_t)i) * n + k);
                        acc[i][0] = VFMA(VBF16_EVEN(v), xe, acc[i][0]);
                        acc[i][1] = VFMA(VBF16_ODD(v), xo, acc[i][1]);
                    }
                }
            } else {
                for (int i = 0; i < rm; i++)
                    for (size_t k = 0; k < n; k += B) {
                        const VI v = VLOADI(w + (r + (size_t)i) * n + k);
                        acc[i][0] = VFMA(VBF16_EVEN(v), VLOAD(d + k), acc[i][0]);
                        acc[i][1] = VFMA(VBF16_ODD(v), VLOAD(d + k + KV), acc[i][1]);
                    }
            }
            for (int i = 0; i < rm; i++) {
                const float s = VRED(VADD(acc[i][0], acc[i][1]));
                j->y[t * j->ldy + r + (size_t)i] = j->bias ? s + j->bias[r + (size_t)i] : s;
            }
        }
    }
}
#endif

/* Prefill: rows [r, r + rb) as f32 (wf, row stride n) against every token, tokens outermost in
 * RN tiles so each tile's activations stay in L1 while the L2-resident rows pass under them. */
static void gemm_block(const mk_kjob *j, const float *wf, size_t r, size_t rb, size_t t, size_t T) {
    const size_t n = j->n_in, ldx = j->ldx, ldy = j->ldy;
    for (; t + RN <= T; t += RN) {
        size_t i = 0;
        for (; i + RM <= rb; i += RM)
            tile(wf + i * n, n, MK_DT_F32, j->x + t * ldx, ldx, j->y + t * ldy + r + i, ldy, n,
                 j->bias ? j->bias + r + i : NULL, RM, RN);
        for (; i < rb; i++)
            tile(wf + i * n, n, MK_DT_F32, j->x + t * ldx, ldx, j->y + t * ldy + r + i, ldy, n,
                 j->bias ? j->bias + r + i : NULL, 1, RN);
    }
    for (; t < T; t++) {
        size_t i = 0;
        for (; i + RM <= rb; i += RM)
            tile(wf + i * n, n, MK_DT_F32, j->x + t * ldx, ldx, j->y + t * ldy + r + i, ldy, n,
                 j->bias ? j->bias + r + i : NULL, RM, 1);
        for (; i < rb; i++)
            tile(wf + i * n, n, MK_DT_F32, j->x + t * ldx, ldx, j->y + t * ldy + r + i, ldy, n,
                 j->bias ? j->bias + r + i : NULL, 1, 1);
    }
}

/* Expands rows [r, r + rm) of a 16-bit weight into wbuf (rm, n) f32. */
static void expand_rows(const mk_kjob *j, size_t r, int rm, float *wbuf) {
    const size_t n = j->n_in;
    const uint16_t *w = (const uint16_t *)j->w + r * n;
    for (int i = 0; i < rm; i++) {
        const uint16_t *wr = w + (size_t)i * n;
        float *o = wbuf + (size_t)i * n;
        size_t k = 0;
        if (j->dt == MK_DT_BF16) {
            for (; k + KV <= n; k += KV) VSTORE(o + k, VLOAD_BF16(wr + k));
            for (; k < n; k++) o[k] = mk_bf16_to_f32(mk_kern_ld16(wr, k));
        } else {
            for (; k + KV <= n; k += KV) VSTORE(o + k, VLOAD_F16(wr + k));
            for (; k < n; k++) o[k] = mk_f16_to_f32(mk_kern_ld16(wr, k));
        }
    }
}

#ifdef PACKED_GEMM
/* Prefill as an outer-product GEMM (the BLIS layout): weight rows are packed k-major into panels
 * of MR = MV vectors of rows, so one k step is MV vector loads of weights, NR broadcasts of
 * activations and MV·NR FMAs into MV·NR accumulators that stay in registers for a whole k-chunk
 * (AVX2: 2 × 6 of its 16 registers; AVX-512: its own MV and NR of 32). The packed block (PR rows
 * × KC values of k, f32) sits in L2, the NR tokens' KC activations in L1. Each output's sum runs
 * over k in order (chunk by chunk through y), so the f32 error bound of the header holds. */
#ifndef MV
#define MV 2 /* vectors of rows per panel */
#endif
#define MR (MV * KV)
#ifndef NR
#define NR 6 /* tokens per micro-kernel call */
#endif
#define KC 256
_Static_assert(NR <= 15 && MR % 8 == 0, "the tail switch and the 8-row transposes");

/* C (nt tokens × MR rows, rows nr valid) += panel (kc × MR) · x (nt × kc); first: C = bias or 0. */
AI void ukern(const float *pan, const float *x, size_t ldx, size_t kc, float *y, size_t ldy, const float *bias,
              bool first, int nr, const int nt) {
    V c[NR][MV];
    float tmp[MR];
#pragma GCC unroll 16
    for (int t = 0; t < nt; t++) {
        const float *src = NULL;
        if (!first && nr == MR) {
            src = y + (size_t)t * ldy;
        } else if (!first || bias) {
            for (int i = 0; i < MR; i++) tmp[i] = i < nr ? (!first ? y[(size_t)t * ldy + (size_t)i] : bias[i]) : 0.0f;
            src = tmp;
        }
#pragma GCC unroll 4
        for (int v = 0; v < MV; v++) c[t][v] = src ? VLOAD(src + v * KV) : VZERO();
    }
    for (size_t k = 0; k < kc; k++) {
        V a[MV];
#pragma GCC unroll 4
        for (int v = 0; v < MV; v++) a[v] = VLOAD(pan + k * MR + (size_t)v * KV);
#pragma GCC unroll 16
        for (int t = 0; t < nt; t++) {
            const V b = VBCAST(x + (size_t)t * ldx + k);
#pragma GCC unroll 4
            for (int v = 0; v < MV; v++) c[t][v] = VFMA(a[v], b, c[t][v]);
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < nt; t++) {
        float *dst = nr == MR ? y + (size_t)t * ldy : tmp;
#pragma GCC unroll 4
        for (int v = 0; v < MV; v++) VSTORE(dst + v * KV, c[t][v]);
        if (nr < MR)
            for (int i = 0; i < nr; i++) y[(size_t)t * ldy + (size_t)i] = tmp[i];
    }
}

/* Row rr of the job's weights, values [k0, k0 + kc), as f32 into out. Block-quantized rows are
 * dequantized exactly (k0 and kc are multiples of the block size: KC is 256). */
AI void weight_row_f32(const mk_kjob *j, size_t rr, size_t k0, size_t kc, float *out) {
    size_t k = 0;
    if (j->dt == MK_DT_F32) {
        memcpy(out, (const float *)j->w + rr * j->ldw + k0, kc * sizeof(float));
    } else if (j->dt == MK_DT_BF16) {
        const uint16_t *w = (const uint16_t *)j->w + rr * j->ldw + k0;
        for (; k + KV <= kc; k += KV) VSTORE(out + k, VLOAD_BF16(w + k));
        for (; k < kc; k++) out[k] = mk_bf16_to_f32(mk_kern_ld16(w, k));
    } else if (j->dt == MK_DT_F16) {
        const uint16_t *w = (const uint16_t *)j->w + rr * j->ldw + k0;
        for (; k + KV <= kc; k += KV) VSTORE(out + k, VLOAD_F16(w + k));
        for (; k < kc; k++) out[k] = mk_f16_to_f32(mk_kern_ld16(w, k));
    } else {
        const size_t rb = mk_dtype_row_bytes(j->dt, j->n_in);
        const uint8_t *q = (const uint8_t *)j->w + rr * rb + mk_dtype_row_bytes(j->dt, k0);
#if KV >= 8 /* 256-bit code: AVX2 and AVX-512 */
        if (j->dt == MK_DT_Q8_0) { /* d · q, exact in f32 as in the reference */
            for (size_t b = 0; b < kc / 32; b++, q += 34, out += 32) {
                const __m256 d = _mm256_set1_ps(mk_f16_to_f32(mk_kern_ld16(q, 0)));
                const __m256i v = _mm256_loadu_si256((const __m256i *)(q + 2));
                const __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
                _mm256_storeu_ps(out + 0, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
                _mm256_storeu_ps(out + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
                _mm256_storeu_ps(out + 16, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
                _mm256_storeu_ps(out + 24, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
            }
            return;
        }
        if (j->dt == MK_DT_Q4_K) { /* d·s_j·q − dmin·m_j, multiply then subtract, as the reference */
            for (size_t b = 0; b < kc / 256; b++, q += 144) {
                uint8_t sc[8], mn[8];
                for (int i = 0; i < 4; i++) {
                    sc[i] = q[4 + i] & 63;
                    mn[i] = q[8 + i] & 63;
                    sc[i + 4] = (uint8_t)((q[12 + i] & 0xF) | ((q[4 + i] >> 6) << 4));
                    mn[i + 4] = (uint8_t)((q[12 + i] >> 4) | ((q[8 + i] >> 6) << 4));
                }
                const float d = mk_f16_to_f32(mk_kern_ld16(q, 0)), dm = mk_f16_to_f32(mk_kern_ld16(q, 1));
                const uint8_t *qs = q + 16;
                for (int jj = 0; jj < 4; jj++, qs += 32) {
                    for (int h = 0; h < 2; h++, out += 32) {
                        const __m256 d1 = _mm256_set1_ps(d * sc[2 * jj + h]), m1 = _mm256_set1_ps(dm * mn[2 * jj + h]);
                        for (int l = 0; l < 32; l += 8) {
                            __m128i v = _mm_loadl_epi64((const __m128i *)(qs + l));
                            v = h ? _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0F)) : _mm_and_si128(v, _mm_set1_epi8(0x0F));
                            const __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
                            _mm256_storeu_ps(out + l, _mm256_sub_ps(_mm256_mul_ps(d1, f), m1));
                        }
                    }
                }
            }
            return;
        }
        if (j->dt == MK_DT_Q6_K) { /* (d·s) · (q − 32), as the reference */
            for (size_t b = 0; b < kc / 256; b++, q += 210) {
                const float d = mk_f16_to_f32(mk_kern_ld16(q, 104));
                const int8_t *sc = (const int8_t *)(q + 192);
                const uint8_t *ql = q, *qh = q + 128;
                for (int hh = 0; hh < 2; hh++, ql += 64, qh += 32, sc += 8, out += 128) {
                    for (int kq = 0; kq < 4; kq++)        /* 32 values: nibble kq/2 of ql[(kq&1)·32 + l], qh bits 2kq */
                        for (int l = 0; l < 32; l += 8) {
                            __m128i lo = _mm_loadl_epi64((const __m128i *)(ql + (kq & 1) * 32 + l));
                            lo = kq >= 2 ? _mm_srli_epi16(lo, 4) : lo;
                            lo = _mm_and_si128(lo, _mm_set1_epi8(0x0F));
                            __m128i hi = _mm_loadl_epi64((const __m128i *)(qh + l));
                            hi = _mm_and_si128(_mm_srl_epi16(hi, _mm_cvtsi32_si128(2 * kq)), _mm_set1_epi8(3));
                            const __m128i v = _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
                            const __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
                            _mm256_storeu_ps(out + 32 * kq + l, _mm256_mul_ps(_mm256_set1_ps(d * sc[2 * kq + l / 16]), f));
                        }
                }
            }
            return;
        }
#endif
        mk_dequantize_row(j->dt, q, out, kc);
    }
}

/* Packs rows [r, r + rb) × k [k0, k0 + kc) of the job's weights into panels of MR rows
 * (k-major, rows past rb zero): pan[p·kc·MR + k·MR + i] = W[r + p·MR + i][k0 + k]. */
static void pack_panels(const mk_kjob *j, size_t r, size_t rb, size_t k0, size_t kc, float *pan) {
    const size_t np = (rb + MR - 1) / MR;
    float rows[8][KC];
    for (size_t p = 0; p < np; p++) {
        float *dst = pan + p * kc * MR;
        for (size_t i0 = 0; i0 < MR; i0 += 8) {
            size_t nv = 0; /* valid rows of this group of 8 */
            for (size_t i = 0; i < 8; i++) {
                const size_t rr = p * MR + i0 + i;
                if (rr < rb) {
                    weight_row_f32(j, r + rr, k0, kc, rows[i]);
                    nv++;
                } else {
                    memset(rows[i], 0, kc * sizeof(float));
                }
            }
            (void)nv;
#if KV >= 8
            /* 8 × 8 transposes in registers (256-bit: AVX2 and AVX-512) */
            size_t k = 0;
            for (; k + 8 <= kc; k += 8) {
                __m256 v[8];
                for (int i = 0; i < 8; i++) v[i] = _mm256_loadu_ps(rows[i] + k);
                const __m256 a0 = _mm256_unpacklo_ps(v[0], v[1]), a1 = _mm256_unpackhi_ps(v[0], v[1]);
                const __m256 a2 = _mm256_unpacklo_ps(v[2], v[3]), a3 = _mm256_unpackhi_ps(v[2], v[3]);
                const __m256 a4 = _mm256_unpacklo_ps(v[4], v[5]), a5 = _mm256_unpackhi_ps(v[4], v[5]);
                const __m256 a6 = _mm256_unpacklo_ps(v[6], v[7]), a7 = _mm256_unpackhi_ps(v[6], v[7]);
                const __m256 b0 = _mm256_shuffle_ps(a0, a2, 0x44), b1 = _mm256_shuffle_ps(a0, a2, 0xEE);
                const __m256 b2 = _mm256_shuffle_ps(a1, a3, 0x44), b3 = _mm256_shuffle_ps(a1, a3, 0xEE);
                const __m256 b4 = _mm256_shuffle_ps(a4, a6, 0x44), b5 = _mm256_shuffle_ps(a4, a6, 0xEE);
                const __m256 b6 = _mm256_shuffle_ps(a5, a7, 0x44), b7 = _mm256_shuffle_ps(a5, a7, 0xEE);
                float *o = dst + k * MR + i0;
                _mm256_storeu_ps(o + 0 * MR, _mm256_permute2f128_ps(b0, b4, 0x20));
                _mm256_storeu_ps(o + 1 * MR, _mm256_permute2f128_ps(b1, b5, 0x20));
                _mm256_storeu_ps(o + 2 * MR, _mm256_permute2f128_ps(b2, b6, 0x20));
                _mm256_storeu_ps(o + 3 * MR, _mm256_permute2f128_ps(b3, b7, 0x20));
                _mm256_storeu_ps(o + 4 * MR, _mm256_permute2f128_ps(b0, b4, 0x31));
                _mm256_storeu_ps(o + 5 * MR, _mm256_permute2f128_ps(b1, b5, 0x31));
                _mm256_storeu_ps(o + 6 * MR, _mm256_permute2f128_ps(b2, b6, 0x31));
                _mm256_storeu_ps(o + 7 * MR, _mm256_permute2f128_ps(b3, b7, 0x31));
            }
            for (; k < kc; k++)
                for (size_t i = 0; i < 8; i++) dst[k * MR + i0 + i] = rows[i][k];
#else
            for (size_t k = 0; k < kc; k++)
                for (size_t i = 0; i < 8; i++) dst[k * MR + i0 + i] = rows[i][k];
#endif
        }
    }
}

void FN_GEMM(const mk_kjob *j, size_t r0, size_t r1, float *wbuf) {
    const size_t n = j->n_in, T = j->n_tok;
    const size_t cap = mk_kern_block_rows(n, sizeof(float)) * n; /* floats in wbuf */
    const size_t kcmax = MK_MIN((size_t)KC, n);
    size_t PR = MK_MIN((size_t)128, cap / kcmax / MR * MR);
    for (size_t k0 = 0; k0 < n; k0 += KC) {
        const size_t kc = MK_MIN((size_t)KC, n - k0);
        const bool first = k0 == 0;
        for (size_t r = r0; r < r1; r += PR) {
            const size_t rb = MK_MIN(PR, r1 - r), np = (rb + MR - 1) / MR;
            pack_panels(j, r, rb, k0, kc, wbuf);
            size_t t = 0;
            for (; t + NR <= T; t += NR)
                for (size_t p = 0; p < np; p++)
                    ukern(wbuf + p * kc * MR, j->x + t * j->ldx + k0, j->ldx, kc, j->y + t * j->ldy + r + p * MR, j->ldy,
                          j->bias ? j->bias + r + p * MR : NULL, first, (int)MK_MIN((size_t)MR, rb - p * MR), NR);
            if (t < T) {
                const int nt = (int)(T - t);
                for (size_t p = 0; p < np; p++) {
                    float *pan = wbuf + p * kc * MR, *yy = j->y + t * j->ldy + r + p * MR;
                    const float *xx = j->x + t * j->ldx + k0, *bb = j->bias ? j->bias + r + p * MR : NULL;
                    const int nr = (int)MK_MIN((size_t)MR, rb - p * MR);
                    switch (nt) { /* a compile-time token count for each tail (nt < NR) */
#define TAIL(n) \
    case n: ukern(pan, xx, j->ldx, kc, yy, j->ldy, bb, first, nr, (n) < NR ? (n) : 1); break;
                    TAIL(1) TAIL(2) TAIL(3) TAIL(4) TAIL(5) TAIL(6) TAIL(7) TAIL(8) TAIL(9) TAIL(10) TAIL(11) TAIL(12) TAIL(13) TAIL(14) TAIL(15)
#undef TAIL
                    default: break;
                    }
                }
            }
        }
    }
}
#endif

void FN_ROWS(const mk_kjob *j, size_t r0, size_t r1, float *wbuf) {
    if (j->n_tok <= 2) {
#ifdef GEMV_BF16_FAST
        if (j->dt == MK_DT_BF16 && j->n_in % 32 == 0 && j->ldw == j->n_in && wbuf) {
            GEMV_BF16_FAST(j, r0, r1, wbuf); /* wbuf holds ≥ 8·n_in floats: room for 2 tokens */
            return;
        }
#endif
        if (j->dt == MK_DT_F32) gemv_dt(j, r0, r1, MK_DT_F32);
        else if (j->dt == MK_DT_BF16) gemv_dt(j, r0, r1, MK_DT_BF16);
        else gemv_dt(j, r0, r1, MK_DT_F16);
        return;
    }
#ifdef PACKED_GEMM
    if (j->n_tok >= PACKED_MIN_TOK) {
        FN_GEMM(j, r0, r1, wbuf);
        return;
    }
#endif
    /* f32 activations are twice the bytes of bf16 ones: tokens also go in blocks of TB so a
     * block's activations and the row block share L2 */
    const size_t n = j->n_in, RB = mk_kern_block_rows(n, sizeof(float)), TB = 64;
    for (size_t t0 = 0; t0 < j->n_tok; t0 += TB) {
        const size_t t1 = MK_MIN(j->n_tok, t0 + TB);
        for (size_t r = r0; r < r1; r += RB) {
            const size_t rb = MK_MIN(RB, r1 - r);
            /* f32 rows are copied too: a private L2-resident block measured 2× faster than
             * reading the rows in place */
            if (j->dt == MK_DT_F32)
                for (size_t i = 0; i < rb; i++) memcpy(wbuf + i * n, (const float *)j->w + (r + i) * j->ldw, n * sizeof(float));
            else expand_rows(j, r, (int)rb, wbuf);
            gemm_block(j, wbuf, r, rb, t0, t1);
        }
    }
}

#undef AI
