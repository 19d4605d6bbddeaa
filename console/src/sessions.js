// "My sessions": the caller's sessions and those shared with them (everyone's for operators and
// admins, with a filter by user), live over the sessions WebSocket, their actions (REST) as far
// as the caller's access allows, a session's pod log (its WebSocket), a shell in its pod
// (terminal.js), its shares, and a form that starts a new one from a Template.
import { useEffect, useRef, useState } from "preact/hooks";

import { api, get, listAll, query } from "./api.js";
import { html, RowActions, useFollowEnd } from "./html.js";
import { countdown, keyOf, useNow, useSessionsFeed, useSocket } from "./live.js";
import { atLeast } from "./roles.js";
import { SharePanel } from "./shares.js";
import { TerminalPanel, terminalAction } from "./terminal.js";

const LOG_LINES = 2000; // the newest lines kept of a pod's log
const LOG_TAIL = 200; // lines of history asked for when the log opens

const path = (s) => `/api/v1/sessions/${encodeURIComponent(s.id)}`;
const inNamespace = (s) => query({ namespace: s.namespace });
const running = (s) => s.state === "running" && s.phase === "Running";
// The caller's access (decision 175): a view share only sees; control also connects; the owner,
// operators and admins (access "admin") also change, share and delete.
const manages = (s) => s.access === "owner" || s.access === "admin";
const uses = (s) => s.access !== "view";

// Each action: its label, when it may be used, and what it asks of the API.
const ACTIONS = [
  { action: "connect", label: "Connect", enabled: (s) => running(s) && uses(s) },
  { action: "hibernate", label: "Hibernate", enabled: (s) => manages(s) && s.state === "running", state: "hibernated" },
  { action: "wake", label: "Wake", enabled: (s) => manages(s) && s.state === "hibernated", state: "running" },
  { action: "terminate", label: "Terminate", enabled: (s) => manages(s) && s.state !== "terminated", state: "terminated" },
  { action: "delete", label: "Delete", enabled: manages },
  { action: "share", label: "Share", enabled: manages },
  { action: "logs", label: "Logs", enabled: (s) => !!s.podName },
];

// Opens the session through the access gate in a new tab. The tab is opened before the request,
// while the click still counts as the user's gesture, and sent on after; when a popup blocker
// refused the tab, the URL comes back to be offered as a link.
async function connect(session) {
  const tab = window.open("", "_blank");
  try {
    const answer = await get(`${path(session)}/connect${inNamespace(session)}`);
    const url = answer.accessUrl || answer.sessionUrl;
    if (!url) throw new Error("the session has no URL yet");
    if (!tab) return url;
    tab.opener = null;
    tab.location.href = url;
    keepAlive(session, answer.connectionId, tab, answer.heartbeatInterval);
    return null;
  } catch (error) {
    if (tab) tab.close();
    throw error;
  }
}

// A connection lives while its tab is open: a heartbeat every `seconds` (the connect answer's
// heartbeatInterval, a third of the server's STALE_AFTER), and a disconnect once the tab is
// closed, so the idle timer sees the session in use exactly while it is. Should this page go
// away first, the connection goes stale on the server by itself.
function keepAlive(session, connectionId, tab, seconds) {
  const at = (verb) =>
    `${path(session)}/${verb}${query({ namespace: session.namespace, connectionId })}`;
  const timer = setInterval(() => {
    const closed = tab.closed;
    if (closed) clearInterval(timer);
    api(closed ? "DELETE" : "POST", at(closed ? "disconnect" : "heartbeat")).catch((error) => {
      if (error.status === 404) clearInterval(timer); // the connection or session is gone
    });
  }, Math.max(1, seconds || 20) * 1000);
}

async function act(spec, session) {
  if (spec.action === "connect") return connect(session);
  if (spec.action === "logs" || spec.action === "share") return null; // the page opens a panel
  if (spec.action === "delete") return api("DELETE", path(session) + inNamespace(session));
  return api("PATCH", path(session) + inNamespace(session), { state: spec.state });
}

// The browser's own time zone, offered as the schedule's (the server's default is UTC).
const LOCAL_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

// The schedule the start form asks for, or null when neither cron was given.
function scheduleOf({ start, stop, timeZone }) {
  const wanted = { start: start.trim(), stop: stop.trim() };
  if (!wanted.start && !wanted.stop) return null;
  const schedule = { timeZone: timeZone.trim() || "UTC" };
  for (const key of ["start", "stop"]) if (wanted[key]) schedule[key] = wanted[key];
  return schedule;
}

function ScheduleFields({ value, onChange }) {
  const field = (key, label, hint) => html`
    <div>
      <label for=${`schedule-${key}`}>${label}</label>
      <input id=${`schedule-${key}`} data-testid=${`schedule-${key}`} value=${value[key]}
        aria-describedby=${`schedule-${key}-hint`} spellcheck="false" autocomplete="off"
        onInput=${(e) => onChange({ ...value, [key]: e.currentTarget.value })} />
      <p class="help" id=${`schedule-${key}-hint`}>${hint}</p>
    </div>`;
  return html`
    <details class="schedule" data-testid="schedule-fields">
      <summary>Schedule (optional)</summary>
      ${field("start", "Start at", "Cron of five fields, e.g. 0 8 * * 1-5 (weekdays 08:00).")}
      ${field("stop", "Hibernate at", "Cron of five fields, e.g. 0 18 * * 1-5.")}
      ${field("timeZone", "Time zone", "IANA name the crons are read in, e.g. Europe/Berlin.")}
    </details>`;
}

function StartForm({ onError, onStarted }) {
  const [templates, setTemplates] = useState(null);
  const [chosen, setChosen] = useState("");
  const [busy, setBusy] = useState(false);
  const [schedule, setSchedule] = useState({ start: "", stop: "", timeZone: LOCAL_ZONE });
  useEffect(() => {
    listAll("/api/v1/templates", "templates")
      .then((items) => {
        const names = items.map((t) => t.name).sort();
        setTemplates(names);
        setChosen((c) => c || names[0] || "");
      })
      .catch((error) => {
        setTemplates([]);
        onError(`Templates could not be loaded: ${error.message}`);
      });
  }, []);
  const submit = async (event) => {
    event.preventDefault();
    if (!chosen) return;
    setBusy(true);
    try {
      const body = { template: chosen };
      const timetable = scheduleOf(schedule);
      if (timetable) body.schedule = timetable;
      const created = await api("POST", "/api/v1/sessions", body, {
        "Idempotency-Key": crypto.randomUUID(),
      });
      onStarted(`Session ${created.id} is starting.`);
    } catch (error) {
      onError(`The session could not be started: ${error.message}`);
    } finally {
      setBusy(false);
    }
  };
  return html`
    <form class="start" onSubmit=${submit}>
      <label for="template-select">Template</label>
      <select id="template-select" data-testid="template-select" value=${chosen}
        disabled=${templates === null || templates.length === 0}
        onChange=${(e) => setChosen(e.currentTarget.value)}>
        ${templates === null && html`<option value="">Loading…</option>`}
        ${templates !== null && templates.length === 0 && html`<option value="">No templates</option>`}
        ${(templates || []).map((name) => html`<option value=${name}>${name}</option>`)}
      </select>
      <button type="submit" data-testid="start" disabled=${busy || !chosen}>Start session</button>
      <${ScheduleFields} value=${schedule} onChange=${setSchedule} />
    </form>`;
}

// A session's schedule and its next scheduled start and stop, in the reader's local time.
function Schedule({ session }) {
  const schedule = session.schedule;
  if (!schedule) return html`<span data-testid="schedule"></span>`;
  const crons = [schedule.start && `start ${schedule.start}`, schedule.stop && `stop ${schedule.stop}`]
    .filter(Boolean)
    .join(" · ");
  const next = (key, label) =>
    session[key] &&
    html`<span class="next" data-testid=${key === "nextStart" ? "next-start" : "next-stop"}
      data-at=${session[key]}>${label} <time datetime=${session[key]}>
        ${new Date(session[key]).toLocaleString()}</time></span>`;
  return html`
    <span data-testid="schedule">${crons} (${schedule.timeZone || "UTC"})</span>
    ${next("nextStart", "next start")} ${next("nextStop", "next stop")}`;
}

function Row({ session, specs, warnedDeadline, now, onAction, busy, showUser }) {
  const idle = running(session) ? countdown(session.idleDeadline, now) : "";
  const warn =
    idle !== "" && warnedDeadline === session.idleDeadline && Date.parse(session.idleDeadline) > now;
  return html`
    <tr data-session=${session.id}>
      <th scope="row">${session.id}</th>
      ${showUser && html`<td data-testid="user">${session.user}</td>`}
      <td>${session.template}</td>
      <td data-testid="state">${session.state}</td>
      <td data-testid="phase">${session.phase}</td>
      <td data-testid="access">${session.access}</td>
      <td>
        <span data-testid="idle">${idle}</span>
        ${warn && html`<span class="warning" data-testid="idle-warning" role="status">
          Hibernates soon unless used</span>`}
      </td>
      <td class="schedule-cell"><${Schedule} session=${session} /></td>
      <${RowActions} specs=${specs} item=${session} name=${session.id} busy=${busy}
        onAction=${onAction} />
    </tr>`;
}

// A session's pod log, followed live (/api/v1/ws/logs/{namespace}/{pod}: one text message per
// line). Not reopened when it ends: a log has no snapshot, lines would repeat.
function PodLog({ session, onClose, onReopen, onSignedOut }) {
  const [lines, setLines] = useState([]);
  const pre = useRef(null);
  const heading = useRef(null);
  const url = `/api/v1/ws/logs/${encodeURIComponent(session.namespace)}/${encodeURIComponent(
    session.podName,
  )}${query({ tailLines: LOG_TAIL })}`;
  const socket = useSocket(url, {
    reconnect: false,
    onCredentialsFailed: onSignedOut,
    onMessage: (data) => setLines((all) => [...all, String(data)].slice(-LOG_LINES)),
  });
  useEffect(() => {
    if (heading.current) heading.current.focus();
  }, []);
  useFollowEnd(pre, lines);
  let state = socket.open ? "live" : "connecting";
  if (socket.ended && socket.ended.code === 1000) {
    state = `ended: ${socket.ended.reason || "the log closed"}`;
  } else if (socket.ended && socket.ended.code === 1006 && lines.length === 0) {
    // a refused upgrade reaches the page as 1006: no log yet (409), or no such pod (404)
    state = "not available: the container has written nothing yet, or its pod is gone";
  } else if (socket.ended) {
    state = `closed (${socket.ended.code}${socket.ended.reason ? `: ${socket.ended.reason}` : ""})`;
  }
  return html`
    <section class="panel" data-testid="pod-log-panel" aria-labelledby="pod-log-heading">
      <div class="title-row">
        <h2 id="pod-log-heading" tabindex="-1" ref=${heading}>Log of ${session.id}</h2>
        <span data-testid="pod-log-state" class=${socket.open ? "badge live" : "badge reconnecting"}>
          ${state}</span>
        ${socket.ended &&
        html`<button type="button" data-testid="pod-log-reopen" onClick=${onReopen}>Open again</button>`}
        <button type="button" data-testid="pod-log-close" onClick=${onClose}>Close</button>
      </div>
      <pre data-testid="pod-log" ref=${pre} tabindex="0" aria-label=${`Log lines of ${session.id}`}>${lines.join("\n")}</pre>
    </section>`;
}

export function SessionsPage({ me, onSignedOut }) {
  const feed = useSessionsFeed(onSignedOut);
  const now = useNow();
  const [error, setError] = useState("");
  const [notice, setNotice] = useState("");
  const [busy, setBusy] = useState({});
  const [blocked, setBlocked] = useState(null); // {id, url}: a tab the browser would not open
  const [logOf, setLogOf] = useState(null); // {session, opened}: the pod log shown
  const [termOf, setTermOf] = useState(null); // {session, opened}: the terminal shown
  const [userFilter, setUserFilter] = useState("");
  const [shareOf, setShareOf] = useState(null); // the key of the session whose shares are shown
  const everyone = atLeast(me, "operator");
  const specs = [...ACTIONS, terminalAction(everyone)];
  useEffect(() => {
    document.title = "My sessions · StreamSpace";
  }, []);
  const onAction = async (spec, session) => {
    if (spec.action === "logs") {
      setLogOf({ session, opened: Date.now() });
      return;
    }
    if (spec.action === "terminal") {
      setTermOf({ session, opened: Date.now() });
      return;
    }
    if (spec.action === "share") {
      setShareOf(keyOf(session));
      return;
    }
    const key = keyOf(session);
    setBusy((b) => ({ ...b, [key]: true }));
    setError("");
    setBlocked(null);
    try {
      const url = await act(spec, session);
      if (spec.action === "connect" && url) setBlocked({ id: session.id, url });
      else if (spec.action !== "connect") setNotice(`${spec.label}: ${session.id} — done.`);
    } catch (failure) {
      setError(`${spec.label} ${session.id} failed: ${failure.message}`);
    } finally {
      setBusy((b) => ({ ...b, [key]: false }));
    }
  };
  const wanted = userFilter.trim();
  const sessions = feed.sessions && wanted && everyone
    ? feed.sessions.filter((s) => s.user === wanted)
    : feed.sessions;
  const heading = me.role === "user" ? "My sessions" : "Sessions";
  const sharing = shareOf && (feed.sessions || []).find((s) => keyOf(s) === shareOf);
  return html`
    <section aria-labelledby="sessions-heading">
      <div class="title-row">
        <h1 id="sessions-heading">${heading}</h1>
        <span data-testid="live" class=${feed.open ? "badge live" : "badge reconnecting"}>
          ${feed.open ? "live" : "reconnecting"}</span>
      </div>
      <${StartForm} onError=${setError} onStarted=${(text) => { setError(""); setNotice(text); }} />
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <p class="notice" role="status">${notice}</p>
      ${blocked &&
      html`<p class="notice">The browser did not open a new tab:
        <a href=${blocked.url} target="_blank" rel="noopener noreferrer"
          data-testid="open-session">open ${blocked.id}</a>.</p>`}
      ${everyone &&
      html`<form class="filters" role="search" onSubmit=${(e) => e.preventDefault()}
        aria-label="Filter the sessions">
        <div>
          <label for="session-user">User</label>
          <input id="session-user" type="search" data-testid="session-user" value=${userFilter}
            aria-describedby="session-user-hint" onInput=${(e) => setUserFilter(e.currentTarget.value)} />
          <p class="help" id="session-user-hint">Only this user's sessions (empty: everyone's).</p>
        </div>
      </form>`}
      <table data-testid="sessions">
        <caption class="visually-hidden">${heading}, updated live</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>${everyone && html`<th scope="col">User</th>`}
            <th scope="col">Template</th><th scope="col">State</th>
            <th scope="col">Phase</th><th scope="col">Access</th><th scope="col">Idle</th>
            <th scope="col">Schedule</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          ${(sessions || []).map(
            (s) => html`<${Row} key=${keyOf(s)} session=${s} now=${now}
              specs=${specs} warnedDeadline=${feed.warnings[keyOf(s)]} busy=${!!busy[keyOf(s)]} onAction=${onAction}
              showUser=${everyone} />`,
          )}
        </tbody>
      </table>
      ${sessions === null && html`<p class="empty">Loading sessions…</p>`}
      ${sessions !== null && sessions.length === 0 &&
      html`<p class="empty">${wanted && everyone ? `No sessions of ${wanted}.` : "No sessions yet: start one above."}</p>`}
      ${sharing &&
      html`<${SharePanel} key=${shareOf} session=${sharing} onClose=${() => setShareOf(null)}
        onDone=${(text) => { setError(""); setNotice(text); }} />`}
      ${logOf &&
      html`<${PodLog} key=${`${keyOf(logOf.session)}@${logOf.opened}`} session=${logOf.session}
        onClose=${() => setLogOf(null)} onSignedOut=${onSignedOut}
        onReopen=${() => setLogOf({ session: logOf.session, opened: Date.now() })} />`}
      ${termOf &&
      html`<${TerminalPanel} key=${`${keyOf(termOf.session)}@${termOf.opened}`}
        session=${termOf.session} onClose=${() => setTermOf(null)} onSignedOut=${onSignedOut}
        onReopen=${() => setTermOf({ session: termOf.session, opened: Date.now() })} />`}
    </section>`;
}
