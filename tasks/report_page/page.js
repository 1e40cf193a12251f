/* report.html's sweep view, detail panel and results table, built from the JSON in #sweep-data.
   Every text from the data goes on the page as text (textContent, attributes set one by one), never as HTML.
   Videos get a src only while their cell is on screen (or in the detail panel); one clock drives them all. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("sweep-data").textContent);
  var jobs = data.jobs, axes = data.axes, measures = data.measures;
  var axisNames = axes.map(function (axis) { return axis.name; });
  var TILES_PER_CELL = 4;
  var TIMING_COLOURS = {load_s: "#8e6bbf", denoise_s: "#1f77b4", decode_s: "#2ca02c", export_s: "#ff7f0e"};
  var RAMP = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"];  // viridis: low to high

  var state = {
    x: -1, y: -1, z: -1, page: 0, shade: "",
    hidden: axes.map(function () { return new Set(); }),  // per axis, the value indices filtered out
    hiddenStatus: new Set(), range: {measure: "", min: null, max: null},
    search: "", sort: {key: "n", direction: 1},
    selected: -1, compared: null,  // a job index; compared: {job} or {other: attempt entry of the selected job}
    audible: -1,  // the job whose sound plays (one at most); every other video is muted
  };

  // -- small helpers ------------------------------------------------------------------------------------
  function el(tag, attributes, children) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (name) {
      var value = attributes[name];
      if (value === null || value === undefined || value === false) { return; }
      if (name === "text") { node.textContent = value; }
      else if (name === "class") { node.className = value; }
      else if (name.slice(0, 2) === "on") { node.addEventListener(name.slice(2), value); }
      else { node.setAttribute(name, value === true ? "" : value); }
    });
    (children || []).forEach(function (child) {
      if (child !== null && child !== undefined) { node.appendChild(typeof child === "string" ? document.createTextNode(child) : child); }
    });
    return node;
  }
  function $(id) { return document.getElementById(id); }
  function format(value) {
    if (value === null || value === undefined) { return ""; }
    if (typeof value !== "number") { return String(value); }
    if (Number.isInteger(value)) { return String(value); }
    return Math.abs(value) >= 100 ? value.toFixed(1) : String(Number(value.toPrecision(4)));
  }
  function shortId(job) { return job.id.slice(0, 8); }
  function label(job, axis) { var index = job.values[axis]; return index < 0 ? "(none)" : axes[axis].labels[index]; }
  function mixColour(fraction) {
    var position = Math.max(0, Math.min(1, fraction)) * (RAMP.length - 1), low = Math.floor(position);
    var high = Math.min(low + 1, RAMP.length - 1), t = position - low;
    function channel(hex, offset) { return parseInt(hex.slice(offset, offset + 2), 16); }
    var rgb = [1, 3, 5].map(function (offset) {
      return Math.round(channel(RAMP[low], offset) * (1 - t) + channel(RAMP[high], offset) * t);
    });
    return "rgb(" + rgb.join(",") + ")";
  }

  // -- which jobs are shown ---------------------------------------------------------------------------
  function passes(job) {
    for (var axis = 0; axis < axes.length; axis++) {
      if (state.hidden[axis].has(job.values[axis])) { return false; }
    }
    if (state.hiddenStatus.has(job.status)) { return false; }
    var range = state.range;
    if (range.measure && (range.min !== null || range.max !== null)) {
      var value = job.measures[range.measure];
      if (value === undefined) { return false; }
      if (range.min !== null && value < range.min) { return false; }
      if (range.max !== null && value > range.max) { return false; }
    }
    return true;
  }
  function shownJobs() { return jobs.map(function (job, index) { return index; }).filter(function (i) { return passes(jobs[i]); }); }
  function valuesOf(indices, axis) {
    var present = new Set(indices.map(function (i) { return jobs[i].values[axis]; }));
    return Array.from(present).sort(function (a, b) { return (a < 0) - (b < 0) || a - b; });
  }

  // -- one clock for every video on the page -----------------------------------------------------------
  var clock = {time: 0, playing: false, rate: 1, loop: true, last: null};
  var active = new Set();  // videos with a source: cells on screen, the detail panel
  function duration() {
    var longest = 0;
    active.forEach(function (video) { if (isFinite(video.duration)) { longest = Math.max(longest, video.duration); } });
    if (!longest) {
      jobs.forEach(function (job) { if (job.seconds) { longest = Math.max(longest, job.seconds); } });
    }
    return longest;
  }
  function syncVideo(video) {
    if (!isFinite(video.duration) || video.readyState < 1) { return; }
    var end = Math.max(0, video.duration - 0.001), target = Math.min(clock.time, end);
    video.playbackRate = clock.rate;
    if (clock.playing && clock.time < end) {
      if (Math.abs(video.currentTime - target) > 0.12) { video.currentTime = target; }
      if (video.paused) { video.play().catch(function () {}); }
    } else {
      if (!video.paused) { video.pause(); }
      if (Math.abs(video.currentTime - target) > 0.01) { video.currentTime = target; }  // a short clip holds its last frame
    }
  }
  function syncAll() {
    active.forEach(syncVideo);
    var total = duration();
    $("scrub").max = String(total || 0);
    $("scrub").value = String(clock.time);
    $("clock").textContent = clock.time.toFixed(2) + " / " + total.toFixed(2) + " s";
    $("play").textContent = clock.playing ? "Pause" : "Play";
    $("play").setAttribute("aria-pressed", clock.playing ? "true" : "false");
  }
  function tick(now) {
    if (!clock.playing) { clock.last = null; return; }
    if (clock.last !== null) {
      var total = duration();
      clock.time += (now - clock.last) / 1000 * clock.rate;
      if (total && clock.time >= total) {
        if (clock.loop) { clock.time = clock.time % total; active.forEach(function (video) { video.currentTime = 0; }); }
        else { clock.time = total; clock.playing = false; }
      }
    }
    clock.last = now;
    syncAll();
    requestAnimationFrame(tick);
  }
  function setPlaying(playing) {
    clock.playing = playing;
    syncAll();
    if (playing) { requestAnimationFrame(tick); }
  }
  function attach(video, source) {
    if (video.getAttribute("src") === source) { return; }
    video.preload = "auto";  // on screen now: load it, so that it can follow the clock
    video.src = source;
    active.add(video);
    video.addEventListener("loadedmetadata", function () { syncAll(); });
  }
  function detach(video) {
    if (!video.getAttribute("src")) { return; }
    video.pause();
    video.removeAttribute("src");
    video.load();  // lets the browser drop the decoder
    active.delete(video);
  }
  // -- sound: every video plays muted; one job's sound on demand ---------------------------------------
  var SOUND_ON = "\uD83D\uDD0A", SOUND_OFF = "\uD83D\uDD07";  // speaker with waves, speaker struck out
  function soundTitle(index) {
    var job = jobs[index], on = state.audible === index, audio = job.audio;
    return (on ? "Mute" : "Play") + " the sound of #" + job.n + " (" + format(audio.rate) + " Hz, "
      + (audio.channels === 1 ? "mono" : audio.channels + " channels") + (audio.seconds ? ", " + format(audio.seconds) + " s" : "")
      + "); one job's sound plays at a time";
  }
  function speaker(index) {
    var button = el("button", {type: "button", class: "speaker", "data-job": String(index), "aria-pressed": "false"});
    button.addEventListener("click", function (event) { event.stopPropagation(); toggleSound(index); });
    button.addEventListener("keydown", function (event) { event.stopPropagation(); });  // Enter here is not Enter on the cell
    return button;
  }
  function toggleSound(index) {
    state.audible = state.audible === index ? -1 : index;
    applySound();
  }
  function applySound() {
    // exactly one element plays the chosen job's sound: its view in the detail panel where it is shown, else its cell
    var chosen = null;
    if (state.audible >= 0) {
      var selector = 'video[data-job="' + state.audible + '"]';
      chosen = document.querySelector("#detail " + selector) || document.querySelector("#sweep-grid " + selector);
    }
    document.querySelectorAll("video").forEach(function (video) { video.muted = video !== chosen; });
    document.querySelectorAll("button.speaker").forEach(function (button) {
      var index = Number(button.dataset.job), on = index === state.audible;
      button.classList.toggle("on", on);
      button.setAttribute("aria-pressed", on ? "true" : "false");
      button.textContent = on ? SOUND_ON : SOUND_OFF;
      button.title = soundTitle(index);
      button.setAttribute("aria-label", button.title);
    });
  }

  var observer = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (entry) {
      var video = entry.target.querySelector("video");
      if (!video) { return; }
      if (entry.isIntersecting) { attach(video, video.dataset.src); } else { detach(video); }
    });
  }, {rootMargin: "150px"}) : null;

  // -- the controls -----------------------------------------------------------------------------------
  function axisOptions(select, allowNone) {
    select.textContent = "";
    if (allowNone) { select.appendChild(el("option", {value: "-1", text: "(none)"})); }
    axes.forEach(function (axis, index) { select.appendChild(el("option", {value: String(index), text: axis.name})); });
  }
  function chooseAxis(which, index) {
    ["x", "y", "z"].forEach(function (other) { if (other !== which && state[other] === index) { state[other] = -1; } });
    state[which] = index;
    if (which === "z") { state.page = 0; }
    if (state.x < 0) { state.x = [0, 1, 2].filter(function (i) { return i < axes.length && i !== state.y && i !== state.z; })[0]; }
    render();
  }
  function buildControls() {
    axisOptions($("axis-x"), false);
    axisOptions($("axis-y"), true);
    axisOptions($("axis-z"), true);
    ["x", "y", "z"].forEach(function (which) {
      $("axis-" + which).addEventListener("change", function (event) { chooseAxis(which, Number(event.target.value)); });
    });
    $("page-value").addEventListener("change", function (event) { state.page = Number(event.target.value); render(); });
    $("page-prev").addEventListener("click", function () { stepPage(-1); });
    $("page-next").addEventListener("click", function () { stepPage(1); });
    var shade = $("shade");
    shade.appendChild(el("option", {value: "", text: "(none)"}));
    measures.forEach(function (measure) { shade.appendChild(el("option", {value: measure.name, text: measure.name, title: measure.about})); });
    shade.addEventListener("change", function () { state.shade = shade.value; render(); });
    $("cell-size").addEventListener("input", function (event) {
      document.documentElement.style.setProperty("--cell", event.target.value + "px");
    });
    $("play").addEventListener("click", function () { setPlaying(!clock.playing); });
    $("scrub").addEventListener("input", function (event) {
      clock.time = Number(event.target.value);
      setPlaying(false);
    });
    $("speed").addEventListener("change", function (event) { clock.rate = Number(event.target.value); syncAll(); });
    $("loop").addEventListener("change", function (event) { clock.loop = event.target.checked; });
    document.addEventListener("keydown", function (event) {
      var typing = /^(INPUT|SELECT|TEXTAREA|BUTTON)$/.test(event.target.tagName);
      if (event.key === " " && !typing) { event.preventDefault(); setPlaying(!clock.playing); }
      if (event.key === "Escape") { select(-1); }
    });
    buildFilters();
    $("search").addEventListener("input", function (event) { state.search = event.target.value.toLowerCase(); renderTable(); });
  }
  function stepPage(step) {
    var values = valuesOf(shownJobs(), state.z), at = values.indexOf(state.page);
    if (values.length) { state.page = values[(at + step + values.length) % values.length]; render(); }
  }
  function buildFilters() {
    var groups = $("filter-groups");
    axes.forEach(function (axis, index) {
      var box = el("fieldset", {"data-axis": axis.name}, [el("legend", {text: axis.name})]);
      axis.labels.forEach(function (text, value) {
        var input = el("input", {type: "checkbox", checked: true, value: String(value)});
        input.addEventListener("change", function () {
          if (input.checked) { state.hidden[index].delete(value); } else { state.hidden[index].add(value); }
          render();
        });
        box.appendChild(el("label", {title: text}, [input, " " + text]));
      });
      groups.appendChild(box);
    });
    var statuses = Array.from(new Set(jobs.map(function (job) { return job.status; }))).sort();
    var statusBox = el("fieldset", {"data-axis": "status"}, [el("legend", {text: "status"})]);
    statuses.forEach(function (status) {
      var input = el("input", {type: "checkbox", checked: true, value: status});
      input.addEventListener("change", function () {
        if (input.checked) { state.hiddenStatus.delete(status); } else { state.hiddenStatus.add(status); }
        render();
      });
      statusBox.appendChild(el("label", {}, [input, " " + status]));
    });
    groups.appendChild(statusBox);
    if (measures.length) {
      var which = el("select", {id: "range-measure"}, [el("option", {value: "", text: "(a metric or time)"})]);
      measures.forEach(function (measure) { which.appendChild(el("option", {value: measure.name, text: measure.name})); });
      var low = el("input", {type: "number", id: "range-min", step: "any", placeholder: "min"});
      var high = el("input", {type: "number", id: "range-max", step: "any", placeholder: "max"});
      function update() {
        state.range = {measure: which.value, min: low.value === "" ? null : Number(low.value), max: high.value === "" ? null : Number(high.value)};
        render();
      }
      [which, low, high].forEach(function (input) { input.addEventListener("input", update); input.addEventListener("change", update); });
      groups.appendChild(el("fieldset", {"data-axis": "range"}, [el("legend", {text: "range"}), which, el("br"), low, " to ", high]));
    }
  }

  // -- the sweep grid ---------------------------------------------------------------------------------
  function shading(indices) {
    if (!state.shade) { return null; }
    var values = indices.map(function (i) { return jobs[i].measures[state.shade]; }).filter(function (v) { return v !== undefined; });
    if (!values.length) { return null; }
    var low = Math.min.apply(null, values), high = Math.max.apply(null, values);
    return {low: low, high: high, colour: function (value) { return mixColour(high > low ? (value - low) / (high - low) : 0.5); }};
  }
  function tile(index, scale) {
    var job = jobs[index];
    var classes = "tile" + (job.video ? "" : job.status === "ok" ? " skipped" : " " + job.status)
      + (index === state.selected ? " selected" : "") + (state.compared && state.compared.job === index ? " compared" : "");
    var node = el("div", {class: classes, "data-job": String(index), tabindex: "0", role: "button"});
    if (job.width && job.height) { node.style.setProperty("--aspect", job.width + " / " + job.height); }
    if (job.video) {
      var video = el("video", {muted: true, playsinline: true, preload: "none", poster: job.poster});
      video.muted = true;
      video.dataset.src = job.video;
      video.dataset.job = String(index);
      node.appendChild(video);
      if (job.audio) { node.classList.add("has-audio"); node.appendChild(speaker(index)); }
    } else {
      var why = job.status === "ok" ? "ok, video missing" : job.status + (job.error ? ": " + job.error.split("\n")[0].slice(0, 80) : "");
      node.appendChild(document.createTextNode(why));
    }
    var value = state.shade ? job.measures[state.shade] : undefined;
    var text = "#" + job.n + (value !== undefined ? " · " + format(value) : "") + (job.attempt > 1 ? " · attempt " + job.attempt : "");
    var caption = el("span", {class: "label", text: text});
    if (scale && value !== undefined) {
      node.style.borderColor = scale.colour(value);
      caption.style.background = scale.colour(value);
      caption.style.color = value > (scale.low + scale.high) / 2 ? "#000" : "#fff";
    }
    node.appendChild(caption);
    node.title = describe(job);
    return node;
  }
  function describe(job) {
    var parts = axes.map(function (axis, i) { return axis.name + "=" + label(job, i); });
    parts.push("status=" + job.status);
    Object.keys(job.measures).forEach(function (name) { parts.push(name + "=" + format(job.measures[name])); });
    return "#" + job.n + " " + shortId(job) + ": " + parts.join(", ");
  }
  function render() {
    $("axis-x").value = String(state.x);
    $("axis-y").value = String(state.y);
    $("axis-z").value = String(state.z);
    var shown = shownJobs();
    var pageValues = state.z >= 0 ? valuesOf(shown, state.z) : [];
    if (state.z >= 0 && pageValues.indexOf(state.page) < 0) { state.page = pageValues.length ? pageValues[0] : 0; }
    var pageSelect = $("page-value");
    pageSelect.textContent = "";
    pageValues.forEach(function (value) {
      pageSelect.appendChild(el("option", {value: String(value), text: value < 0 ? "(none)" : axes[state.z].labels[value]}));
    });
    pageSelect.value = String(state.page);
    [pageSelect, $("page-prev"), $("page-next")].forEach(function (node) { node.disabled = state.z < 0 || pageValues.length < 2; });
    var onPage = state.z >= 0 ? shown.filter(function (i) { return jobs[i].values[state.z] === state.page; }) : shown;
    var scale = shading(onPage);
    renderLegend(scale);
    $("shown-count").textContent = shown.length + " of " + jobs.length + " jobs shown" + (state.z >= 0 ? ", " + onPage.length + " on this page" : "");
    renderGrid(onPage, shown, scale);
    renderTable();
  }
  function renderLegend(scale) {
    var legend = $("legend");
    legend.textContent = "";
    if (!scale) { return; }
    var ramp = el("span", {class: "ramp"});
    ramp.style.background = "linear-gradient(to right," + RAMP.join(",") + ")";
    legend.appendChild(el("span", {text: format(scale.low)}));
    legend.appendChild(ramp);
    legend.appendChild(el("span", {text: format(scale.high)}));
  }
  function renderGrid(onPage, shown, scale) {
    var wrap = $("sweep-grid");
    wrap.querySelectorAll("video").forEach(detach);
    if (observer) { observer.disconnect(); }
    wrap.textContent = "";
    if (!jobs.length) { wrap.appendChild(el("p", {class: "none", text: "No results yet."})); return; }
    if (!onPage.length) { wrap.appendChild(el("p", {class: "none", text: "No job passes the filters."})); return; }
    var columns = state.x >= 0 ? valuesOf(shown, state.x) : [null];
    var rows = state.y >= 0 ? valuesOf(shown, state.y) : [null];
    var cells = {};
    onPage.forEach(function (i) {
      var key = (state.y >= 0 ? jobs[i].values[state.y] : "") + "|" + (state.x >= 0 ? jobs[i].values[state.x] : "");
      (cells[key] = cells[key] || []).push(i);
    });
    var crowded = 0;
    var table = el("table", {class: "sweep", id: "sweep-table"});
    var corner = (state.y >= 0 ? axes[state.y].name + " \u2193 " : "") + (state.x >= 0 ? axes[state.x].name + " \u2192" : "");
    var head = el("tr", {}, [el("th", {class: "corner", scope: "col", text: corner})]);
    columns.forEach(function (value) { head.appendChild(el("th", {scope: "col", text: value === null ? "" : value < 0 ? "(none)" : axes[state.x].labels[value]})); });
    table.appendChild(el("thead", {}, [head]));
    var body = el("tbody");
    rows.forEach(function (row) {
      var line = el("tr", {}, [el("th", {scope: "row", text: row === null ? "" : row < 0 ? "(none)" : axes[state.y].labels[row]})]);
      columns.forEach(function (column) {
        var members = cells[(row === null ? "" : row) + "|" + (column === null ? "" : column)] || [];
        var cell = el("div", {class: "cell"});
        if (!members.length) { cell.appendChild(el("div", {class: "empty", text: "no job"})); }
        members.slice(0, TILES_PER_CELL).forEach(function (i) { cell.appendChild(tile(i, scale)); });
        if (members.length > 1) { crowded++; }
        if (members.length > TILES_PER_CELL) {
          cell.appendChild(el("span", {class: "more", text: "+" + (members.length - TILES_PER_CELL) + " more in this cell"}));
        }
        line.appendChild(el("td", {}, [cell]));
      });
      body.appendChild(line);
    });
    table.appendChild(body);
    wrap.appendChild(table);
    var inside = axes.map(function (axis, i) { return i; }).filter(function (i) {
      return i !== state.x && i !== state.y && i !== state.z && valuesOf(onPage, i).length > 1;
    });
    $("cell-note").textContent = crowded && inside.length
      ? "Cells hold several jobs: " + inside.map(function (i) { return axes[i].name; }).join(", ")
        + " also vary. Put one on Y or Page, or filter it."
      : "";
    wrap.querySelectorAll(".tile").forEach(function (node) {
      if (observer) { observer.observe(node); } else if (node.querySelector("video")) { attach(node.querySelector("video"), node.querySelector("video").dataset.src); }
    });
    applySound();
  }
  function onTile(event) {
    var node = event.target.closest(".tile");
    if (!node) { return; }
    var index = Number(node.dataset.job);
    if (event.shiftKey && state.selected >= 0 && index !== state.selected) { compare({job: index}); } else { select(index); }
  }

  // -- the detail panel: one job, or two side by side ---------------------------------------------------
  function select(index) {
    state.selected = index;
    state.compared = null;
    markSelection();
    renderDetail();
  }
  function compare(target) {
    state.compared = target;
    markSelection();
    renderDetail();
  }
  function markSelection() {
    document.querySelectorAll(".tile").forEach(function (node) {
      var index = Number(node.dataset.job);
      node.classList.toggle("selected", index === state.selected);
      node.classList.toggle("compared", !!state.compared && state.compared.job === index);
    });
    document.querySelectorAll("#results-table tbody tr").forEach(function (row) {
      row.classList.toggle("selected", Number(row.dataset.job) === state.selected);
    });
  }
  function view(video, poster, caption, failed, index) {
    // index: the job shown (its sound can be played here); none for another attempt's video
    var figure = el("figure"), sound = index !== undefined && video && jobs[index].audio;
    if (video) {
      var node = el("video", {muted: true, playsinline: true, preload: "auto", poster: poster});
      node.muted = true;
      if (index !== undefined) { node.dataset.job = String(index); }
      figure.appendChild(node);
      attach(node, video);
    } else {
      figure.appendChild(el("div", {class: "failed-view", text: failed}));
    }
    figure.appendChild(el("figcaption", {}, sound ? [speaker(index), " " + caption] : [caption]));
    return figure;
  }
  function kvTable(pairs, differing) {
    var table = el("table", {class: "kv"});
    pairs.forEach(function (pair) {
      table.appendChild(el("tr", {class: differing && differing.has(pair[0]) ? "differs" : null}, [
        el("th", {scope: "row", text: pair[0]}), el("td", {text: pair[1]})]));
    });
    return table;
  }
  function recordPairs(job) {
    return axes.map(function (axis, i) { return [axis.name, label(job, i)]; }).concat(job.record);
  }
  function timingBar(job) {
    var parts = data.timings.filter(function (name) { return name !== "total_s" && job.measures[name] !== undefined; });
    if (!parts.length) { return null; }
    var total = job.measures.total_s || parts.reduce(function (sum, name) { return sum + job.measures[name]; }, 0);
    var bar = el("div", {class: "timing", title: "load, denoise, decode, export (seconds)"});
    var key = el("div", {class: "timing-key"});
    parts.forEach(function (name) {
      var segment = el("span");
      segment.style.width = (100 * job.measures[name] / total) + "%";
      segment.style.background = TIMING_COLOURS[name];
      bar.appendChild(segment);
      var swatch = el("i");
      swatch.style.background = TIMING_COLOURS[name];
      key.appendChild(el("span", {}, [swatch, name.replace(/_s$/, "") + " " + format(job.measures[name]) + " s"]));
    });
    if (job.measures.total_s !== undefined) { key.appendChild(el("span", {text: "total " + format(job.measures.total_s) + " s"})); }
    return el("div", {}, [bar, key]);
  }
  function copyButton(text) {
    var button = el("button", {type: "button", text: "Copy"});
    button.addEventListener("click", function () {
      function done(ok) { button.textContent = ok ? "Copied" : "Select it"; }
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(fallbackCopy(button)); });
      } else { done(fallbackCopy(button)); }
    });
    return button;
  }
  function fallbackCopy(button) {
    var code = button.parentNode.querySelector("code"), range = document.createRange();
    range.selectNodeContents(code);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    try { return document.execCommand("copy"); } catch (error) { return false; }
  }
  function otherAttempts(job) {
    if (!job.others.length) { return null; }
    var table = el("table", {class: "data others"});
    table.appendChild(el("thead", {}, [el("tr", {}, ["where", "job", "attempt", "run", "status", "total s", "video", ""].map(function (name) {
      return el("th", {scope: "col", text: name});
    }))]));
    var body = el("tbody");
    job.others.forEach(function (other) {
      var button = other.video ? el("button", {type: "button", text: "Compare", class: "compare-other"}) : null;
      if (button) { button.addEventListener("click", function () { compare({other: other}); }); }
      body.appendChild(el("tr", {title: other.error || null}, [
        el("td", {text: other.where}), el("td", {class: "id", text: other.job.slice(0, 8)}),
        el("td", {class: "num", text: format(other.attempt)}), el("td", {text: other.run}),
        el("td", {text: other.status}), el("td", {class: "num", text: format(other.total_s)}),
        el("td", {}, [other.video ? el("a", {href: other.video, text: "mp4"}) : "-"]), el("td", {}, [button]),
      ]));
    });
    table.appendChild(body);
    return el("div", {}, [el("h4", {text: "Other attempts and reruns"}), table]);
  }
  function jobSection(job, differing) {
    var measuresShown = Object.keys(job.measures).filter(function (name) { return data.timings.indexOf(name) < 0; });
    var section = el("section", {class: "job"}, [
      el("h3", {text: "#" + job.n + " · " + job.id + " · " + job.status + (job.attempt > 1 ? " · attempt " + job.attempt : "")}),
      kvTable(axes.map(function (axis, i) { return [axis.name, label(job, i)]; }), differing),
      timingBar(job),
      measuresShown.length ? kvTable(measuresShown.map(function (name) { return [name, format(job.measures[name])]; })) : null,
      job.error ? el("pre", {class: "error", text: job.error}) : null,
      el("div", {class: "rerun"}, [el("code", {text: job.rerun}), copyButton(job.rerun)]),
      el("p", {}, [job.video ? el("a", {href: job.video, text: "video"}) : null, job.video && job.poster ? " · " : null,
                   job.poster ? el("a", {href: job.poster, text: "poster"}) : null]),
      el("details", {class: "more-record", open: true}, [el("summary", {text: "record"}), kvTable(job.record.filter(function (pair) {
        return axisNames.indexOf(pair[0]) < 0;  // shown above
      }), differing)]),
      otherAttempts(job),
    ]);
    return section;
  }
  function renderDetail() {
    var panel = $("detail");
    panel.querySelectorAll("video").forEach(detach);
    panel.textContent = "";
    if (state.selected < 0) {
      panel.appendChild(el("h2", {text: "Detail"}));
      panel.appendChild(el("p", {class: "hint", text: "Click a cell or a row to see its record, video and rerun command. "
        + "Shift-click a second cell to compare the two side by side. Space plays and pauses every cell."}));
      return;
    }
    var job = jobs[state.selected], other = state.compared;
    var second = other && other.job !== undefined ? jobs[other.job] : null;
    panel.appendChild(el("div", {class: "detail-head"}, [
      el("h2", {text: second ? "Two jobs side by side" : other ? "Job and its other attempt" : "Job #" + job.n}),
      el("button", {type: "button", text: "Close", id: "detail-close", onclick: function () { select(-1); }}),
    ]));
    var views = el("div", {class: "views"});
    views.style.setProperty("--views", other ? 2 : 1);
    views.appendChild(view(job.video, job.poster, "#" + job.n + " " + shortId(job), job.status + (job.error ? ": " + job.error.split("\n")[0] : ""),
                           state.selected));
    if (second) {
      views.appendChild(view(second.video, second.poster, "#" + second.n + " " + shortId(second), second.status, other.job));
    } else if (other) {
      var entry = other.other;
      views.appendChild(view(entry.video, null, entry.where + " " + entry.job.slice(0, 8) + " attempt " + entry.attempt, entry.status));
    }
    panel.appendChild(views);
    var jobsBox = el("div", {class: "jobs"});
    jobsBox.style.setProperty("--views", second ? 2 : 1);
    var differing = null;
    if (second) {
      var mine = new Map(recordPairs(job)), theirs = new Map(recordPairs(second));
      differing = new Set();
      new Set(Array.from(mine.keys()).concat(Array.from(theirs.keys()))).forEach(function (key) {
        if (mine.get(key) !== theirs.get(key)) { differing.add(key); }
      });
    }
    jobsBox.appendChild(jobSection(job, differing));
    if (second) { jobsBox.appendChild(jobSection(second, differing)); }
    panel.appendChild(jobsBox);
    if (data.common.length) {
      panel.appendChild(el("details", {class: "more-record"}, [el("summary", {text: "the same for every job"}), kvTable(data.common)]));
    }
    applySound();
    syncAll();
  }

  // -- the results table -----------------------------------------------------------------------------
  var tableColumns = [{key: "poster", name: ""}, {key: "n", name: "job"}]
    .concat(axes.map(function (axis, i) { return {key: "axis" + i, name: axis.name, axis: i}; }))
    .concat([{key: "status", name: "status"}])
    .concat(measures.map(function (measure) { return {key: measure.name, name: measure.name, measure: true}; }));
  function cellValue(job, column) {
    if (column.axis !== undefined) { return job.values[column.axis]; }  // the value's rank: its sort order
    if (column.measure) { return job.measures[column.key]; }
    return job[column.key];
  }
  function searchText(job) {
    if (!job.searchText) {
      job.searchText = (job.id + " " + job.status + " " + job.manifest + " " + axes.map(function (axis, i) { return label(job, i); }).join(" ")
        + " " + (job.error || "")).toLowerCase();
    }
    return job.searchText;
  }
  function renderTable() {
    var table = $("results-table");
    var rows = shownJobs().filter(function (i) { return !state.search || searchText(jobs[i]).indexOf(state.search) >= 0; });
    var column = tableColumns.filter(function (c) { return c.key === state.sort.key; })[0] || tableColumns[1];
    rows.sort(function (a, b) {
      var x = cellValue(jobs[a], column), y = cellValue(jobs[b], column);
      var missingX = x === undefined || x === null, missingY = y === undefined || y === null;
      if (missingX || missingY) { return missingX - missingY; }  // no value: last either way
      if (typeof x === "number" && typeof y === "number") { return state.sort.direction * (x - y) || a - b; }
      return state.sort.direction * String(x).localeCompare(String(y), undefined, {numeric: true}) || a - b;
    });
    var head = el("tr");
    tableColumns.forEach(function (c) {
      var th = el("th", {scope: "col", tabindex: "0", text: c.name, "data-key": c.key,
        "aria-sort": c.key === state.sort.key ? (state.sort.direction > 0 ? "ascending" : "descending") : null});
      function sort() {
        if (c.key === "poster") { return; }
        state.sort = {key: c.key, direction: state.sort.key === c.key ? -state.sort.direction : 1};
        renderTable();
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (event) { if (event.key === "Enter") { sort(); } });
      head.appendChild(th);
    });
    var body = el("tbody");
    rows.forEach(function (i) {
      var job = jobs[i];
      var cells = [el("td", {}, [job.poster ? el("img", {class: "thumb", loading: "lazy", src: job.poster, alt: ""}) : null]),
                   el("td", {class: "id", title: job.id, text: "#" + job.n + " " + shortId(job)})];
      axes.forEach(function (axis, a) { cells.push(el("td", {text: label(job, a)})); });
      cells.push(el("td", {class: "status-" + job.status, title: job.error || null, text: job.status}));
      measures.forEach(function (measure) { cells.push(el("td", {class: "num", text: format(job.measures[measure.name])})); });
      body.appendChild(el("tr", {"data-job": String(i), class: i === state.selected ? "selected" : null}, cells));
    });
    table.textContent = "";
    table.appendChild(el("caption", {text: rows.length + " of " + jobs.length + " jobs (the latest attempt of each; the filters above apply); click a row for its record, a header to sort"}));
    table.appendChild(el("thead", {}, [head]));
    table.appendChild(body);
  }

  // -- static tables (by parameter): sort on a header click ------------------------------------------------
  function sortStatic(th) {
    var table = th.closest("table"), body = table.tBodies[0];
    var index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var direction = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    function key(row) { var cell = row.cells[index]; return cell.dataset.v !== undefined ? parseFloat(cell.dataset.v) : cell.textContent.trim(); }
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === "" || y === "") { return (x === "") - (y === ""); }
      if (typeof x === "number" && typeof y === "number") { return direction * (x - y); }
      return direction * String(x).localeCompare(String(y), undefined, {numeric: true});
    });
    table.querySelectorAll("th").forEach(function (other) { other.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", direction === 1 ? "ascending" : "descending");
    rows.forEach(function (row) { body.appendChild(row); });
  }
  document.querySelectorAll("table.sortable th").forEach(function (th) {
    th.addEventListener("click", function () { sortStatic(th); });
    th.addEventListener("keydown", function (event) { if (event.key === "Enter") { sortStatic(th); } });
  });
  // grids: their animated preview where the browser cannot play the mp4
  document.querySelectorAll("figure.grid").forEach(function (figure) {
    var video = figure.querySelector("video"), preview = figure.querySelector("img.preview");
    if (!video || !preview) { return; }
    function showPreview() { video.hidden = true; preview.hidden = false; }
    var source = video.querySelector("source");
    if (!video.canPlayType("video/mp4") || video.networkState === HTMLMediaElement.NETWORK_NO_SOURCE) { showPreview(); }
    else if (source) { source.addEventListener("error", showPreview); }
  });

  // -- start ------------------------------------------------------------------------------------------
  buildControls();
  var withSound = jobs.filter(function (job) { return job.audio && job.video; }).length;
  if (withSound) {
    $("audio-note").hidden = false;
    $("audio-note").textContent = withSound + " of " + jobs.length + " jobs have sound (an AAC track in their mp4). "
      + "Every cell plays muted; " + SOUND_OFF + " on a cell, or beside its video in the detail panel, plays that job's "
      + "sound, one job at a time. The grids below are silent.";
  }
  var start = data.start || {};
  ["x", "y", "z"].forEach(function (which, position) {
    var named = axisNames.indexOf(start[which]);
    state[which] = named >= 0 ? named : (start.x === undefined && position < axes.length ? position : -1);
  });
  if (state.x < 0 && axes.length) { state.x = 0; }
  $("sweep-grid").addEventListener("click", onTile);
  $("sweep-grid").addEventListener("keydown", function (event) { if (event.key === "Enter") { onTile(event); } });
  $("sweep-grid").addEventListener("mouseover", function (event) {
    var node = event.target.closest(".tile");
    if (node) { $("hover-info").textContent = describe(jobs[Number(node.dataset.job)]); }
  });
  $("results-table").addEventListener("click", function (event) {
    var row = event.target.closest("tbody tr");
    if (row) { select(Number(row.dataset.job)); }
  });
  render();
  renderDetail();
  syncAll();
  document.body.dataset.ready = "true";
})();
