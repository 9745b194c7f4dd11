#include "node.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "isotime.h"
#include "log.h"
#include "outbox.h"
#include "xmalloc.h"

struct Node {
  Domain *d;
  char id[NODE_ID_MAX];
  char started_at[ISOTIME_LEN];
  Config *own;     /* the script's */
  char *peers_key; /* the peers' handlers the current Config was built with */
  StrList peers;   /* the same, one JSON text per node */
  uv_timer_t timer;
  bool beating;  /* a heartbeat unit is in flight */
  bool again;    /* beat once more as soon as it is done */
  bool stopping; /* no more heartbeats */
  bool closing;
  bool timer_open;
  int units; /* in flight */
};

/* ---- ids --------------------------------------------------------------------
 */

/* When process `pid` started, in ms since the epoch, from /proc (the boot
 * time plus the process's start in clock ticks); 0 if it is not running.
 * The same process always gives the same value. */
static long long process_start_ms(int pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* Field 22, counted after the command name, which may hold spaces. */
  char *p = strrchr(buf, ')');
  if (!p) return 0;
  unsigned long long ticks = 0;
  int field = 2;
  for (p++; *p && field < 22; p++)
    if (*p == ' ') field++;
  if (field != 22 || sscanf(p, "%llu", &ticks) != 1) return 0;
  f = fopen("/proc/stat", "r");
  if (!f) return 0;
  long long btime = 0;
  char line[256];
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "btime %lld", &btime) == 1) break;
  fclose(f);
  long hz = sysconf(_SC_CLK_TCK);
  if (btime <= 0 || hz <= 0) return 0;
  return btime * 1000 + (long long)(ticks * 1000 / (unsigned long long)hz);
}

static void host_name(char *out, size_t len) {
  if (gethostname(out, len) != 0 || !*out) snprintf(out, len, "localhost");
  out[len - 1] = '\0';
}

int node_make_id(char out[NODE_ID_MAX], char *err, size_t err_len) {
  const char *env = getenv("RESTOCK_NODE_ID");
  if (env && *env) {
    size_t len = strlen(env);
    bool ok = len < NODE_ID_MAX;
    for (size_t i = 0; ok && i < len; i++) ok = env[i] > 0x20 && env[i] < 0x7f;
    if (!ok) {
      snprintf(err, err_len,
               "RESTOCK_NODE_ID must be 1 to %d printable ASCII characters "
               "without spaces",
               NODE_ID_MAX - 1);
      return -1;
    }
    snprintf(out, NODE_ID_MAX, "%s", env);
    return 0;
  }
  char host[100];
  host_name(host, sizeof host);
  int pid = (int)getpid();
  snprintf(out, NODE_ID_MAX, "%s:%d:%lld", host, pid, process_start_ms(pid));
  return 0;
}

bool node_is_dead_here(const char *id) {
  /* HOST:PID:START, read from the right: a host name holds no colon, but
   * a RESTOCK_NODE_ID of another form is never ours to judge. */
  const char *last = strrchr(id, ':');
  if (!last || last == id) return false;
  const char *mid = last - 1;
  while (mid > id && *mid != ':') mid--;
  if (*mid != ':') return false;
  char host[100];
  host_name(host, sizeof host);
  if ((size_t)(mid - id) != strlen(host) || strncmp(id, host, strlen(host)))
    return false;
  char *end = NULL;
  long pid = strtol(mid + 1, &end, 10);
  if (end != last || pid <= 0 || pid > 1 << 22) return false;
  long long start = strtoll(last + 1, &end, 10);
  if (*end || start <= 0) return false;
  /* Alive only if that pid is a process that started then (a pid is
   * reused by later processes). */
  return process_start_ms((int)pid) != start;
}

/* ---- the Config units run with ------------------------------------------- */

/* Builds the Config of the script and the peers' handlers (JSON texts, one
 * per node) and makes it the Domain's. */
static void apply_peers(Node *n, const StrList *peers) {
  HandlerSpec *specs = NULL;
  size_t count = 0, cap = 0;
  for (size_t i = 0; i < peers->n; i++) {
    json_t *list = json_loads(peers->items[i], 0, NULL);
    size_t k;
    json_t *item;
    json_array_foreach(list, k, item) {
      const char *event = json_string_value(json_array_get(item, 0));
      const char *name = json_string_value(json_array_get(item, 1));
      json_int_t max = json_integer_value(json_array_get(item, 2));
      json_int_t each = json_integer_value(json_array_get(item, 3));
      if (!event || !name || max <= 0) continue;
      if (count == cap) {
        cap = cap ? cap * 2 : 8;
        specs = xrealloc(specs, cap * sizeof *specs);
      }
      specs[count++] = (HandlerSpec){
          .event = xstrdup(event),
          .name = xstrdup(name),
          .max_attempts = max,
          .each = each == EACH_SUBSCRIBER ? EACH_SUBSCRIBER : EACH_EVENT,
          .peer = true};
    }
    json_decref(list);
  }
  if (count) log_debug("node: %zu handlers of other nodes", count);
  domain_set_config(n->d, config_with_peers(n->own, specs, count));
  for (size_t i = 0; i < count; i++) {
    free(specs[i].event);
    free(specs[i].name);
  }
  free(specs);
}

/* The peers' handlers as one string, to see whether they changed. */
static char *peers_key(const StrList *peers) {
  size_t len = 1;
  for (size_t i = 0; i < peers->n; i++) len += strlen(peers->items[i]) + 1;
  char *key = xmalloc(len);
  key[0] = '\0';
  for (size_t i = 0; i < peers->n; i++) {
    strcat(key, peers->items[i]);
    strcat(key, "\n");
  }
  return key;
}

static void take_peers(Node *n, const StrList *peers) {
  char *key = peers_key(peers);
  if (n->peers_key && strcmp(key, n->peers_key) == 0) {
    free(key);
    return;
  }
  free(n->peers_key);
  n->peers_key = key;
  strlist_copy(&n->peers, peers);
  apply_peers(n, peers);
}

/* ---- the heartbeat ----------------------------------------------------------
 */

typedef struct {
  Unit unit;
  Node *n;
  const Config *cfg; /* whose handlers to publish; NULL: the unit's */
  StrList peers;
  long long check_due, delivery_due;
  bool any_check, any_delivery;
} Beat;

static int beat_fn(StoreTx *tx, void *arg) {
  Beat *b = arg;
  const Config *cfg = b->cfg ? b->cfg : b->unit.cfg;
  char *mine = config_handlers_json(cfg, true);
  char *claimable = config_handlers_json(cfg, false);
  int rc = store_node_beat(tx, b->n->started_at, RESTOCKD_VERSION, mine);
  if (rc == 0) rc = store_node_peers(tx, &b->peers);
  if (rc == 0) rc = store_check_next(tx, &b->check_due, &b->any_check);
  if (rc == 0)
    rc = store_delivery_next(tx, claimable, &b->delivery_due, &b->any_delivery);
  free(mine);
  free(claimable);
  return rc;
}

size_t node_peer_count(const Node *n) { return n ? n->peers.n : 0; }

static void on_beat_timer(uv_timer_t *t);

static void maybe_free(Node *n) {
  if (!n->closing || n->timer_open || n->units > 0) return;
  config_unref(n->own);
  free(n->peers_key);
  strlist_clear(&n->peers);
  free(n);
}

static void beat_done(Unit *u, int status) {
  Beat *b = (Beat *)u;
  Node *n = b->n;
  n->beating = false;
  n->units--;
  if (status == 0 && !n->closing) {
    take_peers(n, &b->peers);
    /* Work another node scheduled, or left when it died, runs here on
     * time if this node is the first to claim it. */
    if (b->any_check && n->d->engine)
      engine_note_check(n->d->engine, b->check_due);
    if (b->any_delivery && n->d->outbox)
      outbox_note_due(n->d->outbox, b->delivery_due);
  }
  strlist_clear(&b->peers);
  free(b);
  if (n->closing) {
    maybe_free(n);
    return;
  }
  if (n->stopping) return;
  if (n->again) {
    n->again = false;
    on_beat_timer(&n->timer);
    return;
  }
  uv_timer_start(&n->timer, on_beat_timer, NODE_BEAT_MS, 0);
}

static void on_beat_timer(uv_timer_t *t) {
  Node *n = t->data;
  if (n->stopping || n->closing) return;
  if (n->beating) {
    n->again = true;
    return;
  }
  Beat *b = xcalloc(1, sizeof *b);
  b->n = n;
  n->beating = true;
  n->units++;
  unit_write(n->d, &b->unit, beat_fn, beat_done);
}

/* ---- life
 * -------------------------------------------------------------------- */

Node *node_new(Domain *d, const char *id, Config *own) {
  Node *n = xcalloc(1, sizeof *n);
  n->d = d;
  snprintf(n->id, sizeof n->id, "%s", id);
  isotime_now(n->started_at);
  n->own = own;
  uv_timer_init(d->loop, &n->timer);
  n->timer.data = n;
  n->timer_open = true;
  /* The heartbeat never keeps the loop running on its own. */
  uv_unref((uv_handle_t *)&n->timer);
  return n;
}

const char *node_id(const Node *n) { return n->id; }
const char *node_started_at(const Node *n) { return n->started_at; }

int node_register(Node *n) {
  if (!store_shared(n->d->store)) return 0;
  Beat b;
  memset(&b, 0, sizeof b);
  b.n = n;
  b.cfg = n->own;
  int rc = store_run(n->d->store, beat_fn, &b);
  if (rc == 0) take_peers(n, &b.peers);
  strlist_clear(&b.peers);
  return rc;
}

void node_start(Node *n) {
  if (!store_shared(n->d->store)) return;
  uv_timer_start(&n->timer, on_beat_timer, NODE_BEAT_MS, 0);
}

void node_set_config(Node *n, Config *own) {
  config_unref(n->own);
  n->own = own;
  if (!store_shared(n->d->store)) {
    domain_set_config(n->d, config_ref(own));
    return;
  }
  /* With the peers last read, and a beat at once to publish the new
   * handlers. */
  apply_peers(n, &n->peers);
  if (!n->stopping) on_beat_timer(&n->timer);
}

typedef struct {
  Unit unit;
  Node *n;
} Leave;

static int leave_fn(StoreTx *tx, void *arg) { return store_node_delete(tx); }

static void leave_done(Unit *u, int status) {
  Leave *l = (Leave *)u;
  Node *n = l->n;
  n->units--;
  free(l);
  maybe_free(n);
}

void node_stop(Node *n) {
  if (!n || n->stopping) return;
  n->stopping = true;
  uv_timer_stop(&n->timer);
  if (!store_shared(n->d->store)) return;
  Leave *l = xcalloc(1, sizeof *l);
  l->n = n;
  n->units++;
  unit_write(n->d, &l->unit, leave_fn, leave_done);
}

static void on_timer_closed(uv_handle_t *h) {
  Node *n = h->data;
  n->timer_open = false;
  maybe_free(n);
}

void node_close(Node *n) {
  if (!n) return;
  n->closing = true;
  n->stopping = true;
  uv_close((uv_handle_t *)&n->timer, on_timer_closed);
}
