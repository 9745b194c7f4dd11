/* restockd: command line, start-up and shut-down order. */
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/rand.h>
#include <uv.h>

#include "config.h"
#include "log.h"
#include "lua_host.h"
#include "migrate.h"
#include "server.h"
#include "store.h"
#include "xmalloc.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

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
    "  --db PATH      SQLite file, or a postgresql:// URI  RESTOCK_DB\n"
    "                 (default ./restock.db)\n"
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
    "  RESTOCK_HEADER_TIMEOUT   ms from a request's first byte to the end of "
    "its\n"
    "                           head, else 408 (10000)\n"
    "  RESTOCK_BODY_TIMEOUT     ms from the end of a head to the end of its "
    "body,\n"
    "                           else 408 (30000)\n"
    "  RESTOCK_WATCHDOG         ms Lua may hold the event loop at a stretch\n"
    "                           (a stuck C call, a finalizer) before the\n"
    "                           delivery is marked dead and the server exits\n"
    "                           (10000)\n"
    "  RESTOCK_MAX_CONNECTIONS  open connections at most; when full, the one "
    "idle\n"
    "                           longest or slowest gives way, 503 if all are "
    "busy\n"
    "                           (1024)\n"
    "  RESTOCK_EVENT_RETENTION  how long delivered events are kept: 30d,\n"
    "                           12h, 90m, 45s, or 0 for ever (30d)\n"
    "  RESTOCK_NODE_ID          this node's name among the nodes sharing a\n"
    "                           PostgreSQL database (default HOST:PID:START)\n"
    "  RESTOCK_LEASE_MS         longest lease of a running delivery before it\n"
    "                           is renewed (15000)\n"
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
  uint64_t header_timeout_ms;
  uint64_t body_timeout_ms;
  unsigned max_connections;
  long long lease_ms;
  uint64_t watchdog_ms;
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
  const char *head = env_or("RESTOCK_HEADER_TIMEOUT", "10000");
  if (parse_number(head, 1, 86400000, &n))
    return usage_error("invalid RESTOCK_HEADER_TIMEOUT '%s' (ms, at least 1)",
                       head);
  s->header_timeout_ms = (uint64_t)n;
  const char *body = env_or("RESTOCK_BODY_TIMEOUT", "30000");
  if (parse_number(body, 1, 86400000, &n))
    return usage_error("invalid RESTOCK_BODY_TIMEOUT '%s' (ms, at least 1)",
                       body);
  s->body_timeout_ms = (uint64_t)n;
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
  const char *lease = env_or("RESTOCK_LEASE_MS", "15000");
  if (parse_number(lease, 100, 86400000, &n))
    return usage_error("invalid RESTOCK_LEASE_MS '%s' (ms, at least 100)",
                       lease);
  s->lease_ms = n;
  const char *wd = env_or("RESTOCK_WATCHDOG", "10000");
  if (parse_number(wd, 100, 3600000, &n))
    return usage_error(
        "invalid RESTOCK_WATCHDOG '%s' (ms, from 100 to 3600000)", wd);
  s->watchdog_ms = (uint64_t)n;
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
  StoreOptions o = {.role = STORE_ROLE_CLI, .durability = DURABILITY_PROCESS};
  if (store_open(s->db, &o, store, &err)) {
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
  StrList warnings = {0};
  if (lua_host_load(s->config, NULL, &lua, &err, &warnings)) {
    cli_error("cannot load %s: %s", s->config, err);
    free(err);
    strlist_clear(&warnings);
    return EXIT_USAGE;
  }
  for (size_t i = 0; i < warnings.n; i++)
    fprintf(stderr, "restockd check: warning: %s\n", warnings.items[i]);
  strlist_clear(&warnings);
  Config *c = lua_host_config(lua);
  json_t *j = config_options_json(&c->options);
  char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  printf("%s\n", text);
  free(text);
  json_decref(j);
  /* The handlers, for a person: on stderr, so that stdout stays the
   * options' JSON for scripts that read it. */
  if (c->nhandlers == 0)
    fprintf(stderr, "restockd check: no handler is subscribed to any event\n");
  for (size_t i = 0; i < c->nhandlers; i++) {
    const HandlerSpec *h = &c->handlers[i];
    bool first = true;
    for (size_t k = 0; k < i; k++)
      if (strcmp(c->handlers[k].event, h->event) == 0) first = false;
    if (!first) continue;
    fprintf(stderr, "restockd check: %s:\n", h->event);
    for (size_t k = i; k < c->nhandlers; k++) {
      const HandlerSpec *x = &c->handlers[k];
      if (strcmp(x->event, h->event) != 0) continue;
      fprintf(stderr, "  handler '%s' (max_attempts %lld, each %s)\n", x->name,
              x->max_attempts,
              x->each == EACH_SUBSCRIBER ? "subscriber" : "event");
    }
  }
  config_unref(c);
  lua_host_release(lua);
  return 0;
}

static int cmd_start(const Settings *s) {
  ServerSettings ss = {
      .db = s->db,
      .config = s->config,
      .host = s->host,
      .port = s->port,
      .retention_ms = s->retention_ms,
      .idle_timeout_ms = s->idle_timeout_ms,
      .header_timeout_ms = s->header_timeout_ms,
      .body_timeout_ms = s->body_timeout_ms,
      .max_connections = s->max_connections,
      .lease_ms = s->lease_ms,
      .watchdog_ms = s->watchdog_ms,
  };
  return server_run(&ss);
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  /* The storage threads allocate and free a group's worth of rows at a
   * time; glibc would give that memory back to the kernel after each group
   * (madvise, a TLB shootdown that stalls every thread) only to fault it
   * in again for the next. Keeping up to 16 MiB free in each arena, and
   * serving blocks under 1 MiB from the arenas rather than from mmap,
   * stops that churn. */
  mallopt(M_TRIM_THRESHOLD, 16 << 20);
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
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
