// CSV import pages: upload progress, a size check before sending. Works without it.
(function () {
  "use strict";

  function uploadForm(elt) {
    return elt && elt.closest ? elt.closest("#upload-form") : null;
  }

  // Refuse an over-limit file before sending it (the server would answer 413).
  document.addEventListener("change", function (event) {
    var input = event.target;
    var form = uploadForm(input);
    if (!form || input.type !== "file") return;
    var limit = parseInt(form.getAttribute("data-max-bytes"), 10);
    var file = input.files && input.files[0];
    var tooLarge = !!(file && limit && file.size > limit);
    var message = document.getElementById("file-too-large");
    if (message) message.hidden = !tooLarge;
    input.classList.toggle("is-invalid", tooLarge);
    input.setCustomValidity(tooLarge ? "The file is too large." : "");
  });

  document.addEventListener("htmx:confirm", function (event) {
    var form = uploadForm(event.target);
    var input = form && form.querySelector("input[type=file]");
    if (input && !input.checkValidity()) {
      event.preventDefault();
      input.focus();
    }
  });

  function progressParts() {
    return {
      box: document.getElementById("upload-progress"),
      bar: document.getElementById("upload-bar"),
      percent: document.getElementById("upload-percent")
    };
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    if (!uploadForm(event.detail.elt)) return;
    var p = progressParts();
    if (p.box) p.box.hidden = false;
    if (p.bar) p.bar.removeAttribute("value");
    var button = uploadForm(event.detail.elt).querySelector("button[type=submit]");
    if (button) button.disabled = true;
  });

  // htmx 2 relays the XHR upload's progress events.
  document.addEventListener("htmx:xhr:progress", function (event) {
    if (!uploadForm(event.target) || !event.detail.lengthComputable) return;
    var p = progressParts();
    var share = Math.round((event.detail.loaded / event.detail.total) * 100);
    if (p.bar) { p.bar.max = 100; p.bar.value = share; }
    if (p.percent) p.percent.textContent = share + " %";
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var form = uploadForm(event.detail.elt);
    if (!form || event.detail.successful) return;
    var p = progressParts();
    if (p.box) p.box.hidden = true;
    var button = form.querySelector("button[type=submit]");
    if (button) button.disabled = false;
  });
})();
