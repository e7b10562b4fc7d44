/* Block quantization (src/tensor/quant.c): bit-exact agreement with the gguf PyPI package's numpy
 * quantizers (fixture from tools/gen_quant_fixtures.py), known-answer blocks, round-trip error
 * bounds on random data, the reference dot products, the SIMD dot products and quantizer against
 * the reference, and the quantized matmul drivers (plain and team, every ISA of this CPU). */
#include "format/safetensors.h"
#include "mk_test.h"
#include "tensor/kernels.h"
#include "tensor/quant.h"
#include "tensor/qpack.h"

#include <omp.h>

#define FIXTURE "tests/fixtures/quant/quant_ref.safetensors"

static const mk_tensor *get(const mk_st_set *s, const char *name) {
    const mk_st_entry *e = mk_st_find(s, name);
    return e ? &e->t : NULL;
}

/* Simple deterministic generator (xorshift64* → Box-Muller). */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double urand(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}
static float nrand(void) {
    double u = urand() + 1e-300, v = urand();
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static void test_traits(void) {
    const struct { mk_dtype dt; size_t be, bb; } want[] = {
        {MK_DT_F32, 1, 4},     {MK_DT_F16, 1, 2},      {MK_DT_BF16, 1, 2},     {MK_DT_Q8_0, 32, 34},
        {MK_DT_Q4_0, 32, 18},  {MK_DT_Q4_K, 256, 144}, {MK_DT_Q6_K, 256, 210}, {MK_DT_Q8_K, 256, 292},
        {MK_DT_MXFP4, 32, 17},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        CHECK(mk_dtypes[want[i].dt].block_elems == want[i].be, "%s block_elems", mk_dtypes[want[i].dt].name);
        CHECK(mk_dtypes[want[i].dt].block_bytes == want[i].bb, "%s block_bytes", mk_dtypes[want[i].dt].name);
    }
    CHECK(mk_dtype_row_bytes(MK_DT_Q4_K, 4096) == 16 * 144, "Q4_K row bytes");
    CHECK(mk_dtype_row_bytes(MK_DT_Q8_0, 64) == 68, "Q8_0 row bytes");
    CHECK(!mk_dtype_row_ok(MK_DT_Q6_K, 128) && mk_dtype_row_ok(MK_DT_Q6_K, 512), "Q6_K row_ok");
    mk_dtype dt;
    CHECK(mk_dtype_from_name("Q4_K", &dt) && dt == MK_DT_Q4_K, "name lookup");
}

/* Bytes of the fixture's U8 tensor `name` equal buf (n bytes); prints the first difference. */
static bool same_bytes(const char *what, const uint8_t *want, const uint8_t *got, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (want[i] != got[i]) {
            fprintf(stderr, "  %s: first byte difference at %zu: want 0x%02x, got 0x%02x\n", what, i, want[i], got[i]);
            return false;
        }
    return true;
}

static bool same_floats(const char *what, const float *want, const float *got, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&want[i], &got[i], 4) != 0) {
            fprintf(stderr, "  %s: first value difference at %zu: want %.9g, got %.9g\n", what, i, want[i], got[i]);
            return false;
        }
    return true;
}

static void test_gguf_py_fixture(void) {
    mk_st_set *s = NULL;
    REQUIRE(mk_st_open_file(&s, FIXTURE) == MK_OK, "%s", mk_last_error());
    const mk_tensor *x = get(s, "x");
    REQUIRE(x && x->dtype == MK_DT_F32 && x->ndim == 2, "x");
    const size_t R = (size_t)x->shape[0], C = (size_t)x->shape[1];
    const float *xf = x->data;
    uint8_t *q = malloc(C * 4);
    float *d = malloc(C * sizeof(float));
    const struct { const char *name; mk_dtype dt; } types[] = {
        {"q8_0", MK_DT_Q8_0}, {"q4_0", MK_DT_Q4_0}, {"bf16", MK_DT_BF16}, {"f16", MK_DT_F16},
        {"q4_k", MK_DT_Q4_K}, {"q6_k", MK_DT_Q6_K}, {"mxfp4", MK_DT_MXFP4},
    };
    int checked_k = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        char nq[32], nd[32];
        snprintf(nq, sizeof nq, "%s.q", types[ti].name);
        snprintf(nd, sizeof nd, "%s.deq", types[ti].name);
        const mk_tensor *tq = get(s, nq), *td = get(s, nd);
        if (!tq) {
            /* Q4_K/Q6_K quantize expectations exist only when generated with --ggml-lib (ggml's own
             * quantize_row_q4_K_ref / _q6_K_ref through ctypes; gguf-py has no K-quant quantizer) */
            CHECK(types[ti].dt == MK_DT_Q4_K || types[ti].dt == MK_DT_Q6_K, "%s missing", nq);
            continue;
        }
        const size_t rb = mk_dtype_row_bytes(types[ti].dt, C);
        REQUIRE((size_t)tq->nbytes == R * rb, "%s: %zu bytes, expected %zu", nq, tq->nbytes, R * rb);
        for (size_t r = 0; r < R; r++) {
            char what[64];
            snprintf(what, sizeof what, "%s row %zu", nq, r);
            mk_quantize_row(types[ti].dt, xf + r * C, q, C);
            CHECK(same_bytes(what, (const uint8_t *)tq->data + r * rb, q, rb), "%s: quantized bytes differ from gguf-py", what);
            if (td) {
                snprintf(what, sizeof what, "%s row %zu", nd, r);
                mk_dequantize_row(types[ti].dt, (const uint8_t *)tq->data + r * rb, d, C);
                CHECK(same_floats(what, (const float *)td->data + r * C, d, C), "%s: dequantized values differ from gguf-py", what);
            }
        }
        checked_k += types[ti].dt == MK_DT_Q4_K || types[ti].dt == MK_DT_Q6_K;
    }
    if (!checked_k) printf("  (fixture has no ggml Q4_K/Q6_K quantize expectations; regenerate with --ggml-lib to check them)\n");
    /* K-quant dequantization of random valid blocks */
    const struct { const char *name; mk_dtype dt; } kq[] = {{"q4_k", MK_DT_Q4_K}, {"q6_k", MK_DT_Q6_K}};
    for (size_t ki = 0; ki < 2; ki++) {
        char nb[32], nd[32];
        snprintf(nb, sizeof nb, "%s.blocks", kq[ki].name);
        snprintf(nd, sizeof nd, "%s.blocks_deq", kq[ki].name);
        const mk_tensor *tb = get(s, nb), *td = get(s, nd);
        REQUIRE(tb && td, "%s / %s", nb, nd);
        size_t n = (size_t)mk_tensor_numel(td);
        float *y = malloc(n * sizeof(float));
        mk_dequantize_row(kq[ki].dt, tb->data, y, n);
        CHECK(same_floats(nd, td->data, y, n), "%s: dequantized values differ from gguf-py", nd);
        free(y);
    }
    /* ggml's scalar dot products (with --ggml-lib): activations quantized identically (bit for
     * bit), and mk_vec_dot_ref equal to ggml_vec_dot_*_generic up to float rounding: the integer
     * sums are the same, but ggml's build may contract `sums += d * aux32` into FMAs (gnu11 +
     * -march=native) where moekit (-std=c11) does not; measured: Q8_0/Q4_0/Q6_K identical,
     * Q4_K within 4e-7 relative. */
    const mk_tensor *act = get(s, "act"), *a8 = get(s, "act.q8_0"), *ak = get(s, "act.q8_k");
    if (act && a8 && ak) {
        mk_quantize_row(MK_DT_Q8_0, act->data, q, C);
        CHECK(same_bytes("act.q8_0", a8->data, q, mk_dtype_row_bytes(MK_DT_Q8_0, C)), "Q8_0 activations differ from gguf-py");
        mk_quantize_row(MK_DT_Q8_K, act->data, q, C);
        CHECK(same_bytes("act.q8_k", ak->data, q, mk_dtype_row_bytes(MK_DT_Q8_K, C)), "Q8_K activations differ from ggml");
        const struct { const char *name; mk_dtype dt; } dt4[] = {
            {"q8_0", MK_DT_Q8_0}, {"q4_0", MK_DT_Q4_0}, {"q4_k", MK_DT_Q4_K}, {"q6_k", MK_DT_Q6_K}, {"mxfp4", MK_DT_MXFP4}};
        for (size_t k = 0; k < sizeof dt4 / sizeof dt4[0]; k++) {
            char nq[32], nd[32];
            snprintf(nq, sizeof nq, "%s.q", dt4[k].name);
            snprintf(nd, sizeof nd, "dot.%s", dt4[k].name);
            const mk_tensor *tq = get(s, nq), *td = get(s, nd);
            REQUIRE(tq && td, "%s / %s", nq, nd);
            const void *av = mk_vec_dot_type(dt4[k].dt) == MK_DT_Q8_K ? ak->data : a8->data;
            const size_t rb = mk_dtype_row_bytes(dt4[k].dt, C);
            for (size_t r = 0; r < R; r++) {
                float got = mk_vec_dot_ref(dt4[k].dt, C, (const uint8_t *)tq->data + r * rb, av), want = ((const float *)td->data)[r];
                CHECK(fabsf(got - want) <= 2e-6f * fabsf(want) + 1e-9f, "%s row %zu: mk_vec_dot_ref %.9g, ggml %.9g", nd, r, got, want);
            }
        }
    } else {
        printf("  (fixture has no ggml dot products; regenerate with --ggml-lib to check them)\n");
    }
    free(q);
    free(d);
    mk_st_free(s);
}

/* gpt-oss's HF MXFP4 layout (blocks and scales apart, adjacent nibbles) repacked into ggml's blocks
 * dequantizes to transformers' convert_moe_packed_tensors (tools/gen_quant_fixtures.py): the same
 * floats, except that code 8 is −0 in transformers' table and +0 in ggml's (equal as values; every
 * product and sum the kernels form is the same either way) */
static void test_mxfp4_from_hf(void) {
    mk_st_set *s = NULL;
    REQUIRE(mk_st_open_file(&s, "tests/fixtures/quant/mxfp4_hf.safetensors") == MK_OK, "%s", mk_last_error());
    const mk_tensor *bl = get(s, "blocks"), *sc = get(s, "scales"), *dq = get(s, "deq");
    REQUIRE(bl && sc && dq && bl->ndim == 4 && dq->ndim == 3 && dq->dtype == MK_DT_F32, "fixture tensors");
    const size_t rows = (size_t)(bl->shape[0] * bl->shape[1]), n = (size_t)dq->shape[2];
    REQUIRE(n == (size_t)bl->shape[2] * 32 && n <= 256, "row of %zu", n);
    uint8_t q[17 * 8];
    float y[256];
    size_t bad = 0, nz = 0;
    for (size_t r = 0; r < rows; r++) {
        mk_mxfp4_from_hf((const uint8_t *)bl->data + r * n / 2, (const uint8_t *)sc->data + r * n / 32, n, q);
        mk_dequantize_row(MK_DT_MXFP4, q, y, n);
        const float *want = (const float *)dq->data + r * n;
        for (size_t i = 0; i < n; i++) {
            const bool same = want[i] == 0 ? y[i] == 0 : memcmp(&want[i], &y[i], 4) == 0;
            if (!same && !bad++) fprintf(stderr, "  row %zu value %zu: transformers %.9g, moekit %.9g\n", r, i, want[i], y[i]);
            nz += want[i] == 0 && signbit(want[i]);
        }
    }
    CHECK(bad == 0, "%zu values differ from transformers' dequantization", bad);
    CHECK(nz > 0, "the fixture holds no -0 (code 8) to check");
    mk_st_free(s);
}

static void test_known_answers(void) {
    float y[256];
    /* Q8_0: d = 0.5 (f16 0x3800), qs[j] = j - 16 */
    uint8_t b8[34] = {0x00, 0x38};
    for (int j = 0; j < 32; j++) b8[2 + j] = (uint8_t)(int8_t)(j - 16);
    mk_dequantize_row(MK_DT_Q8_0, b8, y, 32);
    for (int j = 0; j < 32; j++) CHECK(y[j] == 0.5f * (float)(j - 16), "q8_0 y[%d] = %g", j, y[j]);
    /* Q4_0: d = 2 (0x4000), qs[j] = 0x21 → y[j] = (1-8)·2, y[j+16] = (2-8)·2 */
    uint8_t b4[18] = {0x00, 0x40};
    memset(b4 + 2, 0x21, 16);
    mk_dequantize_row(MK_DT_Q4_0, b4, y, 32);
    for (int j = 0; j < 16; j++) CHECK(y[j] == -14.0f && y[j + 16] == -12.0f, "q4_0 y[%d] = %g, y[%d] = %g", j, y[j], j + 16, y[j + 16]);
    /* Q4_K: d = 1, dmin = 0.5; scales: sc0..3 = 1..4, m0..3 = 0, sc4..7 = 5, m4..7 = 1; all nibbles lo 1, hi 3 */
    uint8_t bk[144] = {0x00, 0x3c, 0x00, 0x38, 1, 2, 3, 4, 0, 0, 0, 0, 0x15, 0x15, 0x15, 0x15};
    memset(bk + 16, 0x31, 128);
    mk_dequantize_row(MK_DT_Q4_K, bk, y, 256);
    const float want_k[8] = {1 * 1, 2 * 3, 3 * 1, 4 * 3, 5 * 1 - 0.5f, 5 * 3 - 0.5f, 5 * 1 - 0.5f, 5 * 3 - 0.5f};
    for (int i = 0; i < 256; i++) CHECK(y[i] == want_k[i / 32], "q4_k y[%d] = %g, want %g", i, y[i], want_k[i / 32]);
    /* Q6_K: d = 0.25 (0x3400), all scales 2, ql = 0x21, qh = 0xff → q = (1|48)-32 = 17 (low), (2|48)-32 = 18 (high) */
    uint8_t b6[210];
    memset(b6, 0x21, 128);
    memset(b6 + 128, 0xff, 64);
    memset(b6 + 192, 2, 16);
    b6[208] = 0x00;
    b6[209] = 0x34;
    mk_dequantize_row(MK_DT_Q6_K, b6, y, 256);
    for (int i = 0; i < 256; i++) {
        float want = (i % 128) < 64 ? 0.25f * 2 * 17 : 0.25f * 2 * 18;
        CHECK(y[i] == want, "q6_k y[%d] = %g, want %g", i, y[i], want);
    }
    /* MXFP4: e = 126 → 2^(126-128) = 0.25 per doubled code; byte j = code j (low) | code 15-j (high):
     * y[j] = kv[j]·0.25, y[j+16] = kv[15-j]·0.25 (kv = 0,1,2,3,4,6,8,12,0,-1,...,-12, doubled E2M1) */
    uint8_t bm[17] = {126};
    for (int j = 0; j < 16; j++) bm[1 + j] = (uint8_t)(j | (15 - j) << 4);
    mk_dequantize_row(MK_DT_MXFP4, bm, y, 32);
    const float e2m1[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};
    for (int j = 0; j < 16; j++)
        CHECK(y[j] == e2m1[j] * 0.5f && y[j + 16] == e2m1[15 - j] * 0.5f, "mxfp4 y[%d] = %g, y[%d] = %g", j, y[j], j + 16, y[j + 16]);
    CHECK(mk_e8m0_half(127) == 0.5f && mk_e8m0_half(1) == 0x1p-127f && mk_e8m0_half(0) == 0x1p-128f && mk_e8m0_half(254) == 0x1p126f,
          "E8M0 half scales (normal and subnormal)");
    /* MXFP4 quantizer: amax 6 → e = floor(log2 6) - 2 + 127 = 127, d = 0.5: the E2M1 grid itself comes
     * back exactly; 2.5, halfway between 2 and 3, takes the first code (2); -0 takes code 0 */
    float xm[32], zm[32];
    for (int j = 0; j < 32; j++) xm[j] = e2m1[j % 16] * (j < 16 ? 1.0f : -1.0f);
    xm[8] = 2.5f;
    mk_quantize_row(MK_DT_MXFP4, xm, bm, 32);
    mk_dequantize_row(MK_DT_MXFP4, bm, zm, 32);
    CHECK(bm[0] == 127 && zm[8] == 2.0f && (bm[1 + 8] & 15) == 4, "mxfp4 scale %u, tie 2.5 -> %g (code %u)", bm[0], zm[8], bm[1 + 8] & 15);
    size_t off = 0;
    for (int j = 0; j < 32; j++) off += j != 8 && zm[j] != xm[j];
    CHECK(off == 0 && (bm[1] & 15) == 0 && (bm[1] >> 4) == 0, "mxfp4 grid round trip: %zu values differ", off);
    /* Quantizing exactly representable data gives it back exactly. */
    float x[32], z[32];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16) * 0.25f;
    x[0] = -31.75f; /* amax 31.75 = 127 · 0.25 */
    mk_quantize_row(MK_DT_Q8_0, x, b8, 32);
    mk_dequantize_row(MK_DT_Q8_0, b8, z, 32);
    CHECK(memcmp(x, z, sizeof x) == 0, "q8_0 exact round trip");
}

static void test_error_bounds(void) {
    enum { N = 4096 };
    static float x[N], y[N];
    static uint8_t q[N * 4];
    for (int i = 0; i < N; i++) x[i] = nrand() * 0.05f;
    x[100] = 1.5f; /* one outlier */
    const struct { mk_dtype dt; double max_rel_rmse; } t[] = {
        {MK_DT_F16, 1e-3}, {MK_DT_BF16, 5e-3}, {MK_DT_Q8_0, 8e-3}, {MK_DT_Q6_K, 2.5e-2}, {MK_DT_Q4_K, 0.12}, {MK_DT_Q4_0, 0.15},
        {MK_DT_MXFP4, 0.2},
    };
    double ss = 0;
    for (int i = 0; i < N; i++) ss += (double)x[i] * x[i];
    for (size_t k = 0; k < sizeof t / sizeof t[0]; k++) {
        mk_quantize_row(t[k].dt, x, q, N);
        mk_dequantize_row(t[k].dt, q, y, N);
        double se = 0, worst_blk = 0;
        const size_t be = mk_dtypes[t[k].dt].block_elems > 1 ? mk_dtypes[t[k].dt].block_elems : 32;
        for (size_t b = 0; b < N / be; b++) {
            double amax = 0, emax = 0;
            for (size_t i = b * be; i < (b + 1) * be; i++) {
                amax = fmax(amax, fabs(x[i]));
                emax = fmax(emax, fabs((double)x[i] - y[i]));
                se += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
            }
            if (amax > 0) worst_blk = fmax(worst_blk, emax / amax);
        }
        double rel = sqrt(se / ss);
        printf("  %-5s relative RMS error %.4f, worst |error|/block amax %.4f\n", mk_dtypes[t[k].dt].name, rel, worst_blk);
        CHECK(rel <= t[k].max_rel_rmse, "%s: relative RMS error %.4g > %.4g", mk_dtypes[t[k].dt].name, rel, t[k].max_rel_rmse);
        /* per-block max error: half a step plus the f16 rounding of the scale */
        if (t[k].dt == MK_DT_Q8_0) CHECK(worst_blk <= 0.5 / 127 * 1.2, "Q8_0 block error %.4g", worst_blk);
        if (t[k].dt == MK_DT_Q4_0) CHECK(worst_blk <= 1.0 / 8 * 1.01, "Q4_0 block error %.4g", worst_blk);
        /* MXFP4: amax lies in [4d', 8d') (d' = 2^(floor(log2 amax) - 2), the E2M1 scale). Inside the
         * grid (up to 6d', widest step 2d') a value is at most d' off; above it, it clips to 6d', less
         * than 2d' below amax < 8d'. Either way at most 1/4 of amax. */
        if (t[k].dt == MK_DT_MXFP4) CHECK(worst_blk <= 0.25, "MXFP4 block error %.4g", worst_blk);
    }
    /* All-zero input stays zero. */
    memset(x, 0, sizeof x);
    const mk_dtype all[] = {MK_DT_Q8_0, MK_DT_Q4_0, MK_DT_Q4_K, MK_DT_Q6_K, MK_DT_MXFP4, MK_DT_Q8_K};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) {
        mk_quantize_row(all[k], x, q, N);
        mk_dequantize_row(all[k], q, y, N);
        double m = 0;
        for (int i = 0; i < N; i++) m = fmax(m, fabs(y[i]));
        CHECK(m == 0, "%s: zeros come back as %g", mk_dtypes[all[k]].name, m);
    }
}

static void test_vec_dot(void) {
    enum { N = 1024 };
    static float w[N], a[N], wd[N], ad[N];
    static uint8_t qw[N * 4], qa[N * 4];
    for (int i = 0; i < N; i++) {
        w[i] = nrand() * 0.05f;
        a[i] = nrand();
    }
    double exact = 0, mag = 0;
    for (int i = 0; i < N; i++) {
        exact += (double)w[i] * a[i];
        mag += fabs((double)w[i] * a[i]);
    }
    const mk_dtype wt[] = {MK_DT_Q8_0, MK_DT_Q4_0, MK_DT_Q4_K, MK_DT_Q6_K, MK_DT_MXFP4, MK_DT_F16, MK_DT_BF16, MK_DT_F32};
    const double tol_q[] = {0.01, 0.1, 0.1, 0.03, 0.1, 1e-3, 1e-2, 1e-5}; /* vs the exact f32 dot, relative to Σ|w·a| */
    for (size_t k = 0; k < sizeof wt / sizeof wt[0]; k++) {
        const mk_dtype vt = mk_vec_dot_type(wt[k]);
        mk_quantize_row(wt[k], w, qw, N);
        mk_quantize_row(vt, a, qa, N);
        float s = mk_vec_dot_ref(wt[k], N, qw, qa);
        /* The same sum over dequantized operands: equal up to float summation order. */
        mk_dequantize_row(wt[k], qw, wd, N);
        mk_dequantize_row(vt, qa, ad, N);
        double dq = 0;
        for (int i = 0; i < N; i++) dq += (double)wd[i] * ad[i];
        printf("  dot %-5s x %-4s = %+.6f  (dequantized operands %+.6f, f32 %+.6f)\n", mk_dtypes[wt[k]].name, mk_dtypes[vt].name, s, dq, exact);
        CHECK(fabs(s - dq) <= 1e-5 * mag, "%s: vec_dot %g vs dequantized dot %g", mk_dtypes[wt[k]].name, s, dq);
        CHECK(fabs(s - exact) <= tol_q[k] * mag, "%s: vec_dot %g vs f32 dot %g", mk_dtypes[wt[k]].name, s, exact);
    }
}

/* Σ|w_i·a_i| over dequantized operands: the scale of a dot product's rounding error. */
static double dot_mag(mk_dtype wt, const void *qw, const void *qa, size_t n) {
    static float wd[4096], ad[4096];
    mk_dequantize_row(wt, qw, wd, n);
    mk_dequantize_row(mk_vec_dot_type(wt), qa, ad, n);
    double m = 0;
    for (size_t i = 0; i < n; i++) m += fabs((double)wd[i] * ad[i]);
    return m;
}

/* The AVX2 dot products against the scalar reference on random rows of several widths, with
 * outliers (one huge value per row: a block scale at its limit) and the extreme codes (-128 in a
 * Q8_0 weight, which the quantizer never writes but a file may hold). The integer block sums are
 * exact in both; only the float accumulation order differs: bound 1e-6 · Σ|w·a|, and 4e-6 for Q4_K,
 * whose result is the difference of two larger sums (scales and mins, each rounded) that cancel. */
static void test_simd_vec_dot(void) {
    const mk_dtype wt[] = {MK_DT_Q8_0, MK_DT_Q4_0, MK_DT_Q4_K, MK_DT_Q6_K, MK_DT_MXFP4};
    enum { NT = sizeof wt / sizeof wt[0] };
    if (mk_kern_isa_detect() < MK_ISA_AVX2) {
        printf("  this CPU has no AVX2: only the reference runs here\n");
        return;
    }
    static float w[4096], a[4096];
    static uint8_t qw[4096 * 2], qa[4096 * 2];
    /* 96 and 2880 (gpt-oss's rows: 90 blocks) reach the kernels' tails after their unrolled loops */
    const size_t widths[] = {256, 512, 768, 2048, 4096, 96, 2880};
    double worst[NT] = {0};
    for (size_t k = 0; k < NT; k++) {
        mk_qdot_fn ref = mk_qdot_ref(wt[k]), simd = mk_qdot_avx2(wt[k]);
        CHECK(ref && simd, "%s: kernels exist", mk_dtypes[wt[k]].name);
        if (!ref || !simd) continue;
        for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++)
            for (int rep = 0; rep < 20; rep++) {
                const size_t n = widths[wi];
                if (n % mk_dtypes[wt[k]].block_elems) break; /* (the K-quants' blocks are 256) */
                for (size_t i = 0; i < n; i++) {
                    w[i] = nrand() * 0.05f;
                    a[i] = nrand() * (rep % 3 ? 1.0f : 40.0f);
                }
                a[(size_t)rep * 37 % n] = 900.0f; /* a massive activation */
                mk_quantize_row(wt[k], w, qw, n);
                mk_quantize_row(mk_vec_dot_type(wt[k]), a, qa, n);
                if (wt[k] == MK_DT_Q8_0 && rep % 4 == 1) qw[2 + rep] = 0x80; /* code -128 */
                if (wt[k] == MK_DT_MXFP4 && rep % 4 == 1) { /* the largest codes (±12) under scales far from the data's */
                    memset(qw + 18, 0xF7, 16);
                    qw[17] = (uint8_t)(100 + rep), qw[0] = 150;
                }
                const double r = ref(n, qw, qa), s = simd(n, qw, qa), mag = dot_mag(wt[k], qw, qa, n);
                const double e = fabs(r - s) / (mag + 1e-30);
                if (e > worst[k]) worst[k] = e;
                /* the K-quants sum 8 or 16 scaled sub-blocks in another order than the reference (Q6_K
                 * reached 1.26e-6 on one draw): their rounding bound is 4e-6 */
                const double bnd = wt[k] == MK_DT_Q4_K || wt[k] == MK_DT_Q6_K ? 4e-6 : 1e-6;
                CHECK(fabs(r - s) <= bnd * mag + 1e-30, "%s n=%zu rep %d: avx2 %.9g vs reference %.9g", mk_dtypes[wt[k]].name, n, rep, s, r);
            }
        printf("  %-5s avx2 vs reference: worst |diff| / sum|w*a| = %.3g (bound %g)\n", mk_dtypes[wt[k]].name, worst[k], wt[k] == MK_DT_Q4_K || wt[k] == MK_DT_Q6_K ? 4e-6 : 1e-6);
    }
    /* the VNNI decode kernels: four rows at once (Q8_0: whole groups of 16 blocks and the rest one
     * by one; widths 256 and 768 leave 8 blocks over), the AVX2 kernels' bounds */
    if (!mk_kern_has_vnni()) {
        printf("  this CPU has no AVX-512 VNNI: its four-row kernels are not run here\n");
        return;
    }
    const struct { mk_dtype dt; mk_qdot4_fn f; double bound; } d4[] = {
        {MK_DT_Q8_0, mk_qdot4_q8_0_avx512vnni, 1e-6}, {MK_DT_Q4_K, mk_qdot4_q4_K_avx512vnni, 4e-6}, {MK_DT_Q6_K, mk_qdot4_q6_K_avx512vnni, 1e-6}};
    for (size_t k = 0; k < sizeof d4 / sizeof d4[0]; k++) {
        const mk_dtype dt = d4[k].dt, at = mk_vec_dot_type(dt);
        double worst4 = 0;
        int n4 = 0;
        for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++)
            for (int rep = 0; rep < 10; rep++) {
                const size_t n = widths[wi], rb = mk_dtype_row_bytes(dt, n);
                if (!mk_dtype_row_ok(dt, n)) continue;
                static uint8_t q4[4 * 4096 * 2];
                for (int r = 0; r < 4; r++) {
                    for (size_t i = 0; i < n; i++) w[i] = nrand() * (r == 2 ? 3.0f : 0.05f);
                    mk_quantize_row(dt, w, q4 + (size_t)r * rb, n);
                }
                if (rep % 3 == 1) /* extreme codes: Q8_0 -128; every bit of a K-quant's values set */
                    for (size_t i = 0; i < (dt == MK_DT_Q8_0 ? 1u : 64u); i++) q4[rb + (dt == MK_DT_Q6_K ? 0 : 16) + (size_t)rep + i] = dt == MK_DT_Q8_0 ? 0x80 : 0xFF;
                for (size_t i = 0; i < n; i++) a[i] = nrand() * (rep % 3 ? 1.0f : 40.0f);
                a[(size_t)rep * 37 % n] = 900.0f;
                mk_quantize_row(at, a, qa, n);
                float out[4];
                d4[k].f(n, q4, rb, qa, out);
                for (int r = 0; r < 4; r++) {
                    const uint8_t *wr = q4 + (size_t)r * rb;
                    const double ref = mk_vec_dot_ref(dt, n, wr, qa), mag = dot_mag(dt, wr, qa, n);
                    const double e = fabs(ref - out[r]) / (mag + 1e-30);
                    if (e > worst4) worst4 = e;
                    CHECK(fabs(ref - out[r]) <= d4[k].bound * mag + 1e-30, "%s vnni n=%zu rep %d row %d: %.9g vs reference %.9g", mk_dtypes[dt].name, n,
                          rep, r, out[r], ref);
                    n4++;
                }
            }
        printf("  %-5s avx512vnni 4-row vs reference: worst |diff| / sum|w*a| = %.3g over %d rows (bound %g)\n", mk_dtypes[dt].name, worst4, n4,
               d4[k].bound);
        CHECK(n4 >= 40, "%s: only %d rows checked", mk_dtypes[dt].name, n4);
    }
}

/* The AVX2 Q8_0 activation quantizer is bit-identical to the reference, ties included (roundf
 * rounds half away from zero; the hardware's nearest mode would round half to even). */
static void test_simd_quantize(void) {
    mk_qquant_fn q = mk_kern_isa_detect() >= MK_ISA_AVX2 ? mk_qquant_avx2(MK_DT_Q8_0) : NULL;
    if (!q) {
        printf("  no SIMD quantizer on this CPU\n");
        return;
    }
    enum { N = 2048 };
    static float x[N];
    static uint8_t want[N * 2], got[N * 2];
    for (int rep = 0; rep < 50; rep++) {
        for (int i = 0; i < N; i++) x[i] = nrand() * (rep % 5 == 0 ? 1e-3f : rep % 5 == 1 ? 300.0f : 1.0f);
        if (rep % 7 == 0)
            for (int i = 0; i < 32; i++) x[i] = 0;   /* an all-zero block: d = 0 */
        if (rep % 3 == 0)
            for (int b = 32; b < N; b += 32) {        /* ties: amax 127 → d = 1, values k + 0.5 */
                x[b] = 127.0f;
                for (int i = 1; i < 32; i++) x[b + i] = (float)((i * 7 + rep) % 251 - 125) + ((i & 1) ? 0.5f : -0.5f);
            }
        mk_quantize_row(MK_DT_Q8_0, x, want, N);
        q(x, got, N);
        CHECK(memcmp(want, got, mk_dtype_row_bytes(MK_DT_Q8_0, N)) == 0, "rep %d: avx2 Q8_0 quantizer differs from the reference", rep);
        /* Q8_K: also a block whose largest magnitude appears twice with both signs (the first wins)
         * and one whose largest value is negative */
        if (rep % 4 == 0) { x[300] = -500.0f; x[301] = 500.0f; }
        if (rep % 4 == 1) { x[600] = 400.0f; x[700] = -400.0f; }
        if (rep % 4 == 2) x[1000] = -1e4f;
        mk_quantize_row(MK_DT_Q8_K, x, want, N);
        mk_qquant_avx2(MK_DT_Q8_K)(x, got, N);
        CHECK(memcmp(want, got, mk_dtype_row_bytes(MK_DT_Q8_K, N)) == 0, "rep %d: avx2 Q8_K quantizer differs from the reference", rep);
    }
}

/* The quantized matmul drivers (mk_matmul_rows → mk_kern_matmul, mk_matmul_team inside a parallel
 * region, mk_matmul_team_q with shared pre-quantized activations) on every ISA this CPU has, for
 * a decode-sized batch (3 tokens) and a prefill-sized one (19):
 *  - where mk_kern_q_act says so (every batch on the scalar ISA, small ones on SIMD) each output
 *    equals the reference vec_dot of the weight row with the reference-quantized activation row:
 *    bit for bit on the scalar ISA, within 1e-6 · Σ|w·a| on SIMD;
 *  - otherwise (the packed GEMM) it equals the f32 product with the exactly dequantized weights
 *    within n_in · 2^-24 · Σ|w·x|;
 * also for a row range starting mid-matrix (an expert's slice) with a bias. */
static void test_matmul_hook(void) {
    enum { OUT = 40, IN = 512, TOKMAX = 19 };
    static float w[OUT * IN], wd[OUT * IN], x[TOKMAX * IN], y[TOKMAX * OUT], bias[OUT];
    static uint8_t q[OUT * IN * 2], xq[TOKMAX * IN * 2], xqd[TOKMAX * IN * 3];
    for (int i = 0; i < OUT * IN; i++) w[i] = nrand() * 0.05f;
    for (int i = 0; i < TOKMAX * IN; i++) x[i] = nrand();
    for (int i = 0; i < OUT; i++) bias[i] = nrand();
    const mk_dtype dts[] = {MK_DT_Q8_0, MK_DT_Q4_0, MK_DT_Q4_K, MK_DT_Q6_K, MK_DT_MXFP4};
    const mk_isa best = mk_kern_isa_detect();
    int n_qact = 0, n_gemm = 0;
    for (int isa = MK_ISA_SCALAR; isa <= (int)best; isa++) {
        mk_kern_set_isa((mk_isa)isa);
        for (int TOK = 3; TOK <= TOKMAX; TOK += TOKMAX - 3) {
            for (size_t k = 0; k < sizeof dts / sizeof dts[0]; k++) {
                const mk_dtype vt = mk_vec_dot_type(dts[k]);
                const size_t rb = mk_dtype_row_bytes(dts[k], IN), ab = mk_dtype_row_bytes(vt, IN);
                const bool qact = mk_kern_q_act(dts[k], (size_t)TOK);
                const bool int_gemm = isa >= MK_ISA_AVX2 && (dts[k] == MK_DT_Q8_0 || dts[k] == MK_DT_Q4_K || dts[k] == MK_DT_Q6_K || dts[k] == MK_DT_MXFP4);
                CHECK(qact == (isa == MK_ISA_SCALAR || TOK < 8 || int_gemm), "%s %s: q_act(%d tokens) = %d", mk_kern_isa_name((mk_isa)isa),
                      mk_dtypes[dts[k]].name, TOK, qact);
                /* the drivers' activation rows: the vec_dot type's, plus the block sums where the
                 * VNNI GEMM takes Q8_0, or the values + 128 where the AVX2 GEMM takes Q6_K */
                const size_t qb = mk_kern_qact_bytes(dts[k], IN);
                const bool vnni = isa == MK_ISA_AVX512 && mk_kern_has_vnni();
                const bool sums = vnni && dts[k] == MK_DT_Q8_0, uact = isa >= MK_ISA_AVX2 && !vnni && dts[k] == MK_DT_Q6_K;
                CHECK(qb == ab + (sums ? 4 * IN / 32 : 0) + (uact ? IN : 0), "%s %s: activation row bytes %zu", mk_kern_isa_name((mk_isa)isa),
                      mk_dtypes[dts[k]].name, qb);
                for (int r = 0; r < OUT; r++) mk_quantize_row(dts[k], w + r * IN, q + r * rb, IN);
                mk_to_f32(wd, q, dts[k], (size_t)OUT * IN);
                for (int t = 0; t < TOK; t++) mk_quantize_row(vt, x + t * IN, xq + t * ab, IN);
                for (int t = 0; t < TOK; t++) mk_kern_quantize_act(dts[k], x + t * IN, xqd + t * qb, IN);
                for (int t = 0; t < TOK; t++) CHECK(!memcmp(xqd + t * qb, xq + t * ab, ab), "mk_kern_quantize_act = the reference quantizer");
                for (int mode = 0; mode < 4; mode++) {
                    /* 0: mk_matmul_rows; 1: team; 2: team_q (always quantized activations);
                     * 3: rows 16.. of W (8 rows) with bias */
                    const size_t r0 = mode == 3 ? 16 : 0, nout = mode == 3 ? 8 : OUT;
                    const bool qa = mode == 2 || qact;
                    memset(y, 0, sizeof y);
                    if (mode == 0 || mode == 3) {
                        mk_matmul_rows(y, nout, x, IN, (size_t)TOK, q + r0 * rb, dts[k], nout, IN, mode == 3 ? bias : NULL);
                    } else {
                        #pragma omp parallel num_threads(2)
                        {
                            if (mode == 1) mk_matmul_team(y, nout, x, IN, (size_t)TOK, q, dts[k], nout, IN, NULL);
                            else mk_matmul_team_q(y, nout, xqd, (size_t)TOK, q, dts[k], nout, IN, NULL);
                        }
                    }
                    double worst = 0;
                    for (int t = 0; t < TOK; t++)
                        for (size_t r = 0; r < nout; r++) {
                            double want, bound;
                            if (qa) {
                                const uint8_t *wr = q + (r0 + r) * rb, *ar = xq + (size_t)t * ab;
                                want = mk_vec_dot_ref(dts[k], IN, wr, ar);
                                bound = isa == MK_ISA_SCALAR ? 0 : (dts[k] == MK_DT_Q4_K ? 4e-6 : 1e-6) * dot_mag(dts[k], wr, ar, IN);
                            } else {
                                double s = 0, mag = 0;
                                for (int i = 0; i < IN; i++) {
                                    s += (double)wd[(r0 + r) * IN + (size_t)i] * x[t * IN + i];
                                    mag += fabs((double)wd[(r0 + r) * IN + (size_t)i] * x[t * IN + i]);
                                }
                                want = s;
                                bound = IN * 0x1p-24 * mag;
                            }
                            if (mode == 3) {
                                want += bias[r];
                                bound += 1e-6 * fabs(want);
                            }
                            const double d = fabs((double)y[(size_t)t * nout + r] - want);
                            if (d > bound && d > worst) worst = d;
                        }
                    qa ? n_qact++ : n_gemm++;
                    CHECK(worst == 0, "%s %s %d tokens mode %d: max excess over the bound %g", mk_kern_isa_name((mk_isa)isa), mk_dtypes[dts[k]].name, TOK, mode, worst);
                }
            }
        }
    }
    printf("  %d products checked with quantized activations, %d through the packed f32 GEMM\n", n_qact, n_gemm);
    mk_kern_set_isa(best);
}

/* The packed GEMM's dequantization (SIMD for Q8_0, Q4_K, Q6_K) is exact: with one-hot activation
 * rows x_t = e_{k_t}, y[t][r] = W[r][k_t] bit for bit (the other products are exact zeros). */
static void test_gemm_dequant_exact(void) {
    enum { OUT = 40, IN = 1024, TOK = 8 };
    static float w[OUT * IN], wd[OUT * IN], x[TOK * IN], y[TOK * OUT];
    static uint8_t q[OUT * IN * 2];
    for (int i = 0; i < OUT * IN; i++) w[i] = nrand() * (i % 97 == 0 ? 3.0f : 0.05f);
    const mk_dtype dts[] = {MK_DT_Q8_0, MK_DT_Q4_0, MK_DT_Q4_K, MK_DT_Q6_K, MK_DT_MXFP4};
    const size_t ks[TOK] = {0, 31, 33, 255, 256, 511, 700, 1023};
    memset(x, 0, sizeof x);
    for (int t = 0; t < TOK; t++) x[t * IN + ks[t]] = 1.0f;
    mk_kern_set_qgemm(false); /* Q4_K/Q6_K prefill through the f32 GEMM, as MOEKIT_QGEMM=0 */
    for (size_t k = 0; k < sizeof dts / sizeof dts[0]; k++) {
        if (mk_kern_q_act(dts[k], TOK)) {
            printf("  %s: no packed GEMM on this CPU (nothing to check)\n", mk_dtypes[dts[k]].name);
            continue;
        }
        const size_t rb = mk_dtype_row_bytes(dts[k], IN);
        for (int r = 0; r < OUT; r++) mk_quantize_row(dts[k], w + r * IN, q + r * rb, IN);
        mk_to_f32(wd, q, dts[k], (size_t)OUT * IN);
        mk_matmul_rows(y, OUT, x, IN, TOK, q, dts[k], OUT, IN, NULL);
        int bad = 0;
        for (int t = 0; t < TOK; t++)
            for (int r = 0; r < OUT; r++) bad += y[t * OUT + r] != wd[r * IN + ks[t]];
        CHECK(bad == 0, "%s: %d of %d one-hot products differ from the dequantized weight", mk_dtypes[dts[k]].name, bad, TOK * OUT);
    }
    mk_kern_set_qgemm(true);
}

/* The integer prefill GEMM (mk_qgemm_avx2) against the scalar reference dot product, pair by
 * pair: odd and even token counts (it takes tokens in pairs), 13 rows (a partial 16-row panel), several n_in,
 * with and without bias, into a y wider than the rows; and the threaded driver over it, 1 thread
 * against 3, bit for bit. */
static void test_qgemm(void) {
    enum { NR = 13, LDY = 17, INMAX = 2048, TMAX = 100 };
    static float w[NR * INMAX], x[TMAX * INMAX], y[TMAX * LDY], y1[TMAX * NR], y3[TMAX * NR], bias[NR];
    static uint8_t q[NR * INMAX * 2], xq[TMAX * INMAX * 3], xqv[TMAX * INMAX * 3], scr[16 * INMAX + 65536]; /* scr + 1: any alignment */
    static float yv[TMAX * LDY];
    if (mk_kern_isa_detect() < MK_ISA_AVX2) {
        printf("  no AVX2 on this CPU: nothing to check\n");
        return;
    }
    const bool vnni = mk_kern_has_vnni();
    int vnni_checked = 0, vnni_diff = 0;
    double worst_vnni_q6 = 0;
    for (int i = 0; i < NR * INMAX; i++) w[i] = nrand() * (i % 61 == 0 ? 1.0f : 0.05f);
    for (int i = 0; i < TMAX * INMAX; i++) x[i] = nrand() * (i % 37 == 0 ? 8.0f : 1.0f);
    for (int i = 0; i < NR; i++) bias[i] = nrand();
    const mk_dtype dts[] = {MK_DT_Q8_0, MK_DT_Q4_K, MK_DT_Q6_K, MK_DT_MXFP4};
    enum { NDT = sizeof dts / sizeof dts[0] };
    const size_t ins[] = {256, 512, 2048}, nts[] = {4, 8, 9, 33, 100};
    double worst_rel[NDT] = {0};
    int checked = 0;
    for (size_t k = 0; k < NDT; k++)
        for (size_t ii = 0; ii < 3; ii++)
            for (size_t ti = 0; ti < 5; ti++) {
                const mk_dtype dt = dts[k], vt = mk_vec_dot_type(dt);
                const size_t IN = ins[ii], NT = nts[ti], rb = mk_dtype_row_bytes(dt, IN), ab0 = mk_dtype_row_bytes(vt, IN);
                const size_t ab = ab0 + (dt == MK_DT_Q6_K ? IN : 0); /* AVX2 Q6_K rows carry the values + 128 */
                for (int r = 0; r < NR; r++) mk_quantize_row(dt, w + r * IN, q + r * rb, IN);
                for (size_t t = 0; t < NT; t++) {
                    mk_quantize_row(vt, x + t * IN, xq + t * ab, IN);
                    if (dt == MK_DT_Q6_K) mk_q8_K_row_unsigned(xq + t * ab, IN, xq + t * ab + ab0);
                }
                const bool with_bias = ti % 2 == 1;
                for (size_t i = 0; i < NT * LDY; i++) y[i] = -12345.0f;
                REQUIRE(mk_qgemm_scratch_avx2(dt, IN) <= sizeof scr, "scratch");
                REQUIRE(mk_qgemm_avx2(dt, IN, q, rb, NR, xq, ab, NT, y, LDY, with_bias ? bias : NULL, scr + 1), "%s: no integer GEMM", mk_dtypes[dt].name);
                const bool vnni_dt = vnni && dt != MK_DT_MXFP4; /* MXFP4 has no VNNI GEMM: the AVX2 one runs there too */
                if (vnni_dt) { /* the VNNI GEMM: bit for bit the AVX2 one for Q8_0 and Q4_K; Q6_K (float sums
                             * over its sub-blocks) within the bound, below */
                    const size_t sb = dt == MK_DT_Q8_0 ? 4 * (IN / 32) : 0, avb = ab0 + sb; /* Q8_0 rows carry their block sums */
                    for (size_t t = 0; t < NT; t++) {
                        memcpy(xqv + t * avb, xq + t * ab, ab0);
                        if (sb) mk_q8_0_row_sums(xq + t * ab, IN, xqv + t * avb + ab0);
                    }
                    for (size_t i = 0; i < NT * LDY; i++) yv[i] = -12345.0f;
                    REQUIRE(mk_qgemm_scratch_avx512vnni(dt, IN) <= sizeof scr, "scratch");
                    REQUIRE(mk_qgemm_avx512vnni(dt, IN, q, rb, NR, xqv, avb, NT, yv, LDY, with_bias ? bias : NULL, scr + 3), "%s: no VNNI GEMM",
                            mk_dtypes[dt].name);
                    if (dt != MK_DT_Q6_K) {
                        vnni_diff += memcmp(y, yv, NT * LDY * sizeof(float)) != 0;
                        vnni_checked++;
                    }
                }
                for (size_t t = 0; t < NT; t++) {
                    for (int r = 0; r < NR; r++) {
                        const uint8_t *wr = q + (size_t)r * rb, *ar = xq + t * ab;
                        const double want = mk_vec_dot_ref(dt, IN, wr, ar) + (with_bias ? bias[r] : 0.0);
                        const double mag = dot_mag(dt, wr, ar, IN) + (with_bias ? fabs(bias[r]) : 0.0);
                        const double rel = fabs((double)y[t * LDY + (size_t)r] - want) / mag;
                        if (rel > worst_rel[k]) worst_rel[k] = rel;
                        if (vnni && dt == MK_DT_Q6_K) {
                            const double rv = fabs((double)yv[t * LDY + (size_t)r] - want) / mag;
                            if (rv > worst_vnni_q6) worst_vnni_q6 = rv;
                        }
                        checked++;
                    }
                    for (int r = NR; r < LDY; r++) CHECK(y[t * LDY + (size_t)r] == -12345.0f, "%s: wrote past the rows", mk_dtypes[dt].name);
                    for (int r = NR; r < LDY && vnni_dt; r++) CHECK(yv[t * LDY + (size_t)r] == -12345.0f, "%s: VNNI wrote past the rows", mk_dtypes[dt].name);
                }
                /* the threaded driver (quantized activations shared by the team) */
                if (ii == 2 && ti >= 3) {
                    const size_t qb = mk_kern_qact_bytes(dt, IN); /* the drivers' activation rows (with Q8_0 sums where VNNI) */
                    REQUIRE(qb >= ab0 && NT * qb <= sizeof xqv, "activation row bytes %zu", qb);
                    for (size_t t = 0; t < NT; t++) mk_kern_quantize_act(dt, x + t * IN, xqv + t * qb, IN);
                    CHECK(!memcmp(xqv, xq, ab0), "%s: mk_kern_quantize_act differs from the reference quantizer", mk_dtypes[dt].name);
                    #pragma omp parallel num_threads(1)
                    mk_matmul_team_q(y1, NR, xqv, NT, q, dt, NR, IN, NULL);
                    #pragma omp parallel num_threads(3)
                    mk_matmul_team_q(y3, NR, xqv, NT, q, dt, NR, IN, NULL);
                    const float *yg = vnni_dt ? yv : y; /* the driver takes the VNNI GEMM where there is one */
                    for (size_t t = 0; t < NT; t++)
                        if (memcmp(y1 + t * NR, yg + t * LDY, NR * sizeof(float)) && !with_bias)
                            CHECK(0, "%s: the driver's product differs from the GEMM's at token %zu", mk_dtypes[dt].name, t);
                    CHECK(!memcmp(y1, y3, NT * NR * sizeof(float)), "%s: 1 and 3 threads differ", mk_dtypes[dt].name);
                }
            }
    for (size_t k = 0; k < NDT; k++) {
        printf("  %s integer GEMM vs reference: worst |diff| / sum|w*a| = %.3g (bound 1e-6)\n", mk_dtypes[dts[k]].name, worst_rel[k]);
        CHECK(worst_rel[k] <= 1e-6, "%s integer GEMM: relative error %g", mk_dtypes[dts[k]].name, worst_rel[k]);
    }
    CHECK(checked == NDT * 3 * 154 * NR, "pairs checked %d", checked);
    if (vnni) {
        printf("  AVX-512 VNNI GEMM, Q8_0 and Q4_K: %d of %d products differ from the AVX2 GEMM's\n", vnni_diff, vnni_checked);
        CHECK(vnni_checked == 30 && vnni_diff == 0, "VNNI GEMM: %d of %d calls differ from AVX2", vnni_diff, vnni_checked);
        printf("  Q6_K AVX-512 VNNI GEMM vs reference: worst |diff| / sum|w*a| = %.3g (bound 1e-6)\n", worst_vnni_q6);
        CHECK(worst_vnni_q6 > 0 && worst_vnni_q6 <= 1e-6, "Q6_K VNNI GEMM: relative error %g", worst_vnni_q6);
    } else {
        printf("  no AVX-512 VNNI on this CPU: its GEMM is not checked\n");
    }
    CHECK(!mk_qgemm_avx2(MK_DT_Q4_0, 256, q, 18 * 8, 1, xq, 34 * 8, 4, y, LDY, NULL, scr), "Q4_0 has no integer GEMM");
}

/* The panel layout of qpack.h, written out element by element: row `row`'s values, scales, mins
 * and d of super-block sb (bytes at wb) where the integer GEMMs expect them. */
static uint8_t ref_kq_value(mk_dtype wt, const uint8_t *wb, int e) {
    if (wt == MK_DT_Q4_K) { /* chunk c of 64 values: low nibbles of qs[32c..], then high nibbles */
        const int c = e / 64, r = e % 64;
        const uint8_t q = wb[16 + 32 * c + r % 32];
        return r < 32 ? q & 15 : q >> 4;
    }
    const int h = e / 128, k = e % 128 / 32, l = e % 32; /* Q6_K */
    return (uint8_t)(((wb[64 * h + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 15) | (((wb[128 + 32 * h + l] >> (2 * k)) & 3) << 4));
}

/* Q4_K's 6-bit scale (min = 0) or min (min = 1) of sub-block j; Q6_K's int8 scale */
static int ref_kq_scale(mk_dtype wt, const uint8_t *wb, int j, int min) {
    if (wt == MK_DT_Q6_K) return (int8_t)wb[192 + j];
    const uint8_t *q = wb + 4;
    if (j < 4) return min ? q[j + 4] & 63 : q[j] & 63;
    return min ? (q[j + 4] >> 4) | ((q[j] >> 6) << 4) : (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4);
}

static void ref_kq_pack(mk_dtype wt, const uint8_t *w, size_t wrb, size_t nrow, size_t b0, size_t ks, const mk_kpanel *kp) {
    const bool q4 = wt == MK_DT_Q4_K;
    const int nsub = q4 ? 8 : 16;
    const size_t bb = q4 ? 144 : 210;
    for (size_t b = 0; b < ks; b++)
        for (size_t row = 0; row < QP_ROWS; row++) {
            const uint8_t *wb = row < nrow ? w + row * wrb + (b0 + b) * bb : NULL;
            const size_t hf = row / 8, lane = row % 8;
            for (int e = 0; e < 256; e++) kp->W[((b * 64 + (size_t)e / 4) * 2 + hf) * 32 + lane * 4 + (size_t)e % 4] = wb ? ref_kq_value(wt, wb, e) : 0;
            for (int j = 0; j < nsub; j++) {
                const int16_t s = wb ? (int16_t)ref_kq_scale(wt, wb, j, 0) : 0;
                int16_t *sc = kp->SC + b * (size_t)nsub * 32 + ((size_t)j * 2 + hf) * 16 + lane * 2;
                sc[0] = sc[1] = s;
            }
            for (int p = 0; p < nsub / 2; p++) { /* Q4_K's mins, Q6_K's scales, in pairs */
                int16_t *mp = kp->MP + b * (size_t)(nsub / 2) * 32 + ((size_t)p * 2 + hf) * 16 + lane * 2;
                mp[0] = wb ? (int16_t)ref_kq_scale(wt, wb, 2 * p, q4) : 0;
                mp[1] = wb ? (int16_t)ref_kq_scale(wt, wb, 2 * p + 1, q4) : 0;
            }
            kp->D[b * QP_ROWS + row] = wb ? mk_f16_to_f32((uint16_t)(wb[q4 ? 0 : 208] | wb[q4 ? 1 : 209] << 8)) : 0.0f;
            if (q4) kp->DM[b * QP_ROWS + row] = wb ? mk_f16_to_f32((uint16_t)(wb[2] | wb[3] << 8)) : 0.0f;
        }
}

/* The AVX2 panel pack (mk_qpack_kq) of Q4_K and Q6_K against the layout written out element by
 * element, byte for byte: full and partial panels (16, 13, 9, 1 rows), 1-4 super-blocks from the
 * first and a later one, on quantized normal weights and on random bytes (every bit pattern of the
 * values and the scales). */
static void test_qpack_kq(void) {
#if defined(__x86_64__)
    if (mk_kern_isa_detect() < MK_ISA_AVX2) {
        printf("  no AVX2 on this CPU: nothing to check\n");
        return;
    }
    enum { IN = 1536, NB = IN / 256 };
    static float w[16 * IN];
    static uint8_t q[16 * NB * 210], s1[QP_KS * 8192], s2[QP_KS * 8192];
    REQUIRE(mk_qpack_kq_bytes() <= sizeof s1 - 64, "panel scratch");
    int checked = 0, differ = 0;
    const mk_dtype dts[] = {MK_DT_Q4_K, MK_DT_Q6_K};
    for (int k = 0; k < 2; k++)
        for (int kind = 0; kind < 2; kind++) {
            const mk_dtype dt = dts[k];
            const size_t rb = mk_dtype_row_bytes(dt, IN), nsub = dt == MK_DT_Q4_K ? 8 : 16;
            if (kind == 0) {
                for (int i = 0; i < 16 * IN; i++) w[i] = nrand() * (i % 29 == 0 ? 1.0f : 0.05f);
                for (int r = 0; r < 16; r++) mk_quantize_row(dt, w + r * IN, q + r * rb, IN);
            } else {
                for (size_t i = 0; i < 16 * rb; i++) q[i] = (uint8_t)(nrand() * 1000.0f);
                /* finite d (and dmin): f16 exponent below 31, so that no NaN payload is compared */
                for (size_t i = 0; i < 16 * NB; i++) {
                    uint8_t *blk = q + i * (dt == MK_DT_Q4_K ? 144 : 210);
                    if (dt == MK_DT_Q4_K) blk[1] &= 0xBF, blk[3] &= 0xBF;
                    else blk[209] &= 0xBF;
                }
            }
            const size_t nrows[] = {16, 13, 9, 1};
            for (size_t ni = 0; ni < 4; ni++)
                for (size_t b0 = 0; b0 < 2; b0++)
                    for (size_t ks = 1; ks <= QP_KS && b0 + ks <= NB; ks++) {
                        memset(s1, 0xA5, sizeof s1);
                        memset(s2, 0x5A, sizeof s2);
                        const mk_kpanel k1 = mk_qpack_kq_layout(s1 + 5), k2 = mk_qpack_kq_layout(s2 + 7);
                        mk_qpack_kq(dt, q, rb, nrows[ni], b0, ks, &k1);
                        ref_kq_pack(dt, q, rb, nrows[ni], b0, ks, &k2);
                        const bool same = !memcmp(k1.W, k2.W, ks * 4096) && !memcmp(k1.SC, k2.SC, ks * nsub * 64) &&
                                          !memcmp(k1.MP, k2.MP, ks * nsub * 32) && !memcmp(k1.D, k2.D, ks * QP_ROWS * sizeof(float)) &&
                                          (dt != MK_DT_Q4_K || !memcmp(k1.DM, k2.DM, ks * QP_ROWS * sizeof(float)));
                        CHECK(same, "%s pack: %s, %zu rows, super-blocks %zu..%zu differ from the layout", mk_dtypes[dt].name,
                              kind ? "random bytes" : "quantized", nrows[ni], b0, b0 + ks);
                        differ += !same;
                        checked++;
                    }
        }
    printf("  Q4_K and Q6_K AVX2 packs: %d of %d panels differ from the layout written out\n", differ, checked);
    CHECK(checked == 2 * 2 * 4 * 8, "panels checked %d", checked);
#else
    printf("  not x86-64: nothing to check\n");
#endif
}

/* The AVX-512 Q6_K panel pack against the AVX2 one (mk_qpack_kq), byte for byte (its scales as
 * d·s_j in f32, the product of the AVX2 panel's d and s_j): full and
 * partial panels (16, 13, 1 rows), 1-4 super-blocks from the first and a later one, on quantized
 * normal weights and on random bytes (every bit pattern of ql, qh and the scales). */
static void test_qpack_q6k(void) {
#if defined(__x86_64__)
    if (!mk_kern_has_vnni()) { /* the VNNI GEMM is its only caller; AVX-512 BW comes with VNNI here */
        printf("  no AVX-512 VNNI on this CPU: nothing to check\n");
        return;
    }
    enum { IN = 1536, NB = IN / 256, RB = NB * 210 };
    static float w[16 * IN];
    static uint8_t q[16 * RB], s1[QP_KS * 8192], s2[QP_KS * 8192];
    const size_t pb = mk_qpack_kq_bytes();
    REQUIRE(pb <= sizeof s1 - 64, "panel scratch");
    int checked = 0, differ = 0;
    for (int kind = 0; kind < 2; kind++) {
        if (kind == 0) {
            for (int i = 0; i < 16 * IN; i++) w[i] = nrand() * (i % 29 == 0 ? 1.0f : 0.05f);
            for (int r = 0; r < 16; r++) mk_quantize_row(MK_DT_Q6_K, w + r * IN, q + r * RB, IN);
        } else
            for (size_t i = 0; i < sizeof q; i++) q[i] = (uint8_t)(nrand() * 1000.0f);
        const size_t nrows[] = {16, 13, 1};
        for (size_t ni = 0; ni < 3; ni++)
            for (size_t b0 = 0; b0 < 2; b0++)
                for (size_t ks = 1; ks <= QP_KS && b0 + ks <= NB; ks++) {
                    memset(s1, 0xA5, sizeof s1);
                    memset(s2, 0x5A, sizeof s2);
                    const mk_kpanel k1 = mk_qpack_kq_layout(s1 + 3), k2 = mk_qpack_kq_layout(s2 + 3);
                    mk_qpack_kq(MK_DT_Q6_K, q, RB, nrows[ni], b0, ks, &k1);
                    mk_qpack_q6k_avx512(q, RB, nrows[ni], b0, ks, &k2);
                    bool same = memcmp(k1.W, k2.W, ks * 4096) == 0 && memcmp(k1.MP, k2.MP, ks * 512) == 0 &&
                                memcmp(k1.D, k2.D, ks * QP_ROWS * sizeof(float)) == 0;
                    /* SC: the VNNI panel holds d·s_j as f32 where the AVX2 one holds the int16 pair (s_j, s_j) */
                    for (size_t b = 0; b < ks; b++)
                        for (int j = 0; j < 16; j++)
                            for (int i = 0; i < QP_ROWS; i++) {
                                const float want = k1.D[b * QP_ROWS + (size_t)i] * (float)k1.SC[b * 512 + (size_t)(32 * j + 2 * i)];
                                float got;
                                memcpy(&got, (const uint8_t *)k2.SC + 4 * (b * 256 + (size_t)(16 * j + i)), 4);
                                same = same && memcmp(&got, &want, 4) == 0;
                            }
                    CHECK(same, "Q6_K pack: %s, %zu rows, super-blocks %zu..%zu differ", kind ? "random bytes" : "quantized", nrows[ni], b0, b0 + ks);
                    differ += !same;
                    checked++;
                }
    }
    printf("  Q6_K AVX-512 pack: %d of %d panels differ from the AVX2 pack's\n", differ, checked);
#else
    printf("  not x86-64: nothing to check\n");
#endif
}

int main(void) {
    RUN(test_traits);
    RUN(test_gguf_py_fixture);
    RUN(test_known_answers);
    RUN(test_mxfp4_from_hf);
    RUN(test_error_bounds);
    RUN(test_vec_dot);
    RUN(test_simd_vec_dot);
    RUN(test_simd_quantize);
    RUN(test_matmul_hook);
    RUN(test_gemm_dequant_exact);
    RUN(test_qgemm);
    RUN(test_qpack_kq);
    RUN(test_qpack_q6k);
    return TEST_SUMMARY("test_quant");
}
