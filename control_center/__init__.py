"""The control center: login with MFA, users, policies, the audit log and webhooks, as an HTTP API."""
