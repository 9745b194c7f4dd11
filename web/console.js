/* restockd's console: a few pages over the admin API, for a browser that
 * logged in with the admin token (POST /admin/login sets the session
 * cookie). Every request carries the session's CSRF token; every value the
 * server returns is put into the page as text (textContent), never as
 * markup, so a title or an email holding "<script>" shows as it is. */
(function () {
  "use strict";

  var PAGE = 50;
  var csrf = null;
  var main = document.getElementById("page");
  var login = document.getElementById("login");
  var nav = document.getElementById("nav");

  /* ---- helpers ---------------------------------------------------------- */

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) {
      var v = attrs[k];
      if (v == null || v === false) continue;
      if (k === "text") e.textContent = v;
      else if (k === "class") e.className = v;
      else if (k.slice(0, 2) === "on") e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    (children || []).forEach(function (c) {
      if (c == null) return;
      e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return e;
  }

  function when(iso) {
    if (!iso) return "\u2014";
    return String(iso).replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function show(v) {
    return v == null || v === "" ? "\u2014" : String(v);
  }

  function ApiError(status, body) {
    this.status = status;
    this.type = body && body.type;
    this.message = (body && body.message) || "HTTP " + status;
  }

  function api(method, path, body) {
    var headers = { "Accept": "application/json" };
    if (csrf) headers["X-Restock-CSRF"] = csrf;
    var opts = { method: method, headers: headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(path, opts).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (j) {
        if (res.status === 401 && path !== "/admin/login" && path !== "/admin/session") {
          csrf = null;
          showLogin("Your session has ended: log in again.");
        }
        if (!res.ok) {
          var e = new ApiError(res.status, j);
          e.retryAfter = res.headers.get("Retry-After");
          throw e;
        }
        return j;
      });
    });
  }

  function query(params) {
    var parts = [];
    Object.keys(params).forEach(function (k) {
      var v = params[k];
      if (v != null && v !== "")
        parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(v));
    });
    return parts.length ? "?" + parts.join("&") : "";
  }

  /* The current hash route: "#/variant/ID?offset=50" gives
   * {page: "variant", arg: "ID", params: {offset: "50"}}. */
  function route() {
    var h = location.hash.replace(/^#\/?/, "");
    var q = h.indexOf("?");
    var path = q < 0 ? h : h.slice(0, q);
    var params = {};
    if (q >= 0)
      h.slice(q + 1).split("&").forEach(function (p) {
        var i = p.indexOf("=");
        if (i > 0)
          params[decodeURIComponent(p.slice(0, i))] =
            decodeURIComponent(p.slice(i + 1).replace(/\+/g, " "));
      });
    var slash = path.indexOf("/");
    return {
      page: (slash < 0 ? path : path.slice(0, slash)) || "demand",
      arg: slash < 0 ? "" : decodeURIComponent(path.slice(slash + 1)),
      params: params
    };
  }

  function go(page, arg, params) {
    location.hash = "#/" + page + (arg ? "/" + encodeURIComponent(arg) : "") +
      query(params || {});
  }

  function table(columns, rows, cell) {
    var head = el("tr", {}, columns.map(function (c) {
      return el("th", { scope: "col", class: c.num ? "num" : null, text: c.label });
    }));
    var body = el("tbody");
    if (!rows.length) {
      body.appendChild(el("tr", {}, [el("td", {
        colspan: String(columns.length), class: "muted", text: "Nothing here."
      })]));
    }
    rows.forEach(function (r) {
      body.appendChild(el("tr", {}, columns.map(function (c) {
        var v = cell(r, c.key);
        var td = el("td", { class: c.num ? "num" : c.when ? "when" : null });
        if (v instanceof Node) td.appendChild(v);
        else td.textContent = show(v);
        return td;
      })));
    });
    return el("div", { class: "table-wrap" }, [el("table", {}, [el("thead", {}, [head]), body])]);
  }

  /* "1-50 of 120" with Previous and Next; `move(offset)` loads a page. */
  function pager(count, limit, offset, move) {
    var from = count ? offset + 1 : 0, to = Math.min(offset + limit, count);
    return el("div", { class: "pager" }, [
      el("button", {
        type: "button", class: "secondary", disabled: offset <= 0,
        onclick: function () { move(Math.max(0, offset - limit)); }
      }, ["Previous"]),
      el("span", { text: from + "\u2013" + to + " of " + count }),
      el("button", {
        type: "button", class: "secondary", disabled: offset + limit >= count,
        onclick: function () { move(offset + limit); }
      }, ["Next"])
    ]);
  }

  function status(s) {
    return el("span", { class: "status status-" + s, text: s });
  }

  function failure(e) {
    return el("p", { class: "error", role: "alert", text: e.message || String(e) });
  }

  /* A block that loads its content: `load(box)` fills it, errors show in
   * it. */
  function block(title, load) {
    var box = el("div");
    var section = el("section", { class: "card" }, [title ? el("h2", { text: title }) : null, box]);
    function reload() {
      box.textContent = "";
      box.appendChild(el("p", { class: "muted", text: "Loading\u2026" }));
      Promise.resolve(load(function (node) {
        box.textContent = "";
        box.appendChild(node);
      }, reload)).catch(function (e) {
        box.textContent = "";
        box.appendChild(failure(e));
      });
    }
    reload();
    return section;
  }

  function render(title, nodes) {
    main.textContent = "";
    main.appendChild(el("h1", { text: title }));
    nodes.forEach(function (n) { main.appendChild(n); });
  }

  /* ---- pages --------------------------------------------------------------- */

  function demandPage(r) {
    var offset = Number(r.params.offset) || 0;
    var channel = r.params.sales_channel_id || "";
    var select = el("select", { id: "channel", name: "sales_channel_id" }, [
      el("option", { value: "", text: "All sales channels" })
    ]);
    api("GET", "/admin/sales-channels?limit=1000").then(function (j) {
      (j.sales_channels || []).forEach(function (c) {
        select.appendChild(el("option", {
          value: c.id, text: c.name ? c.name + " (" + c.id + ")" : c.id,
          selected: c.id === channel
        }));
      });
      select.value = channel;
    }, function () {});
    select.addEventListener("change", function () {
      go("demand", "", { sales_channel_id: select.value });
    });
    var filters = el("div", { class: "filters" }, [
      el("div", {}, [el("label", { for: "channel", text: "Sales channel" }), select])
    ]);
    render("What to restock first", [
      el("p", { class: "muted", text: "Sold-out variants ranked by the shoppers waiting for them." }),
      filters,
      block(null, function (fill) {
        return api("GET", "/admin/reports/demand" + query({
          sales_channel_id: channel, limit: PAGE, offset: offset
        })).then(function (j) {
          var t = table([
            { key: "rank", label: "#", num: true },
            { key: "variant", label: "Variant" },
            { key: "sku", label: "SKU" },
            { key: "quantity", label: "Quantity", num: true },
            { key: "waiting", label: "Waiting", num: true },
            { key: "oldest_waiting_since", label: "Waiting since", when: true },
            { key: "notified", label: "Notified", num: true },
            { key: "converted", label: "Converted", num: true }
          ], j.variants, function (v, key) {
            if (key === "rank") return j.variants.indexOf(v) + offset + 1;
            if (key === "variant")
              return el("span", {}, [
                el("a", { href: "#/variant/" + encodeURIComponent(v.variant_id), text: show(v.title || v.variant_id) }),
                el("span", { class: "sub", text: v.variant_id })
              ]);
            if (key === "oldest_waiting_since") return when(v[key]);
            return v[key];
          });
          fill(el("div", {}, [t, pager(j.count, PAGE, offset, function (o) {
            go("demand", "", { sales_channel_id: channel, offset: o });
          })]));
        });
      })
    ]);
  }

  /* A paginated listing of subscriptions of one status for a variant. */
  function subscriptionsBlock(title, variant, st) {
    var offset = 0;
    return block(title, function load(fill, reload) {
      return api("GET", "/admin/restock-notifications" + query({
        variant_id: variant, status: st, limit: PAGE, offset: offset
      })).then(function (j) {
        var cols = [
          { key: "email", label: "Email" },
          { key: "sales_channel_id", label: "Sales channel" },
          { key: "created_at", label: "Subscribed", when: true }
        ];
        if (st !== "active" && st !== "pending")
          cols.push({ key: "ended", label: st === "notified" ? "Notified" : "Ended", when: true });
        var rows = j.restock_notifications || [];
        if (rows.some(function (x) { return x.quantity != null; }))
          cols.push({ key: "quantity", label: "Wants", num: true });
        if (rows.some(function (x) { return x.locale != null; }))
          cols.push({ key: "locale", label: "Locale" });
        fill(el("div", {}, [table(cols, rows, function (s, key) {
          if (key === "created_at") return when(s.created_at);
          if (key === "ended") return when(s.notified_at || s.cancelled_at || s.expired_at);
          return s[key];
        }), pager(j.count, PAGE, offset, function (o) { offset = o; reload(); })]));
      });
    });
  }

  /* An error message: its first line, the rest (a traceback) behind a
   * disclosure. */
  function errorText(msg) {
    if (!msg) return null;
    var first = String(msg).split(/\s+stack traceback:|\n/)[0];
    if (first.length > 160) first = first.slice(0, 157) + "\u2026";
    if (first === msg) return el("span", { class: "sub error-text", text: msg });
    return el("details", { class: "sub" }, [el("summary", { text: first }),
      el("pre", { text: msg })]);
  }

  function deliveriesList(ev) {
    return el("ul", { class: "plain" }, (ev.deliveries || []).map(function (d) {
      return el("li", {}, [
        status(d.status), " ", d.handler,
        d.subscriber ? " \u2192 " + d.subscriber : "",
        " (" + d.attempts + "/" + d.max_attempts + ")",
        errorText(d.last_error)
      ]);
    }));
  }

  function eventsTable(j, reload, withData) {
    return table([
      { key: "id", label: "Event", num: true },
      { key: "name", label: "Name" },
      { key: "created_at", label: "Created", when: true },
      { key: "status", label: "Status" },
      { key: "deliveries", label: "Deliveries" },
      { key: "action", label: "" }
    ], j.events, function (ev, key) {
      if (key === "created_at") return when(ev.created_at);
      if (key === "status") return status(ev.status);
      if (key === "name") {
        var d = ev.data || {};
        var who = d.emails ? d.emails.length + (d.emails.length === 1 ? " email" : " emails") : d.email || "";
        return el("span", {}, [ev.name,
          withData && d.variant_id ? el("a", { class: "sub", href: "#/variant/" + encodeURIComponent(d.variant_id), text: d.variant_id }) : null,
          who ? el("span", { class: "sub", text: who }) : null]);
      }
      if (key === "deliveries") return deliveriesList(ev);
      if (key === "action") {
        if (ev.status !== "dead") return "";
        return el("button", {
          type: "button", class: "secondary", "data-retry": String(ev.id),
          onclick: function (e) {
            e.target.disabled = true;
            api("POST", "/admin/events/" + ev.id + "/retry").then(function () {
              reload();
            }, function (err) {
              e.target.disabled = false;
              e.target.parentNode.appendChild(failure(err));
            });
          }
        }, ["Retry"]);
      }
      return ev[key];
    });
  }

  function variantPage(r) {
    var id = r.arg;
    var head = block(null, function (fill) {
      return api("GET", "/admin/variants/" + encodeURIComponent(id)).then(function (j) {
        var v = j.variant;
        main.querySelector("h1").textContent = v.title || v.id;
        fill(el("dl", { class: "facts" }, [
          ["Variant", v.id], ["SKU", v.sku], ["Product", v.product_id],
          ["Quantity", v.quantity], ["Inventory quantity", v.inventory_quantity],
          ["Manages inventory", v.manage_inventory ? "yes" : "no"],
          ["Backorders", v.allow_backorder ? "allowed" : "no"],
          ["Updated", when(v.updated_at)]
        ].map(function (f) {
          return el("div", {}, [el("dt", { text: f[0] }), el("dd", { text: show(f[1]) })]);
        })));
      });
    });
    var lvOffset = 0;
    var levels = block("Inventory levels", function load(fill, reload) {
      return api("GET", "/admin/inventory-levels" + query({ variant_id: id })).then(function (j) {
        /* The route answers every level of the variant: paged here. */
        var all = j.inventory_levels || [];
        fill(el("div", {}, [table([
          { key: "location_id", label: "Location" },
          { key: "stocked_quantity", label: "Stocked", num: true },
          { key: "reserved_quantity", label: "Reserved", num: true },
          { key: "available", label: "Available", num: true }
        ], all.slice(lvOffset, lvOffset + PAGE), function (l, key) {
          if (key === "available") return l.stocked_quantity - l.reserved_quantity;
          return l[key];
        }), pager(all.length, PAGE, lvOffset, function (o) { lvOffset = o; reload(); })]));
      });
    });
    var evOffset = 0;
    var events = block("Restocked events", function load(fill, reload) {
      return api("GET", "/admin/events" + query({ variant_id: id, limit: PAGE, offset: evOffset })).then(function (j) {
        fill(el("div", {}, [eventsTable(j, reload, false),
          pager(j.count, PAGE, evOffset, function (o) { evOffset = o; reload(); })]));
      });
    });
    render(id, [head,
      subscriptionsBlock("Waiting shoppers", id, "active"),
      subscriptionsBlock("Waiting for their confirmation (double opt-in)", id, "pending"),
      levels,
      subscriptionsBlock("History: notified", id, "notified"),
      subscriptionsBlock("History: expired", id, "expired"),
      subscriptionsBlock("History: cancelled", id, "cancelled"),
      events]);
  }

  function eventsPage(r) {
    var st = r.params.status || "dead";
    var offset = Number(r.params.offset) || 0;
    var select = el("select", { id: "status", name: "status" }, ["dead", "pending", "delivered"].map(function (s) {
      return el("option", { value: s, text: s, selected: s === st });
    }));
    select.addEventListener("change", function () { go("events", "", { status: select.value }); });
    render("Events", [
      el("div", { class: "filters" }, [el("div", {}, [el("label", { for: "status", text: "Status" }), select])]),
      block(null, function load(fill, reload) {
        return api("GET", "/admin/events" + query({ status: st, limit: PAGE, offset: offset })).then(function (j) {
          fill(el("div", {}, [eventsTable(j, reload, true), pager(j.count, PAGE, offset, function (o) {
            go("events", "", { status: st, offset: o });
          })]));
        });
      })
    ]);
  }

  function money(revenue) {
    var keys = Object.keys(revenue || {});
    if (!keys.length) return "\u2014";
    return keys.map(function (c) { return c + " " + Number(revenue[c]).toFixed(2); }).join(", ");
  }

  function percent(rate) {
    return rate == null ? "\u2014" : (Number(rate) * 100).toFixed(1) + "%";
  }

  function conversionsPage(r) {
    var since = r.params.since || "", until = r.params.until || "";
    var sinceInput = el("input", { id: "since", type: "date", value: since.slice(0, 10) });
    var untilInput = el("input", { id: "until", type: "date", value: until.slice(0, 10) });
    var form = el("form", { class: "filters", onsubmit: function (e) {
      e.preventDefault();
      go("conversions", "", {
        since: sinceInput.value ? sinceInput.value + "T00:00:00Z" : "",
        until: untilInput.value ? untilInput.value + "T23:59:59Z" : ""
      });
    } }, [
      el("div", {}, [el("label", { for: "since", text: "From" }), sinceInput]),
      el("div", {}, [el("label", { for: "until", text: "To" }), untilInput]),
      el("div", {}, [el("button", { type: "submit", text: "Show" })])
    ]);
    var offset = 0;
    render("Conversions", [
      el("p", { class: "muted", text: "Orders of a variant by a shopper it notified, within the conversion window." }),
      form,
      block(null, function load(fill, reload) {
        return api("GET", "/admin/reports/conversions" + query({
          since: since, until: until, limit: PAGE, offset: offset
        })).then(function (j) {
          var rows = j.by_variant || [];
          /* The server pages by_variant (count, limit, offset); a reply
           * without count holds every row. */
          var paged = j.count != null;
          var total = paged ? j.count : rows.length;
          var page = paged ? rows : rows.slice(offset, offset + PAGE);
          fill(el("div", {}, [
            el("dl", { class: "facts" }, [
              ["Notified", j.notified], ["Converted", j.converted],
              ["Rate", percent(j.rate)], ["Revenue", money(j.revenue)]
            ].map(function (f) {
              return el("div", {}, [el("dt", { text: f[0] }), el("dd", { text: show(f[1]) })]);
            })),
            el("h2", { text: "By variant" }),
            table([
              { key: "variant_id", label: "Variant" },
              { key: "notified", label: "Notified", num: true },
              { key: "converted", label: "Converted", num: true },
              { key: "rate", label: "Rate", num: true },
              { key: "revenue", label: "Revenue", num: true }
            ], page, function (v, key) {
              if (key === "variant_id")
                return el("a", { href: "#/variant/" + encodeURIComponent(v.variant_id), text: show(v.title || v.variant_id) });
              if (key === "rate") return percent(v.rate != null ? v.rate : v.notified ? v.converted / v.notified : null);
              if (key === "revenue") return money(v.revenue);
              return v[key];
            }),
            pager(total, PAGE, offset, function (o) { offset = o; reload(); })
          ]));
        }, function (e) {
          if (e.status === 404 && e.type === "not_found" && /Route/.test(e.message))
            fill(el("p", { class: "muted", text: "This server does not report conversions yet (GET /admin/reports/conversions is not there)." }));
          else throw e;
        });
      })
    ]);
  }

  function count(email, st) {
    return api("GET", "/admin/restock-notifications" + query({ email: email, status: st, limit: 0 }))
      .then(function (j) { return j.count; }, function () { return 0; });
  }

  function erasePage(r) {
    var input = el("input", { id: "email", type: "email", name: "email", required: true, autocomplete: "off", value: r.params.email || "" });
    var result = el("div");
    var form = el("form", { class: "filters", onsubmit: function (e) {
      e.preventDefault();
      var email = input.value.trim();
      if (!email) return;
      result.textContent = "";
      result.appendChild(el("p", { class: "muted", text: "Looking it up\u2026" }));
      var statuses = ["active", "pending", "notified", "expired", "cancelled"];
      Promise.all(statuses.map(function (s) { return count(email, s); })).then(function (counts) {
        var total = counts.reduce(function (a, b) { return a + b; }, 0);
        var parts = statuses.map(function (s, i) { return counts[i] + " " + s; })
          .filter(function (t) { return !/^0 /.test(t); });
        var erase = el("button", { type: "button", class: "danger", id: "erase-confirm" }, ["Erase " + email]);
        var cancel = el("button", { type: "button", class: "secondary", onclick: function () {
          result.textContent = "";
        } }, ["Cancel"]);
        result.textContent = "";
        result.appendChild(el("section", { class: "card confirm", role: "alertdialog", "aria-labelledby": "erase-q" }, [
          el("h2", { id: "erase-q", text: "Erase " + email + "?" }),
          el("p", { text: total
            ? "This deletes " + total + " subscriptions and history rows (" + parts.join(", ") + ") and takes the email out of the events that name it. It cannot be undone."
            : "No subscription or history holds this email. Erasing still takes it out of the events that name it. It cannot be undone." }),
          el("div", { class: "actions" }, [erase, cancel])
        ]));
        erase.focus();
        erase.addEventListener("click", function () {
          erase.disabled = true;
          api("DELETE", "/admin/restock-notifications" + query({ email: email })).then(function (j) {
            result.textContent = "";
            result.appendChild(el("p", { class: "notice", role: "status", text: "Erased " + email + ": " + j.deleted + " rows deleted." }));
            input.value = "";
          }, function (err) {
            erase.disabled = false;
            result.appendChild(failure(err));
          });
        });
      }, function (err) {
        result.textContent = "";
        result.appendChild(failure(err));
      });
    } }, [
      el("div", {}, [el("label", { for: "email", text: "Email" }), input]),
      el("div", {}, [el("button", { type: "submit", text: "Look up" })])
    ]);
    render("Erase an email", [
      el("p", { class: "muted", text: "A shopper's right to be forgotten: every subscription and history row of the email goes, and the email leaves the events." }),
      form, result
    ]);
  }

  var pages = {
    demand: demandPage, variant: variantPage, events: eventsPage,
    conversions: conversionsPage, erase: erasePage
  };

  function showPage() {
    if (!csrf) return;
    var r = route();
    var fn = pages[r.page] || demandPage;
    Array.prototype.forEach.call(nav.querySelectorAll("a"), function (a) {
      if (a.getAttribute("data-page") === r.page) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    });
    fn(r);
    window.scrollTo(0, 0);
  }

  /* ---- session ---------------------------------------------------------------- */

  function showLogin(msg) {
    nav.hidden = true;
    main.hidden = true;
    main.textContent = "";
    login.hidden = false;
    document.getElementById("login-error").textContent = msg || "";
    document.getElementById("token").focus();
  }

  function loggedIn(j) {
    csrf = j.csrf_token;
    login.hidden = true;
    nav.hidden = false;
    main.hidden = false;
    showPage();
  }

  document.getElementById("login-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var token = document.getElementById("token");
    var error = document.getElementById("login-error");
    error.textContent = "";
    api("POST", "/admin/login", { token: token.value }).then(function (j) {
      token.value = "";
      loggedIn(j);
    }, function (err) {
      if (err.status === 401) error.textContent = "That token is not the admin token.";
      else if (err.status === 429) error.textContent = "Too many failed logins: try again in " + (err.retryAfter || "60") + " seconds.";
      else error.textContent = err.message;
    });
  });

  document.getElementById("logout").addEventListener("click", function () {
    api("POST", "/admin/logout").then(function () {
      csrf = null;
      showLogin("You are logged out.");
    }, function (err) { alert(err.message); });
  });

  window.addEventListener("hashchange", showPage);

  api("GET", "/admin/session").then(loggedIn, function () { showLogin(""); });
})();
