/* libFuzzer target: arbitrary bytes as a GGUF file (and as a GGUF model) must be read or refused, never crash. */
#include "format/gguf.h"
#include "moekit.h"

#include <stdio.h>
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
        mk_gguf_free(g);
        /* The same bytes as a model: metadata → config, tensors → HF-named views, shape checks. */
        mk_model *m = NULL;
        if (mk_model_load(&m, path) == MK_OK) mk_model_free(m);
    }
    close(fd);
    return 0;
}
