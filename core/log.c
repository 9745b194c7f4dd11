#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static LogLevel min_level = LOG_INFO;
static bool buffered;
static char pending[32 * 1024];
static size_t pending_len;

void log_flush(void) {
  if (pending_len) fwrite(pending, 1, pending_len, stderr);
  pending_len = 0;
  fflush(stderr);
}

void log_set_buffered(bool on) {
  if (!on) log_flush();
  buffered = on;
}
static const char *const names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void log_set_level(LogLevel level) { min_level = level; }

void log_msg(LogLevel level, const char *fmt, ...) {
  if (level < min_level) return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char line[4096];
  int n = snprintf(line, sizeof line,
                   "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ", tm.tm_year + 1900,
                   tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   ts.tv_nsec / 1000000, names[level]);
  char msg[3072];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* One entry, one line: a multi-line message (a Lua traceback) has its
   * line breaks shown as " | " and the tabs after them dropped. */
  size_t len = (size_t)n, mlen = strlen(msg);
  while (mlen > 0 && msg[mlen - 1] == '\n') mlen--;
  for (size_t i = 0; i < mlen && len < sizeof line - 4; i++) {
    if (msg[i] == '\n') {
      memcpy(line + len, " | ", 3);
      len += 3;
      while (i + 1 < mlen && msg[i + 1] == '\t') i++;
    } else {
      line[len++] = msg[i] == '\t' || msg[i] == '\r' ? ' ' : msg[i];
    }
  }
  line[len++] = '\n';
  if (buffered && level < LOG_ERROR) {
    if (pending_len + len > sizeof pending) log_flush();
    memcpy(pending + pending_len, line, len);
    pending_len += len;
    return;
  }
  log_flush();
  /* One write per entry keeps lines whole when several processes share the
   * terminal. */
  fwrite(line, 1, len, stderr);
  fflush(stderr);
}
