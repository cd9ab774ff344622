// Progressive enhancement for the petition page: show one sign form at a time.
// Without JavaScript both forms are simply shown one after the other.
(function () {
  "use strict";
  document.querySelectorAll("[data-sign-forms]").forEach(function (box) {
    var tabs = box.querySelector(".kind-switch");
    if (!tabs) return;
    var buttons = tabs.querySelectorAll("button[data-show]");
    function show(id) {
      buttons.forEach(function (b) {
        var on = b.getAttribute("data-show") === id;
        b.setAttribute("aria-selected", on ? "true" : "false");
        document.getElementById(b.getAttribute("data-show")).classList.toggle("is-active", on);
      });
    }
    buttons.forEach(function (b) {
      b.addEventListener("click", function () { show(b.getAttribute("data-show")); });
    });
    tabs.hidden = false;
    box.classList.add("is-switching");
  });

  // Display choice guidance: the note on initials and anonymous signatures shows
  // when a country where signing is dangerous is chosen (without JavaScript it
  // is always there).
  document.querySelectorAll("[data-danger-note]").forEach(function (note) {
    var form = note.closest("form");
    var select = form && form.querySelector("select[name=country]");
    if (!select) return;
    var countries = (note.getAttribute("data-countries") || "").split(" ");
    function update() {
      var dangerous = countries.indexOf(select.value) !== -1;
      note.hidden = !dangerous;
      note.classList.toggle("is-prominent", dangerous);
    }
    select.addEventListener("change", update);
    update();
  });

  // After a rejected submit: the page opened at the error summary (the form's
  // action ends in #sign-errors); focus it so that it is read out, and make each
  // of its links put the keyboard in the field it names.
  var summary = document.getElementById("sign-errors");
  if (summary) {
    summary.querySelectorAll("a[data-field]").forEach(function (link) {
      link.addEventListener("click", function (event) {
        var field = document.getElementById(link.getAttribute("href").slice(1));
        if (!field) return;
        event.preventDefault();
        var label = field.closest("fieldset") || document.querySelector('label[for="' + field.id + '"]');
        (label || field).scrollIntoView({ block: "start" });
        field.focus({ preventScroll: true });
      });
    });
    summary.focus();
  }
})();
