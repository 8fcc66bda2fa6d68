"""The orchestrator: dependency-ordered batch workflows with durable state."""
