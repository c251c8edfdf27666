// Counts per interval from GET /api/activities/stats, drawn as an inline SVG bar chart, with a visually
// hidden table of the same numbers for screen readers.

const SVG = "http://www.w3.org/2000/svg";
export const MAX_BUCKETS = 1000; // what the API answers at most
const LENGTH_MS = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };
const HEIGHT = 170;
const MARGIN = { top: 10, right: 12, bottom: 24, left: 48 };

/** Buckets the API would answer for this range: from the bucket holding start to the one holding end
 * (UTC buckets; epoch milliseconds are UTC, and days start at multiples of 86,400,000). */
export function bucketCount(interval, start, end) {
  const length = LENGTH_MS[interval];
  return Math.floor(end.getTime() / length) - Math.floor(start.getTime() / length) + 1;
}

/** The finest interval that keeps the chart within MAX_BUCKETS bars; null when even days are too many. */
export function chooseInterval(start, end) {
  return ["minute", "hour", "day"].find((interval) => bucketCount(interval, start, end) <= MAX_BUCKETS) ?? null;
}

function element(name, attributes = {}, text = null) {
  const node = document.createElementNS(SVG, name);
  for (const [attribute, value] of Object.entries(attributes)) node.setAttribute(attribute, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

const count = new Intl.NumberFormat();

/** Draws ``stats`` (the API's answer) into ``container``; ``format`` turns an ISO time into text. */
export function drawChart(container, stats, format, labelId) {
  const buckets = stats.buckets;
  const width = Math.max(container.clientWidth, 320);
  const plotWidth = width - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const peak = Math.max(1, ...buckets.map((bucket) => bucket.total));
  const svg = element("svg", {
    width,
    height: HEIGHT,
    viewBox: `0 0 ${width} ${HEIGHT}`,
    role: "img",
    "aria-labelledby": labelId,
    class: "bars",
  });
  const scale = (value) => (value / peak) * plotHeight;
  svg.append(
    element("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: MARGIN.top + plotHeight, y2: MARGIN.top + plotHeight, class: "axis" }),
    element("text", { x: MARGIN.left - 6, y: MARGIN.top + 8, class: "tick end" }, count.format(peak)),
    element("text", { x: MARGIN.left - 6, y: MARGIN.top + plotHeight, class: "tick end" }, "0"),
  );
  const step = plotWidth / Math.max(buckets.length, 1);
  const gap = step > 4 ? 1 : 0;
  buckets.forEach((bucket, index) => {
    if (bucket.total === 0) return;
    const height = Math.max(scale(bucket.total), 1);
    const bar = element("rect", {
      x: MARGIN.left + index * step,
      y: MARGIN.top + plotHeight - height,
      width: Math.max(step - gap, 0.5),
      height,
      class: "bar",
    });
    bar.append(element("title", {}, `${format(bucket.start)}: ${count.format(bucket.total)}`));
    svg.append(bar);
  });
  if (buckets.length > 0) {
    const first = buckets[0].start;
    const last = buckets[buckets.length - 1].start;
    svg.append(element("text", { x: MARGIN.left, y: HEIGHT - 6, class: "tick" }, format(first)));
    if (buckets.length > 1) {
      svg.append(element("text", { x: width - MARGIN.right, y: HEIGHT - 6, class: "tick end" }, format(last)));
    }
  }
  container.replaceChildren(svg);
}

/** The same counts as rows of ``table``: the intervals holding activities (the others hold none). */
export function fillTable(table, stats, format) {
  const rows = stats.buckets
    .filter((bucket) => bucket.total > 0)
    .map((bucket) => {
      const row = document.createElement("tr");
      const start = document.createElement("td");
      const time = document.createElement("time");
      time.dateTime = bucket.start;
      time.textContent = format(bucket.start);
      start.append(time);
      const total = document.createElement("td");
      total.textContent = String(bucket.total);
      row.append(start, total);
      return row;
    });
  table.tBodies[0].replaceChildren(...rows);
}

export function total(stats) {
  return stats.buckets.reduce((sum, bucket) => sum + bucket.total, 0);
}
