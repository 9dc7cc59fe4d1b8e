/*
 * json.h: the few things every JSON writer of simtune needs on top of libjansson (Debian
 * libjansson-dev): values that jansson would refuse, and writing a document to a file or stream.
 *
 * jansson refuses NaN and infinite reals (json_real returns NULL) and strings that are not
 * UTF-8 (json_string returns NULL); a report must still be written, so:
 *   st_json_text    NULL -> null; bytes that are not UTF-8 (a Latin-1 file name) become U+FFFD
 *   st_json_number  NaN or +-inf -> null (a diverged metric, a metric with no query)
 *   st_json_float   a float as the shortest decimal that reads back as that float (0.99f is
 *                   written 0.99, not 0.99000000953674316)
 * Each returns a new reference (never NULL), to hand to json_object_set_new / json_array_append_new.
 *
 * Reals are printed with ST_JSON_PRECISION(digits) significant digits, chosen per document by
 * the caller (jansson's default, 17, prints 0.1 as 0.10000000000000001). Objects keep their
 * insertion order (jansson >= 2.8), so keys come out in the order they were set.
 *
 * st_json_write_file writes a document atomically (data/base/fileio.h: path.tmp, fsync, rename),
 * ending in a newline; st_json_write_lines writes each item of an array on a line of its own
 * (JSON Lines), atomically too; st_json_print writes one document to a stream, newline
 * included. All return 0, or
 * -1 with st_error_set naming the file. Neither takes ownership of root.
 */
#ifndef ST_JSON_H
#define ST_JSON_H

#include <jansson.h>
#include <stdio.h>

#define ST_JSON_PRECISION(digits) JSON_REAL_PRECISION(digits)

json_t *st_json_text(const char *s);
json_t *st_json_number(double x);
json_t *st_json_float(float x);

int st_json_write_file(const char *path, const json_t *root, size_t flags);
int st_json_write_lines(const char *path, const json_t *array, size_t flags);
int st_json_print(FILE *f, const json_t *root, size_t flags);

#endif
