#include "http_client.h"

#include "curl_dl.h"
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "xmalloc.h"

struct HttpClient {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer; /* curl's own timeout */
  char *ca_file;
  HttpClientRequest *requests;
  bool closing;
};

struct HttpClientRequest {
  HttpClient *client;
  CURL *easy;
  struct curl_slist *headers;
  char *body;
  Buf response;
  bool too_large;
  /* Response headers of the last response (a 100 Continue is dropped). */
  char **names, **values;
  size_t nheaders, cap;
  long timeout_ms;
  char error[CURL_ERROR_SIZE];
  HttpClientDone done;
  void *arg;
  HttpClientRequest *prev, *next;
};

/* The poll handle of one socket curl asked us to watch. */
typedef struct {
  uv_poll_t poll;
  curl_socket_t fd;
  HttpClient *client;
} SocketWatch;

static void check_done(HttpClient *c);

static void on_poll(uv_poll_t *p, int status, int events) {
  SocketWatch *w = p->data;
  int flags = 0;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  int running = 0;
  HttpClient *c = w->client;
  curl_dl.multi_socket_action(c->multi, w->fd, flags, &running);
  check_done(c);
}

static void free_on_close(uv_handle_t *h) { free(h->data); }

/* CURLMOPT_SOCKETFUNCTION: start, change or stop watching a socket. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
                     void *socketp) {
  HttpClient *c = userp;
  SocketWatch *w = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (w) {
      uv_poll_stop(&w->poll);
      uv_close((uv_handle_t *)&w->poll, free_on_close);
      curl_dl.multi_assign(c->multi, fd, NULL);
    }
    return 0;
  }
  if (!w) {
    w = xcalloc(1, sizeof *w);
    w->fd = fd;
    w->client = c;
    if (uv_poll_init_socket(c->loop, &w->poll, fd) < 0) {
      free(w);
      return -1;
    }
    w->poll.data = w;
    curl_dl.multi_assign(c->multi, fd, w);
  }
  int events = 0;
  if (what & CURL_POLL_IN) events |= UV_READABLE;
  if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
  uv_poll_start(&w->poll, events, on_poll);
  return 0;
}

static void on_timeout(uv_timer_t *t) {
  HttpClient *c = t->data;
  int running = 0;
  curl_dl.multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(c);
}

/* CURLMOPT_TIMERFUNCTION: when to call curl back with no socket event. */
static int on_timer_change(CURLM *multi, long timeout_ms, void *userp) {
  HttpClient *c = userp;
  if (timeout_ms < 0)
    uv_timer_stop(&c->timer);
  else
    /* Never 0: curl must not be re-entered from inside this callback. */
    uv_timer_start(&c->timer, on_timeout, timeout_ms ? (uint64_t)timeout_ms : 1,
                   0);
  return 0;
}

static bool global_init;

void http_client_global_cleanup(void) {
  if (global_init) curl_dl.global_cleanup();
  global_init = false;
}

HttpClient *http_client_new(uv_loop_t *loop, const char *ca_file) {
  if (!global_init) {
    char err[256];
    if (curl_dl_load(err, sizeof err)) {
      log_error("outbound HTTP is unavailable: %s", err);
      return NULL;
    }
    if (curl_dl.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      log_error("outbound HTTP is unavailable: curl_global_init failed");
      return NULL;
    }
    global_init = true;
  }
  HttpClient *c = xcalloc(1, sizeof *c);
  c->loop = loop;
  c->multi = curl_dl.multi_init();
  if (!c->multi) {
    free(c);
    return NULL;
  }
  c->ca_file = ca_file && *ca_file ? xstrdup(ca_file) : NULL;
  curl_dl.multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_dl.multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
  curl_dl.multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
  curl_dl.multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
  /* Connections kept for reuse, across hosts, and at most 16 open to one
   * host at once: more transfers wait in curl's queue rather than flooding
   * a mail API with connections. */
  curl_dl.multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, 64L);
  curl_dl.multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 16L);
  uv_timer_init(loop, &c->timer);
  c->timer.data = c;
  return c;
}

static void request_free(HttpClientRequest *r) {
  HttpClient *c = r->client;
  if (r->prev)
    r->prev->next = r->next;
  else
    c->requests = r->next;
  if (r->next) r->next->prev = r->prev;
  curl_dl.multi_remove_handle(c->multi, r->easy);
  curl_dl.easy_cleanup(r->easy);
  curl_dl.slist_free_all(r->headers);
  for (size_t i = 0; i < r->nheaders; i++) {
    free(r->names[i]);
    free(r->values[i]);
  }
  free(r->names);
  free(r->values);
  free(r->body);
  buf_free(&r->response);
  free(r);
}

static void on_client_closed(uv_handle_t *h) {
  HttpClient *c = h->data;
  curl_dl.multi_cleanup(c->multi);
  free(c->ca_file);
  free(c);
}

void http_client_close(HttpClient *c) {
  if (!c) return;
  c->closing = true;
  while (c->requests) request_free(c->requests);
  uv_close((uv_handle_t *)&c->timer, on_client_closed);
}

static size_t on_write(char *data, size_t size, size_t n, void *userp) {
  HttpClientRequest *r = userp;
  size_t len = size * n;
  if (r->response.len + len > HTTP_CLIENT_MAX_RESPONSE) {
    r->too_large = true;
    return 0; /* fails the transfer */
  }
  buf_append(&r->response, data, len);
  return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *userp) {
  HttpClientRequest *r = userp;
  size_t len = size * n;
  if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
    /* A new status line: headers of an earlier (interim) response go. */
    for (size_t i = 0; i < r->nheaders; i++) {
      free(r->names[i]);
      free(r->values[i]);
    }
    r->nheaders = 0;
    return len;
  }
  const char *colon = memchr(data, ':', len);
  if (!colon || r->nheaders >= 200) return len;
  const char *v = colon + 1, *end = data + len;
  while (v < end && (*v == ' ' || *v == '\t')) v++;
  while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
    end--;
  if (r->nheaders == r->cap) {
    r->cap = r->cap ? r->cap * 2 : 16;
    r->names = xrealloc(r->names, r->cap * sizeof *r->names);
    r->values = xrealloc(r->values, r->cap * sizeof *r->values);
  }
  char *name = xstrndup(data, (size_t)(colon - data));
  for (char *p = name; *p; p++)
    if (*p >= 'A' && *p <= 'Z') *p = (char)(*p + 32);
  r->names[r->nheaders] = name;
  r->values[r->nheaders] = xstrndup(v, (size_t)(end - v));
  r->nheaders++;
  return len;
}

/* Reports every finished transfer. Runs after curl has returned, never
 * inside one of its callbacks, so `done` may start or cancel requests. */
static void check_done(HttpClient *c) {
  CURLMsg *msg;
  int left;
  while (!c->closing && (msg = curl_dl.multi_info_read(c->multi, &left))) {
    if (msg->msg != CURLMSG_DONE) continue;
    HttpClientRequest *r = NULL;
    curl_dl.easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    CURLcode result = msg->data.result;
    char err[CURL_ERROR_SIZE + 64];
    if (result == CURLE_OK) {
      HttpClientResponse res;
      memset(&res, 0, sizeof res);
      curl_dl.easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res.status);
      res.header_names = (const char *const *)r->names;
      res.header_values = (const char *const *)r->values;
      res.nheaders = r->nheaders;
      res.body = r->response.data ? r->response.data : "";
      res.body_len = r->response.len;
      HttpClientDone done = r->done;
      void *arg = r->arg;
      /* The response lives until the request is freed, after `done`. */
      r->done = NULL;
      done(arg, &res, NULL);
    } else {
      if (result == CURLE_OPERATION_TIMEDOUT)
        snprintf(err, sizeof err, "timed out after %ld ms", r->timeout_ms);
      else if (r->too_large)
        snprintf(err, sizeof err, "response larger than %u bytes",
                 HTTP_CLIENT_MAX_RESPONSE);
      else
        snprintf(err, sizeof err, "%s",
                 r->error[0] ? r->error : curl_dl.easy_strerror(result));
      r->done(r->arg, NULL, err);
    }
    request_free(r);
  }
}

HttpClientRequest *http_client_request(HttpClient *c,
                                       const HttpClientOptions *o,
                                       HttpClientDone done, void *arg,
                                       char *err, size_t errlen) {
  if (strncmp(o->url, "http://", 7) != 0 &&
      strncmp(o->url, "https://", 8) != 0) {
    snprintf(err, errlen, "the url must start with http:// or https://");
    return NULL;
  }
  HttpClientRequest *r = xcalloc(1, sizeof *r);
  r->client = c;
  r->done = done;
  r->arg = arg;
  r->timeout_ms =
      o->timeout_ms > 0 ? o->timeout_ms : HTTP_CLIENT_DEFAULT_TIMEOUT_MS;
  if (r->timeout_ms > HTTP_CLIENT_MAX_TIMEOUT_MS)
    r->timeout_ms = HTTP_CLIENT_MAX_TIMEOUT_MS;
  CURL *e = r->easy = curl_dl.easy_init();
  if (!e) {
    free(r);
    snprintf(err, errlen, "cannot create a request");
    return NULL;
  }
  curl_dl.easy_setopt(e, CURLOPT_URL, o->url);
  curl_dl.easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_dl.easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_dl.easy_setopt(e, CURLOPT_TIMEOUT_MS, r->timeout_ms);
  curl_dl.easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, r->timeout_ms);
  curl_dl.easy_setopt(e, CURLOPT_ERRORBUFFER, r->error);
  curl_dl.easy_setopt(e, CURLOPT_PRIVATE, r);
  curl_dl.easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_dl.easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_dl.easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_dl.easy_setopt(e, CURLOPT_HEADERDATA, r);
  curl_dl.easy_setopt(e, CURLOPT_USERAGENT, "restockd/" RESTOCKD_VERSION);
  curl_dl.easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* what curl supports */
  if (c->ca_file) curl_dl.easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
  const char *method = o->method ? o->method : "GET";
  if (o->body) {
    const char *body = o->body;
    if (!o->body_borrowed) {
      r->body = xmalloc(o->body_len + 1);
      memcpy(r->body, o->body, o->body_len);
      body = r->body;
    }
    curl_dl.easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                        (curl_off_t)o->body_len);
    curl_dl.easy_setopt(e, CURLOPT_POSTFIELDS, body);
  }
  if (strcmp(method, "GET") == 0 && !o->body)
    curl_dl.easy_setopt(e, CURLOPT_HTTPGET, 1L);
  else if (strcmp(method, "HEAD") == 0)
    curl_dl.easy_setopt(e, CURLOPT_NOBODY, 1L);
  else if (strcmp(method, "POST") != 0 || !o->body)
    curl_dl.easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  for (size_t i = 0; i < o->nheaders; i++)
    r->headers = curl_dl.slist_append(r->headers, o->headers[i]);
  /* No "Expect: 100-continue" round trip for larger bodies. */
  r->headers = curl_dl.slist_append(r->headers, "Expect:");
  curl_dl.easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);

  r->next = c->requests;
  if (c->requests) c->requests->prev = r;
  c->requests = r;
  if (curl_dl.multi_add_handle(c->multi, e) != CURLM_OK) {
    r->done = NULL;
    request_free(r);
    snprintf(err, errlen, "cannot start the request");
    return NULL;
  }
  return r;
}

void http_client_cancel(HttpClientRequest *r) { request_free(r); }
