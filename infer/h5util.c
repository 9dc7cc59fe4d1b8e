/*
 * h5util.c: HDF5 helpers (see h5util.h for the contract). Every failure path closes what it
 * opened and sets a message "<file>: <object>: <problem>"; nothing here exits on bad input.
 */
#define _GNU_SOURCE /* memfd_create, fallocate; before any header */
#include "h5util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/base/fileio.h"
#include "../kernels/check.h"

void st_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* Bound on the items and item size of a string-list attribute: Keras' lists fit in 64 KB
 * chunks; a corrupt header claiming more is refused instead of allocated. */
#define ST_H5_MAX_LIST (1 << 20)

typedef struct {
    char *buf;
    size_t size;
} error_sink;

/* H5E_WALK_UPWARD visits the innermost (most specific) entry first: keep that one. */
static herr_t keep_innermost(unsigned n, const H5E_error2_t *err, void *data) {
    error_sink *sink = data;
    if (n == 0 && err->desc) snprintf(sink->buf, sink->size, "%s", err->desc);
    return 0;
}

const char *st_h5_last_error(char *buf, size_t size) {
    error_sink sink = {buf, size};
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, keep_innermost, &sink);
    return buf;
}

hid_t st_h5_open_read(const char *path) {
    st_h5_quiet();
    struct stat st;
    if (stat(path, &st) != 0)
        return st_error_set("%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return st_error_set("%s: is a directory, not an HDF5 file", path);
    if (st.st_size == 0)
        return st_error_set("%s: empty file (0 bytes); HINT: the download or save was "
                            "interrupted, fetch or write it again",
                            path);
    if (H5Fis_hdf5(path) <= 0)
        return st_error_set("%s: not an HDF5 file (no HDF5 signature); HINT: expected a Keras "
                            ".h5 weight file, a tools/torchvision2h5.py conversion or a simtune "
                            "checkpoint",
                            path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        char why[512];
        st_h5_last_error(why, sizeof why);
        return st_error_set("%s: cannot open as HDF5 (%s); HINT: the file is truncated or "
                            "corrupt, fetch or write it again",
                            path, why[0] ? why : "unknown HDF5 error");
    }
    return f;
}

hid_t st_h5_create(const char *tmp_path) {
    st_h5_quiet();
    /* No sieve buffer: small datasets are then written in H5Dwrite, where a failure can still be
     * handled (divert_writes), not later in a close that cannot fail safely. */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_sieve_buf_size(fapl, 0);
    errno = 0;
    hid_t f = H5Fcreate(tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    int err = errno;
    H5Pclose(fapl);
    if (f < 0) {
        char why[512];
        if (err != 0) snprintf(why, sizeof why, "%s", strerror(err));
        else if (!st_h5_last_error(why, sizeof why)[0]) snprintf(why, sizeof why, "unknown HDF5 error");
        unlink(tmp_path);
        return st_error_set("%s: cannot create: %s", tmp_path, why);
    }
    return f;
}

/* The reason a write failed: the OS's when HDF5 passed on an errno (ENOSPC, EIO, EDQUOT...),
 * else HDF5's innermost message. Call right after the failing call, before any other HDF5 call
 * clears the error stack. */
static const char *write_failure(int err, char *buf, size_t size) {
    if (err != 0) snprintf(buf, size, "%s", strerror(err));
    else if (!st_h5_last_error(buf, size)[0]) snprintf(buf, size, "unknown HDF5 error");
    return buf;
}

/* The descriptor of an open file's sec2 driver (the default driver), or NULL. */
static int *file_descriptor(hid_t file) {
    int *fd = NULL;
    if (H5Fget_vfd_handle(file, H5P_DEFAULT, (void **)&fd) < 0 || !fd || *fd < 0) return NULL;
    return fd;
}

/* HDF5 1.10 frees a file whose close-time flush fails yet keeps its id; the library's atexit
 * handler then closes that id again and crashes (SIGSEGV in H5F__close_cb, issue 13). A failed
 * flush also leaves its metadata cache unable to flush ever again ("slist already enabled?").
 * So HDF5 must never see a metadata flush fail: once a raw-data write has failed, the file is
 * abandoned and its descriptor pointed at an anonymous memory file, where every later flush,
 * and so the close, succeeds without touching the full disk. */
static void divert_writes(hid_t obj) {
    hid_t file = H5Iget_file_id(obj);
    if (file < 0) return;
    int *fd = file_descriptor(file);
    int mem = fd ? memfd_create("simtune-discarded-h5", MFD_CLOEXEC) : -1;
    if (mem >= 0) {
        dup2(mem, *fd);
        close(mem);
    }
    H5Fclose(file); /* the reference H5Iget_file_id added */
}

/* Room the final metadata flush may need beyond the file's current end: a few object headers
 * and heaps; the file's own blocks are reserved in full. */
#define FLUSH_RESERVE_MARGIN (1 << 20)

/* Allocate the blocks of the whole file (and the margin) before HDF5 flushes its metadata into
 * them, so that a full disk shows here, as ENOSPC, and never inside the flush. 0 reserved, or
 * reservation unsupported by the file system (then the flush goes ahead unprotected); -1 with
 * errno when the disk has no room. *reserved_end: the end of the reservation (0 none). */
static int reserve_for_flush(hid_t file, off_t *reserved_end) {
    *reserved_end = 0;
    hsize_t size = 0;
    int *fd = file_descriptor(file);
    if (!fd || H5Fget_filesize(file, &size) < 0) return 0;
    off_t end = (off_t)size + FLUSH_RESERVE_MARGIN;
    if (fallocate(*fd, FALLOC_FL_KEEP_SIZE, 0, end) == 0) {
        *reserved_end = end;
        return 0;
    }
    return errno == ENOSPC || errno == EDQUOT || errno == EFBIG ? -1 : 0;
}

/* Give back the reserved blocks past the file's end once it is closed. */
static void release_reserve(const char *tmp_path, off_t reserved_end) {
    int fd = reserved_end > 0 ? open(tmp_path, O_WRONLY) : -1;
    struct stat st;
    if (fd < 0) return;
    if (fstat(fd, &st) == 0 && st.st_size < reserved_end)
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, st.st_size, reserved_end - st.st_size);
    close(fd);
}

void st_h5_discard(hid_t file, const char *tmp_path) {
    divert_writes(file);
    H5Fclose(file);
    unlink(tmp_path);
}

int st_h5_close_written(hid_t file, const char *tmp_path, const char *final_path) {
    /* Flush before closing: a failed flush can still be discarded cleanly, and H5Fclose defers
     * the real close while a caller still holds an object open. */
    off_t reserved_end = 0;
    int reserved = reserve_for_flush(file, &reserved_end);
    if (reserved == 0) errno = 0; /* a reservation the file system does not support is no error */
    if (reserved != 0 || H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) {
        char why[512];
        write_failure(errno, why, sizeof why);
        st_h5_discard(file, tmp_path);
        return st_error_set("%s: cannot write: %s", final_path, why);
    }
    if (H5Fclose(file) < 0) {
        char why[512];
        st_h5_last_error(why, sizeof why);
        unlink(tmp_path);
        return st_error_set("%s: cannot close %s (%s)", final_path, tmp_path, why);
    }
    release_reserve(tmp_path, reserved_end);
    return 0;
}

int st_h5_commit_atomic(hid_t file, const char *tmp_path, const char *final_path) {
    if (st_h5_close_written(file, tmp_path, final_path) != 0) return -1;
    return st_file_commit(tmp_path, final_path);
}

void st_strlist_free(st_strlist *list) {
    for (int i = 0; i < list->n; i++) free(list->items[i]);
    free(list->items);
    list->items = NULL;
    list->n = 0;
}

static void strlist_append(st_strlist *list, const char *s, size_t len) {
    list->items = realloc(list->items, (size_t)(list->n + 1) * sizeof *list->items);
    ST_CHECK(list->items, "out of memory growing a string list");
    char *copy = ST_MALLOC(len + 1);
    memcpy(copy, s, len);
    copy[len] = '\0';
    list->items[list->n++] = copy;
}

/* Read the strings of one open attribute and append them; -1 with a message on a bad type. */
static int read_strings(hid_t attr, st_strlist *out, const char *name, const char *path,
                        const char *where) {
    hid_t ftype = H5Aget_type(attr), space = H5Aget_space(attr);
    int rc = -1;
    hssize_t n = H5Sget_simple_extent_npoints(space);
    int ndims = H5Sget_simple_extent_ndims(space);
    if (ftype < 0 || space < 0 || n < 0 || ndims > 1) {
        st_error_set("%s: %s: attribute '%s' is not a 1-D list", path, where, name);
    } else if (H5Tget_class(ftype) != H5T_STRING) {
        /* Keras writes an empty list as float64 dims (0); any other non-string is malformed. */
        if (n == 0) rc = 0;
        else st_error_set("%s: %s: attribute '%s' holds %lld numbers, expected strings", path,
                          where, name, (long long)n);
    } else if (n == 0) {
        rc = 0;
    } else if (n > ST_H5_MAX_LIST || H5Tget_size(ftype) > ST_H5_MAX_LIST) {
        st_error_set("%s: %s: attribute '%s' claims %lld strings of %zu bytes (corrupt file?)", path,
                     where, name, (long long)n, H5Tget_size(ftype));
    } else if (H5Tis_variable_str(ftype) > 0) {
        hid_t mtype = H5Tcopy(H5T_C_S1);
        H5Tset_size(mtype, H5T_VARIABLE);
        H5Tset_cset(mtype, H5Tget_cset(ftype));
        char **v = ST_CALLOC((size_t)n, sizeof *v);
        if (H5Aread(attr, mtype, v) >= 0) {
            for (hssize_t i = 0; i < n; i++) strlist_append(out, v[i] ? v[i] : "", v[i] ? strlen(v[i]) : 0);
            H5Dvlen_reclaim(mtype, space, H5P_DEFAULT, v);
            rc = 0;
        } else {
            st_error_set("%s: %s: attribute '%s': cannot read variable-length strings", path,
                         where, name);
        }
        free(v);
        H5Tclose(mtype);
    } else {
        size_t size = H5Tget_size(ftype);
        hid_t mtype = H5Tcopy(ftype);
        char *buf = ST_CALLOC((size_t)n, size ? size : 1);
        if (size > 0 && H5Aread(attr, mtype, buf) >= 0) {
            /* NULLPAD items of maximal length have no terminating NUL: bound by size. */
            for (hssize_t i = 0; i < n; i++)
                strlist_append(out, buf + (size_t)i * size, strnlen(buf + (size_t)i * size, size));
            rc = 0;
        } else {
            st_error_set("%s: %s: attribute '%s': cannot read fixed-length strings", path, where, name);
        }
        free(buf);
        H5Tclose(mtype);
    }
    if (ftype >= 0) H5Tclose(ftype);
    if (space >= 0) H5Sclose(space);
    return rc;
}

static int read_strlist_attr(hid_t obj, const char *name, st_strlist *out, const char *path,
                             const char *where) {
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    if (attr < 0) return st_error_set("%s: %s: cannot open attribute '%s'", path, where, name);
    int rc = read_strings(attr, out, name, path, where);
    H5Aclose(attr);
    return rc;
}

int st_h5_read_strlist(hid_t obj, const char *name, st_strlist *out, const char *path,
                       const char *where) {
    out->items = NULL;
    out->n = 0;
    htri_t exists = H5Aexists(obj, name);
    if (exists < 0) return st_error_set("%s: %s: cannot query attribute '%s'", path, where, name);
    if (exists > 0) {
        if (read_strlist_attr(obj, name, out, path, where) != 0) {
            st_strlist_free(out);
            return -1;
        }
        return 1;
    }
    int chunk = 0;
    for (;; chunk++) {
        char chunk_name[256];
        snprintf(chunk_name, sizeof chunk_name, "%s%d", name, chunk);
        if (H5Aexists(obj, chunk_name) <= 0) break;
        if (read_strlist_attr(obj, chunk_name, out, path, where) != 0) {
            st_strlist_free(out);
            return -1;
        }
    }
    return chunk > 0 ? 1 : 0;
}

static int write_fixed_strings(hid_t obj, const char *name, const char *const *items, int n,
                               size_t width, const char *path, const char *where) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, width);
    H5Tset_strpad(type, H5T_STR_NULLPAD);
    H5Tset_cset(type, H5T_CSET_ASCII);
    hsize_t dims[1] = {(hsize_t)n};
    hid_t space = H5Screate_simple(1, dims, NULL);
    char *buf = ST_CALLOC((size_t)n, width);
    for (int i = 0; i < n; i++) memcpy(buf + (size_t)i * width, items[i], strlen(items[i]));
    hid_t attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (attr >= 0 && H5Awrite(attr, type, buf) >= 0) ? 0 : -1;
    if (attr >= 0) H5Aclose(attr);
    free(buf);
    H5Sclose(space);
    H5Tclose(type);
    if (rc) st_error_set("%s: %s: cannot write attribute '%s'", path, where, name);
    return rc;
}

int st_h5_write_strlist(hid_t obj, const char *name, const char *const *items, int n,
                        const char *path, const char *where) {
    if (n == 0) {
        hsize_t dims[1] = {0};
        hid_t space = H5Screate_simple(1, dims, NULL);
        hid_t attr = H5Acreate2(obj, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT);
        H5Sclose(space);
        if (attr < 0) return st_error_set("%s: %s: cannot write attribute '%s'", path, where, name);
        H5Aclose(attr);
        return 0;
    }
    size_t width = 1;
    for (int i = 0; i < n; i++)
        if (strlen(items[i]) > width) width = strlen(items[i]);
    /* Like np.array_split in Keras: the fewest near-equal chunks that each fit the limit. */
    int chunks = 1;
    while ((size_t)((n + chunks - 1) / chunks) * width > ST_H5_ATTR_LIMIT) chunks++;
    if (chunks == 1) return write_fixed_strings(obj, name, items, n, width, path, where);
    int start = 0;
    for (int c = 0; c < chunks; c++) {
        int count = n / chunks + (c < n % chunks ? 1 : 0);
        char chunk_name[256];
        snprintf(chunk_name, sizeof chunk_name, "%s%d", name, c);
        if (write_fixed_strings(obj, chunk_name, items + start, count, width, path, where) != 0)
            return -1;
        start += count;
    }
    return 0;
}

int st_h5_read_string_attr(hid_t obj, const char *name, char **out, const char *path,
                           const char *where) {
    *out = NULL;
    htri_t exists = H5Aexists(obj, name);
    if (exists < 0) return st_error_set("%s: %s: cannot query attribute '%s'", path, where, name);
    if (exists == 0) return 0;
    st_strlist list = {0};
    if (read_strlist_attr(obj, name, &list, path, where) != 0) {
        st_strlist_free(&list);
        return -1;
    }
    if (list.n != 1) {
        st_strlist_free(&list);
        return st_error_set("%s: %s: attribute '%s' is not a single string", path, where, name);
    }
    *out = list.items[0];
    free(list.items);
    return 1;
}

int st_h5_write_string_attr(hid_t obj, const char *name, const char *value, const char *path,
                            const char *where) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_ASCII);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (attr >= 0 && H5Awrite(attr, type, &value) >= 0) ? 0 : -1;
    if (attr >= 0) H5Aclose(attr);
    H5Sclose(space);
    H5Tclose(type);
    if (rc) st_error_set("%s: %s: cannot write attribute '%s'", path, where, name);
    return rc;
}

int st_h5_read_double_attr(hid_t obj, const char *name, double *out, const char *path,
                           const char *where) {
    htri_t exists = H5Aexists(obj, name);
    if (exists < 0) return st_error_set("%s: %s: cannot query attribute '%s'", path, where, name);
    if (exists == 0) return 0;
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    if (attr < 0) return st_error_set("%s: %s: cannot open attribute '%s'", path, where, name);
    hid_t type = H5Aget_type(attr), space = H5Aget_space(attr);
    H5T_class_t cls = H5Tget_class(type);
    int rc = -1;
    if ((cls == H5T_FLOAT || cls == H5T_INTEGER) && H5Sget_simple_extent_npoints(space) == 1 &&
        H5Aread(attr, H5T_NATIVE_DOUBLE, out) >= 0)
        rc = 1;
    else
        st_error_set("%s: %s: attribute '%s' is not a single number", path, where, name);
    H5Tclose(type);
    H5Sclose(space);
    H5Aclose(attr);
    return rc;
}

static int write_scalar_attr(hid_t obj, const char *name, hid_t file_type, hid_t mem_type,
                             const void *value, const char *path, const char *where) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(obj, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (attr >= 0 && H5Awrite(attr, mem_type, value) >= 0) ? 0 : -1;
    if (attr >= 0) H5Aclose(attr);
    H5Sclose(space);
    if (rc) st_error_set("%s: %s: cannot write attribute '%s'", path, where, name);
    return rc;
}

int st_h5_write_double_attr(hid_t obj, const char *name, double value, const char *path,
                            const char *where) {
    return write_scalar_attr(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value, path, where);
}

int st_h5_write_long_attr(hid_t obj, const char *name, long long value, const char *path,
                          const char *where) {
    return write_scalar_attr(obj, name, H5T_STD_I64LE, H5T_NATIVE_LLONG, &value, path, where);
}

/* Numeric element types we convert from: integers and IEEE floats of 1..8 bytes. A corrupt
 * datatype message can claim a 4 GB "float", which HDF5 would try to convert. */
static int sane_numeric_type(hid_t type) {
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    if (cls == H5T_INTEGER) return size >= 1 && size <= 8;
    if (cls == H5T_FLOAT) return (size == 2 || size == 4 || size == 8) && H5Tget_precision(type) <= 8 * size;
    return 0;
}

int st_h5_has(hid_t loc, const char *name) {
    /* H5Lexists needs every parent of a multi-component path to exist: check them in turn. */
    char *copy = ST_STRDUP(name);
    int found = 1;
    for (char *slash = strchr(copy, '/'); found && slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        found = copy[0] == '\0' || H5Lexists(loc, copy, H5P_DEFAULT) > 0;
        *slash = '/';
    }
    if (found) found = H5Lexists(loc, copy, H5P_DEFAULT) > 0;
    free(copy);
    return found;
}

int st_h5_dataset_shape(hid_t loc, const char *name, int *rank, long long *dims, int max_rank,
                        const char *path, const char *where) {
    if (!st_h5_has(loc, name))
        return st_error_set("%s: %s: dataset '%s' is missing", path, where, name);
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0) return st_error_set("%s: %s: '%s' is not a readable dataset", path, where, name);
    hid_t type = H5Dget_type(d), space = H5Dget_space(d);
    int ndims = H5Sget_simple_extent_ndims(space);
    int rc = -1;
    if (!sane_numeric_type(type)) {
        st_error_set("%s: %s: dataset '%s' is not of a numeric type (corrupt file?)", path, where, name);
    } else if (ndims < 0 || ndims > max_rank) {
        st_error_set("%s: %s: dataset '%s' has rank %d, at most %d expected", path, where, name,
                     ndims, max_rank);
    } else {
        hsize_t h5dims[H5S_MAX_RANK];
        H5Sget_simple_extent_dims(space, h5dims, NULL);
        *rank = ndims;
        for (int i = 0; i < ndims; i++) dims[i] = (long long)h5dims[i];
        rc = 0;
    }
    H5Tclose(type);
    H5Sclose(space);
    H5Dclose(d);
    return rc;
}

/* Open dataset `name`, check it holds exactly n elements, read it as mem_type into out. */
static int read_exact(hid_t loc, const char *name, hid_t mem_type, void *out, size_t n,
                      const char *path, const char *where) {
    if (!st_h5_has(loc, name))
        return st_error_set("%s: %s: dataset '%s' is missing", path, where, name);
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0) return st_error_set("%s: %s: '%s' is not a readable dataset", path, where, name);
    hid_t space = H5Dget_space(d), type = H5Dget_type(d);
    hssize_t count = H5Sget_simple_extent_npoints(space);
    int rc = -1;
    if (!sane_numeric_type(type)) {
        st_error_set("%s: %s: dataset '%s' is not of a numeric type; HINT: the file is corrupt", path,
                     where, name);
    } else if (count != (hssize_t)n) {
        st_error_set("%s: %s: dataset '%s' has %lld elements, expected %zu", path, where, name,
                     (long long)count, n);
    } else if (n > 0 && H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
        char why[512];
        st_h5_last_error(why, sizeof why);
        st_error_set("%s: %s: dataset '%s' cannot be read (%s); HINT: the file is truncated or "
                     "corrupt",
                     path, where, name, why);
    } else {
        rc = 0;
    }
    H5Tclose(type);
    H5Sclose(space);
    H5Dclose(d);
    return rc;
}

int st_h5_read_floats(hid_t loc, const char *name, float *out, size_t numel, const char *path,
                      const char *where) {
    return read_exact(loc, name, H5T_NATIVE_FLOAT, out, numel, path, where);
}

int st_h5_read_ints(hid_t loc, const char *name, int *out, size_t n, const char *path) {
    return read_exact(loc, name, H5T_NATIVE_INT, out, n, path, name);
}

int st_h5_read_u64s(hid_t loc, const char *name, unsigned long long *out, size_t n,
                    const char *path) {
    return read_exact(loc, name, H5T_NATIVE_ULLONG, out, n, path, name);
}

static int write_dataset(hid_t loc, const char *name, hid_t file_type, hid_t mem_type,
                         const void *data, int rank, const hsize_t *dims, const char *path) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t space = H5Screate_simple(rank, dims, NULL);
    errno = 0;
    hid_t d = H5Dcreate2(loc, name, file_type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    int rc = d >= 0 ? 0 : -1;
    /* A zero-element dataset is created but not written (HDF5 rejects a NULL buffer). */
    if (rc == 0 && H5Sget_simple_extent_npoints(space) > 0 &&
        H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        rc = -1;
    char why[512];
    if (rc) {
        write_failure(errno, why, sizeof why);
        divert_writes(loc);
    }
    if (d >= 0) H5Dclose(d);
    H5Sclose(space);
    H5Pclose(lcpl);
    if (rc) st_error_set("%s: dataset '%s': cannot write: %s", path, name, why);
    return rc;
}

int st_h5_write_floats(hid_t loc, const char *name, const float *data, int rank,
                       const long long *dims, const char *path) {
    hsize_t h5dims[H5S_MAX_RANK];
    ST_CHECK(rank >= 1 && rank <= H5S_MAX_RANK, "dataset rank %d out of range", rank);
    for (int i = 0; i < rank; i++) h5dims[i] = (hsize_t)dims[i];
    return write_dataset(loc, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data, rank, h5dims, path);
}

int st_h5_write_ints(hid_t loc, const char *name, const int *data, size_t n, const char *path) {
    hsize_t dims[1] = {n};
    return write_dataset(loc, name, H5T_STD_I32LE, H5T_NATIVE_INT, data, 1, dims, path);
}

int st_h5_write_u64s(hid_t loc, const char *name, const unsigned long long *data, size_t n,
                     const char *path) {
    hsize_t dims[1] = {n};
    return write_dataset(loc, name, H5T_STD_U64LE, H5T_NATIVE_ULLONG, data, 1, dims, path);
}
