// AffectLens page script, run once when the page loads (webapp/tabs/analyse.py: demo.load(js=...)).
//
// Keeps the Analyse tab's player (#player video), timeline cursor (the plotly shape named "cursor" in
// #timeline, see webapp/plots.py) and frame slider (#frame) in step:
//   slider (drag, keys, typed number, set by the server)  -> cursor, and the player when it is paused
//   player playing -> cursor;  player paused or seeked   -> slider (the server redraws the frame view)
//   click on the timeline                                 -> slider and player
//   in the frame view (#frame-view): Left/Right step a frame, Shift+Left/Right a second.
// The slider is set as a person would: its value, then an "input" event, so Gradio's .change runs.
// The timeline's layout.meta gives the frame rate (fps) and the first timestamp (t0).
() => {
  const $ = (selector) => document.querySelector(selector);
  const seen = new WeakSet();
  const resizedFor = new WeakMap();                     // a figure's layout -> the panel width it was resized to
  let current = null;                                   // the slider value last acted on
  const slider = () => $("#frame input[type=range]");
  const plot = () => $("#timeline .js-plotly-plot");
  const video = () => $("#player video");
  const meta = () => (plot() && plot().layout && plot().layout.meta) || {};
  const fps = () => meta().fps || 30;
  const timeOf = (frame) => (meta().t0 || 0) + frame / fps();
  const frameOf = (t) => Math.max(0, Math.floor((t - (meta().t0 || 0)) * fps() + 1e-3));

  function moveCursor(t) {
    const gd = plot();
    const shapes = (gd && gd.layout && gd.layout.shapes) || [];
    const i = shapes.findIndex((s) => s.name === "cursor");
    if (i < 0 || !window.Plotly || Math.abs(shapes[i].x0 - t) < 1e-6) return;
    window.Plotly.relayout(gd, { [`shapes[${i}].x0`]: t, [`shapes[${i}].x1`]: t });
  }
  function seekPlayer(frame) {
    const v = video();
    if (v && v.paused && frameOf(v.currentTime) !== frame) v.currentTime = timeOf(frame) + 0.25 / fps();
  }
  function setFrame(frame, fromPlayer) {
    const s = slider();
    if (!s) return;
    frame = Math.min(Math.max(Math.round(frame), Number(s.min) || 0), Number(s.max));
    if (Number(s.value) !== frame) {
      s.value = String(frame);
      s.dispatchEvent(new Event("input", { bubbles: true }));
    }
    current = frame;
    moveCursor(timeOf(frame));
    if (!fromPlayer) seekPlayer(frame);
  }
  function poll() {
    const gd = plot();
    // A timeline drawn while its tab was hidden or not yet laid out (a video opened on the Review tab)
    // has plotly's default width: lay it out again at its panel's width once it shows (once per figure and width).
    if (gd && window.Plotly && gd.offsetParent && gd._fullLayout) {
      const panel = Math.round(gd.parentElement.getBoundingClientRect().width);
      if (panel > 0 && Math.abs(gd._fullLayout.width - panel) > 4 && resizedFor.get(gd.layout) !== panel) {
        resizedFor.set(gd.layout, panel);
        window.Plotly.Plots.resize(gd);
      }
    }
    if (gd && gd.on && !seen.has(gd)) {                 // a new timeline: clicks seek
      seen.add(gd);
      gd.on("plotly_click", (event) => {
        const point = event && event.points && event.points[0];
        if (point) setFrame(typeof point.customdata === "number" ? point.customdata : frameOf(point.x), false);
      });
    }
    const v = video();
    if (v && !seen.has(v)) {
      seen.add(v);
      v.addEventListener("timeupdate", () => { if (!v.paused) moveCursor(v.currentTime); });
      v.addEventListener("pause", () => setFrame(frameOf(v.currentTime), true));
      v.addEventListener("seeked", () => { if (v.paused) setFrame(frameOf(v.currentTime), true); });
    }
    const view = $("#frame-view");
    if (view && view.tabIndex < 0) view.tabIndex = 0;  // focusable, for the keys below
    const s = slider();
    if (!s) return;
    const frame = Number(s.value);
    if (frame !== current) {                             // moved by drag, keys, typing or the server
      current = frame;
      seekPlayer(frame);
    }
    if (!v || v.paused) moveCursor(timeOf(frame));       // also after plotly redraws the figure
  }
  document.addEventListener("keydown", (e) => {
    if (!["ArrowLeft", "ArrowRight"].includes(e.key) || e.altKey || e.ctrlKey || e.metaKey) return;
    const view = $("#frame-view");
    if (!view || !view.contains(e.target) || e.target.matches("input[type=number], input[type=text], textarea")) return;
    const s = slider();
    if (!s) return;
    e.preventDefault();
    const step = e.shiftKey ? Math.max(1, Math.round(fps())) : 1;
    setFrame(Number(s.value) + (e.key === "ArrowRight" ? step : -step), false);
  }, true);
  setInterval(poll, 200);
}
