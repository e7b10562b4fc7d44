/* Perplexity over sliding windows and KL divergence against a base model (contract in
 * include/moekit/eval.h). Each window is one batched prefill (in chunks of opts.batch tokens)
 * with logits for the positions that predict a scored target only. */
#include "eval/eval_internal.h"

#include "base/base.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* logsumexp of a row in double, and its argmax (lowest id on ties). */
static double row_lse(const float *x, size_t V, int32_t *argmax) {
    size_t b = 0;
    for (size_t i = 1; i < V; i++) if (x[i] > x[b]) b = i;
    double mx = x[b], s = 0;
    for (size_t i = 0; i < V; i++) s += exp((double)x[i] - mx);
    *argmax = (int32_t)b;
    return mx + log(s);
}

/* KL(P || Q) of two full rows with their logsumexps. */
static double kl_full(const float *p, double lp, const float *q, double lq, size_t V) {
    double kl = 0;
    for (size_t i = 0; i < V; i++) {
        double a = (double)p[i] - lp, b = (double)q[i] - lq;
        kl += exp(a) * (a - b);
    }
    return kl;
}

/* KL between the coarsened distributions (stored top-k tokens + one bucket for the rest): by the
 * log-sum inequality a lower bound of the true KL(P || Q), equal to it when the tail is empty.
 * mark: (V) scratch of zeros, left zeroed. *tail: P's mass outside the top-k. */
static double kl_topk(const mk_logits_rec *r, uint32_t k, const float *q, double lq, size_t V, uint8_t *mark,
                      double *tail) {
    double kl = 0, psum = 0, qtail = 0;
    for (uint32_t i = 0; i < k; i++) {
        int32_t id = mk_logits_rec_id(r, i);
        double a = (double)mk_logits_rec_logit(r, i) - r->lse, b = (double)q[id] - lq;
        kl += exp(a) * (a - b);
        psum += exp(a);
        mark[id] = 1;
    }
    for (size_t i = 0; i < V; i++) {
        if (mark[i]) mark[i] = 0;
        else qtail += exp((double)q[i] - lq);
    }
    double ptail = 1 - psum;
    if (ptail < 0) ptail = 0;
    *tail = ptail;
    if (ptail > 0) kl += ptail * (log(ptail) - log(qtail > 1e-300 ? qtail : 1e-300));
    return kl;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* numpy's default percentile: linear interpolation between sorted values. */
static double percentile(const float *sorted, size_t n, double q) {
    double pos = q * (double)(n - 1);
    size_t i = (size_t)pos;
    if (i + 1 >= n) return sorted[n - 1];
    double f = pos - (double)i;
    return (double)sorted[i] * (1 - f) + (double)sorted[i + 1] * f;
}

size_t mk_eval_count_scored(size_t n, size_t ctx, size_t stride) {
    if (!stride) stride = ctx;
    if (n < 2 || ctx < 2 || stride > ctx) return 0;
    /* stride < ctx: windows overlap, every token but the first is scored; stride == ctx: windows
     * start at 0, ctx, 2·ctx, ... and each one's first token is not scored */
    return stride < ctx ? n - 1 : n - (n / ctx + (n % ctx != 0));
}

void mk_eval_result_clear(mk_eval_result *res) {
    if (!res) return;
    free(res->kld);
    memset(res, 0, sizeof *res);
}

mk_status mk_eval_ppl(const mk_model *m, mk_ctx *c, const int32_t *ids, size_t n, const mk_eval_opts *o,
                      mk_eval_result *res) {
    memset(res, 0, sizeof *res);
    const size_t ctx = o->ctx, stride = o->stride ? o->stride : o->ctx;
    const size_t V = (size_t)mk_model_get_info(m)->vocab;
    if (n < 2) return mk_err(MK_ERR_ARG, "perplexity needs at least 2 tokens, got %zu", n);
    if (ctx < 2) return mk_err(MK_ERR_ARG, "context %zu: a window needs at least 2 tokens", ctx);
    if (stride > ctx) return mk_err(MK_ERR_ARG, "stride %zu is larger than the context %zu (tokens would be skipped)", stride, ctx);
    if (o->base && o->ref_logits) return mk_err(MK_ERR_ARG, "give a base model or stored logits, not both");
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (size_t)ids[i] >= V)
            return mk_err(MK_ERR_ARG, "token id %d at index %zu is out of range (vocab %zu)", ids[i], i, V);
    if (o->base) {
        const mk_model_info *bi = mk_model_get_info(o->base_model);
        if ((size_t)bi->vocab != V)
            return mk_err(MK_ERR_ARG, "base model has a vocabulary of %lld tokens, the model %zu: KL divergence needs the same vocabulary",
                          (long long)bi->vocab, V);
    }
    const uint64_t thash = mk_fnv1a(MK_FNV_INIT, ids, n * sizeof *ids);
    uint32_t ref_k = 0;
    if (o->ref_logits) {
        const mk_logits_header *h = mk_logits_get_header(o->ref_logits);
        if (h->vocab != V)
            return mk_err(MK_ERR_ARG, "stored logits are of a vocabulary of %llu tokens, the model has %zu: KL divergence needs the same vocabulary",
                          (unsigned long long)h->vocab, V);
        if (h->ctx != ctx || h->stride != stride)
            return mk_err(MK_ERR_ARG, "stored logits were made with --ctx %llu --stride %llu, this run uses %zu / %zu",
                          (unsigned long long)h->ctx, (unsigned long long)h->stride, ctx, stride);
        if (h->n_tokens != n || h->tokens_hash != thash)
            return mk_err(MK_ERR_ARG, "stored logits were made on another text (%llu tokens, this one has %zu)",
                          (unsigned long long)h->n_tokens, n);
        ref_k = h->top_k;
    }
    const bool kld = o->base || o->ref_logits;
    size_t B = o->batch ? o->batch : MK_MIN(ctx, 512);
    B = MK_MIN(B, ctx);
    mk_status st = MK_OK;
    float *lg = NULL, *blg = NULL;
    double *row_l = NULL, *brow_l = NULL, *row_kl = NULL;   /* (B) per-row logsumexp, base's, KL */
    double *row_tail = NULL;                                /* (B) stored logits: P's mass outside the top-k */
    int32_t *row_a = NULL, *brow_a = NULL;                  /* (B) per-row argmax, base's */
    uint8_t *mark = NULL;
    mk_logits_writer *w = NULL;
    size_t rows;
    if (!mk_mul_ok(B, V, &rows)) return mk_err(MK_ERR_NOMEM, "logits buffer too large");
    lg = mk_malloc(rows * sizeof(float));
    row_l = mk_malloc(B * sizeof(double));
    brow_l = mk_malloc(B * sizeof(double));
    row_kl = mk_malloc(B * sizeof(double));
    row_tail = mk_malloc(B * sizeof(double));
    row_a = mk_malloc(B * sizeof(int32_t));
    brow_a = mk_malloc(B * sizeof(int32_t));
    if (!row_l || !brow_l || !row_kl || !row_tail || !row_a || !brow_a) { st = MK_ERR_NOMEM; goto out; }
    if (o->base) blg = mk_malloc(rows * sizeof(float));
    const int max_th = omp_get_max_threads();
    if (o->ref_logits) mark = mk_calloc((size_t)max_th * V, 1); /* one (V) scratch per thread */
    const size_t total = mk_eval_count_scored(n, ctx, stride);
    if (kld) res->kld = mk_malloc(total * sizeof(float));
    if (!lg || (o->base && !blg) || (o->ref_logits && !mark) || (kld && !res->kld)) { st = MK_ERR_NOMEM; goto out; }
    if (o->save_path) {
        mk_logits_header h = {.vocab = V, .top_k = o->save_top_k ? o->save_top_k : 32, .ctx = ctx, .stride = stride,
                              .n_tokens = n, .tokens_hash = thash, .model_hash = o->model_hash};
        if (h.top_k > V) h.top_k = (uint32_t)V;
        if ((st = mk_logits_writer_open(&w, o->save_path, &h))) goto out;
    }

    double t0 = mk_wall(), tail_sum = 0;
    size_t prev_end = 0, agree = 0;
    for (size_t b = 0;; b += stride) {
        const size_t e = MK_MIN(b + ctx, n), s = MK_MAX(prev_end, b + 1);
        /* logits are needed at positions s-1 .. e-2 (each predicts the next token) */
        mk_ctx_reset(c);
        if (o->base) mk_ctx_reset(o->base);
        if (s - 1 > b) {
            if ((st = mk_ctx_forward(c, ids + b, s - 1 - b, MK_LOGITS_NONE, NULL))) goto out;
            if (o->base && (st = mk_ctx_forward(o->base, ids + b, s - 1 - b, MK_LOGITS_NONE, NULL))) goto out;
            res->n_fed += s - 1 - b;
        }
        for (size_t p = s - 1; p < e - 1;) {
            const size_t k = MK_MIN(B, e - 1 - p);
            if ((st = mk_ctx_forward(c, ids + p, k, MK_LOGITS_ALL, lg))) goto out;
            if (o->base && (st = mk_ctx_forward(o->base, ids + p, k, MK_LOGITS_ALL, blg))) goto out;
            res->n_fed += k;
            /* per-row logsumexp / argmax / KL (full, or against the stored record: a whole-vocabulary
             * record costs as much as the full KL) in parallel; rows are independent, so the numbers
             * do not depend on the thread count; the sums below stay in order */
            #pragma omp parallel for schedule(static) if (k > 1)
            for (size_t j = 0; j < k; j++) {
                row_l[j] = row_lse(lg + j * V, V, &row_a[j]);
                if (o->base) {
                    brow_l[j] = row_lse(blg + j * V, V, &brow_a[j]);
                    row_kl[j] = kl_full(blg + j * V, brow_l[j], lg + j * V, row_l[j], V);
                } else if (o->ref_logits) {
                    mk_logits_rec rec;
                    mk_logits_record(o->ref_logits, res->n_scored + j, &rec);
                    row_kl[j] = kl_topk(&rec, ref_k, lg + j * V, row_l[j], V, mark + (size_t)omp_get_thread_num() * V, &row_tail[j]);
                }
            }
            for (size_t j = 0; j < k; j++) {
                const size_t t = p + j + 1, r = res->n_scored;
                const int32_t tgt = ids[t];
                const float *q = lg + j * V;
                int32_t qa = row_a[j], pa = -1;
                const double lq = row_l[j];
                res->nll_sum += lq - (double)q[tgt];
                if (o->base) {
                    const float *pr = blg + j * V;
                    const double lp = brow_l[j];
                    pa = brow_a[j];
                    res->base_nll_sum += lp - (double)pr[tgt];
                    res->kld[r] = (float)row_kl[j];
                    if (w && (st = mk_logits_writer_add(w, pr, lp, tgt))) goto out;
                } else if (o->ref_logits) {
                    mk_logits_rec rec;
                    mk_logits_record(o->ref_logits, r, &rec);
                    if (rec.target != tgt) {
                        st = mk_err(MK_ERR_FORMAT, "stored logits: record %zu is for token %d, the text has %d", r, rec.target, tgt);
                        goto out;
                    }
                    pa = mk_logits_rec_id(&rec, 0);
                    res->base_nll_sum += rec.lse - (double)rec.target_logit;
                    res->kld[r] = (float)row_kl[j];
                    tail_sum += row_tail[j];
                } else if (w && (st = mk_logits_writer_add(w, q, lq, tgt))) {
                    goto out;
                }
                agree += pa == qa;
                res->n_scored++;
            }
            p += k;
            if (o->progress) o->progress(o->progress_user, res->n_scored, total);
        }
        res->n_windows++;
        prev_end = e;
        if (e == n) break;
    }
    res->seconds = mk_wall() - t0;
    res->tok_per_s = res->seconds > 0 ? (double)res->n_fed / res->seconds : 0;
    res->n_tokens = n;
    res->ctx = ctx;
    res->stride = stride;
    res->ppl = exp(res->nll_sum / (double)res->n_scored);
    if (kld) {
        const size_t N = res->n_scored;
        res->has_kld = true;
        res->kld_exact = o->base != NULL || ref_k == V;   /* a whole-vocabulary record leaves no tail */
        res->top_k = ref_k;
        res->base_ppl = exp(res->base_nll_sum / (double)N);
        res->delta_ppl = res->ppl - res->base_ppl;
        res->top1_agree = (double)agree / (double)N;
        res->ref_tail_mean = tail_sum / (double)N;
        double sum = 0;
        for (size_t i = 0; i < N; i++) sum += res->kld[i];
        res->kld_mean = sum / (double)N;
        float *sorted = mk_malloc(N * sizeof(float));
        if (!sorted) { st = MK_ERR_NOMEM; goto out; }
        memcpy(sorted, res->kld, N * sizeof(float));
        qsort(sorted, N, sizeof(float), cmp_float);
        res->kld_median = percentile(sorted, N, 0.5);
        res->kld_p99 = percentile(sorted, N, 0.99);
        res->kld_max = sorted[N - 1];
        free(sorted);
    }
    if (w) {
        st = mk_logits_writer_close(w);
        w = NULL;
    }
out:
    mk_logits_writer_abort(w);
    free(lg);
    free(blg);
    free(row_l);
    free(brow_l);
    free(row_kl);
    free(row_tail);
    free(row_a);
    free(brow_a);
    free(mark);
    if (st) mk_eval_result_clear(res);
    return st;
}
