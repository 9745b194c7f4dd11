/* The Lua host driven by a real libuv loop, counting callbacks. */
#include <stdlib.h>
#include <unistd.h>

#include "error.h"
#include "lua_host.h"
#include "unit.h"

typedef struct {
  int calls;
  bool ok;
  char err[512];
} Outcome;

static void on_done(void *arg, bool ok, bool retry, const char *err) {
  Outcome *o = arg;
  o->calls++;
  o->ok = ok;
  snprintf(o->err, sizeof o->err, "%s", err ? err : "");
}

/* Loads `source` as plugin.lua with a handler run on `loop`. */
static LuaHost *load(uv_loop_t *loop, const char *source) {
  char path[] = "/tmp/restockd-unit-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return NULL;
  if (write(fd, source, strlen(source)) < 0) {
    close(fd);
    return NULL;
  }
  close(fd);
  LuaHost *h = NULL;
  char *err = NULL;
  /* No Domain: restock.emit and restock.variants raise, which these tests
   * do not use. The environment lives as long as the test's loop. */
  static LuaEnv env;
  env.loop = loop;
  if (lua_host_load(path, &env, &h, &err, NULL)) {
    printf("    load failed: %s\n", err);
    free(err);
  }
  unlink(path);
  return h;
}

/* lua_host_run with a LuaRun of these fields. */
static int run(LuaHost *h, const char *event, const char *handler,
               const char *data, uint64_t timeout_ms, Outcome *o) {
  LuaRun r = {.event = event,
              .handler = handler,
              .subscriber = "",
              .data = data,
              .event_id = 1,
              .timeout_ms = timeout_ms};
  return lua_host_run(h, &r, on_done, o);
}

static const char *plugin =
    "local restock = require 'restock'\n"
    "restock.options { handler_timeout = 100 }\n"
    "restock.subscribe('ok', function(d) assert(d.n == 2) end, {name = 'a'})\n"
    "restock.subscribe('ok', function(d) return nil, 'said no' end)\n"
    "restock.subscribe('sleepy', function(d)\n"
    "  local t = os.clock(); restock.sleep(20); restock.sleep(0)\n"
    "end, {name = 's', max_attempts = 9})\n"
    "restock.subscribe('spin', function()\n"
    "  while true do pcall(function() while true do end end) end\n"
    "end, {name = 'x'})\n"
    "restock.subscribe('slow', function() restock.sleep(10000) end,"
    " {name = 'z'})\n"
    "restock.subscribe('bad', function() error({}) end, {name = 'b'})\n";

TEST(lua_host_lists_handlers_with_defaults) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  LuaHost *h = load(&loop, plugin);
  CHECK(h != NULL);
  if (!h) return;
  Config *c = lua_host_config(h);
  const HandlerSpec *info[4];
  CHECK(config_handlers(c, "ok", info, 4) == 2);
  CHECK_STR(info[0]->name, "a");
  CHECK_STR(info[1]->name, "ok#2");
  CHECK(info[1]->max_attempts == 5);
  CHECK(info[1]->each == EACH_EVENT);
  CHECK(config_handlers(c, "sleepy", info, 4) == 1);
  CHECK(info[0]->max_attempts == 9);
  CHECK(config_handlers(c, "none", info, 4) == 0);
  CHECK(c->options.handler_timeout == 100);
  config_unref(c);
  lua_host_release(h);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST(lua_host_runs_handlers_once_each) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  LuaHost *h = load(&loop, plugin);
  if (!h) return;
  Outcome a = {0}, b = {0}, s = {0}, bad = {0};
  CHECK(run(h, "ok", "a", "{\"n\":2}", 1000, &a) == 0);
  CHECK(run(h, "ok", "ok#2", "{}", 1000, &b) == 0);
  CHECK(run(h, "sleepy", "s", "{}", 1000, &s) == 0);
  CHECK(run(h, "bad", "b", "{}", 1000, &bad) == 0);
  CHECK(run(h, "ok", "nope", "{}", 1000, &a) ==
        RESTOCK_ENOTFOUND);
  CHECK(run(h, "ok", "a", "not json", 1000, &a) ==
        RESTOCK_EINVAL);
  CHECK(s.calls == 0); /* suspended in restock.sleep */
  CHECK(lua_host_running(h) > 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(a.calls == 1 && a.ok);
  CHECK(b.calls == 1 && !b.ok);
  CHECK_STR(b.err, "said no");
  CHECK(s.calls == 1 && s.ok);
  CHECK(bad.calls == 1 && !bad.ok);
  CHECK(strstr(bad.err, "not a string") != NULL);
  CHECK(lua_host_running(h) == 0);
  lua_host_release(h);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST(lua_host_stops_runaway_and_waiting_handlers) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  LuaHost *h = load(&loop, plugin);
  if (!h) return;
  Outcome spin = {0}, slow = {0};
  uint64_t start = uv_hrtime();
  CHECK(run(h, "spin", "x", "{}", 50, &spin) == 0);
  CHECK(run(h, "slow", "z", "{}", 50, &slow) == 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  uint64_t ms = (uv_hrtime() - start) / 1000000;
  CHECK(spin.calls == 1 && !spin.ok);
  CHECK(strstr(spin.err, "timed out after 50 ms") != NULL);
  CHECK(slow.calls == 1 && !slow.ok);
  CHECK(strstr(slow.err, "timed out") != NULL);
  CHECK(ms < 5000); /* the 10 s sleep was cancelled */
  lua_host_release(h);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST(lua_host_release_waits_for_running_handlers) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  LuaHost *h = load(&loop, plugin);
  if (!h) return;
  Outcome s = {0};
  CHECK(run(h, "sleepy", "s", "{}", 1000, &s) == 0);
  lua_host_release(h); /* as a reload does: the handler finishes first */
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(s.calls == 1 && s.ok);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST(lua_host_abort_all_cancels_waits) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  LuaHost *h = load(&loop, plugin);
  if (!h) return;
  Outcome slow = {0};
  CHECK(run(h, "slow", "z", "{}", 60000, &slow) == 0);
  lua_host_abort_all("shutting down");
  CHECK(slow.calls == 1 && !slow.ok);
  CHECK_STR(slow.err, "shutting down");
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(slow.calls == 1);
  lua_host_release(h);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST(lua_host_load_reports_bad_options_and_syntax) {
  const char *bad[] = {
      "require('restock').options { nope = 1 }",
      "require('restock').options { trigger_delay = -1 }",
      "require('restock').options { batch_size = 'x' }",
      "this is not lua",
      "require('restock').subscribe('e', function() end, {name='a'})\n"
      "require('restock').subscribe('e', function() end, {name='a'})",
  };
  const char *want[] = {"nope", "trigger_delay", "batch_size", "syntax",
                        "already subscribed"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char path[] = "/tmp/restockd-unit-XXXXXX";
    int fd = mkstemp(path);
    CHECK(write(fd, bad[i], strlen(bad[i])) > 0);
    close(fd);
    LuaHost *h = NULL;
    char *err = NULL;
    CHECK(lua_host_load(path, NULL, &h, &err, NULL) == RESTOCK_EINVAL);
    CHECK(err && strstr(err, want[i]) != NULL);
    free(err);
    unlink(path);
  }
}
