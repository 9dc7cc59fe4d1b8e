/*
 * arena.h: one allocation per class of memory (parameters, gradients, optimizer state,
 * activations), carved into tensors by a bump pointer.
 *
 * Use in two passes, as llm.c does with its size tables:
 *   1. sizing:  st_arena a = {0}; lay everything out with st_arena_take(&a, n) -> NULL pointers,
 *               a.used grows to the total;
 *   2. commit:  st_arena_commit(&a, be) allocates a.used bytes once (zeroed), then the same
 *               layout code runs again and gets real pointers.
 * Every block is 64-byte aligned, so vector loads and cuDNN are happy with any slice.
 */
#ifndef ST_ARENA_H
#define ST_ARENA_H

#include <stddef.h>

struct st_backend;

typedef struct st_arena {
    const char *name;           /* "params", "grads", "optimizer", "activations" (for messages) */
    struct st_backend *backend; /* owner of base, NULL while sizing */
    char *base;                 /* device memory, NULL while sizing */
    size_t capacity;            /* bytes allocated */
    size_t used;                /* bytes handed out so far */
} st_arena;

/* Hand out n floats; NULL while sizing. Fails loudly on overflow of a committed arena. */
float *st_arena_take(st_arena *a, size_t n);
/* Allocate what the sizing pass measured, zeroed, and rewind for the real pass. */
void st_arena_commit(st_arena *a, struct st_backend *be);
/* Rewind to empty without freeing (reuse the same layout). */
void st_arena_rewind(st_arena *a);
void st_arena_free(st_arena *a);

#endif
