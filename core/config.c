#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "xmalloc.h"

/* A day and a month in milliseconds, for the bounds below. */
#define DAY_MS 86400000.0
#define MONTH_MS (30 * DAY_MS)

static const char *const durability_choices[] = {"process", "full", NULL};

#define FIELD(name) offsetof(Options, name)

/* The upper bounds keep every sum of a time and an option (now +
 * trigger_delay, now + handler_timeout + a margin, now + notify_interval)
 * far from overflowing, whatever the script asks for. */
const OptionSpec config_options[] = {
    {"trigger_delay", OPT_INT, FIELD(trigger_delay), 0, MONTH_MS, NULL,
     "ms from an inventory change to the restock check"},
    {"inventory_required", OPT_INT, FIELD(inventory_required), 0, 1e15, NULL,
     "restocked when the quantity is greater than this"},
    {"batch_size", OPT_INT, FIELD(batch_size), 1, 100000, NULL,
     "most emails in one restocked event"},
    {"max_attempts", OPT_INT, FIELD(max_attempts), 1, 1000, NULL,
     "deliveries of one event to one handler before it is marked dead"},
    {"handler_timeout", OPT_INT, FIELD(handler_timeout), 1, 3600000, NULL,
     "ms a handler may run before it is aborted"},
    {"notify_per_unit", OPT_NUMBER, FIELD(notify_per_unit), 0, 1e6, NULL,
     "if > 0, notify at most ceil(quantity * this) subscribers per check"},
    {"notify_interval", OPT_INT, FIELD(notify_interval), 1, MONTH_MS, NULL,
     "ms between throttled checks"},
    {"subscribe_rate_limit", OPT_INT, FIELD(subscribe_rate_limit), 0, 1e6, NULL,
     "subscribe requests per minute per client address; 0 = off"},
    {"trust_proxy", OPT_BOOL, FIELD(trust_proxy), 0, 0, NULL,
     "take the client address from X-Forwarded-For"},
    {"store_cors", OPT_STRING, FIELD(store_cors), 0, 4096, NULL,
     "allowed storefront origins, comma-separated"},
    {"durability", OPT_ENUM, FIELD(durability), 0, 0, durability_choices,
     "\"process\": survives a crash of the process; \"full\": also a power "
     "loss"},
    {"lua_memory_limit", OPT_INT, FIELD(lua_memory_limit), 16, 65536, NULL,
     "MiB the Lua state may hold; an allocation past it fails the handler"},
    {"double_opt_in", OPT_BOOL, FIELD(double_opt_in), 0, 0, NULL,
     "a new subscription waits, pending, until the shopper confirms it"},
    {"confirm_ttl", OPT_INT, FIELD(confirm_ttl), 1000, 365 * DAY_MS, NULL,
     "ms a pending subscription waits for its confirmation"},
    {"subscription_ttl", OPT_INT, FIELD(subscription_ttl), 0, 3650 * DAY_MS,
     NULL, "ms after which an active, never notified subscription expires"},
    {"blocked_email_domains", OPT_STRING, FIELD(blocked_email_domains), 0,
     65536, NULL, "email domains refused at subscribe, comma-separated"},
    {"conversion_window", OPT_INT, FIELD(conversion_window), 0, 12 * MONTH_MS,
     NULL,
     "ms after a notification within which an order of that variant by that "
     "email counts as a conversion"},
};
const size_t config_noptions = sizeof config_options / sizeof config_options[0];

static const Options defaults = {
    .trigger_delay = 0,
    .inventory_required = 0,
    .batch_size = 1000,
    .max_attempts = 5,
    .handler_timeout = 30000,
    .notify_per_unit = 0,
    .notify_interval = 3600000,
    .subscribe_rate_limit = 0,
    .trust_proxy = false,
    .store_cors = NULL,
    .durability = DURABILITY_PROCESS,
    .lua_memory_limit = 256,
    .double_opt_in = false,
    .confirm_ttl = 7 * 86400000LL,
    .subscription_ttl = 0,
    .blocked_email_domains = NULL,
    .conversion_window = 7 * 86400000LL,
};

const OptionSpec *config_find(const char *name) {
  for (size_t i = 0; i < config_noptions; i++)
    if (strcmp(config_options[i].name, name) == 0) return &config_options[i];
  return NULL;
}

void config_defaults(Options *o) { *o = defaults; }

void config_options_clear(Options *o) {
  free(o->store_cors);
  free(o->blocked_email_domains);
  config_defaults(o);
}

void config_options_copy(Options *dst, const Options *src) {
  *dst = *src;
  dst->store_cors = src->store_cors ? xstrdup(src->store_cors) : NULL;
  dst->blocked_email_domains =
      src->blocked_email_domains ? xstrdup(src->blocked_email_domains) : NULL;
}

/* "from 0 to 2592000000" for an error message. */
static void bounds_text(const OptionSpec *s, char *out, size_t len) {
  if (s->type == OPT_INT)
    snprintf(out, len, "an integer from %.0f to %.0f", s->min, s->max);
  else
    snprintf(out, len, "a number from %g to %g", s->min, s->max);
}

int config_apply(Options *o, const OptionSpec *s, const OptionValue *v,
                 char *err, size_t errlen) {
  char *field = (char *)o + s->offset;
  char want[96];
  switch (s->type) {
    case OPT_INT:
      bounds_text(s, want, sizeof want);
      if (v->type != OV_INT || (double)v->i < s->min || (double)v->i > s->max) {
        snprintf(err, errlen, "option '%s' must be %s", s->name, want);
        return RESTOCK_EINVAL;
      }
      *(long long *)field = v->i;
      return 0;
    case OPT_NUMBER: {
      bounds_text(s, want, sizeof want);
      double d = v->type == OV_INT ? (double)v->i : v->d;
      if ((v->type != OV_INT && v->type != OV_NUMBER) || !isfinite(d) ||
          d < s->min || d > s->max) {
        snprintf(err, errlen, "option '%s' must be %s", s->name, want);
        return RESTOCK_EINVAL;
      }
      *(double *)field = d;
      return 0;
    }
    case OPT_BOOL:
      if (v->type != OV_BOOL) {
        snprintf(err, errlen, "option '%s' must be a boolean", s->name);
        return RESTOCK_EINVAL;
      }
      *(bool *)field = v->b;
      return 0;
    case OPT_STRING:
      if (v->type != OV_STRING || (double)v->len > s->max ||
          strlen(v->s) != v->len) {
        snprintf(err, errlen,
                 "option '%s' must be a string of at most %.0f bytes", s->name,
                 s->max);
        return RESTOCK_EINVAL;
      }
      free(*(char **)field);
      *(char **)field = xstrdup(v->s);
      return 0;
    case OPT_ENUM:
      if (v->type == OV_STRING)
        for (int i = 0; s->choices[i]; i++)
          if (strcmp(s->choices[i], v->s) == 0) {
            *(int *)field = i;
            return 0;
          }
      {
        char list[128] = "";
        for (int i = 0; s->choices[i]; i++)
          snprintf(list + strlen(list), sizeof list - strlen(list), "%s\"%s\"",
                   i ? " or " : "", s->choices[i]);
        snprintf(err, errlen, "option '%s' must be %s", s->name, list);
      }
      return RESTOCK_EINVAL;
  }
  return RESTOCK_EINVAL;
}

json_t *config_options_json(const Options *o) {
  json_t *j = json_object();
  for (size_t i = 0; i < config_noptions; i++) {
    const OptionSpec *s = &config_options[i];
    const char *field = (const char *)o + s->offset;
    json_t *v = NULL;
    switch (s->type) {
      case OPT_INT:
        v = json_integer(*(const long long *)field);
        break;
      case OPT_NUMBER:
        v = json_real(*(const double *)field);
        break;
      case OPT_BOOL:
        v = json_boolean(*(const bool *)field);
        break;
      case OPT_STRING: {
        const char *str = *(char *const *)field;
        v = str ? json_string(str) : json_null();
        break;
      }
      case OPT_ENUM:
        v = json_string(s->choices[*(const int *)field]);
        break;
    }
    json_object_set_new(j, s->name, v);
  }
  return j;
}

Config *config_new(void) {
  Config *c = xcalloc(1, sizeof *c);
  c->refs = 1;
  config_defaults(&c->options);
  return c;
}

void config_add_handler(Config *c, const char *event, const char *name,
                        long long max_attempts, HandlerEach each) {
  c->handlers = xrealloc(c->handlers, (c->nhandlers + 1) * sizeof *c->handlers);
  HandlerSpec *h = &c->handlers[c->nhandlers++];
  h->event = xstrdup(event);
  h->name = xstrdup(name);
  h->max_attempts = max_attempts;
  h->each = each;
  h->peer = false;
}

Config *config_with_peers(const Config *own, const HandlerSpec *peers,
                          size_t n) {
  Config *c = config_new();
  config_options_clear(&c->options);
  config_options_copy(&c->options, &own->options);
  /* Everything the script set besides its options and handlers. */
  c->on_subscribe = own->on_subscribe;
  strlist_copy(&c->blocked_domains, &own->blocked_domains);
  for (size_t i = 0; i < own->nhandlers; i++) {
    const HandlerSpec *h = &own->handlers[i];
    config_add_handler(c, h->event, h->name, h->max_attempts, h->each);
  }
  for (size_t i = 0; i < n; i++) {
    bool known = false;
    for (size_t k = 0; k < c->nhandlers && !known; k++)
      known = strcmp(c->handlers[k].event, peers[i].event) == 0 &&
              strcmp(c->handlers[k].name, peers[i].name) == 0;
    if (known) continue;
    config_add_handler(c, peers[i].event, peers[i].name, peers[i].max_attempts,
                       peers[i].each);
    c->handlers[c->nhandlers - 1].peer = true;
  }
  return c;
}

char *config_handlers_json(const Config *c, bool full) {
  json_t *list = json_array();
  for (size_t i = 0; i < c->nhandlers; i++) {
    const HandlerSpec *h = &c->handlers[i];
    if (h->peer) continue;
    json_t *item = json_pack("[ss]", h->event, h->name);
    if (full) {
      json_array_append_new(item, json_integer(h->max_attempts));
      json_array_append_new(item, json_integer(h->each));
    }
    json_array_append_new(list, item);
  }
  char *text = json_dumps(list, JSON_COMPACT);
  json_decref(list);
  return text ? text : xstrdup("[]");
}

Config *config_ref(Config *c) {
  __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
  return c;
}

void config_unref(Config *c) {
  if (!c || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) > 0) return;
  for (size_t i = 0; i < c->nhandlers; i++) {
    free(c->handlers[i].event);
    free(c->handlers[i].name);
  }
  free(c->handlers);
  config_options_clear(&c->options);
  strlist_clear(&c->blocked_domains);
  free(c);
}

size_t config_handlers(const Config *c, const char *event,
                       const HandlerSpec **out, size_t max) {
  size_t n = 0;
  for (size_t i = 0; i < c->nhandlers; i++)
    if (strcmp(c->handlers[i].event, event) == 0) {
      if (n < max) out[n] = &c->handlers[i];
      n++;
    }
  return n;
}
