/* AVX2 dot products of block-quantized weight rows with quantized activations (the SIMD variants
 * of mk_vec_dot_ref, quant.h): Q8_0, Q4_0 and MXFP4 against Q8_0 activations, Q4_K and Q6_K
 * against Q8_K. Compiled for AVX2/FMA/F16C whatever the build's -march and called only when cpuid says
 * the CPU has them (kernels.c). The integer part of every block is exact, as in the reference;
 * only the order of the float additions differs (bound: tests/test_quant.c).
 *
 * The integer products use the unsigned × signed byte multiply (vpmaddubsw): for two signed
 * operands the weight's sign moves onto the activation first (|w| · sign(w)·a); 4-bit and 6-bit
 * weights are unsigned already, and their offsets (-8, -32) are applied through the activation sums. */
#include "kernels.h"
#include "quant.h"
#include "qpack.h"

#if defined(__x86_64__) && defined(__GNUC__)
/* gcc: a target pragma for the whole file; clang ignores it and takes the same features as an
 * attribute on every function (the intrinsics need them whatever the build's -march) */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#include <immintrin.h>
#include <pthread.h>

#define AI static inline __attribute__((always_inline))
#define QPF 4096




AI float ld_f16(const uint8_t *p) { return _cvtsh_ss((unsigned short)(p[0] | (p[1] << 8))); }
AI float ld_f32(const uint8_t *p) {
    float f;
    memcpy(&f, p, 4);
    return f;
}

AI float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Σ pairs of signed bytes a·b as 8 int32 lanes (each lane: 4 products). */
AI __m256i dot_i8(__m256i a, __m256i b) {
    const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

/* ---- Q8_0 · Q8_0: 32 weights (f16 d, i8 q[32]) per block */
static float dot_q8_0(size_t n, const void *vw, const void *va) {
    const uint8_t *w = vw, *a = va;
    const size_t nb = n / MK_QK8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t b = 0;
    for (; b + 2 <= nb; b += 2, w += 68, a += 68) {
        _mm_prefetch((const char *)w + QPF, _MM_HINT_T0);
        const __m256i p0 = dot_i8(_mm256_loadu_si256((const __m256i *)(w + 2)), _mm256_loadu_si256((const __m256i *)(a + 2)));
        const __m256i p1 = dot_i8(_mm256_loadu_si256((const __m256i *)(w + 36)), _mm256_loadu_si256((const __m256i *)(a + 36)));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(w) * ld_f16(a)), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(w + 34) * ld_f16(a + 34)), _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; b < nb; b++, w += 34, a += 34) {
        const __m256i p = dot_i8(_mm256_loadu_si256((const __m256i *)(w + 2)), _mm256_loadu_si256((const __m256i *)(a + 2)));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(w) * ld_f16(a)), _mm256_cvtepi32_ps(p), acc0);
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

/* ---- Q4_0 · Q8_0: 32 weights (f16 d, 16 bytes of nibbles: low = elements 0-15, high = 16-31),
 * value = nibble - 8 */
AI __m256i q4_0_bytes(const uint8_t *q) {
    const __m128i v = _mm_loadu_si128((const __m128i *)q);
    const __m256i b = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
    return _mm256_sub_epi8(_mm256_and_si256(b, _mm256_set1_epi8(0x0F)), _mm256_set1_epi8(8));
}

static float dot_q4_0(size_t n, const void *vw, const void *va) {
    const uint8_t *w = vw, *a = va;
    const size_t nb = n / MK_QK4_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t b = 0;
    for (; b + 2 <= nb; b += 2, w += 36, a += 68) {
        _mm_prefetch((const char *)w + QPF, _MM_HINT_T0);
        const __m256i p0 = dot_i8(q4_0_bytes(w + 2), _mm256_loadu_si256((const __m256i *)(a + 2)));
        const __m256i p1 = dot_i8(q4_0_bytes(w + 20), _mm256_loadu_si256((const __m256i *)(a + 36)));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(w) * ld_f16(a)), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(w + 18) * ld_f16(a + 34)), _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; b < nb; b++, w += 18, a += 34) {
        const __m256i p = dot_i8(q4_0_bytes(w + 2), _mm256_loadu_si256((const __m256i *)(a + 2)));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(w) * ld_f16(a)), _mm256_cvtepi32_ps(p), acc0);
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

/* ---- MXFP4 · Q8_0: 32 weights (u8 e, 16 bytes of nibbles: low = elements 0-15, high = 16-31),
 * value = kv[nibble] (doubled E2M1, −12..12) through a byte shuffle; scale 2^(e−128). */
AI __m256i mxfp4_bytes(const uint8_t *q, __m256i lut) {
    const __m128i v = _mm_loadu_si128((const __m128i *)q);
    const __m256i b = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
    return _mm256_shuffle_epi8(lut, _mm256_and_si256(b, _mm256_set1_epi8(0x0F)));
}

/* 2^(e−128) for every E8M0 byte e (mk_e8m0_half), one load instead of the bit assembly */
static float e8m0_half_lut[256];
static pthread_once_t e8m0_once = PTHREAD_ONCE_INIT;
static void e8m0_init(void) {
    for (int e = 0; e < 256; e++) e8m0_half_lut[e] = mk_e8m0_half((uint8_t)e);
}

static float dot_mxfp4(size_t n, const void *vw, const void *va) {
    const uint8_t *w = vw, *a = va;
    const size_t nb = n / MK_QK_MXFP4;
    const __m128i kv = _mm_loadu_si128((const __m128i *)mk_mxfp4_kv);
    const __m256i lut = _mm256_set_m128i(kv, kv);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t b = 0;
    for (; b + 4 <= nb; b += 4, w += 68, a += 136) { /* one prefetch per 68 bytes (a cache line) */
        _mm_prefetch((const char *)w + QPF, _MM_HINT_T0);
        const __m256i p0 = dot_i8(mxfp4_bytes(w + 1, lut), _mm256_loadu_si256((const __m256i *)(a + 2)));
        const __m256i p1 = dot_i8(mxfp4_bytes(w + 18, lut), _mm256_loadu_si256((const __m256i *)(a + 36)));
        const __m256i p2 = dot_i8(mxfp4_bytes(w + 35, lut), _mm256_loadu_si256((const __m256i *)(a + 70)));
        const __m256i p3 = dot_i8(mxfp4_bytes(w + 52, lut), _mm256_loadu_si256((const __m256i *)(a + 104)));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(a) * e8m0_half_lut[w[0]]), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(a + 34) * e8m0_half_lut[w[17]]), _mm256_cvtepi32_ps(p1), acc1);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(a + 68) * e8m0_half_lut[w[34]]), _mm256_cvtepi32_ps(p2), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(a + 102) * e8m0_half_lut[w[51]]), _mm256_cvtepi32_ps(p3), acc1);
    }
    for (; b < nb; b++, w += 17, a += 34) {
        const __m256i p = dot_i8(mxfp4_bytes(w + 1, lut), _mm256_loadu_si256((const __m256i *)(a + 2)));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(a) * e8m0_half_lut[w[0]]), _mm256_cvtepi32_ps(p), acc0);
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

/* ---- Q4_K · Q8_K: 256 weights = 8 sub-blocks of 32 with 6-bit scale s_j and min m_j;
 * w = d·s_j·q − dmin·m_j. Σ w·a = d·da·Σ_j s_j Σ q·a − dmin·da·Σ_j m_j·(a's sum over sub-block j),
 * the second sum from the activation block's 16-element sums. */
static float dot_q4_K(size_t n, const void *vw, const void *va) {
    const uint8_t *w = vw, *a = va;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    /* min j to the i16 lanes 2j and 2j+1, against the activation's 16-element sums 2j and 2j+1
     * (the two halves of sub-block j): one 256-bit multiply-add, no horizontal add */
    const __m128i dup = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (size_t b = 0; b < n / MK_QK_K; b++, w += 144, a += 292) {
        _mm_prefetch((const char *)w + QPF, _MM_HINT_T0);
        _mm_prefetch((const char *)w + QPF + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)w + QPF + 128, _MM_HINT_T0);
        /* the 12 scale bytes → 8 scales and 8 mins (ggml's bit layout), assembled in general
         * registers and moved to vectors from there: written to a stack array and loaded back 8
         * bytes at a time (two 4-byte stores under one load), every load missed the store
         * forwarding and stalled, which held this kernel to ~11 GB/s a core (0.58 of a plain
         * read on 2 threads of Zen 3). In vector registers the unpacking was slower still: the
         * vector pipes are this kernel's bottleneck, the integer ones have room. */
        uint32_t dd, u0, u1, u2;
        memcpy(&dd, w, 4);
        memcpy(&u0, w + 4, 4);
        memcpy(&u1, w + 8, 4);
        memcpy(&u2, w + 12, 4);
        const uint64_t scl = (uint64_t)(u0 & 0x3f3f3f3fu) | (uint64_t)((u2 & 0x0f0f0f0fu) | (((u0 >> 6) & 0x03030303u) << 4)) << 32;
        const uint64_t mnl = (uint64_t)(u1 & 0x3f3f3f3fu) | (uint64_t)(((u2 >> 4) & 0x0f0f0f0fu) | (((u1 >> 6) & 0x03030303u) << 4)) << 32;
        /* (d, dmin) · da: both halves converted at once */
        const __m128 dm = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)dd)), _mm_broadcast_ss((const float *)a));
        /* Σ_j m_j · (bsum[2j] + bsum[2j+1]) */
        const __m256i mn = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(_mm_cvtsi64_si128((long long)mnl), dup));
        const __m256i pm = _mm256_madd_epi16(mn, _mm256_loadu_si256((const __m256i *)(a + 260)));
        accm = _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(dm)), _mm256_cvtepi32_ps(pm), accm);
        const uint8_t *q4 = w + 16;
        const int8_t *q8 = (const int8_t *)(a + 4);
        /* the 8 scales as i16 in both 128-bit lanes; sub-block i's scale is the i16 pair (2i, 2i+1) */
        const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)scl)));
        __m256i isum = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++, q4 += 32, q8 += 64) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)q4);
            const __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            const __m256i pl = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)q8));
            const __m256i ph = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 32)));
            const __m256i sl = _mm256_shuffle_epi8(sc, _mm256_set1_epi16((short)(((4 * j + 1) << 8) | (4 * j))));
            const __m256i sh = _mm256_shuffle_epi8(sc, _mm256_set1_epi16((short)(((4 * j + 3) << 8) | (4 * j + 2))));
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(_mm256_madd_epi16(pl, sl), _mm256_madd_epi16(ph, sh)));
        }
        acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(dm), _mm256_cvtepi32_ps(isum), acc);
    }
    return hsum(acc) - hsum(accm);
}

/* ---- Q6_K · Q8_K: 256 weights = 16 sub-blocks of 16 with an int8 scale; 6-bit q (low 4 bits in
 * ql, high 2 in qh), w = d·s_j·(q − 32). Σ w·a = d·da·(Σ_j s_j Σ q·a − 32 Σ_j s_j·bsum_j). */
static float dot_q6_K(size_t n, const void *vw, const void *va) {
    const uint8_t *w = vw, *a = va;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps();
    for (size_t b = 0; b < n / MK_QK_K; b++, w += 210, a += 292) {
        for (int i = 0; i < 4; i++) _mm_prefetch((const char *)w + QPF + 64 * i, _MM_HINT_T0);
        const int8_t *sc = (const int8_t *)(w + 192);
        const float d = ld_f16(w + 208) * ld_f32(a);
        /* Σ_j s_j · bsum_j over the 16 sub-blocks */
        const __m256i pc = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc)),
                                             _mm256_loadu_si256((const __m256i *)(a + 260)));
        __m128i c4 = _mm_add_epi32(_mm256_castsi256_si128(pc), _mm256_extracti128_si256(pc, 1));
        c4 = _mm_add_epi32(c4, _mm_shuffle_epi32(c4, 0x4E));
        c4 = _mm_add_epi32(c4, _mm_shuffle_epi32(c4, 0xB1));
        const int corr = _mm_cvtsi128_si32(c4);
        const uint8_t *ql = w, *qh = w + 128;
        const int8_t *q8 = (const int8_t *)(a + 4);
        __m256i isum = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++, ql += 64, qh += 32, q8 += 128, sc += 8) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql), l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            const __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
            __m256i q[4];
            /* the high bit pairs 0-1, 2-3, 4-5, 6-7 of hb go to bits 4-5: one shift (bits that cross
             * a byte in the 16-bit shift fall outside the mask) and one mask each */
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hb, m30));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30));
            /* this half's 8 scales as int16 in both 128-bit lanes; q[k] takes scale 2k in its low
             * lane and 2k+1 in its high lane: one byte shuffle each */
            const __m256i sch = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)sc)));
            for (int k = 0; k < 4; k++) {
                const __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(q8 + 32 * k)));
                const __m256i s = _mm256_shuffle_epi8(sch, _mm256_set_m128i(_mm_set1_epi16((short)(((4 * k + 3) << 8) | (4 * k + 2))),
                                                                           _mm_set1_epi16((short)(((4 * k + 1) << 8) | (4 * k)))));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, s));
            }
        }
        isum = _mm256_sub_epi32(isum, _mm256_setr_epi32(32 * corr, 0, 0, 0, 0, 0, 0, 0));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
    }
    return hsum(acc);
}

/* ==== Prefill (mk_qgemm_avx2): y[t·ldy + r] = Σ w_r · a_t (+ bias[r]) for nr rows, nt tokens ====
 * The integer sums equal the decode kernels' (exact); the float accumulation order differs
 * (bound: tests/test_quant.c).
 * Every type packs a panel of 16 weight rows (the vector lanes) × a slice of the input once, in the
 * "VNNI layout" (for each group of 4 consecutive elements, 32 bytes = rows 0-7's 4 values, then
 * rows 8-15's), and every token passes over it: one broadcast of a token's 4 activation bytes
 * meets 16 rows in two vpmaddubsw. */

/* The 8×8 transpose of 32-bit words: row i of the result = word i of each input row. */
AI void transpose8_epi32(__m256i r[8]) {
    __m256 a[8], b[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i += 2) {
        a[i] = _mm256_unpacklo_ps(_mm256_castsi256_ps(r[i]), _mm256_castsi256_ps(r[i + 1]));
        a[i + 1] = _mm256_unpackhi_ps(_mm256_castsi256_ps(r[i]), _mm256_castsi256_ps(r[i + 1]));
    }
#pragma GCC unroll 8
    for (int i = 0; i < 8; i += 4)
#pragma GCC unroll 8
        for (int j = 0; j < 2; j++) {
            b[i + j] = _mm256_shuffle_ps(a[i + j], a[i + j + 2], 0x44);
            b[i + j + 2] = _mm256_shuffle_ps(a[i + j], a[i + j + 2], 0xEE);
        }
    /* b[0]: words 0 of rows 0-3 | 0 of 4-7 in the other half, etc. */
    const int order[8] = {0, 2, 1, 3, 0, 2, 1, 3};
#pragma GCC unroll 8
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_castps_si256(_mm256_permute2f128_ps(b[order[i]], b[order[i] + 4], 0x20));
        r[i + 4] = _mm256_castps_si256(_mm256_permute2f128_ps(b[order[i]], b[order[i] + 4], 0x31));
    }
}

AI __m256i bcast4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* ==== K-quants: 16 weight rows in the lanes, a token's 4 activations broadcast ====
 * For Q4_K and Q6_K a panel of 16 rows × a slice of KS super-blocks is unpacked once into bytes in
 * the VNNI layout (for each group g of 4 elements, 32 bytes = rows 0-7's 4 values, then 32 bytes =
 * rows 8-15's), with each sub-block's scales as int16 lane pairs, and the tokens of the call pass
 * over it KT_NT at a time (each weight vector loaded once for all of them): one broadcast of a
 * token's 4 activation bytes feeds a vpmaddubsw per 8 rows, the products of a sub-block are summed
 * in int16 (≤ 8·15·127·2 for Q4_K; 2·63·127·2 for Q6_K) and widened by the rows' scales. Zen 3
 * issues two vpmaddubsw/vpmaddwd per cycle and four vector ops in all, so a vpmaddubsw and its
 * int16 add (Q4_K) bound the loop at 64 multiply-adds per cycle, and Q6_K's extra vpmaddwd per two
 * vpmaddubsw at 43. The panel slice (16 KB) stays in L1 while the tokens pass; partial sums over
 * slices accumulate in y. Same integer block sums as the decode kernels. */
#define KP_ROWS QP_ROWS
#define KP_KS QP_KS
typedef mk_kpanel kpanel; /* the layout: qpack.h */

/* wb[i] = the block at byte off of row 8·hf + i (rows wrb bytes apart from w), or NULL past nrow. */
AI void half_rows(const uint8_t *w, size_t wrb, size_t nrow, size_t hf, size_t off, const uint8_t *wb[8]) {
#pragma GCC unroll 8
    for (size_t i = 0; i < 8; i++) wb[i] = 8 * hf + i < nrow ? w + (8 * hf + i) * wrb + off : NULL;
}

/* Q6_K panel: the raw fields are transposed first (8×8 words of 8 rows at a time) and the 6-bit
 * values assembled in the lanes — a 4-byte group of consecutive values takes its low nibbles from
 * one 32-bit word of ql and its high bits from one word of qh (value 128h + 32k + l: the nibble
 * k >> 1 of ql byte 64h + 32(k & 1) + l, bits 2k, 2k + 1 of qh byte 32h + l) — and the 8 rows'
 * scales are one more transpose of their sign-extended words. No per-row unpacking, no scalar
 * stores: about 3x faster than unpacking each row and transposing the bytes.
 * sgn (the AVX2 GEMM's panel, not qpack.h's): W holds q − 32 as int8, and in MP's place the 16
 * rows' int32 128·Σ_j s_j·Σ(q − 32) over the super-block — what the activations' + 128 adds to the
 * rows' integer sums. */
AI void pack_q6k(const uint8_t *w, size_t wrb, size_t nrow, size_t b0, size_t ks, const kpanel *kp, const bool sgn) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30), c32 = _mm256_set1_epi8(32), ones = _mm256_set1_epi8(1);
    for (size_t b = 0; b < ks; b++) {
        uint8_t *W = kp->W + b * 4096;
        int16_t *SC = kp->SC + b * 512, *MP = kp->MP + b * 256;
        for (size_t hf = 0; hf < 2; hf++) {
            const uint8_t *wb[8];
            half_rows(w, wrb, nrow, hf, (b0 + b) * 210, wb);
#pragma GCC unroll 8
            for (size_t i = 0; i < 8; i++) kp->D[b * KP_ROWS + 8 * hf + i] = wb[i] ? ld_f16(wb[i] + 208) : 0.0f;
            /* scales: row i's 16 int8 sign-extended to 8 words (s_2p, s_2p+1); after the transpose
             * S[p] holds word p of the 8 rows, which is MP's vector p; SC's (s_j, s_j) by a shift and a blend */
            __m256i S[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) S[i] = wb[i] ? _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wb[i] + 192))) : _mm256_setzero_si256();
            transpose8_epi32(S);
#pragma GCC unroll 8
            for (int p = 0; p < 8; p++) {
                _mm256_store_si256((__m256i *)(SC + (4 * p + hf) * 16), _mm256_blend_epi16(S[p], _mm256_slli_epi32(S[p], 16), 0xAA));
                _mm256_store_si256((__m256i *)(SC + (4 * p + 2 + hf) * 16), _mm256_blend_epi16(_mm256_srli_epi32(S[p], 16), S[p], 0xAA));
                if (!sgn) _mm256_store_si256((__m256i *)(MP + (2 * p + hf) * 16), S[p]);
            }
            __m256i corr = _mm256_setzero_si256(); /* signed: Σ_j s_j·Σ(q − 32) of each row */
#pragma GCC unroll 8
            for (int h = 0; h < 2; h++) {
                __m256i A[8], B[8], H[8];
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++) {
                    A[i] = wb[i] ? _mm256_loadu_si256((const __m256i *)(wb[i] + 64 * h)) : _mm256_setzero_si256();
                    B[i] = wb[i] ? _mm256_loadu_si256((const __m256i *)(wb[i] + 64 * h + 32)) : _mm256_setzero_si256();
                    H[i] = wb[i] ? _mm256_loadu_si256((const __m256i *)(wb[i] + 128 + 32 * h)) : _mm256_setzero_si256();
                }
                transpose8_epi32(A);
                transpose8_epi32(B);
                transpose8_epi32(H);
#pragma GCC unroll 8
                for (int k = 0; k < 4; k++) {
                    __m256i sum8[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()}; /* sub-blocks 8h + 2k, + 1: 4 groups of q − 32 fit int8 */
#pragma GCC unroll 8
                    for (int q = 0; q < 8; q++) {
                        const __m256i lw = (k & 1) ? B[q] : A[q], hw = H[q];
                        const __m256i lo = _mm256_and_si256(k >> 1 ? _mm256_srli_epi16(lw, 4) : lw, m4);
                        const __m256i hi = _mm256_and_si256(k < 3 ? _mm256_slli_epi16(hw, 4 - 2 * k) : _mm256_srli_epi16(hw, 2), m30);
                        __m256i v = _mm256_or_si256(lo, hi);
                        if (sgn) {
                            v = _mm256_sub_epi8(v, c32);
                            sum8[q / 4] = _mm256_add_epi8(sum8[q / 4], v);
                        }
                        _mm256_store_si256((__m256i *)(W + ((size_t)(32 * h + 8 * k + q) * 2 + hf) * 32), v);
                    }
                    if (sgn)
                        corr = _mm256_add_epi32(corr, _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(ones, sum8[0]), _mm256_load_si256((const __m256i *)(SC + (2 * (8 * h + 2 * k) + hf) * 16))),
                                                                       _mm256_madd_epi16(_mm256_maddubs_epi16(ones, sum8[1]), _mm256_load_si256((const __m256i *)(SC + (2 * (8 * h + 2 * k + 1) + hf) * 16)))));
                }
            }
            if (sgn) _mm256_store_si256((__m256i *)(MP + hf * 16), _mm256_slli_epi32(corr, 7));
        }
    }
}

/* the two panels, each compiled for its own */
static void pack_q6k_u(const uint8_t *w, size_t wrb, size_t nrow, size_t b0, size_t ks, const kpanel *kp) { pack_q6k(w, wrb, nrow, b0, ks, kp, false); }
static void pack_q6k_s(const uint8_t *w, size_t wrb, size_t nrow, size_t b0, size_t ks, const kpanel *kp) { pack_q6k(w, wrb, nrow, b0, ks, kp, true); }

/* A vpshufb control that makes each 32-bit lane the int16 pair (byte b0, byte b1) of that lane,
 * zero-extended. */
static __m256i lane_bytes_to_words(int b0, int b1) {
    _Alignas(32) int8_t c[32];
#pragma GCC unroll 8
    for (int i = 0; i < 32; i++) {
        const int lane = i % 16 / 4, k = i % 4;
        c[i] = (int8_t)(k == 0 ? 4 * lane + b0 : k == 2 ? 4 * lane + b1 : -128);
    }
    return _mm256_load_si256((const __m256i *)c);
}

/* Q4_K panel: the values are transposed straight from the packed nibbles — 4 bytes i..i+3 of
 * chunk c hold values i..i+3 of sub-block 2c (low nibbles) and of 2c+1 (high) — so an 8×8 word
 * transpose serves two groups; the 8 rows' 12 scale bytes are transposed as words too, decoded in
 * the lanes (ggml's 6-bit layout) and spread into the (s, s) and (m_2p, m_2p+1) words by byte
 * shuffles. */
static void pack_q4k(const uint8_t *w, size_t wrb, size_t nrow, size_t b0, size_t ks, const kpanel *kp) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m6 = _mm256_set1_epi8(0x3F), m2 = _mm256_set1_epi8(0x03);
    /* byte shuffles: in each 32-bit lane, (s_j, s_j) from the lane's byte j; (m_2p, m_2p+1) from bytes 2p, 2p+1 */
    __m256i dup[4], pair[2];
#pragma GCC unroll 8
    for (int j = 0; j < 4; j++) dup[j] = lane_bytes_to_words(j, j);
#pragma GCC unroll 8
    for (int p = 0; p < 2; p++) pair[p] = lane_bytes_to_words(2 * p, 2 * p + 1);
    for (size_t b = 0; b < ks; b++) {
        int16_t *SC = kp->SC + b * 256, *MP = kp->MP + b * 128;
        for (size_t hf = 0; hf < 2; hf++) {
            const uint8_t *wb[8];
            half_rows(w, wrb, nrow, hf, (b0 + b) * 144, wb);
#pragma GCC unroll 8
            for (size_t i = 0; i < 8; i++) {
                kp->D[b * KP_ROWS + 8 * hf + i] = wb[i] ? ld_f16(wb[i]) : 0.0f;
                kp->DM[b * KP_ROWS + 8 * hf + i] = wb[i] ? ld_f16(wb[i] + 2) : 0.0f;
            }
#pragma GCC unroll 8
            for (int c = 0; c < 4; c++) {
                __m256i r[8];
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++) r[i] = wb[i] ? _mm256_loadu_si256((const __m256i *)(wb[i] + 16 + 32 * c)) : _mm256_setzero_si256();
                transpose8_epi32(r);
#pragma GCC unroll 8
                for (int g = 0; g < 8; g++) {
                    _mm256_store_si256((__m256i *)(kp->W + ((b * 64 + 16 * (size_t)c + (size_t)g) * 2 + hf) * 32), _mm256_and_si256(r[g], m4));
                    _mm256_store_si256((__m256i *)(kp->W + ((b * 64 + 16 * (size_t)c + 8 + (size_t)g) * 2 + hf) * 32),
                                       _mm256_and_si256(_mm256_srli_epi16(r[g], 4), m4));
                }
            }
            /* words u0, u1, u2 of the 12 scale bytes (bytes 4-35 of the block: the scales and the
             * first 20 bytes of qs, within the block); after the transpose u[k] holds word k of the 8 rows */
            __m256i u[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) u[i] = wb[i] ? _mm256_loadu_si256((const __m256i *)(wb[i] + 4)) : _mm256_setzero_si256();
            transpose8_epi32(u);
            const __m256i hi2_0 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(u[0], 6), m2), 4);
            const __m256i hi2_1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(u[1], 6), m2), 4);
            const __m256i s03 = _mm256_and_si256(u[0], m6), s47 = _mm256_or_si256(_mm256_and_si256(u[2], m4), hi2_0);
            const __m256i n03 = _mm256_and_si256(u[1], m6), n47 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(u[2], 4), m4), hi2_1);
#pragma GCC unroll 8
            for (int j = 0; j < 4; j++) {
                _mm256_store_si256((__m256i *)(SC + (2 * j + hf) * 16), _mm256_shuffle_epi8(s03, dup[j]));
                _mm256_store_si256((__m256i *)(SC + (2 * (j + 4) + hf) * 16), _mm256_shuffle_epi8(s47, dup[j]));
            }
#pragma GCC unroll 8
            for (int p = 0; p < 2; p++) {
                _mm256_store_si256((__m256i *)(MP + (2 * p + hf) * 16), _mm256_shuffle_epi8(n03, pair[p]));
                _mm256_store_si256((__m256i *)(MP + (2 * (p + 2) + hf) * 16), _mm256_shuffle_epi8(n47, pair[p]));
            }
        }
    }
}

/* Packs rows [0, nrow) (nrow ≤ 16; the rest zero) of super-blocks [b0, b0 + ks) into the panel. */
void mk_qpack_kq(mk_dtype wt, const uint8_t *w, size_t wrb, size_t nrow, size_t b0, size_t ks, const kpanel *kp) {
    if (wt == MK_DT_Q4_K) pack_q4k(w, wrb, nrow, b0, ks, kp);
    else pack_q6k_u(w, wrb, nrow, b0, ks, kp);
}

/* Token passes over a packed K-quant slice: nt (≤ KT_NT) tokens' Q8_K rows (a[t], from the
 * slice's first super-block) against the panel's 16 rows: acc[2t], acc[2t + 1] (token t's rows 0-7
 * and 8-15) += Σ. Each weight vector is loaded once per pass and meets every token; the integer
 * sums are exact and the float operations on them per token are the same in the same order
 * whatever nt, so results do not depend on how tokens are grouped. */
/* An empty asm on a value pins it in a register: gcc would otherwise reassociate a pass's integer
 * sums into a tree (every product first, spilled to the stack) and load the weight vectors again
 * for every token instead of keeping them. */
#define KEEP(v) __asm__("" : "+x"(v))
#ifndef KT_NT
#define KT_NT 4 /* tokens per pass (bench_qgemm on Zen 3: 4 beats 2, 3 and 6) */
#endif

/* Q4_K: per sub-block (8 groups of 4 values) the products sum in int16 (≤ 8·2·15·127) and are
 * widened by the rows' scales; the mins go through the activations' sub-block sums. */
AI void kq4_pass(const kpanel *kp, size_t ks, const uint8_t *const *a, __m256 *acc, const int nt) {
    for (size_t b = 0; b < ks; b++) {
        const uint8_t *W = kp->W + b * 4096;
        const int16_t *SC = kp->SC + b * 256, *MP = kp->MP + b * 128;
        const size_t ao = b * 292;
        __m256i is[KT_NT][2];
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) is[t][0] = is[t][1] = _mm256_setzero_si256();
        for (int j = 0; j < 8; j++, W += 512) {
            __m256i s[KT_NT][2];
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) s[t][0] = s[t][1] = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) {
                __m256i w0 = _mm256_load_si256((const __m256i *)(W + 64 * g)), w1 = _mm256_load_si256((const __m256i *)(W + 64 * g + 32));
                KEEP(w0);
                KEEP(w1);
#pragma GCC unroll 8
                for (int t = 0; t < nt; t++) {
                    const __m256i x = bcast4(a[t] + ao + 4 + 32 * j + 4 * g);
                    s[t][0] = _mm256_add_epi16(s[t][0], _mm256_maddubs_epi16(w0, x));
                    s[t][1] = _mm256_add_epi16(s[t][1], _mm256_maddubs_epi16(w1, x));
                    KEEP(s[t][0]);
                    KEEP(s[t][1]);
                }
            }
            const __m256i c0 = _mm256_load_si256((const __m256i *)(SC + 32 * j)), c1 = _mm256_load_si256((const __m256i *)(SC + 32 * j + 16));
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                is[t][0] = _mm256_add_epi32(is[t][0], _mm256_madd_epi16(s[t][0], c0));
                is[t][1] = _mm256_add_epi32(is[t][1], _mm256_madd_epi16(s[t][1], c1));
            }
        }
        const float *D = kp->D + b * KP_ROWS, *DM = kp->DM + b * KP_ROWS;
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const uint8_t *at = a[t] + ao;
            /* mins: Σ_j m_j · (the token's sum over sub-block j), sub-blocks in pairs */
            _Alignas(16) int32_t sp[4];
            _mm_store_si128((__m128i *)sp, _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)(at + 260)), _mm_loadu_si128((const __m128i *)(at + 276))));
            __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
            for (int p = 0; p < 4; p++) {
                const __m256i sv = _mm256_set1_epi32(sp[p]);
                m0 = _mm256_add_epi32(m0, _mm256_madd_epi16(_mm256_load_si256((const __m256i *)(MP + 32 * p)), sv));
                m1 = _mm256_add_epi32(m1, _mm256_madd_epi16(_mm256_load_si256((const __m256i *)(MP + 32 * p + 16)), sv));
            }
            const __m256 da = _mm256_set1_ps(ld_f32(at));
            acc[2 * t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(D), da), _mm256_cvtepi32_ps(is[t][0]), acc[2 * t]);
            acc[2 * t + 1] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(D + 8), da), _mm256_cvtepi32_ps(is[t][1]), acc[2 * t + 1]);
            acc[2 * t] = _mm256_fnmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(DM), da), _mm256_cvtepi32_ps(m0), acc[2 * t]);
            acc[2 * t + 1] = _mm256_fnmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(DM + 8), da), _mm256_cvtepi32_ps(m1), acc[2 * t + 1]);
        }
    }
}

/* Q6_K (the sgn panel of pack_q6k): the activations + 128 (ua[t], unsigned) against the weights
 * q − 32 (signed) in vpmaddubsw, so per sub-block the products sum in int16 two groups at a time
 * (≤ 2·2·255·32) and are widened by the rows' scales; what the + 128 added is the panel's
 * per-row correction, subtracted once per super-block. The result is the integer sum
 * Σ_j s_j·Σ a·(q − 32) of the decode kernels, without their per-token pass over the activation
 * sums. The weights, now vpmaddubsw's signed operand, come straight from L1 as memory operands,
 * which leaves the registers to the tokens' sums; 16 rows a pass, so each broadcast (a vector-pipe
 * uop on Zen 3) feeds two vpmaddubsw. bench_qgemm: 8 rows a pass with unsigned weights in
 * registers 82, 16 rows 88, this 95 GMAC/s. */
AI void kq6_pass(const kpanel *kp, size_t ks, const uint8_t *const *a, const uint8_t *const *ua, __m256 *acc, const int nt) {
    for (size_t b = 0; b < ks; b++) {
        __m256i is[KT_NT][2];
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) is[t][0] = is[t][1] = _mm256_setzero_si256();
        const uint8_t *W = kp->W + b * 4096;
        const int16_t *SC = kp->SC + b * 512;
        for (int j = 0; j < 16; j++, W += 256, SC += 32) {
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                const uint8_t *x = ua[t] + b * 256 + 16 * j;
#pragma GCC unroll 2
                for (int hf = 0; hf < 2; hf++) {
                    /* the weights (vpmaddubsw's signed operand) straight from L1 as memory operands */
                    const __m256i *wv = (const __m256i *)W + hf; /* group g of this half: wv[2g] */
                    const __m256i p01 = _mm256_add_epi16(_mm256_maddubs_epi16(bcast4(x), _mm256_load_si256(wv)), _mm256_maddubs_epi16(bcast4(x + 4), _mm256_load_si256(wv + 2)));
                    const __m256i p23 = _mm256_add_epi16(_mm256_maddubs_epi16(bcast4(x + 8), _mm256_load_si256(wv + 4)), _mm256_maddubs_epi16(bcast4(x + 12), _mm256_load_si256(wv + 6)));
                    const __m256i c = _mm256_load_si256((const __m256i *)(SC + 16 * hf));
                    is[t][hf] = _mm256_add_epi32(is[t][hf], _mm256_add_epi32(_mm256_madd_epi16(p01, c), _mm256_madd_epi16(p23, c)));
                    KEEP(is[t][hf]);
                }
            }
        }
        const float *D = kp->D + b * KP_ROWS;
        const __m256i c0 = _mm256_load_si256((const __m256i *)(kp->MP + b * 256)), c1 = _mm256_load_si256((const __m256i *)(kp->MP + b * 256 + 16));
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const __m256 da = _mm256_set1_ps(ld_f32(a[t] + b * 292));
            const __m256i v0 = _mm256_sub_epi32(is[t][0], c0), v1 = _mm256_sub_epi32(is[t][1], c1);
            acc[2 * t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(D), da), _mm256_cvtepi32_ps(v0), acc[2 * t]);
            acc[2 * t + 1] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(D + 8), da), _mm256_cvtepi32_ps(v1), acc[2 * t + 1]);
        }
    }
}

/* ==== Q8_0: 16 weight rows in the lanes ====
 * Signed × signed bytes on AVX2 (no VNNI): |w| · (a with w's sign) in vpmaddubsw, widened to int32
 * at once by vpmaddwd (two products of 127·127 fill an int16). A panel of 16 rows × Q8_KB blocks
 * of 32 is transposed once into the VNNI layout (for each group g of 4 elements: 32 bytes = rows
 * 0-7's 4 values, then rows 8-15's), with the absolute values beside it (U) so that the sign trick
 * costs one instruction per product vector, and every token passes over it, two at a time so each
 * weight vector is loaded once for both. Per block the 16 rows' int32 sums (exact, as the decode
 * kernel's) are scaled by d_w·d_a into the f32 sums. */
#define Q8_KB QP_Q8_KB

/* Rows [0, nrow) (rest zero) of blocks [b0, b0 + kb) of 32-element blocks into W and U (kb, 8 groups,
 * 2 halves, 32 B) and their scales into D (kb, 16); U = |w|, or w + 128 with offset (qpack.h). Q8_0
 * (34-byte blocks: f16 d, 32 signed bytes) or MXFP4 (17-byte blocks: E8M0 e, 16 bytes of codes,
 * unpacked to their doubled E2M1 values −12..12 and scaled by 2^(e−128)), so that the Q8_0 pass
 * multiplies either. */
AI void pack32(mk_dtype wt, const uint8_t *w, size_t wrb, size_t nrow, size_t b0, size_t kb, uint8_t *W, uint8_t *U, float *D, bool offset) {
    const bool mx = wt == MK_DT_MXFP4;
    const size_t bb = mx ? 17 : 34;
    const __m128i kv = _mm_loadu_si128((const __m128i *)mk_mxfp4_kv);
    const __m256i lut = _mm256_set_m128i(kv, kv);
    for (size_t b = 0; b < kb; b++) {
#pragma GCC unroll 16
        for (size_t i = 0; i < KP_ROWS; i++) {
            const uint8_t *blk = w + i * wrb + (b0 + b) * bb;
            D[b * KP_ROWS + i] = i >= nrow ? 0.0f : mx ? mk_e8m0_half(blk[0]) : ld_f16(blk);
        }
#pragma GCC unroll 16
        for (size_t half = 0; half < 2; half++) {
            __m256i r[8];
#pragma GCC unroll 16
            for (size_t i = 0; i < 8; i++) {
                const size_t row = 8 * half + i;
                const uint8_t *blk = w + row * wrb + (b0 + b) * bb;
                r[i] = row >= nrow ? _mm256_setzero_si256() : mx ? mxfp4_bytes(blk + 1, lut) : _mm256_loadu_si256((const __m256i *)(blk + 2));
            }
            transpose8_epi32(r);
#pragma GCC unroll 16
            for (size_t g = 0; g < 8; g++) {
                const size_t o = ((b * 8 + g) * 2 + half) * 32;
                _mm256_store_si256((__m256i *)(W + o), r[g]);
                _mm256_store_si256((__m256i *)(U + o), offset ? _mm256_xor_si256(r[g], _mm256_set1_epi8((char)0x80)) : _mm256_sign_epi8(r[g], r[g]));
            }
        }
    }
}

void mk_qpack_q8(const uint8_t *w, size_t wrb, size_t nrow, size_t b0, size_t kb, uint8_t *W, uint8_t *U, float *D, bool offset) {
    pack32(MK_DT_Q8_0, w, wrb, nrow, b0, kb, W, U, D, offset);
}

/* nt (≤ KT_NT) tokens' Q8_0 rows (a[t], from the slice's first block) against the packed blocks:
 * acc[2t], acc[2t + 1] (token t's rows 0-7 and 8-15) += Σ. The four weight vectors of a group (W
 * and U of both halves) stay in registers while the tokens pass; the float operations per token
 * are the same whatever nt. */
AI void q8_pass(const uint8_t *W, const uint8_t *U, const float *D, size_t kb, const uint8_t *const *a, __m256 *acc, const int nt) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (size_t b = 0; b < kb; b++, W += 512, U += 512) {
        __m256i s[KT_NT][2];
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) s[t][0] = s[t][1] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            __m256i w0 = _mm256_load_si256((const __m256i *)(W + 64 * g)), w1 = _mm256_load_si256((const __m256i *)(W + 64 * g + 32));
            __m256i u0 = _mm256_load_si256((const __m256i *)(U + 64 * g)), u1 = _mm256_load_si256((const __m256i *)(U + 64 * g + 32));
            KEEP(w0);
            KEEP(w1);
            KEEP(u0);
            KEEP(u1);
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                const __m256i x = bcast4(a[t] + 34 * b + 2 + 4 * g);
                s[t][0] = _mm256_add_epi32(s[t][0], _mm256_madd_epi16(_mm256_maddubs_epi16(u0, _mm256_sign_epi8(x, w0)), ones));
                s[t][1] = _mm256_add_epi32(s[t][1], _mm256_madd_epi16(_mm256_maddubs_epi16(u1, _mm256_sign_epi8(x, w1)), ones));
                KEEP(s[t][0]);
                KEEP(s[t][1]);
            }
        }
        const __m256 d0 = _mm256_loadu_ps(D + b * KP_ROWS), d1 = _mm256_loadu_ps(D + b * KP_ROWS + 8);
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const __m256 e = _mm256_set1_ps(ld_f16(a[t] + 34 * b));
            acc[2 * t] = _mm256_fmadd_ps(_mm256_mul_ps(d0, e), _mm256_cvtepi32_ps(s[t][0]), acc[2 * t]);
            acc[2 * t + 1] = _mm256_fmadd_ps(_mm256_mul_ps(d1, e), _mm256_cvtepi32_ps(s[t][1]), acc[2 * t + 1]);
        }
    }
}

size_t mk_qpack_q8_bytes(void) { return Q8_KB * (512 + 512 + 64) + 128; }

void mk_qpack_q8_layout(void *scr, uint8_t **W, uint8_t **U, float **D) {
    *W = (uint8_t *)(((uintptr_t)scr + 63) & ~(uintptr_t)63);
    *U = *W + Q8_KB * 512;
    *D = (float *)(*U + Q8_KB * 512);
}

/* acc[0..1] = 16 floats from p (or the bias, or zero): rows past nrow zero. */
AI void load16(const float *p, size_t nrow, __m256 *acc) {
    if (!p) {
        acc[0] = acc[1] = _mm256_setzero_ps();
    } else if (nrow == KP_ROWS) {
        acc[0] = _mm256_loadu_ps(p);
        acc[1] = _mm256_loadu_ps(p + 8);
    } else {
        _Alignas(32) float o[KP_ROWS] = {0};
        memcpy(o, p, nrow * sizeof(float));
        acc[0] = _mm256_load_ps(o);
        acc[1] = _mm256_load_ps(o + 8);
    }
}

AI void store16(float *p, size_t nrow, const __m256 *acc) {
    if (nrow == KP_ROWS) {
        _mm256_storeu_ps(p, acc[0]);
        _mm256_storeu_ps(p + 8, acc[1]);
    } else {
        _Alignas(32) float o[KP_ROWS];
        _mm256_store_ps(o, acc[0]);
        _mm256_store_ps(o + 8, acc[1]);
        memcpy(p, o, nrow * sizeof(float));
    }
}

/* Q8_0 or MXFP4 weights (both against Q8_0 activations, in blocks of 32) */
static void q8_gemm(mk_dtype wt, size_t n_in, const uint8_t *w, size_t wrb, size_t nr, const uint8_t *xq, size_t arb, size_t nt, float *y, size_t ldy,
                    const float *bias, uint8_t *scr) {
    uint8_t *W, *U;
    float *D;
    mk_qpack_q8_layout(scr, &W, &U, &D);
    const size_t nb = n_in / MK_QK8_0;
    for (size_t r0 = 0; r0 < nr; r0 += KP_ROWS) {
        const size_t nrow = MK_MIN((size_t)KP_ROWS, nr - r0);
        for (size_t b0 = 0; b0 < nb; b0 += Q8_KB) {
            const size_t kb = MK_MIN((size_t)Q8_KB, nb - b0);
            if (wt == MK_DT_MXFP4) /* two inlined copies, each with its block layout fixed */
                pack32(MK_DT_MXFP4, w + r0 * wrb, wrb, nrow, b0, kb, W, U, D, false);
            else pack32(MK_DT_Q8_0, w + r0 * wrb, wrb, nrow, b0, kb, W, U, D, false);
            for (size_t t = 0; t < nt; t += KT_NT) {
                const int n = (int)MK_MIN((size_t)KT_NT, nt - t);
                const uint8_t *a[KT_NT];
                __m256 acc[2 * KT_NT];
                for (int i = 0; i < n; i++) {
                    a[i] = xq + (t + (size_t)i) * arb + b0 * 34;
                    load16(b0 > 0 ? y + (t + (size_t)i) * ldy + r0 : bias ? bias + r0 : NULL, nrow, acc + 2 * i);
                }
                switch (n) { /* a constant token count for each pass */
#if KT_NT >= 4
                case 4: q8_pass(W, U, D, kb, a, acc, 4); break;
#endif
#if KT_NT >= 3
                case 3: q8_pass(W, U, D, kb, a, acc, 3); break;
#endif
                case 2: q8_pass(W, U, D, kb, a, acc, 2); break;
                default: q8_pass(W, U, D, kb, a, acc, 1); break;
                }
                for (int i = 0; i < n; i++) store16(y + (t + (size_t)i) * ldy + r0, nrow, acc + 2 * i);
            }
        }
    }
}

size_t mk_qpack_kq_bytes(void) { return KP_KS * (4096 + 1024 + 512 + 128) + 128; }

kpanel mk_qpack_kq_layout(void *scr) {
    uint8_t *base = (uint8_t *)(((uintptr_t)scr + 63) & ~(uintptr_t)63);
    kpanel kp = {.W = base};
    kp.SC = (int16_t *)(base + KP_KS * 4096);
    kp.MP = (int16_t *)((uint8_t *)kp.SC + KP_KS * 1024);
    kp.D = (float *)((uint8_t *)kp.MP + KP_KS * 512);
    kp.DM = kp.D + KP_KS * KP_ROWS;
    return kp;
}

AI void kq_pass_nt(mk_dtype wt, const kpanel *kp, size_t ks, const uint8_t *const *a, const uint8_t *const *ua, __m256 *acc, const int nt) {
    if (wt == MK_DT_Q4_K) kq4_pass(kp, ks, a, acc, nt);
    else kq6_pass(kp, ks, a, ua, acc, nt);
}

static void kq_gemm(mk_dtype wt, size_t n_in, const uint8_t *w, size_t wrb, size_t nr, const uint8_t *xq, size_t arb, size_t nt, float *y, size_t ldy,
                    const float *bias, uint8_t *scr) {
    const kpanel kp = mk_qpack_kq_layout(scr);
    const size_t nb = n_in / MK_QK_K;
    for (size_t r0 = 0; r0 < nr; r0 += KP_ROWS) {
        const size_t nrow = MK_MIN((size_t)KP_ROWS, nr - r0);
        for (size_t b0 = 0; b0 < nb; b0 += KP_KS) {
            const size_t ks = MK_MIN((size_t)KP_KS, nb - b0);
            if (wt == MK_DT_Q4_K) pack_q4k(w + r0 * wrb, wrb, nrow, b0, ks, &kp);
            else pack_q6k_s(w + r0 * wrb, wrb, nrow, b0, ks, &kp);
            for (size_t t = 0; t < nt; t += KT_NT) {
                const int n = (int)MK_MIN((size_t)KT_NT, nt - t);
                const uint8_t *a[KT_NT], *ua[KT_NT]; /* Q8_K blocks; Q6_K: their values + 128 after the row's blocks */
                __m256 acc[2 * KT_NT];
                for (int i = 0; i < n; i++) {
                    a[i] = xq + (t + (size_t)i) * arb + b0 * 292;
                    ua[i] = xq + (t + (size_t)i) * arb + nb * 292 + b0 * MK_QK_K;
                    load16(b0 > 0 ? y + (t + (size_t)i) * ldy + r0 : bias ? bias + r0 : NULL, nrow, acc + 2 * i);
                }
                switch (n) { /* a constant token count for each pass */
#if KT_NT >= 4
                case 4: kq_pass_nt(wt, &kp, ks, a, ua, acc, 4); break;
#endif
#if KT_NT >= 3
                case 3: kq_pass_nt(wt, &kp, ks, a, ua, acc, 3); break;
#endif
                case 2: kq_pass_nt(wt, &kp, ks, a, ua, acc, 2); break;
                default: kq_pass_nt(wt, &kp, ks, a, ua, acc, 1); break;
                }
                for (int i = 0; i < n; i++) store16(y + (t + (size_t)i) * ldy + r0, nrow, acc + 2 * i);
            }
        }
    }
}

size_t mk_qgemm_scratch_avx2(mk_dtype wt, size_t n_in) {
    (void)n_in;
    return wt == MK_DT_Q8_0 || wt == MK_DT_MXFP4 ? mk_qpack_q8_bytes() : mk_qpack_kq_bytes();
}

bool mk_qgemm_avx2(mk_dtype wt, size_t n_in, const void *vw, size_t wrb, size_t nr, const void *vxq, size_t arb, size_t nt, float *y, size_t ldy,
                   const float *bias, void *scratch) {
    const uint8_t *w = vw, *xq = vxq;
    if (wt == MK_DT_Q4_K || wt == MK_DT_Q6_K) {
        kq_gemm(wt, n_in, w, wrb, nr, xq, arb, nt, y, ldy, bias, scratch);
        return true;
    }
    if (wt != MK_DT_Q8_0 && wt != MK_DT_MXFP4) return false;
    q8_gemm(wt, n_in, w, wrb, nr, xq, arb, nt, y, ldy, bias, scratch);
    return true;
}

/* ---- activations: f32 → Q8_0, bit-identical to the reference quantizer (roundf = half away
 * from zero, done as trunc + (fraction ≥ 0.5)) */
static void quantize_q8_0(const float *x, void *vy, size_t n) {
    uint8_t *y = vy;
    const __m256 sign = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f);
    for (size_t b = 0; b < n / MK_QK8_0; b++, x += MK_QK8_0, y += 34) {
        __m256 v[4], mx = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(x + 8 * i);
            mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v[i]));
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float amax = _mm_cvtss_f32(m), d = amax / 127, id = d ? 1.0f / d : 0.0f;
        const unsigned short h = _cvtss_sh(d, 0);
        y[0] = (uint8_t)h;
        y[1] = (uint8_t)(h >> 8);
        __m256i q[4];
        for (int i = 0; i < 4; i++) {
            const __m256 s = _mm256_mul_ps(v[i], _mm256_set1_ps(id)), as = _mm256_andnot_ps(sign, s);
            const __m256 t = _mm256_round_ps(as, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __m256 up = _mm256_and_ps(_mm256_cmp_ps(_mm256_sub_ps(as, t), half, _CMP_GE_OQ), _mm256_set1_ps(1.0f));
            const __m256 r = _mm256_or_ps(_mm256_add_ps(t, up), _mm256_and_ps(sign, s));
            q[i] = _mm256_cvtps_epi32(r);
        }
        /* 32 int32 → 32 int8 in order (packs work per 128-bit lane, the permute restores order) */
        const __m256i p01 = _mm256_packs_epi32(q[0], q[1]), p23 = _mm256_packs_epi32(q[2], q[3]);
        const __m256i p = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(y + 2), p);
    }
}

/* ---- activations: f32 → Q8_K (f32 d, 256 × i8, 16 × i16 sums), bit-identical to the
 * reference: the first element of largest magnitude sets d, q = min(127, round-half-even(x·(−127/max))) */
static void quantize_q8_K(const float *x, void *vy, size_t n) {
    uint8_t *y = vy;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (size_t b = 0; b < n / MK_QK_K; b++, x += MK_QK_K, y += 292) {
        __m256 mx = _mm256_setzero_ps();
        for (int i = 0; i < 32; i++) mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * i)));
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float amax = _mm_cvtss_f32(m);
        if (!amax) {
            memset(y, 0, 292);
            continue;
        }
        int first = 0; /* the lowest index with |x| = amax, as the reference's strict '>' scan finds */
        for (int i = 0; i < 32; i++) {
            const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * i)), _mm256_set1_ps(amax), _CMP_EQ_OQ));
            if (mask) {
                first = 8 * i + __builtin_ctz((unsigned)mask);
                break;
            }
        }
        const float iscale = -127.f / x[first];
        const __m256 vs = _mm256_set1_ps(iscale);
        const __m256i lim = _mm256_set1_epi32(127);
        int8_t *qs = (int8_t *)(y + 4);
        for (int g = 0; g < 8; g++) { /* 32 values: 4 vectors of 8 */
            __m256i q[4];
            for (int i = 0; i < 4; i++) {
                const __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * g + 8 * i), vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                q[i] = _mm256_min_epi32(_mm256_cvtps_epi32(v), lim);
            }
            const __m256i p01 = _mm256_packs_epi32(q[0], q[1]), p23 = _mm256_packs_epi32(q[2], q[3]);
            const __m256i p = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(qs + 32 * g), p);
            for (int h = 0; h < 2; h++) { /* the sums of elements 32g + 16h .. + 15 */
                const __m256i s8 = _mm256_add_epi32(q[2 * h], q[2 * h + 1]);
                __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
                s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
                s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
                const int16_t sum = (int16_t)_mm_cvtsi128_si32(s4);
                memcpy(y + 260 + 2 * (2 * g + h), &sum, 2);
            }
        }
        const float d = 1 / iscale;
        memcpy(y, &d, 4);
    }
}

mk_qdot_fn mk_qdot_avx2(mk_dtype wt) {
    switch (wt) {
    case MK_DT_Q8_0: return dot_q8_0;
    case MK_DT_Q4_0: return dot_q4_0;
    case MK_DT_Q4_K: return dot_q4_K;
    case MK_DT_Q6_K: return dot_q6_K;
    case MK_DT_MXFP4: pthread_once(&e8m0_once, e8m0_init); return dot_mxfp4;
    default: return NULL;
    }
}

mk_qquant_fn mk_qquant_avx2(mk_dtype at) { return at == MK_DT_Q8_0 ? quantize_q8_0 : at == MK_DT_Q8_K ? quantize_q8_K : NULL; }

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
mk_qdot_fn mk_qdot_avx2(mk_dtype wt) {
    (void)wt;
    return NULL;
}
size_t mk_qgemm_scratch_avx2(mk_dtype wt, size_t n_in) {
    (void)wt, (void)n_in;
    return 0;
}
bool mk_qgemm_avx2(mk_dtype wt, size_t n_in, const void *w, size_t wrb, size_t nr, const void *xq, size_t arb, size_t nt, float *y, size_t ldy,
                   const float *bias, void *scratch) {
    (void)wt, (void)n_in, (void)w, (void)wrb, (void)nr, (void)xq, (void)arb, (void)nt, (void)y, (void)ldy, (void)bias, (void)scratch;
    return false;
}
mk_qquant_fn mk_qquant_avx2(mk_dtype at) {
    (void)at;
    return NULL;
}
#endif
