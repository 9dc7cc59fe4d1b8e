/* cpu_backend.h: the CPU backend (OpenMP threads, OpenBLAS GEMMs, oneDNN convolutions). */
#ifndef ST_CPU_BACKEND_H
#define ST_CPU_BACKEND_H

#include "../backend.h"

st_backend *st_cpu_backend_create(int threads);

#endif
