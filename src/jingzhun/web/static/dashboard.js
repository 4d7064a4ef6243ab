// The dashboard's few interactions. Served from the package; no framework, no build step.

// A chart is drawn at its card's width when its script runs; the layout can still change after
// that (fonts, a scrollbar), so each chart follows its card's size.
const fit = new ResizeObserver((entries) => {
  entries.forEach((e) => e.target.querySelectorAll(".js-plotly-plot").forEach((p) => Plotly.Plots.resize(p)));
});
document.querySelectorAll(".chart").forEach((c) => fit.observe(c));
