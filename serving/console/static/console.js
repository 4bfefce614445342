// Renders every chart of the page (and of fragments htmx swaps in) with the vendored vega-embed.
(function () {
  "use strict";
  function numberLocale() {
    var el = document.getElementById("number-locale");
    return el ? JSON.parse(el.textContent) : undefined;
  }
  function render(root) {
    var locale = numberLocale();
    (root || document).querySelectorAll("[data-vl]").forEach(function (el) {
      if (el.dataset.rendered) { return; }
      var source = document.getElementById(el.dataset.vl);
      if (!source) { return; }
      el.dataset.rendered = "1";
      window.vegaEmbed(el, JSON.parse(source.textContent), {
        actions: false, renderer: "svg", formatLocale: locale
      }).then(function () { el.dataset.ready = "1"; }).catch(function (err) {
        el.dataset.error = String(err);
        console.error("chart failed: " + err);
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { render(document); });
  document.addEventListener("htmx:afterSwap", function (evt) { render(evt.target); });
})();
