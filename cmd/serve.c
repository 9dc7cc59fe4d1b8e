/*
 * serve.c: `simtune serve`, the retrieval service: an index (`simtune embed`'s file) and its
 * model stay in memory and answer query images over HTTP (routes in cmd/serve_http.c, the
 * parts in cmd/serve.h, docs/serve.md for users).
 *
 * A query is embedded exactly as `simtune search` embeds it (infer/query.h: the index's layer,
 * pooling, size; the same decode and transform) and ranked by the same exact top-k, so the
 * answers equal search's (up to the last bits of a batched forward pass).
 *
 * Process: a signal handler passes signals to the main thread through a pipe. SIGHUP reloads
 * the index file (a bad file keeps the old index and logs why); SIGTERM or SIGINT stop
 * accepting connections, let the requests in flight finish, stop the batcher and return 0 (a
 * second SIGTERM is ignored meanwhile). Startup errors print "simtune serve: <file>: <problem>"
 * and return 1; bad options return 2.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "data/image.h"
#include "infer/query.h"
#include "kernels/check.h"
#include "serve.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: simtune serve --index E.h5 [--weights W.h5] [--port 8080] [--host 127.0.0.1] [options]\n\n"
            "Serve image search over HTTP with the model and the index in memory (docs/serve.md):\n"
            "GET / (upload page), POST /search (JSON), GET /images/<id>, /healthz, /metrics,\n"
            "POST /index (with --allow-write). SIGHUP reloads the index; SIGTERM drains and exits.\n\n"
            "  --index FILE            embedding file written by `simtune embed`\n"
            "  --weights FILE          weights to embed queries with (default: the file the\n"
            "                          index records in its `model` attribute)\n"
            "  --host ADDR             address to listen on (default 127.0.0.1: this machine only)\n"
            "  --port N                TCP port, 0 = any free one (default 8080)\n"
            "  -k, --k K               results per query unless the request says (default 10)\n"
            "  --threads T             CPU threads of the model (default 0 = all cores)\n"
            "  --device NAME           cpu | cuda (default cpu)\n"
            "  --batch B               queries per forward pass at most (default 8)\n"
            "  --batch-wait-ms MS      wait for more queries after the first (default 2)\n"
            "  --queue Q               queries waiting at most; more get 503 (default 64)\n"
            "  --request-timeout S     503 for a query still queued after S seconds (default 30)\n"
            "  --idle-timeout S        close connections idle for S seconds (default 30)\n"
            "  --max-connections N     open connections at most (default 128)\n"
            "  --max-upload-mb M       request bodies larger than M MiB get 413 (default 20)\n"
            "  --max-pixels P          images with more pixels get 400, checked from the header\n"
            "                          before decoding (default 50000000)\n"
            "  --allow-write           enable POST /index (needs --token-file)\n"
            "  --token-file FILE       the bearer token POST /index must present\n"
            "  -h, --help              this text\n");
}

static int bad_usage(const char *msg) { return st_cli_usage_error("serve", msg); }

enum { O_INDEX = 256, O_WEIGHTS, O_HOST, O_PORT, O_THREADS, O_DEVICE, O_BATCH, O_WAIT, O_QUEUE, O_REQ_TIMEOUT,
       O_IDLE, O_CONNS, O_UPLOAD, O_PIXELS, O_ALLOW_WRITE, O_TOKEN };

static const struct option options[] = {
    {"index", required_argument, NULL, O_INDEX}, {"weights", required_argument, NULL, O_WEIGHTS},
    {"host", required_argument, NULL, O_HOST}, {"port", required_argument, NULL, O_PORT},
    {"k", required_argument, NULL, 'k'}, {"threads", required_argument, NULL, O_THREADS},
    {"device", required_argument, NULL, O_DEVICE}, {"batch", required_argument, NULL, O_BATCH},
    {"batch-wait-ms", required_argument, NULL, O_WAIT}, {"queue", required_argument, NULL, O_QUEUE},
    {"request-timeout", required_argument, NULL, O_REQ_TIMEOUT}, {"idle-timeout", required_argument, NULL, O_IDLE},
    {"max-connections", required_argument, NULL, O_CONNS}, {"max-upload-mb", required_argument, NULL, O_UPLOAD},
    {"max-pixels", required_argument, NULL, O_PIXELS}, {"allow-write", no_argument, NULL, O_ALLOW_WRITE},
    {"token-file", required_argument, NULL, O_TOKEN}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

/* One numeric option into o: 0, or 2 after the usage error. */
static int numeric_option(int c, const char *arg, serve_options *o) {
    int mb;
    double pixels;
    switch (c) {
    case 'k': return st_cli_int_option("serve", "-k", arg, 1, 1000, &o->k);
    case O_PORT: return st_cli_int_option("serve", "--port", arg, 0, 65535, &o->port);
    case O_THREADS: return st_cli_int_option("serve", "--threads", arg, 0, INT_MAX, &o->threads);
    case O_BATCH: return st_cli_int_option("serve", "--batch", arg, 1, 256, &o->batch);
    case O_WAIT: return st_cli_double_option("serve", "--batch-wait-ms", arg, 0, 10000, &o->wait_ms);
    case O_QUEUE: return st_cli_int_option("serve", "--queue", arg, 1, 100000, &o->queue);
    case O_REQ_TIMEOUT: return st_cli_double_option("serve", "--request-timeout", arg, 0.01, 3600, &o->request_timeout_s);
    case O_IDLE: return st_cli_int_option("serve", "--idle-timeout", arg, 1, 3600, &o->idle_timeout_s);
    case O_CONNS: return st_cli_int_option("serve", "--max-connections", arg, 1, 10000, &o->max_connections);
    case O_UPLOAD:
        if (st_cli_int_option("serve", "--max-upload-mb", arg, 1, 1024, &mb)) return 2;
        o->max_upload_bytes = (long)mb << 20;
        return 0;
    default: /* O_PIXELS */
        if (st_cli_double_option("serve", "--max-pixels", arg, 1, 1e12, &pixels)) return 2;
        o->max_pixels = (int64_t)pixels;
        return 0;
    }
}

/* argv into o: 0 to go on, 1 when --help was printed, or 2 after the usage error. */
static int parse_args(int argc, char **argv, serve_options *o) {
    *o = (serve_options){.host = "127.0.0.1", .device = "cpu", .port = 8080, .k = 10, .queue = 64, .batch = 8,
                         .wait_ms = 2, .request_timeout_s = 30, .idle_timeout_s = 30, .max_connections = 128,
                         .max_upload_bytes = 20L << 20, .max_pixels = 50000000};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":k:h", options, NULL)) != -1) {
        switch (c) {
        case O_INDEX: o->index_path = optarg; break;
        case O_WEIGHTS: o->weights = optarg; break;
        case O_HOST: o->host = optarg; break;
        case O_DEVICE: o->device = optarg; break;
        case O_ALLOW_WRITE: o->allow_write = 1; break;
        case O_TOKEN: o->token_file = optarg; break;
        case 'h': usage(stdout); return 1;
        case ':': case '?': return st_cli_bad_option("serve", c, argv[optind - 1]);
        default:
            if (numeric_option(c, optarg, o)) return 2;
        }
    }
    if (optind < argc) return bad_usage("unexpected argument");
    if (!o->index_path) return bad_usage("--index is required");
    if (o->allow_write != (o->token_file != NULL)) return bad_usage("--allow-write and --token-file go together");
    return 0;
}

/* The token: the file's content without trailing whitespace, not empty. */
static int read_token(server *s) {
    uint8_t *bytes;
    size_t size;
    if (st_read_file(s->o.token_file, &bytes, &size) != 0) return -1;
    while (size > 0 && (bytes[size - 1] == '\n' || bytes[size - 1] == '\r' || bytes[size - 1] == ' ')) size--;
    if (size == 0 || memchr(bytes, '\0', size)) {
        free(bytes);
        return st_error_set("%s: the token file is empty or holds a NUL byte", s->o.token_file);
    }
    s->token = ST_MALLOC(size + 1);
    memcpy(s->token, bytes, size);
    s->token[size] = '\0';
    free(bytes);
    return 0;
}

/* Index, weights, model, token: 0, or -1 with st_error_set. */
static int server_open(server *s) {
    st_embeddings e;
    if (st_embeddings_read(s->o.index_path, &e) != 0) return -1;
    const char *weights = s->o.weights ? s->o.weights : e.model;
    if (!weights) {
        st_embeddings_free(&e);
        return st_error_set("%s: the index records no weight file (attribute model); HINT: give --weights",
                            s->o.index_path);
    }
    s->weights = ST_STRDUP(weights);
    st_embedder_options eo;
    st_embedder_defaults(&eo);
    eo.weights = s->weights;
    eo.batch = s->o.batch;
    eo.threads = s->o.threads;
    eo.device = s->o.device;
    if (st_query_embedder_options(&e, s->o.index_path, &eo) != 0 || st_embedder_open(&eo, &s->em) != 0) {
        st_embeddings_free(&e);
        return -1;
    }
    char used[512];
    st_embedder_describe(s->em, used, sizeof used);
    fprintf(stderr, "serve: queries embedded with %s\n", used);
    if (serve_index_adopt(s, &e, s->o.index_path, &s->index) != 0) return -1;
    if (s->index->warning[0]) fprintf(stderr, "warning: %s\n", s->index->warning);
    return s->o.token_file ? read_token(s) : 0;
}

static void server_close(server *s) {
    if (s->index) serve_index_release(s, s->index);
    st_embedder_close(s->em);
    free(s->weights);
    free(s->token);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->write_mu);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->answered);
}

/* Signals arrive on any thread (libraries start threads before main: OpenBLAS), so the handler
 * only writes the signal's number into a pipe that the main thread reads. */
static int signal_pipe[2] = {-1, -1};

static void on_signal(int sig) {
    unsigned char b = (unsigned char)sig;
    ssize_t ignored = write(signal_pipe[1], &b, 1);
    (void)ignored;
}

static int catch_signals(void) {
    if (pipe(signal_pipe) != 0) return st_error_set("pipe: %s", strerror(errno));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* The main thread's loop: SIGHUP reloads, SIGTERM / SIGINT return (later ones are ignored
 * while the requests in flight finish). */
static void wait_for_signals(server *s) {
    for (;;) {
        unsigned char sig = 0;
        if (read(signal_pipe[0], &sig, 1) != 1) continue;
        if (sig != SIGHUP) {
            fprintf(stderr, "serve: %s: finishing the requests in flight\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            return;
        }
        if (serve_reload(s) != 0) fprintf(stderr, "serve: reload refused, the old index stays: %s\n", st_error_get());
    }
}

int cmd_serve(int argc, char **argv) {
    server s;
    memset(&s, 0, sizeof s);
    int rc = parse_args(argc, argv, &s.o);
    if (rc) return rc == 1 ? 0 : rc;
    pthread_mutex_init(&s.mu, NULL);
    pthread_mutex_init(&s.write_mu, NULL);
    pthread_cond_init(&s.work, NULL);
    pthread_cond_init(&s.answered, NULL);
    rc = catch_signals();
    if (rc == 0) rc = server_open(&s);
    if (rc == 0) {
        serve_batcher_start(&s);
        rc = serve_http_start(&s);
        if (rc == 0) {
            wait_for_signals(&s);
            serve_http_stop(&s);
            fprintf(stderr, "serve: stopped\n");
        }
        serve_batcher_stop(&s);
    }
    if (rc != 0) fprintf(stderr, "simtune serve: %s\n", st_error_get());
    server_close(&s);
    return rc ? 1 : 0;
}
