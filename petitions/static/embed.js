/* petitions embed: <div data-petition="SLUG"></div> <script src="https://HOST/embed.js" async></script>
   fills each element with a live counter. data-base="https://HOST" names the server when the
   script is served from elsewhere. No dependencies; the host page styles .petition-counter. */
(function () {
  "use strict";
  var script = document.currentScript;
  var scriptBase = script && script.src ? new URL(script.src).origin : "";
  // The digits of each interface language: numbers.NUMBERING_SYSTEMS (a test keeps them equal).
  var NUMBERING = {"en":"latn","fa":"arabext","ar":"arab","ckb":"arab","tr":"latn","fr":"latn","es":"latn","de":"latn"};

  // The counter's language: its data-lang, else the language of the host page around it.
  function languageOf(box) {
    var holder = box.closest("[lang]");
    return box.getAttribute("data-lang") || (holder && holder.getAttribute("lang")) || "";
  }

  // Numbers as the petition's own pages write them in that language.
  function numberFormat(lang) {
    var base = lang.toLowerCase().split(/[-_]/)[0];
    var system = NUMBERING[base];
    var format = null;
    try {
      format = new Intl.NumberFormat(system ? base + "-u-nu-" + system : lang || undefined);
    } catch (e) { /* not a language tag */ }
    // A browser without this language (Chromium has no Central Kurdish) keeps the digits.
    if (system && (!format || format.resolvedOptions().numberingSystem !== system)) {
      format = new Intl.NumberFormat("en-u-nu-" + system);
    }
    return format || new Intl.NumberFormat();
  }

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
    var numbers = numberFormat(languageOf(box));
    var base = (box.getAttribute("data-base") || scriptBase).replace(/\/$/, "");
    if (!slug || !base) return;
    var link = el("a", "petition-counter");
    link.href = base + "/p/" + slug;
    link.target = "_blank";
    link.rel = "noopener";
    var count = el("strong", "petition-count", "…");
    var label = el("span", "petition-label");  // "1,234 signatures": the count sits inside
    var goal = el("span", "petition-goal");
    var bar = el("progress", "petition-progress");
    label.appendChild(count);
    link.appendChild(label);
    box.textContent = "";
    box.appendChild(link);
    var lang = box.getAttribute("data-lang") || document.documentElement.lang || "en";
    var texts = null, latest = null;
    var plurals = window.Intl && Intl.PluralRules ? new Intl.PluralRules(lang) : null;

    function fill(template, values) {
      return template.replace(/%\((\w+)\)s/g, function (all, name) {
        return name in values ? values[name] : all;
      });
    }

    function show(data) {
      latest = data;
      count.textContent = numbers.format(data.count);
      if (texts) {  // the words in the counter's language, around the count
        var forms = texts.plurals.signatures;
        var template = forms[plurals ? plurals.select(data.count) : "other"] || forms.other;
        label.textContent = "";
        template.split(/(%\(count\)s)/).forEach(function (part) {
          label.appendChild(part === "%(count)s" ? count : document.createTextNode(part));
        });
      }
      if (data.goal) {
        if (texts) goal.textContent = " · " + fill(texts.of_goal, { goal: numbers.format(data.goal) });
        if (!goal.parentNode) link.appendChild(goal);
        bar.max = data.goal;
        bar.value = Math.min(data.count, data.goal);
        if (!bar.parentNode) box.appendChild(bar);
      }
    }

    // The counter's texts (petitions/browser_texts.py), in its language.
    fetch(base + "/texts.json?lang=" + encodeURIComponent(lang)).then(function (r) {
      return r.ok ? r.json() : null;
    }).then(function (data) {
      texts = data;
      if (latest) show(latest);
    }).catch(function () {});
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
