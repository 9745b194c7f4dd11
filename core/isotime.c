#include "isotime.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "error.h"

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

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
 * (Howard Hinnant's days_from_civil). */
static long long days_from_civil(long long y, unsigned m, unsigned d) {
  y -= m <= 2;
  long long era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (long long)doe - 719468;
}

/* Reads exactly `n` digits at s[*i]; -1 if they are not there. */
static int digits(const char *s, size_t len, size_t *i, int n) {
  int v = 0;
  for (int k = 0; k < n; k++, (*i)++) {
    if (*i >= len || s[*i] < '0' || s[*i] > '9') return -1;
    v = v * 10 + (s[*i] - '0');
  }
  return v;
}

int isotime_parse(const char *s, size_t len, long long *ms) {
  static const unsigned char mdays[] = {31, 29, 31, 30, 31, 30,
                                        31, 31, 30, 31, 30, 31};
  size_t i = 0;
  int y = digits(s, len, &i, 4);
  if (y < 1000 || i >= len || s[i++] != '-') return RESTOCK_EINVAL;
  int mo = digits(s, len, &i, 2);
  if (mo < 1 || mo > 12 || i >= len || s[i++] != '-') return RESTOCK_EINVAL;
  int d = digits(s, len, &i, 2);
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap))
    return RESTOCK_EINVAL;
  int h = 0, mi = 0, sec = 0, milli = 0;
  long long offset_min = 0;
  if (i < len && (s[i] == 'T' || s[i] == 't' || s[i] == ' ')) {
    i++;
    h = digits(s, len, &i, 2);
    if (h < 0 || h > 23 || i >= len || s[i++] != ':') return RESTOCK_EINVAL;
    mi = digits(s, len, &i, 2);
    if (mi < 0 || mi > 59) return RESTOCK_EINVAL;
    if (i < len && s[i] == ':') {
      i++;
      sec = digits(s, len, &i, 2);
      /* A leap second is read as the last second of its minute. */
      if (sec < 0 || sec > 60) return RESTOCK_EINVAL;
      if (sec == 60) sec = 59;
      if (i < len && (s[i] == '.' || s[i] == ',')) {
        i++;
        int n = 0;
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++, n++)
          if (n < 3) milli = milli * 10 + (s[i] - '0');
        if (n == 0 || n > 9) return RESTOCK_EINVAL;
        for (; n < 3; n++) milli *= 10;
      }
    }
    if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
      i++;
    } else if (i < len && (s[i] == '+' || s[i] == '-')) {
      int sign = s[i++] == '-' ? -1 : 1;
      int oh = digits(s, len, &i, 2), om = 0;
      if (oh < 0 || oh > 23) return RESTOCK_EINVAL;
      if (i < len && s[i] == ':') i++;
      if (i < len) {
        om = digits(s, len, &i, 2);
        if (om < 0 || om > 59) return RESTOCK_EINVAL;
      }
      offset_min = sign * (oh * 60 + om);
    }
  }
  if (i != len) return RESTOCK_EINVAL;
  long long days = days_from_civil(y, (unsigned)mo, (unsigned)d);
  long long secs = days * 86400 + h * 3600 + mi * 60 + sec - offset_min * 60;
  *ms = secs * 1000 + milli;
  return 0;
}
