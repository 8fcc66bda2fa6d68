"""HTTP handlers of the orchestrator: parse, call a service, shape the response with a view."""
