#include "isotime.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

long long isotime_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void isotime_format(long long ms, char out[ISOTIME_LEN]) {
  time_t secs = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  snprintf(out, ISOTIME_LEN, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
           (tm.tm_year + 1900) % 10000, (tm.tm_mon + 1) % 100, tm.tm_mday % 100,
           tm.tm_hour % 100, tm.tm_min % 100, tm.tm_sec % 100,
           (int)(ms % 1000));
}

void isotime_now(char out[ISOTIME_LEN]) {
  static _Thread_local long long last_ms = -1;
  static _Thread_local char text[ISOTIME_LEN];
  long long ms = isotime_now_ms();
  if (ms != last_ms) {
    isotime_format(ms, text);
    last_ms = ms;
  }
  memcpy(out, text, ISOTIME_LEN);
}
