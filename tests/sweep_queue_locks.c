/*
 * sweep_queue_locks.c: the lock primitives of the sweep workers' queue (train/lock.h:
 * st_flock_file, st_flock_file_named, st_flock_holder, st_lock_clear) between real processes:
 *   - a bare flock file held by a child refuses a non-waiting taker (0) and is free once the
 *     child is killed with SIGKILL (the kernel releases it); a waiting taker blocks until the
 *     holder closes it;
 *   - a named flock file says who holds it ("pid N on host H since T");
 *   - st_lock_clear removes a folder lock nobody holds even when its line names another host (a
 *     sweep worker that took over a dead worker's trial clears the trainer's lock that way),
 *     and refuses, naming the holder, a lock a live process holds.
 * The queue itself (claims, re-queues, schedulers) is tested through the CLI in
 * tests/sweep_workers.py.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kernels/check.h"
#include "test_util.h"
#include "train/lock.h"

static char dir[64];

/* A child that holds path's flock (named or bare) until killed; returns once it holds it. */
static pid_t child_holding(const char *path, int named) {
    int ready[2];
    if (pipe(ready) != 0) exit(1);
    pid_t child = fork();
    if (child == 0) {
        int fd = named ? st_flock_file_named(path) : st_flock_file(path, 0);
        char ok = fd > 0 ? 'y' : 'n';
        if (write(ready[1], &ok, 1) != 1) _exit(1);
        for (;;) pause();
    }
    char ok = 'n';
    if (read(ready[0], &ok, 1) != 1 || ok != 'y') {
        fprintf(stderr, "the child could not lock %s\n", path);
        exit(1);
    }
    close(ready[0]);
    close(ready[1]);
    return child;
}

static void kill_child(pid_t child) {
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
}

static void test_bare_flock(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/queue.lock", dir);
    pid_t child = child_holding(path, 0);
    TEST_CHECK(st_flock_file(path, 0) == 0, "a held flock refuses a taker that does not wait");
    kill_child(child);
    int fd = st_flock_file(path, 0);
    TEST_CHECK(fd > 0, "free again once its holder was killed with SIGKILL: %s", st_error_get());
    /* a waiting taker (a child) blocks while we hold it, and gets it when we close; the child
     * closes its inherited copy of our fd first, which would otherwise keep our lock alive */
    pid_t waiter = fork();
    if (waiter == 0) {
        close(fd);
        _exit(st_flock_file(path, 1) > 0 ? 0 : 1);
    }
    const struct timespec pause = {0, 100 * 1000 * 1000};
    nanosleep(&pause, NULL);
    int status = 0;
    TEST_CHECK(waitpid(waiter, &status, WNOHANG) == 0, "the waiting taker is still blocked while the lock is held");
    close(fd);
    waitpid(waiter, &status, 0);
    TEST_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the waiting taker got the lock once it was closed");
    TEST_CHECK(access(path, F_OK) == 0, "a bare flock file stays (never unlinked while in use)");
    unlink(path);
}

static void test_named_flock(void) {
    char path[128], who[512], want[300], host[256];
    snprintf(path, sizeof path, "%s/worker.lock", dir);
    gethostname(host, sizeof host);
    pid_t child = child_holding(path, 1);
    TEST_CHECK(st_flock_file_named(path) == 0, "a held named flock refuses a second holder");
    FILE *f = fopen(path, "r");
    TEST_CHECK(f != NULL, "the named flock file exists");
    if (f) {
        st_flock_holder(fileno(f), who, sizeof who);
        fclose(f);
        snprintf(want, sizeof want, "pid %ld on host %s since 20", (long)child, host);
        TEST_CHECK(strncmp(who, want, strlen(want)) == 0, "holder '%s', want '%s...'", who, want);
    }
    kill_child(child);
    unlink(path);
}

static void test_clear(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/.lock", dir);
    FILE *f = fopen(path, "w");
    fputs("4242 some-other-host 2026-12-06T18:20:00Z\n", f);
    fclose(f);
    TEST_CHECK(st_lock_acquire(dir, &(st_lock){0}) == -1, "acquire refuses another host's line (the trainer would)");
    TEST_CHECK(st_lock_clear(dir) == 0 && access(path, F_OK) != 0,
               "clear removes a lock nobody holds, whatever host its line names: %s", st_error_get());
    TEST_CHECK(st_lock_clear(dir) == 0, "clear with no lock file is a no-op");
    pid_t child = fork();
    if (child == 0) {
        st_lock held;
        if (st_lock_acquire(dir, &held) != 0) _exit(1);
        for (;;) pause();
    }
    for (int i = 0; i < 500 && access(path, F_OK) != 0; i++) usleep(10000);
    usleep(50000); /* its line is written right after the flock is won */
    char want[64];
    snprintf(want, sizeof want, "in use by pid %ld", (long)child);
    TEST_CHECK(st_lock_clear(dir) == -1 && strstr(st_error_get(), want),
               "clear refuses a live holder, naming it: '%s'", st_error_get());
    TEST_CHECK(access(path, F_OK) == 0, "a live holder's lock file stays");
    kill_child(child);
    TEST_CHECK(st_lock_clear(dir) == 0 && access(path, F_OK) != 0, "cleared once its holder died");
}

int main(void) {
    snprintf(dir, sizeof dir, "sweep-queue-locks-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    test_bare_flock();
    test_named_flock();
    test_clear();
    rmdir(dir);
    return test_finish("sweep_queue_locks");
}
