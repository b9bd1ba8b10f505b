// The grid's filter form: the condition and value fields follow the chosen column.
// (A refused view's 400 is swapped in by app.js, data-swap-400.)
// Without this file the server refuses a condition the column does not offer.
(function () {
  "use strict";

  function syncValue(form) {
    var op = form.querySelector("[data-filter-op]");
    var value = form.querySelector("[data-filter-value]");
    if (!op || !value) return;
    var option = op.options[op.selectedIndex];
    value.disabled = Boolean(option && option.hasAttribute("data-no-value"));
  }

  function switchColumn(select) {
    var form = select.closest("form");
    var fields = form && form.querySelector("[data-filter-fields]");
    var option = select.options[select.selectedIndex];
    var type = option && option.getAttribute("data-type");
    var template = null;
    document.querySelectorAll("template[data-filter-type]").forEach(function (t) {
      if (t.getAttribute("data-filter-type") === type) template = t;
    });
    if (!fields || !template) return;
    var before = form.querySelector("[data-filter-op]");
    var chosen = before ? before.value : "";
    fields.replaceChildren(template.content.cloneNode(true));
    var op = fields.querySelector("[data-filter-op]");
    if (op && Array.prototype.some.call(op.options, function (o) { return o.value === chosen; })) {
      op.value = chosen;
    }
    syncValue(form);
  }

  // The fields follow the column at once: the no-script "Conditions for this
  // column" button is not needed.
  function hidePick(root) {
    root.querySelectorAll("[data-filter-pick]").forEach(function (b) { b.hidden = true; });
  }
  document.addEventListener("DOMContentLoaded", function () { hidePick(document); });
  document.addEventListener("htmx:load", function (event) { hidePick(event.target); });

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (!target.matches) return;
    if (target.matches("[data-filter-column]")) switchColumn(target);
    else if (target.matches("[data-filter-op]")) syncValue(target.closest("form"));
  });
})();
