/* The watchdog: a thread of its own that notices when the event loop is
 * held, which nothing on the loop itself can.
 *
 * handler_timeout stops a handler through Lua's count hook, which runs only
 * between Lua instructions: a handler stuck inside one long call into C (a
 * pathological string pattern, string.rep of gigabytes) or in a __gc
 * finalizer (Lua runs finalizers with hooks off) never reaches it, and
 * holds the loop. A thread stuck inside C cannot be unwound from outside,
 * and the Lua state cannot be replaced under it; so when the loop has been
 * inside one callback for longer than the stall limit, the watchdog logs
 * which handler held it, lets the owner mark that delivery dead (so that
 * it does not hold the next process too), and ends the process, to be
 * restarted by its supervisor. It also makes SIGTERM's grace period hold
 * whatever a handler does: 11 seconds after SIGTERM the process exits. */
#ifndef RESTOCKD_WATCHDOG_H
#define RESTOCKD_WATCHDOG_H

#include <stdbool.h>
#include <stdint.h>

typedef struct Watchdog Watchdog;

/* What the loop was doing when the watchdog fired. */
typedef struct {
  char what[512];     /* "delivery of EVENT #ID to HANDLER", or "" */
  long long event_id; /* 0 when no delivery was running */
  char handler[256];
  char subscriber[256];
  long long attempts; /* before the run */
  uint64_t held_ms;
} WatchdogCulprit;

/* Called on the watchdog's thread when the loop is held past the limit;
 * it must not touch the loop's state. The process exits after it returns. */
typedef void (*WatchdogHang)(void *arg, const WatchdogCulprit *c);

/* Starts the watchdog's thread, which looks every 200 ms. `stall_ms` is how
 * long the loop may stay inside Lua at a stretch. Returns NULL if the
 * thread cannot be started (logged). */
Watchdog *watchdog_start(uint64_t stall_ms, WatchdogHang hang, void *arg);
void watchdog_stop(Watchdog *w);
/* The loop thread enters and leaves Lua (a resume, a load, building a
 * handler's argument): nested calls count once. Every run of Lua code is
 * inside a pair, finalizers included, so the time since the outermost
 * enter is how long the loop has been held. */
void watchdog_enter(void);
void watchdog_leave(void);
/* Records the delivery the loop is about to run Lua for (NULL `what`: none
 * any more). Loop thread. */
void watchdog_running(const char *what, long long event_id, const char *handler,
                      const char *subscriber, long long attempts);
/* Nanoseconds from the mark `since` (uv_hrtime; 0: none) to `now`; 0 when
 * there is no mark or it is not before `now`. A mark set by another thread
 * after `now` was read is no wait at all, never an unsigned wrap to 584
 * years (which made the watchdog end a server that was not held). */
uint64_t watchdog_elapsed_ns(uint64_t since, uint64_t now);
/* Notes a SIGTERM or SIGINT; async-signal-safe. */
void watchdog_note_stop_signal(void);
/* Chains a handler in front of the one libuv installed for `signum` that
 * calls watchdog_note_stop_signal. Call after uv_signal_start. */
void watchdog_watch_signal(int signum);

#endif
