/* The small HTML pages restockd answers a shopper's browser with (a plain
 * form's subscribe, the confirm and unsubscribe links, the shopper's own
 * page): plain HTML and inline CSS, no script, no external request,
 * readable on a phone. Their words are not here but in web/texts/LANG.txt,
 * compiled in: a translation is a file. A page is in the first language of
 * the request's Accept-Language that has one, else English. */
#ifndef RESTOCKD_PAGES_H
#define RESTOCKD_PAGES_H

#include <stdbool.h>

#include "buf.h"
#include "http.h"

typedef enum {
  PAGE_SUBSCRIBED, /* detail: the email */
  PAGE_PENDING,    /* detail: the email */
  PAGE_CONFIRMED,
  PAGE_CONFIRM_GONE,
  PAGE_UNSUBSCRIBED,
  PAGE_BAD_TOKEN,
  PAGE_FAILED, /* detail: the server's message */
} PageKind;

/* True when the request asks for HTML first (a browser): its Accept header
 * lists text/html before any other type. */
bool pages_wanted(const HttpRequest *req);
/* Answers `req` with the page `kind`; `detail` (may be NULL) is shown
 * escaped. `back` (may be NULL) is a link shown under it. */
void pages_respond(HttpRequest *req, int status, PageKind kind,
                   const char *detail, const char *back);
/* Answers a use-case's failure as a page, with its HTTP status. */
void pages_respond_failure(HttpRequest *req, int status, const char *message);

/* The shopper's own page, built row by row: pages_mine_begin, then
 * pages_mine_row for each alert, then pages_mine_end, which answers. The
 * language is chosen from `req`'s Accept-Language. */
typedef struct {
  Buf b;
  const char *lang;
  int rows;
} MinePage;
void pages_mine_begin(MinePage *p, const HttpRequest *req, const char *email);
void pages_mine_row(MinePage *p, const char *variant_title, const char *since,
                    long long quantity, bool pending,
                    const char *unsubscribe_token, const char *manage_token);
void pages_mine_end(MinePage *p, HttpRequest *req);
/* Frees a page not answered. */
void pages_mine_free(MinePage *p);

/* A word of language `lang` (the English one when missing); never NULL. */
const char *pages_text(const char *lang, const char *key);
/* The language of the page for `req`. */
const char *pages_lang(const HttpRequest *req);

#endif
