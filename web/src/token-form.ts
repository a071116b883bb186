import { h } from "./dom.js";

/**
 * Asks for the Backend's access token (its --token-file), shown only after
 * the Backend refused a call for want of one (the error above it says so).
 * A password field, so the token is not shown on screen.
 */
export function tokenForm(onToken: (token: string) => void): HTMLFormElement {
  const field = h("input", { type: "password", class: "token", autocomplete: "off", "aria-label": "Access token", required: true });
  const form = h(
    "form",
    {
      class: "token-form",
      hidden: true,
      onsubmit: (event) => {
        event.preventDefault();
        const token = field.value.trim();
        field.value = "";
        if (token) onToken(token);
      },
    },
    field,
    h("button", { type: "submit" }, "Use token"),
  );
  return form;
}
