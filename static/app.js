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

  // Buttons and forms with data-confirm ask before destructive actions.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var message = form.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  }, true);
})();
