/* SHA-256 (FIPS 180-4), for recording which files a result was computed from. */
#ifndef MK_SHA256_H
#define MK_SHA256_H

#include "base.h"

typedef struct mk_sha256 {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t n;
} mk_sha256;

void mk_sha256_init(mk_sha256 *s);
void mk_sha256_update(mk_sha256 *s, const void *data, size_t n);
void mk_sha256_final(mk_sha256 *s, uint8_t out[32]);
/* Hex digest of a whole file into hex[65]. */
mk_status mk_sha256_file(const char *path, char hex[65]);

#endif
