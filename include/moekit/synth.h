/* Random-weight checkpoints for benchmarks and tests: any supported config.json becomes an HF
 * model directory (config.json + model.safetensors, one tensor per expert) that moekit and HF
 * transformers load. Weights are uniform with standard deviation `std` (0 → 0.02), norms 1,
 * biases 0, so activations stay finite through many layers. */
#ifndef MOEKIT_SYNTH_H
#define MOEKIT_SYNTH_H

#include "moekit/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mk_synth_opts {
    int64_t n_layer;     /* keep the first n_layer layers; 0 = all of the config's */
    const char *dtype;   /* "bf16" (default), "f16", "f32", or "mxfp4" (GPT-OSS: experts as MXFP4 blocks/scales as OpenAI ships them, the rest BF16) */
    uint64_t seed;
    float std;           /* 0 = 0.02 */
    bool quiet;          /* no progress on stderr */
} mk_synth_opts;

/* Writes out_dir/config.json and out_dir/model.safetensors. The weights are generated and written
 * in pieces (memory use stays small whatever the model size). Atomic: a new out_dir is built
 * under a temporary name and renamed when complete; into an existing out_dir each file goes to a
 * temporary name first and is renamed (weights first, config.json last). */
mk_status mk_model_synth(const char *config_path, const char *out_dir, const mk_synth_opts *o);

#ifdef __cplusplus
}
#endif
#endif
