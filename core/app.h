/* The running server's state, shared by the routes. */
#ifndef RESTOCKD_APP_H
#define RESTOCKD_APP_H

#include <stdbool.h>
#include <uv.h>

#include "engine.h"
#include "http.h"
#include "http_client.h"
#include "lua_host.h"
#include "outbox.h"
#include "ratelimit.h"
#include "store.h"
#include "token.h"

typedef struct App {
  uv_loop_t *loop;
  Store *store;
  /* Listings run on the thread pool with their own read-only connection,
   * opened by the first of them; reader_lock lets one at a time use it. */
  Store *reader;
  uv_mutex_t reader_lock;
  LuaHost *lua; /* the current script; a reloaded one is released */
  HttpServer *http;
  Engine *engine;
  Outbox *outbox;
  HttpClient *http_client; /* restock.http.request; made on first use */
  RateLimit *ratelimit;    /* subscribe_rate_limit's buckets */
  unsigned char token_key[TOKEN_KEY_LEN]; /* unsubscribe tokens */
  const char *config_path;
  /* SHA-256 of RESTOCK_ADMIN_TOKEN; admin routes answer 401 without it. */
  bool admin_enabled;
  unsigned char admin_digest[32];
} App;

/* Sets the admin token (NULL or "" disables the admin API). */
void api_set_admin_token(App *app, const char *token);
/* The HTTP handler of every route; `data` is the App. */
void api_handle(HttpRequest *req, void *data);
/* Counts and logs each answer (the HttpAnswerHook); `data` is the App. */
void api_answered(void *data, HttpRequest *req);
/* Counts and logs a request the HTTP layer answered itself (400 for one
 * that cannot be parsed, 413, 431, 503). */
void api_rejected(void *data, int status, const char *client);

#endif
