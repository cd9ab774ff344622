// Small conveniences for the admin pages; everything works without them.
(function () {
  "use strict";
  // "Select all" checkboxes: shown only when this script runs.
  document.querySelectorAll("input[data-select-all]").forEach(function (all) {
    var name = all.getAttribute("data-select-all");
    var form = all.form || all.closest("form");
    if (!form) return;
    var boxes = form.querySelectorAll('input[type=checkbox][name="' + name + '"]');
    all.hidden = false;
    all.addEventListener("change", function () {
      boxes.forEach(function (box) { box.checked = all.checked; });
    });
  });
  // Ask before actions that are hard to undo.
  document.querySelectorAll("button[name=action][value=send], button[name=action][value=remove_translation], button[name=action][value=disable], button[name=action][value=archived]").forEach(function (button) {
    button.addEventListener("click", function (event) {
      var question = {
        send: "Send this update to every signer who asked for updates? This cannot be undone.",
        remove_translation: "Remove this translation?",
        disable: "Disable this admin? They are logged out at once.",
        archived: "Archive this petition? It will no longer be listed."
      }[button.value];
      if (question && !window.confirm(question)) event.preventDefault();
    });
  });
  // Copy buttons beside embed snippets.
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(source.value || source.textContent).then(function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 2000);
      });
    });
  });
})();
