/*
 * test_text.c: data/base/text.h on its own: HTML escaping of every special character (and
 * nothing else), name tables (lookup, absent names, the joined list an error message shows,
 * truncation of that list), path stems, and the parse/name pairs built on them
 * (st_preprocess_parse, st_metric_parse, st_protocol_parse) agreeing in both directions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/base/text.h"
#include "data/transform.h"
#include "infer/eval.h"
#include "infer/topk.h"
#include "kernels/check.h"
#include "test_util.h"

static void check_escape(void) {
    char buf[256] = {0};
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    st_html_text(f, "a<b>&\"c'\xc3\xa9");
    fclose(f);
    TEST_CHECK(!strcmp(buf, "a&lt;b&gt;&amp;&quot;c&#39;\xc3\xa9"), "escaped as '%s'", buf);
}

static void check_names(void) {
    static const char *const names[] = {"caffe", "tf", "torch", NULL};
    TEST_CHECK(st_name_index(names, "caffe") == 0 && st_name_index(names, "torch") == 2, "lookup");
    TEST_CHECK(st_name_index(names, "Torch") == -1 && st_name_index(names, "") == -1, "absent names");
    char buf[64], tiny[8];
    TEST_CHECK(!strcmp(st_names_join(names, buf, sizeof buf), "caffe, tf, torch"), "joined '%s'", buf);
    TEST_CHECK(!strcmp(st_names_join(names, tiny, sizeof tiny), "caffe, "), "truncated '%s'", tiny);
}

static void check_stems(void) {
    const char *cases[][3] = {{"a/conv1_conv/kernel:0", ":", "kernel"},
                              {"configs/sweep.v2.yaml", ".", "sweep"},
                              {"plain", ".", "plain"},
                              {"dir/", ".", ""}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *stem = st_path_stem(cases[i][0], cases[i][1]);
        TEST_CHECK(!strcmp(stem, cases[i][2]), "stem of '%s' is '%s'", cases[i][0], stem);
        free(stem);
    }
}

static void check_parse_pairs(void) {
    for (int m = ST_PREPROCESS_CAFFE; m <= ST_PREPROCESS_TORCH; m++) {
        st_preprocess back;
        TEST_CHECK(!st_preprocess_parse(st_preprocess_name(m), &back) && back == (st_preprocess)m, "preprocess %d", m);
    }
    for (int m = ST_METRIC_COSINE; m <= ST_METRIC_L2; m++) {
        st_metric back;
        TEST_CHECK(!st_metric_parse(st_metric_name(m), &back) && back == (st_metric)m, "metric %d", m);
    }
    st_protocol p;
    TEST_CHECK(!st_protocol_parse("rank100", &p) && p == ST_PROTOCOL_RANK100, "rank100");
    TEST_CHECK(!strcmp(st_protocol_name(ST_PROTOCOL_FILES), "files"), "files has a name");
    TEST_CHECK(st_protocol_parse("files", &p) == -1, "files is implied, not chosen");
    TEST_CHECK(strstr(st_error_get(), "expected split, loo, rank100") != NULL, "message: %s", st_error_get());
    st_metric m;
    TEST_CHECK(st_metric_parse("dot", &m) == -1 && strstr(st_error_get(), "'dot' (expected cosine, ip, l2)"),
               "message: %s", st_error_get());
}

int main(void) {
    check_escape();
    check_names();
    check_stems();
    check_parse_pairs();
    return test_finish("test_text");
}
