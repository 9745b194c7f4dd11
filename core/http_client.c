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
  /* SMTP transfers (http_client_smtp): the recipients, the message being
   * uploaded and how much of it curl has read, and the server's last
   * reply line. */
  SmtpDone smtp_done;
  struct curl_slist *rcpt;
  const char *upload;
  size_t upload_len, upload_off;
  char reply[SMTP_REPLY_MAX];  /* the last reply line */
  char failed[SMTP_REPLY_MAX]; /* the last 4xx or 5xx reply line */
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
  curl_dl.slist_free_all(r->rcpt);
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

/* Reports an SMTP transfer's outcome: the last reply code and line, and
 * on failure why. */
static void smtp_finish(HttpClientRequest *r, CURLcode result) {
  long code = 0;
  curl_dl.easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
  char err[CURL_ERROR_SIZE + 64];
  const char *why = NULL;
  if (result == CURLE_OPERATION_TIMEDOUT) {
    snprintf(err, sizeof err, "timed out after %ld ms", r->timeout_ms);
    why = err;
  } else if (result != CURLE_OK) {
    snprintf(err, sizeof err, "%s",
             r->error[0] ? r->error : curl_dl.easy_strerror(result));
    why = err;
  }
  /* After a refusal curl says QUIT, and the server's "221 Bye" is the
   * last reply: the refusal is what the caller needs to see. */
  const char *reply = r->reply;
  if (why && r->failed[0]) {
    reply = r->failed;
    code = strtol(r->failed, NULL, 10);
  }
  r->smtp_done(r->arg, code, reply, why);
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
    if (r->smtp_done) {
      smtp_finish(r, result);
    } else if (result == CURLE_OK) {
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

/* CURLOPT_READFUNCTION of an SMTP upload: the next piece of the message.
 * curl stuffs dots and adds the final CRLF.CRLF itself. */
static size_t on_smtp_read(char *dst, size_t size, size_t n, void *userp) {
  HttpClientRequest *r = userp;
  size_t room = size * n, left = r->upload_len - r->upload_off;
  size_t len = left < room ? left : room;
  memcpy(dst, r->upload + r->upload_off, len);
  r->upload_off += len;
  return len;
}

/* CURLOPT_HEADERFUNCTION of an SMTP transfer: curl passes every reply line
 * of the server here. The last one that starts with a code is kept, and
 * the last refusal apart, so a failure can say what the server said
 * ("451 4.7.1 Try again later"). */
static size_t on_smtp_reply(char *data, size_t size, size_t n, void *userp) {
  HttpClientRequest *r = userp;
  size_t total = size * n, len = total;
  if (len < 3 || data[0] < '2' || data[0] > '5' || data[1] < '0' ||
      data[1] > '9' || data[2] < '0' || data[2] > '9')
    return total;
  while (len && (data[len - 1] == '\r' || data[len - 1] == '\n')) len--;
  if (len >= sizeof r->reply) len = sizeof r->reply - 1;
  /* Only printable bytes reach a log line or an error. */
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)data[i];
    r->reply[i] = c >= 32 && c < 127 ? (char)c : '?';
  }
  r->reply[len] = '\0';
  if (data[0] == '4' || data[0] == '5') memcpy(r->failed, r->reply, len + 1);
  return total;
}

HttpClientRequest *http_client_smtp(HttpClient *c, const SmtpOptions *o,
                                    SmtpDone done, void *arg, char *err,
                                    size_t errlen) {
  if (strncmp(o->url, "smtp://", 7) != 0 &&
      strncmp(o->url, "smtps://", 8) != 0) {
    snprintf(err, errlen, "the url must start with smtp:// or smtps://");
    return NULL;
  }
  HttpClientRequest *r = xcalloc(1, sizeof *r);
  r->client = c;
  r->smtp_done = done;
  r->arg = arg;
  r->timeout_ms =
      o->timeout_ms > 0 ? o->timeout_ms : HTTP_CLIENT_DEFAULT_TIMEOUT_MS;
  if (r->timeout_ms > HTTP_CLIENT_MAX_TIMEOUT_MS)
    r->timeout_ms = HTTP_CLIENT_MAX_TIMEOUT_MS;
  CURL *e = r->easy = curl_dl.easy_init();
  if (!e) {
    free(r);
    snprintf(err, errlen, "cannot create a transfer");
    return NULL;
  }
  if (o->message_borrowed) {
    r->upload = o->message;
  } else {
    r->body = xmalloc(o->message_len + 1);
    memcpy(r->body, o->message, o->message_len);
    r->upload = r->body;
  }
  r->upload_len = o->message_len;
  for (size_t i = 0; i < o->nrcpt; i++)
    r->rcpt = curl_dl.slist_append(r->rcpt, o->rcpt[i]);
  curl_dl.easy_setopt(e, CURLOPT_URL, o->url);
  curl_dl.easy_setopt(e, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  /* STARTTLS when the server offers it, or always (tls = "required");
   * smtps:// is TLS from the first byte either way. */
  curl_dl.easy_setopt(e, CURLOPT_USE_SSL,
                      (long)(o->require_tls ? CURLUSESSL_ALL : CURLUSESSL_TRY));
  curl_dl.easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_dl.easy_setopt(e, CURLOPT_TIMEOUT_MS, r->timeout_ms);
  curl_dl.easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, r->timeout_ms);
  curl_dl.easy_setopt(e, CURLOPT_ERRORBUFFER, r->error);
  curl_dl.easy_setopt(e, CURLOPT_PRIVATE, r);
  curl_dl.easy_setopt(e, CURLOPT_HEADERFUNCTION, on_smtp_reply);
  curl_dl.easy_setopt(e, CURLOPT_HEADERDATA, r);
  curl_dl.easy_setopt(e, CURLOPT_MAIL_FROM, o->mail_from);
  curl_dl.easy_setopt(e, CURLOPT_MAIL_RCPT, r->rcpt);
  curl_dl.easy_setopt(e, CURLOPT_UPLOAD, 1L);
  curl_dl.easy_setopt(e, CURLOPT_READFUNCTION, on_smtp_read);
  curl_dl.easy_setopt(e, CURLOPT_READDATA, r);
  curl_dl.easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)o->message_len);
  if (o->username) curl_dl.easy_setopt(e, CURLOPT_USERNAME, o->username);
  if (o->password) curl_dl.easy_setopt(e, CURLOPT_PASSWORD, o->password);
  if (c->ca_file) curl_dl.easy_setopt(e, CURLOPT_CAINFO, c->ca_file);

  r->next = c->requests;
  if (c->requests) c->requests->prev = r;
  c->requests = r;
  if (curl_dl.multi_add_handle(c->multi, e) != CURLM_OK) {
    r->smtp_done = NULL;
    request_free(r);
    snprintf(err, errlen, "cannot start the transfer");
    return NULL;
  }
  return r;
}
