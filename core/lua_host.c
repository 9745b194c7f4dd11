#include "lua_host.h"

#include "email.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "outbox.h"
#include "log.h"
#include "lua_connect.h"
#include "lua_json.h"
#include "watchdog.h"
#include "xmalloc.h"

/* Instructions between two looks at the clock while Lua runs. */
#define HOOK_COUNT 1000
/* The longest a handler runs before it yields the loop to other work (HTTP
 * above all); it is resumed on the next loop iteration. */
#define SLICE_NS (2 * 1000000ULL)
/* The longest plugin.lua may take to load. */
#define LOAD_TIMEOUT_MS 10000

struct LuaHost {
  lua_State *L;
  size_t mem_used;  /* bytes the state holds (its allocator counts them) */
  Config *config;   /* the options and handlers the script set */
  int handlers_ref; /* registry: event name -> array of {fn=, name=, ...} */
  int hook_ref;     /* registry: restock.on_subscribe's function, or
                       LUA_NOREF */
  LuaEnv *env;
  size_t running; /* tasks not yet freed */
  bool loaded;
  bool released;
};

struct LuaTask {
  LuaHost *host;
  lua_State *co;
  int co_ref;
  uv_timer_t deadline;
  uv_idle_t slice; /* resumes a task that was preempted */
  int open_handles;
  uint64_t slice_start_ns;
  bool preempted;
  char *event;
  char *handler;
  char *subscriber;
  char *what; /* "delivery of EVENT #ID to HANDLER", for the watchdog */
  long long event_id;
  long long attempts;
  uint64_t timeout_ms;
  uint64_t deadline_ns;
  bool killed;
  bool waiting;
  bool finished;
  void (*cancel)(void *ctx);
  void *cancel_ctx;
  LuaTaskDone done;
  LuaSpawnDone spawn_done; /* instead of done, for lua_host_spawn's tasks */
  void *arg;
  bool hook; /* restock.on_subscribe's run, not a delivery */
  LuaTask *prev, *next;
};

/* References taken with lua_host_ref and not released, over every state:
 * debug builds count them, and the suite checks the count comes back. */
static long refs_held;

long lua_host_refs(void) { return refs_held; }

int lua_host_ref(lua_State *L) {
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
#ifdef RESTOCKD_DEBUG
  if (ref != LUA_NOREF && ref != LUA_REFNIL) refs_held++;
#endif
  return ref;
}

void lua_host_unref(lua_State *L, int ref) {
#ifdef RESTOCKD_DEBUG
  if (ref != LUA_NOREF && ref != LUA_REFNIL) refs_held--;
#endif
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
}

/* The task whose coroutine (or a coroutine it resumed) is running now. One
 * thread runs Lua, so there is at most one. */
static LuaTask *current;
/* Every running task, of every host (a reloaded script's included). */
static LuaTask *all_tasks;
/* While plugin.lua loads: the deadline of its top-level code. */
static uint64_t load_deadline_ns;
static bool load_killed;

/* The count hook: checks the wall clock and, once the deadline has passed,
 * raises an error on every line and every instruction, so that no pcall in
 * the script can keep it running. Before that, it preempts a handler whose
 * time slice is used up. */
static void hook(lua_State *L, lua_Debug *ar) {
  bool killed;
  if (current) {
    uint64_t now = uv_hrtime();
    if (!current->killed && now >= current->deadline_ns) current->killed = true;
    killed = current->killed;
    /* Time-slicing: a handler that computes for long gives the loop back
     * now and then, so the server keeps answering. Only the handler's own
     * coroutine is preempted (a yield in a nested one would look like an
     * ordinary yield to the script), and only where it can yield. */
    if (!killed && L == current->co &&
        now - current->slice_start_ns >= SLICE_NS && lua_isyieldable(L)) {
      current->preempted = true;
      lua_yield(L, 0);
      return;
    }
  } else {
    if (!load_killed && load_deadline_ns && uv_hrtime() >= load_deadline_ns)
      load_killed = true;
    killed = load_killed;
  }
  if (!killed) return;
  lua_sethook(L, hook, LUA_MASKLINE | LUA_MASKCOUNT, 1);
  luaL_error(L, "timed out");
}

static int traceback(lua_State *L) {
  /* [msg] */
  const char *msg = lua_tostring(L, 1);
  if (!msg)
    msg =
        lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* The directory of the shipped scripts: RESTOCK_SCRIPTS; else, for an
 * installed binary (PREFIX/bin/restockd), PREFIX/share/restockd/scripts if
 * it exists; else the scripts/ directory of the source tree it was built
 * in. Writes it into `out`. */
static void scripts_dir(char *out, size_t len) {
  const char *env = getenv("RESTOCK_SCRIPTS");
  if (env && *env) {
    snprintf(out, len, "%s", env);
    return;
  }
  char exe[4096];
  size_t n = sizeof exe;
  if (uv_exepath(exe, &n) == 0) {
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = '\0';
      snprintf(out, len, "%s/../share/restockd/scripts", exe);
      uv_fs_t req;
      int rc = uv_fs_stat(NULL, &req, out, NULL);
      uv_fs_req_cleanup(&req);
      if (rc == 0) return;
    }
  }
  snprintf(out, len, "%s", RESTOCKD_SCRIPTS_DIR);
}

/* Makes `require` look in the plugin's own directory, then in the shipped
 * scripts, then where Lua looks by default. */
static void set_package_path(lua_State *L, const char *plugin) {
  const char *slash = strrchr(plugin, '/');
  char scripts[4200];
  scripts_dir(scripts, sizeof scripts);
  lua_getglobal(L, "package"); /* [package] */
  if (slash)
    lua_pushlstring(L, plugin, (size_t)(slash - plugin));
  else
    lua_pushliteral(L, ".");   /* [package, dir] */
  lua_getfield(L, -2, "path"); /* [package, dir, path] */
  lua_pushfstring(L, "%s/?.lua;%s/?.lua;%s", lua_tostring(L, -2), scripts,
                  lua_tostring(L, -1)); /* [package, dir, path, new] */
  lua_setfield(L, -4, "path");          /* [package, dir, path] */
  lua_pop(L, 3);
}

/* The state's allocator: it counts what the state holds and refuses to go
 * past lua_memory_limit, so that a handler that allocates without end gets
 * "not enough memory" (and fails) instead of taking the process's memory.
 * The limit is read at each allocation: restock.options sets it while the
 * script loads. Freeing always succeeds. */
static void *host_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  LuaHost *h = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    free(ptr);
    h->mem_used -= old;
    return NULL;
  }
  size_t limit = (size_t)h->config->options.lua_memory_limit << 20;
  if (nsize > old && h->mem_used - old + nsize > limit) return NULL;
  void *p = realloc(ptr, nsize);
  if (p) h->mem_used = h->mem_used - old + nsize;
  return p;
}

/* An error outside any protected call: nothing can go on. Say so first. */
static int host_panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  log_error("Lua: unprotected error, stopping: %s", msg ? msg : "?");
  log_flush();
  abort();
  return 0;
}

/* Lua's warn() as log lines (off unless the script turns it on, as in the
 * stand-alone interpreter). */
static void host_warn(void *ud, const char *msg, int tocont) {
  static bool on, continued;
  if (!continued && tocont == 0 && msg[0] == '@') {
    if (strcmp(msg, "@on") == 0) on = true;
    if (strcmp(msg, "@off") == 0) on = false;
    return;
  }
  if (on) log_warn("Lua warning: %s", msg);
  continued = tocont != 0;
}

size_t lua_host_memory(const LuaHost *h) { return h->mem_used; }

int lua_host_pcall(lua_State *L, int nargs, int nresults) {
  int base = lua_gettop(L) - nargs; /* the function's index */
  lua_pushcfunction(L, traceback);
  lua_insert(L, base); /* [tb, fn, args...] */
  int rc = lua_pcall(L, nargs, nresults, base);
  lua_remove(L, base);
  return rc;
}

/* The event names restockd itself emits: a handler for any other name needs
 * a restock.emit somewhere. */
static const char *const own_events[] = {
    "restock-notification.restocked", "restock-notification.subscribed",
    "restock-notification.confirmation_requested", "product-variant.updated",
    NULL};

/* Appends the text of file `path` to `b`, if it can be read. */
static void append_file(Buf *b, const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return;
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf_append(b, chunk, n);
  fclose(f);
  buf_append(b, "\n", 1);
}

/* How often `name` appears quoted ("name" or 'name') in `text`. */
static size_t quoted_count(const char *text, size_t len, const char *name) {
  size_t n = 0, nl = strlen(name);
  for (const char *p = text; p && (size_t)(p - text) + nl + 2 <= len;) {
    p = memchr(p, name[0], len - (size_t)(p - text));
    if (!p) break;
    if (p > text && (p[-1] == '"' || p[-1] == '\'') &&
        (size_t)(p - text) + nl < len && memcmp(p, name, nl) == 0 &&
        p[nl] == p[-1])
      n++;
    p++;
  }
  return n;
}

/* Warns about each handler whose event restockd never emits and that no
 * loaded source names anywhere but in its subscribe call: most likely a
 * typo ("restock-notification.restock"), whose handler would never run. The
 * sources are plugin.lua and every module it required from a file; an
 * event a module names at all is the module's own (sendgrid.lua names its
 * part event once, in a constant it both subscribes and emits with). */
static void check_event_names(LuaHost *h, const char *path, StrList *warnings) {
  lua_State *L = h->L;
  Buf src = {0}, modules = {0};
  append_file(&src, path);
  lua_getglobal(L, "package");       /* [package] */
  lua_getfield(L, -1, "loaded");     /* [package, loaded] */
  lua_getfield(L, -2, "searchpath"); /* [package, loaded, searchpath] */
  lua_getfield(L, -3, "path");       /* [.., searchpath, path] */
  lua_pushnil(L);
  while (lua_next(L, -4)) { /* [.., searchpath, path, key, value] */
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      lua_pushvalue(L, -3); /* searchpath */
      lua_pushvalue(L, -2); /* key */
      lua_pushvalue(L, -4); /* path */
      if (lua_host_pcall(L, 2, 1) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
        append_file(&modules, lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 4);
  const Config *c = h->config;
  for (size_t i = 0; i < c->nhandlers; i++) {
    const char *event = c->handlers[i].event;
    bool known = false, seen = false;
    for (int k = 0; own_events[k]; k++)
      if (strcmp(own_events[k], event) == 0) known = true;
    for (size_t j = 0; j < i; j++)
      if (strcmp(c->handlers[j].event, event) == 0) seen = true;
    if (known || seen) continue;
    size_t subscribes = 0;
    for (size_t j = 0; j < c->nhandlers; j++)
      if (strcmp(c->handlers[j].event, event) == 0) subscribes++;
    if (quoted_count(src.data ? src.data : "", src.len, event) > subscribes ||
        quoted_count(modules.data ? modules.data : "", modules.len, event) > 0)
      continue;
    char *w = xasprintf(
        "restock.subscribe: restockd never emits \"%s\" and no restock.emit "
        "in the script names it, so handler '%s' will never run (restockd's "
        "events: restock-notification.restocked, "
        "restock-notification.subscribed, "
        "restock-notification.confirmation_requested, "
        "product-variant.updated)",
        event, c->handlers[i].name);
    strlist_push(warnings, w);
    free(w);
  }
  buf_free(&src);
  buf_free(&modules);
}

int lua_host_load(const char *path, LuaEnv *env, LuaHost **out, char **err,
                  StrList *warnings) {
  LuaHost *h = xcalloc(1, sizeof *h);
  h->config = config_new();
  h->env = env;
  lua_State *L = lua_newstate(host_alloc, h);
  if (L) {
    lua_atpanic(L, host_panic);
    lua_setwarnf(L, host_warn, L);
  }
  if (!L) {
    config_unref(h->config);
    free(h);
    *err = xstrdup("cannot create a Lua state");
    return RESTOCK_EINVAL;
  }
  h->L = L;
  /* Every thread copies the main thread's extra space: the host pointer. */
  *(LuaHost **)lua_getextraspace(L) = h;
  luaL_openlibs(L);
  /* Handlers make much short-lived garbage (event data, request bodies):
   * the generational collector frees it young. */
  lua_gc(L, LUA_GCGEN, 0, 0);
  set_package_path(L, path);
  lua_newtable(L);
  h->handlers_ref = lua_host_ref(L);
  h->hook_ref = LUA_NOREF;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE); /* [preload] */
  lua_pushcfunction(L, lua_api_open);
  lua_setfield(L, -2, "restock");
  lua_pop(L, 1);

  load_deadline_ns = uv_hrtime() + (uint64_t)LOAD_TIMEOUT_MS * 1000000;
  load_killed = false;
  lua_sethook(L, hook, LUA_MASKCOUNT, HOOK_COUNT);
  watchdog_enter();
  int rc = luaL_loadfilex(L, path, "t");
  if (rc == LUA_OK) rc = lua_host_pcall(L, 0, 0);
  watchdog_leave();
  lua_sethook(L, NULL, 0, 0);
  load_deadline_ns = 0;
  if (rc != LUA_OK) {
    *err = load_killed
               ? xasprintf("the script ran for more than %d ms at load time",
                           LOAD_TIMEOUT_MS)
               : xstrdup(lua_tostring(L, -1));
    h->released = true;
    lua_host_release(h);
    return RESTOCK_EINVAL;
  }
  h->loaded = true;
  char bad[160];
  if (email_domains_compile(h->config->options.blocked_email_domains,
                            &h->config->blocked_domains, bad, sizeof bad)) {
    *err = xasprintf("option 'blocked_email_domains': %s", bad);
    h->released = true;
    lua_host_release(h);
    return RESTOCK_EINVAL;
  }
  /* A handler without max_attempts of its own takes the option's, set
   * anywhere in the script. */
  for (size_t i = 0; i < h->config->nhandlers; i++)
    if (h->config->handlers[i].max_attempts <= 0)
      h->config->handlers[i].max_attempts = h->config->options.max_attempts;
  StrList mine = {0};
  check_event_names(h, path, warnings ? warnings : &mine);
  strlist_clear(&mine);
  *out = h;
  return 0;
}

bool lua_host_loaded(const LuaHost *h) { return h->loaded; }

static void host_free(LuaHost *h) {
  lua_connect_free(h);
  lua_host_unref(h->L, h->handlers_ref);
  if (h->hook_ref != LUA_NOREF) lua_host_unref(h->L, h->hook_ref);
  watchdog_enter(); /* finalizers run in lua_close */
  lua_close(h->L);
  watchdog_leave();
  config_unref(h->config);
  free(h);
}

void lua_host_release(LuaHost *h) {
  if (!h) return;
  h->released = true;
  lua_connect_stop(h);
  if (h->running == 0) host_free(h);
}

Config *lua_host_config(LuaHost *h) { return config_ref(h->config); }
Config *lua_host_config_mut(LuaHost *h) { return h->config; }
LuaEnv *lua_host_env(LuaHost *h) { return h->env; }
LuaHost *lua_host_of(lua_State *L) { return *(LuaHost **)lua_getextraspace(L); }
size_t lua_host_running(const LuaHost *h) { return h->running; }

void lua_host_push_handlers(LuaHost *h) {
  lua_rawgeti(h->L, LUA_REGISTRYINDEX, h->handlers_ref);
}

/* ---- tasks ------------------------------------------------------------ */

static void on_task_closed(uv_handle_t *handle) {
  LuaTask *t = handle->data;
  if (--t->open_handles > 0) return;
  LuaHost *h = t->host;
  free(t->event);
  free(t->handler);
  free(t->subscriber);
  free(t->what);
  free(t);
  h->running--;
  if (h->released && h->running == 0) host_free(h);
}

/* Ends a task once: cancels its wait, reports, and frees it. A task that
 * did not return has its to-be-closed variables closed (lua_resetthread)
 * before it goes. */
static void task_finish(LuaTask *t, bool ok, bool retry, const char *err) {
  if (t->finished) return;
  t->finished = true;
  if (t->waiting && t->cancel) t->cancel(t->cancel_ctx);
  t->waiting = false;
  uv_timer_stop(&t->deadline);
  uv_idle_stop(&t->slice);
  LuaHost *h = t->host;
  if (t->prev)
    t->prev->next = t->next;
  else
    all_tasks = t->next;
  if (t->next) t->next->prev = t->prev;
  if (!ok && lua_status(t->co) != LUA_OK) {
    LuaTask *outer = current;
    current = t;
    watchdog_enter(); /* __close handlers run here */
    lua_resetthread(t->co);
    watchdog_leave();
    current = outer;
  }
  lua_host_unref(h->L, t->co_ref);
  if (t->spawn_done)
    t->spawn_done(t->arg, NULL, 0, err, t->killed);
  else if (t->done)
    t->done(t->arg, ok, retry, err);
  uv_close((uv_handle_t *)&t->deadline, on_task_closed);
  uv_close((uv_handle_t *)&t->slice, on_task_closed);
}

/* A short description of the error object on top of `co`, without running
 * any of its metamethods. */
static const char *error_text(lua_State *co) {
  if (lua_type(co, -1) == LUA_TSTRING || lua_type(co, -1) == LUA_TNUMBER)
    return lua_tostring(co, -1);
  return "(error object is not a string)";
}

static void on_slice(uv_idle_t *idle);
static void task_step_outcome(LuaTask *t, int st, int nres);

/* Resumes the task's coroutine with `nargs` values and handles the outcome. */
/* Tells the watchdog which delivery the loop runs Lua for. */
static void publish(const LuaTask *t) {
  if (t)
    watchdog_running(t->what, t->event_id, t->handler, t->subscriber,
                     t->attempts);
  else
    watchdog_running(NULL, 0, NULL, NULL, 0);
}

static void task_step(LuaTask *t, int nargs) {
  LuaTask *outer = current;
  current = t;
  t->slice_start_ns = uv_hrtime();
  watchdog_enter();
  publish(t);
  int nres = 0;
  int st = lua_resume(t->co, NULL, nargs, &nres);
  current = outer;
  publish(outer);
  task_step_outcome(t, st, nres);
  watchdog_leave();
}

/* What a resume's status means for the task. */
static void task_step_outcome(LuaTask *t, int st, int nres) {
  if (t->finished) return;
  if (st == LUA_YIELD && t->preempted) {
    t->preempted = false;
    /* An idle handle, not a zero timer: it runs after the loop has polled
     * for I/O, so requests waiting on the socket are served first. */
    uv_idle_start(&t->slice, on_slice);
    return;
  }
  if (st == LUA_YIELD) {
    lua_pop(t->co, nres);
    if (!t->waiting)
      task_finish(t, false, true,
                  "the handler yielded outside a restock call that waits "
                  "(restock.sleep, restock.http.request, ...)");
    return;
  }
  if (st == LUA_OK && t->spawn_done) {
    /* A route or a periodic task: its caller reads what it returned. */
    LuaSpawnDone cb = t->spawn_done;
    t->spawn_done = NULL;
    cb(t->arg, t->co, nres, NULL, false);
    lua_settop(t->co, 0);
    task_finish(t, true, true, NULL);
    return;
  }
  if (st == LUA_OK) {
    /* `return nil, err` and `return false, err` fail the delivery
     * (`..., {retry = false}` for good); anything else succeeds. */
    bool refused = nres >= 1 && lua_isboolean(t->co, -nres) &&
                   !lua_toboolean(t->co, -nres);
    if ((nres >= 2 || (t->hook && refused)) &&
        (lua_isnil(t->co, -nres) || refused)) {
      const char *why = lua_tostring(t->co, -nres + 1);
      char *msg = xasprintf("%s", why       ? why
                                  : t->hook ? "Not allowed"
                                            : "the handler returned nil");
      /* A hook's `false, message` is its answer, not its failure. */
      bool retry = !t->hook;
      if (!t->hook && nres >= 3 && lua_istable(t->co, -nres + 2)) {
        lua_getfield(t->co, -nres + 2, "retry");
        retry = !(lua_isboolean(t->co, -1) && !lua_toboolean(t->co, -1));
        lua_pop(t->co, 1);
      }
      lua_pop(t->co, nres);
      task_finish(t, false, retry, msg);
      free(msg);
    } else {
      lua_pop(t->co, nres);
      task_finish(t, true, true, NULL);
    }
    return;
  }
  char *msg;
  if (t->killed) {
    msg =
        xasprintf("timed out after %llu ms", (unsigned long long)t->timeout_ms);
  } else if (st == LUA_ERRMEM) {
    msg = xasprintf(
        "not enough memory: the Lua state reached lua_memory_limit (%lld "
        "MiB)",
        t->host->config->options.lua_memory_limit);
  } else {
    lua_State *L = t->host->L;
    luaL_traceback(L, t->co, error_text(t->co), 0);
    msg = xstrdup(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  LuaHost *h = t->host;
  task_finish(t, false, true, msg);
  free(msg);
  /* What the failed handler left is garbage: give it back now, not when
   * the collector would have got to it. */
  if (st == LUA_ERRMEM) lua_gc(h->L, LUA_GCCOLLECT);
}

static void on_slice(uv_idle_t *idle) {
  uv_idle_stop(idle);
  task_step(idle->data, 0);
}

static void on_deadline(uv_timer_t *timer) {
  LuaTask *t = timer->data;
  /* The hook catches a handler that is running; this catches one that is
   * waiting. */
  t->killed = true;
  char msg[64];
  snprintf(msg, sizeof msg, "timed out after %llu ms",
           (unsigned long long)t->timeout_ms);
  task_finish(t, false, true, msg);
}

/* Pushes the handler's argument: the event's data, or for a per-subscriber
 * delivery the data less emails and subscribers, plus email and subscriber.
 * A delivery row written since migration 012 carries that share already;
 * an older one is cut from the event here. Returns 0, or -1 (nothing
 * pushed) for data nested too deeply. */
static int push_argument(lua_State *co, json_t *j, const char *subscriber) {
  if (!subscriber || !*subscriber || !json_is_object(j) ||
      (json_object_get(j, "subscriber") && !json_object_get(j, "emails")))
    return lua_json_push(co, j);
  json_t *share = outbox_subscriber_data(j, subscriber);
  int rc = lua_json_push(co, share);
  json_decref(share);
  return rc;
}

/* Starts a task running the function on top of the main stack (popped)
 * with `j` as its argument, or, when `j` is NULL, with the value below the
 * function (popped too). */
static void task_start(LuaHost *h, const LuaRun *r, json_t *j, bool is_hook,
                       LuaTaskDone done, void *arg) {
  if (is_hook && !j) j = json_null(); /* never below the function */
  lua_State *L = h->L;
  LuaTask *t = xcalloc(1, sizeof *t);
  t->host = h;
  t->hook = is_hook;
  t->event = xstrdup(r->event);
  t->handler = xstrdup(r->handler);
  t->subscriber = xstrdup(r->subscriber ? r->subscriber : "");
  t->event_id = r->event_id;
  t->attempts = r->attempts;
  if (is_hook)
    t->what = xstrdup("restock.on_subscribe hook");
  else
    t->what = xasprintf("delivery of %s #%lld to %s%s%s%s", r->event,
                        r->event_id, r->handler, *t->subscriber ? " (" : "",
                        t->subscriber, *t->subscriber ? ")" : "");
  t->timeout_ms = r->timeout_ms;
  t->deadline_ns = uv_hrtime() + r->timeout_ms * 1000000;
  t->done = done;
  t->arg = arg;
  t->co = lua_newthread(L); /* [fn, co] */
  lua_sethook(t->co, hook, LUA_MASKCOUNT, HOOK_COUNT);
  lua_insert(L, -2);           /* [co, fn] */
  lua_xmove(L, t->co, 1);      /* [co] */
  t->co_ref = lua_host_ref(L); /* [] or [argument] */
  if (!j)
    lua_xmove(L, t->co, 1);
  else if (push_argument(t->co, j, t->subscriber))
    lua_pushnil(t->co);
  uv_loop_t *loop = h->env->loop;
  uv_timer_init(loop, &t->deadline);
  uv_idle_init(loop, &t->slice);
  t->deadline.data = t->slice.data = t;
  t->open_handles = 2;
  uv_timer_start(&t->deadline, on_deadline, r->timeout_ms, 0);
  t->next = all_tasks;
  if (all_tasks) all_tasks->prev = t;
  all_tasks = t;
  h->running++;
  task_step(t, 1);
}

int lua_host_run(LuaHost *h, const LuaRun *r, LuaTaskDone done, void *arg) {
  lua_State *L = h->L;
  if (!h->env || !h->env->loop) return RESTOCK_ENOTFOUND;
  /* A whole event's data (a restocked event of 1,000 subscribers is 260 KB)
   * goes from its text to Lua at once, below the handler; a subscriber's
   * share is small, and an old delivery row's must be cut from the event
   * (push_argument), through jansson. */
  json_t *j = NULL;
  bool whole = !r->subscriber || !*r->subscriber;
  if (whole) {
    int rc = lua_json_push_text(L, r->data, strlen(r->data));
    if (rc == RESTOCK_EINVAL) return RESTOCK_EINVAL;
    if (rc) lua_pushnil(L); /* nested too deeply, as push_argument does */
  } else {
    json_error_t jerr;
    j = json_loads(r->data, JSON_DECODE_ANY, &jerr);
    if (!j) return RESTOCK_EINVAL;
  }
  watchdog_enter();
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->handlers_ref); /* [handlers] */
  lua_getfield(L, -1, r->event);                      /* [handlers, list] */
  size_t n = lua_istable(L, -1) ? lua_rawlen(L, -1) : 0;
  bool found = false;
  for (size_t i = 1; i <= n && !found; i++) {
    lua_rawgeti(L, -1, (lua_Integer)i); /* [handlers, list, entry] */
    lua_getfield(L, -1, "name");
    if (strcmp(lua_tostring(L, -1), r->handler) == 0) {
      lua_getfield(L, -2, "fn"); /* [handlers, list, entry, name, fn] */
      lua_replace(L, -5);        /* [fn, list, entry, name] */
      found = true;
      lua_pop(L, 3); /* [fn] */
    } else {
      lua_pop(L, 2);
    }
  }
  if (!found) {
    lua_pop(L, whole ? 3 : 2);
    json_decref(j);
    watchdog_leave();
    return RESTOCK_ENOTFOUND;
  }
  task_start(h, r, j, false, done, arg);
  json_decref(j);
  watchdog_leave();
  return 0;
}

int lua_host_set_subscribe_hook(LuaHost *h, lua_State *L) {
  if (h->hook_ref != LUA_NOREF) return RESTOCK_EINVAL;
  lua_pushvalue(L, -1);
  lua_xmove(L, h->L, 1);
  h->hook_ref = lua_host_ref(h->L);
  lua_pop(L, 1);
  return 0;
}

bool lua_host_has_subscribe_hook(const LuaHost *h) {
  return h->hook_ref != LUA_NOREF;
}

int lua_host_run_subscribe_hook(LuaHost *h, json_t *arg, uint64_t timeout_ms,
                                LuaTaskDone done, void *darg) {
  if (h->hook_ref == LUA_NOREF || !h->env || !h->env->loop)
    return RESTOCK_ENOTFOUND;
  LuaRun r = {.event = "restock.on_subscribe",
              .handler = "on_subscribe",
              .timeout_ms = timeout_ms};
  watchdog_enter();
  lua_rawgeti(h->L, LUA_REGISTRYINDEX, h->hook_ref);
  task_start(h, &r, arg, true, done, darg);
  watchdog_leave();
  return 0;
}

/* Makes a task of the function and arguments on top of `h`'s main stack
 * and links it in; it is not started yet. */
static LuaTask *task_new(LuaHost *h, int nargs, const char *what,
                         uint64_t timeout_ms) {
  lua_State *L = h->L;
  LuaTask *t = xcalloc(1, sizeof *t);
  t->host = h;
  t->event = xstrdup("");
  t->handler = xstrdup(what);
  t->subscriber = xstrdup("");
  t->what = xstrdup(what);
  t->timeout_ms = timeout_ms;
  t->deadline_ns = uv_hrtime() + timeout_ms * 1000000;
  t->co = lua_newthread(L); /* [fn, args..., co] */
  lua_sethook(t->co, hook, LUA_MASKCOUNT, HOOK_COUNT);
  lua_insert(L, -(nargs + 2)); /* [co, fn, args...] */
  lua_xmove(L, t->co, nargs + 1);
  t->co_ref = lua_host_ref(L); /* [] */
  uv_loop_t *loop = h->env->loop;
  uv_timer_init(loop, &t->deadline);
  uv_idle_init(loop, &t->slice);
  t->deadline.data = t->slice.data = t;
  t->open_handles = 2;
  uv_timer_start(&t->deadline, on_deadline, timeout_ms, 0);
  t->next = all_tasks;
  if (all_tasks) all_tasks->prev = t;
  all_tasks = t;
  h->running++;
  return t;
}

int lua_host_spawn(LuaHost *h, int nargs, const char *what, uint64_t timeout_ms,
                   LuaSpawnDone done, void *arg) {
  if (!h->env || !h->env->loop) {
    lua_pop(h->L, nargs + 1);
    return RESTOCK_EUNAVAIL;
  }
  watchdog_enter();
  LuaTask *t = task_new(h, nargs, what, timeout_ms);
  t->spawn_done = done;
  t->arg = arg;
  task_step(t, nargs);
  watchdog_leave();
  return 0;
}

lua_State *lua_host_state(LuaHost *h) { return h->L; }

void lua_host_abort_all(const char *why) {
  while (all_tasks) task_finish(all_tasks, false, true, why);
}

LuaTask *lua_task_current(lua_State *L) {
  return current && current->co == L ? current : NULL;
}

void lua_task_wait(LuaTask *t, void (*cancel)(void *ctx), void *ctx) {
  t->waiting = true;
  t->cancel = cancel;
  t->cancel_ctx = ctx;
}

void lua_task_resume(LuaTask *t, int nresults) {
  if (t->finished) return;
  t->waiting = false;
  t->cancel = NULL;
  t->cancel_ctx = NULL;
  task_step(t, nresults);
}

lua_State *lua_task_thread(LuaTask *t) { return t->co; }
uv_loop_t *lua_task_loop(LuaTask *t) { return t->host->env->loop; }
