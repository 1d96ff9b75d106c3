// The API docs page (/docs): starts the local Swagger UI copy in static/swagger. A file rather than an inline
// script (as FastAPI's own docs page has) because the Content-Security-Policy allows scripts from 'self' only.
"use strict";

window.ui = SwaggerUIBundle({
  url: document.getElementById("swagger-ui").dataset.openapi,
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null, // no badge fetched from validator.swagger.io: the docs work offline
});
