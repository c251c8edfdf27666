// The explorer page: a read key kept in sessionStorage (this tab only), filters, cursor pages, the live
// tail and the chart. No framework; every text from the API is set with textContent, never parsed as HTML
// (the page's CSP also requires Trusted Types, so an HTML sink would throw).

import { ApiError, getJson } from "./api.js";
import { chooseInterval, drawChart, fillTable, MAX_BUCKETS, total } from "./chart.js";
import { LiveTail } from "./live.js";

const KEY_ITEM = "activity-service.explorer.key";
const LIVE_ROWS = 100; // the live list keeps this many, newest first
const DAY_MS = 86_400_000;

const $ = (id) => document.getElementById(id);
const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
const timeFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
  fractionalSecondDigits: 3, hourCycle: "h23",
});
const shortFormat = new Intl.DateTimeFormat(undefined, {
  month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
});
const number = new Intl.NumberFormat();
const formatTime = (iso) => timeFormat.format(new Date(iso));
const formatShort = (iso) => shortFormat.format(new Date(iso));

const state = {
  key: sessionStorage.getItem(KEY_ITEM),
  filters: null,
  cursors: [""], // the cursor of every page up to the one shown: Previous pops, Next pushes
  nextCursor: null,
  freshUntil: null,
  lastStats: null, // redrawn when the chart's width changes
  live: null,
  requests: { list: null, chart: null },
  errors: new Map(),
};

// --- errors: one message per part of the page, announced by the alert region ---------------------------

function showError(part, error) {
  if (error === null) state.errors.delete(part);
  else state.errors.set(part, error);
  const region = $("errors");
  region.replaceChildren(
    ...[...state.errors].map(([where, problem]) => {
      const box = document.createElement("div");
      box.className = "error";
      const heading = document.createElement("p");
      const strong = document.createElement("strong");
      strong.textContent = `${where}: ${problem.status ? `${problem.status} ` : ""}${problem.title}`;
      heading.append(strong);
      if (problem.detail) heading.append(document.createTextNode(` — ${problem.detail}`));
      box.append(heading);
      if (problem.errors && problem.errors.length) {
        const list = document.createElement("ul");
        for (const { field, message } of problem.errors) {
          const item = document.createElement("li");
          const code = document.createElement("code");
          code.textContent = field;
          item.append(code, document.createTextNode(`: ${message}`));
          list.append(item);
        }
        box.append(list);
      }
      return box;
    }),
  );
  if (error && (error.status === 401 || error.status === 403)) {
    $("key-status").textContent =
      error.status === 401 ? "The API refused this key: paste another." : "This key lacks the scope activities:read.";
  }
}

function asProblem(error) {
  return error instanceof ApiError ? error : new ApiError(0, { title: "Unexpected error", detail: String(error) });
}

// --- the key -------------------------------------------------------------------------------------------

function keyStatus() {
  $("key-status").textContent = state.key
    ? "A key is set for this tab (kept in sessionStorage until the tab closes)."
    : "No key yet: paste one. It is kept in this tab only.";
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("key").value.trim();
  if (!key) {
    showError("Key", new ApiError(0, { title: "No key", detail: "Paste an API key with the scope activities:read." }));
    $("key").focus();
    return;
  }
  state.key = key;
  sessionStorage.setItem(KEY_ITEM, key);
  $("key").value = "";
  showError("Key", null);
  keyStatus();
  applyFilters();
  if (state.live) restartLive(); // with the new key
});

$("forget-key").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_ITEM);
  state.key = null;
  stopLive();
  $("activities").tBodies[0].replaceChildren();
  clearChart("Set a key to draw the chart.");
  state.errors.clear();
  showError("Key", null);
  keyStatus();
  $("key").focus();
});

// --- filters -------------------------------------------------------------------------------------------

function localInput(id) {
  const value = $(id).value;
  return value ? new Date(value) : null; // datetime-local without an offset: the browser's local time
}

function readFilters() {
  const actions = $("actions").value.split(",").map((action) => action.trim()).filter(Boolean);
  return {
    userId: $("user-id").value.trim(),
    actions,
    start: localInput("start-date"),
    end: localInput("end-date"),
    limit: $("limit").value,
    interval: $("interval").value,
  };
}

function filterParams(filters, { dates = true } = {}) {
  const params = new URLSearchParams();
  if (filters.userId) params.set("userId", filters.userId);
  for (const action of filters.actions) params.append("action", action);
  if (dates && filters.start) params.set("startDate", filters.start.toISOString());
  if (dates && filters.end) params.set("endDate", filters.end.toISOString());
  return params;
}

function applyFilters() {
  const filters = readFilters();
  if (filters.start && filters.end && filters.start > filters.end) {
    showError("Filters", new ApiError(0, { title: "Dates out of order", detail: "“From” is after “To”." }));
    $("start-date").focus();
    return;
  }
  showError("Filters", null);
  const liveChanged = state.filters && (state.filters.userId !== filters.userId ||
    state.filters.actions.join("\n") !== filters.actions.join("\n"));
  state.filters = filters;
  state.cursors = [""];
  if (!state.key) return;
  loadPage();
  loadChart();
  if (state.live && liveChanged) restartLive();
}

$("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  applyFilters();
});
$("filters").addEventListener("reset", () => setTimeout(applyFilters)); // after the form has reset

// --- stored activities, one cursor page at a time -------------------------------------------------------

function cell(row, content) {
  const td = document.createElement("td");
  if (typeof content === "string") td.textContent = content;
  else td.append(content);
  row.append(td);
  return td;
}

function timeElement(iso) {
  const time = document.createElement("time");
  time.dateTime = iso;
  time.textContent = formatTime(iso);
  return time;
}

function metadataElement(metadata) {
  const keys = Object.keys(metadata || {});
  if (keys.length === 0) return "—";
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = keys.length === 1 ? keys[0] : `${keys[0]} +${keys.length - 1}`;
  const pre = document.createElement("pre");
  pre.textContent = JSON.stringify(metadata, null, 2);
  details.append(summary, pre);
  return details;
}

function activityRow(item) {
  const row = document.createElement("tr");
  const time = cell(row, timeElement(item.timestamp));
  if (item.originalTimestamp) time.title = `sent as ${item.originalTimestamp}, corrected for clock skew`;
  cell(row, item.userId);
  cell(row, item.action);
  cell(row, metadataElement(item.metadata));
  cell(row, item.ipAddress || "—");
  const id = document.createElement("code");
  id.textContent = item.id;
  cell(row, id);
  return row;
}

function freshness(freshUntil) {
  state.freshUntil = freshUntil ? new Date(freshUntil) : state.freshUntil;
  $("fresh-until").textContent = freshUntil
    ? `Every activity received before ${formatTime(freshUntil)} is stored; newer ones may still be on their way.`
    : "How fresh the stored data is: unknown (no consumer has reported yet).";
  markStored();
}

function pagerButtons(busy) {
  const page = state.cursors.length;
  $("first-page").disabled = busy || page === 1;
  $("previous-page").disabled = busy || page === 1;
  $("next-page").disabled = busy || state.nextCursor === null;
  $("refresh").disabled = busy;
}

async function loadPage() {
  if (!state.key || !state.filters) return;
  if (state.requests.list) state.requests.list.abort();
  const controller = (state.requests.list = new AbortController());
  // Buttons are disabled while a page loads, which drops the focus: it comes back afterwards.
  const focused = document.activeElement && document.activeElement.closest(".pager") ? document.activeElement.id : null;
  const params = filterParams(state.filters);
  params.set("limit", state.filters.limit);
  params.set("cursor", state.cursors[state.cursors.length - 1]);
  const table = $("activities");
  table.setAttribute("aria-busy", "true");
  pagerButtons(true);
  $("page-status").textContent = `Loading page ${state.cursors.length}…`;
  try {
    const answer = await getJson("api/activities", params, state.key, controller.signal);
    table.tBodies[0].replaceChildren(...answer.data.map(activityRow));
    $("empty").hidden = answer.data.length > 0;
    state.nextCursor = answer.nextCursor;
    const first = (state.cursors.length - 1) * Number(answer.limit);
    $("page-status").textContent = answer.data.length
      ? `Page ${state.cursors.length}: activities ${first + 1}–${first + answer.data.length}${answer.nextCursor === null ? " (last page)" : ""}`
      : `Page ${state.cursors.length}: none`;
    freshness(answer.freshUntil);
    showError("Activities", null);
  } catch (error) {
    if (error.name === "AbortError") return;
    showError("Activities", asProblem(error));
    $("page-status").textContent = `Page ${state.cursors.length} could not be loaded`;
  } finally {
    if (state.requests.list === controller) {
      table.setAttribute("aria-busy", "false");
      pagerButtons(false);
      if (focused && document.activeElement === document.body) {
        ($(focused).disabled ? $("activities-heading") : $(focused)).focus();
      }
    }
  }
}

$("next-page").addEventListener("click", () => {
  if (state.nextCursor === null) return;
  state.cursors.push(state.nextCursor);
  loadPage();
});
$("previous-page").addEventListener("click", () => {
  if (state.cursors.length > 1) state.cursors.pop();
  loadPage();
});
$("first-page").addEventListener("click", () => {
  state.cursors = [""];
  loadPage();
});
$("refresh").addEventListener("click", () => {
  loadPage();
  loadChart();
});

// --- the chart -----------------------------------------------------------------------------------------

/** Takes down what the chart showed, so that it is never taken for the answer to other filters. */
function clearChart(caption) {
  state.lastStats = null;
  $("chart").replaceChildren();
  $("chart-table").tBodies[0].replaceChildren();
  $("chart-summary").textContent = "";
  $("chart-caption").textContent = caption;
}

function chartRange(filters) {
  const end = filters.end || new Date();
  const start = filters.start || new Date(end.getTime() - DAY_MS);
  return { start, end, defaulted: !filters.start && !filters.end };
}

async function loadChart() {
  if (!state.key || !state.filters) return;
  if (state.requests.chart) state.requests.chart.abort();
  const controller = (state.requests.chart = new AbortController());
  const range = chartRange(state.filters);
  const interval = state.filters.interval === "auto" ? chooseInterval(range.start, range.end) : state.filters.interval;
  if (interval === null) {
    clearChart("No chart for this range.");
    showError("Chart", new ApiError(0, {
      title: "Range too long to chart",
      detail: `More than ${number.format(MAX_BUCKETS)} days: narrow “From” and “To”.`,
    }));
    return;
  }
  const params = filterParams(state.filters, { dates: false });
  params.set("interval", interval);
  params.set("startDate", range.start.toISOString());
  params.set("endDate", range.end.toISOString());
  const area = $("chart");
  area.setAttribute("aria-busy", "true");
  try {
    const stats = await getJson("api/activities/stats", params, state.key, controller.signal);
    const sum = total(stats);
    const peak = stats.buckets.reduce((best, bucket) => (bucket.total > best.total ? bucket : best), { total: 0 });
    const per = stats.interval;
    const span = range.defaulted ? "the last 24 hours" : `${formatTime(range.start.toISOString())} to ${formatTime(range.end.toISOString())}`;
    $("chart-summary").textContent = `${number.format(sum)} in total`;
    const description = `${number.format(sum)} activities in ${number.format(stats.buckets.length)} buckets of one ${per}, ` +
      `${span}${peak.total ? `; the busiest ${per} (${formatShort(peak.start)}) holds ${number.format(peak.total)}` : ""}.`;
    $("chart-caption").textContent = description;
    $("chart-table-caption").textContent = `${description} Intervals without activities are left out.`;
    drawChart(area, stats, formatShort, "chart-caption");
    fillTable($("chart-table"), stats, formatTime);
    state.lastStats = stats;
    showError("Chart", null);
  } catch (error) {
    if (error.name === "AbortError") return;
    clearChart("No chart: the counts could not be read (see the error above).");
    showError("Chart", asProblem(error));
  } finally {
    if (state.requests.chart === controller) area.setAttribute("aria-busy", "false");
  }
}

let redraw = null;
new ResizeObserver(() => {
  clearTimeout(redraw);
  redraw = setTimeout(() => state.lastStats && drawChart($("chart"), state.lastStats, formatShort, "chart-caption"), 150);
}).observe($("chart"));

// --- the live tail -------------------------------------------------------------------------------------

function liveItem(item) {
  const li = document.createElement("li");
  li.dataset.receivedAt = item.receivedAt;
  const head = document.createElement("div");
  head.className = "live-head";
  const action = document.createElement("strong");
  action.textContent = item.action;
  const user = document.createElement("span");
  user.textContent = item.userId;
  const badge = document.createElement("span");
  badge.className = "badge pending";
  badge.textContent = "accepted, not yet stored";
  head.append(action, document.createTextNode(" by "), user, document.createTextNode(" "), badge);
  const meta = document.createElement("div");
  meta.className = "muted";
  const id = document.createElement("code");
  id.textContent = item.id;
  meta.append(timeElement(item.timestamp), document.createTextNode(" · "), id);
  li.append(head, meta);
  return li;
}

/** The live list says "stored" once a read's freshUntil has passed the activity's receipt. */
function markStored() {
  if (!state.freshUntil) return;
  for (const li of $("live").children) {
    const badge = li.querySelector(".badge.pending");
    if (badge && new Date(li.dataset.receivedAt) < state.freshUntil) {
      badge.className = "badge stored";
      badge.textContent = "stored";
    }
  }
}

function liveStatus(update) {
  const toggle = $("live-toggle");
  const text = {
    connecting: () => (update.resuming ? "Reconnecting, resuming after the last activity received…" : "Connecting…"),
    live: () => `Live since ${shortFormat.format(new Date())}: new activities appear at the top as the API accepts them.`,
    waiting: () => {
      const why = { overflow: "The page fell behind the stream", closed: "The server closed the stream",
        silent: "No heartbeat for 45 s", failed: "The connection failed", refused: "The server is busy" }[update.reason];
      return `${why}; reconnecting in ${Math.ceil(update.delayMs / 1000)} s${update.resuming ? ", without missing an activity" : ""}.`;
    },
    stopped: () => "Stopped.",
  }[update.state]();
  $("live-status").textContent = text;
  if (update.state === "stopped") {
    state.live = null;
    toggle.setAttribute("aria-pressed", "false");
    toggle.textContent = "Start live tail";
  }
  if (update.state === "live") showError("Live tail", null);
  if (update.error && update.state === "stopped") showError("Live tail", asProblem(update.error));
}

function startLive() {
  if (!state.key) {
    showError("Live tail", new ApiError(0, { title: "No key", detail: "Set a key first." }));
    return;
  }
  const filters = state.filters || readFilters();
  state.live = new LiveTail({
    key: state.key,
    params: filterParams(filters, { dates: false }),
    onActivity: (item) => {
      const list = $("live");
      list.prepend(liveItem(item));
      while (list.children.length > LIVE_ROWS) list.lastElementChild.remove();
    },
    onState: liveStatus,
  });
  const toggle = $("live-toggle");
  toggle.setAttribute("aria-pressed", "true");
  toggle.textContent = "Stop live tail";
  state.live.start();
}

function stopLive() {
  if (!state.live) return;
  state.live.stop();
  state.live = null;
  const toggle = $("live-toggle");
  toggle.setAttribute("aria-pressed", "false");
  toggle.textContent = "Start live tail";
  $("live-status").textContent = "Off.";
  showError("Live tail", null);
}

function restartLive() {
  stopLive();
  $("live").replaceChildren(); // what it showed was for other filters (or another key)
  startLive();
}

$("live-toggle").addEventListener("click", () => (state.live ? stopLive() : startLive()));

// --- start ---------------------------------------------------------------------------------------------

$("tz-name").textContent = zone;
$("time-heading").textContent = `Time (${zone})`;
keyStatus();
pagerButtons(false);
if (state.key) applyFilters();
else state.filters = readFilters();
