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

/* A read-only mapping of a whole file. Files of at least MK_MAP_ALIGN bytes are mapped at an
 * MK_MAP_ALIGN-aligned address with the rest of the last MK_MAP_ALIGN held too (span), so
 * that mk_map_make_resident can put huge pages under the same addresses. */
#define MK_MAP_ALIGN ((size_t)2 << 20)
typedef struct mk_map {
    const uint8_t *data; /* NULL for an empty file */
    size_t size;
    size_t span;         /* bytes of address space at data the map owns (>= size) */
    bool resident;       /* the bytes are a private copy in memory, not a file mapping */
    char *path;          /* owned copy, for error messages */
} mk_map;
mk_status mk_map_open(mk_map *m, const char *path);
void mk_map_close(mk_map *m);
/* Replaces the file mapping by a private in-memory copy of the file at the same addresses
 * (pointers into the map stay valid), backed by transparent huge pages where the kernel has
 * them: streaming the weights then takes a TLB miss per 2 MiB instead of per 4 KiB page.
 * Sets *done to whether it made the copy: it does not for a file under MK_MAP_ALIGN bytes, on
 * a kernel without transparent huge pages or with them off, or when the file is larger than
 * the memory available. On an error the mapping is left as it was. */
mk_status mk_map_make_resident(mk_map *m, bool *done);
/* Advise the kernel that [off, off+len) will (not) be needed soon; no-op on failure and on a
 * resident map (dropping its pages would zero them). */
void mk_map_advise(const mk_map *m, size_t off, size_t len, bool willneed);

/* The same for any mapped range [p, p+len) (widened to whole pages). Dropping pages of a
 * read-only file mapping is safe: they are read back from the file on the next access. */
void mk_advise_range(const void *p, size_t len, bool willneed);

/* Writes a whole file atomically: a unique temporary file beside it, fsync, rename onto path,
 * fsync of the folder. On failure path is untouched and no temporary file is left. */
mk_status mk_write_file_atomic(const char *path, const void *data, size_t len);

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
