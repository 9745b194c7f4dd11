#!/usr/bin/env python3
"""restockd's benchmark suite: `make bench` runs it against the release build.

Each scenario starts the real server on a fresh database in a temp dir, on
loopback, and measures one thing. HTTP load comes from wrk (Debian's
package); set-up that would take long through the API (a million stored
subscriptions) is written straight into SQLite with Python's sqlite3 module.
It prints one table: each figure, its target, and the ratio of each HTTP
rate to the /health ceiling measured in the same run.

Then the PostgreSQL section (issue 14): a throwaway cluster on the same
machine (spec/pg.sh, with PostgreSQL's durable defaults), subscribe on one
node against the same node's SQLite rate, the round trips and commits each
subscribe costs, a 100,000-subscriber restock across three nodes, and each
node's idle memory. BENCH_PG=0 skips it.
"""
import http.client
import http.server
import json
import os
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("RESTOCKD", os.path.join(ROOT, "build", "restockd"))
DURATION = os.environ.get("BENCH_DURATION", "5")
# The sustained subscribe pass, in seconds: long enough for the WAL to grow
# and be reset several times, and for checkpoints to land in it.
SUSTAINED = os.environ.get("BENCH_SUSTAINED", "60")
CONNS = 64
TOKEN = "bench-token"

NOOP_PLUGIN = 'local restock = require "restock"\n'

SUBSCRIBE_LUA = r"""
local counter = 0
local threads = 0
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
request = function()
  counter = counter + 1
  local body = '{"email":"shopper' .. tid .. '.' .. counter .. '@example.com"}'
  return wrk.format("POST", "/restock-notifications/variants/v1",
    {["Content-Type"] = "application/json"}, body)
end
"""


def now():
    return time.monotonic()


class Server:
    """One restockd process on a temp dir, port 0; on `db` (a PostgreSQL
    URI) if given, else a SQLite file in the dir."""

    def __init__(self, workdir, plugin=NOOP_PLUGIN, env=None, migrate=True,
                 db=None):
        self.dir = workdir
        self.db = db or os.path.join(workdir, "restock.db")
        self.plugin = os.path.join(workdir, "plugin.lua")
        with open(self.plugin, "w") as f:
            f.write(plugin)
        # Access lines off: a server at this load logs elsewhere (its proxy);
        # docs/performance.md gives what they cost.
        self.env = dict(os.environ, RESTOCK_ADMIN_TOKEN=TOKEN,
                        RESTOCK_ACCESS_LOG="off", **(env or {}))
        if migrate:
            subprocess.run([BIN, "migrations", "run", "--db", self.db],
                           check=True, stdout=subprocess.DEVNULL)
        self.proc = None

    def start(self):
        self.stderr = open(os.path.join(self.dir, "stderr.%d.log" % id(self)),
                           "ab")
        t0 = now()
        self.proc = subprocess.Popen(
            [BIN, "start", "--db", self.db, "--config", self.plugin, "--port",
             "0"], stdout=subprocess.PIPE, stderr=self.stderr, env=self.env)
        line = self.proc.stdout.readline().decode()
        self.startup_ms = (now() - t0) * 1000
        m = re.search(r"listening on http://([\d.]+):(\d+)", line)
        if not m:
            raise RuntimeError("no listening line: %r" % line)
        self.port = int(m.group(2))
        self.url = "http://127.0.0.1:%d" % self.port
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.stderr.close()

    def status(self, field):
        """A /proc/PID/status field in MB (VmRSS, VmHWM)."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
        return float("nan")

    def cpu(self):
        """CPU seconds the process has used so far, all its threads."""
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def thread_cpu(self):
        """CPU seconds by thread name: "loop" for the main thread (the event
        loop), the storage threads by the names they give themselves."""
        out = {}
        task = "/proc/%d/task" % self.proc.pid
        for tid in os.listdir(task):
            try:
                with open("%s/%s/stat" % (task, tid)) as f:
                    text = f.read()
            except OSError:
                continue
            name = text[text.index("(") + 1:text.rindex(")")]
            fields = text.rsplit(")", 1)[1].split()
            secs = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            if int(tid) == self.proc.pid:
                name = "loop"
            out[name] = out.get(name, 0) + secs
        return out

    def metric(self, name):
        """A value of GET /metrics."""
        c = self.conn()
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
        m = re.search(r"^%s(?:\{[^}]*\})? (\S+)$" % re.escape(name), text, re.M)
        return float(m.group(1)) if m else float("nan")

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def call(self, method, path, body=None, conn=None, raw=None):
        """`body` a value to send as JSON, or `raw` its text already."""
        c = conn or self.conn()
        headers = {"Authorization": "Bearer " + TOKEN}
        data = raw
        if body is not None:
            data = json.dumps(body)
        if data is not None:
            headers["Content-Type"] = "application/json"
        c.request(method, path, body=data, headers=headers)
        res = c.getresponse()
        out = json.loads(res.read() or b"null")
        if res.status >= 300:
            raise RuntimeError("%s %s: %d %s" % (method, path, res.status, out))
        if conn is None:
            c.close()
        return out


class Load:
    """What one wrk pass measured."""

    def __init__(self, rate, p99, requests, server_cpu, wrk_cpu, threads):
        self.rate, self.p99, self.requests = rate, p99, requests
        self.server_us = server_cpu / requests * 1e6
        self.wrk_us = wrk_cpu / requests * 1e6
        # CPU per request on each thread of the server.
        self.thread_us = {k: v / requests * 1e6 for k, v in threads.items()}


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def load(server, path, script=None, duration=DURATION):
    """One wrk pass against server, with the CPU time each side (and each
    thread of the server) spent, and the largest the WAL file grew to."""
    wal = server.db + "-wal"
    most = [0]
    done = threading.Event()

    def watch():
        while not done.wait(0.05):
            try:
                most[0] = max(most[0], os.path.getsize(wal))
            except OSError:
                pass

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    cpu0, wrk0, t0 = server.cpu(), children_cpu(), server.thread_cpu()
    commits0 = server.metric("restockd_store_commits_total")
    rate, p99, requests = wrk(server.url + path, script, duration)
    t1 = server.thread_cpu()
    result = Load(rate, p99, requests, server.cpu() - cpu0,
                  children_cpu() - wrk0,
                  {k: t1[k] - t0.get(k, 0) for k in t1})
    result.commits = server.metric("restockd_store_commits_total") - commits0
    done.set()
    watcher.join()
    result.wal_mb = most[0] / 1048576.0
    return result


def wrk(url, script=None, duration=DURATION):
    args = ["wrk", "-t2", "-c%d" % CONNS, "-d%ss" % duration, "--latency"]
    tmp = None
    if script:
        tmp = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        tmp.write(script)
        tmp.close()
        args += ["-s", tmp.name]
    out = subprocess.run(args + [url], capture_output=True, text=True,
                         check=True).stdout
    if tmp:
        os.unlink(tmp.name)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError("wrk saw %s error answers:\n%s" % (non2xx.group(1), out))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return rate, float(p99.group(1)) * scale, requests


def fill_subscriptions(db, variant, n, start=0):
    """Writes n active subscriptions of `variant` straight into the db."""
    con = sqlite3.connect(db)
    con.execute(
        "INSERT OR IGNORE INTO variants (id, inventory_quantity,"
        " allow_backorder, manage_inventory, created_at, updated_at)"
        " VALUES (?, 0, 0, 1, '2026-01-01T00:00:00.000Z',"
        " '2026-01-01T00:00:00.000Z')", (variant,))
    con.executemany(
        "INSERT INTO restock_subscriptions (variant_id, sales_channel_id,"
        " email, created_at) VALUES (?, '', ?, '2026-01-01T00:00:00.000Z')",
        ((variant, "stored%d@example.com" % i) for i in range(start, start + n)))
    con.commit()
    con.close()


def fill_variants(db, n):
    con = sqlite3.connect(db)
    con.executemany(
        "INSERT INTO variants (id, inventory_quantity, allow_backorder,"
        " manage_inventory, created_at, updated_at) VALUES (?, 0, 0, 1,"
        " '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
        (("bv%d" % i,) for i in range(n)))
    con.commit()
    con.close()


def wait_until(pred, timeout=60, step=0.005):
    deadline = now() + timeout
    while now() < deadline:
        if pred():
            return now()
        time.sleep(step)
    raise RuntimeError("timed out waiting")


def event_counts(server, conn):
    """(restocked events written, of them still pending)."""
    total = server.call(
        "GET", "/admin/events?name=restock-notification.restocked&limit=0",
        conn=conn)["count"]
    pending = server.call(
        "GET", "/admin/events?name=restock-notification.restocked"
        "&status=pending&limit=0", conn=conn)["count"]
    return total, pending


def restock_100k(workdir, plugin, env=None, on_ready=None, received=None):
    """Restocks a variant with 100,000 subscribers. Returns (seconds to the
    last event written, seconds to the last delivery done or request
    received, peak RSS MB)."""
    server = Server(workdir, plugin, env)
    fill_subscriptions(server.db, "hot", 100000)
    server.start()
    try:
        conn = server.conn()
        t0 = now()
        server.call("POST", "/admin/variants/hot", {"inventory_quantity": 5},
                    conn=conn)
        t_written = wait_until(lambda: event_counts(server, conn)[0] >= 100)
        if received is None:
            t_done = wait_until(lambda: event_counts(server, conn)[1] == 0)
        else:
            t_done = wait_until(lambda: received() >= 100)
        peak = server.status("VmHWM")
        return t_written - t0, t_done - t0, peak
    finally:
        server.stop()


def fill_demand(db, total=1000000, variants=10000):
    """`total` active subscriptions over `variants` variants, skewed as shops
    see it (a few variants wanted by many, a long tail), a third scoped to
    the sales channel "web"; written straight into the db, so migration
    011's triggers keep the demand counts as the server's writes do."""
    con = sqlite3.connect(db)
    con.execute("INSERT INTO sales_channels (id, name, created_at, updated_at)"
                " VALUES ('web', 'Web', '2026-01-01T00:00:00.000Z',"
                " '2026-01-01T00:00:00.000Z')")
    con.executemany(
        "INSERT INTO variants (id, title, sku, inventory_quantity,"
        " allow_backorder, manage_inventory, created_at, updated_at)"
        " VALUES (?, ?, ?, 0, 0, 1, '2026-01-01T00:00:00.000Z',"
        " '2026-01-01T00:00:00.000Z')",
        (("dv%d" % i, "Variant %d" % i, "SKU-%d" % i) for i in range(variants)))
    weights = [1.0 / (i + 1) ** 0.6 for i in range(variants)]
    scale = total / sum(weights)
    counts = [max(1, int(w * scale)) for w in weights]
    counts[0] += total - sum(counts)

    def rows():
        n = 0
        for i, c in enumerate(counts):
            for k in range(c):
                n += 1
                yield ("dv%d" % i, "web" if n % 3 == 0 else "",
                       "d%d.%d@example.com" % (i, k))

    con.executemany(
        "INSERT INTO restock_subscriptions (variant_id, sales_channel_id,"
        " email, created_at) VALUES (?, ?, ?, '2026-01-01T00:00:00.000Z')",
        rows())
    con.commit()
    # What the report would cost without the counts: one grouped pass over
    # every subscription (through the scope index), per request.
    t0 = now()
    con.execute("SELECT variant_id, count(*) FROM restock_subscriptions"
                " GROUP BY variant_id ORDER BY 2 DESC LIMIT 50").fetchall()
    grouped = now() - t0
    con.close()
    return grouped


def demand_report(workdir, repeat=200):
    """The demand report over 1,000,000 subscriptions of 10,000 variants:
    (median ms, p99 ms) of the first page, of the "web" channel's first
    page, of the last page, and the ms of the grouped query it replaces."""
    server = Server(workdir)
    grouped = fill_demand(server.db)
    server.start()
    try:
        conn = server.conn()
        out = []
        for path in ("/admin/reports/demand",
                     "/admin/reports/demand?sales_channel_id=web",
                     "/admin/reports/demand?offset=9950"):
            first = server.call("GET", path, conn=conn)
            if not first["variants"] or first["count"] < 9000:
                raise RuntimeError("demand report: %s gave %r" % (path, first["count"]))
            times = []
            for _ in range(repeat):
                t0 = now()
                server.call("GET", path, conn=conn)
                times.append((now() - t0) * 1000)
            times.sort()
            out.append((statistics.median(times), times[int(len(times) * 0.99) - 1]))
        return out, grouped * 1000
    finally:
        server.stop()


def demand_rows(demand, grouped_ms):
    """The report read from its counts, against the grouped query over every
    subscription that the counts replace (measured on the same data)."""
    (top, top99), (web, web99), (last, last99) = demand

    def vs(ms):
        return "%.2f ms median (%.1fx faster than grouping)" % (ms, grouped_ms / ms)
    return [
        ("demand report, 1,000,000 subscriptions over 10,000 variants: "
         "first page of 50", "< 1/4 of the grouped query",
         "%s, p99 %.2f ms" % (vs(top), top99), ""),
        ("demand report, the same, one sales channel",
         "< 1/4 of the grouped query", "%s, p99 %.2f ms" % (vs(web), web99), ""),
        ("demand report, the same, the last page (offset 9,950)", "printed",
         "%s, p99 %.2f ms" % (vs(last), last99), ""),
        ("the grouped query the counts replace (GROUP BY over every "
         "subscription, per request)", "printed", "%.0f ms" % grouped_ms, ""),
    ]


class FakeServer(http.server.ThreadingHTTPServer):
    # restockd opens up to 16 connections to one host at once; the default
    # backlog of 5 would refuse some of them.
    request_queue_size = 128
    daemon_threads = True


class FakeSendGrid(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    requests = 0
    recipients = 0
    lock = threading.Lock()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with FakeSendGrid.lock:
            FakeSendGrid.requests += 1
            FakeSendGrid.recipients += len(body["personalizations"])
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class PgCluster:
    """A throwaway PostgreSQL cluster (spec/pg.sh) with its defaults'
    durability, on this machine's cores."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="restockd-benchpg.")
        out = subprocess.run(
            ["sh", os.path.join(ROOT, "spec", "pg.sh"), "start", self.dir],
            capture_output=True, text=True, check=True,
            env=dict(os.environ, PG_DURABLE="1"))
        self.uri = out.stdout.strip()
        self.count = 0
        # A database in service writes its WAL into segments it recycles; a
        # new cluster creates and zero-fills each 16 MB segment the first
        # time, in the backend that needs it (XLogFileInit in perf: a
        # commit that waits for it stalls, and about 0.4 s of a 3-node
        # restock went there). 200 MB of WAL written and checkpointed here
        # leave the cluster with segments to recycle, as one in service has.
        self.psql(self.uri, "CREATE TABLE bench_warm AS SELECT g,"
                  " repeat('x', 120) AS t FROM generate_series(1, 1000000) g")
        self.psql(self.uri, "DROP TABLE bench_warm")
        self.psql(self.uri, "CHECKPOINT")

    def schema(self):
        """A fresh schema of the cluster's database, as a URI."""
        self.count += 1
        name = "bench%d" % self.count
        self.psql(self.uri, "CREATE SCHEMA %s" % name)
        return "%s?options=-csearch_path%%3D%s" % (self.uri, name)

    def psql(self, uri, sql):
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", uri,
                        "-c", sql], check=True, stdout=subprocess.DEVNULL)

    def wal_lsn(self):
        return subprocess.run(
            ["psql", "-X", "-At", self.uri, "-c",
             "SELECT pg_current_wal_lsn()"],
            check=True, capture_output=True, text=True).stdout.strip()

    def wal_since(self, lsn):
        """Bytes of WAL written since `lsn`."""
        return float(subprocess.run(
            ["psql", "-X", "-At", self.uri, "-c",
             "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '%s')" % lsn],
            check=True, capture_output=True, text=True).stdout)

    def cpu(self):
        """CPU seconds the cluster's processes (the postmaster and its
        children, the backends) have used so far."""
        with open(os.path.join(self.dir, "data", "postmaster.pid")) as f:
            master = f.readline().strip()
        total = 0.0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % pid) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if pid == master or fields[1] == master:
                total += (int(fields[11]) + int(fields[12])) / \
                    os.sysconf("SC_CLK_TCK")
        return total

    def stop(self):
        subprocess.run(["sh", os.path.join(ROOT, "spec", "pg.sh"), "stop",
                        self.dir], check=False)


def pg_section(workdir, sqlite_sub):
    """The PostgreSQL figures, as table rows."""
    pg = PgCluster()
    try:
        # Subscribe on one node: rate, p99, and what each subscribe cost
        # in round trips and commits, read from /metrics.
        db = pg.schema()
        srv = Server(workdir("pg-sub"), db=db).start()
        srv.call("POST", "/admin/variants", {"id": "v1"})
        before = {k: srv.metric(k) for k in (
            "restockd_store_round_trips_total", "restockd_store_commits_total",
            "restockd_store_writes_total")}
        pg0 = pg.cpu()
        pg_sub = load(srv, "/", SUBSCRIBE_LUA)
        pg_cpu = pg.cpu() - pg0
        after = {k: srv.metric(k) for k in before}
        srv.stop()
        subs = pg_sub.requests
        trips = (after["restockd_store_round_trips_total"] -
                 before["restockd_store_round_trips_total"]) / subs
        commits = (after["restockd_store_commits_total"] -
                   before["restockd_store_commits_total"]) / subs

        # Idle memory of a node on PostgreSQL.
        db = pg.schema()
        srv = Server(workdir("pg-idle"), db=db).start()
        time.sleep(1.5)  # a heartbeat or two
        pg_idle = srv.status("VmRSS")
        srv.stop()

        # 100,000 subscribers restocked across three nodes, no-op handler.
        db = pg.schema()
        subprocess.run([BIN, "migrations", "run", "--db", db], check=True,
                       stdout=subprocess.DEVNULL)
        pg.psql(db, "INSERT INTO variants (id, inventory_quantity,"
                " created_at, updated_at) VALUES ('hot', 0, now(), now());"
                " INSERT INTO restock_subscriptions (id, variant_id,"
                " sales_channel_id, email, created_at) SELECT"
                " nextval('restock_subscription_ids'), 'hot', '', 'stored' || i"
                " || '@example.com', now() FROM generate_series(1, 100000) i")
        # As on a database that has been running: the statistics current
        # (autovacuum would otherwise analyze the new rows in the middle
        # of the restock) and the fill checkpointed (its pages written, its
        # WAL segments free for the restock to recycle; see PgCluster).
        pg.psql(db, "VACUUM ANALYZE restock_subscriptions, variants")
        pg.psql(db, "CHECKPOINT")
        wal0 = pg.wal_lsn()
        plugin = NOOP_PLUGIN + ('restock.subscribe('
                                '"restock-notification.restocked",'
                                ' function() end)\n')
        nodes = [Server(workdir("pg-node%d" % i), plugin, migrate=False,
                        db=db, env={"RESTOCK_NODE_ID": "bench-%d" % i})
                 for i in range(3)]
        for n in nodes:
            n.start()
        try:
            conn = nodes[0].conn()
            t0 = now()
            nodes[0].call("POST", "/admin/variants/hot",
                          {"inventory_quantity": 5}, conn=conn)
            t_written = wait_until(
                lambda: event_counts(nodes[0], conn)[0] >= 100)
            t_done = wait_until(lambda: event_counts(nodes[0], conn)[1] == 0)
            ran = [n.metric('restockd_events_delivered_total'
                            '{event="restock-notification.restocked"}')
                   for n in nodes]
            wal_mb = pg.wal_since(wal0) / 1048576.0
        finally:
            for n in nodes:
                n.stop()
    finally:
        pg.stop()
    shares = "/".join("%.0f" % r for r in ran)
    return [
        ("PostgreSQL: subscribe, one node, 64 conns",
         ">= 0.5 of the same node's SQLite rate; p99 < 10 ms",
         "%.0f req/s, p99 %.2f ms (%.2f of SQLite's %.0f req/s)" % (
             pg_sub.rate, pg_sub.p99, pg_sub.rate / sqlite_sub, sqlite_sub),
         ""),
        ("PostgreSQL: round trips and commits per subscribe", "well under 1",
         "%.3f round trips, %.3f commits (%.0f subscribes per commit)" % (
             trips, commits, 1 / commits if commits else 0), ""),
        ("PostgreSQL: CPU per subscribe", "printed",
         "restockd %.1f us, PostgreSQL %.1f us, wrk %.1f us" % (
             pg_sub.server_us, pg_cpu / subs * 1e6, pg_sub.wrk_us), ""),
        ("PostgreSQL: restock 100,000 across 3 nodes, no-op handler",
         "all delivered < 2 s",
         "%.3f s (events written %.3f s; deliveries by node %s; "
         "%.0f MB of WAL)" % (t_done - t0, t_written - t0, shares, wal_mb),
         ""),
        ("PostgreSQL: resident memory per node, idle", "< 12 MB",
         "%.1f MB" % pg_idle, ""),
    ]
def smtp_10k(workdir):
    """Restocks a variant with 10,000 subscribers through scripts/smtp.lua
    to a local SMTP server (python3-aiosmtpd, counting only). Returns
    (seconds to the last message accepted, peak RSS MB, restockd's CPU
    seconds, the SMTP server's CPU seconds)."""
    count_file = os.path.join(workdir, "smtp.count")
    port_file = os.path.join(workdir, "smtp.port")
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") \
        else sys.executable
    smtpd = subprocess.Popen(
        [python, os.path.join(ROOT, "spec", "support", "smtp_server.py"),
         "--count-only", "--count-file", count_file, "--port-file",
         port_file, "--lifetime", "600"], stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: os.path.exists(port_file), timeout=10)
        with open(port_file) as f:
            port = int(f.read())
        server = Server(workdir, NOOP_PLUGIN + (
            'require("smtp").setup { url = "smtp://127.0.0.1:%d",'
            ' from = "Bench Shop <shop@example.com>",'
            ' public_url = "https://restock.example.com" }\n' % port))
        fill_subscriptions(server.db, "hot", 10000)
        server.start()
        try:
            cpu0 = server.cpu()
            t0 = now()
            server.call("POST", "/admin/variants/hot",
                        {"inventory_quantity": 5})

            def received():
                try:
                    with open(count_file) as f:
                        return int(f.read() or 0)
                except (OSError, ValueError):
                    return 0
            t_done = wait_until(lambda: received() >= 10000, timeout=600,
                                step=0.02)
            with open("/proc/%d/stat" % smtpd.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            smtpd_cpu = (int(fields[11]) + int(fields[12])) / \
                os.sysconf("SC_CLK_TCK")
            return (t_done - t0, server.status("VmHWM"),
                    server.cpu() - cpu0, smtpd_cpu)
        finally:
            server.stop()
    finally:
        smtpd.terminate()
        smtpd.wait(timeout=10)


def export_million(workdir):
    """GET /admin/restock-notifications/export of 1,000,000 rows, read as
    fast as a client can: (seconds, rows, MB, the server's peak RSS in MB,
    its RSS before)."""
    srv = Server(workdir)
    fill_subscriptions(srv.db, "v0", 1000000)
    srv.start()
    time.sleep(0.2)
    before = srv.status("VmRSS")
    c = srv.conn()
    t0 = now()
    c.request("GET", "/admin/restock-notifications/export",
              headers={"Authorization": "Bearer " + TOKEN})
    res = c.getresponse()
    if res.status != 200:
        raise RuntimeError("export: %d" % res.status)
    rows = size = 0
    while True:
        chunk = res.read(1 << 16)
        if not chunk:
            break
        size += len(chunk)
        rows += chunk.count(b"\n")
    elapsed = now() - t0
    peak = srv.status("VmHWM")
    c.close()
    srv.stop()
    if rows != 1000001:
        raise RuntimeError("export: %d lines" % rows)
    return elapsed, rows - 1, size / 1048576.0, peak, before


def main():
    if os.environ.get("BENCH_ONLY") == "smtp":
        # Only the SMTP restock (BENCH_ONLY=smtp python3 bench/run.py).
        base = tempfile.mkdtemp(prefix="restockd-bench-")
        try:
            secs, peak, cpu, smtpd_cpu = smtp_10k(base)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        print("| restock 10,000 via smtp.lua to a local SMTP server | "
              "printed | %.2f s (%.0f mails/s), peak RSS %.1f MB, CPU: "
              "restockd %.1f s, the SMTP server %.1f s |"
              % (secs, 10000 / secs, peak, cpu, smtpd_cpu))
        return
    if not os.path.exists(BIN):
        sys.exit("bench: build %s first (make bench does)" % BIN)
    if os.environ.get("BENCH_ONLY") == "postgres":
        # The PostgreSQL section alone, after the SQLite subscribe pass its
        # ratio needs (BENCH_ONLY=postgres python3 bench/run.py).
        base = tempfile.mkdtemp(prefix="restockd-bench-")
        try:
            seq = [0]

            def pg_workdir(name):
                seq[0] += 1
                d = os.path.join(base, "%s%d" % (name, seq[0]))
                os.makedirs(d)
                return d
            srv = Server(pg_workdir("http")).start()
            srv.call("POST", "/admin/variants", {"id": "v1"})
            sub = load(srv, "/", SUBSCRIBE_LUA).rate
            srv.stop()
            pg_rows = pg_section(pg_workdir, sub)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        print("| measure | target | result | / health |")
        print("| --- | --- | --- | --- |")
        for r in pg_rows:
            print("| %s | %s | %s | %s |" % r)
        return
    if os.environ.get("BENCH_ONLY") == "demand":
        # One scenario alone: BENCH_ONLY=demand python3 bench/run.py
        base = tempfile.mkdtemp(prefix="restockd-bench-")
        try:
            os.makedirs(os.path.join(base, "demand"))
            demand, grouped_ms = demand_report(os.path.join(base, "demand"))
        finally:
            shutil.rmtree(base, ignore_errors=True)
        print("| measure | target | result | / health |")
        print("| --- | --- | --- | --- |")
        for r in demand_rows(demand, grouped_ms):
            print("| %s | %s | %s | %s |" % r)
        return
    rows = []
    base = tempfile.mkdtemp(prefix="restockd-bench-")
    cores = os.cpu_count()

    def workdir(name):
        d = os.path.join(base, name)
        os.makedirs(d)
        return d

    try:
        # Start-up and idle memory.
        srv = Server(workdir("idle"))
        times = []
        for _ in range(5):
            srv.start()
            times.append(srv.startup_ms)
            time.sleep(0.2)
            idle = srv.status("VmRSS")
            srv.stop()
        startup = statistics.median(times)

        # The /health ceiling and subscribe on an empty database.
        srv = Server(workdir("http")).start()
        srv.call("POST", "/admin/variants", {"id": "v1"})
        health_load = load(srv, "/health")
        sub_load = load(srv, "/", SUBSCRIBE_LUA)
        health, health_p99 = health_load.rate, health_load.p99
        sub, sub_p99 = sub_load.rate, sub_load.p99
        srv.stop()

        # Subscribe with double opt-in: each writes a pending row and a
        # confirmation_requested event.
        srv = Server(workdir("optin"), NOOP_PLUGIN +
                     'restock.options { double_opt_in = true }\n').start()
        srv.call("POST", "/admin/variants", {"id": "v1"})
        optin_load = load(srv, "/", SUBSCRIBE_LUA)
        srv.stop()

        # Subscribe, sustained: the WAL grows, is checkpointed and reset
        # under load, and p99 says whether any of that reaches a request.
        srv = Server(workdir("sustained")).start()
        srv.call("POST", "/admin/variants", {"id": "v1"})
        long_load = load(srv, "/", SUBSCRIBE_LUA, SUSTAINED)
        long_wal = srv.metric("restockd_wal_max_bytes") / 1048576.0
        srv.stop()

        # Subscribe with durability "full": each group commit is fsynced.
        srv = Server(workdir("full"), NOOP_PLUGIN +
                     'restock.options { durability = "full" }\n').start()
        srv.call("POST", "/admin/variants", {"id": "v1"})
        full_load = load(srv, "/", SUBSCRIBE_LUA)
        srv.stop()

        # Subscribe with a million subscriptions already stored, against
        # passes on an empty database run just before and just after it:
        # the machine's speed drifts during the bench, and against the first
        # subscribe pass, a minute and a half earlier, the figure moved by
        # more than the 10% it is there to check.
        def empty_subscribe(name):
            s = Server(workdir(name)).start()
            s.call("POST", "/admin/variants", {"id": "v1"})
            rate = load(s, "/", SUBSCRIBE_LUA).rate
            s.stop()
            return rate
        srv = Server(workdir("million"))
        fill_subscriptions(srv.db, "v0", 1000000)
        empty_before = empty_subscribe("million-before")
        srv.start()
        srv.call("POST", "/admin/variants", {"id": "v1"})
        sub_m_load = load(srv, "/", SUBSCRIBE_LUA)
        sub_m, sub_m_p99 = sub_m_load.rate, sub_m_load.p99
        srv.stop()
        sub_empty = (empty_before + empty_subscribe("million-after")) / 2

        # Restock of one variant with 100,000 subscribers, to a handler that
        # does nothing.
        written, delivered, peak = restock_100k(
            workdir("restock"), NOOP_PLUGIN + (
                'restock.subscribe("restock-notification.restocked",'
                ' function() end)\n'))

        # The same through scripts/sendgrid.lua to a local fake SendGrid.
        fake = FakeServer(("127.0.0.1", 0), FakeSendGrid)
        threading.Thread(target=fake.serve_forever, daemon=True).start()
        sg_written, sg_received, sg_peak = restock_100k(
            workdir("sendgrid"),
            NOOP_PLUGIN + 'require("sendgrid").setup { from = "shop@example.com",'
            ' template_id = "d-bench" }\n',
            env={"SENDGRID_API_KEY": "SG.bench",
                 "SENDGRID_API_URL": "http://127.0.0.1:%d" % fake.server_port},
            received=lambda: FakeSendGrid.requests)
        fake.shutdown()
        if FakeSendGrid.recipients != 100000:
            raise RuntimeError("fake SendGrid saw %d recipients"
                               % FakeSendGrid.recipients)

        # 10,000 shoppers through scripts/smtp.lua to a local SMTP server.
        smtp_secs, smtp_peak, smtp_cpu, smtpd_cpu = smtp_10k(workdir("smtp"))

        # 100,000 inventory updates in 10 batch requests of 10,000.
        srv = Server(workdir("batch"))
        fill_variants(srv.db, 100000)
        srv.start()
        conn = srv.conn()
        # The bodies are encoded before the clock starts: Python's
        # json.dumps of the ten took 0.1 s, a tenth of the target.
        bodies = [json.dumps({"updates": [
            {"variant_id": "bv%d" % i, "inventory_quantity": 7}
            for i in range(b * 10000, (b + 1) * 10000)]}) for b in range(10)]
        t0 = now()
        for body in bodies:
            srv.call("POST", "/admin/inventory/batch", raw=body, conn=conn)
        batch = now() - t0
        srv.stop()

        pg_rows = []
        if os.environ.get("BENCH_PG", "1") != "0":
            pg_rows = pg_section(workdir, sub)
        # The export of a million subscriptions.
        exp_s, exp_rows, exp_mb, exp_peak, exp_before = export_million(
            workdir("export"))

        # The demand report (GET /admin/reports/demand) over a million
        # subscriptions.
        demand, grouped_ms = demand_report(workdir("demand"))
    finally:
        shutil.rmtree(base, ignore_errors=True)

    def ratio(rate):
        return "%.2f" % (rate / health)

    rows = [
        ("GET /health, keep-alive, 64 conns", "the ceiling",
         "%.0f req/s, p99 %.2f ms" % (health, health_p99), "1.00"),
        ("subscribe, unique emails, 64 conns",
         ">= 40,000 req/s, >= 0.5 of /health, p99 < 5 ms",
         "%.0f req/s, p99 %.2f ms" % (sub, sub_p99), ratio(sub)),
        ("subscribe, double_opt_in on", "printed",
         "%.0f req/s, p99 %.2f ms" % (optin_load.rate, optin_load.p99),
         ratio(optin_load.rate)),
        ("subscribe, 1,000,000 stored", "within 10% of empty",
         "%.0f req/s, p99 %.2f ms (%+.0f%% against %.0f req/s on an empty"
         " database just before and after)" % (
             sub_m, sub_m_p99, (sub_m / sub_empty - 1) * 100, sub_empty),
         ratio(sub_m)),
        ("restock 100,000: check + event writes", "< 0.5 s",
         "%.3f s" % written, ""),
        ("restock 100,000: 100 events delivered (no-op handler)", "< 1 s",
         "%.3f s" % delivered, ""),
        ("restock 100,000 via sendgrid.lua: 100 requests received", "< 2 s",
         "%.3f s" % sg_received, ""),
        ("restock 10,000 via smtp.lua: every mail accepted by a local "
         "SMTP server", "printed", "%.2f s (%.0f mails/s), peak RSS %.1f MB, "
         "CPU restockd %.1f s, SMTP server %.1f s"
         % (smtp_secs, 10000 / smtp_secs, smtp_peak, smtp_cpu, smtpd_cpu),
         ""),
        ("inventory batch: 100,000 updates in 10 requests", "< 1 s",
         "%.3f s" % batch, ""),
        ("subscribe, sustained %s s" % SUSTAINED, "p99 < 5 ms",
         "%.0f req/s, p99 %.2f ms" % (long_load.rate, long_load.p99),
         ratio(long_load.rate)),
        ("WAL file, largest during the sustained pass",
         "bounded (the writer resets it past 32 MiB)",
         "%.0f MiB (file), %.0f MiB (restockd_wal_max_bytes)" % (
             long_load.wal_mb, long_wal), ""),
        ("subscribe, durability \"full\" (an fsync per group commit)",
         "printed", "%.0f req/s, p99 %.2f ms" % (full_load.rate,
                                                  full_load.p99),
         ratio(full_load.rate)),
        ("subscribes per commit (group commit)", "printed",
         "%.1f (sustained pass), %.1f (durability full)" % (
             long_load.requests / max(long_load.commits, 1),
             full_load.requests / max(full_load.commits, 1)), ""),
        ("resident memory, idle", "< 10 MB", "%.1f MB" % idle, ""),
        ("resident memory, peak in the 100,000 restock", "< 64 MB",
         "%.1f MB (sendgrid run %.1f MB)" % (peak, sg_peak), ""),
        ("export, 1,000,000 rows as CSV", "memory flat in the row count",
         "%.2f s, %.0f rows/s, %.0f MiB; peak RSS %.1f MB (%.1f MB before)"
         % (exp_s, exp_rows / exp_s, exp_mb, exp_peak, exp_before), ""),
        ("start-up to listening", "< 50 ms", "%.1f ms (median of 5)" % startup,
         ""),
    ] + demand_rows(demand, grouped_ms) + pg_rows
    print("restockd benchmark: %d cores, %s s per wrk run, access log off, %s"
          % (cores, DURATION, BIN))
    print()
    print("| measure | target | result | / health |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print("| %s | %s | %s | %s |" % r)
    # Where the time goes: server and wrk share these cores, so a route's
    # rate can never pass cores / (server + wrk CPU per request).
    print()
    print("| CPU per request | restockd (all threads) | wrk | "
          "most the %d cores allow |" % cores)
    print("| --- | --- | --- | --- |")
    for name, l in (("GET /health", health_load), ("subscribe", sub_load),
                    ("subscribe, 1,000,000 stored", sub_m_load)):
        print("| %s | %.1f us | %.1f us | %.0f req/s |" % (
            name, l.server_us, l.wrk_us,
            cores * 1e6 / (l.server_us + l.wrk_us)))
    # The event loop's own share: the target is a subscribe costing the loop
    # at most twice what a /health does.
    print()
    names = sorted({k for l in (health_load, sub_load, long_load)
                    for k in l.thread_us})
    print("| CPU per request, by thread | " + " | ".join(names) + " |")
    print("| --- |" + " --- |" * len(names))
    for name, l in (("GET /health", health_load), ("subscribe", sub_load),
                    ("subscribe, sustained", long_load)):
        print("| %s | " % name + " | ".join(
            "%.1f us" % l.thread_us.get(k, 0) for k in names) + " |")
    print()
    print("loop CPU per subscribe / per /health: %.2f (target <= 2)" % (
        sub_load.thread_us.get("loop", 0) /
        max(health_load.thread_us.get("loop", 1e-9), 1e-9)))


if __name__ == "__main__":
    main()
