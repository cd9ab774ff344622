// Receipts (templates/verified.html, templates/receipt.html), progressive enhancement only:
// - a "Copy" button beside a receipt shown on the page;
// - the receipt page opened from a link ending in #receipt=...: the receipt is taken from
//   the part after "#" (which browsers never send), removed from the address bar and from
//   history, and posted in the form's body, so no address any server or log sees holds it.
// Without JavaScript the receipt is selectable text and the form takes a pasted receipt.
(function () {
  "use strict";

  function copyWithSelection(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    try {
      return document.execCommand("copy");
    } catch (e) {
      return false;
    }
  }

  function setUpCopy(box) {
    var text = box.querySelector("[data-receipt-text]");
    var button = box.querySelector("[data-receipt-copy]");
    var status = box.querySelector("[data-receipt-status]");
    if (!text || !button) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var receipt = text.textContent.trim();
      var done = function () { if (status) status.textContent = box.dataset.copied; };
      var failed = function () {
        if (copyWithSelection(text)) done();
        else if (status) status.textContent = box.dataset.copyFailed;
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(receipt).then(done, failed);
      } else {
        failed();
      }
    });
  }

  function receiptFromFragment() {
    var hash = window.location.hash;
    if (hash.indexOf("#receipt=") !== 0) return null;
    var value = hash.slice("#receipt=".length);
    try {
      value = decodeURIComponent(value);
    } catch (e) {
      // keep it as it came: the server says whether it is a receipt
    }
    return value.slice(0, 200);
  }

  function checkFromFragment(form) {
    var receipt = receiptFromFragment();
    if (receipt === null) return;
    // Out of the address bar and the history entry before anything else happens.
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
    var field = form.querySelector("[name=receipt]");
    if (!field || !receipt) return;
    field.value = receipt;
    if (form.requestSubmit) form.requestSubmit();
    else form.submit();
  }

  var boxes = document.querySelectorAll("[data-receipt-box]");
  for (var i = 0; i < boxes.length; i++) setUpCopy(boxes[i]);
  var form = document.querySelector("[data-receipt-form]");
  if (form) {
    checkFromFragment(form);
    // Another receipt link opened in this tab only changes the part after "#".
    window.addEventListener("hashchange", function () { checkFromFragment(form); });
  }
})();
