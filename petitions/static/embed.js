/* petitions embed: <div data-petition="SLUG"></div> <script src="https://HOST/embed.js" async></script>
   fills each element with a live counter. data-base="https://HOST" names the server when the
   script is served from elsewhere. No dependencies; the host page styles .petition-counter. */
(function () {
  "use strict";
  var script = document.currentScript;
  var scriptBase = script && script.src ? new URL(script.src).origin : "";
  var numbers = new Intl.NumberFormat(document.documentElement.lang || undefined);

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  function mount(box) {
    if (box.getAttribute("data-petition-ready")) return;
    box.setAttribute("data-petition-ready", "1");
    var slug = encodeURIComponent(box.getAttribute("data-petition"));
    var base = (box.getAttribute("data-base") || scriptBase).replace(/\/$/, "");
    if (!slug || !base) return;
    var link = el("a", "petition-counter");
    link.href = base + "/p/" + slug;
    link.target = "_blank";
    link.rel = "noopener";
    var count = el("strong", "petition-count", "…");
    var label = el("span", "petition-label", " signatures");
    var bar = el("progress", "petition-progress");
    link.appendChild(count);
    link.appendChild(label);
    box.textContent = "";
    box.appendChild(link);

    function show(data) {
      count.textContent = numbers.format(data.count);
      if (data.goal) {
        label.textContent = " of " + numbers.format(data.goal) + " signatures";
        bar.max = data.goal;
        bar.value = Math.min(data.count, data.goal);
        if (!bar.parentNode) box.appendChild(bar);
      }
    }

    fetch(base + "/p/" + slug + "/count.json").then(function (r) {
      return r.ok ? r.json() : null;
    }).then(function (data) { if (data) show(data); }).catch(function () {});
    if (window.EventSource) {
      var source = new EventSource(base + "/p/" + slug + "/events");
      source.addEventListener("count", function (m) { show(JSON.parse(m.data)); });
    }
  }

  function mountAll() { document.querySelectorAll("[data-petition]").forEach(mount); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
  else mountAll();
})();
