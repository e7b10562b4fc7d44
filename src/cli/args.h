/* Small helpers for the subcommands' option parsing. */
#ifndef MK_CLI_ARGS_H
#define MK_CLI_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parses a whole decimal integer / float; false (with a message printed) if malformed. */
bool mk_arg_int(const char *opt, const char *s, int64_t min, int64_t max, int64_t *out);
bool mk_arg_float(const char *opt, const char *s, double min, double max, double *out);
/* Parses "1,2,3" into a malloc'd array; false (message printed) if malformed. */
bool mk_arg_ids(const char *opt, const char *s, int32_t **ids, size_t *n);
/* The value after option argv[*i], advancing *i; NULL (message printed) if missing. */
const char *mk_arg_value(int argc, char **argv, int *i);
/* The options `prune` and `merge` share. */
typedef struct mk_compress_args {
    const char *dir, *stats_path, *method, *outdir, *dataset, *calib_ids, *calib_text;
    int64_t keep, ctx;   /* ctx: calibration sequence length, default 512 */
    double keep_frac;
    bool force;
} mk_compress_args;
#define MK_COMPRESS_ARGS_INIT {.ctx = 512}
/* If argv[*i] is one of the shared options (-m, --stats, --method, -o, --dataset, --calib,
 * --calib-ids, --keep, --keep-frac, --ctx, --force), takes it and its value (advancing *i) and
 * returns 1; 0 if it is not one; -1 if its value is missing or malformed (message printed). */
int mk_compress_arg(int argc, char **argv, int *i, mk_compress_args *o);
/* The model directory to use when -m is not given: $MOEKIT_MODEL, else the embedded default
 * model (models/testbed beside the binary's repository), else NULL. */
const char *mk_default_model(void);

/* How to say that model (a directory or a GGUF file) has no tokenizer, after its path:
 * "has no tokenizer.json", or for a file "has no tokenizer in its metadata (...)". */
const char *mk_cli_no_tokenizer(const char *model);

/* Calibration tokens for a model: text_path (encoded with the model's tokenizer, from its
 * directory or GGUF file, no special tokens added) or ids_path (whitespace-separated ids); exactly one is non-NULL.
 * Returns an mk_status (the library's error message is set). */
int mk_cli_calib_tokens(const char *model_dir, const char *text_path, const char *ids_path, int32_t **toks, size_t *n);

#endif
