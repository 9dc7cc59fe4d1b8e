/*
 * enospc_shim.c: an LD_PRELOAD library that makes a folder behave like a disk that fills up,
 * for tests/test_full_disk.py and tests/test_divergence.py. No root, no mount: it wraps write(2), pwrite(2), pwrite64(2) and
 * fallocate(2), the calls HDF5's sec2 driver, infer/h5util.c and data/base/fileio.c's st_file_append
 * use.
 *
 *   SIMTUNE_TEST_ENOSPC_DIR=/abs/folder   only regular files whose path starts with this count
 *   SIMTUNE_TEST_ENOSPC_BYTES=N           new bytes those files may take in all; the write that
 *                                         crosses N is cut short, every later one (and any
 *                                         fallocate that does not fit) fails with errno
 *                                         ENOSPC, as on a full file system
 *   SIMTUNE_TEST_ENOSPC_REPORT=FILE       at exit, write the bytes taken to FILE (to size a
 *                                         budget from a run that did not fail)
 *   SIMTUNE_TEST_CORRUPT_READS=SUFFIX     a disk that corrupts data: every pread(2) of more than
 *                                         4 kB from a file opened under a name ending in SUFFIX
 *                                         returns its middle byte inverted (independent of the
 *                                         two above; for the best.h5 read-back check)
 *
 * Space model: each file takes the bytes from 0 to the highest offset written or reserved
 * (holes are not modelled), first seen at its size; rewriting inside that range, or inside a
 * fallocate'd range, takes nothing new; removed files give nothing back.
 *
 * Without both variables every call passes straight through. Writes made by glibc's stdio go
 * through its internal write, which no preload can wrap: those files (config.yaml) are not
 * counted, and the tests do not rely on them failing.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*pread_fn)(int, void *, size_t, off_t);
typedef int (*fallocate_fn)(int, int, off_t, off_t);

enum { MAX_FILES = 256 };

static long long budget_left = -1; /* -1: not configured (read once, lazily) */
static long long budget_start;
static const char *watched_dir;
static struct {
    dev_t dev;
    ino_t ino;
    off_t end; /* bytes taken so far: [0, end) */
} files[MAX_FILES];
static int n_files;

static void configure(void) {
    static int done;
    if (done) return;
    done = 1;
    const char *dir = getenv("SIMTUNE_TEST_ENOSPC_DIR"), *bytes = getenv("SIMTUNE_TEST_ENOSPC_BYTES");
    if (dir && dir[0] && bytes && bytes[0]) {
        watched_dir = dir;
        budget_left = budget_start = atoll(bytes);
    }
}

/* The space record of fd's file when it is a watched regular file, else NULL. */
static off_t *taken_end(int fd) {
    configure();
    struct stat st;
    if (budget_left < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return NULL;
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0) return NULL;
    target[n] = '\0';
    if (strncmp(target, watched_dir, strlen(watched_dir)) != 0) return NULL;
    for (int i = 0; i < n_files; i++)
        if (files[i].dev == st.st_dev && files[i].ino == st.st_ino) return &files[i].end;
    if (n_files == MAX_FILES) abort(); /* a test writing this many files needs a bigger table */
    files[n_files].dev = st.st_dev;
    files[n_files].ino = st.st_ino;
    files[n_files].end = st.st_size;
    return &files[n_files++].end;
}

/* How many of the count bytes at offset fit; takes their space. 0 with errno ENOSPC: none. */
static size_t fitting(off_t *end, off_t offset, size_t count) {
    off_t room = *end + (off_t)budget_left - offset; /* bytes writable from offset on */
    size_t n = room <= 0 ? 0 : (off_t)count < room ? count : (size_t)room;
    if (offset + (off_t)n > *end) {
        budget_left -= offset + (off_t)n - *end;
        *end = offset + (off_t)n;
    }
    if (n == 0 && count > 0) errno = ENOSPC;
    return n;
}

static off_t write_offset(int fd) {
    struct stat st;
    if ((fcntl(fd, F_GETFL) & O_APPEND) && fstat(fd, &st) == 0) return st.st_size;
    return lseek(fd, 0, SEEK_CUR);
}

ssize_t write(int fd, const void *buf, size_t count) {
    static write_fn real;
    if (!real) real = (write_fn)dlsym(RTLD_NEXT, "write");
    off_t *end = taken_end(fd);
    size_t n = end ? fitting(end, write_offset(fd), count) : count;
    return n == 0 && count > 0 ? -1 : real(fd, buf, n);
}

static ssize_t shim_pwrite(const char *name, int fd, const void *buf, size_t count, off_t offset) {
    pwrite_fn real = (pwrite_fn)dlsym(RTLD_NEXT, name);
    off_t *end = taken_end(fd);
    size_t n = end ? fitting(end, offset, count) : count;
    return n == 0 && count > 0 ? -1 : real(fd, buf, n, offset);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    return shim_pwrite("pwrite", fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    return shim_pwrite("pwrite64", fd, buf, count, offset);
}

/* 1 when fd was opened under a name ending in SIMTUNE_TEST_CORRUPT_READS. */
static int corrupted(int fd) {
    const char *suffix = getenv("SIMTUNE_TEST_CORRUPT_READS");
    if (!suffix || !suffix[0]) return 0;
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    size_t len = strlen(suffix);
    if (n <= 0 || (size_t)n < len) return 0;
    target[n] = '\0';
    return strcmp(target + n - len, suffix) == 0;
}

static ssize_t shim_pread(const char *name, int fd, void *buf, size_t count, off_t offset) {
    pread_fn real = (pread_fn)dlsym(RTLD_NEXT, name);
    ssize_t n = real(fd, buf, count, offset);
    if (n > 4096 && corrupted(fd)) ((unsigned char *)buf)[n / 2] ^= 0xff;
    return n;
}

ssize_t pread(int fd, void *buf, size_t count, off_t offset) { return shim_pread("pread", fd, buf, count, offset); }

ssize_t pread64(int fd, void *buf, size_t count, off_t offset) {
    return shim_pread("pread64", fd, buf, count, offset);
}

int fallocate(int fd, int mode, off_t offset, off_t len) {
    fallocate_fn real = (fallocate_fn)dlsym(RTLD_NEXT, "fallocate");
    off_t *end = (mode & FALLOC_FL_PUNCH_HOLE) ? NULL : taken_end(fd);
    if (end && offset + len > *end) {
        if (offset + len - *end > budget_left) {
            errno = ENOSPC;
            return -1;
        }
        budget_left -= offset + len - *end;
        *end = offset + len;
    }
    return real(fd, mode, offset, len);
}

__attribute__((destructor)) static void report_taken(void) {
    const char *report = getenv("SIMTUNE_TEST_ENOSPC_REPORT");
    FILE *f = report && budget_left >= 0 ? fopen(report, "w") : NULL;
    if (!f) return;
    fprintf(f, "%lld\n", budget_start - budget_left);
    fclose(f);
}
