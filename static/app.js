// signoff: small helpers only; every interaction is an htmx attribute in the markup.
// Times are rendered in UTC by the server; show the reader's local time on hover.
(function () {
  "use strict";
  function localise(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) { el.title = when.toLocaleString() + " (local) · " + el.getAttribute("datetime"); }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { localise(document); });
  document.addEventListener("htmx:after:settle", function (event) {
    localise(event.target instanceof Element ? event.target : document);
  });
})();
