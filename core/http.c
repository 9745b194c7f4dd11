#include "http.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "json_text.h"
#include "log.h"
#include "xmalloc.h"

/* How long a connection that we are closing keeps reading (and dropping)
 * what the client still sends, so that closing with unread data does not
 * turn into a reset that destroys our last response in flight. */
#define LINGER_MS 1000
/* Reading pauses while this much response data waits to be written, so that
 * a client that pipelines without reading cannot make us buffer without
 * bound. */
#define WRITE_HIGH_WATER (1u << 20)
#define WRITE_LOW_WATER (256u << 10)
/* The lines about connections refused or closed to make room are written
 * at most once per kind in this many ms, each counting what happened since
 * the last: a flood of connections must not become a flood of lines. */
#define REPORT_MS 2000
/* Connections accepted per readiness of the listener, so that a flood of
 * them cannot keep the loop from everything else. */
#define ACCEPT_BATCH 128

/* How long a listener out of descriptors, with no spare to refuse with,
 * waits before it tries again (when no connection closes first). */
#define ACCEPT_RETRY_MS 100

/* What a connection's deadline timer is timing. */
enum { DEADLINE_NONE, DEADLINE_HEAD, DEADLINE_BODY };

/* The kinds of rate-limited lines. */
enum { REPORT_EVICTED, REPORT_REFUSED, REPORT_ACCEPT, NREPORTS };

struct HttpConn {
  uv_tcp_t tcp;        /* tcp.data, timer.data, deadline.data point at us */
  uv_timer_t timer;    /* the idle timeout, then the end of lingering */
  uv_timer_t deadline; /* the request head's or body's, see DEADLINE_* */
  int deadline_kind;
  uv_shutdown_t shutdown;
  HttpServer *srv;
  HttpConn *prev, *next;
  llhttp_t parser;

  /* The request being parsed. */
  Buf url, field, value, body;
  HttpHeader *headers;
  size_t nheaders, cap_headers;
  size_t header_bytes;
  int error_status; /* 413 or 431 when a limit stopped the parse */
  bool in_message;
  bool keep_alive;

  /* Input read but not yet parsed: the rest of a read, kept while the
   * answers to its first requests wait to be written. */
  Buf in;
  /* Responses queued during one read, written with one uv_write. */
  Buf out;
  unsigned writes_pending;
  bool close_after_write; /* no more requests: close once written */
  bool lingering;         /* shut down; draining input until EOF */
  bool read_paused;       /* back-pressure from unwritten responses */
  size_t unsent_at_tick;  /* bytes queued to write at the last idle tick */
  bool held;              /* on the server's held list */
  HttpConn *next_held;
  HttpRequest *deferred; /* a request the handler answers later */
  /* A deferred request answered as a stream (http_stream_begin): its
   * producer, and whether it waits to be told the output drained. */
  bool streaming;
  bool stream_waiting;
  HttpStreamDrain drain;
  void *drain_arg;
  bool resuming; /* on the server's list of connections to read again */
  HttpConn *next_resuming;
  bool closing;
  int open_handles;
  /* The server's sequence number when the connection last started a
   * request or was answered: the lowest goes first when the table is full
   * (the one idle longest, or the slowest to send its request). */
  uint64_t since;
  char addr[64];
};

struct HttpServer {
  uv_loop_t *loop;
  /* The listening socket is ours, watched with a uv_poll, and accepted
   * with accept4 (on_listener): libuv's own accept loop closes connections
   * it has no descriptor for without telling us, and we want to log that,
   * and make room by closing an idle connection instead. */
  uv_poll_t listener;
  int listen_fd;
  int reserve_fd; /* a spare descriptor, given up to refuse when out */
  bool accept_paused;
  HttpConfig cfg;
  HttpHandler handler;
  HttpRejectHook on_reject;
  HttpAnswerHook on_answer;
  void *data;
  llhttp_settings_t settings;
  HttpConn *conns; /* open, not closing; newest first */
  size_t nlive;    /* connections on `conns` */
  size_t nconns;   /* connections not yet freed, closing ones included */
  uint64_t seq;    /* the clock of HttpConn.since */
  /* The rate-limited lines (report_note): what happened since each kind's
   * last line, and when that was. The timer writes what waits, and wakes
   * a paused listener. */
  uv_timer_t report;
  bool report_open;
  bool reported[NREPORTS];
  uint64_t reported_at[NREPORTS];
  uint64_t evicted, refused, accept_failures, fd_evicted, fd_dropped;
  int accept_errno;
  char address[96];
  char readbuf[64 * 1024];
  bool stopping;
  bool listener_closed;
  bool holding;
  HttpConn *held;   /* connections with responses waiting for a release */
  uv_idle_t resume; /* runs the connections of `resuming`, next turn */
  bool resume_open;
  HttpConn *resuming;
  void (*done)(void *);
  void *done_arg;
};

typedef struct {
  uv_write_t req;
  HttpConn *conn;
  char *data;
} WriteReq;

void http_config_defaults(HttpConfig *c) {
  memset(c, 0, sizeof *c);
  c->host = "127.0.0.1";
  c->port = 9000;
  c->idle_timeout_ms = 60000;
  c->header_timeout_ms = 10000;
  c->body_timeout_ms = 30000;
  c->max_connections = 1024;
  c->max_body = 1u << 20;
  c->max_header_bytes = 16u << 10;
  c->max_headers = 100;
}

static const char *status_text(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

/* The Date header's value, formatted at most once a second. */
static const char *http_date(void) {
  static time_t last;
  static char text[64];
  time_t now = time(NULL);
  if (now != last) {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    last = now;
  }
  return text;
}

/* ---- closing ---------------------------------------------------------- */

static void maybe_done(HttpServer *srv) {
  if (srv->stopping && srv->listener_closed && !srv->resume_open &&
      !srv->report_open && srv->nconns == 0 && srv->done) {
    void (*done)(void *) = srv->done;
    srv->done = NULL;
    done(srv->done_arg);
  }
}

static void free_headers(HttpConn *c) {
  for (size_t i = 0; i < c->nheaders; i++) {
    free(c->headers[i].name);
    free(c->headers[i].value);
  }
  c->nheaders = 0;
}

static void accept_resume(HttpServer *srv);

static void on_handle_close(uv_handle_t *h) {
  HttpConn *c = h->data;
  if (--c->open_handles > 0) return;
  HttpServer *srv = c->srv;
  free_headers(c);
  free(c->headers);
  buf_free(&c->url);
  buf_free(&c->field);
  buf_free(&c->value);
  buf_free(&c->body);
  buf_free(&c->in);
  buf_free(&c->out);
  free(c);
  srv->nconns--;
  /* Its descriptor is free again: accepting may go on. */
  accept_resume(srv);
  maybe_done(srv);
}

static void unhold(HttpConn *c) {
  if (!c->held) return;
  HttpConn **p = &c->srv->held;
  while (*p && *p != c) p = &(*p)->next_held;
  if (*p) *p = c->next_held;
  c->held = false;
  c->next_held = NULL;
}

static void conn_close(HttpConn *c) {
  if (c->closing) return;
  c->closing = true;
  unhold(c);
  if (c->deferred) {
    /* Its answer has nowhere to go; its headers are freed with us. A
     * stream's producer waiting for room learns it is gone. */
    if (c->streaming && c->stream_waiting) {
      c->stream_waiting = false;
      c->drain(c->drain_arg);
    }
    c->deferred->conn = NULL;
    c->deferred->headers = NULL;
    c->deferred->nheaders = 0;
    c->deferred = NULL;
  }
  if (c->resuming) {
    HttpConn **p = &c->srv->resuming;
    while (*p && *p != c) p = &(*p)->next_resuming;
    if (*p) *p = c->next_resuming;
    c->resuming = false;
  }
  if (c->prev)
    c->prev->next = c->next;
  else
    c->srv->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  c->srv->nlive--;
  uv_read_stop((uv_stream_t *)&c->tcp);
  /* This closes the descriptor now; the memory goes in the callbacks. */
  uv_close((uv_handle_t *)&c->tcp, on_handle_close);
  uv_close((uv_handle_t *)&c->timer, on_handle_close);
  uv_close((uv_handle_t *)&c->deadline, on_handle_close);
}

/* Bytes of this connection's answers not yet taken by the client: those
 * queued in libuv and those in the kernel's send queue. */
static size_t unsent_bytes(HttpConn *c) {
  size_t n = c->writes_pending
                 ? uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp)
                 : 0;
#ifdef SIOCOUTQ
  uv_os_fd_t fd;
  int queued = 0;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 &&
      ioctl(fd, SIOCOUTQ, &queued) == 0 && queued > 0)
    n += (size_t)queued;
#endif
  return n;
}

/* The idle timeout, or the end of lingering. A connection waiting for a
 * deferred answer is not idle. One still sending is idle only if its client
 * took none of the answer since the last tick: one slowly reading a large
 * answer is not cut off, one that stopped reading is. */
static void on_timer(uv_timer_t *t) {
  HttpConn *c = t->data;
  /* The server is working for it; a stream is idle only while its client
   * takes none of it. */
  if (c->deferred && !(c->streaming && unsent_bytes(c) > 0)) return;
  if (!c->lingering) {
    size_t unsent = unsent_bytes(c);
    if (unsent > 0 && unsent != c->unsent_at_tick) {
      c->unsent_at_tick = unsent; /* the timer repeats */
      return;
    }
    /* The client took every answer and the server has its next requests
     * still to parse (kept while those answers drained): the delay is the
     * server's, as when a loop turn ran long. */
    if (unsent == 0 && (c->resuming || c->in.len > 0)) return;
  }
  conn_close(c);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  HttpConn *c = req->handle->data;
  if (status < 0) conn_close(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf);

/* Everything has been written and no more requests will be read: send FIN,
 * then keep reading and dropping input until the client closes too, or for
 * LINGER_MS at most. */
static void conn_linger(HttpConn *c) {
  if (c->lingering || c->closing) return;
  c->lingering = true;
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
    conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, on_timer, LINGER_MS, 0);
}

/* ---- writing ---------------------------------------------------------- */

/* Back-pressure. A connection stops being read (and its input parsed) once
 * this much of its answers waits, and starts again below WRITE_LOW_WATER:
 * a client that pipelines requests for large answers without reading them
 * cannot make the server hold more than about WRITE_HIGH_WATER for it. */
static size_t output_waiting(HttpConn *c) {
  return c->out.len + uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
}

static void pause_reading(HttpConn *c) {
  c->read_paused = true;
  uv_read_stop((uv_stream_t *)&c->tcp);
}

static void on_resume(uv_idle_t *idle);

/* Queues a paused connection whose answers have drained to be read again on
 * the loop's next turn (not now: this may run inside a write callback or a
 * group commit, and the requests it parses must start a group of their
 * own). */
static void maybe_resume(HttpConn *c) {
  if (!c->read_paused || c->resuming || c->deferred || c->closing ||
      c->close_after_write || c->lingering || c->held || c->srv->stopping ||
      output_waiting(c) >= WRITE_LOW_WATER)
    return;
  c->resuming = true;
  c->next_resuming = c->srv->resuming;
  c->srv->resuming = c;
  uv_idle_start(&c->srv->resume, on_resume);
}

/* Tells a stream's waiting producer that its output has drained. */
static void stream_maybe_drain(HttpConn *c) {
  if (!c->streaming || !c->stream_waiting || c->closing || c->held ||
      output_waiting(c) >= WRITE_LOW_WATER)
    return;
  c->stream_waiting = false;
  c->drain(c->drain_arg);
}

static void on_write(uv_write_t *req, int status) {
  WriteReq *w = (WriteReq *)req;
  HttpConn *c = w->conn;
  free(w->data);
  free(w);
  c->writes_pending--;
  if (c->closing) return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  maybe_resume(c);
  stream_maybe_drain(c);
  if (c->close_after_write && c->writes_pending == 0 && !c->deferred)
    conn_linger(c);
}

static void conn_flush(HttpConn *c) {
  if (c->closing) return;
  if (c->srv->holding && c->out.len > 0) {
    if (!c->held) {
      c->held = true;
      c->next_held = c->srv->held;
      c->srv->held = c;
    }
    return;
  }
  if (c->out.len > 0) {
    /* Most answers fit in the socket buffer: write them now, keeping the
     * buffer for the next one. Only what the kernel does not take is queued
     * (after earlier queued writes, never before them). */
    size_t done = 0;
    if (c->writes_pending == 0) {
      uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
      int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
      if (n < 0 && n != UV_EAGAIN) {
        buf_reset(&c->out);
        conn_close(c);
        return;
      }
      if (n > 0) done = (size_t)n;
    }
    if (done == c->out.len) {
      buf_reset(&c->out);
    } else {
      WriteReq *w = xmalloc(sizeof *w);
      w->conn = c;
      size_t len = c->out.len - done;
      if (done) memmove(c->out.data, c->out.data + done, len);
      c->out.len = len;
      w->data = buf_steal(&c->out);
      uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
      if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
        free(w->data);
        free(w);
        conn_close(c);
        return;
      }
      c->writes_pending++;
      if (!c->close_after_write && output_waiting(c) > WRITE_HIGH_WATER)
        pause_reading(c);
    }
  }
  if (c->close_after_write) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    /* A stream still being written closes at its end. */
    if (c->writes_pending == 0 && !c->deferred) conn_linger(c);
  } else {
    maybe_resume(c);
  }
  stream_maybe_drain(c);
}

/* Appends a complete response to the connection's output; with `chunked`,
 * only its head, the body following in chunks. */
static void conn_queue(HttpConn *c, int status, const char *content_type,
                       const char *extra_headers, const char *body, size_t len,
                       bool chunked) {
  if (!c->keep_alive || c->srv->stopping) c->close_after_write = true;
  c->since = ++c->srv->seq; /* idle from now on, unless more is pipelined */
  buf_printf(&c->out, "HTTP/1.1 %d %s\r\n", status, status_text(status));
  /* A 204 has no body, and says nothing of one; nor does a 304, whose
   * length would be that of the body it stands for. */
  if (chunked)
    buf_printf(&c->out, "Content-Type: %s\r\nTransfer-Encoding: chunked\r\n",
               content_type);
  else if (status != 204 && status != 304)
    buf_printf(&c->out, "Content-Type: %s\r\nContent-Length: %zu\r\n",
               content_type, len);
  buf_printf(&c->out,
             "Date: %s\r\n"
             "%s"
             "Connection: %s\r\n\r\n",
             http_date(), extra_headers ? extra_headers : "",
             c->close_after_write ? "close" : "keep-alive");
  buf_append(&c->out, body, len);
}

static void deadline_stop(HttpConn *c) {
  c->deadline_kind = DEADLINE_NONE;
  uv_timer_stop(&c->deadline);
}

/* Answers a request that could not be parsed, and closes. */
static void conn_fail(HttpConn *c, int status, const char *type,
                      const char *message) {
  deadline_stop(c);
  if (c->srv->on_reject) c->srv->on_reject(c->srv->data, status, c->addr);
  json_t *j = json_pack("{s:s, s:s}", "type", type, "message", message);
  char *body = json_text(j);
  c->keep_alive = false;
  conn_queue(c, status, "application/json", NULL, body, strlen(body), false);
  free(body);
  json_decref(j);
}

/* ---- deadlines -------------------------------------------------------- */

/* The idle timeout alone does not bound a request: every byte restarts it,
 * so a client sending one header byte a minute would hold its connection
 * for days (slowloris). A request head must therefore be complete within
 * header_timeout_ms of its first byte, and its body within body_timeout_ms
 * of the end of the head, however the bytes trickle in. Past it the client
 * is answered 408 and the connection closed (RFC 9110 section 15.5.9 asks
 * for "close"): a slow but honest client learns why, and the cost is one
 * small write. The time between requests is not under a deadline, only
 * the idle timeout: a keep-alive client may think as long as it likes. */

static void on_deadline(uv_timer_t *t);

static void deadline_start(HttpConn *c, int kind) {
  c->deadline_kind = kind;
  uv_timer_start(&c->deadline, on_deadline,
                 kind == DEADLINE_HEAD ? c->srv->cfg.header_timeout_ms
                                       : c->srv->cfg.body_timeout_ms,
                 0);
}

/* A request starts: its first byte arrived, or the parser began it. Only
 * the first call of a request counts. */
static void head_begins(HttpConn *c) {
  if (c->deadline_kind != DEADLINE_NONE) return;
  c->since = ++c->srv->seq;
  deadline_start(c, DEADLINE_HEAD);
}

static void on_deadline(uv_timer_t *t) {
  HttpConn *c = t->data;
  if (c->closing || c->lingering || c->close_after_write) return;
  if (c->read_paused || c->deferred) {
    /* We are not reading it (its answers wait, or the one before it is
     * being worked on): the delay is ours, not the client's. */
    deadline_start(c, c->deadline_kind);
    return;
  }
  conn_fail(c, 408, "invalid_data",
            c->deadline_kind == DEADLINE_HEAD
                ? "The request head was not received in time"
                : "The request body was not received in time");
  conn_flush(c);
}

/* ---- parsing ---------------------------------------------------------- */

static int over_header_limit(HttpConn *c, size_t more) {
  c->header_bytes += more;
  if (c->header_bytes > c->srv->cfg.max_header_bytes) {
    c->error_status = 431;
    return -1;
  }
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  HttpConn *c = p->data;
  buf_reset(&c->url);
  buf_reset(&c->field);
  buf_reset(&c->value);
  buf_reset(&c->body);
  free_headers(c);
  c->header_bytes = 0;
  c->error_status = 0;
  c->in_message = true;
  head_begins(c);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
  HttpConn *c = p->data;
  if (over_header_limit(c, len)) return -1;
  buf_append(&c->url, at, len);
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  HttpConn *c = p->data;
  if (over_header_limit(c, len)) return -1;
  buf_append(&c->field, at, len);
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  HttpConn *c = p->data;
  if (over_header_limit(c, len)) return -1;
  buf_append(&c->value, at, len);
  return 0;
}

static int on_header_value_complete(llhttp_t *p) {
  HttpConn *c = p->data;
  if (c->nheaders == c->srv->cfg.max_headers) {
    c->error_status = 431;
    return -1;
  }
  if (c->nheaders == c->cap_headers) {
    c->cap_headers = c->cap_headers ? c->cap_headers * 2 : 16;
    c->headers = xrealloc(c->headers, c->cap_headers * sizeof *c->headers);
  }
  HttpHeader *h = &c->headers[c->nheaders++];
  h->name = xstrndup(c->field.data ? c->field.data : "", c->field.len);
  for (char *q = h->name; *q; q++)
    if (*q >= 'A' && *q <= 'Z') *q = (char)(*q + 32);
  h->value = xstrndup(c->value.data ? c->value.data : "", c->value.len);
  buf_reset(&c->field);
  buf_reset(&c->value);
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  HttpConn *c = p->data;
  if ((p->flags & F_CONTENT_LENGTH) &&
      p->content_length > c->srv->cfg.max_body) {
    c->error_status = 413;
    return -1;
  }
  /* The body's own deadline (stopped at once if there is none). */
  deadline_start(c, DEADLINE_BODY);
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  HttpConn *c = p->data;
  if (c->body.len + len > c->srv->cfg.max_body) {
    c->error_status = 413;
    return -1;
  }
  buf_append(&c->body, at, len);
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  HttpConn *c = p->data;
  deadline_stop(c);
  /* An Upgrade (with "Connection: upgrade") or a CONNECT: llhttp would
   * take what follows as another protocol, and stop with
   * HPE_PAUSED_UPGRADE at its first byte. restockd upgrades nothing and
   * tunnels nothing, so it answers the request as an ordinary one (RFC 9110
   * section 7.8: a server may ignore Upgrade) and closes the connection
   * after the answer, reading nothing more from it. Keeping the connection
   * and parsing on would also be allowed, but a proxy in front that
   * believes the upgrade took place would then pass through as raw bytes
   * requests it never checked (WebSocket and h2c smuggling); after a close
   * nothing that follows is read at all. */
  c->keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
  c->in_message = false;
  /* Pausing hands control back to conn_feed, which runs the request before
   * parsing whatever the client pipelined after it. */
  return HPE_PAUSED;
}

/* ---- dispatch --------------------------------------------------------- */

/* The length of the "http://authority" or "https://authority" that starts
 * an absolute-form target (RFC 9112 section 3.2.2, which a server must
 * accept: proxies send it), or 0 for any other form. The scheme's letter
 * case does not matter; the authority ends at the path or the query. */
static size_t absolute_prefix(const char *t, size_t len) {
  size_t n;
  if (len >= 7 && strncasecmp(t, "http://", 7) == 0)
    n = 7;
  else if (len >= 8 && strncasecmp(t, "https://", 8) == 0)
    n = 8;
  else
    return 0;
  while (n < len && t[n] != '/' && t[n] != '?') n++;
  return n;
}

static void conn_dispatch(HttpConn *c) {
  HttpRequest req;
  memset(&req, 0, sizeof req);
  req.server = c->srv;
  req.conn = c;
  req.method = llhttp_method_name((llhttp_method_t)c->parser.method);
  const char *target = c->url.data ? c->url.data : "";
  size_t len = c->url.len;
  /* An absolute-form target is routed by its path and query; the host it
   * names is ours whatever it says, as the Host header is. */
  size_t skip = absolute_prefix(target, len);
  target += skip;
  len -= skip;
  const char *q = memchr(target, '?', len);
  req.path = target;
  req.path_len = q ? (size_t)(q - target) : len;
  if (q) {
    req.query = q + 1;
    req.query_len = len - req.path_len - 1;
  }
  if (skip && req.path_len == 0) {
    req.path = "/"; /* "http://host" and "http://host?q" mean "/" */
    req.path_len = 1;
  }
  req.headers = c->headers;
  req.nheaders = c->nheaders;
  req.body = c->body.data ? c->body.data : "";
  req.body_len = c->body.len;
  req.client_addr = c->addr;
  req.start_ns = uv_hrtime();

  c->srv->handler(&req, c->srv->data);
  if (c->deferred) return; /* answered later; the headers stay until then */
  if (!req.status) {
    log_error("http: %s %.*s: the handler gave no response", req.method,
              (int)req.path_len, req.path);
    http_respond_error(&req, 500, "unexpected_state", "No response");
  }
  router_match_free(&req.match);
  url_pairs_free(&req.params);
  buf_free(&req.extra_headers);
  free_headers(c);
}

/* Parses `len` bytes and runs each complete request, in order. */
static void conn_feed(HttpConn *c, const char *data, size_t len) {
  while (len > 0 && !c->close_after_write && !c->closing) {
    llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
    if (err == HPE_OK) return;
    if (err == HPE_PAUSED_UPGRADE) {
      /* The bytes after an Upgrade or CONNECT request, which was dispatched
       * when it completed (on_message_complete says why nothing after it
       * is read). Its answer closes the connection, so this is not reached;
       * should it be, the request is not run a second time. */
      c->keep_alive = false;
      c->close_after_write = true;
      return;
    }
    if (err == HPE_PAUSED) {
      const char *pos = llhttp_get_error_pos(&c->parser);
      size_t used = pos ? (size_t)(pos - data) : len;
      llhttp_resume(&c->parser);
      conn_dispatch(c);
      data += used;
      len -= used;
      /* A request answered later, or enough answers waiting: the rest is
       * parsed once that answer is given, or they are written. A deferred
       * request with nothing after it (the usual case: a client waits for
       * its answer) goes on being read: stopping and starting the socket
       * would cost two epoll_ctl calls a request, and on_read keeps what
       * arrives meanwhile. */
      if (c->deferred && len == 0) return;
      if (c->deferred || (len > 0 && output_waiting(c) >= WRITE_HIGH_WATER &&
                          !c->close_after_write && !c->closing)) {
        buf_append(&c->in, data, len);
        pause_reading(c);
        return;
      }
      continue;
    }
    switch (c->error_status) {
      case 413:
        conn_fail(c, 413, "payload_too_large",
                  "Request body is larger than the limit");
        break;
      case 431:
        conn_fail(c, 431, "invalid_data", "Request headers are too large");
        break;
      default:
        conn_fail(c, 400, "invalid_data", llhttp_get_error_reason(&c->parser));
    }
    return;
  }
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  HttpConn *c = h->data;
  /* One buffer serves every connection: on_read consumes it entirely before
   * the loop reads again. */
  buf->base = c->srv->readbuf;
  buf->len = sizeof c->srv->readbuf;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  HttpConn *c = s->data;
  if (nread < 0) {
    /* The client is done sending. Responses already queued still go out,
     * and so does the answer of a request being worked on. */
    if (nread == UV_EOF && c->deferred && !c->lingering) {
      c->close_after_write = true;
      uv_read_stop(s);
      return;
    }
    if (c->lingering || nread != UV_EOF || c->writes_pending == 0) {
      conn_close(c);
    } else {
      c->close_after_write = true;
      uv_read_stop(s);
    }
    return;
  }
  if (c->lingering) return; /* dropped */
  if (nread == 0) return;
  uv_timer_again(&c->timer);
  if (c->deferred) {
    /* Pipelined behind a request still being worked on: kept, unparsed,
     * until its answer is given (then on_resume parses it). */
    buf_append(&c->in, buf->base, (size_t)nread);
    pause_reading(c);
    return;
  }
  /* Bytes between requests start the next one's head deadline even when
   * llhttp skips them (the empty lines it allows before a request), so
   * that a client cannot hold its connection with a trickle of them. */
  if (!c->in_message) head_begins(c);
  conn_feed(c, buf->base, (size_t)nread);
  conn_flush(c);
}

/* Reads again the connections whose answers have drained: first what was
 * kept of their input, then the socket. */
static void on_resume(uv_idle_t *idle) {
  HttpServer *srv = idle->data;
  HttpConn *list = srv->resuming;
  srv->resuming = NULL;
  uv_idle_stop(idle);
  while (list) {
    HttpConn *c = list;
    list = c->next_resuming;
    c->resuming = false;
    c->next_resuming = NULL;
    if (c->closing) continue;
    c->read_paused = false;
    if (c->in.len > 0) {
      Buf in = c->in;
      memset(&c->in, 0, sizeof c->in);
      conn_feed(c, in.data, in.len); /* may keep some again, and pause */
      buf_free(&in);
      conn_flush(c);
    }
    if (!c->read_paused && !c->closing && !c->close_after_write &&
        !c->lingering)
      uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  }
}

/* ---- reports ---------------------------------------------------------- */

/* Whether a kind has counts not yet written. */
static bool report_waits(const HttpServer *srv, int kind) {
  switch (kind) {
    case REPORT_EVICTED:
      return srv->evicted > 0;
    case REPORT_REFUSED:
      return srv->refused > 0;
    default:
      return srv->accept_failures > 0;
  }
}

/* Writes the line of a kind and clears its counts. */
static void report_write(HttpServer *srv, int kind) {
  unsigned limit = srv->cfg.max_connections;
  switch (kind) {
    case REPORT_EVICTED:
      log_warn(
          "http: at the limit of %u connections: closed %llu idle or slow "
          "connection(s) to admit new ones",
          limit, (unsigned long long)srv->evicted);
      srv->evicted = 0;
      break;
    case REPORT_REFUSED:
      log_warn(
          "http: at the limit of %u connections, all of them busy: "
          "refused %llu new connection(s) with 503",
          limit, (unsigned long long)srv->refused);
      srv->refused = 0;
      break;
    default: {
      int e = srv->accept_errno;
      const char *why = uv_strerror(uv_translate_sys_error(e));
      if (e == EMFILE || e == ENFILE)
        log_warn(
            "http: accept failed %llu time(s): %s; closed %llu idle or slow "
            "connection(s) to admit new ones, dropped %llu unanswered: "
            "raise the open-file limit (ulimit -n)",
            (unsigned long long)srv->accept_failures, why,
            (unsigned long long)srv->fd_evicted,
            (unsigned long long)srv->fd_dropped);
      else
        log_warn("http: accept failed %llu time(s): %s",
                 (unsigned long long)srv->accept_failures, why);
      srv->accept_failures = srv->fd_evicted = srv->fd_dropped = 0;
    }
  }
  srv->reported[kind] = true;
  srv->reported_at[kind] = uv_now(srv->loop);
}

static void on_report(uv_timer_t *t);

/* Starts the timer for the earliest line that waits, or for a retry of a
 * paused listener. */
static void report_arm(HttpServer *srv) {
  if (srv->stopping) return;
  uint64_t now = uv_now(srv->loop), due = UINT64_MAX;
  for (int k = 0; k < NREPORTS; k++)
    if (report_waits(srv, k) && srv->reported_at[k] + REPORT_MS < due)
      due = srv->reported_at[k] + REPORT_MS;
  if (srv->accept_paused && now + ACCEPT_RETRY_MS < due)
    due = now + ACCEPT_RETRY_MS;
  if (due == UINT64_MAX)
    uv_timer_stop(&srv->report);
  else
    uv_timer_start(&srv->report, on_report, due > now ? due - now : 0, 0);
}

/* Called once a count of `kind` has gone up. The first count after
 * REPORT_MS without a line of its kind is written at once; those that
 * follow within REPORT_MS wait for the timer, which writes them in one. */
static void report_note(HttpServer *srv, int kind) {
  uint64_t now = uv_now(srv->loop);
  if (!srv->reported[kind] || now - srv->reported_at[kind] >= REPORT_MS ||
      srv->stopping)
    report_write(srv, kind);
  report_arm(srv);
}

static void on_report(uv_timer_t *t) {
  HttpServer *srv = t->data;
  uint64_t now = uv_now(srv->loop);
  for (int k = 0; k < NREPORTS; k++)
    if (report_waits(srv, k) && now - srv->reported_at[k] >= REPORT_MS)
      report_write(srv, k);
  accept_resume(srv);
  report_arm(srv);
}

/* ---- accepting -------------------------------------------------------- */

/* The connection to close so that a new one may be served, or NULL. Only
 * those the server owes nothing can go: no request being handled, no
 * answer waiting to be written, no input waiting to be parsed. Of those,
 * the one whose `since` is oldest: idle the longest since its last answer,
 * or the slowest to send the request it began (its first byte is what
 * counts, not the last, which a slowloris client keeps fresh). Lingering
 * connections (answered, closing) go only when no other can: closing them
 * early may cut off the end of their last answer. The scan is linear, and
 * runs only while the table is full. */
static int evict_tier(const HttpConn *c) {
  if (c->deferred || c->writes_pending || c->out.len || c->in.len || c->held ||
      c->read_paused || c->resuming)
    return -1;
  if (c->lingering) return 1;
  if (c->close_after_write) return -1; /* about to linger */
  return 0;
}

static HttpConn *conn_victim(HttpServer *srv) {
  HttpConn *best = NULL;
  int best_tier = 2;
  for (HttpConn *c = srv->conns; c; c = c->next) {
    int tier = evict_tier(c);
    if (tier < 0) continue;
    if (tier < best_tier || (tier == best_tier && c->since < best->since)) {
      best = c;
      best_tier = tier;
    }
  }
  return best;
}

/* Whether `n` connections could be closed for newcomers. */
static bool can_evict(HttpServer *srv, size_t n) {
  for (HttpConn *c = srv->conns; c && n > 0; c = c->next)
    if (evict_tier(c) >= 0) n--;
  return n == 0;
}

/* Serves a newly accepted socket, `fd`, which it owns from now on. */
static void conn_open(HttpServer *srv, int fd) {
  /* At the limit, a newcomer takes the place of a connection that holds
   * one without being served: otherwise a flood of slow or silent
   * connections would keep every real client out. Only when all are busy
   * being served is it refused. */
  bool refuse = false;
  if (srv->nlive >= srv->cfg.max_connections) {
    /* More than one only when refused connections, still lingering, have
     * pushed the count past the limit. None is closed for nothing. */
    size_t need = srv->nlive - srv->cfg.max_connections + 1;
    if (can_evict(srv, need)) {
      for (; need > 0; need--) {
        conn_close(conn_victim(srv));
        srv->evicted++;
      }
      report_note(srv, REPORT_EVICTED);
    } else {
      refuse = true;
    }
  }
  HttpConn *c = xcalloc(1, sizeof *c);
  c->srv = srv;
  uv_tcp_init(srv->loop, &c->tcp);
  uv_timer_init(srv->loop, &c->timer);
  uv_timer_init(srv->loop, &c->deadline);
  c->tcp.data = c->timer.data = c->deadline.data = c;
  c->open_handles = 3;
  c->next = srv->conns;
  if (srv->conns) srv->conns->prev = c;
  srv->conns = c;
  srv->nlive++;
  srv->nconns++;
  c->since = ++srv->seq;
  if (uv_tcp_open(&c->tcp, fd) < 0) {
    close(fd);
    conn_close(c);
    return;
  }
  struct sockaddr_storage ss;
  int sslen = sizeof ss;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen) == 0) {
    if (ss.ss_family == AF_INET6)
      uv_ip6_name((struct sockaddr_in6 *)&ss, c->addr, sizeof c->addr);
    else
      uv_ip4_name((struct sockaddr_in *)&ss, c->addr, sizeof c->addr);
  }
  uv_tcp_nodelay(&c->tcp, 1);
  llhttp_init(&c->parser, HTTP_REQUEST, &srv->settings);
  c->parser.data = c;
  c->keep_alive = true;
  if (refuse) {
    srv->refused++;
    report_note(srv, REPORT_REFUSED);
    conn_fail(c, 503, "unexpected_state", "Too many open connections");
    conn_flush(c);
    return;
  }
  uv_timer_start(&c->timer, on_timer, srv->cfg.idle_timeout_ms,
                 srv->cfg.idle_timeout_ms);
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
    conn_close(c);
}

static void on_listener(uv_poll_t *p, int status, int events);

static void accept_resume(HttpServer *srv) {
  if (!srv->accept_paused || srv->stopping) return;
  srv->accept_paused = false;
  uv_poll_start(&srv->listener, UV_READABLE, on_listener);
}

/* accept failed for want of a descriptor (EMFILE: the process's limit,
 * ENFILE: the system's), which Linux says before it looks for a waiting
 * connection: there may be none. The spare descriptor tells: given up, it
 * makes room to accept one. A connection that came is served if closing an
 * idle or slow one frees a descriptor (which becomes the spare again), and
 * else is closed at once, so that its client learns now rather than time
 * out in the backlog, and the listener, still readable, does not make the
 * loop spin. Without a spare, accepting pauses until a connection closes,
 * or for ACCEPT_RETRY_MS. Returns true if it took a connection: accept
 * again. */
static bool out_of_descriptors(HttpServer *srv, int err) {
  if (srv->reserve_fd < 0) {
    uv_poll_stop(&srv->listener);
    srv->accept_paused = true;
    srv->accept_failures++;
    srv->accept_errno = err;
    report_note(srv, REPORT_ACCEPT);
    return false;
  }
  close(srv->reserve_fd);
  int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    /* None was waiting after all (or it left). */
    srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return false;
  }
  srv->accept_failures++;
  srv->accept_errno = err;
  HttpConn *victim = conn_victim(srv);
  if (victim) {
    conn_close(victim);
    srv->fd_evicted++;
    srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    conn_open(srv, fd);
  } else {
    close(fd);
    srv->fd_dropped++;
    srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
  report_note(srv, REPORT_ACCEPT);
  return true;
}

static void on_listener(uv_poll_t *p, int status, int events) {
  HttpServer *srv = p->data;
  if (status < 0) {
    log_warn("http: listener: %s", uv_strerror(status));
    return;
  }
  for (int i = 0; i < ACCEPT_BATCH && !srv->stopping && !srv->accept_paused;
       i++) {
    int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      conn_open(srv, fd);
    } else if (errno == EMFILE || errno == ENFILE) {
      if (!out_of_descriptors(srv, errno)) return;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return;
    } else if (errno != EINTR && errno != ECONNABORTED) {
      /* Lack of memory or buffers, or a firewall's EPERM: that client is
       * lost, the listener stays. */
      srv->accept_failures++;
      srv->accept_errno = errno;
      report_note(srv, REPORT_ACCEPT);
      return;
    }
  }
}

/* Makes the listening socket. Returns it, or a negative libuv error. */
static int listen_socket(const struct sockaddr *addr, socklen_t len) {
  int fd =
      socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return uv_translate_sys_error(errno);
  /* As libuv does: a restart may bind while old connections are in
   * TIME_WAIT. */
  int on = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0 ||
      bind(fd, addr, len) < 0 || listen(fd, 511) < 0) {
    int rc = uv_translate_sys_error(errno);
    close(fd);
    return rc;
  }
  return fd;
}

int http_server_start(uv_loop_t *loop, const HttpConfig *cfg,
                      HttpHandler handler, void *data, HttpServer **out,
                      char **err) {
  HttpServer *srv = xcalloc(1, sizeof *srv);
  srv->loop = loop;
  srv->cfg = *cfg;
  srv->handler = handler;
  srv->data = data;
  llhttp_settings_init(&srv->settings);
  srv->settings.on_message_begin = on_message_begin;
  srv->settings.on_url = on_url;
  srv->settings.on_header_field = on_header_field;
  srv->settings.on_header_value = on_header_value;
  srv->settings.on_header_value_complete = on_header_value_complete;
  srv->settings.on_headers_complete = on_headers_complete;
  srv->settings.on_body = on_body;
  srv->settings.on_message_complete = on_message_complete;

  struct sockaddr_storage addr;
  bool v6 = strchr(cfg->host, ':') != NULL;
  int rc = v6 ? uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&addr)
              : uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&addr);
  if (rc < 0) {
    *err =
        xasprintf("invalid listen address %s: %s", cfg->host, uv_strerror(rc));
    free(srv);
    return rc;
  }
  rc = listen_socket((struct sockaddr *)&addr, v6 ? sizeof(struct sockaddr_in6)
                                                  : sizeof(struct sockaddr_in));
  if (rc >= 0) {
    srv->listen_fd = rc;
    rc = uv_poll_init_socket(loop, &srv->listener, srv->listen_fd);
    if (rc < 0) close(srv->listen_fd);
  }
  if (rc < 0) {
    *err = xasprintf("cannot listen on %s port %d: %s", cfg->host, cfg->port,
                     uv_strerror(rc));
    free(srv);
    return rc;
  }
  srv->listener.data = srv;
  uv_poll_start(&srv->listener, UV_READABLE, on_listener);
  srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  uv_idle_init(loop, &srv->resume);
  srv->resume.data = srv;
  srv->resume_open = true;
  uv_timer_init(loop, &srv->report);
  srv->report.data = srv;
  srv->report_open = true;
  socklen_t len = sizeof addr;
  getsockname(srv->listen_fd, (struct sockaddr *)&addr, &len);
  char ip[64] = "";
  int port;
  if (addr.ss_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6 *)&addr, ip, sizeof ip);
    port = ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
    snprintf(srv->address, sizeof srv->address, "[%s]:%d", ip, port);
  } else {
    uv_ip4_name((struct sockaddr_in *)&addr, ip, sizeof ip);
    port = ntohs(((struct sockaddr_in *)&addr)->sin_port);
    snprintf(srv->address, sizeof srv->address, "%s:%d", ip, port);
  }
  *out = srv;
  return 0;
}

const char *http_server_address(const HttpServer *srv) { return srv->address; }

void http_server_on_reject(HttpServer *srv, HttpRejectHook hook) {
  srv->on_reject = hook;
}

void http_server_on_answer(HttpServer *srv, HttpAnswerHook hook) {
  srv->on_answer = hook;
}

size_t http_server_connections(const HttpServer *srv) { return srv->nconns; }

static void on_resume_close(uv_handle_t *h) {
  HttpServer *srv = h->data;
  srv->resume_open = false;
  maybe_done(srv);
}

static void on_listener_close(uv_handle_t *h) {
  HttpServer *srv = h->data;
  srv->listener_closed = true;
  maybe_done(srv);
}

static void on_report_close(uv_handle_t *h) {
  HttpServer *srv = h->data;
  srv->report_open = false;
  maybe_done(srv);
}

void http_server_stop(HttpServer *srv, void (*done)(void *), void *arg) {
  if (srv->stopping) return;
  srv->stopping = true;
  srv->done = done;
  srv->done_arg = arg;
  /* uv_close stops watching the socket at once, and never closes it. */
  uv_close((uv_handle_t *)&srv->listener, on_listener_close);
  close(srv->listen_fd);
  srv->listen_fd = -1;
  if (srv->reserve_fd >= 0) close(srv->reserve_fd);
  srv->reserve_fd = -1;
  /* What the timer had not written yet. */
  for (int k = 0; k < NREPORTS; k++)
    if (report_waits(srv, k)) report_write(srv, k);
  uv_close((uv_handle_t *)&srv->report, on_report_close);
  uv_close((uv_handle_t *)&srv->resume, on_resume_close);
  for (HttpConn *c = srv->conns, *next; c; c = next) {
    next = c->next;
    if (c->in_message || c->deferred)
      c->keep_alive = false; /* its response will say "close" */
    else if (c->writes_pending > 0)
      c->close_after_write = true;
    else
      conn_close(c);
  }
}

void http_server_close_all(HttpServer *srv) {
  for (HttpConn *c = srv->conns, *next; c; c = next) {
    next = c->next;
    conn_close(c);
  }
}

void http_server_free(HttpServer *srv) { free(srv); }

void http_server_hold(HttpServer *srv) { srv->holding = true; }

void http_server_release(HttpServer *srv, bool ok) {
  srv->holding = false;
  while (srv->held) {
    HttpConn *c = srv->held;
    srv->held = c->next_held;
    c->held = false;
    c->next_held = NULL;
    if (ok) {
      conn_flush(c);
    } else {
      buf_reset(&c->out);
      conn_close(c);
    }
  }
}

/* ---- responding ------------------------------------------------------- */

const char *http_header(const HttpRequest *req, const char *name) {
  for (size_t i = 0; i < req->nheaders; i++)
    if (strcmp(req->headers[i].name, name) == 0) return req->headers[i].value;
  return NULL;
}

void http_add_header(HttpRequest *req, const char *name, const char *value) {
  buf_printf(&req->extra_headers, "%s: %s\r\n", name, value);
}

/* Moves `req` to the heap; with `keep_body`, with a copy of its body. */
static HttpRequest *defer(HttpRequest *req, bool keep_body) {
  /* Deferred already (an admin request whose session was checked first):
   * it stays where it is. */
  if (req->deferred) return req;
  HttpConn *c = req->conn;
  HttpRequest *d = xmalloc(sizeof *d);
  *d = *req; /* takes over match, params and extra_headers */
  memset(&req->match, 0, sizeof req->match);
  memset(&req->params, 0, sizeof req->params);
  memset(&req->extra_headers, 0, sizeof req->extra_headers);
  /* Copies of what lives in the connection's parse buffers. */
  size_t m = strlen(req->method) + 1, a = strlen(req->client_addr) + 1;
  size_t b = keep_body ? req->body_len + 1 : 0;
  d->owned = xmalloc(m + req->path_len + 1 + req->query_len + 1 + a + b);
  char *p = d->owned;
  memcpy(p, req->method, m);
  d->method = p;
  p += m;
  memcpy(p, req->path, req->path_len);
  p[req->path_len] = '\0';
  d->path = p;
  p += req->path_len + 1;
  if (req->query) {
    memcpy(p, req->query, req->query_len);
    p[req->query_len] = '\0';
    d->query = p;
  }
  p += req->query_len + 1;
  memcpy(p, req->client_addr, a);
  d->client_addr = p;
  p += a;
  d->body = "";
  d->body_len = 0;
  if (keep_body) {
    memcpy(p, req->body, req->body_len);
    p[req->body_len] = '\0';
    d->body = p;
    d->body_len = req->body_len;
  }
  d->deferred = true;
  c->deferred = d;
  /* The handler's copy counts as answered: conn_dispatch adds nothing. */
  req->status = -1;
  return d;
}

HttpRequest *http_defer(HttpRequest *req) { return defer(req, false); }

HttpRequest *http_defer_with_body(HttpRequest *req) { return defer(req, true); }

/* Frees a deferred request once answered, and lets its connection go on. */
static void deferred_done(HttpRequest *d) {
  HttpConn *c = d->conn;
  router_match_free(&d->match);
  url_pairs_free(&d->params);
  buf_free(&d->extra_headers);
  free(d->owned);
  free(d);
  if (!c) return;
  c->deferred = NULL;
  free_headers(c);
  conn_flush(c); /* then maybe_resume parses what waited */
}

void http_respond(HttpRequest *req, int status, const char *content_type,
                  const char *body, size_t len) {
  if (req->status) {
    log_error("http: a second response to one request was dropped");
    return;
  }
  req->status = status;
  /* Counted and logged even when a deferred answer's client has left. */
  if (req->server->on_answer) req->server->on_answer(req->server->data, req);
  if (req->conn)
    conn_queue(req->conn, status, content_type, req->extra_headers.data, body,
               len, false);
  if (req->deferred) deferred_done(req);
}

/* ---- streams ---------------------------------------------------------- */

int http_stream_begin(HttpRequest *req, int status, const char *content_type,
                      HttpStreamDrain drain, void *arg) {
  HttpConn *c = req->conn;
  if (!req->deferred || req->status) return -1;
  req->status = status;
  if (req->server->on_answer) req->server->on_answer(req->server->data, req);
  if (!c) return -1;
  c->streaming = true;
  c->stream_waiting = false;
  c->drain = drain;
  c->drain_arg = arg;
  conn_queue(c, status, content_type, req->extra_headers.data, "", 0, true);
  conn_flush(c);
  return req->conn ? 0 : -1;
}

bool http_stream_gone(const HttpRequest *req) { return req->conn == NULL; }

bool http_stream_write(HttpRequest *req, const char *data, size_t len) {
  HttpConn *c = req->conn;
  if (!c || len == 0) return true;
  buf_printf(&c->out, "%zx\r\n", len);
  buf_append(&c->out, data, len);
  buf_puts(&c->out, "\r\n");
  conn_flush(c);
  if (!req->conn) return true; /* gone: the producer finds out */
  if (output_waiting(c) < WRITE_HIGH_WATER && !c->held) return true;
  c->stream_waiting = true;
  return false;
}

void http_stream_end(HttpRequest *req, bool ok) {
  HttpConn *c = req->conn;
  if (c) {
    c->streaming = c->stream_waiting = false;
    c->drain = NULL;
    if (ok) {
      buf_puts(&c->out, "0\r\n\r\n");
    } else {
      /* Cut short: the client sees a body without its last chunk, never
       * one that looks whole. */
      c->close_after_write = true;
    }
  }
  deferred_done(req);
}

void http_respond_json(HttpRequest *req, int status, json_t *body) {
  /* One scratch buffer for every answer: the loop is single-threaded and
   * http_respond copies the text before this returns. */
  static Buf text;
  buf_reset(&text);
  int rc = json_text_append(&text, body);
  json_decref(body);
  if (rc) {
    http_respond_error(req, 500, "unexpected_state",
                       "The answer could not be encoded as JSON");
    return;
  }
  http_respond(req, status, "application/json", text.data, text.len);
}

void http_respond_error(HttpRequest *req, int status, const char *type,
                        const char *fmt, ...) {
  char message[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  json_t *text = json_string(message);
  if (!text) {
    /* The message quotes input that is not UTF-8: keep its ASCII. */
    for (char *p = message; *p; p++)
      if ((unsigned char)*p >= 0x80) *p = '?';
    text = json_string(message);
  }
  json_t *body = json_object();
  json_object_set_new(body, "type", json_string(type));
  json_object_set_new(body, "message", text);
  http_respond_json(req, status, body);
}
