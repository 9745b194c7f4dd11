#include "router.h"

#include <stdlib.h>
#include <string.h>

#include "url.h"

/* Compares one pattern against the path. Returns 1 on a match (with the
 * parameters stored in `m`), 0 on no match, -1 on a bad escape in a segment
 * that would otherwise have matched. */
static int match_pattern(const char *pattern, const char *path, size_t len,
                         RouteMatch *m) {
  const char *p = pattern, *s = path, *end = path + len;
  size_t n = 0;
  char *values[ROUTER_MAX_PARAMS];
  int rc = 1;
  while (*p && rc == 1) {
    if (*p != '/' || s >= end || *s != '/') {
      rc = 0;
      break;
    }
    p++, s++;
    const char *pseg_end = strchr(p, '/');
    if (!pseg_end) pseg_end = p + strlen(p);
    const char *sseg_end = memchr(s, '/', (size_t)(end - s));
    if (!sseg_end) sseg_end = end;
    size_t plen = (size_t)(pseg_end - p), slen = (size_t)(sseg_end - s);
    if (plen >= 2 && p[0] == '{' && p[plen - 1] == '}') {
      if (slen == 0 || n == ROUTER_MAX_PARAMS) {
        rc = 0;
        break;
      }
      char *v = url_decode(s, slen, 0);
      if (!v) {
        rc = -1;
        break;
      }
      m->names[n] = p + 1;
      m->name_lens[n] = plen - 2;
      values[n++] = v;
    } else if (plen != slen || memcmp(p, s, plen) != 0) {
      rc = 0;
    }
    p = pseg_end, s = sseg_end;
  }
  if (rc == 1 && s != end) rc = 0;
  if (rc == 1) {
    m->nparams = n;
    memcpy(m->values, values, n * sizeof *values);
  } else {
    for (size_t i = 0; i < n; i++) free(values[i]);
  }
  return rc;
}

RouteStatus router_match(const Route *routes, size_t count, const char *method,
                         const char *path, size_t len, RouteMatch *m) {
  memset(m, 0, sizeof *m);
  int path_known = 0, bad_escape = 0;
  for (size_t i = 0; i < count; i++) {
    RouteMatch tmp;
    memset(&tmp, 0, sizeof tmp);
    int rc = match_pattern(routes[i].pattern, path, len, &tmp);
    if (rc < 0) bad_escape = 1;
    if (rc <= 0) continue;
    if (strcmp(routes[i].method, method) == 0) {
      router_match_free(m);
      *m = tmp;
      m->route = &routes[i];
      return ROUTE_FOUND;
    }
    router_match_free(&tmp);
    /* Collect the methods this path does answer to, for the Allow header. */
    size_t used = strlen(m->allow), mlen = strlen(routes[i].method);
    if (!strstr(m->allow, routes[i].method) &&
        used + mlen + 3 < sizeof m->allow) {
      if (used) strcat(m->allow, ", ");
      strcat(m->allow, routes[i].method);
    }
    path_known = 1;
  }
  if (path_known) return ROUTE_BAD_METHOD;
  return bad_escape ? ROUTE_BAD_PATH : ROUTE_NOT_FOUND;
}

const char *router_param(const RouteMatch *m, const char *name) {
  size_t len = strlen(name);
  for (size_t i = 0; i < m->nparams; i++)
    if (m->name_lens[i] == len && memcmp(m->names[i], name, len) == 0)
      return m->values[i];
  return NULL;
}

void router_match_free(RouteMatch *m) {
  for (size_t i = 0; i < m->nparams; i++) free(m->values[i]);
  m->nparams = 0;
}
