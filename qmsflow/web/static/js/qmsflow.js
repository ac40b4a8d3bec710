// Small enhancements only: every page works without this file (docs/web.md).
// Move focus to an error summary or a refusal, so a screen reader announces it after a refused form.
document.addEventListener("DOMContentLoaded", function () {
  var target = document.querySelector("[data-qf-focus]");
  if (target) { target.focus(); }
  // A button with data-qf-confirm asks before its form is sent (the page behind it asks too, without script).
  document.querySelectorAll("[data-qf-confirm]").forEach(function (button) {
    button.addEventListener("click", function (event) {
      if (!window.confirm(button.getAttribute("data-qf-confirm"))) { event.preventDefault(); }
    });
  });
});
