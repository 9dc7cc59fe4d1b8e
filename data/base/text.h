/*
 * text.h: the two text chores every layer shares: escaping a string for HTML, and mapping a
 * name to its enum value through one table of names (so parse, print and the error message
 * that lists the choices cannot disagree).
 *
 *   static const char *const names[] = {"caffe", "tf", "torch", NULL};  // index = enum value
 *   int v = st_name_index(names, "tf");          // 1; -1 when absent
 *   st_names_join(names, buf, sizeof buf);       // "caffe, tf, torch" for an error message
 */
#ifndef ST_TEXT_H
#define ST_TEXT_H

#include <stddef.h>
#include <stdio.h>

/* s written to f with & < > " ' escaped, safe in element text and quoted attribute values. */
void st_html_text(FILE *f, const char *s);

/* The last '/'-separated component of path up to (excluding) its first character from stop:
 * ("a/conv1_conv/kernel:0", ":") -> "kernel"; ("configs/s.yaml", ".") -> "s". malloc'ed. */
char *st_path_stem(const char *path, const char *stop);

/* Index of name in the NULL-terminated table names, or -1. */
int st_name_index(const char *const *names, const char *name);

/* "a, b, c": the table's names joined into buf[size] (truncated to fit); returns buf. */
const char *st_names_join(const char *const *names, char *buf, size_t size);

#endif
