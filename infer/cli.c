/* cli.c: shared option-parsing helpers of the commands (infer/cli.h). */
#include "cli.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

int st_cli_usage_error(const char *cmd, const char *msg) {
    fprintf(stderr, "simtune %s: %s\ntry 'simtune %s --help'\n", cmd, msg, cmd);
    return 2;
}

int st_cli_bad_option(const char *cmd, int c, const char *arg) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s option '%s'", c == ':' ? "missing value for" : "unknown", arg);
    return st_cli_usage_error(cmd, msg);
}

int st_cli_parse_int(const char *s, int min, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < min || v > INT_MAX) return -1;
    *out = (int)v;
    return 0;
}

void st_cli_json_string(FILE *out, const char *s) {
    if (!s) {
        fputs("null", out);
        return;
    }
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(out, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", out);
        else if (*p < 0x20) fprintf(out, "\\u%04x", *p);
        else fputc(*p, out);
    }
    fputc('"', out);
}
