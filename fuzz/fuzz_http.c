/* The request path in-process: the input's bytes are what one client sends
 * on one connection to http.c's server, on a real libuv loop over loopback
 * TCP, with llhttp parsing, pipelining, limits, back-pressure, deferred
 * answers and closing all as in the server. The application behind it is
 * http_handler.h's (a router-and-url stand-in; see there).
 *
 * For each input the harness connects, writes the input, shuts its side
 * down, reads every answer until the server closes, then runs the loop
 * until the server holds no connection and the application owes nothing.
 * Every answer must be a well-formed HTTP/1.1 status line; sanitizers and
 * leaks do the rest. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "http_handler.h"
#include "log.h"

static uv_loop_t loop;
static HttpServer *server;
static void *app;
static struct sockaddr_in server_addr;

typedef struct {
  uv_poll_t poll;
  int fd;
  const uint8_t *data;
  size_t size, sent;
  bool done, closed;
  char head[16]; /* the first bytes answered */
  size_t head_len;
} Client;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  log_set_level(LOG_ERROR);
  uv_loop_init(&loop);
  HttpConfig cfg;
  http_config_defaults(&cfg);
  cfg.host = "127.0.0.1";
  cfg.port = 0;
  /* Limits a fuzz input can reach; a stuck connection fails the run on
   * libFuzzer's -timeout long before this closes it. */
  cfg.idle_timeout_ms = 30000;
  cfg.max_body = 4096;
  cfg.max_header_bytes = 2048;
  cfg.max_headers = 20;
  HttpHandler handler;
  fuzz_http_setup(&loop, &handler, &app);
  char *err = NULL;
  if (http_server_start(&loop, &cfg, handler, app, &server, &err) != 0) {
    fprintf(stderr, "fuzz_http: %s\n", err);
    exit(1);
  }
  fuzz_http_started(server, app);
  const char *addr = http_server_address(server);
  const char *colon = strrchr(addr, ':');
  memset(&server_addr, 0, sizeof server_addr);
  server_addr.sin_family = AF_INET;
  server_addr.sin_port = htons((uint16_t)atoi(colon + 1));
  inet_pton(AF_INET, "127.0.0.1", &server_addr.sin_addr);
  return 0;
}

static void on_poll_close(uv_handle_t *h) {
  Client *c = h->data;
  c->closed = true;
}

static void on_poll(uv_poll_t *p, int status, int events) {
  Client *c = p->data;
  if (status < 0) {
    c->done = true;
    return;
  }
  if ((events & UV_WRITABLE) && c->sent < c->size) {
    ssize_t n = send(c->fd, c->data + c->sent, c->size - c->sent, MSG_NOSIGNAL);
    if (n > 0) c->sent += (size_t)n;
    if (n < 0 && errno != EAGAIN && errno != EINTR) c->sent = c->size;
  }
  if (c->sent == c->size && (events & UV_WRITABLE)) {
    shutdown(c->fd, SHUT_WR);
    uv_poll_start(p, UV_READABLE, on_poll);
  }
  if (events & UV_READABLE) {
    char buf[65536];
    for (;;) {
      ssize_t n = recv(c->fd, buf, sizeof buf, 0);
      if (n > 0) {
        size_t take = sizeof c->head - c->head_len;
        if ((size_t)n < take) take = (size_t)n;
        memcpy(c->head + c->head_len, buf, take);
        c->head_len += take;
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EINTR)) c->done = true;
      break;
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Client c = {.data = data, .size = size};
  c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  FUZZ_CHECK(c.fd >= 0);
  int rc = connect(c.fd, (struct sockaddr *)&server_addr, sizeof server_addr);
  FUZZ_CHECK(rc == 0 || errno == EINPROGRESS);
  uv_poll_init_socket(&loop, &c.poll, c.fd);
  c.poll.data = &c;
  uv_poll_start(&c.poll, UV_READABLE | UV_WRITABLE, on_poll);
  while (!c.done) uv_run(&loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&c.poll, on_poll_close);
  while (!c.closed) uv_run(&loop, UV_RUN_ONCE);
  close(c.fd);
  /* The server notices the close; the application finishes its work. */
  while (http_server_connections(server) > 0 || fuzz_http_busy(app))
    uv_run(&loop, UV_RUN_ONCE);
  /* Whatever was answered starts like an answer. An empty input, or one
   * the server closed on without a word (none: every failure is answered),
   * may get nothing. */
  if (c.head_len > 0) {
    FUZZ_CHECK(c.head_len >= 12 && memcmp(c.head, "HTTP/1.1 ", 9) == 0);
    FUZZ_CHECK(c.head[9] >= '1' && c.head[9] <= '5');
  }
  return 0;
}
