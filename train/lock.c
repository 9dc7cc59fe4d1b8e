/*
 * lock.c: folder locks (train/lock.h): flock(2) on DIR/.lock decides, the "pid host start-time"
 * line in it names the holder.
 *
 * Why flock and not only the pid line: the kernel drops an flock when its process dies (even by
 * SIGKILL), and two processes cannot both win it, while "read the pid, check it, write ours" is
 * a race between two takers of the same stale file. The pid line is kept for the message and to
 * refuse lock files written on another host, whose flocks a network file system may not share.
 *
 * The line is written in place after the flock is won, not by rename: a rename would give the
 * path a new inode that the flock does not cover. A machine crash leaves a stale file that the
 * next acquire takes over, so the line is not fsynced either.
 *
 * The bare flock files of the sweep workers' queue (st_flock_file: DIR/queue.lock, per-trial and
 * per-worker files) are never unlinked while a process may hold them (a worker's own file goes
 * only with its holder, a dead one's only under the flock), so they need no still_linked check.
 */
#define _GNU_SOURCE
#include "lock.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../kernels/check.h"

enum { LOCK_ROUNDS = 8 };

typedef struct {
    long pid;          /* 0 when the file held no readable line */
    char host[256];
    char since[64];
} holder;

static void this_host(char *out, size_t size) {
    if (gethostname(out, size) != 0) snprintf(out, size, "unknown");
    out[size - 1] = 0;
}

static void read_holder(int fd, holder *h) {
    memset(h, 0, sizeof *h);
    char line[512];
    ssize_t n = pread(fd, line, sizeof line - 1, 0);
    if (n <= 0) return;
    line[n] = 0;
    if (sscanf(line, "%ld %255s %63s", &h->pid, h->host, h->since) != 3) memset(h, 0, sizeof *h);
}

static int from_another_host(const holder *h) {
    char host[256];
    this_host(host, sizeof host);
    return h->pid != 0 && strcmp(h->host, host) != 0;
}

static int refuse(const char *dir, const holder *h) {
    if (h->pid == 0) /* the holder won the flock but has not written its line yet */
        return st_error_set("%s is in use by another process (its lock %s/.lock is being written)", dir, dir);
    if (from_another_host(h))
        return st_error_set("%s is in use by pid %ld on host %s since %s (HINT: if no process on %s uses it, "
                            "remove %s/.lock)",
                            dir, h->pid, h->host, h->since, h->host, dir);
    return st_error_set("%s is in use by pid %ld on host %s since %s", dir, h->pid, h->host, h->since);
}

void st_lock_timestamp(char *buf, size_t size) {
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void st_lock_host(char *buf, size_t size) { this_host(buf, size); }

static int write_holder(int fd, const char *path) {
    char host[256], since[64], line[512];
    this_host(host, sizeof host);
    st_lock_timestamp(since, sizeof since);
    int len = snprintf(line, sizeof line, "%ld %s %s\n", (long)getpid(), host, since);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)len, 0) != len)
        return st_error_set("%s: cannot write the lock: %s", path, strerror(errno));
    return 0;
}

/* 1 when fd is still the file at path: a releaser unlinks the path before it drops the flock,
 * so a flock won on an unlinked file guards nothing and the taker must open the path again. */
static int still_linked(int fd, const char *path) {
    struct stat by_fd, by_path;
    if (fstat(fd, &by_fd) != 0 || stat(path, &by_path) != 0) return 0;
    return by_fd.st_dev == by_path.st_dev && by_fd.st_ino == by_path.st_ino;
}

/* The flock is ours; the file's old line (if any) is a holder that died without releasing, or
 * one on another host whose flock may not reach us. */
static int take_over(const char *dir, int fd, const char *path) {
    holder old;
    read_holder(fd, &old);
    if (from_another_host(&old)) return refuse(dir, &old);
    if (old.pid != 0) {
        int gone = kill((pid_t)old.pid, 0) != 0 && errno == ESRCH;
        const char *why = gone ? "is gone" : "no longer holds it";
        fprintf(stderr, "simtune: %s: taking over a stale lock: pid %ld (since %s) %s\n", dir, old.pid, old.since, why);
    }
    return write_holder(fd, path);
}

/* fd 0 is what a process with stdin closed gets, and a zeroed st_lock must read as not held */
static int open_lock_file(const char *path) {
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd != 0) return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 1);
    close(fd);
    return moved;
}

int st_lock_acquire(const char *dir, st_lock *out) {
    memset(out, 0, sizeof *out);
    out->fd = -1;
    char path[sizeof out->path];
    if (snprintf(path, sizeof path, "%s/.lock", dir) >= (int)sizeof path) return st_error_set("%s: path too long", dir);
    /* A few rounds, 10 ms apart: a round is lost to a releaser that unlinked the file between
     * our open and flock, or to a probe's instant shared flock; a holder outlasts them all. */
    const struct timespec pause = {0, 10 * 1000 * 1000};
    for (int round = 0; round < LOCK_ROUNDS; round++) {
        int fd = open_lock_file(path);
        if (fd < 0) return st_error_set("%s: cannot open the lock: %s", path, strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int err = errno;
            holder h;
            read_holder(fd, &h);
            close(fd);
            if (err != EWOULDBLOCK) return st_error_set("%s: cannot lock: %s", path, strerror(err));
            if (round == LOCK_ROUNDS - 1) return refuse(dir, &h);
            nanosleep(&pause, NULL);
            continue;
        }
        if (!still_linked(fd, path)) {
            close(fd);
            continue;
        }
        if (take_over(dir, fd, path)) {
            close(fd);
            return -1;
        }
        out->fd = fd;
        snprintf(out->path, sizeof out->path, "%s", path);
        return 0;
    }
    return st_error_set("%s: the lock keeps changing hands; try again", path);
}

void st_lock_release(st_lock *lock) {
    if (lock->fd <= 0) return;
    unlink(lock->path); /* before the flock drops: see still_linked */
    close(lock->fd);
    lock->fd = -1;
}

int st_lock_probe(const char *dir) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/.lock", dir) >= (int)sizeof path) return st_error_set("%s: path too long", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : st_error_set("%s: cannot open the lock: %s", path, strerror(errno));
    /* a shared flock tests for a holder without becoming one for more than an instant */
    int held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    holder h;
    read_holder(fd, &h);
    close(fd);
    return held || from_another_host(&h) ? refuse(dir, &h) : 0;
}

int st_lock_clear(const char *dir) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/.lock", dir) >= (int)sizeof path) return st_error_set("%s: path too long", dir);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : st_error_set("%s: cannot open the lock: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        holder h;
        read_holder(fd, &h);
        close(fd);
        return err == EWOULDBLOCK ? refuse(dir, &h) : st_error_set("%s: cannot lock: %s", path, strerror(err));
    }
    /* unlinked while we hold the flock, as a release does: see still_linked */
    int rc = unlink(path) == 0 || errno == ENOENT ? 0 : st_error_set("%s: cannot remove: %s", path, strerror(errno));
    close(fd);
    return rc;
}

int st_flock_file(const char *path, int wait) {
    int fd = open_lock_file(path);
    if (fd < 0) return st_error_set("%s: cannot open the lock: %s", path, strerror(errno));
    int rc;
    while ((rc = flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB))) != 0 && errno == EINTR) continue;
    if (rc == 0) return fd;
    int err = errno;
    close(fd);
    return err == EWOULDBLOCK ? 0 : st_error_set("%s: cannot lock: %s", path, strerror(err));
}

int st_flock_file_named(const char *path) {
    int fd = st_flock_file(path, 0);
    if (fd > 0 && write_holder(fd, path) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

const char *st_flock_holder(int fd, char *buf, size_t size) {
    holder h;
    read_holder(fd, &h);
    if (h.pid == 0)
        snprintf(buf, size, "an unnamed process");
    else
        snprintf(buf, size, "pid %ld on host %s since %s", h.pid, h.host, h.since);
    return buf;
}
