// A shell in a session's pod, in LINE MODE (issue 19 item 7; decisions 204, 205): the facade's
// WS /api/v1/ws/exec/{namespace}/{pod}?tty=false, without a pty, so stdout and stderr come
// apart and nothing needs a terminal emulator (xterm.js injects <style> elements, which the
// console's CSP refuses). The user types a line; Enter sends it with "\n" as `stdin`; what the
// pod writes is shown as text (escape sequences stripped, the newest MAX_LINES lines kept);
// Ctrl-D or Close ends it; the shell's exit code and the reason of any other close are shown.
import { useEffect, useRef, useState } from "preact/hooks";

import { query } from "./api.js";
import { html, useFollowEnd } from "./html.js";
import { CREDENTIALS_FAILED, parsed, useSocket } from "./live.js";

export const MAX_LINES = 2000; // the newest lines of output kept
const HISTORY = 100; // lines typed that Up and Down recall
const CLOSE_IDLE = 4408; // the facade's close code of a terminal idle too long

// Whether the caller is offered a terminal on session `s`: a running session with a pod, its
// owner's or anyone's for operators and admins (`everyone`); a shared session gives none (the
// facade refuses it: decision 185).
export const terminalAction = (everyone) => ({
  action: "terminal",
  label: "Terminal",
  enabled: (s) =>
    s.state === "running" && s.phase === "Running" && !!s.podName && (everyone || s.access === "owner"),
});

// ANSI/VT escape sequences: CSI (ESC [ … final), OSC (ESC ] … BEL or ESC \), DCS/PM/APC/SOS
// (ESC P|^|_|X … ESC \), and the two-byte ones (ESC ( B, ESC =, ESC 7, …).
const ESCAPES = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[P^_X][^\x1b]*\x1b\\|\x1b[ -/]*[0-~]/g;
// a sequence (or a CR) cut off at the end of a message: held until the next one completes it
const UNFINISHED = /(?:\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?|[P^_X][^\x1b]*\x1b?|[ -/]*)|\r)$/;
// other control characters but tab and newline (bell, backspace, …)
const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f]/g;

// A cleaner of one output stream: text in, text to show out (escape sequences and controls
// gone, CR LF as LF, a lone CR as a new line), with what a message cut off kept for the next.
export function streamCleaner() {
  let carry = "";
  return (chunk) => {
    let text = carry + chunk;
    const cut = UNFINISHED.exec(text);
    carry = cut ? cut[0] : "";
    if (cut) text = text.slice(0, cut.index);
    return text.replace(ESCAPES, "").replace(/\r\n?/g, "\n").replace(CONTROLS, "");
  };
}

const newlines = (text) => text.split("\n").length - 1;

// `segments` ([{kind, text}], kind stdout, stderr or input) with `text` of `kind` added (joined
// to the last segment when of the same kind), then cut to the newest `max` lines.
export function appendOutput(segments, kind, text, max = MAX_LINES) {
  if (!text) return segments;
  const last = segments[segments.length - 1];
  const kept =
    last && last.kind === kind
      ? [...segments.slice(0, -1), { kind, text: last.text + text }]
      : [...segments, { kind, text }];
  let excess = kept.reduce((n, s) => n + newlines(s.text), 0) - max;
  while (excess > 0 && kept.length > 0) {
    const first = kept[0];
    const lines = newlines(first.text);
    if (lines <= excess) {
      kept.shift();
      excess -= lines;
      continue;
    }
    let at = -1;
    for (let i = 0; i < excess; i += 1) at = first.text.indexOf("\n", at + 1);
    kept[0] = { kind: first.kind, text: first.text.slice(at + 1) };
    excess = 0;
  }
  return kept;
}

// Why the terminal closed, from the close code (decisions 186, 187). A refused upgrade reaches a
// page as 1006 before the socket opened, without the HTTP status.
export function closeExplained({ code, reason, opened }) {
  if (code === CLOSE_IDLE) return "closed: no input for too long (TERMINAL_IDLE_TIMEOUT)";
  if (code === CREDENTIALS_FAILED) return "closed: your credentials are no longer valid; sign in again";
  if (code === 1001) return "closed: the server is shutting down; open it again shortly";
  if (code === 1009) return "closed: a line over 64 KiB was sent";
  if (code === 1003) return `closed: the server did not understand a message (${reason})`;
  if (code === 1000) return `ended: ${reason || "the terminal closed"}`;
  if (code === 1006 && !opened) {
    return "refused: the pod is not running or not yours, or you have too many terminals open " +
      "(429: TERMINAL_MAX_PER_USER); close one and open again";
  }
  if (code === 1006) return "the connection was lost";
  return `closed (${code}${reason ? `: ${reason}` : ""})`;
}

function stateOf(socket, hungUp, exit) {
  if (exit) return exit.code === null ? "ended" : `exited (${exit.code})`;
  if (hungUp) return "ended: you closed the terminal";
  if (socket.ended) return closeExplained(socket.ended);
  return socket.open ? "live" : "connecting";
}

// Up and Down through the lines typed before, like a shell's history.
function useHistory() {
  const lines = useRef([]);
  const at = useRef(0);
  return {
    add(line) {
      if (line) lines.current = [...lines.current, line].slice(-HISTORY);
      at.current = lines.current.length;
    },
    step(by) {
      at.current = Math.max(0, Math.min(lines.current.length, at.current + by));
      return lines.current[at.current] ?? "";
    },
  };
}

export function TerminalPanel({ session, onClose, onReopen, onSignedOut }) {
  const [segments, setSegments] = useState([]);
  const [exit, setExit] = useState(null); // the `exit` message: {code, error?}
  const [hungUp, setHungUp] = useState(false);
  const [line, setLine] = useState("");
  const cleaners = useRef({ stdout: streamCleaner(), stderr: streamCleaner() });
  const history = useHistory();
  const pre = useRef(null);
  const input = useRef(null);
  const url = `/api/v1/ws/exec/${encodeURIComponent(session.namespace)}/${encodeURIComponent(
    session.podName,
  )}${query({ tty: "false" })}`;
  const socket = useSocket(hungUp ? null : url, {
    reconnect: false,
    onCredentialsFailed: onSignedOut,
    onMessage: (data) => {
      const message = parsed(data);
      if (!message) return;
      if (message.type === "stdout" || message.type === "stderr") {
        const text = cleaners.current[message.type](String(message.data ?? ""));
        setSegments((all) => appendOutput(all, message.type, text));
      } else if (message.type === "exit") {
        setExit({ code: message.code ?? null, error: message.error || "" });
      }
    },
  });
  const live = socket.open && !hungUp && !exit;
  useEffect(() => {
    if (live && input.current) input.current.focus();
  }, [live]);
  useFollowEnd(pre, segments);
  const submit = (event) => {
    event.preventDefault();
    if (!socket.send(JSON.stringify({ type: "stdin", data: `${line}\n` }))) return;
    setSegments((all) => appendOutput(all, "input", `$ ${line}\n`));
    history.add(line);
    setLine("");
  };
  const onKeyDown = (event) => {
    if (event.ctrlKey && (event.key === "d" || event.key === "D")) {
      event.preventDefault(); // (Chromium's "bookmark this page")
      setHungUp(true);
    } else if (event.key === "ArrowUp" || event.key === "ArrowDown") {
      event.preventDefault();
      setLine(history.step(event.key === "ArrowUp" ? -1 : 1));
    }
  };
  const ended = !live && (hungUp || exit || socket.ended);
  return html`
    <section class="panel" data-testid="terminal-panel" aria-labelledby="terminal-heading">
      <div class="title-row">
        <h2 id="terminal-heading">Terminal in ${session.id}</h2>
        <span data-testid="terminal-state" class=${live ? "badge live" : "badge reconnecting"}>
          ${stateOf(socket, hungUp, exit)}</span>
        ${ended &&
        html`<button type="button" data-testid="terminal-reopen" onClick=${onReopen}>Open again</button>`}
        <button type="button" data-testid="terminal-close" onClick=${onClose}>Close</button>
      </div>
      <pre class="terminal" data-testid="terminal-output" ref=${pre} tabindex="0" role="log"
        aria-live="polite" aria-label=${`Terminal output of ${session.id}`}>${segments.map(
          (s, i) => html`<span key=${i} class=${`out-${s.kind}`} data-stream=${s.kind}>${s.text}</span>`,
        )}</pre>
      ${exit &&
      html`<p data-testid="terminal-exit" role="status">
        ${exit.code === null ? `The terminal ended: ${exit.error}` : `The shell exited with code ${exit.code}.`}</p>`}
      <form class="terminal-line" onSubmit=${submit}>
        <label for="terminal-input">Command line</label>
        <input id="terminal-input" data-testid="terminal-input" ref=${input} value=${line}
          disabled=${!live} autocomplete="off" autocapitalize="off" spellcheck="false"
          aria-describedby="terminal-hint" onKeyDown=${onKeyDown}
          onInput=${(e) => setLine(e.currentTarget.value)} />
        <button type="submit" data-testid="terminal-send" disabled=${!live}>Send</button>
        <p class="help" id="terminal-hint">Enter sends the line to the shell in ${session.podName};
          Ctrl-D ends it. Line mode, without a TTY: no prompt, and full-screen programs (vi, top)
          do not work.</p>
      </form>
    </section>`;
}
