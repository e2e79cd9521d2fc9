// Small progressive help only: every page works without it. A row's action forms open in place,
// and a confirmation guards the buttons marked data-confirm.
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) {
    event.preventDefault();
  }
});
