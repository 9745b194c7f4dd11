/* The parts of the `restock` module that connect a shop to restockd:
 * restock.crypto (lua_crypto.c); and, in lua_connect.c, the script's own
 * HTTP routes under /hooks/ (restock.route), periodic tasks
 * (restock.every), a durable key-value for scripts (restock.kv), and the
 * catalogue and order calls a connector makes (restock.variants.upsert,
 * restock.inventory.*, restock.orders.record, restock.stock_locations,
 * restock.sales_channels, restock.publishable_api_keys). lua_api_open
 * registers them.
 *
 * Routes and periodic tasks run as coroutines of the Lua host
 * (lua_host_spawn) under handler_timeout; their database calls suspend only
 * them, as a handler's do. */
#ifndef RESTOCKD_LUA_CONNECT_H
#define RESTOCKD_LUA_CONNECT_H

#include <lua.h>
#include <stddef.h>

#include "http.h"

typedef struct LuaHost LuaHost;

/* Sets restock.crypto on the module table on top of the stack. */
void lua_crypto_open(lua_State *L);
/* Sets the connector calls on the module table on top of the stack. */
void lua_connect_open(lua_State *L);

/* Longest key and value of restock.kv, in bytes. */
#define LUA_KV_MAX_KEY 255
#define LUA_KV_MAX_VALUE (64 * 1024)

/* Serves `req` (a path under /hooks/) with the script's route for it, if
 * it registered one: the request is deferred and answered when the route's
 * coroutine ends. `client` is the caller's address (trust_proxy applied).
 * Returns 0 when the route took the request; RESTOCK_ENOTFOUND when no
 * route has this path; RESTOCK_ENOTALLOWED when one has it with other
 * methods, listed in `allow` ("GET, POST"). Nothing is answered unless it
 * returns 0. */
int lua_connect_route(LuaHost *h, HttpRequest *req, const char *client,
                      char *allow, size_t allow_len);
/* Starts the script's periodic tasks: each runs `ms` after it is started,
 * then `ms` after each run ended. Call once, when the database and the
 * loop are up. */
void lua_connect_start(LuaHost *h);
/* Stops them: no run starts any more, and the leases this node holds are
 * given back. Runs in progress finish. Idempotent. */
void lua_connect_stop(LuaHost *h);
/* Calls `cb(arg)` once no periodic run is in progress in any script (at
 * once if none is), for a shutdown. */
void lua_connect_when_idle(void (*cb)(void *arg), void *arg);
/* Releases what the host's routes and tasks hold in its state (before it
 * is closed). */
void lua_connect_free(LuaHost *h);

#endif
