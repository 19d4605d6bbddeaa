// Plugins: the installed plugins (re-read every few seconds: the operator moves their phase) and
// the plugin catalog, for everyone; for operators and admins install, enable and disable,
// configure (a form generated from the manifest's configSchema), uninstall and the delivery
// log; for admins approve (a plugin PendingApproval) and redeliver (a dead delivery).
import { useEffect, useRef, useState } from "preact/hooks";

import { api, get, listAll, query } from "./api.js";
import { html, RowActions } from "./html.js";
import { atLeast } from "./roles.js";
import { SchemaForm } from "./schemaform.js";

const BASE = "/api/v1/plugins";
const REFRESH = 3000; // ms between reads of the installed plugins while the page is shown
const CATALOG_SIZE = 100; // the catalog's first entries shown (a search narrows them)
const DELIVERY_PAGE = 50;
const path = (p) => `${BASE}/${encodeURIComponent(p.id)}`;
const catalogEntry = (id) => get(`${BASE}/catalog/${encodeURIComponent(id)}`);

// Each row action: who may use it, when, and what it asks of the API (null: opens a panel).
const ACTIONS = [
  { action: "enable", label: "Enable", role: "operator", when: (p) => !p.enabled,
    call: (p) => api("POST", `${path(p)}/enable`) },
  { action: "disable", label: "Disable", role: "operator", when: (p) => p.enabled,
    call: (p) => api("POST", `${path(p)}/disable`) },
  { action: "approve", label: "Approve", role: "admin", when: (p) => p.phase === "PendingApproval",
    call: (p) => api("POST", `${path(p)}/approve`) },
  { action: "configure", label: "Configure", role: "operator", when: (p) => p.catalogId != null,
    call: null },
  { action: "deliveries", label: "Deliveries", role: "operator", when: () => true, call: null },
  { action: "uninstall", label: "Uninstall", role: "operator", when: () => true,
    call: (p) => api("DELETE", path(p)) },
];

function InstalledRow({ plugin, me, busy, onAction }) {
  const actions = ACTIONS.filter((a) => atLeast(me, a.role) && a.when(plugin));
  return html`
    <tr data-plugin=${plugin.id}>
      <th scope="row">${plugin.id}</th>
      <td>${plugin.pluginName} ${plugin.version}</td>
      <td>${plugin.type}</td>
      <td data-testid="plugin-enabled">${plugin.enabled ? "yes" : "no"}</td>
      <td data-testid="plugin-phase">${plugin.phase}</td>
      <td data-testid="plugin-message">${plugin.message || ""}</td>
      <${RowActions} specs=${actions} item=${plugin} name=${plugin.id} busy=${busy}
        onAction=${onAction} />
    </tr>`;
}

function CatalogItem({ entry, canInstall, onInstall }) {
  return html`
    <li class="card" data-testid="plugin-catalog-item" data-name=${entry.name}>
      <h3>${entry.displayName || entry.name}</h3>
      <p class="meta">
        <span>${entry.name} ${entry.version}</span>
        ${entry.type && html`<span>${entry.type}</span>`}
        ${entry.category && html`<span>${entry.category}</span>`}
      </p>
      ${entry.description && html`<p>${entry.description}</p>`}
      ${entry.permissions.length > 0 &&
      html`<p class="meta">Permissions: ${entry.permissions.map((p) => `${p.name} (${p.risk})`).join(", ")}</p>`}
      ${canInstall &&
      html`<button type="button" data-action="install" aria-label=${`Install ${entry.displayName || entry.name}`}
        onClick=${() => onInstall(entry)}>Install</button>`}
    </li>`;
}

// The form of a panel: the entry's configSchema, read from the catalog when the panel opens.
function useSchema(catalogId) {
  const [entry, setEntry] = useState(null);
  const [error, setError] = useState("");
  useEffect(() => {
    catalogEntry(catalogId).then(setEntry, (failure) =>
      setError(`The plugin's settings could not be loaded: ${failure.message}`));
  }, [catalogId]);
  return [entry, error];
}

function InstallPanel({ entry, onDone }) {
  const [detail, error] = useSchema(entry.id);
  const [name, setName] = useState(entry.name);
  const install = async (config) => {
    const body = { pluginId: entry.id, config };
    if (name.trim()) body.name = name.trim();
    const installed = await api("POST", `${BASE}/install`, body);
    onDone(`Plugin ${installed.id} installed.`, installed);
  };
  return html`
    <h2 tabindex="-1" data-testid="plugin-panel-heading">Install ${entry.displayName || entry.name}</h2>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${detail &&
    html`<${SchemaForm} idPrefix="install" testid="plugin-install-form" schema=${detail.configSchema}
      config=${{}} submitLabel="Install" onSubmit=${install}>
      <div class="field">
        <label for="install-name">Name</label>
        <input id="install-name" value=${name} autocomplete="off" spellcheck=${false}
          onInput=${(e) => setName(e.currentTarget.value)} />
      </div>
    <//>`}`;
}

function ConfigurePanel({ plugin, onDone }) {
  const [detail, error] = useSchema(plugin.catalogId);
  const save = async (config) => {
    await api("PUT", `${path(plugin)}/config`, { config });
    onDone(`The configuration of ${plugin.id} was saved.`);
  };
  return html`
    <h2 tabindex="-1" data-testid="plugin-panel-heading">Configure ${plugin.id}</h2>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${detail &&
    html`<${SchemaForm} idPrefix="config" testid="plugin-config-form" schema=${detail.configSchema}
      config=${plugin.config} secretConfig=${plugin.secretConfig} submitLabel="Save"
      onSubmit=${save} />`}`;
}

function DeliveriesPanel({ plugin, me }) {
  const [page, setPage] = useState(1);
  const [log, setLog] = useState(null);
  const [error, setError] = useState("");
  const [notice, setNotice] = useState("");
  const [reads, setReads] = useState(0);
  useEffect(() => {
    let current = true;
    get(`${path(plugin)}/deliveries${query({ page, limit: DELIVERY_PAGE })}`).then(
      (answer) => current && setLog(answer),
      (failure) => current && setError(`The delivery log could not be loaded: ${failure.message}`),
    );
    return () => {
      current = false;
    };
  }, [page, reads]);
  const redeliver = async (d) => {
    setError("");
    try {
      await api("POST", `${path(plugin)}/deliveries/${encodeURIComponent(d.id)}/redeliver`);
      setNotice(`Delivery ${d.id} goes again.`);
      setReads((n) => n + 1);
    } catch (failure) {
      setError(`Redelivering ${d.id} failed: ${failure.message}`);
    }
  };
  const pages = log ? Math.max(1, Math.ceil((log.total || 0) / DELIVERY_PAGE)) : 1;
  const rows = log ? log.deliveries || [] : [];
  return html`
    <div class="title-row">
      <h2 tabindex="-1" data-testid="plugin-panel-heading">Deliveries of ${plugin.id}</h2>
      <button type="button" data-testid="deliveries-refresh" onClick=${() => setReads((n) => n + 1)}>
        Refresh</button>
    </div>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    <p class="notice" role="status">${notice}</p>
    <table data-testid="deliveries">
      <caption class="visually-hidden">Deliveries of ${plugin.id}, newest first</caption>
      <thead>
        <tr>
          <th scope="col">Event</th><th scope="col">Subject</th><th scope="col">Status</th>
          <th scope="col">Attempts</th><th scope="col">Last error</th><th scope="col">Latency</th>
          <th scope="col">Created</th><th scope="col">Actions</th>
        </tr>
      </thead>
      <tbody>
        ${rows.map(
          (d) => html`<tr key=${d.id} data-delivery=${d.id}>
            <th scope="row">${d.type}</th>
            <td>${d.subject}</td>
            <td data-testid="delivery-status">${d.status}</td>
            <td data-testid="delivery-attempts">${d.attempts}</td>
            <td data-testid="delivery-error">${d.lastError || ""}${d.lastStatus ? ` (HTTP ${d.lastStatus})` : ""}</td>
            <td>${d.latencyMs == null ? "" : `${d.latencyMs} ms`}</td>
            <td>${d.createdAt ? new Date(d.createdAt).toLocaleString() : ""}</td>
            <td class="actions">
              ${d.status === "dead" && atLeast(me, "admin") &&
              html`<button type="button" data-action="redeliver" aria-label=${`Redeliver ${d.id}`}
                onClick=${() => redeliver(d)}>Redeliver</button>`}
            </td>
          </tr>`,
        )}
      </tbody>
    </table>
    ${log !== null && rows.length === 0 && html`<p class="empty">No deliveries yet.</p>`}
    <nav class="pager" aria-label="Delivery pages">
      <button type="button" disabled=${page <= 1} onClick=${() => setPage(page - 1)}>Previous</button>
      <span aria-live="polite">Page ${page} of ${pages}</span>
      <button type="button" disabled=${page >= pages} onClick=${() => setPage(page + 1)}>Next</button>
    </nav>`;
}

export function PluginsPage({ me }) {
  const [installed, setInstalled] = useState(null);
  const [catalog, setCatalog] = useState(null);
  const [search, setSearch] = useState("");
  const [error, setError] = useState("");
  const [notice, setNotice] = useState("");
  const [busy, setBusy] = useState({});
  const [panel, setPanel] = useState(null); // {kind: install|configure|deliveries, item}
  const [signing, setSigning] = useState(null); // {id, secret}: shown once, after an install
  const [reads, setReads] = useState(0);
  const panelRef = useRef(null);
  const operator = atLeast(me, "operator");
  useEffect(() => {
    document.title = "Plugins · StreamSpace";
  }, []);
  useEffect(() => {
    let current = true;
    const read = () =>
      listAll(`${BASE}/installed`, "plugins").then(
        (items) => current && setInstalled(items),
        (failure) => current && setError(`The installed plugins could not be loaded: ${failure.message}`),
      );
    read();
    const id = setInterval(read, REFRESH);
    return () => {
      current = false;
      clearInterval(id);
    };
  }, [reads]);
  useEffect(() => {
    let current = true;
    const id = setTimeout(() => {
      get(`${BASE}/catalog${query({ q: search.trim(), limit: CATALOG_SIZE })}`).then(
        (answer) => current && setCatalog(answer),
        (failure) => current && setError(`The plugin catalog could not be loaded: ${failure.message}`),
      );
    }, search ? 250 : 0);
    return () => {
      current = false;
      clearTimeout(id);
    };
  }, [search]);
  // a panel takes the focus when it opens, so the keyboard continues there
  useEffect(() => {
    const heading = panelRef.current && panelRef.current.querySelector("h2");
    if (heading) heading.focus();
  }, [panel]);

  const open = (kind, item) => setPanel({ kind, item, key: `${kind}/${item.id}/${Date.now()}` });
  const done = (text, installed) => {
    setSigning(installed && installed.signingSecret
      ? { id: installed.id, secret: installed.signingSecret } : null);
    setPanel(null);
    setError("");
    setNotice(text);
    setReads((n) => n + 1);
  };
  const onAction = async (spec, plugin) => {
    if (spec.call === null) {
      open(spec.action, plugin);
      return;
    }
    setBusy((b) => ({ ...b, [plugin.id]: true }));
    setError("");
    try {
      await spec.call(plugin);
      setNotice(`${spec.label}: ${plugin.id} — done.`);
      if (spec.action === "uninstall" && panel && panel.item.id === plugin.id) setPanel(null);
      setReads((n) => n + 1);
    } catch (failure) {
      setError(`${spec.label} ${plugin.id} failed: ${failure.message}`);
    } finally {
      setBusy((b) => ({ ...b, [plugin.id]: false }));
    }
  };
  const entries = catalog ? catalog.plugins || [] : [];
  return html`
    <section aria-labelledby="plugins-heading">
      <h1 id="plugins-heading">Plugins</h1>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <p class="notice" role="status">${notice}</p>
      ${signing &&
      html`<div class="new-key">
        <p>The signing secret of ${signing.id} (its deliveries are signed with it); copy it now,
          it is not shown again:</p>
        <code data-testid="signing-secret">${signing.secret}</code>
        <button type="button" onClick=${() => setSigning(null)}>Done</button>
      </div>`}
      <h2>Installed</h2>
      <table data-testid="plugins">
        <caption class="visually-hidden">Installed plugins</caption>
        <thead>
          <tr>
            <th scope="col">Name</th><th scope="col">Plugin</th><th scope="col">Type</th>
            <th scope="col">Enabled</th><th scope="col">Phase</th><th scope="col">Message</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          ${(installed || []).map(
            (p) => html`<${InstalledRow} key=${p.id} plugin=${p} me=${me} busy=${!!busy[p.id]}
              onAction=${onAction} />`,
          )}
        </tbody>
      </table>
      ${installed === null && !error && html`<p class="empty">Loading plugins…</p>`}
      ${installed !== null && installed.length === 0 && html`<p class="empty">No plugins installed.</p>`}
      ${panel &&
      html`<section class="panel" data-testid="plugin-panel" ref=${panelRef} aria-label="Plugin details">
        ${panel.kind === "install" && html`<${InstallPanel} key=${panel.key} entry=${panel.item} onDone=${done} />`}
        ${panel.kind === "configure" && html`<${ConfigurePanel} key=${panel.key} plugin=${panel.item} onDone=${done} />`}
        ${panel.kind === "deliveries" && html`<${DeliveriesPanel} key=${panel.key} plugin=${panel.item} me=${me} />`}
        <button type="button" data-testid="plugin-panel-close" onClick=${() => setPanel(null)}>Close</button>
      </section>`}
      <h2>Catalog</h2>
      <form class="filters" role="search" onSubmit=${(e) => e.preventDefault()}>
        <div>
          <label for="plugin-search">Search plugins</label>
          <input id="plugin-search" type="search" data-testid="plugin-search" value=${search}
            onInput=${(e) => setSearch(e.currentTarget.value)} />
        </div>
      </form>
      ${catalog !== null && entries.length === 0 && html`<p class="empty">No plugin in the catalog matches.</p>`}
      <ul class="cards" aria-label="Plugin catalog">
        ${entries.map(
          (entry) => html`<${CatalogItem} key=${entry.id} entry=${entry} canInstall=${operator}
            onInstall=${(e) => open("install", e)} />`,
        )}
      </ul>
      ${catalog && catalog.total > entries.length &&
      html`<p class="help">${entries.length} of ${catalog.total} shown: search to narrow them.</p>`}
    </section>`;
}
