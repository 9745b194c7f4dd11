/* The files restockd serves to browsers: the storefront widget
 * (GET /widget.js) and the console's page, script and style sheet
 * (GET /admin/...). They are the files of web/, compiled into the binary by
 * core/embed_web.sh, so an installed restockd needs nothing beside itself
 * and the console makes no request anywhere else. */
#ifndef RESTOCKD_WEB_H
#define RESTOCKD_WEB_H

#include <stddef.h>

#include "http.h"

typedef struct {
  const char *name; /* "widget.js" */
  const char *content_type;
  const unsigned char *data;
  size_t len;
  const unsigned char *gz; /* the same, gzipped */
  size_t gz_len;
  const char *etag; /* quoted, of the bytes as they are */
  const char *gz_etag;
} WebAsset;

/* Every file, ended by an entry whose name is NULL. */
extern const WebAsset web_assets[];

/* The file named `name`, or NULL. */
const WebAsset *web_asset(const char *name);

typedef enum {
  WEB_STOREFRONT, /* cached by anyone, loaded from any origin */
  WEB_CONSOLE,    /* revalidated each time; a strict policy; never framed */
} WebAudience;

/* Answers `req` with `a`: gzipped when the client accepts it, with its
 * ETag, and 304 without a body when If-None-Match names it. */
void web_serve(HttpRequest *req, const WebAsset *a, WebAudience audience);
/* Adds the console's security headers (its Content-Security-Policy,
 * X-Frame-Options and the like) to an answer. */
void web_console_headers(HttpRequest *req);

#endif
