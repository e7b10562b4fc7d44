/* moekit evaluation: perplexity, KL divergence / top-1 agreement against a base model, and
 * lm-evaluation-harness-style multiple-choice log-likelihoods. Everything here works on token-id
 * arrays; turning text into ids is the caller's business (the CLI uses the tokenizer).
 *
 * Perplexity windows follow HF's "Perplexity of fixed-length models" guide: windows of `ctx`
 * tokens start at 0, stride, 2·stride, ... (the last one ends at the end of the text); window
 * [b, e) scores the targets t in [max(prev_e, b + 1), e), each predicted from the window's
 * tokens before it, where prev_e is the previous window's end (0 for the first). With stride <
 * ctx every token but the first is scored exactly once; with stride == ctx the first token of each
 * window is not scored (it has no context in its window), as in the guide. The NLL is summed per token in double precision (the guide
 * weights each window's mean loss by trg_len - 1, which under-counts windows after the first by
 * one token; we do not copy that). A text shorter than ctx is one window of its own length.
 *
 * Ownership: results and readers/writers are created by the functions below and released with
 * their mk_*_free (NULL is a no-op). Contexts and models are the caller's and must outlive a call. */
#ifndef MOEKIT_EVAL_H
#define MOEKIT_EVAL_H

#include "moekit/base.h"
#include "moekit/model.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- stored base-model logits (--save-logits / --kld-logits) ----
 * A file of the reference model's top-k logits per scored position:
 *   header (little-endian, 96 bytes):
 *     char magic[8] = "MKLOGITS"; u32 version = 1; u32 header_bytes = 96;
 *     u64 vocab; u32 top_k; u32 reserved = 0; u64 ctx; u64 stride;
 *     u64 n_tokens (input length); u64 tokens_hash (FNV-1a 64 of the int32 ids);
 *     u64 model_hash (FNV-1a 64 of the reference model's config.json, informational);
 *     u64 count (scored positions); u64 reserved2 = 0
 *   then `count` records of 16 + 8·top_k bytes, in scoring order:
 *     i32 target; f32 target_logit; f64 logsumexp; top_k × (i32 id, f32 logit), logits descending.
 * A reader checks the magic, version, sizes (count·record + header == file size, overflow-checked),
 * ids in range, finite values, order, and (at use) vocab / ctx / stride / tokens against the run. */
#define MK_LOGITS_MAGIC "MKLOGITS"
#define MK_LOGITS_VERSION 1u

typedef struct mk_logits_file mk_logits_file;

typedef struct mk_logits_header {
    uint64_t vocab;
    uint32_t top_k;
    uint64_t ctx, stride, n_tokens, tokens_hash, model_hash, count;
} mk_logits_header;

/* Scored positions of n tokens with these windows (stride 0 = ctx); 0 if n < 2. */
size_t mk_eval_count_scored(size_t n, size_t ctx, size_t stride);

/* Opens and validates a stored-logits file for reading. */
mk_status mk_logits_open(mk_logits_file **out, const char *path);
const mk_logits_header *mk_logits_get_header(const mk_logits_file *f);
void mk_logits_close(mk_logits_file *f);

/* FNV-1a 64 of a byte buffer (continues from h; start with MK_FNV_INIT). */
#define MK_FNV_INIT 0xcbf29ce484222325ull
uint64_t mk_fnv1a(uint64_t h, const void *data, size_t n);

/* ---- perplexity and KL divergence over a token sequence ---- */
typedef struct mk_eval_opts {
    size_t ctx;              /* window length in tokens (>= 2) */
    size_t stride;           /* window step; 0 = ctx; must be <= ctx */
    size_t batch;            /* tokens per forward call (logits buffer rows); 0 = min(ctx, 512) */
    /* reference distribution for KLD: at most one of base / ref_logits */
    mk_ctx *base;            /* a context of the base model (n_ctx >= ctx), run on the same windows */
    const mk_model *base_model;
    mk_logits_file *ref_logits; /* stored base top-k logits */
    /* save the reference distribution (the base model's when base is set, else the model's) */
    const char *save_path;
    uint32_t save_top_k;     /* 0 = 32 (clamped to vocab) */
    uint64_t model_hash;     /* written to the saved file's header */
    /* progress: called after each forward chunk with scored tokens done / total */
    void (*progress)(void *user, size_t done, size_t total);
    void *progress_user;
} mk_eval_opts;

typedef struct mk_eval_result {
    size_t n_tokens, n_windows, n_scored, ctx, stride;
    double nll_sum;          /* sum of -log p(target) over scored positions */
    double ppl;              /* exp(nll_sum / n_scored) */
    double seconds, tok_per_s;  /* tokens fed through the model / wall time */
    size_t n_fed;            /* tokens fed through the model (all windows) */
    /* KLD (when a reference was given) */
    bool has_kld;
    bool kld_exact;          /* true: full distributions; false: top-k + tail bucket (lower bound) */
    uint32_t top_k;          /* top-k of the stored reference, 0 when exact */
    double base_nll_sum, base_ppl, delta_ppl;   /* delta_ppl = ppl - base_ppl */
    double kld_mean, kld_median, kld_p99, kld_max;
    double top1_agree;       /* fraction of positions where both argmaxes agree */
    double ref_tail_mean;    /* mean probability mass outside the stored top-k (0 when exact) */
    float *kld;              /* (n_scored) per-position KLD(base || model), malloc'd; freed by mk_eval_result_clear */
} mk_eval_result;

/* Runs the windows over ids with the model's context c (n_ctx >= ctx; reset per window; its
 * routing options apply). Fills *res (cleared first). Errors: fewer than 2 tokens, ctx < 2,
 * stride > ctx, a base of another vocabulary, a stored reference that does not match
 * (vocab, ctx, stride, tokens). */
mk_status mk_eval_ppl(const mk_model *m, mk_ctx *c, const int32_t *ids, size_t n, const mk_eval_opts *o,
                      mk_eval_result *res);
void mk_eval_result_clear(mk_eval_result *res);

/* ---- multiple choice (lm-evaluation-harness loglikelihood requests) ---- */
/* loglik of cont given ctx: sum over cont of log p(cont[i] | ctx, cont[:i]), log-softmax in double.
 * As lm-eval: the input is (ctx ++ cont) with its first tokens dropped when longer than
 * max_len + 1; ctx must hold >= 1 token (callers put BOS/EOS there for an empty context).
 * greedy: whether every cont token is the argmax (lm-eval's is_greedy). */
mk_status mk_eval_loglik(const mk_model *m, mk_ctx *c, const int32_t *ctx_ids, size_t n_ctx, const int32_t *cont,
                         size_t n_cont, size_t max_len, double *loglik, bool *greedy);

/* Text → token ids (special tokens as the tokenizer adds them when add_special); *ids malloc'd (the caller frees). The eval library never
 * names a tokenizer: the CLI hands one in through this. */
typedef mk_status (*mk_eval_encode_fn)(void *user, const char *text, size_t len, bool add_special, int32_t **ids,
                                       size_t *n);

/* lm-eval's HFLM._encode_pair (no special tokens): trailing white space of the context moves to the front of the
 * continuation; whole = enc(context + continuation), ctx = enc(context), cont = whole[len(ctx):].
 * Empty context → *n_ctx = 0 (callers substitute the prefix token). *ctx_ids / *cont_ids malloc'd. */
mk_status mk_eval_encode_pair(mk_eval_encode_fn enc, void *user, const char *context, const char *continuation,
                              int32_t **ctx_ids, size_t *n_ctx, int32_t **cont_ids, size_t *n_cont);

/* The logliks of several continuations of one context: the same numbers as mk_eval_loglik per
 * choice, but the context runs once and each continuation reuses its KV cache (mk_ctx_truncate)
 * when no left truncation is needed; otherwise it falls back to one mk_eval_loglik per choice.
 * greedy may be NULL. */
mk_status mk_eval_loglik_shared(const mk_model *m, mk_ctx *c, const int32_t *ctx_ids, size_t n_ctx,
                                const int32_t *const *conts, const size_t *n_conts, size_t n_choices, size_t max_len,
                                double *loglik, bool *greedy);

typedef struct mk_mc_item {
    size_t n_choices;
    double *loglik;          /* (n_choices) */
    double *norm_len;        /* (n_choices) acc_norm denominator (characters of the choice) */
    int64_t gold;
} mk_mc_item;

typedef struct mk_mc_summary {
    size_t n;
    double acc, acc_stderr, acc_norm, acc_norm_stderr;
} mk_mc_summary;

/* acc: argmax of loglik == gold; acc_norm: argmax of loglik / norm_len == gold (first index on
 * ties, as numpy.argmax); stderr = sample std (n - 1) / sqrt(n), as lm-eval's mean_stderr. */
void mk_mc_score(const mk_mc_item *items, size_t n, mk_mc_summary *out);

#ifdef __cplusplus
}
#endif
#endif
