/* libFuzzer target: arbitrary bytes as a GGUF file (as a GGUF model, and its tokenizer and chat
 * template metadata) must be read or refused, never crash. */
#include "format/gguf.h"
#include "moekit.h"
#include "tokenizer/tok_gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = memfd_create("gguf", 0);
    if (fd < 0) return 0;
    if (write(fd, data, size) != (ssize_t)size) { close(fd); return 0; }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    mk_gguf *g = NULL;
    if (mk_gguf_open(&g, path) == MK_OK) {
        /* Touch every byte of every tensor and every metadata value through the accessors. */
        volatile uint8_t acc = 0;
        for (size_t i = 0; i < g->n_tensors; i++)
            for (size_t b = 0; b < g->tensors[i].t.nbytes; b++) acc ^= ((const uint8_t *)g->tensors[i].t.data)[b];
        for (size_t i = 0; i < g->n_kv; i++) {
            const mk_gguf_kv *kv = &g->kv[i];
            int64_t v;
            double d;
            char buf[64];
            (void)mk_gguf_get_int(g, kv->key, &v);
            (void)mk_gguf_get_float(g, kv->key, &d);
            (void)mk_gguf_get_str(g, kv->key, buf, sizeof buf);
            for (uint64_t j = 0; j < kv->n && kv->type == MK_GGUF_ARRAY; j++) {
                const char *p;
                uint64_t len;
                if (mk_gguf_arr_str(kv, j, &p, &len)) for (uint64_t k = 0; k < len; k++) acc ^= (uint8_t)p[k];
                else if (mk_gguf_arr_int(kv, j, &v)) acc ^= (uint8_t)v;
            }
        }
        (void)acc;
        /* tokenizer.ggml.*: a tokenizer, then encode and decode with it */
        mk_tokenizer *tok = NULL;
        if (mk_tokenizer_from_gguf(g, &tok) == MK_OK) {
            static const char *const texts[] = {"Hello world, 123 <|im_end|>  x\n", "\xe2\x96\x81" "a b\xc3\xa9\xf0\x9f\x98\x80", ""};
            for (size_t t = 0; t < 3; t++) {
                int32_t *ids = NULL;
                size_t n = 0;
                if (mk_tokenizer_encode(tok, texts[t], strlen(texts[t]), true, &ids, &n) == MK_OK) {
                    char *out = NULL;
                    if (mk_tokenizer_decode(tok, ids, n, false, &out, NULL) == MK_OK) free(out);
                    free(ids);
                }
            }
            int32_t all[8] = {0, 1, 2, 3, 255, 256, -1, 1 << 30};
            char *out = NULL;
            if (mk_tokenizer_decode(tok, all, 8, true, &out, NULL) == MK_OK) free(out);
            mk_tokenizer_free(tok);
        }
        mk_gguf_free(g);
        /* tokenizer.chat_template with the special-token variables from the ids */
        mk_chat_template *tpl = NULL;
        if (mk_chat_template_load(path, NULL, &tpl) == MK_OK) mk_chat_template_free(tpl);
        /* The same bytes as a model: metadata → config, tensors → HF-named views, shape checks. */
        mk_model *m = NULL;
        if (mk_model_load(&m, path) == MK_OK) mk_model_free(m);
    }
    close(fd);
    return 0;
}
