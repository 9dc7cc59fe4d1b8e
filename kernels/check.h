/*
 * check.h: the one family of error-check macros.
 *
 * Every failure names file:line and, where a library is involved, the library's own error string,
 * then exits non-zero. Never exit(0) on an error. A HINT tells the user what to do next.
 *
 *   ST_CHECK(cond, fmt, ...)      fail with a formatted message when cond is false
 *   ST_FAIL(fmt, ...)             fail unconditionally
 *   ST_MALLOC(bytes)              malloc that fails loudly (never returns NULL)
 *   ST_CALLOC(count, size)        calloc likewise
 *   ST_DNNL(call)                 oneDNN status check (needs dnnl.h where it is used)
 *   CUDA_CHECK / CUBLAS_CHECK / CUDNN_CHECK live in kernels/cuda/cuda_check.h
 *
 * Recoverable errors (bad user input in a library routine that the caller wants to report itself)
 * use st_error_set()/st_error_get(): a thread-local message buffer, so a loader can return -1 and
 * the command prints "file: thing: problem" and exits 1.
 */
#ifndef ST_CHECK_H
#define ST_CHECK_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define ST_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define ST_NORETURN __attribute__((noreturn))
#else
#define ST_PRINTF(a, b)
#define ST_NORETURN
#endif

ST_NORETURN void st_fail_at(const char *file, int line, const char *fmt, ...) ST_PRINTF(3, 4);
void *st_malloc_at(size_t bytes, const char *file, int line);
void *st_calloc_at(size_t count, size_t size, const char *file, int line);
char *st_strdup_at(const char *s, const char *file, int line);

#define ST_FAIL(...) st_fail_at(__FILE__, __LINE__, __VA_ARGS__)
#define ST_CHECK(cond, ...) do { if (!(cond)) st_fail_at(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define ST_MALLOC(bytes) st_malloc_at((bytes), __FILE__, __LINE__)
#define ST_CALLOC(count, size) st_calloc_at((count), (size), __FILE__, __LINE__)
#define ST_STRDUP(s) st_strdup_at((s), __FILE__, __LINE__)

#define ST_DNNL(call)                                                                         \
    do {                                                                                      \
        dnnl_status_t dnnl_status_ = (call);                                                  \
        if (dnnl_status_ != dnnl_success)                                                     \
            st_fail_at(__FILE__, __LINE__, "oneDNN: %s: %s", #call, dnnl_status2str(dnnl_status_)); \
    } while (0)

/* Recoverable errors: set a message (printf-style) and return -1 to the caller. */
int st_error_set(const char *fmt, ...) ST_PRINTF(1, 2);
const char *st_error_get(void);

#ifdef __cplusplus
}
#endif
#endif
