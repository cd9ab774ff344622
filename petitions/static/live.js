// Live updates for petition, signatory-list and embed pages: counts and new
// signatories arrive through Server-Sent Events. Without JavaScript (or
// EventSource) the pages are complete as served; this only keeps them fresh.
(function () {
  "use strict";
  var root = document.querySelector("[data-petition][data-events]");
  if (!root || !window.EventSource) return;
  var lang = document.documentElement.lang || "en";
  // The page's digits and separators, as the server wrote them (numbers.py).
  var numbers = numberFormat(lang, document.documentElement.getAttribute("data-numbering") || "latn");
  var countries = window.Intl && Intl.DisplayNames ? new Intl.DisplayNames([lang], { type: "region" }) : null;
  var countryNames = {};  // the server's names, from the page's country lists
  document.querySelectorAll("select[name=country] option[value]").forEach(function (o) {
    if (o.value) countryNames[o.value] = o.getAttribute("data-name") || o.textContent;
  });
  // Texts in the page's language, rendered by the server (petitions/browser_texts.py).
  var textsElement = document.getElementById("browser-texts");
  var texts = textsElement ? JSON.parse(textsElement.textContent) : {};
  var types = texts.organisation_types || {};
  var plurals = window.Intl && Intl.PluralRules ? new Intl.PluralRules(lang) : null;

  function fill(template, values) {
    return template.replace(/%\((\w+)\)s/g, function (all, name) {
      return name in values ? values[name] : all;
    });
  }

  function pluralText(key, n) {
    var forms = (texts.plurals || {})[key];
    if (!forms) return null;
    return forms[plurals ? plurals.select(n) : "other"] || forms.other;
  }

  // A phrase such as "1,234 signatures": the number element stays, the words around
  // it take the plural form of the new number.
  function rephrase(phrase, n) {
    var number = phrase.firstElementChild;
    var template = pluralText(phrase.getAttribute("data-phrase"), n);
    if (!number || !template) return;
    phrase.textContent = "";
    template.split(/(%\(count\)s)/).forEach(function (part) {
      phrase.appendChild(part === "%(count)s" ? number : document.createTextNode(part));
    });
  }

  function numberFormat(tag, system) {
    var format;
    try { format = new Intl.NumberFormat(tag + "-u-nu-" + system); } catch (e) { format = null; }
    // A browser without this language (Chromium has no Central Kurdish) still gets
    // the digits right; the separators are then CLDR's defaults for those digits.
    if (!format || format.resolvedOptions().numberingSystem !== system) {
      format = new Intl.NumberFormat("en-u-nu-" + system);
    }
    return format;
  }

  function countryName(code) {
    return countryNames[code] || (countries ? countries.of(code) : code);
  }

  function setAll(selector, text) {
    document.querySelectorAll(selector).forEach(function (el) { el.textContent = text; });
  }

  function onCount(data) {
    setAll("[data-count]", numbers.format(data.count));
    setAll("[data-count-organisations]", numbers.format(data.organisations));
    setAll("[data-count-individuals]", numbers.format(data.individuals));
    var counts = { signatures: data.count, organisations: data.organisations, individuals: data.individuals };
    document.querySelectorAll("[data-phrase]").forEach(function (phrase) {
      var n = counts[phrase.getAttribute("data-phrase")];
      if (n != null) rephrase(phrase, n);
    });
    document.querySelectorAll("progress[data-progress]").forEach(function (bar) {
      bar.value = Math.min(data.count, Number(bar.max));
    });
  }

  function span(className, text) {
    var el = document.createElement("span");
    el.className = className;
    el.textContent = text;
    if (className === "sig-name") el.dir = "auto";  // a name keeps its own direction
    return el;
  }

  // What <bdi> does in the server's list: a name, number or country inside a
  // sentence keeps its own direction (U+2068 first-strong isolate ... U+2069 pop).
  function isolate(text) {
    return text ? "\u2068" + text + "\u2069" : text;
  }

  function entryElement(e) {
    var li = document.createElement("li");
    li.className = "signatory signatory-" + e.kind + " is-new";
    li.setAttribute("data-id", e.id);
    var meta = [];
    if (e.initials) {
      li.appendChild(span("sig-name", e.initials));
      meta.push(e.kind === "organisation" ? types[e.organisation_type] || "" : isolate(e.occupation || ""));
    } else if (e.kind === "organisation") {
      li.appendChild(span("sig-name", e.organisation));
      meta.push(types[e.organisation_type] || "");
      if (e.members) meta.push(fill(pluralText("members", e.members) || "%(count)s", { count: isolate(numbers.format(e.members)) }));
      if (e.name) {
        meta.push(e.occupation ? fill(texts.signed_by_role || "%(name)s, %(role)s", { name: isolate(e.name), role: isolate(e.occupation) })
                               : fill(texts.signed_by || "%(name)s", { name: isolate(e.name) }));
      }
    } else {
      li.appendChild(span("sig-name", e.name));
      if (e.occupation) meta.push(isolate(e.occupation));
      if (e.city) meta.push(isolate(e.city));
    }
    li.appendChild(span("sig-meta", meta.filter(Boolean).join(" · ")));
    var country = e.country ? countryName(e.country) : "";
    var place = li.appendChild(span("sig-country", ""));
    if (country) place.appendChild(document.createElement("bdi")).textContent = country;
    if (e.comment) {
      var q = document.createElement("q");
      q.className = "sig-comment";
      q.dir = "auto";
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

  // When the server ends the stream (it restarts, or this page fell too far behind
  // and was told to resync), EventSource reconnects by itself with the last event id
  // and is sent what it missed and the current count: repeats are skipped above.
  var source = new EventSource(root.getAttribute("data-events"));
  source.addEventListener("count", function (m) { onCount(JSON.parse(m.data)); });
  source.addEventListener("signature", function (m) { onSignature(JSON.parse(m.data)); });
})();
