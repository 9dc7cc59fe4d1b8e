/*
 * html.h: what the HTML pages of simtune (infer/report.h: eval's contact sheet, search's results,
 * the demo's report) share: page frame, escaping, figures, and image references that keep
 * working when the page and the images move together.
 *
 * An image is referenced by its path relative to the folder of the page (both made absolute
 * against the current directory and normalised lexically: "." and ".." folded, symlinks not
 * resolved), percent-encoded as a URL path, so the page can be moved along with the images or
 * served over HTTP from a common root. With thumbnails, the image is instead decoded, shrunk to
 * at most ST_HTML_THUMB_SIDE pixels on its longer side, JPEG-encoded and written inline as a
 * data: URI: the page then stands alone. An image that cannot be decoded is referenced by
 * path even then (the browser shows it missing, as the file is).
 *
 * Every string written into a page goes through st_html_text (data/base/text.h).
 */
#ifndef ST_HTML_H
#define ST_HTML_H

#include <stdio.h>

#include "data/base/text.h" /* st_html_text: the escaping every page writer uses */

enum { ST_HTML_THUMB_SIDE = 160 };


/* The value of a src/href attribute for image as seen from the page at page_path (see above). */
void st_html_image_url(FILE *f, const char *image, const char *page_path, int thumbnail);

/* "<br>name: value" for a caption; a value starting with http:// or https:// becomes a link. */
void st_html_metadata(FILE *f, const char *name, const char *value);

/* The start of a page: doctype, <head> with the (escaped) title and the style sheet css, <body>. */
void st_html_page_begin(FILE *f, const char *title, const char *css);
void st_html_page_end(FILE *f);

/* `<figure class="css_class">`, the image (when not NULL) linked to itself, `<figcaption>`;
 * the caller writes the caption and closes with `</figcaption></figure>`. With thumbnail the
 * <img> shows an inline thumbnail while the link keeps the relative path. */
void st_html_figure_begin(FILE *f, const char *page_path, const char *image, int thumbnail, const char *css_class);

#endif
