/*
 * bench_data.h: the data-pipeline benchmark behind `simtune bench data` (cmd/bench_data.c).
 * argv[0] is "data"; returns the command's exit status (0, 1 failure, 2 usage).
 */
#ifndef ST_BENCH_DATA_H
#define ST_BENCH_DATA_H

int st_bench_data(int argc, char **argv);

#endif
