/* GGUF v2/v3 reader (research/formats.md §12; ggml docs/gguf.md), memory-mapped.
 *
 * Layout: "GGUF" u32 version, u64 tensor_count, u64 kv_count, kv[] (string key, u32 type, value),
 * tensor_info[] (string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset), padding to
 * general.alignment (default 32), then the data section; tensor i lives at data_offset + offset.
 * Every count, length, type, dimension, offset and size is checked against the file (with
 * overflow checks) before it is used; a failure leaves a one-line message naming the file and
 * the field (mk_last_error()). Strings and arrays are views into the mapping.
 *
 * Ownership: mk_gguf_open returns a reader the caller frees with mk_gguf_free; every pointer it
 * hands out (keys, string values, tensor data) lives as long as the reader. */
#ifndef MK_GGUF_H
#define MK_GGUF_H

#include "tensor/tensor.h"

#define MK_GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define MK_GGUF_DEFAULT_ALIGNMENT 32

typedef enum mk_gguf_type {
    MK_GGUF_U8 = 0, MK_GGUF_I8 = 1, MK_GGUF_U16 = 2, MK_GGUF_I16 = 3, MK_GGUF_U32 = 4, MK_GGUF_I32 = 5,
    MK_GGUF_F32 = 6, MK_GGUF_BOOL = 7, MK_GGUF_STRING = 8, MK_GGUF_ARRAY = 9, MK_GGUF_U64 = 10,
    MK_GGUF_I64 = 11, MK_GGUF_F64 = 12, MK_GGUF_TYPE_COUNT
} mk_gguf_type;

typedef struct mk_gguf_kv {
    char *key;                /* owned, NUL-terminated */
    mk_gguf_type type;
    mk_gguf_type arr_type;    /* element type when type == ARRAY */
    uint64_t n;               /* array element count (1 for a scalar or a string) */
    const uint8_t *data;      /* scalar bytes / string bytes / first array element, in the mapping */
    uint64_t str_len;         /* STRING: byte length (not NUL-terminated) */
    const uint8_t **strs;     /* ARRAY of STRING: owned table of n pointers to each element's u64 length */
} mk_gguf_kv;

typedef struct mk_gguf_tensor {
    char *name;               /* owned */
    uint32_t ggml_type;
    uint32_t n_dims;
    int64_t ne[MK_MAX_DIMS];  /* ggml order: ne[0] fastest (= the row length) */
    uint64_t offset;          /* relative to the data section */
    mk_tensor t;              /* view: row-major shape (ne reversed), data, nbytes; t.dtype =
                                 MK_DT_COUNT when moekit has no kernels for the ggml type */
} mk_gguf_tensor;

typedef struct mk_gguf {
    mk_map map;
    uint32_t version;
    size_t alignment;
    size_t data_offset;       /* start of the data section in the file */
    mk_gguf_kv *kv;           /* in file order */
    size_t n_kv;
    mk_gguf_tensor *tensors;  /* in file order */
    size_t n_tensors;
} mk_gguf;

mk_status mk_gguf_open(mk_gguf **out, const char *path);
void mk_gguf_free(mk_gguf *g);
/* True if the file starts with the GGUF magic (no other check). */
bool mk_gguf_sniff(const char *path);

const mk_gguf_kv *mk_gguf_find(const mk_gguf *g, const char *key);
const mk_gguf_tensor *mk_gguf_find_tensor(const mk_gguf *g, const char *name);

/* Typed getters. Absent: MK_ERR_MISSING ("<file>: metadata key '<key>' is missing"); wrong type
 * or out of range: MK_ERR_FORMAT. Integers accept any integer type; floats any number type. */
mk_status mk_gguf_get_int(const mk_gguf *g, const char *key, int64_t *out);
mk_status mk_gguf_get_float(const mk_gguf *g, const char *key, double *out);
mk_status mk_gguf_get_bool(const mk_gguf *g, const char *key, bool *out);
/* A string value as a NUL-terminated copy in buf (truncation is an error). */
mk_status mk_gguf_get_str(const mk_gguf *g, const char *key, char *buf, size_t cap);
/* Element i of an array of strings. */
bool mk_gguf_arr_str(const mk_gguf_kv *kv, uint64_t i, const char **p, uint64_t *len);
/* Element i of an array of numbers, as int64 / double; false if not such an array or i >= n. */
bool mk_gguf_arr_int(const mk_gguf_kv *kv, uint64_t i, int64_t *out);
bool mk_gguf_arr_float(const mk_gguf_kv *kv, uint64_t i, double *out);

/* ggml type ids ↔ moekit dtypes. */
const char *mk_ggml_type_name(uint32_t t);      /* "Q4_K", or NULL for an unknown id */
bool mk_ggml_type_size(uint32_t t, uint32_t *block_elems, uint32_t *block_bytes); /* false if unknown */
bool mk_ggml_to_dtype(uint32_t t, mk_dtype *out); /* false when moekit has no kernels for it */
bool mk_dtype_to_ggml(mk_dtype dt, uint32_t *out);
const char *mk_gguf_type_name(uint32_t t);      /* "u32", "string", ... */

#endif
