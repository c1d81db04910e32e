// berth dashboard: refreshes the log tail every few seconds. The page reads fine without it.
(function () {
  "use strict";
  var pre = document.getElementById("log-tail");
  if (!pre || !window.fetch) return;
  function refresh() {
    fetch(pre.dataset.src, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (text === null) return;
        var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.textContent = text;
        if (atEnd) pre.scrollTop = pre.scrollHeight;
      })
      .catch(function () {});
  }
  setInterval(refresh, 3000);
})();
