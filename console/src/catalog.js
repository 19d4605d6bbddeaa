// The template catalog: search, category and app-type filters, numbered pages, and (for
// operators and admins) installing an entry as a Template.
import { useEffect, useState } from "preact/hooks";

import { api, get, query } from "./api.js";
import { html } from "./html.js";

const PAGE_SIZE = 20;
const SEARCH_DELAY = 250; // ms of quiet typing before the search is sent
const APP_TYPES = [
  { value: "", label: "Any" },
  { value: "desktop", label: "Desktop" },
  { value: "webapp", label: "Web app" },
];
const CATALOG = "/api/v1/catalog/templates";

// The catalog has no list of categories of its own: they are gathered from the entries seen
// (the first unfiltered page on arrival, then every page shown).
function useCategories() {
  const [categories, setCategories] = useState([]);
  const add = (entries) =>
    setCategories((known) => {
      const all = new Set(known);
      for (const e of entries) if (e.category) all.add(e.category);
      return all.size === known.length ? known : [...all].sort();
    });
  useEffect(() => {
    get(CATALOG + query({ limit: 100 })).then((page) => add(page.templates || []), () => {});
  }, []);
  return [categories, add];
}

function Item({ entry, canInstall, onInstall, busy }) {
  return html`
    <li class="card" data-testid="catalog-item" data-name=${entry.name}>
      <h2>${entry.displayName || entry.name}</h2>
      <p class="meta">
        <span>${entry.name}</span>
        ${entry.category && html`<span>${entry.category}</span>`}
        ${entry.appType && html`<span>${entry.appType === "webapp" ? "Web app" : "Desktop"}</span>`}
      </p>
      ${entry.description && html`<p>${entry.description}</p>`}
      ${canInstall &&
      html`<button type="button" data-action="install" disabled=${busy}
        aria-label=${`Install ${entry.displayName || entry.name}`}
        onClick=${() => onInstall(entry)}>Install</button>`}
    </li>`;
}

export function CatalogPage({ me }) {
  const [search, setSearch] = useState("");
  const [sent, setSent] = useState(""); // the search as last sent (after the typing pause)
  const [category, setCategory] = useState("");
  const [appType, setAppType] = useState("");
  const [page, setPage] = useState(1);
  const [result, setResult] = useState(null);
  const [error, setError] = useState("");
  const [notice, setNotice] = useState("");
  const [installing, setInstalling] = useState(null);
  const [categories, addCategories] = useCategories();
  const canInstall = me.role === "operator" || me.role === "admin";

  useEffect(() => {
    document.title = "Catalog · StreamSpace";
  }, []);
  useEffect(() => {
    const wanted = search.trim();
    if (wanted === sent) return undefined;
    const id = setTimeout(() => {
      setSent(wanted);
      setPage(1);
    }, SEARCH_DELAY);
    return () => clearTimeout(id);
  }, [search]);
  useEffect(() => {
    let current = true;
    get(CATALOG + query({ search: sent, category, appType, page, limit: PAGE_SIZE }))
      .then((answer) => {
        if (!current) return;
        setResult({ ...answer, asked: page });
        setError("");
        addCategories(answer.templates || []);
      })
      .catch((failure) => current && setError(`The catalog could not be loaded: ${failure.message}`));
    return () => {
      current = false;
    };
  }, [sent, category, appType, page]);

  const install = async (entry) => {
    setInstalling(entry.id);
    setError("");
    try {
      const template = await api("POST", `${CATALOG}/${encodeURIComponent(entry.id)}/install`);
      setNotice(`Installed Template ${template.name}.`);
    } catch (failure) {
      setError(`Installing ${entry.name} failed: ${failure.message}`);
    } finally {
      setInstalling(null);
    }
  };

  // the indicator and the buttons follow the page shown, not the one being fetched
  const loading = result === null || result.asked !== page;
  const shown = result ? result.asked : page;
  const total = result ? result.total || 0 : 0;
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const entries = result ? result.templates || [] : [];
  const filter = (set) => (e) => {
    set(e.currentTarget.value);
    setPage(1);
  };
  return html`
    <section aria-labelledby="catalog-heading">
      <h1 id="catalog-heading">Catalog</h1>
      <form class="filters" role="search" onSubmit=${(e) => e.preventDefault()}>
        <div>
          <label for="catalog-search">Search</label>
          <input id="catalog-search" type="search" data-testid="catalog-search" value=${search}
            onInput=${(e) => setSearch(e.currentTarget.value)} />
        </div>
        <div>
          <label for="catalog-category">Category</label>
          <select id="catalog-category" data-testid="catalog-category" value=${category}
            onChange=${filter(setCategory)}>
            <option value="">Any</option>
            ${categories.map((c) => html`<option value=${c}>${c}</option>`)}
          </select>
        </div>
        <div>
          <label for="catalog-app-type">App type</label>
          <select id="catalog-app-type" data-testid="catalog-app-type" value=${appType}
            onChange=${filter(setAppType)}>
            ${APP_TYPES.map((t) => html`<option value=${t.value}>${t.label}</option>`)}
          </select>
        </div>
      </form>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <p class="notice" role="status">${notice}</p>
      ${result === null && !error && html`<p class="empty">Loading the catalog…</p>`}
      ${result !== null && entries.length === 0 && html`<p class="empty">Nothing in the catalog matches.</p>`}
      <ul class="cards" aria-label="Catalog templates" aria-busy=${loading ? "true" : "false"}>
        ${entries.map(
          (entry) => html`<${Item} key=${entry.id} entry=${entry} canInstall=${canInstall}
            busy=${installing === entry.id} onInstall=${install} />`,
        )}
      </ul>
      <nav class="pager" aria-label="Catalog pages">
        <button type="button" data-testid="prev-page" disabled=${loading || shown <= 1}
          onClick=${() => setPage(shown - 1)}>Previous</button>
        <span data-testid="page" aria-live="polite">Page ${shown} of ${pages}</span>
        <button type="button" data-testid="next-page" disabled=${loading || shown >= pages}
          onClick=${() => setPage(shown + 1)}>Next</button>
      </nav>
    </section>`;
}
