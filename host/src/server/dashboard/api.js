// Talking to the hub: the HTTP API with the token typed once (kept in this browser's local
// storage), and the event stream of GET /api/events read with fetch() (EventSource cannot send
// an Authorization header), resumed after the last id seen when the connection breaks.
"use strict";

const TOKEN_KEY = "switchyard-token";

/** An HTTP refusal: the status and the hub's `error` text. */
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** What a refusal means to the person reading the page. */
function explain(error) {
  if (error.status === 401) {
    return "The hub does not know this token (401 unauthorized): check it and type it again.";
  }
  if (error.status === 403) {
    return "This token may not do that (403): it needs an admin token.";
  }
  if (error.status === 429) return "Too many failed tokens from this address (429): wait a little.";
  return error.message;
}

const api = {
  token: localStorage.getItem(TOKEN_KEY) || "",

  setToken(token) {
    this.token = token.trim();
    localStorage.setItem(TOKEN_KEY, this.token);
  },

  forget() {
    this.token = "";
    localStorage.removeItem(TOKEN_KEY);
  },

  /** Calls the API; answers the parsed JSON or throws an ApiError naming the refusal. */
  async call(method, path, body, contentType) {
    const headers = { Authorization: "Bearer " + this.token };
    let payload;
    if (body !== undefined) {
      headers["Content-Type"] = contentType || "application/json";
      payload = contentType ? body : JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, { method, headers, body: payload });
    } catch (e) {
      throw new ApiError(0, `${method} ${path}: the hub cannot be reached (${e.message})`);
    }
    const text = await response.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (e) { /* not JSON: keep the text */ }
    if (!response.ok) {
      const reason = (json && json.error) || text || response.statusText;
      throw new ApiError(response.status, `${method} ${path}: ${response.status} ${reason}`);
    }
    return json;
  },

  get(path) { return this.call("GET", path); },
  post(path, body) { return this.call("POST", path, body === undefined ? {} : body); },
};

/**
 * The event stream. `handlers` has one function per event kind (hello, task, agent, policy,
 * stats, reset, dropped) and `onState(text, live)` for the connection's state. After a break it
 * reconnects with `?after=` the last id read, waiting longer each time (at most 10 s); a token
 * the hub refuses stops it (`onRefused`).
 */
class EventStream {
  constructor(handlers) {
    this.handlers = handlers;
    this.lastId = null;
    this.stopped = true;
    this.controller = null;
    this.backoff = 500;
    this.generation = 0; // each start's loop runs only while it is the latest
  }

  start() {
    this.stopped = false;
    this.generation += 1;
    this.run(this.generation);
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
  }

  async run(generation) {
    const current = () => !this.stopped && this.generation === generation;
    while (current()) {
      this.controller = new AbortController();
      const after = this.lastId === null ? "" : `?after=${this.lastId}`;
      try {
        const response = await fetch("/api/events" + after, {
          headers: { Authorization: "Bearer " + api.token, Accept: "text/event-stream" },
          signal: this.controller.signal,
        });
        if (!response.ok) {
          const text = await response.text();
          let reason = text;
          try { reason = JSON.parse(text).error; } catch (e) { /* keep the text */ }
          const error = new ApiError(response.status, `GET /api/events: ${response.status} ${reason}`);
          if (response.status === 401 || response.status === 403) {
            if (!current()) return;
            this.stopped = true;
            this.handlers.onRefused(error);
            return;
          }
          throw error;
        }
        this.handlers.onState("live", true);
        this.backoff = 500;
        await this.read(response.body.getReader(), current);
        if (current()) this.handlers.onState("stream ended; reconnecting", false);
      } catch (e) {
        if (!current()) return;
        this.handlers.onState(`disconnected (${e.message}); reconnecting`, false);
      }
      await new Promise((resolve) => setTimeout(resolve, this.backoff));
      this.backoff = Math.min(this.backoff * 2, 10000);
    }
  }

  /** Reads frames (blank-line separated) until the stream ends. */
  async read(reader, current) {
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done || !current()) return;
      // One split per chunk: a chunk can hold thousands of frames (a replay, a burst), and
      // cutting them off the front one by one would copy the rest each time.
      const frames = (buffer + decoder.decode(value, { stream: true })).split("\n\n");
      buffer = frames.pop();
      for (const frame of frames) this.dispatch(frame);
    }
  }

  dispatch(frame) {
    let id = null;
    let kind = "message";
    let data = "";
    for (const line of frame.split("\n")) {
      if (line.startsWith(":")) continue; // a keepalive comment
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "id") id = value;
      else if (field === "event") kind = value;
      else if (field === "data") data += value;
    }
    if (!data) return;
    if (id !== null) this.lastId = Number(id);
    const handler = this.handlers[kind];
    if (!handler) return; // a kind this page does not know yet
    try {
      handler(JSON.parse(data));
    } catch (e) {
      console.error(`event ${kind}:`, e);
    }
  }
}
