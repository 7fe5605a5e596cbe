// knappval's dashboard: reads /api/v1/stats, /api/v1/stats/menu and /api/v1/functions and draws SVG charts,
// each followed by a table of the same figures (screen readers, copying). No library, no build step: the daemon
// serves this file as it is. It writes nothing to the console; problems show in the status line.
"use strict";

(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const TOKEN_KEY = "knappval.apiToken";
  /** Same weekdays before the shown day that make its hourly average. */
  const SAME_WEEKDAYS = 4;
  /** Weeks the staffing heat map covers, ending with the shown day. */
  const HEAT_WEEKS = 8;
  const REFRESH_MS = 60000;

  const WEEKDAYS = [
    { key: "mon", sv: "mån", en: "Mon", svPlural: "måndagar", enPlural: "Mondays" },
    { key: "tue", sv: "tis", en: "Tue", svPlural: "tisdagar", enPlural: "Tuesdays" },
    { key: "wed", sv: "ons", en: "Wed", svPlural: "onsdagar", enPlural: "Wednesdays" },
    { key: "thu", sv: "tor", en: "Thu", svPlural: "torsdagar", enPlural: "Thursdays" },
    { key: "fri", sv: "fre", en: "Fri", svPlural: "fredagar", enPlural: "Fridays" },
    { key: "sat", sv: "lör", en: "Sat", svPlural: "lördagar", enPlural: "Saturdays" },
    { key: "sun", sv: "sön", en: "Sun", svPlural: "söndagar", enPlural: "Sundays" },
  ];
  const HOURS = Array.from({ length: 24 }, (_, h) => String(h).padStart(2, "0"));
  const NO_CHOICE = "Inget val / No choice";

  const numberFormat = new Intl.NumberFormat("sv-SE", { maximumFractionDigits: 1 });
  const fmt = (n) => numberFormat.format(n);
  const pct = (part, whole) => (whole > 0 ? Math.round((100 * part) / whole) + " %" : "–");
  const seconds = (ms) => (ms === null || ms === undefined ? "–" : fmt(ms / 1000) + " s");

  // ---- calendar days as "YYYY-MM-DD", counted in UTC so that the browser's own DST never shifts them ----
  function addDays(day, n) {
    const date = new Date(day + "T00:00:00Z");
    date.setUTCDate(date.getUTCDate() + n);
    return date.toISOString().slice(0, 10);
  }
  /** 0 = Monday, as the API's weekday_hour keys. */
  function weekdayOf(day) {
    return (new Date(day + "T00:00:00Z").getUTCDay() + 6) % 7;
  }
  const isDay = (text) => /^\d{4}-\d{2}-\d{2}$/.test(text || "") && !isNaN(Date.parse(text + "T00:00:00Z"));

  // ---- DOM helpers: text only goes in through textContent ----
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "text") node.textContent = value;
      else node.setAttribute(name, value);
    }
    for (const child of children || []) node.append(child);
    return node;
  }
  function svgEl(tag, attrs, parent) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "text") node.textContent = value;
      else node.setAttribute(name, String(value));
    }
    if (parent) parent.append(node);
    return node;
  }
  const byId = (id) => document.getElementById(id);
  function replace(id, ...nodes) {
    byId(id).replaceChildren(...nodes);
  }

  /** A table: `head` is the header row, each row's first cell is its row header. */
  function table(caption, head, rows, className) {
    const thead = el("thead", {}, [el("tr", {}, head.map((h) => el("th", { scope: "col", text: h })))]);
    const tbody = el(
      "tbody",
      {},
      rows.map((row) =>
        el("tr", {}, row.map((cell, i) => (i === 0 ? el("th", { scope: "row", text: cell }) : el("td", { text: cell })))),
      ),
    );
    return el("table", className ? { class: className } : {}, [el("caption", { text: caption }), thead, tbody]);
  }

  /** An SVG that announces itself as one image with a title and a description. */
  function chartSvg(id, width, height, title, description) {
    const svg = svgEl("svg", {
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-labelledby": `${id}-title ${id}-desc`,
      class: "chart-svg",
    });
    svgEl("title", { id: `${id}-title`, text: title }, svg);
    svgEl("desc", { id: `${id}-desc`, text: description }, svg);
    return svg;
  }

  /** A round upper bound for an axis, and its step. */
  function niceScale(max) {
    if (max <= 0) return { top: 1, step: 1 };
    const raw = max / 4;
    const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
    const rounded = Math.max(1, step);
    return { top: Math.ceil(max / rounded) * rounded, step: rounded };
  }

  /**
   * Horizontal bars, one per row: its label left, the bar, its value as text right of the bar.
   * rows: [{label, value, text}]; max: what a full bar is worth.
   */
  function hbarChart(id, title, description, rows, max, barClass) {
    const labelWidth = 210;
    const barWidth = 230;
    const rowHeight = 30;
    const height = Math.max(1, rows.length) * rowHeight + 8;
    const svg = chartSvg(id, labelWidth + barWidth + 130, height, title, description);
    rows.forEach((row, i) => {
      const y = 4 + i * rowHeight;
      // The whole name is in the table under the chart.
      const label = row.label.length > 26 ? row.label.slice(0, 25) + "…" : row.label;
      svgEl("text", { x: labelWidth - 8, y: y + 19, "text-anchor": "end", class: "label", text: label }, svg);
      const width = max > 0 ? Math.max(row.value > 0 ? 2 : 0, (barWidth * row.value) / max) : 0;
      svgEl("rect", { x: labelWidth, y: y + 4, width: width.toFixed(1), height: rowHeight - 10, class: barClass }, svg);
      svgEl("text", { x: labelWidth + width + 6, y: y + 19, class: "value", text: row.text }, svg);
    });
    if (rows.length === 0) {
      svgEl("text", { x: 8, y: 24, class: "label", text: "Inga samtal / No calls" }, svg);
    }
    return svg;
  }

  // ---- the API, with the bearer token when the daemon asks for one ----
  let tokenPrompt = null;

  function storedToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch (_) {
      return null;
    }
  }

  /** Shows the token form once, however many requests were refused at the same time. */
  function askForToken(previousWasWrong) {
    if (tokenPrompt) return tokenPrompt;
    tokenPrompt = new Promise((resolve) => {
      const form = byId("token-form");
      const input = byId("token");
      form.classList.toggle("wrong", previousWasWrong);
      if (previousWasWrong) {
        byId("token-message").textContent =
          "Den token fungerade inte. Försök igen. / That token was not accepted. Try again.";
      }
      form.hidden = false;
      setStatus("token", "Väntar på token … / Waiting for the token …");
      input.focus();
      form.onsubmit = (event) => {
        event.preventDefault();
        const token = input.value.trim();
        if (!token) return;
        try {
          sessionStorage.setItem(TOKEN_KEY, token);
        } catch (_) {
          // Without storage the token lives as long as this page.
          memoryToken = token;
        }
        input.value = "";
        form.hidden = true;
        tokenPrompt = null;
        resolve();
      };
    });
    return tokenPrompt;
  }
  let memoryToken = null;

  async function api(path) {
    for (;;) {
      const token = storedToken() || memoryToken;
      const headers = { Accept: "application/json" };
      if (token) headers.Authorization = "Bearer " + token;
      const response = await fetch(path, { headers, cache: "no-store" });
      if (response.status === 401) {
        if (token) {
          try {
            sessionStorage.removeItem(TOKEN_KEY);
          } catch (_) {
            // nothing stored, nothing to forget
          }
          memoryToken = null;
        }
        await askForToken(Boolean(token));
        continue;
      }
      if (!response.ok) {
        let detail = "";
        try {
          const body = await response.json();
          detail = [body.error, body.help].filter(Boolean).join(" – ");
        } catch (_) {
          detail = response.statusText;
        }
        throw new Error(`${path.split("?")[0]}: HTTP ${response.status} ${detail}`);
      }
      return response.json();
    }
  }

  const q = (params) =>
    Object.entries(params)
      .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
      .join("&");

  /** Today in the daemon's time zone (not the browser's): the key of the day bucket that holds "now". */
  async function serverToday() {
    const now = new Date();
    const before = new Date(now.getTime() - 1000);
    const answer = await api(`/api/v1/stats?${q({ from: before.toISOString(), to: now.toISOString(), group_by: "day" })}`);
    const rows = answer.rows || [];
    return rows.length ? rows[rows.length - 1].key.slice(0, 10) : now.toISOString().slice(0, 10);
  }

  function setStatus(state, text) {
    const status = byId("status");
    status.dataset.state = state;
    status.textContent = text;
  }

  // ---- the sections ----

  // Queue figures are shown once some call in the period waited in a queue.
  const hasQueues = (rows) => rows.some((row) => (row.queued || 0) > 0);
  const serviceLevelText = (share) => (share === null || share === undefined ? "–" : Math.round(100 * share) + " %");

  function renderSummary(functionRows, period, serviceLevelSeconds) {
    const sum = (field) => functionRows.reduce((total, row) => total + (row[field] || 0), 0);
    const calls = sum("calls");
    const tiles = [
      ["Samtal / Calls", fmt(calls), ""],
      ["Kopplade / Transferred", fmt(sum("transferred")), pct(sum("transferred"), calls)],
      ["Avbrutna / Abandoned", fmt(sum("abandoned")), pct(sum("abandoned"), calls)],
      ["Inget val, tidsgräns / No choice, timed out", fmt(sum("timeout")), pct(sum("timeout"), calls)],
      ["Misslyckade / Failed", fmt(sum("failed")), pct(sum("failed"), calls)],
    ];
    if (hasQueues(functionRows)) {
      const queued = sum("queued");
      // Each row's share times its queued calls is its count answered in time; their sum over all queued calls
      // is the period's service level.
      const inTime = functionRows.reduce((total, row) => total + (row.service_level || 0) * (row.queued || 0), 0);
      tiles.push(
        ["Besvarade i kö / Answered from a queue", fmt(sum("answered")), pct(sum("answered"), queued)],
        [`Servicenivå, svar inom ${serviceLevelSeconds} s / Service level, answered within ${serviceLevelSeconds} s`,
          serviceLevelText(inTime / queued), `${fmt(queued)} i kö / queued`],
      );
    }
    replace(
      "summary",
      ...tiles.map(([label, value, share]) =>
        el("div", { class: "tile" }, [
          el("dt", { text: label }),
          el("dd", {}, [el("span", { class: "big", text: value }), el("span", { class: "share", text: share })]),
        ]),
      ),
    );
    byId("summary-note").textContent = periodText(period);
  }

  function periodText(period) {
    return period.days === 1
      ? `${period.last}`
      : `${period.first} – ${period.last} (${period.days} dagar / days)`;
  }

  function renderHourly(hourRows, day) {
    const weekday = WEEKDAYS[weekdayOf(day)];
    const earlier = Array.from({ length: SAME_WEEKDAYS }, (_, i) => addDays(day, -7 * (i + 1)));
    const today = HOURS.map(() => 0);
    const abandoned = HOURS.map(() => 0);
    const earlierByDay = new Map(earlier.map((d) => [d, HOURS.map(() => 0)]));
    for (const row of hourRows) {
      // The key is the hour's local start with its offset: its date and hour are the zone's own. A 25-hour day
      // has two 02 rows; both count towards 02.
      const date = row.key.slice(0, 10);
      const hour = Number(row.key.slice(11, 13));
      if (date === day) {
        today[hour] += row.calls;
        abandoned[hour] += row.abandoned;
      } else if (earlierByDay.has(date)) {
        earlierByDay.get(date)[hour] += row.calls;
      }
    }
    // A same weekday without a single call (before knappval ran, or closed) would only drag the average down.
    const counted = [...earlierByDay.values()].filter((hours) => hours.some((n) => n > 0));
    const average = counted.length
      ? HOURS.map((_, h) => counted.reduce((total, hours) => total + hours[h], 0) / counted.length)
      : null;
    const averageLabel = counted.length
      ? `Snitt, ${counted.length} tidigare ${weekday.svPlural} / Average, ${counted.length} previous ${weekday.enPlural}`
      : `Snitt: inga tidigare ${weekday.svPlural} med samtal / Average: no previous ${weekday.enPlural} with calls`;
    const dayLabel = `${day} (${weekday.sv} / ${weekday.en})`;
    byId("hourly-note").textContent =
      `${dayLabel}. Staplar: dagen; linje: snittet för samma veckodag. / Bars: the day; line: the same weekday's average.`;

    const width = 900;
    const height = 280;
    const left = 44;
    const bottom = 34;
    const top = 14;
    const plotWidth = width - left - 10;
    const plotHeight = height - top - bottom;
    const scale = niceScale(Math.max(...today, ...(average || [0])));
    const y = (v) => top + plotHeight - (plotHeight * v) / scale.top;
    const slot = plotWidth / 24;
    const svg = chartSvg(
      "hourly",
      width,
      height,
      `Samtal per timme ${day} mot snittet / Calls per hour on ${day} against the average`,
      "Samma siffror står i tabellen under diagrammet. / The same figures are in the table below the chart.",
    );
    for (let v = 0; v <= scale.top + 1e-9; v += scale.step) {
      svgEl("line", { x1: left, x2: width - 10, y1: y(v), y2: y(v), class: "grid" }, svg);
      svgEl("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", class: "tick", text: fmt(v) }, svg);
    }
    today.forEach((n, h) => {
      const barHeight = (plotHeight * n) / scale.top;
      svgEl("rect", { x: (left + h * slot + 4).toFixed(1), y: y(n).toFixed(1), width: (slot - 8).toFixed(1),
        height: barHeight.toFixed(1), class: "bar-today" }, svg);
      svgEl("text", { x: (left + h * slot + slot / 2).toFixed(1), y: height - bottom + 16, "text-anchor": "middle",
        class: "tick", text: HOURS[h] }, svg);
    });
    if (average) {
      const points = average.map((v, h) => `${(left + h * slot + slot / 2).toFixed(1)},${y(v).toFixed(1)}`);
      svgEl("polyline", { points: points.join(" "), class: "line-average" }, svg);
      average.forEach((v, h) => {
        svgEl("circle", { cx: (left + h * slot + slot / 2).toFixed(1), cy: y(v).toFixed(1), r: 3, class: "dot-average" }, svg);
      });
    }
    const legend = el("ul", { class: "legend" }, [
      el("li", {}, [el("span", { class: "key key-today", "aria-hidden": "true" }), document.createTextNode(dayLabel)]),
      el("li", {}, [el("span", { class: "key key-average", "aria-hidden": "true" }), document.createTextNode(averageLabel)]),
    ]);
    replace("hourly-chart", svg, legend);

    const rows = [
      [`Dagen / The day ${day}`, ...today.map(fmt)],
      [averageLabel, ...(average ? average.map(fmt) : HOURS.map(() => "–"))],
      ["Avbrutna / Abandoned", ...abandoned.map(fmt)],
    ];
    replace(
      "hourly-table",
      table(`Samtal per timme ${day} / Calls per hour ${day}`, ["Timme / Hour", ...HOURS], rows, "hourly"),
    );
  }

  /** Every named function (none of its calls included as zero), ids no longer in the menu, then "no choice". */
  function functionList(functionRows, names) {
    const byKey = new Map(functionRows.map((row) => [row.key, row]));
    const empty = { calls: 0, transferred: 0, abandoned: 0, timeout: 0, failed: 0, menu_time_avg_ms: null, menu_time_p90_ms: null };
    const list = names.functions.map((f) => ({ id: f.id, label: f.name, row: byKey.get(f.id) || empty }));
    for (const row of functionRows) {
      if (row.key !== null && !names.functions.some((f) => f.id === row.key)) {
        list.push({ id: row.key, label: row.key, row });
      }
    }
    list.sort((a, b) => b.row.calls - a.row.calls || a.label.localeCompare(b.label, "sv"));
    if (byKey.has(null)) list.push({ id: null, label: NO_CHOICE, row: byKey.get(null) });
    return list;
  }

  function renderFunctions(functionRows, names, period, serviceLevelSeconds) {
    const list = functionList(functionRows, names);
    byId("functions-note").textContent = periodText(period);
    const max = Math.max(0, ...list.map((f) => f.row.calls));
    replace(
      "functions-chart",
      hbarChart(
        "functions",
        "Samtal per funktion / Calls per function",
        "Staplarnas värden står bredvid dem och i tabellen nedan. / Each bar's value is beside it and in the table below.",
        list.map((f) => ({ label: f.label, value: f.row.calls, text: fmt(f.row.calls) })),
        max,
        "bar-function",
      ),
    );
    replace(
      "abandoned-chart",
      hbarChart(
        "abandoned",
        "Andel avbrutna per funktion / Abandoned share per function",
        "Andelen står bredvid varje stapel och i tabellen nedan. / The share is beside each bar and in the table below.",
        list
          .filter((f) => f.row.calls > 0)
          .map((f) => ({
            label: f.label,
            value: f.row.abandoned / f.row.calls,
            text: `${pct(f.row.abandoned, f.row.calls)} (${fmt(f.row.abandoned)} av/of ${fmt(f.row.calls)})`,
          })),
        1,
        "bar-abandoned",
      ),
    );
    const queues = hasQueues(functionRows);
    const head = [
      "Funktion / Function",
      "Samtal / Calls",
      "Kopplade / Transferred",
      "Avbrutna / Abandoned",
      "Andel avbrutna / Abandoned share",
      "Tidsgräns / Timed out",
      "Misslyckade / Failed",
      "Menytid snitt / Menu time avg",
      "Menytid p90 / Menu time p90",
    ];
    if (queues) {
      head.push("I kö / Queued", "Besvarade / Answered", "Snitt väntetid till svar / ASA",
        `Servicenivå ≤ ${serviceLevelSeconds} s / Service level`);
    }
    const rows = list.map((f) => {
      const r = f.row;
      const cells = [f.label, fmt(r.calls), fmt(r.transferred), fmt(r.abandoned), pct(r.abandoned, r.calls),
        fmt(r.timeout), fmt(r.failed), seconds(r.menu_time_avg_ms), seconds(r.menu_time_p90_ms)];
      if (queues) {
        cells.push(fmt(r.queued || 0), fmt(r.answered || 0), seconds(r.asa_ms), serviceLevelText(r.service_level));
      }
      return cells;
    });
    replace(
      "functions-table",
      table(`Samtal per funktion, ${periodText(period)} / Calls per function`, head, rows, "functions"),
    );
  }

  function renderFunnel(funnel, period) {
    const sections = (funnel.nodes || []).map((node) => {
      const menuLabel = node.menu === "root" ? "Huvudmenyn / Main menu (root)" : `Meny / Menu "${node.menu}"`;
      const options = Object.keys(node.options).sort();
      const rows = [
        { label: "Nådde menyn / Reached", value: node.reached },
        ...options.map((digit) => ({ label: `Tryckte ${digit} / Pressed ${digit}`, value: node.options[digit] })),
        { label: "Ogiltiga val / Invalid", value: node.invalid },
        { label: "Tidsgränser / Timeouts", value: node.timeouts },
        { label: "Lade på här / Hung up here", value: node.hangups },
      ].map((r) => ({ ...r, text: `${fmt(r.value)} (${pct(r.value, node.reached)})` }));
      const id = "funnel-" + node.menu.replace(/[^A-Za-z0-9_-]/g, "_");
      const chart = hbarChart(
        id,
        `Menytratten, ${menuLabel}`,
        "Antal och andel av dem som nådde menyn; samma siffror i tabellen. / Count and share of those who reached the menu; same figures in the table.",
        rows,
        Math.max(node.reached, ...rows.map((r) => r.value)),
        "bar-funnel",
      );
      const numbers = table(
        `${menuLabel}, ${periodText(period)}`,
        ["Steg / Step", "Antal / Count", "Andel / Share"],
        rows.map((r) => [r.label, fmt(r.value), pct(r.value, node.reached)]),
        "funnel",
      );
      return el("div", { class: "funnel-node" }, [el("h3", { text: menuLabel }), el("div", { class: "chart" }, [chart]), numbers]);
    });
    if (sections.length === 0) sections.push(el("p", { text: "Ingen har nått menyn under perioden. / Nobody reached the menu in the period." }));
    replace("funnel", ...sections);
  }

  function renderHeatmap(rows, first, last) {
    const weeks = HEAT_WEEKS;
    const perCell = new Map(rows.map((row) => [row.key, row.calls / weeks]));
    const max = Math.max(0, ...perCell.values());
    byId("heatmap-note").textContent =
      `Snitt antal samtal per timme och vecka, ${first} – ${last} (${weeks} veckor). Mörkare = fler. ` +
      `/ Average calls per hour and week over ${weeks} weeks. Darker = more.`;
    const head = el("tr", {}, [
      el("th", { scope: "col", text: "Dag / Day" }),
      ...HOURS.map((h) => el("th", { scope: "col", text: h })),
    ]);
    const body = WEEKDAYS.map((weekday) =>
      el("tr", {}, [
        el("th", { scope: "row", text: `${weekday.sv} / ${weekday.en}` }),
        ...HOURS.map((h) => {
          const value = perCell.get(`${weekday.key} ${h}`) || 0;
          const level = value === 0 || max === 0 ? 0 : Math.max(1, Math.ceil((6 * value) / max));
          return el("td", { class: `heat heat-${level}`, text: fmt(value) });
        }),
      ]),
    );
    const caption = el("caption", { text: `Samtal per veckodag och timme / Calls per weekday and hour (${first} – ${last})` });
    replace("heatmap", el("table", { class: "heatmap" }, [caption, el("thead", {}, [head]), el("tbody", {}, body)]));
  }

  // ---- loading ----

  let refreshTimer = null;

  async function load(day, periodDays, isToday) {
    clearTimeout(refreshTimer);
    setStatus("loading", "Hämtar … / Loading …");
    const next = addDays(day, 1);
    const period = { days: periodDays, first: addDays(day, 1 - periodDays), last: day };
    const heatFirst = addDays(day, 1 - 7 * HEAT_WEEKS);
    const [names, hours, functions, funnel, heat] = await Promise.all([
      api("/api/v1/functions"),
      api(`/api/v1/stats?${q({ from: addDays(day, -7 * SAME_WEEKDAYS), to: next, group_by: "hour" })}`),
      api(`/api/v1/stats?${q({ from: period.first, to: next, group_by: "function" })}`),
      api(`/api/v1/stats/menu?${q({ from: period.first, to: next })}`),
      api(`/api/v1/stats?${q({ from: heatFirst, to: next, group_by: "weekday_hour" })}`),
    ]);
    byId("menu-name").textContent = names.menu ? `– ${names.menu}` : "";
    renderSummary(functions.rows, period, functions.service_level_seconds);
    renderHourly(hours.rows, day);
    renderFunctions(functions.rows, names, period, functions.service_level_seconds);
    renderFunnel(funnel, period);
    renderHeatmap(heat.rows, heatFirst, day);
    byId("api-link").setAttribute("href", `/api/v1/stats?${q({ from: day, to: next, group_by: "hour" })}`);
    const time = new Date().toLocaleTimeString("sv-SE", { hour: "2-digit", minute: "2-digit" });
    setStatus("ready", `Uppdaterad ${time} / Updated ${time}` + (isToday ? " · uppdateras varje minut / refreshes every minute" : ""));
    if (isToday) refreshTimer = setTimeout(() => start(), REFRESH_MS);
  }

  async function start() {
    try {
      const params = new URLSearchParams(location.search);
      const today = await serverToday();
      const day = isDay(params.get("day")) ? params.get("day") : today;
      const periodDays = ["1", "7", "28"].includes(params.get("period")) ? Number(params.get("period")) : 7;
      byId("day").value = day;
      byId("period").value = String(periodDays);
      await load(day, periodDays, day === today);
    } catch (error) {
      setStatus("error", `Kunde inte hämta statistiken / Could not load the statistics: ${error.message}`);
    }
  }

  byId("controls").addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams({ day: byId("day").value, period: byId("period").value });
    history.replaceState(null, "", `?${params}`);
    start();
  });
  start();
})();
