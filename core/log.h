/* Logging: one line per entry on stderr with time, level and message, as
 * text ("TIME LEVEL message") or as JSON ({"time", "level", "msg", ...}). */
#ifndef RESTOCKD_LOG_H
#define RESTOCKD_LOG_H

#include <stdbool.h>

typedef enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } LogLevel;
typedef enum { LOG_TEXT, LOG_JSON } LogFormat;

/* Entries below `level` are dropped. The default is LOG_INFO. */
void log_set_level(LogLevel level);
/* Parses "debug", "info", "warn" or "error". Returns 0 or RESTOCK_EINVAL. */
int log_parse_level(const char *name, LogLevel *level);
void log_set_format(LogFormat format);
bool log_is_json(void);
/* Turns the access lines (one per request) on or off; on by default. */
void log_set_access(bool on);

/* Writes one entry, on one line: line breaks inside the message (a Lua
 * traceback) are shown as " | " in text, and escaped in JSON. */
void log_msg(LogLevel level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* An access line at INFO: "METHOD ROUTE STATUS DURATIONms CLIENT", with each
 * as a field of its own in JSON. */
void log_access(const char *method, const char *route, const char *path,
                int status, double ms, const char *client);

/* Buffers entries from now on: they are written by log_flush (which the
 * server calls once per loop iteration), when the buffer fills, and at once
 * for an ERROR. One write for many lines keeps a burst of log lines (10,000
 * events of a batch update) from costing a system call each. */
void log_set_buffered(bool buffered);
/* Writes the buffered entries. */
void log_flush(void);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
