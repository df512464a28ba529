
(function () {
  var select = document.getElementById('filter-question');
  var boxes = Array.prototype.slice.call(document.querySelectorAll('input.variant-toggle'));
  var status = document.getElementById('filter-status');
  function apply() {
    var q = select.value;
    var on = {};
    boxes.forEach(function (b) { if (b.checked) { on[b.value] = true; } });
    document.querySelectorAll('[data-question]').forEach(function (el) {
      var show = (!q || el.getAttribute('data-question') === q) &&
        on[el.getAttribute('data-variant')] === true;
      if (show) { el.removeAttribute('hidden'); } else { el.setAttribute('hidden', ''); }
    });
    layout();
    var pts = document.querySelectorAll('#scatter-plot .pt');
    var shown = document.querySelectorAll('#scatter-plot .pt:not([hidden])').length;
    document.getElementById('scatter-count').textContent = shown + ' of ' + pts.length;
    var rows = document.querySelectorAll('#rate-plot .q-row');
    var vis = document.querySelectorAll('#rate-plot .q-row:not([hidden])').length;
    status.textContent = vis + ' of ' + rows.length + ' questions shown';
    var parts = [];
    if (q) { parts.push('question=' + encodeURIComponent(q)); }
    if (boxes.some(function (b) { return !b.checked; })) {
      parts.push('variant=' + boxes.filter(function (b) { return b.checked; })
        .map(function (b) { return b.value; }).join(','));
    }
    if (window.history && history.replaceState) {
      history.replaceState(null, '', parts.length ? '#' + parts.join('&') : location.pathname);
    }
  }
  function layout() {
    // move the visible rows of the rate plot up so a filter leaves no gaps
    var svg = document.getElementById('rate-plot');
    if (!svg) { return; }
    var top = +svg.getAttribute('data-top'), h = +svg.getAttribute('data-row-height');
    var bottom = +svg.getAttribute('data-bottom'), i = 0;
    svg.querySelectorAll('.plot-row').forEach(function (row) {
      if (row.hasAttribute('hidden')) { return; }
      row.setAttribute('transform', 'translate(0,' + (top + i * h) + ')');
      i += 1;
    });
    var height = top + i * h + bottom;
    svg.querySelectorAll('.axis .grid').forEach(function (g) {
      g.setAttribute('y2', height - bottom);
    });
    svg.setAttribute('height', height);
    svg.setAttribute('viewBox', '0 0 ' + svg.getAttribute('width') + ' ' + height);
  }
  function fromHash() {
    location.hash.replace(/^#/, '').split('&').forEach(function (kv) {
      var i = kv.indexOf('='), k = kv.slice(0, i), v = decodeURIComponent(kv.slice(i + 1));
      if (k === 'question') { select.value = v; }
      if (k === 'variant') {
        var want = v.split(',');
        boxes.forEach(function (b) { b.checked = want.indexOf(b.value) >= 0; });
      }
    });
  }
  select.addEventListener('change', apply);
  boxes.forEach(function (b) { b.addEventListener('change', apply); });
  fromHash();
  apply();
})();
