/* Float-weight matmul: the portable variant, CPU detection, and the threaded driver. */
#include "kernels.h"

#include "moekit/kernels.h"
#include "quant.h"

#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- portable variant: one row expanded to f32, then a 16-accumulator dot per token ---- */
void mk_kern_rows_scalar(const mk_kjob *j, size_t r0, size_t r1, float *wbuf) {
    const size_t n = j->n_in, es = mk_dtypes[j->dt].elem_bytes;
    for (size_t r = r0; r < r1; r++) {
        const float *wf;
        if (j->dt == MK_DT_F32) {
            wf = (const float *)j->w + r * j->ldw;
        } else {
            mk_to_f32(wbuf, (const uint8_t *)j->w + r * n * es, j->dt, n);
            wf = wbuf;
        }
        for (size_t t = 0; t < j->n_tok; t++) {
            float s = mk_dot_f32(j->x + t * j->ldx, wf, n);
            j->y[t * j->ldy + r] = j->bias ? s + j->bias[r] : s;
        }
    }
}

/* Element by element, no scratch: the out-of-memory path. */
static void rows_noscratch(const mk_kjob *j, size_t r0, size_t r1) {
    const size_t n = j->n_in;
    const uint16_t *w = j->w;
    for (size_t r = r0; r < r1; r++)
        for (size_t t = 0; t < j->n_tok; t++) {
            const float *x = j->x + t * j->ldx;
            float s = 0;
            for (size_t i = 0; i < n; i++)
                s += x[i] * (j->dt == MK_DT_BF16 ? mk_bf16_to_f32(mk_kern_ld16(w, r * n + i)) : mk_f16_to_f32(mk_kern_ld16(w, r * n + i)));
            j->y[t * j->ldy + r] = j->bias ? s + j->bias[r] : s;
        }
}

/* ---- detection ---- */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static mk_isa g_best = MK_ISA_SCALAR, g_isa = MK_ISA_SCALAR;
static bool g_has_bf16 = false, g_has_vnni = false, g_bf16_dot = false, g_qgemm_int = true;
static mk_qact_mode g_qact = MK_QACT_AUTO;

static void detect(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) g_best = MK_ISA_AVX2;
    /* F16C has no __builtin_cpu_supports name in every compiler; every AVX2 CPU has it. */
    if (g_best == MK_ISA_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        g_best = MK_ISA_AVX512;
    g_has_bf16 = g_best == MK_ISA_AVX512 && __builtin_cpu_supports("avx512bf16");
    g_has_vnni = g_best == MK_ISA_AVX512 && __builtin_cpu_supports("avx512vnni");
#endif
    g_isa = g_best;
    const char *e = getenv("MOEKIT_ISA");
    if (e && *e) {
        for (int i = 0; i < MK_ISA_COUNT; i++)
            if (!strcmp(e, mk_kern_isa_name((mk_isa)i)) && (mk_isa)i < g_isa) g_isa = (mk_isa)i;
    }
    const char *x = getenv("MOEKIT_BF16_DOT");
    g_bf16_dot = g_has_bf16 && x && *x && strcmp(x, "0");
    const char *qa = getenv("MOEKIT_QACT"); /* 1: quantized activations for every batch size (llama.cpp's arithmetic) */
    if (qa && *qa) g_qact = strcmp(qa, "0") ? MK_QACT_ALWAYS : MK_QACT_NEVER; /* 0: exact products (mk_kern_set_qact) */
    const char *qg = getenv("MOEKIT_QGEMM"); /* 0: prefill with quantized weights dequantizes them into the f32 GEMM */
    g_qgemm_int = !(qg && !strcmp(qg, "0"));
}

mk_isa mk_kern_isa_detect(void) {
    pthread_once(&g_once, detect);
    return g_best;
}

bool mk_kern_has_bf16_dot(void) {
    pthread_once(&g_once, detect);
    return g_has_bf16;
}

bool mk_kern_has_vnni(void) {
    pthread_once(&g_once, detect);
    return g_has_vnni;
}

mk_isa mk_kern_isa(void) {
    pthread_once(&g_once, detect);
    return g_isa;
}

mk_isa mk_kern_set_isa(mk_isa isa) {
    pthread_once(&g_once, detect);
    g_isa = isa > g_best ? g_best : isa;
    return g_isa;
}

bool mk_kern_set_bf16_dot(bool on) {
    pthread_once(&g_once, detect);
    g_bf16_dot = on && g_has_bf16;
    return g_bf16_dot;
}

mk_qact_mode mk_kern_set_qact(mk_qact_mode mode) {
    pthread_once(&g_once, detect);
    const mk_qact_mode old = g_qact;
    g_qact = mode;
    return old;
}

bool mk_kern_set_qgemm(bool on) {
    pthread_once(&g_once, detect);
    g_qgemm_int = on;
    return g_qgemm_int;
}

bool mk_kern_bf16_dot(void) {
    pthread_once(&g_once, detect);
    return g_bf16_dot;
}

const char *mk_kern_isa_name(mk_isa isa) {
    static const char *names[MK_ISA_COUNT] = {"scalar", "avx2", "avx512"};
    return isa < MK_ISA_COUNT ? names[isa] : "?";
}

/* ---- per-thread scratch (grows, kept for the thread's life) ---- */
static _Thread_local void *tl_wbuf, *tl_xb, *tl_xq, *tl_qg;
static _Thread_local size_t tl_wcap, tl_xcap, tl_xqcap, tl_qgcap;

static void *scratch(void **p, size_t *cap, size_t need) {
    if (need <= *cap) return *p;
    mk_free_aligned(*p);
    *p = mk_malloc_aligned(need);
    *cap = *p ? need : 0;
    return *p;
}

/* Rows per thread are a multiple of this (the variants' row tile). */
#define ROW_GRAIN 8

/* ---- block-quantized weights (Q8_0, Q4_0, Q4_K, Q6_K, MXFP4) ----
 * As llama.cpp: the activations are quantized once per call to the weight type's vec_dot type
 * (Q8_0 or Q8_K) and every output is an integer block dot product (quant.h). */
typedef bool (*qgemm_fn)(mk_dtype wt, size_t n_in, const void *w, size_t wrb, size_t nr, const void *xq, size_t arb, size_t nt, float *y,
                         size_t ldy, const float *bias, void *scratch);
typedef struct qsel {
    mk_qdot_fn dot;
    mk_qdot4_fn dot4;     /* four rows per call (decode), or NULL */
    mk_qquant_fn quant;   /* SIMD quantizer of the activation type, or NULL: the reference */
    mk_dtype at;          /* activation type */
    size_t arb, wrb;      /* bytes of one activation row (sums included), of one weight row */
    bool gemm;            /* batches of QGEMM_INT_MIN tokens or more use gemm_fn */
    bool sums;            /* activation rows carry their Q8_0 block sums (the VNNI GEMM's) */
    bool uact;            /* activation rows carry their values + 128 (the AVX2 Q6_K GEMM's) */
    qgemm_fn gemm_fn;     /* mk_qgemm_avx512vnni or mk_qgemm_avx2 */
    size_t (*gemm_scratch)(mk_dtype wt, size_t n_in);
    mk_dtype wt;
} qsel;

/* Weight types with an integer prefill GEMM (mk_qgemm_avx2, or mk_qgemm_avx512vnni on CPUs with
 * AVX-512 VNNI: 2-4x the AVX2 GEMM there, bench/results-speed.md): batches of QGEMM_INT_MIN tokens or
 * more with quantized activations use it. It is the default for prefill wherever it beats the
 * dequantizing f32 GEMM, which on AVX2 is every type it has: Q4_K and Q6_K (4- and 6-bit weights
 * straight into vpmaddubsw, sums in int16 over a sub-block) and Q8_0 (the sign trick with the
 * weights' absolute values packed beside them; pp512 on the OLMoE-shaped bench 272 -> ~330 t/s,
 * bench/results-speed.md), and MXFP4 through the Q8_0 GEMM (its codes unpacked into the same panels
 * as signed bytes: 60 against 30 GMAC/s dequantized, bench/bench_qgemm.sh on the AVX2 EPYC; the VNNI
 * GEMM does not take it, so it runs the AVX2 one on AVX-512 CPUs too). */
static bool qgemm_type(mk_dtype dt) { return dt == MK_DT_Q8_0 || dt == MK_DT_Q4_K || dt == MK_DT_Q6_K || dt == MK_DT_MXFP4; }
#define QGEMM_INT_MIN 4

static bool qselect(mk_dtype dt, size_t n_in, qsel *q) {
    q->dot = mk_qdot_ref(dt);
    if (!q->dot) return false;
    q->at = mk_vec_dot_type(dt);
    q->quant = NULL;
    q->dot4 = NULL;
    q->wt = dt;
    q->gemm = g_isa >= MK_ISA_AVX2 && g_qgemm_int && qgemm_type(dt);
    const bool vnni = g_isa == MK_ISA_AVX512 && g_has_vnni && dt != MK_DT_MXFP4; /* MXFP4: the AVX2 GEMM everywhere */
    q->gemm_fn = vnni ? mk_qgemm_avx512vnni : mk_qgemm_avx2;
    q->gemm_scratch = vnni ? mk_qgemm_scratch_avx512vnni : mk_qgemm_scratch_avx2;
    q->sums = q->gemm && vnni && dt == MK_DT_Q8_0;
    q->uact = q->gemm && !vnni && dt == MK_DT_Q6_K;
    q->dot4 = !vnni ? NULL
              : dt == MK_DT_Q8_0 ? mk_qdot4_q8_0_avx512vnni
              : dt == MK_DT_Q4_K ? mk_qdot4_q4_K_avx512vnni
              : dt == MK_DT_Q6_K ? mk_qdot4_q6_K_avx512vnni
                                 : NULL;
    if (g_isa >= MK_ISA_AVX2) {
        mk_qdot_fn f = mk_qdot_avx2(dt);
        if (f) q->dot = f;
        q->quant = mk_qquant_avx2(q->at);
    }
    q->arb = mk_dtype_row_bytes(q->at, n_in) + (q->sums ? 4 * (n_in / MK_QK8_0) : 0) + (q->uact ? n_in : 0);
    q->wrb = mk_dtype_row_bytes(dt, n_in);
    return true;
}

static void qquant_rows(const qsel *q, const float *x, size_t ldx, size_t t0, size_t t1, size_t n_in, uint8_t *xq) {
    for (size_t t = t0; t < t1; t++) {
        if (q->quant) q->quant(x + t * ldx, xq + t * q->arb, n_in);
        else mk_quantize_row(q->at, x + t * ldx, xq + t * q->arb, n_in);
        if (q->sums) mk_q8_0_row_sums(xq + t * q->arb, n_in, xq + t * q->arb + 34 * (n_in / MK_QK8_0));
        if (q->uact) mk_q8_K_row_unsigned(xq + t * q->arb, n_in, xq + t * q->arb + 292 * (n_in / MK_QK_K));
    }
}

size_t mk_kern_qact_bytes(mk_dtype wt, size_t n_in) {
    pthread_once(&g_once, detect);
    qsel q;
    return qselect(wt, n_in, &q) ? q.arb : 0;
}

size_t mk_kern_qact_bytes_max(size_t n_in) {
    const mk_dtype types[] = {MK_DT_Q8_0, MK_DT_Q4_0, MK_DT_Q4_K, MK_DT_Q6_K, MK_DT_MXFP4};
    size_t m = 0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) m = MK_MAX(m, mk_kern_qact_bytes(types[i], n_in));
    return m;
}

void mk_kern_quantize_act(mk_dtype wt, const float *x, void *xq, size_t n_in) {
    pthread_once(&g_once, detect);
    qsel q;
    if (qselect(wt, n_in, &q)) qquant_rows(&q, x, 0, 0, 1, n_in, xq);
}

/* Tokens per block in the quantized GEMM: a block's activation rows (about 2 KB each for
 * d_model 2048) stay in L1/L2 while a chunk of weight rows passes under them. */
#define QTB 16

/* Rows [r0, r1) of y for every token; xq holds the n_tok quantized activation rows. */
static void qrows(const qsel *q, float *y, size_t ldy, const uint8_t *xq, size_t n_tok, const uint8_t *w, size_t n_in,
                  const float *bias, size_t r0, size_t r1) {
    void *qg = q->gemm && n_tok >= QGEMM_INT_MIN && r1 > r0 ? scratch(&tl_qg, &tl_qgcap, q->gemm_scratch(q->wt, n_in)) : NULL;
    if (qg && q->gemm_fn(q->wt, n_in, w + r0 * q->wrb, q->wrb, r1 - r0, xq, q->arb, n_tok, y + r0, ldy, bias ? bias + r0 : NULL, qg)) return;
    for (size_t t0 = 0; t0 < n_tok; t0 += QTB) {
        const size_t t1 = MK_MIN(n_tok, t0 + QTB);
        size_t r = r0;
        if (q->dot4)
            for (; r + 4 <= r1; r += 4)
                for (size_t t = t0; t < t1; t++) {
                    float v[4];
                    q->dot4(n_in, w + r * q->wrb, q->wrb, xq + t * q->arb, v);
                    for (size_t i = 0; i < 4; i++) y[t * ldy + r + i] = bias ? v[i] + bias[r + i] : v[i];
                }
        for (; r < r1; r++) {
            const uint8_t *wr = w + r * q->wrb;
            for (size_t t = t0; t < t1; t++) {
                const float v = q->dot(n_in, wr, xq + t * q->arb);
                y[t * ldy + r] = bias ? v + bias[r] : v;
            }
        }
    }
}

/* Rows per chunk handed out dynamically: about per_thread chunks per thread, a multiple of grain
 * (ROW_GRAIN; QGEMM_GRAIN where the integer GEMM packs 16 rows into the lanes, so that a chunk on
 * a many-core machine does not leave half of a panel empty). */
static size_t chunk_rows(size_t n_out, int nth, int per_thread, size_t grain);
#define QGEMM_GRAIN 16

/* Decode-sized products (every weight row read once, by dot products) hand their rows out in
 * guided chunks of DEC_GRAIN rows: the first ones large (one long stream per thread, which the
 * prefetchers follow), the last ones small, so the team reaches the end of the matrix, and the
 * barrier after it, together. With chunks of a fixed size a thread idled for half a chunk on
 * average at every barrier: a Q8_0 decode GEMV over 2048 × 2048 matrices on 2 threads streamed
 * at 0.85 of a plain read's bandwidth, 0.90 guided (Zen 3, medians of alternating rounds). */
#define DEC_GRAIN 16

/* Rows [0, n_out) of a quantized product by the calling team (orphaned omp for, no barrier at
 * the end) or one thread: guided chunks for decode, about per_thread fixed chunks per thread
 * for the integer GEMM. */
static void qrows_team(const qsel *q, float *y, size_t ldy, const uint8_t *xq, size_t n_tok, const uint8_t *w,
                       size_t n_in, const float *bias, size_t n_out, int per_thread) {
    if (!(q->gemm && n_tok >= QGEMM_INT_MIN)) {
        const size_t n_chunks = (n_out + DEC_GRAIN - 1) / DEC_GRAIN;
        #pragma omp for schedule(guided, 1) nowait
        for (size_t c = 0; c < n_chunks; c++) qrows(q, y, ldy, xq, n_tok, w, n_in, bias, c * DEC_GRAIN, MK_MIN(n_out, c * DEC_GRAIN + DEC_GRAIN));
        return;
    }
    const size_t chunk = chunk_rows(n_out, omp_get_num_threads(), per_thread, QGEMM_GRAIN), n_chunks = (n_out + chunk - 1) / chunk;
    #pragma omp for schedule(dynamic, 1) nowait
    for (size_t c = 0; c < n_chunks; c++) qrows(q, y, ldy, xq, n_tok, w, n_in, bias, c * chunk, MK_MIN(n_out, c * chunk + chunk));
}

/* Batches of at least this many tokens multiply block-quantized weights dequantized exactly into
 * the packed f32 GEMM (the activations stay f32) where the CPU has it; smaller ones (decode)
 * quantize the activations and use the integer dot products, which read each weight byte once. */
#define QGEMM_MIN_TOK 8

bool mk_kern_q_act(mk_dtype wt, size_t n_tok) {
    pthread_once(&g_once, detect);
    if (!mk_qdot_ref(wt)) return false;
    if (g_qact == MK_QACT_NEVER && g_isa >= MK_ISA_AVX2) return false; /* the dequantizing f32 GEMM takes any batch */
    if (g_qact == MK_QACT_ALWAYS || g_isa < MK_ISA_AVX2 || n_tok < QGEMM_MIN_TOK) return true;
    return g_qgemm_int && qgemm_type(wt); /* the integer GEMM; else the dequantizing f32 GEMM */
}

/* The packed GEMM over rows [0, n_out) by the calling team (orphaned omp for) or one thread. */
static void qgemm_rows(const mk_kjob *j, size_t n_out, size_t chunk) {
    float *wbuf = scratch(&tl_wbuf, &tl_wcap, mk_kern_block_rows(j->n_in, sizeof(float)) * j->n_in * sizeof(float));
    const size_t n_chunks = (n_out + chunk - 1) / chunk;
    #pragma omp for schedule(dynamic, 1) nowait
    for (size_t c = 0; c < n_chunks; c++) {
        const size_t r0 = c * chunk, r1 = MK_MIN(n_out, r0 + chunk);
        if (wbuf) (g_isa == MK_ISA_AVX512 ? mk_kern_gemm_avx512 : mk_kern_gemm_avx2)(j, r0, r1, wbuf);
        else for (size_t r = r0; r < r1; r++) /* out of memory for scratch: one row at a time */
            for (size_t t = 0; t < j->n_tok; t++) {
                float wr[256], s = 0;
                const size_t rb = mk_dtype_row_bytes(j->dt, j->n_in);
                for (size_t k = 0; k < j->n_in; k += 256) {
                    const size_t m = MK_MIN((size_t)256, j->n_in - k);
                    mk_dequantize_row(j->dt, (const uint8_t *)j->w + r * rb + mk_dtype_row_bytes(j->dt, k), wr, m);
                    for (size_t i = 0; i < m; i++) s += wr[i] * j->x[t * j->ldx + k + i];
                }
                j->y[t * j->ldy + r] = j->bias ? s + j->bias[r] : s;
            }
    }
}

static bool qmatmul(float *y, size_t ldy, const float *x, size_t ldx, size_t n_tok, const void *w, mk_dtype dt,
                    size_t n_out, size_t n_in, const float *bias) {
    qsel q;
    if (!qselect(dt, n_in, &q)) return false;
    if (!mk_kern_q_act(dt, n_tok)) {
        const mk_kjob j = {.y = y, .ldy = ldy, .x = x, .ldx = ldx, .n_tok = n_tok, .w = w, .ldw = n_in, .dt = dt, .n_in = n_in, .bias = bias};
        const int nth = omp_in_parallel() ? 1 : omp_get_max_threads();
        const size_t chunk = chunk_rows(n_out, nth, 8, ROW_GRAIN);
        #pragma omp parallel num_threads(nth) if (nth > 1)
        qgemm_rows(&j, n_out, chunk);
        return true;
    }
    size_t bytes;
    if (!mk_mul_ok(n_tok, q.arb, &bytes)) return false;
    uint8_t *xq = scratch(&tl_xq, &tl_xqcap, bytes);
    if (!xq) return false;
    q.uact = q.uact && n_tok >= QGEMM_INT_MIN; /* (rows keep their stride; only the GEMM reads the copy) */
    const double work = (double)n_out * (double)n_in * (double)n_tok;
    int nth = omp_in_parallel() || work < 262144.0 ? 1 : omp_get_max_threads();
    #pragma omp parallel num_threads(nth) if (nth > 1)
    {
        #pragma omp for schedule(static)
        for (size_t t = 0; t < n_tok; t++) qquant_rows(&q, x, ldx, t, t + 1, n_in, xq);
        qrows_team(&q, y, ldy, xq, n_tok, w, n_in, bias, n_out, 8);
    }
    return true;
}

void mk_matmul_team_q(float *y, size_t ldy, const void *xq, size_t n_tok, const void *w, mk_dtype dt, size_t n_out,
                      size_t n_in, const float *bias) {
    if (n_out == 0 || n_tok == 0) return;
    pthread_once(&g_once, detect);
    qsel q;
    if (!qselect(dt, n_in, &q)) return;
    qrows_team(&q, y, ldy, xq, n_tok, w, n_in, bias, n_out, 4);
}

static size_t chunk_rows(size_t n_out, int nth, int per_thread, size_t grain) {
    size_t chunk = (n_out + (size_t)nth * (size_t)per_thread - 1) / ((size_t)nth * (size_t)per_thread);
    return MK_MIN((size_t)256, MK_MAX(grain, (chunk + grain - 1) / grain * grain));
}

bool mk_kern_matmul(float *y, size_t ldy, const float *x, size_t ldx, size_t n_tok, const void *w, mk_dtype dt,
                    size_t n_out, size_t n_in, const float *bias) {
    if (n_out == 0 || n_tok == 0) return true;
    pthread_once(&g_once, detect);
    if (dt != MK_DT_F32 && dt != MK_DT_BF16 && dt != MK_DT_F16) return qmatmul(y, ldy, x, ldx, n_tok, w, dt, n_out, n_in, bias);
    static const mk_kern_fn fns[MK_ISA_COUNT] = {mk_kern_rows_scalar, mk_kern_rows_avx2, mk_kern_rows_avx512};
    mk_kern_fn fn = fns[g_isa];
    mk_kjob j = {.y = y, .ldy = ldy, .x = x, .ldx = ldx, .n_tok = n_tok, .w = w, .ldw = n_in, .dt = dt, .n_in = n_in, .bias = bias};
    if (dt == MK_DT_BF16 && n_tok >= 3 && g_bf16_dot && g_isa == MK_ISA_AVX512) {
        uint16_t *xb = scratch(&tl_xb, &tl_xcap, n_tok * n_in * sizeof(uint16_t));
        if (xb) {
            j.xb = xb;
            fn = mk_kern_rows_avx512bf16;
        }
    }
    /* one thread for a small product, unless it streams enough weight bytes that a second core's
     * bandwidth outweighs the fork (an F32 router at decode: 64 × 2048 is 512 KB) */
    const double work = (double)n_out * (double)n_in * (double)n_tok, wbytes = (double)n_out * (double)mk_dtype_row_bytes(dt, n_in);
    int nth = omp_in_parallel() || (work < 262144.0 && wbytes < 131072.0) ? 1 : omp_get_max_threads();
    const size_t max_units = (n_out + ROW_GRAIN - 1) / ROW_GRAIN;
    if ((size_t)nth > max_units) nth = (int)max_units;
    /* about 8 chunks per thread, each a multiple of ROW_GRAIN rows, at most 256 rows */
    size_t chunk = (n_out + (size_t)nth * 8 - 1) / ((size_t)nth * 8);
    chunk = MK_MIN((size_t)256, MK_MAX((size_t)ROW_GRAIN, (chunk + ROW_GRAIN - 1) / ROW_GRAIN * ROW_GRAIN));
    const size_t n_chunks = (n_out + chunk - 1) / chunk;
    bool ok = true;
    #pragma omp parallel num_threads(nth) if (nth > 1)
    {
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        if (j.xb) {
            for (size_t t = (size_t)tid; t < n_tok; t += (size_t)nt)
                mk_kern_to_bf16_avx512bf16((uint16_t *)j.xb + t * n_in, x + t * ldx, n_in);
            #pragma omp barrier
        }
        /* Rows in ROW_GRAIN-aligned chunks handed out dynamically: a thread that the OS
         * deschedules (shared machines) or that runs slower does not hold the others up. */
        float *wbuf = scratch(&tl_wbuf, &tl_wcap, mk_kern_block_rows(n_in, sizeof(float)) * n_in * sizeof(float));
        if (!wbuf) {
            #pragma omp atomic write
            ok = false;
        }
        if (n_tok <= 2) { /* the GEMV: guided, as qrows_team */
            const size_t n_dec = (n_out + DEC_GRAIN - 1) / DEC_GRAIN;
            int xd_ready = 0;
            mk_kjob jt = j; /* (the flag is this thread's) */
            jt.xd_ready = &xd_ready;
            #pragma omp for schedule(guided, 1)
            for (size_t c = 0; c < n_dec; c++)
                if (wbuf) fn(&jt, c * DEC_GRAIN, MK_MIN(n_out, c * DEC_GRAIN + DEC_GRAIN), wbuf);
        } else {
            #pragma omp for schedule(dynamic, 1)
            for (size_t c = 0; c < n_chunks; c++) {
                const size_t r0 = c * chunk, r1 = MK_MIN(n_out, r0 + chunk);
                if (wbuf) fn(&j, r0, r1, wbuf);
            }
        }
    }
    if (!ok) return false; /* out of memory for scratch: the caller's fallback needs none */
    return true;
}

void mk_matmul_team(float *y, size_t ldy, const float *x, size_t ldx, size_t n_tok, const void *w, mk_dtype dt,
                    size_t n_out, size_t n_in, const float *bias) {
    if (n_out == 0 || n_tok == 0) return;
    pthread_once(&g_once, detect);
    if (dt != MK_DT_F32 && dt != MK_DT_BF16 && dt != MK_DT_F16 && mk_qdot_ref(dt) && !mk_kern_q_act(dt, n_tok)) {
        const mk_kjob j = {.y = y, .ldy = ldy, .x = x, .ldx = ldx, .n_tok = n_tok, .w = w, .ldw = n_in, .dt = dt, .n_in = n_in, .bias = bias};
        qgemm_rows(&j, n_out, chunk_rows(n_out, omp_get_num_threads(), 4, ROW_GRAIN));
        return;
    }
    if (dt != MK_DT_F32 && dt != MK_DT_BF16 && dt != MK_DT_F16) {
        qsel q;
        size_t bytes;
        uint8_t *xq = qselect(dt, n_in, &q) && mk_mul_ok(n_tok, q.arb, &bytes) ? scratch(&tl_xq, &tl_xqcap, bytes) : NULL;
        if (!xq) { /* not a block type, or no memory for the activations: the allocation-free path */
            #pragma omp single nowait
            mk_matmul_rows(y, ldy, x, ldx, n_tok, w, dt, n_out, n_in, bias);
            return;
        }
        /* each thread quantizes the (small) activation block privately: no barrier needed */
        q.uact = q.uact && n_tok >= QGEMM_INT_MIN; /* (rows keep their stride; only the GEMM reads the copy) */
        qquant_rows(&q, x, ldx, 0, n_tok, n_in, xq);
        qrows_team(&q, y, ldy, xq, n_tok, w, n_in, bias, n_out, 4);
        return;
    }
    static const mk_kern_fn fns[MK_ISA_COUNT] = {mk_kern_rows_scalar, mk_kern_rows_avx2, mk_kern_rows_avx512};
    mk_kern_fn fn = fns[g_isa];
    int xd_ready = 0;
    mk_kjob j = {.y = y, .ldy = ldy, .x = x, .ldx = ldx, .n_tok = n_tok, .w = w, .ldw = n_in, .dt = dt, .n_in = n_in, .bias = bias,
                 .xd_ready = &xd_ready};
    const bool bdot = dt == MK_DT_BF16 && n_tok >= 3 && g_bf16_dot && g_isa == MK_ISA_AVX512;
    const int nt = omp_get_num_threads();
    size_t chunk = (n_out + (size_t)nt * 4 - 1) / ((size_t)nt * 4);
    chunk = MK_MIN((size_t)256, MK_MAX((size_t)ROW_GRAIN, (chunk + ROW_GRAIN - 1) / ROW_GRAIN * ROW_GRAIN));
    const size_t n_chunks = (n_out + chunk - 1) / chunk;
    float *wbuf = scratch(&tl_wbuf, &tl_wcap, mk_kern_block_rows(n_in, sizeof(float)) * n_in * sizeof(float));
    if (n_tok <= 2) { /* the GEMV: guided, as qrows_team */
        const size_t n_dec = (n_out + DEC_GRAIN - 1) / DEC_GRAIN;
        #pragma omp for schedule(guided, 1) nowait
        for (size_t c = 0; c < n_dec; c++) {
            const size_t r0 = c * DEC_GRAIN, r1 = MK_MIN(n_out, r0 + DEC_GRAIN);
            if (wbuf || dt == MK_DT_F32) fn(&j, r0, r1, wbuf);
            else rows_noscratch(&j, r0, r1); /* out of memory for scratch */
        }
        return;
    }
    bool converted = false;
    #pragma omp for schedule(dynamic, 1) nowait
    for (size_t c = 0; c < n_chunks; c++) {
        const size_t r0 = c * chunk, r1 = MK_MIN(n_out, r0 + chunk);
        mk_kern_fn f = fn;
        if (bdot && !converted) { /* each thread rounds the (small) activation block once, privately */
            uint16_t *xb = scratch(&tl_xb, &tl_xcap, n_tok * n_in * sizeof(uint16_t));
            if (xb)
                for (size_t t = 0; t < n_tok; t++) mk_kern_to_bf16_avx512bf16(xb + t * n_in, x + t * ldx, n_in);
            j.xb = xb;
            converted = true;
        }
        if (j.xb) f = mk_kern_rows_avx512bf16;
        if (wbuf || f == mk_kern_rows_avx512bf16 || dt == MK_DT_F32) f(&j, r0, r1, wbuf);
        else rows_noscratch(&j, r0, r1); /* out of memory for scratch */
    }
}

void mk_matmul_team_f32_strided(float *y, size_t ldy, const float *x, size_t ldx, size_t n_tok, const float *w,
                                size_t ldw, size_t n_out, size_t n_in) {
    if (n_out == 0 || n_tok == 0) return;
    pthread_once(&g_once, detect);
    static const mk_kern_fn fns[MK_ISA_COUNT] = {mk_kern_rows_scalar, mk_kern_rows_avx2, mk_kern_rows_avx512};
    const mk_kern_fn fn = fns[g_isa];
    const mk_kjob j = {.y = y, .ldy = ldy, .x = x, .ldx = ldx, .n_tok = n_tok, .w = w, .ldw = ldw, .dt = MK_DT_F32, .n_in = n_in};
    const int nt = omp_get_num_threads();
    size_t chunk = (n_out + (size_t)nt * 4 - 1) / ((size_t)nt * 4);
    chunk = MK_MIN((size_t)256, MK_MAX((size_t)ROW_GRAIN, (chunk + ROW_GRAIN - 1) / ROW_GRAIN * ROW_GRAIN));
    const size_t n_chunks = (n_out + chunk - 1) / chunk;
    float *wbuf = scratch(&tl_wbuf, &tl_wcap, mk_kern_block_rows(n_in, sizeof(float)) * n_in * sizeof(float));
    #pragma omp for schedule(dynamic, 1) nowait
    for (size_t c = 0; c < n_chunks; c++) {
        const size_t r0 = c * chunk, r1 = MK_MIN(n_out, r0 + chunk);
        if (wbuf) fn(&j, r0, r1, wbuf);
        else mk_kern_rows_scalar(&j, r0, r1, NULL); /* F32: the portable variant needs no scratch */
    }
}

/* ---- public switches (include/moekit/kernels.h) ---- */
const char *mk_kernels_describe(void) {
    static char buf[96];
    pthread_once(&g_once, detect);
    snprintf(buf, sizeof buf, "%s%s", mk_kern_isa_name(g_isa), g_bf16_dot ? "+bf16dot" : "");
    return buf;
}

bool mk_kernels_set_bf16_dot(bool on) { return mk_kern_set_bf16_dot(on); }
