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

  // Answers htmx swaps no 4xx of by default, swapped in where the element asks: a
  // stale inline edit's 409 (the row form with both versions, data-swap-409) and a
  // refused grid address's 400 (the grid with its reason, data-swap-400).
  document.addEventListener("htmx:beforeSwap", function (event) {
    var config = event.detail.requestConfig;
    var elt = config && config.elt;
    var status = event.detail.xhr.status;
    if ((status === 400 || status === 409) && elt && elt.closest && elt.closest("[data-swap-" + status + "]")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // The cell a double-click asked to edit: {row: the row's id, index: its cellIndex}.
  var clickedCell = null;

  // Focus [data-focus] in swapped-in rows once htmx has wired them (a native
  // autofocus would fire before that, and again when htmx settles); in a row opened
  // by a double-click, the input of the cell that was clicked. The input is scrolled
  // to the middle of the grid's box, clear of its pinned cells and row actions.
  document.addEventListener("htmx:load", function (event) {
    var root = event.target;
    var target = null;
    pinGrids(root); // first: the new row may have changed the columns' widths
    if (root.hasAttribute && root.hasAttribute("data-editing")) {
      var cell = clickedCell && clickedCell.row === root.id && root.cells[clickedCell.index];
      target = cell ? cell.querySelector("input, select, textarea") : null;
      clickedCell = null;
    }
    target = target || (root.matches && root.matches("[data-focus]") ? root : root.querySelector("[data-focus]"));
    if (!target) return;
    target.focus({ preventScroll: true });
    target.scrollIntoView({ block: "nearest", inline: root.hasAttribute("data-editing") ? "center" : "nearest" });
  });

  // Escape inside a row being edited presses its Cancel control.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || event.defaultPrevented || !event.target.closest) return;
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
    if (!edit) return;
    var cell = target.closest("td");
    clickedCell = cell ? { row: row.id, index: cell.cellIndex } : null;
    edit.click();
  });

  // Menus (<details data-menu>) open over the page, one at a time; Escape closes the
  // open one and gives the focus back to its summary; a click or Tab outside closes it.
  // Without this file they are plain disclosures.
  function closeMenus(except) {
    document.querySelectorAll("details[data-menu][open]").forEach(function (menu) {
      if (menu !== except) menu.open = false;
    });
  }
  document.addEventListener("toggle", function (event) {
    var menu = event.target;
    if (!menu.matches || !menu.matches("details[data-menu]") || !menu.open) return;
    closeMenus(menu);
    // Opened near the right edge: align the menu's right edge with its button's.
    var body = menu.querySelector(".menu-body");
    if (!body) return;
    body.classList.remove("menu-end");
    if (body.getBoundingClientRect().right > document.documentElement.clientWidth - 8) {
      body.classList.add("menu-end");
    }
    body.scrollIntoView({ block: "nearest" }); // opened low in the window: all of it
  }, true); // toggle does not bubble
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details[data-menu][open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.open = false;
    });
  });
  document.addEventListener("focusout", function (event) {
    var menu = event.target.closest && event.target.closest("details[data-menu][open]");
    if (menu && event.relatedTarget && !menu.contains(event.relatedTarget)) menu.open = false;
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    var menu = document.querySelector("details[data-menu][open]");
    if (!menu) return;
    event.preventDefault();
    menu.open = false;
    menu.querySelector("summary").focus();
  }, true); // before the inline edit's Escape

  // Pin a grid's leading cells (data-pins: select, id, participant) at the offsets of
  // the header cells before them; CSS pins the first cell without this.
  function pinGrids(root) {
    var table = root.closest && root.closest("table.grid[data-pins]");
    var tables = table ? [table] : (root.querySelectorAll ? root.querySelectorAll("table.grid[data-pins]") : []);
    Array.prototype.forEach.call(tables, function (grid) {
      var head = grid.tHead && grid.tHead.rows[0];
      var pins = Math.min(Number(grid.getAttribute("data-pins")), head ? head.cells.length : 0);
      var left = 0;
      for (var i = 0; i < pins; i++) {
        grid.style.setProperty("--pin-" + (i + 1), left + "px");
        left += head.cells[i].getBoundingClientRect().width;
      }
      grid.classList.add("pinned");
    });
  }
  document.addEventListener("DOMContentLoaded", function () { pinGrids(document); });
  var pinning = 0;
  window.addEventListener("resize", function () {
    cancelAnimationFrame(pinning);
    pinning = requestAnimationFrame(function () { pinGrids(document); });
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
