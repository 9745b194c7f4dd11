#include "pages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "domain.h"
#include "xmalloc.h"

typedef struct {
  const char *lang;
  const char *text;
} PageTextFile;
/* The files of web/texts/, compiled in (core/embed_texts.sh). */
extern const PageTextFile page_text_files[];

/* A language's words, parsed from its file on first use. The loop is the
 * only thread that answers requests. */
typedef struct {
  const char *lang;
  char **keys, **values;
  size_t n;
} Texts;

static Texts *texts;
static size_t ntexts;

static char *trimmed(const char *s, size_t len) {
  while (len && (*s == ' ' || *s == '\t')) s++, len--;
  while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r'))
    len--;
  return xstrndup(s, len);
}

static void load_texts(void) {
  if (texts) return;
  for (ntexts = 0; page_text_files[ntexts].lang; ntexts++) {
  }
  texts = xcalloc(ntexts ? ntexts : 1, sizeof *texts);
  for (size_t i = 0; i < ntexts; i++) {
    Texts *t = &texts[i];
    t->lang = page_text_files[i].lang;
    for (const char *line = page_text_files[i].text; *line;) {
      const char *end = strchr(line, '\n');
      if (!end) end = line + strlen(line);
      const char *eq = memchr(line, '=', (size_t)(end - line));
      if (line[0] != '#' && eq) {
        t->keys = xrealloc(t->keys, (t->n + 1) * sizeof *t->keys);
        t->values = xrealloc(t->values, (t->n + 1) * sizeof *t->values);
        t->keys[t->n] = trimmed(line, (size_t)(eq - line));
        t->values[t->n] = trimmed(eq + 1, (size_t)(end - eq - 1));
        t->n++;
      }
      line = *end ? end + 1 : end;
    }
  }
}

static const char *lookup(const Texts *t, const char *key) {
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->keys[i], key) == 0) return t->values[i];
  return NULL;
}

static const Texts *texts_of(const char *lang) {
  load_texts();
  for (size_t i = 0; i < ntexts; i++)
    if (strcasecmp(texts[i].lang, lang) == 0) return &texts[i];
  return NULL;
}

const char *pages_text(const char *lang, const char *key) {
  const Texts *t = texts_of(lang);
  const char *v = t ? lookup(t, key) : NULL;
  if (!v && (t = texts_of("en"))) v = lookup(t, key);
  return v ? v : key;
}

const char *pages_lang(const HttpRequest *req) {
  load_texts();
  const char *accept = http_header(req, "accept-language");
  /* The first listed language that has a file (q-values aside: browsers
   * list languages in the order of preference). "pt-BR" falls back to
   * "pt" when only that exists. */
  for (const char *p = accept; p && *p;) {
    while (*p == ' ' || *p == ',') p++;
    size_t len = strcspn(p, ",;");
    char tag[36];
    snprintf(tag, sizeof tag, "%.*s", (int)(len < 35 ? len : 35), p);
    char *sp = strchr(tag, ' ');
    if (sp) *sp = '\0';
    const Texts *t = texts_of(tag);
    if (t) return t->lang;
    char *dash = strchr(tag, '-');
    if (dash) {
      *dash = '\0';
      if ((t = texts_of(tag))) return t->lang;
    }
    p += len;
    while (*p && *p != ',') p++;
  }
  return "en";
}

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

/* Appends a text with its one %s replaced by `value`, both escaped. */
static void text_with(Buf *b, const char *text, const char *value) {
  const char *mark = strstr(text, "%s");
  if (!mark) {
    escaped(b, text);
    return;
  }
  char *head = xstrndup(text, (size_t)(mark - text));
  escaped(b, head);
  free(head);
  buf_puts(b, "<strong>");
  escaped(b, value ? value : "");
  buf_puts(b, "</strong>");
  escaped(b, mark + 2);
}

static const char *const page_keys[] = {
    [PAGE_SUBSCRIBED] = "subscribed",
    [PAGE_PENDING] = "pending",
    [PAGE_CONFIRMED] = "confirmed",
    [PAGE_CONFIRM_GONE] = "confirm_gone",
    [PAGE_UNSUBSCRIBED] = "unsubscribed",
    [PAGE_BAD_TOKEN] = "bad_token",
    [PAGE_FAILED] = "failed",
};

static void head(Buf *b, const char *lang, const char *title) {
  buf_puts(b, "<!doctype html>\n<html lang=\"");
  escaped(b, lang);
  buf_puts(b,
           "\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
           "content=\"width=device-width, initial-scale=1\"><title>");
  escaped(b, title);
  buf_puts(b,
           "</title><style>body{font:16px/1.5 system-ui,sans-serif;"
           "max-width:36em;margin:3em auto;padding:0 1em;color:#222}"
           "h1{font-size:1.4em}ul{list-style:none;padding:0}"
           "li{padding:.8em 0;border-bottom:1px solid #ddd;display:flex;"
           "flex-wrap:wrap;gap:.5em;align-items:center}"
           ".what{flex:1 1 14em}.meta{color:#555;font-size:.9em}"
           "button{font:inherit;padding:.4em .9em}form{margin:0}"
           "</style></head><body><main><h1>");
  escaped(b, title);
  buf_puts(b, "</h1>");
}

static void finish(HttpRequest *req, int status, Buf *b) {
  buf_puts(b, "</main></body></html>\n");
  /* No script, no frame, forms only to this server. */
  http_add_header(req, "Content-Security-Policy",
                  "default-src 'none'; style-src 'unsafe-inline'; "
                  "form-action 'self'; frame-ancestors 'none'");
  http_add_header(req, "X-Frame-Options", "DENY");
  http_add_header(req, "Cache-Control", "no-store");
  http_respond(req, status, "text/html; charset=utf-8", b->data, b->len);
  buf_free(b);
}

void pages_respond(HttpRequest *req, int status, PageKind kind,
                   const char *detail, const char *back) {
  const char *lang = pages_lang(req);
  char key[64];
  snprintf(key, sizeof key, "%s.title", page_keys[kind]);
  Buf b = {0};
  head(&b, lang, pages_text(lang, key));
  snprintf(key, sizeof key, "%s.lead", page_keys[kind]);
  buf_puts(&b, "<p>");
  text_with(&b, pages_text(lang, key), detail);
  buf_puts(&b, "</p>");
  if (back) {
    buf_puts(&b, "<p><a href=\"");
    escaped(&b, back);
    buf_puts(&b, "\">");
    escaped(&b, pages_text(lang, "mine.back"));
    buf_puts(&b, "</a></p>");
  }
  finish(req, status, &b);
}

void pages_respond_failure(HttpRequest *req, int status, const char *message) {
  const char *type;
  int code = domain_http_status(status, &type);
  pages_respond(
      req, code, PAGE_FAILED,
      message && *message ? message : pages_text(pages_lang(req), "try_later"),
      NULL);
}

void pages_mine_begin(MinePage *p, const HttpRequest *req, const char *email) {
  memset(p, 0, sizeof *p);
  p->lang = pages_lang(req);
  head(&p->b, p->lang, pages_text(p->lang, "mine.title"));
  buf_puts(&p->b, "<p>");
  text_with(&p->b, pages_text(p->lang, "mine.lead"), email);
  buf_puts(&p->b, "</p><ul>");
}

void pages_mine_row(MinePage *p, const char *variant_title, const char *since,
                    long long quantity, bool pending,
                    const char *unsubscribe_token, const char *manage_token) {
  Buf *b = &p->b;
  p->rows++;
  /* One block per alert, not a table row: it wraps on a phone. */
  buf_puts(b, "<li><div class=\"what\"><strong>");
  escaped(b, variant_title);
  buf_puts(b, "</strong><br><span class=\"meta\">");
  /* The date of the ISO timestamp is enough. */
  char day[11];
  snprintf(day, sizeof day, "%.10s", since ? since : "");
  escaped(b, pages_text(p->lang, "mine.since"));
  buf_puts(b, " ");
  escaped(b, day);
  if (quantity > 0) {
    buf_puts(b, " &middot; ");
    escaped(b, pages_text(p->lang, "mine.wants"));
    buf_printf(b, ": %lld", quantity);
  }
  buf_puts(b, " &middot; ");
  escaped(b, pages_text(p->lang, pending ? "mine.status.pending"
                                         : "mine.status.active"));
  /* A plain form: unsubscribing works without JavaScript. */
  buf_puts(b,
           "</span></div><form method=\"post\" "
           "action=\"unsubscribe\"><input type=\"hidden\" name=\"token\" "
           "value=\"");
  escaped(b, unsubscribe_token);
  buf_puts(b, "\"><input type=\"hidden\" name=\"manage\" value=\"");
  escaped(b, manage_token);
  buf_puts(b, "\"><button type=\"submit\">");
  escaped(b, pages_text(p->lang, "mine.unsubscribe"));
  buf_puts(b, "</button></form></li>");
}

void pages_mine_end(MinePage *p, HttpRequest *req) {
  buf_puts(&p->b, "</ul>");
  if (p->rows == 0) {
    buf_puts(&p->b, "<p>");
    escaped(&p->b, pages_text(p->lang, "mine.empty"));
    buf_puts(&p->b, "</p>");
  }
  finish(req, 200, &p->b);
}

void pages_mine_free(MinePage *p) { buf_free(&p->b); }
