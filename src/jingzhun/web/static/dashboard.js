// The dashboard's few interactions. Served from the package; no framework, no build step.

// A chart is drawn at its card's width when its script runs; the layout can still change after
// that (fonts, a scrollbar), so each chart follows its card's size.
const fit = new ResizeObserver((entries) => {
  entries.forEach((e) => e.target.querySelectorAll(".js-plotly-plot").forEach((p) => Plotly.Plots.resize(p)));
});
document.querySelectorAll(".chart").forEach((c) => fit.observe(c));

// -- jobs: a queued or running job's page follows it every second (state, progress), then
// shows the server's own rendering of its result or error, without reloading the page.
(() => {
  const box = document.getElementById("job");
  if (!box || !["queued", "running"].includes(box.dataset.state)) return;
  const labels = JSON.parse(box.dataset.states || "{}");
  const state = document.getElementById("job-state");
  const bar = document.getElementById("job-progress");
  const step = document.getElementById("job-step");
  let misses = 0;
  const finish = async () => {
    const page = await fetch(location.pathname, { credentials: "same-origin" });
    const fresh = new DOMParser().parseFromString(await page.text(), "text/html").getElementById("job");
    if (page.ok && fresh) box.replaceWith(fresh);
  };
  const tick = async () => {
    let job;
    try {
      const r = await fetch(box.dataset.job, { credentials: "same-origin", headers: { Accept: "application/json" } });
      job = await r.json();
      misses = 0;
    } catch (e) {
      if (++misses < 10) setTimeout(tick, 2000);
      return;
    }
    state.textContent = labels[job.state] || job.state;
    state.className = "adm-state adm-state-" + job.state;
    const p = job.progress;
    if (bar && p && p.total) { bar.max = p.total; bar.value = p.done; }
    if (step && p) step.textContent = p.done != null ? p.done.toLocaleString() + (p.total ? " / " + p.total.toLocaleString() : "") : (p.step || "");
    if (job.state === "queued" || job.state === "running") setTimeout(tick, 1000);
    else finish();
  };
  setTimeout(tick, 1000);
})();

// -- campaigns: the builder shows the audience size and the expected profit live (the form is
// posted ~300 ms after the last change; an older answer never replaces a newer one), field
// errors beside their fields, more variants on demand, and no variants for an ad audience.
(() => {
  const form = document.querySelector("form.campaign-builder");
  if (!form) return;
  const panel = document.getElementById("audience-live");
  const $ = (id) => document.getElementById(id);
  const token = form.elements.csrf.value;
  const matched = $("aud-steps").rows[0].cells[0].textContent;
  let timer = 0;
  let asked = 0;
  const cell = (text, cls) => {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    return td;
  };
  const showErrors = (errors) => {
    form.querySelectorAll(".field-error").forEach((p) => { p.hidden = true; p.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
    const whole = $("err-form");
    whole.hidden = true;
    errors.forEach((e) => {
      const p = e.field && $("err-" + e.field);
      const target = p || whole;
      target.textContent = e.message;
      target.hidden = false;
      const input = e.field && form.elements[e.field];
      if (input && input.setAttribute) input.setAttribute("aria-invalid", "true");
    });
  };
  const show = (d) => {
    showErrors(d.errors || []);
    const a = d.audience;
    const e = d.expected;
    $("aud-status").textContent = a ? "" : panel.dataset.fix;
    $("aud-members").textContent = a ? a.members : "–";
    $("aud-treatment").textContent = a ? a.treatment : "–";
    $("aud-control").textContent = a ? a.control : "–";
    const rows = [cell(matched), cell("", "num"), cell(a ? a.matched : "–", "num")];
    const first = document.createElement("tr");
    first.append(...rows);
    first.lastChild.id = "aud-matched";
    const body = $("aud-steps");
    body.replaceChildren(first);
    (a ? a.steps : []).forEach((s) => {
      const tr = document.createElement("tr");
      tr.append(cell(s.label), cell(s.removed, "num"), cell(s.remaining, "num"));
      body.append(tr);
    });
    $("aud-profit").textContent = e ? e.profit : "–";
    $("aud-profit").className = "value " + (e ? e.sign : "");
    $("aud-detail").textContent = e ? e.detail : "";
    $("aud-note").textContent = e ? e.note : "";
  };
  const ask = () => {
    const n = ++asked;
    panel.setAttribute("aria-busy", "true");
    $("aud-status").textContent = panel.dataset.updating;
    fetch("/campaigns/audience", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": token },
      body: new URLSearchParams(new FormData(form)),
    })
      .then((r) => r.json())
      .then((d) => { if (n === asked) show(d); })
      .catch(() => { if (n === asked) $("aud-status").textContent = panel.dataset.offline; })
      .finally(() => { if (n === asked) panel.removeAttribute("aria-busy"); });
  };
  const later = () => { clearTimeout(timer); timer = setTimeout(ask, 300); };
  form.addEventListener("input", later);
  form.addEventListener("change", later);
  const channel = form.elements.channel;
  const ads = () => form.classList.toggle("ads", channel.value === "ads");
  channel.addEventListener("change", ads);
  ads();
  const list = form.querySelector(".variant-list");
  form.querySelector(".add-variant").addEventListener("click", () => {
    const all = list.querySelectorAll("fieldset.variant");
    if (all.length >= 26) return;
    const last = all[all.length - 1];
    const n = all.length + 1;
    const copy = last.cloneNode(true);
    copy.dataset.slot = String(n);
    const legend = copy.querySelector("legend");
    legend.textContent = legend.textContent.replace(/\d+/, String(n));
    copy.querySelectorAll("[id], [name], [for], [aria-describedby]").forEach((el) => {
      ["id", "name", "for", "aria-describedby"].forEach((attr) => {
        const v = el.getAttribute(attr);
        if (v) el.setAttribute(attr, v.replace(/variant_\d+_/, "variant_" + n + "_"));
      });
    });
    copy.querySelectorAll("input, textarea").forEach((el) => { el.value = ""; el.removeAttribute("aria-invalid"); });
    copy.querySelectorAll(".field-error").forEach((p) => { p.hidden = true; p.textContent = ""; });
    copy.querySelector("[name=variant_" + n + "_name]").value = String.fromCharCode(96 + n);
    copy.querySelector("[name=variant_" + n + "_weight]").value = "1";
    list.append(copy);
    copy.querySelector("input").focus();
  });
})();
