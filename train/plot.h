/*
 * plot.h: line plots to PNG with cairo: a few series of (x, y) points, axes with ticks, an
 * optional log-scale x axis and a colour legend. For the sweep's metric-vs-epochs curves and the
 * trainer's loss/metric curves.
 *
 * Points with a NaN coordinate are skipped (the line breaks there). Colours come from a fixed
 * palette of ST_PLOT_COLORS entries, chosen per series by `color` (taken modulo the palette).
 * The file is written atomically (path.tmp, fsync, rename). Callers own every array passed in.
 */
#ifndef ST_PLOT_H
#define ST_PLOT_H

enum { ST_PLOT_COLORS = 10 };

typedef struct st_plot_series {
    const double *x; /* (n) */
    const double *y; /* (n) */
    int n;
    int color; /* palette index */
} st_plot_series;

typedef struct st_plot_options {
    const char *title;
    const char *x_label, *y_label;
    int log_x;                 /* 1: logarithmic x axis (every x must be > 0) */
    int width, height;         /* pixels; 0 = 900 x 600 */
    const char *const *legend; /* legend[i] labels palette colour i; NULL: no legend */
    int n_legend;
} st_plot_options;

/* Returns 0, or -1 with st_error_set() naming the path when cairo cannot write it. */
int st_plot_png(const char *path, const st_plot_series *series, int n_series, const st_plot_options *opt);

#endif
