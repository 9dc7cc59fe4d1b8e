/* arch.c: the ResNet family table: block counts, block type, BN epsilon and preprocessing. */
#include <string.h>

#include "model.h"

static const st_arch_info archs[] = {
    {"resnet50", ST_FAMILY_KERAS_V1, {3, 4, 6, 3}, 1, 1.001e-5f, ST_PREPROCESS_CAFFE},
    {"resnet101", ST_FAMILY_KERAS_V1, {3, 4, 23, 3}, 1, 1.001e-5f, ST_PREPROCESS_CAFFE},
    {"resnet152", ST_FAMILY_KERAS_V1, {3, 8, 36, 3}, 1, 1.001e-5f, ST_PREPROCESS_CAFFE},
    {"resnet50v2", ST_FAMILY_KERAS_V2, {3, 4, 6, 3}, 1, 1.001e-5f, ST_PREPROCESS_TF},
    {"resnet101v2", ST_FAMILY_KERAS_V2, {3, 4, 23, 3}, 1, 1.001e-5f, ST_PREPROCESS_TF},
    {"resnet152v2", ST_FAMILY_KERAS_V2, {3, 8, 36, 3}, 1, 1.001e-5f, ST_PREPROCESS_TF},
    {"tv_resnet18", ST_FAMILY_TORCHVISION, {2, 2, 2, 2}, 0, 1e-5f, ST_PREPROCESS_TORCH},
    {"tv_resnet34", ST_FAMILY_TORCHVISION, {3, 4, 6, 3}, 0, 1e-5f, ST_PREPROCESS_TORCH},
    {"tv_resnet50", ST_FAMILY_TORCHVISION, {3, 4, 6, 3}, 1, 1e-5f, ST_PREPROCESS_TORCH},
    {"tv_resnet101", ST_FAMILY_TORCHVISION, {3, 4, 23, 3}, 1, 1e-5f, ST_PREPROCESS_TORCH},
    {"tv_resnet152", ST_FAMILY_TORCHVISION, {3, 8, 36, 3}, 1, 1e-5f, ST_PREPROCESS_TORCH},
};
enum { N_ARCHS = sizeof archs / sizeof archs[0] };

const st_arch_info *st_arch_find(const char *name) {
    for (int i = 0; i < N_ARCHS; i++)
        if (name && strcmp(archs[i].name, name) == 0) return &archs[i];
    return NULL;
}

const char *st_arch_names(void) {
    return "resnet50, resnet101, resnet152, resnet50v2, resnet101v2, resnet152v2, "
           "tv_resnet18, tv_resnet34, tv_resnet50, tv_resnet101, tv_resnet152";
}
