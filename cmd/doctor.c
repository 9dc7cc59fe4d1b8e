/*
 * doctor.c: `simtune doctor`, what this build and this machine offer: the CUDA devices (or
 * why there are none), CUDA runtime and driver versions, cuDNN and cuBLAS versions (when built
 * with CUDA), oneDNN, OpenBLAS and HDF5 versions, and the thread counts the CPU backend uses.
 * Informative only: exits 0 whatever it finds (2 on a bad option). The CUDA parts compile only
 * under SIMTUNE_HAVE_CUDA; whether the CUDA backend really opens is checked by opening it.
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
            "Print the devices and library versions this simtune finds: CUDA devices (or why\n"
            "there are none), CUDA runtime/driver, cuDNN, cuBLAS, oneDNN, OpenBLAS, HDF5, and\n"
            "the CPU thread count. Always exits 0; it changes nothing.\n\n"
            "options:\n"
            "  -h, --help   this help\n");
}

#ifdef SIMTUNE_HAVE_CUDA
/* CUDA 12040 -> "12.4" */
static void print_cuda_version(const char *what, int version) {
    printf("%-16s %d.%d\n", what, version / 1000, (version % 1000) / 10);
}

static void print_cuda(void) {
    int runtime = 0, driver = 0;
    if (cudaRuntimeGetVersion(&runtime) == cudaSuccess)
        print_cuda_version("CUDA runtime:", runtime);
    if (cudaDriverGetVersion(&driver) == cudaSuccess && driver > 0)
        print_cuda_version("CUDA driver:", driver);
    else
        printf("%-16s none loaded (no NVIDIA driver on this machine)\n", "CUDA driver:");

    size_t cudnn = cudnnGetVersion(); /* 91900 = 9.19.0 */
    printf("%-16s %zu.%zu.%zu (built against %d.%d.%d)\n", "cuDNN:", cudnn / 10000,
           (cudnn % 10000) / 100, cudnn % 100, CUDNN_MAJOR, CUDNN_MINOR, CUDNN_PATCHLEVEL);
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
    if (count > 0 && status == cudaSuccess) {
        st_backend *be = st_backend_open("cuda", 0); /* creates the stream, cuBLAS and cuDNN */
        if (be) {
            printf("%-16s opens (stream, cuBLAS and cuDNN handles created)\n", "cuda backend:");
            st_backend_close(be);
        } else {
            printf("%-16s does not open: %s\n", "cuda backend:", st_error_get());
        }
    }
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

#ifdef SIMTUNE_HAVE_CUDA
    printf("%-16s compiled in\n", "CUDA backend:");
    print_cuda();
#else
    st_backend *be = st_backend_open("cuda", 0);
    printf("%-16s %s\n", "CUDA backend:", be ? "open" : st_error_get());
    if (be) st_backend_close(be);
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
