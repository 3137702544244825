// A small hand-drawn SVG chart: viewers (area) and paid orders (line), each on its own
// scale, over the last minutes. No library: two polylines and a few labels.
const NS = "http://www.w3.org/2000/svg";
const PAD = 14;

function node(tag, attrs) {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  return n;
}

/** samples: [{t, viewers, paid}] oldest first; spanMs: the window shown. */
export function drawChart(svg, samples, spanMs, now, emptyText) {
  // The drawing's units are the element's pixels: nothing is stretched or squeezed.
  const W = Math.max(200, Math.round(svg.clientWidth || 600));
  const H = Math.max(60, Math.round(svg.clientHeight || 84));
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.replaceChildren();
  for (let i = 1; i < 4; i++) {
    svg.append(node("line", { x1: 0, x2: W, y1: (H * i) / 4, y2: (H * i) / 4, class: "grid" }));
  }
  if (samples.length < 2) {
    const text = node("text", { x: W / 2, y: H / 2, class: "empty", "text-anchor": "middle" });
    text.textContent = emptyText;
    svg.append(text);
    return;
  }
  const x = (t) => W - ((now - t) / spanMs) * W;
  const maxV = Math.max(1, ...samples.map((s) => s.viewers));
  const maxP = Math.max(1, ...samples.map((s) => s.paid));
  const yV = (v) => H - PAD / 2 - (v / maxV) * (H - PAD * 1.5);
  const yP = (v) => H - PAD / 2 - (v / maxP) * (H - PAD * 1.5);
  const pts = (y, key) => samples.map((s) => `${x(s.t).toFixed(1)},${y(s[key]).toFixed(1)}`).join(" ");
  const first = x(samples[0].t).toFixed(1);
  const last = x(samples[samples.length - 1].t).toFixed(1);
  svg.append(node("polygon", { points: `${first},${H} ${pts(yV, "viewers")} ${last},${H}`, class: "area viewers" }));
  svg.append(node("polyline", { points: pts(yV, "viewers"), class: "line viewers" }));
  svg.append(node("polyline", { points: pts(yP, "paid"), class: "line paid" }));
  const label = (text, xPos, anchor, cls) => {
    const n = node("text", { x: xPos, y: 11, "text-anchor": anchor, class: `axis ${cls}` });
    n.textContent = text;
    svg.append(n);
  };
  label(String(maxV), 4, "start", "viewers");
  label(String(maxP), W - 4, "end", "paid");
}
