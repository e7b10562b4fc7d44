/* AVX-512 VNNI prefill product for Q8_0, Q4_K and Q6_K weights (mk_qgemm_avx512vnni, quant.h).
 * Compiled for AVX-512 F/BW/VNNI whatever the build's -march; called only when cpuid says the CPU
 * has them (kernels.c).
 *
 * It multiplies the panels of qpack.h (16 weight rows in the lanes, each group of 4 input elements
 * one 64-byte vector; packed by qkernels_avx2.c, Q6_K's here) with vpdpbusd, which sums four unsigned × signed byte
 * products into each int32 lane in one instruction: a token's 4 activation bytes, broadcast, meet
 * 16 rows per instruction, against two vpmaddubsw plus an int16 add on AVX2, and without AVX2's
 * int16 limit (no widening inside a sub-block). QV_NT tokens pass over the panel together, so each
 * weight vector is loaded once for all of them.
 *   Q4_K: the unsigned weight values against the signed activations; per sub-block the 16 rows'
 *     int32 sums are multiplied by the rows' scales (vpmulld) into the super-block's sum; the mins
 *     go through the activations' block sums, as on AVX2.
 *   Q6_K: the same products, but each sub-block's int32 sums meet the rows' d·s_j as f32 (one
 *     convert and one FMA: vpmulld is two uops on the port vpdpbusd needs, and Q6_K has a scale
 *     per 16 values against Q4_K's per 32); the −32 offset through the activations' block sums.
 *   Q8_0: both operands signed, and vpdpbusd takes one unsigned: the panel holds w + 128, and each
 *     block's sum starts at −128·Σa (the activation row carries its block sums after the blocks,
 *     mk_q8_0_row_sums), so Σ (w + 128)·a − 128·Σa = Σ w·a exactly.
 * For Q8_0 and Q4_K the integer sums are those of the decode kernels and the AVX2 GEMM, and the
 * float operations on them are the AVX2 GEMM's in the same order, so the two GEMMs agree bit for
 * bit; Q6_K's float sums over sub-blocks differ from them in rounding only (worst 5.4e-7 of
 * Σ|w·a| against the reference, bound 1e-6; tests/test_quant.c). */
#include "kernels.h"
#include "qpack.h"
#include "quant.h"

#if defined(__x86_64__) && defined(__GNUC__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")
#endif
#include <immintrin.h>

#define AI static inline __attribute__((always_inline))
#ifndef QV_NT
#define QV_NT 6 /* tokens per pass over the panels (6 and 1 accumulator: the best of 4-8 x 1-2, bench_qgemm) */
#endif
#ifndef QV_NA
#define QV_NA 1 /* accumulators per token (groups alternate between them: vpdpbusd's latency) */
#endif

AI float ld_f16(const uint8_t *p) { return _cvtsh_ss((unsigned short)(p[0] | (p[1] << 8))); }
AI float ld_f32(const uint8_t *p) {
    float f;
    memcpy(&f, p, 4);
    return f;
}
AI int32_t ld_i32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}
AI __m512i bc4(const uint8_t *p) { return _mm512_set1_epi32(ld_i32(p)); }
/* the low int16 of each word (a panel scale word (s, s)) as int32 */
AI __m512i lo16(__m512i v) { return _mm512_srai_epi32(_mm512_slli_epi32(v, 16), 16); }

/* Two panels (rows 0-15 and 16-31 of a 32-row block; R = 1 uses the first only) pass together:
 * each broadcast of a token's 4 activation bytes feeds R vpdpbusd (the broadcasts, not the
 * products, are what bounds a one-panel pass). Per (panel, token) QV_NA accumulators take the
 * groups in turn (vpdpbusd's latency). Arrays are indexed [r][i][t]. */
#define QV_R 2
#define IDX(r, t) ((r) * QV_NT + (t))

AI void zero_acc(__m512i s[QV_R][QV_NA][QV_NT], const int R, const int nt) {
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int i = 0; i < QV_NA; i++)
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) s[r][i][t] = _mm512_setzero_si512();
}
/* panel r, token t: the sum over its accumulators */
AI __m512i sum_acc(__m512i s[QV_R][QV_NA][QV_NT], int r, int t) {
    __m512i v = s[r][0][t];
#pragma GCC unroll 8
    for (int i = 1; i < QV_NA; i++) v = _mm512_add_epi32(v, s[r][i][t]);
    return v;
}

/* s[.][g % NA][t] += panel r's group g (at W[r] + 64g) · token t's 4 bytes at a[t] + off + 4g,
 * for g in [0, ng) */
AI void dp_groups(__m512i s[QV_R][QV_NA][QV_NT], const uint8_t *const *W, const uint8_t *const *a, size_t off, const int ng, const int R,
                  const int nt) {
#pragma GCC unroll 8
    for (int g = 0; g < ng; g++) {
        __m512i w[QV_R];
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) w[r] = _mm512_load_si512((const void *)(W[r] + 64 * g));
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const __m512i x = bc4(a[t] + off + 4 * g);
#pragma GCC unroll 2
            for (int r = 0; r < R; r++) s[r][g % QV_NA][t] = _mm512_dpbusd_epi32(s[r][g % QV_NA][t], w[r], x);
        }
    }
}

/* K-quants: nt tokens' Q8_K rows (a[t], from the slice's first super-block) against ks
 * super-blocks of R panels: acc[IDX(r, t)] (panel r's 16 rows) += Σ. q4: Q4_K's 8 sub-blocks of
 * 32 values (8 groups of 4) with unsigned scales and mins; else Q6_K's 16 sub-blocks of 16 values
 * (4 groups) with signed scales and the −32 offset. */
AI void kq_pass(const mk_kpanel *kp, size_t ks, const uint8_t *const *a, __m512 *acc, const int R, const int nt, const bool q4) {
    const int nsub = q4 ? 8 : 16, ng = 64 / nsub;
    for (size_t b = 0; b < ks; b++) {
        const size_t ao = b * 292;
        const uint8_t *W[QV_R];
        __m512i isum[QV_R][QV_NT];
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            W[r] = kp[r].W + b * 4096;
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) isum[r][t] = _mm512_setzero_si512();
        }
        __m512 fsum[QV_R][QV_NT]; /* Q6_K: Σ_j (d·s_j)·(sub-block j's integer sum) */
        for (int j = 0; j < nsub; j++) {
            __m512i s[QV_R][QV_NA][QV_NT];
            zero_acc(s, R, nt);
            dp_groups(s, W, a, ao + 4 + 4 * (size_t)(ng * j), ng, R, nt);
#pragma GCC unroll 2
            for (int r = 0; r < R; r++) {
                if (q4) {
                    const __m512i sc = lo16(_mm512_load_si512((const void *)(kp[r].SC + b * (size_t)(32 * nsub) + 32 * (size_t)j)));
#pragma GCC unroll 8
                    for (int t = 0; t < nt; t++) isum[r][t] = _mm512_add_epi32(isum[r][t], _mm512_mullo_epi32(sum_acc(s, r, t), sc));
                } else {
                    const __m512 sf = _mm512_load_ps((const float *)(kp[r].SC + b * 512 + 32 * (size_t)j));
#pragma GCC unroll 8
                    for (int t = 0; t < nt; t++)
                        fsum[r][t] = j ? _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum_acc(s, r, t)), sf, fsum[r][t]) : _mm512_mul_ps(_mm512_cvtepi32_ps(sum_acc(s, r, t)), sf);
                }
                W[r] += 64 * ng;
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const uint8_t *at = a[t] + ao;
            const __m512 da = _mm512_set1_ps(ld_f32(at));
            if (q4) {
                /* mins: Σ_j m_j · (the token's sum over sub-block j), sub-blocks in pairs */
                _Alignas(16) int32_t sp[4];
                _mm_store_si128((__m128i *)sp, _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)(at + 260)), _mm_loadu_si128((const __m128i *)(at + 276))));
#pragma GCC unroll 2
                for (int r = 0; r < R; r++) {
                    const int16_t *MP = kp[r].MP + b * 128;
                    __m512i m = _mm512_setzero_si512();
                    for (int p = 0; p < 4; p++) m = _mm512_add_epi32(m, _mm512_madd_epi16(_mm512_load_si512((const void *)(MP + 32 * p)), _mm512_set1_epi32(sp[p])));
                    const __m512 D = _mm512_loadu_ps(kp[r].D + b * QP_ROWS), DM = _mm512_loadu_ps(kp[r].DM + b * QP_ROWS);
                    acc[IDX(r, t)] = _mm512_fmadd_ps(_mm512_mul_ps(D, da), _mm512_cvtepi32_ps(isum[r][t]), acc[IDX(r, t)]);
                    acc[IDX(r, t)] = _mm512_fnmadd_ps(_mm512_mul_ps(DM, da), _mm512_cvtepi32_ps(m), acc[IDX(r, t)]);
                }
            } else {
#pragma GCC unroll 2
                for (int r = 0; r < R; r++) {
                    /* the −32 offset: 32 Σ_j s_j · (the token's sum over sub-block j of 16), in pairs */
                    const int16_t *MP = kp[r].MP + b * 256;
                    __m512i o = _mm512_setzero_si512();
                    for (int p = 0; p < 8; p++) o = _mm512_add_epi32(o, _mm512_madd_epi16(_mm512_load_si512((const void *)(MP + 32 * p)), bc4(at + 260 + 4 * p)));
                    const __m512 v = _mm512_fnmadd_ps(_mm512_mul_ps(_mm512_loadu_ps(kp[r].D + b * QP_ROWS), _mm512_set1_ps(32.0f)), _mm512_cvtepi32_ps(o), fsum[r][t]);
                    acc[IDX(r, t)] = _mm512_fmadd_ps(da, v, acc[IDX(r, t)]);
                }
            }
        }
    }
}

/* Q8_0: nt tokens' Q8_0 rows (a[t], from the slice's first block; sums[t]: their block sums from
 * the same block) against kb blocks of R panels (U[r] = w + 128, D[r] the scales). */
AI void q8_pass(const uint8_t *const *U, const float *const *D, size_t kb, const uint8_t *const *a, const uint8_t *const *sums, __m512 *acc,
                const int R, const int nt) {
    for (size_t b = 0; b < kb; b++) {
        __m512i s[QV_R][QV_NA][QV_NT];
        zero_acc(s, R, nt);
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const __m512i c = _mm512_set1_epi32(-128 * ld_i32(sums[t] + 4 * b));
#pragma GCC unroll 2
            for (int r = 0; r < R; r++) s[r][0][t] = c;
        }
        const uint8_t *Ub[QV_R];
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) Ub[r] = U[r] + 512 * b;
        dp_groups(s, Ub, a, 34 * b + 2, 8, R, nt);
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const __m512 da = _mm512_set1_ps(ld_f16(a[t] + 34 * b));
#pragma GCC unroll 2
            for (int r = 0; r < R; r++)
                acc[IDX(r, t)] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_loadu_ps(D[r] + b * QP_ROWS), da), _mm512_cvtepi32_ps(sum_acc(s, r, t)), acc[IDX(r, t)]);
        }
    }
}

/* ==== Q6_K panel pack (mk_qpack_q6k_avx512: mk_qpack_kq's layout and bytes, except SC, which
 * holds each row's d·s_j as f32 for kq_pass) ====
 * mk_qpack_kq unpacks each row's 6-bit values into bytes and then transposes them with 8×8 AVX2
 * word transposes, and writes the scales one word at a time: 0.4 cycles per weight, a quarter of
 * Q6_K prefill. Here the raw fields are transposed first — a 4-byte group of consecutive values
 * takes its low nibbles from one 32-bit word of ql and its high bits from one word of qh, so a
 * 16×16 word transpose of each row's ql (two) and qh (one) gives every group's 16 rows at once —
 * and the 6-bit values are assembled in the lanes (a shift, two masks, an or per group). The
 * 16 rows' scales are one more transpose, sign-extended and paired in the lanes. */
AI void transpose16_epi32(__m512i r[16]) { /* r[i] lane j ← r[j] lane i */
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* r[4q + c], 128-bit lane L: word 4L + c of rows 4q..4q+3. Gather lane L of r[c], r[4 + c],
     * r[8 + c], r[12 + c] into one vector: word 4L + c of all 16 rows */
    for (int c = 0; c < 4; c++) {
        const __m512i a0 = _mm512_shuffle_i32x4(r[c], r[4 + c], 0x88), a1 = _mm512_shuffle_i32x4(r[c], r[4 + c], 0xDD);
        const __m512i b0 = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], 0x88), b1 = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], 0xDD);
        t[c] = _mm512_shuffle_i32x4(a0, b0, 0x88);
        t[8 + c] = _mm512_shuffle_i32x4(a0, b0, 0xDD);
        t[4 + c] = _mm512_shuffle_i32x4(a1, b1, 0x88);
        t[12 + c] = _mm512_shuffle_i32x4(a1, b1, 0xDD);
    }
    /* t[4L + c]: word 4L + c of every row */
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

void mk_qpack_q6k_avx512(const uint8_t *w, size_t wrb, size_t nrow, size_t b0, size_t ks, const mk_kpanel *kp) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    for (size_t b = 0; b < ks; b++) {
        __m512i L0[16], L1[16], H[16];
        for (size_t i = 0; i < 16; i++) {
            const uint8_t *wb = w + i * wrb + (b0 + b) * 210;
            const bool ok = i < nrow;
            L0[i] = ok ? _mm512_loadu_si512((const void *)wb) : _mm512_setzero_si512();
            L1[i] = ok ? _mm512_loadu_si512((const void *)(wb + 64)) : _mm512_setzero_si512();
            H[i] = ok ? _mm512_loadu_si512((const void *)(wb + 128)) : _mm512_setzero_si512();
            kp->D[b * QP_ROWS + i] = ok ? ld_f16(wb + 208) : 0.0f;
        }
        transpose16_epi32(L0);
        transpose16_epi32(L1);
        transpose16_epi32(H);
        /* value 128h + 32k + l (group 32h + 8k + l/4): the nibble k >> 1 of ql byte 64h + 32(k & 1) + l,
         * bits 2k, 2k + 1 of qh byte 32h + l */
        uint8_t *W = kp->W + b * 4096;
        for (int h = 0; h < 2; h++)
            for (int k = 0; k < 4; k++)
                for (int q = 0; q < 8; q++) {
                    const __m512i lw = (h ? L1 : L0)[8 * (k & 1) + q], hw = H[8 * h + q];
                    const __m512i lo = k >> 1 ? _mm512_srli_epi32(lw, 4) : lw;
                    const __m512i hi = _mm512_and_si512(2 * k <= 4 ? _mm512_slli_epi32(hw, 4 - 2 * k) : _mm512_srli_epi32(hw, 2), m30);
                    _mm512_store_si512((void *)(W + 64 * (32 * h + 8 * k + q)), _mm512_ternarylogic_epi32(lo, m4, hi, 0xEA)); /* (lo & m4) | hi */
                }
        /* scales: row i's 16 int8 at byte 192, as 4 words; word m of all rows after the transpose */
        __m512i S[16];
        for (size_t i = 0; i < 16; i++)
            S[i] = i < nrow ? _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(w + i * wrb + (b0 + b) * 210 + 192))) : _mm512_setzero_si512();
        transpose16_epi32(S);
        float *SC = (float *)(kp->SC + b * 512);
        int32_t *MP = (int32_t *)(kp->MP + b * 256);
        const __m512 D = _mm512_loadu_ps(kp->D + b * QP_ROWS);
        for (int m = 0; m < 4; m++) {
            const __m512i E = _mm512_srai_epi16(_mm512_slli_epi16(S[m], 8), 8), O = _mm512_srai_epi16(S[m], 8); /* words (s0, s2), (s1, s3) */
            const __mmask32 hw = 0xAAAAAAAAu;
            for (int e = 0; e < 4; e++) /* d·s_j, j = 4m + e */
                _mm512_store_ps(SC + 16 * (4 * m + e), _mm512_mul_ps(D, _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(S[m], 24 - 8 * e), 24))));
            _mm512_store_si512((void *)(MP + 16 * (2 * m + 0)), _mm512_mask_blend_epi16(hw, E, _mm512_slli_epi32(O, 16)));
            _mm512_store_si512((void *)(MP + 16 * (2 * m + 1)), _mm512_mask_blend_epi16(hw, _mm512_srli_epi32(E, 16), O));
        }
    }
}

typedef struct vjob {
    mk_dtype wt;
    const mk_kpanel *kp;              /* K-quants: QV_R panels */
    const uint8_t *U[QV_R];           /* Q8_0 */
    const float *D[QV_R];
    size_t ks;                        /* super-blocks (blocks for Q8_0) in the slice */
    size_t ao;                        /* the slice's byte offset in an activation row */
    size_t so;                        /* Q8_0: the slice's block sums' offset in an activation row */
} vjob;

AI void pass(const vjob *v, const uint8_t *xq, size_t arb, size_t t0, __m512 *acc, const int R, const int nt) {
    const uint8_t *a[QV_NT], *sm[QV_NT];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) {
        a[t] = xq + (t0 + (size_t)t) * arb + v->ao;
        sm[t] = xq + (t0 + (size_t)t) * arb + v->so;
    }
    if (v->wt == MK_DT_Q4_K) kq_pass(v->kp, v->ks, a, acc, R, nt, true);
    else if (v->wt == MK_DT_Q6_K) kq_pass(v->kp, v->ks, a, acc, R, nt, false);
    else q8_pass(v->U, v->D, v->ks, a, sm, acc, R, nt);
}

AI void pass_nt(const vjob *v, const uint8_t *xq, size_t arb, size_t t0, __m512 *acc, const int R, int n) {
    switch (n) {
#if QV_NT >= 8
    case 8: pass(v, xq, arb, t0, acc, R, 8); break;
    case 7: pass(v, xq, arb, t0, acc, R, 7); break;
#endif
#if QV_NT >= 6
    case 6: pass(v, xq, arb, t0, acc, R, 6); break;
    case 5: pass(v, xq, arb, t0, acc, R, 5); break;
#endif
    case 4: pass(v, xq, arb, t0, acc, R, 4); break;
    case 3: pass(v, xq, arb, t0, acc, R, 3); break;
    case 2: pass(v, xq, arb, t0, acc, R, 2); break;
    default: pass(v, xq, arb, t0, acc, R, 1); break;
    }
}

/* Every token of the call over one packed slice of R panels: y rows [r0, r0 + nrow) (nrow ≤ 16·R)
 * accumulate (first slice: start from the bias or zero). */
static void slice_tokens(const vjob *v, const uint8_t *xq, size_t arb, size_t nt, float *y, size_t ldy, size_t r0, size_t nrow,
                         const float *bias, bool first) {
    const int R = nrow > QP_ROWS ? 2 : 1;
    __mmask16 m[QV_R];
    for (int r = 0; r < QV_R; r++) {
        const size_t n = nrow > (size_t)r * QP_ROWS ? MK_MIN((size_t)QP_ROWS, nrow - (size_t)r * QP_ROWS) : 0;
        m[r] = (__mmask16)((1u << n) - 1);
    }
    for (size_t t = 0; t < nt; t += QV_NT) {
        const int n = (int)MK_MIN((size_t)QV_NT, nt - t);
        __m512 acc[QV_R * QV_NT];
        for (int r = 0; r < R; r++)
            for (int i = 0; i < n; i++) {
                const size_t ro = r0 + (size_t)r * QP_ROWS;
                acc[IDX(r, i)] = !first ? _mm512_maskz_loadu_ps(m[r], y + (t + (size_t)i) * ldy + ro)
                                 : bias ? _mm512_maskz_loadu_ps(m[r], bias + ro) : _mm512_setzero_ps();
            }
        if (R == 2) pass_nt(v, xq, arb, t, acc, 2, n);
        else pass_nt(v, xq, arb, t, acc, 1, n);
        for (int r = 0; r < R; r++)
            for (int i = 0; i < n; i++) _mm512_mask_storeu_ps(y + (t + (size_t)i) * ldy + r0 + (size_t)r * QP_ROWS, m[r], acc[IDX(r, i)]);
    }
}

/* ==== Decode: four Q8_0 rows against one Q8_0 activation row (mk_qdot4_q8_0_avx512vnni) ====
 * A zmm holds two blocks' 32 quants (two loads, the second merged into the upper half past the
 * scale between them). vpdpbusd wants one unsigned operand: the weights go in as w ^ 0x80 = w + 128
 * and each block's sum starts at −128·Σa (one vpdpbusd of the activations with 128s, shared by the
 * four rows), so every lane holds an exact integer partial sum of Σ w·a. The scales d_w·d_a of 16
 * blocks are made at once (the f16 fields gathered 34 bytes apart) and each block pair's pair of
 * them spread over its lanes by one permute. Per block and row that is about 4 vector operations
 * against the AVX2 kernel's 9 (whose float scale work per block dominated): decode streams the
 * weights, and the faster the core consumes them the more loads it keeps in flight. */
AI __m512i q8_pair(const uint8_t *blk) { /* quants of blocks blk, blk + 34 */
    const __m512i lo = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(blk + 2)));
    return _mm512_mask_loadu_epi8(lo, (__mmask64)0xFFFFFFFF00000000ull, blk + 4);
}
AI __m512 q8_scales16(const uint8_t *blk) { /* the f16 d of 16 blocks from blk, as f32 */
    const __m512i off = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(34));
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_i32gather_epi32(off, (const void *)blk, 1)));
}

void mk_qdot4_q8_0_avx512vnni(size_t n, const void *vw, size_t wrb, const void *va, float *out) {
    const uint8_t *w = vw, *a = va;
    const size_t nb = n / MK_QK8_0;
    const __m512i x80 = _mm512_set1_epi8((char)0x80);
    __m512 acc[4];
    for (int i = 0; i < 4; i++) acc[i] = _mm512_setzero_ps();
    size_t b0 = 0;
    for (; b0 + 16 <= nb; b0 += 16) {
        const uint8_t *ab = a + 34 * b0;
        const __m512 da = q8_scales16(ab);
        __m512 sc[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) sc[i] = _mm512_mul_ps(q8_scales16(w + (size_t)i * wrb + 34 * b0), da);
#pragma GCC unroll 2
        for (int p = 0; p < 8; p++) {
            const __m512i A = q8_pair(ab + 68 * p);
            const __m512i c = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), x80, A));
            const __m512i sel = _mm512_set_epi32(2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1,
                                                 2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p);
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                const uint8_t *wb = w + (size_t)i * wrb + 34 * (b0 + 2 * (size_t)p);
                _mm_prefetch((const char *)wb + 4 * wrb, _MM_HINT_T0);
                const __m512i S = _mm512_dpbusd_epi32(c, _mm512_xor_si512(q8_pair(wb), x80), A);
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S), _mm512_permutexvar_ps(sel, sc[i]), acc[i]);
            }
        }
    }
    for (; b0 < nb; b0++) { /* the last n/32 mod 16 blocks, one at a time */
        const uint8_t *ab = a + 34 * b0;
        const __m256i A = _mm256_loadu_si256((const __m256i *)(ab + 2));
        const __m256i c = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8((char)0x80), A));
        for (int i = 0; i < 4; i++) {
            const uint8_t *wb = w + (size_t)i * wrb + 34 * b0;
            const __m256i S = _mm256_dpbusd_epi32(c, _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(wb + 2)), _mm256_set1_epi8((char)0x80)), A);
            const __m512 d = _mm512_set1_ps(ld_f16(wb) * ld_f16(ab));
            acc[i] = _mm512_fmadd_ps(_mm512_castps256_ps512(_mm256_cvtepi32_ps(S)), d, acc[i]);
        }
    }
    for (int i = 0; i < 4; i++) out[i] = _mm512_reduce_add_ps(acc[i]);
}

/* ==== Decode: four Q4_K or Q6_K rows against one Q8_K activation row ====
 * vpdpbusd sums 4 products of a row's unsigned values (Q4_K's nibbles, Q6_K's 6-bit q) with the
 * activations per int32 lane. Those lane sums fit in int16 (|4·15·128| and |4·63·128| ≤ 32256), so
 * a second VNNI instruction, vpdpwssd against words (s_j, 0), multiplies each by its sub-block's
 * scale and accumulates it: two instructions per 64 values and no horizontal sums inside the
 * super-block. The scale words are spread over the lanes by one byte shuffle (Q4_K, per two
 * vectors of lane sums packed to int16) or one word permute (Q6_K) per 64 values. The
 * AVX2 kernels run out of issue slots before memory does (16 GB/s for Q4_K from L2 on one core of
 * this machine, about what one core streams from DRAM); these do the same exact integer sums in
 * about half the vector operations, the activation work shared by the four rows. */
/* Q6_K: lane L of the 64 values from sub-block first on (word 2L) ← scale word first + L / 4, the
 * odd words zero */
AI __m512i q6k_scale_words(__m512i s16, const int first) {
    _Alignas(64) int16_t idx[32];
    for (int L = 0; L < 16; L++) {
        idx[2 * L] = (int16_t)(first + L / 4);
        idx[2 * L + 1] = 0;
    }
    return _mm512_maskz_permutexvar_epi16(0x55555555u, _mm512_load_si512((const void *)idx), s16);
}

/* Q4_K's 12 scale bytes (at p) → its 8 scales (bytes 0-7) and 8 mins (bytes 8-15), ggml's bit
 * layout (j < 4: the low 6 bits of bytes j, j + 4; j ≥ 4: nibbles of byte j + 4 and the top 2
 * bits of bytes j − 4, j), in a handful of byte shuffles and masks */
AI __m128i q4k_scales_mins(const uint8_t *p) {
    const __m128i x = _mm_loadu_si128((const __m128i *)p); /* 12 bytes and 4 of the quants after them */
    const __m128i A = _mm_shuffle_epi8(x, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    const __m128i B = _mm_shuffle_epi8(x, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    const __m128i lo = _mm_or_si128(_mm_and_si128(A, _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0)),
                                    _mm_and_si128(_mm_srli_epi16(A, 4), _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15)));
    return _mm_or_si128(lo, _mm_and_si128(_mm_srli_epi16(B, 2), _mm_set1_epi8(0x30)));
}

void mk_qdot4_q4_K_avx512vnni(size_t n, const void *vw, size_t wrb, const void *va, float *out) {
    const uint8_t *w = vw, *a = va;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    /* The lane sums of a 64-byte vector of nibbles hold two sub-blocks (the first 8 lanes and the
     * last 8); two such vectors packed to int16 (vpackssdw, per 128-bit lane: 4 words of each)
     * meet their scales as words with one vpdpwssd. Scale bytes → words per 128-bit lane k:
     * words 0-3 ← the first vector's sub-block, 4-7 ← the second's (k < 2: low sub-blocks). */
    const __m512i c01 = _mm512_set_epi8(-1, 3, -1, 3, -1, 3, -1, 3, -1, 2, -1, 2, -1, 2, -1, 2, -1, 3, -1, 3, -1, 3, -1, 3, -1, 2, -1, 2, -1, 2, -1, 2,
                                        -1, 1, -1, 1, -1, 1, -1, 1, -1, 0, -1, 0, -1, 0, -1, 0, -1, 1, -1, 1, -1, 1, -1, 1, -1, 0, -1, 0, -1, 0, -1, 0);
    const __m512i c23 = _mm512_add_epi8(c01, _mm512_set1_epi16(4)); /* sub-blocks 4-7 (the -1 bytes stay negative: zero) */
    __m512 acc[4];
    __m128 accm[4];
    for (int i = 0; i < 4; i++) acc[i] = _mm512_setzero_ps(), accm[i] = _mm_setzero_ps();
    for (size_t b = 0; b < n / MK_QK_K; b++) {
        const uint8_t *ab = a + 292 * b, *q8 = ab + 4;
        /* sub-blocks (0, 2), (1, 3), (4, 6), (5, 7): the pairs one 64-byte load of nibbles holds */
        __m512i A[4];
        for (int c = 0; c < 2; c++)
            for (int hi = 0; hi < 2; hi++)
                A[2 * c + hi] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(q8 + 128 * c + 32 * hi))),
                                                   _mm256_loadu_si256((const __m256i *)(q8 + 128 * c + 64 + 32 * hi)), 1);
        const __m128 da = _mm_set1_ps(ld_f32(ab));
        const __m128i bp = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)(ab + 260)), _mm_loadu_si128((const __m128i *)(ab + 276)));
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            const uint8_t *wb = w + (size_t)i * wrb + 144 * b;
            for (int l = 0; l < 3; l++) _mm_prefetch((const char *)wb + 4 * wrb + 64 * l, _MM_HINT_T0);
            const __m128 dd = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(ld_i32(wb))), da); /* d·da, dmin·da */
            const __m128i sm = q4k_scales_mins(wb + 4);
            accm[i] = _mm_fmadd_ps(_mm_shuffle_ps(dd, dd, 0x55), _mm_cvtepi32_ps(_mm_madd_epi16(_mm_cvtepu8_epi16(_mm_srli_si128(sm, 8)), bp)), accm[i]);
            const __m512i sb = _mm512_broadcast_i32x4(sm);
            __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 2
            for (int c = 0; c < 2; c++) {
                const __m512i q = _mm512_loadu_si512((const void *)(wb + 16 + 64 * c));
                const __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
                const __m512i x = _mm512_packs_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, A[2 * c]), _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, A[2 * c + 1]));
                isum = _mm512_dpwssd_epi32(isum, x, _mm512_shuffle_epi8(sb, c ? c23 : c01));
            }
            acc[i] = _mm512_fmadd_ps(_mm512_broadcastss_ps(dd), _mm512_cvtepi32_ps(isum), acc[i]);
        }
    }
    for (int i = 0; i < 4; i++) {
        __m128 m = _mm_add_ps(accm[i], _mm_movehl_ps(accm[i], accm[i]));
        m = _mm_add_ss(m, _mm_movehdup_ps(m));
        out[i] = _mm512_reduce_add_ps(acc[i]) - _mm_cvtss_f32(m);
    }
}

void mk_qdot4_q6_K_avx512vnni(size_t n, const void *vw, size_t wrb, const void *va, float *out) {
    const uint8_t *w = vw, *a = va;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    /* the high bits of value 128h + 32k + l are bits 2k, 2k + 1 of qh byte 32h + l; a 64-byte
     * vector holds k = 0, 1 (low nibbles of ql) or k = 2, 3 (high nibbles), each half its own shift */
    const __m512i shl = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i shr = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    __m512 acc[4];
    for (int i = 0; i < 4; i++) acc[i] = _mm512_setzero_ps();
    for (size_t b = 0; b < n / MK_QK_K; b++) {
        const uint8_t *ab = a + 292 * b;
        __m512i A[4];
        for (int m = 0; m < 4; m++) A[m] = _mm512_loadu_si512((const void *)(ab + 4 + 64 * m));
        const __m256i bs = _mm256_loadu_si256((const __m256i *)(ab + 260));
        const float da = ld_f32(ab);
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            const uint8_t *wb = w + (size_t)i * wrb + 210 * b;
            for (int l = 0; l < 4; l++) _mm_prefetch((const char *)wb + 4 * wrb + 64 * l, _MM_HINT_T0);
            const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wb + 192)));
            const __m512i s16z = _mm512_castsi256_si512(s16);
            /* the −32 offset: 32 Σ_j s_j · (the activations' sum over sub-block j) */
            const __m512i corr = _mm512_castsi256_si512(_mm256_slli_epi32(_mm256_madd_epi16(s16, bs), 5));
            __m512i isum = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_maskz_mov_epi32(0x00FF, corr));
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                const __m512i L = _mm512_loadu_si512((const void *)(wb + 64 * h));
                const __m512i H = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(wb + 128 + 32 * h)));
                const __m512i v0 = _mm512_ternarylogic_epi32(L, m4, _mm512_and_si512(_mm512_sllv_epi16(H, shl), m30), 0xEA);
                const __m512i v1 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(L, 4), m4, _mm512_and_si512(_mm512_srlv_epi16(H, shr), m30), 0xEA);
                isum = _mm512_dpwssd_epi32(isum, _mm512_dpbusd_epi32(_mm512_setzero_si512(), v0, A[2 * h]), q6k_scale_words(s16z, 8 * h));
                isum = _mm512_dpwssd_epi32(isum, _mm512_dpbusd_epi32(_mm512_setzero_si512(), v1, A[2 * h + 1]), q6k_scale_words(s16z, 8 * h + 4));
            }
            acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(ld_f16(wb + 208) * da), _mm512_cvtepi32_ps(isum), acc[i]);
        }
    }
    for (int i = 0; i < 4; i++) out[i] = _mm512_reduce_add_ps(acc[i]);
}

size_t mk_qgemm_scratch_avx512vnni(mk_dtype wt, size_t n_in) {
    (void)n_in;
    return QV_R * (wt == MK_DT_Q8_0 ? mk_qpack_q8_bytes() : mk_qpack_kq_bytes());
}

bool mk_qgemm_avx512vnni(mk_dtype wt, size_t n_in, const void *vw, size_t wrb, size_t nr, const void *vxq, size_t arb, size_t nt, float *y,
                         size_t ldy, const float *bias, void *scratch) {
    if (wt != MK_DT_Q8_0 && wt != MK_DT_Q4_K && wt != MK_DT_Q6_K) return false;
    const uint8_t *w = vw, *xq = vxq;
    const bool q8 = wt == MK_DT_Q8_0;
    const size_t bel = q8 ? MK_QK8_0 : MK_QK_K, bab = q8 ? 34 : 292, nb = n_in / bel, slice = q8 ? QP_Q8_KB : QP_KS;
    const size_t pb = q8 ? mk_qpack_q8_bytes() : mk_qpack_kq_bytes();
    mk_kpanel kp[QV_R];
    uint8_t *W[QV_R], *U[QV_R];
    float *D[QV_R];
    vjob v = {.wt = wt, .kp = kp};
    for (int r = 0; r < QV_R; r++) {
        if (q8) mk_qpack_q8_layout((uint8_t *)scratch + (size_t)r * pb, &W[r], &U[r], &D[r]);
        else kp[r] = mk_qpack_kq_layout((uint8_t *)scratch + (size_t)r * pb);
        v.U[r] = U[r], v.D[r] = D[r];
    }
    for (size_t r0 = 0; r0 < nr; r0 += QV_R * QP_ROWS) {
        const size_t nrow = MK_MIN((size_t)QV_R * QP_ROWS, nr - r0);
        for (size_t b0 = 0; b0 < nb; b0 += slice) {
            v.ks = MK_MIN(slice, nb - b0);
            v.ao = b0 * bab;
            v.so = nb * 34 + 4 * b0;
            for (size_t r = 0; r * QP_ROWS < nrow; r++) {
                const size_t rr = r0 + r * QP_ROWS, n = MK_MIN((size_t)QP_ROWS, nrow - r * QP_ROWS);
                if (q8) mk_qpack_q8(w + rr * wrb, wrb, n, b0, v.ks, W[r], U[r], D[r], true);
                else if (wt == MK_DT_Q6_K) mk_qpack_q6k_avx512(w + rr * wrb, wrb, n, b0, v.ks, &kp[r]);
                else mk_qpack_kq(wt, w + rr * wrb, wrb, n, b0, v.ks, &kp[r]);
            }
            slice_tokens(&v, xq, arb, nt, y, ldy, r0, nrow, bias, b0 == 0);
        }
    }
    return true;
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
void mk_qdot4_q8_0_avx512vnni(size_t n, const void *w, size_t wrb, const void *a, float *out) {
    (void)n, (void)w, (void)wrb, (void)a, (void)out;
}
void mk_qdot4_q4_K_avx512vnni(size_t n, const void *w, size_t wrb, const void *a, float *out) {
    (void)n, (void)w, (void)wrb, (void)a, (void)out;
}
void mk_qdot4_q6_K_avx512vnni(size_t n, const void *w, size_t wrb, const void *a, float *out) {
    (void)n, (void)w, (void)wrb, (void)a, (void)out;
}
size_t mk_qgemm_scratch_avx512vnni(mk_dtype wt, size_t n_in) {
    (void)wt, (void)n_in;
    return 0;
}
bool mk_qgemm_avx512vnni(mk_dtype wt, size_t n_in, const void *w, size_t wrb, size_t nr, const void *xq, size_t arb, size_t nt, float *y,
                         size_t ldy, const float *bias, void *scratch) {
    (void)wt, (void)n_in, (void)w, (void)wrb, (void)nr, (void)xq, (void)arb, (void)nt, (void)y, (void)ldy, (void)bias, (void)scratch;
    return false;
}
#endif
