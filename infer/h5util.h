/*
 * h5util.h: small helpers over the HDF5 C API (1.10) shared by the weight loader/writer
 * (infer/weights_h5.c), `simtune inspect` and the checkpoint writer (train/checkpoint.c).
 *
 * What they handle, so callers do not have to:
 *   - HDF5's automatic error printing is switched off (st_h5_quiet); failures become -1 with
 *     st_error_set("<file>: <object>: <problem>") and, where HDF5 reported one, its innermost
 *     message appended (e.g. "truncated file: eof = ...").
 *   - string-list attributes in every shape Keras/h5py writes (resnet-weights-hdf5.md 1.2):
 *     fixed-length NULLPAD (h5py 2; no NUL at full length), variable-length (h5py 3), split into
 *     `name0`, `name1`, ... when larger than 64512 bytes, and the float64 empty array (dims (0))
 *     that stands for an empty list.
 *   - scalar string / number attributes, dataset shapes, contiguous float datasets whose names
 *     contain '/' (intermediate groups created), and the atomic commit of a written file.
 *   - write errors: the message carries the OS reason, and the file is abandoned so that no
 *     later HDF5 call (or the library's exit handler) writes to the failing disk again.
 *
 * Ownership: st_strlist items and strings returned through char ** are malloc'ed and belong to
 * the caller (st_strlist_free / free). hid_t handles returned are the caller's to close.
 * Every function taking `path` uses it only for messages.
 */
#ifndef ST_H5UTIL_H
#define ST_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>

/* Attribute lists larger than this are split into name0, name1, ... (Keras' HDF5_OBJECT_HEADER_LIMIT). */
#define ST_H5_ATTR_LIMIT 64512

/* Turn off HDF5's automatic error-stack printing for this process (idempotent). */
void st_h5_quiet(void);

/* Innermost message on the current HDF5 error stack ("" when empty), copied into buf. */
const char *st_h5_last_error(char *buf, size_t size);

/* Open an existing file read-only after checking that it exists, is not empty and carries the
 * HDF5 signature. Returns a file id, or -1 with st_error_set naming the file and the problem. */
hid_t st_h5_open_read(const char *path);

/* Create `tmp_path` (truncating) for an atomic write; -1 with st_error_set on failure. */
hid_t st_h5_create(const char *tmp_path);

/* Flush and close `file` (written to tmp_path), then st_file_commit (data/base/fileio.h): fsync,
 * rename over final_path, fsync the directory. On any failure the file is discarded as by
 * st_h5_discard; -1 with st_error_set naming final_path and the OS reason
 * ("No space left on device"). */
int st_h5_commit_atomic(hid_t file, const char *tmp_path, const char *final_path);

/* The first half of st_h5_commit_atomic: flush and close, leaving tmp_path complete but not
 * renamed (for a check before st_file_commit); on failure discarded, -1. */
int st_h5_close_written(hid_t file, const char *tmp_path, const char *final_path);

/* Give up a file being written after an error: close it without writing anything more to disk
 * (a failed flush at close would leave HDF5 1.10 with a freed file that its atexit handler
 * closes again: SIGSEGV) and remove tmp_path. Use instead of H5Fclose + unlink. */
void st_h5_discard(hid_t file, const char *tmp_path);

typedef struct st_strlist {
    char **items; /* n NUL-terminated strings */
    int n;
} st_strlist;

void st_strlist_free(st_strlist *list);

/* Read string-list attribute `name` of obj (or its chunks name0, name1, ...).
 * Returns 1 when read (n may be 0 for an empty list), 0 when absent, -1 on a malformed
 * attribute (st_error_set "<path>: <where>: attribute '<name>': ..."). */
int st_h5_read_strlist(hid_t obj, const char *name, st_strlist *out, const char *path,
                       const char *where);

/* Write a string list the way Keras' writer under h5py 2 does: fixed-length NULLPAD strings of
 * the longest item's size, chunked into name0.. when over ST_H5_ATTR_LIMIT bytes, and an empty
 * float64 array of dims (0) for n == 0. */
int st_h5_write_strlist(hid_t obj, const char *name, const char *const *items, int n,
                        const char *path, const char *where);

/* Scalar (or 1-element) string attribute, fixed or variable length: 1 read, 0 absent, -1 error. */
int st_h5_read_string_attr(hid_t obj, const char *name, char **out, const char *path,
                           const char *where);
/* Scalar variable-length ASCII string attribute, like h5py writes a Python bytes value. */
int st_h5_write_string_attr(hid_t obj, const char *name, const char *value, const char *path,
                            const char *where);

/* Scalar numeric attribute read as double: 1 read, 0 absent, -1 error (not a number / not scalar). */
int st_h5_read_double_attr(hid_t obj, const char *name, double *out, const char *path,
                           const char *where);
int st_h5_write_double_attr(hid_t obj, const char *name, double value, const char *path,
                            const char *where);
int st_h5_write_long_attr(hid_t obj, const char *name, long long value, const char *path,
                          const char *where);

/* Shape of dataset `name` under loc: rank (<= max_rank) and dims; -1 with st_error_set when
 * the dataset is missing, not numeric, or of higher rank. */
int st_h5_dataset_shape(hid_t loc, const char *name, int *rank, long long *dims, int max_rank,
                        const char *path, const char *where);

/* Read a whole numeric dataset converted to float32 into out (capacity numel floats, which must
 * equal the dataset's element count); -1 with st_error_set otherwise. */
int st_h5_read_floats(hid_t loc, const char *name, float *out, size_t numel, const char *path,
                      const char *where);

/* Write a contiguous dataset (row-major dims) of float32 / int32 / uint64 values; '/' in name
 * creates intermediate groups. rank 0 is not used: pass rank 1, dims {n}. */
int st_h5_write_floats(hid_t loc, const char *name, const float *data, int rank,
                       const long long *dims, const char *path);
int st_h5_write_ints(hid_t loc, const char *name, const int *data, size_t n, const char *path);
int st_h5_write_u64s(hid_t loc, const char *name, const unsigned long long *data, size_t n,
                     const char *path);
/* Read 1-D int32 / uint64 datasets of exactly n elements (n from st_h5_dataset_shape). */
int st_h5_read_ints(hid_t loc, const char *name, int *out, size_t n, const char *path);
int st_h5_read_u64s(hid_t loc, const char *name, unsigned long long *out, size_t n,
                    const char *path);

/* 1 when loc has a link `name` (a single path component or a path whose parents exist), else 0. */
int st_h5_has(hid_t loc, const char *name);

#endif
