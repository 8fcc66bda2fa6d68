"""HTTP handlers of the orchestrator: parse, call the engine, shape the response."""
