/* The HTTP/1.1 server: libuv for the sockets, llhttp for parsing. Keep-alive
 * and pipelining, bounded requests (header bytes, header count, body size),
 * an idle timeout, deadlines for a request's head and body, a cap on open
 * connections that makes room for newcomers, and a draining shutdown.
 *
 * Requests are handed to one handler function, in arrival order per
 * connection. The handler must answer with http_respond (or one of its
 * wrappers) before it returns. */
#ifndef RESTOCKD_HTTP_H
#define RESTOCKD_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "router.h"
#include "url.h"

typedef struct {
  const char *host;
  int port;                 /* 0: any free port */
  uint64_t idle_timeout_ms; /* close a connection silent this long */
  /* 408 for a request head not complete this long after its first byte,
   * and for a body not complete this long after the end of its head. */
  uint64_t header_timeout_ms;
  uint64_t body_timeout_ms;
  /* Open connections at most. Beyond it a newcomer takes the place of the
   * connection idle longest or slowest to send its request; it is answered
   * 503 only when every connection is busy being served. */
  unsigned max_connections;
  size_t max_body;         /* 413 beyond this */
  size_t max_header_bytes; /* 431 beyond this (request line included) */
  unsigned max_headers;    /* 431 beyond this */
} HttpConfig;

/* Fills `c` with the defaults: 60 s idle, 10 s for a head, 30 s for a body,
 * 1024 connections, 1 MiB body, 16 KiB of headers, 100 headers. */
void http_config_defaults(HttpConfig *c);

typedef struct HttpServer HttpServer;
typedef struct HttpConn HttpConn;

typedef struct {
  char *name; /* lower-cased */
  char *value;
} HttpHeader;

typedef struct HttpRequest {
  HttpServer *server;
  HttpConn *conn; /* NULL once a deferred request's client has left */
  const char *method;
  /* Raw, without the query; of an absolute-form target ("http://host/p"),
   * only the path ("/p", or "/" when it has none). */
  const char *path;
  size_t path_len;
  const char *query; /* raw query string after '?', or NULL */
  size_t query_len;
  HttpHeader *headers;
  size_t nheaders;
  const char *body; /* NUL-terminated; "" when there is none */
  size_t body_len;
  const char *client_addr; /* the peer's IP address */
  uint64_t start_ns;       /* uv_hrtime() when the request was complete */

  /* Filled by the application's dispatcher. */
  RouteMatch match;
  KeyValueList params; /* query string (and form body) pairs */

  /* Response state. */
  Buf extra_headers; /* "Name: value\r\n" lines added by the handler */
  int status;        /* set once responded */
  /* Set by http_defer: this request is on the heap, and `owned` holds the
   * copies of its method, path, query and client address. */
  bool deferred;
  char *owned;
} HttpRequest;

typedef void (*HttpHandler)(HttpRequest *req, void *data);
/* Told of every answer as it is queued, with the request's status set (for
 * metrics and access logs). */
typedef void (*HttpAnswerHook)(void *data, HttpRequest *req);
/* Told of each request the server answered without the handler (`status`
 * 400, 408, 413, 431 or 503), for metrics and logs. */
typedef void (*HttpRejectHook)(void *data, int status, const char *client);

/* Sets the hook told of rejected requests (NULL: none). */
void http_server_on_reject(HttpServer *srv, HttpRejectHook hook);
/* Sets the hook told of answers (NULL: none). */
void http_server_on_answer(HttpServer *srv, HttpAnswerHook hook);
/* Binds and listens. Returns 0, or a negative libuv error with a message in
 * *err (free it). `data` is passed to `handler` untouched. */
int http_server_start(uv_loop_t *loop, const HttpConfig *cfg,
                      HttpHandler handler, void *data, HttpServer **out,
                      char **err);
/* The address actually bound, as "HOST:PORT" (IPv6 in brackets). */
const char *http_server_address(const HttpServer *srv);
/* Stops accepting, lets requests in flight finish and closes each
 * connection once it is idle. `done` runs once every handle is closed; then
 * the server may be freed with http_server_free. */
void http_server_stop(HttpServer *srv, void (*done)(void *), void *arg);
/* Closes every connection at once, pending writes or not (the end of a
 * shutdown's grace period). http_server_stop must have been called. */
void http_server_close_all(HttpServer *srv);
void http_server_free(HttpServer *srv);
/* Holds every response queued from now on: nothing is written until
 * http_server_release. Group commit uses it so that no answer leaves before
 * the writes it reports are durable. */
void http_server_hold(HttpServer *srv);
/* Writes the held responses (`ok`), or closes their connections unanswered
 * (the writes they reported were lost). */
void http_server_release(HttpServer *srv, bool ok);
/* Number of open connections. */
size_t http_server_connections(const HttpServer *srv);

/* The value of header `name` (lower-case), or NULL. */
const char *http_header(const HttpRequest *req, const char *name);
/* Adds a response header; call before responding. */
void http_add_header(HttpRequest *req, const char *name, const char *value);
/* Answers later. The handler returns without answering; the request, moved
 * to the heap and returned, is answered with http_respond* from the loop
 * when its work is done, which also frees it. Until then the connection
 * parses no further request. The body, and the headers once the connection
 * closes, are gone: read them before deferring. If the client leaves
 * first, the answer is dropped. */
HttpRequest *http_defer(HttpRequest *req);
/* Like http_defer, but the deferred request keeps a copy of its body, for
 * a handler that must wait before the route reads it (the console's
 * session check). Deferring that request again returns it unchanged. */
HttpRequest *http_defer_with_body(HttpRequest *req);
/* Queues the response. `body` is copied. */
void http_respond(HttpRequest *req, int status, const char *content_type,
                  const char *body, size_t len);
/* Streams: a large answer, sent in chunks (Transfer-Encoding: chunked) as
 * a producer makes them, in memory that does not grow with its length.
 *
 * On a deferred request, http_stream_begin sends the status line and the
 * headers. The producer then writes chunks with http_stream_write, which
 * returns false when the client is slow to take them (about 1 MiB waits):
 * the producer stops, and `drain(arg)` is called once the output is down
 * to 256 KiB (or the client has left), from the loop, never from inside
 * http_stream_write; it should only schedule the next chunk. The producer
 * checks http_stream_gone before each chunk and ends with
 * http_stream_end, which frees the request. A connection whose client
 * takes nothing for the idle timeout is closed. */
typedef void (*HttpStreamDrain)(void *arg);
/* Returns 0, or -1 when the client has left (end the stream at once). */
int http_stream_begin(HttpRequest *req, int status, const char *content_type,
                      HttpStreamDrain drain, void *arg);
/* Queues one chunk (len > 0). True when the producer may go on now. */
bool http_stream_write(HttpRequest *req, const char *data, size_t len);
/* True once the client has left. */
bool http_stream_gone(const HttpRequest *req);
/* Ends the stream: with its last chunk (`ok`), or cut short by closing the
 * connection. Frees the request. */
void http_stream_end(HttpRequest *req, bool ok);
/* Responds with `body` as JSON and releases the caller's reference. */
void http_respond_json(HttpRequest *req, int status, json_t *body);
/* Responds with the error body {"type": type, "message": ...}. */
void http_respond_error(HttpRequest *req, int status, const char *type,
                        const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
