// Sharing a session (issue 19): who it is shared with and how far (view: sees it; control: also
// connects), a form that adds a share or changes its access, and a revoke button per share. The
// list is the session's live `sharedWith`, so it follows changes made anywhere.
import { useEffect, useRef, useState } from "preact/hooks";

import { api, query } from "./api.js";
import { html } from "./html.js";

export function SharePanel({ session, onClose, onDone }) {
  const [user, setUser] = useState("");
  const [access, setAccess] = useState("view");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const heading = useRef(null);
  useEffect(() => {
    if (heading.current) heading.current.focus();
  }, []);
  const shares = `/api/v1/sessions/${encodeURIComponent(session.id)}/shares`;
  const inNamespace = query({ namespace: session.namespace });
  const run = async (work, done) => {
    setBusy(true);
    setError("");
    try {
      await work();
      onDone(done);
      return true;
    } catch (failure) {
      setError(failure.message);
      return false;
    } finally {
      setBusy(false);
    }
  };
  const submit = async (event) => {
    event.preventDefault();
    const who = user.trim();
    if (!who) return;
    const body = { user: who, access };
    if (await run(() => api("POST", shares + inNamespace, body), `${session.id} shared with ${who} (${access}).`)) {
      setUser("");
    }
  };
  const revoke = (who) =>
    run(
      () => api("DELETE", `${shares}/${encodeURIComponent(who)}${inNamespace}`),
      `${who} no longer has access to ${session.id}.`,
    );
  const list = session.sharedWith || [];
  return html`
    <section class="panel" data-testid="share-panel" aria-labelledby="share-heading">
      <div class="title-row">
        <h2 id="share-heading" tabindex="-1" ref=${heading}>Share ${session.id}</h2>
        <button type="button" data-testid="share-close" onClick=${onClose}>Close</button>
      </div>
      <form class="start" data-testid="share-form" onSubmit=${submit}>
        <label for="share-user">User</label>
        <input id="share-user" data-testid="share-user" value=${user} required
          autocomplete="off" onInput=${(e) => setUser(e.currentTarget.value)} />
        <label for="share-access">Access</label>
        <select id="share-access" data-testid="share-access" value=${access}
          onChange=${(e) => setAccess(e.currentTarget.value)}>
          <option value="view">view: sees it</option>
          <option value="control">control: also connects</option>
        </select>
        <button type="submit" data-testid="share-submit" disabled=${busy}>Share</button>
      </form>
      ${error && html`<p class="error" role="alert" data-testid="share-error">${error}</p>`}
      <table data-testid="shares">
        <caption class="visually-hidden">Users ${session.id} is shared with</caption>
        <thead><tr><th scope="col">User</th><th scope="col">Access</th><th scope="col">Actions</th></tr></thead>
        <tbody>
          ${list.map(
            (share) => html`<tr data-share=${share.user}>
              <th scope="row">${share.user}</th>
              <td data-testid="share-level">${share.access}</td>
              <td class="actions"><button type="button" data-action="revoke" disabled=${busy}
                aria-label=${`Revoke ${share.user}'s access`} onClick=${() => revoke(share.user)}>Revoke</button></td>
            </tr>`,
          )}
        </tbody>
      </table>
      ${list.length === 0 && html`<p class="empty" data-testid="no-shares">Shared with nobody.</p>`}
    </section>`;
}
