/*
 * embeddings_h5.h: the embedding file of simtune (written by `simtune embed`, read by topk,
 * eval and search).
 *
 * Schema (HDF5, all datasets at the root):
 *   /embeddings   float32 (N, D)   one row per image; must be finite (other numeric types are
 *                                  converted to float32 on read)
 *   /labels       int32   (N)      class index into /label_names, -1 = unknown (optional:
 *                                  absent means every label is -1)
 *   /label_names  strings (C)      class names (optional; variable or fixed length)
 *   /paths        strings (N)      image path of each row, as the embedder was given it (optional)
 *   /metadata_columns strings (M)  names of the manifest's extra columns (optional, with:)
 *   /metadata     strings (N, M)   their values per row, "" when empty
 *   attributes on /: model, layer, pooling (strings), normalized (integer 0/1), image_size
 *                    (integer, the crop side the images were embedded at), weights_id (string,
 *                    16 hex digits: the hash of the parameters that built the vectors,
 *                    infer/embedder.h), gem_p (float, the exponent of pooling gem) - all
 *                    optional
 *
 * Validation on read: a non-finite value fails with "<file>: /embeddings: row <i> ...", a label
 * below -1 or beyond /label_names, and a /labels or /paths length different from N, fail too.
 * Callers that need equal dimensions across files compare `d` themselves
 * (st_embeddings_check_dims gives the standard message).
 *
 * Two ways to read: st_embeddings_read loads everything; st_embeddings_reader streams row
 * ranges of /embeddings so a gallery larger than memory can be searched tile by tile.
 * Ownership: every pointer in st_embeddings is malloc'ed and freed by st_embeddings_free.
 */
#ifndef ST_EMBEDDINGS_H5_H
#define ST_EMBEDDINGS_H5_H

#include <hdf5.h>
#include <stdint.h>

typedef struct st_embeddings {
    long n;               /* rows N */
    int d;                /* dimension D */
    float *vectors;       /* (N, D) row-major */
    int32_t *labels;      /* (N), -1 = unknown; never NULL after a read */
    char **label_names;   /* (C) or NULL */
    int n_label_names;    /* C */
    char **paths;         /* (N) or NULL when the file has none */
    char *model;          /* attributes; NULL when absent */
    char *layer;
    char *pooling;
    int normalized;       /* 1 / 0, or -1 when the attribute is absent */
    int image_size;       /* crop side used by `simtune embed`, 0 when absent */
    int n_meta;           /* M metadata columns, 0 when none */
    char **meta_names;    /* (M) or NULL */
    char **meta;          /* (N, M) row-major or NULL */
    char *weights_id;     /* NULL when absent */
    float gem_p;          /* GeM exponent of pooling gem, 0 when absent */
} st_embeddings;

/* Load the whole file; 0, or -1 with st_error_set naming the file and the dataset/row. */
int st_embeddings_read(const char *path, st_embeddings *out);

/* Write atomically (path.tmp, fsync, rename). labels may be NULL (written as all -1);
 * label_names, paths, metadata (n_meta = 0) and the string attributes may be NULL (omitted). */
int st_embeddings_write(const char *path, const st_embeddings *e);

void st_embeddings_free(st_embeddings *e);

/* -1 with "<file_b>: /embeddings: dimension D_b differs from D_a of <file_a>" when they differ. */
int st_embeddings_check_dims(const char *path_a, int d_a, const char *path_b, int d_b);

/* Streaming access to /embeddings. */
typedef struct st_embeddings_reader {
    char *path;
    hid_t file, dataset, file_space;
    long n; /* N */
    int d;  /* D */
} st_embeddings_reader;

int st_embeddings_reader_open(const char *path, st_embeddings_reader *r);
/* Read rows [start, start+count) into dst (count, D); fails naming the first non-finite row. */
int st_embeddings_reader_rows(st_embeddings_reader *r, long start, long count, float *dst);
void st_embeddings_reader_close(st_embeddings_reader *r);

/* 0 when every value of the (n, d) block is finite, else -1 with
 * "<path>: /embeddings: row <first_row + i> has a non-finite value (NaN or inf) at column <j>". */
int st_embeddings_check_finite(const float *x, long n, int d, long first_row, const char *path);

#endif
