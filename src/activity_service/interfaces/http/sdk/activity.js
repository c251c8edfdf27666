// activity-service browser SDK: an ES module with no dependencies, served by the API at /sdk/activity.js.
//
//   import { init, track } from "https://api.example/sdk/activity.js";
//   init({ endpoint: "https://api.example", key: "<publishable key>", userId: "user-42" });
//   track("page_view", { path: location.pathname });
//
// Every event gets its id here, at track(), and keeps it on every resend, so the API stores it once
// however often it is sent. Events wait in localStorage (at most maxQueue; when full the oldest is
// dropped and reported) until the API accepted them: they survive reloads, closed tabs and offline
// spells, and the next page of the site sends what a closed one could not. Sends are text/plain with the
// key in the query: CORS simple requests, no preflight. A 429/503/network failure is retried with
// exponential backoff (or after Retry-After); an event the API rejects (400) is dropped and reported,
// never retried. When the page is hidden or left, what is queued goes in one navigator.sendBeacon.

const PREFIX = "activity-service:";
const STALE_MS = 120000; // a queue not written for this long belongs to a tab that is gone
const BATCH_BYTES = 262144;
const BEACON_BYTES = 60000; // browsers let at most 64 KiB of beacons be in flight
const BEACON_GRACE_MS = 30000; // events in a beacon are not sent again this soon

let current = null;

export function init(options) {
  if (current) current.stop();
  current = new Tracker(options);
  return current;
}

export function track(action, metadata) {
  return tracker().track(action, metadata);
}

export function identify(userId) {
  tracker().identify(userId);
}

export function flush() {
  return tracker().flush();
}

function tracker() {
  if (!current) throw new Error("activity-service: call init({ endpoint, key, userId }) first");
  return current;
}

export class Tracker {
  constructor({
    endpoint,
    key,
    userId,
    batchSize = 50,
    flushInterval = 1000,
    maxQueue = 1000,
    maxBackoff = 60000,
    onError = () => {},
    storage = safeStorage(),
  }) {
    if (!endpoint || !key) throw new Error("activity-service: init needs endpoint and key");
    this.url = `${endpoint.replace(/\/+$/, "")}/api/activities/batch?key=${encodeURIComponent(key)}`;
    this.userId = userId;
    this.batchSize = batchSize;
    this.maxQueue = maxQueue;
    this.maxBackoff = maxBackoff;
    this.onError = onError;
    this.storage = storage;
    this.prefix = `${PREFIX}${key}:`;
    this.name = this.prefix + uuid7();
    this.queue = [];
    this.attempt = 0;
    this.retryAt = 0;
    this.sending = null;
    this.adopt();
    this.timer = setInterval(() => this.tick(), flushInterval);
    this.listeners = [
      ["online", () => this.wake()],
      ["pagehide", () => this.leave()],
      ["pageshow", () => this.save()],
      ["visibilitychange", () => (document.visibilityState === "hidden" ? this.leave() : this.wake())],
    ];
    for (const [type, listener] of this.listeners) addEventListener(type, listener);
  }

  // Queues one event and returns its id at once.
  track(action, metadata = {}) {
    if (!this.userId) throw new Error("activity-service: no userId: pass it to init() or identify()");
    if (typeof action !== "string" || !action) throw new TypeError("activity-service: action must be a string");
    if (metadata === null || typeof metadata !== "object" || Array.isArray(metadata)) {
      throw new TypeError("activity-service: metadata must be an object");
    }
    // A copy, so that a resend carries what was tracked even if the page changes the object later (the
    // API refuses a resend with other content); a value JSON cannot hold throws here, not later.
    metadata = JSON.parse(JSON.stringify(metadata));
    const event = { id: uuid7(), userId: this.userId, action, timestamp: new Date().toISOString(), metadata };
    this.queue.push(event);
    const dropped = this.queue.length > this.maxQueue ? this.queue.splice(0, this.queue.length - this.maxQueue) : [];
    this.save();
    if (dropped.length) this.report("dropped", dropped);
    if (this.pending().length >= this.batchSize) this.send();
    return event.id;
  }

  identify(userId) {
    this.userId = userId;
  }

  // Resolves once every event tracked before it was answered (or the API is unreachable: they stay queued).
  async flush() {
    const ids = new Set(this.queue.map((e) => e.id));
    this.retryAt = 0;
    while (this.queue.some((e) => ids.has(e.id)) && Date.now() >= this.retryAt) {
      await this.send(true);
    }
  }

  stop() {
    clearInterval(this.timer);
    for (const [type, listener] of this.listeners) removeEventListener(type, listener);
  }

  tick() {
    this.save(); // also says this tab is alive
    if (this.queue.length) this.send();
  }

  wake() {
    this.attempt = 0;
    this.retryAt = 0;
    this.send();
  }

  pending() {
    const now = Date.now();
    return this.queue.filter((e) => !(e.beaconAt > now - BEACON_GRACE_MS));
  }

  send(all) {
    if (!this.sending && Date.now() >= this.retryAt) {
      const batch = take(all ? this.queue : this.pending(), this.batchSize, BATCH_BYTES);
      if (batch.length) this.sending = this.post(batch).finally(() => (this.sending = null));
    }
    return this.sending || Promise.resolve();
  }

  async post(batch) {
    let response;
    try {
      response = await fetch(this.url, { method: "POST", body: body(batch), credentials: "omit" });
    } catch {
      return this.later(0); // offline, or no answer the page may read
    }
    const status = response.status;
    const answer = await response.json().catch(() => ({}));
    if (status === 202 || (status === 400 && answer.results)) {
      const rejected = [];
      for (const result of answer.results || []) {
        const event = batch[result.index];
        if (result.status === "rejected") rejected.push({ ...event, errors: result.errors });
      }
      this.settle(batch);
      this.attempt = 0;
      if (rejected.length) this.report("rejected", rejected);
    } else if (status === 400 && answer.errors) {
      this.settle(batch);
      this.report("rejected", batch, answer);
    } else if (status === 413 && batch.length > 1) {
      this.batchSize = Math.max(1, batch.length >> 1);
      this.send();
    } else if (status === 413) {
      this.settle(batch);
      this.report("rejected", batch, answer);
    } else if (status === 400 || status === 401 || status === 403 || status === 415) {
      // The key, not the events (a secret key in the URL is a 400): kept until the page is fixed.
      this.report("refused", batch, answer);
      this.later(this.maxBackoff);
    } else {
      this.later(1000 * Number(response.headers.get("Retry-After")) || 0);
    }
  }

  // Removes answered events from the queue (accepted or rejected: neither is sent again).
  settle(batch) {
    const ids = new Set(batch.map((e) => e.id));
    this.queue = this.queue.filter((e) => !ids.has(e.id));
    this.save();
  }

  later(wait) {
    const backoff = Math.min(this.maxBackoff, 500 * 2 ** this.attempt++) * (0.5 + Math.random() / 2);
    this.retryAt = Date.now() + (wait || backoff);
  }

  // The page is hidden or left: what is queued goes in one beacon, and stays queued until an answer
  // is known (a page that lives on resends it later, the next page of the site otherwise).
  leave() {
    const now = Date.now();
    const batch = take(this.pending(), 500, BEACON_BYTES);
    if (batch.length && navigator.sendBeacon && navigator.sendBeacon(this.url, body(batch))) {
      for (const event of batch) event.beaconAt = now;
    }
    this.save(false);
  }

  save(open = true) {
    if (!this.storage) return;
    const record = JSON.stringify({ t: Date.now(), open, events: this.queue });
    try {
      this.storage.setItem(this.name, record);
    } catch {
      if (this.queue.length > 1) {
        this.report("dropped", this.queue.splice(0, Math.ceil(this.queue.length / 10)));
        this.save(open);
      }
    }
  }

  // Takes over the queues of this key's tabs that are gone (closed, or not written for STALE_MS).
  adopt() {
    const storage = this.storage;
    if (!storage) return;
    const known = new Set();
    for (let i = storage.length - 1; i >= 0; i--) {
      const name = storage.key(i);
      if (!name || !name.startsWith(this.prefix)) continue;
      try {
        const { t, open, events } = JSON.parse(storage.getItem(name));
        if (open && Date.now() - t < STALE_MS) continue;
        for (const event of events) {
          if (!known.has(event.id)) this.queue.push(event);
          known.add(event.id);
        }
      } catch {
        // not ours to read: dropped below
      }
      storage.removeItem(name);
    }
    this.queue.sort((a, b) => (a.id < b.id ? -1 : 1)); // UUIDv7: in the order they were tracked
    this.queue.splice(0, Math.max(0, this.queue.length - this.maxQueue));
    this.save();
  }

  report(type, events, answer = {}) {
    try {
      this.onError({ type, events: events.map(({ beaconAt, ...e }) => e), detail: answer.detail });
    } catch {
      // the page's callback failing must not stop the queue
    }
  }
}

function take(events, count, bytes) {
  const batch = [];
  let size = 20;
  for (const event of events) {
    size += JSON.stringify(event).length + 40;
    if (batch.length === count || (batch.length && size > bytes)) break;
    batch.push(event);
  }
  return batch;
}

function body(batch) {
  const sentAt = new Date().toISOString();
  return JSON.stringify({ activities: batch.map(({ beaconAt, ...e }) => ({ ...e, sentAt })) });
}

// A UUIDv7: time-ordered, as the ids the API chooses itself.
function uuid7() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  let t = Date.now();
  for (let i = 5; i >= 0; i--, t = Math.floor(t / 256)) b[i] = t % 256;
  b[6] = (b[6] & 15) | 112;
  b[8] = (b[8] & 63) | 128;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function safeStorage() {
  try {
    return globalThis.localStorage || null;
  } catch {
    return null; // storage disabled: the queue lives in memory only
  }
}
