// The live tail: GET /api/activities/stream read with fetch() and a stream reader, because EventSource
// cannot send the key in a header (and a key in the URL would end up in logs). After a dropped connection
// it reconnects with Last-Event-ID, the id of the last message received, so the server resumes without a
// gap or a duplicate.

import { headers, problemOf, send, url } from "./api.js";

const STREAM = "api/activities/stream"; // relative, as every path in api.js
const SILENCE_MS = 45_000; // three missed 15 s heartbeats: the connection is dead even if no error said so
const MAX_DELAY_MS = 30_000;

/** Server-Sent Events parsing as the HTML standard describes it (event, data, id, retry; comments). */
export class SseParser {
  constructor(onMessage) {
    this.onMessage = onMessage;
    this.pending = "";
    this.skipNewline = false;
    this.type = "";
    this.data = [];
    this.lastEventId = "";
    this.retry = null;
  }

  push(chunk) {
    let text = this.pending + chunk;
    if (this.skipNewline && text.startsWith("\n")) text = text.slice(1);
    this.skipNewline = text.endsWith("\r"); // a CR LF split across two chunks is one line end
    const lines = text.split(/\r\n|\r|\n/);
    this.pending = lines.pop();
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "") {
      if (this.data.length > 0) {
        this.onMessage({ type: this.type || "message", data: this.data.join("\n"), id: this.lastEventId });
      }
      this.type = "";
      this.data = [];
      return;
    }
    if (line.startsWith(":")) return; // a comment: the heartbeat
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
  }
}

/**
 * One live tail. ``onActivity(item)`` for each accepted activity; ``onState({state, ...})`` as it
 * connects (connecting, live, waiting, stopped). States: stopped carries ``error`` (an ApiError) when the
 * server refused for good (401, 403, 400).
 */
export class LiveTail {
  constructor({ key, params, onActivity, onState }) {
    this.key = key;
    this.params = params;
    this.onActivity = onActivity;
    this.onState = onState;
    this.lastEventId = null;
    this.retryMs = 1000;
    this.failures = 0;
    this.received = 0;
    this.running = false;
    this.controller = null;
    this.timer = null;
  }

  start() {
    this.running = true;
    this.connect();
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    if (this.controller) this.controller.abort();
  }

  async connect() {
    if (!this.running) return;
    const controller = (this.controller = new AbortController());
    this.onState({ state: "connecting", resuming: this.lastEventId !== null });
    const extra = { Accept: "text/event-stream" };
    if (this.lastEventId !== null) extra["Last-Event-ID"] = this.lastEventId;
    let reason;
    try {
      const response = await send(url(STREAM, this.params), {
        headers: headers(this.key, extra),
        signal: controller.signal,
      });
      if (!response.ok) {
        const problem = await problemOf(response);
        if (response.status === 429 || response.status >= 500) {
          this.retryLater("refused", problem, Number(problem.retryAfter) * 1000);
        } else {
          this.running = false; // 400, 401, 403: trying again would get the same answer
          this.onState({ state: "stopped", error: problem });
        }
        return;
      }
      reason = await this.read(response, controller);
    } catch (error) {
      if (this.running) this.retryLater(error.name === "AbortError" ? "silent" : "failed", error);
      return;
    }
    this.retryLater(reason);
  }

  /** Reads messages until the server closes; "overflow" when it said the page fell behind. */
  async read(response, controller) {
    let overflow = false;
    const parser = new SseParser((message) => {
      if (message.id !== "") this.lastEventId = message.id;
      if (message.type === "ready") {
        this.failures = 0;
        this.onState({ state: "live", received: this.received });
      } else if (message.type === "accepted") {
        let item;
        try {
          item = JSON.parse(message.data);
        } catch {
          console.warn("live tail: a message that is not JSON was skipped", message.id);
          return;
        }
        this.received += 1;
        this.onActivity(item);
      } else if (message.type === "overflow") {
        overflow = true;
      }
    });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let watchdog = setTimeout(() => controller.abort(), SILENCE_MS);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        clearTimeout(watchdog);
        watchdog = setTimeout(() => controller.abort(), SILENCE_MS);
        parser.push(value);
        if (parser.retry !== null) this.retryMs = parser.retry;
      }
    } finally {
      clearTimeout(watchdog);
    }
    return overflow ? "overflow" : "closed";
  }

  /**
   * Reconnects, resuming after the last message received. A clean close (a server restarting) is
   * retried after the server's retry: (1 s by default); failures in a row double the wait, up to 30 s;
   * a 503 waits its Retry-After.
   */
  retryLater(reason, error = null, delayMs = NaN) {
    if (!this.running) return;
    if (reason !== "closed") this.failures += 1;
    const backoff = Math.min(this.retryMs * 2 ** Math.max(0, this.failures - 1), MAX_DELAY_MS);
    const delay = delayMs > 0 ? Math.min(delayMs, MAX_DELAY_MS) : backoff;
    this.onState({ state: "waiting", reason, error, delayMs: delay, resuming: this.lastEventId !== null });
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
