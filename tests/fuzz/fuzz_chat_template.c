/* libFuzzer target for the chat-template interpreter: the input is a Jinja template (its first byte
 * picks add_generation_prompt), rendered with a fixed conversation and tool list. Any input must give
 * a rendered string or an error status with a one-line message, never a crash or a sanitizer report.
 *
 * Build and run (not part of `make`; seed it with real templates):
 *   mkdir -p build-fuzz/corpus && cp tests/fixtures/chat/features/chat_template.jinja build-fuzz/corpus/
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iinclude -Isrc \
 *     tests/fuzz/fuzz_chat_template.c src/base/base.c src/tokenizer/jinja_*.c src/tokenizer/chat_template.c \
 *     $(pkg-config --cflags --libs jansson libutf8proc) -lm -o build-fuzz/fuzz_chat_template
 *   build-fuzz/fuzz_chat_template -max_total_time=300 -timeout=10 build-fuzz/corpus
 */
#include "moekit/chat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const MSGS =
    "[{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": \"hi \\u00e9 <b>\"},"
    " {\"role\": \"assistant\", \"content\": \"<think>\\nr\\n</think>\\n\\nok\", \"tool_calls\": [{\"type\": \"function\","
    " \"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1}}}]}, {\"role\": \"tool\", \"content\": \"3\"},"
    " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"part\"}]}]";
static const char *const EXTRA =
    "{\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"description\": \"d\", \"parameters\":"
    " {\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}}, \"required\": [\"a\"]}}}],"
    " \"enable_thinking\": false}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 65536) return 0;
    char *src = malloc(size);
    if (!src) return 0;
    memcpy(src, data + 1, size - 1);
    src[size - 1] = 0;
    mk_chat_template *t = NULL;
    if (mk_chat_template_new(src, "fuzz", "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}", &t) == MK_OK) {
        char *out = NULL;
        if (mk_chat_template_render_json(t, MSGS, EXTRA, data[0] & 1, &out) == MK_OK) free(out);
        else if (strchr(mk_last_error(), '\n')) abort();
    } else if (strchr(mk_last_error(), '\n')) {
        abort();
    }
    mk_chat_template_free(t);
    free(src);
    return 0;
}
