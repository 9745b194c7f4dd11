#include "server.h"

#include <openssl/rand.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "api.h"
#include "domain.h"
#include "engine.h"
#include "http.h"
#include "log.h"
#include "lua_connect.h"
#include "lua_host.h"
#include "metrics.h"
#include "migrate.h"
#include "node.h"
#include "outbox.h"
#include "store.h"
#include "subscriptions.h"
#include "watchdog.h"
#include "xmalloc.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2
/* How long a shutdown waits for requests and handlers in flight. */
#define SHUTDOWN_GRACE_MS 10000

typedef struct {
  const ServerSettings *settings;
  uv_loop_t loop;
  Domain d;
  Api api;
  LuaEnv env;
  LuaHost *lua; /* the current script; a reloaded one is released */
  HttpServer *http;
  uv_signal_t sigterm, sigint, sighup;
  uv_timer_t grace;
  uv_prepare_t logs; /* writes the iteration's log lines */
  Watchdog *watchdog;
  Housekeeping *housekeeping;
  bool stopping;
  bool http_stopped;
  bool handlers_idle;
  bool tasks_idle; /* no periodic task (restock.every) runs */
} Server;

/* Why start cannot go on: a log entry, so that with --log-format json it is
 * JSON too. */
__attribute__((format(printf, 1, 2))) static void start_error(const char *fmt,
                                                              ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (log_is_json())
    log_error("%s", msg);
  else
    fprintf(stderr, "restockd: %s\n", msg);
}

/* ---- running deliveries on the Lua host ------------------------------------
 */

static int run_delivery(void *ctx, const OutboxRun *r, OutboxRunDone done,
                        void *arg) {
  Server *srv = ctx;
  LuaRun run = {.event = r->event,
                .handler = r->handler,
                .subscriber = r->subscriber,
                .data = r->data,
                .event_id = r->event_id,
                .attempts = r->attempts,
                .timeout_ms = r->timeout_ms};
  return lua_host_run(srv->lua, &run, done, arg);
}

/* ---- the subscribe hook -----------------------------------------------------
 */

/* restock.on_subscribe runs at most this long (contract section 3). */
#define HOOK_TIMEOUT_MS 5000

typedef struct {
  HookDone done;
  void *arg;
} HookRun;

static void hook_ran(void *arg, bool ok, bool retry, const char *err) {
  HookRun *run = arg;
  HookDone done = run->done;
  void *darg = run->arg;
  free(run);
  done(darg, ok ? HOOK_ALLOW : retry ? HOOK_FAIL : HOOK_REFUSE, err);
}

static int run_subscribe_hook(void *ctx, json_t *arg, HookDone done,
                              void *darg) {
  Server *srv = ctx;
  HookRun *run = xmalloc(sizeof *run);
  run->done = done;
  run->arg = darg;
  int rc = lua_host_run_subscribe_hook(srv->lua, arg, HOOK_TIMEOUT_MS, hook_ran,
                                       run);
  if (rc) free(run);
  return rc;
}

/* ---- the plugin's routes ------------------------------------------------ */

/* A request under /hooks/: the current script's routes serve it. */
static int serve_hook(void *ctx, HttpRequest *req, const char *client,
                      char *allow, size_t allow_len) {
  Server *srv = ctx;
  return lua_connect_route(srv->lua, req, client, allow, allow_len);
}

/* ---- the watchdog ---------------------------------------------------------
 */

typedef struct {
  WatchdogCulprit c;
  char error[640];
} DeadMark;

static int mark_dead_fn(StoreTx *tx, void *arg) {
  DeadMark *m = arg;
  char now[ISOTIME_LEN];
  isotime_now(now);
  bool kept = false;
  int rc = store_delivery_finish(tx, m->c.event_id, m->c.handler,
                                 m->c.subscriber, "dead", m->c.attempts + 1,
                                 isotime_now_ms(), m->error, now, &kept);
  if (rc == 0 && kept) rc = store_event_refresh(tx, m->c.event_id, m->error);
  return rc;
}

/* On the watchdog's thread, the loop being held: the delivery that held it
 * is marked dead, so that the next process does not run it again and get
 * held the same way. The process exits after this. */
static void on_hang(void *arg, const WatchdogCulprit *c) {
  Server *srv = arg;
  if (c->event_id <= 0) return;
  static DeadMark m; /* outlives a timeout: the writer may still use it */
  m.c = *c;
  snprintf(m.error, sizeof m.error,
           "the handler held the event loop for %llu ms (a long call into C "
           "or a finalizer, which handler_timeout cannot stop); the server "
           "exited",
           (unsigned long long)c->held_ms);
  int rc = store_write_sync(srv->d.store, mark_dead_fn, &m, 5000);
  if (rc)
    log_error("watchdog: could not mark %s dead (%s)", c->what,
              restock_strerror(rc));
}

/* ---- stopping ---------------------------------------------------------------
 */

static void close_handle(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Once HTTP has drained and no handler runs, every handle is closed and
 * uv_run returns. */
static void maybe_stopped(Server *srv) {
  if (!srv->http_stopped || !srv->handlers_idle || !srv->tasks_idle) return;
  log_info("stopped");
  uv_close((uv_handle_t *)&srv->sigterm, NULL);
  uv_close((uv_handle_t *)&srv->sigint, NULL);
  uv_close((uv_handle_t *)&srv->sighup, NULL);
  uv_close((uv_handle_t *)&srv->grace, NULL);
  engine_close(srv->d.engine);
  outbox_close(srv->d.outbox);
  node_close(srv->d.node);
  subscriptions_housekeeping_close(srv->housekeeping);
  srv->housekeeping = NULL;
  http_client_close(srv->env.http);
  srv->d.engine = NULL;
  srv->d.outbox = NULL;
  srv->d.node = NULL;
  srv->env.http = NULL;
  store_stop(srv->d.store);
}

static void on_http_stopped(void *arg) {
  Server *srv = arg;
  srv->http_stopped = true;
  maybe_stopped(srv);
}

static void on_handlers_idle(void *arg) {
  Server *srv = arg;
  srv->handlers_idle = true;
  maybe_stopped(srv);
}

static void on_tasks_idle(void *arg) {
  Server *srv = arg;
  srv->tasks_idle = true;
  maybe_stopped(srv);
}

static void force_stop(Server *srv) {
  http_server_close_all(srv->http);
  lua_host_abort_all("aborted: the server is shutting down");
}

static void on_grace_over(uv_timer_t *t) {
  Server *srv = t->data;
  log_warn(
      "shutdown: still busy after %d ms (%zu connections, %zu handlers);"
      " stopping them",
      SHUTDOWN_GRACE_MS, http_server_connections(srv->http),
      outbox_inflight(srv->d.outbox));
  force_stop(srv);
}

static void on_stop_signal(uv_signal_t *h, int signum) {
  Server *srv = h->data;
  if (srv->stopping) {
    log_warn("second %s: stopping everything now", strsignal(signum));
    force_stop(srv);
    return;
  }
  srv->stopping = true;
  log_info("%s: shutting down (%zu connections open, %zu handlers running)",
           strsignal(signum), http_server_connections(srv->http),
           outbox_inflight(srv->d.outbox));
  uv_timer_start(&srv->grace, on_grace_over, SHUTDOWN_GRACE_MS, 0);
  http_server_stop(srv->http, on_http_stopped, srv);
  outbox_stop(srv->d.outbox, on_handlers_idle, srv);
  /* Issue 14: a node stopped cleanly leaves the list of nodes. */
  node_stop(srv->d.node);
  /* Periodic tasks start no new run; those running finish. */
  lua_connect_stop(srv->lua);
  lua_connect_when_idle(on_tasks_idle, srv);
}

/* ---- reloading
 * ---------------------------------------------------------------- */

static void log_warnings(StrList *w) {
  for (size_t i = 0; i < w->n; i++) log_warn("%s", w->items[i]);
  strlist_clear(w);
}

static void on_reload_signal(uv_signal_t *h, int signum) {
  Server *srv = h->data;
  const char *path = srv->settings->config;
  LuaHost *fresh = NULL;
  char *err = NULL;
  StrList warnings = {0};
  if (lua_host_load(path, &srv->env, &fresh, &err, &warnings)) {
    log_error("reload: %s failed to load; keeping the previous script: %s",
              path, err);
    free(err);
    strlist_clear(&warnings);
    return;
  }
  log_warnings(&warnings);
  /* Handlers already running finish on the old state, which is freed after
   * the last of them; units in flight keep the Config they started with. */
  lua_host_release(srv->lua);
  srv->lua = fresh;
  /* Issue 14: the node merges the new handlers with its peers' and
   * publishes them. */
  node_set_config(srv->d.node, lua_host_config(fresh));
  store_set_durability(srv->d.store, srv->d.config->options.durability);
  log_info("reload: %s loaded", path);
  lua_connect_start(fresh);
  outbox_kick(srv->d.outbox);
}

static void on_logs(uv_prepare_t *p) { log_flush(); }

/* ---- start-up
 * ---------------------------------------------------------------- */

/* The token key: from RESTOCK_SECRET, or from a secret generated once and
 * kept in the database. */
static int secret_fn(StoreTx *tx, void *arg) {
  unsigned char *key = arg;
  char *secret = NULL;
  int rc = store_meta_get(tx, "unsubscribe_secret", &secret);
  if (rc == RESTOCK_ENOTFOUND) {
    unsigned char raw[32];
    char hex[65];
    if (RAND_bytes(raw, sizeof raw) != 1) {
      log_error("cannot generate the unsubscribe secret");
      return RESTOCK_ESTORE;
    }
    for (size_t i = 0; i < sizeof raw; i++)
      snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    /* Issue 14: nodes starting at once on one database each make one;
     * the first stored is everyone's. */
    rc = store_meta_add(tx, "unsubscribe_secret", hex);
    if (rc == 0) rc = store_meta_get(tx, "unsubscribe_secret", &secret);
  }
  if (rc) return rc;
  token_key(secret, key);
  free(secret);
  return 0;
}

static int load_secret(Server *srv) {
  const char *env = getenv("RESTOCK_SECRET");
  if (env && *env) {
    token_key(env, srv->d.token_key);
    return 0;
  }
  int rc = store_run(srv->d.store, secret_fn, srv->d.token_key);
  if (rc)
    start_error("cannot read or store the token secret: %s",
                restock_strerror(rc));
  return rc;
}

/* Issue 14: another node made deliveries due (LISTEN/NOTIFY). */
static void on_store_wake(void *arg) {
  Server *srv = arg;
  if (srv->d.outbox) outbox_kick(srv->d.outbox);
  engine_poke(srv->d.engine);
}

int server_run(const ServerSettings *s) {
  Server *srv = xcalloc(1, sizeof *srv);
  srv->settings = s;
  Domain *d = &srv->d;
  char *err = NULL;
  int rc = 0;
  /* Issue 14: the node id names this process's leases. */
  char node[NODE_ID_MAX], why[256];
  if (node_make_id(node, why, sizeof why)) {
    start_error("%s", why);
    free(srv);
    return EXIT_USAGE;
  }
  StoreOptions so = {.role = STORE_ROLE_SERVER,
                     .readers = -1,
                     .durability = DURABILITY_PROCESS,
                     .node_id = node};
  int orc = store_open(s->db, &so, &d->store, &err);
  if (orc) {
    start_error("%s", err);
    free(err);
    free(srv);
    return EXIT_RUNTIME;
  }
  size_t pending = 0;
  if (migrate_pending(d->store, &pending, &err)) {
    start_error("%s", err);
    free(err);
    rc = EXIT_RUNTIME;
    goto close_store;
  }
  if (pending) {
    /* A PostgreSQL URI may hold a password: never in a log line. */
    char *shown = store_display_uri(s->db);
    start_error(
        "the database %s has %zu pending migration%s; "
        "run `restockd migrations run` first",
        shown, pending, pending == 1 ? "" : "s");
    free(shown);
    rc = EXIT_USAGE;
    goto close_store;
  }
  if (load_secret(srv)) {
    rc = EXIT_RUNTIME;
    goto close_store;
  }
  uv_loop_init(&srv->loop);
  d->loop = &srv->loop;
  srv->env.d = d;
  srv->env.loop = &srv->loop;
  srv->env.ca_file = getenv("RESTOCK_CA_FILE");
  StrList warnings = {0};
  if (lua_host_load(s->config, &srv->env, &srv->lua, &err, &warnings)) {
    start_error("cannot load %s: %s", s->config, err);
    free(err);
    strlist_clear(&warnings);
    rc = EXIT_USAGE;
    goto close_loop;
  }
  log_warnings(&warnings);
  d->config = lua_host_config(srv->lua);
  store_set_durability(d->store, d->config->options.durability);
  /* Issue 14: registered (and knowing the other nodes' handlers) before it
   * listens. */
  d->node = node_new(d, node, lua_host_config(srv->lua));
  if (node_register(d->node)) {
    start_error("cannot register node %s in the database", node);
    rc = EXIT_RUNTIME;
    goto out;
  }
  long long released = 0;
  if (outbox_recover(d->store, node, &released) == 0 && released > 0)
    log_info("%lld deliveries left running by the previous run are due again",
             released);

  srv->api.d = d;
  srv->api.loop = &srv->loop;
  srv->api.ratelimit = ratelimit_new();
  srv->api.hooks = serve_hook;
  srv->api.hooks_ctx = srv;
  const char *token = getenv("RESTOCK_ADMIN_TOKEN");
  api_set_admin_token(&srv->api, token);
  if (!srv->api.admin_enabled)
    log_warn(
        "RESTOCK_ADMIN_TOKEN is not set: the admin API is disabled (every "
        "/admin route answers 401); set RESTOCK_ADMIN_TOKEN to enable it");

  uv_prepare_init(&srv->loop, &srv->logs);
  uv_prepare_start(&srv->logs, on_logs);
  uv_unref((uv_handle_t *)&srv->logs); /* it does not keep the loop running */
  log_set_buffered(true);
  store_set_wake(d->store, on_store_wake, srv);
  if (store_start(d->store, &srv->loop, &err)) {
    start_error("%s", err ? err : "cannot start the storage threads");
    free(err);
    rc = EXIT_RUNTIME;
    goto out;
  }
  d->engine = engine_new(d);
  d->outbox = outbox_new(d, (OutboxRunner){run_delivery, srv});
  outbox_set_lease_max(d->outbox, s->lease_ms);
  d->subscribe_hook = run_subscribe_hook;
  d->hook_ctx = srv;
  HttpConfig hc;
  http_config_defaults(&hc);
  hc.host = s->host;
  hc.port = s->port;
  hc.idle_timeout_ms = s->idle_timeout_ms;
  hc.header_timeout_ms = s->header_timeout_ms;
  hc.body_timeout_ms = s->body_timeout_ms;
  hc.max_connections = s->max_connections;
  if (http_server_start(&srv->loop, &hc, api_handle, &srv->api, &srv->http,
                        &err)) {
    start_error("%s", err);
    free(err);
    rc = EXIT_RUNTIME;
    goto out;
  }
  http_server_on_reject(srv->http, api_rejected);
  http_server_on_answer(srv->http, api_answered);
  uv_signal_init(&srv->loop, &srv->sigterm);
  uv_signal_init(&srv->loop, &srv->sigint);
  uv_signal_init(&srv->loop, &srv->sighup);
  uv_timer_init(&srv->loop, &srv->grace);
  srv->sigterm.data = srv->sigint.data = srv->sighup.data = srv->grace.data =
      srv;
  uv_signal_start(&srv->sigterm, on_stop_signal, SIGTERM);
  uv_signal_start(&srv->sigint, on_stop_signal, SIGINT);
  uv_signal_start(&srv->sighup, on_reload_signal, SIGHUP);
  /* The watchdog sees the stop signals too, so that a loop held by a
   * handler cannot keep the process past its grace period. */
  watchdog_watch_signal(SIGTERM);
  watchdog_watch_signal(SIGINT);
  srv->watchdog = watchdog_start(s->watchdog_ms, on_hang, srv);
  /* Work left by the previous run: checks due, deliveries pending. */
  engine_start(d->engine);
  outbox_kick(d->outbox);
  node_start(d->node);
  lua_connect_start(srv->lua);
  outbox_set_retention(d->outbox, s->retention_ms);
  srv->housekeeping = subscriptions_housekeeping(d);

  printf("restockd listening on http://%s\n", http_server_address(srv->http));
  fflush(stdout);
  char *shown = store_display_uri(s->db);
  log_info(
      "restockd %s listening on http://%s (database %s, plugin %s, "
      "node %s)",
      RESTOCKD_VERSION, http_server_address(srv->http), shown, s->config, node);
  free(shown);
  uv_run(&srv->loop, UV_RUN_DEFAULT);

out:
  /* Whatever is still open (nothing, after a clean stop) is closed here, so
   * that the loop can be closed and every handle's memory released. */
  if (srv->lua) lua_connect_stop(srv->lua);
  lua_host_abort_all("aborted: the server is stopping");
  engine_close(d->engine);
  outbox_close(d->outbox);
  node_close(d->node);
  subscriptions_housekeeping_close(srv->housekeeping);
  srv->housekeeping = NULL;
  http_client_close(srv->env.http);
  d->engine = NULL;
  d->outbox = NULL;
  d->node = NULL;
  srv->env.http = NULL;
  watchdog_stop(srv->watchdog);
  srv->watchdog = NULL;
  store_stop(d->store);
  uv_run(&srv->loop, UV_RUN_DEFAULT); /* the store's last completions */
  uv_walk(&srv->loop, close_handle, NULL);
  uv_run(&srv->loop, UV_RUN_DEFAULT);
  log_set_buffered(false);
  if (srv->http) http_server_free(srv->http);
  lua_host_release(srv->lua);
#ifdef RESTOCKD_DEBUG
  /* Debug builds count the Lua registry references: every one taken must
   * have been given back once every script is freed. The wording is the
   * sanitizers' own, so the test harness fails on it. */
  if (lua_host_refs() != 0)
    fprintf(stderr, "runtime error: %ld Lua registry references leaked\n",
            lua_host_refs());
#endif
  config_unref(d->config);
  d->config = NULL;
  ratelimit_free(srv->api.ratelimit);
  ratelimit_free(srv->api.login_limit);
close_loop:
  if (uv_loop_close(&srv->loop) != 0)
    log_error("shutdown: the loop did not close");
close_store:
  store_close(d->store);
  metrics_reset();
  http_client_global_cleanup();
  free(srv);
  return rc;
}
