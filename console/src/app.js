// The console's shell: who is signed in (GET /api/v1/me on load), the sign-in form,
// the header with the navigation, and hash routing (#/sessions, #/catalog, #/repositories,
// #/plugins, #/usage, #/users, #/admin): the facade serves only /, so every page is a hash of
// it. A page is offered only to the roles that may use it (the facade refuses the others anyway).
import { useEffect, useState } from "preact/hooks";

import { AdminPage } from "./admin.js";
import { auth, get } from "./api.js";
import { CatalogPage } from "./catalog.js";
import { html } from "./html.js";
import { PluginsPage } from "./plugins.js";
import { RepositoriesPage } from "./repositories.js";
import { atLeast } from "./roles.js";
import { SessionsPage } from "./sessions.js";
import { UsagePage } from "./usage.js";
import { UsersPage } from "./users.js";

const ROUTES = {
  "#/sessions": { label: "My sessions", testid: "nav-sessions", Page: SessionsPage, role: "user" },
  "#/catalog": { label: "Catalog", testid: "nav-catalog", Page: CatalogPage, role: "user" },
  "#/repositories": {
    label: "Repositories", testid: "nav-repositories", Page: RepositoriesPage, role: "operator",
  },
  "#/plugins": { label: "Plugins", testid: "nav-plugins", Page: PluginsPage, role: "user" },
  "#/usage": { label: "Usage", testid: "nav-usage", Page: UsagePage, role: "user" },
  "#/users": { label: "Users", testid: "nav-users", Page: UsersPage, role: "operator" },
  "#/admin": { label: "Admin", testid: "nav-admin", Page: AdminPage, role: "admin" },
};
const DEFAULT_ROUTE = "#/sessions";
const allowed = (hash, me) => !!ROUTES[hash] && atLeast(me, ROUTES[hash].role);

// The cookie is HttpOnly, so the page cannot see it: it remembers that it signed in, and asks
// the server who it is only then. A visit that never signed in makes no request that must fail
// (a 401 is logged in the browser's console).
const HINT = "streamspace.signedIn";
const hinted = () => {
  try {
    return window.localStorage.getItem(HINT) === "1";
  } catch {
    return true; // storage refused: ask the server
  }
};
const hint = (on) => {
  try {
    if (on) window.localStorage.setItem(HINT, "1");
    else window.localStorage.removeItem(HINT);
  } catch {
    // storage refused: the server is asked on every load instead
  }
};

function useRoute() {
  const read = () => (ROUTES[window.location.hash] ? window.location.hash : DEFAULT_ROUTE);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const changed = () => setRoute(read());
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return route;
}

function SignIn({ onSignedIn }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const [oidcLogin, setOidcLogin] = useState(null);
  useEffect(() => {
    document.title = "Sign in · StreamSpace";
    // the identity provider's sign-in, when the facade has one (GET /api/v1/auth/methods)
    get("/api/v1/auth/methods").then(
      (methods) => setOidcLogin(methods.oidc ? methods.oidcLogin : null),
      () => setOidcLogin(null),
    );
  }, []);
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError("");
    try {
      onSignedIn(await auth.signIn(token.trim()));
    } catch (failure) {
      setError(failure.message);
      setBusy(false);
    }
  };
  return html`
    <main id="main" class="sign-in">
      <h1>Sign in to StreamSpace</h1>
      <form onSubmit=${submit}>
        <label for="api-key">API key</label>
        <input id="api-key" name="api-key" type="password" autocomplete="off" spellcheck=${false}
          required aria-describedby="api-key-help" aria-invalid=${error ? "true" : "false"}
          value=${token} onInput=${(e) => setToken(e.currentTarget.value)} />
        <p id="api-key-help" class="help">An API key (sk_…) or a token from your identity provider.</p>
        ${error && html`<p class="error" role="alert">${error}</p>`}
        <button type="submit" data-testid="sign-in" disabled=${busy || !token.trim()}>Sign in</button>
      </form>
      ${oidcLogin &&
      html`<p class="alternative">
        <a href=${oidcLogin} data-testid="sign-in-oidc" onClick=${() => hint(true)}>
          Sign in with your identity provider</a>
      </p>`}
    </main>`;
}

// The skip link moves the focus itself: following "#main" would change the route.
function skipToMain(event) {
  event.preventDefault();
  document.getElementById("main").focus();
}

function Header({ me, route, onSignOut }) {
  return html`
    <header class="top">
      <a class="skip" href="#main" onClick=${skipToMain}>Skip to content</a>
      <span class="brand">StreamSpace</span>
      <nav aria-label="Main">
        <ul>
          ${Object.entries(ROUTES).filter(([hash]) => allowed(hash, me)).map(
            ([hash, r]) => html`<li><a href=${hash} data-testid=${r.testid}
              aria-current=${hash === route ? "page" : undefined}>${r.label}</a></li>`,
          )}
        </ul>
      </nav>
      <span class="who">
        <span data-testid="whoami">${me.user}</span>
        ${me.role !== "user" && html` <span class="role">(${me.role})</span>`}
      </span>
      <button type="button" data-testid="sign-out" onClick=${onSignOut}>Sign out</button>
    </header>`;
}

export function App() {
  // undefined: not known yet; null: signed out
  const [me, setMe] = useState(() => (hinted() ? undefined : null));
  const [error, setError] = useState("");
  const route = useRoute();
  const signedOut = () => {
    hint(false);
    setMe(null);
  };
  const recheck = () =>
    auth.current().then(setMe, (failure) => {
      if (failure.status === 401) signedOut();
      else setError(`The server cannot say who you are: ${failure.message}`);
    });
  useEffect(() => {
    if (hinted()) recheck();
  }, []);
  // The pages go first (their WebSocket closes and opens no more), then the cookie: a socket
  // opened after the cookie is gone would fail loudly in the browser's console.
  const signOut = async () => {
    signedOut();
    try {
      await auth.signOut();
    } catch (failure) {
      setError(`Signing out failed: ${failure.message}`);
    }
  };

  if (me === undefined) {
    return html`<main id="main" class="loading">
      ${error ? html`<p class="error" role="alert">${error}</p>` : html`<p>Loading…</p>`}
    </main>`;
  }
  const signedIn = (who) => {
    hint(true);
    setError("");
    setMe(who);
  };
  if (me === null) {
    return html`
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <${SignIn} onSignedIn=${signedIn} />`;
  }
  const shown = allowed(route, me) ? route : DEFAULT_ROUTE;
  const { Page } = ROUTES[shown];
  return html`
    <${Header} me=${me} route=${shown} onSignOut=${signOut} />
    ${error && html`<p class="error" role="alert">${error}</p>`}
    <main id="main" tabindex="-1">
      <${Page} key=${shown} me=${me} onSignedOut=${recheck} />
    </main>`;
}
