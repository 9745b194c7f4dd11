#include "log.h"

#include "error.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "isotime.h"
#include "utf8.h"

static LogLevel min_level = LOG_INFO;
static LogFormat format = LOG_TEXT;
static bool access_on = true;
static bool buffered;
static char pending[32 * 1024];
static size_t pending_len;
static const char *const names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
static const char *const json_names[] = {"debug", "info", "warn", "error"};

void log_set_level(LogLevel level) { min_level = level; }
void log_set_format(LogFormat f) { format = f; }
bool log_is_json(void) { return format == LOG_JSON; }
void log_set_access(bool on) { access_on = on; }

int log_parse_level(const char *name, LogLevel *level) {
  for (int i = 0; i < 4; i++)
    if (strcmp(name, json_names[i]) == 0) {
      *level = (LogLevel)i;
      return 0;
    }
  return RESTOCK_EINVAL;
}

/* Entries may come from the thread pool too (a store error in a job):
 * the buffer and the timestamp cache are shared under this lock. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void flush_locked(void) {
  if (pending_len) fwrite(pending, 1, pending_len, stderr);
  pending_len = 0;
  fflush(stderr);
}

void log_flush(void) {
  pthread_mutex_lock(&lock);
  flush_locked();
  pthread_mutex_unlock(&lock);
}

void log_set_buffered(bool on) {
  if (!on) log_flush();
  buffered = on;
}

/* An entry being built. Long messages are cut, but the room kept at the end
 * always takes the closing of a JSON line and its newline. */
#define LINE_MAX_TEXT 8192
#define LINE_RESERVE 8
typedef struct {
  char text[LINE_MAX_TEXT + LINE_RESERVE];
  size_t len;
} Line;

static void put(Line *l, const char *s, size_t n) {
  if (l->len >= LINE_MAX_TEXT) return;
  if (n > LINE_MAX_TEXT - l->len) n = LINE_MAX_TEXT - l->len;
  memcpy(l->text + l->len, s, n);
  l->len += n;
}

/* Appends the end of a line; it always fits (LINE_RESERVE). */
static void put_end(Line *l, const char *s) {
  size_t n = strlen(s);
  memcpy(l->text + l->len, s, n);
  l->len += n;
}

static void puts_(Line *l, const char *s) { put(l, s, strlen(s)); }

/* Appends `s` as the inside of a JSON string. */
static void put_json(Line *l, const char *s) {
  for (; *s && l->len + 6 <= LINE_MAX_TEXT; s++) {
    unsigned char c = (unsigned char)*s;
    char esc[8];
    if (c >= 0x80) {
      /* Bytes that are not UTF-8 (from a Lua message, say) would make the
       * line invalid JSON: each becomes U+FFFD. */
      size_t n = utf8_sequence((const unsigned char *)s, strlen(s));
      if (n == 0) {
        put(l, "\\ufffd", 6);
      } else {
        put(l, s, n);
        s += n - 1;
      }
      continue;
    }
    if (c == '"' || c == '\\') {
      esc[0] = '\\', esc[1] = (char)c;
      put(l, esc, 2);
    } else if (c == '\n') {
      put(l, "\\n", 2);
    } else if (c == '\t') {
      put(l, "\\t", 2);
    } else if (c < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", c);
      put(l, esc, 6);
    } else {
      put(l, (const char *)&c, 1);
    }
  }
}

/* Appends `s` for a text line: line breaks as " | ", the tabs after them
 * dropped, other control characters as spaces. */
static void put_text(Line *l, const char *s) {
  size_t n = strlen(s);
  while (n > 0 && s[n - 1] == '\n') n--;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '\n') {
      put(l, " | ", 3);
      while (i + 1 < n && s[i + 1] == '\t') i++;
    } else if ((unsigned char)s[i] < 0x20) {
      put(l, " ", 1);
    } else {
      put(l, s + i, 1);
    }
  }
}

/* Begins an entry and takes the lock, which emit's caller releases. */
static void start(Line *l, LogLevel level) {
  pthread_mutex_lock(&lock);
  char when[ISOTIME_LEN];
  isotime_now(when);
  l->len = 0;
  if (format == LOG_JSON) {
    puts_(l, "{\"time\":\"");
    puts_(l, when);
    puts_(l, "\",\"level\":\"");
    puts_(l, json_names[level]);
    puts_(l, "\",\"msg\":\"");
  } else {
    puts_(l, when);
    puts_(l, " ");
    puts_(l, names[level]);
    puts_(l, " ");
  }
}

/* Writes or buffers the entry; called with the lock held (from start). */
static void emit(Line *l, LogLevel level) {
  put_end(l, "\n");
  if (buffered && level < LOG_ERROR) {
    if (pending_len + l->len > sizeof pending) flush_locked();
    memcpy(pending + pending_len, l->text, l->len);
    pending_len += l->len;
    return;
  }
  flush_locked();
  /* One write per entry keeps lines whole when several processes share the
   * terminal. */
  fwrite(l->text, 1, l->len, stderr);
  fflush(stderr);
}

void log_msg(LogLevel level, const char *fmt, ...) {
  if (level < min_level) return;
  char msg[3072];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  Line l;
  start(&l, level);
  if (format == LOG_JSON) {
    put_json(&l, msg);
    put_end(&l, "\"}");
  } else {
    put_text(&l, msg);
  }
  emit(&l, level);
  pthread_mutex_unlock(&lock);
}

void log_access(const char *method, const char *route, const char *path,
                int status, double ms, const char *client) {
  if (!access_on || LOG_INFO < min_level) return;
  Line l;
  start(&l, LOG_INFO);
  char num[64];
  if (format == LOG_JSON) {
    snprintf(num, sizeof num, "%s %s %d", method, route, status);
    put_json(&l, num);
    puts_(&l, "\",\"method\":\"");
    put_json(&l, method);
    puts_(&l, "\",\"route\":\"");
    put_json(&l, route);
    puts_(&l, "\",\"path\":\"");
    put_json(&l, path);
    snprintf(num, sizeof num, "\",\"status\":%d,\"duration_ms\":%.3f", status,
             ms);
    puts_(&l, num);
    puts_(&l, ",\"client\":\"");
    put_json(&l, client);
    put_end(&l, "\"}");
  } else {
    puts_(&l, "access ");
    put_text(&l, method);
    puts_(&l, " ");
    put_text(&l, route);
    snprintf(num, sizeof num, " %d %.3fms ", status, ms);
    puts_(&l, num);
    put_text(&l, client);
  }
  emit(&l, LOG_INFO);
  pthread_mutex_unlock(&lock);
}
