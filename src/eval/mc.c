/* Multiple-choice scoring as lm-evaluation-harness does it (lm_eval/api/task.py,
 * ConfigurableTask.process_results for output_type multiple_choice; lm_eval/models/huggingface.py
 * _loglikelihood_tokens for the truncation). */
#include "eval/eval_internal.h"

#include "base/base.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Sum of log-softmax (in double) of rows lg (n, V) at the targets; greedy: every target is the argmax. */
static void score_rows(const float *lg, size_t V, const int32_t *tgt, size_t n, double *loglik, bool *greedy) {
    double ll = 0;
    bool g = true;
    for (size_t j = 0; j < n; j++) {
        const float *x = lg + j * V;
        size_t b = 0;
        for (size_t i = 1; i < V; i++) if (x[i] > x[b]) b = i;
        double mx = x[b], s = 0;
        for (size_t i = 0; i < V; i++) s += exp((double)x[i] - mx);
        ll += (double)x[tgt[j]] - mx - log(s);
        if ((int32_t)b != tgt[j]) g = false;
    }
    *loglik = ll;
    if (greedy) *greedy = g;
}

mk_status mk_eval_loglik(const mk_model *m, mk_ctx *c, const int32_t *ctx_ids, size_t n_ctx, const int32_t *cont,
                         size_t n_cont, size_t max_len, double *loglik, bool *greedy) {
    const size_t V = (size_t)mk_model_get_info(m)->vocab;
    if (n_ctx == 0) return mk_err(MK_ERR_ARG, "loglikelihood: empty context (put BOS/EOS there)");
    if (n_cont == 0) return mk_err(MK_ERR_ARG, "loglikelihood: empty continuation");
    if (n_cont > max_len) return mk_err(MK_ERR_ARG, "loglikelihood: continuation of %zu tokens does not fit the context of %zu", n_cont, max_len);
    size_t total = n_ctx + n_cont, drop = total > max_len + 1 ? total - max_len - 1 : 0;
    /* the input is all[drop .. total-1); the last n_cont input positions predict cont */
    int32_t *all = mk_malloc(total * sizeof *all);
    float *lg = mk_malloc(n_cont * V * sizeof(float));
    mk_status st = MK_OK;
    if (!all || !lg) { st = MK_ERR_NOMEM; goto out; }
    memcpy(all, ctx_ids, n_ctx * sizeof *all);
    memcpy(all + n_ctx, cont, n_cont * sizeof *all);
    const size_t L = total - 1 - drop, pre = L - n_cont;
    mk_ctx_reset(c);
    if (pre && (st = mk_ctx_forward(c, all + drop, pre, MK_LOGITS_NONE, NULL))) goto out;
    if ((st = mk_ctx_forward(c, all + drop + pre, n_cont, MK_LOGITS_ALL, lg))) goto out;
    score_rows(lg, V, cont, n_cont, loglik, greedy);
out:
    free(all);
    free(lg);
    return st;
}

mk_status mk_eval_loglik_shared(const mk_model *m, mk_ctx *c, const int32_t *ctx_ids, size_t n_ctx,
                                const int32_t *const *conts, const size_t *n_conts, size_t n_choices, size_t max_len,
                                double *loglik, bool *greedy) {
    const size_t V = (size_t)mk_model_get_info(m)->vocab;
    size_t longest = 0;
    for (size_t i = 0; i < n_choices; i++) longest = MK_MAX(longest, n_conts[i]);
    if (n_ctx == 0 || longest == 0 || n_ctx + longest > max_len + 1) {
        /* empty pieces are refused by mk_eval_loglik; left truncation differs per choice */
        for (size_t i = 0; i < n_choices; i++) {
            mk_status st = mk_eval_loglik(m, c, ctx_ids, n_ctx, conts[i], n_conts[i], max_len, &loglik[i],
                                          greedy ? &greedy[i] : NULL);
            if (st) return st;
        }
        return MK_OK;
    }
    for (size_t i = 0; i < n_choices; i++)
        if (n_conts[i] == 0) return mk_err(MK_ERR_ARG, "loglikelihood: empty continuation");
    float *lg = mk_malloc(longest * V * sizeof(float));
    int32_t *in = mk_malloc(longest * sizeof(int32_t));
    mk_status st = MK_OK;
    if (!lg || !in) { st = MK_ERR_NOMEM; goto out; }
    /* the context but its last token once; per choice: [last context token] ++ cont[:-1] */
    mk_ctx_reset(c);
    if (n_ctx > 1 && (st = mk_ctx_forward(c, ctx_ids, n_ctx - 1, MK_LOGITS_NONE, NULL))) goto out;
    for (size_t i = 0; i < n_choices; i++) {
        mk_ctx_truncate(c, n_ctx - 1);
        in[0] = ctx_ids[n_ctx - 1];
        memcpy(in + 1, conts[i], (n_conts[i] - 1) * sizeof(int32_t));
        if ((st = mk_ctx_forward(c, in, n_conts[i], MK_LOGITS_ALL, lg))) goto out;
        score_rows(lg, V, conts[i], n_conts[i], &loglik[i], greedy ? &greedy[i] : NULL);
    }
out:
    free(lg);
    free(in);
    return st;
}

static size_t argmax_d(const double *x, const double *div, size_t n) {
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if ((div ? x[i] / div[i] : x[i]) > (div ? x[b] / div[b] : x[b])) b = i;
    return b;
}

/* lm-eval's mean_stderr: sample standard deviation (n - 1) / sqrt(n). */
static double stderr_of(double hits, size_t n) {
    if (n < 2) return NAN;
    double p = hits / (double)n;
    double var = ((double)n * p * (1 - p)) / (double)(n - 1);
    return sqrt(var / (double)n);
}

void mk_mc_score(const mk_mc_item *items, size_t n, mk_mc_summary *out) {
    double a = 0, an = 0;
    for (size_t i = 0; i < n; i++) {
        const mk_mc_item *it = &items[i];
        if (!it->n_choices) continue;
        a += (int64_t)argmax_d(it->loglik, NULL, it->n_choices) == it->gold;
        an += (int64_t)argmax_d(it->loglik, it->norm_len, it->n_choices) == it->gold;
    }
    out->n = n;
    out->acc = n ? a / (double)n : NAN;
    out->acc_norm = n ? an / (double)n : NAN;
    out->acc_stderr = stderr_of(a, n);
    out->acc_norm_stderr = stderr_of(an, n);
}

mk_status mk_eval_encode_pair(mk_eval_encode_fn enc, void *user, const char *context, const char *continuation,
                              int32_t **ctx_ids, size_t *n_ctx, int32_t **cont_ids, size_t *n_cont) {
    *ctx_ids = *cont_ids = NULL;
    *n_ctx = *n_cont = 0;
    size_t lc = strlen(context), lk = strlen(continuation), cut = lc;
    while (cut > 0 && (context[cut - 1] == ' ' || context[cut - 1] == '\t' || context[cut - 1] == '\n' ||
                       context[cut - 1] == '\r' || context[cut - 1] == '\v' || context[cut - 1] == '\f'))
        cut--;
    /* whole = context[:cut] + context[cut:] + continuation = context + continuation */
    char *whole = mk_malloc(lc + lk + 1);
    if (!whole) return MK_ERR_NOMEM;
    memcpy(whole, context, lc);
    memcpy(whole + lc, continuation, lk + 1);
    int32_t *w = NULL, *c = NULL;
    size_t nw = 0, nc = 0;
    mk_status st = MK_OK;
    if (lc + lk && (st = enc(user, whole, lc + lk, false, &w, &nw))) goto out;
    if (cut && (st = enc(user, context, cut, false, &c, &nc))) goto out;
    if (nc > nw) nc = nw;   /* cont = whole[len(ctx):] is then empty */
    *n_cont = nw - nc;
    *cont_ids = mk_malloc((*n_cont ? *n_cont : 1) * sizeof(int32_t));
    if (!*cont_ids) { st = MK_ERR_NOMEM; goto out; }
    if (*n_cont) memcpy(*cont_ids, w + nc, *n_cont * sizeof(int32_t));
    *ctx_ids = c;
    *n_ctx = cut ? nc : 0;
    c = NULL;
out:
    free(whole);
    free(w);
    free(c);
    if (st) { free(*cont_ids); *cont_ids = NULL; *n_cont = 0; }
    return st;
}
