/* GGUF v3 writer: metadata and tensor infos are collected in memory, then mk_gguf_writer_finish
 * writes the file atomically (a temporary file beside the target, fsync, rename). Tensor data is
 * produced on demand by a callback while writing, one tensor at a time, so peak memory is one
 * tensor's bytes.
 *
 * Ownership: the writer copies keys, names and string values; the `user` pointers handed to
 * mk_gguf_w_tensor must stay valid until finish. mk_gguf_writer_free(NULL) is a no-op; freeing an
 * unfinished writer leaves no file behind. */
#ifndef MK_GGUF_WRITE_H
#define MK_GGUF_WRITE_H

#include "format/gguf.h"

typedef struct mk_gguf_writer mk_gguf_writer;

/* Fills dst (nbytes, the tensor's data) for tensor `index` (in mk_gguf_w_tensor order). */
typedef mk_status (*mk_gguf_fill_fn)(void *user, size_t index, uint8_t *dst, size_t nbytes);

mk_status mk_gguf_writer_new(mk_gguf_writer **out, const char *path);
void mk_gguf_writer_free(mk_gguf_writer *w);

mk_status mk_gguf_w_u32(mk_gguf_writer *w, const char *key, uint32_t v);
mk_status mk_gguf_w_i32(mk_gguf_writer *w, const char *key, int32_t v);
mk_status mk_gguf_w_u64(mk_gguf_writer *w, const char *key, uint64_t v);
mk_status mk_gguf_w_f32(mk_gguf_writer *w, const char *key, float v);
mk_status mk_gguf_w_bool(mk_gguf_writer *w, const char *key, bool v);
mk_status mk_gguf_w_str(mk_gguf_writer *w, const char *key, const char *v);
mk_status mk_gguf_w_arr_str(mk_gguf_writer *w, const char *key, const char *const *v, size_t n);
/* Strings of given byte lengths (they may hold any bytes, NUL included). */
mk_status mk_gguf_w_arr_strn(mk_gguf_writer *w, const char *key, const char *const *v, const size_t *lens, size_t n);
mk_status mk_gguf_w_arr_f32(mk_gguf_writer *w, const char *key, const float *v, size_t n);
mk_status mk_gguf_w_arr_i32(mk_gguf_writer *w, const char *key, const int32_t *v, size_t n);
mk_status mk_gguf_w_arr_bool(mk_gguf_writer *w, const char *key, const bool *v, size_t n);

/* Declares a tensor: ggml type id, dims in ggml order (ne[0] = row length, a multiple of the
 * type's block size). Its bytes come from fill(user, index, ...) during finish. */
mk_status mk_gguf_w_tensor(mk_gguf_writer *w, const char *name, uint32_t ggml_type, int n_dims, const int64_t *ne,
                           mk_gguf_fill_fn fill, void *user);

/* Writes everything and renames the temporary file over the target. */
mk_status mk_gguf_writer_finish(mk_gguf_writer *w);

#endif
