/*
 * test_fileio.c: data/base/fileio.h on its own. mkdir -p creates every level and accepts what exists;
 * an atomic write leaves exactly the new content and no .tmp, and one whose rename fails leaves
 * the target untouched and no .tmp; appends accumulate whole lines; a failing device (/dev/full,
 * which answers every write with ENOSPC) gives a message naming the file and the OS reason.
 * Writes under fileio_t/ in the test directory; needs no fixtures.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/base/fileio.h"
#include "kernels/check.h"
#include "test_util.h"

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = ST_CALLOC(4096, 1);
    size_t n = fread(buf, 1, 4095, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void expect_error(int rc, const char *what, const char *name, const char *reason) {
    const char *msg = st_error_get();
    TEST_CHECK(rc == -1 && strstr(msg, name) && (!reason || strstr(msg, reason)), "%s: rc %d, message %s", what,
               rc, msg);
    printf("  %s -> %s\n", what, msg);
}

static void test_mkdirs(void) {
    TEST_CHECK(st_mkdirs("fileio_t/a/b/c") == 0 && is_dir("fileio_t/a/b/c"), "mkdir -p: %s", st_error_get());
    TEST_CHECK(st_mkdirs("fileio_t/a/b/c/") == 0, "mkdir -p of an existing folder: %s", st_error_get());
    FILE *f = fopen("fileio_t/plain", "w");
    ST_CHECK(f, "cannot create fileio_t/plain");
    fclose(f);
    expect_error(st_mkdirs("fileio_t/plain/sub"), "mkdir under a file", "fileio_t/plain/sub", "Not a directory");
}

static void test_atomic(void) {
    char tmp[256];
    FILE *f = st_atomic_open("fileio_t/state.txt", tmp, sizeof tmp);
    TEST_CHECK(f && strcmp(tmp, "fileio_t/state.txt.tmp") == 0, "atomic open: %s", st_error_get());
    fputs("new state\n", f);
    TEST_CHECK(st_atomic_commit(f, tmp, "fileio_t/state.txt") == 0, "atomic commit: %s", st_error_get());
    char *text = slurp("fileio_t/state.txt");
    TEST_CHECK(text && strcmp(text, "new state\n") == 0 && !exists(tmp), "atomic write: content %s", text);
    free(text);

    /* a folder where the file should go: the rename fails, the folder stays, no .tmp */
    ST_CHECK(st_mkdirs("fileio_t/taken") == 0, "%s", st_error_get());
    f = st_atomic_open("fileio_t/taken", tmp, sizeof tmp);
    ST_CHECK(f, "%s", st_error_get());
    fputs("lost\n", f);
    expect_error(st_atomic_commit(f, tmp, "fileio_t/taken"), "rename over a folder", "fileio_t/taken", NULL);
    TEST_CHECK(is_dir("fileio_t/taken") && !exists("fileio_t/taken.tmp"), "failed commit: target changed or .tmp left");

    f = st_atomic_open("fileio_t/dropped.txt", tmp, sizeof tmp);
    ST_CHECK(f, "%s", st_error_get());
    st_atomic_abort(f, tmp);
    TEST_CHECK(!exists("fileio_t/dropped.txt") && !exists(tmp), "abort left a file");
    expect_error(st_file_commit("fileio_t/missing.tmp", "fileio_t/missing"), "commit of a missing tmp",
                 "fileio_t/missing", "No such file");
}

static void test_append(void) {
    TEST_CHECK(st_file_append("fileio_t/log.jsonl", "{\"a\": 1}\n") == 0 &&
                   st_file_append("fileio_t/log.jsonl", "{\"a\": 2}\n") == 0,
               "append: %s", st_error_get());
    char *text = slurp("fileio_t/log.jsonl");
    TEST_CHECK(text && strcmp(text, "{\"a\": 1}\n{\"a\": 2}\n") == 0, "append: content %s", text);
    free(text);
    if (exists("/dev/full"))
        expect_error(st_file_append("/dev/full", "{\"a\": 3}\n"), "append to a full device", "/dev/full",
                     "No space left on device");
}

int main(void) {
    ST_CHECK(system("rm -rf fileio_t") == 0, "cannot clear fileio_t");
    test_mkdirs();
    test_atomic();
    test_append();
    return test_finish("test_fileio");
}
