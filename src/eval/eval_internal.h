/* Private to src/eval: the stored-logits writer and record access. */
#ifndef MK_EVAL_INTERNAL_H
#define MK_EVAL_INTERNAL_H

#include "moekit/eval.h"

#include <stdint.h>
#include <stdio.h>

typedef struct mk_logits_writer mk_logits_writer;

/* Writes to PATH.tmpPID and renames onto path at close (fsync first); h->count is counted. */
mk_status mk_logits_writer_open(mk_logits_writer **out, const char *path, const mk_logits_header *h);
/* row: (vocab) logits of one scored position; lse: its logsumexp; target: the scored token. */
mk_status mk_logits_writer_add(mk_logits_writer *w, const float *row, double lse, int32_t target);
/* Finishes the file; frees w either way. */
mk_status mk_logits_writer_close(mk_logits_writer *w);
/* Removes the temporary file and frees w (NULL is a no-op). */
void mk_logits_writer_abort(mk_logits_writer *w);

/* The k largest of x (V values), descending, the lowest id first among equal values (finite x).
 * Insertion for k <= MK_TOPK_INSERT_MAX; a sort of all V pairs (scratch: V of them) above it. */
#define MK_TOPK_INSERT_MAX 64
typedef struct mk_topk_pair { float v; int32_t id; } mk_topk_pair;
void mk_topk_insert(const float *x, size_t V, uint32_t k, int32_t *ids, float *vals);
void mk_topk_sort(const float *x, size_t V, uint32_t k, int32_t *ids, float *vals, mk_topk_pair *scratch);

size_t mk_logits_record_bytes(uint32_t top_k);
/* Validates a whole stored-logits file image (header and every record); fills *h. */
mk_status mk_logits_validate(const uint8_t *data, size_t size, const char *path, mk_logits_header *h);

typedef struct mk_logits_rec {
    int32_t target;
    float target_logit;
    double lse;
    const uint8_t *p;   /* top_k (id, logit) pairs */
} mk_logits_rec;
/* Record r (< count) of a validated file. */
void mk_logits_record(const mk_logits_file *f, size_t r, mk_logits_rec *out);
int32_t mk_logits_rec_id(const mk_logits_rec *r, uint32_t i);
float mk_logits_rec_logit(const mk_logits_rec *r, uint32_t i);

#endif
