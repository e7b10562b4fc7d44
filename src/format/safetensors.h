/* safetensors reader: one file or a sharded set (model.safetensors.index.json), memory-mapped.
 * Every header field is checked against the file: offsets (with overflow checks) against the
 * byte buffer, dtype names, shape × dtype size against the byte length, duplicate names.
 * Tensors are handed out as views into the mappings; they live as long as the set. The format
 * does not promise alignment: a tensor whose data is not aligned to its element size is copied
 * once into an aligned buffer owned by the set (real files pad their header, so this is rare). */
#ifndef MK_SAFETENSORS_H
#define MK_SAFETENSORS_H

#include "tensor/tensor.h"

typedef struct mk_st_entry {
    char *name;
    mk_tensor t;      /* view into the file's mapping */
    int file;         /* index into the set's files */
    size_t offset;    /* absolute byte offset of the data in that file */
    char *src_name;   /* tables built from other formats: the tensor's name there (GGUF), else NULL */
} mk_st_entry;

typedef struct mk_st_set {
    mk_map *files;
    int n_files;
    mk_st_entry *entries; /* sorted by name */
    size_t n_entries;
    char *source;         /* the directory or file it was opened from, for messages */
    void **owned;         /* aligned copies of tensors whose bytes are misaligned in the file */
    size_t n_owned;
} mk_st_set;

/* Opens a model directory: model.safetensors.index.json if present, else model.safetensors. */
mk_status mk_st_open_dir(mk_st_set **out, const char *dir);
/* Opens one safetensors file. */
mk_status mk_st_open_file(mk_st_set **out, const char *path);
void mk_st_free(mk_st_set *s);

/* Tables built by other readers (GGUF → HF names): an empty set naming `file` in messages, whose
 * entries are views into memory the caller keeps alive as long as the set. mk_st_add copies name
 * and src_name (may be NULL); mk_st_finish sorts and rejects duplicate names. */
mk_status mk_st_new_table(mk_st_set **out, const char *source, const char *file);
mk_status mk_st_add(mk_st_set *s, const char *name, const mk_tensor *t, size_t offset, const char *src_name);
mk_status mk_st_finish(mk_st_set *s);
/* Drops the entry named `name` (its bytes stay mapped; views into them stay valid); false if absent.
 * The order is kept: no mk_st_finish is needed. */
bool mk_st_remove(mk_st_set *s, const char *name);

/* NULL if absent. */
const mk_st_entry *mk_st_find(const mk_st_set *s, const char *name);
/* Name of the file holding an entry (for error messages). */
const char *mk_st_file_of(const mk_st_set *s, const mk_st_entry *e);

#endif
