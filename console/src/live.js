// The facade's WebSockets, authenticated by the session cookie. The sessions one
// (/api/v1/ws/sessions): full `sessions_update` snapshots (at once, on every change, and every
// 3 s), `hibernate_warning` messages when a session enters its warning window; the cluster one
// (/api/v1/ws/cluster): `metrics_update`. A closed socket is opened again after a backoff of
// 1 s doubling to 30 s (with jitter), reset once a socket opens; a pod's log (a stream with
// no snapshot to start from) is not.
import { useEffect, useRef, useState } from "preact/hooks";

const FIRST_RETRY = 1000;
const LAST_RETRY = 30000;
export const CREDENTIALS_FAILED = 4401; // the facade's close code when the cookie stops being valid

export function socketUrl(location, path) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}${path}`;
}

export const sessionsUrl = (location) => socketUrl(location, "/api/v1/ws/sessions");

export const keyOf = (s) => `${s.namespace}/${s.id}`;

// A WebSocket to the facade's `path` while mounted (none while `path` is null; a new one when it
// changes). Each message's data goes to `onMessage`. With `reconnect` a closed socket is opened
// again after the backoff; without, the close is reported in `ended` ({code, reason, opened:
// whether it had opened, so a refused upgrade is told from a dropped socket}). `send(text)`
// sends on the open socket (false when there is none). Returns {open, ended, send}.
export function useSocket(path, { onMessage, onCredentialsFailed, reconnect = true }) {
  const handlers = useRef({});
  handlers.current = { onMessage, onCredentialsFailed };
  const live = useRef(null);
  const [status, setStatus] = useState({ open: false, ended: null });
  useEffect(() => {
    if (!path) return undefined;
    let socket = null;
    let timer = null;
    let delay = FIRST_RETRY;
    let stopped = false;
    setStatus({ open: false, ended: null });

    const connect = () => {
      timer = null;
      let opened = false;
      socket = new WebSocket(socketUrl(window.location, path));
      live.current = socket;
      socket.onopen = () => {
        opened = true;
        delay = FIRST_RETRY;
        setStatus({ open: true, ended: null });
      };
      socket.onmessage = (event) => handlers.current.onMessage(event.data);
      socket.onclose = (event) => {
        socket = null;
        if (live.current === event.target) live.current = null; // (not a newer path's socket)
        if (stopped) return;
        if (event.code === CREDENTIALS_FAILED && handlers.current.onCredentialsFailed) {
          handlers.current.onCredentialsFailed();
        }
        if (!reconnect) {
          setStatus({ open: false, ended: { code: event.code, reason: event.reason, opened } });
          return;
        }
        setStatus({ open: false, ended: null });
        const wait = delay * (0.75 + Math.random() / 2);
        delay = Math.min(delay * 2, LAST_RETRY);
        timer = setTimeout(connect, wait);
      };
    };
    connect();
    return () => {
      stopped = true;
      live.current = null;
      if (timer !== null) clearTimeout(timer);
      if (socket === null) return;
      // closing a socket still connecting makes browsers log a warning: close it once open
      if (socket.readyState === WebSocket.CONNECTING) socket.onopen = (e) => e.target.close(1000);
      else socket.close(1000, "leaving");
    };
  }, [path]);
  const send = (text) => {
    const socket = live.current;
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(text);
    return true;
  };
  return { ...status, send };
}

// A message's JSON, or null when it is not JSON.
export const parsed = (data) => {
  try {
    return JSON.parse(data);
  } catch {
    return null;
  }
};

// {open, sessions (null until the first snapshot), warnings: key → the idle deadline warned of}
export function useSessionsFeed(onCredentialsFailed) {
  const [state, setState] = useState({ sessions: null, warnings: {} });
  const socket = useSocket("/api/v1/ws/sessions", {
    onCredentialsFailed,
    onMessage: (data) => {
      const message = parsed(data);
      if (!message) return;
      if (message.type === "sessions_update") {
        setState((s) => ({ ...s, sessions: message.sessions || [] }));
      } else if (message.type === "hibernate_warning") {
        const key = `${message.namespace}/${message.sessionId}`;
        setState((s) => ({ ...s, warnings: { ...s.warnings, [key]: message.idleDeadline } }));
      }
    },
  });
  return { ...state, open: socket.open };
}

// The cluster stream (/api/v1/ws/cluster, operators and admins): `metrics_update` every 5 s.
// {open, metrics (null until the first message), at (its timestamp)}
export function useClusterFeed(onCredentialsFailed) {
  const [state, setState] = useState({ metrics: null, at: null });
  const socket = useSocket("/api/v1/ws/cluster", {
    onCredentialsFailed,
    onMessage: (data) => {
      const message = parsed(data);
      if (message && message.type === "metrics_update") {
        setState({ metrics: message.metrics || {}, at: message.timestamp || null });
      }
    },
  });
  return { ...state, open: socket.open };
}

// A clock that ticks every second while mounted (for countdowns).
export function useNow() {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const id = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(id);
  }, []);
  return now;
}

// "12:05" or "1:02:03" until `deadline` (an ISO time), "0:00" once passed, "" without one.
export function countdown(deadline, now) {
  if (!deadline) return "";
  const at = Date.parse(deadline);
  if (Number.isNaN(at)) return "";
  const total = Math.max(0, Math.floor((at - now) / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}
