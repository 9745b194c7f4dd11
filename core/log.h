/* Logging: one line per entry on stderr, "TIME LEVEL message". */
#ifndef RESTOCKD_LOG_H
#define RESTOCKD_LOG_H

#include <stdbool.h>

typedef enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } LogLevel;

/* Entries below `level` are dropped. The default is LOG_INFO. */
void log_set_level(LogLevel level);
/* Writes one entry, on one line: line breaks inside the message (a Lua
 * traceback) are shown as " | ". */
void log_msg(LogLevel level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

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
