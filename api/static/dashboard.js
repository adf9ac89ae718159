// carbonwatch dashboard: province overview, enterprise drill-down, data quality; live over server-sent events.
// Static page; every figure comes from /api/v1 with the bearer token kept in sessionStorage.
(() => {
  "use strict";
  const TOKEN_KEY = "carbonwatch.token";
  const LANG_KEY = "carbonwatch.lang";
  const COLORS = ["#0b7285", "#e8590c", "#5f3dc4", "#2b8a3e", "#c2255c", "#1864ab", "#868e96"];
  const state = { me: null, live: null, streamAbort: null, charts: [], renderedAt: 0 };
  let lang = localStorage.getItem(LANG_KEY) || "zh";

  // --- formatting and requests --------------------------------------------------------------
  const t = (key) => (window.CW_TEXT[lang] && window.CW_TEXT[lang][key]) || window.CW_TEXT.en[key] || key;
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const num = (v, digits = 2) =>
    v === null || v === undefined ? "—" : Number(v).toLocaleString(lang === "zh" ? "zh-CN" : "en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
  const pct = (v) => (v === null || v === undefined ? "—" : `${(v * 100).toFixed(1)}%`);
  const unitOf = (u) => (u === "1" ? "" : ` ${u}`);
  const carrierName = (c) => (t(`carrier_${c}`) !== `carrier_${c}` ? t(`carrier_${c}`) : c);
  const token = () => sessionStorage.getItem(TOKEN_KEY);
  // times are shown in Beijing time, as the reporting rules count them, whatever the browser's zone
  const bj = (iso, opts = {}) =>
    iso ? new Date(iso).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", { timeZone: "Asia/Shanghai", ...opts }) : "—";
  const main = () => document.getElementById("main");

  async function api(path) {
    const r = await fetch(`/api/v1${path}`, { headers: { Authorization: `Bearer ${token()}` } });
    if (r.status === 401) {
      logout();
      throw new Error("unauthorised");
    }
    if (!r.ok) throw new Error(`${r.status} ${(await r.json().catch(() => ({}))).detail || r.statusText}`);
    return r.json();
  }

  function logout() {
    sessionStorage.removeItem(TOKEN_KEY);
    if (state.streamAbort) state.streamAbort.abort();
    state.me = null;
    renderLogin();
  }

  function translateStatic() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    document.getElementById("lang").textContent = lang === "zh" ? "EN" : "中文";
    document.querySelectorAll("[data-i18n]").forEach((el) => (el.textContent = t(el.dataset.i18n)));
  }

  // --- charts (uPlot) -----------------------------------------------------------------------
  // xs: epoch seconds (a time axis), or labels (a category axis: one slot per label, every one shown)
  function chart(el, xs, series, { bars = false, height = 240, stacked = false, every = 1 } = {}) {
    if (!xs.length || !series.length) {
      el.innerHTML = `<p class="muted">${t("none")}</p>`;
      return;
    }
    if (stacked) {
      // stacked bars: draw running totals, the largest first, so each carrier shows as its own band
      const cum = [];
      series.forEach((s, i) => cum.push({ ...s, values: s.values.map((v, j) => v + (i ? cum[i - 1].values[j] : 0)) }));
      series = cum.reverse();
    }
    const categories = typeof xs[0] === "string" ? xs : null;
    const x = categories ? categories.map((_, i) => i + 1) : xs;
    const fromZero = (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1];
    const width = Math.max(320, el.clientWidth || 640);
    const color = (s, i) => s.color || COLORS[i % COLORS.length];
    const opts = {
      width,
      height,
      series: [
        categories ? { label: "", value: (u, v) => (v ? categories[v - 1] : "—") } : {},
        ...series.map((s, i) => ({
          label: s.label,
          stroke: color(s, i),
          fill: (s.bars ?? bars) ? `${color(s, i)}cc` : series.some((o) => o.bars) ? undefined : `${color(s, i)}22`,
          width: (s.bars ?? bars) ? 0 : 2,
          scale: s.scale || "y",
          paths: (s.bars ?? bars) ? uPlot.paths.bars({ size: [stacked ? 0.7 : 0.75 - 0.35 * i, 80] }) : undefined,
          points: { show: !(s.bars ?? bars) && x.length < 40, size: 6 },
          value: (u, v) => (v === null || v === undefined ? "—" : num(v)),
        })),
      ],
      axes: [
        categories
          ? { splits: () => x.filter((i) => (i - 1) % every === 0), values: (u, splits) => splits.map((i) => categories[i - 1] || "") }
          : {},
        { scale: "y", size: 70 },
        ...(series.some((s) => s.scale === "y2") ? [{ scale: "y2", side: 1, size: 70, grid: { show: false } }] : []),
      ],
      scales: {
        x: categories ? { time: false, range: () => [0.4, x.length + 0.6] } : { time: true },
        y: { range: fromZero },
        y2: { range: fromZero },
      },
      legend: { live: true },
    };
    state.charts.push(new uPlot(opts, [x, ...series.map((s) => s.values)], el));
  }

  // --- live updates (server-sent events over fetch, so the token stays in a header) -----------
  async function startStream() {
    if (state.streamAbort) state.streamAbort.abort();
    const ctrl = new AbortController();
    state.streamAbort = ctrl;
    const live = document.getElementById("live");
    while (!ctrl.signal.aborted) {
      try {
        const r = await fetch("/api/v1/stream", { headers: { Authorization: `Bearer ${token()}` }, signal: ctrl.signal });
        if (!r.ok || !r.body) throw new Error(String(r.status));
        live.dataset.state = "on";
        const reader = r.body.getReader();
        const decoder = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
            if (data) onLive(JSON.parse(data));
          }
        }
      } catch (e) {
        if (ctrl.signal.aborted) return;
      }
      live.dataset.state = "off";
      await new Promise((res) => setTimeout(res, 3000));
    }
  }

  const FULL_REFRESH_MS = 60000;
  function onLive(msg) {
    state.live = msg;
    document.getElementById("live-at").textContent = bj(msg.at, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    applyLive();
    // the live cells change at once; charts and tables are redrawn at most once a minute
    if (Date.now() - state.renderedAt > FULL_REFRESH_MS && !document.getElementById("login")) render();
  }

  function applyLive() {
    const msg = state.live;
    if (!msg || !msg.enterprises) return;
    const by = Object.fromEntries(msg.enterprises.map((e) => [e.enterprise, e]));
    document.querySelectorAll("[data-co2]").forEach((el) => {
      const e = by[el.dataset.co2];
      if (e) flash(el, num(e.co2_location_t, 4));
    });
    document.querySelectorAll("[data-live-tce]").forEach((el) => {
      const e = by[el.dataset.liveTce];
      if (e) flash(el, num(e.tce, 4));
    });
    const total = (f) => msg.enterprises.reduce((a, e) => a + e[f], 0);
    document.querySelectorAll("[data-live-total]").forEach((el) => flash(el, num(total(el.dataset.liveTotal), 4)));
  }

  function flash(el, text) {
    if (el.textContent === text) return;
    el.textContent = text;
    el.classList.remove("flash");
    void el.offsetWidth;
    el.classList.add("flash");
  }

  // --- views --------------------------------------------------------------------------------
  function kpi(label, value, extra = "") {
    return `<div class="kpi"><div class="label">${esc(label)}</div><div class="value" ${extra}>${value}</div></div>`;
  }

  function nav() {
    const me = state.me;
    const links = [];
    if (me.role === "admin") links.push(["#/provinces", t("provinces")]);
    if (me.role === "province") links.push([`#/province/${me.scope}`, t("overview")]);
    if (me.role !== "operator") links.push(["#/enterprises", t("enterprises")]);
    links.push(["#/quality", t("quality")]);
    document.getElementById("nav").innerHTML = links.map(([h, l]) => `<a href="${h}">${esc(l)}</a>`).join("");
  }

  async function viewProvinces() {
    const body = await api("/energy?level=province&period=year");
    const rows = body.rows.map((r) => `<tr><td><a href="#/province/${esc(r.key)}">${esc(r.key)}</a></td>
      <td class="num">${num(r.tce > 0 ? r.co2_location_t / r.tce : null, 3)}</td><td class="num">${num(r.tce)}</td>
      <td class="num">${num(r.co2_location_t)}</td><td class="num">${num(r.co2_market_t)}</td></tr>`);
    main().innerHTML = `<h1>${t("provinces")} · ${body.rows[0] ? esc(body.rows[0].period) : ""}</h1>
      <div class="card"><table><thead><tr><th>${t("province")}</th><th>${t("co2_per_tce")}</th><th>${t("tce")}</th>
      <th>${t("co2_loc")}</th><th>${t("co2_mkt")}</th></tr></thead><tbody>${rows.join("") || `<tr><td colspan="5">${t("none")}</td></tr>`}</tbody></table></div>`;
  }

  async function viewProvince(code) {
    const ov = await api(`/provinces/${code}/overview`);
    const name = lang === "zh" ? ov.name : ov.name_en;
    const maxCo2 = Math.max(1e-9, ...ov.cities.map((c) => c.co2_location_t));
    const cities = ov.cities.map((c) => `<tr><td><a href="#/enterprises/${esc(c.city)}">${esc(c.city)}</a></td><td class="num">${c.enterprises}</td>
      <td class="num strong">${num(c.co2_per_tce, 3)}</td><td class="num">${pct(c.dual_control_share)}</td>
      <td class="num">${num(c.tce)}</td><td class="num">${num(c.co2_location_t)}
      <div class="bar" style="width:${(100 * c.co2_location_t) / maxCo2}%"></div></td><td class="num">${num(c.co2_market_t)}</td>
      <td class="num">${num(c.today_co2_t, 4)}</td><td class="num" data-city-green="${esc(c.city)}">${pct(c.green_power_share)}</td></tr>`);
    const targets = ov.targets.map((g) => `<tr data-target="${esc(g.indicator)}-${g.year}"><td>${esc(g.name)}</td><td>${g.year}</td>
      <td>${esc(t(`comparator_${g.comparator}`))} ${num(g.value, g.value % 1 ? 1 : 0)}${esc(g.unit === "1" ? "" : g.unit)}${g.base_year ? ` (${g.base_year})` : ""}</td>
      ${g.measured === null
        ? `<td class="muted" title="${esc(g.measured_note || "")}">${esc(t(`measured_${g.measured_status}`))}</td>`
        : `<td title="${esc([g.measured_scope, g.measured_note].filter(Boolean).join("\n"))}"><span class="strong" data-cell="measured">${num(g.measured)}${esc(g.unit === "1" ? "" : g.unit)}</span>
           <span class="muted small">${t("measured_monitored")}</span></td>`}
      <td class="muted" title="${esc(g.quote)}">${esc(g.document_title)}${g.document_status === "draft" ? ` (${t("status_draft")})` : ""}</td></tr>`);
    const monitored = ov.benchmarks.filter((b) => b.enterprises > 0 || b.enterprises_not_comparable > 0);
    const idle = ov.benchmarks.filter((b) => b.enterprises === 0 && !b.enterprises_not_comparable);
    const benchmarks = monitored.map((b) => `<tr data-bench="${esc(b.product)}.${esc(b.indicator)}"><td>${esc(b.name)} <span class="muted small">${esc(b.product)}.${esc(b.indicator)}</span></td>
      <td class="num" data-cell="enterprises">${b.enterprises}</td><td class="num" data-cell="output">${num(b.output)}${esc(unitOf(b.output_unit))}</td>
      <td class="num" data-cell="intensity">${num(b.intensity)}${esc(unitOf(b.unit))}</td>
      <td class="num">${b.benchmark === null ? `<span class="muted">${t("no_benchmark")}</span>` : num(b.benchmark, 0)}</td>
      <td class="num strong" data-cell="share">${pct(b.share_at_benchmark)}${b.share_at_benchmark === null ? "" : `<div class="bar" style="width:${100 * b.share_at_benchmark}%"></div>`}</td>
      <td class="num ${b.enterprises_worse_than_baseline ? "bad" : ""}" data-cell="baseline">${b.enterprises_worse_than_baseline ?? "—"}</td>
      <td class="num ${b.enterprises_worse_than_limit ? "bad" : ""}" data-cell="limit">${b.enterprises_worse_than_limit ?? "—"}</td>
      <td class="num ${b.enterprises_not_comparable ? "warn" : ""}" data-cell="not_comparable" title="${esc(b.not_comparable.map((x) => `${x.enterprise}: ${x.reason}`).join("\n"))}">${b.enterprises_not_comparable}</td></tr>`);
    const unlevelled = ov.products_without_levels.map((u) => `${esc(u.product)} ${num(u.output)}${esc(unitOf(u.output_unit))} (${u.enterprises})`).join(", ");
    const unscored = ov.outputs_not_scored.map((u) => `<span title="${esc(u.note)}">${esc(u.indicator ? `${u.product}.${u.indicator}` : u.product)} ${num(u.output)}${esc(unitOf(u.output_unit))} (${u.enterprises})</span>`).join(", ");
    const green = ov.green_power;
    main().innerHTML = `<h1>${esc(name || code)} · ${ov.year} <span class="muted small">${t("intensity_first")}</span></h1>
      <div class="kpis">
        ${kpi(t("co2_per_tce"), num(ov.totals.co2_per_tce, 3), 'class="value strong"')}
        ${kpi(t("tce"), num(ov.totals.tce))}
        ${kpi(t("co2_loc"), num(ov.totals.co2_location_t))}
        ${kpi(t("co2_mkt"), num(ov.totals.co2_market_t))}
        ${kpi(t("today_co2"), num(ov.totals.today_co2_t, 4), 'data-live-total="co2_location_t"')}
        ${kpi(t("today_tce"), num(ov.totals.today_tce, 4), 'data-live-total="tce"')}
        ${kpi(t("green_share_monitored"), pct(green.share), 'id="kpi-green"')}
        ${kpi(t("non_fossil_monitored"), pct(ov.non_fossil_monitored.share), 'id="kpi-non-fossil"')}
      </div>
      <div class="card"><h2>${t("city")}</h2><table><thead><tr><th>${t("city")}</th><th>${t("enterprises")}</th>
        <th>${t("co2_per_tce")}</th><th>${t("dual_share")}</th><th>${t("tce")}</th><th>${t("co2_loc")}</th>
        <th>${t("co2_mkt")}</th><th>${t("today_co2")}</th><th>${t("green_share")}</th></tr></thead><tbody>${cities.join("")}</tbody></table>
        <p class="muted small">${t("green_share")}: ${num(green.green_used_kwh, 0)} / ${num(green.electricity_used_kwh, 0)} kWh · ${t("green_rule")} ${t("no_certificates")}<br>
        ${t("non_fossil_monitored")}: ${t("non_fossil_note")}</p></div>
      <div class="card"><h2>${t("benchmarks")}</h2>${monitored.length ? `<table id="benchmarks"><thead><tr><th>${t("indicator")}</th><th>${t("enterprises")}</th>
        <th>${t("output")}</th><th>${t("weighted_intensity")}</th><th>${t("benchmark_level")}</th><th>${t("share_at_benchmark")}</th>
        <th>${t("worse_baseline")}</th><th>${t("worse_limit")}</th><th>${t("not_comparable_count")}</th></tr></thead><tbody>${benchmarks.join("")}</tbody></table>` : `<p class="muted">${t("no_products")}</p>`}
        <p class="muted small">${t("benchmarks_note")} ${t("comparable_rule")}${idle.length ? `<br>${t("no_output_for")}: ${idle.map((b) => esc(`${b.product}.${b.indicator}`)).join(", ")}` : ""}
        ${unlevelled ? `<br><span id="unlevelled">${t("unlevelled")}: ${unlevelled}</span>` : ""}
        ${unscored ? `<br><span id="unscored">${t("unscored")}: ${unscored}</span>` : ""}</p></div>
      <div class="grid2"><div class="card"><h2>${t("monthly")}</h2><div id="c-months"></div></div>
      <div class="card"><h2>${t("by_carrier")}</h2><div id="c-carriers"></div></div></div>
      <div class="card"><h2>${t("targets")}</h2><table><thead><tr><th>${t("indicator")}</th><th>${t("year")}</th><th>${t("target")}</th>
        <th>${t("measured")}</th><th>${t("source")}</th></tr></thead><tbody>${targets.join("") || `<tr><td colspan="5">${t("none")}</td></tr>`}</tbody></table></div>
      <p class="muted small">${t("method")}: ${esc(ov.method_version)} · ${t("factor_set")}: ${esc(ov.factor_set)}</p>`;
    // every month of the year, so the chart reads as progress through it
    const labels = Array.from({ length: 12 }, (_, i) => `${ov.year}-${String(i + 1).padStart(2, "0")}`);
    const byMonth = Object.fromEntries(ov.months.map((m) => [m.period, m]));
    const col = (f) => labels.map((l) => (byMonth[l] ? f(byMonth[l]) : 0));
    const short = labels.map((l) => l.slice(5));
    chart(document.getElementById("c-months"), short, [
      { label: t("co2_loc"), values: col((m) => m.co2_location_t) },
      { label: t("co2_mkt"), values: col((m) => m.co2_market_t), color: "#e8590c" },
    ], { bars: true });
    const carriers = [...new Set(ov.months.flatMap((m) => Object.keys(m.tce_by_carrier)))];
    chart(document.getElementById("c-carriers"), short, carriers.map((c) => ({ label: carrierName(c), values: col((m) => m.tce_by_carrier[c] || 0) })), { bars: true, stacked: true });
    applyLive();
  }

  async function viewEnterprises(city) {
    const ents = await api(city ? `/enterprises?city=${encodeURIComponent(city)}` : "/enterprises");
    const rows = ents.map((e) => `<tr><td><a href="#/enterprise/${esc(e.code)}">${esc(lang === "zh" ? e.name : e.name_en || e.name)}</a></td>
      <td>${esc(e.code)}</td><td>${esc(e.city)}</td><td>${esc(e.industry)}</td>
      <td class="num" data-co2="${esc(e.code)}">—</td><td class="num" data-live-tce="${esc(e.code)}">—</td></tr>`);
    main().innerHTML = `<h1>${t("enterprises")}${city ? ` · ${esc(city)}` : ""}</h1><div class="card"><table id="rows-table">
      <thead><tr><th>${t("enterprise")}</th><th>${t("code")}</th><th>${t("city")}</th><th>GB/T 4754</th><th>${t("today_co2")}</th><th>${t("today_tce")}</th></tr></thead>
      <tbody id="rows">${rows.join("") || `<tr><td colspan="6">${t("none")}</td></tr>`}</tbody></table></div>`;
    applyLive();
  }

  async function viewEnterprise(code) {
    const ov = await api(`/enterprises/${code}/overview`);
    const meters = await api(`/enterprises/${code}/meters`);
    const carriers = ov.carriers.map((c) => `<tr><td>${esc(carrierName(c.key))}</td><td class="num">${num(c.tce)}</td>
      <td class="num">${num(c.tce_dual_control)}</td><td class="num">${num(c.co2_location_t)}</td><td class="num">${num(c.co2_market_t)}</td></tr>`);
    const points = ov.points.map((p) => `<tr><td><a href="#" data-point="${esc(p.key)}">${esc(p.key)}</a></td><td class="num">${num(p.tce)}</td><td class="num">${num(p.co2_location_t)}</td>
      <td>${p.flags ? `<span class="tag warn">flags ${p.flags}</span>` : ""}</td></tr>`);
    const meterRows = meters.map((m) => `<tr><td>${esc(m.gateway)}</td><td>${esc(m.meter)}</td><td>${esc(m.model || "")}</td>
      <td><span class="tag ${m.state === "ok" ? "ok" : m.state ? "bad" : ""}">${esc(m.state || "—")}</span></td>
      <td>${bj(m.last_reading)}</td></tr>`);
    const levelValue = (v) => num(v, Math.abs(v) < 10 ? 2 : 0);
    const intensity = ov.intensity.map((c) => c.error
      ? `<tr data-intensity="${esc(c.product)}.${esc(c.indicator || "")}"><td>${esc(c.name || c.product)}</td><td class="num">${num(c.output)}${esc(unitOf(c.output_unit))}</td><td colspan="5" class="muted" data-cell="error">${esc(c.error)}</td></tr>`
      : c.status === "not_comparable"
      ? `<tr data-intensity="${esc(c.product)}.${esc(c.indicator)}"><td>${esc(c.name)} <span class="muted small">${esc(c.product)}.${esc(c.indicator)}</span></td>
      <td class="num">${num(c.output)}${esc(unitOf(c.output_unit))}</td>
      <td class="num muted" data-cell="value" title="${esc(c.energy_basis)}">—<div class="small">${esc(t("not_comparable"))}</div></td>
      <td colspan="3" class="warn" data-cell="reason">${esc(c.reason)}</td></tr>`
      : `<tr data-intensity="${esc(c.product)}.${esc(c.indicator)}"><td>${esc(c.name)} <span class="muted small">${esc(c.product)}.${esc(c.indicator)}</span>${c.note ? `<div class="muted small" data-cell="note">${esc(c.note)}</div>` : ""}</td>
      <td class="num">${num(c.output)}${esc(unitOf(c.output_unit))}</td>
      <td class="num strong" data-cell="value" title="${esc(c.energy_basis)}">${num(c.value, c.unit === "1" ? 3 : 1)}${esc(unitOf(c.unit))}<div class="muted small">${esc(t(`basis_${c.basis}`))}</div></td>
      <td>${esc(c.grade || "—")}</td>
      <td>${c.levels.map((l) => `<span class="nowrap">${esc(t(`level_${l.kind}`))} ${l.comparator} ${levelValue(l.value)} <span class="tag ${l.met ? "ok" : "bad"}">${l.met ? "✓" : "✗"}</span></span>`).join("<br>") || `<span class="muted">—</span>`}</td>
      <td class="bad">${c.alerts.map(esc).join("<br>")}</td></tr>`);
    const g = ov.green_power;
    const greenRows = [["el_import", g.import_kwh], ["el_export", g.export_kwh], ["el_generation", g.generation_kwh],
      ["el_renewable", g.renewable_generation_kwh], ["el_used", g.electricity_used_kwh], ["el_green", g.green_used_kwh]]
      .map(([k, v]) => `<tr><td>${t(k)}</td><td class="num" data-cell="${k}">${num(v, 0)}</td></tr>`).join("");
    main().innerHTML = `<h1>${esc(lang === "zh" ? ov.name : ov.name_en || ov.name)} <span class="muted small">${esc(ov.code)} · ${ov.year}</span></h1>
      <div class="kpis">
        ${kpi(t("co2_per_tce"), num(ov.totals.tce > 0 ? ov.totals.co2_location_t / ov.totals.tce : null, 3), 'class="value strong"')}
        ${kpi(t("tce"), num(ov.totals.tce))}
        ${kpi(t("tce_dual"), num(ov.totals.tce_dual_control))}
        ${kpi(t("co2_loc"), num(ov.totals.co2_location_t))}
        ${kpi(t("co2_mkt"), num(ov.totals.co2_market_t))}
        ${kpi(t("today_co2"), num(ov.today.co2_location_t, 4), `data-co2="${esc(ov.code)}"`)}
        ${kpi(t("today_tce"), num(ov.today.tce, 4), `data-live-tce="${esc(ov.code)}"`)}
        ${kpi(t("green_share"), pct(g.share), 'id="kpi-green"')}
      </div>
      <p class="actions">${t("report")}: <a class="button" href="#" data-report="csv">${t("csv")}</a>
        <a class="button" href="#" data-report="html">${t("print")}</a></p>
      <div class="grid2"><div class="card"><h2>${t("daily")}</h2><div id="c-days"></div></div>
      <div class="card"><h2>${t("today_15")}</h2><div id="c-today"></div></div></div>
      <div class="grid2"><div class="card"><h2>${t("carriers")}</h2><table><thead><tr><th>${t("carriers")}</th><th>${t("tce")}</th>
        <th>${t("tce_dual")}</th><th>${t("co2_loc")}</th><th>${t("co2_mkt")}</th></tr></thead><tbody>${carriers.join("")}</tbody></table></div>
      <div class="card"><h2>${t("points")}</h2><table><thead><tr><th>${t("point")}</th><th>${t("tce")}</th><th>${t("co2_loc")}</th><th></th></tr></thead>
        <tbody>${points.join("")}</tbody></table></div></div>
      <div class="card" id="point-card" hidden><h2 id="point-title"></h2><div id="c-point"></div></div>
      <div class="card"><h2>${t("product_intensity")}</h2>${intensity.length ? `<table id="intensity"><thead><tr><th>${t("indicator")}</th><th>${t("output")}</th><th>${t("intensity_value")}</th><th>${t("grade")}</th>
        <th>${t("levels")}</th><th>${t("alerts")}</th></tr></thead><tbody>${intensity.join("")}</tbody></table>` : `<p class="muted">${t("no_products")}</p>`}</div>
      <div class="grid2"><div class="card"><h2>${t("green_power")}</h2><table id="green"><tbody>${greenRows}
        <tr><td class="strong">${t("green_share")}</td><td class="num strong" data-cell="share">${pct(g.share)}</td></tr></tbody></table>
        <p class="muted small">${t("green_rule")} ${t("no_certificates")}</p></div>
      <div class="card"><h2>${t("meter")}</h2><table><thead><tr><th>${t("gateway")}</th><th>${t("meter")}</th><th></th><th>${t("state")}</th>
        <th>${t("last_seen")}</th></tr></thead><tbody>${meterRows.join("")}</tbody></table></div></div>
      <p class="muted small">${t("method")}: ${esc(ov.method_version)} · ${t("factor_set")}: ${esc(ov.factor_set)}</p>`;
    chart(document.getElementById("c-days"), ov.days.map((d) => d.period.slice(5)), [
      { label: t("tce"), values: ov.days.map((d) => d.tce), bars: true },
      { label: t("co2_loc"), values: ov.days.map((d) => d.co2_location_t), scale: "y2", color: "#e8590c" },
    ], { every: Math.max(1, Math.ceil(ov.days.length / 12)) });
    // the 96 quarter hours of today (Beijing time), empty ones still to come
    const slots = Array.from({ length: 96 }, (_, i) => `${String(Math.floor(i / 4)).padStart(2, "0")}:${String((i % 4) * 15).padStart(2, "0")}`);
    const byQuarter = Object.fromEntries(ov.today_15min.map((d) => [d.period.slice(11, 16), d.co2_location_t]));
    chart(document.getElementById("c-today"), slots, [
      { label: t("co2_loc"), values: slots.map((q) => (q in byQuarter ? byQuarter[q] : null)), color: "#e8590c" },
    ], { bars: true, every: 12 });
    document.querySelectorAll("[data-point]").forEach((a) => a.addEventListener("click", (ev) => {
      ev.preventDefault();
      showPoint(code, a.dataset.point);
    }));
    document.querySelectorAll("[data-report]").forEach((a) => a.addEventListener("click", (ev) => {
      ev.preventDefault();
      downloadReport(code, ov.year, a.dataset.report);
    }));
    applyLive();
  }

  // one point's 15-minute intervals over the last two days, anomalies marked
  async function showPoint(code, point) {
    const start = new Date(Date.now() - 2 * 86400000).toISOString();
    const body = await api(`/enterprises/${code}/intervals?point=${encodeURIComponent(point)}&start=${encodeURIComponent(start)}&end=${encodeURIComponent(new Date().toISOString())}`);
    const card = document.getElementById("point-card");
    card.hidden = false;
    const flagged = body.intervals.filter((i) => i.flags & 15).length;
    document.getElementById("point-title").textContent =
      `${point} · ${t("intervals_48h")} (${body.unit})${flagged ? ` · ${t("kind_counter_anomaly")}: ${flagged}` : ""}`;
    const el = document.getElementById("c-point");
    el.innerHTML = "";
    const labels = body.intervals.map((i) => bj(i.bucket, { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" }));
    chart(el, labels, [
      { label: `${t("quantity")} ${body.unit}`, values: body.intervals.map((i) => i.quantity), bars: true },
      { label: t("co2_loc"), values: body.intervals.map((i) => i.co2_location_t), scale: "y2", color: "#e8590c" },
    ], { every: 16 });
    card.scrollIntoView({ behavior: "smooth", block: "nearest" });
  }

  async function downloadReport(code, year, format) {
    const r = await fetch(`/api/v1/enterprises/${code}/report?year=${year}&format=${format}&lang=${lang}`, { headers: { Authorization: `Bearer ${token()}` } });
    if (!r.ok) return alert(`${r.status}`);
    const blob = await r.blob();
    const url = URL.createObjectURL(blob);
    if (format === "html") {
      window.open(url, "_blank");
    } else {
      const a = document.createElement("a");
      a.href = url;
      a.download = `carbon-report-${code}-${year}.csv`;
      a.click();
    }
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  async function viewQuality() {
    const [alerts, fleet, gateways] = await Promise.all([api("/alerts"), api("/fleet"), api("/gateways")]);
    const rows = alerts.alerts.map((a) => `<tr class="${a.severity}"><td><span class="tag ${a.severity === "critical" ? "bad" : "warn"}">${esc(t(`kind_${a.kind}`))}</span></td>
      <td>${esc(a.name)}</td><td>${esc(a.gateway)}</td><td>${esc(a.meter || "")}</td><td>${esc(a.point || "")}</td>
      <td>${bj(a.since)}</td><td>${esc(a.detail || "")}</td></tr>`);
    const gw = gateways.map((g) => `<tr><td>${esc(g.name)}</td><td>${esc(g.gateway)}</td>
      <td><span class="tag ${g.stale ? "bad" : "ok"}">${esc(g.state || "—")}${g.stale ? ` · ${t("stale")}` : ""}</span></td>
      <td>${bj(g.last_seen)}</td><td class="num">${g.meters}</td><td class="num">${g.meters_not_ok}</td></tr>`);
    const counts = Object.entries(alerts.counts).map(([k, n]) => kpi(t(`kind_${k}`), n)).join("");
    main().innerHTML = `<h1>${t("quality")}</h1>
      <div class="kpis">${kpi(t("enterprises"), fleet.enterprises)}${kpi(t("gateways_online"), `${fleet.gateways_online} / ${fleet.gateways}`)}
        ${kpi(t("stale"), fleet.gateways_stale)}${kpi(t("meters_down"), fleet.meters_by_state.down)}${kpi(t("meters_degraded"), fleet.meters_by_state.degraded)}${counts}</div>
      <div class="card"><h2>${t("alerts")}</h2><table id="alerts"><thead><tr><th>${t("kind")}</th><th>${t("enterprise")}</th><th>${t("gateway")}</th>
        <th>${t("meter")}</th><th>${t("point")}</th><th>${t("since")}</th><th>${t("detail")}</th></tr></thead>
        <tbody>${rows.join("") || `<tr><td colspan="7">${t("none")}</td></tr>`}</tbody></table></div>
      <div class="card"><h2>${t("gateways")}</h2><table><thead><tr><th>${t("enterprise")}</th><th>${t("gateway")}</th><th>${t("state")}</th>
        <th>${t("last_seen")}</th><th>${t("meter")}</th><th>${t("meters_down")}</th></tr></thead><tbody>${gw.join("")}</tbody></table></div>`;
  }

  // --- routing ------------------------------------------------------------------------------
  async function render() {
    state.renderedAt = Date.now();
    state.charts.forEach((c) => c.destroy());
    state.charts = [];
    translateStatic();
    if (!token()) return renderLogin();
    try {
      if (!state.me) {
        state.me = await api("/me");
        startStream();
      }
      nav();
      const [, view, arg] = (location.hash || "#/").split("/");
      const me = state.me;
      if (view === "province") return await viewProvince(arg);
      if (view === "provinces") return await viewProvinces();
      if (view === "enterprise") return await viewEnterprise(arg);
      if (view === "enterprises") return await viewEnterprises(arg);
      if (view === "quality") return await viewQuality();
      if (me.role === "enterprise") return await viewEnterprise(me.scope);
      if (me.role === "province") return await viewProvince(me.scope);
      if (me.role === "operator") return await viewQuality();
      return await viewEnterprises();
    } catch (e) {
      if (token()) main().innerHTML = `<p class="error">${esc(e.message)}</p>`;
    }
  }

  function renderLogin(message) {
    translateStatic();
    document.getElementById("nav").innerHTML = "";
    main().innerHTML = document.getElementById("login-tpl").innerHTML;
    translateStatic();
    if (message) document.getElementById("login-error").textContent = message;
    document.getElementById("login").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
      const r = await fetch("/api/v1/me", { headers: { Authorization: `Bearer ${token()}` } });
      if (!r.ok) {
        sessionStorage.removeItem(TOKEN_KEY);
        document.getElementById("login-error").textContent = t("bad_token");
        return;
      }
      render();
    });
  }

  // a ready link (carbonwatch demo) carries the token in the fragment: keep it, then drop it from the address bar
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", `${location.pathname}#/`);
  }
  document.getElementById("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem(LANG_KEY, lang);
    render();
  });
  document.getElementById("logout").addEventListener("click", logout);
  window.addEventListener("hashchange", render);
  render();
})();
