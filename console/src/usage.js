// Usage (every signed-in user): GET /api/v1/analytics/usage between two days (the last 30 by
// default), grouped by user, template or namespace, with optional prices that add a cost.
// A plain user's report holds their own row only (the facade sees to it). Days are UTC: from
// the start of the first to the end of the last. The caller's groups (GET /api/v1/me, read
// again here, so an admin's change shows) head the page.
import { useEffect, useState } from "preact/hooks";

import { get, query } from "./api.js";
import { html } from "./html.js";
import { Field } from "./repositories.js";

const USAGE = "/api/v1/analytics/usage";
const DAY = 24 * 60 * 60 * 1000;
const GROUP_BY = ["user", "template", "namespace"];
const day = (ms) => new Date(ms).toISOString().slice(0, 10);
const PRICES = [
  { param: "cpuHourPrice", id: "usage-cpu-price", label: "Price per CPU-hour" },
  { param: "memoryGiBHourPrice", id: "usage-memory-price", label: "Price per memory GiB-hour" },
  { param: "gpuHourPrice", id: "usage-gpu-price", label: "Price per GPU-hour" },
  { param: "sessionHourPrice", id: "usage-session-price", label: "Price per session-hour" },
];
const COLUMNS = [
  { key: "runningHours", testid: "usage-running", label: "Running hours" },
  { key: "hibernatedHours", testid: "usage-hibernated", label: "Hibernated hours" },
  { key: "cpuHours", testid: "usage-cpu", label: "CPU-hours" },
  { key: "memoryGiBHours", testid: "usage-memory", label: "Memory GiB-hours" },
  { key: "gpuHours", testid: "usage-gpu", label: "GPU-hours" },
];
const figure = (n) => (typeof n === "number" ? n.toFixed(4).replace(/\.?0+$/, "") : "");

export function defaultForm(now = Date.now()) {
  return {
    from: day(now - 30 * DAY), to: day(now), groupBy: "user",
    ...Object.fromEntries(PRICES.map((p) => [p.param, ""])),
  };
}

// The form as the report's query: the last day counts whole (to is the next midnight, UTC).
export function reportQuery(form) {
  const to = form.to ? day(Date.parse(`${form.to}T00:00:00Z`) + DAY) : "";
  return query({
    from: form.from && `${form.from}T00:00:00Z`,
    to: to && `${to}T00:00:00Z`,
    groupBy: form.groupBy,
    ...Object.fromEntries(PRICES.map((p) => [p.param, form[p.param].trim()])),
  });
}

function Report({ report }) {
  const priced = Object.keys(report.prices || {}).length > 0;
  const cells = (row) => html`
    ${COLUMNS.map((c) => html`<td data-testid=${c.testid}>${figure(row[c.key])}</td>`)}
    ${priced && html`<td data-testid="usage-cost">${figure(row.cost)}</td>`}`;
  return html`
    <table data-testid="usage">
      <caption class="visually-hidden">Usage by ${report.groupBy}</caption>
      <thead>
        <tr>
          <th scope="col">${report.groupBy}</th>
          ${COLUMNS.map((c) => html`<th scope="col">${c.label}</th>`)}
          ${priced && html`<th scope="col">Cost</th>`}
        </tr>
      </thead>
      <tbody>
        ${report.items.map(
          (row) => html`<tr key=${row.key} data-usage=${row.key}>
            <th scope="row" data-testid="usage-key">${row.key}</th>${cells(row)}</tr>`,
        )}
      </tbody>
      <tfoot>
        <tr data-testid="usage-totals"><th scope="row">Total</th>${cells(report.totals)}</tr>
      </tfoot>
    </table>
    ${report.items.length === 0 && html`<p class="empty">No usage in this window.</p>`}`;
}

export function UsagePage() {
  const [form, setForm] = useState(defaultForm);
  const [asked, setAsked] = useState(() => reportQuery(defaultForm()));
  const [report, setReport] = useState(null);
  const [groups, setGroups] = useState([]);
  const [fields, setFields] = useState({});
  const [error, setError] = useState("");
  useEffect(() => {
    document.title = "Usage · StreamSpace";
    get("/api/v1/me").then((me) => setGroups(me.groups || []), () => setGroups([]));
  }, []);
  useEffect(() => {
    let current = true;
    get(USAGE + asked).then(
      (answer) => {
        if (!current) return;
        setReport(answer);
        setFields({});
        setError("");
      },
      (failure) => {
        if (!current) return;
        setFields(failure.fields);
        setError(`The usage report could not be made: ${failure.message}`);
      },
    );
    return () => {
      current = false;
    };
  }, [asked]);
  const set = (key) => (value) => setForm((f) => ({ ...f, [key]: value }));
  const show = (event) => {
    event.preventDefault();
    setAsked(reportQuery(form));
  };
  const problem = (param) => fields[`query.${param}`];
  return html`
    <section aria-labelledby="usage-heading">
      <div class="title-row">
        <h1 id="usage-heading">Usage</h1>
        ${groups.length > 0 &&
        html`<span class="help">Your groups: <span data-testid="usage-groups">${groups.join(", ")}</span></span>`}
      </div>
      <form class="add" onSubmit=${show} aria-label="Choose the usage report">
        <div class="fields">
          <${Field} id="usage-from" label="From" kind="date" required value=${form.from}
            onInput=${set("from")} problem=${problem("from")} hint="First day (UTC)" />
          <${Field} id="usage-to" label="To" kind="date" required value=${form.to}
            onInput=${set("to")} problem=${problem("to")} hint="Last day (UTC), counted whole" />
          <div class="field">
            <label for="usage-group-by">Group by</label>
            <select id="usage-group-by" value=${form.groupBy}
              onChange=${(e) => set("groupBy")(e.currentTarget.value)}>
              ${GROUP_BY.map((g) => html`<option value=${g}>${g}</option>`)}
            </select>
          </div>
        </div>
        <div class="fields">
          ${PRICES.map(
            (p) => html`<${Field} id=${p.id} label=${p.label} value=${form[p.param]}
              onInput=${set(p.param)} problem=${problem(p.param)} hint="Optional" />`,
          )}
        </div>
        <button type="submit" data-testid="usage-show">Show</button>
      </form>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      ${report && html`<${Report} report=${report} />`}
    </section>`;
}
