/*
 * fileio.c: atomic whole-file writes, checked appends and mkdir -p (contract in fileio.h).
 * Each error message is taken from errno right where the call failed: a later close or unlink
 * would overwrite it, and the OS reason ("No space left on device") is what the user needs.
 */
#include "data/base/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/check.h"

static int make_one_dir(const char *path) {
    if (mkdir(path, 0777) == 0 || errno == EEXIST) return 0;
    return st_error_set("%s: cannot create folder: %s", path, strerror(errno));
}

int st_mkdirs(const char *path) {
    char *buf = ST_STRDUP(path);
    int rc = 0;
    for (char *p = buf + 1; *p && rc == 0; p++) {
        if (*p != '/') continue;
        *p = '\0';
        rc = make_one_dir(buf);
        *p = '/';
    }
    if (rc == 0) rc = make_one_dir(buf);
    free(buf);
    return rc;
}

int st_tmp_path(const char *path, char *tmp, size_t size) {
    if (snprintf(tmp, size, "%s.tmp", path) >= (int)size) return st_error_set("%s: path too long", path);
    return 0;
}

FILE *st_atomic_open(const char *path, char *tmp, size_t size) {
    if (st_tmp_path(path, tmp, size) != 0) return NULL;
    FILE *f = fopen(tmp, "wb");
    if (!f) st_error_set("%s: cannot write: %s", tmp, strerror(errno));
    return f;
}

void st_atomic_abort(FILE *f, const char *tmp) {
    if (f) fclose(f);
    unlink(tmp);
}

int st_atomic_commit(FILE *f, const char *tmp, const char *path) {
    /* ferror first: a failed fwrite may have emptied the buffer, so fflush alone can succeed. */
    int err = 0;
    if (ferror(f)) err = errno ? errno : EIO;
    else if (fflush(f) != 0 || fsync(fileno(f)) != 0) err = errno;
    if (fclose(f) != 0 && err == 0) err = errno;
    if (err != 0) {
        unlink(tmp);
        return st_error_set("%s: cannot write: %s", path, strerror(err));
    }
    return st_file_commit(tmp, path);
}

static int fsync_path(const char *path, int flags) {
    int fd = open(path, O_RDONLY | flags);
    if (fd < 0) return -1;
    int rc = fsync(fd), err = errno;
    close(fd);
    errno = err;
    return rc;
}

int st_fsync_parent(const char *path) {
    char *dir = ST_STRDUP(path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, strlen(dir) + 1, ".");
    else if (slash == dir) slash[1] = '\0';
    else *slash = '\0';
    int rc = fsync_path(dir, O_DIRECTORY);
    if (rc != 0) st_error_set("%s: cannot sync its folder %s: %s", path, dir, strerror(errno));
    free(dir);
    return rc;
}

int st_file_commit(const char *tmp, const char *path) {
    if (fsync_path(tmp, 0) != 0) {
        int err = errno;
        unlink(tmp);
        return st_error_set("%s: cannot write (fsync of %s): %s", path, tmp, strerror(err));
    }
    if (rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return st_error_set("%s: cannot replace it with %s: %s", path, tmp, strerror(err));
    }
    return st_fsync_parent(path);
}

int st_file_append(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0666);
    if (fd < 0) return st_error_set("%s: cannot append: %s", path, strerror(errno));
    struct stat st;
    int err = fstat(fd, &st) != 0 ? errno : 0;
    size_t len = strlen(text), done = 0;
    while (err == 0 && done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) err = n < 0 ? errno : EIO;
        else done += (size_t)n;
    }
    if (err == 0 && fsync(fd) != 0) err = errno;
    /* A partial line would make the next reader's JSON parse fail: take it back out. */
    int partial_left = err != 0 && done > 0 && ftruncate(fd, st.st_size) != 0;
    if (close(fd) != 0 && err == 0) err = errno;
    if (err == 0) return 0;
    return st_error_set("%s: cannot append%s: %s", path,
                        partial_left ? " (a partial line stays at its end)" : "", strerror(err));
}
