// "My sessions": the caller's sessions, live over the sessions WebSocket, their actions (REST),
// and a form that starts a new one from a Template.
import { useEffect, useState } from "preact/hooks";

import { api, get, listAll, query } from "./api.js";
import { html } from "./html.js";
import { countdown, keyOf, useNow, useSessionsFeed } from "./live.js";

const path = (s) => `/api/v1/sessions/${encodeURIComponent(s.id)}`;
const inNamespace = (s) => query({ namespace: s.namespace });
const running = (s) => s.state === "running" && s.phase === "Running";

// Each action: its label, when it may be used, and what it asks of the API.
const ACTIONS = [
  { action: "connect", label: "Connect", enabled: running },
  { action: "hibernate", label: "Hibernate", enabled: (s) => s.state === "running", state: "hibernated" },
  { action: "wake", label: "Wake", enabled: (s) => s.state === "hibernated", state: "running" },
  { action: "terminate", label: "Terminate", enabled: (s) => s.state !== "terminated", state: "terminated" },
  { action: "delete", label: "Delete", enabled: () => true },
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
    return null;
  } catch (error) {
    if (tab) tab.close();
    throw error;
  }
}

async function act(spec, session) {
  if (spec.action === "connect") return connect(session);
  if (spec.action === "delete") return api("DELETE", path(session) + inNamespace(session));
  return api("PATCH", path(session) + inNamespace(session), { state: spec.state });
}

function StartForm({ onError, onStarted }) {
  const [templates, setTemplates] = useState(null);
  const [chosen, setChosen] = useState("");
  const [busy, setBusy] = useState(false);
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
      const created = await api("POST", "/api/v1/sessions", { template: chosen }, {
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
    </form>`;
}

function Row({ session, warnedDeadline, now, onAction, busy }) {
  const idle = running(session) ? countdown(session.idleDeadline, now) : "";
  const warn =
    idle !== "" && warnedDeadline === session.idleDeadline && Date.parse(session.idleDeadline) > now;
  return html`
    <tr data-session=${session.id}>
      <th scope="row">${session.id}</th>
      <td>${session.template}</td>
      <td data-testid="state">${session.state}</td>
      <td data-testid="phase">${session.phase}</td>
      <td>
        <span data-testid="idle">${idle}</span>
        ${warn && html`<span class="warning" data-testid="idle-warning" role="status">
          Hibernates soon unless used</span>`}
      </td>
      <td class="actions">
        ${ACTIONS.map(
          (spec) => html`<button type="button" data-action=${spec.action}
            aria-label=${`${spec.label} ${session.id}`}
            disabled=${busy || !spec.enabled(session)}
            onClick=${() => onAction(spec, session)}>${spec.label}</button>`,
        )}
      </td>
    </tr>`;
}

export function SessionsPage({ me, onSignedOut }) {
  const feed = useSessionsFeed(onSignedOut);
  const now = useNow();
  const [error, setError] = useState("");
  const [notice, setNotice] = useState("");
  const [busy, setBusy] = useState({});
  const [blocked, setBlocked] = useState(null); // {id, url}: a tab the browser would not open
  useEffect(() => {
    document.title = "My sessions · StreamSpace";
  }, []);
  const onAction = async (spec, session) => {
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
  const sessions = feed.sessions;
  const heading = me.role === "user" ? "My sessions" : "Sessions";
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
      <table data-testid="sessions">
        <caption class="visually-hidden">${heading}, updated live</caption>
        <thead>
          <tr>
            <th scope="col">Name</th><th scope="col">Template</th><th scope="col">State</th>
            <th scope="col">Phase</th><th scope="col">Idle</th><th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          ${(sessions || []).map(
            (s) => html`<${Row} key=${keyOf(s)} session=${s} now=${now}
              warnedDeadline=${feed.warnings[keyOf(s)]} busy=${!!busy[keyOf(s)]} onAction=${onAction} />`,
          )}
        </tbody>
      </table>
      ${sessions === null && html`<p class="empty">Loading sessions…</p>`}
      ${sessions !== null && sessions.length === 0 && html`<p class="empty">No sessions yet: start one above.</p>`}
    </section>`;
}
