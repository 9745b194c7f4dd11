/* The small HTML pages restockd answers a browser with (a plain form's
 * subscribe, an unsubscribe link): plain HTML and inline CSS, no script,
 * no external request, readable on a phone. Every text a page shows is in
 * one table in pages.c, so that its wording is in one place. */
#ifndef RESTOCKD_PAGES_H
#define RESTOCKD_PAGES_H

#include <stdbool.h>

#include "http.h"

typedef enum {
  PAGE_SUBSCRIBED,   /* detail: the email */
  PAGE_UNSUBSCRIBED,
  PAGE_BAD_TOKEN,
  PAGE_FAILED, /* detail: the server's message */
} PageKind;

/* True when the request asks for HTML first (a browser): its Accept header
 * lists text/html before any other type. */
bool pages_wanted(const HttpRequest *req);
/* Answers `req` with the page `kind`; `detail` (may be NULL) is shown
 * escaped. */
void pages_respond(HttpRequest *req, int status, PageKind kind,
                   const char *detail);
/* Answers a use-case's failure as a page, with its HTTP status. */
void pages_respond_failure(HttpRequest *req, int status, const char *message);

#endif
