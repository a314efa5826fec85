// signoff: small helpers only; every request is an htmx attribute in the markup.
// - times: the server shows UTC; the reader's local time is added to the hover text
// - data-confirm: asked after the browser's own checks (a Deny without a reason says "fill in
//   this field" first, and no confirm appears), before htmx or the browser sends the form
// - Escape closes an open menu; a header checkbox selects every row of its bulk form
// - the connection: a banner says when the server cannot be reached (live refresh pauses and
//   resumes by itself) and when an action failed, so a click never just does nothing
// - live refresh waits while someone is typing in, or has selected rows of, what it replaces
(function () {
  "use strict";
  var banner = null;
  var failing = false;

  function localise(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) { el.title = when.toLocaleString() + " (your time) · " + el.getAttribute("datetime"); }
    });
  }

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
    return !!trigger && trigger.indexOf("every") === 0;
  }

  function source(event) {
    var ctx = event.detail && event.detail.ctx;
    return (ctx && ctx.sourceElement) || event.target;
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var asker = (event.submitter && event.submitter.getAttribute("data-confirm")) ? event.submitter : form;
    var question = asker.getAttribute && asker.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") { return; }
    document.querySelectorAll("details.menu[open], details.more[open]").forEach(function (menu) {
      if (menu.contains(document.activeElement) || menu.classList.contains("menu")) {
        menu.open = false;
        var summary = menu.querySelector("summary");
        if (summary && menu.contains(document.activeElement)) { summary.focus(); }
      }
    });
  });

  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!(box instanceof HTMLInputElement) || !box.classList.contains("pick-all")) { return; }
    var form = box.getAttribute("form");
    document.querySelectorAll('input[name="pick"][form="' + form + '"]').forEach(function (pick) {
      pick.checked = box.checked;
    });
  });

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
    var picked = el.querySelector('input[name="pick"]:checked');
    var filled = Array.prototype.some.call(el.querySelectorAll('input[name="reason"]'), function (i) { return i.value !== ""; });
    var open = el.querySelector("details[open]");
    if (typing || picked || filled || open) { event.preventDefault(); }
  });

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

  document.addEventListener("DOMContentLoaded", function () { localise(document); });
  document.addEventListener("htmx:after:settle", function (event) {
    localise(event.target instanceof Element ? event.target : document);
  });
})();
