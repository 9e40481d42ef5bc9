/* The lineage page: measure every text, lay the graph out with ELK (layered, left to right,
   projects as compound nodes holding their models), place what mesh.lineage wrote into the SVG,
   publish the geometry (#lineage-geometry, for scripts and tests), then wire up selection,
   search and zoom. Runs offline: ELK is inlined in the page before this script. */
(function () {
  "use strict";

  var NODE_PAD = 10, NODE_MIN_W = 120, NAME_Y = 18, META_Y = 33, AGE_Y = 47;
  var NODE_H = 42, NODE_H_AGE = 56, BADGE_H = 15, BADGE_GAP = 10;
  var PROJECT_PAD = 16, PROJECT_NAME_Y = 26, PROJECT_META_Y = 45, PROJECT_LINE = 15;
  var PROJECT_WRAP = 380, EMPTY_H = 30, LABEL_PAD = 5, LABEL_H = 16;

  var body = document.body;
  var data = JSON.parse(document.getElementById("lineage-data").textContent);
  var svg = document.getElementById("lineage-svg");
  var details = document.getElementById("details");
  var info = {};
  data.nodes.forEach(function (n) { info[n.id] = n; });

  function all(root, selector) {
    return Array.prototype.slice.call(root.querySelectorAll(selector));
  }
  function one(root, selector) { return root.querySelector(selector); }
  function set(el, attrs) {
    Object.keys(attrs).forEach(function (k) { el.setAttribute(k, String(attrs[k])); });
  }
  function textWidth(el) { return el.getBBox().width; }
  /* JSON for the text of a <script> element: `<`, `>`, `&` and the line separators escaped, so a
     page saved after rendering (outerHTML, --dump-dom) and opened again runs nothing a node name
     or description carries (`</script><script>...`). JSON.parse reads it back unchanged. */
  function scriptJson(value) {
    return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, function (c) {
      return "\\u" + ("000" + c.charCodeAt(0).toString(16)).slice(-4);
    });
  }
  function round(v) { return Math.round(v * 10) / 10; }

  /* "built 3 h ago" from an ISO-8601 time; "" when there is none or it does not parse. */
  function ago(iso, now) {
    var t = Date.parse(iso || "");
    if (isNaN(t)) { return ""; }
    var s = Math.max(0, (now - t) / 1000);
    if (s < 90) { return "built just now"; }
    if (s < 90 * 60) { return "built " + Math.round(s / 60) + " min ago"; }
    if (s < 48 * 3600) { return "built " + Math.round(s / 3600) + " h ago"; }
    return "built " + Math.round(s / 86400) + " d ago";
  }
  var now = Date.now();

  /* --- measure: size every node and project header from its text ------------------------- */

  var nodes = {};
  all(svg, "g.node").forEach(function (el) { nodes[el.getAttribute("data-node-id")] = el; });
  var size = {};
  Object.keys(nodes).forEach(function (id) {
    var el = nodes[id];
    var name = one(el, ".node-name"), meta = one(el, ".node-meta"), age = one(el, ".node-age");
    var badge = one(el, ".badge");
    if (age) { age.textContent = ago(age.getAttribute("data-built-at"), now) || age.textContent; }
    var nameW = textWidth(name), badgeW = 0;
    if (badge) { badgeW = textWidth(one(badge, ".badge-text")) + 12; }
    var w = Math.max(
      NODE_MIN_W,
      nameW + (badge ? BADGE_GAP + badgeW : 0),
      textWidth(meta),
      age ? textWidth(age) : 0
    ) + 2 * NODE_PAD;
    var h = age ? NODE_H_AGE : NODE_H;
    w = Math.ceil(w);
    set(name, { x: NODE_PAD, y: NAME_Y });
    set(meta, { x: NODE_PAD, y: META_Y });
    if (age) { set(age, { x: NODE_PAD, y: AGE_Y }); }
    set(one(el, ".node-box"), { width: w, height: h });
    if (badge) {
      set(one(badge, ".badge-box"), { x: w - NODE_PAD - badgeW, y: 6, width: badgeW,
        height: BADGE_H, rx: 7 });
      set(one(badge, ".badge-text"), { x: w - NODE_PAD - badgeW + 6, y: 17 });
    }
    size[id] = { w: w, h: h, badge: badgeW };
  });

  /* Break a project's facts (" · "-separated) into lines no wider than `limit`. */
  function wrap(textEl, limit) {
    var full = textEl.textContent, tokens = [];
    full.split(" \u00b7 ").forEach(function (fact, i) {
      fact.split(" ").forEach(function (word, j) {
        tokens.push({ sep: j ? " " : (i ? " \u00b7 " : ""), word: word });
      });
    });
    var lines = [], line = "";
    tokens.forEach(function (t) {
      var candidate = line ? line + t.sep + t.word : t.word;
      textEl.textContent = candidate;
      if (line && textWidth(textEl) > limit) {
        lines.push(line);
        line = t.word;
      } else {
        line = candidate;
      }
    });
    if (line) { lines.push(line); }
    textEl.textContent = "";
    var widest = 0;
    lines.forEach(function (text, i) {
      var span = document.createElementNS("http://www.w3.org/2000/svg", "tspan");
      span.textContent = text;
      span.setAttribute("data-line", String(i));
      textEl.appendChild(span);
      widest = Math.max(widest, span.getComputedTextLength());
    });
    textEl.setAttribute("aria-label", full);
    return { lines: lines.length, width: widest };
  }

  var projects = {};
  all(svg, "g.project").forEach(function (el) { projects[el.getAttribute("data-project")] = el; });
  var header = {};
  Object.keys(projects).forEach(function (name) {
    var el = projects[name];
    var nameW = textWidth(one(el, ".project-name"));
    var meta = wrap(one(el, ".project-meta"), Math.max(PROJECT_WRAP, nameW));
    var empty = one(el, ".project-empty");
    var top = PROJECT_META_Y + (meta.lines - 1) * PROJECT_LINE + 14;
    var w = Math.ceil(Math.max(nameW, meta.width, empty ? textWidth(empty) : 0) + 2 * PROJECT_PAD);
    header[name] = { top: top, w: w, h: top + (empty ? EMPTY_H : PROJECT_PAD) };
  });

  var edgeEls = all(svg, "path.edge");
  var labelEls = {};
  all(svg, "g.edge-label").forEach(function (el) {
    labelEls[el.getAttribute("data-edge-from") + "\u0000" + el.getAttribute("data-edge-to")] = el;
  });

  /* --- lay out with ELK ------------------------------------------------------------------ */

  function elkGraph() {
    var children = data.projects.map(function (p) {
      var h = header[p.name];
      var members = data.nodes.filter(function (n) { return n.project === p.name; });
      var node = {
        id: "p:" + p.name,
        layoutOptions: {
          "elk.padding": "[top=" + h.top + ",left=" + PROJECT_PAD + ",bottom=" + PROJECT_PAD +
            ",right=" + PROJECT_PAD + "]",
          "elk.nodeSize.constraints": "MINIMUM_SIZE",
          "elk.nodeSize.minimum": "(" + h.w + "," + h.h + ")"
        },
        children: members.map(function (n) {
          return { id: "n:" + n.id, width: size[n.id].w, height: size[n.id].h };
        })
      };
      if (!members.length) { node.width = h.w; node.height = h.h; }
      return node;
    });
    var edges = edgeEls.map(function (el, i) {
      var from = el.getAttribute("data-edge-from"), to = el.getAttribute("data-edge-to");
      var edge = { id: "e" + i, sources: ["n:" + from], targets: ["n:" + to] };
      var label = labelEls[from + "\u0000" + to];
      if (label) {
        edge.labels = [{
          id: "l" + i,
          text: label.getAttribute("data-via"),
          width: Math.ceil(textWidth(one(label, ".edge-label-text")) + 2 * LABEL_PAD),
          height: LABEL_H,
          layoutOptions: { "elk.edgeLabels.inline": "true", "elk.edgeLabels.placement": "CENTER" }
        }];
      }
      return edge;
    });
    // Declared upstreams with no drawn edge between the two projects (a consumer not built
    // here, say) still go left of their consumers: an edge between the boxes, never drawn.
    var linked = {};
    edgeEls.forEach(function (el) {
      if (el.getAttribute("data-cross-project") === "true") {
        var a = info[el.getAttribute("data-edge-from")], b = info[el.getAttribute("data-edge-to")];
        if (a && b) { linked[a.project + "\u0000" + b.project] = true; }
      }
    });
    var names = {};
    data.projects.forEach(function (p) { names[p.name] = true; });
    data.projects.forEach(function (p) {
      (p.upstreams || []).forEach(function (u) {
        if (names[u] && u !== p.name && !linked[u + "\u0000" + p.name]) {
          edges.push({ id: "order" + edges.length, sources: ["p:" + u], targets: ["p:" + p.name] });
        }
      });
    });
    return {
      id: "root",
      layoutOptions: {
        "elk.algorithm": "layered",
        "elk.direction": "RIGHT",
        "elk.hierarchyHandling": "INCLUDE_CHILDREN",
        "elk.edgeRouting": "ORTHOGONAL",
        "elk.json.shapeCoords": "ROOT",
        "elk.json.edgeCoords": "ROOT",
        "elk.padding": "[top=16,left=16,bottom=16,right=16]",
        "elk.spacing.nodeNode": "18",
        "elk.layered.spacing.nodeNodeBetweenLayers": "40",
        "elk.spacing.edgeNode": "14",
        "elk.layered.spacing.edgeNodeBetweenLayers": "14",
        "elk.spacing.edgeEdge": "8",
        "elk.layered.spacing.edgeEdgeBetweenLayers": "8",
        "elk.spacing.edgeLabel": "3",
        "elk.layered.considerModelOrder.strategy": "NODES_AND_EDGES",
        "elk.layered.nodePlacement.bk.fixedAlignment": "BALANCED"
      },
      children: children,
      edges: edges
    };
  }

  /* An orthogonal polyline as a path with slightly rounded corners. */
  function pathOf(points) {
    var d = "M" + round(points[0].x) + "," + round(points[0].y);
    for (var i = 1; i < points.length - 1; i++) {
      var a = points[i - 1], c = points[i], b = points[i + 1];
      var la = Math.hypot(c.x - a.x, c.y - a.y), lb = Math.hypot(b.x - c.x, b.y - c.y);
      var r = Math.min(6, la / 2, lb / 2);
      if (r < 0.5) { d += " L" + round(c.x) + "," + round(c.y); continue; }
      var p = { x: c.x - (c.x - a.x) / la * r, y: c.y - (c.y - a.y) / la * r };
      var q = { x: c.x + (b.x - c.x) / lb * r, y: c.y + (b.y - c.y) / lb * r };
      d += " L" + round(p.x) + "," + round(p.y) + " Q" + round(c.x) + "," + round(c.y) + " " +
        round(q.x) + "," + round(q.y);
    }
    var last = points[points.length - 1];
    return d + " L" + round(last.x) + "," + round(last.y);
  }

  function box(x, y, w, h) { return [round(x), round(y), round(w), round(h)]; }
  function bboxIn(el, dx, dy) {
    var b = el.getBBox();
    return box(b.x + dx, b.y + dy, b.width, b.height);
  }

  function draw(laid) {
    var geometry = { width: Math.ceil(laid.width), height: Math.ceil(laid.height), projects: [],
      nodes: [], edges: [], texts: [] };
    function text(owner, el, dx, dy, within) {
      geometry.texts.push({ owner: owner, text: el.getAttribute("aria-label") || el.textContent,
        box: bboxIn(el, dx, dy), within: within });
    }
    var at = {};
    laid.children.forEach(function (p) {
      var name = p.id.slice(2), el = projects[name], h = header[name];
      var pbox = box(p.x, p.y, p.width, p.height);
      set(one(el, ".project-box"), { x: pbox[0], y: pbox[1], width: pbox[2], height: pbox[3] });
      var x = p.x + PROJECT_PAD;
      set(one(el, ".project-name"), { x: x, y: p.y + PROJECT_NAME_Y });
      var meta = one(el, ".project-meta");
      set(meta, { x: x, y: p.y + PROJECT_META_Y });
      all(meta, "tspan").forEach(function (span, i) {
        set(span, { x: x, y: p.y + PROJECT_META_Y + i * PROJECT_LINE });
      });
      var empty = one(el, ".project-empty");
      if (empty) { set(empty, { x: x, y: p.y + h.top + 14 }); }
      geometry.projects.push({ name: name, box: pbox });
      text("project:" + name, one(el, ".project-name"), 0, 0, pbox);
      text("project:" + name, meta, 0, 0, pbox);
      if (empty) { text("project:" + name, empty, 0, 0, pbox); }
      (p.children || []).forEach(function (n) {
        var id = n.id.slice(2), nel = nodes[id], s = size[id];
        at[id] = { x: n.x, y: n.y };
        nel.setAttribute("transform", "translate(" + round(n.x) + "," + round(n.y) + ")");
        var nbox = box(n.x, n.y, s.w, s.h);
        geometry.nodes.push({ id: id, project: name, box: nbox });
        var free = s.badge ? box(n.x, n.y, s.w - NODE_PAD - s.badge - BADGE_GAP / 2, s.h) : nbox;
        text("node:" + id, one(nel, ".node-name"), n.x, n.y, free);
        text("node:" + id, one(nel, ".node-meta"), n.x, n.y, nbox);
        var age = one(nel, ".node-age");
        if (age) { text("node:" + id, age, n.x, n.y, nbox); }
        var badge = one(nel, ".badge");
        if (badge) {
          var b = one(badge, ".badge-box").getBBox();
          text("node:" + id, one(badge, ".badge-text"), n.x, n.y,
            box(b.x + n.x, b.y + n.y, b.width, b.height));
        }
      });
    });
    laid.edges.forEach(function (e) {
      if (e.id.charAt(0) !== "e") { return; }  // an ordering edge between projects
      var el = edgeEls[Number(e.id.slice(1))];
      var from = el.getAttribute("data-edge-from"), to = el.getAttribute("data-edge-to");
      var points = [];
      (e.sections || []).forEach(function (s) {
        [s.startPoint].concat(s.bendPoints || [], [s.endPoint]).forEach(function (pt) {
          var prev = points[points.length - 1];
          if (!prev || Math.abs(prev.x - pt.x) > 0.01 || Math.abs(prev.y - pt.y) > 0.01) {
            points.push({ x: pt.x, y: pt.y });
          }
        });
      });
      el.setAttribute("d", pathOf(points));
      var drawn = { from: from, to: to, cross_project: el.getAttribute("data-cross-project") === "true",
        via: el.getAttribute("data-via") || null,
        points: points.map(function (pt) { return [round(pt.x), round(pt.y)]; }), label: null };
      var lel = labelEls[from + "\u0000" + to];
      if (lel && e.labels && e.labels.length) {
        var l = e.labels[0], lbox = box(l.x, l.y, l.width, l.height);
        set(one(lel, ".edge-label-box"), { x: lbox[0], y: lbox[1], width: lbox[2],
          height: lbox[3], rx: 4 });
        set(one(lel, ".edge-label-text"), { x: l.x + LABEL_PAD, y: l.y + 12 });
        drawn.label = { text: l.text, box: lbox };
        text("label:" + from + "->" + to, one(lel, ".edge-label-text"), 0, 0, lbox);
      }
      geometry.edges.push(drawn);
    });
    set(svg, { width: geometry.width, height: geometry.height,
      viewBox: "0 0 " + geometry.width + " " + geometry.height });
    svg.classList.remove("laying-out");
    document.getElementById("status").hidden = true;
    var out = document.createElement("script");
    out.type = "application/json";
    out.id = "lineage-geometry";
    out.textContent = scriptJson(geometry);
    body.appendChild(out);
  }

  /* --- interaction ------------------------------------------------------------------------ */

  var up = {}, down = {};
  edgeEls.forEach(function (e) {
    var a = e.getAttribute("data-edge-from"), b = e.getAttribute("data-edge-to");
    (down[a] = down[a] || []).push(b);
    (up[b] = up[b] || []).push(a);
  });
  var labels = Object.keys(labelEls).map(function (k) { return labelEls[k]; });
  function reach(start, map) {
    var seen = {}, todo = [start];
    seen[start] = true;
    while (todo.length) {
      (map[todo.pop()] || []).forEach(function (n) {
        if (!seen[n]) { seen[n] = true; todo.push(n); }
      });
    }
    return seen;
  }
  function clear() {
    Object.keys(nodes).forEach(function (id) {
      nodes[id].classList.remove("dim", "selected", "match");
    });
    edgeEls.concat(labels).forEach(function (e) { e.classList.remove("dim"); });
    details.hidden = true;
    if (location.hash) {
      try { history.replaceState(null, "", location.pathname); } catch (e) { /* file: */ }
    }
  }
  function select(id) {
    clear();
    var keep = reach(id, up), below = reach(id, down);
    Object.keys(below).forEach(function (k) { keep[k] = true; });
    Object.keys(nodes).forEach(function (k) { if (!keep[k]) { nodes[k].classList.add("dim"); } });
    edgeEls.concat(labels).forEach(function (e) {
      var a = e.getAttribute("data-edge-from"), b = e.getAttribute("data-edge-to");
      if (!(keep[a] && keep[b])) { e.classList.add("dim"); }
    });
    nodes[id].classList.add("selected");
    try {
      history.replaceState(null, "", "#node=" + encodeURIComponent(id));
    } catch (e) { /* some file: pages refuse it */ }
    var n = info[id] || {};
    var lines = [n.id, "project: " + n.project, "type: " + n.resource_type +
      (n.materialized ? " (" + n.materialized + ")" : ""),
      "access: " + (n.access || "-") + (n.published ? ", published" : "")];
    if (n.version) { lines.push("version: " + n.version + " (latest " + n.latest_version + ")"); }
    if (n.owner) { lines.push("owner: " + n.owner); }
    if (n.unread) { lines.push("read by no model, seed, snapshot or exposure"); }
    if (n.built_at) { lines.push(ago(n.built_at, Date.now()) + " (" + n.built_at + ")"); }
    lines.push("upstream: " + (Object.keys(keep).length - Object.keys(below).length) +
      " nodes, downstream: " + (Object.keys(below).length - 1) + " nodes");
    if (n.description) { lines.push("", n.description); }
    details.textContent = lines.join("\n");
    details.hidden = false;
  }

  function interact() {
    Object.keys(nodes).forEach(function (id) {
      var el = nodes[id];
      el.addEventListener("click", function (ev) { ev.stopPropagation(); select(id); });
      el.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { select(id); } });
    });
    svg.addEventListener("click", clear);
    document.addEventListener("keydown", function (ev) { if (ev.key === "Escape") { clear(); } });
    document.getElementById("search").addEventListener("input", function (ev) {
      var q = ev.target.value.trim().toLowerCase();
      clear();
      if (!q) { return; }
      Object.keys(nodes).forEach(function (id) {
        nodes[id].classList.add(id.toLowerCase().indexOf(q) >= 0 ? "match" : "dim");
      });
      edgeEls.concat(labels).forEach(function (e) { e.classList.add("dim"); });
    });
    var main = document.querySelector("main"), zoom = document.getElementById("zoom");
    function fit(on) {
      main.classList.toggle("fit", on);
      zoom.textContent = on ? "actual size" : "fit to width";
    }
    zoom.addEventListener("click", function () { fit(!main.classList.contains("fit")); });
    var natural = svg.width.baseVal.value;
    fit(natural > main.clientWidth && main.clientWidth / natural >= 0.45);
    var wanted = decodeURIComponent(location.hash.replace(/^#node=/, ""));
    if (location.hash.indexOf("#node=") === 0 && nodes[wanted]) { select(wanted); }
    body.setAttribute("data-rendered-nodes", String(Object.keys(nodes).length));
    body.setAttribute("data-rendered-edges", String(edgeEls.length));
    body.setAttribute("data-ready", "true");
  }

  function fail(err) {
    var problem = document.getElementById("problem");
    problem.textContent = "The picture could not be laid out: " + err +
      ". lineage.json and lineage.mmd hold the same graph.";
    problem.hidden = false;
    document.getElementById("status").hidden = true;
    body.setAttribute("data-layout-error", String(err));
  }

  try {
    var started = Date.now();
    new ELK().layout(elkGraph()).then(function (laid) {
      body.setAttribute("data-layout-ms", String(Date.now() - started));
      draw(laid);
      interact();
    }).catch(fail);
  } catch (err) {
    fail(err);
  }
})();
