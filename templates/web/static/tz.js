// Pre-select the reader's time zone from the browser's own setting. Only while
// nobody has chosen one (the server marks the select with data-guess), and only a
// zone the list offers; without scripting the select simply stays on UTC.
(function () {
  "use strict";
  var select = document.getElementById("timezone");
  if (!select || select.getAttribute("data-guess") !== "1") return;
  var zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (e) {
    return;
  }
  if (!zone) return;
  for (var i = 0; i < select.options.length; i++) {
    if (select.options[i].value === zone) {
      select.value = zone;
      return;
    }
  }
})();
