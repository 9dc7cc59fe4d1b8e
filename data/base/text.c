/* text.c: HTML escaping and name tables (contract in text.h). */
#include "data/base/text.h"

#include <stdlib.h>
#include <string.h>

void st_html_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else if (*s == '\'') fputs("&#39;", f);
        else fputc(*s, f);
    }
}

char *st_path_stem(const char *path, const char *stop) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return strndup(base, strcspn(base, stop));
}

int st_name_index(const char *const *names, const char *name) {
    for (int i = 0; names[i]; i++)
        if (!strcmp(names[i], name)) return i;
    return -1;
}

const char *st_names_join(const char *const *names, char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; names[i] && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", names[i]);
    return buf;
}
