/* arena.c: bump allocation over one backend allocation. */
#include "arena.h"

#include "backend.h"
#include "check.h"

enum { ARENA_ALIGN = 64 };

float *st_arena_take(st_arena *a, size_t n) {
    size_t bytes = (n * sizeof(float) + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    size_t offset = a->used;
    a->used += bytes;
    if (!a->base) return NULL;
    ST_CHECK(a->used <= a->capacity, "arena '%s' overflow: %zu > %zu bytes (layout changed between passes?)",
             a->name ? a->name : "?", a->used, a->capacity);
    return (float *)(a->base + offset);
}

void st_arena_commit(st_arena *a, struct st_backend *be) {
    ST_CHECK(!a->base, "arena '%s' committed twice", a->name ? a->name : "?");
    a->backend = be;
    a->capacity = a->used;
    a->base = be->alloc(be, a->capacity);
    a->used = 0;
}

void st_arena_rewind(st_arena *a) { a->used = 0; }

void st_arena_free(st_arena *a) {
    if (a->base) a->backend->free(a->backend, a->base);
    a->base = NULL;
    a->capacity = a->used = 0;
}
