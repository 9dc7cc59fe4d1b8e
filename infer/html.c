/* html.c: page frame, figures and page-relative image references (contract in html.h). */
#include "html.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../kernels/check.h"
#include "data/encode.h"
#include "data/image.h"
#include "data/transform.h"

/* path made absolute against the current directory, "." and ".." folded; malloc'ed. */
static char *absolute_path(const char *path) {
    char cwd[PATH_MAX] = "/";
    if (path[0] != '/' && !getcwd(cwd, sizeof cwd)) snprintf(cwd, sizeof cwd, "/");
    size_t size = strlen(cwd) + strlen(path) + 2;
    char *joined = ST_MALLOC(size), *out = ST_MALLOC(size);
    snprintf(joined, size, "%s/%s", path[0] == '/' ? "" : cwd, path);
    size_t n = 0;
    for (char *save = NULL, *part = strtok_r(joined, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
        if (!strcmp(part, ".")) continue;
        if (!strcmp(part, "..")) {
            while (n > 0 && out[n - 1] != '/') n--;
            if (n > 0) n--; /* the slash before the dropped component */
            continue;
        }
        out[n++] = '/';
        size_t len = strlen(part);
        memcpy(out + n, part, len);
        n += len;
    }
    out[n] = '\0';
    if (n == 0) snprintf(out, size, "/");
    free(joined);
    return out;
}

/* Percent-encode a URL path: unreserved characters and '/' stay, every other byte is %XX. */
static void url_path(FILE *f, const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("/-._~", *p))
            fputc(*p, f);
        else fprintf(f, "%%%02X", *p);
    }
}

/* image relative to the folder holding page_path. */
static void relative_url(FILE *f, const char *image, const char *page_path) {
    char *img = absolute_path(image), *page = absolute_path(page_path);
    char *slash = strrchr(page, '/');
    slash[1] = '\0'; /* the page's folder, with its trailing slash */
    size_t common = 0; /* length of the shared folder prefix, up to and including a slash */
    for (size_t i = 0; page[i] && page[i] == img[i]; i++)
        if (page[i] == '/') common = i + 1;
    for (const char *p = page + common; *p; p++)
        if (*p == '/') fputs("../", f);
    url_path(f, img + common);
    free(img);
    free(page);
}

/* Base64 (RFC 4648) of n bytes. */
static void base64(FILE *f, const uint8_t *d, size_t n) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        fputc(abc[v >> 18 & 63], f);
        fputc(abc[v >> 12 & 63], f);
        fputc(i + 1 < n ? abc[v >> 6 & 63] : '=', f);
        fputc(i + 2 < n ? abc[v & 63] : '=', f);
    }
}

/* JPEG bytes of image shrunk to ST_HTML_THUMB_SIDE on its longer side (never enlarged); -1
 * when it cannot be decoded or encoded. The encoder writes files, so a private temp file is
 * the buffer. */
static int thumbnail_jpeg(const char *image, uint8_t **bytes, size_t *size) {
    st_decode_opts opts = st_decode_opts_default();
    opts.min_short_side = ST_HTML_THUMB_SIDE;
    st_image img;
    if (st_image_decode_file(image, &opts, &img) != 0) return -1;
    int longer = img.w > img.h ? img.w : img.h;
    double scale = longer > ST_HTML_THUMB_SIDE ? (double)ST_HTML_THUMB_SIDE / longer : 1.0;
    st_image small = {NULL, (int)(img.w * scale + 0.5), (int)(img.h * scale + 0.5)};
    if (small.w < 1) small.w = 1;
    if (small.h < 1) small.h = 1;
    float *px = ST_MALLOC((size_t)small.w * small.h * 3 * sizeof(float));
    st_resample_box box = {0, 0, img.w, img.h, 0, 0, img.w, img.h};
    st_resample(&img, &box, small.w, small.h, px);
    st_image_free(&img);
    small.px = ST_MALLOC((size_t)small.w * small.h * 3);
    for (size_t i = 0; i < (size_t)small.w * small.h * 3; i++)
        small.px[i] = (uint8_t)(px[i] < 0 ? 0 : px[i] > 255 ? 255 : px[i] + 0.5f);
    free(px);
    char tmp[] = "/tmp/simtune-thumb-XXXXXX";
    int fd = mkstemp(tmp);
    int rc = fd < 0 ? -1 : 0;
    if (fd >= 0) close(fd);
    if (rc == 0) rc = st_image_write_jpeg(tmp, &small, 85);
    if (rc == 0) rc = st_read_file(tmp, bytes, size);
    if (fd >= 0) remove(tmp);
    st_image_free(&small);
    return rc;
}

void st_html_metadata(FILE *f, const char *name, const char *value) {
    int link = !strncmp(value, "http://", 7) || !strncmp(value, "https://", 8);
    fputs("<br>", f);
    st_html_text(f, name);
    fputs(": ", f);
    if (link) {
        fputs("<a href=\"", f);
        st_html_text(f, value);
        fputs("\">", f);
    }
    st_html_text(f, value);
    if (link) fputs("</a>", f);
}

void st_html_image_url(FILE *f, const char *image, const char *page_path, int thumbnail) {
    uint8_t *bytes = NULL;
    size_t size = 0;
    if (thumbnail && thumbnail_jpeg(image, &bytes, &size) == 0) {
        fputs("data:image/jpeg;base64,", f);
        base64(f, bytes, size);
        free(bytes);
        return;
    }
    relative_url(f, image, page_path);
}

void st_html_page_begin(FILE *f, const char *title, const char *css) {
    fputs("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>", f);
    st_html_text(f, title);
    fprintf(f, "</title>\n<style>%s</style></head><body>\n", css);
}

void st_html_page_end(FILE *f) { fputs("</body></html>\n", f); }

void st_html_figure_begin(FILE *f, const char *page_path, const char *image, int thumbnail, const char *css_class) {
    fputs("<figure class=\"", f);
    st_html_text(f, css_class);
    fputs("\">", f);
    if (image) {
        fputs("<a href=\"", f);
        st_html_image_url(f, image, page_path, 0);
        fputs("\"><img loading=\"lazy\" src=\"", f);
        st_html_image_url(f, image, page_path, thumbnail);
        fputs("\"></a>", f);
    }
    fputs("<figcaption>", f);
}
