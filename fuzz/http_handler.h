/* The application behind the HTTP fuzz target (fuzz_http.c): the function
 * the server hands each request to. This file's implementation,
 * http_handler.c, routes through router.c and url.c to small handlers that
 * echo what they were given; pointing the target at the real API is a
 * matter of another implementation of these three functions (the Makefile's
 * FUZZ_HTTP_HANDLER names the file). */
#ifndef RESTOCKD_FUZZ_HTTP_HANDLER_H
#define RESTOCKD_FUZZ_HTTP_HANDLER_H

#include <stdbool.h>
#include <uv.h>

#include "http.h"

/* Called once, before the server starts, with the loop it runs on. Sets the
 * handler and the data the server passes it. */
void fuzz_http_setup(uv_loop_t *loop, HttpHandler *handler, void **data);
/* Called once the server listens (to set its hooks, for example). */
void fuzz_http_started(HttpServer *srv, void *data);
/* True while the application still owes an answer or has work queued on the
 * loop (a deferred request): the harness runs the loop until it is false,
 * so that nothing of one input is left for the next. */
bool fuzz_http_busy(void *data);

#endif
