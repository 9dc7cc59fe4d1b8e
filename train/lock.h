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

#endif
