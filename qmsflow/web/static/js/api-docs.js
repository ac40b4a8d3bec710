// The API's documentation page: Swagger UI (vendored) on the generated document. No inline script (CSP).
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.SwaggerUIBundle({ url: root.getAttribute("data-spec-url"), dom_id: "#swagger-ui", deepLinking: true });
});
