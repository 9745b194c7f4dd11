/* The options of plugin.lua (contract section 2), in one table: each option's
 * name, type, default and bounds live in config.c and nowhere else, and the
 * parser (restock.options), `restockd check`'s JSON and the docs' table are
 * all read off it.
 *
 * A Config is one loaded script's settings as the rest of the server sees
 * them: the options and the handlers it subscribed. It is immutable once
 * built and reference-counted, so that a unit of work running on a storage
 * thread keeps the Config it was started with across a SIGHUP reload. */
#ifndef RESTOCKD_CONFIG_H
#define RESTOCKD_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "strlist.h"

typedef enum { DURABILITY_PROCESS = 0, DURABILITY_FULL = 1 } Durability;

typedef struct {
  long long trigger_delay;
  long long inventory_required;
  long long batch_size;
  long long max_attempts;
  long long handler_timeout;
  double notify_per_unit;
  long long notify_interval;
  long long subscribe_rate_limit;
  bool trust_proxy;
  char *store_cors;           /* NULL when unset */
  int durability;             /* a Durability */
  long long lua_memory_limit; /* MiB the Lua state may hold */
  bool double_opt_in;
  long long confirm_ttl;       /* ms a pending subscription waits */
  long long subscription_ttl;  /* ms; 0: active ones never expire */
  char *blocked_email_domains; /* comma-separated; NULL when unset */
  long long conversion_window; /* ms after a notification an order counts */
} Options;

typedef enum { OPT_INT, OPT_NUMBER, OPT_BOOL, OPT_STRING, OPT_ENUM } OptionType;

typedef struct {
  const char *name;
  OptionType type;
  size_t offset; /* into Options */
  /* OPT_INT and OPT_NUMBER: the bounds, inclusive. OPT_STRING: max length
   * in bytes (in `max`). */
  double min, max;
  /* OPT_ENUM: the accepted names, NULL-terminated; the field holds the
   * index of the one given. */
  const char *const *choices;
  const char *help; /* one line, for the docs and error messages */
} OptionSpec;

/* A value from a script, before it is checked against its spec. */
typedef struct {
  enum { OV_INT, OV_NUMBER, OV_BOOL, OV_STRING, OV_OTHER } type;
  long long i;
  double d;
  bool b;
  const char *s; /* borrowed */
  size_t len;
} OptionValue;

/* The table, and its length. */
extern const OptionSpec config_options[];
extern const size_t config_noptions;

/* The spec of option `name`, or NULL for an unknown name. */
const OptionSpec *config_find(const char *name);
/* Sets `spec`'s field of `o` from `v`. Returns 0, or RESTOCK_EINVAL with a
 * sentence naming the option in `err` (a wrong type, a value out of its
 * bounds, an unknown choice). */
int config_apply(Options *o, const OptionSpec *spec, const OptionValue *v,
                 char *err, size_t errlen);
/* Fills `o` with every option's default. */
void config_defaults(Options *o);
/* Frees the strings `o` owns and resets it to the defaults. */
void config_options_clear(Options *o);
/* Deep copy of `src` into `dst` (which owns nothing yet). */
void config_options_copy(Options *dst, const Options *src);
/* Every option's effective value as a JSON object, in table order. */
json_t *config_options_json(const Options *o);

typedef enum { EACH_EVENT = 0, EACH_SUBSCRIBER = 1 } HandlerEach;

/* A handler the script subscribed: its event, its unique name among that
 * event's handlers, and how its deliveries are made. */
typedef struct {
  char *event;
  char *name;
  long long max_attempts; /* the handler's own, else the option's */
  HandlerEach each;
  /* Subscribed by another live node's script only (issue 14): events get
   * a delivery for it, but this node does not run it. */
  bool peer;
} HandlerSpec;

typedef struct Config {
  int refs; /* atomic */
  Options options;
  HandlerSpec *handlers;
  size_t nhandlers;
  bool on_subscribe; /* the script set restock.on_subscribe */
  /* blocked_email_domains, normalized and sorted (email_domains_compile)
   * once the script has loaded. */
  StrList blocked_domains;
} Config;

/* A new Config with the default options and no handler; one reference. */
Config *config_new(void);
/* Adds a handler (copying the strings), in subscription order. */
void config_add_handler(Config *c, const char *event, const char *name,
                        long long max_attempts, HandlerEach each);
/* Takes one more reference (from any thread). Returns `c`. */
Config *config_ref(Config *c);
/* Drops one reference, freeing the Config with the last (any thread). NULL
 * is a no-op. */
void config_unref(Config *c);
/* A new Config (one reference) with `own`'s options, handlers, hook and
 * blocked domains (every field but the references), then
 * each of the `n` handlers of `peers` that `own` has not (same event and
 * name), marked as a peer's. */
Config *config_with_peers(const Config *own, const HandlerSpec *peers,
                          size_t n);
/* This node's own handlers (not the peers') as JSON text: [[event, name],
 * ...], or with `full` [[event, name, max_attempts, each], ...]. */
char *config_handlers_json(const Config *c, bool full);
/* Fills up to `max` entries of `out` with the handlers of `event` (a
 * peer's too), in subscription order, and returns how many there are. */
size_t config_handlers(const Config *c, const char *event,
                       const HandlerSpec **out, size_t max);

#endif
