/*
 * init.c: the deterministic initialisation of a new model's parameters (layer.h), so a model is
 * usable without weight files (tests, the demo): He normal conv kernels, Glorot uniform dense
 * kernels, zero biases and betas, unit gammas, moving statistics (0, 1). Values are generated
 * on the host in the file layout and uploaded through st_param_upload (param.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/base/rng.h"
#include "../../kernels/check.h"
#include "layer.h"

/* Uniform in (0, 1) from the top 24 bits: exact in float. */
static float uniform01(uint64_t *state) { return ((float)(st_splitmix64(state) >> 40) + 0.5f) * 0x1.0p-24f; }

/* Two independent standard normals (Marsaglia's polar method: one log per pair). */
static void normal_pair(uint64_t *state, float out[2]) {
    float u, v, r2;
    do {
        u = 2.0f * uniform01(state) - 1.0f;
        v = 2.0f * uniform01(state) - 1.0f;
        r2 = u * u + v * v;
    } while (r2 >= 1.0f || r2 == 0.0f);
    float scale = sqrtf(-2.0f * logf(r2) / r2);
    out[0] = u * scale;
    out[1] = v * scale;
}

enum { INIT_CHUNK = 1 << 14 };

/* Fill host[0, numel) for one tensor. Each chunk of INIT_CHUNK values has its own stream derived
 * from the seed, the tensor's position and the chunk, so the values do not depend on memory
 * order nor on the thread count. He normal std sqrt(2/fan_in) for conv kernels, Glorot uniform
 * for dense kernels. */
static void init_kernel(const st_param *p, int index, uint64_t seed, float *host) {
    int conv = p->rank == 4;
    float scale = conv ? (float)sqrt(2.0 / ((double)p->dims[0] * p->dims[1] * p->dims[2]))
                       : (float)sqrt(6.0 / ((double)p->dims[0] + p->dims[1]));
    long n_chunks = (long)((p->numel + INIT_CHUNK - 1) / INIT_CHUNK);
#pragma omp parallel for schedule(static) if (n_chunks > 1)
    for (long c = 0; c < n_chunks; c++) {
        uint64_t state = seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(index + 1)) ^
                         (0x8CB92BA72F3D8DD7ull * (uint64_t)(c + 1));
        size_t begin = (size_t)c * INIT_CHUNK;
        size_t end = begin + INIT_CHUNK < p->numel ? begin + INIT_CHUNK : p->numel;
        for (size_t j = begin; j < end; j += 2) {
            float z[2];
            if (conv) {
                normal_pair(&state, z);
            } else {
                z[0] = 2.0f * uniform01(&state) - 1.0f;
                z[1] = 2.0f * uniform01(&state) - 1.0f;
            }
            host[j] = scale * z[0];
            if (j + 1 < end) host[j + 1] = scale * z[1];
        }
    }
}

/* Kernels as above; zero biases and betas, unit gammas, moving statistics (0, 1). */
void st_model_init_params(st_model *m, uint64_t seed) {
    size_t max_numel = 0;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].numel > max_numel) max_numel = m->params[i].numel;
    float *host = ST_MALLOC(max_numel * sizeof(float));
    for (int i = 0; i < m->n_params; i++) {
        st_param *p = &m->params[i];
        if (strcmp(p->weight, "kernel") == 0) {
            init_kernel(p, i, seed, host);
        } else {
            float v = (strcmp(p->weight, "gamma") == 0 || strcmp(p->weight, "moving_variance") == 0)
                          ? 1.0f : 0.0f;
            for (size_t j = 0; j < p->numel; j++) host[j] = v;
        }
        st_param_upload(m, p, host, p->value);
    }
    free(host);
}
