// A form generated from a plugin manifest's `configSchema` (JSON Schema, docs/PLUGINS.md §2):
// one control per top-level property — a select for an enum, a checkbox for a boolean, a number
// input for a number or an integer, a text input for a string, a password input for a secret
// (`writeOnly: true` or `format: password`), and a JSON text area for anything else (objects,
// arrays). `required` properties are marked and required; a property's `description` is its
// hint. Secret values are never shown: their inputs start empty, and one left empty is not
// sent, so the facade keeps the stored value (decision 122).
import { useState } from "preact/hooks";

import { html } from "./html.js";

export const isSecret = (schema) =>
  !!schema && (schema.writeOnly === true || schema.format === "password");

const kindOf = (schema) => {
  if (isSecret(schema)) return "secret";
  if (Array.isArray(schema.enum)) return "enum";
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  if (type === "boolean") return "boolean";
  if (type === "integer" || type === "number") return type;
  if (type === "string") return "string";
  return "json";
};

// The properties of `schema` in the manifest's order, with their kind and whether required.
export function fieldsOf(schema) {
  const properties = (schema && schema.properties) || {};
  const required = new Set((schema && schema.required) || []);
  return Object.entries(properties)
    .filter(([, sub]) => sub && typeof sub === "object")
    .map(([name, sub]) => ({ name, schema: sub, kind: kindOf(sub), required: required.has(name) }));
}

// The form's starting text for each field: the stored value, the schema's default, or empty
// (always empty for a secret).
function initialValues(fields, config) {
  const values = {};
  for (const f of fields) {
    const stored = config && Object.hasOwn(config, f.name) ? config[f.name] : f.schema.default;
    if (f.kind === "secret") values[f.name] = "";
    else if (f.kind === "boolean") values[f.name] = stored === true;
    else if (f.kind === "json") values[f.name] = stored === undefined ? "" : JSON.stringify(stored, null, 2);
    else values[f.name] = stored === undefined || stored === null ? "" : String(stored);
  }
  return values;
}

// The configuration the form's values stand for, or {problems} for what cannot be read.
function configOf(fields, values) {
  const config = {};
  const problems = {};
  for (const f of fields) {
    const raw = values[f.name];
    if (f.kind === "boolean") {
      config[f.name] = raw;
      continue;
    }
    if (raw === "") continue; // left out: a secret keeps its stored value, others are unset
    if (f.kind === "integer" || f.kind === "number") {
      const n = Number(raw);
      if (Number.isNaN(n) || (f.kind === "integer" && !Number.isInteger(n))) {
        problems[f.name] = f.kind === "integer" ? "must be a whole number" : "must be a number";
      } else config[f.name] = n;
    } else if (f.kind === "enum") {
      const match = f.schema.enum.find((option) => String(option) === raw);
      config[f.name] = match === undefined ? raw : match;
    } else if (f.kind === "json") {
      try {
        config[f.name] = JSON.parse(raw);
      } catch {
        problems[f.name] = "must be JSON";
      }
    } else config[f.name] = raw;
  }
  return { config, problems };
}

function Control({ id, field, value, set, secretStored, problem }) {
  const { schema, kind, required } = field;
  const hintText = [
    schema.description,
    kind === "secret" && secretStored && "A value is stored; leave empty to keep it.",
    kind === "json" && "JSON",
  ].filter(Boolean).join(" ");
  const described = [hintText && `${id}-hint`, problem && `${id}-error`].filter(Boolean).join(" ");
  const common = {
    id,
    name: field.name,
    "data-field": field.name,
    "aria-invalid": problem ? "true" : "false",
    "aria-describedby": described || undefined,
  };
  const label = `${schema.title || field.name}${required ? " (required)" : ""}`;
  let control;
  if (kind === "boolean") {
    control = html`<input ...${common} type="checkbox" checked=${value}
      onChange=${(e) => set(e.currentTarget.checked)} />`;
  } else if (kind === "enum") {
    control = html`<select ...${common} value=${value} required=${required}
      onChange=${(e) => set(e.currentTarget.value)}>
      ${!required && html`<option value="">(not set)</option>`}
      ${schema.enum.map((o) => html`<option value=${String(o)}>${String(o)}</option>`)}
    </select>`;
  } else if (kind === "json") {
    control = html`<textarea ...${common} rows="4" spellcheck=${false} value=${value}
      onInput=${(e) => set(e.currentTarget.value)}></textarea>`;
  } else {
    const type = kind === "secret" ? "password" : kind === "string" ? "text" : "number";
    // a secret stored already is not required again: leaving it empty keeps it
    control = html`<input ...${common} type=${type} value=${value}
      required=${required && !(kind === "secret" && secretStored)}
      step=${kind === "integer" ? "1" : kind === "number" ? "any" : undefined}
      minlength=${schema.minLength} maxlength=${schema.maxLength}
      autocomplete=${kind === "secret" ? "new-password" : "off"} spellcheck=${false}
      onInput=${(e) => set(e.currentTarget.value)} />`;
  }
  return html`
    <div class=${kind === "boolean" ? "field check" : "field"}>
      ${kind === "boolean" ? html`${control}<label for=${id}>${label}</label>` : html`<label for=${id}>${label}</label>${control}`}
      ${hintText && html`<p class="help" id=${`${id}-hint`}>${hintText}</p>`}
      ${problem && html`<p class="error field-error" id=${`${id}-error`}>${problem}</p>`}
    </div>`;
}

// `problems`: the server's 422 fields ("config.url", or "name" for the form's own extra field);
// `onSubmit(config)` may throw an ApiError, whose fields are shown next to their controls.
export function SchemaForm({ idPrefix, schema, config, secretConfig = [], submitLabel, testid,
  onSubmit, children }) {
  const fields = fieldsOf(schema);
  const [values, setValues] = useState(() => initialValues(fields, config));
  const [problems, setProblems] = useState({});
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    const read = configOf(fields, values);
    setProblems(read.problems);
    if (Object.keys(read.problems).length) {
      setError("Some fields cannot be read: see the messages next to them.");
      return;
    }
    setBusy(true);
    setError("");
    try {
      await onSubmit(read.config);
      // secrets sent are stored now: the inputs empty again, never showing them back
      setValues((v) => ({ ...v, ...Object.fromEntries(fields.filter((f) => f.kind === "secret").map((f) => [f.name, ""])) }));
    } catch (failure) {
      const byField = {};
      for (const [path, problem] of Object.entries(failure.fields || {})) {
        byField[path.replace(/^config\./, "").split(".")[0]] = problem;
      }
      setProblems(byField);
      setError(failure.message);
    } finally {
      setBusy(false);
    }
  };
  const stored = new Set(secretConfig.map((path) => String(path).split(".")[0]));
  return html`
    <form class="schema-form" data-testid=${testid} onSubmit=${submit}>
      ${children}
      ${fields.length === 0 && html`<p class="empty">This plugin has no settings.</p>`}
      ${fields.map(
        (f) => html`<${Control} key=${f.name} id=${`${idPrefix}-${f.name}`} field=${f}
          value=${values[f.name]} secretStored=${stored.has(f.name)} problem=${problems[f.name]}
          set=${(v) => setValues((all) => ({ ...all, [f.name]: v }))} />`,
      )}
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <button type="submit" data-testid=${`${testid}-submit`} disabled=${busy}>${submitLabel}</button>
    </form>`;
}
