// Users (operators and admins): everyone who has signed in (GET /api/v1/users, ?group= to
// filter), with the identity provider's groups told apart from the ones an admin gave. Admins
// edit the admin groups (a comma-separated list), disable or enable a user and delete one
// (after a confirmation): PATCH and DELETE /api/v1/users/{id}. The role is never edited here:
// it comes from the API key or the identity provider alone (decision 196).
import { useEffect, useState } from "preact/hooks";

import { api, listAll } from "./api.js";
import { RowActions, html } from "./html.js";
import { Field } from "./repositories.js";
import { atLeast } from "./roles.js";

const USERS = "/api/v1/users";
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
const path = (user) => `${USERS}/${encodeURIComponent(user.id)}`;
// "a, b,,c " → ["a", "b", "c"]
export const splitGroups = (text) => text.split(",").map((g) => g.trim()).filter(Boolean);

const ACTIONS = [
  { action: "edit-groups", label: "Edit groups" },
  { action: "disable", label: "Disable", enabled: (u) => !u.disabled },
  { action: "enable", label: "Enable", enabled: (u) => u.disabled },
  { action: "delete", label: "Delete" },
];

// A 422's problems, each with its field: "groups: …; disabled: …".
const problems = (failure) =>
  Object.entries(failure.fields).map(([field, problem]) => `${field}: ${problem}`).join("; ");

function Groups({ names, testid, kind }) {
  return html`<span class=${`groups ${kind}`} data-testid=${testid}>
    ${names.length ? names.join(", ") : "—"}</span>`;
}

// The admin groups of one user, edited as a comma-separated list; the field's problem from a
// 422 beside it.
function GroupsForm({ user, onSaved, onCancel }) {
  const [text, setText] = useState(user.adminGroups.join(", "));
  const [problem, setProblem] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const idp = user.identityProviderGroups.join(", ") || "none";
  const save = async (event) => {
    event.preventDefault();
    setBusy(true);
    setProblem("");
    setError("");
    try {
      onSaved(await api("PATCH", path(user), { groups: splitGroups(text) }));
    } catch (failure) {
      setProblem(failure.fields.groups || "");
      setError(`The groups of ${user.id} could not be saved: ${failure.message}`);
      setBusy(false);
    }
  };
  return html`
    <form class="add" data-testid="user-groups-form" onSubmit=${save}
      aria-label=${`Admin groups of ${user.id}`}>
      <${Field} id="user-groups" label=${`Admin groups of ${user.id}`} value=${text}
        onInput=${setText} problem=${problem}
        hint=${`Comma-separated. The identity provider's groups (${idp}) are kept apart.`} />
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <div class="actions">
        <button type="submit" data-testid="user-groups-save" disabled=${busy}>Save groups</button>
        <button type="button" data-testid="user-groups-cancel" onClick=${onCancel}>Cancel</button>
      </div>
    </form>`;
}

function UserRow({ user, admin, busy, onAction }) {
  return html`<tr key=${user.id} data-user=${user.id}>
    <th scope="row">${user.id}</th>
    <td data-testid="user-name">${user.name || ""}${user.name && user.email ? " · " : ""}${user.email || ""}</td>
    <td data-testid="user-role">${user.role}</td>
    <td>
      <${Groups} names=${user.identityProviderGroups} testid="user-idp-groups" kind="idp" />
      <span class="help"> (identity provider)</span><br />
      <${Groups} names=${user.adminGroups} testid="user-admin-groups" kind="admin" />
      <span class="help"> (admin)</span>
    </td>
    <td data-testid="user-disabled">${user.disabled ? "yes" : "no"}</td>
    <td data-testid="user-last-login">${when(user.lastLogin)}</td>
    ${admin && html`<${RowActions} specs=${ACTIONS} item=${user} name=${user.id}
      busy=${busy} onAction=${onAction} />`}
  </tr>`;
}

export function UsersPage({ me }) {
  const admin = atLeast(me, "admin");
  const [users, setUsers] = useState(null);
  const [filter, setFilter] = useState("");
  const [group, setGroup] = useState("");
  const [editing, setEditing] = useState(null);
  const [busy, setBusy] = useState(null);
  const [error, setError] = useState("");
  const [notice, setNotice] = useState("");
  const [reads, setReads] = useState(0);
  useEffect(() => {
    document.title = "Users · StreamSpace";
  }, []);
  useEffect(() => {
    let current = true;
    listAll(USERS, "users", { group }).then(
      (found) => current && setUsers(found),
      (failure) => current && setError(`The users could not be loaded: ${failure.message}`),
    );
    return () => {
      current = false;
    };
  }, [group, reads]);
  const done = (message) => {
    setNotice(message);
    setReads((n) => n + 1);
  };
  const change = async (user, verb, call) => {
    setBusy(user.id);
    setError("");
    try {
      await call();
      done(`${user.id} ${verb}.`);
    } catch (failure) {
      const fields = problems(failure);
      setError(`${user.id} could not be ${verb}: ${fields || failure.message}`);
    } finally {
      setBusy(null);
    }
  };
  const act = (spec, user) => {
    if (spec.action === "edit-groups") setEditing(user);
    else if (spec.action === "delete") {
      if (window.confirm(`Delete ${user.id}? Their API keys go too; their sessions stay.`)) {
        change(user, "deleted", () => api("DELETE", path(user)));
      }
    } else {
      const disabled = spec.action === "disable";
      change(user, disabled ? "disabled" : "enabled", () => api("PATCH", path(user), { disabled }));
    }
  };
  const saved = (user) => {
    setEditing(null);
    done(`The groups of ${user.id} saved.`);
  };
  const applyFilter = (event) => {
    event.preventDefault();
    setGroup(filter.trim());
  };
  return html`
    <section aria-labelledby="users-heading">
      <h1 id="users-heading">Users</h1>
      <form class="filters" role="search" onSubmit=${applyFilter} aria-label="Filter the users">
        <div>
          <label for="users-group">Group</label>
          <input id="users-group" data-testid="users-group-filter" value=${filter}
            autocomplete="off" onInput=${(e) => setFilter(e.currentTarget.value)} />
        </div>
        <div class="submit"><button type="submit" data-testid="users-filter">Filter</button></div>
      </form>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <p class="notice" role="status">${notice}</p>
      ${editing && html`<${GroupsForm} key=${editing.id} user=${editing} onSaved=${saved}
        onCancel=${() => setEditing(null)} />`}
      <table data-testid="users">
        <caption class="visually-hidden">Users who have signed in</caption>
        <thead>
          <tr>
            <th scope="col">User</th><th scope="col">Name · email</th><th scope="col">Role</th>
            <th scope="col">Groups</th><th scope="col">Disabled</th>
            <th scope="col">Last sign-in</th>${admin && html`<th scope="col">Actions</th>`}
          </tr>
        </thead>
        <tbody>
          ${(users || []).map(
            (u) => html`<${UserRow} key=${u.id} user=${u} admin=${admin}
              busy=${busy === u.id} onAction=${act} />`,
          )}
        </tbody>
      </table>
      ${users !== null && users.length === 0 && html`<p class="empty">No users match.</p>`}
    </section>`;
}
