/* libFuzzer target: arbitrary bytes as a stored-logits file (--kld-logits) must be validated or
 * refused, never crash. */
#include "eval/eval_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mk_logits_header h;
    (void)mk_logits_validate(data, size, "fuzz.logits", &h);
    return 0;
}
