#include "web.h"

#include <string.h>
#include <strings.h>

/* The console's policy: its own script and style sheet, requests to its own
 * origin, nothing inline, nothing from elsewhere, never in a frame. */
#define CONSOLE_CSP                                                   \
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src " \
  "'self'; connect-src 'self'; form-action 'self'; frame-ancestors "  \
  "'none'; base-uri 'none'"

const WebAsset *web_asset(const char *name) {
  for (const WebAsset *a = web_assets; a->name; a++)
    if (strcmp(a->name, name) == 0) return a;
  return NULL;
}

/* True when the Accept-Encoding header lists gzip without refusing it
 * (q=0). */
static bool accepts_gzip(const char *h) {
  for (const char *p = h; p && *p;) {
    while (*p == ' ' || *p == ',') p++;
    size_t n = strcspn(p, ",");
    size_t name = strcspn(p, " ;,");
    if (name == 4 && strncasecmp(p, "gzip", 4) == 0) {
      const char *q = p + name;
      const char *end = p + n;
      const char *qv = NULL;
      for (const char *s = q; s + 2 <= end; s++)
        if ((s[0] == 'q' || s[0] == 'Q') && s[1] == '=') qv = s + 2;
      if (!qv) return true;
      /* "q=0", "q=0.0", "q=0.000" refuse it; anything else accepts. */
      while (qv < end && (*qv == '0' || *qv == '.')) qv++;
      return qv < end && *qv >= '1' && *qv <= '9';
    }
    p += n;
  }
  return false;
}

/* True when If-None-Match (a list of entity tags, or "*") names `etag`,
 * by the weak comparison RFC 9110 prescribes for it. */
static bool etag_matches(const char *h, const char *etag) {
  size_t elen = strlen(etag);
  for (const char *p = h; p && *p;) {
    while (*p == ' ' || *p == ',' || *p == '\t') p++;
    if (*p == '*') return true;
    if (strncmp(p, "W/", 2) == 0) p += 2;
    size_t n = strcspn(p, ", \t");
    if (n == elen && memcmp(p, etag, n) == 0) return true;
    p += n;
  }
  return false;
}

void web_console_headers(HttpRequest *req) {
  http_add_header(req, "Content-Security-Policy", CONSOLE_CSP);
  http_add_header(req, "X-Frame-Options", "DENY");
  http_add_header(req, "X-Content-Type-Options", "nosniff");
  http_add_header(req, "Referrer-Policy", "no-referrer");
}

void web_serve(HttpRequest *req, const WebAsset *a, WebAudience audience) {
  bool gz = accepts_gzip(http_header(req, "accept-encoding"));
  const char *etag = gz ? a->gz_etag : a->etag;
  http_add_header(req, "ETag", etag);
  http_add_header(req, "Vary", "Accept-Encoding");
  if (audience == WEB_STOREFRONT) {
    /* An hour in the shop's pages and caches, then one revalidation (a
     * 304) brings a new version. */
    http_add_header(req, "Cache-Control", "public, max-age=3600");
    /* A shop whose pages isolate themselves (COEP) may still load it. */
    http_add_header(req, "Cross-Origin-Resource-Policy", "cross-origin");
    http_add_header(req, "X-Content-Type-Options", "nosniff");
  } else {
    /* Revalidated each time: a new restockd shows its new console at once,
     * and an unchanged one costs a 304. */
    http_add_header(req, "Cache-Control", "no-cache");
    web_console_headers(req);
  }
  const char *inm = http_header(req, "if-none-match");
  if (inm && etag_matches(inm, etag)) {
    http_respond(req, 304, NULL, "", 0);
    return;
  }
  if (gz) http_add_header(req, "Content-Encoding", "gzip");
  http_respond(req, 200, a->content_type, (const char *)(gz ? a->gz : a->data),
               gz ? a->gz_len : a->len);
}
