/* libFuzzer target: arbitrary bytes as a safetensors file must be read or refused, never crash. */
#include "format/safetensors.h"

#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = memfd_create("st", 0);
    if (fd < 0) return 0;
    if (write(fd, data, size) != (ssize_t)size) { close(fd); return 0; }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    mk_st_set *s = NULL;
    if (mk_st_open_file(&s, path) == MK_OK) {
        /* Touch every byte of every tensor: views must lie inside the mapping. */
        volatile uint8_t acc = 0;
        for (size_t i = 0; i < s->n_entries; i++)
            for (size_t b = 0; b < s->entries[i].t.nbytes; b++) acc ^= ((const uint8_t *)s->entries[i].t.data)[b];
        (void)acc;
        mk_st_free(s);
    }
    close(fd);
    return 0;
}
