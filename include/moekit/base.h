/* moekit base: status codes and error reporting. */
#ifndef MOEKIT_BASE_H
#define MOEKIT_BASE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MK_VERSION "0.1.0"

typedef enum mk_status {
    MK_OK = 0,
    MK_ERR_IO,          /* a file could not be opened, read, mapped or written */
    MK_ERR_FORMAT,      /* a file's content is malformed (bad header, bad JSON, out-of-bounds offset) */
    MK_ERR_UNSUPPORTED, /* well-formed but not supported (architecture, dtype, construct) */
    MK_ERR_SHAPE,       /* a tensor's shape does not match what the config implies */
    MK_ERR_MISSING,     /* a required tensor, field or file is absent */
    MK_ERR_ARG,         /* a caller passed an invalid argument */
    MK_ERR_NOMEM,       /* an allocation failed */
    MK_ERR_INTERNAL,    /* a bug: an invariant did not hold */
    MK_ERR_NONFINITE    /* a computed value is NaN or infinite (non-finite weights or inputs) */
} mk_status;

/* The message of the last failure on this thread ("" if none). */
const char *mk_last_error(void);
/* A short fixed name for a status ("io", "format", ...). */
const char *mk_status_name(mk_status s);
/* Monotonic wall-clock time in seconds. */
double mk_wall(void);

#ifdef __cplusplus
}
#endif
#endif
