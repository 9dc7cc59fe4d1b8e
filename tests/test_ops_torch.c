/*
 * test_ops_torch.c: the C side of test_ops_torch.py (ops_torch_runner). Runs ONE op of the CPU
 * backend on inputs the script wrote, and writes the outputs back for the script to compare with
 * PyTorch. Not a test by itself: it checks only its own I/O and exits 1 on any problem.
 *
 * Usage: ops_torch_runner DIR, where DIR/case.txt holds the op and its parameters on one line:
 *   conv    n h w c k r s stride_h stride_w pad_top pad_bottom pad_left pad_right relu has_bias
 *           in: x (N,H,W,C) w (R,S,C,K) b (K) dy (N,P,Q,K)   out: y dx dw db
 *           with relu the backward runs on relu_backward(y, dy), as training does
 *   bn      n h w c relu eps momentum
 *           in: x gamma beta running_mean running_var dy
 *           out: y running_mean_out running_var_out dx dgamma dbeta
 *   maxpool n h w c r s stride_h stride_w pad_top pad_bottom pad_left pad_right pad_with_zero
 *           in: x dy   out: y dx
 *   gpool   n hw c kind(0 avg, 1 max, 2 gem) p eps
 *           in: x dy   out: y dx
 * Tensors are raw little-endian float32 files DIR/<name>.bin in the layouts above (NHWC, HWIO).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"

static st_backend *be;
static const char *dir;
static void *buffers[32]; /* every allocation, freed before exit */
static int buffer_count;

static void die(const char *what, const char *name) {
    fprintf(stderr, "ops_torch_runner: %s/%s: %s\n", dir, name, what);
    exit(1);
}

static float *output(size_t n) {
    if (buffer_count == (int)(sizeof buffers / sizeof buffers[0])) die("too many buffers", "-");
    float *p = be->alloc(be, n * sizeof(float));
    buffers[buffer_count++] = p;
    return p;
}

static float *input(const char *name, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open", name);
    float *p = output(n);
    if (fread(p, sizeof(float), n, f) != n || fgetc(f) != EOF) die("wrong size", name);
    fclose(f);
    return p;
}


static void save(const char *name, const float *p, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, sizeof(float), n, f) != n || fclose(f) != 0) die("cannot write", name);
}

static void run_conv(FILE *cf) {
    st_conv_desc d = {0};
    int has_bias;
    if (fscanf(cf, "%d %d %d %d %d %d %d %d %d %d %d %d %d %d %d", &d.n, &d.h, &d.w, &d.c, &d.k,
               &d.r, &d.s, &d.stride_h, &d.stride_w, &d.pad_top, &d.pad_bottom, &d.pad_left,
               &d.pad_right, &d.relu, &has_bias) != 15)
        die("bad conv parameters", "case.txt");
    st_conv_desc_finish(&d);
    size_t nx = (size_t)d.n * d.h * d.w * d.c, ny = (size_t)d.n * d.p * d.q * d.k;
    size_t nw = (size_t)d.r * d.s * d.c * d.k;
    float *x = input("x", nx), *w = input("w", nw), *dy = input("dy", ny);
    float *b = has_bias ? input("b", (size_t)d.k) : NULL;
    float *y = output(ny), *g = output(ny), *dx = output(nx), *dw = output(nw);
    float *db = output((size_t)d.k);
    st_conv_plan *plan = be->conv_plan(be, &d);
    size_t nwb = be->conv_weights_numel(be, plan);
    float *wb = output(nwb), *dwb = output(nwb);
    be->conv_weights_import(be, plan, w, wb); /* w.bin is HWIO, the ops read the backend layout */
    be->conv_forward(be, plan, x, wb, b, y);
    if (d.relu) be->relu_backward(be, y, dy, g, ny);
    else be->copy(be, g, dy, ny * sizeof(float));
    be->conv_backward_data(be, plan, g, wb, dx);
    be->conv_backward_filter(be, plan, x, g, dwb, db);
    be->conv_weights_export(be, plan, dwb, dw);
    save("y", y, ny);
    save("dx", dx, nx);
    save("dw", dw, nw);
    save("db", db, (size_t)d.k);
}

static void run_bn(FILE *cf) {
    int n, h, w, c, relu;
    float eps, momentum;
    if (fscanf(cf, "%d %d %d %d %d %f %f", &n, &h, &w, &c, &relu, &eps, &momentum) != 7)
        die("bad bn parameters", "case.txt");
    st_bn_desc d = {.rows = (long)n * h * w, .c = c, .eps = eps, .momentum = momentum,
                    .relu = relu};
    size_t nx = (size_t)d.rows * c;
    float *x = input("x", nx), *gamma = input("gamma", (size_t)c), *beta = input("beta", (size_t)c);
    float *rm = input("running_mean", (size_t)c), *rv = input("running_var", (size_t)c);
    float *dy = input("dy", nx);
    float *y = output(nx), *mean = output((size_t)c), *rstd = output((size_t)c);
    float *dx = output(nx), *dgamma = output((size_t)c), *dbeta = output((size_t)c);
    be->bn_forward_train(be, &d, x, gamma, beta, y, mean, rstd, rm, rv);
    be->bn_backward(be, &d, x, relu ? y : NULL, dy, gamma, mean, rstd, dx, dgamma, dbeta);
    save("y", y, nx);
    save("running_mean_out", rm, (size_t)c);
    save("running_var_out", rv, (size_t)c);
    save("dx", dx, nx);
    save("dgamma", dgamma, (size_t)c);
    save("dbeta", dbeta, (size_t)c);
}

static void run_maxpool(FILE *cf) {
    st_pool_desc d = {0};
    if (fscanf(cf, "%d %d %d %d %d %d %d %d %d %d %d %d %d", &d.n, &d.h, &d.w, &d.c, &d.r, &d.s,
               &d.stride_h, &d.stride_w, &d.pad_top, &d.pad_bottom, &d.pad_left, &d.pad_right,
               &d.pad_with_zero) != 13)
        die("bad maxpool parameters", "case.txt");
    st_pool_desc_finish(&d);
    size_t nx = (size_t)d.n * d.h * d.w * d.c, ny = (size_t)d.n * d.p * d.q * d.c;
    float *x = input("x", nx), *dy = input("dy", ny), *y = output(ny), *dx = output(nx);
    be->maxpool_forward(be, &d, x, y);
    be->maxpool_backward(be, &d, x, y, dy, dx);
    save("y", y, ny);
    save("dx", dx, nx);
}

static void run_gpool(FILE *cf) {
    st_gpool_desc d = {0};
    int kind;
    if (fscanf(cf, "%d %d %d %d %f %f", &d.n, &d.hw, &d.c, &kind, &d.p, &d.eps) != 6 || kind < 0 ||
        kind > 2)
        die("bad gpool parameters", "case.txt");
    d.kind = kind == 0 ? ST_GPOOL_AVG : kind == 1 ? ST_GPOOL_MAX : ST_GPOOL_GEM;
    size_t nx = (size_t)d.n * d.hw * d.c, ny = (size_t)d.n * d.c;
    float *x = input("x", nx), *dy = input("dy", ny), *y = output(ny), *dx = output(nx);
    be->gpool_forward(be, &d, x, y);
    be->gpool_backward(be, &d, x, y, dy, dx);
    save("y", y, ny);
    save("dx", dx, nx);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: ops_torch_runner DIR\n");
        return 2;
    }
    dir = argv[1];
    be = st_backend_open("cpu", 2);
    if (!be) die("cannot open the cpu backend", "-");
    char path[4096], op[32];
    snprintf(path, sizeof path, "%s/case.txt", dir);
    FILE *cf = fopen(path, "r");
    if (!cf) die("cannot open", "case.txt");
    if (fscanf(cf, "%31s", op) != 1) die("no op name", "case.txt");
    if (strcmp(op, "conv") == 0) run_conv(cf);
    else if (strcmp(op, "bn") == 0) run_bn(cf);
    else if (strcmp(op, "maxpool") == 0) run_maxpool(cf);
    else if (strcmp(op, "gpool") == 0) run_gpool(cf);
    else die("unknown op", "case.txt");
    fclose(cf);
    for (int i = 0; i < buffer_count; i++) be->free(be, buffers[i]);
    st_backend_close(be);
    return 0;
}
