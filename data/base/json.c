/* json.c: values jansson refuses, made writable, and documents to files (contract in json.h). */
#include "data/base/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/check.h"
#include "data/base/fileio.h"

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF), 0 when p does not start one. */
static int utf8_sequence_length(const unsigned char *p) {
    if (p[0] < 0x80) return 1;
    int n = p[0] >= 0xC2 && p[0] <= 0xDF ? 2 : p[0] >= 0xE0 && p[0] <= 0xEF ? 3 : p[0] >= 0xF0 && p[0] <= 0xF4 ? 4 : 0;
    unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range, narrowed for E0 ED F0 F4 */
    if (p[0] == 0xE0) lo = 0xA0;
    if (p[0] == 0xED) hi = 0x9F;
    if (p[0] == 0xF0) lo = 0x90;
    if (p[0] == 0xF4) hi = 0x8F;
    for (int i = 1; i < n; i++) {
        unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (p[i] < l || p[i] > h) return 0;
    }
    return n;
}

json_t *st_json_text(const char *s) {
    if (!s) return json_null();
    json_t *j = json_string(s);
    if (j) return j;
    /* Not UTF-8: keep every well-formed sequence, each other byte becomes U+FFFD (3 bytes). */
    char *fixed = ST_MALLOC(3 * strlen(s) + 1), *out = fixed;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int n = utf8_sequence_length(p);
        if (n) {
            memcpy(out, p, (size_t)n);
            out += n;
            p += n;
        } else {
            memcpy(out, "\xEF\xBF\xBD", 3);
            out += 3;
            p++;
        }
    }
    *out = '\0';
    j = json_string(fixed);
    free(fixed);
    ST_CHECK(j, "json_string refused repaired UTF-8");
    return j;
}

json_t *st_json_number(double x) { return isfinite(x) ? json_real(x) : json_null(); }

json_t *st_json_float(float x) {
    if (!isfinite(x)) return json_null();
    char text[32];
    for (int digits = 6; digits < 9; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, (double)x);
        if (strtof(text, NULL) == x) return json_real(strtod(text, NULL));
    }
    return json_real((double)x); /* 9 digits always read back as x */
}

int st_json_print(FILE *f, const json_t *root, size_t flags) {
    if (json_dumpf(root, f, flags) != 0 || fputc('\n', f) == EOF) return st_error_set("cannot write JSON");
    return 0;
}

int st_json_write_file(const char *path, const json_t *root, size_t flags) {
    char tmp[4096];
    FILE *f = st_atomic_open(path, tmp, sizeof tmp);
    if (!f) return -1;
    if (st_json_print(f, root, flags)) {
        st_atomic_abort(f, tmp);
        return st_error_set("%s: cannot write JSON", path);
    }
    return st_atomic_commit(f, tmp, path);
}

int st_json_write_lines(const char *path, const json_t *array, size_t flags) {
    char tmp[4096];
    FILE *f = st_atomic_open(path, tmp, sizeof tmp);
    if (!f) return -1;
    size_t i;
    const json_t *item;
    json_array_foreach(array, i, item) {
        if (st_json_print(f, item, flags)) {
            st_atomic_abort(f, tmp);
            return st_error_set("%s: cannot write JSON", path);
        }
    }
    return st_atomic_commit(f, tmp, path);
}
