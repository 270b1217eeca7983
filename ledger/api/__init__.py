"""The HTTP API (aiohttp): the app, authentication, the core's handlers, the OpenAPI
document, and the server with its connection limits. Gateways, projections and
audit add their routes as extensions."""
