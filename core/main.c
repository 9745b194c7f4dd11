/* restockd: command line, start-up and shut-down order. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/rand.h>
#include <uv.h>

#include "api.h"
#include "app.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "lua_host.h"
#include "migrate.h"
#include "store.h"
#include "xmalloc.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2
/* How long a shutdown waits for requests in flight. */
#define SHUTDOWN_GRACE_MS 10000

static const char usage[] =
    "usage: restockd COMMAND [OPTIONS]\n"
    "\n"
    "A restock (\"back in stock\") notification server.\n"
    "\n"
    "Commands:\n"
    "  migrations run     apply pending database migrations\n"
    "  migrations status  list applied and pending migrations\n"
    "  start              run the server\n"
    "  check              load plugin.lua and print its effective options as "
    "JSON\n"
    "\n"
    "Options (a flag beats its environment variable):\n"
    "  --db PATH      database file          RESTOCK_DB      ./restock.db\n"
    "  --config PATH  plugin script          RESTOCK_CONFIG  ./plugin.lua\n"
    "  --host ADDR    listen address         HOST            127.0.0.1\n"
    "  --port N       listen port (0: any)   PORT            9000\n"
    "  --log-format F text or json           RESTOCK_LOG_FORMAT  text\n"
    "  --log-level L  debug, info, warn, error  RESTOCK_LOG_LEVEL info\n"
    "  --access-log B on or off: a line per request  RESTOCK_ACCESS_LOG on\n"
    "  -h, --help     show this help\n"
    "  --version      print the version\n"
    "\n"
    "Environment:\n"
    "  RESTOCK_ADMIN_TOKEN      bearer token of the /admin API (unset: 401)\n"
    "  RESTOCK_SECRET           unsubscribe-token secret (default: generated\n"
    "                           once and kept in the database)\n"
    "  RESTOCK_IDLE_TIMEOUT     ms before an idle connection is closed "
    "(60000)\n"
    "  RESTOCK_MAX_CONNECTIONS  open connections before 503 (1024)\n"
    "  RESTOCK_EVENT_RETENTION  how long delivered events are kept: 30d,\n"
    "                           12h, 90m, 45s, or 0 for ever (30d)\n"
    "  RESTOCK_CA_FILE          CA bundle for restock.http.request (default:\n"
    "                           the system's)\n"
    "  RESTOCK_SCRIPTS          directory of the shipped Lua scripts that\n"
    "                           plugin.lua can require (default: the\n"
    "                           install's share/restockd/scripts, else the\n"
    "                           build's scripts/)\n"
    "\n"
    "Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad config.\n"
    "Signals: SIGTERM/SIGINT stop gracefully, SIGHUP reloads plugin.lua.\n";

typedef struct {
  const char *db;
  const char *config;
  const char *host;
  long long retention_ms;
  const char *log_format;
  const char *log_level;
  const char *access_log;
  int port;
  uint64_t idle_timeout_ms;
  unsigned max_connections;
} Settings;

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt,
                                                             ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "restockd: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\nTry 'restockd --help'.\n");
  va_end(ap);
  return EXIT_USAGE;
}

/* Parses a decimal number in [min, max]. Returns 0 or -1. */
static int parse_number(const char *s, long long min, long long max,
                        long long *out) {
  if (!s || !*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 15)
    return -1;
  long long v = strtoll(s, NULL, 10);
  if (v < min || v > max) return -1;
  *out = v;
  return 0;
}

/* Parses "30d", "12h", "90m", "45s" or "0" into milliseconds. Returns 0 or
 * -1. */
static int parse_duration(const char *text, long long *ms) {
  if (strcmp(text, "0") == 0) {
    *ms = 0;
    return 0;
  }
  size_t len = strlen(text);
  if (len < 2 || len > 12 || strspn(text, "0123456789") != len - 1) return -1;
  long long n = strtoll(text, NULL, 10), unit;
  switch (text[len - 1]) {
    case 's':
      unit = 1000;
      break;
    case 'm':
      unit = 60000;
      break;
    case 'h':
      unit = 3600000;
      break;
    case 'd':
      unit = 86400000;
      break;
    default:
      return -1;
  }
  if (n <= 0 || n > 36500LL * 86400000 / unit) return -1;
  *ms = n * unit;
  return 0;
}

/* True when `name` is one of the space-separated flags of `allowed`. */
static bool flag_allowed(const char *allowed, const char *name) {
  size_t len = strlen(name);
  for (const char *p = allowed; *p;) {
    size_t n = strcspn(p, " ");
    if (n == len && memcmp(p, name, len) == 0) return true;
    p += n;
    while (*p == ' ') p++;
  }
  return false;
}

static const char *env_or(const char *name, const char *dflt) {
  const char *v = getenv(name);
  return v && *v ? v : dflt;
}

/* Reads the settings from the environment, then the flags. `allowed` lists
 * the flags the command takes. Returns 0 or an exit code. */
static int parse_settings(int argc, char **argv, int first, const char *allowed,
                          Settings *s) {
  s->db = env_or("RESTOCK_DB", "./restock.db");
  s->config = env_or("RESTOCK_CONFIG", "./plugin.lua");
  s->host = env_or("HOST", "127.0.0.1");
  const char *port = env_or("PORT", "9000");
  s->log_format = env_or("RESTOCK_LOG_FORMAT", "text");
  s->log_level = env_or("RESTOCK_LOG_LEVEL", "info");
  s->access_log = env_or("RESTOCK_ACCESS_LOG", "on");
  long long n;
  for (int i = first; i < argc; i++) {
    const char *arg = argv[i], *value = NULL;
    const char *eq = strchr(arg, '=');
    char name[32];
    if (strncmp(arg, "--", 2) != 0)
      return usage_error("unexpected argument '%s'", arg);
    snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - arg) : (int)strlen(arg),
             arg);
    if (!flag_allowed(allowed, name))
      return usage_error("unknown option '%s' for this command", name);
    if (eq)
      value = eq + 1;
    else if (i + 1 < argc)
      value = argv[++i];
    else
      return usage_error("option '%s' needs a value", name);
    if (strcmp(name, "--db") == 0)
      s->db = value;
    else if (strcmp(name, "--config") == 0)
      s->config = value;
    else if (strcmp(name, "--host") == 0)
      s->host = value;
    else if (strcmp(name, "--port") == 0)
      port = value;
    else if (strcmp(name, "--log-format") == 0)
      s->log_format = value;
    else if (strcmp(name, "--log-level") == 0)
      s->log_level = value;
    else if (strcmp(name, "--access-log") == 0)
      s->access_log = value;
  }
  LogLevel level;
  if (log_parse_level(s->log_level, &level))
    return usage_error("invalid log level '%s' (debug, info, warn, error)",
                       s->log_level);
  log_set_level(level);
  if (strcmp(s->log_format, "text") && strcmp(s->log_format, "json"))
    return usage_error("invalid log format '%s' (text or json)", s->log_format);
  log_set_format(strcmp(s->log_format, "json") == 0 ? LOG_JSON : LOG_TEXT);
  if (strcmp(s->access_log, "on") && strcmp(s->access_log, "off"))
    return usage_error("invalid access log setting '%s' (on or off)",
                       s->access_log);
  log_set_access(strcmp(s->access_log, "on") == 0);
  if (parse_number(port, 0, 65535, &n))
    return usage_error("invalid port '%s' (0 to 65535)", port);
  s->port = (int)n;
  const char *idle = env_or("RESTOCK_IDLE_TIMEOUT", "60000");
  if (parse_number(idle, 1, 86400000, &n))
    return usage_error("invalid RESTOCK_IDLE_TIMEOUT '%s' (ms, at least 1)",
                       idle);
  s->idle_timeout_ms = (uint64_t)n;
  const char *keep = env_or("RESTOCK_EVENT_RETENTION", "30d");
  if (parse_duration(keep, &s->retention_ms))
    return usage_error(
        "invalid RESTOCK_EVENT_RETENTION '%s' (a number and s, m, h or d; "
        "0 keeps events for ever)",
        keep);
  const char *maxc = env_or("RESTOCK_MAX_CONNECTIONS", "1024");
  if (parse_number(maxc, 1, 1000000, &n))
    return usage_error("invalid RESTOCK_MAX_CONNECTIONS '%s'", maxc);
  s->max_connections = (unsigned)n;
  return 0;
}

/* Why a command cannot go on: a log entry, so that with --log-format json
 * (or RESTOCK_LOG_FORMAT=json, which every command reads) it is JSON too. */
__attribute__((format(printf, 1, 2))) static void cli_error(const char *fmt,
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

static int open_store(const Settings *s, Store **store) {
  char *err = NULL;
  if (store_open(s->db, store, &err)) {
    cli_error("%s", err);
    free(err);
    return EXIT_RUNTIME;
  }
  return 0;
}

static int cmd_migrations(const Settings *s, bool run) {
  Store *store = NULL;
  int rc = open_store(s, &store);
  if (rc) return rc;
  char *err = NULL;
  if ((run ? migrate_run : migrate_status)(store, stdout, &err)) {
    cli_error("migration failed: %s", err);
    free(err);
    rc = EXIT_RUNTIME;
  }
  store_close(store);
  return rc;
}

static int cmd_check(const Settings *s) {
  LuaHost *lua = NULL;
  char *err = NULL;
  if (lua_host_load(s->config, NULL, NULL, &lua, &err)) {
    cli_error("cannot load %s: %s", s->config, err);
    free(err);
    return EXIT_USAGE;
  }
  json_t *j = options_to_json(lua_host_options(lua));
  char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  printf("%s\n", text);
  free(text);
  json_decref(j);
  lua_host_release(lua);
  return 0;
}

/* ---- start ------------------------------------------------------------ */

typedef struct {
  App app;
  uv_signal_t sigterm, sigint, sighup;
  uv_timer_t grace;
  uv_prepare_t commit; /* group commit, once per loop iteration */
  uv_prepare_t logs;   /* writes the iteration's log lines */
  bool stopping;
  bool http_stopped;
  bool handlers_idle;
} Server;

static void close_handle(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Once HTTP has drained and no handler runs, every handle is closed and
 * uv_run returns. */
static void maybe_stopped(Server *srv) {
  if (!srv->http_stopped || !srv->handlers_idle) return;
  log_info("stopped");
  uv_close((uv_handle_t *)&srv->sigterm, NULL);
  uv_close((uv_handle_t *)&srv->sigint, NULL);
  uv_close((uv_handle_t *)&srv->sighup, NULL);
  uv_close((uv_handle_t *)&srv->grace, NULL);
  engine_close(srv->app.engine);
  outbox_close(srv->app.outbox);
  http_client_close(srv->app.http_client);
  srv->app.engine = NULL;
  srv->app.outbox = NULL;
  srv->app.http_client = NULL;
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

static void force_stop(Server *srv) {
  http_server_close_all(srv->app.http);
  lua_host_abort_all("aborted: the server is shutting down");
}

static void on_grace_over(uv_timer_t *t) {
  Server *srv = t->data;
  log_warn(
      "shutdown: still busy after %d ms (%zu connections, %zu handlers);"
      " stopping them",
      SHUTDOWN_GRACE_MS, http_server_connections(srv->app.http),
      outbox_inflight(srv->app.outbox));
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
           strsignal(signum), http_server_connections(srv->app.http),
           outbox_inflight(srv->app.outbox));
  uv_timer_start(&srv->grace, on_grace_over, SHUTDOWN_GRACE_MS, 0);
  http_server_stop(srv->app.http, on_http_stopped, srv);
  outbox_stop(srv->app.outbox, on_handlers_idle, srv);
}

static void on_reload_signal(uv_signal_t *h, int signum) {
  Server *srv = h->data;
  App *app = &srv->app;
  LuaHost *fresh = NULL;
  char *err = NULL;
  if (lua_host_load(app->config_path, app, app->loop, &fresh, &err)) {
    log_error("reload: %s failed to load; keeping the previous script: %s",
              app->config_path, err);
    free(err);
    return;
  }
  /* Handlers already running finish on the old state, which is freed after
   * the last of them. */
  lua_host_release(app->lua);
  app->lua = fresh;
  log_info("reload: %s loaded", app->config_path);
  outbox_kick(app->outbox);
}

/* Runs after every callback of a loop iteration, before the loop waits for
 * I/O: commits the iteration's writes in one transaction, then lets the
 * responses that reported them go. */
static void on_commit(uv_prepare_t *p) {
  Server *srv = p->data;
  uv_prepare_stop(p);
  int rc = store_group_commit(srv->app.store);
  if (rc)
    log_error(
        "group commit failed: the requests of this pass were not "
        "stored, and their connections are closed unanswered");
  if (srv->app.http) http_server_release(srv->app.http, rc == 0);
}

static void on_logs(uv_prepare_t *p) { log_flush(); }

static void on_group_open(void *arg) {
  Server *srv = arg;
  if (srv->app.http) http_server_hold(srv->app.http);
  if (!uv_is_closing((uv_handle_t *)&srv->commit))
    uv_prepare_start(&srv->commit, on_commit);
}

/* The unsubscribe-token key: from RESTOCK_SECRET, or from a secret generated
 * once and kept in the database. Returns 0 or -1 (logged). */
static int load_secret(App *app) {
  const char *env = getenv("RESTOCK_SECRET");
  if (env && *env) {
    token_key(env, app->token_key);
    return 0;
  }
  char *secret = NULL;
  int rc = store_meta_get(app->store, "unsubscribe_secret", &secret);
  if (rc == STORE_NOT_FOUND) {
    unsigned char raw[32];
    char hex[65];
    if (RAND_bytes(raw, sizeof raw) != 1) {
      log_error("cannot generate the unsubscribe secret");
      return -1;
    }
    for (size_t i = 0; i < sizeof raw; i++)
      snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    rc = store_meta_put(app->store, "unsubscribe_secret", hex);
    if (rc == 0) secret = xstrdup(hex);
  }
  if (rc) return -1;
  token_key(secret, app->token_key);
  free(secret);
  return 0;
}

static int cmd_start(const Settings *s) {
  Server srv;
  memset(&srv, 0, sizeof srv);
  App *app = &srv.app;
  app->config_path = s->config;
  int rc = open_store(s, &app->store);
  if (rc) return rc;

  size_t pending = 0;
  char *err = NULL;
  if (migrate_pending(app->store, &pending, &err)) {
    cli_error("%s", err);
    free(err);
    store_close(app->store);
    return EXIT_RUNTIME;
  }
  if (pending) {
    cli_error(
        "the database %s has %zu pending migration%s; "
        "run `restockd migrations run` first",
        s->db, pending, pending == 1 ? "" : "s");
    store_close(app->store);
    return EXIT_USAGE;
  }
  if (load_secret(app)) {
    store_close(app->store);
    return EXIT_RUNTIME;
  }
  api_set_admin_token(app, getenv("RESTOCK_ADMIN_TOKEN"));
  app->ratelimit = ratelimit_new();

  uv_loop_t loop;
  uv_loop_init(&loop);
  app->loop = &loop;
  uv_mutex_init(&app->reader_lock);
  uv_prepare_init(&loop, &srv.commit);
  srv.commit.data = &srv;
  uv_prepare_init(&loop, &srv.logs);
  uv_prepare_start(&srv.logs, on_logs);
  uv_unref((uv_handle_t *)&srv.logs); /* it does not keep the loop running */
  log_set_buffered(true);
  store_group_enable(app->store, on_group_open, &srv);
  store_set_hooks(app->store, metrics_commit, metrics_discard);
  store_checkpoint_in_background(app->store, &loop);
  app->engine = engine_new(app, &loop);
  app->outbox = outbox_new(app, &loop);
  if (lua_host_load(s->config, app, &loop, &app->lua, &err)) {
    cli_error("cannot load %s: %s", s->config, err);
    free(err);
    rc = EXIT_USAGE;
    goto out;
  }
  HttpConfig hc;
  http_config_defaults(&hc);
  hc.host = s->host;
  hc.port = s->port;
  hc.idle_timeout_ms = s->idle_timeout_ms;
  hc.max_connections = s->max_connections;
  if (http_server_start(&loop, &hc, api_handle, app, &app->http, &err)) {
    cli_error("%s", err);
    free(err);
    rc = EXIT_RUNTIME;
    goto out;
  }
  http_server_on_reject(app->http, api_rejected);
  http_server_on_answer(app->http, api_answered);
  uv_signal_init(&loop, &srv.sigterm);
  uv_signal_init(&loop, &srv.sigint);
  uv_signal_init(&loop, &srv.sighup);
  uv_timer_init(&loop, &srv.grace);
  srv.sigterm.data = srv.sigint.data = srv.sighup.data = srv.grace.data = &srv;
  uv_signal_start(&srv.sigterm, on_stop_signal, SIGTERM);
  uv_signal_start(&srv.sigint, on_stop_signal, SIGINT);
  uv_signal_start(&srv.sighup, on_reload_signal, SIGHUP);
  /* Work left by the previous run: checks due, deliveries pending. */
  engine_rearm(app->engine);
  outbox_kick(app->outbox);
  outbox_set_retention(app->outbox, s->retention_ms);

  printf("restockd listening on http://%s\n", http_server_address(app->http));
  fflush(stdout);
  log_info("restockd %s listening on http://%s (database %s, plugin %s)",
           RESTOCKD_VERSION, http_server_address(app->http), s->db, s->config);
  /* A server that answers 401 to every admin call looks broken unless it
   * says why. */
  const char *token = getenv("RESTOCK_ADMIN_TOKEN");
  if (!token || !*token)
    log_warn(
        "RESTOCK_ADMIN_TOKEN is not set: the admin API is disabled (every "
        "/admin route answers 401); set RESTOCK_ADMIN_TOKEN in the "
        "environment and restart to enable it");
  uv_run(&loop, UV_RUN_DEFAULT);

out:
  /* Whatever is still open (nothing, after a clean stop) is closed here, so
   * that the loop can be closed and every handle's memory released. */
  lua_host_abort_all("aborted: the server is stopping");
  engine_close(app->engine);
  outbox_close(app->outbox);
  http_client_close(app->http_client);
  uv_walk(&loop, close_handle, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  if (store_group_commit(app->store))
    log_error("shutdown: the last writes could not be stored");
  log_set_buffered(false);
  if (uv_loop_close(&loop) != 0) log_error("shutdown: the loop did not close");
  if (app->http) http_server_free(app->http);
  lua_host_release(app->lua);
  store_close(app->reader);
  uv_mutex_destroy(&app->reader_lock);
  store_close(app->store);
  ratelimit_free(app->ratelimit);
  metrics_reset();
  token_cleanup();
  http_client_global_cleanup();
  return rc;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  Settings s;
  memset(&s, 0, sizeof s);
  if (argc < 2) {
    fputs(usage, stderr);
    return EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 ||
      strcmp(cmd, "help") == 0) {
    fputs(usage, stdout);
    return 0;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
    printf("restockd %s\n", RESTOCKD_VERSION);
    return 0;
  }
  for (int i = 2; i < argc; i++)
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      fputs(usage, stdout);
      return 0;
    }
  int rc;
  if (strcmp(cmd, "migrations") == 0) {
    if (argc < 3 || (strcmp(argv[2], "run") && strcmp(argv[2], "status")))
      return usage_error("'migrations' takes 'run' or 'status'");
    if ((rc = parse_settings(argc, argv, 3, "--db", &s))) return rc;
    return cmd_migrations(&s, strcmp(argv[2], "run") == 0);
  }
  if (strcmp(cmd, "start") == 0) {
    if ((rc = parse_settings(argc, argv, 2,
                             "--db --config --host --port --log-format "
                             "--log-level --access-log",
                             &s)))
      return rc;
    return cmd_start(&s);
  }
  if (strcmp(cmd, "check") == 0) {
    if ((rc = parse_settings(argc, argv, 2, "--config", &s))) return rc;
    return cmd_check(&s);
  }
  return usage_error("unknown command '%s'", cmd);
}
