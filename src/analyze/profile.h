/* Expert routing profiler: a consumer of the forward pass's observer that accumulates, per MoE
 * layer and expert, per dataset and overall, the statistics of docs/stats-schema.md (counts,
 * gate mass, REAP, EASY-EP, TCESS, output norms, max |down_proj output|, entropy, co-activation,
 * cross-layer transitions, top tokens), and writes them as stats.json and an HTML report.
 *
 * It works on token ids only; turning text into ids is the caller's business. The caller lays
 * every dataset's sequences end to end in one token array and feeds them to the forward pass in
 * that order, either sequence by sequence (mk_ctx_forward from position 0) or layer by layer
 * (mk_forward_streamed): per layer, events arrive in increasing token order in both cases, which
 * is all the profiler relies on, so both give bit-identical numbers.
 *
 * Ownership: mk_profile_new copies the layout (lengths, dataset names) but only borrows `tokens`,
 * which must outlive the profile. mk_profile_free(NULL) is a no-op. */
#ifndef MK_ANALYZE_PROFILE_H
#define MK_ANALYZE_PROFILE_H

#include "base/base.h"
#include "moekit/model.h"

#define MK_PROFILE_SCHEMA_VERSION 1
#define MK_PROFILE_TOP_TOKENS 10      /* most frequent token ids kept per expert */
#define MK_PROFILE_HIST_BINS 48       /* log2 histogram of output norms: bin i = [2^(i/2-12), 2^((i+1)/2-12)) */

typedef struct mk_profile_layout {
    const int32_t *tokens;        /* (n_tok) every sequence of every dataset, end to end */
    size_t n_tok;
    const size_t *seq_len;        /* (n_seq) */
    const int32_t *seq_dataset;   /* (n_seq) dataset index of each sequence, non-decreasing */
    size_t n_seq;
    size_t n_dataset;
    const char *const *dataset_names; /* (n_dataset) */
    const char *const *dataset_paths; /* (n_dataset) for the record; may be NULL */
    int64_t k;                    /* experts per token as routed (0 = the model's k) */
} mk_profile_layout;

typedef struct mk_profile mk_profile;

mk_status mk_profile_new(mk_profile **out, const mk_model *m, const mk_profile_layout *lay);
void mk_profile_free(mk_profile *p);
/* The observer to hand to mk_ctx_set_observer; user points at p. */
mk_observer mk_profile_observer(mk_profile *p);
/* Wall-clock seconds spent inside the observer so far: the profiler's cost over a plain forward. */
double mk_profile_observer_seconds(const mk_profile *p);
/* MK_OK unless an event did not line up with the layout (a caller bug); then a message. */
mk_status mk_profile_status(const mk_profile *p);

/* Free-form facts recorded in stats.json's "run" object. */
typedef struct mk_profile_run_info {
    const char *model_dir;
    size_t ctx;                   /* tokens per sequence at most */
    int64_t tokens_limit;         /* --tokens per dataset, 0 = all */
    bool streamed;
    double seconds;
} mk_profile_run_info;

/* Turns one token id into text (NUL-terminated, at most cap bytes) for "top tokens"; NULL → none. */
typedef bool (*mk_decode_fn)(void *user, int32_t id, char *buf, size_t cap);

/* Writes stats.json atomically (temp file in the same directory, fsync, rename): an existing
 * file at `path` is either left as it was or replaced whole. */
mk_status mk_profile_write_json(const mk_profile *p, const mk_profile_run_info *run, mk_decode_fn decode,
                                void *decode_user, const char *path);
/* Writes the self-contained HTML report (inline SVG, no scripts), atomically. report_layer: the
 * MoE layer whose co-activation (and transition to the next MoE layer) is drawn; -1 = automatic
 * (the layer whose datasets diverge most, else the middle one). */
mk_status mk_profile_write_html(const mk_profile *p, const mk_profile_run_info *run, mk_decode_fn decode,
                                void *decode_user, int64_t report_layer, const char *path);

/* ---- read access for the report and tests ---- */
typedef struct mk_expert_stats {
    int64_t count;
    double gate_sum, reap_sum, easyep_sum, tcess_sum;
    double norm_sum, norm_sq, norm_min, norm_max;
    double out_absmax;            /* max |down_proj output| over every routed token and channel */
    int64_t out_channel;          /* where it occurred: channel, global token index (-1 = never routed) */
    int64_t out_token;
} mk_expert_stats;

/* Atomic file writing used by both writers: writes `len` bytes to path via a mkstemp temp file in
 * the same directory + fsync + rename (+ fsync of the directory). (format/ has the same helper for
 * the safetensors writer; analysis does not depend on format/, so one of them should move to base/.) */
mk_status mk_prof_write_atomic(const char *path, const void *data, size_t len);

#endif
