/*
 * cli.h: what every command's option parsing shares (train/commands.h states the conventions):
 * the usage-error message and exit code, the message for an unknown option or a missing value,
 * and strict integer parsing.
 */
#ifndef ST_CLI_H
#define ST_CLI_H

#include <stdio.h>

/* Prints "simtune CMD: MSG" and "try 'simtune CMD --help'" to stderr; returns 2 (bad usage). */
int st_cli_usage_error(const char *cmd, const char *msg);

/* The getopt_long default case: c is getopt's return (':' for a missing value, '?' unknown),
 * arg the offending argument (argv[optind - 1]). Returns 2. */
int st_cli_bad_option(const char *cmd, int c, const char *arg);

/* A whole decimal integer in [min, INT_MAX] into *out: 0, or -1 (out untouched). */
int st_cli_parse_int(const char *s, int min, int *out);

/* s as a JSON string literal (quotes, backslash and control characters escaped); NULL -> null. */
void st_cli_json_string(FILE *out, const char *s);

#endif
