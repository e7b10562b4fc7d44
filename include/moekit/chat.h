/* moekit chat templates API (see src/tokenizer/chat_template.c).
 *
 * A chat template is the Jinja program a model ships (tokenizer_config.json "chat_template", or a
 * chat_template.jinja file beside it) that turns a list of messages into the prompt text. moekit
 * interprets the subset of Jinja that real templates use, in the environment HF transformers renders
 * them with (trim_blocks, lstrip_blocks, loop controls, raise_exception, strftime_now, a tojson that
 * does not escape HTML), so that the rendered text is byte-identical to apply_chat_template(...,
 * tokenize=False). strftime_now() reads the clock, or SOURCE_DATE_EPOCH (seconds, UTC) where that is
 * set: gpt-oss's template dates its system message, and a fixed epoch makes a prompt reproducible.
 *
 * Ownership: mk_chat_template_* objects are created by load/new and released by free (free(NULL) is a
 * no-op). Rendered strings are malloc'd and freed by the caller with free(). A template is immutable
 * after creation; rendering it from several threads at once is safe. */
#ifndef MOEKIT_CHAT_H
#define MOEKIT_CHAT_H
#include "moekit/base.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mk_chat_template mk_chat_template;

/* One message: role ("system", "user", "assistant", "tool", ...) and plain-text content. */
typedef struct mk_chat_message {
    const char *role;
    const char *content;
} mk_chat_message;

/* Loads the chat template of a model directory: chat_template.jinja if present, else the
 * "chat_template" of tokenizer_config.json, which is a string or a list of {"name", "template"}
 * objects. name picks one of a list (NULL: "default", or the only one); a named template may also be
 * a file additional_chat_templates/<name>.jinja (transformers' layout). The special-token variables
 * (bos_token, eos_token, unk_token, sep_token, pad_token, cls_token, mask_token) come from
 * tokenizer_config.json, where each is a string, a {"content": ...} object, or null (then unset).
 * Errors: MK_ERR_IO/MK_ERR_FORMAT (files), MK_ERR_MISSING (no template, or no template of that name),
 * MK_ERR_FORMAT (Jinja syntax error), MK_ERR_UNSUPPORTED (a construct moekit does not interpret).
 * model_dir may also be a GGUF file: its tokenizer.chat_template (a named one:
 * tokenizer.chat_template.<name>), with the special-token variables taken from the strings of its
 * tokenizer.ggml.{bos,eos,unknown,seperator,padding,cls,mask}_token_id in tokenizer.ggml.tokens. */
mk_status mk_chat_template_load(const char *model_dir, const char *name, mk_chat_template **out);

/* Compiles a template from its source. label names it in error messages (NULL: "chat template").
 * special_tokens_json, if not NULL, is a JSON object whose members become template variables
 * (e.g. {"bos_token": "<s>", "eos_token": "</s>"}). */
mk_status mk_chat_template_new(const char *source, const char *label, const char *special_tokens_json,
                               mk_chat_template **out);

/* Renders messages into a new string (*out, caller frees). add_generation_prompt as in transformers.
 * The template sees messages, add_generation_prompt, tools and documents (none unless given), and the
 * special tokens, as apply_chat_template passes them.
 * Errors: MK_ERR_ARG where transformers would raise too: the template rejects the conversation
 * (raise_exception), uses an undefined value, or applies an operation to the wrong type; the message
 * names the template and line. MK_ERR_UNSUPPORTED for constructs moekit does not interpret and for
 * renders past the limits (10M loop iterations, 256 MiB of text). */
mk_status mk_chat_template_render(const mk_chat_template *t, const mk_chat_message *msgs, size_t n_msg,
                                  bool add_generation_prompt, char **out);

/* The general form: messages_json is a JSON array of message objects (any fields: role, content,
 * tool_calls, reasoning_content, ...); extra_json, if not NULL, is a JSON object of further template
 * variables (tools, documents, enable_thinking, ...). Messages are prepared as apply_chat_template
 * does: null-valued fields are dropped and reasoning fields are aliased. */
mk_status mk_chat_template_render_json(const mk_chat_template *t, const char *messages_json,
                                       const char *extra_json, bool add_generation_prompt, char **out);

/* The template's Jinja source and label (owned by t). */
const char *mk_chat_template_source(const mk_chat_template *t);
const char *mk_chat_template_label(const mk_chat_template *t);
/* A special token's text (e.g. "eos_token"), or NULL if unset. Owned by t. */
const char *mk_chat_template_token(const mk_chat_template *t, const char *name);

void mk_chat_template_free(mk_chat_template *t);

#ifdef __cplusplus
}
#endif
#endif
