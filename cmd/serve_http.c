/*
 * serve_http.c: the HTTP side of `simtune serve` on libmicrohttpd (Debian libmicrohttpd-dev),
 * one thread per connection (serve.h says who does what).
 *
 * Routes:
 *   GET  /              upload page (text/html)
 *   POST /              search from the page's form; the results page (text/html)
 *   POST /search        search; search --json's object (application/json)
 *   GET  /images/<id>   the indexed image of row <id> (decimal digits only), read from the path
 *                       the index records: nothing of the URL is ever used as a path
 *   GET  /healthz       {"status": "ok", "images": N}
 *   GET  /metrics       Prometheus text (serve_metrics.c)
 *   POST /index         add an image (--allow-write, "Authorization: Bearer <token>")
 * A search takes the image as the multipart/form-data field `image` or as the raw body, and k,
 * metric (and query_label) as form fields or URL arguments.
 *
 * Limits: a body above max_upload_bytes is refused with 413 (by Content-Length before reading,
 * else while reading); the image's pixel count is checked from its header before decoding
 * (400); a full queue or a query still queued after request_timeout_s gives 503; idle
 * connections close after idle_timeout_s; at most max_connections at once. Every answer carries
 * X-Request-Id and nosniff, pages a Content-Security-Policy without scripts; every request is
 * logged on stderr as "serve: <id> <method> <url> <status> <ms> ms" when it completes.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "data/base/clock.h"
#include "data/base/json.h"
#include "data/image.h"
#include "kernels/check.h"
#include "serve.h"

enum { MAX_FIELDS = 32, MAX_FIELD_BYTES = 4096, MAX_K = 1000 };

typedef struct request {
    server *s;
    char id[20], method[8], url[160];
    double t0;
    int status;
    struct MHD_PostProcessor *pp;
    uint8_t *body; /* the image: the raw body or the `image` field */
    size_t body_len;
    char *filename;
    char *names[MAX_FIELDS], *values[MAX_FIELDS];
    int n_fields, too_large;
    char form_error[128];
} request;

/* ---- answers -------------------------------------------------------------------------- */

static enum MHD_Result reply(request *r, struct MHD_Connection *c, int status, const char *type, char *body) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, "X-Request-Id", r->id);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (!strncmp(type, "text/html", 9))
        MHD_add_response_header(resp, "Content-Security-Policy",
                                "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; form-action 'self'");
    if (status == MHD_HTTP_UNAUTHORIZED) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    r->status = status;
    enum MHD_Result ok = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static enum MHD_Result reply_json(request *r, struct MHD_Connection *c, int status, json_t *j) {
    char *text = json_dumps(j, JSON_INDENT(2));
    json_decref(j);
    ST_CHECK(text != NULL, "json_dumps");
    return reply(r, c, status, "application/json", text);
}

/* An error for an API route (JSON) or the page (the form with the reason). */
static enum MHD_Result reply_error(request *r, struct MHD_Connection *c, int status, const char *message,
                                   int html) {
    if (html) return reply(r, c, status, "text/html; charset=utf-8", serve_page_upload(r->s, message));
    return reply_json(r, c, status,
                      json_pack("{s:o, s:s}", "error", st_json_text(message), "request_id", r->id));
}

/* ---- reading the request -------------------------------------------------------------- */

static void append_body(request *r, const char *data, size_t size) {
    if (r->too_large) return;
    if (r->body_len + size > (size_t)r->s->o.max_upload_bytes) {
        r->too_large = 1;
        free(r->body);
        r->body = NULL;
        r->body_len = 0;
        return;
    }
    r->body = realloc(r->body, r->body_len + size + 1);
    ST_CHECK(r->body != NULL, "out of memory");
    memcpy(r->body + r->body_len, data, size);
    r->body_len += size;
}

/* A small form field (k, metric, label, metadata), pieces appended in order. */
static void append_field(request *r, const char *key, const char *data, size_t size) {
    int i = r->n_fields - 1;
    if (i < 0 || strcmp(r->names[i], key)) {
        if (r->n_fields == MAX_FIELDS) {
            snprintf(r->form_error, sizeof r->form_error, "more than %d form fields", MAX_FIELDS);
            return;
        }
        i = r->n_fields++;
        r->names[i] = ST_STRDUP(key);
        r->values[i] = ST_CALLOC(1, 1);
    }
    size_t have = strlen(r->values[i]);
    if (have + size > MAX_FIELD_BYTES) {
        snprintf(r->form_error, sizeof r->form_error, "form field '%.40s' is longer than %d bytes", key,
                 MAX_FIELD_BYTES);
        return;
    }
    r->values[i] = realloc(r->values[i], have + size + 1);
    ST_CHECK(r->values[i] != NULL, "out of memory");
    memcpy(r->values[i] + have, data, size);
    r->values[i][have + size] = '\0';
}

static enum MHD_Result on_field(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                const char *content_type, const char *transfer_encoding, const char *data,
                                uint64_t off, size_t size) {
    (void)kind, (void)content_type, (void)transfer_encoding, (void)off;
    request *r = cls;
    if (!strcmp(key, "image")) {
        if (filename && !r->filename) r->filename = ST_STRDUP(filename);
        append_body(r, data, size);
    } else if (size > 0) {
        append_field(r, key, data, size);
    }
    return MHD_YES;
}

/* A form field, else the URL argument, else NULL. */
static const char *param(request *r, struct MHD_Connection *c, const char *name) {
    for (int i = 0; i < r->n_fields; i++)
        if (!strcmp(r->names[i], name)) return r->values[i];
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
}

/* The URL for the log line: printable ASCII only, truncated. */
static void log_copy(char *dst, size_t size, const char *src) {
    size_t n = 0;
    for (; *src && n + 1 < size; src++) dst[n++] = (*src > ' ' && *src < 127) ? *src : '?';
    dst[n] = '\0';
}

static request *request_new(server *s, const char *url, const char *method) {
    request *r = ST_CALLOC(1, sizeof *r);
    r->s = s;
    r->t0 = st_now_seconds();
    log_copy(r->method, sizeof r->method, method);
    log_copy(r->url, sizeof r->url, url);
    pthread_mutex_lock(&s->mu);
    snprintf(r->id, sizeof r->id, "%08lx", ++s->next_request_id);
    s->in_flight++;
    pthread_mutex_unlock(&s->mu);
    return r;
}

static void request_free(request *r) {
    if (r->pp) MHD_destroy_post_processor(r->pp);
    for (int i = 0; i < r->n_fields; i++) {
        free(r->names[i]);
        free(r->values[i]);
    }
    free(r->body);
    free(r->filename);
    free(r);
}

/* ---- searching ------------------------------------------------------------------------ */

/* k and metric from the request into q->to: 0, or 400 with the reason in err. */
static int parse_search_params(request *r, struct MHD_Connection *c, serve_query *q, char *err, size_t size) {
    q->to = (st_topk_options){ST_METRIC_COSINE, r->s->o.k, 0, 0, NULL};
    const char *k = param(r, c, "k"), *metric = param(r, c, "metric");
    if (k) {
        char *end;
        long v = strtol(k, &end, 10);
        if (!isdigit((unsigned char)k[0]) || *end || v < 1 || v > MAX_K) {
            snprintf(err, size, "k '%.40s' is not an integer in 1..%d", k, MAX_K);
            return MHD_HTTP_BAD_REQUEST;
        }
        q->to.k = (int)v;
    }
    if (metric && st_metric_parse(metric, &q->to.metric) != 0) {
        snprintf(err, size, "metric: %s", st_error_get());
        return MHD_HTTP_BAD_REQUEST;
    }
    return 0;
}

/* The upload through decode, the queue and the batcher into q: 200, or the status with err. */
static int run_query(request *r, struct MHD_Connection *c, serve_query *q, char *err, size_t size) {
    server *s = r->s;
    if (r->too_large) {
        snprintf(err, size, "the upload is larger than the limit of %ld bytes (--max-upload-mb)",
                 s->o.max_upload_bytes);
        return MHD_HTTP_CONTENT_TOO_LARGE;
    }
    if (r->form_error[0]) return snprintf(err, size, "%s", r->form_error), MHD_HTTP_BAD_REQUEST;
    if (!r->body_len) {
        snprintf(err, size, "no image: send it as the multipart field 'image' or as the request body");
        return MHD_HTTP_BAD_REQUEST;
    }
    int status = parse_search_params(r, c, q, err, size);
    if (status) return status;
    q->input = ST_MALLOC(st_embedder_input_floats(s->em) * sizeof(float));
    if (st_embedder_prepare(s->em, r->body, r->body_len, r->filename ? r->filename : "upload", s->o.max_pixels,
                            q->input) != 0) {
        snprintf(err, size, "%s", st_error_get());
        return MHD_HTTP_BAD_REQUEST;
    }
    if (serve_submit(s, q) != 0) {
        snprintf(err, size, "busy: %d queries are waiting (--queue); retry later", s->o.queue);
        return MHD_HTTP_SERVICE_UNAVAILABLE;
    }
    if (serve_wait(s, q) != 0) {
        snprintf(err, size, "busy: still queued after %.0f s; retry later", s->o.request_timeout_s);
        return MHD_HTTP_SERVICE_UNAVAILABLE;
    }
    return MHD_HTTP_OK;
}

static enum MHD_Result route_search(request *r, struct MHD_Connection *c, int html) {
    serve_query q;
    memset(&q, 0, sizeof q);
    char err[512];
    int status = run_query(r, c, &q, err, sizeof err);
    enum MHD_Result ok;
    if (status != MHD_HTTP_OK) {
        ok = reply_error(r, c, status, err, html);
    } else {
        serve_answer a = {r->filename ? r->filename : "upload", param(r, c, "query_label"), &q,
                          st_now_seconds() - r->t0, r->id};
        ok = html ? reply(r, c, status, "text/html; charset=utf-8", serve_page_results(r->s, &a))
                  : reply(r, c, status, "application/json", serve_json_results(r->s, &a));
    }
    serve_query_free(r->s, &q);
    return ok;
}

/* ---- images, health --------------------------------------------------------------------- */

static const char *image_type(const uint8_t *b, size_t n) {
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) return "image/jpeg";
    if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) return "image/png";
    return "application/octet-stream";
}

/* GET /images/<id>: only a row of the index, by its decimal number. */
static enum MHD_Result route_image(request *r, struct MHD_Connection *c, const char *id_text) {
    char err[512];
    long id = -1;
    size_t digits = strspn(id_text, "0123456789");
    if (digits > 0 && digits < 16 && !id_text[digits]) id = strtol(id_text, NULL, 10);
    serve_index *ix = serve_index_acquire(r->s);
    enum MHD_Result ok;
    uint8_t *bytes = NULL;
    size_t size = 0;
    if (id < 0 || id >= ix->e.n || !ix->e.paths) {
        snprintf(err, sizeof err, "no image with id '%.40s' (ids are 0..%ld)", id_text, ix->e.n - 1);
        ok = reply_error(r, c, MHD_HTTP_NOT_FOUND, err, 0);
    } else if (st_read_file(ix->e.paths[id], &bytes, &size) != 0) {
        snprintf(err, sizeof err, "image %ld: %s", id, st_error_get());
        ok = reply_error(r, c, MHD_HTTP_NOT_FOUND, err, 0);
    } else {
        struct MHD_Response *resp = MHD_create_response_from_buffer(size, bytes, MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, image_type(bytes, size));
        MHD_add_response_header(resp, "X-Request-Id", r->id);
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        r->status = MHD_HTTP_OK;
        ok = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
    }
    serve_index_release(r->s, ix);
    return ok;
}

static enum MHD_Result route_health(request *r, struct MHD_Connection *c) {
    serve_index *ix = serve_index_acquire(r->s);
    json_t *j = json_pack("{s:s, s:I}", "status", "ok", "images", (json_int_t)ix->e.n);
    serve_index_release(r->s, ix);
    return reply_json(r, c, MHD_HTTP_OK, j);
}

/* ---- POST /index ------------------------------------------------------------------------ */

/* Compared in time that depends on the token's length only, not on where it differs. */
static int token_matches(const char *given, const char *token) {
    size_t n = strlen(token), m = given ? strlen(given) : 0;
    unsigned char diff = n != m;
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)(token[i] ^ (i < m ? given[i] : 0));
    return diff == 0;
}

static int authorised(request *r, struct MHD_Connection *c) {
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    return h && !strncmp(h, "Bearer ", 7) && token_matches(h + 7, r->s->token);
}

/* The fields other than image and label are metadata columns. */
static void new_image_of(request *r, serve_new_image *img, const char **names, const char **values) {
    *img = (serve_new_image){r->body, r->body_len, r->filename ? r->filename : "upload", NULL, names, values, 0};
    for (int i = 0; i < r->n_fields; i++) {
        if (!strcmp(r->names[i], "label")) {
            img->label = r->values[i];
        } else {
            names[img->n_meta] = r->names[i];
            values[img->n_meta++] = r->values[i];
        }
    }
}

static enum MHD_Result route_add(request *r, struct MHD_Connection *c) {
    server *s = r->s;
    if (!s->o.allow_write)
        return reply_error(r, c, MHD_HTTP_FORBIDDEN, "writes are off: start serve with --allow-write --token-file", 0);
    if (!authorised(r, c))
        return reply_error(r, c, MHD_HTTP_UNAUTHORIZED, "missing or wrong 'Authorization: Bearer <token>'", 0);
    serve_query q;
    memset(&q, 0, sizeof q);
    char err[512];
    int status = run_query(r, c, &q, err, sizeof err);
    enum MHD_Result ok;
    if (status != MHD_HTTP_OK) {
        ok = reply_error(r, c, status, err, 0);
    } else {
        serve_new_image img;
        const char *names[MAX_FIELDS], *values[MAX_FIELDS];
        new_image_of(r, &img, names, values);
        long row = -1;
        pthread_mutex_lock(&s->write_mu);
        int rc = serve_index_add(s, &img, q.vector, &row);
        pthread_mutex_unlock(&s->write_mu);
        if (rc == 0) fprintf(stderr, "serve: %s: added image %ld to %s\n", r->id, row, s->o.index_path);
        if (rc == 0)
            ok = reply_json(r, c, MHD_HTTP_CREATED, json_pack("{s:I, s:I, s:s}", "id", (json_int_t)row, "images",
                                                              (json_int_t)row + 1, "request_id", r->id));
        else /* a bad column is the client's; a failed write (disk full) the server's */
            ok = reply_error(r, c, rc == -1 ? MHD_HTTP_BAD_REQUEST : MHD_HTTP_INTERNAL_SERVER_ERROR, st_error_get(), 0);
    }
    serve_query_free(s, &q);
    return ok;
}

/* ---- dispatch --------------------------------------------------------------------------- */

static enum MHD_Result route(request *r, struct MHD_Connection *c, const char *url, const char *method) {
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    if (!strcmp(url, "/")) {
        if (get) return reply(r, c, MHD_HTTP_OK, "text/html; charset=utf-8", serve_page_upload(r->s, NULL));
        if (post) return route_search(r, c, 1);
    } else if (!strcmp(url, "/search")) {
        if (post) return route_search(r, c, 0);
    } else if (!strncmp(url, "/images/", 8)) {
        if (get) return route_image(r, c, url + 8);
    } else if (!strcmp(url, "/healthz")) {
        if (get) return route_health(r, c);
    } else if (!strcmp(url, "/metrics")) {
        if (get) return reply(r, c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", serve_metrics_text(r->s));
    } else if (!strcmp(url, "/index")) {
        if (post) return route_add(r, c);
    } else {
        return reply_error(r, c, MHD_HTTP_NOT_FOUND, "no such page", 0);
    }
    return reply_error(r, c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed here", 0);
}

/* First call of a request: refuse a declared body over the limit before reading it; set up
 * the form parser (multipart or urlencoded) when the body is a form. */
static enum MHD_Result begin(request *r, struct MHD_Connection *c) {
    const char *length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (length && strtoull(length, NULL, 10) > (unsigned long long)r->s->o.max_upload_bytes) {
        char err[160];
        snprintf(err, sizeof err, "the upload (%.20s bytes) is larger than the limit of %ld bytes (--max-upload-mb)",
                 length, r->s->o.max_upload_bytes);
        return reply_error(r, c, MHD_HTTP_CONTENT_TOO_LARGE, err, 0);
    }
    const char *type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (type && (!strncasecmp(type, "multipart/form-data", 19) ||
                 !strncasecmp(type, "application/x-www-form-urlencoded", 33)))
        r->pp = MHD_create_post_processor(c, 65536, on_field, r);
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size,
                                  void **con_cls) {
    (void)version;
    request *r = *con_cls;
    if (!r) {
        *con_cls = r = request_new(cls, url, method);
        return begin(r, c);
    }
    if (r->status) return MHD_YES; /* answered early (413): the rest of the body is dropped */
    if (*upload_size) {
        if (r->pp) {
            if (MHD_post_process(r->pp, upload_data, *upload_size) != MHD_YES && !r->form_error[0])
                snprintf(r->form_error, sizeof r->form_error, "malformed form data");
        } else {
            append_body(r, upload_data, *upload_size);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    return route(r, c, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode how) {
    (void)c;
    server *s = cls;
    request *r = *con_cls;
    if (!r) return;
    double seconds = st_now_seconds() - r->t0;
    if (r->status)
        fprintf(stderr, "serve: %s %s %s %d %.1f ms\n", r->id, r->method, r->url, r->status, seconds * 1e3);
    else
        fprintf(stderr, "serve: %s %s %s aborted (%d) %.1f ms\n", r->id, r->method, r->url, (int)how, seconds * 1e3);
    serve_metrics_request(s, r->status, seconds);
    pthread_mutex_lock(&s->mu);
    s->in_flight--;
    pthread_mutex_unlock(&s->mu);
    request_free(r);
    *con_cls = NULL;
}

static void on_mhd_message(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    fputs("serve: libmicrohttpd: ", stderr);
    vfprintf(stderr, fmt, ap);
}

/* --host and --port as a socket address; 0, or -1 with st_error_set. */
static int listen_address(const serve_options *o, struct sockaddr_storage *addr, socklen_t *len) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    int rc = getaddrinfo(o->host, port, &hints, &res);
    if (rc != 0) return st_error_set("--host %s: %s", o->host, gai_strerror(rc));
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int serve_http_start(server *s) {
    struct sockaddr_storage addr;
    socklen_t len;
    if (listen_address(&s->o, &addr, &len) != 0) return -1;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | (addr.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    s->daemon = MHD_start_daemon(flags, (uint16_t)s->o.port, NULL, NULL, on_request, s,
                                 MHD_OPTION_EXTERNAL_LOGGER, on_mhd_message, NULL, /* first, or MHD warns */
                                 MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->o.idle_timeout_s,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->o.max_connections,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    if (!s->daemon) return st_error_set("cannot listen on %s port %d (in use, or not an address of this host?)",
                                        s->o.host, s->o.port);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    int port = info ? info->port : s->o.port;
    int v6 = addr.ss_family == AF_INET6;
    fprintf(stderr, "simtune serve: listening on http://%s%s%s:%d/ (index %s: %ld images, D=%d; batch %d, "
            "queue %d; writes %s)\n",
            v6 ? "[" : "", s->o.host, v6 ? "]" : "", port, s->o.index_path, s->index->e.n, s->index->e.d,
            s->o.batch, s->o.queue, s->o.allow_write ? "on" : "off");
    return 0;
}

void serve_http_stop(server *s) {
    MHD_socket listener = MHD_quiesce_daemon(s->daemon); /* no new connections from here on */
    double until = st_now_seconds() + s->o.request_timeout_s + 5;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int busy = s->in_flight;
        pthread_mutex_unlock(&s->mu);
        if (!busy || st_now_seconds() > until) break;
        usleep(10000);
    }
    MHD_stop_daemon(s->daemon);
    if (listener != MHD_INVALID_SOCKET) close(listener);
}
