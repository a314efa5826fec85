// signoff: small helpers only; every request is an htmx attribute in the markup, but for the
// inbox's refresh, which must never move a row under the pointer. No inline script anywhere:
// the CSP forbids it, so everything lives here.
// - times: <time class="abs" datetime> in the reader's zone and locale, with the zone shown
//   ("Tue 9 Dec, 17:00 GMT+9"), or in UTC when they chose so (kept in localStorage);
//   relative times (<time class="ago">) keep their text and get the absolute one as a title
// - data-confirm: asked in the page, after the browser's own checks, never with a native
//   dialog; "{n}" in the question is how many rows are ticked
// - bulk bars: collapsed until a row is ticked, then saying how many
// - the inbox: a decided row is one line at once, focus moves to the next request's Approve;
//   keys j/k (next/previous), a (approve), d (deny: focus in the reason), o (open), ? (keys)
// - live: the server pushes (Server-Sent Events on /live) the count of requests waiting for
//   the reader and that something changed; the live parts of a page (hx-trigger
//   "signoff:changed from:body") refresh on it, and nothing polls. Without push (no
//   EventSource, or the stream failed four times in a row), /live/count is polled instead
//   (every 5 s on a page with a live part, else every 10 s) and <body data-live-mode="poll">
//   lets the page say so
// - the connection: a banner says when the server cannot be reached and when an action failed
(function () {
  "use strict";
  var banner = null;
  var failing = false;
  var pointer = false; // the last decision came from a pointer, not the keyboard
  var UTC_KEY = "signoff.utc";

  // --- times ---------------------------------------------------------------------------------

  function inUtc() {
    try { return window.localStorage.getItem(UTC_KEY) === "1"; } catch (e) { return false; }
  }

  var formats = {};
  function format(when, utc) {
    var key = utc ? "utc" : "local";
    if (!formats[key]) {
      var options = { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", timeZoneName: "short" };
      if (utc) { options.timeZone = "UTC"; }
      formats[key] = new Intl.DateTimeFormat(undefined, options);
    }
    return formats[key].format(when);
  }

  function localise(root) {
    var utc = inUtc();
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) { return; }
      if (el.classList.contains("abs")) {
        el.textContent = format(when, utc);
        el.title = el.getAttribute("datetime");
      } else {
        el.title = format(when, utc);
      }
    });
    document.querySelectorAll("[data-utc-toggle]").forEach(function (box) { box.checked = utc; });
  }

  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!(box instanceof HTMLInputElement) || !box.hasAttribute("data-utc-toggle")) { return; }
    try { window.localStorage.setItem(UTC_KEY, box.checked ? "1" : "0"); } catch (e) { /* private mode */ }
    localise(document);
  });

  // --- the connection banner -----------------------------------------------------------------

  function say(text, isError) {
    banner = banner || document.getElementById("connection");
    if (!banner) { return; }
    if (!text) { banner.hidden = true; banner.textContent = ""; return; }
    banner.textContent = text;
    banner.classList.toggle("is-error", !!isError);
    banner.hidden = false;
  }

  function isPoll(el) {
    var trigger = el && el.getAttribute && el.getAttribute("hx-trigger");
    return !!trigger && (trigger.indexOf("every") === 0 || trigger.indexOf("signoff:changed") === 0);
  }

  function source(event) {
    var ctx = event.detail && event.detail.ctx;
    return (ctx && ctx.sourceElement) || event.target;
  }

  // --- questions in the page, never native dialogs ---------------------------------------------

  function picked(form) {
    if (!form || !form.id) { return 0; }
    return document.querySelectorAll('input[name="pick"][form="' + form.id + '"]:checked').length;
  }

  function ask(form, submitter, question) {
    var old = form.querySelector(".confirm-inline");
    if (old) { old.remove(); }
    var box = document.createElement("span");
    box.className = "confirm-inline";
    box.setAttribute("role", "alert");
    var text = document.createElement("span");
    text.textContent = question;
    var yes = document.createElement("button");
    yes.type = "button";
    yes.className = "danger";
    yes.textContent = "Yes, " + (submitter ? submitter.textContent.trim().toLowerCase() : "go on");
    var no = document.createElement("button");
    no.type = "button";
    no.textContent = "No, keep";
    yes.addEventListener("click", function () {
      box.remove();
      form.__confirmed = true;
      if (submitter) { form.requestSubmit(submitter); } else { form.requestSubmit(); }
    });
    no.addEventListener("click", function () {
      box.remove();
      if (submitter) { submitter.focus(); }
    });
    box.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { event.stopPropagation(); no.click(); }
    });
    box.append(text, " ", yes, " ", no);
    form.appendChild(box);
    yes.focus();
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.__confirmed) { form.__confirmed = false; return; }
    var submitter = event.submitter || null;
    var asker = (submitter && submitter.hasAttribute("data-confirm")) ? submitter : form;
    var question = asker.getAttribute && asker.getAttribute("data-confirm");
    if (!question) { return; }
    event.preventDefault();
    event.stopImmediatePropagation();
    var n = picked(form);
    ask(form, submitter, question.replace("{n}", n === 1 ? "1 selected" : n + " selected"));
  }, true);

  // --- bulk bars: collapsed until a row is ticked ------------------------------------------------

  function countBulk(form) {
    var n = picked(form);
    var count = form.querySelector("[data-bulk-count]");
    var actions = form.querySelector("[data-bulk-actions]");
    if (count) {
      if (!count.hasAttribute("data-idle")) { count.setAttribute("data-idle", count.textContent); }
      count.textContent = n ? n + " selected" : count.getAttribute("data-idle");
    }
    if (actions) { actions.hidden = n === 0; }
    form.classList.toggle("is-open", n > 0);
    form.querySelectorAll("[data-counted]").forEach(function (button) {
      button.textContent = button.getAttribute("data-counted") + (n ? " " + n : " selected");
    });
    if (!n) {
      var open = form.querySelector(".confirm-inline");
      if (open) { open.remove(); }
    }
  }

  function countAll(root) {
    root.querySelectorAll("form[data-bulk]").forEach(countBulk);
  }

  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!(box instanceof HTMLInputElement) || box.type !== "checkbox") { return; }
    var formId = box.getAttribute("form");
    if (!formId) { return; }
    if (box.classList.contains("pick-all")) {
      document.querySelectorAll('input[name="pick"][form="' + formId + '"]').forEach(function (pick) {
        pick.checked = box.checked;
      });
    }
    var form = document.getElementById(formId);
    if (form && form.hasAttribute("data-bulk")) { countBulk(form); }
  });

  // --- the inbox: decided rows, focus, keys ----------------------------------------------------

  function inbox() { return document.querySelector("[data-inbox]"); }

  function requests() {
    var box = inbox();
    return box ? Array.prototype.slice.call(box.querySelectorAll("tbody tr[data-request]")) : [];
  }

  function rowOf(el) { return el && el.closest ? el.closest("tr[data-request]") : null; }

  function target(row) {
    return row.querySelector("[data-approve]") || row.querySelector("a[data-open]");
  }

  function focusRow(row, scroll) {
    var el = row && target(row);
    if (!el) { return; }
    el.focus({ preventScroll: true });
    if (scroll) { el.scrollIntoView({ block: "nearest" }); }
  }

  function nextAfter(row) {
    for (var el = row.nextElementSibling; el; el = el.nextElementSibling) {
      if (el.matches("tr[data-request]") && el.querySelector("[data-approve]")) { return el; }
    }
    for (el = row.previousElementSibling; el; el = el.previousElementSibling) {
      if (el.matches("tr[data-request]") && el.querySelector("[data-approve]")) { return el; }
    }
    return null;
  }

  function afterDecision(root) {
    root.querySelectorAll("tr[data-decided][data-just]").forEach(function (row) {
      row.removeAttribute("data-just");
      var next = nextAfter(row);
      if (next) { focusRow(next, !pointer); }
      else {
        var heading = inbox() && inbox().querySelector("h1");
        if (heading) { heading.setAttribute("tabindex", "-1"); heading.focus({ preventScroll: true }); }
      }
    });
  }

  document.addEventListener("pointerdown", function () { pointer = true; }, true);

  function toggleKeys(show) {
    var help = document.getElementById("keys");
    if (!help) { return; }
    help.hidden = show === undefined ? !help.hidden : !show;
    document.querySelectorAll("[data-keys-help]").forEach(function (b) { b.setAttribute("aria-expanded", String(!help.hidden)); });
  }

  document.addEventListener("click", function (event) {
    var el = event.target instanceof Element ? event.target : null;
    if (el && el.closest("[data-keys-help]")) { toggleKeys(); }
  });

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      toggleKeys(false);
      document.querySelectorAll("details.menu[open], details.more[open]").forEach(function (menu) {
        if (menu.contains(document.activeElement) || menu.classList.contains("menu")) {
          menu.open = false;
          var summary = menu.querySelector("summary");
          if (summary && menu.contains(document.activeElement)) { summary.focus(); }
        }
      });
      return;
    }
    if (!inbox() || event.ctrlKey || event.metaKey || event.altKey) { return; }
    var active = document.activeElement;
    var tag = active && active.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") {
      if (active.type !== "checkbox") { return; }
    }
    var rows = requests();
    var row = rowOf(active);
    var at = row ? rows.indexOf(row) : -1;
    pointer = false;
    switch (event.key) {
      case "j":
        if (rows.length) { focusRow(rows[Math.min(at + 1, rows.length - 1)], true); }
        break;
      case "k":
        if (rows.length) { focusRow(rows[Math.max(at - 1, 0)], true); }
        break;
      case "a":
        if (row && row.querySelector("[data-approve]")) { row.querySelector("[data-approve]").click(); }
        break;
      case "d":
        if (row && row.querySelector("input[name=reason]")) { row.querySelector("input[name=reason]").focus(); }
        break;
      case "o":
        if (row && row.querySelector("a[data-open]")) { window.location.assign(row.querySelector("a[data-open]").href); }
        break;
      case "?":
        toggleKeys();
        break;
      default:
        return;
    }
    event.preventDefault();
  });

  // --- the inbox's refresh: rows keep their places ----------------------------------------------

  function busy(row) {
    var active = document.activeElement;
    if (active && row.contains(active)) { return true; } // never pull the focus away
    var reason = row.querySelector("input[name=reason]");
    var pick = row.querySelector('input[name="pick"]');
    return !!((reason && reason.value) || (pick && pick.checked) || row.querySelector(".htmx-request, .confirm-inline"));
  }

  function gone(row) {
    var height = row.getBoundingClientRect().height;
    var link = row.querySelector("a[data-open]");
    var line = document.createElement("tr");
    line.id = row.id;
    line.className = "decided";
    line.setAttribute("data-decided", "");
    var cell = document.createElement("td");
    cell.colSpan = 5;
    var done = document.createElement("span");
    done.className = "done";
    done.textContent = "No longer waiting for you";
    cell.append(done);
    if (link) {
      var a = document.createElement("a");
      a.href = link.href;
      a.textContent = link.textContent;
      cell.append(" · ", a);
    }
    line.append(cell);
    line.style.height = height + "px"; // nothing below it moves
    row.replaceWith(line);
  }

  var refreshing = false;
  function refreshInbox() {
    var box = inbox();
    if (!box || refreshing) { return; }
    refreshing = true;
    fetch(box.getAttribute("data-refresh"), { headers: { "HX-Request": "true" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error(String(response.status)); }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("approvals");
        if (fresh) { merge(box, fresh); }
        if (failing) { failing = false; say(""); }
      })
      .catch(function () {
        failing = true;
        say("Reconnecting… the server cannot be reached; this page is not up to date.", false);
      })
      .then(function () { refreshing = false; });
  }

  function merge(box, fresh) {
    ["[data-testid=inbox-count]", "[data-testid=shown]"].forEach(function (sel) {
      var now = box.querySelector(sel), then = fresh.querySelector(sel);
      if (now && then) { now.textContent = then.textContent; }
    });
    var body = box.querySelector("table.inbox tbody");
    var newBody = fresh.querySelector("table.inbox tbody");
    if (!body || !newBody) { return; }
    var incoming = {};
    newBody.querySelectorAll("tr[data-request]").forEach(function (row) { incoming[row.id] = row; });
    var known = body.querySelectorAll("tr[data-request], tr[data-decided]");
    if (!known.length) { // the empty state: nothing to keep in place
      if (newBody.querySelector("tr[data-request]")) {
        body.replaceChildren.apply(body, Array.prototype.map.call(newBody.children, adopt));
        ready(body);
      }
      return;
    }
    var seen = {};
    Array.prototype.forEach.call(known, function (row) {
      seen[row.id] = true;
      if (!row.hasAttribute("data-request")) { return; }
      var replacement = incoming[row.id];
      // a row the person is busy with stays as it is, even when it left the inbox: their own
      // decision's answer is on its way, or their ticked row goes with the bulk action (which
      // reports it as decided meanwhile)
      if (!replacement) { if (!busy(row)) { gone(row); } }
      else if (!busy(row) && signature(row) !== signature(replacement)) {
        ready(row.replaceWith(adopt(replacement)) || body.querySelector("#" + row.id));
      }
    });
    Object.keys(incoming).forEach(function (id) {
      if (!seen[id]) { ready(body.appendChild(adopt(incoming[id]))); }
    });
  }

  // what a row says, but for its times (they only age): a row that says the same is left alone
  function signature(row) {
    var copy = row.cloneNode(true);
    copy.querySelectorAll("time").forEach(function (t) { t.remove(); });
    copy.querySelectorAll("[data-htmx-powered]").forEach(function (e) { e.removeAttribute("data-htmx-powered"); });
    return copy.innerHTML.replace(/\s+/g, " ");
  }

  function adopt(node) {
    var copy = document.importNode(node, true);
    localise(copy);
    return copy;
  }

  function ready(node) { // htmx wires what is in the document
    if (node && window.htmx && window.htmx.process) { window.htmx.process(node); }
  }

  // --- live: pushed by the server, else polled ---------------------------------------------------

  function setCount(text) {
    var n = parseInt(text, 10);
    if (isNaN(n)) { return; }
    document.querySelectorAll("[data-nav-count]").forEach(function (el) {
      el.textContent = String(n);
      var badge = el.closest(".nav-count");
      if (badge) { badge.hidden = n === 0; }
    });
  }

  function changed() {
    refreshInbox();
    document.body.dispatchEvent(new CustomEvent("signoff:changed"));
  }

  // how the page hears of changes: "push" (the stream is up), "poll" (it fell back), else not yet
  function mode(how) { document.body.setAttribute("data-live-mode", how); }

  var polling = null;
  function poll(url) {
    if (polling) { return; }
    mode("poll");
    var tick = function () {
      fetch(url + "/count", { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (body) {
          if (body && typeof body.count === "number") {
            var before = document.querySelector("[data-nav-count]");
            var was = before ? before.textContent : "";
            setCount(String(body.count));
            if (String(body.count) !== was || body.mark !== poll.mark) { poll.mark = body.mark; changed(); }
          }
        })
        .catch(function () { /* the banner speaks for failed actions; a poll retries */ });
    };
    tick();
    // a page with a live part (the instances list, an instance) is checked as often as it polled
    polling = window.setInterval(tick, document.querySelector("[data-live-part]") ? 5000 : 10000);
  }

  function live() {
    var url = document.body.getAttribute("data-live");
    if (!url) { return; }
    if (!window.EventSource) { poll(url); return; }
    var failures = 0;
    var stream = new EventSource(url);
    stream.addEventListener("open", function () { mode("push"); });
    stream.addEventListener("count", function (event) { failures = 0; setCount(event.data); });
    stream.addEventListener("changed", function () { changed(); });
    stream.addEventListener("error", function () {
      failures += 1;
      if (stream.readyState === EventSource.CLOSED || failures > 3) { stream.close(); poll(url); }
    });
    window.addEventListener("pagehide", function () { stream.close(); });
  }

  // --- copying, failures, start ------------------------------------------------------------------

  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element && event.target.closest("[data-copy]");
    if (!button) { return; }
    var field = button.parentElement && button.parentElement.querySelector("input");
    if (!field) { return; }
    field.select();
    var done = function () { button.textContent = "Copied"; };
    if (navigator.clipboard) { navigator.clipboard.writeText(field.value).then(done, function () {}); }
    else { done(); }
  });

  // live refresh: not while the person is busy with what it would replace
  document.addEventListener("htmx:before:request", function (event) {
    var el = source(event);
    if (!isPoll(el)) { return; }
    var active = document.activeElement;
    var typing = active && el.contains(active) && (active.tagName === "INPUT" || active.tagName === "TEXTAREA" || active.tagName === "SELECT");
    var ticked = el.querySelector('input[name="pick"]:checked');
    var filled = Array.prototype.some.call(el.querySelectorAll('input[name="reason"]'), function (i) { return i.value !== ""; });
    var open = el.querySelector("details[open], .confirm-inline");
    if (typing || ticked || filled || open) { event.preventDefault(); later(); }
  });

  // a refresh put off while the person was busy: asked again until it can run (no change
  // may come for a long time, and the page would stay behind)
  var putOff = null;
  function later() {
    if (putOff) { return; }
    putOff = window.setTimeout(function () {
      putOff = null;
      document.body.dispatchEvent(new CustomEvent("signoff:changed"));
    }, 3000);
  }

  document.addEventListener("htmx:error", function (event) {
    var el = source(event);
    failing = true;
    if (isPoll(el)) {
      say("Reconnecting… the server cannot be reached; this page is not up to date.", false);
    } else {
      say("Could not reach the server: your last action was not sent. Check the connection and try again.", true);
    }
  });

  document.addEventListener("htmx:response:error", function (event) {
    var ctx = event.detail && event.detail.ctx;
    var status = ctx && ctx.response && ctx.response.status;
    if (status >= 500 && !isPoll(source(event))) {
      say("The server failed to answer (" + status + "): the action may not have been applied. Reload the page to see.", true);
    }
  });

  document.addEventListener("htmx:after:request", function (event) {
    var ctx = event.detail && event.detail.ctx;
    var status = ctx && ctx.response && ctx.response.status;
    if (failing && status && status < 500) { failing = false; say(""); }
  });

  window.addEventListener("offline", function () { failing = true; say("You are offline: nothing can be sent or refreshed until the connection is back.", false); });
  window.addEventListener("online", function () { failing = false; say(""); });

  document.addEventListener("DOMContentLoaded", function () {
    localise(document);
    countAll(document);
    live();
  });
  document.addEventListener("htmx:after:settle", function () {
    localise(document);
    countAll(document);
    afterDecision(document);
  });
})();
