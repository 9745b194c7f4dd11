/* `restockd start`: the start-up order, the signals (SIGTERM and SIGINT
 * drain and stop, SIGHUP reloads plugin.lua), and the shut-down order. */
#ifndef RESTOCKD_SERVER_H
#define RESTOCKD_SERVER_H

#include <stdint.h>

typedef struct {
  const char *db;
  const char *config;
  const char *host;
  int port;
  long long retention_ms;
  uint64_t idle_timeout_ms;
  uint64_t header_timeout_ms;
  uint64_t body_timeout_ms;
  unsigned max_connections;
  long long
      lease_ms; /* RESTOCK_LEASE_MS: a delivery's longest lease; 0: 15 s */
  uint64_t watchdog_ms; /* how long Lua may hold the loop at a stretch */
} ServerSettings;

/* Runs the server until it is stopped. Returns the process's exit code: 0
 * after a clean stop, 1 for a runtime failure (the database cannot be
 * opened or is in use, the port is taken), 2 for a bad plugin.lua or a
 * database with pending migrations. */
int server_run(const ServerSettings *s);

#endif
