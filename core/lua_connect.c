/* The connector calls of the `restock` module (lua_connect.h): routes under
 * /hooks/, periodic tasks, restock.kv, and the catalogue and order
 * use-cases as a shop's connector calls them. */
#include "lua_connect.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "inventory.h"
#include "isotime.h"
#include "json_text.h"
#include "log.h"
#include "lua_host.h"
#include "lua_json.h"
#include "orders.h"
#include "stock.h"
#include "utf8.h"
#include "watchdog.h"
#include "xmalloc.h"

/* Routes a script may register, at most. */
#define MAX_ROUTES 64
/* Periodic tasks a script may register, at most. */
#define MAX_TASKS 64
/* Longest path of a route. */
#define MAX_ROUTE_PATH 200
/* Shortest and longest interval of a periodic task, in ms. */
#define MIN_INTERVAL_MS 10
#define MAX_INTERVAL_MS (30LL * 86400000)
/* Longest time to live of a restock.kv value: ten years, in ms. */
#define MAX_TTL_MS (3650LL * 86400000)
/* What a lease of a named task covers beyond the run and the interval. */
#define LEASE_MARGIN_MS 5000
/* The largest answer a route may give. */
#define MAX_ROUTE_ANSWER (8 * 1024 * 1024)

typedef struct Periodic Periodic;

typedef struct {
  char method[17];
  char *path;
  int fn_ref;
  /* Names the route in metrics and access logs: the request's match points
   * at it until answered, which is before the state can go. */
  Route route;
} HookRoute;

/* What one script registered: its routes and periodic tasks. Kept in the
 * state's registry (as a light userdata under REGISTRY_KEY) from the
 * first registration until lua_connect_free. */
typedef struct {
  LuaHost *host;
  HookRoute routes[MAX_ROUTES];
  size_t nroutes;
  Periodic *tasks; /* in registration order */
  size_t ntasks;
  bool started;
  bool stopped;
} ConnectState;

#define REGISTRY_KEY "restock.connect"

/* A periodic task. Its memory outlives the script's state when it must: it
 * is freed once its timer is closed and no lease claim or run of it is in
 * flight (`refs` counts them). */
struct Periodic {
  Periodic *next;    /* the script's list */
  Periodic *running; /* the list of tasks running now, over every script */
  LuaHost *host;     /* NULL once the script is gone */
  char *name;
  bool leased; /* an explicit name: runs under a lease */
  bool held;   /* this node holds its lease */
  bool stopped;
  bool is_running;
  uint64_t interval_ms;
  int fn_ref;
  uv_timer_t timer;
  bool timer_started;
  bool timer_closing;
  int refs;
};

/* Tasks with a run in progress, over every script: a reloaded script's
 * task never overlaps the same task of the script it replaced. */
static Periodic *running_tasks;
static size_t runs_in_progress;
static void (*idle_cb)(void *arg);
static void *idle_arg;

static ConnectState *state_of(lua_State *L, bool create) {
  lua_getfield(L, LUA_REGISTRYINDEX, REGISTRY_KEY);
  ConnectState *cs = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!cs && create) {
    cs = xcalloc(1, sizeof *cs);
    cs->host = lua_host_of(L);
    lua_pushlightuserdata(L, cs);
    lua_setfield(L, LUA_REGISTRYINDEX, REGISTRY_KEY);
  }
  return cs;
}

/* ---- waiting for the database (as lua_api.c's calls do) -------------------
 */

/* A coroutine waiting for a unit of work. If the task is aborted first,
 * the wait is disowned (task NULL) and the completion only frees it. */
typedef struct {
  LuaTask *task;
} DbWait;

static void db_cancel(void *ctx) { ((DbWait *)ctx)->task = NULL; }

/* The Domain of a task's call, or an error raised: at load time, in
 * `restockd check`, and in a coroutine the script made itself, no database
 * call can wait. */
static Domain *domain_or_raise(lua_State *L, const char *what) {
  LuaHost *h = lua_host_of(L);
  Domain *d = lua_host_env(h) ? lua_host_env(h)->d : NULL;
  if (!lua_host_loaded(h) || !d || !lua_task_current(L))
    luaL_error(L,
               "%s cannot be called while plugin.lua loads; call it from a "
               "handler, a route or a periodic task",
               what);
  return d;
}

/* Pushes nil and the message of a failed call. */
static void push_failure(lua_State *co, int status, const char *message) {
  lua_pushnil(co);
  if (message && *message)
    lua_pushstring(co, message);
  else if (status == RESTOCK_ECOMMIT || status == RESTOCK_EUNAVAIL)
    lua_pushstring(co, "the database is unavailable; the log says why");
  else
    lua_pushstring(co, "the database failed; the log says why");
}

/* Converts the table argument `idx` into a JSON object, or raises. */
static json_t *table_arg(lua_State *L, int idx) {
  luaL_checktype(L, idx, LUA_TTABLE);
  char err[128] = "";
  json_t *j = lua_json_to(L, idx, err, sizeof err);
  if (!j) luaL_argerror(L, idx, err);
  if (!json_is_object(j)) {
    json_decref(j);
    luaL_argerror(L, idx, "must be a table of fields, not a list");
  }
  return j;
}

static void set_string(lua_State *L, const char *key, const char *value) {
  if (!value) return;
  lua_pushstring(L, value);
  lua_setfield(L, -2, key);
}

/* Pushes a variant as restock.variants.retrieve shows it. */
static void push_variant(lua_State *L, const Variant *v) {
  lua_createtable(L, 0, 11);
  set_string(L, "id", v->id);
  set_string(L, "product_id", v->product_id);
  set_string(L, "sku", v->sku);
  set_string(L, "title", v->title);
  lua_pushinteger(L, v->inventory_quantity);
  lua_setfield(L, -2, "inventory_quantity");
  lua_pushinteger(L, stock_quantity(v));
  lua_setfield(L, -2, "quantity");
  lua_pushboolean(L, v->allow_backorder);
  lua_setfield(L, -2, "allow_backorder");
  lua_pushboolean(L, v->manage_inventory);
  lua_setfield(L, -2, "manage_inventory");
  set_string(L, "created_at", v->created_at);
  set_string(L, "updated_at", v->updated_at);
}

/* ---- restock.variants.upsert -------------------------------------------- */

typedef struct {
  UpsertCall call;
  DbWait wait;
  bool list; /* called with {variants = {...}}: answers a list */
} LuaUpsert;

static void upsert_done_lua(UpsertCall *c, int status) {
  LuaUpsert *u = (LuaUpsert *)c;
  LuaTask *t = u->wait.task;
  if (t) {
    lua_State *co = lua_task_thread(t);
    if (status) {
      push_failure(co, status, c->message);
      lua_task_resume(t, 2);
    } else if (u->list) {
      lua_createtable(co, (int)c->nout, 0);
      for (size_t i = 0; i < c->nout; i++) {
        push_variant(co, &c->out[i]);
        lua_rawseti(co, -2, (lua_Integer)i + 1);
      }
      lua_task_resume(t, 1);
    } else {
      push_variant(co, &c->out[0]);
      lua_task_resume(t, 1);
    }
  }
  upsert_call_clear(c);
  free(u);
}

static void upsert_done(UpsertCall *c, int status) {
  watchdog_enter();
  upsert_done_lua(c, status);
  watchdog_leave();
}

/* restock.variants.upsert(t): creates or updates a variant (the fields of
 * POST /admin/variants), or with {variants = {...}} several in one
 * transaction. The variant (or the list), or nil and the message. */
static int l_variants_upsert(lua_State *L) {
  Domain *d = domain_or_raise(L, "restock.variants.upsert");
  json_t *obj = table_arg(L, 1);
  json_t *many = json_object_get(obj, "variants");
  LuaUpsert *u = xcalloc(1, sizeof *u);
  if (many) {
    if (!json_is_array(many) || json_object_size(obj) != 1) {
      json_decref(obj);
      free(u);
      return luaL_argerror(L, 1,
                           "{variants = {...}} must be a list of variants "
                           "and nothing else");
    }
    u->call.variants = json_incref(many);
    u->call.wrapped = true;
    u->list = true;
    json_decref(obj);
  } else {
    u->call.variants = json_array();
    json_array_append_new(u->call.variants, obj);
  }
  u->wait.task = lua_task_current(L);
  u->call.done = upsert_done;
  inventory_upsert(d, &u->call);
  lua_task_wait(u->wait.task, db_cancel, &u->wait);
  return lua_yield(L, 0);
}

/* ---- restock.inventory.set / set_level --------------------------------- */

typedef struct {
  InventoryCall call;
  DbWait wait;
} LuaInventory;

static void inventory_done_lua(InventoryCall *c, int status) {
  LuaInventory *u = (LuaInventory *)c;
  LuaTask *t = u->wait.task;
  if (t) {
    lua_State *co = lua_task_thread(t);
    if (status) {
      push_failure(co, status, c->message);
      lua_task_resume(t, 2);
    } else {
      lua_pushboolean(co, 1);
      lua_task_resume(t, 1);
    }
  }
  inventory_call_clear(c);
  free(u);
}

static void inventory_done(InventoryCall *c, int status) {
  watchdog_enter();
  inventory_done_lua(c, status);
  watchdog_leave();
}

static int start_inventory(lua_State *L, Domain *d, json_t *update,
                           bool create_locations) {
  LuaInventory *u = xcalloc(1, sizeof *u);
  u->call.updates = json_array();
  json_array_append_new(u->call.updates, update);
  u->call.create_locations = create_locations;
  u->call.done = inventory_done;
  u->wait.task = lua_task_current(L);
  inventory_update(d, &u->call);
  lua_task_wait(u->wait.task, db_cancel, &u->wait);
  return lua_yield(L, 0);
}

/* restock.inventory.set(variant_id, quantity): sets inventory_quantity as
 * the admin route does. true, or nil and the message. */
static int l_inventory_set(lua_State *L) {
  Domain *d = domain_or_raise(L, "restock.inventory.set");
  const char *id = luaL_checkstring(L, 1);
  lua_Integer q = luaL_checkinteger(L, 2);
  return start_inventory(L, d,
                         json_pack("{s:s, s:I}", "variant_id", id,
                                   "inventory_quantity", (json_int_t)q),
                         false);
}

/* restock.inventory.set_level{variant_id=, location_id=, stocked_quantity=,
 * reserved_quantity=}: upserts a level, creating an unknown location. true,
 * or nil and the message. */
static int l_inventory_set_level(lua_State *L) {
  Domain *d = domain_or_raise(L, "restock.inventory.set_level");
  json_t *obj = table_arg(L, 1);
  if (!json_is_string(json_object_get(obj, "location_id"))) {
    json_decref(obj);
    lua_pushnil(L);
    lua_pushliteral(L, "location_id is required: a stock location's id");
    return 2;
  }
  return start_inventory(L, d, obj, true);
}

/* ---- stock locations, sales channels, publishable keys ------------------- */

typedef struct {
  NamedCall call;
  DbWait wait;
} LuaNamed;

static void named_done_lua(NamedCall *c, int status) {
  LuaNamed *u = (LuaNamed *)c;
  LuaTask *t = u->wait.task;
  if (t) {
    lua_State *co = lua_task_thread(t);
    if (status) {
      push_failure(co, status, c->message);
      lua_task_resume(t, 2);
    } else {
      lua_pushboolean(co, 1);
      lua_task_resume(t, 1);
    }
  }
  named_call_clear(c);
  free(u);
}

static void named_done(NamedCall *c, int status) {
  watchdog_enter();
  named_done_lua(c, status);
  watchdog_leave();
}

/* Reads field `name` of table 1 as a list of ids (NULL when absent), or
 * raises. */
static StrList *ids_field(lua_State *L, const char *name) {
  if (lua_getfield(L, 1, name) == LUA_TNIL) {
    lua_pop(L, 1);
    return NULL;
  }
  if (!lua_istable(L, -1) || lua_rawlen(L, -1) > 1000)
    luaL_error(L, "%s must be a list of at most 1000 ids", name);
  StrList *l = xcalloc(1, sizeof *l);
  size_t n = lua_rawlen(L, -1);
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, (lua_Integer)i);
    const char *id = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    if (!domain_valid_id(id) || strlen(id) != lua_rawlen(L, -1)) {
      strlist_clear(l);
      free(l);
      luaL_error(L, "%s[%d] must be an id", name, (int)i);
    }
    if (!strlist_has(l, id)) strlist_push(l, id);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return l;
}

static int named_upsert(lua_State *L, NamedPutKind kind, const char *what,
                        const char *ids_name) {
  Domain *d = domain_or_raise(L, what);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "id");
  const char *id = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
  if (!domain_valid_id(id) || strlen(id) != lua_rawlen(L, -1))
    return luaL_error(L, "%s: id must be a string of 1 to %d characters", what,
                      DOMAIN_MAX_ID);
  lua_getfield(L, 1, "name");
  size_t nlen = 0;
  const char *name =
      lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &nlen) : NULL;
  if ((!name && !lua_isnil(L, -1)) || nlen > 1024 ||
      (name && strlen(name) != nlen) || (name && kind == NAMED_PUT_KEY))
    return luaL_error(L,
                      kind == NAMED_PUT_KEY
                          ? "%s: a publishable key has no name"
                          : "%s: name must be a string of at most 1024 bytes",
                      what);
  StrList *ids = ids_name ? ids_field(L, ids_name) : NULL;
  LuaNamed *u = xcalloc(1, sizeof *u);
  u->call.kind = kind;
  u->call.id = xstrdup(id);
  u->call.name = name ? xstrdup(name) : NULL;
  u->call.ids = ids;
  u->call.done = named_done;
  u->wait.task = lua_task_current(L);
  inventory_named(d, &u->call);
  lua_task_wait(u->wait.task, db_cancel, &u->wait);
  return lua_yield(L, 0);
}

/* restock.stock_locations.upsert{id=, name=} */
static int l_locations_upsert(lua_State *L) {
  return named_upsert(L, NAMED_PUT_LOCATION, "restock.stock_locations.upsert",
                      NULL);
}

/* restock.sales_channels.upsert{id=, name=, location_ids=} */
static int l_channels_upsert(lua_State *L) {
  return named_upsert(L, NAMED_PUT_CHANNEL, "restock.sales_channels.upsert",
                      "location_ids");
}

/* restock.publishable_api_keys.upsert{id=, sales_channel_ids=} */
static int l_keys_upsert(lua_State *L) {
  return named_upsert(L, NAMED_PUT_KEY, "restock.publishable_api_keys.upsert",
                      "sales_channel_ids");
}

/* ---- restock.orders.record ------------------------------------------------
 */

typedef struct {
  OrderCall call;
  DbWait wait;
} LuaOrder;

static void order_done_lua(OrderCall *c, int status) {
  LuaOrder *u = (LuaOrder *)c;
  LuaTask *t = u->wait.task;
  if (t) {
    lua_State *co = lua_task_thread(t);
    if (status) {
      push_failure(co, status, c->message);
      lua_task_resume(t, 2);
    } else {
      lua_pushboolean(co, 1);
      lua_task_resume(t, 1);
    }
  }
  order_call_clear(c);
  free(u);
}

static void order_done(OrderCall *c, int status) {
  watchdog_enter();
  order_done_lua(c, status);
  watchdog_leave();
}

/* restock.orders.record{order_id=, email=, currency=, created_at=,
 * items={{variant_id=, quantity=, amount=}}}: true once recorded (also when
 * it was recorded before), or nil and the message. */
static int l_orders_record(lua_State *L) {
  Domain *d = domain_or_raise(L, "restock.orders.record");
  LuaOrder *u = xcalloc(1, sizeof *u);
  u->call.order = table_arg(L, 1);
  u->call.done = order_done;
  u->wait.task = lua_task_current(L);
  orders_record(d, &u->call);
  lua_task_wait(u->wait.task, db_cancel, &u->wait);
  return lua_yield(L, 0);
}

/* ---- restock.kv
 * ----------------------------------------------------------------- */

typedef struct {
  Unit unit;
  DbWait wait;
  char *key;
  char *value; /* the value to set (NULL deletes), or the one read */
  long long ttl_ms;
  bool found;
} KvCall;

static int kv_get_fn(StoreTx *tx, void *arg) {
  KvCall *c = arg;
  int rc = store_kv_get(tx, c->key, isotime_now_ms(), &c->value);
  c->found = rc == 0;
  return rc == RESTOCK_ENOTFOUND ? 0 : rc;
}

static int kv_set_fn(StoreTx *tx, void *arg) {
  KvCall *c = arg;
  long long now = isotime_now_ms();
  return store_kv_put(tx, c->key, c->value, c->ttl_ms ? now + c->ttl_ms : 0,
                      now);
}

static void kv_done_lua(Unit *u, int status, bool get) {
  KvCall *c = (KvCall *)u;
  LuaTask *t = c->wait.task;
  if (t) {
    lua_State *co = lua_task_thread(t);
    if (status) {
      push_failure(co, status, NULL);
      lua_task_resume(t, 2);
    } else if (get && c->found) {
      lua_pushstring(co, c->value);
      lua_task_resume(t, 1);
    } else {
      if (get)
        lua_pushnil(co);
      else
        lua_pushboolean(co, 1);
      lua_task_resume(t, 1);
    }
  }
  free(c->key);
  free(c->value);
  free(c);
}

static void kv_get_done(Unit *u, int status) {
  watchdog_enter();
  kv_done_lua(u, status, true);
  watchdog_leave();
}

static void kv_set_done(Unit *u, int status) {
  watchdog_enter();
  kv_done_lua(u, status, false);
  watchdog_leave();
}

/* Checks that the string at `idx` is UTF-8 text without NUL bytes of at
 * most `max` bytes (what every backend stores as text), or raises. */
static const char *text_arg(lua_State *L, int idx, size_t min, size_t max,
                            const char *what) {
  size_t len = 0;
  const char *s = luaL_checklstring(L, idx, &len);
  if (len < min || len > max || strlen(s) != len ||
      !utf8_valid((const unsigned char *)s, len))
    luaL_argerror(L, idx,
                  lua_pushfstring(L,
                                  "%s must be UTF-8 text of %d to %d bytes "
                                  "without NUL bytes (base64_encode binary "
                                  "data first)",
                                  what, (int)min, (int)max));
  return s;
}

/* restock.kv.get(key): the value, nil when there is none, or nil and a
 * message when the database failed. */
static int l_kv_get(lua_State *L) {
  Domain *d = domain_or_raise(L, "restock.kv.get");
  const char *key = text_arg(L, 1, 1, LUA_KV_MAX_KEY, "a key");
  KvCall *c = xcalloc(1, sizeof *c);
  c->key = xstrdup(key);
  c->wait.task = lua_task_current(L);
  unit_read(d, &c->unit, kv_get_fn, kv_get_done);
  lua_task_wait(c->wait.task, db_cancel, &c->wait);
  return lua_yield(L, 0);
}

/* restock.kv.set(key, value [, {ttl = ms}]): stores the value (nil deletes
 * it); with a ttl it reads as absent once that many ms have passed. true,
 * or nil and a message. */
static int l_kv_set(lua_State *L) {
  Domain *d = domain_or_raise(L, "restock.kv.set");
  const char *key = text_arg(L, 1, 1, LUA_KV_MAX_KEY, "a key");
  const char *value = lua_isnoneornil(L, 2)
                          ? NULL
                          : text_arg(L, 2, 0, LUA_KV_MAX_VALUE, "a value");
  lua_Integer ttl = 0;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      if (lua_type(L, -2) != LUA_TSTRING || strcmp(lua_tostring(L, -2), "ttl"))
        return luaL_argerror(L, 3, "the only option is ttl");
      lua_pop(L, 1);
    }
    lua_getfield(L, 3, "ttl");
    int isint = 0;
    ttl = lua_tointegerx(L, -1, &isint);
    if (!isint || ttl < 1 || ttl > MAX_TTL_MS)
      return luaL_argerror(L, 3, "ttl must be an integer of ms, at least 1");
  }
  KvCall *c = xcalloc(1, sizeof *c);
  c->key = xstrdup(key);
  c->value = value ? xstrdup(value) : NULL;
  c->ttl_ms = ttl;
  c->wait.task = lua_task_current(L);
  unit_write(d, &c->unit, kv_set_fn, kv_set_done);
  lua_task_wait(c->wait.task, db_cancel, &c->wait);
  return lua_yield(L, 0);
}

/* ---- restock.route
 * ------------------------------------------------------------- */

/* True when `path` is a route path under /hooks/: unreserved characters
 * and slashes, no empty, "." or ".." segment, no trailing slash. */
static bool hook_path_ok(const char *path, size_t len) {
  if (len <= 7 || len > MAX_ROUTE_PATH || memcmp(path, "/hooks/", 7) != 0)
    return false;
  for (size_t i = 0; i < len; i++) {
    char c = path[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
              c == '~' || c == '/';
    if (!ok) return false;
    if (c == '/' && i > 0 && path[i - 1] == '/') return false;
  }
  if (path[len - 1] == '/') return false;
  for (const char *p = path; (p = strstr(p, "/.")); p++)
    if (p[2] == '/' || p[2] == '\0' || (p[2] == '.' && (p[3] == '/' || !p[3])))
      return false;
  return true;
}

/* restock.route(method, path, fn): serves `method path` with fn(req). */
static int l_route(lua_State *L) {
  LuaHost *h = lua_host_of(L);
  size_t mlen = 0, plen = 0;
  const char *method = luaL_checklstring(L, 1, &mlen);
  const char *path = luaL_checklstring(L, 2, &plen);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  if (lua_host_loaded(h))
    return luaL_error(L,
                      "restock.route can only be called while plugin.lua "
                      "loads");
  if (mlen == 0 || mlen > 16 ||
      strspn(method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != mlen)
    return luaL_argerror(L, 1, "must be an upper-case HTTP method (\"POST\")");
  if (!hook_path_ok(path, plen))
    return luaL_argerror(
        L, 2,
        "must be an exact path under /hooks/ (\"/hooks/shop\") of at most "
        "200 bytes: letters, digits, '-', '_', '.', '~' and '/'");
  ConnectState *cs = state_of(L, true);
  for (size_t i = 0; i < cs->nroutes; i++)
    if (strcmp(cs->routes[i].path, path) == 0 &&
        strcmp(cs->routes[i].method, method) == 0)
      return luaL_error(L, "restock.route: %s %s is already routed", method,
                        path);
  if (cs->nroutes == MAX_ROUTES)
    return luaL_error(L, "restock.route: at most %d routes", MAX_ROUTES);
  HookRoute *r = &cs->routes[cs->nroutes++];
  snprintf(r->method, sizeof r->method, "%s", method);
  r->path = xstrdup(path);
  r->route.method = r->method;
  r->route.pattern = r->path;
  r->route.fn = NULL;
  lua_pushvalue(L, 3);
  r->fn_ref = lua_host_ref(L);
  return 0;
}

/* A request being served by a route. */
typedef struct {
  HttpRequest *req; /* deferred */
  char what[280];
  uint64_t timeout_ms;
} RouteRun;

/* What the route's request table is built from, in a protected call. */
typedef struct {
  const HttpRequest *req;
  const char *client;
} RequestArg;

/* [RequestArg] -> [req]: the request as the route's argument. */
static int push_request(lua_State *L) {
  const RequestArg *a = lua_touserdata(L, 1);
  const HttpRequest *req = a->req;
  lua_createtable(L, 0, 6);
  lua_pushstring(L, req->method);
  lua_setfield(L, -2, "method");
  lua_pushlstring(L, req->path, req->path_len);
  lua_setfield(L, -2, "path");
  lua_createtable(L, 0, (int)req->params.count); /* [req, query] */
  for (size_t i = 0; i < req->params.count; i++) {
    /* The first of repeated names wins, as url_pairs_get has it. */
    if (lua_getfield(L, -1, req->params.items[i].key) == LUA_TNIL) {
      lua_pop(L, 1);
      lua_pushstring(L, req->params.items[i].value);
      lua_setfield(L, -2, req->params.items[i].key);
    } else {
      lua_pop(L, 1);
    }
  }
  lua_setfield(L, -2, "query");
  lua_createtable(L, 0, (int)req->nheaders); /* [req, headers] */
  for (size_t i = 0; i < req->nheaders; i++) {
    /* Repeated header lines are joined with ", " (RFC 9110). */
    if (lua_getfield(L, -1, req->headers[i].name) == LUA_TSTRING) {
      lua_pushliteral(L, ", ");
      lua_pushstring(L, req->headers[i].value);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushstring(L, req->headers[i].value);
    }
    lua_setfield(L, -2, req->headers[i].name);
  }
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, req->body, req->body_len);
  lua_setfield(L, -2, "body");
  lua_pushstring(L, a->client);
  lua_setfield(L, -2, "remote_addr");
  return 1;
}

/* A route's answer, read from what it returned. */
typedef struct {
  int status;
  Buf body;
  Buf headers; /* "Name: value\r\n" lines */
  char content_type[256];
  char error[300];
} RouteAnswer;

static bool header_char_ok(const char *s, size_t len, bool name) {
  if (len == 0 && name) return false;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\r' || c == '\n' || c == '\0') return false;
    if (name && (c <= ' ' || c == ':' || c >= 0x7f)) return false;
  }
  return true;
}

/* [results..., RouteAnswer] -> []: fills the answer from the route's
 * return values (status, body [, headers]). Runs protected: a body that
 * cannot be encoded is an answer of its own, not an abort. */
static int read_answer(lua_State *L) {
  int n = lua_gettop(L) - 1;
  RouteAnswer *a = lua_touserdata(L, n + 1);
  int isint = 0;
  lua_Integer status = n >= 1 ? lua_tointegerx(L, 1, &isint) : 0;
  if (!isint || status < 100 || status > 599) {
    snprintf(a->error, sizeof a->error,
             "the route returned %s instead of a status from 100 to 599",
             n >= 1 ? luaL_typename(L, 1) : "nothing");
    return 0;
  }
  a->status = (int)status;
  snprintf(a->content_type, sizeof a->content_type,
           "text/plain; charset=utf-8");
  if (n >= 2 && lua_istable(L, 2)) {
    char err[128] = "";
    json_t *j = lua_json_to(L, 2, err, sizeof err);
    if (!j || json_text_append(&a->body, j)) {
      snprintf(a->error, sizeof a->error,
               "the route's body table cannot be sent as JSON: %s",
               err[0] ? err : "it nests too deeply");
      json_decref(j);
      return 0;
    }
    json_decref(j);
    snprintf(a->content_type, sizeof a->content_type, "application/json");
  } else if (n >= 2 && lua_type(L, 2) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, 2, &len);
    buf_append(&a->body, s, len);
  } else if (n >= 2 && !lua_isnil(L, 2)) {
    snprintf(a->error, sizeof a->error,
             "the route returned a %s as its body (a string, a table or "
             "nil)",
             luaL_typename(L, 2));
    return 0;
  }
  if (a->body.len > MAX_ROUTE_ANSWER) {
    snprintf(a->error, sizeof a->error, "the route's body is over %d bytes",
             MAX_ROUTE_ANSWER);
    return 0;
  }
  if (n >= 3 && !lua_isnil(L, 3)) {
    if (!lua_istable(L, 3)) {
      snprintf(a->error, sizeof a->error,
               "the route's headers must be a table of name = value");
      return 0;
    }
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      size_t nl = 0, vl = 0;
      const char *name =
          lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &nl) : NULL;
      const char *value =
          lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &vl) : NULL;
      if (!name || !value || !header_char_ok(name, nl, true) ||
          !header_char_ok(value, vl, false) || vl > 4096) {
        snprintf(a->error, sizeof a->error,
                 "the route's headers must map names to string values "
                 "without line breaks");
        return 0;
      }
      if (strcasecmp(name, "content-length") == 0 ||
          strcasecmp(name, "transfer-encoding") == 0 ||
          strcasecmp(name, "connection") == 0) {
        snprintf(a->error, sizeof a->error,
                 "the route may not set %s: the server does", name);
        return 0;
      }
      if (strcasecmp(name, "content-type") == 0)
        snprintf(a->content_type, sizeof a->content_type, "%.*s", (int)vl,
                 value);
      else
        buf_printf(&a->headers, "%s: %s\r\n", name, value);
      lua_pop(L, 1);
    }
  }
  return 0;
}

static void route_done(void *arg, lua_State *co, int nres, const char *err,
                       bool timed_out) {
  RouteRun *r = arg;
  HttpRequest *req = r->req;
  if (!co) {
    if (timed_out) {
      log_warn("%s timed out after %llu ms (handler_timeout)", r->what,
               (unsigned long long)r->timeout_ms);
      http_respond_error(req, 503, "unexpected_state",
                         "The hook's handler did not answer within "
                         "handler_timeout (%llu ms)",
                         (unsigned long long)r->timeout_ms);
    } else {
      log_error("%s failed: %s", r->what, err ? err : "?");
      http_respond_error(req, 500, "unexpected_state",
                         "The hook's handler failed; the server log says "
                         "why");
    }
    free(r);
    return;
  }
  RouteAnswer a;
  memset(&a, 0, sizeof a);
  lua_pushcfunction(co, read_answer);
  lua_insert(co, -(nres + 1));
  lua_pushlightuserdata(co, &a);
  int rc = lua_pcall(co, nres + 1, 0, 0);
  if (rc != LUA_OK) {
    snprintf(a.error, sizeof a.error, "its answer could not be read: %s",
             lua_type(co, -1) == LUA_TSTRING ? lua_tostring(co, -1) : "?");
    lua_pop(co, 1);
  }
  if (a.error[0]) {
    log_error("%s failed: %s", r->what, a.error);
    http_respond_error(req, 500, "unexpected_state",
                       "The hook's handler failed; the server log says why");
  } else {
    if (a.headers.len) {
      /* The lines go out as they are: each was checked above. */
      buf_append(&req->extra_headers, a.headers.data, a.headers.len);
    }
    http_respond(req, a.status, a.content_type, a.body.data ? a.body.data : "",
                 a.body.len);
  }
  buf_free(&a.body);
  buf_free(&a.headers);
  free(r);
}

int lua_connect_route(LuaHost *h, HttpRequest *req, const char *client,
                      char *allow, size_t allow_len) {
  lua_State *L = lua_host_state(h);
  ConnectState *cs = state_of(L, false);
  if (!cs) return RESTOCK_ENOTFOUND;
  const HookRoute *route = NULL;
  allow[0] = '\0';
  for (size_t i = 0; i < cs->nroutes; i++) {
    const HookRoute *r = &cs->routes[i];
    if (strlen(r->path) != req->path_len ||
        memcmp(r->path, req->path, req->path_len) != 0)
      continue;
    if (strcmp(r->method, req->method) == 0) {
      route = r;
      break;
    }
    size_t used = strlen(allow);
    snprintf(allow + used, allow_len - used, "%s%s", used ? ", " : "",
             r->method);
  }
  if (!route) return allow[0] ? RESTOCK_ENOTALLOWED : RESTOCK_ENOTFOUND;
  req->match.route = &route->route;
  uint64_t timeout = (uint64_t)lua_host_config_mut(h)->options.handler_timeout;
  /* The request table is made while the body is still there, in a
   * protected call: a state at its memory limit answers 503, not a panic. */
  RequestArg ra = {req, client};
  watchdog_enter();
  lua_pushcfunction(L, push_request);
  lua_pushlightuserdata(L, &ra);
  int rc = lua_host_pcall(L, 1, 1); /* [req] or [error] */
  if (rc != LUA_OK) {
    log_error("route %s %s: the request could not be handed to Lua: %s",
              route->method, route->path,
              lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
    lua_pop(L, 1);
    watchdog_leave();
    http_respond_error(req, 503, "unexpected_state",
                       "The plugin cannot take the request now; retry later");
    return 0;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, route->fn_ref); /* [req, fn] */
  lua_insert(L, -2);                                /* [fn, req] */
  RouteRun *r = xcalloc(1, sizeof *r);
  snprintf(r->what, sizeof r->what, "route %s %s", route->method, route->path);
  r->timeout_ms = timeout;
  r->req = http_defer(req);
  rc = lua_host_spawn(h, 1, r->what, timeout, route_done, r);
  watchdog_leave();
  if (rc) {
    http_respond_error(r->req, 503, "unexpected_state",
                       "The plugin cannot run the route now; retry later");
    free(r);
  }
  return 0;
}

/* ---- restock.every
 * ------------------------------------------------------------- */

static void periodic_unref(Periodic *p) {
  if (--p->refs > 0) return;
  free(p->name);
  free(p);
}

static void on_timer_closed(uv_handle_t *handle) {
  periodic_unref(handle->data);
}

static void on_timer(uv_timer_t *timer);

static void rearm(Periodic *p) {
  if (!p->stopped) uv_timer_start(&p->timer, on_timer, p->interval_ms, 0);
}

/* True while a task of this name runs, in this script or a replaced one. */
static bool name_running(const char *name) {
  for (Periodic *q = running_tasks; q; q = q->running)
    if (strcmp(q->name, name) == 0) return true;
  return false;
}

static void run_ended(Periodic *p) {
  Periodic **pp = &running_tasks;
  while (*pp && *pp != p) pp = &(*pp)->running;
  if (*pp) *pp = p->running;
  p->running = NULL;
  p->is_running = false;
  runs_in_progress--;
  rearm(p);
  periodic_unref(p);
  if (runs_in_progress == 0 && idle_cb) {
    void (*cb)(void *) = idle_cb;
    idle_cb = NULL;
    cb(idle_arg);
  }
}

static void run_done(void *arg, lua_State *co, int nres, const char *err,
                     bool timed_out) {
  Periodic *p = arg;
  if (!co) {
    log_warn("periodic task %s %s: %s", p->name,
             timed_out ? "timed out" : "failed", err ? err : "?");
  } else if (nres >= 2 &&
             (lua_isnil(co, -nres) ||
              (lua_isboolean(co, -nres) && !lua_toboolean(co, -nres)))) {
    const char *why = lua_type(co, -nres + 1) == LUA_TSTRING
                          ? lua_tostring(co, -nres + 1)
                          : "(no message)";
    log_warn("periodic task %s failed: %s", p->name, why);
  }
  run_ended(p);
}

static void start_run(Periodic *p) {
  LuaHost *h = p->host;
  if (p->stopped || !h) {
    rearm(p);
    return;
  }
  lua_State *L = lua_host_state(h);
  uint64_t timeout = (uint64_t)lua_host_config_mut(h)->options.handler_timeout;
  char what[260];
  snprintf(what, sizeof what, "periodic task %s", p->name);
  p->refs++;
  p->is_running = true;
  p->running = running_tasks;
  running_tasks = p;
  runs_in_progress++;
  watchdog_enter();
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->fn_ref); /* [fn] */
  int rc = lua_host_spawn(h, 0, what, timeout, run_done, p);
  watchdog_leave();
  if (rc) run_ended(p);
}

typedef struct {
  Unit unit;
  Periodic *p;
  long long until;
  bool held;
  bool release;
} LeaseCall;

static int lease_fn(StoreTx *tx, void *arg) {
  LeaseCall *c = arg;
  if (c->release) return store_lease_release(tx, c->p->name);
  return store_lease_claim(tx, c->p->name, isotime_now_ms(), c->until,
                           &c->held);
}

static void lease_done(Unit *u, int status) {
  LeaseCall *c = (LeaseCall *)u;
  Periodic *p = c->p;
  if (!c->release) {
    p->held = status == 0 && c->held;
    if (status)
      log_warn(
          "periodic task %s: its lease could not be taken (%s); it "
          "runs when it can",
          p->name, restock_strerror(status));
    if (p->held && !p->stopped)
      start_run(p);
    else
      rearm(p);
  }
  free(c);
  periodic_unref(p);
}

static void lease(Periodic *p, bool release) {
  Domain *d =
      p->host && lua_host_env(p->host) ? lua_host_env(p->host)->d : NULL;
  if (!d) {
    if (!release) start_run(p);
    return;
  }
  LeaseCall *c = xcalloc(1, sizeof *c);
  c->p = p;
  c->release = release;
  long long timeout = lua_host_config_mut(p->host)->options.handler_timeout;
  /* The lease covers a run, the wait before the next one and a margin, so
   * that the node holding it keeps it as long as it lives. */
  c->until =
      isotime_now_ms() + timeout + (long long)p->interval_ms + LEASE_MARGIN_MS;
  p->refs++;
  unit_write(d, &c->unit, lease_fn, lease_done);
}

static void on_timer(uv_timer_t *timer) {
  Periodic *p = timer->data;
  if (p->stopped) return;
  if (name_running(p->name)) {
    rearm(p); /* the replaced script's run of it is still going */
    return;
  }
  if (p->leased)
    lease(p, false);
  else
    start_run(p);
}

/* restock.every(ms, fn [, {name=}]) */
static int l_every(lua_State *L) {
  LuaHost *h = lua_host_of(L);
  lua_Integer ms = luaL_checkinteger(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (lua_host_loaded(h))
    return luaL_error(L,
                      "restock.every can only be called while plugin.lua "
                      "loads");
  luaL_argcheck(L, ms >= MIN_INTERVAL_MS && ms <= MAX_INTERVAL_MS, 1,
                "must be an integer of ms from 10 to 30 days");
  const char *name = NULL;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      if (lua_type(L, -2) != LUA_TSTRING || strcmp(lua_tostring(L, -2), "name"))
        return luaL_error(L,
                          "restock.every: unknown option (the only option "
                          "is name)");
      lua_pop(L, 1);
    }
    lua_getfield(L, 3, "name");
    if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0 ||
        lua_rawlen(L, -1) > 200 ||
        strlen(lua_tostring(L, -1)) != lua_rawlen(L, -1))
      return luaL_argerror(L, 3, "name must be a string of 1 to 200 bytes");
    name = lua_tostring(L, -1);
  }
  ConnectState *cs = state_of(L, true);
  if (cs->ntasks == MAX_TASKS)
    return luaL_error(L, "restock.every: at most %d tasks", MAX_TASKS);
  char fallback[32];
  snprintf(fallback, sizeof fallback, "every#%zu", cs->ntasks + 1);
  const char *final_name = name ? name : fallback;
  Periodic **tail = &cs->tasks;
  for (; *tail; tail = &(*tail)->next)
    if (strcmp((*tail)->name, final_name) == 0)
      return luaL_error(L, "restock.every: a task named '%s' already exists",
                        final_name);
  Periodic *p = xcalloc(1, sizeof *p);
  p->host = h;
  p->name = xstrdup(final_name);
  p->leased = name != NULL;
  p->interval_ms = (uint64_t)ms;
  lua_pushvalue(L, 2);
  p->fn_ref = lua_host_ref(L);
  p->refs = 1; /* the script's list; the timer takes one of its own */
  p->timer.data = p;
  *tail = p;
  cs->ntasks++;
  return 0;
}

void lua_connect_start(LuaHost *h) {
  LuaEnv *env = lua_host_env(h);
  ConnectState *cs = state_of(lua_host_state(h), false);
  if (!cs || cs->started || cs->stopped || !env || !env->loop) return;
  cs->started = true;
  for (Periodic *p = cs->tasks; p; p = p->next) {
    uv_timer_init(env->loop, &p->timer);
    p->timer_started = true;
    p->refs++;
    rearm(p);
  }
}

void lua_connect_stop(LuaHost *h) {
  ConnectState *cs = state_of(lua_host_state(h), false);
  if (!cs || cs->stopped) return;
  cs->stopped = true;
  for (Periodic *p = cs->tasks; p; p = p->next) {
    p->stopped = true;
    /* Closed now, not when the state goes: a shutdown closes every handle
     * of the loop before the last script is freed. */
    if (p->timer_started && !p->timer_closing) {
      p->timer_closing = true;
      uv_close((uv_handle_t *)&p->timer, on_timer_closed);
    }
    /* Another node may take the task at once rather than wait for the
     * lease to run out. */
    if (p->leased && p->held) {
      p->held = false;
      lease(p, true);
    }
  }
}

void lua_connect_when_idle(void (*cb)(void *arg), void *arg) {
  if (runs_in_progress == 0) {
    cb(arg);
    return;
  }
  idle_cb = cb;
  idle_arg = arg;
}

void lua_connect_free(LuaHost *h) {
  lua_State *L = lua_host_state(h);
  ConnectState *cs = state_of(L, false);
  if (!cs) return;
  lua_connect_stop(h);
  for (size_t i = 0; i < cs->nroutes; i++) {
    lua_host_unref(L, cs->routes[i].fn_ref);
    free(cs->routes[i].path);
  }
  for (Periodic *p = cs->tasks, *next; p; p = next) {
    next = p->next;
    lua_host_unref(L, p->fn_ref);
    p->host = NULL;
    periodic_unref(p);
  }
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, REGISTRY_KEY);
  free(cs);
}

/* ---- the module
 * ------------------------------------------------------------------ */

void lua_connect_open(lua_State *L) {
  static const luaL_Reg top[] = {
      {"route", l_route}, {"every", l_every}, {NULL, NULL}};
  static const luaL_Reg kv[] = {
      {"get", l_kv_get}, {"set", l_kv_set}, {NULL, NULL}};
  static const luaL_Reg inventory[] = {{"set", l_inventory_set},
                                       {"set_level", l_inventory_set_level},
                                       {NULL, NULL}};
  static const luaL_Reg orders[] = {{"record", l_orders_record}, {NULL, NULL}};
  static const luaL_Reg locations[] = {{"upsert", l_locations_upsert},
                                       {NULL, NULL}};
  static const luaL_Reg channels[] = {{"upsert", l_channels_upsert},
                                      {NULL, NULL}};
  static const luaL_Reg keys[] = {{"upsert", l_keys_upsert}, {NULL, NULL}};
  /* [restock] */
  luaL_setfuncs(L, top, 0);
  if (lua_getfield(L, -1, "variants") != LUA_TTABLE) { /* [restock, v] */
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "variants");
  }
  lua_pushcfunction(L, l_variants_upsert);
  lua_setfield(L, -2, "upsert");
  lua_pop(L, 1);
  luaL_newlib(L, kv);
  lua_setfield(L, -2, "kv");
  luaL_newlib(L, inventory);
  lua_setfield(L, -2, "inventory");
  luaL_newlib(L, orders);
  lua_setfield(L, -2, "orders");
  luaL_newlib(L, locations);
  lua_setfield(L, -2, "stock_locations");
  luaL_newlib(L, channels);
  lua_setfield(L, -2, "sales_channels");
  luaL_newlib(L, keys);
  lua_setfield(L, -2, "publishable_api_keys");
}
