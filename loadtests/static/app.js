// morello load-test demo: the counter widget on /account.
(function () {
  "use strict";
  function show(value) {
    var node = document.getElementById("counter");
    if (node) { node.textContent = String(value); }
  }
  function call(method, path) {
    return fetch(path, { method: method, credentials: "same-origin" })
      .then(function (response) { return response.json(); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("increment");
    if (!button) { return; }
    call("GET", "/counter").then(function (data) { show(data.counter); });
    button.addEventListener("click", function () {
      call("POST", "/counter/increment").then(function (data) { show(data.counter); });
    });
  });
})();
