#!/usr/bin/python3
"""Browser tests of the storefront widget and the console, in headless
Chromium driven by Selenium (Debian's chromium, chromium-driver and
python3-selenium).

It starts the real server (build/asan/restockd unless RESTOCKD says
otherwise) on a free port with a fresh database, and a second HTTP server on
another port serving a storefront page: another origin, as a shop's pages
are. Each test prints "ok - NAME" or "FAIL - NAME" with the reason; the last
line is "browser: N passed, N failed", which spec/run.sh adds to the suite's
total. Screenshots of the widget and of each console page are written to
build/screenshots/ (not committed) for a reviewer to look at.

Run it alone with: /usr/bin/python3 spec/browser/run.py
"""
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.path.join(ROOT, os.environ.get("RESTOCKD", "build/asan/restockd"))
SHOTS = os.path.join(ROOT, "build", "screenshots")
TOKEN = "browser-test-token"
WAIT = 10  # seconds any one condition may take
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer",
                     "WARNING: ThreadSanitizer")
# A title that would run a script if the console put it in as markup.
XSS_TITLE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>Hat'


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Restockd:
    """The server under test, on a fresh database in `tmp`."""

    def __init__(self, tmp, shop_origin, options=""):
        tmp = os.path.join(tmp, "restockd-%d" % len(os.listdir(tmp)))
        os.makedirs(tmp)
        self.tmp = tmp
        self.db = os.path.join(tmp, "restock.db")
        self.fail_flag = os.path.join(tmp, "mailer-down")
        plugin = os.path.join(tmp, "plugin.lua")
        with open(plugin, "w") as f:
            f.write(f"""
local restock = require "restock"
restock.options {{ store_cors = "{shop_origin}" {options} }}
-- A mail service that is down while the flag file exists: its deliveries
-- die at once (one attempt), and succeed once retried after it is back.
restock.subscribe("restock-notification.restocked", function(data)
  local f = io.open({json.dumps(self.fail_flag)}, "r")
  if f then
    f:close()
    error("the mail service is down")
  end
end, {{ name = "mailer", max_attempts = 1 }})
""")
        self.env = dict(os.environ)
        for k in ("RESTOCK_DB", "RESTOCK_CONFIG", "HOST", "PORT", "RESTOCK_SECRET"):
            self.env.pop(k, None)
        self.env["RESTOCK_ADMIN_TOKEN"] = TOKEN
        self.env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
        self.env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        subprocess.run([BINARY, "migrations", "run", "--db", self.db], env=self.env,
                       check=True, stdout=subprocess.DEVNULL)
        self.err = open(os.path.join(tmp, "restockd.stderr"), "w+")
        self.proc = subprocess.Popen(
            [BINARY, "start", "--db", self.db, "--config", plugin, "--port", "0"],
            env=self.env, stdout=subprocess.PIPE, stderr=self.err, text=True)
        line = self.proc.stdout.readline()
        if "listening on http://" not in line:
            raise RuntimeError("restockd did not start: " + line + self.stderr())
        self.url = line.split("listening on ")[1].strip()

    def stderr(self):
        self.err.flush()
        with open(self.err.name) as f:
            return f.read()

    def api(self, method, path, body=None, headers=None):
        """An admin request with the bearer token: (status, JSON)."""
        h = {"Authorization": "Bearer " + TOKEN}
        h.update(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, headers=h, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as res:
                return res.status, json.loads(res.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def subscribe(self, variant, email):
        req = urllib.request.Request(
            self.url + "/restock-notifications/variants/" + variant,
            data=json.dumps({"email": email}).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as res:
            assert res.status == 201, res.status

    def stop(self):
        """SIGTERM; returns a problem (a bad exit, a sanitizer report) or None."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return "restockd did not exit on SIGTERM"
        text = self.stderr()
        for m in SANITIZER_MARKERS:
            if m in text:
                return "restockd reported " + m + ":\n" + text[-4000:]
        if rc != 0:
            return f"restockd exited {rc}:\n" + text[-2000:]
        return None


class Shop:
    """A storefront on another origin: a static page with two widgets and a
    plain form, served from `tmp`/shop."""

    def __init__(self, tmp, port):
        self.dir = os.path.join(tmp, "shop")
        os.makedirs(self.dir)
        self.port = port
        self.origin = f"http://127.0.0.1:{port}"
        directory = self.dir

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=directory, **kw)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def page(self, name, html):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(html)
        return self.origin + "/" + name

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def chromium(user_data_dir):
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900",
                 "--user-data-dir=" + user_data_dir):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


class Suite:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.shots = []

    def test(self, name, fn):
        try:
            fn()
        except Exception as e:  # a failed assertion or a driver error
            self.failed += 1
            detail = "".join(traceback.format_exception_only(type(e), e)).strip()
            print(f"FAIL - {name}\n  {detail}")
            tb = traceback.extract_tb(e.__traceback__)
            for frame in tb[-3:]:
                print(f"  at {os.path.basename(frame.filename)}:{frame.lineno} {frame.line}")
        else:
            self.passed += 1
            print(f"ok - {name}")
        sys.stdout.flush()


def wait(driver, cond, what):
    return WebDriverWait(driver, WAIT).until(lambda d: cond(d), message=what)


def until(cond, what, timeout=WAIT):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def main():
    suite = Suite()
    tmp = tempfile.mkdtemp(prefix="restockd-browser.")
    os.makedirs(SHOTS, exist_ok=True)
    shop = server = driver = None
    try:
        shop = Shop(tmp, free_port())
        server = Restockd(tmp, shop.origin)
        driver = chromium(os.path.join(tmp, "chromium-profile"))

        def shot(name):
            path = os.path.join(SHOTS, name + ".png")
            driver.save_screenshot(path)
            suite.shots.append(os.path.relpath(path, ROOT))

        seed(server)
        storefront(suite, server, shop, driver, shot)
        console(suite, server, shop, driver, shot)
    except Exception:
        suite.failed += 1
        print("FAIL - the browser tests could not run")
        traceback.print_exc(limit=5)
    finally:
        if driver:
            try:
                driver.quit()
            except Exception:
                pass
        if server:
            problem = server.stop()
            if problem:
                suite.failed += 1
                print("FAIL - restockd stops cleanly\n  " + problem)
        if shop:
            shop.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if suite.shots:
        print("screenshots: " + " ".join(suite.shots))
    print(f"browser: {suite.passed} passed, {suite.failed} failed")
    return 0 if suite.failed == 0 else 1


# The demand the console must rank: variant -> shoppers waiting.
SEEDED = {"hoodie-m": 5, "cap": 3, "xss-hat": 2, "socks": 1}


def seed(server):
    variants = [
        {"id": "hoodie-m", "title": "Hoodie, M", "sku": "HO-M"},
        {"id": "cap", "title": "Cap", "sku": "CAP-1"},
        {"id": "xss-hat", "title": XSS_TITLE, "sku": "<b>sku</b>"},
        {"id": "socks", "title": "Socks"},
        {"id": "sold-out-1", "title": "Rain jacket, S"},
        {"id": "plain-form", "title": "Wool scarf"},
        {"id": "in-stock", "title": "T-shirt", "inventory_quantity": 12},
        {"id": "dead-one", "title": "Boots"},
    ]
    status, j = server.api("POST", "/admin/variants", {"variants": variants})
    assert status == 200, j
    for variant, n in SEEDED.items():
        for i in range(n):
            server.subscribe(variant, f"shopper{i}@example.com")
    server.subscribe("cap", "erase-me@example.com")
    server.subscribe("socks", "erase-me@example.com")
    SEEDED["cap"] += 1
    SEEDED["socks"] += 1


def subscriptions(server, variant, email=None):
    q = "?variant_id=" + variant + ("&email=" + email if email else "")
    status, j = server.api("GET", "/admin/restock-notifications" + q)
    assert status == 200, j
    return j["restock_notifications"]


def storefront(suite, server, shop, driver, shot):
    page = shop.page("product.html", f"""<!doctype html>
<html lang="de"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>A shop</title>
<style>body{{font:16px/1.5 Georgia,serif;max-width:40em;margin:2em auto;padding:0 1em}}
form{{border:0}} button{{background:red}} .product{{border-top:1px solid #ccc;padding:1em 0}}</style>
<script src="{server.url}/widget.js" defer></script>
</head><body>
<h1>Rain jacket, S</h1>
<div class="product">
  <p>Sold out.</p>
  <div id="w1" data-restock-variant="sold-out-1" data-restock-locale="" data-restock-quantity="ask"></div>
</div>
<div class="product">
  <h2>T-shirt</h2>
  <div id="w2" data-restock-variant="in-stock" data-restock-button="Tell me"></div>
</div>
<div class="product">
  <h2>Wool scarf</h2>
  <form id="w3" data-restock-variant="plain-form" method="post"
        action="{server.url}/restock-notifications/variants/plain-form">
    <label for="w3-email">Email</label>
    <input id="w3-email" type="email" name="email" required>
    <input type="hidden" name="locale" value="de">
    <button type="submit">Notify me</button>
  </form>
</div>
</body></html>
""")

    def widgets_render():
        driver.get(page)
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#w1 form.rstk-form"),
             "the first widget's form")
        for w in ("#w1", "#w2", "#w3"):
            form = driver.find_element(By.CSS_SELECTOR, w + (" form" if w != "#w3" else ""))
            email = form.find_element(By.CSS_SELECTOR, "input[name=email]")
            label = driver.find_elements(By.CSS_SELECTOR, f"label[for='{email.get_attribute('id')}']")
            assert label and label[0].text.strip(), w + ": the email field has no label"
            status = form.find_element(By.CSS_SELECTOR, ".rstk-status")
            assert status.get_attribute("aria-live") == "polite", w
            assert form.find_elements(By.CSS_SELECTOR, "button"), w + ": no button"
        assert driver.find_element(By.CSS_SELECTOR, "#w2 button").text == "Tell me"
        assert driver.find_elements(By.CSS_SELECTOR, "#w1 input[name=quantity]"), "no quantity field"
        # One namespace, and styles that name only the widget's classes.
        names = driver.execute_script(
            "return Object.keys(window).filter(function (k) { return /restock/i.test(k); });")
        assert names == ["RestockWidget"], names
        css = driver.execute_script("return document.getElementById('rstk-style').textContent;")
        for rule in css.replace("}", "}\n").splitlines():
            selector = rule.split("{")[0]
            for part in selector.split(","):
                assert part.strip().startswith(".rstk-"), "a global selector: " + part
        # The shop's own red buttons stay red: the widget's are its own.
        shot("widget")

    suite.test("widget: every data-restock-variant element becomes a labelled form", widgets_render)

    def widget_subscribes():
        driver.get(page)
        form = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#w1 form"), "widget")[0]
        qty = form.find_element(By.CSS_SELECTOR, "input[name=quantity]")
        qty.clear()
        qty.send_keys("2")
        form.find_element(By.CSS_SELECTOR, "input[name=email]").send_keys("Jane@Example.com")
        form.find_element(By.CSS_SELECTOR, "button").click()
        status = form.find_element(By.CSS_SELECTOR, ".rstk-status")
        wait(driver, lambda d: "on the list" in status.text, "the success state")
        assert "jane@example.com" in status.text, status.text
        assert "rstk-done" in form.get_attribute("class")
        shot("widget-subscribed")
        rows = subscriptions(server, "sold-out-1")
        assert [r["email"] for r in rows] == ["jane@example.com"], rows
        # locale and quantity are the lifecycle work's (issue 15): checked
        # once the server stores them.
        row = rows[0]
        if "locale" in row or "quantity" in row:
            assert row.get("locale") == "de", row
            assert row.get("quantity") == 2, row
        else:
            print("  note: this server does not store locale and quantity yet; "
                  "the widget sent them (checked below)")
        sent = driver.execute_script("return document.documentElement.lang")
        assert sent == "de"

    suite.test("widget: subscribing shows the success state and stores the subscription",
               widget_subscribes)

    def widget_sends_fields():
        # What the widget posts, read from the request itself: a page of the
        # shop's origin replaces fetch to record the call, then lets it go.
        driver.get(page)
        wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#w1 form"), "widget")
        driver.execute_script("""
          var real = window.fetch;
          window.__sent = null;
          window.fetch = function (url, opts) {
            window.__sent = {url: url, body: opts.body, headers: opts.headers};
            return real.apply(this, arguments);
          };""")
        form = driver.find_element(By.CSS_SELECTOR, "#w1 form")
        qty = form.find_element(By.CSS_SELECTOR, "input[name=quantity]")
        qty.clear()
        qty.send_keys("3")
        form.find_element(By.CSS_SELECTOR, "input[name=email]").send_keys("max@example.com")
        form.find_element(By.CSS_SELECTOR, "button").click()
        sent = wait(driver, lambda d: d.execute_script("return window.__sent"), "the request")
        body = json.loads(sent["body"])
        assert sent["url"] == server.url + "/restock-notifications/variants/sold-out-1", sent
        assert body == {"email": "max@example.com", "quantity": 3, "locale": "de"}, body
        status = form.find_element(By.CSS_SELECTOR, ".rstk-status")
        wait(driver, lambda d: "on the list" in status.text, "the success state")

    suite.test("widget: posts email, quantity and locale to the server that served it",
               widget_sends_fields)

    def in_stock_message():
        driver.get(page)
        form = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#w2 form"), "widget")[0]
        form.find_element(By.CSS_SELECTOR, "input[name=email]").send_keys("ann@example.com")
        form.find_element(By.CSS_SELECTOR, "button").click()
        status = form.find_element(By.CSS_SELECTOR, ".rstk-status")
        want = "You cannot sign up for restock notifications on a product that is not sold out"
        wait(driver, lambda d: status.text == want, "the server's message, got: " + status.text)
        assert "rstk-fail" in status.get_attribute("class")
        assert "rstk-done" not in form.get_attribute("class")

    suite.test("widget: an in-stock variant shows the server's message", in_stock_message)

    def invalid_email():
        form = driver.find_element(By.CSS_SELECTOR, "#w2 form")
        email = form.find_element(By.CSS_SELECTOR, "input[name=email]")
        email.clear()
        email.send_keys("not-an-email")
        form.find_element(By.CSS_SELECTOR, "button").click()
        error = form.find_element(By.CSS_SELECTOR, ".rstk-error")
        wait(driver, lambda d: error.text.startswith("Invalid email"), "the field's error")
        assert email.get_attribute("aria-invalid") == "true"
        assert error.get_attribute("id") in email.get_attribute("aria-describedby")
        assert form.find_element(By.CSS_SELECTOR, ".rstk-status").text == ""
        shot("widget-errors")
        # An empty field is caught before any request.
        email.clear()
        form.find_element(By.CSS_SELECTOR, "button").click()
        wait(driver, lambda d: error.text == "Enter your email address.", "the empty field's error")

    suite.test("widget: an invalid email shows the field's error", invalid_email)

    def enhanced_form():
        driver.get(page)
        form = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#w3.rstk-form"), "enhanced form")[0]
        form.find_element(By.CSS_SELECTOR, "input[name=email]").send_keys("enhanced@example.com")
        form.find_element(By.CSS_SELECTOR, "button").click()
        status = form.find_element(By.CSS_SELECTOR, ".rstk-status")
        wait(driver, lambda d: "on the list" in status.text, "the success state")
        assert driver.current_url == page, "the page was left: " + driver.current_url
        assert [r["email"] for r in subscriptions(server, "plain-form")] == ["enhanced@example.com"]

    suite.test("widget: a plain form is enhanced in place", enhanced_form)

    def without_javascript():
        driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
        try:
            driver.get(page)
            time.sleep(0.3)  # nothing to wait for: no script runs
            assert not driver.find_elements(By.CSS_SELECTOR, "[data-restock-ready]"), \
                "the widget ran with JavaScript disabled"
            assert not driver.find_elements(By.CSS_SELECTOR, "#w1 form")
            form = driver.find_element(By.CSS_SELECTOR, "#w3")
            form.find_element(By.CSS_SELECTOR, "input[name=email]").send_keys("nojs@example.com")
            shot("widget-nojs")
            form.find_element(By.CSS_SELECTOR, "button").click()
            wait(driver, lambda d: d.current_url.startswith(server.url), "the server's page")
            heading = wait(driver, lambda d: d.find_elements(By.TAG_NAME, "h1"), "a heading")[0]
            assert heading.text == "You're on the list", heading.text
            assert "nojs@example.com" in driver.find_element(By.TAG_NAME, "body").text
            shot("widget-nojs-subscribed")
        finally:
            driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})
        emails = [r["email"] for r in subscriptions(server, "plain-form")]
        assert "nojs@example.com" in emails, emails

    suite.test("widget: with JavaScript disabled the form still subscribes", without_javascript)

    def double_opt_in():
        doi = Restockd(os.path.dirname(server.tmp), shop.origin, ", double_opt_in = true")
        try:
            status, j = doi.api("POST", "/admin/variants", {"id": "sold-out-1"})
            assert status == 200, j
            url = shop.page("product-doi.html", f"""<!doctype html><html><head>
<script src="{doi.url}/widget.js" defer></script></head><body>
<div id="w" data-restock-variant="sold-out-1"></div></body></html>""")
            driver.get(url)
            form = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#w form"), "widget")[0]
            form.find_element(By.CSS_SELECTOR, "input[name=email]").send_keys("kim@example.com")
            form.find_element(By.CSS_SELECTOR, "button").click()
            status_line = form.find_element(By.CSS_SELECTOR, ".rstk-status")
            wait(driver, lambda d: "Almost done" in status_line.text, "the check-your-inbox state")
            assert "kim@example.com" in status_line.text, status_line.text
            shot("widget-pending")
            code, j = doi.api("GET", "/admin/restock-notifications?status=pending&variant_id=sold-out-1")
            assert code == 200 and [r["email"] for r in j["restock_notifications"]] == ["kim@example.com"], j
        finally:
            problem = doi.stop()
        assert problem is None, problem

    suite.test("widget: under double opt-in it says to check the inbox", double_opt_in)


def console(suite, server, shop, driver, shot):
    admin = server.url + "/admin/"

    def login_page():
        return wait(driver, lambda d: [e for e in d.find_elements(By.ID, "login") if e.is_displayed()],
                    "the login form")[0]

    def wrong_token():
        driver.get(admin)
        login_page()
        shot("console-login")
        driver.find_element(By.ID, "token").send_keys("not-the-token")
        driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
        error = driver.find_element(By.ID, "login-error")
        wait(driver, lambda d: "not the admin token" in error.text, "the refusal")
        assert not driver.find_element(By.ID, "nav").is_displayed()
        assert driver.get_cookie("restockd_session") is None
        shot("console-login-refused")

    suite.test("console: a wrong token is refused", wrong_token)

    def ranked():
        token = driver.find_element(By.ID, "token")
        token.clear()
        token.send_keys(TOKEN)
        driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
        wait(driver, lambda d: d.find_element(By.ID, "nav").is_displayed(), "the console")
        rows = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#page tbody tr td:nth-child(2) .sub"),
                    "the demand table")
        got = [r.text for r in rows]
        waiting = [int(td.text) for td in driver.find_elements(By.CSS_SELECTOR, "#page tbody tr td:nth-child(5)")]
        # The seeded demand and what the widget tests added.
        counts = dict(SEEDED)
        for v in ("sold-out-1", "plain-form"):
            counts[v] = len(subscriptions(server, v))
        want = sorted(counts, key=lambda v: (-counts[v], v))
        assert got == want, f"{got} != {want}"
        assert waiting == [counts[v] for v in want], waiting
        cookie = driver.get_cookie("restockd_session")
        assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
        shot("console-demand")
        driver.set_window_size(390, 844)
        time.sleep(0.2)
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width} px wide on a phone"
        shot("console-demand-phone")
        driver.set_window_size(1280, 900)

    suite.test("console: logging in shows the demand report ranked by waiting shoppers", ranked)

    def escaped():
        cells = driver.find_elements(By.CSS_SELECTOR, "#page tbody tr td:nth-child(2) a")
        titles = [c.text for c in cells]
        assert XSS_TITLE in titles, titles
        assert driver.execute_script("return window.__pwned") is None, "the title ran a script"
        assert not driver.find_elements(By.CSS_SELECTOR, "#page tbody img, #page tbody script, #page tbody b")
        driver.get(admin + "#/variant/xss-hat")
        h1 = wait(driver, lambda d: [h for h in d.find_elements(By.CSS_SELECTOR, "#page h1") if h.text == XSS_TITLE],
                  "the variant's title as text")
        assert h1
        wait(driver, lambda d: "<b>sku</b>" in d.find_element(By.ID, "page").text, "the sku as text")
        assert driver.execute_script("return window.__pwned") is None, "the title ran a script"
        assert not driver.find_elements(By.CSS_SELECTOR, "#page img, #page script, #page b")

    suite.test("console: a title holding markup is shown as text", escaped)

    def variant_page():
        driver.get(admin + "#/variant/hoodie-m")
        wait(driver, lambda d: "shopper4@example.com" in d.find_element(By.ID, "page").text,
             "the waiting shoppers")
        text = driver.find_element(By.ID, "page").text
        for want in ("Hoodie, M", "HO-M", "Waiting shoppers", "Inventory levels",
                     "History: notified", "Restocked events"):
            assert want in text, want
        wait(driver, lambda d: "Loading" not in d.find_element(By.ID, "page").text, "every block")
        shot("console-variant")

    suite.test("console: a variant's page shows its shoppers, stock, history and events", variant_page)

    def retry_dead():
        open(server.fail_flag, "w").close()
        server.subscribe("dead-one", "boots@example.com")
        status, j = server.api("POST", "/admin/variants/dead-one", {"inventory_quantity": 4})
        assert status == 200, j

        def dead_event():
            s, e = server.api("GET", "/admin/events?status=dead&name=restock-notification.restocked")
            return e["events"] and e["events"][0]
        ev = until(dead_event, "the dead event")
        os.remove(server.fail_flag)
        driver.get(admin + "#/events?status=dead")
        button = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f"button[data-retry='{ev['id']}']"),
                      "the retry button")[0]
        assert "the mail service is down" in driver.find_element(By.ID, "page").text
        shot("console-events-dead")
        button.click()

        def delivered():
            s, e = server.api("GET", f"/admin/events?variant_id=dead-one")
            return e["events"] and e["events"][0]["status"] == "delivered"
        until(delivered, "the retried event to be delivered")
        wait(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, f"button[data-retry='{ev['id']}']"),
             "the list without it")
        driver.get(admin + "#/events?status=delivered")
        wait(driver, lambda d: "restock-notification.restocked" in d.find_element(By.ID, "page").text,
             "the delivered events")
        shot("console-events")

    suite.test("console: a dead event retried from the console is delivered", retry_dead)

    def conversions():
        driver.get(admin + "#/conversions")
        wait(driver, lambda d: "Loading" not in d.find_element(By.ID, "page").text and
             d.find_element(By.ID, "page").text.count("\n") > 2, "the conversions page")
        text = driver.find_element(By.ID, "page").text
        assert "Conversions" in text
        # The report, now that the server records conversions: the counts
        # the API gives are the ones shown (headings are upper-cased by CSS).
        s, rep = server.api("GET", "/admin/reports/conversions")
        assert s == 200, rep
        assert "CONVERTED" in text.upper(), text
        assert "does not report conversions yet" not in text, text
        lines = [l.strip() for l in text.split("\n")]
        i = [l.upper() for l in lines].index("NOTIFIED")
        assert lines[i + 1] == str(rep["notified"]), (lines[i + 1], rep)
        shot("console-conversions")

    suite.test("console: the conversions page loads", conversions)

    def erase():
        assert subscriptions(server, "cap", "erase-me@example.com")
        driver.get(admin + "#/erase")
        email = wait(driver, lambda d: d.find_elements(By.ID, "email"), "the erase form")[0]
        email.send_keys("erase-me@example.com")
        shot("console-erase")
        driver.find_element(By.CSS_SELECTOR, "#page form button").click()
        confirm = wait(driver, lambda d: d.find_elements(By.ID, "erase-confirm"), "the confirmation step")[0]
        text = driver.find_element(By.CSS_SELECTOR, "[role=alertdialog]").text
        assert "2 active" in text, text
        # Nothing is erased before the confirmation.
        assert subscriptions(server, "cap", "erase-me@example.com")
        shot("console-erase-confirm")
        confirm.click()
        wait(driver, lambda d: "Erased erase-me@example.com" in d.find_element(By.ID, "page").text,
             "the result")
        assert not subscriptions(server, "cap", "erase-me@example.com")
        assert not subscriptions(server, "socks", "erase-me@example.com")
        shot("console-erased")

    suite.test("console: erasing an email, after a confirmation, removes it", erase)

    def cross_site():
        # The shop's origin is another origin of the same site (127.0.0.1),
        # so the browser sends the SameSite=Strict cookie with this form:
        # only the Origin check stops it. text/plain makes the body JSON.
        attack = shop.page("attack.html", f"""<!doctype html><html><body>
<form id="f" method="post" enctype="text/plain" action="{server.url}/admin/variants">
<input type="hidden" name='{{"id":"csrf-victim","title":"x' value='"}}'>
</form><script>document.getElementById("f").submit();</script></body></html>""")
        driver.get(attack)
        wait(driver, lambda d: d.current_url.startswith(server.url), "the form's answer")
        body = wait(driver, lambda d: d.find_element(By.TAG_NAME, "body").text, "the answer")
        assert "not_allowed" in body, body
        status, j = server.api("GET", "/admin/variants/csrf-victim")
        assert status == 404, (status, j)
        # The same request from the console's own page goes through.
        driver.get(admin)
        wait(driver, lambda d: d.find_element(By.ID, "nav").is_displayed(), "the console")
        result = driver.execute_async_script("""
          var done = arguments[arguments.length - 1];
          fetch("/admin/session").then(function (r) { return r.json(); }).then(function (s) {
            return fetch("/admin/variants", {method: "POST", headers: {"X-Restock-CSRF": s.csrf_token,
              "Content-Type": "application/json"}, body: JSON.stringify({id: "from-console"})});
          }).then(function (r) { done(r.status); }, function (e) { done(String(e)); });""")
        assert result == 200, result

    suite.test("console: a cross-site POST with the cookie alone is refused", cross_site)

    def logout():
        driver.get(admin)
        wait(driver, lambda d: d.find_element(By.ID, "nav").is_displayed(), "the console")
        cookie = driver.get_cookie("restockd_session")["value"]
        driver.find_element(By.ID, "logout").click()
        login_page()
        wait(driver, lambda d: "logged out" in d.find_element(By.ID, "login-error").text, "the notice")
        shot("console-logged-out")
        driver.get(admin)
        login_page()
        req = urllib.request.Request(server.url + "/admin/session",
                                     headers={"Cookie": "restockd_session=" + cookie})
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError("the old cookie still has a session")
        except urllib.error.HTTPError as e:
            assert e.code == 401, e.code

    suite.test("console: logout ends the session", logout)


if __name__ == "__main__":
    sys.exit(main())
