/*
 * test_lock.c: folder locks (train/lock.h) between real processes: a held lock refuses a second
 * taker (in this process and in another) with a message naming the holder's pid and host; a lock
 * left by a dead pid (a child that exited, a child killed with SIGKILL while holding it) is taken
 * over with a note on stderr; a lock written on another host is refused, never taken over;
 * release removes the file. `simtune train` and `simtune sweep` with the lock are tested through
 * the CLI in tests/sweep_locks.py.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/check.h"
#include "test_util.h"
#include "train/lock.h"

static char dir[64];
static char lock_path[128];
static char host[256];

static void write_lock_line(const char *line) {
    FILE *f = fopen(lock_path, "w");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", lock_path);
        exit(1);
    }
    fputs(line, f);
    fclose(f);
}

static int lock_file_names_pid(long pid) {
    FILE *f = fopen(lock_path, "r");
    if (!f) return 0;
    long got = 0;
    char got_host[256] = "";
    int ok = fscanf(f, "%ld %255s", &got, got_host) == 2 && got == pid && strcmp(got_host, host) == 0;
    fclose(f);
    return ok;
}

/* A pid that existed and is gone: a child that exited and was reaped. */
static long dead_pid(void) {
    pid_t child = fork();
    if (child == 0) _exit(0);
    waitpid(child, NULL, 0);
    return (long)child;
}

/* Runs acquire with stderr captured; returns acquire's result, the note in note[size]. */
static int acquire_capturing_stderr(st_lock *lock, char *note, size_t size) {
    char path[128];
    snprintf(path, sizeof path, "%s/stderr.txt", dir);
    fflush(stderr);
    int saved = dup(2);
    FILE *f = fopen(path, "w+");
    dup2(fileno(f), 2);
    int rc = st_lock_acquire(dir, lock);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(f);
    size_t n = fread(note, 1, size - 1, f);
    note[n] = 0;
    fclose(f);
    return rc;
}

static void test_held_in_this_process(void) {
    st_lock a, b;
    TEST_CHECK(st_lock_acquire(dir, &a) == 0, "acquire a free folder: %s", st_error_get());
    TEST_CHECK(lock_file_names_pid((long)getpid()), "the lock file names this pid and host");
    char want[512];
    snprintf(want, sizeof want, "%s is in use by pid %ld on host %s since ", dir, (long)getpid(), host);
    TEST_CHECK(st_lock_acquire(dir, &b) == -1, "a second acquire of a held folder refuses");
    TEST_CHECK(strstr(st_error_get(), want) != NULL, "refusal names the holder: got '%s'", st_error_get());
    TEST_CHECK(st_lock_probe(dir) == -1 && strstr(st_error_get(), want), "probe of a held folder: '%s'",
               st_error_get());
    st_lock_release(&b); /* never held: must not remove a's file */
    TEST_CHECK(access(lock_path, F_OK) == 0, "releasing a refused lock leaves the holder's file");
    st_lock_release(&a);
    TEST_CHECK(access(lock_path, F_OK) != 0, "release removes the lock file");
    st_lock_release(&a); /* twice is harmless */
    TEST_CHECK(st_lock_probe(dir) == 0, "probe of a released folder: %s", st_error_get());
    st_lock zeroed;
    memset(&zeroed, 0, sizeof zeroed);
    st_lock_release(&zeroed);
}

/* A child holds the lock; this process is refused with the child's pid; after the child is
 * SIGKILLed (no release, its file stays) the lock is stale and taken over with a note. */
static void test_held_by_another_process(void) {
    int ready[2];
    if (pipe(ready) != 0) exit(1);
    pid_t child = fork();
    if (child == 0) {
        st_lock held;
        char byte = st_lock_acquire(dir, &held) == 0 ? 'y' : 'n';
        if (write(ready[1], &byte, 1) != 1) _exit(1);
        pause(); /* killed by the parent */
        _exit(0);
    }
    char byte = 0;
    TEST_CHECK(read(ready[0], &byte, 1) == 1 && byte == 'y', "the child acquired the lock");
    close(ready[0]);
    close(ready[1]);

    st_lock lock;
    char want[512];
    snprintf(want, sizeof want, "%s is in use by pid %ld on host %s since ", dir, (long)child, host);
    TEST_CHECK(st_lock_acquire(dir, &lock) == -1 && strstr(st_error_get(), want),
               "refused while the child holds it: got '%s'", st_error_get());
    TEST_CHECK(st_lock_probe(dir) == -1 && strstr(st_error_get(), want), "probe while held: '%s'", st_error_get());

    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    TEST_CHECK(lock_file_names_pid((long)child), "a killed holder leaves its lock file behind");
    TEST_CHECK(st_lock_probe(dir) == 0, "probe of a dead holder's lock: %s", st_error_get());
    char note[1024];
    TEST_CHECK(acquire_capturing_stderr(&lock, note, sizeof note) == 0, "take over: %s", st_error_get());
    char pid_text[64];
    snprintf(pid_text, sizeof pid_text, "pid %ld", (long)child);
    TEST_CHECK(strstr(note, "stale lock") && strstr(note, pid_text) && strstr(note, "is gone"),
               "the takeover notes the dead pid on stderr: got '%s'", note);
    TEST_CHECK(lock_file_names_pid((long)getpid()), "the taken-over file names this process");
    st_lock_release(&lock);
}

/* A lock file written by a pid that is dead on this host (no flock behind it). */
static void test_stale_file_of_dead_pid(void) {
    long pid = dead_pid();
    char line[512];
    snprintf(line, sizeof line, "%ld %s 2026-01-01T00:00:00Z\n", pid, host);
    write_lock_line(line);
    TEST_CHECK(st_lock_probe(dir) == 0, "probe of a stale lock: %s", st_error_get());
    st_lock lock;
    char note[1024];
    TEST_CHECK(acquire_capturing_stderr(&lock, note, sizeof note) == 0, "stale lock taken over: %s", st_error_get());
    TEST_CHECK(strstr(note, "2026-01-01T00:00:00Z") != NULL, "the note names the stale holder: '%s'", note);
    TEST_CHECK(lock_file_names_pid((long)getpid()), "the taken-over file names this process");
    st_lock_release(&lock);
}

/* Another host's pid cannot be checked from here: refuse, and say how to clear it. */
static void test_lock_of_another_host(void) {
    write_lock_line("4242 some-other-host 2026-01-01T00:00:00Z\n");
    st_lock lock;
    TEST_CHECK(st_lock_acquire(dir, &lock) == -1, "another host's lock is not taken over");
    TEST_CHECK(strstr(st_error_get(), "in use by pid 4242 on host some-other-host") && strstr(st_error_get(), "remove"),
               "names the other host's holder and the way out: '%s'", st_error_get());
    TEST_CHECK(st_lock_probe(dir) == -1, "probe refuses another host's lock too");
    TEST_CHECK(access(lock_path, F_OK) == 0, "the refused lock file is left alone");
    unlink(lock_path);
}

static void test_missing_folder(void) {
    st_lock lock;
    TEST_CHECK(st_lock_acquire("/nonexistent-simtune-dir", &lock) == -1 &&
                   strstr(st_error_get(), "/nonexistent-simtune-dir/.lock"),
               "a missing folder names the lock path: '%s'", st_error_get());
}

int main(void) {
    snprintf(dir, sizeof dir, "lock-test-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    snprintf(lock_path, sizeof lock_path, "%s/.lock", dir);
    gethostname(host, sizeof host);
    test_held_in_this_process();
    test_held_by_another_process();
    test_stale_file_of_dead_pid();
    test_lock_of_another_host();
    test_missing_folder();
    char path[128];
    snprintf(path, sizeof path, "%s/stderr.txt", dir);
    unlink(path);
    rmdir(dir);
    return test_finish("test_lock");
}
