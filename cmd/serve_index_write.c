/*
 * serve_index_write.c: POST /index of `simtune serve` (serve.h): one new image appended to the
 * served index.
 *
 * The upload is stored as INDEX.images/<row>.<jpg|png> (atomically, data/base/fileio.h) so that
 * GET /images/<row> and `simtune search` find it by the path recorded in /paths; the index file
 * is rewritten atomically with the new row (st_embeddings_write: path.tmp, fsync, rename), then
 * the new snapshot replaces the served one. A reader of the file (SIGHUP, `simtune search`)
 * sees the old index or the new one, never a part. The caller holds server.write_mu.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/base/fileio.h"
#include "kernels/check.h"
#include "serve.h"

static char **strings_copy(char *const *src, long n, long extra) {
    char **out = ST_CALLOC((size_t)(n + extra) > 0 ? (size_t)(n + extra) : 1, sizeof(char *));
    for (long i = 0; i < n; i++) out[i] = ST_STRDUP(src ? src[i] : "");
    return out;
}

static char *strdup_or_null(const char *s) { return s ? ST_STRDUP(s) : NULL; }

/* A deep copy of e with room for one more row (n, labels, paths and metadata not yet grown). */
static void copy_plus_row(const st_embeddings *e, st_embeddings *out) {
    memset(out, 0, sizeof *out);
    *out = (st_embeddings){.n = e->n, .d = e->d, .normalized = e->normalized, .image_size = e->image_size,
                           .n_meta = e->n_meta, .gem_p = e->gem_p, .n_label_names = e->n_label_names};
    out->vectors = ST_MALLOC((size_t)(e->n + 1) * e->d * sizeof(float));
    memcpy(out->vectors, e->vectors, (size_t)e->n * e->d * sizeof(float));
    out->labels = ST_MALLOC((size_t)(e->n + 1) * sizeof(int32_t));
    memcpy(out->labels, e->labels, (size_t)e->n * sizeof(int32_t));
    out->label_names = strings_copy(e->label_names, e->n_label_names, 1);
    out->paths = strings_copy(e->paths, e->n, 1);
    out->meta_names = e->n_meta ? strings_copy(e->meta_names, e->n_meta, 0) : NULL;
    out->meta = e->n_meta ? strings_copy(e->meta, e->n * e->n_meta, e->n_meta) : NULL;
    out->model = strdup_or_null(e->model);
    out->layer = strdup_or_null(e->layer);
    out->pooling = strdup_or_null(e->pooling);
    out->weights_id = strdup_or_null(e->weights_id);
}

/* The given metadata must name columns of the index. */
static int check_columns(const st_embeddings *e, const serve_new_image *img) {
    for (int i = 0; i < img->n_meta; i++) {
        int found = 0;
        for (int c = 0; c < e->n_meta; c++) found |= !strcmp(e->meta_names[c], img->meta_names[i]);
        if (!found)
            return st_error_set("metadata column '%s' is not a column of the index (it has %d)", img->meta_names[i],
                                e->n_meta);
    }
    return 0;
}

/* Row values of the new image: label index (a new class name is appended) and metadata. */
static void fill_row(st_embeddings *e, const serve_new_image *img, const float *vector, const char *path) {
    long row = e->n;
    memcpy(e->vectors + (size_t)row * e->d, vector, (size_t)e->d * sizeof(float));
    e->labels[row] = -1;
    if (img->label && img->label[0]) {
        int c = 0;
        while (c < e->n_label_names && strcmp(e->label_names[c], img->label)) c++;
        if (c == e->n_label_names) e->label_names[e->n_label_names++] = ST_STRDUP(img->label);
        e->labels[row] = c;
    }
    e->paths[row] = ST_STRDUP(path);
    for (int c = 0; c < e->n_meta; c++) {
        const char *value = "";
        for (int i = 0; i < img->n_meta; i++)
            if (!strcmp(e->meta_names[c], img->meta_names[i])) value = img->meta_values[i];
        e->meta[(size_t)row * e->n_meta + c] = ST_STRDUP(value);
    }
    e->n = row + 1;
    if (e->n_label_names == 0) { /* still unlabelled: no /label_names, as the file had none */
        free(e->label_names);
        e->label_names = NULL;
    }
}

static int store_image(const char *index_path, long row, const serve_new_image *img, char *path, size_t size) {
    int png = img->size >= 4 && !memcmp(img->bytes, "\x89PNG", 4);
    char dir[PATH_MAX], tmp[PATH_MAX];
    snprintf(dir, sizeof dir, "%s.images", index_path);
    if (st_mkdirs(dir) != 0) return -1;
    if ((size_t)snprintf(path, size, "%s/%ld.%s", dir, row, png ? "png" : "jpg") >= size)
        return st_error_set("%s: path too long", dir);
    FILE *f = st_atomic_open(path, tmp, sizeof tmp);
    if (!f) return -1;
    if (fwrite(img->bytes, 1, img->size, f) != img->size) {
        st_atomic_abort(f, tmp);
        return st_error_set("%s: cannot write", path);
    }
    return st_atomic_commit(f, tmp, path);
}

int serve_index_add(server *s, const serve_new_image *img, const float *vector, long *row) {
    serve_index *cur = serve_index_acquire(s);
    char path[PATH_MAX];
    int rc = 0;
    if (check_columns(&cur->e, img) != 0) rc = -1;
    else if (store_image(s->o.index_path, cur->e.n, img, path, sizeof path) != 0) rc = -2;
    if (rc != 0) {
        serve_index_release(s, cur);
        return rc;
    }
    serve_index *ix = ST_CALLOC(1, sizeof *ix);
    copy_plus_row(&cur->e, &ix->e);
    fill_row(&ix->e, img, vector, path);
    memcpy(ix->warning, cur->warning, sizeof ix->warning);
    ix->refs = 1;
    serve_index_release(s, cur);
    if (st_embeddings_write(s->o.index_path, &ix->e) != 0) {
        unlink(path);
        st_embeddings_free(&ix->e);
        free(ix);
        return -2;
    }
    *row = ix->e.n - 1;
    serve_index_install(s, ix);
    return 0;
}
