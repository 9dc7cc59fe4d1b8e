/*
 * activation.h: per-element ReLU math shared by the CPU ops (kernels/cpu/activation.c,
 * batchnorm.c, conv fusions) and the CUDA kernels.
 *
 * The backward mask is taken from the forward OUTPUT y (y > 0), never from the input: fused
 * ops (conv+bias+relu, bn+relu, add+relu) keep only y, and y > 0 <=> x > 0 for ReLU.
 */
#ifndef ST_MATH_ACTIVATION_H
#define ST_MATH_ACTIVATION_H

#include "defs.h"

ST_HD float st_relu(float x) { return x > 0.0f ? x : 0.0f; }

/* dL/dx of y = relu(x), given y and dL/dy. */
ST_HD float st_relu_grad(float y, float dy) { return y > 0.0f ? dy : 0.0f; }

/* Optional ReLU of a fused op: relu != 0 applies it. */
ST_HD float st_maybe_relu(float x, int relu) { return relu ? st_relu(x) : x; }

#endif
