#include "pages.h"

#include <string.h>
#include <strings.h>

#include "buf.h"
#include "domain.h"

static const struct {
  const char *title;
  const char *lead;
} texts[] = {
    [PAGE_SUBSCRIBED] = {"You're on the list",
                         "We'll email you as soon as it is back in stock:"},
    [PAGE_UNSUBSCRIBED] = {"Unsubscribed",
                           "You will not get an email about this product."},
    [PAGE_BAD_TOKEN] = {"This link does not work",
                        "It may be incomplete or out of date."},
    [PAGE_FAILED] = {"That did not work", ""},
};

bool pages_wanted(const HttpRequest *req) {
  const char *accept = http_header(req, "accept");
  if (!accept) return false;
  while (*accept == ' ') accept++;
  return strncasecmp(accept, "text/html", 9) == 0 &&
         (accept[9] == '\0' || accept[9] == ',' || accept[9] == ';' ||
          accept[9] == ' ');
}

/* Appends `s` with &, <, >, " and ' escaped. */
static void escaped(Buf *b, const char *s) {
  for (; *s; s++) {
    switch (*s) {
      case '&':
        buf_puts(b, "&amp;");
        break;
      case '<':
        buf_puts(b, "&lt;");
        break;
      case '>':
        buf_puts(b, "&gt;");
        break;
      case '"':
        buf_puts(b, "&quot;");
        break;
      case '\'':
        buf_puts(b, "&#39;");
        break;
      default:
        buf_append(b, s, 1);
    }
  }
}

void pages_respond(HttpRequest *req, int status, PageKind kind,
                   const char *detail) {
  Buf b = {0};
  buf_puts(&b,
           "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           "<meta name=\"viewport\" content=\"width=device-width, "
           "initial-scale=1\"><title>");
  escaped(&b, texts[kind].title);
  buf_puts(&b,
           "</title><style>body{font:16px/1.5 system-ui,sans-serif;"
           "max-width:32em;margin:3em auto;padding:0 1em;color:#222}"
           "h1{font-size:1.4em}</style></head><body><main><h1>");
  escaped(&b, texts[kind].title);
  buf_puts(&b, "</h1><p>");
  escaped(&b, texts[kind].lead);
  if (detail) {
    buf_puts(&b, " <strong>");
    escaped(&b, detail);
    buf_puts(&b, "</strong>");
  }
  buf_puts(&b, "</p></main></body></html>\n");
  http_add_header(req, "Content-Security-Policy",
                  "default-src 'none'; style-src 'unsafe-inline'");
  http_respond(req, status, "text/html; charset=utf-8", b.data, b.len);
  buf_free(&b);
}

void pages_respond_failure(HttpRequest *req, int status, const char *message) {
  const char *type;
  int code = domain_http_status(status, &type);
  pages_respond(req, code, PAGE_FAILED,
                message && *message
                    ? message
                    : "The server could not do it just now; please try again.");
}
