/*
 * clock.h: the one wall clock simtune measures durations with, header-only so any layer can use it.
 *
 *   double t0 = st_now_seconds();
 *   ...
 *   double elapsed = st_now_seconds() - t0;
 *
 * CLOCK_MONOTONIC: never jumps when the system time is set (NTP, daylight saving), so differences
 * are durations; the absolute value means nothing. Thread-safe, no state.
 */
#ifndef ST_CLOCK_H
#define ST_CLOCK_H

#include <time.h>

/* Seconds since an arbitrary fixed point, nanosecond resolution. */
static inline double st_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
