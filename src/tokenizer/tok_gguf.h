/* Tokenizers in GGUF metadata: llama.cpp's tokenizer.* keys (gguf-py constants.Keys.Tokenizer,
 * llama-vocab.cpp), read into an mk_tokenizer and written from one.
 *
 * Two llama.cpp vocabulary types:
 *   "gpt2"  byte-level BPE (Qwen, OLMoE, DeepSeek-V3, GPT-OSS, the testbed): tokens in their
 *           byte-mapped form ("Ġthe"), tokenizer.ggml.merges ("a b", rank = index), and
 *           tokenizer.ggml.pre naming the pre-tokenizer. A name stands for the Split regexes,
 *           the normalizer (NFC or none) and ignore_merges of the tokenizer.json it came from
 *           (table in tok_gguf.c: qwen2, llama-bpe, smaug-bpe, olmo, gpt-2, deepseek-v3, gpt-4o,
 *           default).
 *   "llama" SentencePiece-style BPE with byte fallback (Llama-2, Mixtral): tokens and scores; the
 *           merges are rebuilt from the scores (every split of a normal token into two tokens,
 *           ranked by the token's score, as transformers builds tokenizer.json from a
 *           SentencePiece model). The writer derives scores from tokenizer.json's merges (a
 *           token's score is minus the rank of the first merge that makes it).
 * Token types: 1 normal, 2 unknown, 3 control (special added token), 4 user-defined (other added
 * token), 5 unused (padding, "[PAD<id>]"), 6 byte (<0xNN> of llama vocabularies).
 * A GGUF does not carry: added-token lstrip/rstrip/single_word (read back false), normalizers
 * other than NFC (gpt2) and the ▁ prefix (llama), continuing_subword_prefix/end_of_word_suffix,
 * post-processors other than one BOS before and one EOS after. The writer reports what it could
 * not store in info->warning. */
#ifndef MK_TOK_GGUF_H
#define MK_TOK_GGUF_H

#include "format/gguf.h"
#include "format/gguf_write.h"
#include "moekit/tokenizer.h"

/* Builds a tokenizer from g's metadata. Every array type, count, id and merge is checked; errors
 * are one line naming the file and the key (MK_ERR_FORMAT), MK_ERR_MISSING when the file has no
 * tokenizer (no tokenizer.ggml.model, or "none"), MK_ERR_UNSUPPORTED for other vocabulary types
 * and unknown tokenizer.ggml.pre names. */
mk_status mk_tokenizer_from_gguf(const mk_gguf *g, mk_tokenizer **out);

/* True if g has a tokenizer to read (tokenizer.ggml.model present and not "none"). */
bool mk_tokenizer_gguf_present(const mk_gguf *g);

typedef struct mk_tok_gguf_info {
    char model[8];        /* "gpt2", "llama" or "none" */
    char pre[24];         /* gpt2: the tokenizer.ggml.pre written */
    size_t n_tokens;      /* tokenizer.ggml.tokens entries (the model's vocab size) */
    size_t n_merges;      /* gpt2: tokenizer.ggml.merges entries */
    size_t n_templates;   /* chat templates written */
    char warning[512];    /* not empty: what the GGUF could not carry (one line) */
} mk_tok_gguf_info;

/* Writes the tokenizer of model_path (a model directory with tokenizer.json, or a GGUF file with
 * one) into w as llama.cpp's keys, the token list padded to n_vocab, with its bos/eos/unknown/
 * padding ids, add_bos/add_eos, and its chat templates (tokenizer.chat_template, and
 * tokenizer.chat_template.<name> for named ones). A model without a tokenizer, or one no GGUF
 * vocabulary type can hold, gets tokenizer.ggml.model = "none" (the latter with a warning).
 * A tokenizer moekit cannot read (MK_ERR_UNSUPPORTED from mk_tokenizer_load, e.g. Unigram) is not
 * written either, with a warning. info may be NULL. Errors: the tokenizer is malformed (the
 * loader's message), it has more ids than n_vocab, or a chat template file cannot be read. */
mk_status mk_tokenizer_gguf_write(mk_gguf_writer *w, const char *model_path, int64_t n_vocab, mk_tok_gguf_info *info);

#endif
