/* cli.c: shared option-parsing helpers of the commands (cmd/cli.h). */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
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

/* Whitespace is refused too: strtol and strtod skip it in front, which would accept " 8". */
static int is_number_text(const char *text, const char *end) {
    return end != text && *end == '\0' && !isspace((unsigned char)text[0]);
}

int st_cli_int_option(const char *cmd, const char *option, const char *text, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (is_number_text(text, end) && errno == 0 && v >= lo && v <= hi) {
        *out = (int)v;
        return 0;
    }
    char msg[256];
    if (hi == INT_MAX) snprintf(msg, sizeof msg, "%s '%s' is not an integer >= %d", option, text, lo);
    else snprintf(msg, sizeof msg, "%s '%s' is not an integer in %d..%d", option, text, lo, hi);
    return st_cli_usage_error(cmd, msg);
}

int st_cli_u64_option(const char *cmd, const char *option, const char *text, uint64_t hi, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (is_number_text(text, end) && isdigit((unsigned char)text[0]) && errno == 0 && v <= hi) {
        *out = v;
        return 0;
    }
    char msg[256];
    snprintf(msg, sizeof msg, "%s '%s' is not an integer in 0..%llu", option, text, (unsigned long long)hi);
    return st_cli_usage_error(cmd, msg);
}

int st_cli_double_option(const char *cmd, const char *option, const char *text, double lo, double hi,
                         double *out) {
    char *end;
    double v = strtod(text, &end);
    if (is_number_text(text, end) && v >= lo && v <= hi) { /* false for nan */
        *out = v;
        return 0;
    }
    char msg[256];
    snprintf(msg, sizeof msg, "%s '%s' is not a number in %g..%g", option, text, lo, hi);
    return st_cli_usage_error(cmd, msg);
}
