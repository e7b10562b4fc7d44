/* libFuzzer target: arbitrary text as config.json must be parsed or refused, never crash. */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    mk_config cfg;
    if (mk_config_parse(&cfg, text, "fuzz/config.json") == MK_OK) mk_config_free(&cfg);
    free(text);
    return 0;
}
