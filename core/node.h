/* This process as one node of a service (issue 14, contract section 7).
 *
 * A node has an id that names its leases: RESTOCK_NODE_ID, or
 * "HOST:PID:START" (the host name, the process id and the process's start
 * time in ms since the epoch). The second form lets a node that starts on a
 * host recognize the leases of its own dead predecessors there (same host,
 * that process gone) and release them at once; a fixed RESTOCK_NODE_ID does
 * the same by equality.
 *
 * On a shared database (PostgreSQL) the node keeps a row in `nodes` with a
 * heartbeat about once a second (NODE_BEAT_MS), a write unit that also
 *  - publishes the handlers its script subscribed and reads those of the
 *    other live nodes: the Config units run with is the script's plus the
 *    peers' handlers (config_with_peers), so that an event written on any
 *    node gets a delivery for each handler of the service;
 *  - reads when the next restock check and the next claimable delivery are
 *    due, and arms the engine and the outbox for them: checks and retries
 *    another node scheduled, or leases of a node that died, are run on time
 *    by whichever node is alive (the periodic poll behind LISTEN/NOTIFY);
 *  - tells the store whether the database is reachable (/health).
 * On SQLite a node is one process: none of that runs, and GET /admin/nodes
 * lists the node from memory. */
#ifndef RESTOCKD_NODE_H
#define RESTOCKD_NODE_H

#include <stdbool.h>
#include <stddef.h>

#include "domain.h"

/* How often a node beats, and so how late a check or a retry of a node
 * that died runs at most, beyond its due time. */
#define NODE_BEAT_MS 1000
#define NODE_ID_MAX 160

typedef struct Node Node;

/* This process's node id, from RESTOCK_NODE_ID or made up. Returns 0, or -1
 * with why in err when RESTOCK_NODE_ID is not a usable id. */
int node_make_id(char out[NODE_ID_MAX], char *err, size_t err_len);
/* True when `id` names a node of this host, of the "HOST:PID:START" form,
 * whose process is gone (a predecessor's leases may be released). */
bool node_is_dead_here(const char *id);

/* A node of `d` (its store, loop, engine and outbox), named `id`, running
 * the script's Config `own` (its reference is taken). */
Node *node_new(Domain *d, const char *id, Config *own);
const char *node_id(const Node *n);
const char *node_started_at(const Node *n);
/* How many other nodes this one saw at its last heartbeat (0 for NULL). */
size_t node_peer_count(const Node *n);
/* Before store_start, on a shared store: registers the node and reads its
 * peers synchronously, so that a node is listed and knows the service's
 * handlers when it starts listening. Returns 0 or a negative code. */
int node_register(Node *n);
/* Starts the heartbeat (a no-op on SQLite). */
void node_start(Node *n);
/* A reloaded script: takes `own`'s reference, rebuilds the Config units
 * run with, and publishes the new handlers at once. */
void node_set_config(Node *n, Config *own);
/* Stops the heartbeat and removes the node's row (a clean stop). */
void node_stop(Node *n);
/* Frees the node once its timer has closed and no unit is in flight. */
void node_close(Node *n);

#endif
