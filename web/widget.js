/* restockd's storefront widget: a "notify me when it is back" form.
 *
 * Include it once, from the restockd server that takes the subscriptions:
 *   <script src="https://restock.example.com/widget.js" defer></script>
 * and every element with data-restock-variant="VARIANT_ID" becomes a form
 * that subscribes an email to that variant. An empty element gets the form
 * from this script; a <form data-restock-variant="ID" method="post"
 * action=".../restock-notifications/variants/ID"> holding an "email" input
 * is enhanced where it is, and works as a plain form without JavaScript.
 * docs/storefront.md describes every attribute.
 *
 * It defines one global, window.RestockWidget, styles only elements whose
 * classes start with "rstk-", and depends on nothing. */
(function () {
  "use strict";
  if (window.RestockWidget) return;

  var script = document.currentScript;
  /* The server that served this file, with the path it is served under (a
   * shop may proxy restockd under a prefix of its own). */
  var base = script && script.src ? script.src.replace(/[^/]*$/, "") : "";
  var P = "rstk-";
  var counter = 0;

  var DEFAULTS = {
    label: "Email me when it is back in stock",
    placeholder: "you@example.com",
    button: "Notify me",
    quantityLabel: "How many do you want?",
    sending: "Sending\u2026",
    success: "You are on the list: we will email {email} as soon as it is back.",
    pending: "Almost done: we sent an email to {email}. Open it and confirm to get the alert.",
    required: "Enter your email address.",
    wait: "Too many attempts. Please try again in {seconds} seconds.",
    offline: "The request did not get through. Please try again."
  };

  var CSS =
    ".rstk-form{margin:.75em 0;max-width:30em;font:inherit;color:inherit}" +
    ".rstk-label{display:block;margin:0 0 .3em;font-weight:600}" +
    ".rstk-row{display:flex;flex-wrap:wrap;gap:.5em;align-items:stretch}" +
    ".rstk-input{flex:1 1 12em;min-width:0;box-sizing:border-box;margin:0;" +
    "padding:.55em .7em;border:1px solid var(--rstk-border,#8a8a8a);" +
    "border-radius:var(--rstk-radius,4px);background:#fff;color:#111;font:inherit}" +
    ".rstk-qty{width:5.5em;margin-left:.3em}" +
    ".rstk-input:focus{outline:2px solid var(--rstk-accent,#1a56db);outline-offset:1px}" +
    ".rstk-input[aria-invalid=true]{border-color:var(--rstk-error,#b3261e)}" +
    ".rstk-button{flex:0 0 auto;margin:0;padding:.55em 1.1em;border:0;" +
    "border-radius:var(--rstk-radius,4px);background:var(--rstk-accent,#1a56db);" +
    "color:var(--rstk-accent-text,#fff);font:inherit;font-weight:600;cursor:pointer}" +
    ".rstk-button:focus-visible{outline:2px solid #111;outline-offset:2px}" +
    ".rstk-button[disabled]{opacity:.65;cursor:progress}" +
    ".rstk-error{margin:.35em 0 0;color:var(--rstk-error,#b3261e);font-size:.92em}" +
    ".rstk-status{margin:.5em 0 0}" +
    ".rstk-error:empty,.rstk-status:empty{display:none}" +
    ".rstk-ok{color:var(--rstk-ok,#146c2e)}" +
    ".rstk-fail{color:var(--rstk-error,#b3261e)}" +
    ".rstk-done .rstk-row,.rstk-done .rstk-label,.rstk-done .rstk-qty-label{display:none}" +
    ".rstk-qty-label{display:block;margin:0 0 .6em}";

  function addStyles() {
    if (document.getElementById(P + "style")) return;
    if (script && script.getAttribute("data-restock-styles") === "off") return;
    var s = document.createElement("style");
    s.id = P + "style";
    /* A page with a Content-Security-Policy gives its scripts a nonce; the
     * style sheet carries the same one. */
    if (script && script.nonce) s.nonce = script.nonce;
    s.textContent = CSS;
    (document.head || document.documentElement).appendChild(s);
  }

  function text(el, key, vars) {
    var attr = "data-restock-" + key.replace(/[A-Z]/g, function (c) {
      return "-" + c.toLowerCase();
    });
    var t = el.getAttribute(attr) || DEFAULTS[key];
    return t.replace(/\{(\w+)\}/g, function (m, k) {
      return vars && vars[k] != null ? vars[k] : m;
    });
  }

  function make(tag, cls, attrs) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    for (var k in attrs) if (attrs[k] != null) e.setAttribute(k, attrs[k]);
    return e;
  }

  /* Where to post: data-restock-server, else the server an enhanced
   * form's own action names, else the one that served this script. */
  function subscribeUrl(el, variant) {
    var server = el.getAttribute("data-restock-server");
    var action = el.tagName === "FORM" && el.getAttribute("action");
    var at = action ? action.indexOf("restock-notifications/variants/") : -1;
    if (!server && at > 0 && /^https?:/i.test(action))
      server = action.slice(0, at);
    server = server || base;
    if (server && server.charAt(server.length - 1) !== "/") server += "/";
    return server + "restock-notifications/variants/" +
      encodeURIComponent(variant);
  }

  /* Builds the form inside an empty element: the email's label, then the
   * wanted quantity when the markup asks for it, then the email and the
   * button on one row. */
  function build(el, variant) {
    var id = P + ++counter;
    var form = make("form", P + "form", {
      method: "post", action: subscribeUrl(el, variant), novalidate: ""
    });
    if (el.getAttribute("data-restock-quantity") === "ask") {
      var ql = make("label", P + "qty-label", { "for": id + "-qty" });
      ql.textContent = text(el, "quantityLabel") + " ";
      ql.appendChild(make("input", P + "input " + P + "qty", {
        type: "number", name: "quantity", id: id + "-qty", min: "1",
        max: "1000000", step: "1", inputmode: "numeric", value: "1"
      }));
      form.appendChild(ql);
    }
    var label = make("label", P + "label", { "for": id + "-email" });
    label.textContent = text(el, "label");
    var row = make("div", P + "row");
    var input = make("input", P + "input", {
      type: "email", name: "email", id: id + "-email", required: "",
      autocomplete: "email", inputmode: "email",
      placeholder: text(el, "placeholder")
    });
    var button = make("button", P + "button", { type: "submit" });
    button.textContent = text(el, "button");
    form.appendChild(label);
    form.appendChild(row);
    row.appendChild(input);
    row.appendChild(button);
    el.appendChild(form);
    return form;
  }

  function enhance(el) {
    if (el.getAttribute("data-restock-ready") != null) return;
    var variant = el.getAttribute("data-restock-variant");
    if (!variant) return;
    el.setAttribute("data-restock-ready", "");
    addStyles();
    var form = el.tagName === "FORM" ? el : build(el, variant);
    if (form === el) {
      form.classList.add(P + "form");
      form.setAttribute("novalidate", "");
    }
    var input = form.querySelector("input[name=email]");
    if (!input) return;
    var id = input.id || (input.id = P + ++counter + "-email");
    var error = make("p", P + "error", { id: id + "-error" });
    var status = make("p", P + "status", {
      role: "status", "aria-live": "polite"
    });
    var described = input.getAttribute("aria-describedby");
    input.setAttribute("aria-describedby",
      (described ? described + " " : "") + error.id);
    form.appendChild(error);
    form.appendChild(status);
    var button = form.querySelector("button, input[type=submit]");
    var busy = false;

    function say(msg, cls) {
      status.className = P + "status" + (cls ? " " + P + cls : "");
      status.textContent = msg;
    }
    function fieldError(msg) {
      error.textContent = msg || "";
      if (msg) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    }
    function done(flag) {
      busy = false;
      if (button) button.disabled = false;
      form.removeAttribute("aria-busy");
      if (flag) form.classList.add(P + "done");
    }

    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      if (busy) return;
      var email = input.value.trim();
      fieldError("");
      if (!email) {
        fieldError(text(el, "required"));
        input.focus();
        return;
      }
      var body = { email: email };
      var fields = form.elements;
      var channel = el.getAttribute("data-restock-channel") ||
        (fields.sales_channel_id && fields.sales_channel_id.value);
      if (channel) body.sales_channel_id = channel;
      var qty = el.getAttribute("data-restock-quantity");
      if (fields.quantity && fields.quantity.value) qty = fields.quantity.value;
      if (qty && qty !== "ask") {
        var n = Number(qty);
        body.quantity = n === Math.floor(n) ? n : qty;
      }
      var locale = el.getAttribute("data-restock-locale");
      if (fields.locale && fields.locale.value) locale = fields.locale.value;
      if (locale === "") locale = document.documentElement.lang;
      if (locale) body.locale = locale;
      var headers = {
        "Content-Type": "application/json", "Accept": "application/json"
      };
      var key = el.getAttribute("data-restock-key");
      if (key) headers["X-Publishable-API-Key"] = key;
      busy = true;
      if (button) button.disabled = true;
      form.setAttribute("aria-busy", "true");
      say(text(el, "sending"));
      /* Read now, not when the form was built: a theme switching
       * variants changes the attribute. */
      var url = subscribeUrl(el, el.getAttribute("data-restock-variant") || variant);
      fetch(url, {
        method: "POST", mode: "cors", credentials: "omit", headers: headers,
        body: JSON.stringify(body)
      }).then(function (res) {
        return res.json().catch(function () { return {}; }).then(function (j) {
          var stored = j.restock_notification || {};
          var vars = { email: stored.email || email };
          if (res.ok) {
            var pending = stored.status === "pending";
            say(text(el, pending ? "pending" : "success", vars), "ok");
            done(true);
            fire(el, pending ? "pending" : "subscribed", j);
            return;
          }
          done(false);
          var msg = (j && j.message) || res.statusText || String(res.status);
          if (res.status === 429) {
            vars.seconds = res.headers.get("Retry-After") || "60";
            say(text(el, "wait", vars), "fail");
          } else if (j.type === "invalid_data" && /email/i.test(msg)) {
            say("");
            fieldError(msg);
            input.focus();
          } else {
            say(msg, "fail");
          }
          fire(el, "error", j);
        });
      }, function () {
        done(false);
        say(text(el, "offline"), "fail");
      });
    });
  }

  /* The shop's scripts can follow what happens: "restock:subscribed",
   * "restock:pending" and "restock:error" bubble from the element. */
  function fire(el, name, detail) {
    var ev;
    try {
      ev = new CustomEvent("restock:" + name, { bubbles: true, detail: detail });
    } catch (e) {
      return;
    }
    el.dispatchEvent(ev);
  }

  /* Enhances every element under `root` (the document by default) that
   * has not been yet. Pages that add elements later (a single-page
   * storefront) are watched, and may also call this themselves. */
  function init(root) {
    root = root || document;
    if (root.nodeType === 1 && root.hasAttribute("data-restock-variant"))
      enhance(root);
    var list = root.querySelectorAll("[data-restock-variant]");
    for (var i = 0; i < list.length; i++) enhance(list[i]);
  }

  function watch() {
    if (!window.MutationObserver) return;
    new MutationObserver(function (records) {
      for (var i = 0; i < records.length; i++) {
        var added = records[i].addedNodes;
        for (var k = 0; k < added.length; k++)
          if (added[k].nodeType === 1) init(added[k]);
      }
    }).observe(document.documentElement, { childList: true, subtree: true });
  }

  window.RestockWidget = { version: "1", init: init, server: base };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () {
      init();
      watch();
    });
  } else {
    init();
    watch();
  }
})();
