/* The register-blocked matmul variant, written once and included by kernels_avx2.c and
 * kernels_avx512.c with their vector macros (no include guard on purpose):
 *   V, KV (lanes), VZERO(), VLOAD(const float*), VSTORE(float*, V), VFMA(a, b, c) = a·b + c,
 *   VRED(V) → float (horizontal sum), VLOAD_BF16(const uint16_t*), VLOAD_F16(const uint16_t*),
 *   RM (rows per tile), RN (tokens per tile), FN_ROWS (the exported name).
 *
 * Tile: RM weight rows × RN tokens, RM·RN vector accumulators over the shared n_in axis (both
 * operands are contiguous along n_in, as in y = x·Wᵀ), one horizontal sum per output at the end.
 *  - n_tok ≤ 2 (decode): GEMV; each weight byte is read once, expanded to f32 in registers.
 *  - n_tok ≥ 3 (prefill): tokens in blocks of TB (the block's activations stay in L2); per RM-row
 *    block the weights are expanded to f32 once into wbuf and reused by every RN-token tile. */
#define AI static inline __attribute__((always_inline))
#define TB 64

AI V load_w(const void *w, size_t i, int dt) {
    if (dt == MK_DT_F32) return VLOAD((const float *)w + i);
    if (dt == MK_DT_BF16) return VLOAD_BF16((const uint16_t *)w + i);
    return VLOAD_F16((const uint16_t *)w + i);
}

AI float w_scalar(const void *w, size_t i, int dt) {
    if (dt == MK_DT_F32) return ((const float *)w)[i];
    if (dt == MK_DT_BF16) return mk_bf16_to_f32(((const uint16_t *)w)[i]);
    return mk_f16_to_f32(((const uint16_t *)w)[i]);
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
            tile((const uint8_t *)j->w + r * n * es, n, dt, j->x + t * j->ldx, 0, j->y + t * j->ldy + r, 0, n,
                 j->bias ? j->bias + r : NULL, RM, 1);
    for (; r < r1; r++)
        for (size_t t = 0; t < j->n_tok; t++)
            tile((const uint8_t *)j->w + r * n * es, n, dt, j->x + t * j->ldx, 0, j->y + t * j->ldy + r, 0, n,
                 j->bias ? j->bias + r : NULL, 1, 1);
}

/* Prefill: f32 rows wf (row stride n) against the tokens [t0, t1). */
static void gemm_block(const mk_kjob *j, const float *wf, size_t r, int rm, size_t t0, size_t t1) {
    const size_t n = j->n_in, ldx = j->ldx, ldy = j->ldy;
    const float *b = j->bias ? j->bias + r : NULL;
    size_t t = t0;
    if (rm == RM) {
        for (; t + RN <= t1; t += RN) tile(wf, n, MK_DT_F32, j->x + t * ldx, ldx, j->y + t * ldy + r, ldy, n, b, RM, RN);
        for (; t < t1; t++) tile(wf, n, MK_DT_F32, j->x + t * ldx, ldx, j->y + t * ldy + r, ldy, n, b, RM, 1);
    } else {
        for (int i = 0; i < rm; i++) {
            const float *bi = b ? b + i : NULL;
            size_t u = t0;
            for (; u + RN <= t1; u += RN) tile(wf + (size_t)i * n, n, MK_DT_F32, j->x + u * ldx, ldx, j->y + u * ldy + r + i, ldy, n, bi, 1, RN);
            for (; u < t1; u++) tile(wf + (size_t)i * n, n, MK_DT_F32, j->x + u * ldx, ldx, j->y + u * ldy + r + i, ldy, n, bi, 1, 1);
        }
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
            for (; k < n; k++) o[k] = mk_bf16_to_f32(wr[k]);
        } else {
            for (; k + KV <= n; k += KV) VSTORE(o + k, VLOAD_F16(wr + k));
            for (; k < n; k++) o[k] = mk_f16_to_f32(wr[k]);
        }
    }
}

void FN_ROWS(const mk_kjob *j, size_t r0, size_t r1, float *wbuf) {
    if (j->n_tok <= 2) {
        if (j->dt == MK_DT_F32) gemv_dt(j, r0, r1, MK_DT_F32);
        else if (j->dt == MK_DT_BF16) gemv_dt(j, r0, r1, MK_DT_BF16);
        else gemv_dt(j, r0, r1, MK_DT_F16);
        return;
    }
    const size_t n = j->n_in;
    for (size_t t0 = 0; t0 < j->n_tok; t0 += TB) {
        const size_t t1 = MK_MIN(j->n_tok, t0 + TB);
        for (size_t r = r0; r < r1; r += RM) {
            const int rm = (int)MK_MIN((size_t)RM, r1 - r);
            const float *wf;
            if (j->dt == MK_DT_F32) {
                wf = (const float *)j->w + r * n;
            } else {
                expand_rows(j, r, rm, wbuf);
                wf = wbuf;
            }
            gemm_block(j, wf, r, rm, t0, t1);
        }
    }
}

#undef AI
#undef TB
