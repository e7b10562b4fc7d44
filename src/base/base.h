/* Internal base utilities shared by every module: error recording, checked allocation,
 * file mapping, timing. Depends on nothing else of ours. */
#ifndef MK_BASE_INTERNAL_H
#define MK_BASE_INTERNAL_H

#include "moekit/base.h"

#include <stdbool.h>
#include <stdio.h>

#if defined(__GNUC__)
#define MK_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define MK_UNUSED __attribute__((unused))
#else
#define MK_PRINTF(a, b)
#define MK_UNUSED
#endif

#define MK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MK_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Records a formatted one-line message for mk_last_error() and returns s, so that callers write
 *   return mk_err(MK_ERR_FORMAT, "%s: tensor '%s': offset past end of file", path, name);
 * Convention: the message starts with the file (or object) it concerns, then the field. */
mk_status mk_err(mk_status s, const char *fmt, ...) MK_PRINTF(2, 3);
/* Prepends "prefix: " to the current message (adds context while unwinding). Returns s. */
mk_status mk_err_prefix(mk_status s, const char *fmt, ...) MK_PRINTF(2, 3);
void mk_err_clear(void);

/* Allocation. All return NULL on failure (and record MK_ERR_NOMEM) or on size overflow. */
void *mk_malloc(size_t n);
void *mk_calloc(size_t count, size_t size);
void *mk_realloc(void *p, size_t n);
/* 64-byte-aligned allocation for SIMD buffers; release with mk_free_aligned. */
void *mk_malloc_aligned(size_t n);
void mk_free_aligned(void *p);
char *mk_strdup(const char *s);
/* a*b without overflow; false on overflow. */
static inline bool mk_mul_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool mk_add_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* A read-only mapping of a whole file. */
typedef struct mk_map {
    const uint8_t *data; /* NULL for an empty file */
    size_t size;
    char *path;          /* owned copy, for error messages */
} mk_map;
mk_status mk_map_open(mk_map *m, const char *path);
void mk_map_close(mk_map *m);
/* Advise the kernel that [off, off+len) will (not) be needed soon; no-op on failure. */
void mk_map_advise(const mk_map *m, size_t off, size_t len, bool willneed);

/* The same for any mapped range [p, p+len) (widened to whole pages). Dropping pages of a
 * read-only file mapping is safe: they are read back from the file on the next access. */
void mk_advise_range(const void *p, size_t len, bool willneed);

/* Reads a whole (small) file into a NUL-terminated buffer the caller frees. */
mk_status mk_read_file(const char *path, char **out, size_t *len);

/* Reads a file of whitespace-separated non-negative token ids into a malloc'd array. An empty
 * file or a malformed entry is an error naming the file and the entry's position. */
mk_status mk_read_ids_file(const char *path, int32_t **ids, size_t *n);

/* Joins a directory and a file name into a new string (caller frees). */
char *mk_path_join(const char *dir, const char *name);
bool mk_file_exists(const char *path);

/* Monotonic wall-clock time in seconds. */
double mk_now(void);

#endif
