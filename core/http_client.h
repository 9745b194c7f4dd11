/* Outbound HTTP(S) and SMTP for Lua handlers: libcurl's multi-socket interface
 * driven by the libuv loop. No thread per request and no blocking call: curl
 * tells us which sockets to watch and when to wake it, and the loop does the
 * waiting. Connections are reused through the multi handle's cache. */
#ifndef RESTOCKD_HTTP_CLIENT_H
#define RESTOCKD_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

typedef struct HttpClient HttpClient;
typedef struct HttpClientRequest HttpClientRequest;

/* Defaults and caps. */
#define HTTP_CLIENT_DEFAULT_TIMEOUT_MS 10000
#define HTTP_CLIENT_MAX_TIMEOUT_MS 600000
#define HTTP_CLIENT_MAX_RESPONSE (8u << 20)
/* Longest SMTP reply line kept for an error message. */
#define SMTP_REPLY_MAX 256

typedef struct {
  const char *method;         /* "GET" when NULL */
  const char *url;            /* http:// or https:// only */
  const char *const *headers; /* "Name: value" lines, `nheaders` of them */
  size_t nheaders;
  const char *body; /* may be NULL */
  size_t body_len;
  /* The body is not copied: the caller keeps it alive until the request
   * ends (its callback runs, or it is cancelled). */
  bool body_borrowed;
  long timeout_ms; /* whole request; 0: the default */
} HttpClientOptions;

typedef struct {
  long status;
  const char *const *header_names; /* lower-cased */
  const char *const *header_values;
  size_t nheaders;
  const char *body;
  size_t body_len;
} HttpClientResponse;

/* Called once per request: `res` on success (any HTTP status), or NULL and
 * `err` ("timed out after N ms", "connection refused", ...). */
typedef void (*HttpClientDone)(void *arg, const HttpClientResponse *res,
                               const char *err);

/* `ca_file`, if not NULL, replaces the system's CA bundle (RESTOCK_CA_FILE).
 * Returns NULL if libcurl cannot be initialized. */
HttpClient *http_client_new(uv_loop_t *loop, const char *ca_file);
/* Cancels every request (their callbacks are not called) and frees the
 * client once its handles have closed. */
void http_client_close(HttpClient *c);

/* Starts a request. Returns it, or NULL with a message in `err` (then `done`
 * is never called). `done` is never called before this returns. */
HttpClientRequest *http_client_request(HttpClient *c,
                                       const HttpClientOptions *opts,
                                       HttpClientDone done, void *arg,
                                       char *err, size_t errlen);
/* One mail to send over SMTP: the envelope and the message, already built
 * (mail.h), with CRLF line ends and no dot-stuffing (curl does that). */
typedef struct {
  const char *url;      /* smtp://host[:port][/ehlo-name] or smtps:// */
  const char *username; /* NULL: no AUTH */
  const char *password;
  bool require_tls; /* smtp://: fail unless STARTTLS works (else: try it) */
  const char *mail_from;   /* the envelope sender, "<addr>" */
  const char *const *rcpt; /* envelope recipients, "<addr>", `nrcpt` */
  size_t nrcpt;
  const char *message;
  size_t message_len;
  /* The message is not copied: the caller keeps it alive until the
   * transfer ends (its callback runs, or it is cancelled). */
  bool message_borrowed;
  long timeout_ms; /* the whole transfer; 0: the default */
} SmtpOptions;

/* Called once per transfer: `code` is the server's last reply code (0 if
 * it never answered) and `reply` its last reply line ("" if none); `err`
 * is NULL when the server took the message, else why not ("RCPT failed:
 * 550", "timed out after N ms", "Couldn't connect to server", ...). */
typedef void (*SmtpDone)(void *arg, long code, const char *reply,
                         const char *err);

/* Starts sending one mail on the client's multi handle, beside its HTTP
 * requests (connections to a server are reused the same way). Returns the
 * transfer, which http_client_cancel cancels, or NULL with a message in
 * `err` (then `done` is never called). `done` is never called before this
 * returns. */
HttpClientRequest *http_client_smtp(HttpClient *c, const SmtpOptions *opts,
                                    SmtpDone done, void *arg, char *err,
                                    size_t errlen);
/* Cancels a request in flight; its callback is never called. */
void http_client_cancel(HttpClientRequest *r);
/* Releases libcurl's global state, at exit. */
void http_client_global_cleanup(void);

#endif
