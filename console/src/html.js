// htm bound to Preact's h: tagged templates instead of JSX, so the sources need no transform.
import htm from "htm";
import { h } from "preact";
import { useEffect } from "preact/hooks";

export const html = htm.bind(h);

// A table row's action buttons, one per spec ({action, label, enabled?(item)}): named for the
// row's item so that a screen reader tells the rows apart, off while the row is busy or when
// the spec says the item cannot take it.
export function RowActions({ specs, item, name, busy, onAction }) {
  return html`<td class="actions">
    ${specs.map(
      (spec) => html`<button type="button" data-action=${spec.action}
        aria-label=${`${spec.label} ${name}`}
        disabled=${busy || (spec.enabled !== undefined && !spec.enabled(item))}
        onClick=${() => onAction(spec, item)}>${spec.label}</button>`,
    )}
  </td>`;
}

// Keeps the scrollable `box` (a ref) at its end as `content` grows, while the reader is there
// (not when they scrolled up to read).
export function useFollowEnd(box, content) {
  useEffect(() => {
    const element = box.current;
    if (element && element.scrollHeight - element.scrollTop - element.clientHeight < 80) {
      element.scrollTop = element.scrollHeight;
    }
  }, [content]);
}
