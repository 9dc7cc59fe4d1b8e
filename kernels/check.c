/* check.c: the failure paths behind check.h. */
#include "check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void st_fail_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "simtune: error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (%s:%d)\n", file, line);
    va_end(ap);
    exit(EXIT_FAILURE);
}

void *st_malloc_at(size_t bytes, const char *file, int line) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) st_fail_at(file, line, "out of memory allocating %zu bytes", bytes);
    return p;
}

void *st_calloc_at(size_t count, size_t size, const char *file, int line) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) st_fail_at(file, line, "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

char *st_strdup_at(const char *s, const char *file, int line) {
    size_t n = strlen(s) + 1;
    char *p = st_malloc_at(n, file, line);
    memcpy(p, s, n);
    return p;
}

static _Thread_local char error_message[4096];

int st_error_set(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_message, sizeof error_message, fmt, ap);
    va_end(ap);
    return -1;
}

const char *st_error_get(void) { return error_message[0] ? error_message : "unknown error"; }
