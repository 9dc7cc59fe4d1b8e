/*
 * memory.c: CPU "device" memory and BLAS-1 style ops of the backend (backend.h contracts).
 *
 * Device memory on the CPU is host memory: alloc returns zeroed 64-byte aligned blocks (one cache
 * line, the AVX-512 vector width), upload/download/copy are memcpy and sync has nothing to wait
 * for (every CPU op finishes before it returns). "Pinned" host memory is the same memory,
 * upload_async is a memcpy and upload_fence has nothing to wait for. Loops over large arrays are
 * split across the OpenMP threads; below ST_PARALLEL_MIN elements the fork/join costs more than it saves.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"
#include "cpu_ops.h"

#define CPU_ALIGN 64
#define ST_PARALLEL_MIN 32768

/* calloc, then the first 64-byte boundary past a slot that remembers calloc's pointer. calloc
 * rather than aligned_alloc + memset: large blocks come from fresh zero pages, so arenas are not
 * written twice and pages are committed only when first used. */
void *cpu_alloc(st_backend *be, size_t bytes) {
    (void)be;
    ST_CHECK(bytes <= SIZE_MAX - CPU_ALIGN - sizeof(void *), "allocation of %zu bytes", bytes);
    char *raw = calloc(1, bytes + CPU_ALIGN + sizeof(void *));
    ST_CHECK(raw != NULL, "out of memory allocating %zu bytes", bytes);
    uintptr_t start = (uintptr_t)(raw + sizeof(void *));
    char *aligned = raw + sizeof(void *) + (CPU_ALIGN - start % CPU_ALIGN) % CPU_ALIGN;
    memcpy(aligned - sizeof(void *), &raw, sizeof raw);
    return aligned;
}

void cpu_free(st_backend *be, void *ptr) {
    (void)be;
    if (!ptr) return;
    char *raw;
    memcpy(&raw, (char *)ptr - sizeof(void *), sizeof raw);
    free(raw);
}

void cpu_upload(st_backend *be, void *dst, const void *host_src, size_t bytes) {
    (void)be;
    if (bytes) memcpy(dst, host_src, bytes);
}

void cpu_download(st_backend *be, void *host_dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memcpy(host_dst, src, bytes);
}

void cpu_copy(st_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes && dst != src) memmove(dst, src, bytes);
}

void cpu_sync(st_backend *be) { (void)be; }

void *cpu_host_alloc(st_backend *be, size_t bytes) { return cpu_alloc(be, bytes); }

void cpu_host_free(st_backend *be, void *ptr) { cpu_free(be, ptr); }

void cpu_upload_async(st_backend *be, void *dst, const void *pinned_src, size_t bytes) {
    cpu_upload(be, dst, pinned_src, bytes);
}

void cpu_upload_fence(st_backend *be) { (void)be; }

/* Physical memory the kernel reports available (page cache it could drop not counted). */
void cpu_mem_info(st_backend *be, size_t *free_bytes, size_t *total_bytes) {
    (void)be;
    long page = sysconf(_SC_PAGESIZE), avail = sysconf(_SC_AVPHYS_PAGES);
    long total = sysconf(_SC_PHYS_PAGES);
    ST_CHECK(page > 0 && avail >= 0 && total > 0, "sysconf cannot tell the memory size");
    *free_bytes = (size_t)avail * (size_t)page;
    *total_bytes = (size_t)total * (size_t)page;
}

void cpu_fill(st_backend *be, float *x, float value, size_t n) {
    (void)be;
#pragma omp parallel for simd schedule(static) if (n >= ST_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) x[i] = value;
}

void cpu_scale(st_backend *be, float *x, float alpha, size_t n) {
    (void)be;
#pragma omp parallel for simd schedule(static) if (n >= ST_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) x[i] *= alpha;
}

void cpu_axpy(st_backend *be, float *y, float alpha, const float *x, size_t n) {
    (void)be;
#pragma omp parallel for simd schedule(static) if (n >= ST_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

/* Accumulated in double: gradient norms over ~25M parameters would lose digits in float. */
double cpu_sum_squares(st_backend *be, const float *x, size_t n) {
    (void)be;
    double total = 0.0;
#pragma omp parallel for simd schedule(static) reduction(+ : total) if (n >= ST_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) total += (double)x[i] * (double)x[i];
    return total;
}

int cpu_all_finite(st_backend *be, const float *x, size_t n) {
    (void)be;
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (n >= ST_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) bad |= !isfinite(x[i]);
    return !bad;
}
