/* The Lua host: one Lua 5.4 state running the operator's plugin.lua, with the
 * `restock` module preloaded (lua_api.c), and the event handlers it
 * subscribed, run as coroutines resumed from the event loop.
 *
 * Every call into Lua is a protected call whose error is logged with a
 * traceback. A handler that runs past its timeout is stopped by a count hook
 * that checks a wall-clock deadline; once stopped, the hook raises on every
 * line, so the script cannot swallow the error with pcall. A handler waiting
 * (restock.sleep, restock.http.request) when its time is up has its wait
 * cancelled and is never resumed. */
#ifndef RESTOCKD_LUA_HOST_H
#define RESTOCKD_LUA_HOST_H

#include <jansson.h>
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct App;

/* The options of contract section 2, with their defaults applied. */
typedef struct {
  long long trigger_delay;
  long long inventory_required;
  long long batch_size;
  long long max_attempts;
  long long handler_timeout;
  double notify_per_unit;
  long long notify_interval;
  long long subscribe_rate_limit;
  bool trust_proxy;
  char *store_cors; /* NULL when unset */
} Options;

typedef struct LuaHost LuaHost;
typedef struct LuaTask LuaTask;

/* Creates a state, preloads `restock`, and runs the script at `path`. `app`
 * is what restock.emit and restock.variants reach; NULL (for `restockd
 * check`) makes them raise. `loop` runs the handlers' timers; NULL allows no
 * handler to run. Returns 0, or -1 with a message in *err (free it). */
int lua_host_load(const char *path, struct App *app, uv_loop_t *loop,
                  LuaHost **out, char **err);
/* Frees the host now if no handler is running, else once the last one ends
 * (a reloaded script's handlers finish on the state they started on). */
void lua_host_release(LuaHost *h);
const Options *lua_host_options(const LuaHost *h);
/* The options as a JSON object of every option's effective value. */
json_t *options_to_json(const Options *o);

/* A handler subscribed to an event, as the script declared it. */
typedef struct {
  const char *name;       /* unique among the event's handlers */
  long long max_attempts; /* the handler's own, or the option */
} LuaHandlerInfo;

/* Fills up to `max` entries of `out` with the handlers subscribed to
 * `event`, in subscription order, and returns how many there are (which may
 * exceed `max`). The names live as long as the host. */
size_t lua_host_handlers(LuaHost *h, const char *event, LuaHandlerInfo *out,
                         size_t max);

/* Called once when a handler run ends: `ok`, or not with `err` saying why.
 * `retry` is false when the handler said not to retry: it returned
 * `nil, err, {retry = false}`. */
typedef void (*LuaTaskDone)(void *arg, bool ok, bool retry, const char *err);

enum { LUA_HOST_NO_HANDLER = -2 };

/* Runs handler `handler` of `event` with the event's data (JSON text) as its
 * argument, for at most `timeout_ms`. Returns 0 when it started: `done` is
 * then called exactly once, possibly before this returns. Returns
 * LUA_HOST_NO_HANDLER if the script has no such handler, or -1 if `data`
 * is not JSON; `done` is then never called. */
int lua_host_run(LuaHost *h, const char *event, const char *handler,
                 const char *data, uint64_t timeout_ms, LuaTaskDone done,
                 void *arg);
/* Number of handler runs in progress. */
size_t lua_host_running(const LuaHost *h);
/* Aborts every running handler of every host (`done` gets ok=false and
 * `why`). */
void lua_host_abort_all(const char *why);

/* ---- for suspending calls (lua_api.c, the HTTP client) ---------------- */

/* The task whose own coroutine is `L`, or NULL (at load time, in a nested
 * coroutine, or in `restockd check`). */
LuaTask *lua_task_current(lua_State *L);
/* Marks `t` as waiting; the calling C function must then `return
 * lua_yield(L, 0)`. `cancel(ctx)` is called if the task is aborted while it
 * waits: it must release the wait's resources and never resume the task. */
void lua_task_wait(LuaTask *t, void (*cancel)(void *ctx), void *ctx);
/* Ends the wait: resumes the task with the `nresults` values the caller
 * pushed on lua_task_thread(t). */
void lua_task_resume(LuaTask *t, int nresults);
lua_State *lua_task_thread(LuaTask *t);
uv_loop_t *lua_task_loop(LuaTask *t);

/* ---- used by lua_api.c ------------------------------------------------- */
Options *lua_host_options_mut(LuaHost *h);
struct App *lua_host_app(LuaHost *h);
/* False while plugin.lua's top-level code runs. */
bool lua_host_loaded(const LuaHost *h);
/* Pushes the registry table of handlers (event name -> list). */
void lua_host_push_handlers(LuaHost *h);
/* Opens the `restock` module: the loader given to package.preload. */
int lua_api_open(lua_State *L);

#endif
