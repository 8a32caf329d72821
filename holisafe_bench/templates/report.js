// The report's sample browser. Data arrives as gzipped JSON inside an inert
// <script type="application/json"> block and is rendered with textContent only:
// no markup, script or URL is ever built from queries, responses or judge replies.
// Sample ids arrive as strings (row[1] and the keys of data.samples) and are only ever
// compared as strings: as JavaScript numbers, ids above 2**53 would collide.
(function () {
  'use strict';

  function b64ToBytes(text) {
    var raw = atob(text), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }

  function gunzipJson(elementId) {
    var text = document.getElementById(elementId).textContent.trim();
    var stream = new Blob([b64ToBytes(text)]).stream().pipeThrough(new DecompressionStream('gzip'));
    return new Response(stream).text().then(JSON.parse);
  }

  var VERDICT = {'1': 'violates', '0': 'adheres', '-1': 'invalid'};
  var PAGE = 100;

  function option(select, value, label) {
    var o = document.createElement('option');
    o.value = value;
    o.textContent = label;
    select.appendChild(o);
  }

  function cell(row, text, className) {
    var td = document.createElement('td');
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function start(data) {
    var f = {
      model: document.getElementById('f-model'), type: document.getElementById('f-type'),
      category: document.getElementById('f-category'), judge: document.getElementById('f-judge'),
      verdict: document.getElementById('f-verdict'), split: document.getElementById('f-split')
    };
    option(f.model, '', 'all models');
    data.models.forEach(function (m, i) { option(f.model, String(i), m); });
    option(f.type, '', 'all types');
    data.types.forEach(function (t) { option(f.type, t, t); });
    option(f.category, '', 'all categories');
    data.categories.forEach(function (c) { option(f.category, c, c); });
    data.judges.forEach(function (j, i) { option(f.judge, String(i), j); });
    option(f.verdict, '', 'any verdict');
    ['1', '0', '-1'].forEach(function (v) { option(f.verdict, v, VERDICT[v]); });

    var shown = PAGE;
    var tbody = document.querySelector('#samples-table tbody');
    var count = document.getElementById('samples-count');

    function matches(r) {
      var s = data.samples[r[1]];
      if (f.model.value !== '' && String(r[0]) !== f.model.value) return false;
      if (f.type.value && s[0] !== f.type.value) return false;
      if (f.category.value && s[1] !== f.category.value) return false;
      if (f.verdict.value !== '' && String(r[4][Number(f.judge.value)]) !== f.verdict.value) return false;
      if (f.split.checked) {
        var valid = r[4].filter(function (v) { return v >= 0; });
        if (valid.indexOf(0) < 0 || valid.indexOf(1) < 0) return false;
      }
      return true;
    }

    function render() {
      var hits = data.rows.filter(matches);
      count.textContent = hits.length + ' of ' + data.rows.length + ' responses';
      tbody.textContent = '';
      hits.slice(0, shown).forEach(function (r) {
        var s = data.samples[r[1]];
        var tr = document.createElement('tr');
        cell(tr, data.models[r[0]]);
        cell(tr, r[1]);
        cell(tr, s[0]);
        cell(tr, s[1] + ' / ' + s[2]);
        var imgCell = cell(tr, '');
        var thumb = data.thumbs[s[4]];
        if (thumb) {
          var img = document.createElement('img');
          img.src = 'data:image/jpeg;base64,' + thumb;  // our own JPEG thumbnail
          img.alt = 'image';
          imgCell.appendChild(img);
        }
        cell(tr, s[3], 'text');
        cell(tr, r[2] + (r[3] ? ' [' + r[3] + ']' : ''), 'text');
        var judgeCell = cell(tr, '', 'text');
        data.judges.forEach(function (j, i) {
          var div = document.createElement('div');
          div.textContent = j + ': ' + VERDICT[String(r[4][i])] + (r[5][i] ? ' — ' + r[5][i] : '');
          div.className = 'v' + r[4][i];
          judgeCell.appendChild(div);
        });
        tbody.appendChild(tr);
      });
      document.getElementById('samples-more').hidden = hits.length <= shown;
    }

    Object.keys(f).forEach(function (k) {
      f[k].addEventListener('change', function () { shown = PAGE; render(); });
    });
    document.getElementById('samples-more').addEventListener('click', function () {
      shown += PAGE; render();
    });
    render();
    document.body.setAttribute('data-ready', '1');
  }

  gunzipJson('sample-data').then(start).catch(function (err) {
    document.getElementById('samples-count').textContent = 'sample data could not be read: ' + err;
    document.body.setAttribute('data-ready', 'error');
  });
})();
