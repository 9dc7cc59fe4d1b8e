/*
 * cli.h: what every command's option parsing shares (cmd/commands.h states the conventions):
 * the usage-error message and exit code, the message for an unknown option or a missing value,
 * and strict parsing of numeric option values.
 */
#ifndef ST_CLI_H
#define ST_CLI_H

#include <stdint.h>

/* Prints "simtune CMD: MSG" and "try 'simtune CMD --help'" to stderr; returns 2 (bad usage). */
int st_cli_usage_error(const char *cmd, const char *msg);

/* The getopt_long default case: c is getopt's return (':' for a missing value, '?' unknown),
 * arg the offending argument (argv[optind - 1]). Returns 2. */
int st_cli_bad_option(const char *cmd, int c, const char *arg);

/* Strict numeric option values, the one parser of every command: the whole of text is a decimal
 * integer (a number, for the double) in [lo, hi] into *out, returning 0. Anything else ("8x", "",
 * " 8", out of range, nan) prints "simtune CMD: OPTION 'TEXT' is not an integer in LO..HI" (">= LO"
 * when hi is INT_MAX) and the --help hint, leaves *out untouched and returns 2 (bad usage). */
int st_cli_int_option(const char *cmd, const char *option, const char *text, int lo, int hi, int *out);
int st_cli_double_option(const char *cmd, const char *option, const char *text, double lo, double hi,
                         double *out);
/* The same for a seed: a whole decimal integer in [0, hi]; no sign, so "-1" does not wrap around. */
int st_cli_u64_option(const char *cmd, const char *option, const char *text, uint64_t hi, uint64_t *out);

#endif
