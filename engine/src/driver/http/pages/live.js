// Sortable tables (click a header; numbers sort by their data-sort value) and live refresh:
// a page whose <main data-live="true"> fetches itself every 2 s and swaps its <main>,
// keeping the sort order, until the page says it is no longer live.
(function () {
  var sorted = {};
  function key(cell) {
    var v = cell.getAttribute('data-sort');
    if (v === null) v = cell.textContent.trim();
    var n = Number(v);
    return v !== '' && !isNaN(n) ? n : v.toLowerCase();
  }
  function sortTable(table, col, desc) {
    var body = table.tBodies[0];
    if (!body) return;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[col]), y = key(b.cells[col]);
      var c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
      return desc ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.classList.remove('asc', 'desc');
      if (i === col) th.classList.add(desc ? 'desc' : 'asc');
    });
  }
  function wire() {
    document.querySelectorAll('table.sortable').forEach(function (table) {
      var id = table.id;
      if (id && sorted[id]) sortTable(table, sorted[id].col, sorted[id].desc);
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
        th.addEventListener('click', function () {
          var desc = !!(id && sorted[id] && sorted[id].col === col && !sorted[id].desc);
          if (id) sorted[id] = { col: col, desc: desc };
          sortTable(table, col, desc);
        });
      });
    });
  }
  function refresh() {
    var main = document.querySelector('main');
    if (!main || main.getAttribute('data-live') !== 'true') return;
    fetch(location.href, { credentials: 'same-origin' }).then(function (r) {
      return r.ok ? r.text() : null;
    }).then(function (text) {
      if (text === null) return;
      var fresh = new DOMParser().parseFromString(text, 'text/html').querySelector('main');
      if (fresh) { main.replaceWith(fresh); wire(); }
    }).catch(function () {}).then(function () { setTimeout(refresh, 2000); });
  }
  wire();
  setTimeout(refresh, 2000);
})();
