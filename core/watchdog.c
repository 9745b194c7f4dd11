#include "watchdog.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"
#include "xmalloc.h"

/* How long after SIGTERM the process exits whatever the loop is doing: the
 * server's own grace period is 10 s. */
#define STOP_LIMIT_NS (11 * 1000000000ULL)
#define LOOK_MS 200

struct Watchdog {
  uv_thread_t thread;
  uv_mutex_t mu;
  uv_cond_t cond;
  bool stop;
  uint64_t stall_ns;
  WatchdogHang hang;
  void *arg;
};

/* Written by the loop (and a signal handler), read by the watchdog. */
static uint64_t busy_since;  /* 0 while the loop runs no Lua; atomic */
static int busy_depth;       /* the loop thread's own */
static uint64_t stop_signal; /* uv_hrtime of the first SIGTERM; atomic */
static pthread_mutex_t run_mu = PTHREAD_MUTEX_INITIALIZER;
static WatchdogCulprit running; /* under run_mu */

void watchdog_enter(void) {
  if (busy_depth++ == 0)
    __atomic_store_n(&busy_since, uv_hrtime(), __ATOMIC_RELEASE);
}

void watchdog_leave(void) {
  if (--busy_depth == 0) __atomic_store_n(&busy_since, 0, __ATOMIC_RELEASE);
}

void watchdog_running(const char *what, long long event_id, const char *handler,
                      const char *subscriber, long long attempts) {
  pthread_mutex_lock(&run_mu);
  if (!what) {
    running.what[0] = '\0';
    running.event_id = 0;
  } else {
    snprintf(running.what, sizeof running.what, "%s", what);
    running.event_id = event_id;
    snprintf(running.handler, sizeof running.handler, "%s",
             handler ? handler : "");
    snprintf(running.subscriber, sizeof running.subscriber, "%s",
             subscriber ? subscriber : "");
    running.attempts = attempts;
  }
  pthread_mutex_unlock(&run_mu);
}

void watchdog_note_stop_signal(void) {
  uint64_t none = 0;
  __atomic_compare_exchange_n(&stop_signal, &none, uv_hrtime(), false,
                              __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

/* The handlers libuv installed, to call after ours. */
static struct sigaction chained[65];

static void on_stop_signal(int signum) {
  watchdog_note_stop_signal();
  if (signum > 0 && signum < 65 && chained[signum].sa_handler != SIG_DFL &&
      chained[signum].sa_handler != SIG_IGN)
    chained[signum].sa_handler(signum);
}

void watchdog_watch_signal(int signum) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigfillset(&sa.sa_mask);
  if (sigaction(signum, &sa, &chained[signum]) != 0)
    log_warn("watchdog: cannot watch signal %d", signum);
}

uint64_t watchdog_elapsed_ns(uint64_t since, uint64_t now) {
  return since && now > since ? now - since : 0;
}

static void *watchdog_main(void *arg) {
  Watchdog *w = arg;
  pthread_setname_np(pthread_self(), "restockd-watch");
  uv_mutex_lock(&w->mu);
  while (!w->stop) {
    uv_cond_timedwait(&w->cond, &w->mu, LOOK_MS * 1000000ULL);
    if (w->stop) break;
    /* The marks first, then the clock: read the other way round, a mark
     * the loop (or a signal) set in between lies after `now`. */
    uint64_t since = __atomic_load_n(&busy_since, __ATOMIC_ACQUIRE);
    uint64_t stopped = __atomic_load_n(&stop_signal, __ATOMIC_ACQUIRE);
    uint64_t now = uv_hrtime();
    bool held = watchdog_elapsed_ns(since, now) > w->stall_ns;
    bool overdue = watchdog_elapsed_ns(stopped, now) > STOP_LIMIT_NS;
    if (!held && !overdue) continue;
    WatchdogCulprit c;
    pthread_mutex_lock(&run_mu);
    c = running;
    pthread_mutex_unlock(&run_mu);
    c.held_ms = watchdog_elapsed_ns(since, now) / 1000000;
    if (held) {
      log_error(
          "watchdog: the event loop has been held for %llu ms by %s: a "
          "handler stuck in one long call into C (a string pattern, say) or "
          "in a finalizer, which handler_timeout cannot stop; %s and the "
          "server exits, to be restarted",
          (unsigned long long)c.held_ms,
          c.what[0] ? c.what : "code outside any handler",
          c.event_id ? "its delivery is marked dead" : "nothing is marked");
      log_flush();
      if (w->hang) w->hang(w->arg, &c);
      log_flush();
      _exit(1);
    }
    log_error(
        "shutdown: still running %llu s after the stop signal (the loop is "
        "held by %s); exiting now",
        (unsigned long long)((now - stopped) / 1000000000ULL),
        c.what[0] ? c.what : "a callback");
    log_flush();
    _exit(0);
  }
  uv_mutex_unlock(&w->mu);
  return NULL;
}

static void thread_entry(void *arg) { watchdog_main(arg); }

Watchdog *watchdog_start(uint64_t stall_ms, WatchdogHang hang, void *arg) {
  Watchdog *w = xcalloc(1, sizeof *w);
  w->stall_ns = stall_ms * 1000000ULL;
  w->hang = hang;
  w->arg = arg;
  uv_mutex_init(&w->mu);
  uv_cond_init(&w->cond);
  uv_thread_options_t o = {UV_THREAD_HAS_STACK_SIZE, 256 << 10};
  if (uv_thread_create_ex(&w->thread, &o, thread_entry, w) != 0) {
    log_error("watchdog: cannot start its thread; running without it");
    uv_mutex_destroy(&w->mu);
    uv_cond_destroy(&w->cond);
    free(w);
    return NULL;
  }
  return w;
}

void watchdog_stop(Watchdog *w) {
  if (!w) return;
  uv_mutex_lock(&w->mu);
  w->stop = true;
  uv_cond_signal(&w->cond);
  uv_mutex_unlock(&w->mu);
  uv_thread_join(&w->thread);
  uv_mutex_destroy(&w->mu);
  uv_cond_destroy(&w->cond);
  free(w);
}
