/* moekit tokenizer API (see src/tokenizer/).
 *
 * Reads a Hugging Face tokenizer.json (BPE models: byte-level BPE as in GPT-2/Qwen/DeepSeek/
 * GPT-OSS/OLMoE, and SentencePiece-style BPE with byte fallback as in Llama-2/Mistral) and
 * encodes/decodes exactly as the HF `tokenizers` library does (Tokenizer.encode / .decode).
 *
 * Ownership: mk_tokenizer_load creates a tokenizer freed by mk_tokenizer_free. Buffers returned
 * through out-parameters of encode/decode are malloc'ed and freed by the caller with free().
 * A tokenizer is immutable after load and may be shared by threads: encode, decode and the
 * lookups are thread-safe (an internal pre-token cache is used by one thread at a time; other
 * threads encode without it). A stream object belongs to one thread.
 */
#ifndef MOEKIT_TOKENIZER_H
#define MOEKIT_TOKENIZER_H
#include "moekit/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mk_tokenizer mk_tokenizer;

/* Loads a tokenizer from `path`: a tokenizer.json file, a model directory containing
 * tokenizer.json (and optionally tokenizer_config.json and config.json, which give the BOS/EOS
 * tokens and add_bos_token), or a GGUF file with llama.cpp's tokenizer metadata (tokenizer.ggml.*,
 * vocabulary types gpt2 and llama; see src/tokenizer/tok_gguf.h for what a GGUF keeps of a
 * tokenizer.json). Errors: MK_ERR_IO (missing/unreadable), MK_ERR_FORMAT (malformed JSON, field
 * or metadata key, message names file and field), MK_ERR_UNSUPPORTED (e.g. model type Unigram),
 * MK_ERR_MISSING (a directory without tokenizer.json, a GGUF without a tokenizer). */
mk_status mk_tokenizer_load(const char *path, mk_tokenizer **out);
/* True if path has a tokenizer to load: a directory with tokenizer.json, a GGUF file whose
 * tokenizer.ggml.model is set and not "none", or any other file (taken as a tokenizer.json). */
bool mk_tokenizer_present(const char *path);
void mk_tokenizer_free(mk_tokenizer *tok);

/* Encodes text[0..len) (UTF-8; need not be NUL-terminated) into *ids (n_ids entries; caller
 * frees *ids). add_special applies tokenizer.json's post_processor (e.g. BOS for Llama-2), as
 * HF Tokenizer.encode(text, add_special_tokens=True) does. Invalid UTF-8 → MK_ERR_ARG with the
 * byte offset. On failure *ids is NULL and *n_ids 0. */
mk_status mk_tokenizer_encode(const mk_tokenizer *tok, const char *text, size_t len, bool add_special,
                              int32_t **ids, size_t *n_ids);

/* Decodes ids into *text (NUL-terminated, *len bytes without the NUL; caller frees), as HF
 * Tokenizer.decode(ids, skip_special_tokens) does: ids with no token are skipped, invalid UTF-8
 * produced by byte tokens becomes U+FFFD. len may be NULL. */
mk_status mk_tokenizer_decode(const mk_tokenizer *tok, const int32_t *ids, size_t n_ids, bool skip_special,
                              char **text, size_t *len);

/* Number of ids: one more than the largest id of the vocabulary and the added tokens
 * (an embedding table needs at least this many rows). */
size_t mk_tokenizer_vocab_size(const mk_tokenizer *tok);
/* The token string of id (added tokens first, then the model vocabulary; byte-level tokens are
 * in their mapped form, e.g. "Ġthe"), or NULL if id has none. *len (if len) gets its length.
 * Valid as long as tok. */
const char *mk_tokenizer_id_to_token(const mk_tokenizer *tok, int32_t id, size_t *len);
/* The id of token string token[0..len), or -1. */
int32_t mk_tokenizer_token_to_id(const mk_tokenizer *tok, const char *token, size_t len);
/* True if id is an added token marked special (skipped by decode with skip_special). */
bool mk_tokenizer_is_special(const mk_tokenizer *tok, int32_t id);

/* BOS/EOS ids from tokenizer_config.json (bos_token and eos_token, a string or {content}), else
 * config.json (bos_token_id, eos_token_id); -1 if unknown. */
int32_t mk_tokenizer_bos_id(const mk_tokenizer *tok);
int32_t mk_tokenizer_eos_id(const mk_tokenizer *tok);
/* tokenizer_config.json add_bos_token (false if absent). Informational: encode's add_special
 * follows tokenizer.json's post_processor, as HF tokenizers and transformers v5 do. */
bool mk_tokenizer_add_bos(const mk_tokenizer *tok);

/* Streaming decoder: fed one id at a time, it returns only text whose UTF-8 is complete, so
 * that the concatenation of everything returned (feeds then flush) equals mk_tokenizer_decode
 * of all ids. Same algorithm as HF tokenizers' DecodeStream. */
typedef struct mk_tokenizer_stream mk_tokenizer_stream;
mk_status mk_tokenizer_stream_new(const mk_tokenizer *tok, bool skip_special, mk_tokenizer_stream **out);
/* Feeds one id. *text and *len get the newly complete text (possibly empty, *len 0); *text stays
 * valid until the next call on this stream. */
mk_status mk_tokenizer_stream_feed(mk_tokenizer_stream *st, int32_t id, const char **text, size_t *len);
/* Returns what is still held back (e.g. an incomplete UTF-8 sequence, as U+FFFD) and resets. */
mk_status mk_tokenizer_stream_flush(mk_tokenizer_stream *st, const char **text, size_t *len);
void mk_tokenizer_stream_free(mk_tokenizer_stream *st);

#ifdef __cplusplus
}
#endif
#endif
