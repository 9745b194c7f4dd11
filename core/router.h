/* Maps a method and a raw request path onto a route of a static table.
 * Patterns are literal segments and "{name}" parameters, each matching one
 * non-empty path segment, which is percent-decoded. */
#ifndef RESTOCKD_ROUTER_H
#define RESTOCKD_ROUTER_H

#include <stddef.h>

struct HttpRequest;
typedef void (*RouteFn)(struct HttpRequest *req, void *ctx);

typedef struct {
  const char *method;  /* "GET", "POST", ... */
  const char *pattern; /* "/admin/variants/{id}" */
  RouteFn fn;
} Route;

#define ROUTER_MAX_PARAMS 4

typedef enum {
  ROUTE_FOUND,
  ROUTE_NOT_FOUND,  /* no pattern matches the path */
  ROUTE_BAD_METHOD, /* a pattern matches, but not with this method */
  ROUTE_BAD_PATH    /* a parameter has a malformed %-escape */
} RouteStatus;

typedef struct {
  const Route *route; /* set when ROUTE_FOUND */
  size_t nparams;
  const char *names[ROUTER_MAX_PARAMS]; /* point into the pattern */
  size_t name_lens[ROUTER_MAX_PARAMS];
  char *values[ROUTER_MAX_PARAMS]; /* decoded; owned by the match */
  char allow[64];                  /* for ROUTE_BAD_METHOD: "GET, POST" */
} RouteMatch;

/* Matches `path` (len bytes, without the query string) against `routes`. The
 * first route whose pattern and method match wins. `m` must be released with
 * router_match_free whatever the result. */
RouteStatus router_match(const Route *routes, size_t count, const char *method,
                         const char *path, size_t len, RouteMatch *m);
/* The decoded value of parameter `name`, or NULL. */
const char *router_param(const RouteMatch *m, const char *name);
void router_match_free(RouteMatch *m);

#endif
