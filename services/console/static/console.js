// Small progressive help only: every page works without it.
// - A section marked data-fragment="URL" is filled from that URL (a slow part, such as the
//   dashboard's forecast, arrives after the rest of the page instead of holding it up); without
//   the script it is a link to the same content as a page.
// - A confirmation guards the buttons marked data-confirm.
document.addEventListener("DOMContentLoaded", () => {
  for (const section of document.querySelectorAll("[data-fragment]")) {
    fetch(section.dataset.fragment, { credentials: "same-origin", headers: { "X-Fragment": "1" } })
      .then((response) => (response.ok && !response.redirected ? response.text() : Promise.reject(response.status)))
      .then((html) => { section.innerHTML = html; section.dataset.loaded = "true"; })
      .catch(() => { section.dataset.loaded = "failed"; });
  }
});
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) {
    event.preventDefault();
  }
});
