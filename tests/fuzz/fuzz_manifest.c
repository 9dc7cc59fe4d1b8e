/*
 * fuzz_manifest.c: libFuzzer harness for the TSV manifest parser of data/dataset.c
 * (st_dataset_parse_tsv). A parsed dataset must be self-consistent: labels in range, classes
 * strictly sorted, paths non-empty. Built by build.sh.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_dataset ds;
    if (st_dataset_parse_tsv((const char *)data, size, "fuzz.tsv", "base", &ds) == 0) {
        if (ds.n < 1 || ds.n_classes < 1 || ds.n_classes > ds.n) abort();
        for (int i = 0; i < ds.n; i++)
            if (ds.labels[i] < 0 || ds.labels[i] >= ds.n_classes || ds.paths[i][0] == '\0') abort();
        for (int c = 1; c < ds.n_classes; c++)
            if (strcmp(ds.class_names[c - 1], ds.class_names[c]) >= 0) abort();
        st_dataset_free(&ds);
    }
    return 0;
}
