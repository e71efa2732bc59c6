// Progressive enhancement only: every page works without this file.
// - [data-fragment]: replaced by the HTML its URL returns (the decision trace loads in place).
// - form[data-confirm]: asks before an action is sent.
(function () {
  "use strict";
  function load(el) {
    var url = el.getAttribute("data-fragment");
    el.setAttribute("aria-busy", "true");
    fetch(url, { headers: { "X-Console-Fragment": "1" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) { el.innerHTML = html; })
      .catch(function () { /* the link inside stays: the full page still works */ })
      .then(function () { el.removeAttribute("aria-busy"); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-fragment]").forEach(load);
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  });
})();
