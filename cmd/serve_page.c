/*
 * serve_page.c: what `simtune serve` answers a search with (serve.h):
 *   serve_page_upload    GET /: the upload form (a file input that takes a photo from a phone's
 *                        camera or a dropped file, k, metric); with an error, the reason above it
 *   serve_page_results   POST /: the form again, then the top-k as thumbnails (each linked to
 *                        GET /images/<id>) with rank, score, label, path and every metadata
 *                        column (http(s) values as links, infer/html.h), timings
 *   serve_json_results   POST /search: exactly `simtune search --json`'s object (infer/report.h
 *                        st_report_search_json), with queue_s and batch_size added to its
 *                        timings and the request_id
 * Every string from the index or the request goes through st_html_text (data/base/text.h); the
 * pages use no script at all. Returned texts are malloc'ed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/base/json.h"
#include "infer/html.h"
#include "infer/query.h"
#include "infer/report.h"
#include "kernels/check.h"
#include "serve.h"

static const char *const page_css =
    "body{font-family:sans-serif;margin:1em} form{margin:1em 0;padding:1em;border:1px dashed #888}"
    " figure{display:inline-block;vertical-align:top;margin:4px;width:170px;font-size:12px;"
    "word-break:break-all} figure img{width:160px;height:160px;object-fit:contain;border:1px solid #ccc}"
    " .error{color:#b00;font-weight:bold}";

static FILE *page_stream(char **text, size_t *size) {
    FILE *f = open_memstream(text, size);
    ST_CHECK(f != NULL, "open_memstream");
    return f;
}

static void upload_form(FILE *f, server *s, const serve_index *ix) {
    fputs("<h1>simtune image search</h1>\n<p>", f);
    fprintf(f, "%ld images in ", ix->e.n);
    st_html_text(f, s->o.index_path);
    fputs(". Take a photo or pick (or drop) a JPEG or PNG image.</p>\n"
          "<form method=\"post\" action=\"/\" enctype=\"multipart/form-data\">\n"
          "<p><input type=\"file\" id=\"image\" name=\"image\" accept=\"image/*\" required></p>\n", f);
    fprintf(f, "<p><label>results <input type=\"number\" id=\"k\" name=\"k\" value=\"%d\" min=\"1\" "
            "max=\"1000\"></label>\n<label>metric <select name=\"metric\"><option>cosine</option>"
            "<option>ip</option><option>l2</option></select></label>\n"
            "<button type=\"submit\" id=\"search\">Search</button></p>\n</form>\n", s->o.k);
}

char *serve_page_upload(server *s, const char *error) {
    char *text = NULL;
    size_t size = 0;
    FILE *f = page_stream(&text, &size);
    serve_index *ix = serve_index_acquire(s);
    st_html_page_begin(f, "simtune search", page_css);
    if (error) {
        fputs("<p class=\"error\" id=\"error\">", f);
        st_html_text(f, error);
        fputs("</p>\n", f);
    }
    upload_form(f, s, ix);
    st_html_page_end(f);
    serve_index_release(s, ix);
    fclose(f);
    return text;
}

static const char *label_of(const st_embeddings *e, int64_t row) {
    int32_t l = e->labels[row];
    return l >= 0 && e->label_names ? e->label_names[l] : NULL;
}

static void result_figure(FILE *f, const st_embeddings *e, const st_topk_result *r, int j) {
    int64_t row = r->index[j];
    const char *label = label_of(e, row);
    fprintf(f, "<figure class=\"result\"><a href=\"/images/%lld\"><img src=\"/images/%lld\" alt=\"result %d\">"
            "</a><figcaption>%d. <span class=\"score\">%.4f</span> <span class=\"label\">",
            (long long)row, (long long)row, j + 1, j + 1, r->score[j]);
    st_html_text(f, label ? label : "");
    fputs("</span><br>", f);
    st_html_text(f, e->paths ? e->paths[row] : "");
    for (int c = 0; c < e->n_meta; c++) st_html_metadata(f, e->meta_names[c], e->meta[(size_t)row * e->n_meta + c]);
    fputs("</figcaption></figure>\n", f);
}

char *serve_page_results(server *s, const serve_answer *a) {
    char *text = NULL;
    size_t size = 0;
    FILE *f = page_stream(&text, &size);
    const serve_query *q = a->q;
    st_html_page_begin(f, "simtune search: results", page_css);
    upload_form(f, s, q->index);
    fputs("<h2>results for ", f);
    st_html_text(f, a->query_name);
    fprintf(f, "</h2>\n<p>%s, embedded in %.1f ms (batch of %d), searched in %.1f ms, %.1f ms in all.</p>\n",
            st_metric_name(q->to.metric), q->embed_s * 1e3, q->batch_size, q->search_s * 1e3, a->total_s * 1e3);
    if (q->index->warning[0]) {
        fputs("<p class=\"error\">warning: ", f);
        st_html_text(f, q->index->warning);
        fputs("</p>\n", f);
    }
    fputs("<div id=\"results\">\n", f);
    for (int j = 0; j < q->r.k && q->r.index[j] >= 0; j++) result_figure(f, &q->index->e, &q->r, j);
    fputs("</div>\n", f);
    st_html_page_end(f);
    fclose(f);
    return text;
}

/* search --json's text for this answer (infer/report.c), parsed back to add to it. */
static json_t *search_json(server *s, const serve_answer *a) {
    const serve_query *q = a->q;
    const st_embeddings *e = &q->index->e;
    st_search_results r = {a->query_name,   s->o.index_path, s->weights, e, &q->r,
                           st_query_label_of(e, a->query_name, a->query_label),
                           q->index->warning[0] ? q->index->warning : NULL, q->embed_s, q->search_s, a->total_s};
    char *text = NULL;
    size_t size = 0;
    FILE *f = page_stream(&text, &size);
    int rc = st_report_search_json(f, &r);
    fclose(f);
    json_t *j = rc == 0 ? json_loads(text, 0, NULL) : NULL;
    free(text);
    ST_CHECK(j != NULL, "the search JSON could not be written: %s", st_error_get());
    return j;
}

char *serve_json_results(server *s, const serve_answer *a) {
    json_t *j = search_json(s, a);
    json_t *timings = json_object_get(j, "timings");
    json_object_set_new(timings, "queue_s", st_json_number(a->q->queue_s));
    json_object_set_new(timings, "batch_size", json_integer(a->q->batch_size));
    json_object_set_new(j, "request_id", st_json_text(a->request_id));
    char *text = json_dumps(j, JSON_INDENT(2) | ST_JSON_PRECISION(6));
    json_decref(j);
    ST_CHECK(text != NULL, "json_dumps");
    return text;
}
