// Drover web UI: live refresh. One server-sent-events stream per tab (/ui/live) says when
// the cluster state moved; the page is then fetched again and <main>'s contents swapped,
// keeping scroll position, open <details> and anything typed. Nothing here is needed to
// read a page or to submit an action: without JavaScript every page is a plain snapshot.
(function () {
  "use strict";
  var indicator = document.getElementById("live");
  var es = null;
  var retry = null;
  var fetching = false;
  var again = false;
  var pendingWhileEditing = false;

  function main() { return document.getElementById("main"); }
  function index() { var m = main(); return (m && m.getAttribute("data-index")) || "0"; }
  function say(state, text) {
    if (!indicator) { return; }
    indicator.setAttribute("data-state", state);
    indicator.textContent = text;
  }

  // A field inside <main> with focus (or edited): swapping would lose what is typed.
  function editing() {
    var a = document.activeElement;
    if (!a || !main().contains(a)) { return false; }
    var tag = a.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT";
  }

  // Which <details> are open, keyed by id (a version's, say, so a new one arriving
  // above keeps the server's choice) or else by position.
  function detailsKey(d, i) { return d.id ? "id:" + d.id : "at:" + i; }
  function openDetails(root) {
    var open = {};
    var all = root.querySelectorAll("details");
    for (var i = 0; i < all.length; i++) { open[detailsKey(all[i], i)] = all[i].open; }
    return open;
  }

  // Fields the user changed (typed, ticked, chose), keyed by form action and name, so a
  // swap keeps them even when the field no longer has focus.
  function fieldKey(el) { return (el.form ? el.form.getAttribute("action") : "") + "|" + el.name; }
  function editedFields(root) {
    var out = {};
    var els = root.querySelectorAll("input, select, textarea");
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      if (!el.name || el.type === "hidden") { continue; }
      if (el.type === "checkbox" || el.type === "radio") {
        if (el.checked !== el.defaultChecked) { out[fieldKey(el)] = { checked: el.checked }; }
      } else if (el.tagName === "SELECT") {
        var opt = el.options[el.selectedIndex];
        if (opt && !opt.defaultSelected) { out[fieldKey(el)] = { value: el.value }; }
      } else if (el.value !== el.defaultValue) {
        out[fieldKey(el)] = { value: el.value };
      }
    }
    return out;
  }
  function restoreFields(root, typed) {
    var els = root.querySelectorAll("input, select, textarea");
    for (var i = 0; i < els.length; i++) {
      var t = typed[fieldKey(els[i])];
      if (!t) { continue; }
      if ("checked" in t) { els[i].checked = t.checked; } else { els[i].value = t.value; }
    }
  }

  // Keyboard users keep their place: the focused link, button or summary is found again
  // (same position and text) after a swap.
  var CONTROLS = "a[href], button, summary";
  function focusedControl(root) {
    var a = document.activeElement;
    if (!a || !root.contains(a)) { return null; }
    var all = root.querySelectorAll(CONTROLS);
    for (var i = 0; i < all.length; i++) {
      if (all[i] === a) { return { i: i, text: a.textContent }; }
    }
    return null;
  }
  function refocus(root, f) {
    if (!f) { return; }
    var el = root.querySelectorAll(CONTROLS)[f.i];
    if (el && el.textContent === f.text) { el.focus({ preventScroll: true }); }
  }

  // A draft (the run form) or a followed log is never swapped: it is the user's.
  function noLive() { var m = main(); return !!(m && m.querySelector("[data-no-live]")); }

  function refresh() {
    if (noLive()) { return; }
    if (editing()) { pendingWhileEditing = true; return; }
    if (fetching) { again = true; return; }
    fetching = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Drover-Live": "1" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var next = doc.getElementById("main");
        var cur = main();
        if (!next || !cur || editing()) { pendingWhileEditing = !!next; return; }
        if (next.innerHTML === cur.innerHTML) { return; }
        var open = openDetails(cur);
        var focused = focusedControl(cur);
        var notice = cur.querySelector(".notice");
        var typed = editedFields(cur);
        var x = window.scrollX, y = window.scrollY;
        cur.innerHTML = next.innerHTML;
        cur.setAttribute("data-index", next.getAttribute("data-index") || index());
        var details = cur.querySelectorAll("details");
        for (var i = 0; i < details.length; i++) {
          var k = detailsKey(details[i], i);
          if (Object.prototype.hasOwnProperty.call(open, k)) { details[i].open = open[k]; }
        }
        restoreFields(cur, typed);
        // An action's notice stays until the user leaves the page.
        var h1 = cur.querySelector("h1");
        if (notice && !cur.querySelector(".notice") && h1) { h1.insertAdjacentElement("afterend", notice); }
        refocus(cur, focused);
        var t = next.getAttribute("data-title");
        if (t) { document.title = t; }
        window.scrollTo(x, y);
        say("live", "Live (index " + index() + ")");
      })
      .catch(function () { /* the stream's reconnect covers a server that went away */ })
      .then(function () {
        fetching = false;
        if (again) { again = false; refresh(); }
      });
  }

  function connect() {
    if (es || document.hidden || !window.EventSource) { return; }
    es = new EventSource("/ui/live?index=" + encodeURIComponent(index()));
    es.addEventListener("hello", function () { say("live", "Live (index " + index() + ")"); });
    es.addEventListener("change", refresh);
    es.onerror = function () {
      // Reconnect ourselves with the newest index we rendered, after a short pause.
      close();
      say("reconnecting", "Reconnecting…");
      retry = setTimeout(function () { retry = null; connect(); }, 2000);
    };
  }

  function close() {
    if (es) { es.close(); es = null; }
    if (retry) { clearTimeout(retry); retry = null; }
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      close();
      say("paused", "Paused while the tab is hidden");
    } else {
      connect();
      refresh();
    }
  });
  document.addEventListener("focusout", function () {
    if (pendingWhileEditing) {
      setTimeout(function () {
        if (!editing() && pendingWhileEditing) { pendingWhileEditing = false; refresh(); }
      }, 0);
    }
  });
  window.addEventListener("pagehide", close);
  // An action's notice (?done=...) is shown once (a reload does not repeat it); live
  // refreshes fetch the plain URL and keep the notice on the page.
  if (window.history && /[?&]done=/.test(window.location.search)) {
    var u = new URL(window.location.href);
    u.searchParams.delete("done");
    window.history.replaceState(null, "", u.pathname + u.search + u.hash);
  }
  connect();
  initLogs();
  // After Plan (or a refused Run), the answer is below the form: take the user there.
  var answer = document.getElementById("run-error") || document.getElementById("plan");
  if (answer) { answer.focus(); answer.scrollIntoView({ block: "start" }); }

  // Logs (/ui/allocations/<id>/<task>/logs): follow the agent's plain log stream (relayed
  // by the server) from the end; keep at most data-max-lines lines; Pause stops showing
  // new lines (they are kept and shown on Resume); Filter is a regex over every kept line,
  // old and new; Wrap toggles line wrapping.
  function initLogs() {
    var pre = document.getElementById("log");
    if (!pre || !window.fetch || !window.TextDecoder) { return; }
    var controls = document.getElementById("log-controls");
    var nojs = document.getElementById("log-nojs");
    var pauseBtn = document.getElementById("log-pause");
    var filterIn = document.getElementById("log-filter");
    var wrap = document.getElementById("log-wrap");
    var count = document.getElementById("log-count");
    var max = parseInt(pre.getAttribute("data-max-lines"), 10) || 10000;
    var lines = [];
    var partial = "";
    var paused = false;
    var re = null;
    var ended = false;
    var controller = window.AbortController ? new AbortController() : null;
    if (controls) { controls.hidden = false; }
    if (nojs) { nojs.hidden = true; }

    function matches(l) { return !re || re.test(l); }
    function status() {
      if (!count) { return; }
      var shown = pre.childNodes.length;
      var text = shown + (re ? " matching of " + lines.length : "") + " lines";
      if (paused) { text += " · paused"; }
      if (ended) { text += " · stream ended"; }
      count.textContent = text;
    }
    function lineNode(l) {
      var span = document.createElement("span");
      span.textContent = l + "\n";
      return span;
    }
    function renderAll() {
      var frag = document.createDocumentFragment();
      for (var i = 0; i < lines.length; i++) {
        if (matches(lines[i])) { frag.appendChild(lineNode(lines[i])); }
      }
      pre.textContent = "";
      pre.appendChild(frag);
      pre.scrollTop = pre.scrollHeight;
      status();
    }
    function add(newLines) {
      var dropped = lines.length + newLines.length - max;
      for (var i = 0; i < newLines.length; i++) { lines.push(newLines[i]); }
      if (dropped > 0) { lines.splice(0, dropped); }
      if (paused) { status(); return; }
      if (dropped > 0 && re === null) {
        // Drop the oldest shown lines too.
        for (var d = 0; d < dropped && pre.firstChild; d++) { pre.removeChild(pre.firstChild); }
      } else if (dropped > 0) {
        renderAll();
        return;
      }
      var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      var frag = document.createDocumentFragment();
      var start = Math.max(0, newLines.length - max);
      for (var j = start; j < newLines.length; j++) {
        if (matches(newLines[j])) { frag.appendChild(lineNode(newLines[j])); }
      }
      pre.appendChild(frag);
      while (pre.childNodes.length > max) { pre.removeChild(pre.firstChild); }
      if (atEnd) { pre.scrollTop = pre.scrollHeight; }
      status();
    }
    function feed(text) {
      var parts = (partial + text).split("\n");
      partial = parts.pop();
      if (parts.length) { add(parts); }
    }
    if (pauseBtn) {
      pauseBtn.addEventListener("click", function () {
        paused = !paused;
        pauseBtn.textContent = paused ? "Resume" : "Pause";
        pauseBtn.setAttribute("aria-pressed", paused ? "true" : "false");
        if (!paused) { renderAll(); } else { status(); }
      });
    }
    if (filterIn) {
      filterIn.addEventListener("input", function () {
        var v = filterIn.value;
        try {
          re = v ? new RegExp(v) : null;
          filterIn.removeAttribute("aria-invalid");
        } catch (e) {
          filterIn.setAttribute("aria-invalid", "true");
          if (count) { count.textContent = "Not a valid regular expression: " + e.message; }
          return;
        }
        renderAll();
      });
    }
    if (wrap) {
      wrap.addEventListener("change", function () { pre.classList.toggle("wrap", wrap.checked); });
    }
    window.addEventListener("pagehide", function () { if (controller) { controller.abort(); } });

    var decoder = new TextDecoder();
    fetch(pre.getAttribute("data-src"), {
      credentials: "same-origin",
      signal: controller ? controller.signal : undefined
    }).then(function (r) {
      if (!r.ok) {
        return r.text().then(function (t) { throw new Error(t || ("HTTP " + r.status)); });
      }
      var reader = r.body.getReader();
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) {
            if (partial) { add([partial]); partial = ""; }
            ended = true;
            status();
            return;
          }
          feed(decoder.decode(chunk.value, { stream: true }));
          return pump();
        });
      }
      return pump();
    }).catch(function (e) {
      if (e && e.name === "AbortError") { return; }
      ended = true;
      if (count) { count.textContent = "Could not read the log: " + (e && e.message ? e.message : e); }
    });
    status();
  }
})();
