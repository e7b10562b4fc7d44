/* Internals of the profiler shared by profile.c (accumulation, stats.json) and report.c (HTML). */
#ifndef MK_ANALYZE_PROFILE_INT_H
#define MK_ANALYZE_PROFILE_INT_H

#include "analyze/profile.h"

/* Most frequent token ids of one (layer, expert): a space-saving summary (Metwally et al. 2005)
 * of MK_PROFILE_TOKEN_SLOTS counters, so memory stays fixed however many tokens are profiled.
 * Counts are exact while at most that many distinct ids have reached the expert (evicted == 0);
 * afterwards a kept count overestimates the true one by at most its err, itself <= N_e / slots. */
#define MK_PROFILE_TOKEN_SLOTS 64
typedef struct mk_tokcount {
    int32_t id[MK_PROFILE_TOKEN_SLOTS];
    int32_t n;                            /* slots in use */
    int64_t count[MK_PROFILE_TOKEN_SLOTS];
    int64_t err[MK_PROFILE_TOKEN_SLOTS];
    int64_t evicted;                      /* replacements made */
} mk_tokcount;

struct mk_profile {
    const mk_model *m;
    bool sigmoid;                 /* the router scores experts with a sigmoid (else softmax) */
    mk_status st;
    double obs_seconds;           /* wall time spent inside the observer */
    char err[256];
    /* layout */
    const int32_t *tokens;
    size_t n_tok, n_seq, n_ds;
    size_t *seq_len, *seq_start;  /* (n_seq) */
    int32_t *seq_ds;              /* (n_seq) */
    char **ds_name, **ds_path;    /* (n_ds) */
    size_t *ds_tokens, *ds_seqs;  /* (n_ds) */
    /* shapes */
    int64_t n_layer, n_moe, E, K; /* K = expert slots per token as routed */
    int64_t *moe_layer;           /* (n_moe) model layer index of each MoE layer */
    int64_t *moe_index;           /* (n_layer) MoE index of each layer, -1 for dense */
    /* per slot (datasets 0..n_ds-1, then n_ds = overall), per MoE layer, per expert */
    mk_expert_stats *ex;          /* (n_ds+1, n_moe, E) */
    double *ent_sum;              /* (n_ds+1, n_moe) Σ per-token routing entropy (nats) */
    int64_t *ntok;                /* (n_ds+1, n_moe) tokens seen */
    /* overall only */
    int64_t *hist;                /* (n_moe, E, MK_PROFILE_HIST_BINS) */
    int64_t *ratio_hist;          /* (n_moe, MK_PROFILE_RATIO_BINS) p(2)/p(1) of the full softmax (NAEE's beta) */
    int64_t *coact;               /* (n_moe, E, E) tokens routed to both e1 and e2 (diagonal = count) */
    int64_t *trans;               /* (n_moe-1, E, E) tokens routed to e at MoE layer i and e' at i+1 */
    mk_tokcount *tc;              /* (n_moe, E) */
    int32_t *ids_prev[2];         /* (n_tok, K) chosen experts of the last two MoE layers, by parity */
    size_t *cursor;               /* (n_moe) next global token index expected */
    /* per-event scratch, grown as needed: (n, K) norms, max|.|, channel; (n) s_t, entropy, top-1 */
    size_t scratch_cap;
    double *sc_norm, *sc_absmax, *sc_s, *sc_ent, *sc_top1v, *sc_ratio;
    int32_t *sc_chan, *sc_top1;
};

#define MK_PROFILE_RATIO_BINS 4096

static inline mk_expert_stats *mk_prof_ex(const mk_profile *p, size_t slot, int64_t li, int64_t e) {
    return &p->ex[(slot * (size_t)p->n_moe + (size_t)li) * (size_t)p->E + (size_t)e];
}

/* Derived per-(slot, layer) facts the writers share. */
double mk_prof_js(const mk_profile *p, size_t a, size_t b, int64_t li);  /* Jensen–Shannon, bits, in [0,1] */
/* Dataset index and position of global token g. */
void mk_prof_locate(const mk_profile *p, size_t g, size_t *ds, size_t *seq, size_t *pos);

typedef struct mk_super_expert {
    int64_t li, e;
    double value;
} mk_super_expert;
/* Su et al. 2025's rule (research/methods.md §1.4, the code's _identify_super_experts) on per-expert
 * maxima of |down_proj output|: the population is every expert that saw a token (count > 0) in a
 * MoE layer whose model layer is < round(0.75 · n_layer); an expert is super when its value is
 * > numpy.percentile(population, 99.5) (linear interpolation) AND > floor(max(population) / 10).
 * vals, count: (n_moe, E); moe_layer: (n_moe) model layer of each row. Largest first (ties: layer,
 * then expert ascending). With fewer than 201 values the percentile lies between the two largest,
 * so at most one expert can pass it unless values tie. Caller frees *out. */
mk_status mk_super_experts_rule(const double *vals, const int64_t *count, const int64_t *moe_layer, int64_t n_moe, int64_t E,
                                int64_t n_layer, mk_super_expert **out, size_t *n, int64_t *n_incl, double *p995, double *floor10);
/* The super experts by the paper's rule, largest first; *n_incl = number of model layers kept
 * (round(0.75 · n_layer)), *p995 and *floor10 the two thresholds. Caller frees the array. */
mk_status mk_prof_super_experts(const mk_profile *p, mk_super_expert **out, size_t *n, int64_t *n_incl, double *p995,
                                double *floor10);

/* Top tokens of every expert of MoE layer li: for expert e, n[e] <= MK_PROFILE_TOP_TOKENS ids and
 * counts at ids[e·TOP..], by count desc, id asc. ids (E·TOP), counts (E·TOP), n (E). */
void mk_prof_top_tokens(const mk_profile *p, int64_t li, int32_t *ids, int64_t *counts, int *n);
static inline const mk_tokcount *mk_prof_tc(const mk_profile *p, int64_t li, int64_t e) {
    return &p->tc[(size_t)li * (size_t)p->E + (size_t)e];
}

typedef struct spec_item {
    int64_t li, e;
    double pd, prest;   /* share of dataset d's routing in layer li; share of the other datasets' */
} spec_item;
/* The experts most specific to dataset d: largest pd − prest over all layers; up to `top`. */
size_t mk_prof_specific(const mk_profile *p, size_t d, spec_item *out, size_t top);

/* A growable text buffer. */
typedef struct mk_buf {
    char *s;
    size_t len, cap;
    bool oom;
} mk_buf;
void mk_buf_printf(mk_buf *b, const char *fmt, ...) MK_PRINTF(2, 3);
void mk_buf_puts(mk_buf *b, const char *s);
void mk_buf_html(mk_buf *b, const char *s);  /* escaped for HTML text and attributes */

#endif
