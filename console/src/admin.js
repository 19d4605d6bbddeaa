// Admin (admins): the cluster's figures live (the cluster WebSocket), API keys (list, create —
// the key is shown this once —, revoke) and the audit log (newest first, filtered by user and
// action, paged with the list's continue tokens).
import { useEffect, useState } from "preact/hooks";

import { api, get, listAll, query } from "./api.js";
import { html } from "./html.js";
import { useClusterFeed } from "./live.js";

const KEYS = "/api/v1/admin/apikeys";
const AUDIT = "/api/v1/admin/audit";
const AUDIT_PAGE = 50;
const ROLES = ["user", "operator", "admin"];
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");

const FIGURES = [
  { key: "running", label: "Running sessions", of: (m) => m.sessions && m.sessions.running },
  { key: "pending", label: "Pending sessions", of: (m) => m.sessions && m.sessions.pending },
  { key: "hibernated", label: "Hibernated sessions", of: (m) => m.sessions && m.sessions.hibernated },
  { key: "total", label: "All sessions", of: (m) => m.sessions && m.sessions.total },
  { key: "connections", label: "Active connections", of: (m) => m.activeConnections },
  { key: "repositories", label: "Repositories", of: (m) => m.repositories },
  { key: "templates", label: "Templates", of: (m) => m.templates },
  { key: "catalog", label: "Catalog templates", of: (m) => m.catalogTemplates },
];

function Cluster({ onSignedOut }) {
  const feed = useClusterFeed(onSignedOut);
  const metrics = feed.metrics;
  return html`
    <section aria-labelledby="cluster-heading">
      <div class="title-row">
        <h2 id="cluster-heading">Cluster</h2>
        <span data-testid="cluster-live" class=${feed.open ? "badge live" : "badge reconnecting"}>
          ${feed.open ? "live" : "reconnecting"}</span>
        ${feed.at && html`<span class="help">as of ${when(feed.at)}</span>`}
      </div>
      ${metrics === null
        ? html`<p class="empty">Waiting for the cluster's figures…</p>`
        : html`<dl class="figures" data-testid="cluster-metrics">
            ${FIGURES.map(
              (f) => html`<div><dt>${f.label}</dt>
                <dd data-testid=${`metric-${f.key}`}>${f.of(metrics) ?? "—"}</dd></div>`,
            )}
          </dl>`}
    </section>`;
}

function ApiKeys({ onCreated }) {
  const [keys, setKeys] = useState(null);
  const [form, setForm] = useState({ user: "", role: "user", name: "" });
  const [created, setCreated] = useState(null); // the new key, shown once
  const [problems, setProblems] = useState({});
  const [error, setError] = useState("");
  const [notice, setNotice] = useState("");
  const [busy, setBusy] = useState(false);
  const [reads, setReads] = useState(0);
  useEffect(() => {
    listAll(KEYS, "apiKeys").then(setKeys, (failure) =>
      setError(`The API keys could not be loaded: ${failure.message}`));
  }, [reads]);
  const set = (key) => (e) => setForm((f) => ({ ...f, [key]: e.currentTarget.value }));
  const create = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError("");
    setProblems({});
    setCreated(null);
    try {
      const body = { user: form.user.trim(), role: form.role };
      if (form.name.trim()) body.name = form.name.trim();
      setCreated(await api("POST", KEYS, body));
      setForm({ user: "", role: "user", name: "" });
      setNotice("");
      setReads((n) => n + 1);
      onCreated();
    } catch (failure) {
      setProblems(failure.fields);
      setError(`The key could not be created: ${failure.message}`);
    } finally {
      setBusy(false);
    }
  };
  const revoke = async (key) => {
    setError("");
    try {
      await api("DELETE", `${KEYS}/${encodeURIComponent(key.id)}`);
      setNotice(`Key ${key.prefix}… of ${key.user} revoked.`);
      setReads((n) => n + 1);
      onCreated();
    } catch (failure) {
      setError(`Revoking ${key.prefix}… failed: ${failure.message}`);
    }
  };
  const problem = (field) =>
    problems[field] && html`<p class="error field-error" id=${`key-${field}-error`}>${problems[field]}</p>`;
  return html`
    <section aria-labelledby="keys-heading">
      <h2 id="keys-heading">API keys</h2>
      <form class="add" onSubmit=${create} aria-label="Create an API key">
        <div class="fields">
          <div class="field">
            <label for="key-user">User</label>
            <input id="key-user" value=${form.user} required autocomplete="off" spellcheck=${false}
              aria-invalid=${problems.user ? "true" : "false"}
              aria-describedby=${problems.user ? "key-user-error" : undefined} onInput=${set("user")} />
            ${problem("user")}
          </div>
          <div class="field">
            <label for="key-role">Role</label>
            <select id="key-role" value=${form.role} onChange=${set("role")}>
              ${ROLES.map((r) => html`<option value=${r}>${r}</option>`)}
            </select>
            ${problem("role")}
          </div>
          <div class="field">
            <label for="key-name">Name</label>
            <input id="key-name" value=${form.name} autocomplete="off" onInput=${set("name")}
              aria-describedby="key-name-hint" />
            <p class="help" id="key-name-hint">Optional: what the key is for.</p>
          </div>
        </div>
        <button type="submit" data-testid="key-create" disabled=${busy || !form.user.trim()}>
          Create key</button>
      </form>
      ${created &&
      html`<div class="new-key" role="status">
        <p>The key for ${created.user} (${created.role}); copy it now, it is not shown again:</p>
        <code data-testid="new-key">${created.key}</code>
        <button type="button" data-testid="new-key-done" onClick=${() => setCreated(null)}>Done</button>
      </div>`}
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <p class="notice" role="status">${notice}</p>
      <table data-testid="api-keys">
        <caption class="visually-hidden">API keys (never the keys themselves)</caption>
        <thead>
          <tr>
            <th scope="col">Prefix</th><th scope="col">User</th><th scope="col">Role</th>
            <th scope="col">Name</th><th scope="col">Created</th><th scope="col">Last used</th>
            <th scope="col">Revoked</th><th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          ${(keys || []).map(
            (k) => html`<tr key=${k.id} data-key=${k.id} data-prefix=${k.prefix}>
              <th scope="row"><code>${k.prefix}…</code></th>
              <td data-testid="key-user">${k.user}</td>
              <td>${k.role}</td>
              <td>${k.name}</td>
              <td>${when(k.createdAt)}</td>
              <td>${when(k.lastUsedAt)}</td>
              <td data-testid="key-revoked">${when(k.revokedAt)}</td>
              <td class="actions">
                <button type="button" data-action="revoke" aria-label=${`Revoke ${k.prefix} of ${k.user}`}
                  disabled=${!!k.revokedAt} onClick=${() => revoke(k)}>Revoke</button>
              </td>
            </tr>`,
          )}
        </tbody>
      </table>
      ${keys !== null && keys.length === 0 && html`<p class="empty">No API keys.</p>`}
    </section>`;
}

function AuditLog({ reads }) {
  const [filters, setFilters] = useState({ user: "", action: "" });
  const [applied, setApplied] = useState({ user: "", action: "" });
  const [tokens, setTokens] = useState([null]); // the continue token of each page seen
  const [result, setResult] = useState(null);
  const [error, setError] = useState("");
  const [own, setOwn] = useState(0);
  const token = tokens[tokens.length - 1];
  useEffect(() => {
    let current = true;
    get(AUDIT + query({ ...applied, limit: AUDIT_PAGE, continue: token })).then(
      (answer) => {
        if (!current) return;
        setResult(answer);
        setError("");
      },
      (failure) => current && setError(`The audit log could not be loaded: ${failure.message}`),
    );
    return () => {
      current = false;
    };
  }, [applied, token, reads, own]);
  const filter = (event) => {
    event.preventDefault();
    setApplied({ user: filters.user.trim(), action: filters.action.trim() });
    setTokens([null]);
  };
  const set = (key) => (e) => setFilters((f) => ({ ...f, [key]: e.currentTarget.value }));
  const entries = result ? result.entries || [] : [];
  return html`
    <section aria-labelledby="audit-heading">
      <div class="title-row">
        <h2 id="audit-heading">Audit log</h2>
        <button type="button" data-testid="audit-refresh" onClick=${() => setOwn((n) => n + 1)}>
          Refresh</button>
      </div>
      <form class="filters" role="search" onSubmit=${filter} aria-label="Filter the audit log">
        <div>
          <label for="audit-user">User</label>
          <input id="audit-user" data-testid="audit-user-filter" value=${filters.user} onInput=${set("user")} />
        </div>
        <div>
          <label for="audit-action">Action</label>
          <input id="audit-action" data-testid="audit-action-filter" value=${filters.action}
            onInput=${set("action")} aria-describedby="audit-action-hint" />
          <p class="help" id="audit-action-hint">create, delete, revoke, sync, configure…</p>
        </div>
        <div class="submit"><button type="submit" data-testid="audit-filter">Filter</button></div>
      </form>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <table data-testid="audit">
        <caption class="visually-hidden">Audit log, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Time</th><th scope="col">User</th><th scope="col">Action</th>
            <th scope="col">Resource</th><th scope="col">Changes</th>
          </tr>
        </thead>
        <tbody>
          ${entries.map(
            (e) => html`<tr key=${e.id} data-audit=${e.id}>
              <th scope="row">${when(e.timestamp)}</th>
              <td data-testid="audit-user">${e.user || ""}</td>
              <td data-testid="audit-action">${e.action}</td>
              <td data-testid="audit-resource">${e.resourceType}${e.resourceId ? ` ${e.resourceId}` : ""}</td>
              <td><code class="changes">${Object.keys(e.changes || {}).length ? JSON.stringify(e.changes) : ""}</code></td>
            </tr>`,
          )}
        </tbody>
      </table>
      ${result !== null && entries.length === 0 && html`<p class="empty">No audit entries match.</p>`}
      <nav class="pager" aria-label="Audit log pages">
        <button type="button" data-testid="audit-newer" disabled=${tokens.length <= 1}
          onClick=${() => setTokens((t) => t.slice(0, -1))}>Newer</button>
        <span aria-live="polite">${result ? `${result.total} entries` : ""}</span>
        <button type="button" data-testid="audit-older" disabled=${!result || !result.continue}
          onClick=${() => setTokens((t) => [...t, result.continue])}>Older</button>
      </nav>
    </section>`;
}

export function AdminPage({ onSignedOut }) {
  const [changes, setChanges] = useState(0); // a key made or revoked: the audit log reads again
  useEffect(() => {
    document.title = "Admin · StreamSpace";
  }, []);
  return html`
    <section aria-labelledby="admin-heading">
      <h1 id="admin-heading">Admin</h1>
      <${Cluster} onSignedOut=${onSignedOut} />
      <${ApiKeys} onCreated=${() => setChanges((n) => n + 1)} />
      <${AuditLog} reads=${changes} />
    </section>`;
}
