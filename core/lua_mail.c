/* restock.smtp.send, restock.url.encode and restock.url.form. */
#include "lua_mail.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/rand.h>

#include "buf.h"
#include "http_client.h"
#include "isotime.h"
#include "lua_host.h"
#include "mail.h"
#include "url.h"
#include "watchdog.h"
#include "xmalloc.h"

/* Most extra header fields of one mail. */
#define MAX_HEADERS 50

/* ---- restock.smtp.send ----------------------------------------------------
 */

typedef struct {
  LuaTask *task;
  HttpClientRequest *req;
  Buf message;      /* what curl uploads, borrowed by the transfer */
  char *message_id; /* "<...>", given back on success */
} SmtpWait;

static void smtp_wait_free(SmtpWait *w) {
  buf_free(&w->message);
  free(w->message_id);
  free(w);
}

static void smtp_cancel(void *ctx) {
  SmtpWait *w = ctx;
  http_client_cancel(w->req);
  smtp_wait_free(w);
}

/* Resumes the handler with true and the Message-ID, or nil and why. A
 * reply of the server says whether a retry may help: "temporary: 451 ..."
 * for a 4xx, "permanent: 550 ..." for a 5xx (RFC 5321 4.2.1). */
static void smtp_done_lua(SmtpWait *w, long code, const char *reply,
                          const char *err) {
  LuaTask *t = w->task;
  lua_State *co = lua_task_thread(t);
  luaL_checkstack(co, 4, NULL);
  if (!err) {
    lua_pushboolean(co, 1);
    lua_pushstring(co, w->message_id);
    smtp_wait_free(w);
    lua_task_resume(t, 2);
    return;
  }
  lua_pushnil(co);
  const char *kind = code >= 400 && code < 500   ? "temporary"
                     : code >= 500 && code < 600 ? "permanent"
                                                 : NULL;
  if (kind && reply && *reply)
    lua_pushfstring(co, "%s: %s (%s)", kind, reply, err);
  else if (kind)
    lua_pushfstring(co, "%s: %d (%s)", kind, (int)code, err);
  else
    lua_pushfstring(co, "SMTP failed: %s", err);
  smtp_wait_free(w);
  lua_task_resume(t, 2);
}

static void smtp_done(void *arg, long code, const char *reply,
                      const char *err) {
  watchdog_enter();
  smtp_done_lua(arg, code, reply, err);
  watchdog_leave();
}

/* The optional string field `key` of the table at 1, or NULL. Raises for
 * another type. Leaves the value on the stack (it anchors the string). */
static const char *opt_string(lua_State *L, const char *key, size_t *len) {
  int type = lua_getfield(L, 1, key);
  if (type == LUA_TNIL) return NULL;
  if (type != LUA_TSTRING) {
    luaL_error(L, "restock.smtp.send: %s must be a string", key);
    return NULL;
  }
  return lua_tolstring(L, -1, len);
}

static void random_hex(char *out, size_t bytes) {
  unsigned char r[32];
  if (bytes > sizeof r) bytes = sizeof r;
  if (RAND_bytes(r, (int)bytes) != 1) {
    /* Uniqueness, not secrecy, is what a Message-ID needs: the clock and
     * a counter do if the generator fails. */
    static unsigned counter;
    long long now = isotime_now_ms();
    for (size_t i = 0; i < bytes; i++)
      r[i] = (unsigned char)((now >> (8 * (i % 8))) ^ (counter + i));
    counter++;
  }
  for (size_t i = 0; i < bytes; i++) snprintf(out + 2 * i, 3, "%02x", r[i]);
}

typedef struct {
  MailAddress from;
  MailAddress to[LUA_MAIL_MAX_RCPT];
  size_t nto;
  char *rcpt[LUA_MAIL_MAX_RCPT];
  const char *names[MAX_HEADERS]; /* anchored by the headers table */
  char *values[MAX_HEADERS];      /* copies: a number becomes a string */
  size_t nheaders;
} SendArgs;

static void send_args_clear(SendArgs *a) {
  mail_address_clear(&a->from);
  for (size_t i = 0; i < a->nto; i++) {
    mail_address_clear(&a->to[i]);
    free(a->rcpt[i]);
  }
  for (size_t i = 0; i < a->nheaders; i++) free(a->values[i]);
  a->nto = a->nheaders = 0;
}

/* Parses one recipient into a->to; false with *why set if it is bad. */
static bool add_rcpt(SendArgs *a, const char *s, size_t len, const char **why) {
  if (a->nto == LUA_MAIL_MAX_RCPT) {
    *why = "at most 100 recipients";
    return false;
  }
  if (mail_parse_address(s, len, &a->to[a->nto], why)) return false;
  a->rcpt[a->nto] = xasprintf("<%s>", a->to[a->nto].addr);
  a->nto++;
  return true;
}

static int invalid(lua_State *L, SendArgs *a, const char *field,
                   const char *why) {
  send_args_clear(a);
  lua_pushnil(L);
  lua_pushfstring(L, "invalid: %s: %s", field, why);
  return 2;
}

/* restock.smtp.send{url=, username=, password=, tls=, from=, to=,
 * subject=, text=, html=, headers=, message_id=, timeout=}: builds the
 * message and sends it, suspending only the calling handler. Returns
 * true and the Message-ID, or nil and why: "temporary: ..." and
 * "permanent: ..." carry the server's reply, "invalid: ..." a message
 * that cannot be built, anything else a transport failure (a refused
 * connection, TLS, a timeout). Wrong types raise. */
static int l_smtp_send(lua_State *L) {
  LuaTask *t = lua_task_current(L);
  if (!t)
    return luaL_error(L,
                      "restock.smtp.send can only be called by an event "
                      "handler (not at load time, nor inside a coroutine of "
                      "its own)");
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkstack(L, 32, NULL); /* the fields below stay on the stack */
  SmtpOptions o;
  memset(&o, 0, sizeof o);
  o.url = opt_string(L, "url", NULL);
  if (!o.url) return luaL_argerror(L, 1, "url (a string) is required");
  o.username = opt_string(L, "username", NULL);
  o.password = opt_string(L, "password", NULL);
  const char *tls = opt_string(L, "tls", NULL);
  if (tls && strcmp(tls, "required") == 0)
    o.require_tls = true;
  else if (tls && strcmp(tls, "try") != 0)
    return luaL_argerror(L, 1, "tls must be \"try\" or \"required\"");
  if (lua_getfield(L, 1, "timeout") != LUA_TNIL) {
    int isint = 0;
    lua_Integer ms = lua_tointegerx(L, -1, &isint);
    if (!isint || ms <= 0)
      return luaL_argerror(L, 1, "timeout must be a positive integer (ms)");
    o.timeout_ms =
        (long)(ms < HTTP_CLIENT_MAX_TIMEOUT_MS ? ms
                                               : HTTP_CLIENT_MAX_TIMEOUT_MS);
  }
  MailMessage m;
  memset(&m, 0, sizeof m);
  size_t from_len = 0;
  const char *from = opt_string(L, "from", &from_len);
  if (!from) return luaL_argerror(L, 1, "from (a string) is required");
  m.subject = opt_string(L, "subject", NULL);
  m.text = opt_string(L, "text", &m.text_len);
  m.html = opt_string(L, "html", &m.html_len);
  if (!m.text && !m.html)
    return luaL_argerror(L, 1, "text or html (a string) is required");
  size_t id_len = 0;
  const char *message_id = opt_string(L, "message_id", &id_len);
  /* From here on the table's values are anchored on the stack; errors
   * return nil, err so that nothing leaks. */
  SendArgs *a = xcalloc(1, sizeof *a);
  const char *why = NULL;
  if (mail_parse_address(from, from_len, &a->from, &why)) {
    int n = invalid(L, a, "from", why);
    free(a);
    return n;
  }
  int type = lua_getfield(L, 1, "to"); /* [.., to] */
  if (type == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (!add_rcpt(a, s, len, &why)) {
      int n = invalid(L, a, "to", why);
      free(a);
      return n;
    }
  } else if (type == LUA_TTABLE) {
    lua_Integer count = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= count; i++) {
      size_t len;
      if (lua_rawgeti(L, -1, i) != LUA_TSTRING) {
        send_args_clear(a);
        free(a);
        return luaL_argerror(L, 1, "to must be a string or a list of them");
      }
      const char *s = lua_tolstring(L, -1, &len);
      bool ok = add_rcpt(a, s, len, &why);
      lua_pop(L, 1); /* the list anchors the string */
      if (!ok) {
        int n = invalid(L, a, "to", why);
        free(a);
        return n;
      }
    }
  }
  if (a->nto == 0) {
    send_args_clear(a);
    free(a);
    return luaL_argerror(L, 1, "to (an address or a list of them) is required");
  }
  if (lua_getfield(L, 1, "headers") != LUA_TNIL) { /* [.., headers] */
    if (!lua_istable(L, -1)) {
      send_args_clear(a);
      free(a);
      return luaL_argerror(L, 1, "headers must be a table of name = value");
    }
    int ht = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, ht)) { /* [.., headers, name, value] */
      if (lua_type(L, -2) != LUA_TSTRING ||
          (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)) {
        send_args_clear(a);
        free(a);
        return luaL_argerror(L, 1, "headers must map names to strings");
      }
      if (a->nheaders == MAX_HEADERS) {
        lua_pop(L, 2);
        int n = invalid(L, a, "headers", "at most 50");
        free(a);
        return n;
      }
      /* A number value becomes a string in place, which lua_next allows
       * for values (never for keys); the copy outlives the pop. */
      a->values[a->nheaders] = xstrdup(lua_tostring(L, -1));
      a->names[a->nheaders] = lua_tostring(L, -2);
      a->nheaders++;
      lua_pop(L, 1);
    }
  }
  /* Fields in name order: a Lua table has none of its own, and the same
   * call should give the same message. */
  for (size_t i = 1; i < a->nheaders; i++)
    for (size_t j = i; j > 0 && strcasecmp(a->names[j - 1], a->names[j]) > 0;
         j--) {
      const char *n = a->names[j];
      char *v = a->values[j];
      a->names[j] = a->names[j - 1];
      a->values[j] = a->values[j - 1];
      a->names[j - 1] = n;
      a->values[j - 1] = v;
    }
  SmtpWait *w = xcalloc(1, sizeof *w);
  w->task = t;
  char hex[65], seed[33];
  if (message_id) {
    w->message_id = xstrndup(message_id, id_len);
  } else {
    random_hex(hex, 16);
    const char *domain = strchr(a->from.addr, '@') + 1;
    w->message_id = xasprintf("<%s@%s>", hex, domain);
  }
  random_hex(seed, 12);
  m.from = &a->from;
  m.to = a->to;
  m.nto = a->nto;
  m.header_names = a->names;
  m.header_values = (const char *const *)a->values;
  m.nheaders = a->nheaders;
  m.date_ms = isotime_now_ms();
  m.message_id = w->message_id;
  m.boundary_seed = seed;
  int rc = mail_build(&m, &w->message, &why);
  if (rc == 0 && w->message.len > LUA_MAIL_MAX_MESSAGE) {
    rc = -1;
    why = "the message is larger than 10 MiB";
  }
  if (rc) {
    smtp_wait_free(w);
    int n = invalid(L, a, "message", why);
    free(a);
    return n;
  }
  LuaEnv *env = lua_host_env(lua_host_of(L));
  if (!env->http) {
    /* Made on first use, as restock.http.request does. */
    env->http = http_client_new(lua_task_loop(t), env->ca_file);
    if (!env->http) {
      smtp_wait_free(w);
      send_args_clear(a);
      free(a);
      lua_pushnil(L);
      lua_pushstring(L, "SMTP failed: libcurl could not be initialized");
      return 2;
    }
  }
  char mail_from[MAIL_ADDRESS_MAX + 3];
  snprintf(mail_from, sizeof mail_from, "<%s>", a->from.addr);
  o.mail_from = mail_from;
  o.rcpt = (const char *const *)a->rcpt;
  o.nrcpt = a->nto;
  o.message = w->message.data;
  o.message_len = w->message.len;
  o.message_borrowed = true;
  char err[256];
  /* curl copies the URL, the envelope and the credentials. */
  w->req = http_client_smtp(env->http, &o, smtp_done, w, err, sizeof err);
  send_args_clear(a);
  free(a);
  if (!w->req) {
    smtp_wait_free(w);
    lua_pushnil(L);
    lua_pushfstring(L, "invalid: url: %s", err);
    return 2;
  }
  lua_task_wait(t, smtp_cancel, w);
  return lua_yield(L, 0);
}

/* ---- restock.url ----------------------------------------------------------
 */

/* restock.url.encode(s): s percent-encoded (RFC 3986 unreserved bytes
 * stay, a space is %20). */
static int l_url_encode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  Buf b = {0};
  url_encode(s, len, &b);
  lua_pushlstring(L, b.data ? b.data : "", b.len);
  buf_free(&b);
  return 1;
}

static int cmp_keys(const void *x, const void *y) {
  return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* Appends "key=value" for one value (a string, number or boolean); false
 * for another type. */
static bool form_pair(lua_State *L, int idx, const char *key, Buf *b) {
  const char *v;
  size_t len;
  switch (lua_type(L, idx)) {
    case LUA_TSTRING:
    case LUA_TNUMBER:
      lua_pushvalue(L, idx);
      v = lua_tolstring(L, -1, &len);
      break;
    case LUA_TBOOLEAN:
      lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false");
      v = lua_tolstring(L, -1, &len);
      break;
    default:
      return false;
  }
  if (b->len) buf_puts(b, "&");
  url_encode(key, strlen(key), b);
  buf_puts(b, "=");
  url_encode(v, len, b);
  lua_pop(L, 1);
  return true;
}

/* restock.url.form(t): an application/x-www-form-urlencoded body of the
 * string keys of t in byte order, each value a string, number or boolean,
 * or a list of them (the key repeated, in the list's order). */
static int l_url_form(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  size_t n = 0, cap = 16;
  const char **keys = xmalloc(cap * sizeof *keys);
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      free(keys);
      return luaL_argerror(L, 1, "form keys must be strings");
    }
    if (n == cap) keys = xrealloc(keys, (cap *= 2) * sizeof *keys);
    keys[n++] = lua_tostring(L, -2); /* the table anchors its keys */
    lua_pop(L, 1);
  }
  qsort(keys, n, sizeof *keys, cmp_keys);
  Buf b = {0};
  for (size_t i = 0; i < n; i++) {
    lua_getfield(L, 1, keys[i]); /* [t, value] */
    bool ok = true;
    if (lua_istable(L, -1)) {
      lua_Integer count = (lua_Integer)lua_rawlen(L, -1);
      for (lua_Integer k = 1; ok && k <= count; k++) {
        lua_rawgeti(L, -1, k);
        ok = form_pair(L, -1, keys[i], &b);
        lua_pop(L, 1);
      }
    } else {
      ok = form_pair(L, -1, keys[i], &b);
    }
    lua_pop(L, 1);
    if (!ok) {
      const char *bad = keys[i];
      buf_free(&b);
      lua_pushfstring(L,
                      "the value of %s must be a string, number, boolean "
                      "or a list of them",
                      bad);
      free(keys);
      return luaL_argerror(L, 1, lua_tostring(L, -1));
    }
  }
  free(keys);
  lua_pushlstring(L, b.data ? b.data : "", b.len);
  buf_free(&b);
  return 1;
}

void lua_mail_open(lua_State *L) {
  static const luaL_Reg smtp[] = {{"send", l_smtp_send}, {NULL, NULL}};
  static const luaL_Reg url[] = {
      {"encode", l_url_encode}, {"form", l_url_form}, {NULL, NULL}};
  luaL_newlib(L, smtp); /* [restock, smtp] */
  lua_setfield(L, -2, "smtp");
  luaL_newlib(L, url);
  lua_setfield(L, -2, "url");
}
