/*
 * plot.c: cairo line plots (contract in plot.h). Layout: a plot area with margins for the tick
 * labels, "nice" ticks (1, 2, 5 x 10^k) on linear axes and powers of ten plus the data's own
 * x values on a log axis, one polyline with dot markers per series, legend top right.
 */
#include "plot.h"

#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../kernels/check.h"
#include "yaml_tree.h"

static const double palette[ST_PLOT_COLORS][3] = {
    {0.12, 0.47, 0.71}, {1.00, 0.50, 0.05}, {0.17, 0.63, 0.17}, {0.84, 0.15, 0.16}, {0.58, 0.40, 0.74},
    {0.55, 0.34, 0.29}, {0.89, 0.47, 0.76}, {0.50, 0.50, 0.50}, {0.74, 0.74, 0.13}, {0.09, 0.75, 0.81}};

typedef struct {
    double x0, x1, y0, y1;           /* data range (x in log10 when log_x) */
    double left, right, top, bottom; /* plot area in pixels */
    int log_x;
} frame;

static double px(const frame *f, double x) {
    double v = f->log_x ? log10(x) : x;
    return f->left + (v - f->x0) / (f->x1 - f->x0) * (f->right - f->left);
}

static double py(const frame *f, double y) { return f->bottom - (y - f->y0) / (f->y1 - f->y0) * (f->bottom - f->top); }

static int point_ok(const frame *f, double x, double y) { return isfinite(x) && isfinite(y) && (!f->log_x || x > 0); }

static double nice_step(double span, int target) {
    double raw = span / target, mag = pow(10, floor(log10(raw))), r = raw / mag;
    return (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10) * mag;
}

static void data_range(frame *f, const st_plot_series *s, int n_series) {
    f->x0 = f->y0 = INFINITY;
    f->x1 = f->y1 = -INFINITY;
    for (int k = 0; k < n_series; k++)
        for (int i = 0; i < s[k].n; i++) {
            if (!point_ok(f, s[k].x[i], s[k].y[i])) continue;
            double x = f->log_x ? log10(s[k].x[i]) : s[k].x[i];
            f->x0 = fmin(f->x0, x), f->x1 = fmax(f->x1, x);
            f->y0 = fmin(f->y0, s[k].y[i]), f->y1 = fmax(f->y1, s[k].y[i]);
        }
    if (!isfinite(f->x0)) f->x0 = 0, f->x1 = 1, f->y0 = 0, f->y1 = 1; /* nothing to draw yet */
    if (f->x1 - f->x0 < 1e-12) f->x0 -= 0.5, f->x1 += 0.5;
    if (f->y1 - f->y0 < 1e-12) f->y0 -= 0.5, f->y1 += 0.5;
    double pad_x = 0.04 * (f->x1 - f->x0), pad_y = 0.06 * (f->y1 - f->y0);
    f->x0 -= pad_x, f->x1 += pad_x, f->y0 -= pad_y, f->y1 += pad_y;
}

static void text_at(cairo_t *cr, double x, double y, const char *text, double align_x, double align_y) {
    cairo_text_extents_t e;
    cairo_text_extents(cr, text, &e);
    cairo_move_to(cr, x - e.width * align_x - e.x_bearing, y - e.height * align_y - e.y_bearing);
    cairo_show_text(cr, text);
}

static void x_tick(cairo_t *cr, const frame *f, double x) {
    char label[32];
    double p = px(f, x);
    if (p < f->left - 0.5 || p > f->right + 0.5) return;
    cairo_move_to(cr, p, f->bottom);
    cairo_line_to(cr, p, f->bottom + 5);
    cairo_stroke(cr);
    snprintf(label, sizeof label, "%g", x);
    text_at(cr, p, f->bottom + 8, label, 0.5, 0);
}

static void draw_axes(cairo_t *cr, const frame *f, const st_plot_series *s, int n_series) {
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, f->left, f->top, f->right - f->left, f->bottom - f->top);
    cairo_stroke(cr);
    cairo_set_font_size(cr, 12);
    double step = nice_step(f->y1 - f->y0, 6);
    for (double y = ceil(f->y0 / step) * step; y <= f->y1; y += step) {
        char label[32];
        snprintf(label, sizeof label, "%g", fabs(y) < step * 1e-6 ? 0.0 : y);
        cairo_move_to(cr, f->left - 5, py(f, y));
        cairo_line_to(cr, f->left, py(f, y));
        cairo_stroke(cr);
        text_at(cr, f->left - 8, py(f, y), label, 1, 0.5);
    }
    if (!f->log_x) {
        double xs = nice_step(f->x1 - f->x0, 8);
        for (double x = ceil(f->x0 / xs) * xs; x <= f->x1; x += xs) x_tick(cr, f, fabs(x) < xs * 1e-6 ? 0.0 : x);
        return;
    }
    /* log axis: the distinct x values of the data (the rung epochs), at most 12 */
    double seen[12];
    int n_seen = 0;
    for (int k = 0; k < n_series; k++)
        for (int i = 0; i < s[k].n && n_seen < 12; i++) {
            int dup = !point_ok(f, s[k].x[i], s[k].y[i]);
            for (int j = 0; j < n_seen && !dup; j++) dup = seen[j] == s[k].x[i];
            if (!dup) x_tick(cr, f, seen[n_seen++] = s[k].x[i]);
        }
}

static void draw_series(cairo_t *cr, const frame *f, const st_plot_series *s) {
    const double *c = palette[((s->color % ST_PLOT_COLORS) + ST_PLOT_COLORS) % ST_PLOT_COLORS];
    cairo_set_source_rgba(cr, c[0], c[1], c[2], 0.8);
    cairo_set_line_width(cr, 1.5);
    int pen_down = 0;
    for (int i = 0; i < s->n; i++) {
        if (!point_ok(f, s->x[i], s->y[i])) {
            pen_down = 0;
            continue;
        }
        if (pen_down)
            cairo_line_to(cr, px(f, s->x[i]), py(f, s->y[i]));
        else
            cairo_move_to(cr, px(f, s->x[i]), py(f, s->y[i]));
        pen_down = 1;
    }
    cairo_stroke(cr);
    for (int i = 0; i < s->n; i++) {
        if (!point_ok(f, s->x[i], s->y[i])) continue;
        cairo_arc(cr, px(f, s->x[i]), py(f, s->y[i]), 2.5, 0, 2 * M_PI);
        cairo_fill(cr);
    }
}

static void draw_legend(cairo_t *cr, const frame *f, const st_plot_options *opt) {
    if (!opt->legend) return;
    cairo_set_font_size(cr, 12);
    double x = f->right - 150, y = f->top + 10;
    for (int i = 0; i < opt->n_legend; i++, y += 18) {
        const double *c = palette[i % ST_PLOT_COLORS];
        cairo_set_source_rgb(cr, c[0], c[1], c[2]);
        cairo_rectangle(cr, x, y, 14, 10);
        cairo_fill(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        text_at(cr, x + 20, y + 5, opt->legend[i], 0, 0.5);
    }
}

static cairo_status_t write_stream(void *closure, const unsigned char *data, unsigned int length) {
    return fwrite(data, 1, length, closure) == length ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

int st_plot_png(const char *path, const st_plot_series *series, int n_series, const st_plot_options *opt) {
    int width = opt->width ? opt->width : 900, height = opt->height ? opt->height : 600;
    cairo_surface_t *surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
    cairo_t *cr = cairo_create(surface);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);

    frame f = {.left = 80, .right = width - 20, .top = 40, .bottom = height - 60, .log_x = opt->log_x};
    data_range(&f, series, n_series);
    draw_axes(cr, &f, series, n_series);
    for (int k = 0; k < n_series; k++) draw_series(cr, &f, &series[k]);
    draw_legend(cr, &f, opt);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_font_size(cr, 15);
    if (opt->title) text_at(cr, width / 2.0, 20, opt->title, 0.5, 0.5);
    cairo_set_font_size(cr, 13);
    if (opt->x_label) text_at(cr, (f.left + f.right) / 2, height - 18, opt->x_label, 0.5, 0.5);
    if (opt->y_label) {
        cairo_save(cr);
        cairo_translate(cr, 18, (f.top + f.bottom) / 2);
        cairo_rotate(cr, -M_PI / 2);
        text_at(cr, 0, 0, opt->y_label, 0.5, 0.5);
        cairo_restore(cr);
    }
    cairo_destroy(cr);

    char tmp[4096];
    FILE *out = st_atomic_open(path, tmp, sizeof tmp);
    if (!out) {
        cairo_surface_destroy(surface);
        return -1;
    }
    cairo_status_t status = cairo_surface_write_to_png_stream(surface, write_stream, out);
    cairo_surface_destroy(surface);
    if (status != CAIRO_STATUS_SUCCESS) {
        fclose(out);
        remove(tmp);
        return st_error_set("%s: cairo: %s", path, cairo_status_to_string(status));
    }
    return st_atomic_commit(out, tmp, path);
}
