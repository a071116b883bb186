/** Attributes and event handlers for {@link h}. */
export type Props = Record<string, string | boolean | ((event: Event) => void) | undefined>;

/** Creates an element: `h("button", { class: "stop", onclick: stop }, "Stop")`. Text children are text nodes, never HTML. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, value);
  }
  element.append(...children);
  return element;
}
