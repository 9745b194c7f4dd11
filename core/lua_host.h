/* The Lua host: one Lua 5.4 state running the operator's plugin.lua, with the
 * `restock` module preloaded (lua_api.c), and the event handlers it
 * subscribed, run as coroutines resumed from the event loop.
 *
 * Every call into Lua goes through one protected-call helper (lua_host_pcall)
 * whose error is logged with a traceback; coroutines are resumed by
 * task_step. A handler that runs past its timeout is stopped by a count hook
 * that checks a wall-clock deadline; once stopped, the hook raises on every
 * line, so the script cannot swallow the error with pcall. A handler waiting
 * (restock.sleep, restock.http.request, a database call) when its time is up
 * has its wait cancelled and is never resumed. */
#ifndef RESTOCKD_LUA_HOST_H
#define RESTOCKD_LUA_HOST_H

#include <jansson.h>
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "domain.h"
#include "http_client.h"
#include "strlist.h"

/* What a loaded script reaches beyond itself: the use-cases (NULL in
 * `restockd check`, where database calls raise), the loop its handlers run
 * on (NULL: none may run), and the outbound HTTP client, made on first use
 * and shared by every reloaded script. Owned by the server. */
typedef struct LuaEnv {
  Domain *d;
  uv_loop_t *loop;
  HttpClient *http;
  const char *ca_file; /* RESTOCK_CA_FILE, or NULL */
} LuaEnv;

typedef struct LuaHost LuaHost;
typedef struct LuaTask LuaTask;

/* Creates a state, preloads `restock`, and runs the script at `path`.
 * Returns 0, or RESTOCK_EINVAL with a message in *err (free it). Warnings about
 * the script (a handler for an event nothing emits) are appended to *warnings,
 * if not NULL. */
int lua_host_load(const char *path, LuaEnv *env, LuaHost **out, char **err,
                  StrList *warnings);
/* Frees the host now if no handler is running, else once the last one ends
 * (a reloaded script's handlers finish on the state they started on). */
void lua_host_release(LuaHost *h);
/* The settings the script set: its options and handlers, with one more
 * reference for the caller. */
Config *lua_host_config(LuaHost *h);

/* Called once when a handler run ends: `ok`, or not with `err` saying why.
 * `retry` is false when the handler said not to retry: it returned
 * `nil, err, {retry = false}`. */
typedef void (*LuaTaskDone)(void *arg, bool ok, bool retry, const char *err);

/* One handler run: handler `handler` of `event` with the event's data (JSON
 * text) as its argument, for at most `timeout_ms`. With a non-empty
 * `subscriber` (a per-subscriber delivery), the handler gets the data less
 * `emails` and `subscribers`, plus `email` and `subscriber` (that email's
 * entry of `subscribers`, or {email = ...}). `event_id` and `attempts` name
 * the delivery in logs and to the watchdog. */
typedef struct {
  const char *event;
  const char *handler;
  const char *subscriber;
  const char *data;
  long long event_id;
  long long attempts;
  uint64_t timeout_ms;
} LuaRun;

/* Starts run `r`. Returns 0 when it started: `done` is then called exactly
 * once, possibly before this returns. Returns RESTOCK_ENOTFOUND if the
 * script has no such handler, or RESTOCK_EINVAL if the data is not JSON;
 * `done` is then never called. */
int lua_host_run(LuaHost *h, const LuaRun *r, LuaTaskDone done, void *arg);
/* restock.on_subscribe: registers the function on top of L's stack
 * (popping it) as the host's hook; RESTOCK_EINVAL when one is set. */
int lua_host_set_subscribe_hook(LuaHost *h, lua_State *L);
bool lua_host_has_subscribe_hook(const LuaHost *h);
/* Runs the hook with `arg` (a JSON object) for at most `timeout_ms`.
 * `done` gets ok when it allowed the subscription; !ok with !retry when it
 * refused, `err` being its message; !ok with retry when it failed (an
 * error, a timeout). Returns RESTOCK_ENOTFOUND when there is no hook (and
 * `done` is never called); else `done` is called once, maybe before this
 * returns. */
int lua_host_run_subscribe_hook(LuaHost *h, json_t *arg, uint64_t timeout_ms,
                                LuaTaskDone done, void *darg);
/* Called once when a task of lua_host_spawn ends. When it returned, `co`
 * holds its `nres` results on top of its stack (read them now: they go
 * once this returns) and `err` is NULL; when it failed, `co` is NULL, `err`
 * says why (with a traceback) and `timed_out` whether it ran past its
 * timeout. */
typedef void (*LuaSpawnDone)(void *arg, lua_State *co, int nres,
                             const char *err, bool timed_out);
/* Runs the function below the `nargs` arguments on top of the host's main
 * stack (lua_host_state) as a coroutine of its own, for at most
 * `timeout_ms`: a route's request, a periodic task. `what` names it in
 * logs and to the watchdog. Pops the function and arguments. Returns 0
 * when it started: `done` is then called exactly once, possibly before
 * this returns; RESTOCK_EUNAVAIL when no handler can run (no loop), and
 * `done` is never called. */
int lua_host_spawn(LuaHost *h, int nargs, const char *what, uint64_t timeout_ms,
                   LuaSpawnDone done, void *arg);
/* The host's main Lua state, to push a spawned task's function on. */
lua_State *lua_host_state(LuaHost *h);
/* Number of handler runs in progress. */
size_t lua_host_running(const LuaHost *h);
/* Aborts every running handler of every host (`done` gets ok=false and
 * `why`). */
void lua_host_abort_all(const char *why);
/* Bytes the state holds now. */
size_t lua_host_memory(const LuaHost *h);
/* References taken with lua_host_ref and not yet released, over every
 * state (debug builds count them; 0 otherwise). */
long lua_host_refs(void);

/* ---- for lua_api.c ---------------------------------------------------- */

/* The one protected call into Lua: calls the function below `nargs`
 * arguments with debug.traceback as its message handler. On an error,
 * leaves the message with its traceback on the stack and returns the
 * status; otherwise leaves `nresults` results and returns LUA_OK. */
int lua_host_pcall(lua_State *L, int nargs, int nresults);
/* luaL_ref and luaL_unref in the registry, counted in debug builds. */
int lua_host_ref(lua_State *L);
void lua_host_unref(lua_State *L, int ref);

/* The task whose own coroutine is `L`, or NULL (at load time, in a nested
 * coroutine, or in `restockd check`). */
LuaTask *lua_task_current(lua_State *L);
/* Marks `t` as waiting; the calling C function must then `return
 * lua_yield(L, 0)`. `cancel(ctx)` is called if the task is aborted while it
 * waits: it must release (or disown) the wait and never resume the task. */
void lua_task_wait(LuaTask *t, void (*cancel)(void *ctx), void *ctx);
/* Ends the wait: resumes the task with the `nresults` values the caller
 * pushed on lua_task_thread(t). */
void lua_task_resume(LuaTask *t, int nresults);
lua_State *lua_task_thread(LuaTask *t);
uv_loop_t *lua_task_loop(LuaTask *t);

LuaHost *lua_host_of(lua_State *L);
LuaEnv *lua_host_env(LuaHost *h);
Config *lua_host_config_mut(LuaHost *h);
/* False while plugin.lua's top-level code runs. */
bool lua_host_loaded(const LuaHost *h);
/* Pushes the registry table of handlers (event name -> list). */
void lua_host_push_handlers(LuaHost *h);
/* Opens the `restock` module: the loader given to package.preload. */
int lua_api_open(lua_State *L);

#endif
