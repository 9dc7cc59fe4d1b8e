/*
 * lock.h: a folder in use by one process (a run folder of `simtune train`, a sweep folder of
 * `simtune sweep`) is locked, so a second process refuses instead of interleaving its files.
 *
 * The lock is DIR/.lock: an flock(2)ed file that holds one line "pid host start-time", e.g.
 * "4242 gpu-box-1 2026-12-06T18:20:00Z". flock decides who holds it (the kernel drops it when
 * its process dies, however it dies); the line is what the refusal message names:
 *     "<dir> is in use by pid N on host H since T"
 * A lock file left by a process that died without releasing it is stale: the next acquire on
 * the same host takes it over with a note on stderr. A lock file written on another host is
 * never taken over (its pid cannot be checked from here): the message says to remove it.
 *
 * Not for threads: one process holds a folder's lock once (a second acquire in the same
 * process also refuses).
 */
#ifndef ST_LOCK_H
#define ST_LOCK_H

#include <stddef.h>

typedef struct {
    int fd;            /* the flocked DIR/.lock; 0 or -1 when not held */
    char path[4096];   /* DIR/.lock */
} st_lock;

/* 0 with *out held; or -1 with st_error_get() naming the holder (or the I/O problem). DIR must
 * exist. */
int st_lock_acquire(const char *dir, st_lock *out);

/* Removes the lock file and drops the lock; safe on a zeroed struct and when called twice. */
void st_lock_release(st_lock *lock);

/* 0 when DIR is free (no lock file, or a stale one); -1 with the same message as acquire when
 * another process holds it. Takes nothing. */
int st_lock_probe(const char *dir);

/* Remove DIR/.lock when no process holds its flock, whatever host wrote its line: for a caller
 * that knows from a lock of its own that the writer is gone (a sweep worker that took over a
 * dead worker's trial clears the trial run folder's lock, train/sweep.c). 0 when DIR/.lock is
 * gone (or was never there); -1 with the message of acquire when a process holds it. */
int st_lock_clear(const char *dir);

/* A bare flock(2) on a file that is never removed while in use (no holder line): the sweep
 * workers' queue lock and per-trial locks (train/sweep.c). Opens (creating) path and locks it
 * exclusively; wait = 1 blocks until it is free, 0 returns at once. The fd (>= 1) holding the
 * lock (close it to release; the kernel releases it when the process dies, however), 0 when
 * wait = 0 and another open file holds it, -1 with st_error_set() on an I/O error. Across
 * machines this needs a file system whose flocks reach every client (NFSv4, Lustre mounted with
 * -o flock, GPFS, CephFS). */
int st_flock_file(const char *path, int wait);

/* st_flock_file(path, 0) that also writes this process's "pid host start-time" line into the
 * file, for st_flock_holder: a sweep worker's presence file. */
int st_flock_file_named(const char *path);

/* "pid N on host H since T" of a file written by st_flock_file_named, into buf ("an unnamed
 * process" when it holds no line). */
const char *st_flock_holder(int fd, char *buf, size_t size);

/* Now, UTC, as the holder lines write it: "2026-12-06T18:20:00Z". */
void st_lock_timestamp(char *buf, size_t size);

/* This machine's name as the holder lines write it. */
void st_lock_host(char *buf, size_t size);

#endif
