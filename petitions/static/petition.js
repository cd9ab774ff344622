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
})();
