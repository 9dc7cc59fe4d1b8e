/*
 * fileio.h: the one home of durable file writes. Every file simtune leaves behind (configs,
 * checkpoints, weight files, metrics, reports, images) is either complete or absent:
 *
 *   - whole files are written to `path.tmp`, flushed, fsync'ed, renamed over `path`, and the
 *     directory is fsync'ed so the rename itself survives a crash (st_atomic_open/commit for
 *     stdio writers, st_file_commit for a temporary written by a library such as HDF5);
 *   - appended lines (metrics.jsonl) are written with one write(2) loop and fsync'ed; when any
 *     of it fails the file is truncated back to its previous length, so no partial line stays.
 *
 * Every failure removes the temporary file and returns -1 with st_error_set() naming the file
 * and the OS reason ("run/ckpt-12.h5: cannot write: No space left on device"). Nothing here
 * exits. Callers: data/, infer/, train/ (the layers above data/).
 */
#ifndef ST_FILEIO_H
#define ST_FILEIO_H

#include <stdio.h>

/* mkdir -p: create path and every missing parent (mode 0777 before umask); 0 or -1. */
int st_mkdirs(const char *path);

/* The temporary name of path for an atomic write, "path.tmp", into tmp[size]; 0, or -1 with
 * st_error_set when it does not fit. */
int st_tmp_path(const char *path, char *tmp, size_t size);

/* Open path.tmp for writing (its name kept in tmp[size]); NULL with st_error_set on failure. */
FILE *st_atomic_open(const char *path, char *tmp, size_t size);

/* Finish a file opened by st_atomic_open: flush, check for any earlier write error, fsync,
 * close, then st_file_commit. f is closed in every case; 0 or -1 (tmp removed). */
int st_atomic_commit(FILE *f, const char *tmp, const char *path);

/* Give up a file opened by st_atomic_open: close it and remove tmp (errors ignored). */
void st_atomic_abort(FILE *f, const char *tmp);

/* tmp is a complete, closed file: fsync it, rename it over path, fsync path's directory.
 * On failure tmp is removed and path keeps its previous content; 0 or -1. */
int st_file_commit(const char *tmp, const char *path);

/* fsync the directory that holds path (after a rename, link or unlink in it); 0 or -1. */
int st_fsync_parent(const char *path);

/* Append text (normally one line ending in '\n') to path, creating it, then fsync. On failure
 * path is truncated back to its previous length; 0 or -1. */
int st_file_append(const char *path, const char *text);

#endif
