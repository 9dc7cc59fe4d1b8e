/*
 * losses_fixture.h: reader for the record files written by tests/torch_losses.py.
 * Record: char name[48]; int32 dtype (0 int32, 1 float32, 2 float64); int64 count; data.
 * fixture_load() reads a whole file into memory (NULL when absent, so the caller can skip);
 * fixture_get() returns a record by name and dtype and fails the test loudly if it is missing.
 * Used by tests/test_losses_torch.c and tests/test_optim_torch.c.
 */
#ifndef ST_TEST_LOSSES_FIXTURE_H
#define ST_TEST_LOSSES_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fixture_record {
    char name[48];
    int32_t dtype;
    int64_t count;
    void *data;
} fixture_record;

typedef struct fixture {
    fixture_record *records;
    int n;
} fixture;

static inline size_t fixture_dtype_size(int32_t dtype) { return dtype == 2 ? 8 : 4; }

static inline fixture *fixture_load(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fixture *fx = calloc(1, sizeof *fx);
    int capacity = 0;
    for (;;) {
        fixture_record r;
        if (fread(r.name, 1, 48, f) != 48) break;
        if (fread(&r.dtype, 4, 1, f) != 1 || fread(&r.count, 8, 1, f) != 1 || r.dtype < 0 ||
            r.dtype > 2 || r.count < 0) {
            fprintf(stderr, "FAIL: %s: truncated or corrupt record header\n", path);
            exit(1);
        }
        r.name[47] = '\0';
        size_t bytes = (size_t)r.count * fixture_dtype_size(r.dtype);
        r.data = malloc(bytes ? bytes : 1);
        if (fread(r.data, 1, bytes, f) != bytes) {
            fprintf(stderr, "FAIL: %s: record %s truncated\n", path, r.name);
            exit(1);
        }
        if (fx->n == capacity) {
            capacity = capacity ? 2 * capacity : 64;
            fx->records = realloc(fx->records, sizeof(fixture_record) * (size_t)capacity);
        }
        fx->records[fx->n++] = r;
    }
    fclose(f);
    return fx;
}

/* The record "prefix/index/field" (index < 0: "prefix/field"); checks dtype and, when
 * expected_count >= 0, the element count. */
static inline void *fixture_get(const fixture *fx, const char *prefix, int index, const char *field,
                                int32_t dtype, int64_t expected_count) {
    char name[96];
    if (index >= 0)
        snprintf(name, sizeof name, "%s/%d/%s", prefix, index, field);
    else
        snprintf(name, sizeof name, "%s/%s", prefix, field);
    for (int i = 0; i < fx->n; i++) {
        const fixture_record *r = &fx->records[i];
        if (strcmp(r->name, name) != 0) continue;
        if (r->dtype != dtype || (expected_count >= 0 && r->count != expected_count)) {
            fprintf(stderr, "FAIL: fixture record %s: dtype %d count %lld, expected %d %lld\n",
                    name, r->dtype, (long long)r->count, dtype, (long long)expected_count);
            exit(1);
        }
        return r->data;
    }
    fprintf(stderr, "FAIL: fixture record %s missing (HINT: re-run tests/torch_losses.py)\n", name);
    exit(1);
}

static inline void fixture_free(fixture *fx) {
    for (int i = 0; i < fx->n; i++) free(fx->records[i].data);
    free(fx->records);
    free(fx);
}

/* Convert a float64 reference to float32 for test_rel_error / TEST_CLOSE. */
static inline float *fixture_to_float(const double *x, size_t n) {
    float *out = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) out[i] = (float)x[i];
    return out;
}

#endif
