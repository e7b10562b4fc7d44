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
