/*
 * doctor.c: `simtune doctor`, what this build and this machine offer. First one plain line on
 * the CUDA backend: compiled in or not, and whether it opens (device, memory, cuDNN version) or
 * why not (the backend's own error), checked by opening it; then the CUDA devices, CUDA runtime
 * and driver versions, cuDNN and cuBLAS versions (when built with CUDA), oneDNN, OpenBLAS and
 * HDF5 versions, and the thread counts the CPU backend uses. Informative only: exits 0 whatever
 * it finds (2 on a bad option). The CUDA parts compile only under SIMTUNE_HAVE_CUDA.
 */
#include <getopt.h>
#include <omp.h>
#include <stdio.h>

#include <cblas.h>
#include <dnnl.h>
#include <hdf5.h>

#include "commands.h"
#include "kernels/backend.h"
#include "kernels/check.h"

#ifdef SIMTUNE_HAVE_CUDA
#include "kernels/cuda/cuda_check.h"
#endif

static void usage(FILE *out) {
    fprintf(out,
            "usage: simtune doctor [--help]\n\n"
            "Print whether the CUDA backend is compiled in and whether it opens (device,\n"
            "memory, cuDNN version) or why not, then the devices and library versions this\n"
            "simtune finds: CUDA devices (or why there are none), CUDA runtime/driver, cuDNN,\n"
            "cuBLAS, oneDNN, OpenBLAS, HDF5, and the CPU thread count. Always exits 0; it\n"
            "changes nothing.\n\n"
            "options:\n"
            "  -h, --help   this help\n");
}

#ifdef SIMTUNE_HAVE_CUDA
/* CUDA 12040 -> "12.4" */
static void print_cuda_version(const char *what, int version) {
    printf("%-16s %d.%d\n", what, version / 1000, (version % 1000) / 10);
}

/* The cuDNN library loaded at run time, "9.19.0" (cudnnGetVersion: 91900). */
static void format_cudnn_version(char *out, size_t size) {
    size_t v = cudnnGetVersion();
    snprintf(out, size, "%zu.%zu.%zu", v / 10000, (v % 10000) / 100, v % 100);
}

static void print_cuda(void) {
    int runtime = 0, driver = 0;
    if (cudaRuntimeGetVersion(&runtime) == cudaSuccess)
        print_cuda_version("CUDA runtime:", runtime);
    if (cudaDriverGetVersion(&driver) == cudaSuccess && driver > 0)
        print_cuda_version("CUDA driver:", driver);
    else
        printf("%-16s none loaded (no NVIDIA driver on this machine)\n", "CUDA driver:");

    char cudnn[64];
    format_cudnn_version(cudnn, sizeof cudnn);
    printf("%-16s %s (built against %d.%d.%d)\n", "cuDNN:", cudnn, CUDNN_MAJOR, CUDNN_MINOR,
           CUDNN_PATCHLEVEL);
    int major = 0, minor = 0, patch = 0;
    if (cublasGetProperty(MAJOR_VERSION, &major) == CUBLAS_STATUS_SUCCESS &&
        cublasGetProperty(MINOR_VERSION, &minor) == CUBLAS_STATUS_SUCCESS &&
        cublasGetProperty(PATCH_LEVEL, &patch) == CUBLAS_STATUS_SUCCESS)
        printf("%-16s %d.%d.%d\n", "cuBLAS:", major, minor, patch);

    int count = 0;
    cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        (void)cudaGetLastError();
        printf("%-16s no CUDA device: %s\n", "devices:", cudaGetErrorString(status));
    } else if (count == 0) {
        printf("%-16s no CUDA device: the runtime found 0 devices\n", "devices:");
    }
    for (int i = 0; i < count; i++) {
        struct cudaDeviceProp prop;
        if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
            (void)cudaGetLastError();
            printf("%-16s %d: properties unavailable\n", "device:", i);
            continue;
        }
        printf("%-16s %d: %s, compute capability %d.%d, %d SMs, %.1f GiB\n", "device:", i,
               prop.name, prop.major, prop.minor, prop.multiProcessorCount,
               (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    }
}

/* The plain line: opening the backend (stream, cuBLAS and cuDNN handles) is the only proof. */
static void print_cuda_backend(void) {
    st_backend *be = st_backend_open("cuda", 0);
    if (!be) {
        printf("%-16s compiled in; does not open: %s\n", "CUDA backend:", st_error_get());
        return;
    }
    int device = 0;
    size_t free_bytes = 0, total_bytes = 0;
    struct cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    char cudnn[64];
    format_cudnn_version(cudnn, sizeof cudnn);
    const double gib = 1024.0 * 1024.0 * 1024.0;
    printf("%-16s compiled in; opens on device %d: %s, %.1f GiB (%.1f GiB free), cuDNN %s\n",
           "CUDA backend:", device, prop.name, (double)total_bytes / gib,
           (double)free_bytes / gib, cudnn);
    st_backend_close(be);
}
#else
static void print_cuda_backend(void) {
    st_backend *be = st_backend_open("cuda", 0); /* NULL: its message says how to build it */
    ST_CHECK(!be, "a build without CUDA opened the cuda backend");
    printf("%-16s not compiled in: %s\n", "CUDA backend:", st_error_get());
}
#endif

int cmd_doctor(int argc, char **argv) {
    static const struct option options[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 0;
        }
        fprintf(stderr, "try 'simtune doctor --help'\n");
        return 2;
    }
    if (optind != argc) {
        fprintf(stderr, "simtune doctor: unexpected argument '%s'\ntry 'simtune doctor --help'\n",
                argv[optind]);
        return 2;
    }

    print_cuda_backend();
#ifdef SIMTUNE_HAVE_CUDA
    print_cuda();
#endif

    const dnnl_version_t *dnnl = dnnl_version();
    printf("%-16s %d.%d.%d\n", "oneDNN:", dnnl->major, dnnl->minor, dnnl->patch);
    printf("%-16s %s\n", "OpenBLAS:", openblas_get_config());
    unsigned h5_major = 0, h5_minor = 0, h5_release = 0;
    if (H5get_libversion(&h5_major, &h5_minor, &h5_release) >= 0)
        printf("%-16s %u.%u.%u\n", "HDF5:", h5_major, h5_minor, h5_release);
    printf("%-16s %d cores, OpenMP uses %d threads (OMP_NUM_THREADS)\n",
           "threads:", omp_get_num_procs(), omp_get_max_threads());
    return 0;
}
