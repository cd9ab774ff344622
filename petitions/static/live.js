// Live updates for petition, signatory-list and embed pages: counts and new
// signatories arrive through Server-Sent Events. Without JavaScript (or
// EventSource) the pages are complete as served; this only keeps them fresh.
(function () {
  "use strict";
  var root = document.querySelector("[data-petition][data-events]");
  if (!root || !window.EventSource) return;
  var lang = document.documentElement.lang || "en";
  var numbers = new Intl.NumberFormat(lang);
  var countries = window.Intl && Intl.DisplayNames ? new Intl.DisplayNames([lang], { type: "region" }) : null;
  var types = {
    trade_union: "Trade union", federation: "Federation or union centre", association: "Association",
    ngo: "NGO", political: "Political organisation", other: "Other organisation"
  };

  function setAll(selector, text) {
    document.querySelectorAll(selector).forEach(function (el) { el.textContent = text; });
  }

  function onCount(data) {
    setAll("[data-count]", numbers.format(data.count));
    setAll("[data-count-organisations]", numbers.format(data.organisations));
    setAll("[data-count-individuals]", numbers.format(data.individuals));
    document.querySelectorAll("progress[data-progress]").forEach(function (bar) {
      bar.value = Math.min(data.count, Number(bar.max));
    });
  }

  function span(className, text) {
    var el = document.createElement("span");
    el.className = className;
    el.textContent = text;
    return el;
  }

  function entryElement(e) {
    var li = document.createElement("li");
    li.className = "signatory signatory-" + e.kind + " is-new";
    li.setAttribute("data-id", e.id);
    var meta = [];
    if (e.initials) {
      li.appendChild(span("sig-name", e.initials));
      meta.push(e.kind === "organisation" ? types[e.organisation_type] || "" : e.occupation || "");
    } else if (e.kind === "organisation") {
      li.appendChild(span("sig-name", e.organisation));
      meta.push(types[e.organisation_type] || "");
      if (e.members) meta.push(numbers.format(e.members) + " members");
      if (e.name) meta.push("signed by " + e.name + (e.occupation ? ", " + e.occupation : ""));
    } else {
      li.appendChild(span("sig-name", e.name));
      if (e.occupation) meta.push(e.occupation);
      if (e.city) meta.push(e.city);
    }
    li.appendChild(span("sig-meta", meta.filter(Boolean).join(" · ")));
    var country = e.country ? (countries ? countries.of(e.country) : e.country) : "";
    li.appendChild(span("sig-country", country));
    if (e.comment) {
      var q = document.createElement("q");
      q.className = "sig-comment";
      q.textContent = e.comment;
      li.appendChild(q);
    }
    return li;
  }

  function onSignature(e) {
    var list = document.querySelector("[data-live-list]");
    if (!list) return;
    var existing = list.querySelector('[data-id="' + e.id + '"]');
    if (e.removed) {
      if (existing) existing.remove();
      return;
    }
    if (existing) return;  // a replayed event
    list.insertBefore(entryElement(e), list.firstChild);
    var limit = Number(list.getAttribute("data-live-list")) || 50;
    while (list.children.length > limit) list.removeChild(list.lastChild);
    var empty = document.querySelector("[data-live-empty]");
    if (empty) empty.remove();
  }

  var source = new EventSource(root.getAttribute("data-events"));
  source.addEventListener("count", function (m) { onCount(JSON.parse(m.data)); });
  source.addEventListener("signature", function (m) { onSignature(JSON.parse(m.data)); });
})();
