// On the embed page, inside another site's iframe: tell the page around it how tall
// the content is whenever that changes (a form switched, an error shown, a thank-you
// after signing), so its snippet (docs/embedding.md) can size the iframe to fit,
// with no inner scrollbar. The message names itself; it carries nothing private.
(function () {
  "use strict";
  if (window.parent === window) return;
  var box = document.querySelector(".embed-box") || document.body;
  var slug = box.getAttribute("data-petition") || "";
  var last = 0;

  function contentHeight() {
    var after = 0;
    [box, document.body].forEach(function (el) {
      var style = getComputedStyle(el);
      after += parseFloat(style.marginBlockEnd) || 0;
      if (el !== box) after += parseFloat(style.paddingBlockEnd) || 0;
    });
    // The box's own height, not the page's: the page is at least as tall as the iframe.
    return Math.ceil(box.getBoundingClientRect().bottom + window.scrollY + after);
  }

  function post() {
    var height = contentHeight();
    if (height === last) return;
    last = height;
    window.parent.postMessage({ type: "petitions:resize", slug: slug, height: height }, "*");
  }

  if (window.ResizeObserver) new ResizeObserver(post).observe(box);
  window.addEventListener("load", post);
  post();
})();
