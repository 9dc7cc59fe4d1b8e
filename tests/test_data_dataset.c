/*
 * test_data_dataset.c: data/dataset.c and data/sampler.c.
 *  - folder trees: class order, labels, sorted paths, recursion, non-images ignored
 *  - TSV manifests: relative paths, header, comments, CRLF; malformed lines fail naming the line
 *  - for indexing: root images of a class tree and flat folders unlabelled, other files listed as
 *    skipped with the reason; header manifests with metadata columns, CSV quoting, path-only
 *    lists; the training loader still requires labels
 *  - combining datasets keeps labels apart
 *  - stratified split: per-class counts, disjoint cover, determinism by seed; split files
 *  - samplers: shuffle is a permutation per epoch, PK structure (P distinct classes, K each,
 *    distinct when the class is big enough), class-balanced frequencies, save/restore
 * Builds its trees under ./data_ds (the build tree); file contents do not matter here.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/dataset.h"
#include "data/sampler.h"
#include "kernels/check.h"
#include "test_util.h"

static void touch(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "test setup: cannot create %s\n", path);
        exit(1);
    }
    fclose(f);
}

/* classes b (5 images), a (3, one in a subfolder), c (12); plus noise that must be ignored */
static void make_tree(void) {
    char path[256];
    mkdir("data_ds", 0755);
    mkdir("data_ds/tree", 0755);
    const char *classes[3] = {"b", "a", "c"};
    const int counts[3] = {5, 3, 12};
    for (int c = 0; c < 3; c++) {
        snprintf(path, sizeof path, "data_ds/tree/%s", classes[c]);
        mkdir(path, 0755);
        for (int i = 0; i < counts[c]; i++) {
            snprintf(path, sizeof path, "data_ds/tree/%s/img%02d.%s", classes[c], counts[c] - 1 - i, i % 2 ? "PNG" : "jpg");
            touch(path);
        }
    }
    mkdir("data_ds/tree/a/sub", 0755);
    rename("data_ds/tree/a/img00.jpg", "data_ds/tree/a/sub/img00.jpg");
    touch("data_ds/tree/a/notes.txt");
    touch("data_ds/tree/README.md");
    touch("data_ds/tree/a/.hidden.png");
}

static void test_folder(void) {
    make_tree();
    st_dataset ds;
    int rc = st_dataset_load("data_ds/tree", &ds);
    TEST_CHECK(rc == 0, "load folder: %s", st_error_get());
    if (rc) return;
    TEST_CHECK(ds.n == 20 && ds.n_classes == 3, "n %d classes %d, want 20 and 3", ds.n, ds.n_classes);
    TEST_CHECK(!strcmp(ds.class_names[0], "a") && !strcmp(ds.class_names[1], "b") && !strcmp(ds.class_names[2], "c"),
               "classes must be sorted by name");
    for (int i = 1; i < ds.n; i++) {
        TEST_CHECK(ds.labels[i - 1] <= ds.labels[i], "labels not grouped at %d", i);
        if (ds.labels[i - 1] == ds.labels[i])
            TEST_CHECK(strcmp(ds.paths[i - 1], ds.paths[i]) < 0, "paths not sorted at %d", i);
    }
    TEST_CHECK(!strcmp(ds.paths[0], "data_ds/tree/a/img01.PNG") && !strcmp(ds.paths[2], "data_ds/tree/a/sub/img00.jpg"),
               "unexpected first paths %s, %s", ds.paths[0], ds.paths[2]);
    st_dataset_free(&ds);
    TEST_CHECK(st_dataset_load("data_ds/nope", &ds) == -1 && strstr(st_error_get(), "data_ds/nope"),
               "a missing dataset must fail naming it");
    mkdir("data_ds/empty", 0755);
    TEST_CHECK(st_dataset_load("data_ds/empty", &ds) == -1 && strstr(st_error_get(), "no images"),
               "an empty folder must fail");
}

static void test_tsv(void) {
    const char *text = "path\tlabel\r\n# comment\n\nx/1.png\tcat\r\n/abs/2.png\tdog\nx/0.png\tcat";
    st_dataset ds;
    int rc = st_dataset_parse_tsv(text, strlen(text), "m.tsv", "base", &ds);
    TEST_CHECK(rc == 0, "parse: %s", st_error_get());
    if (rc == 0) {
        TEST_CHECK(ds.n == 3 && ds.n_classes == 2, "n %d classes %d", ds.n, ds.n_classes);
        TEST_CHECK(!strcmp(ds.paths[0], "base/x/0.png") && !strcmp(ds.paths[1], "base/x/1.png") &&
                       !strcmp(ds.paths[2], "/abs/2.png"),
                   "paths %s %s %s", ds.paths[0], ds.paths[1], ds.paths[2]);
        TEST_CHECK(ds.labels[0] == 0 && ds.labels[2] == 1 && !strcmp(ds.class_names[1], "dog"), "labels");
        st_dataset_free(&ds);
    }
    const char *bad[] = {"a.png\tx\nb.png\n", "a.png\tx\n\tx\n", "a.png\tx\nb.png\t\n", "a.png\tx\nb.png\tx\ty\n"};
    for (int i = 0; i < 4; i++) {
        TEST_CHECK(st_dataset_parse_tsv(bad[i], strlen(bad[i]), "bad.tsv", "", &ds) == -1, "bad manifest %d accepted", i);
        TEST_CHECK(strstr(st_error_get(), "bad.tsv: line 2") != NULL, "message must name line 2: %s", st_error_get());
    }
    TEST_CHECK(st_dataset_parse_tsv("", 0, "empty.tsv", "", &ds) == -1, "an empty manifest must fail");

    FILE *f = fopen("data_ds/list.tsv", "w");
    fprintf(f, "tree/b/img00.jpg\tb\ntree/a/img01.PNG\ta\n");
    fclose(f);
    rc = st_dataset_load("data_ds/list.tsv", &ds);
    TEST_CHECK(rc == 0 && ds.n == 2 && !strcmp(ds.paths[0], "data_ds/tree/a/img01.PNG"),
               "manifest paths must be relative to its folder: %s", rc ? st_error_get() : ds.paths[0]);
    if (rc == 0) st_dataset_free(&ds);
}

static void test_combine_and_split(void) {
    st_dataset a, b;
    TEST_CHECK(st_dataset_load("data_ds/tree", &a) == 0, "load");
    const char *text = "p1\ta\np2\ta\np3\tz\n";
    TEST_CHECK(st_dataset_parse_tsv(text, strlen(text), "t", "", &b) == 0, "parse");
    st_dataset parts[2] = {a, b}, all;
    const char *names[2] = {"tree", "tsv"};
    st_dataset_combine(parts, names, 2, &all);
    TEST_CHECK(all.n == 23 && all.n_classes == 5, "combined n %d classes %d, want 23 and 5", all.n, all.n_classes);
    TEST_CHECK(!strcmp(all.class_names[0], "tree/a") && !strcmp(all.class_names[3], "tsv/a"),
               "class 'a' of both datasets must stay apart: %s %s", all.class_names[0], all.class_names[3]);
    st_dataset_free(&b);

    st_dataset train, val, train2, val2, train3, val3;
    TEST_CHECK(st_dataset_split(&a, 0.25, 42, &train, &val) == 0, "split");
    int tc[3], vc[3];
    st_dataset_class_counts(&train, tc);
    st_dataset_class_counts(&val, vc);
    /* round(0.25 * 3) = 1, round(0.25 * 5) = 1, round(0.25 * 12) = 3 */
    TEST_CHECK(vc[0] == 1 && vc[1] == 1 && vc[2] == 3, "val counts %d %d %d, want 1 1 3", vc[0], vc[1], vc[2]);
    TEST_CHECK(tc[0] == 2 && tc[1] == 4 && tc[2] == 9, "train counts %d %d %d", tc[0], tc[1], tc[2]);
    for (int i = 0; i < val.n; i++)
        for (int j = 0; j < train.n; j++) TEST_CHECK(strcmp(val.paths[i], train.paths[j]), "%s in both", val.paths[i]);
    TEST_CHECK(train.n_classes == 3 && val.n_classes == 3, "splits keep every class");
    st_dataset_split(&a, 0.25, 42, &train2, &val2);
    int same = val2.n == val.n;
    for (int i = 0; same && i < val.n; i++) same = !strcmp(val.paths[i], val2.paths[i]);
    TEST_CHECK(same, "the same seed must give the same split");
    int differs = 0;
    for (uint64_t seed = 1; seed < 6; seed++) {
        st_dataset_split(&a, 0.25, seed, &train3, &val3);
        for (int i = 0; i < val.n; i++) differs += strcmp(val.paths[i], val3.paths[i]) != 0;
        st_dataset_free(&train3);
        st_dataset_free(&val3);
    }
    TEST_CHECK(differs > 0, "other seeds must give other splits");
    TEST_CHECK(st_dataset_split(&a, 1.0, 1, &train3, &val3) == -1, "ratio 1 must fail");

    TEST_CHECK(st_dataset_write_paths(&val, "data_ds/val.split") == 0, "write split: %s", st_error_get());
    st_dataset sel;
    TEST_CHECK(st_dataset_select_file(&a, "data_ds/val.split", &sel) == 0, "select: %s", st_error_get());
    same = sel.n == val.n && sel.n_classes == a.n_classes;
    for (int i = 0; same && i < val.n; i++) same = !strcmp(val.paths[i], sel.paths[i]) && val.labels[i] == sel.labels[i];
    TEST_CHECK(same, "a split file must round-trip");
    st_dataset_free(&sel);
    FILE *f = fopen("data_ds/bad.split", "w");
    fprintf(f, "%s\nnot/there.png\n", a.paths[0]);
    fclose(f);
    TEST_CHECK(st_dataset_select_file(&a, "data_ds/bad.split", &sel) == -1 && strstr(st_error_get(), "line 2"),
               "an unknown path must fail naming the line: %s", st_error_get());
    st_dataset_free(&train);
    st_dataset_free(&val);
    st_dataset_free(&train2);
    st_dataset_free(&val2);
    st_dataset_free(&all);
    st_dataset_free(&a);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    ST_CHECK(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* Folders for indexing: a class tree with a root image, a .webp and a text file; a flat folder. */
static void test_index_folders(void) {
    mkdir("data_ds/mixed", 0755);
    mkdir("data_ds/mixed/x", 0755);
    mkdir("data_ds/mixed/y", 0755);
    touch("data_ds/mixed/x/1.png");
    touch("data_ds/mixed/x/2.jpg");
    touch("data_ds/mixed/root.png");
    touch("data_ds/mixed/notes.txt");
    touch("data_ds/mixed/y/photo.webp");
    st_dataset ds;
    TEST_CHECK(st_dataset_load("data_ds/mixed", &ds) == 0, "strict load: %s", st_error_get());
    TEST_CHECK(ds.n == 2 && ds.n_classes == 1 && ds.n_skipped == 3, "strict: n %d classes %d skipped %d, want 2 1 3",
               ds.n, ds.n_classes, ds.n_skipped);
    const char *reasons[3] = {"root.png: at the root of the class tree", "photo.webp: unsupported image format",
                              "notes.txt: not a PNG or JPEG file"};
    for (int r = 0; r < 3; r++) {
        int found = 0;
        for (int i = 0; i < ds.n_skipped; i++) found |= strstr(ds.skipped[i], reasons[r]) != NULL;
        TEST_CHECK(found, "skipped list lacks '%s'", reasons[r]);
    }
    st_dataset_free(&ds);
    TEST_CHECK(st_dataset_load_index("data_ds/mixed", &ds) == 0, "index load: %s", st_error_get());
    TEST_CHECK(ds.n == 3 && ds.n_classes == 1 && ds.n_skipped == 2 && ds.labels[0] == -1 &&
                   !strcmp(ds.paths[0], "data_ds/mixed/root.png") && ds.labels[1] == 0,
               "index: n %d classes %d skipped %d first %s label %d", ds.n, ds.n_classes, ds.n_skipped,
               ds.n ? ds.paths[0] : "", ds.n ? ds.labels[0] : 0);
    st_dataset_free(&ds);

    mkdir("data_ds/flat", 0755);
    touch("data_ds/flat/b.jpg");
    touch("data_ds/flat/a.PNG");
    TEST_CHECK(st_dataset_load("data_ds/flat", &ds) == -1 && strstr(st_error_get(), "no images"),
               "a flat folder has no classes to train on: %s", st_error_get());
    TEST_CHECK(st_dataset_load_index("data_ds/flat", &ds) == 0, "flat index: %s", st_error_get());
    TEST_CHECK(ds.n == 2 && ds.n_classes == 0 && ds.labels[0] == -1 && ds.labels[1] == -1 &&
                   !strcmp(ds.paths[0], "data_ds/flat/a.PNG"),
               "flat: n %d classes %d", ds.n, ds.n_classes);
    st_dataset_free(&ds);
}

/* Manifests with a header: metadata columns, CSV quoting, path-only lists. */
static void test_manifest_columns(void) {
    const char *text = "# products\npath\tpage\tlabel\tmanual\nx.png\t3\tcat\tM1\ny.png\t4\tdog\t\n";
    st_dataset ds;
    TEST_CHECK(st_dataset_parse_tsv(text, strlen(text), "h.tsv", "", &ds) == 0, "header: %s", st_error_get());
    if (ds.n == 2) {
        TEST_CHECK(ds.n_meta == 2 && !strcmp(ds.meta_names[0], "page") && !strcmp(ds.meta_names[1], "manual"),
                   "metadata columns");
        TEST_CHECK(!strcmp(ds.paths[1], "y.png") && ds.labels[1] == 1 && !strcmp(ds.meta[2], "4") &&
                       !strcmp(ds.meta[3], "") && !strcmp(ds.meta[1], "M1"),
                   "metadata follows its row through the sort");
        st_dataset_free(&ds);
    }
    write_text("data_ds/m.csv", "path,label,title\n\"a,1.png\",cat,\"He said \"\"hi\"\"\"\nb.png,,plain\n");
    TEST_CHECK(st_dataset_load("data_ds/m.csv", &ds) == -1 && strstr(st_error_get(), "m.csv: line 3"),
               "an empty label must fail for training: %s", st_error_get());
    TEST_CHECK(st_dataset_load_index("data_ds/m.csv", &ds) == 0, "csv: %s", st_error_get());
    if (ds.n == 2) {
        TEST_CHECK(!strcmp(ds.paths[0], "data_ds/b.png") && ds.labels[0] == -1 && !strcmp(ds.paths[1], "data_ds/a,1.png") &&
                       !strcmp(ds.meta[1], "He said \"hi\"") && ds.n_classes == 1,
                   "csv rows %s %s meta %s", ds.paths[0], ds.paths[1], ds.meta[1]);
        st_dataset_free(&ds);
    }
    write_text("data_ds/paths.tsv", "path\nq/1.png\nq/2.png\n");
    TEST_CHECK(st_dataset_load("data_ds/paths.tsv", &ds) == -1 && strstr(st_error_get(), "no label column"),
               "a path-only manifest must fail for training: %s", st_error_get());
    TEST_CHECK(st_dataset_load_index("data_ds/paths.tsv", &ds) == 0 && ds.n == 2 && ds.n_classes == 0,
               "path-only manifest for indexing: %s", st_error_get());
    st_dataset_free(&ds);
    const char *bad[] = {"path\tlabel\tpage\na.png\tx\t1\nb.png\tx\n", "path,label\n\"a.png,x\n"};
    const char *why[] = {"line 3: the number of fields", "line 2: a quoted field is not closed"};
    for (int i = 0; i < 2; i++) {
        write_text("data_ds/bad.csv", bad[i]);
        TEST_CHECK(st_dataset_load_index("data_ds/bad.csv", &ds) == -1 && strstr(st_error_get(), why[i]),
                   "bad manifest %d: %s", i, st_error_get());
    }
}

/* A synthetic dataset: class c has sizes[c] images, labels grouped. */
static st_dataset synthetic(const int *sizes, int n_classes) {
    st_dataset ds = {0};
    for (int c = 0; c < n_classes; c++) ds.n += sizes[c];
    ds.paths = calloc((size_t)ds.n, sizeof(char *));
    ds.labels = malloc((size_t)ds.n * sizeof(int32_t));
    ds.n_classes = n_classes;
    ds.class_names = calloc((size_t)n_classes, sizeof(char *));
    int k = 0;
    for (int c = 0; c < n_classes; c++) {
        char name[16];
        snprintf(name, sizeof name, "c%02d", c);
        ds.class_names[c] = ST_STRDUP(name);
        for (int i = 0; i < sizes[c]; i++, k++) {
            char path[32];
            snprintf(path, sizeof path, "c%02d/%03d", c, i);
            ds.paths[k] = ST_STRDUP(path);
            ds.labels[k] = c;
        }
    }
    return ds;
}

static void test_shuffle(void) {
    const int sizes[4] = {10, 7, 3, 5};
    st_dataset ds = synthetic(sizes, 4);
    st_sampler_config cfg = {ST_SAMPLE_SHUFFLE, 8, 0, 0, 0, 11};
    st_sampler s;
    TEST_CHECK(st_sampler_init(&s, &cfg, &ds) == 0, "init");
    TEST_CHECK(st_sampler_batches_per_epoch(&s) == 4, "25 images / 8 = 4 batches (last partial)");
    int first[25], idx[8];
    for (int epoch = 0; epoch < 3; epoch++) {
        st_sampler_begin_epoch(&s);
        int seen[25] = {0}, n = 0, got;
        while ((got = st_sampler_next_batch(&s, idx)) > 0) {
            for (int i = 0; i < got; i++) {
                seen[idx[i]]++;
                if (epoch == 0) first[n + i] = idx[i];
            }
            n += got;
        }
        TEST_CHECK(n == 25, "epoch %d gave %d samples", epoch, n);
        for (int i = 0; i < 25; i++) TEST_CHECK(seen[i] == 1, "epoch %d: index %d seen %d times", epoch, i, seen[i]);
    }
    int identity = 1;
    for (int i = 0; i < 25; i++) identity &= first[i] == i;
    TEST_CHECK(!identity, "a shuffled epoch must not be the identity");
    st_sampler_free(&s);
    cfg.drop_last = 1;
    st_sampler_init(&s, &cfg, &ds);
    TEST_CHECK(st_sampler_batches_per_epoch(&s) == 3, "drop_last: 3 full batches");
    st_sampler_free(&s);
    st_dataset_free(&ds);
}

static void test_pk(void) {
    const int sizes[6] = {10, 2, 8, 4, 1, 6}; /* classes 1 and 4 have fewer than K = 4 images */
    st_dataset ds = synthetic(sizes, 6);
    st_sampler_config cfg = {ST_SAMPLE_PK, 0, 3, 4, 0, 5};
    st_sampler s;
    TEST_CHECK(st_sampler_init(&s, &cfg, &ds) == 0, "init pk: %s", st_error_get());
    TEST_CHECK(st_sampler_batches_per_epoch(&s) == 31 / 12, "31 images / 12 per batch");
    int idx[12], class_used[6] = {0};
    for (int epoch = 0; epoch < 40; epoch++) {
        st_sampler_begin_epoch(&s);
        int got;
        while ((got = st_sampler_next_batch(&s, idx)) > 0) {
            TEST_CHECK(got == 12, "PK batch of %d", got);
            for (int p = 0; p < 3; p++) {
                const int c = ds.labels[idx[p * 4]];
                class_used[c]++;
                for (int q = 0; q < p; q++) TEST_CHECK(ds.labels[idx[q * 4]] != c, "class %d twice in a batch", c);
                int distinct = 1;
                for (int j = 0; j < 4; j++) {
                    TEST_CHECK(ds.labels[idx[p * 4 + j]] == c, "group %d mixes classes", p);
                    for (int k = 0; k < j; k++) distinct &= idx[p * 4 + j] != idx[p * 4 + k];
                }
                if (sizes[c] >= 4) TEST_CHECK(distinct, "class %d (%d images) repeated an image", c, sizes[c]);
                else { /* every image of a small class appears, then repeats fill the group */
                    int class_start = 0;
                    for (int q = 0; q < c; q++) class_start += sizes[q];
                    for (int m = class_start; m < class_start + sizes[c]; m++) {
                        int found = 0;
                        for (int j = 0; j < 4; j++) found |= idx[p * 4 + j] == m;
                        TEST_CHECK(found, "small class %d misses image %d", c, m);
                    }
                }
            }
        }
    }
    for (int c = 0; c < 6; c++) TEST_CHECK(class_used[c] > 15, "class %d chosen only %d times in 80 batches", c, class_used[c]);
    st_sampler_free(&s);
    cfg.p = 7;
    TEST_CHECK(st_sampler_init(&s, &cfg, &ds) == -1 && strstr(st_error_get(), "P = 7"), "P > classes must fail");
    st_dataset_free(&ds);
}

static void test_balanced(void) {
    const int sizes[3] = {200, 20, 2};
    st_dataset ds = synthetic(sizes, 3);
    st_sampler_config cfg = {ST_SAMPLE_BALANCED, 37, 0, 0, 0, 9};
    st_sampler s;
    st_sampler_init(&s, &cfg, &ds);
    int per_class[3] = {0}, total = 0, idx[37], got;
    for (int epoch = 0; epoch < 20; epoch++) {
        st_sampler_begin_epoch(&s);
        while ((got = st_sampler_next_batch(&s, idx)) > 0)
            for (int i = 0; i < got; i++, total++) per_class[ds.labels[idx[i]]]++;
    }
    TEST_CHECK(total == 20 * 222, "balanced epochs have n samples");
    /* each class has probability 1/3: binomial sd = sqrt(4440 * 2/9) = 31; allow 5 sd */
    for (int c = 0; c < 3; c++)
        TEST_CHECK(fabs(per_class[c] - total / 3.0) < 5 * 31.5, "class %d drawn %d times of %d", c, per_class[c], total);
    st_sampler_free(&s);
    st_dataset_free(&ds);
}

static void test_save_restore(void) {
    const int sizes[5] = {9, 4, 6, 7, 5};
    st_dataset ds = synthetic(sizes, 5);
    for (int mode = ST_SAMPLE_SHUFFLE; mode <= ST_SAMPLE_BALANCED; mode++) {
        st_sampler_config cfg = {(st_sample_mode)mode, 4, 2, 3, 0, 77};
        st_sampler a, b;
        st_sampler_init(&a, &cfg, &ds);
        st_sampler_init(&b, &cfg, &ds);
        int idx_a[8], idx_b[8];
        uint64_t words[ST_SAMPLER_STATE_WORDS];
        st_sampler_begin_epoch(&a);
        st_sampler_begin_epoch(&a);
        st_sampler_next_batch(&a, idx_a); /* epoch 1, one batch in */
        st_sampler_save(&a, words);
        TEST_CHECK(st_sampler_restore(&b, words) == 0, "restore: %s", st_error_get());
        st_sampler_begin_epoch(&b);
        for (int step = 0; step < 12; step++) { /* across the epoch boundary */
            int na = st_sampler_next_batch(&a, idx_a), nb = st_sampler_next_batch(&b, idx_b);
            if (na == 0) st_sampler_begin_epoch(&a), na = st_sampler_next_batch(&a, idx_a);
            if (nb == 0) st_sampler_begin_epoch(&b), nb = st_sampler_next_batch(&b, idx_b);
            TEST_CHECK(na == nb && !memcmp(idx_a, idx_b, (size_t)na * sizeof(int)) && a.epoch == b.epoch,
                       "mode %d step %d: restored sampler diverged", mode, step);
        }
        /* saved at the end of an epoch: the restored sampler starts the next epoch */
        st_sampler c;
        st_sampler_init(&c, &cfg, &ds);
        while (st_sampler_next_batch(&a, idx_a) > 0) continue;
        st_sampler_save(&a, words);
        TEST_CHECK(st_sampler_restore(&c, words) == 0, "restore at epoch end: %s", st_error_get());
        st_sampler_begin_epoch(&a);
        st_sampler_begin_epoch(&c);
        int na = st_sampler_next_batch(&a, idx_a), nc = st_sampler_next_batch(&c, idx_b);
        TEST_CHECK(a.epoch == c.epoch && na == nc && !memcmp(idx_a, idx_b, (size_t)na * sizeof(int)),
                   "mode %d: restored at epoch end, epoch %d vs %d or first batch differs", mode, a.epoch, c.epoch);
        st_sampler_free(&c);
        words[0] ^= 1;
        TEST_CHECK(st_sampler_restore(&b, words) == -1, "a foreign state must be refused");
        st_sampler_free(&a);
        st_sampler_free(&b);
    }
    st_dataset_free(&ds);
}

int main(void) {
    test_folder();
    test_tsv();
    test_index_folders();
    test_manifest_columns();
    test_combine_and_split();
    test_shuffle();
    test_pk();
    test_balanced();
    test_save_restore();
    return test_finish("test_data_dataset");
}
