/* AVX2 dot products of block-quantized weight rows with quantized activations (the SIMD variants
 * of mk_vec_dot_ref, quant.h): Q8_0 and Q4_0 against Q8_0 activations, Q4_K and Q6_K against
 * Q8_K. Compiled for AVX2/FMA/F16C whatever the build's -march and called only when cpuid says
 * the CPU has them (kernels.c). The integer part of every block is exact, as in the reference;
 * only the order of the float additions differs (bound: tests/test_quant.c).
 *
 * The integer products use the unsigned × signed byte multiply (vpmaddubsw): for two signed
 * operands the weight's sign moves onto the activation first (|w| · sign(w)·a); 4-bit and 6-bit
 * weights are unsigned already, and their offsets (-8, -32) are applied through the activation sums. */
#include "kernels.h"
#include "quant.h"

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

/* ---- Q4_K · Q8_K: 256 weights = 8 sub-blocks of 32 with 6-bit scale s_j and min m_j;
 * w = d·s_j·q − dmin·m_j. Σ w·a = d·da·Σ_j s_j Σ q·a − dmin·da·Σ_j m_j·(a's sum over sub-block j),
 * the second sum from the activation block's 16-element sums. */
static float dot_q4_K(size_t n, const void *vw, const void *va) {
    const uint8_t *w = vw, *a = va;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    for (size_t b = 0; b < n / MK_QK_K; b++, w += 144, a += 292) {
        _mm_prefetch((const char *)w + QPF, _MM_HINT_T0);
        _mm_prefetch((const char *)w + QPF + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)w + QPF + 128, _MM_HINT_T0);
        /* the 12 scale bytes → 8 scales (bytes 0-7) and 8 mins (bytes 8-15), ggml's bit layout */
        uint32_t u[4];
        memcpy(u, w + 4, 12);
        u[3] = ((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4);
        const uint32_t t1 = u[1] & 0x3f3f3f3fu;
        u[1] = (u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4);
        u[2] = t1;
        u[0] &= 0x3f3f3f3fu;
        const __m128i mn = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(u + 2)));     /* mins, i16 */
        const float da = ld_f32(a);
        /* Σ_j m_j · (bsum[2j] + bsum[2j+1]) */
        const __m128i bs0 = _mm_loadu_si128((const __m128i *)(a + 260)), bs1 = _mm_loadu_si128((const __m128i *)(a + 276));
        const __m128i pm = _mm_madd_epi16(mn, _mm_hadd_epi16(bs0, bs1));
        accm = _mm_fmadd_ps(_mm_set1_ps(ld_f16(w + 2) * da), _mm_cvtepi32_ps(pm), accm);
        const uint8_t *q4 = w + 16;
        const int8_t *q8 = (const int8_t *)(a + 4);
        /* the 8 scales as i16 in both 128-bit lanes; sub-block i's scale is the i16 pair (2i, 2i+1) */
        const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)u)));
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
        acc = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(w) * da), _mm256_cvtepi32_ps(isum), acc);
    }
    __m128 m = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    return hsum(acc) - _mm_cvtss_f32(m);
}

/* ---- Q6_K · Q8_K: 256 weights = 16 sub-blocks of 16 with an int8 scale; 6-bit q (low 4 bits in
 * ql, high 2 in qh), w = d·s_j·(q − 32). Σ w·a = d·da·(Σ_j s_j Σ q·a − 32 Σ_j s_j·bsum_j). */
static float dot_q6_K(size_t n, const void *vw, const void *va) {
    const uint8_t *w = vw, *a = va;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x03);
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
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4));
            for (int k = 0; k < 4; k++) {
                const __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(q8 + 32 * k)));
                const __m256i s = _mm256_set_m128i(_mm_set1_epi16(sc[2 * k + 1]), _mm_set1_epi16(sc[2 * k]));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, s));
            }
        }
        isum = _mm256_sub_epi32(isum, _mm256_setr_epi32(32 * corr, 0, 0, 0, 0, 0, 0, 0));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
    }
    return hsum(acc);
}

/* ==== Prefill: one weight row against a block of 8 tokens, the tokens in the vector lanes ====
 * y[t·ldy + r] = Σ w_r · a_t (+ bias[r]) for nr rows and nt tokens. The 8 tokens' quantized
 * activations are repacked once per call and block of tokens ("VNNI layout": for each group of 4
 * consecutive elements, one 32-byte vector holding the 8 tokens' 4 bytes), so a row's 4 weights
 * broadcast to all lanes meet 8 tokens in one vpmaddubsw, and each lane of the int32 sums is one
 * token's: the block scales then cost one multiply-add per block for all 8 tokens. For the
 * K-quants the products of a sub-block are summed in int16 before its scale widens them (no
 * overflow: ≤ 8 × 15 × 128 × 2 for Q4_K, ≤ 2 × 63 × 128 × 2 for Q6_K). The integer sums equal the
 * decode kernels' (exact); the float accumulation order differs (bound: tests/test_quant.c). */
#define QG_TB 8

/* The 8×8 transpose of 32-bit words: row i of the result = word i of each input row. */
AI void transpose8_epi32(__m256i r[8]) {
    __m256 a[8], b[8];
    for (int i = 0; i < 8; i += 2) {
        a[i] = _mm256_unpacklo_ps(_mm256_castsi256_ps(r[i]), _mm256_castsi256_ps(r[i + 1]));
        a[i + 1] = _mm256_unpackhi_ps(_mm256_castsi256_ps(r[i]), _mm256_castsi256_ps(r[i + 1]));
    }
    for (int i = 0; i < 8; i += 4)
        for (int j = 0; j < 2; j++) {
            b[i + j] = _mm256_shuffle_ps(a[i + j], a[i + j + 2], 0x44);
            b[i + j + 2] = _mm256_shuffle_ps(a[i + j], a[i + j + 2], 0xEE);
        }
    /* b[0]: words 0 of rows 0-3 | 0 of 4-7 in the other half, etc. */
    const int order[8] = {0, 2, 1, 3, 0, 2, 1, 3};
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_castps_si256(_mm256_permute2f128_ps(b[order[i]], b[order[i] + 4], 0x20));
        r[i + 4] = _mm256_castps_si256(_mm256_permute2f128_ps(b[order[i]], b[order[i] + 4], 0x31));
    }
}

/* Packs the quantized bytes of rn ≤ 8 tokens (a[t] + off(b) + 32·v, v < vecs per block) into
 * P: for each block b, for each 4-byte group g of the block, 32 bytes = the 8 tokens' words g
 * (zeros for t ≥ rn). blk_bytes: the activation block's size; qs_off: where its values start. */
static void pack_tokens(uint8_t *P, const uint8_t *const *a, int rn, size_t nb, size_t blk_bytes, size_t qs_off, int vecs) {
    for (size_t b = 0; b < nb; b++)
        for (int v = 0; v < vecs; v++) {
            __m256i r[8];
            for (int t = 0; t < 8; t++)
                r[t] = t < rn ? _mm256_loadu_si256((const __m256i *)(a[t] + b * blk_bytes + qs_off + 32 * (size_t)v)) : _mm256_setzero_si256();
            transpose8_epi32(r);
            for (int g = 0; g < 8; g++) _mm256_store_si256((__m256i *)(P + ((b * (size_t)vecs + (size_t)v) * 8 + (size_t)g) * 32), r[g]);
        }
}

AI __m256i bcast4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* ---- Q8_0 weights · Q8_0 activations: per group of 4, |w| · (a with w's sign) */
static void q8_0_row(size_t nb, const uint8_t *w, const uint8_t *P, const float *DA, float *out) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (size_t b = 0; b < nb; b++, w += 34, P += 256) {
        __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int g = 0; g < 8; g += 2) {
            const __m256i w0 = bcast4(w + 2 + 4 * g), w1 = bcast4(w + 6 + 4 * g);
            const __m256i p0 = _mm256_maddubs_epi16(_mm256_sign_epi8(w0, w0), _mm256_sign_epi8(_mm256_load_si256((const __m256i *)(P + 32 * g)), w0));
            const __m256i p1 = _mm256_maddubs_epi16(_mm256_sign_epi8(w1, w1), _mm256_sign_epi8(_mm256_load_si256((const __m256i *)(P + 32 * g + 32)), w1));
            s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(p0, ones));
            s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(p1, ones));
        }
        const __m256 v = _mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)), sc = _mm256_mul_ps(_mm256_set1_ps(ld_f16(w)), _mm256_load_ps(DA + 8 * b));
        if (b & 1) acc1 = _mm256_fmadd_ps(sc, v, acc1);
        else acc0 = _mm256_fmadd_ps(sc, v, acc0);
    }
    _mm256_storeu_ps(out, _mm256_add_ps(acc0, acc1));
}

/* One sub-block of 32 weights (h0: its values 0-15 in both 128-bit halves, h1: 16-31) against the
 * 8 packed tokens at P: 8 products summed in int16 as a tree, widened by the scale s. */
AI __m256i q4_sub(__m256i h0, __m256i h1, const uint8_t *P, int s) {
    const __m256i p0 = _mm256_maddubs_epi16(_mm256_shuffle_epi32(h0, 0x00), _mm256_load_si256((const __m256i *)P));
    const __m256i p1 = _mm256_maddubs_epi16(_mm256_shuffle_epi32(h0, 0x55), _mm256_load_si256((const __m256i *)(P + 32)));
    const __m256i p2 = _mm256_maddubs_epi16(_mm256_shuffle_epi32(h0, 0xAA), _mm256_load_si256((const __m256i *)(P + 64)));
    const __m256i p3 = _mm256_maddubs_epi16(_mm256_shuffle_epi32(h0, 0xFF), _mm256_load_si256((const __m256i *)(P + 96)));
    const __m256i p4 = _mm256_maddubs_epi16(_mm256_shuffle_epi32(h1, 0x00), _mm256_load_si256((const __m256i *)(P + 128)));
    const __m256i p5 = _mm256_maddubs_epi16(_mm256_shuffle_epi32(h1, 0x55), _mm256_load_si256((const __m256i *)(P + 160)));
    const __m256i p6 = _mm256_maddubs_epi16(_mm256_shuffle_epi32(h1, 0xAA), _mm256_load_si256((const __m256i *)(P + 192)));
    const __m256i p7 = _mm256_maddubs_epi16(_mm256_shuffle_epi32(h1, 0xFF), _mm256_load_si256((const __m256i *)(P + 224)));
    const __m256i s16 = _mm256_add_epi16(_mm256_add_epi16(_mm256_add_epi16(p0, p1), _mm256_add_epi16(p2, p3)),
                                         _mm256_add_epi16(_mm256_add_epi16(p4, p5), _mm256_add_epi16(p6, p7)));
    return _mm256_madd_epi16(s16, _mm256_set1_epi16((short)s));
}

/* ---- Q4_K weights · Q8_K activations. BS: per super-block 4 vectors, lanes (2t, 2t+1) = token
 * t's sums over sub-blocks (2p, 2p+1) of 32 — with the mins (p pairs) they give the min term */
static void q4_K_row(size_t nb, const uint8_t *w, const uint8_t *P, const float *DA, const uint8_t *BS, float *out) {
    __m256 acc = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (size_t b = 0; b < nb; b++, w += 144, P += 2048, BS += 128) {
        uint32_t u[4];
        memcpy(u, w + 4, 12);
        u[3] = ((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4);
        const uint32_t t1 = u[1] & 0x3f3f3f3fu;
        u[1] = (u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4);
        u[2] = t1;
        u[0] &= 0x3f3f3f3fu;
        const uint8_t *sc = (const uint8_t *)u, *mn = sc + 8;
        __m256i isum = _mm256_setzero_si256(), isum2 = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) { /* chunk c: sub-block 2c in the low nibbles, 2c+1 in the high */
            const __m256i v0 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(w + 16 + 32 * c)));
            const __m256i v1 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(w + 32 + 32 * c)));
            isum = _mm256_add_epi32(isum, q4_sub(_mm256_and_si256(v0, m4), _mm256_and_si256(v1, m4), P + 512 * c, sc[2 * c]));
            isum2 = _mm256_add_epi32(isum2, q4_sub(_mm256_and_si256(_mm256_srli_epi16(v0, 4), m4), _mm256_and_si256(_mm256_srli_epi16(v1, 4), m4),
                                                   P + 512 * c + 256, sc[2 * c + 1]));
        }
        isum = _mm256_add_epi32(isum, isum2);
        __m256i ms = _mm256_setzero_si256();
        for (int p = 0; p < 4; p++)
            ms = _mm256_add_epi32(ms, _mm256_madd_epi16(_mm256_load_si256((const __m256i *)(BS + 32 * p)), _mm256_set1_epi32(mn[2 * p] | (mn[2 * p + 1] << 16))));
        const __m256 da = _mm256_load_ps(DA + 8 * b);
        acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(ld_f16(w)), da), _mm256_cvtepi32_ps(isum), acc);
        acc = _mm256_fnmadd_ps(_mm256_mul_ps(_mm256_set1_ps(ld_f16(w + 2)), da), _mm256_cvtepi32_ps(ms), acc);
    }
    _mm256_storeu_ps(out, acc);
}

/* ---- Q6_K weights · Q8_K activations. BS: per super-block 8 vectors, lanes (2t, 2t+1) = token
 * t's 16-element sums (2p, 2p+1): with the scales they give the −32 offset's term */
static void q6_K_row(size_t nb, const uint8_t *w, const uint8_t *P, const float *DA, const uint8_t *BS, float *out) {
    __m256 acc = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x03);
    _Alignas(32) uint8_t q[256];
    for (size_t b = 0; b < nb; b++, w += 210, P += 2048, BS += 256) {
        const int8_t *sc = (const int8_t *)(w + 192);
        for (int h = 0; h < 2; h++) { /* element 128h + 32k + l, as dot_q6_K */
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(w + 64 * h)), l1 = _mm256_loadu_si256((const __m256i *)(w + 64 * h + 32));
            const __m256i hb = _mm256_loadu_si256((const __m256i *)(w + 128 + 32 * h));
            _mm256_store_si256((__m256i *)(q + 128 * h), _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m2), 4)));
            _mm256_store_si256((__m256i *)(q + 128 * h + 32),
                               _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m2), 4)));
            _mm256_store_si256((__m256i *)(q + 128 * h + 64),
                               _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m2), 4)));
            _mm256_store_si256((__m256i *)(q + 128 * h + 96),
                               _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m2), 4)));
        }
        __m256i isum = _mm256_setzero_si256(), off = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int j = 0; j < 16; j++) { /* sub-block j: 16 elements, 4 groups */
            const uint8_t *qj = q + 16 * j, *Pj = P + 128 * j;
            const __m256i sa = _mm256_add_epi16(_mm256_maddubs_epi16(bcast4(qj), _mm256_load_si256((const __m256i *)Pj)),
                                                _mm256_maddubs_epi16(bcast4(qj + 4), _mm256_load_si256((const __m256i *)(Pj + 32))));
            const __m256i sb = _mm256_add_epi16(_mm256_maddubs_epi16(bcast4(qj + 8), _mm256_load_si256((const __m256i *)(Pj + 64))),
                                                _mm256_maddubs_epi16(bcast4(qj + 12), _mm256_load_si256((const __m256i *)(Pj + 96))));
            const __m256i s = _mm256_set1_epi16(sc[j]);
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(_mm256_madd_epi16(sa, s), _mm256_madd_epi16(sb, s)));
        }
        for (int p = 0; p < 8; p++)
            off = _mm256_add_epi32(off, _mm256_madd_epi16(_mm256_load_si256((const __m256i *)(BS + 32 * p)),
                                                          _mm256_set1_epi32((int)((uint32_t)(uint16_t)sc[2 * p] | (uint32_t)(uint16_t)sc[2 * p + 1] << 16))));
        isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(off, 5));
        acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(ld_f16(w + 208)), _mm256_load_ps(DA + 8 * b)), _mm256_cvtepi32_ps(isum), acc);
    }
    _mm256_storeu_ps(out, acc);
}

size_t mk_qgemm_scratch_avx2(mk_dtype wt, size_t n_in) {
    const size_t nb = wt == MK_DT_Q8_0 ? n_in / MK_QK8_0 : n_in / MK_QK_K;
    return QG_TB * n_in + nb * 32 + (wt == MK_DT_Q8_0 ? 0 : nb * 256) + 64;
}

bool mk_qgemm_avx2(mk_dtype wt, size_t n_in, const void *vw, size_t wrb, size_t nr, const void *vxq, size_t arb, size_t nt, float *y, size_t ldy,
                   const float *bias, void *scratch) {
    if (!(wt == MK_DT_Q8_0 || wt == MK_DT_Q4_K || wt == MK_DT_Q6_K)) return false;
    const uint8_t *w = vw, *xq = vxq;
    const bool k = wt != MK_DT_Q8_0;
    const size_t nb = k ? n_in / MK_QK_K : n_in / MK_QK8_0;
    uint8_t *P = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63); /* the packed tokens */
    float *DA = (float *)(P + QG_TB * n_in);                                 /* (nb, 8) scales */
    uint8_t *BS = (uint8_t *)(DA + 8 * nb);                                  /* K-quants: (nb, 8 or 4, 32) sums */
    for (size_t t0 = 0; t0 < nt; t0 += QG_TB) {
        const int rn = (int)MK_MIN((size_t)QG_TB, nt - t0);
        const uint8_t *a[QG_TB];
        for (int t = 0; t < rn; t++) a[t] = xq + (t0 + (size_t)t) * arb;
        pack_tokens(P, a, rn, nb, k ? 292 : 34, k ? 4 : 2, k ? 8 : 1);
        for (size_t b = 0; b < nb; b++)
            for (int t = 0; t < QG_TB; t++) DA[8 * b + (size_t)t] = t >= rn ? 0.0f : k ? ld_f32(a[t] + 292 * b) : ld_f16(a[t] + 34 * b);
        if (k)
            for (size_t b = 0; b < nb; b++) {
                int16_t *bs = (int16_t *)(BS + b * (wt == MK_DT_Q4_K ? 128 : 256));
                for (int t = 0; t < QG_TB; t++)
                    for (int j = 0; j < 16; j++) {
                        int16_t v = 0;
                        if (t < rn) memcpy(&v, a[t] + 292 * b + 260 + 2 * j, 2);
                        if (wt == MK_DT_Q6_K) bs[(j / 2) * 16 + 2 * t + j % 2] = v;     /* vector j/2, lane 2t + j%2 */
                        else if (j % 2 == 0) bs[(j / 4) * 16 + 2 * t + (j / 2) % 2] = v; /* 32-sums: vector j/4 */
                        else bs[(j / 4) * 16 + 2 * t + (j / 2) % 2] += v;
                    }
            }
        for (size_t r = 0; r < nr; r++) {
            const uint8_t *wr = w + r * wrb;
            float o[QG_TB];
            if (wt == MK_DT_Q4_K) q4_K_row(nb, wr, P, DA, BS, o);
            else if (wt == MK_DT_Q6_K) q6_K_row(nb, wr, P, DA, BS, o);
            else q8_0_row(nb, wr, P, DA, o);
            for (int t = 0; t < rn; t++) y[(t0 + (size_t)t) * ldy + r] = bias ? o[t] + bias[r] : o[t];
        }
    }
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
