// The sessions WebSocket (/api/v1/ws/sessions, authenticated by the session cookie): full
// `sessions_update` snapshots (at once, on every change, and every 3 s), `hibernate_warning`
// messages when a session enters its warning window. A closed socket is opened again after a
// backoff of 1 s doubling to 30 s (with jitter), reset once a socket opens.
import { useEffect, useState } from "preact/hooks";

const FIRST_RETRY = 1000;
const LAST_RETRY = 30000;
export const CREDENTIALS_FAILED = 4401; // the facade's close code when the cookie stops being valid

export function sessionsUrl(location) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/api/v1/ws/sessions`;
}

export const keyOf = (s) => `${s.namespace}/${s.id}`;

// {open, sessions (null until the first snapshot), warnings: key → the idle deadline warned of}
export function useSessionsFeed(onCredentialsFailed) {
  const [state, setState] = useState({ open: false, sessions: null, warnings: {} });
  useEffect(() => {
    let socket = null;
    let timer = null;
    let delay = FIRST_RETRY;
    let stopped = false;

    const connect = () => {
      timer = null;
      socket = new WebSocket(sessionsUrl(window.location));
      socket.onopen = () => {
        delay = FIRST_RETRY;
        setState((s) => ({ ...s, open: true }));
      };
      socket.onmessage = (event) => {
        let message;
        try {
          message = JSON.parse(event.data);
        } catch {
          return;
        }
        if (message.type === "sessions_update") {
          setState((s) => ({ ...s, sessions: message.sessions || [] }));
        } else if (message.type === "hibernate_warning") {
          const key = `${message.namespace}/${message.sessionId}`;
          setState((s) => ({ ...s, warnings: { ...s.warnings, [key]: message.idleDeadline } }));
        }
      };
      socket.onclose = (event) => {
        socket = null;
        setState((s) => ({ ...s, open: false }));
        if (stopped) return;
        if (event.code === CREDENTIALS_FAILED) onCredentialsFailed();
        const wait = delay * (0.75 + Math.random() / 2);
        delay = Math.min(delay * 2, LAST_RETRY);
        timer = setTimeout(connect, wait);
      };
    };
    connect();
    return () => {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
      if (socket === null) return;
      // closing a socket still connecting makes browsers log a warning: close it once open
      if (socket.readyState === WebSocket.CONNECTING) socket.onopen = (e) => e.target.close(1000);
      else socket.close(1000, "leaving");
    };
  }, []);
  return state;
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
