// Repositories (operators and admins): the template repositories with their sync status and
// last error, re-read every few seconds (the operator syncs them; there is no stream of them),
// sync one or all, delete one, and a form that adds one with its credentials.
import { useEffect, useState } from "preact/hooks";

import { api, listAll } from "./api.js";
import { html, RowActions } from "./html.js";

const REFRESH = 3000; // ms between reads of the list while the page is shown
const BASE = "/api/v1/repositories";
const AUTH_TYPES = [
  { value: "none", label: "None (public)" },
  { value: "token", label: "Token" },
  { value: "basic", label: "User name and password" },
  { value: "ssh", label: "SSH key" },
];
// The credential fields of each auth type: the request's field, its label, the input's kind.
const CREDENTIALS = {
  none: [],
  token: [{ field: "token", label: "Token", kind: "password" }],
  basic: [
    { field: "username", label: "User name", kind: "text" },
    { field: "password", label: "Password", kind: "password" },
  ],
  ssh: [
    { field: "sshPrivateKey", label: "SSH private key", kind: "textarea" },
    { field: "knownHosts", label: "Known hosts", kind: "textarea" },
  ],
};
const EMPTY = { name: "", url: "", branch: "", authType: "none", token: "", username: "",
  password: "", sshPrivateKey: "", knownHosts: "" };

// An input with its label and the problem the server found with it (a 422's field), if any.
export function Field({ id, label, value, onInput, problem, kind = "text", required, hint }) {
  const described = [hint && `${id}-hint`, problem && `${id}-error`].filter(Boolean).join(" ");
  const common = {
    id,
    name: id,
    value,
    required,
    "aria-invalid": problem ? "true" : "false",
    "aria-describedby": described || undefined,
    onInput: (e) => onInput(e.currentTarget.value),
  };
  return html`
    <div class="field">
      <label for=${id}>${label}</label>
      ${kind === "textarea"
        ? html`<textarea ...${common} rows="4" spellcheck=${false}></textarea>`
        : html`<input ...${common} type=${kind} autocomplete=${kind === "password" ? "new-password" : "off"}
            spellcheck=${false} />`}
      ${hint && html`<p class="help" id=${`${id}-hint`}>${hint}</p>`}
      ${problem && html`<p class="error field-error" id=${`${id}-error`}>${problem}</p>`}
    </div>`;
}

function AddForm({ onAdded }) {
  const [form, setForm] = useState(EMPTY);
  const [problems, setProblems] = useState({});
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const set = (key) => (value) => setForm((f) => ({ ...f, [key]: value }));
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError("");
    setProblems({});
    const body = { url: form.url.trim(), authType: form.authType };
    if (form.name.trim()) body.name = form.name.trim();
    if (form.branch.trim()) body.branch = form.branch.trim();
    for (const { field } of CREDENTIALS[form.authType]) if (form[field]) body[field] = form[field];
    try {
      const created = await api("POST", BASE, body);
      setForm(EMPTY);
      onAdded(`Repository ${created.name} added; it syncs now.`);
    } catch (failure) {
      setProblems(failure.fields);
      setError(`The repository could not be added: ${failure.message}`);
    } finally {
      setBusy(false);
    }
  };
  return html`
    <form class="add" aria-labelledby="repo-add-heading" onSubmit=${submit}>
      <h2 id="repo-add-heading">Add a repository</h2>
      <div class="fields">
        <${Field} id="repo-url" label="Git URL" value=${form.url} onInput=${set("url")} required
          problem=${problems.url} hint="https://…, ssh://… or git@host:path" />
        <${Field} id="repo-name" label="Name" value=${form.name} onInput=${set("name")}
          problem=${problems.name} hint="Optional: made from the URL when empty" />
        <${Field} id="repo-branch" label="Branch" value=${form.branch} onInput=${set("branch")}
          problem=${problems.branch} hint="Optional: the default branch when empty" />
        <div class="field">
          <label for="repo-auth-type">Authentication</label>
          <select id="repo-auth-type" value=${form.authType}
            aria-invalid=${problems.authType ? "true" : "false"}
            aria-describedby=${problems.authType ? "repo-auth-type-error" : undefined}
            onChange=${(e) => set("authType")(e.currentTarget.value)}>
            ${AUTH_TYPES.map((t) => html`<option value=${t.value}>${t.label}</option>`)}
          </select>
          ${problems.authType &&
          html`<p class="error field-error" id="repo-auth-type-error">${problems.authType}</p>`}
        </div>
        ${CREDENTIALS[form.authType].map(
          (c) => html`<${Field} id=${`repo-${c.field}`} label=${c.label} kind=${c.kind}
            value=${form[c.field]} onInput=${set(c.field)} problem=${problems[c.field]} />`,
        )}
      </div>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <button type="submit" data-testid="repo-add" disabled=${busy || !form.url.trim()}>
        Add repository</button>
    </form>`;
}

const ROW_ACTIONS = [
  { action: "sync", label: "Sync" },
  { action: "delete", label: "Delete" },
];

function Row({ repo, busy, onAction }) {
  return html`
    <tr data-repository=${repo.name}>
      <th scope="row">${repo.name}</th>
      <td class="url">${repo.url}</td>
      <td>${repo.branch || ""}</td>
      <td data-testid="repo-status">${repo.status || "pending"}</td>
      <td data-testid="repo-templates">${repo.templateCount ?? ""}</td>
      <td>${repo.lastSync ? new Date(repo.lastSync).toLocaleString() : ""}</td>
      <td data-testid="repo-error" class="error">${repo.status === "failed" ? repo.message : ""}</td>
      <${RowActions} specs=${ROW_ACTIONS} item=${repo} name=${repo.name} busy=${busy}
        onAction=${onAction} />
    </tr>`;
}

export function RepositoriesPage() {
  const [repos, setRepos] = useState(null);
  const [error, setError] = useState("");
  const [notice, setNotice] = useState("");
  const [busy, setBusy] = useState({});
  const [reads, setReads] = useState(0); // bumped to read the list at once
  useEffect(() => {
    document.title = "Repositories · StreamSpace";
  }, []);
  useEffect(() => {
    let current = true;
    const read = () =>
      listAll(BASE, "repositories").then(
        (items) => current && setRepos(items),
        (failure) => current && setError(`The repositories could not be loaded: ${failure.message}`),
      );
    read();
    const id = setInterval(read, REFRESH);
    return () => {
      current = false;
      clearInterval(id);
    };
  }, [reads]);
  const refresh = () => setReads((n) => n + 1);

  const onAction = async (spec, repo) => {
    const path = `${BASE}/${encodeURIComponent(repo.name)}`;
    setBusy((b) => ({ ...b, [repo.name]: true }));
    setError("");
    try {
      if (spec.action === "sync") await api("POST", `${path}/sync`);
      else await api("DELETE", path);
      setNotice(`${spec.label}: ${repo.name} — done.`);
      refresh();
    } catch (failure) {
      setError(`${spec.label} ${repo.name} failed: ${failure.message}`);
    } finally {
      setBusy((b) => ({ ...b, [repo.name]: false }));
    }
  };
  const syncAll = async () => {
    setError("");
    try {
      const answer = await api("POST", "/api/v1/catalog/sync");
      setNotice(`Syncing ${answer.total} repositories.`);
      refresh();
    } catch (failure) {
      setError(`Sync all failed: ${failure.message}`);
    }
  };
  return html`
    <section aria-labelledby="repositories-heading">
      <div class="title-row">
        <h1 id="repositories-heading">Repositories</h1>
        <button type="button" data-testid="repo-sync-all" onClick=${syncAll}>Sync all</button>
      </div>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <p class="notice" role="status">${notice}</p>
      <table data-testid="repositories">
        <caption class="visually-hidden">Template repositories and how their last sync went</caption>
        <thead>
          <tr>
            <th scope="col">Name</th><th scope="col">URL</th><th scope="col">Branch</th>
            <th scope="col">Status</th><th scope="col">Templates</th><th scope="col">Last sync</th>
            <th scope="col">Last error</th><th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          ${(repos || []).map(
            (r) => html`<${Row} key=${r.name} repo=${r} busy=${!!busy[r.name]} onAction=${onAction} />`,
          )}
        </tbody>
      </table>
      ${repos === null && !error && html`<p class="empty">Loading repositories…</p>`}
      ${repos !== null && repos.length === 0 && html`<p class="empty">No repositories yet: add one below.</p>`}
      <${AddForm} onAdded=${(text) => { setError(""); setNotice(text); refresh(); }} />
    </section>`;
}
