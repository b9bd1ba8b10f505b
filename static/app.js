// Small enhancements on top of htmx; every page works without this file.
(function () {
  "use strict";

  function toast(text) {
    var area = document.getElementById("toast");
    if (!area) return;
    area.textContent = text;
    area.hidden = false;
    clearTimeout(area._timer);
    area._timer = setTimeout(function () { area.hidden = true; }, 6000);
  }

  // htmx does not swap 4xx/5xx answers (except 422): show their message instead.
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var doc = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
    var alert = doc.querySelector(".alert, .lead");
    toast(alert ? alert.textContent.trim() : "The request failed (" + xhr.status + ").");
  });
  document.addEventListener("htmx:sendError", function () {
    toast("The server could not be reached. Nothing was saved.");
  });

  // A stale inline edit answers 409 with the row form (both versions): swap it in.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var config = event.detail.requestConfig;
    var elt = config && config.elt;
    if (event.detail.xhr.status === 409 && elt && elt.closest("[data-swap-409]")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // Focus [data-focus] in swapped-in rows once htmx has wired them. (A native
  // autofocus would fire before that, and again when htmx settles.)
  document.addEventListener("htmx:load", function (event) {
    var root = event.target;
    var target = root.matches && root.matches("[data-focus]") ? root : root.querySelector("[data-focus]");
    if (target) target.focus();
  });

  // Escape inside a row being edited presses its Cancel control.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || !event.target.closest) return;
    var row = event.target.closest("[data-editing]");
    var cancel = row && row.querySelector("[data-cancel]");
    if (cancel) {
      event.preventDefault();
      // htmx wires new content ~20 ms after a swap: a quick Escape must not navigate.
      if (window.htmx) window.htmx.process(cancel);
      cancel.click();
    }
  });

  // Double-click a grid row to edit it in place, as its Edit link does.
  document.addEventListener("dblclick", function (event) {
    var target = event.target;
    if (!target.closest || target.closest("a, button, input, select, textarea, summary")) return;
    var row = target.closest("tr");
    var edit = row && !row.hasAttribute("data-editing") && row.querySelector("[data-edit]");
    if (edit) edit.click();
  });

  // "Select every row on this page": only useful with this script, so shown by it.
  function showSelectAll(root) {
    root.querySelectorAll("[data-select-all]").forEach(function (box) { box.hidden = false; });
  }
  document.addEventListener("DOMContentLoaded", function () { showSelectAll(document); });
  document.addEventListener("htmx:load", function (event) { showSelectAll(event.target); });
  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!box.matches || !box.matches("[data-select-all]")) return;
    var table = box.closest("table");
    table.querySelectorAll('input[name="ids"][form="bulk-form"]').forEach(function (row) {
      row.checked = box.checked;
    });
  });
})();
