/* Writes a loaded model as a GGUF file with llama.cpp's tensor names and metadata (research/
 * formats.md §12, research/llamacpp.md §2a), quantizing its weights to one type.
 *
 * Type rule (as llama.cpp's quantizer does, simplified to one type per file):
 *   - 1-D tensors (norms, biases, q/k norms) stay F32;
 *   - the routers (ffn_gate_inp) and Qwen2-MoE's shared-expert gate (ffn_gate_inp_shexp) stay F32
 *     ("do not quantize expert gating tensors");
 *   - every other matrix (token_embd, output, attention, experts, shared experts, dense FFNs) gets
 *     the requested type; except for MXFP4, which (as llama.cpp's MXFP4_MOE) goes to the routed
 *     experts only, every other matrix Q8_0. When a matrix's row length is not a multiple of that type's block
 *     (Q4_K/Q6_K need 256, Q8_0/Q4_0/MXFP4 32), it falls back to Q8_0 if the row length is a multiple
 *     of 32, else F16. The report lists every such matrix and why (`moekit quantize` prints it).
 * A source tensor already in the target type is copied byte for byte; anything else goes
 * through f32 (so a GGUF can be re-quantized). Mixtral (GGUF arch "llama") gets llama.cpp's q/k
 * row permutation. The source's tokenizer (tokenizer.json beside config.json, or the source GGUF's
 * metadata) is written as llama.cpp's tokenizer.* keys with its chat templates
 * (tokenizer/tok_gguf.h); a source without one gets tokenizer.ggml.model = "none" with
 * <arch>.vocab_size, which llama.cpp loads as a model without vocabulary. */
#ifndef MK_QUANT_GGUF_H
#define MK_QUANT_GGUF_H

#include "model/model.h"
#include "tokenizer/tok_gguf.h"

typedef struct mk_gguf_write_report {
    size_t n_tensors;
    int64_t bytes_by_dtype[MK_DT_COUNT]; /* tensor bytes written, by type */
    mk_tok_gguf_info tokenizer;          /* what was written of the tokenizer */
    size_t n_fallback;                   /* matrices written in another type than asked (rows not whole blocks) */
    char fallback[2048];                 /* which and why: one line per (type, row length), "" if none */
    char caveat[512];                    /* what llama.cpp will compute differently from the model, "" if nothing known */
} mk_gguf_write_report;

/* Writes m to out_path (atomically). type: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K or MXFP4. name: the
 * general.name to record (NULL: none). rep may be NULL. */
mk_status mk_gguf_write_model(const mk_model *m, mk_dtype type, const char *out_path, const char *name, mk_gguf_write_report *rep);

#endif
