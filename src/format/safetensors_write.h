/* safetensors writer, streamed: the caller declares every tensor (name, dtype, shape) up front,
 * then hands over the tensors' bytes in declaration order, in pieces of any size, so a model of
 * many GB never has to sit in memory. The file is written to a temporary name beside the target
 * and only on mk_st_writer_close (after checking that every declared byte arrived, fsync) is it
 * renamed onto the target: the target name never holds a partial file.
 *
 * Ownership: the writer copies the declarations; mk_st_writer_close and mk_st_writer_abort free
 * the writer (abort, or a failed close, removes the temporary file). abort(NULL) is a no-op. */
#ifndef MK_SAFETENSORS_WRITE_H
#define MK_SAFETENSORS_WRITE_H

#include "tensor/tensor.h"

typedef struct mk_st_decl {
    const char *name;
    mk_dtype dtype;
    int ndim;
    int64_t shape[MK_MAX_DIMS];
} mk_st_decl;

typedef struct mk_st_writer mk_st_writer;

/* Declares n tensors (names unique) and writes the header. metadata: optional NULL-terminated
 * list of key, value string pairs for "__metadata__" (NULL: {"format": "pt"}). */
mk_status mk_st_writer_open(mk_st_writer **out, const char *path, const mk_st_decl *decls, size_t n,
                            const char *const *metadata);
/* Appends the next nbytes of tensor data (tensors in declaration order, each dtype size ×
 * shape bytes, little-endian). Writing past the declared total is an error. */
mk_status mk_st_writer_write(mk_st_writer *w, const void *data, size_t nbytes);
/* Bytes still expected before close. */
size_t mk_st_writer_remaining(const mk_st_writer *w);
/* Checks completeness, fsyncs, renames the temporary file onto the path and fsyncs the folder. */
mk_status mk_st_writer_close(mk_st_writer *w);
void mk_st_writer_abort(mk_st_writer *w);


#endif
