// Follows TensorBoard's dark mode: TensorBoard toggles `dark-mode` on the top window's body.

export function followTheme() {
  let body;
  try {
    body = window.parent !== window ? window.parent.document.body : null;
  } catch {
    return; // not same-origin: keep the light theme
  }
  if (!body) return;
  const apply = () => document.body.classList.toggle("dark-mode", body.classList.contains("dark-mode"));
  apply();
  new MutationObserver(apply).observe(body, { attributes: true, attributeFilter: ["class"] });
}
