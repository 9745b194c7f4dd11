/* The real API behind the HTTP fuzz target: api.c's dispatcher, its routes
 * and use-cases, on an in-memory store with its writer thread, the engine
 * and the outbox (with a runner that delivers at once, in place of Lua).
 * The admin token is "fuzz", so seeds that carry `Authorization: Bearer
 * fuzz` reach the admin routes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "engine.h"
#include "fuzz.h"
#include "http_handler.h"
#include "migrate.h"
#include "outbox.h"

static Domain domain;
static Api api;

static int deliver(void *ctx, const OutboxRun *r, OutboxRunDone done,
                   void *arg) {
  done(arg, true, true, NULL);
  return 0;
}

void fuzz_http_setup(uv_loop_t *loop, HttpHandler *handler, void **data) {
  char *err = NULL;
  StoreOptions o = {.role = STORE_ROLE_SERVER, .readers = 0};
  if (store_open(":memory:", &o, &domain.store, &err) ||
      migrate_run(domain.store, fopen("/dev/null", "w"), &err) ||
      store_start(domain.store, loop, &err)) {
    fprintf(stderr, "fuzz_api: %s\n", err ? err : "cannot set up the store");
    exit(1);
  }
  domain.loop = loop;
  Config *c = config_new();
  config_add_handler(c, "restock-notification.restocked", "mailer", 2,
                     EACH_SUBSCRIBER);
  config_add_handler(c, "restock-notification.subscribed", "welcome", 2,
                     EACH_EVENT);
  c->options.subscribe_rate_limit = 100000;
  domain.config = c;
  memset(domain.token_key, 1, sizeof domain.token_key);
  domain.engine = engine_new(&domain);
  domain.outbox = outbox_new(&domain, (OutboxRunner){deliver, NULL});
  engine_start(domain.engine);
  api.d = &domain;
  api.loop = loop;
  api.ratelimit = ratelimit_new();
  api_set_admin_token(&api, "fuzz");
  *handler = api_handle;
  *data = &api;
}

void fuzz_http_started(HttpServer *srv, void *data) {
  http_server_on_answer(srv, api_answered);
  http_server_on_reject(srv, api_rejected);
}

bool fuzz_http_busy(void *data) { return store_inflight(domain.store) > 0; }
