// Share buttons: copy the petition's address, and the phone's own share sheet (the Web
// Share API) where the browser has one. The messages come translated in data- attributes.
(function () {
  "use strict";

  function copyWithSelection(input) {
    input.focus();
    input.select();
    try {
      return document.execCommand("copy");
    } catch (e) {
      return false;
    }
  }

  function setUp(box) {
    var input = box.querySelector("[data-share-url]");
    var copy = box.querySelector("[data-share-copy]");
    var status = box.querySelector("[data-share-status]");
    var native = box.querySelector("[data-share-native]");

    function tell(message) {
      status.textContent = message;
    }

    if (input && copy) {
      copy.hidden = false;
      copy.addEventListener("click", function () {
        var url = input.value;
        var done = function () { tell(box.dataset.copied); };
        var failed = function () {
          if (copyWithSelection(input)) done(); else tell(box.dataset.copyFailed);
        };
        if (navigator.clipboard && navigator.clipboard.writeText) {
          navigator.clipboard.writeText(url).then(done, failed);
        } else {
          failed();
        }
      });
      input.addEventListener("focus", function () { input.select(); });
    }

    if (native && typeof navigator.share === "function") {
      native.hidden = false;
      native.addEventListener("click", function () {
        navigator.share({
          title: native.dataset.title,
          text: native.dataset.text,
          url: native.dataset.url
        }).catch(function () { /* the person closed the share sheet */ });
      });
    }
  }

  document.querySelectorAll("[data-share]").forEach(setUp);
})();
