/*
 * backward.h: the backward pass of the ResNet model (infer/model.h), hand-written per step, no
 * autograd.
 *
 * Where the gradient enters (the convention with the loss): the loss writes the gradient of the
 * model's FINAL output, the last head layer:
 *   num_classes > 0            -> m->d_logits     (N, K)   e.g. softmax cross-entropy
 *   else embed_dim > 0         -> m->d_embedding  (N, D)   gradient w.r.t. the L2-normalised
 *                                                          embedding, e.g. triplet loss
 *   else                       -> m->d_features   (N, C)   pooled features
 * The other two are overwritten by backward as intermediate head gradients.
 *
 * st_model_backward walks the steps in reverse from there, for the first n images of the last
 * training forward (st_model_forward(m, n, 1) with the same n), and stops at the delimiting
 * layer: nothing is computed for frozen layers, and the input gradient of the first trainable
 * conv is not computed when nothing below it trains. It OVERWRITES the gradient of every
 * trainable parameter (st_param.grad); BN moving statistics get none.
 * Callers: the trainer (train/), tests.
 */
#ifndef ST_BACKWARD_H
#define ST_BACKWARD_H

#include "../infer/model.h"

void st_model_backward(st_model *m, int n);

#endif
