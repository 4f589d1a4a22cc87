// The gateway's /ws, as the page uses it: subscriptions (reads, open) and calls (writes, need the token).
// Reconnects by itself; every (re)connection sends the token again and subscribes again, and the gateway then
// sends the retained $state and state/* values, so the page is whole again without asking for anything.

const TOKEN_KEY = "benchbus.gateway.token";

// `?device=<id>` in the page's address: a lab's central gateway serves that device's view (its subscriptions and
// calls go to benchbus/<id>/ through the central broker); without it, the gateway's own device.
export const DEVICE = new URLSearchParams(location.search).get("device") || "";

export class Bus {
  constructor({ filters, onMessage, onLink, onAccess }) {
    this.filters = filters;
    this.onMessage = onMessage;
    this.onLink = onLink;       // (state: "connecting" | "live" | "down", detail)
    this.onAccess = onAccess;   // (state: "read-only" | "checking" | "writes" | "refused", detail)
    this.token = localStorage.getItem(TOKEN_KEY) || "";
    this.authorized = false;
    this.pending = new Map();   // call id -> {resolve, reject}
    this.nextId = 1;
    this.retryMs = 500;
    this.socket = null;
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.onLink("connecting");
    const query = DEVICE ? `?device=${encodeURIComponent(DEVICE)}` : "";
    const socket = new WebSocket(`${scheme}//${location.host}/ws${query}`);
    this.socket = socket;
    socket.onopen = () => this.opened();
    socket.onmessage = (event) => this.received(event.data);
    socket.onclose = () => this.closed(socket);
  }

  opened() {
    this.retryMs = 500;
    this.onLink("live");
    this.authorize();
    for (const filter of this.filters) this.send({ op: "subscribe", filter });
  }

  closed(socket) {
    if (socket !== this.socket) return;
    this.authorized = false;
    for (const { reject } of this.pending.values()) reject(new BusError("unavailable", "connection to the gateway lost"));
    this.pending.clear();
    this.onLink("down", `reconnecting in ${Math.round(this.retryMs / 100) / 10} s`);
    setTimeout(() => this.connect(), this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, 10000);
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  received(text) {
    let message;
    try { message = JSON.parse(text); } catch { return; }
    if (message.op === "message") this.onMessage(message.topic, message.payload);
    else if (message.op === "access") this.trusted(message);
    else if (message.op === "reply" || message.op === "authorized") this.answered(message);
    else if (message.op === "error") console.warn("gateway refused a message:", message.error);
  }

  answered(message) {
    const waiting = this.pending.get(message.id);
    if (!waiting) return;
    this.pending.delete(message.id);
    if (message.op === "authorized" || message.ok) waiting.resolve(message.result);
    else waiting.reject(new BusError(message.error.code, message.error.message, message.error.detail));
  }

  request(body) {
    const id = `c${this.nextId++}`;
    return new Promise((resolve, reject) => {
      if (!this.socket || this.socket.readyState !== WebSocket.OPEN) {
        reject(new BusError("unavailable", "not connected to the gateway"));
        return;
      }
      this.pending.set(id, { resolve, reject });
      this.send({ ...body, id });
    });
  }

  call(service, command, payload = {}, timeout = 10) {
    if (!this.authorized) return Promise.reject(new BusError("unauthorized", "read-only: enter the gateway token first"));
    return this.request({ op: "call", service, command, payload, timeout });
  }

  // -- the token: asked for once, kept in this browser ---------------------------------------------------------
  async authorize() {
    this.authorized = false;
    if (!this.token) { this.onAccess("read-only"); return; }
    this.onAccess("checking");
    try {
      await this.request({ op: "auth", token: this.token });
      this.authorized = true;
      this.onAccess("writes");
    } catch (error) {
      if (error.code === "unauthorized") {
        this.forgetToken();
        this.onAccess("refused", error.message);
      } else {
        this.onAccess("read-only", error.message);
      }
    }
  }

  // the gateway says this browser may write without a token (its address is in a trusted network)
  trusted(message) {
    if (!message.writes || this.authorized) return;
    this.authorized = true;
    this.onAccess("writes", message.by);
  }

  useToken(token) {
    this.token = token.trim();
    localStorage.setItem(TOKEN_KEY, this.token);
    return this.authorize();
  }

  forgetToken() {
    this.token = "";
    this.authorized = false;
    localStorage.removeItem(TOKEN_KEY);
  }
}

export class BusError extends Error {
  constructor(code, message, detail) {
    super(message);
    this.code = code;
    this.detail = detail;
  }
}
